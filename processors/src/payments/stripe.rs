//! [`Stripe`]: the [`PaymentProvider`] on Stripe's API, through async-stripe (feature `stripe`).
//!
//! Each trait call is one Stripe request — a PaymentIntent (create with manual capture and
//! confirm, capture, cancel), a Refund, a Transfer or a transfer reversal, and for vendors a
//! Customer, a Subscription, a connected Account or an AccountLink — sent with the
//! command's idempotency key as Stripe's `Idempotency-Key`, so a redelivered command gets
//! Stripe's first answer back instead of moving money twice
//! (<https://docs.stripe.com/api/idempotent_requests>).
//!
//! The trait is synchronous (the payments worker runs on plain threads), so a [`Stripe`] owns
//! a current-thread tokio runtime and blocks on each request. Never call it from inside a
//! tokio runtime: `block_on` panics there.
//!
//! How answers map (see [`classify`]): a declined card (Stripe's `card_error`, HTTP 402) and
//! a PaymentIntent that `requires_action` are [`Authorization::Declined`] outcomes; 409
//! (a concurrent request with the same key), 424, 429, 5xx, timeouts and network failures
//! are [`ProviderError::Transient`]; every other 4xx is [`ProviderError::Rejected`] with
//! Stripe's error code.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use ::stripe::{ApiErrors, ApiErrorsType, Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_connect::transfer::CreateTransfer;
use stripe_connect::transfer_reversal::CreateIdTransferReversal;
use stripe_core::payment_intent::{
    CancelPaymentIntent, CapturePaymentIntent, CreatePaymentIntent, CreatePaymentIntentPaymentMethodOptions, CreatePaymentIntentPaymentMethodOptionsCard,
    CreatePaymentIntentPaymentMethodOptionsCardRequestMulticapture,
};
use stripe_core::refund::{CreateRefund, CreateRefundReason};
use stripe_core::{Charge, PaymentIntent, PaymentIntentCaptureMethod, PaymentIntentStatus};
use stripe_client_core::{RequestBuilder, StripeMethod};
use stripe_types::{Currency, Expandable};

use super::provider::{
    AccountLink, AccountLinkRequest, AccountRequest, AccountStatus, AuthorizeRequest, Authorization, CancelRequest, CaptureRequest, Captured,
    PaymentProvider, PlanRequest, ProviderError, RefundRequest, ReversalRequest, Subscription, TransferRequest,
};

/// How long one HTTP attempt may take before it counts as a (transient) timeout. Stripe's
/// own libraries allow 80 s; a worker thread blocked that long stalls its partition, and a
/// timed-out call is retried with the same idempotency key, which is safe.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The Stripe payment provider. Cheap to call from one thread at a time; the secret key is
/// held only inside the HTTP client (as a sensitive header) and never printed.
pub struct Stripe {
    client: Client,
    runtime: tokio::runtime::Runtime,
    api_base: String,
}

impl fmt::Debug for Stripe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stripe").field("api_base", &self.api_base).field("secret_key", &"<redacted>").finish()
    }
}

