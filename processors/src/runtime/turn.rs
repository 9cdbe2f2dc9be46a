//! One task's turn: records of each input group in time order below their frontiers,
//! timers once every group has passed them, each record retried while it fails
//! transiently; and the progress the task publishes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use storeflow_avro::Codec;
use storeflow_ingest::threads::panic_message;
use storeflow_ingest::{Consumer, Record};

use super::align::{self, GroupView, MemberView, step_of_record};
use super::config::Idle;
use super::progress::{self, Board, TaskProgress};
use super::shared::{RtTask, Shared};
use super::task::{DynProcessor, Outcome, Step, TaskCore, dlq_record};
use super::watch::{EndCache, Watch};
use crate::state::timers::remove_timer;

/// What a task reports after a turn of the loop.
pub(super) struct Turn {
    /// Steps taken.
    pub(super) steps: u64,
    /// Records buffered but not processable yet.
    pub(super) waiting: bool,
    /// Its progress now.
    pub(super) progress: TaskProgress,
}

/// The views of a task's groups: what is known of each input right now.
pub(super) fn views(t: &RtTask, shared: &Shared, watch: &Watch, ends: &EndCache, consumer: &dyn Consumer, wall: i64, globals_before: i64) -> Vec<GroupView> {
    let p = t.core.partition;
    let idle_after = shared.config.max_task_idle;
    t.groups
        .iter()
        .map(|g| GroupView {
            members: g
                .members
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    if shared.topology.is_derived(&m.tp.topic) || !g.is_empty(i) {
                        return MemberView::default();
                    }
                    let lagging = ends.lags(consumer, &m.tp, t.fetched_to.get(&m.tp).copied());
                    let idle = !lagging && t.last_fetch.get(&m.tp).is_none_or(|at| at.elapsed() >= idle_after);
                    // A declaration holds while its producer keeps its lease.
                    let live = watch.board.declared(&m.tp.topic, wall).is_some();
                    let declared = watch.coverage.declared.get(&p).and_then(|d| d.get(&*m.tp.topic)).copied().filter(|_| live);
                    // A producer declared it, and what it had written then is not fetched yet.
                    let unclaimed = declared.is_none() && live;
                    MemberView { lagging: lagging || unclaimed, idle, declared }
                })
                .collect(),
            frontier: i64::MAX,
            wall,
            idle_advance: shared.config.idle == Idle::WallClock,
            globals_complete_before: globals_before,
        })
        .collect()
}

/// How far slot `slot` may go while the task reads again what its last commit had fetched
/// (after a restart): the records between its committed offsets and that point were
/// fetched and lost with the crash, and they are in flight into this very task — none
/// earlier than what that commit had pending for the slot. The writers forgot those commits
/// (this task had fetched past them), so nothing else holds the slot's frontier below them;
/// without this a record fetched again early could be processed before an earlier one
/// still to come (seen on Kafka, whose fetches come in smaller pieces than the embedded
/// log's: a payment command processed 410 ms late after a SIGKILL). `i64::MAX` once it has
/// fetched that far again.
fn held_bound(t: &RtTask, shared: &Shared, consumer: &dyn Consumer, slot: usize) -> i64 {
    let Some(held) = &t.refetch else { return i64::MAX };
    let behind = t.groups[slot].members.iter().any(|m| {
        shared.topology.is_derived(&m.tp.topic)
            && held.fetched.get(&*m.tp.topic).is_some_and(|old| *old > consumer.position(&m.tp).max(t.fetched_to.get(&m.tp).copied()).unwrap_or(0))
    });
    if behind { held.pending.get(slot).copied().unwrap_or(i64::MIN) } else { i64::MAX }
}

