//! The simulator's stock: what it believes each warehouse holds of each product, where an
//! order's units come from, and when a warehouse reorders.
//!
//! Units are taken where the inventory processor reserves them (`processors/src/inventory.rs`:
//! the nearest warehouse holding every unit of a line, nearest first, then the one with the
//! most; one warehouse for the whole order when one holds every line), so the simulator's
//! levels follow the pipeline's, warehouse by warehouse, and the stock moves it makes
//! (damage write-offs, transfers) stay within what the pipeline has available.
//!
//! Each warehouse reviews its stock on a fixed cadence and reorders a product when it falls
//! to what it expects to sell before a delivery could arrive (with a safety margin), up to
//! two minutes of sales more. Its sales rate is learnt from what it sold. Supplier lead
//! times vary, so a late delivery now and then empties a shelf: stock-outs are rare but real.

use std::collections::{BTreeMap, BTreeSet};

use crate::world::{WAREHOUSES, World, distance};

/// Multiple of the expected demand over a lead time (plus a review period) kept as the
/// reorder point.
const SAFETY: f64 = 1.5;
/// Sales a delivery covers beyond the reorder point (ms of the learnt sales rate).
const COVER_MS: f64 = 2.0 * 60_000.0;
/// Units a warehouse keeps of anything it stocks, however slowly it sells.
const FLOOR: f64 = 4.0;
/// Weight of the latest review period in the learnt sales rate.
const LEARNING: f64 = 0.3;

/// Stock levels per (product, warehouse index), as the simulator believes them.
#[derive(Default)]
pub(crate) struct Stock {
    levels: BTreeMap<(usize, usize), i32>,
    /// Units sold since the last review (net of units given back).
    sold: BTreeMap<(usize, usize), i32>,
    /// Learnt sales rate, units per ms.
    rate: BTreeMap<(usize, usize), f64>,
    /// Reorders not yet delivered.
    on_order: BTreeSet<(usize, usize)>,
}

impl Stock {
    /// Units of `product` at warehouse `w`.
    pub fn level(&self, product: usize, w: usize) -> i32 {
        self.levels.get(&(product, w)).copied().unwrap_or(0)
    }

    /// Units of `product` over the warehouses that stock it.
    pub fn total(&self, world: &World, product: usize) -> i32 {
        world.products[product].warehouses.iter().map(|w| self.level(product, *w)).sum()
    }

    /// The level a warehouse restocks to, for a sales rate (units per ms) and a lead time.
    pub fn order_up_to(rate: f64, lead_ms: f64, review_ms: f64) -> i32 {
        (Self::reorder_point(rate, lead_ms, review_ms) + rate * COVER_MS).ceil() as i32
    }

    fn reorder_point(rate: f64, lead_ms: f64, review_ms: f64) -> f64 {
        rate * (lead_ms + review_ms) * SAFETY + FLOOR
    }

    /// Sets the sales rate a warehouse expects before it has sold anything.
    pub fn expect(&mut self, product: usize, w: usize, rate: f64) {
        self.rate.insert((product, w), rate);
    }

    /// Units arrived (a delivery, a transfer in, a return put back on the shelf).
    pub fn add(&mut self, product: usize, w: usize, qty: i32) {
        *self.levels.entry((product, w)).or_default() += qty;
    }

    /// Units gone without a sale (damage, a transfer out).
    pub fn remove(&mut self, product: usize, w: usize, qty: i32) {
        *self.levels.entry((product, w)).or_default() -= qty;
    }

    /// Units promised to an order.
    pub fn take(&mut self, product: usize, w: usize, qty: i32) {
        self.remove(product, w, qty);
        *self.sold.entry((product, w)).or_default() += qty;
    }

    /// Units of an order that will not go out after all (cancelled, rejected, unpaid).
    pub fn give_back(&mut self, product: usize, w: usize, qty: i32) {
        self.add(product, w, qty);
        *self.sold.entry((product, w)).or_default() -= qty;
    }

    /// A reorder was delivered.
    pub fn delivered(&mut self, product: usize, w: usize) {
        self.on_order.remove(&(product, w));
    }

    /// Where each line of `cart` (product, units) would be taken from for a customer in
    /// `ship_country`, the way inventory reserves: `None` for a line no single warehouse can
    /// fill (the simulated shopper is told it is out of stock; inventory would split it).
    pub fn allocate(&self, world: &World, cart: &[(usize, i32)], ship_country: &str) -> Vec<Option<usize>> {
        let rank = |p: usize, w: usize| (distance(WAREHOUSES[w].country, ship_country), -self.level(p, w), WAREHOUSES[w].id);
        let mut chosen: Vec<Option<usize>> = cart
            .iter()
            .map(|&(p, q)| {
                let mut ranked: Vec<usize> = world.products[p].warehouses.iter().copied().filter(|w| self.level(p, *w) > 0).collect();
                ranked.sort_by_key(|w| rank(p, *w));
                ranked.into_iter().find(|w| self.level(p, *w) >= q)
            })
            .collect();
        let used: BTreeSet<usize> = chosen.iter().flatten().copied().collect();
        if used.len() > 1 {
            let lines: Vec<(usize, i32)> = cart.iter().zip(&chosen).filter(|(_, c)| c.is_some()).map(|(l, _)| *l).collect();
            let mut candidates: Vec<usize> = lines.iter().flat_map(|(p, _)| world.products[*p].warehouses.iter().copied()).collect();
            candidates.sort_by_key(|w| (distance(WAREHOUSES[*w].country, ship_country), WAREHOUSES[*w].id));
            candidates.dedup();
            if let Some(w) = candidates.into_iter().find(|w| lines.iter().all(|(p, q)| self.level(*p, *w) >= *q)) {
                for c in chosen.iter_mut().flatten() {
                    *c = w;
                }
            }
        }
        chosen
    }

    /// A review `review_ms` after the last: learns each warehouse's sales rate and returns
    /// the reorders to place, (product, warehouse, units), given deliveries take `lead_ms`
    /// on average.
    pub fn review(&mut self, review_ms: f64, lead_ms: f64) -> Vec<(usize, usize, i32)> {
        let mut orders = Vec::new();
        for (&k, &level) in &self.levels {
            let sold = self.sold.remove(&k).unwrap_or(0).max(0);
            let rate = self.rate.entry(k).or_insert(0.0);
            *rate = (1.0 - LEARNING) * *rate + LEARNING * f64::from(sold) / review_ms;
            if self.on_order.contains(&k) || f64::from(level) > Self::reorder_point(*rate, lead_ms, review_ms) {
                continue;
            }
            let qty = (Self::order_up_to(*rate, lead_ms, review_ms) - level).max(10);
            orders.push((k.0, k.1, qty));
        }
        for (p, w, _) in &orders {
            self.on_order.insert((*p, *w));
        }
        orders
    }
}
