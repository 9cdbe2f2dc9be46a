//! What the loop knows of everyone's progress (the progress topic's board and the
//! declarations claimed) and of its inputs' ends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use storeflow_ingest::{Consumer, Log, TopicPartition};

use super::progress::{Board, Coverage};
use super::shared::{RtTask, Shared};
use super::topology::Topology;
use crate::error::Result;

/// What the loop knows of everyone's progress.
pub(super) struct Watch {
    pub(super) board: Board,
    pub(super) coverage: Coverage,
    pub(super) consumer: Box<dyn Consumer>,
    pub(super) last_snapshot: Instant,
    /// A transaction marker may sit at a partition's end, never returned (Kafka): positions
    /// within this many offsets of the end count as fetched.
    pub(super) slack: u64,
}

impl Watch {
    pub(super) fn poll(&mut self, topology: &Topology) -> Result<()> {
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

/// Ends of input partitions, refreshed at most every 50 ms, to tell a lagging input (more
/// records to fetch) from a caught-up one.
pub(super) struct EndCache {
    pub(super) log: Arc<dyn Log>,
    pub(super) slack: u64,
    pub(super) ends: std::cell::RefCell<(Instant, BTreeMap<TopicPartition, u64>)>,
}

impl EndCache {
    pub(super) fn new(log: Arc<dyn Log>, slack: u64) -> Self {
        EndCache { log, slack, ends: std::cell::RefCell::new((Instant::now() - Duration::from_secs(1), BTreeMap::new())) }
    }

    /// True when `tp` has records the task has not fetched yet. Its position is the
    /// consumer's or, where that is further or not known yet, how far the task has fetched
    /// (`fetched`: from its committed offset until a record arrives). On Kafka the consumer's
    /// position is unknown until its first record, and an unknown position used to count as
    /// caught up: an input idled at once, and at the end of input (`runtime.idle =
    /// "end_of_input"`) an idle input holds nothing back, so stream time jumped to the end
    /// of time and every record read after that was stamped i64::MAX, which Kafka refuses
    /// (INVALID_TIMESTAMP: the transaction aborted and the task rewound, again and again).
    pub(super) fn lags(&self, consumer: &dyn Consumer, tp: &TopicPartition, fetched: Option<u64>) -> bool {
        let pos = consumer.position(tp).max(fetched).unwrap_or(0);
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

/// Takes a snapshot of producers' declarations when the board changed, and claims what
/// has been fetched since.
pub(super) fn cover(shared: &Shared, watch: &mut Watch, tasks: &BTreeMap<u32, RtTask>, consumer: &mut dyn Consumer, sources: &[String], wall: i64) {
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
