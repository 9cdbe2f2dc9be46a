//! The processor runtime on the embedded log: a two-stage pipeline runs exactly once, a
//! poison record goes to the DLQ, and a crashed instance's partitions move to the survivor
//! with their state restored from the changelog.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use storeflow_avro::Codec;
use storeflow_ingest::{EmbeddedLog, Log, ProduceRecord};
use storeflow_processors::metrics::Metrics;
use storeflow_processors::runtime::changelog_of;
use storeflow_processors::testing::{Count, Note, Relay, Route};
use storeflow_processors::{Processor, Runtime, RuntimeConfig, StateBackend};

fn setup() -> (tempfile::TempDir, Arc<dyn Log>, Arc<Codec>) {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir.path().join("log")).unwrap());
    (dir, log, Arc::new(Codec::embedded().unwrap()))
}

fn route(i: &str, o: &str) -> Route {
    Route { input: i.into(), output: o.into() }
}

#[test]
fn a_two_stage_pipeline_produces_every_output_exactly_once_with_matching_state() {
    let (dir, log, codec) = setup();
    let counts = produce_notes(&*log, "in", 4, 20_000, 97);
    log.create_topics(&[storeflow_ingest::TopicSpec::new("mid", 4), storeflow_ingest::TopicSpec::new("out", 4)]).unwrap();
    let metrics = Arc::new(Metrics::unregistered());
    let cfg = RuntimeConfig { state: StateBackend::Redb(dir.path().join("state")), ..Default::default() };
    let a = Runtime::spawn(Box::new(Count::new(route("in", "mid"))), log.clone(), codec.clone(), cfg.clone(), metrics.clone()).unwrap();
    let b = Runtime::spawn(Box::new(Relay::new(route("mid", "out"))), log.clone(), codec.clone(), cfg, metrics.clone()).unwrap();
    wait_for(&log, "out", 20_000, Duration::from_secs(120));
    a.stop().unwrap();
    b.stop().unwrap();
    assert_exactly_once(&*log, "mid", &counts);
    assert_exactly_once(&*log, "out", &counts);
    assert_eq!(state_from_changelog(&*log, &changelog_of("storeflow", "count"), "counts"), counts);
    assert_eq!(state_from_changelog(&*log, &changelog_of("storeflow", "relay"), "last"), counts);
}

#[test]
fn a_poison_record_goes_to_the_dlq_with_its_reason_and_the_stream_moves_on() {
    let (_dir, log, codec) = setup();
    log.create_topics(&[storeflow_ingest::TopicSpec::new("in", 2), storeflow_ingest::TopicSpec::new("out", 2)]).unwrap();
    let p = log.producer().unwrap();
    let note = |n: u64| serde_json::to_vec(&Note { key: "k".into(), n, time: 1, topic: String::new() }).unwrap();
    for v in [note(1), note(u64::MAX), b"not json".to_vec(), note(2)] {
        p.send(ProduceRecord::new("in", "k", v)).unwrap().wait().unwrap();
    }
    let rt = Runtime::spawn(Box::new(Count::new(route("in", "out"))), log.clone(), codec, RuntimeConfig::default(), Arc::new(Metrics::unregistered())).unwrap();
    wait_for(&log, "out", 2, Duration::from_secs(30));
    wait_for(&log, "in.dlq", 2, Duration::from_secs(30));
    rt.stop().unwrap();
    let dlq = read_all(&*log, "in.dlq");
    let reason = |r: &storeflow_ingest::Record| String::from_utf8_lossy(r.header("storeflow.dlq.reason").unwrap()).into_owned();
    assert_eq!(dlq.len(), 2);
    assert!(reason(&dlq[0]).contains("poison"), "{}", reason(&dlq[0]));
    assert!(reason(&dlq[1]).contains("cannot decode"), "{}", reason(&dlq[1]));
    assert_eq!(dlq[0].header("storeflow.dlq.processor"), Some(&b"count"[..]));
    assert_eq!(dlq[0].header("storeflow.dlq.topic"), Some(&b"in"[..]));
    assert_eq!(dlq[0].header("storeflow.dlq.offset"), Some(&b"1"[..]));
    let outs: Vec<u64> = read_all(&*log, "out").iter().map(|r| serde_json::from_slice::<Note>(r.value.as_deref().unwrap()).unwrap().n).collect();
    assert_eq!(outs, vec![1, 2], "the records after the poison were processed, and the poison changed nothing");
}

#[test]
fn when_one_instance_crashes_the_survivor_restores_its_partitions_from_the_changelog() {
    let (_dir, log, codec) = setup();
    let counts = produce_notes(&*log, "in", 4, 30_000, 50);
    log.create_topics(&[storeflow_ingest::TopicSpec::new("out", 4)]).unwrap();
    let metrics = Arc::new(Metrics::unregistered());
    // Small commits so there is committed progress to hand over mid-stream.
    let cfg = RuntimeConfig { commit_records: 500, ..Default::default() };
    let a = Runtime::spawn(Box::new(Count::new(route("in", "out"))), log.clone(), codec.clone(), cfg.clone(), metrics.clone()).unwrap();
    let b = Runtime::spawn(Box::new(Count::new(route("in", "out"))), log.clone(), codec.clone(), cfg, metrics.clone()).unwrap();
    wait_for(&log, "out", 8_000, Duration::from_secs(60));
    b.crash().unwrap();
    wait_for(&log, "out", 30_000, Duration::from_secs(120));
    a.stop().unwrap();
    assert_exactly_once(&*log, "out", &counts);
    assert_eq!(state_from_changelog(&*log, &changelog_of("storeflow", "count"), "counts"), counts);
    let label = storeflow_processors::metrics::ProcessorLabel { processor: "count".into() };
    assert!(metrics.restored.get_or_create(&label).get() > 0, "the survivor restored nothing from the changelog");
}
