//! How a processor's inputs and outputs travel on the log.
//!
//! Domain processors read and write contract [`Event`]s (Avro, Confluent wire format). The
//! runtime itself is indifferent to the payload: any type implementing [`Wire`] works, which
//! is how the runtime's own tests run processors over simple JSON records.

use storeflow_avro::{Codec, Event};

/// A value the runtime can decode from and encode to a record.
pub trait Wire: Sized + Send + 'static {
    /// Decodes a record's value; `Err` is a permanent error (the record goes to the DLQ).
    fn decode(codec: &Codec, bytes: &[u8]) -> Result<Self, String>;
    /// Encodes a value for the log.
    fn encode(&self, codec: &Codec) -> Result<Vec<u8>, String>;
    /// The topic [`crate::Ctx::emit`] sends it to.
    fn topic(&self) -> String;
    /// Its partitioning key.
    fn key(&self) -> String;
    /// Its event time, in milliseconds since the epoch.
    fn time(&self) -> i64;
    /// A short type name, for the DLQ and metrics.
    fn kind(&self) -> &'static str;
}

impl Wire for Event {
    fn decode(codec: &Codec, bytes: &[u8]) -> Result<Self, String> {
        codec.decode(bytes).map_err(|e| e.to_string())
    }
    fn encode(&self, codec: &Codec) -> Result<Vec<u8>, String> {
        codec.encode(self).map_err(|e| e.to_string())
    }
    fn topic(&self) -> String {
        Event::topic(self).name().to_string()
    }
    fn key(&self) -> String {
        Event::key(self)
    }
    fn time(&self) -> i64 {
        self.occurred_at().millis()
    }
    fn kind(&self) -> &'static str {
        self.name()
    }
}
