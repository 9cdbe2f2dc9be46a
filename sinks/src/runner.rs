//! The loop every sink runs on: consume, batch, write idempotently, retry, dead-letter,
//! commit.
//!
//! One thread per sink owns a plain (non-transactional) consumer in the group
//! `<app>.sink.<name>` and a producer for dead letters. Records are buffered until the
//! sink's batch size or batch time is reached, decoded, and handed to [`Sink::write`] in
//! log order. Then:
//!
//! - **transient failure** (the sink's `service.rs` says [`Retry::Transient`]): the same batch
//!   is tried again with exponential back-off capped at `max_backoff`, and nothing is
//!   committed meanwhile — the offsets are held, so a crash now re-reads the batch;
//! - **permanent failure** ([`Retry::Permanent`]): the batch is split in halves and each half
//!   written on its own, down to the single record that can never be written, which goes to
//!   `<topic>.dlq` with the reason (headers of `storeflow_ingest::dlq::headers`, the
//!   sink's name as the processor) — the rest of the stream carries on;
//! - a record that does not decode goes to the dead-letter topic straight away.
//!
//! Only after the write returned (durable in the store) and the dead letters are
//! acknowledged are the offsets committed. A crash between the write and the commit makes
//! the next owner write the batch again, which is why every sink's write is idempotent
//! (upsert by entity id, per-partition offset high-water marks, or `_bulk` with external
//! versions): at-least-once delivery plus idempotent writes is effectively once.
//!
//! On a rebalance, buffered records of revoked partitions are dropped (nothing written is
//! ever left uncommitted when `poll` runs, so there is nothing to commit), and the sink
//! hears of newly assigned partitions before its next write ([`Sink::assigned`]).
//!
//! **Reading ahead.** A sink that joins its records with reference data (exchange rates,
//! the catalogue: [`Sink::reference_topics`]) gets a second consumer, outside its group,
//! over every partition of those topics. Before each write it is read to the partitions'
//! end as the log has it then, and its records go to [`Sink::refer`] — the sink's in-memory
//! view only, nothing is written or committed for them (the main subscription delivers the
//! same records to `write`, which writes their own rows). Its positions are kept, so each
//! write reads only what is new. Every record of the batch was on the log before that end,
//! so the view has seen at least what the subscription has, and in a replay of a finished
//! log it has seen all of it before the first write: the joins no longer depend on how the
//! subscription interleaved the topics (see [`crate::reference`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use storeflow_avro::{Codec, Event, Topic};
use storeflow_ingest::{Backoff, 
    Consumer, ConsumerConfig, Log, OffsetCommitter, OffsetReset, ProduceRecord, RebalanceListener, Record,
    TopicPartition, TopicSpec,
};
use tokio::runtime::Handle;

use crate::metrics::{PartitionLabels, SinkMetrics};
use crate::{Result, Retry, SinkError};

/// One decoded record handed to a sink.
#[derive(Clone, Debug)]
pub struct Item {
    /// Topic it was read from.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: u32,
    /// Offset in the partition.
    pub offset: u64,
    /// Record timestamp (ms).
    pub timestamp: i64,
    /// The event.
    pub event: Event,
}

impl Item {
    /// `topic/partition`, the key of per-partition offset high-water marks.
    pub fn source(&self) -> String {
        format!("{}/{}", self.topic, self.partition)
    }

    /// The record's place in the log as one number that orders like `(partition, offset)`:
    /// `partition × 2⁴⁸ + offset`. Sinks keep, per entity of a source topic, the state of
    /// the record with the highest position, because one entity's events all live in one
    /// partition in processing order (they are keyed by the entity) — event time
    /// (`occurred_at`) is data and decides nothing. Exact for partitions below 32,768 and
    /// offsets below 2⁴⁸ (281 trillion); beyond that it saturates at `i64::MAX`.
    pub fn position(&self) -> i64 {
        position(self.partition, self.offset)
    }

    /// An item as if read from `topic`/`partition` at `offset` (tests and benchmarks).
    pub fn new(event: Event, partition: u32, offset: u64) -> Item {
        Item {
            topic: Arc::from(event.topic().name()),
            partition,
            offset,
            timestamp: event.occurred_at().millis(),
            event,
        }
    }
}

/// `partition × 2⁴⁸ + offset`, saturating at `i64::MAX` (see [`Item::position`]).
pub fn position(partition: u32, offset: u64) -> i64 {
    const OFFSET_BITS: u32 = 48;
    if offset >= 1 << OFFSET_BITS || partition >= 1 << (63 - OFFSET_BITS) {
        return i64::MAX;
    }
    (i64::from(partition) << OFFSET_BITS) | offset as i64
}

