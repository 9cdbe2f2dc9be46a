//! The handlers, one per endpoint, each with its OpenAPI description (utoipa): the spec at
//! `/openapi.json` is generated from these annotations and the router is built from the
//! same list, so a route cannot exist without being documented.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use storeflow_avro::{Address, Event, OrderCancelRequested, OrderItem, OrderPlaced, OrderStatus, ReturnRequested, SkuQuantity, Timestamp};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Caller, KeyInfo, RevokeError, Role};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::live::{Granularity, RecoList, SalesBucket, ScoredProduct};
use crate::read::*;
use crate::ids::{body_digest, derived_uuid};
use crate::writes::Writer;
use crate::state::ApiState;

// ------------------------------------------------------------------------------ helpers

/// The body as JSON, with 413 past the limit and 400 for malformed JSON.
pub(crate) fn json_body(body: Result<Bytes, BytesRejection>) -> ApiResult<(Bytes, Value)> {
    let bytes = body?;
    let v = serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request("malformed_json", format!("malformed JSON: {e}")))?;
    Ok((bytes, v))
}

/// A typed body: 400 naming the field that does not fit.
pub(crate) fn typed<T: serde::de::DeserializeOwned>(v: Value) -> ApiResult<T> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.inner().to_string();
        if let Some(missing) = msg.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
            let field = if path == "." { missing.to_string() } else { format!("{path}.{missing}") };
            return ApiError::field(field, "required field is missing");
        }
        if let Some(unknown) = msg.strip_prefix("unknown field `").and_then(|m| m.split('`').next()) {
            // serde_path_to_error's path already ends with the unknown field.
            let field = if path == "." { unknown.to_string() } else { path };
            return ApiError::field(field, msg.clone());
        }
        if path == "." { ApiError::bad_request("invalid_body", msg) } else { ApiError::field(path, msg) }
    })
}

/// Query strings: 400 naming the parameter.
pub(crate) fn query<T>(q: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    match q {
        Ok(Query(t)) => Ok(t),
        Err(r) => {
            let text = r.body_text();
            let detail = text.strip_prefix("Failed to deserialize query string: ").unwrap_or(&text).to_string();
            let field = detail.split_once(':').map(|(f, _)| f.trim().to_string()).filter(|f| !f.contains(' '));
            Err(ApiError::Invalid { code: "invalid_query", message: detail, field })
        }
    }
}

/// A time in the query: milliseconds since the epoch or RFC 3339.
fn time_param(name: &str, v: Option<&str>) -> ApiResult<Option<i64>> {
    match v {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .ok()
            .or_else(|| Timestamp::parse_rfc3339(s).map(|t| t.millis()))
            .map(Some)
            .ok_or_else(|| ApiError::field(name, format!("`{s}` is neither milliseconds since the epoch nor an RFC 3339 time"))),
    }
}

/// Passes a read that is public (`public` set: anonymous callers and customers, who get
/// no more than anonymous callers here) or that the caller's role may make.
fn public_or(caller: &Caller, public: bool, what: &str) -> ApiResult<()> {
    if public && matches!(caller, Caller::Anonymous | Caller::Customer { .. }) {
        return Ok(());
    }
    if let Caller::Customer { id } = caller {
        return Err(ApiError::Forbidden(format!("customer {id} may not {what}: it is not public on this API")));
    }
    match caller.role()? {
        Role::Admin | Role::App | Role::Service => Ok(()),
        Role::Vendor(_) if what == "search products" => Ok(()),
        _ if public => Ok(()),
        role => Err(ApiError::Forbidden(format!("the role {role} may not {what}"))),
    }
}

// ------------------------------------------------------------------------------- events

/// `202` answer of `POST /v1/events`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventsAccepted {
    /// Events accepted (published now or already accepted before by `event_id`).
    pub accepted: usize,
    /// Of those, how many were duplicates of an earlier `event_id` and not published again.
    pub duplicates: usize,
}

/// Publish storefront events.
///
/// One event (`{"type": "<RecordName>", ...fields}`) or `{"events": [...]}` with up to
/// `max_batch` events (500 by default). Every event is validated against its Avro schema
/// before anything is published: one bad event refuses the whole batch, and the error names
/// the field (`events[2].items[0].quantity`). Only storefront input types are accepted, not
/// the ones storeflow's processors derive, and only those the key's role may publish
/// (`crate::roles`; a customer token: shoppers' events about that customer only): one
/// refused event is a 403 naming `events[i].type` and nothing of the batch is published.
/// An `event_id` already accepted is acknowledged and not published again; without
/// `event_id` (or `occurred_at`) the API assigns one (or now), and cannot deduplicate a
/// retry.
#[utoipa::path(post, path = "/v1/events", tag = "events",
    request_body(content = Object, description = "one event, or {\"events\": [...]}", content_type = "application/json"),
    responses(
        (status = 202, description = "published", body = EventsAccepted),
        (status = 400, description = "malformed JSON, unknown event type or a field that does not fit", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "the role (or customer) may not publish an event of the request (`field`: `events[i].type`, or `type`)", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []), ("customer" = [])))]
