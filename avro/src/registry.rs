//! Schema registries: where the 4-byte schema id of the Confluent wire format comes from.
//!
//! - [`EmbeddedRegistry`] (local mode) knows every schema compiled into the binary — the
//!   current `avro/schemas/` and every frozen version in `avro/history/` — and gives each a
//!   stable id derived from its Avro fingerprint, so the same schema gets the same id on
//!   every machine and in every run, and records written by older versions stay readable.
//! - [`HttpRegistry`] (distributed mode): a Confluent-compatible registry over HTTP
//!   (`schema_registry_converter`) assigns the ids; registering an incompatible version is
//!   refused by the registry itself under its compatibility setting.

use std::collections::HashMap;

use apache_avro::rabin::Rabin;
use parking_lot::RwLock;

use crate::event::EVENT_TYPES;
use crate::{AvroError, Result};

include!(concat!(env!("OUT_DIR"), "/history.rs"));

/// Where schema ids come from.
pub trait SchemaRegistry: Send + Sync {
    /// Registers `schema` (JSON) under `subject` — or finds it if it is already there — and
    /// returns its id.
    fn register(&self, subject: &str, schema: &str) -> Result<u32>;

    /// The schema (JSON) with this id.
    fn schema_by_id(&self, id: u32) -> Result<String>;

    /// A short description for start-up messages, e.g. `embedded` or the registry's URL.
    fn describe(&self) -> String;
}

/// The stable id of a schema: the low 31 bits of its CRC-64-AVRO (Rabin) fingerprint over
/// the Parsing Canonical Form, never 0.
pub fn stable_id(schema: &apache_avro::Schema) -> u32 {
    let fp = schema.fingerprint::<Rabin>().bytes;
    let mut b = [0u8; 8];
    b.copy_from_slice(&fp[..8]);
    let id = (u64::from_le_bytes(b) & 0x7fff_ffff) as u32;
    id.max(1)
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<u32, String>,
    subjects: HashMap<String, Vec<u32>>,
}

/// The registry of local mode: stable fingerprint ids, nothing to run.
pub struct EmbeddedRegistry {
    inner: RwLock<Inner>,
}

impl EmbeddedRegistry {
    /// A registry that already knows every current and frozen schema of the contract.
    pub fn new() -> Result<Self> {
        let reg = EmbeddedRegistry {
            inner: RwLock::new(Inner::default()),
        };
        for (name, _version, json) in HISTORY {
            let Some(t) = crate::EventType::by_name(name) else {
                // A removed event type: keep its id resolvable for old records.
                reg.register(&format!("history-storeflow.v1.{name}"), json)?;
                continue;
            };
            reg.register(&t.subject(), json)?;
        }
        for t in EVENT_TYPES {
            reg.register(&t.subject(), t.schema)?;
        }
        Ok(reg)
    }

    /// The id `schema` already has under `subject`, if it is registered there.
    pub fn register_probe(&self, subject: &str, schema: &apache_avro::Schema) -> Option<u32> {
        let id = stable_id(schema);
        let inner = self.inner.read();
        inner.subjects.get(subject).filter(|ids| ids.contains(&id)).map(|_| id)
    }

    /// The ids registered under `subject`, oldest first (version N is element N−1).
    pub fn versions(&self, subject: &str) -> Option<Vec<u32>> {
        self.inner.read().subjects.get(subject).cloned()
    }

    /// Every subject and the ids registered under it, oldest first.
    pub fn subjects(&self) -> Vec<(String, Vec<u32>)> {
        let inner = self.inner.read();
        let mut v: Vec<_> = inner
            .subjects
            .iter()
            .map(|(s, ids)| (s.clone(), ids.clone()))
            .collect();
        v.sort();
        v
    }
}

