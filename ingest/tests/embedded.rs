//! Behaviour of the embedded log beyond the shared contract: crash safety, segments,
//! retention, locking.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use storeflow_ingest::*;

fn read_all(log: &EmbeddedLog, topic: &str) -> Vec<Record> {
    let info = log.describe_topics().unwrap().into_iter().find(|t| t.name == topic).unwrap();
    let mut c = log.consumer(ConsumerConfig::new("check"), None).unwrap();
    c.assign(&info.partitions.iter().map(|p| (TopicPartition::new(topic, p.partition), p.start)).collect::<Vec<_>>())
        .unwrap();
    let total = info.records() as usize;
    let mut out = Vec::new();
    while out.len() < total {
        let got = c.poll(100_000, Duration::from_millis(100)).unwrap();
        assert!(!got.is_empty(), "stuck at {} of {total}", out.len());
        out.extend(got);
    }
    out
}

fn text(b: &Option<bytes::Bytes>) -> String {
    String::from_utf8_lossy(b.as_deref().unwrap_or_default()).into_owned()
}

#[test]
fn a_writer_killed_at_random_moments_loses_no_acknowledged_record_and_exposes_no_torn_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Vec<(u32, u64, String)> = Vec::new();
    let mut committed_txns: Vec<(String, usize)> = Vec::new();
    // Deterministic "random" kill moments between 20 and 400 ms.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for run in 0..10 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_storeflow-log-stress"))
            .arg(dir.path())
            .arg(run.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).collect::<Vec<_>>());
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        std::thread::sleep(Duration::from_millis(20 + x % 380));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for line in reader.join().unwrap() {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["ack", p, o, v] => acked.push((p.parse().unwrap(), o.parse().unwrap(), v.to_string())),
                ["txn", id, k] => committed_txns.push((id.to_string(), k.parse().unwrap())),
                // The last line may be cut by the kill: it was never a complete acknowledgement.
                _ => {}
            }
        }

        let log = EmbeddedLog::open(dir.path()).unwrap();
        let recs = read_all(&log, "stress");
        let mut by_pos: HashMap<(u32, u64), &Record> = HashMap::new();
        let mut next: BTreeMap<u32, u64> = BTreeMap::new();
        for r in &recs {
            let n = next.entry(r.partition).or_default();
            assert_eq!(r.offset, *n, "gap in partition {}", r.partition);
            *n += 1;
            // Every surviving record is whole: its header repeats its value.
            assert_eq!(r.header("v").map(|v| String::from_utf8_lossy(v).into_owned()), Some(text(&r.value)));
            by_pos.insert((r.partition, r.offset), r);
        }
        for (p, o, v) in &acked {
            let r = by_pos.get(&(*p, *o)).unwrap_or_else(|| panic!("run {run}: acknowledged {v} at {p}/{o} is gone"));
            assert_eq!(&text(&r.value), v);
        }
        let txrecs = read_all(&log, "stress.tx");
        let mut txn_parts: HashMap<String, (usize, usize)> = HashMap::new();
        for r in &txrecs {
            let v = text(&r.value);
            let f: Vec<&str> = v.split('/').collect();
            let e = txn_parts.entry(f[0].to_string()).or_insert((0, f[2].parse().unwrap()));
            e.0 += 1;
        }
        for (id, (seen, k)) in &txn_parts {
            assert_eq!(seen, k, "run {run}: transaction {id} is torn: {seen} of {k} records visible");
        }
        for (id, k) in &committed_txns {
            assert_eq!(txn_parts.get(id).map(|e| e.0), Some(*k), "run {run}: committed transaction {id} is missing");
        }
        drop(log);
    }
    assert!(acked.len() > 100, "the writer acknowledged only {} records in 10 runs", acked.len());
}

#[test]
fn a_torn_tail_is_cut_on_reopen_and_appending_continues() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = EmbeddedLog::open(dir.path()).unwrap();
        log.create_topics(&[TopicSpec::new("t", 1)]).unwrap();
        let p = log.producer().unwrap();
        for i in 0..10 {
            p.send(ProduceRecord::new("t", "k", format!("v{i}"))).unwrap().wait().unwrap();
        }
    }
    let seg = dir.path().join("topics/t/0/00000000000000000000.log");
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, 5, 6]).unwrap(); // half a frame
    drop(f);
    let log = EmbeddedLog::open(dir.path()).unwrap();
    assert_eq!(log.recovery().torn_bytes, 10);
    let p = log.producer().unwrap();
    let d = p.send(ProduceRecord::new("t", "k", "after")).unwrap().wait().unwrap();
    assert_eq!(d.offset, 10);
    let recs = read_all(&log, "t");
    assert_eq!(recs.len(), 11);
    assert_eq!(text(&recs[10].value), "after");
}

