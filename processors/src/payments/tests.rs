//! The payments worker on in-memory records: the money arithmetic to the minor unit, the
//! idempotency of every call, declines as outcomes.

use std::sync::{Arc, Mutex};

use storeflow_avro::*;

use super::*;
use crate::TestDriver;

const T0: i64 = 1_764_000_000_000;

/// The test-mode provider, with every call it gets written down: (operation, idempotency
/// key, amount).
#[derive(Clone, Default)]
struct Recording(Arc<Mutex<Vec<(String, String, i64)>>>);

impl Recording {
    fn calls(&self) -> Vec<(String, String, i64)> {
        self.0.lock().unwrap().clone()
    }
    fn note(&self, op: &str, key: &str, amount: i64) {
        self.0.lock().unwrap().push((op.into(), key.into(), amount));
    }
}

impl PaymentProvider for Recording {
    fn name(&self) -> &'static str {
        TestMode.name()
    }
    fn authorize(&self, r: &AuthorizeRequest) -> Result<Authorization, ProviderError> {
        self.note("authorize", &r.idempotency_key, r.amount_minor);
        TestMode.authorize(r)
    }
    fn capture(&self, r: &CaptureRequest) -> Result<Captured, ProviderError> {
        self.note("capture", &r.idempotency_key, r.amount_minor);
        TestMode.capture(r)
    }
    fn transfer(&self, r: &TransferRequest) -> Result<String, ProviderError> {
        self.note(&format!("transfer {} {}", r.vendor_id, r.destination), &r.idempotency_key, r.amount_minor);
        TestMode.transfer(r)
    }
    fn reverse_transfer(&self, r: &ReversalRequest) -> Result<String, ProviderError> {
        self.note("reverse", &r.idempotency_key, r.amount_minor);
        TestMode.reverse_transfer(r)
    }
    fn refund(&self, r: &RefundRequest) -> Result<String, ProviderError> {
        self.note("refund", &r.idempotency_key, r.amount_minor);
        TestMode.refund(r)
    }
    fn cancel(&self, r: &CancelRequest) -> Result<(), ProviderError> {
        self.note("cancel", &r.idempotency_key, 0);
        TestMode.cancel(r)
    }
}

/// Pipes any event type into the driver.
trait Feed {
    fn feed(&mut self, e: impl Into<Event>);
}
impl Feed for TestDriver {
    fn feed(&mut self, e: impl Into<Event>) {
        self.pipe(e.into());
    }
}

fn driver() -> (TestDriver, Recording) {
    let rec = Recording::default();
    let mut d = TestDriver::new(Payments::with_provider(PaymentsConfig::default(), Box::new(rec.clone())));
    for (vendor, plan, account) in [("v-a", "basic", Some("acct_a")), ("v-b", "pro", Some("acct_b")), ("v-c", "enterprise", None)] {
        d.feed(VendorOnboarded {
            event_id: uuid::Uuid::new_v4().to_string(),
            occurred_at: Timestamp(T0 - 86_400_000),
            vendor_id: vendor.into(),
            name: vendor.into(),
            country: "DE".into(),
            plan: plan.into(),
            payout_currency: "EUR".into(),
            stripe_account_id: account.map(str::to_string),
        });
    }
    (d, rec)
}

fn vendors(v: &[(&str, i64)]) -> Vec<VendorAmount> {
    v.iter().map(|(id, a)| VendorAmount { vendor_id: id.to_string(), amount_minor: *a }).collect()
}

fn request(order: &str, token: &str, amount: i64, currency: &str, lines: &[(&str, i64)]) -> PaymentRequested {
    PaymentRequested {
        // Distinct per order, token and amount, the same every run.
        event_id: format!("00000000-0000-0000-0000-{:012x}", order.bytes().chain(token.bytes()).fold(amount as u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))) & 0xffff_ffff_ffff),
        occurred_at: Timestamp(T0),
        order_id: order.into(),
        customer_id: "c-1".into(),
        amount_minor: amount,
        currency: currency.into(),
        payment_method_token: token.into(),
        vendors: vendors(lines),
    }
}

fn capture(order: &str, payment_id: &str, amount: i64, currency: &str, lines: &[(&str, i64)], n: u32) -> CaptureRequested {
    CaptureRequested {
        event_id: format!("00000000-0000-0000-0001-{n:012}"),
        occurred_at: Timestamp(T0 + 60_000),
        order_id: order.into(),
        payment_id: payment_id.into(),
        amount_minor: amount,
        currency: currency.into(),
        placed_at: Timestamp(T0),
        vendors: vendors(lines),
        shipment_id: None,
        final_capture: true,
    }
}

