//! Each sink's write throughput against the raw client's bulk path for the same rows, in
//! the same run (`docs/PERFORMANCE.md`, "Sinks").
//!
//! ```sh
//! eval "$(scripts/services env)"      # the real stores; without them only the twins run
//! cargo bench -p storeflow-sinks --bench sinks
//! ```
//!
//! | sink | rows | sink path | raw baseline |
//! |---|---|---|---|
//! | read model, Postgres | StockLevelChanged → `inventory` upserts | `ReadModelSink::write` (UNNEST upsert, one transaction per batch) | `COPY … FROM STDIN` of the same rows; `INSERT … SELECT FROM UNNEST` |
//! | read model, SQLite | the same | `ReadModelSink::write` | prepared `INSERT` per row in one transaction |
//! | analytics, ClickHouse | ProductViewed → `fact_sessions` | `AnalyticsSink::write` (mapping, idempotency filter, insert) | `clickhouse` crate RowBinary insert of the same rows |
//! | analytics, Parquet | the same | `AnalyticsSink::write` | `ArrowWriter` of the same record batches |
//! | search, Elasticsearch | ProductCreated → documents | `SearchSink::write` (read-modify-write, `_bulk` with versions) | `_bulk` of the same documents |
//! | search, tantivy | the same | `SearchSink::write` | `add_document` + commit of the same documents |
//! | analytics, Parquet, through the runner | the catalogue, rates and ProductViewed on an embedded log | `Sinks` until caught up (poll, decode, batch, read-ahead, write, commit) | `AnalyticsSink::write` of the same events, no log |
//!
//! The sink is measured from decoded events (the log and Avro decoding are benchmarked
//! elsewhere) to durable rows; each figure is the best of three runs.

use std::time::{Duration, Instant};

use storeflow_avro::*;
use storeflow_ingest::partitioner::partition_for_key;
use storeflow_sinks::analytics::AnalyticsSink;
use storeflow_sinks::analytics::config::{AnalyticsConfig, ClickHouseConfig};
use storeflow_sinks::analytics::rows::{FactRow, FactSession};
use storeflow_sinks::read_model::ReadModelConfig;
use storeflow_sinks::search::{ElasticsearchConfig, SearchConfig};
use storeflow_sinks::read_model::ReadModelSink;
use storeflow_sinks::runner::{Item, Sink};
use storeflow_sinks::search::{ProductDoc, SearchSink};

const START: i64 = 1_764_000_000_000;

fn env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.is_empty())
}

