//! The embedded log: Kafka's model (topics, partitions, offsets, consumer groups,
//! transactions) in a directory, for running storeflow with nothing else installed.
//!
//! Layout under the data directory:
//!
//! ```text
//! LOCK                      held by the one process that owns the log
//! journal.log               commits: transaction markers, consumer offsets, epochs
//! snapshot.json             the journal folded, when it grows past 16 MiB
//! topics/<topic>/topic.json partitions and cleanup policy
//! topics/<topic>/<p>/<base offset>.log   segment files of checksummed frames
//! ```
//!
//! Durability. An append is acknowledged once `write(2)` returned, so a process crash
//! (`kill -9`) at any instant loses no acknowledged record; recovery cuts a torn tail and
//! the records of a transaction whose commit marker is missing. Damage with intact records
//! after it is corruption, not a torn tail: it is never cut but reported ([`Corruption`]), and
//! the partition refuses reads past it and appends until `storeflow log repair`
//! ([`repair()`]). Power loss is covered by `fsync`: the default policy flushes every 200 ms
//! in the background (like Kafka, which leaves flushing to the OS, we trade a bounded window
//! for throughput); `always` flushes before acknowledging. See `docs/ARCHITECTURE.md`.

mod frame;
mod group;
mod journal;
mod partition;
mod repair;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};
use serde::{Deserialize, Serialize};

pub use group::EmbeddedConsumer;
pub use partition::Corruption;
pub use repair::{CheckReport, PartitionCheck, RepairPlan, check, plan_repair, repair};
use journal::{Entry, Journal, tp_key};
use partition::Partition;

use crate::log::{Consumer, Log, Producer, RebalanceListener, TransactionalProducer};
use crate::partitioner::partition_for_key;
use crate::types::*;
use crate::{LogError, Result};

/// When the embedded log calls `fsync`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// Before acknowledging every append and commit: nothing acknowledged is lost even on
    /// power loss; throughput bounded by the disk's flush latency.
    Always,
    /// In the background every `fsync_interval_ms`: a process crash loses nothing
    /// acknowledged, power loss at most that window. The default.
    #[default]
    Interval,
    /// Never; the OS writes back when it likes (process crashes are still safe).
    Never,
}

/// Settings of the embedded log (`[log]` in `storeflow.toml`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedConfig {
    /// A partition starts a new segment file past this many bytes.
    pub segment_bytes: u64,
    /// Delete whole segments whose newest record is older than this many hours (0: keep).
    pub retention_hours: u64,
    /// Delete the oldest segments of a partition past this many bytes (0: no limit).
    pub retention_bytes: u64,
    /// When to flush to disk.
    pub fsync: FsyncPolicy,
    /// Background flush period for `fsync = "interval"`.
    pub fsync_interval_ms: u64,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            segment_bytes: 128 << 20,
            retention_hours: 24 * 7,
            retention_bytes: 0,
            fsync: FsyncPolicy::Interval,
            fsync_interval_ms: 200,
        }
    }
}

