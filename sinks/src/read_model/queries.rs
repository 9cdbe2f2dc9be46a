//! The read queries the API needs, written once for Postgres and SQLite.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use storeflow_avro::Topic;
use utoipa::ToSchema;

use super::dialect::{Db, RowLike, fetch_all};
use crate::Result;

/// One line of an order.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct OrderItemView {
    /// Position in the order, from 0.
    pub line_no: i64,
    /// Sku.
    pub sku: String,
    /// Product.
    pub product_id: String,
    /// Vendor.
    pub vendor_id: String,
    /// Units.
    pub quantity: i64,
    /// Price of one unit, minor units of the order's currency.
    pub unit_price_minor: i64,
}

/// A payment of an order.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct PaymentView {
    /// Provider's payment id (`failed:<event id>` for a decline without one).
    pub payment_id: String,
    /// authorized, captured or failed.
    pub status: String,
    /// Currency.
    pub currency: String,
    /// Amount authorized.
    pub authorized_minor: Option<i64>,
    /// Amount captured.
    pub captured_minor: Option<i64>,
    /// Why it failed.
    pub failure_code: Option<String>,
    /// When the status last changed (ms).
    pub status_at: i64,
}

/// A refund of an order.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct RefundView {
    /// Refund id.
    pub refund_id: String,
    /// Amount, minor units.
    pub amount_minor: i64,
    /// Currency.
    pub currency: String,
    /// Why.
    pub reason: String,
    /// When (ms).
    pub issued_at: i64,
}

/// A shipment of an order.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct ShipmentView {
    /// Shipment id.
    pub shipment_id: String,
    /// Warehouse.
    pub warehouse_id: Option<String>,
    /// Carrier.
    pub carrier: Option<String>,
    /// Tracking number once shipped.
    pub tracking_number: Option<String>,
    /// created, shipped or delivered.
    pub status: String,
    /// Lines (sku, quantity).
    #[schema(value_type = Option<Object>)]
    pub lines: Option<Value>,
}

/// A reservation line of an order.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct ReservationView {
    /// Sku.
    pub sku: String,
    /// Warehouse ('' for a rejected line).
    pub warehouse_id: String,
    /// Units.
    pub quantity: i64,
    /// held, released, committed or rejected.
    pub status: String,
    /// Why (released, rejected).
    pub reason: Option<String>,
}

/// The fraud score of an order.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct FraudView {
    /// 0–100.
    pub score: i64,
    /// allow, review or hold.
    pub decision: String,
    /// The signals behind the score (left out where the caller may not see them).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub reasons: Option<Value>,
}

/// An order: what was placed, its three states and totals, and its parts.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct OrderView {
    /// Order id.
    pub order_id: String,
    /// Customer.
    pub customer_id: Option<String>,
    /// Currency of the amounts.
    pub currency: Option<String>,
    /// Sum of the lines.
    pub subtotal_minor: Option<i64>,
    /// Shipping.
    pub shipping_minor: Option<i64>,
    /// Tax.
    pub tax_minor: Option<i64>,
    /// Discount.
    pub discount_minor: Option<i64>,
    /// What the customer pays.
    pub total_minor: Option<i64>,
    /// Units over all lines.
    pub units: Option<i64>,
    /// Shipping country.
    pub ship_country: Option<String>,
    /// When it was placed (ms); `None` if only its status is known yet.
    pub placed_at: Option<i64>,
    /// Order state (placed, reserved, confirmed, shipped, delivered, cancelled, …).
    pub status: String,
    /// Payment state.
    pub payment_status: String,
    /// Fulfillment state.
    pub fulfillment_status: String,
    /// Why the last state change happened.
    pub status_reason: Option<String>,
    /// When the state last changed (ms).
    pub status_at: Option<i64>,
    /// Lines.
    pub items: Vec<OrderItemView>,
    /// Payments.
    pub payments: Vec<PaymentView>,
    /// Refunds.
    pub refunds: Vec<RefundView>,
    /// Shipments.
    pub shipments: Vec<ShipmentView>,
    /// Reservation lines.
    pub reservations: Vec<ReservationView>,
    /// Fraud score, once scored.
    pub fraud: Option<FraudView>,
}

/// An order as the API answers it: the order and every event about it, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct OrderDetail {
    /// The order.
    #[serde(flatten)]
    pub order: OrderView,
    /// Every event about it, oldest first.
    pub history: Vec<OrderEventView>,
}

