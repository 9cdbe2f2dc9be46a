//! sales — vendors' real-time sales per minute: orders, units, GMV, refunds, marketplace
//! commission and net payout, in the order currency and in the base currency.
//!
//! Two stages in one processor (all inputs have the same partition count, so a vendor's
//! records always meet in one task and an order's in another):
//! 1. keyed by order — `storefront.orders` (OrderPlaced) and `storefront.payments`
//!    (RefundIssued): each order or refund is split by vendor (a refund without lines is split
//!    in proportion to the order's vendor totals, largest remainder first, so the parts add
//!    up exactly) and re-keyed by vendor to `sales.events`;
//! 2. keyed by vendor — `sales.events` and `storefront.catalog` (VendorOnboarded and
//!    VendorPlanChanged: the plan history): the vendor-minute is updated and emitted to
//!    `sales.vendor_minute` (one update per change, so a report refreshes within a second),
//!    with the commission of the plan in force at the minute ([`PlanHistory::at`]) — not the
//!    last plan processed, so a plan change that arrives before an older order's sale does
//!    not reprice it.
//!
//! Every amount lands in the minute of its own event time: a late refund updates the minute
//! it happened in. Exchange rates come from `storefront.exchange_rates`, read in full by
//! every instance (a global input).
//!
//! Money rules, stated: all amounts are integers in minor units. Commission =
//! (GMV − refunds) × plan rate, rounded half to even to a minor unit; net payout =
//! GMV − refunds − commission, so for every vendor-minute GMV − refunds = commission + net,
//! exactly. Conversion to the base currency ([`storeflow_avro::money`], the rule the
//! analytics sink and the API use too): each order line with the rate in force at the
//! order's time, each refund line (or vendor part) with the rate at the refund's time, amount
//! × rate scaled by the two currencies' minor-unit exponents, rounded half to even; a base
//! sum is the sum of converted amounts, so a vendor's base GMV equals the sum of its lines in
//! the analytics store. In the base currency the same two rules hold: commission_base =
//! (gmv_base − refunds_base) × plan rate, rounded half to even; net_base = the rest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use storeflow_avro::{Event, Timestamp, Topic, VendorSaleRecorded, VendorSalesMinute};

use crate::{Ctx, Flow, Input, ProcessError, Processor, Store};

/// `[processors.sales]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SalesConfig {
    /// ISO-4217 currency of the `*_base_minor` amounts.
    pub base_currency: String,
    /// Commission in basis points per vendor plan (1500 = 15 %).
    pub commission_bps: BTreeMap<String, i64>,
    /// Plan of a vendor not (yet) onboarded.
    pub default_plan: String,
    /// How long minute and order state is kept (days of event time).
    pub keep_days: i64,
}

impl Default for SalesConfig {
    fn default() -> Self {
        SalesConfig {
            base_currency: "EUR".into(),
            commission_bps: [("basic", 1500), ("pro", 1200), ("enterprise", 800)].iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            default_plan: "basic".into(),
            keep_days: 90,
        }
    }
}

// Money has one set of rules for the whole pipeline: the contract's.
pub use storeflow_avro::money::{Rates, convert, div_round_half_even, exponent};

/// A vendor-minute in one currency.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Minute {
    pub orders: i64,
    pub units: i64,
    pub gmv_minor: i64,
    pub refunds_minor: i64,
    /// One more per update.
    #[serde(default)]
    pub version: i64,
}

/// What stage 1 keeps of an order: its currency and each vendor's units and value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSplit {
    pub currency: String,
    pub vendors: BTreeMap<String, (i64, i64)>,
}

/// What one vendor's share of an order or refund adds to its minute.
#[derive(Clone, Copy, Debug, Default)]
struct Amounts {
    orders: i32,
    units: i64,
    gmv: i64,
    refunds: i64,
    gmv_base: i64,
    refunds_base: i64,
}

