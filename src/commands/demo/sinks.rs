//! The sinks' part of `storeflow demo`: what their stores held before the run, and after it
//! how many records each sink wrote and whether the stores agree with the simulator.

use std::time::{Duration, Instant};

use anyhow::Context;
use storeflow_sim::SimSummary;
use storeflow_sinks::Sinks;

use crate::report;

/// Rows the demo compares with the simulator's summary, per store.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stored {
    /// Orders in the read model.
    orders: Option<u64>,
    /// Products in the read model.
    products: Option<u64>,
    /// Rows of the analytics orders fact table.
    fact_orders: Option<u64>,
    /// Product documents in the search index.
    product_docs: Option<u64>,
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(f))
}

/// Counts what the running sinks' stores hold now.
pub fn stored(sinks: &Sinks) -> anyhow::Result<Stored> {
    block_on(async {
        let mut s = Stored::default();
        if let Some(rm) = sinks.read_model() {
            let c = rm.counts().await.context("counting the read model's rows")?;
            s.orders = Some(c.get("orders").copied().unwrap_or(0).max(0) as u64);
            s.products = Some(c.get("products").copied().unwrap_or(0).max(0) as u64);
        }
        if let Some(a) = sinks.analytics() {
            let c = a.row_counts().await.context("counting the analytics tables' rows")?;
            s.fact_orders = Some(c.get("fact_orders").copied().unwrap_or(0));
        }
        if let Some(search) = sinks.search() {
            search.refresh().await.context("refreshing the search index")?;
            s.product_docs = Some(search.product_count().await.context("counting the product documents")?);
        }
        anyhow::Ok(s)
    })?
}

/// Waits for the sinks to write everything on the log, then prints per sink the records it
/// wrote and the rows its store gained, next to what the simulator produced. On stores that
/// were empty before the run the counts must agree (a store may also keep the orders of the
/// `planted` poison that its own rules let through); returns the disagreements.
pub fn print_summary(sinks: &Sinks, before: &Stored, summary: &SimSummary, planted_orders: u64) -> anyhow::Result<Vec<String>> {
    if sinks.names().is_empty() {
        println!("\nSinks: all disabled in [sinks].");
        return Ok(vec![]);
    }
    let started = Instant::now();
    sinks.wait_caught_up(Duration::from_secs(300))?;
    let after = stored(sinks)?;
    println!("\nSinks {} caught up in {}:", sinks.names().join(", "), report::duration(started.elapsed()));
    let counts = sinks.counts();
    let backend = |name: &str| match name {
        "read_model" => sinks.read_model().map(|h| h.backend()),
        "analytics" => sinks.analytics().map(|h| h.backend()),
        "search" => sinks.search().map(|h| h.backend()),
        _ => None,
    };
    let created = summary.by_type.get("ProductCreated").copied().unwrap_or(0);
    let mut mismatches = Vec::new();
    let mut check = |what: &str, before: Option<u64>, after: Option<u64>, expected: u64| -> String {
        let (Some(b), Some(a)) = (before, after) else { return String::new() };
        if b == 0 {
            let slack = if what.contains("order") { planted_orders } else { 0 };
            if !(expected..=expected + slack).contains(&a) {
                mismatches.push(format!("{what}: {a} in the store, {expected} from the simulator"));
            }
            format!("{} {what} (simulator: {})", report::count(a), report::count(expected))
        } else {
            format!("{} {what} ({} before this run)", report::count(a), report::count(b))
        }
    };
    for (name, c) in &counts {
        let rows = match *name {
            "read_model" => [check("orders", before.orders, after.orders, summary.orders), check("products", before.products, after.products, created)].join(", "),
            "analytics" => check("order facts", before.fact_orders, after.fact_orders, summary.orders),
            "search" => check("searchable products", before.product_docs, after.product_docs, created),
            _ => String::new(),
        };
        println!(
            "  {:<11} {:<14} {:>9} records written, {} dead-lettered; {rows}",
            name,
            backend(name).unwrap_or("-"),
            report::count(c.written),
            report::count(c.dead_lettered),
        );
    }
    Ok(mismatches)
}
