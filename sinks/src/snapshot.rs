//! A canonical, comparable dump of the embedded stores: every row of every table of the
//! read model (SQLite), analytics (Parquet) and search (tantivy) under a sinks data dir,
//! for checks that two runs over the same log end with the same stores (the determinism
//! test) and that a rebuilt store equals the old one.
//!
//! [`embedded`] reads `<data_dir>/read_model.sqlite`, `<data_dir>/analytics/<table>/*.parquet`
//! and `<data_dir>/search/`, and returns, per table, one line per row: a JSON object with
//! its keys sorted (nested objects too), the lines sorted, duplicates kept (a row written
//! twice is a difference). Keys: `read_model.<table>`, `analytics.<table>` and
//! `search.products`. A store that does not exist has no keys; each table of one that
//! exists has its key, even when empty. [`differences`] says which tables differ and how.
//!
//! **It writes nothing and needs no sink.** The stores are read as a SIGKILLed or stopped
//! `storeflow` left them, without the sinks' open functions (those run migrations, delete
//! replaced files, upgrade old ones and take the index writer):
//!
//! - SQLite: a read-only connection (`SQLITE_OPEN_READONLY`). With no `-wal` content (the
//!   store was closed cleanly) also `immutable=1`: everything is in the main file, and
//!   without it even a read-only connection creates `-wal` and `-shm` files next to it. If
//!   the file changes while it is read that way (a writer came along), it is read again
//!   through SQLite's locks. With `-wal` content (a crash, or a sink still running) the
//!   connection goes through the WAL, which it never writes; SQLite may rebuild its
//!   shared-memory index (`-shm`), which holds no data.
//! - Parquet: the files are read directly ([`crate::analytics::parquet::read_table`]), with
//!   the rules the store's open applies — temporary files and files that a finished
//!   compaction or upgrade replaced are skipped, files of an older release are upgraded in
//!   memory — instead of by deleting and rewriting.
//! - tantivy: a reader over a directory that refuses writes
//!   ([`crate::search::tantivy_index::read_documents`]); no writer, no lock file created.
//!
//! **Left out: bookkeeping that legitimately differs between two runs over the same log.**
//! Everything else is content and stays — ids, statuses, amounts, the processors' snapshot
//! `version`s (deterministic: one more per change of the entity), event times (`*_at`,
//! `occurred_at`, a stock level's `at`: the log's or their cause's time), and positions in
//! the `storefront.*` topics (the same log, the same offsets).
//!
//! - *Offsets in derived topics.* `orders.lifecycle`, `inventory.levels`,
//!   `inventory.reservations`, `fraud.scores`, `sales.vendor_minute` and
//!   `recommendations.updates` are written by several processor tasks at once; the order in
//!   which concurrent writers' records land in a partition is not reproducible, while the
//!   records and their partition (the hash of their key) are. So:
//!   - read model: `reservations.updated_pos` and `fraud_scores.scored_pos` (positions,
//!     `partition × 2⁴⁸ + offset`, in `inventory.reservations` / `fraud.scores`, never a
//!     storefront topic) are left out of every row; `order_events.offset_no` is left out of
//!     the rows whose `topic` is a derived one (the row says which, so the storefront
//!     events keep theirs). The other `*_pos` columns (`products.catalog_pos`/`price_pos`,
//!     `vendors.updated_pos`, `customers.registered_pos`, `orders.placed_pos`,
//!     `payments.status_pos`, `shipments.updated_pos`) only ever hold positions of
//!     storefront topics, and stay. (On Kafka, after a crash, the positions of the
//!     payments worker's own records on `storefront.payments` differ too: an aborted
//!     transaction keeps its offsets. `tests/determinism.rs` leaves those out of its Kafka
//!     comparison, by name.)
//!   - analytics: `src_offset` (and `pos`, which only `dim_products`/`dim_vendors` have,
//!     from `storefront.catalog`) of rows whose `src_topic` is a derived one.
//!   - search: the entries of a document's `src` (last offset applied per partition) for
//!     derived partitions.
//!
//!   A topic outside the contract counts as derived: nothing says who writes it.
//! - *A search document's `version`.* Its revision: one more per event applied. It does
//!   not count redeliveries after a crash (`src` skips an event applied before), but it does
//!   count applications whose number depends on the order of derived records: stock that
//!   reached the index before its product is applied to the sku's `stock:<sku>` document
//!   and merged into the product's without a revision, a trending score from another list
//!   is taken or refused by arrival. The fields themselves stay.
//! - *`stock:<sku>` documents that name their product.* Such a document exists only when
//!   stock reached the index before the product's ProductCreated — a matter of how far
//!   `inventory.levels` lagged `storefront.catalog` — and after that is only a pointer:
//!   the product's document holds the same stock (the highest version per warehouse) either
//!   way. One that names no product is the only place its stock lives, and stays.
//! - *Wall-clock time of processing*: the migrator's `_sqlx_migrations.installed_on` and
//!   `execution_time` (the table stays: which migrations ran, and their checksums). No other
//!   column of the three stores holds a wall-clock time.
//! - *Layout*: Parquet file names and footers (marks derived from the rows), tantivy
//!   segments and doc ids, SQLite rowids and row order — not read, or sorted away.
//!
//! **Not hidden, on purpose**: the values a sink joins from another topic — the category
//! and brand analytics copies onto an order line, the product and vendor of a stock level
//! or a returned line, every base-currency amount, a search document's price in the base
//! currency and the sku its stock is routed by. They used to depend on how a sink's
//! consumer interleaved its topics (the rates and catalogue it had seen so far); the sinks
//! now read the reference topics ahead of every write ([`crate::reference`]), so in a
//! replay of a finished log they are the same whatever the interleaving, and the dump
//! compares them like any content. (Live, a rate or product published after a fact it
//! should have applied to is not applied to it afterwards: two runs that saw a late
//! producer's records at other moments can still differ there, and the dump shows it.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::{Map, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{AssertSqlSafe, Column, ConnectOptions, Connection, Row, TypeInfo, ValueRef};
use storeflow_avro::Topic;