impl Stripe {
    /// A client for `secret_key` (`sk_test_…` / `sk_live_…`) against `api_base`
    /// (`https://api.stripe.com` when `None`; e.g. `http://127.0.0.1:12111` for stripe-mock).
    ///
    /// Installs rustls' aws-lc-rs crypto provider as the process default when none is
    /// installed yet: with both ring and aws-lc-rs in the build, rustls cannot choose one and
    /// the first HTTPS request would panic.
    pub fn new(secret_key: &str, api_base: Option<&str>) -> Result<Stripe, String> {
        if secret_key.trim().is_empty() {
            return Err("the Stripe secret key is empty".into());
        }
        // Err means another part of the process installed one first, which is as good.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let api_base = normalize_api_base(api_base.unwrap_or("https://api.stripe.com"))?;
        let client = ClientBuilder::new(secret_key)
            .url(api_base.clone())
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| format!("building the Stripe client for {api_base}: {e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting the Stripe client's tokio runtime: {e}"))?;
        Ok(Stripe { client, runtime, api_base })
    }

    /// The API base this client sends to (ends with `/`).
    pub fn api_base(&self) -> &str {
        &self.api_base
    }

    /// Sends `request` once with `key` as its `Idempotency-Key` and waits for the answer.
    fn send<R>(&self, request: &R, key: &str) -> Result<R::Output, Failure>
    where
        R: StripeRequest,
        R::Output: miniserde::Deserialize,
    {
        let key = IdempotencyKey::new(key).map_err(|e| {
            Failure::Error(ProviderError::Rejected { code: "invalid_idempotency_key".into(), message: e.to_string() })
        })?;
        // `Idempotent` sends once; retrying is the runtime's job (it holds the offset and
        // backs off), so a retry here would only hide how often Stripe is failing.
        let pending = request.customize().request_strategy(RequestStrategy::Idempotent(key)).send(&self.client);
        self.runtime.block_on(pending).map_err(classify)
    }
}

/// `url` as async-stripe wants it: it appends `v1/…` to the base as written.
fn normalize_api_base(url: &str) -> Result<String, String> {
    let url = url.trim();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("the Stripe API base `{url}` is not an http(s) URL"));
    }
    Ok(format!("{}/", url.trim_end_matches('/')))
}

/// What a failed request came to: a declined card (an outcome for `authorize`) or an error.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// Stripe's `card_error`: `code` is the decline code when Stripe gives one.
    Declined { payment_id: Option<String>, code: String, message: String },
    Error(ProviderError),
}

impl Failure {
    /// For calls other than `authorize`, where a card error is not an outcome (a capture of
    /// an expired authorization, say): final, with its code.
    fn into_error(self) -> ProviderError {
        match self {
            Failure::Declined { code, message, .. } => ProviderError::Rejected { code, message },
            Failure::Error(e) => e,
        }
    }
}

/// The one place that decides what a Stripe failure means
/// (<https://docs.stripe.com/error-low-level#status-codes>).
fn classify(err: StripeError) -> Failure {
    match err {
        StripeError::Stripe(api, status) => classify_api_error(&api, status),
        StripeError::ClientError(m) => Failure::Error(ProviderError::Transient(format!("talking to Stripe: {m}"))),
        StripeError::Timeout => Failure::Error(ProviderError::Transient(format!(
            "Stripe did not answer within {}s",
            REQUEST_TIMEOUT.as_secs()
        ))),
        // async-stripe reports an error *status* whose body is not Stripe's JSON error with
        // these two messages (and loses the status): that is a proxy or load balancer
        // answering for Stripe (a 502 page), worth retrying.
        StripeError::JSONDeserialize(m) if m == "error deserializing Stripe error" || m == "Response was not valid UTF-8" => {
            Failure::Error(ProviderError::Transient(format!("Stripe answered with an unreadable error: {m}")))
        }
        // A 2xx answer we cannot read. Retrying with the same key replays the same answer, so
        // it would never succeed: final, for someone to look at (the money may have moved).
        StripeError::JSONDeserialize(m) => {
            Failure::Error(ProviderError::Rejected { code: "unreadable_response".into(), message: m })
        }
        StripeError::ConfigError(m) => Failure::Error(ProviderError::Rejected { code: "client_config".into(), message: m }),
    }
}

fn classify_api_error(api: &ApiErrors, status: u16) -> Failure {
    let message = api.message.clone().unwrap_or_else(|| format!("HTTP {status} from Stripe"));
    let code = api.code.as_ref().map(|c| c.as_str().to_string());
    if matches!(api.type_, ApiErrorsType::CardError) {
        return Failure::Declined {
            payment_id: api.payment_intent.as_ref().map(|pi| pi.id.to_string()),
            code: api.decline_code.clone().or(code).unwrap_or_else(|| "card_declined".into()),
            message,
        };
    }
    if matches!(status, 409 | 424 | 429) || status >= 500 {
        return Failure::Error(ProviderError::Transient(format!("HTTP {status} from Stripe: {message}")));
    }
    Failure::Error(ProviderError::Rejected { code: code.unwrap_or_else(|| api.type_.as_str().to_string()), message })
}

