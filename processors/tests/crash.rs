//! The exactly-once crash test: a counting processor feeding a second processor, 200,000
//! input records, the whole process SIGKILLed at 10 random moments and restarted each
//! time. Afterwards every output appears exactly once (read_committed) and every state
//! value equals what a reference model (a plain count per key) computes — on the embedded
//! log and on Apache Kafka. On Kafka also: one of two instances killed, one stopped
//! (SIGSTOP) past its session timeout and woken as a zombie, and scaling 1 → 2 → 1.

mod common;

use std::collections::BTreeMap;
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
    let (log, prefix, counts) = on_kafka(&brokers, "crash");
    kill_and_restart(&["--kafka", &brokers], &prefix, &dir.path().join("state"));
    verify(&*log, &prefix, &counts);
}

/// A fresh prefix on Kafka with `INPUTS` notes produced to its input and its two other topics
/// created; returns the log, the prefix and the counts per key.
fn on_kafka(brokers: &str, name: &str) -> (Arc<dyn Log>, String, std::collections::BTreeMap<String, u64>) {
    let log: Arc<dyn Log> = Arc::new(KafkaLog::connect(KafkaSettings::new(brokers)).unwrap());
    let prefix = format!("{name}{}", uuid::Uuid::new_v4().simple());
    let counts = produce_notes(&*log, &format!("{prefix}.in"), 4, INPUTS, 1000);
    log.create_topics(&[TopicSpec::new(&format!("{prefix}.mid"), 4), TopicSpec::new(&format!("{prefix}.out"), 4)]).unwrap();
    (log, prefix, counts)
}

#[test]
fn when_one_of_two_kafka_instances_is_killed_the_survivor_restores_its_state_and_stays_exactly_once() {
    let Some(brokers) = service_address("STOREFLOW_TEST_KAFKA", "Apache Kafka") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (log, prefix, counts) = on_kafka(&brokers, "rebal");
    let mut a = Pipeline::on_kafka(&brokers, &prefix, dir.path(), "a");
    let mut b = Pipeline::on_kafka(&brokers, &prefix, dir.path(), "b");
    // Let both work for a while, then kill b mid-stream.
    wait_for_while(&log, &format!("{prefix}.out"), INPUTS / 5, Duration::from_secs(300), &mut || b.alive(dir.path(), "b"));
    b.kill().expect("SIGKILL b");
    b.wait().expect("reap b");
    // a gets b's partitions once b's session times out (6 s), restores their state from the
    // changelog, and finishes the stream.
    wait_for_while(&log, &format!("{prefix}.out"), INPUTS, Duration::from_secs(600), &mut || a.alive(dir.path(), "a"));
    a.kill().expect("stop a");
    a.wait().expect("reap a");
    verify(&*log, &prefix, &counts);
}

/// How long the zombie test keeps an instance stopped at least: past its 6 s session
/// timeout, the rebalance and the survivor's restore of the partitions it takes over.
const STOPPED_FOR: Duration = Duration::from_secs(20);