/// One event of an order's history.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct OrderEventView {
    /// Event id.
    pub event_id: String,
    /// Event type, e.g. `PaymentCaptured`.
    pub event_type: String,
    /// When it happened (ms).
    pub occurred_at: i64,
    /// Topic it came from.
    pub topic: String,
    /// The event as JSON.
    #[schema(value_type = Object)]
    pub payload: Value,
}

/// Stock of a sku in one warehouse.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct WarehouseStockView {
    /// Warehouse.
    pub warehouse_id: String,
    /// Units in the warehouse.
    pub on_hand: i64,
    /// Units held for orders.
    pub reserved: i64,
    /// Units that can be sold.
    pub available: i64,
    /// What changed it last.
    pub cause: String,
    /// When (ms).
    pub updated_at: i64,
}

/// An order with lines of one vendor, as that vendor sees it: where the order is, and its
/// lines' units and value (no customer).
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct VendorOrderView {
    /// Order.
    pub order_id: String,
    /// When it was placed (ms).
    pub placed_at: Option<i64>,
    /// Where the saga has it (`placed`, `reserved`, `confirmed`, …, `cancelled`).
    pub status: String,
    /// `pending`, `authorized`, `captured`, …
    pub payment_status: String,
    /// `unfulfilled`, `shipped`, `delivered`, …
    pub fulfillment_status: String,
    /// Currency of the order (and of `lines_minor`).
    pub currency: Option<String>,
    /// Units of this vendor's lines.
    pub units: i64,
    /// Quantity × unit price of this vendor's lines, in the order's currency.
    pub lines_minor: i64,
}

/// A sku of a vendor that is running out in a warehouse.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct LowStockView {
    /// Sku.
    pub sku: String,
    /// Its product.
    pub product_id: String,
    /// The product's title.
    pub title: Option<String>,
    /// Warehouse.
    pub warehouse_id: String,
    /// Units in the warehouse.
    pub on_hand: i64,
    /// Units held for orders.
    pub reserved: i64,
    /// Units that can be sold.
    pub available: i64,
}

/// Stock of a sku: per warehouse and in total.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct InventoryView {
    /// Sku.
    pub sku: String,
    /// Total on hand.
    pub on_hand: i64,
    /// Total reserved.
    pub reserved: i64,
    /// Total available.
    pub available: i64,
    /// Per warehouse.
    pub warehouses: Vec<WarehouseStockView>,
}

/// A product.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct ProductView {
    /// Product id.
    pub product_id: String,
    /// Vendor.
    pub vendor_id: String,
    /// Sku.
    pub sku: Option<String>,
    /// Title.
    pub title: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Other languages: `{lang: {title, description}}`.
    #[schema(value_type = Option<Object>)]
    pub translations: Option<Value>,
    /// Category path.
    pub category: Option<String>,
    /// Brand.
    pub brand: Option<String>,
    /// active unless a ProductUpdated said otherwise.
    pub status: String,
    /// Price, minor units.
    pub price_minor: Option<i64>,
    /// Currency of the price.
    pub currency: Option<String>,
    /// Average review rating.
    pub rating_avg: Option<f64>,
    /// Number of reviews.
    pub rating_count: i64,
}

/// A vendor with a summary of its catalogue.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct VendorView {
    /// Vendor id.
    pub vendor_id: String,
    /// Name.
    pub name: String,
    /// Country.
    pub country: String,
    /// basic, pro or enterprise.
    pub plan: String,
    /// Payout currency.
    pub payout_currency: String,
    /// When it joined (ms).
    pub onboarded_at: i64,
    /// Products listed.
    pub products: i64,
    /// Average rating over all its reviews.
    pub rating_avg: Option<f64>,
    /// Reviews.
    pub rating_count: i64,
}

/// A customer (name and email are `None` once erased).
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct CustomerView {
    /// Customer id.
    pub customer_id: String,
    /// Email, unless erased.
    pub email: Option<String>,
    /// Name, unless erased.
    pub name: Option<String>,
    /// Country.
    pub country: Option<String>,
    /// When registered (ms).
    pub registered_at: Option<i64>,
    /// True once the customer asked to be forgotten.
    pub erased: bool,
}

