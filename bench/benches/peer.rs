//! Kafka Streams, side by side: storeflow's runtime and a Kafka Streams 4.4 application
//! (`bench/kstreams`) on the same broker, over the same records, in the same run.
//!
//! `STOREFLOW_BENCH_KAFKA=127.0.0.1:19092 cargo bench -p storeflow-bench --bench peer`
//! (Kafka only; `scripts/services up kafka`). Needs Java 17+ and Maven: the JVM app is built
//! with `bench/kstreams/build` when its jar is missing or older than its sources.
//!
//! The input is the runtime bench's (`storeflow_bench::produce`: 200,000 JSON notes over 4
//! partitions and 10,000 keys). Every line runs exactly-once, commits every 100 ms, on one
//! thread, with fresh topics, application id and state; time runs from starting the
//! processor to its group having committed every input offset.
//!
//! - storeflow `Count` (as `runtime.rs` runs it, state in redb) and `WindowedCount` (1-minute
//!   tumbling windows of event time).
//! - Kafka Streams `count-papi` (the Processor API twin of `Count`, RocksDB), `count-dsl`
//!   (`groupByKey().count()`) and `window-dsl` (`windowedBy(1 min).count()`). Each runs twice
//!   in one JVM: first on a copy of the input (cold: the JVM has just started), then on the
//!   input (warm). The figures exclude the JVM's start-up.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use storeflow_bench::{KEYS, PARTITIONS, RECORDS, produce, run_to_end};
use storeflow_ingest::{KafkaLog, KafkaSettings, Log, TopicSpec};
use storeflow_processors::testing::{Count, Route, WindowedCount};
use storeflow_processors::{Processor, StateBackend};

/// A line of the table.
struct Row {
    line: String,
    rate: f64,
    /// The storeflow figure it is compared with.
    base: f64,
}

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let Ok(brokers) = std::env::var("STOREFLOW_BENCH_KAFKA") else {
        println!("peer: Kafka only — set STOREFLOW_BENCH_KAFKA=host:port (scripts/services up kafka) to run storeflow and Kafka Streams side by side");
        return;
    };
    let classpath = kstreams_classpath();
    if let Err(e) = &classpath {
        println!("peer: the Kafka Streams lines are skipped: {e}");
    }
    let log: Arc<dyn Log> = Arc::new(KafkaLog::connect(KafkaSettings::new(&brokers)).expect("kafka"));
    let dir = tempfile::tempdir().expect("tempdir");
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let input = format!("bench.{tag}.in");
    produce(&*log, &input);
    let commit = Duration::from_millis(100);

    let output = format!("bench.{tag}.count");
    let count = Count::new(Route { input: input.clone(), output: output.clone() });
    let count = run_to_end(log.clone(), Box::new(count), &format!("bench{tag}c"), &input, &output, StateBackend::Redb(dir.path().join("count")), commit);
    let output = format!("bench.{tag}.window");
    let window = WindowedCount::new(Route { input: input.clone(), output: output.clone() });
    let window = run_to_end(log.clone(), Box::new(window), &format!("bench{tag}w"), &input, &output, StateBackend::Redb(dir.path().join("window")), commit);

    let mut counts = vec![Row { line: "storeflow Count (redb)".into(), rate: count, base: count }];
    let mut windows = vec![Row { line: "storeflow WindowedCount (redb)".into(), rate: window, base: window }];
    if let Ok(classpath) = &classpath {
        let warmup = format!("bench.{tag}.warmup.in");
        produce(&*log, &warmup);
        for mode in ["count-papi", "count-dsl", "window-dsl"] {
            let (rows, base) = if mode == "window-dsl" { (&mut windows, window) } else { (&mut counts, count) };
            match run_kstreams(&*log, classpath, &brokers, mode, &input, &warmup) {
                Ok((cold, warm)) => {
                    rows.push(Row { line: format!("Kafka Streams {mode}, warm"), rate: warm, base });
                    rows.push(Row { line: format!("Kafka Streams {mode}, cold (first run in the JVM)"), rate: cold, base });
                }
                Err(e) => println!("peer: Kafka Streams {mode} failed: {e}"),
            }
        }
    }

    println!("\nKafka at {brokers}: {RECORDS} records, {PARTITIONS} partitions, {KEYS} keys; exactly-once, commit every 100 ms, one thread each");
    println!("  {:<52} {:>12} {:>22}", "line", "records/s", "ratio to storeflow's");
    for r in counts.iter().chain(&windows) {
        println!("  {:<52} {:>12.0} {:>22.2}", r.line, r.rate, r.rate / r.base);
    }
    println!(
        "  (count-dsl and window-dsl: Kafka Streams' record cache coalesces a key's updates between commits, so they write\n   \
         fewer output records than inputs; storeflow's lines and count-papi write one per input. count-papi's store has\n   \
         no cache: every put goes to RocksDB and to its changelog, where storeflow writes a key once per commit.)"
    );
}

