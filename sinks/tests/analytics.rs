//! Analytics against the real ClickHouse and its Parquet + DataFusion twin: every test runs
//! on both (`clickhouse::…` skips loudly without `STOREFLOW_TEST_CLICKHOUSE`, and fails
//! under CI). The dashboards are checked against a brute-force count over the input events.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use prometheus_client::registry::Registry;
use storeflow_avro::*;
use storeflow_sinks::analytics::config::{AnalyticsConfig, ClickHouseConfig};
use storeflow_sinks::analytics::{Analytics, AnalyticsSink, DashboardRange, Granularity, SalesBucket};
use storeflow_sinks::money::Rates;
use storeflow_sinks::runner::Sink;
use storeflow_sinks::{Sinks, SinksConfig};

use common::*;

#[derive(Clone)]
enum Backend {
    ClickHouse(ClickHouseConfig),
    Parquet,
}

impl Backend {
    fn config(&self) -> AnalyticsConfig {
        match self {
            Backend::ClickHouse(c) => AnalyticsConfig { clickhouse: Some(c.clone()), ..AnalyticsConfig::default() },
            Backend::Parquet => AnalyticsConfig::default(),
        }
    }

    fn sinks(&self, dir: &Path) -> SinksConfig {
        let mut c = SinksConfig::embedded(dir.join("sinks")).only(&["analytics"]);
        c.analytics = self.config();
        c.analytics.max_wait_ms = 100;
        c
    }
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod clickhouse {
            $(#[test] fn $name() { super::init(); if let Some((c, _cleanup)) = super::clickhouse() { super::$name(super::Backend::ClickHouse(c)); } })*
        }
        mod parquet {
            $(#[test] fn $name() { super::init(); super::$name(super::Backend::Parquet); })*
        }
    };
}

on_both!(
    a_batch_written_twice_leaves_one_copy,
    a_record_the_database_rejects_goes_to_the_dlq_and_the_stream_continues,
    stopped_sinks_restart_and_drain_the_backlog_without_loss_or_doubles,
    the_dashboard_matches_a_brute_force_count_over_the_events,
    vendor_performance_matches_a_brute_force_count_over_the_events,
    vendor_sales_per_hour_and_day_match_a_brute_force_count_over_the_events,
);

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("runtime")
}

/// Rows each fact table must hold for `events`.
fn expected(events: &[Event]) -> BTreeMap<&'static str, u64> {
    let mut m = BTreeMap::new();
    let n = |name: &str| count(events, name) as u64;
    let lines: u64 = events.iter().map(|e| if let Event::OrderPlaced(o) = e { o.items.len() as u64 } else { 0 }).sum();
    let returns: u64 = events.iter().map(|e| if let Event::ReturnRequested(r) = e { r.items.len() as u64 } else { 0 }).sum();
    m.insert("fact_orders", n("OrderPlaced"));
    m.insert("fact_order_items", lines);
    m.insert(
        "fact_sessions",
        ["PageViewed", "ProductViewed", "SearchPerformed", "CartItemAdded", "CartItemRemoved", "CheckoutStarted"].iter().map(|t| n(t)).sum(),
    );
    m.insert("fact_payments", ["PaymentAuthorized", "PaymentCaptured", "PaymentFailed", "RefundIssued"].iter().map(|t| n(t)).sum());
    m.insert("fact_fulfillment", ["ShipmentCreated", "ShipmentShipped", "ShipmentDelivered", "ReturnReceived"].iter().map(|t| n(t)).sum());
    m.insert("fact_order_requests", n("OrderCancelRequested") + returns);
    m.insert("fact_reviews", n("ReviewSubmitted"));
    m.insert("fact_customer_events", n("CustomerRegistered") + n("CustomerErased"));
    m.insert("fact_exchange_rates", n("ExchangeRateUpdated"));
    m.insert("dim_vendors", n("VendorOnboarded"));
    m
}

