//! `storeflow run` and `storeflow process`: open the backends, start the processors (and,
//! for `run`, the sinks, the HTTP API on `listen` and the schema registry on
//! `registry_listen`), and serve until Ctrl-C.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use storeflow_processors::metrics::Metrics;

use crate::backends::Backends;
use crate::config::Config;
use crate::{pipeline, report};

/// Runs the processors in `only` (all when empty), and the sinks when `sinks` is set, until
/// Ctrl-C.
pub fn run(b: &Backends, config: &Config, only: &[String], sinks: bool) -> anyhow::Result<()> {
    // A bad `--registry-listen` is refused before anything starts.
    config.registry_addr()?;
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
    println!("Processors: {} (state: {}).", pipeline.names().join(", "), config.runtime.state);
    match &running_sinks {
        Some(s) if !s.names().is_empty() => println!("Sinks: {}.", s.names().join(", ")),
        Some(_) => println!("Sinks: all disabled in [sinks]."),
        None => {}
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // /readyz (of the API, or of `storeflow process` on ops_listen) answers 503 naming a
    // processor or sink whose thread has ended.
    let mut threads: Vec<(String, Arc<dyn Fn() -> bool + Send + Sync>)> = pipeline.liveness().into_iter().map(|(n, probe)| (n.to_string(), probe)).collect();
    let Some(serving) = &running_sinks else {
        // `storeflow process`: processors only (several may share a host); the operations
        // endpoints on `ops_listen` when it is set.
        if let Some(addr) = config.ops_addr()? {
            let ready: Vec<(String, Box<dyn storeflow_api::read::Ready>)> = vec![("threads".into(), Box::new(storeflow_api::read::ThreadsReady(threads)))];
            let listener = rt
                .block_on(tokio::net::TcpListener::bind(addr))
                .with_context(|| format!("binding the operations endpoints to {addr} (`ops_listen` / --ops-listen)"))?;
            println!("Operations: /metrics, /readyz, /healthz on http://{}.", listener.local_addr()?);
            let registry = Arc::new(registry);
            rt.spawn(async move {
                if let Err(e) = storeflow_api::ops::serve(listener, registry, ready).await {
                    eprintln!("storeflow: the operations endpoints stopped serving: {e}");
                }
            });
        }
        println!("Press Ctrl-C to stop (or send SIGTERM).");
        let signal = rt.block_on(stop_signal())?;
        println!("{signal}: stopping: committing and handing partitions back");
        grace_watchdog(config.runtime.shutdown_grace_ms);
        return pipeline.stop();
    };
    // The HTTP API: writes go to the log; reads come from the sinks' handles, and what no
    // sink stores (vendors' live sales, recommendation lists) from the live state.
    let api_metrics = storeflow_api::ApiMetrics::register(&mut registry);
    let (keys, new_admin) = storeflow_api::KeyStore::open(&config.data_dir)?;
    let live = storeflow_api::Live::start(b.log.clone(), b.codec.clone())?;
    let mut reads = storeflow_api::Reads::from_sinks(serving, live.clone());
    for (name, l) in serving.liveness() {
        threads.push((format!("sink {name}"), Arc::new(move || l.is_alive())));
    }
    reads.readiness.push(("threads", Arc::new(storeflow_api::read::ThreadsReady(threads))));
    // The plans vendors may choose: those with a commission rate.
    let payments: storeflow_processors::payments::PaymentsConfig = serde_json::from_value(config.processor_config("payments"))?;
    let plans = payments.commission_bps.keys().cloned().collect();
    let state = storeflow_api::ApiState::new(storeflow_api::ApiConfig { time: config.time, plans, ..config.api.clone() }, b.log.clone(), b.codec.clone(), keys, b.vault.clone(), reads, Arc::new(registry), api_metrics)?;
    // Vendors' Connect onboarding goes through the payments worker's provider.
    let (refresh, ret) = config.stripe.as_ref().map_or((None, None), |s| (s.onboarding_refresh_url.clone(), s.onboarding_return_url.clone()));
    state.set_connect(Arc::new(crate::connect::ProviderConnect::new(payments, refresh, ret)));
    let served = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding the HTTP API to {} (`listen` / STOREFLOW__LISTEN)", config.listen))?;
        println!("HTTP API on http://{} (OpenAPI: /openapi.json; docs/API.md).", listener.local_addr()?);
        serve_registry(b, config).await?;
        if let Some(k) = &new_admin {
            let path = storeflow_api::auth::admin_key_path(&config.data_dir);
            println!("{}", admin_key_notice(k, &path, std::io::stdout().is_terminal()));
        }
        println!("Press Ctrl-C to stop (or send SIGTERM).");
        let (tx, rx) = tokio::sync::oneshot::channel();
        let grace = config.runtime.shutdown_grace_ms;
        let served = storeflow_api::serve(listener, state, async move {
            let signal = stop_signal().await.unwrap_or("a failed signal handler");
            // The grace period counts from the signal, draining the API included.
            grace_watchdog(grace);
            let _ = tx.send(signal);
        })
        .await
        .context("serving the HTTP API");
        Ok::<_, anyhow::Error>((served, rx.await.unwrap_or("the API ending")))
    });
    let (served, signal) = served.unwrap_or_else(|e| (Err(e), "an error"));
    live.stop();
    println!("{signal}: stopping: committing and handing partitions back");
    let processors = pipeline.stop();
    if let Some(s) = running_sinks {
        s.stop()?;
    }
    served.and(processors)
}