/// A vendor-minute's base-currency sums (kept beside [`Minute`], under the same key).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinuteBase {
    pub gmv_base_minor: i64,
    pub refunds_base_minor: i64,
}

/// Each order's split by vendor, by order id (for its refunds).
pub const ORDERS: Store<OrderSplit> = Store::new("orders");
/// Each vendor's commission plan, by vendor id, as versions before the plan history kept it
/// (one plan, in force since always): read when a vendor has no [`PLAN_HISTORY`] yet, never
/// written.
pub const PLANS: Store<String> = Store::new("plans");
/// Each vendor's plans by when they took effect, by vendor id.
pub const PLAN_HISTORY: Store<PlanHistory> = Store::new("plan_history");

/// A vendor's plans by when each took effect: `VendorOnboarded` at its `occurred_at`,
/// `VendorPlanChanged` at its `effective_at` ([`plan_in_force`]). The one rule of "the plan
/// in force at t", for the sales figures and the payments worker's transfers alike.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanHistory {
    /// (from when, plan), oldest first.
    pub changes: Vec<(i64, String)>,
}

impl PlanHistory {
    /// Records that `plan` is in force from `at` (the same change twice is kept once).
    pub fn record(&mut self, at: i64, plan: &str) {
        if self.changes.iter().any(|(t, p)| *t == at && p == plan) {
            return;
        }
        let i = self.changes.partition_point(|(t, _)| *t <= at);
        self.changes.insert(i, (at, plan.to_string()));
    }

    /// What an older version's [`PLANS`] entry says: its plan, in force since always.
    pub fn since_always(legacy: Option<String>) -> PlanHistory {
        PlanHistory { changes: legacy.map(|plan| (i64::MIN, plan)).into_iter().collect() }
    }

    /// The plan in force at `t`: the last to take effect at or before `t`; before the first,
    /// the first (a sale dated before its vendor's onboarding pays the onboarding plan).
    pub fn at(&self, t: i64) -> Option<&str> {
        self.changes.iter().rev().find(|(at, _)| *at <= t).or(self.changes.first()).map(|(_, p)| p.as_str())
    }
}

/// The plan a `VendorPlanChanged` puts in force: its plan while the subscription lives
/// (`active`, `trialing`, `past_due`) or when it is the free plan; otherwise (`canceled`,
/// `incomplete`, `unpaid`, …) the free plan, `default_plan`.
pub fn plan_in_force(c: &storeflow_avro::VendorPlanChanged, default_plan: &str) -> String {
    if matches!(c.status.as_str(), "active" | "trialing" | "past_due") { c.plan.clone() } else { default_plan.to_string() }
}
/// Per `<vendor>|<minute>|<currency>`: the minute's sales in the order currency.
pub const MINUTES: Store<Minute> = Store::new("minutes");
/// Per `<vendor>|<minute>|<currency>`: the same minute's sums in the base currency.
pub const MINUTE_BASE: Store<MinuteBase> = Store::new("minute_base");

/// The sales processor.
pub struct Sales {
    config: SalesConfig,
    /// Every rate by when it took effect (global state, rebuilt at every start).
    rates: Rates,
}

fn fresh_id(t: i64, parts: &[&str]) -> String {
    crate::ids::derived_event_id(0x9ce4_8422_2325_cbf2, 13, t, parts)
}

impl Sales {
    /// `amount` of `currency` in the base currency at `at` (0, with a warning, while no rate
    /// between the two is known — as the analytics sink writes it).
    fn base(&self, amount: i64, currency: &str, at: i64) -> i64 {
        self.rates.to_base(amount, currency, at).unwrap_or_else(|| {
            tracing::warn!(currency, base = %self.config.base_currency, "no exchange rate yet; base amounts are 0");
            0
        })
    }

    /// The vendor's plan history; a plan kept by an older version counts since always.
    fn plans_of(&self, ctx: &mut Ctx<'_, Event>, vendor: &str) -> Result<PlanHistory, ProcessError> {
        if let Some(h) = ctx.get(PLAN_HISTORY, vendor)? {
            return Ok(h);
        }
        Ok(PlanHistory::since_always(ctx.get(PLANS, vendor)?))
    }

