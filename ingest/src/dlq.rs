//! Dead-letter topics: reading them readably and putting their records back.
//!
//! A record a processor or a sink can never handle goes to `<topic>.dlq` with its original
//! key, value and headers plus the `storeflow.dlq.*` [`headers`] — built in one place,
//! [`dead_letter`] (or [`headers_for`] for a value held back in state). `storeflow dlq
//! list <topic>` shows them; `storeflow dlq replay <topic>` re-publishes each to its original
//! topic, in one transaction with the replay group's offsets, so every dead letter is
//! replayed once however often the command runs.

use std::time::Duration;

use crate::{ConsumerConfig, Header, Log, LogError, OffsetReset, ProduceRecord, Record, Result, TopicPartition};

use headers as h;

/// Header names on dead-letter records.
pub mod headers {
    /// The processor or sink that gave up on the record.
    pub const PROCESSOR: &str = "storeflow.dlq.processor";
    /// Why.
    pub const REASON: &str = "storeflow.dlq.reason";
    /// Where the record came from.
    pub const TOPIC: &str = "storeflow.dlq.topic";
    /// Its partition there.
    pub const PARTITION: &str = "storeflow.dlq.partition";
    /// Its offset there.
    pub const OFFSET: &str = "storeflow.dlq.offset";
    /// When it was dead-lettered (ms since the epoch: stream time for a processor, the
    /// wall clock for a sink).
    pub const TIME: &str = "storeflow.dlq.time";
}

/// The `storeflow.dlq.*` headers: `by` gave up on the record at `offset` of
/// `topic`/`partition` (an offset, or a word such as "held back"), at `at`, because of `reason`.
pub fn headers_for(by: &str, reason: &str, topic: &str, partition: u32, offset: &str, at: i64) -> Vec<Header> {
    vec![
        Header::text(h::PROCESSOR, by),
        Header::text(h::REASON, reason),
        Header::text(h::TOPIC, topic),
        Header::text(h::PARTITION, partition.to_string()),
        Header::text(h::OFFSET, offset),
        Header::text(h::TIME, at.to_string()),
    ]
}

/// The dead-letter record of `record`, which `by` gave up on at `at`: its key, value,
/// headers and timestamp, on `<topic>.dlq`, with the reason.
pub fn dead_letter(by: &str, record: &Record, reason: &str, at: i64) -> ProduceRecord {
    let mut headers = record.headers.clone();
    headers.extend(headers_for(by, reason, &record.topic, record.partition, &record.offset.to_string(), at));
    ProduceRecord {
        topic: storeflow_avro::dlq_topic(&record.topic),
        partition: None,
        key: record.key.as_ref().map(|k| k.to_vec()),
        value: record.value.as_ref().map(|v| v.to_vec()),
        headers,
        timestamp: Some(record.timestamp),
    }
}

/// One dead-lettered record.
#[derive(Clone, Debug)]
pub struct DeadLetter {
    /// Its offset on the dead-letter topic.
    pub dlq_offset: u64,
    /// The processor that gave up.
    pub processor: String,
    /// Why.
    pub reason: String,
    /// Where it came from.
    pub topic: String,
    /// Its partition there.
    pub partition: u32,
    /// Its offset there.
    pub offset: u64,
    /// When it was dead-lettered (ms, stream time).
    pub time: i64,
    /// The record as it is on the dead-letter topic.
    pub record: Record,
}

/// `orders` or `orders.dlq` → `orders.dlq`.
pub fn dlq_name(topic: &str) -> String {
    if topic.ends_with(".dlq") { topic.to_string() } else { storeflow_avro::dlq_topic(topic) }
}

fn text(r: &Record, key: &str) -> String {
    r.header(key).map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default()
}

