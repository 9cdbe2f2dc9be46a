//! State stores: partition-local key-value state, written through a changelog.
//!
//! Each task (one partition of a processor) owns a [`TaskState`]: a durable backend (redb,
//! or memory in tests) plus two layers of writes not yet in it — those of records accepted
//! since the last commit, and those of the record being processed (dropped if it fails).
//! At a commit the runtime sends the accepted writes to the changelog inside the
//! transaction, and only after the transaction commits applies them to the backend together
//! with the changelog offset they reach (the checkpoint). The backend therefore never holds
//! uncommitted state, and a task that starts (after a crash or a rebalance) replays the
//! changelog from its checkpoint to the end.
//!
//! Keys are `<store>\0<key>`; values are an envelope (an optional expiry) around postcard.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use redb::ReadableDatabase;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::RuntimeError;

/// Writes pending for the backend: `None` deletes.
pub type Changes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// A durable ordered key-value backend with a checkpoint.
pub trait KvBackend: Send {
    /// The value of `key`.
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, RuntimeError>;
    /// Entries with `start <= key < end` (no upper bound when `end` is empty), in key order.
    fn scan(&mut self, start: &[u8], end: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, RuntimeError>;
    /// Applies `changes` and records `checkpoint`, atomically.
    fn apply(&mut self, changes: &Changes, checkpoint: u64) -> Result<(), RuntimeError>;
    /// The checkpoint of the last apply, if any.
    fn checkpoint(&mut self) -> Result<Option<u64>, RuntimeError>;
    /// Deletes everything (before a full restore).
    fn wipe(&mut self) -> Result<(), RuntimeError>;
    /// At most `limit` entries with `start <= key < end`, in key order.
    fn scan_limit(&mut self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>, RuntimeError> {
        let mut v = self.scan(start, end)?;
        v.truncate(limit);
        Ok(v)
    }
}

/// An in-memory backend (the test driver, and `state = "memory"`).
#[derive(Default)]
pub struct MemBackend {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    checkpoint: Option<u64>,
}

fn range_of<'a>(start: &'a [u8], end: &'a [u8]) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    let hi = if end.is_empty() { Bound::Unbounded } else { Bound::Excluded(end) };
    (Bound::Included(start), hi)
}

impl KvBackend for MemBackend {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, RuntimeError> {
        Ok(self.map.get(key).cloned())
    }
    fn scan(&mut self, start: &[u8], end: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, RuntimeError> {
        Ok(self
            .map
            .range::<[u8], _>(range_of(start, end))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
    fn apply(&mut self, changes: &Changes, checkpoint: u64) -> Result<(), RuntimeError> {
        for (k, v) in changes {
            match v {
                Some(v) => self.map.insert(k.clone(), v.clone()),
                None => self.map.remove(k),
            };
        }
        self.checkpoint = Some(checkpoint);
        Ok(())
    }
    fn checkpoint(&mut self) -> Result<Option<u64>, RuntimeError> {
        Ok(self.checkpoint)
    }
    fn wipe(&mut self) -> Result<(), RuntimeError> {
        self.map.clear();
        self.checkpoint = None;
        Ok(())
    }
    fn scan_limit(&mut self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>, RuntimeError> {
        Ok(self.map.range::<[u8], _>(range_of(start, end)).take(limit).map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}

const KV: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("kv");
const META: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");

fn db_err(context: &str) -> impl FnOnce(redb::Error) -> RuntimeError + '_ {
    move |e| RuntimeError::Store(format!("{context}: {e}"))
}

/// A redb file per task. Commits are made durable (`fsync`) at most every
/// `durable_every` applies: the changelog is the source of truth, so losing the last few
/// applies to a power cut only means a longer replay.
pub struct RedbBackend {
    db: redb::Database,
    reader: Option<redb::ReadTransaction>,
    applies: u32,
    durable_every: u32,
}

impl RedbBackend {
    /// Opens (creating) the store file at `path`.
    pub fn open(path: &Path) -> Result<Self, RuntimeError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| RuntimeError::Store(format!("creating {}: {e}", dir.display())))?;
        }
        let db = match redb::Database::create(path) {
            Ok(db) => db,
            // Another process (or task) holds it: not ours to touch; the caller retries.
            Err(e @ redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(RuntimeError::Store(format!("opening {}: {e}", path.display())));
            }
            // A file torn by a crash while it was being created or upgraded. Local state is
            // only a cache of the changelog: start an empty store, which restores in full.
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "the local state store is unreadable; rebuilding it from the changelog");
                std::fs::remove_file(path).map_err(|e| RuntimeError::Store(format!("removing {}: {e}", path.display())))?;
                redb::Database::create(path).map_err(|e| RuntimeError::Store(format!("opening {}: {e}", path.display())))?
            }
        };
        let w = db.begin_write().map_err(|e| db_err("begin")(e.into()))?;
        {
            w.open_table(KV).map_err(|e| db_err("kv table")(e.into()))?;
            w.open_table(META).map_err(|e| db_err("meta table")(e.into()))?;
        }
        w.commit().map_err(|e| db_err("commit")(e.into()))?;
        Ok(RedbBackend { db, reader: None, applies: 0, durable_every: 50 })
    }

