//! The simulated traffic on its own (open loop): deterministic, valid against the contract,
//! in time order, as dense as a busy marketplace and with whole order lifecycles.

use std::collections::{HashMap, HashSet};

use storeflow_avro::json::JsonOptions;
use storeflow_avro::{EVENT_TYPES, Event, Timestamp};
use storeflow_sim::{SimConfig, Simulator};

const START: i64 = 1_764_000_000_000;

fn config(seed: u64) -> SimConfig {
    SimConfig { seed, start: Timestamp(START), fraud_ring_share: 0.02, ..Default::default() }
}

fn events(n: usize, seed: u64) -> Vec<Event> {
    Simulator::new(config(seed)).take(n).collect()
}

#[test]
fn the_summary_counts_exactly_the_events_taken() {
    let mut sim = Simulator::new(SimConfig { seed: 3, ..Default::default() });
    let taken: Vec<Event> = sim.by_ref().take(7777).collect();
    assert_eq!(sim.summary().events(), 7777);
    let orders = taken.iter().filter(|e| matches!(e, Event::OrderPlaced(_))).count() as u64;
    assert_eq!(sim.summary().orders, orders);
    assert!(orders > 0, "7,777 events of a busy marketplace hold orders");
}

#[test]
fn the_same_seed_gives_the_same_events_and_another_seed_does_not() {
    assert_eq!(events(20_000, 7), events(20_000, 7));
    assert_ne!(events(20_000, 7), events(20_000, 8));
}

#[test]
fn every_event_passes_the_contracts_validation() {
    for e in events(50_000, 1) {
        storeflow_avro::json::event_from_json(e.to_json(), JsonOptions::default())
            .unwrap_or_else(|err| panic!("{} fails validation: {err}", e.name()));
    }
}

#[test]
fn traffic_covers_every_input_event_type() {
    let seen: HashSet<&str> = events(200_000, 3).iter().map(|e| e.name()).collect();
    // Payment outcomes come from the payments worker, never from the storefront; so do the
    // vendors' plans and connected accounts (the worker, onboarding and Stripe's webhooks).
    let of_the_worker = |name: &str| matches!(name, "VendorPlanChanged" | "VendorAccountUpdated");
    for t in EVENT_TYPES.iter().filter(|t| t.topic.is_input()) {
        if t.topic == storeflow_avro::Topic::Payments || of_the_worker(t.name) {
            assert!(!seen.contains(t.name), "the simulator posted a payment outcome ({})", t.name);
        } else {
            assert!(seen.contains(t.name), "the simulator never produced {}", t.name);
        }
    }
    let declining = events(200_000, 3)
        .iter()
        .filter(|e| matches!(e, Event::OrderPlaced(o) if storeflow_sim::DECLINED_CARDS.contains(&o.payment_method_token.as_str())))
        .count();
    assert!(declining > 50, "only {declining} checkouts carried a declining test card");
}

#[test]
fn events_come_in_time_order() {
    let mut last = Timestamp(i64::MIN);
    for e in events(100_000, 5) {
        assert!(e.occurred_at() >= last, "{} at {} came after {last}", e.name(), e.occurred_at());
        last = e.occurred_at();
    }
}

#[test]
fn events_come_in_time_order_per_key() {
    let mut last: HashMap<String, Timestamp> = HashMap::new();
    for e in events(30_000, 5) {
        let k = format!("{}|{}", e.topic(), e.key());
        if let Some(prev) = last.insert(k.clone(), e.occurred_at()) {
            assert!(e.occurred_at() >= prev, "{k} went back in time");
        }
    }
}

#[test]
fn orders_use_the_shoppers_currency_and_consistent_totals() {
    let mut currencies = HashSet::new();
    for e in events(30_000, 9) {
        if let Event::OrderPlaced(o) = e {
            assert!(o.total_minor() > 0);
            assert!(!o.items.is_empty());
            o.check_amounts().unwrap_or_else(|err| panic!("order {}: {err}", o.order_id));
            currencies.insert(o.currency);
        }
    }
    assert!(currencies.len() >= 3, "{currencies:?}");
}

#[test]
fn a_busy_run_has_the_density_and_the_lifecycles_it_promises() {
    let config = SimConfig { seed: 11, start: Timestamp(START), ..Default::default() };
    let expected_span = config.expected_span_ms(200_000);
    let mut sim = Simulator::new(config);
    let events: Vec<Event> = sim.by_ref().take(200_000).collect();
    let count = |name: &str| events.iter().filter(|e| e.name() == name).count() as f64;
    let span = (events.last().expect("events").occurred_at().millis() - START) as f64;
    let minutes = span / 60_000.0;

    // A busy marketplace: ≈ 2,800 orders a simulated minute, from the first minute on.
    let orders = count("OrderPlaced");
    let per_minute = orders / minutes;
    assert!((2_300.0..=3_400.0).contains(&per_minute), "{per_minute:.0} orders per simulated minute");
    let first_minute = events.iter().filter(|e| matches!(e, Event::OrderPlaced(_)) && e.occurred_at().millis() < START + 60_000).count() as f64;
    assert!(first_minute > 0.8 * per_minute, "only {first_minute} orders in the first minute: the start is not warm");
    assert!((1.0..=4.0).contains(&minutes), "200,000 events span {minutes:.1} simulated minutes");
    let off = (span - expected_span as f64).abs() / span;
    assert!(off < 0.1, "the run spans {span} ms, {expected_span} ms were expected");

    // Whole lifecycles within the run.
    let (shipped, delivered) = (count("ShipmentShipped"), count("ShipmentDelivered"));
    assert!(shipped > 0.75 * orders, "{shipped} shipments of {orders} orders");
    assert!(delivered > 0.6 * orders, "{delivered} deliveries of {orders} orders");
    assert!(count("ReturnRequested") > 50.0, "{} returns requested", count("ReturnRequested"));
    assert!(count("ReturnReceived") > 30.0, "{} returns received", count("ReturnReceived"));
    assert!(count("OrderCancelRequested") > 50.0, "{} cancellations", count("OrderCancelRequested"));
    assert!(count("ReviewSubmitted") > 50.0, "{} reviews", count("ReviewSubmitted"));

    // Stock-outs are rare but real; the warehouses reorder during the run.
    let stock_outs = sim.summary().stock_outs as f64;
    assert!(stock_outs > 0.0, "no shopper ever met an empty shelf");
    assert!(stock_outs < 0.03 * orders, "{stock_outs} stock-outs for {orders} orders");
    let initial_receipts = events.iter().filter(|e| matches!(e, Event::StockReceived(_)) && e.occurred_at().millis() == START).count() as f64;
    assert!(count("StockReceived") > initial_receipts + 100.0, "warehouses barely reordered");

    // The catalogue, the rates and the accounts move too.
    assert!(count("ExchangeRateUpdated") >= 3.0 * minutes * 2.0);
    assert!(count("PriceChanged") + count("ProductUpdated") >= minutes * 10.0);
    assert!(count("StockAdjusted") > 0.0 && count("StockTransferred") > 0.0);
}

#[test]
fn returning_customers_order_rarely_enough_for_fraud_windows() {
    let mut per_customer: HashMap<String, u32> = HashMap::new();
    for e in events(200_000, 13) {
        if let Event::OrderPlaced(o) = e {
            *per_customer.entry(o.customer_id).or_default() += 1;
        }
    }
    let busy = per_customer.values().filter(|n| **n > 3).count();
    assert!(busy * 1000 < per_customer.len(), "{busy} of {} customers ordered more than 3 times in two minutes", per_customer.len());
}
