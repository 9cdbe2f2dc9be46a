//! Property test of inventory and the order saga together (through the test driver): random
//! interleavings of stock events, multi-sku multi-vendor orders, payments, cancellations,
//! payment timeouts, shipments, deliveries and returns, checked after every event against an
//! independent reference model: nothing oversold, 0 ≤ reserved ≤ on_hand everywhere, every
//! order in the state the model expects, and every reservation released or committed at most
//! once.

use std::collections::BTreeMap;

use proptest::prelude::*;
use storeflow_avro::*;
use storeflow_processors::inventory::{Inventory, InventoryConfig, STOCK, Stock};
use storeflow_processors::orders::{ORDERS, Orders, OrdersConfig};
use storeflow_processors::{DynProcessor, Processor, TestDriver};

const SKUS: [&str; 3] = ["S0", "S1", "S2"];
const WAREHOUSES: [&str; 2] = ["wh-de-berlin", "wh-us-newark"];
const T0: i64 = 1_764_000_000_000;

#[derive(Clone, Debug)]
enum Op {
    Receive { sku: usize, wh: usize, q: i32 },
    Adjust { sku: usize, wh: usize, delta: i32 },
    Transfer { sku: usize, q: i32 },
    Place { order: usize, lines: Vec<(usize, i32)>, country: usize },
    Authorize(usize),
    Fail(usize),
    Cancel(usize),
    Capture(usize),
    ShipAll(usize),
    Deliver(usize),
    ReturnRequest(usize),
    ReturnReceive(usize),
    Timeout,
}

fn op() -> impl Strategy<Value = Op> {
    let o = 0usize..6;
    prop_oneof![
        3 => (0usize..3, 0usize..2, 1i32..6).prop_map(|(sku, wh, q)| Op::Receive { sku, wh, q }),
        1 => (0usize..3, 0usize..2, -3i32..3).prop_map(|(sku, wh, delta)| Op::Adjust { sku, wh, delta }),
        1 => (0usize..3, 1i32..4).prop_map(|(sku, q)| Op::Transfer { sku, q }),
        4 => (o.clone(), prop::collection::vec((0usize..3, 1i32..4), 1..3), 0usize..2).prop_map(|(order, lines, country)| Op::Place { order, lines, country }),
        3 => o.clone().prop_map(Op::Authorize),
        1 => o.clone().prop_map(Op::Fail),
        1 => o.clone().prop_map(Op::Cancel),
        2 => o.clone().prop_map(Op::Capture),
        2 => o.clone().prop_map(Op::ShipAll),
        1 => o.clone().prop_map(Op::Deliver),
        1 => o.clone().prop_map(Op::ReturnRequest),
        1 => o.clone().prop_map(Op::ReturnReceive),
        1 => Just(Op::Timeout),
    ]
}

/// The reference model: totals per sku and a plain state per order, written from the
/// specification, not from the processors.
#[derive(Default)]
struct Model {
    on_hand: BTreeMap<usize, i64>,
    reserved: BTreeMap<usize, i64>,
    orders: BTreeMap<usize, (String, Vec<(usize, i32)>, bool)>, // status, lines (merged per sku), captured
}

impl Model {
    fn available(&self, sku: usize) -> i64 {
        self.on_hand.get(&sku).copied().unwrap_or(0) - self.reserved.get(&sku).copied().unwrap_or(0)
    }
    fn release(&mut self, o: usize) {
        let lines = self.orders[&o].1.clone();
        for (sku, q) in lines {
            *self.reserved.entry(sku).or_default() -= i64::from(q);
        }
    }
    fn status(&self, o: usize) -> Option<&str> {
        self.orders.get(&o).map(|x| x.0.as_str())
    }
    fn set(&mut self, o: usize, s: &str) {
        self.orders.get_mut(&o).expect("known order").0 = s.to_string();
    }
}

struct World {
    d: TestDriver,
    m: Model,
    n: u128,
    t: i64,
}

