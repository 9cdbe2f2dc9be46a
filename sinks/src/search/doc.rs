//! The product document and how each event changes it — shared by Elasticsearch and
//! tantivy, so both indexes hold the same documents.
//!
//! Neither index can update part of a document with a version check (`_bulk` `update`
//! refuses external versions; tantivy only replaces), so the sink reads the current
//! document, applies the batch's events in log order and writes the whole document back
//! with its `version` — the document's revision, one more per change applied — as the
//! external version (`external_gte` on Elasticsearch, the same rule on tantivy): a document
//! read before another write of the same document never replaces it.
//!
//! Three rules make that safe:
//!
//! - **Versions and log positions decide what is newer, never event time.** Each group of
//!   fields keeps its own guard: the catalogue fields the position of their
//!   ProductCreated/ProductUpdated in its partition (`catalog_pos`), the price that of its
//!   PriceChanged (`price_pos`) — a product's catalogue events all live in one partition,
//!   in processing order —, each warehouse's stock the `version` of its StockLevelChanged,
//!   the trending score the `version` of its list. A record at or below the guard changes
//!   nothing there. Event times (`catalog_at`, `price_at`, a level's `at`) are data.
//! - **Joins use the reference view, read ahead** ([`crate::reference`]): a price's
//!   base-currency value takes the rate in force at the price's time among every rate the
//!   log holds, and a trending score the list of the product's category as the catalogue
//!   has it — not what this document happened to have seen, which depends on how the
//!   sink's subscription interleaved the topics.
//! - **Counting events count once.** The document remembers the last offset it applied per
//!   source partition (`src`); an event at or below it was applied already (a redelivered
//!   batch) and is skipped. Reviews and views can therefore be added up exactly.
//! - **One revision per change.** `version` grows by one with every event applied, so the
//!   index keeps the document that has seen the most of the log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use storeflow_avro::Event;

use crate::money::Rates;
use crate::reference::Reference;
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
#[serde(default)]
pub struct Level {
    /// Units available.
    pub available: i64,
    /// Units on hand.
    pub on_hand: i64,
    /// Event time of this level (ms): data, not an order.
    pub at: i64,
    /// `StockLevelChanged.version` of this level: the highest one wins.
    pub version: i64,
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
    /// The trending list the score comes from (`trending:<category>`).
    pub trending_list: String,
    /// `RecommendationsUpdated.version` of that list when the score was taken.
    pub trending_version: i64,
    /// `views + 100 × trending`: the popularity sort key.
    pub popularity: f64,
    /// Event time of the catalogue fields (data).
    pub catalog_at: i64,
    /// Event time of the price (data).
    pub price_at: i64,
    /// Log position ([`Item::position`]) of the event the catalogue fields come from.
    pub catalog_pos: Option<i64>,
    /// Log position of the event the price comes from.
    pub price_pos: Option<i64>,
    /// Last offset applied per `topic/partition`.
    pub src: BTreeMap<String, u64>,
    /// Revision: one more per event applied; the external version.
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

