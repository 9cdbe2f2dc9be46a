//! Whether what the API reads from can answer (`/readyz`), and why a read failed.

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::error::ApiError;

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The backend is not reachable or not ready (503).
    #[error("{0}")]
    Unavailable(String),
    /// The backend failed unexpectedly (500, detail logged only).
    #[error("{0}")]
    Internal(String),
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Unavailable(m) => ApiError::Unavailable(m),
            ReadError::Internal(m) => ApiError::Internal(m),
        }
    }
}

/// Result of a read.
pub type ReadResult<T> = Result<T, ReadError>;

/// A boxed future of a read.
pub type ReadFuture<'a, T> = BoxFuture<'a, ReadResult<T>>;

/// Whether a backend is reachable (for `/readyz`).
pub trait Ready: Send + Sync {
    /// `Ok` when it answers; the error says what is wrong.
    fn ready(&self) -> ReadFuture<'_, ()>;
}

/// Readiness of worker threads (processors, sinks): not ready while one has ended, naming
/// it. A processor or sink that stops is noticed here instead of the API serving stale reads
/// as if all were well.
pub struct ThreadsReady(pub Vec<(String, Arc<dyn Fn() -> bool + Send + Sync>)>);

impl Ready for ThreadsReady {
    fn ready(&self) -> ReadFuture<'_, ()> {
        let down: Vec<&str> = self.0.iter().filter(|(_, alive)| !alive()).map(|(n, _)| n.as_str()).collect();
        let r = if down.is_empty() { Ok(()) } else { Err(ReadError::Unavailable(format!("stopped: {}", down.join(", ")))) };
        Box::pin(async move { r })
    }
}
