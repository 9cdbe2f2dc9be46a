//! The search sink's one retry-or-give-up decision.
//!
//! | error | decision | why |
//! |---|---|---|
//! | a document Elasticsearch refuses with 400 (`document_parsing_exception`, `mapper_parsing_exception`, `illegal_argument_exception`: an immense keyword, a value of the wrong type) | permanent | the document can never be indexed |
//! | the same document refused by the tantivy twin's identical checks, a review outside 1–5 stars (`SinkError::Rejected`) | permanent | |
//! | 409 `version_conflict_engine_exception` | — (not an error) | a newer version is already indexed: the stale write is dropped |
//! | connection refused, timeouts, 429 (`es_rejected_execution_exception`), 5xx, cluster blocks | transient | the cluster is down, busy or recovering: hold the offsets and retry |
//! | 401/403, a missing index | transient | the setup is wrong, not the record |
//! | tantivy I/O and lock errors | transient | |

use crate::{Retry, SinkError};

/// Decides whether a failed search write is retried or its record dead-lettered.
pub fn retry_logic(err: &SinkError) -> Retry {
    match err {
        SinkError::Rejected(_) => Retry::Permanent,
        SinkError::Elasticsearch { status: Some(400), transport: false, .. } => Retry::Permanent,
        _ => Retry::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_document_is_permanent_and_an_overloaded_cluster_transient() {
        let e = |status: Option<u16>, transport| SinkError::Elasticsearch { context: "bulk".into(), status, message: "x".into(), transport };
        assert_eq!(retry_logic(&e(Some(400), false)), Retry::Permanent);
        assert_eq!(retry_logic(&e(Some(429), false)), Retry::Transient);
        assert_eq!(retry_logic(&e(Some(503), false)), Retry::Transient);
        assert_eq!(retry_logic(&e(None, true)), Retry::Transient);
    }
}
