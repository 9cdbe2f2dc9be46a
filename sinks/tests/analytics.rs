//! Analytics against the real ClickHouse and its Parquet + DataFusion twin: every test runs
//! on both (`clickhouse::…` skips loudly without `STOREFLOW_TEST_CLICKHOUSE`, and fails
//! under CI). The dashboards are checked against a brute-force count over the input events.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use prometheus_client::registry::Registry;
use storeflow_avro::*;
use storeflow_sinks::analytics::config::{AnalyticsConfig, ClickHouseConfig};
use storeflow_ingest::partitioner::partition_for_key;
use storeflow_sinks::analytics::rows::DimProduct;
use storeflow_sinks::analytics::{Analytics, AnalyticsSink, DashboardRange, Granularity, MoneyDay, MoneyFlow, Question, SalesBucket, Store, questions};
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
        *c.sink_mut::<AnalyticsSink>() = self.config();
        c.sink_mut::<AnalyticsSink>().max_wait_ms = 100;
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
    a_customers_insights_count_its_orders_and_agree_with_the_lifetime_value_ranking,
    vendor_sales_per_hour_and_day_match_a_brute_force_count_over_the_events,
    vendor_stock_is_the_latest_snapshot_whatever_the_event_times,
    the_product_dimension_keeps_the_latest_catalog_event_whatever_the_event_times,
    vendor_minutes_keep_the_highest_version_whatever_the_event_times,
    vendor_money_agrees_with_the_sales_processor_to_the_minor_unit_in_every_currency,
    transfers_reversals_and_disputes_show_per_vendor_day_and_currency,
    simulated_traffic_through_the_payments_worker_balances_every_vendor_day,
    a_rebuilt_analytics_store_equals_the_old_one_and_its_rollups_go_on_from_the_rebuild,
    the_inventory_and_fraud_boards_match_a_reference_over_the_events,
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
        let mut sink = AnalyticsSink::open(&b.config(), "EUR", dir.path()).await.expect("open");
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
        let mut again = AnalyticsSink::open(&b.config(), "EUR", dir.path()).await.expect("reopen");
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
        let mut sink = AnalyticsSink::open(&b.config(), "EUR", dir.path()).await.expect("open");
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
            // The series: per hour (or day), inside the window, adding up to the totals.
            let unit = if matches!(range, DashboardRange::Month) { 86_400_000 } else { 3_600_000 };
            let mut buckets: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
            for o in &orders {
                let at = o.occurred_at.millis();
                let b = buckets.entry(at - at.rem_euclid(unit)).or_default();
                b.0 += 1;
                b.1 += eur(o.total_minor(), &o.currency, at);
            }
            let got: Vec<(i64, (i64, i64))> = d.series.iter().map(|b| (b.bucket, (b.orders, b.gmv_eur_minor))).collect();
            assert_eq!(got, buckets.into_iter().collect::<Vec<_>>(), "{range:?}");
            // Vendor performance: GMV of each vendor's lines, best first, with its name.
            let mut per: BTreeMap<&str, (HashSet<&str>, i64, i64)> = BTreeMap::new();
            for o in &orders {
                for l in &o.items {
                    let v = per.entry(&l.vendor_id).or_default();
                    v.0.insert(&o.order_id);
                    v.1 += i64::from(l.quantity);
                    v.2 += eur(i64::from(l.quantity) * l.unit_price_minor, &o.currency, o.occurred_at.millis());
                }
            }
            let mut best: Vec<(&str, i64, i64, i64)> = per.into_iter().map(|(v, (o, u, g))| (v, o.len() as i64, u, g)).collect();
            best.sort_by(|a, b| b.3.cmp(&a.3).then(a.0.cmp(b.0)));
            best.truncate(20);
            let got: Vec<(&str, i64, i64, i64)> = d.vendors.iter().map(|v| (v.vendor_id.as_str(), v.orders, v.units, v.gmv_eur_minor)).collect();
            assert_eq!(got, best, "{range:?}");
            let names: HashSet<&str> = events.iter().filter_map(|e| if let Event::VendorOnboarded(v) = e { Some(v.name.as_str()) } else { None }).collect();
            assert!(d.vendors.iter().all(|v| v.name.as_deref().is_some_and(|n| names.contains(n))), "{:?}", d.vendors);
            assert_eq!(d.top_customers, a.customer_value().await.expect("ranking"));
            assert_eq!(d.cohorts, a.cohorts().await.expect("cohorts"));
            assert!(!d.top_customers.is_empty() && !d.cohorts.is_empty());
        }
    });
}

