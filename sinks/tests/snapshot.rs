//! The canonical dump of the embedded stores (`storeflow_sinks::snapshot`): equal for two
//! runs over the same records whatever the batching and the order in which concurrent
//! writers' records landed in the derived topics; different, naming the table, when one
//! row's content differs; and read without a sink and without changing a byte.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};
use storeflow_avro::*;
use storeflow_sinks::analytics::AnalyticsSink;
use storeflow_sinks::analytics::AnalyticsConfig;
use storeflow_sinks::read_model::ReadModelConfig;
use storeflow_sinks::search::SearchConfig;
use storeflow_sinks::read_model::ReadModelSink;
use storeflow_sinks::Registered;
use storeflow_sinks::runner::Item;
use storeflow_sinks::search::SearchSink;
use storeflow_sinks::search::tantivy_index::read_documents;
use storeflow_sinks::snapshot::{self, differences};

use common::*;

type Dump = BTreeMap<String, Vec<String>>;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("runtime")
}

// ------------------------------------------------------------------------- records

/// The storefront records every run shares.
fn source() -> Vec<Event> {
    sim(4_000, 7)
}

fn status(o: &OrderPlaced, version: i64, status: &str, at: i64) -> Event {
    Event::OrderStatusChanged(OrderStatusChanged {
        event_id: format!("st-{}-{version}", o.order_id),
        occurred_at: Timestamp(at),
        order_id: o.order_id.clone(),
        customer_id: o.customer_id.clone(),
        previous_status: None,
        status: status.into(),
        payment_status: "pending".into(),
        fulfillment_status: "unfulfilled".into(),
        reason: status.into(),
        total_minor: o.total_minor(),
        currency: o.currency.clone(),
        version,
    })
}

/// What the processors derive from `source`, as streams: each stream is one entity's
/// records in the order its task wrote them (an order's lifecycle, reservations and fraud
/// score; a sku's stock levels; a vendor's minute; a category's trending list). How the
/// streams interleave in their partitions is what differs between runs.
fn derived(source: &[Event]) -> Vec<Vec<Event>> {
    let orders: Vec<&OrderPlaced> = source.iter().filter_map(|e| if let Event::OrderPlaced(o) = e { Some(o) } else { None }).take(40).collect();
    assert!(orders.len() >= 20, "the simulator placed only {} orders", orders.len());
    let mut streams = Vec::new();
    let mut stock: BTreeMap<String, (i64, i32, Vec<Event>)> = BTreeMap::new();
    let mut vendors: BTreeSet<String> = BTreeSet::new();
    for (k, o) in orders.iter().enumerate() {
        let at = o.occurred_at.millis();
        let lines: Vec<ReservedLine> = o.items.iter().map(|i| ReservedLine { sku: i.sku.clone(), warehouse_id: "w1".into(), quantity: i.quantity }).collect();
        streams.push(vec![
            status(o, 1, "placed", at),
            Event::ReservationMade(ReservationMade {
                event_id: format!("rm-{}", o.order_id),
                occurred_at: Timestamp(at),
                order_id: o.order_id.clone(),
                lines: lines.clone(),
                expires_at: Timestamp(at + 900_000),
            }),
            status(o, 2, "reserved", at + 1),
            Event::ReservationCommitted(ReservationCommitted {
                event_id: format!("rc-{}", o.order_id),
                occurred_at: Timestamp(at + 2),
                order_id: o.order_id.clone(),
                lines,
            }),
            Event::FraudScored(FraudScored {
                event_id: format!("fs-{}", o.order_id),
                occurred_at: Timestamp(at + 3),
                order_id: o.order_id.clone(),
                customer_id: o.customer_id.clone(),
                score: (k as i32 * 7) % 100,
                reasons: vec![FraudReason { code: "velocity".into(), points: 5, detail: "3 orders in 10 min".into() }],
                decision: "allow".into(),
            }),
        ]);
        for i in &o.items {
            let (version, reserved, levels) = stock.entry(i.sku.clone()).or_insert((0, 0, Vec::new()));
            *version += 1;
            *reserved += i.quantity;
            levels.push(level(&i.sku, "w1", *version, at, 1_000, *reserved, "reserved"));
            vendors.insert(i.vendor_id.clone());
        }
    }
    streams.extend(stock.into_values().map(|(_, _, levels)| levels));
    for v in vendors {
        streams.push(
            (1..=3)
                .map(|version| {
                    Event::VendorSalesMinute(VendorSalesMinute {
                        event_id: format!("vm-{v}-{version}"),
                        occurred_at: Timestamp(START + version * 1_000),
                        vendor_id: v.clone(),
                        minute: Timestamp(START),
                        currency: "EUR".into(),
                        orders: version as i32,
                        units: 2 * version as i32,
                        gmv_minor: 1_000 * version,
                        refunds_minor: 0,
                        commission_minor: 100 * version,
                        net_payout_minor: 900 * version,
                        base_currency: "EUR".into(),
                        gmv_base_minor: 1_000 * version,
                        net_payout_base_minor: 900 * version,
                        version,
                        refunds_base_minor: 0,
                        commission_base_minor: 100 * version,
                    })
                })
                .collect(),
        );
    }
    let mut by_category: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in source {
        if let Event::ProductCreated(p) = e {
            by_category.entry(p.category.clone()).or_default().push(p.product_id.clone());
        }
    }
    for (category, products) in by_category.into_iter().take(6) {
        streams.push(
            (1..=3)
                .map(|version| {
                    Event::RecommendationsUpdated(RecommendationsUpdated {
                        event_id: format!("tr-{category}-{version}"),
                        occurred_at: Timestamp(START + version * 60_000),
                        product_id: String::new(),
                        kind: "trending".into(),
                        items: products.iter().take(3).enumerate().map(|(n, p)| ScoredProduct { product_id: p.clone(), score: version as f64 / (n + 1) as f64 }).collect(),
                        session_id: None,
                        category: Some(category.clone()),
                        version,
                    })
                })
                .collect(),
        );
    }
    streams
}

