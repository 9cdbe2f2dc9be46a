//! The HTTP surface of storeflow.
//!
//! - The storefront API (issue #8): [`router`] builds it, [`serve`] runs it on a listener.
//!   Writes (events, orders, cancel and return requests) are validated against the Avro
//!   contract and published to the log; reads go through the traits of [`read`], answered
//!   by the API's own [`views`] (from processor output topics) and, with the `sinks`
//!   feature, by storeflow-sinks' read model, search index and analytics
//!   ([`sinks_adapter`]). It never calls a processor. `docs/API.md` describes every
//!   endpoint; `/openapi.json` is generated from the handlers.
//! - [`registry`] — the embedded schema registry over the Confluent Schema Registry REST API
//!   (the subset clients use), so Confluent-compatible tools and storeflow's own HTTP
//!   registry client can talk to it.
//!
//! Mounting it (what `storeflow run` does):
//!
//! ```no_run
//! # async fn f(log: std::sync::Arc<dyn storeflow_ingest::Log>, codec: std::sync::Arc<storeflow_avro::Codec>) -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use storeflow_api::{ApiConfig, ApiState, KeyStore, LogViews, ApiMetrics};
//! let mut registry = prometheus_client::registry::Registry::default();
//! let metrics = ApiMetrics::register(&mut registry);
//! let (keys, new_admin) = KeyStore::open(std::path::Path::new("./data"))?;
//! if let Some(k) = new_admin { println!("admin key (also in ./data/admin.key): {k}"); }
//! let views = LogViews::start(log.clone(), codec.clone())?;
//! let state = ApiState::new(ApiConfig::default(), log, codec, keys, views.reads(), Arc::new(registry), metrics)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! storeflow_api::serve(listener, state, std::future::pending()).await?;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod error;
pub mod metrics;
pub mod read;
pub mod registry;
pub mod routes;
#[cfg(feature = "sinks")]
pub mod sinks_adapter;
pub mod views;
pub mod writes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use serde::Deserialize;
use storeflow_avro::Codec;
use storeflow_ingest::Log;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::{Caller, KeyStore, RateLimits, Role};
pub use error::{ApiError, ApiResult};
pub use metrics::ApiMetrics;
pub use read::Reads;
pub use views::LogViews;

/// `[api]` settings.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Largest request body, bytes (413 past it).
    pub max_body_bytes: usize,
    /// Most events in one `POST /v1/events`.
    pub max_batch: usize,
    /// Requests per second per key (anonymous calls: per client address).
    pub rate_per_second: u32,
    /// Requests a key may send at once above the rate.
    pub rate_burst: u32,
    /// `GET /v1/search` and `GET /v1/products/{id}` without a key.
    pub public_search: bool,
    /// `GET /v1/recommendations` without a key.
    pub public_recommendations: bool,
    /// How many recent `event_id`s are remembered to accept duplicates once.
    pub dedup_window: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_body_bytes: 1024 * 1024,
            max_batch: 500,
            rate_per_second: 2_000,
            rate_burst: 4_000,
            public_search: false,
            public_recommendations: false,
            dedup_window: 1_000_000,
        }
    }
}

impl ApiConfig {
    /// Checks the values make sense.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_body_bytes < 1024 {
            return Err(format!("api.max_body_bytes = {}: at least 1024", self.max_body_bytes));
        }
        if self.max_batch == 0 || self.rate_per_second == 0 || self.rate_burst == 0 {
            return Err("api.max_batch, api.rate_per_second and api.rate_burst must be at least 1".into());
        }
        Ok(())
    }
}

/// Why the API could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A configuration value is wrong.
    #[error("invalid API configuration: {0}")]
    Config(String),
    /// The log refused a producer.
    #[error(transparent)]
    Log(#[from] storeflow_ingest::LogError),
}

struct Inner {
    config: ApiConfig,
    log: Arc<dyn Log>,
    keys: KeyStore,
    limits: Arc<RateLimits>,
    writer: writes::Writer,
    reads: Reads,
    registry: Arc<Registry>,
    metrics: ApiMetrics,
}

