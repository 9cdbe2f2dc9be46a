//! The compatibility gate for SQL outputs: each subject's schemas, version by version, in a
//! folder (`<data dir>/sql/schemas/<subject>/v<N>.avsc`); a new output must be readable by
//! the consumers of every earlier one (BACKWARD_TRANSITIVE, as the contract), or the
//! processor does not start.

use std::path::Path;

use apache_avro::schema_compatibility::SchemaCompatibility;

/// Admits `schema` for `subject`: its version (an existing one if it is unchanged, a new one
/// written to `history` if it is compatible with every earlier version), or why not.
pub fn admit(history: &Path, subject: &str, schema: &str) -> Result<u32, String> {
    let dir = history.join(subject);
    let new = apache_avro::Schema::parse_str(schema).map_err(|e| format!("the output schema does not parse: {e}"))?;
    let mut versions: Vec<(u32, String)> = Vec::new();
    if let Ok(read) = std::fs::read_dir(&dir) {
        for e in read.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(n) = name.strip_prefix('v').and_then(|n| n.strip_suffix(".avsc")).and_then(|n| n.parse().ok()) {
                let text = std::fs::read_to_string(e.path()).map_err(|err| format!("reading {}: {err}", e.path().display()))?;
                versions.push((n, text));
            }
        }
    }
    versions.sort();
    for (n, text) in &versions {
        let old = apache_avro::Schema::parse_str(text).map_err(|e| format!("{}/v{n}.avsc does not parse: {e}", dir.display()))?;
        if old.canonical_form() == new.canonical_form() && Some(n) == versions.last().map(|v| &v.0) {
            return Ok(*n);
        }
        if let Err(e) = SchemaCompatibility::can_read(&old, &new) {
            return Err(format!(
                "the query's output is not compatible with version {n} of {subject} ({}/v{n}.avsc): {e}. Readers of the topic could not read what it wrote before. Keep the old columns (add new ones as nullable), or write to a new topic with `-- to:`",
                dir.display()
            ));
        }
    }
    let next = versions.last().map(|v| v.0 + 1).unwrap_or(1);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let pretty = serde_json::from_str::<serde_json::Value>(schema).and_then(|v| serde_json::to_string_pretty(&v)).unwrap_or_else(|_| schema.to_string());
    std::fs::write(dir.join(format!("v{next}.avsc")), pretty + "\n").map_err(|e| format!("writing {}: {e}", dir.display()))?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(fields: &str) -> String {
        format!(r#"{{"type":"record","name":"X","namespace":"storeflow.sql","fields":[{fields}]}}"#)
    }

    #[test]
    fn an_unchanged_output_keeps_its_version_and_a_new_nullable_column_makes_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let a = schema(r#"{"name":"n","type":"long"}"#);
        assert_eq!(admit(dir.path(), "s", &a), Ok(1));
        assert_eq!(admit(dir.path(), "s", &a), Ok(1));
        let b = schema(r#"{"name":"n","type":"long"},{"name":"m","type":["null","string"],"default":null}"#);
        assert_eq!(admit(dir.path(), "s", &b), Ok(2));
    }

    #[test]
    fn an_output_that_drops_a_type_readers_need_is_refused_with_the_version_it_breaks() {
        let dir = tempfile::tempdir().unwrap();
        admit(dir.path(), "s", &schema(r#"{"name":"n","type":"long"}"#)).unwrap();
        let e = admit(dir.path(), "s", &schema(r#"{"name":"n","type":"string"}"#)).unwrap_err();
        assert!(e.contains("not compatible with version 1"), "{e}");
        let e = admit(dir.path(), "s", &schema(r#"{"name":"n","type":"long"},{"name":"m","type":"long"}"#)).unwrap_err();
        assert!(e.contains("version 1"), "{e}");
    }
}