/// Stripe wants ISO-4217 in lower case.
fn currency(iso: &str) -> Currency {
    iso.to_ascii_lowercase().parse().unwrap_or_else(|never| match never {})
}

/// Stripe's refund `reason` accepts three values; anything else is the customer's request
/// (our own reason is kept in the refund's metadata either way).
fn refund_reason(reason: &str) -> CreateRefundReason {
    match reason {
        "duplicate" => CreateRefundReason::Duplicate,
        "fraudulent" => CreateRefundReason::Fraudulent,
        _ => CreateRefundReason::RequestedByCustomer,
    }
}

/// The metadata key and value that mark what the payments worker created: the webhook
/// endpoint ignores deliveries about those (the worker has published their outcome already).
pub const SOURCE_KEY: &str = "storeflow_source";
/// See [`SOURCE_KEY`].
pub const SOURCE: &str = "payments_worker";

fn metadata(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Asks for multicapture on card payments: `if_available`, since Stripe grants it per card
/// network and pricing plan; a PaymentIntent without it still authorizes.
fn multicapture_if_available() -> CreatePaymentIntentPaymentMethodOptions {
    let mut card = CreatePaymentIntentPaymentMethodOptionsCard::new();
    card.request_multicapture = Some(CreatePaymentIntentPaymentMethodOptionsCardRequestMulticapture::IfAvailable);
    let mut options = CreatePaymentIntentPaymentMethodOptions::new();
    options.card = Some(card);
    options
}

/// The card's brand and last four digits, when the latest charge came back expanded.
fn card_of(pi: &PaymentIntent) -> (Option<String>, Option<String>) {
    let Some(Expandable::Object(charge)) = &pi.latest_charge else { return (None, None) };
    let charge: &Charge = charge;
    match charge.payment_method_details.as_ref().and_then(|d| d.card.as_ref()) {
        Some(card) => (card.brand.clone(), card.last4.clone()),
        None => (None, None),
    }
}

/// What a created-and-confirmed PaymentIntent came to.
fn authorization_of(pi: &PaymentIntent) -> Result<Authorization, ProviderError> {
    let payment_id = pi.id.to_string();
    match &pi.status {
        PaymentIntentStatus::RequiresCapture => {
            let (card_brand, card_last4) = card_of(pi);
            Ok(Authorization::Authorized { payment_id, card_brand, card_last4 })
        }
        PaymentIntentStatus::RequiresAction => Ok(Authorization::Declined {
            payment_id: Some(payment_id),
            code: "authentication_required".into(),
            message: "the card needs authentication (3-D Secure) that the checkout did not complete".into(),
        }),
        // Confirmation failed without an error answer: the decline is in last_payment_error.
        PaymentIntentStatus::RequiresPaymentMethod => {
            let err = pi.last_payment_error.as_deref();
            Ok(Authorization::Declined {
                payment_id: Some(payment_id),
                code: err
                    .and_then(|e| e.decline_code.clone().or_else(|| e.code.as_ref().map(|c| c.as_str().to_string())))
                    .unwrap_or_else(|| "requires_payment_method".into()),
                message: err
                    .and_then(|e| e.message.clone())
                    .unwrap_or_else(|| "the payment method was not accepted".into()),
            })
        }
        other => Err(ProviderError::Rejected {
            code: "unexpected_payment_intent_status".into(),
            message: format!("PaymentIntent {payment_id} is `{}` after a manual-capture confirm", other.as_str()),
        }),
    }
}

impl PaymentProvider for Stripe {
    fn name(&self) -> &'static str {
        "stripe"
    }

    fn authorize(&self, r: &AuthorizeRequest) -> Result<Authorization, ProviderError> {
        let request = CreatePaymentIntent::new(r.amount_minor, currency(&r.currency))
            .capture_method(PaymentIntentCaptureMethod::Manual)
            .confirm(true)
            .payment_method(r.payment_method.as_str())
            .transfer_group(r.transfer_group.as_str())
            // Each shipment captures its share (https://docs.stripe.com/payments/multicapture).
            .payment_method_options(multicapture_if_available())
            .metadata(metadata(&[("order_id", &r.order_id), ("customer_id", &r.customer_id), (SOURCE_KEY, SOURCE)]))
            // For the card's brand and last four digits.
            .expand(vec!["latest_charge".to_string()]);
        match self.send(&request, &r.idempotency_key) {
            Ok(pi) => authorization_of(&pi),
            Err(Failure::Declined { payment_id, code, message }) => Ok(Authorization::Declined { payment_id, code, message }),
            Err(Failure::Error(e)) => Err(e),
        }
    }

    fn capture(&self, r: &CaptureRequest) -> Result<Captured, ProviderError> {
        let request = CapturePaymentIntent::new(r.payment_id.as_str()).amount_to_capture(r.amount_minor).final_capture(r.final_capture);
        let pi = self.send(&request, &r.idempotency_key).map_err(Failure::into_error)?;
        Ok(Captured {
            charge_id: pi.latest_charge.as_ref().map(|c| c.id().to_string()),
            // Stripe takes `amount_to_capture` or answers an error; `amount_received` counts
            // every capture of the PaymentIntent so far, not this one's.
            amount_minor: r.amount_minor,
        })
    }

    fn transfer(&self, r: &TransferRequest) -> Result<String, ProviderError> {
        let mut request = CreateTransfer::new(currency(&r.currency), r.destination.as_str())
            .amount(r.amount_minor)
            .transfer_group(r.transfer_group.as_str())
            .metadata(metadata(&[("order_id", &r.order_id), ("vendor_id", &r.vendor_id)]));
        if let Some(charge) = &r.source_charge {
            request = request.source_transaction(charge.as_str());
        }
        let transfer = self.send(&request, &r.idempotency_key).map_err(Failure::into_error)?;
        Ok(transfer.id.to_string())
    }

    fn reverse_transfer(&self, r: &ReversalRequest) -> Result<String, ProviderError> {
        let request = CreateIdTransferReversal::new(r.transfer_id.as_str()).amount(r.amount_minor);
        let reversal = self.send(&request, &r.idempotency_key).map_err(Failure::into_error)?;
        Ok(reversal.id.to_string())
    }

    fn refund(&self, r: &RefundRequest) -> Result<String, ProviderError> {
        let request = CreateRefund::new()
            .payment_intent(r.payment_id.as_str())
            .amount(r.amount_minor)
            .reason(refund_reason(&r.reason))
            .metadata(metadata(&[("reason", &r.reason)]));
        let refund = self.send(&request, &r.idempotency_key).map_err(Failure::into_error)?;
        Ok(refund.id.to_string())
    }

    fn cancel(&self, r: &CancelRequest) -> Result<(), ProviderError> {
        let request = CancelPaymentIntent::new(r.payment_id.as_str());
        self.send(&request, &r.idempotency_key).map_err(Failure::into_error)?;
        Ok(())
    }

    fn create_account(&self, r: &AccountRequest) -> Result<String, ProviderError> {
        let form = serde_json::json!({
            "type": "express",
            "country": r.country,
            // Separate charges and transfers: the platform charges, the account receives transfers.
            "capabilities": {"transfers": {"requested": true}},
            "metadata": {"vendor_id": r.vendor_id, (SOURCE_KEY): SOURCE},
        });
        let account = self.send(&Call::<Created>::post("/accounts", form), &r.idempotency_key).map_err(Failure::into_error)?;
        Ok(account.id)
    }

    fn account_status(&self, account_id: &str) -> Result<AccountStatus, ProviderError> {
        let call = Call::<AccountOut> { method: StripeMethod::Get, path: format!("/accounts/{account_id}"), form: None, out: PhantomData };
        // A read: Stripe ignores the key, `send` wants one.
        let a = self.send(&call, &format!("storeflow-read-{account_id}-{}", uuid::Uuid::new_v4())).map_err(Failure::into_error)?;
        Ok(AccountStatus {
            charges_enabled: a.charges_enabled.unwrap_or(false),
            payouts_enabled: a.payouts_enabled.unwrap_or(false),
            details_submitted: a.details_submitted.unwrap_or(false),
        })
    }

    fn account_link(&self, r: &AccountLinkRequest) -> Result<AccountLink, ProviderError> {
        let form = serde_json::json!({
            "account": r.account_id,
            "refresh_url": r.refresh_url,
            "return_url": r.return_url,
            "type": "account_onboarding",
        });
        let link = self.send(&Call::<LinkOut>::post("/account_links", form), &r.idempotency_key).map_err(Failure::into_error)?;
        Ok(AccountLink { url: Some(link.url), expires_at: link.expires_at.map(|s| s.saturating_mul(1_000)) })
    }

    fn change_plan(&self, r: &PlanRequest) -> Result<Subscription, ProviderError> {
        /// Days a vendor has to pay a plan's invoice.
        const PLAN_INVOICE_DAYS: i64 = 30;
        let customer_id = match (&r.customer_id, &r.price) {
            (Some(c), _) => Some(c.clone()),
            // The free plan with no subscription needs no Customer.
            (None, None) => None,
            (None, Some(_)) => {
                let form = serde_json::json!({"metadata": {"vendor_id": r.vendor_id, (SOURCE_KEY): SOURCE}});
                // One Customer per vendor: the key is the vendor's, whichever command asks first.
                let key = format!("storeflow-vendor-{}-customer", r.vendor_id);
                let customer = self.send(&Call::<Created>::post("/customers", form), &key).map_err(Failure::into_error)?;
                Some(customer.id)
            }
        };
        let metadata = serde_json::json!({"vendor_id": r.vendor_id, "plan": r.plan, (SOURCE_KEY): SOURCE});
        let sub: SubscriptionOut = match (&r.price, &r.current, &customer_id) {
            (None, None, _) => return Ok(Subscription { customer_id, id: None, item_id: None, status: "active".into(), period_start: None }),
            (None, Some(current), _) => {
                let call = Call::<SubscriptionOut> { method: StripeMethod::Delete, path: format!("/subscriptions/{}", current.id), form: None, out: PhantomData };
                self.send(&call, &r.idempotency_key).map_err(Failure::into_error)?
            }
            (Some(price), Some(current), _) => {
                // The item gets the new price; Stripe prorates by default.
                let form = serde_json::json!({"items": [{"id": current.item_id, "price": price}], "metadata": metadata});
                self.send(&Call::<SubscriptionOut>::post(&format!("/subscriptions/{}", current.id), form), &r.idempotency_key).map_err(Failure::into_error)?
            }
            (Some(price), None, customer) => {
                // Vendors pay their plan by invoice (due in 30 days): the subscription is
                // active at once — charging automatically would need the vendor's card, which
                // onboarding does not collect, and leave the subscription `incomplete`.
                let form = serde_json::json!({"customer": customer, "items": [{"price": price}], "metadata": metadata,
                    "collection_method": "send_invoice", "days_until_due": PLAN_INVOICE_DAYS});
                self.send(&Call::<SubscriptionOut>::post("/subscriptions", form), &r.idempotency_key).map_err(Failure::into_error)?
            }
        };
        let item = sub.items.as_ref().and_then(|i| i.data.first());
        // Since API version 2025-03-31 the period is the item's; before, the subscription's.
        let period_start = item.and_then(|i| i.current_period_start).or(sub.current_period_start).or(sub.start_date);
        let live = sub.status != "canceled";
        Ok(Subscription {
            customer_id,
            id: Some(sub.id),
            item_id: item.filter(|_| live).map(|i| i.id.clone()),
            status: sub.status,
            period_start: period_start.map(|s| s.saturating_mul(1_000)),
        })
    }
}

