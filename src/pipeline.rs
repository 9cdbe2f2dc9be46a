//! Starts the registered processors and the sinks on the opened backends, and waits for
//! them to catch up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use anyhow::{Context, bail};
use storeflow_ingest::TopicPartition;
use storeflow_processors::metrics::Metrics;
use storeflow_processors::runtime::group_of;
use storeflow_processors::{Runtime, RuntimeConfig, StateBackend, Topology};
use storeflow_sinks::{Sinks, SinksConfig};

use crate::backends::Backends;
use crate::config::Config;

/// The running processors.
pub struct Pipeline {
    /// One runtime per processor, restarted by the supervisor when its thread ends.
    slots: Arc<Mutex<Vec<Slot>>>,
    /// Stops the supervisor.
    stopping: Arc<AtomicBool>,
    supervisor: Option<std::thread::JoinHandle<()>>,
    /// Every registered processor, for progress (the runtimes' topology).
    pub topology: Arc<Topology>,
    metrics: Arc<Metrics>,
    /// Their inputs, to measure progress: (group, input partitions).
    inputs: Vec<(String, Vec<TopicPartition>)>,
    log: Arc<dyn storeflow_ingest::Log>,
}

/// The runtime configuration from `[runtime]`.
pub fn runtime_config(config: &Config) -> RuntimeConfig {
    RuntimeConfig {
        app: config.runtime.app.clone(),
        commit_interval: Duration::from_millis(config.runtime.commit_interval_ms.max(1)),
        commit_records: config.runtime.commit_records.max(1),
        state: match config.runtime.state.as_str() {
            "memory" => StateBackend::Memory,
            _ => StateBackend::Redb(config.data_dir.join("state")),
        },
        instance: config.runtime.instance.clone(),
        max_task_idle: Duration::from_millis(config.runtime.max_task_idle_ms),
        lookahead_ms: config.runtime.lookahead_ms.max(1),
        idle: config.runtime.idle,
        time: config.time,
        ..RuntimeConfig::default()
    }
}

/// Every registered processor with its flow and task count: what progress across
/// processors is computed over. Processors run elsewhere (`storeflow process --only`) are in
/// it too: their progress comes through the log.
pub fn topology(b: &Backends, config: &Config, registrations: &[storeflow_processors::Registration]) -> anyhow::Result<Topology> {
    let configs = |name: &str| config.processor_config(name);
    Ok(storeflow_processors::topology(&*b.log, registrations, &configs)?)
}

/// Starts the processors named in `only` (all registered ones when empty).
pub fn start(b: &Backends, config: &Config, only: &[String], metrics: Arc<Metrics>) -> anyhow::Result<Pipeline> {
    let registry = crate::sql::registrations(b, config)?;
    for name in only {
        if !registry.iter().any(|r| r.name == name) {
            let known: Vec<&str> = registry.iter().map(|r| r.name).collect();
            bail!("there is no processor named {name} (known: {})", known.join(", "));
        }
    }
    let mut rc = runtime_config(config);
    let topology = Arc::new(topology(b, config, &registry)?);
    rc.topology = Some(topology.clone());
    let mut slots = Vec::new();
    let mut inputs = Vec::new();
    let infos = b.log.describe_topics()?;
    for reg in registry.iter().filter(|r| only.is_empty() || only.iter().any(|o| o == r.name)) {
        let cfg = config.processor_config(reg.name);
        let processor = (reg.build)(&cfg)?;
        let tps: Vec<TopicPartition> = processor
            .inputs()
            .iter()
            .flat_map(|t| {
                let n = infos.iter().find(|i| &i.name == t).map(|i| i.partitions.len() as u32).unwrap_or(0);
                (0..n).map(move |p| TopicPartition::new(t, p))
            })
            .collect();
        inputs.push((group_of(&rc.app, reg.name), tps));
        let runtime = Runtime::spawn(processor, b.log.clone(), b.codec.clone(), rc.clone(), metrics.clone())
            .with_context(|| format!("starting the {} processor", reg.name))?;
        let alive = Arc::new(AtomicBool::new(true));
        slots.push(Slot { name: reg.name, build: reg.build.clone(), cfg, runtime: Some(runtime), alive, backoff: storeflow_ingest::Backoff::new(RESTART_FIRST, RESTART_MAX), retry_at: None, up_since: Instant::now() });
    }
    let slots = Arc::new(Mutex::new(slots));
    let stopping = Arc::new(AtomicBool::new(false));
    let supervisor = {
        let (slots, stopping) = (slots.clone(), stopping.clone());
        let (log, codec, metrics) = (b.log.clone(), b.codec.clone(), metrics.clone());
        std::thread::Builder::new()
            .name("supervisor".into())
            .spawn(move || supervise(&slots, &stopping, &log, &codec, &rc, &metrics))
            .context("starting the supervisor thread")?
    };
    Ok(Pipeline { slots, stopping, supervisor: Some(supervisor), topology, metrics, inputs, log: b.log.clone() })
}

