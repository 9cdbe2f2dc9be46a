//! The state one open log shares with its handles, producers, transactions and consumers
//! ([`Inner`]): topics and partitions, the journal, the consumer groups, and the signal that
//! wakes waiting consumers; how records are appended and transactions committed; and the
//! background flush and retention.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use super::config::{EmbeddedConfig, FsyncPolicy};
use super::dir::TopicMeta;
use super::group::Group;
use super::journal::{Entry, Journal, tp_key};
use super::partition::Partition;
use crate::partitioner::partition_for_key;
use crate::types::*;
use crate::{LogError, Result};

/// A topic of the open log: its `topic.json` and its partitions.
pub(super) struct TopicState {
    pub(super) meta: TopicMeta,
    pub(super) partitions: Vec<Arc<Partition>>,
}

/// The state of an open log, shared by the [`EmbeddedLog`](super::EmbeddedLog) handles and
/// their producers, transactions and consumers.
pub(crate) struct Inner {
    pub(super) dir: PathBuf,
    pub(super) config: EmbeddedConfig,
    pub(super) topics: RwLock<BTreeMap<String, Arc<TopicState>>>,
    pub(super) journal: Mutex<Journal>,
    pub(crate) groups: Mutex<HashMap<String, Group>>,
    signal: (Mutex<u64>, Condvar),
    round_robin: AtomicU32,
    closed: AtomicBool,
    _lock: File,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Starts the thread that flushes (`fsync = "interval"`) and applies retention while the
/// log is open.
pub(super) fn spawn_maintenance(weak: Weak<Inner>) {
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
    /// The state of a log just opened in `dir`, holding the directory's `lock`.
    pub(super) fn new(dir: PathBuf, config: EmbeddedConfig, topics: BTreeMap<String, Arc<TopicState>>, journal: Journal, lock: File) -> Inner {
        Inner {
            dir,
            config,
            topics: RwLock::new(topics),
            journal: Mutex::new(journal),
            groups: Mutex::new(HashMap::new()),
            signal: (Mutex::new(0), Condvar::new()),
            round_robin: AtomicU32::new(0),
            closed: AtomicBool::new(false),
            _lock: lock,
        }
    }

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

    pub(super) fn append(&self, records: Vec<ProduceRecord>) -> Result<Vec<Delivery>> {
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

    pub(super) fn commit_txn(
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

    pub(super) fn sync_all(&self) -> Result<()> {
        let topics: Vec<Arc<TopicState>> = self.topics.read().values().cloned().collect();
        for t in topics {
            for p in &t.partitions {
                p.sync_detached()?;
            }
        }
        self.journal.lock().sync()
    }

    pub(super) fn apply_retention(&self) {
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
