//! Planted poison: records that look like any other contract event but break a domain rule,
//! so the pipeline must dead-letter them (`SimConfig::poison`).
//!
//! Each kind is refused by every processor that reads it, before it touches any state, so
//! a planted record changes no other order's outcome, no stock level, no fraud window and
//! no vendor's sales:
//!
//! - an over-shipment: a second `ShipmentShipped` for an order being shipped, with one unit
//!   more than the order has of that sku (orders refuses shipping more than was ordered, or
//!   shipping an order already shipped);
//! - an `OrderPlaced` under a fresh order id with a line of zero units, or with a discount
//!   larger than its subtotal, shipping and tax (orders, fraud, sales and recommendations
//!   all check an order's amounts first and refuse it); nothing else ever names that order;
//! - a `StockReceived` of zero units (inventory refuses it).
//!
//! The sinks are not processors: they may land these records as facts.

use storeflow_avro::Topic;

/// A record the simulator planted for the pipeline to dead-letter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planted {
    /// Its `event_id`.
    pub event_id: String,
    /// The topic it is published to (its dead letters go to `<topic>.dlq`).
    pub topic: Topic,
    /// Its event type.
    pub event_type: &'static str,
    /// Its key on the topic (order id or sku).
    pub key: String,
    /// Which rule it breaks.
    pub reason: String,
    /// The processors that must refuse it (each dead-letters its own copy).
    pub refused_by: &'static [&'static str],
}

/// The kinds of poison, planted in turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Poison {
    /// A ShipmentShipped of more units than ordered.
    OverShipment,
    /// An OrderPlaced with a line of zero units.
    ZeroQuantityLine,
    /// An OrderPlaced whose discount exceeds everything else on it.
    DiscountAboveTotal,
    /// A StockReceived of zero units.
    ZeroUnitReceipt,
}

impl Poison {
    /// The `n`-th kind planted.
    pub fn nth(n: usize) -> Poison {
        [Poison::ZeroQuantityLine, Poison::OverShipment, Poison::ZeroUnitReceipt, Poison::DiscountAboveTotal][n % 4]
    }

    /// The processors that refuse it.
    pub fn refused_by(self) -> &'static [&'static str] {
        match self {
            Poison::OverShipment => &["orders"],
            Poison::ZeroQuantityLine | Poison::DiscountAboveTotal => &["orders", "fraud", "sales", "recommendations"],
            Poison::ZeroUnitReceipt => &["inventory"],
        }
    }
}
