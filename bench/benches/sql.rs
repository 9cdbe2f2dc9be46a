//! SQL processors beside the same query written as a Rust processor, in the same run.
//!
//! `cargo bench -p storeflow-bench --bench sql` (release; about a minute).
//! `STOREFLOW_BENCH_VIEWS=1000000` changes the number of events (200,000 by default).
//!
//! Both run in the test driver (in-memory state, one thread): what is measured is the
//! processor's own work per core — decoding, re-keying through the `by-key` stage, state,
//! timers, the query, encoding the outputs — not the log. The Rust processor is what a data
//! engineer would write by hand for the same result: it keeps a count per window and product
//! instead of the rows, and picks the hottest when the window fires. Both see the same
//! pre-encoded records in the same order, and the bench checks that they emit the same
//! hottest products per window before it prints a figure.
//!
//! The query is the shipped Nexmark-style q5 (`processors/sql/hot_products.sql`: views per
//! product per 10-minute window sliding every minute, the hottest per window, lateness 1 min):
//! 1,000 products (a skewed mix), 5,000 sessions, event times 30 ms apart with up to ±5 s of
//! disorder. Flink's published Nexmark q5 figure is about 22,000 events/s per core.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use apache_avro::types::Value as Avro;
use serde_json::{Value, json};
use storeflow_avro::{Codec, Event, EventType};
use storeflow_processors::{Ctx, Flow, Input, ProcessError, Processor, Store, TestDriver, Timer};
use storeflow_sql::processor::{Raw, decode_output};
use storeflow_sql::{Query, discover, prepare};

const MIN: i64 = 60_000;
const SIZE: i64 = 10 * MIN;
const SLIDE: i64 = MIN;
const LATENESS: i64 = MIN;

/// Views per `<window start>|<product>`.
const COUNTS: Store<u64> = Store::new("counts");

/// q5 by hand: re-key by product, count per window and product, emit the hottest per window
/// (every product tied for first, as `RANK() = 1`) when the window ends and again for a late
/// view within the lateness.
struct HotProductsRust {
    input: String,
    by_key: String,
    output: String,
    schema: apache_avro::Schema,
    codec: Arc<Codec>,
}

impl Processor for HotProductsRust {
    const NAME: &'static str = "hot_products_rust";
    type Config = ();
    type In = Raw;
    type Out = Raw;

    fn new(_: ()) -> Self {
        unreachable!("built by HotProductsRust {{..}}")
    }

    fn flow(&self) -> Flow {
        Flow::new().group(&[&self.input]).emits(&[&self.by_key]).group(&[&self.by_key]).timers().emits(&[&self.output]).build()
    }

    fn stores(&self) -> &'static [&'static str] {
        &[COUNTS.name]
    }

    fn process(&mut self, input: &Input<Raw>, ctx: &mut Ctx<'_, Raw>) -> Result<(), ProcessError> {
        let Ok(Event::ProductViewed(v)) = self.codec.decode(&input.value.bytes) else { return Ok(()) };
        if input.topic != self.by_key {
            let r = Raw { topic: self.by_key.clone(), key: v.product_id.clone(), bytes: input.value.bytes.clone(), time: input.timestamp, kind: "ProductViewed" };
            ctx.emit_to(&self.by_key, &v.product_id, r);
            return Ok(());
        }
        let (t, now) = (v.occurred_at.millis(), ctx.time());
        let pane = t.div_euclid(SLIDE) * SLIDE;
        if pane + SIZE + LATENESS <= now {
            return Err(ProcessError::permanent("late"));
        }
        let mut start = pane - SIZE + SLIDE;
        while start <= pane {
            let end = start + SIZE;
            if end + LATENESS > now {
                let key = format!("{start:020}|{}", v.product_id);
                let n = ctx.get(COUNTS, &key)?.unwrap_or(0) + 1;
                ctx.put_until(COUNTS, &key, &n, end + LATENESS + 1)?;
                ctx.set_timer(end.max(now), &format!("w|{start:020}"));
            }
            start += SLIDE;
        }
        Ok(())
    }

    fn on_timer(&mut self, timer: &Timer, ctx: &mut Ctx<'_, Raw>) -> Result<(), ProcessError> {
        let Some(start) = timer.key.strip_prefix("w|") else { return Ok(()) };
        let counts = ctx.scan_prefix(COUNTS, &format!("{start}|"))?;
        let Some(top) = counts.iter().map(|(_, n)| *n).max() else { return Ok(()) };
        let start: i64 = start.parse().map_err(|_| ProcessError::permanent("timer key"))?;
        for (i, (k, _)) in counts.iter().filter(|(_, n)| *n == top).enumerate() {
            let product = &k[21..];
            let event_id = ctx.event_id(&[&ctx.partition().to_string(), &start.to_string(), &i.to_string()]);
            let fields = [
                ("event_id", Avro::String(event_id)),
                ("occurred_at", Avro::TimestampMillis(start + SIZE)),
                ("window_start", Avro::TimestampMillis(start)),
                ("window_end", Avro::TimestampMillis(start + SIZE)),
                ("product_id", Avro::String(product.to_string())),
                ("views", Avro::Long(top as i64)),
            ];
            let bytes = record(&self.schema, &fields);
            ctx.emit(Raw { topic: self.output.clone(), key: start.to_string(), bytes, time: start + SIZE, kind: "HotProduct" });
        }
        Ok(())
    }
}