use crate::analytics::parquet::{batch_to_json, read_table};
use crate::analytics::rows::schemas;
use crate::search::doc::PENDING_STOCK;
use crate::search::tantivy_index::read_documents;
use crate::{Result, SinkError};

/// Columns of the read model left out of every row, with why.
pub const READ_MODEL_LEFT_OUT: &[(&str, &str, &str)] = &[
    ("reservations", "updated_pos", "a position in inventory.reservations, written by several processor tasks"),
    ("fraud_scores", "scored_pos", "a position in fraud.scores, written by several processor tasks"),
    ("_sqlx_migrations", "installed_on", "wall-clock time of the migration"),
    ("_sqlx_migrations", "execution_time", "wall-clock duration of the migration"),
];

/// Every row of every table of the embedded stores under `data_dir` (the sinks' data dir,
/// e.g. `<storeflow data dir>/sinks`), canonical: per table, rows rendered as one JSON
/// object per line with keys sorted, lines sorted; bookkeeping that legitimately differs
/// between two runs over the same log left out (see the [module](self) docs). Keys are
/// `read_model.<table>`, `analytics.<table>` and `search.products`. Reads only: no sink
/// needs to run, and none is disturbed.
pub async fn embedded(data_dir: &Path) -> Result<BTreeMap<String, Vec<String>>> {
    let mut out = BTreeMap::new();
    for (table, rows) in read_model(&data_dir.join("read_model.sqlite")).await? {
        out.insert(format!("read_model.{table}"), rows);
    }
    let dir = data_dir.to_path_buf();
    let files = tokio::task::spawn_blocking(move || -> Result<BTreeMap<String, Vec<String>>> {
        let mut out = BTreeMap::new();
        for (table, rows) in analytics(&dir.join("analytics"))? {
            out.insert(format!("analytics.{table}"), rows);
        }
        if let Some(rows) = search(&dir.join("search"))? {
            out.insert("search.products".to_string(), rows);
        }
        Ok(out)
    })
    .await;
    match files {
        Ok(files) => out.extend(files?),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => return Err(SinkError::Stopped),
    }
    Ok(out)
}

/// How two dumps differ, one line per table: what only one of them has, with up to three
/// rows of each side. Empty when they are equal.
pub fn differences(a: &BTreeMap<String, Vec<String>>, b: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut out = Vec::new();
    let tables: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for t in tables {
        match (a.get(t), b.get(t)) {
            (Some(x), None) => out.push(format!("{t}: only in the first dump ({} rows)", x.len())),
            (None, Some(y)) => out.push(format!("{t}: only in the second dump ({} rows)", y.len())),
            (Some(x), Some(y)) if x != y => {
                let (only_x, only_y) = unmatched(x, y);
                let sample = |rows: &[&String], sign: char| rows.iter().take(3).map(|r| format!("\n  {sign} {r}")).collect::<String>();
                out.push(format!(
                    "{t}: {} rows only in the first, {} only in the second{}{}",
                    only_x.len(),
                    only_y.len(),
                    sample(&only_x, '-'),
                    sample(&only_y, '+')
                ));
            }
            _ => {}
        }
    }
    out
}

