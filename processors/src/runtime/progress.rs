//! Progress: how far every task is, published with each of its commits on the compacted
//! topic `<app>.progress`, and the frontier a task derives from it for each of its input
//! groups — the logical time below which no record can still arrive there.
//!
//! Each task publishes, in the same transaction as its outputs (key `task/<processor>/<p>`):
//!
//! - `pending`, per slot (input group, then timers): the lowest logical time of anything it
//!   holds and has not processed — buffered records, the bound of an empty source input,
//!   its earliest timer. Everything it will emit because of those is stamped at or after it
//!   (plus the lookahead on feedback edges).
//! - `covered`, per derived input and writer task: the writer's output frontier as of a
//!   moment after which this task has fetched everything that writer had committed. Records
//!   still in flight to this task are stamped at or after it.
//!
//! A group's frontier is the minimum, over every location that can reach it (with the
//! lookahead once per feedback edge on the way), of what the tasks there have pending and of
//! what is in flight into them. Every value is read from one partition in commit order, so a
//! task's view is a prefix of everyone's history, and a record is accounted for either as
//! pending at its reader or as in flight to it. This is timely dataflow's progress tracking
//! on a log (docs/ARCHITECTURE.md, "Time and order").
//!
//! Producers of source topics may declare their progress too (key `source/<name>`):
//! everything they will write to their topics is stamped at or after `complete_before`, until
//! `lease_until` on the wall clock (a producer that stops renewing counts as gone).

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use storeflow_ingest::TopicPartition;

use super::topology::{Loc, Topology};

/// The progress topic of application `app`.
pub fn progress_topic(app: &str) -> String {
    format!("{app}.progress")
}

/// A task's key on the progress topic.
pub fn task_key(processor: &str, partition: u32) -> String {
    format!("task/{processor}/{partition}")
}

/// A producer's key on the progress topic.
pub fn source_key(producer: &str) -> String {
    format!("source/{producer}")
}

/// What one task published.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskProgress {
    /// Per slot (groups, then timers): the lowest logical time pending there
    /// (`i64::MAX`: nothing).
    pub pending: Vec<i64>,
    /// Derived input topic → writer task (`processor/partition`) → the writer's output
    /// frontier that this task has covered.
    pub covered: BTreeMap<String, BTreeMap<String, i64>>,
}

/// What a producer of source records declared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceProgress {
    /// The topics it writes.
    pub topics: Vec<String>,
    /// Everything it writes from now on is stamped at or after this (ms).
    pub complete_before: i64,
    /// The declaration holds until this wall-clock time (ms); the producer renews it.
    pub lease_until: i64,
}

/// A writer task's name in `covered`.
pub fn writer_id(processor: &str, partition: u32) -> String {
    format!("{processor}/{partition}")
}

/// The latest progress of every task and producer, as read from the progress topic.
#[derive(Debug)]
pub struct Board {
    /// Per processor of the topology, per partition.
    tasks: Vec<Vec<Option<TaskProgress>>>,
    sources: BTreeMap<String, SourceProgress>,
    /// Bumped on every change.
    pub version: u64,
}

impl Board {
    /// An empty board for `topology`.
    pub fn new(topology: &Topology) -> Board {
        Board { tasks: topology.nodes.iter().map(|n| vec![None; n.tasks as usize]).collect(), sources: BTreeMap::new(), version: 0 }
    }

    /// Applies one record of the progress topic (unknown or malformed ones are ignored).
    pub fn apply(&mut self, topology: &Topology, key: &[u8], value: Option<&[u8]>) {
        let Ok(key) = std::str::from_utf8(key) else { return };
        if let Some(rest) = key.strip_prefix("task/") {
            let Some((name, part)) = rest.rsplit_once('/') else { return };
            let (Some(p), Ok(part)) = (topology.index(name), part.parse::<usize>()) else { return };
            let Some(slot) = self.tasks.get_mut(p).and_then(|v| v.get_mut(part)) else { return };
            *slot = value.and_then(|v| serde_json::from_slice(v).ok());
            self.version += 1;
        } else if let Some(name) = key.strip_prefix("source/") {
            match value.and_then(|v| serde_json::from_slice::<SourceProgress>(v).ok()) {
                Some(s) => self.sources.insert(name.to_string(), s),
                None => self.sources.remove(name),
            };
            self.version += 1;
        }
    }

    /// What task `partition` of processor `p` published last.
    pub fn task(&self, p: usize, partition: u32) -> Option<&TaskProgress> {
        self.tasks.get(p)?.get(partition as usize)?.as_ref()
    }

