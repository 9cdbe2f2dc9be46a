//! The HTTP surface of storeflow.
//!
//! - The storefront API: [`router`] builds it, [`serve`] runs it on a listener. Writes
//!   (events, orders, cancel and return requests) are validated against the Avro contract
//!   and published to the log; reads come from the sinks' query handles (the read model,
//!   the product index, analytics — each with its embedded twin) and, for what no sink
//!   stores (vendors' live sales, recommendation lists), from [`live`] ([`read::Reads`]).
//!   It never calls a processor. `docs/API.md` describes every endpoint; `/openapi.json`
//!   is generated from the handlers.
//! - [`registry`] — the embedded schema registry over the Confluent Schema Registry REST API
//!   (the subset clients use), so Confluent-compatible tools and storeflow's own HTTP
//!   registry client can talk to it.
//!
//! Mounting it (what `storeflow run` does):
//!
//! ```no_run
//! # async fn f(log: std::sync::Arc<dyn storeflow_ingest::Log>, codec: std::sync::Arc<storeflow_avro::Codec>) -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use storeflow_api::{ApiConfig, ApiMetrics, ApiState, KeyStore, Live, Reads};
//! let mut registry = prometheus_client::registry::Registry::default();
//! let sinks = storeflow_sinks::Sinks::start(log.clone(), codec.clone(), storeflow_sinks::SinksConfig::embedded(std::path::Path::new("./data/sinks")), &mut registry)?;
//! let metrics = ApiMetrics::register(&mut registry);
//! let (keys, new_admin) = KeyStore::open(std::path::Path::new("./data"))?;
//! if let Some(k) = new_admin { println!("admin key (also in ./data/admin.key): {k}"); }
//! let vault = Arc::new(storeflow_avro::pii::Vault::load(std::path::Path::new("./data/keys"))?);
//! let reads = Reads::from_sinks(&sinks, Live::start(log.clone(), codec.clone())?);
//! let state = ApiState::new(ApiConfig::default(), log, codec, keys, vault, reads, Arc::new(registry), metrics)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! storeflow_api::serve(listener, state, std::future::pending()).await?;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod config;
pub mod connect;
pub mod customers;
pub mod error;
pub mod ids;
pub mod live;
pub mod metrics;
pub mod ops;
pub mod pages;
pub mod read;
pub mod ready;
pub mod registry;
pub mod roles;
pub mod routes;
pub mod state;
pub mod vendors;
pub mod webhooks;
pub mod writes;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::{Caller, KeyStore, RateLimits, Role};
pub use config::{ApiConfig, SetupError};
pub use connect::{Account, Connect, ConnectError, OnboardingLink};
pub use customers::CustomersConfig;
pub use error::{ApiError, ApiResult};
pub use metrics::ApiMetrics;
pub use live::Live;
pub use read::Reads;
pub use state::ApiState;

#[derive(OpenApi)]
#[openapi(
    info(title = "storeflow API", description = "Events, orders, inventory, catalog search, recommendations, vendor sales and analytics of the storeflow marketplace. Errors are `{\"error\": {\"code\", \"message\", \"field\"?}}`."),
    modifiers(&BearerAuth),
    components(schemas(error::ErrorBody, error::ErrorDetail, read::DashboardRange, live::Granularity, read::SortBy)),
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("An API key (`sf_…`); its role decides what it may do.")).build()),
        );
        components.add_security_scheme(
            "customer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A signed-in shopper's JWT from the marketplace's identity provider (with `[api.customers]`): HS256 with the \
                         shared secret, or RS256/ES256 with a key of the JWKS file chosen by `kid`; `exp`, `nbf`, `iss` and `aud` are \
                         checked and `sub` is the customer id. A customer reads, cancels and returns its own orders, places orders for \
                         itself and publishes shoppers' events about itself; everything else is 403.",
                    ))
                    .build(),
            ),
        );
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
        .routes(routes!(stripe_webhook))
        .routes(routes!(get_inventory))
        .routes(routes!(get_product))
        .routes(routes!(search))
        .routes(routes!(recommendations))
        .routes(routes!(vendor_sales))
        .routes(routes!(vendor_sales_stream))
        .routes(routes!(crate::vendors::vendor_orders))
        .routes(routes!(crate::vendors::vendor_low_stock))
        .routes(routes!(dashboard))
        .routes(routes!(vendor_analytics))
        .routes(routes!(customer_analytics))
        .routes(routes!(inventory_analytics))
        .routes(routes!(fraud_analytics))
        .routes(routes!(crate::vendors::change_plan))
        .routes(routes!(crate::vendors::onboarding))
        .routes(routes!(create_key, list_keys))
        .routes(routes!(revoke_key))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// The OpenAPI 3.1 document of the API (what `/openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut spec = api_routes().split_for_parts().1;
    declare_middleware_answers(&mut spec);
    spec
}