/// A request the async-stripe crates we build have no builder for: a method, a path under
/// `/v1` and a form (encoded as async-stripe encodes its own: `metadata[vendor_id]=…`).
struct Call<T> {
    method: StripeMethod,
    path: String,
    form: Option<serde_json::Value>,
    out: PhantomData<fn() -> T>,
}

impl<T> Call<T> {
    fn post(path: &str, form: serde_json::Value) -> Call<T> {
        Call { method: StripeMethod::Post, path: path.to_string(), form: Some(form), out: PhantomData }
    }
}

impl<T> StripeRequest for Call<T> {
    type Output = T;
    fn build(&self) -> RequestBuilder {
        let b = RequestBuilder::new(self.method, self.path.clone());
        match &self.form {
            Some(form) => b.form(form),
            None => b,
        }
    }
}

/// Any created object: its id.
#[derive(miniserde::Deserialize)]
struct Created {
    id: String,
}

/// What we read of an Account.
#[derive(miniserde::Deserialize)]
struct AccountOut {
    charges_enabled: Option<bool>,
    payouts_enabled: Option<bool>,
    details_submitted: Option<bool>,
}

/// An AccountLink.
#[derive(miniserde::Deserialize)]
struct LinkOut {
    url: String,
    /// Seconds since the epoch.
    expires_at: Option<i64>,
}

