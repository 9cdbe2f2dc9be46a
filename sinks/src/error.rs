//! The sinks' one error type, [`SinkError`], with its [`Result`], and [`Retry`], the
//! answer of each sink's retry-or-give-up decision (`<sink>/service.rs`).

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
    /// The sinks did not catch up in time, or a store did not answer in time.
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