fn order_row(r: &impl RowLike) -> Result<OrderView> {
    Ok(OrderView {
        order_id: r.text("order_id")?,
        customer_id: r.opt_text("customer_id")?,
        currency: r.opt_text("currency")?,
        subtotal_minor: r.opt_int("subtotal_minor")?,
        shipping_minor: r.opt_int("shipping_minor")?,
        tax_minor: r.opt_int("tax_minor")?,
        discount_minor: r.opt_int("discount_minor")?,
        total_minor: r.opt_int("total_minor")?,
        units: r.opt_int("units")?,
        ship_country: r.opt_text("ship_country")?,
        placed_at: r.opt_int("placed_at")?,
        status: r.text("status")?,
        payment_status: r.text("payment_status")?,
        fulfillment_status: r.text("fulfillment_status")?,
        status_reason: r.opt_text("status_reason")?,
        status_at: r.opt_int("status_at")?,
        items: Vec::new(),
        payments: Vec::new(),
        refunds: Vec::new(),
        shipments: Vec::new(),
        reservations: Vec::new(),
        fraud: None,
    })
}

fn item_row(r: &impl RowLike) -> Result<OrderItemView> {
    Ok(OrderItemView {
        line_no: r.int("line_no")?,
        sku: r.text("sku")?,
        product_id: r.text("product_id")?,
        vendor_id: r.text("vendor_id")?,
        quantity: r.int("quantity")?,
        unit_price_minor: r.int("unit_price_minor")?,
    })
}

fn payment_row(r: &impl RowLike) -> Result<PaymentView> {
    Ok(PaymentView {
        payment_id: r.text("payment_id")?,
        status: r.text("status")?,
        currency: r.text("currency")?,
        authorized_minor: r.opt_int("authorized_minor")?,
        captured_minor: r.opt_int("captured_minor")?,
        failure_code: r.opt_text("failure_code")?,
        status_at: r.int("status_at")?,
    })
}

fn refund_row(r: &impl RowLike) -> Result<RefundView> {
    Ok(RefundView {
        refund_id: r.text("refund_id")?,
        amount_minor: r.int("amount_minor")?,
        currency: r.text("currency")?,
        reason: r.text("reason")?,
        issued_at: r.int("issued_at")?,
    })
}

fn shipment_row(r: &impl RowLike) -> Result<ShipmentView> {
    let status = if r.opt_int("delivered_at")?.is_some() {
        "delivered"
    } else if r.opt_int("shipped_at")?.is_some() {
        "shipped"
    } else {
        "created"
    };
    Ok(ShipmentView {
        shipment_id: r.text("shipment_id")?,
        warehouse_id: r.opt_text("warehouse_id")?,
        carrier: r.opt_text("carrier")?,
        tracking_number: r.opt_text("tracking_number")?,
        status: status.into(),
        lines: r.opt_json("lines")?,
    })
}

fn reservation_row(r: &impl RowLike) -> Result<ReservationView> {
    Ok(ReservationView {
        sku: r.text("sku")?,
        warehouse_id: r.text("warehouse_id")?,
        quantity: r.int("quantity")?,
        status: r.text("status")?,
        reason: r.opt_text("reason")?,
    })
}

fn fraud_row(r: &impl RowLike) -> Result<FraudView> {
    Ok(FraudView { score: r.int("score")?, decision: r.text("decision")?, reasons: r.opt_json("reasons")? })
}

fn event_row(r: &impl RowLike) -> Result<OrderEventView> {
    Ok(OrderEventView {
        event_id: r.text("event_id")?,
        event_type: r.text("event_type")?,
        occurred_at: r.int("occurred_at")?,
        topic: r.text("topic")?,
        payload: r.opt_json("payload")?.unwrap_or(Value::Null),
    })
}

fn stock_row(r: &impl RowLike) -> Result<WarehouseStockView> {
    Ok(WarehouseStockView {
        warehouse_id: r.text("warehouse_id")?,
        on_hand: r.int("on_hand")?,
        reserved: r.int("reserved")?,
        available: r.int("available")?,
        cause: r.text("cause")?,
        updated_at: r.int("updated_at")?,
    })
}

fn product_row(r: &impl RowLike) -> Result<ProductView> {
    Ok(ProductView {
        product_id: r.text("product_id")?,
        vendor_id: r.text("vendor_id")?,
        sku: r.opt_text("sku")?,
        title: r.opt_text("title")?,
        description: r.opt_text("description")?,
        translations: r.opt_json("translations")?,
        category: r.opt_text("category")?,
        brand: r.opt_text("brand")?,
        status: r.opt_text("status")?.unwrap_or_else(|| "active".into()),
        price_minor: r.opt_int("price_minor")?,
        currency: r.opt_text("currency")?,
        rating_avg: r.opt_float("rating_avg")?,
        rating_count: r.int("rating_count")?,
    })
}

