//! Typed state stores: a [`Store`] names a key space of the task's state and the type of
//! its values, declared once per processor as a constant. Values may carry an expiry
//! (`put_until`); an index of expiries (the internal store `__expiry`) lets the runtime
//! delete them, through the changelog, once stream time passes it.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ProcessError, RuntimeError};
use crate::state::encoding::{decode_value, encode_value, expiry_of, full_key, parse_time_key, split_key, time_key};
use crate::state::task_state::TaskState;

/// The internal index of values with an expiry.
const EXPIRY: &str = "__expiry";

/// A state store of values of type `T`, by name: a processor declares each of its stores
/// once, `const ORDERS: Store<OrderState> = Store::new("orders");`, lists their names in
/// [`crate::Processor::stores`] and reads and writes them through [`crate::Ctx`]. The name
/// is persisted (the state's keys and the changelog's): it never changes.
pub struct Store<T> {
    /// The store's name: snake_case, unique within the processor; `__` is the runtime's.
    pub name: &'static str,
    _values: PhantomData<fn() -> T>,
}

impl<T> Store<T> {
    /// The store called `name`.
    pub const fn new(name: &'static str) -> Self {
        Store { name, _values: PhantomData }
    }
}

impl<T> Clone for Store<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Store<T> {}

impl<T> std::fmt::Debug for Store<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({:?})", self.name)
    }
}

fn transient(e: RuntimeError) -> ProcessError {
    ProcessError::Transient(e.to_string())
}

fn corrupt(store: &str, key: &str, e: RuntimeError) -> ProcessError {
    ProcessError::Permanent(format!("state `{store}`/`{key}` does not decode as the type asked for: {e}"))
}

impl<T> Store<T> {
    /// The value of `key`, if present and not expired.
    pub(crate) fn get(self, state: &mut TaskState, key: &str) -> Result<Option<T>, ProcessError>
    where
        T: DeserializeOwned,
    {
        match state.get(&full_key(self.name, key)).map_err(transient)? {
            Some(bytes) => decode_value(&bytes).map(Some).map_err(|e| corrupt(self.name, key, e)),
            None => Ok(None),
        }
    }

    /// Sets `key`.
    pub(crate) fn put(self, state: &mut TaskState, key: &str, value: &T) -> Result<(), ProcessError>
    where
        T: Serialize,
    {
        let bytes = encode_value(value, None).map_err(|e| ProcessError::Permanent(e.to_string()))?;
        state.put(full_key(self.name, key), bytes);
        Ok(())
    }

    /// Sets `key` until stream time reaches `expires_at` (ms).
    pub(crate) fn put_until(self, state: &mut TaskState, key: &str, value: &T, expires_at: i64) -> Result<(), ProcessError>
    where
        T: Serialize,
    {
        let bytes = encode_value(value, Some(expires_at)).map_err(|e| ProcessError::Permanent(e.to_string()))?;
        let full = full_key(self.name, key);
        let previous = previous_expiry(state, &full)?;
        if previous != Some(expires_at) {
            if let Some(at) = previous {
                state.delete(expiry_index(at, &full));
            }
            state.put(expiry_index(expires_at, &full), encode_value(&(), None).expect("unit encodes"));
        }
        state.put(full, bytes);
        Ok(())
    }

    /// Deletes `key`.
    pub(crate) fn delete(self, state: &mut TaskState, key: &str) -> Result<(), ProcessError> {
        let full = full_key(self.name, key);
        if let Some(at) = previous_expiry(state, &full)? {
            state.delete(expiry_index(at, &full));
        }
        state.delete(full);
        Ok(())
    }

    /// Every live entry whose key starts with `prefix`, in key order.
    pub(crate) fn scan_prefix(self, state: &mut TaskState, prefix: &str) -> Result<Vec<(String, T)>, ProcessError>
    where
        T: DeserializeOwned,
    {
        let start = full_key(self.name, prefix);
        let mut end = start.clone();
        // The smallest key greater than every key with this prefix.
        while let Some(last) = end.pop() {
            if last < 0xff {
                end.push(last + 1);
                break;
            }
        }
        let rows = state.scan(&start, &end).map_err(transient)?;
        rows.into_iter()
            .map(|(k, v)| {
                let key = split_key(&k).1.to_string();
                decode_value(&v).map(|v| (key.clone(), v)).map_err(|e| corrupt(self.name, &key, e))
            })
            .collect()
    }
}

/// The expiry the stored value of `full` carries, so its index entry can go when the value
/// is replaced or deleted (otherwise the index would grow with every write).
fn previous_expiry(state: &mut TaskState, full: &[u8]) -> Result<Option<i64>, ProcessError> {
    Ok(state.get_raw(full).map_err(transient)?.as_deref().and_then(expiry_of))
}

/// The expiry index's key for `full` expiring at `at`.
fn expiry_index(at: i64, full: &[u8]) -> Vec<u8> {
    full_key(EXPIRY, &format!("{}|{}", time_key(at), String::from_utf8_lossy(full)))
}

/// Deletes expired entries up to the task's stream time. Returns how many.
pub(crate) fn sweep_expired(state: &mut TaskState) -> Result<usize, RuntimeError> {
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
