//! Stripe's webhooks: `POST /v1/webhooks/stripe` (`[api.stripe_webhook]`).
//!
//! A delivery is believed only when its `Stripe-Signature` header holds, within
//! `tolerance_secs` of the server's clock, a `v1` HMAC-SHA256 of `"{t}.{body}"` under one of
//! the configured endpoint secrets (several during a rotation), compared in constant time
//! (aws-lc-rs, already in the build for the vault). Anything else — no header, a forged or
//! tampered signature, a timestamp outside the tolerance (a captured delivery replayed
//! later) — is a 400 and publishes nothing.
//!
//! A believed delivery becomes at most one event, with an event id derived from Stripe's
//! event id: a delivery Stripe retries (or a replay inside the tolerance) is acknowledged and
//! publishes nothing more.
//!
//! | Stripe event | storeflow event | the entity from |
//! |---|---|---|
//! | `payment_intent.amount_capturable_updated` | `PaymentAuthorized` (amount capturable) | `metadata.order_id` |
//! | `payment_intent.succeeded` | `PaymentCaptured` (amount received) | `metadata.order_id` |
//! | `payment_intent.payment_failed` | `PaymentFailed` (decline code, or error code) | `metadata.order_id` |
//! | `charge.refunded` | `RefundIssued` (the newest refund; lines are left to the sales split) | `metadata.order_id` |
//! | `charge.dispute.created` | `DisputeOpened` | the order of its `payment_intent` (read model) |
//! | `charge.dispute.closed` | `DisputeClosed` (won, lost, warning_closed) | the order of its `payment_intent` |
//! | `account.updated` | `VendorAccountUpdated` (charges, payouts, details submitted) | `metadata.vendor_id` |
//! | `customer.subscription.created` / `.updated` / `.deleted` | `VendorPlanChanged` | `metadata.vendor_id` |
//!
//! The PaymentIntents and charges carry the order in `metadata.order_id`, as the payments
//! worker creates them; a dispute names only its PaymentIntent, so its order is looked up in
//! the read model (a payment not seen yet is a 503: Stripe retries the delivery later).
//! Accounts and subscriptions carry the vendor in `metadata.vendor_id`; a subscription's plan
//! is its price's `metadata.plan` (or `lookup_key`), else the subscription's `metadata.plan`,
//! and `basic` once it is cancelled, unpaid or expired.
//!
//! Other types, objects without an order or vendor, and PaymentIntents and charges the
//! payments worker created itself (`metadata.storeflow_source = payments_worker`: it published
//! their outcome already, so they are not reported twice) are acknowledged and named in the
//! answer (`ignored`), so Stripe does not retry them. Accounts, subscriptions and disputes are
//! always reported: onboarding progress, renewals, cancellations and disputes happen at
//! Stripe, after the worker's call.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use storeflow_avro::{
    DisputeClosed, DisputeOpened, Event, PaymentAuthorized, PaymentCaptured, PaymentFailed, RefundIssued, Timestamp, VendorAccountUpdated, VendorPlanChanged,
};

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
    /// This event about the order of the PaymentIntent `payment_id` (a dispute's object
    /// names no order): publish it once [`Delivery::for_order`] has filled the order in.
    ForPayment { payment_id: String, event: Box<Event> },
    /// Nothing to publish, and why.
    Ignored(String),
}

impl Delivery {
    /// The event of a [`Delivery::ForPayment`], about `order_id`.
    pub fn for_order(event: Event, order_id: String) -> Event {
        match event {
            Event::DisputeOpened(d) => Event::DisputeOpened(DisputeOpened { order_id, ..d }),
            Event::DisputeClosed(d) => Event::DisputeClosed(DisputeClosed { order_id, ..d }),
            other => other,
        }
    }
}

/// The plan a subscription object stands for, in force or not.
fn plan_of(o: &Value) -> Option<&str> {
    text(o, "/items/data/0/price/metadata/plan")
        .or_else(|| text(o, "/items/data/0/price/lookup_key"))
        .or_else(|| text(o, "/metadata/plan"))
}

