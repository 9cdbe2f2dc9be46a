//! `[sinks]` in `storeflow.toml`: which sinks run, where they write, how they batch.
//!
//! `[sinks]` holds what every sink shares (the embedded stores' folder, the application
//! id, back-off, poll size, the base currency), and `[sinks.<name>]` each registered sink's
//! own section ([`crate::registry`]): `enabled`, then its typed configuration, which is the
//! one place its store is named. Every store is optional: without one a sink writes to its
//! embedded twin under `data_dir` (SQLite, Parquet + DataFusion, tantivy), so `storeflow
//! run` needs nothing installed. Secrets (passwords, URLs with credentials) are
//! `SecretString`s: they never reach logs or `Debug`, and serialize masked
//! ([`crate::redact`]).

use std::path::PathBuf;
use std::time::Duration;

use serde::de::{DeserializeOwned, Error as _};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::registry::{DynConfig, Registered, Registration, typed, typed_mut};
use crate::{Result, SinkError};

/// Configuration of all sinks: what they share, and each registered sink's section.
pub struct SinksConfig {
    /// Folder of the embedded twins (`read_model.sqlite`, `analytics/`, `search/`, …).
    pub data_dir: PathBuf,
    /// Application id: consumer groups are `<app>.sink.<name>`.
    pub app: String,
    /// Longest wait between two tries of a write that failed transiently, in milliseconds.
    pub max_backoff_ms: u64,
    /// Longest a write may take, in milliseconds: a store that accepts the connection and
    /// never answers fails the write (transiently) after this long, instead of holding the
    /// sink for good.
    pub write_timeout_ms: u64,
    /// Records per poll of the log.
    pub max_poll: usize,
    /// Currency every amount is also kept in, converted when written (analytics'
    /// `*_eur_minor` columns, search's base price): an ISO-4217 code.
    pub base_currency: String,
    /// This instance's stable name (`[runtime] instance`, not a `[sinks]` key): on Kafka the
    /// sinks' static group membership, `<group>.<instance>`, so a restarted instance takes
    /// its partitions straight back instead of waiting out the dead member's session
    /// timeout (45 s by default).
    pub instance: Option<String>,
    /// `[sinks.<name>]` of every registered sink, in registry order.
    sinks: Vec<Section>,
}

/// One sink's section: whether it runs, and its typed configuration.
struct Section {
    name: &'static str,
    enabled: bool,
    config: Box<dyn DynConfig>,
}

impl Clone for Section {
    fn clone(&self) -> Self {
        Section { name: self.name, enabled: self.enabled, config: self.config.clone_box() }
    }
}

impl Clone for SinksConfig {
    fn clone(&self) -> Self {
        SinksConfig {
            data_dir: self.data_dir.clone(),
            app: self.app.clone(),
            max_backoff_ms: self.max_backoff_ms,
            write_timeout_ms: self.write_timeout_ms,
            max_poll: self.max_poll,
            base_currency: self.base_currency.clone(),
            instance: self.instance.clone(),
            sinks: self.sinks.clone(),
        }
    }
}

impl Default for SinksConfig {
    /// Every sink of [`crate::registry`], enabled, on its embedded twin under `data/sinks`.
    fn default() -> Self {
        SinksConfig::of(crate::registry(), "data/sinks")
    }
}

/// The keys of `[sinks]` itself (beside the sinks' sections).
const SHARED: &[&str] = &["data_dir", "app", "max_backoff_ms", "write_timeout_ms", "max_poll", "base_currency"];

impl SinksConfig {
    /// The sinks of `registry`, every one enabled with its defaults, on its embedded twin
    /// under `data_dir`. [`SinksConfig::embedded`] is this with [`crate::registry`].
    pub fn of(registry: Vec<Registration>, data_dir: impl Into<PathBuf>) -> Self {
        SinksConfig {
            data_dir: data_dir.into(),
            app: "storeflow".into(),
            max_backoff_ms: 5_000,
            write_timeout_ms: 60_000,
            max_poll: 10_000,
            base_currency: "EUR".into(),
            instance: None,
            sinks: registry.into_iter().map(|r| Section { name: r.name, enabled: true, config: r.defaults() }).collect(),
        }
    }

