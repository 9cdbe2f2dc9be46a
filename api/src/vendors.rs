//! Vendors' premium plans and Connect onboarding, and what the vendors' page reads of the
//! read model:
//! - `POST /v1/vendors/{id}/plan` publishes `PlanChangeRequested` on `payments.commands`; the
//!   payments worker starts, changes or cancels the Stripe subscription and answers with
//!   `VendorPlanChanged` (docs/PAYMENTS.md, "Plans");
//! - `GET /v1/vendors/{id}/onboarding` obtains the vendor's connected account through
//!   [`crate::connect::Connect`] (creating it the first time), publishes
//!   `VendorAccountUpdated` on `storefront.catalog` and answers with an onboarding link
//!   (docs/PAYMENTS.md, "Onboarding");
//! - `GET /v1/vendors/{id}/orders` and `/low-stock`: the vendor's recent orders (its lines
//!   only, no customer) and its skus running out.
//!
//! Plan and onboarding: the vendor itself or an admin. Orders and stock: also analysts.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use storeflow_avro::{Event, PlanChangeRequested, Timestamp, VendorAccountUpdated};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::connect::{Connect, ConnectError};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::ids::derived_uuid;
use crate::read::{LowStockView, VendorOrderView, sink_error};
use crate::routes::{json_body, query, typed};
use crate::state::ApiState;
use crate::writes::Checked;

/// The longest vendor id the endpoints take.
const MAX_VENDOR_ID: usize = 64;

/// A vendor id in a path: 1–64 of `A–Z a–z 0–9 _ -` (400 naming `id` otherwise).
pub(crate) fn vendor_id(id: &str) -> ApiResult<()> {
    if id.is_empty() || id.len() > MAX_VENDOR_ID || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(ApiError::field("id", format!("a vendor id is 1 to {MAX_VENDOR_ID} letters, digits, `_` or `-`")));
    }
    Ok(())
}

/// `POST /v1/vendors/{id}/plan` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanBody {
    /// One of the configured plans (`basic`, `pro`, `enterprise` by default); the free plan
    /// (`basic`) cancels the subscription.
    pub plan: String,
}

/// A plan change accepted for the payments worker.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanAccepted {
    pub vendor_id: String,
    pub plan: String,
    /// The `PlanChangeRequested` event's id (the `VendorPlanChanged` answering it follows
    /// on `storefront.catalog`).
    pub command_id: String,
    /// Always `requested`.
    pub status: String,
}

