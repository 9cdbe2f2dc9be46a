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

pub mod align;
pub mod progress;
pub mod task;
pub mod topology;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use storeflow_avro::{Codec, Timestamp};
use storeflow_ingest::{
    Consumer, ConsumerConfig, GroupMetadata, Log, LogError, OffsetCommitter, OffsetReset, ProduceRecord,
    RebalanceListener, Record, TopicPartition, TopicSpec, TransactionalProducer,
};

use self::align::{GroupState, GroupView, MemberView, step_of_record};
use self::progress::{Board, Coverage, TaskProgress, progress_topic, task_key};
use self::task::{DynProcessor, Outcome, Step, TaskCore, dlq_record};
use self::topology::{Node, Topology};
use crate::error::{Result, RuntimeError};
use crate::flow::Flow;
use crate::metrics::{Metrics, PartitionLabels};
use crate::state::backend::{Changes, KvBackend, MemBackend, RedbBackend};
use crate::state::encoding::{decode_value, encode_value, full_key};
use crate::state::store::sweep_expired;
use crate::state::task_state::TaskState;
use crate::state::timers::remove_timer;

/// Where task state lives.
#[derive(Clone, Debug)]
pub enum StateBackend {
    /// In memory: every task restores from its changelog when it starts.
    Memory,
    /// One redb file per task under this directory (`<dir>/<processor>/<partition>.redb`).
    Redb(PathBuf),
}

/// How the runtime runs.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// The application id: prefix of consumer groups (`<app>.<processor>`), changelogs
    /// (`<app>.<processor>.changelog`), the progress topic (`<app>.progress`) and
    /// transactional ids. Two deployments on one Kafka cluster need different ones.
    pub app: String,
    /// Commit after this many records (per instance)…
    pub commit_records: u64,
    /// …or this much time, whichever comes first.
    pub commit_interval: Duration,
    /// Where state lives.
    pub state: StateBackend,
    /// Records per poll.
    pub max_poll: usize,
    /// What a quiet input means: live, time goes on (stream time follows the wall clock, so
    /// payment timeouts fire in quiet periods); for a bounded replay, the input is over.
    pub idle: Idle,
    /// Longest wait between retries of a record that failed transiently.
    pub max_backoff: Duration,
    /// A stable name for this instance. On Kafka it becomes the static group membership id
    /// (`group.instance.id`, KIP-345), so a restarted instance takes its partitions straight
    /// back instead of waiting out the session timeout.
    pub instance: Option<String>,
    /// Extra consumer properties (librdkafka names on Kafka).
    pub consumer_properties: Vec<(String, String)>,
    /// How long a group waits for a source input that has nothing buffered and nothing to
    /// fetch before it goes on without it (Kafka Streams' `max.task.idle.ms`). An input with
    /// records still to fetch is always waited for; one whose producer declared its
    /// progress is waited for exactly as far as that.
    pub max_task_idle: Duration,
    /// How much later than their cause records on a feedback edge are stamped (ms of event
    /// time): how far the two sides of a cycle (orders ⇄ inventory) may work ahead of each
    /// other. Part of the results: two runs must use the same value to agree.
    pub lookahead_ms: i64,
    /// How far ahead of the wall clock a source record may be dated: one past it is
    /// dead-lettered instead of moving stream time (`[time]`).
    pub time: storeflow_avro::TimeBounds,
    /// Every processor of the deployment, for progress across them; `None`: this
    /// processor alone (its derived inputs, if any, have no known writer).
    pub topology: Option<Arc<Topology>>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            app: "storeflow".to_string(),
            commit_records: 100_000,
            commit_interval: Duration::from_millis(100),
            state: StateBackend::Memory,
            max_poll: 5_000,
            idle: Idle::WallClock,
            max_backoff: Duration::from_secs(5),
            instance: None,
            consumer_properties: Vec::new(),
            max_task_idle: Duration::from_millis(100),
            lookahead_ms: 500,
            time: storeflow_avro::TimeBounds::default(),
            topology: None,
        }
    }
}

/// What an input that is caught up and quiet for `max_task_idle` means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Idle {
    /// Live: time goes on. An idle source's stream time follows the wall clock, so timers
    /// fire in quiet periods — the one wall-clock input to processing.
    #[default]
    WallClock,
    /// A bounded replay: once every source of a group is idle its input is over, and stream
    /// time goes to the end, firing every timer left (Flink's end of input). Results then
    /// depend on the log alone — what reproducibility tests and backfills of a finished log
    /// use.
    EndOfInput,
}

/// The consumer group of a processor.
pub fn group_of(app: &str, name: &str) -> String {
    format!("{app}.{name}")
}

