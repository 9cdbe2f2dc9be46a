//! The search sink: read-modify-write of the product documents a batch touches.
//!
//! Reads `storefront.catalog` (products, prices, reviews), `inventory.levels` (stock per
//! warehouse, keyed by sku), `recommendations.updates` (trending scores),
//! `storefront.sessions` (product views, for popularity) and `storefront.exchange_rates`
//! (prices in the base currency).
//!
//! Per batch: find the documents the events touch (a sku is resolved to its product through
//! the reference view, then a sku map learnt from the index; stock of a sku whose product is
//! not known yet goes to a `stock:<sku>` pending document that the product takes over when
//! it is created), read the ones not cached, apply the events in log order
//! ([`ProductDoc::apply`]: versions and log positions decide what is newer, never event
//! time), and write the changed documents back whole with their revisions as external
//! versions. The cache is dropped on any failure and on a rebalance, so a retry starts from
//! what the index holds.
//!
//! The joins — a price's base-currency value, a sku's product, a trending list's category —
//! use the [`Reference`] view, which the runner reads ahead from `storefront.exchange_rates`
//! and `storefront.catalog` before every write ([`Sink::refer`]): they see every rate and
//! product the log holds then, whatever order the subscription delivered the topics in.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use storeflow_avro::{Event, Topic};
use storeflow_ingest::TopicPartition;

use super::config::SearchConfig;
use super::doc::{self, ProductDoc, RATES_ID, pending_id};
use super::elastic::ElasticIndex;
use super::index::{Index, ProductIndex};
use super::tantivy_index::TantivyIndex;
use crate::money::Rates;
use crate::reference::{self, Reference};
use crate::registry::SinkConfig;
use crate::runner::{Batching, Item, Sink};
use crate::{Result, Retry, SinkError};

/// The topics search reads.
pub const TOPICS: [Topic; 5] = [Topic::ExchangeRates, Topic::Catalog, Topic::StockLevels, Topic::Recommendations, Topic::Sessions];

/// True if search writes something for `e`.
pub fn wants(e: &Event) -> bool {
    match e {
        Event::ProductCreated(_)
        | Event::ProductUpdated(_)
        | Event::PriceChanged(_)
        | Event::ReviewSubmitted(_)
        | Event::StockLevelChanged(_)
        | Event::ProductViewed(_)
        | Event::ExchangeRateUpdated(_) => true,
        Event::RecommendationsUpdated(r) => r.kind == "trending",
        _ => false,
    }
}

/// The search sink.
pub struct SearchSink {
    index: Index,
    batching: Batching,
    /// What documents are joined with: rates and products, read ahead.
    reference: Reference,
    /// The rates in the subscription's order, kept in the `_rates` document.
    rates: Rates,
    rates_doc: ProductDoc,
    /// sku → product for products the reference view does not know (created before the
    /// log's oldest record), learnt from the index.
    sku_product: HashMap<String, String>,
    cache: HashMap<String, ProductDoc>,
    cache_docs: usize,
}

impl SearchSink {
    /// Opens Elasticsearch when configured, else the tantivy index under `data_dir/search`,
    /// and loads the exchange rates.
    pub async fn open(config: &SearchConfig, base_currency: &str, data_dir: &Path) -> Result<SearchSink> {
        config.validate()?;
        let index = match &config.elasticsearch {
            Some(es) => Index::Elastic(ElasticIndex::open(es).await?),
            None => Index::Tantivy(TantivyIndex::open(&data_dir.join("search"))?),
        };
        let rates_doc = index
            .get(&[RATES_ID.to_string()])
            .await?
            .remove(RATES_ID)
            .unwrap_or_else(|| ProductDoc { kind: doc::RATES.into(), rates: Some(Rates::new(base_currency)), ..Default::default() });
        let rates = rates_doc.rates.clone().unwrap_or_else(|| Rates::new(base_currency));
        // Documents written before this start are visible to the sku lookup.
        index.refresh().await?;
        Ok(SearchSink {
            index,
            batching: config.batching(),
            reference: Reference::with_rates(rates.clone()),
            rates,
            rates_doc,
            sku_product: HashMap::new(),
            cache: HashMap::new(),
            cache_docs: config.cache_docs,
        })
    }

