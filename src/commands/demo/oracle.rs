//! The demo's verdict: the simulator's intent against the pipeline's outcome, read from the
//! log and the stores after everything caught up.
//!
//! - an order paid within the payment timeout is never cancelled for non-payment;
//! - every order placed has a fraud verdict;
//! - the read model's stock equals inventory's last level of every sku in every warehouse;
//! - the dead-letter topics hold exactly the poison the simulator planted.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use storeflow_avro::{Event, Topic};
use storeflow_ingest::Record;
use storeflow_sinks::Sinks;

use super::read::records_since;
use crate::backends::Backends;
use crate::commands::simulate::Published;
use crate::config::Config;
use crate::report;

fn decoded(b: &Backends, records: &[Record]) -> Vec<(i64, Event)> {
    records.iter().filter_map(|r| b.codec.decode(r.value.as_deref().unwrap_or_default()).ok().map(|e| (r.timestamp, e))).collect()
}

/// Checks the run and prints the verdict table; true when every line holds.
pub fn check(b: &Backends, config: &Config, sinks: &Sinks, before: &BTreeMap<(String, u32), u64>, published: &Published, disagreements: &[String]) -> anyhow::Result<bool> {
    let planted: BTreeSet<&str> = published.planted.iter().map(|p| p.event_id.as_str()).collect();
    let timeout = config
        .processors
        .get("orders")
        .and_then(|c| c.get("payment_timeout_ms"))
        .and_then(|v| v.as_i64())
        .unwrap_or(storeflow_processors::orders::OrdersConfig::default().payment_timeout_ms);

    // What the simulator did.
    let mut placed: BTreeMap<String, i64> = BTreeMap::new();
    for (_, e) in decoded(b, &records_since(b, Topic::Orders.name(), before)?) {
        if let Event::OrderPlaced(o) = &e {
            if !planted.contains(o.event_id.as_str()) {
                placed.insert(o.order_id.clone(), o.occurred_at.millis());
            }
        }
    }
    let mut paid: HashMap<String, i64> = HashMap::new();
    for (_, e) in decoded(b, &records_since(b, Topic::Payments.name(), before)?) {
        if let Event::PaymentAuthorized(p) = &e {
            paid.entry(p.order_id.clone()).or_insert(p.occurred_at.millis());
        }
    }
    // What the pipeline made of it.
    let mut timed_out: BTreeSet<String> = BTreeSet::new();
    let mut final_status: HashMap<String, (i64, String)> = HashMap::new();
    for (_, e) in decoded(b, &records_since(b, Topic::Lifecycle.name(), before)?) {
        if let Event::OrderStatusChanged(s) = e {
            if s.reason == "no payment authorized in time" {
                timed_out.insert(s.order_id.clone());
            }
            let slot = final_status.entry(s.order_id).or_insert((i64::MIN, String::new()));
            if s.version > slot.0 {
                *slot = (s.version, s.status);
            }
        }
    }
    let scored: BTreeSet<String> = decoded(b, &records_since(b, Topic::FraudScores.name(), before)?)
        .into_iter()
        .filter_map(|(_, e)| if let Event::FraudScored(f) = e { Some(f.order_id) } else { None })
        .collect();
    let mut levels: BTreeMap<(String, String), (i64, i64, i64)> = BTreeMap::new();
    for (_, e) in decoded(b, &records_since(b, Topic::StockLevels.name(), before)?) {
        if let Event::StockLevelChanged(l) = e {
            let slot = levels.entry((l.sku, l.warehouse_id)).or_insert((i64::MIN, 0, 0));
            if l.version > slot.0 {
                *slot = (l.version, i64::from(l.on_hand), i64::from(l.reserved));
            }
        }
    }
    let mut dead: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in b.log.describe_topics()?.into_iter().filter(|t| t.name.ends_with(".dlq")) {
        for r in records_since(b, &t.name, before)? {
            let id = b.codec.decode(r.value.as_deref().unwrap_or_default()).map(|e| e.event_id().to_string()).unwrap_or_else(|_| format!("(undecodable, {}@{})", t.name, r.offset));
            let reason = r.header(storeflow_processors::dlq_headers::REASON).map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default();
            dead.entry(id).or_default().push(format!("{}: {reason}", t.name));
        }
    }

    // The checks.
    let paid_in_time: Vec<&String> = placed.iter().filter(|(o, at)| paid.get(*o).is_some_and(|p| *p <= **at + timeout)).map(|(o, _)| o).collect();
    let wrongly_cancelled: Vec<&&String> = paid_in_time.iter().filter(|o| timed_out.contains(**o)).collect();
    let unscored: Vec<&String> = placed.keys().filter(|o| !scored.contains(*o)).collect();
    let mut stock_wrong: Vec<String> = Vec::new();
    if let Some(rm) = sinks.read_model() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let skus: BTreeSet<&String> = levels.keys().map(|(s, _)| s).collect();
        for sku in skus {
            let view = rt.block_on(rm.inventory(sku))?;
            for ((s, w), (_, on_hand, reserved)) in levels.range((sku.clone(), String::new())..).take_while(|((s, _), _)| s == sku) {
                let row = view.as_ref().and_then(|v| v.warehouses.iter().find(|x| &x.warehouse_id == w));
                let agrees = row.is_some_and(|r| r.on_hand == *on_hand && r.reserved == *reserved);
                if !agrees {
                    stock_wrong.push(format!("{s} at {w}: inventory {on_hand} on hand / {reserved} reserved, read model {}", row.map(|r| format!("{} / {}", r.on_hand, r.reserved)).unwrap_or_else(|| "nothing".into())));
                }
            }
        }
    }
    let unplanned: Vec<(&String, &Vec<String>)> = dead.iter().filter(|(id, _)| !planted.contains(id.as_str())).collect();
    let missed: Vec<&&str> = planted.iter().filter(|id| !dead.contains_key(**id)).collect();
    let dead_letters: usize = dead.values().map(Vec::len).sum();

    let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, s) in final_status.values() {
        *by_status.entry(s.as_str()).or_default() += 1;
    }
    let mark = |ok: bool| if ok { "✓" } else { "✗" };
    println!("\nVerdict — the simulator's intent against the pipeline's outcome:");
    println!(
        "  {} paid in time, cancelled for non-payment   {} of {} orders paid within {} s",
        mark(wrongly_cancelled.is_empty()),
        wrongly_cancelled.len(),
        report::count(paid_in_time.len() as u64),
        timeout / 1000
    );
    println!("  {} orders without a fraud verdict            {} of {}", mark(unscored.is_empty()), unscored.len(), report::count(placed.len() as u64));
    println!(
        "  {} read model stock = inventory's last level  {} of {} sku-warehouses differ",
        mark(stock_wrong.is_empty()),
        stock_wrong.len(),
        report::count(levels.len() as u64)
    );
    println!(
        "  {} dead letters = the planted poison          {} planted, {} dead letters, {} unplanned, {} planted but not refused",
        mark(unplanned.is_empty() && missed.is_empty()),
        planted.len(),
        dead_letters,
        unplanned.len(),
        missed.len()
    );
    println!(
        "  {} stores hold what the simulator made       {}",
        mark(disagreements.is_empty()),
        if disagreements.is_empty() { "orders, products and searchable products agree".to_string() } else { disagreements.join("; ") }
    );
    let statuses: Vec<String> = by_status.iter().map(|(s, n)| format!("{s} {}", report::count(*n))).collect();
    println!("  orders by final status: {}", statuses.join(", "));
    for o in wrongly_cancelled.iter().take(5) {
        println!("    cancelled although paid at {} ms after placing: {o}", paid[o.as_str()] - placed[o.as_str()]);
    }
    for o in unscored.iter().take(5) {
        println!("    no fraud verdict: {o}");
    }
    for s in stock_wrong.iter().take(5) {
        println!("    {s}");
    }
    for (id, where_) in unplanned.iter().take(5) {
        println!("    unplanned dead letter {id}: {}", where_.join("; "));
    }
    for id in missed.iter().take(5) {
        println!("    planted but processed: {id}");
    }
    Ok(wrongly_cancelled.is_empty() && unscored.is_empty() && stock_wrong.is_empty() && unplanned.is_empty() && missed.is_empty() && disagreements.is_empty())
}
