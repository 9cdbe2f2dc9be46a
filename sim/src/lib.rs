//! Realistic simulated storefront traffic.
//!
//! A discrete-event simulation of a busy marketplace: vendors onboard and list products,
//! warehouses receive and reorder stock, exchange rates move; shoppers arrive in sessions
//! (about 300 a second by default: ≈ 2,800 orders a simulated minute) that browse, search,
//! fill and empty carts and check out; orders across vendors, warehouses and currencies are
//! paid (mostly), shipped, delivered, sometimes cancelled or returned and refunded;
//! customers review what they bought. Every event is a contract [`Event`] with a simulated
//! `occurred_at`, and events come in time order (never an earlier `occurred_at` after a
//! later one).
//!
//! The marketplace is already busy when the simulation starts (sessions are under way,
//! shelves stocked), and what takes days in a warehouse or a parcel service is fast-forwarded
//! ([`SimConfig::fulfillment_speedup`]), so even a run of a few simulated minutes shows whole
//! order lifecycles.
//!
//! Time: [`SimConfig::not_after`] is a bound the simulator never crosses — when its next
//! event would be later, the iterator pauses (`next()` returns `None`, [`Simulator::next_time`]
//! says when the next event is due) and resumes after [`Simulator::set_not_after`] moves the
//! bound; [`SimConfig::ending_near_now`] starts a run so that it ends just before the wall
//! clock (a log such as Kafka refuses records from the future).
//!
//! Payments: the checkout carries a card token (the shopper's saved card, or one of Stripe's
//! test cards that decline, [`DECLINED_CARDS`]); the simulator posts no payment outcome —
//! the order saga asks the payments worker, which answers (docs/PAYMENTS.md).
//!
//! Open or closed loop: on its own the simulator ships every order whose card does not
//! decline, whatever a pipeline would have made of it. Given [`Decisions`]
//! ([`Simulator::with_decisions`]) it asks the pipeline's verdict before it ships or
//! cancels an order and follows it, like a storefront, a warehouse and a customer would.
//!
//! The simulator plants patterns for tests: co-purchase pairs (buying one product often
//! adds its partner), optionally a fraud ring (bursts of orders from one IP by brand-new
//! accounts with mismatched countries), and optionally poison — records the pipeline must
//! dead-letter, listed by [`Simulator::planted`] ([`poison`]).
//!
//! It is deterministic for a seed (and, in closed loop, for the same answers).

mod customers;
pub mod poison;
mod stock;
pub mod world;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use storeflow_avro::*;

use customers::{Customer, Customers};
pub use poison::Planted;
use poison::Poison;
use stock::Stock;
pub use world::World;
use world::{CURRENCIES, Currency, WAREHOUSES, currency_of};

/// What the pipeline decided about an order, as of a moment: the simulator asks before it
/// acts on an order (pays, ships, cancels), like a storefront, a warehouse and a customer
/// would react to the order's status.
pub trait Decisions: Send {
    /// The order's status as `OrderStatusChanged.status` names it (an [`OrderStatus`]'s
    /// name; the simulator reads any other as an order the pipeline does not know) as of
    /// event time `at` (ms): the latest status the pipeline published at or before `at`.
    /// `None`: unknown order.
    /// Implementations may block until the pipeline has decided everything before `at`.
    ///
    /// The simulator calls it from inside `next()`, with `at` one millisecond before its
    /// clock: every event it will still yield is later than `at`, and every event with an
    /// `occurred_at` up to `at` has already been yielded. A caller that batches what it
    /// publishes must publish what it holds before such a call can wait on the pipeline.
    fn status_at(&mut self, order_id: &str, at: i64) -> Option<String>;
}

/// What the pipeline says about an order the simulator asks about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// The order is in this state.
    Is(OrderStatus),
    /// The pipeline does not know the order, or names a state the contract does not have.
    Unknown,
}

/// How the simulation behaves.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Seed: the same seed gives the same events.
    pub seed: u64,
    /// Simulated time of the first event.
    pub start: Timestamp,
    /// New shopping sessions per simulated second. About one session in six ends in an
    /// order, so the default 300 gives ≈ 2,800 orders a simulated minute: a busy hour of a
    /// marketplace that peaks at 10,000 (and 200,000 events span about two simulated
    /// minutes).
    pub sessions_per_second: f64,
    /// Vendors in the marketplace.
    pub vendors: usize,
    /// Products in the catalogue.
    pub products: usize,
    /// Planted co-purchase pairs.
    pub planted_pairs: usize,
    /// Share of orders placed by the fraud ring (0 to disable).
    pub fraud_ring_share: f64,
    /// Share of checkouts that confirm their payment in the browser (a Stripe PaymentIntent,
    /// `pi_…`, in `payment_method_token`): their outcome comes as Stripe's webhook would
    /// report it (`PaymentAuthorized` / `PaymentFailed`, posted by the simulator a few
    /// seconds after the order), not from the payments worker. 0 by default.
    pub browser_confirmed_share: f64,
    /// Share of sessions that end in an order (of those reaching checkout).
    pub checkout_conversion: f64,
    /// Fast-forward of what takes hours or days in the physical world — picking and
    /// packing (4 h), transit (48 h), keeping before a return (4 days), the return's way
    /// back (4 days), refunds (1 h), suppliers' deliveries (2 days), fraud reviews (2 h),
    /// customers' second thoughts (2 h) — so a run of a few simulated minutes shows whole
    /// order lifecycles (1.0: real durations). Browsing, checkout and payment are not
    /// fast-forwarded.
    pub fulfillment_speedup: f64,
    /// Established accounts imported at the start (`CustomerRegistered`, opened 30 days to
    /// 4 years earlier; `OrderPlaced.customer_since` carries the real age). They are the
    /// first of [`SimConfig::customer_base`].
    pub established_customers: usize,
    /// Established accounts returning shoppers are drawn from. A busy marketplace has
    /// millions, so any one of them orders rarely (as fraud's per-customer windows
    /// expect); apart from the imported ones the log knows them only from what they do.
    pub customer_base: u64,
    /// The simulator never yields an event with an `occurred_at` later than this: when its
    /// next event is due later, `next()` returns `None` until the bound moves
    /// ([`Simulator::set_not_after`]). `None`: no bound.
    pub not_after: Option<Timestamp>,
    /// Records to plant that the pipeline must dead-letter ([`poison`]), spread evenly over
    /// [`SimConfig::expected_events`]; [`Simulator::planted`] lists them. 0: none.
    pub poison: usize,
    /// How many events the caller means to take (spreads planted poison through the run).
    pub expected_events: u64,
    /// How long after the pipeline decides something the storefront, the warehouses and the
    /// customers act on it (ms): the simulator asks about an order's status as of this much
    /// before its clock. A pipeline then has that much simulated time to answer before the
    /// simulator waits for it.
    pub reaction_ms: i64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 42,
            start: Timestamp::now(),
            sessions_per_second: 300.0,
            vendors: 24,
            products: 400,
            planted_pairs: 8,
            fraud_ring_share: 0.0,
            browser_confirmed_share: 0.0,
            checkout_conversion: 0.75,
            fulfillment_speedup: 15_000.0,
            established_customers: 1000,
            customer_base: 2_000_000,
            not_after: None,
            poison: 0,
            expected_events: 200_000,
            reaction_ms: 400,
        }
    }
}

