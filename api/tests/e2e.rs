//! End to end on a bound port and the embedded log: the API, every registered processor
//! and the sinks' embedded twins in one process. Place an order over HTTP and watch the processors'
//! effects come back through the API: reserved then confirmed, stock moved, the sale in
//! the vendor's report and stream, the dashboard's totals.
//!
//! The same flow on the real services (Kafka, Postgres, ClickHouse, Elasticsearch) is
//! `e2e_services.rs`.

#[path = "common/client.rs"]
mod client;
#[path = "common/stack.rs"]
mod stack;

use std::sync::Arc;
use std::time::{Duration, Instant};

use client::{Client, address, now, sales_gmv, uuid};
use serde_json::json;
use storeflow_api::{ApiConfig, ApiMetrics, ApiState, KeyStore, Live, Reads};
use storeflow_avro::Codec;
use storeflow_ingest::publish::contract_topics;
use storeflow_ingest::{EmbeddedLog, Log};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_placed_over_http_is_reserved_confirmed_and_reported_back_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir.path().join("log")).unwrap());
    log.create_topics(&contract_topics(Some(2))).unwrap();
    let codec = Arc::new(Codec::embedded().unwrap());

    let mut registry = prometheus_client::registry::Registry::default();
    let runtimes = stack::processors(&log, &codec, "e2e", &mut registry);

    let sinks = storeflow_sinks::Sinks::start(log.clone(), codec.clone(), storeflow_sinks::SinksConfig::embedded(dir.path().join("sinks")), &mut registry).unwrap();
    let live = Live::start(log.clone(), codec.clone()).unwrap();
    let (keys, admin) = KeyStore::open(dir.path()).unwrap();
    let admin = admin.unwrap();
    let metrics = ApiMetrics::register(&mut registry);
    let state = ApiState::new(ApiConfig::default(), log.clone(), codec.clone(), keys, Arc::new(storeflow_avro::pii::Vault::in_memory()), Reads::from_sinks(&sinks, live.clone()), Arc::new(registry), metrics).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(storeflow_api::serve(listener, state, async move {
        let _ = stop_rx.await;
    }));
    let c = Client { http: reqwest::Client::new(), base };

    // Keys through the API itself.
    let app = c.new_key(&admin, "app").await;
    let service = c.new_key(&admin, "service").await;
    let vendor = c.new_key(&admin, "vendor:V-A").await;
    let analyst = c.new_key(&admin, "analyst").await;
    let start = Instant::now();
    while c.http.get(format!("{}/readyz", c.base)).send().await.unwrap().status() != 200 {
        assert!(start.elapsed() < Duration::from_secs(30), "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The catalog and the stock, as events from a trusted backend.
    let (st, v) = c
        .post("/v1/events", &service, json!({"events": [
            {"type": "VendorOnboarded", "event_id": uuid(1), "occurred_at": now(), "vendor_id": "V-A", "name": "Acme", "country": "DE", "plan": "pro", "payout_currency": "EUR"},
            {"type": "ProductCreated", "event_id": uuid(2), "occurred_at": now(), "product_id": "P1", "vendor_id": "V-A", "sku": "S1", "title": "Headphones", "description": "Closed-back",
             "category": "electronics/audio", "brand": "Acme", "price_minor": 4999, "currency": "EUR"},
            {"type": "StockReceived", "event_id": uuid(3), "occurred_at": now(), "sku": "S1", "warehouse_id": "wh-de-berlin", "quantity": 10}
        ]}))
        .await;
    assert_eq!((st, v["accepted"].as_u64()), (202, Some(3)), "{v}");
    c.eventually("/v1/inventory/S1", &app, "stock received", |v| v["available"] == 10).await;
    c.eventually("/v1/products/P1", &app, "product known", |v| v["price_minor"] == 4999).await;

    // The vendor listens to its sales stream before the order.
    let mut stream = c
        .http
        .get(format!("{}/v1/vendors/V-A/sales/stream", c.base))
        .bearer_auth(&vendor)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);

    let order = json!({"customer_id": "C1", "items": [{"sku": "S1", "quantity": 2}], "currency": "EUR",
        "shipping_address": address(), "payment_method_token": "pm_card_visa", "client_ip": "198.51.100.7"});
    let (st, placed) = c.send(reqwest::Method::POST, "/v1/orders", &app, Some(order), Some("e2e-1")).await;
    assert_eq!(st, 202, "{placed}");
    let id = placed["order_id"].as_str().unwrap().to_string();

    let o = c.eventually(&format!("/v1/orders/{id}"), &app, "reserved", |v| v["status"] == "reserved").await;
    assert_eq!(o["total_minor"], 9998);
    assert_eq!(o["reservations"][0]["quantity"], 2);
    let inv = c.eventually("/v1/inventory/S1", &app, "stock reserved", |v| v["reserved"] == 2).await;
    assert_eq!((inv["on_hand"].as_i64(), inv["available"].as_i64()), (Some(10), Some(8)));

    // The payment provider authorizes (its webhook, a service key); the saga confirms once
    // the fraud score is in.
    let (st, v) = c
        .post("/v1/events", &service, json!({"type": "PaymentAuthorized", "event_id": uuid(4), "occurred_at": now(), "order_id": id,
            "payment_id": "pay_1", "amount_minor": 9998, "currency": "EUR", "provider": "stripe"}))
        .await;
    assert_eq!(st, 202, "{v}");
    let o = c.eventually(&format!("/v1/orders/{id}"), &app, "confirmed", |v| v["status"] == "confirmed").await;
    let history: Vec<&str> = o["history"].as_array().unwrap().iter().map(|e| e["event_type"].as_str().unwrap()).collect();
    for t in ["OrderPlaced", "ReservationMade", "PaymentAuthorized", "FraudScored", "OrderStatusChanged"] {
        assert!(history.contains(&t), "{t} missing from {history:?}");
    }
    // The app that placed it reads it without the customer's IP, card token or address; the
    // backend sees them.
    let text = o.to_string();
    assert!(!text.contains("198.51.100.7") && !text.contains("pm_card_visa") && !text.contains("Street 1"), "{text}");
    let (st, whole) = c.get(&format!("/v1/orders/{id}"), &service).await;
    assert!(st == 200 && whole.to_string().contains("pm_card_visa"), "{st} {whole}");

    // A confirmed order can still be cancelled; a return is refused before delivery.
    let (st, v) = c.post(&format!("/v1/orders/{id}/returns"), &app, json!({"items": [{"sku": "S1", "quantity": 1}], "reason": "x"})).await;
    assert_eq!(st, 409, "{v}");

    // The sale: in the vendor's report, its stream and the dashboard.
    let report = c.eventually("/v1/vendors/V-A/sales?granularity=hour", &vendor, "sale reported", |v| sales_gmv(v) == 9998).await;
    assert_eq!(report["buckets"][0]["units"], 2);
    let chunk = tokio::time::timeout(Duration::from_secs(30), stream.chunk()).await.expect("an SSE message").unwrap().unwrap();
    let text = String::from_utf8_lossy(&chunk);
    assert!(text.contains("event: sales") && text.contains("\"gmv_minor\":9998"), "{text}");
    // 24h: analytics' 1h is the current clock hour (an order just before a full hour drops out).
    let d = c.eventually("/v1/analytics/dashboard?range=24h", &analyst, "dashboard", |v| v["orders"] == 1).await;
    assert_eq!((d["gmv_eur_minor"].as_i64(), d["units"].as_i64()), (Some(9998), Some(2)));
    assert_eq!(d["top_products"][0]["product_id"], "P1");
    let perf = c.get("/v1/analytics/vendors/V-A?range=24h", &vendor).await;
    assert_eq!((perf.0, perf.1["gmv_eur_minor"].as_i64()), (200, Some(9998)));
    assert_eq!(c.get("/v1/vendors/V-B/sales", &vendor).await.0, 403);

    // Metrics of the API and the processors on one page.
    let resp = c.http.get(format!("{}/metrics", c.base)).send().await.unwrap();
    let text = resp.text().await.unwrap();
    assert!(text.contains("storeflow_api_events_published_total"), "{text}");

    let _ = stop_tx.send(());
    drop(stream);
    server.await.unwrap().unwrap();
    live.stop();
    sinks.stop().unwrap();
    for r in runtimes {
        r.stop().unwrap();
    }
}
