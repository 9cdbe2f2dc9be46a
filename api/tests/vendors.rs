//! Vendors' plans and Connect onboarding through the router: who may ask, what is refused
//! (naming the field), and what is published.

mod common;

use std::sync::{Arc, Mutex};

use axum::http::{Method, StatusCode};
use common::*;
use serde_json::{Value, json};
use storeflow_api::{Account, Connect, ConnectError, OnboardingLink};
use storeflow_avro::Event;

fn error_of(v: &Value) -> (&str, Option<&str>) {
    (v["error"]["code"].as_str().unwrap_or("?"), v["error"]["field"].as_str())
}

fn plan_commands(h: &Harness) -> Vec<(String, String, String)> {
    h.events_on("payments.commands")
        .into_iter()
        .filter_map(|e| if let Event::PlanChangeRequested(p) = e { Some((p.event_id, p.vendor_id, p.plan)) } else { None })
        .collect()
}

#[tokio::test]
async fn a_vendor_asks_for_its_own_plan_and_the_command_is_published_for_the_payments_worker() {
    let h = harness();
    let (st, _, v) = h.call(Method::POST, "/v1/vendors/V-A/plan", Some(&h.vendor_a), Some(json!({"plan": "pro"}))).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert_eq!((v["vendor_id"].as_str(), v["plan"].as_str(), v["status"].as_str()), (Some("V-A"), Some("pro"), Some("requested")));
    let (st, _, v2) = h.call(Method::POST, "/v1/vendors/V-A/plan", Some(&h.admin), Some(json!({"plan": "basic"}))).await;
    assert_eq!(st, StatusCode::ACCEPTED, "an admin may too: {v2}");
    let commands = plan_commands(&h);
    assert_eq!(
        commands,
        vec![
            (v["command_id"].as_str().unwrap().to_string(), "V-A".into(), "pro".into()),
            (v2["command_id"].as_str().unwrap().to_string(), "V-A".into(), "basic".into())
        ]
    );
}

#[tokio::test]
async fn another_vendor_an_app_an_analyst_and_a_customer_may_not_change_a_vendors_plan() {
    let h = harness_with(with_customers(storeflow_api::ApiConfig::default()), |r| r);
    for key in [&h.vendor_b, &h.app_key, &h.service, &h.analyst, &customer_token("C1")] {
        let (st, _, v) = h.call(Method::POST, "/v1/vendors/V-A/plan", Some(key), Some(json!({"plan": "pro"}))).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    }
    let (st, _, _) = h.call(Method::POST, "/v1/vendors/V-A/plan", None, Some(json!({"plan": "pro"}))).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(plan_commands(&h).is_empty(), "nothing published");
}

#[tokio::test]
async fn an_unknown_plan_a_bad_body_and_a_bad_vendor_id_are_refused_naming_the_field() {
    let h = harness();
    let cases: Vec<(&str, Option<Vec<u8>>, &str)> = vec![
        ("/v1/vendors/V-A/plan", Some(json!({"plan": "platinum"}).to_string().into_bytes()), "plan"),
        ("/v1/vendors/V-A/plan", Some(json!({"plan": 3}).to_string().into_bytes()), "plan"),
        ("/v1/vendors/V-A/plan", Some(json!({}).to_string().into_bytes()), "plan"),
        ("/v1/vendors/V-A/plan", Some(json!({"plan": "pro", "price": "price_free"}).to_string().into_bytes()), "price"),
        ("/v1/vendors/V%20A;drop/plan", Some(json!({"plan": "pro"}).to_string().into_bytes()), "id"),
    ];
    for (uri, body, field) in cases {
        let (st, _, v) = h.raw(Method::POST, uri, Some(&h.admin), body, &[]).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{uri}: {v}");
        assert_eq!(error_of(&v).1, Some(field), "{uri}: {v}");
    }
    let long = format!("/v1/vendors/{}/plan", "v".repeat(65));
    let (st, _, v) = h.call(Method::POST, &long, Some(&h.admin), Some(json!({"plan": "pro"}))).await;
    assert_eq!((st, error_of(&v).1), (StatusCode::BAD_REQUEST, Some("id")), "{v}");
    let (st, _, v) = h.raw(Method::POST, "/v1/vendors/V-A/plan", Some(&h.vendor_a), Some(b"{\"plan\": ".to_vec()), &[]).await;
    assert_eq!((st, error_of(&v).0), (StatusCode::BAD_REQUEST, "malformed_json"), "{v}");
    let huge = json!({"plan": "p".repeat(2 * 1024 * 1024)}).to_string().into_bytes();
    let (st, _, _) = h.raw(Method::POST, "/v1/vendors/V-A/plan", Some(&h.vendor_a), Some(huge), &[]).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(plan_commands(&h).is_empty(), "nothing published");
}

