//! Views the API keeps itself, built from the log: orders (their events and the saga's
//! `OrderStatusChanged`), stock levels (`StockLevelChanged` on `inventory.levels`), the
//! catalog, recommendations (`RecommendationsUpdated`, with out-of-stock products left
//! out), vendor sales (`VendorSalesMinute`, also pushed to SSE subscribers) and a simple
//! dashboard. They live in memory and are rebuilt from the start of the topics at each
//! start — the embedded default; with the `sinks` feature the read model, search index and
//! analytics can answer instead. Sessions and sign-ups older than the dashboard's 30 days
//! are forgotten; orders, stock, the catalog and sales minutes are kept for the log's
//! retention (what the read model is for at scale).
//!
//! Reads: `storefront.{orders,payments,fulfillment,catalog,customers,sessions,exchange_rates}`,
//! `orders.lifecycle`, `inventory.reservations`, `inventory.levels`, `fraud.scores`,
//! `recommendations.updates`, `sales.vendor_minute`. Writes nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::FutureExt;
use parking_lot::{Mutex, RwLock};
use storeflow_avro::money::Rates;
use storeflow_avro::{Codec, Event, OrderStatus, Timestamp, Topic};
use storeflow_ingest::{ConsumerConfig, Log, LogError, TopicPartition};
use tokio::sync::broadcast;

use crate::read::*;

/// Events of one order kept in its history (the oldest are dropped past this).
const MAX_HISTORY: usize = 500;

/// The topics the views read.
pub const TOPICS: &[Topic] = &[
    Topic::Orders,
    Topic::Payments,
    Topic::Fulfillment,
    Topic::Catalog,
    Topic::Customers,
    Topic::Sessions,
    Topic::ExchangeRates,
    Topic::Lifecycle,
    Topic::Reservations,
    Topic::StockLevels,
    Topic::FraudScores,
    Topic::Recommendations,
    Topic::VendorSales,
];

/// The topics the views must read when sinks serve some reads (`read_model`: orders,
/// stock and products from the read model; `analytics`: the dashboard and vendor
/// performance from analytics). What always stays on the views: prices by sku (to place
/// orders), exchange rates, stock levels (to drop sold-out recommendations),
/// recommendations and vendor sales. Leaving the rest out keeps the API from decoding every
/// page view and from holding every order in memory when Postgres already serves them.
pub fn topics_beside_sinks(read_model: bool, analytics: bool) -> Vec<Topic> {
    TOPICS
        .iter()
        .copied()
        .filter(|t| match t {
            Topic::Catalog | Topic::ExchangeRates | Topic::StockLevels | Topic::Recommendations | Topic::VendorSales => true,
            // Orders' own views, and the dashboard's top products.
            Topic::Orders | Topic::Payments | Topic::Fulfillment | Topic::Lifecycle | Topic::Reservations | Topic::FraudScores => {
                !read_model || !analytics
            }
            // The dashboard's sessions and new customers.
            Topic::Sessions | Topic::Customers => !analytics,
            _ => true,
        })
        .collect()
}

/// Rates into EUR, the currency the views' sums are in.
struct EurRates(Rates);

impl Default for EurRates {
    fn default() -> Self {
        EurRates(Rates::new("EUR"))
    }
}

#[derive(Default)]
struct State {
    orders: HashMap<String, Order>,
    stock: HashMap<String, BTreeMap<String, WarehouseStock>>,
    products: HashMap<String, Product>,
    product_of_sku: HashMap<String, String>,
    reviews: HashMap<String, (i64, i64)>,
    vendor_reviews: HashMap<String, (i64, i64)>,
    recos: HashMap<(String, String), Vec<ScoredProduct>>,
    sales: HashMap<String, BTreeMap<(i64, String), SalesBucket>>,
    customers: Vec<i64>,
    sessions: HashMap<String, i64>,
    /// Units of the quote currency per EUR, × 10⁹.
    /// Exchange rates, for sums in EUR (the contract's rules: `storeflow_avro::money`).
    rates: EurRates,
}

/// The API's own views, fed by a consumer thread. Cheap to share (`Arc`).
pub struct LogViews {
    state: RwLock<State>,
    sales_tx: broadcast::Sender<(String, SalesBucket)>,
    caught_up: AtomicBool,
    failed: Mutex<Option<String>>,
    stop: AtomicBool,
}

