//! Joins with reference data do not depend on how a sink's subscription interleaves its
//! topics: the runner reads `storefront.exchange_rates` and `storefront.catalog` ahead of
//! every write. Two runs of the analytics and search sinks over one log — one as the
//! embedded log hands the topics out, one whose subscription gets the rates and the
//! catalogue only after every fact that needs them — end with equal
//! `snapshot::embedded` dumps, and the joined values equal what the test computes from
//! the records on its own. Live, a rate published after a fact is not applied to it
//! afterwards; a replay of the finished log applies it.

mod common;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use serde_json::Value;
use storeflow_avro::*;
use storeflow_ingest::{
    Consumer, ConsumerConfig, GroupMetadata, Log, Producer, RebalanceListener, Record, TopicInfo, TopicPartition, TopicSpec,
    TransactionalProducer,
};
use storeflow_sinks::snapshot::{self, differences};
use storeflow_sinks::{AnalyticsSink, SearchSink, Sinks, SinksConfig};

use common::*;

type Dump = BTreeMap<String, Vec<String>>;

// ------------------------------------------------------------------------- a late log

/// What the late subscription did.
#[derive(Debug, Default)]
struct Lateness {
    /// Records of the held topics kept back.
    held: usize,
    /// Records of other topics handed out after the first held one was.
    others_after: usize,
    released: bool,
}

/// The log, except that a sink's subscription (a consumer that subscribes) hands out the
/// records of `held` topics only when it has nothing else to hand out — the facts first,
/// the reference data they join with last. Assigned consumers (the runner's read-ahead)
/// read the log as it is.
struct Late {
    inner: Arc<dyn Log>,
    held: Vec<String>,
    lateness: Arc<Mutex<Lateness>>,
}

struct LateConsumer {
    inner: Box<dyn Consumer>,
    held: Vec<String>,
    subscribed: bool,
    buffer: VecDeque<Record>,
    /// This consumer has started handing out what it kept back (each sink has its own).
    released: bool,
    lateness: Arc<Mutex<Lateness>>,
}

impl Log for Late {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn create_topics(&self, specs: &[TopicSpec]) -> storeflow_ingest::Result<()> {
        self.inner.create_topics(specs)
    }
    fn describe_topics(&self) -> storeflow_ingest::Result<Vec<TopicInfo>> {
        self.inner.describe_topics()
    }
    fn producer(&self) -> storeflow_ingest::Result<Box<dyn Producer>> {
        self.inner.producer()
    }
    fn consumer(&self, config: ConsumerConfig, listener: Option<Box<dyn RebalanceListener>>) -> storeflow_ingest::Result<Box<dyn Consumer>> {
        Ok(Box::new(LateConsumer {
            inner: self.inner.consumer(config, listener)?,
            held: self.held.clone(),
            subscribed: false,
            buffer: VecDeque::new(),
            released: false,
            lateness: self.lateness.clone(),
        }))
    }
    fn transactional_producer(&self, id: &str) -> storeflow_ingest::Result<Box<dyn TransactionalProducer>> {
        self.inner.transactional_producer(id)
    }
    fn committed_offsets(&self, group: &str, partitions: &[TopicPartition]) -> storeflow_ingest::Result<Vec<Option<u64>>> {
        self.inner.committed_offsets(group, partitions)
    }
    fn watermarks(&self, partitions: &[TopicPartition]) -> storeflow_ingest::Result<Vec<(u64, u64)>> {
        self.inner.watermarks(partitions)
    }
}