    /// The tasks of processor `p` that have not published anything yet.
    pub fn silent(&self, p: usize) -> Vec<u32> {
        self.tasks.get(p).map(|v| v.iter().enumerate().filter(|(_, t)| t.is_none()).map(|(i, _)| i as u32).collect()).unwrap_or_default()
    }

    /// The declared bound of source `topic` at wall-clock `now`: the lowest `complete_before`
    /// of the producers with a live lease that write it, if any.
    pub fn declared(&self, topic: &str, now: i64) -> Option<i64> {
        self.sources
            .values()
            .filter(|s| s.lease_until > now && s.topics.iter().any(|t| t == topic))
            .map(|s| s.complete_before)
            .min()
    }
}

/// The output frontier writer task `entry` (of processor `p`) promises on `topic` from its
/// own pending work: the lowest pending time of a slot that emits there (timers also count
/// what the groups may still schedule), plus the lookahead on a feedback edge.
pub fn local_output_frontier(topology: &Topology, p: usize, entry: &TaskProgress, topic: &str, lookahead: i64) -> i64 {
    let node = &topology.nodes[p];
    let timers = node.timers_slot();
    let at = |slot: usize| entry.pending.get(slot).copied().unwrap_or(i64::MIN);
    let groups_min = (0..node.flow.groups.len()).map(at).min().unwrap_or(i64::MAX);
    let mut f = i64::MAX;
    for ((wp, slot), fb) in topology.writers_of(topic) {
        if *wp != p {
            continue;
        }
        let base = if *slot == timers { at(timers).min(groups_min) } else { at(*slot) };
        f = f.min(if *fb { base.saturating_add(lookahead) } else { base });
    }
    f
}

/// The frontier of slot `slot` of task `partition` of processor `p`: no record will
/// arrive at that group's derived inputs stamped below it. `own` is the task's own current
/// progress (fresher than what it last published). `i64::MIN` when something it depends on
/// has not published yet.
pub fn frontier(topology: &Topology, board: &Board, lookahead: i64, p: usize, partition: u32, slot: usize, own: &TaskProgress) -> i64 {
    let mut g = i64::MAX;
    // What is in flight into this very task.
    if let Some(group) = topology.nodes[p].flow.groups.get(slot) {
        for t in group.inputs.iter().filter(|t| topology.is_derived(t)) {
            g = g.min(in_flight(topology, own, t));
        }
    }
    for ((q, s), d) in topology.reaching((p, slot)) {
        let add = lookahead.saturating_mul(i64::from(*d));
        let node = &topology.nodes[*q];
        for j in 0..node.tasks {
            let entry = if *q == p && j == partition { Some(own) } else { board.task(*q, j) };
            let Some(entry) = entry else { return i64::MIN };
            g = g.min(entry.pending.get(*s).copied().unwrap_or(i64::MIN).saturating_add(add));
            if let Some(gr) = node.flow.groups.get(*s) {
                for t in gr.inputs.iter().filter(|t| topology.is_derived(t)) {
                    g = g.min(in_flight(topology, entry, t).saturating_add(add));
                }
            }
        }
        if g == i64::MIN {
            break;
        }
    }
    g
}

/// The lowest time a record in flight on `topic` to the task that published `entry` can
/// carry: the least covered frontier over every writer task (`i64::MIN` if one is missing).
fn in_flight(topology: &Topology, entry: &TaskProgress, topic: &str) -> i64 {
    let covered = entry.covered.get(topic);
    let mut m = i64::MAX;
    for ((wp, _), _) in topology.writers_of(topic) {
        let node = &topology.nodes[*wp];
        for j in 0..node.tasks {
            match covered.and_then(|c| c.get(&writer_id(&node.name, j))) {
                Some(v) => m = m.min(*v),
                None => return i64::MIN,
            }
        }
    }
    m
}

/// The values a task may claim as covered once it has fetched up to `ends`.
#[derive(Debug)]
struct Snapshot {
    /// Partitions and the offset each must be fetched to.
    ends: Vec<(TopicPartition, u64)>,
    /// (own partition, topic, writer id) → value.
    values: Vec<(u32, String, String, i64)>,
    /// (own partition, source topic) → declared bound.
    sources: Vec<(u32, String, i64)>,
}

