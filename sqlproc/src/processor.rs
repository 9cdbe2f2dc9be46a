//! A SQL processor on the runtime: rows wait in a state store (behind the changelog) for
//! their window, a timer fires each window once every input has passed its end, and the
//! query runs over the window's rows; late rows within the lateness update their window
//! (it fires again), later ones go to the DLQ with the reason.
//!
//! Everything that depends on the records lives in the task's state: rows (`rows`, kept
//! until their last window is past its lateness) and sessions (`sessions`), so a SQL
//! processor survives SIGKILL and rebalance like any other, and its outputs commit in the
//! same transaction as its input offsets. What the processor keeps in memory — each pane's
//! rows decoded into Arrow, the reference tables as batches — is a cache of that state,
//! checked against it at every firing, never a source of results.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, TimestampMillisecondArray, UInt32Array};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use storeflow_avro::{Codec, Event, EventType};
use storeflow_processors::{Ctx, Flow, Input, ProcessError, Processor, Store, Timer, Wire};

use crate::engine::{Engine, WINDOW_END, WINDOW_START, batch_of};
use crate::header::{Query, Window, ms};
use crate::types::{Cell, OutType};

/// A record as bytes: what a SQL processor reads (any contract event) and writes (its own
/// output records, already encoded, and its inputs re-keyed for a session window).
#[derive(Clone, Debug)]
pub struct Raw {
    /// Topic it goes to (outputs).
    pub topic: String,
    /// Key (outputs).
    pub key: String,
    /// The Confluent-framed value.
    pub bytes: Vec<u8>,
    /// Event time (outputs).
    pub time: i64,
    /// Type name, for the DLQ and metrics.
    pub kind: &'static str,
}

impl Wire for Raw {
    fn decode(_codec: &Codec, bytes: &[u8]) -> Result<Self, String> {
        Ok(Raw { topic: String::new(), key: String::new(), bytes: bytes.to_vec(), time: 0, kind: "raw" })
    }
    fn encode(&self, _codec: &Codec) -> Result<Vec<u8>, String> {
        Ok(self.bytes.clone())
    }
    fn topic(&self) -> String {
        self.topic.clone()
    }
    fn key(&self) -> String {
        self.key.clone()
    }
    fn time(&self) -> i64 {
        self.time
    }
    fn kind(&self) -> &'static str {
        self.kind
    }
}

/// Rows waiting for their windows: `<pane>|<time>|<cause>|<input>` (time windows) or
/// `s|<session key>|<time>|<cause>|<input>` (sessions) → the record's bytes.
const ROWS: Store<RowBytes> = Store::new("rows");

/// A stored row: the record's bytes, read and written as one blob (postcard encodes it
/// exactly as the `Vec<u8>` it replaced, so stores and changelogs written before read the
/// same; a `Vec<u8>` would be decoded byte by byte).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
struct RowBytes(#[serde(with = "serde_bytes")] Vec<u8>);
/// Sessions per session key, in start order.
const SESSIONS: Store<Vec<Session>> = Store::new("sessions");

/// One session of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    /// Its first event's time.
    start: i64,
    /// Its last event's time; it closes at `last + gap`.
    last: i64,
    /// Whether its current rows have been emitted.
    emitted: bool,
}

/// The output: where, under which schema.
pub struct Output {
    /// Schema id in the registry.
    pub id: u32,
    /// The parsed schema.
    pub schema: apache_avro::Schema,
    /// The record's name (`storeflow.sql.<Name>`'s short name), for headers and metrics.
    pub kind: &'static str,
}

