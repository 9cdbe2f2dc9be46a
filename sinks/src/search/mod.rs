//! Product search: one document per product, kept current from catalogue, price, stock,
//! review, view and trending events; searched with typo tolerance, filters, facets, sorting,
//! pagination and highlights — on Elasticsearch, or on a tantivy index on disk.
//!
//! - [`config`] — `[sinks.search]`.
//! - [`doc`] — the document and how each event changes it (shared by both indexes).
//! - [`sink`] — read-modify-write of the documents a batch touches.
//! - [`elastic`], [`tantivy_index`] — the two indexes, behind [`ProductIndex`].
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
pub mod service;
pub mod sink;
pub mod tantivy_index;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;
use utoipa::ToSchema;

pub use config::{ElasticsearchConfig, SearchConfig};
pub use doc::ProductDoc;
pub use elastic::ElasticIndex;
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

/// The most CPU one search may take (both backends: Elasticsearch gets it as the request's
/// `timeout`; tantivy checks it before each segment, so a search stops within one segment's
/// work of it, with an error — the API answers 503 — rather than a partial, wrongly counted
/// answer).
pub const SEARCH_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);

/// How results are ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SortBy {
    /// Best match first (without text: by product id).
    #[default]
    Relevance,
    /// Cheapest first.
    PriceAsc,
    /// Most expensive first.
    PriceDesc,
    /// Best rated first (unrated last).
    Rating,
    /// Most popular first.
    Popularity,
}

/// A product search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct SearchQuery {
    /// Free text (typos tolerated); `None` matches every product.
    pub text: Option<String>,
    /// Category path or a prefix of one (`electronics` matches `electronics/audio/…`).
    pub category: Option<String>,
    /// Any of these brands.
    pub brands: Vec<String>,
    /// Only this vendor.
    pub vendor_id: Option<String>,
    /// Lowest price, base-currency minor units (inclusive).
    pub min_price_eur_minor: Option<i64>,
    /// Highest price, base-currency minor units (inclusive).
    pub max_price_eur_minor: Option<i64>,
    /// Lowest average rating.
    pub min_rating: Option<f64>,
    /// Only products with stock available.
    pub in_stock: bool,
    /// Order.
    pub sort: SortBy,
    /// Page, from 0.
    pub page: u32,
    /// Results per page (1–100).
    pub per_page: u32,
}

impl Default for SearchQuery {
    fn default() -> Self {
        SearchQuery {
            text: None,
            category: None,
            brands: Vec::new(),
            vendor_id: None,
            min_price_eur_minor: None,
            max_price_eur_minor: None,
            min_rating: None,
            in_stock: false,
            sort: SortBy::Relevance,
            page: 0,
            per_page: 20,
        }
    }
}

impl SearchQuery {
    /// A text search with defaults for the rest.
    pub fn text(t: &str) -> Self {
        SearchQuery { text: Some(t.to_string()), ..SearchQuery::default() }
    }

    /// The query's tokens: lowercase alphanumeric runs.
    pub fn tokens(&self) -> Vec<String> {
        tokens(self.text.as_deref().unwrap_or(""))
    }

    pub(crate) fn per_page(&self) -> usize {
        self.per_page.clamp(1, 100) as usize
    }

    /// The first hit of the page, with the page inside [`MAX_RESULT_WINDOW`] (the API
    /// refuses deeper pages; a direct caller past it gets the deepest page served, never a
    /// huge allocation or an Elasticsearch error).
    pub(crate) fn offset(&self) -> usize {
        (self.page as usize).saturating_mul(self.per_page()).min(MAX_RESULT_WINDOW - self.per_page())
    }
}

/// The deepest hit either backend serves (Elasticsearch's default `index.max_result_window`).
pub const MAX_RESULT_WINDOW: usize = 10_000;

/// Lowercase alphanumeric runs of `s` (the tokenizer both backends use for queries).
pub fn tokens(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty()).map(str::to_lowercase).collect()
}

/// Edits a query token of this many characters may be away from an indexed one
/// (Elasticsearch's `fuzziness: AUTO`).
pub fn fuzziness(token: &str) -> u8 {
    match token.chars().count() {
        0..=2 => 0,
        3..=5 => 1,
        _ => 2,
    }
}

/// Price buckets of the price facet, base-currency minor units: (key, from, to).
pub const PRICE_BUCKETS: [(&str, Option<i64>, Option<i64>); 5] = [
    ("<25", None, Some(2_500)),
    ("25-50", Some(2_500), Some(5_000)),
    ("50-100", Some(5_000), Some(10_000)),
    ("100-250", Some(10_000), Some(25_000)),
    ("250+", Some(25_000), None),
];

/// Rating buckets of the rating facet: (key, minimum rating).
pub const RATING_BUCKETS: [(&str, f64); 4] = [("4+", 4.0), ("3+", 3.0), ("2+", 2.0), ("1+", 1.0)];

/// One value of a facet and how many results have it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FacetCount {
    /// The value (or bucket key).
    pub value: String,
    /// Results with it.
    pub count: u64,
}

