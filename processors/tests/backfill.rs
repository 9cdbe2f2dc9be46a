//! A backfill gives what live processing gave, record for record.
//!
//! Live: the five processors run while simulated traffic is published, its producer
//! declaring how far it is (as the demo's does). Backfill: the same source records are
//! copied into a fresh log topic by topic in reverse order — so that when the processors
//! start, some inputs hold hours of records and others none yet, and each partition is
//! skewed in event time against the others — and only then are the processors started.
//! Both must end with the same order histories (every status, its reason, its version),
//! the same fraud verdicts, the same reservations and stock levels, the same timer firings
//! (payment timeouts and fraud-gate confirmations, short enough here to fire). The backfill
//! runs twice, on the embedded log and on Kafka (a private broker: the contract topics must
//! hold nothing else), where a consumer's position is unknown until its first record.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use storeflow_avro::{Codec, Timestamp, Topic};
use storeflow_ingest::publish::{contract_topics, record_for};
use storeflow_ingest::{ConsumerConfig, EmbeddedLog, KafkaLog, KafkaSettings, Log, OffsetReset, ProduceRecord, Record, TopicPartition};
use storeflow_processors::metrics::{Metrics, ProcessorLabel};
use storeflow_processors::runtime::progress::{declare, withdraw};
use storeflow_processors::testing::PrivateKafka;
use storeflow_processors::{Idle, Runtime, RuntimeConfig, StateBackend};
use storeflow_sim::{SimConfig, Simulator};


/// Short timers, so that some fire within a few simulated seconds.
fn config(name: &str) -> Value {
    match name {
        "orders" => json!({ "payment_timeout_ms": 3_000, "fraud_gate_ms": 1_500 }),
        _ => Value::Null,
    }
}

fn start(log: &Arc<dyn Log>, codec: &Arc<Codec>, app: &str, metrics: &Arc<Metrics>) -> Vec<Runtime> {
    let topology = Arc::new(storeflow_processors::topology(&**log, &storeflow_processors::registry(), &config).unwrap());
    // A bounded replay: the results must not depend on when the test runs.
    let rc = RuntimeConfig { app: app.to_string(), state: StateBackend::Memory, idle: Idle::EndOfInput, topology: Some(topology), ..RuntimeConfig::default() };
    storeflow_processors::registry()
        .iter()
        .map(|reg| Runtime::spawn((reg.build)(&config(reg.name)).unwrap(), log.clone(), codec.clone(), rc.clone(), metrics.clone()).unwrap())
        .collect()
}

