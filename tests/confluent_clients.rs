//! A stock Confluent client against `storeflow run` on the real Kafka: confluent-kafka-python
//! (`tests/clients/confluent_roundtrip.py`, in the venv `tests/clients/venv` makes) produces a
//! StockReceived with `AvroSerializer` (TopicRecordNameStrategy, the id looked up in the
//! registry storeflow serves, murmur2 placement) and reads storeflow's StockLevelChanged back
//! with `AvroDeserializer`; the API's read model shows the stock (docs/PRODUCING.md).

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use storeflow_ingest::contract::service_address;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `storeflow run`, interrupted and reaped when dropped (a failed assertion must not leave it
/// running).
struct Run(Child);

impl Drop for Run {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-INT", &self.0.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.0.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_stock_confluent_client_produces_into_storeflow_on_kafka_and_reads_its_output_through_the_served_registry() {
    let Some(brokers) = service_address("STOREFLOW_TEST_KAFKA", "Apache Kafka") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (api, registry) = (free_port(), free_port());
    // Fresh consumer groups, so this run's processors and sinks owe nothing to earlier ones.
    let app = format!("clients-{}-{}", std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis());
    let auth = format!("sr:{app}");
    let log = std::fs::File::create(dir.path().join("run.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_storeflow"))
        .arg("run")
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("STOREFLOW__KAFKA__BROKERS", &brokers)
        .env("STOREFLOW__LISTEN", format!("127.0.0.1:{api}"))
        .env("STOREFLOW__REGISTRY_LISTEN", format!("127.0.0.1:{registry}"))
        .env("STOREFLOW__REGISTRY_BASIC_AUTH", &auth)
        .env("STOREFLOW__RUNTIME__APP", &app)
        .env("STOREFLOW__SINKS__APP", &app)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start storeflow run");
    let mut run = Run(child);
    let run_log = || std::fs::read_to_string(dir.path().join("run.log")).unwrap_or_default();
    // The venv is made (or found) while storeflow starts.
    let Some(python) = common::venv_python("run the stock Confluent client") else { return };

    let deadline = Instant::now() + Duration::from_secs(90);
    while common::http(api, "GET", "/healthz", None, None).map(|r| r.0).ok() != Some(200) {
        assert!(run.0.try_wait().unwrap().is_none(), "storeflow run exited early:\n{}", run_log());
        assert!(Instant::now() < deadline, "no /healthz within 90 s:\n{}", run_log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, body) = common::http(registry, "GET", "/subjects", None, None).unwrap();
    assert_eq!(code, 401, "the registry answered without its basic auth: {body}");

    let sku = format!("sku-{app}");
    let started = Instant::now();
    let out = Command::new(&python)
        .arg(repo().join("tests/clients/confluent_roundtrip.py"))
        .args(["--bootstrap", &brokers, "--registry", &format!("http://127.0.0.1:{registry}"), "--basic-auth", &auth])
        .args(["--sku", &sku, "--warehouse", "wh-de-berlin", "--quantity", "7", "--timeout", "60"])
        .output()
        .expect("run the stock client");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the stock client failed after {:?}:\n{said}\nstoreflow run:\n{}", started.elapsed(), run_log());
    let line = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().to_string();
    let r: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {said}"));

    // The client wrote the id storeflow's codec gives StockReceived, under the subject
    // storeflow registered, on the partition storeflow would have chosen for the key.
    let codec = storeflow_avro::Codec::embedded().unwrap();
    let received = storeflow_avro::EventType::by_name("StockReceived").unwrap();
    let level = storeflow_avro::EventType::by_name("StockLevelChanged").unwrap();
    assert_eq!(r["produced"]["schema_id"], serde_json::json!(codec.schema_id(received)), "{line}");
    assert_eq!(r["produced"]["subject"], serde_json::json!(received.subject()), "{line}");
    let log = storeflow_ingest::KafkaLog::connect(storeflow_ingest::KafkaSettings::new(&brokers)).unwrap();
    let topics = storeflow_ingest::Log::describe_topics(&log).unwrap();
    let partitions = topics.iter().find(|t| t.name == "storefront.inventory").expect("storefront.inventory").partitions.len() as u32;
    assert_eq!(r["produced"]["partition"], serde_json::json!(storeflow_ingest::partitioner::partition_for_key(sku.as_bytes(), partitions)), "{line}");

    // storeflow processed it: inventory's StockLevelChanged, read by the stock deserializer
    // with the writer schema it fetched from the served registry by id.
    assert_eq!(r["consumed"]["schema_id"], serde_json::json!(codec.schema_id(level)), "{line}");
    let v = &r["consumed"]["value"];
    assert_eq!((v["sku"].as_str(), v["warehouse_id"].as_str(), v["cause"].as_str()), (Some(sku.as_str()), Some("wh-de-berlin"), Some("received")), "{line}");
    assert_eq!((v["on_hand"].as_i64(), v["reserved"].as_i64(), v["available"].as_i64(), v["version"].as_i64()), (Some(7), Some(0), Some(7), Some(1)), "{line}");

    // …and the read model behind the API has it.
    let key = std::fs::read_to_string(dir.path().join("data/admin.key")).unwrap().trim().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = common::http(api, "GET", &format!("/v1/inventory/{sku}"), Some(&key), None).unwrap();
        if code == 200 && body.contains("\"on_hand\":7") {
            break;
        }
        assert!(Instant::now() < deadline && code != 403, "GET /v1/inventory/{sku}: {code} {body}");
        std::thread::sleep(Duration::from_millis(250));
    }
    drop(run);
}