/// A task's progress to publish: what each slot has pending, how far it has fetched its
/// derived inputs, and its recent commits on derived topics (with the outputs waiting for
/// the next commit as the commit of unknown offsets).
pub(super) fn progress_of(t: &mut RtTask, views: &[GroupView], shared: &Shared, board: &Board, consumer: &dyn Consumer) -> TaskProgress {
    let mut pending: Vec<i64> = t.groups.iter().zip(views).map(|(g, v)| g.pending(v)).collect();
    let timer = match t.core.next_timer() {
        Ok(t) => t.map_or(i64::MAX, |t| t.at),
        Err(_) => i64::MIN,
    };
    pending.push(timer);
    let mut fetched = BTreeMap::new();
    for tp in t.routes.keys().filter(|tp| shared.topology.is_derived(&tp.topic)) {
        let at = consumer.position(tp).max(t.fetched_to.get(tp).copied()).unwrap_or(0);
        // Everything below the first record still buffered, or not fetched, may be counted
        // as fetched: what is buffered is pending.
        fetched.insert(tp.topic.to_string(), at);
    }
    if let Some(held) = &t.refetch {
        // Still reading again what the last commit had fetched: its pending stands for it.
        let behind: Vec<String> =
            fetched.iter().filter(|(topic, at)| held.fetched.get(*topic).is_some_and(|old| old > *at)).map(|(topic, _)| topic.clone()).collect();
        for (slot, g) in t.groups.iter().enumerate() {
            if g.members.iter().any(|m| behind.iter().any(|b| *b == *m.tp.topic)) {
                pending[slot] = pending[slot].min(held.pending.get(slot).copied().unwrap_or(i64::MIN));
            }
        }
        for topic in &behind {
            fetched.insert(topic.clone(), held.fetched[topic]);
        }
        if behind.is_empty() {
            t.refetch = None;
        }
    }
    // Commits every reader has fetched past no longer matter.
    let mut emitted = t.emitted.clone();
    for (topic, per) in emitted.iter_mut() {
        let readers = shared.topology.readers_of(topic);
        for (x, commits) in per.iter_mut() {
            let least = readers.iter().map(|q| board.task(*q, *x).and_then(|e| e.fetched.get(topic).copied()).unwrap_or(0)).min().unwrap_or(0);
            commits.retain(|(end, _)| *end > least);
            while commits.len() > 16 {
                let (e1, m1) = commits.remove(0);
                commits[0] = (commits[0].0.max(e1), commits[0].1.min(m1));
            }
        }
        per.retain(|_, c| !c.is_empty());
    }
    emitted.retain(|_, per| !per.is_empty());
    for rec in &t.core.pending {
        let Some(n) = shared.topology.partitions_of(&rec.topic) else { continue };
        let x = rec.partition.unwrap_or_else(|| rec.key.as_deref().map(|k| storeflow_ingest::partitioner::partition_for_key(k, n)).unwrap_or(0));
        let ts = rec.timestamp.unwrap_or(i64::MIN);
        let commits = emitted.entry(rec.topic.clone()).or_default().entry(x).or_default();
        match commits.last_mut() {
            Some((u64::MAX, m)) => *m = (*m).min(ts),
            _ => commits.push((u64::MAX, ts)),
        }
    }
    TaskProgress { pending, fetched, emitted }
}

pub(super) fn own_progress(t: &mut RtTask, shared: &Shared, watch: &Watch, ends: &EndCache, consumer: &dyn Consumer, wall: i64, globals_before: i64) -> TaskProgress {
    let v = views(t, shared, watch, ends, consumer, wall, globals_before);
    progress_of(t, &v, shared, &watch.board, consumer)
}

/// How many steps one task takes per turn at most, before the loop polls again.
pub(super) const TURN_STEPS: u64 = 20_000;

