//! orders — the order aggregate and the saga that drives it.
//!
//! Reads, all keyed by order id: `storefront.orders` (placed, cancel and return requests),
//! `storefront.payments`, `storefront.fulfillment`, `inventory.replies` and `fraud.scores`.
//! Writes `orders.lifecycle` (`OrderStatusChanged`, previous and new state and why),
//! `inventory.reservations` (order-level ReservationMade / Rejected / Released / Committed)
//! and `inventory.commands` (per-sku instructions to the inventory processor, keyed by sku).
//!
//! The order keeps three states — order, payment, fulfillment — and every legal move of
//! the order state is in [`OrderStatus::MOVES`] (the contract crate's one table); anything else (shipping a cancelled order, cancelling a
//! shipped one) goes to the DLQ with the reason and changes nothing. The saga:
//!
//! 1. placed → ask inventory to hold every sku (one command per sku, keyed by sku);
//! 2. all held → reserved (if the holds are split but one warehouse could fill the whole
//!    order, ask inventory to move them there first); any refused → release the others
//!    (compensation), rejected_out_of_stock;
//! 3. payment authorized → payment_authorized → confirmed (unless on fraud hold), and the
//!    holds stop expiring; no authorization within `payment_timeout_ms` → cancelled, holds
//!    released;
//! 4. payment captured → ReservationCommitted (the sale is final); shipped → stock leaves
//!    inventory;
//!    delivered → return requested → returned (restocked) → refunded.
//!
//! Every compensation is an event. `docs/RESERVATIONS.md` has the sequence diagram.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use storeflow_avro::{
    Event, FulfillmentStatus, InventoryCommand, InventoryReply, MissingStock, OrderItem, OrderStatus, OrderStatusChanged, PaymentStatus, ReservationCommitted,
    ReservationMade, ReservationRejected, ReservationReleased, ReservedLine, Timestamp, Topic, WarehouseStock,
};

use crate::geo::distance;
use crate::{Ctx, Flow, Input, ProcessError, Processor, Store, Timer};

/// `[processors.orders]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrdersConfig {
    /// A reserved order without an authorized payment this long after it was placed is
    /// cancelled and its stock released (ms of event time).
    pub payment_timeout_ms: i64,
    /// How long inventory holds stock for an order (sent with each hold; inventory releases
    /// a hold itself shortly after, should the saga not have).
    pub hold_ttl_ms: i64,
    /// Warehouse id → ISO country, to choose one warehouse for a whole order (the same
    /// table as `[processors.inventory] warehouses`).
    pub warehouses: BTreeMap<String, String>,
    /// The fraud gate: an authorized order is confirmed only once its fraud score is known,
    /// or this long (ms of event time) after it was placed without one — then it is confirmed
    /// and the lifecycle says so. Captures and shipments that arrive meanwhile are held back.
    /// 0 turns the gate off (confirm on authorization; a later hold still stops shipping).
    pub fraud_gate_ms: i64,
    /// How long (ms of event time) an event about an order not placed yet is kept, waiting
    /// for its order (a payment from a faster producer, a fraud verdict computed before the
    /// order reached this task); after it, it goes to the DLQ as about an unknown order.
    pub early_ttl_ms: i64,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        OrdersConfig {
            payment_timeout_ms: 15 * 60_000,
            hold_ttl_ms: 20 * 60_000,
            warehouses: crate::geo::default_warehouses(),
            fraud_gate_ms: 10 * 60_000,
            early_ttl_ms: 10 * 60_000,
        }
    }
}

/// Where the reservation stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Waiting for the first answers.
    #[default]
    Reserving,
    /// Moving holds into one warehouse.
    Moving,
    /// Every sku is held.
    Held,
    /// Some sku could not be held; the others are being released.
    Failed,
    /// Given back (cancelled, failed payment, expired, rejected).
    Released,
    /// Payment captured: the holds are committed.
    Committed,
}

/// The order aggregate, as the saga keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderState {
    pub order_id: String,
    pub customer_id: String,
    pub currency: String,
    pub items: Vec<OrderItem>,
    pub ship_country: String,
    pub subtotal_minor: i64,
    pub shipping_minor: i64,
    pub tax_minor: i64,
    pub discount_minor: i64,
    pub total_minor: i64,
    /// Line totals per vendor (quantity × unit price), for payouts and commission.
    pub vendor_totals: BTreeMap<String, i64>,
    pub status: OrderStatus,
    pub payment_status: PaymentStatus,
    pub fulfillment_status: FulfillmentStatus,
    pub placed_at: i64,
    pub phase: Phase,
    /// Units asked per sku.
    pub wanted: BTreeMap<String, i32>,
    /// Skus whose answer is awaited.
    pub awaiting: BTreeSet<String>,
    /// Where each sku is held.
    pub held: BTreeMap<String, Vec<ReservedLine>>,
    /// Skus that could not be held.
    pub missing: Vec<MissingStock>,
    /// Availability per sku after its hold (to find one warehouse for the whole order).
    pub availability: BTreeMap<String, Vec<WarehouseStock>>,
    pub payment_id: Option<String>,
    pub authorized: bool,
    pub captured: bool,
    pub refunded_minor: i64,
    pub shipped: BTreeMap<String, i32>,
    /// The order state a fraud hold interrupted.
    pub held_from: Option<OrderStatus>,
    /// The fraud decision once known ("allow", "review", "hold"), or "none in time" when the
    /// gate's wait ran out.
    #[serde(default)]
    pub fraud: Option<String>,
    /// Ids of the last events applied (duplicates are ignored).
    pub seen: Vec<String>,
    /// What arrived while the order could not apply it yet (its reservation in flight, its
    /// fraud verdict awaited), in time order; applied once it can.
    #[serde(default)]
    pub deferred: Vec<Held>,
    /// The order's version: one more per announced change (read models keep the highest).
    #[serde(default)]
    pub version: i64,
}

/// An event or a timer an order holds back until it can apply it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// Its logical time.
    pub at: i64,
    /// Its step's identity: orders what happened at the same time, the same way every run.
    pub cause: u64,
    /// What it is.
    pub what: HeldKind,
}

/// What an order holds back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeldKind {
    /// An event, as JSON.
    Event(String),
    /// A timer's key (`payment|…`, `fraud|…`).
    Timer(String),
}

