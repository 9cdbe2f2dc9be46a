//! Integrity of the embedded log on disk: a torn tail (what a crash leaves) is cut, while
//! corruption (damage with intact records after it, or a whole frame that fails its checksum)
//! is reported with its segment and byte position, served up to the damage, never cut, and
//! repaired only by an explicit `storeflow log repair` ([`embedded::repair`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use storeflow_ingest::embedded;
use storeflow_ingest::*;

/// Opens a log in `dir`, writes `n` records to the one partition of topic `t` (one send
/// each, so each is acknowledged), and closes it. Returns the values.
fn fill(dir: &Path, config: &EmbeddedConfig, n: usize) -> Vec<String> {
    let log = EmbeddedLog::open_with(dir, config.clone()).unwrap();
    log.create_topics(&[TopicSpec::new("t", 1)]).unwrap();
    let p = log.producer().unwrap();
    let values: Vec<String> = (0..n).map(|i| format!("v{i:05}")).collect();
    for (i, v) in values.iter().enumerate() {
        let d = p.send(ProduceRecord::new("t", "k", v.as_str())).unwrap().wait().unwrap();
        assert_eq!(d.offset, i as u64);
    }
    values
}

fn tp() -> TopicPartition {
    TopicPartition::new("t", 0)
}

/// The segment files of t/0, oldest first.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("topics/t/0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

/// (byte position, length) of every frame of a segment, by its length prefixes.
fn frames(seg: &Path) -> Vec<(u64, u64)> {
    let b = std::fs::read(seg).unwrap();
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 8 <= b.len() {
        let len = 8 + u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
        assert!(at + len <= b.len(), "{} is not a sequence of whole frames", seg.display());
        out.push((at as u64, len as u64));
        at += len;
    }
    out
}

fn flip(path: &Path, pos: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[pos as usize] ^= 0x20;
    std::fs::write(path, b).unwrap();
}

/// Reads t/0 from `from` until the log has nothing more or fails: the records, and the error.
fn read_until_error(log: &EmbeddedLog, from: u64) -> (Vec<Record>, Option<LogError>) {
    let mut c = log.consumer(ConsumerConfig::new("reader"), None).unwrap();
    c.assign(&[(tp(), from)]).unwrap();
    let mut out = Vec::new();
    loop {
        match c.poll(1000, Duration::from_millis(20)) {
            Ok(got) if got.is_empty() => return (out, None),
            Ok(got) => out.extend(got),
            Err(e) => return (out, Some(e)),
        }
    }
}

