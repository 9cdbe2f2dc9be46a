//! `storeflow topics`: what the log holds; its records as JSON lines (`tail`), and JSON
//! events published to it (`produce`) through the API's validation.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use storeflow_api::writes::Writer;
use storeflow_avro::{Codec, Topic};
use storeflow_ingest::dlq::DeadLetter;
use storeflow_ingest::publish::Publisher;
use storeflow_ingest::{ConsumerConfig, PartitionInfo, Record, TopicPartition};

use crate::backends::Backends;
use crate::cli::Start;
use crate::config::Config;
use crate::report;

/// `storeflow topics list`.
pub fn list(b: &Backends) -> anyhow::Result<()> {
    println!("{:<32} {:>10} {:>12}  {}", "topic", "partitions", "records", "offsets (start..end per partition)");
    for t in b.log.describe_topics()? {
        let ranges: Vec<String> = t.partitions.iter().map(|p| format!("{}..{}", p.start, p.end)).collect();
        println!(
            "{:<32} {:>10} {:>12}  {}{}",
            t.name,
            t.partitions.len(),
            report::count(t.records()),
            ranges.join(" "),
            if t.compact { "  (compacted)" } else { "" }
        );
    }
    Ok(())
}

/// How `storeflow topics tail` reads.
#[derive(Debug, Clone, Copy)]
pub struct Tail {
    /// Where it starts in each partition.
    pub from: Start,
    /// Keep reading past the end until Ctrl-C.
    pub follow: bool,
    /// Stop after this many records.
    pub limit: Option<u64>,
    /// Only this partition.
    pub partition: Option<u32>,
}

/// `storeflow topics tail TOPIC`: one JSON line per record on stdout.
pub fn tail(b: &Backends, topic: &str, how: &Tail) -> anyhow::Result<()> {
    let info = b
        .log
        .describe_topics()?
        .into_iter()
        .find(|t| t.name == topic)
        .with_context(|| format!("there is no topic {topic} on {} (`storeflow topics list` shows them)", b.target))?;
    let parts: Vec<PartitionInfo> = match how.partition {
        Some(p) => vec![*info.partitions.iter().find(|x| x.partition == p).with_context(|| {
            format!("{topic} has no partition {p} (it has {}: 0 to {})", info.partitions.len(), info.partitions.len().saturating_sub(1))
        })?],
        None => info.partitions.clone(),
    };
    let tps: Vec<TopicPartition> = parts.iter().map(|p| TopicPartition::new(topic, p.partition)).collect();
    let starts: Vec<u64> = match how.from {
        Start::Earliest => parts.iter().map(|p| p.start).collect(),
        Start::Latest => parts.iter().map(|p| p.end).collect(),
        Start::Offset(o) => parts.iter().map(|p| o.clamp(p.start, p.end)).collect(),
        Start::Time(ms) => b.log.offsets_for_time(&tps, ms)?,
    };
    // Without --follow: the ends as they are now.
    let ends: HashMap<u32, u64> = parts.iter().map(|p| (p.partition, p.end)).collect();
    let mut todo: HashMap<u32, u64> = parts.iter().zip(&starts).filter(|(p, s)| **s < p.end).map(|(p, s)| (p.partition, *s)).collect();
    let limit = how.limit.unwrap_or(u64::MAX);
    if limit == 0 || (!how.follow && todo.is_empty()) {
        return Ok(());
    }
    let mut consumer = b.log.consumer(ConsumerConfig::new(&format!("storeflow.tail.{}", std::process::id())), None)?;
    consumer.assign(&tps.iter().cloned().zip(starts).collect::<Vec<_>>())?;
    let dead_letters = topic.ends_with(".dlq");
    let stdout = std::io::stdout();
    let mut printed = 0u64;
    let mut idle = 0;
    loop {
        let records = consumer.poll(500, Duration::from_millis(200))?;
        if records.is_empty() {
            idle += 1;
        } else {
            idle = 0;
        }
        let mut out = stdout.lock();
        for r in records {
            if !how.follow && r.offset >= ends[&r.partition] {
                continue;
            }
            todo.retain(|p, _| !(*p == r.partition && r.offset + 1 >= ends[p]));
            let line = record_json(&b.codec, r, dead_letters);
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                // The reader went away (`| head`): that is the end.
                consumer.close()?;
                return Ok(());
            }
            printed += 1;
            if printed >= limit {
                break;
            }
        }
        drop(out);
        if printed >= limit {
            break;
        }
        if !how.follow {
            todo.retain(|p, _| consumer.position(&TopicPartition::new(topic, *p)).is_none_or(|pos| pos < ends[p]));
            // Kafka ends a transaction with a marker that takes an offset and is never
            // returned: a partition whose last offset is one is done once nothing comes.
            if todo.is_empty() || idle >= 10 {
                break;
            }
        }
    }
    consumer.close()?;
    Ok(())
}

