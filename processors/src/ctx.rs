//! What a processor sees while it handles a record: emit outputs, typed state stores, timers.
//! Nothing here does I/O; the runtime turns it into log writes at the next commit.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::processor::ProcessError;
use crate::store::{TaskState, decode_value, encode_value, expiry_of, full_key, split_key};
use crate::wire::Wire;

/// The internal store of timers.
pub(crate) const TIMERS: &str = "__timers";
/// The internal index of values with an expiry.
pub(crate) const EXPIRY: &str = "__expiry";

/// An output waiting for its record to succeed.
#[derive(Debug)]
pub struct Emitted<O> {
    /// Destination topic.
    pub topic: String,
    /// Key.
    pub key: String,
    /// Value.
    pub value: O,
    /// Extra headers (dead letters carry their reason here).
    pub headers: Vec<storeflow_ingest::Header>,
}

/// The context of one record (or timer).
pub struct Ctx<'a, O> {
    pub(crate) processor: &'static str,
    pub(crate) state: &'a mut TaskState,
    pub(crate) out: Vec<Emitted<O>>,
    pub(crate) partition: u32,
    pub(crate) stores: &'static [&'static str],
    pub(crate) time: i64,
}

/// Sortable text of a timestamp (negative times sort before positive ones).
pub(crate) fn time_key(t: i64) -> String {
    format!("{:020}", (t as u64) ^ (1 << 63))
}

pub(crate) fn parse_time_key(s: &str) -> Option<i64> {
    s.get(..20)?.parse::<u64>().ok().map(|u| (u ^ (1 << 63)) as i64)
}

impl<'a, O: Wire> Ctx<'a, O> {
    pub(crate) fn new(processor: &'static str, state: &'a mut TaskState, partition: u32, stores: &'static [&'static str], time: i64) -> Self {
        Ctx { processor, state, out: Vec::new(), partition, stores, time }
    }

    /// Sends `value` to its topic ([`Wire::topic`]) with its key, when the record commits.
    pub fn emit(&mut self, value: O) {
        let (topic, key) = (value.topic(), value.key());
        self.out.push(Emitted { topic, key, value, headers: vec![] });
    }

    /// A deterministic `event_id` for an event this step derives from `parts` (what it is
    /// about: ids, a kind): the same record gives the same id on every run and after a
    /// crash, so consumers drop the duplicate; the processor's name seeds it, so two
    /// processors deriving from the same parts never collide.
    pub fn event_id(&self, parts: &[&str]) -> String {
        let seed = crate::ids::fnv1a(0xcbf2_9ce4_8422_2325, 0, &[self.processor]);
        crate::ids::derived_event_id(seed, 31, self.time, parts)
    }

    /// Sends `value` to `topic` under `key` (an internal or repartition topic).
    pub fn emit_to(&mut self, topic: &str, key: &str, value: O) {
        self.out.push(Emitted { topic: topic.to_string(), key: key.to_string(), value, headers: vec![] });
    }

    /// Sends `value` — a record of `topic` that the processor accepted earlier and held back
    /// (say, an event that arrived before the state it needs) — to `<topic>.dlq` with
    /// `reason`, as the runtime does for a record that fails when it arrives.
    pub fn dead_letter(&mut self, topic: &str, key: &str, value: O, reason: &str) {
        let headers = storeflow_ingest::dlq::headers_for(self.processor, reason, topic, self.partition, "held back", self.time);
        self.out.push(Emitted { topic: storeflow_avro::dlq_topic(topic), key: key.to_string(), value, headers });
    }

    /// The state store `name` (declared in [`crate::Processor::stores`]), typed by `V`.
    pub fn store<V: Serialize + DeserializeOwned>(&mut self, name: &'static str) -> Store<'_, 'a, V, O> {
        debug_assert!(
            self.stores.contains(&name) || name.starts_with("__"),
            "store `{name}` is not declared in Processor::stores"
        );
        Store { ctx: self, name, _v: std::marker::PhantomData }
    }

    /// Calls [`crate::Processor::on_timer`] with `key` once every input group has passed
    /// `at` (ms of event time; a time already past fires at the next step). Setting the same
    /// (at, key) twice sets it once.
    pub fn set_timer(&mut self, at: i64, key: &str) {
        let at = at.max(self.time);
        let k = full_key(TIMERS, &format!("{}|{key}", time_key(at)));
        self.state.put(k, encode_value(&(), None).expect("unit encodes"));
    }

    /// Cancels a timer set with the same `at` and `key` (a timer set for a time already past
    /// was stored at the time it was set; `on_timer` should check state before acting).
    pub fn cancel_timer(&mut self, at: i64, key: &str) {
        self.state.delete(full_key(TIMERS, &format!("{}|{key}", time_key(at))));
    }

    /// A mark of the outputs so far, to [`Ctx::rollback_outputs`] to.
    pub fn savepoint(&self) -> usize {
        self.out.len()
    }

    /// Forgets the outputs emitted since `savepoint` (when a held-back record fails after
    /// the record that replays it succeeded).
    pub fn rollback_outputs(&mut self, savepoint: usize) {
        self.out.truncate(savepoint);
    }

    /// The event time of the record being processed (or the due time of the timer).
    pub fn time(&self) -> i64 {
        self.time
    }

    /// The partition (task) this runs in.
    pub fn partition(&self) -> u32 {
        self.partition
    }
}

/// A typed view of one state store.
pub struct Store<'c, 'a, V, O> {
    ctx: &'c mut Ctx<'a, O>,
    name: &'static str,
    _v: std::marker::PhantomData<V>,
}

