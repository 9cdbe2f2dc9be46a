//! The compatibility gate behind `storeflow schemas check`.
//!
//! Every schema in `avro/schemas/` is compared with every frozen version of it in
//! `avro/history/<Name>/v<N>.avsc` under BACKWARD_TRANSITIVE rules: the current schema, as
//! a reader, must be able to read records written with *each* earlier version (Confluent's
//! definition). The schemas are also linted against the contract's conventions (namespace,
//! `event_id` and `occurred_at` first, money as `long` minor units beside a currency,
//! `*_at` as `timestamp-millis`, a doc on every field).
//!
//! `storeflow schemas freeze` copies each new or changed schema into the history as its
//! next version; do that when a release ships the change.

use std::fmt;
use std::path::{Path, PathBuf};

use apache_avro::schema_compatibility::SchemaCompatibility;
use serde_json::Value;

use crate::error_io;
use crate::{AvroError, Result};

/// One schema file.
#[derive(Debug)]
pub struct SchemaFile {
    /// Record name (= file stem).
    pub name: String,
    /// Where it was read from.
    pub path: PathBuf,
    /// The JSON text.
    pub text: String,
}

/// The verdict on one schema.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No frozen version yet.
    New,
    /// Identical (canonical form) to the latest frozen version.
    Unchanged { version: u32 },
    /// Changed, and readable against every frozen version.
    Compatible { latest: u32 },
    /// Cannot read records written with `against`.
    Incompatible {
        against: u32,
        reason: String,
        hint: String,
    },
    /// A frozen schema whose current file is gone.
    Removed { latest: u32 },
    /// The file does not parse.
    Invalid { reason: String },
}

/// What the check found for one schema.
#[derive(Debug)]
pub struct Finding {
    /// Record name.
    pub name: String,
    /// Compatibility verdict.
    pub verdict: Verdict,
    /// Convention problems (each one fails the check).
    pub lint: Vec<String>,
}

impl Finding {
    /// True when this finding fails the gate.
    pub fn fails(&self) -> bool {
        !self.lint.is_empty()
            || matches!(
                self.verdict,
                Verdict::Incompatible { .. } | Verdict::Removed { .. } | Verdict::Invalid { .. }
            )
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.fails() { "FAIL" } else { "ok  " };
        match &self.verdict {
            Verdict::New => write!(f, "{mark} {}: new (no frozen version yet)", self.name)?,
            Verdict::Unchanged { version } => write!(f, "{mark} {}: unchanged since v{version}", self.name)?,
            Verdict::Compatible { latest } => write!(
                f,
                "{mark} {}: changed since v{latest}, and can read every earlier version (freeze it when it ships)",
                self.name
            )?,
            Verdict::Incompatible { against, reason, hint } => write!(
                f,
                "{mark} {}: cannot read records written with v{against}: {reason}\n       fix: {hint}",
                self.name
            )?,
            Verdict::Removed { latest } => write!(
                f,
                "{mark} {}: schema file removed, but v{latest} is frozen: records of this type on the log could no longer be read\n       fix: keep the schema (mark it deprecated in its doc) instead of deleting it",
                self.name
            )?,
            Verdict::Invalid { reason } => write!(f, "{mark} {}: does not parse: {reason}", self.name)?,
        }
        for l in &self.lint {
            write!(f, "\n       convention: {l}")?;
        }
        Ok(())
    }
}

/// The whole report.
#[derive(Debug, Default)]
pub struct Report {
    /// One finding per schema, sorted by name.
    pub findings: Vec<Finding>,
}

impl Report {
    /// True when nothing fails.
    pub fn passed(&self) -> bool {
        self.findings.iter().all(|f| !f.fails())
    }
}

