//! The embedded schema registry served over the Confluent Schema Registry REST API, so stock
//! Confluent clients (Java's `KafkaAvroSerializer`, confluent-kafka-python's
//! `AvroSerializer`, …) resolve the schema ids inside storeflow's records. `storeflow run`
//! serves it on `registry_listen` (docs/PRODUCING.md).
//!
//! Endpoints (content type `application/vnd.schemaregistry.v1+json`):
//!
//! | method and path | answer |
//! |---|---|
//! | `POST /subjects/{subject}/versions` `{"schema": "..."}` | `{"id": N}`; 409 when incompatible with any earlier version (BACKWARD_TRANSITIVE); 422 (`42205`) for a schema the contract does not hold, when [`RegistryOptions::contract_only`] |
//! | `POST /subjects/{subject}` `{"schema": "..."}` | lookup: `{"subject", "version", "id", "schema"}`; 404 `40401` (subject) or `40403` (schema) |
//! | `GET /schemas/ids/{id}[?subject=S]` | `{"schema": "..."}`; 404 (`40403`) when unknown (`S` picks nothing: one context) |
//! | `GET /subjects` | subjects |
//! | `GET /subjects/{subject}/versions` | version numbers |
//! | `GET /subjects/{subject}/versions/{version or latest}` | `{"subject", "version", "id", "schema"}` |
//! | `POST /compatibility/subjects/{subject}/versions/latest` | `{"is_compatible": bool}` |
//! | `GET /config`, `GET /config/{subject}` | `{"compatibilityLevel": "BACKWARD_TRANSITIVE"}` |
//! | `PUT /config`, `PUT /config/{subject}` `{"compatibility": L}` | `{"compatibility": L}` for the one level enforced, BACKWARD_TRANSITIVE; 422 (`42203`) for any other |
//! | `GET /mode`, `GET /mode/{subject}` | `{"mode": "READWRITE"}` |
//!
//! Errors use Confluent's shape, `{"error_code": 40403, "message": "..."}`. With
//! [`RegistryOptions::basic_auth`] every request needs HTTP basic auth; without it (or with
//! other credentials) the answer is 401 `{"error_code": 401, "message": "Unauthorized"}`.

use std::sync::Arc;

use apache_avro::schema_compatibility::SchemaCompatibility;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use storeflow_avro::{EmbeddedRegistry, SchemaRegistry};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// The one compatibility level the registry enforces (`incompatibility` checks every
/// earlier version); `PUT /config` refuses every other rather than pretend to honour it.
const LEVEL: &str = "BACKWARD_TRANSITIVE";

/// How the registry is served.
#[derive(Clone, Default)]
pub struct RegistryOptions {
    /// `user:password` every request must carry as HTTP basic auth; `None`: no auth.
    pub basic_auth: Option<SecretString>,
    /// Refuse to register a schema that is not already registered under the subject: the
    /// registry of a running storeflow lives in memory and is rebuilt from the compiled-in
    /// contract at every start, so an id it handed out for anything else would not resolve
    /// after a restart (a new version ships as a new storeflow, docs/SCHEMA-EVOLUTION.md).
    pub contract_only: bool,
}

#[derive(Clone)]
struct Served {
    registry: Arc<EmbeddedRegistry>,
    contract_only: bool,
}

/// The router over `registry`, open to anyone and accepting compatible new versions; mount
/// it at the root of a listener (Confluent clients expect that).
pub fn router(registry: Arc<EmbeddedRegistry>) -> Router {
    router_with(registry, RegistryOptions::default())
}

/// The router over `registry` with `options`.
pub fn router_with(registry: Arc<EmbeddedRegistry>, options: RegistryOptions) -> Router {
    let served = Served {
        registry,
        contract_only: options.contract_only,
    };
    let router = Router::new()
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}", post(lookup))
        .route("/subjects/{subject}/versions", get(versions).post(register))
        .route("/subjects/{subject}/versions/{version}", get(version))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/compatibility/subjects/{subject}/versions/latest", post(compatible))
        .route("/config", get(config).put(set_config))
        .route("/config/{subject}", get(config).put(set_config))
        .route("/mode", get(mode))
        .route("/mode/{subject}", get(mode))
        .with_state(served);
    match options.basic_auth {
        Some(credentials) => router.layer(middleware::from_fn_with_state(Arc::new(credentials), basic_auth)),
        None => router,
    }
}

/// Serves the registry on `listener` until the task ends or is dropped.
pub async fn serve(listener: tokio::net::TcpListener, registry: Arc<EmbeddedRegistry>, options: RegistryOptions) -> std::io::Result<()> {
    axum::serve(listener, router_with(registry, options)).await
}

