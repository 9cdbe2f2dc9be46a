//! payments — the worker at the edge that moves money: the one processor with an effect.
//!
//! The order saga stays pure: it *asks* for money on `payments.commands`
//! ([`PaymentRequested`] at checkout, [`CaptureRequested`] when the order ships,
//! [`RefundRequested`] when a return is received or an authorized order is cancelled).
//! This worker reads those, calls the [`PaymentProvider`] and publishes what happened on
//! `storefront.payments` — `PaymentAuthorized`, `PaymentFailed` (with the decline code),
//! `PaymentCaptured`, one `VendorTransferCreated` per vendor, `RefundIssued` and
//! `VendorTransferReversed` — which the saga, the sales processor and the sinks read like
//! any payment provider's report.
//!
//! It runs on the processor runtime for its guarantee: a command's offset commits only with
//! its outcome events (a Kafka transaction, or the embedded log's journal). The call itself
//! cannot be rolled back, so every call carries an idempotency key derived from the command's
//! event id ([`idempotency_key`]) — a command redelivered after a crash, or replayed from the
//! log, repeats the same call with the same key, and the provider answers as the first time.
//! Its state (per order: the payment, each capture — one per shipment — and the vendors'
//! transfers it paid for) makes a second command about the same money a no-op.
//!
//! Money (Connect, separate charges and transfers): one PaymentIntent per order in the order's
//! currency, manual capture, captured shipment by shipment (the last capture releases the
//! rest); on each capture, each vendor of the shipment gets its lines minus the marketplace's
//! commission ([`crate::sales::commission_minor`], the plan in force when the order was
//! placed, computed again over the vendor's lines captured so far); shipping and tax stay
//! with the platform. A refund's vendor share reverses that vendor's transfers (in proportion
//! to what is left of each) by the share minus the commission given back, so for every order and
//! vendor: lines captured = transferred − reversed + commission kept + refunded
//! (docs/PAYMENTS.md has the arithmetic).
//!
//! Vendors' plans: a `PlanChangeRequested` (the API's `POST /v1/vendors/{id}/plan`, keyed by
//! vendor) starts, changes or cancels the vendor's subscription ([`PaymentProvider::change_plan`],
//! the command's idempotency key; per vendor in [`SUBSCRIPTIONS`]) and is answered with
//! `VendorPlanChanged` on `storefront.catalog`. The catalog is a global input: `VendorOnboarded`,
//! `VendorPlanChanged` (from here or from Stripe's webhooks) and `VendorAccountUpdated` keep
//! each vendor's plan history ([`crate::sales::PlanHistory`], the one rule of "the plan in
//! force at t" the sales figures use too) and its connected account.
//!
//! Failures: a declined card or one needing authentication is an outcome (`PaymentFailed`);
//! 429, 5xx and network errors are [`ProcessError::Transient`] (the runtime retries the same
//! command with back-off and holds its offset); a request the provider refuses for good goes
//! to the DLQ with the provider's code — an authorization refused that way also fails the
//! payment, so its order does not wait for the saga's timeout.

pub mod provider;
#[cfg(feature = "stripe")]
pub mod stripe;
pub mod test_mode;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use storeflow_avro::pii::{self, Opened, Vault};
use storeflow_avro::{
    CaptureRequested, Event, PaymentAuthorized, PaymentCaptured, PaymentFailed, PaymentRequested, PlanChangeRequested, RefundIssued, RefundRequested,
    Timestamp, Topic, VendorPlanChanged, VendorTransferCreated, VendorTransferReversed,
};

pub use self::provider::*;
pub use self::test_mode::TestMode;
use crate::sales::{PlanHistory, commission_minor, split_proportionally};
use crate::state::encoding::added_at_end;
use crate::{Ctx, Flow, Input, ProcessError, Processor, Store};

/// What the worker knows of each order's money, by order id.
pub const PAYMENTS: Store<PaymentState> = Store::new("payments");

/// Each vendor's subscription as the worker made it, by vendor id.
pub const SUBSCRIPTIONS: Store<VendorSubscription> = Store::new("subscriptions");

/// One vendor's premium plan at the provider.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorSubscription {
    /// The vendor's Customer (`cus_…`), once made.
    pub customer_id: Option<String>,
    /// The subscription (`sub_…`) while it lives.
    pub subscription_id: Option<String>,
    /// Its item, whose price is the plan.
    pub item_id: Option<String>,
    /// The plan last asked for, and the provider's status of it.
    pub plan: Option<String>,
    pub status: String,
    /// The event id of the last command answered (a redelivered one changes nothing).
    pub last_command: Option<String>,
}

