//! The `storeflow` binary end to end: what a newcomer and an operator type.

mod common;

use common::http;

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn storeflow(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_storeflow"))
        .args(args)
        .current_dir(cwd)
        // A clean environment: no STOREFLOW__* from the caller's shell.
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("run storeflow")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn schemas_check_passes_on_the_repository() {
    let o = storeflow(&["schemas", "check"], repo());
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("All 54 schemas are compatible"), "{}", text(&o));
}

#[test]
fn schemas_check_fails_naming_a_field_added_to_order_placed_without_a_default() {
    let dir = tempfile::tempdir().unwrap();
    common::copy_dir(&repo().join("avro"), &dir.path().join("avro"));
    let path = dir.path().join("avro/schemas/OrderPlaced.avsc");
    let mut schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    schema["fields"].as_array_mut().unwrap().push(serde_json::json!(
        {"name": "coupon_code", "type": "string", "doc": "A coupon."}));
    std::fs::write(&path, serde_json::to_string_pretty(&schema).unwrap()).unwrap();
    let o = storeflow(&["schemas", "check"], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("FAIL OrderPlaced") && out.contains("coupon_code") && out.contains("default"), "{out}");
}

#[test]
fn demo_publishes_simulated_traffic_and_reads_every_event_back() {
    let dir = tempfile::tempdir().unwrap();
    let o = storeflow(&["demo", "--events", "3000", "--data-dir", "data"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("Verified 3,000 of 3,000 records"), "{out}");
    assert!(out.contains("0 decode errors"), "{out}");
    // A second demo on the same directory adds to it and verifies only what it added.
    let o = storeflow(&["demo", "--events", "1000", "--data-dir", "data"], dir.path());
    assert!(text(&o).contains("Verified 1,000 of 1,000 records"), "{}", text(&o));
    let o = storeflow(&["topics", "list", "--data-dir", "data"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let sessions = text(&o).lines().find(|l| l.starts_with("storefront.sessions ")).unwrap_or_default().to_string();
    assert!(sessions.contains(" 4 "), "four partitions expected: {sessions}");
}

#[test]
fn validate_names_the_field_of_a_wrong_type_and_survives_malformed_json() {
    let dir = tempfile::tempdir().unwrap();
    let example = storeflow(&["schemas", "example", "CartItemAdded"], repo());
    assert!(example.status.success());
    let mut v: serde_json::Value = serde_json::from_slice(&example.stdout).unwrap();
    std::fs::write(dir.path().join("good.json"), v.to_string()).unwrap();
    let o = storeflow(&["schemas", "validate", "good.json"], dir.path());
    assert!(o.status.success(), "{}", text(&o));

    v["quantity"] = serde_json::Value::from("two");
    std::fs::write(dir.path().join("bad.json"), v.to_string()).unwrap();
    let o = storeflow(&["schemas", "validate", "bad.json"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("error event: quantity: invalid type"), "{}", text(&o));

    std::fs::write(dir.path().join("broken.jsonl"), "{\"type\": \"PageViewed\",\n").unwrap();
    let o = storeflow(&["schemas", "validate", "broken.jsonl"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("malformed JSON"), "{}", text(&o));
    assert!(!text(&o).contains("panicked"));
}

#[test]
fn config_merges_the_environment_and_refuses_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_storeflow"))
        .arg("config")
        .current_dir(dir.path())
        .env("STOREFLOW__PARTITIONS", "7")
        .env("STOREFLOW__LOG__FSYNC", "always")
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    let out = text(&o);
    assert!(out.contains("partitions = 7") && out.contains("fsync = \"always\""), "{out}");
    std::fs::write(dir.path().join("storeflow.toml"), "[log]\nfsync = \"sometimes\"\n").unwrap();
    let o = storeflow(&["config"], dir.path());
    assert!(!o.status.success());
    assert!(text(&o).contains("sometimes"), "{}", text(&o));
}

#[test]
fn config_prints_no_kafka_password_nor_the_passwords_in_the_postgres_and_registry_urls() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("storeflow.toml"),
        r#"
[kafka]
brokers = "k1:9092"
[kafka.properties]
"security.protocol" = "SASL_SSL"
"sasl.mechanism" = "PLAIN"
"sasl.username" = "storeflow"
"sasl.password" = "kafka-hunter2"
"sasl.jaas.config" = 'org.apache.kafka.common.security.plain.PlainLoginModule required username="storeflow" password="jaas-hunter2";'
"ssl.key.password" = "tls-hunter2"
[schema_registry]
url = "https://registry-user:registry-hunter2@registry:8081"
[sinks.read_model]
postgres_url = "postgres://storeflow:pg-hunter2@db:5432/storeflow?sslmode=require"
[sinks.analytics.clickhouse]
url = "http://default:ch-hunter2@ch:8123"
password = "ch-password-hunter2"
"#,
    )
    .unwrap();
    let o = storeflow(&["config"], dir.path());
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(!out.contains("hunter2"), "a secret is printed:\n{out}");
    // What is not secret is still there to check.
    for shown in [
        "\"security.protocol\" = \"SASL_SSL\"",
        "\"sasl.password\" = \"***\"",
        "postgres://storeflow:***@db:5432/storeflow?sslmode=require",
        "https://registry-user:***@registry:8081",
        "http://default:***@ch:8123",
    ] {
        assert!(out.contains(shown), "missing {shown}:\n{out}");
    }
}

#[test]
fn help_lists_every_command_with_a_sentence() {
    let o = storeflow(&["--help"], repo());
    let out = text(&o);
    for cmd in ["run", "demo", "simulate", "schemas", "topics", "config"] {
        assert!(out.lines().any(|l| l.trim_start().starts_with(cmd) && l.len() > cmd.len() + 10), "no help line for {cmd}:\n{out}");
    }
}

/// `storeflow demo` through Kafka, killed (and the test failed) if it has not ended after
/// `limit`: a pipeline that stalls must not hang the suite.
fn demo_on_kafka(brokers: &str, cwd: &Path, limit: std::time::Duration) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_storeflow"))
        .args(["demo", "--events", "2000"])
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("STOREFLOW__KAFKA__BROKERS", brokers)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!("the demo had not ended after {limit:?}:\n{}", text(&o));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let o = child.wait_with_output().unwrap();
    (o.status.success(), text(&o))
}

#[test]
fn demo_through_kafka_leaves_confluent_framed_events_on_the_contract_topics_and_runs_again_on_the_same_broker() {
    use storeflow_ingest::contract::service_address;
    use storeflow_ingest::{ConsumerConfig, KafkaLog, KafkaSettings, Log, TopicPartition};
    let Some(brokers) = service_address("STOREFLOW_TEST_KAFKA", "Apache Kafka") else { return };
    // Twice on one broker: the second run resumes the first one's consumer groups, with
    // input partitions that get no new record for a while (it used to wait for them for good:
    // a consumer's position is unknown before its first record).
    // The same data directory too: its stores rebuild from the log, so a fresh one on a
    // used broker would hold the earlier runs' orders as well.
    let limit = std::time::Duration::from_secs(240);
    let dir = tempfile::tempdir().unwrap();
    for run in 1..=2 {
        let (ok, out) = demo_on_kafka(&brokers, dir.path(), limit);
        assert!(ok, "run {run}: {out}");
        if run == 2 {
            // The first run's seed is on this log: the second takes the next one.
            assert!(out.contains("seed: ") && out.contains("this log already ran"), "{out}");
        }
        assert!(out.contains(&format!("log: Kafka at {brokers}")), "{out}");
        assert!(out.contains("Verified 2,000 of 2,000 records"), "{out}");
        assert!(out.contains("Processors inventory, orders, fraud, recommendations, sales, payments, sql_revenue_by_category, sql_abandoned_carts, sql_hot_products caught up"), "run {run}: {out}");
        assert!(!dir.path().join("data/topics").exists(), "the embedded log was used instead of Kafka");
    }

    // Any Kafka client sees the topics and Confluent-framed Avro values.
    let log = KafkaLog::connect(KafkaSettings::new(&brokers)).unwrap();
    let topics = log.describe_topics().unwrap();
    for t in storeflow_avro::Topic::ALL {
        assert!(topics.iter().any(|i| i.name == t.name()), "{} missing on the broker", t.name());
    }
    let orders = topics.iter().find(|t| t.name == "storefront.orders").unwrap();
    let mut c = log.consumer(ConsumerConfig::new(&format!("cli-check-{}", std::process::id())), None).unwrap();
    c.assign(&orders.partitions.iter().map(|p| (TopicPartition::new(&orders.name, p.partition), p.start)).collect::<Vec<_>>()).unwrap();
    let recs = c.poll(100, std::time::Duration::from_secs(10)).unwrap();
    assert!(!recs.is_empty(), "no records on storefront.orders");
    let codec = storeflow_avro::Codec::embedded().unwrap();
    for r in &recs {
        let v = r.value.as_deref().unwrap();
        assert_eq!(v[0], 0, "not the Confluent magic byte");
        let e = codec.decode(v).unwrap();
        assert_eq!(e.topic(), storeflow_avro::Topic::Orders);
        assert_eq!(r.key.as_deref(), Some(e.key().as_bytes()));
    }
    c.close().unwrap();
}

#[test]
fn demo_lands_the_traffic_in_the_embedded_sinks_and_their_counts_agree_with_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let o = storeflow(&["demo", "--events", "3000", "--data-dir", "data"], dir.path());
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for line in ["read model: embedded SQLite", "analytics: embedded Parquet + DataFusion", "search: embedded tantivy index"] {
        assert!(out.contains(line), "no banner line {line:?}:\n{out}");
    }
    // "<n> orders (simulator: <m>)": the stores were empty, so the counts must be equal.
    let agree = |what: &str| {
        let at = out.find(&format!(" {what} (simulator: ")).unwrap_or_else(|| panic!("no {what} count:\n{out}"));
        let stored: String = out[..at].chars().rev().take_while(|c| c.is_ascii_digit() || *c == ',').collect::<Vec<_>>().into_iter().rev().collect();
        let rest = &out[at + what.len() + 14..];
        let expected = &rest[..rest.find(')').unwrap()];
        assert!(!stored.is_empty() && stored != "0", "nothing stored for {what}:\n{out}");
        assert_eq!(stored, expected, "{what}:\n{out}");
    };
    for what in ["orders", "products", "order facts", "searchable products"] {
        agree(what);
    }
    assert!(dir.path().join("data/sinks/read_model.sqlite").is_file());
    assert!(out.contains("The HTTP API serves these results with `storeflow run`"), "{out}");
    assert!(!out.contains("Not running yet"), "{out}");
}