/// Reads every `*.avsc` in `dir`.
pub fn read_dir(dir: &Path) -> Result<Vec<SchemaFile>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(error_io(dir))?;
    for entry in entries {
        let path = entry.map_err(error_io(dir))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("avsc") {
            continue;
        }
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let text = std::fs::read_to_string(&path).map_err(error_io(&path))?;
        out.push(SchemaFile { name, path, text });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The frozen versions of `name`, oldest first.
pub fn history_of(history: &Path, name: &str) -> Result<Vec<(u32, SchemaFile)>> {
    let dir = history.join(name);
    let mut out = Vec::new();
    if !dir.is_dir() {
        return Ok(out);
    }
    for entry in std::fs::read_dir(&dir).map_err(error_io(&dir))? {
        let path = entry.map_err(error_io(&dir))?.path();
        let Some(v) = path
            .file_name()
            .and_then(|s| s.to_str())
            .and_then(|s| s.strip_prefix('v'))
            .and_then(|s| s.strip_suffix(".avsc"))
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let text = std::fs::read_to_string(&path).map_err(error_io(&path))?;
        out.push((v, SchemaFile { name: name.to_string(), path, text }));
    }
    out.sort_by_key(|(v, _)| *v);
    Ok(out)
}

/// Checks every schema in `schemas` against its history in `history`.
pub fn check(schemas: &Path, history: &Path) -> Result<Report> {
    let current = read_dir(schemas)?;
    let mut report = Report::default();
    for file in &current {
        let lint = lint(file);
        let verdict = match apache_avro::Schema::parse_str(&file.text) {
            Err(e) => Verdict::Invalid { reason: e.to_string() },
            Ok(reader) => verdict(&reader, &history_of(history, &file.name)?),
        };
        report.findings.push(Finding { name: file.name.clone(), verdict, lint });
    }
    if history.is_dir() {
        for entry in std::fs::read_dir(history).map_err(error_io(history))? {
            let entry = entry.map_err(error_io(history))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() && !current.iter().any(|f| f.name == name) {
                let versions = history_of(history, &name)?;
                if let Some((latest, _)) = versions.last() {
                    report.findings.push(Finding {
                        name,
                        verdict: Verdict::Removed { latest: *latest },
                        lint: vec![],
                    });
                }
            }
        }
    }
    report.findings.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(report)
}

fn verdict(reader: &apache_avro::Schema, versions: &[(u32, SchemaFile)]) -> Verdict {
    let Some((latest, _)) = versions.last() else { return Verdict::New };
    for (v, old) in versions {
        let writer = match apache_avro::Schema::parse_str(&old.text) {
            Ok(w) => w,
            Err(e) => {
                return Verdict::Invalid {
                    reason: format!("frozen {} does not parse: {e}", old.path.display()),
                };
            }
        };
        if let Err(e) = SchemaCompatibility::can_read(&writer, reader) {
            let (reason, hint) = explain(&e);
            return Verdict::Incompatible { against: *v, reason, hint };
        }
    }
    let latest_text = &versions.last().expect("not empty").1.text;
    let same = apache_avro::Schema::parse_str(latest_text)
        .map(|s| s.canonical_form() == reader.canonical_form())
        .unwrap_or(false);
    if same { Verdict::Unchanged { version: *latest } } else { Verdict::Compatible { latest: *latest } }
}

/// A readable reason and a fix for a compatibility error, naming the field path.
fn explain(e: &apache_avro::error::CompatibilityError) -> (String, String) {
    use apache_avro::error::CompatibilityError as C;
    let mut path = Vec::new();
    let mut cur = e;
    while let C::FieldTypeMismatch(field, inner) = cur {
        path.push(field.clone());
        cur = inner;
    }
    let at = |field: Option<&str>| {
        let mut p = path.clone();
        if let Some(f) = field {
            p.push(f.to_string());
        }
        if p.is_empty() { String::new() } else { format!("field `{}`: ", p.join(".")) }
    };
    match cur {
        C::MissingDefaultValue(field) => (
            format!("{}added without a default, so records written before it have no value for it", at(Some(field))),
            format!(
                "give `{field}` a default (\"default\": ...) or make it optional ([\"null\", ...] with \"default\": null)"
            ),
        ),
        C::WrongType { writer_schema_type, reader_schema_type } => (
            format!("{}type changed from {writer_schema_type} to {reader_schema_type}, which Avro cannot convert", at(None)),
            "keep the old type, or add a new field with the new type and a default".to_string(),
        ),
        C::NameMismatch { writer_name, reader_name } => (
            format!("{}record renamed from {writer_name} to {reader_name}", at(None)),
            "keep the name; add an alias if you must rename".to_string(),
        ),
        C::MissingSymbols => (
            format!("{}enum symbols removed", at(None)),
            "keep every symbol old records may hold, or give the enum a default".to_string(),
        ),
        other => (format!("{}{other}", at(None)), "see docs/SCHEMA-EVOLUTION.md for what may change".to_string()),
    }
}

/// Copies each new or changed schema in `schemas` into `history` as its next version.
/// Returns the (name, version) written. Refuses when the check fails.
pub fn freeze(schemas: &Path, history: &Path) -> Result<Vec<(String, u32)>> {
    let report = check(schemas, history)?;
    if !report.passed() {
        return Err(AvroError::Schema {
            name: "schemas".into(),
            reason: "the compatibility check fails; fix it before freezing".into(),
        });
    }
    let mut written = Vec::new();
    for file in read_dir(schemas)? {
        let versions = history_of(history, &file.name)?;
        let next = match report.findings.iter().find(|f| f.name == file.name).map(|f| &f.verdict) {
            Some(Verdict::New) => 1,
            Some(Verdict::Compatible { latest }) => latest + 1,
            _ => continue,
        };
        debug_assert!(versions.iter().all(|(v, _)| *v < next));
        let dir = history.join(&file.name);
        std::fs::create_dir_all(&dir).map_err(error_io(&dir))?;
        let path = dir.join(format!("v{next}.avsc"));
        std::fs::write(&path, &file.text).map_err(error_io(&path))?;
        written.push((file.name, next));
    }
    Ok(written)
}

/// The contract's conventions for one top-level schema.
pub fn lint(file: &SchemaFile) -> Vec<String> {
    let mut out = Vec::new();
    let v: Value = match serde_json::from_str(&file.text) {
        Ok(v) => v,
        Err(e) => return vec![format!("not JSON: {e}")],
    };
    if v.get("type").and_then(Value::as_str) != Some("record") {
        return vec!["an event schema must be a record".into()];
    }
    if v.get("name").and_then(Value::as_str) != Some(file.name.as_str()) {
        out.push(format!("the record name must equal the file name `{}`", file.name));
    }
    if v.get("namespace").and_then(Value::as_str) != Some(crate::NAMESPACE) {
        out.push(format!("namespace must be {}", crate::NAMESPACE));
    }
    let fields = v.get("fields").and_then(Value::as_array).cloned().unwrap_or_default();
    let first = |i: usize| fields.get(i).and_then(|f| f.get("name")).and_then(Value::as_str);
    if first(0) != Some("event_id") || !is_logical(&fields[0]["type"], "string", "uuid") {
        out.push("the first field must be `event_id` (string, logicalType uuid)".into());
    }
    if first(1) != Some("occurred_at") || fields.get(1).is_none_or(|f| !is_logical(&f["type"], "long", "timestamp-millis")) {
        out.push("the second field must be `occurred_at` (long, logicalType timestamp-millis)".into());
    }
    let has_currency = fields.iter().any(|f| {
        f.get("name").and_then(Value::as_str).is_some_and(|n| n == "currency" || n.ends_with("_currency"))
    });
    let mut money = false;
    lint_fields(&fields, "", &mut out, &mut money);
    if money && !has_currency {
        out.push("amounts in minor units need a `currency` field (ISO-4217) on the event".into());
    }
    out
}

fn is_logical(t: &Value, base: &str, logical: &str) -> bool {
    match t {
        Value::Object(o) => {
            o.get("type").and_then(Value::as_str) == Some(base)
                && o.get("logicalType").and_then(Value::as_str) == Some(logical)
        }
        Value::Array(branches) => {
            branches.len() == 2 && branches[0] == "null" && is_logical(&branches[1], base, logical)
        }
        _ => false,
    }
}

fn is_type(t: &Value, base: &str) -> bool {
    match t {
        Value::String(s) => s == base,
        Value::Object(o) => o.get("type").and_then(Value::as_str) == Some(base) && !o.contains_key("logicalType"),
        Value::Array(b) => b.len() == 2 && b[0] == "null" && is_type(&b[1], base),
        _ => false,
    }
}

fn lint_fields(fields: &[Value], path: &str, out: &mut Vec<String>, money: &mut bool) {
    for f in fields {
        let Some(name) = f.get("name").and_then(Value::as_str) else {
            out.push(format!("a field in `{path}` has no name"));
            continue;
        };
        let p = if path.is_empty() { name.to_string() } else { format!("{path}.{name}") };
        let t = &f["type"];
        if f.get("doc").and_then(Value::as_str).is_none_or(|d| d.trim().is_empty()) {
            out.push(format!("`{p}` needs a doc string"));
        }
        if name.ends_with("_minor") {
            *money = true;
            if !is_type(t, "long") {
                out.push(format!("`{p}` is money: a long in minor units"));
            }
        }
        if name.ends_with("_at") && !is_logical(t, "long", "timestamp-millis") {
            out.push(format!("`{p}` is a time: long with logicalType timestamp-millis"));
        }
        for nested in nested_records(t) {
            lint_fields(nested, &p, out, money);
        }
    }
}

fn nested_records(t: &Value) -> Vec<&[Value]> {
    match t {
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("record") => o.get("fields").and_then(Value::as_array).map(|f| vec![f.as_slice()]).unwrap_or_default(),
            Some("array") => o.get("items").map(nested_records).unwrap_or_default(),
            Some("map") => o.get("values").map(nested_records).unwrap_or_default(),
            _ => vec![],
        },
        Value::Array(branches) => branches.iter().flat_map(nested_records).collect(),
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(schema: &str, history: &[&str]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("schemas")).unwrap();
        std::fs::write(d.path().join("schemas/Thing.avsc"), schema).unwrap();
        for (i, h) in history.iter().enumerate() {
            let dir = d.path().join("history/Thing");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("v{}.avsc", i + 1)), h).unwrap();
        }
        d
    }

    fn thing(extra: &str) -> String {
        format!(
            r#"{{"type":"record","name":"Thing","namespace":"storeflow.v1","fields":[
            {{"name":"event_id","type":{{"type":"string","logicalType":"uuid"}},"doc":"id"}},
            {{"name":"occurred_at","type":{{"type":"long","logicalType":"timestamp-millis"}},"doc":"t"}}{extra}]}}"#
        )
    }

    fn run(d: &tempfile::TempDir) -> Report {
        check(&d.path().join("schemas"), &d.path().join("history")).unwrap()
    }

    #[test]
    fn adding_a_field_without_a_default_fails_and_names_it() {
        let d = setup(&thing(r#",{"name":"coupon","type":"string","doc":"c"}"#), &[&thing("")]);
        let r = run(&d);
        assert!(!r.passed());
        let text = r.findings[0].to_string();
        assert!(text.contains("coupon") && text.contains("default"), "{text}");
    }

    #[test]
    fn adding_an_optional_field_passes() {
        let d = setup(&thing(r#",{"name":"coupon","type":["null","string"],"default":null,"doc":"c"}"#), &[&thing("")]);
        let r = run(&d);
        assert!(r.passed(), "{:?}", r.findings);
        assert_eq!(r.findings[0].verdict, Verdict::Compatible { latest: 1 });
    }

    #[test]
    fn compatibility_is_transitive_over_every_frozen_version() {
        // v1 had no `n`; v2 added it with a default; the current one drops the default:
        // readable against v2 but not against v1.
        let v1 = thing("");
        let v2 = thing(r#",{"name":"n","type":"int","default":0,"doc":"n"}"#);
        let now = thing(r#",{"name":"n","type":"int","doc":"n"}"#);
        let r = run(&setup(&now, &[&v1, &v2]));
        assert!(matches!(r.findings[0].verdict, Verdict::Incompatible { against: 1, .. }), "{:?}", r.findings);
    }

    #[test]
    fn changing_a_type_incompatibly_fails() {
        let v1 = thing(r#",{"name":"n","type":"long","doc":"n"}"#);
        let now = thing(r#",{"name":"n","type":"int","doc":"n"}"#);
        assert!(!run(&setup(&now, &[&v1])).passed());
    }

    #[test]
    fn conventions_are_linted() {
        let bad = r#"{"type":"record","name":"Thing","namespace":"x","fields":[
            {"name":"price_minor","type":"double","doc":"p"},
            {"name":"paid_at","type":"string"}]}"#;
        let r = run(&setup(bad, &[]));
        let lint = &r.findings[0].lint;
        for needle in ["namespace", "event_id", "occurred_at", "price_minor", "paid_at", "doc", "currency"] {
            assert!(lint.iter().any(|l| l.contains(needle)), "no lint about {needle}: {lint:?}");
        }
    }

    #[test]
    fn freeze_writes_the_next_version_and_then_reports_unchanged() {
        let d = setup(&thing(r#",{"name":"coupon","type":["null","string"],"default":null,"doc":"c"}"#), &[&thing("")]);
        let written = freeze(&d.path().join("schemas"), &d.path().join("history")).unwrap();
        assert_eq!(written, vec![("Thing".to_string(), 2)]);
        assert_eq!(run(&d).findings[0].verdict, Verdict::Unchanged { version: 2 });
    }

    #[test]
    fn removing_a_frozen_schema_fails() {
        let d = setup(&thing(""), &[&thing("")]);
        std::fs::remove_file(d.path().join("schemas/Thing.avsc")).unwrap();
        assert!(!run(&d).passed());
    }
}
