//! What the handlers share: [`ApiState`].

use std::collections::HashMap;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use storeflow_avro::Codec;
use storeflow_avro::pii::Vault;
use storeflow_ingest::Log;

use crate::auth::{KeyStore, RateLimits};
use crate::config::{ApiConfig, SetupError};
use crate::error::{ApiError, ApiResult};
use crate::metrics::ApiMetrics;
use crate::read::Reads;
use crate::{customers, writes};

pub(crate) struct Inner {
    pub(crate) config: ApiConfig,
    pub(crate) log: Arc<dyn Log>,
    pub(crate) keys: KeyStore,
    pub(crate) limits: Arc<RateLimits>,
    /// Failed authentications per client address.
    pub(crate) auth_failures: Arc<RateLimits>,
    /// Customers' token verifier, with `[api.customers]`.
    pub(crate) customers: Option<customers::Verifier>,
    /// Open SSE streams per key id.
    pub(crate) streams: parking_lot::Mutex<HashMap<String, usize>>,
    /// Set when the server begins to stop: open streams end.
    pub(crate) closing: std::sync::atomic::AtomicBool,
    pub(crate) writer: writes::Writer,
    /// Customers' data keys: the writer seals personal data with it, order reads open it.
    pub(crate) vault: Arc<Vault>,
    pub(crate) reads: Reads,
    pub(crate) registry: Arc<Registry>,
    pub(crate) metrics: ApiMetrics,
    /// Vendors' Connect accounts at the payment provider, once the binary set it.
    pub(crate) connect: std::sync::OnceLock<Arc<dyn crate::connect::Connect>>,
}

/// What the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").field("config", &self.inner.config).field("reads", &self.inner.reads).finish()
    }
}

impl ApiState {
    /// The API on `log` (writes, with `codec`), reading from `reads`, authenticating with
    /// `keys`. `registry` is what `/metrics` serves; `metrics` must be registered in it
    /// ([`ApiMetrics::register`]) before it is frozen in the `Arc`.
    pub fn new(
        config: ApiConfig,
        log: Arc<dyn Log>,
        codec: Arc<Codec>,
        keys: KeyStore,
        vault: Arc<Vault>,
        reads: Reads,
        registry: Arc<Registry>,
        metrics: ApiMetrics,
    ) -> Result<ApiState, SetupError> {
        config.validate().map_err(SetupError::Config)?;
        let customers = config.customers.as_ref().map(customers::Verifier::new).transpose().map_err(SetupError::Config)?;
        let writer = writes::Writer::new(log.as_ref(), codec, vault.clone(), config.dedup_window)?;
        let limits = RateLimits::new(config.rate_per_second, config.rate_burst);
        let auth_failures = RateLimits::new(config.auth_failures_per_second, config.auth_failures_per_second.saturating_mul(4));
        let inner = Inner {
            config,
            log,
            keys,
            limits,
            auth_failures,
            customers,
            streams: parking_lot::Mutex::new(HashMap::new()),
            closing: std::sync::atomic::AtomicBool::new(false),
            writer,
            vault,
            reads,
            registry,
            metrics,
            connect: std::sync::OnceLock::new(),
        };
        Ok(ApiState { inner: Arc::new(inner) })
    }

    /// A slot for one more SSE stream of key `key_id`, given back when the guard drops;
    /// 429 when the key holds `max_streams_per_key` already.
    pub(crate) fn stream_slot(&self, key_id: &str) -> ApiResult<StreamSlot> {
        let max = self.inner.config.max_streams_per_key;
        let mut open = self.inner.streams.lock();
        let n = open.entry(key_id.to_string()).or_insert(0);
        if *n >= max {
            tracing::info!(key = key_id, max, "refusing another SSE stream: the key holds api.max_streams_per_key");
            return Err(ApiError::RateLimited { retry_after_secs: 1 });
        }
        *n += 1;
        Ok(StreamSlot { state: self.clone(), key_id: key_id.to_string() })
    }

    /// True while key `key_id` may go on streaming: not revoked, and the server not stopping.
    pub(crate) fn may_stream(&self, key_id: &str) -> bool {
        !self.inner.closing.load(std::sync::atomic::Ordering::Relaxed) && self.inner.keys.is_live(key_id)
    }

    /// Gives the API the payment provider's Connect accounts (`GET /v1/vendors/{id}/onboarding`
    /// answers 503 without). Once: false when one was set already.
    pub fn set_connect(&self, connect: Arc<dyn crate::connect::Connect>) -> bool {
        self.inner.connect.set(connect).is_ok()
    }

    /// The Connect accounts, when set.
    pub(crate) fn connect(&self) -> Option<Arc<dyn crate::connect::Connect>> {
        self.inner.connect.get().cloned()
    }

    /// The key store (to create keys from the CLI).
    pub fn keys(&self) -> &KeyStore {
        &self.inner.keys
    }
}

/// One open SSE stream of a key (see [`ApiState::stream_slot`]).
pub(crate) struct StreamSlot {
    state: ApiState,
    key_id: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.state.inner.streams.lock();
        if let Some(n) = open.get_mut(&self.key_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key_id);
            }
        }
    }
}