/// A sink: what the runner needs from one. Writes must be idempotent: writing the same
/// items again, or a batch that overlaps one written before, changes nothing.
///
/// The methods are `async` and are driven by the runner's thread with `Handle::block_on`,
/// so their futures need not be `Send`.
#[allow(async_fn_in_trait)]
pub trait Sink: Send + 'static {
    /// Topics the sink reads.
    fn topics(&self) -> Vec<Topic>;
    /// Batch size and time.
    fn batching(&self) -> Batching;
    /// True if the sink writes something for `event` (others are skipped and committed).
    fn wants(&self, event: &Event) -> bool;
    /// The one function that decides retry-or-give-up (the sink's `service.rs`).
    fn retry(&self, err: &SinkError) -> Retry;
    /// Partitions newly assigned to this instance: drop per-partition caches for them.
    async fn assigned(&mut self, partitions: &[TopicPartition]) -> Result<()>;
    /// Writes `items` (in log order) durably and idempotently.
    async fn write(&mut self, items: &[Item]) -> Result<()>;
    /// Topics whose records the sink joins its other records with (reference data, such as
    /// [`crate::reference::TOPICS`]): the runner reads every partition of them ahead of each
    /// write and hands the records to [`Sink::refer`]. Empty (the default): nothing is
    /// joined.
    fn reference_topics(&self) -> Vec<Topic> {
        Vec::new()
    }
    /// Reference records read ahead, in log order per partition (partitions interleaved in
    /// any order, and a record may come again): apply them to the in-memory view only.
    fn refer(&mut self, _items: &[Item]) {}
}

/// Batching of one sink: flush after `max_batch` records or `max_wait` since the first
/// buffered one, whichever comes first.
#[derive(Clone, Copy, Debug)]
pub struct Batching {
    /// Records per write.
    pub max_batch: usize,
    /// Longest a record waits in the buffer.
    pub max_wait: Duration,
}

impl Batching {
    /// `max_batch` records or `max_wait_ms` milliseconds (at least 1), as the sinks'
    /// configurations give them.
    pub fn new(max_batch: usize, max_wait_ms: u64) -> Batching {
        Batching { max_batch, max_wait: Duration::from_millis(max_wait_ms.max(1)) }
    }
}

/// How the runner runs a sink.
#[derive(Clone, Debug)]
pub struct RunnerSettings {
    /// The sink's name (`Registered::NAME`): thread name, metrics label, the dead letters'
    /// `storeflow.dlq.processor`.
    pub name: &'static str,
    /// Consumer group.
    pub group: String,
    /// This instance's stable name: on Kafka, static membership of the group
    /// (`group.instance.id = <group>.<instance>`).
    pub instance: Option<String>,
    /// Records per poll.
    pub max_poll: usize,
    /// Longest back-off between tries.
    pub max_backoff: Duration,
    /// Longest a write may take before it counts as a transient failure.
    pub write_timeout: Duration,
    /// Dead letters already on the log, not to be published again (a rebuild reads records
    /// that went to the dead-letter topic the first time); `None` for a sink that runs.
    pub known_dead: Option<Arc<KnownDead>>,
}

/// Dead letters a sink published before, by the record they stand for: a rebuild
/// ([`crate::rebuild`]) reads the log again, and a record that could not be written then
/// cannot be now — it is counted here instead of being dead-lettered twice.
#[derive(Debug, Default)]
pub struct KnownDead {
    /// `(topic, partition, offset)` of each record already dead-lettered by this sink.
    pub records: std::collections::HashSet<(String, u32, u64)>,
    /// How many of them came up again.
    pub met: AtomicU64,
}

/// A running sink thread.
pub struct SinkThread {
    /// Sink name.
    pub name: &'static str,
    /// Its consumer group.
    pub group: String,
    /// Its input topics.
    pub topics: Vec<String>,
    /// Set when the thread ended with an error.
    pub failure: Arc<Mutex<Option<String>>>,
    /// Whether the sink runs (for readiness probes): false while it waits for a restart.
    pub alive: storeflow_ingest::threads::Liveness,
    /// How often it was restarted after its loop ended.
    pub restarts: Arc<AtomicU64>,
    pub(crate) thread: Option<JoinHandle<()>>,
}

/// Creates the input and dead-letter topics that do not exist yet.
pub fn ensure_topics(log: &dyn Log, topics: &[Topic]) -> Result<()> {
    let existing: Vec<String> = log.describe_topics()?.into_iter().map(|t| t.name).collect();
    let mut specs = Vec::new();
    for t in topics {
        if !existing.iter().any(|e| e == t.name()) {
            specs.push(TopicSpec::new(t.name(), t.default_partitions()));
        }
        if !existing.iter().any(|e| *e == t.dlq_name()) {
            specs.push(TopicSpec::new(&t.dlq_name(), 1));
        }
    }
    if !specs.is_empty() {
        log.create_topics(&specs)?;
    }
    Ok(())
}

/// Starts `sink` on its own thread.
pub fn spawn<S: Sink>(
    sink: S,
    log: Arc<dyn Log>,
    codec: Arc<Codec>,
    rt: Handle,
    settings: RunnerSettings,
    metrics: SinkMetrics,
    stop: Arc<AtomicBool>,
) -> Result<SinkThread> {
    let topics = sink.topics();
    ensure_topics(log.as_ref(), &topics)?;
    let names: Vec<String> = topics.iter().map(|t| t.name().to_string()).collect();
    let (consumer, rebalance) = subscribe(log.as_ref(), &settings, &names)?;
    let producer = log.producer()?;
    let name = settings.name;
    let reference = sink.reference_topics();
    let read_ahead = if reference.is_empty() { None } else { Some(ReadAhead::open(log.as_ref(), &settings.group, &reference)?) };
    let failure = Arc::new(Mutex::new(None));
    let mut runner = Runner {
        batching: sink.batching(),
        sink,
        log,
        codec,
        rt,
        settings: settings.clone(),
        metrics,
        stop,
        consumer,
        producer,
        rebalance,
        last_lag: Instant::now() - Duration::from_secs(10),
        committed: HashMap::new(),
        read_ahead,
    };
    let fail = failure.clone();
    let alive = storeflow_ingest::threads::Liveness::starting();
    let guard = alive.guard();
    let restarts = Arc::new(AtomicU64::new(0));
    let (up, restarted) = (alive.clone(), restarts.clone());
    let thread = std::thread::Builder::new()
        .name(format!("sink-{name}"))
        .spawn(move || {
            let _alive = guard;
            supervise(&mut runner, &fail, &up, &restarted);
            let Runner { consumer, read_ahead, .. } = runner;
            if let Err(e) = consumer.close() {
                tracing::warn!(sink = name, "closing the consumer: {e}");
            }
            if let Some(Err(e)) = read_ahead.map(|r| r.consumer.close()) {
                tracing::warn!(sink = name, "closing the reference consumer: {e}");
            }
        })
        .map_err(SinkError::io(format!("starting the {name} sink thread")))?;
    Ok(SinkThread { name, group: settings.group, topics: names, failure, alive, restarts, thread: Some(thread) })
}