pub async fn post_events(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<EventsAccepted>)> {
    if caller.customer_id().is_none() {
        caller.role()?;
    }
    let (_, v) = json_body(body)?;
    let (values, batch) = match v {
        Value::Object(mut m) if m.contains_key("events") && !m.contains_key("type") => match m.remove("events") {
            Some(Value::Array(a)) => (a, true),
            _ => return Err(ApiError::field("events", "expected an array of events")),
        },
        other => (vec![other], false),
    };
    if values.is_empty() {
        return Err(ApiError::field("events", "the batch is empty"));
    }
    let max = s.inner.config.max_batch;
    if values.len() > max {
        return Err(ApiError::field("events", format!("at most {max} events per request, got {}", values.len())));
    }
    let events = Writer::validate(values, batch, &s.inner.config)?;
    crate::roles::authorize(&caller, events.events(), batch, &s.inner.reads).await?;
    let n = events.events().len();
    let a = s.inner.writer.publish(events).await?;
    s.inner.metrics.events_published.inc_by(a.published as u64);
    s.inner.metrics.events_duplicate.inc_by(a.duplicates as u64);
    Ok((StatusCode::ACCEPTED, Json(EventsAccepted { accepted: n, duplicates: a.duplicates })))
}

// ------------------------------------------------------------------------------- orders

/// A line of a new order.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrderLine {
    pub sku: String,
    pub quantity: i32,
    /// The unit price the shopper was shown, in minor units. The order is always priced
    /// from the catalog; when this is given and the catalog's price is another, the order
    /// is refused with 409 `price_changed` (show the new price and ask again).
    #[serde(default)]
    pub unit_price_minor: Option<i64>,
}

/// A postal address.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAddress {
    pub name: String,
    pub line1: String,
    #[serde(default)]
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    #[serde(default)]
    pub region: Option<String>,
    /// ISO-3166-1 alpha-2.
    pub country: String,
}

impl From<NewAddress> for Address {
    fn from(a: NewAddress) -> Address {
        Address { name: a.name, line1: a.line1, line2: a.line2, city: a.city, postal_code: a.postal_code, region: a.region, country: a.country }
    }
}

/// `POST /v1/orders` body. Prices come from the catalog.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    pub customer_id: String,
    #[serde(default)]
    pub session_id: Option<String>,
    pub items: Vec<NewOrderLine>,
    /// ISO-4217; every sku must be priced in it.
    pub currency: String,
    pub shipping_address: NewAddress,
    /// Defaults to the shipping address.
    #[serde(default)]
    pub billing_address: Option<NewAddress>,
    /// A payment provider token (never card data).
    pub payment_method_token: String,
    #[serde(default)]
    pub shipping_minor: i64,
    #[serde(default)]
    pub tax_minor: i64,
    #[serde(default)]
    pub discount_minor: i64,
    /// The customer's IP when the caller is a backend proxying for them (fraud checks use
    /// it); defaults to the caller's address.
    #[serde(default)]
    pub client_ip: Option<String>,
}

/// `202` answer for order requests.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderAccepted {
    pub order_id: String,
    /// What was asked: placed, cancel_requested, return_requested. The saga decides what
    /// happens next: follow it at `GET /v1/orders/{id}`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_id: Option<String>,
}

/// Place an order.
///
/// Needs an `Idempotency-Key` header: the same key with the same body names the same order
/// (a retry is answered again, not placed twice); with another body it is a 409.
/// The order id is bound to the API key: an app key reads, cancels and returns only the
/// orders it placed. A customer token places orders for its own `customer_id` only (403
/// for another customer's).
#[utoipa::path(post, path = "/v1/orders", tag = "orders", request_body = NewOrder,
    params(("Idempotency-Key" = String, Header, description = "a unique key per order attempt")),
    responses(
        (status = 202, body = OrderAccepted),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "Idempotency-Key reused with another body (`idempotency_key_reused`), or a line's `unit_price_minor` is no longer the catalog's (`price_changed`)", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = []), ("customer" = [])))]
