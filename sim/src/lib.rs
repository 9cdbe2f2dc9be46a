//! Realistic simulated storefront traffic.
//!
//! A discrete-event simulation of a marketplace: vendors onboard and list products,
//! warehouses receive stock, exchange rates move; shoppers arrive in sessions that browse,
//! search, fill and empty carts and check out; orders across vendors, warehouses and
//! currencies are paid (mostly), shipped, delivered, sometimes cancelled or returned and
//! refunded; customers review what they bought. Every event is a contract [`Event`] with a
//! simulated `occurred_at`, produced in time order.
//!
//! The simulator plants patterns for tests: co-purchase pairs (buying one product often
//! adds its partner) and, optionally, a fraud ring (bursts of orders from one IP by
//! brand-new accounts with mismatched countries).
//!
//! It is deterministic for a seed.

pub mod world;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use storeflow_avro::*;

pub use world::World;
use world::{CURRENCIES, SHOPPER_COUNTRIES, WAREHOUSES, currency_of};

/// How the simulation behaves.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Seed: the same seed gives the same events.
    pub seed: u64,
    /// Simulated time of the first event.
    pub start: Timestamp,
    /// New shopping sessions per simulated second.
    pub sessions_per_second: f64,
    /// Vendors in the marketplace.
    pub vendors: usize,
    /// Products in the catalogue.
    pub products: usize,
    /// Planted co-purchase pairs.
    pub planted_pairs: usize,
    /// Share of orders placed by the fraud ring (0 to disable).
    pub fraud_ring_share: f64,
    /// Share of sessions that end in an order (of those reaching checkout).
    pub checkout_conversion: f64,
    /// Fast-forward of the days between shipping, delivery and returns, so a run of a few
    /// simulated hours shows whole order lifecycles (1.0: real durations).
    pub fulfillment_speedup: f64,
    /// Accounts that exist when the simulation starts (opened 30 days to 4 years earlier):
    /// a marketplace's established customers. Their `CustomerRegistered` is published at the
    /// start, as importing them would; `OrderPlaced.customer_since` carries the real age.
    pub established_customers: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 42,
            start: Timestamp::now(),
            sessions_per_second: 2.0,
            vendors: 24,
            products: 400,
            planted_pairs: 8,
            fraud_ring_share: 0.0,
            checkout_conversion: 0.75,
            fulfillment_speedup: 300.0,
            established_customers: 1000,
        }
    }
}

/// What to do at a scheduled moment.
#[derive(Debug)]
enum Task {
    NewSession,
    Browse { session: usize, steps_left: u32 },
    Checkout { session: usize },
    PlaceOrder { session: usize },
    Pay { order: usize },
    CancelMaybe { order: usize },
    Ship { order: usize },
    Deliver { order: usize },
    AfterDelivery { order: usize },
    ReceiveReturn { order: usize },
    Refund { order: usize, amount: i64, lines: Vec<RefundLine>, reason: &'static str },
    Restock,
    RatesMove,
    CatalogChange,
    RingBurst,
}

struct Session {
    id: String,
    customer: Option<usize>,
    cart_id: String,
    cart: BTreeMap<usize, i32>,
    viewed: Vec<usize>,
}

struct Customer {
    id: String,
    country: &'static str,
    since: Timestamp,
    ip: String,
    card: String,
    erased: bool,
}

struct Order {
    id: String,
    customer: usize,
    currency: &'static Currency,
    items: Vec<OrderItem>,
    total: i64,
    payment_id: Option<String>,
    warehouse: &'static str,
    cancelled: bool,
    ring: bool,
}

use world::Currency;

/// Counts of what was generated.
#[derive(Clone, Debug, Default)]
pub struct SimSummary {
    /// Events per type name.
    pub by_type: BTreeMap<&'static str, u64>,
    /// Events per topic.
    pub by_topic: BTreeMap<&'static str, u64>,
    /// Orders placed (ring orders included).
    pub orders: u64,
    /// Orders by the fraud ring.
    pub ring_orders: u64,
    /// Sum of order totals converted to EUR cents.
    pub gmv_eur_minor: i64,
    /// Sessions started.
    pub sessions: u64,
}

impl SimSummary {
    /// Counts `e` (orders and GMV are added by the simulator, which knows the rates).
    pub fn count(&mut self, e: &Event) {
        *self.by_type.entry(e.name()).or_default() += 1;
        *self.by_topic.entry(e.topic().name()).or_default() += 1;
    }

