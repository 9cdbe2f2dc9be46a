//! The data directory's own files: `LOCK`, held by the one process that owns the log, and
//! each topic's `topic.json` ([`TopicMeta`]).

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{LogError, Result};

/// `topics/<topic>/topic.json`: what a topic is, apart from its records.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct TopicMeta {
    pub(super) partitions: u32,
    pub(super) compact: bool,
    pub(super) retention_hours: Option<u64>,
}

/// Maps an I/O error to [`LogError::Io`] with what the log was doing.
pub(super) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> LogError {
    let context = context.into();
    move |source| LogError::Io { context, source }
}

/// Takes the lock of the data directory `dir` (the one process that owns the log), waiting
/// briefly for a log of this same process that is still closing.
pub(crate) fn lock_dir(dir: &Path) -> Result<File> {
    let lock_path = dir.join("LOCK");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&lock_path)
        .map_err(io(format!("opening {}", lock_path.display())))?;
    // A log of this same process that was just dropped may still be finishing its last
    // background flush: give it a moment before calling the directory busy.
    let own = format!("pid {}", std::process::id());
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match lock.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&lock_path).unwrap_or_default();
                if holder.trim() == own && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                return Err(LogError::Locked {
                    dir: dir.display().to_string(),
                    holder: holder.trim().to_string(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(format!("locking {}", lock_path.display()))(e)),
        }
    }
    let _ = lock.set_len(0);
    let _ = std::os::unix::fs::FileExt::write_all_at(&lock, format!("pid {}\n", std::process::id()).as_bytes(), 0);
    Ok(lock)
}
