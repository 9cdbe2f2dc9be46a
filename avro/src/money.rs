//! Money: the contract's one set of rules for minor units, rounding and exchange rates.
//! The sales processor, the sinks, the API's views and the simulator all convert through
//! here, so vendor sales, ClickHouse GMV and the dashboards agree to the minor unit.
//!
//! - Amounts are integers in **minor units** of their ISO-4217 currency ([`exponent`]: 0 for
//!   JPY, 3 for KWD, 4 for CLF, 2 otherwise).
//! - `ExchangeRateUpdated { base_currency, quote_currency, rate_e9 }` says one unit of the
//!   base currency buys `rate_e9 / 10⁹` units of the quote currency, from its event time on.
//! - An amount converts with the **rate in force at its event time**: the newest one that
//!   took effect at or before it (the earliest known when none had yet), the pair read in
//!   either direction; the result is **rounded half to even** to a minor unit, computed in
//!   128-bit integers from the exact rate (no intermediate rounding).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Digits after the decimal point of an ISO-4217 currency's minor unit (2 unless listed).
pub fn exponent(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX" | "UYI" | "VND" | "VUV"
        | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        "CLF" | "UYW" => 4,
        _ => 2,
    }
}

/// `num / den` rounded half to even (`den > 0`).
pub fn div_round_half_even(num: i128, den: i128) -> i128 {
    let q = num.div_euclid(den);
    let r = num.rem_euclid(den);
    match (2 * r).cmp(&den) {
        std::cmp::Ordering::Less => q,
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal => q + (q & 1),
    }
}

/// `num / den` rounded half to even, as minor units (`None` when `den` is 0 or the result
/// does not fit in an i64).
fn quotient(num: Option<i128>, den: Option<i128>) -> Option<i64> {
    let (num, den) = (num?, den?);
    if den == 0 {
        return None;
    }
    let (num, den) = if den < 0 { (num.checked_neg()?, -den) } else { (num, den) };
    i64::try_from(div_round_half_even(num, den)).ok()
}

/// `amount` minor units of `from` in minor units of `to`, at `rate_e9` units of `to` per
/// unit of `from` (× 10⁹); `None` for a rate ≤ 0 or a result past i64.
pub fn convert(amount: i64, from: &str, to: &str, rate_e9: i64) -> Option<i64> {
    if rate_e9 <= 0 {
        return None;
    }
    let num = i128::from(amount).checked_mul(i128::from(rate_e9)).and_then(|n| n.checked_mul(10i128.pow(exponent(to))));
    quotient(num, Some(10i128.pow(exponent(from)) * 1_000_000_000))
}

/// Exchange rates seen so far, per `base/quote` pair, in time order, and the base currency
/// sums are kept in.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    base: String,
    pairs: HashMap<String, Vec<(i64, i64)>>,
}

impl Rates {
    /// No rates yet; `base` is the currency sums are kept in.
    pub fn new(base: &str) -> Self {
        Rates { base: base.to_string(), pairs: HashMap::new() }
    }

    /// The base currency.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Records `rate_e9` (quote per base × 10⁹) for `base/quote` from time `at` on.
    /// Recording the same rate twice changes nothing; a rate ≤ 0 is ignored.
    pub fn record(&mut self, base: &str, quote: &str, at: i64, rate_e9: i64) {
        if rate_e9 <= 0 {
            return;
        }
        let v = self.pairs.entry(format!("{base}/{quote}")).or_default();
        match v.binary_search_by_key(&at, |(t, _)| *t) {
            Ok(i) => v[i].1 = rate_e9,
            Err(i) => v.insert(i, (at, rate_e9)),
        }
    }

    /// Forgets the rates no amount dated at or after `horizon` can need: of each pair, those
    /// replaced before `horizon` (the one in force at `horizon` stays).
    pub fn forget_before(&mut self, horizon: i64) {
        for v in self.pairs.values_mut() {
            let in_force = v.partition_point(|(t, _)| *t <= horizon);
            v.drain(..in_force.saturating_sub(1));
        }
    }

    /// The rate of `pair` in force at `at`: the newest at or before it, else the earliest.
    fn rate_at(&self, pair: &str, at: i64) -> Option<i64> {
        let v = self.pairs.get(pair)?;
        let i = v.partition_point(|(t, _)| *t <= at);
        Some(if i == 0 { v.first()?.1 } else { v[i - 1].1 })
    }