/// The lines of two sorted lists that the other does not match, one for one.
fn unmatched<'a>(x: &'a [String], y: &'a [String]) -> (Vec<&'a String>, Vec<&'a String>) {
    let (mut i, mut j) = (0, 0);
    let (mut only_x, mut only_y) = (Vec::new(), Vec::new());
    while i < x.len() || j < y.len() {
        match (x.get(i), y.get(j)) {
            (Some(l), Some(r)) if l == r => {
                i += 1;
                j += 1;
            }
            (Some(l), Some(r)) if l < r => {
                only_x.push(l);
                i += 1;
            }
            (Some(_), Some(r)) | (None, Some(r)) => {
                only_y.push(r);
                j += 1;
            }
            (Some(l), None) => {
                only_x.push(l);
                i += 1;
            }
            (None, None) => break,
        }
    }
    (only_x, only_y)
}

/// JSON with every object's keys sorted, at every depth.
pub fn canonical(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (n, (k, v)) in entries.into_iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(k.as_str()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (n, v) in a.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn lines(rows: impl IntoIterator<Item = Map<String, Value>>) -> Vec<String> {
    let mut out: Vec<String> = rows.into_iter().map(|r| canonical(&Value::Object(r))).collect();
    out.sort();
    out
}

/// True for a topic whose offsets two runs over the same log share: one written from outside
/// the pipeline (`storefront.*`). Derived topics and topics outside the contract are not.
fn reproducible_offsets(topic: &str) -> bool {
    Topic::from_name(topic).is_some_and(Topic::is_input)
}

// ------------------------------------------------------------------------- read model

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Size and modification time of a file, `None` when it is missing.
fn stamp(path: &Path) -> Option<(u64, Option<SystemTime>)> {
    std::fs::metadata(path).ok().map(|m| (m.len(), m.modified().ok()))
}

/// True when the WAL holds something a reader must see.
fn wal_has_content(db: &Path) -> bool {
    stamp(&with_suffix(db, "-wal")).is_some_and(|(len, _)| len > 0)
}

async fn read_model(path: &Path) -> Result<BTreeMap<String, Vec<String>>> {
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    if !wal_has_content(path) {
        let before = stamp(path);
        let tables = sqlite_tables(path, true).await?;
        if stamp(path) == before && !wal_has_content(path) {
            return Ok(tables);
        }
        tracing::info!(path = %path.display(), "the read model changed while it was read as immutable; reading it again through SQLite's locks");
    }
    sqlite_tables(path, false).await
}

async fn sqlite_tables(path: &Path, immutable: bool) -> Result<BTreeMap<String, Vec<String>>> {
    let opts = SqliteConnectOptions::new().filename(path).read_only(true).immutable(immutable).create_if_missing(false).foreign_keys(false);
    let mut conn: SqliteConnection = opts.connect().await.map_err(SinkError::sql(format!("opening {} read-only", path.display())))?;
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")
        .fetch_all(&mut conn)
        .await
        .map_err(SinkError::sql(format!("listing the tables of {}", path.display())))?;
    let mut out = BTreeMap::new();
    for table in names {
        let sql = format!("SELECT * FROM \"{}\"", table.replace('"', "\"\""));
        let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(&mut conn).await.map_err(SinkError::sql(format!("reading {table} of {}", path.display())))?;
        let mut maps = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut m = sqlite_row(row, &table)?;
            read_model_left_out(&table, &mut m);
            maps.push(m);
        }
        out.insert(table, lines(maps));
    }
    conn.close().await.map_err(SinkError::sql(format!("closing {}", path.display())))?;
    Ok(out)
}

/// Drops what [`READ_MODEL_LEFT_OUT`] names, and the offset of history rows of derived topics.
fn read_model_left_out(table: &str, row: &mut Map<String, Value>) {
    for (t, col, _) in READ_MODEL_LEFT_OUT {
        if *t == table {
            row.remove(*col);
        }
    }
    if table == "order_events" && !row.get("topic").and_then(Value::as_str).is_some_and(reproducible_offsets) {
        row.remove("offset_no");
    }
}

fn sqlite_row(row: &SqliteRow, table: &str) -> Result<Map<String, Value>> {
    let mut m = Map::new();
    for (i, col) in row.columns().iter().enumerate() {
        let failed = || SinkError::sql(format!("reading {table}.{}", col.name()));
        let kind = {
            let raw = row.try_get_raw(i).map_err(failed())?;
            if raw.is_null() { None } else { Some(raw.type_info().name().to_string()) }
        };
        let v = match kind.as_deref() {
            None => Value::Null,
            Some("INTEGER" | "BOOLEAN") => Value::from(row.try_get_unchecked::<i64, _>(i).map_err(failed())?),
            Some("REAL") => Value::from(row.try_get_unchecked::<f64, _>(i).map_err(failed())?),
            Some("BLOB") => {
                let b: Vec<u8> = row.try_get_unchecked(i).map_err(failed())?;
                Value::from(b.iter().map(|x| format!("{x:02x}")).collect::<String>())
            }
            Some(_) => Value::from(row.try_get_unchecked::<String, _>(i).map_err(failed())?),
        };
        m.insert(col.name().to_string(), v);
    }
    Ok(m)
}

// ------------------------------------------------------------------------- analytics

fn analytics(dir: &Path) -> Result<BTreeMap<String, Vec<String>>> {
    let mut out = BTreeMap::new();
    if !dir.is_dir() {
        return Ok(out);
    }
    for (table, _) in schemas() {
        let mut rows = Vec::new();
        for b in read_table(dir, table)? {
            for mut r in batch_to_json(&b)? {
                if !r.get("src_topic").and_then(Value::as_str).is_some_and(reproducible_offsets) {
                    r.remove("src_offset");
                    r.remove("pos");
                }
                rows.push(r);
            }
        }
        out.insert(table.to_string(), lines(rows));
    }
    Ok(out)
}

// ------------------------------------------------------------------------- search

fn search(dir: &Path) -> Result<Option<Vec<String>>> {
    let Some(docs) = read_documents(dir)? else { return Ok(None) };
    let mut rows = Vec::with_capacity(docs.len());
    for (id, json) in docs {
        let Value::Object(mut d) = serde_json::from_str::<Value>(&json).map_err(|e| SinkError::Parquet {
            context: format!("reading search document {id}"),
            message: e.to_string(),
            io: false,
        })?
        else {
            continue;
        };
        let kind = d.get("kind").and_then(Value::as_str).unwrap_or_default();
        let names_product = d.get("product_id").and_then(Value::as_str).is_some_and(|p| !p.is_empty());
        if kind == PENDING_STOCK && names_product {
            continue; // a pointer to the product, which holds the stock
        }
        d.remove("version");
        if let Some(Value::Object(src)) = d.get_mut("src") {
            src.retain(|key, _| key.rsplit_once('/').is_some_and(|(topic, _)| reproducible_offsets(topic)));
        }
        d.insert("_id".to_string(), Value::from(id));
        rows.push(d);
    }
    Ok(Some(lines(rows)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let v: Value = serde_json::from_str(r#"{"b":1,"a":{"d":[{"z":1,"y":2}],"c":"x"}}"#).unwrap();
        assert_eq!(canonical(&v), r#"{"a":{"c":"x","d":[{"y":2,"z":1}]},"b":1}"#);
    }

    #[test]
    fn only_storefront_offsets_are_reproducible() {
        assert!(reproducible_offsets("storefront.orders"));
        assert!(reproducible_offsets("storefront.catalog"));
        for t in ["orders.lifecycle", "inventory.levels", "inventory.reservations", "fraud.scores", "sales.vendor_minute", "recommendations.updates", "custom"] {
            assert!(!reproducible_offsets(t), "{t}");
        }
    }

    #[test]
    fn a_history_row_of_a_derived_topic_loses_its_offset_and_keeps_its_partition() {
        let row = |topic: &str| -> Map<String, Value> {
            serde_json::from_value(serde_json::json!({"topic": topic, "partition_no": 2, "offset_no": 7})).unwrap()
        };
        let mut derived = row("orders.lifecycle");
        read_model_left_out("order_events", &mut derived);
        assert_eq!(Value::Object(derived), serde_json::json!({"topic": "orders.lifecycle", "partition_no": 2}));
        let mut source = row("storefront.orders");
        read_model_left_out("order_events", &mut source);
        assert_eq!(source.get("offset_no"), Some(&Value::from(7)));
    }

    #[test]
    fn differences_name_the_table_and_the_rows_on_each_side() {
        let a = BTreeMap::from([("t".to_string(), vec!["a".to_string(), "b".to_string()]), ("u".to_string(), vec![])]);
        let b = BTreeMap::from([("t".to_string(), vec!["a".to_string(), "c".to_string()]), ("u".to_string(), vec![])]);
        assert!(differences(&a, &a).is_empty());
        let d = differences(&a, &b);
        assert_eq!(d.len(), 1);
        assert!(d[0].starts_with("t: 1 rows only in the first, 1 only in the second"), "{d:?}");
        assert!(d[0].contains("- b") && d[0].contains("+ c"), "{d:?}");
    }
}
