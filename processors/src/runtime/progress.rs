//! Progress: how far every task is, published with each of its commits on the compacted
//! topic `<app>.progress`, and the frontier a task derives from it for each of its input
//! groups — the logical time below which no record can still arrive there.
//!
//! Each task publishes, in the same transaction as its outputs (key `task/<processor>/<p>`):
//!
//! - `pending`, per slot (input group, then timers): the lowest logical time of anything it
//!   holds and has not processed — buffered records, the bound of an empty source input,
//!   its earliest timer. What it emits because of those is stamped at or after it.
//! - `fetched`, per derived input: how far it has fetched its partition of it.
//! - `emitted`, per derived topic and partition it writes: its recent commits there, each as
//!   (the offset after the commit, the lowest time it wrote) — the last one, this very
//!   commit, with its offsets not known yet.
//!
//! A group's frontier is the minimum, over every location that can reach it (plus the
//! lookahead once per feedback edge on the way), of what the tasks there have pending and
//! of the records in flight into them — a writer's commits that end beyond the reader's
//! fetch position. Every value is read from one partition in commit order, so a task's view
//! is a prefix of everyone's history: a record is either listed by its writer and not yet
//! fetched, or fetched and pending at its reader, or not written yet — and then caused by
//! something pending or in flight in that prefix. This is timely dataflow's progress
//! tracking, counted with offsets (docs/ARCHITECTURE.md, "Time and order"). Nothing is
//! recursive, so a quiet cycle jumps straight to its next record.
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
    /// Derived input topic → the next offset the task will fetch from its partition of it.
    pub fetched: BTreeMap<String, u64>,
    /// Derived topic → partition → recent commits there: (offset after it, lowest time
    /// written), oldest first; `u64::MAX` for the commit this entry is part of.
    pub emitted: BTreeMap<String, BTreeMap<u32, Vec<(u64, i64)>>>,
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

/// The frontier of slot `slot` of task `partition` of processor `p`: no record will
/// arrive at that group's derived inputs stamped below it. `own` is the task's own current
/// progress (fresher than what it last published). `i64::MIN` while something it depends
/// on has not published yet.
pub fn frontier(topology: &Topology, board: &Board, lookahead: i64, p: usize, partition: u32, slot: usize, own: &TaskProgress) -> i64 {
    let entry_of = |q: usize, j: u32| -> Option<&TaskProgress> { if q == p && j == partition { Some(own) } else { board.task(q, j) } };
    let mut g = i64::MAX;
    // In flight into this very task.
    if let Some(group) = topology.nodes[p].flow.groups.get(slot) {
        for t in group.inputs.iter().filter(|t| topology.is_derived(t)) {
            g = g.min(in_flight(topology, &entry_of, own, partition, t));
        }
    }
    for ((q, s), d) in topology.reaching((p, slot)) {
        let add = lookahead.saturating_mul(i64::from(*d));
        let node = &topology.nodes[*q];
        for j in 0..node.tasks {
            let Some(entry) = entry_of(*q, j) else { return i64::MIN };
            g = g.min(entry.pending.get(*s).copied().unwrap_or(i64::MIN).saturating_add(add));
            if let Some(gr) = node.flow.groups.get(*s) {
                for t in gr.inputs.iter().filter(|t| topology.is_derived(t)) {
                    g = g.min(in_flight(topology, &entry_of, entry, j, t).saturating_add(add));
                }
            }
        }
        if g == i64::MIN {
            break;
        }
    }
    g
}