impl std::fmt::Debug for LogViews {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogViews").field("caught_up", &self.caught_up.load(Ordering::Relaxed)).finish()
    }
}

impl LogViews {
    /// Empty views, fed by [`LogViews::apply`] only (tests).
    pub fn new() -> Arc<LogViews> {
        Arc::new(LogViews {
            state: RwLock::new(State::default()),
            sales_tx: broadcast::channel(4096).0,
            caught_up: AtomicBool::new(true),
            failed: Mutex::new(None),
            stop: AtomicBool::new(false),
        })
    }

    /// Views fed from `log` by a thread that reads [`TOPICS`] from their first record
    /// (outside any consumer group: nothing is committed). `/readyz` waits until the
    /// thread has read what was there at start.
    pub fn start(log: Arc<dyn Log>, codec: Arc<Codec>) -> Result<Arc<LogViews>, LogError> {
        Self::start_reading(log, codec, TOPICS)
    }

    /// Views fed from `topics` only (see [`topics_beside_sinks`]): the views of the other
    /// topics stay empty.
    pub fn start_reading(log: Arc<dyn Log>, codec: Arc<Codec>, topics: &[Topic]) -> Result<Arc<LogViews>, LogError> {
        let views = LogViews::new();
        views.caught_up.store(false, Ordering::SeqCst);
        let infos = log.describe_topics()?;
        let mut assignment = Vec::new();
        let mut ends = HashMap::new();
        for t in topics {
            let Some(info) = infos.iter().find(|i| i.name == t.name()) else { continue };
            for p in &info.partitions {
                let tp = TopicPartition::new(t.name(), p.partition);
                assignment.push((tp.clone(), p.start));
                if p.end > p.start {
                    ends.insert(tp, p.end);
                }
            }
        }
        let mut consumer = log.consumer(ConsumerConfig::new("storeflow.api.views"), None)?;
        consumer.assign(&assignment)?;
        let weak: Weak<LogViews> = Arc::downgrade(&views);
        std::thread::Builder::new()
            .name("api-views".into())
            .spawn(move || {
                let mut behind = ends;
                loop {
                    let Some(views) = weak.upgrade() else { break };
                    if views.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match consumer.poll(2000, Duration::from_millis(100)) {
                        Ok(records) => {
                            for r in &records {
                                if let Some(value) = &r.value {
                                    match codec.decode(value) {
                                        Ok(e) => {
                                            // A bug in a view must not stop the others: skip
                                            // the record, say so, keep reading.
                                            let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| views.apply(&e)));
                                            if applied.is_err() {
                                                tracing::error!(topic = %r.topic, offset = r.offset, "api views could not apply a {}", e.name());
                                            }
                                        }
                                        Err(e) => tracing::warn!(topic = %r.topic, offset = r.offset, "api views skip a record: {e}"),
                                    }
                                }
                            }
                            // Positions, not record offsets: on Kafka transaction markers
                            // take offsets too.
                            behind.retain(|tp, end| consumer.position(tp).is_some_and(|p| p < *end));
                            if behind.is_empty() && !views.caught_up.load(Ordering::Relaxed) {
                                views.caught_up.store(true, Ordering::SeqCst);
                            }
                        }
                        Err(e) => {
                            tracing::error!("api views stopped reading the log: {e}");
                            *views.failed.lock() = Some(e.to_string());
                            break;
                        }
                    }
                }
                let _ = consumer.close();
            })
            .map_err(|e| LogError::Io { context: "starting the api views thread".into(), source: e })?;
        Ok(views)
    }

    /// Stops the feeding thread.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// True once everything on the log at start has been read.
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::SeqCst)
    }

    /// Every read trait answered by these views; no search backend (503 until one is
    /// configured).
    pub fn reads(self: &Arc<Self>) -> Reads {
        Reads {
            orders: self.clone(),
            inventory: self.clone(),
            catalog: self.clone(),
            recommendations: self.clone(),
            sales: self.clone(),
            search: None,
            analytics: Some(self.clone()),
            readiness: vec![("views", self.clone())],
        }
    }

    /// Applies one event to the views.
    pub fn apply(&self, event: &Event) {
        let mut s = self.state.write();
        let topic = event.topic();
        let is_order_topic = matches!(
            topic,
            Topic::Orders | Topic::Payments | Topic::Fulfillment | Topic::Lifecycle | Topic::Reservations | Topic::FraudScores
        ) && !matches!(event, Event::LowStockAlert(_));
        if is_order_topic {
            let id = event.key();
            let o = s.orders.entry(id.clone()).or_insert_with(|| empty_order(&id));
            if o.history.len() >= MAX_HISTORY {
                o.history.remove(0);
            }
            o.history.push(OrderEvent {
                event_id: event.event_id().to_string(),
                event_type: event.name().to_string(),
                occurred_at: event.occurred_at().millis(),
                payload: event.to_json(),
            });
        }
        match event {
            Event::OrderPlaced(p) => {
                let o = s.orders.entry(p.order_id.clone()).or_insert_with(|| empty_order(&p.order_id));
                o.customer_id = Some(p.customer_id.clone());
                o.currency = Some(p.currency.clone());
                o.placed_at = Some(p.occurred_at.millis());
                o.items = p
                    .items
                    .iter()
                    .map(|i| OrderLine {
                        sku: i.sku.clone(),
                        product_id: i.product_id.clone(),
                        vendor_id: i.vendor_id.clone(),
                        quantity: i64::from(i.quantity),
                        unit_price_minor: i.unit_price_minor,
                    })
                    .collect();
                // Saturating: absurd amounts from outside must not panic the views.
                let subtotal = p
                    .items
                    .iter()
                    .fold(0i64, |a, i| a.saturating_add(i64::from(i.quantity).saturating_mul(i.unit_price_minor)));
                o.totals = OrderTotals {
                    subtotal_minor: subtotal,
                    shipping_minor: p.shipping_minor,
                    tax_minor: p.tax_minor,
                    discount_minor: p.discount_minor,
                    total_minor: subtotal.saturating_add(p.shipping_minor).saturating_add(p.tax_minor).saturating_sub(p.discount_minor),
                };
            }
            Event::OrderStatusChanged(c) => {
                let o = s.orders.entry(c.order_id.clone()).or_insert_with(|| empty_order(&c.order_id));
                o.status = c.status.clone();
                o.payment_status = c.payment_status.clone();
                o.fulfillment_status = c.fulfillment_status.clone();
                o.status_reason = Some(c.reason.clone());
                o.customer_id.get_or_insert_with(|| c.customer_id.clone());
                o.currency.get_or_insert_with(|| c.currency.clone());
            }
            Event::ReservationMade(r) => {
                let o = s.orders.entry(r.order_id.clone()).or_insert_with(|| empty_order(&r.order_id));
                o.reservations = r
                    .lines
                    .iter()
                    .map(|l| OrderReservation {
                        sku: l.sku.clone(),
                        warehouse_id: l.warehouse_id.clone(),
                        quantity: i64::from(l.quantity),
                        status: "held".into(),
                    })
                    .collect();
            }
            Event::ReservationReleased(r) => mark(&mut s, &r.order_id, "released"),
            Event::ReservationCommitted(r) => mark(&mut s, &r.order_id, "committed"),
            Event::StockLevelChanged(l) => {
                s.stock.entry(l.sku.clone()).or_default().insert(
                    l.warehouse_id.clone(),
                    WarehouseStock {
                        warehouse_id: l.warehouse_id.clone(),
                        on_hand: i64::from(l.on_hand),
                        reserved: i64::from(l.reserved),
                        available: i64::from(l.available),
                    },
                );
            }
            Event::ProductCreated(p) => {
                s.product_of_sku.insert(p.sku.clone(), p.product_id.clone());
                let (sum, n) = s.reviews.get(&p.product_id).copied().unwrap_or((0, 0));
                s.products.insert(
                    p.product_id.clone(),
                    Product {
                        product_id: p.product_id.clone(),
                        vendor_id: p.vendor_id.clone(),
                        sku: Some(p.sku.clone()),
                        title: Some(p.title.clone()),
                        description: Some(p.description.clone()),
                        category: Some(p.category.clone()),
                        brand: Some(p.brand.clone()),
                        status: "active".into(),
                        price_minor: Some(p.price_minor),
                        currency: Some(p.currency.clone()),
                        rating_avg: (n > 0).then(|| sum as f64 / n as f64),
                        rating_count: n,
                    },
                );
            }
            Event::ProductUpdated(u) => {
                if let Some(p) = s.products.get_mut(&u.product_id) {
                    if let Some(v) = &u.title {
                        p.title = Some(v.clone());
                    }
                    if let Some(v) = &u.description {
                        p.description = Some(v.clone());
                    }
                    if let Some(v) = &u.category {
                        p.category = Some(v.clone());
                    }
                    if let Some(v) = &u.brand {
                        p.brand = Some(v.clone());
                    }
                    if let Some(v) = &u.status {
                        p.status = v.clone();
                    }
                }
            }
            Event::PriceChanged(c) => {
                if let Some(p) = s.products.get_mut(&c.product_id) {
                    p.price_minor = Some(c.price_minor);
                    p.currency = Some(c.currency.clone());
                }
            }
            Event::ReviewSubmitted(r) => {
                let e = s.reviews.entry(r.product_id.clone()).or_default();
                e.0 += i64::from(r.rating);
                e.1 += 1;
                let (sum, n) = *e;
                let v = s.vendor_reviews.entry(r.vendor_id.clone()).or_default();
                v.0 += i64::from(r.rating);
                v.1 += 1;
                if let Some(p) = s.products.get_mut(&r.product_id) {
                    p.rating_avg = Some(sum as f64 / n as f64);
                    p.rating_count = n;
                }
            }
            Event::RecommendationsUpdated(r) => {
                let key = match r.kind.as_str() {
                    "trending" => r.category.clone().unwrap_or_default(),
                    "for_session" => r.session_id.clone().unwrap_or_default(),
                    _ => r.product_id.clone(),
                };
                let items = r.items.iter().map(|i| ScoredProduct { product_id: i.product_id.clone(), score: i.score }).collect();
                s.recos.insert((r.kind.clone(), key), items);
            }
            Event::VendorSalesMinute(m) => {
                let b = SalesBucket {
                    start: m.minute.millis(),
                    currency: m.currency.clone(),
                    orders: i64::from(m.orders),
                    units: i64::from(m.units),
                    gmv_minor: m.gmv_minor,
                    refunds_minor: m.refunds_minor,
                    commission_minor: m.commission_minor,
                    net_payout_minor: m.net_payout_minor,
                    base_currency: m.base_currency.clone(),
                    gmv_base_minor: m.gmv_base_minor,
                    net_payout_base_minor: m.net_payout_base_minor,
                };
                s.sales.entry(m.vendor_id.clone()).or_default().insert((b.start, b.currency.clone()), b.clone());
                // No subscriber is fine: the send fails and nobody misses anything.
                let _ = self.sales_tx.send((m.vendor_id.clone(), b));
            }
            Event::CustomerRegistered(c) => s.customers.push(c.occurred_at.millis()),
            Event::ExchangeRateUpdated(r) => s.rates.0.record(&r.base_currency, &r.quote_currency, r.occurred_at.millis(), r.rate_e9),
            e if topic == Topic::Sessions => {
                let at = e.occurred_at().millis();
                s.sessions.entry(e.key()).or_insert(at);
                // Only the dashboard's longest range (30 days) needs sessions and sign-ups:
                // forget older ones now and then, so these two stay bounded.
                if s.sessions.len().is_multiple_of(100_000) {
                    let horizon = Timestamp::now().millis() - Range::Month.millis() - 86_400_000;
                    s.sessions.retain(|_, t| *t >= horizon);
                    s.customers.retain(|t| *t >= horizon);
                }
            }
            _ => {}
        }
    }

    fn in_stock(s: &State, product_id: &str) -> bool {
        let Some(sku) = s.products.get(product_id).and_then(|p| p.sku.as_ref()) else {
            return true; // unknown product: nothing says it is out of stock
        };
        s.stock.get(sku).is_some_and(|w| w.values().map(|w| w.available).sum::<i64>() > 0)
    }
}

