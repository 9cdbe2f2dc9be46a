//! The contract every log backend must honour, as tests generic over the backend.
//!
//! A backend's test file implements [`Harness`] and expands [`contract_tests!`], which
//! generates one `#[test]` per case below. The embedded log runs it in
//! `ingest/tests/contract_embedded.rs`, Kafka in `ingest/tests/contract_kafka.rs`.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::log::{Consumer, Log, OffsetCommitter, RebalanceListener};
use crate::partitioner::partition_for_key;
use crate::types::*;

/// What a backend provides to the suite.
pub trait Harness {
    /// The log under test.
    fn log(&self) -> Arc<dyn Log>;
    /// A topic name no other test uses.
    fn fresh_topic(&self, hint: &str) -> String;
    /// How long to wait for things that take a broker round trip (rebalances, commits).
    fn patience(&self) -> Duration {
        Duration::from_secs(10)
    }
}

/// The address of a real service for a test, from the environment variable `var` (which
/// `scripts/test` exports after `scripts/services up`). Missing: under `CI=true` the test
/// fails — CI must never pass by skipping — otherwise it is skipped with a loud message.
pub fn service_address(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Some(v),
        _ if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => {
            panic!("{var} is not set: CI runs scripts/test, which starts {what} with scripts/services and exports it")
        }
        _ => {
            eprintln!("SKIPPED: {var} is not set, so this test of {what} did not run (run scripts/test, or `scripts/services up` and export the addresses)");
            None
        }
    }
}

/// Expands to one `#[test]` per contract case. `$harness` is an expression giving
/// `Option<impl Harness>`; `None` skips (see [`service_address`]).
#[macro_export]
macro_rules! contract_tests {
    ($harness:expr) => {
        $crate::contract_tests!(@cases $harness;
            produced_records_are_read_back_in_order_per_partition,
            keyed_records_land_on_the_kafka_murmur2_partition,
            keys_values_nulls_headers_and_timestamps_round_trip,
            a_group_resumes_from_its_committed_offsets,
            latest_reset_starts_after_existing_records,
            seek_replays_from_an_earlier_offset,
            two_group_members_split_partitions_and_the_survivor_takes_over_without_loss,
            a_committed_transaction_publishes_records_and_offsets_together,
            an_aborted_transaction_is_never_seen_by_read_committed_consumers,
            a_newer_transactional_producer_fences_the_older_one,
            creating_topics_is_idempotent_and_unknown_topics_are_errors,
            describe_topics_reports_partition_ends,
            co_partitioned_members_own_the_same_partition_numbers_of_every_topic,
            an_idle_groups_offsets_are_reset_from_outside_and_a_live_one_is_refused,
            offsets_for_a_time_are_the_first_records_stamped_at_or_after_it,
        );
    };
    (@cases $harness:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let Some(h) = $harness else { return };
                $crate::contract::$case(&h);
            }
        )*
    };
}

fn topic(h: &dyn Harness, hint: &str, partitions: u32) -> String {
    let name = h.fresh_topic(hint);
    h.log().create_topics(&[TopicSpec::new(&name, partitions)]).expect("create topic");
    name
}

fn group(hint: &str) -> String {
    format!("g-{hint}-{}", uuid_like())
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{:x}{}", t, N.fetch_add(1, Ordering::Relaxed))
}

fn produce(log: &dyn Log, topic: &str, n: usize, key: impl Fn(usize) -> String) -> Vec<Delivery> {
    let p = log.producer().expect("producer");
    let futs = p
        .send_batch((0..n).map(|i| ProduceRecord::new(topic, key(i), format!("v{i}"))).collect())
        .expect("send");
    let out = futs.into_iter().map(|f| f.wait().expect("ack")).collect();
    p.flush(Duration::from_secs(10)).expect("flush");
    out
}

/// Polls until `n` records arrived or `patience` ran out.
fn drain(c: &mut dyn Consumer, n: usize, patience: Duration) -> Vec<Record> {
    let deadline = Instant::now() + patience;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        out.extend(c.poll(n - out.len(), Duration::from_millis(200)).expect("poll"));
    }
    out
}

fn value(r: &Record) -> String {
    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()
}

fn next_offsets(recs: &[Record]) -> Vec<(TopicPartition, u64)> {
    let mut m: BTreeMap<TopicPartition, u64> = BTreeMap::new();
    for r in recs {
        let e = m.entry(r.tp()).or_default();
        *e = (*e).max(r.offset + 1);
    }
    m.into_iter().collect()
}

