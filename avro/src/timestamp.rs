//! `Timestamp`: the contract's `timestamp-millis`, UTC milliseconds since the epoch.
//!
//! On the wire (Avro) it is a `long`. In JSON it is written as a number, and read from
//! either a number of milliseconds or an RFC 3339 string (`"2026-11-25T18:51:24Z"`), so
//! apps can send whichever they have.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// UTC milliseconds since the Unix epoch (Avro `timestamp-millis`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current wall-clock time. Processors never call this: they use event time.
    pub fn now() -> Self {
        Timestamp(chrono::Utc::now().timestamp_millis())
    }

    /// Milliseconds since the epoch.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// This time plus `ms` milliseconds (saturating).
    pub fn plus_millis(self, ms: i64) -> Self {
        Timestamp(self.0.saturating_add(ms))
    }

    /// Start of the minute this time falls in.
    pub fn minute_floor(self) -> Self {
        Timestamp(self.0.div_euclid(60_000) * 60_000)
    }

    /// Parses an RFC 3339 date-time such as `2026-11-25T18:51:24.123Z`.
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| Timestamp(t.timestamp_millis()))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match chrono::DateTime::from_timestamp_millis(self.0) {
            Some(t) => write!(f, "{}", t.format("%Y-%m-%dT%H:%M:%S%.3fZ")),
            None => write!(f, "{}ms", self.0),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.0)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("milliseconds since the epoch or an RFC 3339 date-time")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timestamp, E> {
                Ok(Timestamp(v))
            }
            fn visit_i32<E: de::Error>(self, v: i32) -> Result<Timestamp, E> {
                Ok(Timestamp(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timestamp, E> {
                i64::try_from(v)
                    .map(Timestamp)
                    .map_err(|_| E::custom("timestamp out of range"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse_rfc3339(v).ok_or_else(|| {
                    E::custom(format!(
                        "`{v}` is not an RFC 3339 date-time (like 2026-11-25T18:51:24Z)"
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_accepts_millis_and_rfc3339_and_writes_millis() {
        let a: Timestamp = serde_json::from_str("1764096684000").unwrap();
        let b: Timestamp = serde_json::from_str("\"2025-11-25T18:51:24Z\"").unwrap();
        assert_eq!(a, b);
        assert_eq!(serde_json::to_string(&a).unwrap(), "1764096684000");
    }

    #[test]
    fn json_rejects_a_date_that_is_not_rfc3339() {
        let err = serde_json::from_str::<Timestamp>("\"yesterday\"").unwrap_err();
        assert!(err.to_string().contains("RFC 3339"), "{err}");
    }

    #[test]
    fn minute_floor_rounds_down_also_before_the_epoch() {
        assert_eq!(Timestamp(61_001).minute_floor(), Timestamp(60_000));
        assert_eq!(Timestamp(-1).minute_floor(), Timestamp(-60_000));
    }
}