    /// Total events.
    pub fn events(&self) -> u64 {
        self.by_type.values().sum()
    }
}

/// The simulator: an iterator of events in time order.
pub struct Simulator {
    config: SimConfig,
    rng: ChaCha8Rng,
    world: World,
    now: i64,
    seq: u64,
    queue: BinaryHeap<Reverse<(i64, u64, usize)>>,
    tasks: HashMap<usize, Task>,
    task_seq: usize,
    pending: std::collections::VecDeque<Event>,
    sessions: Vec<Session>,
    customers: Vec<Customer>,
    orders: Vec<Order>,
    /// Simulated stock per (product, warehouse index): what the simulator believes is there.
    stock: HashMap<(usize, usize), i32>,
    rates_per_eur: [f64; 4],
    summary: SimSummary,
    gmv_eur: HashMap<String, i64>,
    ring_ids: std::collections::HashSet<String>,
    popularity: rand::distr::weighted::WeightedIndex<f64>,
}

fn minor_to_eur(amount: i64, c: &Currency, rates: &[f64; 4]) -> i64 {
    let idx = CURRENCIES.iter().position(|x| x.code == c.code).unwrap_or(0);
    let units = amount as f64 / 10f64.powi(c.decimals as i32);
    (units / rates[idx] * 100.0).round() as i64
}

impl Simulator {
    /// A simulator for `config`.
    pub fn new(config: SimConfig) -> Simulator {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let world = World::generate(&mut rng, config.vendors, config.products, config.planted_pairs);
        let popularity = rand::distr::weighted::WeightedIndex::new(world.products.iter().map(|p| p.weight))
            .expect("positive weights");
        let mut sim = Simulator {
            now: config.start.millis(),
            config,
            rng,
            world,
            seq: 0,
            queue: BinaryHeap::new(),
            tasks: HashMap::new(),
            task_seq: 0,
            pending: Default::default(),
            sessions: Vec::new(),
            customers: Vec::new(),
            orders: Vec::new(),
            stock: HashMap::new(),
            rates_per_eur: CURRENCIES.map(|c| c.per_eur),
            summary: SimSummary::default(),
            gmv_eur: HashMap::new(),
            ring_ids: Default::default(),
            popularity,
        };
        sim.setup();
        sim
    }

    /// The generated marketplace (for tests that check planted patterns).
    pub fn world(&self) -> &World {
        &self.world
    }

    /// What has been generated so far.
    pub fn summary(&self) -> &SimSummary {
        &self.summary
    }

    /// True for order ids placed by the fraud ring.
    pub fn is_ring_order(&self, order_id: &str) -> bool {
        self.ring_ids.contains(order_id)
    }

    fn event_id(&mut self) -> String {
        let bytes: [u8; 16] = self.rng.random();
        uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
    }

    fn at(&self) -> Timestamp {
        Timestamp(self.now)
    }

    fn emit(&mut self, e: impl Into<Event>) {
        self.pending.push_back(e.into());
    }

    fn schedule(&mut self, after_ms: i64, task: Task) {
        self.task_seq += 1;
        self.seq += 1;
        self.tasks.insert(self.task_seq, task);
        self.queue.push(Reverse((self.now + after_ms.max(0), self.seq, self.task_seq)));
    }

    fn exp_ms(&mut self, mean_ms: f64) -> i64 {
        let u: f64 = self.rng.random::<f64>().max(1e-12);
        (-u.ln() * mean_ms) as i64
    }

    /// A random delay around `mean_ms` of real time, fast-forwarded.
    fn slow_ms(&mut self, mean_ms: f64) -> i64 {
        self.exp_ms(mean_ms / self.config.fulfillment_speedup.max(1.0))
    }

    fn setup(&mut self) {
        for c in CURRENCIES.iter().skip(1) {
            self.emit_rate(c.code);
        }
        for i in 0..self.world.vendors.len() {
            let v = self.world.vendors[i].clone();
            let id = self.event_id();
            let acct = format!("acct_{:016x}", self.rng.random::<u64>());
            self.emit(VendorOnboarded {
                event_id: id,
                occurred_at: self.at(),
                vendor_id: v.id,
                name: v.name,
                country: v.country.to_string(),
                plan: v.plan.to_string(),
                payout_currency: v.payout_currency.to_string(),
                stripe_account_id: Some(acct),
            });
        }
        for i in 0..self.world.products.len() {
            let p = self.world.products[i].clone();
            let vendor = self.world.vendors[p.vendor].id.clone();
            let id = self.event_id();
            let mut translations = BTreeMap::new();
            translations.insert(
                "de".to_string(),
                Translation { title: format!("{} (DE)", p.title), description: format!("Hochwertiges Produkt von {}.", p.brand) },
            );
            self.emit(ProductCreated {
                event_id: id,
                occurred_at: self.at(),
                product_id: p.id.clone(),
                vendor_id: vendor,
                sku: p.sku.clone(),
                title: p.title.clone(),
                description: format!("{} by {}, in {}.", p.title, p.brand, p.category.replace('/', " › ")),
                translations,
                category: p.category.to_string(),
                brand: p.brand.to_string(),
                price_minor: p.price_eur_minor,
                currency: "EUR".to_string(),
            });
            for &w in &p.warehouses {
                let qty = self.rng.random_range(20..120);
                self.receive(i, w, qty);
            }
        }
        for _ in 0..self.config.established_customers {
            let c = self.new_customer(false);
            let days = self.rng.random_range(30..1460);
            self.customers[c].since = Timestamp(self.now - days * 86_400_000);
        }
        self.schedule(0, Task::NewSession);
        self.schedule(60_000, Task::Restock);
        self.schedule(300_000, Task::RatesMove);
        self.schedule(120_000, Task::CatalogChange);
        if self.config.fraud_ring_share > 0.0 {
            self.schedule(30_000, Task::RingBurst);
        }
    }