/// Facet counts over the filtered results.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Facets {
    /// By category path (top 50).
    pub categories: Vec<FacetCount>,
    /// By brand (top 50).
    pub brands: Vec<FacetCount>,
    /// By vendor (top 50).
    pub vendors: Vec<FacetCount>,
    /// By price bucket ([`PRICE_BUCKETS`]).
    pub price: Vec<FacetCount>,
    /// By minimum rating ([`RATING_BUCKETS`]; a product counts in every bucket it reaches).
    pub rating: Vec<FacetCount>,
    /// In stock: `true` / `false`.
    pub in_stock: Vec<FacetCount>,
}

/// A product found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Hit {
    /// Product.
    pub product_id: String,
    /// Relevance score (relevance order only).
    pub score: Option<f64>,
    /// Title.
    pub title: String,
    /// Brand.
    pub brand: String,
    /// Category path.
    pub category: String,
    /// Vendor.
    pub vendor_id: String,
    /// Price, minor units of `currency`.
    pub price_minor: Option<i64>,
    /// Currency of the price.
    pub currency: Option<String>,
    /// Price, base-currency minor units.
    pub price_eur_minor: Option<i64>,
    /// Average rating.
    pub rating: Option<f64>,
    /// Reviews.
    pub rating_count: i64,
    /// Stock available.
    pub in_stock: bool,
    /// Popularity.
    pub popularity: f64,
    /// Matching fragments with `<em>` around the matched words, by field (`title`,
    /// `description`).
    pub highlights: BTreeMap<String, Vec<String>>,
}

impl Hit {
    pub(crate) fn from_doc(d: &ProductDoc, score: Option<f64>, highlights: BTreeMap<String, Vec<String>>) -> Hit {
        Hit {
            product_id: d.product_id.clone(),
            score,
            title: d.title.clone(),
            brand: d.brand.clone(),
            category: d.category.clone(),
            vendor_id: d.vendor_id.clone(),
            price_minor: d.price_minor,
            currency: d.currency.clone(),
            price_eur_minor: d.price_eur_minor,
            rating: d.rating,
            rating_count: d.rating_count,
            in_stock: d.in_stock,
            popularity: d.popularity,
            highlights,
        }
    }
}

/// A page of results.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SearchResults {
    /// Products matching (all pages).
    pub total: u64,
    /// This page.
    pub hits: Vec<Hit>,
    /// Facet counts over all matching products.
    pub facets: Facets,
}

/// What the search sink and the API need from a product index; Elasticsearch and tantivy
/// implement it the same way.
#[allow(async_fn_in_trait)]
pub trait ProductIndex {
    /// The documents with these ids that exist.
    async fn get(&self, ids: &[String]) -> Result<BTreeMap<String, ProductDoc>>;
    /// Product ids of these skus, from the product documents visible to searches.
    async fn find_skus(&self, skus: &[String]) -> Result<BTreeMap<String, String>>;
    /// Writes whole documents (id → doc), each with its `version`: an older version never
    /// replaces a newer one. Durable when this returns.
    async fn put(&self, docs: &BTreeMap<String, ProductDoc>) -> Result<()>;
    /// Makes every write visible to searches.
    async fn refresh(&self) -> Result<()>;
    /// Runs a search.
    async fn search(&self, q: &SearchQuery) -> Result<SearchResults>;
}

/// Where the product documents live.
#[derive(Clone, Debug)]
pub enum Index {
    /// Elasticsearch (distributed mode).
    Elastic(ElasticIndex),
    /// tantivy (embedded twin).
    Tantivy(Arc<TantivyIndex>),
}

impl Index {
    /// `elasticsearch` or `tantivy`.
    pub fn backend(&self) -> &'static str {
        match self {
            Index::Elastic(_) => "elasticsearch",
            Index::Tantivy(_) => "tantivy",
        }
    }
}

impl ProductIndex for Index {
    async fn get(&self, ids: &[String]) -> Result<BTreeMap<String, ProductDoc>> {
        match self {
            Index::Elastic(e) => e.get(ids).await,
            Index::Tantivy(t) => t.get(ids).await,
        }
    }
    async fn find_skus(&self, skus: &[String]) -> Result<BTreeMap<String, String>> {
        match self {
            Index::Elastic(e) => e.find_skus(skus).await,
            Index::Tantivy(t) => t.find_skus(skus).await,
        }
    }
    async fn put(&self, docs: &BTreeMap<String, ProductDoc>) -> Result<()> {
        match self {
            Index::Elastic(e) => e.put(docs).await,
            Index::Tantivy(t) => t.put(docs).await,
        }
    }
    async fn refresh(&self) -> Result<()> {
        match self {
            Index::Elastic(e) => e.refresh().await,
            Index::Tantivy(t) => t.refresh().await,
        }
    }
    async fn search(&self, q: &SearchQuery) -> Result<SearchResults> {
        match self {
            Index::Elastic(e) => e.search(q).await,
            Index::Tantivy(t) => t.search(q).await,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_tokens_are_lowercase_alphanumeric_runs() {
        assert_eq!(tokens("Nordlicht PRO-Max, 2026!"), vec!["nordlicht", "pro", "max", "2026"]);
    }

    #[test]
    fn fuzziness_follows_elasticsearch_auto() {
        assert_eq!((fuzziness("ab"), fuzziness("abc"), fuzziness("abcde"), fuzziness("abcdef")), (0, 1, 1, 2));
    }
}