fn values(recs: &[Record]) -> Vec<String> {
    recs.iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

fn disk_bytes(dir: &Path) -> Vec<Vec<u8>> {
    segments(dir).iter().map(|s| std::fs::read(s).unwrap()).collect()
}

#[test]
fn a_flipped_byte_in_an_early_frame_is_reported_with_segment_and_position_and_nothing_after_it_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig::default();
    let written = fill(dir.path(), &config, 200);
    let seg = segments(dir.path()).remove(0);
    let fr = frames(&seg);
    let (pos, len) = fr[10];
    flip(&seg, pos + len - 3); // the last byte of record 10's value (before the header count)
    let damaged = std::fs::read(&seg).unwrap();

    let log = EmbeddedLog::open_with(dir.path(), config.clone()).unwrap();
    let r = log.recovery();
    assert_eq!((r.corrupt_partitions, r.torn_bytes), (1, 0));
    let c = &r.corruptions[0];
    assert_eq!((&c.segment, c.position, c.offset), (&seg, pos, 10));
    assert_eq!(c.resumes_at, Some((seg.clone(), fr[11].0, 11)));

    // Records before the damage are served; reading at it fails, naming segment, byte and remedy.
    let (recs, err) = read_until_error(&log, 0);
    assert_eq!(values(&recs), written[..10]);
    let err = err.expect("reading at the corruption point did not fail");
    let msg = err.to_string();
    assert!(matches!(err, LogError::Corrupt(_)), "{msg}");
    for needle in [seg.display().to_string(), format!("byte {pos}"), "offset 10".into(), "storeflow log repair".into()] {
        assert!(msg.contains(&needle), "`{needle}` missing from: {msg}");
    }
    let (recs, err) = read_until_error(&log, 150);
    assert!(recs.is_empty() && matches!(err, Some(LogError::Corrupt(_))), "read past the damage: {err:?}");
    // No append lands after the hole.
    match log.producer().unwrap().send(ProduceRecord::new("t", "k", "new")) {
        Err(LogError::Corrupt(m)) => assert!(m.contains("refusing to append"), "{m}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("an append to a corrupt partition was accepted"),
    }
    drop(log);
    assert_eq!(std::fs::read(&seg).unwrap(), damaged, "recovery changed the damaged segment");

    let report = embedded::check(dir.path()).unwrap();
    assert!(report.is_corrupt());
    let pc = &report.partitions[0];
    assert_eq!((pc.end, pc.records(), pc.records_after_corruption), (10, 10, 189));

    // The operator's choice: keep what precedes the damage.
    let err = embedded::plan_repair(dir.path(), &tp(), 11).err().expect("a cut past the corruption was planned");
    assert!(err.to_string().contains("0 to 10"), "{err}");
    let plan = embedded::repair(dir.path(), &tp(), 10).unwrap();
    assert_eq!((plan.readable_records, plan.records_after_corruption), (0, 189));
    assert_eq!(plan.bytes, damaged.len() as u64 - pos);

    let log = EmbeddedLog::open_with(dir.path(), config).unwrap();
    assert_eq!(log.recovery().corrupt_partitions, 0);
    let d = log.producer().unwrap().send(ProduceRecord::new("t", "k", "after")).unwrap().wait().unwrap();
    assert_eq!(d.offset, 10);
    let (recs, err) = read_until_error(&log, 0);
    assert!(err.is_none(), "{err:?}");
    let mut expected = written[..10].to_vec();
    expected.push("after".into());
    assert_eq!(values(&recs), expected);
    assert!(!embedded::check(dir.path()).unwrap().is_corrupt());
}

#[test]
fn repair_refuses_a_cut_past_the_corruption_or_while_the_log_is_open_and_moves_consumer_offsets_back_to_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig::default();
    let written = fill(dir.path(), &config, 100);
    {
        let log = EmbeddedLog::open_with(dir.path(), config.clone()).unwrap();
        let mut c = log.consumer(ConsumerConfig::new("g"), None).unwrap();
        c.assign(&[(tp(), 0)]).unwrap();
        c.commit(&[(tp(), 90)]).unwrap();
    }
    let seg = segments(dir.path()).remove(0);
    flip(&seg, frames(&seg)[50].0 + 20);

    let before = disk_bytes(dir.path());
    assert!(embedded::plan_repair(dir.path(), &tp(), 51).is_err());
    let plan = embedded::plan_repair(dir.path(), &tp(), 40).unwrap();
    assert_eq!((plan.corruption.offset, plan.readable_records, plan.records_after_corruption), (50, 10, 49));
    assert_eq!(disk_bytes(dir.path()), before, "planning changed the segments");

    let open = EmbeddedLog::open_with(dir.path(), config.clone()).unwrap();
    let err = embedded::repair(dir.path(), &tp(), 40).err().expect("repaired under a running log");
    assert!(matches!(err, LogError::Locked { .. }), "{err}");
    drop(open);

    embedded::repair(dir.path(), &tp(), 40).unwrap();
    let log = EmbeddedLog::open_with(dir.path(), config).unwrap();
    assert_eq!(log.watermarks(&[tp()]).unwrap(), vec![(0, 40)]);
    assert_eq!(log.committed_offsets("g", &[tp()]).unwrap(), vec![Some(40)]);
    assert_eq!(values(&read_until_error(&log, 0).0), written[..40]);
}

