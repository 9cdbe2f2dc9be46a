//! One topic-partition of the embedded log: a directory of append-only segment files
//! (`<base offset>.log`), an in-memory sparse index per segment, one writer at a time and
//! any number of concurrent readers.
//!
//! Readers see records up to `visible_end` only. A plain append publishes its records once
//! they are written; a transaction writes its records first and publishes them only after
//! its commit entry is in the journal, so a read_committed reader never sees an aborted or
//! in-flight transaction.
//!
//! Recovery tells two kinds of damage apart. A *torn tail* — bad bytes that run to the end of
//! the active segment with no intact frame after them — is what a crash leaves, and is cut.
//! *Corruption* — a bad frame with intact frames after it, a whole last frame that fails its
//! checksum, or any bad bytes in a sealed segment — is never cut: the partition opens, serves
//! records before the damage, refuses reads at and past it and refuses appends, until an
//! operator runs `storeflow log repair` (`repair.rs`).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard, RwLock};

use super::frame::{self, FrameView, Parsed};
use crate::types::{Header, Record, TopicPartition};
use crate::{LogError, Result};

/// One sparse index entry every this many bytes.
const INDEX_INTERVAL: u64 = 4096;
/// Bytes read per `pread` when fetching records.
const READ_CHUNK: usize = 256 * 1024;

/// A segment file.
pub(crate) struct Segment {
    pub base: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    /// (offset, byte position) of some frames, ascending.
    index: RwLock<Vec<(u64, u64)>>,
    /// Bytes of complete frames.
    pub(crate) size: AtomicU64,
    /// Largest record timestamp (for time retention).
    max_ts: AtomicI64,
}

impl Segment {
    fn position_for(&self, offset: u64) -> u64 {
        let idx = self.index.read();
        match idx.binary_search_by_key(&offset, |&(o, _)| o) {
            Ok(i) => idx[i].1,
            Err(0) => 0,
            Err(i) => idx[i - 1].1,
        }
    }
}

fn seg_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> LogError {
    let context = context.into();
    move |source| LogError::Io { context, source }
}

pub(crate) struct Writer {
    active: Arc<Segment>,
    /// Next offset to assign.
    pub next_offset: u64,
    last_index_pos: u64,
    buf: Vec<u8>,
    /// Bytes written since the last fsync.
    pub dirty: bool,
}

/// One topic-partition.
pub(crate) struct Partition {
    pub tp: TopicPartition,
    dir: PathBuf,
    segments: RwLock<Vec<Arc<Segment>>>,
    writer: Mutex<Writer>,
    /// Readers see offsets below this.
    visible_end: AtomicU64,
    /// First offset still held.
    start: AtomicU64,
    /// Damage found on open: reads at and past it and appends are refused.
    corruption: Option<Corruption>,
}

/// Damage that is not a torn tail: a bad frame with intact frames after it, a whole frame
/// that fails its checksum (a write cut short never leaves one), or bad bytes in a sealed
/// segment. Recovery leaves it on disk; the partition serves records before it and refuses
/// reads at and past it, and appends, until it is repaired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corruption {
    /// The partition.
    pub partition: TopicPartition,
    /// The segment file holding the bad frame.
    pub segment: PathBuf,
    /// Byte position of the bad frame in `segment`.
    pub position: u64,
    /// Offset the bad frame should hold: the first record that cannot be read.
    pub offset: u64,
    /// What is wrong with the frame.
    pub reason: String,
    /// Where intact frames resume: segment, byte position and offset of the first one
    /// (none when the damaged frame is the last one).
    pub resumes_at: Option<(PathBuf, u64, u64)>,
}

