//! Timers: kept in the task's state (the internal store `__timers`, keyed by due time and
//! key), so they move and restore with the task like any other state.

use crate::error::RuntimeError;
use crate::state::encoding::{encode_value, full_key, parse_time_key, split_key, time_key};
use crate::state::task_state::TaskState;

/// The internal store of timers.
const TIMERS: &str = "__timers";

/// A timer that came due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timer {
    /// When it was due (ms, stream time).
    pub at: i64,
    /// What the processor registered it with.
    pub key: String,
}

fn timer_key(at: i64, key: &str) -> Vec<u8> {
    full_key(TIMERS, &format!("{}|{key}", time_key(at)))
}

/// Sets the timer (`at`, `key`) for the current record; setting it twice sets it once.
pub(crate) fn set_timer(state: &mut TaskState, at: i64, key: &str) {
    state.put(timer_key(at, key), encode_value(&(), None).expect("unit encodes"));
}

/// Cancels the timer (`at`, `key`) for the current record.
pub(crate) fn cancel_timer(state: &mut TaskState, at: i64, key: &str) {
    state.delete(timer_key(at, key));
}

/// The earliest timer of a task, if any.
pub(crate) fn next_timer(state: &mut TaskState) -> Result<Option<Timer>, RuntimeError> {
    let start = full_key(TIMERS, "");
    let mut end = full_key(TIMERS, "");
    end.push(0xff);
    Ok(state.first(&start, &end)?.and_then(|(k, _)| {
        let (_, rest) = split_key(&k);
        match (parse_time_key(rest), rest.get(21..)) {
            (Some(at), Some(key)) => Some(Timer { at, key: key.to_string() }),
            _ => None,
        }
    }))
}

/// Removes `timer` from the timer store.
pub(crate) fn remove_timer(state: &mut TaskState, timer: &Timer) {
    state.delete(timer_key(timer.at, &timer.key));
}