/// A SQL processor.
pub struct SqlProcessor {
    engine: Engine,
    q: Arc<Query>,
    name: &'static str,
    codec: Arc<Codec>,
    out: Output,
    repartition: Option<String>,
    /// Reference tables: per table, the latest row per key.
    refs: Vec<BTreeMap<String, Value>>,
    /// The reference tables as batches, until a reference row changes.
    ref_batches: Option<Vec<RecordBatch>>,
    /// Decoded panes per (task, pane start): what a window's firing reuses instead of
    /// decoding its rows again. The state stays the truth: a firing scans the pane's keys
    /// and decodes only the rows the cache has not seen (a late row, or everything after a
    /// restart), so a cache out of step (a rewind, a rebalance) costs time, never a result.
    panes: BTreeMap<(u32, i64), Pane>,
}

/// One pane's rows, decoded: per input, the state keys of its rows (in key order) and the
/// rows as a batch of that input's table (window columns left at 0), in the same order.
struct Pane {
    inputs: Vec<(Vec<String>, RecordBatch)>,
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn permanent(e: impl std::fmt::Display) -> ProcessError {
    ProcessError::Permanent(e.to_string())
}

impl SqlProcessor {
    /// A processor for `engine`'s query, writing under `out`; `app` names its internal
    /// topic (a session window's re-keying).
    pub fn new(engine: Engine, codec: Arc<Codec>, out: Output, app: &str) -> SqlProcessor {
        let q = engine.query.clone();
        SqlProcessor {
            name: leak(q.name.clone()),
            repartition: q.repartition_topic(app),
            refs: vec![BTreeMap::new(); q.references.len()],
            ref_batches: None,
            panes: BTreeMap::new(),
            engine,
            codec,
            out,
            q,
        }
    }

    /// The query.
    pub fn query(&self) -> &Arc<Query> {
        &self.q
    }

    /// The engine (for `storeflow sql explain`).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// (size, slide) of a time window.
    fn sizes(&self) -> (i64, i64) {
        match self.q.window {
            Window::Batch { every } => (every, every),
            Window::Tumbling { size } => (size, size),
            Window::Hopping { size, slide } => (size, slide),
            Window::Session { gap, .. } => (gap, gap),
        }
    }

    fn time_of(&self, json: &Value, ty: &EventType) -> Result<i64, ProcessError> {
        json.get(&self.q.time).and_then(Value::as_i64).ok_or_else(|| permanent(format!("the {} has no time in `{}`", ty.name, self.q.time)))
    }

    /// Adds a row to its pane and sets the timers of the windows it belongs to.
    fn add_to_windows(&self, ctx: &mut Ctx<'_, Raw>, t: i64, row_key: &str, bytes: &[u8]) -> Result<(), ProcessError> {
        let (size, slide) = self.sizes();
        let lateness = self.q.lateness;
        let now = ctx.time();
        let pane = t.div_euclid(slide) * slide;
        let last_end = pane + size;
        if last_end + lateness <= now {
            return Err(late(t, now, lateness, last_end));
        }
        ctx.put_until(ROWS, &format!("{pane:020}|{row_key}"), &RowBytes(bytes.to_vec()), last_end + lateness + 1)?;
        let mut start = pane - size + slide;
        while start <= pane {
            let end = start + size;
            if end + lateness > now {
                ctx.set_timer(end.max(now), &format!("w|{start:020}"));
            }
            start += slide;
        }
        Ok(())
    }

    fn add_to_session(&self, ctx: &mut Ctx<'_, Raw>, key: &str, t: i64, row_key: &str, bytes: &[u8]) -> Result<(), ProcessError> {
        let Window::Session { gap, .. } = self.q.window else { unreachable!("only for session windows") };
        let lateness = self.q.lateness;
        let now = ctx.time();
        let mut sessions = ctx.get(SESSIONS, key)?.unwrap_or_default();
        let mut merged = Session { start: t, last: t, emitted: false };
        let mut kept = Vec::new();
        for s in sessions.drain(..) {
            if s.start - gap <= merged.last && merged.start <= s.last + gap {
                merged.start = merged.start.min(s.start);
                merged.last = merged.last.max(s.last);
            } else {
                kept.push(s);
            }
        }
        if merged.last + gap + lateness <= now {
            return Err(late(t, now, lateness, merged.last + gap));
        }
        kept.push(merged);
        kept.sort_by_key(|s| s.start);
        ctx.put(SESSIONS, key, &kept)?;
        ctx.put(ROWS, &format!("s|{key}|{row_key}"), &RowBytes(bytes.to_vec()))?;
        ctx.set_timer((merged.last + gap).max(now), &format!("s|{key}"));
        Ok(())
    }