    /// The product of `sku`: the reference view's, else one learnt from the index.
    fn product_of(&self, sku: &str) -> Option<String> {
        self.reference.by_sku(sku).map(|p| p.product_id.clone()).or_else(|| self.sku_product.get(sku).cloned())
    }

    /// The index (shared with the query handle).
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Ids of the documents `e` touches, given the sku map.
    fn targets(&self, e: &Event) -> Vec<String> {
        match e {
            Event::ProductCreated(p) => vec![p.product_id.clone(), pending_id(&p.sku)],
            Event::ProductUpdated(p) => vec![p.product_id.clone()],
            Event::PriceChanged(p) => vec![p.product_id.clone()],
            Event::ReviewSubmitted(r) => vec![r.product_id.clone()],
            Event::ProductViewed(v) => vec![v.product_id.clone()],
            Event::StockLevelChanged(s) => vec![self.product_of(&s.sku).unwrap_or_else(|| pending_id(&s.sku))],
            Event::RecommendationsUpdated(r) => r.items.iter().map(|i| i.product_id.clone()).collect(),
            _ => Vec::new(),
        }
    }

    async fn write_batch(&mut self, items: &[Item]) -> Result<()> {
        // 0. The batch's own rates and products count for every event in it (a no-op when
        //    the runner has read them ahead).
        self.refer(items);
        // 1. Skus whose product is not known yet: their `stock:<sku>` document names it once
        //    the product exists (a read by id, real-time on Elasticsearch).
        let unknown: BTreeSet<String> = items
            .iter()
            .filter_map(|i| match &i.event {
                Event::StockLevelChanged(s) if self.product_of(&s.sku).is_none() => Some(pending_id(&s.sku)),
                _ => None,
            })
            .filter(|id| !self.cache.contains_key(id))
            .collect();
        if !unknown.is_empty() {
            let found = self.index.get(&unknown.iter().cloned().collect::<Vec<_>>()).await?;
            for (id, d) in found {
                if !d.product_id.is_empty() {
                    self.sku_product.insert(d.sku.clone(), d.product_id.clone());
                }
                self.cache.insert(id, d);
            }
            // Products created before this sink started (or on another instance): their
            // documents carry the sku.
            let rest: Vec<String> = unknown
                .iter()
                .filter_map(|id| id.strip_prefix("stock:"))
                .filter(|sku| !self.sku_product.contains_key(*sku))
                .map(str::to_string)
                .collect();
            if !rest.is_empty() {
                let found = self.index.find_skus(&rest).await?;
                self.sku_product.extend(found);
            }
        }
        // 2. Read the documents not cached.
        let mut ids: BTreeSet<String> = items.iter().flat_map(|i| self.targets(&i.event)).collect();
        ids.retain(|id| !self.cache.contains_key(id));
        let fetched = if ids.is_empty() { BTreeMap::new() } else { self.index.get(&ids.iter().cloned().collect::<Vec<_>>()).await? };
        let mut work: HashMap<String, ProductDoc> = HashMap::new();
        for id in ids {
            let d = fetched.get(&id).cloned();
            work.insert(id, d.unwrap_or_default());
        }
        // 3. Apply in log order.
        let mut changed: BTreeSet<String> = BTreeSet::new();
        let mut rates_changed = false;
        for it in items {
            if let Event::ExchangeRateUpdated(r) = &it.event {
                let key = it.source();
                if self.rates_doc.src.get(&key).is_none_or(|o| *o < it.offset) {
                    self.rates.record(&r.base_currency, &r.quote_currency, r.occurred_at.millis(), r.rate_e9);
                    self.rates_doc.src.insert(key, it.offset);
                    self.rates_doc.version += 1;
                    rates_changed = true;
                }
                continue;
            }
            for id in self.targets(&it.event) {
                if let (Some(_), Event::ProductCreated(p)) = (id.strip_prefix("stock:"), &it.event) {
                    // Stock that came before its product: the sku's document now names the
                    // product (the product's own document takes the stock over, below).
                    let existing = match work.get(&id) {
                        Some(d) if !d.kind.is_empty() => Some(d.clone()),
                        _ => self.cache.get(&id).cloned(),
                    };
                    if let Some(mut d) = existing.filter(|d| d.kind == doc::PENDING_STOCK) {
                        if d.product_id.is_empty() {
                            d.product_id = p.product_id.clone();
                            d.version += 1;
                            changed.insert(id.clone());
                        }
                        work.insert(id, d);
                    }
                    continue;
                }
                let mut d = match work.remove(&id) {
                    Some(d) if !d.kind.is_empty() => d,
                    _ => match self.cache.get(&id) {
                        Some(d) => d.clone(),
                        None if id.starts_with("stock:") => ProductDoc::pending(&id["stock:".len()..]),
                        None => ProductDoc::product(&id),
                    },
                };
                if d.kind == doc::PENDING_STOCK && !matches!(it.event, Event::StockLevelChanged(_)) {
                    work.insert(id, d);
                    continue;
                }
                let applied = d.apply(it, &self.reference).map_err(SinkError::Rejected)?;
                if applied {
                    if let Event::ProductCreated(p) = &it.event {
                        let pid = pending_id(&p.sku);
                        let pending = work.get(&pid).cloned().or_else(|| self.cache.get(&pid).cloned());
                        if let Some(pending) = pending.filter(|p| p.kind == doc::PENDING_STOCK) {
                            d.merge_stock(&pending);
                        }
                    }
                    changed.insert(id.clone());
                }
                work.insert(id, d);
            }
        }
        // 4. Write the changed documents back, whole, with their versions.
        let mut out: BTreeMap<String, ProductDoc> = changed.iter().filter_map(|id| work.get(id).map(|d| (id.clone(), d.clone()))).collect();
        if rates_changed {
            self.rates_doc.rates = Some(self.rates.clone());
            out.insert(RATES_ID.to_string(), self.rates_doc.clone());
        }
        self.index.put(&out).await?;
        // 5. Keep what was read and written for the next batch.
        if self.cache.len() + work.len() > self.cache_docs {
            self.cache.clear();
        }
        self.cache.extend(work.into_iter().filter(|(_, d)| !d.kind.is_empty()));
        Ok(())
    }
}