/// One order's money as the worker moved it. Stored with postcard, which reads fields by
/// position: fields are only ever added at the end ([`added_at_end`]), so a record written
/// by an older build still reads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentState {
    pub payment_id: Option<String>,
    pub currency: String,
    pub authorized_minor: i64,
    /// The authorization was declined (a later request for the order is not retried).
    pub declined: bool,
    /// Captured so far, over every capture.
    pub captured_minor: i64,
    /// The charge of the latest capture (a PaymentIntent's captures share one).
    pub charge_id: Option<String>,
    /// What was left of the authorization was released (nothing captured, or a refund that
    /// ended a payment captured in part).
    pub released: bool,
    pub refunded_minor: i64,
    /// Each vendor's payout over every capture, by vendor id.
    pub vendors: BTreeMap<String, Payout>,
    /// Each capture made, in order, with the transfers it paid for. A record written before
    /// partial captures has none here: its one capture is read back by [`PaymentState::upgraded`].
    #[serde(default, deserialize_with = "added_at_end")]
    pub captures: Vec<CaptureMade>,
}

/// One vendor's payout from one order, over all its captures.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payout {
    /// The vendor's first transfer, once made (none while the vendor has no connected
    /// account); every transfer is in [`CaptureMade::transfers`].
    pub transfer_id: Option<String>,
    /// The vendor's lines captured.
    pub gross_minor: i64,
    /// The commission rate of its plan when the order was placed.
    pub bps: i64,
    /// Commission kept now (less what refunds gave back).
    pub commission_minor: i64,
    /// Refunded of its lines so far.
    pub refunded_minor: i64,
    /// Transferred (net of reversals) so far.
    pub transferred_minor: i64,
}

/// One capture: a shipment's share of the order, or the whole order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureMade {
    /// The event id of the command that asked for it (empty for a capture read back from a
    /// record older than partial captures).
    pub command_id: String,
    /// The shipment it paid for; `None`: the whole order.
    pub shipment_id: Option<String>,
    /// What the provider took.
    pub amount_minor: i64,
    /// The order's last capture: the provider released what stayed uncaptured.
    pub final_capture: bool,
    /// The vendors' transfers it paid for, in vendor order.
    pub transfers: Vec<TransferMade>,
}

/// One transfer to a vendor from one capture.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferMade {
    pub vendor_id: String,
    pub transfer_id: String,
    /// Transferred, less what refunds reversed from it.
    pub amount_minor: i64,
}

impl PaymentState {
    /// The record with its captures listed: one written before partial captures knew its
    /// one capture only as `captured_minor` and each vendor's `Payout::transfer_id`, and
    /// reads as one final capture of the whole order.
    pub fn upgraded(mut self) -> PaymentState {
        if self.captures.is_empty() && self.captured_minor > 0 {
            let transfers = self
                .vendors
                .iter()
                .filter_map(|(v, p)| Some(TransferMade { vendor_id: v.clone(), transfer_id: p.transfer_id.clone()?, amount_minor: p.transferred_minor }))
                .collect();
            self.captures.push(CaptureMade { command_id: String::new(), shipment_id: None, amount_minor: self.captured_minor, final_capture: true, transfers });
        }
        self
    }

    /// True once no capture can follow: the order was captured whole or its last capture
    /// was made, or what was left was released.
    fn capture_closed(&self) -> bool {
        self.released || self.captures.iter().any(|m| m.final_capture || m.shipment_id.is_none())
    }
}

/// `[processors.payments]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentsConfig {
    /// `test` (the test-mode provider, [`TestMode`]) or `stripe`.
    pub provider: String,
    /// Stripe's secret key (`sk_test_…`/`sk_live_…`), for `provider = "stripe"`; the binary
    /// fills it from `[stripe] secret_key`.
    pub stripe_secret_key: Option<String>,
    /// Stripe's API base (stripe-mock's address in tests); the binary fills it from
    /// `[stripe] api_base`.
    pub stripe_api_base: Option<String>,
    /// Commission per vendor plan, in basis points; the binary fills it from
    /// `[processors.sales] commission_bps`, so the transfers and the sales figures agree.
    pub commission_bps: BTreeMap<String, i64>,
    /// Plan of a vendor not (yet) onboarded; from `[processors.sales] default_plan`. It is
    /// the free plan: choosing it cancels the vendor's subscription.
    pub default_plan: String,
    /// The monthly Stripe Price (`price_…`) of each paid plan; the binary fills it from
    /// `[stripe] plan_prices`. With `provider = "stripe"` every plan of `commission_bps`
    /// but `default_plan` needs one.
    pub plan_prices: BTreeMap<String, String>,
    /// The personal-data vault (the checkout's payment-method token arrives sealed per
    /// customer, docs/SECURITY.md); the binary fills it with `<data_dir>/keys`. Without it
    /// the worker cannot read sealed tokens and leaves those payments to the webhooks.
    pub vault_dir: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for PaymentsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentsConfig")
            .field("provider", &self.provider)
            .field("stripe_secret_key", &self.stripe_secret_key.as_ref().map(|_| "[redacted]"))
            .field("stripe_api_base", &self.stripe_api_base)
            .field("commission_bps", &self.commission_bps)
            .field("default_plan", &self.default_plan)
            .field("plan_prices", &self.plan_prices)
            .field("vault_dir", &self.vault_dir)
            .finish()
    }
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        let sales = crate::sales::SalesConfig::default();
        PaymentsConfig { provider: "test".into(), stripe_secret_key: None, stripe_api_base: None, commission_bps: sales.commission_bps, default_plan: sales.default_plan, plan_prices: BTreeMap::new(), vault_dir: None }
    }
}

