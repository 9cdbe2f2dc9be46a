//! The processor's thread: poll the inputs, run each task's turn, commit the tasks that are
//! due, rewind or reopen the ones whose commit failed; at a clean stop, commit what was done.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use storeflow_avro::{Codec, Timestamp};
use storeflow_ingest::{Consumer, ConsumerConfig, GroupMetadata, LogError, OffsetReset, TopicPartition};

use super::align::GroupState;
use super::commit::prepare_offsets;
use super::globals::GlobalReader;
use super::progress::{Board, Coverage};
use super::rebalance::Listener;
use super::rewind::{reopen_due, reopen_on_rewind_failure};
use super::shared::{RtTask, Shared};
use super::task::DynProcessor;
use super::turn::{Turn, own_progress, run_task};
use super::watch::{EndCache, Watch, cover};
use crate::error::Result;
use crate::metrics::{Metrics, PartitionLabels};

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(super) fn run(mut processor: Box<dyn DynProcessor>, shared: Arc<Shared>, codec: Arc<Codec>, stop: Arc<AtomicBool>) -> Result<()> {
    let name = shared.name;
    let inputs = shared.flow.inputs();
    let mut cfg = ConsumerConfig::new(&shared.group());
    cfg.reset = OffsetReset::Earliest;
    cfg.read_committed = true;
    cfg.co_partitioned = true;
    cfg.properties = shared.config.consumer_properties.clone();
    if let Some(instance) = &shared.config.instance {
        cfg.properties.push(("group.instance.id".into(), format!("{}.{instance}", shared.group())));
    }
    let mut globals = GlobalReader::start(&shared, &*processor)?;
    globals.catch_up(&mut *processor, &codec, Duration::from_secs(60))?;
    let mut watch = {
        let mut pc = ConsumerConfig::new(&format!("{}.progress", shared.group()));
        pc.reset = OffsetReset::Earliest;
        pc.read_committed = true;
        let mut consumer = shared.log.consumer(pc, None)?;
        let tp = TopicPartition::new(&shared.progress, 0);
        let start = shared.log.watermarks(std::slice::from_ref(&tp))?[0].0;
        consumer.assign(&[(tp, start)])?;
        Watch {
            board: Board::new(&shared.topology),
            coverage: Coverage::default(),
            consumer,
            last_snapshot: Instant::now() - Duration::from_secs(1),
            slack: u64::from(shared.log.backend() == "kafka"),
        }
    };
    let mut consumer = shared.log.consumer(cfg, Some(Box::new(Listener(shared.clone()))))?;
    consumer.subscribe(&inputs.iter().map(String::as_str).collect::<Vec<_>>())?;
    let sources: Vec<String> = inputs.iter().filter(|t| !shared.topology.is_derived(t)).cloned().collect();
    let mut since_commit = 0u64;
    let ends = EndCache::new(shared.log.clone(), watch.slack);
    let mut last_lag = Instant::now() - Duration::from_secs(60);
    let mut waiting = false;
    let mut last_silent_warning = Instant::now();
    let result = (|| -> Result<()> {
        while !stop.load(Ordering::Relaxed) {
            // A failing poll is transient (a broker restarting, a rebalance in flight): the
            // thread waits and polls again rather than dying with its partitions assigned.
            if let Err(e) = globals.poll(&mut *processor, &codec) {
                tracing::warn!(processor = name, error = %e, "reading the global inputs failed; retrying");
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            if let Err(e) = watch.poll(&shared.topology) {
                tracing::warn!(processor = name, error = %e, "reading the progress topic failed; retrying");
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            let timeout = if waiting { Duration::from_millis(2) } else { Duration::from_millis(100) };
            let records = match consumer.poll(shared.config.max_poll, timeout) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(processor = name, error = %e, "polling the inputs failed; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                }
            };
            if shared.crashed.load(Ordering::Relaxed) {
                return Ok(());
            }
            for p in std::mem::take(&mut *shared.revoked.lock()) {
                watch.coverage.forget(p);
            }
            reopen_due(&shared, &mut *consumer, &inputs);
            let mut rewind: Vec<u32> = Vec::new();
            let mut fenced: Vec<u32> = Vec::new();
            {
                let mut tasks = shared.tasks.lock();
                let now = Instant::now();
                let wall = now_ms();
                for mut rec in records {
                    let Some(t) = tasks.get_mut(&rec.partition) else { continue };
                    let tp = rec.tp();
                    if t.skip.get(&tp).is_some_and(|s| s.contains(&rec.offset)) {
                        continue; // processed before the last commit, out of offset order
                    }
                    let Some(&(g, m)) = t.routes.get(&tp) else { continue };
                    t.fetched_to.insert(tp.clone(), rec.offset + 1);
                    t.last_fetch.insert(tp.clone(), now);
                    if !shared.topology.is_derived(&tp.topic)
                        && let Err(why) = shared.config.time.check_ahead(Timestamp(rec.timestamp), Timestamp(wall))
                    {
                        t.refused.insert((tp, rec.offset), (rec.timestamp, format!("event time {why}: it would move stream time ahead and fire deadlines early")));
                        rec.timestamp = i64::MIN;
                    }
                    t.groups[g].push(m, rec);
                }
                cover(&shared, &mut watch, &tasks, &mut *consumer, &sources, wall);
                let globals_before = globals.complete_before(&shared, &watch.board, wall);
                waiting = false;
                let mut turns: BTreeMap<u32, Turn> = BTreeMap::new();
                for (p, t) in tasks.iter_mut() {
                    let turn = match run_task(&mut *processor, t, &shared, &codec, &watch, &ends, &*consumer, wall, globals_before, &stop) {
                        Some(turn) => turn,
                        None => return Ok(()), // asked to stop while retrying a record
                    };
                    since_commit += turn.steps;
                    waiting |= turn.waiting;
                    turns.insert(*p, turn);
                }
                if last_silent_warning.elapsed() > Duration::from_secs(10) && waiting {
                    last_silent_warning = Instant::now();
                    for (q, node) in shared.topology.nodes.iter().enumerate() {
                        let silent = watch.board.silent(q);
                        if !silent.is_empty() && q != shared.me {
                            tracing::warn!(processor = name, waits_for = %node.name, partitions = ?silent, "records wait for a processor whose tasks have not reported progress (is it running?)");
                        }
                    }
                }
                let buffered: usize = tasks.values().map(|t| t.groups.iter().map(GroupState::buffered).sum::<usize>()).sum();
                shared.metrics.buffered.get_or_create(&Metrics::label(name)).set(buffered as i64);
                let due = since_commit >= shared.config.commit_records;
                let due_tasks: Vec<u32> = tasks
                    .iter()
                    .filter(|(p, t)| {
                        let turn = &turns[*p];
                        let elapsed = t.last_commit.elapsed();
                        t.published.is_none()
                            || ((due || elapsed >= shared.config.commit_interval)
                                && (t.worked || t.published.as_ref() != Some(&turn.progress) || t.streams() != t.committed_streams))
                            || (t.worked && turn.steps == 0 && elapsed >= Duration::from_millis(1))
                    })
                    .map(|(p, _)| *p)
                    .collect();
                if !due_tasks.is_empty() {
                    if let Some(group) = consumer.group_metadata() {
                        for p in &due_tasks {
                            if let Some(t) = tasks.get_mut(p) {
                                prepare_offsets(t, &*consumer);
                            }
                        }
                        let results = commit_many(&shared, &mut tasks, &due_tasks, &turns, &group);
                        for (p, result) in results {
                            let Some(t) = tasks.get_mut(&p) else { continue };
                            if let Err(e) = result {
                                tracing::warn!(processor = name, partition = p, error = %e, "commit failed; rewinding the task to its last commit");
                                if matches!(e, LogError::Fenced(_)) {
                                    fenced.push(p);
                                } else {
                                    if let Err(e) = shared.recover_producer(t, &e) {
                                        tracing::error!(processor = name, partition = p, error = %e, "could not re-create the producer");
                                    }
                                    rewind.push(p);
                                }
                            }
                        }
                        if due {
                            since_commit = 0;
                        }
                    }
                }
                for p in &fenced {
                    // Another producer took this task's transactional id. If another instance
                    // owns the partition now, the group revokes it from us at the next
                    // rebalance; if that producer was a zombie, the partition is still ours:
                    // reopen the task (restore, new epoch, rewind) after a pause, rather than
                    // leave an assigned partition unprocessed for good.
                    tracing::warn!(processor = name, partition = p, "fenced by another producer; reopening the task in 5 s unless the partition is revoked");
                    tasks.remove(p);
                    shared.unopened.lock().insert(*p, Instant::now() + Duration::from_secs(5));
                }
            }
            for p in rewind {
                reopen_on_rewind_failure(&shared, &mut *consumer, &inputs, p);
            }
            if last_lag.elapsed() > Duration::from_secs(5) {
                last_lag = Instant::now();
                report_lag(&shared, &*consumer);
            }
        }
        // Clean stop: commit what was done.
        if let Some(group) = consumer.group_metadata() {
            let mut tasks = shared.tasks.lock();
            for (p, t) in tasks.iter_mut() {
                prepare_offsets(t, &*consumer);
                let progress = own_progress(t, &shared, &watch, &ends, &*consumer, now_ms(), i64::MAX);
                if let Err(e) = shared.commit_task(t, &group, &progress) {
                    tracing::warn!(processor = name, partition = p, error = %e, "final commit failed");
                }
            }
        }
        Ok(())
    })();
    if shared.crashed.load(Ordering::Relaxed) {
        // Leave like a dead process: no commit, no hand-over; drop the transactions.
        shared.tasks.lock().clear();
        drop(consumer);
        return result;
    }
    consumer.close()?;
    let _ = watch.consumer.close();
    result
}

/// Commits `due` tasks, in parallel when there are several (each has its own transactional
/// producer, and a Kafka commit is a round trip to the transaction coordinator).
pub(super) fn commit_many(
    shared: &Shared,
    tasks: &mut BTreeMap<u32, RtTask>,
    due: &[u32],
    turns: &BTreeMap<u32, Turn>,
    group: &GroupMetadata,
) -> Vec<(u32, std::result::Result<bool, LogError>)> {
    let mut chosen: Vec<(u32, &mut RtTask)> = tasks.iter_mut().filter(|(p, _)| due.contains(p)).map(|(p, t)| (*p, t)).collect();
    if chosen.len() == 1 {
        let (p, t) = chosen.pop().expect("one");
        let _span = tracing::info_span!("commit", processor = shared.name, partition = p).entered();
        return vec![(p, shared.commit_task(t, group, &turns[&p].progress))];
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = chosen
            .into_iter()
            .map(|(p, t)| {
                let progress = &turns[&p].progress;
                (p, scope.spawn(move || {
                    let _span = tracing::info_span!("commit", processor = shared.name, partition = p).entered();
                    shared.commit_task(t, group, progress)
                }))
            })
            .collect();
        handles
            .into_iter()
            .map(|(p, h)| (p, h.join().unwrap_or_else(|_| Err(LogError::Transaction("a commit thread panicked".into())))))
            .collect()
    })
}

pub(super) fn report_lag(shared: &Shared, consumer: &dyn Consumer) {
    let tps = consumer.assignment();
    if let Ok(marks) = shared.log.watermarks(&tps) {
        for (tp, (_, end)) in tps.iter().zip(marks) {
            let pos = consumer.position(tp).unwrap_or(end);
            shared
                .metrics
                .lag
                .get_or_create(&PartitionLabels { processor: shared.name.to_string(), topic: tp.topic.to_string(), partition: tp.partition.to_string() })
                .set(end.saturating_sub(pos) as i64);
        }
    }
}
