//! The embedded twin of ClickHouse: Arrow record batches in Parquet files under
//! `<data_dir>/analytics/<table>/`, queried with DataFusion (`sql/analytics/*.datafusion.sql`).
//!
//! **Writes.** Each write of a table is one new file, `part-<seq>.parquet`, written under a
//! temporary name, `fsync`ed and renamed into place, so a file is either whole or absent. Its
//! footer holds the highest source offset per `topic/partition` among its rows
//! (`storeflow.marks`): the sink's idempotency filter reads those at start-up instead of
//! scanning the data. The twin enforces the same CHECK constraints as the ClickHouse DDL
//! ([`FactRow::check`]) and rejects a violating write as a whole.
//!
//! **Upgrades.** A file written by an older release whose table has gained or lost columns
//! since (the versions that replaced event time) is rewritten at open in the current schema
//! ([`upgrade_batch`]): the new file names the old one in `storeflow.replaces`, so a crash
//! in between leaves no duplicate.
//!
//! **Compaction.** Once a table has 32 files, they are merged into one whose footer lists
//! the files it replaces (`storeflow.replaces`); the sources are deleted after the merged
//! file is in place. A crash in between leaves both, and opening the store deletes the
//! replaced files, so no row is ever counted twice. Queries hold a read lock that the
//! deletion waits for.
//!
//! **Rollups.** DataFusion answers the dashboards from the fact tables directly (the
//! ClickHouse side reads its materialized rollups); both give the same numbers, which the
//! integration tests check.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int8Type, Int16Type, Int32Type, Int64Type, TimeUnit, UInt8Type, UInt16Type, UInt32Type, UInt64Type};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::clickhouse::Param;
use super::rows::{FactRow, schemas, upgrade_batch};
use crate::{Result, SinkError};

const MARKS_KEY: &str = "storeflow.marks";
const REPLACES_KEY: &str = "storeflow.replaces";
/// Files per table that trigger a compaction.
pub const COMPACT_AT: usize = 32;

#[derive(Debug, Clone)]
struct FileInfo {
    name: String,
    marks: HashMap<String, u64>,
}

#[derive(Debug, Default)]
struct TableFiles {
    files: Vec<FileInfo>,
    next_seq: u64,
}

/// Parquet files per table, with their high-water marks.
#[derive(Debug)]
pub struct ParquetStore {
    dir: PathBuf,
    tables: parking_lot::Mutex<HashMap<&'static str, TableFiles>>,
    files_lock: tokio::sync::RwLock<()>,
}

fn pq_err(context: String) -> impl FnOnce(parquet::errors::ParquetError) -> SinkError {
    move |e| {
        let io = matches!(e, parquet::errors::ParquetError::External(_));
        SinkError::Parquet { context, message: e.to_string(), io }
    }
}

/// What a file's footer says.
struct Footer {
    /// Highest source offset per `topic/partition`.
    marks: HashMap<String, u64>,
    /// Files a compaction or an upgrade replaced with this one.
    replaces: Vec<String>,
    /// Column names, in order.
    columns: Vec<String>,
}

fn read_footer(path: &Path) -> Result<Footer> {
    let f = File::open(path).map_err(SinkError::io(format!("opening {}", path.display())))?;
    let b = ParquetRecordBatchReaderBuilder::try_new(f).map_err(pq_err(format!("reading the footer of {}", path.display())))?;
    let kv = b.metadata().file_metadata().key_value_metadata().cloned().unwrap_or_default();
    let get = |k: &str| kv.iter().find(|x| x.key == k).and_then(|x| x.value.clone());
    let marks = get(MARKS_KEY).and_then(|v| serde_json::from_str(&v).ok()).unwrap_or_default();
    let replaces = get(REPLACES_KEY).and_then(|v| serde_json::from_str(&v).ok()).unwrap_or_default();
    let columns = b.schema().fields().iter().map(|f| f.name().clone()).collect();
    Ok(Footer { marks, replaces, columns })
}