#[test]
fn run_serves_the_http_api_with_a_fresh_admin_key_and_stops_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let registry_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_storeflow"))
        .arg("run")
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("STOREFLOW__LISTEN", format!("127.0.0.1:{port}"))
        .env("STOREFLOW__REGISTRY_LISTEN", format!("127.0.0.1:{registry_port}"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while http(port, "GET", "/healthz", None, None).map(|r| r.0).ok() != Some(200) {
        assert!(child.try_wait().unwrap().is_none(), "storeflow run exited early");
        assert!(std::time::Instant::now() < deadline, "no /healthz within 2 minutes");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let key_file = dir.path().join("data/admin.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600, "admin.key is readable by others");
    let key = std::fs::read_to_string(&key_file).unwrap().trim().to_string();
    let event = storeflow(&["schemas", "example", "ProductViewed"], dir.path());
    let event = String::from_utf8_lossy(&event.stdout).to_string();
    assert_eq!(http(port, "POST", "/v1/events", None, Some(&event)).unwrap().0, 401, "a write without a key");
    let (code, body) = http(port, "POST", "/v1/events", Some(&key), Some(&event)).unwrap();
    assert_eq!(code, 202, "{body}");
    assert!(body.contains("\"accepted\":1"), "{body}");
    let (code, body) = http(port, "POST", "/v1/events", Some(&key), Some(&event.replace("\"occurred_at\"", "\"occured_at\""))).unwrap();
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("occured_at"), "the error names the field: {body}");
    let (code, spec) = http(port, "GET", "/openapi.json", None, None).unwrap();
    assert_eq!(code, 200);
    assert!(spec.contains("/v1/orders"), "{spec}");
    // The registry the log's records refer to is served beside the API.
    let (code, versions) = http(registry_port, "GET", "/subjects/storefront.orders-storeflow.v1.OrderPlaced/versions", None, None).unwrap();
    assert_eq!(code, 200, "{versions}");
    let (code, _) = http(registry_port, "GET", "/subjects/storefront.orders-storeflow.v1.Nothing/versions", None, None).unwrap();
    assert_eq!(code, 404);

    // Ctrl-C: the API drains, the processors and sinks commit, the process exits 0.
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{all}");
    assert!(all.contains(&format!("HTTP API on http://127.0.0.1:{port}")), "{all}");
    assert!(all.contains(&format!("Schema registry (Confluent REST API) on http://127.0.0.1:{registry_port}")), "{all}");
    // stdout is a pipe here, not a terminal: the key goes to the file only.
    assert!(all.contains("A fresh admin API key was written to data/admin.key (mode 0600)"), "{all}");
    assert!(!all.contains(&key), "the admin key is printed to a pipe: {all}");
}

#[test]
fn the_same_seed_and_ending_at_give_the_same_events_on_two_logs_and_an_ending_at_in_the_future_is_refused_with_nothing_published() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
    let simulate = |cwd: &Path, end: &str| {
        std::fs::create_dir_all(cwd).unwrap();
        storeflow(&["simulate", "--events", "3000", "--seed", "3", "--ending-at", end, "--data-dir", "data", "--quiet"], cwd)
    };
    let end = "2026-11-30T12:00:00Z";
    let first = simulate(&a, end);
    assert!(first.status.success(), "{}", text(&first));
    // Personal data is sealed under each data directory's keys: the second seals alike.
    std::fs::create_dir_all(b.join("data")).unwrap();
    let keys = a.join("data/keys");
    if keys.is_dir() {
        std::fs::create_dir_all(b.join("data/keys")).unwrap();
        for e in std::fs::read_dir(&keys).unwrap() {
            let e = e.unwrap();
            if e.path().is_file() {
                std::fs::copy(e.path(), b.join("data/keys").join(e.file_name())).unwrap();
            }
        }
    }
    let second = simulate(&b, end);
    assert!(second.status.success(), "{}", text(&second));
    let tail = |cwd: &Path, topic: &str| {
        let o = storeflow(&["topics", "tail", topic, "--limit", "100000", "--data-dir", "data"], cwd);
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    for topic in ["storefront.orders", "storefront.sessions", "storefront.customers"] {
        let (x, y) = (tail(&a, topic), tail(&b, topic));
        assert!(x.lines().count() > 10, "{topic}: too few records to compare:\n{x}");
        assert_eq!(x, y, "{topic}: the same --seed and --ending-at gave other events");
    }
    let later = simulate(&c, "2999-01-01T00:00:00Z");
    let out = text(&later);
    assert!(!later.status.success() && out.contains("--ending-at") && out.contains("in the future"), "{out}");
    let listed = text(&storeflow(&["topics", "list", "--data-dir", "data"], &c));
    assert!(
        listed.lines().filter(|l| l.starts_with("storefront.")).all(|l| l.split_whitespace().nth(2) == Some("0")),
        "something was published:\n{listed}"
    );
}

#[test]
fn a_seed_that_already_ran_on_the_log_is_refused_before_anything_is_published_and_no_seed_takes_the_next_free_one() {
    let dir = tempfile::tempdir().unwrap();
    // The records on the input topics (storefront.*), from `storeflow topics list`.
    let orders = || {
        let o = storeflow(&["topics", "list", "--data-dir", "data"], dir.path());
        let out = text(&o);
        out.lines()
            .filter(|l| l.starts_with("storefront.") && !l.contains(".dlq"))
            .map(|l| l.split_whitespace().nth(2).unwrap().replace(',', "").parse::<u64>().unwrap())
            .sum::<u64>()
    };
    let simulate = |seed: Option<&str>| {
        let mut args = vec!["simulate", "--events", "500", "--data-dir", "data"];
        if let Some(s) = seed {
            args.extend(["--seed", s]);
        }
        storeflow(&args, dir.path())
    };
    let first = simulate(Some("7"));
    assert!(first.status.success(), "{}", text(&first));
    let placed = orders();
    assert!(placed > 0);
    let again = simulate(Some("7"));
    let out = text(&again);
    assert!(!again.status.success(), "{out}");
    assert!(out.contains("seed 7 already ran on this log") && out.contains("--seed"), "{out}");
    assert_eq!(orders(), placed, "the refused run published orders");
    for expected in [None, Some("seed: 43 (this log already ran 7, 42;")] {
        let o = simulate(None);
        let out = text(&o);
        assert!(o.status.success(), "{out}");
        assert_eq!(out.contains("seed: "), expected.is_some(), "{out}");
        if let Some(line) = expected {
            assert!(out.contains(line), "{out}");
        }
    }
    assert!(orders() > placed);
}