impl Corruption {
    /// The data directory the segment belongs to (`<data>/topics/<topic>/<p>/<segment>`).
    fn data_dir(&self) -> PathBuf {
        self.segment
            .ancestors()
            .nth(4)
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// What an operator runs to look and to choose.
    pub fn remedy(&self) -> String {
        let d = self.data_dir().display().to_string();
        format!(
            "run `storeflow log check --data-dir {d}`, then keep the records before it with \
             `storeflow log repair --data-dir {d} --partition {} --truncate-at {}` (or restore the segment from a backup)",
            self.partition, self.offset
        )
    }

    /// The error a read at or past the damage, or an append, gets.
    pub(crate) fn error(&self, what: &str) -> LogError {
        LogError::Corrupt(format!("{what} {}: {self}; {}", self.partition, self.remedy()))
    }
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} at byte {} (offset {}), ", self.segment.display(), self.reason, self.position, self.offset)?;
        match &self.resumes_at {
            Some((seg, pos, off)) if *seg == self.segment => {
                write!(f, "with intact records after it (from offset {off} at byte {pos})")?
            }
            Some((seg, pos, off)) => {
                write!(f, "with intact records after it (from offset {off} at byte {pos} of {})", seg.display())?
            }
            None => write!(f, "in a whole frame (a write cut short leaves a partial one, so this is damage)")?,
        }
        write!(f, "; nothing was cut")
    }
}

/// What recovery found in one partition.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    /// Bytes cut from a torn tail.
    pub torn_bytes: u64,
    /// Records cut because their transaction never committed.
    pub uncommitted: u64,
    /// Damage left in place for an operator.
    pub corruption: Option<Corruption>,
}

/// A partition's segments as scanned, before recovery changes anything.
pub(crate) struct Loaded {
    pub segments: Vec<Arc<Segment>>,
    /// Offset after the last readable record.
    pub end: u64,
    /// Bytes of a torn tail of the active segment (what opening cuts).
    pub torn_bytes: u64,
    /// Records of never-committed transactions at the tail (what opening cuts).
    pub uncommitted: u64,
    pub corruption: Option<Corruption>,
}

impl Loaded {
    /// Opens and scans the segments in `dir` without changing them. `writable` opens the
    /// files for appending (and creates the first segment of an empty partition).
    pub(crate) fn load(tp: &TopicPartition, dir: &Path, last_committed_txn: u64, writable: bool) -> Result<Loaded> {
        let mut bases: Vec<u64> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_suffix(".log")?.parse::<u64>().ok()
                })
                .collect(),
            Err(e) if !writable && e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(format!("listing {}", dir.display()))(e)),
        };
        bases.sort_unstable();
        if bases.is_empty() && writable {
            bases.push(0);
        }
        let mut loaded = Loaded {
            segments: Vec::with_capacity(bases.len()),
            end: bases.first().copied().unwrap_or(0),
            torn_bytes: 0,
            uncommitted: 0,
            corruption: None,
        };
        let last = bases.len().saturating_sub(1);
        for (i, base) in bases.iter().copied().enumerate() {
            let path = seg_path(dir, base);
            let file = OpenOptions::new()
                .read(true)
                .write(writable)
                .create(writable)
                .truncate(false)
                .open(&path)
                .map_err(io(format!("opening {}", path.display())))?;
            let seg = Segment {
                base,
                path: path.clone(),
                file,
                index: RwLock::new(Vec::new()),
                size: AtomicU64::new(0),
                max_ts: AtomicI64::new(i64::MIN),
            };
            if loaded.corruption.is_some() {
                // Past the damage: kept as it is for the operator, never read.
                loaded.segments.push(Arc::new(seg));
                continue;
            }
            if base != loaded.end && i > 0 {
                return Err(LogError::Corrupt(format!(
                    "{}: segment starts at offset {base} but the previous one ends at {}",
                    path.display(),
                    loaded.end
                )));
            }
            let cut_txn = if i == last { last_committed_txn } else { u64::MAX };
            let w = scan(&seg, base, cut_txn)?;
            if w.stop_pos < w.len {
                // Intact frames after the bad bytes make it corruption, not a torn tail; so
                // does any later segment (a sealed segment was complete when it was sealed).
                let resumes_at = match resync(&seg, w.stop_pos, w.len, w.next)? {
                    Some((pos, off)) => Some((path.clone(), pos, off)),
                    None if i != last => Some((seg_path(dir, bases[i + 1]), 0, bases[i + 1])),
                    None => None,
                };
                if resumes_at.is_some() || whole_but_bad(&seg, w.stop_pos, w.len, w.next)? {
                    loaded.corruption = Some(Corruption {
                        partition: tp.clone(),
                        segment: path.clone(),
                        position: w.stop_pos,
                        offset: w.next,
                        reason: w.reason.to_string(),
                        resumes_at,
                    });
                } else {
                    loaded.torn_bytes += w.len - w.stop_pos;
                }
            }
            loaded.uncommitted += w.uncommitted;
            loaded.end = w.end();
            loaded.segments.push(Arc::new(seg));
        }
        Ok(loaded)
    }
}