/// Adds to every operation the answers the middleware can give on any route, so the
/// document stays the truth about each one: 400 for an unknown query parameter, 401 for an
/// unknown key, 429 for rate limits, 503 for a request past its time, 413 for a body too
/// large.
fn declare_middleware_answers(spec: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let error = |d: &str| {
        RefOr::T(ResponseBuilder::new().description(d).content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build()).build())
    };
    for item in spec.paths.paths.values_mut() {
        for op in [&mut item.get, &mut item.post, &mut item.put, &mut item.delete, &mut item.patch].into_iter().flatten() {
            let r = &mut op.responses.responses;
            r.entry("400".into()).or_insert_with(|| error("a parameter or field that does not fit (an unknown query parameter on any route)"));
            r.entry("401".into()).or_insert_with(|| error("an unknown or malformed API key, or a customer token refused (expired, bad signature, wrong audience or issuer, …); a request without either is anonymous"));
            r.entry("429".into()).or_insert_with(|| error("too many requests from this key, or too many failed authentications from this address"));
            r.entry("503".into()).or_insert_with(|| error("a backend is not ready, or the request took longer than api.request_timeout_ms"));
            if op.request_body.is_some() {
                r.entry("413".into()).or_insert_with(|| error("the body is larger than api.max_body_bytes"));
            }
        }
    }
}

/// Paths that need no key and are not rate limited: probes and the spec.
const OPS_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics", "/openapi.json"];

