//! The analytics sink: events → fact and dimension rows → ClickHouse or Parquet.
//!
//! Reads every storefront topic and the derived `orders.lifecycle`, `inventory.reservations`,
//! `inventory.levels`, `fraud.scores` and `sales.vendor_minute`. Keeps two small pieces of
//! state in memory:
//!
//! - the [`Reference`] view it joins with — exchange rates, to add a base-currency amount to
//!   every amount, and the products' facts (vendor, category, brand; sku → product), to
//!   enrich order lines, cart additions, returns and stock levels. The runner reads
//!   `storefront.exchange_rates` and `storefront.catalog` ahead of every write
//!   ([`Sink::refer`]), so a join sees every rate and product the log holds then, whatever
//!   order the subscription delivered the topics in: the rate in force at the event's time,
//!   the product as the log has it (exact in a replay; live, what the log held when the fact
//!   was written — see [`crate::reference`]). Seeded at start-up from its own tables, for
//!   records the log no longer holds.
//! - the catalogue as the subscription has applied it (the state after each catalog event),
//!   for the `dim_products` rows; rebuilt from `dim_products` at start-up.
//!
//! - while writing a batch, the transfers of the orders it disputes (read from
//!   `fact_vendor_money` first, `order_gross`), to split each dispute over the order's
//!   vendors in proportion to their captured gross ([`split_by_weight`]).
//!
//! **What is newer** is never decided by event time: the catalogue's fields and price keep
//! the catalog event with the highest log position ([`Item::position`]; a product's events
//! live in one partition), and rows that hold a processor's snapshot carry its `version`
//! (`fact_stock_levels`, `fact_vendor_minutes`) for the tables and questions to pick the
//! highest. `occurred_at` is data.
//!
//! **Idempotency without transactions.** ClickHouse inserts are atomic per INSERT, not
//! across tables, and the materialized rollups count every inserted row. So each table
//! keeps a high-water mark per source partition — the highest `src_offset` it holds — and a
//! row at or below it is never inserted again. The marks are loaded from the tables
//! themselves when a partition is (re)assigned and advanced after each successful insert,
//! which makes a retry after a partial failure, a redelivered batch after a crash and a
//! rebalance all write each row exactly once.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use storeflow_avro::{Event, Topic};
use storeflow_ingest::TopicPartition;

use super::config::AnalyticsConfig;
use super::questions::{Question, run};
use super::rows::*;
use super::store::Store;
use crate::reference::{self, ProductFacts, Reference};
use crate::registry::SinkConfig;
use crate::runner::{Batching, Item, Sink, position};
use crate::{Result, Retry, SinkError};

/// The topics analytics reads.
pub const TOPICS: [Topic; 12] = [
    Topic::ExchangeRates,
    Topic::Catalog,
    Topic::Customers,
    Topic::Sessions,
    Topic::Orders,
    Topic::Payments,
    Topic::Fulfillment,
    Topic::Reservations,
    Topic::Lifecycle,
    Topic::FraudScores,
    Topic::VendorSales,
    Topic::StockLevels,
];

#[derive(Clone, Debug)]
struct CatalogEntry {
    dim: DimProduct,
    /// Log position of the event the catalogue fields come from.
    catalog_pos: i64,
    /// Log position of the event the price comes from.
    price_pos: i64,
}

/// Rows of one table with its high-water marks: the idempotency filter.
struct MarkedWriter<'a> {
    store: &'a Store,
    marks: &'a mut HashMap<(&'static str, String, u32), u64>,
}

