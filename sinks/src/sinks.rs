//! [`Sinks`]: starts the enabled sinks of a [`SinksConfig`] (in its registry's order) on a
//! log, hands out their query handles, waits for them to catch up, and stops them.
//!
//! The sinks own a small multi-threaded tokio runtime (two workers): the stores' clients
//! (sqlx, clickhouse, elasticsearch, DataFusion) live on it, each sink's consumer loop runs
//! on its own thread and drives its writes with `block_on`, and the query handles spawn
//! their queries onto it — so the caller needs no runtime, and an axum handler on another
//! runtime can await the handles.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use storeflow_avro::Codec;
use storeflow_ingest::{Log, TopicPartition};

use crate::analytics::{Analytics, AnalyticsSink};
use crate::config::SinksConfig;
use crate::metrics::SinkMetrics;
use crate::read_model::{ReadModel, ReadModelSink};
use crate::registry::{AnyHandle, Registered, SinkContext, Start};
use crate::runner::{KnownDead, RunnerSettings, SinkThread};
use crate::search::{Search, SearchSink};
use crate::{Result, SinkError};

/// The running sinks.
pub struct Sinks {
    rt: Option<tokio::runtime::Runtime>,
    threads: Vec<SinkThread>,
    stop: Arc<AtomicBool>,
    log: Arc<dyn Log>,
    /// Each running sink's query handle, by name.
    handles: Vec<(&'static str, AnyHandle)>,
    metrics: SinkMetrics,
}

/// What one sink has done since [`Sinks::start`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SinkCounts {
    /// Records written durably to the store.
    pub written: u64,
    /// Records of its topics it had nothing to write for.
    pub skipped: u64,
    /// Records sent to a dead-letter topic.
    pub dead_lettered: u64,
}

impl std::fmt::Debug for Sinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sinks").field("sinks", &self.names()).finish()
    }
}

impl Sinks {
    /// Opens the stores of the enabled sinks (running migrations and DDL), and starts each
    /// sink on its own thread in its consumer group `<app>.sink.<name>`. Metrics are
    /// registered in `registry` under `storeflow_sink_`.
    pub fn start(log: Arc<dyn Log>, codec: Arc<Codec>, config: SinksConfig, registry: &mut Registry) -> Result<Sinks> {
        Sinks::launch(log, codec, config, registry, None)
    }

    /// [`Sinks::start`] for a rebuild: every enabled sink in consumer group `group` instead
    /// of its own, not publishing the dead letters in `known` again.
    pub(crate) fn start_replay(log: Arc<dyn Log>, codec: Arc<Codec>, config: SinksConfig, group: String, known: Arc<KnownDead>) -> Result<Sinks> {
        Sinks::launch(log, codec, config, &mut Registry::default(), Some((group, known)))
    }

    fn launch(log: Arc<dyn Log>, codec: Arc<Codec>, config: SinksConfig, registry: &mut Registry, replay: Option<(String, Arc<KnownDead>)>) -> Result<Sinks> {
        config.validate()?;
        let metrics = SinkMetrics::register(registry);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("storeflow-sinks")
            .enable_all()
            .build()
            .map_err(SinkError::io("starting the sinks' runtime"))?;
        let mut sinks = Sinks {
            rt: None,
            threads: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            log: log.clone(),
            handles: Vec::new(),
            metrics: metrics.clone(),
        };
        match sinks.start_all(&rt, codec, &config, metrics, replay) {
            Ok(()) => {
                sinks.rt = Some(rt);
                Ok(sinks)
            }
            Err(e) => {
                sinks.rt = Some(rt);
                sinks.shutdown();
                Err(e)
            }
        }
    }

    fn start_all(&mut self, rt: &tokio::runtime::Runtime, codec: Arc<Codec>, config: &SinksConfig, metrics: SinkMetrics, replay: Option<(String, Arc<KnownDead>)>) -> Result<()> {
        let cx = SinkContext { data_dir: config.data_dir.clone(), base_currency: config.base_currency.clone(), rt: rt.handle().clone() };
        for (name, sink) in config.enabled() {
            // A rebuild's group is its own, read once: no static membership.
            let (group, known_dead, instance) = match &replay {
                Some((group, known)) => (group.clone(), Some(known.clone()), None),
                None => (config.group(name), None, config.instance.clone()),
            };
            let settings =
                RunnerSettings { name, group, instance, max_poll: config.max_poll, max_backoff: config.max_backoff(), write_timeout: config.write_timeout(), known_dead };
            let start = Start { cx: &cx, log: &self.log, codec: &codec, settings, metrics: metrics.clone(), stop: self.stop.clone() };
            metrics.touch(name);
            let (thread, handle) = sink.start(start)?;
            self.threads.push(thread);
            self.handles.push((name, handle));
        }
        Ok(())
    }

    /// The first running sink's failure, if one stopped with an error.
    pub fn failure(&self) -> Option<String> {
        self.threads.iter().find_map(|t| t.failure.lock().clone().map(|f| format!("the {} sink: {f}", t.name)))
    }

    /// The topics sink `name` reads (empty when it does not run).
    pub fn topics(&self, name: &str) -> Vec<String> {
        self.threads.iter().find(|t| t.name == name).map(|t| t.topics.clone()).unwrap_or_default()
    }