pub async fn post_order(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    peer: Option<Extension<ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<OrderAccepted>)> {
    if caller.customer_id().is_none() {
        caller.require("place orders", &[&Role::App])?;
    }
    let idem = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| ApiError::field("Idempotency-Key", "the header is required (1–255 characters): one unique key per order attempt"))?
        .to_string();
    let (bytes, v) = json_body(body)?;
    let req: NewOrder = typed(v)?;
    // The key id, or `customer:<sub>`: what the idempotency slot and the order id bind to.
    let key_id = crate::roles::may_place_order(&caller, &req.customer_id, req.client_ip.is_some())?;
    let digest = body_digest(&bytes);
    let (order_id, replay) = s.inner.writer.order_for(&key_id, &idem, digest)?;
    if replay {
        return Ok((StatusCode::ACCEPTED, Json(OrderAccepted { order_id, status: "placed".into(), return_id: None })));
    }
    let mut items = Vec::with_capacity(req.items.len());
    for (i, line) in req.items.iter().enumerate() {
        let p = s
            .inner
            .reads
            .read_model()?
            .product_by_sku(&line.sku)
            .await
            .map_err(sink_error("pricing an order line"))?
            .ok_or_else(|| ApiError::field(format!("items[{i}].sku"), format!("no product is sold under sku `{}`", line.sku)))?;
        let (Some(price), Some(cur)) = (p.price_minor, p.currency.as_deref()) else {
            return Err(ApiError::field(format!("items[{i}].sku"), format!("sku `{}` has no price", line.sku)));
        };
        if cur != req.currency {
            return Err(ApiError::field(
                format!("items[{i}].sku"),
                format!("sku `{}` is priced in {cur}, the order is in {}", line.sku, req.currency),
            ));
        }
        if let Some(seen) = line.unit_price_minor
            && seen != price
        {
            return Err(ApiError::Conflict {
                code: "price_changed",
                message: format!("items[{i}].unit_price_minor: sku `{}` now costs {price} {cur} minor units, not {seen}; show the new price and order again", line.sku),
            });
        }
        items.push(OrderItem { sku: line.sku.clone(), product_id: p.product_id, vendor_id: p.vendor_id, quantity: line.quantity, unit_price_minor: price });
    }
    // Totals must fit in i64 minor units: downstream code multiplies and adds them.
    let total = items
        .iter()
        .try_fold(0i64, |a, i| i64::from(i.quantity).checked_mul(i.unit_price_minor).and_then(|l| a.checked_add(l)))
        .and_then(|t| t.checked_add(req.shipping_minor)?.checked_add(req.tax_minor));
    if total.is_none() {
        return Err(ApiError::field("items", "the order total does not fit in 64-bit minor units"));
    }
    let client_ip = req.client_ip.clone().unwrap_or_else(|| peer.map(|Extension(ConnectInfo(p))| p.ip().to_string()).unwrap_or_else(|| "0.0.0.0".into()));
    let shipping: Address = req.shipping_address.clone().into();
    let order = OrderPlaced {
        event_id: derived_uuid(&format!("{order_id}/placed")),
        occurred_at: Timestamp::now(),
        order_id: order_id.clone(),
        customer_id: req.customer_id,
        session_id: req.session_id,
        customer_since: None,
        items,
        currency: req.currency,
        billing_address: req.billing_address.map(Address::from).unwrap_or_else(|| shipping.clone()),
        shipping_address: shipping,
        shipping_minor: req.shipping_minor,
        tax_minor: req.tax_minor,
        discount_minor: req.discount_minor,
        payment_method_token: req.payment_method_token,
        client_ip,
    };
    // The contract's conventions (currency and country codes, positive quantities, …)
    // with the field named as the caller wrote it.
    let event = Writer::validate(vec![Event::OrderPlaced(order).to_json()], false, &s.inner.config)?;
    s.inner.writer.publish(event).await?;
    s.inner.writer.remember_order(&key_id, &idem, digest, &order_id);
    Ok((StatusCode::ACCEPTED, Json(OrderAccepted { order_id, status: "placed".into(), return_id: None })))
}

/// An order: states, items, totals, reservations and its event history.
///
/// App keys read only the orders placed with the same key, and see no client IP, payment
/// token, address or fraud reasons in the history; a customer token reads only the orders
/// whose `customer_id` is its own, with their addresses but without client IP, payment
/// token or fraud reasons (403, the same, for any other id, existing or not); services and
/// admins read every order whole.
#[utoipa::path(get, path = "/v1/orders/{id}", tag = "orders",
    params(("id" = String, Path, description = "order id")),
    responses((status = 200, body = OrderDetail), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("customer" = [])))]
pub async fn get_order(State(s): State<ApiState>, Extension(caller): Extension<Caller>, Path(id): Path<String>) -> ApiResult<Json<OrderDetail>> {
    let seen = crate::roles::may_touch_order(&caller, &id, "read", &s.inner.reads).await?;
    let o = match seen {
        Some(o) => o,
        None => known_order(&s, &id).await?,
    };
    Ok(Json(crate::roles::order_view(&caller, o, &s.inner.vault)?))
}

/// `POST /v1/orders/{id}/cancel` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    pub reason: String,
    /// customer (default), vendor or support.
    #[serde(default)]
    pub requested_by: Option<String>,
}

async fn known_order(s: &ApiState, id: &str) -> ApiResult<OrderDetail> {
    s.inner.reads.read_model()?.order_detail(id).await.map_err(sink_error("reading an order"))?.ok_or_else(|| ApiError::NotFound(format!("no order {id}")))
}

/// Ask to cancel an order.
///
/// 409 when the order's known state forbids it (shipped, delivered, already cancelled…).
/// App keys may cancel only the orders placed with the same key, customer tokens only their
/// own orders (and only as `requested_by: customer`).
#[utoipa::path(post, path = "/v1/orders/{id}/cancel", tag = "orders", request_body = CancelRequest,
    params(("id" = String, Path, description = "order id")),
    responses((status = 202, body = OrderAccepted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("customer" = [])))]
pub async fn cancel_order(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<OrderAccepted>)> {
    let seen = crate::roles::may_touch_order(&caller, &id, "cancel", &s.inner.reads).await?;
    let (_, v) = json_body(body)?;
    let req: CancelRequest = typed(v)?;
    crate::roles::customer_may_cancel_as(&caller, req.requested_by.as_deref())?;
    let order = match seen {
        Some(o) => o,
        None => known_order(&s, &id).await?,
    };
    if !storeflow_avro::states::may_move(&order.order.status, OrderStatus::Cancelled) {
        return Err(ApiError::Conflict {
            code: "conflict",
            message: format!("order {id} is {}; it can no longer be cancelled", order.order.status),
        });
    }
    let e = Event::OrderCancelRequested(OrderCancelRequested {
        event_id: uuid::Uuid::new_v4().to_string(),
        occurred_at: Timestamp::now(),
        order_id: id.clone(),
        requested_by: req.requested_by.unwrap_or_else(|| "customer".into()),
        reason: req.reason,
    });
    let e = Writer::validate(vec![e.to_json()], false, &s.inner.config)?;
    s.inner.writer.publish(e).await?;
    Ok((StatusCode::ACCEPTED, Json(OrderAccepted { order_id: id, status: "cancel_requested".into(), return_id: None })))
}

