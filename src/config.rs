//! Configuration, layered: defaults in code → `storeflow.toml` (or `--config FILE`) →
//! environment variables `STOREFLOW__<SECTION>__<KEY>` (for example
//! `STOREFLOW__KAFKA__BROKERS=127.0.0.1:9092`) → command-line flags.
//!
//! Every field is documented here; `storeflow config` prints the effective values, with
//! secrets masked: `Serialize` is for showing a configuration, and it goes through
//! [`storeflow_sinks::redact`] (every `[kafka.properties]` value under a secret key,
//! credentials in every URL). `Debug` masks the same way.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use storeflow_ingest::EmbeddedConfig;
use storeflow_sinks::redact;

/// The whole configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory of the embedded log and the embedded stores.
    pub data_dir: PathBuf,
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// Address `storeflow run` serves the schema registry on, over the Confluent Schema
    /// Registry REST API: the embedded registry the codec encodes and decodes with, so stock
    /// Confluent clients resolve the schema ids in storeflow's records (docs/PRODUCING.md).
    /// Empty: not served. Not served either when `[schema_registry] url` is set: then that
    /// registry assigns the ids, and clients talk to it.
    pub registry_listen: String,
    /// `user:password` every client of the served registry must send as HTTP basic auth
    /// (`basic.auth.user.info` in Confluent clients); unset: no auth. Shown masked.
    #[serde(serialize_with = "redact::secret")]
    pub registry_basic_auth: Option<secrecy::SecretString>,
    /// Address `storeflow process` serves `/metrics`, `/readyz` and `/healthz` on (no key
    /// asked: bind it where only the scraper and the orchestrator reach). Empty: not served.
    /// `storeflow run` serves them with the API on `listen`.
    pub ops_listen: String,
    /// Partitions of each contract topic when storeflow creates it.
    pub partitions: u32,
    /// The embedded log.
    pub log: EmbeddedConfig,
    /// Kafka; when set, storeflow uses it instead of the embedded log.
    pub kafka: Option<KafkaConfig>,
    /// A Confluent-compatible schema registry; when set, it assigns schema ids.
    pub schema_registry: Option<UrlConfig>,
    /// Stripe (or stripe-mock) for payments; when unset, a clearly labelled test-mode provider.
    pub stripe: Option<StripeConfig>,
    /// How far from the wall clock event times may be, `[time]`: the API refuses
    /// `occurred_at` outside `[now − max_lateness_ms, now + max_skew_ms]`, the runtime
    /// dead-letters a source record dated past `now + max_skew_ms` (docs/SECURITY.md).
    pub time: storeflow_avro::TimeBounds,
    /// The processor runtime.
    pub runtime: RuntimeSettings,
    /// Per-processor settings, `[processors.<name>]` (see docs/ADDING-A-PROCESSOR.md).
    pub processors: std::collections::BTreeMap<String, serde_json::Value>,
    /// The sinks, `[sinks]` (see docs/SINKS.md): `[sinks.<name>]` is the one place a sink's
    /// store is named (`[sinks.read_model] postgres_url`, `[sinks.analytics.clickhouse]`,
    /// `[sinks.search.elasticsearch]`); without one it writes to its embedded twin.
    /// `data_dir` empty: `<data_dir>/sinks`.
    pub sinks: storeflow_sinks::SinksConfig,
    /// The HTTP API, `[api]`: body and batch limits, per-key rate, public reads (see
    /// docs/API.md). It listens on `listen`.
    pub api: storeflow_api::ApiConfig,
    /// SQL processors, `[sql]` (docs/SQL-PROCESSORS.md).
    pub sql: SqlSettings,
}

/// `[sql]`: where SQL processors come from.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqlSettings {
    /// Folders whose `*.sql` files run as processors, after the shipped ones (a file named
    /// like a shipped one replaces it). A folder that does not exist is skipped.
    pub dirs: Vec<PathBuf>,
    /// Run the SQL processors storeflow ships (`processors/sql/`, compiled in).
    pub shipped: bool,
}

impl Default for SqlSettings {
    fn default() -> Self {
        SqlSettings { dirs: vec![PathBuf::from("processors/sql")], shipped: true }
    }
}