fn vendor_row(r: &impl RowLike) -> Result<VendorView> {
    Ok(VendorView {
        vendor_id: r.text("vendor_id")?,
        name: r.text("name")?,
        country: r.text("country")?,
        plan: r.text("plan")?,
        payout_currency: r.text("payout_currency")?,
        onboarded_at: r.int("onboarded_at")?,
        products: r.int("products")?,
        rating_avg: r.opt_float("rating_avg")?,
        rating_count: r.int("rating_count")?,
    })
}

fn customer_row(r: &impl RowLike) -> Result<CustomerView> {
    Ok(CustomerView {
        customer_id: r.text("customer_id")?,
        email: r.opt_text("email")?,
        name: r.opt_text("name")?,
        country: r.opt_text("country")?,
        registered_at: r.opt_int("registered_at")?,
        erased: r.opt_int("erased_at")?.is_some(),
    })
}

fn count_row(r: &impl RowLike) -> Result<(String, i64)> {
    Ok((r.text("t")?, r.int("n")?))
}

/// The order with everything about it.
pub async fn order(db: &Db, id: &str) -> Result<Option<OrderView>> {
    let Some(mut o) = fetch_all!(
        db,
        "SELECT order_id, customer_id, currency, subtotal_minor, shipping_minor, tax_minor, discount_minor, \
         CAST(total_minor AS BIGINT) AS total_minor, CAST(units AS BIGINT) AS units, ship_country, placed_at, status, \
         payment_status, fulfillment_status, status_reason, status_at FROM orders WHERE order_id = $1",
        [id],
        order_row
    )?
    .into_iter()
    .next() else {
        return Ok(None);
    };
    o.items = fetch_all!(
        db,
        "SELECT CAST(line_no AS BIGINT) AS line_no, sku, product_id, vendor_id, CAST(quantity AS BIGINT) AS quantity, unit_price_minor \
         FROM order_items WHERE order_id = $1 ORDER BY line_no",
        [id],
        item_row
    )?;
    o.payments = fetch_all!(
        db,
        "SELECT payment_id, status, currency, authorized_minor, captured_minor, failure_code, status_at \
         FROM payments WHERE order_id = $1 ORDER BY status_at, payment_id",
        [id],
        payment_row
    )?;
    o.refunds = fetch_all!(
        db,
        "SELECT refund_id, amount_minor, currency, reason, issued_at FROM refunds WHERE order_id = $1 ORDER BY issued_at, refund_id",
        [id],
        refund_row
    )?;
    o.shipments = fetch_all!(
        db,
        "SELECT shipment_id, warehouse_id, carrier, tracking_number, lines, created_at, shipped_at, delivered_at \
         FROM shipments WHERE order_id = $1 ORDER BY shipment_id",
        [id],
        shipment_row
    )?;
    o.reservations = fetch_all!(
        db,
        "SELECT sku, warehouse_id, CAST(quantity AS BIGINT) AS quantity, status, reason FROM reservations \
         WHERE order_id = $1 ORDER BY sku, warehouse_id",
        [id],
        reservation_row
    )?;
    o.fraud = fetch_all!(
        db,
        "SELECT CAST(score AS BIGINT) AS score, decision, reasons FROM fraud_scores WHERE order_id = $1",
        [id],
        fraud_row
    )?
    .into_iter()
    .next();
    Ok(Some(o))
}

/// Every event about the order, oldest first. Events of one millisecond: what happened outside (an input topic's) before what the
/// processors concluded from it, then by topic and offset.
pub async fn order_history(db: &Db, id: &str) -> Result<Vec<OrderEventView>> {
    let mut events = fetch_all!(
        db,
        "SELECT event_id, event_type, occurred_at, topic, payload FROM order_events WHERE order_id = $1 \
         ORDER BY occurred_at, topic, partition_no, offset_no",
        [id],
        event_row
    )?;
    let derived = |topic: &str| Topic::from_name(topic).is_none_or(|t| !t.is_input());
    events.sort_by_key(|e| (e.occurred_at, derived(&e.topic)));
    Ok(events)
}

