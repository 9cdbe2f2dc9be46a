//! The journal of the embedded log: one append-only file that orders every commit — a
//! transaction's commit marker with its consumer offsets, a plain offset commit, a
//! transactional producer's new epoch — plus a snapshot that lets it be truncated.
//!
//! A transaction's records carry its sequence number; they count as committed if and only
//! if the journal holds that sequence. Recovery cuts records of higher sequences from the
//! partitions' tails, so a crash mid-commit leaves no trace.
//!
//! A bad entry with nothing intact after it is a torn tail, cut on open. A bad entry with
//! intact entries after it is corruption — cutting it would drop commits — so opening fails
//! with the file and byte position instead.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{LogError, Result};

/// Compact the journal into a snapshot past this size.
const COMPACT_AT: u64 = 16 << 20;

/// One journal entry.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Entry {
    /// A commit: a transaction's (with `tid`) or a plain offset commit (without).
    Commit {
        seq: u64,
        tid: Option<String>,
        epoch: u64,
        /// Partition ends after the transaction's records: (topic, partition, end).
        ends: Vec<(String, u32, u64)>,
        /// Consumer offsets: (group, topic, partition, next offset).
        offsets: Vec<(String, String, u32, u64)>,
    },
    /// A transactional producer registered, fencing older ones with the same id.
    Epoch { seq: u64, tid: String, epoch: u64 },
}

impl Entry {
    fn seq(&self) -> u64 {
        match self {
            Entry::Commit { seq, .. } | Entry::Epoch { seq, .. } => *seq,
        }
    }
}

/// What the journal says, folded.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct State {
    /// Highest sequence written.
    pub last_seq: u64,
    /// group → "topic\u{0}partition" → next offset.
    pub offsets: HashMap<String, HashMap<String, u64>>,
    /// transactional id → current epoch.
    pub epochs: HashMap<String, u64>,
    /// "topic\u{0}partition" → end after the last transaction that wrote it.
    pub txn_ends: HashMap<String, u64>,
}

/// The key of a topic-partition in [`State`] maps.
pub(crate) fn tp_key(topic: &str, partition: u32) -> String {
    format!("{topic}\u{0}{partition}")
}

impl State {
    fn apply(&mut self, e: &Entry) {
        self.last_seq = self.last_seq.max(e.seq());
        match e {
            Entry::Commit { ends, offsets, .. } => {
                for (t, p, end) in ends {
                    self.txn_ends.insert(tp_key(t, *p), *end);
                }
                for (g, t, p, o) in offsets {
                    self.offsets.entry(g.clone()).or_default().insert(tp_key(t, *p), *o);
                }
            }
            Entry::Epoch { tid, epoch, .. } => {
                self.epochs.insert(tid.clone(), *epoch);
            }
        }
    }
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> LogError {
    let context = context.into();
    move |source| LogError::Io { context, source }
}

/// The snapshot and journal of a data directory as read, before anything is changed.
pub(crate) struct Replayed {
    /// The journal file.
    pub path: PathBuf,
    /// The state folded from the snapshot and the intact entries.
    pub state: State,
    /// Bytes of the journal file.
    pub len: u64,
    /// Bytes of intact entries from the start.
    pub intact: u64,
    /// Where an intact entry follows a damaged one (corruption, not a torn tail).
    pub resumes_at: Option<u64>,
}

impl Replayed {
    /// Reads the snapshot and the journal of `dir` without changing them.
    pub(crate) fn read(dir: &Path) -> Result<Replayed> {
        let snap_path = dir.join("snapshot.json");
        let mut state: State = match std::fs::read(&snap_path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| LogError::Corrupt(format!("{}: {e}", snap_path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(io(format!("reading {}", snap_path.display()))(e)),
        };
        let path = dir.join("journal.log");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(format!("reading {}", path.display()))(e)),
        };
        let (intact, resumes_at) = replay(&bytes, &mut state);
        Ok(Replayed {
            path,
            state,
            len: bytes.len() as u64,
            intact: intact as u64,
            resumes_at: resumes_at.map(|p| p as u64),
        })
    }

