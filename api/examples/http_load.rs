//! HTTP load test of the API with a real load generator (oha) on loopback.
//!
//! Starts the API on the embedded log in a temp dir beside the sinks' embedded twins (no
//! processors), seeds a sku, an order and 2,000 products, then runs oha against
//! `GET /healthz` (the baseline: routing, middleware, no work), `GET /v1/inventory/{sku}`
//! and `GET /v1/orders/{id}` (the read model's SQLite twin), `GET /v1/search` (the search
//! sink's tantivy twin) and `POST /v1/events` (validate, encode, publish, acknowledge), and
//! prints one markdown row each: requests/s, p50, p99. With
//! `STOREFLOW_BENCH_ELASTICSEARCH=http://127.0.0.1:19200` (`scripts/services up
//! elasticsearch`) the products go to a fresh Elasticsearch index instead (deleted at the
//! end), which is what production searches.
//!
//! ```text
//! cargo install oha --locked --root ~/.cache/storeflow     # once
//! cargo run -p storeflow-api --example http_load -- [seconds] [connections] [rate]
//! ```
//! `rate` (requests/s over all connections, oha's `-q`) holds the load at that rate
//! instead of as fast as the server answers: `-- 10 32 20000` asks "what are p50/p99 at
//! 20 k req/s?". Requests oha could not send in time show as a lower requests/s.
//! `OHA=/path/to/oha` overrides where oha is looked for; `HTTP_LOAD_ONLY=healthz,events`
//! runs only the rows whose name contains one of those words.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use storeflow_api::{ApiConfig, ApiMetrics, ApiState, KeyStore, Live, Reads, Role};
use storeflow_avro::{Codec, JsonOptions};
use storeflow_ingest::publish::{Publisher, contract_topics};
use storeflow_ingest::{EmbeddedLog, Log};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let conns: u32 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    let rate: u32 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(0);
    let oha = std::env::var("OHA").unwrap_or_else(|_| {
        format!("{}/.cache/storeflow/bin/oha", std::env::var("HOME").unwrap_or_default())
    });

    let dir = tempfile::tempdir()?;
    // `HTTP_LOAD_FSYNC=always|interval|never`: the embedded log's fsync policy (default:
    // its default, interval).
    let mut log_config = storeflow_ingest::EmbeddedConfig::default();
    if let Ok(p) = std::env::var("HTTP_LOAD_FSYNC") {
        log_config.fsync = serde_json::from_value(json!(p)).map_err(|e| anyhow::anyhow!("HTTP_LOAD_FSYNC={p}: {e}"))?;
    }
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open_with(dir.path().join("log"), log_config)?);
    log.create_topics(&contract_topics(None))?;
    let codec = Arc::new(Codec::embedded()?);
    // Seed a sku's stock and an order, as the processors would have published them.
    let publisher = Publisher::new(log.as_ref(), codec.clone(), std::sync::Arc::new(storeflow_avro::pii::Vault::in_memory()))?;
    let opts = JsonOptions { fill_missing_ids: true, inputs_only: false };
    for v in [
        json!({"type": "StockLevelChanged", "sku": "S1", "warehouse_id": "wh-de-berlin", "on_hand": 10, "reserved": 2, "available": 8, "cause": "received"}),
        json!({"type": "OrderPlaced", "order_id": "o-1", "customer_id": "C1",
            "items": [{"sku": "S1", "product_id": "P1", "vendor_id": "V-A", "quantity": 2, "unit_price_minor": 1999}],
            "currency": "EUR", "shipping_address": address(), "billing_address": address(),
            "payment_method_token": "pm_x", "client_ip": "203.0.113.9"}),
    ] {
        let e = storeflow_avro::json::event_from_json(v, opts).map_err(|e| anyhow::anyhow!("{e}"))?;
        publisher.publish(&e)?.wait()?;
    }

    let elasticsearch = std::env::var("STOREFLOW_BENCH_ELASTICSEARCH").ok().filter(|v| !v.is_empty()).map(|url| TempIndex {
        url,
        index: format!("bench-http-{}", uuid::Uuid::new_v4().simple()),
    });
    let search_backend = if elasticsearch.is_some() { "Elasticsearch" } else { "tantivy" };

    // The sinks' twins (search on Elasticsearch if asked) over 2,000 products (started outside
    // the API's runtime: the sinks run their own).
    let mut sinks = {
        let brands = ["Acme", "Zed", "Nova", "Orbit"];
        let words = ["wireless", "headphones", "kettle", "lamp", "chair", "speaker", "mug", "desk"];
        for i in 0..2000usize {
            let e = storeflow_avro::json::event_from_json(
                json!({"type": "ProductCreated", "product_id": format!("P{i}"), "vendor_id": format!("V{}", i % 20), "sku": format!("S{i}"),
                    "title": format!("{} {} {i}", words[i % 8], words[(i / 8) % 8]), "description": "a product for the load test",
                    "category": format!("cat{}/sub{}", i % 5, i % 3), "brand": brands[i % 4], "price_minor": 500 + (i as i64 * 37) % 30_000, "currency": "EUR"}),
                opts,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            publisher.publish(&e)?;
        }
        publisher.flush(Duration::from_secs(10))?;
        let mut registry = prometheus_client::registry::Registry::default();
        let mut config = storeflow_sinks::SinksConfig::embedded(dir.path().join("sinks"));
        if let Some(es) = &elasticsearch {
            config.sink_mut::<storeflow_sinks::SearchSink>().elasticsearch = Some(storeflow_sinks::search::config::ElasticsearchConfig {
                url: es.url.clone(),
                index: es.index.clone(),
                ..Default::default()
            });
        }
        let sinks = storeflow_sinks::Sinks::start(log.clone(), codec.clone(), config, &mut registry)?;
        sinks.wait_caught_up(Duration::from_secs(120))?;
        Some(sinks)
    };

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (base, key) = rt.block_on(async {
        let live = Live::start(log.clone(), codec.clone())?;
        while !live.caught_up() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let keys = KeyStore::in_memory();
        // A service key: it may publish what the load sends and read any order.
        let key = keys.create(Role::Service)?;
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = ApiMetrics::register(&mut registry);
        // The rate limit would be what is measured otherwise.
        let config = ApiConfig { rate_per_second: 10_000_000, rate_burst: 10_000_000, ..ApiConfig::default() };
        let reads = Reads::from_sinks(sinks.as_ref().expect("started above"), live);
        let state = ApiState::new(config, log.clone(), codec.clone(), keys, Arc::new(storeflow_avro::pii::Vault::in_memory()), reads, Arc::new(registry), metrics)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(storeflow_api::serve(listener, state, std::future::pending()));
        anyhow::Ok((base, key))
    })?;

    let one = json!({"type": "PageViewed", "session_id": "sess-1", "page": "/home"});
    let event = one.to_string();
    let batch = json!({"events": vec![one; 100]}).to_string();
    let auth = format!("Authorization: Bearer {key}");
    println!("| request | requests/s | p50 | p99 | p99.9 | non-2xx |");
    println!("|---|---|---|---|---|---|");
    for (name, method, path, body) in [
        // Reads first: the writes leave the sinks (which read the sessions topic) with
        // millions of events to catch up on, which would be measured by the rows after.
        ("GET /healthz (baseline)".to_string(), "GET", "/healthz", None),
        ("GET /v1/inventory/{sku}".into(), "GET", "/v1/inventory/S1", None),
        ("GET /v1/orders/{id}".into(), "GET", "/v1/orders/o-1", None),
        (format!("GET /v1/search?q=wireless+speaker&brand=Acme ({search_backend}, 2,000 products)"), "GET", "/v1/search?q=wireless+speaker&brand=Acme", None),
        ("POST /v1/events (1 event)".into(), "POST", "/v1/events", Some(event.as_str())),
        ("POST /v1/events (batch of 100)".into(), "POST", "/v1/events", Some(batch.as_str())),
    ] {
        if let Ok(only) = std::env::var("HTTP_LOAD_ONLY")
            && !only.split(',').any(|w| !w.is_empty() && name.contains(w))
        {
            continue;
        }
        let mut cmd = Command::new(&oha);
        cmd.args(["--no-tui", "--output-format", "json", "-z", &format!("{secs}s"), "-c", &conns.to_string(), "-m", method])
            .args(["-H", &auth, "-H", "content-type: application/json"]);
        if let Some(b) = body {
            cmd.args(["-d", b]);
        }
        if rate > 0 {
            // Latency counted from when a request was due, not when it was sent
            // (no coordinated omission).
            cmd.args(["-q", &rate.to_string(), "--latency-correction"]);
        }
        let out = cmd.arg(format!("{base}{path}")).output().map_err(|e| anyhow::anyhow!("running {oha}: {e} (install it: see the top of this file)"))?;
        anyhow::ensure!(out.status.success(), "oha failed: {}", String::from_utf8_lossy(&out.stderr));
        let r: Value = serde_json::from_slice(&out.stdout)?;
        let ms = |p: &str| r["latencyPercentiles"][p].as_f64().unwrap_or(f64::NAN) * 1000.0;
        let ok: u64 = r["statusCodeDistribution"].as_object().map(|m| {
            m.iter().filter(|(k, _)| k.starts_with('2')).map(|(_, v)| v.as_u64().unwrap_or(0)).sum()
        }).unwrap_or(0);
        let all: u64 = r["statusCodeDistribution"].as_object().map(|m| m.values().map(|v| v.as_u64().unwrap_or(0)).sum()).unwrap_or(0);
        println!(
            "| {name} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {} |",
            r["summary"]["requestsPerSec"].as_f64().unwrap_or(f64::NAN),
            ms("p50"),
            ms("p99"),
            ms("p99.9"),
            all - ok
        );
        // The sinks (search indexes page views as popularity) are done once the reads are
        // measured: the write rows measure the API, not a sink beside it.
        if name.starts_with("GET /v1/search")
            && let Some(s) = sinks.take()
        {
            s.stop()?;
        }
    }
    let topics = log.describe_topics()?;
    let sessions: u64 = topics.iter().filter(|t| t.name == "storefront.sessions").map(|t| t.records()).sum();
    println!("\nevents on storefront.sessions after the run: {sessions}");
    Ok(())
}

/// A benchmark's Elasticsearch index, deleted when dropped.
struct TempIndex {
    url: String,
    index: String,
}

impl Drop for TempIndex {
    fn drop(&mut self) {
        let url = format!("{}/{}", self.url, self.index);
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread().enable_all().build().map(|rt| rt.block_on(reqwest::Client::new().delete(url).send()))
        })
        .join();
    }
}

fn address() -> Value {
    json!({"name": "Ada", "line1": "Street 1", "city": "Berlin", "postal_code": "10115", "country": "DE"})
}
