//! Small processors over JSON records, used by the runtime's own tests, its crash test and
//! its benchmarks (the domain processors use the Avro contract instead).

use serde::{Deserialize, Serialize};
use storeflow_avro::Codec;

use crate::{Ctx, Flow, Input, ProcessError, Processor, Store, Wire};

/// A JSON record: a key, a number and where it goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// Partitioning key.
    pub key: String,
    /// The number it carries.
    pub n: u64,
    /// Event time (ms).
    pub time: i64,
    /// Destination topic when emitted.
    #[serde(default)]
    pub topic: String,
}

impl Wire for Note {
    fn decode(_: &Codec, bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
    fn encode(&self, _: &Codec) -> Result<Vec<u8>, String> {
        serde_json::to_vec(self).map_err(|e| e.to_string())
    }
    fn topic(&self) -> String {
        self.topic.clone()
    }
    fn key(&self) -> String {
        self.key.clone()
    }
    fn time(&self) -> i64 {
        self.time
    }
    fn kind(&self) -> &'static str {
        "Note"
    }
}

/// Where a test processor reads and writes.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Route {
    /// Input topic.
    pub input: String,
    /// Output topic.
    pub output: String,
}

/// [`Count`]'s running count per key.
pub const COUNTS: Store<u64> = Store::new("counts");

/// Counts records per key; emits the running count. A record with `n == u64::MAX` is
/// refused (a poison record, for DLQ tests); one with `n == u64::MAX - 1` makes it panic
/// after writing its state (for supervision tests).
pub struct Count(Route);

impl Processor for Count {
    const NAME: &'static str = "count";
    type Config = Route;
    type In = Note;
    type Out = Note;

    fn new(config: Route) -> Self {
        Count(config)
    }
    fn flow(&self) -> Flow {
        Flow::new().group(&[&self.0.input]).emits(&[&self.0.output]).build()
    }
    fn stores(&self) -> &'static [&'static str] {
        &[COUNTS.name]
    }
    fn process(&mut self, input: &Input<Note>, ctx: &mut Ctx<'_, Note>) -> Result<(), ProcessError> {
        if input.value.n == u64::MAX {
            return Err(ProcessError::permanent("poison: n is u64::MAX"));
        }
        let key = &input.value.key;
        let n = ctx.get(COUNTS, key)?.unwrap_or(0) + 1;
        ctx.put(COUNTS, key, &n)?;
        if input.value.n == u64::MAX - 1 {
            panic!("planted panic for {key}");
        }
        ctx.emit(Note { key: key.clone(), n, time: input.value.time, topic: self.0.output.clone() });
        Ok(())
    }
}

/// [`Relay`]'s last count relayed per key.
pub const LAST: Store<u64> = Store::new("last");

/// Second stage: checks that counts arrive in sequence per key, keeps the last, relays it.
pub struct Relay(Route);

impl Processor for Relay {
    const NAME: &'static str = "relay";
    type Config = Route;
    type In = Note;
    type Out = Note;

    fn new(config: Route) -> Self {
        Relay(config)
    }
    fn flow(&self) -> Flow {
        Flow::new().group(&[&self.0.input]).emits(&[&self.0.output]).build()
    }
    fn stores(&self) -> &'static [&'static str] {
        &[LAST.name]
    }
    fn process(&mut self, input: &Input<Note>, ctx: &mut Ctx<'_, Note>) -> Result<(), ProcessError> {
        let key = &input.value.key;
        let last = ctx.get(LAST, key)?.unwrap_or(0);
        if input.value.n != last + 1 {
            return Err(ProcessError::permanent(format!("{key}: count {} after {last}", input.value.n)));
        }
        ctx.put(LAST, key, &input.value.n)?;
        ctx.emit(Note { topic: self.0.output.clone(), ..input.value.clone() });
        Ok(())
    }
}

/// [`WindowedCount`]'s count per `<key>|<window start>`.
pub const WINDOWS: Store<u64> = Store::new("windows");

/// Counts records per key per 1-minute tumbling window of event time (the record
/// timestamp); emits the window's updated count per input, keyed `<key>|<window start>`
/// like its state. Windows are never expired: it exists to benchmark a windowed aggregate
/// against Kafka Streams' `windowedBy(TimeWindows.ofSizeWithNoGrace(1 min)).count()`.
pub struct WindowedCount(Route);