/// Records come back in the order they were produced, per partition.
pub fn produced_records_are_read_back_in_order_per_partition(h: &dyn Harness) {
    let log = h.log();
    let t = topic(h, "order", 3);
    let acks = produce(&*log, &t, 300, |i| format!("k{}", i % 7));
    let mut c = log.consumer(ConsumerConfig::new(&group("order")), None).expect("consumer");
    c.subscribe(&[&t]).expect("subscribe");
    let recs = drain(&mut *c, 300, h.patience());
    assert_eq!(recs.len(), 300, "read {} of 300", recs.len());
    let mut last: BTreeMap<u32, u64> = BTreeMap::new();
    let mut per_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for r in &recs {
        if let Some(prev) = last.insert(r.partition, r.offset) {
            assert!(r.offset > prev, "offsets go backwards in partition {}", r.partition);
        }
        let k = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
        per_key.entry(k).or_default().push(value(r)[1..].parse().expect("v<i>"));
    }
    for (k, seq) in per_key {
        assert!(seq.windows(2).all(|w| w[0] < w[1]), "key {k} out of order: {seq:?}");
    }
    for (i, a) in acks.iter().enumerate() {
        let r = recs.iter().find(|r| r.partition == a.partition && r.offset == a.offset).expect("acked record read");
        assert_eq!(value(r), format!("v{i}"));
    }
    c.close().expect("close");
}

/// A key lands where Kafka's Java client would put it.
pub fn keyed_records_land_on_the_kafka_murmur2_partition(h: &dyn Harness) {
    let log = h.log();
    let t = topic(h, "murmur", 5);
    let acks = produce(&*log, &t, 50, |i| format!("order-{i}"));
    for (i, a) in acks.iter().enumerate() {
        assert_eq!(a.partition, partition_for_key(format!("order-{i}").as_bytes(), 5), "order-{i}");
    }
}

/// Null keys, tombstones, headers and timestamps survive the trip.
pub fn keys_values_nulls_headers_and_timestamps_round_trip(h: &dyn Harness) {
    let log = h.log();
    let t = topic(h, "fields", 1);
    let p = log.producer().expect("producer");
    let recs = vec![
        ProduceRecord::new(&t, "k1", "v1").at(1_700_000_000_123).header(Header::text("h1", "x")).header(Header::text("h2", "")),
        ProduceRecord { topic: t.clone(), partition: Some(0), key: None, value: Some(b"no key".to_vec()), headers: vec![], timestamp: Some(5) },
        ProduceRecord { topic: t.clone(), partition: Some(0), key: Some(b"tomb".to_vec()), value: None, headers: vec![], timestamp: Some(6) },
    ];
    for f in p.send_batch(recs).expect("send") {
        f.wait().expect("ack");
    }
    let mut c = log.consumer(ConsumerConfig::new(&group("fields")), None).expect("consumer");
    c.assign(&[(TopicPartition::new(&t, 0), 0)]).expect("assign");
    let got = drain(&mut *c, 3, h.patience());
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].key.as_deref(), Some(&b"k1"[..]));
    assert_eq!(got[0].timestamp, 1_700_000_000_123);
    assert_eq!(got[0].header("h1"), Some(&b"x"[..]));
    assert_eq!(got[0].header("h2"), Some(&b""[..]));
    assert_eq!(got[1].key, None);
    assert_eq!(got[2].value, None, "a tombstone stays a tombstone");
    assert_eq!(got[2].timestamp, 6);
    c.close().expect("close");
}