fn oid(o: usize) -> String {
    format!("o-{o}")
}

impl World {
    fn new() -> Self {
        let procs: Vec<Box<dyn DynProcessor>> = vec![
            Box::new(Inventory::new(InventoryConfig::default())),
            Box::new(Orders::new(OrdersConfig::default())),
        ];
        World { d: TestDriver::chain(procs), m: Model::default(), n: 0, t: T0 }
    }

    fn next(&mut self) -> (String, Timestamp) {
        self.n += 1;
        self.t += 1000;
        (uuid::Uuid::from_u128(self.n).to_string(), Timestamp(self.t))
    }

    fn dead(&self, topic: Topic) -> usize {
        self.d.dlq(topic.name()).len()
    }

    fn apply(&mut self, op: &Op) {
        let (event_id, occurred_at) = self.next();
        let order_id = |o: usize| oid(o);
        match op.clone() {
            Op::Receive { sku, wh, q } => {
                self.d.pipe(Event::StockReceived(StockReceived { event_id, occurred_at, sku: SKUS[sku].into(), warehouse_id: WAREHOUSES[wh].into(), quantity: q, reference: None }));
                *self.m.on_hand.entry(sku).or_default() += i64::from(q);
            }
            Op::Adjust { sku, wh, delta } => {
                let before = self.dead(Topic::Inventory);
                self.d.pipe(Event::StockAdjusted(StockAdjusted { event_id, occurred_at, sku: SKUS[sku].into(), warehouse_id: WAREHOUSES[wh].into(), delta, reason: "count".into() }));
                if self.dead(Topic::Inventory) == before {
                    *self.m.on_hand.entry(sku).or_default() += i64::from(delta);
                }
            }
            Op::Transfer { sku, q } => {
                self.d.pipe(Event::StockTransferred(StockTransferred { event_id, occurred_at, sku: SKUS[sku].into(), from_warehouse_id: WAREHOUSES[0].into(), to_warehouse_id: WAREHOUSES[1].into(), quantity: q }));
            }
            Op::Place { order, lines, country } => {
                if self.m.orders.contains_key(&order) {
                    return; // one placement per order id
                }
                let mut merged: BTreeMap<usize, i32> = BTreeMap::new();
                for (sku, q) in &lines {
                    *merged.entry(*sku).or_default() += q;
                }
                let addr = Address { name: "A".into(), line1: "1".into(), line2: None, city: "X".into(), postal_code: "1".into(), region: None, country: ["DE", "US"][country].into() };
                self.d.pipe(Event::OrderPlaced(OrderPlaced {
                    event_id,
                    occurred_at,
                    order_id: order_id(order),
                    customer_id: "c".into(),
                    session_id: None,
                    customer_since: None,
                    items: lines.iter().enumerate().map(|(i, (sku, q))| OrderItem { sku: SKUS[*sku].into(), product_id: format!("p{sku}"), vendor_id: format!("v{i}"), quantity: *q, unit_price_minor: 500 }).collect(),
                    currency: "EUR".into(),
                    shipping_address: addr.clone(),
                    billing_address: addr,
                    shipping_minor: 0,
                    tax_minor: 0,
                    discount_minor: 0,
                    payment_method_token: "pm".into(),
                    client_ip: "203.0.113.1".into(),
                }));
                // The fraud processor's answer (allow), as it follows every placement.
                let (event_id, occurred_at) = self.next();
                self.d.pipe(Event::FraudScored(FraudScored { event_id, occurred_at, order_id: order_id(order), customer_id: "c".into(), score: 0, reasons: vec![], decision: "allow".into() }));
                let lines: Vec<(usize, i32)> = merged.into_iter().collect();
                let ok = lines.iter().all(|(sku, q)| self.m.available(*sku) >= i64::from(*q));
                if ok {
                    for (sku, q) in &lines {
                        *self.m.reserved.entry(*sku).or_default() += i64::from(*q);
                    }
                }
                self.m.orders.insert(order, (if ok { "reserved" } else { "rejected_out_of_stock" }.into(), lines, false));
            }
            Op::Authorize(o) => {
                if self.m.status(o).is_none() {
                    return;
                }
                self.d.pipe(Event::PaymentAuthorized(PaymentAuthorized { event_id, occurred_at, order_id: order_id(o), payment_id: "pi".into(), amount_minor: 1, currency: "EUR".into(), provider: "stripe".into(), card_brand: None, card_last4: None }));
                if self.m.status(o) == Some("reserved") {
                    self.m.set(o, "confirmed");
                }
            }
            Op::Fail(o) => {
                if self.m.status(o).is_none() {
                    return;
                }
                self.d.pipe(Event::PaymentFailed(PaymentFailed { event_id, occurred_at, order_id: order_id(o), payment_id: None, amount_minor: 1, currency: "EUR".into(), failure_code: "x".into(), failure_message: "x".into() }));
                if self.m.status(o) == Some("reserved") {
                    self.m.release(o);
                    self.m.set(o, "payment_failed");
                }
            }
            Op::Cancel(o) => {
                if self.m.status(o).is_none() {
                    return;
                }
                self.d.pipe(Event::OrderCancelRequested(OrderCancelRequested { event_id, occurred_at, order_id: order_id(o), requested_by: "customer".into(), reason: "x".into() }));
                let captured = self.m.orders.get(&o).is_some_and(|x| x.2);
                if matches!(self.m.status(o), Some("reserved" | "confirmed")) && !captured {
                    self.m.release(o);
                    self.m.set(o, "cancelled");
                }
            }
            Op::Capture(o) => {
                if self.m.status(o).is_none() {
                    return;
                }
                self.d.pipe(Event::PaymentCaptured(PaymentCaptured { event_id, occurred_at, order_id: order_id(o), payment_id: "pi".into(), amount_minor: 1, currency: "EUR".into() }));
                if matches!(self.m.status(o), Some("confirmed" | "shipped" | "delivered")) {
                    self.m.orders.get_mut(&o).expect("known").2 = true;
                }
            }
            Op::ShipAll(o) => {
                let Some((status, lines, _)) = self.m.orders.get(&o).cloned() else { return };
                self.d.pipe(Event::ShipmentShipped(ShipmentShipped {
                    event_id,
                    occurred_at,
                    order_id: order_id(o),
                    shipment_id: format!("s{o}"),
                    warehouse_id: WAREHOUSES[0].into(),
                    tracking_number: "t".into(),
                    lines: lines.iter().map(|(sku, q)| SkuQuantity { sku: SKUS[*sku].into(), quantity: *q }).collect(),
                }));
                if status == "confirmed" {
                    for (sku, q) in &lines {
                        *self.m.reserved.entry(*sku).or_default() -= i64::from(*q);
                        *self.m.on_hand.entry(*sku).or_default() -= i64::from(*q);
                    }
                    self.m.set(o, "shipped");
                }
            }
            Op::Deliver(o) => {
                if self.m.status(o).is_none() {
                    return;
                }
                self.d.pipe(Event::ShipmentDelivered(ShipmentDelivered { event_id, occurred_at, order_id: order_id(o), shipment_id: format!("s{o}") }));
                if self.m.status(o) == Some("shipped") {
                    self.m.set(o, "delivered");
                }
            }
            Op::ReturnRequest(o) => {
                let Some((_, lines, _)) = self.m.orders.get(&o).cloned() else { return };
                self.d.pipe(Event::ReturnRequested(ReturnRequested { event_id, occurred_at, order_id: order_id(o), return_id: format!("r{o}"), items: vec![SkuQuantity { sku: SKUS[lines[0].0].into(), quantity: 1 }], reason: "x".into() }));
                if self.m.status(o) == Some("delivered") {
                    self.m.set(o, "return_requested");
                }
            }
            Op::ReturnReceive(o) => {
                let Some((_, lines, _)) = self.m.orders.get(&o).cloned() else { return };
                self.d.pipe(Event::ReturnReceived(ReturnReceived { event_id, occurred_at, order_id: order_id(o), return_id: format!("r{o}"), warehouse_id: WAREHOUSES[1].into(), lines: vec![SkuQuantity { sku: SKUS[lines[0].0].into(), quantity: 1 }], restockable: true }));
                if matches!(self.m.status(o), Some("return_requested" | "delivered")) {
                    *self.m.on_hand.entry(lines[0].0).or_default() += 1;
                    self.m.set(o, "returned");
                }
            }
            Op::Timeout => {
                self.t += OrdersConfig::default().payment_timeout_ms + 1000;
                self.d.advance_time(self.t);
                let unpaid: Vec<usize> = self.m.orders.iter().filter(|(_, x)| x.0 == "reserved").map(|(o, _)| *o).collect();
                for o in unpaid {
                    self.m.release(o);
                    self.m.set(o, "cancelled");
                }
            }
        }
    }

