//! Committing a task: one transaction with its outputs, dead letters, state changes (to
//! the changelog), input offsets and progress; the state applied locally once it commits;
//! on failure everything since the last commit dropped and the producer recovered.

use std::time::{Duration, Instant};

use storeflow_ingest::{Consumer, GroupMetadata, LogError, ProduceRecord, TopicPartition};

use super::align;
use super::progress::{TaskProgress, task_key};
use super::shared::{Held, META, RtTask, Shared};
use crate::error::Result;
use crate::metrics::Metrics;
use crate::state::encoding::{encode_value, full_key};
use crate::state::store::sweep_expired;

/// How often a task commits when it has only progress to publish.
pub(super) const PROGRESS_ONLY_EVERY: Duration = Duration::from_millis(50);

impl Shared {
    /// Writes the runtime's own entries (stream times, skip sets) into the task's state, so
    /// they commit with it. A commit of progress alone (`progress_only`: nothing processed,
    /// nothing to write) leaves the stream times out, so an idle task writes nothing to its
    /// changelog while wall-clock idleness moves its time on.
    pub(super) fn save_meta(&self, t: &mut RtTask, progress: &TaskProgress, progress_only: bool) -> Result<()> {
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
    pub(super) fn commit_task(&self, t: &mut RtTask, group: &GroupMetadata, progress: &TaskProgress) -> std::result::Result<bool, LogError> {
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
    pub(super) fn discard(&self, t: &mut RtTask) {
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
    pub(super) fn recover_producer(&self, t: &mut RtTask, err: &LogError) -> std::result::Result<(), LogError> {
        let indefinite = matches!(err, LogError::Timeout(_)) || matches!(err, LogError::Kafka { retriable: true, .. });
        if indefinite || t.txn.abort().is_err() {
            // We do not know whether the commit reached the coordinator: fence this producer
            // with a new epoch rather than let a late EndTxn land on a later transaction.
            t.txn = self.log.transactional_producer(&self.tid(t.core.partition))?;
        }
        t.txn.begin()
    }
}

/// Sets the offsets to commit for the task's derived inputs: the lowest one not processed
/// (records are processed in time order, not offset order), with the processed ones above
/// it kept to be skipped when re-read.
pub(super) fn prepare_offsets(t: &mut RtTask, consumer: &dyn Consumer) {
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