impl PaymentsConfig {
    /// The provider this configuration names, or why there is none.
    pub fn provider(&self) -> Result<Box<dyn PaymentProvider>, String> {
        match self.provider.as_str() {
            "test" => Ok(Box::new(TestMode)),
            #[cfg(feature = "stripe")]
            "stripe" => {
                let key = self.stripe_secret_key.as_deref().filter(|k| !k.is_empty()).ok_or("[processors.payments] provider = \"stripe\" needs [stripe] secret_key (STOREFLOW__STRIPE__SECRET_KEY)")?;
                self.validate_plan_prices()?;
                Ok(Box::new(stripe::Stripe::new(key, self.stripe_api_base.as_deref())?))
            }
            #[cfg(not(feature = "stripe"))]
            "stripe" => Err("[processors.payments] provider = \"stripe\": this storeflow was built without the `stripe` feature".into()),
            other => Err(format!("[processors.payments] provider = {other:?}: expected \"test\" or \"stripe\"")),
        }
    }
}

impl PaymentsConfig {
    /// Every paid plan (a commission rate, not the free `default_plan`) has a Stripe Price.
    pub fn validate_plan_prices(&self) -> Result<(), String> {
        for plan in self.commission_bps.keys().filter(|p| **p != self.default_plan) {
            if self.plan_prices.get(plan).is_none_or(|p| p.trim().is_empty()) {
                return Err(format!(
                    "[stripe] plan_prices.{plan} is missing: the plan {plan:?} has a commission rate ([processors.sales] commission_bps) and needs its monthly Stripe Price (price_…) to be subscribed to"
                ));
            }
        }
        Ok(())
    }

    /// The Price a vendor on `plan` subscribes to: `None` for the free plan; in test mode a
    /// made-up one when none is configured.
    fn price_of(&self, plan: &str) -> Result<Option<String>, String> {
        if plan == self.default_plan {
            return Ok(None);
        }
        match self.plan_prices.get(plan) {
            Some(p) => Ok(Some(p.clone())),
            None if self.provider == "test" => Ok(Some(format!("price_test_{plan}"))),
            None => Err(format!("the plan {plan:?} has no [stripe] plan_prices.{plan}")),
        }
    }
}

/// The idempotency key of the provider call `op` made for the command `event_id`: the same
/// command always makes its calls with the same keys.
pub fn idempotency_key(event_id: &str, op: &str) -> String {
    format!("storeflow-{event_id}-{op}")
}

/// The payments worker.
pub struct Payments {
    config: PaymentsConfig,
    provider: Box<dyn PaymentProvider>,
    /// Each vendor's plans by when they took effect, and its connected account (from the
    /// catalog, a global input: rebuilt at every start).
    vendors: BTreeMap<String, VendorKnown>,
    /// Opens the checkout's sealed payment-method token.
    vault: Option<Vault>,
}

impl Payments {
    /// A worker on `provider` (tests pass a provider of their own).
    pub fn with_provider(config: PaymentsConfig, provider: Box<dyn PaymentProvider>) -> Self {
        let vault = config.vault_dir.as_deref().map(|d| Vault::load(d).unwrap_or_else(|e| panic!("opening the personal-data vault in {}: {e}", d.display())));
        Payments { config, provider, vendors: BTreeMap::new(), vault }
    }

    /// The vendor's plan in force at `at` ([`PlanHistory::at`]) and its connected account
    /// (the latest known: a payout goes to the account the vendor has when it is paid).
    fn vendor_at(&self, vendor: &str, at: i64) -> (String, Option<String>) {
        let Some(known) = self.vendors.get(vendor) else { return (self.config.default_plan.clone(), None) };
        let plan = known.plans.at(at).unwrap_or(self.config.default_plan.as_str()).to_string();
        (plan, known.account.clone())
    }