#[test]
fn a_partial_last_frame_is_cut_silently_and_the_acknowledged_records_before_it_survive() {
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig::default();
    let written = fill(dir.path(), &config, 30);
    let seg = segments(dir.path()).remove(0);
    let (pos, len) = *frames(&seg).last().unwrap();
    std::fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len(pos + len - 7).unwrap();

    let log = EmbeddedLog::open_with(dir.path(), config).unwrap();
    let r = log.recovery();
    assert_eq!((r.corrupt_partitions, r.torn_bytes), (0, len - 7));
    assert_eq!(values(&read_until_error(&log, 0).0), written[..29]);
    let d = log.producer().unwrap().send(ProduceRecord::new("t", "k", "next")).unwrap().wait().unwrap();
    assert_eq!(d.offset, 29);
}

#[test]
fn zeros_or_garbage_to_the_end_of_the_segment_are_a_torn_tail_and_are_cut() {
    let tails: [Vec<u8>; 2] = [vec![0u8; 8192], [0xff, 0xff, 0xff, 0xff].iter().chain(b"not a frame at all").copied().collect()];
    for tail in tails {
        let dir = tempfile::tempdir().unwrap();
        let config = EmbeddedConfig::default();
        let written = fill(dir.path(), &config, 30);
        let seg = segments(dir.path()).remove(0);
        let mut b = std::fs::read(&seg).unwrap();
        let whole = b.len();
        b.extend_from_slice(&tail);
        std::fs::write(&seg, b).unwrap();

        let log = EmbeddedLog::open_with(dir.path(), config).unwrap();
        let r = log.recovery();
        assert_eq!((r.corrupt_partitions, r.torn_bytes), (0, tail.len() as u64));
        assert_eq!(values(&read_until_error(&log, 0).0), written);
        drop(log);
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), whole as u64);
    }
}

#[test]
fn a_flipped_byte_in_the_last_whole_frame_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig::default();
    let written = fill(dir.path(), &config, 30);
    let seg = segments(dir.path()).remove(0);
    let (pos, _) = *frames(&seg).last().unwrap();
    flip(&seg, pos + 12);

    let log = EmbeddedLog::open_with(dir.path(), config).unwrap();
    let r = log.recovery();
    assert_eq!((r.corrupt_partitions, r.torn_bytes), (1, 0));
    assert_eq!((r.corruptions[0].position, r.corruptions[0].offset, r.corruptions[0].resumes_at.clone()), (pos, 29, None));
    let (recs, err) = read_until_error(&log, 0);
    assert_eq!(values(&recs), written[..29]);
    assert!(matches!(err, Some(LogError::Corrupt(_))));
}

#[test]
fn damage_in_a_sealed_segment_keeps_the_later_segments_and_refuses_reads_past_it_until_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig { segment_bytes: 4096, ..Default::default() };
    let written = fill(dir.path(), &config, 400);
    let segs = segments(dir.path());
    assert!(segs.len() > 3, "only {} segments", segs.len());
    let fr = frames(&segs[0]);
    flip(&segs[0], fr[5].0 + fr[5].1 - 4);
    let before = disk_bytes(dir.path());

    let log = EmbeddedLog::open_with(dir.path(), config.clone()).unwrap();
    let c = log.recovery().corruptions[0].clone();
    assert_eq!((&c.segment, c.position, c.offset), (&segs[0], fr[5].0, 5));
    let (recs, err) = read_until_error(&log, 0);
    assert_eq!(values(&recs), written[..5]);
    assert!(matches!(err, Some(LogError::Corrupt(_))));
    drop(log);
    assert_eq!(disk_bytes(dir.path()), before, "recovery changed the segments");
    assert_eq!(embedded::check(dir.path()).unwrap().partitions[0].records_after_corruption, 394);

    let plan = embedded::repair(dir.path(), &tp(), 5).unwrap();
    assert_eq!(plan.deleted.len(), segs.len() - 1);
    let log = EmbeddedLog::open_with(dir.path(), config).unwrap();
    assert_eq!(segments(dir.path()), segs[..1]);
    assert_eq!(log.producer().unwrap().send(ProduceRecord::new("t", "k", "x")).unwrap().wait().unwrap().offset, 5);
}