fn empty_order(id: &str) -> Order {
    Order {
        order_id: id.to_string(),
        customer_id: None,
        currency: None,
        status: "placed".into(),
        payment_status: "pending".into(),
        fulfillment_status: "unfulfilled".into(),
        status_reason: None,
        placed_at: None,
        items: Vec::new(),
        totals: OrderTotals::default(),
        reservations: Vec::new(),
        history: Vec::new(),
    }
}

fn mark(s: &mut State, order_id: &str, status: &str) {
    if let Some(o) = s.orders.get_mut(order_id) {
        for r in &mut o.reservations {
            r.status = status.to_string();
        }
    }
}

/// `amount` of `currency` in EUR minor units at `at`, with the rate in force then; 0 when no
/// rate is known yet (as the sinks count it).
fn to_eur(s: &State, amount: i64, currency: &str, at: i64) -> i64 {
    s.rates.0.to_base(amount, currency, at).unwrap_or(0)
}

impl OrdersRead for LogViews {
    fn order<'a>(&'a self, order_id: &'a str) -> ReadFuture<'a, Option<Order>> {
        let mut o = self.state.read().orders.get(order_id).cloned();
        if let Some(o) = &mut o {
            o.history.sort_by_key(|e| e.occurred_at);
            if o.placed_at.is_none() && o.history.iter().all(|e| e.event_type != "OrderPlaced") {
                // Events about an order never placed here (e.g. a stray payment): unknown.
                return async { Ok(None) }.boxed();
            }
        }
        async move { Ok(o) }.boxed()
    }
}

