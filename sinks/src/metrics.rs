//! Sink metrics, for Prometheus (the API serves them at `/metrics`).
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `storeflow_sink_records_written_total` | sink | records written durably |
//! | `storeflow_sink_records_skipped_total` | sink | records of the sink's topics it has nothing to write for |
//! | `storeflow_sink_dlq_total` | sink | records sent to a dead-letter topic |
//! | `storeflow_sink_errors_total` | sink, kind | failed writes (`transient`: retried; `timeout`: no answer within `[sinks] write_timeout_ms`, retried; `permanent`: bisected to the bad record; `panic`: likewise) |
//! | `storeflow_sink_batch_records` | sink | records per batch |
//! | `storeflow_sink_write_seconds` | sink | latency of a batch write, retries included |
//! | `storeflow_sink_lag` | sink, topic, partition | records not yet written |

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels naming a sink.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabel {
    /// Sink name.
    pub sink: String,
}

/// Labels naming a sink and an error kind.
/// The `kind`s of `storeflow_sink_errors_total`: `transient` (retried), `permanent`
/// (bisected, then dead-lettered), `timeout` (a write past `[sinks] write_timeout_ms`,
/// retried), `panic` (the write panicked: the record is dead-lettered).
pub const ERROR_KINDS: [&str; 4] = ["transient", "permanent", "timeout", "panic"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Sink name.
    pub sink: String,
    /// One of [`ERROR_KINDS`].
    pub kind: String,
}

/// Labels naming a sink's input partition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// Sink name.
    pub sink: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: String,
}

/// The sinks' metrics.
#[derive(Clone)]
pub struct SinkMetrics {
    /// Records written.
    pub written: Family<SinkLabel, Counter>,
    /// Records with nothing to write.
    pub skipped: Family<SinkLabel, Counter>,
    /// Records dead-lettered.
    pub dlq: Family<SinkLabel, Counter>,
    /// Failed writes by kind.
    pub errors: Family<ErrorLabels, Counter>,
    /// Records per batch.
    pub batch_records: Family<SinkLabel, Histogram>,
    /// Batch write latency.
    pub write_seconds: Family<SinkLabel, Histogram>,
    /// Lag per input partition.
    pub lag: Family<PartitionLabels, Gauge>,
}

impl SinkMetrics {
    /// Creates the metrics and registers them in `registry` under `storeflow_sink_`.
    pub fn register(registry: &mut Registry) -> SinkMetrics {
        let m = SinkMetrics {
            written: Family::default(),
            skipped: Family::default(),
            dlq: Family::default(),
            errors: Family::default(),
            batch_records: Family::new_with_constructor(|| Histogram::new(exponential_buckets(1.0, 4.0, 10))),
            write_seconds: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 16))),
            lag: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("storeflow_sink");
        r.register("records_written", "Records a sink wrote durably", m.written.clone());
        r.register("records_skipped", "Records of a sink's topics it has nothing to write for", m.skipped.clone());
        r.register("dlq", "Records a sink sent to a dead-letter topic", m.dlq.clone());
        r.register("errors", "Failed sink writes (transient: retried; permanent: bisected)", m.errors.clone());
        r.register("batch_records", "Records per sink batch", m.batch_records.clone());
        r.register("write_seconds", "Latency of a sink's batch write, retries included", m.write_seconds.clone());
        r.register("lag", "Records of an input partition a sink has not written yet", m.lag.clone());
        m
    }

    /// Metrics that are counted but not exported (tests, tools).
    pub fn unregistered() -> SinkMetrics {
        SinkMetrics::register(&mut Registry::default())
    }

    /// Creates sink `name`'s series at zero, so that they are exported from its start: a
    /// dashboard's `rate()` or an alert on dead letters or failures needs the series to exist
    /// before the first one happens (Prometheus' "missing metrics" trap).
    pub(crate) fn touch(&self, name: &str) {
        let l = SinkMetrics::sink(name);
        for f in [&self.written, &self.skipped, &self.dlq] {
            let _ = f.get_or_create(&l);
        }
        let _ = self.batch_records.get_or_create(&l);
        let _ = self.write_seconds.get_or_create(&l);
        for kind in ERROR_KINDS {
            let _ = self.errors.get_or_create(&SinkMetrics::error(name, kind));
        }
    }

    pub(crate) fn sink(name: &str) -> SinkLabel {
        SinkLabel { sink: name.to_string() }
    }

    pub(crate) fn error(name: &str, kind: &str) -> ErrorLabels {
        ErrorLabels { sink: name.to_string(), kind: kind.to_string() }
    }
}