impl Consumer for LateConsumer {
    fn subscribe(&mut self, topics: &[&str]) -> storeflow_ingest::Result<()> {
        self.subscribed = true;
        self.inner.subscribe(topics)
    }
    fn assign(&mut self, partitions: &[(TopicPartition, u64)]) -> storeflow_ingest::Result<()> {
        self.subscribed = false;
        self.inner.assign(partitions)
    }
    fn poll(&mut self, max: usize, timeout: std::time::Duration) -> storeflow_ingest::Result<Vec<Record>> {
        if !self.subscribed {
            return self.inner.poll(max, timeout);
        }
        let records = self.inner.poll(max, timeout)?;
        let nothing_new = records.is_empty();
        let mut out = Vec::new();
        let mut l = self.lateness.lock();
        for r in records {
            if self.held.iter().any(|t| **t == *r.topic) {
                l.held += 1;
                self.buffer.push_back(r);
            } else {
                l.others_after += usize::from(self.released);
                out.push(r);
            }
        }
        if out.is_empty() && nothing_new && !self.buffer.is_empty() {
            self.released = true;
            l.released = true;
            let n = max.min(self.buffer.len());
            out.extend(self.buffer.drain(..n));
        }
        Ok(out)
    }
    fn seek(&mut self, partition: &TopicPartition, offset: u64) -> storeflow_ingest::Result<()> {
        self.buffer.retain(|r| r.tp() != *partition);
        self.inner.seek(partition, offset)
    }
    fn position(&self, partition: &TopicPartition) -> Option<u64> {
        // Not past what was kept back: the runner commits positions when it is idle.
        match self.buffer.iter().find(|r| r.tp() == *partition) {
            Some(r) => Some(r.offset),
            None => self.inner.position(partition),
        }
    }
    fn assignment(&self) -> Vec<TopicPartition> {
        self.inner.assignment()
    }
    fn commit(&mut self, offsets: &[(TopicPartition, u64)]) -> storeflow_ingest::Result<()> {
        self.inner.commit(offsets)
    }
    fn group_metadata(&self) -> Option<GroupMetadata> {
        self.inner.group_metadata()
    }
    fn close(self: Box<Self>) -> storeflow_ingest::Result<()> {
        self.inner.close()
    }
}

// ------------------------------------------------------------------------- records

fn address(country: &str) -> Address {
    Address { name: "Ada".into(), line1: "1 Way".into(), line2: None, city: "Town".into(), postal_code: "1".into(), region: None, country: country.into() }
}

fn order(id: &str, at: i64, currency: &str, product: &str, unit: i64) -> Event {
    Event::OrderPlaced(OrderPlaced {
        event_id: format!("op-{id}"),
        occurred_at: Timestamp(at),
        order_id: id.into(),
        customer_id: "c-late".into(),
        session_id: None,
        customer_since: None,
        items: vec![OrderItem { sku: format!("sku-{product}"), product_id: product.into(), vendor_id: "v-late".into(), quantity: 2, unit_price_minor: unit }],
        currency: currency.into(),
        shipping_address: address("JP"),
        billing_address: address("JP"),
        shipping_minor: 0,
        tax_minor: 0,
        discount_minor: 0,
        payment_method_token: "tok".into(),
        client_ip: "10.0.0.1".into(),
    })
}

fn rate(code: &str, at: i64, rate_e9: i64) -> Event {
    Event::ExchangeRateUpdated(ExchangeRateUpdated {
        event_id: format!("rate-{code}-{at}"),
        occurred_at: Timestamp(at),
        base_currency: code.into(),
        quote_currency: "EUR".into(),
        rate_e9,
    })
}