fn fresh(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

fn items(events: Vec<Event>) -> Vec<Item> {
    let mut next = std::collections::HashMap::new();
    events
        .into_iter()
        .map(|e| {
            let p = partition_for_key(e.key().as_bytes(), 4);
            let o = next.entry((e.topic(), p)).or_insert(0u64);
            let it = Item::new(e, p, *o);
            *o += 1;
            it
        })
        .collect()
}

fn levels(n: usize) -> Vec<Item> {
    items(
        (0..n)
            .map(|i| {
                Event::StockLevelChanged(StockLevelChanged {
                    event_id: format!("e{i}"),
                    occurred_at: Timestamp(START + i as i64),
                    sku: format!("sku-{}", i / 4),
                    warehouse_id: format!("wh-{}", i % 4),
                    on_hand: (i % 100) as i32 + 10,
                    reserved: (i % 7) as i32,
                    available: (i % 100) as i32 + 10 - (i % 7) as i32,
                    cause: "received".into(),
                    version: 1,
                })
            })
            .collect(),
    )
}

fn views(n: usize) -> Vec<Item> {
    items(
        (0..n)
            .map(|i| {
                Event::ProductViewed(ProductViewed {
                    event_id: format!("{:032x}", i),
                    occurred_at: Timestamp(START + i as i64),
                    session_id: format!("s-{}", i / 8),
                    customer_id: Some(format!("c-{}", i / 40)),
                    product_id: format!("p-{}", i % 400),
                    vendor_id: format!("v-{}", i % 24),
                    category: "electronics/audio/headphones".into(),
                })
            })
            .collect(),
    )
}

fn products(n: usize) -> Vec<Item> {
    items(
        (0..n)
            .map(|i| {
                Event::ProductCreated(ProductCreated {
                    event_id: format!("pc-{i}"),
                    occurred_at: Timestamp(START + i as i64),
                    product_id: format!("p-{i}"),
                    vendor_id: format!("v-{}", i % 24),
                    sku: format!("sku-{i}"),
                    title: format!("Acme Classic Headphones {i}"),
                    description: "Closed-back studio monitor headphones with a detachable cable and a soft case.".into(),
                    translations: Default::default(),
                    category: "electronics/audio/headphones".into(),
                    brand: "Acme".into(),
                    price_minor: 1_000 + i as i64,
                    currency: "EUR".into(),
                })
            })
            .collect(),
    )
}

struct Row {
    sink: &'static str,
    rows: usize,
    sink_rate: f64,
    baselines: Vec<(&'static str, f64)>,
}

fn print(rows: &[Row]) {
    println!();
    println!("| sink | rows | sink rows/s | baseline | baseline rows/s | ratio |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        for (name, b) in &r.baselines {
            println!("| {} | {} | {:.0} | {} | {:.0} | **{:.2}** |", r.sink, r.rows, r.sink_rate, name, b, r.sink_rate / b);
        }
    }
}

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut out = Vec::new();
    rt.block_on(async {
        if let Some(url) = env("STOREFLOW_TEST_POSTGRES") {
            out.push(postgres(&url).await);
        }
        out.push(sqlite().await);
        if let Some(url) = env("STOREFLOW_TEST_CLICKHOUSE") {
            out.push(clickhouse(&url).await);
        }
        out.push(parquet().await);
        if let Some(url) = env("STOREFLOW_TEST_ELASTICSEARCH") {
            out.push(elasticsearch(&url).await);
        }
        out.push(tantivy().await);
        cleanup().await;
    });
    out.push(runner_parquet(&rt));
    print(&out);
}

/// Drops the databases and indexes the runs created (`bench_…`), leaving the services as
/// they were.
async fn cleanup() {
    if let Some(base) = env("STOREFLOW_TEST_POSTGRES") {
        use sqlx::{Connection, Row as _};
        if let Ok(mut c) = sqlx::PgConnection::connect(&base).await {
            let names: Vec<String> = sqlx::query("SELECT datname FROM pg_database WHERE datname LIKE 'bench\\_%'")
                .fetch_all(&mut c)
                .await
                .map(|rows| rows.iter().map(|r| r.get::<String, _>(0)).collect())
                .unwrap_or_default();
            for n in names {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)"))).execute(&mut c).await;
            }
        }
    }
    if let Some(url) = env("STOREFLOW_TEST_CLICKHOUSE") {
        let client = clickhouse::Client::default().with_url(&url);
        let names: Vec<String> = client.query("SELECT name FROM system.databases WHERE startsWith(name, 'bench_')").fetch_all().await.unwrap_or_default();
        for n in names {
            let _ = client.query(&format!("DROP DATABASE IF EXISTS `{n}` SYNC")).execute().await;
        }
    }
    if let Some(url) = env("STOREFLOW_TEST_ELASTICSEARCH") {
        let Ok(transport) = elasticsearch::http::transport::Transport::single_node(&url) else { return };
        let es = elasticsearch::Elasticsearch::new(transport);
        let names: Vec<String> = match es.cat().indices(elasticsearch::cat::CatIndicesParts::Index(&["bench_*"])).format("json").send().await {
            Ok(r) => r.json::<Vec<serde_json::Value>>().await.unwrap_or_default().iter().filter_map(|i| i["index"].as_str().map(str::to_string)).collect(),
            Err(_) => Vec::new(),
        };
        for n in names {
            let _ = es.indices().delete(elasticsearch::indices::IndicesDeleteParts::Index(&[&n])).send().await;
        }
    }
}

async fn pg_database(base: &str) -> String {
    use sqlx::Connection;
    let name = fresh("bench");
    let mut c = sqlx::PgConnection::connect(base).await.expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut c).await.expect("create database");
    format!("{}/{name}", base.rsplit_once('/').expect("db in url").0)
}

