//! A consumer of the embedded log: of assigned partitions, or a member of a consumer group
//! (`group.rs`) that follows the group's assignment by a hand-over protocol in which a
//! partition changes owner only after the previous owner has revoked it (and committed) —
//! so two members never process the same partition.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::shared::Inner;
use crate::log::{Consumer, OffsetCommitter, RebalanceListener};
use crate::types::*;
use crate::{LogError, Result};

static NEXT_MEMBER: AtomicU64 = AtomicU64::new(1);

/// A consumer of the embedded log.
pub struct EmbeddedConsumer {
    inner: Arc<Inner>,
    config: ConsumerConfig,
    member: Option<String>,
    positions: BTreeMap<TopicPartition, u64>,
    listener: Option<Box<dyn RebalanceListener>>,
    cursor: usize,
    closed: bool,
}

impl EmbeddedConsumer {
    pub(crate) fn new(inner: Arc<Inner>, config: ConsumerConfig, listener: Option<Box<dyn RebalanceListener>>) -> Self {
        EmbeddedConsumer {
            inner,
            config,
            member: None,
            positions: BTreeMap::new(),
            listener,
            cursor: 0,
            closed: false,
        }
    }

    fn start_offset(&self, tp: &TopicPartition) -> Result<u64> {
        let committed = self.inner.committed(&self.config.group, tp);
        let p = self.inner.partition(&tp.topic, tp.partition)?;
        Ok(match committed {
            Some(o) => o.max(p.start()),
            None => match self.config.reset {
                OffsetReset::Earliest => p.start(),
                OffsetReset::Latest => p.end(),
            },
        })
    }

    /// Follows the group's target assignment: revokes what is no longer ours (after the
    /// listener had its chance to commit), then takes what has been released to us.
    fn sync_group(&mut self) -> Result<()> {
        let Some(member) = self.member.clone() else { return Ok(()) };
        let target = {
            let groups = self.inner.groups.lock();
            groups
                .get(&self.config.group)
                .and_then(|g| g.target.get(&member).cloned())
                .unwrap_or_default()
        };
        let revoked: Vec<TopicPartition> = self.positions.keys().filter(|tp| !target.contains(*tp)).cloned().collect();
        if !revoked.is_empty() {
            self.revoke(&member, &revoked);
        }
        let mut assigned = Vec::new();
        for tp in target {
            if self.positions.contains_key(&tp) {
                continue;
            }
            let taken = {
                let mut groups = self.inner.groups.lock();
                let g = groups.entry(self.config.group.clone()).or_default();
                match g.owner.get(&tp) {
                    Some(m) if *m != member => false,
                    _ => {
                        g.owner.insert(tp.clone(), member.clone());
                        true
                    }
                }
            };
            if taken {
                let start = self.start_offset(&tp)?;
                self.positions.insert(tp.clone(), start);
                assigned.push(tp);
            }
        }
        if !assigned.is_empty() {
            if let Some(l) = self.listener.as_mut() {
                l.on_assigned(&assigned);
            }
        }
        Ok(())
    }

    fn revoke(&mut self, member: &str, revoked: &[TopicPartition]) {
        if let Some(mut l) = self.listener.take() {
            let mut committer = MemberCommitter {
                inner: &self.inner,
                group: &self.config.group,
                member,
            };
            l.on_revoked(revoked, &mut committer);
            self.listener = Some(l);
        }
        {
            let mut groups = self.inner.groups.lock();
            if let Some(g) = groups.get_mut(&self.config.group) {
                for tp in revoked {
                    if g.owns(member, tp) {
                        g.owner.remove(tp);
                    }
                }
            }
        }
        for tp in revoked {
            self.positions.remove(tp);
        }
        self.inner.notify();
    }

    fn leave(&mut self, with_callbacks: bool) {
        let Some(member) = self.member.take() else { return };
        let owned: Vec<TopicPartition> = self.positions.keys().cloned().collect();
        if with_callbacks && !owned.is_empty() {
            self.member = Some(member.clone());
            self.revoke(&member, &owned);
            self.member = None;
        }
        let mut groups = self.inner.groups.lock();
        if let Some(g) = groups.get_mut(&self.config.group) {
            g.owner.retain(|_, m| *m != member);
            g.members.remove(&member);
            let inner = &self.inner;
            g.rebalance(&|t| inner.partition_count(t).unwrap_or(0));
        }
        drop(groups);
        self.positions.clear();
        self.inner.notify();
    }