/// `[runtime]`: how processors run.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSettings {
    /// Application id: prefix of consumer groups, changelogs and transactional ids.
    pub app: String,
    /// Commit each task's transaction at least this often.
    pub commit_interval_ms: u64,
    /// …or after this many records, whichever comes first.
    pub commit_records: u64,
    /// Where task state lives: `redb` (files under `<data_dir>/state`) or `memory` (rebuilt
    /// from the changelogs at every start).
    pub state: String,
    /// A stable name for this instance (Kafka static membership: restarts keep partitions).
    pub instance: Option<String>,
    /// How long an input group waits for a source input with nothing buffered and nothing to
    /// fetch before going on without it (Kafka Streams' `max.task.idle.ms`).
    pub max_task_idle_ms: u64,
    /// How much later than their cause records on a feedback edge (the saga's answers to
    /// inventory) are stamped, in ms of event time. Two runs agree only with the same value.
    pub lookahead_ms: i64,
    /// What a quiet input means: `wall_clock` (live: stream time follows the wall clock, so
    /// timers fire in quiet periods) or `end_of_input` (a bounded replay: once every source
    /// is idle, its input is over and every timer left fires; results depend on the log alone).
    pub idle: storeflow_processors::Idle,
    /// How long `storeflow run`/`process` may take to stop after SIGTERM or Ctrl-C
    /// (commit, flush, close) before it exits anyway, with status 1.
    pub shutdown_grace_ms: u64,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        let rt = storeflow_processors::RuntimeConfig::default();
        RuntimeSettings {
            app: rt.app,
            commit_interval_ms: rt.commit_interval.as_millis() as u64,
            commit_records: rt.commit_records,
            state: "redb".into(),
            instance: None,
            max_task_idle_ms: rt.max_task_idle.as_millis() as u64,
            lookahead_ms: rt.lookahead_ms,
            idle: rt.idle,
            shutdown_grace_ms: 30_000,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("data"),
            listen: "127.0.0.1:8080".parse().expect("a valid address"),
            registry_listen: "127.0.0.1:8081".into(),
            registry_basic_auth: None,
            ops_listen: String::new(),
            partitions: 4,
            log: EmbeddedConfig::default(),
            kafka: None,
            schema_registry: None,
            stripe: None,
            time: storeflow_avro::TimeBounds::default(),
            runtime: RuntimeSettings::default(),
            processors: Default::default(),
            sinks: storeflow_sinks::SinksConfig::embedded(PathBuf::new()),
            api: storeflow_api::ApiConfig::default(),
            sql: SqlSettings::default(),
        }
    }
}

/// Kafka connection settings.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated (`host:port,host:port`).
    pub brokers: String,
    /// Any librdkafka property, passed through (`[kafka.properties]` in the TOML file).
    /// Shown masked: `sasl.*`, passwords, key material (see docs/SECURITY.md).
    #[serde(default, serialize_with = "redact::properties")]
    pub properties: std::collections::BTreeMap<String, String>,
    /// Replication factor of the topics storeflow creates (-1: the brokers' default).
    #[serde(default = "broker_default")]
    pub replication_factor: i32,
}

fn broker_default() -> i32 {
    -1
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: std::collections::BTreeMap<&str, String> =
            self.properties.iter().map(|(k, v)| (k.as_str(), redact::value(k, v))).collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("properties", &properties)
            .field("replication_factor", &self.replication_factor)
            .finish()
    }
}

/// A service reached by URL.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlConfig {
    /// Where the service is, e.g. `http://127.0.0.1:8081`; `user:password@` and
    /// `?password=` are shown masked.
    #[serde(serialize_with = "redact::url_field")]
    pub url: String,
}

impl std::fmt::Debug for UrlConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlConfig").field("url", &redact::url(&self.url)).finish()
    }
}