impl Held {
    fn event(at: i64, cause: u64, e: &Event) -> Held {
        Held { at, cause, what: HeldKind::Event(serde_json::to_string(&e.to_json()).expect("events are JSON")) }
    }
}

/// The saga's timers. The runtime keys a timer by a string: `<kind>|<order id>`, written
/// and read only here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OrderTimer {
    /// No payment authorized `payment_timeout_ms` after placing: cancel.
    Payment,
    /// No fraud verdict `fraud_gate_ms` after placing: confirm without one.
    Fraud,
    /// Events that came before their order waited `early_ttl_ms`: dead-letter them.
    Early,
}

impl OrderTimer {
    const fn kind(self) -> &'static str {
        match self {
            OrderTimer::Payment => "payment",
            OrderTimer::Fraud => "fraud",
            OrderTimer::Early => "early",
        }
    }

    fn key(self, order_id: &str) -> String {
        format!("{}|{order_id}", self.kind())
    }

    /// The timer and order of a key (`None` for a key this saga never sets).
    fn parse(key: &str) -> Option<(OrderTimer, &str)> {
        let (kind, order_id) = key.split_once('|')?;
        let timer = [OrderTimer::Payment, OrderTimer::Fraud, OrderTimer::Early].into_iter().find(|t| t.kind() == kind)?;
        Some((timer, order_id))
    }
}

/// Inserts `h` into `list`, kept sorted by (time, cause).
fn hold(list: &mut Vec<Held>, h: Held) {
    let at = list.partition_point(|x| (x.at, x.cause) <= (h.at, h.cause));
    list.insert(at, h);
}

/// Every order the saga knows, by order id.
pub const ORDERS: Store<OrderState> = Store::new("orders");
/// Events about an order not placed yet, by order id, waiting `early_ttl_ms` for it.
pub const EARLY: Store<Vec<Held>> = Store::new("early");

/// The orders processor.
pub struct Orders(OrdersConfig);

fn fresh_id(t: i64, parts: &[&str]) -> String {
    crate::ids::derived_event_id(0x8422_2325_cbf2_9ce4, 29, t, parts)
}

fn illegal(o: &OrderState, what: &str) -> ProcessError {
    ProcessError::permanent(format!("{what}: order {} is {} (payment {}, fulfillment {})", o.order_id, o.status, o.payment_status, o.fulfillment_status))
}

impl Orders {
    fn save(ctx: &mut Ctx<'_, Event>, o: &OrderState) -> Result<(), ProcessError> {
        ctx.put(ORDERS, &o.order_id, o)
    }

    /// Moves the order state, or refuses when the move is not in [`OrderStatus::MOVES`].
    fn go(o: &mut OrderState, ctx: &mut Ctx<'_, Event>, to: OrderStatus, reason: &str) -> Result<(), ProcessError> {
        if o.status == to {
            return Ok(());
        }
        if !o.status.can_move_to(to) {
            return Err(illegal(o, &format!("cannot go to {to} ({reason})")));
        }
        let previous = std::mem::replace(&mut o.status, to);
        Self::announce(o, ctx, Some(previous), reason);
        Ok(())
    }

    fn announce(o: &mut OrderState, ctx: &mut Ctx<'_, Event>, previous: Option<OrderStatus>, reason: &str) {
        o.version += 1;
        let t = ctx.time();
        ctx.emit(Event::OrderStatusChanged(OrderStatusChanged {
            event_id: fresh_id(t, &["status", &o.order_id, o.status.as_str(), previous.map_or("", OrderStatus::as_str), reason]),
            occurred_at: Timestamp(t),
            order_id: o.order_id.clone(),
            customer_id: o.customer_id.clone(),
            previous_status: previous.map(|s| s.to_string()),
            status: o.status.to_string(),
            payment_status: o.payment_status.to_string(),
            fulfillment_status: o.fulfillment_status.to_string(),
            reason: reason.to_string(),
            total_minor: o.total_minor,
            currency: o.currency.clone(),
            version: o.version,
        }));
    }

    fn command(&self, o: &OrderState, ctx: &mut Ctx<'_, Event>, sku: &str, action: &str, qty: i32, warehouse: Option<&str>, reason: &str, restockable: bool) {
        let t = ctx.time();
        ctx.emit(Event::InventoryCommand(InventoryCommand {
            event_id: fresh_id(t, &["cmd", &o.order_id, sku, action, warehouse.unwrap_or(""), reason]),
            occurred_at: Timestamp(t),
            order_id: o.order_id.clone(),
            sku: sku.to_string(),
            action: action.to_string(),
            quantity: qty,
            warehouse_id: warehouse.map(str::to_string),
            ship_country: Some(o.ship_country.clone()),
            expires_at: (action == "reserve").then(|| Timestamp(o.placed_at + self.0.hold_ttl_ms)),
            reason: reason.to_string(),
            restockable,
        }));
    }

    /// Releases every hold (compensation) and says so once.
    fn release_all(&self, o: &mut OrderState, ctx: &mut Ctx<'_, Event>, reason: &str) {
        if matches!(o.phase, Phase::Released | Phase::Committed) {
            return;
        }
        let skus: Vec<String> = o.wanted.keys().cloned().collect();
        for sku in &skus {
            let qty = o.wanted[sku];
            self.command(o, ctx, sku, "release", qty, None, reason, true);
        }
        let lines: Vec<ReservedLine> = o.held.values().flatten().cloned().collect();
        if matches!(o.phase, Phase::Held) && !lines.is_empty() {
            let t = ctx.time();
            ctx.emit(Event::ReservationReleased(ReservationReleased {
                event_id: fresh_id(t, &["released", &o.order_id, reason]),
                occurred_at: Timestamp(t),
                order_id: o.order_id.clone(),
                lines,
                reason: reason.to_string(),
            }));
        }
        o.phase = Phase::Released;
    }

