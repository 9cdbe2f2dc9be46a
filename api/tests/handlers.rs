//! Handler tests: every endpoint through `router(state).oneshot(request)`, its success and
//! its error answers.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::*;
use futures::FutureExt;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use storeflow_api::ApiConfig;
use storeflow_api::read::{ReadFuture, SearchIndex, SearchQuery, SearchResults};
use storeflow_avro::Event;
use tower::ServiceExt;

fn page_viewed(event_id: &str) -> Value {
    json!({"type": "PageViewed", "event_id": event_id, "occurred_at": storeflow_avro::Timestamp::now().millis(),
        "session_id": "sess-1", "page": "/home"})
}

fn error_of(v: &Value) -> (&str, Option<&str>) {
    (v["error"]["code"].as_str().unwrap_or("?"), v["error"]["field"].as_str())
}

#[tokio::test]
async fn a_valid_event_is_published_to_its_topic_with_the_codec() {
    let h = harness();
    let e = storeflow_avro::json::example(storeflow_avro::EventType::by_name("PageViewed").unwrap());
    let (st, _, v) = h.call(Method::POST, "/v1/events", Some(&h.app_key), Some(e)).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v, json!({"accepted": 1, "duplicates": 0}));
    let on_log = h.events_on("storefront.sessions");
    assert_eq!(on_log.len(), 1);
    assert!(matches!(on_log[0], Event::PageViewed(_)));
}

#[tokio::test]
async fn a_batch_is_published_whole_and_a_duplicate_event_id_is_accepted_once() {
    let h = harness();
    let ids = ["0b4f6a4e-58a4-4b7b-9a53-5f4d8c1e2a10", "0b4f6a4e-58a4-4b7b-9a53-5f4d8c1e2a11"];
    let batch = json!({"events": [page_viewed(ids[0]), page_viewed(ids[1]), page_viewed(ids[0])]});
    let (st, _, v) = h.call(Method::POST, "/v1/events", Some(&h.app_key), Some(batch)).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v, json!({"accepted": 3, "duplicates": 1}));
    let (st, _, v) = h.call(Method::POST, "/v1/events", Some(&h.app_key), Some(page_viewed(ids[1]))).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    assert_eq!(v["duplicates"], 1);
    assert_eq!(h.events_on("storefront.sessions").len(), 2, "each event_id is on the log once");
}

#[tokio::test]
async fn an_event_without_an_id_gets_one_and_is_not_deduplicated() {
    let h = harness();
    let e = json!({"type": "PageViewed", "session_id": "sess-1", "page": "/home"});
    for _ in 0..2 {
        let (st, _, v) = h.call(Method::POST, "/v1/events", Some(&h.app_key), Some(e.clone())).await;
        assert_eq!((st, v["duplicates"].as_u64()), (StatusCode::ACCEPTED, Some(0)), "{v}");
    }
    let on_log = h.events_on("storefront.sessions");
    assert_eq!(on_log.len(), 2);
    assert_ne!(on_log[0].event_id(), on_log[1].event_id());
}

#[tokio::test]
async fn malformed_json_is_refused_and_nothing_is_published() {
    let h = harness();
    let (st, _, v) = h.raw(Method::POST, "/v1/events", Some(&h.app_key), Some(b"{\"type\": ".to_vec()), &[]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&v).0, "malformed_json", "{v}");
    assert!(h.events_on("storefront.sessions").is_empty());
}

#[tokio::test]
async fn an_unknown_event_type_is_refused_naming_the_type_field() {
    let h = harness();
    let (st, _, v) = h.call(Method::POST, "/v1/events", Some(&h.app_key), Some(json!({"type": "PageViewd"}))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&v), ("unknown_event_type", Some("type")));
    assert!(v["error"]["message"].as_str().unwrap().contains("did you mean PageViewed"), "{v}");
}

#[tokio::test]
async fn a_wrong_field_type_in_a_batch_names_the_event_and_the_field_and_publishes_nothing() {
    let h = harness();
    let mut bad = storeflow_avro::json::example(storeflow_avro::EventType::by_name("OrderPlaced").unwrap());
    bad["items"][0]["quantity"] = json!("two");
    let batch = json!({"events": [page_viewed("0b4f6a4e-58a4-4b7b-9a53-5f4d8c1e2a10"), bad]});
    let (st, _, v) = h.call(Method::POST, "/v1/events", Some(&h.app_key), Some(batch)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&v), ("invalid_field", Some("events[1].items[0].quantity")), "{v}");
    assert!(h.events_on("storefront.sessions").is_empty(), "a batch is all or nothing");
}

#[tokio::test]
async fn derived_events_empty_and_oversized_batches_are_refused() {
    let h = harness_with(ApiConfig { max_batch: 2, ..ApiConfig::default() }, |r| r);
    let (st, _, v) = h.call(Method::POST, "/v1/events", Some(&h.app_key), Some(json!({"type": "FraudScored"}))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&v).1, Some("type"));
    let (st, _, v) = h.call(Method::POST, "/v1/events", Some(&h.app_key), Some(json!({"events": []}))).await;
    assert_eq!((st, error_of(&v).1), (StatusCode::BAD_REQUEST, Some("events")));
    let one = page_viewed("0b4f6a4e-58a4-4b7b-9a53-5f4d8c1e2a10");
    let three = json!({"events": [one.clone(), one.clone(), one]});
    let (st, _, v) = h.call(Method::POST, "/v1/events", Some(&h.app_key), Some(three)).await;
    assert_eq!((st, error_of(&v).1), (StatusCode::BAD_REQUEST, Some("events")));
}

