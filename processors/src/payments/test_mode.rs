//! The **test-mode provider**: no network, no money. It decides every outcome from the
//! payment-method token the checkout carried, with Stripe's own test tokens
//! (<https://docs.stripe.com/testing#cards>), and derives every id from the call's
//! idempotency key — so the same command always gets the same answer and the same ids, as
//! Stripe's idempotency promises. The embedded demo runs on it; `[stripe] secret_key`
//! switches the worker to Stripe itself.

use super::provider::*;

/// A deterministic stand-in for Stripe in test mode (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct TestMode;

/// Stripe's test payment methods that do not succeed: the decline code and message Stripe
/// answers with. Any other `pm_…` token succeeds: Stripe's `pm_card_visa`,
/// `pm_card_mastercard`, … and a shopper's saved payment method (`pm_` and its id).
pub const DECLINES: &[(&str, &str, &str)] = &[
    ("pm_card_chargeDeclined", "generic_decline", "Your card was declined."),
    ("pm_card_visa_chargeDeclined", "generic_decline", "Your card was declined."),
    ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds", "Your card has insufficient funds."),
    ("pm_card_chargeDeclinedFraudulent", "fraudulent", "Your card was declined."),
    ("pm_card_chargeDeclinedExpiredCard", "expired_card", "Your card has expired."),
    ("pm_card_chargeDeclinedIncorrectCvc", "incorrect_cvc", "Your card's security code is incorrect."),
    ("pm_card_chargeDeclinedProcessingError", "processing_error", "An error occurred while processing your card. Try again in a little bit."),
    ("pm_card_authenticationRequired", "authentication_required", "Your card was declined. This transaction requires authentication."),
    ("pm_card_authenticationRequiredChargeDeclinedInsufficientFunds", "authentication_required", "Your card was declined. This transaction requires authentication."),
];

/// The brand Stripe reports for a succeeding test token.
fn brand(token: &str) -> &'static str {
    let t = token.to_ascii_lowercase();
    if t.contains("mastercard") {
        "mastercard"
    } else if t.contains("amex") {
        "amex"
    } else if t.contains("discover") {
        "discover"
    } else {
        "visa"
    }
}

/// An id of kind `prefix` (`pi`, `ch`, `tr`, …) derived from an idempotency key.
fn id(prefix: &str, key: &str) -> String {
    format!("{prefix}_test_{:016x}", crate::ids::fnv1a(0xcbf2_9ce4_8422_2325, 0x1f, &[prefix, key]))
}

