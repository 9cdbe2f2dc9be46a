//! The order in which one task processes its records: per input group, the oldest record
//! first across the group's inputs, waiting for an input that may still deliver an older
//! one; derived records sorted by time and released only below their group's frontier;
//! timers fired once every group has passed them. Pure bookkeeping — the runtime feeds it
//! records and what it knows of the inputs (lag, idleness, frontiers) and asks what to do.
//!
//! A source input (written by producers outside the pipeline) is handled as Kafka Streams
//! does: its buffered records in offset order, the head's timestamp deciding; an input with
//! nothing buffered is waited for while it has records to fetch, and for `max_task_idle`
//! once caught up (unless its producer declared how far it is complete). A record older
//! than the group's stream time is late: it is processed at the stream time.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use storeflow_ingest::{Record, TopicPartition};

/// Header carrying a derived record's position in the order of its cause: 8 bytes of the
/// cause's hash, then 4 bytes of the output's index among the cause's outputs (big-endian).
pub const ORDER_HEADER: &str = "storeflow.order";

/// FNV-1a, 64 bits.
pub fn fnv(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

const FNV_SEED: u64 = 0xcbf2_9ce4_8422_2325;

/// Where a record stands in the total order of its time: `(cause, index)`.
pub fn order_key(rec: &Record) -> (u64, u32) {
    if let Some(h) = rec.header(ORDER_HEADER).filter(|h| h.len() == 12) {
        let cause = u64::from_be_bytes(h[..8].try_into().expect("8 bytes"));
        let index = u32::from_be_bytes(h[8..].try_into().expect("4 bytes"));
        return (cause, index);
    }
    let h = fnv(fnv(fnv(FNV_SEED, rec.topic.as_bytes()), &rec.partition.to_be_bytes()), &rec.offset.to_be_bytes());
    (h, 0)
}

/// The identity of a processing step that handles `rec`, for the order keys of its outputs.
pub fn step_of_record(rec: &Record) -> u64 {
    let (cause, index) = order_key(rec);
    fnv(fnv(FNV_SEED, &cause.to_be_bytes()), &index.to_be_bytes())
}

/// The identity of a processing step that fires the timer `key` due at `at`.
pub fn step_of_timer(key: &str, at: i64) -> u64 {
    fnv(fnv(fnv(FNV_SEED, b"timer"), key.as_bytes()), &at.to_be_bytes())
}

/// The order header value for output `index` of step `step`.
pub fn order_header(step: u64, index: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(12);
    v.extend_from_slice(&step.to_be_bytes());
    v.extend_from_slice(&index.to_be_bytes());
    v
}

/// A derived record in its heap, ordered by (time, cause, index).
#[derive(Debug)]
pub struct Sorted {
    key: (i64, u64, u32),
    rec: Record,
}

impl PartialEq for Sorted {
    fn eq(&self, o: &Self) -> bool {
        self.key == o.key
    }
}
impl Eq for Sorted {}
impl PartialOrd for Sorted {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Sorted {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.key.cmp(&o.key)
    }
}

/// What is buffered for one input partition of a task.
#[derive(Debug)]
pub enum Buffer {
    /// A source input: offset order.
    Fifo(VecDeque<Record>),
    /// A derived input: time order.
    Heap(BinaryHeap<Reverse<Sorted>>),
}

impl Buffer {
    /// Records buffered.
    pub fn len(&self) -> usize {
        match self {
            Buffer::Fifo(q) => q.len(),
            Buffer::Heap(h) => h.len(),
        }
    }

    /// True when nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The time of the record that goes first (the head of a source input, the earliest of a
    /// derived one).
    pub fn min_time(&self) -> Option<i64> {
        match self {
            Buffer::Fifo(q) => q.front().map(|r| r.timestamp),
            Buffer::Heap(h) => h.peek().map(|Reverse(s)| s.key.0),
        }
    }

    /// The lowest offset buffered.
    pub fn min_offset(&self) -> Option<u64> {
        match self {
            Buffer::Fifo(q) => q.front().map(|r| r.offset),
            Buffer::Heap(h) => h.iter().map(|Reverse(s)| s.rec.offset).min(),
        }
    }
}

/// One input of a group in one task.
#[derive(Debug)]
pub struct Member {
    /// The partition.
    pub tp: TopicPartition,
    /// Its records.
    pub buffer: Buffer,
}

/// What the runtime knows of a member right now.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemberView {
    /// Source: the log holds records the consumer has not fetched yet.
    pub lagging: bool,
    /// Source: caught up and quiet for at least `max_task_idle`.
    pub idle: bool,
    /// Source: its producers declared it complete below this (covered).
    pub declared: Option<i64>,
}

