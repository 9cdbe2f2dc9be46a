//! Opens what the configuration asks for: the embedded twins by default, real services
//! when they are configured.

use std::sync::Arc;

use anyhow::Context;
use storeflow_avro::pii::Vault;
use storeflow_avro::{Codec, EmbeddedRegistry, HttpRegistry, SchemaRegistry};
use storeflow_ingest::publish::contract_topics;
use storeflow_ingest::{EmbeddedLog, KafkaLog, KafkaSettings, Log};

use crate::cli::Place;
use crate::config::Config;
use storeflow_sinks::redact;

/// The opened backends.
pub struct Backends {
    /// The log.
    pub log: Arc<dyn Log>,
    /// The event codec with its schema registry.
    pub codec: Arc<Codec>,
    /// The codec's registry when it is the embedded one (no `[schema_registry] url`): what
    /// `storeflow run` serves on `registry_listen`. `None` with a remote registry.
    pub embedded_registry: Option<Arc<EmbeddedRegistry>>,
    /// Customers' data keys (`<data-dir>/keys`): producers seal personal data with them.
    pub vault: Arc<Vault>,
    /// Where events go, for messages: "the embedded log in ./data" or "Kafka at host:9092".
    pub target: String,
    /// One line per backend, for the start-up banner.
    pub banner: Vec<String>,
}

/// Applies command-line overrides to the configuration.
pub fn apply_place(config: &mut Config, place: &Place) {
    if let Some(d) = &place.data_dir {
        config.data_dir = d.clone();
    }
    if let Some(l) = place.listen {
        config.listen = l;
    }
    if let Some(l) = &place.registry_listen {
        config.registry_listen = l.clone();
    }
}

/// Opens the log and the codec, and creates the contract's topics. Each configured real
/// service replaces its embedded twin, and the banner says which is which.
pub fn open(config: &Config) -> anyhow::Result<Backends> {
    let mut banner = Vec::new();
    let log: Arc<dyn Log> = match &config.kafka {
        Some(k) => {
            let settings = KafkaSettings {
                properties: k.properties.clone(),
                replication_factor: k.replication_factor,
                ..KafkaSettings::new(&k.brokers)
            };
            let log = KafkaLog::connect(settings).with_context(|| format!("connecting to Kafka at {}", k.brokers))?;
            banner.push(format!("log: Kafka at {} (STOREFLOW__KAFKA__BROKERS; instead of the embedded log)", k.brokers));
            Arc::new(log)
        }
        None => {
            let log = EmbeddedLog::open_with(&config.data_dir, config.log.clone())
                .with_context(|| format!("opening the embedded log in {}", config.data_dir.display()))?;
            banner.push(format!(
                "log: embedded, {} (fsync {}, segments {} MiB)",
                config.data_dir.display(),
                match config.log.fsync {
                    storeflow_ingest::FsyncPolicy::Always => "always".to_string(),
                    storeflow_ingest::FsyncPolicy::Interval => format!("every {} ms", config.log.fsync_interval_ms),
                    storeflow_ingest::FsyncPolicy::Never => "never".to_string(),
                },
                config.log.segment_bytes >> 20
            ));
            let r = log.recovery();
            if r.torn_bytes > 0 || r.uncommitted_records > 0 {
                banner.push(format!(
                    "log recovery: cut {} torn bytes and {} records of unfinished transactions left by a crash",
                    r.torn_bytes, r.uncommitted_records
                ));
            }
            Arc::new(log)
        }
    };
    log.create_topics(&contract_topics(Some(config.partitions)))
        .context("creating the contract's topics")?;
    let (registry, embedded_registry): (Arc<dyn SchemaRegistry>, _) = match &config.schema_registry {
        Some(r) => (
            Arc::new(HttpRegistry::new(&r.url).with_context(|| format!("schema registry at {}", storeflow_sinks::redact::url(&r.url)))?),
            None,
        ),
        None => {
            let embedded = Arc::new(EmbeddedRegistry::new().context("loading the event contract")?);
            (embedded.clone(), Some(embedded))
        }
    };
    let codec = Arc::new(Codec::new(registry).context("registering the event contract's schemas")?);
    banner.push(match &config.schema_registry {
        Some(r) => format!("schemas: registry at {} (STOREFLOW__SCHEMA_REGISTRY__URL; instead of the embedded registry)", storeflow_sinks::redact::url(&r.url)),
        None => format!("schemas: {}", codec.registry().describe()),
    });
    // The sinks' stores are named in `[sinks]`: `storeflow run` and `demo` name them when
    // they start the sinks (`pipeline::sinks_banner`).
    // Where payments go (docs/PAYMENTS.md).
    banner.push(match config.stripe.as_ref().map(|s| (s.secret_key.is_some(), redact::url(&s.api_base))) {
        Some((true, at)) => format!("payments: Stripe at {at} ([stripe] secret_key)"),
        Some((false, at)) => format!("payments: test mode (Stripe's test tokens, no money moves); [stripe] names {at} but no secret_key"),
        None => "payments: test mode (Stripe's test tokens, no money moves; set [stripe] secret_key for Stripe)".to_string(),
    });
    let target = match &config.kafka {
        Some(k) => format!("Kafka at {}", k.brokers),
        None => format!("the embedded log in {}", config.data_dir.display()),
    };
    let keys = config.data_dir.join("keys");
    let vault = Arc::new(Vault::load(&keys).with_context(|| format!("opening the personal-data vault in {}", keys.display()))?);
    Ok(Backends {
        log,
        codec,
        embedded_registry,
        vault,
        target,
        banner,
    })
}