    /// `amount_minor` of `currency` in base-currency minor units at time `at`, or `None`
    /// when no rate between the two is known (or the result does not fit).
    pub fn to_base(&self, amount_minor: i64, currency: &str, at: i64) -> Option<i64> {
        if currency == self.base {
            return Some(amount_minor);
        }
        let (eb, eq) = (exponent(&self.base), exponent(currency));
        let scale = |e: u32| 10i128.pow(e);
        let amount = i128::from(amount_minor);
        if let Some(r) = self.rate_at(&format!("{}/{currency}", self.base), at) {
            // amount_q / rate = amount_base; minor units rescaled by the exponents.
            return quotient(amount.checked_mul(scale(eb) * 1_000_000_000), i128::from(r).checked_mul(scale(eq)));
        }
        let r = self.rate_at(&format!("{currency}/{}", self.base), at)?;
        quotient(amount.checked_mul(i128::from(r)).and_then(|n| n.checked_mul(scale(eb))), Some(1_000_000_000 * scale(eq)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn usd_converts_to_eur_with_the_rate_in_force_at_the_event_time() {
        let mut r = Rates::new("EUR");
        r.record("EUR", "USD", 1_000, 1_100_000_000);
        r.record("EUR", "USD", 2_000, 1_250_000_000);
        assert_eq!(r.to_base(11_000, "USD", 1_500), Some(10_000));
        assert_eq!(r.to_base(12_500, "USD", 2_500), Some(10_000));
        // Before any rate: the earliest known.
        assert_eq!(r.to_base(11_000, "USD", 0), Some(10_000));
    }

    #[test]
    fn currencies_without_minor_units_are_rescaled() {
        let mut r = Rates::new("EUR");
        r.record("JPY", "EUR", 0, 6_000_000); // 1 JPY = 0.006 EUR
        assert_eq!(r.to_base(1_000, "JPY", 10), Some(600), "¥1,000 is €6.00, not €0.06 or €600");
        assert_eq!(convert(1_000, "JPY", "EUR", 6_000_000), Some(600));
        assert_eq!(convert(100, "KWD", "EUR", 3_000_000_000), Some(30), "0.100 KWD at 3 EUR is €0.30");
        assert_eq!(exponent("CLF"), 4);
    }

    #[test]
    fn halves_round_to_even_and_overflow_is_none() {
        assert_eq!(convert(1, "EUR", "USD", 500_000_000), Some(0), "0.5 → 0");
        assert_eq!(convert(3, "EUR", "USD", 500_000_000), Some(2), "1.5 → 2");
        assert_eq!(convert(-3, "EUR", "USD", 500_000_000), Some(-2), "-1.5 → -2");
        assert_eq!(convert(i64::MAX, "JPY", "CLF", i64::MAX), None);
        assert_eq!(convert(10, "EUR", "USD", 0), None);
    }

    #[test]
    fn forgetting_old_rates_keeps_the_one_in_force() {
        let mut r = Rates::new("EUR");
        for (at, rate) in [(0, 1_000_000_000), (10, 2_000_000_000), (20, 4_000_000_000)] {
            r.record("EUR", "USD", at, rate);
        }
        r.forget_before(15);
        assert_eq!(r.to_base(200, "USD", 15), Some(100));
        assert_eq!(r.to_base(400, "USD", 25), Some(100));
        assert_eq!(r.pairs["EUR/USD"].len(), 2);
    }

    #[test]
    fn an_unknown_currency_has_no_base_amount() {
        let r = Rates::new("EUR");
        assert_eq!(r.to_base(100, "CHF", 0), None);
        assert_eq!(r.to_base(100, "EUR", 0), Some(100));
    }

    proptest! {
        #[test]
        fn either_direction_of_a_pair_gives_the_same_amount_within_a_minor_unit(amount in 0i64..1_000_000_000, rate in 100_000_000i64..100_000_000_000) {
            let mut direct = Rates::new("EUR");
            direct.record("USD", "EUR", 0, rate);
            let mut inverse = Rates::new("EUR");
            let inv = div_round_half_even(1_000_000_000_000_000_000, i128::from(rate)) as i64;
            inverse.record("EUR", "USD", 0, inv);
            let (a, b) = (direct.to_base(amount, "USD", 0).unwrap(), inverse.to_base(amount, "USD", 0).unwrap());
            // The inverse rate is itself rounded to 10⁻⁹: off by at most half a unit of it.
            prop_assert!((a - b).abs() <= 1 + a / inv, "{a} vs {b}");
            prop_assert_eq!(Some(a), convert(amount, "USD", "EUR", rate));
        }
    }
}
