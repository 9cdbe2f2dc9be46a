//! The log: how events enter storeflow and move between its parts.
//!
//! - [`log`] — the trait family ([`Log`], [`Producer`], [`Consumer`],
//!   [`TransactionalProducer`]) that processors, sinks, the API and the simulator use.
//! - [`embedded`] — the embedded segment log (local mode, the default).
//! - [`kafka`] — the Kafka backend (distributed mode), on rdkafka.
//! - [`partitioner`] — Kafka's murmur2 partitioner, so keys land alike on both backends.
//! - `contract` (feature `contract-tests`) — the behaviour every backend must show, as a
//!   test suite generic over the backend.
//! - [`publish`] — encoding events and publishing them to their topics.

pub mod backoff;
pub mod dlq;
pub mod embedded;
pub mod kafka;
pub mod log;
pub mod partitioner;
pub mod publish;
pub mod threads;
pub mod types;

#[cfg(feature = "contract-tests")]
pub mod contract;

pub use backoff::Backoff;
pub use embedded::{EmbeddedConfig, EmbeddedLog, FsyncPolicy};
pub use kafka::{KafkaLog, KafkaSettings};
pub use log::{Consumer, Log, OffsetCommitter, Producer, RebalanceListener, TransactionalProducer};
pub use types::*;

/// What can go wrong on the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The topic does not exist (create it first: `storeflow topics create`, or `run`).
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    /// The partition does not exist.
    #[error("partition {0} does not exist")]
    UnknownPartition(String),
    /// The consumer does not read this partition.
    #[error("partition {0} is not assigned to this consumer")]
    NotAssigned(String),
    /// A group member tried to commit for a partition it does not own (it was rebalanced
    /// away: a zombie).
    #[error("group {group}: this member does not own {partition} (it moved to another member)")]
    NotOwner { group: String, partition: String },
    /// A newer producer with the same transactional id exists; this one must stop.
    #[error("transactional producer {0} was fenced by a newer instance")]
    Fenced(String),
    /// A transaction API was used out of order.
    #[error("transaction: {0}")]
    Transaction(String),
    /// The log data directory is in use by another process.
    #[error("{dir} is in use by another storeflow process ({holder}); stop it or use another --data-dir")]
    Locked { dir: String, holder: String },
    /// Data on disk does not have the shape it must have.
    #[error("corrupt log data: {0}")]
    Corrupt(String),
    /// A configuration value is wrong.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Kafka reported an error.
    #[error("kafka: {message}")]
    Kafka { message: String, retriable: bool },
    /// The operation did not finish in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The consumer or producer is closed.
    #[error("closed")]
    Closed,
}

impl LogError {
    /// True when trying again later may succeed (a broker restarting, a timeout, a full
    /// disk); false when the operation can never succeed as it is.
    pub fn is_retriable(&self) -> bool {
        match self {
            LogError::Kafka { retriable, .. } => *retriable,
            LogError::Timeout(_) => true,
            // A full disk passes when the operator frees space (the embedded log takes
            // appends again on the same handle: tests/embedded_disk_full.rs).
            LogError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::StorageFull
                    | std::io::ErrorKind::QuotaExceeded
            ),
            _ => false,
        }
    }
}

/// Result with [`LogError`].
pub type Result<T, E = LogError> = std::result::Result<T, E>;
