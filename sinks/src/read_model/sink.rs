//! The read model sink: turns each event into upserts (`Op`s) and writes a batch in one
//! transaction.
//!
//! Reads `storefront.orders`, `storefront.payments`, `storefront.fulfillment`,
//! `storefront.catalog`, `storefront.customers`, `inventory.reservations`,
//! `inventory.levels`, `orders.lifecycle` and `fraud.scores`. Every write is an upsert keyed
//! by the entity's id, and every mutable column group carries its own guard of what is
//! newer — never the event time:
//!
//! - groups written from a processor's snapshot keep the highest snapshot `version`
//!   (`inventory.version` from `StockLevelChanged`, `orders.status_version` from
//!   `OrderStatusChanged`);
//! - groups written from a topic without versions keep the record with the highest
//!   position in its partition ([`Item::position`]): `vendors.updated_pos`,
//!   `products.catalog_pos` / `price_pos`, `customers.registered_pos`, `orders.placed_pos`,
//!   `reservations.updated_pos`, `payments.status_pos`, `fraud_scores.scored_pos`,
//!   `shipments.updated_pos` — one entity's events live in one partition, in processing
//!   order.
//!
//! `ON CONFLICT … DO UPDATE … WHERE guard IS NULL OR guard <= excluded.guard`: a redelivered
//! or reordered batch changes nothing, equal versions carry the same content, and records
//! written before versions existed (version 0) fall back to processing order. The `*_at`
//! columns (`status_at`, `price_at`, `updated_at`, …) are data: when it happened.
//! Append-only rows (order items, history, reviews, refunds) are keyed by their own id and
//! inserted with `DO NOTHING`.

use std::collections::BTreeSet;
use std::path::Path;

use secrecy::ExposeSecret;
use serde_json::Value;
use storeflow_avro::{Event, Topic};
use storeflow_ingest::TopicPartition;

use super::config::ReadModelConfig;
use super::dialect::{After, Col, Db, Op, Plan, Val};
use crate::registry::SinkConfig;
use crate::runner::{Batching, Item, Sink};
use crate::{Result, Retry, SinkError};

fn t(v: &str) -> Val {
    Val::Text(Some(v.to_string()))
}
fn ot(v: &Option<String>) -> Val {
    Val::Text(v.clone())
}
fn i(v: i64) -> Val {
    Val::Int(Some(v))
}
fn j(v: &impl serde::Serialize) -> Val {
    Val::Text(Some(serde_json::to_string(v).unwrap_or_else(|_| "null".into())))
}
const NULL_INT: Val = Val::Int(None);

/// `guard!(table.column)`: the stored row is older than (or as new as) the incoming one —
/// it has no guard yet, or a guard at or below the incoming record's.
macro_rules! guard {
    ($table:ident . $col:ident) => {
        concat!(
            "(", stringify!($table), ".", stringify!($col), " IS NULL OR ",
            stringify!($table), ".", stringify!($col), " <= excluded.", stringify!($col), ")"
        )
    };
}

static VENDOR: Op = Op {
    name: "vendor onboarded",
    table: "vendors",
    cols: &[
        ("vendor_id", Col::Text),
        ("name", Col::Text),
        ("country", Col::Text),
        ("plan", Col::Text),
        ("payout_currency", Col::Text),
        ("stripe_account_id", Col::Text),
        ("onboarded_at", Col::Int),
        ("updated_at", Col::Int),
        ("updated_pos", Col::Int),
    ],
    key: &[0],
    tail: concat!(
        "ON CONFLICT (vendor_id) DO UPDATE SET name = excluded.name, country = excluded.country, plan = excluded.plan, ",
        "payout_currency = excluded.payout_currency, stripe_account_id = excluded.stripe_account_id, ",
        "onboarded_at = excluded.onboarded_at, updated_at = excluded.updated_at, updated_pos = excluded.updated_pos ",
        "WHERE ", guard!(vendors.updated_pos)
    ),
};