/// The changelog topic of a processor.
pub fn changelog_of(app: &str, name: &str) -> String {
    format!("{app}.{name}.changelog")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The runtime's own entries in a task's state (changelogged like the processor's).
const META: &str = "__meta";

/// How often a task commits when it has only progress to publish.
const PROGRESS_ONLY_EVERY: Duration = Duration::from_millis(50);

/// One task's input group layout: for each input partition, its group and member.
fn layout(flow: &Flow, topology: &Topology, globals: &[String], p: u32) -> (Vec<GroupState>, HashMap<TopicPartition, (usize, usize)>) {
    let mut groups = Vec::new();
    let mut routes = HashMap::new();
    for (g, group) in flow.groups.iter().enumerate() {
        let inputs: Vec<(TopicPartition, bool)> = group.inputs.iter().map(|t| (TopicPartition::new(t, p), topology.is_derived(t))).collect();
        for (m, (tp, _)) in inputs.iter().enumerate() {
            routes.insert(tp.clone(), (g, m));
        }
        groups.push(GroupState::new(inputs, g == 0 && !globals.is_empty()));
    }
    (groups, routes)
}

struct RtTask {
    core: TaskCore,
    txn: Box<dyn TransactionalProducer>,
    groups: Vec<GroupState>,
    routes: HashMap<TopicPartition, (usize, usize)>,
    /// Next offset per source input partition (all before it processed), not yet committed.
    offsets: BTreeMap<TopicPartition, u64>,
    /// Derived input partitions: offsets processed, out of offset order, above the
    /// committed one (skipped when re-read after a restart).
    skip: BTreeMap<TopicPartition, BTreeSet<u64>>,
    /// The skip sets as last committed (restored when a commit fails).
    committed_skip: BTreeMap<TopicPartition, BTreeSet<u64>>,
    /// Stream times as last committed.
    committed_streams: Vec<i64>,
    /// What it last published on the progress topic.
    published: Option<TaskProgress>,
    /// When each input partition last delivered a record (for idleness).
    last_fetch: HashMap<TopicPartition, Instant>,
    /// The offset after the last record fetched per input partition (from the committed
    /// one after a rewind).
    fetched_to: HashMap<TopicPartition, u64>,
    /// Its recent commits on derived topics that processors read: topic → partition →
    /// (offset after the commit, lowest time written), as last committed.
    emitted: BTreeMap<String, BTreeMap<u32, Vec<(u64, i64)>>>,
    /// After a restart: what the last commit said it had fetched of its derived inputs and
    /// had pending, until it has fetched that far again (see [`Held`]).
    refetch: Option<Held>,
    /// What the state holds as `held` (as last written).
    held_saved: Option<Held>,
    last_commit: Instant,
    /// Something was processed since the last commit.
    worked: bool,
    /// Since when records have waited without a step, and when that was last reported.
    stuck: Option<(Instant, Instant)>,
    /// Buffered source records dated past the wall clock + `max_skew`: their time and the
    /// reason. They are buffered at the lowest time (so they move no stream time) and
    /// dead-lettered when their turn comes, in offset order.
    refused: HashMap<(TopicPartition, u64), (i64, String)>,
}

/// What a commit's progress said of a task's derived inputs: how far it had fetched them
/// and what it had pending per slot. Readers upstream forget their commits below what it
/// had fetched, but its buffered records between its committed offsets and that point are
/// lost with a crash; until it has fetched them again it publishes (and uses) these, so no
/// frontier passes the records it is about to read again.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct Held {
    fetched: BTreeMap<String, u64>,
    pending: Vec<i64>,
}

impl RtTask {
    fn streams(&self) -> Vec<i64> {
        self.groups.iter().map(|g| g.stream).collect()
    }
}

/// What the consumer thread and its rebalance callbacks share.
struct Shared {
    name: &'static str,
    log: Arc<dyn Log>,
    config: RuntimeConfig,
    metrics: Arc<Metrics>,
    changelog: String,
    progress: String,
    topology: Arc<Topology>,
    /// This processor's index in the topology.
    me: usize,
    flow: Arc<Flow>,
    globals: Vec<String>,
    tasks: Mutex<BTreeMap<u32, RtTask>>,
    /// Assigned partitions without a running task, with the earliest moment to (re)open it:
    /// a task that could not start, lost its producer to a fence, or could not rewind.
    unopened: Mutex<BTreeMap<u32, Instant>>,
    /// Partitions revoked since the loop last looked (their coverage is forgotten).
    revoked: Mutex<Vec<u32>>,
    /// Set to simulate a crash in tests: stop without committing anything.
    crashed: AtomicBool,
}

impl Shared {
    fn group(&self) -> String {
        group_of(&self.config.app, self.name)
    }

    fn tid(&self, p: u32) -> String {
        format!("{}.{p}", self.group())
    }

    fn backend(&self, p: u32) -> Result<Box<dyn KvBackend>> {
        Ok(match &self.config.state {
            StateBackend::Memory => Box::new(MemBackend::default()),
            StateBackend::Redb(dir) => Box::new(RedbBackend::open(&dir.join(self.name).join(format!("{p}.redb")))?),
        })
    }

    /// Opens task `p`: its store, restored from the changelog, its transactional producer,
    /// its stream times and skip sets as last committed.
    fn open_task(&self, p: u32) -> Result<RtTask> {
        let mut state = TaskState::new(self.backend(p)?);
        self.restore(p, state.backend())?;
        let mut txn = self.log.transactional_producer(&self.tid(p))?;
        txn.begin()?;
        let (mut groups, routes) = layout(&self.flow, &self.topology, &self.globals, p);
        let streams: Vec<i64> = match state.get(&full_key(META, "streams"))? {
            Some(b) => decode_value(&b)?,
            None => vec![],
        };
        for (g, s) in groups.iter_mut().zip(streams.iter()) {
            g.stream = *s;
        }
        let mut skip = BTreeMap::new();
        for tp in routes.keys().filter(|tp| self.topology.is_derived(&tp.topic)) {
            if let Some(b) = state.get(&full_key(META, &format!("skip|{}|{}", tp.topic, tp.partition)))? {
                let offsets: Vec<u64> = decode_value(&b)?;
                skip.insert(tp.clone(), offsets.into_iter().collect::<BTreeSet<u64>>());
            }
        }
        let mut emitted: BTreeMap<String, BTreeMap<u32, Vec<(u64, i64)>>> = match state.get(&full_key(META, "emitted"))? {
            Some(b) => decode_value(&b)?,
            None => BTreeMap::new(),
        };
        // The commit that was last recorded had offsets not known yet: everything written
        // by then is below today's ends.
        let unknown: Vec<TopicPartition> = emitted
            .iter()
            .flat_map(|(t, per)| per.iter().filter(|(_, c)| c.iter().any(|(end, _)| *end == u64::MAX)).map(move |(x, _)| TopicPartition::new(t, *x)))
            .collect();
        if !unknown.is_empty() {
            let marks = self.log.watermarks(&unknown)?;
            for (tp, (_, end)) in unknown.iter().zip(marks) {
                if let Some(c) = emitted.get_mut(&*tp.topic).and_then(|per| per.get_mut(&tp.partition)) {
                    for e in c.iter_mut().filter(|(e, _)| *e == u64::MAX) {
                        e.0 = end;
                    }
                }
            }
        }
        let refetch: Option<Held> = match state.get(&full_key(META, "held"))? {
            Some(b) => Some(decode_value(&b)?),
            None => None,
        };
        // Where the consumer resumes each input: its committed offset (or the log's start).
        // Until a record arrives that is how far the task has fetched; a consumer's own
        // position is unknown before its first record, and an input that gets none after a
        // restart (a payments partition nobody pays into yet) must still count as caught up.
        let tps: Vec<TopicPartition> = routes.keys().cloned().collect();
        let committed = self.log.committed_offsets(&self.group(), &tps)?;
        let marks = self.log.watermarks(&tps)?;
        let fetched_to: HashMap<TopicPartition, u64> =
            tps.into_iter().zip(committed).zip(marks).map(|((tp, c), (start, _))| (tp, c.map_or(start, |c| c.max(start)))).collect();
        tracing::info!(processor = self.name, partition = p, "task started");
        let now = Instant::now();
        Ok(RtTask {
            core: TaskCore::new(p, state, self.flow.clone(), self.config.lookahead_ms),
            txn,
            committed_streams: groups.iter().map(|g| g.stream).collect(),
            last_fetch: routes.keys().map(|tp| (tp.clone(), now)).collect(),
            fetched_to,
            emitted,
            held_saved: refetch.clone(),
            refetch,
            groups,
            routes,
            offsets: BTreeMap::new(),
            committed_skip: skip.clone(),
            skip,
            published: None,
            last_commit: now - Duration::from_secs(3600),
            worked: false,
            stuck: None,
            refused: HashMap::new(),
        })
    }

    /// Replays the changelog partition of task `p` into `backend`, from its checkpoint.
    fn restore(&self, p: u32, backend: &mut dyn KvBackend) -> Result<u64> {
        let tp = TopicPartition::new(&self.changelog, p);
        let label = Metrics::label(self.name);
        let started = Instant::now();
        let restored = restore_partition(&*self.log, &tp, backend, &format!("{}.restore", self.group()), &mut |n, left| {
            self.metrics.restored.get_or_create(&label).inc_by(n);
            self.metrics.restore_remaining.get_or_create(&label).set(left as i64);
        })?;
        if restored > 0 {
            let secs = started.elapsed().as_secs_f64();
            tracing::info!(processor = self.name, partition = p, restored, secs, rate = restored as f64 / secs.max(1e-9), "state restored from the changelog");
        }
        Ok(restored)
    }

    /// Writes the runtime's own entries (stream times, skip sets) into the task's state, so
    /// they commit with it. A commit of progress alone (`progress_only`: nothing processed,
    /// nothing to write) leaves the stream times out, so an idle task writes nothing to its
    /// changelog while wall-clock idleness moves its time on.
    fn save_meta(&self, t: &mut RtTask, progress: &TaskProgress, progress_only: bool) -> Result<()> {
        if progress.emitted != t.emitted {
            t.core.state.put(full_key(META, "emitted"), encode_value(&progress.emitted, None)?);
        }
        if !progress.fetched.is_empty() {
            // Only when a restart would otherwise trust less than it may: what it has fetched
            // moved, or something pending went lower.
            let stale = t.held_saved.as_ref().is_none_or(|h| {
                h.fetched != progress.fetched
                    || progress.pending.iter().enumerate().any(|(i, p)| h.pending.get(i).is_none_or(|old| p < old))
            });
            if stale {
                let held = Held { fetched: progress.fetched.clone(), pending: progress.pending.clone() };
                t.core.state.put(full_key(META, "held"), encode_value(&held, None)?);
                t.held_saved = Some(held);
            }
        }
        let streams = t.streams();
        if !progress_only && streams != t.committed_streams {
            t.core.state.put(full_key(META, "streams"), encode_value(&streams, None)?);
        }
        for (tp, set) in &t.skip {
            if t.committed_skip.get(tp) != Some(set) {
                let k = full_key(META, &format!("skip|{}|{}", tp.topic, tp.partition));
                if set.is_empty() {
                    t.core.state.delete(k);
                } else {
                    t.core.state.put(k, encode_value(&set.iter().copied().collect::<Vec<u64>>(), None)?);
                }
            }
        }
        t.core.state.accept();
        Ok(())
    }

    /// Commits one task's transaction: outputs, state, offsets and `progress`. On failure
    /// the task's uncommitted work is dropped (the caller rewinds it); the error is returned.
    fn commit_task(&self, t: &mut RtTask, group: &GroupMetadata, progress: &TaskProgress) -> std::result::Result<bool, LogError> {
        let changed = t.published.as_ref() != Some(progress);
        let progress_only = t.core.pending.is_empty() && !t.core.state.dirty() && t.offsets.is_empty();
        if progress_only && !changed {
            return Ok(false);
        }
        // Progress alone (an idle task's time moving on) is published at most this often.
        if progress_only && t.last_commit.elapsed() < PROGRESS_ONLY_EVERY {
            return Ok(false);
        }
        // Expired state goes at the earliest stream time of the task's groups.
        let now = t.groups.iter().map(|g| g.stream).min().unwrap_or(i64::MIN);
        if now > i64::MIN {
            t.core.state.stream_time = now;
            if let Err(e) = sweep_expired(&mut t.core.state) {
                return Err(LogError::Transaction(format!("sweeping expired state: {e}")));
            }
            t.core.state.accept();
        }
        if let Err(e) = self.save_meta(t, progress, progress_only) {
            return Err(LogError::Transaction(format!("writing the task's stream times: {e}")));
        }
        let started = Instant::now();
        let p = t.core.partition;
        let outputs = t.core.pending.len() as u64;
        let result = (|| {
            for rec in t.core.pending.drain(..) {
                t.txn.send(rec)?;
            }
            for (k, v) in t.core.state.accepted() {
                t.txn.send(ProduceRecord {
                    topic: self.changelog.clone(),
                    partition: Some(p),
                    key: Some(k.clone()),
                    value: v.clone(),
                    headers: vec![],
                    timestamp: None,
                })?;
            }
            t.txn.send(ProduceRecord {
                topic: self.progress.clone(),
                partition: Some(0),
                key: Some(task_key(self.name, p).into_bytes()),
                value: Some(serde_json::to_vec(progress).map_err(|e| LogError::Transaction(e.to_string()))?),
                headers: vec![],
                timestamp: None,
            })?;
            let offsets: Vec<(TopicPartition, u64)> = t.offsets.iter().map(|(tp, o)| (tp.clone(), *o)).collect();
            if !offsets.is_empty() {
                t.txn.send_offsets(&offsets, group)?;
            }
            t.txn.commit()
        })();
        match result {
            Ok(ends) => {
                let changelog_tp = TopicPartition::new(&self.changelog, p);
                let checkpoint = match ends.iter().find(|(tp, _)| *tp == changelog_tp) {
                    Some((_, end)) => *end,
                    None => t.core.state.backend().checkpoint().ok().flatten().unwrap_or(0),
                };
                if let Err(e) = t.core.state.apply_committed(checkpoint) {
                    // The changelog has it; the next start replays it.
                    tracing::error!(processor = self.name, partition = p, error = %e, "applying committed state locally failed");
                }
                t.offsets.clear();
                if !progress_only {
                    t.committed_streams = t.streams();
                }
                t.committed_skip = t.skip.clone();
                t.published = Some(progress.clone());
                let mut emitted = progress.emitted.clone();
                for (topic, per) in emitted.iter_mut() {
                    for (x, commits) in per.iter_mut() {
                        let end = ends.iter().find(|(tp, _)| &*tp.topic == topic && tp.partition == *x).map(|(_, e)| *e);
                        for c in commits.iter_mut().filter(|(e, _)| *e == u64::MAX) {
                            // A partition the commit did not reach has nothing of it.
                            c.0 = end.unwrap_or(0);
                        }
                    }
                }
                t.emitted = emitted;
                t.last_commit = Instant::now();
                t.worked = false;
                let label = Metrics::label(self.name);
                self.metrics.records_out.get_or_create(&label).inc_by(outputs.saturating_sub(t.core.dead_lettered));
                self.metrics.dlq.get_or_create(&label).inc_by(t.core.dead_lettered);
                self.metrics.records_in.get_or_create(&label).inc_by(t.core.handled);
                t.core.handled = 0;
                t.core.dead_lettered = 0;
                self.metrics.commit_seconds.get_or_create(&label).observe(started.elapsed().as_secs_f64());
                t.txn.begin()?;
                Ok(true)
            }
            Err(e) => {
                self.discard(t);
                Err(e)
            }
        }
    }

    /// Forgets everything a task did since its last commit (its inputs must be rewound).
    fn discard(&self, t: &mut RtTask) {
        t.core.pending.clear();
        t.core.state.discard();
        t.core.handled = 0;
        t.core.dead_lettered = 0;
        t.offsets.clear();
        for (g, s) in t.groups.iter_mut().zip(t.committed_streams.iter()) {
            g.stream = *s;
            g.clear();
        }
        t.refused.clear();
        t.skip = t.committed_skip.clone();
        // The failed commit may not have written its `held`: write it again with the next.
        t.held_saved = None;
        t.worked = false;
    }

    /// After a failed commit: abort, or re-create the producer when the outcome is unknown.
    fn recover_producer(&self, t: &mut RtTask, err: &LogError) -> std::result::Result<(), LogError> {
        let indefinite = matches!(err, LogError::Timeout(_)) || matches!(err, LogError::Kafka { retriable: true, .. });
        if indefinite || t.txn.abort().is_err() {
            // We do not know whether the commit reached the coordinator: fence this producer
            // with a new epoch rather than let a late EndTxn land on a later transaction.
            t.txn = self.log.transactional_producer(&self.tid(t.core.partition))?;
        }
        t.txn.begin()
    }
}

/// Replays changelog partition `tp` into `backend` from its checkpoint to the end (or from
/// the start, wiping it, when it has no usable checkpoint). `progress(records, remaining)`
/// hears about each applied batch. Returns the records replayed.
pub fn restore_partition(
    log: &dyn Log,
    tp: &TopicPartition,
    backend: &mut dyn KvBackend,
    group: &str,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64> {
    let (start, end) = log.watermarks(std::slice::from_ref(tp))?[0];
    let from = match backend.checkpoint()? {
        Some(c) if c >= start && c <= end => c,
        Some(c) => {
            tracing::warn!(changelog = %tp, checkpoint = c, start, end, "local state does not match the changelog; rebuilding it");
            backend.wipe()?;
            start
        }
        None => {
            backend.wipe()?;
            start
        }
    };
    if from >= end {
        return Ok(0);
    }
    let mut cfg = ConsumerConfig::new(group);
    cfg.reset = OffsetReset::Earliest;
    // One partition read as fast as it comes: bigger fetches than a live consumer's.
    cfg.properties = vec![
        ("max.partition.fetch.bytes".into(), (16 << 20).to_string()),
        ("fetch.max.bytes".into(), (64 << 20).to_string()),
        ("queued.max.messages.kbytes".into(), (256 << 10).to_string()),
    ];
    let mut c = log.consumer(cfg, None)?;
    c.assign(&[(tp.clone(), from)])?;
    let mut restored = 0u64;
    let mut pos = from;
    let mut idle_since = Instant::now();
    while pos < end {
        let recs = c.poll(50_000, Duration::from_millis(100))?;
        if recs.is_empty() {
            // Kafka ends a transaction with a marker that takes an offset but is never
            // returned: the consumer's position moves past it.
            pos = pos.max(c.position(tp).unwrap_or(pos));
            if pos < end && idle_since.elapsed() > Duration::from_secs(10) {
                tracing::warn!(changelog = %tp, pos, end, "changelog restore stalled before the end; continuing with what was read");
                break;
            }
            continue;
        }
        idle_since = Instant::now();
        let mut changes = Changes::new();
        for r in &recs {
            if let Some(k) = &r.key {
                changes.insert(k.to_vec(), r.value.as_ref().map(|v| v.to_vec()));
            }
            pos = r.offset + 1;
        }
        backend.apply(&changes, pos)?;
        restored += recs.len() as u64;
        progress(recs.len() as u64, end.saturating_sub(pos));
    }
    backend.apply(&Changes::new(), end.max(pos))?;
    progress(0, 0);
    c.close()?;
    Ok(restored)
}

/// Turns revocations and assignments into task commits, closes and opens.
struct Listener(Arc<Shared>);

impl RebalanceListener for Listener {
    fn on_revoked(&mut self, partitions: &[TopicPartition], committer: &mut dyn OffsetCommitter) {
        let s = &self.0;
        if s.crashed.load(Ordering::Relaxed) {
            return;
        }
        let numbers: BTreeSet<u32> = partitions.iter().map(|tp| tp.partition).collect();
        let group = committer.group_metadata();
        let mut tasks = s.tasks.lock();
        for p in numbers {
            let Some(mut t) = tasks.remove(&p) else { continue };
            if let Some(g) = &group {
                // What it last published stands (the next owner starts from the same committed
                // state), plus the outputs this last commit carries.
                let mut progress = t.published.clone().unwrap_or_default();
                for rec in &t.core.pending {
                    let Some(n) = s.topology.partitions_of(&rec.topic) else { continue };
                    let x = rec.partition.unwrap_or_else(|| rec.key.as_deref().map(|k| storeflow_ingest::partitioner::partition_for_key(k, n)).unwrap_or(0));
                    progress.emitted.entry(rec.topic.clone()).or_default().entry(x).or_default().push((u64::MAX, rec.timestamp.unwrap_or(i64::MIN)));
                }
                if let Err(e) = s.commit_task(&mut t, g, &progress) {
                    tracing::warn!(processor = s.name, partition = p, error = %e, "commit on revocation failed; the next owner resumes from the last commit");
                }
            }
            let _ = t.txn.abort();
            s.revoked.lock().push(p);
            tracing::info!(processor = s.name, partition = p, "task handed over");
        }
        let mut unopened = s.unopened.lock();
        for tp in partitions {
            unopened.remove(&tp.partition);
        }
    }

    fn on_assigned(&mut self, partitions: &[TopicPartition]) {
        let s = &self.0;
        let numbers: BTreeSet<u32> = partitions.iter().map(|tp| tp.partition).collect();
        let mut tasks = s.tasks.lock();
        for p in numbers {
            if tasks.contains_key(&p) {
                continue;
            }
            match s.open_task(p) {
                Ok(t) => {
                    tasks.insert(p, t);
                    s.unopened.lock().remove(&p);
                }
                Err(e) => {
                    tracing::error!(processor = s.name, partition = p, error = %e, "could not start a task; retrying, its records wait");
                    s.unopened.lock().insert(p, Instant::now() + Duration::from_secs(1));
                }
            }
        }
    }
}

pub use storeflow_ingest::threads::{Liveness, LivenessGuard, panic_message};

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

/// What the loop knows of everyone's progress.
struct Watch {
    board: Board,
    coverage: Coverage,
    consumer: Box<dyn Consumer>,
    last_snapshot: Instant,
    /// A transaction marker may sit at a partition's end, never returned (Kafka): positions
    /// within this many offsets of the end count as fetched.
    slack: u64,
}

impl Watch {
    fn poll(&mut self, topology: &Topology) -> Result<()> {
        loop {
            let recs = self.consumer.poll(10_000, Duration::ZERO)?;
            if recs.is_empty() {
                return Ok(());
            }
            for r in recs {
                if let Some(k) = &r.key {
                    self.board.apply(topology, k, r.value.as_deref());
                }
            }
        }
    }
}

/// What a task reports after a turn of the loop.
struct Turn {
    /// Steps taken.
    steps: u64,
    /// Records buffered but not processable yet.
    waiting: bool,
    /// Its progress now.
    progress: TaskProgress,
}

fn run(mut processor: Box<dyn DynProcessor>, shared: Arc<Shared>, codec: Arc<Codec>, stop: Arc<AtomicBool>) -> Result<()> {
    let name = shared.name;
    let inputs = shared.flow.inputs();
    let mut cfg = ConsumerConfig::new(&shared.group());
    cfg.reset = OffsetReset::Earliest;
    cfg.read_committed = true;
    cfg.co_partitioned = true;
    cfg.properties = shared.config.consumer_properties.clone();
    if let Some(instance) = &shared.config.instance {
        cfg.properties.push(("group.instance.id".into(), format!("{}.{instance}", shared.group())));
    }
    let mut globals = GlobalReader::start(&shared, &*processor)?;
    globals.catch_up(&mut *processor, &codec, Duration::from_secs(60))?;
    let mut watch = {
        let mut pc = ConsumerConfig::new(&format!("{}.progress", shared.group()));
        pc.reset = OffsetReset::Earliest;
        pc.read_committed = true;
        let mut consumer = shared.log.consumer(pc, None)?;
        let tp = TopicPartition::new(&shared.progress, 0);
        let start = shared.log.watermarks(std::slice::from_ref(&tp))?[0].0;
        consumer.assign(&[(tp, start)])?;
        Watch {
            board: Board::new(&shared.topology),
            coverage: Coverage::default(),
            consumer,
            last_snapshot: Instant::now() - Duration::from_secs(1),
            slack: u64::from(shared.log.backend() == "kafka"),
        }
    };
    let mut consumer = shared.log.consumer(cfg, Some(Box::new(Listener(shared.clone()))))?;
    consumer.subscribe(&inputs.iter().map(String::as_str).collect::<Vec<_>>())?;
    let sources: Vec<String> = inputs.iter().filter(|t| !shared.topology.is_derived(t)).cloned().collect();
    let mut since_commit = 0u64;
    let ends = EndCache::new(shared.log.clone(), watch.slack);
    let mut last_lag = Instant::now() - Duration::from_secs(60);
    let mut waiting = false;
    let mut last_silent_warning = Instant::now();
    let result = (|| -> Result<()> {
        while !stop.load(Ordering::Relaxed) {
            // A failing poll is transient (a broker restarting, a rebalance in flight): the
            // thread waits and polls again rather than dying with its partitions assigned.
            if let Err(e) = globals.poll(&mut *processor, &codec) {
                tracing::warn!(processor = name, error = %e, "reading the global inputs failed; retrying");
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            if let Err(e) = watch.poll(&shared.topology) {
                tracing::warn!(processor = name, error = %e, "reading the progress topic failed; retrying");
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            let timeout = if waiting { Duration::from_millis(2) } else { Duration::from_millis(100) };
            let records = match consumer.poll(shared.config.max_poll, timeout) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(processor = name, error = %e, "polling the inputs failed; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                }
            };
            if shared.crashed.load(Ordering::Relaxed) {
                return Ok(());
            }
            for p in std::mem::take(&mut *shared.revoked.lock()) {
                watch.coverage.forget(p);
            }
            reopen_due(&shared, &mut *consumer, &inputs);
            let mut rewind: Vec<u32> = Vec::new();
            let mut fenced: Vec<u32> = Vec::new();
            {
                let mut tasks = shared.tasks.lock();
                let now = Instant::now();
                let wall = now_ms();
                for mut rec in records {
                    let Some(t) = tasks.get_mut(&rec.partition) else { continue };
                    let tp = rec.tp();
                    if t.skip.get(&tp).is_some_and(|s| s.contains(&rec.offset)) {
                        continue; // processed before the last commit, out of offset order
                    }
                    let Some(&(g, m)) = t.routes.get(&tp) else { continue };
                    t.fetched_to.insert(tp.clone(), rec.offset + 1);
                    t.last_fetch.insert(tp.clone(), now);
                    if !shared.topology.is_derived(&tp.topic)
                        && let Err(why) = shared.config.time.check_ahead(Timestamp(rec.timestamp), Timestamp(wall))
                    {
                        t.refused.insert((tp, rec.offset), (rec.timestamp, format!("event time {why}: it would move stream time ahead and fire deadlines early")));
                        rec.timestamp = i64::MIN;
                    }
                    t.groups[g].push(m, rec);
                }
                cover(&shared, &mut watch, &tasks, &mut *consumer, &sources, wall);
                let globals_before = globals.complete_before(&shared, &watch.board, wall);
                waiting = false;
                let mut turns: BTreeMap<u32, Turn> = BTreeMap::new();
                for (p, t) in tasks.iter_mut() {
                    let turn = match run_task(&mut *processor, t, &shared, &codec, &watch, &ends, &*consumer, wall, globals_before, &stop) {
                        Some(turn) => turn,
                        None => return Ok(()), // asked to stop while retrying a record
                    };
                    since_commit += turn.steps;
                    waiting |= turn.waiting;
                    turns.insert(*p, turn);
                }
                if last_silent_warning.elapsed() > Duration::from_secs(10) && waiting {
                    last_silent_warning = Instant::now();
                    for (q, node) in shared.topology.nodes.iter().enumerate() {
                        let silent = watch.board.silent(q);
                        if !silent.is_empty() && q != shared.me {
                            tracing::warn!(processor = name, waits_for = %node.name, partitions = ?silent, "records wait for a processor whose tasks have not reported progress (is it running?)");
                        }
                    }
                }
                let buffered: usize = tasks.values().map(|t| t.groups.iter().map(GroupState::buffered).sum::<usize>()).sum();
                shared.metrics.buffered.get_or_create(&Metrics::label(name)).set(buffered as i64);
                let due = since_commit >= shared.config.commit_records;
                let due_tasks: Vec<u32> = tasks
                    .iter()
                    .filter(|(p, t)| {
                        let turn = &turns[*p];
                        let elapsed = t.last_commit.elapsed();
                        t.published.is_none()
                            || ((due || elapsed >= shared.config.commit_interval)
                                && (t.worked || t.published.as_ref() != Some(&turn.progress) || t.streams() != t.committed_streams))
                            || (t.worked && turn.steps == 0 && elapsed >= Duration::from_millis(1))
                    })
                    .map(|(p, _)| *p)
                    .collect();
                if !due_tasks.is_empty() {
                    if let Some(group) = consumer.group_metadata() {
                        for p in &due_tasks {
                            if let Some(t) = tasks.get_mut(p) {
                                prepare_offsets(t, &*consumer);
                            }
                        }
                        let results = commit_many(&shared, &mut tasks, &due_tasks, &turns, &group);
                        for (p, result) in results {
                            let Some(t) = tasks.get_mut(&p) else { continue };
                            if let Err(e) = result {
                                tracing::warn!(processor = name, partition = p, error = %e, "commit failed; rewinding the task to its last commit");
                                if matches!(e, LogError::Fenced(_)) {
                                    fenced.push(p);
                                } else {
                                    if let Err(e) = shared.recover_producer(t, &e) {
                                        tracing::error!(processor = name, partition = p, error = %e, "could not re-create the producer");
                                    }
                                    rewind.push(p);
                                }
                            }
                        }
                        if due {
                            since_commit = 0;
                        }
                    }
                }
                for p in &fenced {
                    // Another producer took this task's transactional id. If another instance
                    // owns the partition now, the group revokes it from us at the next
                    // rebalance; if that producer was a zombie, the partition is still ours:
                    // reopen the task (restore, new epoch, rewind) after a pause, rather than
                    // leave an assigned partition unprocessed for good.
                    tracing::warn!(processor = name, partition = p, "fenced by another producer; reopening the task in 5 s unless the partition is revoked");
                    tasks.remove(p);
                    shared.unopened.lock().insert(*p, Instant::now() + Duration::from_secs(5));
                }
            }
            for p in rewind {
                reopen_on_rewind_failure(&shared, &mut *consumer, &inputs, p);
            }
            if last_lag.elapsed() > Duration::from_secs(5) {
                last_lag = Instant::now();
                report_lag(&shared, &*consumer);
            }
        }
        // Clean stop: commit what was done.
        if let Some(group) = consumer.group_metadata() {
            let mut tasks = shared.tasks.lock();
            for (p, t) in tasks.iter_mut() {
                prepare_offsets(t, &*consumer);
                let progress = own_progress(t, &shared, &watch, &ends, &*consumer, now_ms(), i64::MAX);
                if let Err(e) = shared.commit_task(t, &group, &progress) {
                    tracing::warn!(processor = name, partition = p, error = %e, "final commit failed");
                }
            }
        }
        Ok(())
    })();
    if shared.crashed.load(Ordering::Relaxed) {
        // Leave like a dead process: no commit, no hand-over; drop the transactions.
        shared.tasks.lock().clear();
        drop(consumer);
        return result;
    }
    consumer.close()?;
    let _ = watch.consumer.close();
    result
}

/// Commits `due` tasks, in parallel when there are several (each has its own transactional
/// producer, and a Kafka commit is a round trip to the transaction coordinator).
fn commit_many(
    shared: &Shared,
    tasks: &mut BTreeMap<u32, RtTask>,
    due: &[u32],
    turns: &BTreeMap<u32, Turn>,
    group: &GroupMetadata,
) -> Vec<(u32, std::result::Result<bool, LogError>)> {
    let mut chosen: Vec<(u32, &mut RtTask)> = tasks.iter_mut().filter(|(p, _)| due.contains(p)).map(|(p, t)| (*p, t)).collect();
    if chosen.len() == 1 {
        let (p, t) = chosen.pop().expect("one");
        return vec![(p, shared.commit_task(t, group, &turns[&p].progress))];
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = chosen
            .into_iter()
            .map(|(p, t)| {
                let progress = &turns[&p].progress;
                (p, scope.spawn(move || shared.commit_task(t, group, progress)))
            })
            .collect();
        handles
            .into_iter()
            .map(|(p, h)| (p, h.join().unwrap_or_else(|_| Err(LogError::Transaction("a commit thread panicked".into())))))
            .collect()
    })
}

/// Takes a snapshot of producers' declarations when the board changed, and claims what
/// has been fetched since.
fn cover(shared: &Shared, watch: &mut Watch, tasks: &BTreeMap<u32, RtTask>, consumer: &mut dyn Consumer, sources: &[String], wall: i64) {
    let parts: Vec<u32> = tasks.keys().copied().collect();
    if watch.board.version != watch.coverage.seen_version && watch.last_snapshot.elapsed() >= Duration::from_millis(5) && !parts.is_empty() {
        let declared = Coverage::values_now(&watch.board, &parts, sources, wall);
        watch.coverage.seen_version = watch.board.version;
        if !declared.is_empty() {
            let tps: Vec<TopicPartition> = declared.iter().map(|(p, t, _)| TopicPartition::new(t, *p)).collect();
            match shared.log.watermarks(&tps) {
                Ok(marks) => {
                    let ends = tps.into_iter().zip(marks).map(|(tp, (_, end))| (tp, end)).collect();
                    watch.coverage.push(ends, declared, watch.board.version);
                    watch.last_snapshot = Instant::now();
                }
                Err(e) => tracing::warn!(processor = shared.name, error = %e, "reading input ends for progress failed; retrying"),
            }
        }
    }
    let slack = watch.slack;
    watch.coverage.claim(&mut |tp: &TopicPartition, end: u64| {
        if end == 0 {
            return true;
        }
        let fetched = tasks.get(&tp.partition).and_then(|t| t.fetched_to.get(tp).copied());
        let pos = consumer.position(tp).max(fetched);
        pos.is_some_and(|p| p + slack >= end)
    });
}

/// The views of a task's groups: what is known of each input right now.
fn views(t: &RtTask, shared: &Shared, watch: &Watch, ends: &EndCache, consumer: &dyn Consumer, wall: i64, globals_before: i64) -> Vec<GroupView> {
    let p = t.core.partition;
    let idle_after = shared.config.max_task_idle;
    t.groups
        .iter()
        .map(|g| GroupView {
            members: g
                .members
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    if shared.topology.is_derived(&m.tp.topic) || !g.is_empty(i) {
                        return MemberView::default();
                    }
                    let lagging = ends.lags(consumer, &m.tp);
                    let idle = !lagging && t.last_fetch.get(&m.tp).is_none_or(|at| at.elapsed() >= idle_after);
                    // A declaration holds while its producer keeps its lease.
                    let live = watch.board.declared(&m.tp.topic, wall).is_some();
                    let declared = watch.coverage.declared.get(&p).and_then(|d| d.get(&*m.tp.topic)).copied().filter(|_| live);
                    // A producer declared it, and what it had written then is not fetched yet.
                    let unclaimed = declared.is_none() && live;
                    MemberView { lagging: lagging || unclaimed, idle, declared }
                })
                .collect(),
            frontier: i64::MAX,
            wall,
            idle_advance: shared.config.idle == Idle::WallClock,
            globals_complete_before: globals_before,
        })
        .collect()
}

/// A task's progress to publish: what each slot has pending, how far it has fetched its
/// derived inputs, and its recent commits on derived topics (with the outputs waiting for
/// the next commit as the commit of unknown offsets).
fn progress_of(t: &mut RtTask, views: &[GroupView], shared: &Shared, board: &Board, consumer: &dyn Consumer) -> TaskProgress {
    let mut pending: Vec<i64> = t.groups.iter().zip(views).map(|(g, v)| g.pending(v)).collect();
    let timer = match t.core.next_timer() {
        Ok(t) => t.map_or(i64::MAX, |t| t.at),
        Err(_) => i64::MIN,
    };
    pending.push(timer);
    let p = t.core.partition;
    let mut fetched = BTreeMap::new();
    for tp in t.routes.keys().filter(|tp| shared.topology.is_derived(&tp.topic)) {
        let at = consumer.position(tp).max(t.fetched_to.get(tp).copied()).unwrap_or(0);
        // Everything below the first record still buffered, or not fetched, may be counted
        // as fetched: what is buffered is pending.
        fetched.insert(tp.topic.to_string(), at);
    }
    if let Some(held) = &t.refetch {
        // Still reading again what the last commit had fetched: its pending stands for it.
        let behind: Vec<String> =
            fetched.iter().filter(|(topic, at)| held.fetched.get(*topic).is_some_and(|old| old > *at)).map(|(topic, _)| topic.clone()).collect();
        for (slot, g) in t.groups.iter().enumerate() {
            if g.members.iter().any(|m| behind.iter().any(|b| *b == *m.tp.topic)) {
                pending[slot] = pending[slot].min(held.pending.get(slot).copied().unwrap_or(i64::MIN));
            }
        }
        for topic in &behind {
            fetched.insert(topic.clone(), held.fetched[topic]);
        }
        if behind.is_empty() {
            t.refetch = None;
        }
    }
    let _ = p;
    // Commits every reader has fetched past no longer matter.
    let mut emitted = t.emitted.clone();
    for (topic, per) in emitted.iter_mut() {
        let readers = shared.topology.readers_of(topic);
        for (x, commits) in per.iter_mut() {
            let least = readers.iter().map(|q| board.task(*q, *x).and_then(|e| e.fetched.get(topic).copied()).unwrap_or(0)).min().unwrap_or(0);
            commits.retain(|(end, _)| *end > least);
            while commits.len() > 16 {
                let (e1, m1) = commits.remove(0);
                commits[0] = (commits[0].0.max(e1), commits[0].1.min(m1));
            }
        }
        per.retain(|_, c| !c.is_empty());
    }
    emitted.retain(|_, per| !per.is_empty());
    for rec in &t.core.pending {
        let Some(n) = shared.topology.partitions_of(&rec.topic) else { continue };
        let x = rec.partition.unwrap_or_else(|| rec.key.as_deref().map(|k| storeflow_ingest::partitioner::partition_for_key(k, n)).unwrap_or(0));
        let ts = rec.timestamp.unwrap_or(i64::MIN);
        let commits = emitted.entry(rec.topic.clone()).or_default().entry(x).or_default();
        match commits.last_mut() {
            Some((u64::MAX, m)) => *m = (*m).min(ts),
            _ => commits.push((u64::MAX, ts)),
        }
    }
    TaskProgress { pending, fetched, emitted }
}

fn own_progress(t: &mut RtTask, shared: &Shared, watch: &Watch, ends: &EndCache, consumer: &dyn Consumer, wall: i64, globals_before: i64) -> TaskProgress {
    let v = views(t, shared, watch, ends, consumer, wall, globals_before);
    progress_of(t, &v, shared, &watch.board, consumer)
}

/// How many steps one task takes per turn at most, before the loop polls again.
const TURN_STEPS: u64 = 20_000;

/// Runs task `t` as far as its inputs, their frontiers and its timers allow. `None` when
/// asked to stop while retrying a record.
#[allow(clippy::too_many_arguments)]
fn run_task(
    processor: &mut dyn DynProcessor,
    t: &mut RtTask,
    shared: &Shared,
    codec: &Arc<Codec>,
    watch: &Watch,
    ends: &EndCache,
    consumer: &dyn Consumer,
    wall: i64,
    globals_before: i64,
    stop: &AtomicBool,
) -> Option<Turn> {
    let p = t.core.partition;
    let mut v = views(t, shared, watch, ends, consumer, wall, globals_before);
    let own = progress_of(t, &v, shared, &watch.board, consumer);
    for (g, view) in v.iter_mut().enumerate() {
        if !shared.topology.derived_inputs(shared.me, g).is_empty() {
            view.frontier = progress::frontier(&shared.topology, &watch.board, shared.config.lookahead_ms, shared.me, p, g, &own);
        }
    }
    let mut steps = 0u64;
    while steps < TURN_STEPS {
        for (g, view) in t.groups.iter_mut().zip(&v) {
            g.stream = g.time_frontier(view);
        }
        let timer = match t.core.next_timer() {
            Ok(tm) => tm,
            Err(e) => {
                tracing::error!(processor = shared.name, partition = p, error = %e, "reading timers failed");
                None
            }
        };
        if let Some(tm) = &timer {
            if t.groups.iter().zip(&v).all(|(g, view)| g.time_frontier(view) > tm.at) {
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| processor.fire_timer(&mut t.core, codec, tm))) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(processor = shared.name, partition = p, error = %e, "a timer failed"),
                    Err(panic) => {
                        // Its writes are dropped, and it is gone: it must not fire (and panic) again.
                        t.core.state.reject();
                        remove_timer(&mut t.core.state, tm);
                        t.core.state.accept();
                        tracing::error!(processor = shared.name, partition = p, timer = ?tm, panic = %panic_message(&*panic), "a timer made the processor panic; it is dropped");
                    }
                }
                for g in t.groups.iter_mut() {
                    g.pass(tm.at);
                }
                t.worked = true;
                steps += 1;
                continue;
            }
        }
        let mut progressed = false;
        for g in 0..t.groups.len() {
            let align::Step::Record { member, time } = t.groups[g].step(&v[g]) else { continue };
            if t.groups[g].has_source && timer.as_ref().is_some_and(|tm| tm.at < time) {
                continue; // the timer goes first
            }
            let mut rec = t.groups[g].take(member, time);
            if let Some((at, reason)) = t.refused.remove(&(rec.tp(), rec.offset)) {
                rec.timestamp = at;
                tracing::warn!(processor = shared.name, topic = %rec.topic, partition = rec.partition, offset = rec.offset, %reason, "dead-lettering a record dated too far ahead");
                t.core.pending.push(dlq_record(shared.name, &rec, &reason, time));
                t.core.dead_lettered += 1;
                t.core.handled += 1;
            } else {
                let step = Step { slot: g, time, cause: step_of_record(&rec) };
                if !handle_with_retries(processor, &mut t.core, codec, &rec, step, shared, stop) {
                    return None;
                }
            }
            let tp = rec.tp();
            if shared.topology.is_derived(&tp.topic) {
                t.skip.entry(tp.clone()).or_default().insert(rec.offset);
            } else {
                t.offsets.insert(tp.clone(), rec.offset + 1);
            }
            t.worked = true;
            progressed = true;
            steps += 1;
        }
        if !progressed {
            break;
        }
    }
    let waiting = t.groups.iter().any(|g| g.buffered() > 0);
    if waiting && steps == 0 {
        let now = Instant::now();
        let (since, told) = *t.stuck.get_or_insert((now, now));
        if since.elapsed() >= Duration::from_secs(5) && told.elapsed() >= Duration::from_secs(10).min(since.elapsed()) {
            t.stuck = Some((since, now));
            let timer = t.core.next_timer().ok().flatten().map(|tm| tm.at);
            let groups: Vec<String> = t
                .groups
                .iter()
                .zip(&v)
                .enumerate()
                .map(|(i, (g, view))| {
                    let members: Vec<String> = g
                        .members
                        .iter()
                        .zip(&view.members)
                        .map(|(m, mv)| format!("{} ({} buffered, from {:?}{}{}{})", m.tp, m.buffer.len(), m.buffer.min_time(), if mv.lagging { ", lagging" } else { "" }, if mv.idle { ", idle" } else { "" }, mv.declared.map(|d| format!(", declared {d}")).unwrap_or_default()))
                        .collect();
                    format!("group {i}: stream {}, frontier {}, next {:?} [{}]", g.stream, view.frontier, g.next_time(view), members.join(", "))
                })
                .collect();
            tracing::warn!(processor = shared.name, partition = p, waited_s = since.elapsed().as_secs(), next_timer = ?timer, groups = %groups.join("; "), "records are waiting: a group cannot go on (an input not caught up, a frontier not reached, or a timer not due)");
        }
    } else {
        t.stuck = None;
    }
    let progress = progress_of(t, &v, shared, &watch.board, consumer);
    Some(Turn { steps, waiting, progress })
}

