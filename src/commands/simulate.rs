//! `storeflow simulate`: publish simulated traffic through the ingest path.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use storeflow_avro::Timestamp;
use storeflow_ingest::publish::record_for;
use storeflow_sim::{SimConfig, SimSummary, Simulator};

use crate::backends::Backends;
use crate::cli::Traffic;
use crate::report;

/// What a publishing run did.
pub struct Published {
    /// What the simulator generated.
    pub summary: SimSummary,
    /// Bytes published per topic.
    pub bytes_by_topic: BTreeMap<&'static str, u64>,
    /// Wall-clock time spent.
    pub elapsed: Duration,
}

/// Publishes `traffic.events` simulated events, acknowledged, with a progress bar.
pub fn publish(b: &Backends, traffic: &Traffic) -> anyhow::Result<Published> {
    let mut sim = Simulator::new(SimConfig {
        seed: traffic.seed,
        start: Timestamp::now(),
        fraud_ring_share: traffic.fraud_ring.clamp(0.0, 1.0),
        // Established customers are imported first; a short run keeps most of its event
        // budget for sessions and orders (1,000 from 20,000 events up).
        established_customers: (traffic.events / 20).min(1000) as usize,
        ..SimConfig::default()
    });
    let producer = b.log.producer()?;
    let pb = report::progress(traffic.events, "publishing", traffic.quiet);
    let started = Instant::now();
    let batch_size = if traffic.rate > 0.0 { ((traffic.rate / 20.0).ceil() as usize).clamp(1, 2000) } else { 2000 };
    let mut bytes_by_topic: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut sent = 0u64;
    let mut batch = Vec::with_capacity(batch_size);
    while sent < traffic.events {
        batch.clear();
        let want = batch_size.min((traffic.events - sent) as usize);
        for e in sim.by_ref().take(want) {
            let rec = record_for(&b.codec, &e).with_context(|| format!("encoding {}", e.name()))?;
            *bytes_by_topic.entry(e.topic().name()).or_default() += rec.value.as_ref().map_or(0, |v| v.len() as u64);
            batch.push(rec);
        }
        if batch.is_empty() {
            break;
        }
        let n = batch.len() as u64;
        for ack in producer.send_batch(std::mem::take(&mut batch))? {
            ack.wait().context("publishing simulated events")?;
        }
        sent += n;
        pb.set_position(sent);
        if traffic.rate > 0.0 {
            let due = Duration::from_secs_f64(sent as f64 / traffic.rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    producer.flush(Duration::from_secs(30))?;
    pb.finish_and_clear();
    Ok(Published {
        summary: sim.summary().clone(),
        bytes_by_topic,
        elapsed: started.elapsed(),
    })
}

/// Prints what was published.
pub fn print_published(p: &Published, target: &str) {
    let s = &p.summary;
    println!(
        "Published {} simulated events in {} ({} events/s) to {target}.",
        report::count(s.events()),
        report::duration(p.elapsed),
        report::rate(s.events(), p.elapsed)
    );
    println!(
        "  {} sessions, {} orders ({} by the simulated fraud ring), GMV €{}.{:02}",
        report::count(s.sessions),
        report::count(s.orders),
        report::count(s.ring_orders),
        report::count((s.gmv_eur_minor / 100) as u64),
        s.gmv_eur_minor % 100
    );
}

/// `storeflow simulate`.
pub fn run(b: &Backends, traffic: &Traffic) -> anyhow::Result<()> {
    for line in &b.banner {
        eprintln!("{line}");
    }
    let p = publish(b, traffic)?;
    print_published(&p, &b.target);
    println!("  {:<28} {:>10} {:>10}", "topic", "events", "bytes");
    for (topic, n) in &p.summary.by_topic {
        println!(
            "  {:<28} {:>10} {:>10}",
            topic,
            report::count(*n),
            report::bytes(p.bytes_by_topic.get(topic).copied().unwrap_or(0))
        );
    }
    Ok(())
}