/// Picks one event type out of [`Event`].
trait FromEvent: Sized {
    fn try_from_event(e: Event) -> Option<Self>;
}
macro_rules! from_event {
    ($($t:ident),*) => {$(impl FromEvent for $t { fn try_from_event(e: Event) -> Option<Self> { if let Event::$t(x) = e { Some(x) } else { None } } })*};
}
from_event!(PaymentAuthorized, PaymentFailed, PaymentCaptured, VendorTransferCreated, VendorTransferReversed, RefundIssued);

fn of<T: FromEvent>(d: &TestDriver) -> Vec<T> {
    d.outputs::<Event>(Topic::Payments.name()).into_iter().filter_map(T::try_from_event).collect()
}

#[test]
fn a_three_vendor_basket_pays_each_vendor_its_lines_less_its_plans_commission_and_a_partial_refund_reverses_in_proportion() {
    let (mut d, rec) = driver();
    // EUR: v-a (basic, 15 %) 100.01, v-b (pro, 12 %) 33.33, v-c (enterprise, 8 %, no
    // connected account in test mode: one named after it) 12.35; shipping 4.90.
    let lines = [("v-a", 10_001), ("v-b", 3_333), ("v-c", 1_235)];
    let total = 10_001 + 3_333 + 1_235 + 490;
    d.feed(request("o-eur", "pm_card_visa", total, "EUR", &lines));
    let auth = of::<PaymentAuthorized>(&d);
    assert_eq!(auth.len(), 1);
    assert_eq!((auth[0].amount_minor, auth[0].currency.as_str()), (total, "EUR"));
    d.feed(capture("o-eur", &auth[0].payment_id, total, "EUR", &lines, 1));
    let captured = of::<PaymentCaptured>(&d);
    assert_eq!(captured.iter().map(|c| c.amount_minor).collect::<Vec<_>>(), vec![total]);
    let transfers: Vec<(String, i64, i64, String)> =
        of::<VendorTransferCreated>(&d).into_iter().map(|t| (t.vendor_id, t.commission_minor, t.amount_minor, t.destination)).collect();
    // 15 % of 10 001 = 1 500.15 → 1 500; 12 % of 3 333 = 399.96 → 400; 8 % of 1 235 = 98.8 → 99.
    assert_eq!(
        transfers,
        vec![
            ("v-a".into(), 1_500, 8_501, "acct_a".into()),
            ("v-b".into(), 400, 2_933, "acct_b".into()),
            ("v-c".into(), 99, 1_136, "acct_test_v-c".into())
        ]
    );
    // A partial refund: one line of v-a worth 25.00 and all of v-b.
    d.feed(RefundRequested {
        event_id: "00000000-0000-0000-0002-000000000001".into(),
        occurred_at: Timestamp(T0 + 120_000),
        order_id: "o-eur".into(),
        payment_id: auth[0].payment_id.clone(),
        amount_minor: 2_500 + 3_333,
        currency: "EUR".into(),
        reason: "return".into(),
        lines: vec![
            RefundLine { sku: "a-1".into(), vendor_id: "v-a".into(), quantity: 1, amount_minor: 2_500 },
            RefundLine { sku: "b-1".into(), vendor_id: "v-b".into(), quantity: 1, amount_minor: 3_333 },
        ],
    });
    let refunds = of::<RefundIssued>(&d);
    assert_eq!(refunds.iter().map(|r| r.amount_minor).collect::<Vec<_>>(), vec![5_833]);
    let reversals: Vec<(String, i64, i64, i64)> =
        of::<VendorTransferReversed>(&d).into_iter().map(|r| (r.vendor_id, r.refunded_minor, r.commission_minor, r.amount_minor)).collect();
    // v-a: 7 501 left, commission 1 125.15 → 1 125, so 375 given back and 2 125 reversed;
    // v-b: nothing left, its 400 commission given back, 2 933 reversed.
    assert_eq!(reversals, vec![("v-a".into(), 2_500, 375, 2_125), ("v-b".into(), 3_333, 400, 2_933)]);
    // The money invariant, vendor by vendor: lines = transferred − reversed + commission kept + refunded.
    let st: PaymentState = d.store("payments", PAYMENTS, "o-eur").unwrap();
    for (vendor, gross) in lines {
        let p = &st.vendors[vendor];
        let transferred: i64 = of::<VendorTransferCreated>(&d).iter().filter(|t| t.vendor_id == vendor).map(|t| t.amount_minor).sum();
        let reversed: i64 = of::<VendorTransferReversed>(&d).iter().filter(|t| t.vendor_id == vendor).map(|t| t.amount_minor).sum();
        assert_eq!(gross, transferred - reversed + p.commission_minor + p.refunded_minor, "{vendor}");
        assert_eq!(p.transferred_minor, transferred - reversed, "{vendor}");
    }
    // Every call carried its own key, derived from its command.
    let keys: Vec<String> = rec.calls().into_iter().map(|(_, k, _)| k).collect();
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), keys.len(), "{keys:?}");
    assert!(keys.iter().all(|k| k.starts_with("storeflow-")));

    // JPY (no minor digits): 12 345 yen of v-b (12 %: 1 481.4 → 1 481) and 999 of v-a (15 %: 149.85 → 150).
    let jpy = [("v-b", 12_345), ("v-a", 999)];
    d.feed(request("o-jpy", "pm_card_mastercard", 13_344, "JPY", &jpy));
    let pi = of::<PaymentAuthorized>(&d).into_iter().find(|a| a.order_id == "o-jpy").unwrap().payment_id;
    d.feed(capture("o-jpy", &pi, 13_344, "JPY", &jpy, 2));
    let jt: Vec<(String, i64, String)> =
        of::<VendorTransferCreated>(&d).into_iter().filter(|t| t.order_id == "o-jpy").map(|t| (t.vendor_id, t.amount_minor, t.currency)).collect();
    assert_eq!(jt, vec![("v-a".into(), 849, "JPY".into()), ("v-b".into(), 10_864, "JPY".into())]);
}