/// The streams merged in an order `seed` picks, each stream's own order kept: what several
/// processor tasks writing at once make of their partitions.
fn interleave(streams: &[Vec<Event>], seed: u64) -> Vec<Event> {
    let mut next = vec![0usize; streams.len()];
    let mut left: Vec<usize> = (0..streams.len()).filter(|s| !streams[*s].is_empty()).collect();
    let mut x = seed | 1;
    let mut out = Vec::new();
    while !left.is_empty() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = (x % left.len() as u64) as usize;
        let s = left[i];
        out.push(streams[s][next[s]].clone());
        next[s] += 1;
        if next[s] == streams[s].len() {
            left.swap_remove(i);
        }
    }
    out
}

/// A run's records as the log hands them out: the storefront's, then the derived ones in
/// the order `seed` picks (partitions by key, offsets counting up per partition).
fn run(source: &[Event], streams: &[Vec<Event>], seed: u64) -> Vec<Item> {
    let mut all = source.to_vec();
    all.extend(interleave(streams, seed));
    items(&all)
}

// ------------------------------------------------------------------------- stores

/// The three embedded sinks on one data dir.
struct Stores {
    read_model: ReadModelSink,
    analytics: AnalyticsSink,
    search: SearchSink,
}

async fn write_to<S: Registered>(sink: &mut S, batch: &[Item]) {
    let topics = sink.topics();
    let mine: Vec<Item> = batch.iter().filter(|i| topics.contains(&i.event.topic()) && sink.wants(&i.event)).cloned().collect();
    if !mine.is_empty() {
        sink.write(&mine).await.unwrap_or_else(|e| panic!("{} writing a batch: {e}", S::NAME));
    }
}

impl Stores {
    async fn open(dir: &Path) -> Stores {
        Stores {
            read_model: ReadModelSink::open(&ReadModelConfig::default(), dir).await.expect("open the read model"),
            analytics: AnalyticsSink::open(&AnalyticsConfig::default(), "EUR", dir).await.expect("open analytics"),
            search: SearchSink::open(&SearchConfig::default(), "EUR", dir).await.expect("open search"),
        }
    }

    async fn write(&mut self, batch: &[Item]) {
        write_to(&mut self.read_model, batch).await;
        write_to(&mut self.analytics, batch).await;
        write_to(&mut self.search, batch).await;
    }

