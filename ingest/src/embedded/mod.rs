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

mod config;
mod consumer;
mod dir;
mod frame;
#[doc(hidden)]
pub mod fuzzing;
mod group;
mod journal;
mod partition;
mod repair;
mod shared;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use config::{EmbeddedConfig, FsyncPolicy};
pub use consumer::EmbeddedConsumer;
pub use partition::Corruption;
pub use repair::{CheckReport, PartitionCheck, RepairPlan, check, plan_repair, repair};
use dir::{TopicMeta, io, lock_dir};
use journal::{Entry, Journal, tp_key};
use partition::Partition;
use shared::{Inner, TopicState, spawn_maintenance};

use crate::log::{Consumer, Log, Producer, RebalanceListener, TransactionalProducer};
use crate::types::*;
use crate::{LogError, Result};

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

/// The embedded log; cheap to clone.
#[derive(Clone)]
pub struct EmbeddedLog {
    inner: Arc<Inner>,
    recovery: Arc<RecoveryReport>,
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
        let inner = Arc::new(Inner::new(dir, config, topics, journal, lock));
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

    fn list_groups(&self) -> Result<Vec<String>> {
        let mut names: std::collections::BTreeSet<String> = self.inner.journal.lock().state.offsets.keys().cloned().collect();
        names.extend(self.inner.groups.lock().iter().filter(|(_, g)| g.has_members()).map(|(n, _)| n.clone()));
        Ok(names.into_iter().collect())
    }

    /// The members in this process: the log has one owner process (`LOCK`), so there are
    /// no others.
    fn group_members(&self, group: &str) -> Result<Option<usize>> {
        Ok(Some(self.inner.groups.lock().get(group).map_or(0, |g| g.members.len())))
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
