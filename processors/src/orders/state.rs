//! What the saga keeps per order: the aggregate ([`OrderState`]) with its reservation
//! [`Phase`], what it holds back until it can apply it ([`Held`]), and the two stores.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use storeflow_avro::{Event, FulfillmentStatus, MissingStock, OrderItem, OrderPlaced, OrderStatus, PaymentStatus, ReservedLine, WarehouseStock};

use crate::Store;
use crate::state::encoding::added_at_end;

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
    /// Where `held_from` was, the state a fraud hold interrupted: written, never read, since
    /// nothing leads out of fraud_hold but a cancellation ([`OrderStatus::MOVES`]).
    pub retired_held_from: Retired,
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
    /// What the saga asked the payments worker to capture, shipment by shipment (none in an
    /// order stored before partial captures).
    #[serde(default, deserialize_with = "added_at_end")]
    pub capture: CaptureAsked,
}

/// The captures an order asked for: one per shipment, each the value of its lines; the one
/// that completes the order's lines asks for what is left of the total.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureAsked {
    /// The shipments whose capture was asked, in the order asked.
    pub shipments: Vec<String>,
    /// The units of each sku those shipments carry.
    pub units: BTreeMap<String, i32>,
    /// What they asked for in all, in minor units: never more than the order's total.
    pub asked_minor: i64,
}

/// A field no longer kept, in its place in the encoding: postcard reads a struct's fields
/// by position and can neither skip nor default one (`#[serde(default)]` or
/// `skip_serializing` would misread every field after it). Reads the `Option<String>` that
/// was there and drops it; writes `None`, which a build that still has the field reads as
/// no value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retired;

impl Serialize for Retired {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_none()
    }
}

impl<'de> Deserialize<'de> for Retired {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Retired, D::Error> {
        Option::<String>::deserialize(d).map(|_| Retired)
    }
}

/// An event or a timer an order holds back until it can apply it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Held {
    /// Its logical time.
    pub at: i64,
    /// Its step's identity: orders what happened at the same time, the same way every run.
    pub cause: u64,
    /// What it is.
    pub what: HeldKind,
}

/// What an order holds back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum HeldKind {
    /// An event.
    Event(HeldEvent),
    /// A timer's key (`payment|…`, `fraud|…`).
    Timer(String),
}

/// An event an order holds back. Kept as the text of its JSON form ([`Event::to_json`]):
/// the bytes held-back events have always had in the changelogs and state files, read back
/// as they were written ([`storeflow_avro::json::event_from_stored_json`]); a text that is
/// not an event fails the order's state to decode.
#[derive(Clone, Debug, PartialEq)]
pub struct HeldEvent(pub Event);

impl Serialize for HeldEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string(&self.0.to_json()).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for HeldEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<HeldEvent, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let value = serde_json::from_str(&text).map_err(|e| serde::de::Error::custom(format!("a held-back event is not JSON: {e}")))?;
        storeflow_avro::json::event_from_stored_json(value)
            .map(HeldEvent)
            .map_err(|e| serde::de::Error::custom(format!("a held-back event does not read back: {e}")))
    }
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
            retired_held_from: Retired,
            fraud: None,
            seen: vec![p.event_id.clone()],
            deferred: Vec::new(),
            version: 0,
            capture: CaptureAsked::default(),
        }
    }
}

impl Held {
    pub(super) fn event(at: i64, cause: u64, e: &Event) -> Held {
        Held { at, cause, what: HeldKind::Event(HeldEvent(e.clone())) }
    }
}

