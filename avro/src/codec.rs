//! The Confluent wire format: `0x00`, a big-endian 4-byte schema id, then the Avro binary
//! datum. The same bytes go on the embedded log and on Kafka.
//!
//! Encoding and decoding use `serde_avro_fast` straight into the typed structs (measured at
//! well over 10× apache-avro's generic `Value` path; see `docs/PERFORMANCE.md`). A record
//! written with an older version of its schema decodes with that writer schema into the
//! current struct: fields the old writer did not have take their Avro defaults (mirrored by
//! `#[serde(default)]`), fields it had that we dropped are skipped.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::event::{EVENT_TYPES, Event, EventType};
use crate::registry::{EmbeddedRegistry, SchemaRegistry};
use crate::{AvroError, Result};

/// The magic byte that starts every Confluent-framed value.
pub const MAGIC: u8 = 0;
/// Bytes before the datum: magic + schema id.
pub const HEADER_LEN: usize = 5;

struct Current {
    id: u32,
    fast: serde_avro_fast::Schema,
}

struct Writer {
    type_index: usize,
    fast: serde_avro_fast::Schema,
}

/// Encodes and decodes events in the Confluent wire format.
pub struct Codec {
    registry: Arc<dyn SchemaRegistry>,
    current: Vec<Current>,
    writers: RwLock<HashMap<u32, Arc<Writer>>>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("registry", &self.registry.describe())
            .field("types", &self.current.len())
            .finish()
    }
}

fn parse_fast(name: &str, json: &str) -> Result<serde_avro_fast::Schema> {
    json.parse::<serde_avro_fast::Schema>()
        .map_err(|e| AvroError::Schema {
            name: name.to_string(),
            reason: e.to_string(),
        })
}

impl Codec {
    /// A codec on the embedded registry (local mode).
    pub fn embedded() -> Result<Codec> {
        Codec::new(Arc::new(EmbeddedRegistry::new()?))
    }

    /// A codec that registers every current schema with `registry` (under the subject
    /// `<topic>-storeflow.v1.<Name>`) and encodes with the ids it returns.
    pub fn new(registry: Arc<dyn SchemaRegistry>) -> Result<Codec> {
        let mut current = Vec::with_capacity(EVENT_TYPES.len());
        let mut writers = HashMap::new();
        for (i, t) in EVENT_TYPES.iter().enumerate() {
            let id = registry.register(&t.subject(), t.schema)?;
            current.push(Current {
                id,
                fast: parse_fast(t.name, t.schema)?,
            });
            writers.insert(
                id,
                Arc::new(Writer {
                    type_index: i,
                    fast: parse_fast(t.name, t.schema)?,
                }),
            );
        }
        Ok(Codec {
            registry,
            current,
            writers: RwLock::new(writers),
        })
    }

    /// The registry behind this codec.
    pub fn registry(&self) -> &Arc<dyn SchemaRegistry> {
        &self.registry
    }

    /// The id the current schema of `t` is registered under.
    pub fn schema_id(&self, t: &EventType) -> u32 {
        self.current[t.index()].id
    }

    /// Encodes `event` as a new buffer.
    pub fn encode(&self, event: &Event) -> Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(128);
        self.encode_into(event, &mut buf)?;
        Ok(buf)
    }

    /// Appends the encoding of `event` to `buf`.
    pub fn encode_into(&self, event: &Event, buf: &mut Vec<u8>) -> Result<()> {
        let cur = &self.current[event.type_index()];
        buf.push(MAGIC);
        buf.extend_from_slice(&cur.id.to_be_bytes());
        let start = buf.len();
        match event.write_datum(&mut *buf, &cur.fast) {
            Ok(_) => Ok(()),
            Err(e) => {
                buf.truncate(start - HEADER_LEN);
                Err(AvroError::Encode {
                    name: event.name(),
                    reason: e.to_string(),
                })
            }
        }
    }

    /// Decodes a Confluent-framed value into an event.
    pub fn decode(&self, bytes: &[u8]) -> Result<Event> {
        let id = schema_id(bytes)?;
        let writer = self.writer(id)?;
        Event::read_datum(writer.type_index, &bytes[HEADER_LEN..], &writer.fast).map_err(|e| {
            AvroError::Decode {
                name: EVENT_TYPES[writer.type_index].name,
                schema_id: id,
                reason: e.to_string(),
            }
        })
    }

    /// The event type a framed value holds, without decoding it.
    pub fn event_type_of(&self, bytes: &[u8]) -> Result<&'static EventType> {
        let id = schema_id(bytes)?;
        Ok(&EVENT_TYPES[self.writer(id)?.type_index])
    }

    fn writer(&self, id: u32) -> Result<Arc<Writer>> {
        if let Some(w) = self.writers.read().get(&id) {
            return Ok(w.clone());
        }
        // An older (or newer) version of one of our types: fetch it once and keep it.
        let json = self.registry.schema_by_id(id)?;
        let parsed = apache_avro::Schema::parse_str(&json).map_err(|e| AvroError::Schema {
            name: format!("schema id {id}"),
            reason: e.to_string(),
        })?;
        let full_name = match &parsed {
            apache_avro::Schema::Record(r) => r.name.fullname(None),
            other => {
                return Err(AvroError::Schema {
                    name: format!("schema id {id}"),
                    reason: format!("expected a record, found {:?}", apache_avro::schema::SchemaKind::from(other)),
                });
            }
        };
        let t = EventType::by_name(&full_name).ok_or(AvroError::UnknownEventType(full_name))?;
        let w = Arc::new(Writer {
            type_index: t.index(),
            fast: parse_fast(t.name, &json)?,
        });
        self.writers.write().insert(id, w.clone());
        Ok(w)
    }
}

/// The schema id in a Confluent-framed value.
pub fn schema_id(bytes: &[u8]) -> Result<u32> {
    if bytes.len() < HEADER_LEN {
        return Err(AvroError::Framing(format!(
            "{} bytes is too short for the 5-byte header",
            bytes.len()
        )));
    }
    if bytes[0] != MAGIC {
        return Err(AvroError::Framing(format!(
            "first byte is {:#04x}, not the magic byte 0x00 of the Confluent wire format",
            bytes[0]
        )));
    }
    Ok(u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]))
}