    fn share(&self, ctx: &mut Ctx<'_, Event>, order_id: &str, vendor: &str, minute: i64, currency: &str, a: Amounts, tag: &str) {
        let t = ctx.time();
        ctx.emit(Event::VendorSaleRecorded(VendorSaleRecorded {
            event_id: fresh_id(t, &["share", order_id, vendor, tag]),
            occurred_at: Timestamp(t),
            order_id: order_id.to_string(),
            vendor_id: vendor.to_string(),
            minute: Timestamp(minute),
            currency: currency.to_string(),
            orders: a.orders,
            units: a.units.clamp(0, i64::from(i32::MAX)) as i32,
            gmv_minor: a.gmv,
            refunds_minor: a.refunds,
            gmv_base_minor: a.gmv_base,
            refunds_base_minor: a.refunds_base,
        }));
    }
}

impl Processor for Sales {
    const NAME: &'static str = "sales";
    type Config = SalesConfig;
    type In = Event;
    type Out = Event;

    fn new(config: SalesConfig) -> Self {
        let rates = Rates::new(&config.base_currency);
        Sales { config, rates }
    }

    fn flow(&self) -> Flow {
        // Stage 1 (orders, refunds) → shares re-keyed by vendor → stage 2, ordered with the
        // vendors' catalog events (their plans set the commission).
        Flow::new()
            .group(&[Topic::Orders.name(), Topic::Payments.name()])
            .emits(&[Topic::SalesEvents.name()])
            .group(&[Topic::SalesEvents.name(), Topic::Catalog.name()])
            .emits(&[Topic::VendorSales.name()])
            .build()
    }

    fn global_inputs(&self) -> Vec<String> {
        vec![Topic::ExchangeRates.name().to_string()]
    }