impl InventoryRead for LogViews {
    fn inventory<'a>(&'a self, sku: &'a str) -> ReadFuture<'a, Option<Inventory>> {
        let inv = self.state.read().stock.get(sku).map(|w| {
            let warehouses: Vec<WarehouseStock> = w.values().cloned().collect();
            Inventory {
                sku: sku.to_string(),
                on_hand: warehouses.iter().map(|w| w.on_hand).sum(),
                reserved: warehouses.iter().map(|w| w.reserved).sum(),
                available: warehouses.iter().map(|w| w.available).sum(),
                warehouses,
            }
        });
        async move { Ok(inv) }.boxed()
    }
}

impl CatalogRead for LogViews {
    fn product<'a>(&'a self, product_id: &'a str) -> ReadFuture<'a, Option<Product>> {
        let p = self.state.read().products.get(product_id).cloned();
        async move { Ok(p) }.boxed()
    }

    fn product_by_sku<'a>(&'a self, sku: &'a str) -> ReadFuture<'a, Option<Product>> {
        let s = self.state.read();
        let p = s.product_of_sku.get(sku).and_then(|id| s.products.get(id)).cloned();
        async move { Ok(p) }.boxed()
    }
}

impl RecommendationsRead for LogViews {
    fn recommendations<'a>(&'a self, list: &'a RecoList, limit: usize) -> ReadFuture<'a, Vec<ScoredProduct>> {
        let s = self.state.read();
        let get = |kind: &str, key: &str| s.recos.get(&(kind.to_string(), key.to_string())).cloned().unwrap_or_default();
        let mut items = match list {
            RecoList::Similar(p) => get("similar", p),
            RecoList::BoughtTogether(p) => get("bought_together", p),
            RecoList::ForSession(sid) => get("for_session", sid),
            RecoList::Trending(Some(c)) => get("trending", c),
            RecoList::Trending(None) => {
                let mut all: Vec<ScoredProduct> =
                    s.recos.iter().filter(|((k, _), _)| k == "trending").flat_map(|(_, v)| v.iter().cloned()).collect();
                all.sort_by(|a, b| b.score.total_cmp(&a.score));
                all
            }
        };
        let mut seen = HashSet::new();
        items.retain(|i| seen.insert(i.product_id.clone()) && LogViews::in_stock(&s, &i.product_id));
        items.truncate(limit);
        async move { Ok(items) }.boxed()
    }
}

