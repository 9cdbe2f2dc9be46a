//! orders — the order aggregate and the saga that drives it.
//!
//! Reads, all keyed by order id: `storefront.orders` (placed, cancel and return requests),
//! `storefront.payments`, `storefront.fulfillment`, `inventory.replies` and `fraud.scores`.
//! Writes `orders.lifecycle` (`OrderStatusChanged`, previous and new state and why),
//! `inventory.reservations` (order-level ReservationMade / Rejected / Released / Committed)
//! and `inventory.commands` (per-sku instructions to the inventory processor, keyed by sku).
//!
//! The order keeps three states — order, payment, fulfillment — and every legal move of
//! the order state is in [`OrderStatus::MOVES`](storeflow_avro::OrderStatus::MOVES) (the contract crate's one table); anything else (shipping a cancelled order, cancelling a
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
//!
//! The folder, by job: `config.rs` the settings; `state.rs` what is kept per order;
//! `transitions.rs` the order state's moves and their announcements; `saga.rs` what each
//! event does to its order; `timers.rs` the saga's timers; this file the processor, which
//! hands each record and timer to its order; `tests.rs` the saga on in-memory records.

mod config;
mod saga;
mod state;
#[cfg(test)]
mod tests;
mod timers;
mod transitions;

pub use config::OrdersConfig;
pub use state::{CaptureAsked, EARLY, Held, HeldEvent, HeldKind, ORDERS, OrderState, Phase, Retired};

use storeflow_avro::{Event, Topic};

use self::saga::{Saga, awaits_reservation};
use self::state::hold;
use self::timers::OrderTimer;
use self::transitions::announce;
use crate::{Ctx, Flow, Input, ProcessError, Processor, Timer};

/// The orders processor.
pub struct Orders(OrdersConfig);

fn save(ctx: &mut Ctx<'_, Event>, o: &OrderState) -> Result<(), ProcessError> {
    ctx.put(ORDERS, &o.order_id, o)
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
        let outputs = [Topic::Lifecycle.name(), Topic::Reservations.name(), Topic::InventoryCommands.name(), Topic::PaymentCommands.name()];
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
        let saga = Saga(&self.0);
        let e = &input.value;
        if let Event::OrderPlaced(p) = e {
            p.check_amounts().map_err(ProcessError::permanent)?;
            if let Some(existing) = ctx.get(ORDERS, &p.order_id)? {
                if existing.seen.contains(&p.event_id) {
                    return Ok(());
                }
                return Err(ProcessError::permanent(format!("order {} was already placed", p.order_id)));
            }
            let mut o = OrderState::placed(p);
            announce(&mut o, ctx, None, "order placed");
            // What came before the order (a faster producer's payment, an early verdict) waits
            // with everything else for the reservation.
            if let Some(early) = ctx.get(EARLY, &o.order_id)? {
                for h in early {
                    hold(&mut o.deferred, h);
                }
                ctx.delete(EARLY, &o.order_id)?;
            }
            for (sku, qty) in o.wanted.clone() {
                saga.command(&o, ctx, &sku, "reserve", qty, None, "order placed", true);
            }
            saga.request_payment(&o, &p.payment_method_token, ctx);
            ctx.set_timer(o.placed_at + self.0.payment_timeout_ms, &OrderTimer::Payment.key(&o.order_id));
            if self.0.fraud_gate_ms > 0 {
                ctx.set_timer(o.placed_at + self.0.fraud_gate_ms, &OrderTimer::Fraud.key(&o.order_id));
            }
            o.seen.truncate(32);
            return save(ctx, &o);
        }
        if matches!(e, Event::VendorTransferCreated(_) | Event::VendorTransferReversed(_) | Event::DisputeOpened(_) | Event::DisputeClosed(_)) {
            // The vendors' payouts and the bank's disputes move money, not the order: a
            // disputed order keeps its status (the analytics count the disputed amounts).
            return Ok(());
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
            if early.iter().any(|h| matches!(&h.what, HeldKind::Event(HeldEvent(held)) if held.event_id() == e.event_id())) {
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
        if !matches!(e, Event::InventoryReply(_)) && saga.must_wait(&o, &h) {
            // Its order cannot take it yet (the reservation is in flight, or the fraud
            // verdict awaited): hold it back and apply it, in time order, once it can.
            hold(&mut o.deferred, h);
        } else {
            saga.apply(&mut o, e, ctx)?;
            saga.replay_deferred(&mut o, ctx)?;
        }
        o.seen.insert(0, e.event_id().to_string());
        o.seen.truncate(32);
        save(ctx, &o)
    }

    fn on_timer(&mut self, timer: &Timer, ctx: &mut Ctx<'_, Event>) -> Result<(), ProcessError> {
        let saga = Saga(&self.0);
        let Some((kind, order_id)) = OrderTimer::parse(&timer.key) else { return Ok(()) };
        if kind == OrderTimer::Early {
            if ctx.get(ORDERS, order_id)?.is_some() {
                return Ok(());
            }
            // Everything that waited its whole time for this order goes to the DLQ.
            let early = ctx.get(EARLY, order_id)?.unwrap_or_default();
            let (due, later): (Vec<Held>, Vec<Held>) = early.into_iter().partition(|h| h.at.saturating_add(self.0.early_ttl_ms) <= timer.at);
            for h in due {
                if let HeldKind::Event(HeldEvent(event)) = h.what {
                    let reason = format!("unknown order {order_id}: nothing was placed under that id within {} s", self.0.early_ttl_ms / 1000);
                    ctx.dead_letter(event.topic().name(), order_id, event, &reason);
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
        if awaits_reservation(&o) {
            let cause = crate::runtime::align::step_of_timer(&timer.key, timer.at);
            hold(&mut o.deferred, Held { at: timer.at, cause, what: HeldKind::Timer(timer.key.clone()) });
            return save(ctx, &o);
        }
        saga.timer_fired(&mut o, &timer.key, ctx)?;
        saga.replay_deferred(&mut o, ctx)?;
        save(ctx, &o)
    }
}
