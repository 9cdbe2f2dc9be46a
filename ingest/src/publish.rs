//! Publishing events: encode with the codec (Confluent wire format), key by the event's
//! topic key, and hand to a producer. The API and the simulator both publish through here.

use std::sync::Arc;

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

/// Encodes and publishes events.
pub struct Publisher {
    codec: Arc<Codec>,
    producer: Box<dyn Producer>,
}

impl Publisher {
    /// A publisher on `log`.
    pub fn new(log: &dyn Log, codec: Arc<Codec>) -> Result<Self> {
        Ok(Publisher {
            codec,
            producer: log.producer()?,
        })
    }

    /// Publishes one event.
    pub fn publish(&self, event: &Event) -> Result<DeliveryFuture> {
        self.producer.send(record_for(&self.codec, event)?)
    }

    /// Publishes many events (one write per partition on the embedded log).
    pub fn publish_batch(&self, events: &[Event]) -> Result<Vec<DeliveryFuture>> {
        let records = events
            .iter()
            .map(|e| record_for(&self.codec, e))
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
