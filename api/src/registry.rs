//! The embedded schema registry served over the Confluent Schema Registry REST API.
//!
//! Endpoints (content type `application/vnd.schemaregistry.v1+json`):
//!
//! | method and path | answer |
//! |---|---|
//! | `POST /subjects/{subject}/versions` `{"schema": "..."}` | `{"id": N}`; 409 when incompatible with any earlier version (BACKWARD_TRANSITIVE) |
//! | `GET /schemas/ids/{id}` | `{"schema": "..."}`; 404 (`40403`) when unknown |
//! | `GET /subjects` | subjects |
//! | `GET /subjects/{subject}/versions` | version numbers |
//! | `GET /subjects/{subject}/versions/{version or latest}` | `{"subject", "version", "id", "schema"}` |
//! | `POST /compatibility/subjects/{subject}/versions/latest` | `{"is_compatible": bool}` |
//! | `GET /config` | `{"compatibilityLevel": "BACKWARD_TRANSITIVE"}` |
//!
//! Errors use Confluent's shape, `{"error_code": 40403, "message": "..."}`.

use std::sync::Arc;

use apache_avro::schema_compatibility::SchemaCompatibility;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use storeflow_avro::{EmbeddedRegistry, SchemaRegistry};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// The router; mount it at the root of a listener (Confluent clients expect that).
pub fn router(registry: Arc<EmbeddedRegistry>) -> Router {
    Router::new()
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}/versions", get(versions).post(register))
        .route("/subjects/{subject}/versions/{version}", get(version))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/compatibility/subjects/{subject}/versions/latest", post(compatible))
        .route("/config", get(config))
        .with_state(registry)
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, CONTENT_TYPE)], body.to_string()).into_response()
}

fn error(status: StatusCode, code: u32, message: impl Into<String>) -> Response {
    reply(status, json!({"error_code": code, "message": message.into()}))
}

#[derive(Deserialize)]
struct SchemaBody {
    schema: String,
    #[serde(default, rename = "schemaType")]
    schema_type: Option<String>,
}

async fn subjects(State(r): State<Arc<EmbeddedRegistry>>) -> Response {
    let names: Vec<String> = r.subjects().into_iter().map(|(s, _)| s).collect();
    reply(StatusCode::OK, json!(names))
}

async fn versions(State(r): State<Arc<EmbeddedRegistry>>, Path(subject): Path<String>) -> Response {
    match r.versions(&subject) {
        Some(ids) => reply(StatusCode::OK, json!((1..=ids.len()).collect::<Vec<_>>())),
        None => error(StatusCode::NOT_FOUND, 40401, format!("Subject '{subject}' not found.")),
    }
}

async fn version(State(r): State<Arc<EmbeddedRegistry>>, Path((subject, version)): Path<(String, String)>) -> Response {
    let Some(ids) = r.versions(&subject) else {
        return error(StatusCode::NOT_FOUND, 40401, format!("Subject '{subject}' not found."));
    };
    let n = match version.as_str() {
        "latest" | "-1" => ids.len(),
        v => match v.parse::<usize>() {
            Ok(n) if (1..=ids.len()).contains(&n) => n,
            Ok(_) => return error(StatusCode::NOT_FOUND, 40402, format!("Version {v} not found.")),
            Err(_) => return error(StatusCode::UNPROCESSABLE_ENTITY, 42202, format!("`{v}` is not a version number or 'latest'")),
        },
    };
    let id = ids[n - 1];
    match r.schema_by_id(id) {
        Ok(schema) => reply(StatusCode::OK, json!({"subject": subject, "version": n, "id": id, "schema": schema})),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, 50001, e.to_string()),
    }
}

async fn schema_by_id(State(r): State<Arc<EmbeddedRegistry>>, Path(id): Path<u32>) -> Response {
    match r.schema_by_id(id) {
        Ok(schema) => reply(StatusCode::OK, json!({"schema": schema})),
        Err(_) => error(StatusCode::NOT_FOUND, 40403, "Schema not found"),
    }
}

/// The first earlier version of `subject` that `schema` cannot read, with the reason.
fn incompatibility(r: &EmbeddedRegistry, subject: &str, schema: &apache_avro::Schema) -> Option<String> {
    for (i, id) in r.versions(subject).unwrap_or_default().into_iter().enumerate() {
        let Ok(old) = r.schema_by_id(id).and_then(|s| {
            apache_avro::Schema::parse_str(&s).map_err(|e| storeflow_avro::AvroError::Registry(e.to_string()))
        }) else {
            continue;
        };
        if let Err(e) = SchemaCompatibility::can_read(&old, schema) {
            return Some(format!("cannot read version {} (id {id}): {e}", i + 1));
        }
    }
    None
}

async fn register(State(r): State<Arc<EmbeddedRegistry>>, Path(subject): Path<String>, Json(body): Json<SchemaBody>) -> Response {
    if body.schema_type.as_deref().is_some_and(|t| !t.eq_ignore_ascii_case("AVRO")) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, 42201, "only AVRO schemas are supported");
    }
    let parsed = match apache_avro::Schema::parse_str(&body.schema) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, 42201, format!("Invalid schema: {e}")),
    };
    let known = r.register_probe(&subject, &parsed);
    if known.is_none()
        && let Some(why) = incompatibility(&r, &subject, &parsed)
    {
        return error(
            StatusCode::CONFLICT,
            409,
            format!("Schema being registered is incompatible with an earlier schema for subject \"{subject}\" (BACKWARD_TRANSITIVE): {why}"),
        );
    }
    match r.register(&subject, &body.schema) {
        Ok(id) => reply(StatusCode::OK, json!({"id": id})),
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, 42201, e.to_string()),
    }
}

async fn compatible(State(r): State<Arc<EmbeddedRegistry>>, Path(subject): Path<String>, Json(body): Json<SchemaBody>) -> Response {
    match apache_avro::Schema::parse_str(&body.schema) {
        Ok(p) => {
            let why = incompatibility(&r, &subject, &p);
            let mut v = json!({"is_compatible": why.is_none()});
            if let Some(w) = why {
                v["messages"] = json!([w]);
            }
            reply(StatusCode::OK, v)
        }
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, 42201, format!("Invalid schema: {e}")),
    }
}

async fn config() -> Response {
    reply(StatusCode::OK, json!({"compatibilityLevel": "BACKWARD_TRANSITIVE"}))
}