/// Runs `mode` of the Kafka Streams app in one JVM: cold on `warmup`, then warm on `input`,
/// each with a fresh application id and output topic. Returns (cold, warm) records/s.
fn run_kstreams(log: &dyn Log, classpath: &str, brokers: &str, mode: &str, input: &str, warmup: &str) -> Result<(f64, f64), String> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (app, output) = (format!("bench-{mode}-{id}"), format!("bench.{id}.{mode}"));
    let (warm_app, warm_output) = (format!("{app}-warmup"), format!("{output}.warmup"));
    log.create_topics(&[TopicSpec::new(&output, PARTITIONS), TopicSpec::new(&warm_output, PARTITIONS)]).map_err(|e| format!("creating {output}: {e}"))?;
    let out = Command::new("java")
        .args(["-cp", classpath, "storeflow.peer.Peer", brokers, &app, input, &output, mode, &RECORDS.to_string(), &warm_app, warmup, &warm_output])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("starting java: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("java exited with {}; its output: {stdout}", out.status));
    }
    let rate = |line: &str| line.split_whitespace().find_map(|w| w.strip_prefix("rate=")).and_then(|r| r.parse::<f64>().ok());
    let cold = stdout.lines().find_map(|l| l.strip_prefix("warmup ").and_then(rate));
    let warm = stdout.lines().find(|l| l.starts_with("records=")).and_then(rate);
    match (cold, warm) {
        (Some(c), Some(w)) => Ok((c, w)),
        _ => Err(format!("no `warmup records=… rate=…` and `records=… rate=…` lines in its output: {stdout}")),
    }
}

/// The Kafka Streams app's classpath, built first if its jar is missing or stale.
fn kstreams_classpath() -> Result<String, String> {
    match Command::new("java").arg("-version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => {}
        Ok(s) => return Err(format!("`java -version` failed ({s}); Kafka Streams needs a JDK 17+")),
        Err(e) => return Err(format!("Java is missing (`java`: {e}); install a JDK 17+ (apt-get install openjdk-17-jdk-headless)")),
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("kstreams");
    let jar = dir.join("target/kstreams-peer.jar");
    let listing = dir.join("target/classpath.txt");
    let built = modified(&jar).min(modified(&listing));
    let sources = [dir.join("pom.xml"), dir.join("build")].into_iter().map(|p| modified(&p)).chain([newest_under(&dir.join("src"))]).flatten().max();
    if built.is_none() || sources > built {
        println!("peer: building the Kafka Streams app (bench/kstreams/build) …");
        let status = Command::new(dir.join("build")).status().map_err(|e| format!("running bench/kstreams/build: {e}"))?;
        if !status.success() {
            let why = if status.code() == Some(3) { "Java or Maven is missing (see above)" } else { "Maven failed (see above)" };
            return Err(format!("bench/kstreams/build exited with {status}: {why}"));
        }
    }
    let deps = std::fs::read_to_string(&listing).map_err(|e| format!("reading {}: {e}", listing.display()))?;
    Ok(format!("{}:{}", jar.display(), deps.trim()))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time of the files under `dir`.
fn newest_under(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    let mut todo: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                newest = newest.max(modified(&path));
            }
        }
    }
    newest
}