/// Sets the offsets to commit for the task's derived inputs: the lowest one not processed
/// (records are processed in time order, not offset order), with the processed ones above
/// it kept to be skipped when re-read.
fn prepare_offsets(t: &mut RtTask, consumer: &dyn Consumer) {
    for (tp, &(g, m)) in &t.routes {
        let buffer = &t.groups[g].members[m].buffer;
        if !matches!(buffer, align::Buffer::Heap(_)) {
            continue;
        }
        let Some(done) = t.skip.get_mut(tp) else { continue };
        if done.is_empty() {
            continue;
        }
        let next = match (consumer.position(tp), t.fetched_to.get(tp).copied()) {
            (Some(a), Some(b)) => a.max(b),
            (a, b) => match a.or(b) {
                Some(x) => x,
                None => continue,
            },
        };
        let low = buffer.min_offset().unwrap_or(next).min(next);
        *done = done.split_off(&low);
        t.offsets.insert(tp.clone(), low);
    }
}

/// Tasks that could not start: retry, then re-read their inputs from the last commit
/// (records polled for them meanwhile were not handled).
fn reopen_due(shared: &Shared, consumer: &mut dyn Consumer, inputs: &[String]) {
    let now = Instant::now();
    let retry: Vec<u32> = shared.unopened.lock().iter().filter(|(_, at)| **at <= now).map(|(p, _)| *p).collect();
    for p in retry {
        if shared.tasks.lock().contains_key(&p) {
            // A rebalance opened it meanwhile.
            shared.unopened.lock().remove(&p);
            continue;
        }
        match shared.open_task(p) {
            Ok(t) => {
                shared.tasks.lock().insert(p, t);
                shared.unopened.lock().remove(&p);
                reopen_on_rewind_failure(shared, consumer, inputs, p);
            }
            Err(e) => {
                tracing::warn!(processor = shared.name, partition = p, error = %e, "a task still cannot start");
                shared.unopened.lock().insert(p, Instant::now() + Duration::from_secs(1));
            }
        }
    }
}

