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
        self.note(if r.final_capture { "capture final" } else { "capture" }, &r.idempotency_key, r.amount_minor);
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
    shipment_capture(order, payment_id, amount, currency, lines, n, None, true)
}

/// The saga's request for one shipment's share (`None`: the whole order).
#[allow(clippy::too_many_arguments)]
fn shipment_capture(order: &str, payment_id: &str, amount: i64, currency: &str, lines: &[(&str, i64)], n: u32, shipment: Option<&str>, final_capture: bool) -> CaptureRequested {
    CaptureRequested {
        event_id: format!("00000000-0000-0000-0001-{n:012}"),
        occurred_at: Timestamp(T0 + 60_000),
        order_id: order.into(),
        payment_id: payment_id.into(),
        amount_minor: amount,
        currency: currency.into(),
        placed_at: Timestamp(T0),
        vendors: vendors(lines),
        shipment_id: shipment.map(str::to_string),
        final_capture,
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
    let captures: Vec<String> = rec.calls().into_iter().filter(|(op, _, _)| op.starts_with("capture")).map(|(_, k, _)| k).collect();
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

fn refund(order: &str, payment_id: &str, n: u32, reason: &str, lines: &[(&str, &str, i64)]) -> RefundRequested {
    RefundRequested {
        event_id: format!("00000000-0000-0000-0002-{n:012}"),
        occurred_at: Timestamp(T0 + 120_000),
        order_id: order.into(),
        payment_id: payment_id.into(),
        amount_minor: lines.iter().map(|l| l.2).sum(),
        currency: "EUR".into(),
        reason: reason.into(),
        lines: lines.iter().map(|(sku, vendor, amount)| RefundLine { sku: sku.to_string(), vendor_id: vendor.to_string(), quantity: 1, amount_minor: *amount }).collect(),
    }
}

/// Each vendor's money over the order's outcome events: lines = transferred − reversed +
/// commission kept + refunded, and transferred = lines − commission, vendor by vendor.
fn assert_conserved(d: &mut TestDriver, order: &str) {
    let st: PaymentState = d.store("payments", PAYMENTS, order).unwrap();
    for (vendor, p) in &st.vendors {
        let created: Vec<VendorTransferCreated> = of::<VendorTransferCreated>(d).into_iter().filter(|t| t.order_id == order && &t.vendor_id == vendor).collect();
        let reversed: Vec<VendorTransferReversed> = of::<VendorTransferReversed>(d).into_iter().filter(|t| t.order_id == order && &t.vendor_id == vendor).collect();
        let (gross, commission, transferred) = created.iter().fold((0, 0, 0), |a, t| (a.0 + t.gross_minor, a.1 + t.commission_minor, a.2 + t.amount_minor));
        let (refunded, given_back, back) = reversed.iter().fold((0, 0, 0), |a, t| (a.0 + t.refunded_minor, a.1 + t.commission_minor, a.2 + t.amount_minor));
        assert_eq!(gross, p.gross_minor, "{order} {vendor}");
        assert_eq!(transferred, gross - commission, "{order} {vendor}");
        assert_eq!(gross - refunded, (transferred - back) + (commission - given_back), "{order} {vendor}");
        assert_eq!((p.transferred_minor, p.commission_minor, p.refunded_minor), (transferred - back, commission - given_back, refunded), "{order} {vendor}");
        for r in &reversed {
            assert_eq!(r.refunded_minor, r.commission_minor + r.amount_minor, "{order} {vendor}: {r:?}");
        }
    }
}

#[test]
fn an_order_shipped_in_two_shipments_captures_twice_up_to_its_total_and_pays_each_vendor_its_net_over_both_to_the_minor_unit() {
    let (mut d, rec) = driver();
    // The EUR basket of the test above, in two shipments: first 60.01 of v-a's lines and
    // all of v-b's; then the rest of v-a's (40.00) and v-c's, with the shipping (4.90).
    let lines = [("v-a", 10_001), ("v-b", 3_333), ("v-c", 1_235)];
    let total = 10_001 + 3_333 + 1_235 + 490;
    d.feed(request("o-eur", "pm_card_visa", total, "EUR", &lines));
    let pi = of::<PaymentAuthorized>(&d)[0].payment_id.clone();
    let first = shipment_capture("o-eur", &pi, 6_001 + 3_333, "EUR", &[("v-a", 6_001), ("v-b", 3_333)], 1, Some("shp-1"), false);
    d.feed(first.clone());
    d.feed(shipment_capture("o-eur", &pi, total - 9_334, "EUR", &[("v-a", 4_000), ("v-c", 1_235)], 2, Some("shp-2"), true));
    let captured: Vec<i64> = of::<PaymentCaptured>(&d).iter().map(|c| c.amount_minor).collect();
    assert_eq!(captured, vec![9_334, 5_725]);
    assert_eq!(captured.iter().sum::<i64>(), total);
    let calls: Vec<(String, i64)> = rec.calls().into_iter().filter(|(op, _, _)| op.starts_with("capture")).map(|(op, _, a)| (op, a)).collect();
    assert_eq!(calls, vec![("capture".into(), 9_334), ("capture final".into(), 5_725)], "the first keeps the rest of the authorization, the second releases it");
    // v-a's commission is computed again on its lines over both shipments: 15 % of 60.01 =
    // 9.0015 → 9.00, then 15 % of 100.01 = 15.0015 → 15.00, less the 9.00 kept: 6.00. So it
    // is paid 51.01 + 34.00 = 85.01, as when the order shipped at once.
    let transfers: Vec<(String, i64, i64, i64)> =
        of::<VendorTransferCreated>(&d).into_iter().map(|t| (t.vendor_id, t.gross_minor, t.commission_minor, t.amount_minor)).collect();
    assert_eq!(
        transfers,
        vec![("v-a".into(), 6_001, 900, 5_101), ("v-b".into(), 3_333, 400, 2_933), ("v-a".into(), 4_000, 600, 3_400), ("v-c".into(), 1_235, 99, 1_136)]
    );
    let net = |vendor: &str| of::<VendorTransferCreated>(&d).iter().filter(|t| t.vendor_id == vendor).map(|t| t.amount_minor).sum::<i64>();
    assert_eq!((net("v-a"), net("v-b"), net("v-c")), (8_501, 2_933, 1_136));
    assert_conserved(&mut d, "o-eur");

    // A redelivered command, and another command for a shipment already captured, move nothing.
    let calls = rec.calls().len();
    d.feed(first.clone());
    d.feed(shipment_capture("o-eur", &pi, 9_334, "EUR", &[("v-a", 6_001), ("v-b", 3_333)], 3, Some("shp-1"), false));
    assert_eq!(rec.calls().len(), calls);
    assert_eq!(of::<PaymentCaptured>(&d).len(), 2);

    // JPY (no minor digits), 8 000 yen of v-b's lines first, then the rest of v-b's (4 345) and v-a's 999.
    d.feed(request("o-jpy", "pm_card_mastercard", 13_344, "JPY", &[("v-b", 12_345), ("v-a", 999)]));
    let pi = of::<PaymentAuthorized>(&d).into_iter().find(|a| a.order_id == "o-jpy").unwrap().payment_id;
    d.feed(shipment_capture("o-jpy", &pi, 8_000, "JPY", &[("v-b", 8_000)], 4, Some("shp-j1"), false));
    d.feed(shipment_capture("o-jpy", &pi, 5_344, "JPY", &[("v-b", 4_345), ("v-a", 999)], 5, Some("shp-j2"), true));
    let jpy: Vec<i64> = of::<PaymentCaptured>(&d).iter().filter(|c| c.order_id == "o-jpy").map(|c| c.amount_minor).collect();
    assert_eq!(jpy, vec![8_000, 5_344]);
    // v-b: 12 % of 8 000 = 960, then 12 % of 12 345 = 1 481.4 → 1 481, less 960: 521.
    let jt: Vec<(String, i64, i64)> = of::<VendorTransferCreated>(&d).into_iter().filter(|t| t.order_id == "o-jpy").map(|t| (t.vendor_id, t.commission_minor, t.amount_minor)).collect();
    assert_eq!(jt, vec![("v-b".into(), 960, 7_040), ("v-a".into(), 150, 849), ("v-b".into(), 521, 3_824)]);
    assert_eq!(7_040 + 3_824, 10_864, "v-b's net, as when the order shipped at once");
    assert_conserved(&mut d, "o-jpy");
}

#[test]
fn a_refund_after_two_partial_captures_reverses_each_vendors_transfers_in_proportion() {
    let (mut d, rec) = driver();
    let total = 10_001 + 3_333 + 1_235 + 490;
    d.feed(request("o-eur", "pm_card_visa", total, "EUR", &[("v-a", 10_001), ("v-b", 3_333), ("v-c", 1_235)]));
    let pi = of::<PaymentAuthorized>(&d)[0].payment_id.clone();
    d.feed(shipment_capture("o-eur", &pi, 9_334, "EUR", &[("v-a", 6_001), ("v-b", 3_333)], 1, Some("shp-1"), false));
    d.feed(shipment_capture("o-eur", &pi, 5_725, "EUR", &[("v-a", 4_000), ("v-c", 1_235)], 2, Some("shp-2"), true));
    let transfer = |vendor: &str, n: usize| of::<VendorTransferCreated>(&d).into_iter().filter(|t| t.vendor_id == vendor).nth(n).unwrap().transfer_id;
    let (a1, a2, b1) = (transfer("v-a", 0), transfer("v-a", 1), transfer("v-b", 0));
    // A line of v-a worth 25.00 and all of v-b's, as in the single-capture test: v-a gives
    // 3.75 of commission back and 21.25 is reversed, over its two transfers by what is left
    // of each (51.01 and 34.00): 12.75 and 8.50 (21.25 × 51.01 / 85.01 = 12.7509…, 21.25 ×
    // 34.00 / 85.01 = 8.4990…: the cent left goes to the larger remainder), the commission
    // given back the same way (2.25 and 1.50).
    d.feed(refund("o-eur", &pi, 1, "return", &[("a-1", "v-a", 2_500), ("b-1", "v-b", 3_333)]));
    assert_eq!(of::<RefundIssued>(&d).iter().map(|r| r.amount_minor).collect::<Vec<_>>(), vec![5_833]);
    let reversals: Vec<(String, String, i64, i64, i64)> =
        of::<VendorTransferReversed>(&d).into_iter().map(|r| (r.vendor_id, r.transfer_id, r.refunded_minor, r.commission_minor, r.amount_minor)).collect();
    assert_eq!(
        reversals,
        vec![("v-a".into(), a1.clone(), 1_500, 225, 1_275), ("v-a".into(), a2.clone(), 1_000, 150, 850), ("v-b".into(), b1.clone(), 3_333, 400, 2_933)]
    );
    assert_conserved(&mut d, "o-eur");
    let st: PaymentState = d.store("payments", PAYMENTS, "o-eur").unwrap();
    let left: Vec<(String, i64)> = st.captures.iter().flat_map(|m| m.transfers.iter()).map(|x| (x.transfer_id.clone(), x.amount_minor)).collect();
    assert!(left.contains(&(a1, 5_101 - 1_275)) && left.contains(&(a2, 3_400 - 850)) && left.contains(&(b1, 0)), "{left:?}");
    // Each reversal has its own key; v-a's first keeps the key a single transfer had.
    let keys: Vec<String> = rec.calls().into_iter().filter(|(op, _, _)| op == "reverse").map(|(_, k, _)| k).collect();
    assert_eq!(keys.len(), 3);
    assert_eq!(keys[0], idempotency_key("00000000-0000-0000-0002-000000000001", "reverse-v-a"));
    assert_ne!(keys[1], keys[0]);
}

#[test]
fn an_order_cancelled_after_a_partial_capture_refunds_what_was_captured_and_releases_the_rest() {
    let (mut d, rec) = driver();
    let total = 10_001 + 3_333 + 1_235 + 490;
    d.feed(request("o-c", "pm_card_visa", total, "EUR", &[("v-a", 10_001), ("v-b", 3_333), ("v-c", 1_235)]));
    let pi = of::<PaymentAuthorized>(&d)[0].payment_id.clone();
    d.feed(shipment_capture("o-c", &pi, 9_334, "EUR", &[("v-a", 6_001), ("v-b", 3_333)], 1, Some("shp-1"), false));
    // The saga asks for the whole order back (its cancellation crossed the capture).
    let mut cancel = refund("o-c", &pi, 2, "cancellation", &[("a-1", "v-a", 10_001), ("b-1", "v-b", 3_333), ("c-1", "v-c", 1_235)]);
    cancel.amount_minor = total;
    d.feed(cancel);
    let ops: Vec<(String, i64)> = rec.calls().into_iter().filter(|(op, _, _)| op == "refund" || op == "cancel").map(|(op, _, a)| (op, a)).collect();
    assert_eq!(ops, vec![("refund".into(), 9_334), ("cancel".into(), 0)], "what was captured is refunded, the rest released");
    // v-a's and v-b's transfers come back whole: their lines captured were refunded.
    let reversals: Vec<(String, i64, i64, i64)> = of::<VendorTransferReversed>(&d).into_iter().map(|r| (r.vendor_id, r.refunded_minor, r.commission_minor, r.amount_minor)).collect();
    assert_eq!(reversals, vec![("v-a".into(), 6_001, 900, 5_101), ("v-b".into(), 3_333, 400, 2_933)]);
    assert_conserved(&mut d, "o-c");
    let st: PaymentState = d.store("payments", PAYMENTS, "o-c").unwrap();
    assert!(st.released);
    // A late capture of the other shipment moves nothing: it goes to the DLQ.
    let calls = rec.calls().len();
    d.feed(shipment_capture("o-c", &pi, 5_725, "EUR", &[("v-a", 4_000), ("v-c", 1_235)], 3, Some("shp-2"), true));
    assert_eq!(rec.calls().len(), calls);
    assert_eq!(d.dlq(Topic::PaymentCommands.name()).len(), 1);
}

/// [`PaymentState`] as it was stored before partial captures.
#[derive(Serialize)]
struct PaymentStateBeforeCaptures {
    payment_id: Option<String>,
    currency: String,
    authorized_minor: i64,
    declined: bool,
    captured_minor: i64,
    charge_id: Option<String>,
    released: bool,
    refunded_minor: i64,
    vendors: BTreeMap<String, Payout>,
}

#[test]
fn a_payment_stored_before_partial_captures_reads_back_as_one_final_capture_of_the_whole_order() {
    let payout = |transfer: Option<&str>, gross, commission| Payout { transfer_id: transfer.map(str::to_string), gross_minor: gross, bps: 1_500, commission_minor: commission, refunded_minor: 0, transferred_minor: gross - commission };
    let old = PaymentStateBeforeCaptures {
        payment_id: Some("pi_1".into()),
        currency: "EUR".into(),
        authorized_minor: 10_490,
        declined: false,
        captured_minor: 10_490,
        charge_id: Some("ch_1".into()),
        released: false,
        refunded_minor: 0,
        vendors: [("v-a".to_string(), payout(Some("tr_a"), 10_001, 1_500)), ("v-c".to_string(), payout(None, 0, 0))].into(),
    };
    let bytes = crate::state::encode_value(&old, None).unwrap();
    let st: PaymentState = crate::state::decode_value(&bytes).unwrap();
    assert!(st.captures.is_empty());
    assert_eq!((st.captured_minor, st.vendors["v-a"].transfer_id.as_deref()), (10_490, Some("tr_a")));
    let st = st.upgraded();
    assert_eq!(
        st.captures,
        vec![CaptureMade {
            command_id: String::new(),
            shipment_id: None,
            amount_minor: 10_490,
            final_capture: true,
            transfers: vec![TransferMade { vendor_id: "v-a".into(), transfer_id: "tr_a".into(), amount_minor: 8_501 }]
        }]
    );
    assert!(st.capture_closed(), "a later capture command for it is a no-op");
    // And what is written now reads back as it was; a value cut short inside the old fields is still an error.
    assert_eq!(crate::state::decode_value::<PaymentState>(&crate::state::encode_value(&st, None).unwrap()).unwrap(), st);
    assert!(crate::state::decode_value::<PaymentState>(&bytes[..bytes.len() - 3]).is_err());
}
