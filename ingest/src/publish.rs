//! Publishing events: encode with the codec (Confluent wire format), key by the event's
//! topic key, and hand to a producer. The API and the simulator both publish through here,
//! and both seal personal data first ([`storeflow_avro::pii::Vault::prepare`]).

use std::sync::Arc;

use storeflow_avro::pii::Vault;
use storeflow_avro::{Codec, Event, Topic};

use crate::log::{Log, Producer};
use crate::types::{DeliveryFuture, Header, ProduceRecord, TopicSpec};
use crate::{LogError, Result};

/// Header naming the event type of a record, so tools can filter without decoding.
pub const EVENT_TYPE_HEADER: &str = "storeflow.event_type";

/// The record for `event` on its topic.
pub fn record_for(codec: &Codec, event: &Event) -> Result<ProduceRecord> {
    let value = codec
        .encode(event)
        .map_err(|e| LogError::InvalidConfig(format!("encoding {}: {e}", event.name())))?;
    Ok(ProduceRecord {
        topic: event.topic().name().to_string(),
        partition: None,
        key: Some(event.key().into_bytes()),
        value: Some(value),
        headers: vec![Header::text(EVENT_TYPE_HEADER, event.name())],
        timestamp: Some(event.occurred_at().millis()),
    })
}

/// The record for `event` as a producer of input events publishes it: its personal data
/// sealed with `vault` (and, for `CustomerErased`, the customer's key shredded) first.
pub fn sealed_record_for(codec: &Codec, vault: &Vault, event: &Event) -> Result<ProduceRecord> {
    let event = vault
        .prepare(event)
        .map_err(|source| LogError::Io { context: "sealing personal data with the vault".into(), source })?;
    record_for(codec, &event)
}

/// Encodes and publishes events, their personal data sealed.
pub struct Publisher {
    codec: Arc<Codec>,
    vault: Arc<Vault>,
    producer: Box<dyn Producer>,
}

impl Publisher {
    /// A publisher on `log`, sealing personal data with `vault`.
    pub fn new(log: &dyn Log, codec: Arc<Codec>, vault: Arc<Vault>) -> Result<Self> {
        Ok(Publisher {
            codec,
            vault,
            producer: log.producer()?,
        })
    }

    /// Publishes one event.
    pub fn publish(&self, event: &Event) -> Result<DeliveryFuture> {
        self.producer.send(sealed_record_for(&self.codec, &self.vault, event)?)
    }

    /// Publishes many events (one write per partition on the embedded log).
    pub fn publish_batch(&self, events: &[Event]) -> Result<Vec<DeliveryFuture>> {
        let records = events
            .iter()
            .map(|e| sealed_record_for(&self.codec, &self.vault, e))
            .collect::<Result<Vec<_>>>()?;
        self.producer.send_batch(records)
    }

    /// Waits for every acknowledgement.
    pub fn flush(&self, timeout: std::time::Duration) -> Result<()> {
        self.producer.flush(timeout)
    }
}

/// The topics of the contract (and their dead-letter topics) with `partitions` partitions
/// each (topics that need one, like exchange rates, keep one).
pub fn contract_topics(partitions: Option<u32>) -> Vec<TopicSpec> {
    let mut specs = Vec::new();
    for t in Topic::ALL {
        let n = match (t, partitions) {
            (Topic::ExchangeRates, _) => 1,
            (_, Some(n)) => n,
            (_, None) => t.default_partitions(),
        };
        specs.push(TopicSpec::new(t.name(), n));
        specs.push(TopicSpec::new(&t.dlq_name(), 1));
    }
    specs
}