    fn receive(&mut self, product: usize, w: usize, qty: i32) {
        let id = self.event_id();
        let po = format!("PO-{}", self.rng.random_range(10_000..99_999));
        self.emit(StockReceived {
            event_id: id,
            occurred_at: self.at(),
            sku: self.world.products[product].sku.clone(),
            warehouse_id: WAREHOUSES[w].id.to_string(),
            quantity: qty,
            reference: Some(po),
        });
        *self.stock.entry((product, w)).or_default() += qty;
    }

    fn emit_rate(&mut self, code: &'static str) {
        let idx = CURRENCIES.iter().position(|c| c.code == code).expect("listed");
        let id = self.event_id();
        // Rate from `code` to EUR: EUR per unit of `code`.
        let rate = 1.0 / self.rates_per_eur[idx];
        self.emit(ExchangeRateUpdated {
            event_id: id,
            occurred_at: self.at(),
            base_currency: code.to_string(),
            quote_currency: "EUR".to_string(),
            rate_e9: (rate * 1e9).round() as i64,
        });
    }

    fn new_customer(&mut self, ring: bool) -> usize {
        let n = self.customers.len() + 1;
        let country = if ring {
            "DE"
        } else {
            let total: u32 = SHOPPER_COUNTRIES.iter().map(|c| c.1).sum();
            let mut pick = self.rng.random_range(0..total);
            let mut chosen = "DE";
            for (c, w) in SHOPPER_COUNTRIES {
                if pick < w {
                    chosen = c;
                    break;
                }
                pick -= w;
            }
            chosen
        };
        let ip = if ring {
            self.world.fraud_ring_ip.clone()
        } else {
            format!("{}.{}.{}.{}", self.rng.random_range(11..223), self.rng.random_range(0..255), self.rng.random_range(0..255), self.rng.random_range(1..255))
        };
        let card = format!("pm_{:016x}", self.rng.random::<u64>());
        let c = Customer {
            id: format!("c-{n:06}"),
            country,
            since: self.at(),
            ip,
            card,
            erased: false,
        };
        let id = self.event_id();
        self.emit(CustomerRegistered {
            event_id: id,
            occurred_at: self.at(),
            customer_id: c.id.clone(),
            email: format!("shopper{n}@example.com"),
            name: format!("Shopper {n}"),
            country: c.country.to_string(),
            marketing_opt_in: n % 3 == 0,
        });
        self.customers.push(c);
        self.customers.len() - 1
    }

    fn pick_product(&mut self) -> usize {
        use rand::distr::Distribution;
        self.popularity.sample(&mut self.rng)
    }

    fn in_stock(&self, p: usize) -> i32 {
        self.world.products[p].warehouses.iter().map(|w| self.stock.get(&(p, *w)).copied().unwrap_or(0)).sum()
    }