/// A line to return.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnLine {
    pub sku: String,
    pub quantity: i32,
}

/// `POST /v1/orders/{id}/returns` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnBody {
    pub items: Vec<ReturnLine>,
    pub reason: String,
}

/// Ask to return delivered units.
///
/// 409 unless the order is delivered; 400 for a sku not in the order or more units than
/// bought. App keys may return only the orders placed with the same key, customer tokens
/// only their own orders.
#[utoipa::path(post, path = "/v1/orders/{id}/returns", tag = "orders", request_body = ReturnBody,
    params(("id" = String, Path, description = "order id")),
    responses((status = 202, body = OrderAccepted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("customer" = [])))]
pub async fn return_order(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<OrderAccepted>)> {
    let seen = crate::roles::may_touch_order(&caller, &id, "return", &s.inner.reads).await?;
    let (_, v) = json_body(body)?;
    let req: ReturnBody = typed(v)?;
    let order = match seen {
        Some(o) => o,
        None => known_order(&s, &id).await?,
    };
    if !storeflow_avro::states::may_move(&order.order.status, OrderStatus::ReturnRequested) {
        return Err(ApiError::Conflict {
            code: "conflict",
            message: format!("order {id} is {}; only delivered orders can be returned", order.order.status),
        });
    }
    for (i, l) in req.items.iter().enumerate() {
        let bought: i64 = order.order.items.iter().filter(|o| o.sku == l.sku).map(|o| o.quantity).sum();
        if bought == 0 {
            return Err(ApiError::field(format!("items[{i}].sku"), format!("order {id} has no sku `{}`", l.sku)));
        }
        if i64::from(l.quantity) > bought {
            return Err(ApiError::field(format!("items[{i}].quantity"), format!("only {bought} units were bought")));
        }
    }
    let return_id = format!("ret_{}", uuid::Uuid::new_v4().simple());
    let e = Event::ReturnRequested(ReturnRequested {
        event_id: uuid::Uuid::new_v4().to_string(),
        occurred_at: Timestamp::now(),
        order_id: id.clone(),
        return_id: return_id.clone(),
        items: req.items.into_iter().map(|l| SkuQuantity { sku: l.sku, quantity: l.quantity }).collect(),
        reason: req.reason,
    });
    let e = Writer::validate(vec![e.to_json()], false, &s.inner.config)?;
    s.inner.writer.publish(e).await?;
    Ok((StatusCode::ACCEPTED, Json(OrderAccepted { order_id: id, status: "return_requested".into(), return_id: Some(return_id) })))
}

// ----------------------------------------------------------------------------- webhooks

/// What a Stripe delivery did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookAnswer {
    /// The storeflow event published for it, if any (`PaymentAuthorized`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
    /// True when this Stripe event was published before (a retried delivery).
    pub duplicate: bool,
    /// Why nothing was published (a type storeflow does not map, an object of no order).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
}

/// Stripe's webhook deliveries, signed with the endpoint's secret (`Stripe-Signature`;
/// `[api.stripe_webhook]`): payment intents authorized, captured or failed, charges refunded
/// and disputes opened or closed become the order's payment events; connected accounts and
/// subscriptions updated become the vendor's (`VendorAccountUpdated`, `VendorPlanChanged`).
/// A missing, forged or stale signature is a 400 and publishes nothing; a delivery Stripe
/// retries publishes nothing more; a dispute on a payment the read model has not seen yet is
/// a 503 (Stripe retries it).
#[utoipa::path(post, path = "/v1/webhooks/stripe", tag = "payments",
    request_body(content = Object, description = "a Stripe event, as Stripe sends it"),
    params(("Stripe-Signature" = String, Header, description = "t=<unix seconds>,v1=<hex HMAC-SHA256 of \"t.body\">")),
    responses((status = 200, body = WebhookAnswer), (status = 400, body = ErrorBody), (status = 503, description = "no endpoint secret configured, or a dispute's payment not in the read model yet", body = ErrorBody)),
    security(()))]