    /// The rows of `prefixes` as one batch per input table, with their window columns.
    fn tables(&self, ctx: &mut Ctx<'_, Raw>, prefixes: &[String], window: (i64, i64), keep: impl Fn(i64) -> bool) -> Result<Vec<RecordBatch>, ProcessError> {
        let mut tables = vec![Vec::new(); self.q.inputs.len()];
        for p in prefixes {
            for (k, RowBytes(bytes)) in ctx.scan_prefix(ROWS, p)? {
                let (t, input) = row_of(&k[p.len()..]);
                if !keep(t) || input >= tables.len() {
                    continue;
                }
                tables[input].push(self.row_json(&bytes, window)?);
            }
        }
        tables.iter().zip(&self.engine.inputs).map(|(rows, t)| batch_of(&t.schema, rows).map_err(|e| permanent(format!("building table {}: {e}", t.name)))).collect()
    }

    /// A stored row as a JSON row of its table, with its window columns.
    fn row_json(&self, bytes: &[u8], window: (i64, i64)) -> Result<Value, ProcessError> {
        let event = self.codec.decode(bytes).map_err(permanent)?;
        let mut json = event.to_json();
        if let Value::Object(m) = &mut json {
            m.insert(WINDOW_START.into(), Value::from(window.0));
            m.insert(WINDOW_END.into(), Value::from(window.1));
        }
        Ok(json)
    }

    /// The rows of a time window (the panes starting at `panes`) as one batch per input
    /// table: each pane from the cache, brought up to date with the state.
    fn window_tables(&mut self, ctx: &mut Ctx<'_, Raw>, panes: &[i64], window: (i64, i64)) -> Result<Vec<RecordBatch>, ProcessError> {
        let task = ctx.partition();
        let (size, _) = self.sizes();
        // Panes whose rows have all expired (see `add_to_windows`) are not needed again.
        let now = ctx.time();
        let lateness = self.q.lateness;
        self.panes.retain(|&(p, start), _| p != task || start + size + lateness + 1 > now);
        let n = self.q.inputs.len();
        let mut parts: Vec<Vec<RecordBatch>> = vec![Vec::new(); n];
        for &start in panes {
            let prefix = format!("{start:020}|");
            let mut scanned: Vec<Vec<(String, Vec<u8>)>> = vec![Vec::new(); n];
            for (k, RowBytes(bytes)) in ctx.scan_prefix(ROWS, &prefix)? {
                let (_, input) = row_of(&k[prefix.len()..]);
                if input < n {
                    scanned[input].push((k, bytes));
                }
            }
            let cached = self.panes.remove(&(task, start));
            let mut pane = Pane { inputs: Vec::with_capacity(n) };
            for (i, rows) in scanned.into_iter().enumerate() {
                let old = cached.as_ref().map(|c| &c.inputs[i]);
                let updated = self.update_pane(i, old, rows)?;
                parts[i].push(updated.1.clone());
                pane.inputs.push(updated);
            }
            self.panes.insert((task, start), pane);
        }
        let mut out = Vec::with_capacity(n);
        for (i, batches) in parts.into_iter().enumerate() {
            let schema = &self.engine.inputs[i].schema;
            let all = arrow::compute::concat_batches(schema, &batches).map_err(|e| permanent(format!("building table {}: {e}", self.engine.inputs[i].name)))?;
            out.push(with_window_columns(all, window).map_err(permanent)?);
        }
        Ok(out)
    }

