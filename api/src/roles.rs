//! Trust boundaries, in one place: which role may publish which event type through
//! `POST /v1/events` ([`may_publish`], from the table [`trust`]), which orders an app key
//! may touch ([`may_touch_order`]), and who sees an order's personal data ([`order_view`]).
//!
//! | event types                                   | app | service | `vendor:<id>` | analyst | admin |
//! |-----------------------------------------------|-----|---------|---------------|---------|-------|
//! | shoppers' behaviour ([`Trust::Shopper`])      | yes | yes     | no            | no      | yes   |
//! | a vendor's products ([`Trust::VendorCatalog`]) | no  | yes     | its own only  | no      | yes   |
//! | backends' facts ([`Trust::Backend`])          | no  | yes     | no            | no      | yes   |
//! | orders ([`Trust::OrderEndpoint`])             | no  | no      | no            | no      | yes   |
//!
//! Orders are written by `POST /v1/orders` (priced from the catalog) and its cancel and
//! return endpoints (checked against the order's state), never as raw events except by an
//! admin (replays, repairs). `docs/SECURITY.md` ("Roles") says what is not defended yet.

use serde_json::Value;
use sha2::{Digest, Sha256};
use storeflow_avro::{Event, EventKind};

use crate::auth::{Caller, Role};
use crate::error::{ApiError, ApiResult};
use crate::read::{CatalogRead, Order};

/// Who an event type's facts come from, and so which roles may publish it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// What a shopper does in a storefront (views, searches, carts, checkout, sign-up,
    /// reviews): apps, services and admins.
    Shopper,
    /// A vendor's products and prices: the vendor itself (its `vendor_id`), services and
    /// admins.
    VendorCatalog,
    /// What only a trusted backend knows (payments, refunds, shipments, stock, exchange
    /// rates, vendor onboarding and its commission plan, erasure): services and admins.
    Backend,
    /// Orders, cancel and return requests: through the `/v1/orders` endpoints, which check
    /// prices, state and ownership; as raw events by admins only.
    OrderEndpoint,
    /// Derived by storeflow's processors: nobody from outside (the API refuses them before
    /// roles are asked).
    Derived,
}

/// The table: whose facts each event type carries. A new event type does not compile
/// until it is given a row.
pub const fn trust(kind: EventKind) -> Trust {
    use EventKind as K;
    match kind {
        K::PageViewed
        | K::ProductViewed
        | K::SearchPerformed
        | K::CartItemAdded
        | K::CartItemRemoved
        | K::CheckoutStarted
        | K::CustomerRegistered
        | K::ReviewSubmitted => Trust::Shopper,
        K::ProductCreated | K::ProductUpdated | K::PriceChanged => Trust::VendorCatalog,
        K::CustomerErased
        | K::PaymentAuthorized
        | K::PaymentCaptured
        | K::PaymentFailed
        | K::RefundIssued
        | K::ShipmentCreated
        | K::ShipmentShipped
        | K::ShipmentDelivered
        | K::ReturnReceived
        | K::StockReceived
        | K::StockAdjusted
        | K::StockTransferred
        | K::VendorOnboarded
        | K::ExchangeRateUpdated => Trust::Backend,
        K::OrderPlaced | K::OrderCancelRequested | K::ReturnRequested => Trust::OrderEndpoint,
        K::ReservationMade
        | K::ReservationRejected
        | K::ReservationReleased
        | K::ReservationCommitted
        | K::LowStockAlert
        | K::OrderStatusChanged
        | K::FraudScored
        | K::RecommendationsUpdated
        | K::VendorSalesMinute
        | K::InventoryCommand
        | K::InventoryReply
        | K::StockLevelChanged
        | K::FraudCheck
        | K::FraudSignal
        | K::RecoSignal
        | K::VendorSaleRecorded => Trust::Derived,
    }
}

/// The vendor a [`Trust::VendorCatalog`] event is about.
fn vendor_of(e: &Event) -> Option<&str> {
    match e {
        Event::ProductCreated(p) => Some(&p.vendor_id),
        Event::ProductUpdated(p) => Some(&p.vendor_id),
        Event::PriceChanged(p) => Some(&p.vendor_id),
        _ => None,
    }
}

