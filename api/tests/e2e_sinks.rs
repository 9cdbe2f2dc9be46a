//! End to end with the sinks (feature `sinks`): the API, every processor and the sinks'
//! embedded twins (SQLite read model, tantivy search, Parquet + DataFusion analytics) on
//! the embedded log. Orders, stock and products come from the read model, search from the
//! index, the dashboard from analytics. The same reads on the real services (Kafka,
//! Postgres, Elasticsearch, ClickHouse) are `e2e_services.rs`.
//!
//! `cargo test -p storeflow-api --features sinks --test e2e_sinks`

#![cfg(feature = "sinks")]

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
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir.path().join("log")).unwrap());
    log.create_topics(&contract_topics(Some(2))).unwrap();
    let codec = Arc::new(Codec::embedded().unwrap());
    let mut registry = prometheus_client::registry::Registry::default();
    let runtimes = stack::processors(&log, &codec, "e2e", &mut registry);
    // Sinks make and drop their own runtime: start and stop them outside the API's.
    let sinks = Sinks::start(log.clone(), codec.clone(), SinksConfig::embedded(dir.path().join("sinks")), &mut registry).unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (views, c, admin) = stack::serve_beside_sinks(&rt, &log, &codec, &sinks, dir.path(), registry);

    rt.block_on(async {
        let app = c.new_key(&admin, "app").await;
        let analyst = c.new_key(&admin, "analyst").await;

        let (st, v) = c
            .post("/v1/events", &app, json!({"events": [
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
        assert_eq!(o["totals"]["total_minor"], 9998);
        c.eventually("/v1/inventory/S1", &app, "stock reserved in the read model", |v| v["reserved"] == 2 && v["available"] == 8).await;

        let found = c.eventually("/v1/search?q=headphnes&in_stock=true", &app, "found by a typo", |v| v["total"] == 1).await;
        assert_eq!(found["hits"][0]["product_id"], "P1");
        assert!(found["facets"]["brands"].as_array().is_some_and(|b| !b.is_empty()), "{found}");

        // 24h: analytics' 1h is the current clock hour (an order just before a full hour drops out).
        let d = c.eventually("/v1/analytics/dashboard?range=24h", &analyst, "dashboard from analytics", |v| v["orders"] == 1).await;
        assert_eq!(d["gmv_eur_minor"], 9998, "{d}");
        assert_eq!(c.get("/readyz", &app).await.0, 200);
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    views.stop();
    sinks.stop().unwrap();
    for r in runtimes {
        r.stop().unwrap();
    }
}