impl EmbeddedConfig {
    /// Checks the values make sense.
    pub fn validate(&self) -> Result<()> {
        if self.segment_bytes < 4096 {
            return Err(LogError::InvalidConfig("log.segment_bytes must be at least 4096".into()));
        }
        if self.fsync == FsyncPolicy::Interval && self.fsync_interval_ms == 0 {
            return Err(LogError::InvalidConfig("log.fsync_interval_ms must be > 0 with fsync = \"interval\"".into()));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct TopicMeta {
    partitions: u32,
    compact: bool,
    retention_hours: Option<u64>,
}

struct TopicState {
    meta: TopicMeta,
    partitions: Vec<Arc<Partition>>,
}

/// What opening the log found and repaired.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    /// Partitions opened.
    pub partitions: usize,
    /// Bytes of torn frames cut from partition tails.
    pub torn_bytes: u64,
    /// Records of never-committed transactions cut.
    pub uncommitted_records: u64,
    /// Partitions opened with corruption (see [`Corruption`]): nothing of them was cut;
    /// they serve records before the damage and refuse reads past it and appends.
    pub corrupt_partitions: usize,
    /// The corruption of each of those partitions.
    pub corruptions: Vec<Corruption>,
}

pub(crate) struct Inner {
    dir: PathBuf,
    config: EmbeddedConfig,
    topics: RwLock<BTreeMap<String, Arc<TopicState>>>,
    journal: Mutex<Journal>,
    pub(crate) groups: Mutex<HashMap<String, group::Group>>,
    signal: (Mutex<u64>, Condvar),
    round_robin: AtomicU32,
    closed: AtomicBool,
    _lock: File,
}

/// The embedded log; cheap to clone.
#[derive(Clone)]
pub struct EmbeddedLog {
    inner: Arc<Inner>,
    recovery: Arc<RecoveryReport>,
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> LogError {
    let context = context.into();
    move |source| LogError::Io { context, source }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl EmbeddedLog {
    /// Opens (creating) the log in `dir` with default settings.
    pub fn open(dir: impl AsRef<Path>) -> Result<EmbeddedLog> {
        EmbeddedLog::open_with(dir, EmbeddedConfig::default())
    }

    /// Opens (creating) the log in `dir`, recovering from any crash.
    pub fn open_with(dir: impl AsRef<Path>, config: EmbeddedConfig) -> Result<EmbeddedLog> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(dir.join("topics")).map_err(io(format!("creating {}", dir.display())))?;
        let lock = lock_dir(&dir)?;

        let journal = Journal::open(&dir)?;
        let last_txn = journal.state.last_seq;
        let mut report = RecoveryReport::default();
        let mut topics = BTreeMap::new();
        let topics_dir = dir.join("topics");
        let mut names: Vec<String> = std::fs::read_dir(&topics_dir)
            .map_err(io(format!("listing {}", topics_dir.display())))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("topic.json").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            let tdir = topics_dir.join(&name);
            let meta_path = tdir.join("topic.json");
            let meta: TopicMeta = serde_json::from_slice(
                &std::fs::read(&meta_path).map_err(io(format!("reading {}", meta_path.display())))?,
            )
            .map_err(|e| LogError::Corrupt(format!("{}: {e}", meta_path.display())))?;
            let mut partitions = Vec::new();
            for p in 0..meta.partitions {
                let tp = TopicPartition::new(&name, p);
                let (part, rec) = Partition::open(tp, tdir.join(p.to_string()), last_txn)?;
                if let Some(c) = &rec.corruption {
                    tracing::error!(
                        partition = %part.tp, segment = %c.segment.display(), position = c.position, offset = c.offset,
                        "corrupt partition: {c}; it serves offsets below {} only and refuses appends: {}", part.end(), c.remedy()
                    );
                    report.corrupt_partitions += 1;
                    report.corruptions.push(c.clone());
                }
                if rec.torn_bytes > 0 || rec.uncommitted > 0 {
                    tracing::warn!(
                        partition = %part.tp, torn_bytes = rec.torn_bytes, uncommitted = rec.uncommitted,
                        "recovered a partition after a crash"
                    );
                }
                if let Some(&end) = journal.state.txn_ends.get(&tp_key(&name, p)) {
                    if part.end() < end && rec.corruption.is_none() {
                        tracing::error!(
                            partition = %part.tp, expected = end, found = part.end(),
                            "committed records are missing: the machine lost power before they were flushed (fsync policy)"
                        );
                    }
                }
                report.partitions += 1;
                report.torn_bytes += rec.torn_bytes;
                report.uncommitted_records += rec.uncommitted;
                partitions.push(Arc::new(part));
            }
            topics.insert(name, Arc::new(TopicState { meta, partitions }));
        }
        let inner = Arc::new(Inner {
            dir,
            config,
            topics: RwLock::new(topics),
            journal: Mutex::new(journal),
            groups: Mutex::new(HashMap::new()),
            signal: (Mutex::new(0), Condvar::new()),
            round_robin: AtomicU32::new(0),
            closed: AtomicBool::new(false),
            _lock: lock,
        });
        inner.apply_retention();
        spawn_maintenance(Arc::downgrade(&inner));
        Ok(EmbeddedLog {
            inner,
            recovery: Arc::new(report),
        })
    }

    /// What opening the log repaired.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Flushes everything to disk now.
    pub fn sync(&self) -> Result<()> {
        self.inner.sync_all()
    }
}

/// Takes the lock of the data directory `dir` (the one process that owns the log), waiting
/// briefly for a log of this same process that is still closing.
pub(crate) fn lock_dir(dir: &Path) -> Result<File> {
    let lock_path = dir.join("LOCK");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&lock_path)
        .map_err(io(format!("opening {}", lock_path.display())))?;
    // A log of this same process that was just dropped may still be finishing its last
    // background flush: give it a moment before calling the directory busy.
    let own = format!("pid {}", std::process::id());
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match lock.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&lock_path).unwrap_or_default();
                if holder.trim() == own && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                return Err(LogError::Locked {
                    dir: dir.display().to_string(),
                    holder: holder.trim().to_string(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(format!("locking {}", lock_path.display()))(e)),
        }
    }
    let _ = lock.set_len(0);
    let _ = std::os::unix::fs::FileExt::write_all_at(&lock, format!("pid {}\n", std::process::id()).as_bytes(), 0);
    Ok(lock)
}

