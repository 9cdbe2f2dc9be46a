//! The exactly-once crash test: a counting processor feeding a second processor, 200,000
//! input records, the whole process SIGKILLed at 10 random moments and restarted each
//! time. Afterwards every output appears exactly once (read_committed) and every state
//! value equals what a reference model (a plain count per key) computes — on the embedded
//! log and on Apache Kafka.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use storeflow_ingest::contract::service_address;
use storeflow_ingest::{EmbeddedLog, KafkaLog, KafkaSettings, Log, TopicSpec};
use storeflow_processors::runtime::changelog_of;

const INPUTS: u64 = 200_000;

fn child(backend: &[&str], prefix: &str, state: &std::path::Path, final_run: bool) -> std::process::Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_storeflow-pipeline-stress"));
    c.args(backend).args(["--prefix", prefix, "--state"]).arg(state).stdout(Stdio::null()).stderr(Stdio::inherit());
    if final_run {
        c.arg("--exit-when-idle");
    }
    c.spawn().expect("start the pipeline")
}

/// A pipeline process that is killed when the test ends, failed or not, so no orphan
/// outlives the test (and the services it talks to).
struct Pipeline(std::process::Child);

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

fn kill_and_restart(backend: &[&str], prefix: &str, state: &std::path::Path) {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..10 {
        let mut c = child(backend, prefix, state, false);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        std::thread::sleep(Duration::from_millis(400 + x % 1600));
        c.kill().expect("SIGKILL");
        c.wait().expect("reap");
    }
    if let ["--kafka", brokers] = backend {
        // The last run goes on until every input has come out at the end of the pipeline; the
        // verification then checks there is no more and nothing twice.
        let mut c = Pipeline(child(backend, prefix, state, false));
        let log: Arc<dyn Log> = Arc::new(KafkaLog::connect(KafkaSettings::new(brokers)).expect("kafka"));
        wait_for_while(&log, &format!("{prefix}.out"), INPUTS, Duration::from_secs(600), &mut || match c.try_wait() {
            Ok(Some(status)) => Err(format!("the pipeline exited ({status}); its log is above")),
            _ => Ok(()),
        });
        std::thread::sleep(Duration::from_secs(2));
        c.kill().expect("stop the last run");
        c.wait().expect("reap");
        return;
    }
    // The embedded log has one owner: the last run stops by itself when idle, then the test
    // opens the log to check.
    let mut c = Pipeline(child(backend, prefix, state, true));
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Some(status) = c.try_wait().expect("wait") {
            assert!(status.success(), "the final run failed: {status}");
            break;
        }
        assert!(Instant::now() < deadline, "the final run did not finish in 10 minutes");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn verify(log: &dyn Log, prefix: &str, counts: &std::collections::BTreeMap<String, u64>) {
    assert_exactly_once(log, &format!("{prefix}.mid"), counts);
    assert_exactly_once(log, &format!("{prefix}.out"), counts);
    assert_eq!(&state_from_changelog(log, &changelog_of(prefix, "count"), "counts"), counts, "count's state");
    assert_eq!(&state_from_changelog(log, &changelog_of(prefix, "relay"), "last"), counts, "relay's state");
}

#[test]
fn a_pipeline_killed_ten_times_on_the_embedded_log_is_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let logdir = dir.path().join("log");
    let counts = {
        let log = EmbeddedLog::open(&logdir).unwrap();
        produce_notes(&log, "crash.in", 4, INPUTS, 1000)
    };
    let l = logdir.display().to_string();
    kill_and_restart(&["--embedded", &l], "crash", &dir.path().join("state"));
    let log = EmbeddedLog::open(&logdir).unwrap();
    verify(&log, "crash", &counts);
}

#[test]
fn a_pipeline_killed_ten_times_on_kafka_is_exactly_once() {
    let Some(brokers) = service_address("STOREFLOW_TEST_KAFKA", "Apache Kafka") else { return };
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn Log> = Arc::new(KafkaLog::connect(KafkaSettings::new(&brokers)).unwrap());
    let prefix = format!("crash{}", uuid::Uuid::new_v4().simple());
    let counts = produce_notes(&*log, &format!("{prefix}.in"), 4, INPUTS, 1000);
    log.create_topics(&[TopicSpec::new(&format!("{prefix}.mid"), 4), TopicSpec::new(&format!("{prefix}.out"), 4)]).unwrap();
    kill_and_restart(&["--kafka", &brokers], &prefix, &dir.path().join("state"));
    verify(&*log, &prefix, &counts);
}

#[test]
fn when_one_of_two_kafka_instances_is_killed_the_survivor_restores_its_state_and_stays_exactly_once() {
    let Some(brokers) = service_address("STOREFLOW_TEST_KAFKA", "Apache Kafka") else { return };
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn Log> = Arc::new(KafkaLog::connect(KafkaSettings::new(&brokers)).unwrap());
    let prefix = format!("rebal{}", uuid::Uuid::new_v4().simple());
    let counts = produce_notes(&*log, &format!("{prefix}.in"), 4, INPUTS, 1000);
    log.create_topics(&[TopicSpec::new(&format!("{prefix}.mid"), 4), TopicSpec::new(&format!("{prefix}.out"), 4)]).unwrap();
    let start = |name: &str| {
        Pipeline(Command::new(env!("CARGO_BIN_EXE_storeflow-pipeline-stress"))
            .args(["--kafka", &brokers, "--prefix", &prefix, "--instance", name, "--state"])
            .arg(dir.path().join(name))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start an instance"))
    };
    let mut a = start("a");
    let mut b = start("b");
    // Let both work for a while, then kill b mid-stream.
    wait_for(&log, &format!("{prefix}.out"), INPUTS / 5, Duration::from_secs(300));
    b.kill().expect("SIGKILL b");
    b.wait().expect("reap b");
    // a gets b's partitions once b's session times out (6 s), restores their state from the
    // changelog, and finishes the stream.
    wait_for_while(&log, &format!("{prefix}.out"), INPUTS, Duration::from_secs(600), &mut || match a.try_wait() {
        Ok(Some(status)) => Err(format!("instance a exited ({status}); its log is above")),
        _ => Ok(()),
    });
    a.kill().expect("stop a");
    a.wait().expect("reap a");
    verify(&*log, &prefix, &counts);
}
