//! The read model: the operational tables the API reads (orders with their states, items
//! and history; inventory per warehouse; products, vendors, customers; reservations,
//! payments, shipments, fraud scores).
//!
//! - [`config`] — `[sinks.read_model]`.
//! - [`sink`] — events → upserts, one transaction per batch.
//! - [`service`] — the retry-or-give-up decision.
//! - [`dialect`] — Postgres and SQLite differences, in one place.
//! - [`queries`] — the reads, as [`ReadModel`] serves them.

pub mod config;
pub mod dialect;
pub mod queries;
pub mod service;
pub mod sink;

use std::collections::BTreeMap;

use tokio::runtime::Handle;

pub use config::ReadModelConfig;
pub use dialect::Db;
pub use queries::{
    CustomerView, FraudView, InventoryView, LowStockView, OrderDetail, OrderEventView, OrderItemView, OrderView, PaymentView, ProductView,
    RefundView, ReservationView, ShipmentView, VendorOrderView, VendorView, WarehouseStockView,
};
pub use sink::ReadModelSink;

use crate::registry::{Registered, SinkContext};
use crate::{Result, SinkError};

impl Registered for ReadModelSink {
    const NAME: &'static str = "read_model";
    type Config = ReadModelConfig;
    type Handle = ReadModel;

    async fn open(config: &ReadModelConfig, cx: &SinkContext) -> Result<Self> {
        ReadModelSink::open(config, &cx.data_dir).await
    }

    fn handle(&self, cx: &SinkContext) -> ReadModel {
        ReadModel::new(self.db().clone(), cx.rt.clone())
    }
}

/// Async reads of the read model, for the API. Cheap to clone, `Send + Sync`; the queries
/// run on the sinks' own runtime, so any async context (axum on tokio) can await them.
#[derive(Clone, Debug)]
pub struct ReadModel {
    db: Db,
    rt: Handle,
}

impl ReadModel {
    /// A handle on `db`, running queries on `rt`.
    pub fn new(db: Db, rt: Handle) -> Self {
        ReadModel { db, rt }
    }

    /// `postgres` or `sqlite`.
    pub fn backend(&self) -> &'static str {
        self.db.backend()
    }

    /// The database, for tools and tests.
    pub fn db(&self) -> &Db {
        &self.db
    }

    async fn run<T, F>(&self, f: impl FnOnce(Db) -> F) -> Result<T>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        self.rt.spawn(f(self.db.clone())).await.map_err(|_| SinkError::Stopped)?
    }

    /// An order with its items, states, totals, payments, refunds, shipments, reservations
    /// and fraud score; `None` if unknown.
    pub async fn order(&self, order_id: &str) -> Result<Option<OrderView>> {
        let id = order_id.to_string();
        self.run(move |db| async move { queries::order(&db, &id).await }).await
    }

    /// An order with every event about it, oldest first; `None` if unknown.
    pub async fn order_detail(&self, order_id: &str) -> Result<Option<OrderDetail>> {
        let Some(order) = self.order(order_id).await? else { return Ok(None) };
        let history = self.order_history(order_id).await?;
        Ok(Some(OrderDetail { order, history }))
    }

    /// Every event about an order, oldest first.
    pub async fn order_history(&self, order_id: &str) -> Result<Vec<OrderEventView>> {
        let id = order_id.to_string();
        self.run(move |db| async move { queries::order_history(&db, &id).await }).await
    }

    /// The newest orders (of one customer, or of all), without their details.
    pub async fn recent_orders(&self, customer_id: Option<&str>, limit: u32) -> Result<Vec<OrderView>> {
        let c = customer_id.map(str::to_string);
        self.run(move |db| async move { queries::recent_orders(&db, c.as_deref(), i64::from(limit)).await }).await
    }

    /// The newest orders with lines of `vendor_id`, with those lines' units and value.
    pub async fn vendor_orders(&self, vendor_id: &str, limit: u32) -> Result<Vec<VendorOrderView>> {
        let v = vendor_id.to_string();
        self.run(move |db| async move { queries::vendor_orders(&db, &v, i64::from(limit)).await }).await
    }

    /// The skus of `vendor_id` with at most `max_available` units available in a warehouse.
    pub async fn vendor_low_stock(&self, vendor_id: &str, max_available: i64) -> Result<Vec<LowStockView>> {
        let v = vendor_id.to_string();
        self.run(move |db| async move { queries::vendor_low_stock(&db, &v, max_available).await }).await
    }

    /// A sku's stock per warehouse and in total; `None` if never seen.
    pub async fn inventory(&self, sku: &str) -> Result<Option<InventoryView>> {
        let sku = sku.to_string();
        self.run(move |db| async move { queries::inventory(&db, &sku).await }).await
    }

    /// A product.
    pub async fn product(&self, product_id: &str) -> Result<Option<ProductView>> {
        let id = product_id.to_string();
        self.run(move |db| async move { queries::product(&db, &id).await }).await
    }

    /// The product sold under a sku (to price an order's lines).
    pub async fn product_by_sku(&self, sku: &str) -> Result<Option<ProductView>> {
        let sku = sku.to_string();
        self.run(move |db| async move { queries::product_by_sku(&db, &sku).await }).await
    }

    /// A vendor with its product count and rating.
    pub async fn vendor(&self, vendor_id: &str) -> Result<Option<VendorView>> {
        let id = vendor_id.to_string();
        self.run(move |db| async move { queries::vendor(&db, &id).await }).await
    }

    /// The vendor's connected account, once known.
    pub async fn vendor_account(&self, vendor_id: &str) -> Result<Option<String>> {
        let id = vendor_id.to_string();
        self.run(move |db| async move { queries::vendor_account(&db, &id).await }).await
    }

    /// The order a payment (a PaymentIntent id) belongs to, if seen.
    pub async fn order_of_payment(&self, payment_id: &str) -> Result<Option<String>> {
        let id = payment_id.to_string();
        self.run(move |db| async move { queries::order_of_payment(&db, &id).await }).await
    }

    /// A customer (PII gone once erased).
    pub async fn customer(&self, customer_id: &str) -> Result<Option<CustomerView>> {
        let id = customer_id.to_string();
        self.run(move |db| async move { queries::customer(&db, &id).await }).await
    }

    /// Rows per table.
    pub async fn counts(&self) -> Result<BTreeMap<String, i64>> {
        self.run(move |db| async move { queries::counts(&db).await }).await
    }
}