    /// One input's rows of a pane, from what the cache has (`old`) and what the state holds
    /// (`rows`, in key order): only the rows the cache lacks are decoded; rows gone from the
    /// state are dropped; the order is the state's.
    fn update_pane(&self, input: usize, old: Option<&(Vec<String>, RecordBatch)>, rows: Vec<(String, Vec<u8>)>) -> Result<(Vec<String>, RecordBatch), ProcessError> {
        let table = &self.engine.inputs[input];
        let built = |e: String| permanent(format!("building table {}: {e}", table.name));
        if let Some((keys, batch)) = old
            && keys.len() == rows.len()
            && keys.iter().zip(&rows).all(|(a, (b, _))| a == b)
        {
            return Ok((keys.clone(), batch.clone()));
        }
        let (old_keys, old_batch) = match old {
            Some((k, b)) => (k.as_slice(), Some(b)),
            None => (&[][..], None),
        };
        let base = old_batch.map_or(0, RecordBatch::num_rows) as u32;
        let mut fresh = Vec::new();
        let mut take = Vec::with_capacity(rows.len());
        let mut keys = Vec::with_capacity(rows.len());
        for (k, bytes) in rows {
            match old_keys.binary_search(&k) {
                Ok(at) => take.push(at as u32),
                Err(_) => {
                    take.push(base + fresh.len() as u32);
                    fresh.push(self.row_json(&bytes, (0, 0))?);
                }
            }
            keys.push(k);
        }
        let fresh = batch_of(&table.schema, &fresh).map_err(built)?;
        let batch = match old_batch {
            Some(b) if base > 0 => {
                let both = arrow::compute::concat_batches(&table.schema, [b, &fresh]).map_err(|e| built(e.to_string()))?;
                arrow::compute::take_record_batch(&both, &UInt32Array::from(take)).map_err(|e| built(e.to_string()))?
            }
            _ => fresh,
        };
        Ok((keys, batch))
    }

    /// The reference tables as batches (built again only after a reference row changed).
    fn reference_batches(&mut self) -> Result<Vec<RecordBatch>, ProcessError> {
        if self.ref_batches.is_none() {
            let mut batches = Vec::with_capacity(self.refs.len());
            for (rows, t) in self.refs.iter().zip(&self.engine.references) {
                let rows: Vec<Value> = rows.values().cloned().collect();
                batches.push(batch_of(&t.schema, &rows).map_err(|e| permanent(format!("building table {}: {e}", t.name)))?);
            }
            self.ref_batches = Some(batches);
        }
        Ok(self.ref_batches.clone().unwrap_or_default())
    }