fn vendor_performance_matches_a_brute_force_count_over_the_events(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let events = sim(8_000, 25);
    let eur = to_eur(&events);
    rt().block_on(async {
        let mut sink = AnalyticsSink::open(&b.config(), "EUR", dir.path()).await.expect("open");
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

fn a_customers_insights_count_its_orders_and_agree_with_the_lifetime_value_ranking(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let events = sim(8_000, 27);
    rt().block_on(async {
        let mut sink = AnalyticsSink::open(&b.config(), "EUR", dir.path()).await.expect("open");
        sink.write(&items(&events)).await.expect("write");
        let a = handle(&sink);
        let top = a.customer_value().await.expect("ranking");
        assert!(!top.is_empty());
        for v in top.iter().take(3) {
            let now = v.last_order + 86_400_000;
            let c = a.customer(&v.customer_id, now).await.expect("customer").expect("a customer with orders");
            assert_eq!((c.orders, c.gmv_eur_minor, c.first_order, c.last_order), (v.orders, v.gmv_eur_minor, v.first_order, v.last_order), "{}", v.customer_id);
            let placed: Vec<i64> = events
                .iter()
                .filter_map(|e| if let Event::OrderPlaced(o) = e { (o.customer_id == v.customer_id).then(|| o.occurred_at.millis()) } else { None })
                .collect();
            assert_eq!(c.orders, placed.len() as i64);
            assert_eq!((c.first_order, c.last_order), (*placed.iter().min().unwrap(), *placed.iter().max().unwrap()));
            assert_eq!(c.days_since_last_order, 1);
        }
        assert_eq!(a.customer("nobody-ever", START).await.expect("answer"), None);
        // Hostile ids are parameters, not SQL.
        assert_eq!(a.customer("x' OR '1'='1", START).await.expect("answer"), None);
    });
}

fn vendor_sales_per_hour_and_day_match_a_brute_force_count_over_the_events(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let events = sim(8_000, 26);
    let eur = to_eur(&events);
    rt().block_on(async {
        let mut sink = AnalyticsSink::open(&b.config(), "EUR", dir.path()).await.expect("open");
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

/// The Grafana dashboard's panels and their SQL (`sql/grafana/<dashboard>/<panel>.sql`, the
/// file named by the panel's title): (file stem, the panel's `rawSql`). Asserts the JSON
/// holds exactly the files' SQL, and no file is left without a panel.
fn grafana_panels(dashboard: &str) -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(root.join(format!("dashboards/{dashboard}.json"))).unwrap()).unwrap();
    let mut panels = Vec::new();
    for p in json["panels"].as_array().expect("panels") {
        let title = p["title"].as_str().expect("a panel title").to_lowercase();
        let slug = title.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).collect::<Vec<_>>().join("_");
        for t in p["targets"].as_array().into_iter().flatten() {
            let Some(raw) = t["rawSql"].as_str() else { continue };
            let file = root.join(format!("sql/grafana/{dashboard}/{slug}.sql"));
            let sql = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("panel {title:?}: {}: {e}", file.display()));
            assert_eq!(raw, sql.trim_end(), "panel {title:?}: dashboards/{dashboard}.json must hold {} as it is", file.display());
            panels.push((slug.clone(), raw.to_string()));
        }
    }
    for f in std::fs::read_dir(root.join(format!("sql/grafana/{dashboard}"))).unwrap() {
        let stem = f.unwrap().path().file_stem().unwrap().to_string_lossy().into_owned();
        assert!(panels.iter().any(|(s, _)| *s == stem), "sql/grafana/{dashboard}/{stem}.sql belongs to no panel");
    }
    panels
}

/// A number in a ClickHouse JSONEachRow row (an integer, a float, or one quoted).
fn num(row: &serde_json::Value, field: &str) -> f64 {
    match &row[field] {
        serde_json::Value::Number(n) => n.as_f64().unwrap(),
        serde_json::Value::String(s) => s.parse().unwrap_or_else(|_| panic!("{field}: not a number in {row}")),
        other => panic!("{field}: {other} in {row}"),
    }
}

/// Euros (the panels divide minor units by 100) back to minor units.
fn minor(euros: f64) -> i64 {
    (euros * 100.0).round() as i64
}

#[test]
fn every_grafana_panel_runs_on_clickhouse_and_shows_the_numbers_of_the_events() {
    init();
    let panels = grafana_panels("marketplace");
    assert_eq!(panels.len(), 11, "{panels:?}");
    let Some((c, _cleanup)) = clickhouse() else { return };
    let dir = tempfile::tempdir().unwrap();
    // Enough traffic for returns to be requested (they follow deliveries).
    let events = sim(40_000, 24);
    let eur = to_eur(&events);
    rt().block_on(async {
        let b = Backend::ClickHouse(c);
        let mut sink = AnalyticsSink::open(&b.config(), "EUR", dir.path()).await.expect("open");
        sink.write(&items(&events)).await.expect("write");
        let a = handle(&sink);
        let as_of = START + 60_000;
        // The API's answer for the same range; checked here against the events themselves
        // for the headline figures, and by the dashboard test above for the rest.
        let d = a.dashboard(DashboardRange::Month, Some(as_of)).await.expect("dashboard");
        let orders: Vec<&OrderPlaced> = events
            .iter()
            .filter(|e| (d.from..d.to).contains(&e.occurred_at().millis()))
            .filter_map(|e| if let Event::OrderPlaced(o) = e { Some(o) } else { None })
            .collect();
        assert!(orders.len() > 100, "{}", orders.len());
        assert_eq!(d.orders, orders.len() as i64);
        assert_eq!(d.gmv_eur_minor, orders.iter().map(|o| eur(o.total_minor(), &o.currency, o.occurred_at.millis())).sum::<i64>());
        let Store::ClickHouse(ch) = sink.store() else { unreachable!() };
        for (panel, raw) in &panels {
            // Grafana's ClickHouse plugin expands these macros to toDateTime(<seconds>).
            let sql = raw.replace("$__fromTime", &format!("toDateTime({})", d.from / 1000)).replace("$__toTime", &format!("toDateTime({})", d.to / 1000));
            let rows: Vec<serde_json::Value> = ch.query(&sql, &[]).await.unwrap_or_else(|e| panic!("panel {panel}: {e}\n{sql}"));
            assert!(!rows.is_empty(), "panel {panel} shows nothing");
            let sum = |f: &str| rows.iter().map(|r| num(r, f)).sum::<f64>();
            match panel.as_str() {
                "gmv_per_hour_eur" => assert_eq!(minor(sum("gmv_eur")), d.gmv_eur_minor, "{panel}"),
                "orders_and_units_per_hour" => assert_eq!((sum("orders") as i64, sum("units") as i64), (d.orders, d.units), "{panel}"),
                "sales_per_day_gmv_orders_aov" => {
                    assert_eq!((minor(sum("gmv_eur")), sum("order_count") as i64, sum("unit_count") as i64), (d.gmv_eur_minor, d.orders, d.units), "{panel}");
                    for r in &rows {
                        let aov = (num(r, "gmv_eur") / num(r, "order_count") * 100.0).round() / 100.0;
                        assert!((num(r, "aov_eur") - aov).abs() < 0.006, "{panel}: {r}");
                    }
                }
                "conversion_funnel" => {
                    let r = &rows[0];
                    let got = ["sessions", "viewed", "carted", "checkout", "ordered"].map(|f| num(r, f) as i64);
                    let f = &d.funnel;
                    assert_eq!(got, [f.sessions, f.viewed, f.carted, f.checkout, f.ordered], "{panel}");
                }
                "top_products" => {
                    assert!(rows.len() <= 20 && rows.len() >= d.top_products.len(), "{panel}: {} rows", rows.len());
                    let gmv: Vec<i64> = rows.iter().take(d.top_products.len()).map(|r| minor(num(r, "gmv_eur"))).collect();
                    assert_eq!(gmv, d.top_products.iter().map(|p| p.gmv_eur_minor).collect::<Vec<_>>(), "{panel}");
                    for p in &d.top_products {
                        if let Some(r) = rows.iter().find(|r| r["product_id"] == p.product_id.as_str()) {
                            assert_eq!((minor(num(r, "gmv_eur")), num(r, "units") as i64, r["title"].as_str()), (p.gmv_eur_minor, p.units, p.title.as_deref()), "{panel}");
                        }
                    }
                }
                "top_categories" => {
                    for cat in &d.top_categories {
                        let r = rows.iter().find(|r| r["category"] == cat.category.as_str()).unwrap_or_else(|| panic!("{panel}: no {}", cat.category));
                        assert_eq!((minor(num(r, "gmv_eur")), num(r, "units") as i64), (cat.gmv_eur_minor, cat.units), "{panel}: {}", cat.category);
                    }
                }
                "return_rate" => {
                    assert!(d.returned_orders > 0, "the fixture has returns");
                    assert!((num(&rows[0], "return_rate") - d.returned_orders as f64 / d.orders as f64).abs() < 1e-12, "{panel}: {}", rows[0]);
                }
                "new_customers" => assert_eq!(num(&rows[0], "new_customers") as i64, d.new_customers, "{panel}"),
                "vendor_performance" => {
                    for r in rows.iter().take(3) {
                        let id = r["vendor_id"].as_str().unwrap();
                        let v = a.vendor_performance(id, DashboardRange::Month, Some(as_of)).await.expect("vendor");
                        assert_eq!((num(r, "orders") as i64, num(r, "units") as i64, minor(num(r, "gmv_eur"))), (v.orders, v.units, v.gmv_eur_minor), "{panel}: {id}");
                        assert!(r["name"].as_str().is_some_and(|n| !n.is_empty()), "{panel}: {r}");
                    }
                }
                "customer_lifetime_value_top_20" => {
                    // The API ranks ten, the panel twenty: the ten agree, and every row is
                    // the customer the API describes.
                    let top = a.customer_value().await.expect("ranking");
                    assert_eq!(rows.len(), 20, "{panel}");
                    let gmv: Vec<i64> = rows.iter().map(|r| minor(num(r, "gmv_eur"))).collect();
                    assert_eq!(gmv[..top.len()], top.iter().map(|v| v.gmv_eur_minor).collect::<Vec<_>>()[..], "{panel}");
                    assert!(gmv.windows(2).all(|w| w[0] >= w[1]), "{panel}: not by GMV: {gmv:?}");
                    for r in &rows {
                        let id = r["customer_id"].as_str().unwrap();
                        let c = a.customer(id, as_of).await.expect("customer").unwrap_or_else(|| panic!("{panel}: {id} unknown to the API"));
                        assert_eq!((num(r, "orders") as i64, minor(num(r, "gmv_eur"))), (c.orders, c.gmv_eur_minor), "{panel}: {id}");
                    }
                }
                "cohort_acquisition" => {
                    let cohorts = a.cohorts().await.expect("cohorts");
                    let got: Vec<(i64, i64, i64)> = rows.iter().map(|r| (num(r, "customers") as i64, num(r, "orders") as i64, minor(num(r, "gmv_eur")))).collect();
                    assert_eq!(got, cohorts.iter().map(|c| (c.customers, c.orders, c.gmv_eur_minor)).collect::<Vec<_>>(), "{panel}");
                }
                other => panic!("panel {other} has no assertion here: add one"),
            }
            println!("panel {panel}: {} rows, checked", rows.len());
        }
    });
}

/// The inventory-health and fraud dashboards over processor outputs whose event times disagree
/// with their versions (several producers' clocks), checked against a fold of the same events:
/// the latest level of a sku in a warehouse is the one with the highest version.
#[test]
fn the_inventory_and_fraud_grafana_dashboards_show_the_latest_levels_and_every_verdict() {
    init();
    let inventory = grafana_panels("inventory");
    let fraud = grafana_panels("fraud");
    assert_eq!((inventory.len(), fraud.len()), (3, 3), "{inventory:?} {fraud:?}");
    let Some((c, _cleanup)) = clickhouse() else { return };
    let events = stock_and_fraud();
    // The reference: the highest version per sku and warehouse; verdicts as published.
    let latest = latest_levels(&events);
    assert!(newest_by_event_time(&receipts("sku-recv", "wh-b", 40)).is_some_and(|s| s.on_hand < 40), "the fixture's clocks disagree");
    let scores: Vec<&FraudScored> = events.iter().filter_map(|e| if let Event::FraudScored(f) = e { Some(f) } else { None }).collect();
    let (from, to) = (START / 1000 - 3_600, START / 1000 + 7_200);
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let b = Backend::ClickHouse(c);
        let mut sink = AnalyticsSink::open(&b.config(), "EUR", dir.path()).await.expect("open");
        sink.write(&items(&events)).await.expect("write");
        let Store::ClickHouse(ch) = sink.store() else { unreachable!() };
        for (panel, raw) in inventory.iter().chain(&fraud) {
            let sql = raw.replace("$__fromTime", &format!("toDateTime({from})")).replace("$__toTime", &format!("toDateTime({to})"));
            let rows: Vec<serde_json::Value> = ch.query(&sql, &[]).await.unwrap_or_else(|e| panic!("panel {panel}: {e}\n{sql}"));
            assert!(!rows.is_empty(), "panel {panel} shows nothing");
            let int = |r: &serde_json::Value, f: &str| num(r, f) as i64;
            let text = |r: &serde_json::Value, f: &str| r[f].as_str().unwrap_or_else(|| panic!("panel {panel}: {f} in {r}")).to_string();
            match panel.as_str() {
                "low_stock" => {
                    let got: Vec<(String, String, i64, i64, i64)> =
                        rows.iter().map(|r| (text(r, "sku"), text(r, "warehouse_id"), int(r, "on_hand_now"), int(r, "reserved_now"), int(r, "available_now"))).collect();
                    let mut want: Vec<(String, String, i64, i64, i64)> = latest
                        .values()
                        .filter(|s| s.available <= 5)
                        .map(|s| (s.sku.clone(), s.warehouse_id.clone(), s.on_hand.into(), s.reserved.into(), s.available.into()))
                        .collect();
                    want.sort_by(|a, b| (a.4, &a.0, &a.1).cmp(&(b.4, &b.0, &b.1)));
                    assert_eq!(got, want, "{panel}");
                    assert_eq!(want.iter().map(|w| w.0.as_str()).collect::<Vec<_>>(), ["sku-race", "sku-few", "sku-low"], "{panel}: the fixture's low skus");
                }
                "stock_per_warehouse" => {
                    let got: Vec<(String, [i64; 4])> =
                        rows.iter().map(|r| (text(r, "warehouse_id"), ["on_hand", "reserved", "available", "skus_out_of_stock"].map(|f| int(r, f)))).collect();
                    let mut want: BTreeMap<String, [i64; 4]> = BTreeMap::new();
                    for s in latest.values() {
                        let w = want.entry(s.warehouse_id.clone()).or_default();
                        w[0] += i64::from(s.on_hand);
                        w[1] += i64::from(s.reserved);
                        w[2] += i64::from(s.available);
                        w[3] += i64::from(s.available <= 0);
                    }
                    assert_eq!(got, want.into_iter().collect::<Vec<_>>(), "{panel}");
                }
                "reservations_per_hour" => {
                    let (mut made, mut rejected) = (HashSet::new(), HashSet::new());
                    for e in &events {
                        match e {
                            Event::ReservationMade(r) => {
                                made.insert(r.order_id.clone());
                            }
                            Event::ReservationRejected(r) => {
                                rejected.insert(r.order_id.clone());
                            }
                            _ => {}
                        }
                    }
                    let sum = |f: &str| rows.iter().map(|r| int(r, f)).sum::<i64>();
                    assert_eq!((sum("orders_reserved"), sum("orders_rejected")), (made.len() as i64, rejected.len() as i64), "{panel}");
                    assert_eq!((made.len(), rejected.len()), (5 + 2 + 4, 35), "{panel}: the fixture");
                }
                "fraud_decisions" => {
                    for r in &rows {
                        let d = text(r, "decision");
                        let of: Vec<i64> = scores.iter().filter(|f| f.decision == d).map(|f| i64::from(f.score)).collect();
                        assert_eq!(int(r, "orders"), of.len() as i64, "{panel}: {d}");
                        assert!((num(r, "avg_score") - of.iter().sum::<i64>() as f64 / of.len() as f64).abs() <= 0.05 + 1e-9, "{panel}: {r}");
                    }
                    assert_eq!(rows.iter().map(|r| text(r, "decision")).collect::<Vec<_>>(), ["allow", "hold", "review"], "{panel}");
                }
                "held_and_review_orders" => {
                    let mut want: Vec<&&FraudScored> = scores.iter().filter(|f| f.decision != "allow").collect();
                    want.sort_by(|a, b| (b.score, b.occurred_at.millis(), &a.order_id).cmp(&(a.score, a.occurred_at.millis(), &b.order_id)));
                    want.truncate(50);
                    let got: Vec<(String, i64, String, String)> = rows.iter().map(|r| (text(r, "order_id"), int(r, "score"), text(r, "decision"), text(r, "reasons"))).collect();
                    let want: Vec<(String, i64, String, String)> = want
                        .iter()
                        .map(|f| (f.order_id.clone(), f.score.into(), f.decision.clone(), f.reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>().join(",")))
                        .collect();
                    assert_eq!(got, want, "{panel}");
                }
                "top_fraud_signals" => {
                    let mut want: BTreeMap<&str, i64> = BTreeMap::new();
                    for r in scores.iter().flat_map(|f| &f.reasons) {
                        *want.entry(r.code.as_str()).or_default() += 1;
                    }
                    let mut want: Vec<(String, i64)> = want.into_iter().map(|(c, n)| (c.to_string(), n)).collect();
                    want.sort_by(|a, b| (b.1, &a.0).cmp(&(a.1, &b.0)));
                    assert_eq!(rows.iter().map(|r| (text(r, "reason"), int(r, "orders"))).collect::<Vec<_>>(), want, "{panel}");
                }
                other => panic!("panel {other} has no assertion here: add one"),
            }
            println!("panel {panel}: {} rows, checked", rows.len());
        }
    });
}