/// Orders per session at the default conversion, events per session in steady traffic
/// (the orders' lifecycles included) and units per order, as measured on the default
/// configuration (the test `a_busy_run_has_the_density_and_the_lifecycles_it_promises`
/// keeps them honest).
const ORDERS_PER_SESSION: f64 = 0.158;
const EVENTS_PER_SESSION: f64 = 5.95;
/// Stripe's test cards that decline (<https://docs.stripe.com/testing#declined-payments>):
/// the checkout carries one for 6 % of orders (35 % of the fraud ring's), the shopper's own
/// saved card (a `pm_…` id, which test mode authorizes) otherwise.
pub const DECLINED_CARDS: [&str; 5] = [
    "pm_card_chargeDeclined",
    "pm_card_chargeDeclinedInsufficientFunds",
    "pm_card_chargeDeclinedExpiredCard",
    "pm_card_authenticationRequired",
    "pm_card_chargeDeclinedIncorrectCvc",
];
const UNITS_PER_ORDER: f64 = 2.05;

const HOUR: f64 = 3_600_000.0;
const DAY: f64 = 24.0 * HOUR;
/// Real durations, fast-forwarded by `fulfillment_speedup`.
const PICK_PACK: f64 = 4.0 * HOUR;
const HANDOVER: f64 = HOUR;
const TRANSIT: f64 = 48.0 * HOUR;
const KEEPING: f64 = 4.0 * DAY;
const RETURN_TRANSIT: f64 = 4.0 * DAY;
const SECOND_THOUGHTS: f64 = 2.0 * HOUR;
const FRAUD_REVIEW: f64 = 2.0 * HOUR;
const SUPPLIER_LEAD: f64 = 2.0 * DAY;
/// Simulated cadences (not fast-forwarded).
const STOCK_REVIEW_MS: i64 = 5_000;
const RATES_EVERY_MS: i64 = 30_000;
const CATALOG_EVERY_MS: i64 = 5_000;
/// An order still waiting for its fraud verdict is looked at again this much later, at most
/// `MAX_CHECKS` times (the orders processor's fraud gate waits 10 minutes).
const RECHECK_MS: i64 = 30_000;
const MAX_CHECKS: u8 = 24;
/// A planted over-shipment waits this long for an order to ship before another kind of
/// poison is planted instead.
const POISON_PATIENCE_MS: i64 = 60_000;

impl SimConfig {
    /// The simulated time a run of `events` events is expected to span under this
    /// configuration (ms): the start's imports, then steady traffic.
    pub fn expected_span_ms(&self, events: u64) -> i64 {
        let setup = 3.0 + self.vendors as f64 + 3.0 * self.products as f64 + self.established_customers as f64;
        let per_ms = self.sessions_per_second.max(1e-6) * EVENTS_PER_SESSION / 1000.0;
        ((events as f64 - setup).max(0.0) / per_ms).round() as i64
    }

    /// This configuration, started so that `events` events are expected to end a little
    /// before `end` (5 % of the span and a second early) and bounded by it: no event is
    /// later than `end` ([`SimConfig::not_after`]). Set the rate first: the start depends on it.
    pub fn ending_at(mut self, end: Timestamp, events: u64) -> SimConfig {
        let span = self.expected_span_ms(events);
        self.start = Timestamp(end.millis() - span - span / 20 - 1_000);
        self.not_after = Some(end);
        self.expected_events = events;
        self
    }

    /// The default configuration, ending just before the wall clock after `events` events
    /// ([`SimConfig::ending_at`] now).
    pub fn ending_near_now(events: u64) -> SimConfig {
        SimConfig::default().ending_at(Timestamp::now(), events)
    }
}

/// What to do at a scheduled moment.
#[derive(Debug)]
enum Task {
    NewSession,
    Browse { session: u64, steps_left: u32 },
    Checkout { session: u64 },
    PlaceOrder { session: u64 },
    Pay { order: u64 },
    CancelMaybe { order: u64 },
    Ship { order: u64, checks: u8 },
    Dispatch { order: u64 },
    Deliver { order: u64 },
    AfterDelivery { order: u64 },
    ReceiveReturn { order: u64 },
    Review { order: u64 },
    StockReview,
    StockArrives { product: usize, warehouse: usize, quantity: i32 },
    RatesMove,
    CatalogChange,
    RingBurst,
    RingOrder,
}

struct Session {
    id: String,
    customer: Option<u64>,
    cart_id: String,
    cart: BTreeMap<usize, i32>,
    viewed: Vec<usize>,
}

struct Order {
    id: String,
    customer: u64,
    items: Vec<OrderItem>,
    /// Where each line's units were taken: (product, warehouse index, units).
    taken: Vec<(usize, usize, i32)>,
    /// Its card is one of Stripe's test cards that decline ([`DECLINED_CARDS`]).
    declines: bool,
    /// The PaymentIntent the browser confirmed ([`SimConfig::browser_confirmed_share`]),
    /// with the order's total and currency.
    browser_pi: Option<(String, i64, &'static str)>,
    warehouse: &'static str,
    cancelled: bool,
    shipped: bool,
}

/// Counts of what was generated.
#[derive(Clone, Debug, Default)]
pub struct SimSummary {
    /// Events per type name.
    pub by_type: BTreeMap<&'static str, u64>,
    /// Events per topic.
    pub by_topic: BTreeMap<&'static str, u64>,
    /// Orders placed (ring orders included, planted poison not).
    pub orders: u64,
    /// Orders by the fraud ring.
    pub ring_orders: u64,
    /// Sum of order totals converted to EUR cents.
    pub gmv_eur_minor: i64,
    /// Sessions started (those already under way at the start are not counted).
    pub sessions: u64,
    /// Times a shopper met a product out of stock: an add to cart the shop refused, or a
    /// line dropped from an order at checkout because no warehouse held its units.
    pub stock_outs: u64,
    /// Closed loop: orders the pipeline rejected out of stock, so they were not paid.
    pub rejected_unpaid: u64,
    /// Closed loop: orders held for fraud that a reviewer cancelled.
    pub fraud_review_cancels: u64,
    /// Closed loop: questions asked of the [`Decisions`].
    pub decisions_asked: u64,
    /// Records of planted poison yielded.
    pub planted: u64,
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
///
/// `next()` returns `None` only while paused at [`SimConfig::not_after`]; it yields again
/// once the bound moves.
pub struct Simulator {
    config: SimConfig,
    rng: ChaCha8Rng,
    world: World,
    now: i64,
    seq: u64,
    queue: BinaryHeap<Reverse<(i64, u64, usize)>>,
    tasks: HashMap<usize, Task>,
    task_seq: usize,
    pending: VecDeque<Event>,
    sessions: HashMap<u64, Session>,
    next_session: u64,
    /// Where the arrival process of sessions is, in fractional ms (arrivals are too close
    /// together for whole-ms gaps).
    arrivals_at: f64,
    customers: Customers,
    orders: HashMap<u64, Order>,
    next_order: u64,
    stock: Stock,
    rates_per_eur: [f64; 4],
    /// The rates it published, for its own GMV in EUR with the pipeline's rule
    /// (`storeflow_avro::money`: the rate in force at the order's time, half to even).
    published_rates: storeflow_avro::money::Rates,
    summary: SimSummary,
    gmv_eur: HashMap<String, i64>,
    ring_ids: HashSet<String>,
    popularity: rand::distr::weighted::WeightedIndex<f64>,
    decisions: Option<Box<dyn Decisions>>,
    /// While the sessions under way at the start are played: their events are not emitted.
    quiet: bool,
    yielded: u64,
    /// Poison whose turn has come (by events yielded), and how much of it was built.
    poison_due: usize,
    poison_built: usize,
    poison_skipped: usize,
    poison_due_since: i64,
    /// Planted records built but not yet yielded, by event id.
    planting: HashMap<String, Planted>,
    planted: Vec<Planted>,
}


impl Simulator {
    /// A simulator for `config`.
    pub fn new(config: SimConfig) -> Simulator {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let world = World::generate(&mut rng, config.vendors, config.products, config.planted_pairs);
        let popularity = rand::distr::weighted::WeightedIndex::new(world.products.iter().map(|p| p.weight))
            .expect("positive weights");
        let start = config.start.millis();
        let customers = Customers::new(config.seed, config.customer_base.max(config.established_customers as u64), start);
        let mut sim = Simulator {
            now: start,
            arrivals_at: start as f64,
            config,
            rng,
            world,
            seq: 0,
            queue: BinaryHeap::new(),
            tasks: HashMap::new(),
            task_seq: 0,
            pending: VecDeque::new(),
            sessions: HashMap::new(),
            next_session: 0,
            customers,
            orders: HashMap::new(),
            next_order: 0,
            stock: Stock::default(),
            rates_per_eur: CURRENCIES.map(|c| c.per_eur),
            published_rates: storeflow_avro::money::Rates::new("EUR"),
            summary: SimSummary::default(),
            gmv_eur: HashMap::new(),
            ring_ids: HashSet::new(),
            popularity,
            decisions: None,
            quiet: false,
            yielded: 0,
            poison_due: 0,
            poison_built: 0,
            poison_skipped: 0,
            poison_due_since: start,
            planting: HashMap::new(),
            planted: Vec::new(),
        };
        sim.setup();
        sim
    }