    /// Stops the sinks as `storeflow` does on a clean stop.
    async fn close(self) {
        self.read_model.db().close().await;
    }
}

/// Writes `items` in batches of 500 and stops.
async fn write_plainly(dir: &Path, items: &[Item]) {
    let mut s = Stores::open(dir).await;
    for batch in items.chunks(500) {
        s.write(batch).await;
    }
    s.close().await;
}

/// Writes `items` in batches of 137, every third batch delivered twice (a crash between
/// write and commit), the sinks restarted half-way.
async fn write_unevenly(dir: &Path, items: &[Item]) {
    let batches: Vec<&[Item]> = items.chunks(137).collect();
    let mut s = Stores::open(dir).await;
    for (n, batch) in batches.iter().enumerate() {
        s.write(batch).await;
        if n % 3 == 0 {
            s.write(batch).await;
        }
        if n == batches.len() / 2 {
            s.close().await;
            s = Stores::open(dir).await;
        }
    }
    s.close().await;
}

async fn dump(dir: &Path) -> Dump {
    snapshot::embedded(dir).await.unwrap_or_else(|e| panic!("dumping {}: {e}", dir.display()))
}

fn assert_same(a: &Dump, b: &Dump) {
    let d = differences(a, b);
    assert!(d.is_empty(), "the dumps differ:\n{}", d.join("\n"));
}

/// The tables `differences` names.
fn differing_tables(a: &Dump, b: &Dump) -> BTreeSet<String> {
    differences(a, b).iter().map(|l| l.split(':').next().unwrap_or_default().to_string()).collect()
}

/// One column of a table of a read model, read without creating a file.
async fn column(dir: &Path, sql: &str) -> Vec<(String, i64)> {
    let opts = SqliteConnectOptions::new().filename(dir.join("read_model.sqlite")).read_only(true).immutable(true);
    let mut c = opts.connect().await.expect("open the read model");
    let mut rows: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_string())).fetch_all(&mut c).await.expect("query");
    c.close().await.expect("close");
    rows.sort();
    rows
}

