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
