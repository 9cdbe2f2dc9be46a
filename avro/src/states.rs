//! The order's three states — [`OrderStatus`], [`PaymentStatus`], [`FulfillmentStatus`] —
//! and the one table of legal moves, [`OrderStatus::MOVES`].
//!
//! On the log and in every store they are today's snake_case strings
//! (`OrderStatusChanged.status` is an Avro `string`), so nothing written before changes: the
//! types serialize as their names, and [`str::parse`] reads them back. The orders saga moves
//! an order only along [`OrderStatus::can_move_to`]; the API asks the same question before it
//! publishes a cancellation or a return request.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A name that is not one of the type's states.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not {kind} (one of: {known})")]
pub struct UnknownState {
    pub kind: &'static str,
    pub value: String,
    pub known: String,
}

macro_rules! states {
    ($(#[$doc:meta])* $name:ident: $kind:literal { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every state, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The state's name on the log (`OrderStatusChanged`) and in the stores.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownState;
            fn from_str(s: &str) -> Result<$name, UnknownState> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownState {
                        kind: $kind,
                        value: s.to_string(),
                        known: [$($text,)+].join(", "),
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        /// As its name: the bytes a `String` field had, in JSON and in postcard state.
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

states! {
    /// Where an order stands as a whole.
    OrderStatus: "an order status" {
        Placed = "placed",
        /// Every sku is held in one warehouse.
        Reserved = "reserved",
        RejectedOutOfStock = "rejected_out_of_stock",
        PaymentFailed = "payment_failed",
        PaymentAuthorized = "payment_authorized",
        /// Paid and cleared by the fraud checks: it may ship.
        Confirmed = "confirmed",
        /// Waiting for a person (the fraud checks asked for it).
        FraudHold = "fraud_hold",
        PartiallyShipped = "partially_shipped",
        Shipped = "shipped",
        Delivered = "delivered",
        ReturnRequested = "return_requested",
        Returned = "returned",
        Refunded = "refunded",
        Cancelled = "cancelled",
    }
}

states! {
    /// Where the order's money stands.
    PaymentStatus: "a payment status" {
        Pending = "pending",
        Authorized = "authorized",
        Failed = "failed",
        Captured = "captured",
        PartiallyRefunded = "partially_refunded",
        Refunded = "refunded",
    }
}

states! {
    /// Where the order's goods stand.
    FulfillmentStatus: "a fulfillment status" {
        Unfulfilled = "unfulfilled",
        /// Held in a warehouse.
        Reserved = "reserved",
        PartiallyShipped = "partially_shipped",
        Shipped = "shipped",
        Delivered = "delivered",
        Returned = "returned",
    }
}

impl OrderStatus {
    /// Every legal move of an order: (from, to). Nothing else happens to an order.
    pub const MOVES: &'static [(OrderStatus, OrderStatus)] = {
        use OrderStatus::*;
        &[
            (Placed, Reserved),
            (Placed, RejectedOutOfStock),
            (Placed, PaymentFailed),
            (Placed, Cancelled),
            (Placed, FraudHold),
            (Reserved, PaymentAuthorized),
            (Reserved, PaymentFailed),
            (Reserved, Cancelled),
            (Reserved, FraudHold),
            (PaymentAuthorized, Confirmed),
            (PaymentAuthorized, Cancelled),
            (PaymentAuthorized, FraudHold),
            (Confirmed, PartiallyShipped),
            (Confirmed, Shipped),
            (Confirmed, Cancelled),
            (Confirmed, FraudHold),
            (PartiallyShipped, Shipped),
            (Shipped, Delivered),
            (Delivered, ReturnRequested),
            (Delivered, Returned),
            (ReturnRequested, Returned),
            (Returned, Refunded),
            (FraudHold, Cancelled),
        ]
    };

    /// Whether `self → to` is in [`MOVES`](Self::MOVES).
    pub fn can_move_to(self, to: OrderStatus) -> bool {
        Self::MOVES.iter().any(|&(f, t)| f == self && t == to)
    }

    /// States an order never leaves.
    pub fn is_final(self) -> bool {
        !Self::MOVES.iter().any(|&(f, _)| f == self)
    }

    /// An order that was never sold: rejected, unpaid or cancelled. Sales figures leave it out.
    pub fn is_unsold(self) -> bool {
        matches!(self, OrderStatus::RejectedOutOfStock | OrderStatus::PaymentFailed | OrderStatus::Cancelled)
    }

    /// A return was asked for or made (and perhaps refunded).
    pub fn is_returned(self) -> bool {
        matches!(self, OrderStatus::ReturnRequested | OrderStatus::Returned | OrderStatus::Refunded)
    }
}

/// Whether an order in `status` (as a read model holds it) may move to `to`; an unknown
/// name may move nowhere.
pub fn may_move(status: &str, to: OrderStatus) -> bool {
    status.parse::<OrderStatus>().is_ok_and(|s| s.can_move_to(to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_reads_back_from_its_name_and_serializes_as_the_name() {
        for &s in OrderStatus::ALL {
            assert_eq!(s.as_str().parse::<OrderStatus>(), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.as_str()));
            assert_eq!(serde_json::from_value::<OrderStatus>(serde_json::json!(s.as_str())).unwrap(), s);
        }
        for &s in PaymentStatus::ALL {
            assert_eq!(s.as_str().parse::<PaymentStatus>(), Ok(s));
        }
        for &s in FulfillmentStatus::ALL {
            assert_eq!(s.as_str().parse::<FulfillmentStatus>(), Ok(s));
        }
        let err = "shiped".parse::<OrderStatus>().unwrap_err();
        assert!(err.to_string().starts_with("`shiped` is not an order status (one of: placed, "), "{err}");
    }

    #[test]
    fn the_final_states_are_the_ones_no_move_leaves_and_every_state_is_reachable_from_placed() {
        use OrderStatus::*;
        let finals: Vec<_> = OrderStatus::ALL.iter().copied().filter(|s| s.is_final()).collect();
        assert_eq!(finals, [RejectedOutOfStock, PaymentFailed, Refunded, Cancelled]);
        let mut reached = vec![Placed];
        while let Some(&next) = OrderStatus::MOVES.iter().find(|(f, t)| reached.contains(f) && !reached.contains(t)).map(|(_, t)| t) {
            reached.push(next);
        }
        assert_eq!(reached.len(), OrderStatus::ALL.len(), "unreachable: {:?}", OrderStatus::ALL.iter().filter(|s| !reached.contains(s)).collect::<Vec<_>>());
        assert!(!Shipped.can_move_to(Cancelled) && Confirmed.can_move_to(Cancelled));
        assert!(may_move("delivered", ReturnRequested) && !may_move("shipped", ReturnRequested) && !may_move("nonsense", Cancelled));
    }
}