    /// One warehouse that could hold every sku of the order, nearest first.
    fn single_warehouse(&self, o: &OrderState) -> Option<String> {
        let used: BTreeSet<&str> = o.held.values().flatten().map(|l| l.warehouse_id.as_str()).collect();
        if used.len() <= 1 {
            return None;
        }
        let mut candidates: BTreeSet<String> = BTreeSet::new();
        for a in o.availability.values() {
            candidates.extend(a.iter().map(|w| w.warehouse_id.clone()));
        }
        let mut ranked: Vec<String> = candidates.into_iter().collect();
        ranked.sort_by_key(|w| (distance(self.0.warehouses.get(w).map(String::as_str).unwrap_or(""), &o.ship_country), w.clone()));
        ranked.into_iter().find(|w| {
            o.wanted.iter().all(|(sku, qty)| {
                let free = o.availability.get(sku).and_then(|a| a.iter().find(|x| &x.warehouse_id == w)).map_or(0, |x| x.available);
                let mine: i32 = o.held.get(sku).into_iter().flatten().filter(|l| &l.warehouse_id == w).map(|l| l.quantity).sum();
                free + mine >= *qty
            })
        })
    }

    fn on_reply(&self, o: &mut OrderState, r: &InventoryReply, ctx: &mut Ctx<'_, Event>) -> Result<(), ProcessError> {
        match r.action.as_str() {
            "reserve" => {}
            "expire" => {
                // Inventory gave a hold back because it lapsed: the order cannot go on unpaid.
                o.held.remove(&r.sku);
                if matches!(o.status, OrderStatus::Placed | OrderStatus::Reserved) && !o.authorized {
                    self.release_all(o, ctx, "expired");
                    Self::go(o, ctx, OrderStatus::Cancelled, "the reservation expired before payment")?;
                }
                return Ok(());
            }
            _ => return Ok(()),
        }
        if !o.awaiting.remove(&r.sku) {
            return Ok(()); // a late or repeated answer
        }
        if r.ok || (o.phase == Phase::Moving && !r.lines.is_empty()) {
            o.held.insert(r.sku.clone(), r.lines.clone());
        } else if o.phase == Phase::Reserving {
            let available = r.availability.iter().map(|w| w.available).sum();
            o.missing.push(MissingStock { sku: r.sku.clone(), requested: r.requested, available });
        }
        o.availability.insert(r.sku.clone(), r.availability.clone());
        if !matches!(o.status, OrderStatus::Placed) {
            // The order moved on (cancelled, failed) while inventory answered: give it back.
            if r.ok {
                self.command(o, ctx, &r.sku, "release", r.requested, None, "order no longer placed", true);
            }
            return Ok(());
        }
        if !o.awaiting.is_empty() {
            return Ok(());
        }
        if !o.missing.is_empty() {
            o.phase = Phase::Failed;
            for sku in o.held.keys().cloned().collect::<Vec<_>>() {
                let qty = o.wanted[&sku];
                self.command(o, ctx, &sku, "release", qty, None, "rejected_out_of_stock", true);
            }
            o.held.clear();
            o.phase = Phase::Released;
            let t = ctx.time();
            let skus: Vec<String> = o.missing.iter().map(|m| m.sku.clone()).collect();
            ctx.emit(Event::ReservationRejected(ReservationRejected {
                event_id: fresh_id(t, &["rejected", &o.order_id]),
                occurred_at: Timestamp(t),
                order_id: o.order_id.clone(),
                missing: o.missing.clone(),
                reason: format!("not enough stock of {}", skus.join(", ")),
            }));
            o.fulfillment_status = FulfillmentStatus::Unfulfilled;
            return Self::go(o, ctx, OrderStatus::RejectedOutOfStock, &format!("not enough stock of {}", skus.join(", ")));
        }
        if o.phase == Phase::Reserving {
            if let Some(w) = self.single_warehouse(o) {
                o.phase = Phase::Moving;
                let to_move: Vec<String> = o
                    .held
                    .iter()
                    .filter(|(_, lines)| lines.iter().any(|l| l.warehouse_id != w))
                    .map(|(sku, _)| sku.clone())
                    .collect();
                for sku in to_move {
                    let qty = o.wanted[&sku];
                    o.awaiting.insert(sku.clone());
                    self.command(o, ctx, &sku, "reserve", qty, Some(&w), "one warehouse for the whole order", true);
                }
                return Ok(());
            }
        }
        o.phase = Phase::Held;
        let t = ctx.time();
        ctx.emit(Event::ReservationMade(ReservationMade {
            event_id: fresh_id(t, &["made", &o.order_id]),
            occurred_at: Timestamp(t),
            order_id: o.order_id.clone(),
            lines: o.held.values().flatten().cloned().collect(),
            expires_at: Timestamp(o.placed_at + self.0.hold_ttl_ms),
        }));
        o.fulfillment_status = FulfillmentStatus::Reserved;
        Self::go(o, ctx, OrderStatus::Reserved, "every line is reserved")?;
        if o.authorized {
            Self::go(o, ctx, OrderStatus::PaymentAuthorized, "payment was authorized before the reservation completed")?;
            self.confirm(o, ctx, "reserved and paid")?;
        }
        Ok(())
    }

    /// True while the order is authorized but waits for its fraud score to be confirmed.
    fn awaits_fraud(&self, o: &OrderState) -> bool {
        self.0.fraud_gate_ms > 0 && o.fraud.is_none() && o.status == OrderStatus::PaymentAuthorized
    }

    /// True while the order waits for inventory's answers: everything else about it waits
    /// too, so its outcome is the same whether the answers came first or last.
    fn awaits_reservation(o: &OrderState) -> bool {
        o.status == OrderStatus::Placed && matches!(o.phase, Phase::Reserving | Phase::Moving)
    }

    /// Events that need the fraud verdict before they make sense.
    fn deferrable(e: &Event) -> bool {
        matches!(
            e,
            Event::PaymentCaptured(_)
                | Event::ShipmentCreated(_)
                | Event::ShipmentShipped(_)
                | Event::ShipmentDelivered(_)
                | Event::ReturnRequested(_)
                | Event::ReturnReceived(_)
                | Event::RefundIssued(_)
        )
    }

    /// True when `h` cannot be applied to `o` yet.
    fn must_wait(&self, o: &OrderState, h: &Held) -> bool {
        if Self::awaits_reservation(o) {
            return true;
        }
        match &h.what {
            HeldKind::Event(json) if self.awaits_fraud(o) => {
                storeflow_avro::json::event_from_json_str(json, Default::default()).is_ok_and(|e| Self::deferrable(&e))
            }
            _ => false,
        }
    }

