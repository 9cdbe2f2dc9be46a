//! The simulator in closed loop: it asks a pipeline (here a scripted double) what it made of
//! each order before it ships or cancels, and follows the answer. The simulator posts no
//! payment outcome: the double plays the saga and the payments worker too, authorizing the
//! checkout's card [`AUTHORIZE_MS`] after the order is placed (a declining test card fails).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use storeflow_avro::{Event, OrderStatus, Timestamp};
use storeflow_sim::{Decisions, SimConfig, Simulator};

const START: i64 = 1_764_000_000_000;
const LATE_VERDICT_MS: i64 = 45_000;
/// How long after placing the double's payments worker answers.
const AUTHORIZE_MS: i64 = 500;

/// True when the order's checkout carried one of Stripe's declining test cards.
fn declines(o: &storeflow_avro::OrderPlaced) -> bool {
    storeflow_sim::DECLINED_CARDS.contains(&o.payment_method_token.as_str())
}

/// What the scripted pipeline does with order number `n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Script {
    /// Reserves and confirms it once paid.
    Normal,
    /// Rejects it out of stock when placed.
    Rejected,
    /// Holds it for fraud when placed.
    HeldAtOnce,
    /// Holds it for fraud once it is paid.
    HeldWhenPaid,
    /// Cancels it once it is paid (an operator, a timeout).
    CancelledWhenPaid,
    /// Confirms it 45 s after it is paid (its fraud score comes late).
    LateVerdict,
}

fn script(order_id: &str, scripted: bool) -> Script {
    // `o-<seed>-<number>`.
    let n: u64 = order_id.rsplit('-').next().and_then(|n| n.parse().ok()).expect("order ids are numbered");
    if !scripted {
        return Script::Normal;
    }
    match n % 11 {
        1 => Script::Rejected,
        2 => Script::HeldAtOnce,
        3 => Script::HeldWhenPaid,
        4 => Script::CancelledWhenPaid,
        5 => Script::LateVerdict,
        _ => Script::Normal,
    }
}

/// The double's view: each order's statuses over event time, the questions asked, and the
/// time of the last event the simulator yielded when each was asked.
#[derive(Default)]
struct Pipeline {
    scripted: bool,
    statuses: HashMap<String, BTreeMap<i64, OrderStatus>>,
    asked: Vec<(String, i64, i64)>,
    last_yielded: i64,
}

impl Pipeline {
    fn set(&mut self, order: &str, at: i64, status: OrderStatus) {
        self.statuses.entry(order.to_string()).or_default().insert(at, status);
    }

    /// What the scripted pipeline publishes on seeing `e`.
    fn observe(&mut self, e: &Event) {
        use OrderStatus::*;
        let t = e.occurred_at().millis();
        self.last_yielded = t;
        match e {
            Event::OrderPlaced(o) => {
                let id = o.order_id.as_str();
                match script(id, self.scripted) {
                    Script::Rejected => return self.set(id, t, RejectedOutOfStock),
                    Script::HeldAtOnce => return self.set(id, t, FraudHold),
                    _ => self.set(id, t, Reserved),
                }
                // The payments worker's answer.
                let paid = t + AUTHORIZE_MS;
                if declines(o) {
                    return self.set(id, paid, PaymentFailed);
                }
                match script(id, self.scripted) {
                    Script::HeldWhenPaid => self.set(id, paid, FraudHold),
                    Script::CancelledWhenPaid => self.set(id, paid, Cancelled),
                    Script::LateVerdict => {
                        self.set(id, paid, PaymentAuthorized);
                        self.set(id, paid + LATE_VERDICT_MS, Confirmed);
                    }
                    _ => self.set(id, paid, Confirmed),
                }
            }
            Event::OrderCancelRequested(c) => self.set(&c.order_id, t, Cancelled),
            Event::ShipmentShipped(s) => self.set(&s.order_id, t, Shipped),
            Event::ShipmentDelivered(s) => self.set(&s.order_id, t, Delivered),
            _ => {}
        }
    }
}

struct Double(Arc<Mutex<Pipeline>>);

impl Decisions for Double {
    fn status_at(&mut self, order_id: &str, at: i64) -> Option<String> {
        let mut p = self.0.lock().expect("not poisoned");
        let last = p.last_yielded;
        p.asked.push((order_id.to_string(), at, last));
        p.statuses.get(order_id).and_then(|s| s.range(..=at).next_back()).map(|(_, s)| s.to_string())
    }
}

