//! `storeflow demo`: simulated traffic through the log and the processors, read back,
//! decoded and summarised: what flowed, what each processor derived, and what it means
//! (orders' statuses, fraud decisions, vendors' sales, recommendation lists).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use storeflow_avro::{Event, Topic, VendorSalesMinute};
use storeflow_ingest::{ConsumerConfig, OffsetReset, TopicPartition};

use crate::backends::Backends;
use crate::cli::Traffic;
use crate::commands::simulate;
use crate::config::Config;
use crate::{pipeline, report};
use read::read_since;

mod oracle;
mod read;
mod sinks;

/// How many poison records the demo plants on purpose (the DLQ must hold exactly those).
const POISON: usize = 12;

/// `storeflow demo`.
pub fn run(b: &Backends, config: &Config, traffic: &Traffic) -> anyhow::Result<()> {
    for line in b.banner.iter().cloned().chain(pipeline::sinks_banner(config)) {
        eprintln!("{line}");
    }
    // Where each topic ends now: the demo reads back exactly what it adds.
    let before: BTreeMap<(String, u32), u64> = b
        .log
        .describe_topics()?
        .into_iter()
        .flat_map(|t| t.partitions.into_iter().map(move |p| ((t.name.clone(), p.partition), p.end)))
        .collect();
    let cpu_before = report::cpu_seconds();
    // The simulator's producer says where its traffic starts before any processor runs, so
    // none of them takes the quiet start for idleness.
    let publishing = simulate::Publishing::new(b, traffic, POISON, &config.runtime.app)?;
    let metrics = std::sync::Arc::new(storeflow_processors::metrics::Metrics::unregistered());
    let pipeline = pipeline::start(b, config, &[], metrics)?;
    let sinks = pipeline::start_sinks(b, config, &mut prometheus_client::registry::Registry::default())?;
    // What the stores held before this run (after the sinks caught up with the log).
    sinks.wait_caught_up(Duration::from_secs(300))?;
    let stored_before = sinks::stored(&sinks)?;
    let started = Instant::now();
    let follow = simulate::Follow { topology: pipeline.topology.clone(), app: config.runtime.app.clone(), lookahead_ms: config.runtime.lookahead_ms };
    let published = publishing.run(b, Some(follow))?;
    simulate::print_published(&published, &b.target);
    verify_read_back(b, &before, &published, traffic.quiet)?;
    pipeline.wait_caught_up(Duration::from_secs(600))?;
    let processed = started.elapsed();
    println!(
        "\nProcessors {} caught up {} after the first event was published (exactly-once, state under {}):",
        pipeline.names().join(", "),
        report::duration(processed),
        config.runtime.state
    );
    for t in b.log.describe_topics()? {
        let is_derived = Topic::from_name(&t.name).is_some_and(|x| !x.is_input());
        let is_dlq = t.name.ends_with(".dlq");
        if !(is_derived || is_dlq) {
            continue;
        }
        let new: u64 = t.partitions.iter().map(|p| p.end - before.get(&(t.name.clone(), p.partition)).copied().unwrap_or(p.start).max(p.start)).sum();
        if new > 0 || is_derived {
            println!("  {:<34} {:>9} new records", t.name, report::count(new));
        }
    }
    print_outcomes(b, &before)?;
    pipeline.stop()?;
    let planted_orders = published.planted.iter().filter(|p| p.event_type == "OrderPlaced").count() as u64;
    let disagreements = sinks::print_summary(&sinks, &stored_before, &published.summary, planted_orders)?;
    let end_to_end = started.elapsed();
    let cpu = report::cpu_seconds() - cpu_before;
    let verdict = oracle::check(b, config, &sinks, &before, &published, &disagreements)?;
    sinks.stop()?;
    let events = published.summary.events();
    println!(
        "\nEnd to end: {} events in {} — {} events/s from the first publish to the last store write, {:.0} per CPU-second ({:.0} % of one core on average).",
        report::count(events),
        report::duration(end_to_end),
        report::rate(events, end_to_end),
        events as f64 / cpu.max(1e-9),
        100.0 * cpu / end_to_end.as_secs_f64().max(1e-9)
    );
    println!("The HTTP API serves these results with `storeflow run` (http://{}, docs/API.md).", config.listen);
    if !verdict {
        bail!("the pipeline's outcome does not match the simulator's intent (see the verdict above)");
    }
    Ok(())
}