/// What one processor instance has covered, per own partition: writers' frontiers on its
/// derived inputs and producers' declared bounds on its source inputs.
#[derive(Debug, Default)]
pub struct Coverage {
    /// own partition → topic → writer id → value.
    pub covered: BTreeMap<u32, BTreeMap<String, BTreeMap<String, i64>>>,
    /// own partition → source topic → declared bound.
    pub declared: BTreeMap<u32, BTreeMap<String, i64>>,
    pending: VecDeque<Snapshot>,
    /// The board version of the last snapshot.
    pub seen_version: u64,
}

impl Coverage {
    /// Takes what the board says now for `partitions`, to be claimed once the consumer has
    /// fetched to the `ends` the caller reads *after* this call (see [`Coverage::push`]).
    #[allow(clippy::too_many_arguments)]
    pub fn values_now(
        topology: &Topology,
        board: &Board,
        lookahead: i64,
        p: usize,
        partitions: &[u32],
        sources: &[String],
        now: i64,
    ) -> (Vec<(u32, String, String, i64)>, Vec<(u32, String, i64)>) {
        let mut values = Vec::new();
        let mut declared = Vec::new();
        let inputs = topology.nodes[p].flow.inputs();
        for part in partitions {
            for t in inputs.iter().filter(|t| topology.is_derived(t)) {
                for ((wp, _), _) in topology.writers_of(t) {
                    let node = &topology.nodes[*wp];
                    for j in 0..node.tasks {
                        if let Some(e) = board.task(*wp, j) {
                            values.push((*part, t.clone(), writer_id(&node.name, j), local_output_frontier(topology, *wp, e, t, lookahead)));
                        }
                    }
                }
            }
            for t in sources {
                if let Some(v) = board.declared(t, now) {
                    declared.push((*part, t.clone(), v));
                }
            }
        }
        (values, declared)
    }

    /// Queues `values` to be claimed once every partition in `ends` is fetched that far.
    pub fn push(&mut self, ends: Vec<(TopicPartition, u64)>, values: Vec<(u32, String, String, i64)>, sources: Vec<(u32, String, i64)>, version: u64) {
        self.seen_version = version;
        self.pending.push_back(Snapshot { ends, values, sources });
    }