impl SchemaRegistry for EmbeddedRegistry {
    fn register(&self, subject: &str, schema: &str) -> Result<u32> {
        let parsed = apache_avro::Schema::parse_str(schema).map_err(|e| AvroError::Schema {
            name: subject.to_string(),
            reason: e.to_string(),
        })?;
        let id = stable_id(&parsed);
        let canonical = parsed.canonical_form();
        let mut inner = self.inner.write();
        if let Some(existing) = inner.by_id.get(&id) {
            let existing = apache_avro::Schema::parse_str(existing)
                .map(|s| s.canonical_form())
                .unwrap_or_default();
            if existing != canonical {
                return Err(AvroError::Schema {
                    name: subject.to_string(),
                    reason: format!("schema id {id} collides with another schema; change a doc string or field order to get a new fingerprint"),
                });
            }
        } else {
            inner.by_id.insert(id, schema.to_string());
        }
        let ids = inner.subjects.entry(subject.to_string()).or_default();
        if !ids.contains(&id) {
            ids.push(id);
        }
        Ok(id)
    }

    fn schema_by_id(&self, id: u32) -> Result<String> {
        self.inner
            .read()
            .by_id
            .get(&id)
            .cloned()
            .ok_or(AvroError::UnknownSchemaId(id))
    }

    fn describe(&self) -> String {
        "embedded (stable fingerprint ids)".to_string()
    }
}

/// A Confluent-compatible schema registry over HTTP (Confluent, Karapace, Apicurio's
/// `ccompat` API). Calls block; they happen at start-up (registration) and once per unknown
/// schema id when decoding.
pub struct HttpRegistry {
    url: String,
    settings: schema_registry_converter::blocking::schema_registry::SrSettings,
    by_id: RwLock<HashMap<u32, String>>,
}

impl HttpRegistry {
    /// A client for the registry at `url` (e.g. `http://127.0.0.1:8081`).
    pub fn new(url: &str) -> Result<Self> {
        let settings = schema_registry_converter::blocking::schema_registry::SrSettings::new_builder(url.to_string())
            .set_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| AvroError::Registry(format!("{url}: {e}")))?;
        Ok(HttpRegistry {
            url: url.to_string(),
            settings,
            by_id: RwLock::new(HashMap::new()),
        })
    }
}

impl SchemaRegistry for HttpRegistry {
    fn register(&self, subject: &str, schema: &str) -> Result<u32> {
        use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
        let parsed = apache_avro::Schema::parse_str(schema).map_err(|e| AvroError::Schema {
            name: subject.to_string(),
            reason: e.to_string(),
        })?;
        let name = match &parsed {
            apache_avro::Schema::Record(r) => Some(r.name.fullname(None)),
            _ => None,
        };
        let supplied = SuppliedSchema::new(name, SchemaType::Avro, schema.to_string());
        let registered = schema_registry_converter::blocking::schema_registry::post_schema(
            &self.settings,
            subject.to_string(),
            supplied,
        )
        .map_err(|e| AvroError::Registry(format!("registering {subject} at {}: {e}", self.url)))?;
        self.by_id.write().insert(registered.id, schema.to_string());
        Ok(registered.id)
    }

    fn schema_by_id(&self, id: u32) -> Result<String> {
        if let Some(s) = self.by_id.read().get(&id) {
            return Ok(s.clone());
        }
        let got = schema_registry_converter::blocking::schema_registry::get_schema_by_id(id, &self.settings)
            .map_err(|e| AvroError::Registry(format!("schema id {id} at {}: {e}", self.url)))?;
        self.by_id.write().insert(id, got.schema.clone());
        Ok(got.schema)
    }

    fn describe(&self) -> String {
        format!("schema registry at {}", self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct_for_every_current_schema() {
        let a = EmbeddedRegistry::new().unwrap();
        let b = EmbeddedRegistry::new().unwrap();
        let mut seen = std::collections::HashSet::new();
        for t in EVENT_TYPES {
            let ida = a.register(&t.subject(), t.schema).unwrap();
            let idb = b.register(&t.subject(), t.schema).unwrap();
            assert_eq!(ida, idb, "{} got two ids", t.name);
            assert!(seen.insert(ida), "{} shares id {ida}", t.name);
            assert_eq!(a.schema_by_id(ida).unwrap(), t.schema);
        }
    }

    #[test]
    fn an_unknown_id_is_an_error_not_a_panic() {
        let r = EmbeddedRegistry::new().unwrap();
        assert!(matches!(r.schema_by_id(0), Err(AvroError::UnknownSchemaId(0))));
    }
}
