//! Rewinding: a task's inputs moved back to its committed offsets after a failed commit,
//! and tasks that could not start opened again.

use std::time::{Duration, Instant};

use storeflow_ingest::{Consumer, TopicPartition};

use super::shared::Shared;
use crate::error::Result;

/// Tasks that could not start: retry, then re-read their inputs from the last commit
/// (records polled for them meanwhile were not handled).
pub(super) fn reopen_due(shared: &Shared, consumer: &mut dyn Consumer, inputs: &[String]) {
    let now = Instant::now();
    let retry: Vec<u32> = shared.unopened.lock().iter().filter(|(_, at)| **at <= now).map(|(p, _)| *p).collect();
    for p in retry {
        if shared.tasks.lock().contains_key(&p) {
            // A rebalance opened it meanwhile.
            shared.unopened.lock().remove(&p);
            continue;
        }
        match shared.open_task(p) {
            Ok(t) => {
                shared.tasks.lock().insert(p, t);
                shared.unopened.lock().remove(&p);
                reopen_on_rewind_failure(shared, consumer, inputs, p);
            }
            Err(e) => {
                tracing::warn!(processor = shared.name, partition = p, error = %e, "a task still cannot start");
                shared.unopened.lock().insert(p, Instant::now() + Duration::from_secs(1));
            }
        }
    }
}

/// Rewinds task `p`'s inputs to its last commit; if that fails (a transient broker error),
/// the task is dropped and reopened shortly, which rewinds again — never processes on from
/// a position that does not match its state.
pub(super) fn reopen_on_rewind_failure(shared: &Shared, consumer: &mut dyn Consumer, inputs: &[String], p: u32) {
    if let Err(e) = rewind_inputs(shared, consumer, inputs, p) {
        tracing::warn!(processor = shared.name, partition = p, error = %e, "rewinding a task failed; reopening it in 1 s");
        if let Some(mut t) = shared.tasks.lock().remove(&p) {
            let _ = t.txn.abort();
        }
        shared.unopened.lock().insert(p, Instant::now() + Duration::from_secs(1));
    }
}

/// Moves the consumer back to the committed offsets of task `p`'s input partitions.
pub(super) fn rewind_inputs(shared: &Shared, consumer: &mut dyn Consumer, inputs: &[String], p: u32) -> Result<()> {
    let tps: Vec<TopicPartition> = inputs.iter().map(|t| TopicPartition::new(t, p)).collect();
    let committed = shared.log.committed_offsets(&shared.group(), &tps)?;
    let marks = shared.log.watermarks(&tps)?;
    let mut tasks = shared.tasks.lock();
    for ((tp, c), (start, _)) in tps.iter().zip(committed).zip(marks) {
        if consumer.assignment().contains(tp) {
            let at = c.unwrap_or(start);
            consumer.seek(tp, at)?;
            if let Some(t) = tasks.get_mut(&p) {
                t.fetched_to.insert(tp.clone(), at);
            }
        }
    }
    Ok(())
}
