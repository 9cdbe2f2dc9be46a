//! `[processors.orders]`: the saga's timeouts, its fraud gate and the warehouses it may
//! gather an order in.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `[processors.orders]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrdersConfig {
    /// A reserved order without an authorized payment this long after it was placed is
    /// cancelled and its stock released (ms of event time).
    pub payment_timeout_ms: i64,
    /// How long inventory holds stock for an order (sent with each hold; inventory releases
    /// a hold itself shortly after, should the saga not have).
    pub hold_ttl_ms: i64,
    /// Warehouse id → ISO country, to choose one warehouse for a whole order (the same
    /// table as `[processors.inventory] warehouses`).
    pub warehouses: BTreeMap<String, String>,
    /// The fraud gate: an authorized order is confirmed only once its fraud score is known,
    /// or this long (ms of event time) after it was placed without one — then it is confirmed
    /// and the lifecycle says so. Captures and shipments that arrive meanwhile are held back.
    /// 0 turns the gate off (confirm on authorization; a later hold still stops shipping).
    pub fraud_gate_ms: i64,
    /// How long (ms of event time) an event about an order not placed yet is kept, waiting
    /// for its order (a payment from a faster producer, a fraud verdict computed before the
    /// order reached this task); after it, it goes to the DLQ as about an unknown order.
    pub early_ttl_ms: i64,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        OrdersConfig {
            payment_timeout_ms: 15 * 60_000,
            hold_ttl_ms: 20 * 60_000,
            warehouses: crate::geo::default_warehouses(),
            fraud_gate_ms: 10 * 60_000,
            early_ttl_ms: 10 * 60_000,
        }
    }
}
