//! The saga's timers: payment, fraud gate, early events.

/// The saga's timers. The runtime keys a timer by a string: `<kind>|<order id>`, written
/// and read only here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OrderTimer {
    /// No payment authorized `payment_timeout_ms` after placing: cancel.
    Payment,
    /// No fraud verdict `fraud_gate_ms` after placing: confirm without one.
    Fraud,
    /// Events that came before their order waited `early_ttl_ms`: dead-letter them.
    Early,
}

impl OrderTimer {
    const fn kind(self) -> &'static str {
        match self {
            OrderTimer::Payment => "payment",
            OrderTimer::Fraud => "fraud",
            OrderTimer::Early => "early",
        }
    }

    pub(super) fn key(self, order_id: &str) -> String {
        format!("{}|{order_id}", self.kind())
    }

    /// The timer and order of a key (`None` for a key this saga never sets).
    pub(super) fn parse(key: &str) -> Option<(OrderTimer, &str)> {
        let (kind, order_id) = key.split_once('|')?;
        let timer = [OrderTimer::Payment, OrderTimer::Fraud, OrderTimer::Early].into_iter().find(|t| t.kind() == kind)?;
        Some((timer, order_id))
    }
}