/// A consumer of `group` subscribed to `topics`, with the rebalances it sees.
fn subscribe(log: &dyn Log, settings: &RunnerSettings, topics: &[String]) -> Result<(Box<dyn storeflow_ingest::Consumer>, Arc<Mutex<Rebalance>>)> {
    let rebalance = Arc::new(Mutex::new(Rebalance::default()));
    let mut cfg = ConsumerConfig::new(&settings.group);
    cfg.reset = OffsetReset::Earliest;
    if let Some(instance) = &settings.instance {
        cfg.properties.push(("group.instance.id".into(), format!("{}.{instance}", settings.group)));
    }
    let mut consumer = log.consumer(cfg, Some(Box::new(Listener(rebalance.clone()))))?;
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&refs)?;
    Ok((consumer, rebalance))
}

const RESTART_FIRST: Duration = Duration::from_secs(1);
const RESTART_MAX: Duration = Duration::from_secs(60);

/// Runs the sink until it is asked to stop. When its loop ends otherwise — an error it
/// could not get past, or a panic outside a write (a write's panic is that record's dead
/// letter) — the sink is marked down (`/readyz` names it), reconnected to the log after a
/// back-off (1 s doubling to 60 s; back to 1 s after 5 minutes up) and goes on from its
/// group's last commit, as after a crash: nothing written after that commit was committed.
fn supervise<S: Sink>(runner: &mut Runner<S>, failure: &Mutex<Option<String>>, alive: &storeflow_ingest::threads::Liveness, restarts: &AtomicU64) {
    let name = runner.settings.name;
    let stop = runner.stop.clone();
    let mut backoff = Backoff::new(RESTART_FIRST, RESTART_MAX);
    loop {
        let up_since = Instant::now();
        let why = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runner.run())) {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(p) => format!("panic: {}", storeflow_ingest::threads::panic_message(&*p)),
        };
        *failure.lock() = Some(why.clone());
        if stop.load(Ordering::SeqCst) {
            tracing::error!(sink = name, "sink stopped: {why}");
            return;
        }
        alive.set(false);
        if up_since.elapsed() > Duration::from_secs(300) {
            backoff.reset();
        }
        tracing::error!(sink = name, error = %why, restart_in = ?backoff.peek(), "a sink stopped; restarting it");
        loop {
            let until = Instant::now() + backoff.next();
            while Instant::now() < until {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            match runner.reconnect() {
                Ok(()) => break,
                Err(e) => tracing::error!(sink = name, error = %e, restart_in = ?backoff.peek(), "restarting the sink failed"),
            }
        }
        restarts.fetch_add(1, Ordering::Relaxed);
        *failure.lock() = None;
        alive.set(true);
        tracing::warn!(sink = name, "the sink restarted");
    }
}

impl SinkThread {
    /// Waits for the thread to end (after the stop flag was set).
    pub fn join(&mut self) {
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            *self.failure.lock() = Some(format!("the {} sink thread panicked", self.name));
        }
    }
}

#[derive(Default)]
struct Rebalance {
    revoked: Vec<TopicPartition>,
    assigned: Vec<TopicPartition>,
}

struct Listener(Arc<Mutex<Rebalance>>);

impl RebalanceListener for Listener {
    fn on_revoked(&mut self, partitions: &[TopicPartition], _committer: &mut dyn OffsetCommitter) {
        // Everything written has been committed before `poll` runs; buffered records of
        // these partitions are dropped by the loop (their next owner reads them again).
        self.0.lock().revoked.extend_from_slice(partitions);
    }

    fn on_assigned(&mut self, partitions: &[TopicPartition]) {
        self.0.lock().assigned.extend_from_slice(partitions);
    }
}

/// How long a write waits for the reference topics to be read to their end before it goes
/// ahead with what was read (a read_committed consumer cannot pass an open transaction).
const READ_AHEAD_PATIENCE: Duration = Duration::from_secs(5);

/// The second consumer of a sink with reference topics: every partition of them, assigned
/// (outside the sink's group, never committing), positions kept between writes.
struct ReadAhead {
    consumer: Box<dyn Consumer>,
    partitions: Vec<TopicPartition>,
    /// Reference records applied so far.
    applied: u64,
    /// Set once the first catch-up is done (it reads the topics from their start).
    caught_up: bool,
}