    /// Every registered sink on its embedded twin under `data_dir`.
    pub fn embedded(data_dir: impl Into<PathBuf>) -> Self {
        SinksConfig { data_dir: data_dir.into(), ..SinksConfig::default() }
    }

    /// Sink `S`'s section, `[sinks.<S::NAME>]`.
    ///
    /// Panics if `S` is not registered (a programming error, not a configuration one).
    pub fn sink<S: Registered>(&self) -> &S::Config {
        self.sinks.iter().find_map(|s| typed::<S>(s.config.as_ref())).unwrap_or_else(|| panic!("the {} sink is not registered", S::NAME))
    }

    /// Sink `S`'s section, to change it (`c.sink_mut::<SearchSink>().max_wait_ms = 50`).
    ///
    /// Panics if `S` is not registered.
    pub fn sink_mut<S: Registered>(&mut self) -> &mut S::Config {
        self.sinks.iter_mut().find_map(|s| typed_mut::<S>(s.config.as_mut())).unwrap_or_else(|| panic!("the {} sink is not registered", S::NAME))
    }

    /// With sink `S` configured as `config` (`.with::<ReadModelSink>(ReadModelConfig::postgres(url))`).
    ///
    /// Panics if `S` is not registered.
    pub fn with<S: Registered>(mut self, config: S::Config) -> Self {
        *self.sink_mut::<S>() = config;
        self
    }

    /// Runs only the sinks named (`read_model`, `analytics`, `search`, …).
    pub fn only(mut self, names: &[&str]) -> Self {
        for s in &mut self.sinks {
            s.enabled = names.contains(&s.name);
        }
        self
    }

    /// Sink `name`'s section, its type erased.
    pub(crate) fn section(&self, name: &str) -> Option<&dyn DynConfig> {
        self.sinks.iter().find(|s| s.name == name).map(|s| s.config.as_ref())
    }

    /// Replaces sink `name`'s section (a rebuild points it at a staged store).
    pub(crate) fn set_section(&mut self, name: &str, config: Box<dyn DynConfig>) {
        if let Some(s) = self.sinks.iter_mut().find(|s| s.name == name) {
            s.config = config;
        }
    }

    /// Names of the registered sinks, in start order.
    pub fn names(&self) -> Vec<&'static str> {
        self.sinks.iter().map(|s| s.name).collect()
    }

    /// Whether sink `name` runs.
    pub fn is_enabled(&self, name: &str) -> bool {
        self.sinks.iter().any(|s| s.name == name && s.enabled)
    }

    /// The enabled sinks with their configurations, in start order.
    pub(crate) fn enabled(&self) -> impl Iterator<Item = (&'static str, &dyn DynConfig)> {
        self.sinks.iter().filter(|s| s.enabled).map(|s| (s.name, s.config.as_ref()))
    }

    /// Each enabled sink's name and where it writes, in words (credentials masked), for
    /// start-up banners.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        self.enabled().map(|(name, c)| (name, c.describe(&self.data_dir))).collect()
    }

    /// Checks the values without connecting to anything.
    pub fn validate(&self) -> Result<()> {
        if self.app.trim().is_empty() {
            return Err(SinkError::Config("[sinks] app must not be empty".into()));
        }
        if self.max_poll == 0 {
            return Err(SinkError::Config("[sinks] max_poll must be at least 1".into()));
        }
        if self.base_currency.len() != 3 {
            return Err(SinkError::Config(format!("[sinks] base_currency `{}` is not an ISO-4217 code", self.base_currency)));
        }
        for s in &self.sinks {
            s.config.validate()?;
        }
        Ok(())
    }

    /// The consumer group of sink `name`.
    pub fn group(&self, name: &str) -> String {
        format!("{}.sink.{name}", self.app)
    }

    pub(crate) fn max_backoff(&self) -> Duration {
        Duration::from_millis(self.max_backoff_ms.max(10))
    }

    pub(crate) fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms.max(100))
    }
}

