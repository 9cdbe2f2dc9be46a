//! Fraud state stays bounded: 1,000,000 simulated orders through the fraud processor (in the
//! test driver, so only the processor's own work is measured), printing the state's size every
//! 100,000 orders — live entries and bytes per store, including the expiry index — against
//! the baseline of keeping every window ever opened (what the state would hold without
//! expiry), counted in the same run.
//!
//! `cargo bench -p storeflow-bench --bench fraud_state` (about two minutes in release);
//! `STOREFLOW_BENCH_HISTORY_DAYS=7` shortens the customers' amount history (90 days by
//! default, longer than the run) to show that store levelling off too.

use std::collections::HashSet;
use std::time::Instant;

use storeflow_avro::Event;
use storeflow_processors::fraud::{Fraud, FraudConfig};
use storeflow_processors::{Processor, TestDriver};
use storeflow_sim::{SimConfig, Simulator};

const ORDERS: u64 = 1_000_000;
const EVERY: u64 = 100_000;

fn main() {
    let orders_wanted = std::env::var("STOREFLOW_BENCH_ORDERS").ok().and_then(|v| v.parse().ok()).unwrap_or(ORDERS);
    let mut sim = Simulator::new(SimConfig { seed: 7, fraud_ring_share: 0.01, ..SimConfig::default() });
    let history_days = std::env::var("STOREFLOW_BENCH_HISTORY_DAYS").ok().and_then(|v| v.parse().ok()).unwrap_or(90);
    let mut d = TestDriver::new(Fraud::new(FraudConfig { history_days, ..FraudConfig::default() }));
    println!("fraud state over {orders_wanted} simulated orders, customer history kept {history_days} days\n");
    let started = Instant::now();
    let (mut orders, mut first, mut ever) = (0u64, None, HashSet::new());
    println!("{:>9} {:>8} | {:>18} {:>18} {:>18} {:>18} | {:>10} {:>8}", "orders", "sim days", "windows", "history", "pending", "expiry index", "ever keys", "live/ever");
    while orders < orders_wanted {
        let Some(e) = sim.next() else { break };
        let Event::OrderPlaced(o) = &e else { continue };
        let at = o.occurred_at.millis();
        first.get_or_insert(at);
        ever.insert(format!("customer|{}", o.customer_id));
        ever.insert(format!("ip|{}", o.client_ip));
        orders += 1;
        d.pipe(e);
        if orders % 1000 == 0 {
            d.forget_records();
        }
        if orders % EVERY == 0 || orders == orders_wanted {
            let days = (at - first.unwrap_or(at)) as f64 / 86_400_000.0;
            let sizes: Vec<(usize, usize)> = ["windows", "history", "pending", "__expiry"].iter().map(|s| d.store_size("fraud", s)).collect();
            let cell = |(n, b): (usize, usize)| format!("{n:>8} {:>7.1} MiB", b as f64 / 1048576.0);
            println!(
                "{orders:>9} {days:>8.1} | {:>18} {:>18} {:>18} {:>18} | {:>10} {:>7.1}%",
                cell(sizes[0]),
                cell(sizes[1]),
                cell(sizes[2]),
                cell(sizes[3]),
                ever.len(),
                100.0 * sizes[0].0 as f64 / ever.len().max(1) as f64
            );
        }
    }
    let total: usize = ["windows", "history", "pending", "__expiry", "__timers"].iter().map(|s| d.store_size("fraud", s).1).sum();
    println!(
        "\n{orders} orders in {:.0} s ({:.0} orders/s through the fraud processor and the simulator); state at the end: {:.1} MiB",
        started.elapsed().as_secs_f64(),
        orders as f64 / started.elapsed().as_secs_f64(),
        total as f64 / 1048576.0
    );
}
