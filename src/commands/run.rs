//! `storeflow run` and `storeflow process`: open the backends, start the processors (and,
//! for `run`, the sinks), and serve until Ctrl-C.

use std::sync::Arc;

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
    println!("Not running yet in this build: the HTTP API. Press Ctrl-C to stop.");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(tokio::signal::ctrl_c())?;
    println!("stopping: committing and handing partitions back");
    let processors = pipeline.stop();
    if let Some(s) = running_sinks {
        s.stop()?;
    }
    processors
}