    /// Applies what the order held back, in time order, as far as it can now; an event that
    /// is illegal now goes to its dead-letter topic with the reason.
    fn replay_deferred(&self, o: &mut OrderState, ctx: &mut Ctx<'_, Event>) -> Result<(), ProcessError> {
        if o.deferred.is_empty() {
            return Ok(());
        }
        for h in std::mem::take(&mut o.deferred) {
            if self.must_wait(o, &h) {
                o.deferred.push(h);
                continue;
            }
            match h.what {
                HeldKind::Timer(key) => self.timer_fired(o, &key, ctx)?,
                HeldKind::Event(json) => {
                    let Ok(event) = storeflow_avro::json::event_from_json_str(&json, Default::default()) else {
                        tracing::error!(order = %o.order_id, "a held-back event no longer parses; dropped");
                        continue;
                    };
                    let (before, mark) = (o.clone(), ctx.savepoint());
                    let deferred = std::mem::take(&mut o.deferred);
                    let result = self.apply(o, &event, ctx);
                    o.deferred = deferred;
                    if let Err(e) = result {
                        *o = before;
                        ctx.rollback_outputs(mark);
                        let topic = event.topic().name().to_string();
                        ctx.dead_letter(&topic, &o.order_id.clone(), event.clone(), &e.to_string());
                    }
                    o.seen.insert(0, event.event_id().to_string());
                }
            }
        }
        o.seen.truncate(32);
        Ok(())
    }

    /// A timer of `o` came due (or was held back until now).
    fn timer_fired(&self, o: &mut OrderState, key: &str, ctx: &mut Ctx<'_, Event>) -> Result<(), ProcessError> {
        let timer = OrderTimer::parse(key).map(|(t, _)| t);
        if timer == Some(OrderTimer::Fraud) {
            if o.fraud.is_none() {
                o.fraud = Some("none in time".into());
                let why = format!("reserved and paid; no fraud score within {} s of placing", self.0.fraud_gate_ms / 1000);
                self.confirm(o, ctx, &why)?;
            }
        } else if timer == Some(OrderTimer::Payment) && !o.authorized && matches!(o.status, OrderStatus::Placed | OrderStatus::Reserved) {
            self.release_all(o, ctx, "payment_timeout");
            o.fulfillment_status = FulfillmentStatus::Unfulfilled;
            Self::go(o, ctx, OrderStatus::Cancelled, "no payment authorized in time")?;
        }
        Ok(())
    }

    /// Applies one event (anything but OrderPlaced) to the order.
    fn apply(&self, o: &mut OrderState, e: &Event, ctx: &mut Ctx<'_, Event>) -> Result<(), ProcessError> {
        match e {
            Event::InventoryReply(r) => self.on_reply(o, r, ctx)?,
            Event::PaymentAuthorized(p) => {
                match o.status {
                    OrderStatus::Placed => {}
                    OrderStatus::Reserved => {
                        Self::go(o, ctx, OrderStatus::PaymentAuthorized, "payment authorized")?;
                    }
                    OrderStatus::FraudHold => {}
                    _ => return Err(illegal(o, "payment authorized")),
                }
                o.authorized = true;
                o.payment_id = Some(p.payment_id.clone());
                o.payment_status = PaymentStatus::Authorized;
                if o.status == OrderStatus::PaymentAuthorized {
                    self.confirm(o, ctx, "reserved and paid")?;
                }
            }
            Event::PaymentFailed(_) => {
                if !matches!(o.status, OrderStatus::Placed | OrderStatus::Reserved | OrderStatus::PaymentAuthorized) {
                    return Err(illegal(o, "payment failed"));
                }
                o.payment_status = PaymentStatus::Failed;
                self.release_all(o, ctx, "payment_failed");
                o.fulfillment_status = FulfillmentStatus::Unfulfilled;
                Self::go(o, ctx, OrderStatus::PaymentFailed, "the payment failed")?;
            }
            Event::PaymentCaptured(_) => {
                if !matches!(o.status, OrderStatus::Confirmed | OrderStatus::PartiallyShipped | OrderStatus::Shipped | OrderStatus::Delivered) {
                    return Err(illegal(o, "payment captured"));
                }
                o.captured = true;
                o.payment_status = PaymentStatus::Captured;
                if o.phase == Phase::Held {
                    // The holds were made permanent at confirmation; the sale is final now.
                    o.phase = Phase::Committed;
                    let t = ctx.time();
                    ctx.emit(Event::ReservationCommitted(ReservationCommitted {
                        event_id: fresh_id(t, &["committed", &o.order_id]),
                        occurred_at: Timestamp(t),
                        order_id: o.order_id.clone(),
                        lines: o.held.values().flatten().cloned().collect(),
                    }));
                }
            }
            Event::FraudScored(f) => {
                o.fraud = Some(f.decision.clone());
                if f.decision == "hold" && matches!(o.status, OrderStatus::Placed | OrderStatus::Reserved | OrderStatus::PaymentAuthorized | OrderStatus::Confirmed) {
                    o.held_from = Some(o.status);
                    let top: Vec<&str> = f.reasons.iter().take(3).map(|r| r.code.as_str()).collect();
                    let why = if top.is_empty() { format!("fraud score {}", f.score) } else { format!("fraud score {} ({})", f.score, top.join(", ")) };
                    Self::go(o, ctx, OrderStatus::FraudHold, &why)?;
                } else if o.status == OrderStatus::PaymentAuthorized {
                    self.confirm(o, ctx, &format!("reserved, paid and fraud-checked (score {}, {})", f.score, f.decision))?;
                }
            }
            Event::OrderCancelRequested(c) => {
                if !o.status.can_move_to(OrderStatus::Cancelled) {
                    return Err(illegal(o, "cancel requested"));
                }
                if o.captured {
                    // The sale is final (its reservation committed): it ends through a return.
                    return Err(illegal(o, "cancel requested after the payment was captured; request a return"));
                }
                self.release_all(o, ctx, "cancelled");
                o.fulfillment_status = FulfillmentStatus::Unfulfilled;
                Self::go(o, ctx, OrderStatus::Cancelled, &format!("cancelled by the {}: {}", c.requested_by, c.reason))?;
            }
            Event::ShipmentCreated(_) => {
                if !matches!(o.status, OrderStatus::Confirmed | OrderStatus::PartiallyShipped) {
                    return Err(illegal(o, "shipment created"));
                }
            }
            Event::ShipmentShipped(s) => {
                if !matches!(o.status, OrderStatus::Confirmed | OrderStatus::PartiallyShipped) {
                    return Err(illegal(o, "shipment shipped"));
                }
                for l in &s.lines {
                    let wanted = o.wanted.get(&l.sku).copied().unwrap_or(0);
                    let done = o.shipped.get(&l.sku).copied().unwrap_or(0);
                    if l.quantity <= 0 || done + l.quantity > wanted {
                        return Err(illegal(o, &format!("shipping {} of {} ({} of {} already shipped)", l.quantity, l.sku, done, wanted)));
                    }
                }
                for l in &s.lines {
                    *o.shipped.entry(l.sku.clone()).or_default() += l.quantity;
                    self.command(o, ctx, &l.sku, "ship", l.quantity, Some(&s.warehouse_id), "shipped", true);
                }
                let all = o.wanted.iter().all(|(sku, q)| o.shipped.get(sku).copied().unwrap_or(0) >= *q);
                o.fulfillment_status = if all { FulfillmentStatus::Shipped } else { FulfillmentStatus::PartiallyShipped };
                let to = if all { OrderStatus::Shipped } else { OrderStatus::PartiallyShipped };
                Self::go(o, ctx, to, &format!("shipment {} left {}", s.shipment_id, s.warehouse_id))?;
            }
            Event::ShipmentDelivered(d) => match o.status {
                OrderStatus::Shipped => {
                    o.fulfillment_status = FulfillmentStatus::Delivered;
                    Self::go(o, ctx, OrderStatus::Delivered, &format!("shipment {} delivered", d.shipment_id))?;
                }
                OrderStatus::PartiallyShipped => {}
                _ => return Err(illegal(o, "shipment delivered")),
            },
            Event::ReturnRequested(r) => {
                if o.status != OrderStatus::Delivered {
                    return Err(illegal(o, "return requested"));
                }
                Self::go(o, ctx, OrderStatus::ReturnRequested, &format!("return {} requested: {}", r.return_id, r.reason))?;
            }
            Event::ReturnReceived(r) => {
                if !matches!(o.status, OrderStatus::ReturnRequested | OrderStatus::Delivered) {
                    return Err(illegal(o, "return received"));
                }
                for l in &r.lines {
                    self.command(o, ctx, &l.sku, "restock", l.quantity, Some(&r.warehouse_id), "returned", r.restockable);
                }
                o.fulfillment_status = FulfillmentStatus::Returned;
                Self::go(o, ctx, OrderStatus::Returned, &format!("return {} received at {}", r.return_id, r.warehouse_id))?;
            }
            Event::RefundIssued(r) => {
                if !(o.authorized || o.captured) {
                    return Err(illegal(o, "refund issued without a payment"));
                }
                o.refunded_minor += r.amount_minor;
                o.payment_status = if o.refunded_minor >= o.total_minor { PaymentStatus::Refunded } else { PaymentStatus::PartiallyRefunded };
                if o.status == OrderStatus::Returned {
                    Self::go(o, ctx, OrderStatus::Refunded, &format!("refund {} issued", r.refund_id))?;
                } else {
                    let status = o.status;
                    Self::announce(o, ctx, Some(status), &format!("refund {} issued", r.refund_id));
                }
            }
            _ => unreachable!("matched above"),
        }
        Ok(())
    }