impl Partition {
    /// Opens (creating if needed) the partition in `dir`, cutting a torn tail and any
    /// records of transactions with a sequence above `last_committed_txn` — unless it finds
    /// corruption, which it leaves in place (see [`Corruption`]).
    pub(crate) fn open(tp: TopicPartition, dir: PathBuf, last_committed_txn: u64) -> Result<(Partition, Recovered)> {
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let loaded = Loaded::load(&tp, &dir, last_committed_txn, true)?;
        let segments = loaded.segments;
        let mut recovered = Recovered::default();
        let active = segments.last().expect("at least one segment").clone();
        match loaded.corruption {
            Some(c) => recovered.corruption = Some(c),
            None => {
                let file_len = active.file.metadata().map_err(io(format!("stat {}", active.path.display())))?.len();
                let good = active.size.load(Ordering::Relaxed);
                if file_len > good {
                    active
                        .file
                        .set_len(good)
                        .map_err(io(format!("truncating {}", active.path.display())))?;
                    active.file.sync_all().map_err(io(format!("syncing {}", active.path.display())))?;
                }
                recovered.torn_bytes = loaded.torn_bytes;
                recovered.uncommitted = loaded.uncommitted;
            }
        }
        let start = segments[0].base;
        let last_index_pos = active.index.read().last().map(|&(_, p)| p).unwrap_or(0);
        let p = Partition {
            tp,
            dir,
            writer: Mutex::new(Writer {
                active,
                next_offset: loaded.end,
                last_index_pos,
                buf: Vec::with_capacity(64 * 1024),
                dirty: false,
            }),
            segments: RwLock::new(segments),
            visible_end: AtomicU64::new(loaded.end),
            start: AtomicU64::new(start),
            corruption: recovered.corruption.clone(),
        };
        Ok((p, recovered))
    }

    /// Fails if appends are refused (the partition is corrupt).
    pub(crate) fn check_writable(&self) -> Result<()> {
        match &self.corruption {
            Some(c) => Err(c.error("refusing to append to")),
            None => Ok(()),
        }
    }

    /// First offset held.
    pub(crate) fn start(&self) -> u64 {
        self.start.load(Ordering::Acquire)
    }

    /// Offset after the last visible record.
    pub(crate) fn end(&self) -> u64 {
        self.visible_end.load(Ordering::Acquire)
    }