    /// Closed loop: asks `decisions` before paying, shipping or cancelling an order, and
    /// follows the answer:
    ///
    /// - after checkout (the checkout carries a card token: one of Stripe's test cards that
    ///   decline for some orders, [`DECLINED_CARDS`]; the saga asks the payments worker to
    ///   authorize it), go on with an order that is `placed`, `reserved`, `payment_authorized`
    ///   or `confirmed`; one `rejected_out_of_stock` or `payment_failed` is dropped (the
    ///   customer is told) and its units go back on the simulated shelf; one on `fraud_hold`
    ///   waits for a reviewer;
    /// - ship (ShipmentCreated, then ShipmentShipped; the saga has the payment captured) an
    ///   order that is `confirmed`; one on `fraud_hold` is cancelled by a reviewer a little
    ///   later (`OrderCancelRequested` by `fraud_review`; the saga releases the payment); one
    ///   `payment_authorized` (still waiting for its fraud verdict) is looked at again
    ///   30 s later; anything else is left alone;
    /// - a customer cancels only an order that is `confirmed` or `payment_authorized` and
    ///   not shipped.
    ///
    /// Deliveries and returns follow the simulator's own record: it shipped the order. The
    /// simulator posts no payment outcome: the saga asks, the payments worker answers. One question per order and action (a few
    /// more for orders whose fraud verdict is late). `None` from `decisions` (an unknown order) leaves the order alone.
    pub fn with_decisions(mut self, decisions: Box<dyn Decisions>) -> Self {
        self.decisions = Some(decisions);
        self
    }

    /// Its configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
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

    /// The planted poison yielded so far, in the order it was yielded.
    pub fn planted(&self) -> &[Planted] {
        &self.planted
    }

    /// The simulator's clock: the time of the last event it generated (the start before any).
    pub fn clock(&self) -> Timestamp {
        Timestamp(self.now)
    }

    /// When the next event is due. While paused at [`SimConfig::not_after`], a caller
    /// sleeps until then and moves the bound ([`Simulator::set_not_after`]).
    pub fn next_time(&self) -> Option<Timestamp> {
        match self.pending.front() {
            Some(e) => Some(e.occurred_at()),
            None => self.queue.peek().map(|Reverse((at, _, _))| Timestamp(*at)),
        }
    }

    /// The bound on `occurred_at` ([`SimConfig::not_after`]).
    pub fn not_after(&self) -> Option<Timestamp> {
        self.config.not_after
    }

    /// Moves the bound on `occurred_at`: a paused simulator resumes up to the new one,
    /// exactly as if it had never paused.
    pub fn set_not_after(&mut self, not_after: Option<Timestamp>) {
        self.config.not_after = not_after;
    }

    fn event_id(&mut self) -> String {
        let bytes: [u8; 16] = self.rng.random();
        uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
    }

    fn at(&self) -> Timestamp {
        Timestamp(self.now)
    }

    fn emit(&mut self, e: impl Into<Event>) {
        if !self.quiet {
            self.pending.push_back(e.into());
        }
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

    /// A random delay around `real_ms` of real time, fast-forwarded.
    fn slow_ms(&mut self, real_ms: f64) -> i64 {
        self.exp_ms(real_ms / self.speedup())
    }

    fn speedup(&self) -> f64 {
        self.config.fulfillment_speedup.max(1.0)
    }

    /// Orders per ms the configuration is expected to bring (ring orders aside).
    fn orders_per_ms(&self) -> f64 {
        self.config.sessions_per_second * ORDERS_PER_SESSION * self.config.checkout_conversion / 0.75 / 1000.0
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
        let weights: f64 = self.world.products.iter().map(|p| p.weight).sum();
        let (lead, review) = (SUPPLIER_LEAD / self.speedup(), STOCK_REVIEW_MS as f64);
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
            let rate = self.orders_per_ms() * UNITS_PER_ORDER * p.weight / weights / p.warehouses.len() as f64;
            for &w in &p.warehouses {
                self.stock.expect(i, w, rate);
                let full = Stock::order_up_to(rate, lead, review);
                let qty = (f64::from(full) * self.rng.random_range(0.4..1.0)).ceil() as i32;
                self.receive(i, w, qty.max(5));
            }
        }
        for n in 0..self.config.established_customers as u64 {
            let c = self.customers.get(n);
            self.emit_registered(n, &c);
        }
        self.warm_start();
        self.schedule(0, Task::NewSession);
        self.schedule(STOCK_REVIEW_MS, Task::StockReview);
        self.schedule(RATES_EVERY_MS, Task::RatesMove);
        self.schedule(CATALOG_EVERY_MS, Task::CatalogChange);
        if self.config.fraud_ring_share > 0.0 {
            let d = self.ring_gap();
            self.schedule(d, Task::RingBurst);
        }
    }