    /// Runs the query over `tables` and emits its rows for the window `(start, end)`.
    fn emit_results(&mut self, ctx: &mut Ctx<'_, Raw>, tables: Vec<RecordBatch>, window: (i64, i64)) -> Result<(), ProcessError> {
        let refs = self.reference_batches()?;
        let rows = self.engine.run(tables, &refs).map_err(|e| permanent(format!("the query failed over the window {}..{}: {e}", window.0, window.1)))?;
        let selected = &self.engine.selected;
        for (i, row) in rows.iter().enumerate() {
            let by_name: BTreeMap<&str, &Cell> = selected.iter().map(String::as_str).zip(row.iter()).collect();
            let key: String = self.q.key.iter().map(|k| by_name.get(k.as_str()).map(|c| c.key_part()).unwrap_or_default()).collect::<Vec<_>>().join("|");
            let occurred = match by_name.get("occurred_at") {
                Some(Cell::Long(v)) => *v,
                _ => window.1,
            };
            let event_id = match by_name.get("event_id") {
                Some(Cell::Str(s)) => s.clone(),
                // Each task emits its own rows of a window (under the same key when the key is
                // the window): the partition keeps their ids apart.
                _ => ctx.event_id(&[&ctx.partition().to_string(), &window.0.to_string(), &key, &i.to_string()]),
            };
            let mut fields = Vec::with_capacity(self.engine.out.len());
            for c in &self.engine.out {
                let v = match c.name.as_str() {
                    "event_id" => Cell::Str(event_id.clone()),
                    "occurred_at" if !by_name.contains_key("occurred_at") => Cell::Long(occurred),
                    n => by_name.get(n).copied().cloned().unwrap_or(Cell::Null),
                };
                if v == Cell::Null && !c.nullable {
                    return Err(permanent(format!("the output column `{}` is null in a row of the window {}..{}; make it non-null (COALESCE) or nullable", c.name, window.0, window.1)));
                }
                fields.push((c.name.clone(), v.to_avro(c.ty, c.nullable)));
            }
            let datum = apache_avro::writer::datum::GenericDatumWriter::builder(&self.out.schema)
                .build()
                .and_then(|w| w.write_value_to_vec(apache_avro::types::Value::Record(fields)))
                .map_err(|e| permanent(format!("encoding an output row: {e}")))?;
            let mut bytes = Vec::with_capacity(datum.len() + 5);
            bytes.push(storeflow_avro::codec::MAGIC);
            bytes.extend_from_slice(&self.out.id.to_be_bytes());
            bytes.extend_from_slice(&datum);
            ctx.emit(Raw { topic: self.q.output.clone(), key, bytes, time: occurred, kind: self.out.kind });
        }
        Ok(())
    }
}

/// (time, input) of a row's state key after its pane or session prefix
/// (`<time>|<cause>|<input>`).
fn row_of(rest: &str) -> (i64, usize) {
    let mut parts = rest.split('|');
    let t = parts.next().and_then(|t| t.parse().ok()).unwrap_or(i64::MIN);
    let input = parts.nth(1).and_then(|i| i.parse().ok()).unwrap_or(usize::MAX);
    (t, input)
}

/// `batch` with its window columns set to `window`.
fn with_window_columns(batch: RecordBatch, window: (i64, i64)) -> Result<RecordBatch, String> {
    let schema = batch.schema();
    let rows = batch.num_rows();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    for (name, at) in [(WINDOW_START, window.0), (WINDOW_END, window.1)] {
        let i = schema.index_of(name).map_err(|e| e.to_string())?;
        columns[i] = Arc::new(TimestampMillisecondArray::from_value(at, rows));
    }
    RecordBatch::try_new(schema, columns).map_err(|e| e.to_string())
}

fn late(t: i64, now: i64, lateness: i64, end: i64) -> ProcessError {
    permanent(format!(
        "late: event time {t} belongs to windows that ended by {end}, and stream time {now} is past them by more than the allowed lateness ({}); raise `-- lateness:` to keep such events",
        ms(lateness.max(1))
    ))
}

impl Processor for SqlProcessor {
    const NAME: &'static str = "sql";
    type Config = ();
    type In = Raw;
    type Out = Raw;

    fn new(_config: ()) -> Self {
        unreachable!("a SQL processor is built from its file (SqlProcessor::new)")
    }

    fn name(&self) -> &'static str {
        self.name
    }

    fn flow(&self) -> Flow {
        let inputs = self.q.input_topics();
        let b = match &self.repartition {
            // Two stages, as fraud's: the inputs only re-key their rows, and the re-keyed
            // topic alone touches the windows. Its records are released in time order
            // below its frontier (no writer can still send an older one), so the shuffle
            // reorders nothing and a window fires only once every row before its end
            // has come through it: the watermark across the re-keying, as Flink's
            // minimum over upstream channels.
            Some(r) => {
                let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                Flow::new().group(&refs).emits(&[r.as_str()]).group(&[r.as_str()])
            }
            None => {
                let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                Flow::new().group(&refs)
            }
        };
        b.timers().emits(&[self.q.output.as_str()]).build()
    }