/// `n` events of seed 17 in closed loop with the double, and the double.
fn run(n: usize, scripted: bool) -> (Vec<Event>, Arc<Mutex<Pipeline>>, Simulator) {
    let pipeline = Arc::new(Mutex::new(Pipeline { scripted, ..Default::default() }));
    let config = SimConfig { seed: 17, start: Timestamp(START), fraud_ring_share: 0.02, reaction_ms: 0, ..Default::default() };
    let mut sim = Simulator::new(config).with_decisions(Box::new(Double(pipeline.clone())));
    let mut events = Vec::with_capacity(n);
    while events.len() < n {
        let Some(e) = sim.next() else { break };
        pipeline.lock().expect("not poisoned").observe(&e);
        events.push(e);
    }
    (events, pipeline, sim)
}

#[test]
fn a_pipeline_that_confirms_everything_gets_the_open_loop_traffic() {
    let (closed, pipeline, _) = run(100_000, false);
    let config = SimConfig { seed: 17, start: Timestamp(START), fraud_ring_share: 0.02, reaction_ms: 0, ..Default::default() };
    let open: Vec<Event> = Simulator::new(config).take(100_000).collect();
    assert!(closed == open, "the closed loop differs from the open loop although every order was confirmed");
    assert!(!pipeline.lock().expect("not poisoned").asked.is_empty());
}

#[test]
fn the_simulator_asks_as_of_its_reaction_time_before_its_clock() {
    let pipeline = Arc::new(Mutex::new(Pipeline::default()));
    let config = SimConfig { seed: 17, start: Timestamp(START), reaction_ms: 400, ..Default::default() };
    let mut sim = Simulator::new(config).with_decisions(Box::new(Double(pipeline.clone())));
    let mut checked = 0;
    for _ in 0..30_000 {
        let Some(e) = sim.next() else { break };
        let mut p = pipeline.lock().expect("not poisoned");
        // Every question asked since the last event is about a moment at least 400 ms before
        // the event the simulator yields next (its clock when it asked).
        for (order, at, _) in p.asked.drain(..) {
            assert!(e.occurred_at().millis() > at + 400, "asked about {order} as of {at}, less than 400 ms before acting at {}", e.occurred_at().millis());
            checked += 1;
        }
        p.observe(&e);
    }
    assert!(checked > 100, "only {checked} questions");
}