static PRODUCT_CREATED: Op = Op {
    name: "product created",
    table: "products",
    cols: &[
        ("product_id", Col::Text),
        ("vendor_id", Col::Text),
        ("sku", Col::Text),
        ("title", Col::Text),
        ("description", Col::Text),
        ("translations", Col::Json),
        ("category", Col::Text),
        ("brand", Col::Text),
        ("price_minor", Col::Int),
        ("currency", Col::Text),
        ("price_at", Col::Int),
        ("price_pos", Col::Int),
        ("created_at", Col::Int),
        ("catalog_at", Col::Int),
        ("catalog_pos", Col::Int),
    ],
    key: &[0],
    // The catalogue fields follow catalog_pos; the price it carries follows price_pos, so a
    // PriceChanged later in the partition keeps its price.
    tail: concat!(
        "ON CONFLICT (product_id) DO UPDATE SET vendor_id = excluded.vendor_id, sku = excluded.sku, ",
        "title = excluded.title, description = excluded.description, translations = excluded.translations, ",
        "category = excluded.category, brand = excluded.brand, created_at = excluded.created_at, ",
        "catalog_at = excluded.catalog_at, catalog_pos = excluded.catalog_pos, ",
        "price_minor = CASE WHEN ", guard!(products.price_pos), " THEN excluded.price_minor ELSE products.price_minor END, ",
        "currency = CASE WHEN ", guard!(products.price_pos), " THEN excluded.currency ELSE products.currency END, ",
        "price_at = CASE WHEN ", guard!(products.price_pos), " THEN excluded.price_at ELSE products.price_at END, ",
        "price_pos = CASE WHEN ", guard!(products.price_pos), " THEN excluded.price_pos ELSE products.price_pos END ",
        "WHERE ", guard!(products.catalog_pos)
    ),
};

static PRODUCT_UPDATED: Op = Op {
    name: "product updated",
    table: "products",
    cols: &[
        ("product_id", Col::Text),
        ("vendor_id", Col::Text),
        ("title", Col::Text),
        ("description", Col::Text),
        ("category", Col::Text),
        ("brand", Col::Text),
        ("status", Col::Text),
        ("catalog_at", Col::Int),
        ("catalog_pos", Col::Int),
    ],
    key: &[0],
    tail: concat!(
        "ON CONFLICT (product_id) DO UPDATE SET vendor_id = excluded.vendor_id, ",
        "title = COALESCE(excluded.title, products.title), description = COALESCE(excluded.description, products.description), ",
        "category = COALESCE(excluded.category, products.category), brand = COALESCE(excluded.brand, products.brand), ",
        "status = COALESCE(excluded.status, products.status), catalog_at = excluded.catalog_at, catalog_pos = excluded.catalog_pos ",
        "WHERE ", guard!(products.catalog_pos)
    ),
};

static PRICE_CHANGED: Op = Op {
    name: "price changed",
    table: "products",
    cols: &[
        ("product_id", Col::Text),
        ("vendor_id", Col::Text),
        ("sku", Col::Text),
        ("price_minor", Col::Int),
        ("currency", Col::Text),
        ("price_at", Col::Int),
        ("price_pos", Col::Int),
        ("catalog_at", Col::Int),
    ],
    key: &[0],
    tail: concat!(
        "ON CONFLICT (product_id) DO UPDATE SET price_minor = excluded.price_minor, currency = excluded.currency, ",
        "price_at = excluded.price_at, price_pos = excluded.price_pos, sku = COALESCE(products.sku, excluded.sku) ",
        "WHERE ", guard!(products.price_pos)
    ),
};

static REVIEW: Op = Op {
    name: "review submitted",
    table: "reviews",
    cols: &[
        ("review_id", Col::Text),
        ("product_id", Col::Text),
        ("vendor_id", Col::Text),
        ("customer_id", Col::Text),
        ("rating", Col::Int),
        ("title", Col::Text),
        ("body", Col::Text),
        ("submitted_at", Col::Int),
    ],
    key: &[0],
    tail: "ON CONFLICT (review_id) DO NOTHING",
};

const RATING: &str = "UPDATE products SET \
    rating_avg = (SELECT CAST(AVG(rating) AS DOUBLE PRECISION) FROM reviews WHERE reviews.product_id = $1), \
    rating_count = (SELECT COUNT(*) FROM reviews WHERE reviews.product_id = $1) \
    WHERE product_id = $1";

/// A vendor's plan changed (its subscription): the row of a known vendor takes it, unless a
/// later record (by log position: the vendor's events share a partition) already wrote it.
const VENDOR_PLAN: &str = "UPDATE vendors SET plan = $2, updated_at = $3, updated_pos = $4 \
    WHERE vendor_id = $1 AND (updated_pos IS NULL OR updated_pos <= $4)";

/// A vendor's connected account, as onboarding and Stripe report it.
const VENDOR_ACCOUNT: &str = "UPDATE vendors SET stripe_account_id = $2, updated_at = $3, updated_pos = $4 \
    WHERE vendor_id = $1 AND (updated_pos IS NULL OR updated_pos <= $4)";