/// The lowest time of a record in flight on `topic` to the reader that published `entry`
/// (the reader's task, hence its partition of the topic, is `reader`): of every writer
/// task's commits there that end beyond the reader's fetch position. `i64::MIN` when the
/// reader or a writer has not published yet.
fn in_flight<'a>(topology: &Topology, entry_of: &dyn Fn(usize, u32) -> Option<&'a TaskProgress>, entry: &TaskProgress, reader: u32, topic: &str) -> i64 {
    let Some(fetched) = entry.fetched.get(topic).copied() else { return i64::MIN };
    let mut m = i64::MAX;
    let mut seen: Vec<usize> = Vec::new();
    for ((wp, _), _) in topology.writers_of(topic) {
        if seen.contains(wp) {
            continue;
        }
        seen.push(*wp);
        for i in 0..topology.nodes[*wp].tasks {
            let Some(w) = entry_of(*wp, i) else { return i64::MIN };
            let commits = w.emitted.get(topic).and_then(|per| per.get(&reader));
            for (end, min) in commits.into_iter().flatten() {
                if *end > fetched {
                    m = m.min(*min);
                }
            }
        }
    }
    m
}

/// How far the pipeline has got on `topic`, for a reader outside it (a tool, a test, the
/// demo's storefront): no record of `topic` will be written stamped below the result (once
/// it has read the topic to its ends *after* computing this, it has every record below).
/// `i64::MIN` while a task it depends on has not published yet; `i64::MAX` when no
/// processor writes it.
pub fn topic_frontier(topology: &Topology, board: &Board, lookahead: i64, topic: &str) -> i64 {
    let mut g = i64::MAX;
    for ((wp, ws), fb) in topology.writers_of(topic) {
        let extra = if *fb { lookahead } else { 0 };
        let entry_of = |q: usize, j: u32| board.task(q, j);
        let mut locations: Vec<((usize, usize), u32)> = vec![((*wp, *ws), 0)];
        locations.extend(topology.reaching((*wp, *ws)).iter().copied());
        for ((q, s), d) in locations {
            let add = lookahead.saturating_mul(i64::from(d)).saturating_add(extra);
            let n = &topology.nodes[q];
            for j in 0..n.tasks {
                let Some(entry) = entry_of(q, j) else { return i64::MIN };
                g = g.min(entry.pending.get(s).copied().unwrap_or(i64::MIN).saturating_add(add));
                if let Some(gr) = n.flow.groups.get(s) {
                    for t in gr.inputs.iter().filter(|t| topology.is_derived(t)) {
                        g = g.min(in_flight(topology, &entry_of, entry, j, t).saturating_add(add));
                    }
                }
            }
        }
    }
    g
}

/// Declares, for producer `name`, that everything it will still write to `topics` is
/// stamped at or after `complete_before` (ms), until `lease_ms` from now on the wall clock:
/// the pipeline then waits for those topics exactly that far, no more (a replay of a
/// simulation is as reproducible as the simulation). Call it after the records before the
/// bound are acknowledged.
pub fn declare(log: &dyn storeflow_ingest::Log, app: &str, name: &str, topics: &[String], complete_before: i64, lease_ms: i64) -> crate::Result<()> {
    let topic = progress_topic(app);
    log.create_topics(&[storeflow_ingest::TopicSpec::compacted(&topic, 1)])?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let value = SourceProgress { topics: topics.to_vec(), complete_before, lease_until: now.saturating_add(lease_ms) };
    let producer = log.producer()?;
    producer
        .send(storeflow_ingest::ProduceRecord {
            topic,
            partition: Some(0),
            key: Some(source_key(name).into_bytes()),
            value: Some(serde_json::to_vec(&value).map_err(|e| crate::RuntimeError::Setup(e.to_string()))?),
            headers: vec![],
            timestamp: None,
        })?
        .wait()?;
    Ok(())
}

/// Withdraws producer `name`'s declaration: it writes no more, and its topics are waited
/// for as any source is (up to `max_task_idle` once caught up).
pub fn withdraw(log: &dyn storeflow_ingest::Log, app: &str, name: &str) -> crate::Result<()> {
    let producer = log.producer()?;
    producer
        .send(storeflow_ingest::ProduceRecord {
            topic: progress_topic(app),
            partition: Some(0),
            key: Some(source_key(name).into_bytes()),
            value: None,
            headers: vec![],
            timestamp: None,
        })?
        .wait()?;
    Ok(())
}