/// `fields` as an Avro record of `schema` (its field order, nullable fields as unions),
/// framed with schema id 0.
fn record(schema: &apache_avro::Schema, fields: &[(&str, Avro)]) -> Vec<u8> {
    let apache_avro::Schema::Record(r) = schema else { panic!("the output schema is a record") };
    let values = r
        .fields
        .iter()
        .map(|f| {
            let v = fields.iter().find(|(n, _)| *n == f.name).map(|(_, v)| v.clone()).unwrap_or_else(|| panic!("no value for {}", f.name));
            let v = if matches!(f.schema, apache_avro::Schema::Union(_)) { Avro::Union(1, Box::new(v)) } else { v };
            (f.name.clone(), v)
        })
        .collect();
    let datum = apache_avro::writer::datum::GenericDatumWriter::builder(schema)
        .build()
        .and_then(|w| w.write_value_to_vec(Avro::Record(values)))
        .expect("encode");
    let mut bytes = vec![0u8; 5];
    bytes.extend_from_slice(&datum);
    bytes
}

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A pre-encoded record: (topic, key, bytes, timestamp).
type Rec = (String, String, Vec<u8>, i64);

const T0: i64 = 1_767_225_600_000;

/// An event of type `name`: the contract's example with `fields` over it, pre-encoded.
fn rec(codec: &Codec, name: &str, fields: Value) -> Rec {
    let mut v = storeflow_avro::json::example(EventType::by_name(name).expect("type"));
    let m = v.as_object_mut().expect("object");
    for (k, x) in fields.as_object().expect("fields") {
        m.insert(k.clone(), x.clone());
    }
    let e = storeflow_avro::json::event_from_stored_json(v).unwrap_or_else(|err| panic!("{name}: {err}"));
    (e.topic().name().to_string(), e.key(), codec.encode(&e).expect("encode"), e.occurred_at().millis())
}

/// `n` product views: half on 50 products, the rest over 1,000; 5,000 sessions; 30 ms
/// apart with up to ±5 s of disorder.
fn views(codec: &Codec, n: u64) -> Vec<Rec> {
    let mut rng = Rng(5);
    (0..n)
        .map(|i| {
            let product = if rng.next() % 2 == 0 { rng.next() % 50 } else { rng.next() % 1000 };
            let at = T0 + i as i64 * 30 + (rng.next() % 10_000) as i64 - 5_000;
            let session = rng.next() % 5000;
            rec(codec, "ProductViewed", json!({"event_id": format!("00000000-0000-4000-8000-{i:012x}"), "occurred_at": at, "session_id": format!("s-{session}"), "product_id": format!("p-{product:04}")}))
        })
        .collect()
}

/// The catalogue (500 products in 12 categories) and the rates (USD and GBP against EUR,
/// changing every 10 minutes): the reference records of revenue per category.
fn catalogue(codec: &Codec) -> Vec<Rec> {
    let mut out: Vec<Rec> = (0..500)
        .map(|p| rec(codec, "ProductCreated", json!({"event_id": format!("00000000-0000-4000-9000-{p:012x}"), "occurred_at": T0 - 60_000, "product_id": format!("p-{p:04}"), "category": format!("cat-{}", p % 12)})))
        .collect();
    for (i, t) in (0..12).map(|k| T0 - 60_000 + k * 10 * MIN).enumerate() {
        for (j, (quote, rate)) in [("USD", 1_080_000_000 + i as i64 * 1_000_000), ("GBP", 850_000_000 + i as i64 * 500_000)].into_iter().enumerate() {
            out.push(rec(codec, "ExchangeRateUpdated", json!({"event_id": format!("00000000-0000-4000-a000-{:012x}", i * 2 + j), "occurred_at": t, "base_currency": "EUR", "quote_currency": quote, "rate_e9": rate})));
        }
    }
    out
}