/// Racing reservations, receipts on several clocks, and sixty fraud verdicts with every
/// decision and combinations of four signals: the inventory and fraud boards' fixture.
fn stock_and_fraud() -> Vec<Event> {
    let mut events = [
        racing_reservations("sku-race", "wh-a", "p-race", 5, 40),
        racing_reservations("sku-few", "wh-a", "p-few", 3, 2),
        racing_reservations("sku-many", "wh-b", "p-many", 10, 4),
        receipts("sku-recv", "wh-b", 40),
        receipts("sku-low", "wh-a", 3),
    ]
    .concat();
    let codes = ["ip_velocity_10m", "new_customer_high_value", "card_country_mismatch", "many_cards_24h"];
    for k in 0..60i64 {
        let score = (k * 37 % 100) as i32;
        let reasons: Vec<FraudReason> =
            codes.iter().enumerate().filter(|(i, _)| score > 0 && (k >> i) & 1 == 1).map(|(_, c)| FraudReason { code: (*c).into(), points: 10, detail: "d".into() }).collect();
        events.push(Event::FraudScored(FraudScored {
            event_id: format!("fs-{k}"),
            // Newest first: the panel orders by score, then time, whatever the log's order.
            occurred_at: Timestamp(START + 3_600_000 - k * 50_000),
            order_id: format!("o-fraud-{k}"),
            customer_id: format!("c-{}", k % 7),
            score,
            reasons,
            decision: (if score >= 70 { "hold" } else if score >= 40 { "review" } else { "allow" }).into(),
        }));
    }
    events
}

/// The latest level of each sku and warehouse: the highest snapshot version.
fn latest_levels(events: &[Event]) -> BTreeMap<(String, String), &StockLevelChanged> {
    let mut latest: BTreeMap<(String, String), &StockLevelChanged> = BTreeMap::new();
    for e in events {
        if let Event::StockLevelChanged(s) = e {
            let k = (s.sku.clone(), s.warehouse_id.clone());
            if latest.get(&k).is_none_or(|l| l.version < s.version) {
                latest.insert(k, s);
            }
        }
    }
    latest
}

fn the_inventory_and_fraud_boards_match_a_reference_over_the_events(b: Backend) {
    let events = stock_and_fraud();
    let latest = latest_levels(&events);
    let scores: Vec<&FraudScored> = events.iter().filter_map(|e| if let Event::FraudScored(f) = e { Some(f) } else { None }).collect();
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let mut sink = AnalyticsSink::open(&b.config(), "EUR", dir.path()).await.expect("open");
        sink.write(&items(&events)).await.expect("write");
        let a = handle(&sink);
        let as_of = START + 3_600_000;
        let inv = a.inventory(DashboardRange::Day, Some(as_of)).await.expect("inventory");
        let mut low: Vec<(String, String, i64, i64, i64)> = latest
            .values()
            .filter(|s| s.available <= 5)
            .map(|s| (s.sku.clone(), s.warehouse_id.clone(), s.on_hand.into(), s.reserved.into(), s.available.into()))
            .collect();
        low.sort_by(|a, b| (a.4, &a.0, &a.1).cmp(&(b.4, &b.0, &b.1)));
        let got: Vec<(String, String, i64, i64, i64)> = inv.low_stock.iter().map(|l| (l.sku.clone(), l.warehouse_id.clone(), l.on_hand, l.reserved, l.available)).collect();
        assert_eq!(got, low);
        assert_eq!(low.iter().map(|w| w.0.as_str()).collect::<Vec<_>>(), ["sku-race", "sku-few", "sku-low"], "the fixture's low skus");
        assert!(inv.low_stock.iter().all(|l| l.product_id.is_none()), "the fixture has no catalogue, so no product is known: {:?}", inv.low_stock);
        let mut per: BTreeMap<String, [i64; 4]> = BTreeMap::new();
        for s in latest.values() {
            let w = per.entry(s.warehouse_id.clone()).or_default();
            w[0] += i64::from(s.on_hand);
            w[1] += i64::from(s.reserved);
            w[2] += i64::from(s.available);
            w[3] += i64::from(s.available <= 0);
        }
        let got: Vec<(String, [i64; 4])> = inv.warehouses.iter().map(|w| (w.warehouse_id.clone(), [w.on_hand, w.reserved, w.available, w.skus_out_of_stock])).collect();
        assert_eq!(got, per.into_iter().collect::<Vec<_>>());
        let made: HashSet<&str> = events.iter().filter_map(|e| if let Event::ReservationMade(r) = e { Some(r.order_id.as_str()) } else { None }).collect();
        let rejected: HashSet<&str> = events.iter().filter_map(|e| if let Event::ReservationRejected(r) = e { Some(r.order_id.as_str()) } else { None }).collect();
        assert_eq!((made.len(), rejected.len()), (5 + 2 + 4, 35), "the fixture");
        assert_eq!(
            (inv.reservations.iter().map(|r| r.reserved).sum::<i64>(), inv.reservations.iter().map(|r| r.rejected).sum::<i64>()),
            (made.len() as i64, rejected.len() as i64)
        );
        assert!(inv.reservations.windows(2).all(|w| w[0].bucket < w[1].bucket) && inv.reservations.iter().all(|r| r.bucket % 3_600_000 == 0 && (inv.from..inv.to).contains(&r.bucket)));

        let f = a.fraud(DashboardRange::Day, Some(as_of)).await.expect("fraud");
        let inside: Vec<&&FraudScored> = scores.iter().filter(|s| (f.from..f.to).contains(&s.occurred_at.millis())).collect();
        assert_eq!(inside.len(), scores.len(), "the fixture's verdicts are all in the window");
        assert_eq!(f.decisions.iter().map(|d| d.decision.as_str()).collect::<Vec<_>>(), ["allow", "hold", "review"]);
        for d in &f.decisions {
            let of: Vec<i64> = scores.iter().filter(|s| s.decision == d.decision).map(|s| i64::from(s.score)).collect();
            assert_eq!(d.orders, of.len() as i64, "{d:?}");
            let avg = of.iter().sum::<i64>() as f64 / of.len() as f64;
            assert_eq!(d.avg_score, (avg * 10.0).round() / 10.0, "{d:?}");
        }
        let mut held: Vec<&&FraudScored> = scores.iter().filter(|s| s.decision != "allow").collect();
        held.sort_by(|a, b| (b.score, b.occurred_at.millis(), &a.order_id).cmp(&(a.score, a.occurred_at.millis(), &b.order_id)));
        held.truncate(20);
        let want: Vec<(i64, String, i64, String, String)> = held
            .iter()
            .map(|s| (s.occurred_at.millis(), s.order_id.clone(), s.score.into(), s.decision.clone(), s.reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>().join(",")))
            .collect();
        let got: Vec<(i64, String, i64, String, String)> = f.held.iter().map(|h| (h.at, h.order_id.clone(), h.score, h.decision.clone(), h.reasons.clone())).collect();
        assert_eq!(got, want);
        let mut signals: BTreeMap<&str, i64> = BTreeMap::new();
        for r in scores.iter().flat_map(|s| &s.reasons) {
            *signals.entry(r.code.as_str()).or_default() += 1;
        }
        let mut signals: Vec<(String, i64)> = signals.into_iter().map(|(c, n)| (c.to_string(), n)).collect();
        signals.sort_by(|a, b| (b.1, &a.0).cmp(&(a.1, &b.0)));
        assert_eq!(f.signals.iter().map(|s| (s.reason.clone(), s.orders)).collect::<Vec<_>>(), signals);
        // A window before any verdict is empty, not an error.
        let early = a.fraud(DashboardRange::Hour, Some(START - 86_400_000)).await.expect("fraud");
        assert!(early.decisions.is_empty() && early.held.is_empty() && early.signals.is_empty(), "{early:?}");
    });
}

