//! The log-driven runtime: runs one processor on a [`Log`] with exactly-once semantics.
//!
//! One thread per processor instance (like a Kafka Streams `StreamThread`) owns a group
//! consumer (`storeflow.<name>`, co-partitioned assignment) and one **task** per assigned
//! partition number. A task has its state stores, a transactional producer
//! (`transactional.id = <app>.<name>.<partition>`, so a restarted instance fences the
//! old one), and the input offsets it has consumed. `<app>` is `storeflow` by default.
//!
//! Every `commit_records` records or `commit_interval`, each task with work commits one
//! transaction holding, together: its outputs and dead-letter records, its state changes
//! (to the compacted changelog `<app>.<name>.changelog`, partition = task), and its input
//! offsets. Only after the commit are the state changes applied to the local store, with
//! the changelog offset they reach as its checkpoint. When a task starts — first start,
//! after a crash, after a rebalance moved it here — it replays the changelog from its
//! checkpoint (or from the start for an empty store) before it processes anything.
//!
//! If a commit fails the task aborts (a timeout, which leaves it unknown whether the commit
//! landed, re-creates the producer to fence it), drops its uncommitted state, rewinds its
//! inputs to the committed offsets and carries on. A fenced task is dropped: another
//! instance owns it now. Revoked partitions are committed before they are given up.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use storeflow_avro::Codec;
use storeflow_ingest::{
    ConsumerConfig, GroupMetadata, Log, LogError, OffsetCommitter, OffsetReset, ProduceRecord,
    RebalanceListener, Record, TopicPartition, TopicSpec, TransactionalProducer,
};

use crate::metrics::{Metrics, PartitionLabels};
use crate::store::{Changes, KvBackend, MemBackend, RedbBackend, TaskState};
use crate::task::{DynProcessor, Outcome, TaskCore};
use crate::{Result, RuntimeError};

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
    /// (`<app>.<processor>.changelog`) and transactional ids. Two deployments on one Kafka
    /// cluster need different ones.
    pub app: String,
    /// Commit after this many records (per instance)…
    pub commit_records: u64,
    /// …or this much time, whichever comes first.
    pub commit_interval: Duration,
    /// Where state lives.
    pub state: StateBackend,
    /// Records per poll.
    pub max_poll: usize,
    /// When a partition has had no record for this long, its stream time follows the wall
    /// clock, so timers (reservation timeouts) fire in quiet periods. `None`: event time only.
    pub idle_advance: Option<Duration>,
    /// Longest wait between retries of a record that failed transiently.
    pub max_backoff: Duration,
    /// A stable name for this instance. On Kafka it becomes the static group membership id
    /// (`group.instance.id`, KIP-345), so a restarted instance takes its partitions straight
    /// back instead of waiting out the session timeout.
    pub instance: Option<String>,
    /// Extra consumer properties (librdkafka names on Kafka).
    pub consumer_properties: Vec<(String, String)>,
    /// How long a task holds its records back while one of its inputs still has records to
    /// fetch, so records of all inputs are handled in timestamp order (Kafka Streams'
    /// `max.task.idle.ms`). An input that is caught up is not waited for.
    pub max_task_idle: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            app: "storeflow".to_string(),
            commit_records: 100_000,
            commit_interval: Duration::from_millis(100),
            state: StateBackend::Memory,
            max_poll: 5_000,
            idle_advance: Some(Duration::from_secs(5)),
            max_backoff: Duration::from_secs(5),
            instance: None,
            consumer_properties: Vec::new(),
            max_task_idle: Duration::from_millis(500),
        }
    }
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

struct RtTask {
    core: TaskCore,
    txn: Box<dyn TransactionalProducer>,
    /// Polled records not yet handled, per input partition (handled in timestamp order).
    buffers: BTreeMap<TopicPartition, std::collections::VecDeque<Record>>,
    /// Since when the task holds records back waiting for a lagging input.
    waiting_since: Option<Instant>,
    /// Next offset per input partition, not yet committed.
    offsets: BTreeMap<TopicPartition, u64>,
    /// Stream time at the last commit (restored on abort).
    committed_time: i64,
    last_record: Instant,
}

