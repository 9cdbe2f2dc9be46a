//! `[sinks.read_model]`: where the read model lives and how it batches.

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::config::Batching;
use crate::{Result, SinkError};

/// Configuration of the read model sink.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReadModelConfig {
    /// Run this sink.
    pub enabled: bool,
    /// `postgres://user:password@host:port/db`; unset: SQLite at `<data_dir>/read_model.sqlite`.
    #[serde(serialize_with = "crate::config::redact::secret_url")]
    pub postgres_url: Option<SecretString>,
    /// Records per write.
    pub max_batch: usize,
    /// Longest a record waits before it is written, in milliseconds (the API reads what
    /// this sink wrote, so it is short).
    pub max_wait_ms: u64,
    /// Connections in the pool (writer and API reads share it).
    pub pool_size: u32,
}

impl Default for ReadModelConfig {
    fn default() -> Self {
        ReadModelConfig { enabled: true, postgres_url: None, max_batch: 5_000, max_wait_ms: 200, pool_size: 8 }
    }
}

impl ReadModelConfig {
    /// Checks the values without connecting.
    pub fn validate(&self) -> Result<()> {
        if self.max_batch == 0 || self.pool_size == 0 {
            return Err(SinkError::Config("[sinks.read_model] max_batch and pool_size must be at least 1".into()));
        }
        if let Some(url) = &self.postgres_url {
            let u = secrecy::ExposeSecret::expose_secret(url);
            if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) {
                return Err(SinkError::Config("[sinks.read_model] postgres_url must start with postgres://".into()));
            }
        }
        Ok(())
    }

    pub(crate) fn batching(&self) -> Batching {
        Batching { max_batch: self.max_batch, max_wait: Duration::from_millis(self.max_wait_ms.max(1)) }
    }
}