pub async fn stripe_webhook(State(s): State<ApiState>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> ApiResult<Json<WebhookAnswer>> {
    let config = s.inner.config.stripe_webhook.as_ref().ok_or_else(|| {
        ApiError::Unavailable("Stripe webhooks are not configured ([api.stripe_webhook] secrets)".into())
    })?;
    let body = body?;
    let signature = headers.get("stripe-signature").map(|v| v.to_str().unwrap_or_default());
    crate::webhooks::verify(signature, &body, &config.secrets, config.tolerance_secs, Timestamp::now().millis().div_euclid(1000))?;
    let event = match crate::webhooks::translate(&body)? {
        crate::webhooks::Delivery::Ignored(why) => {
            tracing::info!("stripe webhook ignored: {why}");
            return Ok(Json(WebhookAnswer { published: None, duplicate: false, ignored: Some(why) }));
        }
        crate::webhooks::Delivery::Publish(e) => *e,
        crate::webhooks::Delivery::ForPayment { payment_id, event } => {
            // A dispute names its PaymentIntent only: its order comes from the read model. A
            // payment it has not seen yet is a 503, which Stripe retries (for up to 3 days).
            let order = s.inner.reads.read_model()?.order_of_payment(&payment_id).await.map_err(sink_error("looking up the payment's order"))?;
            let Some(order_id) = order else {
                return Err(ApiError::Unavailable(format!("{}: payment {payment_id} is not in the read model (yet): retry later", event.name())));
            };
            crate::webhooks::Delivery::for_order(*event, order_id)
        }
    };
    let name = event.name().to_string();
    let checked = Writer::validate(vec![event.to_json()], false, &s.inner.config)?;
    let a = s.inner.writer.publish(checked).await?;
    s.inner.metrics.events_published.inc_by(a.published as u64);
    s.inner.metrics.events_duplicate.inc_by(a.duplicates as u64);
    Ok(Json(WebhookAnswer { published: Some(name), duplicate: a.duplicates > 0, ignored: None }))
}

// ---------------------------------------------------------------------------- inventory

/// Stock of a sku: on hand, reserved and available, in total and per warehouse.
#[utoipa::path(get, path = "/v1/inventory/{sku}", tag = "inventory",
    params(("sku" = String, Path)),
    responses((status = 200, body = InventoryView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_inventory(State(s): State<ApiState>, Extension(caller): Extension<Caller>, Path(sku): Path<String>) -> ApiResult<Json<InventoryView>> {
    caller.require("read inventory", &[&Role::App])?;
    let inv = s.inner.reads.read_model()?.inventory(&sku).await.map_err(sink_error("reading stock"))?.ok_or_else(|| ApiError::NotFound(format!("no stock was ever recorded for sku {sku}")))?;
    Ok(Json(inv))
}

// ------------------------------------------------------------------- catalog and search

/// A product. Vendors may read only their own products.
#[utoipa::path(get, path = "/v1/products/{id}", tag = "catalog",
    params(("id" = String, Path)),
    responses((status = 200, body = ProductView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_product(State(s): State<ApiState>, Extension(caller): Extension<Caller>, Path(id): Path<String>) -> ApiResult<Json<ProductView>> {
    // A customer reads products only where anonymous callers may.
    if !(s.inner.config.public_search && matches!(caller, Caller::Anonymous | Caller::Customer { .. })) {
        caller.role()?;
    }
    let p = s.inner.reads.read_model()?.product(&id).await.map_err(sink_error("reading a product"))?;
    if let Caller::Key { role, .. } = &caller {
        match role {
            Role::Admin | Role::App | Role::Service | Role::Analyst => {}
            Role::Vendor(v) => {
                // Same answer whether the product exists or not: no probing of others' ids.
                if p.as_ref().is_none_or(|p| &p.vendor_id != v) {
                    return Err(ApiError::Forbidden(format!("the role {role} may read only its own products")));
                }
            }
        }
    }
    p.map(Json).ok_or_else(|| ApiError::NotFound(format!("no product {id}")))
}

/// How deep a search may page: `(page + 1) × size` at most this. It is Elasticsearch's
/// default `index.max_result_window`, and tantivy too collects `offset + size` hits up front.
pub const MAX_RESULT_WINDOW: u64 = 10_000;
/// Longest free text of a search, in characters.
pub const MAX_QUERY_CHARS: usize = 256;
/// Most words in a search's free text (each one is a fuzzy term for the backend).
pub const MAX_QUERY_WORDS: usize = 16;
/// Longest `category`, `vendor` or single `brand` value, in characters.
pub const MAX_FILTER_CHARS: usize = 200;
/// Most brands in one `brand` filter.
pub const MAX_BRANDS: usize = 20;

/// `GET /v1/search` query.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Free text (typos tolerated); at most 256 characters and 16 words.
    pub q: Option<String>,
    /// Category path or a prefix of one.
    pub category: Option<String>,
    /// Brands, comma-separated (any of them).
    pub brand: Option<String>,
    /// Lowest price, base-currency minor units.
    pub price_min: Option<i64>,
    /// Highest price, base-currency minor units.
    pub price_max: Option<i64>,
    /// Lowest average rating (1–5).
    pub rating: Option<f64>,
    /// Only products in stock.
    pub in_stock: Option<bool>,
    /// Only this vendor (vendor keys: always their own).
    pub vendor: Option<String>,
    /// relevance, price_asc, price_desc, rating, popularity.
    pub sort: Option<SortBy>,
    /// Page, from 0; `(page + 1) × size` at most 10,000.
    pub page: Option<u32>,
    /// Results per page, 1–100 (default 20).
    pub size: Option<u32>,
}

impl SearchParams {
    /// The bounds every search keeps, whichever backend answers it: 400 naming the
    /// parameter past its bound.
    fn check(&self) -> ApiResult<()> {
        let size = self.size.unwrap_or(20);
        if !(1..=100).contains(&size) {
            return Err(ApiError::field("size", format!("between 1 and 100, got {size}")));
        }
        let page = u64::from(self.page.unwrap_or(0));
        if (page + 1) * u64::from(size) > MAX_RESULT_WINDOW {
            let last = MAX_RESULT_WINDOW / u64::from(size) - 1;
            return Err(ApiError::field("page", format!("results past the first {MAX_RESULT_WINDOW} are not served: with size={size} the last page is {last}, got {page}; narrow the search instead")));
        }
        if let Some(q) = &self.q {
            let chars = q.chars().count();
            if chars > MAX_QUERY_CHARS {
                return Err(ApiError::field("q", format!("at most {MAX_QUERY_CHARS} characters, got {chars}")));
            }
            // Words as the search backends tokenize them (alphanumeric runs).
            let words = q.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).count();
            if words > MAX_QUERY_WORDS {
                return Err(ApiError::field("q", format!("at most {MAX_QUERY_WORDS} words, got {words}")));
            }
        }
        for (name, v) in [("category", &self.category), ("vendor", &self.vendor), ("brand", &self.brand)] {
            if let Some(v) = v {
                let longest = if name == "brand" { v.split(',').map(|b| b.trim().chars().count()).max().unwrap_or(0) } else { v.chars().count() };
                if longest > MAX_FILTER_CHARS {
                    return Err(ApiError::field(name, format!("at most {MAX_FILTER_CHARS} characters per value, got {longest}")));
                }
            }
        }
        if let Some(b) = &self.brand {
            let n = b.split(',').filter(|b| !b.trim().is_empty()).count();
            if n > MAX_BRANDS {
                return Err(ApiError::field("brand", format!("at most {MAX_BRANDS} brands, got {n}")));
            }
        }
        if let Some(r) = self.rating
            && !(0.0..=5.0).contains(&r)
        {
            return Err(ApiError::field("rating", format!("between 0 and 5, got {r}")));
        }
        if let (Some(a), Some(b)) = (self.price_min, self.price_max)
            && a > b
        {
            return Err(ApiError::field("price_min", format!("price_min {a} is above price_max {b}")));
        }
        Ok(())
    }
}

/// Search products, with facets.
#[utoipa::path(get, path = "/v1/search", tag = "catalog", params(SearchParams),
    responses((status = 200, body = SearchResults), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, description = "no search backend", body = ErrorBody)),
    security((), ("bearer" = [])))]
