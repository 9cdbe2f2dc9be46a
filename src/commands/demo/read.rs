//! Reading back what the demo added to the log: every committed record a topic gained since
//! the offsets the demo saw before it published.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use storeflow_avro::{Event, Topic};
use storeflow_ingest::{ConsumerConfig, OffsetReset, Record, TopicPartition};

use crate::backends::Backends;

/// Every committed record `topic` gained since `before` (the offsets the demo saw before
/// it published), up to the ends the log has now.
pub(crate) fn records_since(b: &Backends, topic: &str, before: &BTreeMap<(String, u32), u64>) -> anyhow::Result<Vec<Record>> {
    let Some(t) = b.log.describe_topics()?.into_iter().find(|t| t.name == topic) else { return Ok(vec![]) };
    let ranges: Vec<(TopicPartition, u64, u64)> = t
        .partitions
        .iter()
        .map(|p| {
            let from = before.get(&(t.name.clone(), p.partition)).copied().unwrap_or(p.start).max(p.start);
            (TopicPartition::new(&t.name, p.partition), from, p.end)
        })
        .filter(|(_, from, end)| from < end)
        .collect();
    if ranges.is_empty() {
        return Ok(vec![]);
    }
    let mut cfg = ConsumerConfig::new("storeflow-demo-read");
    cfg.reset = OffsetReset::Earliest;
    cfg.read_committed = true;
    let mut consumer = b.log.consumer(cfg, None)?;
    consumer.assign(&ranges.iter().map(|(tp, from, _)| (tp.clone(), *from)).collect::<Vec<_>>())?;
    let ends: BTreeMap<TopicPartition, (u64, u64)> = ranges.iter().map(|(tp, from, end)| (tp.clone(), (*from, *end))).collect();
    // Processors write transactionally: on Kafka, commit markers take offsets too, so the
    // read ends when every partition's position is at its end, or within a marker of it once
    // it has moved (a position that has not moved is where the read began: one record may
    // still be ahead); should a position stop short of trailing markers, when nothing more
    // has come for 3 s.
    let slack = u64::from(b.log.backend() == "kafka");
    let mut out = Vec::new();
    let mut last_record = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && last_record.elapsed() < Duration::from_secs(3) {
        let done = |tp: &TopicPartition, (from, end): (u64, u64)| consumer.position(tp).is_some_and(|p| p >= end || (p > from && p + slack >= end));
        if ends.iter().all(|(tp, r)| done(tp, *r)) {
            break;
        }
        for r in consumer.poll(10_000, Duration::from_millis(100))? {
            last_record = Instant::now();
            if r.offset < ends[&r.tp()].1 {
                out.push(r);
            }
        }
    }
    consumer.close()?;
    Ok(out)
}

/// [`records_since`], decoded (records that do not decode are skipped: the read-back
/// verification already counted them).
pub(crate) fn read_since(b: &Backends, topic: Topic, before: &BTreeMap<(String, u32), u64>) -> anyhow::Result<Vec<Event>> {
    Ok(records_since(b, topic.name(), before)?.iter().filter_map(|r| b.codec.decode(r.value.as_deref().unwrap_or_default()).ok()).collect())
}
