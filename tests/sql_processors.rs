//! SQL processors inside the real `storeflow run` (docs/SQL-PROCESSORS.md): a data engineer's
//! loop (a new file runs on restart with no build; an incompatible output is refused), and
//! the crash test (SIGKILLed mid-stream, every window comes out exactly once, as in a clean
//! run, and equal to an independent reference).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Run, storeflow};
use serde_json::{Value, json};
use storeflow_avro::{Codec, Event, EventType};
use storeflow_ingest::{ConsumerConfig, EmbeddedLog, Log, Record, TopicPartition};

const MIN: i64 = 60_000;

/// A time safely in the past (event times must not run ahead of the wall clock), on a
/// minute boundary.
fn t0() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    (now - 12 * 60 * MIN) / MIN * MIN
}

/// An event of type `name`: the contract's example with `fields` over it; `n` makes its id.
fn event(name: &str, n: u64, at: i64, fields: Value) -> Event {
    let mut v = storeflow_avro::json::example(EventType::by_name(name).unwrap());
    let m = v.as_object_mut().unwrap();
    m.insert("occurred_at".into(), json!(at));
    m.insert("event_id".into(), json!(format!("{:08x}-0000-4000-8000-{n:012x}", EventType::by_name(name).unwrap().index())));
    for (k, x) in fields.as_object().unwrap() {
        m.insert(k.clone(), x.clone());
    }
    storeflow_avro::json::event_from_stored_json(v).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Publishes `events` into the embedded log of `dir/data` (then closes it).
fn publish(dir: &Path, events: &[Event]) {
    let log = EmbeddedLog::open(dir.join("data")).unwrap();
    log.create_topics(&storeflow_ingest::publish::contract_topics(Some(4))).unwrap();
    let codec = Codec::embedded().unwrap();
    let p = log.producer().unwrap();
    for e in events {
        p.send(storeflow_ingest::publish::record_for(&codec, e).unwrap()).unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

/// Every record of `topic` in `dir/data`'s log (storeflow must not be running).
fn read(dir: &Path, topic: &str) -> Vec<Record> {
    let log = EmbeddedLog::open(dir.join("data")).unwrap();
    let Some(info) = log.describe_topics().unwrap().into_iter().find(|t| t.name == topic) else { return Vec::new() };
    let mut c = log.consumer(ConsumerConfig::new("test.read"), None).unwrap();
    c.assign(&info.partitions.iter().map(|p| (TopicPartition::new(topic, p.partition), p.start)).collect::<Vec<_>>()).unwrap();
    let total: u64 = info.partitions.iter().map(|p| p.end - p.start).sum();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while (out.len() as u64) < total && Instant::now() < deadline {
        out.extend(c.poll(10_000, Duration::from_millis(100)).unwrap());
    }
    out
}

/// The output rows of `topic`, decoded with the schema the gate kept for `subject`.
fn rows(dir: &Path, topic: &str, record: &str) -> Vec<BTreeMap<String, Value>> {
    let history = dir.join("data/sql/schemas").join(format!("{topic}-storeflow.sql.{record}"));
    let mut versions: Vec<_> = std::fs::read_dir(&history).unwrap_or_else(|e| panic!("{}: {e}", history.display())).map(|e| e.unwrap().path()).collect();
    versions.sort();
    let schema = apache_avro::Schema::parse_str(&std::fs::read_to_string(versions.last().unwrap()).unwrap()).unwrap();
    read(dir, topic).iter().map(|r| storeflow_sql::processor::decode_output(&schema, r.value.as_deref().unwrap()).unwrap().into_iter().collect()).collect()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

const VIEWS: &str = "-- Views per product per 5 minutes.
-- from: ProductViewed
-- to: sql.views
-- key: product_id
-- partition by: product_id
-- window: tumbling 5m
SELECT window_start, product_id, COUNT(*) AS views
FROM product_viewed
GROUP BY window_start, product_id
";

#[test]
fn a_new_sql_file_runs_on_restart_with_no_build_and_an_incompatible_output_change_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write(&dir.join("storeflow.toml"), "[sql]\ndirs = [\"sql\"]\nshipped = false\n");
    let t0 = t0();
    let mut events = Vec::new();
    let mut reference: BTreeMap<(i64, String), i64> = BTreeMap::new();
    for i in 0..400u64 {
        let at = t0 + (i as i64 * 7919 % 1_200_000);
        let product = format!("p-{}", i % 5);
        *reference.entry((at / (5 * MIN) * (5 * MIN), product.clone())).or_default() += 1;
        events.push(event("ProductViewed", i, at, json!({"product_id": product, "session_id": format!("s-{}", i % 37)})));
    }
    // Views just before a window's end: the re-keying must not make them look later than
    // the window (a shuffle once stamped its records half a second on, and these went to
    // the DLQ as late).
    for (i, before_end) in [1i64, 250, 499].into_iter().enumerate() {
        let at = t0 + 5 * MIN * (i as i64 + 1) - before_end;
        *reference.entry((at / (5 * MIN) * (5 * MIN), "p-0".into())).or_default() += 1;
        events.push(event("ProductViewed", 900 + i as u64, at, json!({"product_id": "p-0", "session_id": "s-end"})));
    }
    for i in 0..60u64 {
        events.push(event("CheckoutStarted", 1000 + i, t0 + i as i64 * 20_000, json!({"session_id": format!("s-{}", i % 37), "currency": if i % 3 == 0 { "USD" } else { "EUR" }})));
    }
    // In time order: with no lateness, a view older than what its task has seen is late.
    events.sort_by_key(|e| e.occurred_at().millis());
    publish(dir, &events);
    write(&dir.join("sql/views.sql"), VIEWS);
    Run::start(dir).until_idle();
    let views = rows(dir, "sql.views", "Views");
    let got: BTreeMap<(i64, String), i64> = views.iter().map(|r| ((r["window_start"].as_i64().unwrap(), r["product_id"].as_str().unwrap().to_string()), r["views"].as_i64().unwrap())).collect();
    assert_eq!(got, reference, "views per product and window");
    assert_eq!(views.len(), reference.len(), "each window and product once");

    // A new file in the folder: picked up on the next start, over the whole log.
    write(
        &dir.join("sql/checkouts.sql"),
        "-- from: CheckoutStarted\n-- to: sql.checkouts\n-- key: currency\n-- partition by: currency\n-- window: tumbling 10m\nSELECT window_start, currency, COUNT(*) AS checkouts FROM checkout_started GROUP BY window_start, currency\n",
    );
    Run::start(dir).until_idle();
    let checkouts = rows(dir, "sql.checkouts", "Checkouts");
    let total: i64 = checkouts.iter().map(|r| r["checkouts"].as_i64().unwrap()).sum();
    assert_eq!(total, 60, "every checkout counted once: {checkouts:?}");
    assert_eq!(rows(dir, "sql.views", "Views").len(), views.len(), "the restart repeats no view output");

    // An output a reader of sql.views could not read: refused at start, with the reason.
    write(&dir.join("sql/views.sql"), &VIEWS.replace("COUNT(*) AS views", "CAST(COUNT(*) AS VARCHAR) AS views"));
    let out = storeflow(dir).args(["run", "--listen", &format!("127.0.0.1:{}", common::free_port()), "--registry-listen", ""]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "storeflow run started with an incompatible output");
    assert!(stderr.contains("views.sql") && stderr.contains("not compatible with version 1 of sql.views-storeflow.sql.Views"), "{stderr}");
}

/// The traffic of the crash test: views over two hours, checkouts and some orders.
fn traffic(t0: i64) -> Vec<Event> {
    let mut events = Vec::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..3000u64 {
        let at = t0 + (i as i64) * (2 * 60 * MIN) / 3000 + (next() % 20_000) as i64 - 10_000;
        let product = format!("p-{}", next() % 40 % (1 + next() % 40));
        events.push(event("ProductViewed", i, at, json!({"product_id": product, "session_id": format!("s-{}", next() % 500)})));
    }
    for i in 0..120u64 {
        let at = t0 + (i as i64) * 60_000;
        let session = format!("c-{i}");
        events.push(event("CheckoutStarted", 10_000 + i, at, json!({"session_id": session, "cart_id": format!("cart-{i}")})));
        if i % 3 == 0 {
            events.push(event("OrderPlaced", 20_000 + i, at + 5 * MIN, json!({"order_id": format!("o-{i}"), "session_id": session})));
        }
    }
    events.sort_by_key(|e| e.occurred_at().millis());
    events
}

#[test]
fn sql_processors_killed_mid_stream_emit_every_window_exactly_once_as_a_clean_run_does() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let published = root.join("published");
    write(&published.join("storeflow.toml"), "[sql]\ndirs = []\n");
    let t0 = t0();
    let events = traffic(t0);
    publish(&published, &events);
    let (clean, killed) = (root.join("clean"), root.join("killed"));
    common::copy_dir(&published, &clean);
    common::copy_dir(&published, &killed);
    Run::start(&clean).until_idle();
    let (mut landed, kills) = (0, 4);
    for i in 0..kills {
        if Run::start(&killed).kill_mid_stream(Duration::from_millis(1200 + 600 * i)) {
            landed += 1;
        }
    }
    Run::start(&killed).until_idle();
    println!("{landed} of {kills} SIGKILLs landed mid-stream");
    assert!(landed >= 2, "only {landed} of {kills} kills landed while storeflow run was working");

    for (topic, record) in [("sql.hot_products", "HotProducts"), ("sql.abandoned_carts", "AbandonedCarts"), ("sql.revenue_by_category", "RevenueByCategory")] {
        let (a, b) = (rows(&clean, topic, record), rows(&killed, topic, record));
        assert!(!a.is_empty(), "{topic}: the clean run wrote nothing");
        let ids: BTreeSet<&str> = b.iter().map(|r| r["event_id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), b.len(), "{topic}: an output came out twice after the kills");
        let sorted = |v: &[BTreeMap<String, Value>]| -> Vec<String> {
            let mut s: Vec<String> = v.iter().map(|r| serde_json::to_string(r).unwrap()).collect();
            s.sort();
            s
        };
        assert_eq!(sorted(&a), sorted(&b), "{topic}: the killed run's outputs differ from the clean run's");
        println!("{topic}: {} outputs, identical after {kills} kills", a.len());
    }

    // The reference: views per product per 10-minute window sliding every minute; the
    // hottest product's count per window (every window of the two hours has views).
    let views: Vec<(i64, String)> = events
        .iter()
        .filter_map(|e| match e {
            Event::ProductViewed(v) => Some((v.occurred_at.millis(), v.product_id.clone())),
            _ => None,
        })
        .collect();
    let hot = rows(&clean, "sql.hot_products", "HotProducts");
    let mut best: BTreeMap<i64, i64> = BTreeMap::new();
    for r in &hot {
        let e = best.entry(r["window_start"].as_i64().unwrap()).or_default();
        *e = (*e).max(r["views"].as_i64().unwrap());
    }
    let mut checked = 0;
    for (start, got) in &best {
        let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
        for (t, p) in &views {
            if *t >= *start && *t < start + 10 * MIN {
                *counts.entry(p).or_default() += 1;
            }
        }
        assert_eq!(Some(got), counts.values().max(), "the hottest count of the window at {start}");
        checked += 1;
    }
    assert!(checked > 120, "only {checked} windows came out");
    // Abandoned carts: two of three checkouts have no order in their session.
    let abandoned = rows(&clean, "sql.abandoned_carts", "AbandonedCarts");
    assert_eq!(abandoned.len(), 80, "{:?}", abandoned.first());
}
