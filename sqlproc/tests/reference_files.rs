//! Reference tables read from a CSV or Parquet file beside the `.sql` file: joined like any
//! table, loaded once at start, and a missing or unreadable file refused at the header line
//! that names it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use storeflow_avro::{Codec, Event, EventType};
use storeflow_processors::TestDriver;
use storeflow_sql::{Engine, Query, prepare};

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;
const MIN: i64 = 60_000;

const QUERY: &str = "\
-- Orders per sales region per 5 minutes; the region of a currency comes from a file.
-- from: OrderPlaced
-- to: sql.orders_by_region
-- key: region
-- window: tumbling 5m
-- reference: regions = FILE
SELECT o.window_start, COALESCE(r.region, 'other') AS region, COUNT(*) AS orders, CAST(SUM(r.weight) AS BIGINT) AS weight
FROM order_placed AS o LEFT JOIN regions AS r ON r.currency = o.currency
GROUP BY o.window_start, COALESCE(r.region, 'other')
";

fn order(n: u64, at: i64, currency: &str) -> Event {
    let t = EventType::by_name("OrderPlaced").unwrap();
    let mut v = storeflow_avro::json::example(t);
    let m = v.as_object_mut().unwrap();
    m.insert("occurred_at".into(), json!(at));
    m.insert("event_id".into(), json!(format!("00000000-0000-4000-8000-{n:012x}")));
    m.insert("order_id".into(), json!(format!("o-{n}")));
    m.insert("currency".into(), json!(currency));
    storeflow_avro::json::event_from_stored_json(v).unwrap()
}

/// (region → (orders, weight)) of the first window, from a query reading `file`.
fn regions_of(dir: &Path, file: &str) -> BTreeMap<String, (i64, Option<i64>)> {
    let path = dir.join("by_region.sql");
    std::fs::write(&path, QUERY.replace("FILE", file)).unwrap();
    let q = Query::load(&path).unwrap();
    let codec = Arc::new(Codec::embedded().unwrap());
    let p = prepare(&q, &codec, "test", "EUR", None).unwrap();
    let schema = apache_avro::Schema::parse_str(&storeflow_sql::output_schema(p.engine())).unwrap();
    let mut d = TestDriver::new(p).with_partitions(2);
    for (n, currency) in ["EUR", "EUR", "USD", "GBP", "JPY"].iter().enumerate() {
        d.pipe(order(n as u64, T0 + n as i64 * 1000, currency));
    }
    d.advance_time(T0 + 60 * MIN);
    let mut out: BTreeMap<String, (i64, Option<i64>)> = BTreeMap::new();
    for r in d.records(&q.output) {
        let row: BTreeMap<String, Value> = storeflow_sql::processor::decode_output(&schema, r.value.as_deref().unwrap()).unwrap().into_iter().collect();
        // Each task emits its share of a window: add them up.
        let e = out.entry(row["region"].as_str().unwrap().to_string()).or_insert((0, None));
        e.0 += row["orders"].as_i64().unwrap();
        if let Some(w) = row["weight"].as_i64() {
            e.1 = Some(e.1.unwrap_or(0) + w);
        }
    }
    out
}

fn expected() -> BTreeMap<String, (i64, Option<i64>)> {
    [("europe".to_string(), (3, Some(6))), ("americas".to_string(), (1, Some(5))), ("other".to_string(), (1, None))].into_iter().collect()
}

#[test]
fn a_csv_reference_table_beside_the_sql_file_is_joined_with_the_window_rows() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("ref")).unwrap();
    std::fs::write(tmp.path().join("ref/regions.csv"), "currency,region,weight\nEUR,europe,2\nGBP,europe,2\nUSD,americas,5\n").unwrap();
    assert_eq!(regions_of(tmp.path(), "ref/regions.csv"), expected());
}

#[test]
fn a_parquet_reference_table_gives_the_same_join_as_the_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("regions.parquet");
    // Written by DataFusion itself, as a data engineer's tool would.
    let ctx = datafusion::prelude::SessionContext::new();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let sql = format!(
            "COPY (SELECT column1 AS currency, column2 AS region, column3 AS weight FROM (VALUES ('EUR', 'europe', 2), ('GBP', 'europe', 2), ('USD', 'americas', 5))) TO '{}' STORED AS PARQUET",
            file.display()
        );
        ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    });
    assert!(file.is_file(), "DataFusion wrote no Parquet file");
    assert_eq!(regions_of(tmp.path(), "regions.parquet"), expected());
}

#[test]
fn a_missing_reference_file_is_refused_at_the_header_line_that_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("by_region.sql");
    std::fs::write(&path, QUERY.replace("FILE", "nowhere.csv")).unwrap();
    let q = Query::load(&path).unwrap();
    let e = Engine::new(Arc::new(q), "EUR").err().expect("the file does not exist");
    assert_eq!(e.line, 6, "{e}");
    assert!(e.message.contains("regions") && e.message.contains("nowhere.csv") && e.message.contains("no such file"), "{e}");
}
