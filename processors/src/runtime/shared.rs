//! What the consumer thread and its rebalance callbacks share: the processor's set-up and
//! its tasks, each with its producer, input groups and what it has consumed and committed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use parking_lot::Mutex;
use storeflow_ingest::{Log, TopicPartition, TransactionalProducer};

use super::align::GroupState;
use super::config::{RuntimeConfig, group_of};
use super::progress::TaskProgress;
use super::task::TaskCore;
use super::topology::Topology;
use crate::flow::Flow;
use crate::metrics::Metrics;

/// The runtime's own entries in a task's state (changelogged like the processor's).
pub(super) const META: &str = "__meta";

/// A task as the runtime runs it: the processor's state and pending records, its
/// transactional producer, its input groups, and what it has consumed, committed and
/// published.
pub(super) struct RtTask {
    pub(super) core: TaskCore,
    pub(super) txn: Box<dyn TransactionalProducer>,
    pub(super) groups: Vec<GroupState>,
    pub(super) routes: HashMap<TopicPartition, (usize, usize)>,
    /// Next offset per source input partition (all before it processed), not yet committed.
    pub(super) offsets: BTreeMap<TopicPartition, u64>,
    /// Derived input partitions: offsets processed, out of offset order, above the
    /// committed one (skipped when re-read after a restart).
    pub(super) skip: BTreeMap<TopicPartition, BTreeSet<u64>>,
    /// The skip sets as last committed (restored when a commit fails).
    pub(super) committed_skip: BTreeMap<TopicPartition, BTreeSet<u64>>,
    /// Stream times as last committed.
    pub(super) committed_streams: Vec<i64>,
    /// What it last published on the progress topic.
    pub(super) published: Option<TaskProgress>,
    /// When each input partition last delivered a record (for idleness).
    pub(super) last_fetch: HashMap<TopicPartition, Instant>,
    /// The offset after the last record fetched per input partition (from the committed
    /// one after a rewind).
    pub(super) fetched_to: HashMap<TopicPartition, u64>,
    /// Its recent commits on derived topics that processors read: topic → partition →
    /// (offset after the commit, lowest time written), as last committed.
    pub(super) emitted: BTreeMap<String, BTreeMap<u32, Vec<(u64, i64)>>>,
    /// After a restart: what the last commit said it had fetched of its derived inputs and
    /// had pending, until it has fetched that far again (see [`Held`]).
    pub(super) refetch: Option<Held>,
    /// What the state holds as `held` (as last written).
    pub(super) held_saved: Option<Held>,
    pub(super) last_commit: Instant,
    /// Something was processed since the last commit.
    pub(super) worked: bool,
    /// Since when records have waited without a step, and when that was last reported.
    pub(super) stuck: Option<(Instant, Instant)>,
    /// Buffered source records dated past the wall clock + `max_skew`: their time and the
    /// reason. They are buffered at the lowest time (so they move no stream time) and
    /// dead-lettered when their turn comes, in offset order.
    pub(super) refused: HashMap<(TopicPartition, u64), (i64, String)>,
}

/// What a commit's progress said of a task's derived inputs: how far it had fetched them
/// and what it had pending per slot. Readers upstream forget their commits below what it
/// had fetched, but its buffered records between its committed offsets and that point are
/// lost with a crash; until it has fetched them again it publishes (and uses) these, so no
/// frontier passes the records it is about to read again.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct Held {
    pub(super) fetched: BTreeMap<String, u64>,
    pub(super) pending: Vec<i64>,
}

impl RtTask {
    pub(super) fn streams(&self) -> Vec<i64> {
        self.groups.iter().map(|g| g.stream).collect()
    }
}

/// What the consumer thread and its rebalance callbacks share.
pub(super) struct Shared {
    pub(super) name: &'static str,
    pub(super) log: Arc<dyn Log>,
    pub(super) config: RuntimeConfig,
    pub(super) metrics: Arc<Metrics>,
    pub(super) changelog: String,
    pub(super) progress: String,
    pub(super) topology: Arc<Topology>,
    /// This processor's index in the topology.
    pub(super) me: usize,
    pub(super) flow: Arc<Flow>,
    pub(super) globals: Vec<String>,
    pub(super) tasks: Mutex<BTreeMap<u32, RtTask>>,
    /// Assigned partitions without a running task, with the earliest moment to (re)open it:
    /// a task that could not start, lost its producer to a fence, or could not rewind.
    pub(super) unopened: Mutex<BTreeMap<u32, Instant>>,
    /// Partitions revoked since the loop last looked (their coverage is forgotten).
    pub(super) revoked: Mutex<Vec<u32>>,
    /// Set to simulate a crash in tests: stop without committing anything.
    pub(super) crashed: AtomicBool,
}

impl Shared {
    pub(super) fn group(&self) -> String {
        group_of(&self.config.app, self.name)
    }

    pub(super) fn tid(&self, p: u32) -> String {
        format!("{}.{p}", self.group())
    }
}