impl Sink for SearchSink {
    fn topics(&self) -> Vec<Topic> {
        TOPICS.to_vec()
    }

    fn batching(&self) -> Batching {
        self.batching
    }

    fn wants(&self, event: &Event) -> bool {
        wants(event)
    }

    fn retry(&self, err: &SinkError) -> Retry {
        super::service::retry_logic(err)
    }

    async fn assigned(&mut self, _partitions: &[TopicPartition]) -> Result<()> {
        // Another instance may have written these documents: read them afresh, and make
        // its writes visible to the sku lookup.
        self.cache.clear();
        self.index.refresh().await
    }

    fn reference_topics(&self) -> Vec<Topic> {
        reference::TOPICS.to_vec()
    }

    fn refer(&mut self, items: &[Item]) {
        for it in items {
            self.reference.apply(it);
        }
    }

    async fn write(&mut self, items: &[Item]) -> Result<()> {
        let r = self.write_batch(items).await;
        if r.is_err() {
            // Start the retry from what the index holds.
            self.cache.clear();
            if let Ok(Some(d)) = self.index.get(&[RATES_ID.to_string()]).await.map(|mut m| m.remove(RATES_ID)) {
                self.rates = d.rates.clone().unwrap_or_else(|| Rates::new(self.rates.base()));
                self.rates_doc = d;
            }
        }
        r
    }
}
