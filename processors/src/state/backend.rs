//! State backends: a durable ordered key-value store with a checkpoint — redb, one file per
//! task, or memory (the test driver, and `state = "memory"`). A backend only ever holds
//! committed state; [`crate::state::TaskState`] layers the uncommitted writes over it.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use redb::ReadableDatabase;

use crate::error::RuntimeError;

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

pub(crate) fn range_of<'a>(start: &'a [u8], end: &'a [u8]) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