    /// Starts, changes or ends the vendor's subscription as `p` asks, and says so with a
    /// `VendorPlanChanged`.
    fn change_plan(&self, p: &PlanChangeRequested, ctx: &mut Ctx<'_, Event>) -> Result<(), ProcessError> {
        let mut sub = ctx.get(SUBSCRIPTIONS, &p.vendor_id)?.unwrap_or_default();
        if sub.last_command.as_deref() == Some(p.event_id.as_str()) {
            return Ok(()); // asked before: answered before
        }
        if !self.config.commission_bps.contains_key(&p.plan) {
            let known: Vec<&str> = self.config.commission_bps.keys().map(String::as_str).collect();
            return Err(ProcessError::permanent(format!("plan change for vendor {}: unknown plan {:?} (known: {})", p.vendor_id, p.plan, known.join(", "))));
        }
        let price = self.config.price_of(&p.plan).map_err(|why| ProcessError::permanent(format!("plan change for vendor {}: {why}", p.vendor_id)))?;
        let current = match (&sub.subscription_id, &sub.item_id) {
            (Some(id), Some(item_id)) => Some(CurrentSubscription { id: id.clone(), item_id: item_id.clone() }),
            _ => None,
        };
        let request = PlanRequest {
            vendor_id: p.vendor_id.clone(),
            plan: p.plan.clone(),
            price,
            customer_id: sub.customer_id.clone(),
            current,
            idempotency_key: idempotency_key(&p.event_id, "plan"),
        };
        let s = self.provider.change_plan(&request).map_err(|e| match e {
            ProviderError::Transient(why) => ProcessError::Transient(format!("changing vendor {}'s plan: {why}", p.vendor_id)),
            ProviderError::Rejected { code, message } => ProcessError::permanent(format!("the provider refused vendor {}'s plan {}: {code}: {message}", p.vendor_id, p.plan)),
        })?;
        let live = s.status != "canceled";
        sub.customer_id = s.customer_id.clone().or(sub.customer_id);
        sub.subscription_id = if live { s.id.clone() } else { None };
        sub.item_id = if live { s.item_id.clone() } else { None };
        sub.plan = Some(p.plan.clone());
        sub.status = s.status.clone();
        sub.last_command = Some(p.event_id.clone());
        let t = ctx.time();
        // From the billing period's start when the provider's period began after the request
        // (a new subscription); a change within a running period counts from the request.
        let effective_at = s.period_start.map_or(p.occurred_at.millis(), |start| start.max(p.occurred_at.millis()));
        ctx.emit(Event::VendorPlanChanged(VendorPlanChanged {
            event_id: ctx.event_id(&["plan", &p.vendor_id, &p.event_id]),
            occurred_at: Timestamp(t),
            vendor_id: p.vendor_id.clone(),
            plan: p.plan.clone(),
            subscription_id: s.id,
            status: s.status,
            effective_at: Timestamp(effective_at),
        }));
        ctx.put(SUBSCRIPTIONS, &p.vendor_id, &sub)
    }

    /// The account a vendor's transfers go to: its connected account; in test mode one
    /// named after the vendor when it has none.
    fn destination(&self, vendor: &str, account: Option<String>) -> Option<String> {
        account.or_else(|| (self.config.provider == "test").then(|| format!("acct_test_{vendor}")))
    }

    fn authorize(&self, r: &PaymentRequested, st: &mut PaymentState, ctx: &mut Ctx<'_, Event>) -> Result<(), ProcessError> {
        if st.payment_id.is_some() || st.declined {
            return Ok(()); // asked before: answered before
        }
        let token = match (&self.vault, pii::is_sealed(&r.payment_method_token)) {
            (_, false) => r.payment_method_token.clone(),
            (None, true) => {
                tracing::warn!(order = %r.order_id, "the payment method is sealed and the worker has no vault ([processors.payments] vault_dir): left to the webhooks");
                return Ok(());
            }
            (Some(vault), true) => match vault.open(&r.payment_method_token).map_err(|e| ProcessError::Transient(format!("reading the vault: {e}")))? {
                Opened::Clear(t) => t,
                Opened::Plain(t) => t.to_string(),
                Opened::Erased => {
                    st.declined = true;
                    let why = "The customer's data was erased before the payment was made.";
                    payment_failed(ctx, r, None, "payment_method_erased".into(), why.into());
                    return Ok(());
                }
            },
        };
        if !token.starts_with("pm_") {
            // Not a payment method to charge (a PaymentIntent the storefront confirmed
            // itself): its outcome comes through Stripe's webhooks.
            return Ok(());
        }
        let request = AuthorizeRequest {
            order_id: r.order_id.clone(),
            customer_id: r.customer_id.clone(),
            amount_minor: r.amount_minor,
            currency: r.currency.clone(),
            payment_method: token,
            transfer_group: transfer_group(&r.order_id),
            idempotency_key: idempotency_key(&r.event_id, "authorize"),
        };
        let t = ctx.time();
        match self.provider.authorize(&request) {
            Ok(Authorization::Authorized { payment_id, card_brand, card_last4 }) => {
                st.payment_id = Some(payment_id.clone());
                st.currency = r.currency.clone();
                st.authorized_minor = r.amount_minor;
                ctx.emit(Event::PaymentAuthorized(PaymentAuthorized {
                    event_id: ctx.event_id(&["authorized", &r.order_id, &payment_id]),
                    occurred_at: Timestamp(t),
                    order_id: r.order_id.clone(),
                    payment_id,
                    amount_minor: r.amount_minor,
                    currency: r.currency.clone(),
                    provider: self.provider.name().to_string(),
                    card_brand,
                    card_last4,
                }));
            }
            Ok(Authorization::Declined { payment_id, code, message }) => {
                st.declined = true;
                payment_failed(ctx, r, payment_id, code, message);
            }
            Err(ProviderError::Transient(why)) => return Err(ProcessError::Transient(format!("authorizing order {}: {why}", r.order_id))),
            Err(ProviderError::Rejected { code, message }) => {
                // The request itself is wrong (an invalid amount, or a payment method Stripe does not know): the command
                // goes to the DLQ with the provider's code, and the payment fails now.
                st.declined = true;
                let reason = format!("{} refused to authorize order {}: {code}: {message}", self.provider.name(), r.order_id);
                ctx.dead_letter(Topic::PaymentCommands.name(), &r.order_id, Event::PaymentRequested(r.clone()), &reason);
                payment_failed(ctx, r, None, code, message);
            }
        }
        Ok(())
    }