static CUSTOMER: Op = Op {
    name: "customer registered",
    table: "customers",
    cols: &[
        ("customer_id", Col::Text),
        ("email", Col::Text),
        ("name", Col::Text),
        ("country", Col::Text),
        ("marketing_opt_in", Col::Bool),
        ("registered_at", Col::Int),
        ("registered_pos", Col::Int),
    ],
    key: &[0],
    // Erasure is sticky: once erased_at is set, PII is never written again.
    tail: concat!(
        "ON CONFLICT (customer_id) DO UPDATE SET ",
        "email = CASE WHEN customers.erased_at IS NULL THEN excluded.email ELSE NULL END, ",
        "name = CASE WHEN customers.erased_at IS NULL THEN excluded.name ELSE NULL END, ",
        "country = excluded.country, marketing_opt_in = excluded.marketing_opt_in, registered_at = excluded.registered_at, ",
        "registered_pos = excluded.registered_pos ",
        "WHERE ", guard!(customers.registered_pos)
    ),
};

static CUSTOMER_ERASED: Op = Op {
    name: "customer erased",
    table: "customers",
    cols: &[("customer_id", Col::Text), ("erased_at", Col::Int), ("erase_reason", Col::Text)],
    key: &[0],
    tail: "ON CONFLICT (customer_id) DO UPDATE SET email = NULL, name = NULL, \
           erased_at = COALESCE(customers.erased_at, excluded.erased_at), \
           erase_reason = COALESCE(customers.erase_reason, excluded.erase_reason)",
};

static ORDER_PLACED: Op = Op {
    name: "order placed",
    table: "orders",
    cols: &[
        ("order_id", Col::Text),
        ("customer_id", Col::Text),
        ("session_id", Col::Text),
        ("currency", Col::Text),
        ("subtotal_minor", Col::Int),
        ("shipping_minor", Col::Int),
        ("tax_minor", Col::Int),
        ("discount_minor", Col::Int),
        ("total_minor", Col::Int),
        ("item_count", Col::Int),
        ("units", Col::Int),
        ("ship_country", Col::Text),
        ("bill_country", Col::Text),
        ("placed_at", Col::Int),
        ("placed_pos", Col::Int),
    ],
    key: &[0],
    tail: concat!(
        "ON CONFLICT (order_id) DO UPDATE SET customer_id = excluded.customer_id, session_id = excluded.session_id, ",
        "currency = excluded.currency, subtotal_minor = excluded.subtotal_minor, shipping_minor = excluded.shipping_minor, ",
        "tax_minor = excluded.tax_minor, discount_minor = excluded.discount_minor, total_minor = excluded.total_minor, ",
        "item_count = excluded.item_count, units = excluded.units, ship_country = excluded.ship_country, ",
        "bill_country = excluded.bill_country, placed_at = excluded.placed_at, placed_pos = excluded.placed_pos ",
        "WHERE ", guard!(orders.placed_pos)
    ),
};

static ORDER_ITEM: Op = Op {
    name: "order item",
    table: "order_items",
    cols: &[
        ("order_id", Col::Text),
        ("line_no", Col::Int),
        ("sku", Col::Text),
        ("product_id", Col::Text),
        ("vendor_id", Col::Text),
        ("quantity", Col::Int),
        ("unit_price_minor", Col::Int),
    ],
    key: &[0, 1],
    tail: "ON CONFLICT (order_id, line_no) DO NOTHING",
};

static ORDER_STATUS: Op = Op {
    name: "order status changed",
    table: "orders",
    cols: &[
        ("order_id", Col::Text),
        ("customer_id", Col::Text),
        ("currency", Col::Text),
        ("total_minor", Col::Int),
        ("status", Col::Text),
        ("payment_status", Col::Text),
        ("fulfillment_status", Col::Text),
        ("status_reason", Col::Text),
        ("status_at", Col::Int),
        ("status_version", Col::Int),
    ],
    key: &[0],
    tail: concat!(
        "ON CONFLICT (order_id) DO UPDATE SET status = excluded.status, payment_status = excluded.payment_status, ",
        "fulfillment_status = excluded.fulfillment_status, status_reason = excluded.status_reason, ",
        "status_at = excluded.status_at, status_version = excluded.status_version, ",
        "customer_id = COALESCE(orders.customer_id, excluded.customer_id), ",
        "currency = COALESCE(orders.currency, excluded.currency), total_minor = COALESCE(orders.total_minor, excluded.total_minor) ",
        "WHERE ", guard!(orders.status_version)
    ),
};