    fn stores(&self) -> &'static [&'static str] {
        &[ORDERS.name, PLANS.name, PLAN_HISTORY.name, MINUTES.name, MINUTE_BASE.name]
    }

    fn on_global(&mut self, input: &Input<Event>) {
        if let Event::ExchangeRateUpdated(r) = &input.value {
            self.rates.record(&r.base_currency, &r.quote_currency, r.occurred_at.millis(), r.rate_e9);
            // Rates older than the state kept are never asked for again.
            self.rates.forget_before(r.occurred_at.millis().saturating_sub(self.config.keep_days.saturating_mul(86_400_000)));
        }
    }

    fn process(&mut self, input: &Input<Event>, ctx: &mut Ctx<'_, Event>) -> Result<(), ProcessError> {
        let keep = self.config.keep_days * 86_400_000;
        match &input.value {
            Event::OrderPlaced(o) => {
                o.check_amounts().map_err(ProcessError::permanent)?;
                let at = o.occurred_at.millis();
                let mut split = OrderSplit { currency: o.currency.clone(), vendors: BTreeMap::new() };
                let mut base: BTreeMap<&str, i64> = BTreeMap::new();
                for i in &o.items {
                    let line = i64::from(i.quantity) * i.unit_price_minor;
                    let e = split.vendors.entry(i.vendor_id.clone()).or_default();
                    e.0 += i64::from(i.quantity);
                    e.1 += line;
                    *base.entry(&i.vendor_id).or_default() += self.base(line, &o.currency, at);
                }
                let minute = o.occurred_at.minute_floor().millis();
                for (vendor, (units, gmv)) in &split.vendors {
                    let a = Amounts { orders: 1, units: *units, gmv: *gmv, gmv_base: base[vendor.as_str()], ..Amounts::default() };
                    self.share(ctx, &o.order_id, vendor, minute, &o.currency, a, "sale");
                }
                ctx.put_until(ORDERS, &o.order_id, &split, o.occurred_at.millis() + keep)?;
            }
            Event::RefundIssued(r) => {
                let (at, minute) = (r.occurred_at.millis(), r.occurred_at.minute_floor().millis());
                let mut parts: BTreeMap<String, i64> = BTreeMap::new();
                // Base amounts line by line, as the analytics store's refund lines hold them,
                // while the lines are the refund.
                let mut base: Option<BTreeMap<String, i64>> = None;
                if !r.lines.is_empty() {
                    let lines_total: i64 = r.lines.iter().map(|l| l.amount_minor).sum();
                    let mut by_line: BTreeMap<String, i64> = BTreeMap::new();
                    for l in &r.lines {
                        *parts.entry(l.vendor_id.clone()).or_default() += l.amount_minor;
                        *by_line.entry(l.vendor_id.clone()).or_default() += self.base(l.amount_minor, &r.currency, at);
                    }
                    // A refund larger than its lines (shipping, tax) is attributed to the lines.
                    if lines_total != r.amount_minor && lines_total > 0 {
                        parts = split_proportionally(r.amount_minor, &parts);
                    } else {
                        base = Some(by_line);
                    }
                } else {
                    let Some(split) = ctx.get(ORDERS, &r.order_id)? else {
                        return Err(ProcessError::permanent(format!("refund {} for order {} without lines, and the order is unknown to sales", r.refund_id, r.order_id)));
                    };
                    let weights: BTreeMap<String, i64> = split.vendors.iter().map(|(v, (_, g))| (v.clone(), *g)).collect();
                    parts = split_proportionally(r.amount_minor, &weights);
                }
                for (vendor, amount) in parts {
                    let refunds_base = base.as_ref().map_or_else(|| self.base(amount, &r.currency, at), |b| b[&vendor]);
                    let a = Amounts { refunds: amount, refunds_base, ..Amounts::default() };
                    self.share(ctx, &r.order_id, &vendor, minute, &r.currency, a, &format!("refund {}", r.refund_id));
                }
            }
            Event::VendorOnboarded(v) => {
                let mut history = self.plans_of(ctx, &v.vendor_id)?;
                history.record(v.occurred_at.millis(), &v.plan);
                ctx.put(PLAN_HISTORY, &v.vendor_id, &history)?;
            }
            Event::VendorPlanChanged(c) => {
                let mut history = self.plans_of(ctx, &c.vendor_id)?;
                history.record(c.effective_at.millis(), &plan_in_force(c, &self.config.default_plan));
                ctx.put(PLAN_HISTORY, &c.vendor_id, &history)?;
            }
            Event::VendorSaleRecorded(s) => {
                let minute = s.minute.millis();
                let key = format!("{}|{minute:020}|{}", s.vendor_id, s.currency);
                let mut m = ctx.get(MINUTES, &key)?.unwrap_or_default();
                m.orders += i64::from(s.orders);
                m.units += i64::from(s.units);
                m.gmv_minor += s.gmv_minor;
                m.refunds_minor += s.refunds_minor;
                m.version += 1;
                ctx.put_until(MINUTES, &key, &m, minute + keep)?;
                let mut b = ctx.get(MINUTE_BASE, &key)?.unwrap_or_default();
                b.gmv_base_minor += s.gmv_base_minor;
                b.refunds_base_minor += s.refunds_base_minor;
                ctx.put_until(MINUTE_BASE, &key, &b, minute + keep)?;
                let history = self.plans_of(ctx, &s.vendor_id)?;
                let plan = history.at(minute).unwrap_or(self.config.default_plan.as_str()).to_string();
                let bps = self.config.commission_bps.get(&plan).copied().unwrap_or(0);
                let net_sales = m.gmv_minor - m.refunds_minor;
                let commission_of = |net: i64| commission_minor(net, bps);
                let commission = commission_of(net_sales);
                let net_payout = net_sales - commission;
                // The same rules on the base sums (each converted at its own event time).
                let net_sales_base = b.gmv_base_minor - b.refunds_base_minor;
                let commission_base = commission_of(net_sales_base);
                let t = ctx.time();
                let clamp = |v: i64| v.clamp(0, i64::from(i32::MAX)) as i32;
                ctx.emit(Event::VendorSalesMinute(VendorSalesMinute {
                    event_id: fresh_id(t, &["minute", &key, &s.event_id]),
                    occurred_at: Timestamp(t),
                    vendor_id: s.vendor_id.clone(),
                    minute: s.minute,
                    currency: s.currency.clone(),
                    orders: clamp(m.orders),
                    units: clamp(m.units),
                    gmv_minor: m.gmv_minor,
                    refunds_minor: m.refunds_minor,
                    commission_minor: commission,
                    net_payout_minor: net_payout,
                    base_currency: self.config.base_currency.clone(),
                    gmv_base_minor: b.gmv_base_minor,
                    net_payout_base_minor: net_sales_base - commission_base,
                    version: m.version,
                    refunds_base_minor: b.refunds_base_minor,
                    commission_base_minor: commission_base,
                }));
            }
            _ => {}
        }
        Ok(())
    }
}