    /// Captures one shipment's share of the order (or the whole order) and pays each vendor
    /// its lines in it less commission. The commission is computed again on the vendor's lines
    /// over every capture so far, less what earlier captures kept, so however the order ships
    /// a vendor keeps `lines − commission(lines)` in all.
    fn capture(&self, c: &CaptureRequested, st: &mut PaymentState, ctx: &mut Ctx<'_, Event>) -> Result<(), ProcessError> {
        let shipment = c.shipment_id.as_deref();
        if st.captures.iter().any(|m| m.command_id == c.event_id || (shipment.is_some() && m.shipment_id.as_deref() == shipment)) {
            return Ok(()); // this command, or this shipment's capture, was made already
        }
        if st.released {
            return Err(ProcessError::permanent(format!("capture of order {}: its authorization was released", c.order_id)));
        }
        if st.capture_closed() {
            return Ok(()); // captured whole, or the last capture was made
        }
        let payment_id = st.payment_id.clone().unwrap_or_else(|| c.payment_id.clone());
        // Never more than what is left of the authorization, when the worker made it (one
        // authorized through the webhooks is known to the saga alone).
        let left = if st.authorized_minor > 0 { st.authorized_minor - st.captured_minor } else { c.amount_minor };
        let amount = c.amount_minor.clamp(0, left.max(0));
        let t = ctx.time();
        let mut received = 0;
        if amount > 0 {
            let captured = self
                .provider
                .capture(&CaptureRequest {
                    payment_id: payment_id.clone(),
                    amount_minor: amount,
                    final_capture: c.final_capture,
                    idempotency_key: idempotency_key(&c.event_id, "capture"),
                })
                .map_err(|e| provider_error(&e, "capturing", &c.order_id))?;
            // What the provider says it received; a provider that reports nothing (stripe-mock
            // answers 0) captured what was asked.
            received = if captured.amount_minor > 0 { captured.amount_minor } else { amount };
            st.charge_id = captured.charge_id.or(st.charge_id.take());
            ctx.emit(Event::PaymentCaptured(PaymentCaptured {
                event_id: ctx.event_id(&with_shipment(&["captured", &c.order_id, &payment_id], shipment)),
                occurred_at: Timestamp(t),
                order_id: c.order_id.clone(),
                payment_id: payment_id.clone(),
                amount_minor: received,
                currency: c.currency.clone(),
            }));
        }
        st.payment_id = Some(payment_id.clone());
        st.currency = c.currency.clone();
        st.captured_minor += received;
        let mut made = CaptureMade { command_id: c.event_id.clone(), shipment_id: c.shipment_id.clone(), amount_minor: received, final_capture: c.final_capture, transfers: Vec::new() };
        // Stripe's multicapture does not fund transfers from the charge (`source_transaction`,
        // https://docs.stripe.com/payments/multicapture#availability): a shipment's transfers
        // come from the platform's balance; a capture of the whole order names its charge.
        let source_charge = if shipment.is_none() { st.charge_id.clone() } else { None };
        let mut gross: BTreeMap<&str, i64> = BTreeMap::new();
        for v in &c.vendors {
            *gross.entry(v.vendor_id.as_str()).or_default() += v.amount_minor;
        }
        for (vendor, gross) in gross {
            let (plan, account) = self.vendor_at(vendor, c.placed_at.millis());
            let p = st.vendors.entry(vendor.to_string()).or_insert_with(|| Payout { bps: self.config.commission_bps.get(&plan).copied().unwrap_or(0), ..Payout::default() });
            let commission = commission_minor(p.gross_minor + gross - p.refunded_minor, p.bps) - p.commission_minor;
            let net = gross - commission;
            p.gross_minor += gross;
            p.commission_minor += commission;
            match self.destination(vendor, account) {
                Some(destination) if net > 0 => {
                    let transfer_id = self
                        .provider
                        .transfer(&TransferRequest {
                            order_id: c.order_id.clone(),
                            vendor_id: vendor.to_string(),
                            destination: destination.clone(),
                            amount_minor: net,
                            currency: c.currency.clone(),
                            transfer_group: transfer_group(&c.order_id),
                            source_charge: source_charge.clone(),
                            idempotency_key: idempotency_key(&c.event_id, &format!("transfer-{vendor}")),
                        })
                        .map_err(|e| provider_error(&e, &format!("transferring to vendor {vendor} for"), &c.order_id))?;
                    p.transfer_id.get_or_insert_with(|| transfer_id.clone());
                    p.transferred_minor += net;
                    made.transfers.push(TransferMade { vendor_id: vendor.to_string(), transfer_id: transfer_id.clone(), amount_minor: net });
                    ctx.emit(Event::VendorTransferCreated(VendorTransferCreated {
                        event_id: ctx.event_id(&with_shipment(&["transfer", &c.order_id, vendor], shipment)),
                        occurred_at: Timestamp(t),
                        order_id: c.order_id.clone(),
                        payment_id: payment_id.clone(),
                        vendor_id: vendor.to_string(),
                        transfer_id,
                        destination,
                        gross_minor: gross,
                        commission_minor: commission,
                        amount_minor: net,
                        currency: c.currency.clone(),
                    }));
                }
                Some(_) => {}
                None => tracing::warn!(order = %c.order_id, vendor, "vendor has no connected account: its payout stays with the platform until it onboards"),
            }
        }
        st.captures.push(made);
        Ok(())
    }

