//! The log contract on the embedded log.

use std::sync::Arc;

use storeflow_ingest::contract::Harness;
use storeflow_ingest::{EmbeddedLog, Log};

struct Embedded {
    _dir: tempfile::TempDir,
    log: Arc<dyn Log>,
}

fn harness() -> Embedded {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(EmbeddedLog::open(dir.path()).expect("open"));
    Embedded { _dir: dir, log }
}

impl Harness for Embedded {
    fn log(&self) -> Arc<dyn Log> {
        self.log.clone()
    }
    fn fresh_topic(&self, hint: &str) -> String {
        format!("t.{hint}")
    }
}

storeflow_ingest::contract_tests!(Some(harness()));
