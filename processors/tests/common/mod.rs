//! Helpers shared by the runtime's integration tests.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use storeflow_ingest::{ConsumerConfig, Log, ProduceRecord, Record, TopicPartition, TopicSpec};
use storeflow_processors::state::{decode_value, split_key};
use storeflow_processors::testing::Note;

/// Writes `n` notes over `keys` keys to `topic` (created with `partitions`); returns the
/// count per key.
pub fn produce_notes(log: &dyn Log, topic: &str, partitions: u32, n: u64, keys: u64) -> BTreeMap<String, u64> {
    log.create_topics(&[TopicSpec::new(topic, partitions)]).expect("topic");
    let p = log.producer().expect("producer");
    let mut counts = BTreeMap::new();
    // Current timestamps: Kafka's time retention (7 days by default) deletes old ones.
    let base = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let mut batch = Vec::new();
    for i in 0..n {
        let key = format!("k{}", (i * 7919) % keys);
        *counts.entry(key.clone()).or_insert(0) += 1;
        let note = Note { key: key.clone(), n: i, time: base + i as i64, topic: String::new() };
        batch.push(ProduceRecord::new(topic, key, serde_json::to_vec(&note).unwrap()).at(note.time));
        if batch.len() == 5000 {
            for f in p.send_batch(std::mem::take(&mut batch)).expect("send") {
                f.wait().expect("ack");
            }
        }
    }
    for f in p.send_batch(batch).expect("send") {
        f.wait().expect("ack");
    }
    p.flush(Duration::from_secs(30)).expect("flush");
    counts
}

/// Every committed record of `topic`.
pub fn read_all(log: &dyn Log, topic: &str) -> Vec<Record> {
    let info = log.describe_topics().unwrap().into_iter().find(|t| t.name == topic).unwrap_or_else(|| panic!("{topic} missing"));
    let mut c = log.consumer(ConsumerConfig::new(&format!("verify-{}", uuid::Uuid::new_v4())), None).unwrap();
    c.assign(&info.partitions.iter().map(|p| (TopicPartition::new(topic, p.partition), p.start)).collect::<Vec<_>>()).unwrap();
    let mut out = Vec::new();
    let mut idle = Instant::now();
    while idle.elapsed() < Duration::from_secs(3) {
        let got = c.poll(50_000, Duration::from_millis(200)).unwrap();
        if !got.is_empty() {
            idle = Instant::now();
        }
        out.extend(got);
    }
    c.close().unwrap();
    out
}

/// Asserts that `topic` holds, per key, exactly the counts 1..=n once each.
pub fn assert_exactly_once(log: &dyn Log, topic: &str, expected: &BTreeMap<String, u64>) {
    let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
    for r in read_all(log, topic) {
        let note: Note = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
        seen.entry(note.key).or_default().push(note.n);
    }
    for (key, n) in expected {
        let mut got = seen.remove(key).unwrap_or_default();
        got.sort();
        let want: Vec<u64> = (1..=*n).collect();
        if got != want {
            let dups = got.windows(2).filter(|w| w[0] == w[1]).count();
            panic!("{topic}, key {key}: {} outputs for {n} inputs ({dups} duplicates)", got.len());
        }
    }
    assert!(seen.is_empty(), "{topic} has outputs for unknown keys: {:?}", seen.keys().take(5).collect::<Vec<_>>());
}

/// The state a changelog describes: last value per (store, key).
pub fn state_from_changelog(log: &dyn Log, changelog: &str, store: &str) -> BTreeMap<String, u64> {
    let mut state = BTreeMap::new();
    for r in read_all(log, changelog) {
        let Some(k) = r.key.as_deref() else { continue };
        let (s, key) = split_key(k);
        if s != store {
            continue;
        }
        match r.value.as_deref() {
            Some(v) => state.insert(key.to_string(), decode_value::<u64>(v).unwrap()),
            None => state.remove(key),
        };
    }
    state
}

/// Waits until `n` committed records of `topic` can be read. (Counted by reading: on Kafka
/// offsets also number transaction markers and aborted records.)
pub fn wait_for(log: &Arc<dyn Log>, topic: &str, n: u64, patience: Duration) {
    wait_for_while(log, topic, n, patience, &mut || Ok(()))
}

/// [`wait_for`], failing at once when `alive` reports that the process producing the
/// records has gone (its error says how).
pub fn wait_for_while(log: &Arc<dyn Log>, topic: &str, n: u64, patience: Duration, alive: &mut dyn FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + patience;
    let info = loop {
        if let Some(i) = log.describe_topics().unwrap().into_iter().find(|t| t.name == topic) {
            break i;
        }
        assert!(Instant::now() < deadline, "{topic} does not exist after {patience:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut c = log.consumer(ConsumerConfig::new(&format!("wait-{}", uuid::Uuid::new_v4())), None).unwrap();
    c.assign(&info.partitions.iter().map(|p| (TopicPartition::new(topic, p.partition), p.start)).collect::<Vec<_>>()).unwrap();
    let mut have = 0u64;
    while have < n {
        assert!(Instant::now() < deadline, "{topic} has {have} of {n} records after {patience:?}");
        if let Err(why) = alive() {
            panic!("{topic} has {have} of {n} records and {why}");
        }
        have += c.poll(50_000, Duration::from_millis(200)).unwrap().len() as u64;
    }
    c.close().unwrap();
}
