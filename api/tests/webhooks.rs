//! `POST /v1/webhooks/stripe` through the router: a correctly signed delivery becomes the
//! order's payment event on the log; forged, tampered and stale ones are a 400 naming
//! `Stripe-Signature` and publish nothing; a delivery Stripe retries publishes nothing more.

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use serde_json::{Value, json};
use storeflow_api::ApiConfig;
use storeflow_api::webhooks::StripeWebhookConfig;
use storeflow_avro::Event;

const SECRET: &str = "whsec_test_current";
const OLD_SECRET: &str = "whsec_test_rotated_out";

fn configured() -> Harness {
    let hooks = StripeWebhookConfig { secrets: vec![OLD_SECRET.into(), SECRET.into()], tolerance_secs: 300 };
    harness_with(ApiConfig { stripe_webhook: Some(hooks), ..ApiConfig::default() }, |r| r)
}

fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    format!("t={t},v1={}", hex::encode(aws_lc_rs::hmac::sign(&key, &signed).as_ref()))
}

fn authorized(evt: &str) -> Vec<u8> {
    json!({"id": evt, "object": "event", "type": "payment_intent.amount_capturable_updated", "created": now_secs(),
        "data": {"object": {"id": "pi_3Q", "object": "payment_intent", "amount": 3998, "amount_capturable": 3998, "currency": "eur",
            "capture_method": "manual", "metadata": {"order_id": "o-1"}}}})
    .to_string()
    .into_bytes()
}

async fn deliver(h: &Harness, body: &[u8], signature: Option<&str>) -> (StatusCode, Value) {
    let headers: Vec<(&str, &str)> = signature.map(|s| vec![("stripe-signature", s)]).unwrap_or_default();
    let (st, _, v) = h.raw(Method::POST, "/v1/webhooks/stripe", None, Some(body.to_vec()), &headers).await;
    (st, v)
}

#[tokio::test]
async fn a_signed_delivery_becomes_the_orders_payment_event_once_however_often_stripe_sends_it() {
    let h = configured();
    let body = authorized("evt_1");
    let (st, v) = deliver(&h, &body, Some(&signature(SECRET, now_secs(), &body))).await;
    assert_eq!((st, v["published"].as_str(), v["duplicate"].as_bool()), (StatusCode::OK, Some("PaymentAuthorized"), Some(false)), "{v}");
    let on_log = h.events_on("storefront.payments");
    let [Event::PaymentAuthorized(a)] = &on_log[..] else { panic!("{on_log:?}") };
    assert_eq!((a.order_id.as_str(), a.payment_id.as_str(), a.amount_minor, a.currency.as_str(), a.provider.as_str()), ("o-1", "pi_3Q", 3998, "EUR", "stripe"));
    // Stripe retries (a lost 200), signed anew, and under the secret being rotated out.
    let (st, v) = deliver(&h, &body, Some(&signature(OLD_SECRET, now_secs() - 10, &body))).await;
    assert_eq!((st, v["duplicate"].as_bool()), (StatusCode::OK, Some(true)), "{v}");
    assert_eq!(h.events_on("storefront.payments").len(), 1, "a retried delivery publishes nothing more");
}

#[tokio::test]
async fn forged_tampered_and_stale_deliveries_are_refused_naming_the_signature_and_publish_nothing() {
    let h = configured();
    let body = authorized("evt_2");
    let now = now_secs();
    let tampered = String::from_utf8(body.clone()).unwrap().replace("3998", "1").into_bytes();
    for (what, payload, sig) in [
        ("no signature", body.clone(), None),
        ("another secret", body.clone(), Some(signature("whsec_attacker", now, &body))),
        ("a tampered body", tampered, Some(signature(SECRET, now, &body))),
        ("a captured delivery replayed an hour later", body.clone(), Some(signature(SECRET, now - 3600, &body))),
        ("a timestamp from the future", body.clone(), Some(signature(SECRET, now + 3600, &body))),
        ("garbage", body.clone(), Some("t=x,v1=nothex".into())),
    ] {
        let before = h.published();
        let (st, v) = deliver(&h, &payload, sig.as_deref()).await;
        assert_eq!((st, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("Stripe-Signature")), "{what}: {v}");
        assert_eq!(h.published(), before, "{what}: published");
    }
    // A signed event of a type storeflow does not map, or of no order: acknowledged, nothing.
    for body in [
        json!({"id": "evt_3", "type": "customer.created", "created": now, "data": {"object": {"id": "cus_1", "metadata": {"order_id": "o-1"}}}}),
        json!({"id": "evt_4", "type": "payment_intent.succeeded", "created": now, "data": {"object": {"id": "pi_x", "amount_received": 5, "currency": "eur", "metadata": {}}}}),
    ] {
        let body = body.to_string().into_bytes();
        let (st, v) = deliver(&h, &body, Some(&signature(SECRET, now, &body))).await;
        assert_eq!((st, v["ignored"].is_string()), (StatusCode::OK, true), "{v}");
    }
    assert_eq!(h.published(), 0);
    healthy(&h).await;
}

#[tokio::test]
async fn without_an_endpoint_secret_the_webhook_answers_503_and_publishes_nothing() {
    let h = harness();
    let body = authorized("evt_5");
    let (st, v) = deliver(&h, &body, Some(&signature(SECRET, now_secs(), &body))).await;
    assert_eq!((st, v["error"]["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable")), "{v}");
    assert_eq!(h.published(), 0);
}

async fn healthy(h: &Harness) {
    let (st, _, _) = h.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(st, StatusCode::OK);
}
