//! Helpers of the sinks' integration tests: simulated events, items placed like the log
//! places them, an embedded log, fresh Postgres databases / ClickHouse databases /
//! Elasticsearch indexes per test, and the services script for outage tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use storeflow_avro::{
    Address, Codec, Event, MissingStock, OrderItem, OrderPlaced, OrderStatusChanged, ReservationMade, ReservationRejected, ReservedLine,
    StockLevelChanged, Timestamp,
};
use storeflow_ingest::contract::service_address;
use storeflow_ingest::partitioner::partition_for_key;
use storeflow_ingest::publish::{Publisher, contract_topics};
use storeflow_ingest::{EmbeddedLog, Log};
use storeflow_sim::{SimConfig, Simulator};
use storeflow_sinks::analytics::config::ClickHouseConfig;
use storeflow_sinks::runner::Item;
use storeflow_sinks::search::config::ElasticsearchConfig;

/// A fixed simulated start, so runs are reproducible.
pub const START: i64 = 1_764_000_000_000;

/// Installs the process-wide TLS provider (two rustls backends are in the tree).
pub fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// `n` simulated storefront events.
pub fn sim(n: usize, seed: u64) -> Vec<Event> {
    Simulator::new(SimConfig { seed, start: Timestamp(START), ..SimConfig::default() }).take(n).collect()
}

/// Items as the log would hand them out: partition by key (murmur2, the topic's default
/// partitions), offsets counting up per partition.
pub fn items(events: &[Event]) -> Vec<Item> {
    let mut next: HashMap<(String, u32), u64> = HashMap::new();
    events
        .iter()
        .map(|e| {
            let p = partition_for_key(e.key().as_bytes(), e.topic().default_partitions());
            let o = next.entry((e.topic().name().to_string(), p)).or_insert(0);
            let it = Item::new(e.clone(), p, *o);
            *o += 1;
            it
        })
        .collect()
}

/// Events of a type in `events`.
pub fn count(events: &[Event], name: &str) -> i64 {
    events.iter().filter(|e| e.name() == name).count() as i64
}

/// An embedded log in `dir` with the contract's topics.
pub fn log(dir: &Path) -> Arc<dyn Log> {
    let log = EmbeddedLog::open(dir).expect("open the embedded log");
    log.create_topics(&contract_topics(None)).expect("create topics");
    Arc::new(log)
}

/// The embedded codec.
pub fn codec() -> Arc<Codec> {
    Arc::new(Codec::embedded().expect("embedded codec"))
}

/// Publishes `events` and waits for every acknowledgement.
pub fn publish(log: &dyn Log, codec: &Arc<Codec>, events: &[Event]) {
    let p = Publisher::new(log, codec.clone(), std::sync::Arc::new(storeflow_avro::pii::Vault::in_memory())).expect("publisher");
    for chunk in events.chunks(1_000) {
        for ack in p.publish_batch(chunk).expect("publish") {
            ack.wait().expect("acknowledged");
        }
    }
}

