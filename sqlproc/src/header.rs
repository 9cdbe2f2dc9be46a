//! A SQL processor's file: a header of `-- key: value` lines, then one `SELECT`
//! (docs/SQL-PROCESSORS.md).
//!
//! ```sql
//! -- from: ProductViewed
//! -- to: sql.hot_products
//! -- key: product_id
//! -- window: hopping 10m every 1m
//! -- lateness: 2m
//! SELECT window_start, window_end, product_id, count(*) AS views
//! FROM product_viewed GROUP BY window_start, window_end, product_id
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use storeflow_avro::EventType;

/// Where in a file something went wrong (1-based), and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlError {
    /// The file.
    pub path: PathBuf,
    /// Line, 1-based (0 when it is about the whole file).
    pub line: usize,
    /// Column, 1-based (0 when unknown).
    pub column: usize,
    /// What is wrong, and what to write instead.
    pub message: String,
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (0, _) => write!(f, "{}: {}", self.path.display(), self.message),
            (l, 0) => write!(f, "{}:{l}: {}", self.path.display(), self.message),
            (l, c) => write!(f, "{}:{l}:{c}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for SqlError {}

/// How rows are grouped in event time before the query runs over them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Window {
    /// No window: the query runs over each `every` of event time (a micro-batch), once the
    /// stream has passed it.
    Batch { every: i64 },
    /// Fixed, non-overlapping windows of `size` ms.
    Tumbling { size: i64 },
    /// Windows of `size` ms starting every `slide` ms (`size` a multiple of `slide`).
    Hopping { size: i64, slide: i64 },
    /// Per value of the column `by`: events closer than `gap` ms form one session.
    Session { gap: i64, by: String },
}

impl Window {
    /// The header's words for it.
    pub fn describe(&self) -> String {
        match self {
            Window::Batch { every } => format!("none (micro-batches of {})", ms(*every)),
            Window::Tumbling { size } => format!("tumbling {}", ms(*size)),
            Window::Hopping { size, slide } => format!("hopping {} every {}", ms(*size), ms(*slide)),
            Window::Session { gap, by } => format!("session {} by {by}", ms(*gap)),
        }
    }
}

/// A reference table: the latest event per key of some catalog-like types, read in full by
/// every instance (a global input).
#[derive(Clone, Debug)]
pub struct Reference {
    /// Its table name in the query.
    pub table: String,
    /// The event types whose latest value per key it holds (the first gives the columns;
    /// later ones overlay the fields they share and carry non-null).
    pub types: Vec<&'static EventType>,
    /// The key column.
    pub by: String,
}

/// A reference table read from a file (`<table> = <path>.csv` or `.parquet`): loaded once at
/// start, the same for every window and every instance until the next start.
#[derive(Clone, Debug)]
pub struct FileTable {
    /// Its table name in the query.
    pub table: String,
    /// The file (a relative path is relative to the `.sql` file's folder).
    pub path: PathBuf,
    /// The header line that names it.
    pub line: usize,
}

/// A parsed SQL processor file.
#[derive(Clone, Debug)]
pub struct Query {
    /// The processor's name (the file's stem unless `name:` says otherwise): its consumer
    /// group, state and metrics label, prefixed `sql_`.
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// The event types it reads (`from:`); each is a table named in snake_case.
    pub inputs: Vec<&'static EventType>,
    /// The topic it writes (`to:`).
    pub output: String,
    /// Output columns whose values, joined by `|`, key each output record (`key:`).
    pub key: Vec<String>,
    /// The input column holding event time (`time:`, default `occurred_at`).
    pub time: String,
    /// `window:`.
    pub window: Window,
    /// `lateness:` (ms, default 0): how long after a window's end a late event still
    /// updates it; later, it goes to the DLQ.
    pub lateness: i64,
    /// `reference:` tables fed by events.
    pub references: Vec<Reference>,
    /// `reference:` tables read from a CSV or Parquet file.
    pub files: Vec<FileTable>,
    /// `partition by:` — the input column the rows are grouped by before the query runs
    /// (a session window's `by`): inputs keyed by something else are re-keyed through an
    /// internal topic, so that every row of one value meets in one task.
    pub partition_by: Option<String>,
    /// The `SELECT`.
    pub sql: String,
    /// Line of the file where the `SELECT` starts (1-based).
    pub sql_line: usize,
}

