//! The read side the API depends on: one small trait per kind of question, and the shapes
//! it answers with. Implementations: [`crate::views::LogViews`] (built by the API itself
//! from processor output topics) and, with the `sinks` feature, adapters over
//! storeflow-sinks' read model, search index and analytics (`crate::sinks_adapter`).

use std::sync::Arc;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use utoipa::ToSchema;

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The backend is not reachable or not ready (503).
    #[error("{0}")]
    Unavailable(String),
    /// The backend failed unexpectedly (500, detail logged only).
    #[error("{0}")]
    Internal(String),
}

impl From<ReadError> for crate::error::ApiError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Unavailable(m) => crate::error::ApiError::Unavailable(m),
            ReadError::Internal(m) => crate::error::ApiError::Internal(m),
        }
    }
}

/// Result of a read.
pub type ReadResult<T> = Result<T, ReadError>;

/// A boxed future of a read.
pub type ReadFuture<'a, T> = BoxFuture<'a, ReadResult<T>>;

// ------------------------------------------------------------------------------- orders

/// One order line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderLine {
    pub sku: String,
    pub product_id: String,
    pub vendor_id: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
}

/// Money of an order, minor units of `currency`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderTotals {
    pub subtotal_minor: i64,
    pub shipping_minor: i64,
    pub tax_minor: i64,
    pub discount_minor: i64,
    pub total_minor: i64,
}

/// Units held for an order in one warehouse.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderReservation {
    pub sku: String,
    pub warehouse_id: String,
    pub quantity: i64,
    /// held, released or committed.
    pub status: String,
}

/// One event of an order's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderEvent {
    pub event_id: String,
    pub event_type: String,
    /// Milliseconds since the epoch.
    pub occurred_at: i64,
    /// The event as JSON.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

/// An order: its three states, lines, totals, reservations and history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Order {
    pub order_id: String,
    pub customer_id: Option<String>,
    pub currency: Option<String>,
    /// placed, reserved, payment_authorized, confirmed, partially_shipped, shipped,
    /// delivered, return_requested, returned, refunded, cancelled, rejected_out_of_stock,
    /// payment_failed, fraud_hold.
    pub status: String,
    pub payment_status: String,
    pub fulfillment_status: String,
    pub status_reason: Option<String>,
    /// Milliseconds since the epoch.
    pub placed_at: Option<i64>,
    pub items: Vec<OrderLine>,
    pub totals: OrderTotals,
    pub reservations: Vec<OrderReservation>,
    pub history: Vec<OrderEvent>,
}

/// Orders by id.
pub trait OrdersRead: Send + Sync {
    /// The order, or `None` when no event of it has been seen.
    fn order<'a>(&'a self, order_id: &'a str) -> ReadFuture<'a, Option<Order>>;
}

// ---------------------------------------------------------------------------- inventory

/// Stock of a sku in one warehouse.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WarehouseStock {
    pub warehouse_id: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
}

/// Stock of a sku, in total and per warehouse.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Inventory {
    pub sku: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
    pub warehouses: Vec<WarehouseStock>,
}

/// Stock by sku.
pub trait InventoryRead: Send + Sync {
    /// The sku's stock, or `None` when it was never stocked.
    fn inventory<'a>(&'a self, sku: &'a str) -> ReadFuture<'a, Option<Inventory>>;
}

// ------------------------------------------------------------------------------ catalog

/// A product of the catalog.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Product {
    pub product_id: String,
    pub vendor_id: String,
    pub sku: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub category: Option<String>,
    pub brand: Option<String>,
    pub status: String,
    pub price_minor: Option<i64>,
    pub currency: Option<String>,
    pub rating_avg: Option<f64>,
    pub rating_count: i64,
}

/// Products by id and by sku.
pub trait CatalogRead: Send + Sync {
    /// The product with this id.
    fn product<'a>(&'a self, product_id: &'a str) -> ReadFuture<'a, Option<Product>>;
    /// The product sold under this sku (to price order lines).
    fn product_by_sku<'a>(&'a self, sku: &'a str) -> ReadFuture<'a, Option<Product>>;
}

// ------------------------------------------------------------------------------- search