#[test]
fn the_same_capture_command_twice_captures_once_with_one_key() {
    let (mut d, rec) = driver();
    let lines = [("v-a", 5_000)];
    d.feed(request("o-1", "pm_card_visa", 5_000, "EUR", &lines));
    let pi = of::<PaymentAuthorized>(&d)[0].payment_id.clone();
    let cmd = capture("o-1", &pi, 5_000, "EUR", &lines, 9);
    d.feed(cmd.clone());
    d.feed(cmd.clone());
    // A second request (another event id) for the same order is a no-op too.
    d.feed(capture("o-1", &pi, 5_000, "EUR", &lines, 10));
    assert_eq!(of::<PaymentCaptured>(&d).len(), 1);
    assert_eq!(of::<VendorTransferCreated>(&d).len(), 1);
    let captures: Vec<String> = rec.calls().into_iter().filter(|(op, _, _)| op == "capture").map(|(_, k, _)| k).collect();
    assert_eq!(captures, vec![idempotency_key(&cmd.event_id, "capture")]);
}

#[test]
fn a_declined_card_is_an_outcome_with_its_code_a_refused_request_also_goes_to_the_dlq_and_a_browser_payment_is_left_alone() {
    let (mut d, rec) = driver();
    d.feed(request("o-d", "pm_card_chargeDeclinedInsufficientFunds", 1_000, "EUR", &[("v-a", 1_000)]));
    let failed = of::<PaymentFailed>(&d);
    assert_eq!(failed.iter().map(|f| f.failure_code.as_str()).collect::<Vec<_>>(), vec!["insufficient_funds"]);
    assert!(d.dlq(Topic::PaymentCommands.name()).is_empty());
    // A request the provider refuses for good (no amount): to the DLQ, and the payment fails.
    d.feed(request("o-x", "pm_card_visa", 0, "EUR", &[("v-a", 0)]));
    let failed = of::<PaymentFailed>(&d);
    assert_eq!(failed.iter().find(|f| f.order_id == "o-x").map(|f| f.failure_code.as_str()), Some("parameter_invalid_integer"));
    let dlq = d.dlq(Topic::PaymentCommands.name());
    assert_eq!(dlq.len(), 1);
    assert!(dlq[0].reason.contains("parameter_invalid_integer"), "{}", dlq[0].reason);
    // A PaymentIntent the browser confirmed: Stripe's webhooks report it, the worker calls nothing.
    let calls = rec.calls().len();
    d.feed(request("o-pi", "pi_3Mtw", 1_000, "EUR", &[("v-a", 1_000)]));
    assert_eq!(rec.calls().len(), calls);
    assert!(of::<PaymentFailed>(&d).iter().all(|f| f.order_id != "o-pi"));
    assert!(of::<PaymentAuthorized>(&d).iter().all(|a| a.order_id != "o-pi"));
}

