//! `storeflow demo`: simulated traffic through the log, read back and decoded, summarised.
//!
//! What runs today is the embedded log with the event contract; the summary says exactly
//! what flowed and was verified, nothing more.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use storeflow_avro::Topic;
use storeflow_ingest::{ConsumerConfig, OffsetReset, TopicPartition};

use crate::backends::Backends;
use crate::cli::Traffic;
use crate::commands::simulate;
use crate::config::Config;
use crate::{pipeline, report};

/// `storeflow demo`.
pub fn run(b: &Backends, config: &Config, traffic: &Traffic) -> anyhow::Result<()> {
    for line in &b.banner {
        eprintln!("{line}");
    }
    let metrics = std::sync::Arc::new(storeflow_processors::metrics::Metrics::unregistered());
    let pipeline = pipeline::start(b, config, &[], metrics)?;
    // Where each input topic ends now: the demo reads back exactly what it adds.
    let before: BTreeMap<(String, u32), u64> = b
        .log
        .describe_topics()?
        .into_iter()
        .flat_map(|t| t.partitions.into_iter().map(move |p| ((t.name.clone(), p.partition), p.end)))
        .collect();
    let published = simulate::publish(b, traffic)?;
    simulate::print_published(&published, &b.target);

    // Read every new record back through a consumer and decode it.
    let started = Instant::now();
    let after = b.log.describe_topics()?;
    let mut assignment = Vec::new();
    let mut expected = 0u64;
    for t in after.iter().filter(|t| Topic::from_name(&t.name).is_some_and(|t| t.is_input())) {
        for p in &t.partitions {
            let from = before.get(&(t.name.clone(), p.partition)).copied().unwrap_or(p.start).max(p.start);
            expected += p.end - from;
            assignment.push((TopicPartition::new(&t.name, p.partition), from, p.end));
        }
    }
    let mut cfg = ConsumerConfig::new("storeflow-demo-verify");
    cfg.reset = OffsetReset::Earliest;
    let mut consumer = b.log.consumer(cfg, None)?;
    consumer.assign(&assignment.iter().map(|(tp, from, _)| (tp.clone(), *from)).collect::<Vec<_>>())?;
    let ends: BTreeMap<TopicPartition, u64> = assignment.iter().map(|(tp, _, end)| (tp.clone(), *end)).collect();
    let pb = report::progress(expected, "verifying", traffic.quiet);
    let mut by_topic: BTreeMap<String, BTreeMap<&'static str, u64>> = BTreeMap::new();
    let mut bytes: BTreeMap<String, u64> = BTreeMap::new();
    let (mut read, mut errors) = (0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(120);
    while read < expected {
        if Instant::now() > deadline {
            bail!("read back only {read} of {expected} records within 2 minutes");
        }
        for r in consumer.poll(10_000, Duration::from_millis(200))? {
            if r.offset >= ends[&r.tp()] {
                continue;
            }
            read += 1;
            *bytes.entry(r.topic.to_string()).or_default() += r.value.as_ref().map_or(0, |v| v.len() as u64);
            match b.codec.decode(r.value.as_deref().unwrap_or_default()) {
                Ok(e) => *by_topic.entry(r.topic.to_string()).or_default().entry(e.name()).or_default() += 1,
                Err(e) => {
                    errors += 1;
                    tracing::error!(topic = %r.topic, offset = r.offset, error = %e, "a record does not decode");
                }
            }
        }
        pb.set_position(read);
    }
    pb.finish_and_clear();
    consumer.close()?;
    let elapsed = started.elapsed();

    println!();
    println!("What flowed through the log (read back and decoded from the Confluent wire format):");
    println!("  {:<26} {:>9} {:>10}  event types", "topic", "records", "bytes");
    for (topic, types) in &by_topic {
        let n: u64 = types.values().sum();
        let detail: Vec<String> = types.iter().map(|(t, c)| format!("{t} {}", report::count(*c))).collect();
        println!(
            "  {:<26} {:>9} {:>10}  {}",
            topic,
            report::count(n),
            report::bytes(bytes.get(topic).copied().unwrap_or(0)),
            detail.join(" · ")
        );
    }
    println!(
        "Verified {} of {} records in {} ({} records/s), {} decode errors.",
        report::count(read - errors),
        report::count(published.summary.events()),
        report::duration(elapsed),
        report::rate(read, elapsed),
        errors
    );
    if read != published.summary.events() || errors > 0 {
        bail!("the log did not give back exactly what was published");
    }
    if pipeline.names().is_empty() {
        println!("Processors: none registered in this build yet.");
    } else {
        let started = Instant::now();
        pipeline.wait_caught_up(Duration::from_secs(300))?;
        println!(
            "\nProcessors {} caught up in {} (exactly-once, state under {}):",
            pipeline.names().join(", "),
            report::duration(started.elapsed()),
            config.runtime.state
        );
        let derived_before = &before;
        for t in b.log.describe_topics()? {
            let is_derived = Topic::from_name(&t.name).is_some_and(|x| !x.is_input());
            let is_dlq = t.name.ends_with(".dlq");
            if !(is_derived || is_dlq) {
                continue;
            }
            let new: u64 = t
                .partitions
                .iter()
                .map(|p| p.end - derived_before.get(&(t.name.clone(), p.partition)).copied().unwrap_or(p.start).max(p.start))
                .sum();
            if new > 0 || is_derived {
                println!("  {:<34} {:>9} new records", t.name, report::count(new));
            }
        }
    }
    pipeline.stop()?;
    println!("Not running yet in this build: sinks and the HTTP API.");
    Ok(())
}