/// The simulator's storefront, what the processors derive from its orders (a status and
/// the stock levels of their lines), and at the end of the catalogue a product moved to
/// another category and brand and prices in other currencies.
fn records() -> Vec<Event> {
    let mut out = sim(6_000, 31);
    let mut derived = Vec::new();
    let mut versions: HashMap<String, i64> = HashMap::new();
    for e in &out {
        let Event::OrderPlaced(o) = e else { continue };
        let at = o.occurred_at.millis();
        derived.push(Event::OrderStatusChanged(OrderStatusChanged {
            event_id: format!("st-{}", o.order_id),
            occurred_at: Timestamp(at),
            order_id: o.order_id.clone(),
            customer_id: o.customer_id.clone(),
            previous_status: None,
            status: "placed".into(),
            payment_status: "pending".into(),
            fulfillment_status: "unfulfilled".into(),
            reason: "placed".into(),
            total_minor: o.total_minor(),
            currency: o.currency.clone(),
            version: 1,
        }));
        for l in &o.items {
            let v = versions.entry(l.sku.clone()).or_insert(0);
            *v += 1;
            derived.push(level(&l.sku, "w1", *v, at, 1_000, *v as i32, "reserved"));
        }
    }
    out.extend(derived);
    let ordered = out.iter().find_map(|e| if let Event::OrderPlaced(o) = e { Some(o.items[0].clone()) } else { None }).expect("an order");
    let last = out.iter().map(|e| e.occurred_at().millis()).max().unwrap_or(START);
    out.push(Event::ProductUpdated(ProductUpdated {
        event_id: "pu-moved".into(),
        occurred_at: Timestamp(last + 1_000),
        product_id: ordered.product_id.clone(),
        vendor_id: ordered.vendor_id.clone(),
        title: None,
        description: None,
        category: Some("garden/tools/moved".into()),
        brand: Some("Moved & Co".into()),
        status: None,
    }));
    let products: Vec<&ProductCreated> = out.iter().filter_map(|e| if let Event::ProductCreated(p) = e { Some(p) } else { None }).collect();
    let repriced: Vec<Event> = products
        .iter()
        .take(6)
        .enumerate()
        .map(|(n, p)| {
            Event::PriceChanged(PriceChanged {
                event_id: format!("pr-late-{n}"),
                occurred_at: Timestamp(START + 600_000 * n as i64),
                product_id: p.product_id.clone(),
                vendor_id: p.vendor_id.clone(),
                sku: p.sku.clone(),
                old_price_minor: Some(p.price_minor),
                price_minor: 1_000 + 137 * n as i64,
                currency: ["JPY", "USD", "GBP"][n % 3].into(),
            })
        })
        .collect();
    out.extend(repriced);
    // Dense traffic spans seconds, rates change every few minutes: a second rate per pair
    // in the middle of the orders, so some orders convert at a rate other than the first.
    let mut times: Vec<i64> = out.iter().filter_map(|e| if let Event::OrderPlaced(o) = e { Some(o.occurred_at.millis()) } else { None }).collect();
    times.sort();
    let middle = times[times.len() / 2];
    let moved: Vec<Event> = out
        .iter()
        .filter_map(|e| if let Event::ExchangeRateUpdated(r) = e { Some(r.clone()) } else { None })
        .enumerate()
        .map(|(n, r)| {
            Event::ExchangeRateUpdated(ExchangeRateUpdated {
                event_id: format!("rate-moved-{n}"),
                occurred_at: Timestamp(middle),
                rate_e9: r.rate_e9 + r.rate_e9 / 20,
                ..r
            })
        })
        .collect();
    assert!(!moved.is_empty(), "the simulator published no exchange rates");
    out.extend(moved);
    out
}

// ------------------------------------------------------------------------- independent joins

/// Digits after the point of the simulator's currencies.
fn decimals(currency: &str) -> u32 {
    match currency {
        "JPY" => 0,
        "EUR" | "USD" | "GBP" => 2,
        other => panic!("the test does not know {other}"),
    }
}

/// Base-currency amounts computed from the records alone: the rate of the currency (in
/// EUR per unit) with the latest time at or before `at` — the last in the log among equal
/// times —, else its earliest; amounts rounded half away from zero.
struct Eur(HashMap<String, Vec<(i64, i64)>>);

impl Eur {
    fn new(events: &[Event]) -> Eur {
        let mut m: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
        for e in events {
            if let Event::ExchangeRateUpdated(r) = e {
                assert_eq!(r.quote_currency, "EUR");
                m.entry(r.base_currency.clone()).or_default().push((r.occurred_at.millis(), r.rate_e9));
            }
        }
        Eur(m)
    }

