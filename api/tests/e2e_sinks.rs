//! End to end with the sinks: the API, every processor and the sinks'
//! embedded twins (SQLite read model, tantivy search, Parquet + DataFusion analytics) on
//! the embedded log. Orders, stock and products come from the read model, search from the
//! index, the dashboard from analytics. The same reads on the real services (Kafka,
//! Postgres, Elasticsearch, ClickHouse) are `e2e_services.rs`.
//!
//! `cargo test -p storeflow-api --test e2e_sinks`


#[path = "common/client.rs"]
mod client;
#[path = "common/stack.rs"]
mod stack;

use std::sync::Arc;
use std::time::Duration;

use client::{address, now, uuid};
use serde_json::json;
use storeflow_avro::Codec;
use storeflow_ingest::publish::contract_topics;
use storeflow_ingest::{EmbeddedLog, Log};
use storeflow_sinks::{Sinks, SinksConfig};

#[test]
fn an_order_placed_over_http_shows_in_the_read_model_the_search_index_and_analytics() {
    with_stack(|c, admin, service| async move {
        let app = c.new_key(&admin, "app").await;
        let analyst = c.new_key(&admin, "analyst").await;

        let (st, v) = c
            .post("/v1/events", &service, json!({"events": [
                {"type": "VendorOnboarded", "event_id": uuid(1), "occurred_at": now(), "vendor_id": "V-A", "name": "Acme", "country": "DE", "plan": "pro", "payout_currency": "EUR"},
                {"type": "ProductCreated", "event_id": uuid(2), "occurred_at": now(), "product_id": "P1", "vendor_id": "V-A", "sku": "S1", "title": "Studio headphones", "description": "Closed-back",
                 "category": "electronics/audio", "brand": "Acme", "price_minor": 4999, "currency": "EUR"},
                {"type": "StockReceived", "event_id": uuid(3), "occurred_at": now(), "sku": "S1", "warehouse_id": "wh-de-berlin", "quantity": 10}
            ]}))
            .await;
        assert_eq!(st, 202, "{v}");
        c.eventually("/v1/products/P1", &app, "product in the read model", |v| v["price_minor"] == 4999).await;
        c.eventually("/v1/inventory/S1", &app, "stock in the read model", |v| v["available"] == 10).await;

        let order = json!({"customer_id": "C1", "items": [{"sku": "S1", "quantity": 2}], "currency": "EUR",
            "shipping_address": address(), "payment_method_token": "pm_card_visa", "client_ip": "198.51.100.7"});
        let (st, placed) = c.send(reqwest::Method::POST, "/v1/orders", &app, Some(order), Some("e2e-sinks-1")).await;
        assert_eq!(st, 202, "{placed}");
        let id = placed["order_id"].as_str().unwrap().to_string();
        let o = c.eventually(&format!("/v1/orders/{id}"), &app, "reserved in the read model", |v| v["status"] == "reserved").await;
        assert_eq!(o["total_minor"], 9998);
        c.eventually("/v1/inventory/S1", &app, "stock reserved in the read model", |v| v["reserved"] == 2 && v["available"] == 8).await;

        let found = c.eventually("/v1/search?q=headphnes&in_stock=true", &app, "found by a typo", |v| v["total"] == 1).await;
        assert_eq!(found["hits"][0]["product_id"], "P1");
        assert!(found["facets"]["brands"].as_array().is_some_and(|b| !b.is_empty()), "{found}");

        // 24h: analytics' 1h is the current clock hour (an order just before a full hour drops out).
        let d = c.eventually("/v1/analytics/dashboard?range=24h", &analyst, "dashboard from analytics", |v| v["orders"] == 1).await;
        assert_eq!(d["gmv_eur_minor"], 9998, "{d}");
        assert_eq!(c.get("/readyz", &app).await.0, 200);
    });
}

/// Every processor and the embedded sinks on an embedded log, with the API beside them as
/// `storeflow run` wires it: runs `body` with a client, the admin key and a service key, then
/// stops it all.
fn with_stack<F: std::future::Future<Output = ()>>(body: impl FnOnce(client::Client, String, String) -> F) {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir.path().join("log")).unwrap());
    log.create_topics(&contract_topics(Some(2))).unwrap();
    let codec = Arc::new(Codec::embedded().unwrap());
    let mut registry = prometheus_client::registry::Registry::default();
    let runtimes = stack::processors(&log, &codec, "e2e", &mut registry);
    let sinks = Sinks::start(log.clone(), codec.clone(), SinksConfig::embedded(dir.path().join("sinks")), &mut registry).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (live, c, admin, service) = stack::serve_beside_sinks(&rt, &log, &codec, &sinks, dir.path(), registry);
    rt.block_on(body(c, admin, service));
    rt.shutdown_timeout(Duration::from_secs(5));
    live.stop();
    sinks.stop().unwrap();
    for r in runtimes {
        r.stop().unwrap();
    }
}

/// Keeps reading `path` for a while after `ok` first held, asserting it keeps holding (a
/// later, "older-looking" snapshot must not replace the newest one).
async fn stays(c: &client::Client, path: &str, key: &str, what: &str, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let first = c.eventually(path, key, what, &ok).await;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (st, v) = c.get(path, key).await;
        assert!(st == 200 && ok(&v), "{what}: held once ({first}), then {st} {v}");
    }
    first
}