impl ReadAhead {
    fn open(log: &dyn Log, group: &str, topics: &[Topic]) -> Result<ReadAhead> {
        let names: Vec<&str> = topics.iter().map(|t| t.name()).collect();
        let partitions: Vec<TopicPartition> = log
            .describe_topics()?
            .into_iter()
            .filter(|t| names.contains(&t.name.as_str()))
            .flat_map(|t| (0..t.partitions.len() as u32).map(move |p| TopicPartition::new(&t.name, p)))
            .collect();
        let starts = log.watermarks(&partitions)?;
        let mut consumer = log.consumer(ConsumerConfig::new(&format!("{group}.reference")), None)?;
        let from: Vec<(TopicPartition, u64)> = partitions.iter().cloned().zip(starts.into_iter().map(|(start, _)| start)).collect();
        consumer.assign(&from)?;
        Ok(ReadAhead { consumer, partitions, applied: 0, caught_up: false })
    }

    /// Reads every partition to the end it has now and hands the records to `sink`.
    fn catch_up<S: Sink>(&mut self, log: &dyn Log, codec: &Codec, name: &str, sink: &mut S, max_poll: usize) -> Result<()> {
        let ends = log.watermarks(&self.partitions)?;
        // On Kafka a transaction's commit marker takes the last offset and is never fetched.
        let slack = u64::from(log.backend() == "kafka");
        let deadline = Instant::now() + READ_AHEAD_PATIENCE;
        loop {
            let behind = self.partitions.iter().zip(&ends).any(|(tp, (_, end))| self.consumer.position(tp).unwrap_or(0) + slack < *end);
            if !behind {
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!(sink = name, "the reference topics were not read to their end in {READ_AHEAD_PATIENCE:?}; writing with what was read");
                break;
            }
            let records = self.consumer.poll(max_poll, Duration::from_millis(50))?;
            let items: Vec<Item> = records
                .into_iter()
                .filter_map(|r| {
                    // A record that does not decode is dead-lettered by the main subscription.
                    let event = codec.decode(r.value.as_ref()?).ok()?;
                    Some(Item { topic: r.topic, partition: r.partition, offset: r.offset, timestamp: r.timestamp, event })
                })
                .collect();
            if !items.is_empty() {
                self.applied += items.len() as u64;
                sink.refer(&items);
            }
        }
        if !self.caught_up {
            self.caught_up = true;
            tracing::info!(sink = name, records = self.applied, "read the reference topics ahead");
        }
        Ok(())
    }
}

struct Runner<S: Sink> {
    sink: S,
    batching: Batching,
    log: Arc<dyn Log>,
    codec: Arc<Codec>,
    rt: Handle,
    settings: RunnerSettings,
    metrics: SinkMetrics,
    stop: Arc<AtomicBool>,
    consumer: Box<dyn storeflow_ingest::Consumer>,
    producer: Box<dyn storeflow_ingest::Producer>,
    rebalance: Arc<Mutex<Rebalance>>,
    last_lag: Instant,
    /// What this instance last committed (or found committed) per assigned partition.
    committed: HashMap<TopicPartition, u64>,
    /// The reference topics' consumer, for a sink that has some.
    read_ahead: Option<ReadAhead>,
}

/// The batch was abandoned because the sinks are stopping.
struct Stopping;

impl<S: Sink> Runner<S> {
    /// New connections to the log for a restart: the old consumer leaves the group, a new
    /// one joins it (and is assigned, then resumes from the committed offsets).
    fn reconnect(&mut self) -> Result<()> {
        let names: Vec<String> = self.sink.topics().iter().map(|t| t.name().to_string()).collect();
        if let Some(r) = self.read_ahead.take()
            && let Err(e) = r.consumer.close()
        {
            tracing::warn!(sink = self.settings.name, "closing the reference consumer: {e}");
        }
        let (consumer, rebalance) = subscribe(self.log.as_ref(), &self.settings, &names)?;
        let old = std::mem::replace(&mut self.consumer, consumer);
        if let Err(e) = old.close() {
            tracing::warn!(sink = self.settings.name, "closing the consumer: {e}");
        }
        self.rebalance = rebalance;
        self.producer = self.log.producer()?;
        self.committed.clear();
        let reference = self.sink.reference_topics();
        self.read_ahead = if reference.is_empty() { None } else { Some(ReadAhead::open(self.log.as_ref(), &self.settings.group, &reference)?) };
        Ok(())
    }

