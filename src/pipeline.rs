//! Starts the registered processors on the opened backends, and waits for them to catch up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use storeflow_ingest::TopicPartition;
use storeflow_processors::metrics::Metrics;
use storeflow_processors::runtime::group_of;
use storeflow_processors::{Runtime, RuntimeConfig, StateBackend};

use crate::backends::Backends;
use crate::config::Config;

/// The running processors.
pub struct Pipeline {
    /// One runtime per processor.
    pub runtimes: Vec<Runtime>,
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
        ..RuntimeConfig::default()
    }
}

/// Starts the processors named in `only` (all registered ones when empty).
pub fn start(b: &Backends, config: &Config, only: &[String], metrics: Arc<Metrics>) -> anyhow::Result<Pipeline> {
    let registry = storeflow_processors::registry();
    for name in only {
        if !registry.iter().any(|r| r.name == name) {
            let known: Vec<&str> = registry.iter().map(|r| r.name).collect();
            bail!("there is no processor named {name} (known: {})", known.join(", "));
        }
    }
    let rc = runtime_config(config);
    let mut runtimes = Vec::new();
    let mut inputs = Vec::new();
    let infos = b.log.describe_topics()?;
    for reg in registry.iter().filter(|r| only.is_empty() || only.iter().any(|o| o == r.name)) {
        let cfg = config.processors.get(reg.name).cloned().unwrap_or(serde_json::Value::Null);
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
        runtimes.push(
            Runtime::spawn(processor, b.log.clone(), b.codec.clone(), rc.clone(), metrics.clone())
                .with_context(|| format!("starting the {} processor", reg.name))?,
        );
    }
    Ok(Pipeline { runtimes, inputs, log: b.log.clone() })
}

impl Pipeline {
    /// Names of the running processors.
    pub fn names(&self) -> Vec<&'static str> {
        self.runtimes.iter().map(|r| r.name()).collect()
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
            for r in &self.runtimes {
                if !r.is_running() {
                    bail!("the {} processor stopped; see the log above", r.name());
                }
            }
            let lag = self.lag()?;
            let slack: u64 = self.inputs.iter().map(|(_, tps)| tps.len() as u64).max().unwrap_or(0);
            let small = lag.values().all(|l| *l <= slack);
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

    /// Commits and stops every processor.
    pub fn stop(self) -> anyhow::Result<()> {
        for r in self.runtimes {
            let name = r.name();
            r.stop().with_context(|| format!("stopping {name}"))?;
        }
        Ok(())
    }
}