pub async fn search(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<SearchParams>, QueryRejection>,
) -> ApiResult<Json<SearchResults>> {
    public_or(&caller, s.inner.config.public_search, "search products")?;
    let p = query(q)?;
    let mut vendor_id = p.vendor.clone();
    if let Caller::Key { role: Role::Vendor(v), .. } = &caller {
        if vendor_id.as_ref().is_some_and(|x| x != v) {
            return Err(ApiError::Forbidden(format!("vendor {v} may search only its own products")));
        }
        vendor_id = Some(v.clone());
    }
    p.check()?;
    let size = p.size.unwrap_or(20);
    let sq = SearchQuery {
        text: p.q.filter(|t| !t.trim().is_empty()),
        category: p.category,
        brands: p.brand.map(|b| b.split(',').map(str::trim).filter(|b| !b.is_empty()).map(String::from).collect()).unwrap_or_default(),
        vendor_id,
        min_price_eur_minor: p.price_min,
        max_price_eur_minor: p.price_max,
        min_rating: p.rating,
        in_stock: p.in_stock.unwrap_or(false),
        sort: p.sort.unwrap_or_default(),
        page: p.page.unwrap_or(0),
        per_page: size,
    };
    Ok(Json(s.inner.reads.search()?.search(&sq).await?))
}

// ---------------------------------------------------------------------- recommendations

/// `GET /v1/recommendations` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecoParams {
    /// similar, bought_together, trending or for_session.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: String,
    /// For similar and bought_together.
    pub product_id: Option<String>,
    /// For for_session.
    pub session_id: Option<String>,
    /// For trending (all categories without it).
    pub category: Option<String>,
    /// 1–100, default 10.
    pub limit: Option<usize>,
}

/// Recommendations answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Recommendations {
    #[serde(rename = "type")]
    pub kind: String,
    /// Best first; products out of stock are left out.
    pub items: Vec<ScoredProduct>,
}

/// Recommended products (out-of-stock products are left out).
#[utoipa::path(get, path = "/v1/recommendations", tag = "catalog", params(RecoParams),
    responses((status = 200, body = Recommendations), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)),
    security((), ("bearer" = [])))]
pub async fn recommendations(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<RecoParams>, QueryRejection>,
) -> ApiResult<Json<Recommendations>> {
    public_or(&caller, s.inner.config.public_recommendations, "read recommendations")?;
    let p = query(q)?;
    let need = |v: Option<String>, name: &str| v.filter(|x| !x.is_empty()).ok_or_else(|| ApiError::field(name, format!("required for type={}", p.kind)));
    let list = match p.kind.as_str() {
        "similar" => RecoList::Similar(need(p.product_id.clone(), "product_id")?),
        "bought_together" => RecoList::BoughtTogether(need(p.product_id.clone(), "product_id")?),
        "for_session" => RecoList::ForSession(need(p.session_id.clone(), "session_id")?),
        "trending" => RecoList::Trending(p.category.clone().filter(|c| !c.is_empty())),
        other => return Err(ApiError::field("type", format!("`{other}`: expected similar, bought_together, trending or for_session"))),
    };
    let limit = p.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::field("limit", format!("between 1 and 100, got {limit}")));
    }
    let items = s.inner.reads.live.recommendations(&list, limit);
    Ok(Json(Recommendations { kind: p.kind, items }))
}

// -------------------------------------------------------------------------------- sales

/// `GET /v1/vendors/{id}/sales` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SalesParams {
    /// Start (inclusive): milliseconds or RFC 3339. Default: 1 h / 24 h / 30 d before `to`.
    pub from: Option<String>,
    /// End (exclusive): milliseconds or RFC 3339. Default: now.
    pub to: Option<String>,
    /// minute (default), hour or day.
    pub granularity: Option<Granularity>,
}