async fn postgres(base: &str) -> Row {
    const N: usize = 200_000;
    const BATCH: usize = 5_000;
    let its = levels(N);
    let sink_rate = {
        let mut times = Vec::new();
        for _ in 0..3 {
            let url = pg_database(base).await;
            let mut sink = ReadModelSink::open(&ReadModelConfig { postgres_url: Some(url.into()), ..ReadModelConfig::default() }, std::path::Path::new("/tmp")).await.expect("open");
            let t = Instant::now();
            for c in its.chunks(BATCH) {
                sink.write(c).await.expect("write");
            }
            times.push(t.elapsed());
        }
        times.into_iter().map(|t| N as f64 / t.as_secs_f64()).fold(0.0, f64::max)
    };
    let rows: Vec<&StockLevelChanged> = its.iter().filter_map(|i| if let Event::StockLevelChanged(s) = &i.event { Some(s) } else { None }).collect();
    let mut copy_times = Vec::new();
    let mut unnest_times = Vec::new();
    for _ in 0..3 {
        let url = pg_database(base).await;
        // The same schema: the sink's migrations.
        let s = ReadModelSink::open(&ReadModelConfig { postgres_url: Some(url.clone().into()), ..ReadModelConfig::default() }, std::path::Path::new("/tmp")).await.expect("open");
        let storeflow_sinks::read_model::Db::Postgres(pool) = s.db().clone() else { unreachable!("postgres") };
        let t = Instant::now();
        for c in rows.chunks(BATCH) {
            let mut tx = pool.begin().await.expect("tx");
            let mut cp = tx.copy_in_raw("COPY inventory (sku, warehouse_id, on_hand, reserved, available, cause, updated_at) FROM STDIN").await.expect("copy");
            let mut buf = String::with_capacity(c.len() * 64);
            for r in c {
                buf.push_str(&format!("{}\t{}\t{}\t{}\t{}\t{}\t{}\n", r.sku, r.warehouse_id, r.on_hand, r.reserved, r.available, r.cause, r.occurred_at.millis()));
            }
            cp.send(buf.into_bytes()).await.expect("send");
            cp.finish().await.expect("finish");
            tx.commit().await.expect("commit");
        }
        copy_times.push(t.elapsed());
        sqlx::query("TRUNCATE inventory").execute(&pool).await.expect("truncate");
        let t = Instant::now();
        for c in rows.chunks(BATCH) {
            sqlx::query("INSERT INTO inventory (sku, warehouse_id, on_hand, reserved, available, cause, updated_at) SELECT * FROM UNNEST($1::text[], $2::text[], $3::int4[], $4::int4[], $5::int4[], $6::text[], $7::int8[])")
                .bind(c.iter().map(|r| r.sku.clone()).collect::<Vec<_>>())
                .bind(c.iter().map(|r| r.warehouse_id.clone()).collect::<Vec<_>>())
                .bind(c.iter().map(|r| r.on_hand).collect::<Vec<_>>())
                .bind(c.iter().map(|r| r.reserved).collect::<Vec<_>>())
                .bind(c.iter().map(|r| r.available).collect::<Vec<_>>())
                .bind(c.iter().map(|r| r.cause.clone()).collect::<Vec<_>>())
                .bind(c.iter().map(|r| r.occurred_at.millis()).collect::<Vec<_>>())
                .execute(&pool)
                .await
                .expect("unnest");
        }
        unnest_times.push(t.elapsed());
    }
    let rate = |v: Vec<Duration>| v.into_iter().map(|t| N as f64 / t.as_secs_f64()).fold(0.0, f64::max);
    Row { sink: "read model → Postgres", rows: N, sink_rate, baselines: vec![("COPY FROM STDIN", rate(copy_times)), ("INSERT … UNNEST", rate(unnest_times))] }
}

