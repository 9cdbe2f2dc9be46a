//! `storeflow sql check|explain|run`: a data engineer's loop over one SQL processor file
//! (docs/SQL-PROCESSORS.md).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use storeflow_ingest::{ConsumerConfig, OffsetReset, Record, TopicPartition};
use storeflow_sql::{Query, Window};

use crate::backends::Backends;
use crate::config::Config;

fn load(file: &Path) -> anyhow::Result<Query> {
    Query::load(file).map_err(|e| anyhow::anyhow!("{e}"))
}

fn describe(q: &Query) -> String {
    let inputs: Vec<&str> = q.inputs.iter().map(|t| t.name).collect();
    let mut s = format!(
        "{}: reads {} ({}), writes {} keyed by {}, window {}, lateness {}",
        q.name,
        inputs.join(", "),
        q.input_topics().join(", "),
        q.output,
        q.key.join(", "),
        q.window.describe(),
        storeflow_sql::header::ms(q.lateness.max(0)).replace("0ms", "0")
    );
    if let Some(p) = &q.partition_by {
        s.push_str(&format!(", partitioned by {p}"));
    }
    for r in &q.references {
        s.push_str(&format!(", reference {} (latest {} by {})", r.table, r.types.iter().map(|t| t.name).collect::<Vec<_>>().join("/"), r.by));
    }
    s
}

/// `storeflow sql check FILE`: parses, plans and type-checks against the contract; prints
/// the output schema. False (exit 1) when it does not check.
pub fn check(file: &Path, config: &Config) -> anyhow::Result<bool> {
    let q = match load(file) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("{e}");
            return Ok(false);
        }
    };
    let engine = match storeflow_sql::Engine::new(Arc::new(q.clone()), &crate::sql::base_currency(config)) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{e}");
            return Ok(false);
        }
    };
    println!("ok  {}", describe(&q));
    println!("output schema (subject {}):", storeflow_sql::subject(&q));
    let schema: serde_json::Value = serde_json::from_str(&storeflow_sql::output_schema(&engine))?;
    println!("{}", serde_json::to_string_pretty(&schema)?);
    Ok(true)
}

/// `storeflow sql explain FILE`: DataFusion's plan.
pub fn explain(file: &Path, config: &Config) -> anyhow::Result<bool> {
    let q = load(file)?;
    let engine = storeflow_sql::Engine::new(Arc::new(q.clone()), &crate::sql::base_currency(config)).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{}\n", describe(&q));
    println!("{}", engine.explain().map_err(|e| anyhow::anyhow!("{e}"))?);
    Ok(true)
}

/// Every record of `topic`, from the start.
fn read_topic(b: &Backends, topic: &str) -> anyhow::Result<Vec<Record>> {
    let Some(info) = b.log.describe_topics()?.into_iter().find(|t| t.name == topic) else { return Ok(Vec::new()) };
    let assignment: Vec<(TopicPartition, u64)> = info.partitions.iter().map(|p| (TopicPartition::new(topic, p.partition), p.start)).collect();
    let ends: Vec<u64> = info.partitions.iter().map(|p| p.end).collect();
    let mut cfg = ConsumerConfig::new(&format!("storeflow.sql-run.{}", std::process::id()));
    cfg.reset = OffsetReset::Earliest;
    let mut c = b.log.consumer(cfg, None)?;
    c.assign(&assignment)?;
    let mut out = Vec::new();
    let mut idle = 0;
    while idle < 3 {
        let recs = c.poll(10_000, Duration::from_millis(200))?;
        if recs.is_empty() {
            idle += 1;
            if assignment.iter().all(|(tp, _)| c.position(tp).unwrap_or(0) >= ends[tp.partition as usize]) {
                break;
            }
        } else {
            idle = 0;
        }
        out.extend(recs);
    }
    c.close()?;
    Ok(out)
}

/// `storeflow sql run FILE --from-beginning`: runs the query over the log as it is (one
/// partition, state in memory, nothing written), closes every window at the end, and prints
/// the results as a table.
pub fn run(b: &Backends, config: &Config, file: &Path, limit: usize) -> anyhow::Result<bool> {
    let q = load(file)?;
    let processor = storeflow_sql::prepare(&q, &b.codec, &config.runtime.app, &crate::sql::base_currency(config), None).map_err(anyhow::Error::msg)?;
    let schema = apache_avro::Schema::parse_str(&storeflow_sql::output_schema(processor.engine()))?;
    let columns: Vec<String> = processor.engine().out.iter().map(|c| c.name.clone()).collect();
    let mut driver = storeflow_processors::TestDriver::new(processor).with_partitions(1);
    for t in q.reference_topics() {
        for r in read_topic(b, &t).with_context(|| format!("reading {t}"))? {
            if let Some(v) = r.value.as_deref() {
                driver.pipe_raw(&t, &String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()), v, r.timestamp);
            }
        }
    }
    let mut records = Vec::new();
    for t in q.input_topics() {
        records.extend(read_topic(b, &t).with_context(|| format!("reading {t}"))?);
    }
    records.sort_by_key(|r| (r.timestamp, r.topic.to_string(), r.partition, r.offset));
    let last = records.last().map(|r| r.timestamp).unwrap_or(0);
    eprintln!("{} records of {} read; running {} over them…", records.len(), q.input_topics().join(", "), q.name);
    for r in &records {
        if let Some(v) = r.value.as_deref() {
            driver.pipe_raw(&r.topic, &String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()), v, r.timestamp);
        }
    }
    let span = match &q.window {
        Window::Batch { every } => *every,
        Window::Tumbling { size } | Window::Hopping { size, .. } => *size,
        Window::Session { gap, .. } => *gap,
    };
    // The end of the input: every window closes.
    driver.advance_time(last.saturating_add(span).saturating_add(q.lateness).saturating_add(1));
    let rows: Vec<Vec<String>> = driver
        .records(&q.output)
        .iter()
        .filter_map(|r| storeflow_sql::processor::decode_output(&schema, r.value.as_deref()?).ok())
        .map(|fields| fields.into_iter().map(|(k, v)| cell_text(&k, &v)).collect())
        .collect();
    let shown: Vec<&Vec<String>> = rows.iter().take(limit).collect();
    let widths: Vec<usize> = columns.iter().enumerate().map(|(i, c)| shown.iter().map(|r| r[i].len()).max().unwrap_or(0).max(c.len())).collect();
    let line = |cells: &[String]| cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ");
    println!("{}", line(&columns));
    for r in &shown {
        println!("{}", line(r));
    }
    let dead: usize = q.input_topics().iter().map(|t| driver.dlq(t).len()).sum::<usize>() + q.repartition_topic(&config.runtime.app).map(|t| driver.dlq(&t).len()).unwrap_or(0);
    println!("\n{} rows{}; {} records dead-lettered (nothing was written to the log)", rows.len(), if rows.len() > limit { format!(" (the first {limit}; --limit to see more)") } else { String::new() }, dead);
    Ok(true)
}

fn cell_text(name: &str, v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Number(n) if name.ends_with("_at") || name.starts_with("window_") => {
            n.as_i64().map(|ms| storeflow_avro::Timestamp(ms).to_string()).unwrap_or_else(|| n.to_string())
        }
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
