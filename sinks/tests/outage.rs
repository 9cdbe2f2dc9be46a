//! Each real store is stopped for 30 s while events keep arriving, then started again on its
//! data (`scripts/services stop|start <name>`): the sink holds its offsets while it cannot
//! write, drains the backlog once the store is back, and the store ends up with exactly
//! what the input says — nothing lost, nothing doubled.
//!
//! These tests stop shared services, so they run one at a time and only in this binary
//! (cargo runs test binaries one after another). A guard starts the service again if a test
//! fails half-way.

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use storeflow_avro::*;
use storeflow_sinks::analytics::{AnalyticsConfig, AnalyticsSink};
use storeflow_sinks::read_model::{ReadModelConfig, ReadModelSink};
use storeflow_sinks::search::{SearchConfig, SearchSink};
use storeflow_sinks::{Sinks, SinksConfig};

use common::*;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
const OUTAGE: Duration = Duration::from_secs(30);

/// Starts the service again when dropped (also when the test fails).
struct Restart(&'static str, bool);

impl Drop for Restart {
    fn drop(&mut self) {
        if !self.1 {
            services("start", self.0);
        }
    }
}

/// Stops `service`, publishes `backlog` meanwhile, waits out the outage while checking the
/// sink holds its offsets, and starts the service again.
fn outage(service: &'static str, sinks: &Sinks, sink: &str, publish_backlog: impl FnOnce()) {
    services("stop", service);
    let mut guard = Restart(service, false);
    let down = Instant::now();
    publish_backlog();
    std::thread::sleep(Duration::from_secs(5));
    let lag = sinks.lag().expect("lag")[sink];
    assert!(lag > 0, "the {sink} sink must hold its offsets while {service} is down");
    std::thread::sleep(OUTAGE.saturating_sub(down.elapsed()));
    assert_eq!(sinks.lag().expect("lag")[sink], lag, "nothing is committed while {service} is down");
    services("start", service);
    guard.1 = true;
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("runtime")
}

#[test]
fn postgres_stopped_for_30_s_and_restarted_drains_the_backlog_without_loss_or_doubles() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    init();
    let Some((url, _cleanup)) = postgres() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (log, codec) = (log(&dir.path().join("log")), codec());
    let events = sim(8_000, 31);
    let (first, second) = events.split_at(3_000);
    publish(log.as_ref(), &codec, first);
    let mut cfg = SinksConfig::embedded(dir.path().join("sinks")).only(&["read_model"]);
    *cfg.sink_mut::<ReadModelSink>() = ReadModelConfig { postgres_url: Some(url.into()), max_wait_ms: 50, ..ReadModelConfig::default() };
    let sinks = Sinks::start(log.clone(), codec.clone(), cfg, &mut Registry::default()).expect("start");
    sinks.wait_caught_up(PATIENCE).expect("caught up");
    outage("postgres", &sinks, "read_model", || publish(log.as_ref(), &codec, second));
    sinks.wait_caught_up(PATIENCE).expect("drained after the restart");
    let counts = rt().block_on(sinks.read_model().expect("read model").counts()).expect("counts");
    let items: i64 = events.iter().map(|e| if let Event::OrderPlaced(o) = e { o.items.len() as i64 } else { 0 }).sum();
    assert_eq!(counts["orders"], count(&events, "OrderPlaced"));
    assert_eq!(counts["order_items"], items);
    assert_eq!(counts["products"], count(&events, "ProductCreated"));
    assert_eq!(counts["reviews"], count(&events, "ReviewSubmitted"));
    assert_eq!(counts["refunds"], count(&events, "RefundIssued"));
    let history = events.iter().filter(|e| matches!(e.topic(), Topic::Orders | Topic::Payments | Topic::Fulfillment)).count() as i64;
    assert_eq!(counts["order_events"], history);
    sinks.stop().expect("stop");
}