/// Authenticates the caller (401 for a malformed or unknown key, or a customer token that
/// does not verify), applies the rate limit (429 with `Retry-After`) and hands the
/// [`Caller`] to the handlers.
async fn authenticate(State(s): State<ApiState>, mut req: Request, next: Next) -> Response {
    // Guessing keys or forging tokens costs the guesser: past a few failures a second from
    // one address, 429 instead of 401.
    let refuse = |req: &Request, why: String| {
        let from = req.extensions().get::<ConnectInfo<SocketAddr>>().map_or_else(|| "unknown".to_string(), |ConnectInfo(a)| a.ip().to_string());
        match s.inner.auth_failures.check(from) {
            Err(e) => e.into_response(),
            Ok(()) => ApiError::Unauthorized(why).into_response(),
        }
    };
    let caller = match req.headers().get(header::AUTHORIZATION) {
        None => Caller::Anonymous,
        Some(v) => {
            let Some(secret) = v.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim) else {
                return ApiError::Unauthorized("the Authorization header must be `Bearer <key>`".into()).into_response();
            };
            // A JWT is `header.claims.signature`; keys (`sf_` + hex) have no dots.
            let jwt = secret.bytes().filter(|b| *b == b'.').count() == 2;
            match (&s.inner.customers, jwt) {
                (Some(verifier), true) => match verifier.verify(secret) {
                    Ok(id) => Caller::Customer { id },
                    Err(why) => return refuse(&req, format!("customer token refused: {why}")),
                },
                _ => match s.inner.keys.lookup(secret) {
                    Some((id, role)) => Caller::Key { id, role },
                    None if jwt => return refuse(&req, "unknown API key (customer tokens are not accepted: no [api.customers])".into()),
                    None => return refuse(&req, "unknown API key".into()),
                },
            }
        }
    };
    let path = req.uri().path();
    if !OPS_PATHS.contains(&path) {
        let who = match &caller {
            Caller::Key { id, .. } => id.clone(),
            Caller::Customer { id } => format!("customer:{id}"),
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

/// Answers 503 when a handler takes longer than `request_timeout_ms` (a slow backend
/// holds its own caller, not a connection forever).
async fn time_limit(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    let limit = std::time::Duration::from_millis(s.inner.config.request_timeout_ms);
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::Unavailable(format!("the request took longer than {} ms (api.request_timeout_ms); retry", limit.as_millis())).into_response(),
    }
}

/// Counts and times every request by method, route template and status, inside a `request`
/// trace span.
async fn observe(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    use tracing::Instrument;
    let start = Instant::now();
    let method = req.method().as_str().to_string();
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    // Every log line of the request carries its method, route and (once known) status.
    let span = tracing::info_span!("request", method = %method, route = %route, status = tracing::field::Empty);
    let resp = next.run(req).instrument(span.clone()).await;
    span.record("status", resp.status().as_u16());
    let labels = metrics::RequestLabels { method, route, status: resp.status().as_u16() };
    s.inner.metrics.requests.get_or_create(&labels).inc();
    s.inner.metrics.latency.get_or_create(&labels).observe(start.elapsed().as_secs_f64());
    resp
}

/// The query parameters each operation declares in the OpenAPI document (`"GET /v1/search"`
/// → `q`, `page`, …): the document is the one list of what a route takes.
type QueryNames = HashMap<String, Vec<String>>;

fn query_names(spec: &utoipa::openapi::OpenApi) -> QueryNames {
    use utoipa::openapi::path::ParameterIn;
    let mut names = QueryNames::new();
    for (path, item) in &spec.paths.paths {
        let ops = [("GET", &item.get), ("POST", &item.post), ("PUT", &item.put), ("DELETE", &item.delete), ("PATCH", &item.patch)];
        for (method, op) in ops {
            let Some(op) = op else { continue };
            let declared = item.parameters.iter().chain(op.parameters.iter()).flatten();
            let query = declared.filter(|p| matches!(p.parameter_in, ParameterIn::Query)).map(|p| p.name.clone()).collect();
            names.insert(format!("{method} {path}"), query);
        }
    }
    names
}

/// Refuses a query parameter the route does not declare (400 naming it), as unknown body
/// fields are refused: a misspelt `sizee=5` must not be silently ignored.
async fn known_query(State(names): State<Arc<QueryNames>>, req: Request, next: Next) -> Response {
    if let (Some(q), Some(route)) = (req.uri().query(), req.extensions().get::<MatchedPath>()) {
        let op = format!("{} {}", req.method(), route.as_str());
        if let Some(allowed) = names.get(&op) {
            for (name, _) in form_urlencoded::parse(q.as_bytes()) {
                if !allowed.iter().any(|a| *a == name) {
                    let takes = if allowed.is_empty() { "no query parameters".to_string() } else { allowed.join(", ") };
                    let message = format!("unknown query parameter `{name}`; {op} takes {takes}");
                    return ApiError::Invalid { code: "unknown_parameter", message, field: Some(name.into_owned()) }.into_response();
                }
            }
        }
    }
    next.run(req).await
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint; see /openapi.json".into())
}

/// The API as an axum [`Router`] (state applied): every endpoint, `/openapi.json`, auth,
/// rate and body limits, and metrics.
pub fn router(state: ApiState) -> Router {
    let (router, mut spec) = api_routes().split_for_parts();
    declare_middleware_answers(&mut spec);
    let names = Arc::new(query_names(&spec));
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
        .merge(pages::router())
        .route_layer(middleware::from_fn_with_state(names, known_query))
        .route_layer(middleware::from_fn_with_state(state.clone(), time_limit))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .route_layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(state.inner.config.max_body_bytes))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves (then finishes the requests in
/// flight). Client addresses reach the handlers (anonymous rate limits, order IPs).
///
/// A client gets `header_read_timeout_ms` to send its request's headers (hyper closes the
/// connection otherwise: a slowloris holds nothing), and open SSE streams end within a
/// second of `shutdown`, so stopping waits only for real requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use tower::ServiceExt;
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_millis(state.inner.config.header_read_timeout_ms));
    let app = router(state.clone());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment, keep serving.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone().map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(addr));
            req
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), hyper_util::service::TowerToHyperService::new(app));
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, client = %addr, "connection ended with an error");
            }
        });
    }
    state.inner.closing.store(true, std::sync::atomic::Ordering::Relaxed);
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