/// A new consumer of the same group starts where the last commit left off.
pub fn a_group_resumes_from_its_committed_offsets(h: &dyn Harness) {
    let log = h.log();
    let t = topic(h, "resume", 2);
    produce(&*log, &t, 100, |i| format!("k{i}"));
    let g = group("resume");
    let mut c = log.consumer(ConsumerConfig::new(&g), None).expect("consumer");
    c.subscribe(&[&t]).expect("subscribe");
    let first = drain(&mut *c, 100, h.patience());
    assert_eq!(first.len(), 100);
    // Commit only the first half of each partition.
    let mut commit = Vec::new();
    let mut expect_rest = HashSet::new();
    for (tp, end) in next_offsets(&first) {
        let half = end / 2;
        commit.push((tp.clone(), half));
        for r in first.iter().filter(|r| r.tp() == tp && r.offset >= half) {
            expect_rest.insert(value(r));
        }
    }
    c.commit(&commit).expect("commit");
    c.close().expect("close");
    let committed = log.committed_offsets(&g, &commit.iter().map(|(tp, _)| tp.clone()).collect::<Vec<_>>()).expect("committed");
    assert_eq!(committed, commit.iter().map(|(_, o)| Some(*o)).collect::<Vec<_>>());
    let mut c2 = log.consumer(ConsumerConfig::new(&g), None).expect("consumer");
    c2.subscribe(&[&t]).expect("subscribe");
    let rest = drain(&mut *c2, expect_rest.len(), h.patience());
    let got: HashSet<String> = rest.iter().map(value).collect();
    assert_eq!(got, expect_rest);
    assert!(c2.poll(10, Duration::from_millis(300)).expect("poll").is_empty(), "read past the end");
    c2.close().expect("close");
}

/// `OffsetReset::Latest` skips what was there before.
pub fn latest_reset_starts_after_existing_records(h: &dyn Harness) {
    let log = h.log();
    let t = topic(h, "latest", 1);
    produce(&*log, &t, 10, |i| format!("k{i}"));
    let mut cfg = ConsumerConfig::new(&group("latest"));
    cfg.reset = OffsetReset::Latest;
    let mut c = log.consumer(cfg, None).expect("consumer");
    c.subscribe(&[&t]).expect("subscribe");
    // Wait until the consumer has its partition (a rebalance on Kafka).
    let deadline = Instant::now() + h.patience();
    while c.assignment().is_empty() && Instant::now() < deadline {
        let early = c.poll(10, Duration::from_millis(200)).expect("poll");
        assert!(early.is_empty(), "latest reset returned old records");
    }
    produce(&*log, &t, 3, |i| format!("new{i}"));
    let got = drain(&mut *c, 3, h.patience());
    assert_eq!(got.iter().map(value).collect::<Vec<_>>(), vec!["v0", "v1", "v2"]);
    assert!(got.iter().all(|r| r.offset >= 10));
    c.close().expect("close");
}

/// Seeking back re-reads the same records.
pub fn seek_replays_from_an_earlier_offset(h: &dyn Harness) {
    let log = h.log();
    let t = topic(h, "seek", 1);
    produce(&*log, &t, 20, |i| format!("k{i}"));
    let tp = TopicPartition::new(&t, 0);
    let mut c = log.consumer(ConsumerConfig::new(&group("seek")), None).expect("consumer");
    c.assign(&[(tp.clone(), 0)]).expect("assign");
    let all = drain(&mut *c, 20, h.patience());
    assert_eq!(all.len(), 20);
    assert_eq!(c.position(&tp), Some(20));
    c.seek(&tp, 15).expect("seek");
    let again = drain(&mut *c, 5, h.patience());
    assert_eq!(again, all[15..].to_vec());
    c.close().expect("close");
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<(bool, Vec<TopicPartition>)>>>);

impl RebalanceListener for Recorder {
    fn on_revoked(&mut self, partitions: &[TopicPartition], _committer: &mut dyn OffsetCommitter) {
        self.0.lock().expect("lock").push((false, partitions.to_vec()));
    }
    fn on_assigned(&mut self, partitions: &[TopicPartition]) {
        self.0.lock().expect("lock").push((true, partitions.to_vec()));
    }
}