/// The journal's entries: (byte position, length with the prefix).
fn journal_entries(dir: &Path) -> Vec<(usize, usize)> {
    let b = std::fs::read(dir.join("journal.log")).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= b.len() {
        let len = 8 + u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
        out.push((at, len));
        at += len;
    }
    out
}

/// A log whose group `g` committed 3, then 5, then 7 on t/0.
fn log_with_commits(dir: &Path) {
    fill(dir, &EmbeddedConfig::default(), 10);
    let log = EmbeddedLog::open(dir).unwrap();
    let mut c = log.consumer(ConsumerConfig::new("g"), None).unwrap();
    c.assign(&[(tp(), 0)]).unwrap();
    for o in [3, 5, 7] {
        c.commit(&[(tp(), o)]).unwrap();
    }
}

#[test]
fn a_torn_journal_entry_is_cut_and_the_commits_before_it_survive() {
    let dir = tempfile::tempdir().unwrap();
    log_with_commits(dir.path());
    let path = dir.path().join("journal.log");
    let whole = std::fs::metadata(&path).unwrap().len();
    let mut b = std::fs::read(&path).unwrap();
    b.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, b'{', b'"']); // half an entry
    std::fs::write(&path, b).unwrap();
    assert_eq!(embedded::check(dir.path()).unwrap().journal_torn_bytes, 10);

    let log = EmbeddedLog::open(dir.path()).unwrap();
    assert_eq!(log.committed_offsets("g", &[tp()]).unwrap(), vec![Some(7)]);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), whole);
}

#[test]
fn a_damaged_journal_entry_with_intact_entries_after_it_stops_the_open_and_names_the_position() {
    let dir = tempfile::tempdir().unwrap();
    log_with_commits(dir.path());
    let path = dir.path().join("journal.log");
    let entries = journal_entries(dir.path());
    assert_eq!(entries.len(), 3);
    flip(&path, (entries[1].0 + 12) as u64);
    let damaged = std::fs::read(&path).unwrap();

    let err = EmbeddedLog::open(dir.path()).err().expect("opened over a damaged journal");
    let msg = err.to_string();
    assert!(matches!(err, LogError::Corrupt(_)), "{msg}");
    assert!(msg.contains("journal.log") && msg.contains(&format!("byte {}", entries[1].0)), "{msg}");
    assert_eq!(std::fs::read(&path).unwrap(), damaged, "the journal was cut");
    assert!(embedded::check(dir.path()).unwrap().journal_corruption.is_some());
}

#[test]
fn the_index_is_rebuilt_by_scanning_so_a_missing_or_garbled_index_file_changes_no_read() {
    // The sparse index lives in memory only, rebuilt from the frames on open: index files
    // someone left (or a future version's) must neither be needed nor trusted.
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig::default();
    let written = fill(dir.path(), &config, 2000);
    let seg = segments(dir.path()).remove(0);
    std::fs::write(seg.with_extension("index"), b"\x01\x00\x00\x00garbage index").unwrap();
    let log = EmbeddedLog::open_with(dir.path(), config).unwrap();
    assert_eq!(log.recovery().corrupt_partitions, 0);
    let mut c = log.consumer(ConsumerConfig::new("mid"), None).unwrap();
    for from in [0u64, 1, 37, 999, 1234, 1999] {
        c.assign(&[(tp(), from)]).unwrap();
        let got = c.poll(3, Duration::from_millis(50)).unwrap();
        assert_eq!(got[0].offset, from);
        assert_eq!(values(&got[..1]), written[from as usize..from as usize + 1]);
    }
}