/// Every endpoint that needs a key, with a body where it takes one.
fn protected() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (Method::POST, "/v1/events", Some(page_viewed("0b4f6a4e-58a4-4b7b-9a53-5f4d8c1e2a10"))),
        (Method::POST, "/v1/orders", Some(order_body())),
        (Method::GET, "/v1/orders/o-1", None),
        (Method::POST, "/v1/orders/o-1/cancel", Some(json!({"reason": "x"}))),
        (Method::POST, "/v1/orders/o-1/returns", Some(json!({"items": [{"sku": "S1", "quantity": 1}], "reason": "x"}))),
        (Method::GET, "/v1/inventory/S1", None),
        (Method::GET, "/v1/products/P1", None),
        (Method::GET, "/v1/search?q=x", None),
        (Method::GET, "/v1/recommendations?type=trending", None),
        (Method::GET, "/v1/vendors/V-A/sales", None),
        (Method::GET, "/v1/vendors/V-A/sales/stream", None),
        (Method::GET, "/v1/vendors/V-A/orders", None),
        (Method::GET, "/v1/vendors/V-A/low-stock", None),
        (Method::GET, "/v1/analytics/dashboard?range=1h", None),
        (Method::GET, "/v1/analytics/vendors/V-A", None),
        (Method::GET, "/v1/analytics/customers/C1", None),
        (Method::GET, "/v1/analytics/inventory?range=24h", None),
        (Method::GET, "/v1/analytics/fraud?range=24h", None),
        (Method::POST, "/v1/admin/keys", Some(json!({"role": "app"}))),
    ]
}