/// Stripe settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeConfig {
    /// API base URL (`https://api.stripe.com`, or stripe-mock's address in tests).
    #[serde(serialize_with = "redact::url_field", default = "stripe_api")]
    pub api_base: String,
    /// Secret key (`sk_test_…`, `sk_live_…`; stripe-mock takes any `sk_test_…`). With it the
    /// payments worker calls Stripe; without it, it runs in test mode (docs/PAYMENTS.md).
    #[serde(serialize_with = "redact::secret", default)]
    pub secret_key: Option<secrecy::SecretString>,
    /// The monthly Price (`price_…`) of each paid vendor plan, e.g.
    /// `plan_prices = { pro = "price_…", enterprise = "price_…" }`: what
    /// `POST /v1/vendors/{id}/plan` subscribes the vendor to. With a secret key, every plan
    /// of `[processors.sales] commission_bps` but the free `default_plan` needs one.
    #[serde(default)]
    pub plan_prices: std::collections::BTreeMap<String, String>,
    /// Where Stripe sends a vendor whose onboarding link expired or was used
    /// (`GET /v1/vendors/{id}/onboarding` makes a new one there); needed for onboarding links.
    #[serde(default)]
    pub onboarding_refresh_url: Option<String>,
    /// Where Stripe sends a vendor that left the onboarding flow (finished or not).
    #[serde(default)]
    pub onboarding_return_url: Option<String>,
}

fn stripe_api() -> String {
    "https://api.stripe.com".into()
}

/// Keys that no longer name anything, and where their value goes now: a sink's store is
/// named in its own section only.
const MOVED: &[(&str, &str)] = &[
    ("postgres", "[sinks.read_model] postgres_url (STOREFLOW__SINKS__READ_MODEL__POSTGRES_URL)"),
    ("clickhouse", "[sinks.analytics.clickhouse] url (STOREFLOW__SINKS__ANALYTICS__CLICKHOUSE__URL)"),
    ("elasticsearch", "[sinks.search.elasticsearch] url (STOREFLOW__SINKS__SEARCH__ELASTICSEARCH__URL)"),
    ("sinks.analytics.base_currency", "[sinks] base_currency (STOREFLOW__SINKS__BASE_CURRENCY)"),
];

/// An address key that may be empty (off): `None` when it is, the address, or an error naming
/// `key` with an example.
fn optional_addr(key: &str, value: &str, example: &str, off: &str) -> anyhow::Result<Option<SocketAddr>> {
    let l = value.trim();
    if l.is_empty() {
        return Ok(None);
    }
    l.parse().map(Some).with_context(|| format!("{key} {l:?} is not an address like {example} (empty: {off})"))
}