async fn check(a: &Analytics, events: &[Event]) {
    let counts = a.row_counts().await.expect("counts");
    for (table, want) in expected(events) {
        assert_eq!(counts[table], want, "{table}: {counts:?}");
    }
    // The rollups saw every order once.
    let d = a.dashboard(DashboardRange::Month, Some(START + 3_600_000)).await.expect("dashboard");
    assert_eq!(d.orders, count(events, "OrderPlaced"), "{d:?}");
}

fn handle(sink: &AnalyticsSink) -> Analytics {
    Analytics::new(sink.store().clone(), "EUR", tokio::runtime::Handle::current())
}

fn a_batch_written_twice_leaves_one_copy(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let events = sim(5_000, 21);
    let its = items(&events);
    rt().block_on(async {
        let mut sink = AnalyticsSink::open(&b.config(), dir.path()).await.expect("open");
        for chunk in its.chunks(900) {
            sink.write(chunk).await.expect("first write");
        }
        check(&handle(&sink), &events).await;
        for chunk in its.chunks(900) {
            sink.write(chunk).await.expect("same batches again");
        }
        for chunk in its.chunks(2_100) {
            sink.write(chunk).await.expect("overlapping batches");
        }
        check(&handle(&sink), &events).await;
        // A new sink learns the high-water marks from the tables themselves.
        let mut again = AnalyticsSink::open(&b.config(), dir.path()).await.expect("reopen");
        again.write(&its).await.expect("everything again");
        check(&handle(&again), &events).await;
    });
}

fn bad_review(at: i64) -> Event {
    Event::ReviewSubmitted(ReviewSubmitted {
        event_id: "ev-bad-review".into(),
        occurred_at: Timestamp(at),
        review_id: "r-bad".into(),
        product_id: "p-x".into(),
        vendor_id: "v-x".into(),
        customer_id: "c-x".into(),
        rating: 9,
        title: None,
        body: None,
    })
}

fn a_record_the_database_rejects_goes_to_the_dlq_and_the_stream_continues(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let log = log(&dir.path().join("log"));
    let codec = codec();
    let all = sim(4_000, 22);
    let mut events: Vec<Event> = all[..1_500].to_vec();
    events.push(bad_review(START + 1));
    events.extend_from_slice(&all[1_500..]);
    publish(log.as_ref(), &codec, &events);
    let sinks = Sinks::start(log.clone(), codec, b.sinks(dir.path()), &mut Registry::default()).expect("start");
    sinks.wait_caught_up(PATIENCE).expect("caught up");
    let dead = storeflow_processors::dlq::list(log.as_ref(), "storefront.catalog").expect("dlq");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].processor, "analytics");
    assert!(dead[0].reason.contains("rating_range"), "{}", dead[0].reason);
    rt().block_on(check(&sinks.analytics().expect("analytics"), &all));
    sinks.stop().expect("stop");
}

fn stopped_sinks_restart_and_drain_the_backlog_without_loss_or_doubles(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let log = log(&dir.path().join("log"));
    let codec = codec();
    let events = sim(6_000, 23);
    let (first, second) = events.split_at(2_000);
    publish(log.as_ref(), &codec, first);
    let sinks = Sinks::start(log.clone(), codec.clone(), b.sinks(dir.path()), &mut Registry::default()).expect("start");
    sinks.wait_caught_up(PATIENCE).expect("caught up");
    sinks.stop().expect("stop");
    publish(log.as_ref(), &codec, second);
    let sinks = Sinks::start(log.clone(), codec, b.sinks(dir.path()), &mut Registry::default()).expect("restart");
    sinks.wait_caught_up(PATIENCE).expect("drained");
    rt().block_on(check(&sinks.analytics().expect("analytics"), &events));
    sinks.stop().expect("stop");
}