/// Whether `role` may publish `event` through `POST /v1/events`; the reason, naming the
/// event type and the role, when not.
pub fn may_publish(role: &Role, event: &Event) -> Result<(), String> {
    let name = event.name();
    let trust = trust(event.kind());
    match (role, trust) {
        (Role::Admin, _) => return Ok(()),
        (Role::Service, Trust::Shopper | Trust::VendorCatalog | Trust::Backend) => return Ok(()),
        (Role::App, Trust::Shopper) => return Ok(()),
        (Role::Vendor(v), Trust::VendorCatalog) => {
            return match vendor_of(event) {
                Some(of) if of == v => Ok(()),
                Some(of) => Err(format!("the role {role} may publish {name} only for vendor {v}, not for vendor {of}")),
                None => Err(format!("the role {role} may not publish {name}: it names no vendor")),
            };
        }
        _ => {}
    }
    let instead = match event.kind() {
        EventKind::OrderPlaced => "; place orders with POST /v1/orders, which prices them from the catalog",
        EventKind::OrderCancelRequested => "; use POST /v1/orders/{id}/cancel",
        EventKind::ReturnRequested => "; use POST /v1/orders/{id}/returns",
        _ => match trust {
            Trust::Backend | Trust::VendorCatalog => "; it is published by trusted backends (a service key)",
            _ => "",
        },
    };
    Err(format!("the role {role} may not publish {name} events{instead}"))
}