/// Runs `ch` on ClickHouse or `df` on the Parquet twin (questions the API does not ask).
async fn ask<T: serde::de::DeserializeOwned>(store: &Store, ch: &str, df: &str) -> Vec<T> {
    match store {
        Store::ClickHouse(c) => c.query(ch, &[]).await.expect("ClickHouse query"),
        Store::Parquet(p) => p.query(df, &[]).await.expect("DataFusion query"),
    }
}

fn created(id: &str, sku: &str, vendor: &str, at: i64, title: &str, price: i64) -> Event {
    Event::ProductCreated(ProductCreated {
        event_id: format!("pc-{id}"),
        occurred_at: Timestamp(at),
        product_id: id.into(),
        vendor_id: vendor.into(),
        sku: sku.into(),
        title: title.into(),
        description: "d".into(),
        translations: Default::default(),
        category: "sports/fitness/yoga".into(),
        brand: "Sora".into(),
        price_minor: price,
        currency: "EUR".into(),
    })
}

fn vendor_stock_is_the_latest_snapshot_whatever_the_event_times(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let race = racing_reservations("sku-race", "wh-a", "p-race", 5, 40);
    let recv = receipts("sku-recv", "wh-b", 40);
    assert_eq!(newest_by_event_time(&race).map(|s| s.available), Some(2), "the fixture races");
    assert!(newest_by_event_time(&recv).is_some_and(|s| s.on_hand < 40), "the fixture's clocks disagree");
    let events = [
        vec![created("p-race", "sku-race", "v-race", START - 200_000, "Race", 1_000), created("p-recv", "sku-recv", "v-race", START - 200_000, "Recv", 1_000)],
        race,
        recv,
    ]
    .concat();
    let its = items(&events);
    rt().block_on(async {
        let mut sink = AnalyticsSink::open(&b.config(), "EUR", dir.path()).await.expect("open");
        for chunk in its.chunks(11) {
            sink.write(chunk).await.expect("write");
        }
        sink.write(its.chunks(11).nth(3).expect("a fourth batch")).await.expect("stale batch");
        let v = handle(&sink).vendor_performance("v-race", DashboardRange::Month, Some(START + 60_000)).await.expect("vendor");
        // sku-race: 5 on hand, all reserved; sku-recv: 40 received.
        assert_eq!((v.on_hand, v.available), (45, 40), "{v:?}");
    });
}

fn the_product_dimension_keeps_the_latest_catalog_event_whatever_the_event_times(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    // A product whose catalog partition has one below it, for a record from a lower position.
    let id = (0..).map(|i| format!("p-dim-{i}")).find(|id| partition_for_key(id.as_bytes(), Topic::Catalog.default_partitions()) > 0).expect("an id");
    let price = |at: i64, p: i64, n: &str| {
        Event::PriceChanged(PriceChanged {
            event_id: format!("pr-{n}"),
            occurred_at: Timestamp(at),
            product_id: id.clone(),
            vendor_id: "v-dim".into(),
            sku: "sku-dim".into(),
            old_price_minor: None,
            price_minor: p,
            currency: "EUR".into(),
        })
    };
    // In log order, each stamped earlier than the one before.
    let events = vec![
        created(&id, "sku-dim", "v-dim", START + 50_000, "First title", 1_000),
        price(START + 40_000, 2_000, "a"),
        Event::ProductUpdated(ProductUpdated {
            event_id: "pu-dim".into(),
            occurred_at: Timestamp(START + 30_000),
            product_id: id.clone(),
            vendor_id: "v-dim".into(),
            title: Some("Second title".into()),
            description: None,
            category: None,
            brand: None,
            status: None,
        }),
        price(START + 20_000, 3_000, "b"),
    ];
    let its = items(&events);
    let load = |store: Store| {
        let id = id.clone();
        async move {
            let all: Vec<DimProduct> = questions::run(&store, Question::LoadProducts, &[]).await.expect("load products");
            all.into_iter().find(|p| p.product_id == id).map(|p| (p.title, p.price_minor, p.pos))
        }
    };
    rt().block_on(async {
        let mut sink = AnalyticsSink::open(&b.config(), "EUR", dir.path()).await.expect("open");
        for it in &its {
            sink.write(std::slice::from_ref(it)).await.expect("write");
        }
        let last = its.last().expect("items").position();
        assert_eq!(load(sink.store().clone()).await, Some(("Second title".into(), 3_000, last)));
        // A fresh sink learns the catalogue from the table and refuses an older price from a
        // position below it that no high-water mark covers.
        let mut again = AnalyticsSink::open(&b.config(), "EUR", dir.path()).await.expect("reopen");
        let mut lower = items(&[price(START + 90_000, 9_999, "c")]).remove(0);
        lower.partition -= 1;
        lower.offset = 1_000;
        again.write(&[lower]).await.expect("older price");
        assert_eq!(load(again.store().clone()).await, Some(("Second title".into(), 3_000, last)));
    });
}

#[derive(Debug, PartialEq, serde::Deserialize)]
struct MinuteRow {
    version: i64,
    gmv_minor: i64,
}

fn vendor_minutes_keep_the_highest_version_whatever_the_event_times(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let times = shuffled_times(5, START, 7_000);
    let events: Vec<Event> = times
        .iter()
        .enumerate()
        .map(|(k, at)| {
            let v = k as i64 + 1;
            Event::VendorSalesMinute(VendorSalesMinute {
                event_id: format!("vm-{v}"),
                occurred_at: Timestamp(*at),
                vendor_id: "v-min".into(),
                minute: Timestamp(START),
                currency: "EUR".into(),
                orders: v as i32,
                units: v as i32,
                gmv_minor: 1_000 * v,
                refunds_minor: 0,
                commission_minor: 100 * v,
                net_payout_minor: 900 * v,
                base_currency: "EUR".into(),
                gmv_base_minor: 1_000 * v,
                net_payout_base_minor: 900 * v,
                version: v,
                refunds_base_minor: 0,
                commission_base_minor: 100 * v,
            })
        })
        .collect();
    assert!(times.iter().enumerate().any(|(k, t)| k < 4 && *t > times[4]), "the last figure is not the newest by event time");
    rt().block_on(async {
        let mut sink = AnalyticsSink::open(&b.config(), "EUR", dir.path()).await.expect("open");
        for it in items(&events) {
            sink.write(&[it]).await.expect("write");
        }
        if let Store::ClickHouse(c) = sink.store() {
            // Merge the parts, as ClickHouse will eventually: the highest version survives.
            c.client().query("OPTIMIZE TABLE fact_vendor_minutes FINAL").execute().await.expect("optimize");
        }
        let rows: Vec<MinuteRow> = ask(
            sink.store(),
            "SELECT version, gmv_minor FROM fact_vendor_minutes FINAL WHERE vendor_id = 'v-min'",
            "SELECT version, gmv_minor FROM (SELECT version, gmv_minor, ROW_NUMBER() OVER \
             (PARTITION BY vendor_id, minute, currency ORDER BY version DESC) AS rn FROM fact_vendor_minutes WHERE vendor_id = 'v-min') WHERE rn = 1",
        )
        .await;
        assert_eq!(rows, vec![MinuteRow { version: 5, gmv_minor: 5_000 }]);
    });
}