fn transient(e: crate::RuntimeError) -> ProcessError {
    ProcessError::Transient(e.to_string())
}

fn corrupt(store: &str, key: &str, e: crate::RuntimeError) -> ProcessError {
    ProcessError::Permanent(format!("state `{store}`/`{key}` does not decode as the type asked for: {e}"))
}

impl<V: Serialize + DeserializeOwned, O> Store<'_, '_, V, O> {
    /// The value of `key`, if present and not expired.
    pub fn get(&mut self, key: &str) -> Result<Option<V>, ProcessError> {
        match self.ctx.state.get(&full_key(self.name, key)).map_err(transient)? {
            Some(bytes) => decode_value(&bytes).map(Some).map_err(|e| corrupt(self.name, key, e)),
            None => Ok(None),
        }
    }

    /// Sets `key`.
    pub fn put(&mut self, key: &str, value: &V) -> Result<(), ProcessError> {
        let bytes = encode_value(value, None).map_err(|e| ProcessError::Permanent(e.to_string()))?;
        self.ctx.state.put(full_key(self.name, key), bytes);
        Ok(())
    }

    /// Sets `key` until stream time reaches `expires_at` (ms): then it reads as absent and
    /// the runtime deletes it (through the changelog).
    pub fn put_until(&mut self, key: &str, value: &V, expires_at: i64) -> Result<(), ProcessError> {
        let bytes = encode_value(value, Some(expires_at)).map_err(|e| ProcessError::Permanent(e.to_string()))?;
        let full = full_key(self.name, key);
        let previous = self.previous_expiry(&full)?;
        if previous != Some(expires_at) {
            if let Some(at) = previous {
                self.ctx.state.delete(expiry_index(at, &full));
            }
            self.ctx.state.put(expiry_index(expires_at, &full), encode_value(&(), None).expect("unit encodes"));
        }
        self.ctx.state.put(full, bytes);
        Ok(())
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: &str) -> Result<(), ProcessError> {
        let full = full_key(self.name, key);
        if let Some(at) = self.previous_expiry(&full)? {
            self.ctx.state.delete(expiry_index(at, &full));
        }
        self.ctx.state.delete(full);
        Ok(())
    }

    /// The expiry the stored value of `full` carries, so its index entry can go when the
    /// value is replaced or deleted (otherwise the index would grow with every write).
    fn previous_expiry(&mut self, full: &[u8]) -> Result<Option<i64>, ProcessError> {
        Ok(self.ctx.state.get_raw(full).map_err(transient)?.as_deref().and_then(expiry_of))
    }

    /// Every live entry whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&mut self, prefix: &str) -> Result<Vec<(String, V)>, ProcessError> {
        let start = full_key(self.name, prefix);
        let mut end = start.clone();
        // The smallest key greater than every key with this prefix.
        while let Some(last) = end.pop() {
            if last < 0xff {
                end.push(last + 1);
                break;
            }
        }
        let rows = self.ctx.state.scan(&start, &end).map_err(transient)?;
        rows.into_iter()
            .map(|(k, v)| {
                let key = split_key(&k).1.to_string();
                decode_value(&v).map(|v| (key.clone(), v)).map_err(|e| corrupt(self.name, &key, e))
            })
            .collect()
    }
}

/// Deletes expired entries up to the task's stream time. Returns how many.
/// The expiry index's key for `full` expiring at `at`.
fn expiry_index(at: i64, full: &[u8]) -> Vec<u8> {
    full_key(EXPIRY, &format!("{}|{}", time_key(at), String::from_utf8_lossy(full)))
}

pub(crate) fn sweep_expired(state: &mut TaskState) -> Result<usize, crate::RuntimeError> {
    let start = full_key(EXPIRY, "");
    let end = full_key(EXPIRY, &format!("{}|", time_key(state.stream_time.saturating_add(1))));
    let due = state.scan(&start, &end)?;
    let mut n = 0;
    for (index_key, _) in due {
        let (_, rest) = split_key(&index_key);
        let (Some(at), Some(target)) = (parse_time_key(rest), rest.get(21..)) else {
            state.delete(index_key);
            continue;
        };
        let target = target.as_bytes().to_vec();
        // Only if the value still carries this expiry (it may have been re-put since).
        let raw = {
            let saved = state.stream_time;
            state.stream_time = i64::MIN;
            let raw = state.get(&target)?;
            state.stream_time = saved;
            raw
        };
        if raw.as_deref().and_then(expiry_of) == Some(at) {
            state.delete(target);
            n += 1;
        }
        state.delete(index_key);
    }
    Ok(n)
}

/// The earliest timer of a task, if any.
pub(crate) fn next_timer(state: &mut TaskState) -> Result<Option<crate::Timer>, crate::RuntimeError> {
    let start = full_key(TIMERS, "");
    let mut end = full_key(TIMERS, "");
    end.push(0xff);
    Ok(state.first(&start, &end)?.and_then(|(k, _)| {
        let (_, rest) = split_key(&k);
        match (parse_time_key(rest), rest.get(21..)) {
            (Some(at), Some(key)) => Some(crate::Timer { at, key: key.to_string() }),
            _ => None,
        }
    }))
}

/// Removes `timer` from the timer store.
pub(crate) fn remove_timer(state: &mut TaskState, timer: &crate::Timer) {
    state.delete(full_key(TIMERS, &format!("{}|{}", time_key(timer.at), timer.key)));
}