fn report_lag(shared: &Shared, consumer: &dyn Consumer) {
    let tps = consumer.assignment();
    if let Ok(marks) = shared.log.watermarks(&tps) {
        for (tp, (_, end)) in tps.iter().zip(marks) {
            let pos = consumer.position(tp).unwrap_or(end);
            shared
                .metrics
                .lag
                .get_or_create(&PartitionLabels { processor: shared.name.to_string(), topic: tp.topic.to_string(), partition: tp.partition.to_string() })
                .set(end.saturating_sub(pos) as i64);
        }
    }
}

/// Reads a processor's global inputs in full: every partition, from the start, in every
/// instance; nothing is committed (each start rebuilds the processor's global state).
struct GlobalReader {
    consumer: Option<Box<dyn Consumer>>,
    topics: Vec<String>,
    ends: Vec<(TopicPartition, u64)>,
    ends_at: Instant,
    /// The latest timestamp applied.
    applied: i64,
}

impl GlobalReader {
    fn start(shared: &Shared, processor: &dyn DynProcessor) -> Result<GlobalReader> {
        let topics = processor.global_inputs();
        if topics.is_empty() {
            return Ok(GlobalReader { consumer: None, topics, ends: vec![], ends_at: Instant::now(), applied: i64::MIN });
        }
        let infos = shared.log.describe_topics()?;
        let mut assignment = Vec::new();
        for t in &topics {
            if let Some(info) = infos.iter().find(|i| &i.name == t) {
                for p in &info.partitions {
                    assignment.push((TopicPartition::new(t, p.partition), p.start));
                }
            }
        }
        let tps: Vec<TopicPartition> = assignment.iter().map(|(tp, _)| tp.clone()).collect();
        let ends = tps.iter().cloned().zip(shared.log.watermarks(&tps)?.into_iter().map(|(_, e)| e)).collect();
        let mut cfg = ConsumerConfig::new(&format!("{}.global", shared.group()));
        cfg.reset = OffsetReset::Earliest;
        let mut consumer = shared.log.consumer(cfg, None)?;
        consumer.assign(&assignment)?;
        Ok(GlobalReader { consumer: Some(consumer), topics, ends, ends_at: Instant::now(), applied: i64::MIN })
    }