fn spawn_maintenance(weak: Weak<Inner>) {
    let _ = std::thread::Builder::new()
        .name("storeflow-log-maintenance".into())
        .spawn(move || {
            let mut last_retention = Instant::now();
            loop {
                let interval = match weak.upgrade() {
                    Some(inner) => {
                        if inner.closed.load(Ordering::Relaxed) {
                            return;
                        }
                        if inner.config.fsync == FsyncPolicy::Interval {
                            if let Err(e) = inner.sync_all() {
                                tracing::error!(error = %e, "background fsync of the embedded log failed");
                            }
                        }
                        if last_retention.elapsed() > Duration::from_secs(30) {
                            inner.apply_retention();
                            last_retention = Instant::now();
                        }
                        Duration::from_millis(inner.config.fsync_interval_ms.clamp(10, 1000))
                    }
                    None => return,
                };
                std::thread::sleep(interval);
            }
        });
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Relaxed);
        if self.config.fsync != FsyncPolicy::Never {
            let _ = self.sync_all();
        }
    }
}

impl Inner {
    pub(crate) fn version(&self) -> u64 {
        *self.signal.0.lock()
    }

    pub(crate) fn notify(&self) {
        let mut v = self.signal.0.lock();
        *v += 1;
        self.signal.1.notify_all();
    }

    pub(crate) fn wait_for_change(&self, seen: u64, timeout: Duration) {
        let mut v = self.signal.0.lock();
        if *v == seen {
            self.signal.1.wait_for(&mut v, timeout);
        }
    }

