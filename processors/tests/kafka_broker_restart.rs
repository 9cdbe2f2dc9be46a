//! The Kafka broker stopped and started again, twice (at once, and after 15 s down), while the
//! two-stage exactly-once pipeline runs on it: the instance rides out each outage (its transactions abort, it re-creates its producers
//! and rewinds), and afterwards every output appears exactly once and the state equals the
//! reference count. Alone in its test binary because it restarts the shared test broker
//! (`scripts/services stop|start kafka`); cargo runs test binaries one at a time.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use storeflow_ingest::contract::service_address;
use storeflow_ingest::{KafkaLog, KafkaSettings, Log, TopicSpec};
use storeflow_processors::runtime::changelog_of;

const INPUTS: u64 = 100_000;

/// How long the second outage keeps the broker down.
const OUTAGE: Duration = Duration::from_secs(15);

/// `scripts/services <command> kafka`: stops the broker by its PID (TERM, then KILL after a
/// grace period) or starts it again on its data, waiting until it answers.
fn services(command: &str) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/services");
    let out = std::process::Command::new("bash").arg(&script).args([command, "kafka"]).output().expect("run scripts/services");
    assert!(out.status.success(), "scripts/services {command} kafka failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_broker_restarted_during_exactly_once_processing_leaves_every_output_exactly_once() {
    let Some(brokers) = service_address("STOREFLOW_TEST_KAFKA", "Apache Kafka") else { return };
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn Log> = Arc::new(KafkaLog::connect(KafkaSettings::new(&brokers)).unwrap());
    let prefix = format!("brokerrestart{}", uuid::Uuid::new_v4().simple());
    let counts = produce_notes(&*log, &format!("{prefix}.in"), 4, INPUTS, 1000);
    log.create_topics(&[TopicSpec::new(&format!("{prefix}.mid"), 4), TopicSpec::new(&format!("{prefix}.out"), 4)]).unwrap();
    let out = format!("{prefix}.out");
    let mut a = Pipeline::on_kafka(&brokers, &prefix, dir.path(), "a");
    let mut outages = Vec::new();
    // Twice: a restart at 20 % of the stream, then a 15 s outage at 50 % (past the consumers'
    // 6 s session timeout and well past the producer's retry backoff).
    for (share, down) in [(5, Duration::ZERO), (2, OUTAGE)] {
        wait_for_while(&log, &out, INPUTS / share, Duration::from_secs(300), &mut || a.alive(dir.path(), "a"));
        // What has been written to the output so far (committed or not, and the transaction
        // markers): below the input count, the stream is still running when the broker stops.
        let written = ends(&*log, &out).values().sum::<u64>();
        assert!(written < INPUTS, "the stream had ended before the broker stopped: nothing was in flight");
        let started = Instant::now();
        services("stop");
        std::thread::sleep(down);
        services("start");
        outages.push(format!("{:.1} s down with {written} outputs written", started.elapsed().as_secs_f64()));
        a.alive(dir.path(), "a").unwrap_or_else(|why| panic!("the pipeline did not survive the broker's outage: {why}"));
    }
    wait_for_while(&log, &out, INPUTS, Duration::from_secs(600), &mut || a.alive(dir.path(), "a"));
    let (status, said) = a.terminate(Duration::from_secs(30));
    assert!(status.success(), "the instance did not stop cleanly after the outage ({status}): {said}");
    assert_exactly_once(&*log, &format!("{prefix}.mid"), &counts);
    assert_exactly_once(&*log, &out, &counts);
    assert_eq!(&state_from_changelog(&*log, &changelog_of(&prefix, "count"), "counts"), &counts, "count's state");
    assert_eq!(&state_from_changelog(&*log, &changelog_of(&prefix, "relay"), "last"), &counts, "relay's state");
    let journal = std::fs::read_to_string(dir.path().join("a.log")).unwrap_or_default();
    let failed = journal.lines().filter(|l| l.contains("commit failed")).count();
    report(&format!(
        "broker outages (Kafka): the broker stopped and started twice during exactly-once processing of {INPUTS} records ({}): {failed} commits failed and were rewound, every output exactly once",
        outages.join("; ")
    ));
}