/// What we read of a Subscription.
#[derive(miniserde::Deserialize)]
struct SubscriptionOut {
    id: String,
    status: String,
    current_period_start: Option<i64>,
    start_date: Option<i64>,
    items: Option<SubscriptionItems>,
}

#[derive(miniserde::Deserialize)]
struct SubscriptionItems {
    data: Vec<SubscriptionItemOut>,
}

#[derive(miniserde::Deserialize)]
struct SubscriptionItemOut {
    id: String,
    current_period_start: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use stripe::ApiErrorsCode;

    fn api_error(type_: ApiErrorsType, code: Option<ApiErrorsCode>, decline_code: Option<&str>) -> ApiErrors {
        ApiErrors {
            advice_code: None,
            charge: None,
            code,
            decline_code: decline_code.map(String::from),
            doc_url: None,
            message: Some("from stripe".into()),
            network_advice_code: None,
            network_decline_code: None,
            param: None,
            payment_intent: None,
            payment_method: None,
            payment_method_type: None,
            request_log_url: None,
            setup_intent: None,
            source: None,
            type_,
        }
    }

    fn stripe_error(api: ApiErrors, status: u16) -> StripeError {
        StripeError::Stripe(Box::new(api), status)
    }

    #[test]
    fn a_card_error_is_a_decline_with_the_decline_code() {
        let e = stripe_error(api_error(ApiErrorsType::CardError, Some(ApiErrorsCode::CardDeclined), Some("insufficient_funds")), 402);
        assert_eq!(
            classify(e),
            Failure::Declined { payment_id: None, code: "insufficient_funds".into(), message: "from stripe".into() }
        );
    }