    /// Sessions under way at the start, as steady traffic has them: shoppers who just
    /// arrived, shoppers between two steps of browsing, after their last step (about to
    /// check out or leave), and between checkout and placing their order — as many of each
    /// as arrive in the time the phase lasts (8 s, 3.5 × 15 s, 15 s, 60 s). What they did
    /// before the run is played quietly (their carts, what they viewed) and not part of it.
    fn warm_start(&mut self) {
        let sps = self.config.sessions_per_second;
        let count = |seconds: f64| (sps * seconds).round() as usize;
        self.quiet = true;
        for _ in 0..count(8.0) {
            let session = self.open_warm_session();
            let steps_left = self.rng.random_range(1..9);
            let d = self.exp_ms(8_000.0);
            self.schedule(d, Task::Browse { session, steps_left });
        }
        for _ in 0..count(15.0 * 3.5) {
            // A session of k steps spends k − 1 pauses between them: pick one of the 28.
            let mut m = self.rng.random_range(0..28);
            let mut k = 2;
            while m >= k - 1 {
                m -= k - 1;
                k += 1;
            }
            let session = self.open_warm_session();
            for _ in 0..=m {
                self.browse_step(session);
            }
            let d = self.exp_ms(15_000.0);
            self.schedule(d, Task::Browse { session, steps_left: k - m - 1 });
        }
        for (seconds, placing) in [(15.0, false), (60.0, true)] {
            for _ in 0..count(seconds) {
                let session = self.open_warm_session();
                for _ in 0..self.rng.random_range(1..9) {
                    self.browse_step(session);
                }
                let checks_out = !self.sessions[&session].cart.is_empty() && self.rng.random::<f64>() < 0.6;
                if checks_out && !placing {
                    let d = self.exp_ms(15_000.0);
                    self.schedule(d, Task::Checkout { session });
                } else if checks_out && self.rng.random::<f64>() < self.config.checkout_conversion {
                    let d = self.exp_ms(60_000.0);
                    self.schedule(d, Task::PlaceOrder { session });
                } else {
                    self.sessions.remove(&session);
                }
            }
        }
        self.quiet = false;
    }

    /// A session under way at the start: a returning customer's or a guest's.
    fn open_warm_session(&mut self) -> u64 {
        let customer = self.returning_customer();
        self.open_session(customer)
    }

    /// A logged-in returning customer (70 %) or a guest.
    fn returning_customer(&mut self) -> Option<u64> {
        if self.rng.random::<f64>() >= 0.7 {
            return None;
        }
        let n = self.rng.random_range(0..self.customers.count());
        (!self.customers.is_erased(n)).then_some(n)
    }

    fn open_session(&mut self, customer: Option<u64>) -> u64 {
        self.next_session += 1;
        let n = self.next_session;
        self.sessions.insert(
            n,
            Session { id: format!("s-{n:08}"), customer, cart_id: format!("cart-{n:08}"), cart: BTreeMap::new(), viewed: Vec::new() },
        );
        n
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
        self.stock.add(product, w, qty);
    }

    fn emit_rate(&mut self, code: &'static str) {
        let idx = CURRENCIES.iter().position(|c| c.code == code).expect("listed");
        let id = self.event_id();
        // Rate from `code` to EUR: EUR per unit of `code`.
        let rate = 1.0 / self.rates_per_eur[idx];
        let rate_e9 = (rate * 1e9).round() as i64;
        let at = self.at();
        self.published_rates.record(code, "EUR", at.millis(), rate_e9);
        self.emit(ExchangeRateUpdated { event_id: id, occurred_at: at, base_currency: code.to_string(), quote_currency: "EUR".to_string(), rate_e9 });
    }

    fn emit_registered(&mut self, n: u64, c: &Customer) {
        let id = self.event_id();
        self.emit(CustomerRegistered {
            event_id: id,
            occurred_at: self.at(),
            customer_id: c.id.clone(),
            email: format!("shopper{}@example.com", n + 1),
            name: format!("Shopper {}", n + 1),
            country: c.country.to_string(),
            marketing_opt_in: n.is_multiple_of(3),
        });
    }

    /// A new account, opened now (the fraud ring's: from the ring's IP, in Germany).
    fn new_customer(&mut self, ring: bool) -> u64 {
        let country = if ring { "DE" } else { customers::shopper_country(&mut self.rng) };
        let ip = if ring { self.world.fraud_ring_ip.clone() } else { customers::random_ip(&mut self.rng) };
        let card = format!("pm_{:016x}", self.rng.random::<u64>());
        let n = self.customers.sign_up(country, self.at(), ip, card);
        let c = self.customers.get(n);
        self.emit_registered(n, &c);
        n
    }

    fn pick_product(&mut self) -> usize {
        use rand::distr::Distribution;
        self.popularity.sample(&mut self.rng)
    }

    fn in_stock(&self, p: usize) -> i32 {
        self.stock.total(&self.world, p)
    }

    fn ring_gap(&mut self) -> i64 {
        let share = self.config.fraud_ring_share.clamp(1e-6, 0.5);
        let ring_per_ms = self.orders_per_ms() * share / (1.0 - share);
        let burst_mean = 4.5;
        let d = self.exp_ms(burst_mean / ring_per_ms);
        d.max(1_000)
    }

    /// What the pipeline says about `order` now, when there are [`Decisions`]: `None` in
    /// open loop.
    fn ask(&mut self, order: u64) -> Option<Answer> {
        let d = self.decisions.as_mut()?;
        let id = &self.orders.get(&order)?.id;
        self.summary.decisions_asked += 1;
        let status = d.status_at(id, self.now - 1 - self.config.reaction_ms.max(0));
        Some(status.and_then(|s| s.parse().ok()).map_or(Answer::Unknown, Answer::Is))
    }

