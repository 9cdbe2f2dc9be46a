//! Reference data the sinks join facts with — exchange rates and the catalogue's product
//! facts — kept as a view that is read *ahead* of the facts that need it.
//!
//! Analytics converts every amount to the base currency and copies a product's category,
//! brand and vendor onto order lines, returns and stock levels; search converts prices and
//! routes stock (keyed by sku) to its product's document. With only what the sink's own
//! subscription had delivered so far, those joins depended on how its consumer interleaved
//! `storefront.exchange_rates` and `storefront.catalog` with the other topics: two runs over
//! one log could convert one JPY order at a rate and at none. So before every write the
//! runner brings the view up to date with everything the log holds on [`TOPICS`] — a second
//! consumer over all their partitions, read to their current end, records applied here only
//! ([`crate::runner::Sink::refer`]); the main subscription still writes their own rows.
//!
//! The view depends on the records it has been given, not on their order or repetition:
//!
//! - a rate is kept per pair and time; two rates for one pair at one time keep the one with
//!   the highest log position ([`Item::position`]);
//! - a product's facts are those of its catalog event with the highest position (a
//!   product's events live in one partition, in processing order); a sku names the product
//!   whose ProductCreated has the highest position.
//!
//! **What that guarantees.** In a replay of a finished log the view holds all of the
//! reference topics before the first write, so every join is the same whatever the
//! interleaving: a conversion uses the rate in force at the event's time (as of it, the
//! first known rate before any), a catalogue join the product's facts as the log last has
//! them. Live, the view holds what the log held when the fact was written: a rate or a
//! product published after a fact it should have applied to, by a producer that is late,
//! is not applied to that fact afterwards — the fact keeps what was known when it was
//! written.

use std::collections::HashMap;

use storeflow_avro::{Event, Topic};

use crate::money::Rates;
use crate::runner::Item;

/// The topics the view reads ahead.
pub const TOPICS: [Topic; 2] = [Topic::ExchangeRates, Topic::Catalog];

/// What the sinks join on about one product.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProductFacts {
    /// Product id.
    pub product_id: String,
    /// Its vendor.
    pub vendor_id: String,
    /// Its sku.
    pub sku: String,
    /// Category path.
    pub category: String,
    /// Brand.
    pub brand: String,
    /// Log position of the catalog event these facts come from.
    pub pos: i64,
}

/// Exchange rates and product facts, independent of the order they were applied in.
#[derive(Clone, Debug)]
pub struct Reference {
    rates: Rates,
    /// Position of the rate kept per (pair, time).
    rate_pos: HashMap<(String, i64), i64>,
    products: HashMap<String, ProductFacts>,
    /// sku → (position of its ProductCreated, product).
    skus: HashMap<String, (i64, String)>,
}

impl Reference {
    /// An empty view; `base` is the currency amounts are converted to.
    pub fn new(base: &str) -> Reference {
        Reference { rates: Rates::new(base), rate_pos: HashMap::new(), products: HashMap::new(), skus: HashMap::new() }
    }

    /// A view holding `rates` (rates a sink stored, for records the log no longer holds;
    /// a rate read from the log for the same pair and time replaces one of these).
    pub fn with_rates(rates: Rates) -> Reference {
        Reference { rates, ..Reference::new("") }
    }

    /// The exchange rates.
    pub fn rates(&self) -> &Rates {
        &self.rates
    }

    /// `amount_minor` of `currency` in base-currency minor units at time `at`, with the
    /// rate in force then; `None` with no rate between the two.
    pub fn to_base(&self, amount_minor: i64, currency: &str, at: i64) -> Option<i64> {
        self.rates.to_base(amount_minor, currency, at)
    }

    /// The facts of product `id`, if the view knows it.
    pub fn product(&self, id: &str) -> Option<&ProductFacts> {
        self.products.get(id)
    }

    /// The product of `sku`, if the view knows it.
    pub fn by_sku(&self, sku: &str) -> Option<&ProductFacts> {
        self.skus.get(sku).and_then(|(_, p)| self.products.get(p))
    }

    /// Products known.
    pub fn products(&self) -> usize {
        self.products.len()
    }

    /// Records `rate_e9` of `base/quote` from time `at`, read at log position `pos`.
    pub fn rate(&mut self, base: &str, quote: &str, at: i64, rate_e9: i64, pos: i64) {
        let kept = self.rate_pos.entry((format!("{base}/{quote}"), at)).or_insert(i64::MIN);
        if pos >= *kept {
            *kept = pos;
            self.rates.record(base, quote, at, rate_e9);
        }
    }

    /// Takes `facts` unless the view holds the product from a higher position (a sink's
    /// start-up loads what its store held).
    pub fn product_facts(&mut self, facts: ProductFacts) {
        let sku = self.skus.entry(facts.sku.clone()).or_insert((i64::MIN, String::new()));
        if facts.pos >= sku.0 {
            *sku = (facts.pos, facts.product_id.clone());
        }
        match self.products.get_mut(&facts.product_id) {
            Some(p) if p.pos > facts.pos => {}
            Some(p) => *p = facts,
            None => {
                self.products.insert(facts.product_id.clone(), facts);
            }
        }
    }