    fn run(&mut self, task: Task) {
        match task {
            Task::NewSession => {
                let customer = if self.rng.random::<f64>() < 0.7 {
                    if self.customers.is_empty() || self.rng.random::<f64>() < 0.15 {
                        Some(self.new_customer(false))
                    } else {
                        let i = self.rng.random_range(0..self.customers.len());
                        (!self.customers[i].erased).then_some(i)
                    }
                } else {
                    None
                };
                let s = Session {
                    id: format!("s-{:08}", self.sessions.len() + 1),
                    customer,
                    cart_id: format!("cart-{:08}", self.sessions.len() + 1),
                    cart: BTreeMap::new(),
                    viewed: Vec::new(),
                };
                self.sessions.push(s);
                let sid = self.sessions.len() - 1;
                let page = ["/", "/deals", "/c/electronics", "/c/home", "/c/fashion"][self.rng.random_range(0..5)];
                let id = self.event_id();
                let referrer = (self.rng.random::<f64>() < 0.4).then(|| "https://www.google.com/".to_string());
                self.emit(PageViewed {
                    event_id: id,
                    occurred_at: self.at(),
                    session_id: self.sessions[sid].id.clone(),
                    customer_id: customer.map(|c| self.customers[c].id.clone()),
                    page: page.to_string(),
                    referrer,
                });
                let steps = self.rng.random_range(1..9);
                let d = self.exp_ms(8_000.0);
                self.schedule(d, Task::Browse { session: sid, steps_left: steps });
                let next = self.exp_ms(1000.0 / self.config.sessions_per_second);
                self.schedule(next, Task::NewSession);
            }
            Task::Browse { session, steps_left } => {
                let sid = self.sessions[session].id.clone();
                let cust = self.sessions[session].customer.map(|c| self.customers[c].id.clone());
                let roll: f64 = self.rng.random();
                if roll < 0.15 {
                    let p = self.pick_product();
                    let words: Vec<&str> = self.world.products[p].title.split(' ').collect();
                    let q = words[self.rng.random_range(0..words.len())].to_lowercase();
                    let id = self.event_id();
                    let n = self.rng.random_range(0..60);
                    self.emit(SearchPerformed {
                        event_id: id, occurred_at: self.at(), session_id: sid, customer_id: cust,
                        query: q, category: None, result_count: n,
                    });
                } else if roll < 0.75 {
                    // View a product: often related to the last one viewed.
                    let p = match self.sessions[session].viewed.last() {
                        Some(&last) if self.rng.random::<f64>() < 0.3 => self
                            .world
                            .planted_pairs
                            .iter()
                            .find_map(|&(a, b)| (a == last).then_some(b).or((b == last).then_some(a)))
                            .unwrap_or_else(|| self.pick_product()),
                        _ => self.pick_product(),
                    };
                    self.sessions[session].viewed.push(p);
                    let prod = &self.world.products[p];
                    let (pid, vid, cat) = (prod.id.clone(), self.world.vendors[prod.vendor].id.clone(), prod.category);
                    let id = self.event_id();
                    self.emit(ProductViewed {
                        event_id: id, occurred_at: self.at(), session_id: sid, customer_id: cust,
                        product_id: pid, vendor_id: vid, category: cat.to_string(),
                    });
                } else if roll < 0.93 {
                    if let Some(&p) = self.sessions[session].viewed.last() {
                        if self.in_stock(p) > 0 {
                            let q = self.rng.random_range(1..3);
                            self.add_to_cart(session, p, q);
                            if let Some(&(_, b)) = self.world.planted_pairs.iter().find(|(a, _)| *a == p) {
                                if self.rng.random::<f64>() < 0.6 && self.in_stock(b) > 0 {
                                    self.add_to_cart(session, b, 1);
                                }
                            }
                        }
                    }
                } else if let Some((&p, &q)) = self.sessions[session].cart.iter().next() {
                    self.sessions[session].cart.remove(&p);
                    let prod = &self.world.products[p];
                    let (pid, sku) = (prod.id.clone(), prod.sku.clone());
                    let id = self.event_id();
                    let cart_id = self.sessions[session].cart_id.clone();
                    self.emit(CartItemRemoved {
                        event_id: id, occurred_at: self.at(), session_id: sid, customer_id: cust,
                        cart_id, product_id: pid, sku, quantity: q,
                    });
                }
                let d = self.exp_ms(15_000.0);
                if steps_left > 1 {
                    self.schedule(d, Task::Browse { session, steps_left: steps_left - 1 });
                } else if !self.sessions[session].cart.is_empty() && self.rng.random::<f64>() < 0.6 {
                    self.schedule(d, Task::Checkout { session });
                }
            }
            Task::Checkout { session } => {
                let s = &self.sessions[session];
                let (sid, cart_id) = (s.id.clone(), s.cart_id.clone());
                let cust = s.customer.map(|c| self.customers[c].id.clone());
                let items: i32 = s.cart.values().sum();
                let subtotal: i64 = s.cart.iter().map(|(p, q)| self.world.products[*p].price_eur_minor * i64::from(*q)).sum();
                let id = self.event_id();
                self.emit(CheckoutStarted {
                    event_id: id, occurred_at: self.at(), session_id: sid, customer_id: cust,
                    cart_id, item_count: items, subtotal_minor: subtotal, currency: "EUR".to_string(),
                });
                if self.rng.random::<f64>() < self.config.checkout_conversion {
                    let d = self.exp_ms(60_000.0);
                    self.schedule(d, Task::PlaceOrder { session });
                }
            }
            Task::PlaceOrder { session } => {
                let customer = match self.sessions[session].customer {
                    Some(c) => c,
                    None => {
                        let c = self.new_customer(false);
                        self.sessions[session].customer = Some(c);
                        c
                    }
                };
                let cart: Vec<(usize, i32)> = self.sessions[session].cart.iter().map(|(p, q)| (*p, *q)).collect();
                let sid = self.sessions[session].id.clone();
                self.place_order(customer, &cart, Some(sid), false);
            }
            Task::Pay { order } => {
                let o = &self.orders[order];
                if o.cancelled {
                    return;
                }
                let (oid, total, cur) = (o.id.clone(), o.total, o.currency.code);
                let pi = format!("pi_{:016x}", self.rng.random::<u64>());
                let fail = if o.ring { 0.35 } else { 0.06 };
                let id = self.event_id();
                if self.rng.random::<f64>() < fail {
                    self.emit(PaymentFailed {
                        event_id: id, occurred_at: self.at(), order_id: oid, payment_id: Some(pi),
                        amount_minor: total, currency: cur.to_string(),
                        failure_code: "card_declined".into(), failure_message: "Your card was declined.".into(),
                    });
                    self.orders[order].cancelled = true;
                    self.restore_stock(order);
                } else {
                    self.emit(PaymentAuthorized {
                        event_id: id, occurred_at: self.at(), order_id: oid, payment_id: pi.clone(),
                        amount_minor: total, currency: cur.to_string(), provider: "stripe".into(),
                    });
                    self.orders[order].payment_id = Some(pi);
                    let d = 5_000 + self.exp_ms(120_000.0);
                    self.schedule(d, Task::Ship { order });
                }
            }
            Task::CancelMaybe { order } => {
                if self.orders[order].cancelled || self.orders[order].payment_id.is_none() {
                    return;
                }
                let oid = self.orders[order].id.clone();
                let id = self.event_id();
                self.emit(OrderCancelRequested {
                    event_id: id, occurred_at: self.at(), order_id: oid, requested_by: "customer".into(),
                    reason: "changed my mind".into(),
                });
                self.orders[order].cancelled = true;
                self.restore_stock(order);
                let (total, lines) = self.refund_lines(order, None);
                self.schedule(2_000, Task::Refund { order, amount: total, lines, reason: "cancellation" });
            }
            Task::Ship { order } => {
                if self.orders[order].cancelled {
                    return;
                }
                let o = &self.orders[order];
                let (oid, pi, total, cur, wh) = (o.id.clone(), o.payment_id.clone().unwrap_or_default(), o.total, o.currency.code, o.warehouse);
                let lines: Vec<SkuQuantity> = o.items.iter().map(|i| SkuQuantity { sku: i.sku.clone(), quantity: i.quantity }).collect();
                let ship = format!("shp-{}", &oid[2..]);
                let (id1, id2, id3) = (self.event_id(), self.event_id(), self.event_id());
                self.emit(ShipmentCreated {
                    event_id: id1, occurred_at: self.at(), order_id: oid.clone(), shipment_id: ship.clone(),
                    warehouse_id: wh.to_string(), carrier: ["ups", "dhl", "dpd", "yamato"][order % 4].into(), lines: lines.clone(),
                });
                self.emit(PaymentCaptured {
                    event_id: id2, occurred_at: self.at(), order_id: oid.clone(), payment_id: pi,
                    amount_minor: total, currency: cur.to_string(),
                });
                self.now += 60_000;
                let tracking = format!("1Z{:012}", self.rng.random_range(0..999_999_999_999u64));
                self.emit(ShipmentShipped {
                    event_id: id3, occurred_at: self.at(), order_id: oid, shipment_id: ship,
                    warehouse_id: wh.to_string(), tracking_number: tracking, lines,
                });
                self.now -= 60_000;
                let d = 60_000 + self.slow_ms(48.0 * 3_600_000.0);
                self.schedule(d, Task::Deliver { order });
            }
            Task::Deliver { order } => {
                let oid = self.orders[order].id.clone();
                let id = self.event_id();
                self.emit(ShipmentDelivered {
                    event_id: id, occurred_at: self.at(), order_id: oid.clone(), shipment_id: format!("shp-{}", &oid[2..]),
                });
                let d = self.slow_ms(4.0 * 86_400_000.0);
                self.schedule(d, Task::AfterDelivery { order });
            }
            Task::AfterDelivery { order } => {
                let roll: f64 = self.rng.random();
                let o = &self.orders[order];
                let oid = o.id.clone();
                if roll < 0.06 {
                    let items: Vec<SkuQuantity> = o.items.iter().take(1).map(|i| SkuQuantity { sku: i.sku.clone(), quantity: 1 }).collect();
                    let id = self.event_id();
                    self.emit(ReturnRequested {
                        event_id: id, occurred_at: self.at(), order_id: oid.clone(), return_id: format!("ret-{}", &oid[2..]),
                        items, reason: ["too small", "not as described", "arrived damaged"][order % 3].into(),
                    });
                    let d = self.slow_ms(4.0 * 86_400_000.0);
                    self.schedule(d, Task::ReceiveReturn { order });
                } else if roll < 0.2 {
                    let item = &o.items[0];
                    let (pid, vid, cust) = (item.product_id.clone(), item.vendor_id.clone(), self.customers[o.customer].id.clone());
                    let rating = [5, 5, 4, 4, 4, 3, 2, 1][self.rng.random_range(0..8)];
                    let id = self.event_id();
                    self.emit(ReviewSubmitted {
                        event_id: id, occurred_at: self.at(), review_id: format!("rev-{}", &oid[2..]), product_id: pid,
                        vendor_id: vid, customer_id: cust, rating, title: Some(format!("{rating} stars")), body: None,
                    });
                }
            }
            Task::ReceiveReturn { order } => {
                let o = &self.orders[order];
                let oid = o.id.clone();
                let item = o.items[0].clone();
                let wh = o.warehouse;
                let restockable = self.rng.random::<f64>() < 0.8;
                let id = self.event_id();
                self.emit(ReturnReceived {
                    event_id: id, occurred_at: self.at(), order_id: oid.clone(), return_id: format!("ret-{}", &oid[2..]),
                    warehouse_id: wh.to_string(), lines: vec![SkuQuantity { sku: item.sku.clone(), quantity: 1 }], restockable,
                });
                if restockable {
                    if let Some(p) = self.world.products.iter().position(|p| p.sku == item.sku) {
                        if let Some(w) = WAREHOUSES.iter().position(|w| w.id == wh) {
                            *self.stock.entry((p, w)).or_default() += 1;
                        }
                    }
                }
                let (amount, lines) = self.refund_lines(order, Some(&item.sku));
                let d = self.slow_ms(3_600_000.0);
                self.schedule(d, Task::Refund { order, amount, lines, reason: "return" });
            }
            Task::Refund { order, amount, lines, reason } => {
                let o = &self.orders[order];
                let (oid, pi, cur) = (o.id.clone(), o.payment_id.clone().unwrap_or_default(), o.currency.code);
                let id = self.event_id();
                let re = format!("re_{:016x}", self.rng.random::<u64>());
                self.emit(RefundIssued {
                    event_id: id, occurred_at: self.at(), order_id: oid, payment_id: pi, refund_id: re,
                    amount_minor: amount, currency: cur.to_string(), reason: reason.into(), lines,
                });
            }
            Task::Restock => {
                let low: Vec<(usize, usize)> = self.stock.iter().filter(|(_, q)| **q < 8).map(|(k, _)| *k).collect();
                for (p, w) in low.into_iter().take(20) {
                    let qty = self.rng.random_range(30..100);
                    self.receive(p, w, qty);
                }
                if self.rng.random::<f64>() < 0.3 {
                    let p = self.rng.random_range(0..self.world.products.len());
                    let w = self.world.products[p].warehouses[0];
                    let have = self.stock.get(&(p, w)).copied().unwrap_or(0);
                    if have > 2 {
                        let id = self.event_id();
                        self.emit(StockAdjusted {
                            event_id: id, occurred_at: self.at(), sku: self.world.products[p].sku.clone(),
                            warehouse_id: WAREHOUSES[w].id.into(), delta: -1, reason: "damaged".into(),
                        });
                        *self.stock.entry((p, w)).or_default() -= 1;
                    }
                }
                if self.rng.random::<f64>() < 0.3 {
                    let p = self.rng.random_range(0..self.world.products.len());
                    let from = self.world.products[p].warehouses[0];
                    let to = (from + 1) % WAREHOUSES.len();
                    let have = self.stock.get(&(p, from)).copied().unwrap_or(0);
                    if have > 10 {
                        let id = self.event_id();
                        self.emit(StockTransferred {
                            event_id: id, occurred_at: self.at(), sku: self.world.products[p].sku.clone(),
                            from_warehouse_id: WAREHOUSES[from].id.into(), to_warehouse_id: WAREHOUSES[to].id.into(), quantity: 5,
                        });
                        *self.stock.entry((p, from)).or_default() -= 5;
                        *self.stock.entry((p, to)).or_default() += 5;
                        if !self.world.products[p].warehouses.contains(&to) {
                            self.world.products[p].warehouses.push(to);
                        }
                    }
                }
                self.schedule(60_000, Task::Restock);
            }
            Task::RatesMove => {
                for i in 1..CURRENCIES.len() {
                    let drift = 1.0 + (self.rng.random::<f64>() - 0.5) * 0.004;
                    self.rates_per_eur[i] *= drift;
                    self.emit_rate(CURRENCIES[i].code);
                }
                self.schedule(300_000, Task::RatesMove);
            }
            Task::CatalogChange => {
                let p = self.rng.random_range(0..self.world.products.len());
                let prod = self.world.products[p].clone();
                let vid = self.world.vendors[prod.vendor].id.clone();
                let id = self.event_id();
                if self.rng.random::<f64>() < 0.7 {
                    let new = ((prod.price_eur_minor as f64) * (0.85 + self.rng.random::<f64>() * 0.3)).round() as i64 / 100 * 100 + 99;
                    self.emit(PriceChanged {
                        event_id: id, occurred_at: self.at(), product_id: prod.id, vendor_id: vid, sku: prod.sku,
                        old_price_minor: Some(prod.price_eur_minor), price_minor: new, currency: "EUR".into(),
                    });
                    self.world.products[p].price_eur_minor = new;
                } else {
                    self.emit(ProductUpdated {
                        event_id: id, occurred_at: self.at(), product_id: prod.id, vendor_id: vid,
                        title: Some(format!("{} (2026 edition)", prod.title)), description: None, category: None, brand: None, status: None,
                    });
                }
                if self.rng.random::<f64>() < 0.2 && !self.customers.is_empty() {
                    let c = self.rng.random_range(0..self.customers.len());
                    if !self.customers[c].erased {
                        self.customers[c].erased = true;
                        let id = self.event_id();
                        let cid = self.customers[c].id.clone();
                        self.emit(CustomerErased { event_id: id, occurred_at: self.at(), customer_id: cid, reason: Some("gdpr_request".into()) });
                    }
                }
                self.schedule(120_000, Task::CatalogChange);
            }
            Task::RingBurst => {
                // A burst of small orders from one IP by brand-new accounts, minutes apart.
                let burst = self.rng.random_range(3..7);
                for _ in 0..burst {
                    let c = self.new_customer(true);
                    let p = self.pick_product();
                    if self.in_stock(p) > 0 {
                        self.place_order(c, &[(p, 1)], None, true);
                    }
                    self.now += self.exp_ms(20_000.0);
                }
                // Ring orders make up `fraud_ring_share` of all orders over time.
                let orders_per_ms = self.config.sessions_per_second * 0.05 / 1000.0;
                let gap = (burst as f64 / (self.config.fraud_ring_share * orders_per_ms)).max(60_000.0);
                let d = self.exp_ms(gap);
                self.schedule(d, Task::RingBurst);
            }
        }
    }

