//! Trust boundaries, in one place: which role may publish which event type through
//! `POST /v1/events` ([`may_publish`], from the table [`trust`]), what a signed-in customer
//! may publish ([`customer_may_publish`]), which orders an app key or a customer may touch
//! ([`may_touch_order`], [`may_place_order`]), and who sees an order's personal data
//! ([`order_view`]).
//!
//! | event types                                   | app | service | `vendor:<id>` | analyst | admin | customer |
//! |-----------------------------------------------|-----|---------|---------------|---------|-------|----------|
//! | shoppers' behaviour ([`Trust::Shopper`])      | yes | yes     | no            | no      | yes   | about itself only |
//! | a vendor's products ([`Trust::VendorCatalog`]) | no  | yes     | its own only  | no      | yes   | no       |
//! | backends' facts ([`Trust::Backend`])          | no  | yes     | no            | no      | yes   | no       |
//! | orders ([`Trust::OrderEndpoint`])             | no  | no      | no            | no      | yes   | no       |
//!
//! Orders are written by `POST /v1/orders` (priced from the catalog) and its cancel and
//! return endpoints (checked against the order's state), never as raw events except by an
//! admin (replays, repairs). A customer places orders for itself only and reads, cancels
//! and returns the orders whose `customer_id` is its own. `docs/SECURITY.md` ("Roles") says
//! what is not defended yet.

use serde_json::Value;
use sha2::{Digest, Sha256};
use storeflow_avro::pii::Vault;
use storeflow_avro::{Event, EventKind};

use crate::auth::{Caller, Role};
use crate::error::{ApiError, ApiResult};
use crate::read::{OrderDetail, ProductView, Reads, sink_error};

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
        | K::VendorTransferCreated
        | K::VendorTransferReversed
        | K::DisputeOpened
        | K::DisputeClosed
        | K::VendorAccountUpdated
        | K::VendorPlanChanged
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
        | K::VendorSaleRecorded
        | K::PaymentRequested
        | K::CaptureRequested
        | K::RefundRequested
        | K::PlanChangeRequested => Trust::Derived,
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
    Err(format!("the role {role} may not publish {name} events{}", instead(event.kind())))
}

/// Where to go instead of publishing an event of `kind` one may not publish.
fn instead(kind: EventKind) -> &'static str {
    match kind {
        EventKind::OrderPlaced => "; place orders with POST /v1/orders, which prices them from the catalog",
        EventKind::OrderCancelRequested => "; use POST /v1/orders/{id}/cancel",
        EventKind::ReturnRequested => "; use POST /v1/orders/{id}/returns",
        _ => match trust(kind) {
            Trust::Backend | Trust::VendorCatalog => "; it is published by trusted backends (a service key)",
            _ => "",
        },
    }
}

/// The customer a [`Trust::Shopper`] event is about; `None` for an anonymous visitor's
/// (and for every other trust, which customers may not publish at all).
fn customer_of(e: &Event) -> Option<&str> {
    match e {
        Event::PageViewed(x) => x.customer_id.as_deref(),
        Event::ProductViewed(x) => x.customer_id.as_deref(),
        Event::SearchPerformed(x) => x.customer_id.as_deref(),
        Event::CartItemAdded(x) => x.customer_id.as_deref(),
        Event::CartItemRemoved(x) => x.customer_id.as_deref(),
        Event::CheckoutStarted(x) => x.customer_id.as_deref(),
        Event::CustomerRegistered(x) => Some(&x.customer_id),
        Event::ReviewSubmitted(x) => Some(&x.customer_id),
        _ => None,
    }
}

/// Whether customer `customer` may publish `event`: shoppers' behaviour only, and only
/// about itself (its id as the event's `customer_id`, or none: browsing before signing in).
pub fn customer_may_publish(customer: &str, event: &Event) -> Result<(), String> {
    let name = event.name();
    if trust(event.kind()) != Trust::Shopper {
        return Err(format!("customer {customer} may not publish {name} events{}", instead(event.kind())));
    }
    match customer_of(event) {
        Some(of) if of != customer => Err(format!("customer {customer} may publish {name} only about itself, not about customer {of}")),
        _ => Ok(()),
    }
}