    fn stores(&self) -> &'static [&'static str] {
        &[ROWS.name, SESSIONS.name]
    }

    fn global_inputs(&self) -> Vec<String> {
        self.q.reference_topics()
    }

    fn on_global(&mut self, input: &Input<Raw>) {
        let Ok(event) = self.codec.decode(&input.value.bytes) else { return };
        if let Event::ExchangeRateUpdated(r) = &event {
            self.engine.rates.write().record(&r.base_currency, &r.quote_currency, r.occurred_at.millis(), r.rate_e9);
            return;
        }
        let ty = event.event_type();
        for (i, r) in self.q.references.iter().enumerate() {
            let Some(pos) = r.types.iter().position(|t| t.name == ty.name) else { continue };
            let json = event.to_json();
            let Some(key) = json.get(&r.by).and_then(Value::as_str).map(str::to_string) else { continue };
            let schema = &self.engine.references[i].schema;
            let mut row: serde_json::Map<String, Value> = if pos == 0 { serde_json::Map::new() } else {
                match self.refs[i].get(&key) {
                    Some(Value::Object(m)) => m.clone(),
                    _ => continue,
                }
            };
            if let Value::Object(m) = json {
                for (k, v) in m {
                    if schema.field_with_name(&k).is_ok() && (pos == 0 || !v.is_null()) {
                        row.insert(k, v);
                    }
                }
            }
            self.refs[i].insert(key, Value::Object(row));
            self.ref_batches = None;
        }
    }

    fn process(&mut self, input: &Input<Raw>, ctx: &mut Ctx<'_, Raw>) -> Result<(), ProcessError> {
        let bytes = &input.value.bytes;
        let ty = self.codec.event_type_of(bytes).map_err(|e| permanent(format!("cannot decode: {e}")))?;
        let Some(which) = self.q.inputs.iter().position(|t| t.name == ty.name) else { return Ok(()) };
        let event = self.codec.decode(bytes).map_err(|e| permanent(format!("cannot decode: {e}")))?;
        let rekeyed = self.repartition.as_ref().is_some_and(|r| &input.topic == r);
        // The row as JSON only when a column must be read by name: a time other than
        // `occurred_at`, or the value to re-key by (on the re-keyed topic it is the key).
        let json = (self.q.time != "occurred_at" || (self.q.partition_by.is_some() && !rekeyed)).then(|| event.to_json());
        let t = match &json {
            Some(json) => self.time_of(json, ty)?,
            None => event.occurred_at().millis(),
        };
        let row_key = format!("{t:020}|{:020}|{which}", input.cause);
        let mut key = "";
        if let (Some(by), Some(r)) = (&self.q.partition_by, &self.repartition) {
            if !rekeyed {
                // A row without a value to group by belongs to no group.
                let Some(k) = json.as_ref().and_then(|j| j.get(by)).and_then(Value::as_str) else { return Ok(()) };
                ctx.emit_to(r, k, Raw { topic: r.clone(), key: k.to_string(), bytes: bytes.clone(), time: t, kind: ty.name });
                return Ok(());
            }
            key = input.key.as_str();
        }
        match &self.q.window {
            Window::Session { .. } => self.add_to_session(ctx, key, t, &row_key, bytes),
            _ => self.add_to_windows(ctx, t, &row_key, bytes),
        }
    }

    fn on_timer(&mut self, timer: &Timer, ctx: &mut Ctx<'_, Raw>) -> Result<(), ProcessError> {
        if let Some(start) = timer.key.strip_prefix("w|") {
            let start: i64 = start.parse().map_err(permanent)?;
            let (size, slide) = self.sizes();
            let panes: Vec<i64> = (0..size / slide).map(|i| start + i * slide).collect();
            let window = (start, start + size);
            let tables = self.window_tables(ctx, &panes, window)?;
            if tables.iter().all(|t| t.num_rows() == 0) {
                return Ok(());
            }
            return self.emit_results(ctx, tables, window);
        }
        let Some(key) = timer.key.strip_prefix("s|") else { return Ok(()) };
        let Window::Session { gap, .. } = self.q.window else { return Ok(()) };
        let now = ctx.time();
        let mut sessions = ctx.get(SESSIONS, key)?.unwrap_or_default();
        let mut kept = Vec::new();
        for mut s in sessions.drain(..) {
            let (close, purge) = (s.last + gap, s.last + gap + self.q.lateness);
            if close <= now && !s.emitted {
                let tables = self.tables(ctx, &[format!("s|{key}|")], (s.start, close), |t| t >= s.start && t <= s.last)?;
                self.emit_results(ctx, tables, (s.start, close))?;
                s.emitted = true;
            }
            if purge <= now {
                for (k, _) in ctx.scan_prefix(ROWS, &format!("s|{key}|"))? {
                    let t: i64 = k[key.len() + 3..].split('|').next().and_then(|t| t.parse().ok()).unwrap_or(i64::MIN);
                    if t >= s.start && t <= s.last {
                        ctx.delete(ROWS, &k)?;
                    }
                }
                continue;
            }
            if s.emitted {
                ctx.set_timer(purge, &format!("s|{key}"));
            } else {
                ctx.set_timer(close.max(now), &format!("s|{key}"));
            }
            kept.push(s);
        }
        if kept.is_empty() { ctx.delete(SESSIONS, key) } else { ctx.put(SESSIONS, key, &kept) }
    }
}