/// One processor under supervision.
struct Slot {
    name: &'static str,
    build: storeflow_processors::Build,
    cfg: serde_json::Value,
    /// `None` while it is down, waiting for its restart.
    runtime: Option<Runtime>,
    /// What readiness probes read: false while it is down.
    alive: Arc<AtomicBool>,
    backoff: storeflow_ingest::Backoff,
    retry_at: Option<Instant>,
    up_since: Instant,
}

const RESTART_FIRST: Duration = Duration::from_secs(1);
const RESTART_MAX: Duration = Duration::from_secs(60);

/// Restarts a processor whose thread ended (an error it could not get past), with back-off
/// (1 s doubling to 60 s; back to 1 s after 5 minutes up). A fresh runtime restores its state
/// from the changelog and goes on from the last commit, as after a crash; `/readyz` names it
/// while it is down.
fn supervise(slots: &Mutex<Vec<Slot>>, stopping: &AtomicBool, log: &Arc<dyn storeflow_ingest::Log>, codec: &Arc<storeflow_avro::Codec>, rc: &RuntimeConfig, metrics: &Arc<Metrics>) {
    while !stopping.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
        let mut slots = slots.lock();
        for slot in slots.iter_mut() {
            if stopping.load(Ordering::Relaxed) {
                return;
            }
            if slot.runtime.as_ref().is_some_and(|r| r.is_running()) {
                if slot.up_since.elapsed() > Duration::from_secs(300) {
                    slot.backoff.reset();
                }
                continue;
            }
            if let Some(ended) = slot.runtime.take() {
                slot.alive.store(false, Ordering::Relaxed);
                let why = match ended.stop() {
                    Ok(()) => "it ended without being asked to".to_string(),
                    Err(e) => e.to_string(),
                };
                tracing::error!(processor = slot.name, error = %why, restart_in = ?slot.backoff.peek(), "a processor thread stopped; restarting it");
                slot.retry_at = Some(Instant::now() + slot.backoff.peek());
            }
            if slot.retry_at.is_some_and(|at| Instant::now() < at) {
                continue;
            }
            // Each try makes the next wait longer, whether it works or not.
            let wait = slot.backoff.next();
            let started = (slot.build)(&slot.cfg).map_err(anyhow::Error::from).and_then(|p| Runtime::spawn(p, log.clone(), codec.clone(), rc.clone(), metrics.clone()).map_err(anyhow::Error::from));
            match started {
                Ok(r) => {
                    tracing::warn!(processor = slot.name, "the processor restarted");
                    slot.runtime = Some(r);
                    slot.alive.store(true, Ordering::Relaxed);
                    slot.retry_at = None;
                    slot.up_since = Instant::now();
                }
                Err(e) => {
                    tracing::error!(processor = slot.name, error = %e, "restarting the processor failed");
                    slot.retry_at = Some(Instant::now() + wait);
                }
            }
        }
    }
}