impl Config {
    /// Loads the layers. `file` is `--config`; without it `./storeflow.toml` is read if it
    /// exists.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        // The defaults go in through the masking `Serialize`: they hold no secret to lose.
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(f) => {
                if !f.is_file() {
                    bail!("config file {} does not exist", f.display());
                }
                fig = fig.merge(Toml::file(f));
            }
            None => {
                if Path::new("storeflow.toml").is_file() {
                    fig = fig.merge(Toml::file("storeflow.toml"));
                }
            }
        }
        fig = fig.merge(Env::prefixed("STOREFLOW__").split("__"));
        for (old, new) in MOVED {
            if fig.find_value(old).is_ok() {
                bail!("`{old}` (in storeflow.toml or a STOREFLOW__ variable) is not read any more: set {new}");
            }
        }
        let config: Config = fig.extract().context("reading the configuration (defaults, storeflow.toml, STOREFLOW__* variables)")?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values without connecting to anything.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.partitions == 0 {
            bail!("partitions must be at least 1");
        }
        self.registry_addr()?;
        self.ops_addr()?;
        if let Some(a) = &self.registry_basic_auth
            && !secrecy::ExposeSecret::expose_secret(a).contains(':')
        {
            bail!("registry_basic_auth must be `user:password`");
        }
        self.log.validate().context("in [log]")?;
        self.time.validate().map_err(anyhow::Error::msg)?;
        if !matches!(self.runtime.state.as_str(), "redb" | "memory") {
            bail!("runtime.state must be \"redb\" or \"memory\", not {:?}", self.runtime.state);
        }
        self.sinks.validate().context("in [sinks]")?;
        let known: Vec<&str> = storeflow_processors::registry().iter().map(|r| r.name).collect();
        for name in self.processors.keys() {
            if !known.contains(&name.as_str()) {
                bail!("[processors.{name}]: there is no processor named {name} (known: {})", known.join(", "));
            }
        }
        let payments: storeflow_processors::payments::PaymentsConfig =
            serde_json::from_value(self.processor_config("payments")).map_err(|e| anyhow::anyhow!("[processors.payments]: {e}"))?;
        payments.provider().map_err(anyhow::Error::msg)?;
        Ok(())
    }

    /// Where `storeflow run` serves the schema registry: `registry_listen` parsed, `None`
    /// when it is empty.
    pub fn registry_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        optional_addr("registry_listen", &self.registry_listen, "127.0.0.1:8081", "the registry is not served")
    }

    /// Where `storeflow process` serves its operations endpoints: `ops_listen` parsed, `None`
    /// when it is empty.
    pub fn ops_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        optional_addr("ops_listen", &self.ops_listen, "127.0.0.1:9101", "not served")
    }

    /// `[processors.<name>]` as the processor is built from it: for `payments`, with what
    /// other sections decide for it — the provider and its key from `[stripe]`, the
    /// commission rates from `[processors.sales]` (so transfers and sales figures agree), the
    /// personal-data vault (`<data_dir>/keys`) that opens the checkouts' sealed tokens.
    pub fn processor_config(&self, name: &str) -> serde_json::Value {
        let own = self.processors.get(name).cloned().unwrap_or(serde_json::Value::Null);
        if name != "payments" {
            return own;
        }
        let mut own = match own {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        if let Some(s) = &self.stripe {
            if let Some(key) = &s.secret_key {
                own.entry("provider").or_insert("stripe".into());
                own.insert("stripe_secret_key".into(), secrecy::ExposeSecret::expose_secret(key).into());
            }
            own.insert("stripe_api_base".into(), s.api_base.clone().into());
            if !s.plan_prices.is_empty() {
                own.insert("plan_prices".into(), serde_json::json!(s.plan_prices));
            }
        }
        own.entry("vault_dir").or_insert(self.data_dir.join("keys").display().to_string().into());
        if let Some(serde_json::Value::Object(sales)) = self.processors.get("sales") {
            for key in ["commission_bps", "default_plan"] {
                if let Some(v) = sales.get(key) {
                    own.insert(key.into(), v.clone());
                }
            }
        }
        serde_json::Value::Object(own)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_the_file_and_nested_keys_use_double_underscores() {
        figment::Jail::expect_with(|jail| {
            // Only what the test sets: not the addresses `scripts/services env` exported.
            jail.clear_env();
            jail.create_file("storeflow.toml", "partitions = 8\n[log]\nfsync = \"always\"\n")?;
            jail.set_env("STOREFLOW__PARTITIONS", "2");
            jail.set_env("STOREFLOW__KAFKA__BROKERS", "127.0.0.1:19092");
            let c = Config::load(None).expect("loads");
            assert_eq!(c.partitions, 2);
            assert_eq!(c.log.fsync, storeflow_ingest::FsyncPolicy::Always);
            assert_eq!(c.kafka.expect("kafka set").brokers, "127.0.0.1:19092");
            Ok(())
        });
    }

    #[test]
    fn kafka_secrets_and_url_passwords_never_show_in_the_printed_config_or_debug() {
        figment::Jail::expect_with(|jail| {
            // Only what the test sets: not the addresses `scripts/services env` exported.
            jail.clear_env();
            jail.create_file(
                "storeflow.toml",
                "[kafka]\nbrokers = \"k:9092\"\n[kafka.properties]\n\"sasl.password\" = \"hunter2\"\n\"security.protocol\" = \"SASL_SSL\"\n\
                 [sinks.read_model]\npostgres_url = \"postgres://u:hunter2@h/db\"\n",
            )?;
            let c = Config::load(None).expect("loads");
            let kafka = c.kafka.as_ref().expect("kafka set");
            assert_eq!(kafka.properties["sasl.password"], "hunter2", "the real value still reaches librdkafka");
            for shown in [toml::to_string_pretty(&c).expect("serializes"), format!("{c:?}")] {
                assert!(!shown.contains("hunter2"), "{shown}");
                assert!(shown.contains("SASL_SSL") && shown.contains("postgres://u:***@h/db"), "{shown}");
            }
            Ok(())
        });
    }

    #[test]
    fn a_sinks_store_is_named_in_its_section_from_the_file_or_the_environment() {
        use storeflow_sinks::{AnalyticsSink, ReadModelSink, SearchSink};
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("storeflow.toml", "[sinks]\nbase_currency = \"JPY\"\n[sinks.search]\nenabled = false\n")?;
            jail.set_env("STOREFLOW__SINKS__READ_MODEL__POSTGRES_URL", "postgres://u:p@h/db");
            jail.set_env("STOREFLOW__SINKS__ANALYTICS__CLICKHOUSE__URL", "http://h:8123");
            jail.set_env("STOREFLOW__SINKS__ANALYTICS__CLICKHOUSE__DATABASE", "demo");
            let c = Config::load(None).expect("loads");
            let url = c.sinks.sink::<ReadModelSink>().postgres_url.as_ref().expect("postgres named");
            assert_eq!(secrecy::ExposeSecret::expose_secret(url), "postgres://u:p@h/db");
            let ch = c.sinks.sink::<AnalyticsSink>().clickhouse.as_ref().expect("clickhouse named");
            assert_eq!((ch.url.as_str(), ch.database.as_str(), ch.user.as_str()), ("http://h:8123", "demo", "default"));
            assert_eq!(c.sinks.base_currency, "JPY");
            assert!(!c.sinks.is_enabled("search") && c.sinks.sink::<SearchSink>().elasticsearch.is_none());
            Ok(())
        });
    }

    #[test]
    fn a_store_named_outside_its_sinks_section_is_an_error_that_names_the_section() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("storeflow.toml", "[postgres]\nurl = \"postgres://h/db\"\n")?;
            let err = format!("{:#}", Config::load(None).expect_err("[postgres] accepted"));
            assert!(err.contains("`postgres`") && err.contains("[sinks.read_model] postgres_url"), "{err}");
            jail.create_file("storeflow.toml", "[sinks.analytics]\nbase_currency = \"JPY\"\n")?;
            let err = format!("{:#}", Config::load(None).expect_err("[sinks.analytics] base_currency accepted"));
            assert!(err.contains("[sinks] base_currency"), "{err}");
            jail.create_file("storeflow.toml", "")?;
            jail.set_env("STOREFLOW__ELASTICSEARCH__URL", "http://h:9200");
            let err = format!("{:#}", Config::load(None).expect_err("STOREFLOW__ELASTICSEARCH__URL accepted"));
            assert!(err.contains("[sinks.search.elasticsearch] url (STOREFLOW__SINKS__SEARCH__ELASTICSEARCH__URL)"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn the_registry_listens_on_8081_unless_the_environment_empties_registry_listen() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            let c = Config::load(None).expect("loads");
            assert_eq!(c.registry_addr().expect("valid"), Some("127.0.0.1:8081".parse().expect("addr")));
            jail.set_env("STOREFLOW__REGISTRY_LISTEN", "");
            assert_eq!(Config::load(None).expect("loads").registry_addr().expect("valid"), None);
            jail.set_env("STOREFLOW__REGISTRY_LISTEN", "localhost");
            let err = format!("{:#}", Config::load(None).expect_err("not an address"));
            assert!(err.contains("registry_listen"), "{err}");
            jail.set_env("STOREFLOW__REGISTRY_LISTEN", "127.0.0.1:0");
            jail.set_env("STOREFLOW__REGISTRY_BASIC_AUTH", "sr:hunter2");
            let c = Config::load(None).expect("loads");
            for shown in [toml::to_string_pretty(&c).expect("serializes"), format!("{c:?}")] {
                assert!(!shown.contains("hunter2"), "{shown}");
            }
            jail.set_env("STOREFLOW__REGISTRY_BASIC_AUTH", "hunter2");
            let err = format!("{:#}", Config::load(None).expect_err("no user"));
            assert!(err.contains("user:password") && !err.contains("hunter2"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn an_unknown_key_is_an_error_that_names_it() {
        figment::Jail::expect_with(|jail| {
            // Only what the test sets: not the addresses `scripts/services env` exported.
            jail.clear_env();
            jail.create_file("storeflow.toml", "partitons = 8\n")?;
            let err = format!("{:#}", Config::load(None).expect_err("typo accepted"));
            assert!(err.contains("partitons"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn with_a_stripe_key_every_paid_plan_needs_a_price_and_the_prices_reach_the_payments_worker() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("storeflow.toml", "[stripe]\nsecret_key = \"sk_test_123\"\nplan_prices = { pro = \"price_pro\" }\n")?;
            let err = format!("{:#}", Config::load(None).expect_err("enterprise has no price"));
            assert!(err.contains("[stripe] plan_prices.enterprise"), "{err}");
            jail.create_file("storeflow.toml", "[stripe]\nsecret_key = \"sk_test_123\"\nplan_prices = { pro = \"price_pro\", enterprise = \"price_ent\" }\n")?;
            let c = Config::load(None).expect("loads");
            assert_eq!(c.processor_config("payments")["plan_prices"], serde_json::json!({"pro": "price_pro", "enterprise": "price_ent"}));
            Ok(())
        });
    }

    /// The example shipped at the top of the repository.
    const EXAMPLE: &str = include_str!("../storeflow.example.toml");

    /// Every key path of a TOML value (`sinks.read_model.max_batch`, …), tables descended.
    fn paths(v: &toml::Value, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
        if let toml::Value::Table(t) = v {
            for (k, v) in t {
                let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                out.insert(p.clone());
                paths(v, &p, out);
            }
        }
    }

    fn paths_of(text: &str) -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        paths(&toml::Value::Table(toml::from_str::<toml::Table>(text).expect("TOML")), "", &mut out);
        out
    }

    #[test]
    fn the_example_config_states_the_defaults_and_names_every_key_the_configuration_has() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("storeflow.toml", EXAMPLE)?;
            let c = Config::load(None).expect("the example loads");
            let shown = |c: &Config| {
                let mut v = toml::Value::try_from(c).expect("serializes");
                v.as_table_mut().expect("table").remove("processors");
                v
            };
            assert_eq!(shown(&c), shown(&Config::default()), "the example's live values are the defaults");
            for r in storeflow_processors::registry() {
                (r.build)(&c.processor_config(r.name)).unwrap_or_else(|e| panic!("[processors.{}] of the example: {e}", r.name));
                assert!(c.processors.contains_key(r.name), "the example has no [processors.{}]", r.name);
            }
            let named = paths_of(&EXAMPLE.replace("#~ ", ""));
            let defaults = paths_of(&toml::to_string(&Config::default()).expect("serializes"));
            let missing: Vec<&String> = defaults.difference(&named).collect();
            assert!(missing.is_empty(), "keys of the configuration the example does not name: {missing:?}");
            Ok(())
        });
    }

    #[test]
    fn every_setting_the_example_leaves_off_is_a_real_key_and_loads_when_turned_on() {
        use storeflow_sinks::{AnalyticsSink, ReadModelSink, SearchSink};
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("storeflow.toml", &EXAMPLE.replace("#~ ", ""))?;
            let c = Config::load(None).expect("the example with every `#~` line on loads");
            assert!(c.kafka.is_some() && c.schema_registry.is_some() && c.stripe.is_some() && c.registry_basic_auth.is_some());
            assert!(c.runtime.instance.is_some() && c.api.customers.is_some() && c.api.stripe_webhook.is_some());
            assert!(c.sinks.sink::<ReadModelSink>().postgres_url.is_some());
            assert!(c.sinks.sink::<AnalyticsSink>().clickhouse.is_some() && c.sinks.sink::<SearchSink>().elasticsearch.is_some());
            assert_eq!(c.processor_config("payments")["provider"], "test", "an explicit provider stays");
            Ok(())
        });
    }
}