/// Waits until every processor has nothing buffered and has committed all its inputs, for
/// a while.
fn settle(log: &dyn Log, app: &str, metrics: &Metrics, runtimes: &[Runtime]) {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut quiet_since: Option<Instant> = None;
    loop {
        let per: Vec<(String, i64)> = runtimes.iter().map(|r| (r.name().to_string(), metrics.buffered.get_or_create(&ProcessorLabel { processor: r.name().to_string() }).get())).collect();
        let buffered: i64 = per.iter().map(|(_, b)| b).sum();
        let mut lag = 0u64;
        for reg in storeflow_processors::registry() {
            let p = (reg.build)(&config(reg.name)).unwrap();
            let tps: Vec<TopicPartition> = p
                .inputs()
                .iter()
                .flat_map(|t| (0..log.describe_topics().unwrap().iter().find(|i| &i.name == t).unwrap().partitions.len() as u32).map(move |n| TopicPartition::new(t, n)))
                .collect();
            // A broker busy rewinding tasks may time out: count that as lag, and ask again.
            let (Ok(committed), Ok(marks)) = (log.committed_offsets(&format!("{app}.{}", reg.name), &tps), log.watermarks(&tps)) else {
                lag += 1;
                continue;
            };
            lag += committed.iter().zip(&marks).map(|(c, (s, e))| e.saturating_sub(c.unwrap_or(*s))).sum::<u64>();
        }
        assert!(Instant::now() < deadline, "{app}: the pipeline did not settle in 300 s: buffered {per:?}, lag {lag}");
        if buffered == 0 && lag == 0 {
            let since = *quiet_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(2) {
                return;
            }
        } else {
            quiet_since = None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn read(log: &dyn Log, topic: &str) -> Vec<Record> {
    let info = log.describe_topics().unwrap().into_iter().find(|t| t.name == topic).unwrap();
    let mut cfg = ConsumerConfig::new(&format!("backfill-read-{}", uuid::Uuid::new_v4()));
    cfg.reset = OffsetReset::Earliest;
    let mut c = log.consumer(cfg, None).unwrap();
    c.assign(&info.partitions.iter().map(|p| (TopicPartition::new(topic, p.partition), p.start)).collect::<Vec<_>>()).unwrap();
    let ends: BTreeMap<u32, u64> = info.partitions.iter().map(|p| (p.partition, p.end)).collect();
    let mut out = Vec::new();
    while ends.iter().any(|(p, e)| c.position(&TopicPartition::new(topic, *p)).unwrap_or(0) < *e) {
        out.extend(c.poll(50_000, Duration::from_millis(100)).unwrap());
    }
    c.close().unwrap();
    out
}

/// What the pipeline made of the traffic, in an order that does not depend on how records
/// of different writers interleaved on the log.
fn outcome(log: &dyn Log, codec: &Codec) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for topic in [Topic::Lifecycle, Topic::FraudScores, Topic::Reservations, Topic::StockLevels, Topic::VendorSales] {
        let mut lines: Vec<String> = read(log, topic.name())
            .iter()
            .map(|r| {
                let e = codec.decode(r.value.as_deref().unwrap()).unwrap();
                format!("{} {}", r.timestamp, serde_json::to_string(&e.to_json()).unwrap())
            })
            .collect();
        lines.sort();
        out.insert(topic.name().to_string(), lines);
    }
    out
}

/// Copies the producers' records of `live` into `backfill` topic by topic in reverse, then
/// runs the processors over it until they settle: what they made of it.
fn process_a_copy(live: &dyn Log, inputs: &[String], backfill: &Arc<dyn Log>, codec: &Arc<Codec>) -> BTreeMap<String, Vec<String>> {
    backfill.create_topics(&contract_topics(Some(4))).unwrap();
    let producer = backfill.producer().unwrap();
    let mut copied = BTreeMap::new();
    for topic in inputs.iter().rev() {
        let mut records = read(live, topic);
        // What the pipeline wrote there itself (the payments worker's outcomes, stamped with
        // their step) it writes again in the backfill: only the producers' records are copied.
        records.retain(|r| r.header("storeflow.order").is_none());
        records.sort_by_key(|r| (std::cmp::Reverse(r.partition), r.offset));
        let copies: Vec<ProduceRecord> = records
            .into_iter()
            .map(|r| ProduceRecord {
                topic: r.topic.to_string(),
                partition: Some(r.partition),
                key: r.key.map(|k| k.to_vec()),
                value: r.value.map(|v| v.to_vec()),
                headers: r.headers,
                timestamp: Some(r.timestamp),
            })
            .collect();
        copied.insert(topic.clone(), copies.len());
        for ack in producer.send_batch(copies).unwrap() {
            ack.wait().unwrap();
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let metrics = Arc::new(Metrics::register(&mut Registry::default()));
    let runtimes = start(backfill, codec, "backfill", &metrics);
    settle(&**backfill, "backfill", &metrics, &runtimes);
    for r in runtimes {
        r.stop().unwrap();
    }
    let dead: Vec<String> = backfill
        .describe_topics()
        .unwrap()
        .into_iter()
        .filter(|t| t.name.ends_with(".dlq"))
        .map(|t| (t.partitions.iter().map(|p| p.end - p.start).sum::<u64>(), t.name))
        .filter(|(n, _)| *n > 0)
        .map(|(n, t)| format!("{t}: {n}"))
        .collect();
    println!("backfill on {}: dead letters {dead:?}", backfill.backend());
    // Time retention counts from the records' timestamps, which are event time: a backfill
    // older than a topic's retention is deleted as it is written (Kafka deletes even the
    // active segment). The traffic is dated within retention; check that nothing went.
    for (topic, n) in &copied {
        let info = backfill.describe_topics().unwrap().into_iter().find(|t| &t.name == topic).unwrap();
        let deleted: u64 = info.partitions.iter().map(|p| p.start).sum();
        assert_eq!(deleted, 0, "{topic} on {}: retention deleted {deleted} records (of {n} copied)", backfill.backend());
    }
    outcome(&**backfill, codec)
}

fn assert_same(expected: &BTreeMap<String, Vec<String>>, got: &BTreeMap<String, Vec<String>>, on: &str) {
    for (topic, lines) in expected {
        let other = &got[topic];
        let first = lines.iter().zip(other).position(|(a, b)| a != b);
        assert!(
            lines == other,
            "{topic}: {} records live, {} in the backfill on {on}; first difference: {:?}",
            lines.len(),
            other.len(),
            first.map(|i| (&lines[i], &other[i]))
        );
    }
}

#[test]
fn a_backfill_with_inputs_skewed_in_event_time_gives_what_live_processing_gave_record_for_record_on_the_embedded_log_and_on_kafka() {
    let _ = tracing_subscriber::fmt().with_env_filter("warn").with_test_writer().try_init();
    let codec = Arc::new(Codec::embedded().unwrap());
    let dir = tempfile::tempdir().unwrap();
    // A broker of its own (the contract topics must hold nothing else) starts while the
    // live run goes on.
    let kafka = storeflow_ingest::contract::service_address("STOREFLOW_TEST_KAFKA", "Apache Kafka").map(|_| {
        let run = dir.path().join("kafka");
        std::thread::spawn(move || PrivateKafka::start(&run))
    });

    // Live.
    let live: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir.path().join("live")).unwrap());
    live.create_topics(&contract_topics(Some(4))).unwrap();
    let metrics = Arc::new(Metrics::register(&mut Registry::default()));
    let inputs: Vec<String> = Topic::ALL.iter().filter(|t| t.is_input()).map(|t| t.name().to_string()).collect();
    // A fifth of the payments are confirmed in the browser and reported a few seconds later,
    // as Stripe's webhooks would: some come after the short payment timeout.
    // A day ago, to the minute: within the logs' 7-day time retention (see process_a_copy).
    let began = (Timestamp::now().millis() - 24 * 3_600_000) / 60_000 * 60_000;
    let mut sim = Simulator::new(SimConfig { seed: 11, start: Timestamp(began), fraud_ring_share: 0.05, browser_confirmed_share: 0.2, ..SimConfig::default() });
    declare(&*live, "live", "sim", &inputs, began, 600_000).unwrap();
    let runtimes = start(&live, &codec, "live", &metrics);
    let producer = live.producer().unwrap();
    let mut sent = 0;
    while sent < 12_000 {
        let batch: Vec<ProduceRecord> = sim.by_ref().take(500).map(|e| record_for(&codec, &e).unwrap()).collect();
        sent += batch.len();
        for ack in producer.send_batch(batch).unwrap() {
            ack.wait().unwrap();
        }
        let next = sim.next_time().map_or(i64::MAX, |t| t.millis());
        declare(&*live, "live", "sim", &inputs, next, 600_000).unwrap();
        // Give the processors time to run alongside, as they would live.
        std::thread::sleep(Duration::from_millis(20));
    }
    withdraw(&*live, "live", "sim").unwrap();
    settle(&*live, "live", &metrics, &runtimes);
    for r in runtimes {
        r.stop().unwrap();
    }
    let expected = outcome(&*live, &codec);
    let timeouts = expected[Topic::Lifecycle.name()].iter().filter(|l| l.contains("no payment authorized in time")).count();
    let gate = expected[Topic::Lifecycle.name()].iter().filter(|l| l.contains("no fraud score within")).count();
    assert!(expected[Topic::Lifecycle.name()].len() > 500 && timeouts > 0, "the traffic must exercise the saga and its timers ({timeouts} payment timeouts, {gate} gate confirmations)");

    // Backfill: the same source records, topic by topic in reverse, then the processors.
    let backfill: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir.path().join("backfill")).unwrap());
    assert_same(&expected, &process_a_copy(&*live, &inputs, &backfill, &codec), "the embedded log");
    let mut on = "the embedded log";
    if let Some(kafka) = kafka.map(|k| k.join().unwrap()) {
        let backfill: Arc<dyn Log> = Arc::new(KafkaLog::connect(KafkaSettings::new(&kafka.brokers)).unwrap());
        assert_same(&expected, &process_a_copy(&*live, &inputs, &backfill, &codec), "Kafka");
        on = "the embedded log and on Kafka";
    }
    println!("{} lifecycle records, {timeouts} payment timeouts, {gate} fraud-gate confirmations: identical in the backfill on {on}", expected[Topic::Lifecycle.name()].len());
}
