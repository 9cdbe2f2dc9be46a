//! Shared set-up of the API tests: an embedded log in a temp dir with the sinks' embedded
//! twins reading it (what the API reads), the live state fed by hand, and
//! one key per role (app, service, vendors V-A and V-B, analyst, admin); customers' tokens
//! signed with [`HS256_SECRET`] for an API configured by [`with_customers`].

#![allow(dead_code)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use storeflow_api::read::Reads;
use storeflow_api::{ApiConfig, ApiMetrics, ApiState, CustomersConfig, KeyStore, Live, Role};
use storeflow_avro::{Codec, Event, JsonOptions};
use storeflow_ingest::publish::{Publisher, contract_topics};
use storeflow_ingest::{ConsumerConfig, EmbeddedLog, Log, TopicPartition};
use tower::ServiceExt;

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub log: Arc<dyn Log>,
    pub codec: Arc<Codec>,
    /// The sinks' embedded twins on `log`: the read model, search and analytics the API reads.
    pub sinks: storeflow_sinks::Sinks,
    /// What no sink stores (sales minutes, recommendations), fed by [`Harness::feed`] and
    /// by hand.
    pub live: Arc<Live>,
    publisher: Publisher,
    /// Ids of the events [`Harness::feed`] put on the log: what the API did not publish.
    fed: parking_lot::Mutex<std::collections::HashSet<String>>,
    /// Customers' data keys: what the API publishes is sealed with them.
    pub vault: Arc<storeflow_avro::pii::Vault>,
    pub app: Router,
    pub state: ApiState,
    pub admin: String,
    pub app_key: String,
    /// A trusted backend's key (payments, fulfillment, stock, catalog, every order).
    pub service: String,
    pub vendor_a: String,
    pub vendor_b: String,
    pub analyst: String,
}

pub fn harness() -> Harness {
    harness_with(ApiConfig::default(), |r| r)
}

pub fn harness_with(config: ApiConfig, reads: impl FnOnce(Reads) -> Reads) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir.path().join("log")).unwrap());
    harness_on(dir, log, config, reads)
}

/// [`harness_with`] on `log` (say, an embedded log on a disk of the test's own); keys and
/// sinks' stores live in `dir`.
pub fn harness_on(dir: tempfile::TempDir, log: Arc<dyn Log>, config: ApiConfig, reads: impl FnOnce(Reads) -> Reads) -> Harness {
    log.create_topics(&contract_topics(Some(2))).unwrap();
    let codec = Arc::new(Codec::embedded().unwrap());
    let live = Live::new();
    let (keys, admin) = KeyStore::open(dir.path()).unwrap();
    let admin = admin.unwrap();
    let app_key = keys.create(Role::App).unwrap();
    let service = keys.create(Role::Service).unwrap();
    let vendor_a = keys.create(Role::Vendor("V-A".into())).unwrap();
    let vendor_b = keys.create(Role::Vendor("V-B".into())).unwrap();
    let analyst = keys.create(Role::Analyst).unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    let sinks = storeflow_sinks::Sinks::start(log.clone(), codec.clone(), storeflow_sinks::SinksConfig::embedded(dir.path().join("sinks")), &mut registry).unwrap();
    let metrics = ApiMetrics::register(&mut registry);
    let vault = Arc::new(storeflow_avro::pii::Vault::in_memory());
    let publisher = Publisher::new(log.as_ref(), codec.clone(), vault.clone()).unwrap();
    let state = ApiState::new(config, log.clone(), codec.clone(), keys, vault.clone(), reads(Reads::from_sinks(&sinks, live.clone())), Arc::new(registry), metrics).unwrap();
    let app = storeflow_api::router(state.clone());
    Harness { dir, log, codec, sinks, live, publisher, fed: Default::default(), vault, app, state, admin, app_key, service, vendor_a, vendor_b, analyst }
}

/// An event from JSON (ids and times filled in), derived types allowed.
pub fn ev(v: Value) -> Event {
    storeflow_avro::json::event_from_json(v, JsonOptions { fill_missing_ids: true, inputs_only: false }).unwrap()
}

pub fn address() -> Value {
    json!({"name": "Ada", "line1": "Street 1", "city": "Berlin", "postal_code": "10115", "country": "DE"})
}

impl Harness {
    pub async fn call(&self, method: Method, uri: &str, key: Option<&str>, body: Option<Value>) -> (StatusCode, HeaderMap, Value) {
        let body = body.map(|b| b.to_string().into_bytes());
        self.raw(method, uri, key, body, &[]).await
    }