    /// Applies `item` if it is reference data (a rate, a product's creation or update);
    /// anything else changes nothing. Applying a record again, or records in another order,
    /// leaves the same view.
    pub fn apply(&mut self, item: &Item) {
        let pos = item.position();
        match &item.event {
            Event::ExchangeRateUpdated(r) => self.rate(&r.base_currency, &r.quote_currency, r.occurred_at.millis(), r.rate_e9, pos),
            Event::ProductCreated(p) => self.product_facts(ProductFacts {
                product_id: p.product_id.clone(),
                vendor_id: p.vendor_id.clone(),
                sku: p.sku.clone(),
                category: p.category.clone(),
                brand: p.brand.clone(),
                pos,
            }),
            Event::ProductUpdated(u) => {
                // Its ProductCreated comes before it in the partition; an update that is
                // older than the facts held changes nothing.
                if let Some(p) = self.products.get_mut(&u.product_id)
                    && pos >= p.pos
                {
                    p.pos = pos;
                    p.vendor_id = u.vendor_id.clone();
                    if let Some(c) = &u.category {
                        p.category = c.clone();
                    }
                    if let Some(b) = &u.brand {
                        p.brand = b.clone();
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use storeflow_avro::{ExchangeRateUpdated, ProductCreated, ProductUpdated, Timestamp};

    use super::*;

    fn rate(at: i64, rate_e9: i64, offset: u64) -> Item {
        Item::new(
            Event::ExchangeRateUpdated(ExchangeRateUpdated {
                event_id: format!("r{offset}"),
                occurred_at: Timestamp(at),
                base_currency: "JPY".into(),
                quote_currency: "EUR".into(),
                rate_e9,
            }),
            0,
            offset,
        )
    }

    fn created(id: &str, sku: &str, category: &str, partition: u32, offset: u64) -> Item {
        Item::new(
            Event::ProductCreated(ProductCreated {
                event_id: format!("pc-{id}-{offset}"),
                occurred_at: Timestamp(0),
                product_id: id.into(),
                vendor_id: "v1".into(),
                sku: sku.into(),
                title: "t".into(),
                description: "d".into(),
                translations: Default::default(),
                category: category.into(),
                brand: "b".into(),
                price_minor: 100,
                currency: "EUR".into(),
            }),
            partition,
            offset,
        )
    }

    fn moved(id: &str, category: &str, offset: u64) -> Item {
        Item::new(
            Event::ProductUpdated(ProductUpdated {
                event_id: format!("pu-{id}-{offset}"),
                occurred_at: Timestamp(0),
                product_id: id.into(),
                vendor_id: "v2".into(),
                title: None,
                description: None,
                category: Some(category.into()),
                brand: None,
                status: None,
            }),
            1,
            offset,
        )
    }

    fn view(items: &[&Item]) -> Reference {
        let mut r = Reference::new("EUR");
        for it in items {
            r.apply(it);
        }
        r
    }

    #[test]
    fn the_view_is_the_same_whatever_order_and_repetition_the_records_come_in() {
        let (r1, r2, r3) = (rate(1_000, 6_000_000, 0), rate(2_000, 7_000_000, 1), rate(2_000, 8_000_000, 2));
        let (c, u, other) = (created("p1", "s1", "a/b", 1, 0), moved("p1", "c/d", 1), created("p2", "s2", "e", 2, 0));
        let in_order = view(&[&r1, &r2, &r3, &c, &u, &other]);
        let shuffled = view(&[&u, &r3, &other, &c, &r1, &r2, &c, &r3, &u]);
        for r in [&in_order, &shuffled] {
            // The later of two rates at one time wins by position, whatever came last.
            assert_eq!(r.to_base(1_000_000, "JPY", 2_500), Some(800_000), "{r:?}");
            assert_eq!(r.to_base(1_000_000, "JPY", 1_500), Some(600_000));
            let p = r.by_sku("s1").expect("the sku's product");
            assert_eq!((p.product_id.as_str(), p.category.as_str(), p.vendor_id.as_str(), p.pos), ("p1", "c/d", "v2", u.position()));
        }
        assert_eq!(in_order.rates(), shuffled.rates());
        assert_eq!(in_order.product("p2"), shuffled.product("p2"));
    }

    #[test]
    fn an_update_before_its_product_is_known_or_older_than_the_facts_changes_nothing() {
        let mut r = view(&[&moved("p1", "c/d", 1)]);
        assert!(r.product("p1").is_none());
        r.apply(&created("p1", "s1", "a/b", 1, 5));
        assert_eq!(r.product("p1").map(|p| p.category.as_str()), Some("a/b"), "the update at offset 1 is older than the creation at 5");
        r.product_facts(ProductFacts { product_id: "p1".into(), sku: "s1".into(), category: "old".into(), pos: 0, ..Default::default() });
        assert_eq!(r.product("p1").map(|p| p.category.as_str()), Some("a/b"), "facts loaded from a lower position are refused");
    }
}