    fn run(&mut self, task: Task) {
        if self.poison_due > self.poison_built && !matches!(task, Task::Dispatch { .. }) {
            self.plant_anywhere();
        }
        match task {
            Task::NewSession => {
                let customer = if self.rng.random::<f64>() < 0.7 {
                    if self.rng.random::<f64>() < 0.15 {
                        Some(self.new_customer(false))
                    } else {
                        let n = self.rng.random_range(0..self.customers.count());
                        (!self.customers.is_erased(n)).then_some(n)
                    }
                } else {
                    None
                };
                let sid = self.open_session(customer);
                let page = ["/", "/deals", "/c/electronics", "/c/home", "/c/fashion"][self.rng.random_range(0..5)];
                let id = self.event_id();
                let referrer = (self.rng.random::<f64>() < 0.4).then(|| "https://www.google.com/".to_string());
                self.emit(PageViewed {
                    event_id: id,
                    occurred_at: self.at(),
                    session_id: self.sessions[&sid].id.clone(),
                    customer_id: customer.map(Customers::id),
                    page: page.to_string(),
                    referrer,
                });
                let steps = self.rng.random_range(1..9);
                let d = self.exp_ms(8_000.0);
                self.schedule(d, Task::Browse { session: sid, steps_left: steps });
                let gap: f64 = -self.rng.random::<f64>().max(1e-12).ln() * 1000.0 / self.config.sessions_per_second.max(1e-6);
                self.arrivals_at += gap;
                let next = (self.arrivals_at as i64 - self.now).max(0);
                self.schedule(next, Task::NewSession);
            }
            Task::Browse { session, steps_left } => self.browse(session, steps_left),
            Task::Checkout { session } => {
                let Some(s) = self.sessions.get(&session) else { return };
                let (sid, cart_id) = (s.id.clone(), s.cart_id.clone());
                let cust = s.customer.map(Customers::id);
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
                } else {
                    self.sessions.remove(&session);
                }
            }
            Task::PlaceOrder { session } => {
                let Some(s) = self.sessions.remove(&session) else { return };
                let customer = match s.customer {
                    Some(c) => c,
                    None => self.new_customer(false),
                };
                let cart: Vec<(usize, i32)> = s.cart.iter().map(|(p, q)| (*p, *q)).collect();
                self.place_order(customer, &cart, Some(s.id), false);
            }
            Task::Pay { order } => self.pay(order),
            Task::CancelMaybe { order } => {
                let Some(o) = self.orders.get(&order) else { return };
                if o.cancelled || o.shipped || o.declines {
                    return;
                }
                let oid = o.id.clone();
                if self.ask(order).is_some_and(|a| !matches!(a, Answer::Is(OrderStatus::Confirmed | OrderStatus::PaymentAuthorized))) {
                    return;
                }
                let id = self.event_id();
                self.emit(OrderCancelRequested {
                    event_id: id, occurred_at: self.at(), order_id: oid, requested_by: "customer".into(),
                    reason: "changed my mind".into(),
                });
                // The saga releases the payment's authorization (docs/PAYMENTS.md).
                self.cancel(order);
                self.orders.remove(&order);
            }
            Task::Ship { order, checks } => {
                let Some(o) = self.orders.get(&order) else { return };
                if o.cancelled {
                    return;
                }
                match self.ask(order) {
                    None | Some(Answer::Is(OrderStatus::Confirmed)) => self.ship(order),
                    Some(Answer::Is(OrderStatus::FraudHold)) => {
                        let d = self.slow_ms(FRAUD_REVIEW);
                        self.schedule(d, Task::Review { order });
                    }
                    Some(Answer::Is(OrderStatus::PaymentAuthorized | OrderStatus::Reserved | OrderStatus::Placed)) if checks < MAX_CHECKS => {
                        self.schedule(RECHECK_MS, Task::Ship { order, checks: checks + 1 });
                    }
                    Some(Answer::Is(s)) if s.is_unsold() => {
                        self.restore_stock(order);
                        self.orders.remove(&order);
                    }
                    Some(_) => {
                        self.orders.remove(&order);
                    }
                }
            }
            Task::Dispatch { order } => {
                let Some(o) = self.orders.get(&order) else { return };
                let (oid, wh) = (o.id.clone(), o.warehouse);
                let lines: Vec<SkuQuantity> = o.items.iter().map(|i| SkuQuantity { sku: i.sku.clone(), quantity: i.quantity }).collect();
                if self.poison_due > self.poison_built {
                    if self.next_poison() == Poison::OverShipment {
                        self.plant_over_shipment(order);
                    } else {
                        self.plant_anywhere();
                    }
                }
                let id = self.event_id();
                let tracking = format!("1Z{:012}", self.rng.random_range(0..999_999_999_999u64));
                self.emit(ShipmentShipped {
                    event_id: id, occurred_at: self.at(), order_id: oid.clone(), shipment_id: format!("shp-{}", &oid[2..]),
                    warehouse_id: wh.to_string(), tracking_number: tracking, lines,
                });
                let d = self.slow_ms(TRANSIT);
                self.schedule(d, Task::Deliver { order });
            }
            Task::Deliver { order } => {
                let Some(o) = self.orders.get(&order) else { return };
                let oid = o.id.clone();
                let id = self.event_id();
                self.emit(ShipmentDelivered {
                    event_id: id, occurred_at: self.at(), order_id: oid.clone(), shipment_id: format!("shp-{}", &oid[2..]),
                });
                let d = self.slow_ms(KEEPING);
                self.schedule(d, Task::AfterDelivery { order });
            }
            Task::AfterDelivery { order } => {
                let roll: f64 = self.rng.random();
                let Some(o) = self.orders.get(&order) else { return };
                let oid = o.id.clone();
                if roll < 0.06 {
                    let items: Vec<SkuQuantity> = o.items.iter().take(1).map(|i| SkuQuantity { sku: i.sku.clone(), quantity: 1 }).collect();
                    let id = self.event_id();
                    self.emit(ReturnRequested {
                        event_id: id, occurred_at: self.at(), order_id: oid.clone(), return_id: format!("ret-{}", &oid[2..]),
                        items, reason: ["too small", "not as described", "arrived damaged"][(order % 3) as usize].into(),
                    });
                    let d = self.slow_ms(RETURN_TRANSIT);
                    self.schedule(d, Task::ReceiveReturn { order });
                    return;
                }
                if roll < 0.2 {
                    let item = &o.items[0];
                    let (pid, vid, cust) = (item.product_id.clone(), item.vendor_id.clone(), Customers::id(o.customer));
                    let rating = [5, 5, 4, 4, 4, 3, 2, 1][self.rng.random_range(0..8)];
                    let id = self.event_id();
                    self.emit(ReviewSubmitted {
                        event_id: id, occurred_at: self.at(), review_id: format!("rev-{}", &oid[2..]), product_id: pid,
                        vendor_id: vid, customer_id: cust, rating, title: Some(format!("{rating} stars")), body: None,
                    });
                }
                self.orders.remove(&order);
            }
            Task::ReceiveReturn { order } => {
                let Some(o) = self.orders.get(&order) else { return };
                let oid = o.id.clone();
                let item = o.items[0].clone();
                let (wh, first) = (o.warehouse, o.taken.first().copied());
                let restockable = self.rng.random::<f64>() < 0.8;
                let id = self.event_id();
                self.emit(ReturnReceived {
                    event_id: id, occurred_at: self.at(), order_id: oid.clone(), return_id: format!("ret-{}", &oid[2..]),
                    warehouse_id: wh.to_string(), lines: vec![SkuQuantity { sku: item.sku.clone(), quantity: 1 }], restockable,
                });
                if let (true, Some((p, w, _))) = (restockable, first) {
                    self.stock.add(p, w, 1);
                }
                // The saga asks for the refund once the return is received.
                self.orders.remove(&order);
            }
            Task::Review { order } => {
                let Some(o) = self.orders.get(&order) else { return };
                if o.cancelled {
                    return;
                }
                let oid = o.id.clone();
                let id = self.event_id();
                self.emit(OrderCancelRequested {
                    event_id: id, occurred_at: self.at(), order_id: oid, requested_by: "fraud_review".into(),
                    reason: "held for fraud and cancelled on review".into(),
                });
                self.summary.fraud_review_cancels += 1;
                self.cancel(order);
                self.orders.remove(&order);
            }
            Task::StockReview => self.stock_review(),
            Task::StockArrives { product, warehouse, quantity } => {
                self.stock.delivered(product, warehouse);
                self.receive(product, warehouse, quantity);
            }
            Task::RatesMove => {
                for (i, c) in CURRENCIES.iter().enumerate().skip(1) {
                    let drift = 1.0 + (self.rng.random::<f64>() - 0.5) * 0.004;
                    self.rates_per_eur[i] *= drift;
                    self.emit_rate(c.code);
                }
                self.schedule(RATES_EVERY_MS, Task::RatesMove);
            }
            Task::CatalogChange => self.catalog_change(),
            Task::RingBurst => {
                let burst = self.rng.random_range(3..7);
                let mut d = 0;
                for _ in 0..burst {
                    self.schedule(d, Task::RingOrder);
                    d += self.exp_ms(20_000.0);
                }
                let gap = self.ring_gap();
                self.schedule(gap, Task::RingBurst);
            }
            Task::RingOrder => {
                let c = self.new_customer(true);
                let p = self.pick_product();
                if self.in_stock(p) > 0 {
                    self.place_order(c, &[(p, 1)], None, true);
                }
            }
        }
    }