    fn apply(&mut self, processor: &mut dyn DynProcessor, codec: &Arc<Codec>, records: Vec<Record>) {
        for r in records {
            self.applied = self.applied.max(r.timestamp);
            processor.handle_global(codec, &r);
        }
    }

    /// Reads up to where the global topics ended at start-up, before anything else.
    fn catch_up(&mut self, processor: &mut dyn DynProcessor, codec: &Arc<Codec>, patience: Duration) -> Result<()> {
        let deadline = Instant::now() + patience;
        loop {
            let Some(c) = self.consumer.as_mut() else { return Ok(()) };
            // Kafka's last offset may be a transaction marker that is never fetched.
            let done = self.ends.iter().all(|(tp, end)| c.position(tp).unwrap_or(0) + 1 >= *end || *end == 0);
            if done || Instant::now() > deadline {
                return Ok(());
            }
            let recs = c.poll(10_000, Duration::from_millis(100))?;
            self.apply(processor, codec, recs);
        }
    }

    /// Applies whatever arrived since, without waiting.
    fn poll(&mut self, processor: &mut dyn DynProcessor, codec: &Arc<Codec>) -> Result<()> {
        if let Some(c) = self.consumer.as_mut() {
            let recs = c.poll(10_000, Duration::ZERO)?;
            self.apply(processor, codec, recs);
        }
        Ok(())
    }

