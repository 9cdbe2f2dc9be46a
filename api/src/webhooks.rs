//! Stripe's webhooks: `POST /v1/webhooks/stripe` (`[api.stripe_webhook]`).
//!
//! A delivery is believed only when its `Stripe-Signature` header holds, within
//! `tolerance_secs` of the server's clock, a `v1` HMAC-SHA256 of `"{t}.{body}"` under one of
//! the configured endpoint secrets (several during a rotation), compared in constant time
//! (aws-lc-rs, already in the build for the vault). Anything else — no header, a forged or
//! tampered signature, a timestamp outside the tolerance (a captured delivery replayed
//! later) — is a 400 and publishes nothing.
//!
//! A believed delivery becomes at most one event on `storefront.payments`, with an event id
//! derived from Stripe's event id: a delivery Stripe retries (or a replay inside the
//! tolerance) is acknowledged and publishes nothing more. The PaymentIntent (or charge) must
//! carry the order in `metadata.order_id`, as the payments worker creates them:
//!
//! | Stripe event | storeflow event |
//! |---|---|
//! | `payment_intent.amount_capturable_updated` | `PaymentAuthorized` (amount capturable) |
//! | `payment_intent.succeeded` | `PaymentCaptured` (amount received) |
//! | `payment_intent.payment_failed` | `PaymentFailed` (decline code, or error code) |
//! | `charge.refunded` | `RefundIssued` (the newest refund; lines are left to the sales split) |
//!
//! Other types, objects without an order, and objects the payments worker created itself
//! (`metadata.storeflow_source = payments_worker`: it published their outcome already, so
//! they are not reported twice) are acknowledged and named in the answer (`ignored`), so
//! Stripe does not retry them. The webhook is for payments confirmed outside the worker (a
//! PaymentIntent the storefront confirmed in the browser, docs/PAYMENTS.md).

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use storeflow_avro::{Event, PaymentAuthorized, PaymentCaptured, PaymentFailed, RefundIssued, Timestamp};

use crate::error::{ApiError, ApiResult};
use crate::ids::derived_uuid;

/// `[api.stripe_webhook]`: the endpoint's signing secrets.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StripeWebhookConfig {
    /// The endpoint's signing secrets (`whsec_…`); during a rotation, the old and the new.
    #[serde(serialize_with = "masked")]
    pub secrets: Vec<SecretString>,
    /// How far a signature's timestamp may be from the server's clock, seconds (Stripe's
    /// libraries use 300).
    pub tolerance_secs: i64,
}

impl Default for StripeWebhookConfig {
    fn default() -> Self {
        StripeWebhookConfig { secrets: Vec::new(), tolerance_secs: 300 }
    }
}

fn masked<S: serde::Serializer>(v: &[SecretString], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|_| "***"))
}

impl StripeWebhookConfig {
    /// Checks the values make sense.
    pub fn validate(&self) -> Result<(), String> {
        if self.secrets.is_empty() || self.secrets.iter().any(|s| s.expose_secret().is_empty()) {
            return Err("api.stripe_webhook.secrets: at least one non-empty endpoint secret (whsec_…)".into());
        }
        if !(1..=3600).contains(&self.tolerance_secs) {
            return Err(format!("api.stripe_webhook.tolerance_secs = {}: between 1 and 3600", self.tolerance_secs));
        }
        Ok(())
    }
}

/// Why a delivery is not believed (the 400's message; the header is named as the field).
fn refused(message: impl Into<String>) -> ApiError {
    ApiError::field("Stripe-Signature", message)
}

/// Checks `header` (`t=…,v1=…[,v1=…]`) over `body` against `secrets` at `now_secs`.
pub fn verify(header: Option<&str>, body: &[u8], secrets: &[SecretString], tolerance_secs: i64, now_secs: i64) -> ApiResult<()> {
    let header = header.ok_or_else(|| refused("the header is required"))?;
    let mut t = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.push(hex::decode(v).map_err(|_| refused("a v1 signature is not hex"))?),
            _ => {}
        }
    }
    let t = t.ok_or_else(|| refused("no timestamp (t=…)"))?;
    if signatures.is_empty() {
        return Err(refused("no v1 signature"));
    }
    // `abs_diff`: a hostile `t` (i64::MIN) must not overflow.
    let off = now_secs.abs_diff(t);
    if off > tolerance_secs.unsigned_abs() {
        return Err(refused(format!("the timestamp is {off} s from the server's clock; at most {tolerance_secs} s")));
    }
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    let matches = secrets.iter().any(|secret| {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.expose_secret().as_bytes());
        signatures.iter().any(|sig| aws_lc_rs::hmac::verify(&key, &signed, sig).is_ok())
    });
    if matches { Ok(()) } else { Err(refused("no v1 signature matches an endpoint secret")) }
}

/// What a believed delivery means.
#[derive(Debug, PartialEq)]
pub enum Delivery {
    /// This event, to publish.
    Publish(Box<Event>),
    /// Nothing to publish, and why.
    Ignored(String),
}

fn text<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    v.pointer(path).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn amount(v: &Value, path: &str) -> Option<i64> {
    v.pointer(path).and_then(Value::as_i64)
}

