//! What the end-to-end tests wire the same way: every registered processor, and the API as
//! `storeflow run` builds it beside the sinks, served on a free port.

#![allow(dead_code)]

use std::sync::Arc;

use prometheus_client::registry::Registry;
use serde_json::Value;
use storeflow_avro::Codec;
use storeflow_ingest::Log;
use storeflow_processors::metrics::Metrics;
use storeflow_processors::{Runtime, RuntimeConfig, StateBackend};

/// Every registered processor of application `app`, state in memory, metrics in `registry`.
pub fn processors(log: &Arc<dyn Log>, codec: &Arc<Codec>, app: &str, registry: &mut Registry) -> Vec<Runtime> {
    let metrics = Arc::new(Metrics::register(registry));
    let topology = Arc::new(storeflow_processors::topology(&**log, &storeflow_processors::registry(), &|_| Value::Null).unwrap());
    let rc = RuntimeConfig { app: app.to_string(), state: StateBackend::Memory, topology: Some(topology), ..RuntimeConfig::default() };
    storeflow_processors::registry()
        .iter()
        .map(|reg| Runtime::spawn((reg.build)(&Value::Null).unwrap(), log.clone(), codec.clone(), rc.clone(), metrics.clone()).unwrap())
        .collect()
}

/// The API as `storeflow run` wires it beside `sinks` (reads from the sinks and the live
/// state, keys in `dir`), served on a free port of `rt`. Returns the live state (to stop), a
/// client, the admin key and a service key (a trusted backend's: the
/// catalog, stock and payments of the tests go through it).
pub fn serve_beside_sinks(
    rt: &tokio::runtime::Runtime,
    log: &Arc<dyn Log>,
    codec: &Arc<Codec>,
    sinks: &storeflow_sinks::Sinks,
    dir: &std::path::Path,
    mut registry: Registry,
) -> (Arc<storeflow_api::Live>, super::client::Client, String, String) {
    use storeflow_api::{ApiConfig, ApiMetrics, ApiState, KeyStore, Live, Reads, Role};
    let live = Live::start(log.clone(), codec.clone()).unwrap();
    let reads = Reads::from_sinks(sinks, live.clone());
    let (keys, admin) = KeyStore::open(dir).unwrap();
    let service = keys.create(Role::Service).unwrap();
    let metrics = ApiMetrics::register(&mut registry);
    let state = ApiState::new(ApiConfig::default(), log.clone(), codec.clone(), keys, Arc::new(storeflow_avro::pii::Vault::in_memory()), reads, Arc::new(registry), metrics).unwrap();
    let base = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(storeflow_api::serve(listener, state, std::future::pending()));
        base
    });
    (live, super::client::Client { http: reqwest::Client::new(), base }, admin.expect("a fresh dir gets an admin key"), service)
}