/// `n` orders of one to three lines over 550 product ids (50 not in the catalogue), in
/// EUR, USD or GBP, 30 ms apart with up to ±5 s of disorder.
fn orders(codec: &Codec, n: u64) -> Vec<Rec> {
    let mut rng = Rng(11);
    (0..n)
        .map(|i| {
            let at = T0 + i as i64 * 30 + (rng.next() % 10_000) as i64 - 5_000;
            let items: Vec<Value> = (0..1 + rng.next() % 3)
                .map(|_| {
                    let p = rng.next() % 550;
                    json!({"sku": format!("sku-{p}"), "product_id": format!("p-{p:04}"), "vendor_id": "v-1", "quantity": 1 + (rng.next() % 3) as i32, "unit_price_minor": 500 + (rng.next() % 20_000) as i64})
                })
                .collect();
            let currency = ["EUR", "USD", "GBP"][(rng.next() % 3) as usize];
            rec(codec, "OrderPlaced", json!({"event_id": format!("00000000-0000-4000-b000-{i:012x}"), "order_id": format!("o-{i}"), "occurred_at": at, "items": items, "currency": currency}))
        })
        .collect()
}

/// Per `<window start>|<category>`: (revenue in the base currency, orders, units).
const SUMS: Store<(i64, i64, i64)> = Store::new("sums");
const REV_SIZE: i64 = 5 * MIN;
const REV_LATENESS: i64 = 10 * MIN;

/// Revenue per category per 5 minutes by hand: sums per window and category, each line
/// converted with the shared money rule at the order's time; emitted when the window ends
/// and again for a late order within the lateness.
struct RevenueRust {
    output: String,
    schema: apache_avro::Schema,
    codec: Arc<Codec>,
    categories: std::collections::HashMap<String, String>,
    rates: storeflow_avro::money::Rates,
}

impl Processor for RevenueRust {
    const NAME: &'static str = "revenue_rust";
    type Config = ();
    type In = Raw;
    type Out = Raw;

    fn new(_: ()) -> Self {
        unreachable!("built by RevenueRust {{..}}")
    }

    fn flow(&self) -> Flow {
        Flow::new().group(&[storeflow_avro::Topic::Orders.name()]).timers().emits(&[&self.output]).build()
    }