/// Two members share the partitions; when one leaves, the other gets its partitions and,
/// from the committed offsets, every record is read at least once and none is lost.
pub fn two_group_members_split_partitions_and_the_survivor_takes_over_without_loss(h: &dyn Harness) {
    let log = h.log();
    let t = topic(h, "split", 4);
    let g = group("split");
    let rec_a = Recorder::default();
    let mut a = log.consumer(ConsumerConfig::new(&g), Some(Box::new(rec_a.clone()))).expect("consumer");
    let mut b = log.consumer(ConsumerConfig::new(&g), None).expect("consumer");
    a.subscribe(&[&t]).expect("subscribe");
    b.subscribe(&[&t]).expect("subscribe");
    // Both poll until the group has settled on a 2 + 2 split.
    let deadline = Instant::now() + h.patience() * 3;
    while !(a.assignment().len() == 2 && b.assignment().len() == 2) && Instant::now() < deadline {
        a.poll(10, Duration::from_millis(100)).expect("poll");
        b.poll(10, Duration::from_millis(100)).expect("poll");
    }
    assert_eq!((a.assignment().len(), b.assignment().len()), (2, 2), "the group did not split 4 partitions 2 + 2");
    let a_parts: HashSet<_> = a.assignment().into_iter().collect();
    assert!(b.assignment().iter().all(|tp| !a_parts.contains(tp)), "a partition has two owners");

    produce(&*log, &t, 400, |i| format!("k{i}"));
    let mut seen_b = HashSet::new();
    // b reads some and commits what it read; a reads its share and commits.
    let deadline = Instant::now() + h.patience();
    let mut got_a = Vec::new();
    while seen_b.len() < 50 && Instant::now() < deadline {
        let r = b.poll(50, Duration::from_millis(100)).expect("poll");
        b.commit(&next_offsets(&r)).expect("commit");
        seen_b.extend(r.iter().map(value));
        got_a.extend(a.poll(100, Duration::from_millis(10)).expect("poll"));
    }
    assert!(seen_b.len() >= 50, "b read only {}", seen_b.len());
    // b stops (a crash would look the same from the group's side after the session timeout).
    b.close().expect("close");
    let deadline = Instant::now() + h.patience() * 3;
    let mut seen: HashSet<String> = seen_b;
    seen.extend(got_a.iter().map(value));
    while seen.len() < 400 && Instant::now() < deadline {
        seen.extend(a.poll(200, Duration::from_millis(200)).expect("poll").iter().map(value));
    }
    assert_eq!(seen.len(), 400, "records lost in the hand-over");
    assert_eq!(a.assignment().len(), 4, "the survivor did not take over every partition");
    let events = rec_a.0.lock().expect("lock").clone();
    assert!(events.iter().any(|(assigned, _)| *assigned), "the listener heard no assignment");
    a.close().expect("close");
}

/// Records and offsets of a committed transaction appear together.
pub fn a_committed_transaction_publishes_records_and_offsets_together(h: &dyn Harness) {
    let log = h.log();
    let input = topic(h, "txin", 1);
    let output = topic(h, "txout", 2);
    produce(&*log, &input, 10, |i| format!("k{i}"));
    let g = group("tx");
    let mut c = log.consumer(ConsumerConfig::new(&g), None).expect("consumer");
    c.subscribe(&[&input]).expect("subscribe");
    let recs = drain(&mut *c, 10, h.patience());
    assert_eq!(recs.len(), 10);
    let meta = c.group_metadata().expect("group metadata");
    let mut tx = log.transactional_producer(&format!("tx-{}", uuid_like())).expect("txn producer");
    tx.begin().expect("begin");
    for r in &recs {
        tx.send(ProduceRecord::new(&output, r.key.as_deref().unwrap_or_default().to_vec(), format!("out-{}", value(r)))).expect("send");
    }
    tx.send_offsets(&next_offsets(&recs), &meta).expect("send offsets");
    let ends = tx.commit().expect("commit");
    let out_info = log.describe_topics().expect("describe").into_iter().find(|t| t.name == output).expect("output topic");
    for (tp, end) in &ends {
        assert_eq!(&*tp.topic, output.as_str(), "commit reported a partition it did not write");
        let p = out_info.partitions.iter().find(|p| p.partition == tp.partition).expect("partition");
        // Kafka puts a commit marker after the records, so the end may sit one before it.
        assert!(*end <= p.end && *end + 1 >= p.end, "reported end {end}, partition end {}", p.end);
    }
    assert!(!ends.is_empty(), "commit reported no partitions");
    let committed = log.committed_offsets(&g, &[TopicPartition::new(&input, 0)]).expect("committed");
    assert_eq!(committed, vec![Some(recs.last().expect("10 records").offset + 1)]);
    let mut r = log.consumer(ConsumerConfig::new(&group("txread")), None).expect("consumer");
    r.subscribe(&[&output]).expect("subscribe");
    let out = drain(&mut *r, 10, h.patience());
    let got: HashSet<String> = out.iter().map(value).collect();
    let want: HashSet<String> = recs.iter().map(|r| format!("out-{}", value(r))).collect();
    assert_eq!(got, want);
    c.close().expect("close");
    r.close().expect("close");
}