/// A reader of `<app>.progress` outside the runtime: the board, kept current.
pub struct ProgressReader {
    consumer: Box<dyn storeflow_ingest::Consumer>,
    /// What everyone published last.
    pub board: Board,
    topology: std::sync::Arc<Topology>,
}

impl ProgressReader {
    /// Reads the progress topic of `app` from its start.
    pub fn open(log: &dyn storeflow_ingest::Log, app: &str, topology: std::sync::Arc<Topology>) -> crate::Result<ProgressReader> {
        let topic = progress_topic(app);
        log.create_topics(&[storeflow_ingest::TopicSpec::compacted(&topic, 1)])?;
        let mut cfg = storeflow_ingest::ConsumerConfig::new(&format!("{app}.progress-reader.{}", std::process::id()));
        cfg.reset = storeflow_ingest::OffsetReset::Earliest;
        cfg.read_committed = true;
        let mut consumer = log.consumer(cfg, None)?;
        let tp = TopicPartition::new(&topic, 0);
        let start = log.watermarks(std::slice::from_ref(&tp))?[0].0;
        consumer.assign(&[(tp, start)])?;
        Ok(ProgressReader { consumer, board: Board::new(&topology), topology })
    }

    /// Applies what was published since, waiting up to `timeout` for something new.
    pub fn poll(&mut self, timeout: std::time::Duration) -> crate::Result<()> {
        let mut timeout = timeout;
        loop {
            let recs = self.consumer.poll(10_000, timeout)?;
            if recs.is_empty() {
                return Ok(());
            }
            for r in recs {
                if let Some(k) = &r.key {
                    self.board.apply(&self.topology, k, r.value.as_deref());
                }
            }
            timeout = std::time::Duration::ZERO;
        }
    }

    /// [`topic_frontier`] on the current board.
    pub fn frontier(&self, topic: &str, lookahead: i64) -> i64 {
        topic_frontier(&self.topology, &self.board, lookahead, topic)
    }

    /// Stops reading.
    pub fn close(self) -> crate::Result<()> {
        self.consumer.close()?;
        Ok(())
    }
}

/// What one processor instance has covered of its source inputs: producers' declared
/// bounds, once it has fetched what they had written when they declared them.
#[derive(Debug, Default)]
pub struct Coverage {
    /// own partition → source topic → declared bound.
    pub declared: BTreeMap<u32, BTreeMap<String, i64>>,
    pending: VecDeque<(Vec<(TopicPartition, u64)>, Vec<(u32, String, i64)>)>,
    /// The board version of the last snapshot.
    pub seen_version: u64,
}

impl Coverage {
    /// What producers declare now for `sources` of `partitions`, to be claimed once the
    /// consumer has fetched to the ends the caller reads *after* this call.
    pub fn values_now(board: &Board, partitions: &[u32], sources: &[String], now: i64) -> Vec<(u32, String, i64)> {
        let mut declared = Vec::new();
        for part in partitions {
            for t in sources {
                if let Some(v) = board.declared(t, now) {
                    declared.push((*part, t.clone(), v));
                }
            }
        }
        declared
    }

    /// Queues `values` to be claimed once every partition in `ends` is fetched that far.
    pub fn push(&mut self, ends: Vec<(TopicPartition, u64)>, values: Vec<(u32, String, i64)>, version: u64) {
        self.seen_version = version;
        self.pending.push_back((ends, values));
    }

