//! The product document and how each event changes it — shared by Elasticsearch and
//! tantivy, so both indexes hold the same documents.
//!
//! Neither index can update part of a document with a version check (`_bulk` `update`
//! refuses external versions; tantivy only replaces), so the sink reads the current
//! document, applies the batch's events in log order and writes the whole document back
//! with `version` = the newest event time it holds (`external_gte` on Elasticsearch).
//!
//! Two rules make that safe:
//!
//! - **Stale events never overwrite newer data.** Each group of fields has its own event
//!   time (`catalog_at`, `price_at`, per-warehouse `at`) and an event older than it changes
//!   nothing there — a late PriceChanged leaves the newer price in place.
//! - **Counting events count once.** The document remembers the last offset it applied per
//!   source partition (`src`); an event at or below it was applied already (a redelivered
//!   batch) and is skipped. Reviews and views can therefore be added up exactly.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use storeflow_avro::Event;

use crate::money::Rates;
use crate::runner::Item;

/// `kind` of a product document.
pub const PRODUCT: &str = "product";
/// `kind` of the stock of a sku whose product is not known yet.
pub const PENDING_STOCK: &str = "pending_stock";
/// `kind` of the exchange-rate document.
pub const RATES: &str = "rates";
/// Id of the exchange-rate document.
pub const RATES_ID: &str = "_rates";
/// Longest keyword Elasticsearch (and so the tantivy twin) indexes: 32,766 bytes.
pub const MAX_KEYWORD_BYTES: usize = 32_766;

/// Id of the pending-stock document of `sku`.
pub fn pending_id(sku: &str) -> String {
    format!("stock:{sku}")
}

/// Title and description in one language.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct I18n {
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
}

/// Stock of the sku in one warehouse.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Level {
    /// Units available.
    pub available: i64,
    /// Units on hand.
    pub on_hand: i64,
    /// Event time of this level (ms).
    pub at: i64,
}

/// A document of the search index.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProductDoc {
    /// `product`, `pending_stock` or `rates`.
    pub kind: String,
    /// Product id (empty for pending stock).
    pub product_id: String,
    /// Vendor.
    pub vendor_id: String,
    /// Sku.
    pub sku: String,
    /// Title (the catalogue's language).
    pub title: String,
    /// Description.
    pub description: String,
    /// Other languages, by BCP-47 tag.
    pub i18n: BTreeMap<String, I18n>,
    /// Category path, e.g. `electronics/audio/headphones`.
    pub category: String,
    /// Every prefix of the path, for category filters: `electronics`, `electronics/audio`, …
    pub category_path: Vec<String>,
    /// Brand.
    pub brand: String,
    /// `active` unless updated.
    pub status: String,
    /// True once its ProductCreated was seen (only listed products are found).
    pub listed: bool,
    /// Price, minor units.
    pub price_minor: Option<i64>,
    /// Currency of the price.
    pub currency: Option<String>,
    /// Price in base-currency minor units (converted when the price was written).
    pub price_eur_minor: Option<i64>,
    /// Average rating.
    pub rating: Option<f64>,
    /// Reviews.
    pub rating_count: i64,
    /// Sum of the ratings.
    pub rating_sum: i64,
    /// Stock per warehouse.
    pub stock: BTreeMap<String, Level>,
    /// Units available over all warehouses.
    pub available: i64,
    /// `available > 0`.
    pub in_stock: bool,
    /// Product views.
    pub views: i64,
    /// Latest trending score from the recommendations processor.
    pub trending: f64,
    /// `views + 100 × trending`: the popularity sort key.
    pub popularity: f64,
    /// Event time of the catalogue fields.
    pub catalog_at: i64,
    /// Event time of the price.
    pub price_at: i64,
    /// Last offset applied per `topic/partition`.
    pub src: BTreeMap<String, u64>,
    /// Newest event time in the document: the external version.
    pub version: i64,
    /// Exchange rates (the `rates` document only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rates: Option<Rates>,
}

/// Every prefix of a category path.
pub fn category_path(category: &str) -> Vec<String> {
    let parts: Vec<&str> = category.split('/').filter(|p| !p.is_empty()).collect();
    (1..=parts.len()).map(|n| parts[..n].join("/")).collect()
}

impl ProductDoc {
    /// An empty product document.
    pub fn product(id: &str) -> ProductDoc {
        ProductDoc { kind: PRODUCT.into(), product_id: id.into(), status: "active".into(), catalog_at: i64::MIN, price_at: i64::MIN, ..Default::default() }
    }

    /// An empty pending-stock document for `sku`.
    pub fn pending(sku: &str) -> ProductDoc {
        ProductDoc { kind: PENDING_STOCK.into(), sku: sku.into(), ..Default::default() }
    }

    fn recompute(&mut self) {
        self.available = self.stock.values().map(|l| l.available.max(0)).sum();
        self.in_stock = self.available > 0;
        self.popularity = self.views as f64 + 100.0 * self.trending;
        self.rating = (self.rating_count > 0).then(|| self.rating_sum as f64 / self.rating_count as f64);
    }

    /// Takes the stock levels of a pending-stock document (newer levels win).
    pub fn merge_stock(&mut self, pending: &ProductDoc) {
        for (w, l) in &pending.stock {
            if self.stock.get(w).is_none_or(|mine| mine.at <= l.at) {
                self.stock.insert(w.clone(), l.clone());
            }
        }
        self.version = self.version.max(pending.version);
        self.recompute();
    }