    /// What opening says about a damaged entry with intact ones after it.
    pub(crate) fn corruption_message(&self, resume: u64) -> String {
        format!(
            "{}: the entry at byte {} is damaged but intact entries follow from byte {resume}; cutting it would drop \
             committed transactions and consumer offsets, so nothing was cut. Restore the journal from a backup, or \
             accept losing every commit after byte {} with `truncate -s {} {}`",
            self.path.display(),
            self.intact,
            self.intact,
            self.intact,
            self.path.display()
        )
    }
}

/// Folds the intact entries at the start of a journal's bytes into `state` (those past its
/// `last_seq`, which a snapshot already holds otherwise): how many bytes they take, and where
/// an intact entry follows the first damaged one, if one does.
pub(crate) fn replay(bytes: &[u8], state: &mut State) -> (usize, Option<usize>) {
    let mut at = 0usize;
    while let Some((entry, len)) = entry_at(&bytes[at..]) {
        if entry.seq() > state.last_seq {
            state.apply(&entry);
        }
        at += len;
    }
    // An intact entry later on means the bad bytes are damage, not a write cut short.
    let resumes_at = (at + 1..bytes.len()).find(|&p| entry_at(&bytes[p..]).is_some());
    (at, resumes_at)
}

/// A journal entry's body with its prefix: length and CRC-32C, little endian.
pub(crate) fn framed(body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(body.len() + 8);
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    frame.extend_from_slice(body);
    frame
}

/// The intact entry at the start of `b` and its length with the prefix, if there is one.
pub(crate) fn entry_at(b: &[u8]) -> Option<(Entry, usize)> {
    if b.len() < 8 {
        return None;
    }
    let len = u32::from_le_bytes(b[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(b[4..8].try_into().expect("4 bytes"));
    if len == 0 || 8 + len > b.len() || crc32c::crc32c(&b[8..8 + len]) != crc {
        return None;
    }
    let entry = serde_json::from_slice::<Entry>(&b[8..8 + len]).ok()?;
    Some((entry, 8 + len))
}

/// The journal file and its folded state.
pub(crate) struct Journal {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    size: u64,
    dirty: bool,
    /// The folded state; mutate it only through [`Journal::append`].
    pub state: State,
}

impl Journal {
    /// Opens the journal in `dir`, replaying the snapshot and the entries after it, and
    /// cutting a torn last entry. Fails on a damaged entry with intact entries after it.
    pub(crate) fn open(dir: &Path) -> Result<Journal> {
        let path = dir.join("journal.log");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(format!("opening {}", path.display())))?;
        let read = Replayed::read(dir)?;
        if let Some(resume) = read.resumes_at {
            return Err(LogError::Corrupt(read.corruption_message(resume)));
        }
        let at = read.intact;
        if at < read.len {
            tracing::warn!(
                journal = %path.display(),
                cut = read.len - at,
                "cutting a torn journal entry left by a crash"
            );
            file.set_len(at).map_err(io(format!("truncating {}", path.display())))?;
            file.sync_all().map_err(io(format!("syncing {}", path.display())))?;
        }
        Ok(Journal {
            dir: dir.to_path_buf(),
            path,
            file,
            size: at,
            dirty: false,
            state: read.state,
        })
    }

    /// The next sequence number.
    pub(crate) fn next_seq(&self) -> u64 {
        self.state.last_seq + 1
    }

    /// Appends an entry (and folds it into the state). With `sync`, it is on disk when
    /// this returns.
    pub(crate) fn append(&mut self, entry: Entry, sync: bool) -> Result<()> {
        let frame = framed(&serde_json::to_vec(&entry).expect("journal entries serialize"));
        self.file
            .write_all_at(&frame, self.size)
            .map_err(io(format!("appending to {}", self.path.display())))?;
        self.size += frame.len() as u64;
        self.dirty = true;
        if sync {
            self.sync()?;
        }
        self.state.apply(&entry);
        if self.size > COMPACT_AT {
            self.compact()?;
        }
        Ok(())
    }

    /// Flushes the journal to disk.
    pub(crate) fn sync(&mut self) -> Result<()> {
        if self.dirty {
            self.file.sync_data().map_err(io(format!("syncing {}", self.path.display())))?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Writes the state as a snapshot (atomically: temp file, fsync, rename) and empties
    /// the journal.
    fn compact(&mut self) -> Result<()> {
        let tmp = self.dir.join("snapshot.json.tmp");
        let fin = self.dir.join("snapshot.json");
        let mut f = File::create(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
        f.write_all(&serde_json::to_vec(&self.state).expect("state serializes"))
            .map_err(io(format!("writing {}", tmp.display())))?;
        f.sync_all().map_err(io(format!("syncing {}", tmp.display())))?;
        std::fs::rename(&tmp, &fin).map_err(io(format!("renaming {}", tmp.display())))?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        self.file.set_len(0).map_err(io(format!("truncating {}", self.path.display())))?;
        self.file.sync_all().map_err(io(format!("syncing {}", self.path.display())))?;
        self.size = 0;
        Ok(())
    }
}