    /// The time below which every global record has been applied: all of them while the
    /// reader is caught up (or what their producers declared), else the latest applied.
    fn complete_before(&mut self, shared: &Shared, board: &Board, wall: i64) -> i64 {
        let Some(c) = self.consumer.as_ref() else { return i64::MAX };
        if self.ends_at.elapsed() > Duration::from_millis(100) {
            let tps: Vec<TopicPartition> = self.ends.iter().map(|(tp, _)| tp.clone()).collect();
            if let Ok(marks) = shared.log.watermarks(&tps) {
                self.ends = tps.into_iter().zip(marks).map(|(tp, (_, e))| (tp, e)).collect();
                self.ends_at = Instant::now();
            }
        }
        let caught_up = self.ends.iter().all(|(tp, end)| *end == 0 || c.position(tp).is_some_and(|p| p + 1 >= *end));
        if !caught_up {
            return self.applied;
        }
        self.topics.iter().filter_map(|t| board.declared(t, wall)).min().unwrap_or(i64::MAX)
    }
}

/// Rewinds task `p`'s inputs to its last commit; if that fails (a transient broker error),
/// the task is dropped and reopened shortly, which rewinds again — never processes on from
/// a position that does not match its state.
fn reopen_on_rewind_failure(shared: &Shared, consumer: &mut dyn Consumer, inputs: &[String], p: u32) {
    if let Err(e) = rewind_inputs(shared, consumer, inputs, p) {
        tracing::warn!(processor = shared.name, partition = p, error = %e, "rewinding a task failed; reopening it in 1 s");
        if let Some(mut t) = shared.tasks.lock().remove(&p) {
            let _ = t.txn.abort();
        }
        shared.unopened.lock().insert(p, Instant::now() + Duration::from_secs(1));
    }
}