/// What the consumer thread and its rebalance callbacks share.
struct Shared {
    name: &'static str,
    log: Arc<dyn Log>,
    config: RuntimeConfig,
    metrics: Arc<Metrics>,
    changelog: String,
    tasks: Mutex<BTreeMap<u32, RtTask>>,
    /// Assigned partitions without a running task, with the earliest moment to (re)open it:
    /// a task that could not start, lost its producer to a fence, or could not rewind.
    unopened: Mutex<BTreeMap<u32, Instant>>,
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

    /// Opens task `p`: its store, restored from the changelog, and its transactional producer.
    fn open_task(&self, p: u32) -> Result<RtTask> {
        let mut state = TaskState::new(self.backend(p)?);
        self.restore(p, state.backend())?;
        let mut txn = self.log.transactional_producer(&self.tid(p))?;
        txn.begin()?;
        tracing::info!(processor = self.name, partition = p, "task started");
        Ok(RtTask {
            core: TaskCore::new(p, state),
            txn,
            buffers: BTreeMap::new(),
            waiting_since: None,
            offsets: BTreeMap::new(),
            committed_time: i64::MIN,
            last_record: Instant::now(),
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

    /// Commits one task's transaction. On failure the task is rewound (or dropped when
    /// fenced); the error is returned for logging.
    fn commit_task(&self, t: &mut RtTask, group: &GroupMetadata) -> std::result::Result<bool, LogError> {
        if t.core.pending.is_empty() && !t.core.state.dirty() && t.offsets.is_empty() {
            return Ok(false);
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
                t.committed_time = t.core.state.stream_time;
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
                t.core.pending.clear();
                t.core.state.discard();
                t.core.state.stream_time = t.committed_time;
                t.core.handled = 0;
                t.core.dead_lettered = 0;
                t.offsets.clear();
                Err(e)
            }
        }
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
        let numbers: std::collections::BTreeSet<u32> = partitions.iter().map(|tp| tp.partition).collect();
        let group = committer.group_metadata();
        let mut tasks = s.tasks.lock();
        for p in numbers {
            let Some(mut t) = tasks.remove(&p) else { continue };
            if let Some(g) = &group {
                if let Err(e) = s.commit_task(&mut t, g) {
                    tracing::warn!(processor = s.name, partition = p, error = %e, "commit on revocation failed; the next owner resumes from the last commit");
                }
            }
            let _ = t.txn.abort();
            tracing::info!(processor = s.name, partition = p, "task handed over");
        }
        let mut unopened = s.unopened.lock();
        for tp in partitions {
            unopened.remove(&tp.partition);
        }
    }

    fn on_assigned(&mut self, partitions: &[TopicPartition]) {
        let s = &self.0;
        let numbers: std::collections::BTreeSet<u32> = partitions.iter().map(|tp| tp.partition).collect();
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

/// A running processor instance.
pub struct Runtime {
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
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
        let inputs = processor.inputs();
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
        for t in processor.global_inputs() {
            if !infos.iter().any(|i| i.name == t) {
                return Err(RuntimeError::Setup(format!("{name} reads the global input {t}, which does not exist")));
            }
        }
        let changelog = changelog_of(&config.app, name);
        let mut specs = vec![TopicSpec::compacted(&changelog, n)];
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
            tasks: Mutex::new(BTreeMap::new()),
            unopened: Mutex::new(Default::default()),
            crashed: AtomicBool::new(false),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("processor-{name}"))
                .spawn(move || {
                    let result = run(processor, shared, codec, inputs, stop);
                    if let Err(e) = &result {
                        tracing::error!(processor = name, error = %e, "the processor thread stopped with an error");
                    }
                    result
                })
                .map_err(|e| RuntimeError::Setup(format!("starting the {name} thread: {e}")))?
        };
        Ok(Runtime { shared, stop, thread: Some(thread) })
    }

    /// The processor's name.
    pub fn name(&self) -> &'static str {
        self.shared.name
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

fn run(
    mut processor: Box<dyn DynProcessor>,
    shared: Arc<Shared>,
    codec: Arc<Codec>,
    inputs: Vec<String>,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let name = shared.name;
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
    let mut consumer = shared.log.consumer(cfg, Some(Box::new(Listener(shared.clone()))))?;
    consumer.subscribe(&inputs.iter().map(String::as_str).collect::<Vec<_>>())?;
    let mut since_commit = 0u64;
    let ends = EndCache::new(shared.log.clone());
    let mut last_commit = Instant::now();
    let mut last_lag = Instant::now() - Duration::from_secs(60);
    let label = Metrics::label(name);
    let result = (|| -> Result<()> {
        while !stop.load(Ordering::Relaxed) {
            // A failing poll is transient (a broker restarting, a rebalance in flight): the
            // thread waits and polls again rather than dying with its partitions assigned.
            if let Err(e) = globals.poll(&mut *processor, &codec) {
                tracing::warn!(processor = name, error = %e, "reading the global inputs failed; retrying");
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            let records = match consumer.poll(shared.config.max_poll, Duration::from_millis(100)) {
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
            // Tasks that could not start: retry, then re-read their inputs from the last commit
            // (records polled for them meanwhile were not handled).
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
                        reopen_on_rewind_failure(&shared, &mut *consumer, &inputs, p);
                    }
                    Err(e) => {
                        tracing::warn!(processor = name, partition = p, error = %e, "a task still cannot start");
                        shared.unopened.lock().insert(p, Instant::now() + Duration::from_secs(1));
                    }
                }
            }
            let mut rewind: Vec<u32> = Vec::new();
            {
                let mut tasks = shared.tasks.lock();
                for rec in records {
                    if let Some(t) = tasks.get_mut(&rec.partition) {
                        t.buffers.entry(rec.tp()).or_default().push_back(rec);
                    }
                }
                for t in tasks.values_mut() {
                    let p = t.core.partition;
                    let tps: Vec<TopicPartition> = inputs.iter().map(|i| TopicPartition::new(i, p)).collect();
                    loop {
                        // The input whose next record is oldest goes first.
                        let next = tps
                            .iter()
                            .filter_map(|tp| t.buffers.get(tp).and_then(|b| b.front()).map(|r| (r.timestamp, tp.clone())))
                            .min_by_key(|(ts, _)| *ts);
                        let Some((_, tp)) = next else {
                            t.waiting_since = None;
                            break;
                        };
                        let lagging = tps.iter().any(|other| {
                            t.buffers.get(other).is_none_or(|b| b.is_empty()) && ends.lags(&*consumer, other)
                        });
                        if lagging {
                            let since = *t.waiting_since.get_or_insert_with(Instant::now);
                            if since.elapsed() < shared.config.max_task_idle {
                                break;
                            }
                        }
                        let rec = t.buffers.get_mut(&tp).and_then(|b| b.pop_front()).expect("a head was found");
                        if !handle_with_retries(&mut *processor, t, &codec, &rec, &shared, &stop) {
                            return Ok(());
                        }
                        t.offsets.insert(rec.tp(), rec.offset + 1);
                        t.last_record = Instant::now();
                        since_commit += 1;
                        if let Err(e) = processor.fire_timers(&mut t.core, &codec) {
                            tracing::error!(processor = name, error = %e, "timers failed");
                        }
                    }
                }
                if let Some(idle) = shared.config.idle_advance {
                    let wall = now_ms();
                    for t in tasks.values_mut() {
                        if t.last_record.elapsed() >= idle && t.core.state.stream_time < wall {
                            t.core.state.stream_time = wall;
                            if let Err(e) = processor.fire_timers(&mut t.core, &codec) {
                                tracing::error!(processor = name, error = %e, "timers failed");
                            }
                        }
                    }
                }
                if since_commit >= shared.config.commit_records || last_commit.elapsed() >= shared.config.commit_interval {
                    if let Some(group) = consumer.group_metadata() {
                        // Tasks commit in parallel: each has its own transactional producer, and
                        // a Kafka commit is a round trip to the transaction coordinator.
                        let results: Vec<(u32, std::result::Result<bool, LogError>)> = std::thread::scope(|scope| {
                            let handles: Vec<_> = tasks
                                .iter_mut()
                                .map(|(p, t)| {
                                    let (shared, group) = (&shared, &group);
                                    (*p, scope.spawn(move || shared.commit_task(t, group)))
                                })
                                .collect();
                            handles
                                .into_iter()
                                .map(|(p, h)| (p, h.join().unwrap_or_else(|_| Err(LogError::Transaction("a commit thread panicked".into())))))
                                .collect()
                        });
                        for (p, result) in results {
                            let Some(t) = tasks.get_mut(&p) else { continue };
                            let p = &p;
                            if let Err(e) = result {
                                t.buffers.clear();
                                t.waiting_since = None;
                                tracing::warn!(processor = name, partition = p, error = %e, "commit failed; rewinding the task to its last commit");
                                if matches!(e, LogError::Fenced(_)) {
                                    rewind.push(u32::MAX - *p);
                                } else {
                                    if let Err(e) = shared.recover_producer(t, &e) {
                                        tracing::error!(processor = name, partition = p, error = %e, "could not re-create the producer");
                                    }
                                    rewind.push(*p);
                                }
                            }
                        }
                    }
                    since_commit = 0;
                    last_commit = Instant::now();
                }
                for code in &rewind {
                    if *code > u32::MAX / 2 {
                        // Another producer took this task's transactional id. If another
                        // instance owns the partition now, the group revokes it from us at the
                        // next rebalance; if that producer was a zombie, the partition is still
                        // ours: reopen the task (restore, new epoch, rewind) after a pause,
                        // rather than leave an assigned partition unprocessed for good.
                        let p = u32::MAX - code;
                        tracing::warn!(processor = name, partition = p, "fenced by another producer; reopening the task in 5 s unless the partition is revoked");
                        tasks.remove(&p);
                        shared.unopened.lock().insert(p, Instant::now() + Duration::from_secs(5));
                    }
                }
            }
            for p in rewind.into_iter().filter(|c| *c <= u32::MAX / 2) {
                reopen_on_rewind_failure(&shared, &mut *consumer, &inputs, p);
            }
            if last_lag.elapsed() > Duration::from_secs(5) {
                last_lag = Instant::now();
                let tps = consumer.assignment();
                if let Ok(marks) = shared.log.watermarks(&tps) {
                    for (tp, (_, end)) in tps.iter().zip(marks) {
                        let pos = consumer.position(tp).unwrap_or(end);
                        shared
                            .metrics
                            .lag
                            .get_or_create(&PartitionLabels {
                                processor: name.to_string(),
                                topic: tp.topic.to_string(),
                                partition: tp.partition.to_string(),
                            })
                            .set(end.saturating_sub(pos) as i64);
                    }
                }
                let _ = &label;
            }
        }
        // Clean stop: commit what was done.
        if let Some(group) = consumer.group_metadata() {
            let mut tasks = shared.tasks.lock();
            for (p, t) in tasks.iter_mut() {
                if let Err(e) = shared.commit_task(t, &group) {
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
    result
}

/// Reads a processor's global inputs in full: every partition, from the start, in every
/// instance; nothing is committed (each start rebuilds the processor's global state).
struct GlobalReader {
    consumer: Option<Box<dyn storeflow_ingest::Consumer>>,
    ends: Vec<(TopicPartition, u64)>,
}

impl GlobalReader {
    fn start(shared: &Shared, processor: &dyn DynProcessor) -> Result<GlobalReader> {
        let topics = processor.global_inputs();
        if topics.is_empty() {
            return Ok(GlobalReader { consumer: None, ends: vec![] });
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
        Ok(GlobalReader { consumer: Some(consumer), ends })
    }

    /// Reads up to where the global topics ended at start-up, before anything else.
    fn catch_up(&mut self, processor: &mut dyn DynProcessor, codec: &Arc<Codec>, patience: Duration) -> Result<()> {
        let Some(c) = self.consumer.as_mut() else { return Ok(()) };
        let deadline = Instant::now() + patience;
        loop {
            // Kafka's last offset may be a transaction marker that is never fetched.
            let done = self.ends.iter().all(|(tp, end)| c.position(tp).unwrap_or(0) + 1 >= *end || *end == 0);
            if done || Instant::now() > deadline {
                return Ok(());
            }
            for r in c.poll(10_000, Duration::from_millis(100))? {
                processor.handle_global(codec, &r);
            }
        }
    }

    /// Applies whatever arrived since, without waiting.
    fn poll(&mut self, processor: &mut dyn DynProcessor, codec: &Arc<Codec>) -> Result<()> {
        if let Some(c) = self.consumer.as_mut() {
            for r in c.poll(10_000, Duration::ZERO)? {
                processor.handle_global(codec, &r);
            }
        }
        Ok(())
    }
}

/// Rewinds task `p`'s inputs to its last commit; if that fails (a transient broker error),
/// the task is dropped and reopened shortly, which rewinds again — never processes on from
/// a position that does not match its state.
fn reopen_on_rewind_failure(shared: &Shared, consumer: &mut dyn storeflow_ingest::Consumer, inputs: &[String], p: u32) {
    if let Err(e) = rewind_inputs(shared, consumer, inputs, p) {
        tracing::warn!(processor = shared.name, partition = p, error = %e, "rewinding a task failed; reopening it in 1 s");
        if let Some(mut t) = shared.tasks.lock().remove(&p) {
            let _ = t.txn.abort();
        }
        shared.unopened.lock().insert(p, Instant::now() + Duration::from_secs(1));
    }
}

/// Moves the consumer back to the committed offsets of task `p`'s input partitions.
fn rewind_inputs(shared: &Shared, consumer: &mut dyn storeflow_ingest::Consumer, inputs: &[String], p: u32) -> Result<()> {
    let tps: Vec<TopicPartition> = inputs.iter().map(|t| TopicPartition::new(t, p)).collect();
    let committed = shared.log.committed_offsets(&shared.group(), &tps)?;
    let marks = shared.log.watermarks(&tps)?;
    for ((tp, c), (start, _)) in tps.iter().zip(committed).zip(marks) {
        if consumer.assignment().contains(tp) {
            consumer.seek(tp, c.unwrap_or(start))?;
        }
    }
    Ok(())
}

/// Ends of input partitions, refreshed at most every 200 ms, to tell a lagging input (more
/// records to fetch) from a caught-up one.
struct EndCache {
    log: Arc<dyn Log>,
    ends: std::cell::RefCell<(Instant, BTreeMap<TopicPartition, u64>)>,
}

impl EndCache {
    fn new(log: Arc<dyn Log>) -> Self {
        EndCache { log, ends: std::cell::RefCell::new((Instant::now() - Duration::from_secs(1), BTreeMap::new())) }
    }

    /// True when `tp` has records the consumer has not fetched yet.
    fn lags(&self, consumer: &dyn storeflow_ingest::Consumer, tp: &TopicPartition) -> bool {
        let Some(pos) = consumer.position(tp) else { return false };
        let mut cache = self.ends.borrow_mut();
        let stale = cache.0.elapsed() > Duration::from_millis(200);
        if stale || !cache.1.contains_key(tp) {
            let tps: Vec<TopicPartition> = consumer.assignment();
            if let Ok(marks) = self.log.watermarks(&tps) {
                cache.1 = tps.into_iter().zip(marks).map(|(tp, (_, end))| (tp, end)).collect();
                cache.0 = Instant::now();
            }
        }
        // Kafka's last offset may be a transaction marker that is never fetched.
        cache.1.get(tp).is_some_and(|end| pos + 1 < *end)
    }
}

/// Handles one record, retrying transient failures with capped back-off. False when asked
/// to stop while retrying.
fn handle_with_retries(
    processor: &mut dyn DynProcessor,
    t: &mut RtTask,
    codec: &Arc<Codec>,
    rec: &Record,
    shared: &Shared,
    stop: &AtomicBool,
) -> bool {
    let mut backoff = Duration::from_millis(10);
    loop {
        match processor.handle(&mut t.core, codec, rec) {
            Outcome::Done | Outcome::DeadLettered(_) => return true,
            Outcome::Retry(reason) => {
                tracing::warn!(processor = shared.name, topic = %rec.topic, partition = rec.partition, offset = rec.offset, %reason, retry_in = ?backoff, "transient failure; retrying the same record");
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(shared.config.max_backoff);
            }
        }
    }
}
