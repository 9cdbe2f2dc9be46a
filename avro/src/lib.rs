//! The storeflow event contract.
//!
//! - `avro/schemas/*.avsc` — one Avro schema per event type (namespace `storeflow.v1`); the
//!   source of truth, compiled into the binary.
//! - [`events`] — the Rust type of each schema; [`Event`] — one enum over all of them, with
//!   the [`Topic`] each belongs to and its partitioning key.
//! - [`Codec`] — Avro binary in the Confluent wire format (magic byte, 4-byte schema id,
//!   datum), fast typed encode/decode.
//! - [`registry`] — where schema ids come from: the embedded registry (local mode) or a
//!   Confluent-compatible registry over HTTP (distributed mode).
//! - [`compat`] — the compatibility gate behind `storeflow schemas check`.
//! - [`states`] — an order's status, payment and fulfillment states and its legal moves.
//! - [`json`] — events as JSON (`{"type": "OrderPlaced", ...}`), validated against the
//!   schema with errors that name the field.

pub mod codec;
pub mod compat;
pub mod event;
pub mod events;
#[doc(hidden)]
pub mod fuzzing;
pub mod geo;
pub mod json;
pub mod money;
pub mod pii;
pub mod registry;
pub mod states;
mod timestamp;

pub use codec::Codec;
pub use event::{EVENT_TYPES, Event, EventKind, EventType, Topic, dlq_topic};
pub use events::*;
pub use json::{FieldLimits, JsonOptions, ValidationError};
pub use registry::{EmbeddedRegistry, HttpRegistry, SchemaRegistry};
pub use states::{FulfillmentStatus, OrderStatus, PaymentStatus};
pub use timestamp::{TimeBounds, Timestamp};

/// The Avro namespace of every event type.
pub const NAMESPACE: &str = "storeflow.v1";

/// What can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum AvroError {
    /// A schema does not parse or cannot be registered.
    #[error("schema {name}: {reason}")]
    Schema { name: String, reason: String },
    /// No schema with this id is known to the registry.
    #[error("no schema with id {0} in the registry")]
    UnknownSchemaId(u32),
    /// A record's schema names a type this storeflow does not know.
    #[error("record type {0} is not part of this storeflow's contract")]
    UnknownEventType(String),
    /// The bytes are not in the Confluent wire format.
    #[error("not a Confluent-framed Avro value: {0}")]
    Framing(String),
    /// The datum does not match its writer schema.
    #[error("cannot decode {name} (schema id {schema_id}): {reason}")]
    Decode {
        name: &'static str,
        schema_id: u32,
        reason: String,
    },
    /// The event does not fit its own schema (a bug in the contract types).
    #[error("cannot encode {name}: {reason}")]
    Encode { name: &'static str, reason: String },
    /// The schema registry could not be reached or refused a request.
    #[error("schema registry: {0}")]
    Registry(String),
    /// Reading or writing schema files.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Result with [`AvroError`].
pub type Result<T, E = AvroError> = std::result::Result<T, E>;

fn error_io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> AvroError + '_ {
    move |source| AvroError::Io {
        path: path.display().to_string(),
        source,
    }
}