    /// payment_authorized → confirmed. The holds stop expiring now: the order is paid for,
    /// and shipping (when the payment is captured) may be days away.
    /// Confirms an authorized order (its holds stop expiring) — unless the fraud gate is
    /// still waiting for its score.
    fn confirm(&self, o: &mut OrderState, ctx: &mut Ctx<'_, Event>, why: &str) -> Result<(), ProcessError> {
        if o.status == OrderStatus::PaymentAuthorized && !self.awaits_fraud(o) {
            for (sku, qty) in o.wanted.clone() {
                self.command(o, ctx, &sku, "commit", qty, None, "payment authorized", true);
            }
            Self::go(o, ctx, OrderStatus::Confirmed, why)?;
        }
        Ok(())
    }
}

impl Processor for Orders {
    const NAME: &'static str = "orders";
    type Config = OrdersConfig;
    type In = Event;
    type Out = Event;

    fn new(config: OrdersConfig) -> Self {
        Orders(config)
    }

    fn flow(&self) -> Flow {
        let outputs = [Topic::Lifecycle.name(), Topic::Reservations.name(), Topic::InventoryCommands.name()];
        // Everything about an order — what customers, payment providers and warehouses
        // report, inventory's answers, fraud verdicts — in one time order, so an order's
        // history is the same however its inputs interleave on arrival.
        Flow::new()
            .group(&[Topic::Orders.name(), Topic::Payments.name(), Topic::Fulfillment.name(), Topic::InventoryReplies.name(), Topic::FraudScores.name()])
            .emits(&outputs)
            .timers()
            .emits(&outputs)
            .build()
    }