/// A provider that hands out one account per vendor and counts its calls.
#[derive(Default)]
struct FakeConnect {
    calls: Mutex<Vec<String>>,
}

impl Connect for FakeConnect {
    fn mode(&self) -> &'static str {
        "test"
    }
    fn account(&self, vendor_id: &str, country: &str, known: Option<&str>) -> Result<Account, ConnectError> {
        self.calls.lock().unwrap().push(format!("account {vendor_id} {country} {}", known.unwrap_or("new")));
        Ok(Account { account_id: known.map_or_else(|| format!("acct_test_{vendor_id}"), str::to_string), charges_enabled: false, payouts_enabled: false, details_submitted: false })
    }
    fn onboarding_link(&self, account_id: &str) -> Result<OnboardingLink, ConnectError> {
        self.calls.lock().unwrap().push(format!("link {account_id}"));
        Ok(OnboardingLink { url: None, expires_at: None })
    }
}

fn onboard_vendor_a(h: &Harness) {
    h.feed([ev(json!({"type": "VendorOnboarded", "vendor_id": "V-A", "name": "Acme", "country": "DE", "plan": "basic", "payout_currency": "EUR"}))]);
}

#[tokio::test]
async fn onboarding_answers_503_without_a_payment_provider() {
    let h = harness();
    onboard_vendor_a(&h);
    let (st, _, v) = h.call(Method::GET, "/v1/vendors/V-A/onboarding", Some(&h.vendor_a), None).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("no payment provider"), "{v}");
}

#[tokio::test]
async fn onboarding_obtains_the_vendors_account_publishes_it_and_answers_with_the_link() {
    let h = harness();
    onboard_vendor_a(&h);
    let connect = Arc::new(FakeConnect::default());
    assert!(h.state.set_connect(connect.clone()));
    let (st, _, v) = h.call(Method::GET, "/v1/vendors/V-A/onboarding", Some(&h.vendor_a), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["account_id"], "acct_test_V-A");
    assert_eq!((v["mode"].as_str(), v["url"].is_null(), v["expires_at"].is_null()), (Some("test"), true, true), "{v}");
    assert_eq!(*connect.calls.lock().unwrap(), vec!["account V-A DE new".to_string(), "link acct_test_V-A".to_string()]);
    // Asked again: once the read model holds the account (from the VendorAccountUpdated just
    // published), the provider is asked about that account instead of for a new one — the
    // same account however long after (Stripe's idempotency keys last 24 h) — and the same
    // event is published once (the same event id).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (st, _, _) = h.call(Method::GET, "/v1/vendors/V-A/onboarding", Some(&h.admin), None).await;
        assert_eq!(st, StatusCode::OK);
        let calls = connect.calls.lock().unwrap().clone();
        if calls.iter().rev().find(|c| c.starts_with("account")).is_some_and(|c| c == "account V-A DE acct_test_V-A") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the read model never learned the account: {calls:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let updates: Vec<_> = h.events_on("storefront.catalog").into_iter().filter_map(|e| if let Event::VendorAccountUpdated(a) = e { Some(a) } else { None }).collect();
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!((updates[0].vendor_id.as_str(), updates[0].account_id.as_str()), ("V-A", "acct_test_V-A"));
}

#[tokio::test]
async fn onboarding_is_the_vendors_own_and_an_unknown_vendor_is_404() {
    let h = harness();
    onboard_vendor_a(&h);
    let connect = Arc::new(FakeConnect::default());
    h.state.set_connect(connect.clone());
    for key in [&h.vendor_b, &h.app_key, &h.analyst] {
        let (st, _, v) = h.call(Method::GET, "/v1/vendors/V-A/onboarding", Some(key), None).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    }
    let (st, _, v) = h.call(Method::GET, "/v1/vendors/V-Z/onboarding", Some(&h.admin), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    let (st, _, v) = h.call(Method::GET, "/v1/vendors/a.b/onboarding", Some(&h.admin), None).await;
    assert_eq!((st, error_of(&v).1), (StatusCode::BAD_REQUEST, Some("id")), "{v}");
    assert!(connect.calls.lock().unwrap().is_empty(), "no provider call for a refused request");
}