/// The table name of an event type: `OrderPlaced` → `order_placed`.
pub fn table_name(t: &EventType) -> String {
    let mut out = String::new();
    for (i, c) in t.name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Milliseconds as the header writes them (`5m`, `90s`, `1500ms`).
pub fn ms(v: i64) -> String {
    for (unit, n) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if v != 0 && v % n == 0 {
            return format!("{}{unit}", v / n);
        }
    }
    format!("{v}ms")
}

/// Parses a duration: a number and a unit (`ms`, `s`, `m`, `h`, `d`).
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().map_err(|_| format!("`{s}` is not a duration; write a number and a unit, e.g. `5m`, `30s`, `1h`"))?;
    let mult = match unit.trim() {
        "ms" => 1,
        "s" => 1000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => return Err(format!("`{other}` is not a unit of time; use ms, s, m, h or d")),
    };
    n.checked_mul(mult).filter(|v| *v > 0).ok_or_else(|| format!("`{s}` must be a positive duration"))
}

fn parse_window(v: &str) -> Result<Window, String> {
    let words: Vec<&str> = v.split_whitespace().collect();
    match words.as_slice() {
        ["none"] => Ok(Window::Batch { every: 1000 }),
        ["none", "every", d] => Ok(Window::Batch { every: parse_duration(d)? }),
        ["tumbling", d] => Ok(Window::Tumbling { size: parse_duration(d)? }),
        ["hopping", size, "every", slide] => {
            let (size, slide) = (parse_duration(size)?, parse_duration(slide)?);
            if size % slide != 0 {
                return Err(format!("a hopping window's size ({}) must be a multiple of its slide ({})", ms(size), ms(slide)));
            }
            Ok(Window::Hopping { size, slide })
        }
        ["session", gap, "by", col] => Ok(Window::Session { gap: parse_duration(gap)?, by: col.to_string() }),
        _ => Err(format!(
            "`{v}` is not a window; write `tumbling 5m`, `hopping 10m every 1m`, `session 30m by session_id` or `none`"
        )),
    }
}

fn event_type(name: &str) -> Result<&'static EventType, String> {
    EventType::by_name(name).ok_or_else(|| {
        let names: Vec<&str> = storeflow_avro::EVENT_TYPES.iter().map(|t| t.name).collect();
        let near = names.iter().min_by_key(|n| strsim_distance(n, name)).copied().unwrap_or_default();
        format!("`{name}` is not an event type of the contract (did you mean `{near}`?)")
    })
}

/// A small edit distance, for suggestions.
fn strsim_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.to_lowercase().chars().collect(), b.to_lowercase().chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A processor name: lower-case letters, digits and `_`.
fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') && n.starts_with(|c: char| c.is_ascii_lowercase())
}

impl Query {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Query, SqlError> {
        let text = std::fs::read_to_string(path).map_err(|e| SqlError { path: path.into(), line: 0, column: 0, message: format!("cannot read it: {e}") })?;
        Query::parse(path, &text)
    }

