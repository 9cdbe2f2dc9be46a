//! `[sinks.analytics]`: where the analytics tables live and how the sink batches.

use std::path::Path;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::registry::{SinkConfig, Store};
use crate::runner::Batching;
use crate::{Result, SinkError, redact};

/// Configuration of the analytics sink.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyticsConfig {
    /// ClickHouse; unset: Parquet files under `<data_dir>/analytics/`, queried with DataFusion.
    pub clickhouse: Option<ClickHouseConfig>,
    /// Records per write (ClickHouse wants few, big inserts).
    pub max_batch: usize,
    /// Longest a record waits before it is written, in milliseconds.
    pub max_wait_ms: u64,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        AnalyticsConfig { clickhouse: None, max_batch: 20_000, max_wait_ms: 1_000 }
    }
}

/// A ClickHouse server (HTTP interface).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    /// `http://host:8123`.
    #[serde(serialize_with = "crate::redact::url_field")]
    pub url: String,
    /// Database (created if missing).
    pub database: String,
    /// User.
    pub user: String,
    /// Password.
    #[serde(serialize_with = "crate::redact::secret")]
    pub password: Option<SecretString>,
}

impl std::fmt::Debug for ClickHouseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry `user:password@`.
        f.debug_struct("ClickHouseConfig")
            .field("url", &crate::redact::url(&self.url))
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
    /// Analytics on ClickHouse at `url` (HTTP interface), database `storeflow`.
    pub fn clickhouse(url: impl Into<String>) -> Self {
        AnalyticsConfig { clickhouse: Some(ClickHouseConfig { url: url.into(), ..ClickHouseConfig::default() }), ..AnalyticsConfig::default() }
    }

    pub(crate) fn batching(&self) -> Batching {
        Batching::new(self.max_batch, self.max_wait_ms)
    }
}

impl ClickHouseConfig {
    /// The server and database of a [`Store::ClickHouse`].
    pub(crate) fn of(store: &Store) -> Option<ClickHouseConfig> {
        match store {
            Store::ClickHouse { url, user, password, database } => {
                Some(ClickHouseConfig { url: url.clone(), user: user.clone(), password: password.clone(), database: database.clone() })
            }
            _ => None,
        }
    }
}

impl SinkConfig for AnalyticsConfig {
    fn validate(&self) -> Result<()> {
        if self.max_batch == 0 {
            return Err(SinkError::Config("[sinks.analytics] max_batch must be at least 1".into()));
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

    fn describe(&self, data_dir: &Path) -> String {
        match &self.clickhouse {
            Some(ch) => format!("ClickHouse at {}, database {} (instead of embedded Parquet + DataFusion)", redact::url(&ch.url), ch.database),
            None => format!("embedded Parquet + DataFusion, {}", data_dir.join("analytics").display()),
        }
    }

    fn store(&self) -> Store {
        match &self.clickhouse {
            Some(ch) => Store::ClickHouse { url: ch.url.clone(), user: ch.user.clone(), password: ch.password.clone(), database: ch.database.clone() },
            None => Store::Embedded(&["analytics"]),
        }
    }

    fn pointed_at(&self, store: &Store) -> Self {
        match ClickHouseConfig::of(store) {
            Some(ch) => AnalyticsConfig { clickhouse: Some(ch), ..self.clone() },
            None => self.clone(),
        }
    }
}
