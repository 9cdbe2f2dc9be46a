//! The processor runtime: a trivial stateful processor (count per key) with exactly-once on,
//! against a plain consume → produce loop of the same records in the same run; and the
//! changelog restore rate.
//!
//! `cargo bench -p storeflow-bench --bench runtime` (embedded log only), or with
//! `STOREFLOW_BENCH_KAFKA=127.0.0.1:19092` also on Kafka (`scripts/services up kafka`).
//!
//! 200,000 JSON records (about 70 bytes) over 4 partitions and 10,000 keys. Time runs from
//! starting the processor to its group having committed every input offset. Commits every
//! 100 ms (the default, as Kafka Streams under exactly-once) unless the line says otherwise.
//! Restore: 500,000 distinct keys in one changelog partition, replayed into an empty store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use storeflow_bench::{KEYS, RECORDS as N, produce, run_to_end};
use storeflow_ingest::{ConsumerConfig, EmbeddedLog, KafkaLog, KafkaSettings, Log, OffsetReset, ProduceRecord, TopicPartition, TopicSpec};
use storeflow_processors::runtime::{changelog_of, restore_partition};
use storeflow_processors::state::{KvBackend, MemBackend, RedbBackend};
use storeflow_processors::testing::{Count, Route};
use storeflow_processors::{Processor, StateBackend};

/// Count per key with exactly-once; returns records/s.
fn run_count(log: Arc<dyn Log>, app: &str, input: &str, output: &str, state: StateBackend, commit: Duration) -> f64 {
    let count = Count::new(Route { input: input.into(), output: output.into() });
    run_to_end(log, Box::new(count), app, input, output, state, commit)
}

/// Plain consume → produce of the same records: no state, no transactions; offsets
/// committed at the end. Returns records/s.
fn run_plain(log: Arc<dyn Log>, input: &str, output: &str) -> f64 {
    log.create_topics(&[TopicSpec::new(output, 4)]).expect("topic");
    let started = Instant::now();
    let mut cfg = ConsumerConfig::new(&format!("plain-{}", uuid::Uuid::new_v4()));
    cfg.reset = OffsetReset::Earliest;
    let mut c = log.consumer(cfg, None).expect("consumer");
    c.assign(&(0..4).map(|p| (TopicPartition::new(input, p), 0)).collect::<Vec<_>>()).expect("assign");
    let p = log.producer().expect("producer");
    let mut n = 0u64;
    let mut acks = Vec::new();
    while n < N {
        let recs = c.poll(5000, Duration::from_secs(5)).expect("poll");
        n += recs.len() as u64;
        let out: Vec<ProduceRecord> = recs
            .into_iter()
            .map(|r| ProduceRecord::new(output, r.key.as_deref().unwrap_or_default().to_vec(), r.value.as_deref().unwrap_or_default().to_vec()))
            .collect();
        acks.extend(p.send_batch(out).expect("send"));
    }
    for a in acks {
        a.wait().expect("ack");
    }
    let offsets: Vec<(TopicPartition, u64)> = (0..4).filter_map(|pn| {
        let tp = TopicPartition::new(input, pn);
        c.position(&tp).map(|o| (tp, o))
    }).collect();
    c.commit(&offsets).expect("commit");
    let secs = started.elapsed().as_secs_f64();
    c.close().expect("close");
    N as f64 / secs
}

const RESTORE: u64 = 500_000;

/// A changelog partition of `RESTORE` distinct keys, written the way the runtime writes it.
fn big_changelog(log: &dyn Log, topic: &str) {
    log.create_topics(&[TopicSpec::compacted(topic, 1)]).expect("topic");
    let p = log.producer().expect("producer");
    let mut acks = Vec::new();
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..RESTORE {
        let key = storeflow_processors::state::full_key("counts", &format!("k{i}"));
        let value = storeflow_processors::state::encode_value(&i, None).expect("value");
        batch.push(ProduceRecord::new(topic, key, value).to_partition(0));
        if batch.len() == 10_000 {
            acks.extend(p.send_batch(std::mem::take(&mut batch)).expect("send"));
        }
    }
    acks.extend(p.send_batch(batch).expect("send"));
    for a in acks {
        a.wait().expect("ack");
    }
}

/// Replays partition 0 of `changelog` into a fresh backend; returns records/s.
fn restore(log: &dyn Log, changelog: &str, backend: &mut dyn KvBackend) -> (u64, f64) {
    let tp = TopicPartition::new(changelog, 0);
    let started = Instant::now();
    let n = restore_partition(log, &tp, backend, &format!("bench-restore-{}", uuid::Uuid::new_v4()), &mut |_, _| {}).expect("restore");
    (n, n as f64 / started.elapsed().as_secs_f64())
}

fn report(backend: &str, log: Arc<dyn Log>, dir: &std::path::Path) {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let input = format!("bench.{tag}.in");
    produce(&*log, &input);
    let plain = run_plain(log.clone(), &input, &format!("bench.{tag}.plain"));
    let app_mem = format!("bench{tag}m");
    let ms100 = Duration::from_millis(100);
    let mem = run_count(log.clone(), &app_mem, &input, &format!("bench.{tag}.mem"), StateBackend::Memory, ms100);
    let app_redb = format!("bench{tag}r");
    let redb = run_count(log.clone(), &app_redb, &input, &format!("bench.{tag}.redb"), StateBackend::Redb(dir.join(&tag)), ms100);
    let app_slow = format!("bench{tag}s");
    let slow = run_count(log.clone(), &app_slow, &input, &format!("bench.{tag}.slow"), StateBackend::Redb(dir.join(format!("{tag}s"))), Duration::from_secs(1));
    let _ = changelog_of(&app_redb, "count");
    let changelog = format!("bench.{tag}.changelog");
    big_changelog(&*log, &changelog);
    let (n_mem, r_mem) = restore(&*log, &changelog, &mut MemBackend::default());
    let mut rb = RedbBackend::open(&dir.join(format!("{tag}-restore.redb"))).expect("redb");
    let (n_redb, r_redb) = restore(&*log, &changelog, &mut rb);
    println!("\n{backend}: {N} records, 4 partitions, {KEYS} keys");
    println!("  {:<58} {:>12.0} records/s", "plain consume → produce (no state, no transactions)", plain);
    println!("  {:<58} {:>12.0} records/s  ratio {:.2}", "count per key, exactly-once, state in memory", mem, mem / plain);
    println!("  {:<58} {:>12.0} records/s  ratio {:.2}", "count per key, exactly-once, state in redb", redb, redb / plain);
    println!("  {:<58} {:>12.0} records/s  ratio {:.2}", "  the same, committing every 1 s instead of 100 ms", slow, slow / plain);
    println!("  {:<58} {:>12.0} records/s  ({n_mem} records)", "changelog restore into memory", r_mem);
    println!("  {:<58} {:>12.0} records/s  ({n_redb} records)", "changelog restore into redb", r_redb);
}

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir.path().join("log")).expect("log"));
    report("embedded log", embedded, dir.path());
    if let Ok(brokers) = std::env::var("STOREFLOW_BENCH_KAFKA") {
        let kafka: Arc<dyn Log> = Arc::new(KafkaLog::connect(KafkaSettings::new(&brokers)).expect("kafka"));
        report(&format!("Kafka at {brokers}"), kafka, dir.path());
    } else {
        println!("\n(set STOREFLOW_BENCH_KAFKA=host:port to measure on Kafka too)");
    }
}