/// xorshift64: deterministic "random" numbers without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn damage_at_any_position_either_loses_no_acknowledged_record_or_is_reported_never_fewer_records_silently() {
    let template = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig { segment_bytes: 4096, ..Default::default() };
    let written = {
        let log = EmbeddedLog::open_with(template.path(), config.clone()).unwrap();
        log.create_topics(&[TopicSpec::new("t", 1)]).unwrap();
        let p = log.producer().unwrap();
        let mut rng = Rng(0x2545f4914f6cdd1d);
        let mut written = Vec::new();
        for i in 0..300 {
            // Values of varied length, some with runs of zeros, in batches of varied size.
            let v = format!("{i}:{}", "\0ab".repeat(rng.below(40) as usize));
            p.send(ProduceRecord::new("t", "k", v.as_str())).unwrap().wait().unwrap();
            written.push(v);
        }
        written
    };
    let segs = segments(template.path());
    let mut rng = Rng(0x9e3779b97f4a7c15);
    for case in 0..150 {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(template.path(), dir.path());
        let s = rng.below(segs.len() as u64) as usize;
        let seg = dir.path().join("topics/t/0").join(segs[s].file_name().unwrap());
        let mut b = std::fs::read(&seg).unwrap();
        let last_frame = frames(&seg).last().unwrap().0 as usize;
        let what = match rng.below(3) {
            // One byte changed anywhere, the last frame included.
            0 => {
                let at = rng.below(b.len() as u64) as usize;
                b[at] ^= 1 + rng.below(255) as u8;
                format!("byte {at} flipped")
            }
            // A run of bytes zeroed or scribbled over, before the last frame.
            kind => {
                let at = rng.below(last_frame.max(1) as u64) as usize;
                let n = (1 + rng.below(200) as usize).min(last_frame.max(at + 1) - at);
                for x in &mut b[at..at + n] {
                    *x = if kind == 1 { 0 } else { rng.below(256) as u8 };
                }
                format!("{n} bytes at {at} {}", if kind == 1 { "zeroed" } else { "scribbled" })
            }
        };
        let damaged_total: usize = {
            std::fs::write(&seg, &b).unwrap();
            disk_bytes(dir.path()).iter().map(Vec::len).sum()
        };
        let case = format!("case {case}: {what} of segment {s}");

        let log = EmbeddedLog::open_with(dir.path(), config.clone()).unwrap();
        let (recs, err) = read_until_error(&log, 0);
        let got = values(&recs);
        match log.recovery().corruptions.first() {
            None => {
                assert!(err.is_none(), "{case}: {err:?}");
                assert_eq!(got, written, "{case}: records were lost without a report");
            }
            Some(c) => {
                assert_eq!(got, written[..c.offset as usize], "{case}: wrong records before the corruption");
                assert!(matches!(err, Some(LogError::Corrupt(_))), "{case}: no error at the corruption: {err:?}");
                drop(log);
                let total: usize = disk_bytes(dir.path()).iter().map(Vec::len).sum();
                assert_eq!(total, damaged_total, "{case}: bytes were cut despite the corruption");
            }
        }
    }
}

#[test]
fn a_cut_at_any_byte_of_the_last_frames_is_a_torn_tail_that_keeps_every_whole_record_before_it() {
    let template = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig::default();
    let written = fill(template.path(), &config, 20);
    let seg_name = segments(template.path())[0].file_name().unwrap().to_owned();
    let fr = frames(&segments(template.path())[0]);
    let (from, to) = (fr[17].0, fr[19].0 + fr[19].1);
    for cut in (from..to).step_by(3) {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(template.path(), dir.path());
        let seg = dir.path().join("topics/t/0").join(&seg_name);
        std::fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len(cut).unwrap();
        let whole = fr.iter().filter(|(p, l)| p + l <= cut).count();
        let log = EmbeddedLog::open_with(dir.path(), config.clone()).unwrap();
        assert_eq!(log.recovery().corrupt_partitions, 0, "cut at {cut}");
        let (recs, err) = read_until_error(&log, 0);
        assert!(err.is_none(), "cut at {cut}: {err:?}");
        assert_eq!(values(&recs), written[..whole], "cut at {cut}");
    }
}