    /// Parses the text of `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Query, SqlError> {
        let err = |line: usize, column: usize, message: String| SqlError { path: path.into(), line, column, message };
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("").to_string();
        let (mut name, mut inputs, mut output, mut key, mut time, mut window, mut lateness, mut references, mut partition_by) =
            (stem.clone(), Vec::new(), None, Vec::new(), "occurred_at".to_string(), None, 0, Vec::new(), None);
        let mut sql_start = None;
        let mut files = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() {
                continue;
            }
            let Some(comment) = trimmed.strip_prefix("--") else {
                sql_start = Some(i);
                break;
            };
            let Some((k, v)) = comment.split_once(':') else { continue };
            let (k, v) = (k.trim(), v.trim());
            let col = raw.find(v).map(|c| c + 1).unwrap_or(1);
            match k {
                "name" => name = v.to_string(),
                "from" => {
                    for n in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                        inputs.push(event_type(n).map_err(|m| err(line, col, m))?);
                    }
                }
                "to" => output = Some(v.to_string()),
                "key" => key = v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
                "time" => time = v.to_string(),
                "partition by" => partition_by = Some(v.to_string()),
                "window" => window = Some(parse_window(v).map_err(|m| err(line, col, m))?),
                "lateness" => lateness = parse_duration(v).map_err(|m| err(line, col, m))?,
                "reference" => {
                    // products = ProductCreated, ProductUpdated by product_id
                    // regions = regions.csv
                    let bad = || err(line, col, format!("`{v}` is not a reference; write `<table> = <EventType>[, <EventType>…] by <key column>` or `<table> = <file>.csv` (or `.parquet`)"));
                    let (table, rest) = v.split_once('=').ok_or_else(bad)?;
                    let (table, rest) = (table.trim(), rest.trim());
                    let lower = rest.to_ascii_lowercase();
                    if lower.ends_with(".csv") || lower.ends_with(".parquet") {
                        if table.is_empty() {
                            return Err(bad());
                        }
                        let file = Path::new(rest);
                        let file = if file.is_absolute() { file.to_path_buf() } else { path.parent().unwrap_or(Path::new("")).join(file) };
                        files.push(FileTable { table: table.to_string(), path: file, line });
                        continue;
                    }
                    let (types, by) = rest.rsplit_once(" by ").ok_or_else(bad)?;
                    let mut ts = Vec::new();
                    for n in types.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                        ts.push(event_type(n).map_err(|m| err(line, col, m))?);
                    }
                    if ts.is_empty() {
                        return Err(bad());
                    }
                    references.push(Reference { table: table.trim().to_string(), types: ts, by: by.trim().to_string() });
                }
                // Other comments that happen to contain a colon.
                _ => {}
            }
        }
        let sql_start = sql_start.ok_or_else(|| err(0, 0, "there is no SELECT after the header".into()))?;
        let sql: String = text.lines().skip(sql_start).collect::<Vec<_>>().join("\n");
        if !valid_name(&name) {
            return Err(err(0, 0, format!("`{name}` is not a processor name: use lower-case letters, digits and `_` (set it with `-- name: …` or rename the file)")));
        }
        if inputs.is_empty() {
            return Err(err(1, 1, "the header names no input; add `-- from: <EventType>[, <EventType>…]`".into()));
        }
        let output = output.ok_or_else(|| err(1, 1, "the header names no output topic; add `-- to: <topic>`".into()))?;
        if output.is_empty() || !output.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
            return Err(err(1, 1, format!("`{output}` is not a topic name (letters, digits, `.`, `_`, `-`)")));
        }
        if storeflow_avro::Topic::from_name(&output).is_some() {
            return Err(err(1, 1, format!("`{output}` is a topic of the event contract; a SQL processor writes its own topic (e.g. `sql.{name}`)")));
        }
        if key.is_empty() {
            return Err(err(1, 1, "the header names no key; add `-- key: <output column>[, <column>…]`".into()));
        }
        let window = window.unwrap_or(Window::Batch { every: 1000 });
        if let Window::Session { by, .. } = &window {
            match &partition_by {
                Some(p) if p != by => return Err(err(1, 1, format!("a session window by `{by}` is partitioned by `{by}`, not `{p}`"))),
                _ => partition_by = Some(by.clone()),
            }
        }
        Ok(Query {
            partition_by,
            name: format!("sql_{name}"),
            path: path.into(),
            inputs,
            output,
            key,
            time,
            window,
            lateness,
            references,
            files,
            sql,
            sql_line: sql_start + 1,
        })
    }

    /// The topics it reads, once each, in order.
    pub fn input_topics(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for t in &self.inputs {
            let n = t.topic.name().to_string();
            if !out.contains(&n) {
                out.push(n);
            }
        }
        out
    }

    /// The topics of its reference tables, once each.
    pub fn reference_topics(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for t in self.references.iter().flat_map(|r| r.types.iter()) {
            let n = t.topic.name().to_string();
            if !out.contains(&n) {
                out.push(n);
            }
        }
        if self.uses_to_base() {
            out.push(storeflow_avro::Topic::ExchangeRates.name().to_string());
        }
        out
    }

    /// Whether the query converts money with `to_base(…)` (and so reads the exchange rates).
    pub fn uses_to_base(&self) -> bool {
        self.sql.to_lowercase().contains("to_base(")
    }

    /// The internal topic inputs are re-keyed through (`partition by:`), if any.
    pub fn repartition_topic(&self, app: &str) -> Option<String> {
        self.partition_by.as_ref().map(|_| format!("{app}.{}.by-key", self.name))
    }

    /// The output record's name (`storeflow.sql.<CamelName>`) and subject.
    pub fn record_name(&self) -> String {
        let camel: String = self
            .name
            .trim_start_matches("sql_")
            .split('_')
            .map(|w| {
                let mut c = w.chars();
                c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
            })
            .collect();
        camel
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Query, SqlError> {
        Query::parse(Path::new("processors/sql/hot.sql"), text)
    }

    #[test]
    fn a_header_names_inputs_output_key_window_and_lateness() {
        let q = parse("-- hot products\n-- from: ProductViewed, CartItemAdded\n-- to: sql.hot\n-- key: product_id\n-- window: hopping 10m every 1m\n-- lateness: 2m\n\nSELECT 1\nFROM product_viewed").unwrap();
        assert_eq!(q.name, "sql_hot");
        assert_eq!(q.inputs.iter().map(|t| t.name).collect::<Vec<_>>(), ["ProductViewed", "CartItemAdded"]);
        assert_eq!(q.input_topics(), ["storefront.sessions"]);
        assert_eq!(q.window, Window::Hopping { size: 600_000, slide: 60_000 });
        assert_eq!(q.lateness, 120_000);
        assert_eq!(q.sql_line, 8);
        assert_eq!(q.sql, "SELECT 1\nFROM product_viewed");
        assert_eq!(q.record_name(), "Hot");
    }

    #[test]
    fn an_unknown_event_type_is_refused_at_its_line_and_column_with_a_suggestion() {
        let e = parse("-- to: sql.x\n-- from: OrderPlacd\nSELECT 1").unwrap_err();
        assert_eq!((e.line, e.column), (2, 10));
        assert!(e.message.contains("did you mean `OrderPlaced`"), "{e}");
        assert!(e.to_string().starts_with("processors/sql/hot.sql:2:10: "), "{e}");
    }

    #[test]
    fn a_hopping_window_whose_size_is_not_a_multiple_of_its_slide_is_refused() {
        let e = parse("-- from: OrderPlaced\n-- to: sql.x\n-- key: a\n-- window: hopping 10m every 3m\nSELECT 1").unwrap_err();
        assert!(e.message.contains("multiple of its slide"), "{e}");
    }

    #[test]
    fn writing_into_a_contract_topic_is_refused() {
        let e = parse("-- from: OrderPlaced\n-- to: storefront.orders\n-- key: a\nSELECT 1").unwrap_err();
        assert!(e.message.contains("topic of the event contract"), "{e}");
    }

    #[test]
    fn durations_read_as_the_header_writes_them() {
        assert_eq!(parse_duration("5m"), Ok(300_000));
        assert_eq!(parse_duration("1500ms"), Ok(1500));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("0s").is_err());
        assert_eq!(ms(300_000), "5m");
        assert_eq!(ms(1500), "1500ms");
    }

    #[test]
    fn a_reference_table_from_a_file_is_found_beside_the_sql_file() {
        let q = Query::parse(Path::new("jobs/x.sql"), "-- from: OrderPlaced\n-- to: sql.x\n-- key: a\n-- reference: regions = ref/regions.CSV\n-- reference: rates = /data/r.parquet\nSELECT 1 AS a").unwrap();
        assert_eq!(q.files.len(), 2);
        assert_eq!((q.files[0].table.as_str(), q.files[0].path.as_path(), q.files[0].line), ("regions", Path::new("jobs/ref/regions.CSV"), 4));
        assert_eq!(q.files[1].path, Path::new("/data/r.parquet"));
        assert!(q.references.is_empty() && q.reference_topics().is_empty());
    }

    #[test]
    fn a_reference_table_names_its_types_and_key() {
        let q = parse("-- from: OrderPlaced\n-- to: sql.x\n-- key: a\n-- reference: products = ProductCreated, ProductUpdated by product_id\nSELECT to_base(1, 'EUR', now())").unwrap();
        assert_eq!(q.references[0].table, "products");
        assert_eq!(q.references[0].by, "product_id");
        assert_eq!(q.reference_topics(), ["storefront.catalog", "storefront.exchange_rates"]);
    }
}
