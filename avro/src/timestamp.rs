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

/// How far from the wall clock an event's time may be: the one rule the API applies to
/// `occurred_at` (refusing what falls outside with a 400) and the runtime applies to every
/// source record (dead-lettering one dated past `now + max_skew`, so a producer writing
/// straight to the log cannot move stream time ahead and fire deadlines early either).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeBounds {
    /// How far ahead of the wall clock an event may be dated (clock skew between
    /// producers), in milliseconds. Default 5 minutes.
    pub max_skew_ms: i64,
    /// How far behind the wall clock an event may be dated when it is sent (a device that
    /// was offline), in milliseconds. Default 7 days. Only the API applies it: the log may
    /// hold older records for a replay.
    pub max_lateness_ms: i64,
}

impl Default for TimeBounds {
    fn default() -> Self {
        TimeBounds { max_skew_ms: 5 * 60_000, max_lateness_ms: 7 * 24 * 3_600_000 }
    }
}

impl TimeBounds {
    /// Why `at` may not be sent at wall-clock time `now`: too far ahead or too far behind.
    pub fn check_sent(&self, at: Timestamp, now: Timestamp) -> Result<(), String> {
        self.check_ahead(at, now)?;
        if at.0 < now.0.saturating_sub(self.max_lateness_ms) {
            return Err(format!(
                "{at} is more than {} before the server's clock ({now}); the oldest accepted is {}",
                human_ms(self.max_lateness_ms),
                Timestamp(now.0.saturating_sub(self.max_lateness_ms))
            ));
        }
        Ok(())
    }

    /// Why a record at `at` may not move stream time at wall-clock time `now`.
    pub fn check_ahead(&self, at: Timestamp, now: Timestamp) -> Result<(), String> {
        if at.0 > now.0.saturating_add(self.max_skew_ms) {
            return Err(format!(
                "{at} is more than {} ahead of the wall clock ({now}; max_skew_ms = {})",
                human_ms(self.max_skew_ms),
                self.max_skew_ms
            ));
        }
        Ok(())
    }

    /// Checks the values make sense.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_skew_ms < 0 || self.max_lateness_ms < 0 {
            return Err(format!("time.max_skew_ms ({}) and time.max_lateness_ms ({}) must not be negative", self.max_skew_ms, self.max_lateness_ms));
        }
        Ok(())
    }
}

/// `300000` → `5 min`, for messages.
fn human_ms(ms: i64) -> String {
    match ms {
        ms if ms >= 86_400_000 && ms % 86_400_000 == 0 => format!("{} days", ms / 86_400_000),
        ms if ms >= 3_600_000 && ms % 3_600_000 == 0 => format!("{} h", ms / 3_600_000),
        ms if ms >= 60_000 && ms % 60_000 == 0 => format!("{} min", ms / 60_000),
        ms => format!("{ms} ms"),
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

    #[test]
    fn time_bounds_refuse_what_is_too_far_ahead_or_behind_and_never_overflow() {
        let b = TimeBounds::default();
        let now = Timestamp(1_800_000_000_000);
        assert!(b.check_sent(now, now).is_ok());
        assert!(b.check_sent(now.plus_millis(5 * 60_000), now).is_ok());
        let ahead = b.check_sent(now.plus_millis(5 * 60_000 + 1), now).unwrap_err();
        assert!(ahead.contains("5 min ahead"), "{ahead}");
        assert!(b.check_sent(now.plus_millis(-7 * 86_400_000), now).is_ok());
        let behind = b.check_sent(now.plus_millis(-7 * 86_400_000 - 1), now).unwrap_err();
        assert!(behind.contains("7 days before"), "{behind}");
        for extreme in [i64::MIN, i64::MAX, i64::MIN + 1, i64::MAX - 1] {
            assert!(b.check_sent(Timestamp(extreme), now).is_err(), "{extreme}");
            assert!(b.check_sent(Timestamp(extreme), Timestamp(extreme)).is_ok(), "saturating, at {extreme}");
        }
        // The runtime's rule lets old records through: a replay reads them.
        assert!(b.check_ahead(Timestamp(0), now).is_ok());
        assert!(b.check_ahead(Timestamp(i64::MAX), now).is_err());
    }
}
