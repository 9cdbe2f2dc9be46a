//! The payments worker on the runtime and the embedded log, killed with SIGKILL between the
//! provider's answer and its commit: the capture command, delivered twice and processed again
//! after the kill, makes every capture call with one idempotency key, and the log holds
//! exactly one `PaymentCaptured` (and one transfer per vendor).
//!
//! The worker runs in a child process (this test binary, re-run with `PAYMENTS_CHILD` set),
//! on the test-mode provider wrapped so that each call is written down, fsynced, before the
//! answer returns.

mod common;

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use storeflow_avro::{CaptureRequested, Codec, Event, Timestamp, Topic, VendorAmount};
use storeflow_ingest::{EmbeddedLog, Log, ProduceRecord, TopicSpec};
use storeflow_processors::metrics::Metrics;
use storeflow_processors::payments::*;
use storeflow_processors::{Runtime, RuntimeConfig, StateBackend};

const CHILD: &str = "PAYMENTS_CHILD";
const KILL: &str = "PAYMENTS_CHILD_KILL_AFTER_CAPTURE";
const ORDER: &str = "o-redelivery-1";

/// The test-mode provider, writing every call to `calls` before answering; with `kill`, the
/// process SIGKILLs itself right after its first capture (once: a marker file remembers).
struct Journal {
    dir: PathBuf,
    kill: bool,
}

impl Journal {
    fn note(&self, op: &str, key: &str) {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("calls")).unwrap();
        writeln!(f, "{op} {key}").unwrap();
        f.sync_all().unwrap();
    }
}

impl PaymentProvider for Journal {
    fn name(&self) -> &'static str {
        TestMode.name()
    }
    fn authorize(&self, r: &AuthorizeRequest) -> Result<Authorization, ProviderError> {
        self.note("authorize", &r.idempotency_key);
        TestMode.authorize(r)
    }
    fn capture(&self, r: &CaptureRequest) -> Result<Captured, ProviderError> {
        self.note("capture", &r.idempotency_key);
        let answer = TestMode.capture(r);
        let marker = self.dir.join("killed");
        if self.kill && !marker.exists() {
            std::fs::write(&marker, b"").unwrap();
            // The provider has captured; the worker has not committed: die now.
            Command::new("kill").args(["-9", &std::process::id().to_string()]).status().unwrap();
            std::thread::sleep(Duration::from_secs(60));
        }
        answer
    }
    fn transfer(&self, r: &TransferRequest) -> Result<String, ProviderError> {
        self.note(&format!("transfer-{}", r.vendor_id), &r.idempotency_key);
        TestMode.transfer(r)
    }
    fn reverse_transfer(&self, r: &ReversalRequest) -> Result<String, ProviderError> {
        self.note("reverse", &r.idempotency_key);
        TestMode.reverse_transfer(r)
    }
    fn refund(&self, r: &RefundRequest) -> Result<String, ProviderError> {
        self.note("refund", &r.idempotency_key);
        TestMode.refund(r)
    }
    fn cancel(&self, r: &CancelRequest) -> Result<(), ProviderError> {
        self.note("cancel", &r.idempotency_key);
        TestMode.cancel(r)
    }
}

/// Opens the log, waiting while another process still holds it: the parent's log, dropped
/// just before a child starts, may be finishing its last background flush on a loaded
/// machine (the directory lock is released when that flush ends).
fn open(dir: &Path) -> Arc<dyn Log> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match EmbeddedLog::open(dir.join("log")) {
            Ok(log) => return Arc::new(log),
            Err(storeflow_ingest::LogError::Locked { .. }) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("opening the log: {e}"),
        }
    }
}

fn payments_of(log: &dyn Log, codec: &Codec) -> Vec<Event> {
    read_all(log, Topic::Payments.name()).iter().map(|r| codec.decode(r.value.as_deref().unwrap()).unwrap()).collect()
}

