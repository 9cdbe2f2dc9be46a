//! fraud — scores every placed order 0–100 from streaming features, with the reasons.
//!
//! Three stages in one processor (all its topics share the partition count, so each key —
//! order, customer, IP — always meets in the same task):
//! 1. keyed by order (`storefront.orders`): order-level signals — billing vs shipping country,
//!    a high-risk destination, a new account — and one `FraudCheck` per dimension, re-keyed
//!    by customer and by client IP to `fraud.checks`;
//! 2. keyed by customer or IP (`fraud.checks`): sliding windows (10 min, 1 h, 24 h) of the
//!    key's recent orders — counts, distinct payment methods and shipping addresses, distinct
//!    customers per IP, tiny orders (card testing) — and, per customer, the amount against
//!    their own history (z-score over a running mean and variance); a `FraudSignal` with the
//!    points and reasons goes back, keyed by order, to `fraud.signals`;
//! 3. keyed by order (`fraud.signals`): once both dimensions answered, the score (capped at
//!    100), the reasons largest first, and the decision go to `fraud.scores`.
//!
//! Weights, windows and thresholds are configuration (`[processors.fraud]`). Window state
//! expires with the stream (a key's window is kept until 24 h after its last order, a
//! customer's amount history `history_days`, 90 by default), so state stays bounded:
//! `cargo bench -p storeflow-bench --bench fraud_state` measures it over 1 M orders.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use storeflow_avro::{Event, FraudCheck, FraudReason, FraudScored, FraudSignal, Timestamp, Topic, pii};

use crate::{Ctx, Flow, Input, ProcessError, Processor, Store};

/// Points per signal.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FraudWeights {
    /// More than `ip_orders_10m` orders from one IP in 10 minutes.
    pub ip_velocity_10m: i32,
    /// More than `ip_orders_1h` orders from one IP in an hour.
    pub ip_velocity_1h: i32,
    /// At least `ip_customers_1h` distinct customers from one IP in an hour.
    pub ip_customers_1h: i32,
    /// At least `ip_customers_24h` distinct customers from one IP in a day.
    pub ip_customers_24h: i32,
    /// More than `distinct_cards_24h` (and at least 3) payment methods from one IP in 24 h.
    pub ip_cards_24h: i32,
    /// More than `customer_orders_1h` orders by one customer in an hour.
    pub customer_velocity_1h: i32,
    /// At least `distinct_cards_24h` payment methods by one customer in 24 h.
    pub customer_cards_24h: i32,
    /// At least `distinct_addresses_24h` shipping addresses by one customer in 24 h.
    pub customer_addresses_24h: i32,
    /// The amount is more than `zscore` standard deviations above the customer's mean.
    pub amount_zscore: i32,
    /// At least `tiny_orders_10m` orders under `tiny_order_minor` in 10 minutes (card testing).
    pub card_testing: i32,
    /// Billing and shipping countries differ.
    pub country_mismatch: i32,
    /// Shipping to a country in `high_risk_countries`.
    pub high_risk_country: i32,
    /// The account is younger than an hour.
    pub new_account_1h: i32,
    /// The account is younger than a day.
    pub new_account_24h: i32,
}

impl Default for FraudWeights {
    fn default() -> Self {
        FraudWeights {
            ip_velocity_10m: 25,
            ip_velocity_1h: 10,
            ip_customers_1h: 25,
            ip_customers_24h: 20,
            ip_cards_24h: 15,
            customer_velocity_1h: 15,
            customer_cards_24h: 20,
            customer_addresses_24h: 10,
            amount_zscore: 20,
            card_testing: 25,
            country_mismatch: 15,
            high_risk_country: 30,
            new_account_1h: 25,
            new_account_24h: 5,
        }
    }
}

