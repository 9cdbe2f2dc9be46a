//! `storeflow run` and `storeflow process`: open the backends, start the processors (and,
//! for `run`, the sinks and the HTTP API on `listen`), and serve until Ctrl-C.

use std::sync::Arc;

use anyhow::Context;

use storeflow_processors::metrics::Metrics;

use crate::backends::Backends;
use crate::config::Config;
use crate::{pipeline, report};

/// Runs the processors in `only` (all when empty), and the sinks when `sinks` is set, until
/// Ctrl-C.
pub fn run(b: &Backends, config: &Config, only: &[String], sinks: bool) -> anyhow::Result<()> {
    for line in &b.banner {
        eprintln!("{line}");
    }
    if sinks {
        for line in pipeline::sinks_banner(config) {
            eprintln!("{line}");
        }
    }
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));
    let pipeline = pipeline::start(b, config, only, metrics)?;
    let running_sinks = if sinks { Some(pipeline::start_sinks(b, config, &mut registry)?) } else { None };
    let topics = b.log.describe_topics()?;
    let records: u64 = topics.iter().map(|t| t.records()).sum();
    println!(
        "storeflow is running on {}: {} topics, {} records.",
        b.target,
        topics.len(),
        report::count(records)
    );
    if pipeline.names().is_empty() {
        println!("Processors: none registered in this build yet.");
    } else {
        println!("Processors: {} (state: {}).", pipeline.names().join(", "), config.runtime.state);
    }
    match &running_sinks {
        Some(s) if !s.names().is_empty() => println!("Sinks: {}.", s.names().join(", ")),
        Some(_) => println!("Sinks: all disabled in [sinks]."),
        None => {}
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if !sinks {
        // `storeflow process`: processors only, no listener (several may share a host).
        println!("Press Ctrl-C to stop.");
        rt.block_on(tokio::signal::ctrl_c())?;
        println!("stopping: committing and handing partitions back");
        return pipeline.stop();
    }
    // The HTTP API: writes go to the log; reads come from the sinks and from views of the
    // processors' outputs.
    let api_metrics = storeflow_api::ApiMetrics::register(&mut registry);
    let (keys, new_admin) = storeflow_api::KeyStore::open(&config.data_dir)?;
    // The views read only what the sinks do not serve (see topics_beside_sinks).
    let (read_model, analytics) = running_sinks.as_ref().map_or((false, false), |s| (s.read_model().is_some(), s.analytics().is_some()));
    let topics = storeflow_api::views::topics_beside_sinks(read_model, analytics);
    let views = storeflow_api::LogViews::start_reading(b.log.clone(), b.codec.clone(), &topics)?;
    let mut reads = views.reads();
    if let Some(s) = &running_sinks {
        reads = storeflow_api::sinks_adapter::with_sinks(reads, s.read_model(), s.search(), s.analytics());
    }
    let state = storeflow_api::ApiState::new(config.api.clone(), b.log.clone(), b.codec.clone(), keys, reads, Arc::new(registry), api_metrics)?;
    let served = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding the HTTP API to {} (`listen` / STOREFLOW__LISTEN)", config.listen))?;
        println!("HTTP API on http://{} (OpenAPI: /openapi.json; docs/API.md).", listener.local_addr()?);
        if let Some(k) = &new_admin {
            println!(
                "Admin API key, shown once (also in {}, mode 0600): {k}",
                storeflow_api::auth::admin_key_path(&config.data_dir).display()
            );
        }
        println!("Press Ctrl-C to stop.");
        storeflow_api::serve(listener, state, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving the HTTP API")
    });
    views.stop();
    println!("stopping: committing and handing partitions back");
    let processors = pipeline.stop();
    if let Some(s) = running_sinks {
        s.stop()?;
    }
    served.and(processors)
}