    fn topic(&self, name: &str) -> Result<Arc<TopicState>> {
        self.topics
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| LogError::UnknownTopic(name.to_string()))
    }

    pub(crate) fn partition_count(&self, topic: &str) -> Result<u32> {
        Ok(self.topic(topic)?.meta.partitions)
    }

    pub(crate) fn partition(&self, topic: &str, partition: u32) -> Result<Arc<Partition>> {
        let t = self.topic(topic)?;
        t.partitions
            .get(partition as usize)
            .cloned()
            .ok_or_else(|| LogError::UnknownPartition(format!("{topic}/{partition}")))
    }

    fn choose_partition(&self, rec: &ProduceRecord, count: u32) -> Result<u32> {
        match (rec.partition, &rec.key) {
            (Some(p), _) if p < count => Ok(p),
            (Some(p), _) => Err(LogError::UnknownPartition(format!("{}/{p}", rec.topic))),
            (None, Some(k)) => Ok(partition_for_key(k, count)),
            (None, None) => Ok(self.round_robin.fetch_add(1, Ordering::Relaxed) % count),
        }
    }

    pub(crate) fn committed(&self, group: &str, tp: &TopicPartition) -> Option<u64> {
        self.journal
            .lock()
            .state
            .offsets
            .get(group)
            .and_then(|m| m.get(&tp_key(&tp.topic, tp.partition)))
            .copied()
    }

    /// Commits offsets for `group`; a group member may commit only what it owns, and a
    /// consumer outside the group only while the group has no members.
    pub(crate) fn commit_offsets(&self, group: &str, member: Option<&str>, offsets: &[(TopicPartition, u64)]) -> Result<()> {
        self.check_ownership(group, member, offsets)?;
        let mut j = self.journal.lock();
        let seq = j.next_seq();
        let entry = Entry::Commit {
            seq,
            tid: None,
            epoch: 0,
            ends: vec![],
            offsets: offsets
                .iter()
                .map(|(tp, o)| (group.to_string(), tp.topic.to_string(), tp.partition, *o))
                .collect(),
        };
        j.append(entry, self.config.fsync == FsyncPolicy::Always)
    }

    fn check_ownership(&self, group: &str, member: Option<&str>, offsets: &[(TopicPartition, u64)]) -> Result<()> {
        let groups = self.groups.lock();
        let Some(g) = groups.get(group) else { return Ok(()) };
        match member {
            Some(m) => {
                for (tp, _) in offsets {
                    if !g.owns(m, tp) {
                        return Err(LogError::NotOwner {
                            group: group.to_string(),
                            partition: tp.to_string(),
                        });
                    }
                }
                Ok(())
            }
            None if g.has_members() => Err(LogError::NotOwner {
                group: group.to_string(),
                partition: "(a consumer outside the group cannot commit while it has members)".into(),
            }),
            None => Ok(()),
        }
    }

    fn append(&self, records: Vec<ProduceRecord>) -> Result<Vec<Delivery>> {
        // Group by partition, keeping each partition's records in order.
        let mut by_part: BTreeMap<(String, u32), Vec<(usize, ProduceRecord)>> = BTreeMap::new();
        for (i, r) in records.into_iter().enumerate() {
            let count = self.partition_count(&r.topic)?;
            let p = self.choose_partition(&r, count)?;
            by_part.entry((r.topic.clone(), p)).or_default().push((i, r));
        }
        // All or nothing: a corrupt partition refuses before any partition is written.
        for (topic, p) in by_part.keys() {
            self.partition(topic, *p)?.check_writable()?;
        }
        let n: usize = by_part.values().map(Vec::len).sum();
        let mut out = vec![Delivery { partition: 0, offset: 0 }; n];
        let now = now_ms();
        for ((topic, p), recs) in by_part {
            let part = self.partition(&topic, p)?;
            let tuples: Vec<_> = recs
                .iter()
                .map(|(_, r)| (r.key.as_deref(), r.value.as_deref(), r.headers.as_slice(), r.timestamp.unwrap_or(now)))
                .collect();
            let mut w = part.lock();
            let first = part.write(&mut w, &tuples, 0, self.config.segment_bytes)?;
            if self.config.fsync == FsyncPolicy::Always {
                part.sync(&mut w)?;
            }
            part.publish(&w);
            drop(w);
            for (k, (i, _)) in recs.iter().enumerate() {
                out[*i] = Delivery { partition: p, offset: first + k as u64 };
            }
        }
        self.notify();
        Ok(out)
    }

    fn commit_txn(
        &self,
        tid: &str,
        epoch: u64,
        records: Vec<ProduceRecord>,
        offsets: &[(GroupMetadata, Vec<(TopicPartition, u64)>)],
    ) -> Result<Vec<(TopicPartition, u64)>> {
        let mut j = self.journal.lock();
        if j.state.epochs.get(tid).copied().unwrap_or(0) != epoch {
            return Err(LogError::Fenced(tid.to_string()));
        }
        for (meta, offs) in offsets {
            let member = (!meta.member.is_empty()).then_some(meta.member.as_str());
            self.check_ownership(&meta.group, member, offs)?;
        }
        let mut by_part: BTreeMap<(String, u32), Vec<ProduceRecord>> = BTreeMap::new();
        for r in records {
            let count = self.partition_count(&r.topic)?;
            let p = self.choose_partition(&r, count)?;
            by_part.entry((r.topic.clone(), p)).or_default().push(r);
        }
        let parts: Vec<Arc<Partition>> = by_part
            .keys()
            .map(|(t, p)| self.partition(t, *p))
            .collect::<Result<_>>()?;
        for part in &parts {
            part.check_writable()?;
        }
        // Lock every partition in (topic, partition) order; hold them until published.
        let mut writers: Vec<_> = parts.iter().map(|p| p.lock()).collect();
        let seq = j.next_seq();
        let now = now_ms();
        let mut ends = Vec::new();
        for ((recs, part), w) in by_part.values().zip(&parts).zip(writers.iter_mut()) {
            let tuples: Vec<_> = recs
                .iter()
                .map(|r| (r.key.as_deref(), r.value.as_deref(), r.headers.as_slice(), r.timestamp.unwrap_or(now)))
                .collect();
            part.write(w, &tuples, seq, self.config.segment_bytes)?;
            if self.config.fsync == FsyncPolicy::Always {
                part.sync(w)?;
            }
            ends.push((part.tp.topic.to_string(), part.tp.partition, w.next_offset));
        }
        let entry = Entry::Commit {
            seq,
            tid: Some(tid.to_string()),
            epoch,
            ends,
            offsets: offsets
                .iter()
                .flat_map(|(m, offs)| offs.iter().map(move |(tp, o)| (m.group.clone(), tp.topic.to_string(), tp.partition, *o)))
                .collect(),
        };
        j.append(entry, self.config.fsync == FsyncPolicy::Always)?;
        let mut ends = Vec::with_capacity(parts.len());
        for (part, w) in parts.iter().zip(&writers) {
            part.publish(w);
            ends.push((part.tp.clone(), w.next_offset));
        }
        drop(writers);
        drop(j);
        self.notify();
        Ok(ends)
    }

    fn sync_all(&self) -> Result<()> {
        let topics: Vec<Arc<TopicState>> = self.topics.read().values().cloned().collect();
        for t in topics {
            for p in &t.partitions {
                p.sync_detached()?;
            }
        }
        self.journal.lock().sync()
    }

    fn apply_retention(&self) {
        let now = now_ms();
        let topics: Vec<Arc<TopicState>> = self.topics.read().values().cloned().collect();
        for t in topics {
            if t.meta.compact {
                continue;
            }
            let hours = t.meta.retention_hours.unwrap_or(self.config.retention_hours);
            let older = (hours > 0).then(|| now - (hours as i64) * 3_600_000);
            let bytes = (self.config.retention_bytes > 0).then_some(self.config.retention_bytes);
            for p in &t.partitions {
                let dropped = p.apply_retention(older, bytes);
                if dropped > 0 {
                    tracing::info!(partition = %p.tp, records = dropped, "retention deleted old segments");
                }
            }
        }
    }
}