/// What the runtime knows of a group right now.
#[derive(Clone, Debug, Default)]
pub struct GroupView {
    /// Per member (same order as the group's members).
    pub members: Vec<MemberView>,
    /// The group's frontier over its derived inputs (no record below it can still arrive);
    /// `i64::MAX` for a group without derived inputs.
    pub frontier: i64,
    /// Wall-clock time (ms), used for idle sources when the stream follows the clock.
    pub wall: i64,
    /// Idle sources let stream time follow the wall clock (timers fire in quiet periods);
    /// `false`: an idle source's input is over (end of input: time may go to the end).
    pub idle_advance: bool,
    /// The group's global inputs: caught up (or declared complete below the value).
    pub globals_complete_before: i64,
}

/// One input group of a task.
#[derive(Debug)]
pub struct GroupState {
    /// Its inputs.
    pub members: Vec<Member>,
    /// True when some member is a source input (or the group has global inputs): such a
    /// group is ordered with the task's timers.
    pub has_source: bool,
    /// Everything this group processes from now on has a logical time at or after this.
    pub stream: i64,
}

/// The next thing a group can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Process the head of this member at this logical time.
    Record { member: usize, time: i64 },
    /// Nothing can be processed now.
    Wait,
}

impl GroupState {
    /// A group over `inputs` (each `(partition, derived?)`).
    pub fn new(inputs: Vec<(TopicPartition, bool)>, has_globals: bool) -> GroupState {
        let has_source = has_globals || inputs.iter().any(|(_, d)| !d);
        GroupState {
            members: inputs
                .into_iter()
                .map(|(tp, derived)| Member { tp, buffer: if derived { Buffer::Heap(BinaryHeap::new()) } else { Buffer::Fifo(VecDeque::new()) } })
                .collect(),
            has_source,
            stream: i64::MIN,
        }
    }

    /// Buffers `rec` at member `m`.
    pub fn push(&mut self, m: usize, rec: Record) {
        match &mut self.members[m].buffer {
            Buffer::Fifo(q) => q.push_back(rec),
            Buffer::Heap(h) => {
                let (cause, index) = order_key(&rec);
                h.push(Reverse(Sorted { key: (rec.timestamp, cause, index), rec }));
            }
        }
    }

    /// True when member `m` has nothing buffered.
    pub fn is_empty(&self, m: usize) -> bool {
        match &self.members[m].buffer {
            Buffer::Fifo(q) => q.is_empty(),
            Buffer::Heap(h) => h.is_empty(),
        }
    }

    /// Records buffered over every member.
    pub fn buffered(&self) -> usize {
        self.members
            .iter()
            .map(|m| match &m.buffer {
                Buffer::Fifo(q) => q.len(),
                Buffer::Heap(h) => h.len(),
            })
            .sum()
    }

    /// Drops everything buffered (a rewind).
    pub fn clear(&mut self) {
        for m in &mut self.members {
            match &mut m.buffer {
                Buffer::Fifo(q) => q.clear(),
                Buffer::Heap(h) => h.clear(),
            }
        }
    }

    fn head(&self, m: usize) -> Option<i64> {
        match &self.members[m].buffer {
            Buffer::Fifo(q) => q.front().map(|r| r.timestamp),
            Buffer::Heap(h) => h.peek().map(|Reverse(s)| s.key.0),
        }
    }

    /// The lowest time member `m` may still deliver, for ordering other members' records
    /// against it (`i64::MAX`: it will not deliver anything in order any more).
    fn order_bound(&self, m: usize, v: &GroupView) -> i64 {
        let mv = v.members.get(m).copied().unwrap_or_default();
        match (&self.members[m].buffer, self.head(m)) {
            (Buffer::Fifo(_), Some(h)) => h,
            (Buffer::Fifo(_), None) => {
                if mv.lagging {
                    self.stream
                } else if let Some(d) = mv.declared {
                    d
                } else if mv.idle {
                    i64::MAX
                } else {
                    self.stream
                }
            }
            (Buffer::Heap(_), h) => h.unwrap_or(i64::MAX).min(v.frontier),
        }
    }

