//! Money in the sinks: minor units per currency and conversion to the base currency.
//!
//! Amounts stay in their own currency everywhere (minor units beside an ISO-4217 code), and
//! analytics and search also keep an amount in the **base currency** (EUR by default) so
//! sums across currencies mean something. `ExchangeRateUpdated` gives `rate_e9` = units of
//! the quote currency per unit of the base currency × 10⁹. An amount is converted with the
//! newest rate whose time is at or before the amount's event time (the first known rate if
//! none is that old); the original amount is kept beside it, so a different rule can be
//! applied again later.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Digits after the decimal point of an ISO-4217 currency (2 unless listed).
pub fn exponent(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX" | "UYI" | "VND" | "VUV"
        | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        "CLF" | "UYW" => 4,
        _ => 2,
    }
}

/// Exchange rates seen so far, per (base, quote), in time order.
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
    /// Recording the same rate twice changes nothing.
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

    fn rate_at(&self, pair: &str, at: i64) -> Option<i64> {
        let v = self.pairs.get(pair)?;
        let i = v.partition_point(|(t, _)| *t <= at);
        Some(if i == 0 { v.first()?.1 } else { v[i - 1].1 })
    }

    /// `amount_minor` of `currency` in base-currency minor units at time `at`, or `None`
    /// when no rate between the two is known.
    pub fn to_base(&self, amount_minor: i64, currency: &str, at: i64) -> Option<i64> {
        if currency == self.base {
            return Some(amount_minor);
        }
        let (eb, eq) = (exponent(&self.base), exponent(currency));
        let scale = |e: u32| 10i128.pow(e);
        if let Some(r) = self.rate_at(&format!("{}/{currency}", self.base), at) {
            // amount_q / rate = amount_base; minor units rescaled by the exponents.
            let num = i128::from(amount_minor) * scale(eb) * 1_000_000_000;
            let den = i128::from(r) * scale(eq);
            return Some(div_round(num, den));
        }
        if let Some(r) = self.rate_at(&format!("{currency}/{}", self.base), at) {
            let num = i128::from(amount_minor) * i128::from(r) * scale(eb);
            let den = 1_000_000_000 * scale(eq);
            return Some(div_round(num, den));
        }
        None
    }
}

fn div_round(num: i128, den: i128) -> i64 {
    if den == 0 {
        return 0;
    }
    let q = (2 * num + den.signum() * num.signum() * den.abs()) / (2 * den);
    q.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usd_converts_to_eur_with_the_rate_in_force_at_the_event_time() {
        let mut r = Rates::new("EUR");
        r.record("EUR", "USD", 1_000, 1_080_000_000);
        r.record("EUR", "USD", 2_000, 1_200_000_000);
        assert_eq!(r.to_base(10_800, "USD", 1_500), Some(10_000));
        assert_eq!(r.to_base(12_000, "USD", 2_500), Some(10_000));
        // Before the first rate: the first known rate.
        assert_eq!(r.to_base(10_800, "USD", 10), Some(10_000));
    }

    #[test]
    fn currencies_without_minor_units_are_rescaled() {
        let mut r = Rates::new("EUR");
        r.record("EUR", "JPY", 0, 162_000_000_000);
        // 16,200 yen = 100 EUR = 10,000 cents.
        assert_eq!(r.to_base(16_200, "JPY", 5), Some(10_000));
    }

    #[test]
    fn an_unknown_currency_has_no_base_amount() {
        let r = Rates::new("EUR");
        assert_eq!(r.to_base(100, "EUR", 0), Some(100));
        assert_eq!(r.to_base(100, "CHF", 0), None);
    }
}