/// `[processors.fraud]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FraudConfig {
    /// Score at or above which the order is held (`decision = "hold"`).
    pub hold_threshold: i32,
    /// Score at or above which the order is flagged for review.
    pub review_threshold: i32,
    /// ISO-3166 alpha-2 destinations that add points.
    pub high_risk_countries: BTreeSet<String>,
    /// Points per signal.
    pub weights: FraudWeights,
    /// Orders from one IP in 10 minutes above which `ip_velocity_10m` applies.
    pub ip_orders_10m: usize,
    /// Orders from one IP in an hour above which `ip_velocity_1h` applies.
    pub ip_orders_1h: usize,
    /// Distinct customers behind one IP in an hour from which `ip_customers_1h` applies.
    pub ip_customers_1h: usize,
    /// Distinct customers behind one IP in a day from which `ip_customers_24h` applies.
    pub ip_customers_24h: usize,
    /// Orders by one customer in an hour above which `customer_velocity_1h` applies.
    pub customer_orders_1h: usize,
    /// Distinct payment methods in a day from which the card signals apply.
    pub distinct_cards_24h: usize,
    /// Distinct shipping addresses by one customer in a day from which `customer_addresses_24h` applies.
    pub distinct_addresses_24h: usize,
    /// Orders below this total (minor units) count as card-testing probes.
    pub tiny_order_minor: i64,
    /// Probes by one customer in 10 minutes from which `card_testing` applies.
    pub tiny_orders_10m: usize,
    /// Standard deviations above the customer's mean amount beyond which `amount_zscore` applies.
    pub zscore: f64,
    /// A customer's history counts for the z-score from this many orders on.
    pub zscore_min_orders: u64,
    /// Days a customer's amount history outlives their last order (the one store that is
    /// per customer rather than per window: it holds one small entry per customer active in
    /// this many days).
    pub history_days: i64,
}

impl Default for FraudConfig {
    fn default() -> Self {
        FraudConfig {
            hold_threshold: 70,
            review_threshold: 40,
            high_risk_countries: ["NG", "RU", "KP", "IR", "SY"].iter().map(|s| s.to_string()).collect(),
            weights: FraudWeights::default(),
            ip_orders_10m: 3,
            ip_orders_1h: 6,
            ip_customers_1h: 3,
            ip_customers_24h: 5,
            customer_orders_1h: 3,
            distinct_cards_24h: 3,
            distinct_addresses_24h: 3,
            tiny_order_minor: 300,
            tiny_orders_10m: 3,
            zscore: 3.0,
            zscore_min_orders: 5,
            history_days: 90,
        }
    }
}

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
/// Orders kept per window key (beyond that the oldest go first).
const WINDOW_CAP: usize = 500;

/// One order in a key's window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub at: i64,
    pub total_minor: i64,
    pub payment: String,
    pub address: String,
    pub customer: String,
}

/// The last 24 h of one customer's or IP's orders.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub seen: Vec<Seen>,
}

/// A customer's amount history (Welford's running mean and variance), per currency.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub currency: String,
    pub n: u64,
    pub mean: f64,
    pub m2: f64,
}

/// An order waiting for its dimensions' answers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub customer_id: String,
    pub reasons: Vec<(String, i32, String)>,
    pub answered: BTreeSet<String>,
}

/// Orders waiting for their windows' signals, by order id.
pub const PENDING: Store<Pending> = Store::new("pending");
/// A day's window per `<dimension>|<key>` (a customer, an IP).
pub const WINDOWS: Store<Window> = Store::new("windows");
/// Order amounts per customer, kept `history_days`.
pub const HISTORY: Store<History> = Store::new("history");

/// The fraud processor.
pub struct Fraud(FraudConfig);

/// A short, stable fingerprint (FNV-1a) — enough to count distinct values, never reversible
/// to the token.
fn fingerprint(parts: &[&str]) -> String {
    format!("{:016x}", fingerprint_hash(parts))
}

fn fingerprint_hash(parts: &[&str]) -> u64 {
    crate::ids::fnv1a(0xcbf2_9ce4_8422_2325, 0x1f, parts)
}

fn fresh_id(t: i64, parts: &[&str]) -> String {
    // The fingerprint's hash, without formatting it to hex and parsing it back.
    crate::ids::event_id_from_hash(fingerprint_hash(parts), 7, t)
}

