//! Checking and repairing the embedded log offline: `storeflow log check` and
//! `storeflow log repair`.
//!
//! [`check`] reads the journal and every partition's segments of a data directory and
//! changes nothing. [`repair`] is the only code that cuts a corrupt partition, and only at
//! the offset an operator chose: it takes the directory's lock (the log must be stopped),
//! records the cut in the journal (consumer offsets and transaction ends past it move back
//! to it), deletes the segments after the cut and truncates the one it falls in.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::dir::{TopicMeta, io, lock_dir};
use super::journal::{Entry, Journal, Replayed, tp_key};
use super::partition::{Corruption, Loaded, count_intact, walk};
use crate::types::TopicPartition;
use crate::{LogError, Result};

/// One partition as [`check`] found it.
#[derive(Clone, Debug)]
pub struct PartitionCheck {
    /// The partition.
    pub partition: TopicPartition,
    /// Segment files.
    pub segments: usize,
    /// Bytes of its segment files.
    pub bytes: u64,
    /// First offset held.
    pub start: u64,
    /// Offset after the last readable record.
    pub end: u64,
    /// Bytes of a torn tail the next open cuts (a crash's leftover; harmless).
    pub torn_bytes: u64,
    /// Records of never-committed transactions the next open cuts.
    pub uncommitted: u64,
    /// Damage that is not a torn tail: left in place, reads past it and appends refused.
    pub corruption: Option<Corruption>,
    /// Intact records on disk past the corruption (not served until repaired or restored).
    pub records_after_corruption: u64,
}

impl PartitionCheck {
    /// Readable records.
    pub fn records(&self) -> u64 {
        self.end - self.start
    }
}

/// What [`check`] found in a data directory.
#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    /// The data directory.
    pub dir: PathBuf,
    /// Every partition of every topic, in topic order.
    pub partitions: Vec<PartitionCheck>,
    /// Bytes of the journal file.
    pub journal_bytes: u64,
    /// Bytes of a torn journal entry the next open cuts.
    pub journal_torn_bytes: u64,
    /// A damaged journal entry with intact entries after it (opening refuses): what to do.
    pub journal_corruption: Option<String>,
}

impl CheckReport {
    /// True when anything is corrupt (not merely torn).
    pub fn is_corrupt(&self) -> bool {
        self.journal_corruption.is_some() || self.partitions.iter().any(|p| p.corruption.is_some())
    }
}

/// Scans the journal and every partition in the data directory `dir`, changing nothing.
/// Safe while storeflow runs, though the tail of an active segment may then be mid-write.
pub fn check(dir: &Path) -> Result<CheckReport> {
    let topics_dir = require_log(dir)?;
    let journal = Replayed::read(dir)?;
    let mut report = CheckReport {
        dir: dir.to_path_buf(),
        journal_bytes: journal.len,
        ..CheckReport::default()
    };
    match journal.resumes_at {
        Some(resume) => report.journal_corruption = Some(journal.corruption_message(resume)),
        None => report.journal_torn_bytes = journal.len - journal.intact,
    }
    for (name, meta) in topics(&topics_dir)? {
        for p in 0..meta.partitions {
            let tp = TopicPartition::new(&name, p);
            let loaded = Loaded::load(&tp, &topics_dir.join(&name).join(p.to_string()), journal.state.last_seq, false)?;
            let mut bytes = 0;
            for s in &loaded.segments {
                bytes += len_of(&s.file, &s.path)?;
            }
            let records_after_corruption = match &loaded.corruption {
                Some(c) => intact_after(&loaded, c)?,
                None => 0,
            };
            report.partitions.push(PartitionCheck {
                partition: tp,
                segments: loaded.segments.len(),
                bytes,
                start: loaded.segments.first().map_or(0, |s| s.base),
                end: loaded.end,
                torn_bytes: if loaded.corruption.is_some() { 0 } else { loaded.torn_bytes },
                uncommitted: if loaded.corruption.is_some() { 0 } else { loaded.uncommitted },
                corruption: loaded.corruption,
                records_after_corruption,
            });
        }
    }
    Ok(report)
}