    fn read_some(&mut self, max: usize) -> Result<Vec<Record>> {
        let tps: Vec<TopicPartition> = self.positions.keys().cloned().collect();
        let mut out = Vec::new();
        if tps.is_empty() {
            return Ok(out);
        }
        // Two passes: first a fair share per partition, so one partition's backlog does not
        // crowd out the others (processors order records of several inputs by time); then
        // whatever room is left.
        let share = (max / tps.len()).max(1);
        for pass in 0..2 {
            for i in 0..tps.len() {
                if out.len() >= max {
                    break;
                }
                let tp = &tps[(self.cursor + i) % tps.len()];
                let p = self.inner.partition(&tp.topic, tp.partition)?;
                let mut pos = self.positions[tp];
                if pos < p.start() {
                    pos = p.start();
                }
                let room = if pass == 0 { share.min(max - out.len()) } else { max - out.len() };
                let recs = match p.read(pos, room, 1 << 20) {
                    Ok(recs) => recs,
                    // Hand over what was read from other partitions (their positions have
                    // moved past it); the next poll reports the error.
                    Err(_) if !out.is_empty() => {
                        self.cursor = (self.cursor + 1) % tps.len();
                        return Ok(out);
                    }
                    Err(e) => {
                        self.cursor = (self.cursor + 1) % tps.len();
                        return Err(e);
                    }
                };
                if let Some(last) = recs.last() {
                    pos = last.offset + 1;
                }
                self.positions.insert(tp.clone(), pos);
                out.extend(recs);
            }
        }
        self.cursor = (self.cursor + 1) % tps.len();
        Ok(out)
    }
}

struct MemberCommitter<'a> {
    inner: &'a Inner,
    group: &'a str,
    member: &'a str,
}

impl OffsetCommitter for MemberCommitter<'_> {
    fn commit(&mut self, offsets: &[(TopicPartition, u64)]) -> Result<()> {
        self.inner.commit_offsets(self.group, Some(self.member), offsets)
    }

    fn group_metadata(&self) -> Option<GroupMetadata> {
        let generation = self.inner.groups.lock().get(self.group).map(|g| g.generation).unwrap_or(0);
        Some(GroupMetadata {
            group: self.group.to_string(),
            member: self.member.to_string(),
            generation,
            backend: None,
        })
    }
}

impl Consumer for EmbeddedConsumer {
    fn subscribe(&mut self, topics: &[&str]) -> Result<()> {
        for t in topics {
            self.inner.partition_count(t)?;
        }
        if self.member.is_some() {
            self.leave(true);
        }
        let member = format!("{}-{}", self.config.group, NEXT_MEMBER.fetch_add(1, Ordering::Relaxed));
        {
            let mut groups = self.inner.groups.lock();
            let g = groups.entry(self.config.group.clone()).or_default();
            g.members.insert(member.clone(), topics.iter().map(|t| t.to_string()).collect());
            let inner = &self.inner;
            g.rebalance(&|t| inner.partition_count(t).unwrap_or(0));
        }
        self.member = Some(member);
        self.positions.clear();
        self.inner.notify();
        Ok(())
    }

    fn assign(&mut self, partitions: &[(TopicPartition, u64)]) -> Result<()> {
        if self.member.is_some() {
            self.leave(true);
        }
        self.positions.clear();
        for (tp, offset) in partitions {
            self.inner.partition(&tp.topic, tp.partition)?;
            self.positions.insert(tp.clone(), *offset);
        }
        Ok(())
    }

    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Record>> {
        if self.closed {
            return Err(LogError::Closed);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.inner.version();
            self.sync_group()?;
            let recs = self.read_some(max)?;
            let now = Instant::now();
            if !recs.is_empty() || now >= deadline {
                return Ok(recs);
            }
            self.inner.wait_for_change(seen, deadline - now);
        }
    }

    fn seek(&mut self, partition: &TopicPartition, offset: u64) -> Result<()> {
        match self.positions.get_mut(partition) {
            Some(p) => {
                *p = offset;
                Ok(())
            }
            None => Err(LogError::NotAssigned(partition.to_string())),
        }
    }

    fn position(&self, partition: &TopicPartition) -> Option<u64> {
        self.positions.get(partition).copied()
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        self.positions.keys().cloned().collect()
    }

    fn commit(&mut self, offsets: &[(TopicPartition, u64)]) -> Result<()> {
        self.inner.commit_offsets(&self.config.group, self.member.as_deref(), offsets)
    }

    fn group_metadata(&self) -> Option<GroupMetadata> {
        // Outside the group (not subscribed) the metadata names the group only, like Kafka's
        // before a join; offsets committed with it are accepted while the group is empty.
        let member = self.member.clone().unwrap_or_default();
        let generation = self.inner.groups.lock().get(&self.config.group).map(|g| g.generation).unwrap_or(0);
        Some(GroupMetadata {
            group: self.config.group.clone(),
            member,
            generation,
            backend: None,
        })
    }

    fn close(mut self: Box<Self>) -> Result<()> {
        self.leave(true);
        self.closed = true;
        Ok(())
    }
}

impl Drop for EmbeddedConsumer {
    fn drop(&mut self) {
        if !self.closed {
            self.leave(false);
        }
    }
}
