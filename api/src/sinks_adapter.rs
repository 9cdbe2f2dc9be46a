//! Adapters from the API's read traits to storeflow-sinks' query handles (feature
//! `sinks`): orders, stock and products from the read model (Postgres, or its SQLite
//! twin), search from Elasticsearch (or tantivy), the dashboard and vendor performance from
//! ClickHouse (or Parquet + DataFusion).
//!
//! [`with_sinks`] swaps them into the [`Reads`] built from [`crate::LogViews`]; pricing by
//! sku, recommendations and vendor sales (with their SSE stream) stay on the views, which
//! are their natural source (processor outputs).

use std::sync::Arc;

use futures::FutureExt;
use storeflow_sinks::analytics::DashboardRange;
use storeflow_sinks::{Analytics, ReadModel, Search, SinkError};

use crate::read::*;

fn err(what: &str) -> impl FnOnce(SinkError) -> ReadError + '_ {
    move |e| match e {
        // Stopped, or a store that does not answer: the caller may retry (503).
        SinkError::Stopped | SinkError::Log(_) => ReadError::Unavailable(format!("{what}: {e}")),
        other => ReadError::Internal(format!("{what}: {other}")),
    }
}

/// Converts between two serde shapes with the same field names (extra fields dropped).
fn reshape<T: serde::de::DeserializeOwned>(v: impl serde::Serialize, what: &str) -> ReadResult<T> {
    serde_json::to_value(v)
        .and_then(serde_json::from_value)
        .map_err(|e| ReadError::Internal(format!("{what}: the sinks' answer does not fit the API's shape: {e}")))
}

impl OrdersRead for ReadModel {
    fn order<'a>(&'a self, order_id: &'a str) -> ReadFuture<'a, Option<Order>> {
        async move {
            let Some(o) = ReadModel::order(self, order_id).await.map_err(err("reading an order"))? else {
                return Ok(None);
            };
            let history = self.order_history(order_id).await.map_err(err("reading an order's history"))?;
            Ok(Some(Order {
                order_id: o.order_id,
                customer_id: o.customer_id,
                currency: o.currency,
                status: o.status,
                payment_status: o.payment_status,
                fulfillment_status: o.fulfillment_status,
                status_reason: o.status_reason,
                placed_at: o.placed_at,
                items: o
                    .items
                    .into_iter()
                    .map(|i| OrderLine {
                        sku: i.sku,
                        product_id: i.product_id,
                        vendor_id: i.vendor_id,
                        quantity: i.quantity,
                        unit_price_minor: i.unit_price_minor,
                    })
                    .collect(),
                totals: OrderTotals {
                    subtotal_minor: o.subtotal_minor.unwrap_or(0),
                    shipping_minor: o.shipping_minor.unwrap_or(0),
                    tax_minor: o.tax_minor.unwrap_or(0),
                    discount_minor: o.discount_minor.unwrap_or(0),
                    total_minor: o.total_minor.unwrap_or(0),
                },
                reservations: o
                    .reservations
                    .into_iter()
                    .map(|r| OrderReservation { sku: r.sku, warehouse_id: r.warehouse_id, quantity: r.quantity, status: r.status })
                    .collect(),
                history: history
                    .into_iter()
                    .map(|e| OrderEvent { event_id: e.event_id, event_type: e.event_type, occurred_at: e.occurred_at, payload: e.payload })
                    .collect(),
            }))
        }
        .boxed()
    }
}

impl InventoryRead for ReadModel {
    fn inventory<'a>(&'a self, sku: &'a str) -> ReadFuture<'a, Option<Inventory>> {
        async move {
            let Some(i) = ReadModel::inventory(self, sku).await.map_err(err("reading stock"))? else { return Ok(None) };
            Ok(Some(Inventory {
                sku: i.sku,
                on_hand: i.on_hand,
                reserved: i.reserved,
                available: i.available,
                warehouses: i
                    .warehouses
                    .into_iter()
                    .map(|w| WarehouseStock { warehouse_id: w.warehouse_id, on_hand: w.on_hand, reserved: w.reserved, available: w.available })
                    .collect(),
            }))
        }
        .boxed()
    }
}