#[tokio::test]
async fn every_protected_endpoint_answers_401_without_a_key_or_with_an_unknown_one() {
    let h = harness();
    for (m, uri, body) in protected() {
        let (st, _, v) = h.call(m.clone(), uri, None, body.clone()).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{m} {uri} without a key: {v}");
        assert_eq!(error_of(&v).0, "unauthorized");
        let (st, _, _) = h.call(m.clone(), uri, Some("sf_not_a_key"), body).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{m} {uri} with an unknown key");
    }
    let (st, _, _) = h.raw(Method::GET, "/v1/inventory/S1", None, None, &[("authorization", "Basic abc")]).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_role_without_the_right_gets_403() {
    let h = harness();
    h.seed_catalog();
    for (key, m, uri, body) in [
        (&h.analyst, Method::POST, "/v1/events", Some(page_viewed("0b4f6a4e-58a4-4b7b-9a53-5f4d8c1e2a10"))),
        (&h.vendor_a, Method::POST, "/v1/orders", Some(order_body())),
        (&h.vendor_a, Method::GET, "/v1/inventory/S1", None),
        (&h.analyst, Method::GET, "/v1/orders/o-1", None),
        (&h.app_key, Method::GET, "/v1/analytics/dashboard", None),
        (&h.vendor_a, Method::GET, "/v1/analytics/dashboard", None),
        (&h.vendor_a, Method::GET, "/v1/analytics/inventory", None),
        (&h.app_key, Method::GET, "/v1/analytics/fraud", None),
        (&h.app_key, Method::GET, "/v1/vendors/V-A/sales", None),
        (&h.analyst, Method::GET, "/v1/recommendations?type=trending", None),
        (&h.app_key, Method::POST, "/v1/admin/keys", Some(json!({"role": "admin"}))),
    ] {
        let (st, _, v) = h.call(m.clone(), uri, Some(key), body).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{m} {uri}: {v}");
        assert_eq!(error_of(&v).0, "forbidden");
    }
}

#[tokio::test]
async fn a_vendor_gets_403_on_every_endpoint_scoped_to_another_vendor() {
    let h = harness();
    h.seed_catalog();
    // V-A's key on V-B's things, and V-B's key on V-A's.
    for (key, other, product) in [(&h.vendor_a, "V-B", "P3"), (&h.vendor_b, "V-A", "P1")] {
        for uri in [
            format!("/v1/vendors/{other}/sales"),
            format!("/v1/vendors/{other}/sales?granularity=day"),
            format!("/v1/vendors/{other}/sales/stream"),
            format!("/v1/analytics/vendors/{other}"),
            format!("/v1/analytics/vendors/{other}?range=30d"),
            format!("/v1/products/{product}"),
            "/v1/products/does-not-exist".to_string(),
            format!("/v1/search?vendor={other}"),
        ] {
            let (st, _, v) = h.call(Method::GET, &uri, Some(key), None).await;
            assert_eq!(st, StatusCode::FORBIDDEN, "GET {uri}: {v}");
        }
    }
    // …and their own is fine.
    let (st, _, _) = h.call(Method::GET, "/v1/products/P1", Some(&h.vendor_a), None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, _) = h.call(Method::GET, "/v1/vendors/V-A/sales", Some(&h.vendor_a), None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, _) = h.call(Method::GET, "/v1/analytics/vendors/V-A", Some(&h.vendor_a), None).await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_with_a_json_error() {
    let h = harness_with(ApiConfig { max_body_bytes: 2048, ..ApiConfig::default() }, |r| r);
    let big = json!({"type": "PageViewed", "page": "x".repeat(4096)});
    for uri in ["/v1/events", "/v1/orders", "/v1/orders/o-1/cancel", "/v1/admin/keys"] {
        // A service key: an app key may not touch order o-1 at all (403 before the body).
        let key = if uri.contains("admin") { &h.admin } else { &h.service };
        let (st, _, v) = h.raw(Method::POST, uri, Some(key), Some(big.to_string().into_bytes()), &[("idempotency-key", "k1")]).await;
        assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{uri}: {v}");
        assert_eq!(error_of(&v).0, "body_too_large");
    }
}

#[tokio::test]
async fn a_key_over_its_rate_is_429_with_retry_after_and_other_keys_are_not() {
    let h = harness_with(ApiConfig { rate_per_second: 1, rate_burst: 2, ..ApiConfig::default() }, |r| r);
    h.seed_catalog();
    for _ in 0..2 {
        let (st, _, _) = h.call(Method::GET, "/v1/inventory/S1", Some(&h.app_key), None).await;
        assert_eq!(st, StatusCode::OK);
    }
    let (st, headers, v) = h.call(Method::GET, "/v1/inventory/S1", Some(&h.app_key), None).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(error_of(&v).0, "rate_limited");
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(wait >= 1);
    let (st, _, _) = h.call(Method::GET, "/v1/inventory/S1", Some(&h.admin), None).await;
    assert_eq!(st, StatusCode::OK, "limits are per key");
    let (st, _, _) = h.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(st, StatusCode::OK, "probes are not limited");
}

#[tokio::test]
async fn placing_an_order_prices_it_from_the_catalog_and_a_retry_names_the_same_order() {
    let h = harness();
    h.seed_catalog();
    let body = order_body().to_string().into_bytes();
    let idem = [("idempotency-key", "attempt-1")];
    let (st, _, v) = h.raw(Method::POST, "/v1/orders", Some(&h.app_key), Some(body.clone()), &idem).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["status"], "placed");
    let order_id = v["order_id"].as_str().unwrap().to_string();
    let (st, _, again) = h.raw(Method::POST, "/v1/orders", Some(&h.app_key), Some(body), &idem).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    assert_eq!(again["order_id"], order_id.as_str());
    let placed = h.events_on("storefront.orders");
    assert_eq!(placed.len(), 1, "a retry is not placed twice");
    let Event::OrderPlaced(o) = &placed[0] else { panic!("{placed:?}") };
    assert_eq!(o.order_id, order_id);
    assert_eq!((o.items[0].product_id.as_str(), o.items[0].vendor_id.as_str(), o.items[0].unit_price_minor), ("P1", "V-A", 1999));
    // Personal data reaches the log sealed under the customer's key.
    assert!(storeflow_avro::pii::is_sealed(&o.client_ip), "{}", o.client_ip);
    assert_eq!(h.vault.open(&o.client_ip).unwrap(), storeflow_avro::pii::Opened::Clear("198.51.100.7".into()));
    assert!(storeflow_avro::pii::is_sealed(&o.shipping_address.line1));
    assert_eq!(o.billing_address, o.shipping_address);

    let mut other = order_body();
    other["items"][0]["quantity"] = json!(3);
    let (st, _, v) = h.raw(Method::POST, "/v1/orders", Some(&h.app_key), Some(other.to_string().into_bytes()), &idem).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(error_of(&v).0, "idempotency_key_reused");
}

#[tokio::test]
async fn an_order_for_a_price_the_catalog_no_longer_has_is_a_409_price_changed_and_places_nothing() {
    let h = harness();
    h.seed_catalog();
    let mut body = order_body();
    body["items"][0]["unit_price_minor"] = json!(1499);
    let (st, _, v) = h.raw(Method::POST, "/v1/orders", Some(&h.app_key), Some(body.to_string().into_bytes()), &[("idempotency-key", "p-1")]).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(error_of(&v).0, "price_changed");
    assert!(v.to_string().contains("items[0].unit_price_minor") && v.to_string().contains("1999"), "names the line and the price: {v}");
    assert!(h.events_on("storefront.orders").is_empty(), "nothing placed");
    // The same attempt with the price it was shown now is placed.
    body["items"][0]["unit_price_minor"] = json!(1999);
    let (st, _, v) = h.raw(Method::POST, "/v1/orders", Some(&h.app_key), Some(body.to_string().into_bytes()), &[("idempotency-key", "p-1")]).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert_eq!(h.events_on("storefront.orders").len(), 1);
}

#[tokio::test]
async fn a_bad_order_is_a_400_naming_the_field() {
    let h = harness();
    h.seed_catalog();
    let (st, _, v) = h.call(Method::POST, "/v1/orders", Some(&h.app_key), Some(order_body())).await;
    assert_eq!((st, error_of(&v).1), (StatusCode::BAD_REQUEST, Some("Idempotency-Key")), "{v}");
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(Edit, &str)> = vec![
        (Box::new(|b| b["items"][0]["sku"] = json!("NOPE")), "items[0].sku"),
        (Box::new(|b| b["items"][0]["quantity"] = json!("two")), "items[0].quantity"),
        (Box::new(|b| b["items"][0]["quantity"] = json!(0)), "items[0].quantity"),
        (Box::new(|b| b["shipping_address"]["country"] = json!("Germany")), "shipping_address.country"),
        (Box::new(|b| { b.as_object_mut().unwrap().remove("customer_id"); }), "customer_id"),
        (Box::new(|b| b["coupon"] = json!("X")), "coupon"),
        (Box::new(|b| b["currency"] = json!("USD")), "items[0].sku"),
        (Box::new(|b| b["items"] = json!([])), "items"),
    ];
    for (i, (edit, field)) in cases.into_iter().enumerate() {
        let mut b = order_body();
        edit(&mut b);
        let key = format!("k-{i}");
        let (st, _, v) = h.raw(Method::POST, "/v1/orders", Some(&h.app_key), Some(b.to_string().into_bytes()), &[("idempotency-key", &key)]).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{field}: {v}");
        assert_eq!(error_of(&v).1, Some(field), "{v}");
    }
    assert!(h.events_on("storefront.orders").is_empty());
}

#[tokio::test]
async fn an_order_shows_its_states_items_totals_and_history_and_an_unknown_one_is_404() {
    let h = harness();
    h.seed_order("o-1", "confirmed");
    let (st, _, v) = h.call(Method::GET, "/v1/orders/o-1", Some(&h.service), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "confirmed");
    assert_eq!(v["total_minor"], 3998);
    assert_eq!(v["items"][0]["sku"], "S1");
    let types: Vec<&str> = v["history"].as_array().unwrap().iter().map(|e| e["event_type"].as_str().unwrap()).collect();
    assert_eq!(types, ["OrderPlaced", "OrderStatusChanged"]);
    let (st, _, v) = h.call(Method::GET, "/v1/orders/nope", Some(&h.service), None).await;
    assert_eq!((st, error_of(&v).0), (StatusCode::NOT_FOUND, "not_found"));
}

#[tokio::test]
async fn cancelling_publishes_a_request_but_a_shipped_order_is_409_and_an_unknown_one_404() {
    let h = harness();
    h.seed_order("o-ok", "reserved");
    h.seed_order("o-shipped", "shipped");
    let (st, _, v) = h.call(Method::POST, "/v1/orders/o-ok/cancel", Some(&h.service), Some(json!({"reason": "changed my mind"}))).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["status"], "cancel_requested");
    let (st, _, v) = h.call(Method::POST, "/v1/orders/o-shipped/cancel", Some(&h.service), Some(json!({"reason": "late"}))).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("shipped"));
    let (st, _, _) = h.call(Method::POST, "/v1/orders/nope/cancel", Some(&h.service), Some(json!({"reason": "x"}))).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _, v) = h.call(Method::POST, "/v1/orders/o-ok/cancel", Some(&h.service), Some(json!({"why": "x"}))).await;
    assert_eq!((st, error_of(&v).1), (StatusCode::BAD_REQUEST, Some("why")), "{v}");
    let on_log = h.events_on("storefront.orders");
    assert_eq!(on_log.len(), 1);
    assert!(matches!(&on_log[0], Event::OrderCancelRequested(c) if c.order_id == "o-ok" && c.requested_by == "customer"));
}