impl SalesRead for LogViews {
    fn sales<'a>(&'a self, vendor_id: &'a str, from: i64, to: i64, granularity: Granularity) -> ReadFuture<'a, Vec<SalesBucket>> {
        let s = self.state.read();
        let width = granularity.millis();
        let mut out: BTreeMap<(i64, String), SalesBucket> = BTreeMap::new();
        if let Some(minutes) = s.sales.get(vendor_id) {
            for ((start, currency), b) in minutes.range((from, String::new())..) {
                if *start >= to {
                    break;
                }
                let bucket = start.div_euclid(width) * width;
                let e = out.entry((bucket, currency.clone())).or_insert_with(|| SalesBucket {
                    start: bucket,
                    currency: currency.clone(),
                    base_currency: b.base_currency.clone(),
                    ..SalesBucket::default()
                });
                e.orders += b.orders;
                e.units += b.units;
                e.gmv_minor += b.gmv_minor;
                e.refunds_minor += b.refunds_minor;
                e.commission_minor += b.commission_minor;
                e.net_payout_minor += b.net_payout_minor;
                e.gmv_base_minor += b.gmv_base_minor;
                e.net_payout_base_minor += b.net_payout_base_minor;
            }
        }
        let v = out.into_values().collect();
        async move { Ok(v) }.boxed()
    }