/// Rows of a release before versions decided what is newer: per table, two states of one
/// entity from one partition where the later one in the log carries the older event time
/// (and, for products, the older event-time version). One INSERT per row, merges stopped:
/// rows written by different batches that ClickHouse has not merged yet (within one block
/// a ReplacingMergeTree keeps one row per key at once).
const LEGACY_ROWS: [(&str, &str, [&str; 2]); 4] = [
    (
        "dim_products",
        "(event_id, occurred_at, product_id, vendor_id, sku, title, category, brand, status, price_minor, currency, created_at, version, \
         src_topic, src_partition, src_offset)",
        [
            "('e1', fromUnixTimestamp64Milli(toInt64(1764000000500)), 'p-old', 'v-old', 'sku-old', 'Older in the log', 'c', 'b', 'active', 100, 'EUR', \
             fromUnixTimestamp64Milli(toInt64(1764000000000)), 1764000000500, 'storefront.catalog', 1, 10)",
            "('e2', fromUnixTimestamp64Milli(toInt64(1764000000100)), 'p-old', 'v-old', 'sku-old', 'Latest in the log', 'c', 'b', 'active', 200, 'EUR', \
             fromUnixTimestamp64Milli(toInt64(1764000000000)), 1764000000100, 'storefront.catalog', 1, 11)",
        ],
    ),
    (
        "dim_vendors",
        "(event_id, occurred_at, vendor_id, name, country, plan, payout_currency, src_topic, src_partition, src_offset)",
        [
            "('v1', fromUnixTimestamp64Milli(toInt64(1764000000900)), 'v-old', 'Older in the log', 'DE', 'pro', 'EUR', 'storefront.catalog', 2, 5)",
            "('v2', fromUnixTimestamp64Milli(toInt64(1764000000100)), 'v-old', 'Latest in the log', 'DE', 'pro', 'EUR', 'storefront.catalog', 2, 6)",
        ],
    ),
    (
        "fact_vendor_minutes",
        "(event_id, occurred_at, vendor_id, minute, currency, orders, units, gmv_minor, refunds_minor, commission_minor, net_payout_minor, \
         base_currency, gmv_base_minor, net_payout_base_minor, src_topic, src_partition, src_offset)",
        [
            "('m1', fromUnixTimestamp64Milli(toInt64(1764000000900)), 'v-old', fromUnixTimestamp64Milli(toInt64(1764000000000)), 'EUR', 1, 1, 100, 0, 10, 90, \
             'EUR', 100, 90, 'sales.vendor_minute', 0, 20)",
            "('m2', fromUnixTimestamp64Milli(toInt64(1764000000100)), 'v-old', fromUnixTimestamp64Milli(toInt64(1764000000000)), 'EUR', 2, 2, 200, 0, 20, 180, \
             'EUR', 200, 180, 'sales.vendor_minute', 0, 21)",
        ],
    ),
    (
        "fact_stock_levels",
        "(event_id, occurred_at, sku, product_id, vendor_id, warehouse_id, on_hand, reserved, available, cause, src_topic, src_partition, src_offset)",
        [
            "('s1', fromUnixTimestamp64Milli(toInt64(1764000000900)), 'sku-old', 'p-old', 'v-old', 'wh-a', 1, 0, 1, 'received', 'inventory.levels', 3, 30)",
            "('s2', fromUnixTimestamp64Milli(toInt64(1764000000100)), 'sku-old', 'p-old', 'v-old', 'wh-a', 2, 0, 2, 'received', 'inventory.levels', 3, 31)",
        ],
    ),
];

#[derive(Debug, serde::Deserialize)]
struct TableInfo {
    name: String,
    engine_full: String,
}

#[derive(Debug, PartialEq, serde::Deserialize)]
struct Named {
    name: String,
}

#[test]
fn a_clickhouse_database_of_an_older_release_is_upgraded_in_place() {
    init();
    let Some((cfg, _cleanup)) = clickhouse() else { return };
    let dir = tempfile::tempdir().unwrap();
    let b = Backend::ClickHouse(cfg.clone());
    rt().block_on(async {
        // The database as the older release left it: its DDL, the rollups, some rows.
        let raw = ::clickhouse::Client::default().with_url(&cfg.url);
        raw.query(&format!("CREATE DATABASE `{}`", cfg.database)).execute().await.expect("create database");
        let db = raw.with_database(&cfg.database);
        let old = include_str!("fixtures/clickhouse_0001_before_versions.sql");
        for st in storeflow_sinks::analytics::clickhouse::statements(old).into_iter().chain(storeflow_sinks::analytics::clickhouse::statements(storeflow_sinks::analytics::clickhouse::DDL[1].1)) {
            db.query(&st).execute().await.expect("old DDL");
        }
        for (table, cols, rows) in LEGACY_ROWS {
            db.query(&format!("SYSTEM STOP MERGES {table}")).execute().await.expect("stop merges");
            for row in rows {
                db.query(&format!("INSERT INTO {table} {cols} VALUES {row}")).execute().await.expect("a legacy row");
            }
        }
        let mut sink = AnalyticsSink::open(&b.config(), "EUR", dir.path()).await.expect("open upgrades");
        let Store::ClickHouse(c) = sink.store().clone() else { unreachable!("ClickHouse") };
        let tables: Vec<TableInfo> = c
            .query("SELECT name, engine_full FROM system.tables WHERE database = currentDatabase() ORDER BY name", &[])
            .await
            .expect("tables");
        assert!(tables.iter().all(|t| !t.name.ends_with("__old")), "{tables:?}");
        let engine = |n: &str| tables.iter().find(|t| t.name == n).map(|t| t.engine_full.clone()).unwrap_or_default();
        assert!(engine("dim_products").starts_with("ReplacingMergeTree(pos)"), "{}", engine("dim_products"));
        assert!(engine("dim_vendors").starts_with("ReplacingMergeTree(pos)"), "{}", engine("dim_vendors"));
        assert!(engine("fact_vendor_minutes").starts_with("ReplacingMergeTree(version)"), "{}", engine("fact_vendor_minutes"));
        // Each legacy product row got the position of the record it names: the later wins.
        let products: Vec<DimProduct> = questions::run(sink.store(), Question::LoadProducts, &[]).await.expect("products");
        let p = products.iter().find(|p| p.product_id == "p-old").expect("p-old");
        assert_eq!((p.title.as_str(), p.price_minor, p.pos), ("Latest in the log", 200, (1i64 << 48) + 11));
        let vendors: Vec<Named> = c.query("SELECT name FROM dim_vendors FINAL WHERE vendor_id = 'v-old'", &[]).await.expect("vendors");
        assert_eq!(vendors, vec![Named { name: "Latest in the log".into() }]);
        // Vendor minutes keep the processor's last figure, as version 0.
        let minutes: Vec<MinuteRow> = c.query("SELECT version, gmv_minor FROM fact_vendor_minutes WHERE vendor_id = 'v-old'", &[]).await.expect("minutes");
        assert_eq!(minutes, vec![MinuteRow { version: 0, gmv_minor: 200 }]);
        // Legacy stock levels are version 0 and ordered by their position.
        let perf = handle(&sink).vendor_performance("v-old", DashboardRange::Month, Some(START)).await.expect("vendor");
        assert_eq!(perf.on_hand, 2);
        // The high-water marks survived the copy: a legacy record is not inserted again …
        let count = |c: storeflow_sinks::analytics::clickhouse::ClickHouseStore| async move {
            let n: Vec<serde_json::Value> = c.query("SELECT count() AS n FROM dim_products", &[]).await.expect("count");
            n[0]["n"].as_u64().expect("a count")
        };
        let before = count(c.clone()).await;
        let mut again = items(&[created("p-old", "sku-old", "v-old", START, "Replayed", 1)]).remove(0);
        (again.partition, again.offset) = (1, 11);
        sink.write(&[again]).await.expect("replay");
        assert_eq!(count(c.clone()).await, before);
        // … and a versioned level beats the legacy ones.
        let mut level_1 = items(&[level("sku-old", "wh-a", 1, START - 1_000_000, 7, 0, "adjusted")]).remove(0);
        (level_1.partition, level_1.offset) = (3, 32);
        sink.write(&[level_1]).await.expect("a versioned level");
        let perf = handle(&sink).vendor_performance("v-old", DashboardRange::Month, Some(START)).await.expect("vendor");
        assert_eq!(perf.on_hand, 7);
        // Opening again finds the current shape and changes nothing.
        let again = AnalyticsSink::open(&b.config(), "EUR", dir.path()).await.expect("reopen");
        let Store::ClickHouse(c2) = again.store().clone() else { unreachable!("ClickHouse") };
        assert_eq!(count(c2).await, before);
        let products: Vec<DimProduct> = questions::run(again.store(), Question::LoadProducts, &[]).await.expect("products");
        assert_eq!(products.iter().filter(|p| p.product_id == "p-old").map(|p| p.title.as_str()).collect::<Vec<_>>(), ["Latest in the log"]);
    });
}

/// The old schema of `table` (before versions) and a batch of `rows` in it.
fn legacy_batch<R: storeflow_sinks::analytics::rows::FactRow>(rows: &[R], drop: &str, add_version: Option<Vec<i64>>) -> arrow::array::RecordBatch {
    use std::sync::Arc;
    let current = R::to_batch(rows).expect("batch");
    let schema = current.schema();
    let mut fields = Vec::new();
    let mut columns: Vec<arrow::array::ArrayRef> = Vec::new();
    for (i, f) in schema.fields().iter().enumerate() {
        if f.name() == drop {
            if let Some(v) = &add_version {
                fields.push(arrow::datatypes::Field::new("version", arrow::datatypes::DataType::Int64, false));
                columns.push(Arc::new(arrow::array::Int64Array::from(v.clone())));
            }
            continue;
        }
        fields.push(f.as_ref().clone());
        columns.push(current.column(i).clone());
    }
    arrow::array::RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), columns).expect("legacy batch")
}