    fn stores(&self) -> &'static [&'static str] {
        &[SUMS.name]
    }

    fn global_inputs(&self) -> Vec<String> {
        vec![storeflow_avro::Topic::Catalog.name().to_string(), storeflow_avro::Topic::ExchangeRates.name().to_string()]
    }

    fn on_global(&mut self, input: &Input<Raw>) {
        match self.codec.decode(&input.value.bytes) {
            Ok(Event::ProductCreated(p)) => {
                self.categories.insert(p.product_id, p.category);
            }
            Ok(Event::ProductUpdated(p)) => {
                if let Some(c) = p.category {
                    self.categories.insert(p.product_id, c);
                }
            }
            Ok(Event::ExchangeRateUpdated(r)) => self.rates.record(&r.base_currency, &r.quote_currency, r.occurred_at.millis(), r.rate_e9),
            _ => {}
        }
    }

    fn process(&mut self, input: &Input<Raw>, ctx: &mut Ctx<'_, Raw>) -> Result<(), ProcessError> {
        let Ok(Event::OrderPlaced(o)) = self.codec.decode(&input.value.bytes) else { return Ok(()) };
        let (t, now) = (o.occurred_at.millis(), ctx.time());
        let start = t.div_euclid(REV_SIZE) * REV_SIZE;
        if start + REV_SIZE + REV_LATENESS <= now {
            return Err(ProcessError::permanent("late"));
        }
        let mut per: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        for line in &o.items {
            let category = self.categories.get(&line.product_id).map_or("uncategorized", String::as_str);
            let e = per.entry(category).or_default();
            e.0 += self.rates.to_base(i64::from(line.quantity) * line.unit_price_minor, &o.currency, t).unwrap_or(0);
            e.1 += i64::from(line.quantity);
        }
        for (category, (revenue, units)) in per {
            let key = format!("{start:020}|{category}");
            let (r, n, u) = ctx.get(SUMS, &key)?.unwrap_or_default();
            ctx.put_until(SUMS, &key, &(r + revenue, n + 1, u + units), start + REV_SIZE + REV_LATENESS + 1)?;
        }
        ctx.set_timer((start + REV_SIZE).max(now), &format!("w|{start:020}"));
        Ok(())
    }

    fn on_timer(&mut self, timer: &Timer, ctx: &mut Ctx<'_, Raw>) -> Result<(), ProcessError> {
        let Some(start) = timer.key.strip_prefix("w|") else { return Ok(()) };
        let sums = ctx.scan_prefix(SUMS, &format!("{start}|"))?;
        let start: i64 = start.parse().map_err(|_| ProcessError::permanent("timer key"))?;
        for (i, (k, (revenue, orders, units))) in sums.iter().enumerate() {
            let category = &k[21..];
            let event_id = ctx.event_id(&[&ctx.partition().to_string(), &start.to_string(), category, &i.to_string()]);
            let fields = [
                ("event_id", Avro::String(event_id)),
                ("occurred_at", Avro::TimestampMillis(start + REV_SIZE)),
                ("window_start", Avro::TimestampMillis(start)),
                ("window_end", Avro::TimestampMillis(start + REV_SIZE)),
                ("category", Avro::String(category.to_string())),
                ("currency", Avro::String(self.rates.base().to_string())),
                ("revenue_minor", Avro::Long(*revenue)),
                ("orders", Avro::Long(*orders)),
                ("units", Avro::Long(*units)),
            ];
            let bytes = record(&self.schema, &fields);
            ctx.emit(Raw { topic: self.output.clone(), key: category.to_string(), bytes, time: start + REV_SIZE, kind: "RevenueByCategory" });
        }
        Ok(())
    }
}

/// Revenue rows as comparable tuples (window start, category, revenue, orders, units),
/// sorted: every emission of every task.
fn revenue_rows(rows: &[BTreeMap<String, Value>]) -> Vec<(i64, String, i64, i64, i64)> {
    let mut out: Vec<_> = rows
        .iter()
        .map(|r| {
            let n = |k: &str| r[k].as_i64().unwrap_or(i64::MIN);
            (n("window_start"), r["category"].as_str().unwrap_or("").to_string(), n("revenue_minor"), n("orders"), n("units"))
        })
        .collect();
    out.sort();
    out
}

/// Pipes every record, then lets time run `tail` ms past the last one; returns events/s
/// (of `input`; the reference records piped first are not timed) and every output row.
fn run(mut d: TestDriver, reference: &[Rec], input: &[Rec], tail: i64, output: &str, schema: &apache_avro::Schema) -> (f64, Vec<BTreeMap<String, Value>>) {
    for (topic, key, bytes, at) in reference {
        d.pipe_raw(topic, key, bytes, *at);
    }
    d.forget_records();
    let started = Instant::now();
    let mut out = Vec::new();
    for (i, (topic, key, bytes, at)) in input.iter().enumerate() {
        d.pipe_raw(topic, key, bytes, *at);
        if i % 10_000 == 9_999 {
            out.extend(d.records(output));
            d.forget_records();
        }
    }
    d.advance_time(input.iter().map(|r| r.3).max().unwrap_or(0) + tail);
    out.extend(d.records(output));
    let secs = started.elapsed().as_secs_f64();
    let rows = out.iter().map(|r| decode_output(schema, r.value.as_deref().unwrap_or_default()).expect("decode").into_iter().collect()).collect();
    (input.len() as f64 / secs, rows)
}

/// q5's answer: the hottest products per window, (window start, product) → views, the
/// latest emission of a product in a window winning.
fn hottest(rows: &[BTreeMap<String, Value>]) -> BTreeMap<(i64, String), i64> {
    let mut top: BTreeMap<i64, BTreeMap<String, i64>> = BTreeMap::new();
    for row in rows {
        let (start, product, views) = (row["window_start"].as_i64().unwrap_or(0), row["product_id"].as_str().unwrap_or("").to_string(), row["views"].as_i64().unwrap_or(0));
        top.entry(start).or_default().insert(product, views);
    }
    top.into_iter()
        .flat_map(|(s, m)| {
            let max = m.values().copied().max().unwrap_or(0);
            m.into_iter().filter(move |(_, v)| *v == max).map(move |(p, v)| ((s, p), v))
        })
        .collect()
}