    fn subscribe(&self) -> broadcast::Receiver<(String, SalesBucket)> {
        self.sales_tx.subscribe()
    }
}

fn top<K: Ord + Clone>(m: HashMap<K, (i64, i64)>, n: usize) -> Vec<(K, i64, i64)> {
    let mut v: Vec<(K, i64, i64)> = m.into_iter().map(|(k, (u, g))| (k, u, g)).collect();
    v.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    v.truncate(n);
    v
}

impl LogViews {
    fn window(range: Range) -> (i64, i64) {
        let now = Timestamp::now().millis();
        (now - range.millis(), now + 1)
    }

    fn top_products(s: &State, orders: &[&Order], vendor: Option<&str>) -> Vec<TopProduct> {
        let mut by: HashMap<String, (i64, i64)> = HashMap::new();
        for o in orders {
            let cur = o.currency.as_deref().unwrap_or("EUR");
            for l in o.items.iter().filter(|l| vendor.is_none_or(|v| v == l.vendor_id)) {
                let e = by.entry(l.product_id.clone()).or_default();
                e.0 += l.quantity;
                e.1 = e.1.saturating_add(to_eur(s, l.quantity.saturating_mul(l.unit_price_minor), cur, o.placed_at.unwrap_or(0)));
            }
        }
        top(by, 10)
            .into_iter()
            .map(|(id, units, gmv)| {
                let p = s.products.get(&id);
                TopProduct {
                    title: p.and_then(|p| p.title.clone()),
                    category: p.and_then(|p| p.category.clone()),
                    product_id: id,
                    units,
                    gmv_eur_minor: gmv,
                }
            })
            .collect()
    }
}

const COUNTED: fn(&Order) -> bool = |o| !o.status.parse::<OrderStatus>().is_ok_and(OrderStatus::is_unsold);

