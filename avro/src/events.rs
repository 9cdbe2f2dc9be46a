//! Rust types of the event contract, one per `.avsc` file in `avro/schemas/`.
//!
//! Each struct mirrors its schema field for field; `tests::every_type_matches_its_schema`
//! proves it. Fields that have an Avro default carry `#[serde(default)]` so a record written
//! with an older schema (without the field) still decodes — that is how schema evolution
//! works on the typed fast path (see `docs/SCHEMA-EVOLUTION.md`).
//!
//! Money is always an `i64` amount in minor units with an ISO-4217 `currency` beside it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Timestamp;

// ---------------------------------------------------------------- storefront.sessions

/// A storefront page was shown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PageViewed {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub session_id: String,
    #[serde(default)]
    pub customer_id: Option<String>,
    pub page: String,
    #[serde(default)]
    pub referrer: Option<String>,
}

/// A product detail page was shown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProductViewed {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub session_id: String,
    #[serde(default)]
    pub customer_id: Option<String>,
    pub product_id: String,
    pub vendor_id: String,
    pub category: String,
}

/// A shopper searched the catalogue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchPerformed {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub session_id: String,
    #[serde(default)]
    pub customer_id: Option<String>,
    pub query: String,
    #[serde(default)]
    pub category: Option<String>,
    pub result_count: i32,
}

/// Units of a product went into a cart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CartItemAdded {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub session_id: String,
    #[serde(default)]
    pub customer_id: Option<String>,
    pub cart_id: String,
    pub product_id: String,
    pub sku: String,
    pub vendor_id: String,
    pub quantity: i32,
    pub unit_price_minor: i64,
    pub currency: String,
}

/// Units of a product left a cart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CartItemRemoved {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub session_id: String,
    #[serde(default)]
    pub customer_id: Option<String>,
    pub cart_id: String,
    pub product_id: String,
    pub sku: String,
    pub quantity: i32,
}

/// A shopper opened the checkout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckoutStarted {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub session_id: String,
    #[serde(default)]
    pub customer_id: Option<String>,
    pub cart_id: String,
    pub item_count: i32,
    pub subtotal_minor: i64,
    pub currency: String,
}

// ---------------------------------------------------------------- storefront.customers

/// A customer created an account.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CustomerRegistered {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub customer_id: String,
    pub email: String,
    pub name: String,
    pub country: String,
    #[serde(default)]
    pub marketing_opt_in: bool,
}

/// A customer asked to be forgotten.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CustomerErased {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub customer_id: String,
    #[serde(default)]
    pub reason: Option<String>,
}

// ---------------------------------------------------------------- storefront.orders

/// A postal address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub name: String,
    pub line1: String,
    #[serde(default)]
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    #[serde(default)]
    pub region: Option<String>,
    /// ISO-3166-1 alpha-2.
    pub country: String,
}

/// One order line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderItem {
    pub sku: String,
    pub product_id: String,
    pub vendor_id: String,
    pub quantity: i32,
    pub unit_price_minor: i64,
}

/// A customer placed an order; the saga starts here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub order_id: String,
    pub customer_id: String,
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub customer_since: Option<Timestamp>,
    pub items: Vec<OrderItem>,
    pub currency: String,
    pub shipping_address: Address,
    pub billing_address: Address,
    #[serde(default)]
    pub shipping_minor: i64,
    #[serde(default)]
    pub tax_minor: i64,
    #[serde(default)]
    pub discount_minor: i64,
    pub payment_method_token: String,
    pub client_ip: String,
}

/// The largest amount an order may carry, in minor units (10¹⁵: ten trillion euros' worth of
/// cents). Far above any real order, far below where sums and commission products overflow.
pub const MAX_ORDER_MINOR: i64 = 1_000_000_000_000_000;

impl OrderPlaced {
    /// Sum of the lines: quantity × unit price (saturating; [`OrderPlaced::check_amounts`]
    /// refuses orders where that matters).
    pub fn subtotal_minor(&self) -> i64 {
        self.items
            .iter()
            .map(|i| i64::from(i.quantity).saturating_mul(i.unit_price_minor))
            .fold(0i64, i64::saturating_add)
    }

