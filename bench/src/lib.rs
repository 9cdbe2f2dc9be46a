//! Benchmarks live in `benches/`; see docs/PERFORMANCE.md.
//!
//! What more than one of them shares, so that their figures describe the same work: the
//! processor runtime's input (`produce`: JSON [`Note`]s over 4 partitions and 10,000 keys,
//! written to a log) and how a run is timed (`run_to_end`: from starting the runtime to its
//! group having committed every input offset).

use std::sync::Arc;
use std::time::{Duration, Instant};

use storeflow_avro::Codec;
use storeflow_ingest::{Log, ProduceRecord, TopicPartition, TopicSpec};
use storeflow_processors::metrics::Metrics;
use storeflow_processors::runtime::group_of;
use storeflow_processors::testing::Note;
use storeflow_processors::{DynProcessor, Runtime, RuntimeConfig, StateBackend};

/// Records per run.
pub const RECORDS: u64 = 200_000;
/// Distinct keys among them.
pub const KEYS: u64 = 10_000;
/// Partitions of every input and output topic.
pub const PARTITIONS: u32 = 4;

/// Creates `topic` and writes [`RECORDS`] JSON notes to it: key `k<i·7919 mod KEYS>`,
/// `n = i`, event time (= record timestamp) now + i ms. About 70 bytes each.
pub fn produce(log: &dyn Log, topic: &str) {
    log.create_topics(&[TopicSpec::new(topic, PARTITIONS)]).expect("topic");
    let p = log.producer().expect("producer");
    // Current timestamps: Kafka's time retention (7 days by default) deletes old ones.
    let base = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let mut batch = Vec::with_capacity(5000);
    let mut acks = Vec::new();
    for i in 0..RECORDS {
        let key = format!("k{}", (i * 7919) % KEYS);
        let note = Note { key: key.clone(), n: i, time: base + i as i64, topic: String::new() };
        batch.push(ProduceRecord::new(topic, key, serde_json::to_vec(&note).expect("json")).at(note.time));
        if batch.len() == 5000 {
            acks.extend(p.send_batch(std::mem::take(&mut batch)).expect("send"));
        }
    }
    acks.extend(p.send_batch(batch).expect("send"));
    for a in acks {
        a.wait().expect("ack");
    }
}

/// Whether `group` has committed every partition of `topic` up to its end.
pub fn caught_up(log: &dyn Log, group: &str, topic: &str) -> bool {
    let tps: Vec<TopicPartition> = (0..PARTITIONS).map(|p| TopicPartition::new(topic, p)).collect();
    let committed = log.committed_offsets(group, &tps).expect("committed");
    let marks = log.watermarks(&tps).expect("watermarks");
    committed.iter().zip(marks).all(|(c, (_, end))| c.unwrap_or(0) >= end)
}

/// Runs `processor` (reading `input`, writing `output`, which this creates) in the runtime
/// as application `app` with exactly-once and the given state and commit interval, until
/// its group has committed all of `input` (polled every 20 ms). Returns records/s.
pub fn run_to_end(
    log: Arc<dyn Log>,
    processor: Box<dyn DynProcessor>,
    app: &str,
    input: &str,
    output: &str,
    state: StateBackend,
    commit: Duration,
) -> f64 {
    log.create_topics(&[TopicSpec::new(output, PARTITIONS)]).expect("topic");
    let group = group_of(app, processor.name());
    let cfg = RuntimeConfig { app: app.into(), state, commit_interval: commit, commit_records: 100_000, ..RuntimeConfig::default() };
    let started = Instant::now();
    let rt = Runtime::spawn(processor, log.clone(), Arc::new(Codec::embedded().expect("codec")), cfg, Arc::new(Metrics::unregistered()))
        .expect("spawn");
    while !caught_up(&*log, &group, input) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = started.elapsed().as_secs_f64();
    rt.stop().expect("stop");
    RECORDS as f64 / secs
}