/// Reads every new record of the input topics back through a consumer and decodes it: the
/// log gave back exactly what was published.
fn verify_read_back(b: &Backends, before: &BTreeMap<(String, u32), u64>, published: &simulate::Published, quiet: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let after = b.log.describe_topics()?;
    let mut assignment = Vec::new();
    let mut expected = 0u64;
    // Every input topic but the one the payments worker writes (the demo's simulator posts
    // no payment outcome; the worker's are counted under "what the processors made of it").
    let simulated = |t: Topic| t.is_input() && t != Topic::Payments;
    for t in after.iter().filter(|t| Topic::from_name(&t.name).is_some_and(simulated)) {
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
    let pb = report::progress(expected, "verifying", quiet);
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
        println!("  {:<26} {:>9} {:>10}  {}", topic, report::count(n), report::bytes(bytes.get(topic).copied().unwrap_or(0)), detail.join(" · "));
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
    Ok(())
}

/// What the processors made of the traffic: orders' statuses, fraud decisions, vendors'
/// sales, recommendation lists.
fn print_outcomes(b: &Backends, before: &BTreeMap<(String, u32), u64>) -> anyhow::Result<()> {
    let mut status: BTreeMap<String, String> = BTreeMap::new();
    for e in read_since(b, Topic::Lifecycle, before)? {
        if let Event::OrderStatusChanged(s) = e {
            status.insert(s.order_id, s.status);
        }
    }
    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    for s in status.values() {
        *by_status.entry(s.clone()).or_default() += 1;
    }
    let (mut decisions, mut reasons): (BTreeMap<String, u64>, BTreeMap<String, u64>) = Default::default();
    for e in read_since(b, Topic::FraudScores, before)? {
        if let Event::FraudScored(s) = e {
            *decisions.entry(s.decision).or_default() += 1;
            for r in s.reasons {
                *reasons.entry(r.code).or_default() += 1;
            }
        }
    }
    // The latest update of each vendor-minute is its total.
    let mut minutes: BTreeMap<(String, i64, String), VendorSalesMinute> = BTreeMap::new();
    for e in read_since(b, Topic::VendorSales, before)? {
        if let Event::VendorSalesMinute(m) = e {
            minutes.insert((m.vendor_id.clone(), m.minute.millis(), m.currency.clone()), m);
        }
    }
    let mut lists: BTreeMap<String, u64> = BTreeMap::new();
    for e in read_since(b, Topic::Recommendations, before)? {
        if let Event::RecommendationsUpdated(r) = e {
            *lists.entry(r.kind).or_default() += 1;
        }
    }
    let join = |m: &BTreeMap<String, u64>| m.iter().map(|(k, v)| format!("{k} {}", report::count(*v))).collect::<Vec<_>>().join(", ");
    println!("\nWhat the processors made of it:");
    println!("  orders        {} orders; latest status: {}", report::count(status.len() as u64), join(&by_status));
    let mut top: Vec<(String, u64)> = reasons.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(4);
    let top: Vec<String> = top.into_iter().map(|(k, v)| format!("{k} {}", report::count(v))).collect();
    println!("  fraud         {}; most frequent reasons: {}", join(&decisions), top.join(", "));
    let vendors: std::collections::BTreeSet<&str> = minutes.keys().map(|k| k.0.as_str()).collect();
    let base = minutes.values().next().map(|m| m.base_currency.clone()).unwrap_or_default();
    let gmv: i64 = minutes.values().map(|m| m.gmv_base_minor).sum();
    let payout: i64 = minutes.values().map(|m| m.net_payout_base_minor).sum();
    let conserved = minutes.values().all(|m| m.gmv_minor - m.refunds_minor == m.commission_minor + m.net_payout_minor);
    println!(
        "  sales         {} vendors, {} vendor-minutes, GMV {} {base}, net payout {} {base}; GMV − refunds = commission + payout in every minute: {}",
        vendors.len(),
        report::count(minutes.len() as u64),
        money(gmv),
        money(payout),
        if conserved { "yes" } else { "NO" }
    );
    println!("  recommendations  list updates: {}", join(&lists));
    let payments_conserved = print_payments(b, before)?;
    if !conserved {
        bail!("a vendor-minute does not conserve money");
    }
    if !payments_conserved {
        bail!("an order's payments do not conserve money (captured = transferred + commission + refunded, vendor by vendor)");
    }
    Ok(())
}

/// What the payments worker did (docs/PAYMENTS.md): authorized, declined by reason,
/// captured, transferred, refunded; and whether every order's money is conserved, vendor by
/// vendor (lines captured − refunded = transferred − reversed + commission kept, and
/// transferred = lines − commission), with no order transferring more than it captured.
fn print_payments(b: &Backends, before: &BTreeMap<(String, u32), u64>) -> anyhow::Result<bool> {
    #[derive(Default)]
    struct Vendor {
        gross: i64,
        commission: i64,
        transferred: i64,
        refunded: i64,
        given_back: i64,
        reversed: i64,
    }
    let (mut authorized, mut declined, mut captured, mut refunds) = (0u64, BTreeMap::<String, u64>::new(), BTreeMap::<String, (u64, i64)>::new(), BTreeMap::<String, (u64, i64)>::new());
    let mut captured_of: BTreeMap<String, i64> = BTreeMap::new();
    let mut vendors: BTreeMap<(String, String), Vendor> = BTreeMap::new();
    let mut transfers = 0u64;
    for e in read_since(b, Topic::Payments, before)? {
        match e {
            Event::PaymentAuthorized(_) => authorized += 1,
            Event::PaymentFailed(f) => *declined.entry(f.failure_code).or_default() += 1,
            Event::PaymentCaptured(c) => {
                let x = captured.entry(c.currency).or_default();
                x.0 += 1;
                x.1 += c.amount_minor;
                *captured_of.entry(c.order_id).or_default() += c.amount_minor;
            }
            Event::RefundIssued(r) => {
                let x = refunds.entry(r.currency).or_default();
                x.0 += 1;
                x.1 += r.amount_minor;
            }
            Event::VendorTransferCreated(t) => {
                transfers += 1;
                let v = vendors.entry((t.order_id, t.vendor_id)).or_default();
                v.gross += t.gross_minor;
                v.commission += t.commission_minor;
                v.transferred += t.amount_minor;
            }
            Event::VendorTransferReversed(r) => {
                let v = vendors.entry((r.order_id, r.vendor_id)).or_default();
                v.refunded += r.refunded_minor;
                v.given_back += r.commission_minor;
                v.reversed += r.amount_minor;
            }
            _ => {}
        }
    }
    // Discounts are the marketplace's: a vendor's lines are paid in full (less commission),
    // so what an order transferred is at most what it captured, not its lines.
    let mut transferred_of: BTreeMap<&str, i64> = BTreeMap::new();
    for ((order, _), v) in &vendors {
        *transferred_of.entry(order.as_str()).or_default() += v.transferred;
    }
    let broken = vendors.values().filter(|v| v.gross - v.refunded != (v.transferred - v.reversed) + (v.commission - v.given_back) || v.transferred != v.gross - v.commission).count()
        + transferred_of.iter().filter(|(o, t)| captured_of.get(**o).is_none_or(|c| *t > c)).count();
    let by = |m: &BTreeMap<String, (u64, i64)>| m.iter().map(|(c, (n, a))| format!("{c} {} ({})", money_in(*a, c), report::count(*n))).collect::<Vec<_>>().join(" · ");
    let declines: Vec<String> = declined.iter().map(|(k, v)| format!("{k} {}", report::count(*v))).collect();
    let paid_vendors: std::collections::BTreeSet<&str> = vendors.keys().map(|k| k.1.as_str()).collect();
    println!(
        "  payments      authorized {}; declined {} ({}); captured {}",
        report::count(authorized),
        report::count(declined.values().sum()),
        if declines.is_empty() { "none".to_string() } else { declines.join(", ") },
        if captured.is_empty() { "nothing".to_string() } else { by(&captured) }
    );
    println!(
        "                {} transfers to {} vendors; refunded {}; captured = transferred + commission + refunded for every order and vendor: {}",
        report::count(transfers),
        report::count(paid_vendors.len() as u64),
        if refunds.is_empty() { "nothing".to_string() } else { by(&refunds) },
        if broken == 0 { "yes".to_string() } else { format!("NO ({broken} broken)") }
    );
    Ok(broken == 0)
}

/// `minor` units of `currency` as a decimal amount with thousands separators.
fn money_in(minor: i64, currency: &str) -> String {
    let digits = storeflow_avro::money::exponent(currency);
    let scale = 10u64.pow(digits);
    let units = report::count(minor.unsigned_abs() / scale);
    let sign = if minor < 0 { "-" } else { "" };
    if digits == 0 { format!("{sign}{units}") } else { format!("{sign}{units}.{:0w$}", minor.unsigned_abs() % scale, w = digits as usize) }
}

/// Minor units as a decimal amount with thousands separators (two decimals).
fn money(minor: i64) -> String {
    let units = report::count(minor.unsigned_abs() / 100);
    format!("{}{units}.{:02}", if minor < 0 { "-" } else { "" }, minor.unsigned_abs() % 100)
}