/// Serves the codec's schema registry over the Confluent REST API on `registry_listen`, in
/// the background until the process ends, so stock Confluent clients resolve the ids in
/// storeflow's records and find the ids to write (docs/PRODUCING.md). With a remote
/// registry (`[schema_registry] url`) nothing is served: that registry assigns the ids.
async fn serve_registry(b: &Backends, config: &Config) -> anyhow::Result<()> {
    let Some(addr) = config.registry_addr()? else {
        println!("Schema registry: not served (registry_listen is empty).");
        return Ok(());
    };
    let Some(registry) = &b.embedded_registry else {
        println!("Schema registry: not served on {addr}; clients use the registry the codec uses (STOREFLOW__SCHEMA_REGISTRY__URL).");
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the schema registry to {addr} (`registry_listen` / STOREFLOW__REGISTRY_LISTEN; empty: not served)"))?;
    let options = storeflow_api::registry::RegistryOptions {
        basic_auth: config.registry_basic_auth.clone(),
        // In memory, rebuilt from the compiled-in contract at every start: an id handed out
        // for any other schema would not resolve after a restart.
        contract_only: true,
    };
    println!(
        "Schema registry (Confluent REST API{}) on http://{} (docs/PRODUCING.md).",
        if options.basic_auth.is_some() { ", basic auth" } else { "" },
        listener.local_addr()?
    );
    let registry = registry.clone();
    tokio::spawn(async move {
        if let Err(e) = storeflow_api::registry::serve(listener, registry, options).await {
            eprintln!("storeflow: the schema registry stopped serving: {e}");
        }
    });
    Ok(())
}

/// Waits for SIGINT (Ctrl-C) or SIGTERM (what a container stop or systemd sends), and
/// names the one that came.
async fn stop_signal() -> std::io::Result<&'static str> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.map(|()| "SIGINT"),
        _ = term.recv() => Ok("SIGTERM"),
    }
}

/// Once a stop has begun: if committing, flushing and closing take longer than
/// `runtime.shutdown_grace_ms`, the process exits with status 1 rather than hang until
/// something SIGKILLs it (nothing acknowledged is lost either way: what was not committed
/// is processed again after the restart).
fn grace_watchdog(grace_ms: u64) {
    let grace = std::time::Duration::from_millis(grace_ms);
    std::thread::spawn(move || {
        std::thread::sleep(grace);
        eprintln!("storeflow: the stop took longer than runtime.shutdown_grace_ms ({} ms); exiting without finishing it", grace.as_millis());
        std::process::exit(1);
    });
}

/// What `storeflow run` says about the admin key it just created. The key itself is shown
/// only on a terminal: piped or redirected, stdout ends up in log files and CI output,
/// so then only the file it was written to is named.
fn admin_key_notice(key: &str, path: &Path, stdout_is_terminal: bool) -> String {
    if stdout_is_terminal {
        format!("Admin API key, shown once (also in {}, mode 0600): {key}", path.display())
    } else {
        format!(
            "A fresh admin API key was written to {} (mode 0600); it is not printed because stdout is not a terminal.",
            path.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_key_is_printed_only_when_stdout_is_a_terminal() {
        let path = Path::new("data/admin.key");
        let piped = admin_key_notice("sf_secret", path, false);
        assert!(!piped.contains("sf_secret"), "{piped}");
        assert!(piped.contains("data/admin.key") && piped.contains("0600"), "{piped}");
        let tty = admin_key_notice("sf_secret", path, true);
        assert!(tty.contains("sf_secret") && tty.contains("data/admin.key"), "{tty}");
    }
}