/// What [`repair`] drops (or, from [`plan_repair`], would drop).
#[derive(Clone, Debug)]
pub struct RepairPlan {
    /// The partition.
    pub partition: TopicPartition,
    /// Its new end: the first offset dropped.
    pub truncate_at: u64,
    /// The damage being cut away.
    pub corruption: Corruption,
    /// Records served today (before the damage) that the cut drops: `truncate_at..end`.
    pub readable_records: u64,
    /// Offset after the last readable record before the cut.
    pub end: u64,
    /// Intact records on disk past the damage that go with it.
    pub records_after_corruption: u64,
    /// Bytes removed from disk.
    pub bytes: u64,
    /// The segment file that is truncated, and the byte position it is truncated at.
    pub truncated: (PathBuf, u64),
    /// Segment files after it, deleted.
    pub deleted: Vec<PathBuf>,
}

/// Works out what truncating `partition` at offset `truncate_at` would drop, changing
/// nothing. Refused unless the partition is corrupt and the offset lies between its first
/// offset and its readable end (the corruption point, at the latest).
pub fn plan_repair(dir: &Path, partition: &TopicPartition, truncate_at: u64) -> Result<RepairPlan> {
    let last_seq = Replayed::read(dir)?.state.last_seq;
    Ok(plan(dir, partition, truncate_at, last_seq, false)?.0)
}

/// Truncates the corrupt `partition` at offset `truncate_at`, as [`plan_repair`] describes,
/// and returns the plan it carried out. Needs the log stopped (it takes the directory's
/// lock). Afterwards the partition serves offsets below `truncate_at` and takes appends
/// from there on; consumer groups that had committed past the cut resume at it.
pub fn repair(dir: &Path, partition: &TopicPartition, truncate_at: u64) -> Result<RepairPlan> {
    require_log(dir)?;
    let _lock = lock_dir(dir)?;
    let mut journal = Journal::open(dir)?;
    let (plan, loaded) = plan(dir, partition, truncate_at, journal.state.last_seq, true)?;

    // The journal first: if the cut below is interrupted, running repair again finds the
    // same damage, and no consumer offset points past the new end.
    let key = tp_key(&partition.topic, partition.partition);
    let ends: Vec<(String, u32, u64)> = journal
        .state
        .txn_ends
        .get(&key)
        .filter(|&&e| e > truncate_at)
        .map(|_| vec![(partition.topic.to_string(), partition.partition, truncate_at)])
        .unwrap_or_default();
    let mut offsets: Vec<(String, String, u32, u64)> = journal
        .state
        .offsets
        .iter()
        .filter(|(_, m)| m.get(&key).is_some_and(|&o| o > truncate_at))
        .map(|(g, _)| (g.clone(), partition.topic.to_string(), partition.partition, truncate_at))
        .collect();
    offsets.sort();
    if !ends.is_empty() || !offsets.is_empty() {
        let seq = journal.next_seq();
        journal.append(Entry::Commit { seq, tid: None, epoch: 0, ends, offsets }, true)?;
    }

    // Later segments from the newest back, so an interrupted repair leaves a prefix.
    let (cut_path, cut_pos) = &plan.truncated;
    for seg in loaded.segments.iter().rev() {
        if seg.path == *cut_path {
            seg.file.set_len(*cut_pos).map_err(io(format!("truncating {}", seg.path.display())))?;
            seg.file.sync_all().map_err(io(format!("syncing {}", seg.path.display())))?;
            break;
        }
        std::fs::remove_file(&seg.path).map_err(io(format!("deleting {}", seg.path.display())))?;
    }
    if let Some(parent) = cut_path.parent()
        && let Ok(d) = File::open(parent)
    {
        let _ = d.sync_all();
    }
    tracing::info!(
        partition = %partition, truncate_at, bytes = plan.bytes,
        "repaired a corrupt partition by truncating it"
    );
    Ok(plan)
}

