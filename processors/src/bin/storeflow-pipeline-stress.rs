//! Runs a two-stage pipeline — `count` (`<prefix>.in` → `<prefix>.mid`) feeding `relay`
//! (`<prefix>.mid` → `<prefix>.out`) — until killed, so a test can `SIGKILL` it at any
//! instant, restart it, and check that outputs stay exactly-once and state stays right.
//!
//! Usage: `storeflow-pipeline-stress (--embedded DIR | --kafka BROKERS) --prefix P --state DIR [--instance NAME] [--exit-when-idle]`
//!
//! With `--exit-when-idle` it stops cleanly once nothing new has been processed for 5 s
//! (20 s when it found nothing to do at all). SIGTERM stops it cleanly too (each task commits
//! and the instance leaves its groups, as a scaled-down instance does). A clean stop prints
//! `processed N records` on stdout.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use storeflow_avro::Codec;
use storeflow_ingest::{EmbeddedLog, KafkaLog, KafkaSettings, Log, TopicSpec};
use storeflow_processors::metrics::{Metrics, ProcessorLabel};
use storeflow_processors::testing::{Count, Relay, Route};
use storeflow_processors::{Processor, Runtime, RuntimeConfig, StateBackend};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

static TERMINATED: AtomicBool = AtomicBool::new(false);

fn main() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { signal_hook_registry::register(libc::SIGTERM, || TERMINATED.store(true, Ordering::Relaxed)) }
        .expect("install the SIGTERM handler");
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("STOREFLOW_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().collect();
    let log: Arc<dyn Log> = match (arg(&args, "--embedded"), arg(&args, "--kafka")) {
        (Some(dir), None) => Arc::new(EmbeddedLog::open(dir).expect("open the embedded log")),
        (None, Some(brokers)) => Arc::new(KafkaLog::connect(KafkaSettings::new(&brokers)).expect("connect to Kafka")),
        _ => {
            eprintln!("usage: storeflow-pipeline-stress (--embedded DIR | --kafka BROKERS) --prefix P --state DIR [--exit-when-idle]");
            std::process::exit(2);
        }
    };
    let prefix = arg(&args, "--prefix").expect("--prefix");
    let state = arg(&args, "--state").expect("--state");
    let exit_when_idle = args.iter().any(|a| a == "--exit-when-idle");
    let (input, mid, out) = (format!("{prefix}.in"), format!("{prefix}.mid"), format!("{prefix}.out"));
    log.create_topics(&[TopicSpec::new(&mid, 4), TopicSpec::new(&out, 4)]).expect("topics");
    let codec = Arc::new(Codec::embedded().expect("codec"));
    let metrics = Arc::new(Metrics::unregistered());
    let config = RuntimeConfig {
        app: prefix.clone(),
        commit_records: 2_000,
        state: StateBackend::Redb(state.into()),
        instance: Some(arg(&args, "--instance").unwrap_or_else(|| "stress".into())),
        consumer_properties: vec![("session.timeout.ms".into(), "6000".into())],
        ..RuntimeConfig::default()
    };
    let count = Runtime::spawn(
        Box::new(Count::new(Route { input, output: mid.clone() })),
        log.clone(),
        codec.clone(),
        config.clone(),
        metrics.clone(),
    )
    .expect("start count");
    let relay = Runtime::spawn(Box::new(Relay::new(Route { input: mid, output: out })), log, codec, config, metrics.clone())
        .expect("start relay");
    let total = || {
        ["count", "relay"]
            .iter()
            .map(|p| metrics.records_in.get_or_create(&ProcessorLabel { processor: p.to_string() }).get())
            .sum::<u64>()
    };
    let started = Instant::now();
    let mut last = (0, Instant::now());
    loop {
        std::thread::sleep(Duration::from_millis(200));
        if !count.is_running() || !relay.is_running() {
            let (c, r) = (count.stop(), relay.stop());
            eprintln!("a runtime thread stopped: count: {c:?}, relay: {r:?}");
            std::process::exit(1);
        }
        let now = total();
        if TERMINATED.load(Ordering::Relaxed) {
            break;
        }
        if now != last.0 {
            last = (now, Instant::now());
        } else if exit_when_idle
            && last.1.elapsed() > Duration::from_secs(5)
            && (now > 0 || started.elapsed() > Duration::from_secs(20))
        {
            // Idle: everything was processed (or, after 20 s with nothing to do, there was
            // nothing left). The test checks the outputs either way.
            break;
        }
    }
    count.stop().expect("stop count");
    relay.stop().expect("stop relay");
    println!("processed {} records", total());
}
