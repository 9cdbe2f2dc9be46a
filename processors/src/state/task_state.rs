//! The state of one task (one partition of a processor): a durable backend plus two layers
//! of writes not yet in it — those of records accepted since the last commit, and those of
//! the record being processed (dropped if it fails).
//!
//! At a commit the runtime sends the accepted writes to the changelog inside the
//! transaction, and only after the transaction commits applies them to the backend together
//! with the changelog offset they reach (the checkpoint). The backend therefore never holds
//! uncommitted state, and a task that starts (after a crash or a rebalance) replays the
//! changelog from its checkpoint to the end.

use std::collections::BTreeMap;

use crate::error::RuntimeError;
use crate::state::backend::{Changes, KvBackend, range_of};
use crate::state::encoding::expiry_of;

/// The state of one task: the backend plus the layers of writes not applied to it yet.
pub struct TaskState {
    backend: Box<dyn KvBackend>,
    accepted: Changes,
    record: Changes,
    /// The logical time of the step being processed: values whose expiry is at or before
    /// it read as absent.
    pub stream_time: i64,
    /// Bumped whenever the timer store may have changed.
    timers_version: u64,
}

/// The prefix of the timer store's keys.
const TIMER_PREFIX: &[u8] = b"__timers\0";

impl TaskState {
    /// State over `backend`.
    pub fn new(backend: Box<dyn KvBackend>) -> Self {
        TaskState { backend, accepted: Changes::new(), record: Changes::new(), stream_time: i64::MIN, timers_version: 0 }
    }

    /// The live value of `key` (not expired at stream time), through the layers.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, RuntimeError> {
        let v = self.get_raw(key)?;
        Ok(v.filter(|b| expiry_of(b).is_none_or(|t| t > self.stream_time)))
    }

    /// The stored value of `key` through the layers, expired or not.
    pub fn get_raw(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, RuntimeError> {
        match self.record.get(key).or_else(|| self.accepted.get(key)) {
            Some(v) => Ok(v.clone()),
            None => self.backend.get(key),
        }
    }

    /// Live entries with `start <= key < end`, through the layers, in key order.
    pub fn scan(&mut self, start: &[u8], end: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, RuntimeError> {
        let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> =
            self.backend.scan(start, end)?.into_iter().map(|(k, v)| (k, Some(v))).collect();
        for layer in [&self.accepted, &self.record] {
            for (k, v) in layer.range::<[u8], _>(range_of(start, end)) {
                merged.insert(k.clone(), v.clone());
            }
        }
        let now = self.stream_time;
        Ok(merged
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .filter(|(_, v)| expiry_of(v).is_none_or(|t| t > now))
            .collect())
    }

    /// Writes `key` for the current record.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.touch(&key);
        self.record.insert(key, Some(value));
    }

    /// Deletes `key` for the current record.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.touch(&key);
        self.record.insert(key, None);
    }

    fn touch(&mut self, key: &[u8]) {
        if key.starts_with(TIMER_PREFIX) {
            self.timers_version += 1;
        }
    }

    /// Changes whenever the timer store may have changed.
    pub fn timers_version(&self) -> u64 {
        self.timers_version
    }

    /// The first live entry with `start <= key < end`, through the layers (ignores expiry:
    /// for stores without one, such as the timers).
    pub fn first(&mut self, start: &[u8], end: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>, RuntimeError> {
        let mut limit = 8;
        loop {
            let base = self.backend.scan_limit(start, end, limit)?;
            let complete = base.len() < limit;
            let last_base = base.last().map(|(k, _)| k.clone());
            let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> = base.into_iter().map(|(k, v)| (k, Some(v))).collect();
            for layer in [&self.accepted, &self.record] {
                for (k, v) in layer.range::<[u8], _>(range_of(start, end)) {
                    merged.insert(k.clone(), v.clone());
                }
            }
            let found = merged.into_iter().find_map(|(k, v)| v.map(|v| (k, v)));
            match (&found, &last_base) {
                // Everything the backend holds in range was seen, or the answer lies within it.
                _ if complete => return Ok(found),
                (Some((k, _)), Some(last)) if k <= last => return Ok(found),
                _ => limit *= 4,
            }
        }
    }

    /// The current record succeeded: keep its writes.
    pub fn accept(&mut self) {
        let record = std::mem::take(&mut self.record);
        self.accepted.extend(record);
    }

    /// The current record failed: forget its writes.
    pub fn reject(&mut self) {
        self.record.clear();
        self.timers_version += 1;
    }

    /// True when accepted writes wait for a commit.
    pub fn dirty(&self) -> bool {
        !self.accepted.is_empty()
    }

    /// The accepted writes, for the changelog (the caller applies them after the commit).
    pub fn accepted(&self) -> &Changes {
        &self.accepted
    }

    /// After the transaction committed: writes the accepted changes to the backend.
    pub fn apply_committed(&mut self, checkpoint: u64) -> Result<(), RuntimeError> {
        let changes = std::mem::take(&mut self.accepted);
        self.backend.apply(&changes, checkpoint)
    }

    /// After the transaction aborted: forgets everything not in the backend.
    pub fn discard(&mut self) {
        self.accepted.clear();
        self.record.clear();
        self.timers_version += 1;
    }

    /// The backend, for restores.
    pub fn backend(&mut self) -> &mut dyn KvBackend {
        &mut *self.backend
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::backend::MemBackend;
    use crate::state::encoding::{decode_value, encode_value, full_key, split_key};

    fn state() -> TaskState {
        TaskState::new(Box::new(MemBackend::default()))
    }

    #[test]
    fn a_rejected_record_leaves_no_trace_and_an_accepted_one_is_visible() {
        let mut s = state();
        s.put(full_key("a", "k"), encode_value(&1u32, None).unwrap());
        s.reject();
        assert_eq!(s.get(&full_key("a", "k")).unwrap(), None);
        s.put(full_key("a", "k"), encode_value(&2u32, None).unwrap());
        s.accept();
        let v: u32 = decode_value(&s.get(&full_key("a", "k")).unwrap().unwrap()).unwrap();
        assert_eq!(v, 2);
    }

    #[test]
    fn scans_merge_the_layers_and_honour_deletes_and_expiry() {
        let mut s = state();
        let mut c = Changes::new();
        for k in ["a", "b", "c"] {
            c.insert(full_key("s", k), Some(encode_value(&k, None).unwrap()));
        }
        s.backend().apply(&c, 10).unwrap();
        s.delete(full_key("s", "b"));
        s.put(full_key("s", "d"), encode_value(&"d", Some(100)).unwrap());
        s.accept();
        s.stream_time = 50;
        let keys = |s: &mut TaskState| -> Vec<String> {
            s.scan(&full_key("s", ""), &full_key("s\u{1}", "")).unwrap().iter().map(|(k, _)| split_key(k).1.to_string()).collect()
        };
        assert_eq!(keys(&mut s), vec!["a", "c", "d"]);
        s.stream_time = 100;
        assert_eq!(keys(&mut s), vec!["a", "c"], "an entry expires when stream time reaches its expiry");
    }
}