static ORDER_EVENT: Op = Op {
    name: "order history",
    table: "order_events",
    cols: &[
        ("event_id", Col::Text),
        ("order_id", Col::Text),
        ("event_type", Col::Text),
        ("occurred_at", Col::Int),
        ("topic", Col::Text),
        ("partition_no", Col::Int),
        ("offset_no", Col::Int),
        ("payload", Col::Json),
    ],
    key: &[0],
    tail: "ON CONFLICT (event_id) DO NOTHING",
};

static INVENTORY: Op = Op {
    name: "stock level",
    table: "inventory",
    cols: &[
        ("sku", Col::Text),
        ("warehouse_id", Col::Text),
        ("on_hand", Col::Int),
        ("reserved", Col::Int),
        ("available", Col::Int),
        ("cause", Col::Text),
        ("updated_at", Col::Int),
        ("version", Col::Int),
    ],
    key: &[0, 1],
    tail: concat!(
        "ON CONFLICT (sku, warehouse_id) DO UPDATE SET on_hand = excluded.on_hand, reserved = excluded.reserved, ",
        "available = excluded.available, cause = excluded.cause, updated_at = excluded.updated_at, version = excluded.version ",
        "WHERE ", guard!(inventory.version)
    ),
};

static RESERVATION: Op = Op {
    name: "reservation",
    table: "reservations",
    cols: &[
        ("order_id", Col::Text),
        ("sku", Col::Text),
        ("warehouse_id", Col::Text),
        ("quantity", Col::Int),
        ("status", Col::Text),
        ("reason", Col::Text),
        ("expires_at", Col::Int),
        ("updated_at", Col::Int),
        ("updated_pos", Col::Int),
    ],
    key: &[0, 1, 2],
    tail: concat!(
        "ON CONFLICT (order_id, sku, warehouse_id) DO UPDATE SET quantity = excluded.quantity, status = excluded.status, ",
        "reason = excluded.reason, expires_at = COALESCE(excluded.expires_at, reservations.expires_at), ",
        "updated_at = excluded.updated_at, updated_pos = excluded.updated_pos ",
        "WHERE ", guard!(reservations.updated_pos)
    ),
};

/// The status columns every payment event sets, behind the payment's `status_pos`.
macro_rules! payment_status {
    () => {
        concat!(
            "status = CASE WHEN ", guard!(payments.status_pos), " THEN excluded.status ELSE payments.status END, ",
            "status_at = CASE WHEN ", guard!(payments.status_pos), " THEN excluded.status_at ELSE payments.status_at END, ",
            "status_pos = CASE WHEN ", guard!(payments.status_pos), " THEN excluded.status_pos ELSE payments.status_pos END"
        )
    };
}

static PAYMENT_AUTHORIZED: Op = Op {
    name: "payment authorized",
    table: "payments",
    cols: &[
        ("payment_id", Col::Text),
        ("order_id", Col::Text),
        ("provider", Col::Text),
        ("currency", Col::Text),
        ("authorized_minor", Col::Int),
        ("status", Col::Text),
        ("authorized_at", Col::Int),
        ("status_at", Col::Int),
        ("status_pos", Col::Int),
    ],
    key: &[0],
    tail: concat!(
        "ON CONFLICT (payment_id) DO UPDATE SET provider = excluded.provider, authorized_minor = excluded.authorized_minor, ",
        "authorized_at = excluded.authorized_at, ",
        payment_status!()
    ),
};

static PAYMENT_CAPTURED: Op = Op {
    name: "payment captured",
    table: "payments",
    cols: &[
        ("payment_id", Col::Text),
        ("order_id", Col::Text),
        ("currency", Col::Text),
        ("captured_minor", Col::Int),
        ("status", Col::Text),
        ("captured_at", Col::Int),
        ("status_at", Col::Int),
        ("status_pos", Col::Int),
    ],
    key: &[0],
    tail: concat!(
        "ON CONFLICT (payment_id) DO UPDATE SET captured_minor = excluded.captured_minor, captured_at = excluded.captured_at, ",
        payment_status!()
    ),
};

static PAYMENT_FAILED: Op = Op {
    name: "payment failed",
    table: "payments",
    cols: &[
        ("payment_id", Col::Text),
        ("order_id", Col::Text),
        ("currency", Col::Text),
        ("authorized_minor", Col::Int),
        ("status", Col::Text),
        ("failure_code", Col::Text),
        ("failure_message", Col::Text),
        ("failed_at", Col::Int),
        ("status_at", Col::Int),
        ("status_pos", Col::Int),
    ],
    key: &[0],
    tail: concat!(
        "ON CONFLICT (payment_id) DO UPDATE SET failure_code = excluded.failure_code, ",
        "failure_message = excluded.failure_message, failed_at = excluded.failed_at, ",
        payment_status!()
    ),
};

