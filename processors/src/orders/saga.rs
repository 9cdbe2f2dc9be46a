//! The saga: inventory's holds asked for, gathered in one warehouse, compensated when one
//! fails; the payment and the fraud gate before confirmation; what each event does to its
//! order; what the order holds back until it can apply it.

use std::collections::{BTreeMap, BTreeSet};

use storeflow_avro::{
    CaptureRequested, Event, FulfillmentStatus, InventoryCommand, InventoryReply, MissingStock, OrderStatus, PaymentRequested, PaymentStatus, RefundLine,
    RefundRequested, ReservationCommitted, ReservationMade, ReservationRejected, ReservationReleased, ReservedLine, SkuQuantity, Timestamp, VendorAmount,
};

use super::config::OrdersConfig;
use super::state::{Held, HeldEvent, HeldKind, OrderState, Phase};
use super::timers::OrderTimer;
use super::transitions::{announce, fresh_id, go, illegal};
use crate::geo::distance;
use crate::{Ctx, ProcessError};

/// The saga under a configuration.
pub(super) struct Saga<'a>(pub(super) &'a OrdersConfig);

/// True while the order waits for inventory's answers: everything else about it waits
/// too, so its outcome is the same whether the answers came first or last.
pub(super) fn awaits_reservation(o: &OrderState) -> bool {
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

impl Saga<'_> {
    /// Sends inventory one instruction (`action`) about `sku` of the order.
    pub(super) fn command(&self, o: &OrderState, ctx: &mut Ctx<'_, Event>, sku: &str, action: &str, qty: i32, warehouse: Option<&str>, reason: &str, restockable: bool) {
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

    /// Asks the payments worker to authorize the order's total on `token`, when it names a
    /// payment method to charge (`pm_…`, or sealed: the worker opens it and decides). Any
    /// other token (a PaymentIntent the storefront confirmed itself, say) means the outcome
    /// comes from the provider's webhooks.
    pub(super) fn request_payment(&self, o: &OrderState, token: &str, ctx: &mut Ctx<'_, Event>) {
        // A sealed token (personal data, docs/SECURITY.md) is opened by the worker, which
        // decides then.
        if !(token.starts_with("pm_") || storeflow_avro::pii::is_sealed(token)) {
            return;
        }
        let t = ctx.time();
        ctx.emit(Event::PaymentRequested(PaymentRequested {
            event_id: fresh_id(t, &["pay", &o.order_id]),
            occurred_at: Timestamp(t),
            order_id: o.order_id.clone(),
            customer_id: o.customer_id.clone(),
            amount_minor: o.total_minor,
            currency: o.currency.clone(),
            payment_method_token: token.to_string(),
            vendors: vendor_amounts(o),
        }));
    }

    /// Asks the payments worker to capture a shipment's share of the payment, once per
    /// shipment (its ShipmentCreated or its ShipmentShipped, whichever comes first): the value
    /// of its lines at the order's prices, per vendor. The shipment that completes the
    /// order's lines is the final capture and asks for what is left of the total, so
    /// shipping, tax and the discount land there; no capture asks past the total. Vendors are
    /// paid their lines in full either way: the discount is the marketplace's.
    fn request_capture(&self, o: &mut OrderState, shipment_id: &str, lines: &[SkuQuantity], ctx: &mut Ctx<'_, Event>) {
        let Some(payment_id) = o.payment_id.clone() else { return };
        if !matches!(o.status, OrderStatus::Confirmed | OrderStatus::PartiallyShipped) || o.capture.shipments.iter().any(|s| s == shipment_id) || captures_complete(o) {
            return;
        }
        let mut vendors: BTreeMap<String, i64> = BTreeMap::new();
        let mut units = o.capture.units.clone();
        for l in lines {
            // Units past what the order has left to capture ask nothing.
            let left = o.wanted.get(&l.sku).copied().unwrap_or(0) - units.get(&l.sku).copied().unwrap_or(0);
            let Some(line) = priced(o, &l.sku, l.quantity.min(left)).filter(|line| line.quantity > 0) else { continue };
            *units.entry(line.sku.clone()).or_default() += line.quantity;
            *vendors.entry(line.vendor_id).or_default() += line.amount_minor;
        }
        if vendors.is_empty() {
            return;
        }
        let left = o.total_minor - o.capture.asked_minor;
        o.capture.units = units;
        let final_capture = captures_complete(o);
        let amount = if final_capture { left } else { vendors.values().sum::<i64>().min(left) }.max(0);
        o.capture.shipments.push(shipment_id.to_string());
        o.capture.asked_minor += amount;
        let t = ctx.time();
        ctx.emit(Event::CaptureRequested(CaptureRequested {
            event_id: fresh_id(t, &["capture", &o.order_id, shipment_id]),
            occurred_at: Timestamp(t),
            order_id: o.order_id.clone(),
            payment_id,
            amount_minor: amount,
            currency: o.currency.clone(),
            placed_at: Timestamp(o.placed_at),
            vendors: vendors.into_iter().map(|(vendor_id, amount_minor)| VendorAmount { vendor_id, amount_minor }).collect(),
            shipment_id: Some(shipment_id.to_string()),
            final_capture,
        }));
    }

    /// Asks the payments worker to give `amount` back for `lines` (released, when nothing
    /// was captured yet).
    fn request_refund(&self, o: &OrderState, payment_id: &str, amount: i64, lines: Vec<RefundLine>, reason: &str, ctx: &mut Ctx<'_, Event>) {
        let t = ctx.time();
        ctx.emit(Event::RefundRequested(RefundRequested {
            event_id: fresh_id(t, &["refund", &o.order_id, payment_id, reason]),
            occurred_at: Timestamp(t),
            order_id: o.order_id.clone(),
            payment_id: payment_id.to_string(),
            amount_minor: amount,
            currency: o.currency.clone(),
            reason: reason.to_string(),
            lines,
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
                    go(o, ctx, OrderStatus::Cancelled, "the reservation expired before payment")?;
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
            return go(o, ctx, OrderStatus::RejectedOutOfStock, &format!("not enough stock of {}", skus.join(", ")));
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
        go(o, ctx, OrderStatus::Reserved, "every line is reserved")?;
        if o.authorized {
            go(o, ctx, OrderStatus::PaymentAuthorized, "payment was authorized before the reservation completed")?;
            self.confirm(o, ctx, "reserved and paid")?;
        }
        Ok(())
    }

    /// True while the order is authorized but waits for its fraud score to be confirmed.
    fn awaits_fraud(&self, o: &OrderState) -> bool {
        self.0.fraud_gate_ms > 0 && o.fraud.is_none() && o.status == OrderStatus::PaymentAuthorized
    }

    /// True when `h` cannot be applied to `o` yet.
    pub(super) fn must_wait(&self, o: &OrderState, h: &Held) -> bool {
        if awaits_reservation(o) {
            return true;
        }
        match &h.what {
            HeldKind::Event(HeldEvent(e)) => self.awaits_fraud(o) && deferrable(e),
            HeldKind::Timer(_) => false,
        }
    }

    /// Applies what the order held back, in time order, as far as it can now; an event that
    /// is illegal now goes to its dead-letter topic with the reason.
    pub(super) fn replay_deferred(&self, o: &mut OrderState, ctx: &mut Ctx<'_, Event>) -> Result<(), ProcessError> {
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
                HeldKind::Event(HeldEvent(event)) => {
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
    pub(super) fn timer_fired(&self, o: &mut OrderState, key: &str, ctx: &mut Ctx<'_, Event>) -> Result<(), ProcessError> {
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
            go(o, ctx, OrderStatus::Cancelled, "no payment authorized in time")?;
        }
        Ok(())
    }

    /// Applies one event (anything but OrderPlaced) to the order.
    pub(super) fn apply(&self, o: &mut OrderState, e: &Event, ctx: &mut Ctx<'_, Event>) -> Result<(), ProcessError> {
        match e {
            Event::InventoryReply(r) => self.on_reply(o, r, ctx)?,
            Event::PaymentAuthorized(p) => {
                if o.authorized && o.payment_id.as_deref() == Some(p.payment_id.as_str()) {
                    return Ok(()); // the same authorization, reported again (a webhook and the worker)
                }
                match o.status {
                    OrderStatus::Placed => {}
                    OrderStatus::Reserved => {
                        go(o, ctx, OrderStatus::PaymentAuthorized, "payment authorized")?;
                    }
                    OrderStatus::FraudHold => {}
                    s if s.is_unsold() && !o.authorized => {
                        // Authorized after the order ended unsold (its payment timed out, say):
                        // nothing will be captured, so the hold on the card is released.
                        o.authorized = true;
                        o.payment_id = Some(p.payment_id.clone());
                        self.request_refund(o, &p.payment_id, p.amount_minor, Vec::new(), "authorized_after_order_ended", ctx);
                        return Ok(());
                    }
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
                if o.status.is_unsold() && !o.authorized {
                    return Ok(()); // a failure reported for an order that already ended unsold changes nothing
                }
                let (to, why) = match o.status {
                    OrderStatus::Placed | OrderStatus::Reserved | OrderStatus::PaymentAuthorized => (OrderStatus::PaymentFailed, "the payment failed"),
                    // Held for review and now unpayable: it can never be sold, so it ends and its
                    // stock goes back to other shoppers instead of waiting for a reviewer.
                    OrderStatus::FraudHold => (OrderStatus::Cancelled, "the payment failed while the order was held for fraud review"),
                    _ => return Err(illegal(o, "payment failed")),
                };
                o.payment_status = PaymentStatus::Failed;
                self.release_all(o, ctx, "payment_failed");
                o.fulfillment_status = FulfillmentStatus::Unfulfilled;
                go(o, ctx, to, why)?;
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
                    let top: Vec<&str> = f.reasons.iter().take(3).map(|r| r.code.as_str()).collect();
                    let why = if top.is_empty() { format!("fraud score {}", f.score) } else { format!("fraud score {} ({})", f.score, top.join(", ")) };
                    go(o, ctx, OrderStatus::FraudHold, &why)?;
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
                go(o, ctx, OrderStatus::Cancelled, &format!("cancelled by the {}: {}", c.requested_by, c.reason))?;
                if let (true, Some(payment_id)) = (o.authorized, o.payment_id.clone()) {
                    let lines = refund_lines(o, None);
                    self.request_refund(o, &payment_id, o.total_minor, lines, "cancellation", ctx);
                }
            }
            Event::ShipmentCreated(s) => {
                if !matches!(o.status, OrderStatus::Confirmed | OrderStatus::PartiallyShipped) {
                    return Err(illegal(o, "shipment created"));
                }
                self.request_capture(o, &s.shipment_id, &s.lines, ctx);
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
                self.request_capture(o, &s.shipment_id, &s.lines, ctx);
                for l in &s.lines {
                    *o.shipped.entry(l.sku.clone()).or_default() += l.quantity;
                    self.command(o, ctx, &l.sku, "ship", l.quantity, Some(&s.warehouse_id), "shipped", true);
                }
                let all = o.wanted.iter().all(|(sku, q)| o.shipped.get(sku).copied().unwrap_or(0) >= *q);
                o.fulfillment_status = if all { FulfillmentStatus::Shipped } else { FulfillmentStatus::PartiallyShipped };
                let to = if all { OrderStatus::Shipped } else { OrderStatus::PartiallyShipped };
                go(o, ctx, to, &format!("shipment {} left {}", s.shipment_id, s.warehouse_id))?;
            }
            Event::ShipmentDelivered(d) => match o.status {
                OrderStatus::Shipped => {
                    o.fulfillment_status = FulfillmentStatus::Delivered;
                    go(o, ctx, OrderStatus::Delivered, &format!("shipment {} delivered", d.shipment_id))?;
                }
                OrderStatus::PartiallyShipped => {}
                _ => return Err(illegal(o, "shipment delivered")),
            },
            Event::ReturnRequested(r) => {
                if o.status != OrderStatus::Delivered {
                    return Err(illegal(o, "return requested"));
                }
                go(o, ctx, OrderStatus::ReturnRequested, &format!("return {} requested: {}", r.return_id, r.reason))?;
            }
            Event::ReturnReceived(r) => {
                if !matches!(o.status, OrderStatus::ReturnRequested | OrderStatus::Delivered) {
                    return Err(illegal(o, "return received"));
                }
                for l in &r.lines {
                    self.command(o, ctx, &l.sku, "restock", l.quantity, Some(&r.warehouse_id), "returned", r.restockable);
                }
                o.fulfillment_status = FulfillmentStatus::Returned;
                go(o, ctx, OrderStatus::Returned, &format!("return {} received at {}", r.return_id, r.warehouse_id))?;
                if let (true, Some(payment_id)) = (o.captured, o.payment_id.clone()) {
                    let lines = refund_lines(o, Some(&r.lines));
                    let amount = lines.iter().map(|l| l.amount_minor).sum();
                    if amount > 0 {
                        self.request_refund(o, &payment_id, amount, lines, "return", ctx);
                    }
                }
            }
            Event::RefundIssued(r) => {
                if !(o.authorized || o.captured) {
                    return Err(illegal(o, "refund issued without a payment"));
                }
                o.refunded_minor += r.amount_minor;
                o.payment_status = if o.refunded_minor >= o.total_minor { PaymentStatus::Refunded } else { PaymentStatus::PartiallyRefunded };
                if o.status == OrderStatus::Returned {
                    go(o, ctx, OrderStatus::Refunded, &format!("refund {} issued", r.refund_id))?;
                } else {
                    let status = o.status;
                    announce(o, ctx, Some(status), &format!("refund {} issued", r.refund_id));
                }
            }
            _ => unreachable!("matched above"),
        }
        Ok(())
    }

    /// payment_authorized → confirmed, unless the fraud gate still waits for the order's
    /// score. The holds stop expiring now: the order is paid for, and shipping (when the
    /// payment is captured) may be days away.
    fn confirm(&self, o: &mut OrderState, ctx: &mut Ctx<'_, Event>, why: &str) -> Result<(), ProcessError> {
        if o.status == OrderStatus::PaymentAuthorized && !self.awaits_fraud(o) {
            for (sku, qty) in o.wanted.clone() {
                self.command(o, ctx, &sku, "commit", qty, None, "payment authorized", true);
            }
            go(o, ctx, OrderStatus::Confirmed, why)?;
        }
        Ok(())
    }
}

/// The order's lines per vendor (quantity × unit price), in vendor order.
fn vendor_amounts(o: &OrderState) -> Vec<VendorAmount> {
    o.vendor_totals.iter().map(|(v, a)| VendorAmount { vendor_id: v.clone(), amount_minor: *a }).collect()
}

/// True once the captures asked cover every unit of the order.
fn captures_complete(o: &OrderState) -> bool {
    o.wanted.iter().all(|(sku, q)| o.capture.units.get(sku).copied().unwrap_or(0) >= *q)
}

/// `quantity` units of the order's line of `sku` at its price: what a shipment of them
/// captures and a return of them refunds.
fn priced(o: &OrderState, sku: &str, quantity: i32) -> Option<RefundLine> {
    o.items.iter().find(|i| i.sku == sku).map(|i| RefundLine { sku: i.sku.clone(), vendor_id: i.vendor_id.clone(), quantity, amount_minor: i.unit_price_minor * i64::from(quantity) })
}

/// What a refund of `returned` (all the order's lines when `None`) gives back, line by line:
/// each returned unit at its price, on the line of its sku.
fn refund_lines(o: &OrderState, returned: Option<&[SkuQuantity]>) -> Vec<RefundLine> {
    match returned {
        None => o.items.iter().filter_map(|i| priced(o, &i.sku, i.quantity)).collect(),
        Some(r) => r.iter().filter(|l| l.quantity > 0).filter_map(|l| priced(o, &l.sku, l.quantity)).collect(),
    }
}
