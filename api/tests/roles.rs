//! Trust boundaries through the router: which role may publish which event type, which
//! orders an app key may touch, and what of an order each role sees.

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use serde_json::{Value, json};
use storeflow_avro::{EVENT_TYPES, EventType};

fn error_of(v: &Value) -> (&str, Option<&str>) {
    (v["error"]["code"].as_str().unwrap_or("?"), v["error"]["field"].as_str())
}

/// The contract's example of `t`, about vendor V-A, without an event id (so that every
/// post is published, not deduplicated).
fn example_of_vendor_a(t: &EventType) -> Value {
    let mut v = storeflow_avro::json::example(t);
    let m = v.as_object_mut().unwrap();
    m.remove("event_id");
    if m.contains_key("vendor_id") {
        m.insert("vendor_id".into(), json!("V-A"));
    }
    v
}

/// The matrix of docs/API.md ("Roles"), written out here rather than read from the code
/// it checks.
fn allowed(role: &str, event_type: &str) -> bool {
    const SHOPPER: &[&str] = &[
        "PageViewed", "ProductViewed", "SearchPerformed", "CartItemAdded", "CartItemRemoved", "CheckoutStarted",
        "CustomerRegistered", "ReviewSubmitted",
    ];
    const VENDOR_CATALOG: &[&str] = &["ProductCreated", "ProductUpdated", "PriceChanged"];
    const ORDERS: &[&str] = &["OrderPlaced", "OrderCancelRequested", "ReturnRequested"];
    match role {
        "admin" => true,
        "service" => !ORDERS.contains(&event_type),
        "app" => SHOPPER.contains(&event_type),
        "vendor:V-A" => VENDOR_CATALOG.contains(&event_type),
        "vendor:V-B" | "analyst" => false,
        other => panic!("no such role in the matrix: {other}"),
    }
}

#[tokio::test]
async fn every_input_event_type_is_accepted_or_refused_for_every_role_as_the_matrix_says() {
    let h = harness();
    let roles = [
        ("app", &h.app_key),
        ("service", &h.service),
        ("vendor:V-A", &h.vendor_a),
        ("vendor:V-B", &h.vendor_b),
        ("analyst", &h.analyst),
        ("admin", &h.admin),
    ];
    let inputs: Vec<&EventType> = EVENT_TYPES.iter().filter(|t| t.topic.is_input()).collect();
    assert_eq!(inputs.len(), 34, "a new input type: give it a row in the matrix (api/src/roles.rs, docs/API.md)");
    for t in inputs {
        for (role, key) in &roles {
            let before = h.published();
            let (st, _, v) = h.call(Method::POST, "/v1/events", Some(key), Some(example_of_vendor_a(t))).await;
            if allowed(role, t.name) {
                assert_eq!(st, StatusCode::ACCEPTED, "{role} publishing {}: {v}", t.name);
                assert_eq!(h.published(), before + 1, "{role} publishing {}", t.name);
            } else {
                assert_eq!((st, error_of(&v)), (StatusCode::FORBIDDEN, ("forbidden", Some("type"))), "{role} publishing {}: {v}", t.name);
                let message = v["error"]["message"].as_str().unwrap();
                assert!(message.contains(t.name) && message.contains(role), "the refusal names the type and the role: {message}");
                assert_eq!(h.published(), before, "{role} publishing {}: a refused event was published", t.name);
            }
        }
    }
}