static REFUND: Op = Op {
    name: "refund issued",
    table: "refunds",
    cols: &[
        ("refund_id", Col::Text),
        ("payment_id", Col::Text),
        ("order_id", Col::Text),
        ("amount_minor", Col::Int),
        ("currency", Col::Text),
        ("reason", Col::Text),
        ("lines", Col::Json),
        ("issued_at", Col::Int),
    ],
    key: &[0],
    tail: "ON CONFLICT (refund_id) DO NOTHING",
};

/// The columns ShipmentCreated and ShipmentShipped both set, behind the shipment's
/// `updated_pos`; every other column of a shipment is set by one event only.
macro_rules! shipment_shared {
    ($lines:literal) => {
        concat!(
            "warehouse_id = CASE WHEN ", guard!(shipments.updated_pos), " THEN excluded.warehouse_id ELSE shipments.warehouse_id END, ",
            "lines = CASE WHEN ", guard!(shipments.updated_pos), " THEN ", $lines, " ELSE shipments.lines END, ",
            "updated_pos = CASE WHEN ", guard!(shipments.updated_pos), " THEN excluded.updated_pos ELSE shipments.updated_pos END"
        )
    };
}

static SHIPMENT_CREATED: Op = Op {
    name: "shipment created",
    table: "shipments",
    cols: &[
        ("shipment_id", Col::Text),
        ("order_id", Col::Text),
        ("warehouse_id", Col::Text),
        ("carrier", Col::Text),
        ("lines", Col::Json),
        ("created_at", Col::Int),
        ("updated_pos", Col::Int),
    ],
    key: &[0],
    tail: concat!(
        "ON CONFLICT (shipment_id) DO UPDATE SET carrier = excluded.carrier, created_at = excluded.created_at, ",
        shipment_shared!("COALESCE(shipments.lines, excluded.lines)")
    ),
};

static SHIPMENT_SHIPPED: Op = Op {
    name: "shipment shipped",
    table: "shipments",
    cols: &[
        ("shipment_id", Col::Text),
        ("order_id", Col::Text),
        ("warehouse_id", Col::Text),
        ("tracking_number", Col::Text),
        ("lines", Col::Json),
        ("shipped_at", Col::Int),
        ("updated_pos", Col::Int),
    ],
    key: &[0],
    tail: concat!(
        "ON CONFLICT (shipment_id) DO UPDATE SET tracking_number = excluded.tracking_number, shipped_at = excluded.shipped_at, ",
        shipment_shared!("excluded.lines")
    ),
};

static SHIPMENT_DELIVERED: Op = Op {
    name: "shipment delivered",
    table: "shipments",
    cols: &[("shipment_id", Col::Text), ("order_id", Col::Text), ("delivered_at", Col::Int)],
    key: &[0],
    tail: "ON CONFLICT (shipment_id) DO UPDATE SET delivered_at = excluded.delivered_at",
};

static FRAUD: Op = Op {
    name: "fraud scored",
    table: "fraud_scores",
    cols: &[
        ("order_id", Col::Text),
        ("customer_id", Col::Text),
        ("score", Col::Int),
        ("decision", Col::Text),
        ("reasons", Col::Json),
        ("scored_at", Col::Int),
        ("scored_pos", Col::Int),
    ],
    key: &[0],
    tail: concat!(
        "ON CONFLICT (order_id) DO UPDATE SET customer_id = excluded.customer_id, score = excluded.score, ",
        "decision = excluded.decision, reasons = excluded.reasons, scored_at = excluded.scored_at, scored_pos = excluded.scored_pos ",
        "WHERE ", guard!(fraud_scores.scored_pos)
    ),
};

/// The topics the read model reads.
pub const TOPICS: [Topic; 9] = [
    Topic::Orders,
    Topic::Payments,
    Topic::Fulfillment,
    Topic::Catalog,
    Topic::Customers,
    Topic::Reservations,
    Topic::StockLevels,
    Topic::Lifecycle,
    Topic::FraudScores,
];

/// The order an event is about, for the order history (every event of the read model's
/// topics that names an order is part of its history).
fn order_of(e: &Event) -> Option<&str> {
    e.order_id()
}

/// The event as the history keeps it: personal data only in the sealed form it travels in
/// (the API opens it for those who may see it; erasing the customer's key makes it
/// unreadable here too), never in the clear.
pub fn history_payload(e: &Event) -> Value {
    storeflow_avro::pii::sealed_only(e).to_json()
}