impl Fraud {
    fn check(&self, c: &FraudCheck, ctx: &mut Ctx<'_, Event>) -> Result<(), ProcessError> {
        let w = &self.0.weights;
        let cfg = &self.0;
        let now = c.occurred_at.millis();
        let wkey = format!("{}|{}", c.dimension, c.dimension_key);
        let mut window = ctx.get(WINDOWS, &wkey)?.unwrap_or_default();
        window.seen.retain(|s| s.at > now - DAY);
        window.seen.push(Seen {
            at: now,
            total_minor: c.total_minor,
            payment: c.payment_fingerprint.clone(),
            address: c.address_fingerprint.clone(),
            customer: c.customer_id.clone(),
        });
        if window.seen.len() > WINDOW_CAP {
            let drop = window.seen.len() - WINDOW_CAP;
            window.seen.drain(..drop);
        }
        let within = |d: i64| window.seen.iter().filter(move |s| s.at > now - d);
        let distinct = |d: i64, f: fn(&Seen) -> &str| within(d).map(f).collect::<BTreeSet<_>>().len();
        let mut reasons: Vec<(String, i32, String)> = Vec::new();
        let mut add = |code: &str, points: i32, detail: String| {
            if points > 0 {
                reasons.push((code.to_string(), points, detail));
            }
        };
        match c.dimension.as_str() {
            "ip" => {
                let n10 = within(10 * MIN).count();
                if n10 > cfg.ip_orders_10m {
                    add("ip_velocity_10m", w.ip_velocity_10m, format!("{n10} orders from one IP address in 10 minutes"));
                }
                let n1h = within(HOUR).count();
                if n1h > cfg.ip_orders_1h {
                    add("ip_velocity_1h", w.ip_velocity_1h, format!("{n1h} orders from one IP address in an hour"));
                }
                let customers = distinct(HOUR, |s| &s.customer);
                if customers >= cfg.ip_customers_1h {
                    add("ip_customers_1h", w.ip_customers_1h, format!("{customers} customers ordered from one IP address in an hour"));
                }
                let customers_day = distinct(DAY, |s| &s.customer);
                if customers_day >= cfg.ip_customers_24h {
                    add("ip_customers_24h", w.ip_customers_24h, format!("{customers_day} customers ordered from one IP address in 24 hours"));
                }
                let cards = distinct(DAY, |s| &s.payment);
                if cards >= cfg.distinct_cards_24h.max(2) + 1 {
                    add("ip_cards_24h", w.ip_cards_24h, format!("{cards} payment methods from one IP address in 24 hours"));
                }
            }
            _ => {
                let n1h = within(HOUR).count();
                if n1h > cfg.customer_orders_1h {
                    add("customer_velocity_1h", w.customer_velocity_1h, format!("{n1h} orders in an hour"));
                }
                let cards = distinct(DAY, |s| &s.payment);
                if cards >= cfg.distinct_cards_24h {
                    add("customer_cards_24h", w.customer_cards_24h, format!("{cards} payment methods in 24 hours"));
                }
                let addresses = distinct(DAY, |s| &s.address);
                if addresses >= cfg.distinct_addresses_24h {
                    add("customer_addresses_24h", w.customer_addresses_24h, format!("{addresses} shipping addresses in 24 hours"));
                }
                let tiny = within(10 * MIN).filter(|s| s.total_minor < cfg.tiny_order_minor).count();
                if tiny >= cfg.tiny_orders_10m {
                    add("card_testing", w.card_testing, format!("{tiny} orders under {} in 10 minutes", cfg.tiny_order_minor));
                }
                let hkey = c.dimension_key.clone();
                let mut h = ctx.get(HISTORY, &hkey)?.unwrap_or_default();
                if h.currency != c.currency {
                    h = History { currency: c.currency.clone(), ..History::default() };
                }
                let x = c.total_minor as f64;
                if h.n >= cfg.zscore_min_orders {
                    let sd = (h.m2 / (h.n as f64 - 1.0)).sqrt();
                    if sd > 0.0 {
                        let z = (x - h.mean) / sd;
                        if z > cfg.zscore {
                            add("amount_zscore", w.amount_zscore, format!("amount {:.1} standard deviations above the customer's mean", z));
                        }
                    }
                }
                h.n += 1;
                let delta = x - h.mean;
                h.mean += delta / h.n as f64;
                h.m2 += delta * (x - h.mean);
                ctx.put_until(HISTORY, &hkey, &h, now + cfg.history_days.max(1) * DAY)?;
            }
        }
        ctx.put_until(WINDOWS, &wkey, &window, now + DAY)?;
        let points = reasons.iter().map(|r| r.1).sum();
        let t = ctx.time();
        ctx.emit(Event::FraudSignal(FraudSignal {
            event_id: fresh_id(t, &["signal", &c.order_id, &c.dimension]),
            occurred_at: Timestamp(now),
            order_id: c.order_id.clone(),
            dimension: c.dimension.clone(),
            points,
            reasons: reasons.into_iter().map(|(code, points, detail)| FraudReason { code, points, detail }).collect(),
        }));
        Ok(())
    }
}

