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

fn disputed(evt: &str, payment_intent: &str) -> Vec<u8> {
    json!({"id": evt, "object": "event", "type": "charge.dispute.created", "created": now_secs(),
        "data": {"object": {"id": "dp_1", "object": "dispute", "amount": 3998, "currency": "eur", "charge": "ch_3Q",
            "payment_intent": payment_intent, "reason": "fraudulent", "status": "needs_response", "metadata": {}}}})
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn a_dispute_is_published_for_the_order_of_its_payment_once_the_read_model_knows_the_payment() {
    let h = configured();
    // A payment nobody has seen: 503, so Stripe retries; nothing published.
    let body = disputed("evt_d0", "pi_unknown");
    let (st, v) = deliver(&h, &body, Some(&signature(SECRET, now_secs(), &body))).await;
    assert_eq!((st, v["error"]["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable")), "{v}");
    assert_eq!(h.published(), 0);
    // The payment is authorized (pi_3Q, order o-1); the sinks land it in the read model.
    let body = authorized("evt_a1");
    let (st, _) = deliver(&h, &body, Some(&signature(SECRET, now_secs(), &body))).await;
    assert_eq!(st, StatusCode::OK);
    let body = disputed("evt_d1", "pi_3Q");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let v = loop {
        // Stripe's retries, signed anew each time.
        let (st, v) = deliver(&h, &body, Some(&signature(SECRET, now_secs(), &body))).await;
        match st {
            StatusCode::OK => break v,
            StatusCode::SERVICE_UNAVAILABLE if std::time::Instant::now() < deadline => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            other => panic!("{other}: {v}"),
        }
    };
    assert_eq!(v["published"].as_str(), Some("DisputeOpened"), "{v}");
    let on_log = h.events_on("storefront.payments");
    let disputes: Vec<_> = on_log.iter().filter_map(|e| if let Event::DisputeOpened(d) = e { Some(d) } else { None }).collect();
    let [d] = &disputes[..] else { panic!("{on_log:?}") };
    assert_eq!((d.order_id.as_str(), d.payment_id.as_str(), d.dispute_id.as_str(), d.amount_minor), ("o-1", "pi_3Q", "dp_1", 3998));
    let (st, v) = deliver(&h, &body, Some(&signature(SECRET, now_secs(), &body))).await;
    assert_eq!((st, v["duplicate"].as_bool()), (StatusCode::OK, Some(true)), "a retried dispute publishes nothing more: {v}");
}

#[tokio::test]
async fn connected_accounts_and_subscriptions_become_the_vendors_catalog_events() {
    let h = configured();
    let now = now_secs();
    let account = json!({"id": "evt_acc", "type": "account.updated", "created": now, "data": {"object": {"id": "acct_9", "object": "account",
        "charges_enabled": true, "payouts_enabled": true, "details_submitted": true, "metadata": {"vendor_id": "V-A"}}}})
    .to_string()
    .into_bytes();
    let (st, v) = deliver(&h, &account, Some(&signature(SECRET, now, &account))).await;
    assert_eq!((st, v["published"].as_str()), (StatusCode::OK, Some("VendorAccountUpdated")), "{v}");
    let sub = json!({"id": "evt_sub", "type": "customer.subscription.created", "created": now, "data": {"object": {"id": "sub_9", "object": "subscription",
        "status": "active", "start_date": now - 5, "metadata": {"vendor_id": "V-A", "plan": "pro"}, "items": {"data": [{"price": {"id": "price_pro"}}]}}}})
    .to_string()
    .into_bytes();
    let (st, v) = deliver(&h, &sub, Some(&signature(SECRET, now, &sub))).await;
    assert_eq!((st, v["published"].as_str()), (StatusCode::OK, Some("VendorPlanChanged")), "{v}");
    let on_log = h.events_on("storefront.catalog");
    let [Event::VendorAccountUpdated(a), Event::VendorPlanChanged(p)] = &on_log[..] else { panic!("{on_log:?}") };
    assert_eq!((a.vendor_id.as_str(), a.account_id.as_str(), a.charges_enabled), ("V-A", "acct_9", true));
    assert_eq!((p.vendor_id.as_str(), p.plan.as_str(), p.subscription_id.as_deref(), p.effective_at.millis()), ("V-A", "pro", Some("sub_9"), (now - 5) * 1000));
}