/// Base-currency amounts the way the sink converts them: rates in force at event time.
fn to_eur(events: &[Event]) -> impl Fn(i64, &str, i64) -> i64 {
    let mut rates = Rates::new("EUR");
    for e in events {
        if let Event::ExchangeRateUpdated(r) = e {
            rates.record(&r.base_currency, &r.quote_currency, r.occurred_at.millis(), r.rate_e9);
        }
    }
    move |amount, cur, at| rates.to_base(amount, cur, at).unwrap_or(0)
}

fn the_dashboard_matches_a_brute_force_count_over_the_events(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let events = sim(8_000, 24);
    let eur = to_eur(&events);
    rt().block_on(async {
        let mut sink = AnalyticsSink::open(&b.config(), dir.path()).await.expect("open");
        for chunk in items(&events).chunks(3_000) {
            sink.write(chunk).await.expect("write");
        }
        let a = handle(&sink);
        let as_of = START + 60_000;
        for range in [DashboardRange::Hour, DashboardRange::Day, DashboardRange::Month] {
            let d = a.dashboard(range, Some(as_of)).await.expect("dashboard");
            let inside = |e: &Event| (d.from..d.to).contains(&e.occurred_at().millis());
            let orders: Vec<&OrderPlaced> = events.iter().filter(|e| inside(e)).filter_map(|e| if let Event::OrderPlaced(o) = e { Some(o) } else { None }).collect();
            assert!(!orders.is_empty(), "the fixture has orders in {range:?}");
            assert_eq!(d.orders, orders.len() as i64);
            assert_eq!(d.units, orders.iter().flat_map(|o| &o.items).map(|i| i64::from(i.quantity)).sum::<i64>());
            assert_eq!(d.gmv_eur_minor, orders.iter().map(|o| eur(o.total_minor(), &o.currency, o.occurred_at.millis())).sum::<i64>());
            let sessions = |pred: &dyn Fn(&Event) -> bool| -> i64 {
                events
                    .iter()
                    .filter(|e| inside(e) && e.topic() == Topic::Sessions && pred(e))
                    .map(|e| e.key())
                    .collect::<HashSet<_>>()
                    .len() as i64
            };
            assert_eq!(d.funnel.sessions, sessions(&|_| true));
            assert_eq!(d.funnel.viewed, sessions(&|e| matches!(e, Event::ProductViewed(_))));
            assert_eq!(d.funnel.carted, sessions(&|e| matches!(e, Event::CartItemAdded(_))));
            assert_eq!(d.funnel.checkout, sessions(&|e| matches!(e, Event::CheckoutStarted(_))));
            let ordered: HashSet<&String> = orders.iter().filter_map(|o| o.session_id.as_ref()).collect();
            assert_eq!(d.funnel.ordered, ordered.len() as i64);
            assert_eq!(d.new_customers, events.iter().filter(|e| inside(e) && matches!(e, Event::CustomerRegistered(_))).count() as i64);
            let returned: HashSet<&String> = events.iter().filter(|e| inside(e)).filter_map(|e| if let Event::ReturnRequested(r) = e { Some(&r.order_id) } else { None }).collect();
            assert_eq!(d.returned_orders, returned.len() as i64);
            // Top products: GMV per product over the lines, best first.
            let mut per: BTreeMap<&str, i64> = BTreeMap::new();
            for o in &orders {
                for l in &o.items {
                    *per.entry(&l.product_id).or_default() += eur(i64::from(l.quantity) * l.unit_price_minor, &o.currency, o.occurred_at.millis());
                }
            }
            let mut best: Vec<(&str, i64)> = per.into_iter().collect();
            best.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let got: Vec<(&str, i64)> = d.top_products.iter().map(|p| (p.product_id.as_str(), p.gmv_eur_minor)).collect();
            assert_eq!(got, best.into_iter().take(10).collect::<Vec<_>>());
            assert!(d.top_products.iter().all(|p| p.title.is_some() && p.category.is_some()), "{:?}", d.top_products);
        }
    });
}