/// A vendor's sales report.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SalesReport {
    pub vendor_id: String,
    pub from: i64,
    pub to: i64,
    pub granularity: Granularity,
    /// Oldest first, one per bucket and currency.
    pub buckets: Vec<SalesBucket>,
}

/// A vendor's sales per minute, hour or day (the vendor itself, analysts and admins).
#[utoipa::path(get, path = "/v1/vendors/{id}/sales", tag = "vendors",
    params(("id" = String, Path), SalesParams),
    responses((status = 200, body = SalesReport), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn vendor_sales(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    q: Result<Query<SalesParams>, QueryRejection>,
) -> ApiResult<Json<SalesReport>> {
    caller.require_vendor(&id, "read the sales", false, true)?;
    let p = query(q)?;
    let granularity = p.granularity.unwrap_or_default();
    let to = time_param("to", p.to.as_deref())?.unwrap_or_else(|| Timestamp::now().millis() + 1);
    let default_span = match granularity {
        Granularity::Minute => 3_600_000,
        Granularity::Hour => 86_400_000,
        Granularity::Day => 30 * 86_400_000,
    };
    let from = time_param("from", p.from.as_deref())?.unwrap_or(to - default_span);
    if from >= to {
        return Err(ApiError::field("from", "must be before `to`"));
    }
    let buckets = s.inner.reads.live.sales(&id, from, to, granularity);
    Ok(Json(SalesReport { vendor_id: id, from, to, granularity, buckets }))
}

/// A vendor's sales as Server-Sent Events: one `sales` message (a minute bucket as JSON)
/// per update, as the sales processor emits them.
#[utoipa::path(get, path = "/v1/vendors/{id}/sales/stream", tag = "vendors",
    params(("id" = String, Path)),
    responses((status = 200, description = "text/event-stream of SalesBucket JSON messages", content_type = "text/event-stream", body = SalesBucket),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn vendor_sales_stream(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    caller.require_vendor(&id, "stream the sales", false, true)?;
    let Caller::Key { id: key_id, .. } = &caller else { return Err(ApiError::Unauthorized("streams need a key".into())) };
    // At most `max_streams_per_key` per key; the slot is given back when the stream ends.
    let slot = s.stream_slot(key_id)?;
    let key_id = key_id.clone();
    let rx = s.inner.reads.live.subscribe();
    // A tick a second checks the stream may go on: it ends when its key is revoked or the
    // server stops (graceful shutdown does not wait on it).
    let ticks = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(Duration::from_secs(1))).map(|_| None);
    let stream = BroadcastStream::new(rx)
        .map(Some)
        .merge(ticks)
        .take_while(move |_| {
            let _held = &slot;
            s.may_stream(&key_id)
        })
        .filter_map(move |m| match m? {
            Ok((vendor, bucket)) if vendor == id => {
                Some(Ok(SseEvent::default().event("sales").json_data(&bucket).unwrap_or_else(|_| SseEvent::default().comment("unencodable"))))
            }
            Ok(_) => None,
            // A slow reader missed messages: say so; the next update carries the new totals.
            Err(_) => Some(Ok(SseEvent::default().event("lagged").data("some updates were skipped"))),
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

// ---------------------------------------------------------------------------- analytics

/// `?range=` of the analytics endpoints.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeParams {
    /// 1h, 24h (default), 7d or 30d.
    pub range: Option<DashboardRange>,
}

/// The marketplace's sales dashboard (analysts and admins).
#[utoipa::path(get, path = "/v1/analytics/dashboard", tag = "analytics", params(RangeParams),
    responses((status = 200, body = Dashboard), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn dashboard(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<RangeParams>, QueryRejection>,
) -> ApiResult<Json<Dashboard>> {
    caller.require("read the marketplace dashboard", &[&Role::Analyst])?;
    let range = query(q)?.range.unwrap_or(DashboardRange::Day);
    Ok(Json(s.inner.reads.analytics()?.dashboard(range, None).await.map_err(sink_error("computing the dashboard"))?))
}

/// Inventory health: low stock and stock per warehouse now, reservations per hour of the
/// range (analysts and admins).
#[utoipa::path(get, path = "/v1/analytics/inventory", tag = "analytics", params(RangeParams),
    responses((status = 200, body = InventoryHealth), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn inventory_analytics(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<RangeParams>, QueryRejection>,
) -> ApiResult<Json<InventoryHealth>> {
    caller.require("read inventory health", &[&Role::Analyst])?;
    let range = query(q)?.range.unwrap_or(DashboardRange::Day);
    Ok(Json(s.inner.reads.analytics()?.inventory(range, None).await.map_err(sink_error("computing inventory health"))?))
}

/// The fraud verdicts of the range: orders per decision, the held and reviewed orders, the
/// signals that fired most (analysts and admins).
#[utoipa::path(get, path = "/v1/analytics/fraud", tag = "analytics", params(RangeParams),
    responses((status = 200, body = FraudBoard), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn fraud_analytics(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<RangeParams>, QueryRejection>,
) -> ApiResult<Json<FraudBoard>> {
    caller.require("read the fraud verdicts", &[&Role::Analyst])?;
    let range = query(q)?.range.unwrap_or(DashboardRange::Day);
    Ok(Json(s.inner.reads.analytics()?.fraud(range, None).await.map_err(sink_error("computing the fraud board"))?))
}

/// One vendor's performance (the vendor itself, analysts and admins).
#[utoipa::path(get, path = "/v1/analytics/vendors/{id}", tag = "analytics",
    params(("id" = String, Path), RangeParams),
    responses((status = 200, body = VendorPerformance), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn vendor_analytics(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    q: Result<Query<RangeParams>, QueryRejection>,
) -> ApiResult<Json<VendorPerformance>> {
    caller.require_vendor(&id, "read the analytics", false, true)?;
    let range = query(q)?.range.unwrap_or(DashboardRange::Day);
    let v = s.inner.reads.analytics()?.vendor_performance(&id, range, None).await.map_err(sink_error("computing vendor performance"))?;
    Ok(Json(v))
}

/// One customer's insights: lifetime value, segment and churn risk, from analytics
/// (analysts and admins).
#[utoipa::path(get, path = "/v1/analytics/customers/{id}", tag = "analytics",
    params(("id" = String, Path)),
    responses((status = 200, body = CustomerInsight), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn customer_analytics(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<CustomerInsight>> {
    caller.require("read customer insights", &[&Role::Analyst])?;
    if id.is_empty() || id.len() > 128 || id.chars().any(char::is_control) {
        return Err(ApiError::field("id", "a customer id is 1 to 128 characters, none of them control characters"));
    }
    let insight = s.inner.reads.analytics()?.customer(&id, Timestamp::now().millis()).await.map_err(sink_error("reading customer insights"))?;
    insight.map(Json).ok_or_else(|| ApiError::NotFound(format!("no order from customer {id} in analytics")))
}

// -------------------------------------------------------------------------------- admin

/// `POST /v1/admin/keys` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// app (storefront and mobile apps), service (trusted backends), analyst, admin or
    /// vendor:<vendor_id>. See docs/API.md ("Roles") for what each may publish and read.
    #[schema(example = "service")]
    pub role: String,
}

/// A new key: shown once, stored only hashed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    pub key: String,
    pub role: String,
}

/// Create an API key (admins).
#[utoipa::path(post, path = "/v1/admin/keys", tag = "admin", request_body = NewKey,
    responses((status = 201, body = CreatedKey), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_key(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    caller.require("manage keys", &[])?;
    let (_, v) = json_body(body)?;
    let req: NewKey = typed(v)?;
    let role: Role = req.role.parse().map_err(|e: String| ApiError::field("role", e))?;
    let key = s.inner.keys.create(role.clone()).map_err(|e| ApiError::Internal(format!("storing a new key: {e}")))?;
    Ok((StatusCode::CREATED, Json(CreatedKey { key, role: role.to_string() })))
}

/// `GET /v1/admin/keys` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyInfo>,
}

/// List the API keys: ids, roles, creation times — never a secret (admins).
#[utoipa::path(get, path = "/v1/admin/keys", tag = "admin",
    responses((status = 200, body = KeyList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_keys(State(s): State<ApiState>, Extension(caller): Extension<Caller>) -> ApiResult<Json<KeyList>> {
    caller.require("manage keys", &[])?;
    Ok(Json(KeyList { keys: s.inner.keys.list() }))
}

/// Revoke an API key by its id (admins). The key answers 401 from the next request on;
/// the last admin key cannot be revoked (409).
#[utoipa::path(delete, path = "/v1/admin/keys/{id}", tag = "admin",
    params(("id" = String, Path, description = "The key's id (`k_…`, from GET /v1/admin/keys)")),
    responses((status = 204, description = "Revoked"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke_key(State(s): State<ApiState>, Extension(caller): Extension<Caller>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    caller.require("manage keys", &[])?;
    match s.inner.keys.revoke(&id) {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(RevokeError::Unknown) => Err(ApiError::NotFound(format!("no API key {id}"))),
        Err(e @ RevokeError::LastAdmin) => Err(ApiError::Conflict { code: "last_admin_key", message: e.to_string() }),
        Err(e) => Err(ApiError::Internal(format!("revoking key {id}: {e}"))),
    }
}

// ---------------------------------------------------------------------------- operations

/// Health answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// ok, or what is not ready.
    pub status: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into(), problems: Vec::new() })
}

/// The backends answer (the log, every read backend) and every processor and sink thread
/// runs; 503 otherwise. The problems are listed for an admin key only (backend errors can
/// name hosts and users).
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn readyz(State(s): State<ApiState>, Extension(caller): Extension<Caller>) -> Response {
    let mut problems = Vec::new();
    let log = s.inner.log.clone();
    match tokio::task::spawn_blocking(move || log.describe_topics()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => problems.push(format!("log: {e}")),
        Err(e) => problems.push(format!("log: {e}")),
    }
    for (name, r) in &s.inner.reads.readiness {
        if let Err(e) = r.ready().await {
            problems.push(format!("{name}: {e}"));
        }
    }
    let status = if problems.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    if !problems.is_empty() {
        tracing::warn!(problems = %problems.join("; "), "not ready");
    }
    let admin = matches!(&caller, Caller::Key { role: Role::Admin, .. });
    let problems = if admin { problems } else { Vec::new() };
    let body = Health { status: if status == StatusCode::OK { "ok".into() } else { "not ready".into() }, problems };
    (status, Json(body)).into_response()
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics text format", content_type = "application/openmetrics-text", body = String)))]
pub async fn metrics(State(s): State<ApiState>) -> Response {
    crate::metrics::exposition(&s.inner.registry)
}
