//! Product search: one document per product, kept current from catalogue, price, stock,
//! review, view and trending events; searched with typo tolerance, filters, facets, sorting,
//! pagination and highlights — on Elasticsearch, or on a tantivy index on disk.
//!
//! - [`config`] — `[sinks.search]`.
//! - [`doc`] — the document and how each event changes it (shared by both indexes).
//! - [`query`] — the query, its results and facets, the same for both indexes.
//! - [`sink`] — read-modify-write of the documents a batch touches.
//! - [`elastic`], [`tantivy_index`] — the two indexes, behind [`ProductIndex`] ([`index`]).
//! - [`service`] — the retry-or-give-up decision.
//!
//! **Query semantics (both backends).** The text is split into lowercase alphanumeric
//! tokens; every token must match one of title (boost 3), translated titles (2), brand (2),
//! description, translated descriptions or category, exactly or within an edit distance of
//! 0 (≤ 2 letters), 1 (3–5) or 2 (longer), a transposition counting as one edit
//! (Elasticsearch's `fuzziness: AUTO`). Filters: category (path prefix), brands, vendor,
//! base-currency price range (inclusive), minimum rating, in stock. Facets are counted over
//! the whole filtered result. Only listed, active products are found.

pub mod config;
pub mod doc;
pub mod elastic;
pub mod highlight;
pub mod index;
pub mod query;
pub mod service;
pub mod sink;
pub mod tantivy_index;

use tokio::runtime::Handle;

pub use config::{ElasticsearchConfig, SearchConfig};
pub use doc::ProductDoc;
pub use elastic::ElasticIndex;
pub use index::{Index, ProductIndex};
pub use query::{
    FacetCount, Facets, Hit, MAX_RESULT_WINDOW, PRICE_BUCKETS, RATING_BUCKETS, SEARCH_BUDGET, SearchQuery, SearchResults, SortBy, fuzziness, tokens,
};
pub use sink::SearchSink;
pub use tantivy_index::TantivyIndex;

use crate::registry::{Registered, SinkContext};
use crate::{Result, SinkError};

impl Registered for SearchSink {
    const NAME: &'static str = "search";
    type Config = SearchConfig;
    type Handle = Search;

    async fn open(config: &SearchConfig, cx: &SinkContext) -> Result<Self> {
        SearchSink::open(config, &cx.base_currency, &cx.data_dir).await
    }

    fn handle(&self, cx: &SinkContext) -> Search {
        Search::new(self.index().clone(), cx.rt.clone())
    }
}

/// Async product search for the API. Cheap to clone, `Send + Sync`; queries run on the
/// sinks' own runtime.
#[derive(Clone, Debug)]
pub struct Search {
    index: Index,
    rt: Handle,
}

impl Search {
    /// A handle on `index`, running queries on `rt`.
    pub fn new(index: Index, rt: Handle) -> Self {
        Search { index, rt }
    }

    /// `elasticsearch` or `tantivy`.
    pub fn backend(&self) -> &'static str {
        self.index.backend()
    }

    /// The index, for tools and tests.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Runs a search. On tantivy the search is CPU work: it runs on the runtime's blocking
    /// pool, so a heavy query holds neither the sinks' writers nor the runtime's I/O; on
    /// Elasticsearch it is an HTTP call on the runtime.
    pub async fn search(&self, q: &SearchQuery) -> Result<SearchResults> {
        let (index, q) = (self.index.clone(), q.clone());
        match index {
            Index::Tantivy(_) => self.rt.spawn_blocking(move || futures::executor::block_on(index.search(&q))).await.map_err(|_| SinkError::Stopped)?,
            Index::Elastic(_) => self.rt.spawn(async move { index.search(&q).await }).await.map_err(|_| SinkError::Stopped)?,
        }
    }

    /// One product's document.
    pub async fn product(&self, product_id: &str) -> Result<Option<ProductDoc>> {
        let (index, id) = (self.index.clone(), product_id.to_string());
        self.rt
            .spawn(async move { Ok(index.get(std::slice::from_ref(&id)).await?.remove(&id).filter(|d| d.kind == doc::PRODUCT)) })
            .await
            .map_err(|_| SinkError::Stopped)?
    }

    /// Number of product documents in the index (pending stock-only documents of skus
    /// whose product was not seen yet are not counted).
    pub async fn product_count(&self) -> Result<u64> {
        let index = self.index.clone();
        self.rt
            .spawn(async move {
                match &index {
                    Index::Elastic(e) => e.count(doc::PRODUCT).await,
                    Index::Tantivy(t) => t.count(doc::PRODUCT),
                }
            })
            .await
            .map_err(|_| SinkError::Stopped)?
    }

    /// Makes every write so far visible to searches (tests; the index refreshes by itself
    /// within a second).
    pub async fn refresh(&self) -> Result<()> {
        let index = self.index.clone();
        self.rt.spawn(async move { index.refresh().await }).await.map_err(|_| SinkError::Stopped)?
    }
}
