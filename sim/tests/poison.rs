//! Planted poison: exactly the records `planted()` lists break a domain rule, each of them
//! one the processors refuse, and nothing else about the traffic refers to them.

use std::collections::{HashMap, HashSet};

use storeflow_avro::{Event, Timestamp, Topic};
use storeflow_sim::{SimConfig, Simulator};

const START: i64 = 1_764_000_000_000;

/// Why `e` breaks a domain rule the processors enforce, given the orders placed before it.
fn broken(e: &Event, ordered: &HashMap<String, HashMap<String, i32>>) -> Option<String> {
    match e {
        Event::OrderPlaced(o) => o.check_amounts().err(),
        Event::ShipmentShipped(s) => s.lines.iter().find_map(|l| {
            let has = ordered.get(&s.order_id).and_then(|o| o.get(&l.sku)).copied().unwrap_or(0);
            (l.quantity > has).then(|| format!("ships {} of {} where {has} were ordered", l.quantity, l.sku))
        }),
        Event::StockReceived(r) => (r.quantity <= 0).then(|| format!("receives {} units", r.quantity)),
        _ => None,
    }
}

#[test]
fn planted_poison_is_exactly_what_planted_lists() {
    let config = SimConfig { seed: 31, start: Timestamp(START), fraud_ring_share: 0.02, poison: 16, expected_events: 200_000, ..Default::default() };
    let mut sim = Simulator::new(config);
    let events: Vec<Event> = sim.by_ref().take(200_000).collect();
    let planted = sim.planted().to_vec();
    assert_eq!(planted.len(), 16, "{planted:#?}");
    assert_eq!(sim.summary().planted, 16);

    let mut ordered: HashMap<String, HashMap<String, i32>> = HashMap::new();
    let mut broken_ids = Vec::new();
    let mut positions = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if let Some(why) = broken(e, &ordered) {
            broken_ids.push((e.event_id().to_string(), why));
            positions.push(i);
        }
        if let Event::OrderPlaced(o) = e {
            assert!(!ordered.contains_key(&o.order_id), "order id {} placed twice", o.order_id);
            ordered.insert(o.order_id.clone(), o.items.iter().map(|i| (i.sku.clone(), i.quantity)).collect());
        }
    }
    let listed: Vec<&str> = planted.iter().map(|p| p.event_id.as_str()).collect();
    let found: Vec<&str> = broken_ids.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(found, listed, "the rule-breaking records are not the planted ones: {broken_ids:#?}");

    let by_id: HashMap<&str, &Event> = events.iter().map(|e| (e.event_id(), e)).collect();
    let mut kinds = HashSet::new();
    for p in &planted {
        let e = by_id[p.event_id.as_str()];
        assert_eq!((p.topic, p.event_type, p.key.as_str()), (e.topic(), e.name(), e.key().as_str()));
        assert!(!p.reason.is_empty() && !p.refused_by.is_empty());
        kinds.insert((p.event_type, p.refused_by));
        match e {
            Event::OrderPlaced(o) => {
                assert_eq!(p.refused_by, ["orders", "fraud", "sales", "recommendations"]);
                let others = events.iter().filter(|x| x.topic() != Topic::Sessions && x.key() == o.order_id).count();
                assert_eq!(others, 1, "something else refers to the planted order {}", o.order_id);
            }
            Event::ShipmentShipped(s) => {
                assert_eq!(p.refused_by, ["orders"]);
                let real = events.iter().filter(|x| matches!(x, Event::ShipmentShipped(r) if r.order_id == s.order_id)).count();
                assert_eq!(real, 2, "order {} ships once, besides the planted over-shipment", s.order_id);
            }
            Event::StockReceived(_) => assert_eq!(p.refused_by, ["inventory"]),
            other => panic!("planted a {}", other.name()),
        }
    }
    assert_eq!(kinds.len(), 3, "every kind of poison is planted: {kinds:?}");

    // Spread through the run, not bunched at its start.
    let spread = positions.last().expect("planted") - positions.first().expect("planted");
    assert!(spread > 150_000, "the poison spans only {spread} events");
}

#[test]
fn without_poison_nothing_breaks_a_rule() {
    let mut sim = Simulator::new(SimConfig { seed: 31, start: Timestamp(START), fraud_ring_share: 0.02, ..Default::default() });
    let events: Vec<Event> = sim.by_ref().take(100_000).collect();
    let mut ordered: HashMap<String, HashMap<String, i32>> = HashMap::new();
    for e in &events {
        assert_eq!(broken(e, &ordered), None, "{} {}", e.name(), e.key());
        if let Event::OrderPlaced(o) = e {
            ordered.insert(o.order_id.clone(), o.items.iter().map(|i| (i.sku.clone(), i.quantity)).collect());
        }
    }
    assert!(sim.planted().is_empty());
}