/// Lets a request through only with `Authorization: Basic base64(user:password)` matching
/// `credentials` (compared in constant time).
async fn basic_auth(State(credentials): State<Arc<SecretString>>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok());
    let ok = given.is_some_and(|g| aws_lc_rs::constant_time::verify_slices_are_equal(&g, credentials.expose_secret().as_bytes()).is_ok());
    if ok {
        return next.run(request).await;
    }
    let mut r = error(StatusCode::UNAUTHORIZED, 401, "Unauthorized");
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Basic realm=\"storeflow schema registry\""));
    r
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, CONTENT_TYPE)], body.to_string()).into_response()
}

fn error(status: StatusCode, code: u32, message: impl Into<String>) -> Response {
    reply(status, json!({"error_code": code, "message": message.into()}))
}

fn subject_not_found(subject: &str) -> Response {
    error(StatusCode::NOT_FOUND, 40401, format!("Subject '{subject}' not found."))
}

#[derive(Deserialize)]
struct SchemaBody {
    schema: String,
    #[serde(default, rename = "schemaType")]
    schema_type: Option<String>,
}

impl SchemaBody {
    /// The schema, parsed; an error answer for a non-Avro or invalid one.
    fn parse(&self) -> Result<apache_avro::Schema, Box<Response>> {
        if self.schema_type.as_deref().is_some_and(|t| !t.eq_ignore_ascii_case("AVRO")) {
            return Err(Box::new(error(StatusCode::UNPROCESSABLE_ENTITY, 42201, "only AVRO schemas are supported")));
        }
        apache_avro::Schema::parse_str(&self.schema)
            .map_err(|e| Box::new(error(StatusCode::UNPROCESSABLE_ENTITY, 42201, format!("Invalid schema: {e}"))))
    }
}

async fn subjects(State(s): State<Served>) -> Response {
    let names: Vec<String> = s.registry.subjects().into_iter().map(|(s, _)| s).collect();
    reply(StatusCode::OK, json!(names))
}

async fn versions(State(s): State<Served>, Path(subject): Path<String>) -> Response {
    match s.registry.versions(&subject) {
        Some(ids) => reply(StatusCode::OK, json!((1..=ids.len()).collect::<Vec<_>>())),
        None => subject_not_found(&subject),
    }
}

/// `{"subject", "version", "id", "schema"}` of version `n` (from 1) of `subject`.
fn registered(r: &EmbeddedRegistry, subject: &str, n: usize, id: u32) -> Response {
    match r.schema_by_id(id) {
        Ok(schema) => reply(StatusCode::OK, json!({"subject": subject, "version": n, "id": id, "schema": schema})),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, 50001, e.to_string()),
    }
}

async fn version(State(s): State<Served>, Path((subject, version)): Path<(String, String)>) -> Response {
    let Some(ids) = s.registry.versions(&subject) else {
        return subject_not_found(&subject);
    };
    let n = match version.as_str() {
        "latest" | "-1" => ids.len(),
        v => match v.parse::<usize>() {
            Ok(n) if (1..=ids.len()).contains(&n) => n,
            Ok(_) => return error(StatusCode::NOT_FOUND, 40402, format!("Version {v} not found.")),
            Err(_) => return error(StatusCode::UNPROCESSABLE_ENTITY, 42202, format!("`{v}` is not a version number or 'latest'")),
        },
    };
    registered(&s.registry, &subject, n, ids[n - 1])
}

/// Is this schema registered under the subject? What a serializer with
/// `auto.register.schemas=false` asks to learn the id to write.
async fn lookup(State(s): State<Served>, Path(subject): Path<String>, Json(body): Json<SchemaBody>) -> Response {
    let Some(ids) = s.registry.versions(&subject) else {
        return subject_not_found(&subject);
    };
    let parsed = match body.parse() {
        Ok(p) => p,
        Err(r) => return *r,
    };
    match s.registry.register_probe(&subject, &parsed) {
        Some(id) => {
            let n = ids.iter().position(|i| *i == id).map_or(ids.len(), |p| p + 1);
            registered(&s.registry, &subject, n, id)
        }
        None => error(StatusCode::NOT_FOUND, 40403, "Schema not found"),
    }
}