    /// The rate used at `at`, and whether it is the currency's first one.
    fn rate(&self, currency: &str, at: i64) -> Option<(i64, bool)> {
        let rates = self.0.get(currency)?;
        let earliest = rates.iter().map(|r| r.0).min()?;
        let time = rates.iter().map(|r| r.0).filter(|t| *t <= at).max().unwrap_or(earliest);
        let (_, r) = rates.iter().rev().find(|(t, _)| *t == time)?;
        Some((*r, time == earliest))
    }

    fn cents(&self, amount: i64, currency: &str, at: i64) -> i64 {
        if currency == "EUR" {
            return amount;
        }
        let Some((r, _)) = self.rate(currency, at) else { return 0 };
        let num = i128::from(amount) * i128::from(r) * 100;
        let den = 1_000_000_000i128 * 10i128.pow(decimals(currency));
        let q = (2 * num.abs() + den) / (2 * den);
        (if num < 0 { -q } else { q }) as i64
    }
}

/// The last catalogue facts per product: (category, brand, vendor), and sku → product.
fn catalogue(events: &[Event]) -> (HashMap<String, (String, String, String)>, HashMap<String, String>) {
    let (mut facts, mut skus) = (HashMap::new(), HashMap::new());
    for e in events {
        match e {
            Event::ProductCreated(p) => {
                facts.insert(p.product_id.clone(), (p.category.clone(), p.brand.clone(), p.vendor_id.clone()));
                skus.insert(p.sku.clone(), p.product_id.clone());
            }
            Event::ProductUpdated(u) => {
                if let Some(f) = facts.get_mut(&u.product_id) {
                    if let Some(c) = &u.category {
                        f.0 = c.clone();
                    }
                    if let Some(b) = &u.brand {
                        f.1 = b.clone();
                    }
                    f.2 = u.vendor_id.clone();
                }
            }
            _ => {}
        }
    }
    (facts, skus)
}

// ------------------------------------------------------------------------- runs

fn rows(dump: &Dump, table: &str) -> Vec<Value> {
    dump.get(table).unwrap_or_else(|| panic!("no {table} in the dump")).iter().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

fn s<'a>(row: &'a Value, field: &str) -> &'a str {
    row[field].as_str().unwrap_or_else(|| panic!("{field} of {row}"))
}

fn n(row: &Value, field: &str) -> i64 {
    row[field].as_i64().unwrap_or_else(|| panic!("{field} of {row}"))
}

/// Analytics and search on their embedded twins under `dir`, in group `<app>.sink.*`, in
/// small batches, until they have written everything `log` holds; then the dump.
fn run_sinks(log: Arc<dyn Log>, dir: &Path, app: &str) -> Dump {
    let mut c = SinksConfig::embedded(dir.join("sinks")).only(&["analytics", "search"]);
    c.app = app.into();
    c.max_poll = 250;
    c.sink_mut::<AnalyticsSink>().max_batch = 400;
    c.sink_mut::<AnalyticsSink>().max_wait_ms = 50;
    c.sink_mut::<SearchSink>().max_batch = 400;
    c.sink_mut::<SearchSink>().max_wait_ms = 50;
    let sinks = Sinks::start(log, codec(), c, &mut Registry::default()).expect("start the sinks");
    sinks.wait_caught_up(PATIENCE).expect("caught up");
    sinks.stop().expect("stop");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(snapshot::embedded(&dir.join("sinks"))).expect("dump")
}

/// Two runs over one log holding `events`: as the embedded log hands the topics out, and
/// with the rates and the catalogue held back until every other record was delivered.
fn two_runs(events: &[Event]) -> (Dump, Dump) {
    init();
    let dir = tempfile::tempdir().unwrap();
    let log = log(&dir.path().join("log"));
    publish(log.as_ref(), &codec(), events);
    let plain = run_sinks(log.clone(), &dir.path().join("plain"), "plain");
    let lateness = Arc::new(Mutex::new(Lateness::default()));
    let held = vec![Topic::ExchangeRates.name().to_string(), Topic::Catalog.name().to_string()];
    let late_log: Arc<dyn Log> = Arc::new(Late { inner: log, held, lateness: lateness.clone() });
    let late = run_sinks(late_log, &dir.path().join("late"), "late");
    let l = lateness.lock();
    let reference = events.iter().filter(|e| matches!(e.topic(), Topic::ExchangeRates | Topic::Catalog)).count();
    // Each sink's subscription held back every reference record it reads, and handed out
    // nothing else after them: the facts came first.
    assert!(l.held >= reference, "only {} of {reference} reference records were held back", l.held);
    assert_eq!(l.others_after, 0, "facts came after the reference data");
    let d = differences(&plain, &late);
    assert!(d.is_empty(), "the runs' stores differ:\n{}", d.join("\n"));
    (plain, late)
}