async fn sqlite() -> Row {
    const N: usize = 100_000;
    let its = levels(N);
    let sink_rate = {
        let mut best_rate = 0.0f64;
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("tmp");
            let mut sink = ReadModelSink::open(&ReadModelConfig::default(), dir.path()).await.expect("open");
            let t = Instant::now();
            for c in its.chunks(5_000) {
                sink.write(c).await.expect("write");
            }
            best_rate = best_rate.max(N as f64 / t.elapsed().as_secs_f64());
        }
        best_rate
    };
    let mut raw = 0.0f64;
    for _ in 0..3 {
        let dir = tempfile::tempdir().expect("tmp");
        let s = ReadModelSink::open(&ReadModelConfig::default(), dir.path()).await.expect("open");
        let storeflow_sinks::read_model::Db::Sqlite(pool) = s.db().clone() else { unreachable!("sqlite") };
        let t = Instant::now();
        for c in its.chunks(5_000) {
            let mut tx = pool.begin().await.expect("tx");
            for i in c {
                let Event::StockLevelChanged(r) = &i.event else { continue };
                sqlx::query("INSERT INTO inventory (sku, warehouse_id, on_hand, reserved, available, cause, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                    .bind(&r.sku)
                    .bind(&r.warehouse_id)
                    .bind(r.on_hand)
                    .bind(r.reserved)
                    .bind(r.available)
                    .bind(&r.cause)
                    .bind(r.occurred_at.millis())
                    .execute(&mut *tx)
                    .await
                    .expect("insert");
            }
            tx.commit().await.expect("commit");
        }
        raw = raw.max(N as f64 / t.elapsed().as_secs_f64());
    }
    Row { sink: "read model → SQLite", rows: N, sink_rate, baselines: vec![("prepared INSERT per row, one transaction", raw)] }
}

fn session_rows(its: &[Item]) -> Vec<FactSession> {
    its.iter()
        .filter_map(|i| {
            let Event::ProductViewed(v) = &i.event else { return None };
            Some(FactSession {
                event_id: v.event_id.clone(),
                occurred_at: v.occurred_at.millis(),
                event_type: "ProductViewed".into(),
                session_id: v.session_id.clone(),
                customer_id: v.customer_id.clone().unwrap_or_default(),
                product_id: v.product_id.clone(),
                vendor_id: v.vendor_id.clone(),
                category: v.category.clone(),
                src_topic: i.topic.to_string(),
                src_partition: i.partition,
                src_offset: i.offset,
                ..Default::default()
            })
        })
        .collect()
}

async fn clickhouse(url: &str) -> Row {
    const N: usize = 400_000;
    const BATCH: usize = 20_000;
    let its = views(N);
    let rows = session_rows(&its);
    let mut sink_rate = 0.0f64;
    let mut raw = 0.0f64;
    for _ in 0..3 {
        let cfg = AnalyticsConfig { clickhouse: Some(ClickHouseConfig { url: url.into(), database: fresh("bench"), ..ClickHouseConfig::default() }), ..AnalyticsConfig::default() };
        let mut sink = AnalyticsSink::open(&cfg, "EUR", std::path::Path::new("/tmp")).await.expect("open");
        let t = Instant::now();
        for c in its.chunks(BATCH) {
            sink.write(c).await.expect("write");
        }
        sink_rate = sink_rate.max(N as f64 / t.elapsed().as_secs_f64());
        // The raw client into an identical database (same DDL and materialized views).
        let db = fresh("bench_raw");
        let cfg = AnalyticsConfig { clickhouse: Some(ClickHouseConfig { url: url.into(), database: db.clone(), ..ClickHouseConfig::default() }), ..AnalyticsConfig::default() };
        let _ = AnalyticsSink::open(&cfg, "EUR", std::path::Path::new("/tmp")).await.expect("create the raw database");
        let client = clickhouse::Client::default().with_url(url).with_database(&db);
        let t = Instant::now();
        for c in rows.chunks(BATCH) {
            let mut ins = client.insert::<FactSession>(FactSession::TABLE).await.expect("insert");
            for r in c {
                ins.write(r).await.expect("write");
            }
            ins.end().await.expect("end");
        }
        raw = raw.max(N as f64 / t.elapsed().as_secs_f64());
    }
    Row { sink: "analytics → ClickHouse", rows: N, sink_rate, baselines: vec![("clickhouse crate RowBinary insert", raw)] }
}