/// One record as a JSON line: the event's JSON (`Event::to_json`), and on a dead-letter
/// topic what its `storeflow.dlq.*` headers say.
fn record_json(codec: &Codec, r: Record, dead_letter: bool) -> serde_json::Value {
    let mut line = json!({
        "topic": &*r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "timestamp": storeflow_avro::Timestamp(r.timestamp).to_string(),
        "key": r.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned()),
    });
    match r.value.as_deref().map(|v| codec.decode(v)) {
        Some(Ok(e)) => {
            line["type"] = json!(e.name());
            line["value"] = e.to_json();
        }
        // The runtime's own topics (progress, simulations) hold JSON.
        Some(Err(_)) if r.value.as_deref().is_some_and(|v| serde_json::from_slice::<serde_json::Value>(v).is_ok()) => {
            line["type"] = serde_json::Value::Null;
            line["value"] = r.value.as_deref().and_then(|v| serde_json::from_slice(v).ok()).unwrap_or_default();
        }
        Some(Err(e)) => {
            line["type"] = serde_json::Value::Null;
            line["value"] = serde_json::Value::Null;
            line["error"] = json!(format!("not an event of the contract ({} bytes): {e}", r.value.as_ref().map_or(0, |v| v.len())));
        }
        None => {
            line["type"] = serde_json::Value::Null;
            line["value"] = serde_json::Value::Null;
        }
    }
    if dead_letter {
        let l = DeadLetter::from_record(r);
        line["dead_letter"] = json!({
            "by": l.processor,
            "reason": l.reason,
            "from": format!("{}/{}@{}", l.topic, l.partition, l.offset),
            "at": storeflow_avro::Timestamp(l.time).to_string(),
        });
    }
    line
}

/// `storeflow topics produce TOPIC < events.jsonl`: true when every line was valid (or
/// `skip_invalid` published the valid ones).
pub fn produce(b: &Backends, config: &Config, topic: &str, skip_invalid: bool) -> anyhow::Result<bool> {
    let Some(t) = Topic::from_name(topic) else {
        let names: Vec<&str> = Topic::ALL.iter().filter(|t| t.is_input()).map(|t| t.name()).collect();
        bail!("{topic} is not a topic of the contract; events can be published to {}", names.join(", "));
    };
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).context("reading events from standard input")?;
    // The API's checks, with the configuration `run` gives it.
    let api = storeflow_api::ApiConfig { time: config.time, ..config.api.clone() };
    let mut events = Vec::new();
    let mut bad = Vec::new();
    let mut lines = 0;
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        lines += 1;
        let n = i + 1;
        let checked = serde_json::from_str::<serde_json::Value>(line)
            .map_err(|e| format!("malformed JSON: {e}"))
            .and_then(|v| Writer::validate(vec![v], false, &api).map_err(|e| why(&e)));
        match checked.map(|c| c.into_events().remove(0)) {
            Ok(e) if e.topic() == t => events.push(e),
            Ok(e) => bad.push(format!("line {n}: type: {} belongs to {}, not {topic}", e.name(), e.topic().name())),
            Err(e) => bad.push(format!("line {n}: {e}")),
        }
    }
    for b in &bad {
        eprintln!("{b}");
    }
    if lines == 0 {
        bail!("no events on standard input (one JSON event a line; `storeflow schemas example {}` shows one)", storeflow_avro::EVENT_TYPES.iter().find(|x| x.topic == t).map_or("OrderPlaced", |x| x.name));
    }
    if !bad.is_empty() && !skip_invalid {
        eprintln!("nothing published: {} of {lines} lines are invalid (--skip-invalid publishes the valid ones)", bad.len());
        return Ok(false);
    }
    if events.is_empty() {
        eprintln!("nothing published: no valid line");
        return Ok(false);
    }
    let publisher = Publisher::new(&*b.log, b.codec.clone(), b.vault.clone())?;
    for d in publisher.publish_batch(&events)? {
        d.wait().with_context(|| format!("publishing to {topic} on {}", b.target))?;
    }
    publisher.flush(Duration::from_secs(30))?;
    let skipped = if bad.is_empty() { String::new() } else { format!(" ({} invalid lines skipped)", bad.len()) };
    println!("published {} events to {topic}{skipped}", events.len());
    Ok(true)
}

/// An API validation error as `field: message`.
fn why(e: &storeflow_api::ApiError) -> String {
    match e {
        storeflow_api::ApiError::Invalid { message, field: Some(f), .. } => format!("{f}: {message}"),
        e => e.to_string(),
    }
}
