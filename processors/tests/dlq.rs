//! `dlq list` shows dead letters readably; `dlq replay` puts them back once.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use storeflow_avro::Codec;
use storeflow_ingest::{EmbeddedLog, Log, ProduceRecord, TopicSpec};
use storeflow_processors::metrics::Metrics;
use storeflow_processors::testing::{Count, Note, Route};
use storeflow_processors::{Processor, Runtime, RuntimeConfig, dlq};

#[test]
fn a_dead_letter_is_listed_with_its_reason_and_replayed_to_its_topic_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir.path()).unwrap());
    log.create_topics(&[TopicSpec::new("in", 1), TopicSpec::new("out", 1)]).unwrap();
    let p = log.producer().unwrap();
    let poison = serde_json::to_vec(&Note { key: "k".into(), n: u64::MAX, time: 5, topic: String::new() }).unwrap();
    p.send(ProduceRecord::new("in", "k", poison.clone())).unwrap().wait().unwrap();
    let rt = Runtime::spawn(
        Box::new(Count::new(Route { input: "in".into(), output: "out".into() })),
        log.clone(),
        Arc::new(Codec::embedded().unwrap()),
        RuntimeConfig::default(),
        Arc::new(Metrics::unregistered()),
    )
    .unwrap();
    wait_for(&log, "in.dlq", 1, Duration::from_secs(30));
    rt.stop().unwrap();

    let letters = dlq::list(&*log, "in").unwrap();
    assert_eq!(letters.len(), 1);
    let l = &letters[0];
    assert_eq!((l.processor.as_str(), l.topic.as_str(), l.partition, l.offset), ("count", "in", 0, 0));
    assert!(l.reason.contains("poison"), "{}", l.reason);

    let first = dlq::replay(&*log, "in").unwrap();
    assert_eq!(first, dlq::Replayed { replayed: 1, skipped: 0 });
    let again = dlq::replay(&*log, "in.dlq").unwrap();
    assert_eq!(again.replayed, 0, "a dead letter was replayed twice");
    let back = read_all(&*log, "in");
    assert_eq!(back.len(), 2, "the record is back on its topic once");
    assert_eq!(back[1].value.as_deref(), Some(poison.as_slice()));
    assert!(back[1].header("storeflow.replayed_from").is_some());
    assert!(back[1].header("storeflow.dlq.reason").is_none(), "dead-letter headers are not carried back");
}

fn note(key: &str, n: u64, at: i64) -> ProduceRecord {
    let v = serde_json::to_vec(&Note { key: key.into(), n, time: at, topic: String::new() }).unwrap();
    ProduceRecord { timestamp: Some(at), ..ProduceRecord::new("in", key, v) }
}

fn count_runtime(log: &Arc<dyn Log>) -> Runtime {
    Runtime::spawn(
        Box::new(Count::new(Route { input: "in".into(), output: "out".into() })),
        log.clone(),
        Arc::new(Codec::embedded().unwrap()),
        RuntimeConfig::default(),
        Arc::new(Metrics::unregistered()),
    )
    .unwrap()
}

fn now_ms() -> i64 {
    storeflow_avro::Timestamp::now().millis()
}

#[test]
fn a_record_that_makes_the_processor_panic_is_dead_lettered_with_the_panic_and_the_task_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir.path()).unwrap());
    log.create_topics(&[TopicSpec::new("in", 1), TopicSpec::new("out", 1)]).unwrap();
    let p = log.producer().unwrap();
    let t = now_ms();
    for (i, n) in [1, u64::MAX - 1, 2, 3].into_iter().enumerate() {
        p.send(note("k", n, t + i as i64)).unwrap().wait().unwrap();
    }
    let rt = count_runtime(&log);
    wait_for(&log, "out", 3, Duration::from_secs(30));
    wait_for(&log, "in.dlq", 1, Duration::from_secs(30));
    rt.stop().unwrap();
    let letters = dlq::list(&*log, "in").unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].offset, 1);
    assert!(letters[0].reason.starts_with("panic: planted panic for k"), "{}", letters[0].reason);
    let counts: Vec<u64> = read_all(&*log, "out").iter().map(|r| serde_json::from_slice::<Note>(r.value.as_deref().unwrap()).unwrap().n).collect();
    assert_eq!(counts, vec![1, 2, 3], "the panicking record's state write was dropped and the next records counted on");
}

#[test]
fn a_record_dated_past_the_wall_clock_and_max_skew_is_dead_lettered_and_moves_no_stream_time() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir.path()).unwrap());
    log.create_topics(&[TopicSpec::new("in", 1), TopicSpec::new("out", 1)]).unwrap();
    let p = log.producer().unwrap();
    let t = now_ms();
    let year_2100 = 4_102_444_800_000;
    p.send(note("k", 1, t)).unwrap().wait().unwrap();
    p.send(note("k", 2, year_2100)).unwrap().wait().unwrap();
    p.send(note("k", 3, i64::MAX)).unwrap().wait().unwrap();
    p.send(note("k", 4, t + 1)).unwrap().wait().unwrap();
    let rt = count_runtime(&log);
    wait_for(&log, "out", 2, Duration::from_secs(30));
    wait_for(&log, "in.dlq", 2, Duration::from_secs(30));
    rt.stop().unwrap();
    let letters = dlq::list(&*log, "in").unwrap();
    assert_eq!(letters.iter().map(|l| l.offset).collect::<Vec<_>>(), vec![1, 2]);
    for l in &letters {
        assert!(l.reason.contains("ahead of the wall clock"), "{}", l.reason);
    }
    let out = read_all(&*log, "out");
    let stamps: Vec<i64> = out.iter().map(|r| r.timestamp).collect();
    assert_eq!(stamps, vec![t, t + 1], "the refused records did not move stream time: the next output is stamped at its own time");
}