#[tokio::test]
async fn a_batch_with_one_event_the_role_may_not_publish_is_refused_whole_naming_that_event() {
    let h = harness();
    let page = json!({"type": "PageViewed", "session_id": "s1", "page": "/"});
    let payment = json!({"type": "PaymentAuthorized", "order_id": "o-1", "payment_id": "pay_1", "amount_minor": 100,
        "currency": "EUR", "provider": "stripe"});
    let batch = json!({"events": [page.clone(), payment.clone(), page.clone()]});
    let (st, _, v) = h.call(Method::POST, "/v1/events", Some(&h.app_key), Some(batch.clone())).await;
    assert_eq!((st, error_of(&v)), (StatusCode::FORBIDDEN, ("forbidden", Some("events[1].type"))), "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("PaymentAuthorized") && message.contains("app"), "{message}");
    assert_eq!(h.published(), 0, "nothing of a refused batch is published");
    // The same batch from the payment provider's backend.
    let (st, _, v) = h.call(Method::POST, "/v1/events", Some(&h.service), Some(batch)).await;
    assert_eq!((st, v["accepted"].as_u64()), (StatusCode::ACCEPTED, Some(3)), "{v}");

    // An order as a raw event: refused, with where to place it instead.
    let mut order = storeflow_avro::json::example(EventType::by_name("OrderPlaced").unwrap());
    order.as_object_mut().unwrap().remove("event_id");
    for key in [&h.app_key, &h.service] {
        let (st, _, v) = h.call(Method::POST, "/v1/events", Some(key), Some(json!({"events": [page.clone(), order.clone()]}))).await;
        assert_eq!((st, error_of(&v).1), (StatusCode::FORBIDDEN, Some("events[1].type")), "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("POST /v1/orders"), "{v}");
    }
}

#[tokio::test]
async fn a_vendor_may_not_publish_for_another_vendor_in_any_event_of_a_batch() {
    let h = harness();
    let product = |pid: &str, vendor: &str| {
        json!({"type": "ProductCreated", "product_id": pid, "vendor_id": vendor, "sku": format!("{pid}-sku"), "title": "T",
            "description": "d", "category": "c", "brand": "b", "price_minor": 100, "currency": "EUR"})
    };
    let price = |pid: &str, vendor: &str| {
        json!({"type": "PriceChanged", "product_id": pid, "vendor_id": vendor, "sku": format!("{pid}-sku"),
            "old_price_minor": 100, "price_minor": 90, "currency": "EUR"})
    };
    let batch = json!({"events": [product("PA", "V-A"), price("PA", "V-A"), price("PB", "V-B")]});
    let (st, _, v) = h.call(Method::POST, "/v1/events", Some(&h.vendor_a), Some(batch)).await;
    assert_eq!((st, error_of(&v).1), (StatusCode::FORBIDDEN, Some("events[2].type")), "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("PriceChanged") && message.contains("vendor:V-A") && message.contains("V-B"), "{message}");
    assert_eq!(h.published(), 0);
    let (st, _, v) = h.call(Method::POST, "/v1/events", Some(&h.vendor_a), Some(json!({"events": [product("PA", "V-A"), price("PA", "V-A")]}))).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
}

#[tokio::test]
async fn a_vendor_may_not_take_over_another_vendors_product_or_sku() {
    let h = harness();
    h.seed_catalog(); // P3 under sku S3 is V-B's.
    let update = json!({"type": "ProductUpdated", "product_id": "P3", "vendor_id": "V-A", "title": "Mine now"});
    let (st, _, v) = h.call(Method::POST, "/v1/events", Some(&h.vendor_a), Some(update)).await;
    assert_eq!((st, error_of(&v).1), (StatusCode::FORBIDDEN, Some("type")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("P3"), "{v}");
    let created = |sku: &str| {
        json!({"type": "ProductCreated", "product_id": "P9", "vendor_id": "V-A", "sku": sku, "title": "T",
            "description": "d", "category": "c", "brand": "b", "price_minor": 1, "currency": "EUR"})
    };
    let (st, _, v) = h.call(Method::POST, "/v1/events", Some(&h.vendor_a), Some(json!({"events": [created("S3")]}))).await;
    assert_eq!((st, error_of(&v).1), (StatusCode::FORBIDDEN, Some("events[0].type")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("S3"), "{v}");
    assert_eq!(h.published(), 0);
    // Its own products, and new ones, are fine.
    let own = json!({"type": "ProductUpdated", "product_id": "P1", "vendor_id": "V-A", "title": "Better title"});
    for body in [own, created("S9")] {
        let (st, _, v) = h.call(Method::POST, "/v1/events", Some(&h.vendor_a), Some(body)).await;
        assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    }
}

/// Places `order_body()` with `key` and waits for the sinks to land it; the order id.
async fn place(h: &Harness, key: &str, idem: &str) -> String {
    let (st, _, v) = h.raw(Method::POST, "/v1/orders", Some(key), Some(order_body().to_string().into_bytes()), &[("idempotency-key", idem)]).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let id = v["order_id"].as_str().unwrap().to_string();
    h.feed([]);
    id
}

#[tokio::test]
async fn an_app_key_reads_cancels_and_returns_only_the_orders_placed_with_it() {
    let h = harness();
    h.seed_catalog();
    let (st, _, v) = h.call(Method::POST, "/v1/admin/keys", Some(&h.admin), Some(json!({"role": "app"}))).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let other_app = v["key"].as_str().unwrap().to_string();
    let mine = place(&h, &h.app_key, "mine-1").await;
    h.seed_order("o-elsewhere", "delivered");
    let ret = json!({"items": [{"sku": "S1", "quantity": 1}], "reason": "x"});

    let (st, _, v) = h.call(Method::GET, &format!("/v1/orders/{mine}"), Some(&h.app_key), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    for id in [mine.as_str(), "o-elsewhere", "no-such-order"] {
        for (m, uri, body) in [
            (Method::GET, format!("/v1/orders/{id}"), None),
            (Method::POST, format!("/v1/orders/{id}/cancel"), Some(json!({"reason": "x"}))),
            (Method::POST, format!("/v1/orders/{id}/returns"), Some(ret.clone())),
        ] {
            let key = if id == mine { &other_app } else { &h.app_key };
            let (st, _, v) = h.call(m.clone(), &uri, Some(key), body).await;
            assert_eq!((st, error_of(&v).0), (StatusCode::FORBIDDEN, "forbidden"), "{m} {uri}: {v}");
        }
    }
    assert_eq!(h.events_on("storefront.orders").len(), 1, "only the placed order: no refused request was published");
    // Its own order it cancels; services and admins reach every order.
    let (st, _, v) = h.call(Method::POST, &format!("/v1/orders/{mine}/cancel"), Some(&h.app_key), Some(json!({"reason": "x"}))).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    for key in [&h.service, &h.admin] {
        for id in [mine.as_str(), "o-elsewhere"] {
            let (st, _, v) = h.call(Method::GET, &format!("/v1/orders/{id}"), Some(key), None).await;
            assert_eq!(st, StatusCode::OK, "{id}: {v}");
        }
    }
    let (st, _, v) = h.call(Method::POST, "/v1/orders/o-elsewhere/returns", Some(&h.service), Some(ret)).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
}

#[tokio::test]
async fn an_order_read_by_an_app_key_has_no_client_ip_payment_token_or_addresses_and_by_admin_it_does() {
    let h = harness();
    h.seed_catalog();
    let id = place(&h, &h.app_key, "pii-1").await;
    h.feed([ev(json!({"type": "FraudScored", "order_id": id, "customer_id": "C1", "score": 70, "decision": "review",
        "reasons": [{"code": "ip_velocity_10m", "points": 40, "detail": "5 orders from 198.51.100.7 in 10 minutes"}]}))]);
    let personal = ["198.51.100.7", "pm_card_visa", "Street 1", "client_ip", "payment_method_token", "shipping_address", "billing_address"];

    let (st, _, v) = h.call(Method::GET, &format!("/v1/orders/{id}"), Some(&h.app_key), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let types: Vec<&str> = v["history"].as_array().unwrap().iter().map(|e| e["event_type"].as_str().unwrap()).collect();
    assert_eq!(types, ["OrderPlaced", "FraudScored"], "the history is still there");
    assert_eq!(v["history"][0]["payload"]["items"][0]["sku"], "S1", "and the rest of the payload");
    let text = v.to_string();
    for p in personal {
        assert!(!text.contains(p), "an app key sees {p}: {text}");
    }
    for key in [&h.admin, &h.service] {
        let (st, _, v) = h.call(Method::GET, &format!("/v1/orders/{id}"), Some(key), None).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let text = v.to_string();
        for p in personal {
            assert!(text.contains(p), "an admin or service key misses {p}: {text}");
        }
    }
}

#[tokio::test]
async fn a_service_key_is_made_through_the_api_works_at_once_and_is_documented() {
    let h = harness();
    let (st, _, v) = h.call(Method::POST, "/v1/admin/keys", Some(&h.admin), Some(json!({"role": "service"}))).await;
    assert_eq!((st, v["role"].as_str()), (StatusCode::CREATED, Some("service")), "{v}");
    let key = v["key"].as_str().unwrap().to_string();
    let stock = json!({"type": "StockReceived", "sku": "S1", "warehouse_id": "W1", "quantity": 5});
    let (st, _, v) = h.call(Method::POST, "/v1/events", Some(&key), Some(stock)).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let (_, _, v) = h.call(Method::GET, "/v1/admin/keys", Some(&h.admin), None).await;
    assert_eq!(v["keys"].as_array().unwrap().iter().filter(|k| k["role"] == "service").count(), 2, "the harness' and this one: {v}");
    let (st, _, v) = h.call(Method::POST, "/v1/admin/keys", Some(&h.admin), Some(json!({"role": "services"}))).await;
    assert_eq!((st, error_of(&v).1), (StatusCode::BAD_REQUEST, Some("role")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("service"), "the error lists the roles: {v}");
    let (_, _, spec) = h.call(Method::GET, "/openapi.json", None, None).await;
    let doc = spec["components"]["schemas"]["NewKey"]["properties"]["role"]["description"].as_str().unwrap_or_default();
    assert!(doc.contains("service"), "NewKey.role in /openapi.json: {doc}");
}
