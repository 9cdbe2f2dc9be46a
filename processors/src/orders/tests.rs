//! The saga on in-memory records: every event in every state, the fraud gate, timeouts,
//! held-back events, compensation.

use super::*;
use crate::TestDriver;
use storeflow_avro::OrderStatus as S;
use storeflow_avro::*;

const T0: i64 = 1_764_000_000_000;

fn id(n: &mut u64) -> String {
    *n += 1;
    uuid::Uuid::from_u128(u128::from(*n)).to_string()
}

struct Run {
    d: TestDriver,
    n: u64,
    t: i64,
}

fn addr(country: &str) -> Address {
    Address { name: "A".into(), line1: "1 Road".into(), line2: None, city: "X".into(), postal_code: "1".into(), region: None, country: country.into() }
}

impl Run {
    fn new() -> Run {
        Run { d: TestDriver::new(Orders::new(OrdersConfig::default())), n: 0, t: T0 }
    }
    fn tick(&mut self) -> Timestamp {
        self.t += 1000;
        Timestamp(self.t)
    }
    fn pipe(&mut self, e: impl Into<Event>) {
        self.d.pipe(e.into());
    }
    fn place(&mut self, skus: &[(&str, i32)]) {
        self.place_priced(skus, 1000);
    }
    fn place_priced(&mut self, skus: &[(&str, i32)], unit_price_minor: i64) {
        let (event_id, occurred_at) = (id(&mut self.n), self.tick());
        self.pipe(OrderPlaced {
            event_id,
            occurred_at,
            order_id: "o-1".into(),
            customer_id: "c-1".into(),
            session_id: None,
            customer_since: None,
            items: skus
                .iter()
                .map(|(s, q)| OrderItem { sku: s.to_string(), product_id: format!("p-{s}"), vendor_id: "v-1".into(), quantity: *q, unit_price_minor })
                .collect(),
            currency: "EUR".into(),
            shipping_address: addr("DE"),
            billing_address: addr("DE"),
            shipping_minor: 0,
            tax_minor: 0,
            discount_minor: 0,
            payment_method_token: "pm_1".into(),
            client_ip: "203.0.113.1".into(),
        });
    }
    fn reply(&mut self, sku: &str, qty: i32, ok: bool) {
        let (event_id, occurred_at) = (id(&mut self.n), self.tick());
        self.pipe(InventoryReply {
            event_id,
            occurred_at,
            order_id: "o-1".into(),
            sku: sku.into(),
            action: "reserve".into(),
            ok,
            requested: qty,
            lines: if ok { vec![ReservedLine { sku: sku.into(), warehouse_id: "wh-de-berlin".into(), quantity: qty }] } else { vec![] },
            availability: vec![WarehouseStock { warehouse_id: "wh-de-berlin".into(), available: if ok { 5 } else { 0 } }],
            reason: String::new(),
        });
    }
    /// The fraud processor's answer for o-1.
    fn score(&mut self, score: i32, decision: &str) {
        let (event_id, occurred_at) = (id(&mut self.n), self.tick());
        let reasons = if decision == "hold" {
            vec![FraudReason { code: "ip_customers_1h".into(), points: 25, detail: "5 customers ordered from 198.51.100.66 in an hour".into() }]
        } else {
            vec![]
        };
        self.pipe(FraudScored { event_id, occurred_at, order_id: "o-1".into(), customer_id: "c-1".into(), score, reasons, decision: decision.into() });
    }
    fn status(&mut self) -> Option<OrderStatus> {
        self.d.store("orders", ORDERS, "o-1").map(|o| o.status)
    }
    fn dead(&self) -> usize {
        [Topic::Orders, Topic::Payments, Topic::Fulfillment, Topic::InventoryReplies, Topic::FraudScores]
            .iter()
            .map(|t| self.d.dlq(t.name()).len())
            .sum()
    }
    fn act(&mut self, a: Act) {
        let (event_id, occurred_at) = (id(&mut self.n), self.tick());
        let order_id = "o-1".to_string();
        let e: Event = match a {
            Act::Authorize => PaymentAuthorized { event_id, occurred_at, order_id, payment_id: "pi_1".into(), amount_minor: 3000, currency: "EUR".into(), provider: "stripe".into(), card_brand: None, card_last4: None }.into(),
            Act::Fail => PaymentFailed { event_id, occurred_at, order_id, payment_id: None, amount_minor: 3000, currency: "EUR".into(), failure_code: "card_declined".into(), failure_message: "no".into() }.into(),
            Act::Capture => PaymentCaptured { event_id, occurred_at, order_id, payment_id: "pi_1".into(), amount_minor: 3000, currency: "EUR".into() }.into(),
            Act::Cancel => OrderCancelRequested { event_id, occurred_at, order_id, requested_by: "customer".into(), reason: "changed my mind".into() }.into(),
            Act::ShipCreated => ShipmentCreated { event_id, occurred_at, order_id, shipment_id: "s-1".into(), warehouse_id: "wh-de-berlin".into(), carrier: "dhl".into(), lines: vec![] }.into(),
            Act::ShipA => ShipmentShipped { event_id, occurred_at, order_id, shipment_id: "s-1".into(), warehouse_id: "wh-de-berlin".into(), tracking_number: "1".into(), lines: vec![SkuQuantity { sku: "A".into(), quantity: 2 }] }.into(),
            Act::ShipB => ShipmentShipped { event_id, occurred_at, order_id, shipment_id: "s-2".into(), warehouse_id: "wh-de-berlin".into(), tracking_number: "2".into(), lines: vec![SkuQuantity { sku: "B".into(), quantity: 1 }] }.into(),
            Act::Deliver => ShipmentDelivered { event_id, occurred_at, order_id, shipment_id: "s-1".into() }.into(),
            Act::ReturnReq => ReturnRequested { event_id, occurred_at, order_id, return_id: "r-1".into(), items: vec![SkuQuantity { sku: "A".into(), quantity: 1 }], reason: "too small".into() }.into(),
            Act::ReturnRecv => ReturnReceived { event_id, occurred_at, order_id, return_id: "r-1".into(), warehouse_id: "wh-de-berlin".into(), lines: vec![SkuQuantity { sku: "A".into(), quantity: 1 }], restockable: true }.into(),
            Act::Refund => RefundIssued { event_id, occurred_at, order_id, payment_id: "pi_1".into(), refund_id: "re_1".into(), amount_minor: 3000, currency: "EUR".into(), reason: "return".into(), lines: vec![] }.into(),
            Act::FraudHold => FraudScored { event_id, occurred_at, order_id, customer_id: "c-1".into(), score: 90, reasons: vec![], decision: "hold".into() }.into(),
        };
        self.pipe(e);
    }
    /// Drives the order (2 × A, 1 × B) to `status`; its fraud score (allow) arrives right
    /// after it is placed.
    fn reach(status: OrderStatus) -> Run {
        let mut r = Run::new();
        r.place(&[("A", 2), ("B", 1)]);
        r.score(5, "allow");
        let steps: &[Step] = match status {
            S::Placed => &[],
            S::Reserved => &[Step::Hold],
            S::Confirmed => &[Step::Hold, Step::Do(Act::Authorize)],
            S::PartiallyShipped => &[Step::Hold, Step::Do(Act::Authorize), Step::Do(Act::ShipA)],
            S::Shipped => &[Step::Hold, Step::Do(Act::Authorize), Step::Do(Act::ShipA), Step::Do(Act::ShipB)],
            S::Delivered => &[Step::Hold, Step::Do(Act::Authorize), Step::Do(Act::ShipA), Step::Do(Act::ShipB), Step::Do(Act::Deliver)],
            S::ReturnRequested => &[Step::Hold, Step::Do(Act::Authorize), Step::Do(Act::ShipA), Step::Do(Act::ShipB), Step::Do(Act::Deliver), Step::Do(Act::ReturnReq)],
            S::Returned => &[Step::Hold, Step::Do(Act::Authorize), Step::Do(Act::ShipA), Step::Do(Act::ShipB), Step::Do(Act::Deliver), Step::Do(Act::ReturnReq), Step::Do(Act::ReturnRecv)],
            S::Refunded => &[Step::Hold, Step::Do(Act::Authorize), Step::Do(Act::ShipA), Step::Do(Act::ShipB), Step::Do(Act::Deliver), Step::Do(Act::ReturnReq), Step::Do(Act::ReturnRecv), Step::Do(Act::Refund)],
            S::Cancelled => &[Step::Hold, Step::Do(Act::Cancel)],
            S::RejectedOutOfStock => &[Step::Reject],
            S::PaymentFailed => &[Step::Hold, Step::Do(Act::Fail)],
            S::FraudHold => &[Step::Hold, Step::Do(Act::FraudHold)],
            other => panic!("no path to {other}"),
        };
        for s in steps {
            match s {
                Step::Hold => {
                    r.reply("A", 2, true);
                    r.reply("B", 1, true);
                }
                Step::Reject => {
                    r.reply("A", 2, true);
                    r.reply("B", 1, false);
                }
                Step::Do(a) => r.act(*a),
            }
        }
        assert_eq!(r.status(), Some(status), "could not reach {status}");
        assert_eq!(r.dead(), 0, "reaching {status} dead-lettered something");
        r
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Act {
    Authorize,
    Fail,
    Capture,
    Cancel,
    ShipCreated,
    ShipA,
    ShipB,
    Deliver,
    ReturnReq,
    ReturnRecv,
    Refund,
    FraudHold,
}

enum Step {
    Hold,
    Reject,
    Do(Act),
}

const STATES: [OrderStatus; 13] = [
    S::Placed, S::Reserved, S::Confirmed, S::PartiallyShipped, S::Shipped, S::Delivered, S::ReturnRequested, S::Returned,
    S::Refunded, S::Cancelled, S::RejectedOutOfStock, S::PaymentFailed, S::FraudHold,
];

#[derive(Debug, PartialEq)]
enum Outcome {
    To(OrderStatus),
    Dead,
    /// Held back until the reservation settles (the order is still being reserved).
    Held,
}

/// The expected outcome of `act` in state `from`, written out by hand, independently of
/// OrderStatus::MOVES.
fn expected(from: OrderStatus, act: Act) -> Outcome {
    use Act::*;
    use Outcome::*;
    match (from, act) {
        // While its reservation is in flight, an order takes nothing else: everything waits
        // and applies, in time order, once inventory has answered.
        (S::Placed, _) => Held,
        (S::Reserved, Authorize) => To(S::Confirmed),
        // The same authorization reported again (the payments worker and a webhook).
        (s @ (S::Confirmed | S::PartiallyShipped | S::Shipped | S::Delivered | S::ReturnRequested | S::Returned | S::Refunded), Authorize) => To(s),
        // An authorization after the order ended unsold: released, not dead-lettered.
        (s @ (S::Cancelled | S::RejectedOutOfStock | S::PaymentFailed), Authorize) => To(s),
        (S::FraudHold, Authorize) => To(S::FraudHold),
        (S::Reserved, Fail) => To(S::PaymentFailed),
        // A failure reported for an order that ended unsold (never authorized) changes nothing.
        (s @ (S::Cancelled | S::RejectedOutOfStock | S::PaymentFailed), Fail) => To(s),
        // Held for review and unpayable: cancelled, its stock released.
        (S::FraudHold, Fail) => To(S::Cancelled),
        (S::Confirmed, Capture) => To(S::Confirmed),
        (S::PartiallyShipped, Capture) => To(S::PartiallyShipped),
        (S::Shipped, Capture) => To(S::Shipped),
        (S::Delivered, Capture) => To(S::Delivered),
        (S::Reserved | S::Confirmed | S::FraudHold, Cancel) => To(S::Cancelled),
        (S::Confirmed, ShipCreated) => To(S::Confirmed),
        (S::PartiallyShipped, ShipCreated) => To(S::PartiallyShipped),
        (S::Confirmed, ShipA) => To(S::PartiallyShipped),
        (S::PartiallyShipped, ShipB) => To(S::Shipped),
        (S::Confirmed, ShipB) => To(S::PartiallyShipped),
        (S::Shipped, Deliver) => To(S::Delivered),
        (S::PartiallyShipped, Deliver) => To(S::PartiallyShipped),
        (S::Delivered, ReturnReq) => To(S::ReturnRequested),
        (S::ReturnRequested | S::Delivered, ReturnRecv) => To(S::Returned),
        (S::Returned, Refund) => To(S::Refunded),
        (S::Confirmed, Refund) => To(S::Confirmed),
        (S::PartiallyShipped, Refund) => To(S::PartiallyShipped),
        (S::Shipped, Refund) => To(S::Shipped),
        (S::Delivered, Refund) => To(S::Delivered),
        (S::ReturnRequested, Refund) => To(S::ReturnRequested),
        (S::Refunded, Refund) => To(S::Refunded),
        (S::Reserved | S::Confirmed, FraudHold) => To(S::FraudHold),
        (s, FraudHold) => To(s),
        _ => Dead,
    }
}

#[test]
fn every_event_in_every_state_moves_the_order_as_the_table_says_or_is_dead_lettered() {
    use Act::*;
    let acts = [Authorize, Fail, Capture, Cancel, ShipCreated, ShipA, ShipB, Deliver, ReturnReq, ReturnRecv, Refund, FraudHold];
    let mut checked = 0;
    for from in STATES {
        for act in acts {
            let mut r = Run::reach(from);
            let held_before = r.d.store("orders", ORDERS, "o-1").unwrap().deferred.len();
            r.act(act);
            match expected(from, act) {
                Outcome::To(to) => {
                    assert_eq!(r.status(), Some(to), "{act:?} in {from}");
                    assert_eq!(r.dead(), 0, "{act:?} in {from} was dead-lettered");
                }
                Outcome::Dead => {
                    assert_eq!(r.status(), Some(from), "{act:?} in {from} changed the order");
                    assert_eq!(r.dead(), 1, "{act:?} in {from} was not dead-lettered");
                }
                Outcome::Held => {
                    assert_eq!(r.status(), Some(from), "{act:?} in {from} changed the order");
                    assert_eq!(r.dead(), 0, "{act:?} in {from} was dead-lettered");
                    let o = r.d.store("orders", ORDERS, "o-1").unwrap();
                    assert_eq!(o.deferred.len(), held_before + 1, "{act:?} in {from} was not held back");
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 13 * 12);
}

#[test]
fn events_held_back_during_the_reservation_apply_after_it_or_go_to_the_dlq_with_the_reason() {
    let mut r = Run::reach(S::Placed);
    r.act(Act::Authorize);
    r.act(Act::ShipCreated); // fine once confirmed
    r.act(Act::Deliver); // not before shipping
    assert_eq!(r.status(), Some(S::Placed));
    r.reply("A", 2, true);
    r.reply("B", 1, true);
    assert_eq!(r.status(), Some(S::Confirmed));
    let dlq = r.d.dlq(Topic::Fulfillment.name());
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert!(dlq[0].reason.contains("shipment delivered: order o-1 is confirmed"), "{}", dlq[0].reason);
    assert_eq!(dlq[0].processor, "orders");
    let o = r.d.store("orders", ORDERS, "o-1").unwrap();
    assert!(o.deferred.is_empty());
    // And for an order that is rejected, everything held back is dead-lettered.
    let mut r = Run::reach(S::Placed);
    r.act(Act::ShipA);
    r.reply("A", 2, true);
    r.reply("B", 1, false);
    assert_eq!(r.status(), Some(S::RejectedOutOfStock));
    assert_eq!(r.d.dlq(Topic::Fulfillment.name()).len(), 1);
}

#[test]
fn an_event_held_back_that_no_app_could_send_applies_after_the_reservation_like_any_other() {
    // Written to the log directly, not through the API: its id is no UUID. Arriving once
    // the order is reserved it would apply at once; held back, it applies after.
    let mut r = Run::reach(S::Placed);
    let occurred_at = r.tick();
    r.pipe(PaymentAuthorized { event_id: "provider-7".into(), occurred_at, order_id: "o-1".into(), payment_id: "pi_1".into(), amount_minor: 3000, currency: "EUR".into(), provider: "stripe".into(), card_brand: None, card_last4: None });
    r.reply("A", 2, true);
    r.reply("B", 1, true);
    assert_eq!((r.status(), r.dead()), (Some(S::Confirmed), 0));
}

#[test]
fn every_legal_move_is_announced_with_its_previous_state() {
    let mut r = Run::reach(S::Refunded);
    let moves: Vec<(Option<String>, String)> = r
        .d
        .outputs::<Event>(Topic::Lifecycle.name())
        .into_iter()
        .filter_map(|e| match e {
            Event::OrderStatusChanged(s) if s.previous_status.as_deref() != Some(s.status.as_str()) => Some((s.previous_status, s.status)),
            _ => None,
        })
        .collect();
    let path: Vec<OrderStatus> = moves.iter().map(|(_, s)| s.parse().unwrap()).collect();
    assert_eq!(path, [S::Placed, S::Reserved, S::PaymentAuthorized, S::Confirmed, S::PartiallyShipped, S::Shipped, S::Delivered, S::ReturnRequested, S::Returned, S::Refunded]);
    for (prev, to) in &moves[1..] {
        assert!(storeflow_avro::states::may_move(prev.as_deref().unwrap(), to.parse().unwrap()), "{prev:?} → {to} is not in OrderStatus::MOVES");
    }
    assert_eq!(r.status(), Some(S::Refunded));
}

#[test]
fn a_partial_refusal_releases_the_skus_that_were_held() {
    let r = Run::reach(S::RejectedOutOfStock);
    let cmds: Vec<InventoryCommand> = r
        .d
        .outputs::<Event>(Topic::InventoryCommands.name())
        .into_iter()
        .filter_map(|e| if let Event::InventoryCommand(c) = e { Some(c) } else { None })
        .collect();
    assert!(cmds.iter().any(|c| c.action == "release" && c.sku == "A"), "the held sku was not released: {cmds:?}");
    let rejected = r.d.outputs::<Event>(Topic::Reservations.name());
    assert!(matches!(&rejected[..], [Event::ReservationRejected(x)] if x.missing[0].sku == "B"), "{rejected:?}");
}

#[test]
fn an_unpaid_order_is_cancelled_at_the_payment_timeout_and_its_stock_released() {
    let mut r = Run::reach(S::Reserved);
    r.d.advance_time(T0 + OrdersConfig::default().payment_timeout_ms + 10_000);
    assert_eq!(r.status(), Some(S::Cancelled));
    let releases = r
        .d
        .outputs::<Event>(Topic::InventoryCommands.name())
        .into_iter()
        .filter(|e| matches!(e, Event::InventoryCommand(c) if c.action == "release" && c.reason == "payment_timeout"))
        .count();
    assert_eq!(releases, 2);
}

#[test]
fn a_held_order_whose_payment_fails_is_cancelled_and_its_stock_released() {
    let mut r = Run::reach(S::FraudHold);
    r.act(Act::Fail);
    assert_eq!((r.status(), r.dead()), (Some(S::Cancelled), 0));
    let releases = r
        .d
        .outputs::<Event>(Topic::InventoryCommands.name())
        .into_iter()
        .filter(|e| matches!(e, Event::InventoryCommand(c) if c.action == "release" && c.reason == "payment_failed"))
        .count();
    assert_eq!(releases, 2, "both held lines go back to stock");
}

#[test]
fn payment_before_the_reservation_confirms_once_the_stock_is_held() {
    let mut r = Run::reach(S::Placed);
    r.act(Act::Authorize);
    assert_eq!(r.status(), Some(S::Placed));
    r.reply("A", 2, true);
    r.reply("B", 1, true);
    assert_eq!(r.status(), Some(S::Confirmed));
}

#[test]
fn a_repeated_event_is_applied_once_and_an_unknown_order_is_dead_lettered() {
    let mut r = Run::reach(S::Confirmed);
    let ship = ShipmentShipped {
        event_id: uuid::Uuid::from_u128(999).to_string(),
        occurred_at: Timestamp(T0 + 99_000),
        order_id: "o-1".into(),
        shipment_id: "s".into(),
        warehouse_id: "wh-de-berlin".into(),
        tracking_number: "t".into(),
        lines: vec![SkuQuantity { sku: "A".into(), quantity: 2 }],
    };
    r.pipe(ship.clone());
    r.pipe(ship.clone());
    assert_eq!(r.status(), Some(S::PartiallyShipped));
    assert_eq!(r.dead(), 0, "a redelivered event was treated as new");
    r.pipe(ShipmentShipped { order_id: "o-404".into(), ..ship });
    assert!(r.d.dlq(Topic::Fulfillment.name()).is_empty(), "its order may still be on the way");
    r.d.advance_time(T0 + 99_000 + OrdersConfig::default().early_ttl_ms);
    assert_eq!(r.d.dlq(Topic::Fulfillment.name())[0].reason, "unknown order o-404: nothing was placed under that id within 600 s");
}

#[test]
fn a_payment_and_a_verdict_that_arrive_before_their_order_wait_for_it_and_apply_in_time_order() {
    let mut r = Run::new();
    // A payment provider and the fraud processor were faster than the order's producer.
    r.t += 5_000;
    r.score(10, "allow");
    r.t -= 4_000;
    r.act(Act::Authorize);
    assert_eq!((r.status(), r.dead()), (None, 0), "nothing placed, nothing dead-lettered yet");
    r.t = T0;
    r.place(&[("A", 2)]);
    assert_eq!(r.status(), Some(S::Placed));
    r.reply("A", 2, true);
    assert_eq!(r.status(), Some(S::Confirmed), "reserved, then the earlier payment, then the verdict");
    assert_eq!(r.dead(), 0);
}

#[test]
fn a_payment_timeout_during_the_reservation_applies_after_it_as_if_inventory_had_answered_at_once() {
    let mut r = Run { d: TestDriver::new(Orders::new(OrdersConfig { payment_timeout_ms: 500, ..OrdersConfig::default() })), n: 0, t: T0 };
    r.place(&[("A", 1)]);
    r.d.advance_time(T0 + 5_000);
    assert_eq!(r.status(), Some(S::Placed), "the timeout waits for the reservation");
    r.reply("A", 1, true);
    assert_eq!(r.status(), Some(S::Cancelled));
    let last = r.d.outputs::<Event>(Topic::Lifecycle.name()).into_iter().filter_map(|e| match e {
        Event::OrderStatusChanged(s) => Some((s.status.parse::<OrderStatus>().unwrap(), s.version)),
        _ => None,
    }).collect::<Vec<_>>();
    assert_eq!(last, vec![(S::Placed, 1), (S::Reserved, 2), (S::Cancelled, 3)], "every announcement has the next version");
}

#[test]
fn an_order_whose_amounts_overflow_goes_to_the_dlq_and_places_nothing() {
    let mut r = Run::new();
    // 3 × i64::MAX / 2 overflows a 64-bit subtotal: refused, not wrapped, not a panic.
    r.place_priced(&[("A", 3)], i64::MAX / 2);
    assert_eq!(r.status(), None, "nothing was placed");
    let dlq = r.d.dlq(Topic::Orders.name());
    assert_eq!(dlq.len(), 1);
    assert!(dlq[0].reason.contains("items[0].unit_price_minor"), "{}", dlq[0].reason);
    assert!(r.d.outputs::<Event>(Topic::InventoryCommands.name()).is_empty(), "no stock was asked for");
    // An ordinary order afterwards goes through.
    r.place(&[("A", 1)]);
    assert_eq!(r.status(), Some(S::Placed));
}

#[test]
fn totals_and_vendor_line_totals_are_kept() {
    let mut r = Run::reach(S::Placed);
    let o = r.d.store("orders", ORDERS, "o-1").unwrap();
    assert_eq!((o.subtotal_minor, o.total_minor), (3000, 3000));
    assert_eq!(o.vendor_totals.get("v-1"), Some(&3000));
}

#[test]
fn an_authorized_order_waits_for_its_fraud_score_and_holds_back_capture_and_shipping_meanwhile() {
    let mut r = Run::new();
    r.place(&[("A", 2), ("B", 1)]);
    r.reply("A", 2, true);
    r.reply("B", 1, true);
    r.act(Act::Authorize);
    assert_eq!(r.status(), Some(S::PaymentAuthorized), "confirmed before the fraud score");
    r.act(Act::Capture);
    r.act(Act::ShipA);
    assert_eq!((r.status(), r.dead()), (Some(S::PaymentAuthorized), 0));
    assert_eq!(r.d.store("orders", ORDERS, "o-1").unwrap().deferred.len(), 2);
    r.score(12, "allow");
    assert_eq!(r.status(), Some(S::PartiallyShipped), "confirmed, then the held-back capture and shipment applied");
    assert_eq!(r.dead(), 0);
    let confirmed = r.d.outputs::<Event>(Topic::Lifecycle.name()).into_iter().find_map(|e| match e {
        Event::OrderStatusChanged(s) if s.status == S::Confirmed.as_str() => Some(s.reason),
        _ => None,
    });
    assert_eq!(confirmed.as_deref(), Some("reserved, paid and fraud-checked (score 12, allow)"));
}

#[test]
fn a_hold_that_arrives_after_authorization_stops_the_order_before_it_ships() {
    let mut r = Run::new();
    r.place(&[("A", 2), ("B", 1)]);
    r.reply("A", 2, true);
    r.reply("B", 1, true);
    r.act(Act::Authorize);
    r.act(Act::ShipCreated);
    r.score(85, "hold");
    assert_eq!(r.status(), Some(S::FraudHold));
    let dlq = r.d.dlq(Topic::Fulfillment.name());
    assert_eq!(dlq.len(), 1, "the held-back shipment is refused: {dlq:?}");
    assert!(dlq[0].reason.contains("is fraud_hold"), "{}", dlq[0].reason);
    let held = r.d.outputs::<Event>(Topic::Lifecycle.name()).into_iter().find_map(|e| match e {
        Event::OrderStatusChanged(s) if s.status == S::FraudHold.as_str() => Some(s.reason),
        _ => None,
    });
    assert_eq!(held.as_deref(), Some("fraud score 85 (ip_customers_1h)"));
    let commits = r.d.outputs::<Event>(Topic::InventoryCommands.name()).into_iter().filter(|e| matches!(e, Event::InventoryCommand(c) if c.action == "commit")).count();
    assert_eq!(commits, 0, "a held order's stock is not committed");
}

#[test]
fn without_a_fraud_score_in_time_the_order_is_confirmed_and_the_lifecycle_says_why() {
    let mut r = Run::new();
    r.place(&[("A", 2), ("B", 1)]);
    r.reply("A", 2, true);
    r.reply("B", 1, true);
    r.act(Act::Authorize);
    r.d.advance_time(T0 + OrdersConfig::default().fraud_gate_ms - 1);
    assert_eq!(r.status(), Some(S::PaymentAuthorized));
    r.d.advance_time(T0 + OrdersConfig::default().fraud_gate_ms + 1000);
    assert_eq!(r.status(), Some(S::Confirmed));
    let reason = r.d.outputs::<Event>(Topic::Lifecycle.name()).into_iter().find_map(|e| match e {
        Event::OrderStatusChanged(s) if s.status == S::Confirmed.as_str() => Some(s.reason),
        _ => None,
    });
    assert_eq!(reason.as_deref(), Some("reserved and paid; no fraud score within 600 s of placing"));
    // A hold that turns up later still stops it before shipping.
    r.score(90, "hold");
    assert_eq!(r.status(), Some(S::FraudHold));
}

#[test]
fn with_the_gate_off_an_authorized_order_is_confirmed_at_once() {
    let mut r = Run { d: TestDriver::new(Orders::new(OrdersConfig { fraud_gate_ms: 0, ..OrdersConfig::default() })), n: 0, t: T0 };
    r.place(&[("A", 2)]);
    r.reply("A", 2, true);
    r.act(Act::Authorize);
    assert_eq!(r.status(), Some(S::Confirmed));
}

fn commands(r: &Run) -> Vec<Event> {
    r.d.outputs::<Event>(Topic::PaymentCommands.name())
}

#[test]
fn the_saga_asks_for_the_payment_at_checkout_the_capture_at_shipment_and_the_refund_on_return() {
    let mut r = Run::reach(S::Confirmed);
    let asked = commands(&r);
    let [Event::PaymentRequested(p)] = asked.as_slice() else { panic!("one payment request: {asked:?}") };
    assert_eq!((p.amount_minor, p.currency.as_str(), p.payment_method_token.as_str()), (3000, "EUR", "pm_1"));
    assert_eq!(p.vendors, vec![VendorAmount { vendor_id: "v-1".into(), amount_minor: 3000 }]);
    r.act(Act::ShipCreated);
    r.act(Act::ShipA);
    // The shipment's lines (2 × A at 10.00) first, keeping the rest of the authorization;
    // the shipment that completes the order (B) asks for what is left of the total.
    let captures = |r: &Run| -> Vec<(Option<String>, i64, bool)> { r.captures().into_iter().map(|c| (c.shipment_id, c.amount_minor, c.final_capture)).collect() };
    assert_eq!(captures(&r), vec![(Some("s-1".into()), 2000, false)], "a capture is asked for when the order ships");
    assert!(r.captures().iter().all(|c| c.payment_id == "pi_1" && c.placed_at.millis() == T0 + 1000));
    r.act(Act::Capture);
    r.act(Act::ShipB);
    assert_eq!(captures(&r), vec![(Some("s-1".into()), 2000, false), (Some("s-2".into()), 1000, true)]);
    let before = commands(&r).len();
    r.act(Act::Capture);
    assert_eq!(commands(&r).len(), before, "nothing more is asked once captured");
    r.act(Act::Deliver);
    r.act(Act::ReturnReq);
    r.act(Act::ReturnRecv);
    let refunds: Vec<RefundRequested> = commands(&r).into_iter().filter_map(|e| if let Event::RefundRequested(x) = e { Some(x) } else { None }).collect();
    let [refund] = refunds.as_slice() else { panic!("one refund request: {refunds:?}") };
    // One unit of A returned, at 10.00.
    assert_eq!((refund.amount_minor, refund.reason.as_str()), (1000, "return"));
    assert_eq!(refund.lines, vec![RefundLine { sku: "A".into(), vendor_id: "v-1".into(), quantity: 1, amount_minor: 1000 }]);
}

#[test]
fn cancelling_an_authorized_order_asks_for_its_authorization_to_be_released_and_a_late_one_is_released_too() {
    let mut r = Run::reach(S::Confirmed);
    r.act(Act::Cancel);
    assert_eq!(r.status(), Some(S::Cancelled));
    let released: Vec<RefundRequested> = commands(&r).into_iter().filter_map(|e| if let Event::RefundRequested(x) = e { Some(x) } else { None }).collect();
    assert_eq!(released.iter().map(|x| (x.amount_minor, x.reason.as_str())).collect::<Vec<_>>(), vec![(3000, "cancellation")]);

    let mut r = Run::reach(S::Cancelled);
    r.act(Act::Authorize);
    let released: Vec<RefundRequested> = commands(&r).into_iter().filter_map(|e| if let Event::RefundRequested(x) = e { Some(x) } else { None }).collect();
    assert_eq!(released.iter().map(|x| (x.payment_id.as_str(), x.reason.as_str())).collect::<Vec<_>>(), vec![("pi_1", "authorized_after_order_ended")]);
    assert_eq!(r.dead(), 0);
}

/// An order of `items` (sku, vendor, quantity, unit price) with `shipping` and `discount`,
/// reserved, paid and confirmed.
fn confirmed(items: &[(&str, &str, i32, i64)], shipping_minor: i64, discount_minor: i64) -> Run {
    let mut r = Run::new();
    let (event_id, occurred_at) = (id(&mut r.n), r.tick());
    r.pipe(OrderPlaced {
        event_id,
        occurred_at,
        order_id: "o-1".into(),
        customer_id: "c-1".into(),
        session_id: None,
        customer_since: None,
        items: items
            .iter()
            .map(|(sku, vendor, quantity, unit_price_minor)| OrderItem { sku: sku.to_string(), product_id: format!("p-{sku}"), vendor_id: vendor.to_string(), quantity: *quantity, unit_price_minor: *unit_price_minor })
            .collect(),
        currency: "EUR".into(),
        shipping_address: addr("DE"),
        billing_address: addr("DE"),
        shipping_minor,
        tax_minor: 0,
        discount_minor,
        payment_method_token: "pm_1".into(),
        client_ip: "203.0.113.1".into(),
    });
    r.score(5, "allow");
    for (sku, _, q, _) in items {
        r.reply(sku, *q, true);
    }
    r.act(Act::Authorize);
    assert_eq!(r.status(), Some(S::Confirmed));
    r
}

/// Three vendors' lines with shipping 4.90 and a 10.00 discount (v-a: 2 × a-1 at 30.00 and
/// a-2 at 40.01; v-b: b-1 at 33.33; v-c: c-1 at 12.35; total 140.59), confirmed.
fn three_vendor_order() -> Run {
    confirmed(&[("a-1", "v-a", 2, 3_000), ("a-2", "v-a", 1, 4_001), ("b-1", "v-b", 1, 3_333), ("c-1", "v-c", 1, 1_235)], 490, 1_000)
}

impl Run {
    fn ship(&mut self, shipment: &str, lines: &[(&str, i32)], shipped: bool) -> Event {
        let (event_id, occurred_at) = (id(&mut self.n), self.tick());
        let lines: Vec<SkuQuantity> = lines.iter().map(|(sku, quantity)| SkuQuantity { sku: sku.to_string(), quantity: *quantity }).collect();
        let (order_id, shipment_id, warehouse_id) = ("o-1".to_string(), shipment.to_string(), "wh-de-berlin".to_string());
        let e: Event = if shipped {
            ShipmentShipped { event_id, occurred_at, order_id, shipment_id, warehouse_id, tracking_number: "1Z".into(), lines }.into()
        } else {
            ShipmentCreated { event_id, occurred_at, order_id, shipment_id, warehouse_id, carrier: "dhl".into(), lines }.into()
        };
        self.pipe(e.clone());
        e
    }
    fn captures(&self) -> Vec<CaptureRequested> {
        commands(self).into_iter().filter_map(|e| if let Event::CaptureRequested(c) = e { Some(c) } else { None }).collect()
    }
}

#[test]
fn each_shipment_asks_for_its_lines_and_the_last_for_the_rest_of_the_total_with_the_shipping_and_the_discount() {
    let mut r = three_vendor_order();
    // Shipment 1: one a-1 and b-1 (created, then shipped: one capture).
    r.ship("shp-1", &[("a-1", 1), ("b-1", 1)], false);
    let created_again = r.ship("shp-1", &[("a-1", 1), ("b-1", 1)], false);
    r.ship("shp-1", &[("a-1", 1), ("b-1", 1)], true);
    // A redelivered event asks nothing new either.
    r.pipe(created_again);
    assert_eq!(r.captures().len(), 1);
    // Shipment 2: the rest.
    r.ship("shp-2", &[("a-1", 1), ("a-2", 1), ("c-1", 1)], false);
    r.ship("shp-2", &[("a-1", 1), ("a-2", 1), ("c-1", 1)], true);
    assert_eq!(r.status(), Some(S::Shipped));
    assert_eq!(r.dead(), 0);
    let captures = r.captures();
    // (shipment, amount, final, lines per vendor)
    type Asked<'a> = (Option<&'a str>, i64, bool, Vec<(&'a str, i64)>);
    let asked: Vec<Asked> = captures
        .iter()
        .map(|c| (c.shipment_id.as_deref(), c.amount_minor, c.final_capture, c.vendors.iter().map(|v| (v.vendor_id.as_str(), v.amount_minor)).collect()))
        .collect();
    // 30.00 + 33.33 first; then 140.59 − 63.33 = 77.26 (lines 30.00 + 40.01 + 12.35, shipping
    // 4.90, discount −10.00). The vendors' lines are asked for in full: the discount is the
    // marketplace's.
    assert_eq!(
        asked,
        vec![
            (Some("shp-1"), 6_333, false, vec![("v-a", 3_000), ("v-b", 3_333)]),
            (Some("shp-2"), 7_726, true, vec![("v-a", 7_001), ("v-c", 1_235)]),
        ]
    );
    assert_eq!(captures.iter().map(|c| c.amount_minor).sum::<i64>(), 14_059, "the authorized total, no more");
    assert_ne!(captures[0].event_id, captures[1].event_id);
}

#[test]
fn no_capture_asks_past_the_total_when_the_discount_is_larger_than_the_last_shipment() {
    // Lines 30.00, discount 15.00: the first shipment's lines (20.00) are more than the total.
    let mut r = confirmed(&[("A", "v-1", 2, 1_000), ("B", "v-1", 1, 1_000)], 0, 1_500);
    r.ship("s-1", &[("A", 2)], true);
    r.ship("s-2", &[("B", 1)], true);
    let asked: Vec<(i64, bool, i64)> = r.captures().iter().map(|c| (c.amount_minor, c.final_capture, c.vendors.iter().map(|v| v.amount_minor).sum())).collect();
    // The vendor's lines are asked for in full each time (it is paid them, less commission).
    assert_eq!(asked, vec![(1_500, false, 2_000), (0, true, 1_000)]);
}

#[test]
fn a_shipment_of_an_order_not_confirmed_asks_for_no_capture() {
    let mut r = Run::reach(S::Reserved);
    r.ship("s-1", &[("A", 2)], false);
    assert!(r.captures().is_empty());
    assert_eq!(r.dead(), 1, "a shipment of an unpaid order is refused");
}