#[test]
fn forty_racing_orders_for_five_units_leave_the_read_model_agreeing_with_the_reservations() {
    with_stack(|c, admin, service| async move {
        let app = c.new_key(&admin, "app").await;
        let t = now();
        let (st, v) = c
            .post("/v1/events", &service, json!({"events": [
                {"type": "VendorOnboarded", "event_id": uuid(1), "occurred_at": t, "vendor_id": "V-A", "name": "Acme", "country": "DE", "plan": "pro", "payout_currency": "EUR"},
                {"type": "ProductCreated", "event_id": uuid(2), "occurred_at": t, "product_id": "P1", "vendor_id": "V-A", "sku": "S1", "title": "Last pairs", "description": "Few left",
                 "category": "fashion/shoes", "brand": "Acme", "price_minor": 1000, "currency": "EUR"},
                {"type": "StockReceived", "event_id": uuid(3), "occurred_at": t, "sku": "S1", "warehouse_id": "wh-de-berlin", "quantity": 3},
                {"type": "StockReceived", "event_id": uuid(4), "occurred_at": t, "sku": "S1", "warehouse_id": "wh-nl-venlo", "quantity": 2}
            ]}))
            .await;
        assert_eq!(st, 202, "{v}");
        c.eventually("/v1/inventory/S1", &app, "five units on hand", |v| v["on_hand"] == 5 && v["available"] == 5).await;

        // Forty single-unit orders at once, from concurrent callers.
        let calls: Vec<_> = (0..40)
            .map(|n| {
                let c = c.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    let order = json!({"customer_id": format!("C{n}"), "items": [{"sku": "S1", "quantity": 1}], "currency": "EUR",
                        "shipping_address": address(), "payment_method_token": "pm_card_visa"});
                    let (st, v) = c.send(reqwest::Method::POST, "/v1/orders", &app, Some(order), Some(&format!("race-{n}"))).await;
                    assert_eq!(st, 202, "{v}");
                    v["order_id"].as_str().unwrap().to_string()
                })
            })
            .collect();
        let mut ids = Vec::new();
        for call in calls {
            ids.push(call.await.unwrap());
        }
        let mut reserved = Vec::new();
        let mut rejected = 0;
        for id in &ids {
            // Decided: its units reserved (reserved, or held by the fraud gate — every order
            // here comes from one IP) or rejected.
            let o = c.eventually(&format!("/v1/orders/{id}"), &app, "the order decided", |v| v["status"] != "placed").await;
            match o["status"].as_str() {
                Some("rejected_out_of_stock") => rejected += 1,
                Some("reserved" | "fraud_hold" | "confirmed") => reserved.push(id.clone()),
                other => panic!("order {id} is {other:?}: {o}"),
            }
        }
        assert_eq!((reserved.len(), rejected), (5, 35), "exactly the stock is reserved, no more");
        stays(&c, "/v1/inventory/S1", &app, "every unit reserved", |v| v["on_hand"] == 5 && v["reserved"] == 5 && v["available"] == 0).await;

        for id in &reserved[..2] {
            let (st, v) = c.post(&format!("/v1/orders/{id}/cancel"), &app, json!({"reason": "changed my mind"})).await;
            assert_eq!(st, 202, "{v}");
        }
        stays(&c, "/v1/inventory/S1", &app, "two units released", |v| v["on_hand"] == 5 && v["reserved"] == 3 && v["available"] == 2).await;
    });
}

#[test]
fn forty_receipts_dated_up_to_two_seconds_apart_all_count() {
    with_stack(|c, admin, service| async move {
        let app = c.new_key(&admin, "app").await;
        let t = now();
        let (st, v) = c
            .post("/v1/events", &service, json!({"events": [
                {"type": "VendorOnboarded", "event_id": uuid(1), "occurred_at": t, "vendor_id": "V-A", "name": "Acme", "country": "DE", "plan": "pro", "payout_currency": "EUR"},
                {"type": "ProductCreated", "event_id": uuid(2), "occurred_at": t, "product_id": "P1", "vendor_id": "V-A", "sku": "S1", "title": "Socks", "description": "Wool",
                 "category": "fashion/socks", "brand": "Acme", "price_minor": 500, "currency": "EUR"}
            ]}))
            .await;
        assert_eq!(st, 202, "{v}");
        // Two warehouse systems' clocks: dates up to 2 s apart, in no particular order.
        let calls: Vec<_> = (0..40u128)
            .map(|n| {
                let c = c.clone();
                let service = service.clone();
                let at = t - ((n * 7919) % 2000) as i64;
                tokio::spawn(async move {
                    let (st, v) = c
                        .post("/v1/events", &service, json!({"events": [
                            {"type": "StockReceived", "event_id": uuid(100 + n), "occurred_at": at, "sku": "S1", "warehouse_id": "wh-de-berlin", "quantity": 1}
                        ]}))
                        .await;
                    assert_eq!(st, 202, "{v}");
                })
            })
            .collect();
        for call in calls {
            call.await.unwrap();
        }
        stays(&c, "/v1/inventory/S1", &app, "forty on hand", |v| v["on_hand"] == 40 && v["available"] == 40).await;
    });
}