/// The newest orders, of one customer or of all.
pub async fn recent_orders(db: &Db, customer: Option<&str>, limit: i64) -> Result<Vec<OrderView>> {
    match customer {
        Some(c) => fetch_all!(
            db,
            "SELECT order_id, customer_id, currency, subtotal_minor, shipping_minor, tax_minor, discount_minor, \
             CAST(total_minor AS BIGINT) AS total_minor, CAST(units AS BIGINT) AS units, ship_country, placed_at, status, \
             payment_status, fulfillment_status, status_reason, status_at FROM orders WHERE customer_id = $1 \
             ORDER BY placed_at DESC, order_id LIMIT $2",
            [c, limit],
            order_row
        ),
        None => fetch_all!(
            db,
            "SELECT order_id, customer_id, currency, subtotal_minor, shipping_minor, tax_minor, discount_minor, \
             CAST(total_minor AS BIGINT) AS total_minor, CAST(units AS BIGINT) AS units, ship_country, placed_at, status, \
             payment_status, fulfillment_status, status_reason, status_at FROM orders \
             ORDER BY placed_at DESC, order_id LIMIT $1",
            [limit],
            order_row
        ),
    }
}

/// The newest orders with lines of `vendor`, with those lines' units and value.
pub async fn vendor_orders(db: &Db, vendor: &str, limit: i64) -> Result<Vec<VendorOrderView>> {
    fetch_all!(
        db,
        "SELECT o.order_id AS order_id, o.placed_at AS placed_at, o.status AS status, o.payment_status AS payment_status, \
         o.fulfillment_status AS fulfillment_status, o.currency AS currency, CAST(SUM(i.quantity) AS BIGINT) AS units, \
         CAST(SUM(i.quantity * i.unit_price_minor) AS BIGINT) AS lines_minor \
         FROM order_items i JOIN orders o ON o.order_id = i.order_id WHERE i.vendor_id = $1 \
         GROUP BY o.order_id, o.placed_at, o.status, o.payment_status, o.fulfillment_status, o.currency \
         ORDER BY o.placed_at DESC, o.order_id LIMIT $2",
        [vendor, limit],
        vendor_order_row
    )
}

fn vendor_order_row(r: &impl RowLike) -> Result<VendorOrderView> {
    Ok(VendorOrderView {
        order_id: r.text("order_id")?,
        placed_at: r.opt_int("placed_at")?,
        status: r.text("status")?,
        payment_status: r.text("payment_status")?,
        fulfillment_status: r.text("fulfillment_status")?,
        currency: r.opt_text("currency")?,
        units: r.int("units")?,
        lines_minor: r.int("lines_minor")?,
    })
}

/// The skus of `vendor` with at most `max_available` units available in a warehouse, fewest
/// first (at most 50).
pub async fn vendor_low_stock(db: &Db, vendor: &str, max_available: i64) -> Result<Vec<LowStockView>> {
    fetch_all!(
        db,
        "SELECT s.sku AS sku, p.product_id AS product_id, p.title AS title, s.warehouse_id AS warehouse_id, \
         CAST(s.on_hand AS BIGINT) AS on_hand, CAST(s.reserved AS BIGINT) AS reserved, CAST(s.available AS BIGINT) AS available \
         FROM inventory s JOIN products p ON p.sku = s.sku WHERE p.vendor_id = $1 AND s.available <= $2 \
         ORDER BY s.available, s.sku, s.warehouse_id LIMIT 50",
        [vendor, max_available],
        low_stock_row
    )
}

fn low_stock_row(r: &impl RowLike) -> Result<LowStockView> {
    Ok(LowStockView {
        sku: r.text("sku")?,
        product_id: r.text("product_id")?,
        title: r.opt_text("title")?,
        warehouse_id: r.text("warehouse_id")?,
        on_hand: r.int("on_hand")?,
        reserved: r.int("reserved")?,
        available: r.int("available")?,
    })
}

/// Stock of a sku per warehouse, with totals; `None` if never seen.
pub async fn inventory(db: &Db, sku: &str) -> Result<Option<InventoryView>> {
    let warehouses = fetch_all!(
        db,
        "SELECT warehouse_id, CAST(on_hand AS BIGINT) AS on_hand, CAST(reserved AS BIGINT) AS reserved, \
         CAST(available AS BIGINT) AS available, cause, updated_at FROM inventory WHERE sku = $1 ORDER BY warehouse_id",
        [sku],
        stock_row
    )?;
    if warehouses.is_empty() {
        return Ok(None);
    }
    Ok(Some(InventoryView {
        sku: sku.to_string(),
        on_hand: warehouses.iter().map(|w| w.on_hand).sum(),
        reserved: warehouses.iter().map(|w| w.reserved).sum(),
        available: warehouses.iter().map(|w| w.available).sum(),
        warehouses,
    }))
}