    fn run(&mut self) -> Result<()> {
        let mut buffer: Vec<Record> = Vec::new();
        let mut first_at: Option<Instant> = None;
        loop {
            let stopping = self.stop.load(Ordering::SeqCst);
            let due = first_at.is_some_and(|t| t.elapsed() >= self.batching.max_wait);
            if !buffer.is_empty() && (stopping || due || buffer.len() >= self.batching.max_batch) {
                let batch = std::mem::take(&mut buffer);
                first_at = None;
                if self.flush(batch).is_err() {
                    return Ok(()); // stopping while the store is down: nothing committed
                }
            }
            if stopping {
                return Ok(());
            }
            let wait = match first_at {
                Some(t) => self.batching.max_wait.saturating_sub(t.elapsed()).min(Duration::from_millis(100)),
                None => Duration::from_millis(100),
            };
            let room = self.batching.max_batch.saturating_sub(buffer.len()).clamp(1, self.settings.max_poll);
            let records = match self.consumer.poll(room, wait.max(Duration::from_millis(1))) {
                Ok(r) => r,
                Err(e) if e.is_retriable() => {
                    tracing::warn!(sink = self.settings.name, "poll: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            self.after_rebalance(&mut buffer)?;
            if !records.is_empty() {
                if first_at.is_none() {
                    first_at = Some(Instant::now());
                }
                buffer.extend(records);
            }
            if buffer.is_empty() {
                first_at = None;
            }
            if self.last_lag.elapsed() >= Duration::from_secs(1) {
                if buffer.is_empty() {
                    self.commit_idle_positions();
                }
                self.update_lag();
            }
        }
    }

    fn after_rebalance(&mut self, buffer: &mut Vec<Record>) -> Result<()> {
        let (revoked, assigned) = {
            let mut r = self.rebalance.lock();
            (std::mem::take(&mut r.revoked), std::mem::take(&mut r.assigned))
        };
        for tp in revoked.iter().chain(&assigned) {
            self.committed.remove(tp);
        }
        if !revoked.is_empty() {
            buffer.retain(|r| !revoked.iter().any(|tp| *tp.topic == *r.topic && tp.partition == r.partition));
        }
        if !assigned.is_empty() {
            loop {
                let timeout = self.settings.write_timeout;
                let done = self.rt.block_on(async { tokio::time::timeout(timeout, self.sink.assigned(&assigned)).await });
                let done = done.unwrap_or_else(|_| Err(SinkError::Timeout(format!("preparing assigned partitions: the store did not answer within {timeout:?} (write_timeout_ms)"))));
                match done {
                    Ok(()) => break,
                    Err(e) if self.stop.load(Ordering::SeqCst) => return Err(e),
                    Err(e) => {
                        tracing::warn!(sink = self.settings.name, "preparing assigned partitions: {e}; retrying");
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }
            }
        }
        Ok(())
    }

    /// With nothing buffered, every record before the consumer's position is written (or
    /// had nothing to write): commit the positions that moved past the last commit. This is
    /// what moves the group over Kafka transaction markers (a processor's output ends with
    /// one), which take an offset but are never handed out as records, so the group's lag
    /// can reach zero.
    fn commit_idle_positions(&mut self) {
        let tps = self.consumer.assignment();
        let unknown: Vec<TopicPartition> = tps.iter().filter(|tp| !self.committed.contains_key(*tp)).cloned().collect();
        if !unknown.is_empty() {
            let Ok(found) = self.log.committed_offsets(&self.settings.group, &unknown) else { return };
            for (tp, c) in unknown.into_iter().zip(found) {
                self.committed.insert(tp, c.unwrap_or(0));
            }
        }
        let moved: Vec<(TopicPartition, u64)> = tps
            .into_iter()
            .filter_map(|tp| {
                let pos = self.consumer.position(&tp)?;
                (pos > self.committed.get(&tp).copied().unwrap_or(0)).then_some((tp, pos))
            })
            .collect();
        if moved.is_empty() {
            return;
        }
        match self.consumer.commit(&moved) {
            Ok(()) => self.committed.extend(moved),
            Err(e) => tracing::debug!(sink = self.settings.name, "committing idle positions: {e}; trying again later"),
        }
    }

    fn update_lag(&mut self) {
        self.last_lag = Instant::now();
        let tps = self.consumer.assignment();
        if tps.is_empty() {
            return;
        }
        let (Ok(ends), Ok(committed)) =
            (self.log.watermarks(&tps), self.log.committed_offsets(&self.settings.group, &tps))
        else {
            return;
        };
        for ((tp, (start, end)), c) in tps.iter().zip(ends).zip(committed) {
            let at = c.unwrap_or(start).max(start);
            self.metrics
                .lag
                .get_or_create(&PartitionLabels {
                    sink: self.settings.name.to_string(),
                    topic: tp.topic.to_string(),
                    partition: tp.partition.to_string(),
                })
                .set(end.saturating_sub(at) as i64);
        }
    }

    /// Writes one batch and commits it. `Err` only when stopping abandoned the batch.
    fn flush(&mut self, records: Vec<Record>) -> std::result::Result<(), Stopping> {
        let name = self.settings.name;
        // Every log line of the batch (retries, dead letters) carries it.
        let _span = tracing::info_span!("sink_batch", sink = name, records = records.len()).entered();
        let started = Instant::now();
        let mut dead: Vec<(usize, String)> = Vec::new();
        let mut items: Vec<(usize, Item)> = Vec::with_capacity(records.len());
        let mut skipped = 0u64;
        for (i, r) in records.iter().enumerate() {
            let Some(value) = &r.value else {
                skipped += 1;
                continue;
            };
            match self.codec.decode(value) {
                Ok(event) if self.sink.wants(&event) => match event.check() {
                    Ok(()) => items.push((
                        i,
                        Item { topic: r.topic.clone(), partition: r.partition, offset: r.offset, timestamp: r.timestamp, event },
                    )),
                    // The contract's value rules, as the processors apply them.
                    Err(reason) => dead.push((i, format!("the contract refuses the record: {reason}"))),
                },
                Ok(_) => skipped += 1,
                Err(e) => dead.push((i, format!("cannot decode the record: {e}"))),
            }
        }
        self.metrics.batch_records.get_or_create(&SinkMetrics::sink(name)).observe(records.len() as f64);
        self.metrics.skipped.get_or_create(&SinkMetrics::sink(name)).inc_by(skipped);
        if !items.is_empty() {
            self.read_ahead()?;
        }
        self.write_all(&items, &mut dead)?;
        if !dead.is_empty() {
            self.dead_letter(&records, &dead)?;
        }
        self.commit(&records)?;
        self.metrics.write_seconds.get_or_create(&SinkMetrics::sink(name)).observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Brings the sink's reference view up to the log's end (nothing for a sink without
    /// reference topics), retrying while the log fails.
    fn read_ahead(&mut self) -> std::result::Result<(), Stopping> {
        let mut backoff = Backoff::new(Duration::from_millis(100), self.settings.max_backoff);
        loop {
            let result = match &mut self.read_ahead {
                Some(ra) => ra.catch_up(self.log.as_ref(), &self.codec, self.settings.name, &mut self.sink, self.settings.max_poll),
                None => return Ok(()),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(sink = self.settings.name, "reading the reference topics ahead: {e}; retrying in {:?}, offsets held", backoff.peek());
                    self.sleep(backoff.next())?;
                }
            }
        }
    }

    /// Writes `items`, retrying transient failures and bisecting permanent ones down to the
    /// records that can never be written (added to `dead`).
    fn write_all(&mut self, items: &[(usize, Item)], dead: &mut Vec<(usize, String)>) -> std::result::Result<(), Stopping> {
        if items.is_empty() {
            return Ok(());
        }
        let name = self.settings.name;
        let batch: Vec<Item> = items.iter().map(|(_, it)| it.clone()).collect();
        let mut backoff = Backoff::new(Duration::from_millis(100), self.settings.max_backoff);
        let mut tries = 0u32;
        loop {
            // A panic while writing is the batch's failure, as a permanent error is: it is
            // bisected down to the record that panics, which goes to the DLQ.
            // A store that never answers must not hold the sink for good: past the write
            // timeout the write is abandoned and tried again like any transient failure
            // (writes are idempotent, so one that landed after all changes nothing).
            let timeout = self.settings.write_timeout;
            let result = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.rt.block_on(async { tokio::time::timeout(timeout, self.sink.write(&batch)).await }))) {
                Ok(Ok(result)) => result,
                Ok(Err(_elapsed)) => {
                    self.metrics.errors.get_or_create(&SinkMetrics::error(name, "timeout")).inc();
                    tries += 1;
                    if tries == 1 || tries.is_power_of_two() {
                        tracing::warn!(sink = name, "write of {} records took longer than {timeout:?} (try {tries}): the store does not answer; retrying in {:?}, offsets held", batch.len(), backoff.peek());
                    }
                    self.sleep(backoff.next())?;
                    continue;
                }
                Err(panic) => {
                    let reason = format!("panic: {}", storeflow_ingest::threads::panic_message(&*panic));
                    self.metrics.errors.get_or_create(&SinkMetrics::error(name, "panic")).inc();
                    if items.len() == 1 {
                        let it = &items[0].1;
                        tracing::error!(sink = name, "{} at {}/{}@{} made the sink panic: {reason}; to the DLQ", it.event.name(), it.topic, it.partition, it.offset);
                        dead.push((items[0].0, reason));
                        return Ok(());
                    }
                    let mid = items.len() / 2;
                    self.write_all(&items[..mid], dead)?;
                    return self.write_all(&items[mid..], dead);
                }
            };
            let err = match result {
                Ok(()) => {
                    self.metrics.written.get_or_create(&SinkMetrics::sink(name)).inc_by(batch.len() as u64);
                    if tries > 0 {
                        tracing::info!(sink = name, "write succeeded after {tries} retries");
                    }
                    return Ok(());
                }
                Err(e) => e,
            };
            match self.sink.retry(&err) {
                Retry::Transient => {
                    self.metrics.errors.get_or_create(&SinkMetrics::error(name, "transient")).inc();
                    tries += 1;
                    if tries == 1 || tries.is_power_of_two() {
                        tracing::warn!(sink = name, "write of {} records failed (try {tries}): {err}; retrying in {:?}, offsets held", batch.len(), backoff.peek());
                    }
                    self.sleep(backoff.next())?;
                }
                Retry::Permanent => {
                    self.metrics.errors.get_or_create(&SinkMetrics::error(name, "permanent")).inc();
                    if items.len() == 1 {
                        let it = &items[0].1;
                        tracing::warn!(sink = name, "{} at {}/{}@{} can never be written: {err}; to the DLQ", it.event.name(), it.topic, it.partition, it.offset);
                        dead.push((items[0].0, err.to_string()));
                        return Ok(());
                    }
                    let mid = items.len() / 2;
                    self.write_all(&items[..mid], dead)?;
                    return self.write_all(&items[mid..], dead);
                }
            }
        }
    }

    fn sleep(&self, d: Duration) -> std::result::Result<(), Stopping> {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.stop.load(Ordering::SeqCst) {
                return Err(Stopping);
            }
            std::thread::sleep(Duration::from_millis(20).min(until.saturating_duration_since(Instant::now())));
        }
        Ok(())
    }

    fn dead_letter(&mut self, records: &[Record], dead: &[(usize, String)]) -> std::result::Result<(), Stopping> {
        let name = self.settings.name;
        let now = chrono::Utc::now().timestamp_millis();
        let fresh = |r: &Record| match &self.settings.known_dead {
            Some(k) if k.records.contains(&(r.topic.to_string(), r.partition, r.offset)) => {
                k.met.fetch_add(1, Ordering::Relaxed);
                false
            }
            _ => true,
        };
        let out: Vec<ProduceRecord> = dead
            .iter()
            .filter(|(i, _)| fresh(&records[*i]))
            .map(|(i, reason)| storeflow_ingest::dlq::dead_letter(name, &records[*i], reason, now))
            .collect();
        if out.is_empty() {
            return Ok(());
        }
        let mut backoff = Backoff::new(Duration::from_millis(100), self.settings.max_backoff);
        loop {
            let sent = self.producer.send_batch(out.clone()).and_then(|acks| acks.into_iter().try_for_each(|a| a.wait().map(|_| ())));
            match sent {
                Ok(()) => {
                    self.metrics.dlq.get_or_create(&SinkMetrics::sink(name)).inc_by(out.len() as u64);
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(sink = name, "sending {} dead letters failed: {e}; retrying", out.len());
                    self.sleep(backoff.next())?;
                }
            }
        }
    }

    fn commit(&mut self, records: &[Record]) -> std::result::Result<(), Stopping> {
        let mut next: BTreeMap<TopicPartition, u64> = BTreeMap::new();
        for r in records {
            let e = next.entry(r.tp()).or_insert(0);
            *e = (*e).max(r.offset + 1);
        }
        let offsets: Vec<(TopicPartition, u64)> = next.into_iter().collect();
        let mut backoff = Backoff::new(Duration::from_millis(100), self.settings.max_backoff);
        loop {
            match self.consumer.commit(&offsets) {
                Ok(()) => {
                    self.committed.extend(offsets);
                    return Ok(());
                }
                Err(e) if e.is_retriable() => {
                    tracing::warn!(sink = self.settings.name, "commit failed: {e}; retrying");
                    self.sleep(backoff.next())?;
                }
                Err(e) => {
                    // Typically a rebalance moved the partitions: their new owner re-reads
                    // from the last commit and rewrites idempotently.
                    tracing::warn!(sink = self.settings.name, "commit refused: {e}; the partitions' next owner writes the batch again");
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps the order ids it wrote; panics on order `O-panic`.
    struct Panicky(Arc<Mutex<Vec<String>>>);

    impl Sink for Panicky {
        fn topics(&self) -> Vec<Topic> {
            vec![Topic::Orders]
        }
        fn batching(&self) -> Batching {
            Batching { max_batch: 100, max_wait: Duration::from_millis(20) }
        }
        fn wants(&self, _: &Event) -> bool {
            true
        }
        fn retry(&self, _: &SinkError) -> Retry {
            Retry::Transient
        }
        async fn assigned(&mut self, _: &[TopicPartition]) -> Result<()> {
            Ok(())
        }
        async fn write(&mut self, items: &[Item]) -> Result<()> {
            let ids: Vec<String> = items.iter().map(|it| it.event.event_id().to_string()).collect();
            if let Some(i) = items.iter().find(|it| matches!(&it.event, Event::OrderCancelRequested(c) if c.order_id == "O-panic")) {
                panic!("planted panic at offset {}", i.offset);
            }
            self.0.lock().extend(ids);
            Ok(())
        }
    }

    #[test]
    fn a_record_that_makes_a_sink_panic_is_dead_lettered_with_the_panic_and_the_others_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn Log> = Arc::new(storeflow_ingest::EmbeddedLog::open(dir.path()).unwrap());
        log.create_topics(&[TopicSpec::new(Topic::Orders.name(), 1)]).unwrap();
        let codec = Arc::new(Codec::embedded().unwrap());
        let publisher = storeflow_ingest::publish::Publisher::new(log.as_ref(), codec.clone(), std::sync::Arc::new(storeflow_avro::pii::Vault::in_memory())).unwrap();
        let mut events = Vec::new();
        for id in ["O-1", "O-2", "O-panic", "O-3"] {
            let e = storeflow_avro::json::event_from_json(
                serde_json::json!({"type": "OrderCancelRequested", "order_id": id, "requested_by": "customer", "reason": "test"}),
                storeflow_avro::JsonOptions { fill_missing_ids: true, inputs_only: false },
            )
            .unwrap();
            events.push(e);
        }
        for d in publisher.publish_batch(&events).unwrap() {
            d.wait().unwrap();
        }
        let written = Arc::new(Mutex::new(Vec::new()));
        let rt = tokio::runtime::Runtime::new().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let settings = RunnerSettings { name: "panicky", group: "t.panicky".into(), instance: None, max_poll: 100, max_backoff: Duration::from_millis(100), write_timeout: Duration::from_secs(30), known_dead: None };
        let mut thread = spawn(Panicky(written.clone()), log.clone(), codec, rt.handle().clone(), settings, SinkMetrics::unregistered(), stop.clone()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let dlq = storeflow_avro::dlq_topic(Topic::Orders.name());
        while written.lock().len() < 3 || log.describe_topics().unwrap().iter().find(|t| t.name == dlq).is_none_or(|t| t.records() < 1) {
            assert!(Instant::now() < deadline, "written {:?}", written.lock());
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::SeqCst);
        thread.join();
        assert!(thread.failure.lock().is_none(), "the sink thread failed: {:?}", thread.failure.lock());
        let ids: Vec<String> = events.iter().map(|e| e.event_id().to_string()).collect();
        let mut got = written.lock().clone();
        got.sort();
        let mut want = vec![ids[0].clone(), ids[1].clone(), ids[3].clone()];
        want.sort();
        assert_eq!(got, want, "every record but the panicking one was written");
        let mut c = log.consumer(storeflow_ingest::ConsumerConfig::new("t.read"), None).unwrap();
        c.assign(&[(TopicPartition::new(&dlq, 0), 0)]).unwrap();
        let letters = c.poll(10, Duration::from_secs(2)).unwrap();
        assert_eq!(letters.len(), 1);
        let reason = letters[0].header(storeflow_ingest::dlq::headers::REASON).map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default();
        assert!(reason.starts_with("panic: planted panic at offset 2"), "{reason}");
    }

    /// Panics in `assigned` the first `n` times (outside any write: the sink's loop ends).
    struct FailsToStart {
        panics_left: Arc<AtomicU64>,
        written: Arc<Mutex<Vec<String>>>,
    }

    impl Sink for FailsToStart {
        fn topics(&self) -> Vec<Topic> {
            vec![Topic::Orders]
        }
        fn batching(&self) -> Batching {
            Batching { max_batch: 100, max_wait: Duration::from_millis(20) }
        }
        fn wants(&self, _: &Event) -> bool {
            true
        }
        fn retry(&self, _: &SinkError) -> Retry {
            Retry::Transient
        }
        async fn assigned(&mut self, _: &[TopicPartition]) -> Result<()> {
            if self.panics_left.load(Ordering::SeqCst) > 0 {
                self.panics_left.fetch_sub(1, Ordering::SeqCst);
                panic!("planted panic while preparing partitions");
            }
            Ok(())
        }
        async fn write(&mut self, items: &[Item]) -> Result<()> {
            self.written.lock().extend(items.iter().map(|it| it.event.event_id().to_string()));
            Ok(())
        }
    }

    #[test]
    fn a_sink_whose_loop_ends_is_marked_down_restarted_and_writes_everything_once() {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn Log> = Arc::new(storeflow_ingest::EmbeddedLog::open(dir.path()).unwrap());
        log.create_topics(&[TopicSpec::new(Topic::Orders.name(), 1)]).unwrap();
        let codec = Arc::new(Codec::embedded().unwrap());
        let publisher = storeflow_ingest::publish::Publisher::new(log.as_ref(), codec.clone(), Arc::new(storeflow_avro::pii::Vault::in_memory())).unwrap();
        let events: Vec<Event> = (0..20)
            .map(|i| {
                storeflow_avro::json::event_from_json(
                    serde_json::json!({"type": "OrderCancelRequested", "order_id": format!("O-{i}"), "requested_by": "customer", "reason": "test"}),
                    storeflow_avro::JsonOptions { fill_missing_ids: true, inputs_only: false },
                )
                .unwrap()
            })
            .collect();
        for d in publisher.publish_batch(&events).unwrap() {
            d.wait().unwrap();
        }
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = FailsToStart { panics_left: Arc::new(AtomicU64::new(1)), written: written.clone() };
        let rt = tokio::runtime::Runtime::new().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let settings = RunnerSettings { name: "fails-to-start", group: "t.restart".into(), instance: None, max_poll: 100, max_backoff: Duration::from_millis(100), write_timeout: Duration::from_secs(30), known_dead: None };
        let mut thread = spawn(sink, log.clone(), codec, rt.handle().clone(), settings, SinkMetrics::unregistered(), stop.clone()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen_down = false;
        while written.lock().len() < events.len() {
            seen_down |= !thread.alive.is_alive();
            if seen_down {
                assert!(thread.failure.lock().as_deref().is_none_or(|f| f.contains("planted panic")), "{:?}", thread.failure.lock());
            }
            assert!(Instant::now() < deadline, "written {} of {}", written.lock().len(), events.len());
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(seen_down, "readiness never saw the sink down");
        assert!(thread.alive.is_alive(), "up again after the restart");
        assert_eq!(thread.restarts.load(Ordering::Relaxed), 1);
        stop.store(true, Ordering::SeqCst);
        thread.join();
        assert!(thread.failure.lock().is_none(), "{:?}", thread.failure.lock());
        let mut got = written.lock().clone();
        got.sort();
        let mut want: Vec<String> = events.iter().map(|e| e.event_id().to_string()).collect();
        want.sort();
        assert_eq!(got, want, "every record written once");
    }

    #[test]
    fn positions_order_like_partition_then_offset() {
        let mut pairs = vec![(0u32, 0u64), (0, 1), (0, (1 << 48) - 1), (1, 0), (1, 7), (2, 3), (32_767, 0)];
        let sorted = pairs.clone();
        pairs.reverse();
        pairs.sort_by_key(|(p, o)| position(*p, *o));
        assert_eq!(pairs, sorted);
        assert_eq!(position(0, 5), 5);
        assert_eq!(position(1, 0), 1 << 48);
    }

    #[test]
    fn a_position_beyond_the_encoding_saturates_instead_of_wrapping() {
        assert_eq!(position(32_768, 0), i64::MAX);
        assert_eq!(position(0, 1 << 48), i64::MAX);
        assert_eq!(position(32_767, (1 << 48) - 1), i64::MAX, "the last valid position");
        assert!(position(32_767, (1 << 48) - 2) < position(32_767, (1 << 48) - 1));
    }
}