    /// Names of the running sinks.
    pub fn names(&self) -> Vec<&'static str> {
        self.threads.iter().map(|t| t.name).collect()
    }

    /// Each sink thread's name and liveness (for readiness probes).
    pub fn liveness(&self) -> Vec<(&'static str, storeflow_ingest::threads::Liveness)> {
        self.threads.iter().map(|t| (t.name, t.alive.clone())).collect()
    }

    /// Sink `S`'s query handle (when that sink runs).
    pub fn handle<S: Registered>(&self) -> Option<S::Handle> {
        self.handles.iter().find(|(name, _)| *name == S::NAME).and_then(|(_, h)| h.downcast_ref::<S::Handle>()).cloned()
    }

    /// The read model's query handle (when that sink runs).
    pub fn read_model(&self) -> Option<ReadModel> {
        self.handle::<ReadModelSink>()
    }

    /// Analytics' query handle (when that sink runs).
    pub fn analytics(&self) -> Option<Analytics> {
        self.handle::<AnalyticsSink>()
    }

    /// Search's query handle (when that sink runs).
    pub fn search(&self) -> Option<Search> {
        self.handle::<SearchSink>()
    }

    /// Records written, skipped and dead-lettered per running sink since start.
    pub fn counts(&self) -> BTreeMap<&'static str, SinkCounts> {
        self.threads
            .iter()
            .map(|t| {
                let l = SinkMetrics::sink(t.name);
                let c = SinkCounts {
                    written: self.metrics.written.get_or_create(&l).get(),
                    skipped: self.metrics.skipped.get_or_create(&l).get(),
                    dead_lettered: self.metrics.dlq.get_or_create(&l).get(),
                };
                (t.name, c)
            })
            .collect()
    }

    fn inputs(&self, t: &SinkThread) -> Result<Vec<(TopicPartition, u64)>> {
        let infos = self.log.describe_topics()?;
        Ok(infos
            .iter()
            .filter(|i| t.topics.contains(&i.name))
            .flat_map(|i| i.partitions.iter().map(move |p| (TopicPartition::new(&i.name, p.partition), p.end)))
            .collect())
    }

    /// Records each sink has not committed yet (per sink).
    pub fn lag(&self) -> Result<BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        for t in &self.threads {
            let ends = self.inputs(t)?;
            let tps: Vec<TopicPartition> = ends.iter().map(|(tp, _)| tp.clone()).collect();
            let committed = self.log.committed_offsets(&t.group, &tps)?;
            let starts = self.log.watermarks(&tps)?;
            let lag = ends.iter().zip(committed).zip(starts).map(|(((_, end), c), (start, _))| end.saturating_sub(c.unwrap_or(start).max(start))).sum();
            out.insert(t.name.to_string(), lag);
        }
        Ok(out)
    }

    /// Waits until every sink has committed everything its topics held when this was
    /// called; fails after `patience`, or as soon as a sink thread died.
    pub fn wait_caught_up(&self, patience: Duration) -> Result<()> {
        let deadline = Instant::now() + patience;
        let targets: Vec<(&SinkThread, Vec<(TopicPartition, u64)>)> =
            self.threads.iter().map(|t| Ok((t, self.inputs(t)?))).collect::<Result<_>>()?;
        for (t, ends) in targets {
            let tps: Vec<TopicPartition> = ends.iter().map(|(tp, _)| tp.clone()).collect();
            loop {
                if let Some(f) = t.failure.lock().clone() {
                    return Err(SinkError::Timeout(format!("the {} sink stopped: {f}", t.name)));
                }
                // A broker restarting or a group coordinator moving is no reason to give up
                // waiting: ask again until the patience runs out.
                let (committed, starts) = match (self.log.committed_offsets(&t.group, &tps), self.log.watermarks(&tps)) {
                    (Ok(c), Ok(s)) => (c, s),
                    (Err(e), _) | (_, Err(e)) => {
                        if Instant::now() >= deadline {
                            return Err(e.into());
                        }
                        tracing::warn!(sink = t.name, "reading the {} group's offsets: {e}; asking again", t.group);
                        std::thread::sleep(Duration::from_millis(500));
                        continue;
                    }
                };
                let behind: u64 = ends.iter().zip(&committed).map(|((_, end), c)| end.saturating_sub(c.unwrap_or(0))).sum();
                // Partitions whose records were all deleted by retention count as caught up.
                let behind_held: u64 = ends
                    .iter()
                    .zip(&committed)
                    .zip(starts)
                    .map(|(((_, end), c), (start, _))| end.saturating_sub(c.unwrap_or(0).max(start)))
                    .sum();
                if behind == 0 || behind_held == 0 {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(SinkError::Timeout(format!("the {} sink is still {behind_held} records behind after {patience:?}", t.name)));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in &mut self.threads {
            t.join();
        }
        if let Some(rt) = self.rt.take() {
            // Dropping a runtime inside another one panics; this works from anywhere.
            rt.shutdown_background();
        }
    }

    /// Stops every sink: each writes and commits what it buffered (unless its store is
    /// down, in which case nothing more is committed and the records are read again next
    /// time), closes its consumer and ends its thread. Returns the first sink failure.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown();
        let failures: Vec<String> = self.threads.iter().filter_map(|t| t.failure.lock().clone().map(|f| format!("{}: {f}", t.name))).collect();
        match failures.first() {
            Some(f) => Err(SinkError::Timeout(format!("a sink had stopped with an error: {f}"))),
            None => Ok(()),
        }
    }
}

impl Drop for Sinks {
    fn drop(&mut self) {
        self.shutdown();
    }
}