/// Runs task `t` as far as its inputs, their frontiers and its timers allow. `None` when
/// asked to stop while retrying a record.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_task(
    processor: &mut dyn DynProcessor,
    t: &mut RtTask,
    shared: &Shared,
    codec: &Arc<Codec>,
    watch: &Watch,
    ends: &EndCache,
    consumer: &dyn Consumer,
    wall: i64,
    globals_before: i64,
    stop: &AtomicBool,
) -> Option<Turn> {
    let p = t.core.partition;
    // A turn of one task: what its records, timers and errors log, it logs inside this.
    let _span = tracing::debug_span!("turn", processor = shared.name, partition = p).entered();
    let mut v = views(t, shared, watch, ends, consumer, wall, globals_before);
    let own = progress_of(t, &v, shared, &watch.board, consumer);
    for (g, view) in v.iter_mut().enumerate() {
        if !shared.topology.derived_inputs(shared.me, g).is_empty() {
            view.frontier = progress::frontier(&shared.topology, &watch.board, shared.config.lookahead_ms, shared.me, p, g, &own).min(held_bound(t, shared, consumer, g));
        }
    }
    let mut steps = 0u64;
    // A stop ends the turn between steps: what was done is committed, the rest waits. (A
    // SQL processor's step may run a query; a whole turn of them took ~20 s to stop.)
    while steps < TURN_STEPS && !stop.load(Ordering::Relaxed) {
        for (g, view) in t.groups.iter_mut().zip(&v) {
            g.stream = g.time_frontier(view);
        }
        let timer = match t.core.next_timer() {
            Ok(tm) => tm,
            Err(e) => {
                tracing::error!(processor = shared.name, partition = p, error = %e, "reading timers failed");
                None
            }
        };
        if let Some(tm) = &timer {
            if t.groups.iter().zip(&v).all(|(g, view)| g.time_frontier(view) > tm.at) {
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| processor.fire_timer(&mut t.core, codec, tm))) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(processor = shared.name, partition = p, error = %e, "a timer failed"),
                    Err(panic) => {
                        // Its writes are dropped, and it is gone: it must not fire (and panic) again.
                        t.core.state.reject();
                        remove_timer(&mut t.core.state, tm);
                        t.core.state.accept();
                        tracing::error!(processor = shared.name, partition = p, timer = ?tm, panic = %panic_message(&*panic), "a timer made the processor panic; it is dropped");
                    }
                }
                for g in t.groups.iter_mut() {
                    g.pass(tm.at);
                }
                t.worked = true;
                steps += 1;
                continue;
            }
        }
        let mut progressed = false;
        for g in 0..t.groups.len() {
            let align::Step::Record { member, time } = t.groups[g].step(&v[g]) else { continue };
            if t.groups[g].has_source && timer.as_ref().is_some_and(|tm| tm.at < time) {
                continue; // the timer goes first
            }
            let mut rec = t.groups[g].take(member, time);
            if let Some((at, reason)) = t.refused.remove(&(rec.tp(), rec.offset)) {
                rec.timestamp = at;
                tracing::warn!(processor = shared.name, topic = %rec.topic, partition = rec.partition, offset = rec.offset, %reason, "dead-lettering a record dated too far ahead");
                t.core.pending.push(dlq_record(shared.name, &rec, &reason, time));
                t.core.dead_lettered += 1;
                t.core.handled += 1;
            } else {
                let step = Step { slot: g, time, cause: step_of_record(&rec) };
                if !handle_with_retries(processor, &mut t.core, codec, &rec, step, shared, stop) {
                    return None;
                }
            }
            let tp = rec.tp();
            if shared.topology.is_derived(&tp.topic) {
                t.skip.entry(tp.clone()).or_default().insert(rec.offset);
            } else {
                t.offsets.insert(tp.clone(), rec.offset + 1);
            }
            t.worked = true;
            progressed = true;
            steps += 1;
        }
        if !progressed {
            break;
        }
    }
    let waiting = t.groups.iter().any(|g| g.buffered() > 0);
    if waiting && steps == 0 {
        let now = Instant::now();
        let (since, told) = *t.stuck.get_or_insert((now, now));
        if since.elapsed() >= Duration::from_secs(5) && told.elapsed() >= Duration::from_secs(10).min(since.elapsed()) {
            t.stuck = Some((since, now));
            let timer = t.core.next_timer().ok().flatten().map(|tm| tm.at);
            let groups: Vec<String> = t
                .groups
                .iter()
                .zip(&v)
                .enumerate()
                .map(|(i, (g, view))| {
                    let members: Vec<String> = g
                        .members
                        .iter()
                        .zip(&view.members)
                        .map(|(m, mv)| format!("{} ({} buffered, from {:?}{}{}{})", m.tp, m.buffer.len(), m.buffer.min_time(), if mv.lagging { ", lagging" } else { "" }, if mv.idle { ", idle" } else { "" }, mv.declared.map(|d| format!(", declared {d}")).unwrap_or_default()))
                        .collect();
                    format!("group {i}: stream {}, frontier {}, next {:?} [{}]", g.stream, view.frontier, g.next_time(view), members.join(", "))
                })
                .collect();
            tracing::warn!(processor = shared.name, partition = p, waited_s = since.elapsed().as_secs(), next_timer = ?timer, groups = %groups.join("; "), "records are waiting: a group cannot go on (an input not caught up, a frontier not reached, or a timer not due)");
        }
    } else {
        t.stuck = None;
    }
    let progress = progress_of(t, &v, shared, &watch.board, consumer);
    Some(Turn { steps, waiting, progress })
}

/// Handles one record, retrying transient failures with capped back-off. False when asked
/// to stop while retrying.
pub(super) fn handle_with_retries(
    processor: &mut dyn DynProcessor,
    core: &mut TaskCore,
    codec: &Arc<Codec>,
    rec: &Record,
    step: Step,
    shared: &Shared,
    stop: &AtomicBool,
) -> bool {
    let mut backoff = storeflow_ingest::Backoff::new(Duration::from_millis(10), shared.config.max_backoff);
    loop {
        // A panic while handling one record is that record's failure, not the task's: its
        // writes are dropped and it goes to the DLQ with the panic's message.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| processor.handle(core, codec, rec, step)));
        match outcome.map_err(|panic| panic_message(&*panic)) {
            Ok(Outcome::Done | Outcome::DeadLettered(_)) => return true,
            Err(message) => {
                core.state.reject();
                let reason = format!("panic: {message}");
                tracing::error!(processor = shared.name, topic = %rec.topic, partition = rec.partition, offset = rec.offset, %reason, "a record made the processor panic; dead-lettering it and going on");
                core.pending.push(dlq_record(shared.name, rec, &reason, step.time));
                core.dead_lettered += 1;
                core.handled += 1;
                return true;
            }
            Ok(Outcome::Retry(reason)) => {
                tracing::warn!(processor = shared.name, topic = %rec.topic, partition = rec.partition, offset = rec.offset, %reason, retry_in = ?backoff.peek(), "transient failure; retrying the same record");
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
                std::thread::sleep(backoff.next());
            }
        }
    }
}
