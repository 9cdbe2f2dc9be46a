//! The analytics sink's one retry-or-give-up decision.
//!
//! | error | decision | why |
//! |---|---|---|
//! | ClickHouse `Code: 469` VIOLATED_CONSTRAINT, `117` INCORRECT_DATA, `53` TYPE_MISMATCH, `6`/`27`/`38`/`41` cannot parse, `69` ARGUMENT_OUT_OF_BOUND, `70` CANNOT_CONVERT_TYPE, `131` TOO_LARGE_STRING_SIZE, `321` VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE | permanent | the rows can never be stored |
//! | a twin's CHECK constraint (`SinkError::Rejected`) | permanent | the same rule as ClickHouse's `CONSTRAINT` |
//! | network errors, timeouts, `159` TIMEOUT_EXCEEDED, `209`/`210` socket/network, `202` too many queries, `241` memory limit, `252` too many parts, `425` system error, HTTP 5xx | transient | the server is down, busy or restarting: hold the offsets and retry |
//! | `60` UNKNOWN_TABLE, `81` UNKNOWN_DATABASE, `516` authentication, a schema mismatch the client detects | transient | the setup is wrong, not the record: hold the stream for an operator |
//! | Parquet I/O errors | transient | disk full or a file system hiccup |

use crate::{Retry, SinkError};

/// ClickHouse error codes that mean "this data can never be inserted".
pub const PERMANENT_CODES: &[u32] = &[6, 27, 38, 41, 53, 69, 70, 117, 131, 321, 469];

/// Decides whether a failed analytics write is retried or its record dead-lettered.
pub fn retry_logic(err: &SinkError) -> Retry {
    match err {
        SinkError::Rejected(_) => Retry::Permanent,
        SinkError::ClickHouse { source, .. } => match source {
            clickhouse::error::Error::BadResponse(msg) => match code(msg) {
                Some(c) if PERMANENT_CODES.contains(&c) => Retry::Permanent,
                _ => Retry::Transient,
            },
            _ => Retry::Transient,
        },
        _ => Retry::Transient,
    }
}

/// The `Code: N` of a ClickHouse exception message.
pub fn code(msg: &str) -> Option<u32> {
    let rest = &msg[msg.find("Code: ")? + 6..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(msg: &str) -> SinkError {
        SinkError::ClickHouse { context: "insert".into(), source: clickhouse::error::Error::BadResponse(msg.into()) }
    }

    #[test]
    fn constraint_and_type_errors_are_permanent_and_timeouts_transient() {
        assert_eq!(retry_logic(&bad("Code: 469. DB::Exception: Constraint `rating_range` … (VIOLATED_CONSTRAINT)")), Retry::Permanent);
        assert_eq!(retry_logic(&bad("Code: 117. DB::Exception: incorrect data")), Retry::Permanent);
        assert_eq!(retry_logic(&bad("Code: 53. DB::Exception: Type mismatch")), Retry::Permanent);
        assert_eq!(retry_logic(&bad("Code: 159. DB::Exception: Timeout exceeded")), Retry::Transient);
        assert_eq!(retry_logic(&bad("Code: 60. DB::Exception: Unknown table")), Retry::Transient);
        let timeout = SinkError::ClickHouse { context: "insert".into(), source: clickhouse::error::Error::TimedOut };
        assert_eq!(retry_logic(&timeout), Retry::Transient);
    }
}
