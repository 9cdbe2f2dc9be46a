//! `[sinks.search]`: where the product index lives and how the sink batches.

use std::path::Path;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::registry::{SinkConfig, Store};
use crate::runner::Batching;
use crate::{Result, SinkError, redact};

/// Configuration of the search sink.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    /// Elasticsearch; unset: a tantivy index under `<data_dir>/search/`.
    pub elasticsearch: Option<ElasticsearchConfig>,
    /// Records per write.
    pub max_batch: usize,
    /// Longest a record waits before it is written, in milliseconds.
    pub max_wait_ms: u64,
    /// Product documents kept in memory between batches (read-modify-write cache).
    pub cache_docs: usize,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig { elasticsearch: None, max_batch: 5_000, max_wait_ms: 500, cache_docs: 100_000 }
    }
}

/// An Elasticsearch cluster.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ElasticsearchConfig {
    /// `http://host:9200`.
    #[serde(serialize_with = "crate::redact::url_field")]
    pub url: String,
    /// Index of the product documents (created with `sql/elasticsearch/products.json`).
    pub index: String,
    /// Basic-auth user.
    pub username: Option<String>,
    /// Basic-auth password.
    #[serde(serialize_with = "crate::redact::secret")]
    pub password: Option<SecretString>,
}

impl std::fmt::Debug for ElasticsearchConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry `user:password@`.
        f.debug_struct("ElasticsearchConfig")
            .field("url", &crate::redact::url(&self.url))
            .field("index", &self.index)
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

impl Default for ElasticsearchConfig {
    fn default() -> Self {
        ElasticsearchConfig { url: "http://127.0.0.1:9200".into(), index: "storeflow-products".into(), username: None, password: None }
    }
}

impl SearchConfig {
    /// Search on Elasticsearch at `url`, index `storeflow-products`.
    pub fn elasticsearch(url: impl Into<String>) -> Self {
        SearchConfig { elasticsearch: Some(ElasticsearchConfig { url: url.into(), ..ElasticsearchConfig::default() }), ..SearchConfig::default() }
    }

    pub(crate) fn batching(&self) -> Batching {
        Batching::new(self.max_batch, self.max_wait_ms)
    }
}

impl ElasticsearchConfig {
    /// The server and index of a [`Store::Elasticsearch`].
    pub(crate) fn of(store: &Store) -> Option<ElasticsearchConfig> {
        match store {
            Store::Elasticsearch { url, username, password, index } => {
                Some(ElasticsearchConfig { url: url.clone(), username: username.clone(), password: password.clone(), index: index.clone() })
            }
            _ => None,
        }
    }
}

impl SinkConfig for SearchConfig {
    fn validate(&self) -> Result<()> {
        if self.max_batch == 0 {
            return Err(SinkError::Config("[sinks.search] max_batch must be at least 1".into()));
        }
        if let Some(es) = &self.elasticsearch {
            if !(es.url.starts_with("http://") || es.url.starts_with("https://")) {
                return Err(SinkError::Config("[sinks.search.elasticsearch] url must start with http:// or https://".into()));
            }
            let ok = !es.index.is_empty()
                && es.index.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
                && !es.index.starts_with(['-', '_', '.']);
            if !ok {
                return Err(SinkError::Config(format!("[sinks.search.elasticsearch] index `{}` is not a valid index name", es.index)));
            }
        }
        Ok(())
    }

    fn describe(&self, data_dir: &Path) -> String {
        match &self.elasticsearch {
            Some(es) => format!("Elasticsearch at {}, index {} (instead of the embedded tantivy index)", redact::url(&es.url), es.index),
            None => format!("embedded tantivy index, {}", data_dir.join("search").display()),
        }
    }

    fn store(&self) -> Store {
        match &self.elasticsearch {
            Some(es) => Store::Elasticsearch { url: es.url.clone(), username: es.username.clone(), password: es.password.clone(), index: es.index.clone() },
            None => Store::Embedded(&["search"]),
        }
    }

    fn pointed_at(&self, store: &Store) -> Self {
        match ElasticsearchConfig::of(store) {
            Some(es) => SearchConfig { elasticsearch: Some(es), ..self.clone() },
            None => self.clone(),
        }
    }
}