    /// What the customer pays: subtotal + shipping + tax − discount (saturating).
    pub fn total_minor(&self) -> i64 {
        self.subtotal_minor().saturating_add(self.shipping_minor).saturating_add(self.tax_minor).saturating_sub(self.discount_minor)
    }

    /// Whether the amounts make an order that can be processed: at least one line, positive
    /// quantities, no negative price, shipping, tax or discount, and every line and the
    /// total within [`MAX_ORDER_MINOR`]. The error names the field.
    pub fn check_amounts(&self) -> Result<(), String> {
        if self.items.is_empty() {
            return Err("items: an order needs at least one line".into());
        }
        for (n, i) in self.items.iter().enumerate() {
            if i.quantity <= 0 {
                return Err(format!("items[{n}].quantity: {} is not a positive quantity", i.quantity));
            }
            if !(0..=MAX_ORDER_MINOR).contains(&i.unit_price_minor) {
                return Err(format!("items[{n}].unit_price_minor: {} is outside 0..={MAX_ORDER_MINOR}", i.unit_price_minor));
            }
        }
        for (field, v) in [("shipping_minor", self.shipping_minor), ("tax_minor", self.tax_minor), ("discount_minor", self.discount_minor)] {
            if !(0..=MAX_ORDER_MINOR).contains(&v) {
                return Err(format!("{field}: {v} is outside 0..={MAX_ORDER_MINOR}"));
            }
        }
        let subtotal = self.subtotal_minor();
        if subtotal > MAX_ORDER_MINOR {
            return Err(format!("items: the lines add up to more than {MAX_ORDER_MINOR} minor units"));
        }
        let total = self.total_minor();
        if !(0..=MAX_ORDER_MINOR).contains(&total) {
            return Err(format!("total: {total} minor units is outside 0..={MAX_ORDER_MINOR}"));
        }
        Ok(())
    }
}

/// Someone asked to cancel an order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderCancelRequested {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub order_id: String,
    pub requested_by: String,
    pub reason: String,
}

/// Units to return (or counted back in).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuQuantity {
    pub sku: String,
    pub quantity: i32,
}

/// A customer asked to return delivered units.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReturnRequested {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub order_id: String,
    pub return_id: String,
    pub items: Vec<SkuQuantity>,
    pub reason: String,
}

// ---------------------------------------------------------------- storefront.payments

/// The payment provider authorized the order's amount.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PaymentAuthorized {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub order_id: String,
    pub payment_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub provider: String,
    /// The card's brand as the provider reported it (never card data).
    #[serde(default)]
    pub card_brand: Option<String>,
    /// The card's last four digits as the provider reported them.
    #[serde(default)]
    pub card_last4: Option<String>,
}

/// The authorized amount was captured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PaymentCaptured {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub order_id: String,
    pub payment_id: String,
    pub amount_minor: i64,
    pub currency: String,
}

/// The payment was declined or errored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PaymentFailed {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub order_id: String,
    #[serde(default)]
    pub payment_id: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    pub failure_code: String,
    pub failure_message: String,
}

/// Part of a refund attributed to one sku and vendor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundLine {
    pub sku: String,
    pub vendor_id: String,
    pub quantity: i32,
    pub amount_minor: i64,
}

/// Money went back to the customer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RefundIssued {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub order_id: String,
    pub payment_id: String,
    pub refund_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub reason: String,
    #[serde(default)]
    pub lines: Vec<RefundLine>,
}

/// The payments worker moved a vendor's net share of a captured order to its connected
/// account.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VendorTransferCreated {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub order_id: String,
    pub payment_id: String,
    pub vendor_id: String,
    pub transfer_id: String,
    pub destination: String,
    pub gross_minor: i64,
    pub commission_minor: i64,
    pub amount_minor: i64,
    pub currency: String,
}

/// The payments worker took a refund's share back from a vendor's transfer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VendorTransferReversed {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub order_id: String,
    pub vendor_id: String,
    pub transfer_id: String,
    pub reversal_id: String,
    pub refund_id: String,
    pub refunded_minor: i64,
    pub commission_minor: i64,
    pub amount_minor: i64,
    pub currency: String,
}