    /// True when member `m` is an idle source: caught up, quiet for `max_task_idle`, not
    /// declared by a producer, nothing buffered.
    fn idle(&self, m: usize, v: &GroupView) -> bool {
        let mv = v.members.get(m).copied().unwrap_or_default();
        matches!(self.members[m].buffer, Buffer::Fifo(_)) && self.head(m).is_none() && !mv.lagging && mv.declared.is_none() && mv.idle
    }

    /// The time below which this group will process nothing more (in order): timers before
    /// it may fire as far as this group is concerned. Idle sources do not hold it back while
    /// other inputs have something to say; when every source is idle and nothing derived
    /// waits, stream time follows the wall clock with `idle_advance`, and otherwise goes as
    /// far as the derived inputs' frontiers allow (to the end, once those are over too).
    pub fn time_frontier(&self, v: &GroupView) -> i64 {
        let mut f = if self.has_source { v.globals_complete_before } else { i64::MAX };
        let (mut sources, mut idle) = (0, 0);
        for m in 0..self.members.len() {
            if matches!(self.members[m].buffer, Buffer::Fifo(_)) {
                sources += 1;
                if self.idle(m, v) {
                    idle += 1;
                    continue;
                }
            }
            f = f.min(self.order_bound(m, v));
        }
        // Every source idle and no derived record waiting: nothing says how far time goes.
        let derived_waiting = (0..self.members.len()).any(|m| matches!(self.members[m].buffer, Buffer::Heap(_)) && self.head(m).is_some());
        if sources > 0 && idle == sources && !derived_waiting && v.idle_advance {
            f = f.min(v.wall.max(self.stream));
        }
        f.max(self.stream)
    }

    /// The lowest logical time this group may still process something at — what it
    /// publishes as pending. Records still in flight to derived inputs are not included
    /// (the task's coverage accounts for them).
    ///
    /// An idle source (caught up and quiet for `max_task_idle`) holds nothing back, as in
    /// Flink's source idleness: with `idle_advance` it counts from the wall clock, else
    /// (end of input) not at all. A record it delivers after that is late: processed at the stream time, maybe
    /// after what a downstream task already went on with.
    pub fn pending(&self, v: &GroupView) -> i64 {
        let mut p = i64::MAX;
        for m in 0..self.members.len() {
            let mv = v.members.get(m).copied().unwrap_or_default();
            let at = match (&self.members[m].buffer, self.head(m)) {
                (_, Some(h)) => h,
                (Buffer::Fifo(_), None) => match mv.declared {
                    Some(d) => d,
                    None if mv.idle && !mv.lagging => {
                        if v.idle_advance { v.wall } else { i64::MAX }
                    }
                    None => self.stream,
                },
                (Buffer::Heap(_), None) => i64::MAX,
            };
            p = p.min(at);
        }
        if p == i64::MAX { p } else { p.max(self.stream) }
    }

    /// What the group can do next, given no timer is due before it (the caller checks
    /// timers with [`Self::next_time`]).
    pub fn step(&self, v: &GroupView) -> Step {
        // The candidate: the lowest head (a derived head only once released).
        let mut best: Option<(i64, usize)> = None;
        for m in 0..self.members.len() {
            let Some(h) = self.head(m) else { continue };
            if matches!(self.members[m].buffer, Buffer::Heap(_)) && h >= v.frontier {
                continue;
            }
            if best.is_none_or(|(bh, _)| h < bh) {
                best = Some((h, m));
            }
        }
        let Some((t, cand)) = best else { return Step::Wait };
        if self.has_source && v.globals_complete_before <= t {
            return Step::Wait;
        }
        for m in 0..self.members.len() {
            if m == cand {
                continue;
            }
            // Whatever this input may still deliver at the candidate's time goes after the
            // candidate if the input comes later in the group (ties in member order).
            let after = |h: i64| h > t || (h == t && m > cand);
            let ok = match (&self.members[m].buffer, self.head(m)) {
                (Buffer::Fifo(_), Some(h)) => after(h),
                (Buffer::Fifo(_), None) => after(self.order_bound(m, v)),
                // Nothing below the frontier can still arrive; what is buffered below it is
                // in time order.
                (Buffer::Heap(_), h) => after(v.frontier) && h.is_none_or(|h| h >= v.frontier || after(h)),
            };
            if !ok {
                return Step::Wait;
            }
        }
        if let Buffer::Heap(_) = self.members[cand].buffer {
            if v.frontier <= t {
                return Step::Wait;
            }
        }
        Step::Record { member: cand, time: t.max(self.stream) }
    }

