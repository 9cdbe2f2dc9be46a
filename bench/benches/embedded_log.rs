//! Embedded log append and read throughput, with the raw file system as the baseline in the
//! same run. `cargo bench -p storeflow-bench --bench embedded_log`
//!
//! Records are 100-byte values with 16-byte keys (a typical small event), appended in
//! batches of 1,000 to one partition (one core):
//! - `raw_file_write`: `write(2)` of the same number of bytes to a plain file — the ceiling;
//! - `append_batch/fsync_interval`: `send_batch` with the default policy (background fsync
//!   every 200 ms), acknowledged when written;
//! - `append_batch/fsync_always`: `fsync` before every acknowledgement (group commit per batch);
//! - `append_single/fsync_interval`: one `send` per record (one write per record);
//! - `read`: a consumer reading 1,000 records per poll, against `raw_file_read` of the same bytes.

use std::io::{Read, Seek, Write};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use storeflow_ingest::{ConsumerConfig, EmbeddedConfig, EmbeddedLog, FsyncPolicy, Log, ProduceRecord, TopicPartition, TopicSpec};

const BATCH: usize = 1000;

fn batch() -> Vec<ProduceRecord> {
    (0..BATCH)
        .map(|i| {
            ProduceRecord::new("bench", format!("key-{:012}", i).into_bytes(), vec![b'x'; 100]).to_partition(0)
        })
        .collect()
}

fn open(policy: FsyncPolicy) -> (tempfile::TempDir, EmbeddedLog) {
    let dir = tempfile::tempdir_in(std::env::var("STOREFLOW_BENCH_DIR").unwrap_or_else(|_| std::env::temp_dir().display().to_string())).expect("tempdir");
    let log = EmbeddedLog::open_with(dir.path(), EmbeddedConfig { fsync: policy, ..Default::default() }).expect("open");
    log.create_topics(&[TopicSpec::new("bench", 1)]).expect("topic");
    (dir, log)
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(BATCH as u64));
    // Same bytes as the frames would take (~150 bytes each with framing).
    let raw_dir = tempfile::tempdir().expect("tempdir");
    let mut raw = std::fs::File::create(raw_dir.path().join("raw")).expect("file");
    let chunk = vec![b'x'; BATCH * 150];
    g.bench_function("raw_file_write", |b| b.iter(|| raw.write_all(black_box(&chunk)).expect("write")));

    for (name, policy) in [("fsync_interval", FsyncPolicy::Interval), ("fsync_always", FsyncPolicy::Always)] {
        let (_dir, log) = open(policy);
        let p = log.producer().expect("producer");
        g.bench_function(format!("append_batch/{name}"), |b| {
            b.iter_batched(
                batch,
                |recs| {
                    for f in p.send_batch(recs).expect("send") {
                        black_box(f.wait().expect("ack"));
                    }
                },
                criterion::BatchSize::LargeInput,
            )
        });
    }
    let (_dir, log) = open(FsyncPolicy::Interval);
    let p = log.producer().expect("producer");
    g.bench_function("append_single/fsync_interval", |b| {
        b.iter_batched(
            batch,
            |recs| {
                for r in recs {
                    black_box(p.send(r).expect("send").wait().expect("ack"));
                }
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn read(c: &mut Criterion) {
    let mut g = c.benchmark_group("read");
    g.throughput(Throughput::Elements(BATCH as u64));
    let (_dir, log) = open(FsyncPolicy::Interval);
    let p = log.producer().expect("producer");
    let total = 200 * BATCH;
    for _ in 0..200 {
        for f in p.send_batch(batch()).expect("send") {
            f.wait().expect("ack");
        }
    }
    let mut consumer = log.consumer(ConsumerConfig::new("bench"), None).expect("consumer");
    let tp = TopicPartition::new("bench", 0);
    consumer.assign(&[(tp.clone(), 0)]).expect("assign");
    let mut pos = 0usize;
    g.bench_function("consumer_poll", |b| {
        b.iter(|| {
            if pos >= total {
                consumer.seek(&tp, 0).expect("seek");
                pos = 0;
            }
            let recs = consumer.poll(BATCH, Duration::from_millis(100)).expect("poll");
            pos += recs.len();
            black_box(recs)
        })
    });
    let seg = std::fs::read_dir(log.dir().join("topics/bench/0")).expect("dir").next().expect("segment").expect("entry").path();
    let mut f = std::fs::File::open(seg).expect("open");
    let len = f.metadata().expect("stat").len() as usize;
    let per = len / 200;
    let mut buf = vec![0u8; per];
    let mut at = 0usize;
    g.bench_function("raw_file_read", |b| {
        b.iter(|| {
            if at + per > len {
                f.rewind().expect("rewind");
                at = 0;
            }
            f.read_exact(&mut buf).expect("read");
            at += per;
            black_box(&buf);
        })
    });
    g.finish();
    let _ = Instant::now();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = append, read
}
criterion_main!(benches);
