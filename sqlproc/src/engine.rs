//! DataFusion over a window's rows: the input tables (one per event type, plus
//! `window_start`/`window_end`), the reference tables and the `to_base` money rule, then the
//! query; results come back as rows of [`Cell`]s in a deterministic order.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::datasource::MemTable;
use datafusion::execution::{SessionState, TaskContext};
use datafusion::logical_expr::{ColumnarValue, LogicalPlan, Volatility, create_udf};
use datafusion::prelude::{SessionConfig, SessionContext};
use parking_lot::RwLock;
use serde_json::Value;
use storeflow_avro::EventType;
use storeflow_avro::money::Rates;

use crate::header::{Query, SqlError, table_name};
use crate::types::{Cell, OutColumn, cells, event_schema, out_columns};

/// The window columns every input row carries.
pub const WINDOW_START: &str = "window_start";
/// See [`WINDOW_START`].
pub const WINDOW_END: &str = "window_end";

/// One input table.
#[derive(Clone, Debug)]
pub struct Table {
    /// Its name in the query.
    pub name: String,
    /// Its columns.
    pub schema: SchemaRef,
}

/// A query ready to run over rows.
pub struct Engine {
    /// The query.
    pub query: Arc<Query>,
    /// The input tables, one per input type (in the order of `query.inputs`).
    pub inputs: Vec<Table>,
    /// The reference tables fed by events (in the order of `query.references`).
    pub references: Vec<Table>,
    /// The reference tables read from files at start (in the order of `query.files`).
    pub files: Vec<Table>,
    /// The output's columns (with `event_id` and `occurred_at`).
    pub out: Vec<OutColumn>,
    /// The query's own output columns (what it selects), in order.
    pub selected: Vec<String>,
    /// Exchange rates for `to_base`, fed from `storefront.exchange_rates`.
    pub rates: Arc<RwLock<Rates>>,
    ctx: SessionContext,
    rt: tokio::runtime::Runtime,
    /// The tables as DataFusion sees them (inputs, then references): a run swaps in its
    /// rows and reuses the plan.
    tables: Vec<Arc<MemTable>>,
    /// The query, parsed, analysed and optimised once (over `tables`).
    plan: LogicalPlan,
    state: SessionState,
    task: Arc<TaskContext>,
}

fn with_window(schema: Schema) -> Schema {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    for n in [WINDOW_START, WINDOW_END] {
        if !fields.iter().any(|f| f.name() == n) {
            fields.push(Field::new(n, DataType::Timestamp(TimeUnit::Millisecond, None), false));
        }
    }
    Schema::new(fields)
}

/// Rows (JSON objects) as a batch of `schema`.
pub fn batch_of(schema: &SchemaRef, rows: &[Value]) -> Result<RecordBatch, String> {
    if rows.is_empty() {
        return Ok(RecordBatch::new_empty(schema.clone()));
    }
    let mut decoder = arrow::json::ReaderBuilder::new(schema.clone()).build_decoder().map_err(|e| e.to_string())?;
    decoder.serialize(rows).map_err(|e| e.to_string())?;
    Ok(decoder.flush().map_err(|e| e.to_string())?.unwrap_or_else(|| RecordBatch::new_empty(schema.clone())))
}

/// Maps a DataFusion error about the SQL to the file's line and column.
fn sql_error(q: &Query, e: &datafusion::error::DataFusionError) -> SqlError {
    let message = e.to_string();
    let mut line = q.sql_line;
    let mut column = 0;
    if let Some(at) = message.find("Line: ") {
        let rest = &message[at + 6..];
        let l: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let (Ok(l), Some(c)) = (l.parse::<usize>(), rest.find("Column: ")) {
            let c: String = rest[c + 8..].chars().take_while(char::is_ascii_digit).collect();
            line = q.sql_line + l - 1;
            column = c.parse().unwrap_or(0);
        }
    } else if let Some(at) = message.find("No field named ") {
        // Point at the first use of the unknown name.
        let name: String = message[at + 15..].trim_start_matches(['"', '\'']).chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.').collect();
        let name = name.trim_end_matches('.');
        let bare = name.rsplit('.').next().unwrap_or(name).to_string();
        if !bare.is_empty() {
            for (i, l) in q.sql.lines().enumerate() {
                if let Some(c) = find_word(&l.to_lowercase(), &bare.to_lowercase()) {
                    line = q.sql_line + i;
                    column = c + 1;
                    break;
                }
            }
        }
    }
    SqlError { path: q.path.clone(), line, column, message }
}