    pub async fn raw(&self, method: Method, uri: &str, key: Option<&str>, body: Option<Vec<u8>>, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Value) {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(k) = key {
            b = b.header("authorization", format!("Bearer {k}"));
        }
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        let req = match body {
            Some(bytes) => b.header("content-type", "application/json").body(Body::from(bytes)).unwrap(),
            None => b.body(Body::empty()).unwrap(),
        };
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, headers, v)
    }

    /// Records on the log that the API published (every contract topic's, less what the
    /// harness fed): what "nothing was published" is checked against.
    pub fn published(&self) -> u64 {
        let all: u64 = self.log.describe_topics().unwrap().iter().flat_map(|t| t.partitions.iter().map(|p| p.end - p.start)).sum();
        all - self.fed.lock().len() as u64
    }

    /// Every event the API published on `topic`, decoded (what the harness fed left out).
    pub fn events_on(&self, topic: &str) -> Vec<Event> {
        let info = self.log.describe_topics().unwrap().into_iter().find(|t| t.name == topic).unwrap();
        let mut c = self.log.consumer(ConsumerConfig::new("test-reader"), None).unwrap();
        let parts: Vec<_> = info.partitions.iter().map(|p| (TopicPartition::new(topic, p.partition), p.start)).collect();
        let total: u64 = info.partitions.iter().map(|p| p.end - p.start).sum();
        c.assign(&parts).unwrap();
        let mut out = Vec::new();
        for _ in 0..50 {
            if out.len() as u64 >= total {
                break;
            }
            for r in c.poll(1000, std::time::Duration::from_millis(20)).unwrap() {
                out.push(self.codec.decode(r.value.as_ref().unwrap()).unwrap());
            }
        }
        let fed = self.fed.lock();
        out.retain(|e| !fed.contains(e.event_id()));
        out
    }

    /// Publishes `events` (sealed, as every producer does), hands them to the live state, and
    /// waits until every sink has landed them.
    pub fn feed(&self, events: impl IntoIterator<Item = Event>) {
        for e in events {
            self.fed.lock().insert(e.event_id().to_string());
            self.live.apply(&e);
            self.publisher.publish(&e).unwrap().wait().unwrap();
        }
        self.sinks.wait_caught_up(std::time::Duration::from_secs(60)).unwrap();
    }

    /// A catalog: two products of vendor V-A (EUR), one of V-B; stock for two of them.
    pub fn seed_catalog(&self) {
        let mut events = Vec::new();
        for (pid, vendor, sku, cat, price) in [
            ("P1", "V-A", "S1", "electronics/audio", 1999),
            ("P2", "V-A", "S2", "electronics/audio", 4999),
            ("P3", "V-B", "S3", "home/kitchen", 2500),
        ] {
            events.push(ev(json!({"type": "ProductCreated", "product_id": pid, "vendor_id": vendor, "sku": sku,
                "title": format!("Product {pid}"), "description": "nice", "category": cat, "brand": "Acme",
                "price_minor": price, "currency": "EUR"})));
        }
        for (sku, wh, on_hand, reserved) in [("S1", "W1", 10, 2), ("S1", "W2", 5, 0), ("S3", "W1", 3, 0)] {
            events.push(ev(json!({"type": "StockLevelChanged", "sku": sku, "warehouse_id": wh, "on_hand": on_hand,
                "reserved": reserved, "available": on_hand - reserved, "cause": "received"})));
        }
        // S2 sold out.
        events.push(ev(json!({"type": "StockLevelChanged", "sku": "S2", "warehouse_id": "W1", "on_hand": 0,
            "reserved": 0, "available": 0, "cause": "shipped"})));
        self.feed(events);
    }

    /// An order `id` of S1 × 2 in `status`.
    pub fn seed_order(&self, id: &str, status: &str) {
        self.seed_order_of(id, "C1", status);
    }

    /// An order `id` of customer `customer`, S1 × 2, in `status`.
    pub fn seed_order_of(&self, id: &str, customer: &str, status: &str) {
        let mut events = vec![ev(json!({"type": "OrderPlaced", "order_id": id, "customer_id": customer,
            "items": [{"sku": "S1", "product_id": "P1", "vendor_id": "V-A", "quantity": 2, "unit_price_minor": 1999}],
            "currency": "EUR", "shipping_address": address(), "billing_address": address(),
            "payment_method_token": "pm_x", "client_ip": "203.0.113.9"}))];
        if status != "placed" {
            events.push(ev(json!({"type": "OrderStatusChanged", "order_id": id, "customer_id": customer,
                "previous_status": "placed", "status": status, "payment_status": "captured",
                "fulfillment_status": status, "reason": "test", "total_minor": 3998, "currency": "EUR"})));
        }
        self.feed(events);
    }
}

pub fn order_body() -> Value {
    json!({"customer_id": "C1", "items": [{"sku": "S1", "quantity": 2}], "currency": "EUR",
        "shipping_address": address(), "payment_method_token": "pm_card_visa", "client_ip": "198.51.100.7"})
}

/// The identity provider of the tests' customer tokens.
pub const ISSUER: &str = "https://id.marketplace.test";
/// The API's audience at it.
pub const AUDIENCE: &str = "storeflow-api";
/// The HS256 secret [`with_customers`] configures.
pub const HS256_SECRET: &str = "test-only-hs256-secret-0123456789abcdef";

/// `config` with `[api.customers]` verifying HS256 tokens signed with [`HS256_SECRET`].
pub fn with_customers(config: ApiConfig) -> ApiConfig {
    let customers = CustomersConfig {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        hs256_secret: Some(secrecy::SecretString::from(HS256_SECRET)),
        ..Default::default()
    };
    ApiConfig { customers: Some(customers), ..config }
}

/// Seconds since the epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Valid claims of customer `sub` for ten minutes.
pub fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now_secs(), "exp": now_secs() + 600})
}

/// `claims` signed HS256 with `secret`.
pub fn hs256(claims: &Value, secret: &str) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap();
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), claims, &key).unwrap()
}

/// A valid token of customer `sub` for an API made with [`with_customers`].
pub fn customer_token(sub: &str) -> String {
    hs256(&claims(sub), HS256_SECRET)
}