impl Log for EmbeddedLog {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    fn create_topics(&self, specs: &[TopicSpec]) -> Result<()> {
        let mut topics = self.inner.topics.write();
        for spec in specs {
            if spec.partitions == 0 {
                return Err(LogError::InvalidConfig(format!("topic {} needs at least one partition", spec.name)));
            }
            if spec.name.is_empty() || spec.name.contains(['/', '\\', '\0']) || spec.name.starts_with('.') {
                return Err(LogError::InvalidConfig(format!("`{}` is not a valid topic name", spec.name)));
            }
            if let Some(t) = topics.get(&spec.name) {
                if t.meta.partitions != spec.partitions {
                    return Err(LogError::InvalidConfig(format!(
                        "topic {} exists with {} partitions, not {}; partitions decide where keys live, so they are never changed silently",
                        spec.name, t.meta.partitions, spec.partitions
                    )));
                }
                continue;
            }
            let tdir = self.inner.dir.join("topics").join(&spec.name);
            std::fs::create_dir_all(&tdir).map_err(io(format!("creating {}", tdir.display())))?;
            let meta = TopicMeta {
                partitions: spec.partitions,
                compact: spec.compact,
                retention_hours: spec.retention.map(|d| d.as_secs().div_ceil(3600)),
            };
            let mut partitions = Vec::new();
            for p in 0..spec.partitions {
                let (part, _) = Partition::open(TopicPartition::new(&spec.name, p), tdir.join(p.to_string()), u64::MAX)?;
                partitions.push(Arc::new(part));
            }
            // topic.json last: a topic exists once its partitions do.
            let meta_path = tdir.join("topic.json");
            let tmp = tdir.join("topic.json.tmp");
            std::fs::write(&tmp, serde_json::to_vec_pretty(&meta).expect("meta serializes"))
                .map_err(io(format!("writing {}", tmp.display())))?;
            std::fs::rename(&tmp, &meta_path).map_err(io(format!("writing {}", meta_path.display())))?;
            topics.insert(spec.name.clone(), Arc::new(TopicState { meta, partitions }));
        }
        Ok(())
    }

    fn describe_topics(&self) -> Result<Vec<TopicInfo>> {
        Ok(self
            .inner
            .topics
            .read()
            .iter()
            .map(|(name, t)| TopicInfo {
                name: name.clone(),
                compact: t.meta.compact,
                partitions: t
                    .partitions
                    .iter()
                    .enumerate()
                    .map(|(i, p)| PartitionInfo {
                        partition: i as u32,
                        start: p.start(),
                        end: p.end(),
                    })
                    .collect(),
            })
            .collect())
    }