fn plan(dir: &Path, tp: &TopicPartition, at: u64, last_seq: u64, writable: bool) -> Result<(RepairPlan, Loaded)> {
    let topics_dir = require_log(dir)?;
    let meta = topics(&topics_dir)?
        .into_iter()
        .find(|(name, _)| **name == *tp.topic)
        .map(|(_, m)| m)
        .ok_or_else(|| LogError::UnknownTopic(tp.topic.to_string()))?;
    if tp.partition >= meta.partitions {
        return Err(LogError::UnknownPartition(tp.to_string()));
    }
    let loaded = Loaded::load(tp, &topics_dir.join(&*tp.topic).join(tp.partition.to_string()), last_seq, writable)?;
    let start = loaded.segments.first().map_or(0, |s| s.base);
    let Some(c) = loaded.corruption.clone() else {
        return Err(LogError::InvalidConfig(format!(
            "{tp} is not corrupt (offsets {start}..{} read back whole): there is nothing to repair",
            loaded.end
        )));
    };
    // At the latest the readable end: a never-committed transaction just before the damage
    // (which opening would have cut) must not survive the cut.
    if at < start || at > loaded.end {
        return Err(LogError::InvalidConfig(format!(
            "{tp} can be truncated at offsets {start} to {} (the corruption is at offset {}: records from there on \
             cannot be read), not at {at}",
            loaded.end, c.offset
        )));
    }
    let damaged = loaded
        .segments
        .iter()
        .position(|s| s.path == c.segment)
        .expect("the corruption is in one of the partition's segments");
    let (k, pos) = if at == c.offset {
        (damaged, c.position)
    } else {
        let k = loaded.segments[..=damaged]
            .iter()
            .rposition(|s| s.base <= at)
            .expect("the first segment starts at or before the cut");
        let seg = &loaded.segments[k];
        let mut found = None;
        walk(seg, 0, seg.base, u64::MAX, |fpos, f| {
            if f.offset == at {
                found.get_or_insert(fpos);
            }
        })?;
        let pos = match found {
            Some(p) => p,
            // The readable end of a segment that is whole up to its last byte.
            None if at == loaded.end => seg.size.load(std::sync::atomic::Ordering::Relaxed),
            None => {
                return Err(LogError::Corrupt(format!(
                    "{}: offset {at} is not in this segment though it should be",
                    seg.path.display()
                )));
            }
        };
        (k, pos)
    };
    let mut bytes = len_of(&loaded.segments[k].file, &loaded.segments[k].path)? - pos;
    for s in &loaded.segments[k + 1..] {
        bytes += len_of(&s.file, &s.path)?;
    }
    let plan = RepairPlan {
        partition: tp.clone(),
        truncate_at: at,
        readable_records: loaded.end - at,
        end: loaded.end,
        records_after_corruption: intact_after(&loaded, &c)?,
        bytes,
        truncated: (loaded.segments[k].path.clone(), pos),
        deleted: loaded.segments[k + 1..].iter().map(|s| s.path.clone()).collect(),
        corruption: c,
    };
    Ok((plan, loaded))
}

/// Intact records on disk past the corruption: from where frames resume, then every later
/// segment.
fn intact_after(loaded: &Loaded, c: &Corruption) -> Result<u64> {
    let Some((path, pos, offset)) = &c.resumes_at else { return Ok(0) };
    let Some(i) = loaded.segments.iter().position(|s| s.path == *path) else { return Ok(0) };
    let (mut n, _) = count_intact(&loaded.segments[i], *pos, *offset)?;
    for s in &loaded.segments[i + 1..] {
        n += count_intact(s, 0, s.base)?.0;
    }
    Ok(n)
}

/// The `topics` directory of the data directory `dir`, which must hold a log.
fn require_log(dir: &Path) -> Result<PathBuf> {
    let topics_dir = dir.join("topics");
    if !topics_dir.is_dir() {
        return Err(LogError::InvalidConfig(format!(
            "{} holds no embedded log (no topics/ directory); pass the data directory with --data-dir",
            dir.display()
        )));
    }
    Ok(topics_dir)
}

/// The topics under `topics_dir` with their metadata, by name.
fn topics(topics_dir: &Path) -> Result<Vec<(String, TopicMeta)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(topics_dir)
        .map_err(io(format!("listing {}", topics_dir.display())))?
        .filter_map(|e| e.ok())
    {
        let meta_path = e.path().join("topic.json");
        if !meta_path.is_file() {
            continue;
        }
        let meta: TopicMeta = serde_json::from_slice(
            &std::fs::read(&meta_path).map_err(io(format!("reading {}", meta_path.display())))?,
        )
        .map_err(|e| LogError::Corrupt(format!("{}: {e}", meta_path.display())))?;
        out.push((e.file_name().to_string_lossy().into_owned(), meta));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn len_of(file: &File, path: &Path) -> Result<u64> {
    Ok(file.metadata().map_err(io(format!("stat {}", path.display())))?.len())
}