fn shipped(name: &str) -> Query {
    discover(&[], true).expect("shipped").into_iter().find(|q| q.name == name).unwrap_or_else(|| panic!("{name} is shipped"))
}

/// One line of the table: the SQL processor between two runs of its Rust twin (so a machine
/// that slows down during the run shows as a spread between them).
fn line(what: &str, rust: (f64, f64), sql: f64) -> f64 {
    let r = (rust.0 + rust.1) / 2.0;
    println!("{what:<44} {r:>12.0} {sql:>12.0} {:>10.2}   (Rust runs: {:.0}, {:.0})", sql / r, rust.0, rust.1);
    sql / r
}

fn main() {
    let n = std::env::var("STOREFLOW_BENCH_VIEWS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000u64);
    let codec = Arc::new(Codec::embedded().expect("codec"));
    println!("SQL processors beside their Rust twins: test driver, 4 partitions, one thread, in-memory state\n");
    println!("{:<44} {:>12} {:>12} {:>10}", "query (events)", "Rust ev/s", "SQL ev/s", "SQL/Rust");

    // q5: hot products per hopping window.
    let q = shipped("sql_hot_products");
    let sql = prepare(&q, &codec, "bench", "EUR", None).expect("prepare");
    let schema = apache_avro::Schema::parse_str(&storeflow_sql::output_schema(sql.engine())).expect("output schema");
    let by_key = q.repartition_topic("bench").expect("q5 re-keys by product");
    let input = views(&codec, n);
    let twin = || HotProductsRust { input: input[0].0.clone(), by_key: by_key.clone(), output: q.output.clone(), schema: schema.clone(), codec: codec.clone() };
    let tail = SIZE + LATENESS + 1;
    let (r1, want) = run(TestDriver::new(twin()).with_partitions(4), &[], &input, tail, &q.output, &schema);
    let (s5, got) = run(TestDriver::new(sql).with_partitions(4), &[], &input, tail, &q.output, &schema);
    let (r2, again) = run(TestDriver::new(twin()).with_partitions(4), &[], &input, tail, &q.output, &schema);
    let (want, got) = (hottest(&want), hottest(&got));
    assert_eq!(want, hottest(&again), "the Rust q5 is deterministic");
    assert_eq!(got, want, "the SQL and the Rust q5 agree on the hottest products of every window");
    line(&format!("q5 hot products, 10 min every 1 min ({n} views)"), (r1, r2), s5);
    let q5_windows = want.len();

    // Revenue per category per 5 minutes: UNNEST of lines, a reference join, to_base.
    let q = shipped("sql_revenue_by_category");
    let sql = prepare(&q, &codec, "bench", "EUR", None).expect("prepare");
    let schema = apache_avro::Schema::parse_str(&storeflow_sql::output_schema(sql.engine())).expect("output schema");
    let reference = catalogue(&codec);
    let input = orders(&codec, n / 2);
    let twin = || RevenueRust { output: q.output.clone(), schema: schema.clone(), codec: codec.clone(), categories: Default::default(), rates: storeflow_avro::money::Rates::new("EUR") };
    let tail = REV_SIZE + REV_LATENESS + 1;
    let (r1, want) = run(TestDriver::new(twin()).with_partitions(4), &reference, &input, tail, &q.output, &schema);
    let (sr, got) = run(TestDriver::new(sql).with_partitions(4), &reference, &input, tail, &q.output, &schema);
    let (r2, _) = run(TestDriver::new(twin()).with_partitions(4), &reference, &input, tail, &q.output, &schema);
    let (want, got) = (revenue_rows(&want), revenue_rows(&got));
    assert_eq!(got.len(), want.len(), "as many revenue rows from SQL as from Rust");
    assert_eq!(got, want, "the SQL and the Rust revenue per category agree on every row");
    line(&format!("revenue per category, 5 min ({} orders)", n / 2), (r1, r2), sr);

    println!("\nq5 in SQL / Flink's published Nexmark q5 (22,000 events/s/core) = {:.2}", s5 / 22_000.0);
    println!("checked: {q5_windows} q5 windows and {} revenue rows equal between SQL and Rust", want.len());
}