#[test]
fn a_refund_before_capture_releases_the_authorization_once() {
    let (mut d, rec) = driver();
    d.feed(request("o-c", "pm_card_visa", 2_000, "EUR", &[("v-a", 2_000)]));
    let pi = of::<PaymentAuthorized>(&d)[0].payment_id.clone();
    for n in 0..2 {
        d.feed(RefundRequested {
            event_id: format!("00000000-0000-0000-0003-00000000000{n}"),
            occurred_at: Timestamp(T0 + 1_000),
            order_id: "o-c".into(),
            payment_id: pi.clone(),
            amount_minor: 2_000,
            currency: "EUR".into(),
            reason: "cancellation".into(),
            lines: vec![],
        });
    }
    let refunds = of::<RefundIssued>(&d);
    assert_eq!(refunds.len(), 1);
    assert_eq!((refunds[0].refund_id.as_str(), refunds[0].amount_minor), (pi.as_str(), 2_000));
    assert_eq!(rec.calls().iter().filter(|(op, _, _)| op == "cancel").count(), 1);
    assert!(of::<VendorTransferReversed>(&d).is_empty());
}

// ------------------------------------------------------------------------------ vendors' plans

/// The test-mode provider with every plan change it is asked for written down.
#[derive(Clone, Default)]
struct PlanRecording(Arc<Mutex<Vec<PlanRequest>>>);

impl PaymentProvider for PlanRecording {
    fn name(&self) -> &'static str {
        TestMode.name()
    }
    fn authorize(&self, r: &AuthorizeRequest) -> Result<Authorization, ProviderError> {
        TestMode.authorize(r)
    }
    fn capture(&self, r: &CaptureRequest) -> Result<Captured, ProviderError> {
        TestMode.capture(r)
    }
    fn transfer(&self, r: &TransferRequest) -> Result<String, ProviderError> {
        TestMode.transfer(r)
    }
    fn reverse_transfer(&self, r: &ReversalRequest) -> Result<String, ProviderError> {
        TestMode.reverse_transfer(r)
    }
    fn refund(&self, r: &RefundRequest) -> Result<String, ProviderError> {
        TestMode.refund(r)
    }
    fn cancel(&self, r: &CancelRequest) -> Result<(), ProviderError> {
        TestMode.cancel(r)
    }
    fn change_plan(&self, r: &PlanRequest) -> Result<Subscription, ProviderError> {
        self.0.lock().unwrap().push(r.clone());
        TestMode.change_plan(r)
    }
}

fn plan_driver() -> (TestDriver, PlanRecording) {
    let rec = PlanRecording::default();
    let mut d = TestDriver::new(Payments::with_provider(PaymentsConfig::default(), Box::new(rec.clone())));
    d.feed(VendorOnboarded {
        event_id: uuid::Uuid::from_u128(1).to_string(),
        occurred_at: Timestamp(T0 - 86_400_000),
        vendor_id: "v-a".into(),
        name: "A".into(),
        country: "DE".into(),
        plan: "basic".into(),
        payout_currency: "EUR".into(),
        stripe_account_id: Some("acct_a".into()),
    });
    (d, rec)
}

fn plan_request(n: u32, plan: &str, at: i64) -> PlanChangeRequested {
    PlanChangeRequested { event_id: format!("00000000-0000-0000-0009-{n:012}"), occurred_at: Timestamp(at), vendor_id: "v-a".into(), plan: plan.into() }
}

fn plans_changed(d: &TestDriver) -> Vec<VendorPlanChanged> {
    d.outputs::<Event>(Topic::Catalog.name()).into_iter().filter_map(|e| if let Event::VendorPlanChanged(c) = e { Some(c) } else { None }).collect()
}

#[test]
fn a_plan_request_starts_the_subscription_and_says_so_once_however_often_it_is_delivered() {
    let (mut d, rec) = plan_driver();
    let ask = plan_request(1, "pro", T0);
    d.feed(ask.clone());
    d.feed(ask);
    let calls = rec.0.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "the same command twice makes one call: {calls:?}");
    assert_eq!(calls[0].price.as_deref(), Some("price_test_pro"));
    assert_eq!((calls[0].customer_id.as_ref(), calls[0].current.as_ref()), (None, None), "a first subscription");
    assert_eq!(calls[0].idempotency_key, idempotency_key("00000000-0000-0000-0009-000000000001", "plan"));
    let changed = plans_changed(&d);
    assert_eq!(changed.len(), 1);
    let c = &changed[0];
    assert_eq!((c.vendor_id.as_str(), c.plan.as_str(), c.status.as_str()), ("v-a", "pro", "active"));
    assert_eq!((c.subscription_id.as_deref(), c.effective_at.millis()), (Some("sub_test_v-a"), T0));
}