#[test]
fn records_span_many_segments_and_read_back_across_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open_with(dir.path(), EmbeddedConfig { segment_bytes: 4096, ..Default::default() }).unwrap();
    log.create_topics(&[TopicSpec::new("t", 1)]).unwrap();
    let p = log.producer().unwrap();
    for chunk in 0..50 {
        let batch = (0..40).map(|i| ProduceRecord::new("t", "k", format!("{:0100}", chunk * 40 + i))).collect();
        for f in p.send_batch(batch).unwrap() {
            f.wait().unwrap();
        }
    }
    let segments = std::fs::read_dir(dir.path().join("topics/t/0")).unwrap().count();
    assert!(segments > 20, "only {segments} segment files");
    let recs = read_all(&log, "t");
    assert_eq!(recs.len(), 2000);
    assert!(recs.iter().enumerate().all(|(i, r)| text(&r.value) == format!("{i:0100}")));
    // A consumer starting in the middle of a middle segment.
    let mut c = log.consumer(ConsumerConfig::new("mid"), None).unwrap();
    c.assign(&[(TopicPartition::new("t", 0), 1234)]).unwrap();
    let got = c.poll(3, Duration::from_millis(10)).unwrap();
    assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![1234, 1235, 1236]);
    drop((c, p, log));
    let log = EmbeddedLog::open(dir.path()).unwrap();
    assert_eq!(read_all(&log, "t").len(), 2000, "reopening lost records");
}

#[test]
fn retention_by_size_deletes_the_oldest_segments_and_consumers_skip_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig { segment_bytes: 4096, retention_bytes: 16 * 1024, ..Default::default() };
    {
        let log = EmbeddedLog::open_with(dir.path(), config.clone()).unwrap();
        log.create_topics(&[TopicSpec::new("t", 1)]).unwrap();
        let p = log.producer().unwrap();
        for i in 0..1000 {
            p.send(ProduceRecord::new("t", "k", format!("{i:0100}"))).unwrap();
        }
    }
    let log = EmbeddedLog::open_with(dir.path(), config).unwrap();
    let info = &log.describe_topics().unwrap()[0].partitions[0];
    assert!(info.start > 0, "nothing was deleted");
    assert_eq!(info.end, 1000);
    let mut c = log.consumer(ConsumerConfig::new("late"), None).unwrap();
    c.subscribe(&["t"]).unwrap();
    let first = c.poll(1, Duration::from_secs(1)).unwrap();
    assert_eq!(first[0].offset, info.start);
}

#[test]
fn a_directory_in_use_is_refused_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let _log = EmbeddedLog::open(dir.path()).unwrap();
    let err = EmbeddedLog::open(dir.path()).err().expect("second open succeeded");
    assert!(matches!(err, LogError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("pid"), "{err}");
}

#[test]
fn committed_offsets_and_transactions_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = EmbeddedLog::open(dir.path()).unwrap();
        log.create_topics(&[TopicSpec::new("in", 1), TopicSpec::new("out", 1)]).unwrap();
        let p = log.producer().unwrap();
        for i in 0..5 {
            p.send(ProduceRecord::new("in", "k", format!("v{i}"))).unwrap();
        }
        let mut c = log.consumer(ConsumerConfig::new("g"), None).unwrap();
        c.subscribe(&["in"]).unwrap();
        let recs = c.poll(3, Duration::from_secs(1)).unwrap();
        assert_eq!(recs.len(), 3);
        let mut tx = log.transactional_producer("t1").unwrap();
        tx.begin().unwrap();
        tx.send(ProduceRecord::new("out", "k", "x")).unwrap();
        tx.send_offsets(&[(TopicPartition::new("in", 0), 3)], &c.group_metadata().unwrap()).unwrap();
        tx.commit().unwrap();
        c.close().unwrap();
    }
    let log = EmbeddedLog::open(dir.path()).unwrap();
    assert_eq!(log.committed_offsets("g", &[TopicPartition::new("in", 0)]).unwrap(), vec![Some(3)]);
    assert_eq!(read_all(&log, "out").len(), 1);
    let mut c = log.consumer(ConsumerConfig::new("g"), None).unwrap();
    c.subscribe(&["in"]).unwrap();
    let rest = c.poll(10, Duration::from_secs(1)).unwrap();
    assert_eq!(rest.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![3, 4]);
}

#[test]
fn a_member_that_lost_its_partition_cannot_commit_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path()).unwrap();
    log.create_topics(&[TopicSpec::new("t", 1)]).unwrap();
    let mut a = log.consumer(ConsumerConfig::new("g"), None).unwrap();
    a.subscribe(&["t"]).unwrap();
    a.poll(1, Duration::from_millis(50)).unwrap();
    assert_eq!(a.assignment().len(), 1);
    let mut b = log.consumer(ConsumerConfig::new("g"), None).unwrap();
    b.subscribe(&["t"]).unwrap();
    // a keeps its partition until it polls again; b, a newcomer, does not own it.
    assert!(b.commit(&[(TopicPartition::new("t", 0), 1)]).is_err());
}