/// The customer's bank disputed the order's charge; the amount is withdrawn from the
/// platform until the dispute closes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DisputeOpened {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub order_id: String,
    pub payment_id: String,
    pub dispute_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub reason: String,
    pub status: String,
}

/// A dispute on the order's charge ended: won, lost or warning_closed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DisputeClosed {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub order_id: String,
    pub payment_id: String,
    pub dispute_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub status: String,
}

// ---------------------------------------------------------------- storefront.fulfillment

/// A warehouse started preparing a shipment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShipmentCreated {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub order_id: String,
    pub shipment_id: String,
    pub warehouse_id: String,
    pub carrier: String,
    pub lines: Vec<SkuQuantity>,
}

/// A shipment left the warehouse.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShipmentShipped {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub order_id: String,
    pub shipment_id: String,
    pub warehouse_id: String,
    pub tracking_number: String,
    pub lines: Vec<SkuQuantity>,
}

/// A shipment reached the customer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShipmentDelivered {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub order_id: String,
    pub shipment_id: String,
}

/// Returned units arrived at a warehouse.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReturnReceived {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub order_id: String,
    pub return_id: String,
    pub warehouse_id: String,
    pub lines: Vec<SkuQuantity>,
    #[serde(default = "yes")]
    pub restockable: bool,
}

fn yes() -> bool {
    true
}

// ---------------------------------------------------------------- storefront.inventory

/// Units arrived at a warehouse.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StockReceived {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub sku: String,
    pub warehouse_id: String,
    pub quantity: i32,
    #[serde(default)]
    pub reference: Option<String>,
}

/// A stock count corrected on-hand units.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StockAdjusted {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub sku: String,
    pub warehouse_id: String,
    pub delta: i32,
    pub reason: String,
}

/// Units moved between two warehouses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StockTransferred {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub sku: String,
    pub from_warehouse_id: String,
    pub to_warehouse_id: String,
    pub quantity: i32,
}

// ---------------------------------------------------------------- storefront.catalog

/// Title and description in another language.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Translation {
    pub title: String,
    pub description: String,
}

/// A vendor listed a new product.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProductCreated {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub product_id: String,
    pub vendor_id: String,
    pub sku: String,
    pub title: String,
    pub description: String,
    /// Keyed by BCP-47 language tag.
    #[serde(default)]
    pub translations: BTreeMap<String, Translation>,
    pub category: String,
    pub brand: String,
    pub price_minor: i64,
    pub currency: String,
}

/// A vendor changed a product's details; `None` fields are unchanged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProductUpdated {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub product_id: String,
    pub vendor_id: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub brand: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
}

/// A product's price changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PriceChanged {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub product_id: String,
    pub vendor_id: String,
    pub sku: String,
    #[serde(default)]
    pub old_price_minor: Option<i64>,
    pub price_minor: i64,
    pub currency: String,
}

/// A vendor joined the marketplace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VendorOnboarded {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub vendor_id: String,
    pub name: String,
    pub country: String,
    /// basic, pro or enterprise.
    pub plan: String,
    pub payout_currency: String,
    #[serde(default)]
    pub stripe_account_id: Option<String>,
}

/// A vendor's Stripe Connect account was created or changed: what it may do now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VendorAccountUpdated {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub vendor_id: String,
    pub account_id: String,
    pub charges_enabled: bool,
    pub payouts_enabled: bool,
    pub details_submitted: bool,
}

/// A vendor's plan changed (its subscription started, changed, lapsed or ended); orders
/// pay the commission of the plan in force at their time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VendorPlanChanged {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub vendor_id: String,
    /// basic, pro or enterprise.
    pub plan: String,
    #[serde(default)]
    pub subscription_id: Option<String>,
    pub status: String,
    /// From when the plan is in force (the provider's time).
    pub effective_at: Timestamp,
}

/// A customer reviewed a product.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReviewSubmitted {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub review_id: String,
    pub product_id: String,
    pub vendor_id: String,
    pub customer_id: String,
    pub rating: i32,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
}

// ---------------------------------------------------------------- storefront.exchange_rates