impl TableWriter for MarkedWriter<'_> {
    async fn write_table<R: FactRow>(&mut self, rows: &[R]) -> Result<()> {
        // The marks of the few source partitions in this batch, looked up once each.
        let mut marks: Vec<(&str, u32, Option<u64>, u64)> = Vec::new();
        let mut stale = false;
        for r in rows {
            let (t, p, o) = r.source();
            let i = match marks.iter().position(|(mt, mp, _, _)| *mt == t && *mp == p) {
                Some(i) => i,
                None => {
                    marks.push((t, p, self.marks.get(&(R::TABLE, t.to_string(), p)).copied(), 0));
                    marks.len() - 1
                }
            };
            stale |= marks[i].2.is_some_and(|m| o <= m);
            marks[i].3 = marks[i].3.max(o);
        }
        if stale {
            let fresh: Vec<R> = rows
                .iter()
                .filter(|r| {
                    let (t, p, o) = r.source();
                    marks.iter().find(|(mt, mp, _, _)| *mt == t && *mp == p).and_then(|m| m.2).is_none_or(|m| o > m)
                })
                .cloned()
                .collect();
            if fresh.is_empty() {
                return Ok(());
            }
            self.store.insert(&fresh).await?;
        } else {
            self.store.insert(rows).await?;
        }
        for (t, p, _, max) in marks {
            let e = self.marks.entry((R::TABLE, t.to_string(), p)).or_insert(max);
            *e = (*e).max(max);
        }
        Ok(())
    }
}

/// The analytics sink.
pub struct AnalyticsSink {
    store: Store,
    batching: Batching,
    /// What facts are joined with: rates and products, read ahead.
    reference: Reference,
    /// The catalogue in the subscription's order: the `dim_products` rows.
    catalog: HashMap<String, CatalogEntry>,
    marks: HashMap<(&'static str, String, u32), u64>,
    loaded: HashSet<(String, u32)>,
    /// The transfers of the orders the batch being written disputes (and of every order it
    /// transfers for): transfer id → (vendor, captured gross, log position). Loaded from
    /// the store before each write, so it holds what the log holds, whatever was restarted.
    transfers: HashMap<String, HashMap<String, (String, i64, i64)>>,
}

/// A transfer of an order, as the store has it (the weights of its disputes).
#[derive(serde::Deserialize)]
struct OrderTransfer {
    movement_id: String,
    vendor_id: String,
    captured_minor: i64,
    src_partition: u32,
    src_offset: u64,
}

/// `amount` split over `weights` in proportion, to the minor unit: each share rounded down,
/// the minor units left over to the largest remainders (ties: the smaller vendor id). The
/// shares add up to `amount`. No positive weight: nothing (the caller books it unattributed).
pub fn split_by_weight(amount: i64, weights: &std::collections::BTreeMap<String, i64>) -> Vec<(String, i64)> {
    let total: i128 = weights.values().filter(|w| **w > 0).map(|w| i128::from(*w)).sum();
    if total == 0 {
        return Vec::new();
    }
    let mut parts: Vec<(String, i64, i128)> = weights
        .iter()
        .filter(|(_, w)| **w > 0)
        .map(|(v, w)| {
            let exact = i128::from(amount) * i128::from(*w);
            (v.clone(), exact.div_euclid(total) as i64, exact.rem_euclid(total))
        })
        .collect();
    let mut left = amount - parts.iter().map(|p| p.1).sum::<i64>();
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by(|a, b| parts[*b].2.cmp(&parts[*a].2).then(parts[*a].0.cmp(&parts[*b].0)));
    for i in order {
        if left == 0 {
            break;
        }
        parts[i].1 += 1;
        left -= 1;
    }
    parts.into_iter().map(|(v, a, _)| (v, a)).collect()
}

fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_default()
}

impl AnalyticsSink {
    /// Opens the store and rebuilds the catalogue and exchange rates from it (the runner
    /// then reads the reference topics ahead, from their start).
    pub async fn open(config: &AnalyticsConfig, base_currency: &str, data_dir: &Path) -> Result<AnalyticsSink> {
        config.validate()?;
        let store = Store::open(config, data_dir).await?;
        let mut sink = AnalyticsSink {
            store,
            batching: config.batching(),
            reference: Reference::new(base_currency),
            catalog: HashMap::new(),
            marks: HashMap::new(),
            loaded: HashSet::new(),
            transfers: HashMap::new(),
        };
        let products: Vec<DimProduct> = run(&sink.store, Question::LoadProducts, &[]).await?;
        for p in products {
            sink.reference.product_facts(ProductFacts {
                product_id: p.product_id.clone(),
                vendor_id: p.vendor_id.clone(),
                sku: p.sku.clone(),
                category: p.category.clone(),
                brand: p.brand.clone(),
                pos: p.pos,
            });
            sink.catalog.insert(p.product_id.clone(), CatalogEntry { catalog_pos: p.pos, price_pos: p.pos, dim: p });
        }
        let rates: Vec<FactExchangeRate> = run(&sink.store, Question::LoadRates, &[]).await?;
        for r in rates {
            let pos = position(r.src_partition, r.src_offset);
            sink.reference.rate(&r.base_currency, &r.quote_currency, r.occurred_at, r.rate_e9, pos);
        }
        Ok(sink)
    }