fn vendor_performance_matches_a_brute_force_count_over_the_events(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let events = sim(8_000, 25);
    let eur = to_eur(&events);
    rt().block_on(async {
        let mut sink = AnalyticsSink::open(&b.config(), dir.path()).await.expect("open");
        sink.write(&items(&events)).await.expect("write");
        let a = handle(&sink);
        let lines: Vec<(&OrderPlaced, &OrderItem)> =
            events.iter().filter_map(|e| if let Event::OrderPlaced(o) = e { Some(o) } else { None }).flat_map(|o| o.items.iter().map(move |l| (o, l))).collect();
        let vendor = lines[0].1.vendor_id.clone();
        let v = a.vendor_performance(&vendor, DashboardRange::Month, Some(START + 60_000)).await.expect("vendor");
        let mine: Vec<&(&OrderPlaced, &OrderItem)> = lines.iter().filter(|(_, l)| l.vendor_id == vendor).collect();
        assert_eq!(v.units, mine.iter().map(|(_, l)| i64::from(l.quantity)).sum::<i64>());
        assert_eq!(v.orders, mine.iter().map(|(o, _)| &o.order_id).collect::<HashSet<_>>().len() as i64);
        assert_eq!(v.gmv_eur_minor, mine.iter().map(|(o, l)| eur(i64::from(l.quantity) * l.unit_price_minor, &o.currency, o.occurred_at.millis())).sum::<i64>());
        let reviews: Vec<i32> = events.iter().filter_map(|e| if let Event::ReviewSubmitted(r) = e { (r.vendor_id == vendor).then_some(r.rating) } else { None }).collect();
        assert_eq!(v.reviews, reviews.len() as i64);
        if !reviews.is_empty() {
            let avg = reviews.iter().map(|r| f64::from(*r)).sum::<f64>() / reviews.len() as f64;
            assert!((v.rating_avg.unwrap_or(0.0) - avg).abs() < 1e-9);
        }
        assert!(v.top_products.iter().all(|p| mine.iter().any(|(_, l)| l.product_id == p.product_id)));
    });
}

fn vendor_sales_per_hour_and_day_match_a_brute_force_count_over_the_events(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let events = sim(8_000, 26);
    let eur = to_eur(&events);
    rt().block_on(async {
        let mut sink = AnalyticsSink::open(&b.config(), dir.path()).await.expect("open");
        sink.write(&items(&events)).await.expect("write");
        let a = handle(&sink);
        let lines: Vec<(&OrderPlaced, &OrderItem)> =
            events.iter().filter_map(|e| if let Event::OrderPlaced(o) = e { Some(o) } else { None }).flat_map(|o| o.items.iter().map(move |l| (o, l))).collect();
        let vendor = lines[0].1.vendor_id.clone();
        let (from, to) = DashboardRange::Month.window(START + 60_000);
        for (g, step) in [(Granularity::Hour, 3_600_000i64), (Granularity::Day, 86_400_000)] {
            let mut want: BTreeMap<i64, (HashSet<&str>, i64, i64)> = BTreeMap::new();
            for (o, l) in lines.iter().filter(|(o, l)| l.vendor_id == vendor && (from..to).contains(&o.occurred_at.millis())) {
                let at = o.occurred_at.millis();
                let w = want.entry(at.div_euclid(step) * step).or_default();
                w.0.insert(&o.order_id);
                w.1 += i64::from(l.quantity);
                w.2 += eur(i64::from(l.quantity) * l.unit_price_minor, &o.currency, at);
            }
            let want: Vec<SalesBucket> = want
                .into_iter()
                .map(|(bucket, (orders, units, gmv))| SalesBucket { bucket, orders: orders.len() as i64, units, gmv_eur_minor: gmv })
                .collect();
            assert!(!want.is_empty(), "the fixture has sales of {vendor}");
            let got = a.vendor_sales(&vendor, from, to, g).await.expect("vendor sales");
            assert_eq!(got, want, "{g:?}");
        }
    });
}