/// A new currency exchange rate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExchangeRateUpdated {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub base_currency: String,
    pub quote_currency: String,
    /// Units of quote currency per unit of base currency, × 10⁹.
    pub rate_e9: i64,
}

// ---------------------------------------------------------------- inventory.reservations

/// Units reserved in one warehouse.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReservedLine {
    pub sku: String,
    pub warehouse_id: String,
    pub quantity: i32,
}

/// Stock was reserved for every line of an order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReservationMade {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub order_id: String,
    pub lines: Vec<ReservedLine>,
    pub expires_at: Timestamp,
}

/// A sku that lacked stock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingStock {
    pub sku: String,
    pub requested: i32,
    pub available: i32,
}

/// An order could not be reserved; nothing was held.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReservationRejected {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub order_id: String,
    pub missing: Vec<MissingStock>,
    pub reason: String,
}

/// A reservation was given back to available stock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReservationReleased {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub order_id: String,
    pub lines: Vec<ReservedLine>,
    pub reason: String,
}

/// A reservation became a sale.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReservationCommitted {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub order_id: String,
    pub lines: Vec<ReservedLine>,
}

/// Available stock of a sku fell below its threshold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LowStockAlert {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub sku: String,
    #[serde(default)]
    pub warehouse_id: Option<String>,
    pub available: i32,
    pub threshold: i32,
}

// ---------------------------------------------------------------- orders.lifecycle

/// The order saga moved an order to a new state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderStatusChanged {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub order_id: String,
    pub customer_id: String,
    #[serde(default)]
    pub previous_status: Option<String>,
    pub status: String,
    pub payment_status: String,
    pub fulfillment_status: String,
    pub reason: String,
    pub total_minor: i64,
    pub currency: String,
    /// Per-entity version from the processor's state (0 in records written before it existed).
    #[serde(default)]
    pub version: i64,
}

// ---------------------------------------------------------------- fraud.scores

/// One signal that contributed to a fraud score.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FraudReason {
    pub code: String,
    pub points: i32,
    pub detail: String,
}

/// The fraud processor scored an order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FraudScored {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub order_id: String,
    pub customer_id: String,
    pub score: i32,
    pub reasons: Vec<FraudReason>,
    /// allow, review or hold.
    pub decision: String,
}

// ---------------------------------------------------------------- recommendations.updates

/// A related product and its score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoredProduct {
    pub product_id: String,
    pub score: f64,
}

/// New related-product scores for a product, trending products of a category, or the
/// recent interest of a session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecommendationsUpdated {
    pub event_id: String,
    pub occurred_at: Timestamp,
    /// Empty for trending and for_session lists.
    pub product_id: String,
    /// similar, bought_together, trending or for_session.
    pub kind: String,
    pub items: Vec<ScoredProduct>,
    /// for_session: the session.
    #[serde(default)]
    pub session_id: Option<String>,
    /// trending: the category.
    #[serde(default)]
    pub category: Option<String>,
    /// Per-entity version from the processor's state (0 in records written before it existed).
    #[serde(default)]
    pub version: i64,
}

// ---------------------------------------------------------------- sales.vendor_minute

/// A vendor's sales in one minute and one currency, as of now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VendorSalesMinute {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub vendor_id: String,
    pub minute: Timestamp,
    pub currency: String,
    pub orders: i32,
    pub units: i32,
    pub gmv_minor: i64,
    pub refunds_minor: i64,
    pub commission_minor: i64,
    pub net_payout_minor: i64,
    pub base_currency: String,
    pub gmv_base_minor: i64,
    pub net_payout_base_minor: i64,
    /// Per-entity version from the processor's state (0 in records written before it existed).
    #[serde(default)]
    pub version: i64,
    /// `refunds_minor` in the base currency.
    #[serde(default)]
    pub refunds_base_minor: i64,
    /// Commission in the base currency (gmv_base − refunds_base = commission_base + net_payout_base).
    #[serde(default)]
    pub commission_base_minor: i64,
}

// ---------------------------------------------------------------- inventory.commands / replies (internal)