fn read_batches(path: &Path) -> Result<Vec<RecordBatch>> {
    let file = File::open(path).map_err(SinkError::io(format!("opening {}", path.display())))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).and_then(|b| b.build()).map_err(pq_err(format!("reading {}", path.display())))?;
    reader.map(|b| b.map_err(SinkError::parquet(format!("reading {}", path.display())))).collect()
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

impl ParquetStore {
    /// Opens the store under `dir`: removes temporary files and files a compaction
    /// replaced, and reads every footer.
    pub fn open(dir: &Path) -> Result<ParquetStore> {
        let mut tables = HashMap::new();
        let mut outdated: Vec<(&'static str, String)> = Vec::new();
        for (table, schema) in schemas() {
            let current: Vec<&String> = schema.fields().iter().map(|f| f.name()).collect();
            let tdir = dir.join(table);
            std::fs::create_dir_all(&tdir).map_err(SinkError::io(format!("creating {}", tdir.display())))?;
            let mut names: Vec<String> = Vec::new();
            for e in std::fs::read_dir(&tdir).map_err(SinkError::io(format!("listing {}", tdir.display())))? {
                let e = e.map_err(SinkError::io(format!("listing {}", tdir.display())))?;
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".tmp") {
                    let _ = std::fs::remove_file(e.path());
                } else if name.ends_with(".parquet") {
                    names.push(name);
                }
            }
            names.sort();
            let mut files = Vec::new();
            let mut replaced: Vec<String> = Vec::new();
            for name in &names {
                let Footer { marks, replaces, columns } = read_footer(&tdir.join(name))?;
                replaced.extend(replaces);
                if columns.iter().ne(current.iter().copied()) {
                    outdated.push((table, name.clone()));
                }
                files.push(FileInfo { name: name.clone(), marks });
            }
            // A compaction that crashed after writing its result: its sources are duplicates.
            files.retain(|f| {
                if replaced.contains(&f.name) {
                    let _ = std::fs::remove_file(tdir.join(&f.name));
                    false
                } else {
                    true
                }
            });
            let next_seq = names.iter().filter_map(|n| n.strip_prefix("part-")?.strip_suffix(".parquet")?.parse::<u64>().ok()).max().map_or(0, |m| m + 1);
            tables.insert(table, TableFiles { files, next_seq });
        }
        let store = ParquetStore { dir: dir.to_path_buf(), tables: parking_lot::Mutex::new(tables), files_lock: tokio::sync::RwLock::new(()) };
        for (table, name) in outdated {
            store.upgrade_file(table, &name)?;
        }
        Ok(store)
    }

