//! The API's Prometheus metrics, registered in the caller's registry under `storeflow_api_`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// GET, POST, …
    pub method: String,
    /// The route template (`/v1/orders/{id}`), never the raw path (bounded cardinality).
    pub route: String,
    /// Status code.
    pub status: u16,
}

/// The API's metrics.
#[derive(Clone, Debug)]
pub struct ApiMetrics {
    /// Requests answered.
    pub requests: Family<RequestLabels, Counter>,
    /// Seconds to answer, by route.
    pub latency: Family<RequestLabels, Histogram>,
    /// Events published (after deduplication).
    pub events_published: Counter,
    /// Events refused as duplicates.
    pub events_duplicate: Counter,
}

impl ApiMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &mut Registry) -> ApiMetrics {
        let m = ApiMetrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0001, 2.0, 16))),
            events_published: Counter::default(),
            events_duplicate: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("storeflow_api");
        r.register("http_requests", "HTTP requests answered", m.requests.clone());
        r.register("http_request_duration_seconds", "Time to answer an HTTP request", m.latency.clone());
        r.register("events_published", "Events published to the log through the API", m.events_published.clone());
        r.register("events_duplicate", "Events accepted again by event_id and not republished", m.events_duplicate.clone());
        m
    }
}

/// `registry` in the OpenMetrics text format, as every `/metrics` answers it (`storeflow
/// run`'s API and `storeflow process`'s operations endpoints).
pub fn exposition(registry: &Registry) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, registry) {
        Ok(()) => ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], out).into_response(),
        Err(e) => crate::error::ApiError::Internal(format!("encoding metrics: {e}")).into_response(),
    }
}