/// [`may_publish`] for every event of a request, then, for a vendor, that no product id
/// or sku it names belongs to another vendor in `catalog`. Every 403 names the first
/// refused event the same way (`events[i].type` in a batch, `type` alone) and its message
/// the type, the role and why; nothing of a refused request may be published.
pub async fn authorize(role: &Role, events: &[Event], batch: bool, catalog: &dyn CatalogRead) -> ApiResult<()> {
    let at = |i: usize, what: &str| if batch { format!("events[{i}].{what}") } else { what.to_string() };
    for (i, e) in events.iter().enumerate() {
        may_publish(role, e).map_err(|message| ApiError::ForbiddenAt { message, field: at(i, "type") })?;
    }
    let Role::Vendor(v) = role else { return Ok(()) };
    for (i, e) in events.iter().enumerate() {
        let (product_id, sku) = match e {
            Event::ProductCreated(p) => (&p.product_id, Some(&p.sku)),
            Event::ProductUpdated(p) => (&p.product_id, None),
            Event::PriceChanged(p) => (&p.product_id, Some(&p.sku)),
            _ => continue,
        };
        // Same answer whether the other vendor's product exists under that id or that sku.
        let foreign = |p: Option<crate::read::Product>| p.is_some_and(|p| &p.vendor_id != v);
        if foreign(catalog.product(product_id).await?) {
            return Err(ApiError::ForbiddenAt {
                message: format!("the role {role} may not publish {} for product {product_id}: it is another vendor's", e.name()),
                field: at(i, "type"),
            });
        }
        if let Some(sku) = sku
            && foreign(catalog.product_by_sku(sku).await?)
        {
            return Err(ApiError::ForbiddenAt {
                message: format!("the role {role} may not publish {} for sku {sku}: it is another vendor's", e.name()),
                field: at(i, "type"),
            });
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------- orders

/// Hex digits of the tag that binds an order id to the key that placed it.
const OWNER_TAG_HEX: usize = 12;

fn owner_tag(key_id: &str, base: &str) -> String {
    let d = Sha256::digest(format!("storeflow order owner\u{0}{key_id}\u{0}{base}").as_bytes());
    hex::encode(d)[..OWNER_TAG_HEX].to_string()
}

/// The id of the order placed with key `key_id` under `seed` (the key and its
/// `Idempotency-Key`): `ord_` + 24 hex digits derived from the seed, then 12 that bind it
/// to the key, so [`placed_with`] can tell, from the id alone and after any restart,
/// whether a key placed an order.
pub fn order_id(key_id: &str, seed: &str) -> String {
    let base = crate::writes::derived_id("ord_", seed);
    let tag = owner_tag(key_id, &base);
    format!("{base}{tag}")
}

/// True when `order_id` was made by [`order_id`] for key `key_id`.
pub fn placed_with(order_id: &str, key_id: &str) -> bool {
    let split = order_id.len().saturating_sub(OWNER_TAG_HEX);
    match (order_id.get(..split), order_id.get(split..)) {
        (Some(base), Some(tag)) => base.starts_with("ord_") && !key_id.is_empty() && owner_tag(key_id, base) == tag,
        _ => false,
    }
}

/// Whether the caller may `what` (read, cancel, return) order `order_id`: admins and
/// services any order, app keys only the orders placed with that same key; 403 otherwise,
/// whether the order exists or not (checked before it is looked up: no probing of ids).
pub fn may_touch_order(caller: &Caller, order_id: &str, what: &str) -> ApiResult<()> {
    match caller.role()? {
        Role::Admin | Role::Service => Ok(()),
        Role::App if caller.key_id().is_some_and(|k| placed_with(order_id, k)) => Ok(()),
        role @ Role::App => Err(ApiError::Forbidden(format!(
            "the role {role} may {what} only orders placed with the same key; order {order_id} was not"
        ))),
        role => Err(ApiError::Forbidden(format!("the role {role} may not {what} orders"))),
    }
}

/// Keys of an order's event payloads that only admins and services see: where the
/// customer is, connects from and pays with.
const PERSONAL_FIELDS: [&str; 4] = ["client_ip", "payment_method_token", "shipping_address", "billing_address"];

/// Whether `role` sees the personal data of orders.
pub fn sees_personal_data(role: &Role) -> bool {
    matches!(role, Role::Admin | Role::Service)
}

/// The order as `role` may see it: for every role but admin and service, its history
/// without client IPs, payment tokens and addresses (at any depth of a payload), and
/// without the fraud score's reasons (they quote the client IP, and tell a fraudster which
/// rule fired). The one place the API strips them, whichever backend answered.
pub fn order_view(role: &Role, mut order: Order) -> Order {
    if sees_personal_data(role) {
        return order;
    }
    for e in &mut order.history {
        strip(&mut e.payload);
        if e.event_type == "FraudScored"
            && let Value::Object(m) = &mut e.payload
        {
            m.remove("reasons");
        }
    }
    order
}

fn strip(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for f in PERSONAL_FIELDS {
                m.remove(f);
            }
            m.values_mut().for_each(strip);
        }
        Value::Array(a) => a.iter_mut().for_each(strip),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storeflow_avro::EVENT_TYPES;

    fn example(name: &str) -> Event {
        let t = storeflow_avro::EventType::by_name(name).unwrap();
        storeflow_avro::json::event_from_json(storeflow_avro::json::example(t), Default::default()).unwrap()
    }

    #[test]
    fn every_input_type_has_a_publisher_and_no_derived_type_has_one() {
        for t in EVENT_TYPES {
            let kind = storeflow_avro::EventKind::ALL[t.index()];
            assert_eq!(trust(kind) == Trust::Derived, !t.topic.is_input(), "{}", t.name);
        }
    }

    #[test]
    fn an_order_id_is_bound_to_the_key_that_placed_it() {
        let id = order_id("k_aaa", "k_aaa\u{0}idem-1");
        assert_eq!(id, order_id("k_aaa", "k_aaa\u{0}idem-1"), "stable across retries and restarts");
        assert!(placed_with(&id, "k_aaa"));
        assert!(!placed_with(&id, "k_bbb"));
        assert!(!placed_with(&id, ""));
        for other in ["o-1", "", "ord_", "ord_éééééééééééééééééé", &id[..id.len() - 1]] {
            assert!(!placed_with(other, "k_aaa"), "{other}");
        }
    }

    #[test]
    fn a_vendor_may_publish_its_own_price_but_not_another_vendors() {
        let mut e = example("PriceChanged");
        if let Event::PriceChanged(p) = &mut e {
            p.vendor_id = "V-A".into();
        }
        assert!(may_publish(&Role::Vendor("V-A".into()), &e).is_ok());
        let why = may_publish(&Role::Vendor("V-B".into()), &e).unwrap_err();
        assert!(why.contains("PriceChanged") && why.contains("vendor:V-B"), "{why}");
    }

    #[test]
    fn personal_fields_are_stripped_at_any_depth_for_apps_only() {
        let payload = serde_json::json!({"client_ip": "203.0.113.7", "nested": [{"billing_address": {"city": "B"}, "sku": "S1"}],
            "shipping_address": {}, "payment_method_token": "pm", "order_id": "o"});
        let order = Order {
            order_id: "o".into(),
            customer_id: None,
            currency: None,
            status: "placed".into(),
            payment_status: "pending".into(),
            fulfillment_status: "pending".into(),
            status_reason: None,
            placed_at: None,
            items: vec![],
            totals: Default::default(),
            reservations: vec![],
            history: vec![crate::read::OrderEvent { event_id: "e".into(), event_type: "OrderPlaced".into(), occurred_at: 0, payload }],
        };
        assert_eq!(order_view(&Role::Service, order.clone()), order);
        let seen = order_view(&Role::App, order);
        assert_eq!(seen.history[0].payload, serde_json::json!({"nested": [{"sku": "S1"}], "order_id": "o"}));
    }
}