#[test]
fn a_plan_change_updates_the_subscription_and_later_orders_pay_the_new_plans_commission() {
    let (mut d, rec) = plan_driver();
    // An order placed while on basic (15 %), captured after the upgrade to enterprise (8 %).
    d.feed(request("o-before", "pm_card_visa", 10_000, "EUR", &[("v-a", 10_000)]));
    d.feed(plan_request(1, "pro", T0 + 1_000));
    d.feed(plan_request(2, "enterprise", T0 + 2_000));
    let calls = rec.0.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    let current = calls[1].current.clone().expect("the second change updates the subscription");
    assert_eq!((current.id.as_str(), current.item_id.as_str()), ("sub_test_v-a", "si_test_v-a"));
    assert_eq!((calls[1].price.as_deref(), calls[1].customer_id.as_deref()), (Some("price_test_enterprise"), Some("cus_test_v-a")));
    let pi = of::<PaymentAuthorized>(&d)[0].payment_id.clone();
    d.feed(capture("o-before", &pi, 10_000, "EUR", &[("v-a", 10_000)], 1));
    let mut after = capture("o-after", "pi_after", 10_000, "EUR", &[("v-a", 10_000)], 2);
    after.placed_at = Timestamp(T0 + 3_000);
    d.feed(after);
    let commissions: Vec<(String, i64)> = of::<VendorTransferCreated>(&d).into_iter().map(|t| (t.order_id, t.commission_minor)).collect();
    assert_eq!(commissions, vec![("o-before".into(), 1_500), ("o-after".into(), 800)]);
    // Back to basic: the subscription is cancelled, basic's rate is back.
    d.feed(plan_request(3, "basic", T0 + 4_000));
    let calls = rec.0.lock().unwrap().clone();
    assert_eq!((calls[2].price.as_ref(), calls[2].current.as_ref().map(|c| c.id.as_str())), (None, Some("sub_test_v-a")));
    let last = plans_changed(&d).pop().expect("a plan change");
    assert_eq!((last.plan.as_str(), last.status.as_str()), ("basic", "canceled"));
    let mut later = capture("o-later", "pi_later", 10_000, "EUR", &[("v-a", 10_000)], 3);
    later.placed_at = Timestamp(T0 + 5_000);
    d.feed(later);
    assert_eq!(of::<VendorTransferCreated>(&d).last().map(|t| t.commission_minor), Some(1_500));
}

#[test]
fn an_unknown_plan_goes_to_the_dlq_with_the_reason_and_calls_nothing() {
    let (mut d, rec) = plan_driver();
    d.feed(plan_request(1, "platinum", T0));
    assert!(rec.0.lock().unwrap().is_empty());
    assert!(plans_changed(&d).is_empty());
    let dlq = d.dlq(Topic::PaymentCommands.name());
    assert_eq!(dlq.len(), 1);
    assert!(dlq[0].reason.contains("unknown plan \"platinum\""), "{}", dlq[0].reason);
}

#[test]
fn a_connected_account_learned_later_receives_the_vendors_transfers() {
    let (mut d, _) = plan_driver();
    d.feed(VendorAccountUpdated {
        event_id: uuid::Uuid::from_u128(2).to_string(),
        occurred_at: Timestamp(T0),
        vendor_id: "v-a".into(),
        account_id: "acct_new".into(),
        charges_enabled: true,
        payouts_enabled: true,
        details_submitted: true,
    });
    d.feed(capture("o-1", "pi_1", 5_000, "EUR", &[("v-a", 5_000)], 1));
    assert_eq!(of::<VendorTransferCreated>(&d)[0].destination, "acct_new");
}

#[test]
fn the_stripe_provider_needs_a_price_for_every_paid_plan() {
    let mut c = PaymentsConfig { provider: "stripe".into(), stripe_secret_key: Some("sk_test_1".into()), ..PaymentsConfig::default() };
    let err = c.validate_plan_prices().unwrap_err();
    assert!(err.contains("[stripe] plan_prices.enterprise"), "{err}");
    c.plan_prices = [("pro", "price_pro"), ("enterprise", "price_ent")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(c.validate_plan_prices(), Ok(()));
}