    fn producer(&self) -> Result<Box<dyn Producer>> {
        Ok(Box::new(EmbeddedProducer { inner: self.inner.clone() }))
    }

    fn consumer(&self, config: ConsumerConfig, listener: Option<Box<dyn RebalanceListener>>) -> Result<Box<dyn Consumer>> {
        Ok(Box::new(EmbeddedConsumer::new(self.inner.clone(), config, listener)))
    }

    fn transactional_producer(&self, transactional_id: &str) -> Result<Box<dyn TransactionalProducer>> {
        let mut j = self.inner.journal.lock();
        let epoch = j.state.epochs.get(transactional_id).copied().unwrap_or(0) + 1;
        let seq = j.next_seq();
        j.append(
            Entry::Epoch { seq, tid: transactional_id.to_string(), epoch },
            self.inner.config.fsync == FsyncPolicy::Always,
        )?;
        Ok(Box::new(EmbeddedTransaction {
            inner: self.inner.clone(),
            tid: transactional_id.to_string(),
            epoch,
            open: false,
            records: Vec::new(),
            offsets: Vec::new(),
        }))
    }

    fn committed_offsets(&self, group: &str, partitions: &[TopicPartition]) -> Result<Vec<Option<u64>>> {
        Ok(partitions.iter().map(|tp| self.inner.committed(group, tp)).collect())
    }

    fn watermarks(&self, partitions: &[TopicPartition]) -> Result<Vec<(u64, u64)>> {
        partitions
            .iter()
            .map(|tp| self.inner.partition(&tp.topic, tp.partition).map(|p| (p.start(), p.end())))
            .collect()
    }
}

/// Producer of the embedded log: every call is one write; acknowledged when it returns.
struct EmbeddedProducer {
    inner: Arc<Inner>,
}

impl Producer for EmbeddedProducer {
    fn send(&self, record: ProduceRecord) -> Result<DeliveryFuture> {
        let d = self.inner.append(vec![record])?;
        Ok(DeliveryFuture::ready(Ok(d[0])))
    }

    fn send_batch(&self, records: Vec<ProduceRecord>) -> Result<Vec<DeliveryFuture>> {
        Ok(self
            .inner
            .append(records)?
            .into_iter()
            .map(|d| DeliveryFuture::ready(Ok(d)))
            .collect())
    }

    fn flush(&self, _timeout: Duration) -> Result<()> {
        Ok(())
    }
}

/// Transactions of the embedded log: records are held in memory until commit, then written
/// and published atomically with the consumer offsets through the journal.
struct EmbeddedTransaction {
    inner: Arc<Inner>,
    tid: String,
    epoch: u64,
    open: bool,
    records: Vec<ProduceRecord>,
    offsets: Vec<(GroupMetadata, Vec<(TopicPartition, u64)>)>,
}

impl TransactionalProducer for EmbeddedTransaction {
    fn begin(&mut self) -> Result<()> {
        if self.open {
            return Err(LogError::Transaction("a transaction is already open".into()));
        }
        if self.inner.journal.lock().state.epochs.get(&self.tid).copied() != Some(self.epoch) {
            return Err(LogError::Fenced(self.tid.clone()));
        }
        self.open = true;
        Ok(())
    }

    fn send(&mut self, record: ProduceRecord) -> Result<()> {
        if !self.open {
            return Err(LogError::Transaction("send outside a transaction; call begin first".into()));
        }
        self.inner.partition_count(&record.topic)?;
        self.records.push(record);
        Ok(())
    }

    fn send_offsets(&mut self, offsets: &[(TopicPartition, u64)], group: &GroupMetadata) -> Result<()> {
        if !self.open {
            return Err(LogError::Transaction("send_offsets outside a transaction".into()));
        }
        self.offsets.push((group.clone(), offsets.to_vec()));
        Ok(())
    }

    fn commit(&mut self) -> Result<Vec<(TopicPartition, u64)>> {
        if !self.open {
            return Err(LogError::Transaction("commit without begin".into()));
        }
        let records = std::mem::take(&mut self.records);
        let offsets = std::mem::take(&mut self.offsets);
        self.open = false;
        self.inner.commit_txn(&self.tid, self.epoch, records, &offsets)
    }

    fn abort(&mut self) -> Result<()> {
        self.records.clear();
        self.offsets.clear();
        self.open = false;
        Ok(())
    }
}