    /// Locks the writer (one appender at a time).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock()
    }

    /// Writes records under the locked writer without publishing them. Returns the first
    /// offset. `roll_at` is the segment size that starts a new segment.
    pub(crate) fn write(
        &self,
        w: &mut Writer,
        records: &[(Option<&[u8]>, Option<&[u8]>, &[Header], i64)],
        txn: u64,
        roll_at: u64,
    ) -> Result<u64> {
        self.check_writable()?;
        let first = w.next_offset;
        w.buf.clear();
        let mut positions = Vec::new();
        let mut size = w.active.size.load(Ordering::Relaxed);
        if size > 0 && size >= roll_at {
            self.roll(w)?;
            size = 0;
        }
        let mut max_ts = i64::MIN;
        // The index's last position moves only once the frames are on disk: a write refused
        // half-way (a full disk) is written again from `size`, which is then behind it.
        let mut last_index_pos = w.last_index_pos;
        for (i, (key, value, headers, ts)) in records.iter().enumerate() {
            let at = size + w.buf.len() as u64;
            if at == 0 || at.saturating_sub(last_index_pos) >= INDEX_INTERVAL {
                positions.push((first + i as u64, at));
                last_index_pos = at;
            }
            frame::encode(&mut w.buf, first + i as u64, *ts, txn, *key, *value, headers);
            max_ts = max_ts.max(*ts);
        }
        if let Err(e) = w.active.file.write_all_at(&w.buf, size) {
            // A write that failed half-way (a full disk) leaves the bytes it got out past the
            // segment's end: cut them, so that nothing but whole acknowledged frames is ever
            // in the file (the next append starts at `size` again either way) and the space
            // they took is free.
            let _ = w.active.file.set_len(size);
            return Err(io(format!("appending to {}", w.active.path.display()))(e));
        }
        w.last_index_pos = last_index_pos;
        w.active.size.store(size + w.buf.len() as u64, Ordering::Release);
        w.active.max_ts.fetch_max(max_ts, Ordering::Relaxed);
        if !positions.is_empty() {
            w.active.index.write().extend(positions);
        }
        w.next_offset += records.len() as u64;
        w.dirty = true;
        Ok(first)
    }

    /// Makes everything written so far visible to readers.
    pub(crate) fn publish(&self, w: &Writer) {
        self.visible_end.store(w.next_offset, Ordering::Release);
    }

    /// Flushes the active segment to disk.
    pub(crate) fn sync(&self, w: &mut Writer) -> Result<()> {
        if w.dirty {
            w.active
                .file
                .sync_data()
                .map_err(io(format!("syncing {}", w.active.path.display())))?;
            w.dirty = false;
        }
        Ok(())
    }

    /// Flushes the active segment like [`Partition::sync`], but runs the `fsync` after
    /// releasing the writer lock: appends to the partition go on while the disk catches up
    /// (the background flush would otherwise stall every producer of the partition for the
    /// length of an fsync, every interval). What is appended meanwhile may or may not be in
    /// this flush; it is marked dirty for the next one either way.
    pub(crate) fn sync_detached(&self) -> Result<()> {
        let seg = {
            let mut w = self.lock();
            if !w.dirty {
                return Ok(());
            }
            w.dirty = false;
            w.active.clone()
        };
        seg.file.sync_data().map_err(|e| {
            // Not known to be on disk: the next flush tries again.
            self.lock().dirty = true;
            io(format!("syncing {}", seg.path.display()))(e)
        })
    }

    fn roll(&self, w: &mut Writer) -> Result<()> {
        self.sync(w)?;
        let base = w.next_offset;
        let path = seg_path(&self.dir, base);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io(format!("creating {}", path.display())))?;
        let seg = Arc::new(Segment {
            base,
            path,
            file,
            index: RwLock::new(Vec::new()),
            size: AtomicU64::new(0),
            max_ts: AtomicI64::new(i64::MIN),
        });
        // Make the new file's name durable before records in it are acknowledged.
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        self.segments.write().push(seg.clone());
        w.active = seg;
        w.last_index_pos = 0;
        Ok(())
    }

    /// Deletes whole sealed segments that are older than `older_than_ms` (by their newest
    /// record) or that push the partition over `max_bytes`. Returns records dropped.
    pub(crate) fn apply_retention(&self, older_than_ms: Option<i64>, max_bytes: Option<u64>) -> u64 {
        if self.corruption.is_some() {
            // Nothing is deleted before an operator has chosen what to keep.
            return 0;
        }
        let mut segs = self.segments.write();
        let mut total: u64 = segs.iter().map(|s| s.size.load(Ordering::Relaxed)).sum();
        let mut dropped = 0;
        while segs.len() > 1 {
            let s = &segs[0];
            let too_old = older_than_ms.is_some_and(|t| s.max_ts.load(Ordering::Relaxed) < t);
            let too_big = max_bytes.is_some_and(|m| total > m);
            if !(too_old || too_big) {
                break;
            }
            let s = segs.remove(0);
            total -= s.size.load(Ordering::Relaxed);
            dropped += segs[0].base - s.base;
            self.start.store(segs[0].base, Ordering::Release);
            // Readers holding the Arc keep reading the unlinked file until they drop it.
            let _ = std::fs::remove_file(&s.path);
        }
        dropped
    }

    /// Reads visible records from `offset`: up to `max` records or about `max_bytes`.
    pub(crate) fn read(&self, offset: u64, max: usize, max_bytes: usize) -> Result<Vec<Record>> {
        let end = self.end();
        let mut out = Vec::new();
        if let Some(c) = &self.corruption
            && offset >= end
        {
            return Err(c.error(&format!("cannot read offset {offset} of")));
        }
        if offset >= end || max == 0 {
            return Ok(out);
        }
        let segs: Vec<Arc<Segment>> = self.segments.read().clone();
        let Some(first) = segs.iter().rposition(|s| s.base <= offset) else {
            return Ok(out);
        };
        let mut bytes_read = 0usize;
        for (i, seg) in segs.iter().enumerate().skip(first) {
            let mut pos = if i == first { seg.position_for(offset) } else { 0 };
            let seg_size = seg.size.load(Ordering::Acquire);
            let mut want = READ_CHUNK;
            while pos < seg_size {
                let mut buf = vec![0u8; want.min((seg_size - pos) as usize)];
                let n = read_at_most(&seg.file, &mut buf, pos)
                    .map_err(io(format!("reading {}", seg.path.display())))?;
                buf.truncate(n);
                let chunk = Bytes::from(buf);
                let mut at = 0usize;
                loop {
                    match frame::parse(&chunk[at..]) {
                        Parsed::Frame(f) => {
                            if f.offset >= end {
                                return Ok(out);
                            }
                            if f.offset >= offset {
                                let (key, value) = f.key_value(&chunk, at);
                                out.push(Record {
                                    topic: self.tp.topic.clone(),
                                    partition: self.tp.partition,
                                    offset: f.offset,
                                    timestamp: f.timestamp,
                                    key,
                                    value,
                                    headers: f.headers(&chunk[at..at + f.len]),
                                });
                                bytes_read += f.len;
                                if out.len() >= max || bytes_read >= max_bytes {
                                    return Ok(out);
                                }
                            }
                            at += f.len;
                        }
                        Parsed::Incomplete { need } => {
                            // At the start of a chunk: the frame is bigger than the chunk.
                            want = if at == 0 { need } else { READ_CHUNK };
                            break;
                        }
                        Parsed::Corrupt(why) => {
                            return Err(LogError::Corrupt(format!(
                                "{}: {why} at position {}",
                                seg.path.display(),
                                pos + at as u64
                            )));
                        }
                    }
                }
                if at == 0 && pos + want as u64 > seg_size {
                    return Err(LogError::Corrupt(format!(
                        "{}: frame at position {pos} runs past the end of the segment",
                        seg.path.display()
                    )));
                }
                pos += at as u64;
            }
        }
        Ok(out)
    }
}