/// Nothing of an aborted transaction is ever read by a read_committed consumer.
pub fn an_aborted_transaction_is_never_seen_by_read_committed_consumers(h: &dyn Harness) {
    let log = h.log();
    let t = topic(h, "abort", 2);
    let mut tx = log.transactional_producer(&format!("abort-{}", uuid_like())).expect("txn producer");
    tx.begin().expect("begin");
    for i in 0..20 {
        tx.send(ProduceRecord::new(&t, format!("k{i}"), "aborted")).expect("send");
    }
    tx.abort().expect("abort");
    tx.begin().expect("begin");
    for i in 0..5 {
        tx.send(ProduceRecord::new(&t, format!("k{i}"), "committed")).expect("send");
    }
    tx.commit().expect("commit");
    let mut c = log.consumer(ConsumerConfig::new(&group("abort")), None).expect("consumer");
    c.subscribe(&[&t]).expect("subscribe");
    let got = drain(&mut *c, 25, Duration::from_secs(3).max(h.patience() / 2));
    assert_eq!(got.len(), 5, "read_committed saw {:?}", got.iter().map(value).collect::<Vec<_>>());
    assert!(got.iter().all(|r| value(r) == "committed"));
    c.close().expect("close");
}

/// Two producers with one transactional id: the older one can no longer commit.
pub fn a_newer_transactional_producer_fences_the_older_one(h: &dyn Harness) {
    let log = h.log();
    let t = topic(h, "fence", 1);
    let id = format!("fence-{}", uuid_like());
    let mut old = log.transactional_producer(&id).expect("txn producer");
    old.begin().expect("begin");
    old.send(ProduceRecord::new(&t, "k", "zombie")).expect("send");
    let mut new = log.transactional_producer(&id).expect("txn producer");
    // Kafka may refuse already at the send; either way the zombie's commit must fail.
    let zombie = old.send(ProduceRecord::new(&t, "k", "zombie")).and_then(|_| old.commit());
    assert!(zombie.is_err(), "the fenced producer committed");
    new.begin().expect("begin");
    new.send(ProduceRecord::new(&t, "k", "alive")).expect("send");
    new.commit().expect("commit");
    let mut c = log.consumer(ConsumerConfig::new(&group("fence")), None).expect("consumer");
    c.subscribe(&[&t]).expect("subscribe");
    let got = drain(&mut *c, 2, Duration::from_secs(3).max(h.patience() / 2));
    assert_eq!(got.iter().map(value).collect::<Vec<_>>(), vec!["alive"]);
    c.close().expect("close");
}

/// Creating a topic twice is fine; reading a missing topic is a clear error.
pub fn creating_topics_is_idempotent_and_unknown_topics_are_errors(h: &dyn Harness) {
    let log = h.log();
    let t = topic(h, "idem", 3);
    log.create_topics(&[TopicSpec::new(&t, 3)]).expect("second create is a no-op");
    assert!(log.create_topics(&[TopicSpec::new(&t, 5)]).is_err(), "partition count changed silently");
    let missing = h.fresh_topic("missing");
    let p = log.producer().expect("producer");
    let sent = p.send(ProduceRecord::new(&missing, "k", "v")).and_then(|f| f.wait());
    assert!(sent.is_err(), "produced to a topic that does not exist");
}

/// `describe_topics` shows the partitions and how far they go.
pub fn describe_topics_reports_partition_ends(h: &dyn Harness) {
    let log = h.log();
    let t = topic(h, "describe", 2);
    let acks = produce(&*log, &t, 30, |i| format!("k{i}"));
    let info = log.describe_topics().expect("describe").into_iter().find(|i| i.name == t).expect("topic listed");
    assert_eq!(info.partitions.len(), 2);
    for p in &info.partitions {
        let n = acks.iter().filter(|a| a.partition == p.partition).count() as u64;
        assert_eq!(p.end - p.start, n, "partition {}", p.partition);
    }
    assert_eq!(info.records(), 30);
}

