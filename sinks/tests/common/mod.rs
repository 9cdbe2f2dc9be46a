//! Helpers of the sinks' integration tests: simulated events, items placed like the log
//! places them, an embedded log, fresh Postgres databases / ClickHouse databases /
//! Elasticsearch indexes per test, and the services script for outage tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use storeflow_avro::{Codec, Event, Timestamp};
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
    let p = Publisher::new(log, codec.clone()).expect("publisher");
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

fn cleanup(f: impl FnOnce() + Send + 'static) -> Cleanup {
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