/// The storeflow event a Stripe event (already believed) stands for.
pub fn translate(body: &[u8]) -> ApiResult<Delivery> {
    let e: Value = serde_json::from_slice(body).map_err(|e| ApiError::bad_request("malformed_json", format!("malformed JSON: {e}")))?;
    let id = text(&e, "/id").ok_or_else(|| ApiError::field("id", "a Stripe event has an id"))?;
    let kind = text(&e, "/type").ok_or_else(|| ApiError::field("type", "a Stripe event has a type"))?;
    let created = amount(&e, "/created").ok_or_else(|| ApiError::field("created", "a Stripe event has a creation time"))?;
    let o = e.pointer("/data/object").ok_or_else(|| ApiError::field("data.object", "a Stripe event carries its object"))?;
    if text(o, "/metadata/storeflow_source") == Some("payments_worker") {
        // Created by the payments worker, which published the outcome itself.
        return Ok(Delivery::Ignored(format!("{kind} {id}: reported by storeflow's payments worker already")));
    }
    let Some(order_id) = text(o, "/metadata/order_id").map(str::to_string) else {
        return Ok(Delivery::Ignored(format!("{kind} {id}: its object names no order (metadata.order_id)")));
    };
    let event_id = derived_uuid(&format!("stripe/{id}"));
    let occurred_at = Timestamp(created.saturating_mul(1000));
    let currency = text(o, "/currency").unwrap_or_default().to_ascii_uppercase();
    let need = |v: Option<i64>, field: &str| v.ok_or_else(|| ApiError::field(format!("data.object.{field}"), format!("{kind} carries {field}")));
    let object_id = text(o, "/id").unwrap_or_default().to_string();
    let event = match kind {
        "payment_intent.amount_capturable_updated" => Event::PaymentAuthorized(PaymentAuthorized {
            event_id,
            occurred_at,
            order_id,
            payment_id: object_id,
            amount_minor: need(amount(o, "/amount_capturable"), "amount_capturable")?,
            currency,
            provider: "stripe".into(),
            card_brand: None,
            card_last4: None,
        }),
        "payment_intent.succeeded" => Event::PaymentCaptured(PaymentCaptured {
            event_id,
            occurred_at,
            order_id,
            payment_id: object_id,
            amount_minor: need(amount(o, "/amount_received"), "amount_received")?,
            currency,
        }),
        "payment_intent.payment_failed" => {
            let error = o.pointer("/last_payment_error").cloned().unwrap_or(Value::Null);
            Event::PaymentFailed(PaymentFailed {
                event_id,
                occurred_at,
                order_id,
                payment_id: Some(object_id),
                amount_minor: need(amount(o, "/amount"), "amount")?,
                currency,
                failure_code: text(&error, "/decline_code").or_else(|| text(&error, "/code")).unwrap_or("unknown").to_string(),
                failure_message: text(&error, "/message").unwrap_or_default().to_string(),
            })
        }
        "charge.refunded" => {
            let refund = o.pointer("/refunds/data/0").ok_or_else(|| ApiError::field("data.object.refunds", "charge.refunded carries its refunds"))?;
            Event::RefundIssued(RefundIssued {
                event_id,
                occurred_at,
                order_id,
                payment_id: text(o, "/payment_intent").unwrap_or(&object_id).to_string(),
                refund_id: text(refund, "/id").ok_or_else(|| ApiError::field("data.object.refunds.data[0].id", "a refund has an id"))?.to_string(),
                amount_minor: need(amount(refund, "/amount"), "refunds.data[0].amount")?,
                currency,
                reason: text(refund, "/reason").unwrap_or("requested_by_customer").to_string(),
                lines: Vec::new(),
            })
        }
        other => return Ok(Delivery::Ignored(format!("{other} {id}: not a type storeflow turns into an event"))),
    };
    Ok(Delivery::Publish(Box::new(event)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, t: i64, body: &[u8]) -> String {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
        let mut signed = format!("{t}.").into_bytes();
        signed.extend_from_slice(body);
        hex::encode(aws_lc_rs::hmac::sign(&key, &signed).as_ref())
    }

    #[test]
    fn a_signature_holds_only_with_an_endpoint_secret_the_body_and_a_fresh_timestamp() {
        let secrets = vec![SecretString::from("whsec_old"), SecretString::from("whsec_new")];
        let body = br#"{"id":"evt_1"}"#;
        let now = 1_800_000_000;
        for secret in ["whsec_old", "whsec_new"] {
            let h = format!("t={now},v1={}", sign(secret, now, body));
            assert!(verify(Some(&h), body, &secrets, 300, now + 299).is_ok(), "{secret}");
        }
        // Several v1 values (Stripe sends one per active secret): one matching is enough.
        let h = format!("t={now},v1={},v1={}", sign("whsec_other", now, body), sign("whsec_new", now, body));
        assert!(verify(Some(&h), body, &secrets, 300, now).is_ok());
        let good = format!("t={now},v1={}", sign("whsec_new", now, body));
        for (header, body, at) in [
            (None, &body[..], now),
            (Some(format!("t={now},v1={}", sign("whsec_forged", now, body))), &body[..], now),
            (Some(good.clone()), &br#"{"id":"evt_2"}"#[..], now),
            (Some(good.clone()), &body[..], now + 301),
            (Some(good.clone()), &body[..], now - 301),
            (Some(format!("t={},v1={}", now + 1, sign("whsec_new", now, body))), &body[..], now),
            (Some(format!("v1={}", sign("whsec_new", now, body))), &body[..], now),
            (Some(format!("t={now},v0={}", sign("whsec_new", now, body))), &body[..], now),
            (Some(format!("t={now},v1=zz")), &body[..], now),
            (Some(format!("t={},v1={}", i64::MIN, sign("whsec_new", now, body))), &body[..], now),
            (Some(format!("t={},v1={}", i64::MAX, sign("whsec_new", now, body))), &body[..], now),
        ] {
            let err = verify(header.as_deref(), body, &secrets, 300, at).unwrap_err();
            assert!(matches!(&err, ApiError::Invalid { field: Some(field), .. } if field == "Stripe-Signature"), "{header:?} at {at}: {err:?}");
        }
    }

    #[test]
    fn payment_intents_and_refunds_become_the_payment_events_of_their_order() {
        let pi = |kind: &str, extra: Value| {
            let mut o = serde_json::json!({"id": "pi_1", "object": "payment_intent", "amount": 9998, "currency": "eur", "metadata": {"order_id": "o-1"}});
            o.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            serde_json::to_vec(&serde_json::json!({"id": "evt_1", "type": kind, "created": 1_800_000_000, "data": {"object": o}})).unwrap()
        };
        let Delivery::Publish(e) = translate(&pi("payment_intent.amount_capturable_updated", serde_json::json!({"amount_capturable": 9998}))).unwrap() else { panic!() };
        let Event::PaymentAuthorized(a) = *e else { panic!("{e:?}") };
        assert_eq!((a.order_id.as_str(), a.payment_id.as_str(), a.amount_minor, a.currency.as_str()), ("o-1", "pi_1", 9998, "EUR"));
        assert_eq!(a.occurred_at, Timestamp(1_800_000_000_000), "event time is Stripe's");
        assert_eq!(a.event_id, derived_uuid("stripe/evt_1"), "a redelivery gets the same event id");
        let Delivery::Publish(e) = translate(&pi("payment_intent.payment_failed", serde_json::json!({"last_payment_error": {"code": "card_declined", "decline_code": "insufficient_funds", "message": "Your card has insufficient funds."}}))).unwrap() else { panic!() };
        let Event::PaymentFailed(f) = *e else { panic!() };
        assert_eq!((f.failure_code.as_str(), f.payment_id.as_deref()), ("insufficient_funds", Some("pi_1")));
        let Delivery::Publish(e) = translate(&pi("payment_intent.succeeded", serde_json::json!({"amount_received": 9998}))).unwrap() else { panic!() };
        assert!(matches!(*e, Event::PaymentCaptured(ref c) if c.amount_minor == 9998));
        let charge = serde_json::to_vec(&serde_json::json!({"id": "evt_2", "type": "charge.refunded", "created": 1_800_000_100, "data": {"object": {
            "id": "ch_1", "payment_intent": "pi_1", "currency": "jpy", "metadata": {"order_id": "o-1"},
            "refunds": {"data": [{"id": "re_2", "amount": 500, "reason": "requested_by_customer"}, {"id": "re_1", "amount": 100}]}}}})).unwrap();
        let Delivery::Publish(e) = translate(&charge).unwrap() else { panic!() };
        let Event::RefundIssued(r) = *e else { panic!() };
        assert_eq!((r.refund_id.as_str(), r.payment_id.as_str(), r.amount_minor, r.currency.as_str()), ("re_2", "pi_1", 500, "JPY"));
        let mut ours = serde_json::from_slice::<Value>(&pi("payment_intent.succeeded", serde_json::json!({"amount_received": 9998}))).unwrap();
        ours["data"]["object"]["metadata"]["storeflow_source"] = "payments_worker".into();
        assert!(matches!(translate(&serde_json::to_vec(&ours).unwrap()).unwrap(), Delivery::Ignored(_)), "the worker's own payment is not reported twice");
        // Not ours, or not a type we map: acknowledged, nothing to publish.
        let mut foreign = serde_json::from_slice::<Value>(&pi("payment_intent.succeeded", serde_json::json!({"amount_received": 1}))).unwrap();
        foreign["data"]["object"]["metadata"] = serde_json::json!({});
        assert!(matches!(translate(&serde_json::to_vec(&foreign).unwrap()).unwrap(), Delivery::Ignored(_)));
        assert!(matches!(translate(&pi("customer.created", serde_json::json!({}))).unwrap(), Delivery::Ignored(_)));
        // A believed event missing what its type carries is refused naming the field.
        let err = translate(&pi("payment_intent.succeeded", serde_json::json!({}))).unwrap_err();
        assert!(matches!(&err, ApiError::Invalid { field: Some(field), .. } if field == "data.object.amount_received"), "{err:?}");
    }
}