fn read_at_most(file: &File, buf: &mut [u8], pos: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], pos + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Where a walk over a segment's frames stopped.
pub(crate) struct Walked {
    /// Position after the last intact, in-sequence frame.
    pub stop_pos: u64,
    /// Offset expected at `stop_pos`.
    pub next: u64,
    /// File length when the walk began.
    pub len: u64,
    /// Why the walk stopped before `len` (meaningless when it did not).
    pub reason: &'static str,
    /// (position, offset) of the first frame of a transaction above `cut_txn`.
    pub cut: Option<(u64, u64)>,
    /// Frames from `cut` on.
    pub uncommitted: u64,
}

impl Walked {
    /// Offset after the last readable record.
    pub(crate) fn end(&self) -> u64 {
        self.cut.map_or(self.next, |(_, o)| o)
    }
}

/// Walks the frames of `seg` from byte `from`, expecting offset `next` there, calling `each`
/// with every intact frame's position before the first uncommitted one. Stops at the first
/// torn or corrupt frame or at an offset out of sequence.
pub(crate) fn walk(
    seg: &Segment,
    from: u64,
    mut next: u64,
    cut_txn: u64,
    mut each: impl FnMut(u64, &FrameView),
) -> Result<Walked> {
    let len = seg.file.metadata().map_err(io(format!("stat {}", seg.path.display())))?.len();
    let mut pos = from;
    let mut buf = vec![0u8; READ_CHUNK];
    let mut cut: Option<(u64, u64)> = None;
    let mut uncommitted = 0u64;
    let mut reason = "";
    'outer: while pos < len {
        let n = read_at_most(&seg.file, &mut buf, pos).map_err(io(format!("reading {}", seg.path.display())))?;
        if n == 0 {
            reason = "file ended early";
            break;
        }
        let mut at = 0usize;
        loop {
            match frame::parse(&buf[at..n]) {
                Parsed::Frame(f) => {
                    if f.offset != next {
                        reason = "offset out of sequence";
                        pos += at as u64;
                        break 'outer;
                    }
                    let fpos = pos + at as u64;
                    if f.txn > cut_txn {
                        cut.get_or_insert((fpos, f.offset));
                        uncommitted += 1;
                    } else if cut.is_some() {
                        // A committed frame after an uncommitted one cannot happen: the
                        // partition lock is held from a transaction's write to its commit.
                        return Err(LogError::Corrupt(format!(
                            "{}: committed record {} follows an uncommitted transaction",
                            seg.path.display(),
                            f.offset
                        )));
                    }
                    if cut.is_none() {
                        each(fpos, &f);
                    }
                    next += 1;
                    at += f.len;
                }
                Parsed::Incomplete { need } => {
                    if at == 0 {
                        if need > buf.len() && pos + need as u64 <= len {
                            buf.resize(need, 0);
                            continue 'outer;
                        }
                        reason = "frame cut short";
                        break 'outer;
                    }
                    break;
                }
                Parsed::Corrupt(why) => {
                    reason = why;
                    pos += at as u64;
                    break 'outer;
                }
            }
        }
        pos += at as u64;
    }
    Ok(Walked { stop_pos: pos.min(len), next, len, reason, cut, uncommitted })
}

