//! `[sinks.read_model]`: where the read model lives and how it batches.

use std::path::Path;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::registry::{SinkConfig, Store};
use crate::runner::Batching;
use crate::{Result, SinkError, redact};

/// The embedded twin's file under `[sinks] data_dir`.
pub(crate) const SQLITE_FILE: &str = "read_model.sqlite";

/// Configuration of the read model sink.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReadModelConfig {
    /// `postgres://user:password@host:port/db`; unset: SQLite at `<data_dir>/read_model.sqlite`.
    #[serde(serialize_with = "crate::redact::secret_url")]
    pub postgres_url: Option<SecretString>,
    /// Records per write.
    pub max_batch: usize,
    /// Longest a record waits before it is written, in milliseconds (the API reads what
    /// this sink wrote, so it is short).
    pub max_wait_ms: u64,
    /// Connections in the pool (writer and API reads share it).
    pub pool_size: u32,
}

impl std::fmt::Debug for ReadModelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL shows with its credentials masked, like everywhere else.
        let url = self.postgres_url.as_ref().map(|u| redact::url(secrecy::ExposeSecret::expose_secret(u)));
        f.debug_struct("ReadModelConfig")
            .field("postgres_url", &url)
            .field("max_batch", &self.max_batch)
            .field("max_wait_ms", &self.max_wait_ms)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl Default for ReadModelConfig {
    fn default() -> Self {
        ReadModelConfig { postgres_url: None, max_batch: 5_000, max_wait_ms: 200, pool_size: 8 }
    }
}

impl ReadModelConfig {
    /// The read model on Postgres at `url` (`postgres://user:password@host:port/db`).
    pub fn postgres(url: impl Into<String>) -> Self {
        ReadModelConfig { postgres_url: Some(url.into().into()), ..ReadModelConfig::default() }
    }

    pub(crate) fn batching(&self) -> Batching {
        Batching::new(self.max_batch, self.max_wait_ms)
    }
}

impl SinkConfig for ReadModelConfig {
    fn validate(&self) -> Result<()> {
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

    fn describe(&self, data_dir: &Path) -> String {
        match &self.postgres_url {
            Some(url) => format!("Postgres at {} (instead of embedded SQLite)", redact::url(secrecy::ExposeSecret::expose_secret(url))),
            None => format!("embedded SQLite, {}", data_dir.join(SQLITE_FILE).display()),
        }
    }

    fn store(&self) -> Store {
        match &self.postgres_url {
            Some(url) => Store::Postgres(url.clone()),
            // The database and its write-ahead log and shared-memory index move together.
            None => Store::Embedded(&[SQLITE_FILE, "read_model.sqlite-wal", "read_model.sqlite-shm"]),
        }
    }

    fn pointed_at(&self, store: &Store) -> Self {
        match store {
            Store::Postgres(url) => ReadModelConfig { postgres_url: Some(url.clone()), ..self.clone() },
            _ => self.clone(),
        }
    }
}