#[tokio::test]
async fn a_return_needs_a_delivered_order_and_its_own_skus() {
    let h = harness();
    h.seed_order("o-del", "delivered");
    h.seed_order("o-new", "placed");
    let ret = json!({"items": [{"sku": "S1", "quantity": 1}], "reason": "too small"});
    let (st, _, v) = h.call(Method::POST, "/v1/orders/o-del/returns", Some(&h.service), Some(ret.clone())).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert!(v["return_id"].as_str().unwrap().starts_with("ret_"));
    let (st, _, _) = h.call(Method::POST, "/v1/orders/o-new/returns", Some(&h.service), Some(ret)).await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (st, _, v) = h.call(Method::POST, "/v1/orders/o-del/returns", Some(&h.service), Some(json!({"items": [{"sku": "S9", "quantity": 1}], "reason": "x"}))).await;
    assert_eq!((st, error_of(&v).1), (StatusCode::BAD_REQUEST, Some("items[0].sku")));
    let (st, _, v) = h.call(Method::POST, "/v1/orders/o-del/returns", Some(&h.service), Some(json!({"items": [{"sku": "S1", "quantity": 5}], "reason": "x"}))).await;
    assert_eq!((st, error_of(&v).1), (StatusCode::BAD_REQUEST, Some("items[0].quantity")));
    let (st, _, _) = h.call(Method::POST, "/v1/orders/nope/returns", Some(&h.service), Some(json!({"items": [], "reason": "x"}))).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(matches!(&h.events_on("storefront.orders")[..], [Event::ReturnRequested(r)] if r.order_id == "o-del"));
}

