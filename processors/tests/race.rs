//! The race test on a real Kafka broker: 10 units of one sku across 2 warehouses, 200
//! concurrent single-unit orders (each with its payment) through inventory and the order
//! saga → exactly 10 confirmed, 190 rejected, available 0, nothing negative; then 3
//! cancellations → available 3.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use storeflow_avro::*;
use storeflow_ingest::contract::service_address;
use storeflow_ingest::publish::{Publisher, contract_topics};
use storeflow_ingest::{ConsumerConfig, KafkaLog, KafkaSettings, Log, OffsetReset, TopicPartition};
use storeflow_processors::inventory::{Inventory, Stock};
use storeflow_processors::metrics::Metrics;
use storeflow_processors::orders::Orders;
use storeflow_processors::runtime::changelog_of;
use storeflow_processors::state::{decode_value, split_key};
use storeflow_processors::{Processor, Runtime, RuntimeConfig};

fn addr() -> Address {
    Address { name: "A".into(), line1: "1".into(), line2: None, city: "Berlin".into(), postal_code: "1".into(), region: None, country: "DE".into() }
}

fn id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Latest status of each of `orders`, from orders.lifecycle.
fn statuses(log: &dyn Log, orders: &[String]) -> BTreeMap<String, String> {
    let topic = Topic::Lifecycle.name();
    let info = log.describe_topics().unwrap().into_iter().find(|t| t.name == topic).unwrap();
    let mut cfg = ConsumerConfig::new(&format!("race-read-{}", uuid::Uuid::new_v4()));
    cfg.reset = OffsetReset::Earliest;
    let mut c = log.consumer(cfg, None).unwrap();
    c.assign(&info.partitions.iter().map(|p| (TopicPartition::new(topic, p.partition), p.start)).collect::<Vec<_>>()).unwrap();
    let codec = Codec::embedded().unwrap();
    let mut out = BTreeMap::new();
    let mut idle = 0;
    while idle < 3 {
        let recs = c.poll(50_000, Duration::from_millis(300)).unwrap();
        if recs.is_empty() {
            idle += 1;
        }
        for r in recs {
            if let Ok(Event::OrderStatusChanged(s)) = codec.decode(r.value.as_deref().unwrap_or_default()) {
                if orders.contains(&s.order_id) {
                    out.insert(s.order_id, s.status);
                }
            }
        }
    }
    c.close().unwrap();
    out
}

fn stock(log: &dyn Log, app: &str, sku: &str) -> BTreeMap<String, Stock> {
    let mut state = BTreeMap::new();
    for r in common::read_all(log, &changelog_of(app, "inventory")) {
        let Some(k) = r.key.as_deref() else { continue };
        let (store, key) = split_key(k);
        if store != "stock" || !key.starts_with(&format!("{sku}|")) {
            continue;
        }
        match r.value.as_deref() {
            Some(v) => state.insert(key.to_string(), decode_value::<Stock>(v).unwrap()),
            None => state.remove(key),
        };
    }
    state
}