// ------------------------------------------------------------------------- tests

#[test]
fn base_amounts_are_the_same_when_the_rates_reach_the_sink_after_the_facts_that_need_them() {
    let events = records();
    let (dump, _) = two_runs(&events);
    let eur = Eur::new(&events);
    let placed: HashMap<&str, &OrderPlaced> = events.iter().filter_map(|e| if let Event::OrderPlaced(o) = e { Some((o.order_id.as_str(), o)) } else { None }).collect();

    let (mut foreign, mut later_rate) = (0, 0);
    for row in rows(&dump, "analytics.fact_orders") {
        let o = placed[s(&row, "order_id")];
        let at = o.occurred_at.millis();
        assert_eq!(n(&row, "total_eur_minor"), eur.cents(o.total_minor(), &o.currency, at), "{row}");
        if o.currency != "EUR" {
            foreign += 1;
            assert!(n(&row, "total_eur_minor") > 0, "{row}");
            later_rate += usize::from(eur.rate(&o.currency, at).is_some_and(|(_, first)| !first));
        }
    }
    assert!(foreign >= 10, "only {foreign} orders in another currency");
    assert!(later_rate > 0, "no order took a rate other than its currency's first: the rate in force at its time is untested");
    // The lifecycle's snapshots (a derived topic) and the order lines, likewise.
    let status = rows(&dump, "analytics.fact_order_status");
    assert_eq!(status.len(), placed.len());
    for row in &status {
        let o = placed[s(row, "order_id")];
        assert_eq!(n(row, "total_eur_minor"), eur.cents(o.total_minor(), &o.currency, o.occurred_at.millis()), "{row}");
    }
    for row in rows(&dump, "analytics.fact_order_items") {
        let o = placed[s(&row, "order_id")];
        let l = &o.items[n(&row, "line_no") as usize];
        let want = eur.cents(i64::from(l.quantity) * l.unit_price_minor, &o.currency, o.occurred_at.millis());
        assert_eq!(n(&row, "line_total_eur_minor"), want, "{row}");
    }
    // Search: a price in another currency has its base value at the price's time.
    let docs = rows(&dump, "search.products");
    let repriced: Vec<&PriceChanged> = events.iter().filter_map(|e| if let Event::PriceChanged(p) = e { p.event_id.starts_with("pr-late-").then_some(p) } else { None }).collect();
    for p in &repriced {
        let doc = docs.iter().find(|d| s(d, "_id") == p.product_id).unwrap_or_else(|| panic!("no document of {}", p.product_id));
        assert_eq!((n(doc, "price_minor"), s(doc, "currency")), (p.price_minor, p.currency.as_str()), "{doc}");
        assert_eq!(n(doc, "price_eur_minor"), eur.cents(p.price_minor, &p.currency, p.occurred_at.millis()), "{doc}");
    }
}