    #[test]
    fn a_card_error_without_a_decline_code_uses_its_error_code() {
        let e = stripe_error(api_error(ApiErrorsType::CardError, Some(ApiErrorsCode::ExpiredCard), None), 402);
        assert!(matches!(classify(e), Failure::Declined { code, .. } if code == "expired_card"));
    }

    #[test]
    fn rate_limits_server_errors_and_the_network_are_transient() {
        for status in [409, 429, 500, 502, 503] {
            let e = stripe_error(api_error(ApiErrorsType::ApiError, None, None), status);
            assert!(matches!(classify(e), Failure::Error(ProviderError::Transient(_))), "HTTP {status}");
        }
        assert!(matches!(classify(StripeError::Timeout), Failure::Error(ProviderError::Transient(_))));
        assert!(matches!(
            classify(StripeError::ClientError("connection refused".into())),
            Failure::Error(ProviderError::Transient(_))
        ));
        assert!(matches!(
            classify(StripeError::JSONDeserialize("error deserializing Stripe error".into())),
            Failure::Error(ProviderError::Transient(_))
        ));
    }

    #[test]
    fn other_client_errors_are_rejected_with_stripes_code() {
        let e = stripe_error(api_error(ApiErrorsType::InvalidRequestError, Some(ApiErrorsCode::ResourceMissing), None), 404);
        assert_eq!(
            classify(e),
            Failure::Error(ProviderError::Rejected { code: "resource_missing".into(), message: "from stripe".into() })
        );
        let e = stripe_error(api_error(ApiErrorsType::IdempotencyError, None, None), 400);
        assert!(matches!(classify(e), Failure::Error(ProviderError::Rejected { code, .. }) if code == "idempotency_error"));
    }

