//! What the payments worker asks of a payment provider, and what it gets back: one method
//! per money movement, each carrying the idempotency key derived from the command that
//! asked for it, so a redelivered or replayed command never moves money twice.
//!
//! Declines and "authentication required" are **outcomes** ([`Authorization::Declined`]),
//! never errors. Errors are either worth retrying ([`ProviderError::Transient`]: 429, 5xx, a
//! network failure — the runtime retries the same command with back-off and holds its
//! offset) or final ([`ProviderError::Rejected`]: the command goes to the DLQ with the
//! provider's error code).
//!
//! Implementations: [`super::TestMode`] (deterministic from Stripe's own test tokens, used
//! by the embedded demo) and, with the `stripe` feature, `super::stripe::Stripe` on
//! async-stripe.

/// A PaymentIntent to create and authorize (manual capture), in the order's currency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizeRequest {
    pub order_id: String,
    pub customer_id: String,
    pub amount_minor: i64,
    /// ISO-4217, upper case (providers that want lower case convert).
    pub currency: String,
    /// The payment-method token the checkout carried (`pm_card_visa`, …). Never card data.
    pub payment_method: String,
    /// Groups the order's charge and its vendors' transfers (Stripe's `transfer_group`).
    pub transfer_group: String,
    pub idempotency_key: String,
}

/// What an authorization came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authorization {
    /// The amount is held on the card until captured.
    Authorized { payment_id: String, card_brand: Option<String>, card_last4: Option<String> },
    /// The card was declined, or needs authentication the checkout did not complete.
    Declined { payment_id: Option<String>, code: String, message: String },
}

/// Capture what was authorized (all of it, or a share: one shipment's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureRequest {
    pub payment_id: String,
    pub amount_minor: i64,
    /// The payment's last capture: the provider releases what stays uncaptured. `false`
    /// keeps the rest of the authorization for later captures (Stripe's multicapture).
    pub final_capture: bool,
    pub idempotency_key: String,
}

/// A capture that went through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Captured {
    /// The charge the money landed in (the source of the vendors' transfers).
    pub charge_id: Option<String>,
    pub amount_minor: i64,
}

/// Move a vendor's net share from the platform to its connected account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferRequest {
    pub order_id: String,
    pub vendor_id: String,
    /// The vendor's connected account (`acct_…`).
    pub destination: String,
    pub amount_minor: i64,
    pub currency: String,
    pub transfer_group: String,
    /// The charge the funds come from (`source_transaction`), when known.
    pub source_charge: Option<String>,
    pub idempotency_key: String,
}

/// Give part of a transfer back from the vendor's account (a refund's share).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReversalRequest {
    pub transfer_id: String,
    pub amount_minor: i64,
    pub idempotency_key: String,
}

/// Refund captured money to the customer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundRequest {
    pub payment_id: String,
    pub amount_minor: i64,
    pub reason: String,
    pub idempotency_key: String,
}

/// Release an authorization that will never be captured (the order was cancelled).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CancelRequest {
    pub payment_id: String,
    pub idempotency_key: String,
}

/// Why a provider call did not go through.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Worth retrying: rate limited, the provider's 5xx, the network.
    #[error("transient: {0}")]
    Transient(String),
    /// Final: the provider refused the request itself (its error code and message).
    #[error("{code}: {message}")]
    Rejected { code: String, message: String },
}

/// A payment provider. Calls block (the worker runs on the runtime's threads); each carries
/// an idempotency key, and repeating a call with the same key returns the first answer.
pub trait PaymentProvider: Send {
    /// Its name in the outcome events (`PaymentAuthorized.provider`), e.g. `stripe`.
    fn name(&self) -> &'static str;
    /// Creates and confirms a PaymentIntent with manual capture.
    fn authorize(&self, r: &AuthorizeRequest) -> Result<Authorization, ProviderError>;
    /// Captures an authorized PaymentIntent.
    fn capture(&self, r: &CaptureRequest) -> Result<Captured, ProviderError>;
    /// Creates one transfer to a connected account; returns its id.
    fn transfer(&self, r: &TransferRequest) -> Result<String, ProviderError>;
    /// Reverses part of a transfer; returns the reversal's id.
    fn reverse_transfer(&self, r: &ReversalRequest) -> Result<String, ProviderError>;
    /// Refunds captured money; returns the refund's id.
    fn refund(&self, r: &RefundRequest) -> Result<String, ProviderError>;
    /// Cancels an uncaptured PaymentIntent (the hold on the card is released).
    fn cancel(&self, r: &CancelRequest) -> Result<(), ProviderError>;
}
