//! The operations endpoints alone — `/metrics`, `/readyz`, `/healthz` — for `storeflow
//! process` (processors without the API, several per host), on `ops_listen`. The same
//! answers `storeflow run` gives on `listen`: Prometheus' text format from the same registry,
//! and 503 naming a processor whose thread has ended.
//!
//! No key is asked for: bind it to an address only the scraper and the orchestrator reach.
//! The problems `/readyz` lists are thread names, nothing more.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use serde_json::json;

use crate::ready::{ReadError, Ready};

struct Ops {
    registry: Arc<Registry>,
    ready: Vec<(String, Box<dyn Ready>)>,
}

/// The routes, over `registry` and the `ready` checks.
pub fn router(registry: Arc<Registry>, ready: Vec<(String, Box<dyn Ready>)>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/readyz", get(readyz))
        .route("/healthz", get(|| async { axum::Json(json!({"status": "ok"})) }))
        .with_state(Arc::new(Ops { registry, ready }))
}

/// Serves [`router`] on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, registry: Arc<Registry>, ready: Vec<(String, Box<dyn Ready>)>) -> std::io::Result<()> {
    axum::serve(listener, router(registry, ready)).await
}

async fn metrics(State(s): State<Arc<Ops>>) -> Response {
    crate::metrics::exposition(&s.registry)
}

async fn readyz(State(s): State<Arc<Ops>>) -> Response {
    let mut problems = Vec::new();
    for (name, r) in &s.ready {
        if let Err(ReadError::Unavailable(e) | ReadError::Internal(e)) = r.ready().await {
            problems.push(format!("{name}: {e}"));
        }
    }
    let status = if problems.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({"status": if problems.is_empty() { "ok" } else { "not ready" }, "problems": problems});
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ready::ThreadsReady;
    use std::sync::atomic::{AtomicBool, Ordering};

    async fn get(app: Router, path: &str) -> (StatusCode, String) {
        use tower::ServiceExt;
        let r = app.oneshot(axum::http::Request::get(path).body(axum::body::Body::empty()).expect("request")).await.expect("answer");
        let status = r.status();
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn readyz_turns_503_naming_the_processor_whose_thread_ended_and_metrics_are_served() {
        let alive = Arc::new(AtomicBool::new(true));
        let a = alive.clone();
        let threads = ThreadsReady(vec![("fraud".into(), Arc::new(move || a.load(Ordering::SeqCst)))]);
        let mut registry = Registry::default();
        let counter = prometheus_client::metrics::counter::Counter::<u64>::default();
        registry.register("storeflow_test_records", "records", counter.clone());
        counter.inc_by(7);
        let app = router(Arc::new(registry), vec![("threads".into(), Box::new(threads))]);
        assert_eq!(get(app.clone(), "/readyz").await.0, StatusCode::OK);
        let (status, body) = get(app.clone(), "/metrics").await;
        assert!(status == StatusCode::OK && body.contains("storeflow_test_records_total 7"), "{body}");
        alive.store(false, Ordering::SeqCst);
        let (status, body) = get(app, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("threads: stopped: fraud"), "{body}");
    }
}