    fn stores(&self) -> &'static [&'static str] {
        &[ORDERS.name, EARLY.name]
    }

    fn process(&mut self, input: &Input<Event>, ctx: &mut Ctx<'_, Event>) -> Result<(), ProcessError> {
        let e = &input.value;
        if let Event::OrderPlaced(p) = e {
            p.check_amounts().map_err(ProcessError::permanent)?;
            if let Some(existing) = ctx.get(ORDERS, &p.order_id)? {
                if existing.seen.contains(&p.event_id) {
                    return Ok(());
                }
                return Err(ProcessError::permanent(format!("order {} was already placed", p.order_id)));
            }
            let mut wanted: BTreeMap<String, i32> = BTreeMap::new();
            let mut vendor_totals: BTreeMap<String, i64> = BTreeMap::new();
            for i in &p.items {
                *wanted.entry(i.sku.clone()).or_default() += i.quantity;
                *vendor_totals.entry(i.vendor_id.clone()).or_default() += i64::from(i.quantity) * i.unit_price_minor;
            }
            let mut o = OrderState {
                order_id: p.order_id.clone(),
                customer_id: p.customer_id.clone(),
                currency: p.currency.clone(),
                items: p.items.clone(),
                ship_country: p.shipping_address.country.clone(),
                subtotal_minor: p.subtotal_minor(),
                shipping_minor: p.shipping_minor,
                tax_minor: p.tax_minor,
                discount_minor: p.discount_minor,
                total_minor: p.total_minor(),
                vendor_totals,
                status: OrderStatus::Placed,
                payment_status: PaymentStatus::Pending,
                fulfillment_status: FulfillmentStatus::Unfulfilled,
                placed_at: p.occurred_at.millis(),
                phase: Phase::Reserving,
                awaiting: wanted.keys().cloned().collect(),
                wanted,
                held: BTreeMap::new(),
                missing: Vec::new(),
                availability: BTreeMap::new(),
                payment_id: None,
                authorized: false,
                captured: false,
                refunded_minor: 0,
                shipped: BTreeMap::new(),
                held_from: None,
                fraud: None,
                seen: vec![p.event_id.clone()],
                deferred: Vec::new(),
                version: 0,
            };
            Self::announce(&mut o, ctx, None, "order placed");
            // What came before the order (a faster producer's payment, an early verdict) waits
            // with everything else for the reservation.
            if let Some(early) = ctx.get(EARLY, &o.order_id)? {
                for h in early {
                    hold(&mut o.deferred, h);
                }
                ctx.delete(EARLY, &o.order_id)?;
            }
            for (sku, qty) in o.wanted.clone() {
                self.command(&o, ctx, &sku, "reserve", qty, None, "order placed", true);
            }
            ctx.set_timer(o.placed_at + self.0.payment_timeout_ms, &OrderTimer::Payment.key(&o.order_id));
            if self.0.fraud_gate_ms > 0 {
                ctx.set_timer(o.placed_at + self.0.fraud_gate_ms, &OrderTimer::Fraud.key(&o.order_id));
            }
            o.seen.truncate(32);
            return Self::save(ctx, &o);
        }
        // Everything else the saga reads names its order.
        let Some(order_id) = e.order_id() else {
            return Err(ProcessError::permanent(format!("orders does not handle {}", e.name())));
        };
        let order_id = order_id.to_string();
        let Some(mut o) = ctx.get(ORDERS, &order_id)? else {
            if matches!(e, Event::InventoryReply(_)) {
                return Err(ProcessError::permanent(format!("unknown order {order_id}: nothing was placed under that id")));
            }
            // Perhaps its order is still on the way: keep it for a while.
            let mut early = ctx.get(EARLY, &order_id)?.unwrap_or_default();
            if early.iter().any(|h| matches!(&h.what, HeldKind::Event(j) if j.contains(e.event_id()))) {
                return Ok(());
            }
            let until = input.timestamp.saturating_add(self.0.early_ttl_ms);
            hold(&mut early, Held::event(input.timestamp, input.cause, e));
            let expires = early.iter().map(|h| h.at).max().unwrap_or(until).saturating_add(self.0.early_ttl_ms);
            ctx.put_until(EARLY, &order_id, &early, expires.saturating_add(1))?;
            ctx.set_timer(until, &OrderTimer::Early.key(&order_id));
            return Ok(());
        };
        if o.seen.contains(&e.event_id().to_string()) {
            return Ok(());
        }
        let h = Held::event(input.timestamp, input.cause, e);
        if !matches!(e, Event::InventoryReply(_)) && self.must_wait(&o, &h) {
            // Its order cannot take it yet (the reservation is in flight, or the fraud
            // verdict awaited): hold it back and apply it, in time order, once it can.
            hold(&mut o.deferred, h);
        } else {
            self.apply(&mut o, e, ctx)?;
            self.replay_deferred(&mut o, ctx)?;
        }
        o.seen.insert(0, e.event_id().to_string());
        o.seen.truncate(32);
        Self::save(ctx, &o)
    }

    fn on_timer(&mut self, timer: &Timer, ctx: &mut Ctx<'_, Event>) -> Result<(), ProcessError> {
        let Some((kind, order_id)) = OrderTimer::parse(&timer.key) else { return Ok(()) };
        if kind == OrderTimer::Early {
            if ctx.get(ORDERS, order_id)?.is_some() {
                return Ok(());
            }
            // Everything that waited its whole time for this order goes to the DLQ.
            let early = ctx.get(EARLY, order_id)?.unwrap_or_default();
            let (due, later): (Vec<Held>, Vec<Held>) = early.into_iter().partition(|h| h.at.saturating_add(self.0.early_ttl_ms) <= timer.at);
            for h in due {
                if let HeldKind::Event(json) = h.what {
                    if let Ok(event) = storeflow_avro::json::event_from_json_str(&json, Default::default()) {
                        let reason = format!("unknown order {order_id}: nothing was placed under that id within {} s", self.0.early_ttl_ms / 1000);
                        ctx.dead_letter(event.topic().name(), order_id, event.clone(), &reason);
                    }
                }
            }
            match later.iter().map(|h| h.at).min() {
                Some(next) => {
                    ctx.set_timer(next.saturating_add(self.0.early_ttl_ms), &timer.key);
                    let expires = later.iter().map(|h| h.at).max().unwrap_or(next).saturating_add(self.0.early_ttl_ms).saturating_add(1);
                    ctx.put_until(EARLY, order_id, &later, expires)?;
                }
                None => ctx.delete(EARLY, order_id)?,
            }
            return Ok(());
        }
        let Some(mut o) = ctx.get(ORDERS, order_id)? else { return Ok(()) };
        if Self::awaits_reservation(&o) {
            let cause = crate::runtime::align::step_of_timer(&timer.key, timer.at);
            hold(&mut o.deferred, Held { at: timer.at, cause, what: HeldKind::Timer(timer.key.clone()) });
            return Self::save(ctx, &o);
        }
        self.timer_fired(&mut o, &timer.key, ctx)?;
        self.replay_deferred(&mut o, ctx)?;
        Self::save(ctx, &o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestDriver;
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
        fn status(&mut self) -> String {
            self.d.store("orders", ORDERS, "o-1").map(|o| o.status.to_string()).unwrap_or_default()
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
                Act::Authorize => PaymentAuthorized { event_id, occurred_at, order_id, payment_id: "pi_1".into(), amount_minor: 3000, currency: "EUR".into(), provider: "stripe".into() }.into(),
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
        fn reach(status: &str) -> Run {
            let mut r = Run::new();
            r.place(&[("A", 2), ("B", 1)]);
            r.score(5, "allow");
            let steps: &[Step] = match status {
                "placed" => &[],
                "reserved" => &[Step::Hold],
                "confirmed" => &[Step::Hold, Step::Do(Act::Authorize)],
                "partially_shipped" => &[Step::Hold, Step::Do(Act::Authorize), Step::Do(Act::ShipA)],
                "shipped" => &[Step::Hold, Step::Do(Act::Authorize), Step::Do(Act::ShipA), Step::Do(Act::ShipB)],
                "delivered" => &[Step::Hold, Step::Do(Act::Authorize), Step::Do(Act::ShipA), Step::Do(Act::ShipB), Step::Do(Act::Deliver)],
                "return_requested" => &[Step::Hold, Step::Do(Act::Authorize), Step::Do(Act::ShipA), Step::Do(Act::ShipB), Step::Do(Act::Deliver), Step::Do(Act::ReturnReq)],
                "returned" => &[Step::Hold, Step::Do(Act::Authorize), Step::Do(Act::ShipA), Step::Do(Act::ShipB), Step::Do(Act::Deliver), Step::Do(Act::ReturnReq), Step::Do(Act::ReturnRecv)],
                "refunded" => &[Step::Hold, Step::Do(Act::Authorize), Step::Do(Act::ShipA), Step::Do(Act::ShipB), Step::Do(Act::Deliver), Step::Do(Act::ReturnReq), Step::Do(Act::ReturnRecv), Step::Do(Act::Refund)],
                "cancelled" => &[Step::Hold, Step::Do(Act::Cancel)],
                "rejected_out_of_stock" => &[Step::Reject],
                "payment_failed" => &[Step::Hold, Step::Do(Act::Fail)],
                "fraud_hold" => &[Step::Hold, Step::Do(Act::FraudHold)],
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
            assert_eq!(r.status(), status, "could not reach {status}");
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

    const STATES: [&str; 13] = [
        "placed", "reserved", "confirmed", "partially_shipped", "shipped", "delivered", "return_requested", "returned",
        "refunded", "cancelled", "rejected_out_of_stock", "payment_failed", "fraud_hold",
    ];

    #[derive(Debug, PartialEq)]
    enum Outcome {
        To(&'static str),
        Dead,
        /// Held back until the reservation settles (the order is still being reserved).
        Held,
    }

    /// The expected outcome of `act` in state `from`, written out by hand, independently of
    /// OrderStatus::MOVES.
    fn expected(from: &str, act: Act) -> Outcome {
        use Act::*;
        use Outcome::*;
        match (from, act) {
            // While its reservation is in flight, an order takes nothing else: everything waits
            // and applies, in time order, once inventory has answered.
            ("placed", _) => Held,
            ("reserved", Authorize) => To("confirmed"),
            ("fraud_hold", Authorize) => To("fraud_hold"),
            ("reserved", Fail) => To("payment_failed"),
            ("confirmed", Capture) => To("confirmed"),
            ("partially_shipped", Capture) => To("partially_shipped"),
            ("shipped", Capture) => To("shipped"),
            ("delivered", Capture) => To("delivered"),
            ("reserved" | "confirmed" | "fraud_hold", Cancel) => To("cancelled"),
            ("confirmed", ShipCreated) => To("confirmed"),
            ("partially_shipped", ShipCreated) => To("partially_shipped"),
            ("confirmed", ShipA) => To("partially_shipped"),
            ("partially_shipped", ShipB) => To("shipped"),
            ("confirmed", ShipB) => To("partially_shipped"),
            ("shipped", Deliver) => To("delivered"),
            ("partially_shipped", Deliver) => To("partially_shipped"),
            ("delivered", ReturnReq) => To("return_requested"),
            ("return_requested" | "delivered", ReturnRecv) => To("returned"),
            ("returned", Refund) => To("refunded"),
            ("confirmed", Refund) => To("confirmed"),
            ("partially_shipped", Refund) => To("partially_shipped"),
            ("shipped", Refund) => To("shipped"),
            ("delivered", Refund) => To("delivered"),
            ("return_requested", Refund) => To("return_requested"),
            ("refunded", Refund) => To("refunded"),
            ("reserved" | "confirmed", FraudHold) => To("fraud_hold"),
            (s, FraudHold) => To(STATES.iter().find(|x| **x == s).copied().expect("a state")),
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
                        assert_eq!(r.status(), to, "{act:?} in {from}");
                        assert_eq!(r.dead(), 0, "{act:?} in {from} was dead-lettered");
                    }
                    Outcome::Dead => {
                        assert_eq!(r.status(), from, "{act:?} in {from} changed the order");
                        assert_eq!(r.dead(), 1, "{act:?} in {from} was not dead-lettered");
                    }
                    Outcome::Held => {
                        assert_eq!(r.status(), from, "{act:?} in {from} changed the order");
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
        let mut r = Run::reach("placed");
        r.act(Act::Authorize);
        r.act(Act::ShipCreated); // fine once confirmed
        r.act(Act::Deliver); // not before shipping
        assert_eq!(r.status(), "placed");
        r.reply("A", 2, true);
        r.reply("B", 1, true);
        assert_eq!(r.status(), "confirmed");
        let dlq = r.d.dlq(Topic::Fulfillment.name());
        assert_eq!(dlq.len(), 1, "{dlq:?}");
        assert!(dlq[0].reason.contains("shipment delivered: order o-1 is confirmed"), "{}", dlq[0].reason);
        assert_eq!(dlq[0].processor, "orders");
        let o = r.d.store("orders", ORDERS, "o-1").unwrap();
        assert!(o.deferred.is_empty());
        // And for an order that is rejected, everything held back is dead-lettered.
        let mut r = Run::reach("placed");
        r.act(Act::ShipA);
        r.reply("A", 2, true);
        r.reply("B", 1, false);
        assert_eq!(r.status(), "rejected_out_of_stock");
        assert_eq!(r.d.dlq(Topic::Fulfillment.name()).len(), 1);
    }

    #[test]
    fn every_legal_move_is_announced_with_its_previous_state() {
        let mut r = Run::reach("refunded");
        let moves: Vec<(Option<String>, String)> = r
            .d
            .outputs::<Event>(Topic::Lifecycle.name())
            .into_iter()
            .filter_map(|e| match e {
                Event::OrderStatusChanged(s) if s.previous_status.as_deref() != Some(s.status.as_str()) => Some((s.previous_status, s.status)),
                _ => None,
            })
            .collect();
        let path: Vec<&str> = moves.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(path, ["placed", "reserved", "payment_authorized", "confirmed", "partially_shipped", "shipped", "delivered", "return_requested", "returned", "refunded"]);
        for (prev, to) in &moves[1..] {
            assert!(storeflow_avro::states::may_move(prev.as_deref().unwrap(), to.parse().unwrap()), "{prev:?} → {to} is not in OrderStatus::MOVES");
        }
        assert!(r.status() == "refunded");
    }

    #[test]
    fn a_partial_refusal_releases_the_skus_that_were_held() {
        let r = Run::reach("rejected_out_of_stock");
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
        let mut r = Run::reach("reserved");
        r.d.advance_time(T0 + OrdersConfig::default().payment_timeout_ms + 10_000);
        assert_eq!(r.status(), "cancelled");
        let releases = r
            .d
            .outputs::<Event>(Topic::InventoryCommands.name())
            .into_iter()
            .filter(|e| matches!(e, Event::InventoryCommand(c) if c.action == "release" && c.reason == "payment_timeout"))
            .count();
        assert_eq!(releases, 2);
    }

    #[test]
    fn payment_before_the_reservation_confirms_once_the_stock_is_held() {
        let mut r = Run::reach("placed");
        r.act(Act::Authorize);
        assert_eq!(r.status(), "placed");
        r.reply("A", 2, true);
        r.reply("B", 1, true);
        assert_eq!(r.status(), "confirmed");
    }

    #[test]
    fn a_repeated_event_is_applied_once_and_an_unknown_order_is_dead_lettered() {
        let mut r = Run::reach("confirmed");
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
        assert_eq!(r.status(), "partially_shipped");
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
        assert_eq!((r.status().as_str(), r.dead()), ("", 0), "nothing placed, nothing dead-lettered yet");
        r.t = T0;
        r.place(&[("A", 2)]);
        assert_eq!(r.status(), "placed");
        r.reply("A", 2, true);
        assert_eq!(r.status(), "confirmed", "reserved, then the earlier payment, then the verdict");
        assert_eq!(r.dead(), 0);
    }

    #[test]
    fn a_payment_timeout_during_the_reservation_applies_after_it_as_if_inventory_had_answered_at_once() {
        let mut r = Run { d: TestDriver::new(Orders::new(OrdersConfig { payment_timeout_ms: 500, ..OrdersConfig::default() })), n: 0, t: T0 };
        r.place(&[("A", 1)]);
        r.d.advance_time(T0 + 5_000);
        assert_eq!(r.status(), "placed", "the timeout waits for the reservation");
        r.reply("A", 1, true);
        assert_eq!(r.status(), "cancelled");
        let last = r.d.outputs::<Event>(Topic::Lifecycle.name()).into_iter().filter_map(|e| match e {
            Event::OrderStatusChanged(s) => Some((s.status, s.version)),
            _ => None,
        }).collect::<Vec<_>>();
        assert_eq!(last, vec![("placed".into(), 1), ("reserved".into(), 2), ("cancelled".into(), 3)], "every announcement has the next version");
    }

    #[test]
    fn an_order_whose_amounts_overflow_goes_to_the_dlq_and_places_nothing() {
        let mut r = Run::new();
        // 3 × i64::MAX / 2 overflows a 64-bit subtotal: refused, not wrapped, not a panic.
        r.place_priced(&[("A", 3)], i64::MAX / 2);
        assert_eq!(r.status(), "", "nothing was placed");
        let dlq = r.d.dlq(Topic::Orders.name());
        assert_eq!(dlq.len(), 1);
        assert!(dlq[0].reason.contains("items[0].unit_price_minor"), "{}", dlq[0].reason);
        assert!(r.d.outputs::<Event>(Topic::InventoryCommands.name()).is_empty(), "no stock was asked for");
        // An ordinary order afterwards goes through.
        r.place(&[("A", 1)]);
        assert_eq!(r.status(), "placed");
    }

    #[test]
    fn totals_and_vendor_line_totals_are_kept() {
        let mut r = Run::reach("placed");
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
        assert_eq!(r.status(), "payment_authorized", "confirmed before the fraud score");
        r.act(Act::Capture);
        r.act(Act::ShipA);
        assert_eq!((r.status().as_str(), r.dead()), ("payment_authorized", 0));
        assert_eq!(r.d.store("orders", ORDERS, "o-1").unwrap().deferred.len(), 2);
        r.score(12, "allow");
        assert_eq!(r.status(), "partially_shipped", "confirmed, then the held-back capture and shipment applied");
        assert_eq!(r.dead(), 0);
        let confirmed = r.d.outputs::<Event>(Topic::Lifecycle.name()).into_iter().find_map(|e| match e {
            Event::OrderStatusChanged(s) if s.status == "confirmed" => Some(s.reason),
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
        assert_eq!(r.status(), "fraud_hold");
        let dlq = r.d.dlq(Topic::Fulfillment.name());
        assert_eq!(dlq.len(), 1, "the held-back shipment is refused: {dlq:?}");
        assert!(dlq[0].reason.contains("is fraud_hold"), "{}", dlq[0].reason);
        let held = r.d.outputs::<Event>(Topic::Lifecycle.name()).into_iter().find_map(|e| match e {
            Event::OrderStatusChanged(s) if s.status == "fraud_hold" => Some(s.reason),
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
        assert_eq!(r.status(), "payment_authorized");
        r.d.advance_time(T0 + OrdersConfig::default().fraud_gate_ms + 1000);
        assert_eq!(r.status(), "confirmed");
        let reason = r.d.outputs::<Event>(Topic::Lifecycle.name()).into_iter().find_map(|e| match e {
            Event::OrderStatusChanged(s) if s.status == "confirmed" => Some(s.reason),
            _ => None,
        });
        assert_eq!(reason.as_deref(), Some("reserved and paid; no fraud score within 600 s of placing"));
        // A hold that turns up later still stops it before shipping.
        r.score(90, "hold");
        assert_eq!(r.status(), "fraud_hold");
    }

    #[test]
    fn with_the_gate_off_an_authorized_order_is_confirmed_at_once() {
        let mut r = Run { d: TestDriver::new(Orders::new(OrdersConfig { fraud_gate_ms: 0, ..OrdersConfig::default() })), n: 0, t: T0 };
        r.place(&[("A", 2)]);
        r.reply("A", 2, true);
        r.act(Act::Authorize);
        assert_eq!(r.status(), "confirmed");
    }
}
