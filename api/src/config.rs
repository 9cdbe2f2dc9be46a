//! `[api]` settings, and why the API could not be set up.

use serde::Deserialize;

use crate::customers::CustomersConfig;
use crate::webhooks::StripeWebhookConfig;

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
    /// Longest a request may take before it is answered 503 (an SSE stream's body is not
    /// bounded by it, only its start), ms.
    pub request_timeout_ms: u64,
    /// Longest a client may take to send a request's headers before the connection is
    /// closed (slowloris), ms.
    pub header_read_timeout_ms: u64,
    /// Most SSE streams one key may hold open at once (429 past it).
    pub max_streams_per_key: usize,
    /// Failed authentications (unknown or malformed keys) per second per client address
    /// before they are answered 429 instead of 401.
    pub auth_failures_per_second: u32,
    /// Longest strings and arrays inside an event, per field (`[api.field_limits]`).
    pub field_limits: storeflow_avro::FieldLimits,
    /// Signed-in shoppers' tokens from the marketplace's identity provider
    /// (`[api.customers]`: issuer, audience, and an HS256 secret or a JWKS file). Off
    /// without it: API keys only.
    pub customers: Option<CustomersConfig>,
    /// Stripe's webhook deliveries (`[api.stripe_webhook]`: the endpoint's signing secrets).
    /// `POST /v1/webhooks/stripe` answers 503 without it.
    pub stripe_webhook: Option<StripeWebhookConfig>,
    /// How far from the server's clock `occurred_at` may be (the top-level `[time]`, which
    /// the runtime applies too).
    #[serde(skip)]
    pub time: storeflow_avro::TimeBounds,
    /// The vendors' plans `POST /v1/vendors/{id}/plan` accepts: the binary fills them from
    /// `[processors.sales] commission_bps` (the plans that have a commission rate).
    #[serde(skip)]
    pub plans: Vec<String>,
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
            request_timeout_ms: 10_000,
            header_read_timeout_ms: 5_000,
            max_streams_per_key: 4,
            auth_failures_per_second: 5,
            field_limits: storeflow_avro::FieldLimits::default(),
            customers: None,
            stripe_webhook: None,
            time: storeflow_avro::TimeBounds::default(),
            plans: ["basic", "pro", "enterprise"].iter().map(|p| p.to_string()).collect(),
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
        if self.request_timeout_ms == 0 || self.header_read_timeout_ms == 0 || self.max_streams_per_key == 0 || self.auth_failures_per_second == 0 {
            return Err("api.request_timeout_ms, api.header_read_timeout_ms, api.max_streams_per_key and api.auth_failures_per_second must be at least 1".into());
        }
        if let Some(c) = &self.customers {
            c.validate()?;
        }
        if let Some(w) = &self.stripe_webhook {
            w.validate()?;
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