    /// The time of the next record [`Self::step`] would offer, if any is buffered (for
    /// deciding whether a timer comes first).
    pub fn next_time(&self, v: &GroupView) -> Option<i64> {
        match self.step(v) {
            Step::Record { time, .. } => Some(time),
            Step::Wait => None,
        }
    }

    /// Takes the head of member `m` (after [`Step::Record`]) and moves stream time to `time`.
    pub fn take(&mut self, m: usize, time: i64) -> Record {
        self.stream = self.stream.max(time);
        match &mut self.members[m].buffer {
            Buffer::Fifo(q) => q.pop_front().expect("a head was offered"),
            Buffer::Heap(h) => h.pop().expect("a head was offered").0.rec,
        }
    }

    /// Moves stream time past `t` (a timer at `t` fired; what comes later is after it).
    pub fn pass(&mut self, t: i64) {
        self.stream = self.stream.max(t.saturating_add(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn rec(topic: &str, offset: u64, ts: i64) -> Record {
        Record { topic: Arc::from(topic), partition: 0, offset, timestamp: ts, key: None, value: None, headers: vec![] }
    }

    fn derived(topic: &str, offset: u64, ts: i64, cause: u64, index: u32) -> Record {
        let mut r = rec(topic, offset, ts);
        r.headers.push(storeflow_ingest::Header { key: ORDER_HEADER.into(), value: order_header(cause, index) });
        r
    }

    fn view(n: usize) -> GroupView {
        GroupView { members: vec![MemberView::default(); n], frontier: i64::MAX, wall: 0, idle_advance: false, globals_complete_before: i64::MAX }
    }

    fn tp(t: &str) -> TopicPartition {
        TopicPartition::new(t, 0)
    }

    #[test]
    fn the_oldest_head_goes_first_and_an_empty_input_is_waited_for_until_it_is_idle() {
        let mut g = GroupState::new(vec![(tp("a"), false), (tp("b"), false)], false);
        g.push(0, rec("a", 0, 200));
        let mut v = view(2);
        assert_eq!(g.step(&v), Step::Wait, "b is caught up but not idle yet: it may still deliver something older");
        v.members[1].idle = true;
        assert_eq!(g.step(&v), Step::Record { member: 0, time: 200 });
        g.push(1, rec("b", 0, 100));
        assert_eq!(g.step(&v), Step::Record { member: 1, time: 100 }, "an older head overtakes");
    }

    #[test]
    fn a_lagging_input_is_waited_for_even_when_idle() {
        let mut g = GroupState::new(vec![(tp("a"), false), (tp("b"), false)], false);
        g.push(0, rec("a", 0, 200));
        let mut v = view(2);
        v.members[1] = MemberView { lagging: true, idle: true, declared: None };
        assert_eq!(g.step(&v), Step::Wait);
    }

    #[test]
    fn a_declared_producer_lets_the_group_go_exactly_as_far_as_it_declared() {
        let mut g = GroupState::new(vec![(tp("a"), false), (tp("b"), false)], false);
        g.push(0, rec("a", 0, 200));
        let mut v = view(2);
        v.members[1].declared = Some(199);
        assert_eq!(g.step(&v), Step::Wait, "b may still deliver a record at 199");
        v.members[1].declared = Some(200);
        assert!(matches!(g.step(&v), Step::Record { member: 0, .. }), "what b still delivers at 200 goes after a's");
        let mut g2 = GroupState::new(vec![(tp("b"), false), (tp("a"), false)], false);
        g2.push(1, rec("a", 0, 200));
        assert_eq!(g2.step(&v), Step::Wait, "but before it when b comes first in the group");
    }

    #[test]
    fn a_late_record_is_processed_at_the_stream_time() {
        let mut g = GroupState::new(vec![(tp("a"), false)], false);
        let v = view(1);
        g.push(0, rec("a", 0, 500));
        g.push(0, rec("a", 1, 100));
        let Step::Record { member, time } = g.step(&v) else { panic!() };
        assert_eq!(time, 500);
        g.take(member, time);
        assert_eq!(g.step(&v), Step::Record { member: 0, time: 500 }, "100 is late: it counts as 500");
    }

    #[test]
    fn derived_records_are_released_in_time_and_cause_order_below_the_frontier() {
        let mut g = GroupState::new(vec![(tp("r"), true)], false);
        g.push(0, derived("r", 0, 300, 9, 0));
        g.push(0, derived("r", 1, 100, 5, 1));
        g.push(0, derived("r", 2, 100, 5, 0));
        let mut v = view(1);
        v.frontier = 100;
        assert_eq!(g.step(&v), Step::Wait, "a record at 100 may still arrive");
        v.frontier = 101;
        let mut order = vec![];
        while let Step::Record { member, time } = g.step(&v) {
            order.push(g.take(member, time).offset);
        }
        assert_eq!(order, vec![2, 1], "(100, cause 5, index 0) then index 1; 300 waits");
        v.frontier = i64::MAX;
        assert_eq!(g.step(&v), Step::Record { member: 0, time: 300 });
    }

    #[test]
    fn a_source_record_waits_for_the_derived_inputs_of_its_group() {
        // inventory: stock (source) and commands (derived) in one order.
        let mut g = GroupState::new(vec![(tp("stock"), false), (tp("cmd"), true)], false);
        g.push(0, rec("stock", 0, 500));
        let mut v = view(2);
        v.frontier = 400;
        assert_eq!(g.step(&v), Step::Wait, "a command below 500 may still arrive");
        g.push(1, derived("cmd", 0, 450, 1, 0));
        v.frontier = 460;
        assert_eq!(g.step(&v), Step::Record { member: 1, time: 450 });
        v.frontier = 501;
        let s = g.step(&v);
        assert_eq!(s, Step::Record { member: 1, time: 450 }, "still the command first");
    }

    #[test]
    fn records_of_the_same_time_go_in_the_order_of_their_inputs() {
        let mut g = GroupState::new(vec![(tp("stock"), false), (tp("cmd"), true)], false);
        g.push(0, rec("stock", 0, 500));
        g.push(1, derived("cmd", 0, 500, 1, 0));
        let mut v = view(2);
        v.frontier = 501;
        let Step::Record { member, time } = g.step(&v) else { panic!("the source record at 500 may go") };
        assert_eq!(member, 0);
        g.take(member, time);
        assert_eq!(g.step(&v), Step::Wait, "the stock input, empty now, may still deliver another record at 500");
        v.members[0].idle = true;
        assert_eq!(g.step(&v), Step::Record { member: 1, time: 500 });
    }

    #[test]
    fn the_pending_time_of_a_group_bounds_what_it_can_still_emit() {
        let mut g = GroupState::new(vec![(tp("a"), false), (tp("r"), true)], false);
        let mut v = view(2);
        assert_eq!(g.pending(&v), i64::MIN, "nothing processed and an empty source: anything may come");
        g.stream = 1000;
        assert_eq!(g.pending(&v), 1000, "a late source record would be processed at the stream time");
        v.members[0].idle = true;
        assert_eq!(g.pending(&v), i64::MAX, "an idle source holds nothing back");
        v.idle_advance = true;
        v.wall = 5000;
        assert_eq!(g.pending(&v), 5000, "unless stream time follows the wall clock");
        v.members[0] = MemberView { declared: Some(2000), ..MemberView::default() };
        assert_eq!(g.pending(&v), 2000);
        g.push(1, derived("r", 0, 1500, 1, 0));
        assert_eq!(g.pending(&v), 1500);
    }

    #[test]
    fn an_idle_source_lets_stream_time_follow_the_wall_clock_or_ends_its_input() {
        let g = GroupState::new(vec![(tp("a"), false)], false);
        let mut v = view(1);
        v.members[0].idle = true;
        v.wall = 9_000;
        assert_eq!(g.time_frontier(&v), i64::MAX, "at the end of input time goes to the end");
        v.idle_advance = true;
        assert_eq!(g.time_frontier(&v), 9_000);
    }
}