    fn refund(&self, r: &RefundRequested, st: &mut PaymentState, ctx: &mut Ctx<'_, Event>) -> Result<(), ProcessError> {
        let t = ctx.time();
        let Some(payment_id) = st.payment_id.clone().or_else(|| (!r.payment_id.is_empty()).then(|| r.payment_id.clone())) else {
            return Err(ProcessError::permanent(format!("refund for order {}: it has no payment", r.order_id)));
        };
        if st.captured_minor == 0 {
            // Nothing was captured: release the authorization (announced as a refund of what
            // was authorized, as the dashboards count it).
            if st.released {
                return Ok(());
            }
            self.provider
                .cancel(&CancelRequest { payment_id: payment_id.clone(), idempotency_key: idempotency_key(&r.event_id, "cancel") })
                .map_err(|e| provider_error(&e, "releasing the authorization of", &r.order_id))?;
            st.released = true;
            st.refunded_minor = r.amount_minor;
            ctx.emit(Event::RefundIssued(RefundIssued {
                event_id: ctx.event_id(&["released", &r.order_id, &payment_id]),
                occurred_at: Timestamp(t),
                order_id: r.order_id.clone(),
                payment_id: payment_id.clone(),
                refund_id: payment_id,
                amount_minor: r.amount_minor,
                currency: r.currency.clone(),
                reason: r.reason.clone(),
                lines: r.lines.clone(),
            }));
            return Ok(());
        }
        let amount = r.amount_minor.min(st.captured_minor - st.refunded_minor);
        if amount <= 0 {
            return Ok(()); // refunded in full already
        }
        let refund_id = self
            .provider
            .refund(&RefundRequest { payment_id: payment_id.clone(), amount_minor: amount, reason: r.reason.clone(), idempotency_key: idempotency_key(&r.event_id, "refund") })
            .map_err(|e| provider_error(&e, "refunding", &r.order_id))?;
        st.refunded_minor += amount;
        ctx.emit(Event::RefundIssued(RefundIssued {
            event_id: ctx.event_id(&["refund", &r.order_id, &refund_id]),
            occurred_at: Timestamp(t),
            order_id: r.order_id.clone(),
            payment_id: payment_id.clone(),
            refund_id: refund_id.clone(),
            amount_minor: amount,
            currency: r.currency.clone(),
            reason: r.reason.clone(),
            lines: r.lines.clone(),
        }));
        // Each vendor's share: its lines in the refund, or, without lines, the refund split
        // over the vendors' lines in proportion.
        let mut shares: BTreeMap<String, i64> = BTreeMap::new();
        if r.lines.is_empty() {
            let weights: BTreeMap<String, i64> = st.vendors.iter().map(|(v, p)| (v.clone(), p.gross_minor)).collect();
            let lines_total: i64 = weights.values().sum();
            shares = split_proportionally(amount.min(lines_total), &weights);
        } else {
            for l in &r.lines {
                *shares.entry(l.vendor_id.clone()).or_default() += l.amount_minor;
            }
        }
        for (vendor, share) in shares {
            let Some(p) = st.vendors.get_mut(&vendor) else { continue };
            let share = share.clamp(0, p.gross_minor - p.refunded_minor);
            if share == 0 {
                continue;
            }
            p.refunded_minor += share;
            let commission = commission_minor(p.gross_minor - p.refunded_minor, p.bps);
            let given_back = p.commission_minor - commission;
            p.commission_minor = commission;
            let reverse = (share - given_back).min(p.transferred_minor);
            if reverse <= 0 {
                continue;
            }
            // The vendor's transfers, in the order made, by what is left of each.
            let mut transfers: Vec<&mut TransferMade> = st.captures.iter_mut().flat_map(|m| m.transfers.iter_mut()).filter(|x| x.vendor_id == vendor).collect();
            for (n, part) in reversal_parts(&transfers, share, given_back, reverse) {
                let transfer_id = transfers[n].transfer_id.clone();
                // The vendor's first transfer keeps the key and event id it had when a vendor
                // had one transfer per order.
                let nth = if n == 0 { String::new() } else { format!("-{transfer_id}") };
                let reversal_id = self
                    .provider
                    .reverse_transfer(&ReversalRequest {
                        transfer_id: transfer_id.clone(),
                        amount_minor: part.reversed,
                        idempotency_key: idempotency_key(&r.event_id, &format!("reverse-{vendor}{nth}")),
                    })
                    .map_err(|e| provider_error(&e, &format!("reversing vendor {vendor}'s transfer for"), &r.order_id))?;
                let mut id_parts = vec!["reversal", r.order_id.as_str(), vendor.as_str(), refund_id.as_str()];
                if n > 0 {
                    id_parts.push(transfer_id.as_str());
                }
                ctx.emit(Event::VendorTransferReversed(VendorTransferReversed {
                    event_id: ctx.event_id(&id_parts),
                    occurred_at: Timestamp(t),
                    order_id: r.order_id.clone(),
                    vendor_id: vendor.clone(),
                    transfer_id: transfer_id.clone(),
                    reversal_id,
                    refund_id: refund_id.clone(),
                    refunded_minor: part.refunded,
                    commission_minor: part.given_back,
                    amount_minor: part.reversed,
                    currency: r.currency.clone(),
                }));
                transfers[n].amount_minor -= part.reversed;
                p.transferred_minor -= part.reversed;
            }
        }
        if !st.capture_closed() {
            // A refund of a payment captured in part (an order cancelled between its
            // shipments' captures) ends it: what was never captured is released too.
            self.provider
                .cancel(&CancelRequest { payment_id: payment_id.clone(), idempotency_key: idempotency_key(&r.event_id, "cancel") })
                .map_err(|e| provider_error(&e, "releasing the rest of the authorization of", &r.order_id))?;
            st.released = true;
        }
        Ok(())
    }
}

