//! `storeflow schemas`: the compatibility gate and a look at the contract.

use anyhow::{Context, bail};
use storeflow_avro::{Codec, EVENT_TYPES, EventType, compat};

use crate::cli::SchemaDirs;

fn check_dirs(d: &SchemaDirs) -> anyhow::Result<()> {
    if !d.dir.is_dir() {
        bail!(
            "{} is not a directory: run from the repository root or pass --dir avro/schemas",
            d.dir.display()
        );
    }
    Ok(())
}

/// `storeflow schemas check`: exit 1 when the gate fails.
pub fn check(d: &SchemaDirs) -> anyhow::Result<bool> {
    check_dirs(d)?;
    let report = compat::check(&d.dir, &d.history).context("checking schemas")?;
    for f in &report.findings {
        println!("{f}");
    }
    let failed = report.findings.iter().filter(|f| f.fails()).count();
    if failed == 0 {
        println!(
            "\nAll {} schemas are compatible with every frozen version (BACKWARD_TRANSITIVE) and follow the conventions.",
            report.findings.len()
        );
        Ok(true)
    } else {
        println!(
            "\n{failed} of {} schemas fail. Consumers still read records written with the frozen versions; see docs/SCHEMA-EVOLUTION.md.",
            report.findings.len()
        );
        Ok(false)
    }
}

/// `storeflow schemas freeze`.
pub fn freeze(d: &SchemaDirs) -> anyhow::Result<()> {
    check_dirs(d)?;
    let written = compat::freeze(&d.dir, &d.history)?;
    if written.is_empty() {
        println!("Nothing to freeze: every schema equals its latest frozen version.");
    }
    for (name, v) in written {
        println!("froze {name} as v{v} ({}/{name}/v{v}.avsc)", d.history.display());
    }
    Ok(())
}

/// `storeflow schemas list`.
pub fn list() -> anyhow::Result<()> {
    let codec = Codec::embedded()?;
    println!("{:<24} {:<28} {:<32} {:>11}", "event type", "topic", "key", "schema id");
    for t in EVENT_TYPES {
        println!("{:<24} {:<28} {:<32} {:>11}", t.name, t.topic.name(), t.topic.key_description(), codec.schema_id(t));
    }
    Ok(())
}

/// `storeflow schemas example NAME`.
pub fn example(name: &str) -> anyhow::Result<()> {
    let t = EventType::by_name(name)
        .with_context(|| format!("no event type named {name}; `storeflow schemas list` shows them"))?;
    println!("{}", serde_json::to_string_pretty(&storeflow_avro::json::example(t))?);
    Ok(())
}

/// `storeflow schemas validate [FILE]`: true when every event is valid.
pub fn validate(file: Option<&std::path::Path>) -> anyhow::Result<bool> {
    use std::io::Read;
    use storeflow_avro::json::{JsonOptions, event_from_json, event_from_json_str};
    let text = match file {
        Some(p) if p != std::path::Path::new("-") => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        _ => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).context("reading standard input")?;
            s
        }
    };
    let opts = JsonOptions { inputs_only: true, ..JsonOptions::default() };
    // One document (object or array), or JSON Lines.
    let results: Vec<(String, Result<storeflow_avro::Event, storeflow_avro::ValidationError>)> =
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| (format!("[{i}]"), event_from_json(v, opts)))
                .collect(),
            Ok(v) => vec![("event".to_string(), event_from_json(v, opts))],
            Err(_) => text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(i, l)| (format!("line {}", i + 1), event_from_json_str(l, opts)))
                .collect(),
        };
    let mut bad = 0;
    for (at, r) in &results {
        match r {
            Ok(e) => println!("ok    {at}: {} {} (topic {}, key {})", e.name(), e.event_id(), e.topic(), e.key()),
            Err(err) => {
                bad += 1;
                println!("error {at}: {err}");
            }
        }
    }
    if results.is_empty() {
        bail!("no JSON events in the input");
    }
    println!("{} valid, {bad} invalid", results.len() - bad);
    Ok(bad == 0)
}