    /// Takes the stock levels of a pending-stock document (higher versions win); part of
    /// the change that applied the product's ProductCreated, so no revision of its own.
    pub fn merge_stock(&mut self, pending: &ProductDoc) {
        for (w, l) in &pending.stock {
            if self.stock.get(w).is_none_or(|mine| mine.version <= l.version) {
                self.stock.insert(w.clone(), l.clone());
            }
        }
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

    /// Applies `item` to this document, joining with `reference` (rates for the price's
    /// base-currency value, the product's category for its trending list); `Ok(false)` when
    /// it changed nothing (already applied, stale, or not about this document). `Err` names
    /// a value that can never be indexed.
    pub fn apply(&mut self, item: &Item, reference: &Reference) -> Result<bool, String> {
        let key = item.source();
        if self.src.get(&key).is_some_and(|o| *o >= item.offset) {
            return Ok(false);
        }
        let at = item.event.occurred_at().millis();
        let pos = item.position();
        let newer = |guard: Option<i64>| guard.is_none_or(|g| g <= pos);
        match &item.event {
            Event::ProductCreated(p) => {
                if newer(self.catalog_pos) {
                    self.catalog_pos = Some(pos);
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
                if newer(self.price_pos) {
                    self.set_price(p.price_minor, &p.currency, at, pos, reference);
                }
            }
            Event::ProductUpdated(p) => {
                if !newer(self.catalog_pos) {
                    return Ok(false);
                }
                self.catalog_pos = Some(pos);
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
                if !newer(self.price_pos) {
                    return Ok(false);
                }
                if self.sku.is_empty() {
                    self.sku = p.sku.clone();
                }
                self.set_price(p.price_minor, &p.currency, at, pos, reference);
            }
            Event::ReviewSubmitted(r) => {
                if !(1..=5).contains(&r.rating) {
                    return Err(format!("review {} rates product {} {} stars; ratings are 1 to 5", r.review_id, r.product_id, r.rating));
                }
                self.rating_sum += i64::from(r.rating);
                self.rating_count += 1;
            }
            Event::StockLevelChanged(s) => {
                if self.stock.get(&s.warehouse_id).is_some_and(|l| l.version > s.version) {
                    return Ok(false);
                }
                if self.sku.is_empty() {
                    self.sku = s.sku.clone();
                }
                let level = Level { available: i64::from(s.available), on_hand: i64::from(s.on_hand), at, version: s.version };
                self.stock.insert(s.warehouse_id.clone(), level);
            }
            Event::RecommendationsUpdated(r) => {
                let Some(i) = r.items.iter().find(|i| i.product_id == self.product_id).filter(|_| r.kind == "trending") else {
                    return Ok(false);
                };
                // Versions count per list, and the lists of two categories (a product that
                // moved, a view that named another category) reach the document in whatever
                // order their partitions were read. So the score kept is the greatest by
                // (the list is the product's category's in the catalogue, the list's name,
                // its version): the same whatever the arrival order.
                let list = format!("trending:{}", r.category.as_deref().unwrap_or_default());
                let home = reference.product(&self.product_id).map(|p| format!("trending:{}", p.category));
                let rank = |l: &str, v: i64| (home.as_deref() == Some(l), l.to_string(), v);
                if rank(&list, r.version) < rank(&self.trending_list, self.trending_version) {
                    return Ok(false);
                }
                self.trending = i.score;
                self.trending_list = list;
                self.trending_version = r.version;
            }
            Event::ProductViewed(_) => self.views += 1,
            _ => return Ok(false),
        }
        self.src.insert(key, item.offset);
        self.version += 1;
        self.recompute();
        Ok(true)
    }

    fn set_price(&mut self, price_minor: i64, currency: &str, at: i64, pos: i64, reference: &Reference) {
        self.price_pos = Some(pos);
        self.price_at = at;
        self.price_minor = Some(price_minor);
        self.currency = Some(currency.to_string());
        self.price_eur_minor = reference.to_base(price_minor, currency, at);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use storeflow_avro::{PriceChanged, RecommendationsUpdated, ScoredProduct, StockLevelChanged, Timestamp};

    use super::*;
    use crate::reference::ProductFacts;

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

    fn level(at: i64, warehouse: &str, available: i32, version: i64, offset: u64) -> Item {
        Item::new(
            Event::StockLevelChanged(StockLevelChanged {
                event_id: format!("l{offset}"),
                occurred_at: Timestamp(at),
                sku: "s".into(),
                warehouse_id: warehouse.into(),
                on_hand: available,
                reserved: 0,
                available,
                cause: "received".into(),
                version,
            }),
            1,
            offset,
        )
    }

    // Was: the older event time lost. Now the later record in the partition wins whatever
    // its event time, and a redelivered earlier one changes nothing.
    #[test]
    fn a_stale_price_does_not_overwrite_a_newer_one() {
        let rates = Reference::new("EUR");
        let mut d = ProductDoc::product("p1");
        assert!(d.apply(&price(200, 1_000, 1), &rates).unwrap());
        assert!(d.apply(&price(100, 5_000, 2), &rates).unwrap(), "later in the partition, earlier event time");
        assert!(!d.apply(&price(200, 1_000, 1), &rates).unwrap(), "redelivered");
        assert_eq!((d.price_minor, d.price_eur_minor, d.price_at, d.version), (Some(5_000), Some(5_000), 100, 2));
    }

    #[test]
    fn a_price_from_a_lower_log_position_is_refused_even_from_an_unseen_partition() {
        let rates = Reference::new("EUR");
        let mut d = ProductDoc::product("p1");
        let mut newer = price(100, 5_000, 2);
        newer.partition = 1;
        assert!(d.apply(&newer, &rates).unwrap());
        assert!(!d.apply(&price(900, 1_000, 7), &rates).unwrap(), "partition 0 comes before partition 1");
        assert_eq!(d.price_minor, Some(5_000));
    }

    #[test]
    fn a_stock_level_with_a_lower_version_is_refused_whatever_its_event_time() {
        let rates = Reference::new("EUR");
        let mut d = ProductDoc::product("p1");
        assert!(d.apply(&level(500, "w", 3, 2, 1), &rates).unwrap());
        let mut stale = level(900, "w", 7, 1, 2);
        stale.partition = 2; // not skipped as already applied: only the version can refuse it
        assert!(!d.apply(&stale, &rates).unwrap());
        assert_eq!((d.available, d.stock["w"].version, d.stock["w"].at), (3, 2, 500));
    }

    #[test]
    fn pending_stock_merges_by_version_not_by_event_time() {
        let rates = Reference::new("EUR");
        let mut d = ProductDoc::product("p1");
        d.apply(&level(900, "w", 1, 1, 1), &rates).unwrap();
        let mut pending = ProductDoc::pending("s");
        pending.apply(&level(100, "w", 4, 2, 2), &rates).unwrap();
        d.merge_stock(&pending);
        assert_eq!((d.available, d.in_stock), (4, true));
    }

    #[test]
    fn an_event_applied_before_is_skipped() {
        let rates = Reference::new("EUR");
        let mut d = ProductDoc::product("p1");
        assert!(d.apply(&price(200, 5_000, 7), &rates).unwrap());
        assert!(!d.apply(&price(300, 9_000, 7), &rates).unwrap());
        assert_eq!(d.price_minor, Some(5_000));
    }

    fn trending(category: &str, version: i64, score: f64, partition: u32) -> Item {
        Item::new(
            Event::RecommendationsUpdated(RecommendationsUpdated {
                event_id: format!("tr-{category}-{version}"),
                occurred_at: Timestamp(0),
                product_id: String::new(),
                kind: "trending".into(),
                items: vec![ScoredProduct { product_id: "p1".into(), score }],
                session_id: None,
                category: Some(category.into()),
                version,
            }),
            partition,
            version as u64,
        )
    }

    #[test]
    fn a_trending_score_comes_from_the_products_own_category_whatever_order_the_lists_arrive_in() {
        // p1 moved from `old` to `new`; both lists name it, from two partitions.
        let mut reference = Reference::new("EUR");
        reference.product_facts(ProductFacts { product_id: "p1".into(), sku: "s".into(), category: "new".into(), ..Default::default() });
        let lists = [trending("old", 5, 9.0, 0), trending("new", 1, 1.0, 1), trending("new", 2, 2.0, 1), trending("old", 6, 8.0, 0)];
        for order in [[0, 1, 2, 3], [1, 2, 0, 3], [3, 2, 1, 0], [2, 0, 3, 1]] {
            let mut d = ProductDoc::product("p1");
            for i in order {
                d.apply(&lists[i], &reference).unwrap();
            }
            assert_eq!((d.trending, d.trending_list.as_str(), d.trending_version), (2.0, "trending:new", 2), "{order:?}");
        }
        // A product the catalogue does not know: the same list wins in every order.
        let unknown = Reference::new("EUR");
        let mut firsts = std::collections::BTreeSet::new();
        for order in [[0, 1, 2, 3], [3, 2, 1, 0]] {
            let mut d = ProductDoc::product("p1");
            for i in order {
                d.apply(&lists[i], &unknown).unwrap();
            }
            firsts.insert((d.trending_list.clone(), d.trending_version));
        }
        assert_eq!(firsts.len(), 1, "{firsts:?}");
    }

    #[test]
    fn category_paths_list_every_prefix() {
        assert_eq!(category_path("a/b/c"), vec!["a", "a/b", "a/b/c"]);
        assert!(category_path("").is_empty());
    }

    proptest! {
        /// Prices (in log order) and per-warehouse stock snapshots (versions counting up),
        /// with arbitrary event times, delivered in batches with earlier batches delivered
        /// again: the document holds the last price and the last level of each warehouse,
        /// and its revision counts each event once.
        #[test]
        fn a_document_holds_the_last_price_and_level_whatever_the_event_times(
            changes in prop::collection::vec((any::<bool>(), 0..3usize, 0..1_000i64, -10_000..10_000i64), 1..60),
            replays in prop::collection::vec((0..60usize, 1..10usize), 0..8),
        ) {
            let rates = Reference::new("EUR");
            let warehouses = ["a", "b", "c"];
            let mut versions = [0i64; 3];
            let (mut price_off, mut stock_off) = (0u64, 0u64);
            let mut its = Vec::new();
            let (mut want_price, mut want_stock) = (None, BTreeMap::new());
            for (is_price, w, value, at) in &changes {
                if *is_price {
                    its.push(price(*at, *value, price_off));
                    price_off += 1;
                    want_price = Some(*value);
                } else {
                    versions[*w] += 1;
                    its.push(level(*at, warehouses[*w], *value as i32, versions[*w], stock_off));
                    stock_off += 1;
                    want_stock.insert(warehouses[*w].to_string(), *value);
                }
            }
            let mut d = ProductDoc::product("p1");
            let mut applied = 0;
            let mut done = 0;
            for (n, (upto, len)) in replays.iter().enumerate() {
                // Deliver up to a point, then an earlier stretch again.
                let end = (*upto).clamp(done, its.len());
                for it in &its[done..end] {
                    applied += i64::from(d.apply(it, &rates).unwrap());
                }
                done = end;
                let from = done.saturating_sub(*len + n);
                for it in &its[from..done] {
                    prop_assert!(!d.apply(it, &rates).unwrap(), "a redelivered event changed the document");
                }
            }
            for it in &its[done..] {
                applied += i64::from(d.apply(it, &rates).unwrap());
            }
            prop_assert_eq!(d.price_minor, want_price);
            let got: BTreeMap<String, i64> = d.stock.iter().map(|(w, l)| (w.clone(), l.available)).collect();
            prop_assert_eq!(got, want_stock);
            prop_assert_eq!(d.version, applied);
            prop_assert_eq!(applied, its.len() as i64);
        }
    }
}
