//! Vendors' money through the API: the live sales report (the sales processor's
//! `VendorSalesMinute`) and vendor performance (the analytics sink) give the same base-currency
//! GMV and refunds to the minor unit for orders in JPY (no decimals), EUR, KWD (three) and CLF
//! (four) with a rate change inside a minute, and both equal an independent sum of every line
//! converted at its own time.

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use serde_json::{Value, json};
use storeflow_avro::money::Rates;
use storeflow_avro::{Event, Timestamp, Topic};
use storeflow_processors::{Processor, TestDriver};
use storeflow_processors::sales::{Sales, SalesConfig};

const VENDORS: [&str; 2] = ["V-A", "V-B"];

/// Rates, two vendors on different plans, seven orders in four currencies and three refunds,
/// all within the last hour.
fn traffic(t: i64) -> Vec<Event> {
    let rate = |at: i64, base: &str, quote: &str, rate_e9: i64| {
        ev(json!({"type": "ExchangeRateUpdated", "occurred_at": at, "base_currency": base, "quote_currency": quote, "rate_e9": rate_e9}))
    };
    let order = |n: u32, at: i64, currency: &str, lines: &[(&str, i32, i64)]| {
        let items: Vec<Value> = lines
            .iter()
            .enumerate()
            .map(|(i, (v, q, p))| json!({"sku": format!("sku-{v}-{i}"), "product_id": format!("p-{v}-{i}"), "vendor_id": v, "quantity": q, "unit_price_minor": p}))
            .collect();
        ev(json!({"type": "OrderPlaced", "occurred_at": at, "order_id": format!("o-{n}"), "customer_id": format!("c-{n}"), "items": items,
            "currency": currency, "shipping_address": address(), "billing_address": address(), "payment_method_token": "pm_card_visa",
            "client_ip": "203.0.113.1"}))
    };
    let refund = |n: u32, at: i64, order: u32, currency: &str, lines: &[(&str, i64)]| {
        let parts: Vec<Value> = lines.iter().map(|(v, a)| json!({"sku": format!("sku-{v}-0"), "vendor_id": v, "quantity": 1, "amount_minor": a})).collect();
        ev(json!({"type": "RefundIssued", "occurred_at": at, "order_id": format!("o-{order}"), "payment_id": format!("pi-{order}"),
            "refund_id": format!("re-{n}"), "amount_minor": lines.iter().map(|(_, a)| a).sum::<i64>(), "currency": currency,
            "reason": "return", "lines": parts}))
    };
    let vendor = |id: &str, plan: &str| {
        ev(json!({"type": "VendorOnboarded", "occurred_at": t - 60_000, "vendor_id": id, "name": id, "country": "DE", "plan": plan,
            "payout_currency": "EUR"}))
    };
    vec![
        rate(t - 60_000, "EUR", "JPY", 160_123_456_789),
        rate(t - 60_000, "KWD", "EUR", 2_951_234_567),
        rate(t - 60_000, "EUR", "CLF", 25_432_109),
        rate(t + 30_000, "EUR", "JPY", 158_765_432_101),
        vendor("V-A", "pro"),
        vendor("V-B", "basic"),
        order(1, t + 1_000, "JPY", &[("V-A", 1, 333), ("V-A", 2, 777), ("V-B", 3, 1_001)]),
        order(2, t + 29_000, "JPY", &[("V-A", 1, 12_345), ("V-B", 1, 99)]),
        order(3, t + 31_000, "JPY", &[("V-A", 1, 12_345), ("V-B", 1, 99)]),
        order(4, t + 35_000, "EUR", &[("V-A", 3, 1_999), ("V-B", 1, 5)]),
        order(5, t + 40_000, "KWD", &[("V-A", 1, 12_345), ("V-B", 7, 1_111)]),
        order(6, t + 61_000, "CLF", &[("V-A", 1, 12_345), ("V-B", 2, 3_333)]),
        order(7, t + 62_000, "KWD", &[("V-A", 1, 7)]),
        refund(1, t + 90_000, 1, "JPY", &[("V-A", 333), ("V-B", 1_001)]),
        refund(2, t + 95_000, 5, "KWD", &[("V-B", 1_111)]),
        refund(3, t + 125_000, 6, "CLF", &[("V-A", 12_345)]),
    ]
}

fn sum(v: &Value, field: &str) -> i64 {
    v["buckets"].as_array().unwrap().iter().map(|b| b[field].as_i64().unwrap()).sum()
}

#[tokio::test]
async fn the_apis_vendor_sales_and_vendor_performance_agree_to_the_minor_unit_in_every_currency() {
    let h = harness();
    // Half an hour ago, on a whole minute: inside the 24 h window and the day's report.
    let now = Timestamp::now().millis();
    let t = (now - 1_800_000).div_euclid(60_000) * 60_000;
    let events = traffic(t);
    let mut d = TestDriver::new(Sales::new(SalesConfig::default()));
    for e in &events {
        d.pipe(e.clone());
    }
    let minutes = d.outputs::<Event>(Topic::VendorSales.name());
    assert!(minutes.len() >= 8, "figures in several minutes and currencies: {}", minutes.len());
    h.feed(events.iter().cloned().chain(minutes));

    let mut rates = Rates::new("EUR");
    for e in &events {
        if let Event::ExchangeRateUpdated(r) = e {
            rates.record(&r.base_currency, &r.quote_currency, r.occurred_at.millis(), r.rate_e9);
        }
    }
    for vendor in VENDORS {
        let (st, _, report) =
            h.call(Method::GET, &format!("/v1/vendors/{vendor}/sales?granularity=day&from={}&to={}", t - 3_600_000, now + 60_000), Some(&h.analyst), None).await;
        assert_eq!(st, StatusCode::OK, "{report}");
        let (gmv, refunds) = (sum(&report, "gmv_base_minor"), sum(&report, "refunds_base_minor"));
        let (commission, net) = (sum(&report, "commission_base_minor"), sum(&report, "net_payout_base_minor"));
        assert_eq!(gmv - refunds, commission + net, "{vendor}: money is conserved in the base currency: {report}");
        // An independent reference: each line converted at its order's time.
        let lines: i64 = events
            .iter()
            .filter_map(|e| if let Event::OrderPlaced(o) = e { Some(o) } else { None })
            .flat_map(|o| o.items.iter().filter(|l| l.vendor_id == vendor).map(move |l| (i64::from(l.quantity) * l.unit_price_minor, o)))
            .map(|(amount, o)| rates.to_base(amount, &o.currency, o.occurred_at.millis()).unwrap())
            .sum();
        assert_eq!(gmv, lines, "{vendor}: the live report's base GMV is the sum of its converted lines");

        let (st, _, perf) = h.call(Method::GET, &format!("/v1/analytics/vendors/{vendor}?range=24h"), Some(&h.analyst), None).await;
        assert_eq!(st, StatusCode::OK, "{perf}");
        assert_eq!(perf["gmv_eur_minor"].as_i64(), Some(gmv), "{vendor}: vendor performance's GMV: {perf}");
        assert_eq!(perf["refunds_eur_minor"].as_i64(), Some(refunds), "{vendor}: vendor performance's refunds: {perf}");
    }
}
