//! `[sinks]` in `storeflow.toml`: which sinks run, where they write, how they batch.
//!
//! Every store is optional: without a URL a sink writes to its embedded twin under
//! `data_dir` (SQLite, Parquet + DataFusion, tantivy), so `storeflow run` needs nothing
//! installed. Secrets (passwords, URLs with credentials) are `SecretString`s: they never
//! reach logs or `Debug`, and serialize masked (see [`redact`]).
//!
//! [`redact`] is the one rule of what a secret is, for every crate that prints
//! configuration: the binary's `storeflow config` and start-up banner use it too (it lives
//! here because the binary depends on the sinks, not the other way round).

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

/// What of a configuration may be shown, in `storeflow config`, banners and logs.
///
/// The rule: the value of a secret key ([`is_secret_key`]) becomes `***`; in every other
/// value, URL credentials do (`user:password@` → `user:***@`, and `?password=…` or any
/// other secret query parameter). It errs toward masking: a value that only looks like a
/// URL with a password is masked too.
pub mod redact {
    /// What a secret is replaced with.
    pub const MASK: &str = "***";

    /// Words that make a key secret wherever they appear in it.
    const SECRET_WORDS: &[&str] = &["password", "passwd", "secret", "token", "credential", "jaas", "private", "apikey", "api_key", "api.key"];

    /// Whether the value of configuration key `key` (a librdkafka property such as
    /// `sasl.password`, a query parameter, a field name) is a secret: every `sasl.*`, any
    /// key naming a password, token, secret or credential, and TLS key material
    /// (`ssl.key.pem`, `ssl_key`; not the paths `ssl.key.location`, nor certificates).
    pub fn is_secret_key(key: &str) -> bool {
        let k = key.to_ascii_lowercase();
        k.starts_with("sasl.")
            || SECRET_WORDS.iter().any(|w| k.contains(w))
            || (k.starts_with("ssl") && (k.contains("key.pem") || k.ends_with("key")))
    }

    /// `value` of `key` as it may be shown: [`MASK`] for a secret key, otherwise with the
    /// credentials of a URL masked.
    pub fn value(key: &str, value: &str) -> String {
        if is_secret_key(key) { MASK.to_string() } else { url(value) }
    }