async fn parquet() -> Row {
    const N: usize = 400_000;
    const BATCH: usize = 20_000;
    let its = views(N);
    let rows = session_rows(&its);
    let mut sink_rate = 0.0f64;
    let mut raw = 0.0f64;
    for _ in 0..3 {
        let dir = tempfile::tempdir().expect("tmp");
        let mut sink = AnalyticsSink::open(&AnalyticsConfig::default(), "EUR", dir.path()).await.expect("open");
        let t = Instant::now();
        for c in its.chunks(BATCH) {
            sink.write(c).await.expect("write");
        }
        sink_rate = sink_rate.max(N as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        for (n, c) in rows.chunks(BATCH).enumerate() {
            let batch = FactSession::to_batch(c).expect("batch");
            let path = dir.path().join(format!("raw-{n}.parquet"));
            let f = std::fs::File::create(&path).expect("create");
            let props = parquet::file::properties::WriterProperties::builder().set_compression(parquet::basic::Compression::SNAPPY).build();
            let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), Some(props)).expect("writer");
            w.write(&batch).expect("write");
            w.into_inner().expect("close").sync_all().expect("sync");
        }
        raw = raw.max(N as f64 / t.elapsed().as_secs_f64());
    }
    Row { sink: "analytics → Parquet", rows: N, sink_rate, baselines: vec![("ArrowWriter + fsync, same batches", raw)] }
}

fn docs(its: &[Item]) -> Vec<(String, ProductDoc)> {
    let rates = storeflow_sinks::reference::Reference::new("EUR");
    its.iter()
        .filter_map(|i| {
            let Event::ProductCreated(p) = &i.event else { return None };
            let mut d = ProductDoc::product(&p.product_id);
            d.apply(i, &rates).ok()?;
            Some((p.product_id.clone(), d))
        })
        .collect()
}

async fn elasticsearch(url: &str) -> Row {
    const N: usize = 40_000;
    const BATCH: usize = 2_000;
    let its = products(N);
    let all = docs(&its);
    let mut sink_rate = 0.0f64;
    let mut raw = 0.0f64;
    for _ in 0..3 {
        let cfg = SearchConfig { elasticsearch: Some(ElasticsearchConfig { url: url.into(), index: fresh("bench"), ..ElasticsearchConfig::default() }), ..SearchConfig::default() };
        let mut sink = SearchSink::open(&cfg, "EUR", std::path::Path::new("/tmp")).await.expect("open");
        let t = Instant::now();
        for c in its.chunks(BATCH) {
            sink.write(c).await.expect("write");
        }
        sink_rate = sink_rate.max(N as f64 / t.elapsed().as_secs_f64());
        let raw_cfg = ElasticsearchConfig { url: url.into(), index: fresh("bench_raw"), ..ElasticsearchConfig::default() };
        let es = storeflow_sinks::search::ElasticIndex::open(&raw_cfg).await.expect("raw index");
        let t = Instant::now();
        for c in all.chunks(BATCH) {
            let mut nd = Vec::with_capacity(c.len() * 1024);
            for (id, d) in c {
                serde_json::to_writer(&mut nd, &serde_json::json!({"index": {"_index": raw_cfg.index, "_id": id}})).expect("json");
                nd.push(b'\n');
                serde_json::to_writer(&mut nd, d).expect("json");
                nd.push(b'\n');
            }
            es.bulk("raw bulk", nd).await.expect("bulk");
        }
        raw = raw.max(N as f64 / t.elapsed().as_secs_f64());
    }
    Row { sink: "search → Elasticsearch", rows: N, sink_rate, baselines: vec![("_bulk index of the same documents", raw)] }
}