    /// Claims every snapshot whose partitions `fetched(tp, end)` says are fetched.
    pub fn claim(&mut self, fetched: &mut dyn FnMut(&TopicPartition, u64) -> bool) -> bool {
        let mut changed = false;
        while let Some((ends, _)) = self.pending.front() {
            if !ends.iter().all(|(tp, end)| fetched(tp, *end)) {
                break;
            }
            let (_, values) = self.pending.pop_front().expect("front exists");
            for (part, topic, v) in values {
                let slot = self.declared.entry(part).or_default().entry(topic).or_insert(i64::MIN);
                if v > *slot {
                    *slot = v;
                    changed = true;
                }
            }
        }
        changed
    }

    /// Forgets a partition (revoked): its bounds, and its place in the snapshots still
    /// waiting. A snapshot waits only for partitions this instance still fetches; one that
    /// kept waiting for a revoked partition would hold every later snapshot back, and each
    /// input would stay "unclaimed" (lagging) for good after a rebalance.
    pub fn forget(&mut self, partition: u32) {
        self.declared.remove(&partition);
        for (ends, values) in &mut self.pending {
            ends.retain(|(tp, _)| tp.partition != partition);
            values.retain(|(p, _, _)| *p != partition);
        }
        self.pending.retain(|(_, values)| !values.is_empty());
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
    const MAX: i64 = i64::MAX;

    /// orders (one group: its source and inventory's answers) ⇄ inventory (stock and the
    /// saga's commands), the answers on a feedback edge; one task each.
    fn saga() -> Topology {
        Topology::new(vec![
            Node {
                name: "orders".into(),
                flow: Flow::new().group(&["src", "replies"]).emits(&["commands"]).timers().emits(&["commands"]).into(),
                globals: vec![],
                tasks: 1,
            },
            Node {
                name: "inventory".into(),
                flow: Flow::new().group(&["stock", "commands"]).feeds_back(&["replies"]).into(),
                globals: vec![],
                tasks: 1,
            },
        ])
        .unwrap()
    }

    fn entry(pending: &[i64], fetched: &[(&str, u64)], emitted: &[(&str, u32, u64, i64)]) -> TaskProgress {
        let mut e = TaskProgress { pending: pending.to_vec(), ..TaskProgress::default() };
        for (t, o) in fetched {
            e.fetched.insert(t.to_string(), *o);
        }
        for (t, p, end, min) in emitted {
            e.emitted.entry(t.to_string()).or_default().entry(*p).or_default().push((*end, *min));
        }
        e
    }

    fn publish(board: &mut Board, t: &Topology, name: &str, p: u32, e: &TaskProgress) {
        board.apply(t, task_key(name, p).as_bytes(), Some(&serde_json::to_vec(e).unwrap()));
    }

    #[test]
    fn a_frontier_is_unknown_until_every_task_it_depends_on_has_published() {
        let t = saga();
        let mut b = Board::new(&t);
        let orders = entry(&[100, MAX], &[("replies", 0)], &[]);
        assert_eq!(frontier(&t, &b, D, 0, 0, 0, &orders), i64::MIN, "inventory has not said anything");
        publish(&mut b, &t, "inventory", 0, &entry(&[MAX, MAX], &[("commands", 0)], &[]));
        assert_eq!(frontier(&t, &b, D, 0, 0, 0, &orders), 100 + D, "orders' own record, around the cycle");
    }

    #[test]
    fn a_quiet_cycle_jumps_to_the_next_pending_record_instead_of_crawling_by_the_lookahead() {
        let t = saga();
        let mut b = Board::new(&t);
        let orders = entry(&[1_000_000, MAX], &[("replies", 0)], &[]);
        publish(&mut b, &t, "orders", 0, &orders);
        let inventory = entry(&[MAX, MAX], &[("commands", 0)], &[]);
        publish(&mut b, &t, "inventory", 0, &inventory);
        assert_eq!(frontier(&t, &b, D, 1, 0, 0, &inventory), 1_000_000, "inventory may take commands up to orders' next record");
        assert_eq!(frontier(&t, &b, D, 0, 0, 0, &orders), 1_000_000 + D);
    }

    #[test]
    fn a_record_in_flight_holds_its_reader_back_until_the_reader_has_fetched_past_its_commit() {
        let t = saga();
        let mut b = Board::new(&t);
        // Inventory committed an answer stamped 1,500 in a commit that ends at offset 7 of
        // replies/0, and has nothing pending now.
        let inventory = entry(&[MAX, MAX], &[("commands", 3)], &[("replies", 0, 7, 1500)]);
        publish(&mut b, &t, "inventory", 0, &inventory);
        let orders = entry(&[9_000, MAX], &[("replies", 5)], &[]);
        publish(&mut b, &t, "orders", 0, &orders);
        assert_eq!(frontier(&t, &b, D, 0, 0, 0, &orders), 1500, "offsets 5 and 6 are not fetched yet");
        assert_eq!(frontier(&t, &b, D, 1, 0, 0, &inventory), 1500, "what orders will do with it bounds inventory too");
        let orders = entry(&[1500, MAX], &[("replies", 7)], &[]);
        publish(&mut b, &t, "orders", 0, &orders);
        assert_eq!(frontier(&t, &b, D, 0, 0, 0, &orders), 1500 + D, "fetched: now it is orders' own pending record");
    }

    #[test]
    fn a_commit_whose_offsets_are_not_known_yet_counts_as_in_flight() {
        let t = saga();
        let mut b = Board::new(&t);
        publish(&mut b, &t, "inventory", 0, &entry(&[MAX, MAX], &[("commands", 0)], &[("replies", 0, u64::MAX, 2500)]));
        let orders = entry(&[9_000, MAX], &[("replies", 1_000_000)], &[]);
        assert_eq!(frontier(&t, &b, D, 0, 0, 0, &orders), 2500);
    }

    #[test]
    fn pending_answers_hold_inventory_back_only_by_the_lookahead_on_the_way_round() {
        let t = saga();
        let mut b = Board::new(&t);
        // Orders holds an answer at 100 (stamped with the lookahead already) and source
        // records from 5,000: inventory may go on below what the answer can cause.
        let orders = entry(&[100, MAX], &[("replies", 1)], &[]);
        publish(&mut b, &t, "orders", 0, &orders);
        let inventory = entry(&[MAX, MAX], &[("commands", 0)], &[]);
        assert_eq!(frontier(&t, &b, D, 1, 0, 0, &inventory), 100);
    }

    #[test]
    fn a_producer_declaration_lapses_with_its_lease() {
        let t = saga();
        let mut b = Board::new(&t);
        let s = SourceProgress { topics: vec!["src".into()], complete_before: 777, lease_until: 10_000 };
        b.apply(&t, source_key("sim").as_bytes(), Some(&serde_json::to_vec(&s).unwrap()));
        assert_eq!(b.declared("src", 9_999), Some(777));
        assert_eq!(b.declared("src", 10_000), None);
        assert_eq!(b.declared("other", 0), None);
    }

    #[test]
    fn a_revoked_partition_no_longer_holds_back_the_snapshots_behind_it() {
        let tp = |p: u32| TopicPartition::new("src", p);
        let mut c = Coverage::default();
        c.push(vec![(tp(0), 10), (tp(1), 10)], vec![(0, "src".into(), 100), (1, "src".into(), 100)], 1);
        c.push(vec![(tp(0), 20)], vec![(0, "src".into(), 200)], 2);
        // Partition 0 is fetched far enough; partition 1 was revoked and is never fetched here.
        let mut fetched = |t: &TopicPartition, _end: u64| t.partition == 0;
        assert!(!c.claim(&mut fetched), "the first snapshot waits for partition 1");
        assert!(c.declared.is_empty());
        c.forget(1);
        assert!(c.claim(&mut fetched));
        assert_eq!(c.declared.get(&0).and_then(|d| d.get("src")), Some(&200));
        assert!(!c.declared.contains_key(&1));
        assert!(c.pending.is_empty());
    }
}