/// A fresh name for a database, table or index.
pub fn fresh(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// Removes a test's database or index when dropped, so tests leave nothing behind.
pub struct Cleanup(Option<Box<dyn FnOnce() + Send>>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// A guard that runs `f` when dropped.
pub fn cleanup(f: impl FnOnce() + Send + 'static) -> Cleanup {
    Cleanup(Some(Box::new(f)))
}

/// A fresh Postgres database on the test server (dropped with the guard); `None`
/// (skipped) without one.
pub fn postgres() -> Option<(String, Cleanup)> {
    let base = service_address("STOREFLOW_TEST_POSTGRES", "Postgres")?;
    let name = fresh("sinks");
    let run = |sql: String, base: String| {
        tokio::runtime::Runtime::new().expect("runtime").block_on(async move {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&base).await?;
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await.map(|_| ())
        })
    };
    run(format!("CREATE DATABASE {name}"), base.clone()).expect("create a Postgres database");
    let (prefix, _) = base.rsplit_once('/').expect("a database in the URL");
    let url = format!("{prefix}/{name}");
    Some((url, cleanup(move || {
        let _ = run(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"), base);
    })))
}

/// A fresh ClickHouse database on the test server (dropped with the guard); `None`
/// (skipped) without one.
pub fn clickhouse() -> Option<(ClickHouseConfig, Cleanup)> {
    let url = service_address("STOREFLOW_TEST_CLICKHOUSE", "ClickHouse")?;
    let cfg = ClickHouseConfig { url: url.clone(), database: fresh("sinks"), ..ClickHouseConfig::default() };
    let db = cfg.database.clone();
    Some((cfg, cleanup(move || {
        let _ = tokio::runtime::Runtime::new().expect("runtime").block_on(async move {
            clickhouse::Client::default().with_url(url).query(&format!("DROP DATABASE IF EXISTS `{db}` SYNC")).execute().await
        });
    })))
}

/// A fresh Elasticsearch index on the test server (deleted with the guard); `None`
/// (skipped) without one.
pub fn elasticsearch() -> Option<(ElasticsearchConfig, Cleanup)> {
    let url = service_address("STOREFLOW_TEST_ELASTICSEARCH", "Elasticsearch")?;
    let cfg = ElasticsearchConfig { url: url.clone(), index: fresh("sinks").to_lowercase(), ..ElasticsearchConfig::default() };
    let index = cfg.index.clone();
    Some((cfg, cleanup(move || {
        let _ = tokio::runtime::Runtime::new().expect("runtime").block_on(async move {
            let transport = elasticsearch::http::transport::Transport::single_node(&url)?;
            elasticsearch::Elasticsearch::new(transport)
                .indices()
                .delete(elasticsearch::indices::IndicesDeleteParts::Index(&[&index]))
                .send()
                .await
                .map(|_| ())
        });
    })))
}

/// Runs `scripts/services <cmd> <name>` (the test's environment carries the run dir and
/// ports the services were started with).
pub fn services(cmd: &str, name: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/services");
    let out = std::process::Command::new("bash").arg(script).arg(cmd).arg(name).output().expect("run scripts/services");
    assert!(out.status.success(), "scripts/services {cmd} {name} failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// How long a test waits for sinks to catch up.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// `n` event times `base + spacing × k` for k a fixed permutation of 0..n (k = i × 17 mod n):
/// what several producers' clocks make of events processed one after the other.
pub fn shuffled_times(n: usize, base: i64, spacing: i64) -> Vec<i64> {
    assert!(!n.is_multiple_of(17), "17 must be coprime to n for a permutation");
    (0..n).map(|i| base + spacing * ((i * 17) % n) as i64).collect()
}

/// A StockLevelChanged snapshot as the inventory processor emits it.
pub fn level(sku: &str, warehouse: &str, version: i64, at: i64, on_hand: i32, reserved: i32, cause: &str) -> Event {
    Event::StockLevelChanged(StockLevelChanged {
        event_id: format!("sl-{sku}-{warehouse}-{version}"),
        occurred_at: Timestamp(at),
        sku: sku.into(),
        warehouse_id: warehouse.into(),
        on_hand,
        reserved,
        available: on_hand - reserved,
        cause: cause.into(),
        version,
    })
}

fn address() -> Address {
    Address { name: "Ada".into(), line1: "1 Way".into(), line2: None, city: "Berlin".into(), postal_code: "10115".into(), region: None, country: "DE".into() }
}

fn status(order: &str, version: i64, at: i64, status: &str, reason: &str) -> Event {
    Event::OrderStatusChanged(OrderStatusChanged {
        event_id: format!("st-{order}-{version}"),
        occurred_at: Timestamp(at),
        order_id: order.into(),
        customer_id: "c-race".into(),
        previous_status: None,
        status: status.into(),
        payment_status: "pending".into(),
        fulfillment_status: "unfulfilled".into(),
        reason: reason.into(),
        total_minor: 1_000,
        currency: "EUR".into(),
        version,
    })
}

/// `racers` single-unit orders racing for the `units` units of `sku` in `warehouse`, as the
/// log holds them in processing order: the receipt of the units, then per order its
/// OrderPlaced and what the processors derived from it, each stamped with its order's time
/// ([`shuffled_times`], a second apart) — the first `units` orders reserve a unit (a
/// StockLevelChanged with the next version, ReservationMade, status reserved), the rest are
/// rejected (ReservationRejected, status cancelled). Order ids are `<sku>-o<k>`.
pub fn racing_reservations(sku: &str, warehouse: &str, product: &str, units: i32, racers: usize) -> Vec<Event> {
    let times = shuffled_times(racers, START, 1_000);
    let mut out = vec![level(sku, warehouse, 1, START - 60_000, units, 0, "received")];
    let mut reserved = 0;
    for (k, at) in times.into_iter().enumerate() {
        let order = format!("{sku}-o{k}");
        out.push(Event::OrderPlaced(OrderPlaced {
            event_id: format!("op-{order}"),
            occurred_at: Timestamp(at),
            order_id: order.clone(),
            customer_id: "c-race".into(),
            session_id: None,
            customer_since: None,
            items: vec![OrderItem { sku: sku.into(), product_id: product.into(), vendor_id: "v-race".into(), quantity: 1, unit_price_minor: 1_000 }],
            currency: "EUR".into(),
            shipping_address: address(),
            billing_address: address(),
            shipping_minor: 0,
            tax_minor: 0,
            discount_minor: 0,
            payment_method_token: "tok".into(),
            client_ip: "10.0.0.1".into(),
        }));
        out.push(status(&order, 1, at, "placed", "placed"));
        if reserved < units {
            reserved += 1;
            out.push(level(sku, warehouse, i64::from(reserved) + 1, at, units, reserved, "reserved"));
            out.push(Event::ReservationMade(ReservationMade {
                event_id: format!("rm-{order}"),
                occurred_at: Timestamp(at),
                order_id: order.clone(),
                lines: vec![ReservedLine { sku: sku.into(), warehouse_id: warehouse.into(), quantity: 1 }],
                expires_at: Timestamp(at + 900_000),
            }));
            out.push(status(&order, 2, at, "reserved", "stock reserved"));
        } else {
            out.push(Event::ReservationRejected(ReservationRejected {
                event_id: format!("rr-{order}"),
                occurred_at: Timestamp(at),
                order_id: order.clone(),
                missing: vec![MissingStock { sku: sku.into(), requested: 1, available: 0 }],
                reason: "out of stock".into(),
            }));
            out.push(status(&order, 2, at, "cancelled", "out of stock"));
        }
    }
    out
}

/// `n` receipts of one unit each of `sku` in `warehouse` as the inventory processor's
/// snapshots (versions 1..=n, on hand 1..=n), posted by producers whose clocks are up to 2 s
/// apart: event times jump back and forth within 2 s.
pub fn receipts(sku: &str, warehouse: &str, n: usize) -> Vec<Event> {
    (1..=n).map(|k| level(sku, warehouse, k as i64, START + ((k * 733) % 2_000) as i64, k as i32, 0, "received")).collect()
}

/// The StockLevelChanged an event-time rule would keep: the newest `occurred_at` (the later
/// one on a tie). Tests assert it is not the last snapshot, so they fail under that rule.
pub fn newest_by_event_time(events: &[Event]) -> Option<&StockLevelChanged> {
    events
        .iter()
        .filter_map(|e| if let Event::StockLevelChanged(s) = e { Some(s) } else { None })
        .fold(None, |best: Option<&StockLevelChanged>, s| match best {
            Some(b) if b.occurred_at.millis() > s.occurred_at.millis() => Some(b),
            _ => Some(s),
        })
}