/// With `co_partitioned`, each member owns the same partition numbers of every topic it
/// reads (the processor runtime's tasks depend on it).
pub fn co_partitioned_members_own_the_same_partition_numbers_of_every_topic(h: &dyn Harness) {
    let log = h.log();
    let a_topic = topic(h, "copart-a", 4);
    let b_topic = topic(h, "copart-b", 4);
    let g = group("copart");
    let mut cfg = ConsumerConfig::new(&g);
    cfg.co_partitioned = true;
    let mut m1 = log.consumer(cfg.clone(), None).expect("consumer");
    let mut m2 = log.consumer(cfg, None).expect("consumer");
    m1.subscribe(&[&a_topic, &b_topic]).expect("subscribe");
    m2.subscribe(&[&a_topic, &b_topic]).expect("subscribe");
    let deadline = Instant::now() + h.patience() * 3;
    while !(m1.assignment().len() == 4 && m2.assignment().len() == 4) && Instant::now() < deadline {
        m1.poll(10, Duration::from_millis(100)).expect("poll");
        m2.poll(10, Duration::from_millis(100)).expect("poll");
    }
    for m in [&m1, &m2] {
        let a = m.assignment();
        assert_eq!(a.len(), 4, "expected 2 partitions of each topic, got {a:?}");
        let nums = |t: &str| {
            let mut v: Vec<u32> = a.iter().filter(|tp| &*tp.topic == t).map(|tp| tp.partition).collect();
            v.sort();
            v
        };
        assert_eq!(nums(&a_topic), nums(&b_topic), "partition numbers differ across topics: {a:?}");
    }
    let ws = log.watermarks(&[TopicPartition::new(&a_topic, 0)]).expect("watermarks");
    assert_eq!(ws, vec![(0, 0)]);
    m1.close().expect("close");
    m2.close().expect("close");
}

/// An operator's reset (`storeflow groups reset`): the group is listed, its offsets move
/// while it has no members, and while a member is live the reset is refused and changes
/// nothing.
pub fn an_idle_groups_offsets_are_reset_from_outside_and_a_live_one_is_refused(h: &dyn Harness) {
    let log = h.log();
    let t = topic(h, "reset", 1);
    produce(&*log, &t, 10, |i| format!("k{i}"));
    let g = group("reset");
    let tp = TopicPartition::new(&t, 0);
    let mut c = log.consumer(ConsumerConfig::new(&g), None).expect("consumer");
    c.subscribe(&[&t]).expect("subscribe");
    let read = drain(&mut *c, 10, h.patience());
    assert_eq!(read.len(), 10);
    c.commit(&next_offsets(&read)).expect("commit");
    // A live member: both backends can tell, and the reset is refused.
    assert_eq!(log.group_members(&g).expect("members"), Some(1));
    assert!(log.reset_offsets(&g, &[(tp.clone(), 0)]).is_err(), "a reset went through while the group had a member");
    assert_eq!(log.committed_offsets(&g, std::slice::from_ref(&tp)).expect("committed"), vec![Some(10)]);
    c.close().expect("close");
    // The coordinator may take a moment to see the member leave.
    let deadline = Instant::now() + h.patience() * 3;
    while log.group_members(&g).expect("members").is_some_and(|n| n > 0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(log.group_members(&g).expect("members").unwrap_or(0), 0, "the member did not leave");
    assert!(log.list_groups().expect("groups").contains(&g), "the group is not listed");
    log.reset_offsets(&g, &[(tp.clone(), 3)]).expect("reset");
    assert_eq!(log.committed_offsets(&g, std::slice::from_ref(&tp)).expect("committed"), vec![Some(3)]);
    // The group resumes from there.
    let mut c = log.consumer(ConsumerConfig::new(&g), None).expect("consumer");
    c.subscribe(&[&t]).expect("subscribe");
    let again = drain(&mut *c, 7, h.patience());
    assert_eq!(again.iter().map(|r| r.offset).collect::<Vec<_>>(), (3..10).collect::<Vec<_>>());
    c.close().expect("close");
}

/// `offsets_for_time`: the first offset stamped at or after the time, per partition; the
/// end when nothing is.
pub fn offsets_for_a_time_are_the_first_records_stamped_at_or_after_it(h: &dyn Harness) {
    let log = h.log();
    let t = topic(h, "times", 2);
    let base = 1_700_000_000_000i64;
    let p = log.producer().expect("producer");
    let futs = p
        .send_batch((0..10).map(|i| ProduceRecord::new(&t, format!("k{i}"), format!("v{i}")).to_partition(0).at(base + i * 1000)).collect())
        .expect("send");
    for f in futs {
        f.wait().expect("ack");
    }
    p.flush(Duration::from_secs(10)).expect("flush");
    let tps = [TopicPartition::new(&t, 0), TopicPartition::new(&t, 1)];
    assert_eq!(log.offsets_for_time(&tps, base + 4500).expect("by time"), vec![5, 0]);
    assert_eq!(log.offsets_for_time(&tps, base - 1).expect("by time"), vec![0, 0]);
    assert_eq!(log.offsets_for_time(&tps, base + 60_000).expect("by time"), vec![10, 0]);
}