impl WindowedCount {
    /// Window length (ms).
    pub const WINDOW_MS: i64 = 60_000;
}

impl Processor for WindowedCount {
    const NAME: &'static str = "windowed_count";
    type Config = Route;
    type In = Note;
    type Out = Note;

    fn new(config: Route) -> Self {
        WindowedCount(config)
    }
    fn flow(&self) -> Flow {
        Flow::new().group(&[&self.0.input]).emits(&[&self.0.output]).build()
    }
    fn stores(&self) -> &'static [&'static str] {
        &[WINDOWS.name]
    }
    fn process(&mut self, input: &Input<Note>, ctx: &mut Ctx<'_, Note>) -> Result<(), ProcessError> {
        let start = input.timestamp.div_euclid(Self::WINDOW_MS) * Self::WINDOW_MS;
        let key = format!("{}|{start}", input.value.key);
        let n = ctx.get(WINDOWS, &key)?.unwrap_or(0) + 1;
        ctx.put(WINDOWS, &key, &n)?;
        ctx.emit(Note { key, n, time: input.timestamp, topic: self.0.output.clone() });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestDriver;

    #[test]
    fn windowed_count_counts_each_key_per_minute_of_event_time() {
        let mut d = TestDriver::new(WindowedCount::new(Route { input: "in".into(), output: "out".into() }));
        for (k, t) in [("a", 59_999), ("a", 1_000), ("b", 30_000), ("a", 60_000), ("a", 119_999)] {
            d.pipe(Note { key: k.into(), n: 0, time: t, topic: "in".into() });
        }
        let out: Vec<(String, u64)> = d.outputs::<Note>("out").into_iter().map(|n| (n.key, n.n)).collect();
        let expected = [("a|0", 1), ("a|0", 2), ("b|0", 1), ("a|60000", 1), ("a|60000", 2)];
        assert_eq!(out, expected.map(|(k, n)| (k.to_string(), n)));
    }
}

/// Prints a line of the fault suite's counts (kills landed, faults injected, invariants
/// checked) and appends it to `<tmpdir>/fault-report.txt`, which `scripts/test` prints after
/// the tests: cargo shows a passing test's output to nobody. Tests pass their
/// `env!("CARGO_TARGET_TMPDIR")`.
pub fn report_fault(tmpdir: &std::path::Path, line: &str) {
    use std::io::Write;
    println!("{line}");
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(tmpdir.join("fault-report.txt")) {
        let _ = writeln!(f, "{line}");
    }
}

/// A Kafka broker of a test's own, started by `scripts/services up kafka` in the run folder
/// `run` on free ports, from the install the shared test broker uses: for a test that needs
/// the contract topics to hold nothing else (on the shared broker other tests write to
/// them), or a broker per run. Stopped by PID, its data removed, when dropped. Callers check
/// first that a Kafka is configured at all (`service_address("STOREFLOW_TEST_KAFKA", …)`).
pub struct PrivateKafka {
    run: std::path::PathBuf,
    ports: (u16, u16),
    /// Its bootstrap address.
    pub brokers: String,
}

impl PrivateKafka {
    /// Starts it and waits until it answers; panics, with the script's output, if it fails.
    pub fn start(run: &std::path::Path) -> PrivateKafka {
        let free = || std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port");
        let ports = (free(), free());
        let k = PrivateKafka { run: run.to_path_buf(), ports, brokers: format!("127.0.0.1:{}", ports.0) };
        let out = k.services("up");
        assert!(
            out.status.success(),
            "scripts/services up kafka (a private broker on {}) failed: {}{}",
            k.brokers,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        k
    }

    fn services(&self, command: &str) -> std::process::Output {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/services");
        std::process::Command::new("bash")
            .arg(&script)
            .args([command, "kafka"])
            .env("STOREFLOW_RUN_DIR", &self.run)
            .env("STOREFLOW_KAFKA_PORT", self.ports.0.to_string())
            .env("STOREFLOW_KAFKA_CONTROLLER_PORT", self.ports.1.to_string())
            .output()
            .expect("run scripts/services")
    }
}

impl Drop for PrivateKafka {
    fn drop(&mut self) {
        self.services("down");
    }
}