/// Scans a segment from the start, building its index, size and newest timestamp (up to
/// the first uncommitted frame when `cut_txn` is given, or the first bad one).
fn scan(seg: &Segment, base: u64, cut_txn: u64) -> Result<Walked> {
    let mut last_index_pos = 0u64;
    let mut index = Vec::new();
    let mut max_ts = i64::MIN;
    let w = walk(seg, 0, base, cut_txn, |fpos, f| {
        if fpos == 0 || fpos - last_index_pos >= INDEX_INTERVAL {
            index.push((f.offset, fpos));
            last_index_pos = fpos;
        }
        max_ts = max_ts.max(f.timestamp);
    })?;
    seg.size.store(w.cut.map_or(w.stop_pos, |(p, _)| p), Ordering::Release);
    seg.max_ts.store(max_ts, Ordering::Relaxed);
    *seg.index.write() = index;
    Ok(w)
}

/// Looks for the first intact frame at or after byte `from` of `seg` (file length `len`)
/// whose offset is plausible there: at least `next`, and not more past it than frames fit
/// in the bytes between. Returns its (position, offset).
pub(crate) fn resync(seg: &Segment, from: u64, len: u64, next: u64) -> Result<Option<(u64, u64)>> {
    let max_offset = next.saturating_add((len.saturating_sub(from)) / frame::MIN_FRAME as u64);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut pos = from;
    while pos + frame::MIN_FRAME as u64 <= len {
        let n = read_at_most(&seg.file, &mut buf, pos).map_err(io(format!("reading {}", seg.path.display())))?;
        if n < frame::PEEK {
            break;
        }
        for i in 0..=n - frame::PEEK {
            let p = pos + i as u64;
            let Some((flen, off)) = frame::candidate(&buf[i..n], len - p) else { continue };
            if off < next || off > max_offset {
                continue;
            }
            let intact = if i + flen <= n {
                matches!(frame::parse(&buf[i..i + flen]), Parsed::Frame(_))
            } else {
                let mut whole = vec![0u8; flen];
                let got = read_at_most(&seg.file, &mut whole, p).map_err(io(format!("reading {}", seg.path.display())))?;
                got == flen && matches!(frame::parse(&whole), Parsed::Frame(_))
            };
            if intact {
                return Ok(Some((p, off)));
            }
        }
        // The next window starts where a candidate no longer fits in this one.
        pos += (n - frame::PEEK + 1) as u64;
    }
    Ok(None)
}

