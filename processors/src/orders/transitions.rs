//! The order state's moves: only those in [`OrderStatus::MOVES`], each announced on
//! `orders.lifecycle` with the previous state and why; anything else is refused with the
//! order's three states.

use storeflow_avro::{Event, OrderStatus, OrderStatusChanged, Timestamp};

use super::state::OrderState;
use crate::{Ctx, ProcessError};

/// The id of an event the saga derives from `parts` at `t`.
pub(super) fn fresh_id(t: i64, parts: &[&str]) -> String {
    crate::ids::derived_event_id(0x8422_2325_cbf2_9ce4, 29, t, parts)
}

/// Refuses `what`, naming the order's states.
pub(super) fn illegal(o: &OrderState, what: &str) -> ProcessError {
    ProcessError::permanent(format!("{what}: order {} is {} (payment {}, fulfillment {})", o.order_id, o.status, o.payment_status, o.fulfillment_status))
}

/// Moves the order state, or refuses when the move is not in [`OrderStatus::MOVES`].
pub(super) fn go(o: &mut OrderState, ctx: &mut Ctx<'_, Event>, to: OrderStatus, reason: &str) -> Result<(), ProcessError> {
    if o.status == to {
        return Ok(());
    }
    if !o.status.can_move_to(to) {
        return Err(illegal(o, &format!("cannot go to {to} ({reason})")));
    }
    let previous = std::mem::replace(&mut o.status, to);
    announce(o, ctx, Some(previous), reason);
    Ok(())
}

/// Says on `orders.lifecycle` that the order is in its state now, coming from `previous`
/// (none when it was just placed), and why: one more version of the order.
pub(super) fn announce(o: &mut OrderState, ctx: &mut Ctx<'_, Event>, previous: Option<OrderStatus>, reason: &str) {
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