async fn execute(dir: &Path, sql: &str) {
    let opts = SqliteConnectOptions::new().filename(dir.join("read_model.sqlite"));
    let mut c = opts.connect().await.expect("open the read model");
    let done = sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut c).await.expect("update");
    assert_eq!(done.rows_affected(), 1, "{sql}");
    c.close().await.expect("close");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for e in std::fs::read_dir(from).expect("list") {
        let e = e.expect("list");
        let target = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

/// Every file under `dir`: size, modification time and a hash of its bytes.
fn fingerprint(dir: &Path) -> BTreeMap<PathBuf, (u64, SystemTime, u64)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (u64, SystemTime, u64)>) {
        for e in std::fs::read_dir(dir).expect("list") {
            let e = e.expect("list");
            let p = e.path();
            // A file deleted since the listing (a merge's garbage) is simply not there.
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                walk(root, &p, out);
            } else if let Ok(bytes) = std::fs::read(&p) {
                let mut h = DefaultHasher::new();
                bytes.hash(&mut h);
                out.insert(p.strip_prefix(root).expect("under the root").to_path_buf(), (m.len(), m.modified().expect("mtime"), h.finish()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The fingerprint of `dir` once nothing writes to it any more: a dropped tantivy writer's
/// merge threads may still finish a merge and collect its garbage for a moment, as a
/// stopping process does before it exits.
fn settled(dir: &Path) -> BTreeMap<PathBuf, (u64, SystemTime, u64)> {
    let mut last = fingerprint(dir);
    for _ in 0..60 {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let now = fingerprint(dir);
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("{} is still being written after 30 s", dir.display());
}

// ------------------------------------------------------------------------- tests

#[test]
fn two_runs_over_the_same_records_in_other_batchings_and_orders_of_derived_topics_dump_equal() {
    init();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source = source();
    let streams = derived(&source);
    let (items_a, items_b) = (run(&source, &streams, 11), run(&source, &streams, 12_345));
    // The derived records landed at other offsets (else this would test nothing).
    let offsets = |items: &[Item]| -> HashMap<String, (u32, u64)> {
        items.iter().filter(|i| !i.event.topic().is_input()).map(|i| (i.event.event_id().to_string(), (i.partition, i.offset))).collect()
    };
    let (oa, ob) = (offsets(&items_a), offsets(&items_b));
    let moved = oa.iter().filter(|(id, at)| ob[*id] != **at).count();
    assert!(moved > oa.len() / 2, "only {moved} of {} derived records moved", oa.len());
    assert!(oa.iter().all(|(id, (p, _))| ob[id].0 == *p), "a record changed partition: its key decides it");

    let (da, db) = rt().block_on(async {
        write_plainly(a.path(), &items_a).await;
        write_unevenly(b.path(), &items_b).await;
        (dump(a.path()).await, dump(b.path()).await)
    });
    assert_same(&da, &db);

    // The stores hold what the records say, and the positions that were left out differ.
    for table in [
        "read_model.orders",
        "read_model.order_events",
        "read_model.reservations",
        "read_model.inventory",
        "read_model.fraud_scores",
        "analytics.fact_order_status",
        "analytics.fact_stock_levels",
        "analytics.fact_vendor_minutes",
        "analytics.dim_products",
        "search.products",
    ] {
        assert!(!da[table].is_empty(), "{table} is empty");
    }
    let history = &da["read_model.order_events"];
    assert!(history.iter().any(|l| l.contains("\"topic\":\"storefront.orders\"") && l.contains("\"offset_no\":")), "storefront offsets are kept");
    assert!(history.iter().filter(|l| l.contains("\"topic\":\"orders.lifecycle\"")).all(|l| !l.contains("offset_no") && l.contains("\"partition_no\":")));
    let fact_status = &da["analytics.fact_order_status"];
    assert!(fact_status.iter().all(|l| !l.contains("src_offset") && l.contains("src_partition")));
    assert!(da["analytics.fact_orders"].iter().all(|l| l.contains("src_offset")));
    let docs: Vec<serde_json::Value> = da["search.products"].iter().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    let src_topics: BTreeSet<&str> =
        docs.iter().flat_map(|d| d["src"].as_object().into_iter().flat_map(|m| m.keys())).map(|k| k.rsplit_once('/').map_or("", |(t, _)| t)).collect();
    assert_eq!(src_topics, BTreeSet::from(["storefront.catalog", "storefront.exchange_rates", "storefront.sessions"]), "storefront offsets applied are kept, derived ones not");
    assert!(docs.iter().all(|d| d.get("version").is_none()), "a document's revision is left out");
    assert!(docs.iter().any(|d| d["stock"]["w1"]["version"].as_i64().is_some_and(|v| v > 0)), "stock levels keep their versions");
    let sql = "SELECT order_id || '/' || sku, updated_pos FROM reservations";
    let (pa, pb) = rt().block_on(async { (column(a.path(), sql).await, column(b.path(), sql).await) });
    assert_ne!(pa, pb, "the reservations' positions are the same in both runs: the test proves nothing");
}

#[test]
fn changing_one_rows_content_makes_the_dumps_differ_and_names_the_table() {
    init();
    let (a, c) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source = source();
    let streams = derived(&source);
    // Run C: one stock level (the last of its sku) says 5 more on hand.
    let mut changed = streams.clone();
    let levels = changed.iter_mut().find(|s| matches!(s.first(), Some(Event::StockLevelChanged(_)))).expect("a stock stream");
    if let Some(Event::StockLevelChanged(l)) = levels.last_mut() {
        l.on_hand += 5;
        l.available += 5;
    }
    let da = rt().block_on(async {
        write_plainly(a.path(), &run(&source, &streams, 11)).await;
        write_plainly(c.path(), &run(&source, &changed, 11)).await;
        let (da, dc) = (dump(a.path()).await, dump(c.path()).await);
        assert_eq!(
            differing_tables(&da, &dc),
            BTreeSet::from(["analytics.fact_stock_levels".to_string(), "read_model.inventory".to_string(), "search.products".to_string()]),
            "{}",
            differences(&da, &dc).join("\n")
        );
        da
    });

    // One cell changed in place: a left-out position changes nothing, content does.
    let edited = tempfile::tempdir().unwrap();
    settled(a.path());
    copy_dir(a.path(), edited.path());
    rt().block_on(async {
        execute(edited.path(), "UPDATE reservations SET updated_pos = updated_pos + 1 WHERE rowid = (SELECT MIN(rowid) FROM reservations)").await;
        assert_same(&da, &dump(edited.path()).await);
        execute(edited.path(), "UPDATE orders SET total_minor = total_minor + 1 WHERE order_id = (SELECT MIN(order_id) FROM orders)").await;
        let de = dump(edited.path()).await;
        let d = differences(&da, &de);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].starts_with("read_model.orders: 1 rows only in the first, 1 only in the second"), "{}", d[0]);
        assert!(d[0].contains("total_minor"), "{}", d[0]);
    });
}

#[test]
fn dumping_a_store_changes_no_file_and_needs_no_running_sink() {
    init();
    let (dir, crashed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source = source();
    let items = run(&source, &derived(&source), 11);
    rt().block_on(async {
        let mut s = Stores::open(dir.path()).await;
        for batch in items.chunks(500) {
            s.write(batch).await;
        }
        // What a SIGKILL leaves: the sinks' files as they are while the sinks run (SQLite's
        // WAL not checkpointed, tantivy's lock files), copied once tantivy's merges are done
        // so the copy is one moment's.
        settled(dir.path());
        copy_dir(dir.path(), crashed.path());
        s.close().await;
    });
    assert!(std::fs::metadata(crashed.path().join("read_model.sqlite-wal")).is_ok_and(|m| m.len() > 0), "the crash image has no WAL to read");

    // A cleanly stopped store: not a byte, file or timestamp changes, and a second dump is the same.
    let before = settled(dir.path());
    let (first, second) = rt().block_on(async { (dump(dir.path()).await, dump(dir.path()).await) });
    assert_eq!(fingerprint(dir.path()), before, "dumping changed the store");
    assert_same(&first, &second);

    // The crash image reads the same (what only the WAL held included); SQLite may rebuild
    // its shared-memory index (`-shm`, no data), nothing else changes.
    let without_shm = |f: BTreeMap<PathBuf, (u64, SystemTime, u64)>| -> BTreeMap<PathBuf, (u64, SystemTime, u64)> {
        f.into_iter().filter(|(p, _)| !p.to_string_lossy().ends_with("-shm")).collect()
    };
    let before = without_shm(settled(crashed.path()));
    let from_crash = rt().block_on(dump(crashed.path()));
    assert_eq!(without_shm(fingerprint(crashed.path())), before, "dumping changed the crash image");
    assert_same(&first, &from_crash);
    assert!(first["read_model.orders"].len() >= 20 && !first["analytics.fact_orders"].is_empty() && !first["search.products"].is_empty());
}

#[test]
fn stock_that_reaches_search_before_its_product_dumps_like_stock_that_comes_after_it() {
    init();
    let (after, before) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source = source();
    let levels: Vec<Event> = derived(&source).into_iter().flatten().filter(|e| matches!(e, Event::StockLevelChanged(_))).collect();
    let catalog_first: Vec<Event> = source.iter().cloned().chain(levels.iter().cloned()).collect();
    let stock_first: Vec<Event> = levels.iter().cloned().chain(source.iter().cloned()).collect();
    let (da, db) = rt().block_on(async {
        for (dir, events) in [(after.path(), &catalog_first), (before.path(), &stock_first)] {
            let mut sink = SearchSink::open(&SearchConfig::default(), "EUR", dir).await.expect("open search");
            for batch in items(events).chunks(300) {
                write_to(&mut sink, batch).await;
            }
        }
        (dump(after.path()).await, dump(before.path()).await)
    });
    let pending = |dir: &Path| read_documents(&dir.join("search")).expect("read the index").expect("an index").iter().filter(|(id, _)| id.starts_with("stock:")).count();
    assert_eq!(pending(after.path()), 0);
    assert!(pending(before.path()) > 0, "no stock reached the index before its product");
    assert_eq!(da.keys().collect::<Vec<_>>(), ["search.products"]);
    assert_same(&da, &db);
    assert!(da["search.products"].iter().any(|l| l.contains("\"stock\":{\"w1\":")), "no product holds the stock");
}
