//! What the saga keeps per order: the aggregate ([`OrderState`]) with its reservation
//! [`Phase`], what it holds back until it can apply it ([`Held`]), and the two stores.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use storeflow_avro::{Event, FulfillmentStatus, MissingStock, OrderItem, OrderPlaced, OrderStatus, PaymentStatus, ReservedLine, WarehouseStock};

use crate::Store;

/// Every order the saga knows, by order id.
pub const ORDERS: Store<OrderState> = Store::new("orders");
/// Events about an order not placed yet, by order id, waiting `early_ttl_ms` for it.
pub const EARLY: Store<Vec<Held>> = Store::new("early");

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

impl OrderState {
    /// The order as `p` places it: every sku awaited from inventory, nothing held or paid.
    pub(super) fn placed(p: &OrderPlaced) -> OrderState {
        let mut wanted: BTreeMap<String, i32> = BTreeMap::new();
        let mut vendor_totals: BTreeMap<String, i64> = BTreeMap::new();
        for i in &p.items {
            *wanted.entry(i.sku.clone()).or_default() += i.quantity;
            *vendor_totals.entry(i.vendor_id.clone()).or_default() += i64::from(i.quantity) * i.unit_price_minor;
        }
        OrderState {
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
        }
    }
}

impl Held {
    pub(super) fn event(at: i64, cause: u64, e: &Event) -> Held {
        Held { at, cause, what: HeldKind::Event(serde_json::to_string(&e.to_json()).expect("events are JSON")) }
    }
}

/// Inserts `h` into `list`, kept sorted by (time, cause).
pub(super) fn hold(list: &mut Vec<Held>, h: Held) {
    let at = list.partition_point(|x| (x.at, x.cause) <= (h.at, h.cause));
    list.insert(at, h);
}