    /// The reference view the sink joins with.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// The store (shared with the query handle).
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn eur(&self, amount: i64, currency: &str, at: i64) -> i64 {
        // No known rate: 0 in the base column (the original amount stays in its own column).
        self.reference.to_base(amount, currency, at).unwrap_or(0)
    }

    fn product(&self, id: &str) -> Option<&ProductFacts> {
        self.reference.product(id)
    }

    fn by_sku(&self, sku: &str) -> (String, String) {
        match self.reference.by_sku(sku) {
            Some(p) => (p.product_id.clone(), p.vendor_id.clone()),
            None => (String::new(), String::new()),
        }
    }

    fn emit_product(&self, rows: &mut Rows, base: (&str, i64, &Item), id: &str) {
        if let Some(e) = self.catalog.get(id) {
            let (event_id, at, it) = base;
            rows.dim_products.push(DimProduct {
                event_id: event_id.to_string(),
                occurred_at: at,
                pos: it.position(),
                src_topic: it.topic.to_string(),
                src_partition: it.partition,
                src_offset: it.offset,
                ..e.dim.clone()
            });
        }
    }

    /// The vendors' shares of a dispute of `amount` on `order` at log position `pos`: in
    /// proportion to each vendor's gross captured before it. None known: one unattributed
    /// share (vendor `""`).
    fn dispute_shares(&self, order: &str, amount: i64, pos: i64) -> Vec<(String, i64)> {
        let mut weights = std::collections::BTreeMap::new();
        for (vendor, gross, at) in self.transfers.get(order).into_iter().flat_map(|t| t.values()) {
            if *at < pos {
                *weights.entry(vendor.clone()).or_insert(0) += gross;
            }
        }
        let shares = split_by_weight(amount, &weights);
        if shares.is_empty() { vec![(String::new(), amount)] } else { shares }
    }

    /// Loads the transfers of every order `items` disputes from the store (the batch's own
    /// transfers are added as they are mapped).
    async fn load_transfers(&mut self, items: &[Item]) -> Result<()> {
        self.transfers.clear();
        let disputed: HashSet<&str> = items
            .iter()
            .filter_map(|i| match &i.event {
                Event::DisputeOpened(d) => Some(d.order_id.as_str()),
                Event::DisputeClosed(d) => Some(d.order_id.as_str()),
                _ => None,
            })
            .collect();
        for order in disputed {
            let rows: Vec<OrderTransfer> = run(&self.store, Question::OrderGross, &[("order", super::Param::Text(order.to_string()))]).await?;
            let known = self.transfers.entry(order.to_string()).or_default();
            for r in rows {
                known.insert(r.movement_id, (r.vendor_id, r.captured_minor, position(r.src_partition, r.src_offset)));
            }
        }
        Ok(())
    }