/// What the worker knows of a vendor from the catalog.
#[derive(Clone, Debug, Default)]
struct VendorKnown {
    plans: PlanHistory,
    account: Option<String>,
}

/// One transfer's part of a vendor's refund share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ReversalPart {
    refunded: i64,
    given_back: i64,
    reversed: i64,
}

/// A vendor's refund share over its transfers (in the order made): `reverse` split in
/// proportion to what is left of each ([`split_proportionally`], the remainder to the larger
/// fractions, ties to the earlier transfer), then the commission given back and any part
/// that could not be reversed over those reversals the same way, so each reversal says
/// refunded = commission given back + reversed and the parts add up to the share exactly.
/// By the transfer's position; transfers with nothing to reverse are left out.
fn reversal_parts(transfers: &[&mut TransferMade], share: i64, given_back: i64, reverse: i64) -> Vec<(usize, ReversalPart)> {
    let key = |n: usize| format!("{n:06}");
    let left: BTreeMap<String, i64> = transfers.iter().enumerate().map(|(n, x)| (key(n), x.amount_minor.max(0))).collect();
    let reversed: BTreeMap<String, i64> = split_proportionally(reverse, &left).into_iter().filter(|(_, a)| *a > 0).collect();
    let given = split_proportionally(given_back, &reversed);
    let rest = split_proportionally(share - given_back - reverse, &reversed);
    (0..transfers.len())
        .filter_map(|n| {
            let k = key(n);
            let reversed = *reversed.get(&k)?;
            let given_back = given.get(&k).copied().unwrap_or(0);
            Some((n, ReversalPart { refunded: reversed + given_back + rest.get(&k).copied().unwrap_or(0), given_back, reversed }))
        })
        .collect()
}