/// An instruction from the order saga to the inventory of one sku.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InventoryCommand {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub order_id: String,
    pub sku: String,
    /// reserve, release, commit, ship or restock.
    pub action: String,
    pub quantity: i32,
    #[serde(default)]
    pub warehouse_id: Option<String>,
    #[serde(default)]
    pub ship_country: Option<String>,
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    pub reason: String,
    #[serde(default = "yes")]
    pub restockable: bool,
}

/// Units available in one warehouse.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarehouseStock {
    pub warehouse_id: String,
    pub available: i32,
}

/// The inventory of one sku answering the order saga.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InventoryReply {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub order_id: String,
    pub sku: String,
    /// reserve, release or expire.
    pub action: String,
    pub ok: bool,
    pub requested: i32,
    pub lines: Vec<ReservedLine>,
    pub availability: Vec<WarehouseStock>,
    pub reason: String,
}

// ---------------------------------------------------------------- payments.commands (internal)

/// One vendor's share of an order: its lines (quantity × unit price).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorAmount {
    pub vendor_id: String,
    pub amount_minor: i64,
}

/// The order saga asks the payments worker to authorize the order's total.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PaymentRequested {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub order_id: String,
    pub customer_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub payment_method_token: String,
    pub vendors: Vec<VendorAmount>,
}

/// The order saga asks the payments worker to capture the authorized payment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaptureRequested {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub order_id: String,
    pub payment_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub placed_at: Timestamp,
    pub vendors: Vec<VendorAmount>,
    /// The shipment this capture pays for; `None`: the whole order.
    #[serde(default)]
    pub shipment_id: Option<String>,
    /// The order's last capture: the provider releases what stays uncaptured.
    #[serde(default = "yes")]
    pub final_capture: bool,
}

/// The order saga asks the payments worker to give money back (a refund once captured,
/// the authorization released before).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RefundRequested {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub order_id: String,
    pub payment_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub reason: String,
    #[serde(default)]
    pub lines: Vec<RefundLine>,
}

// ---------------------------------------------------------------- inventory.levels

/// The stock of one sku in one warehouse after a change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StockLevelChanged {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub sku: String,
    pub warehouse_id: String,
    pub on_hand: i32,
    pub reserved: i32,
    pub available: i32,
    /// received, adjusted, transferred, reserved, released, shipped, restocked.
    pub cause: String,
    /// Per-entity version from the processor's state (0 in records written before it existed).
    #[serde(default)]
    pub version: i64,
}

// ---------------------------------------------------------------- internal stages of fraud, recommendations, sales

/// An order's facts for the fraud processor's per-customer or per-IP stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FraudCheck {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub order_id: String,
    /// customer or ip.
    pub dimension: String,
    pub dimension_key: String,
    pub customer_id: String,
    pub client_ip: String,
    pub total_minor: i64,
    pub currency: String,
    pub payment_fingerprint: String,
    pub address_fingerprint: String,
}

/// What one stage of the fraud processor found about an order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FraudSignal {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub order_id: String,
    pub dimension: String,
    pub points: i32,
    pub reasons: Vec<FraudReason>,
}

/// A learning signal of the recommendations processor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecoSignal {
    pub event_id: String,
    pub occurred_at: Timestamp,
    /// seen, pair, popularity or trend.
    pub kind: String,
    pub product_id: String,
    #[serde(default)]
    pub other_product_id: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    /// view or purchase.
    pub source: String,
    pub weight: f64,
    pub count: f64,
}

/// A vendor's share of an order or a refund, re-keyed by vendor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VendorSaleRecorded {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub order_id: String,
    pub vendor_id: String,
    pub minute: Timestamp,
    pub currency: String,
    pub orders: i32,
    pub units: i32,
    pub gmv_minor: i64,
    pub refunds_minor: i64,
    /// `gmv_minor` in the base currency, line by line at the order's time (0 in records
    /// written before it existed).
    #[serde(default)]
    pub gmv_base_minor: i64,
    /// `refunds_minor` in the base currency, at the refund's time.
    #[serde(default)]
    pub refunds_base_minor: i64,
}

/// A vendor asked to start or change its premium plan; the payments worker starts or
/// changes the subscription (internal).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanChangeRequested {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub vendor_id: String,
    /// basic, pro or enterprise.
    pub plan: String,
}