    fn add_to_cart(&mut self, session: usize, p: usize, qty: i32) {
        let id = self.event_id();
        let s = &self.sessions[session];
        let prod = &self.world.products[p];
        let e = CartItemAdded {
            event_id: id,
            occurred_at: self.at(),
            session_id: s.id.clone(),
            customer_id: s.customer.map(|c| self.customers[c].id.clone()),
            cart_id: s.cart_id.clone(),
            product_id: prod.id.clone(),
            sku: prod.sku.clone(),
            vendor_id: self.world.vendors[prod.vendor].id.clone(),
            quantity: qty,
            unit_price_minor: prod.price_eur_minor,
            currency: "EUR".to_string(),
        };
        *self.sessions[session].cart.entry(p).or_default() += qty;
        self.emit(e);
    }

    fn place_order(&mut self, customer: usize, cart: &[(usize, i32)], session: Option<String>, ring: bool) {
        let c = &self.customers[customer];
        let (country, cid, since, ip, own_card) = (c.country, c.id.clone(), c.since, c.ip.clone(), c.card.clone());
        let currency = currency_of(country);
        let cidx = CURRENCIES.iter().position(|x| x.code == currency.code).expect("listed");
        let rate = self.rates_per_eur[cidx];
        // Prefer the warehouse nearest the customer that holds the first item.
        let mut items = Vec::new();
        let mut warehouse = None;
        for &(p, q) in cart {
            let prod = &self.world.products[p];
            let Some(&w) = prod
                .warehouses
                .iter()
                .filter(|w| self.stock.get(&(p, **w)).copied().unwrap_or(0) >= q)
                .max_by_key(|w| (WAREHOUSES[**w].country == country) as u8)
            else {
                continue;
            };
            *self.stock.entry((p, w)).or_default() -= q;
            warehouse.get_or_insert(WAREHOUSES[w].id);
            let unit = ((prod.price_eur_minor as f64 / 100.0) * rate * 10f64.powi(currency.decimals as i32)).round() as i64;
            items.push(OrderItem {
                sku: prod.sku.clone(),
                product_id: prod.id.clone(),
                vendor_id: self.world.vendors[prod.vendor].id.clone(),
                quantity: q,
                unit_price_minor: unit,
            });
        }
        if items.is_empty() {
            return;
        }
        let n = self.orders.len() + 1;
        let order_id = format!("o-{n:08}");
        let subtotal: i64 = items.iter().map(|i| i.unit_price_minor * i64::from(i.quantity)).sum();
        let shipping = if subtotal > 50 * 10i64.pow(currency.decimals) { 0 } else { 499 * 10i64.pow(currency.decimals) / 100 };
        let tax = subtotal * 19 / 119 / 10;
        let discount = if n % 10 == 0 { subtotal / 20 } else { 0 };
        let total = subtotal + shipping + tax - discount;
        let address = |country: &str, name: &str| Address {
            name: name.to_string(),
            line1: format!("{} Market Street", 1 + n % 200),
            line2: None,
            city: "Springfield".to_string(),
            postal_code: format!("{:05}", 10_000 + n % 80_000),
            region: None,
            country: country.to_string(),
        };
        let ship_country = if ring { world::RING_SHIP_TO[n % 2] } else { country };
        let card = if ring { format!("pm_{:016x}", self.rng.random::<u64>()) } else { own_card };
        let id = self.event_id();
        let e = OrderPlaced {
            event_id: id,
            occurred_at: self.at(),
            order_id: order_id.clone(),
            customer_id: cid,
            session_id: session,
            customer_since: Some(since),
            items: items.clone(),
            currency: currency.code.to_string(),
            shipping_address: address(ship_country, &format!("Shopper {customer}")),
            billing_address: address(country, &format!("Shopper {customer}")),
            shipping_minor: shipping,
            tax_minor: tax,
            discount_minor: discount,
            payment_method_token: card,
            client_ip: ip,
        };
        self.gmv_eur.insert(order_id.clone(), minor_to_eur(total, currency, &self.rates_per_eur));
        if ring {
            self.ring_ids.insert(order_id.clone());
        }
        self.emit(e);
        self.orders.push(Order {
            id: order_id,
            customer,
            currency,
            items,
            total,
            payment_id: None,
            warehouse: warehouse.unwrap_or(WAREHOUSES[0].id),
            cancelled: false,
            ring,
        });
        let order = self.orders.len() - 1;
        let d = 1_000 + self.exp_ms(4_000.0);
        self.schedule(d, Task::Pay { order });
        if self.rng.random::<f64>() < 0.04 {
            let d = 20_000 + self.exp_ms(30_000.0);
            self.schedule(d, Task::CancelMaybe { order });
        }
    }

