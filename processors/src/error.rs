//! The crate's two kinds of failure: the runtime's own ([`RuntimeError`]: the log, a state
//! store, the set-up) and one record's ([`ProcessError`]: to the DLQ, or retried).

/// What can go wrong in the runtime (as opposed to in a record).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The log failed.
    #[error(transparent)]
    Log(#[from] storeflow_ingest::LogError),
    /// A state store failed.
    #[error("state store: {0}")]
    Store(String),
    /// The processors or their inputs are not set up right.
    #[error("{0}")]
    Setup(String),
}

/// Result with [`RuntimeError`].
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// Why a record could not be processed.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// It never will be (a bad record, an illegal transition): it goes to the DLQ with this
    /// reason, nothing it did is kept, and the stream moves on.
    #[error("{0}")]
    Permanent(String),
    /// It may be later (a dependency is down): the runtime retries the same record with
    /// capped back-off and never skips it.
    #[error("transient: {0}")]
    Transient(String),
}

impl ProcessError {
    /// A permanent error with a reason.
    pub fn permanent(reason: impl Into<String>) -> Self {
        ProcessError::Permanent(reason.into())
    }
}