/// Moves the consumer back to the committed offsets of task `p`'s input partitions.
fn rewind_inputs(shared: &Shared, consumer: &mut dyn Consumer, inputs: &[String], p: u32) -> Result<()> {
    let tps: Vec<TopicPartition> = inputs.iter().map(|t| TopicPartition::new(t, p)).collect();
    let committed = shared.log.committed_offsets(&shared.group(), &tps)?;
    let marks = shared.log.watermarks(&tps)?;
    let mut tasks = shared.tasks.lock();
    for ((tp, c), (start, _)) in tps.iter().zip(committed).zip(marks) {
        if consumer.assignment().contains(tp) {
            let at = c.unwrap_or(start);
            consumer.seek(tp, at)?;
            if let Some(t) = tasks.get_mut(&p) {
                t.fetched_to.insert(tp.clone(), at);
            }
        }
    }
    Ok(())
}

/// Ends of input partitions, refreshed at most every 50 ms, to tell a lagging input (more
/// records to fetch) from a caught-up one.
struct EndCache {
    log: Arc<dyn Log>,
    slack: u64,
    ends: std::cell::RefCell<(Instant, BTreeMap<TopicPartition, u64>)>,
}

impl EndCache {
    fn new(log: Arc<dyn Log>, slack: u64) -> Self {
        EndCache { log, slack, ends: std::cell::RefCell::new((Instant::now() - Duration::from_secs(1), BTreeMap::new())) }
    }

