//! The API's [`storeflow_api::Connect`] over the payments worker's provider (test mode, or
//! Stripe with `[stripe] secret_key`): vendors' connected accounts and onboarding links.
//!
//! Each call builds the provider afresh from `[processors.payments]` as the worker sees it
//! (cheap: a client and a current-thread runtime), on the API's blocking pool, and drops it
//! there — a Stripe client owns a runtime, which must not be dropped on an async thread.

use storeflow_api::{Account, Connect, ConnectError, OnboardingLink};
use storeflow_processors::payments::{AccountLinkRequest, AccountRequest, PaymentProvider, PaymentsConfig, ProviderError};

/// Connect accounts through the configured payment provider.
pub struct ProviderConnect {
    payments: PaymentsConfig,
    /// Where Stripe sends a vendor whose link expired, and one that left the flow
    /// (`[stripe] onboarding_refresh_url`, `onboarding_return_url`).
    refresh_url: Option<String>,
    return_url: Option<String>,
}

impl ProviderConnect {
    pub fn new(payments: PaymentsConfig, refresh_url: Option<String>, return_url: Option<String>) -> ProviderConnect {
        ProviderConnect { payments, refresh_url, return_url }
    }

    fn provider(&self) -> Result<Box<dyn PaymentProvider>, ConnectError> {
        self.payments.provider().map_err(ConnectError::Refused)
    }
}

fn connect_error(e: ProviderError) -> ConnectError {
    match e {
        ProviderError::Transient(why) => ConnectError::Unavailable(why),
        e @ ProviderError::Rejected { .. } => ConnectError::Refused(e.to_string()),
    }
}

impl Connect for ProviderConnect {
    fn mode(&self) -> &'static str {
        if self.payments.provider == "stripe" { "stripe" } else { "test" }
    }

    fn account(&self, vendor_id: &str, country: &str, known: Option<&str>) -> Result<Account, ConnectError> {
        let provider = self.provider()?;
        let account_id = match known {
            Some(account) => account.to_string(),
            None => {
                // The vendor's key: a repeat (within Stripe's 24 h of idempotency, before the
                // read model holds the account) gets the first account back.
                let request = AccountRequest { vendor_id: vendor_id.into(), country: country.into(), idempotency_key: format!("storeflow-vendor-{vendor_id}-account") };
                provider.create_account(&request).map_err(connect_error)?
            }
        };
        let status = provider.account_status(&account_id).map_err(connect_error)?;
        Ok(Account { account_id, charges_enabled: status.charges_enabled, payouts_enabled: status.payouts_enabled, details_submitted: status.details_submitted })
    }

    fn onboarding_link(&self, account_id: &str) -> Result<OnboardingLink, ConnectError> {
        let provider = self.provider()?;
        let urls = match (&self.refresh_url, &self.return_url) {
            (Some(refresh), Some(ret)) => Some((refresh.clone(), ret.clone())),
            _ if self.mode() == "test" => Some((String::new(), String::new())),
            _ => None,
        };
        let Some((refresh_url, return_url)) = urls else {
            return Err(ConnectError::Refused("[stripe] onboarding_refresh_url and onboarding_return_url are needed for onboarding links".into()));
        };
        let request = AccountLinkRequest { account_id: account_id.into(), refresh_url, return_url, idempotency_key: format!("storeflow-link-{account_id}-{}", uuid::Uuid::new_v4()) };
        let link = provider.account_link(&request).map_err(connect_error)?;
        Ok(OnboardingLink { url: link.url, expires_at: link.expires_at })
    }
}