impl Processor for Fraud {
    const NAME: &'static str = "fraud";
    type Config = FraudConfig;
    type In = Event;
    type Out = Event;

    fn new(config: FraudConfig) -> Self {
        Fraud(config)
    }

    fn flow(&self) -> Flow {
        // Three stages in one processor; each has its own state, so they need not wait for
        // each other: orders → checks (re-keyed by customer and IP) → signals → scores.
        Flow::new()
            .group(&[Topic::Orders.name()])
            .emits(&[Topic::FraudChecks.name()])
            .group(&[Topic::FraudChecks.name()])
            .emits(&[Topic::FraudSignals.name()])
            .group(&[Topic::FraudSignals.name()])
            .emits(&[Topic::FraudScores.name()])
            .build()
    }

    fn stores(&self) -> &'static [&'static str] {
        &[PENDING.name, WINDOWS.name, HISTORY.name]
    }

    fn process(&mut self, input: &Input<Event>, ctx: &mut Ctx<'_, Event>) -> Result<(), ProcessError> {
        let w = &self.0.weights;
        match &input.value {
            Event::OrderPlaced(o) => {
                o.check_amounts().map_err(ProcessError::permanent)?;
                let now = o.occurred_at.millis();
                let mut reasons = Vec::new();
                let (bill, ship) = (&o.billing_address.country, &o.shipping_address.country);
                if bill != ship {
                    reasons.push(("country_mismatch".to_string(), w.country_mismatch, format!("billed in {bill}, shipped to {ship}")));
                }
                if self.0.high_risk_countries.contains(ship) {
                    reasons.push(("high_risk_country".to_string(), w.high_risk_country, format!("ships to {ship}")));
                }
                if let Some(since) = o.customer_since {
                    let age = now - since.millis();
                    if age < HOUR {
                        reasons.push(("new_account".to_string(), w.new_account_1h, format!("account {} minutes old", age / MIN)));
                    } else if age < DAY {
                        reasons.push(("new_account".to_string(), w.new_account_24h, format!("account {} hours old", age / HOUR)));
                    }
                }
                reasons.retain(|r| r.1 > 0);
                let pending = Pending { customer_id: o.customer_id.clone(), reasons, answered: BTreeSet::new() };
                ctx.put_until(PENDING, &o.order_id, &pending, now + DAY)?;
                // Personal data arrives sealed per customer (storeflow_avro::pii): the checks
                // compare pseudonyms, the same for every customer, and never open anything, so
                // an erasure cannot change a verdict.
                let a = &o.shipping_address;
                let p = pii::pseudonym;
                let address = fingerprint(&[p(&a.line1), p(a.line2.as_deref().unwrap_or("")), p(&a.city), p(&a.postal_code), &a.country]);
                let payment = fingerprint(&[p(&o.payment_method_token)]);
                let ip = p(&o.client_ip).to_string();
                for (dimension, key) in [("customer", &o.customer_id), ("ip", &ip)] {
                    ctx.emit(Event::FraudCheck(FraudCheck {
                        event_id: fresh_id(now, &["check", &o.order_id, dimension]),
                        occurred_at: o.occurred_at,
                        order_id: o.order_id.clone(),
                        dimension: dimension.into(),
                        dimension_key: key.clone(),
                        customer_id: o.customer_id.clone(),
                        client_ip: o.client_ip.clone(),
                        total_minor: o.total_minor(),
                        currency: o.currency.clone(),
                        payment_fingerprint: payment.clone(),
                        address_fingerprint: address.clone(),
                    }));
                }
                Ok(())
            }
            Event::FraudCheck(c) => self.check(c, ctx),
            Event::FraudSignal(s) => {
                let Some(mut p) = ctx.get(PENDING, &s.order_id)? else {
                    return Ok(()); // already scored (a redelivered signal) or expired
                };
                if !p.answered.insert(s.dimension.clone()) {
                    return Ok(());
                }
                p.reasons.extend(s.reasons.iter().map(|r| (r.code.clone(), r.points, r.detail.clone())));
                if p.answered.len() < 2 {
                    // Same expiry as when the order was placed (a signal carries the order's time).
                    return ctx.put_until(PENDING, &s.order_id, &p, s.occurred_at.millis() + DAY);
                }
                ctx.delete(PENDING, &s.order_id)?;
                p.reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                let score = p.reasons.iter().map(|r| r.1).sum::<i32>().clamp(0, 100);
                let decision = if score >= self.0.hold_threshold {
                    "hold"
                } else if score >= self.0.review_threshold {
                    "review"
                } else {
                    "allow"
                };
                let t = ctx.time();
                ctx.emit(Event::FraudScored(FraudScored {
                    event_id: fresh_id(t, &["scored", &s.order_id]),
                    occurred_at: s.occurred_at,
                    order_id: s.order_id.clone(),
                    customer_id: p.customer_id,
                    score,
                    reasons: p.reasons.into_iter().map(|(code, points, detail)| FraudReason { code, points, detail }).collect(),
                    decision: decision.into(),
                }));
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestDriver;
    use storeflow_avro::*;

    const T0: i64 = 1_764_000_000_000;

    struct Run {
        d: TestDriver,
        n: u128,
    }

    impl Run {
        fn new() -> Run {
            Run::with(FraudConfig::default())
        }
        fn with(config: FraudConfig) -> Run {
            Run { d: TestDriver::new(Fraud::new(config)), n: 0 }
        }
        #[allow(clippy::too_many_arguments)]
        fn order(&mut self, at: i64, customer: &str, ip: &str, card: &str, total: i64, bill: &str, ship: &str, age_ms: i64) -> String {
            self.n += 1;
            let id = format!("o-{}", self.n);
            let a = |c: &str| Address { name: "A".into(), line1: format!("{} Main St", self.n % 3), line2: None, city: "X".into(), postal_code: "1".into(), region: None, country: c.into() };
            self.d.pipe(Event::OrderPlaced(OrderPlaced {
                event_id: uuid::Uuid::from_u128(self.n).to_string(),
                occurred_at: Timestamp(T0 + at),
                order_id: id.clone(),
                customer_id: customer.into(),
                session_id: None,
                customer_since: Some(Timestamp(T0 + at - age_ms)),
                items: vec![OrderItem { sku: "s".into(), product_id: "p".into(), vendor_id: "v".into(), quantity: 1, unit_price_minor: total }],
                currency: "EUR".into(),
                shipping_address: a(ship),
                billing_address: a(bill),
                shipping_minor: 0,
                tax_minor: 0,
                discount_minor: 0,
                payment_method_token: card.into(),
                client_ip: ip.into(),
            }));
            id
        }
        fn score(&self, order: &str) -> FraudScored {
            self.d
                .outputs::<Event>(Topic::FraudScores.name())
                .into_iter()
                .find_map(|e| match e {
                    Event::FraudScored(s) if s.order_id == order => Some(s),
                    _ => None,
                })
                .expect("the order was scored")
        }
    }

    const OLD: i64 = 400 * DAY;

    #[test]
    fn an_ordinary_order_scores_low_and_is_allowed() {
        let mut r = Run::new();
        let o = r.order(0, "c1", "10.0.0.1", "pm1", 5_000, "DE", "DE", OLD);
        let s = r.score(&o);
        assert_eq!((s.score, s.decision.as_str()), (0, "allow"), "{:?}", s.reasons);
    }

    #[test]
    fn a_ring_of_new_accounts_on_one_ip_shipping_abroad_is_held_with_its_reasons() {
        let mut r = Run::new();
        let mut last = String::new();
        for i in 0..5 {
            last = r.order(i * 60_000, &format!("new-{i}"), "198.51.100.66", &format!("pm-{i}"), 2_000, "DE", "NG", 5 * MIN);
        }
        let s = r.score(&last);
        assert!(s.score >= 70 && s.decision == "hold", "{s:?}");
        let codes: Vec<&str> = s.reasons.iter().map(|x| x.code.as_str()).collect();
        for c in ["ip_velocity_10m", "ip_customers_1h", "high_risk_country", "country_mismatch", "new_account"] {
            assert!(codes.contains(&c), "{c} missing from {codes:?}");
        }
        assert!(s.reasons.windows(2).all(|w| w[0].points >= w[1].points), "reasons are not largest first");
    }

    #[test]
    fn velocity_counts_only_orders_inside_the_window() {
        let mut r = Run::new();
        for i in 0..4 {
            r.order(i * 20 * MIN, &format!("c{i}"), "10.9.9.9", &format!("pm{i}"), 5_000, "DE", "DE", OLD);
        }
        // Four orders spread over an hour: never more than one in any 10 minutes.
        let o = r.order(61 * MIN, "c9", "10.9.9.9", "pm9", 5_000, "DE", "DE", OLD);
        let codes: Vec<String> = r.score(&o).reasons.into_iter().map(|x| x.code).collect();
        assert!(!codes.contains(&"ip_velocity_10m".to_string()), "{codes:?}");
    }

    #[test]
    fn an_amount_far_above_the_customers_own_history_adds_a_zscore_reason() {
        let mut r = Run::new();
        for (i, amount) in [4_000, 5_000, 6_000, 5_500, 4_500, 5_200].iter().enumerate() {
            r.order(i as i64 * DAY, "c1", &format!("10.0.0.{i}"), "pm1", *amount, "DE", "DE", OLD);
        }
        let normal = r.order(7 * DAY, "c1", "10.0.0.7", "pm1", 5_300, "DE", "DE", OLD);
        assert!(r.score(&normal).reasons.iter().all(|x| x.code != "amount_zscore"));
        let big = r.order(8 * DAY, "c1", "10.0.0.8", "pm1", 90_000, "DE", "DE", OLD);
        assert!(r.score(&big).reasons.iter().any(|x| x.code == "amount_zscore"), "{:?}", r.score(&big));
    }

    #[test]
    fn many_tiny_orders_look_like_card_testing() {
        let mut r = Run::new();
        let mut last = String::new();
        for i in 0..3 {
            last = r.order(i * MIN, "c1", &format!("10.1.1.{i}"), &format!("pm{i}"), 100, "DE", "DE", OLD);
        }
        let codes: Vec<String> = r.score(&last).reasons.into_iter().map(|x| x.code).collect();
        assert!(codes.contains(&"card_testing".into()) && codes.contains(&"customer_cards_24h".into()), "{codes:?}");
    }

    #[test]
    fn window_state_expires_a_day_after_a_keys_last_order() {
        let mut r = Run::new();
        r.order(0, "c1", "10.0.0.1", "pm1", 5_000, "DE", "DE", OLD);
        assert!(r.d.store("fraud", WINDOWS, "ip|10.0.0.1").is_some());
        r.d.advance_time(T0 + DAY + MIN);
        assert!(r.d.store("fraud", WINDOWS, "ip|10.0.0.1").is_none(), "the window outlived its day");
        assert!(r.d.store("fraud", HISTORY, "c1").is_some(), "the amount history is kept longer");
    }

    #[test]
    fn ip_velocity_applies_from_the_fourth_order_in_ten_minutes_not_the_third() {
        let mut r = Run::new();
        let codes = |r: &Run, o: &str| r.score(o).reasons.into_iter().map(|x| x.code).collect::<Vec<_>>();
        let mut ids = Vec::new();
        for i in 0..4 {
            ids.push(r.order(i * MIN, &format!("c{i}"), "10.7.7.7", "pm", 5_000, "DE", "DE", OLD));
        }
        assert!(!codes(&r, &ids[2]).contains(&"ip_velocity_10m".to_string()), "3 orders is the limit, not over it");
        assert!(codes(&r, &ids[3]).contains(&"ip_velocity_10m".to_string()), "the 4th order is over the limit");
    }

    #[test]
    fn weights_and_the_hold_threshold_come_from_configuration() {
        // By default a mismatched, high-risk destination alone is 45 points: review, not hold.
        let mut r = Run::new();
        let o = r.order(0, "c1", "10.0.0.1", "pm1", 5_000, "DE", "NG", OLD);
        assert_eq!(r.score(&o).decision, "review", "{:?}", r.score(&o));
        let mut cfg = FraudConfig { hold_threshold: 40, ..FraudConfig::default() };
        cfg.weights.country_mismatch = 0;
        let mut r = Run::with(cfg);
        let o = r.order(0, "c1", "10.0.0.1", "pm1", 5_000, "DE", "NG", OLD);
        let s = r.score(&o);
        assert_eq!(s.decision, "allow", "a zero weight drops the reason and 30 < 40: {s:?}");
        assert!(s.reasons.iter().all(|x| x.code != "country_mismatch"));
        let mut r = Run::with(FraudConfig { hold_threshold: 40, ..FraudConfig::default() });
        let o = r.order(0, "c1", "10.0.0.1", "pm1", 5_000, "DE", "NG", OLD);
        assert_eq!(r.score(&o).decision, "hold");
    }
}