    /// True when `tp` has records the consumer has not fetched yet.
    fn lags(&self, consumer: &dyn Consumer, tp: &TopicPartition) -> bool {
        let Some(pos) = consumer.position(tp) else { return false };
        let mut cache = self.ends.borrow_mut();
        let stale = cache.0.elapsed() > Duration::from_millis(50);
        if stale || !cache.1.contains_key(tp) {
            let tps: Vec<TopicPartition> = consumer.assignment();
            if let Ok(marks) = self.log.watermarks(&tps) {
                cache.1 = tps.into_iter().zip(marks).map(|(tp, (_, end))| (tp, end)).collect();
                cache.0 = Instant::now();
            }
        }
        cache.1.get(tp).is_some_and(|end| pos + self.slack < *end)
    }
}


/// Handles one record, retrying transient failures with capped back-off. False when asked
/// to stop while retrying.
fn handle_with_retries(
    processor: &mut dyn DynProcessor,
    core: &mut TaskCore,
    codec: &Arc<Codec>,
    rec: &Record,
    step: Step,
    shared: &Shared,
    stop: &AtomicBool,
) -> bool {
    let mut backoff = storeflow_ingest::Backoff::new(Duration::from_millis(10), shared.config.max_backoff);
    loop {
        // A panic while handling one record is that record's failure, not the task's: its
        // writes are dropped and it goes to the DLQ with the panic's message.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| processor.handle(core, codec, rec, step)));
        match outcome.map_err(|panic| panic_message(&*panic)) {
            Ok(Outcome::Done | Outcome::DeadLettered(_)) => return true,
            Err(message) => {
                core.state.reject();
                let reason = format!("panic: {message}");
                tracing::error!(processor = shared.name, topic = %rec.topic, partition = rec.partition, offset = rec.offset, %reason, "a record made the processor panic; dead-lettering it and going on");
                core.pending.push(dlq_record(shared.name, rec, &reason, step.time));
                core.dead_lettered += 1;
                core.handled += 1;
                return true;
            }
            Ok(Outcome::Retry(reason)) => {
                tracing::warn!(processor = shared.name, topic = %rec.topic, partition = rec.partition, offset = rec.offset, %reason, retry_in = ?backoff.peek(), "transient failure; retrying the same record");
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
                std::thread::sleep(backoff.next());
            }
        }
    }
}
