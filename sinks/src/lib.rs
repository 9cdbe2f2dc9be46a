//! Sinks: land the event stream in the stores the API and the analysts read.
//!
//! | sink (`name`) | distributed | embedded twin (default) | reads | writes |
//! |---|---|---|---|---|
//! | [`read_model`] | Postgres (sqlx, `sql/postgres/`) | SQLite file `<data_dir>/read_model.sqlite` | orders, payments, fulfillment, reservations, lifecycle, fraud, catalog, customers, inventory levels | orders, items, history, products, vendors, customers, inventory, reservations, payments, shipments, fraud scores |
//! | [`analytics`] | ClickHouse (`sql/clickhouse/`) | Parquet files under `<data_dir>/analytics/`, queried with DataFusion | every storefront and derived topic | fact and dimension tables, materialized rollups |
//! | [`search`] | Elasticsearch (`_bulk`, external versions) | tantivy index under `<data_dir>/search/` | catalog, inventory levels, recommendations, sessions, exchange rates | one document per product |
//!
//! Every sink runs on the common [`runner`]: its own consumer group `<app>.sink.<name>`,
//! batches by size and time, idempotent writes, retries with capped back-off while holding
//! the offsets, dead letters to `<topic>.dlq` (the processors' headers, so `storeflow dlq
//! list/replay` work), offsets committed only after the write is durable, and metrics. A
//! sink that joins facts with reference data (analytics, search) has the runner read the
//! [`reference`] topics — exchange rates, the catalogue — ahead of every write, so the joins
//! depend on the log, not on the interleaving of its topics.
//!
//! A sink is one folder implementing [`runner::Sink`] and [`Registered`], plus one line in
//! [`registry()`] below (docs/ADDING-A-SINK.md). [`Sinks::start`] starts the enabled sinks
//! on a log and hands out async query handles ([`ReadModel`], [`Search`], [`Analytics`], or
//! any sink's with [`Sinks::handle`]) that the API's axum handlers can await.
//! [`snapshot`] dumps the embedded stores of a data dir canonically, read-only, for checks
//! that two runs (or a rebuild) end with the same stores.
//! See `docs/SINKS.md`.

// The crate's own name inside it too, so that a sink's folder reads the same here and in
// docs/ADDING-A-SINK.md (`use storeflow_sinks::…`).
extern crate self as storeflow_sinks;

pub mod analytics;
pub mod config;
pub mod metrics;
pub mod money;
pub mod read_model;
pub mod redact;
pub mod reference;
pub mod registry;
pub mod runner;
pub mod search;
pub mod snapshot;
mod sinks;

pub use analytics::{Analytics, AnalyticsSink, Dashboard, DashboardRange, Granularity, SalesBucket, VendorPerformance};
pub use config::SinksConfig;
pub use read_model::{ReadModel, ReadModelSink};
pub use registry::{Registered, SinkConfig, SinkContext};
pub use search::{Search, SearchQuery, SearchResults, SearchSink, SortBy};
pub use sinks::{SinkCounts, Sinks};

registry!(
    read_model::ReadModelSink,
    analytics::AnalyticsSink,
    search::SearchSink,
);

/// Whether a failed write may succeed if tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Try again later, holding the offsets (a timeout, a connection refused, a server
    /// restarting, a misconfiguration an operator can fix).
    Transient,
    /// The record(s) can never be written as they are: dead-letter them with the reason.
    Permanent,
}

/// What can go wrong in the sinks.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The configuration is invalid.
    #[error("invalid sink configuration: {0}")]
    Config(String),
    /// The log failed.
    #[error(transparent)]
    Log(#[from] storeflow_ingest::LogError),
    /// Postgres or SQLite failed.
    #[error("{context}: {source}")]
    Sql {
        /// What the sink was doing.
        context: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// Running the read model's migrations failed.
    #[error("{context}: {source}")]
    Migrate {
        /// What the sink was doing.
        context: String,
        /// The migrator's error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// ClickHouse failed.
    #[error("{context}: {source}")]
    ClickHouse {
        /// What the sink was doing.
        context: String,
        /// The client's error.
        #[source]
        source: clickhouse::error::Error,
    },
    /// Elasticsearch failed or refused a request.
    #[error("{context}: {message}")]
    Elasticsearch {
        /// What the sink was doing.
        context: String,
        /// HTTP status, when there was a response.
        status: Option<u16>,
        /// The error (for a rejected document: its type and reason).
        message: String,
        /// True when there was no answer at all (connection refused, timeout).
        transport: bool,
    },
    /// The tantivy index failed.
    #[error("{context}: {source}")]
    Tantivy {
        /// What the sink was doing.
        context: String,
        /// tantivy's error.
        #[source]
        source: tantivy::TantivyError,
    },
    /// Writing or reading Parquet/Arrow, or a DataFusion query, failed.
    #[error("{context}: {message}")]
    Parquet {
        /// What the sink was doing.
        context: String,
        /// The error.
        message: String,
        /// True for I/O errors that may pass (disk full, interrupted).
        io: bool,
    },
    /// A store refused a record for good (a value out of range, a constraint): the record
    /// goes to the dead-letter topic with this reason.
    #[error("rejected: {0}")]
    Rejected(String),
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the sink was doing.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The sinks were stopped, or their runtime is gone.
    #[error("the sinks are stopped")]
    Stopped,
    /// The sinks did not catch up in time.
    #[error("timed out: {0}")]
    Timeout(String),
}

/// Result with [`SinkError`].
pub type Result<T, E = SinkError> = std::result::Result<T, E>;

impl SinkError {
    pub(crate) fn sql(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> SinkError {
        let context = context.into();
        move |source| SinkError::Sql { context, source }
    }

    pub(crate) fn ch(context: impl Into<String>) -> impl FnOnce(clickhouse::error::Error) -> SinkError {
        let context = context.into();
        move |source| SinkError::ClickHouse { context, source }
    }

    pub(crate) fn tantivy(context: impl Into<String>) -> impl FnOnce(tantivy::TantivyError) -> SinkError {
        let context = context.into();
        move |source| SinkError::Tantivy { context, source }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> SinkError {
        let context = context.into();
        move |source| SinkError::Io { context, source }
    }

    pub(crate) fn parquet<E: std::fmt::Display>(context: impl Into<String>) -> impl FnOnce(E) -> SinkError {
        let context = context.into();
        move |e| SinkError::Parquet { context, message: e.to_string(), io: false }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_names_are_unique_snake_case() {
        let names: Vec<&str> = registry().iter().map(|r| r.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "duplicate sink names: {names:?}");
        for n in names {
            assert!(!n.is_empty() && n.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "`{n}` is not snake_case");
        }
    }
}