    fn restore_stock(&mut self, order: usize) {
        let o = &self.orders[order];
        let wh = o.warehouse;
        let items: Vec<(String, i32)> = o.items.iter().map(|i| (i.sku.clone(), i.quantity)).collect();
        for (sku, q) in items {
            if let (Some(p), Some(w)) = (self.world.products.iter().position(|p| p.sku == sku), WAREHOUSES.iter().position(|w| w.id == wh)) {
                *self.stock.entry((p, w)).or_default() += q;
            }
        }
    }

    fn refund_lines(&self, order: usize, only_sku: Option<&str>) -> (i64, Vec<RefundLine>) {
        let o = &self.orders[order];
        let lines: Vec<RefundLine> = o
            .items
            .iter()
            .filter(|i| only_sku.is_none_or(|s| s == i.sku))
            .map(|i| {
                let q = if only_sku.is_some() { 1 } else { i.quantity };
                RefundLine { sku: i.sku.clone(), vendor_id: i.vendor_id.clone(), quantity: q, amount_minor: i.unit_price_minor * i64::from(q) }
            })
            .collect();
        let amount = if only_sku.is_some() { lines.iter().map(|l| l.amount_minor).sum() } else { o.total };
        (amount, lines)
    }
}

impl Iterator for Simulator {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                self.summary.count(&e);
                match &e {
                    Event::PageViewed(_) => self.summary.sessions += 1,
                    Event::OrderPlaced(o) => {
                        self.summary.orders += 1;
                        self.summary.ring_orders += self.ring_ids.contains(&o.order_id) as u64;
                        self.summary.gmv_eur_minor += self.gmv_eur.remove(&o.order_id).unwrap_or(0);
                    }
                    _ => {}
                }
                return Some(e);
            }
            let Reverse((at, _, id)) = self.queue.pop()?;
            self.now = self.now.max(at);
            let task = self.tasks.remove(&id).expect("every queued task is stored");
            self.run(task);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storeflow_avro::json::JsonOptions;

