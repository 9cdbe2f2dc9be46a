//! [`Connect`]: what the API asks of the payment provider for vendors' Connect accounts —
//! create one, read what it may do, make an onboarding link. The api crate does not depend
//! on the processors: the binary implements this over the payments worker's provider and
//! hands it over with [`crate::ApiState::set_connect`]; without one,
//! `GET /v1/vendors/{id}/onboarding` answers 503.
//!
//! Calls block (Stripe's client waits on its own runtime): the handlers make them on tokio's
//! blocking pool.

/// A vendor's connected account as the provider reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// `acct_…`.
    pub account_id: String,
    pub charges_enabled: bool,
    pub payouts_enabled: bool,
    pub details_submitted: bool,
}

/// The link a vendor follows to onboard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnboardingLink {
    /// Stripe's hosted onboarding page; `None` in test mode (there is no Stripe to visit).
    pub url: Option<String>,
    /// When the link stops working (ms since the epoch).
    pub expires_at: Option<i64>,
}

/// Why a provider call did not go through.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// Worth retrying (the provider's 429/5xx, the network): 503.
    #[error("{0}")]
    Unavailable(String),
    /// The provider refused the request (its code and message): logged, 503 to the caller
    /// (it is ours to fix, not theirs).
    #[error("{0}")]
    Refused(String),
}

/// Vendors' Connect accounts at the payment provider.
pub trait Connect: Send + Sync {
    /// `test` (the test-mode provider: no money, no Stripe) or `stripe`.
    fn mode(&self) -> &'static str;
    /// The vendor's connected account with what it may do now: `known` (the account the
    /// read model holds) when there is one, else one created — idempotently: the key is
    /// derived from the vendor id, so a repeat while the read model has not caught up
    /// returns the same account.
    fn account(&self, vendor_id: &str, country: &str, known: Option<&str>) -> Result<Account, ConnectError>;
    /// A fresh onboarding link for `account_id`.
    fn onboarding_link(&self, account_id: &str) -> Result<OnboardingLink, ConnectError>;
}
