//! Starting a task: its store opened and restored from the changelog, its producer, and
//! what its last commit recorded (stream times, skip sets, recent commits, held progress).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use storeflow_ingest::{ConsumerConfig, Log, OffsetReset, TopicPartition};

use super::align::GroupState;
use super::config::StateBackend;
use super::shared::{Held, META, RtTask, Shared};
use super::task::TaskCore;
use super::topology::Topology;
use crate::error::Result;
use crate::flow::Flow;
use crate::metrics::Metrics;
use crate::state::backend::{Changes, KvBackend, MemBackend, RedbBackend};
use crate::state::encoding::{decode_value, full_key};
use crate::state::task_state::TaskState;

/// One task's input group layout: for each input partition, its group and member.
pub(super) fn layout(flow: &Flow, topology: &Topology, globals: &[String], p: u32) -> (Vec<GroupState>, HashMap<TopicPartition, (usize, usize)>) {
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

impl Shared {
    pub(super) fn backend(&self, p: u32) -> Result<Box<dyn KvBackend>> {
        Ok(match &self.config.state {
            StateBackend::Memory => Box::new(MemBackend::default()),
            StateBackend::Redb(dir) => Box::new(RedbBackend::open(&dir.join(self.name).join(format!("{p}.redb")))?),
        })
    }

    /// Opens task `p`: its store, restored from the changelog, its transactional producer,
    /// its stream times and skip sets as last committed.
    pub(super) fn open_task(&self, p: u32) -> Result<RtTask> {
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
    pub(super) fn restore(&self, p: u32, backend: &mut dyn KvBackend) -> Result<u64> {
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