#[test]
fn the_simulator_follows_the_pipelines_decisions() {
    let (events, pipeline, sim) = run(200_000, true);
    let end = events.last().expect("events").occurred_at().millis();
    let pipeline = pipeline.lock().expect("not poisoned");

    // What happened to each order, by event type.
    let mut seen: HashMap<&str, Vec<&Event>> = HashMap::new();
    let mut placed: Vec<(&str, i64)> = Vec::new();
    let mut paid: HashMap<&str, i64> = HashMap::new();
    for e in &events {
        let order = match e {
            Event::OrderPlaced(o) => {
                placed.push((&o.order_id, e.occurred_at().millis()));
                if !declines(o) {
                    paid.insert(&o.order_id, e.occurred_at().millis() + AUTHORIZE_MS);
                }
                &o.order_id
            }
            Event::PaymentAuthorized(_) | Event::PaymentFailed(_) | Event::PaymentCaptured(_) | Event::RefundIssued(_) => {
                panic!("the simulator posted a payment outcome: {e:?}")
            }
            Event::OrderCancelRequested(x) => &x.order_id,
            Event::ShipmentCreated(x) => &x.order_id,
            Event::ShipmentShipped(x) => &x.order_id,
            Event::ShipmentDelivered(x) => &x.order_id,
            Event::ReturnRequested(x) => &x.order_id,
            Event::ReturnReceived(x) => &x.order_id,
            _ => continue,
        };
        seen.entry(order.as_str()).or_default().push(e);
    }
    let has = |order: &str, name: &str| seen.get(order).is_some_and(|es| es.iter().any(|e| e.name() == name));
    let fraud_cancel = |order: &str| {
        seen.get(order).is_some_and(|es| es.iter().any(|e| matches!(e, Event::OrderCancelRequested(c) if c.requested_by == "fraud_review")))
    };
    let shipping = ["ShipmentCreated", "ShipmentShipped", "ShipmentDelivered"];

    let mut tally: HashMap<Script, (usize, usize)> = HashMap::new();
    for &(order, at) in &placed {
        let s = script(order, true);
        let settled = at < end - 40_000;
        let t = tally.entry(s).or_default();
        t.0 += 1;
        match s {
            Script::Rejected => {
                for name in ["OrderCancelRequested"].iter().chain(&shipping) {
                    assert!(!has(order, name), "rejected order {order} got a {name}");
                }
                t.1 += 1;
            }
            Script::HeldAtOnce => {
                for name in &shipping {
                    assert!(!has(order, name), "order {order}, held when placed, got a {name}");
                }
                if settled {
                    assert!(fraud_cancel(order), "order {order}, held when placed, was never cancelled by a reviewer");
                }
                t.1 += fraud_cancel(order) as usize;
            }
            Script::HeldWhenPaid | Script::CancelledWhenPaid => {
                for name in &shipping {
                    assert!(!has(order, name), "order {order} ({s:?}) got a {name}");
                }
                let paid = paid.contains_key(order);
                if s == Script::CancelledWhenPaid {
                    assert!(!fraud_cancel(order), "order {order}, cancelled by the pipeline, was cancelled again");
                } else if settled && paid {
                    assert!(fraud_cancel(order), "order {order}, held once paid, was never cancelled by a reviewer");
                }
                t.1 += paid as usize;
            }
            Script::LateVerdict => {
                let authorized = paid.get(order).copied();
                let created = seen[order].iter().find(|e| e.name() == "ShipmentCreated").map(|e| e.occurred_at().millis());
                if let (Some(a), Some(c)) = (authorized, created) {
                    assert!(c >= a + LATE_VERDICT_MS, "order {order} shipped before it was confirmed");
                    t.1 += 1;
                }
            }
            Script::Normal => {
                t.1 += has(order, "ShipmentCreated") as usize;
            }
        }
    }
    // Everything else flows: paid orders ship as in open loop, and each script was exercised.
    let (normal, normal_shipped) = tally[&Script::Normal];
    assert!(normal_shipped as f64 > 0.8 * normal as f64, "{normal_shipped} of {normal} normal orders shipped");
    for s in [Script::Rejected, Script::HeldAtOnce, Script::HeldWhenPaid, Script::CancelledWhenPaid, Script::LateVerdict] {
        assert!(tally[&s].1 > 20, "{s:?} exercised only {:?} (orders, outcomes)", tally[&s]);
    }
    let rejected_before_the_end = placed.iter().filter(|(o, at)| script(o, true) == Script::Rejected && *at < end - 10_000).count();
    let unpaid = sim.summary().rejected_unpaid as usize;
    assert!((rejected_before_the_end..=tally[&Script::Rejected].0).contains(&unpaid), "{unpaid} rejected orders left unpaid");
    assert!(sim.summary().fraud_review_cancels > 0);

    // It asks at the moment it acts, after yielding everything before, and rarely.
    for (order, at, last) in &pipeline.asked {
        assert!(*last <= at + 1, "asked about {order} as of {at} after yielding an event at {last}");
    }
    let later: Vec<i64> = pipeline.asked.iter().map(|(_, at, _)| *at).collect();
    assert!(later.windows(2).all(|w| w[0] <= w[1]), "questions go back in time");
    assert!(pipeline.asked.len() < 4 * placed.len(), "{} questions for {} orders", pipeline.asked.len(), placed.len());
    assert_eq!(sim.summary().decisions_asked as usize, pipeline.asked.len());
}

#[test]
fn an_order_the_pipeline_does_not_know_is_left_alone() {
    struct Nobody;
    impl Decisions for Nobody {
        fn status_at(&mut self, _: &str, _: i64) -> Option<String> {
            None
        }
    }
    /// Names a state the contract does not have, for every order.
    struct Misspells;
    impl Decisions for Misspells {
        fn status_at(&mut self, _: &str, _: i64) -> Option<String> {
            Some("confirmd".into())
        }
    }
    let config = SimConfig { seed: 2, start: Timestamp(START), ..Default::default() };
    let events: Vec<Event> = Simulator::new(config.clone()).with_decisions(Box::new(Nobody)).take(50_000).collect();
    let misspelt: Vec<Event> = Simulator::new(config).with_decisions(Box::new(Misspells)).take(50_000).collect();
    assert!(misspelt == events, "a state the contract does not have is not an order the pipeline does not know");
    assert!(events.iter().any(|e| e.name() == "OrderPlaced"));
    for e in &events {
        assert!(
            !matches!(e, Event::PaymentAuthorized(_) | Event::PaymentFailed(_) | Event::ShipmentCreated(_) | Event::OrderCancelRequested(_)),
            "{} about an order the pipeline does not know",
            e.name()
        );
    }
}
