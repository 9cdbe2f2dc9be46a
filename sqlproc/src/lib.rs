//! SQL processors: a data engineer's streaming job as one `.sql` file — a header naming its
//! inputs, output, key, window and lateness, then one `SELECT` — that `storeflow run` runs
//! like any processor, with no build (docs/SQL-PROCESSORS.md).
//!
//! - [`header`] parses the file; [`types`] maps Avro ↔ Arrow; [`engine`] runs the query with
//!   DataFusion over a window's rows; [`processor`] puts it on the runtime (rows and
//!   sessions in state stores behind the changelog, windows on timers, late rows to the DLQ).
//! - [`gate`] keeps each output's schema history and refuses an incompatible change.

pub mod engine;
pub mod gate;
pub mod header;
pub mod processor;
pub mod types;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use storeflow_avro::Codec;

pub use engine::Engine;
pub use header::{Query, SqlError, Window};
pub use processor::{Output, Raw, SqlProcessor};

/// The SQL processors storeflow ships (`processors/sql/`), compiled in so that `storeflow
/// demo` runs them from any directory. A file of the same name in a `[sql] dirs` folder
/// replaces one.
pub const SHIPPED: &[(&str, &str)] = &[
    ("revenue_by_category.sql", include_str!("../../processors/sql/revenue_by_category.sql")),
    ("abandoned_carts.sql", include_str!("../../processors/sql/abandoned_carts.sql")),
    ("hot_products.sql", include_str!("../../processors/sql/hot_products.sql")),
];

/// Every SQL processor: the shipped ones, then each `*.sql` of `dirs` (in name order; a
/// file named like a shipped one replaces it). A folder that does not exist is skipped.
pub fn discover(dirs: &[PathBuf], shipped: bool) -> Result<Vec<Query>, SqlError> {
    let mut files: Vec<(String, PathBuf, Option<&'static str>)> = Vec::new();
    if shipped {
        for (name, text) in SHIPPED {
            files.push((name.to_string(), Path::new("processors/sql").join(name), Some(text)));
        }
    }
    for dir in dirs {
        let Ok(read) = std::fs::read_dir(dir) else { continue };
        let mut found: Vec<PathBuf> = read.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "sql")).collect();
        found.sort();
        for p in found {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            files.retain(|(n, _, _)| *n != name);
            files.push((name, p, None));
        }
    }
    let mut out: Vec<Query> = Vec::new();
    for (_, path, text) in files {
        let q = match text {
            Some(t) => Query::parse(&path, t)?,
            None => Query::load(&path)?,
        };
        if let Some(other) = out.iter().find(|o| o.name == q.name) {
            return Err(SqlError { path: q.path.clone(), line: 0, column: 0, message: format!("{} is already the name of {}", q.name, other.path.display()) });
        }
        out.push(q);
    }
    Ok(out)
}

/// The registry subject of a query's output (TopicRecordNameStrategy, as the contract's).
pub fn subject(q: &Query) -> String {
    format!("{}-storeflow.sql.{}", q.output, q.record_name())
}

/// The output schema (JSON) of a planned query.
pub fn output_schema(engine: &Engine) -> String {
    let q = &engine.query;
    let doc = format!("Written by the SQL processor {} ({}). Topic: {}, key: {}.", q.name, q.path.display(), q.output, q.key.join(", "));
    types::out_schema(&q.record_name(), &doc, &engine.out)
}

/// Plans `query`, registers its output schema with the codec's registry and builds its
/// processor. `history` (when given) is where output schemas are kept between runs: an
/// output incompatible with an earlier version is refused ([`gate::admit`]).
pub fn prepare(query: &Query, codec: &Arc<Codec>, app: &str, base: &str, history: Option<&Path>) -> Result<SqlProcessor, String> {
    let engine = Engine::new(Arc::new(query.clone()), base).map_err(|e| e.to_string())?;
    let schema = output_schema(&engine);
    let subject = subject(query);
    if let Some(h) = history {
        gate::admit(h, &subject, &schema).map_err(|e| format!("{}: {e}", query.path.display()))?;
    }
    let parsed = apache_avro::Schema::parse_str(&schema).map_err(|e| format!("{}: the output schema does not parse: {e}", query.path.display()))?;
    let id = codec.registry().register(&subject, &schema).map_err(|e| format!("{}: registering {subject}: {e}", query.path.display()))?;
    let kind: &'static str = Box::leak(query.record_name().into_boxed_str());
    Ok(SqlProcessor::new(engine, codec.clone(), Output { id, schema: parsed, kind }, app))
}
