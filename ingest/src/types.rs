//! The values that cross the log traits: records in and out, topic-partitions, topic specs,
//! consumer settings and delivery acknowledgements.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;

use crate::{LogError, Result};

/// A partition of a topic.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: Arc<str>,
    /// Partition number, from 0.
    pub partition: u32,
}

impl TopicPartition {
    /// `topic`/`partition`.
    pub fn new(topic: &str, partition: u32) -> Self {
        TopicPartition {
            topic: Arc::from(topic),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// A record header (Kafka headers: a name and bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Header name.
    pub key: String,
    /// Header value.
    pub value: Vec<u8>,
}

impl Header {
    /// A header with a UTF-8 value.
    pub fn text(key: &str, value: impl Into<String>) -> Self {
        Header {
            key: key.to_string(),
            value: value.into().into_bytes(),
        }
    }
}

/// A record to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProduceRecord {
    /// Destination topic.
    pub topic: String,
    /// Partition; `None` lets the partitioner choose from the key (Kafka's murmur2).
    pub partition: Option<u32>,
    /// Partitioning key.
    pub key: Option<Vec<u8>>,
    /// Payload; `None` is a tombstone on compacted topics.
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<Header>,
    /// Milliseconds since the epoch; `None` means now.
    pub timestamp: Option<i64>,
}

impl ProduceRecord {
    /// A keyed record.
    pub fn new(topic: &str, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        ProduceRecord {
            topic: topic.to_string(),
            partition: None,
            key: Some(key.into()),
            value: Some(value.into()),
            headers: Vec::new(),
            timestamp: None,
        }
    }

    /// Sets the timestamp.
    pub fn at(mut self, millis: i64) -> Self {
        self.timestamp = Some(millis);
        self
    }

    /// Adds a header.
    pub fn header(mut self, h: Header) -> Self {
        self.headers.push(h);
        self
    }

    /// Sends to a fixed partition.
    pub fn to_partition(mut self, p: u32) -> Self {
        self.partition = Some(p);
        self
    }
}

/// A record read from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Topic it was read from.
    pub topic: Arc<str>,
    /// Partition it was read from.
    pub partition: u32,
    /// Its offset in the partition.
    pub offset: u64,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// Partitioning key.
    pub key: Option<Bytes>,
    /// Payload (`None`: tombstone).
    pub value: Option<Bytes>,
    /// Headers.
    pub headers: Vec<Header>,
}

impl Record {
    /// The topic-partition it came from.
    pub fn tp(&self) -> TopicPartition {
        TopicPartition {
            topic: self.topic.clone(),
            partition: self.partition,
        }
    }

    /// The value of header `key`, if present.
    pub fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.key == key)
            .map(|h| h.value.as_slice())
    }
}

/// Where a produced record landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Partition.
    pub partition: u32,
    /// Offset.
    pub offset: u64,
}

type BoxedDelivery = Pin<Box<dyn Future<Output = Result<Delivery>> + Send>>;

/// The acknowledgement of one produced record: `.await` it, or `.wait()` on a thread.
pub struct DeliveryFuture(DeliveryState);

enum DeliveryState {
    Ready(Option<Result<Delivery>>),
    Pending(BoxedDelivery),
}

impl DeliveryFuture {
    /// An acknowledgement that is already known.
    pub fn ready(r: Result<Delivery>) -> Self {
        DeliveryFuture(DeliveryState::Ready(Some(r)))
    }

    /// An acknowledgement that arrives later.
    pub fn pending(f: impl Future<Output = Result<Delivery>> + Send + 'static) -> Self {
        DeliveryFuture(DeliveryState::Pending(Box::pin(f)))
    }

    /// Blocks the current thread until the record is acknowledged. Do not call it on an
    /// async runtime's thread; `.await` instead.
    pub fn wait(self) -> Result<Delivery> {
        match self.0 {
            DeliveryState::Ready(r) => r.unwrap_or(Err(LogError::Closed)),
            DeliveryState::Pending(f) => futures::executor::block_on(f),
        }
    }
}

impl Future for DeliveryFuture {
    type Output = Result<Delivery>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            DeliveryState::Ready(r) => Poll::Ready(r.take().unwrap_or(Err(LogError::Closed))),
            DeliveryState::Pending(f) => f.as_mut().poll(cx),
        }
    }
}

/// How a topic is created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Number of partitions.
    pub partitions: u32,
    /// `cleanup.policy=compact`: keep the latest record per key (changelogs).
    pub compact: bool,
    /// Delete data older than this (`None`: the log's default).
    pub retention: Option<Duration>,
}

impl TopicSpec {
    /// A delete-policy topic with `partitions` partitions.
    pub fn new(name: &str, partitions: u32) -> Self {
        TopicSpec {
            name: name.to_string(),
            partitions,
            compact: false,
            retention: None,
        }
    }

    /// A compacted topic (a changelog).
    pub fn compacted(name: &str, partitions: u32) -> Self {
        TopicSpec {
            compact: true,
            ..TopicSpec::new(name, partitions)
        }
    }
}

/// A topic as it exists on the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Whether it is compacted.
    pub compact: bool,
    /// One entry per partition.
    pub partitions: Vec<PartitionInfo>,
}

impl TopicInfo {
    /// Records currently held (sum over partitions of end − start).
    pub fn records(&self) -> u64 {
        self.partitions.iter().map(|p| p.end - p.start).sum()
    }
}

/// Offsets of one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition number.
    pub partition: u32,
    /// First offset still held (retention moves it).
    pub start: u64,
    /// Offset the next committed record will get (the high watermark for read_committed).
    pub end: u64,
}

/// Where a consumer starts in a partition that has no committed offset for its group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OffsetReset {
    /// The oldest record still held.
    #[default]
    Earliest,
    /// Only records produced from now on.
    Latest,
}

/// Settings for a consumer.
#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    /// Consumer group: members share partitions and committed offsets.
    pub group: String,
    /// Where to start without a committed offset.
    pub reset: OffsetReset,
    /// Read only committed transactional records (always true on the embedded log).
    pub read_committed: bool,
    /// Give a member partition p of every subscribed topic together (co-partitioned topics
    /// meet in one task). Kafka: the range assignor instead of cooperative-sticky. The
    /// embedded log always assigns this way.
    pub co_partitioned: bool,
    /// Backend-specific properties (librdkafka names on Kafka).
    pub properties: Vec<(String, String)>,
}

impl ConsumerConfig {
    /// A read_committed consumer of `group`, starting at the earliest offset.
    pub fn new(group: &str) -> Self {
        ConsumerConfig {
            group: group.to_string(),
            reset: OffsetReset::Earliest,
            read_committed: true,
            co_partitioned: false,
            properties: Vec::new(),
        }
    }
}

/// Identifies a consumer's group membership when its offsets are committed inside a
/// transaction, so a member that lost its partitions (a zombie) cannot commit for them.
#[derive(Clone, Debug)]
pub struct GroupMetadata {
    /// Group id.
    pub group: String,
    /// Member id within the group.
    pub member: String,
    /// Group generation the member belongs to.
    pub generation: u64,
    /// Backend-specific token (Kafka's `ConsumerGroupMetadata`).
    pub(crate) backend: Option<Arc<dyn std::any::Any + Send + Sync>>,
}
