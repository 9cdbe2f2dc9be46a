//! End to end on the real services: the API on a bound port, every
//! processor on Apache Kafka, the read model on Postgres, analytics on ClickHouse and search
//! on Elasticsearch — the flow of `e2e.rs`, with each read answered by the store that
//! serves it in production.
//!
//! The contract topics on the test broker are shared with other tests, so everything here
//! is named after a fresh tag (app id, vendor, product, sku, customer) and gets its own
//! Postgres database, ClickHouse database and Elasticsearch index, dropped at the end. The
//! dashboard is global: the test waits until the pipeline is idle, reads it, and checks
//! that the order moves its totals by exactly the order's amount.
//!
//! `scripts/services up kafka postgres clickhouse elasticsearch && eval "$(scripts/services env)"`
//! `cargo test -p storeflow-api --test e2e_services`


#[path = "common/client.rs"]
mod client;
#[path = "common/stack.rs"]
mod stack;

use std::sync::Arc;
use std::time::{Duration, Instant};

use client::{Client, now, sales_gmv};
use serde_json::{Value, json};
use storeflow_avro::Codec;
use storeflow_ingest::contract::service_address;
use storeflow_ingest::publish::contract_topics;
use storeflow_ingest::{KafkaLog, KafkaSettings, Log};
use storeflow_sinks::analytics::config::ClickHouseConfig;
use storeflow_sinks::search::config::ElasticsearchConfig;
use storeflow_sinks::read_model::ReadModelConfig;
use storeflow_sinks::{AnalyticsSink, ReadModelSink, SearchSink, Sinks, SinksConfig};

/// How long a step may take: the processors and sinks of a fresh app first work through
/// whatever earlier tests left on the shared topics.
const PATIENCE: Duration = Duration::from_secs(180);

/// The four services, or `None` (skipped outside CI) when one is missing.
struct Services {
    kafka: String,
    postgres: String,
    clickhouse: String,
    elasticsearch: String,
}

impl Services {
    fn from_env() -> Option<Services> {
        Some(Services {
            kafka: service_address("STOREFLOW_TEST_KAFKA", "Apache Kafka")?,
            postgres: service_address("STOREFLOW_TEST_POSTGRES", "Postgres")?,
            clickhouse: service_address("STOREFLOW_TEST_CLICKHOUSE", "ClickHouse")?,
            elasticsearch: service_address("STOREFLOW_TEST_ELASTICSEARCH", "Elasticsearch")?,
        })
    }
}

/// The test's own Postgres database, ClickHouse database and Elasticsearch index; dropped
/// when the guard goes, whether the test passed or not.
struct Stores {
    services: Services,
    name: String,
    postgres_url: String,
}

async fn postgres_exec(url: &str, sql: String) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await?;
    sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await.map(|_| ())
}

impl Stores {
    async fn create(services: Services, name: &str) -> Stores {
        postgres_exec(&services.postgres, format!("CREATE DATABASE {name}")).await.expect("create the test's Postgres database");
        let (prefix, _) = services.postgres.rsplit_once('/').expect("a database in STOREFLOW_TEST_POSTGRES");
        let postgres_url = format!("{prefix}/{name}");
        Stores { services, name: name.to_string(), postgres_url }
    }

    fn config(&self, data_dir: &std::path::Path, app: &str) -> SinksConfig {
        let mut c = SinksConfig::embedded(data_dir).with::<ReadModelSink>(ReadModelConfig::postgres(&self.postgres_url));
        c.app = app.to_string();
        c.sink_mut::<AnalyticsSink>().clickhouse = Some(ClickHouseConfig { url: self.services.clickhouse.clone(), database: self.name.clone(), ..ClickHouseConfig::default() });
        c.sink_mut::<SearchSink>().elasticsearch = Some(ElasticsearchConfig { url: self.services.elasticsearch.clone(), index: self.name.clone(), ..ElasticsearchConfig::default() });
        c
    }
}

impl Drop for Stores {
    fn drop(&mut self) {
        let s = &self.services;
        let (pg, ch, es, name) = (s.postgres.clone(), s.clickhouse.clone(), s.elasticsearch.clone(), self.name.clone());
        // On its own thread: the guard may be dropped inside a runtime.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async move {
                let _ = postgres_exec(&pg, format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                let http = reqwest::Client::new();
                let _ = http.post(ch).body(format!("DROP DATABASE IF EXISTS {name} SYNC")).send().await;
                let _ = http.delete(format!("{es}/{name}")).send().await;
            })
        })
        .join();
    }
}