async fn tantivy() -> Row {
    const N: usize = 40_000;
    const BATCH: usize = 2_000;
    let its = products(N);
    let all = docs(&its);
    let mut sink_rate = 0.0f64;
    let mut raw = 0.0f64;
    for _ in 0..3 {
        let dir = tempfile::tempdir().expect("tmp");
        let mut sink = SearchSink::open(&SearchConfig::default(), "EUR", dir.path()).await.expect("open");
        let t = Instant::now();
        for c in its.chunks(BATCH) {
            sink.write(c).await.expect("write");
        }
        sink_rate = sink_rate.max(N as f64 / t.elapsed().as_secs_f64());
        let rdir = tempfile::tempdir().expect("tmp");
        let idx = storeflow_sinks::search::TantivyIndex::open(rdir.path()).expect("raw index");
        let t = Instant::now();
        for c in all.chunks(BATCH) {
            let m: std::collections::BTreeMap<String, ProductDoc> = c.iter().cloned().collect();
            idx.put_unversioned(&m).expect("put");
        }
        raw = raw.max(N as f64 / t.elapsed().as_secs_f64());
    }
    Row { sink: "search → tantivy", rows: N, sink_rate, baselines: vec![("add_document + commit of the same documents", raw)] }
}

/// Analytics → Parquet through the runner (`Sinks`): the catalogue, the rates and product
/// views on an embedded log, read, decoded, batched and written until caught up — against
/// `AnalyticsSink::write` of the same events, decoded, in the same batches, with no log.
fn runner_parquet(rt: &tokio::runtime::Runtime) -> Row {
    const N: usize = 400_000;
    const BATCH: usize = 20_000;
    let mut events: Vec<Event> = products(400).into_iter().map(|i| i.event).collect();
    for (code, rate) in [("USD", 925_925_926i64), ("GBP", 1_176_470_588), ("JPY", 6_172_840)] {
        events.push(Event::ExchangeRateUpdated(ExchangeRateUpdated {
            event_id: format!("rate-{code}"),
            occurred_at: Timestamp(START),
            base_currency: code.into(),
            quote_currency: "EUR".into(),
            rate_e9: rate,
        }));
    }
    events.extend(views(N).into_iter().map(|i| i.event));
    let total = events.len();
    let dir = tempfile::tempdir().expect("tmp");
    let log: std::sync::Arc<dyn storeflow_ingest::Log> = std::sync::Arc::new(storeflow_ingest::EmbeddedLog::open(&dir.path().join("log")).expect("log"));
    log.create_topics(&storeflow_ingest::publish::contract_topics(None)).expect("topics");
    let codec = std::sync::Arc::new(Codec::embedded().expect("codec"));
    let publisher = storeflow_ingest::publish::Publisher::new(log.as_ref(), codec.clone(), std::sync::Arc::new(storeflow_avro::pii::Vault::in_memory())).expect("publisher");
    for chunk in events.chunks(5_000) {
        for ack in publisher.publish_batch(chunk).expect("publish") {
            ack.wait().expect("acknowledged");
        }
    }
    let mut sink_rate = 0.0f64;
    let mut raw = 0.0f64;
    for run in 0..3 {
        let mut c = storeflow_sinks::SinksConfig::embedded(dir.path().join(format!("sinks-{run}"))).only(&["analytics"]);
        c.app = format!("bench-{run}");
        c.sink_mut::<AnalyticsSink>().max_wait_ms = 50;
        let t = Instant::now();
        let sinks = storeflow_sinks::Sinks::start(log.clone(), codec.clone(), c, &mut prometheus_client::registry::Registry::default()).expect("start");
        sinks.wait_caught_up(Duration::from_secs(600)).expect("caught up");
        sink_rate = sink_rate.max(total as f64 / t.elapsed().as_secs_f64());
        sinks.stop().expect("stop");
        let its = items(events.clone());
        let direct = tempfile::tempdir().expect("tmp");
        raw = raw.max(rt.block_on(async {
            let mut sink = AnalyticsSink::open(&AnalyticsConfig::default(), "EUR", direct.path()).await.expect("open");
            let t = Instant::now();
            for c in its.chunks(BATCH) {
                sink.write(c).await.expect("write");
            }
            total as f64 / t.elapsed().as_secs_f64()
        }));
    }
    Row { sink: "analytics → Parquet, through the runner", rows: total, sink_rate, baselines: vec![("AnalyticsSink::write of the same events, no log", raw)] }
}
