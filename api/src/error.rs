//! The API's one error type and how it maps to status codes and the JSON error body
//! `{"error": {"code", "message", "field"?}}`. Internal details go to the log, never into
//! a 500 body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Everything a handler can answer with instead of success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or does not fit the schema; `field` names the culprit.
    #[error("{message}")]
    Invalid { code: &'static str, message: String, field: Option<String> },
    /// No or an unknown API key.
    #[error("{0}")]
    Unauthorized(String),
    /// The key's role may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The key's role may not do what one part of the request asks (`events[2].type`: the
    /// type of the third event of a batch); nothing of the request was done.
    #[error("{message}")]
    ForbiddenAt { message: String, field: String },
    /// The thing asked for does not exist (yet).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the known state (cancel a shipped order, reuse an
    /// idempotency key with another body).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The body is larger than the configured limit.
    #[error("{0}")]
    TooLarge(String),
    /// The key sent too many requests; try again after `retry_after_secs`.
    #[error("rate limit exceeded; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// A backend this request needs is not configured or not reachable.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected backend failure; the detail is logged, not returned.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result with [`ApiError`].
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// A 400 naming `field`.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid { code: "invalid_field", message: message.into(), field: Some(field.into()) }
    }

    /// A 400 about the request as a whole.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Invalid { code, message: message.into(), field: None }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::ForbiddenAt { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::Invalid { code, .. } | ApiError::Conflict { code, .. } => code,
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) | ApiError::ForbiddenAt { .. } => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::TooLarge(_) => "body_too_large",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<storeflow_avro::ValidationError> for ApiError {
    fn from(e: storeflow_avro::ValidationError) -> Self {
        let code = if e.message.starts_with("malformed JSON") {
            "malformed_json"
        } else if e.field.as_deref() == Some("type") && e.message.starts_with("unknown event type") {
            "unknown_event_type"
        } else {
            "invalid_field"
        };
        ApiError::Invalid { code, message: e.message, field: e.field }
    }
}

/// The error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code: `malformed_json`, `unknown_event_type`,
    /// `invalid_field`, `unauthorized`, `forbidden`, `not_found`, `conflict`,
    /// `body_too_large`, `rate_limited`, `unavailable`, `internal`, …
    pub code: String,
    /// Readable explanation.
    pub message: String,
    /// The field at fault, as a path (`items[0].quantity`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error answering a request");
                "internal error; see the server log".to_string()
            }
            other => other.to_string(),
        };
        let field = match &self {
            ApiError::Invalid { field, .. } => field.clone(),
            ApiError::ForbiddenAt { field, .. } => Some(field.clone()),
            _ => None,
        };
        let body = ErrorBody { error: ErrorDetail { code: self.code().to_string(), message, field } };
        let mut resp = (status, axum::Json(body)).into_response();
        if let ApiError::RateLimited { retry_after_secs } = self {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs.max(1)));
        }
        resp
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(r: axum::extract::rejection::BytesRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge("the request body is larger than the limit of this API".into())
        } else {
            ApiError::bad_request("unreadable_body", r.body_text())
        }
    }
}