    /// Maps one item to rows (updating the catalogue of `dim_products` on the way). Joins
    /// use the reference view as it is: [`Sink::write`] first applies the batch's own
    /// reference records to it, and the runner reads ahead whatever else the log holds.
    pub fn map(&mut self, rows: &mut Rows, it: &Item) {
        let e = &it.event;
        let at = e.occurred_at().millis();
        let pos = it.position();
        let event_id = e.event_id().to_string();
        let src_topic = it.topic.to_string();
        let (src_partition, src_offset) = (it.partition, it.offset);
        macro_rules! row {
            ($t:ident { $($f:ident : $v:expr),* $(,)? }) => {
                $t { event_id: event_id.clone(), occurred_at: at, $($f: $v,)* src_topic: src_topic.clone(), src_partition, src_offset, ..Default::default() }
            };
        }
        let session = |rows: &mut Rows, s: FactSession| rows.fact_sessions.push(s);
        match e {
            Event::ExchangeRateUpdated(r) => rows.fact_exchange_rates.push(row!(FactExchangeRate {
                base_currency: r.base_currency.clone(), quote_currency: r.quote_currency.clone(), rate_e9: r.rate_e9
            })),
            Event::VendorOnboarded(v) => rows.dim_vendors.push(row!(DimVendor {
                vendor_id: v.vendor_id.clone(), name: v.name.clone(), country: v.country.clone(), plan: v.plan.clone(),
                payout_currency: v.payout_currency.clone(), pos: pos
            })),
            Event::ProductCreated(p) => {
                let entry = self.catalog.entry(p.product_id.clone()).or_insert_with(|| CatalogEntry {
                    dim: DimProduct { product_id: p.product_id.clone(), status: "active".into(), ..Default::default() },
                    catalog_pos: i64::MIN,
                    price_pos: i64::MIN,
                });
                if pos >= entry.catalog_pos {
                    entry.catalog_pos = pos;
                    entry.dim.vendor_id = p.vendor_id.clone();
                    entry.dim.sku = p.sku.clone();
                    entry.dim.title = p.title.clone();
                    entry.dim.category = p.category.clone();
                    entry.dim.brand = p.brand.clone();
                    entry.dim.created_at = at;
                }
                if pos >= entry.price_pos {
                    entry.price_pos = pos;
                    entry.dim.price_minor = p.price_minor;
                    entry.dim.currency = p.currency.clone();
                }
                self.emit_product(rows, (&event_id, at, it), &p.product_id);
            }
            Event::ProductUpdated(p) => {
                if let Some(entry) = self.catalog.get_mut(&p.product_id)
                    && pos >= entry.catalog_pos
                {
                    entry.catalog_pos = pos;
                    entry.dim.vendor_id = p.vendor_id.clone();
                    if let Some(v) = &p.title {
                        entry.dim.title = v.clone();
                    }
                    if let Some(v) = &p.category {
                        entry.dim.category = v.clone();
                    }
                    if let Some(v) = &p.brand {
                        entry.dim.brand = v.clone();
                    }
                    if let Some(v) = &p.status {
                        entry.dim.status = v.clone();
                    }
                    self.emit_product(rows, (&event_id, at, it), &p.product_id);
                }
            }
            Event::PriceChanged(p) => {
                let eur = self.eur(p.price_minor, &p.currency, at);
                rows.fact_price_changes.push(row!(FactPriceChange {
                    product_id: p.product_id.clone(), vendor_id: p.vendor_id.clone(), sku: p.sku.clone(),
                    old_price_minor: p.old_price_minor.unwrap_or(-1), price_minor: p.price_minor, currency: p.currency.clone(),
                    price_eur_minor: eur
                }));
                if let Some(entry) = self.catalog.get_mut(&p.product_id)
                    && pos >= entry.price_pos
                {
                    entry.price_pos = pos;
                    entry.dim.price_minor = p.price_minor;
                    entry.dim.currency = p.currency.clone();
                    self.emit_product(rows, (&event_id, at, it), &p.product_id);
                }
            }
            Event::ReviewSubmitted(r) => rows.fact_reviews.push(row!(FactReview {
                review_id: r.review_id.clone(), product_id: r.product_id.clone(), vendor_id: r.vendor_id.clone(),
                customer_id: r.customer_id.clone(), rating: r.rating
            })),
            Event::CustomerRegistered(c) => rows.fact_customer_events.push(row!(FactCustomerEvent {
                event_type: "CustomerRegistered".into(), customer_id: c.customer_id.clone(), country: c.country.clone(),
                marketing_opt_in: u8::from(c.marketing_opt_in)
            })),
            Event::CustomerErased(c) => rows.fact_customer_events.push(row!(FactCustomerEvent {
                event_type: "CustomerErased".into(), customer_id: c.customer_id.clone()
            })),
            Event::PageViewed(v) => session(rows, row!(FactSession {
                event_type: "PageViewed".into(), session_id: v.session_id.clone(), customer_id: opt(&v.customer_id), page: v.page.clone()
            })),
            Event::ProductViewed(v) => session(rows, row!(FactSession {
                event_type: "ProductViewed".into(), session_id: v.session_id.clone(), customer_id: opt(&v.customer_id),
                product_id: v.product_id.clone(), vendor_id: v.vendor_id.clone(), category: v.category.clone()
            })),
            Event::SearchPerformed(v) => session(rows, row!(FactSession {
                event_type: "SearchPerformed".into(), session_id: v.session_id.clone(), customer_id: opt(&v.customer_id),
                search_query: v.query.clone(), category: opt(&v.category), result_count: v.result_count
            })),
            Event::CartItemAdded(v) => {
                let amount = i64::from(v.quantity) * v.unit_price_minor;
                let eur = self.eur(amount, &v.currency, at);
                let category = self.product(&v.product_id).map(|p| p.category.clone()).unwrap_or_default();
                session(rows, row!(FactSession {
                    event_type: "CartItemAdded".into(), session_id: v.session_id.clone(), customer_id: opt(&v.customer_id),
                    product_id: v.product_id.clone(), vendor_id: v.vendor_id.clone(), category: category, sku: v.sku.clone(),
                    cart_id: v.cart_id.clone(), quantity: v.quantity, amount_minor: amount, currency: v.currency.clone(),
                    amount_eur_minor: eur
                }))
            }
            Event::CartItemRemoved(v) => session(rows, row!(FactSession {
                event_type: "CartItemRemoved".into(), session_id: v.session_id.clone(), customer_id: opt(&v.customer_id),
                product_id: v.product_id.clone(), sku: v.sku.clone(), cart_id: v.cart_id.clone(), quantity: v.quantity
            })),
            Event::CheckoutStarted(v) => {
                let eur = self.eur(v.subtotal_minor, &v.currency, at);
                session(rows, row!(FactSession {
                    event_type: "CheckoutStarted".into(), session_id: v.session_id.clone(), customer_id: opt(&v.customer_id),
                    cart_id: v.cart_id.clone(), quantity: v.item_count, amount_minor: v.subtotal_minor, currency: v.currency.clone(),
                    amount_eur_minor: eur
                }))
            }
            Event::OrderPlaced(o) => {
                let total = o.total_minor();
                let eur = self.eur(total, &o.currency, at);
                rows.fact_orders.push(row!(FactOrder {
                    order_id: o.order_id.clone(), customer_id: o.customer_id.clone(), session_id: opt(&o.session_id),
                    customer_since: o.customer_since.map_or(0, |t| t.millis()), currency: o.currency.clone(),
                    subtotal_minor: o.subtotal_minor(), shipping_minor: o.shipping_minor, tax_minor: o.tax_minor,
                    discount_minor: o.discount_minor, total_minor: total, total_eur_minor: eur, lines: o.items.len() as i32,
                    units: o.items.iter().map(|i| i.quantity).sum(), ship_country: o.shipping_address.country.clone(),
                    bill_country: o.billing_address.country.clone()
                }));
                for (n, l) in o.items.iter().enumerate() {
                    let line_total = i64::from(l.quantity) * l.unit_price_minor;
                    let line_eur = self.eur(line_total, &o.currency, at);
                    let (category, brand) = self.product(&l.product_id).map(|p| (p.category.clone(), p.brand.clone())).unwrap_or_default();
                    rows.fact_order_items.push(row!(FactOrderItem {
                        order_id: o.order_id.clone(), customer_id: o.customer_id.clone(), line_no: n as i32, sku: l.sku.clone(),
                        product_id: l.product_id.clone(), vendor_id: l.vendor_id.clone(), category: category, brand: brand,
                        quantity: l.quantity, unit_price_minor: l.unit_price_minor, currency: o.currency.clone(),
                        line_total_minor: line_total, line_total_eur_minor: line_eur
                    }));
                }
            }
            Event::OrderCancelRequested(c) => rows.fact_order_requests.push(row!(FactOrderRequest {
                request_type: "cancel".into(), order_id: c.order_id.clone(), reason: c.reason.clone(), requested_by: c.requested_by.clone()
            })),
            Event::ReturnRequested(r) => {
                for l in &r.items {
                    let (product_id, vendor_id) = self.by_sku(&l.sku);
                    rows.fact_order_requests.push(row!(FactOrderRequest {
                        request_type: "return".into(), order_id: r.order_id.clone(), return_id: r.return_id.clone(),
                        sku: l.sku.clone(), product_id: product_id, vendor_id: vendor_id, quantity: l.quantity,
                        reason: r.reason.clone()
                    }));
                }
            }
            Event::OrderStatusChanged(s) => {
                let eur = self.eur(s.total_minor, &s.currency, at);
                rows.fact_order_status.push(row!(FactOrderStatus {
                    order_id: s.order_id.clone(), customer_id: s.customer_id.clone(), previous_status: opt(&s.previous_status),
                    status: s.status.clone(), payment_status: s.payment_status.clone(), fulfillment_status: s.fulfillment_status.clone(),
                    reason: s.reason.clone(), total_minor: s.total_minor, currency: s.currency.clone(), total_eur_minor: eur
                }));
            }
            Event::PaymentAuthorized(p) => {
                let eur = self.eur(p.amount_minor, &p.currency, at);
                rows.fact_payments.push(row!(FactPayment {
                    event_type: "PaymentAuthorized".into(), order_id: p.order_id.clone(), payment_id: p.payment_id.clone(),
                    amount_minor: p.amount_minor, currency: p.currency.clone(), amount_eur_minor: eur, provider: p.provider.clone()
                }));
            }
            Event::PaymentCaptured(p) => {
                let eur = self.eur(p.amount_minor, &p.currency, at);
                rows.fact_payments.push(row!(FactPayment {
                    event_type: "PaymentCaptured".into(), order_id: p.order_id.clone(), payment_id: p.payment_id.clone(),
                    amount_minor: p.amount_minor, currency: p.currency.clone(), amount_eur_minor: eur
                }));
            }
            Event::PaymentFailed(p) => {
                let eur = self.eur(p.amount_minor, &p.currency, at);
                rows.fact_payments.push(row!(FactPayment {
                    event_type: "PaymentFailed".into(), order_id: p.order_id.clone(), payment_id: opt(&p.payment_id),
                    amount_minor: p.amount_minor, currency: p.currency.clone(), amount_eur_minor: eur,
                    failure_code: p.failure_code.clone(), reason: p.failure_message.clone()
                }));
            }
            Event::RefundIssued(r) => {
                let eur = self.eur(r.amount_minor, &r.currency, at);
                rows.fact_payments.push(row!(FactPayment {
                    event_type: "RefundIssued".into(), order_id: r.order_id.clone(), payment_id: r.payment_id.clone(),
                    refund_id: r.refund_id.clone(), amount_minor: r.amount_minor, currency: r.currency.clone(),
                    amount_eur_minor: eur, reason: r.reason.clone()
                }));
                for (n, l) in r.lines.iter().enumerate() {
                    let leur = self.eur(l.amount_minor, &r.currency, at);
                    rows.fact_refund_lines.push(row!(FactRefundLine {
                        order_id: r.order_id.clone(), refund_id: r.refund_id.clone(), line_no: n as i32, sku: l.sku.clone(),
                        vendor_id: l.vendor_id.clone(), quantity: l.quantity, amount_minor: l.amount_minor,
                        currency: r.currency.clone(), amount_eur_minor: leur
                    }));
                }
            }
            Event::ShipmentCreated(s) => rows.fact_fulfillment.push(row!(FactFulfillment {
                event_type: "ShipmentCreated".into(), order_id: s.order_id.clone(), shipment_id: s.shipment_id.clone(),
                warehouse_id: s.warehouse_id.clone(), carrier: s.carrier.clone(), units: s.lines.iter().map(|l| l.quantity).sum()
            })),
            Event::ShipmentShipped(s) => rows.fact_fulfillment.push(row!(FactFulfillment {
                event_type: "ShipmentShipped".into(), order_id: s.order_id.clone(), shipment_id: s.shipment_id.clone(),
                warehouse_id: s.warehouse_id.clone(), units: s.lines.iter().map(|l| l.quantity).sum()
            })),
            Event::ShipmentDelivered(s) => rows.fact_fulfillment.push(row!(FactFulfillment {
                event_type: "ShipmentDelivered".into(), order_id: s.order_id.clone(), shipment_id: s.shipment_id.clone()
            })),
            Event::ReturnReceived(r) => rows.fact_fulfillment.push(row!(FactFulfillment {
                event_type: "ReturnReceived".into(), order_id: r.order_id.clone(), return_id: r.return_id.clone(),
                warehouse_id: r.warehouse_id.clone(), units: r.lines.iter().map(|l| l.quantity).sum(),
                restockable: u8::from(r.restockable)
            })),
            Event::StockLevelChanged(s) => {
                let (product_id, vendor_id) = self.by_sku(&s.sku);
                rows.fact_stock_levels.push(row!(FactStockLevel {
                    sku: s.sku.clone(), product_id: product_id, vendor_id: vendor_id, warehouse_id: s.warehouse_id.clone(),
                    on_hand: s.on_hand, reserved: s.reserved, available: s.available, cause: s.cause.clone(),
                    version: s.version
                }));
            }
            Event::ReservationMade(r) => {
                for l in &r.lines {
                    rows.fact_reservations.push(row!(FactReservation {
                        event_type: "ReservationMade".into(), order_id: r.order_id.clone(), sku: l.sku.clone(),
                        warehouse_id: l.warehouse_id.clone(), quantity: l.quantity
                    }));
                }
            }
            Event::ReservationReleased(r) => {
                for l in &r.lines {
                    rows.fact_reservations.push(row!(FactReservation {
                        event_type: "ReservationReleased".into(), order_id: r.order_id.clone(), sku: l.sku.clone(),
                        warehouse_id: l.warehouse_id.clone(), quantity: l.quantity, reason: r.reason.clone()
                    }));
                }
            }
            Event::ReservationCommitted(r) => {
                for l in &r.lines {
                    rows.fact_reservations.push(row!(FactReservation {
                        event_type: "ReservationCommitted".into(), order_id: r.order_id.clone(), sku: l.sku.clone(),
                        warehouse_id: l.warehouse_id.clone(), quantity: l.quantity
                    }));
                }
            }
            Event::ReservationRejected(r) => {
                for m in &r.missing {
                    rows.fact_reservations.push(row!(FactReservation {
                        event_type: "ReservationRejected".into(), order_id: r.order_id.clone(), sku: m.sku.clone(),
                        quantity: m.requested, reason: r.reason.clone()
                    }));
                }
            }
            Event::FraudScored(f) => rows.fact_fraud_scores.push(row!(FactFraudScore {
                order_id: f.order_id.clone(), customer_id: f.customer_id.clone(), score: f.score, decision: f.decision.clone(),
                reasons: f.reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>().join(",")
            })),
            Event::VendorSalesMinute(v) => rows.fact_vendor_minutes.push(row!(FactVendorMinute {
                vendor_id: v.vendor_id.clone(), minute: v.minute.millis(), currency: v.currency.clone(), orders: v.orders,
                units: v.units, gmv_minor: v.gmv_minor, refunds_minor: v.refunds_minor, commission_minor: v.commission_minor,
                net_payout_minor: v.net_payout_minor, base_currency: v.base_currency.clone(), gmv_base_minor: v.gmv_base_minor,
                net_payout_base_minor: v.net_payout_base_minor, version: v.version
            })),
            Event::VendorTransferCreated(t) => {
                self.transfers.entry(t.order_id.clone()).or_default().insert(t.transfer_id.clone(), (t.vendor_id.clone(), t.gross_minor, pos));
                rows.fact_vendor_money.push(row!(FactVendorMoney {
                    kind: "transfer".into(), order_id: t.order_id.clone(), payment_id: t.payment_id.clone(), vendor_id: t.vendor_id.clone(),
                    currency: t.currency.clone(), movement_id: t.transfer_id.clone(), captured_minor: t.gross_minor,
                    transferred_minor: t.amount_minor, commission_minor: t.commission_minor
                }));
            }
            Event::VendorTransferReversed(r) => rows.fact_vendor_money.push(row!(FactVendorMoney {
                kind: "reversal".into(), order_id: r.order_id.clone(), vendor_id: r.vendor_id.clone(), currency: r.currency.clone(),
                movement_id: r.reversal_id.clone(), refund_id: r.refund_id.clone(), refunded_minor: r.refunded_minor,
                transferred_minor: -r.amount_minor, commission_minor: -r.commission_minor
            })),
            Event::DisputeOpened(d) => {
                for (vendor, share) in self.dispute_shares(&d.order_id, d.amount_minor, pos) {
                    rows.fact_vendor_money.push(row!(FactVendorMoney {
                        kind: "dispute_opened".into(), order_id: d.order_id.clone(), payment_id: d.payment_id.clone(), vendor_id: vendor,
                        currency: d.currency.clone(), movement_id: d.dispute_id.clone(), status: d.status.clone(), disputed_minor: share
                    }));
                }
            }
            Event::DisputeClosed(d) => {
                let lost = d.status == "lost";
                for (vendor, share) in self.dispute_shares(&d.order_id, d.amount_minor, pos) {
                    rows.fact_vendor_money.push(row!(FactVendorMoney {
                        kind: "dispute_closed".into(), order_id: d.order_id.clone(), payment_id: d.payment_id.clone(), vendor_id: vendor,
                        currency: d.currency.clone(), movement_id: d.dispute_id.clone(), status: d.status.clone(),
                        dispute_lost_minor: if lost { share } else { 0 }
                    }));
                }
            }
            _ => {}
        }
    }