/// Sum of every `storeflow_*_lag` gauge on `/metrics` (processors' and sinks'), and how many
/// partitions report one.
async fn lag(c: &Client) -> (i64, usize) {
    let text = c.http.get(format!("{}/metrics", c.base)).send().await.unwrap().text().await.unwrap();
    let gauges: Vec<i64> = text
        .lines()
        .filter(|l| l.starts_with("storeflow_processor_lag{") || l.starts_with("storeflow_sink_lag{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (gauges.iter().sum(), gauges.len())
}

/// Waits until the processors and sinks have nothing left to do and the dashboard stops
/// changing, and returns it.
async fn settled_dashboard(c: &Client, key: &str, path: &str) -> Value {
    let start = Instant::now();
    let mut last = Value::Null;
    loop {
        let (lagging, partitions) = lag(c).await;
        let (status, d) = c.get(path, key).await;
        if status == 200 && lagging == 0 && partitions > 0 && d["orders"] == last["orders"] && d["gmv_eur_minor"] == last["gmv_eur_minor"] {
            return d;
        }
        assert!(start.elapsed() < PATIENCE, "the pipeline never settled: lag {lagging} over {partitions} partitions, dashboard {status} {d}");
        last = d;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Every row of every table of the test's Postgres database, as text.
async fn postgres_dump(url: &str) -> String {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'").fetch_all(&mut c).await.unwrap();
    let mut out = String::new();
    for t in tables {
        let rows: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT string_agg(t::text, E'\\n') FROM \"{t}\" t"))).fetch_one(&mut c).await.unwrap();
        out.push_str(&rows.unwrap_or_default());
    }
    out
}

/// Every row of every table of the test's ClickHouse database, and every document of its
/// Elasticsearch indices, as text.
async fn clickhouse_and_elasticsearch_dump(s: &Stores) -> String {
    let http = reqwest::Client::new();
    let ch = &s.services.clickhouse;
    let tables = http.post(ch).body(format!("SELECT name FROM system.tables WHERE database = '{}' FORMAT TSV", s.name)).send().await.unwrap().text().await.unwrap();
    let mut out = String::new();
    for t in tables.lines().filter(|t| !t.is_empty()) {
        out.push_str(&http.post(ch).body(format!("SELECT * FROM {}.`{t}` FORMAT JSONEachRow", s.name)).send().await.unwrap().text().await.unwrap());
    }
    let es = &s.services.elasticsearch;
    out.push_str(&http.get(format!("{es}/{}*/_search?size=10000", s.name)).send().await.unwrap().text().await.unwrap());
    out
}

fn eid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn i(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

#[test]
fn an_order_placed_over_http_on_kafka_shows_in_postgres_elasticsearch_clickhouse_and_the_vendor_stream() {
    let Some(services) = Services::from_env() else { return };
    let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let (app_id, vendor, product, sku, customer) = (format!("e2e{tag}"), format!("V-{tag}"), format!("P-{tag}"), format!("S-{tag}"), format!("C-{tag}"));
    // The customer's personal data, planted to be looked for in every store.
    let bytes = tag.as_bytes();
    let planted = [format!("{tag}@planted.example"), format!("Planted {tag}"), format!("{tag} Plantedway"), format!("Shred{tag}"), format!("10.{}.{}.{}", bytes[0], bytes[1], bytes[2])];
    let [email, name, line1, city, ip] = planted.clone();
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let stores = rt.block_on(Stores::create(services, &format!("api_e2e_{tag}")));

    let log: Arc<dyn Log> = Arc::new(KafkaLog::connect(KafkaSettings::new(&stores.services.kafka)).expect("connect to Kafka"));
    log.create_topics(&contract_topics(None)).unwrap();
    let codec = Arc::new(Codec::embedded().unwrap());
    let mut registry = prometheus_client::registry::Registry::default();
    let runtimes = stack::processors(&log, &codec, &app_id, &mut registry);
    let sinks = Sinks::start(log.clone(), codec.clone(), stores.config(&dir.path().join("sinks"), &app_id), &mut registry).expect("start the sinks on the real stores");
    let (live, c, admin, service) = stack::serve_beside_sinks(&rt, &log, &codec, &sinks, dir.path(), registry);

    rt.block_on(async {
        let app = c.new_key(&admin, "app").await;
        let vendor_key = c.new_key(&admin, &format!("vendor:{vendor}")).await;
        let analyst = c.new_key(&admin, "analyst").await;
        c.eventually_within(PATIENCE, "/readyz", &app, "ready (Kafka, Postgres, ClickHouse and Elasticsearch reachable)", |_| true).await;

        let (st, v) = c
            .post("/v1/events", &service, json!({"events": [
                {"type": "VendorOnboarded", "event_id": eid(), "occurred_at": now(), "vendor_id": vendor, "name": "Acme", "country": "DE", "plan": "pro", "payout_currency": "EUR"},
                {"type": "ProductCreated", "event_id": eid(), "occurred_at": now(), "product_id": product, "vendor_id": vendor, "sku": sku, "title": "Studio headphones", "description": "Closed-back",
                 "category": "electronics/audio", "brand": "Acme", "price_minor": 4999, "currency": "EUR"},
                {"type": "StockReceived", "event_id": eid(), "occurred_at": now(), "sku": sku, "warehouse_id": "wh-de-berlin", "quantity": 10},
                {"type": "CustomerRegistered", "event_id": eid(), "occurred_at": now(), "customer_id": customer, "email": email, "name": name, "country": "DE", "marketing_opt_in": false}
            ]}))
            .await;
        assert_eq!((st, v["accepted"].as_u64()), (202, Some(4)), "{v}");
        let p = c.eventually_within(PATIENCE, &format!("/v1/products/{product}"), &app, "the product in Postgres", |v| v["price_minor"] == 4999).await;
        assert_eq!(p["vendor_id"], vendor.as_str());
        c.eventually_within(PATIENCE, &format!("/v1/inventory/{sku}"), &app, "the stock in Postgres", |v| v["available"] == 10).await;

        // Search on Elasticsearch: a typo finds the product (scoped to the vendor, as the
        // shared topics may carry other headphones), with facets.
        let found = c.eventually_within(PATIENCE, &format!("/v1/search?q=headphnes&vendor={vendor}&in_stock=true"), &app, "found in Elasticsearch by a typo", |v| v["total"] == 1).await;
        assert_eq!(found["hits"][0]["product_id"], product.as_str());
        assert!(found["facets"]["brands"].as_array().is_some_and(|b| !b.is_empty()), "{found}");

        let dashboard = "/v1/analytics/dashboard?range=30d";
        let before = settled_dashboard(&c, &analyst, dashboard).await;

        let mut stream = c.http.get(format!("{}/v1/vendors/{vendor}/sales/stream", c.base)).bearer_auth(&vendor_key).send().await.unwrap();
        assert_eq!(stream.status().as_u16(), 200);

        let order = json!({"customer_id": customer, "items": [{"sku": sku, "quantity": 2}], "currency": "EUR",
            "shipping_address": {"name": name, "line1": line1, "city": city, "postal_code": "10115", "country": "DE"},
            "payment_method_token": "pm_card_visa", "client_ip": ip});
        let (st, placed) = c.send(reqwest::Method::POST, "/v1/orders", &app, Some(order), Some(&format!("e2e-services-{tag}"))).await;
        assert_eq!(st, 202, "{placed}");
        let id = placed["order_id"].as_str().unwrap().to_string();

        let o = c.eventually_within(PATIENCE, &format!("/v1/orders/{id}"), &app, "the order reserved in Postgres", |v| v["status"] == "reserved").await;
        assert_eq!(o["total_minor"], 9998);
        assert_eq!(o["reservations"][0]["quantity"], 2);
        let inv = c.eventually_within(PATIENCE, &format!("/v1/inventory/{sku}"), &app, "the stock reserved in Postgres", |v| v["reserved"] == 2).await;
        assert_eq!((i(&inv["on_hand"]), i(&inv["available"])), (10, 8));

        let (st, v) = c
            .post("/v1/events", &service, json!({"type": "PaymentAuthorized", "event_id": eid(), "occurred_at": now(), "order_id": id,
                "payment_id": format!("pay_{tag}"), "amount_minor": 9998, "currency": "EUR", "provider": "stripe"}))
            .await;
        assert_eq!(st, 202, "{v}");
        let o = c.eventually_within(PATIENCE, &format!("/v1/orders/{id}"), &app, "the order confirmed in Postgres", |v| v["status"] == "confirmed").await;
        let history: Vec<&str> = o["history"].as_array().unwrap().iter().map(|e| e["event_type"].as_str().unwrap()).collect();
        for t in ["OrderPlaced", "ReservationMade", "PaymentAuthorized", "FraudScored", "OrderStatusChanged"] {
            assert!(history.contains(&t), "{t} missing from the order's history in Postgres: {history:?}");
        }

        // The sale: the vendor's report and stream (processor outputs on Kafka), the
        // vendor's performance and the dashboard (ClickHouse).
        let report = c
            .eventually_within(PATIENCE, &format!("/v1/vendors/{vendor}/sales?granularity=hour"), &vendor_key, "the sale in the vendor's report", |v| sales_gmv(v) == 9998)
            .await;
        assert_eq!(report["buckets"][0]["units"], 2);
        let chunk = tokio::time::timeout(Duration::from_secs(60), stream.chunk()).await.expect("an SSE message within 60 s").unwrap().unwrap();
        let text = String::from_utf8_lossy(&chunk);
        assert!(text.contains("event: sales") && text.contains("\"gmv_minor\":9998"), "{text}");
        // 24h, not 1h: analytics' 1h is the current clock hour, which would miss an order
        // placed just before a full hour and read just after it.
        let perf = c.eventually_within(PATIENCE, &format!("/v1/analytics/vendors/{vendor}?range=24h"), &vendor_key, "the vendor's performance in ClickHouse", |v| v["gmv_eur_minor"] == 9998).await;
        assert_eq!(perf["orders"], 1, "{perf}");
        let after = c.eventually_within(PATIENCE, dashboard, &analyst, "the dashboard moved by the order", |d| i(&d["orders"]) > i(&before["orders"])).await;
        assert_eq!(i(&after["orders"]) - i(&before["orders"]), 1, "before {before}\nafter {after}");
        assert_eq!(i(&after["gmv_eur_minor"]) - i(&before["gmv_eur_minor"]), 9998, "before {before}\nafter {after}");
        assert_eq!(i(&after["units"]) - i(&before["units"]), 2, "before {before}\nafter {after}");

        // Another vendor's key sees nothing of it.
        let other = c.new_key(&admin, "vendor:V-someone-else").await;
        assert_eq!(c.get(&format!("/v1/vendors/{vendor}/sales"), &other).await.0, 403);
        assert_eq!(c.get(&format!("/v1/analytics/vendors/{vendor}"), &other).await.0, 403);
        drop(stream);

        // Erasure (docs/SECURITY.md): the customer's row reached Postgres sealed; after
        // CustomerErased it is nulled, and no row of Postgres, ClickHouse or Elasticsearch
        // holds any of the planted values in the clear, before or after.
        let pg = stores.postgres_url.clone();
        let email_of = |pg: String, customer: String| async move {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&pg).await.unwrap();
            sqlx::query_as::<_, (Option<String>, Option<i64>)>("SELECT email, erased_at FROM customers WHERE customer_id = $1").bind(customer).fetch_optional(&mut conn).await.unwrap()
        };
        let row = email_of(pg.clone(), customer.clone()).await;
        let sealed = row.as_ref().and_then(|r| r.0.clone()).unwrap_or_default();
        assert!(storeflow_avro::pii::is_sealed(&sealed), "the customer's email in Postgres is not sealed: {row:?}");
        let everything = format!("{}{}", postgres_dump(&pg).await, clickhouse_and_elasticsearch_dump(&stores).await);
        // The dumps do hold the order, its customer and the product (so they look where
        // the data is), and nothing planted.
        for (v, what) in [(&id, "the order"), (&customer, "the customer"), (&product, "the product")] {
            assert!(everything.contains(v.as_str()), "{what} is in no store's dump");
        }
        for v in &planted {
            assert!(!everything.contains(v.as_str()), "{v} in the clear in a store before the erasure");
        }
        let (st, v) = c.post("/v1/events", &service, json!({"type": "CustomerErased", "event_id": eid(), "occurred_at": now(), "customer_id": customer, "reason": "gdpr_request"})).await;
        assert_eq!(st, 202, "{v}");
        let start = Instant::now();
        while email_of(pg.clone(), customer.clone()).await.is_none_or(|r| r.1.is_none() || r.0.is_some()) {
            assert!(start.elapsed() < PATIENCE, "the erasure never reached Postgres");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let everything = format!("{}{}", postgres_dump(&pg).await, clickhouse_and_elasticsearch_dump(&stores).await);
        for v in planted.iter().chain([&sealed]) {
            assert!(!everything.contains(v.as_str()), "{v} in a store after the erasure");
        }
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    live.stop();
    sinks.stop().unwrap();
    for r in runtimes {
        r.stop().unwrap();
    }
    drop(stores);
}