    fn events(n: usize, seed: u64) -> Vec<Event> {
        Simulator::new(SimConfig { seed, start: Timestamp(1_764_000_000_000), fraud_ring_share: 0.02, ..Default::default() })
            .take(n)
            .collect()
    }

    #[test]
    fn the_summary_counts_exactly_the_events_taken() {
        let mut sim = Simulator::new(SimConfig { seed: 3, ..Default::default() });
        let taken: Vec<Event> = sim.by_ref().take(777).collect();
        assert_eq!(sim.summary().events(), 777);
        let orders = taken.iter().filter(|e| matches!(e, Event::OrderPlaced(_))).count() as u64;
        assert_eq!(sim.summary().orders, orders);
    }

    #[test]
    fn the_same_seed_gives_the_same_events_and_another_seed_does_not() {
        assert_eq!(events(2000, 7), events(2000, 7));
        assert_ne!(events(2000, 7), events(2000, 8));
    }

    #[test]
    fn every_event_passes_the_contracts_validation() {
        for e in events(20_000, 1) {
            storeflow_avro::json::event_from_json(e.to_json(), JsonOptions::default())
                .unwrap_or_else(|err| panic!("{} fails validation: {err}", e.name()));
        }
    }

    #[test]
    fn traffic_covers_every_input_event_type() {
        let seen: std::collections::HashSet<&str> = events(60_000, 3).iter().map(|e| e.name()).collect();
        for t in EVENT_TYPES.iter().filter(|t| t.topic.is_input()) {
            assert!(seen.contains(t.name), "the simulator never produced {}", t.name);
        }
    }

    #[test]
    fn events_come_in_time_order_per_key() {
        let mut last: HashMap<String, Timestamp> = HashMap::new();
        for e in events(30_000, 5) {
            let k = format!("{}|{}", e.topic(), e.key());
            if let Some(prev) = last.insert(k.clone(), e.occurred_at()) {
                assert!(e.occurred_at() >= prev, "{k} went back in time");
            }
        }
    }

    #[test]
    fn orders_use_the_shoppers_currency_and_consistent_totals() {
        let mut currencies = std::collections::HashSet::new();
        for e in events(30_000, 9) {
            if let Event::OrderPlaced(o) = e {
                assert!(o.total_minor() > 0);
                assert!(!o.items.is_empty());
                currencies.insert(o.currency);
            }
        }
        assert!(currencies.len() >= 3, "{currencies:?}");
    }
}
