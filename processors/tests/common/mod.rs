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

/// A `storeflow-pipeline-stress` process that is killed when the test ends, failed or not, so
/// no orphan outlives the test (and the services it talks to).
pub struct Pipeline(pub std::process::Child);

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Pipeline {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Pipeline {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Pipeline {
    /// One instance of the two-stage pipeline on Kafka, named `name` in its groups, its state
    /// under `dir/<name>`, its stderr in `dir/<name>.log` and its stdout piped (a clean stop
    /// prints how many records it processed).
    pub fn on_kafka(brokers: &str, prefix: &str, dir: &std::path::Path, name: &str) -> Pipeline {
        let stderr = std::fs::File::create(dir.join(format!("{name}.log"))).expect("instance log");
        Pipeline(
            std::process::Command::new(env!("CARGO_BIN_EXE_storeflow-pipeline-stress"))
                .args(["--kafka", brokers, "--prefix", prefix, "--instance", name, "--state"])
                .arg(dir.join(name))
                .stdout(std::process::Stdio::piped())
                .stderr(stderr)
                .spawn()
                .expect("start an instance"),
        )
    }

    /// Fails the calling wait at once, with the instance's log, if it has exited.
    pub fn alive(&mut self, dir: &std::path::Path, name: &str) -> Result<(), String> {
        match self.0.try_wait() {
            Ok(Some(status)) => {
                let log = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
                Err(format!("instance {name} exited ({status}); its log:\n{log}"))
            }
            _ => Ok(()),
        }
    }

    /// SIGTERM, then the exit status within `patience`, and what it printed.
    pub fn terminate(mut self, patience: Duration) -> (std::process::ExitStatus, String) {
        let _ = std::process::Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let deadline = Instant::now() + patience;
        let status = loop {
            if let Some(s) = self.0.try_wait().expect("wait") {
                break s;
            }
            assert!(Instant::now() < deadline, "the instance did not stop within {patience:?} of SIGTERM");
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut out = String::new();
        if let Some(mut o) = self.0.stdout.take() {
            use std::io::Read;
            let _ = o.read_to_string(&mut out);
        }
        (status, out)
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to the process.
    pub fn signal(&self, signal: &str) {
        let ok = std::process::Command::new("kill").arg(format!("-{signal}")).arg(self.0.id().to_string()).status().expect("kill");
        assert!(ok.success(), "kill -{signal} failed");
    }
}

/// Each partition's end offset of `topic` (what has been written to it, committed or not).
pub fn ends(log: &dyn Log, topic: &str) -> BTreeMap<u32, u64> {
    let info = log.describe_topics().unwrap().into_iter().find(|t| t.name == topic).unwrap_or_else(|| panic!("{topic} missing"));
    info.partitions.iter().map(|p| (p.partition, p.end)).collect()
}

/// A line of the fault suite's counts, printed after the tests by `scripts/test`.
pub fn report(line: &str) {
    storeflow_processors::testing::report_fault(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")), line);
}