    /// Rewrites a file of an older release in the table's current schema.
    fn upgrade_file(&self, table: &'static str, name: &str) -> Result<()> {
        let Some(info) = self.tables.lock().get(table).and_then(|t| t.files.iter().find(|f| f.name == name).cloned()) else {
            return Ok(()); // replaced by a compaction already
        };
        let tdir = self.dir.join(table);
        let schema = schemas().into_iter().find(|(t, _)| *t == table).map(|(_, s)| s).ok_or_else(|| SinkError::Parquet {
            context: format!("upgrading {name}"),
            message: format!("unknown table {table}"),
            io: false,
        })?;
        let batches = read_batches(&tdir.join(name))?.iter().map(|b| upgrade_batch(table, &schema, b)).collect::<Result<Vec<_>>>()?;
        if batches.is_empty() {
            return Ok(());
        }
        tracing::info!(table, file = name, "rewriting a Parquet file of an older release in the current schema");
        let upgraded = self.write_file(table, &batches, &info.marks, &[name.to_string()])?;
        {
            let mut t = self.tables.lock();
            let tf = t.entry(table).or_default();
            tf.files.retain(|f| f.name != name);
            tf.files.push(upgraded);
        }
        let _ = std::fs::remove_file(tdir.join(name));
        sync_dir(&tdir);
        Ok(())
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Files of a table now.
    pub fn file_count(&self, table: &str) -> usize {
        self.tables.lock().get(table).map_or(0, |t| t.files.len())
    }

    fn write_file(&self, table: &'static str, batches: &[RecordBatch], marks: &HashMap<String, u64>, replaces: &[String]) -> Result<FileInfo> {
        let seq = {
            let mut t = self.tables.lock();
            let tf = t.entry(table).or_default();
            tf.next_seq += 1;
            tf.next_seq - 1
        };
        let tdir = self.dir.join(table);
        let name = format!("part-{seq:012}.parquet");
        let tmp = tdir.join(format!(".part-{seq:012}.tmp"));
        let Some(schema) = batches.first().map(|b| b.schema()) else {
            return Err(SinkError::Parquet { context: format!("writing {table}"), message: "no rows".into(), io: false });
        };
        let mut kv = vec![KeyValue::new(MARKS_KEY.to_string(), serde_json::to_string(marks).unwrap_or_default())];
        if !replaces.is_empty() {
            kv.push(KeyValue::new(REPLACES_KEY.to_string(), serde_json::to_string(replaces).unwrap_or_default()));
        }
        let props = WriterProperties::builder().set_compression(Compression::SNAPPY).set_key_value_metadata(Some(kv)).build();
        let file = File::create(&tmp).map_err(SinkError::io(format!("creating {}", tmp.display())))?;
        let mut w = ArrowWriter::try_new(file, schema, Some(props)).map_err(pq_err(format!("writing {}", tmp.display())))?;
        for b in batches {
            w.write(b).map_err(pq_err(format!("writing {}", tmp.display())))?;
        }
        let file = w.into_inner().map_err(pq_err(format!("finishing {}", tmp.display())))?;
        file.sync_all().map_err(SinkError::io(format!("syncing {}", tmp.display())))?;
        std::fs::rename(&tmp, tdir.join(&name)).map_err(SinkError::io(format!("renaming {}", tmp.display())))?;
        sync_dir(&tdir);
        Ok(FileInfo { name, marks: marks.clone() })
    }

    /// Writes `rows` as one new file of their table; durable when this returns. Rows that
    /// break the table's CHECK constraints reject the whole write.
    pub async fn insert<R: FactRow>(&self, rows: &[R]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        for r in rows {
            r.check().map_err(SinkError::Rejected)?;
        }
        let mut marks: HashMap<String, u64> = HashMap::new();
        for r in rows {
            let (t, p, o) = r.source();
            let e = marks.entry(format!("{t}/{p}")).or_insert(0);
            *e = (*e).max(o);
        }
        let batch = R::to_batch(rows)?;
        let info = self.write_file(R::TABLE, &[batch], &marks, &[])?;
        let n = {
            let mut t = self.tables.lock();
            let tf = t.entry(R::TABLE).or_default();
            tf.files.push(info);
            tf.files.len()
        };
        if n >= COMPACT_AT {
            self.compact(R::TABLE).await?;
        }
        Ok(())
    }

    /// Merges every file of `table` into one.
    pub async fn compact(&self, table: &'static str) -> Result<()> {
        let files: Vec<FileInfo> = self.tables.lock().get(table).map(|t| t.files.clone()).unwrap_or_default();
        if files.len() < 2 {
            return Ok(());
        }
        let tdir = self.dir.join(table);
        let mut batches = Vec::new();
        let mut marks: HashMap<String, u64> = HashMap::new();
        for f in &files {
            batches.extend(read_batches(&tdir.join(&f.name))?);
            for (k, v) in &f.marks {
                let e = marks.entry(k.clone()).or_insert(0);
                *e = (*e).max(*v);
            }
        }
        let names: Vec<String> = files.iter().map(|f| f.name.clone()).collect();
        let merged = self.write_file(table, &batches, &marks, &names)?;
        let _guard = self.files_lock.write().await;
        {
            let mut t = self.tables.lock();
            let tf = t.entry(table).or_default();
            tf.files.retain(|f| !names.contains(&f.name));
            tf.files.insert(0, merged);
        }
        for n in &names {
            let _ = std::fs::remove_file(tdir.join(n));
        }
        sync_dir(&tdir);
        Ok(())
    }

    /// The highest source offset `table` holds per `(topic, partition)`.
    pub fn marks(&self, table: &str) -> HashMap<(String, u32), u64> {
        let mut out = HashMap::new();
        if let Some(t) = self.tables.lock().get(table) {
            for f in &t.files {
                for (k, v) in &f.marks {
                    if let Some((topic, p)) = k.rsplit_once('/')
                        && let Ok(p) = p.parse::<u32>()
                    {
                        let e = out.entry((topic.to_string(), p)).or_insert(0);
                        *e = (*e).max(*v);
                    }
                }
            }
        }
        out
    }

    /// Runs a question (`$name` parameters) over the tables and parses each row from JSON.
    pub async fn query<T: DeserializeOwned>(&self, sql: &str, params: &[(&str, Param)]) -> Result<Vec<T>> {
        let _guard = self.files_lock.read().await;
        let ctx = SessionContext::new();
        for (table, schema) in schemas() {
            let path = format!("{}/", self.dir.join(table).display());
            let url = ListingTableUrl::parse(&path).map_err(SinkError::parquet(format!("registering {table}")))?;
            let opts = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
            let config = ListingTableConfig::new(url).with_listing_options(opts).with_schema(schema);
            let provider = ListingTable::try_new(config).map_err(SinkError::parquet(format!("registering {table}")))?;
            ctx.register_table(table, Arc::new(provider)).map_err(SinkError::parquet(format!("registering {table}")))?;
        }
        let values: Vec<(&str, ScalarValue)> = params
            .iter()
            .map(|(n, p)| {
                let v = match p {
                    Param::Int(v) => ScalarValue::Int64(Some(*v)),
                    Param::Time(v) => ScalarValue::TimestampMillisecond(Some(*v), Some("UTC".into())),
                    Param::Text(v) => ScalarValue::Utf8(Some(v.clone())),
                };
                (*n, v)
            })
            .collect();
        let mut df = ctx.sql(sql).await.map_err(SinkError::parquet("planning a DataFusion query"))?;
        if !values.is_empty() {
            df = df.with_param_values(values).map_err(SinkError::parquet("binding DataFusion parameters"))?;
        }
        let batches = df.collect().await.map_err(SinkError::parquet("running a DataFusion query"))?;
        let mut out = Vec::new();
        for b in &batches {
            for row in batch_to_json(b)? {
                out.push(serde_json::from_value(Value::Object(row)).map_err(SinkError::parquet("parsing a DataFusion answer"))?);
            }
        }
        Ok(out)
    }
}

/// The rows of a record batch as JSON objects (the types the questions return).
pub fn batch_to_json(b: &RecordBatch) -> Result<Vec<Map<String, Value>>> {
    let mut rows = vec![Map::new(); b.num_rows()];
    for (c, field) in b.schema().fields().iter().enumerate() {
        let a = b.column(c);
        for (r, row) in rows.iter_mut().enumerate() {
            let v = if a.is_null(r) { Value::Null } else { json_value(a.as_ref(), r)? };
            row.insert(field.name().clone(), v);
        }
    }
    Ok(rows)
}

fn json_value(a: &dyn Array, r: usize) -> Result<Value> {
    Ok(match a.data_type() {
        DataType::Utf8 => Value::from(a.as_string::<i32>().value(r)),
        DataType::LargeUtf8 => Value::from(a.as_string::<i64>().value(r)),
        DataType::Utf8View => Value::from(a.as_string_view().value(r)),
        DataType::Boolean => Value::from(a.as_boolean().value(r)),
        DataType::Int8 => Value::from(a.as_primitive::<Int8Type>().value(r)),
        DataType::Int16 => Value::from(a.as_primitive::<Int16Type>().value(r)),
        DataType::Int32 => Value::from(a.as_primitive::<Int32Type>().value(r)),
        DataType::Int64 => Value::from(a.as_primitive::<Int64Type>().value(r)),
        DataType::UInt8 => Value::from(a.as_primitive::<UInt8Type>().value(r)),
        DataType::UInt16 => Value::from(a.as_primitive::<UInt16Type>().value(r)),
        DataType::UInt32 => Value::from(a.as_primitive::<UInt32Type>().value(r)),
        DataType::UInt64 => Value::from(a.as_primitive::<UInt64Type>().value(r)),
        DataType::Float32 => Value::from(f64::from(a.as_primitive::<arrow::datatypes::Float32Type>().value(r))),
        DataType::Float64 => Value::from(a.as_primitive::<arrow::datatypes::Float64Type>().value(r)),
        DataType::Timestamp(TimeUnit::Millisecond, _) => Value::from(a.as_primitive::<arrow::datatypes::TimestampMillisecondType>().value(r)),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            Value::from(a.as_primitive::<arrow::datatypes::TimestampMicrosecondType>().value(r) / 1_000)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            Value::from(a.as_primitive::<arrow::datatypes::TimestampNanosecondType>().value(r) / 1_000_000)
        }
        DataType::Timestamp(TimeUnit::Second, _) => Value::from(a.as_primitive::<arrow::datatypes::TimestampSecondType>().value(r) * 1_000),
        DataType::Date32 => Value::from(i64::from(a.as_primitive::<arrow::datatypes::Date32Type>().value(r)) * 86_400_000),
        DataType::Decimal128(_, s) => {
            let v = a.as_primitive::<arrow::datatypes::Decimal128Type>().value(r);
            Value::from(v as f64 / 10f64.powi(i32::from(*s)))
        }
        other => {
            return Err(SinkError::Parquet { context: "reading a DataFusion answer".into(), message: format!("unsupported type {other}"), io: false });
        }
    })
}