/// Adds the rows `item` needs to `plan`; returns a product whose rating must be recomputed.
pub fn plan_item(plan: &mut Plan, item: &Item) -> Option<String> {
    // Event time is data (the `*_at` columns); what is newer is decided by `pos` (the
    // record's place in its partition) or by a snapshot's own `version`.
    let at = item.event.occurred_at().millis();
    let pos = item.position();
    if let Some(order_id) = order_of(&item.event) {
        plan.push(
            &ORDER_EVENT,
            vec![
                t(item.event.event_id()),
                t(order_id),
                t(item.event.name()),
                i(at),
                t(&item.topic),
                i(i64::from(item.partition)),
                i(item.offset as i64),
                j(&history_payload(&item.event)),
            ],
        );
    }
    match &item.event {
        Event::VendorOnboarded(v) => plan.push(
            &VENDOR,
            vec![
                t(&v.vendor_id),
                t(&v.name),
                t(&v.country),
                t(&v.plan),
                t(&v.payout_currency),
                ot(&v.stripe_account_id),
                i(at),
                i(at),
                i(pos),
            ],
        ),
        // Updates of a vendor's row, after the batch's upserts (so a VendorOnboarded in the
        // same batch is there); the position guard keeps processing order.
        Event::VendorPlanChanged(v) => plan.after.push(After { sql: VENDOR_PLAN, binds: vec![t(&v.vendor_id), t(&v.plan), i(at), i(pos)] }),
        Event::VendorAccountUpdated(v) => plan.after.push(After { sql: VENDOR_ACCOUNT, binds: vec![t(&v.vendor_id), t(&v.account_id), i(at), i(pos)] }),
        Event::ProductCreated(p) => {
            plan.push(
                &PRODUCT_CREATED,
                vec![
                    t(&p.product_id),
                    t(&p.vendor_id),
                    t(&p.sku),
                    t(&p.title),
                    t(&p.description),
                    j(&p.translations),
                    t(&p.category),
                    t(&p.brand),
                    i(p.price_minor),
                    t(&p.currency),
                    i(at),
                    i(pos),
                    i(at),
                    i(at),
                    i(pos),
                ],
            );
            return Some(p.product_id.clone());
        }
        Event::ProductUpdated(p) => plan.push(
            &PRODUCT_UPDATED,
            vec![
                t(&p.product_id),
                t(&p.vendor_id),
                ot(&p.title),
                ot(&p.description),
                ot(&p.category),
                ot(&p.brand),
                ot(&p.status),
                i(at),
                i(pos),
            ],
        ),
        Event::PriceChanged(p) => plan.push(
            &PRICE_CHANGED,
            // catalog_at -1 and no catalog_pos: a product known only by its price yet; its
            // ProductCreated fills the catalogue fields.
            vec![t(&p.product_id), t(&p.vendor_id), t(&p.sku), i(p.price_minor), t(&p.currency), i(at), i(pos), i(-1)],
        ),
        Event::ReviewSubmitted(r) => {
            plan.push(
                &REVIEW,
                vec![
                    t(&r.review_id),
                    t(&r.product_id),
                    t(&r.vendor_id),
                    t(&r.customer_id),
                    i(i64::from(r.rating)),
                    ot(&r.title),
                    ot(&r.body),
                    i(at),
                ],
            );
            return Some(r.product_id.clone());
        }
        Event::CustomerRegistered(c) => plan.push(
            &CUSTOMER,
            vec![t(&c.customer_id), t(&c.email), t(&c.name), t(&c.country), Val::Bool(Some(c.marketing_opt_in)), i(at), i(pos)],
        ),
        Event::CustomerErased(c) => plan.push(&CUSTOMER_ERASED, vec![t(&c.customer_id), i(at), ot(&c.reason)]),
        Event::OrderPlaced(o) => {
            let units: i64 = o.items.iter().map(|x| i64::from(x.quantity)).sum();
            plan.push(
                &ORDER_PLACED,
                vec![
                    t(&o.order_id),
                    t(&o.customer_id),
                    ot(&o.session_id),
                    t(&o.currency),
                    i(o.subtotal_minor()),
                    i(o.shipping_minor),
                    i(o.tax_minor),
                    i(o.discount_minor),
                    i(o.total_minor()),
                    i(o.items.len() as i64),
                    i(units),
                    t(&o.shipping_address.country),
                    t(&o.billing_address.country),
                    i(at),
                    i(pos),
                ],
            );
            for (n, it) in o.items.iter().enumerate() {
                plan.push(
                    &ORDER_ITEM,
                    vec![
                        t(&o.order_id),
                        i(n as i64),
                        t(&it.sku),
                        t(&it.product_id),
                        t(&it.vendor_id),
                        i(i64::from(it.quantity)),
                        i(it.unit_price_minor),
                    ],
                );
            }
        }
        Event::OrderStatusChanged(s) => plan.push(
            &ORDER_STATUS,
            vec![
                t(&s.order_id),
                t(&s.customer_id),
                t(&s.currency),
                i(s.total_minor),
                t(&s.status),
                t(&s.payment_status),
                t(&s.fulfillment_status),
                t(&s.reason),
                i(at),
                i(s.version),
            ],
        ),
        Event::StockLevelChanged(s) => plan.push(
            &INVENTORY,
            vec![
                t(&s.sku),
                t(&s.warehouse_id),
                i(i64::from(s.on_hand)),
                i(i64::from(s.reserved)),
                i(i64::from(s.available)),
                t(&s.cause),
                i(at),
                i(s.version),
            ],
        ),
        Event::ReservationMade(r) => {
            for l in &r.lines {
                plan.push(
                    &RESERVATION,
                    vec![t(&r.order_id), t(&l.sku), t(&l.warehouse_id), i(i64::from(l.quantity)), t("held"), Val::Text(None), i(r.expires_at.millis()), i(at), i(pos)],
                );
            }
        }
        Event::ReservationReleased(r) => {
            for l in &r.lines {
                plan.push(
                    &RESERVATION,
                    vec![t(&r.order_id), t(&l.sku), t(&l.warehouse_id), i(i64::from(l.quantity)), t("released"), t(&r.reason), NULL_INT, i(at), i(pos)],
                );
            }
        }
        Event::ReservationCommitted(r) => {
            for l in &r.lines {
                plan.push(
                    &RESERVATION,
                    vec![t(&r.order_id), t(&l.sku), t(&l.warehouse_id), i(i64::from(l.quantity)), t("committed"), Val::Text(None), NULL_INT, i(at), i(pos)],
                );
            }
        }
        Event::ReservationRejected(r) => {
            for m in &r.missing {
                plan.push(
                    &RESERVATION,
                    vec![t(&r.order_id), t(&m.sku), t(""), i(i64::from(m.requested)), t("rejected"), t(&r.reason), NULL_INT, i(at), i(pos)],
                );
            }
        }
        Event::PaymentAuthorized(p) => plan.push(
            &PAYMENT_AUTHORIZED,
            vec![t(&p.payment_id), t(&p.order_id), t(&p.provider), t(&p.currency), i(p.amount_minor), t("authorized"), i(at), i(at), i(pos)],
        ),
        Event::PaymentCaptured(p) => plan.push(
            &PAYMENT_CAPTURED,
            vec![t(&p.payment_id), t(&p.order_id), t(&p.currency), i(p.amount_minor), t("captured"), i(at), i(at), i(pos)],
        ),
        Event::PaymentFailed(p) => {
            // A decline before a payment existed has no payment id: key it by the event.
            let id = p.payment_id.clone().unwrap_or_else(|| format!("failed:{}", p.event_id));
            plan.push(
                &PAYMENT_FAILED,
                vec![
                    t(&id),
                    t(&p.order_id),
                    t(&p.currency),
                    i(p.amount_minor),
                    t("failed"),
                    t(&p.failure_code),
                    t(&p.failure_message),
                    i(at),
                    i(at),
                    i(pos),
                ],
            );
        }
        Event::RefundIssued(r) => plan.push(
            &REFUND,
            vec![t(&r.refund_id), t(&r.payment_id), t(&r.order_id), i(r.amount_minor), t(&r.currency), t(&r.reason), j(&r.lines), i(at)],
        ),
        Event::ShipmentCreated(s) => plan.push(
            &SHIPMENT_CREATED,
            vec![t(&s.shipment_id), t(&s.order_id), t(&s.warehouse_id), t(&s.carrier), j(&s.lines), i(at), i(pos)],
        ),
        Event::ShipmentShipped(s) => plan.push(
            &SHIPMENT_SHIPPED,
            vec![t(&s.shipment_id), t(&s.order_id), t(&s.warehouse_id), t(&s.tracking_number), j(&s.lines), i(at), i(pos)],
        ),
        Event::ShipmentDelivered(s) => plan.push(&SHIPMENT_DELIVERED, vec![t(&s.shipment_id), t(&s.order_id), i(at)]),
        Event::FraudScored(f) => plan.push(
            &FRAUD,
            vec![t(&f.order_id), t(&f.customer_id), i(i64::from(f.score)), t(&f.decision), j(&f.reasons), i(at), i(pos)],
        ),
        _ => {}
    }
    None
}