    fn browse(&mut self, session: u64, steps_left: u32) {
        if !self.sessions.contains_key(&session) {
            return;
        }
        self.browse_step(session);
        let d = self.exp_ms(15_000.0);
        if steps_left > 1 {
            self.schedule(d, Task::Browse { session, steps_left: steps_left - 1 });
        } else if !self.sessions[&session].cart.is_empty() && self.rng.random::<f64>() < 0.6 {
            self.schedule(d, Task::Checkout { session });
        } else {
            self.sessions.remove(&session);
        }
    }

    /// One step of browsing: a search, a product view, an add to cart or a removal.
    fn browse_step(&mut self, session: u64) {
        let Some(s) = self.sessions.get(&session) else { return };
        let (sid, cust, last) = (s.id.clone(), s.customer.map(Customers::id), s.viewed.last().copied());
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
            // Often a product related to the last one viewed.
            let p = match last {
                Some(last) if self.rng.random::<f64>() < 0.3 => self
                    .world
                    .planted_pairs
                    .iter()
                    .find_map(|&(a, b)| (a == last).then_some(b).or((b == last).then_some(a)))
                    .unwrap_or_else(|| self.pick_product()),
                _ => self.pick_product(),
            };
            if let Some(s) = self.sessions.get_mut(&session) {
                s.viewed.push(p);
            }
            let prod = &self.world.products[p];
            let (pid, vid, cat) = (prod.id.clone(), self.world.vendors[prod.vendor].id.clone(), prod.category);
            let id = self.event_id();
            self.emit(ProductViewed {
                event_id: id, occurred_at: self.at(), session_id: sid, customer_id: cust,
                product_id: pid, vendor_id: vid, category: cat.to_string(),
            });
        } else if roll < 0.93 {
            if let Some(p) = last {
                if self.in_stock(p) > 0 {
                    let q = self.rng.random_range(1..3);
                    self.add_to_cart(session, p, q);
                    if let Some(&(_, b)) = self.world.planted_pairs.iter().find(|(a, _)| *a == p)
                        && self.rng.random::<f64>() < 0.6
                    {
                        if self.in_stock(b) > 0 {
                            self.add_to_cart(session, b, 1);
                        } else {
                            self.stock_out();
                        }
                    }
                } else {
                    self.stock_out();
                }
            }
        } else if let Some((&p, &q)) = self.sessions[&session].cart.iter().next() {
            if let Some(s) = self.sessions.get_mut(&session) {
                s.cart.remove(&p);
            }
            let prod = &self.world.products[p];
            let (pid, sku) = (prod.id.clone(), prod.sku.clone());
            let id = self.event_id();
            let cart_id = self.sessions[&session].cart_id.clone();
            self.emit(CartItemRemoved {
                event_id: id, occurred_at: self.at(), session_id: sid, customer_id: cust,
                cart_id, product_id: pid, sku, quantity: q,
            });
        }
    }

    /// Counts a shopper meeting a product out of stock (not while playing the sessions
    /// under way at the start).
    fn stock_out(&mut self) {
        self.summary.stock_outs += u64::from(!self.quiet);
    }

    fn pay(&mut self, order: u64) {
        let Some(o) = self.orders.get(&order) else { return };
        if o.cancelled {
            return;
        }
        match self.ask(order) {
            None | Some(Answer::Is(OrderStatus::Reserved | OrderStatus::Placed | OrderStatus::PaymentAuthorized | OrderStatus::Confirmed)) => {}
            Some(Answer::Is(OrderStatus::FraudHold)) => {
                let d = self.slow_ms(FRAUD_REVIEW);
                self.schedule(d, Task::Review { order });
                return;
            }
            Some(answer) => {
                self.summary.rejected_unpaid += (answer == Answer::Is(OrderStatus::RejectedOutOfStock)) as u64;
                self.restore_stock(order);
                self.orders.remove(&order);
                return;
            }
        }
        // A payment the browser confirmed: Stripe's webhook reports its outcome.
        if let Some((pi, total, currency)) = self.orders[&order].browser_pi.clone() {
            let o = &self.orders[&order];
            let (oid, declines, currency) = (o.id.clone(), o.declines, currency.to_string());
            let id = self.event_id();
            if declines {
                self.emit(PaymentFailed {
                    event_id: id, occurred_at: self.at(), order_id: oid, payment_id: Some(pi), amount_minor: total, currency,
                    failure_code: "card_declined".into(), failure_message: "Your card was declined.".into(),
                });
            } else {
                self.emit(PaymentAuthorized { event_id: id, occurred_at: self.at(), order_id: oid, payment_id: pi, amount_minor: total, currency, provider: "stripe".into(), card_brand: None, card_last4: None });
            }
        }
        // Otherwise the saga asked the payments worker to authorize the card the checkout
        // carried; one of Stripe's declining test cards fails, and the order with it.
        if self.orders[&order].declines {
            self.restore_stock(order);
            self.orders.remove(&order);
            return;
        }
        let d = 1_000 + self.slow_ms(PICK_PACK);
        self.schedule(d, Task::Ship { order, checks: 0 });
        if self.rng.random::<f64>() < 0.04 {
            let d = self.slow_ms(SECOND_THOUGHTS);
            self.schedule(d, Task::CancelMaybe { order });
        }
    }

    /// ShipmentCreated now (the saga has the payment captured), ShipmentShipped when the
    /// carrier takes it.
    fn ship(&mut self, order: u64) {
        let Some(o) = self.orders.get_mut(&order) else { return };
        o.shipped = true;
        let (oid, wh) = (o.id.clone(), o.warehouse);
        let lines: Vec<SkuQuantity> = o.items.iter().map(|i| SkuQuantity { sku: i.sku.clone(), quantity: i.quantity }).collect();
        let id1 = self.event_id();
        self.emit(ShipmentCreated {
            event_id: id1, occurred_at: self.at(), order_id: oid.clone(), shipment_id: format!("shp-{}", &oid[2..]),
            warehouse_id: wh.to_string(), carrier: ["ups", "dhl", "dpd", "yamato"][(order % 4) as usize].into(), lines,
        });
        let d = self.slow_ms(HANDOVER);
        self.schedule(d, Task::Dispatch { order });
    }