/// A product.
pub async fn product(db: &Db, id: &str) -> Result<Option<ProductView>> {
    Ok(fetch_all!(
        db,
        "SELECT product_id, vendor_id, sku, title, description, translations, category, brand, status, price_minor, \
         currency, rating_avg, rating_count FROM products WHERE product_id = $1",
        [id],
        product_row
    )?
    .into_iter()
    .next())
}

/// The product sold under a sku (the lowest product id, should two claim it).
pub async fn product_by_sku(db: &Db, sku: &str) -> Result<Option<ProductView>> {
    Ok(fetch_all!(
        db,
        "SELECT product_id, vendor_id, sku, title, description, translations, category, brand, status, price_minor, \
         currency, rating_avg, rating_count FROM products WHERE sku = $1 ORDER BY product_id LIMIT 1",
        [sku],
        product_row
    )?
    .into_iter()
    .next())
}

/// A vendor with its product count and rating.
pub async fn vendor(db: &Db, id: &str) -> Result<Option<VendorView>> {
    Ok(fetch_all!(
        db,
        "SELECT v.vendor_id, v.name, v.country, v.plan, v.payout_currency, v.onboarded_at, \
         (SELECT COUNT(*) FROM products p WHERE p.vendor_id = v.vendor_id AND p.catalog_at >= 0) AS products, \
         (SELECT CAST(AVG(r.rating) AS DOUBLE PRECISION) FROM reviews r WHERE r.vendor_id = v.vendor_id) AS rating_avg, \
         (SELECT COUNT(*) FROM reviews r WHERE r.vendor_id = v.vendor_id) AS rating_count \
         FROM vendors v WHERE v.vendor_id = $1",
        [id],
        vendor_row
    )?
    .into_iter()
    .next())
}

/// The vendor's connected account (`acct_…`), once onboarding or Stripe reported one.
pub async fn vendor_account(db: &Db, vendor_id: &str) -> Result<Option<String>> {
    fn account(r: &impl RowLike) -> Result<Option<String>> {
        r.opt_text("stripe_account_id")
    }
    Ok(fetch_all!(db, "SELECT stripe_account_id FROM vendors WHERE vendor_id = $1", [vendor_id], account)?.into_iter().next().flatten())
}

/// The order a payment (a PaymentIntent id) belongs to, if the read model has seen it.
pub async fn order_of_payment(db: &Db, payment_id: &str) -> Result<Option<String>> {
    fn order_id(r: &impl RowLike) -> Result<String> {
        r.text("order_id")
    }
    Ok(fetch_all!(db, "SELECT order_id FROM payments WHERE payment_id = $1", [payment_id], order_id)?.into_iter().next())
}

/// A customer.
pub async fn customer(db: &Db, id: &str) -> Result<Option<CustomerView>> {
    Ok(fetch_all!(
        db,
        "SELECT customer_id, email, name, country, registered_at, erased_at FROM customers WHERE customer_id = $1",
        [id],
        customer_row
    )?
    .into_iter()
    .next())
}

/// Rows per table.
pub async fn counts(db: &Db) -> Result<BTreeMap<String, i64>> {
    Ok(fetch_all!(
        db,
        "SELECT 'vendors' AS t, COUNT(*) AS n FROM vendors UNION ALL SELECT 'products', COUNT(*) FROM products \
         UNION ALL SELECT 'reviews', COUNT(*) FROM reviews UNION ALL SELECT 'customers', COUNT(*) FROM customers \
         UNION ALL SELECT 'orders', COUNT(*) FROM orders UNION ALL SELECT 'order_items', COUNT(*) FROM order_items \
         UNION ALL SELECT 'order_events', COUNT(*) FROM order_events UNION ALL SELECT 'inventory', COUNT(*) FROM inventory \
         UNION ALL SELECT 'reservations', COUNT(*) FROM reservations UNION ALL SELECT 'payments', COUNT(*) FROM payments \
         UNION ALL SELECT 'refunds', COUNT(*) FROM refunds UNION ALL SELECT 'shipments', COUNT(*) FROM shipments \
         UNION ALL SELECT 'fraud_scores', COUNT(*) FROM fraud_scores",
        [],
        count_row
    )?
    .into_iter()
    .collect())
}
