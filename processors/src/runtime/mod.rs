//! The log-driven runtime: runs one processor on a [`Log`] with exactly-once semantics and
//! event-time order across processors.
//!
//! One thread per processor instance (like a Kafka Streams `StreamThread`) owns a group
//! consumer (`<app>.<name>`, co-partitioned assignment) and one **task** per assigned
//! partition number. A task has its state stores, a transactional producer
//! (`transactional.id = <app>.<name>.<partition>`, so a restarted instance fences the
//! old one), and the input offsets it has consumed.
//!
//! **Order.** Each of the processor's input groups ([`crate::Flow`]) is processed oldest
//! record first ([`align`]); a derived input (written by a processor) is released in time
//! order only below the group's frontier — the time below which no record can still arrive
//! there, derived from every task's progress on `<app>.progress` ([`progress`]); a timer
//! fires once every group has passed it. So a backfill, a restart or two instances process
//! every group in the same order as a live run, and give the same results.
//!
//! **Commits.** Every `commit_records` records or `commit_interval` (sooner when the task has
//! caught up with what it can do), each task with work commits one transaction holding,
//! together: its outputs and dead-letter records, its state changes (to the compacted
//! changelog `<app>.<name>.changelog`, partition = task), its input offsets and its
//! progress. Only after the commit are the state changes applied to the local store, with
//! the changelog offset they reach as its checkpoint. When a task starts — first start,
//! after a crash, after a rebalance moved it here — it replays the changelog from its
//! checkpoint (or from the start for an empty store) before it processes anything.
//!
//! If a commit fails the task aborts (a timeout, which leaves it unknown whether the commit
//! landed, re-creates the producer to fence it), drops its uncommitted state, rewinds its
//! inputs to the committed offsets and carries on. A fenced task is dropped and reopened:
//! another instance may own it now. Revoked partitions are committed before they are given
//! up.
//!
//! The folder, by job: `config.rs` the settings and names; `shared.rs` a task as the runtime
//! runs it and what the thread shares with its rebalance callbacks; `restore.rs` starting a
//! task; `turn.rs` one task's turn of records and timers; `commit.rs` its transaction;
//! `rewind.rs` going back to the last commit; `rebalance.rs` partitions handed over and
//! taken; `watch.rs` what is known of everyone's progress and of the inputs' ends;
//! `globals.rs` global inputs; `thread.rs` the loop that runs them; `task.rs` the
//! processor's side of a task, shared with the test driver; [`align`], [`progress`] and
//! [`topology`] the event-time order across processors.

pub mod align;
mod commit;
mod config;
mod globals;
pub mod progress;
mod rebalance;
mod restore;
mod rewind;
mod shared;
pub mod task;
mod thread;
pub mod topology;
mod turn;
mod watch;

pub use config::{Idle, RuntimeConfig, StateBackend, changelog_of, group_of};
pub use restore::restore_partition;
pub use storeflow_ingest::threads::{Liveness, LivenessGuard, panic_message};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use storeflow_avro::Codec;
use storeflow_ingest::{Log, TopicSpec};

use self::progress::progress_topic;
use self::shared::Shared;
use self::task::DynProcessor;
use self::thread::run;
use self::topology::{Node, Topology};
use crate::error::{Result, RuntimeError};
use crate::metrics::Metrics;

/// A running processor instance.
pub struct Runtime {
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
    alive: Liveness,
}

impl Runtime {
    /// Starts `processor` on `log` in its own thread.
    pub fn spawn(
        processor: Box<dyn DynProcessor>,
        log: Arc<dyn Log>,
        codec: Arc<Codec>,
        config: RuntimeConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Runtime> {
        let name = processor.name();
        let flow = processor.flow();
        flow.validate(name).map_err(RuntimeError::Setup)?;
        let inputs = flow.inputs();
        let infos = log.describe_topics()?;
        let mut counts = Vec::new();
        for t in &inputs {
            let info = infos
                .iter()
                .find(|i| &i.name == t)
                .ok_or_else(|| RuntimeError::Setup(format!("{name} reads {t}, which does not exist")))?;
            counts.push((t.clone(), info.partitions.len() as u32));
        }
        let n = counts.first().map(|c| c.1).ok_or_else(|| RuntimeError::Setup(format!("{name} reads no topic")))?;
        if counts.iter().any(|c| c.1 != n) {
            return Err(RuntimeError::Setup(format!(
                "the inputs of {name} are not co-partitioned (same key, same partition count): {counts:?}"
            )));
        }
        let globals = processor.global_inputs();
        for t in &globals {
            if !infos.iter().any(|i| &i.name == t) {
                return Err(RuntimeError::Setup(format!("{name} reads the global input {t}, which does not exist")));
            }
        }
        let topology = match &config.topology {
            Some(t) => t.clone(),
            None => Arc::new(Topology::single(Node { name: name.to_string(), flow: flow.clone(), globals: globals.clone(), tasks: n })?),
        };
        let me = topology
            .index(name)
            .ok_or_else(|| RuntimeError::Setup(format!("the topology does not include {name}")))?;
        if topology.nodes[me].flow != flow || topology.nodes[me].tasks != n {
            return Err(RuntimeError::Setup(format!("the topology's entry for {name} does not match the processor (its flow or its {n} partitions)")));
        }
        let changelog = changelog_of(&config.app, name);
        let progress = progress_topic(&config.app);
        let mut specs = vec![TopicSpec::compacted(&changelog, n), TopicSpec::compacted(&progress, 1)];
        for t in &inputs {
            specs.push(TopicSpec::new(&storeflow_avro::dlq_topic(t), 1));
        }
        log.create_topics(&specs)?;
        let shared = Arc::new(Shared {
            name,
            log,
            config,
            metrics,
            changelog,
            progress,
            topology,
            me,
            flow: Arc::new(flow),
            globals,
            tasks: Mutex::new(BTreeMap::new()),
            unopened: Mutex::new(Default::default()),
            revoked: Mutex::new(Vec::new()),
            crashed: AtomicBool::new(false),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let alive = Liveness::starting();
        let thread = {
            let (shared, stop, guard) = (shared.clone(), stop.clone(), alive.guard());
            std::thread::Builder::new()
                .name(format!("processor-{name}"))
                .spawn(move || {
                    let _alive = guard;
                    let result = run(processor, shared, codec, stop);
                    if let Err(e) = &result {
                        tracing::error!(processor = name, error = %e, "the processor thread stopped with an error");
                    }
                    result
                })
                .map_err(|e| RuntimeError::Setup(format!("starting the {name} thread: {e}")))?
        };
        Ok(Runtime { shared, stop, thread: Some(thread), alive })
    }

    /// The processor's name.
    pub fn name(&self) -> &'static str {
        self.shared.name
    }

    /// Whether its thread still runs, for a readiness probe.
    pub fn liveness(&self) -> Liveness {
        self.alive.clone()
    }

    /// True while the thread runs.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Commits, hands partitions back and stops.
    pub fn stop(mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        self.join()
    }

    /// Stops at once without committing anything — what a crash looks like to the group
    /// (tests use it; the uncommitted work is redone by the next owner).
    pub fn crash(mut self) -> Result<()> {
        self.shared.crashed.store(true, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
        self.join()
    }

    fn join(&mut self) -> Result<()> {
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| RuntimeError::Setup(format!("the {} thread panicked", self.shared.name)))?,
            None => Ok(()),
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.join();
    }
}