fn read(log: &dyn Log, dlq: &str, from: Option<&[(TopicPartition, u64)]>) -> Result<Vec<Record>> {
    let info = log
        .describe_topics()?
        .into_iter()
        .find(|t| t.name == dlq)
        .ok_or_else(|| LogError::UnknownTopic(dlq.to_string()))?;
    let assignment: Vec<(TopicPartition, u64)> = match from {
        Some(f) => f.to_vec(),
        None => info.partitions.iter().map(|p| (TopicPartition::new(dlq, p.partition), p.start)).collect(),
    };
    let ends: Vec<u64> = info.partitions.iter().map(|p| p.end).collect();
    let mut cfg = ConsumerConfig::new(&format!("storeflow.dlq-list.{}", std::process::id()));
    cfg.reset = OffsetReset::Earliest;
    let mut c = log.consumer(cfg, None)?;
    c.assign(&assignment)?;
    let mut out = Vec::new();
    let mut idle = 0;
    while idle < 3 {
        let recs = c.poll(10_000, Duration::from_millis(200))?;
        if recs.is_empty() {
            idle += 1;
            let done = assignment.iter().all(|(tp, _)| c.position(tp).unwrap_or(0) >= ends[tp.partition as usize]);
            if done {
                break;
            }
        } else {
            idle = 0;
        }
        out.extend(recs);
    }
    c.close()?;
    out.sort_by_key(|r| (r.partition, r.offset));
    Ok(out)
}

/// The dead letters of `topic` (or of the dead-letter topic named directly).
pub fn list(log: &dyn Log, topic: &str) -> Result<Vec<DeadLetter>> {
    Ok(read(log, &dlq_name(topic), None)?.into_iter().map(DeadLetter::from_record).collect())
}

impl DeadLetter {
    /// Reads the `storeflow.dlq.*` headers of a record of a dead-letter topic.
    pub fn from_record(r: Record) -> DeadLetter {
        DeadLetter {
            dlq_offset: r.offset,
            processor: text(&r, h::PROCESSOR),
            reason: text(&r, h::REASON),
            topic: text(&r, h::TOPIC),
            partition: text(&r, h::PARTITION).parse().unwrap_or(0),
            offset: text(&r, h::OFFSET).parse().unwrap_or(0),
            time: text(&r, h::TIME).parse().unwrap_or(0),
            record: r,
        }
    }
}

/// What a replay did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Records put back on their original topic.
    pub replayed: u64,
    /// Dead letters without an original topic header (left alone).
    pub skipped: u64,
}

/// Re-publishes the dead letters of `topic` that were not replayed before.
pub fn replay(log: &dyn Log, topic: &str) -> Result<Replayed> {
    let dlq = dlq_name(topic);
    let group = format!("storeflow.dlq-replay.{dlq}");
    let info = log
        .describe_topics()?
        .into_iter()
        .find(|t| t.name == dlq)
        .ok_or_else(|| LogError::UnknownTopic(dlq.to_string()))?;
    let tps: Vec<TopicPartition> = info.partitions.iter().map(|p| TopicPartition::new(&dlq, p.partition)).collect();
    let committed = log.committed_offsets(&group, &tps)?;
    let from: Vec<(TopicPartition, u64)> = tps
        .iter()
        .zip(committed)
        .zip(&info.partitions)
        .map(|((tp, c), p)| (tp.clone(), c.unwrap_or(p.start).max(p.start)))
        .collect();
    let records = read(log, &dlq, Some(&from))?;
    let mut report = Replayed::default();
    if records.is_empty() {
        return Ok(report);
    }
    // The replay group's offsets go in the same transaction as the re-published records. The
    // group has no live members, so a consumer that never subscribes stands for it.
    let member = log.consumer(ConsumerConfig::new(&group), None)?;
    let meta = member
        .group_metadata()
        .ok_or_else(|| LogError::Transaction("the replay consumer has no group metadata".into()))?;
    let mut txn = log.transactional_producer(&group)?;
    txn.begin()?;
    let mut next: Vec<(TopicPartition, u64)> = Vec::new();
    for r in &records {
        let original = text(r, h::TOPIC);
        if original.is_empty() {
            report.skipped += 1;
        } else {
            let mut headers: Vec<Header> = r.headers.iter().filter(|x| !x.key.starts_with("storeflow.dlq.")).cloned().collect();
            headers.push(Header::text("storeflow.replayed_from", format!("{dlq}@{}/{}", r.partition, r.offset)));
            txn.send(ProduceRecord {
                topic: original,
                partition: None,
                key: r.key.as_ref().map(|k| k.to_vec()),
                value: r.value.as_ref().map(|v| v.to_vec()),
                headers,
                timestamp: Some(r.timestamp),
            })?;
            report.replayed += 1;
        }
        match next.iter_mut().find(|(tp, _)| *tp == r.tp()) {
            Some(e) => e.1 = e.1.max(r.offset + 1),
            None => next.push((r.tp(), r.offset + 1)),
        }
    }
    txn.send_offsets(&next, &meta)?;
    txn.commit()?;
    member.close()?;
    Ok(report)
}