fn write_legacy_file(dir: &Path, table: &str, batch: &arrow::array::RecordBatch, marks: &str) {
    let tdir = dir.join("analytics").join(table);
    std::fs::create_dir_all(&tdir).expect("table dir");
    let props = ::parquet::file::properties::WriterProperties::builder()
        .set_key_value_metadata(Some(vec![::parquet::file::metadata::KeyValue::new("storeflow.marks".to_string(), marks.to_string())]))
        .build();
    let file = std::fs::File::create(tdir.join("part-000000000000.parquet")).expect("file");
    let mut w = ::parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props)).expect("writer");
    w.write(batch).expect("write");
    w.close().expect("close");
}

#[test]
fn parquet_files_of_an_older_release_are_rewritten_in_the_current_schema() {
    use storeflow_sinks::analytics::rows::FactStockLevel;
    init();
    let dir = tempfile::tempdir().unwrap();
    let product = |id: &str, title: &str, price: i64, offset: u64| DimProduct {
        event_id: id.into(),
        occurred_at: START,
        product_id: "p-old".into(),
        vendor_id: "v-old".into(),
        sku: "sku-old".into(),
        title: title.into(),
        status: "active".into(),
        price_minor: price,
        currency: "EUR".into(),
        created_at: START,
        pos: 0,
        src_topic: "storefront.catalog".into(),
        src_partition: 1,
        src_offset: offset,
        ..Default::default()
    };
    let products = [product("e1", "Older in the log", 100, 10), product("e2", "Latest in the log", 200, 11)];
    // The older release's version: the newest event time, higher on the older row.
    write_legacy_file(dir.path(), "dim_products", &legacy_batch(&products, "pos", Some(vec![START + 500, START + 100])), r#"{"storefront.catalog/1":11}"#);
    let level = |id: &str, on_hand: i32, offset: u64, at: i64| FactStockLevel {
        event_id: id.into(),
        occurred_at: at,
        sku: "sku-old".into(),
        product_id: "p-old".into(),
        vendor_id: "v-old".into(),
        warehouse_id: "wh-a".into(),
        on_hand,
        available: on_hand,
        cause: "received".into(),
        src_topic: "inventory.levels".into(),
        src_partition: 3,
        src_offset: offset,
        ..Default::default()
    };
    let levels = [level("s1", 1, 30, START + 900), level("s2", 2, 31, START + 100)];
    write_legacy_file(dir.path(), "fact_stock_levels", &legacy_batch(&levels, "version", None), r#"{"inventory.levels/3":31}"#);
    let b = Backend::Parquet;
    rt().block_on(async {
        let mut sink = AnalyticsSink::open(&b.config(), "EUR", dir.path()).await.expect("open upgrades");
        for table in ["dim_products", "fact_stock_levels"] {
            let names: Vec<String> = std::fs::read_dir(dir.path().join("analytics").join(table))
                .expect("list")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            assert!(!names.contains(&"part-000000000000.parquet".to_string()) && names.len() == 1, "{table}: {names:?}");
        }
        let all: Vec<DimProduct> = questions::run(sink.store(), Question::LoadProducts, &[]).await.expect("products");
        let p = all.iter().find(|p| p.product_id == "p-old").expect("p-old");
        assert_eq!((p.title.as_str(), p.price_minor, p.pos), ("Latest in the log", 200, (1i64 << 48) + 11));
        let perf = handle(&sink).vendor_performance("v-old", DashboardRange::Month, Some(START)).await.expect("vendor");
        assert_eq!(perf.on_hand, 2);
        // The footers' marks survived: a legacy record is not inserted again.
        let mut again = items(&[level_event()]).remove(0);
        (again.partition, again.offset) = (3, 31);
        sink.write(&[again]).await.expect("replay");
        let counts = handle(&sink).row_counts().await.expect("counts");
        assert_eq!((counts["dim_products"], counts["fact_stock_levels"]), (2, 2));
        // Opening again rewrites nothing.
        drop(sink);
        let again = AnalyticsSink::open(&b.config(), "EUR", dir.path()).await.expect("reopen");
        let counts = handle(&again).row_counts().await.expect("counts");
        assert_eq!((counts["dim_products"], counts["fact_stock_levels"]), (2, 2));
    });
}

fn level_event() -> Event {
    level("sku-old", "wh-a", 1, START, 9, 0, "adjusted")
}

/// Orders and refunds in JPY (0 digits), EUR (2), KWD (3) and CLF (4), for two vendors on
/// two plans, with a JPY rate that changes in the middle of a minute: every amount is chosen
/// so that converting a sum instead of each line, or with another rate than the one in force
/// at the event's own time, gives another figure.
fn multi_currency_traffic() -> Vec<Event> {
    let rate = |n: u32, at: i64, base: &str, quote: &str, rate_e9: i64| {
        Event::ExchangeRateUpdated(ExchangeRateUpdated {
            event_id: format!("00000000-0000-4000-8000-{:012}", n),
            occurred_at: Timestamp(at),
            base_currency: base.into(),
            quote_currency: quote.into(),
            rate_e9,
        })
    };
    let address = Address { name: "A".into(), line1: "1".into(), line2: None, city: "X".into(), postal_code: "1".into(), region: None, country: "DE".into() };
    let order = |n: u32, at: i64, currency: &str, lines: &[(&str, i32, i64)]| {
        Event::OrderPlaced(OrderPlaced {
            event_id: format!("00000000-0000-4000-8001-{:012}", n),
            occurred_at: Timestamp(at),
            order_id: format!("o-{n}"),
            customer_id: format!("c-{n}"),
            session_id: None,
            customer_since: None,
            items: lines
                .iter()
                .enumerate()
                .map(|(i, (v, q, p))| OrderItem { sku: format!("sku-{v}-{i}"), product_id: format!("p-{v}-{i}"), vendor_id: v.to_string(), quantity: *q, unit_price_minor: *p })
                .collect(),
            currency: currency.into(),
            shipping_address: address.clone(),
            billing_address: address.clone(),
            shipping_minor: 0,
            tax_minor: 0,
            discount_minor: 0,
            payment_method_token: "pm_card_visa".into(),
            client_ip: "203.0.113.1".into(),
        })
    };
    let refund = |n: u32, at: i64, order: u32, currency: &str, lines: &[(&str, i64)]| {
        Event::RefundIssued(RefundIssued {
            event_id: format!("00000000-0000-4000-8002-{:012}", n),
            occurred_at: Timestamp(at),
            order_id: format!("o-{order}"),
            payment_id: format!("pi-{order}"),
            refund_id: format!("re-{n}"),
            amount_minor: lines.iter().map(|(_, a)| a).sum(),
            currency: currency.into(),
            reason: "return".into(),
            lines: lines.iter().map(|(v, a)| RefundLine { sku: format!("sku-{v}-0"), vendor_id: v.to_string(), quantity: 1, amount_minor: *a }).collect(),
        })
    };
    let t = START + 3_600_000;
    vec![
        rate(1, t - 60_000, "EUR", "JPY", 160_123_456_789),
        rate(2, t - 60_000, "KWD", "EUR", 2_951_234_567),
        rate(3, t - 60_000, "EUR", "CLF", 25_432_109),
        rate(4, t + 30_000, "EUR", "JPY", 158_765_432_101),
        Event::VendorOnboarded(VendorOnboarded {
            event_id: "00000000-0000-4000-8003-000000000001".into(),
            occurred_at: Timestamp(t - 60_000),
            vendor_id: "v-pro".into(),
            name: "Pro".into(),
            country: "DE".into(),
            plan: "pro".into(),
            payout_currency: "EUR".into(),
            stripe_account_id: None,
        }),
        order(1, t + 1_000, "JPY", &[("v-pro", 1, 333), ("v-pro", 2, 777), ("v-basic", 3, 1_001)]),
        order(2, t + 29_000, "JPY", &[("v-pro", 1, 12_345), ("v-basic", 1, 99)]),
        order(3, t + 31_000, "JPY", &[("v-pro", 1, 12_345), ("v-basic", 1, 99)]),
        order(4, t + 35_000, "EUR", &[("v-pro", 3, 1_999), ("v-basic", 1, 5)]),
        order(5, t + 40_000, "KWD", &[("v-pro", 1, 12_345), ("v-basic", 7, 1_111)]),
        order(6, t + 61_000, "CLF", &[("v-pro", 1, 12_345), ("v-basic", 2, 3_333)]),
        order(7, t + 62_000, "KWD", &[("v-pro", 1, 7)]),
        refund(1, t + 90_000, 1, "JPY", &[("v-pro", 333), ("v-basic", 1_001)]),
        refund(2, t + 95_000, 5, "KWD", &[("v-basic", 1_111)]),
        refund(3, t + 125_000, 6, "CLF", &[("v-pro", 12_345)]),
    ]
}

/// The sales processor (vendors' live figures) and the analytics store (dashboards, and the
/// API's vendor performance) convert every amount by one rule, so a vendor's base-currency
/// GMV, refunds and payout are the same in both to the minor unit; and in the base currency
/// too, GMV − refunds = commission + payout exactly.
fn vendor_money_agrees_with_the_sales_processor_to_the_minor_unit_in_every_currency(b: Backend) {
    use storeflow_processors::sales::{Sales, SalesConfig};
    use storeflow_processors::{Processor, TestDriver};
    let events = multi_currency_traffic();
    let mut d = TestDriver::new(Sales::new(SalesConfig::default()));
    for e in &events {
        d.pipe(e.clone());
    }
    // The latest figure of each vendor-minute-currency.
    let mut latest: BTreeMap<(String, i64, String), VendorSalesMinute> = BTreeMap::new();
    for e in d.outputs::<Event>(Topic::VendorSales.name()) {
        if let Event::VendorSalesMinute(m) = e {
            let k = (m.vendor_id.clone(), m.minute.millis(), m.currency.clone());
            if latest.get(&k).is_none_or(|old| old.version < m.version) {
                latest.insert(k, m);
            }
        }
    }
    assert!(latest.len() >= 8, "figures in several minutes and currencies: {}", latest.len());
    let eur = to_eur(&events);
    let eur = &eur;
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = AnalyticsSink::open(&b.config(), "EUR", dir.path()).await.expect("open");
        let mut written = events.clone();
        written.extend(latest.values().cloned().map(Event::VendorSalesMinute));
        sink.write(&items(&written)).await.expect("write");
        if let Store::ClickHouse(c) = sink.store() {
            c.client().query("OPTIMIZE TABLE fact_vendor_minutes FINAL").execute().await.expect("optimize");
        }
        let a = handle(&sink);
        for vendor in ["v-pro", "v-basic"] {
            let mine: Vec<&VendorSalesMinute> = latest.values().filter(|m| m.vendor_id == vendor).collect();
            let sum = |f: fn(&VendorSalesMinute) -> i64| mine.iter().map(|m| f(m)).sum::<i64>();
            let (gmv, refunds, commission, net) =
                (sum(|m| m.gmv_base_minor), sum(|m| m.refunds_base_minor), sum(|m| m.commission_base_minor), sum(|m| m.net_payout_base_minor));
            assert_eq!(gmv - refunds, commission + net, "{vendor}: money is conserved in the base currency");
            for m in &mine {
                assert_eq!(m.gmv_minor - m.refunds_minor, m.commission_minor + m.net_payout_minor, "{vendor}: and in the order currency");
            }
            // An independent reference: each line at its own time, by the contract's rule.
            let lines: i64 = events
                .iter()
                .filter_map(|e| if let Event::OrderPlaced(o) = e { Some(o) } else { None })
                .flat_map(|o| o.items.iter().filter(|l| l.vendor_id == vendor).map(move |l| eur(i64::from(l.quantity) * l.unit_price_minor, &o.currency, o.occurred_at.millis())))
                .sum();
            assert_eq!(gmv, lines, "{vendor}: the processor's base GMV is the sum of its converted lines");
            let v = a.vendor_performance(vendor, DashboardRange::Month, Some(START + 86_400_000)).await.expect("vendor performance");
            assert_eq!((v.gmv_eur_minor, v.refunds_eur_minor), (gmv, refunds), "{vendor}: the analytics store (and the API's vendor performance) agree");
            let stored: Vec<NetRow> = ask(
                sink.store(),
                &format!("SELECT toInt64(sum(net_payout_base_minor)) AS net FROM fact_vendor_minutes FINAL WHERE vendor_id = '{vendor}'"),
                &format!(
                    "SELECT CAST(SUM(net_payout_base_minor) AS BIGINT) AS net FROM (SELECT net_payout_base_minor, ROW_NUMBER() OVER \
                     (PARTITION BY vendor_id, minute, currency ORDER BY version DESC) AS rn FROM fact_vendor_minutes WHERE vendor_id = '{vendor}') WHERE rn = 1"
                ),
            )
            .await;
            assert_eq!(stored[0].net, net, "{vendor}: the stored payout");
        }
    });
}

