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

    // Vendors' accounts and plans. The defaults answer for a provider that only moves money
    // (it says so when asked).

    /// Creates the vendor's Express connected account; returns its id (`acct_…`).
    fn create_account(&self, r: &AccountRequest) -> Result<String, ProviderError> {
        let _ = r;
        Err(unsupported("create connected accounts"))
    }
    /// What a connected account may do now (read, not changed: a repeated onboarding
    /// request reports the account as it is, not as it was created).
    fn account_status(&self, account_id: &str) -> Result<AccountStatus, ProviderError> {
        let _ = account_id;
        Err(unsupported("read connected accounts"))
    }
    /// Makes an onboarding link (`account_onboarding`) for a connected account.
    fn account_link(&self, r: &AccountLinkRequest) -> Result<AccountLink, ProviderError> {
        let _ = r;
        Err(unsupported("make onboarding links"))
    }
    /// Starts, changes (the item's price; proration as Stripe defaults) or cancels (free
    /// plan) the vendor's subscription.
    fn change_plan(&self, r: &PlanRequest) -> Result<Subscription, ProviderError> {
        let _ = r;
        Err(unsupported("manage subscriptions"))
    }
}

// ------------------------------------------------------------------ vendors: Connect, plans

/// Create a vendor's connected account (Stripe Connect, Express), marked with its vendor id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountRequest {
    pub vendor_id: String,
    /// ISO-3166 alpha-2 (the vendor's country).
    pub country: String,
    /// The same vendor always gets the same key, so a repeat returns the first account.
    pub idempotency_key: String,
}

/// What a connected account may do (Stripe's flags of the same names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccountStatus {
    pub charges_enabled: bool,
    pub payouts_enabled: bool,
    pub details_submitted: bool,
}

/// An onboarding link for a connected account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountLinkRequest {
    pub account_id: String,
    /// Where Stripe sends the vendor when the link expired or was used already.
    pub refresh_url: String,
    /// Where Stripe sends the vendor when it leaves the onboarding flow.
    pub return_url: String,
    pub idempotency_key: String,
}

/// The link a vendor follows to onboard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountLink {
    /// Stripe's hosted onboarding page; `None` in test mode (there is nothing to visit).
    pub url: Option<String>,
    /// When the link stops working (ms since the epoch).
    pub expires_at: Option<i64>,
}

/// The subscription a vendor holds now (as the worker remembers it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentSubscription {
    /// `sub_…`.
    pub id: String,
    /// Its one item (`si_…`), whose price is the plan.
    pub item_id: String,
}

/// Start, change or end a vendor's premium plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanRequest {
    pub vendor_id: String,
    /// basic, pro or enterprise.
    pub plan: String,
    /// The plan's monthly Price (`price_…`); `None` for the free plan: the subscription, if
    /// any, is cancelled.
    pub price: Option<String>,
    /// The vendor's Customer, once made (`None`: the provider makes one, idempotently).
    pub customer_id: Option<String>,
    /// The vendor's subscription now: changed in place (its item gets the new price).
    pub current: Option<CurrentSubscription>,
    pub idempotency_key: String,
}

/// What a plan change came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// The vendor's Customer (`cus_…`), when one was needed.
    pub customer_id: Option<String>,
    /// `sub_…`; `None` when the vendor is on the free plan and never subscribed.
    pub id: Option<String>,
    /// The subscription's item (`si_…`), while it is live.
    pub item_id: Option<String>,
    /// Stripe's status (`active`, `incomplete`, `canceled`, …).
    pub status: String,
    /// Start of the current billing period (ms), when the provider says.
    pub period_start: Option<i64>,
}

/// The answer of a provider that does not do vendors' accounts and plans.
fn unsupported(what: &str) -> ProviderError {
    ProviderError::Rejected { code: "unsupported".into(), message: format!("this payment provider does not {what}") }
}