/// [`may_publish`] (for a customer [`customer_may_publish`]) for every event of a request,
/// then, for a vendor, that no product id or sku it names belongs to another vendor in
/// `catalog`. Every 403 names the first refused event the same way (`events[i].type` in a
/// batch, `type` alone) and its message the type, the role or customer, and why; nothing
/// of a refused request may be published.
pub async fn authorize(caller: &Caller, events: &[Event], batch: bool, reads: &Reads) -> ApiResult<()> {
    let at = |i: usize, what: &str| if batch { format!("events[{i}].{what}") } else { what.to_string() };
    if let Caller::Customer { id } = caller {
        for (i, e) in events.iter().enumerate() {
            customer_may_publish(id, e).map_err(|message| ApiError::ForbiddenAt { message, field: at(i, "type") })?;
        }
        return Ok(());
    }
    let role = caller.role()?;
    for (i, e) in events.iter().enumerate() {
        may_publish(role, e).map_err(|message| ApiError::ForbiddenAt { message, field: at(i, "type") })?;
    }
    let Role::Vendor(v) = role else { return Ok(()) };
    for (i, e) in events.iter().enumerate() {
        let catalog = || reads.read_model();
        let (product_id, sku) = match e {
            Event::ProductCreated(p) => (&p.product_id, Some(&p.sku)),
            Event::ProductUpdated(p) => (&p.product_id, None),
            Event::PriceChanged(p) => (&p.product_id, Some(&p.sku)),
            _ => continue,
        };
        // Same answer whether the other vendor's product exists under that id or that sku.
        let foreign = |p: Option<ProductView>| p.is_some_and(|p| &p.vendor_id != v);
        if foreign(catalog()?.product(product_id).await.map_err(sink_error("reading a product"))?) {
            return Err(ApiError::ForbiddenAt {
                message: format!("the role {role} may not publish {} for product {product_id}: it is another vendor's", e.name()),
                field: at(i, "type"),
            });
        }
        if let Some(sku) = sku
            && foreign(catalog()?.product_by_sku(sku).await.map_err(sink_error("reading a product"))?)
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
    let base = crate::ids::derived_id("ord_", seed);
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
/// services any order, app keys only the orders placed with that same key (checked from
/// the id, before the order is looked up), customers only the orders whose `customer_id`
/// is theirs; 403 otherwise, with the same message whether the order exists or not (no
/// probing of ids). A customer's order had to be read to tell: it is returned, so the
/// handler need not read it again.
pub async fn may_touch_order(caller: &Caller, order_id: &str, what: &str, reads: &Reads) -> ApiResult<Option<OrderDetail>> {
    if let Caller::Customer { id } = caller {
        return match reads.read_model()?.order_detail(order_id).await.map_err(sink_error("reading an order"))? {
            Some(o) if o.order.customer_id.as_deref() == Some(id.as_str()) => Ok(Some(o)),
            _ => Err(ApiError::Forbidden(format!("customer {id} may {what} only its own orders; order {order_id} is not one of them"))),
        };
    }
    match caller.require(&format!("{what} orders"), &[&Role::App])? {
        Role::Admin | Role::Service => Ok(None),
        Role::App if caller.key_id().is_some_and(|k| placed_with(order_id, k)) => Ok(None),
        role @ Role::App => Err(ApiError::Forbidden(format!(
            "the role {role} may {what} only orders placed with the same key; order {order_id} was not"
        ))),
        role => Err(ApiError::Forbidden(format!("the role {role} may not {what} orders"))),
    }
}

/// Whether the caller may place an order for `customer_id` through `POST /v1/orders`: apps,
/// services and admins for any customer, a customer for itself only (403 naming the other
/// customer otherwise) and without naming a `client_ip` (the fraud checks' address is where
/// it connects from); and the id the order's idempotency slot and id are bound to (the key
/// id, or `customer:<sub>`).
pub fn may_place_order(caller: &Caller, customer_id: &str, names_client_ip: bool) -> ApiResult<String> {
    if let Caller::Customer { id } = caller {
        if customer_id != id {
            return Err(ApiError::Forbidden(format!("customer {id} may place orders only for itself, not for customer {customer_id}")));
        }
        if names_client_ip {
            return Err(ApiError::Forbidden(format!("customer {id} may not name a client_ip: it is the address the order comes from")));
        }
        return Ok(format!("customer:{id}"));
    }
    caller.require("place orders", &[&Role::App])?;
    Ok(caller.key_id().unwrap_or_default().to_string())
}

/// Whether the caller may cancel an order as `requested_by`: keys as anyone, a customer as
/// the customer only (a shopper does not speak for the vendor or support).
pub fn customer_may_cancel_as(caller: &Caller, requested_by: Option<&str>) -> ApiResult<()> {
    match (caller, requested_by) {
        (Caller::Customer { id }, Some(by)) if by != "customer" => {
            Err(ApiError::Forbidden(format!("customer {id} cancels as the customer, not as {by}")))
        }
        _ => Ok(()),
    }
}

/// Keys of an order's event payloads that only admins and services see: where the
/// customer connects from and pays with, then (which the order's own customer sees too)
/// where it ships and bills to.
const PERSONAL_FIELDS: [&str; 4] = ["client_ip", "payment_method_token", "shipping_address", "billing_address"];

/// Whether `role` sees the personal data of orders.
pub fn sees_personal_data(role: &Role) -> bool {
    matches!(role, Role::Admin | Role::Service)
}

/// The order as the caller may see it. Admins and services: whole. The order's own
/// customer (the only customer who gets to read it, see [`may_touch_order`]): its
/// addresses, but no client IP and payment token. Every other role: neither. Nobody but
/// admins and services sees the fraud score's reasons (they tell a fraudster which rule
/// fired). Fields are removed at any depth of a payload; this is the
/// one place the API strips them, whichever backend answered.
///
/// What is left of the personal data is opened with `vault` (it travels sealed, see
/// [`storeflow_avro::pii`]); an erased customer's fields read as `null`.
pub fn order_view(caller: &Caller, mut order: OrderDetail, vault: &Vault) -> ApiResult<OrderDetail> {
    let customer = matches!(caller, Caller::Customer { .. });
    let whole = !customer && caller.role().is_ok_and(sees_personal_data);
    let hidden = if whole { &[][..] } else if customer { &PERSONAL_FIELDS[..2] } else { &PERSONAL_FIELDS[..] };
    if !whole && let Some(f) = &mut order.order.fraud {
        f.reasons = None;
    }
    for e in &mut order.history {
        strip(&mut e.payload, hidden);
        if !whole
            && e.event_type == "FraudScored"
            && let Value::Object(m) = &mut e.payload
        {
            m.remove("reasons");
        }
        vault.open_json(&mut e.payload).map_err(|err| ApiError::Internal(format!("opening personal data: {err}")))?;
    }
    Ok(order)
}

fn strip(v: &mut Value, hidden: &[&str]) {
    match v {
        Value::Object(m) => {
            for f in hidden {
                m.remove(*f);
            }
            m.values_mut().for_each(|v| strip(v, hidden));
        }
        Value::Array(a) => a.iter_mut().for_each(|v| strip(v, hidden)),
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
    fn a_customer_may_publish_behaviour_about_itself_or_nobody_and_nothing_else() {
        let shopper: Vec<_> = EVENT_TYPES.iter().filter(|t| trust(storeflow_avro::EventKind::ALL[t.index()]) == Trust::Shopper).collect();
        assert_eq!(shopper.len(), 8);
        let mut naming = 0;
        for t in shopper {
            let mut v = storeflow_avro::json::example(t);
            v["customer_id"] = serde_json::json!("C-other");
            // A type without the field refuses it: it names no customer.
            let Ok(e) = storeflow_avro::json::event_from_json(v, Default::default()) else { continue };
            naming += 1;
            // Every shopper type that can name a customer is read by `customer_of`: a new
            // one that is not would let customers speak for each other.
            assert_eq!(customer_of(&e), Some("C-other"), "{}", t.name);
            let why = customer_may_publish("C-me", &e).unwrap_err();
            assert!(why.contains(t.name) && why.contains("C-me") && why.contains("C-other"), "{why}");
        }
        assert_eq!(naming, 8, "every shopper type names its customer today");
        let mut page = example("PageViewed");
        if let Event::PageViewed(p) = &mut page {
            p.customer_id = None;
        }
        assert!(customer_may_publish("C-me", &page).is_ok(), "browsing before signing in names nobody");
        let why = customer_may_publish("C-me", &example("PaymentAuthorized")).unwrap_err();
        assert!(why.contains("PaymentAuthorized") && why.contains("C-me"), "{why}");
    }

    #[test]
    fn personal_fields_are_stripped_at_any_depth_and_the_owner_sees_only_its_addresses() {
        let payload = serde_json::json!({"client_ip": "203.0.113.7", "nested": [{"billing_address": {"city": "B"}, "sku": "S1"}],
            "shipping_address": {}, "payment_method_token": "pm", "order_id": "o"});
        let fraud = storeflow_sinks::read_model::FraudView { score: 70, decision: "review".into(), reasons: Some(serde_json::json!(["ip_velocity"])) };
        let order = OrderDetail {
            order: crate::read::OrderView {
                order_id: "o".into(),
                customer_id: None,
                currency: None,
                subtotal_minor: None,
                shipping_minor: None,
                tax_minor: None,
                discount_minor: None,
                total_minor: None,
                units: None,
                ship_country: None,
                placed_at: None,
                status: "placed".into(),
                payment_status: "pending".into(),
                fulfillment_status: "pending".into(),
                status_reason: None,
                status_at: None,
                items: vec![],
                payments: vec![],
                refunds: vec![],
                shipments: vec![],
                reservations: vec![],
                fraud: Some(fraud),
            },
            history: vec![crate::read::OrderEventView {
                event_id: "e".into(),
                event_type: "OrderPlaced".into(),
                occurred_at: 0,
                topic: "storefront.orders".into(),
                payload,
            }],
        };
        let key = |role: Role| Caller::Key { id: "k_1".into(), role };
        let vault = Vault::in_memory();
        assert_eq!(order_view(&key(Role::Service), order.clone(), &vault).unwrap(), order);
        let seen = order_view(&key(Role::App), order.clone(), &vault).unwrap();
        assert_eq!(seen.order.fraud.as_ref().unwrap().reasons, None, "the rules that fired stay hidden");
        assert_eq!(seen.history[0].payload, serde_json::json!({"nested": [{"sku": "S1"}], "order_id": "o"}));
        let seen = order_view(&Caller::Customer { id: "C1".into() }, order, &vault).unwrap();
        assert_eq!(
            seen.history[0].payload,
            serde_json::json!({"nested": [{"billing_address": {"city": "B"}, "sku": "S1"}], "shipping_address": {}, "order_id": "o"})
        );
    }
}