    fn check(&mut self, after: &Op) -> Result<(), TestCaseError> {
        for (sku_i, sku) in SKUS.iter().enumerate() {
            let (mut on_hand, mut reserved) = (0i64, 0i64);
            for wh in WAREHOUSES {
                let s: Stock = self.d.store("inventory", STOCK, &format!("{sku}|{wh}")).unwrap_or_default();
                prop_assert!(s.reserved >= 0 && s.reserved <= s.on_hand, "after {after:?}: {sku}@{wh} is {s:?}");
                on_hand += s.on_hand;
                reserved += s.reserved;
            }
            prop_assert_eq!(on_hand, self.m.on_hand.get(&sku_i).copied().unwrap_or(0), "on hand of {} after {:?}", sku, after);
            prop_assert_eq!(reserved, self.m.reserved.get(&sku_i).copied().unwrap_or(0), "reserved of {} after {:?}", sku, after);
        }
        for (o, (status, _, _)) in &self.m.orders {
            let got = self.d.store("orders", ORDERS, &oid(*o)).map(|s| s.status.to_string()).unwrap_or_default();
            prop_assert_eq!(&got, status, "order {} after {:?}", o, after);
        }
        Ok(())
    }

    fn check_reservation_events(&self) -> Result<(), TestCaseError> {
        let mut made: BTreeMap<String, usize> = BTreeMap::new();
        let mut ended: BTreeMap<String, usize> = BTreeMap::new();
        for e in self.d.outputs::<Event>(Topic::Reservations.name()) {
            match e {
                Event::ReservationMade(r) => *made.entry(r.order_id).or_default() += 1,
                Event::ReservationReleased(r) => *ended.entry(r.order_id).or_default() += 1,
                Event::ReservationCommitted(r) => *ended.entry(r.order_id).or_default() += 1,
                _ => {}
            }
        }
        for (o, n) in &made {
            prop_assert_eq!(*n, 1, "order {} reserved {} times", o, n);
        }
        for (o, n) in &ended {
            prop_assert!(*n <= 1, "order {o}'s reservation ended {n} times");
            prop_assert!(made.contains_key(o), "order {o} released or committed a reservation never made");
        }
        for (o, (status, _, captured)) in &self.m.orders {
            let id = oid(*o);
            let e = ended.get(&id).copied().unwrap_or(0);
            match status.as_str() {
                "cancelled" | "payment_failed" => prop_assert_eq!(e, 1, "order {} ({}) did not release once", o, status),
                _ if *captured => prop_assert_eq!(e, 1, "order {} was captured but its reservation not committed", o),
                _ => {}
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_interleavings_never_oversell_and_match_the_reference_model(ops in prop::collection::vec(op(), 1..40)) {
        let mut w = World::new();
        for op in &ops {
            w.apply(op);
            w.check(op)?;
        }
        w.check_reservation_events()?;
    }
}