/// How search results are ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SearchSort {
    #[default]
    Relevance,
    PriceAsc,
    PriceDesc,
    Rating,
    Popularity,
}

/// A product search (the query string of `GET /v1/search`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SearchQuery {
    pub text: Option<String>,
    pub category: Option<String>,
    pub brands: Vec<String>,
    pub vendor_id: Option<String>,
    pub price_min: Option<i64>,
    pub price_max: Option<i64>,
    pub min_rating: Option<f64>,
    pub in_stock: bool,
    pub sort: SearchSort,
    pub page: u32,
    pub size: u32,
}

/// One value of a facet and its count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FacetCount {
    pub value: String,
    pub count: u64,
}

/// Facet counts over all matching products.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Facets {
    pub categories: Vec<FacetCount>,
    pub brands: Vec<FacetCount>,
    pub vendors: Vec<FacetCount>,
    pub price: Vec<FacetCount>,
    pub rating: Vec<FacetCount>,
    pub in_stock: Vec<FacetCount>,
}

/// A product found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SearchHit {
    pub product_id: String,
    pub score: Option<f64>,
    pub title: String,
    pub brand: String,
    pub category: String,
    pub vendor_id: String,
    pub price_minor: Option<i64>,
    pub currency: Option<String>,
    pub rating: Option<f64>,
    pub in_stock: bool,
    /// Matching fragments by field, `<em>` around matched words.
    #[serde(default)]
    pub highlights: std::collections::BTreeMap<String, Vec<String>>,
}

/// A page of search results with facets.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SearchResults {
    pub total: u64,
    pub hits: Vec<SearchHit>,
    pub facets: Facets,
}

/// Product search.
pub trait SearchRead: Send + Sync {
    /// Runs a search.
    fn search<'a>(&'a self, q: &'a SearchQuery) -> ReadFuture<'a, SearchResults>;
}

// ---------------------------------------------------------------------- recommendations

/// A recommended product and its score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScoredProduct {
    pub product_id: String,
    pub score: f64,
}

/// Which list: `similar`/`bought_together` of a product, `trending` in a category (or
/// everywhere), `for_session` of a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecoList {
    Similar(String),
    BoughtTogether(String),
    Trending(Option<String>),
    ForSession(String),
}

/// Recommendations.
pub trait RecommendationsRead: Send + Sync {
    /// Up to `limit` products of the list, best first, without products out of stock.
    fn recommendations<'a>(&'a self, list: &'a RecoList, limit: usize) -> ReadFuture<'a, Vec<ScoredProduct>>;
}

// -------------------------------------------------------------------------------- sales

/// minute, hour or day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    #[default]
    Minute,
    Hour,
    Day,
}

impl Granularity {
    /// Bucket width in milliseconds.
    pub fn millis(self) -> i64 {
        match self {
            Granularity::Minute => 60_000,
            Granularity::Hour => 3_600_000,
            Granularity::Day => 86_400_000,
        }
    }
}

/// A vendor's sales in one bucket and one currency.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SalesBucket {
    /// Start of the bucket, milliseconds since the epoch.
    pub start: i64,
    pub currency: String,
    pub orders: i64,
    pub units: i64,
    pub gmv_minor: i64,
    pub refunds_minor: i64,
    pub commission_minor: i64,
    pub net_payout_minor: i64,
    pub base_currency: String,
    pub gmv_base_minor: i64,
    pub net_payout_base_minor: i64,
}

/// Vendors' real-time sales (from `VendorSalesMinute`).
pub trait SalesRead: Send + Sync {
    /// Buckets of `granularity` in `[from, to)`, oldest first.
    fn sales<'a>(&'a self, vendor_id: &'a str, from: i64, to: i64, granularity: Granularity) -> ReadFuture<'a, Vec<SalesBucket>>;
    /// Every new minute figure of every vendor, as it arrives (the SSE stream filters).
    fn subscribe(&self) -> broadcast::Receiver<(String, SalesBucket)>;
}

// ---------------------------------------------------------------------------- analytics

/// A product's sales in a window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TopProduct {
    pub product_id: String,
    pub title: Option<String>,
    pub category: Option<String>,
    pub units: i64,
    pub gmv_eur_minor: i64,
}