fn wait_until(what: &str, patience: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + patience;
    while !f() {
        assert!(Instant::now() < deadline, "{what} did not happen within {patience:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn two_hundred_orders_race_for_ten_units_and_exactly_ten_win() {
    let Some(brokers) = service_address("STOREFLOW_TEST_KAFKA", "Apache Kafka") else { return };
    let log: Arc<dyn Log> = Arc::new(KafkaLog::connect(KafkaSettings::new(&brokers)).unwrap());
    log.create_topics(&contract_topics(Some(4))).unwrap();
    let codec = Arc::new(Codec::embedded().unwrap());
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let sku = format!("race-{tag}");
    let publisher = Publisher::new(&*log, codec.clone(), std::sync::Arc::new(storeflow_avro::pii::Vault::in_memory())).unwrap();
    let t0 = Timestamp::now().millis();
    let mut events: Vec<Event> = vec![];
    for wh in ["wh-de-berlin", "wh-us-newark"] {
        events.push(Event::StockReceived(StockReceived { event_id: id(), occurred_at: Timestamp(t0), sku: sku.clone(), warehouse_id: wh.into(), quantity: 5, reference: None }));
    }
    let orders: Vec<String> = (0..200).map(|i| format!("race-{tag}-{i:03}")).collect();
    for (i, o) in orders.iter().enumerate() {
        let t = Timestamp(t0 + 1000 + i as i64);
        events.push(Event::OrderPlaced(OrderPlaced {
            event_id: id(),
            occurred_at: t,
            order_id: o.clone(),
            customer_id: format!("c-{i}"),
            session_id: None,
            customer_since: None,
            items: vec![OrderItem { sku: sku.clone(), product_id: "p".into(), vendor_id: "v".into(), quantity: 1, unit_price_minor: 1000 }],
            currency: "EUR".into(),
            shipping_address: addr(),
            billing_address: addr(),
            shipping_minor: 0,
            tax_minor: 0,
            discount_minor: 0,
            payment_method_token: "pm_card_visa".into(),
            client_ip: "203.0.113.5".into(),
        }));
        // What the fraud processor (not running here) would answer: allow.
        events.push(Event::FraudScored(FraudScored { event_id: id(), occurred_at: t, order_id: o.clone(), customer_id: format!("c-{i}"), score: 0, reasons: vec![], decision: "allow".into() }));
        events.push(Event::PaymentAuthorized(PaymentAuthorized { event_id: id(), occurred_at: Timestamp(t.millis() + 500), order_id: o.clone(), payment_id: format!("pi_{i}"), amount_minor: 1000, currency: "EUR".into(), provider: "stripe".into(), card_brand: None, card_last4: None }));
    }
    for f in publisher.publish_batch(&events).unwrap() {
        f.wait().unwrap();
    }

    let app = format!("race{tag}");
    let cfg = RuntimeConfig { app: app.clone(), ..RuntimeConfig::default() };
    let metrics = Arc::new(Metrics::unregistered());
    let inv = Runtime::spawn(Box::new(Inventory::new(Default::default())), log.clone(), codec.clone(), cfg.clone(), metrics.clone()).unwrap();
    let ord = Runtime::spawn(Box::new(Orders::new(Default::default())), log.clone(), codec.clone(), cfg, metrics).unwrap();

    let mut last = BTreeMap::new();
    wait_until("every order settling", Duration::from_secs(300), || {
        last = statuses(&*log, &orders);
        last.len() == orders.len() && last.values().all(|s| s == "confirmed" || s == "rejected_out_of_stock")
    });
    let confirmed: Vec<String> = last.iter().filter(|(_, s)| *s == "confirmed").map(|(o, _)| o.clone()).collect();
    assert_eq!(confirmed.len(), 10, "{} orders confirmed", confirmed.len());
    assert_eq!(last.values().filter(|s| *s == "rejected_out_of_stock").count(), 190);
    let st = stock(&*log, &app, &sku);
    assert_eq!(st.values().map(|s| s.on_hand).sum::<i64>(), 10);
    assert_eq!(st.values().map(Stock::available).sum::<i64>(), 0, "{st:?}");
    assert!(st.values().all(|s| s.reserved >= 0 && s.available() >= 0), "{st:?}");

    let cancels: Vec<Event> = confirmed[..3]
        .iter()
        .map(|o| Event::OrderCancelRequested(OrderCancelRequested { event_id: id(), occurred_at: Timestamp::now(), order_id: o.clone(), requested_by: "customer".into(), reason: "race test".into() }))
        .collect();
    for f in publisher.publish_batch(&cancels).unwrap() {
        f.wait().unwrap();
    }
    wait_until("three cancellations releasing their units", Duration::from_secs(120), || {
        stock(&*log, &app, &sku).values().map(Stock::available).sum::<i64>() == 3
    });
    let after = statuses(&*log, &confirmed[..3]);
    assert!(after.values().all(|s| s == "cancelled"), "{after:?}");
    inv.stop().unwrap();
    ord.stop().unwrap();
}