impl Engine {
    /// Plans `query` against the contract: every table and column it names must exist, and
    /// its output must map to Avro. `base` is the currency `to_base` converts to.
    pub fn new(query: Arc<Query>, base: &str) -> Result<Engine, SqlError> {
        let whole = |message: String| SqlError { path: query.path.clone(), line: 0, column: 0, message };
        let table = |t: &EventType, window: bool| -> Result<Table, SqlError> {
            let s = event_schema(t.schema).map_err(|e| whole(format!("{}: {e}", t.name)))?;
            Ok(Table { name: table_name(t), schema: Arc::new(if window { with_window(s) } else { s }) })
        };
        let inputs = query.inputs.iter().map(|t| table(t, true)).collect::<Result<Vec<_>, _>>()?;
        for (t, tab) in query.inputs.iter().zip(&inputs) {
            let check = |col: &str, what: &str| {
                if tab.schema.field_with_name(col).is_err() {
                    Err(whole(format!("{} has no column `{col}` (the {what}); its columns: {}", t.name, names(&tab.schema))))
                } else {
                    Ok(())
                }
            };
            check(&query.time, "`time:` of the header")?;
            if let Some(by) = &query.partition_by {
                check(by, "`partition by:` or the session window's `by`")?;
            }
        }
        let mut references = Vec::new();
        for r in &query.references {
            let t = table(r.types[0], false)?;
            if t.schema.field_with_name(&r.by).is_err() {
                return Err(whole(format!("the reference table {} has no column `{}`", r.table, r.by)));
            }
            references.push(Table { name: r.table.clone(), schema: t.schema });
        }
        let rates = Arc::new(RwLock::new(Rates::new(base)));
        let rt = tokio::runtime::Builder::new_current_thread().build().map_err(|e| whole(format!("starting DataFusion's runtime: {e}")))?;
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1).with_information_schema(false));
        ctx.register_udf(to_base_udf(rates.clone()));
        ctx.register_udf(base_currency_udf(base));
        let mut tables = Vec::new();
        for t in inputs.iter().chain(&references) {
            let mem = Arc::new(MemTable::try_new(t.schema.clone(), vec![Vec::new()]).map_err(|e| whole(format!("table {}: {e}", t.name)))?);
            ctx.register_table(t.name.as_str(), mem.clone()).map_err(|e| whole(format!("table {}: {e}", t.name)))?;
            tables.push(mem);
        }
        let mut files = Vec::new();
        for f in &query.files {
            let at = |message: String| SqlError { path: query.path.clone(), line: f.line, column: 0, message: format!("the reference table {} ({}): {message}", f.table, f.path.display()) };
            let table = rt.block_on(read_file(&ctx, &f.path)).map_err(at)?;
            ctx.register_table(f.table.as_str(), Arc::new(table.1)).map_err(|e| at(e.to_string()))?;
            files.push(Table { name: f.table.clone(), schema: table.0 });
        }
        let df = rt.block_on(ctx.sql(&query.sql)).map_err(|e| sql_error(&query, &e))?;
        let schema = df.schema().as_arrow().clone();
        let state = ctx.state();
        let plan = state.optimize(df.logical_plan()).map_err(|e| sql_error(&query, &e))?;
        let task = Arc::new(TaskContext::from(&state));
        let mut engine = Engine { query: query.clone(), inputs, references, files, out: Vec::new(), selected: Vec::new(), rates, ctx, rt, tables, plan, state, task };
        engine.out = out_columns(&schema).map_err(|m| SqlError { path: query.path.clone(), line: query.sql_line, column: 0, message: m })?;
        engine.selected = schema.fields().iter().map(|f| f.name().clone()).collect();
        for k in &query.key {
            if !engine.selected.contains(k) {
                return Err(whole(format!("the key column `{k}` is not in the query's output ({})", engine.selected.join(", "))));
            }
        }
        Ok(engine)
    }

    /// The plan, as DataFusion explains it.
    pub fn explain(&self) -> Result<String, SqlError> {
        let text = self.rt.block_on(async {
            let df = self.ctx.sql(&format!("EXPLAIN {}", self.query.sql)).await?;
            let batches = df.collect().await?;
            datafusion::arrow::util::pretty::pretty_format_batches(&batches).map(|t| t.to_string()).map_err(Into::into)
        });
        text.map_err(|e: datafusion::error::DataFusionError| sql_error(&self.query, &e))
    }

    /// Runs the query over `inputs` (one batch per input table, of its schema, window
    /// columns included) and `refs` (one batch per reference table): its output rows, the
    /// selected columns in order, sorted so that the same rows in any order give the same
    /// output.
    pub fn run(&self, inputs: Vec<RecordBatch>, refs: &[RecordBatch]) -> Result<Vec<Vec<Cell>>, String> {
        for ((mem, t), batch) in self.tables.iter().zip(self.inputs.iter().chain(&self.references)).zip(inputs.into_iter().chain(refs.iter().cloned())) {
            let mut rows = mem.batches[0].try_write().map_err(|_| format!("table {} is in use", t.name))?;
            *rows = vec![batch];
        }
        // The plan is the same for every run: only the physical plan (which snapshots the
        // tables' rows) is made again.
        let batches = self.rt.block_on(async {
            let plan = self.state.query_planner().create_physical_plan(&self.plan, &self.state).await?;
            datafusion::physical_plan::collect(plan, self.task.clone()).await
        });
        for mem in &self.tables {
            if let Ok(mut rows) = mem.batches[0].try_write() {
                rows.clear();
            }
        }
        let batches = batches.map_err(|e| e.to_string())?;
        let query_cols: Vec<&OutColumn> = self.out.iter().filter(|c| self.selected.contains(&c.name)).collect();
        let mut rows = Vec::new();
        for b in &batches {
            let columns: Vec<Vec<Cell>> = query_cols.iter().enumerate().map(|(i, c)| cells(b.column(i), c.ty)).collect::<Result<_, _>>()?;
            for r in 0..b.num_rows() {
                rows.push(columns.iter().map(|c| c[r].clone()).collect::<Vec<Cell>>());
            }
        }
        rows.sort_by_cached_key(|r| format!("{r:?}"));
        Ok(rows)
    }
}