/// Inserts `h` into `list`, kept sorted by (time, cause).
pub(super) fn hold(list: &mut Vec<Held>, h: Held) {
    let at = list.partition_point(|x| (x.at, x.cause) <= (h.at, h.cause));
    list.insert(at, h);
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use serde::{Deserialize, Serialize};
    use storeflow_avro::json::{event_from_json, example};
    use storeflow_avro::{
        EVENT_TYPES, Event, EventType, FulfillmentStatus, MissingStock, OrderItem, OrderStatus, PaymentStatus, ReservedLine, Topic, WarehouseStock,
    };

    use super::{Held, HeldEvent, HeldKind, OrderState, Phase};
    use crate::state::encoding::{decode_value, encode_value};

    /// [`Held`] as it was declared while it kept an event as its JSON text.
    #[derive(Serialize)]
    struct OldHeld {
        at: i64,
        cause: u64,
        what: OldHeldKind,
    }

    #[derive(Serialize)]
    enum OldHeldKind {
        Event(String),
        Timer(String),
    }

    /// A payment authorization as `serde_json::to_string(&e.to_json())` wrote it.
    const AUTHORIZED: &str = r#"{"amount_minor":3000,"currency":"EUR","event_id":"00000000-0000-0000-0000-000000000007","occurred_at":1764000001000,"order_id":"o-1","payment_id":"pi_1","provider":"stripe","type":"PaymentAuthorized"}"#;

    #[test]
    fn a_held_event_stored_as_json_text_reads_back_typed_and_is_written_as_the_same_bytes() {
        let old = vec![
            OldHeld { at: 5, cause: 9, what: OldHeldKind::Event(AUTHORIZED.into()) },
            OldHeld { at: 6, cause: 1, what: OldHeldKind::Timer("payment|o-1".into()) },
        ];
        let bytes = encode_value(&old, Some(77)).unwrap();
        let held: Vec<Held> = decode_value(&bytes).unwrap();
        let HeldKind::Event(HeldEvent(Event::PaymentAuthorized(p))) = &held[0].what else { panic!("not a payment: {:?}", held[0]) };
        assert_eq!((p.order_id.as_str(), p.payment_id.as_str(), p.amount_minor, p.occurred_at.millis()), ("o-1", "pi_1", 3000, 1_764_000_001_000));
        assert_eq!((held[0].at, held[0].cause), (5, 9));
        assert_eq!(held[1], Held { at: 6, cause: 1, what: HeldKind::Timer("payment|o-1".into()) });
        let HeldKind::Event(event) = &held[0].what else { unreachable!() };
        // Written back as the same JSON text, with the fields PaymentAuthorized v2 added (the
        // card's brand and last4) as nulls: the same value, decoded as before by older reads.
        let now = AUTHORIZED.replace(r#""currency""#, r#""card_brand":null,"card_last4":null,"currency""#);
        assert_eq!(serde_json::to_value(event).unwrap(), serde_json::Value::String(now.clone()));
        let rewritten = vec![
            OldHeld { at: 5, cause: 9, what: OldHeldKind::Event(now) },
            OldHeld { at: 6, cause: 1, what: OldHeldKind::Timer("payment|o-1".into()) },
        ];
        assert_eq!(encode_value(&held, Some(77)).unwrap(), encode_value(&rewritten, Some(77)).unwrap());
    }

    #[test]
    fn every_event_the_saga_holds_back_is_stored_as_before_and_reads_back_as_it_was() {
        // Everything the saga reads but OrderPlaced (it makes the order) and inventory's
        // answers (never held back).
        let held = [Topic::Orders, Topic::Payments, Topic::Fulfillment, Topic::FraudScores];
        // The vendors' payouts and disputes change nothing about an order and are never held.
        let never = ["OrderPlaced", "VendorTransferCreated", "VendorTransferReversed", "DisputeOpened", "DisputeClosed"];
        let types: Vec<_> = EVENT_TYPES.iter().filter(|t| held.contains(&t.topic) && !never.contains(&t.name)).collect();
        assert_eq!(types.len(), 11, "{:?}", types.iter().map(|t| t.name).collect::<Vec<_>>());
        for t in types {
            let e = event_from_json(example(t), Default::default()).unwrap();
            let old = encode_value(&OldHeld { at: 1, cause: 2, what: OldHeldKind::Event(serde_json::to_string(&e.to_json()).unwrap()) }, None).unwrap();
            let new = Held::event(1, 2, &e);
            assert_eq!(encode_value(&new, None).unwrap(), old, "{} is written differently", t.name);
            assert_eq!(decode_value::<Held>(&old).unwrap(), new, "{} reads back differently", t.name);
        }
    }

    #[test]
    fn a_stored_text_that_is_not_an_event_is_a_decode_error() {
        for text in ["not json", r#"{"type":"Nope"}"#, r#"{"type":"PaymentAuthorized","order_id":"o-1"}"#] {
            let bytes = encode_value(&OldHeld { at: 1, cause: 2, what: OldHeldKind::Event(text.into()) }, None).unwrap();
            assert!(decode_value::<Held>(&bytes).is_err(), "{text} decoded");
        }
    }

    /// [`OrderState`] as it was declared while it kept `held_from`.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct OrderStateWithHeldFrom {
        order_id: String,
        customer_id: String,
        currency: String,
        items: Vec<OrderItem>,
        ship_country: String,
        subtotal_minor: i64,
        shipping_minor: i64,
        tax_minor: i64,
        discount_minor: i64,
        total_minor: i64,
        vendor_totals: BTreeMap<String, i64>,
        status: OrderStatus,
        payment_status: PaymentStatus,
        fulfillment_status: FulfillmentStatus,
        placed_at: i64,
        phase: Phase,
        wanted: BTreeMap<String, i32>,
        awaiting: BTreeSet<String>,
        held: BTreeMap<String, Vec<ReservedLine>>,
        missing: Vec<MissingStock>,
        availability: BTreeMap<String, Vec<WarehouseStock>>,
        payment_id: Option<String>,
        authorized: bool,
        captured: bool,
        refunded_minor: i64,
        shipped: BTreeMap<String, i32>,
        held_from: Option<OrderStatus>,
        fraud: Option<String>,
        seen: Vec<String>,
        deferred: Vec<Held>,
        version: i64,
    }

    fn event_of(name: &str) -> Event {
        event_from_json(example(EventType::by_name(name).unwrap()), Default::default()).unwrap()
    }

    #[test]
    fn an_order_state_with_held_from_reads_back_and_a_build_with_the_field_reads_what_is_written_now() {
        let Event::OrderPlaced(p) = event_of("OrderPlaced") else { unreachable!() };
        let mut o = OrderState::placed(&p);
        o.status = OrderStatus::FraudHold;
        o.fraud = Some("hold".into());
        o.deferred = vec![Held::event(3, 4, &event_of("ShipmentShipped"))];
        o.version = 3;
        let now = encode_value(&o, None).unwrap();
        let mut before: OrderStateWithHeldFrom = decode_value(&now).unwrap();
        assert_eq!((before.held_from, before.status, before.fraud.as_deref(), before.version), (None, OrderStatus::FraudHold, Some("hold"), 3));
        assert_eq!(before.deferred, o.deferred);
        before.held_from = Some(OrderStatus::Confirmed);
        let written_before = encode_value(&before, None).unwrap();
        assert_eq!(decode_value::<OrderState>(&written_before).unwrap(), o);
        // The build with `held_from` also predates the captures asked (the last field, read
        // back as none): only the slot differs, Some, a length and the name where None is
        // written now, and the captures are missing at the end.
        let no_captures = encode_value(&super::CaptureAsked::default(), None).unwrap().len() - 1;
        assert_eq!(written_before.len(), now.len() + 1 + "confirmed".len() - no_captures);
    }
}
