//! Runtime metrics, for Prometheus (the API serves them at `/metrics`).
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `storeflow_processor_records_in_total` | processor | records handled |
//! | `storeflow_processor_records_out_total` | processor | outputs committed |
//! | `storeflow_processor_dlq_total` | processor | records sent to a dead-letter topic |
//! | `storeflow_processor_commit_seconds` | processor | transaction commit latency |
//! | `storeflow_processor_lag` | processor, topic, partition | records not yet handled |
//! | `storeflow_processor_restored_total` | processor | changelog records replayed into state |
//! | `storeflow_processor_restore_remaining` | processor | changelog records still to replay |
//! | `storeflow_processor_buffered` | processor | records fetched but not processed yet (waiting for their turn in event-time order) |

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels naming a processor.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProcessorLabel {
    /// Processor name.
    pub processor: String,
}

/// Labels naming a processor's input partition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// Processor name.
    pub processor: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: String,
}

/// The runtime's metrics.
pub struct Metrics {
    /// Records handled.
    pub records_in: Family<ProcessorLabel, Counter>,
    /// Outputs committed.
    pub records_out: Family<ProcessorLabel, Counter>,
    /// Records dead-lettered.
    pub dlq: Family<ProcessorLabel, Counter>,
    /// Commit latency.
    pub commit_seconds: Family<ProcessorLabel, Histogram>,
    /// Lag per input partition.
    pub lag: Family<PartitionLabels, Gauge>,
    /// Changelog records restored.
    pub restored: Family<ProcessorLabel, Counter>,
    /// Changelog records left to restore.
    pub restore_remaining: Family<ProcessorLabel, Gauge>,
    /// Records fetched and not processed yet.
    pub buffered: Family<ProcessorLabel, Gauge>,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            records_in: Family::default(),
            records_out: Family::default(),
            dlq: Family::default(),
            commit_seconds: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 14))),
            lag: Family::default(),
            restored: Family::default(),
            restore_remaining: Family::default(),
            buffered: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("storeflow_processor");
        r.register("records_in", "Records handled by a processor", m.records_in.clone());
        r.register("records_out", "Outputs a processor committed", m.records_out.clone());
        r.register("dlq", "Records a processor sent to a dead-letter topic", m.dlq.clone());
        r.register("commit_seconds", "Latency of a processor's transaction commits", m.commit_seconds.clone());
        r.register("lag", "Records of an input partition not yet handled", m.lag.clone());
        r.register("restored", "Changelog records replayed into a processor's state", m.restored.clone());
        r.register("restore_remaining", "Changelog records still to replay", m.restore_remaining.clone());
        r.register("buffered", "Records fetched but not processed yet (waiting for their turn in event-time order)", m.buffered.clone());
        m
    }

    /// Metrics that are counted but not exported (tests, tools).
    pub fn unregistered() -> Metrics {
        Metrics::register(&mut Registry::default())
    }

    pub(crate) fn label(processor: &str) -> ProcessorLabel {
        ProcessorLabel { processor: processor.to_string() }
    }
}