/// Not a test on its own: the worker's process, run by the test below.
#[test]
fn the_worker_process_of_the_redelivery_test() {
    let Ok(dir) = std::env::var(CHILD) else { return };
    let dir = PathBuf::from(dir);
    let log = open(&dir);
    let codec = Arc::new(Codec::embedded().unwrap());
    let provider = Journal { dir: dir.clone(), kill: std::env::var_os(KILL).is_some() };
    let worker = Payments::with_provider(PaymentsConfig::default(), Box::new(provider));
    let cfg = RuntimeConfig { state: StateBackend::Redb(dir.join("state")), ..Default::default() };
    let rt = Runtime::spawn(Box::new(worker), log.clone(), codec.clone(), cfg, Arc::new(Metrics::unregistered())).unwrap();
    // The capture and two transfers.
    wait_for(&log, Topic::Payments.name(), 3, Duration::from_secs(60));
    // Both deliveries of the command processed (the second is a no-op) before stopping.
    std::thread::sleep(Duration::from_secs(2));
    rt.stop().unwrap();
}

#[test]
fn a_capture_delivered_twice_and_replayed_after_a_sigkill_captures_once_with_one_idempotency_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let codec = Codec::embedded().unwrap();
    {
        let log = open(dir);
        let topics: Vec<TopicSpec> = [Topic::PaymentCommands, Topic::Payments, Topic::Catalog].iter().map(|t| TopicSpec::new(t.name(), t.default_partitions())).collect();
        log.create_topics(&topics).unwrap();
        let command = Event::CaptureRequested(CaptureRequested {
            event_id: "7d0c1a52-5a3e-4d3b-9e53-2f1f7c1e0a01".into(),
            occurred_at: Timestamp::now(),
            order_id: ORDER.into(),
            payment_id: "pi_test_1".into(),
            amount_minor: 12_345,
            currency: "EUR".into(),
            placed_at: Timestamp::now(),
            vendors: vec![VendorAmount { vendor_id: "v-a".into(), amount_minor: 10_000 }, VendorAmount { vendor_id: "v-b".into(), amount_minor: 1_845 }],
            shipment_id: None,
            final_capture: true,
        });
        let p = log.producer().unwrap();
        for _ in 0..2 {
            // The same command twice: a redelivery.
            let bytes = codec.encode(&command).unwrap();
            p.send(ProduceRecord::new(Topic::PaymentCommands.name(), ORDER, bytes).at(command.occurred_at().millis())).unwrap().wait().unwrap();
        }
    }
    let child = |kill: bool| {
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.args(["--exact", "the_worker_process_of_the_redelivery_test", "--nocapture", "--test-threads", "1"]).env(CHILD, dir);
        if kill {
            c.env(KILL, "1");
        }
        c.status().unwrap()
    };
    let first = child(true);
    assert_eq!(first.signal(), Some(9), "the worker was killed between the capture and its commit: {first:?}");
    assert!(dir.join("killed").exists());
    let second = child(false);
    assert!(second.success(), "the restarted worker finished: {second:?}");

    let calls = std::fs::read_to_string(dir.join("calls")).unwrap();
    let captures: Vec<&str> = calls.lines().filter(|l| l.starts_with("capture ")).collect();
    assert_eq!(captures.len(), 2, "once before the kill, once after it (the redelivered command was a no-op): {calls}");
    assert_eq!(captures[0], captures[1], "one idempotency key for every capture call");
    assert_eq!(calls.lines().filter(|l| l.starts_with("transfer-")).count(), 2, "one transfer per vendor: {calls}");

    let log = open(dir);
    let events = payments_of(&*log, &codec);
    let captured = events.iter().filter(|e| matches!(e, Event::PaymentCaptured(_))).count();
    let transfers = events.iter().filter(|e| matches!(e, Event::VendorTransferCreated(_))).count();
    assert_eq!((captured, transfers), (1, 2), "{events:?}");
}