impl std::fmt::Debug for SinksConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Shown<'a>(&'a Section);
        impl std::fmt::Debug for Shown<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "enabled: {}, ", self.0.enabled)?;
                self.0.config.debug(f)
            }
        }
        let mut d = f.debug_struct("SinksConfig");
        d.field("data_dir", &self.data_dir)
            .field("app", &self.app)
            .field("max_backoff_ms", &self.max_backoff_ms)
            .field("write_timeout_ms", &self.write_timeout_ms)
            .field("max_poll", &self.max_poll)
            .field("base_currency", &self.base_currency);
        for s in &self.sinks {
            d.field(s.name, &Shown(s));
        }
        d.finish()
    }
}

/// `value` without its `null`s (an unset option), which TOML cannot write.
fn without_nulls(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(m) => serde_json::Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, without_nulls(v))).collect()),
        other => other,
    }
}

impl Serialize for SinksConfig {
    /// As `storeflow config` shows it: every key, secrets masked.
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("data_dir", &self.data_dir)?;
        m.serialize_entry("app", &self.app)?;
        m.serialize_entry("max_backoff_ms", &self.max_backoff_ms)?;
        m.serialize_entry("write_timeout_ms", &self.write_timeout_ms)?;
        m.serialize_entry("max_poll", &self.max_poll)?;
        m.serialize_entry("base_currency", &self.base_currency)?;
        for sec in &self.sinks {
            let mut section = serde_json::Map::new();
            section.insert("enabled".into(), sec.enabled.into());
            if let serde_json::Value::Object(fields) = without_nulls(sec.config.to_json()) {
                section.extend(fields);
            }
            m.serialize_entry(sec.name, &section)?;
        }
        m.end()
    }
}

/// Takes `key` out of `map` into `into`, if it is there.
fn take<T: DeserializeOwned>(map: &mut serde_json::Map<String, serde_json::Value>, key: &str, into: &mut T) -> std::result::Result<(), String> {
    if let Some(v) = map.remove(key) {
        *into = serde_json::from_value(v).map_err(|e| format!("[sinks] {key}: {e}"))?;
    }
    Ok(())
}

impl<'de> Deserialize<'de> for SinksConfig {
    /// `[sinks]` over the defaults: the shared keys, and `[sinks.<name>]` for each
    /// registered sink, parsed into its own type. Any other key is refused, naming what
    /// would have been accepted.
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let mut map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let mut c = SinksConfig::default();
        take(&mut map, "data_dir", &mut c.data_dir).map_err(D::Error::custom)?;
        take(&mut map, "app", &mut c.app).map_err(D::Error::custom)?;
        take(&mut map, "max_backoff_ms", &mut c.max_backoff_ms).map_err(D::Error::custom)?;
        take(&mut map, "write_timeout_ms", &mut c.write_timeout_ms).map_err(D::Error::custom)?;
        take(&mut map, "max_poll", &mut c.max_poll).map_err(D::Error::custom)?;
        take(&mut map, "base_currency", &mut c.base_currency).map_err(D::Error::custom)?;
        for s in &mut c.sinks {
            let Some(section) = map.remove(s.name) else { continue };
            let serde_json::Value::Object(mut fields) = section else {
                return Err(D::Error::custom(format!("[sinks.{}] must be a table", s.name)));
            };
            take(&mut fields, "enabled", &mut s.enabled).map_err(|e| D::Error::custom(e.replace("[sinks] ", &format!("[sinks.{}] ", s.name))))?;
            s.config.parse(serde_json::Value::Object(fields)).map_err(D::Error::custom)?;
        }
        if let Some(key) = map.keys().next() {
            return Err(D::Error::custom(format!(
                "[sinks]: unknown field `{key}`: expected one of {} or a sink's section ({})",
                SHARED.join(", "),
                c.names().join(", ")
            )));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::analytics::{AnalyticsConfig, AnalyticsSink};
    use crate::read_model::{ReadModelConfig, ReadModelSink};
    use crate::search::{SearchConfig, SearchSink};

    #[test]
    fn secrets_never_show_in_debug_or_serialized_config() {
        let c = SinksConfig::embedded("/tmp/x").with::<ReadModelSink>(ReadModelConfig::postgres("postgres://u:hunter2@h/db"));
        assert!(!format!("{c:?}").contains("hunter2"));
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("hunter2") && json.contains("postgres://u:***@h/db"), "{json}");
    }