/// Products by id from the read model; by sku (to price orders) from the views.
struct Catalog {
    read_model: ReadModel,
    by_sku: Arc<dyn CatalogRead>,
}

impl CatalogRead for Catalog {
    fn product<'a>(&'a self, product_id: &'a str) -> ReadFuture<'a, Option<Product>> {
        async move {
            let p = self.read_model.product(product_id).await.map_err(err("reading a product"))?;
            p.map(|p| reshape(p, "a product")).transpose()
        }
        .boxed()
    }

    fn product_by_sku<'a>(&'a self, sku: &'a str) -> ReadFuture<'a, Option<Product>> {
        self.by_sku.product_by_sku(sku)
    }
}

impl SearchRead for Search {
    fn search<'a>(&'a self, q: &'a SearchQuery) -> ReadFuture<'a, SearchResults> {
        async move {
            let sq = storeflow_sinks::SearchQuery {
                text: q.text.clone(),
                category: q.category.clone(),
                brands: q.brands.clone(),
                vendor_id: q.vendor_id.clone(),
                min_price_eur_minor: q.price_min,
                max_price_eur_minor: q.price_max,
                min_rating: q.min_rating,
                in_stock: q.in_stock,
                sort: reshape(q.sort, "a sort order")?,
                page: q.page,
                per_page: q.size,
            };
            let r = Search::search(self, &sq).await.map_err(err("searching"))?;
            reshape(r, "search results")
        }
        .boxed()
    }
}

fn range(r: Range) -> DashboardRange {
    match r {
        Range::Hour => DashboardRange::Hour,
        Range::Day => DashboardRange::Day,
        Range::Week => DashboardRange::Week,
        Range::Month => DashboardRange::Month,
    }
}

impl AnalyticsRead for Analytics {
    fn dashboard(&self, r: Range) -> ReadFuture<'_, Dashboard> {
        async move {
            let d = Analytics::dashboard(self, range(r), None).await.map_err(err("computing the dashboard"))?;
            reshape(d, "the dashboard")
        }
        .boxed()
    }

    fn vendor_performance<'a>(&'a self, vendor_id: &'a str, r: Range) -> ReadFuture<'a, VendorPerformance> {
        async move {
            let v = Analytics::vendor_performance(self, vendor_id, range(r), None).await.map_err(err("computing vendor performance"))?;
            reshape(v, "vendor performance")
        }
        .boxed()
    }
}

struct ReadModelReady(ReadModel);

impl Ready for ReadModelReady {
    fn ready(&self) -> ReadFuture<'_, ()> {
        async move { self.0.order("readyz-probe").await.map(|_| ()).map_err(err("read model")) }.boxed()
    }
}

struct SearchReady(Search);

impl Ready for SearchReady {
    fn ready(&self) -> ReadFuture<'_, ()> {
        async move {
            let q = storeflow_sinks::SearchQuery { per_page: 1, ..Default::default() };
            self.0.search(&q).await.map(|_| ()).map_err(err("search"))
        }
        .boxed()
    }
}

/// `reads` (from [`crate::LogViews::reads`]) with the sinks' handles answering what they
/// hold: orders, stock and products from the read model, search, and analytics. A `None`
/// handle (sink disabled) leaves the views' answer, or 503 for search.
pub fn with_sinks(mut reads: Reads, read_model: Option<ReadModel>, search: Option<Search>, analytics: Option<Analytics>) -> Reads {
    if let Some(rm) = read_model {
        reads.catalog = Arc::new(Catalog { read_model: rm.clone(), by_sku: reads.catalog.clone() });
        reads.orders = Arc::new(rm.clone());
        reads.inventory = Arc::new(rm.clone());
        reads.readiness.push(("read_model", Arc::new(ReadModelReady(rm))));
    }
    if let Some(s) = search {
        reads.search = Some(Arc::new(s.clone()));
        reads.readiness.push(("search", Arc::new(SearchReady(s))));
    }
    if let Some(a) = analytics {
        reads.analytics = Some(Arc::new(a));
    }
    reads
}