/// True if the read model writes something for `e`.
pub fn wants(e: &Event) -> bool {
    order_of(e).is_some()
        || matches!(
            e,
            Event::VendorOnboarded(_)
                | Event::VendorPlanChanged(_)
                | Event::VendorAccountUpdated(_)
                | Event::ProductCreated(_)
                | Event::ProductUpdated(_)
                | Event::PriceChanged(_)
                | Event::ReviewSubmitted(_)
                | Event::CustomerRegistered(_)
                | Event::CustomerErased(_)
                | Event::StockLevelChanged(_)
        )
}

/// The read model sink (Postgres or SQLite).
pub struct ReadModelSink {
    db: Db,
    batching: Batching,
}

impl ReadModelSink {
    /// Connects (Postgres when configured, else SQLite under `data_dir`) and runs the
    /// migrations.
    pub async fn open(config: &ReadModelConfig, data_dir: &Path) -> Result<ReadModelSink> {
        config.validate()?;
        let db = match &config.postgres_url {
            Some(url) => Db::postgres(url.expose_secret(), config.pool_size).await?,
            None => Db::sqlite(&data_dir.join(super::config::SQLITE_FILE), config.pool_size).await?,
        };
        Ok(ReadModelSink { db, batching: config.batching() })
    }

    /// The database (shared with the query handle).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The plan for `items`.
    pub fn plan(items: &[Item]) -> Plan {
        let mut plan = Plan::default();
        let mut rated = BTreeSet::new();
        for it in items {
            if let Some(p) = plan_item(&mut plan, it) {
                rated.insert(p);
            }
        }
        for p in rated {
            plan.after.push(After { sql: RATING, binds: vec![Val::Text(Some(p))] });
        }
        plan
    }
}

