//! Opens what the configuration asks for: the embedded twins by default, real services
//! when they are configured.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use storeflow_avro::Codec;
use storeflow_ingest::publish::contract_topics;
use storeflow_ingest::{EmbeddedLog, Log};

use crate::cli::Place;
use crate::config::Config;

/// The opened backends.
pub struct Backends {
    /// The log.
    pub log: Arc<dyn Log>,
    /// The event codec with its schema registry.
    pub codec: Arc<Codec>,
    /// Where the data lives (embedded mode).
    pub data_dir: PathBuf,
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
}

/// Opens the log and the codec, and creates the contract's topics.
pub fn open(config: &Config) -> anyhow::Result<Backends> {
    let unsupported: Vec<String> = config
        .external_services()
        .into_iter()
        .map(|(name, at)| format!("{name} ({at})"))
        .collect();
    if !unsupported.is_empty() {
        bail!(
            "configured for {}, but this build of storeflow runs only the embedded backends so far; \
             unset those STOREFLOW__* variables (or the storeflow.toml sections) to run embedded",
            unsupported.join(", ")
        );
    }
    let log = EmbeddedLog::open_with(&config.data_dir, config.log.clone())
        .with_context(|| format!("opening the embedded log in {}", config.data_dir.display()))?;
    let mut banner = vec![format!(
        "log: embedded, {} (fsync {}, segments {} MiB)",
        config.data_dir.display(),
        match config.log.fsync {
            storeflow_ingest::FsyncPolicy::Always => "always".to_string(),
            storeflow_ingest::FsyncPolicy::Interval => format!("every {} ms", config.log.fsync_interval_ms),
            storeflow_ingest::FsyncPolicy::Never => "never".to_string(),
        },
        config.log.segment_bytes >> 20
    )];
    let r = log.recovery();
    if r.torn_bytes > 0 || r.uncommitted_records > 0 {
        banner.push(format!(
            "log recovery: cut {} torn bytes and {} records of unfinished transactions left by a crash",
            r.torn_bytes, r.uncommitted_records
        ));
    }
    let log: Arc<dyn Log> = Arc::new(log);
    log.create_topics(&contract_topics(Some(config.partitions)))
        .context("creating the contract's topics")?;
    let codec = Arc::new(Codec::embedded().context("loading the event contract")?);
    banner.push(format!("schemas: {}", codec.registry().describe()));
    Ok(Backends {
        log,
        codec,
        data_dir: config.data_dir.clone(),
        banner,
    })
}