    #[test]
    fn clickhouse_and_elasticsearch_urls_show_without_their_passwords() {
        let c = SinksConfig::embedded("/tmp/x")
            .with::<AnalyticsSink>(AnalyticsConfig::clickhouse("http://default:hunter2@h:8123"))
            .with::<SearchSink>(SearchConfig::elasticsearch("https://elastic:hunter2@h:9200"));
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("hunter2") && json.contains("http://default:***@h:8123"), "{json}");
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2") && debug.contains("https://elastic:***@h:9200"), "{debug}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = serde_json::from_str::<SinksConfig>(r#"{"read_modle": {}}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `read_modle`") && err.to_string().contains("read_model, analytics, search"), "{err}");
        let err = serde_json::from_str::<SinksConfig>(r#"{"read_model": {"postgres": "postgres://h/db"}}"#).unwrap_err();
        assert!(err.to_string().contains("[sinks.read_model]") && err.to_string().contains("unknown field `postgres`"), "{err}");
    }

    #[test]
    fn only_enables_the_named_sinks() {
        let c = SinksConfig::default().only(&["search"]);
        assert!(c.is_enabled("search") && !c.is_enabled("read_model") && !c.is_enabled("analytics"));
        assert_eq!(c.describe().len(), 1);
    }

    #[test]
    fn each_section_is_read_into_its_sinks_own_config_over_the_defaults() {
        let c: SinksConfig = serde_json::from_value(serde_json::json!({
            "app": "shop",
            "base_currency": "JPY",
            "analytics": {"enabled": false, "clickhouse": {"url": "http://h:8123", "database": "demo"}},
            "search": {"max_wait_ms": 50},
        }))
        .unwrap();
        assert_eq!((c.app.as_str(), c.base_currency.as_str(), c.max_poll), ("shop", "JPY", 10_000));
        assert!(c.is_enabled("read_model") && !c.is_enabled("analytics") && c.is_enabled("search"));
        let ch = c.sink::<AnalyticsSink>().clickhouse.as_ref().expect("clickhouse named");
        assert_eq!((ch.url.as_str(), ch.database.as_str(), ch.user.as_str()), ("http://h:8123", "demo", "default"));
        assert_eq!((c.sink::<SearchSink>().max_wait_ms, c.sink::<SearchSink>().max_batch), (50, 5_000));
        // What is printed reads back as the same configuration.
        let again: SinksConfig = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(format!("{again:?}"), format!("{c:?}"));
    }

    #[test]
    fn a_bad_value_in_a_section_is_refused_by_validate() {
        let mut c = SinksConfig::default();
        c.sink_mut::<ReadModelSink>().postgres_url = Some("mysql://h/db".to_string().into());
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("[sinks.read_model] postgres_url"), "{err}");
        c = SinksConfig { base_currency: "EURO".into(), ..SinksConfig::default() };
        assert!(c.validate().unwrap_err().to_string().contains("[sinks] base_currency"));
    }
}