impl Sink for ReadModelSink {
    fn topics(&self) -> Vec<Topic> {
        TOPICS.to_vec()
    }

    fn batching(&self) -> Batching {
        self.batching
    }

    fn wants(&self, event: &Event) -> bool {
        wants(event)
    }

    fn retry(&self, err: &SinkError) -> Retry {
        super::service::retry_logic(err)
    }

    async fn assigned(&mut self, _partitions: &[TopicPartition]) -> Result<()> {
        Ok(())
    }

    async fn write(&mut self, items: &[Item]) -> Result<()> {
        let plan = Self::plan(items);
        if plan.is_empty() {
            return Ok(());
        }
        self.db.write(plan).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every upsert of the sink.
    const OPS: &[&Op] = &[
        &VENDOR,
        &PRODUCT_CREATED,
        &PRODUCT_UPDATED,
        &PRICE_CHANGED,
        &REVIEW,
        &CUSTOMER,
        &CUSTOMER_ERASED,
        &ORDER_PLACED,
        &ORDER_ITEM,
        &ORDER_STATUS,
        &ORDER_EVENT,
        &INVENTORY,
        &RESERVATION,
        &PAYMENT_AUTHORIZED,
        &PAYMENT_CAPTURED,
        &PAYMENT_FAILED,
        &REFUND,
        &SHIPMENT_CREATED,
        &SHIPMENT_SHIPPED,
        &SHIPMENT_DELIVERED,
        &FRAUD,
    ];

    #[test]
    fn no_upsert_decides_by_event_time() {
        for op in OPS {
            let tail = op.tail.to_lowercase();
            for cmp in ["<=", ">=", " < ", " > ", "max(", "greatest("] {
                for (i, _) in tail.match_indices(cmp) {
                    let before = &tail[..i];
                    let operand = before.rsplit(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.')).find(|w| !w.is_empty()).unwrap_or("");
                    assert!(!operand.ends_with("_at"), "{}: `{operand} {cmp}` orders by event time", op.name);
                }
            }
        }
    }

    #[test]
    fn every_mutable_upsert_is_guarded_by_a_version_or_a_position() {
        for op in OPS {
            let mutable = op.tail.contains("DO UPDATE");
            let guarded = ["_pos", "version"].iter().any(|g| op.tail.contains(&format!("{g} <= excluded.")));
            // Erasure only clears; a delivery sets only its own column.
            let exempt = ["customer erased", "shipment delivered"].contains(&op.name);
            assert!(!mutable || guarded || exempt, "{} updates rows without a guard", op.name);
        }
    }

    #[test]
    fn a_guard_lets_a_row_without_one_be_updated() {
        assert_eq!(guard!(inventory.version), "(inventory.version IS NULL OR inventory.version <= excluded.version)");
    }
}