    async fn load_marks(&mut self, items: &[Item]) -> Result<()> {
        let missing: HashSet<(String, u32)> =
            items.iter().map(|i| (i.topic.to_string(), i.partition)).filter(|tp| !self.loaded.contains(tp)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let topics: Vec<String> = missing.iter().map(|(t, _)| t.clone()).collect::<HashSet<_>>().into_iter().collect();
        for table in Rows::TABLES {
            let marks = self.store.marks(table, &topics).await?;
            for ((t, p), o) in marks {
                if missing.contains(&(t.clone(), p)) {
                    let e = self.marks.entry((table, t, p)).or_insert(o);
                    *e = (*e).max(o);
                }
            }
        }
        self.loaded.extend(missing);
        Ok(())
    }
}

/// True if analytics writes something for `e`.
pub fn wants(e: &Event) -> bool {
    TOPICS.contains(&e.topic()) && !matches!(e, Event::LowStockAlert(_))
}

impl Sink for AnalyticsSink {
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

    async fn assigned(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        for tp in partitions {
            self.loaded.remove(&(tp.topic.to_string(), tp.partition));
            self.marks.retain(|(_, t, p), _| !(**t == *tp.topic && *p == tp.partition));
        }
        Ok(())
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
        self.load_marks(items).await?;
        self.load_transfers(items).await?;
        // The batch's own rates and products count for every fact in it, before or after
        // them (a no-op when the runner has read them ahead).
        self.refer(items);
        let mut rows = Rows::default();
        for it in items {
            self.map(&mut rows, it);
        }
        let mut w = MarkedWriter { store: &self.store, marks: &mut self.marks };
        rows.write(&mut w).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::split_by_weight;

    #[test]
    fn a_dispute_split_by_gross_adds_up_to_the_minor_unit() {
        let w: BTreeMap<String, i64> = [("v-a".to_string(), 10_000), ("v-b".to_string(), 3_333)].into();
        // 750.19 and 249.98: the unit left over goes to the larger remainder.
        assert_eq!(split_by_weight(1_000, &w), vec![("v-a".into(), 750), ("v-b".into(), 250)]);
        let thirds: BTreeMap<String, i64> = [("a".to_string(), 1), ("b".to_string(), 1), ("c".to_string(), 1)].into();
        assert_eq!(split_by_weight(100, &thirds), vec![("a".into(), 34), ("b".into(), 33), ("c".into(), 33)]);
        assert!(split_by_weight(5, &BTreeMap::new()).is_empty());
        assert_eq!(split_by_weight(7, &[("x".to_string(), 0), ("y".to_string(), 3)].into()), vec![("y".into(), 7)]);
    }
}