    /// Checks the limits Elasticsearch enforces on keywords (the tantivy twin applies the
    /// same, so a document either index refuses is refused by both).
    pub fn check(&self) -> Result<(), String> {
        for (name, v) in [("product_id", &self.product_id), ("vendor_id", &self.vendor_id), ("sku", &self.sku), ("category", &self.category), ("brand", &self.brand), ("status", &self.status)] {
            if v.len() > MAX_KEYWORD_BYTES {
                return Err(format!(
                    "document_parsing_exception: field [{name}] of document {} is an immense term ({} bytes; the limit is {MAX_KEYWORD_BYTES})",
                    self.product_id,
                    v.len()
                ));
            }
        }
        Ok(())
    }

    /// Applies `item` to this document; `Ok(false)` when it changed nothing (already
    /// applied, stale, or not about this document). `Err` names a value that can never be
    /// indexed.
    pub fn apply(&mut self, item: &Item, rates: &Rates) -> Result<bool, String> {
        let key = item.source();
        if self.src.get(&key).is_some_and(|o| *o >= item.offset) {
            return Ok(false);
        }
        let at = item.event.occurred_at().millis();
        match &item.event {
            Event::ProductCreated(p) => {
                if at >= self.catalog_at {
                    self.catalog_at = at;
                    self.vendor_id = p.vendor_id.clone();
                    self.sku = p.sku.clone();
                    self.title = p.title.clone();
                    self.description = p.description.clone();
                    self.i18n = p.translations.iter().map(|(l, t)| (l.clone(), I18n { title: t.title.clone(), description: t.description.clone() })).collect();
                    self.category = p.category.clone();
                    self.category_path = category_path(&p.category);
                    self.brand = p.brand.clone();
                    self.listed = true;
                }
                if at >= self.price_at {
                    self.set_price(p.price_minor, &p.currency, at, rates);
                }
            }
            Event::ProductUpdated(p) => {
                if at < self.catalog_at {
                    return Ok(false);
                }
                self.catalog_at = at;
                self.vendor_id = p.vendor_id.clone();
                if let Some(v) = &p.title {
                    self.title = v.clone();
                }
                if let Some(v) = &p.description {
                    self.description = v.clone();
                }
                if let Some(v) = &p.category {
                    self.category = v.clone();
                    self.category_path = category_path(v);
                }
                if let Some(v) = &p.brand {
                    self.brand = v.clone();
                }
                if let Some(v) = &p.status {
                    self.status = v.clone();
                }
            }
            Event::PriceChanged(p) => {
                if at < self.price_at {
                    return Ok(false);
                }
                if self.sku.is_empty() {
                    self.sku = p.sku.clone();
                }
                self.set_price(p.price_minor, &p.currency, at, rates);
            }
            Event::ReviewSubmitted(r) => {
                if !(1..=5).contains(&r.rating) {
                    return Err(format!("review {} rates product {} {} stars; ratings are 1 to 5", r.review_id, r.product_id, r.rating));
                }
                self.rating_sum += i64::from(r.rating);
                self.rating_count += 1;
            }
            Event::StockLevelChanged(s) => {
                if self.stock.get(&s.warehouse_id).is_some_and(|l| l.at > at) {
                    return Ok(false);
                }
                if self.sku.is_empty() {
                    self.sku = s.sku.clone();
                }
                self.stock.insert(s.warehouse_id.clone(), Level { available: i64::from(s.available), on_hand: i64::from(s.on_hand), at });
            }
            Event::RecommendationsUpdated(r) => match r.items.iter().find(|i| i.product_id == self.product_id) {
                Some(i) if r.kind == "trending" => self.trending = i.score,
                _ => return Ok(false),
            },
            Event::ProductViewed(_) => self.views += 1,
            _ => return Ok(false),
        }
        self.src.insert(key, item.offset);
        self.version = self.version.max(at);
        self.recompute();
        Ok(true)
    }

    fn set_price(&mut self, price_minor: i64, currency: &str, at: i64, rates: &Rates) {
        self.price_at = at;
        self.price_minor = Some(price_minor);
        self.currency = Some(currency.to_string());
        self.price_eur_minor = rates.to_base(price_minor, currency, at);
    }
}

#[cfg(test)]
mod tests {
    use storeflow_avro::{PriceChanged, Timestamp};

    use super::*;

    fn price(at: i64, p: i64, offset: u64) -> Item {
        Item::new(
            Event::PriceChanged(PriceChanged {
                event_id: format!("e{offset}"),
                occurred_at: Timestamp(at),
                product_id: "p1".into(),
                vendor_id: "v".into(),
                sku: "s".into(),
                old_price_minor: None,
                price_minor: p,
                currency: "EUR".into(),
            }),
            0,
            offset,
        )
    }

    #[test]
    fn a_stale_price_does_not_overwrite_a_newer_one() {
        let rates = Rates::new("EUR");
        let mut d = ProductDoc::product("p1");
        assert!(d.apply(&price(200, 5_000, 1), &rates).unwrap());
        assert!(!d.apply(&price(100, 1_000, 2), &rates).unwrap());
        assert_eq!((d.price_minor, d.price_eur_minor, d.version), (Some(5_000), Some(5_000), 200));
    }

    #[test]
    fn an_event_applied_before_is_skipped() {
        let rates = Rates::new("EUR");
        let mut d = ProductDoc::product("p1");
        assert!(d.apply(&price(200, 5_000, 7), &rates).unwrap());
        assert!(!d.apply(&price(300, 9_000, 7), &rates).unwrap());
        assert_eq!(d.price_minor, Some(5_000));
    }

    #[test]
    fn category_paths_list_every_prefix() {
        assert_eq!(category_path("a/b/c"), vec!["a", "a/b", "a/b/c"]);
        assert!(category_path("").is_empty());
    }
}