/// The marketplace's commission on `net` minor units at `bps` basis points (1500 = 15 %),
/// rounded half to even: the one rule the sales figures and the vendors' transfers
/// ([`crate::payments`]) share.
pub fn commission_minor(net: i64, bps: i64) -> i64 {
    div_round_half_even(i128::from(net) * i128::from(bps), 10_000).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// Splits `amount` over `weights` in proportion, exactly: floors first, then the remainder
/// one unit at a time to the largest fractional parts (ties: by key).
pub fn split_proportionally(amount: i64, weights: &BTreeMap<String, i64>) -> BTreeMap<String, i64> {
    let total: i128 = weights.values().map(|w| i128::from(*w)).sum();
    if total <= 0 {
        let mut out = BTreeMap::new();
        if let Some(k) = weights.keys().next() {
            out.insert(k.clone(), amount);
        }
        return out;
    }
    let mut parts: Vec<(String, i64, i128)> = weights
        .iter()
        .map(|(k, w)| {
            let exact = i128::from(amount) * i128::from(*w);
            (k.clone(), exact.div_euclid(total) as i64, exact.rem_euclid(total))
        })
        .collect();
    let mut left = amount - parts.iter().map(|p| p.1).sum::<i64>();
    parts.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    for p in parts.iter_mut() {
        if left == 0 {
            break;
        }
        p.1 += 1;
        left -= 1;
    }
    parts.into_iter().map(|(k, v, _)| (k, v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestDriver;
    use storeflow_avro::*;

    const T0: i64 = 1_764_000_000_000; // a minute boundary

    fn uid(n: u128) -> String {
        uuid::Uuid::from_u128(n).to_string()
    }

    fn order(id: &str, t: i64, currency: &str, lines: &[(&str, i32, i64)]) -> Event {
        let a = Address { name: "A".into(), line1: "1".into(), line2: None, city: "X".into(), postal_code: "1".into(), region: None, country: "DE".into() };
        Event::OrderPlaced(OrderPlaced {
            event_id: uid(t as u128),
            occurred_at: Timestamp(t),
            order_id: id.into(),
            customer_id: "c".into(),
            session_id: None,
            customer_since: None,
            items: lines.iter().map(|(v, q, p)| OrderItem { sku: format!("s-{v}"), product_id: "p".into(), vendor_id: v.to_string(), quantity: *q, unit_price_minor: *p }).collect(),
            currency: currency.into(),
            shipping_address: a.clone(),
            billing_address: a,
            shipping_minor: 0,
            tax_minor: 0,
            discount_minor: 0,
            payment_method_token: "pm".into(),
            client_ip: "203.0.113.1".into(),
        })
    }

    fn refund(order: &str, t: i64, amount: i64, lines: Vec<RefundLine>) -> Event {
        refund_in(order, t, "EUR", amount, lines)
    }

    fn refund_in(order: &str, t: i64, currency: &str, amount: i64, lines: Vec<RefundLine>) -> Event {
        Event::RefundIssued(RefundIssued { event_id: uid(9_000 + t as u128), occurred_at: Timestamp(t), order_id: order.into(), payment_id: "pi".into(), refund_id: format!("re-{t}"), amount_minor: amount, currency: currency.into(), reason: "return".into(), lines })
    }

    fn minutes(d: &TestDriver) -> Vec<VendorSalesMinute> {
        d.outputs::<Event>(Topic::VendorSales.name()).into_iter().filter_map(|e| if let Event::VendorSalesMinute(m) = e { Some(m) } else { None }).collect()
    }

    fn last(d: &TestDriver, vendor: &str, minute: i64) -> VendorSalesMinute {
        minutes(d).into_iter().filter(|m| m.vendor_id == vendor && m.minute.millis() == minute).last().expect("a minute")
    }

    fn rate(d: &mut TestDriver, base: &str, quote: &str, rate_e9: i64) {
        rate_at(d, T0, base, quote, rate_e9);
    }

    fn rate_at(d: &mut TestDriver, at: i64, base: &str, quote: &str, rate_e9: i64) {
        d.pipe(Event::ExchangeRateUpdated(ExchangeRateUpdated { event_id: uid(77 + rate_e9 as u128), occurred_at: Timestamp(at), base_currency: base.into(), quote_currency: quote.into(), rate_e9 }));
    }

    #[test]
    fn each_sale_converts_with_the_rate_in_force_at_its_own_time_whenever_a_later_rate_arrives() {
        let mut d = TestDriver::new(Sales::new(SalesConfig::default()));
        rate_at(&mut d, T0 - 1, "USD", "EUR", 900_000_000);
        // A new rate takes effect half-way through the minute.
        rate_at(&mut d, T0 + 30_000, "USD", "EUR", 1_000_000_000);
        d.pipe(order("o1", T0 + 10_000, "USD", &[("v1", 1, 1_000)]));
        assert_eq!(last(&d, "v1", T0).gmv_base_minor, 900, "$10.00 at €0.90 (before the new rate)");
        d.pipe(order("o2", T0 + 40_000, "USD", &[("v1", 1, 1_000)]));
        assert_eq!(last(&d, "v1", T0).gmv_base_minor, 900 + 1_000, "then $10.00 at €1.00");
        // A later rate, for a time already counted, changes nothing already counted.
        rate_at(&mut d, T0 + 50_000, "USD", "EUR", 2_000_000_000);
        d.pipe(order("o3", T0 + 45_000, "USD", &[("v1", 1, 1_000)]));
        assert_eq!(last(&d, "v1", T0).gmv_base_minor, 900 + 2 * 1_000, "o3 is dated before the €2.00 rate");
    }

    #[test]
    fn base_amounts_are_sums_of_lines_converted_one_by_one_and_commission_plus_payout_conserve_them() {
        let mut d = TestDriver::new(Sales::new(SalesConfig::default()));
        rate(&mut d, "EUR", "JPY", 150_000_000_000); // 1 EUR = 150 JPY
        let mut rates = Rates::new("EUR");
        rates.record("EUR", "JPY", T0, 150_000_000_000);
        let (line, whole) = (rates.to_base(100, "JPY", T0).unwrap(), rates.to_base(300, "JPY", T0).unwrap());
        assert_eq!((line, whole), (67, 200), "¥100 = 66.67 cents → 67; ¥300 = 200 cents");
        d.pipe(order("o1", T0, "JPY", &[("v1", 1, 100), ("v1", 1, 100), ("v1", 1, 100)]));
        assert_eq!(last(&d, "v1", T0).gmv_base_minor, 3 * line, "the sum of the converted lines, as the analytics store sums them");
        d.pipe(refund_in("o1", T0 + 1_000, "JPY", 100, vec![RefundLine { sku: "s-v1".into(), vendor_id: "v1".into(), quantity: 1, amount_minor: 100 }]));
        let m = last(&d, "v1", T0);
        assert_eq!(m.refunds_base_minor, line);
        assert_eq!(m.gmv_base_minor - m.refunds_base_minor, m.commission_base_minor + m.net_payout_base_minor);
        assert_eq!(m.commission_base_minor, 20, "15 % of 1.34 = 0.201 → 0.20");
        assert_eq!(m.gmv_minor - m.refunds_minor, m.commission_minor + m.net_payout_minor);
    }

    #[test]
    fn an_order_is_split_by_vendor_with_commission_and_payout_that_add_up() {
        let mut d = TestDriver::new(Sales::new(SalesConfig::default()));
        d.pipe(Event::VendorOnboarded(VendorOnboarded { event_id: uid(1), occurred_at: Timestamp(T0), vendor_id: "v-pro".into(), name: "P".into(), country: "DE".into(), plan: "pro".into(), payout_currency: "EUR".into(), stripe_account_id: None }));
        d.pipe(order("o1", T0 + 5_000, "EUR", &[("v-pro", 2, 1_005), ("v-basic", 1, 333)]));
        let pro = last(&d, "v-pro", T0);
        assert_eq!((pro.orders, pro.units, pro.gmv_minor), (1, 2, 2_010));
        assert_eq!(pro.commission_minor, 241, "12 % of 20.10 = 2.412 → 2.41");
        assert_eq!(pro.net_payout_minor, 2_010 - 241);
        let basic = last(&d, "v-basic", T0);
        assert_eq!(basic.commission_minor, 50, "15 % of 3.33 = 0.4995 → 0.50");
        assert_eq!(basic.gmv_minor - basic.refunds_minor, basic.commission_minor + basic.net_payout_minor);
    }

    #[test]
    fn a_late_refund_updates_the_minute_it_happened_in() {
        let mut d = TestDriver::new(Sales::new(SalesConfig::default()));
        d.pipe(order("o1", T0 + 1_000, "EUR", &[("v1", 1, 10_000)]));
        d.pipe(order("o2", T0 + 600_000, "EUR", &[("v1", 1, 5_000)]));
        // A refund of the first order's value, issued in the minute T0+2min, arriving after
        // later sales were processed.
        d.pipe(refund("o1", T0 + 120_000, 4_000, vec![]));
        let m = last(&d, "v1", T0 + 120_000);
        assert_eq!((m.gmv_minor, m.refunds_minor, m.orders), (0, 4_000, 0));
        assert_eq!(m.commission_minor, -600, "commission is given back with the refund");
        assert_eq!(last(&d, "v1", T0).gmv_minor, 10_000, "the sale's own minute is untouched");
    }

    #[test]
    fn a_refund_without_lines_splits_by_vendor_share_exactly() {
        let mut d = TestDriver::new(Sales::new(SalesConfig::default()));
        d.pipe(order("o1", T0, "EUR", &[("a", 1, 1_000), ("b", 1, 1_000), ("c", 1, 1_000)]));
        d.pipe(refund("o1", T0 + 30_000, 1_000, vec![]));
        let parts: i64 = ["a", "b", "c"].iter().map(|v| last(&d, v, T0).refunds_minor).sum();
        assert_eq!(parts, 1_000, "333 + 333 + 334");
        assert_eq!(split_proportionally(1_000, &[("a".to_string(), 1), ("b".to_string(), 1), ("c".to_string(), 1)].into_iter().collect())["a"], 334);
    }

    #[test]
    fn amounts_convert_to_the_base_currency_rounding_half_to_even_directly_or_through_the_inverse() {
        let mut d = TestDriver::new(Sales::new(SalesConfig::default()));
        rate(&mut d, "JPY", "EUR", 6_172_840); // 1 JPY = 0.00617284 EUR
        d.pipe(order("o1", T0, "JPY", &[("v1", 1, 1_000)]));
        assert_eq!(last(&d, "v1", T0).gmv_base_minor, 617, "¥1000 = €6.17284 → 617 cents");
        rate(&mut d, "EUR", "USD", 1_080_000_000); // only the inverse is known for USD
        d.pipe(order("o2", T0 + 60_000, "USD", &[("v1", 1, 1_080)]));
        assert_eq!(last(&d, "v1", T0 + 60_000).gmv_base_minor, 1_000, "$10.80 / 1.08 = €10.00");
        assert_eq!(convert(5, "EUR", "EUR", 500_000_000), Some(2), "2.5 rounds to the even 2");
        assert_eq!(convert(7, "EUR", "EUR", 500_000_000), Some(4), "3.5 rounds to the even 4");
        assert_eq!(div_round_half_even(-5, 2), -2);
    }

    fn plan_changed(vendor: &str, plan: &str, status: &str, effective_at: i64) -> Event {
        Event::VendorPlanChanged(VendorPlanChanged { event_id: uid(5_000 + effective_at as u128), occurred_at: Timestamp(effective_at), vendor_id: vendor.into(), plan: plan.into(), subscription_id: Some(format!("sub_test_{vendor}")), status: status.into(), effective_at: Timestamp(effective_at) })
    }

    #[test]
    fn an_order_before_a_plan_change_pays_the_old_rate_even_when_the_change_is_processed_first() {
        let mut d = TestDriver::new(Sales::new(SalesConfig::default()));
        d.pipe(Event::VendorOnboarded(VendorOnboarded { event_id: uid(1), occurred_at: Timestamp(T0 - 86_400_000), vendor_id: "v1".into(), name: "V".into(), country: "DE".into(), plan: "basic".into(), payout_currency: "EUR".into(), stripe_account_id: None }));
        // The upgrade to pro (12 %) from T0 + 10 min is processed before an order of T0 (lag).
        d.pipe(plan_changed("v1", "pro", "active", T0 + 600_000));
        d.pipe(order("early", T0 + 5_000, "EUR", &[("v1", 1, 10_000)]));
        d.pipe(order("late", T0 + 660_000, "EUR", &[("v1", 1, 10_000)]));
        assert_eq!(last(&d, "v1", T0).commission_minor, 1_500, "basic's 15 % before the change");
        assert_eq!(last(&d, "v1", T0 + 660_000).commission_minor, 1_200, "pro's 12 % after it");
        // A cancelled subscription puts the free plan back in force.
        d.pipe(plan_changed("v1", "pro", "canceled", T0 + 1_200_000));
        d.pipe(order("after-cancel", T0 + 1_260_000, "EUR", &[("v1", 1, 10_000)]));
        assert_eq!(last(&d, "v1", T0 + 1_260_000).commission_minor, 1_500);
    }

    #[test]
    fn a_plan_kept_by_an_older_version_stays_in_force_until_the_next_change() {
        // The old store held a plain plan string, in postcard: it still reads as one.
        let legacy = crate::state::encoding::encode_value(&"enterprise".to_string(), None).unwrap();
        let plan: String = crate::state::encoding::decode_value(&legacy).unwrap();
        let mut h = PlanHistory::since_always(Some(plan));
        assert_eq!(h.at(i64::MIN + 1), Some("enterprise"));
        h.record(T0, "pro");
        assert_eq!((h.at(T0 - 1), h.at(T0)), (Some("enterprise"), Some("pro")));
        assert_eq!(PlanHistory::since_always(None).at(T0), None);
    }

    #[test]
    fn the_plan_in_force_is_the_last_to_take_effect_and_the_first_before_any() {
        let mut h = PlanHistory::default();
        assert_eq!(h.at(T0), None);
        h.record(T0 + 10, "pro");
        h.record(T0, "basic");
        h.record(T0, "basic");
        assert_eq!(h.changes.len(), 2, "the same change twice is kept once");
        assert_eq!((h.at(T0 - 1), h.at(T0 + 9), h.at(T0 + 10)), (Some("basic"), Some("basic"), Some("pro")));
    }
}