    fn cancel(&mut self, order: u64) {
        if let Some(o) = self.orders.get_mut(&order) {
            o.cancelled = true;
        }
        self.restore_stock(order);
    }

    fn stock_review(&mut self) {
        let lead = SUPPLIER_LEAD / self.speedup();
        for (product, warehouse, quantity) in self.stock.review(STOCK_REVIEW_MS as f64, lead) {
            let d = self.exp_ms(lead);
            self.schedule(d, Task::StockArrives { product, warehouse, quantity });
        }
        // Write-offs and transfers keep a margin over what the pipeline may have moved
        // meanwhile (its holds and releases are stamped a little after the order's time).
        if self.rng.random::<f64>() < 0.5 {
            let p = self.pick_product();
            let w = self.world.products[p].warehouses[0];
            if self.stock.level(p, w) >= 8 {
                let id = self.event_id();
                self.emit(StockAdjusted {
                    event_id: id, occurred_at: self.at(), sku: self.world.products[p].sku.clone(),
                    warehouse_id: WAREHOUSES[w].id.into(), delta: -1, reason: "damaged".into(),
                });
                self.stock.remove(p, w, 1);
            }
        }
        if self.rng.random::<f64>() < 0.5 {
            let p = self.pick_product();
            let from = self.world.products[p].warehouses[0];
            let to = (from + 1) % WAREHOUSES.len();
            if self.stock.level(p, from) >= 15 {
                let id = self.event_id();
                self.emit(StockTransferred {
                    event_id: id, occurred_at: self.at(), sku: self.world.products[p].sku.clone(),
                    from_warehouse_id: WAREHOUSES[from].id.into(), to_warehouse_id: WAREHOUSES[to].id.into(), quantity: 5,
                });
                self.stock.remove(p, from, 5);
                self.stock.add(p, to, 5);
                if !self.world.products[p].warehouses.contains(&to) {
                    self.world.products[p].warehouses.push(to);
                }
            }
        }
        self.schedule(STOCK_REVIEW_MS, Task::StockReview);
    }

    fn catalog_change(&mut self) {
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
        if self.rng.random::<f64>() < 0.2 {
            let n = self.rng.random_range(0..self.customers.count());
            if self.customers.erase(n) {
                let id = self.event_id();
                self.emit(CustomerErased { event_id: id, occurred_at: self.at(), customer_id: Customers::id(n), reason: Some("gdpr_request".into()) });
            }
        }
        self.schedule(CATALOG_EVERY_MS, Task::CatalogChange);
    }

    fn add_to_cart(&mut self, session: u64, p: usize, qty: i32) {
        let id = self.event_id();
        let s = &self.sessions[&session];
        let prod = &self.world.products[p];
        let e = CartItemAdded {
            event_id: id,
            occurred_at: self.at(),
            session_id: s.id.clone(),
            customer_id: s.customer.map(Customers::id),
            cart_id: s.cart_id.clone(),
            product_id: prod.id.clone(),
            sku: prod.sku.clone(),
            vendor_id: self.world.vendors[prod.vendor].id.clone(),
            quantity: qty,
            unit_price_minor: prod.price_eur_minor,
            currency: "EUR".to_string(),
        };
        if let Some(s) = self.sessions.get_mut(&session) {
            *s.cart.entry(p).or_default() += qty;
        }
        self.emit(e);
    }

    /// A line of product `p` priced in `currency` at today's rate.
    fn order_item(&self, p: usize, qty: i32, currency: &Currency) -> OrderItem {
        let cidx = CURRENCIES.iter().position(|x| x.code == currency.code).expect("listed");
        let prod = &self.world.products[p];
        let unit = ((prod.price_eur_minor as f64 / 100.0) * self.rates_per_eur[cidx] * 10f64.powi(currency.decimals as i32)).round() as i64;
        OrderItem {
            sku: prod.sku.clone(),
            product_id: prod.id.clone(),
            vendor_id: self.world.vendors[prod.vendor].id.clone(),
            quantity: qty,
            unit_price_minor: unit,
        }
    }

    /// The next order number and id. The id names the seed: another seed's run on the same
    /// log places other orders, while a rerun of one seed places the same ones again (and
    /// the saga refuses them as already placed).
    fn new_order_id(&mut self) -> (u64, String) {
        self.next_order += 1;
        (self.next_order, format!("o-{}-{:08}", self.config.seed, self.next_order))
    }

    /// An OrderPlaced under a new order number for `items` by account `n`, shipped to
    /// `ship_country`, with the marketplace's shipping, tax and discount rules.
    fn order_placed(&mut self, n: u64, c: &Customer, ship_country: &str, items: Vec<OrderItem>, session: Option<String>, card: String) -> (u64, OrderPlaced) {
        let (number, order_id) = self.new_order_id();
        let currency = currency_of(c.country);
        let subtotal: i64 = items.iter().map(|i| i.unit_price_minor * i64::from(i.quantity)).sum();
        let shipping = if subtotal > 50 * 10i64.pow(currency.decimals) { 0 } else { 499 * 10i64.pow(currency.decimals) / 100 };
        let tax = subtotal * 19 / 119 / 10;
        let discount = if number % 10 == 0 { subtotal / 20 } else { 0 };
        let address = |country: &str| Address {
            name: format!("Shopper {}", n + 1),
            line1: format!("{} Market Street", 1 + n % 200),
            line2: None,
            city: "Springfield".to_string(),
            postal_code: format!("{:05}", 10_000 + n % 80_000),
            region: None,
            country: country.to_string(),
        };
        let e = OrderPlaced {
            event_id: self.event_id(),
            occurred_at: self.at(),
            order_id,
            customer_id: c.id.clone(),
            session_id: session,
            customer_since: Some(c.since),
            items,
            currency: currency.code.to_string(),
            shipping_address: address(ship_country),
            billing_address: address(c.country),
            shipping_minor: shipping,
            tax_minor: tax,
            discount_minor: discount,
            payment_method_token: card,
            client_ip: c.ip.clone(),
        };
        (number, e)
    }