    fn reader(&mut self) -> Result<&redb::ReadTransaction, RuntimeError> {
        if self.reader.is_none() {
            self.reader = Some(self.db.begin_read().map_err(|e| db_err("begin read")(e.into()))?);
        }
        Ok(self.reader.as_ref().expect("just set"))
    }
}

impl KvBackend for RedbBackend {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, RuntimeError> {
        let t = self.reader()?.open_table(KV).map_err(|e| db_err("open kv")(e.into()))?;
        Ok(t.get(key).map_err(|e| db_err("get")(e.into()))?.map(|v| v.value().to_vec()))
    }
    fn scan(&mut self, start: &[u8], end: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, RuntimeError> {
        let t = self.reader()?.open_table(KV).map_err(|e| db_err("open kv")(e.into()))?;
        let iter = if end.is_empty() { t.range::<&[u8]>(start..) } else { t.range::<&[u8]>(start..end) }
            .map_err(|e| db_err("range")(e.into()))?;
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item.map_err(|e| db_err("range item")(e.into()))?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }
    fn scan_limit(&mut self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>, RuntimeError> {
        let t = self.reader()?.open_table(KV).map_err(|e| db_err("open kv")(e.into()))?;
        let iter = if end.is_empty() { t.range::<&[u8]>(start..) } else { t.range::<&[u8]>(start..end) }
            .map_err(|e| db_err("range")(e.into()))?;
        let mut out = Vec::new();
        for item in iter.take(limit) {
            let (k, v) = item.map_err(|e| db_err("range item")(e.into()))?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }
    fn apply(&mut self, changes: &Changes, checkpoint: u64) -> Result<(), RuntimeError> {
        self.reader = None;
        let mut w = self.db.begin_write().map_err(|e| db_err("begin write")(e.into()))?;
        self.applies += 1;
        let durable = self.applies % self.durable_every == 0;
        w.set_durability(if durable { redb::Durability::Immediate } else { redb::Durability::None })
            .map_err(|e| RuntimeError::Store(format!("durability: {e}")))?;
        {
            let mut t = w.open_table(KV).map_err(|e| db_err("open kv")(e.into()))?;
            for (k, v) in changes {
                match v {
                    Some(v) => {
                        t.insert(k.as_slice(), v.as_slice()).map_err(|e| db_err("insert")(e.into()))?;
                    }
                    None => {
                        t.remove(k.as_slice()).map_err(|e| db_err("remove")(e.into()))?;
                    }
                }
            }
            let mut m = w.open_table(META).map_err(|e| db_err("open meta")(e.into()))?;
            m.insert("checkpoint", checkpoint).map_err(|e| db_err("checkpoint")(e.into()))?;
        }
        w.commit().map_err(|e| db_err("commit")(e.into()))
    }
    fn checkpoint(&mut self) -> Result<Option<u64>, RuntimeError> {
        let t = self.reader()?.open_table(META).map_err(|e| db_err("open meta")(e.into()))?;
        Ok(t.get("checkpoint").map_err(|e| db_err("get")(e.into()))?.map(|v| v.value()))
    }
    fn wipe(&mut self) -> Result<(), RuntimeError> {
        self.reader = None;
        let w = self.db.begin_write().map_err(|e| db_err("begin write")(e.into()))?;
        w.delete_table(KV).map_err(|e| db_err("wipe kv")(e.into()))?;
        w.delete_table(META).map_err(|e| db_err("wipe meta")(e.into()))?;
        w.open_table(KV).map_err(|e| db_err("kv table")(e.into()))?;
        w.open_table(META).map_err(|e| db_err("meta table")(e.into()))?;
        w.commit().map_err(|e| db_err("commit")(e.into()))
    }
}

/// The full key of `key` in `store`.
pub fn full_key(store: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(store.len() + 1 + key.len());
    k.extend_from_slice(store.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// Splits a full key into (store, key).
pub fn split_key(full: &[u8]) -> (&str, &str) {
    let at = full.iter().position(|b| *b == 0).unwrap_or(full.len());
    let store = std::str::from_utf8(&full[..at]).unwrap_or("");
    let key = full.get(at + 1..).map(|k| std::str::from_utf8(k).unwrap_or("")).unwrap_or("");
    (store, key)
}

/// Encodes a value with an optional expiry (stream time, ms).
pub fn encode_value<V: Serialize>(v: &V, expires: Option<i64>) -> Result<Vec<u8>, RuntimeError> {
    let mut out = Vec::with_capacity(32);
    match expires {
        Some(t) => {
            out.push(1);
            out.extend_from_slice(&t.to_be_bytes());
        }
        None => out.push(0),
    }
    postcard::to_extend(v, out).map_err(|e| RuntimeError::Store(format!("encoding a state value: {e}")))
}

/// The expiry of an encoded value.
pub fn expiry_of(bytes: &[u8]) -> Option<i64> {
    match bytes.first() {
        Some(1) if bytes.len() >= 9 => Some(i64::from_be_bytes(bytes[1..9].try_into().expect("8 bytes"))),
        _ => None,
    }
}

/// Decodes an encoded value.
pub fn decode_value<V: DeserializeOwned>(bytes: &[u8]) -> Result<V, RuntimeError> {
    let body = match bytes.first() {
        Some(1) => bytes.get(9..).unwrap_or_default(),
        Some(0) => &bytes[1..],
        _ => return Err(RuntimeError::Store("an empty state value".into())),
    };
    postcard::from_bytes(body).map_err(|e| RuntimeError::Store(format!("decoding a state value: {e}")))
}

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

    #[test]
    fn redb_applies_atomically_with_its_checkpoint_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        {
            let mut b = RedbBackend::open(&path).unwrap();
            let mut c = Changes::new();
            c.insert(b"x".to_vec(), Some(b"1".to_vec()));
            b.apply(&c, 7).unwrap();
            assert_eq!(b.get(b"x").unwrap(), Some(b"1".to_vec()));
        }
        let mut b = RedbBackend::open(&path).unwrap();
        // Durability::None commits survive a clean close of the process (the file is flushed on drop).
        let cp = b.checkpoint().unwrap();
        assert!(cp == Some(7) || cp.is_none(), "{cp:?}");
        b.wipe().unwrap();
        assert_eq!(b.get(b"x").unwrap(), None);
        assert_eq!(b.checkpoint().unwrap(), None);
    }

    #[test]
    fn a_store_file_torn_by_a_crash_is_replaced_by_an_empty_store_to_restore_into() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        // What a SIGKILL while redb writes a new file's header can leave behind.
        std::fs::write(&path, [0u8; 100]).unwrap();
        let mut b = RedbBackend::open(&path).expect("a torn file does not stop the task for good");
        assert_eq!(b.checkpoint().unwrap(), None, "no checkpoint: the task restores the whole changelog");
        assert_eq!(b.get(b"x").unwrap(), None);
    }

    #[test]
    fn a_store_file_held_by_another_opener_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        let mut first = RedbBackend::open(&path).unwrap();
        let mut c = Changes::new();
        c.insert(b"x".to_vec(), Some(b"1".to_vec()));
        first.apply(&c, 3).unwrap();
        assert!(RedbBackend::open(&path).is_err(), "a second opener must not wipe a store in use");
        assert_eq!(first.get(b"x").unwrap(), Some(b"1".to_vec()));
    }
}