#[derive(Debug, PartialEq, serde::Deserialize)]
struct NetRow {
    net: i64,
}

const DAY: i64 = 86_400_000;

fn flow(currency: &str, [captured, refunded, transferred, commission, disputed, lost]: [i64; 6]) -> MoneyFlow {
    MoneyFlow {
        currency: currency.into(),
        captured_minor: captured,
        refunded_minor: refunded,
        transferred_minor: transferred,
        commission_minor: commission,
        disputed_minor: disputed,
        dispute_lost_minor: lost,
    }
}

fn transfer(n: u32, at: i64, order: &str, vendor: &str, currency: &str, gross: i64, commission: i64) -> Event {
    Event::VendorTransferCreated(VendorTransferCreated {
        event_id: format!("00000000-0000-4000-8010-{n:012}"),
        occurred_at: Timestamp(at),
        order_id: order.into(),
        payment_id: format!("pi-{order}"),
        vendor_id: vendor.into(),
        transfer_id: format!("tr-{n}"),
        destination: format!("acct_{vendor}"),
        gross_minor: gross,
        commission_minor: commission,
        amount_minor: gross - commission,
        currency: currency.into(),
    })
}

/// Transfers on two days and in two currencies, a reversal after midnight, a dispute split
/// over an order's two vendors (opened in one write, its transfers stored by an earlier one)
/// and lost the next day, and a dispute of an order without transfers: each vendor-day shows
/// what moved that day, in its currency, and a replay into a reopened sink adds nothing.
fn transfers_reversals_and_disputes_show_per_vendor_day_and_currency(b: Backend) {
    let d0 = (START / DAY + 1) * DAY; // a midnight
    let dispute = |n: u32, at: i64, order: &str, amount: i64, closed: Option<&str>| match closed {
        None => Event::DisputeOpened(DisputeOpened {
            event_id: format!("00000000-0000-4000-8011-{n:012}"),
            occurred_at: Timestamp(at),
            order_id: order.into(),
            payment_id: format!("pi-{order}"),
            dispute_id: format!("dp-{order}"),
            amount_minor: amount,
            currency: "EUR".into(),
            reason: "fraudulent".into(),
            status: "needs_response".into(),
        }),
        Some(status) => Event::DisputeClosed(DisputeClosed {
            event_id: format!("00000000-0000-4000-8011-{n:012}"),
            occurred_at: Timestamp(at),
            order_id: order.into(),
            payment_id: format!("pi-{order}"),
            dispute_id: format!("dp-{order}"),
            amount_minor: amount,
            currency: "EUR".into(),
            status: status.into(),
        }),
    };
    let events = vec![
        transfer(1, d0 - 60_000, "o-1", "v-a", "EUR", 10_000, 1_000),
        transfer(2, d0 - 60_000, "o-1", "v-b", "EUR", 3_333, 333),
        transfer(3, d0 + 5_000, "o-2", "v-a", "JPY", 777, 77),
        // The first write ends here.
        Event::VendorTransferReversed(VendorTransferReversed {
            event_id: "00000000-0000-4000-8012-000000000001".into(),
            occurred_at: Timestamp(d0 + 60_000),
            order_id: "o-1".into(),
            vendor_id: "v-a".into(),
            transfer_id: "tr-1".into(),
            reversal_id: "trr-1".into(),
            refund_id: "re-1".into(),
            refunded_minor: 2_500,
            commission_minor: 250,
            amount_minor: 2_250,
            currency: "EUR".into(),
        }),
        // 1,000 over 10,000 : 3,333 is 750.19 : 249.98; the left-over unit goes to the
        // larger remainder (v-b).
        dispute(1, d0 - 30_000, "o-1", 1_000, None),
        dispute(2, d0 + 120_000, "o-1", 1_000, Some("lost")),
        dispute(3, d0 + 130_000, "o-3", 500, None),
    ];
    let its = items(&events);
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = AnalyticsSink::open(&b.config(), "EUR", dir.path()).await.expect("open");
        sink.write(&its[..3]).await.expect("the transfers");
        sink.write(&its[3..]).await.expect("the reversal and the disputes");
        let check = |a: Analytics| async move {
            let days = a.vendor_money("v-a", d0 - DAY, d0 + DAY).await.expect("vendor money");
            assert_eq!(
                days,
                vec![
                    MoneyDay { day: d0 - DAY, flow: flow("EUR", [10_000, 0, 9_000, 1_000, 750, 0]) },
                    MoneyDay { day: d0, flow: flow("EUR", [0, 2_500, -2_250, -250, 0, 750]) },
                    MoneyDay { day: d0, flow: flow("JPY", [777, 0, 700, 77, 0, 0]) },
                ]
            );
            let b_days = a.vendor_money("v-b", d0 - DAY, d0 + DAY).await.expect("vendor money");
            assert_eq!(
                b_days,
                vec![
                    MoneyDay { day: d0 - DAY, flow: flow("EUR", [3_333, 0, 3_000, 333, 250, 0]) },
                    MoneyDay { day: d0, flow: flow("EUR", [0, 0, 0, 0, 0, 250]) },
                ]
            );
            let v = a.vendor_performance("v-a", DashboardRange::Week, Some(d0 + 3_600_000)).await.expect("vendor performance");
            assert_eq!(v.money, vec![flow("EUR", [10_000, 2_500, 6_750, 750, 750, 750]), flow("JPY", [777, 0, 700, 77, 0, 0])]);
            let d = a.dashboard(DashboardRange::Week, Some(d0 + 3_600_000)).await.expect("dashboard");
            // The marketplace: both vendors, and o-3's dispute, which no vendor shares.
            assert_eq!(d.money, vec![flow("EUR", [13_333, 2_500, 9_750, 1_083, 1_500, 1_000]), flow("JPY", [777, 0, 700, 77, 0, 0])]);
            // Within a day: only that day's movements.
            let v = a.vendor_performance("v-a", DashboardRange::Hour, Some(d0 - 1)).await.expect("vendor performance");
            assert_eq!(v.money, vec![flow("EUR", [10_000, 0, 9_000, 1_000, 750, 0])]);
        };
        check(handle(&sink)).await;
        drop(sink);
        let mut again = AnalyticsSink::open(&b.config(), "EUR", dir.path()).await.expect("reopen");
        again.write(&its).await.expect("everything again");
        check(handle(&again)).await;
        assert_eq!(handle(&again).row_counts().await.expect("counts")["fact_vendor_money"], 9);
    });
}