/// The record batches `table` holds under `dir` (the store's folder, `<data_dir>/analytics`),
/// in the current schema, as [`ParquetStore::open`] would see them — without changing
/// anything: temporary files are skipped rather than removed, files that a compaction or an
/// upgrade replaced are skipped rather than deleted, and files of an older release are
/// upgraded in memory rather than rewritten. For tools that read a store no sink has open
/// ([`crate::snapshot`]). A table without a folder has no rows.
pub fn read_table(dir: &Path, table: &str) -> Result<Vec<RecordBatch>> {
    let Some((_, schema)) = schemas().into_iter().find(|(t, _)| *t == table) else {
        return Err(SinkError::Parquet { context: format!("reading {table}"), message: format!("unknown table {table}"), io: false });
    };
    let tdir = dir.join(table);
    let listing = match std::fs::read_dir(&tdir) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(SinkError::io(format!("listing {}", tdir.display()))(e)),
    };
    let mut names: Vec<String> = Vec::new();
    for e in listing {
        let e = e.map_err(SinkError::io(format!("listing {}", tdir.display())))?;
        let name = e.file_name().to_string_lossy().into_owned();
        // `.part-<seq>.tmp`: a write that never finished.
        if name.ends_with(".parquet") && !name.starts_with('.') {
            names.push(name);
        }
    }
    names.sort();
    let current: Vec<&String> = schema.fields().iter().map(|f| f.name()).collect();
    let mut footers = Vec::with_capacity(names.len());
    let mut replaced: Vec<String> = Vec::new();
    for name in &names {
        let footer = read_footer(&tdir.join(name))?;
        replaced.extend(footer.replaces.iter().cloned());
        footers.push(footer);
    }
    let mut out = Vec::new();
    for (name, footer) in names.iter().zip(&footers) {
        if replaced.contains(name) {
            continue; // a compaction or upgrade that crashed before deleting its sources
        }
        let batches = read_batches(&tdir.join(name))?;
        if footer.columns.iter().eq(current.iter().copied()) {
            out.extend(batches);
        } else {
            for b in &batches {
                out.push(upgrade_batch(table, &schema, b)?);
            }
        }
    }
    Ok(out)
}

/// Row counts per table (for tests and `storeflow` reports).
pub fn count_rows(dir: &Path) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for (table, _) in schemas() {
        let mut n = 0u64;
        let tdir = dir.join(table);
        if let Ok(rd) = std::fs::read_dir(&tdir) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().ends_with(".parquet") {
                    let f = File::open(e.path()).map_err(SinkError::io(format!("opening {}", e.path().display())))?;
                    let b = ParquetRecordBatchReaderBuilder::try_new(f).map_err(pq_err(format!("reading {}", e.path().display())))?;
                    n += b.metadata().file_metadata().num_rows() as u64;
                }
            }
        }
        out.insert(table.to_string(), n);
    }
    Ok(out)
}
