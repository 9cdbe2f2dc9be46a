//! `[sinks]` in `storeflow.toml`: which sinks run, where they write, how they batch.
//!
//! Every store is optional: without a URL a sink writes to its embedded twin under
//! `data_dir` (SQLite, Parquet + DataFusion, tantivy), so `storeflow run` needs nothing
//! installed. Secrets (passwords, URLs with credentials) are `SecretString`s: they never
//! reach logs or `Debug`, and serialize as `"***"`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::analytics::config::{AnalyticsConfig, ClickHouseConfig};
pub use crate::read_model::config::ReadModelConfig;
pub use crate::search::config::{ElasticsearchConfig, SearchConfig};
use crate::{Result, SinkError};

/// Configuration of all sinks.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinksConfig {
    /// Folder of the embedded twins: `read_model.sqlite`, `analytics/`, `search/`.
    pub data_dir: PathBuf,
    /// Application id: consumer groups are `<app>.sink.<name>`.
    pub app: String,
    /// Longest wait between two tries of a write that failed transiently, in milliseconds.
    pub max_backoff_ms: u64,
    /// Records per poll of the log.
    pub max_poll: usize,
    /// The read model (Postgres or SQLite).
    pub read_model: ReadModelConfig,
    /// Analytics (ClickHouse or Parquet + DataFusion).
    pub analytics: AnalyticsConfig,
    /// Product search (Elasticsearch or tantivy).
    pub search: SearchConfig,
}

impl Default for SinksConfig {
    fn default() -> Self {
        SinksConfig {
            data_dir: PathBuf::from("data/sinks"),
            app: "storeflow".into(),
            max_backoff_ms: 5_000,
            max_poll: 10_000,
            read_model: ReadModelConfig::default(),
            analytics: AnalyticsConfig::default(),
            search: SearchConfig::default(),
        }
    }
}

impl SinksConfig {
    /// Every sink on its embedded twin under `data_dir`.
    pub fn embedded(data_dir: impl Into<PathBuf>) -> Self {
        SinksConfig { data_dir: data_dir.into(), ..SinksConfig::default() }
    }

    /// The read model on Postgres at `url` (`postgres://user:password@host:port/db`).
    pub fn with_postgres(mut self, url: impl Into<String>) -> Self {
        self.read_model.postgres_url = Some(url.into().into());
        self
    }

    /// Analytics on ClickHouse at `url` (HTTP interface), database `storeflow`.
    pub fn with_clickhouse(mut self, url: impl Into<String>) -> Self {
        self.analytics.clickhouse = Some(ClickHouseConfig { url: url.into(), ..ClickHouseConfig::default() });
        self
    }

    /// Search on Elasticsearch at `url`, index `storeflow-products`.
    pub fn with_elasticsearch(mut self, url: impl Into<String>) -> Self {
        self.search.elasticsearch = Some(ElasticsearchConfig { url: url.into(), ..ElasticsearchConfig::default() });
        self
    }

    /// Runs only the sinks named (`read_model`, `analytics`, `search`).
    pub fn only(mut self, names: &[&str]) -> Self {
        self.read_model.enabled = names.contains(&"read_model");
        self.analytics.enabled = names.contains(&"analytics");
        self.search.enabled = names.contains(&"search");
        self
    }

    /// Checks the values without connecting to anything.
    pub fn validate(&self) -> Result<()> {
        if self.app.trim().is_empty() {
            return Err(SinkError::Config("[sinks] app must not be empty".into()));
        }
        if self.max_poll == 0 {
            return Err(SinkError::Config("[sinks] max_poll must be at least 1".into()));
        }
        self.read_model.validate()?;
        self.analytics.validate()?;
        self.search.validate()?;
        Ok(())
    }

    /// The consumer group of sink `name`.
    pub fn group(&self, name: &str) -> String {
        format!("{}.sink.{name}", self.app)
    }

    pub(crate) fn max_backoff(&self) -> Duration {
        Duration::from_millis(self.max_backoff_ms.max(10))
    }
}

/// Batching of one sink: flush after `max_batch` records or `max_wait` since the first
/// buffered one, whichever comes first.
#[derive(Clone, Copy, Debug)]
pub struct Batching {
    /// Records per write.
    pub max_batch: usize,
    /// Longest a record waits in the buffer.
    pub max_wait: Duration,
}

/// Serializes a secret as `"***"` (for `storeflow config`).
pub(crate) fn redact<S: serde::Serializer>(v: &Option<secrecy::SecretString>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_some("***"),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_or_serialized_config() {
        let c = SinksConfig::embedded("/tmp/x").with_postgres("postgres://u:hunter2@h/db");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!serde_json::to_string(&c).unwrap().contains("hunter2"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = serde_json::from_str::<SinksConfig>(r#"{"read_modle": {}}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn only_enables_the_named_sinks() {
        let c = SinksConfig::default().only(&["search"]);
        assert!(c.search.enabled && !c.read_model.enabled && !c.analytics.enabled);
    }
}
