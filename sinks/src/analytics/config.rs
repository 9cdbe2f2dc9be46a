//! `[sinks.analytics]`: where the analytics tables live and how the sink batches.

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::config::Batching;
use crate::{Result, SinkError};

/// Configuration of the analytics sink.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyticsConfig {
    /// Run this sink.
    pub enabled: bool,
    /// ClickHouse; unset: Parquet files under `<data_dir>/analytics/`, queried with DataFusion.
    pub clickhouse: Option<ClickHouseConfig>,
    /// Records per write (ClickHouse wants few, big inserts).
    pub max_batch: usize,
    /// Longest a record waits before it is written, in milliseconds.
    pub max_wait_ms: u64,
    /// Currency every sum is kept in as well (`*_eur_minor` columns).
    pub base_currency: String,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        AnalyticsConfig { enabled: true, clickhouse: None, max_batch: 20_000, max_wait_ms: 1_000, base_currency: "EUR".into() }
    }
}

/// A ClickHouse server (HTTP interface).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    /// `http://host:8123`.
    #[serde(serialize_with = "crate::config::redact::url_field")]
    pub url: String,
    /// Database (created if missing).
    pub database: String,
    /// User.
    pub user: String,
    /// Password.
    #[serde(serialize_with = "crate::config::redact::secret")]
    pub password: Option<SecretString>,
}

impl std::fmt::Debug for ClickHouseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry `user:password@`.
        f.debug_struct("ClickHouseConfig")
            .field("url", &crate::config::redact::url(&self.url))
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password)
            .finish()
    }
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig { url: "http://127.0.0.1:8123".into(), database: "storeflow".into(), user: "default".into(), password: None }
    }
}

impl AnalyticsConfig {
    /// Checks the values without connecting.
    pub fn validate(&self) -> Result<()> {
        if self.max_batch == 0 {
            return Err(SinkError::Config("[sinks.analytics] max_batch must be at least 1".into()));
        }
        if self.base_currency.len() != 3 {
            return Err(SinkError::Config(format!("[sinks.analytics] base_currency `{}` is not an ISO-4217 code", self.base_currency)));
        }
        if let Some(ch) = &self.clickhouse {
            if !(ch.url.starts_with("http://") || ch.url.starts_with("https://")) {
                return Err(SinkError::Config("[sinks.analytics.clickhouse] url must start with http:// or https://".into()));
            }
            if ch.database.is_empty() || !ch.database.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(SinkError::Config(format!("[sinks.analytics.clickhouse] database `{}` must be [A-Za-z0-9_]+", ch.database)));
            }
        }
        Ok(())
    }

    pub(crate) fn batching(&self) -> Batching {
        Batching { max_batch: self.max_batch, max_wait: Duration::from_millis(self.max_wait_ms.max(1)) }
    }
}