impl PaymentProvider for TestMode {
    fn name(&self) -> &'static str {
        "stripe_test_mode"
    }

    fn authorize(&self, r: &AuthorizeRequest) -> Result<Authorization, ProviderError> {
        if r.amount_minor <= 0 {
            return Err(ProviderError::Rejected { code: "parameter_invalid_integer".into(), message: format!("amount must be positive, got {}", r.amount_minor) });
        }
        let token = r.payment_method.as_str();
        if !token.starts_with("pm_") {
            return Err(ProviderError::Rejected { code: "resource_missing".into(), message: format!("No such PaymentMethod: '{token}'") });
        }
        let payment_id = id("pi", &r.idempotency_key);
        if let Some((_, code, message)) = DECLINES.iter().find(|(t, _, _)| *t == token) {
            return Ok(Authorization::Declined { payment_id: Some(payment_id), code: (*code).into(), message: (*message).into() });
        }
        Ok(Authorization::Authorized { payment_id, card_brand: Some(brand(token).into()), card_last4: Some(if brand(token) == "amex" { "8431" } else { "4242" }.into()) })
    }

    fn capture(&self, r: &CaptureRequest) -> Result<Captured, ProviderError> {
        Ok(Captured { charge_id: Some(id("ch", &r.payment_id)), amount_minor: r.amount_minor })
    }

    fn transfer(&self, r: &TransferRequest) -> Result<String, ProviderError> {
        Ok(id("tr", &r.idempotency_key))
    }

    fn reverse_transfer(&self, r: &ReversalRequest) -> Result<String, ProviderError> {
        Ok(id("trr", &r.idempotency_key))
    }

    fn refund(&self, r: &RefundRequest) -> Result<String, ProviderError> {
        Ok(id("re", &r.idempotency_key))
    }

    fn cancel(&self, _r: &CancelRequest) -> Result<(), ProviderError> {
        Ok(())
    }

    /// `acct_test_<vendor>`: the account test mode's transfers already go to.
    fn create_account(&self, r: &AccountRequest) -> Result<String, ProviderError> {
        Ok(format!("acct_test_{}", r.vendor_id))
    }

    /// Nothing was submitted to anyone: every flag is false.
    fn account_status(&self, _account_id: &str) -> Result<AccountStatus, ProviderError> {
        Ok(AccountStatus::default())
    }

    /// No link: there is no Stripe to onboard with in test mode (the API answers
    /// `url: null`, `mode: "test"`), rather than a URL that pretends to be Stripe's.
    fn account_link(&self, _r: &AccountLinkRequest) -> Result<AccountLink, ProviderError> {
        Ok(AccountLink { url: None, expires_at: None })
    }

    /// `cus_test_<vendor>`, `sub_test_<vendor>` and `si_test_<vendor>`, active at once; the
    /// free plan cancels the subscription the vendor holds.
    fn change_plan(&self, r: &PlanRequest) -> Result<Subscription, ProviderError> {
        let customer_id = Some(r.customer_id.clone().unwrap_or_else(|| format!("cus_test_{}", r.vendor_id)));
        if r.price.is_none() {
            let status = if r.current.is_some() { "canceled" } else { "active" };
            return Ok(Subscription { customer_id, id: r.current.as_ref().map(|c| c.id.clone()), item_id: None, status: status.into(), period_start: None });
        }
        let (id, item_id) = match &r.current {
            Some(c) => (c.id.clone(), c.item_id.clone()),
            None => (format!("sub_test_{}", r.vendor_id), format!("si_test_{}", r.vendor_id)),
        };
        Ok(Subscription { customer_id, id: Some(id), item_id: Some(item_id), status: "active".into(), period_start: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(token: &str, key: &str) -> Result<Authorization, ProviderError> {
        TestMode.authorize(&AuthorizeRequest {
            order_id: "o-1".into(),
            customer_id: "c-1".into(),
            amount_minor: 1999,
            currency: "EUR".into(),
            payment_method: token.into(),
            transfer_group: "order_o-1".into(),
            idempotency_key: key.into(),
        })
    }

    #[test]
    fn stripes_test_tokens_decide_the_outcome_and_the_same_key_gives_the_same_ids() {
        let Ok(Authorization::Authorized { payment_id, card_brand, .. }) = auth("pm_card_visa", "k1") else { panic!("visa succeeds") };
        assert_eq!(card_brand.as_deref(), Some("visa"));
        assert!(matches!(auth("pm_card_visa", "k1"), Ok(Authorization::Authorized { payment_id: p, .. }) if p == payment_id));
        assert!(matches!(auth("pm_card_visa", "k2"), Ok(Authorization::Authorized { payment_id: p, .. }) if p != payment_id));
        for (token, code, _) in DECLINES {
            assert!(matches!(auth(token, "k"), Ok(Authorization::Declined { code: c, .. }) if c == *code), "{token}");
        }
    }

    #[test]
    fn a_token_that_is_not_a_payment_method_is_refused_not_declined() {
        assert!(matches!(auth("4242424242424242", "k"), Err(ProviderError::Rejected { code, .. }) if code == "resource_missing"));
        assert!(matches!(auth("tok_visa", "k"), Err(ProviderError::Rejected { .. })), "a card token is not a PaymentMethod");
        assert!(matches!(auth("pm_1a2b3c", "k"), Ok(Authorization::Authorized { .. })), "a saved payment method succeeds");
    }
}