#[test]
fn clickhouse_stopped_for_30_s_and_restarted_drains_the_backlog_without_loss_or_doubles() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    init();
    let Some((ch, _cleanup)) = clickhouse() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (log, codec) = (log(&dir.path().join("log")), codec());
    let events = sim(10_000, 32);
    let (first, second) = events.split_at(4_000);
    publish(log.as_ref(), &codec, first);
    let mut cfg = SinksConfig::embedded(dir.path().join("sinks")).only(&["analytics"]);
    *cfg.sink_mut::<AnalyticsSink>() = AnalyticsConfig { clickhouse: Some(ch), max_wait_ms: 200, ..AnalyticsConfig::default() };
    let sinks = Sinks::start(log.clone(), codec.clone(), cfg, &mut Registry::default()).expect("start");
    sinks.wait_caught_up(PATIENCE).expect("caught up");
    outage("clickhouse", &sinks, "analytics", || publish(log.as_ref(), &codec, second));
    sinks.wait_caught_up(PATIENCE).expect("drained after the restart");
    let a = sinks.analytics().expect("analytics");
    let (counts, dash) = rt().block_on(async {
        (a.row_counts().await.expect("counts"), a.dashboard(storeflow_sinks::DashboardRange::Month, Some(START + 3_600_000)).await.expect("dashboard"))
    });
    let lines: u64 = events.iter().map(|e| if let Event::OrderPlaced(o) = e { o.items.len() as u64 } else { 0 }).sum();
    let want: BTreeMap<&str, u64> = [
        ("fact_orders", count(&events, "OrderPlaced") as u64),
        ("fact_order_items", lines),
        ("fact_reviews", count(&events, "ReviewSubmitted") as u64),
        ("fact_payments", ["PaymentAuthorized", "PaymentCaptured", "PaymentFailed", "RefundIssued"].iter().map(|t| count(&events, t) as u64).sum()),
        (
            "fact_sessions",
            ["PageViewed", "ProductViewed", "SearchPerformed", "CartItemAdded", "CartItemRemoved", "CheckoutStarted"].iter().map(|t| count(&events, t) as u64).sum(),
        ),
    ]
    .into_iter()
    .collect();
    for (t, n) in want {
        assert_eq!(counts[t], n, "{t}");
    }
    // The materialized rollups counted every order once.
    assert_eq!(dash.orders, count(&events, "OrderPlaced"));
    assert_eq!(dash.units, events.iter().filter_map(|e| if let Event::OrderPlaced(o) = e { Some(o) } else { None }).flat_map(|o| &o.items).map(|i| i64::from(i.quantity)).sum::<i64>());
    sinks.stop().expect("stop");
}

#[test]
fn elasticsearch_stopped_for_30_s_and_restarted_drains_the_backlog_without_loss_or_doubles() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    init();
    let Some((es, _cleanup)) = elasticsearch() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (log, codec) = (log(&dir.path().join("log")), codec());
    let events = sim(10_000, 33);
    let (first, second) = events.split_at(4_000);
    publish(log.as_ref(), &codec, first);
    let mut cfg = SinksConfig::embedded(dir.path().join("sinks")).only(&["search"]);
    *cfg.sink_mut::<SearchSink>() = SearchConfig { elasticsearch: Some(es), max_wait_ms: 200, ..SearchConfig::default() };
    let sinks = Sinks::start(log.clone(), codec.clone(), cfg, &mut Registry::default()).expect("start");
    sinks.wait_caught_up(PATIENCE).expect("caught up");
    outage("elasticsearch", &sinks, "search", || publish(log.as_ref(), &codec, second));
    sinks.wait_caught_up(PATIENCE).expect("drained after the restart");
    let s = sinks.search().expect("search");
    let products: Vec<&ProductCreated> = events.iter().filter_map(|e| if let Event::ProductCreated(p) = e { Some(p) } else { None }).collect();
    let (views, reviews, total) = rt().block_on(async {
        s.refresh().await.expect("refresh");
        let total = s.search(&storeflow_sinks::SearchQuery::default()).await.expect("search").total;
        let (mut views, mut reviews) = (0i64, 0i64);
        for p in &products {
            let d = s.product(&p.product_id).await.expect("read").expect("every product is indexed");
            views += d.views;
            reviews += d.rating_count;
        }
        (views, reviews, total)
    });
    let active = products.len() as u64 - events.iter().filter(|e| matches!(e, Event::ProductUpdated(u) if u.status.as_deref().is_some_and(|s| s != "active"))).count() as u64;
    assert_eq!(total, active);
    // Counting fields would show any event applied twice.
    assert_eq!(views, count(&events, "ProductViewed"));
    assert_eq!(reviews, count(&events, "ReviewSubmitted"));
    sinks.stop().expect("stop");
}