impl Pipeline {
    /// Names of the processors.
    pub fn names(&self) -> Vec<&'static str> {
        self.slots.lock().iter().map(|s| s.name).collect()
    }

    /// Each processor's name and a probe of whether it runs (false while it is down,
    /// between its thread's end and its restart).
    pub fn liveness(&self) -> Vec<(&'static str, Arc<dyn Fn() -> bool + Send + Sync>)> {
        let slots = self.slots.lock();
        slots
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (all, alive) = (self.slots.clone(), s.alive.clone());
                let probe: Arc<dyn Fn() -> bool + Send + Sync> = Arc::new(move || {
                    // The flag catches a restart pending; the thread itself, an end not yet seen.
                    alive.load(Ordering::Relaxed) && all.try_lock().is_none_or(|s| s[i].runtime.as_ref().is_some_and(|r| r.is_running()))
                });
                (s.name, probe)
            })
            .collect()
    }

    /// Records not yet committed by each processor's group (per processor).
    pub fn lag(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        for (group, tps) in &self.inputs {
            let committed = self.log.committed_offsets(group, tps)?;
            let marks = self.log.watermarks(tps)?;
            let lag: u64 = committed.iter().zip(&marks).map(|(c, (s, e))| e.saturating_sub(c.unwrap_or(*s))).sum();
            out.insert(group.clone(), lag);
        }
        Ok(out)
    }

    /// Waits until every processor has committed everything on its inputs (transaction
    /// markers on Kafka may leave one offset per partition) and nothing changed for a
    /// moment; a chain settles stage by stage.
    pub fn wait_caught_up(&self, patience: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + patience;
        let mut stable_since: Option<(BTreeMap<String, u64>, Instant)> = None;
        loop {
            for s in self.slots.lock().iter() {
                if !s.runtime.as_ref().is_some_and(|r| r.is_running()) {
                    bail!("the {} processor stopped; see the log above", s.name);
                }
            }
            let lag = self.lag()?;
            let slack: u64 = self.inputs.iter().map(|(_, tps)| tps.len() as u64).max().unwrap_or(0);
            // Nothing fetched waits for its turn either.
            let buffered: i64 = self.names().into_iter().map(|n| self.metrics.buffered.get_or_create(&storeflow_processors::metrics::ProcessorLabel { processor: n.to_string() }).get()).sum();
            let small = lag.values().all(|l| *l <= slack) && buffered == 0;
            match &stable_since {
                Some((prev, since)) if *prev == lag && small && since.elapsed() > Duration::from_millis(1500) => return Ok(()),
                Some((prev, _)) if *prev == lag => {}
                _ => stable_since = Some((lag.clone(), Instant::now())),
            }
            if Instant::now() > deadline {
                bail!("the processors did not catch up within {patience:?}; lag per group: {lag:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the supervisor, then commits and stops every processor.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.stopping.store(true, Ordering::Relaxed);
        if let Some(t) = self.supervisor.take() {
            let _ = t.join();
        }
        let slots = std::mem::take(&mut *self.slots.lock());
        for s in slots {
            if let Some(r) = s.runtime {
                r.stop().with_context(|| format!("stopping {}", s.name))?;
            }
        }
        Ok(())
    }
}

/// The sinks' configuration: `[sinks]`, with the embedded twins under `<data_dir>/sinks`
/// when `[sinks] data_dir` is left empty.
pub fn sinks_config(config: &Config) -> SinksConfig {
    let mut c = config.sinks.clone();
    if c.data_dir.as_os_str().is_empty() {
        c.data_dir = config.data_dir.join("sinks");
    }
    c.instance = config.runtime.instance.clone();
    c
}

/// One line per enabled sink for the start-up banner: which store it writes to.
pub fn sinks_banner(config: &Config) -> Vec<String> {
    sinks_config(config).describe().into_iter().map(|(name, store)| format!("{}: {store}", name.replace('_', " "))).collect()
}

/// Starts the enabled sinks (`[sinks.*] enabled`), each in its consumer group
/// `<app>.sink.<name>`; their metrics go to `registry`.
pub fn start_sinks(b: &Backends, config: &Config, registry: &mut prometheus_client::registry::Registry) -> anyhow::Result<Sinks> {
    let c = sinks_config(config);
    Sinks::start(b.log.clone(), b.codec.clone(), c, registry).context("starting the sinks")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_supervisor_restarts_a_processor_that_is_down_and_readiness_follows() {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn storeflow_ingest::Log> = Arc::new(storeflow_ingest::EmbeddedLog::open(dir.path()).unwrap());
        log.create_topics(&[storeflow_ingest::TopicSpec::new("in", 1), storeflow_ingest::TopicSpec::new("out", 1)]).unwrap();
        let codec = Arc::new(storeflow_avro::Codec::embedded().unwrap());
        let metrics = Arc::new(Metrics::unregistered());
        let cfg = serde_json::json!({"input": "in", "output": "out"});
        // Down: its thread ended and was noticed (what `supervise` does first).
        let alive = Arc::new(AtomicBool::new(false));
        let slot = Slot {
            name: "count",
            build: Arc::new(storeflow_processors::build::<storeflow_processors::testing::Count>),
            cfg,
            runtime: None,
            alive: alive.clone(),
            backoff: storeflow_ingest::Backoff::new(RESTART_FIRST, RESTART_MAX),
            retry_at: Some(Instant::now() + Duration::from_millis(300)),
            up_since: Instant::now(),
        };
        let slots = Arc::new(Mutex::new(vec![slot]));
        let stopping = Arc::new(AtomicBool::new(false));
        let sup = {
            let (slots, stopping, log, codec, metrics) = (slots.clone(), stopping.clone(), log.clone(), codec.clone(), metrics.clone());
            std::thread::spawn(move || supervise(&slots, &stopping, &log, &codec, &RuntimeConfig::default(), &metrics))
        };
        std::thread::sleep(Duration::from_millis(150));
        assert!(!alive.load(Ordering::Relaxed) && slots.lock()[0].runtime.is_none(), "restarted before its back-off");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !slots.lock()[0].runtime.as_ref().is_some_and(|r| r.is_running()) {
            assert!(Instant::now() < deadline, "not restarted");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(alive.load(Ordering::Relaxed), "readiness still says it is down");
        assert_eq!(slots.lock()[0].backoff.peek(), RESTART_FIRST * 2, "the next restart waits longer");
        stopping.store(true, Ordering::Relaxed);
        sup.join().unwrap();
        let r = slots.lock()[0].runtime.take().unwrap();
        r.stop().unwrap();
    }

    #[test]
    fn stores_named_in_the_sinks_sections_replace_the_embedded_twins_and_sinks_live_under_the_data_dir() {
        use storeflow_sinks::read_model::ReadModelConfig;
        use storeflow_sinks::search::SearchConfig;
        use storeflow_sinks::{AnalyticsSink, ReadModelSink, SearchSink};
        let mut config = Config { data_dir: "d".into(), ..Config::default() };
        let c = sinks_config(&config);
        assert_eq!(c.data_dir, std::path::Path::new("d/sinks"));
        assert!(c.sink::<ReadModelSink>().postgres_url.is_none() && c.sink::<AnalyticsSink>().clickhouse.is_none() && c.sink::<SearchSink>().elasticsearch.is_none());
        assert_eq!(sinks_banner(&config), ["read model: embedded SQLite, d/sinks/read_model.sqlite", "analytics: embedded Parquet + DataFusion, d/sinks/analytics", "search: embedded tantivy index, d/sinks/search"]);
        config.sinks = config.sinks.with::<ReadModelSink>(ReadModelConfig::postgres("postgres://u:p@h/db")).with::<SearchSink>(SearchConfig::elasticsearch("http://h:9200"));
        let c = sinks_config(&config);
        assert!(c.sink::<ReadModelSink>().postgres_url.is_some() && c.sink::<AnalyticsSink>().clickhouse.is_none());
        assert_eq!(c.sink::<SearchSink>().elasticsearch.as_ref().map(|e| e.url.as_str()), Some("http://h:9200"));
        assert!(sinks_banner(&config).iter().any(|l| l == "read model: Postgres at postgres://u:***@h/db (instead of embedded SQLite)"));
    }
}