impl AnalyticsRead for LogViews {
    fn dashboard(&self, range: Range) -> ReadFuture<'_, Dashboard> {
        let s = self.state.read();
        let (from, to) = LogViews::window(range);
        let orders: Vec<&Order> =
            s.orders.values().filter(|o| o.placed_at.is_some_and(|t| t >= from && t < to) && COUNTED(o)).collect();
        let gmv: i64 = orders.iter().fold(0i64, |a, o| a.saturating_add(to_eur(&s, o.totals.total_minor, o.currency.as_deref().unwrap_or("EUR"), o.placed_at.unwrap_or(0))));
        let units: i64 = orders.iter().flat_map(|o| o.items.iter()).map(|l| l.quantity).sum();
        let mut cats: HashMap<String, (i64, i64)> = HashMap::new();
        for o in &orders {
            let cur = o.currency.as_deref().unwrap_or("EUR");
            for l in &o.items {
                let c = s.products.get(&l.product_id).and_then(|p| p.category.clone()).unwrap_or_else(|| "unknown".into());
                let e = cats.entry(c).or_default();
                e.0 += l.quantity;
                e.1 = e.1.saturating_add(to_eur(&s, l.quantity.saturating_mul(l.unit_price_minor), cur, o.placed_at.unwrap_or(0)));
            }
        }
        let returned = orders.iter().filter(|o| o.status.parse::<OrderStatus>().is_ok_and(OrderStatus::is_returned)).count() as i64;
        let sessions = s.sessions.values().filter(|t| **t >= from && **t < to).count() as i64;
        let n = orders.len() as i64;
        let d = Dashboard {
            range: range.as_str().into(),
            from,
            to,
            base_currency: "EUR".into(),
            gmv_eur_minor: gmv,
            orders: n,
            units,
            aov_eur_minor: if n > 0 { gmv / n } else { 0 },
            top_products: LogViews::top_products(&s, &orders, None),
            top_categories: top(cats, 10).into_iter().map(|(category, units, g)| TopCategory { category, units, gmv_eur_minor: g }).collect(),
            conversion_rate: if sessions > 0 { n as f64 / sessions as f64 } else { 0.0 },
            new_customers: s.customers.iter().filter(|t| **t >= from && **t < to).count() as i64,
            returned_orders: returned,
            return_rate: if n > 0 { returned as f64 / n as f64 } else { 0.0 },
        };
        async move { Ok(d) }.boxed()
    }

    fn vendor_performance<'a>(&'a self, vendor_id: &'a str, range: Range) -> ReadFuture<'a, VendorPerformance> {
        let s = self.state.read();
        let (from, to) = LogViews::window(range);
        let orders: Vec<&Order> = s
            .orders
            .values()
            .filter(|o| o.placed_at.is_some_and(|t| t >= from && t < to) && COUNTED(o) && o.items.iter().any(|l| l.vendor_id == vendor_id))
            .collect();
        let mut gmv = 0i64;
        let mut units = 0;
        for o in &orders {
            let cur = o.currency.as_deref().unwrap_or("EUR");
            for l in o.items.iter().filter(|l| l.vendor_id == vendor_id) {
                units += l.quantity;
                gmv = gmv.saturating_add(to_eur(&s, l.quantity.saturating_mul(l.unit_price_minor), cur, o.placed_at.unwrap_or(0)));
            }
        }
        let refunds: i64 = s
            .sales
            .get(vendor_id)
            .map(|m| m.values().filter(|b| b.start >= from && b.start < to).map(|b| to_eur(&s, b.refunds_minor, &b.currency, b.start)).sum())
            .unwrap_or(0);
        let (sum, n) = s.vendor_reviews.get(vendor_id).copied().unwrap_or((0, 0));
        let count = orders.len() as i64;
        let v = VendorPerformance {
            vendor_id: vendor_id.to_string(),
            from,
            to,
            gmv_eur_minor: gmv,
            orders: count,
            units,
            aov_eur_minor: if count > 0 { gmv / count } else { 0 },
            refunds_eur_minor: refunds,
            rating_avg: (n > 0).then(|| sum as f64 / n as f64),
            reviews: n,
            top_products: LogViews::top_products(&s, &orders, Some(vendor_id)),
        };
        async move { Ok(v) }.boxed()
    }
}

impl Ready for LogViews {
    fn ready(&self) -> ReadFuture<'_, ()> {
        let r = if let Some(e) = self.failed.lock().clone() {
            Err(ReadError::Unavailable(format!("the API's views stopped reading the log: {e}")))
        } else if !self.caught_up() {
            Err(ReadError::Unavailable("the API's views are still reading the log".into()))
        } else {
            Ok(())
        };
        async move { r }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beside_the_read_model_and_analytics_the_views_skip_orders_and_page_views() {
        let t = topics_beside_sinks(true, true);
        for skipped in [Topic::Orders, Topic::Lifecycle, Topic::Sessions, Topic::Customers] {
            assert!(!t.contains(&skipped), "{skipped:?} read");
        }
        for kept in [Topic::Catalog, Topic::StockLevels, Topic::Recommendations, Topic::VendorSales, Topic::ExchangeRates] {
            assert!(t.contains(&kept), "{kept:?} not read");
        }
        // Without analytics the dashboard still needs orders and sessions from the views.
        let t = topics_beside_sinks(true, false);
        assert!(t.contains(&Topic::Orders) && t.contains(&Topic::Sessions));
        assert_eq!(topics_beside_sinks(false, false), TOPICS.to_vec());
    }
}
