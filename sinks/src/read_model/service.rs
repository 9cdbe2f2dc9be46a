//! The read model's one retry-or-give-up decision.
//!
//! | error | decision | why |
//! |---|---|---|
//! | Postgres SQLSTATE class `22` (data exception: value out of range, `\0` in text, bad JSON) | permanent | the record's values can never be stored |
//! | Postgres class `23` (integrity: CHECK, NOT NULL, unique) | permanent | the record breaks a rule of the schema |
//! | Postgres class `54` (program limit: a row or index entry too big) | permanent | the record is too big |
//! | SQLite `SQLITE_CONSTRAINT` (19), `SQLITE_TOOBIG` (18), `SQLITE_MISMATCH` (20) | permanent | same, in SQLite's words |
//! | a value that cannot be encoded | permanent | |
//! | connection refused/reset, I/O, TLS, pool timeout, class `08`, `40` (serialization, deadlock), `53` (resources), `57` (shutdown), `SQLITE_BUSY`/`LOCKED`/`IOERR`/`FULL` | transient | the database is restarting, busy or full: the batch waits, offsets held |
//! | anything else (class `42` undefined table, `28` bad password, …) | transient | the sink or its configuration is wrong, not the record: hold the stream until an operator fixes it rather than dead-letter everything |

use sqlx::error::ErrorKind;

use crate::{Retry, SinkError};

/// Decides whether a failed read-model write is retried or its record dead-lettered.
pub fn retry_logic(err: &SinkError) -> Retry {
    match err {
        SinkError::Sql { source, .. } => classify(source),
        SinkError::Rejected(_) => Retry::Permanent,
        _ => Retry::Transient,
    }
}

fn classify(e: &sqlx::Error) -> Retry {
    match e {
        sqlx::Error::Database(db) => {
            if matches!(
                db.kind(),
                ErrorKind::UniqueViolation | ErrorKind::ForeignKeyViolation | ErrorKind::NotNullViolation | ErrorKind::CheckViolation
            ) {
                return Retry::Permanent;
            }
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            if db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() {
                // Postgres: a five-character SQLSTATE; the class is its first two.
                match code.get(..2) {
                    Some("22" | "23" | "54") => Retry::Permanent,
                    _ => Retry::Transient,
                }
            } else {
                // SQLite: an extended result code; the primary code is its low byte.
                match code.parse::<i64>().map(|n| n & 0xff) {
                    Ok(18..=20) => Retry::Permanent,
                    _ => Retry::Transient,
                }
            }
        }
        sqlx::Error::Encode(_) => Retry::Permanent,
        _ => Retry::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_timeout_is_transient_and_a_rejection_permanent() {
        let e = SinkError::Sql { context: "x".into(), source: sqlx::Error::PoolTimedOut };
        assert_eq!(retry_logic(&e), Retry::Transient);
        assert_eq!(retry_logic(&SinkError::Rejected("no".into())), Retry::Permanent);
    }
}
