//! The shipped SQL processors on the test driver, each against an independent reference:
//! out-of-order and late events, a partition that stays idle, events past the lateness.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};
use storeflow_avro::{Codec, Event, EventType};
use storeflow_processors::TestDriver;
use storeflow_sql::{Query, SqlProcessor, discover, prepare};

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;
const MIN: i64 = 60_000;

fn shipped(name: &str) -> Query {
    discover(&[], true).unwrap().into_iter().find(|q| q.name == name).unwrap_or_else(|| panic!("{name} is shipped"))
}

fn processor(q: &Query) -> SqlProcessor {
    let codec = Arc::new(Codec::embedded().unwrap());
    prepare(q, &codec, "test", "EUR", None).unwrap()
}

/// An event of type `name`: the contract's example with `fields` over it.
fn event(name: &str, at: i64, fields: Value) -> Event {
    let t = EventType::by_name(name).unwrap();
    let mut v = storeflow_avro::json::example(t);
    let id = format!("{:08x}-0000-4000-8000-{:012x}", at / 1000 % 0xffff_ffff, (fields.to_string().len() as i64 * 7919 + at) % 0xffff_ffff_ffff);
    let m = v.as_object_mut().unwrap();
    m.insert("occurred_at".into(), json!(at));
    m.insert("event_id".into(), json!(id));
    for (k, x) in fields.as_object().unwrap() {
        m.insert(k.clone(), x.clone());
    }
    storeflow_avro::json::event_from_stored_json(v).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Output rows as JSON objects, decoded with the processor's output schema.
fn outputs(driver: &TestDriver, q: &Query, p: &SqlProcessor) -> Vec<BTreeMap<String, Value>> {
    let schema = apache_avro::Schema::parse_str(&storeflow_sql::output_schema(p.engine())).unwrap();
    driver
        .records(&q.output)
        .iter()
        .map(|r| storeflow_sql::processor::decode_output(&schema, r.value.as_deref().unwrap()).unwrap().into_iter().collect())
        .collect()
}

fn pipe(driver: &mut TestDriver, e: Event) {
    driver.pipe(e);
}

#[test]
fn hot_products_agree_with_a_reference_count_per_hopping_window_despite_late_and_out_of_order_views() {
    let q = shipped("sql_hot_products");
    let p = processor(&q);
    let mut d = TestDriver::new(processor(&q)).with_partitions(4);
    // (product, minute offset, session): out of order within the lateness, all on two
    // sessions, so two partitions of the four never see a view (idle).
    let views: Vec<(&str, i64, &str)> = vec![
        ("p-a", 1, "s-1"),
        ("p-b", 2, "s-2"),
        ("p-a", 3, "s-2"),
        ("p-b", 13, "s-1"),
        ("p-a", 12, "s-1"), // out of order, within the lateness of every window it is in
        ("p-b", 15, "s-2"),
        ("p-c", 16, "s-1"),
        ("p-b", 16, "s-2"),
        ("p-a", 40, "s-1"),
    ];
    let mut accepted = Vec::new();
    for (product, minute, session) in &views {
        pipe(&mut d, event("ProductViewed", T0 + minute * MIN + 1000, json!({"product_id": product, "session_id": session})));
        accepted.push((*product, *minute));
    }
    // Far past the lateness of every window holding minute 2: to the DLQ, counted nowhere.
    pipe(&mut d, event("ProductViewed", T0 + 2 * MIN, json!({"product_id": "p-c", "session_id": "s-1"})));
    d.advance_time(T0 + 120 * MIN);

    // The reference: views per product per window, the latest emission per window wins.
    let mut latest: BTreeMap<i64, BTreeMap<String, i64>> = BTreeMap::new();
    for row in outputs(&d, &q, &p) {
        let start = row["window_start"].as_i64().unwrap();
        latest.entry(start).or_default().insert(row["product_id"].as_str().unwrap().to_string(), row["views"].as_i64().unwrap());
    }
    let mut expected_windows = 0;
    for start in (T0 - 10 * MIN..T0 + 50 * MIN).step_by(MIN as usize) {
        let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
        for (product, minute) in &accepted {
            let t = T0 + minute * MIN + 1000;
            if t >= start && t < start + 10 * MIN {
                *counts.entry(product).or_default() += 1;
            }
        }
        let Some(max) = counts.values().max().copied() else {
            assert!(!latest.contains_key(&start), "a window with no views emits nothing ({start})");
            continue;
        };
        expected_windows += 1;
        let got = latest.get(&start).unwrap_or_else(|| panic!("window {start} emitted nothing"));
        let best = got.values().max().copied().unwrap();
        assert_eq!(best, max, "the hottest count of window {} min", (start - T0) / MIN);
        for (product, n) in got {
            assert_eq!(counts.get(product.as_str()).copied(), Some(*n), "views of {product} in window {} min", (start - T0) / MIN);
        }
    }
    assert_eq!(latest.len(), expected_windows);
    let rows = outputs(&d, &q, &p);
    let ids: std::collections::BTreeSet<&str> = rows.iter().map(|r| r["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), rows.len(), "every output has its own event id, also the rows several tasks emit for one window");
    let dlq = d.dlq(&q.repartition_topic("test").unwrap());
    assert_eq!(dlq.len(), 1, "exactly the view past the lateness is dead-lettered: {dlq:?}");
    assert!(dlq[0].reason.starts_with("late:"), "{}", dlq[0].reason);
}

#[test]
fn revenue_by_category_converts_through_the_shared_money_rule_and_updates_a_window_for_a_late_order() {
    let q = shipped("sql_revenue_by_category");
    let p = processor(&q);
    let mut d = TestDriver::new(processor(&q)).with_partitions(2);
    for (product, category) in [("prod-1", "shoes"), ("prod-2", "hats")] {
        pipe(&mut d, event("ProductCreated", T0 - 60 * MIN, json!({"product_id": product, "category": category})));
    }
    pipe(&mut d, event("ProductUpdated", T0 - 30 * MIN, json!({"product_id": "prod-2", "category": "caps"})));
    // 1 EUR = 1.25 USD.
    pipe(&mut d, event("ExchangeRateUpdated", T0 - 60 * MIN, json!({"base_currency": "EUR", "quote_currency": "USD", "rate_e9": 1_250_000_000i64})));
    let order = |id: &str, at: i64, currency: &str, lines: Value| {
        event("OrderPlaced", at, json!({"order_id": id, "currency": currency, "items": lines, "shipping_minor": 0, "tax_minor": 0, "discount_minor": 0}))
    };
    let line = |product: &str, q: i64, price: i64| json!({"sku": format!("sku-{product}"), "product_id": product, "vendor_id": "v-1", "quantity": q, "unit_price_minor": price});
    pipe(&mut d, order("o-1", T0 + 2 * MIN, "EUR", json!([line("prod-1", 2, 1000), line("prod-2", 1, 500)])));
    pipe(&mut d, order("o-3", T0 + 4 * MIN, "USD", json!([line("prod-1", 1, 1250)])));
    pipe(&mut d, order("o-2", T0 + MIN, "EUR", json!([line("prod-9", 1, 300)]))); // out of order; unknown product
    pipe(&mut d, order("o-4", T0 + 7 * MIN, "EUR", json!([line("prod-2", 3, 100)])));
    d.advance_time(T0 + 6 * MIN);
    // Late (the window ended at 5 min) but within the 10-minute lateness: the window again.
    pipe(&mut d, order("o-5", T0 + 3 * MIN, "EUR", json!([line("prod-1", 1, 50)])));
    d.advance_time(T0 + 60 * MIN);
    // Past the lateness: dead-lettered.
    pipe(&mut d, order("o-6", T0 + 3 * MIN, "EUR", json!([line("prod-1", 1, 50)])));

    let rows = outputs(&d, &q, &p);
    let latest = |start: i64, category: &str| -> Option<(i64, i64, i64)> {
        rows.iter()
            .filter(|r| r["window_start"] == json!(start) && r["category"] == json!(category))
            .map(|r| (r["revenue_minor"].as_i64().unwrap(), r["orders"].as_i64().unwrap(), r["units"].as_i64().unwrap()))
            .next_back()
    };
    // shoes: 2×1000 EUR + 1250 USD (= 1000 EUR) + the late 50 EUR.
    assert_eq!(latest(T0, "shoes"), Some((3050, 3, 4)), "{rows:?}");
    assert_eq!(latest(T0, "caps"), Some((500, 1, 1)), "the product's category is the updated one");
    assert_eq!(latest(T0, "uncategorized"), Some((300, 1, 1)));
    assert_eq!(latest(T0 + 5 * MIN, "caps"), Some((300, 1, 3)));
    assert!(rows.iter().all(|r| r["currency"] == json!("EUR")));
    let shoes_emits = rows.iter().filter(|r| r["window_start"] == json!(T0) && r["category"] == json!("shoes")).count();
    assert_eq!(shoes_emits, 2, "the window is emitted on time, then again for the late order");
    let ids: std::collections::BTreeSet<&str> = rows.iter().map(|r| r["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), rows.len(), "every emission has its own event id");
    let dlq = d.dlq("storefront.orders");
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert!(dlq[0].reason.contains("allowed lateness"), "{}", dlq[0].reason);
}

#[test]
fn a_checkout_without_an_order_in_its_session_is_an_abandoned_cart_and_one_with_an_order_is_not() {
    let q = shipped("sql_abandoned_carts");
    let p = processor(&q);
    let mut d = TestDriver::new(processor(&q)).with_partitions(3);
    let checkout = |s: &str, at: i64| event("CheckoutStarted", at, json!({"session_id": s, "cart_id": format!("cart-{s}"), "subtotal_minor": 4200, "currency": "EUR"}));
    let order = |s: &str, id: &str, at: i64| event("OrderPlaced", at, json!({"order_id": id, "session_id": s}));
    pipe(&mut d, checkout("s-1", T0));
    pipe(&mut d, checkout("s-2", T0 + MIN));
    pipe(&mut d, order("s-2", "o-2", T0 + 10 * MIN)); // within 30 minutes: bought
    pipe(&mut d, checkout("s-3", T0 + 2 * MIN));
    pipe(&mut d, order("s-3", "o-3", T0 + 50 * MIN)); // more than 30 minutes later: abandoned, then bought
    pipe(&mut d, checkout("s-4", T0 + 3 * MIN));
    pipe(&mut d, checkout("s-4", T0 + 20 * MIN)); // the session goes on
    d.advance_time(T0 + 3 * 60 * MIN);
    let rows = outputs(&d, &q, &p);
    let abandoned: BTreeMap<String, i64> = rows.iter().map(|r| (r["session_id"].as_str().unwrap().to_string(), r["abandoned_at"].as_i64().unwrap())).collect();
    assert_eq!(
        abandoned,
        BTreeMap::from([("s-1".to_string(), T0 + 30 * MIN), ("s-3".to_string(), T0 + 32 * MIN), ("s-4".to_string(), T0 + 50 * MIN)]),
        "{rows:?}"
    );
    assert_eq!(rows.len(), 3, "each abandoned session is emitted once");
    assert!(rows.iter().all(|r| r["cart_id"].as_str().unwrap().starts_with("cart-")));
}
