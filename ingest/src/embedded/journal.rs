//! The journal of the embedded log: one append-only file that orders every commit — a
//! transaction's commit marker with its consumer offsets, a plain offset commit, a
//! transactional producer's new epoch — plus a snapshot that lets it be truncated.
//!
//! A transaction's records carry its sequence number; they count as committed if and only
//! if the journal holds that sequence. Recovery cuts records of higher sequences from the
//! partitions' tails, so a crash mid-commit leaves no trace.

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
    /// cutting a torn last entry.
    pub(crate) fn open(dir: &Path) -> Result<Journal> {
        let snap_path = dir.join("snapshot.json");
        let mut state: State = match std::fs::read(&snap_path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| LogError::Corrupt(format!("{}: {e}", snap_path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(io(format!("reading {}", snap_path.display()))(e)),
        };
        let path = dir.join("journal.log");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(format!("opening {}", path.display())))?;
        let bytes = std::fs::read(&path).map_err(io(format!("reading {}", path.display())))?;
        let mut at = 0usize;
        while at + 8 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
            let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
            if at + 8 + len > bytes.len() || crc32c::crc32c(&bytes[at + 8..at + 8 + len]) != crc {
                break;
            }
            let Ok(entry) = serde_json::from_slice::<Entry>(&bytes[at + 8..at + 8 + len]) else { break };
            if entry.seq() > state.last_seq {
                state.apply(&entry);
            }
            at += 8 + len;
        }
        if (at as u64) < bytes.len() as u64 {
            tracing::warn!(
                journal = %path.display(),
                cut = bytes.len() - at,
                "cutting a torn journal entry left by a crash"
            );
            file.set_len(at as u64).map_err(io(format!("truncating {}", path.display())))?;
            file.sync_all().map_err(io(format!("syncing {}", path.display())))?;
        }
        Ok(Journal {
            dir: dir.to_path_buf(),
            path,
            file,
            size: at as u64,
            dirty: false,
            state,
        })
    }

    /// The next sequence number.
    pub(crate) fn next_seq(&self) -> u64 {
        self.state.last_seq + 1
    }

    /// Appends an entry (and folds it into the state). With `sync`, it is on disk when
    /// this returns.
    pub(crate) fn append(&mut self, entry: Entry, sync: bool) -> Result<()> {
        let body = serde_json::to_vec(&entry).expect("journal entries serialize");
        let mut frame = Vec::with_capacity(body.len() + 8);
        frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        frame.extend_from_slice(&body);
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