#[test]
fn an_instance_stopped_past_its_session_timeout_is_fenced_when_it_wakes_and_every_output_stays_exactly_once() {
    let Some(brokers) = service_address("STOREFLOW_TEST_KAFKA", "Apache Kafka") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (log, prefix, counts) = on_kafka(&brokers, "zombie");
    let out = format!("{prefix}.out");
    let mut a = Pipeline::on_kafka(&brokers, &prefix, dir.path(), "a");
    let mut b = Pipeline::on_kafka(&brokers, &prefix, dir.path(), "b");
    wait_for_while(&log, &out, INPUTS / 5, Duration::from_secs(300), &mut || a.alive(dir.path(), "a").and(b.alive(dir.path(), "b")));
    // SIGSTOP b mid-stream: it holds half the partitions, with a transaction open on each
    // (it commits every 2,000 records), and cannot tell that time passes.
    b.signal("STOP");
    let at_stop = ends(&*log, &out);
    let stopped = Instant::now();
    // b cannot write while stopped, so every partition that grows was written by a: it took
    // b's partitions over (and fenced b's transactional ids on the way). At least
    // STOPPED_FOR, and until every partition has grown (the rebalance and the restore take
    // longer on a loaded machine), up to two minutes.
    let grown = |after: &BTreeMap<u32, u64>| after.iter().all(|(p, end)| end - at_stop[p] > 1_000);
    let after = loop {
        std::thread::sleep(Duration::from_millis(500));
        let after = ends(&*log, &out);
        if (stopped.elapsed() >= STOPPED_FOR && grown(&after)) || stopped.elapsed() > Duration::from_secs(120) {
            break after;
        }
    };
    for (p, end) in &after {
        assert!(end - at_stop[p] > 1_000, "partition {p} of {out} grew by {} records in {:?} while b was stopped: a did not take it over", end - at_stop[p], stopped.elapsed());
    }
    let stopped_for = stopped.elapsed();
    // b wakes up believing it still owns its partitions, with transactions to commit.
    b.signal("CONT");
    wait_for_while(&log, &out, INPUTS, Duration::from_secs(600), &mut || a.alive(dir.path(), "a").and(b.alive(dir.path(), "b")));
    let (sa, _) = a.terminate(Duration::from_secs(30));
    let (sb, _) = b.terminate(Duration::from_secs(30));
    assert!(sa.success() && sb.success(), "a clean stop failed: a {sa}, b {sb}");
    verify(&*log, &prefix, &counts);
    let zombie = std::fs::read_to_string(dir.path().join("b.log")).unwrap_or_default();
    let refused: Vec<&str> = zombie.lines().filter(|l| l.contains("commit failed")).collect();
    let why = refused.first().and_then(|l| l.split("error=").nth(1)).unwrap_or("-");
    report(&format!(
        "zombie (Kafka): one of two instances SIGSTOPped {:.0} s mid-stream, past its session timeout, then SIGCONTed: {} of its commits refused (first: {why}), every output exactly once",
        stopped_for.as_secs_f64(),
        refused.len()
    ));
}

#[test]
fn scaling_from_one_instance_to_two_and_back_mid_stream_keeps_every_output_exactly_once() {
    let Some(brokers) = service_address("STOREFLOW_TEST_KAFKA", "Apache Kafka") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (log, prefix, counts) = on_kafka(&brokers, "scale");
    let out = format!("{prefix}.out");
    let mut a = Pipeline::on_kafka(&brokers, &prefix, dir.path(), "a");
    wait_for_while(&log, &out, INPUTS / 5, Duration::from_secs(300), &mut || a.alive(dir.path(), "a"));
    // Scale up: b joins both groups, takes half the partitions and restores their state.
    let mut b = Pipeline::on_kafka(&brokers, &prefix, dir.path(), "b");
    wait_for_while(&log, &out, INPUTS / 2, Duration::from_secs(300), &mut || a.alive(dir.path(), "a").and(b.alive(dir.path(), "b")));
    // Scale down with SIGTERM, as an orchestrator does: b commits, leaves, and a takes its
    // partitions back without waiting for a session timeout.
    let (status, said) = b.terminate(Duration::from_secs(30));
    assert!(status.success(), "b did not stop cleanly on SIGTERM ({status}): {said}");
    let b_processed: u64 = said.trim().strip_prefix("processed ").and_then(|s| s.strip_suffix(" records")).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(b_processed > 0, "b processed nothing while it was in the groups (it printed {said:?})");
    wait_for_while(&log, &out, INPUTS, Duration::from_secs(600), &mut || a.alive(dir.path(), "a"));
    let (status, said) = a.terminate(Duration::from_secs(30));
    assert!(status.success(), "a did not stop cleanly on SIGTERM ({status}): {said}");
    verify(&*log, &prefix, &counts);
    report(&format!("scale 1 → 2 → 1 (Kafka): the second instance joined at 20 % and left on SIGTERM at 50 %, having processed {b_processed} records; every output exactly once"));
}
