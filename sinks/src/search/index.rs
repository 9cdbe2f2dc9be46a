//! [`ProductIndex`], what the sink and the API need from a product index, and [`Index`],
//! the one type over Elasticsearch and tantivy.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::doc::ProductDoc;
use super::elastic::ElasticIndex;
use super::query::{SearchQuery, SearchResults};
use super::tantivy_index::TantivyIndex;
use crate::Result;

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