/// `?subject=` is accepted and does not filter: Confluent's registry uses it only to pick a
/// schema context (this registry has one), and stock deserializers send the subject of
/// *their* naming strategy (confluent-kafka-python sends `<topic>-value` even for records
/// registered under `<topic>-<record name>`), so refusing on it would break them.
async fn schema_by_id(State(s): State<Served>, Path(id): Path<u32>) -> Response {
    match s.registry.schema_by_id(id) {
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

async fn register(State(s): State<Served>, Path(subject): Path<String>, Json(body): Json<SchemaBody>) -> Response {
    let parsed = match body.parse() {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let known = s.registry.register_probe(&subject, &parsed);
    if known.is_none() && s.contract_only {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            42205,
            format!("Operation not permitted: storeflow's registry holds only the event contract it was built with, and this schema is not registered under \"{subject}\" (docs/PRODUCING.md)"),
        );
    }
    if known.is_none()
        && let Some(why) = incompatibility(&s.registry, &subject, &parsed)
    {
        return error(
            StatusCode::CONFLICT,
            409,
            format!("Schema being registered is incompatible with an earlier schema for subject \"{subject}\" ({LEVEL}): {why}"),
        );
    }
    match s.registry.register(&subject, &body.schema) {
        Ok(id) => reply(StatusCode::OK, json!({"id": id})),
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, 42201, e.to_string()),
    }
}

async fn compatible(State(s): State<Served>, Path(subject): Path<String>, Json(body): Json<SchemaBody>) -> Response {
    match body.parse() {
        Ok(p) => {
            let why = incompatibility(&s.registry, &subject, &p);
            let mut v = json!({"is_compatible": why.is_none()});
            if let Some(w) = why {
                v["messages"] = json!([w]);
            }
            reply(StatusCode::OK, v)
        }
        Err(r) => *r,
    }
}

/// The level in force, globally and for every subject: the one enforced.
async fn config() -> Response {
    reply(StatusCode::OK, json!({"compatibilityLevel": LEVEL}))
}

#[derive(Deserialize)]
struct ConfigBody {
    compatibility: String,
}

/// Accepts only the level that is enforced; any other would be a promise not kept.
async fn set_config(Json(body): Json<ConfigBody>) -> Response {
    if body.compatibility.eq_ignore_ascii_case(LEVEL) {
        return reply(StatusCode::OK, json!({"compatibility": LEVEL}));
    }
    error(
        StatusCode::UNPROCESSABLE_ENTITY,
        42203,
        format!("Invalid compatibility level {:?}: this registry enforces {LEVEL} only", body.compatibility),
    )
}

async fn mode() -> Response {
    reply(StatusCode::OK, json!({"mode": "READWRITE"}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http_body_util::BodyExt;
    use storeflow_avro::EventType;
    use tower::ServiceExt;

    fn app(options: RegistryOptions) -> Router {
        router_with(Arc::new(EmbeddedRegistry::new().expect("the contract loads")), options)
    }

    async fn call(app: &Router, method: &str, uri: &str, body: Option<serde_json::Value>, auth: Option<&str>) -> (StatusCode, serde_json::Value) {
        let mut req = axum::http::Request::builder().method(method).uri(uri).header(header::CONTENT_TYPE, CONTENT_TYPE);
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(a)));
        }
        let req = req.body(body.map_or(Body::empty(), |b| Body::from(b.to_string()))).expect("a request");
        let res = app.clone().oneshot(req).await.expect("an answer");
        let status = res.status();
        let bytes = res.into_body().collect().await.expect("a body").to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    fn order_placed() -> &'static EventType {
        EventType::by_name("OrderPlaced").expect("OrderPlaced is in the contract")
    }

    /// OrderPlaced with one more optional field: compatible, but not in the contract.
    fn evolved() -> String {
        let mut v: serde_json::Value = serde_json::from_str(order_placed().schema).expect("json");
        v["fields"].as_array_mut().expect("fields").push(json!({"name": "coupon", "type": ["null", "string"], "default": null}));
        v.to_string()
    }

    #[tokio::test]
    async fn a_lookup_of_a_contract_schema_answers_its_subject_version_and_the_codecs_id() {
        let app = app(RegistryOptions::default());
        let t = order_placed();
        let (status, body) = call(&app, "POST", &format!("/subjects/{}?normalize=false", t.subject()), Some(json!({"schema": t.schema})), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let id = storeflow_avro::Codec::embedded().expect("codec").schema_id(t);
        assert_eq!(body["id"], json!(id));
        assert_eq!(body["subject"], json!(t.subject()));
        let versions = EmbeddedRegistry::new().expect("registry").versions(&t.subject()).expect("subject");
        assert_eq!(body["version"], json!(versions.len()), "the current schema is the latest version");
        assert_eq!(body["schema"], json!(t.schema));
    }

    #[tokio::test]
    async fn a_lookup_tells_an_unknown_subject_from_an_unknown_schema() {
        let app = app(RegistryOptions::default());
        let (status, body) = call(&app, "POST", "/subjects/storefront.orders-storeflow.v1.Nope", Some(json!({"schema": order_placed().schema})), None).await;
        assert_eq!((status, body["error_code"].clone()), (StatusCode::NOT_FOUND, json!(40401)), "{body}");
        let (status, body) = call(&app, "POST", &format!("/subjects/{}", order_placed().subject()), Some(json!({"schema": evolved()})), None).await;
        assert_eq!((status, body["error_code"].clone()), (StatusCode::NOT_FOUND, json!(40403)), "{body}");
        // A schema of another subject is not found under this one either.
        let other = EventType::by_name("StockReceived").expect("StockReceived");
        let (status, _) = call(&app, "POST", &format!("/subjects/{}", order_placed().subject()), Some(json!({"schema": other.schema})), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn a_schema_by_id_resolves_whatever_subject_a_deserializer_names_and_an_unknown_id_is_40403() {
        let app = app(RegistryOptions::default());
        let t = EventType::by_name("StockLevelChanged").expect("StockLevelChanged");
        let id = storeflow_avro::Codec::embedded().expect("codec").schema_id(t);
        // confluent-kafka-python's AvroDeserializer asks with its default strategy's subject.
        for uri in [format!("/schemas/ids/{id}"), format!("/schemas/ids/{id}?subject=inventory.levels-value")] {
            let (status, body) = call(&app, "GET", &uri, None, None).await;
            assert_eq!(status, StatusCode::OK, "{uri}: {body}");
            assert_eq!(body["schema"], json!(t.schema), "{uri}");
        }
        let (status, body) = call(&app, "GET", "/schemas/ids/0?subject=inventory.levels-value", None, None).await;
        assert_eq!((status, body["error_code"].clone()), (StatusCode::NOT_FOUND, json!(40403)), "{body}");
    }

    #[tokio::test]
    async fn the_config_is_backward_transitive_and_only_that_level_can_be_set() {
        let app = app(RegistryOptions::default());
        let subject = order_placed().subject();
        let (status, body) = call(&app, "GET", &format!("/config/{subject}"), None, None).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"compatibilityLevel": "BACKWARD_TRANSITIVE"})));
        let (status, body) = call(&app, "PUT", &format!("/config/{subject}"), Some(json!({"compatibility": "BACKWARD_TRANSITIVE"})), None).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"compatibility": "BACKWARD_TRANSITIVE"})));
        for level in ["NONE", "BACKWARD", "FORWARD", "FULL_TRANSITIVE"] {
            let (status, body) = call(&app, "PUT", &format!("/config/{subject}"), Some(json!({"compatibility": level})), None).await;
            assert_eq!((status, body["error_code"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!(42203)), "{level}: {body}");
        }
        let (status, _) = call(&app, "PUT", "/config", Some(json!({"compatibility": "NONE"})), None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "the global level cannot be loosened either");
    }

    #[tokio::test]
    async fn the_mode_is_readwrite() {
        let (status, body) = call(&app(RegistryOptions::default()), "GET", "/mode", None, None).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"mode": "READWRITE"})));
    }

    #[tokio::test]
    async fn a_contract_only_registry_re_registers_a_contract_schema_but_refuses_a_new_one() {
        let app = app(RegistryOptions { contract_only: true, ..Default::default() });
        let t = order_placed();
        let id = storeflow_avro::Codec::embedded().expect("codec").schema_id(t);
        let uri = format!("/subjects/{}/versions", t.subject());
        let (status, body) = call(&app, "POST", &uri, Some(json!({"schema": t.schema})), None).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"id": id})));
        let (status, body) = call(&app, "POST", &uri, Some(json!({"schema": evolved()})), None).await;
        assert_eq!((status, body["error_code"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!(42205)), "{body}");
        let (_, versions) = call(&app, "GET", &uri, None, None).await;
        let (_, open) = call(&self::app(RegistryOptions::default()), "GET", &uri, None, None).await;
        assert_eq!(versions, open, "the refused schema was registered anyway");
    }

    #[tokio::test]
    async fn with_basic_auth_a_request_without_or_with_wrong_credentials_is_unauthorized() {
        let app = app(RegistryOptions { basic_auth: Some("sr:s3cret".into()), ..Default::default() });
        for auth in [None, Some("sr:wrong"), Some("sr:s3cret-longer"), Some("other:s3cret")] {
            let (status, body) = call(&app, "GET", "/subjects", None, auth).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
            assert_eq!(body, json!({"error_code": 401, "message": "Unauthorized"}));
        }
        let (status, body) = call(&app, "GET", "/subjects", None, Some("sr:s3cret")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.as_array().is_some_and(|s| s.contains(&json!(order_placed().subject()))), "{body}");
    }
}