/// A CSV (with a header line; column types inferred) or Parquet file, read in full into memory.
async fn read_file(ctx: &SessionContext, path: &std::path::Path) -> Result<(SchemaRef, MemTable), String> {
    use datafusion::prelude::{CsvReadOptions, ParquetReadOptions};
    if !path.is_file() {
        return Err("no such file".into());
    }
    let name = path.to_str().ok_or("the path is not UTF-8")?;
    let parquet = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    // Whatever the case of its extension: DataFusion checks it against the options'.
    let ext = path.extension().and_then(|e| e.to_str()).map(|e| format!(".{e}")).unwrap_or_default();
    let df = if parquet {
        ctx.read_parquet(name, ParquetReadOptions::default().file_extension(&ext)).await
    } else {
        ctx.read_csv(name, CsvReadOptions::new().has_header(true).file_extension(&ext)).await
    }
    .map_err(|e| e.to_string())?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await.map_err(|e| e.to_string())?;
    let table = MemTable::try_new(schema.clone(), vec![batches]).map_err(|e| e.to_string())?;
    Ok((schema, table))
}

fn names(s: &Schema) -> String {
    s.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
}

/// `to_base(amount_minor BIGINT, currency VARCHAR, at TIMESTAMP) → BIGINT`: the shared money
/// rule (`storeflow_avro::money::Rates::to_base`, what the sales processor uses), null when no
/// rate is known.
fn to_base_udf(rates: Arc<RwLock<Rates>>) -> datafusion::logical_expr::ScalarUDF {
    let fun = Arc::new(move |args: &[ColumnarValue]| -> datafusion::error::Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(args)?;
        let amounts = arrow::compute::cast(&arrays[0], &DataType::Int64)?;
        let currencies = arrow::compute::cast(&arrays[1], &DataType::Utf8)?;
        let at = arrow::compute::cast(&arrays[2], &DataType::Int64)?;
        use arrow::array::{Array, AsArray};
        let (amounts, currencies, at) = (amounts.as_primitive::<arrow::datatypes::Int64Type>(), currencies.as_string::<i32>(), at.as_primitive::<arrow::datatypes::Int64Type>());
        let rates = rates.read();
        let out: Int64Array = (0..amounts.len())
            .map(|i| {
                if amounts.is_null(i) || currencies.is_null(i) || at.is_null(i) {
                    None
                } else {
                    rates.to_base(amounts.value(i), currencies.value(i), at.value(i))
                }
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
    });
    create_udf(
        "to_base",
        vec![DataType::Int64, DataType::Utf8, DataType::Timestamp(TimeUnit::Millisecond, None)],
        DataType::Int64,
        Volatility::Stable,
        fun,
    )
}

/// `base_currency() → VARCHAR`: the currency `to_base` converts to.
fn base_currency_udf(base: &str) -> datafusion::logical_expr::ScalarUDF {
    let base = base.to_string();
    let fun = Arc::new(move |_args: &[ColumnarValue]| -> datafusion::error::Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(datafusion::scalar::ScalarValue::Utf8(Some(base.clone()))))
    });
    create_udf("base_currency", vec![], DataType::Utf8, Volatility::Immutable, fun)
}