#[test]
fn order_lines_and_stock_levels_get_their_products_catalogue_facts_when_the_catalogue_reaches_the_sink_after_them() {
    let events = records();
    let (dump, _) = two_runs(&events);
    let (facts, skus) = catalogue(&events);
    let moved = events.iter().find_map(|e| if let Event::ProductUpdated(u) = e { (u.event_id == "pu-moved").then_some(u.product_id.clone()) } else { None }).expect("the moved product");

    let lines = rows(&dump, "analytics.fact_order_items");
    assert!(lines.len() >= 20, "only {} order lines", lines.len());
    for row in &lines {
        let (category, brand, _) = &facts[s(row, "product_id")];
        assert_eq!((s(row, "category"), s(row, "brand")), (category.as_str(), brand.as_str()), "{row}");
    }
    // The product moved at the end of the log: every line of it, written long before the
    // move reached the sink's subscription, has the catalogue's last facts.
    let of_moved: Vec<&Value> = lines.iter().filter(|r| s(r, "product_id") == moved).collect();
    assert!(!of_moved.is_empty());
    assert!(of_moved.iter().all(|r| s(r, "category") == "garden/tools/moved" && s(r, "brand") == "Moved & Co"), "{of_moved:?}");
    // Stock levels (keyed by sku) carry their product and its vendor, which the vendor's
    // stock question filters by.
    let levels = rows(&dump, "analytics.fact_stock_levels");
    assert!(!levels.is_empty());
    for row in &levels {
        let product = &skus[s(row, "sku")];
        assert_eq!((s(row, "product_id"), s(row, "vendor_id")), (product.as_str(), facts[product].2.as_str()), "{row}");
    }
    // Search routed every level to its product's document: no stock waits for a product.
    let docs = rows(&dump, "search.products");
    assert!(docs.iter().all(|d| !s(d, "_id").starts_with("stock:")), "a sku's stock waited for its product");
    let with_stock = docs.iter().filter(|d| d["stock"]["w1"]["version"].as_i64().is_some_and(|v| v > 0)).count();
    assert_eq!(with_stock, levels.iter().map(|r| s(r, "sku")).collect::<std::collections::HashSet<_>>().len());
}

#[test]
fn a_rate_published_after_a_fact_is_not_applied_to_it_afterwards_and_a_replay_of_the_log_applies_it() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let log = log(&dir.path().join("log"));
    let codec = codec();
    // 2 × 5,000 yen at 0.006 EUR per yen = 60 EUR.
    let (early, later) = (order("o-early", START + 10_000, "JPY", "p-1", 5_000), order("o-later", START + 20_000, "JPY", "p-1", 5_000));
    publish(log.as_ref(), &codec, &[early]);
    let sinks = Sinks::start(log.clone(), codec.clone(), analytics_only(&dir.path().join("live"), "live"), &mut Registry::default()).expect("start");
    sinks.wait_caught_up(PATIENCE).expect("caught up");
    // A late producer: the rate, in force since before the first order, comes after it was written.
    publish(log.as_ref(), &codec, &[rate("JPY", START, 6_000_000), later]);
    sinks.wait_caught_up(PATIENCE).expect("caught up");
    sinks.stop().expect("stop");
    let want = |early: i64| BTreeMap::from([("o-early".to_string(), early), ("o-later".to_string(), 6_000)]);
    assert_eq!(order_totals(&dir.path().join("live")), want(0), "the fact keeps what was known when it was written");

    let sinks = Sinks::start(log, codec, analytics_only(&dir.path().join("replay"), "replay"), &mut Registry::default()).expect("start");
    sinks.wait_caught_up(PATIENCE).expect("caught up");
    sinks.stop().expect("stop");
    assert_eq!(order_totals(&dir.path().join("replay")), want(6_000), "a replay of the finished log converts both");
}

fn analytics_only(dir: &Path, app: &str) -> SinksConfig {
    let mut c = SinksConfig::embedded(dir).only(&["analytics"]);
    c.app = app.into();
    c.sink_mut::<AnalyticsSink>().max_wait_ms = 50;
    c
}

/// `total_eur_minor` per order in the analytics store under `dir`.
fn order_totals(dir: &Path) -> BTreeMap<String, i64> {
    let dump = tokio::runtime::Runtime::new().expect("runtime").block_on(snapshot::embedded(dir)).expect("dump");
    rows(&dump, "analytics.fact_orders").iter().map(|r| (s(r, "order_id").to_string(), n(r, "total_eur_minor"))).collect()
}