/// True when the bad frame at byte `at` (the last thing in the file) was written whole:
/// its length fits in the file, or its body up to the end of the file matches its checksum
/// (only the length was damaged). A write cut short leaves neither — its frame runs past the
/// end of the file, or fewer bytes than a prefix are left — so this is damage, not a torn tail.
fn whole_but_bad(seg: &Segment, at: u64, len: u64, next: u64) -> Result<bool> {
    let rest = len - at;
    if rest < frame::PREFIX as u64 {
        return Ok(false);
    }
    let mut prefix = [0u8; frame::PREFIX];
    read_at_most(&seg.file, &mut prefix, at).map_err(io(format!("reading {}", seg.path.display())))?;
    let body_len = u32::from_le_bytes(prefix[..4].try_into().expect("4 bytes")) as u64;
    if (frame::MIN_FRAME as u64..=(frame::PREFIX + frame::MAX_BODY) as u64).contains(&(frame::PREFIX as u64 + body_len))
        && frame::PREFIX as u64 + body_len <= rest
    {
        return Ok(true);
    }
    if !(frame::MIN_FRAME as u64..=(frame::PREFIX + frame::MAX_BODY) as u64).contains(&rest) {
        return Ok(false);
    }
    let mut whole = vec![0u8; rest as usize];
    read_at_most(&seg.file, &mut whole, at).map_err(io(format!("reading {}", seg.path.display())))?;
    whole[..4].copy_from_slice(&((rest as usize - frame::PREFIX) as u32).to_le_bytes());
    Ok(matches!(frame::parse(&whole), Parsed::Frame(f) if f.offset == next))
}

/// Counts intact frames from byte `from` of `seg` (offset `next` expected there), skipping
/// over bad bytes. Returns (frames, offset after the last one).
pub(crate) fn count_intact(seg: &Segment, mut from: u64, mut next: u64) -> Result<(u64, u64)> {
    let mut count = 0;
    loop {
        let w = walk(seg, from, next, u64::MAX, |_, _| {})?;
        count += w.next - next;
        next = w.next;
        if w.stop_pos >= w.len {
            return Ok((count, next));
        }
        match resync(seg, w.stop_pos, w.len, w.next)? {
            Some((p, o)) => (from, next) = (p, o),
            None => return Ok((count, next)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_an_uncommitted_transaction_are_cut_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let tp = TopicPartition::new("t", 0);
        {
            let (p, _) = Partition::open(tp.clone(), dir.path().to_path_buf(), 0).unwrap();
            let mut w = p.lock();
            let h: &[Header] = &[];
            p.write(&mut w, &[(None, Some(b"plain".as_slice()), h, 1)], 0, 1 << 20).unwrap();
            p.write(&mut w, &[(None, Some(b"txn4".as_slice()), h, 2)], 4, 1 << 20).unwrap();
            p.write(&mut w, &[(None, Some(b"txn5".as_slice()), h, 3), (None, Some(b"txn5".as_slice()), h, 3)], 5, 1 << 20).unwrap();
        }
        // The journal's last committed sequence is 4: transaction 5 never committed.
        let (p, rec) = Partition::open(tp, dir.path().to_path_buf(), 4).unwrap();
        assert_eq!(rec.uncommitted, 2);
        assert_eq!(p.end(), 2);
        let recs = p.read(0, 10, 1 << 20).unwrap();
        assert_eq!(recs.iter().map(|r| r.value.clone().unwrap()).collect::<Vec<_>>(), vec!["plain", "txn4"]);
    }

    #[test]
    fn unpublished_records_are_invisible_to_readers() {
        let dir = tempfile::tempdir().unwrap();
        let (p, _) = Partition::open(TopicPartition::new("t", 0), dir.path().to_path_buf(), 0).unwrap();
        let mut w = p.lock();
        let h: &[Header] = &[];
        p.write(&mut w, &[(None, Some(b"x".as_slice()), h, 1)], 1, 1 << 20).unwrap();
        assert!(p.read(0, 10, 1 << 20).unwrap().is_empty());
        p.publish(&w);
        assert_eq!(p.read(0, 10, 1 << 20).unwrap().len(), 1);
    }
}