fn flag(v: &Value, path: &str) -> bool {
    v.pointer(path).and_then(Value::as_bool).unwrap_or(false)
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
    let event_id = derived_uuid(&format!("stripe/{id}"));
    let occurred_at = Timestamp(created.saturating_mul(1000));
    let object_id = text(o, "/id").unwrap_or_default().to_string();
    let need = |v: Option<i64>, field: &str| v.ok_or_else(|| ApiError::field(format!("data.object.{field}"), format!("{kind} carries {field}")));
    let currency = text(o, "/currency").unwrap_or_default().to_ascii_uppercase();
    match kind {
        "charge.dispute.created" | "charge.dispute.closed" => {
            let Some(payment_id) = text(o, "/payment_intent").map(str::to_string) else {
                return Ok(Delivery::Ignored(format!("{kind} {id}: the dispute names no PaymentIntent")));
            };
            let dispute_id = object_id;
            let amount_minor = need(amount(o, "/amount"), "amount")?;
            let status = text(o, "/status").unwrap_or("unknown").to_string();
            let event = if kind == "charge.dispute.created" {
                Event::DisputeOpened(DisputeOpened {
                    event_id,
                    occurred_at,
                    order_id: String::new(),
                    payment_id: payment_id.clone(),
                    dispute_id,
                    amount_minor,
                    currency,
                    reason: text(o, "/reason").unwrap_or("general").to_string(),
                    status,
                })
            } else {
                Event::DisputeClosed(DisputeClosed { event_id, occurred_at, order_id: String::new(), payment_id: payment_id.clone(), dispute_id, amount_minor, currency, status })
            };
            return Ok(match text(o, "/metadata/order_id") {
                Some(order) => Delivery::Publish(Box::new(Delivery::for_order(event, order.to_string()))),
                None => Delivery::ForPayment { payment_id, event: Box::new(event) },
            });
        }
        "account.updated" => {
            let Some(vendor_id) = text(o, "/metadata/vendor_id").map(str::to_string) else {
                return Ok(Delivery::Ignored(format!("{kind} {id}: the account names no vendor (metadata.vendor_id)")));
            };
            return Ok(Delivery::Publish(Box::new(Event::VendorAccountUpdated(VendorAccountUpdated {
                event_id,
                occurred_at,
                vendor_id,
                account_id: object_id,
                charges_enabled: flag(o, "/charges_enabled"),
                payouts_enabled: flag(o, "/payouts_enabled"),
                details_submitted: flag(o, "/details_submitted"),
            }))));
        }
        "customer.subscription.created" | "customer.subscription.updated" | "customer.subscription.deleted" => {
            let Some(vendor_id) = text(o, "/metadata/vendor_id").map(str::to_string) else {
                return Ok(Delivery::Ignored(format!("{kind} {id}: the subscription names no vendor (metadata.vendor_id)")));
            };
            let status = text(o, "/status").unwrap_or("unknown").to_string();
            let ended = kind == "customer.subscription.deleted" || matches!(status.as_str(), "canceled" | "unpaid" | "incomplete_expired");
            if !ended && status == "incomplete" {
                return Ok(Delivery::Ignored(format!("{kind} {id}: the subscription is not paid yet (incomplete): no plan in force")));
            }
            let plan = if ended {
                "basic".to_string()
            } else {
                plan_of(o).ok_or_else(|| ApiError::field("data.object.items.data[0].price.metadata.plan", "a subscription names its plan (price metadata.plan, lookup_key, or metadata.plan)"))?.to_string()
            };
            // In force from Stripe's time: the subscription's start when it was created, the
            // change (this event) when it changed, its end when it ended.
            let effective = match kind {
                "customer.subscription.created" => amount(o, "/start_date").unwrap_or(created),
                "customer.subscription.deleted" => amount(o, "/ended_at").or_else(|| amount(o, "/canceled_at")).unwrap_or(created),
                _ => created,
            };
            return Ok(Delivery::Publish(Box::new(Event::VendorPlanChanged(VendorPlanChanged {
                event_id,
                occurred_at,
                vendor_id,
                plan,
                subscription_id: Some(object_id),
                status,
                effective_at: Timestamp(effective.saturating_mul(1000)),
            }))));
        }
        _ => {}
    }
    if text(o, "/metadata/storeflow_source") == Some("payments_worker") {
        // Created by the payments worker, which published the outcome itself.
        return Ok(Delivery::Ignored(format!("{kind} {id}: reported by storeflow's payments worker already")));
    }
    let Some(order_id) = text(o, "/metadata/order_id").map(str::to_string) else {
        return Ok(Delivery::Ignored(format!("{kind} {id}: its object names no order (metadata.order_id)")));
    };
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

    fn event(kind: &str, created: i64, object: Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"id": "evt_9", "type": kind, "created": created, "data": {"object": object}})).unwrap()
    }

    #[test]
    fn a_dispute_becomes_an_event_of_the_order_its_payment_intent_belongs_to() {
        let dispute = |kind: &str, status: &str| {
            event(kind, 1_800_000_500, serde_json::json!({"id": "dp_1", "object": "dispute", "amount": 4_200, "currency": "usd", "charge": "ch_1",
                "payment_intent": "pi_1", "reason": "fraudulent", "status": status, "metadata": {}}))
        };
        // The dispute names no order: the route looks it up by the PaymentIntent.
        let Delivery::ForPayment { payment_id, event: e } = translate(&dispute("charge.dispute.created", "needs_response")).unwrap() else { panic!() };
        assert_eq!(payment_id, "pi_1");
        let Event::DisputeOpened(d) = Delivery::for_order(*e, "o-7".into()) else { panic!() };
        assert_eq!(
            (d.order_id.as_str(), d.payment_id.as_str(), d.dispute_id.as_str(), d.amount_minor, d.currency.as_str(), d.reason.as_str(), d.status.as_str()),
            ("o-7", "pi_1", "dp_1", 4_200, "USD", "fraudulent", "needs_response")
        );
        assert_eq!(d.occurred_at, Timestamp(1_800_000_500_000));
        let Delivery::ForPayment { event: e, .. } = translate(&dispute("charge.dispute.closed", "lost")).unwrap() else { panic!() };
        let Event::DisputeClosed(c) = Delivery::for_order(*e, "o-7".into()) else { panic!() };
        assert_eq!((c.order_id.as_str(), c.status.as_str(), c.amount_minor), ("o-7", "lost", 4_200));
        // Disputes are the bank's, never the worker's: a worker-made payment's dispute counts.
        let mut ours: Value = serde_json::from_slice(&dispute("charge.dispute.created", "needs_response")).unwrap();
        ours["data"]["object"]["metadata"] = serde_json::json!({"storeflow_source": "payments_worker", "order_id": "o-8"});
        let Delivery::Publish(e) = translate(&serde_json::to_vec(&ours).unwrap()).unwrap() else { panic!("a worker-made payment's dispute is reported") };
        assert_eq!(e.order_id(), Some("o-8"), "an order in the dispute's own metadata is taken as it is");
        assert!(matches!(translate(&dispute("charge.dispute.updated", "under_review")).unwrap(), Delivery::Ignored(_)));
        let mut bare: Value = serde_json::from_slice(&dispute("charge.dispute.created", "needs_response")).unwrap();
        bare["data"]["object"].as_object_mut().unwrap().remove("payment_intent");
        assert!(matches!(translate(&serde_json::to_vec(&bare).unwrap()).unwrap(), Delivery::Ignored(_)), "a dispute of a charge without a PaymentIntent is not ours");
    }

    #[test]
    fn an_account_update_says_what_the_vendors_connected_account_may_do() {
        let account = |metadata: Value| {
            event("account.updated", 1_800_000_000, serde_json::json!({"id": "acct_1", "object": "account", "charges_enabled": true, "payouts_enabled": false,
                "details_submitted": true, "metadata": metadata}))
        };
        let Delivery::Publish(e) = translate(&account(serde_json::json!({"vendor_id": "v-1", "storeflow_source": "payments_worker"}))).unwrap() else {
            panic!("an account the worker created still reports its onboarding")
        };
        let Event::VendorAccountUpdated(a) = *e else { panic!() };
        assert_eq!((a.vendor_id.as_str(), a.account_id.as_str(), a.charges_enabled, a.payouts_enabled, a.details_submitted), ("v-1", "acct_1", true, false, true));
        assert_eq!(Event::VendorAccountUpdated(a).key(), "v-1", "published under the vendor's key");
        assert!(matches!(translate(&account(serde_json::json!({}))).unwrap(), Delivery::Ignored(_)), "an account of no vendor is not ours");
    }

    #[test]
    fn a_subscription_keeps_the_vendors_plan_current_from_stripes_time() {
        let sub = |kind: &str, status: &str, price: Value| {
            event(kind, 1_800_000_900, serde_json::json!({"id": "sub_1", "object": "subscription", "status": status, "start_date": 1_800_000_000,
                "canceled_at": 1_800_000_800, "ended_at": 1_800_000_850, "metadata": {"vendor_id": "v-1", "plan": "pro"},
                "items": {"data": [{"price": price}]}}))
        };
        let plan = |body: &[u8]| match translate(body).unwrap() {
            Delivery::Publish(e) => match *e {
                Event::VendorPlanChanged(p) => (p.plan, p.status, p.effective_at.millis(), p.subscription_id),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        let sub_id = Some("sub_1".to_string());
        assert_eq!(plan(&sub("customer.subscription.created", "active", serde_json::json!({"id": "price_p", "metadata": {}}))),
            ("pro".into(), "active".into(), 1_800_000_000_000, sub_id.clone()), "created: in force from its start, plan from the metadata");
        // Changed in Stripe's dashboard: the price says the plan, from the change on.
        assert_eq!(plan(&sub("customer.subscription.updated", "active", serde_json::json!({"id": "price_e", "metadata": {"plan": "enterprise"}}))),
            ("enterprise".into(), "active".into(), 1_800_000_900_000, sub_id.clone()));
        assert_eq!(plan(&sub("customer.subscription.updated", "past_due", serde_json::json!({"id": "price_e", "lookup_key": "enterprise"}))).0, "enterprise",
            "a late payment keeps the plan while Stripe retries it");
        assert_eq!(plan(&sub("customer.subscription.updated", "unpaid", serde_json::json!({"metadata": {"plan": "enterprise"}}))).0, "basic");
        assert_eq!(plan(&sub("customer.subscription.deleted", "canceled", serde_json::json!({}))),
            ("basic".into(), "canceled".into(), 1_800_000_850_000, sub_id), "ended: basic from when it ended");
        assert!(matches!(translate(&sub("customer.subscription.created", "incomplete", serde_json::json!({}))).unwrap(), Delivery::Ignored(_)),
            "not paid yet: no plan in force");
        let mut anonymous: Value = serde_json::from_slice(&sub("customer.subscription.created", "active", serde_json::json!({}))).unwrap();
        anonymous["data"]["object"]["metadata"] = serde_json::json!({});
        assert!(matches!(translate(&serde_json::to_vec(&anonymous).unwrap()).unwrap(), Delivery::Ignored(_)));
        let mut planless: Value = serde_json::from_slice(&sub("customer.subscription.updated", "active", serde_json::json!({}))).unwrap();
        planless["data"]["object"]["metadata"] = serde_json::json!({"vendor_id": "v-1"});
        let err = translate(&serde_json::to_vec(&planless).unwrap()).unwrap_err();
        assert!(matches!(&err, ApiError::Invalid { field: Some(f), .. } if f.contains("plan")), "{err:?}");
    }
}