    fn place_order(&mut self, customer: u64, cart: &[(usize, i32)], session: Option<String>, ring: bool) {
        let c = self.customers.get(customer);
        let currency = currency_of(c.country);
        let ring_ship_to = world::RING_SHIP_TO[(self.next_order % 2) as usize];
        let ship_country = if ring { ring_ship_to } else { c.country };
        let chosen = self.stock.allocate(&self.world, cart, ship_country);
        let mut items = Vec::new();
        let mut taken = Vec::new();
        for (&(p, q), w) in cart.iter().zip(chosen) {
            let Some(w) = w else {
                self.summary.stock_outs += 1;
                continue;
            };
            self.stock.take(p, w, q);
            taken.push((p, w, q));
            items.push(self.order_item(p, q, currency));
        }
        if items.is_empty() {
            return;
        }
        let card = if ring { format!("pm_{:016x}", self.rng.random::<u64>()) } else { c.card.clone() };
        let declines = self.rng.random::<f64>() < if ring { 0.35 } else { 0.06 };
        let card = if declines { DECLINED_CARDS[self.rng.random_range(0..DECLINED_CARDS.len())].to_string() } else { card };
        let browser_pi = (self.config.browser_confirmed_share > 0.0 && self.rng.random::<f64>() < self.config.browser_confirmed_share)
            .then(|| format!("pi_{:016x}", self.rng.random::<u64>()));
        let card = browser_pi.clone().unwrap_or(card);
        let (number, e) = self.order_placed(customer, &c, ship_country, items.clone(), session, card);
        let order_id = e.order_id.clone();
        let total = e.total_minor();
        let eur = self.published_rates.to_base(total, currency.code, e.occurred_at.millis()).unwrap_or(0);
        self.gmv_eur.insert(order_id.clone(), eur);
        if ring {
            self.ring_ids.insert(order_id.clone());
        }
        self.emit(e);
        let warehouse = WAREHOUSES[taken[0].1].id;
        self.orders.insert(
            number,
            Order { id: order_id, customer, items, taken, declines, browser_pi: browser_pi.map(|pi| (pi, total, currency.code)), warehouse, cancelled: false, shipped: false },
        );
        let d = 1_000 + self.exp_ms(4_000.0);
        self.schedule(d, Task::Pay { order: number });
    }

    fn restore_stock(&mut self, order: u64) {
        let Some(o) = self.orders.get_mut(&order) else { return };
        for (p, w, q) in std::mem::take(&mut o.taken) {
            self.stock.give_back(p, w, q);
        }
    }

    /// The kind of poison whose turn it is.
    fn next_poison(&self) -> Poison {
        Poison::nth(self.poison_built + self.poison_skipped)
    }

    /// Plants the poison whose turn it is, unless it is an over-shipment (planted when an
    /// order ships) and no order has had the time to ship yet.
    fn plant_anywhere(&mut self) {
        if self.next_poison() == Poison::OverShipment {
            if self.now - self.poison_due_since < POISON_PATIENCE_MS {
                return;
            }
            self.poison_skipped += 1;
        }
        let n = self.rng.random_range(0..self.customers.base());
        let c = self.customers.get(n);
        let p = self.pick_product();
        match self.next_poison() {
            Poison::ZeroQuantityLine => {
                let item = self.order_item(p, 0, currency_of(c.country));
                let sku = item.sku.clone();
                let (_, e) = self.order_placed(n, &c, c.country, vec![item], None, c.card.clone());
                let reason = format!("order {} has a line of 0 units of {sku}: every line needs at least one unit", e.order_id);
                self.plant(Poison::ZeroQuantityLine, e.into(), reason);
            }
            Poison::DiscountAboveTotal => {
                let item = self.order_item(p, 1, currency_of(c.country));
                let (_, mut e) = self.order_placed(n, &c, c.country, vec![item], None, c.card.clone());
                e.discount_minor = e.subtotal_minor() + e.shipping_minor + e.tax_minor + 100;
                let reason = format!(
                    "order {}'s discount ({}) exceeds its subtotal, shipping and tax: its total would be negative",
                    e.order_id, e.discount_minor
                );
                self.plant(Poison::DiscountAboveTotal, e.into(), reason);
            }
            Poison::ZeroUnitReceipt | Poison::OverShipment => {
                let w = self.world.products[p].warehouses[0];
                let (sku, wh) = (self.world.products[p].sku.clone(), WAREHOUSES[w].id);
                let e = StockReceived {
                    event_id: self.event_id(),
                    occurred_at: self.at(),
                    sku: sku.clone(),
                    warehouse_id: wh.to_string(),
                    quantity: 0,
                    reference: Some(format!("PO-{}", self.rng.random_range(10_000..99_999))),
                };
                let reason = format!("a receipt of 0 units of {sku} at {wh}: a delivery brings at least one");
                self.plant(Poison::ZeroUnitReceipt, e.into(), reason);
            }
        }
    }

    /// A second ShipmentShipped for `order`, claiming one unit more of its first line than
    /// it has.
    fn plant_over_shipment(&mut self, order: u64) {
        let o = &self.orders[&order];
        let (oid, wh, item) = (o.id.clone(), o.warehouse, o.items[0].clone());
        let e = ShipmentShipped {
            event_id: self.event_id(),
            occurred_at: self.at(),
            order_id: oid.clone(),
            shipment_id: format!("shp-{}-b", &oid[2..]),
            warehouse_id: wh.to_string(),
            tracking_number: format!("1Z{:012}", self.rng.random_range(0..999_999_999_999u64)),
            lines: vec![SkuQuantity { sku: item.sku.clone(), quantity: item.quantity + 1 }],
        };
        let reason = format!(
            "ships {} units of {} on order {oid}, which has {}: more than was ordered",
            item.quantity + 1,
            item.sku,
            item.quantity
        );
        self.plant(Poison::OverShipment, e.into(), reason);
    }

    fn plant(&mut self, kind: Poison, e: Event, reason: String) {
        let p = Planted {
            event_id: e.event_id().to_string(),
            topic: e.topic(),
            event_type: e.name(),
            key: e.key(),
            reason,
            refused_by: kind.refused_by(),
        };
        self.planting.insert(p.event_id.clone(), p);
        self.poison_built += 1;
        self.poison_due_since = self.now;
        self.emit(e);
    }

    /// Counts a yielded event, and brings the next poison's turn when its share of the run
    /// has gone by.
    fn count_yielded(&mut self, e: &Event) {
        self.summary.count(e);
        let planted = if self.planting.is_empty() { None } else { self.planting.remove(e.event_id()) };
        match e {
            Event::PageViewed(_) => self.summary.sessions += 1,
            Event::OrderPlaced(o) if planted.is_none() => {
                self.summary.orders += 1;
                self.summary.ring_orders += self.ring_ids.contains(&o.order_id) as u64;
                self.summary.gmv_eur_minor += self.gmv_eur.remove(&o.order_id).unwrap_or(0);
            }
            _ => {}
        }
        if let Some(p) = planted {
            self.summary.planted += 1;
            self.planted.push(p);
        }
        self.yielded += 1;
        let (poison, run) = (self.config.poison as u64, self.config.expected_events.max(1));
        let scheduled = self.poison_due as u64;
        if scheduled < poison && self.yielded >= (scheduled + 1) * run / (poison + 1) {
            if self.poison_due == self.poison_built {
                self.poison_due_since = self.now;
            }
            self.poison_due += 1;
        }
    }
}

impl Iterator for Simulator {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        let bound = self.config.not_after.map_or(i64::MAX, Timestamp::millis);
        loop {
            if let Some(e) = self.pending.front() {
                if e.occurred_at().millis() > bound {
                    return None;
                }
                let e = self.pending.pop_front().expect("there is a front");
                self.count_yielded(&e);
                return Some(e);
            }
            let &Reverse((at, _, id)) = self.queue.peek()?;
            if at > bound {
                return None;
            }
            self.queue.pop();
            self.now = self.now.max(at);
            let task = self.tasks.remove(&id).expect("every queued task is stored");
            self.run(task);
        }
    }
}