/// `parts`, and the shipment when the command names one: a whole-order capture's event ids
/// are the ones they were before partial captures.
fn with_shipment<'a>(parts: &[&'a str], shipment: Option<&'a str>) -> Vec<&'a str> {
    parts.iter().copied().chain(shipment).collect()
}

/// Says that the payment `r` asked for failed, with the provider's (or our) code.
fn payment_failed(ctx: &mut Ctx<'_, Event>, r: &PaymentRequested, payment_id: Option<String>, code: String, message: String) {
    let t = ctx.time();
    ctx.emit(Event::PaymentFailed(PaymentFailed {
        event_id: ctx.event_id(&["failed", &r.order_id, &code]),
        occurred_at: Timestamp(t),
        order_id: r.order_id.clone(),
        payment_id,
        amount_minor: r.amount_minor,
        currency: r.currency.clone(),
        failure_code: code,
        failure_message: message,
    }));
}

/// Stripe's `transfer_group` of an order: its charge and its vendors' transfers.
pub fn transfer_group(order_id: &str) -> String {
    format!("order_{order_id}")
}

fn provider_error(e: &ProviderError, doing: &str, order_id: &str) -> ProcessError {
    match e {
        ProviderError::Transient(why) => ProcessError::Transient(format!("{doing} order {order_id}: {why}")),
        ProviderError::Rejected { code, message } => ProcessError::permanent(format!("the provider refused {doing} order {order_id}: {code}: {message}")),
    }
}

impl Processor for Payments {
    const NAME: &'static str = "payments";
    type Config = PaymentsConfig;
    type In = Event;
    type Out = Event;

    fn new(config: PaymentsConfig) -> Self {
        let provider = config.provider().unwrap_or_else(|e| panic!("{e}"));
        Payments::with_provider(config, provider)
    }

    fn flow(&self) -> Flow {
        // The outcomes close the orders ⇄ payments cycle: a feedback edge, as inventory's
        // answers are (the saga hears of a payment `lookahead` after the worker made it).
        // Plan changes are answered on the catalog (VendorPlanChanged, read by sales), on a
        // feedback edge as well: sales' vendor stage may then run `lookahead` ahead of the
        // worker instead of in lockstep (its plan history goes by `effective_at`, not by
        // the record's time).
        Flow::new().group(&[Topic::PaymentCommands.name()]).feeds_back(&[Topic::Payments.name(), Topic::Catalog.name()]).build()
    }

    fn global_inputs(&self) -> Vec<String> {
        vec![Topic::Catalog.name().to_string()]
    }

    fn on_global(&mut self, input: &Input<Event>) {
        match &input.value {
            Event::VendorOnboarded(v) => {
                let known = self.vendors.entry(v.vendor_id.clone()).or_default();
                known.plans.record(v.occurred_at.millis(), &v.plan);
                if v.stripe_account_id.is_some() {
                    known.account = v.stripe_account_id.clone();
                }
            }
            Event::VendorPlanChanged(c) => {
                let plan = crate::sales::plan_in_force(c, &self.config.default_plan);
                self.vendors.entry(c.vendor_id.clone()).or_default().plans.record(c.effective_at.millis(), &plan);
            }
            Event::VendorAccountUpdated(a) => {
                self.vendors.entry(a.vendor_id.clone()).or_default().account = Some(a.account_id.clone());
            }
            _ => {}
        }
    }

    fn stores(&self) -> &'static [&'static str] {
        &[PAYMENTS.name, SUBSCRIPTIONS.name]
    }

    fn process(&mut self, input: &Input<Event>, ctx: &mut Ctx<'_, Event>) -> Result<(), ProcessError> {
        // Keyed by vendor, not by order.
        if let Event::PlanChangeRequested(p) = &input.value {
            return self.change_plan(p, ctx);
        }
        let Some(order_id) = input.value.order_id() else {
            return Err(ProcessError::permanent(format!("payments does not handle {}", input.value.name())));
        };
        let order_id = order_id.to_string();
        let mut st = ctx.get(PAYMENTS, &order_id)?.unwrap_or_default().upgraded();
        match &input.value {
            Event::PaymentRequested(r) => self.authorize(r, &mut st, ctx)?,
            Event::CaptureRequested(c) => self.capture(c, &mut st, ctx)?,
            Event::RefundRequested(r) => self.refund(r, &mut st, ctx)?,
            other => return Err(ProcessError::permanent(format!("payments does not handle {}", other.name()))),
        }
        ctx.put(PAYMENTS, &order_id, &st)
    }
}

#[cfg(test)]
mod tests;