/// What the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
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
        reads: Reads,
        registry: Arc<Registry>,
        metrics: ApiMetrics,
    ) -> Result<ApiState, SetupError> {
        config.validate().map_err(SetupError::Config)?;
        let writer = writes::Writer::new(log.as_ref(), codec, config.dedup_window)?;
        let limits = RateLimits::new(config.rate_per_second, config.rate_burst);
        Ok(ApiState { inner: Arc::new(Inner { config, log, keys, limits, writer, reads, registry, metrics }) })
    }

    /// The key store (to create keys from the CLI).
    pub fn keys(&self) -> &KeyStore {
        &self.inner.keys
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "storeflow API", description = "Events, orders, inventory, catalog search, recommendations, vendor sales and analytics of the storeflow marketplace. Errors are `{\"error\": {\"code\", \"message\", \"field\"?}}`."),
    modifiers(&BearerAuth),
    components(schemas(error::ErrorBody, error::ErrorDetail, read::Range, read::Granularity, read::SearchSort)),
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    }
}

/// The routes and their OpenAPI description, from the same list.
fn api_routes() -> OpenApiRouter<ApiState> {
    use routes::*;
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(post_events))
        .routes(routes!(post_order))
        .routes(routes!(get_order))
        .routes(routes!(cancel_order))
        .routes(routes!(return_order))
        .routes(routes!(get_inventory))
        .routes(routes!(get_product))
        .routes(routes!(search))
        .routes(routes!(recommendations))
        .routes(routes!(vendor_sales))
        .routes(routes!(vendor_sales_stream))
        .routes(routes!(dashboard))
        .routes(routes!(vendor_analytics))
        .routes(routes!(create_key, list_keys))
        .routes(routes!(revoke_key))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// The OpenAPI 3.1 document of the API (what `/openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().split_for_parts().1
}

/// Paths that need no key and are not rate limited: probes and the spec.
const OPS_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics", "/openapi.json"];

/// Authenticates the caller (401 for a malformed or unknown key), applies the rate limit
/// (429 with `Retry-After`) and hands the [`Caller`] to the handlers.
async fn authenticate(State(s): State<ApiState>, mut req: Request, next: Next) -> Response {
    let caller = match req.headers().get(header::AUTHORIZATION) {
        None => Caller::Anonymous,
        Some(v) => {
            let Some(secret) = v.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim) else {
                return ApiError::Unauthorized("the Authorization header must be `Bearer <key>`".into()).into_response();
            };
            match s.inner.keys.lookup(secret) {
                Some((id, role)) => Caller::Key { id, role },
                None => return ApiError::Unauthorized("unknown API key".into()).into_response(),
            }
        }
    };
    let path = req.uri().path();
    if !OPS_PATHS.contains(&path) {
        let who = match &caller {
            Caller::Key { id, .. } => id.clone(),
            Caller::Anonymous => match req.extensions().get::<ConnectInfo<SocketAddr>>() {
                Some(ConnectInfo(a)) => format!("ip:{}", a.ip()),
                None => "anonymous".to_string(),
            },
        };
        if let Err(e) = s.inner.limits.check(who) {
            return e.into_response();
        }
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// Counts and times every request by method, route template and status.
async fn observe(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_string();
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let resp = next.run(req).await;
    let labels = metrics::RequestLabels { method, route, status: resp.status().as_u16() };
    s.inner.metrics.requests.get_or_create(&labels).inc();
    s.inner.metrics.latency.get_or_create(&labels).observe(start.elapsed().as_secs_f64());
    resp
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint; see /openapi.json".into())
}

/// The API as an axum [`Router`] (state applied): every endpoint, `/openapi.json`, auth,
/// rate and body limits, and metrics.
pub fn router(state: ApiState) -> Router {
    let (router, spec) = api_routes().split_for_parts();
    let spec = Arc::new(spec);
    let limits = state.inner.limits.clone();
    // Forget idle rate-limit buckets now and then, so memory follows active keys.
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        let weak = Arc::downgrade(&limits);
        rt.spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                match weak.upgrade() {
                    Some(l) => l.prune(),
                    None => break,
                }
            }
        });
    }
    router
        .route("/openapi.json", axum::routing::get(move || async move { Json(spec.as_ref().clone()) }))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .route_layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(state.inner.config.max_body_bytes))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves (then finishes the requests in
/// flight). Client addresses reach the handlers (anonymous rate limits, order IPs).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