    /// `scheme://user:password@host/…?password=…` → `scheme://user:***@host/…?password=***`.
    /// Anything without `://` is returned as it is.
    pub fn url(url: &str) -> String {
        let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
        // A password may hold an unescaped `/` or `@`: the user info ends at the last `@`
        // before the query, not at the first `/`.
        let (before_query, query) = rest.split_at(rest.find(['?', '#']).unwrap_or(rest.len()));
        let authority = match before_query.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:{MASK}@{host}"),
                None => before_query.to_string(),
            },
            None => before_query.to_string(),
        };
        format!("{scheme}://{authority}{}", query_params(query))
    }

    /// Masks the values of secret parameters in `?a=1&password=x#token=y`, keeping the
    /// rest and every separator.
    fn query_params(query: &str) -> String {
        let mut out = String::with_capacity(query.len());
        let mut rest = query;
        while !rest.is_empty() {
            let sep_len = rest.len() - rest.trim_start_matches(['?', '#', '&', ';']).len();
            out.push_str(&rest[..sep_len]);
            rest = &rest[sep_len..];
            let end = rest.find(['?', '#', '&', ';']).unwrap_or(rest.len());
            let pair = &rest[..end];
            match pair.split_once('=') {
                Some((k, _)) if is_secret_key(k) => {
                    out.push_str(k);
                    out.push('=');
                    out.push_str(MASK);
                }
                _ => out.push_str(pair),
            }
            rest = &rest[end..];
        }
        out
    }

    /// Serializes a secret as `"***"` (`#[serde(serialize_with = …)]`, for `storeflow config`).
    pub fn secret<S: serde::Serializer>(v: &Option<secrecy::SecretString>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(_) => s.serialize_some(MASK),
            None => s.serialize_none(),
        }
    }

    /// Serializes a URL held as a secret with its credentials masked.
    pub fn secret_url<S: serde::Serializer>(v: &Option<secrecy::SecretString>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(u) => s.serialize_some(&url(secrecy::ExposeSecret::expose_secret(u))),
            None => s.serialize_none(),
        }
    }

    /// Serializes a URL with its credentials masked.
    pub fn url_field<S: serde::Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&url(v))
    }

    /// Serializes a map of properties (`[kafka.properties]`) with every value [`value`]d.
    pub fn properties<S: serde::Serializer>(m: &std::collections::BTreeMap<String, String>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(m.iter().map(|(k, v)| (k, value(k, v))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_or_serialized_config() {
        let c = SinksConfig::embedded("/tmp/x").with_postgres("postgres://u:hunter2@h/db");
        assert!(!format!("{c:?}").contains("hunter2"));
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("hunter2") && json.contains("postgres://u:***@h/db"), "{json}");
    }

    #[test]
    fn the_redaction_rule_masks_secret_keys_and_url_credentials_and_nothing_else() {
        let table = [
            // Kafka properties: every sasl.*, passwords, TLS key material.
            ("sasl.password", "hunter2", "***"),
            ("sasl.username", "alice", "***"),
            ("sasl.mechanism", "PLAIN", "***"),
            ("sasl.jaas.config", r#"org.apache.kafka.common.security.plain.PlainLoginModule required password="hunter2";"#, "***"),
            ("sasl.oauthbearer.client.secret", "hunter2", "***"),
            ("ssl.key.password", "hunter2", "***"),
            ("ssl.keystore.password", "hunter2", "***"),
            ("ssl.key.pem", "-----BEGIN PRIVATE KEY-----", "***"),
            ("ssl_key", "-----BEGIN PRIVATE KEY-----", "***"),
            ("SSL.KEY.PEM", "-----BEGIN PRIVATE KEY-----", "***"),
            ("client.secret", "hunter2", "***"),
            ("access_token", "hunter2", "***"),
            ("api_key", "hunter2", "***"),
            // Not secrets: shown as they are.
            ("security.protocol", "SASL_SSL", "SASL_SSL"),
            ("ssl.key.location", "/etc/kafka/client.key", "/etc/kafka/client.key"),
            ("ssl.certificate.pem", "-----BEGIN CERTIFICATE-----", "-----BEGIN CERTIFICATE-----"),
            ("ssl.ca.location", "/etc/ssl/ca.pem", "/etc/ssl/ca.pem"),
            ("client.id", "storeflow", "storeflow"),
            ("message.max.bytes", "1000000", "1000000"),
            // URLs under ordinary keys: credentials masked, the rest kept.
            ("url", "postgres://u:hunter2@h:5432/db", "postgres://u:***@h:5432/db"),
            ("url", "postgres://u:hun/ter@2@h/db", "postgres://u:***@h/db"),
            ("url", "http://127.0.0.1:18123", "http://127.0.0.1:18123"),
            ("url", "http://elastic@h:9200", "http://elastic@h:9200"),
            ("url", "https://u:hunter2@registry:8081/subjects", "https://u:***@registry:8081/subjects"),
            ("url", "postgres://h/db?user=u&password=hunter2&sslmode=require", "postgres://h/db?user=u&password=***&sslmode=require"),
            ("url", "http://h/x?token=hunter2", "http://h/x?token=***"),
            ("url", "http://h/x#access_token=hunter2", "http://h/x#access_token=***"),
            ("url", "http://h/x?page=2;secret=hunter2", "http://h/x?page=2;secret=***"),
            ("url", "http://h/x?a=1#token=hunter2", "http://h/x?a=1#token=***"),
            ("url", "http://h/search?q=a@b", "http://h/search?q=a@b"),
            ("brokers", "k1:9092,k2:9092", "k1:9092,k2:9092"),
        ];
        for (key, value, shown) in table {
            assert_eq!(redact::value(key, value), shown, "{key} = {value}");
        }
    }

    #[test]
    fn clickhouse_and_elasticsearch_urls_show_without_their_passwords() {
        let c = SinksConfig::embedded("/tmp/x")
            .with_clickhouse("http://default:hunter2@h:8123")
            .with_elasticsearch("https://elastic:hunter2@h:9200");
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("hunter2") && json.contains("http://default:***@h:8123"), "{json}");
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2") && debug.contains("https://elastic:***@h:9200"), "{debug}");
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