    /// True while a snapshot waits to be claimed.
    pub fn waiting(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Claims every snapshot whose partitions `fetched(tp, end)` says are fetched; returns
    /// whether anything changed.
    pub fn claim(&mut self, fetched: &mut dyn FnMut(&TopicPartition, u64) -> bool) -> bool {
        let mut changed = false;
        while let Some(front) = self.pending.front() {
            if !front.ends.iter().all(|(tp, end)| fetched(tp, *end)) {
                break;
            }
            let snap = self.pending.pop_front().expect("front exists");
            for (part, topic, writer, v) in snap.values {
                let slot = self.covered.entry(part).or_default().entry(topic).or_default().entry(writer).or_insert(i64::MIN);
                if v > *slot {
                    *slot = v;
                    changed = true;
                }
            }
            for (part, topic, v) in snap.sources {
                let slot = self.declared.entry(part).or_default().entry(topic).or_insert(i64::MIN);
                if v > *slot {
                    *slot = v;
                    changed = true;
                }
            }
        }
        changed
    }

    /// Forgets a partition (revoked).
    pub fn forget(&mut self, partition: u32) {
        self.covered.remove(&partition);
        self.declared.remove(&partition);
    }
}

/// The slot of `loc` as an index (for tests and messages).
pub fn slot_of(loc: Loc) -> usize {
    loc.1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Flow;
    use crate::runtime::topology::Node;

    const D: i64 = 1000;

    fn saga(tasks: u32) -> Topology {
        Topology::new(vec![
            Node {
                name: "orders".into(),
                flow: Flow::new()
                    .group(&["src"])
                    .emits(&["commands"])
                    .group(&["replies"])
                    .feeds_back(&["commands"])
                    .timers()
                    .feeds_back(&["commands"])
                    .into(),
                globals: vec![],
                tasks,
            },
            Node { name: "inventory".into(), flow: Flow::new().group(&["stock", "commands"]).emits(&["replies"]).into(), globals: vec![], tasks },
        ])
        .unwrap()
    }

    fn entry(pending: &[i64], covered: &[(&str, &str, i64)]) -> TaskProgress {
        let mut c: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        for (t, w, v) in covered {
            c.entry(t.to_string()).or_default().insert(w.to_string(), *v);
        }
        TaskProgress { pending: pending.to_vec(), covered: c }
    }

    fn publish(board: &mut Board, t: &Topology, name: &str, p: u32, e: &TaskProgress) {
        board.apply(t, task_key(name, p).as_bytes(), Some(&serde_json::to_vec(e).unwrap()));
    }

    #[test]
    fn a_frontier_is_unknown_until_every_task_it_depends_on_has_published() {
        let t = saga(1);
        let mut b = Board::new(&t);
        let own = entry(&[100, i64::MAX, i64::MAX], &[("replies", "inventory/0", i64::MAX)]);
        assert_eq!(frontier(&t, &b, D, 0, 0, 1, &own), i64::MIN, "inventory has not said anything");
        publish(&mut b, &t, "inventory", 0, &entry(&[i64::MAX, i64::MAX], &[("commands", "orders/0", 100)]));
        assert_eq!(frontier(&t, &b, D, 0, 0, 1, &own), 100, "what orders' source group still holds bounds its replies");
    }

    #[test]
    fn a_quiet_cycle_jumps_to_the_next_pending_record_instead_of_crawling_by_the_lookahead() {
        let t = saga(1);
        let mut b = Board::new(&t);
        // Orders holds one source record at t = 1,000,000; nothing else anywhere.
        let own = entry(&[1_000_000, i64::MAX, i64::MAX], &[("replies", "inventory/0", i64::MAX)]);
        publish(&mut b, &t, "inventory", 0, &entry(&[i64::MAX, i64::MAX], &[("commands", "orders/0", 1_000_000)]));
        assert_eq!(frontier(&t, &b, D, 0, 0, 1, &own), 1_000_000);
        // Inventory's frontier for commands: orders' replies and timers reach it through one
        // feedback edge, its source group directly.
        let inv_own = entry(&[i64::MAX, i64::MAX], &[("commands", "orders/0", 1_000_000)]);
        publish(&mut b, &t, "orders", 0, &own);
        assert_eq!(frontier(&t, &b, D, 1, 0, 0, &inv_own), 1_000_000);
    }

    #[test]
    fn pending_replies_hold_inventory_back_only_by_the_lookahead() {
        let t = saga(1);
        let mut b = Board::new(&t);
        // Orders: source group far ahead (5,000), a reply pending at 100.
        let orders = entry(&[5000, 100, i64::MAX], &[("replies", "inventory/0", 100)]);
        publish(&mut b, &t, "orders", 0, &orders);
        let inv = entry(&[i64::MAX, i64::MAX], &[("commands", "orders/0", 1100)]);
        assert_eq!(frontier(&t, &b, D, 1, 0, 0, &inv), 100 + D, "inventory may process commands below 1,100");
    }

    #[test]
    fn the_timers_of_a_writer_bound_its_outputs_with_what_its_groups_may_still_schedule() {
        let t = saga(1);
        let e = entry(&[300, i64::MAX, 900], &[]);
        assert_eq!(local_output_frontier(&t, 0, &e, "commands", D), 300, "the source group, directly");
        let e = entry(&[i64::MAX, i64::MAX, 900], &[]);
        assert_eq!(local_output_frontier(&t, 0, &e, "commands", D), 900 + D, "only a timer: through its feedback edge");
    }

    #[test]
    fn coverage_is_claimed_only_once_the_consumer_has_fetched_to_the_snapshot() {
        let t = saga(1);
        let mut b = Board::new(&t);
        publish(&mut b, &t, "inventory", 0, &entry(&[400, i64::MAX], &[]));
        let (values, sources) = Coverage::values_now(&t, &b, D, 0, &[0], &[], 0);
        assert_eq!(values, vec![(0, "replies".to_string(), "inventory/0".to_string(), 400)]);
        let mut c = Coverage::default();
        let tp = TopicPartition::new("replies", 0);
        c.push(vec![(tp.clone(), 10)], values, sources, b.version);
        assert!(!c.claim(&mut |_, end| end <= 9), "fetched only to 9");
        assert!(c.covered.is_empty());
        assert!(c.claim(&mut |_, end| end <= 10));
        assert_eq!(c.covered[&0]["replies"]["inventory/0"], 400);
    }

    #[test]
    fn a_producer_declaration_lapses_with_its_lease() {
        let t = saga(1);
        let mut b = Board::new(&t);
        let s = SourceProgress { topics: vec!["src".into()], complete_before: 777, lease_until: 10_000 };
        b.apply(&t, source_key("sim").as_bytes(), Some(&serde_json::to_vec(&s).unwrap()));
        assert_eq!(b.declared("src", 9_999), Some(777));
        assert_eq!(b.declared("src", 10_000), None);
        assert_eq!(b.declared("other", 0), None);
    }
}