/// The payments worker's own output over simulated traffic — the simulator's storefront,
/// warehouses and customers feeding inventory, fraud, the order saga and the payments
/// worker (test mode) in the test driver, from just before a midnight — written to the
/// store: every vendor-day balances to the minor unit (captured = transferred + commission
/// + refunded), each figure is what the worker's events and the saga's capture commands and
/// refunds say, and some vendor-days have refunds.
fn simulated_traffic_through_the_payments_worker_balances_every_vendor_day(b: Backend) {
    use storeflow_processors::TestDriver;
    let start = (START / DAY + 1) * DAY - 60_000;
    let procs = storeflow_processors::registry()
        .iter()
        .filter(|r| ["inventory", "orders", "fraud", "payments"].contains(&r.name))
        .map(|r| (r.build)(&serde_json::Value::Null).expect("default config"))
        .collect();
    let mut d = TestDriver::chain(procs);
    let sim = storeflow_sim::Simulator::new(storeflow_sim::SimConfig { seed: 77, start: Timestamp(start), sessions_per_second: 20.0, ..Default::default() });
    for e in sim.take_while(|e| e.occurred_at().millis() < start + 150_000) {
        d.pipe(e);
    }
    let worker = d.outputs::<Event>(Topic::Payments.name());
    let commands = d.outputs::<Event>(Topic::PaymentCommands.name());
    type Key = (String, i64, String); // vendor, day, currency
    let day = |t: &Timestamp| t.millis().div_euclid(DAY) * DAY;
    // What the worker's events say, and, independently, what the saga asked and was refunded.
    let mut want: BTreeMap<Key, MoneyFlow> = BTreeMap::new();
    let mut asked: BTreeMap<Key, i64> = BTreeMap::new();
    let mut lines_refunded: BTreeMap<Key, i64> = BTreeMap::new();
    let mut captured_orders: HashSet<String> = HashSet::new();
    let at = |v: &str, t: &Timestamp, c: &str| -> Key { (v.to_string(), day(t), c.to_string()) };
    for e in &worker {
        match e {
            Event::PaymentCaptured(c) => {
                captured_orders.insert(c.order_id.clone());
            }
            Event::VendorTransferCreated(t) => {
                let f = want.entry(at(&t.vendor_id, &t.occurred_at, &t.currency)).or_insert_with(|| flow(&t.currency, [0; 6]));
                f.captured_minor += t.gross_minor;
                f.transferred_minor += t.amount_minor;
                f.commission_minor += t.commission_minor;
            }
            Event::VendorTransferReversed(r) => {
                let f = want.entry(at(&r.vendor_id, &r.occurred_at, &r.currency)).or_insert_with(|| flow(&r.currency, [0; 6]));
                f.refunded_minor += r.refunded_minor;
                f.transferred_minor -= r.amount_minor;
                f.commission_minor -= r.commission_minor;
            }
            _ => {}
        }
    }
    for e in &worker {
        if let Event::RefundIssued(r) = e
            && captured_orders.contains(&r.order_id)
        {
            for l in &r.lines {
                *lines_refunded.entry(at(&l.vendor_id, &r.occurred_at, &r.currency)).or_default() += l.amount_minor;
            }
        }
    }
    let mut first_capture: HashSet<String> = HashSet::new();
    for e in &commands {
        if let Event::CaptureRequested(c) = e
            && captured_orders.contains(&c.order_id)
            && first_capture.insert(c.order_id.clone())
        {
            for v in &c.vendors {
                *asked.entry(at(&v.vendor_id, &c.occurred_at, &c.currency)).or_default() += v.amount_minor;
            }
        }
    }
    let days: HashSet<i64> = want.keys().map(|k| k.1).collect();
    let refunded_days = want.values().filter(|f| f.refunded_minor > 0).count();
    assert!(want.len() > 20 && days.len() == 2, "vendor-days on both sides of midnight: {} over {days:?}", want.len());
    assert!(refunded_days > 0, "some vendor-days have refunds, so the identity can fail");
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = AnalyticsSink::open(&b.config(), "EUR", dir.path()).await.expect("open");
        for chunk in items(&worker).chunks(500) {
            sink.write(chunk).await.expect("write");
        }
        let a = handle(&sink);
        let vendors: std::collections::BTreeSet<&str> = want.keys().map(|k| k.0.as_str()).collect();
        let mut got: BTreeMap<Key, MoneyFlow> = BTreeMap::new();
        for v in vendors {
            for m in a.vendor_money(v, start - DAY, start + 2 * DAY).await.expect("vendor money") {
                let f = &m.flow;
                assert_eq!(
                    f.captured_minor,
                    f.transferred_minor + f.commission_minor + f.refunded_minor,
                    "{v} on {}: captured = transferred + commission + refunded ({f:?})",
                    m.day
                );
                got.insert((v.to_string(), m.day, f.currency.clone()), m.flow);
            }
        }
        assert_eq!(got, want, "the store's vendor-days are the worker's events");
        let captured: BTreeMap<Key, i64> = got.iter().map(|(k, f)| (k.clone(), f.captured_minor)).filter(|(_, c)| *c != 0).collect();
        assert_eq!(captured, asked, "captured is what the saga asked to capture of each vendor's lines");
        let refunded: BTreeMap<Key, i64> = got.iter().map(|(k, f)| (k.clone(), f.refunded_minor)).filter(|(_, r)| *r != 0).collect();
        assert_eq!(refunded, lines_refunded, "refunded is each vendor's refunded lines");
    });
}

/// Rows read from ClickHouse by the rebuild test (in a module of their own: the derive
/// names `clickhouse::…`, which the `clickhouse` test module above shadows here).
mod ch_rows {
    #[derive(clickhouse::Row, serde::Deserialize)]
    pub struct TableName {
        pub name: String,
    }

    #[derive(clickhouse::Row, serde::Deserialize)]
    pub struct Digest {
        pub rows: u64,
        pub hash: u64,
    }
}

/// Every fact and dimension table's content: the Parquet twin's rows through
/// [`storeflow_sinks::snapshot`]; on ClickHouse, per table, its row count and an
/// order-independent digest of its rows (the rollups hold aggregate states; they are
/// checked through the dashboard instead).
fn contents(b: &Backend, dir: &Path) -> BTreeMap<String, Vec<String>> {
    match b {
        Backend::Parquet => rt()
            .block_on(storeflow_sinks::snapshot::embedded(&dir.join("sinks")))
            .unwrap()
            .into_iter()
            .filter(|(t, _)| t.starts_with("analytics."))
            .collect(),
        Backend::ClickHouse(c) => rt().block_on(async {
            let client = ::clickhouse::Client::default().with_url(&c.url).with_database(&c.database);
            let tables: Vec<ch_rows::TableName> = client
                .query("SELECT name FROM system.tables WHERE database = currentDatabase() AND (name LIKE 'fact_%' OR name LIKE 'dim_%')")
                .fetch_all()
                .await
                .unwrap();
            let mut out = BTreeMap::new();
            for t in tables {
                let d: ch_rows::Digest = client.query(&format!("SELECT count() AS rows, sum(cityHash64(*)) AS hash FROM `{}`", t.name)).fetch_one().await.unwrap();
                out.insert(format!("analytics.{}", t.name), vec![format!("{} rows, digest {}", d.rows, d.hash)]);
            }
            out
        }),
    }
}

fn a_rebuilt_analytics_store_equals_the_old_one_and_its_rollups_go_on_from_the_rebuild(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let log = log(&dir.path().join("log"));
    let codec = codec();
    let events = sim(5_000, 29);
    let (first, second) = events.split_at(3_000);
    publish(log.as_ref(), &codec, first);
    let sinks = Sinks::start(log.clone(), codec.clone(), b.sinks(dir.path()), &mut Registry::default()).expect("start");
    sinks.wait_caught_up(PATIENCE).expect("caught up");
    sinks.stop().expect("stop");
    let before = contents(&b, dir.path());
    assert!(before.contains_key("analytics.fact_orders"), "{:?}", before.keys());

    let r = storeflow_sinks::rebuild::rebuild(log.clone(), codec.clone(), &b.sinks(dir.path()), "analytics", &|_, _| {}).expect("rebuild");
    assert!(r.counts.written > 0);
    let after = contents(&b, dir.path());
    let diff = storeflow_sinks::snapshot::differences(&before, &after);
    assert!(diff.is_empty(), "the rebuilt analytics store differs:\n{}", diff.join("\n"));
    if let Backend::ClickHouse(c) = &b {
        let old = r.replaced.strip_prefix("ClickHouse database ").expect("a database").to_string();
        assert_eq!(contents(&Backend::ClickHouse(ClickHouseConfig { database: old.clone(), ..c.clone() }), dir.path()), before, "the replaced database is not the old store");
        rt().block_on(::clickhouse::Client::default().with_url(&c.url).query(&format!("DROP DATABASE `{old}` SYNC")).execute()).unwrap();
    }

    // The sink goes on from the rebuild, and the live rollups are fed from the rebuilt facts:
    // every fact once, every order once in the dashboard.
    publish(log.as_ref(), &codec, second);
    let sinks = Sinks::start(log.clone(), codec, b.sinks(dir.path()), &mut Registry::default()).expect("restart");
    sinks.wait_caught_up(PATIENCE).expect("drained");
    rt().block_on(check(&sinks.analytics().expect("analytics"), &events));
    sinks.stop().expect("stop");
}
