//! The log contract on a real Apache Kafka broker (`STOREFLOW_TEST_KAFKA`, started by
//! `scripts/services up kafka`). Every test uses fresh topics and groups.

use std::sync::Arc;
use std::time::Duration;

use storeflow_ingest::contract::{Harness, service_address};
use storeflow_ingest::{KafkaLog, KafkaSettings, Log};

struct Kafka {
    log: Arc<dyn Log>,
}

fn harness() -> Option<Kafka> {
    let brokers = service_address("STOREFLOW_TEST_KAFKA", "Apache Kafka")?;
    let log = KafkaLog::connect(KafkaSettings::new(&brokers)).expect("connect to the test broker");
    Some(Kafka { log: Arc::new(log) })
}

impl Harness for Kafka {
    fn log(&self) -> Arc<dyn Log> {
        self.log.clone()
    }
    fn fresh_topic(&self, hint: &str) -> String {
        format!("test.{hint}.{}", uuid::Uuid::new_v4().simple())
    }
    fn patience(&self) -> Duration {
        Duration::from_secs(30)
    }
}

storeflow_ingest::contract_tests!(harness());