/// Start or change a vendor's premium plan (a Stripe subscription at the plan's monthly price).
///
/// 202: the payments worker makes the change; `VendorPlanChanged` on the catalog (and the
/// vendor's plan in the read model) follows. The vendor itself or an admin.
#[utoipa::path(post, path = "/v1/vendors/{id}/plan", tag = "vendors", request_body = PlanBody,
    params(("id" = String, Path, description = "vendor id")),
    responses((status = 202, body = PlanAccepted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn change_plan(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<PlanAccepted>)> {
    vendor_id(&id)?;
    caller.require_vendor(&id, "change the plan", false, false)?;
    let (_, v) = json_body(body)?;
    let req: PlanBody = typed(v)?;
    let plans = &s.inner.config.plans;
    if !plans.contains(&req.plan) {
        return Err(ApiError::field("plan", format!("unknown plan {:?}: one of {}", req.plan, plans.join(", "))));
    }
    let command = PlanChangeRequested { event_id: uuid::Uuid::new_v4().to_string(), occurred_at: Timestamp::now(), vendor_id: id.clone(), plan: req.plan.clone() };
    let command_id = command.event_id.clone();
    s.inner.writer.publish(Checked::made_here(vec![Event::PlanChangeRequested(command)], false)).await?;
    Ok((StatusCode::ACCEPTED, Json(PlanAccepted { vendor_id: id, plan: req.plan, command_id, status: "requested".into() })))
}

/// A vendor's Connect onboarding.
#[derive(Debug, Serialize, ToSchema)]
pub struct Onboarding {
    pub vendor_id: String,
    /// The vendor's connected account (`acct_…`).
    pub account_id: String,
    /// Stripe's hosted onboarding page; `null` in test mode (there is no Stripe to visit).
    pub url: Option<String>,
    /// When the link stops working (ms since the epoch); `null` in test mode.
    pub expires_at: Option<i64>,
    /// `stripe` or `test`.
    pub mode: String,
    pub charges_enabled: bool,
    pub payouts_enabled: bool,
    pub details_submitted: bool,
}

/// The vendor's Connect onboarding link (its connected account is created the first time).
///
/// Each call makes a fresh link (Stripe's expire within minutes and work once). The account
/// is learned by the payments worker (transfers go to it) through `VendorAccountUpdated`.
/// 503 when no payment provider is configured for the API. The vendor itself or an admin.
#[utoipa::path(get, path = "/v1/vendors/{id}/onboarding", tag = "vendors",
    params(("id" = String, Path, description = "vendor id")),
    responses((status = 200, body = Onboarding), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn onboarding(State(s): State<ApiState>, Extension(caller): Extension<Caller>, Path(id): Path<String>) -> ApiResult<Json<Onboarding>> {
    vendor_id(&id)?;
    caller.require_vendor(&id, "onboard", false, false)?;
    let Some(connect) = s.connect() else {
        return Err(ApiError::Unavailable("no payment provider is configured for the API: onboarding links need one (storeflow run configures it)".into()));
    };
    let vendor = s.inner.reads.read_model()?.vendor(&id).await.map_err(sink_error("reading a vendor"))?.ok_or_else(|| ApiError::NotFound(format!("no vendor {id}")))?;
    let known = s.inner.reads.read_model()?.vendor_account(&id).await.map_err(sink_error("reading a vendor's account"))?;
    let (vendor_id, country, mode) = (id.clone(), vendor.country.clone(), connect.mode());
    let (account, link) = blocking(connect, move |c| {
        let account = c.account(&vendor_id, &country, known.as_deref())?;
        let link = c.onboarding_link(&account.account_id)?;
        Ok((account, link))
    })
    .await?;
    // The same account with the same flags makes the same event id (deduplicated).
    let seed = format!("account {id} {} {} {} {}", account.account_id, account.charges_enabled, account.payouts_enabled, account.details_submitted);
    let updated = VendorAccountUpdated {
        event_id: derived_uuid(&seed),
        occurred_at: Timestamp::now(),
        vendor_id: id.clone(),
        account_id: account.account_id.clone(),
        charges_enabled: account.charges_enabled,
        payouts_enabled: account.payouts_enabled,
        details_submitted: account.details_submitted,
    };
    s.inner.writer.publish(Checked::made_here(vec![Event::VendorAccountUpdated(updated)], true)).await?;
    Ok(Json(Onboarding {
        vendor_id: id,
        account_id: account.account_id,
        url: link.url,
        expires_at: link.expires_at,
        mode: mode.to_string(),
        charges_enabled: account.charges_enabled,
        payouts_enabled: account.payouts_enabled,
        details_submitted: account.details_submitted,
    }))
}

/// Runs `f` on the blocking pool (the provider's calls block).
async fn blocking<T: Send + 'static>(connect: std::sync::Arc<dyn Connect>, f: impl FnOnce(&dyn Connect) -> Result<T, ConnectError> + Send + 'static) -> ApiResult<T> {
    let joined = tokio::task::spawn_blocking(move || f(connect.as_ref())).await.map_err(|e| ApiError::Internal(format!("the onboarding call panicked: {e}")))?;
    joined.map_err(|e| match e {
        ConnectError::Unavailable(why) => ApiError::Unavailable(format!("the payment provider did not answer; retry: {why}")),
        ConnectError::Refused(why) => {
            tracing::error!(error = %why, "the payment provider refused an onboarding request");
            ApiError::Unavailable("the payment provider refused the onboarding request (the reason is in the server's log)".into())
        }
    })
}

/// `?limit=` of `GET /v1/vendors/{id}/orders`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VendorOrdersParams {
    /// How many, newest first: 1 to 100 (default 20).
    pub limit: Option<u32>,
}

/// The newest orders with lines of the vendor: status, payment and fulfilment, and its lines'
/// units and value in the order's currency (the vendor itself, analysts and admins).
#[utoipa::path(get, path = "/v1/vendors/{id}/orders", tag = "vendors",
    params(("id" = String, Path), VendorOrdersParams),
    responses((status = 200, body = Vec<VendorOrderView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn vendor_orders(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    q: Result<Query<VendorOrdersParams>, QueryRejection>,
) -> ApiResult<Json<Vec<VendorOrderView>>> {
    caller.require_vendor(&id, "read the orders", false, true)?;
    vendor_id(&id)?;
    let limit = query(q)?.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::field("limit", "1 to 100"));
    }
    Ok(Json(s.inner.reads.read_model()?.vendor_orders(&id, limit).await.map_err(sink_error("reading the vendor's orders"))?))
}

/// `?max_available=` of `GET /v1/vendors/{id}/low-stock`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LowStockParams {
    /// Skus with at most this many units available in a warehouse: 0 to 100000 (default 5).
    pub max_available: Option<i64>,
}

/// The vendor's skus running out: per warehouse, at most `max_available` units available,
/// fewest first (the vendor itself, analysts and admins).
#[utoipa::path(get, path = "/v1/vendors/{id}/low-stock", tag = "vendors",
    params(("id" = String, Path), LowStockParams),
    responses((status = 200, body = Vec<LowStockView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn vendor_low_stock(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    q: Result<Query<LowStockParams>, QueryRejection>,
) -> ApiResult<Json<Vec<LowStockView>>> {
    caller.require_vendor(&id, "read the stock", false, true)?;
    vendor_id(&id)?;
    let max = query(q)?.max_available.unwrap_or(5);
    if !(0..=100_000).contains(&max) {
        return Err(ApiError::field("max_available", "0 to 100000"));
    }
    Ok(Json(s.inner.reads.read_model()?.vendor_low_stock(&id, max).await.map_err(sink_error("reading the vendor's stock"))?))
}