/// Reads an output record back (for `storeflow sql run` and tests): its fields in order.
pub fn decode_output(schema: &apache_avro::Schema, bytes: &[u8]) -> Result<Vec<(String, Value)>, String> {
    if bytes.len() < 5 {
        return Err("too short".into());
    }
    let v = apache_avro::reader::datum::GenericDatumReader::builder(schema).build().and_then(|r| r.read_value(&mut &bytes[5..])).map_err(|e| e.to_string())?;
    let apache_avro::types::Value::Record(fields) = v else { return Err("not a record".into()) };
    Ok(fields.into_iter().map(|(k, v)| (k, avro_json(v))).collect())
}

fn avro_json(v: apache_avro::types::Value) -> Value {
    use apache_avro::types::Value as A;
    match v {
        A::Null => Value::Null,
        A::Boolean(b) => Value::from(b),
        A::Int(i) => Value::from(i),
        A::Long(i) | A::TimestampMillis(i) => Value::from(i),
        A::Double(d) => Value::from(d),
        A::Float(f) => Value::from(f),
        A::String(s) => Value::from(s),
        A::Union(_, b) => avro_json(*b),
        other => Value::String(format!("{other:?}")),
    }
}

/// Whether an output column is a timestamp (for printing).
pub fn is_time(ty: OutType) -> bool {
    ty == OutType::Millis
}

#[cfg(test)]
mod tests {
    use super::*;
    use storeflow_processors::state::{decode_value, encode_value};

    #[test]
    fn a_stored_row_reads_and_writes_exactly_as_the_byte_vector_it_replaced() {
        let bytes: Vec<u8> = (0..=255u8).chain([0, 1, 2]).collect();
        let old = encode_value(&bytes, Some(42)).unwrap();
        assert_eq!(encode_value(&RowBytes(bytes.clone()), Some(42)).unwrap(), old, "the same bytes in the store and the changelog");
        let RowBytes(back) = decode_value(&old).unwrap();
        assert_eq!(back, bytes);
    }

    #[test]
    fn a_row_key_gives_its_time_and_input() {
        assert_eq!(row_of("00000000001767225600000|00000000000000000042|1"), (1_767_225_600_000, 1));
        assert_eq!(row_of("garbage"), (i64::MIN, usize::MAX));
    }
}
