//! What a search asks and what it gets back, the same for both backends: [`SearchQuery`]
//! and how it is tokenized, [`SearchResults`] with their hits and facets, and the limits
//! both backends apply (the time budget, the deepest page, the facet buckets).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::doc::ProductDoc;

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