#[tokio::test]
async fn inventory_is_totalled_over_warehouses_and_an_unknown_sku_is_404() {
    let h = harness();
    h.seed_catalog();
    let (st, _, v) = h.call(Method::GET, "/v1/inventory/S1", Some(&h.app_key), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!((v["on_hand"].as_i64(), v["reserved"].as_i64(), v["available"].as_i64()), (Some(15), Some(2), Some(13)));
    assert_eq!(v["warehouses"].as_array().unwrap().len(), 2);
    let (st, _, _) = h.call(Method::GET, "/v1/inventory/NOPE", Some(&h.app_key), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_product_is_served_and_an_unknown_one_is_404() {
    let h = harness();
    h.seed_catalog();
    let (st, _, v) = h.call(Method::GET, "/v1/products/P1", Some(&h.app_key), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!((v["vendor_id"].as_str(), v["price_minor"].as_i64()), (Some("V-A"), Some(1999)));
    let (st, _, _) = h.call(Method::GET, "/v1/products/NOPE", Some(&h.app_key), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

/// A search backend that answers with what it was asked.
struct EchoSearch(parking_lot::Mutex<Option<SearchQuery>>);

impl SearchIndex for EchoSearch {
    fn search<'a>(&'a self, q: &'a SearchQuery) -> ReadFuture<'a, SearchResults> {
        *self.0.lock() = Some(q.clone());
        async { Ok(SearchResults { total: 7, ..SearchResults::default() }) }.boxed()
    }
}

#[tokio::test]
async fn search_passes_every_filter_to_the_backend_and_answers_503_without_one() {
    let h = harness_with(ApiConfig::default(), |mut r| {
        r.search = None;
        r
    });
    let (st, _, v) = h.call(Method::GET, "/v1/search?q=x", Some(&h.app_key), None).await;
    assert_eq!((st, error_of(&v).0), (StatusCode::SERVICE_UNAVAILABLE, "unavailable"));

    let echo = Arc::new(EchoSearch(parking_lot::Mutex::new(None)));
    let e = echo.clone();
    let h = harness_with(ApiConfig::default(), move |mut r| {
        r.search = Some(e);
        r
    });
    let uri = "/v1/search?q=red%20shoe&category=fashion&brand=Acme,Zed&price_min=100&price_max=900&rating=4&in_stock=true&vendor=V-A&sort=price_asc&page=2&size=5";
    let (st, _, v) = h.call(Method::GET, uri, Some(&h.app_key), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["total"], 7);
    let q = echo.0.lock().clone().unwrap();
    assert_eq!(q.text.as_deref(), Some("red shoe"));
    assert_eq!(q.brands, ["Acme", "Zed"]);
    assert_eq!(
        (q.min_price_eur_minor, q.max_price_eur_minor, q.min_rating, q.in_stock, q.page, q.per_page),
        (Some(100), Some(900), Some(4.0), true, 2, 5)
    );
    assert_eq!(q.sort, storeflow_api::read::SortBy::PriceAsc);
    // A vendor's search is always its own products.
    h.call(Method::GET, "/v1/search?q=x", Some(&h.vendor_b), None).await;
    assert_eq!(echo.0.lock().clone().unwrap().vendor_id.as_deref(), Some("V-B"));
    for (uri, field) in [("/v1/search?size=500", "size"), ("/v1/search?price_min=abc", "price_min"), ("/v1/search?sort=cheap", "sort"), ("/v1/search?rating=9", "rating")] {
        let (st, _, v) = h.call(Method::GET, uri, Some(&h.app_key), None).await;
        assert_eq!((st, error_of(&v).1), (StatusCode::BAD_REQUEST, Some(field)), "{uri}: {v}");
    }
}

#[tokio::test]
async fn search_and_recommendations_can_be_public() {
    let h = harness_with(ApiConfig { public_search: true, public_recommendations: true, ..ApiConfig::default() }, |mut r| {
        r.search = None;
        r
    });
    h.seed_catalog();
    let (st, _, _) = h.call(Method::GET, "/v1/recommendations?type=trending", None, None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, _) = h.call(Method::GET, "/v1/products/P1", None, None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, _) = h.call(Method::GET, "/v1/search?q=x", None, None).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "public, but no backend here");
}

#[tokio::test]
async fn recommendations_leave_out_products_out_of_stock() {
    let h = harness();
    h.seed_catalog();
    h.live.apply(&ev(json!({"type": "RecommendationsUpdated", "product_id": "P3", "kind": "similar",
        "items": [{"product_id": "P2", "score": 0.9}, {"product_id": "P1", "score": 0.5}]})));
    h.live.apply(&ev(json!({"type": "RecommendationsUpdated", "product_id": "-", "kind": "trending", "category": "electronics/audio",
        "items": [{"product_id": "P2", "score": 3.0}, {"product_id": "P1", "score": 2.0}]})));
    let (st, _, v) = h.call(Method::GET, "/v1/recommendations?type=similar&product_id=P3", Some(&h.app_key), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["items"], json!([{"product_id": "P1", "score": 0.5}]), "P2 is sold out");
    let (_, _, v) = h.call(Method::GET, "/v1/recommendations?type=trending&category=electronics/audio&limit=1", Some(&h.app_key), None).await;
    assert_eq!(v["items"][0]["product_id"], "P1");
    for (uri, field) in [
        ("/v1/recommendations?type=similar", "product_id"),
        ("/v1/recommendations?type=for_session", "session_id"),
        ("/v1/recommendations?type=best", "type"),
        ("/v1/recommendations?type=trending&limit=0", "limit"),
    ] {
        let (st, _, v) = h.call(Method::GET, uri, Some(&h.app_key), None).await;
        assert_eq!((st, error_of(&v).1), (StatusCode::BAD_REQUEST, Some(field)), "{uri}: {v}");
    }
    let (st, _, v) = h.call(Method::GET, "/v1/recommendations", Some(&h.app_key), None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
}

fn sales_minute(vendor: &str, minute_ms: i64, gmv: i64) -> Event {
    ev(json!({"type": "VendorSalesMinute", "vendor_id": vendor, "minute": minute_ms, "currency": "EUR", "orders": 1, "units": 2,
        "gmv_minor": gmv, "refunds_minor": 0, "commission_minor": gmv / 10, "net_payout_minor": gmv - gmv / 10,
        "base_currency": "EUR", "gmv_base_minor": gmv, "net_payout_base_minor": gmv - gmv / 10}))
}

#[tokio::test]
async fn vendor_sales_roll_up_by_hour_and_bad_parameters_name_themselves() {
    let h = harness();
    let hour = 1_764_064_800_000i64; // 2025-11-25T10:00Z
    for (i, gmv) in [(0, 1000), (1, 2000), (61, 500)] {
        h.live.apply(&sales_minute("V-A", hour + i * 60_000, gmv));
    }
    h.live.apply(&sales_minute("V-A", hour + 60_000, 2500)); // a newer figure of minute 1 replaces it
    let uri = format!("/v1/vendors/V-A/sales?from={hour}&to={}&granularity=hour", hour + 3 * 3_600_000);
    let (st, _, v) = h.call(Method::GET, &uri, Some(&h.vendor_a), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let gmv: Vec<i64> = v["buckets"].as_array().unwrap().iter().map(|b| b["gmv_minor"].as_i64().unwrap()).collect();
    assert_eq!(gmv, [3500, 500]);
    let (st, _, v) = h.call(Method::GET, "/v1/vendors/V-A/sales?from=2025-11-25T10:00:00Z&to=2025-11-25T10:01:00Z", Some(&h.analyst), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["buckets"][0]["gmv_minor"], 1000);
    for (uri, field) in [
        ("/v1/vendors/V-A/sales?granularity=week", "granularity"),
        ("/v1/vendors/V-A/sales?from=yesterday", "from"),
        ("/v1/vendors/V-A/sales?from=2000&to=1000", "from"),
    ] {
        let (st, _, v) = h.call(Method::GET, uri, Some(&h.vendor_a), None).await;
        assert_eq!((st, error_of(&v).1), (StatusCode::BAD_REQUEST, Some(field)), "{uri}: {v}");
    }
}

#[tokio::test]
async fn the_sales_stream_sends_one_message_per_update_of_that_vendor_only() {
    let h = harness();
    let req = axum::http::Request::get("/v1/vendors/V-A/sales/stream")
        .header("authorization", format!("Bearer {}", h.vendor_a))
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = h.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    h.live.apply(&sales_minute("V-B", 1_764_064_800_000, 999));
    h.live.apply(&sales_minute("V-A", 1_764_064_800_000, 1234));
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame()).await.unwrap().unwrap().unwrap();
    let text = String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap();
    assert!(text.starts_with("event: sales\n"), "{text}");
    assert!(text.contains("\"gmv_minor\":1234"), "{text}");
    assert!(!text.contains("999"), "another vendor's update is not sent: {text}");
}

#[tokio::test]
async fn the_dashboard_and_vendor_performance_count_every_order_placed_today() {
    let h = harness();
    h.seed_catalog();
    h.seed_order("o-1", "confirmed");
    h.seed_order("o-2", "placed");
    h.seed_order("o-3", "cancelled");
    // 24h: analytics' 1h is the current clock hour (an order just before a full hour drops out).
    // Gross: an order placed counts whatever became of it (cancellations and returns are
    // their own figures).
    let (st, _, v) = h.call(Method::GET, "/v1/analytics/dashboard?range=24h", Some(&h.analyst), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!((v["orders"].as_i64(), v["gmv_eur_minor"].as_i64(), v["units"].as_i64()), (Some(3), Some(11_994), Some(6)));
    assert_eq!(v["top_products"][0]["product_id"], "P1");
    assert_eq!(v["top_categories"][0]["category"], "electronics/audio");
    let (st, _, v) = h.call(Method::GET, "/v1/analytics/dashboard?range=1y", Some(&h.analyst), None).await;
    assert_eq!((st, error_of(&v).1), (StatusCode::BAD_REQUEST, Some("range")), "{v}");
    let (st, _, v) = h.call(Method::GET, "/v1/analytics/vendors/V-A?range=7d", Some(&h.vendor_a), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!((v["orders"].as_i64(), v["gmv_eur_minor"].as_i64()), (Some(3), Some(11_994)));
    // The customer behind them: three orders today, a loyal customer at no risk yet.
    let (st, _, v) = h.call(Method::GET, "/v1/analytics/customers/C1", Some(&h.analyst), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!((v["orders"].as_i64(), v["gmv_eur_minor"].as_i64(), v["aov_eur_minor"].as_i64()), (Some(3), Some(11_994), Some(3_998)));
    assert_eq!((v["segment"].as_str(), v["churn_risk"].as_str(), v["days_since_last_order"].as_i64()), (Some("loyal"), Some("low"), Some(0)));
    let (st, _, v) = h.call(Method::GET, "/v1/analytics/customers/C-nobody", Some(&h.analyst), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    let (st, _, v) = h.call(Method::GET, "/v1/analytics/customers/C1", Some(&h.vendor_a), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "a vendor reads no customer's insights: {v}");
    // A hostile id is a 400 naming it, before any store is asked.
    let long = format!("/v1/analytics/customers/{}", "c".repeat(129));
    for bad in [long.as_str(), "/v1/analytics/customers/C%0A1", "/v1/analytics/customers/%7F"] {
        let (st, _, v) = h.call(Method::GET, bad, Some(&h.analyst), None).await;
        assert_eq!((st, error_of(&v).1), (StatusCode::BAD_REQUEST, Some("id")), "{bad}: {v}");
    }
}

#[tokio::test]
async fn an_admin_creates_keys_that_work_at_once() {
    let h = harness();
    h.seed_catalog();
    let (st, _, v) = h.call(Method::POST, "/v1/admin/keys", Some(&h.admin), Some(json!({"role": "vendor:V-B"}))).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let key = v["key"].as_str().unwrap().to_string();
    let (st, _, _) = h.call(Method::GET, "/v1/products/P3", Some(&key), None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, _) = h.call(Method::GET, "/v1/products/P1", Some(&key), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _, v) = h.call(Method::POST, "/v1/admin/keys", Some(&h.admin), Some(json!({"role": "root"}))).await;
    assert_eq!((st, error_of(&v).1), (StatusCode::BAD_REQUEST, Some("role")));
}

#[tokio::test]
async fn an_admin_lists_keys_without_secrets_and_a_revoked_key_gets_401() {
    let h = harness();
    let (st, _, v) = h.call(Method::GET, "/v1/admin/keys", Some(&h.admin), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 6, "admin, app, service, two vendors, analyst: {v}");
    assert!(!v.to_string().contains(&h.app_key) && !v.to_string().contains("sha256"), "{v}");
    let app_id = keys.iter().find(|k| k["role"] == "app").unwrap()["id"].as_str().unwrap().to_string();

    assert_eq!(h.call(Method::GET, "/v1/inventory/S1", Some(&h.app_key), None).await.0, StatusCode::NOT_FOUND);
    let (st, _, v) = h.call(Method::DELETE, &format!("/v1/admin/keys/{app_id}"), Some(&h.admin), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    let (st, _, v) = h.call(Method::GET, "/v1/inventory/S1", Some(&h.app_key), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    let (st, _, v) = h.call(Method::DELETE, &format!("/v1/admin/keys/{app_id}"), Some(&h.admin), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");

    // Only admins manage keys, and the last admin key stays.
    let (st, _, _) = h.call(Method::GET, "/v1/admin/keys", Some(&h.analyst), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _, _) = h.call(Method::DELETE, &format!("/v1/admin/keys/{app_id}"), Some(&h.vendor_a), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (_, _, v) = h.call(Method::GET, "/v1/admin/keys", Some(&h.admin), None).await;
    let admin_id = v["keys"].as_array().unwrap().iter().find(|k| k["role"] == "admin").unwrap()["id"].as_str().unwrap().to_string();
    let (st, _, v) = h.call(Method::DELETE, &format!("/v1/admin/keys/{admin_id}"), Some(&h.admin), None).await;
    assert_eq!((st, v["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("last_admin_key")), "{v}");
}

#[tokio::test]
async fn probes_metrics_and_unknown_paths_answer() {
    let h = harness();
    let (st, _, v) = h.call(Method::GET, "/healthz", None, None).await;
    assert_eq!((st, v["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (st, _, v) = h.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    h.call(Method::GET, "/v1/orders/x", Some(&h.service), None).await;
    let (st, headers, v) = h.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(headers["content-type"].to_str().unwrap().contains("openmetrics"));
    let text = v.as_str().unwrap();
    assert!(text.contains("storeflow_api_http_requests_total{method=\"GET\",route=\"/v1/orders/{id}\",status=\"404\"} 1"), "{text}");
    let (st, _, v) = h.call(Method::GET, "/v2/nothing", Some(&h.app_key), None).await;
    assert_eq!((st, error_of(&v).0), (StatusCode::NOT_FOUND, "not_found"));
}

#[tokio::test]
async fn readiness_names_a_backend_that_is_not_ready_to_admins_only() {
    struct NotReady;
    impl storeflow_api::read::Ready for NotReady {
        fn ready(&self) -> ReadFuture<'_, ()> {
            async { Err(storeflow_api::read::ReadError::Unavailable("still reading".into())) }.boxed()
        }
    }
    let h = harness_with(ApiConfig::default(), |mut r| {
        r.readiness.push(("search", Arc::new(NotReady)));
        r
    });
    let (st, _, v) = h.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["problems"], Value::Null, "the detail is for admins only: {v}");
    let (st, _, v) = h.call(Method::GET, "/readyz", Some(&h.admin), None).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["problems"], json!(["search: still reading"]));
}

#[tokio::test]
async fn every_route_is_in_the_openapi_document() {
    let h = harness();
    let (st, _, spec) = h.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"), "{}", spec["openapi"]);
    let routes = [
        ("post", "/v1/events"), ("post", "/v1/orders"), ("get", "/v1/orders/{id}"), ("post", "/v1/orders/{id}/cancel"),
        ("post", "/v1/orders/{id}/returns"), ("post", "/v1/webhooks/stripe"), ("get", "/v1/inventory/{sku}"), ("get", "/v1/products/{id}"), ("get", "/v1/search"),
        ("get", "/v1/recommendations"), ("get", "/v1/vendors/{id}/sales"), ("get", "/v1/vendors/{id}/sales/stream"),
        ("post", "/v1/vendors/{id}/plan"), ("get", "/v1/vendors/{id}/onboarding"), ("get", "/v1/vendors/{id}/orders"), ("get", "/v1/vendors/{id}/low-stock"),
        ("get", "/v1/analytics/dashboard"), ("get", "/v1/analytics/vendors/{id}"), ("get", "/v1/analytics/customers/{id}"),
        ("get", "/v1/analytics/inventory"), ("get", "/v1/analytics/fraud"), ("post", "/v1/admin/keys"),
        ("get", "/v1/admin/keys"), ("delete", "/v1/admin/keys/{id}"),
        ("get", "/healthz"), ("get", "/readyz"), ("get", "/metrics"),
    ];
    let paths = spec["paths"].as_object().unwrap();
    for (m, p) in routes {
        assert!(paths.get(p).and_then(|o| o.get(m)).is_some(), "{m} {p} is missing from /openapi.json");
    }
    // …and the document lists nothing else, so the two lists cannot drift apart.
    let documented: usize = paths.values().map(|o| o.as_object().unwrap().len()).sum();
    assert_eq!(documented, routes.len());
    // Every route answers something other than "no such endpoint".
    for (m, p) in routes.into_iter().filter(|(_, p)| !p.ends_with("/stream")) {
        let uri = p.replace("{id}", "x").replace("{sku}", "x");
        let method = match m {
            "get" => Method::GET,
            "delete" => Method::DELETE,
            _ => Method::POST,
        };
        let (st, _, v) = h.call(method, &uri, Some(&h.admin), Some(json!({}))).await;
        assert!(v.get("error").is_none_or(|e| e["message"] != "no such endpoint; see /openapi.json"), "{m} {uri}: {st} {v}");
    }
    // Every referenced schema exists.
    let text = spec.to_string();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = r.split('"').next().unwrap();
        assert!(spec["components"]["schemas"].get(name).is_some(), "schema {name} is referenced but not defined");
    }
}

#[tokio::test]
async fn absurd_amounts_do_not_crash_the_sinks_or_the_api() {
    let h = harness();
    h.feed([ev(json!({"type": "ProductCreated", "product_id": "PX", "vendor_id": "V-A", "sku": "SX", "title": "Gold",
        "description": "x", "category": "c", "brand": "b", "price_minor": 4_000_000_000_000_000_000i64, "currency": "EUR"}))]);
    let mut body = order_body();
    body["items"] = json!([{"sku": "SX", "quantity": 2_000_000_000}]);
    let (st, _, v) = h.raw(Method::POST, "/v1/orders", Some(&h.app_key), Some(body.to_string().into_bytes()), &[("idempotency-key", "big")]).await;
    assert_eq!((st, error_of(&v).1), (StatusCode::BAD_REQUEST, Some("items")), "the API refuses a total that overflows: {v}");
    assert!(h.events_on("storefront.orders").is_empty());
    // Such an order arriving on the log some other way crashes nothing: the sinks refuse it
    // (the contract's amount rules) to the dead-letter topic, and no store holds it.
    h.feed([ev(json!({"type": "OrderPlaced", "order_id": "o-big", "customer_id": "C1",
        "items": [{"sku": "SX", "product_id": "PX", "vendor_id": "V-A", "quantity": 2_000_000_000, "unit_price_minor": 4_000_000_000_000_000_000i64}],
        "currency": "EUR", "shipping_address": address(), "billing_address": address(),
        "payment_method_token": "pm_x", "client_ip": "203.0.113.9"}))]);
    let (st, _, v) = h.call(Method::GET, "/v1/orders/o-big", Some(&h.admin), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    let dead: u64 = h.log.describe_topics().unwrap().iter().filter(|t| t.name == "storefront.orders.dlq").map(|t| t.records()).sum();
    assert!(dead >= 1, "the refused order is dead-lettered");
    let (st, _, v) = h.call(Method::GET, "/v1/analytics/dashboard?range=24h", Some(&h.analyst), None).await;
    assert_eq!((st, v["orders"].as_i64()), (StatusCode::OK, Some(0)), "{v}");
    let (st, _, _) = h.raw(Method::GET, "/v1/orders/%FF%FE", Some(&h.service), None, &[]).await;
    assert!(st == StatusCode::NOT_FOUND || st == StatusCode::BAD_REQUEST, "{st}");
}

#[tokio::test]
async fn a_vendor_reads_its_recent_orders_and_running_out_skus_and_another_vendor_gets_403() {
    let h = harness();
    h.seed_catalog();
    h.seed_order("o-1", "placed");
    h.seed_order("o-2", "confirmed");
    let (st, _, v) = h.call(Method::GET, "/v1/vendors/V-A/orders", Some(&h.vendor_a), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let mut got: Vec<(String, String, i64, i64, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["order_id"].as_str().unwrap().into(), o["status"].as_str().unwrap().into(), o["units"].as_i64().unwrap(), o["lines_minor"].as_i64().unwrap(), o["currency"].as_str().unwrap().into()))
        .collect();
    got.sort();
    assert_eq!(got, [("o-1".into(), "placed".into(), 2, 3998, "EUR".into()), ("o-2".into(), "confirmed".into(), 2, 3998, "EUR".into())]);
    assert!(v[0].get("customer_id").is_none(), "a vendor does not see who ordered: {v}");
    // V-B has no line in them; V-B's key cannot read V-A's.
    let (st, _, v) = h.call(Method::GET, "/v1/vendors/V-B/orders", Some(&h.vendor_b), None).await;
    assert_eq!((st, v), (StatusCode::OK, json!([])));
    let (st, _, v) = h.call(Method::GET, "/v1/vendors/V-A/orders", Some(&h.vendor_b), None).await;
    assert_eq!((st, error_of(&v).0), (StatusCode::FORBIDDEN, "forbidden"), "{v}");
    let (st, _, v) = h.call(Method::GET, "/v1/vendors/V-A/orders?limit=1", Some(&h.analyst), None).await;
    assert_eq!((st, v.as_array().map(Vec::len)), (StatusCode::OK, Some(1)), "{v}");
    for bad in ["limit=0", "limit=101", "limit=many"] {
        let (st, _, v) = h.call(Method::GET, &format!("/v1/vendors/V-A/orders?{bad}"), Some(&h.vendor_a), None).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert!(v.to_string().contains("limit"), "{bad}: {v}");
    }

    // Running out: S2 is sold out in W1, S1 has 5 left in W2 (the default bar is 5); with a
    // higher bar S1 in W1 shows too, fewest first; with 0 only what is sold out.
    let (st, _, v) = h.call(Method::GET, "/v1/vendors/V-A/low-stock?max_available=0", Some(&h.vendor_a), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, json!([{"sku": "S2", "product_id": "P2", "title": "Product P2", "warehouse_id": "W1", "on_hand": 0, "reserved": 0, "available": 0}]));
    let (_, _, v) = h.call(Method::GET, "/v1/vendors/V-A/low-stock", Some(&h.vendor_a), None).await;
    let rows: Vec<(&str, &str, i64)> = v.as_array().unwrap().iter().map(|r| (r["sku"].as_str().unwrap(), r["warehouse_id"].as_str().unwrap(), r["available"].as_i64().unwrap())).collect();
    assert_eq!(rows, [("S2", "W1", 0), ("S1", "W2", 5)]);
    let (_, _, v) = h.call(Method::GET, "/v1/vendors/V-A/low-stock?max_available=20", Some(&h.vendor_a), None).await;
    let rows: Vec<(&str, &str, i64)> = v.as_array().unwrap().iter().map(|r| (r["sku"].as_str().unwrap(), r["warehouse_id"].as_str().unwrap(), r["available"].as_i64().unwrap())).collect();
    assert_eq!(rows, [("S2", "W1", 0), ("S1", "W2", 5), ("S1", "W1", 8)]);
    let (st, _, v) = h.call(Method::GET, "/v1/vendors/V-A/low-stock", Some(&h.vendor_b), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, _, v) = h.call(Method::GET, "/v1/vendors/V-A/low-stock?max_available=-1", Some(&h.vendor_a), None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains("max_available"), "{v}");
}