    #[test]
    fn a_successful_answer_that_cannot_be_read_is_final() {
        let e = StripeError::JSONDeserialize("missing field `id`".into());
        assert!(matches!(classify(e), Failure::Error(ProviderError::Rejected { code, .. }) if code == "unreadable_response"));
    }

    #[test]
    fn refund_reasons_outside_stripes_three_become_requested_by_customer() {
        assert_eq!(refund_reason("duplicate"), CreateRefundReason::Duplicate);
        assert_eq!(refund_reason("fraudulent"), CreateRefundReason::Fraudulent);
        assert_eq!(refund_reason("requested_by_customer"), CreateRefundReason::RequestedByCustomer);
        assert_eq!(refund_reason("out_of_stock"), CreateRefundReason::RequestedByCustomer);
    }

    #[test]
    fn currencies_are_sent_in_lower_case() {
        assert_eq!(currency("EUR"), Currency::EUR);
        assert_eq!(currency("USD").to_string(), "usd");
    }

    #[test]
    fn the_api_base_gets_one_trailing_slash() {
        assert_eq!(normalize_api_base("http://127.0.0.1:12111").unwrap(), "http://127.0.0.1:12111/");
        assert_eq!(normalize_api_base("https://api.stripe.com/").unwrap(), "https://api.stripe.com/");
        assert!(normalize_api_base("127.0.0.1:12111").is_err());
    }

    #[test]
    fn debug_output_never_shows_the_secret_key() {
        let s = Stripe::new("sk_test_do_not_print_me", Some("http://127.0.0.1:9")).expect("a valid client");
        let printed = format!("{s:?}");
        assert!(!printed.contains("do_not_print_me"), "{printed}");
        assert!(printed.contains("redacted"), "{printed}");
    }

    #[test]
    fn an_unreachable_stripe_is_transient() {
        // Port 9 (discard) on loopback: nothing listens, the connection is refused.
        let s = Stripe::new("sk_test_123", Some("http://127.0.0.1:9")).expect("a valid client");
        let r = CancelRequest { payment_id: "pi_123".into(), idempotency_key: "k1".into() };
        assert!(matches!(s.cancel(&r), Err(ProviderError::Transient(_))));
    }

    #[test]
    fn an_empty_idempotency_key_is_refused_before_anything_is_sent() {
        let s = Stripe::new("sk_test_123", Some("http://127.0.0.1:9")).expect("a valid client");
        let r = CancelRequest { payment_id: "pi_123".into(), idempotency_key: String::new() };
        assert!(matches!(s.cancel(&r), Err(ProviderError::Rejected { code, .. }) if code == "invalid_idempotency_key"));
    }
}
