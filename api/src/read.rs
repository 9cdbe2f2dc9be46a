//! Where the API reads from: the sinks' query handles — orders, stock and products from the
//! read model (Postgres, or its SQLite twin), search from Elasticsearch (or tantivy), the
//! dashboard and vendor performance from ClickHouse (or Parquet + DataFusion) — and
//! [`crate::live::Live`] for what no sink stores. The API answers with the sinks' own read
//! types, re-exported here.

use std::sync::Arc;

use futures::FutureExt;
use storeflow_sinks::{Analytics, ReadModel, Registered, Search, SinkError};

use crate::error::ApiError;
use crate::live::Live;
pub use crate::ready::{ReadError, ReadFuture, ReadResult, Ready, ThreadsReady};

pub use storeflow_sinks::analytics::{CustomerInsight, Dashboard, DashboardRange, FraudBoard, Funnel, InventoryHealth, TopCategory, TopProduct, VendorPerformance};
pub use storeflow_sinks::read_model::{
    FraudView, InventoryView, LowStockView, OrderDetail, OrderEventView, OrderItemView, OrderView, PaymentView, ProductView, RefundView,
    ReservationView, ShipmentView, VendorOrderView, WarehouseStockView,
};
pub use storeflow_sinks::search::{FacetCount, Facets, Hit, SearchQuery, SearchResults, SortBy};

/// A sink's error while doing `what`: unavailable (503) for a store that is stopped or does
/// not answer (the caller may retry), internal (500) for anything else.
fn read_error(what: &str, e: SinkError) -> ReadError {
    match e {
        SinkError::Stopped | SinkError::Log(_) => ReadError::Unavailable(format!("{what}: {e}")),
        other => ReadError::Internal(format!("{what}: {other}")),
    }
}

/// [`read_error`] as the handlers' error.
pub fn sink_error(what: &str) -> impl FnOnce(SinkError) -> ApiError + '_ {
    move |e| read_error(what, e).into()
}

struct ReadModelReady(ReadModel);

impl Ready for ReadModelReady {
    fn ready(&self) -> ReadFuture<'_, ()> {
        async move { self.0.order("readyz-probe").await.map(|_| ()).map_err(|e| ReadError::Unavailable(format!("read model: {e}"))) }
            .boxed()
    }
}

/// Product search: the search sink's [`Search`] handle. A trait so that a test can see
/// exactly what a request asked the index (and that a refused one never reached it).
pub trait SearchIndex: Send + Sync {
    /// Runs a search.
    fn search<'a>(&'a self, q: &'a SearchQuery) -> ReadFuture<'a, SearchResults>;
}

impl SearchIndex for Search {
    fn search<'a>(&'a self, q: &'a SearchQuery) -> ReadFuture<'a, SearchResults> {
        async move { Search::search(self, q).await.map_err(|e| read_error("searching", e)) }.boxed()
    }
}

struct SearchReady(Arc<dyn SearchIndex>);

impl Ready for SearchReady {
    fn ready(&self) -> ReadFuture<'_, ()> {
        async move {
            let q = SearchQuery { per_page: 1, ..Default::default() };
            self.0.search(&q).await.map(|_| ()).map_err(|e| ReadError::Unavailable(format!("search: {e}")))
        }
        .boxed()
    }
}

/// Everything the API reads from. A sink that is disabled (`enabled = false` in
/// `[sinks.<name>]`) leaves its endpoints answering 503 naming it.
#[derive(Clone)]
pub struct Reads {
    pub read_model: Option<ReadModel>,
    pub search: Option<Arc<dyn SearchIndex>>,
    pub analytics: Option<Analytics>,
    pub live: Arc<Live>,
    /// Checked by `/readyz`, with a name each.
    pub readiness: Vec<(&'static str, Arc<dyn Ready>)>,
}

impl std::fmt::Debug for Reads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reads")
            .field("read_model", &self.read_model.is_some())
            .field("search", &self.search.is_some())
            .field("analytics", &self.analytics.is_some())
            .finish_non_exhaustive()
    }
}

impl Reads {
    /// Reads from these sinks' handles (`None`: that sink is disabled) and `live`; `/readyz`
    /// checks each of them.
    pub fn new(read_model: Option<ReadModel>, search: Option<Search>, analytics: Option<Analytics>, live: Arc<Live>) -> Reads {
        let mut readiness: Vec<(&'static str, Arc<dyn Ready>)> = vec![("live", live.clone())];
        if let Some(rm) = &read_model {
            readiness.push(("read_model", Arc::new(ReadModelReady(rm.clone()))));
        }
        let search = search.map(|s| Arc::new(s) as Arc<dyn SearchIndex>);
        if let Some(s) = &search {
            readiness.push(("search", Arc::new(SearchReady(s.clone()))));
        }
        Reads { read_model, search, analytics, live, readiness }
    }

    /// Reads from every sink `sinks` runs, and `live`.
    pub fn from_sinks(sinks: &storeflow_sinks::Sinks, live: Arc<Live>) -> Reads {
        Reads::new(sinks.read_model(), sinks.search(), sinks.analytics(), live)
    }

    /// The read model, or 503 when its sink is disabled.
    pub fn read_model(&self) -> Result<&ReadModel, ApiError> {
        self.read_model.as_ref().ok_or_else(|| disabled(<storeflow_sinks::ReadModelSink as Registered>::NAME))
    }

    /// The product index, or 503 when its sink is disabled.
    pub fn search(&self) -> Result<&dyn SearchIndex, ApiError> {
        self.search.as_deref().ok_or_else(|| disabled(<storeflow_sinks::SearchSink as Registered>::NAME))
    }

    /// Analytics, or 503 when its sink is disabled.
    pub fn analytics(&self) -> Result<&Analytics, ApiError> {
        self.analytics.as_ref().ok_or_else(|| disabled(<storeflow_sinks::AnalyticsSink as Registered>::NAME))
    }
}

fn disabled(sink: &str) -> ApiError {
    ApiError::Unavailable(format!("the {sink} sink is disabled ([sinks.{sink}] enabled = false), so this is not served"))
}
