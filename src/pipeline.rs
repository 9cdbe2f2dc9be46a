//! Starts the registered processors and the sinks on the opened backends, and waits for
//! them to catch up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// One runtime per processor.
    pub runtimes: Vec<Runtime>,
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
        ..RuntimeConfig::default()
    }
}

/// Every registered processor with its flow and task count: what progress across
/// processors is computed over. Processors run elsewhere (`storeflow process --only`) are in
/// it too: their progress comes through the log.
pub fn topology(b: &Backends, config: &Config) -> anyhow::Result<Topology> {
    let configs = |name: &str| config.processors.get(name).cloned().unwrap_or(serde_json::Value::Null);
    Ok(storeflow_processors::topology(&*b.log, &configs)?)
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
    let mut rc = runtime_config(config);
    let topology = Arc::new(topology(b, config)?);
    rc.topology = Some(topology.clone());
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
    Ok(Pipeline { runtimes, topology, metrics, inputs, log: b.log.clone() })
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
            // Nothing fetched waits for its turn either.
            let buffered: i64 = self.runtimes.iter().map(|r| self.metrics.buffered.get_or_create(&storeflow_processors::metrics::ProcessorLabel { processor: r.name().to_string() }).get()).sum();
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

    /// Commits and stops every processor.
    pub fn stop(self) -> anyhow::Result<()> {
        for r in self.runtimes {
            let name = r.name();
            r.stop().with_context(|| format!("stopping {name}"))?;
        }
        Ok(())
    }
}

/// The sinks' configuration: `[sinks]`, with the stores of `[postgres]`, `[clickhouse]` and
/// `[elasticsearch]` (`STOREFLOW__POSTGRES__URL`, …) when `[sinks]` names none, and the
/// embedded twins under `<data_dir>/sinks` when `[sinks] data_dir` is left empty.
pub fn sinks_config(config: &Config) -> SinksConfig {
    let mut c = config.sinks.clone();
    if c.data_dir.as_os_str().is_empty() {
        c.data_dir = config.data_dir.join("sinks");
    }
    if let (None, Some(pg)) = (&c.read_model.postgres_url, &config.postgres) {
        c = c.with_postgres(pg.url.clone());
    }
    if let (None, Some(ch)) = (&c.analytics.clickhouse, &config.clickhouse) {
        c = c.with_clickhouse(ch.url.clone());
    }
    if let (None, Some(es)) = (&c.search.elasticsearch, &config.elasticsearch) {
        c = c.with_elasticsearch(es.url.clone());
    }
    c
}

/// One line per enabled sink for the start-up banner: which store it writes to.
pub fn sinks_banner(config: &Config) -> Vec<String> {
    let c = sinks_config(config);
    let dir = c.data_dir.display();
    let mut lines = Vec::new();
    if c.read_model.enabled {
        lines.push(match &c.read_model.postgres_url {
            Some(url) => format!("read model: Postgres at {} (instead of embedded SQLite)", redact_url(secrecy::ExposeSecret::expose_secret(url))),
            None => format!("read model: embedded SQLite, {dir}/read_model.sqlite"),
        });
    }
    if c.analytics.enabled {
        lines.push(match &c.analytics.clickhouse {
            Some(ch) => format!("analytics: ClickHouse at {}, database {} (instead of embedded Parquet + DataFusion)", redact_url(&ch.url), ch.database),
            None => format!("analytics: embedded Parquet + DataFusion, {dir}/analytics"),
        });
    }
    if c.search.enabled {
        lines.push(match &c.search.elasticsearch {
            Some(es) => format!("search: Elasticsearch at {}, index {} (instead of the embedded tantivy index)", redact_url(&es.url), es.index),
            None => format!("search: embedded tantivy index, {dir}/search"),
        });
    }
    lines
}

/// `scheme://user:password@host/…` → `scheme://user:***@host/…`, for messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (authority, path) = rest.split_once('/').map_or((rest, None), |(a, p)| (a, Some(p)));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    match path {
        Some(p) => format!("{scheme}://{authority}/{p}"),
        None => format!("{scheme}://{authority}"),
    }
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
    fn passwords_in_urls_are_masked_in_messages() {
        assert_eq!(redact_url("postgres://u:hunter2@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("http://127.0.0.1:18123"), "http://127.0.0.1:18123");
        assert_eq!(redact_url("http://elastic@h:9200"), "http://elastic@h:9200");
    }

    #[test]
    fn service_urls_replace_the_embedded_twins_and_sinks_live_under_the_data_dir() {
        let mut config = Config { data_dir: "d".into(), ..Config::default() };
        let c = sinks_config(&config);
        assert_eq!(c.data_dir, std::path::Path::new("d/sinks"));
        assert!(c.read_model.postgres_url.is_none() && c.analytics.clickhouse.is_none() && c.search.elasticsearch.is_none());
        config.postgres = Some(crate::config::UrlConfig { url: "postgres://u:p@h/db".into() });
        config.elasticsearch = Some(crate::config::UrlConfig { url: "http://h:9200".into() });
        let c = sinks_config(&config);
        assert!(c.read_model.postgres_url.is_some() && c.analytics.clickhouse.is_none());
        assert_eq!(c.search.elasticsearch.map(|e| e.url).as_deref(), Some("http://h:9200"));
        assert!(sinks_banner(&config).iter().any(|l| l.contains("Postgres at postgres://u:***@h/db")));
    }
}