/// Where `word` starts in `line` as a whole word.
fn find_word(line: &str, word: &str) -> Option<usize> {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    line.match_indices(word).map(|(i, _)| i).find(|&i| {
        !line[..i].chars().next_back().is_some_and(is_word) && !line[i + word.len()..].chars().next().is_some_and(is_word)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_column_is_reported_at_its_line_and_column() {
        let q = Query::parse(std::path::Path::new("x.sql"), "-- from: OrderPlaced\n-- to: sql.x\n-- key: n\nSELECT order_id AS n,\n  nope\nFROM order_placed").unwrap();
        let e = Engine::new(Arc::new(q), "EUR").err().expect("nope is not a column");
        assert_eq!((e.line, e.column), (5, 3), "{e}");
    }

    #[test]
    fn a_parse_error_is_reported_at_its_line_in_the_file() {
        let q = Query::parse(std::path::Path::new("x.sql"), "-- from: OrderPlaced\n-- to: sql.x\n-- key: n\n\nSELECT order_id AS n\nFROM order_placed WHERE ) = 1").unwrap();
        let e = Engine::new(Arc::new(q), "EUR").err().expect("does not parse");
        assert_eq!(e.line, 6, "{e}");
    }

    #[test]
    fn a_key_that_is_not_an_output_column_is_refused() {
        let q = Query::parse(std::path::Path::new("x.sql"), "-- from: OrderPlaced\n-- to: sql.x\n-- key: category\nSELECT order_id FROM order_placed").unwrap();
        let e = Engine::new(Arc::new(q), "EUR").err().expect("no category");
        assert!(e.message.contains("key column `category`"), "{e}");
    }
}