/// A category's sales in a window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TopCategory {
    pub category: String,
    pub units: i64,
    pub gmv_eur_minor: i64,
}

/// The sales dashboard.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Dashboard {
    /// 1h, 24h, 7d or 30d.
    pub range: String,
    pub from: i64,
    pub to: i64,
    pub base_currency: String,
    pub gmv_eur_minor: i64,
    pub orders: i64,
    pub units: i64,
    pub aov_eur_minor: i64,
    pub top_products: Vec<TopProduct>,
    pub top_categories: Vec<TopCategory>,
    pub conversion_rate: f64,
    pub new_customers: i64,
    pub returned_orders: i64,
    pub return_rate: f64,
}

/// One vendor's performance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VendorPerformance {
    pub vendor_id: String,
    pub from: i64,
    pub to: i64,
    pub gmv_eur_minor: i64,
    pub orders: i64,
    pub units: i64,
    pub aov_eur_minor: i64,
    pub refunds_eur_minor: i64,
    pub rating_avg: Option<f64>,
    pub reviews: i64,
    pub top_products: Vec<TopProduct>,
}

/// 1h, 24h, 7d or 30d.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum Range {
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "24h")]
    Day,
    #[serde(rename = "7d")]
    Week,
    #[serde(rename = "30d")]
    Month,
}

impl Range {
    /// As written in the query string.
    pub fn as_str(self) -> &'static str {
        match self {
            Range::Hour => "1h",
            Range::Day => "24h",
            Range::Week => "7d",
            Range::Month => "30d",
        }
    }

    /// Length in milliseconds.
    pub fn millis(self) -> i64 {
        match self {
            Range::Hour => 3_600_000,
            Range::Day => 86_400_000,
            Range::Week => 7 * 86_400_000,
            Range::Month => 30 * 86_400_000,
        }
    }
}

/// Analytics questions.
pub trait AnalyticsRead: Send + Sync {
    /// The marketplace's dashboard over `range` up to now.
    fn dashboard(&self, range: Range) -> ReadFuture<'_, Dashboard>;
    /// One vendor's performance over `range` up to now.
    fn vendor_performance<'a>(&'a self, vendor_id: &'a str, range: Range) -> ReadFuture<'a, VendorPerformance>;
}

/// Whether a backend is reachable (for `/readyz`).
pub trait Ready: Send + Sync {
    /// `Ok` when it answers; the error says what is wrong.
    fn ready(&self) -> ReadFuture<'_, ()>;
}

/// Readiness of worker threads (processors, sinks): not ready while one has ended, naming
/// it. A processor or sink that stops is noticed here instead of the API serving stale reads
/// as if all were well.
pub struct ThreadsReady(pub Vec<(String, Arc<dyn Fn() -> bool + Send + Sync>)>);

impl Ready for ThreadsReady {
    fn ready(&self) -> ReadFuture<'_, ()> {
        let down: Vec<&str> = self.0.iter().filter(|(_, alive)| !alive()).map(|(n, _)| n.as_str()).collect();
        let r = if down.is_empty() { Ok(()) } else { Err(ReadError::Unavailable(format!("stopped: {}", down.join(", ")))) };
        Box::pin(async move { r })
    }
}

/// Everything the API reads from. Search and analytics are optional: without them those
/// endpoints answer 503.
#[derive(Clone)]
pub struct Reads {
    pub orders: Arc<dyn OrdersRead>,
    pub inventory: Arc<dyn InventoryRead>,
    pub catalog: Arc<dyn CatalogRead>,
    pub recommendations: Arc<dyn RecommendationsRead>,
    pub sales: Arc<dyn SalesRead>,
    pub search: Option<Arc<dyn SearchRead>>,
    pub analytics: Option<Arc<dyn AnalyticsRead>>,
    /// Checked by `/readyz`, with a name each.
    pub readiness: Vec<(&'static str, Arc<dyn Ready>)>,
}

impl std::fmt::Debug for Reads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reads")
            .field("search", &self.search.is_some())
            .field("analytics", &self.analytics.is_some())
            .finish_non_exhaustive()
    }
}
