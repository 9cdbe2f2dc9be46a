//! docker-compose.yml without a Docker engine: the file is validated against the Compose
//! Specification's JSON schema (`tests/compose/compose-spec.json`, from compose-spec/compose-spec
//! at 170098b, the schema Docker Compose itself validates with) by the reference `jsonschema`
//! validator in the tests' venv; every key storeflow receives is loaded by storeflow's own
//! configuration (`storeflow config` with exactly that environment); every pinned version is
//! the one `scripts/services` runs the tests against; health checks gate the start order;
//! Grafana's provisioning names the plugin it installs and the dashboards it mounts.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

mod common;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The checked file, as tests/compose/check.py summarizes it.
fn compose() -> Option<Value> {
    let python = common::venv_python("validate docker-compose.yml")?;
    let o = Command::new(python).arg(repo().join("tests/compose/check.py")).arg(repo().join("docker-compose.yml")).output().unwrap();
    assert!(o.status.success(), "docker-compose.yml does not validate against the Compose Specification:\n{}", String::from_utf8_lossy(&o.stderr));
    Some(serde_json::from_slice(&o.stdout).unwrap())
}

/// `NAME=value` of scripts/services (its pinned versions).
fn pinned(name: &str) -> String {
    let script = std::fs::read_to_string(repo().join("scripts/services")).unwrap();
    let line = script.lines().find(|l| l.starts_with(&format!("{name}="))).unwrap_or_else(|| panic!("scripts/services has no {name}"));
    line[name.len() + 1..].trim().to_string()
}

fn tag(compose: &Value, service: &str) -> String {
    let image = compose["services"][service]["image"].as_str().unwrap_or_else(|| panic!("{service} has no image"));
    image.rsplit_once(':').unwrap_or_else(|| panic!("{service}'s image {image} is not pinned to a tag")).1.to_string()
}

#[test]
fn the_compose_file_is_valid_compose_and_pins_the_versions_the_tests_run_against() {
    let Some(c) = compose() else { return };
    assert_eq!(tag(&c, "kafka"), pinned("KAFKA_VERSION"), "Kafka");
    assert_eq!(tag(&c, "elasticsearch"), pinned("ES_VERSION"), "Elasticsearch");
    assert_eq!(tag(&c, "stripe-mock"), pinned("STRIPE_MOCK_VERSION"), "stripe-mock");
    // chDB 26.7.x embeds ClickHouse 26.7: the server image of the same release line.
    let chdb = pinned("CHDB_VERSION");
    let line: Vec<&str> = chdb.split('.').take(2).collect();
    assert_eq!(tag(&c, "clickhouse"), line.join("."), "ClickHouse (chDB {chdb})");
    // Postgres: the version docs/SERVICES.md records for the tests (Debian's package).
    let services = std::fs::read_to_string(repo().join("docs/SERVICES.md")).unwrap();
    let pg = services.split("PostgreSQL **").nth(1).and_then(|s| s.split("**").next()).expect("docs/SERVICES.md names the Postgres version");
    assert!(tag(&c, "postgres").starts_with(&format!("{pg}-")), "Postgres image {} is not {pg}", tag(&c, "postgres"));
    for (name, s) in c["services"].as_object().unwrap() {
        if !s["build"].as_bool().unwrap() {
            let t = tag(&c, name);
            assert!(t != "latest" && t.chars().any(|ch| ch.is_ascii_digit()), "{name} is not pinned: {t}");
        }
    }
}

#[test]
fn every_service_that_can_be_probed_has_a_health_check_and_gates_what_depends_on_it() {
    let Some(c) = compose() else { return };
    let services = c["services"].as_object().unwrap();
    for (name, s) in services {
        for (dep, cond) in s["depends_on"].as_object().unwrap_or_else(|| panic!("{name}: depends_on must name conditions")) {
            let healthy = !services[dep]["healthcheck"].is_null();
            let want = if healthy && !(name == "prometheus" && dep == "storeflow") { "service_healthy" } else { "service_started" };
            assert_eq!(cond["condition"], want, "{name} → {dep}");
        }
        // stripe-mock's image has no shell or client to probe with.
        if name != "stripe-mock" {
            assert!(!s["healthcheck"].is_null(), "{name} has no health check");
        }
    }
    let storeflow = &services["storeflow"];
    assert_eq!(storeflow["stop_signal"], "SIGTERM");
    assert!(storeflow["healthcheck"]["test"].to_string().contains("/readyz"), "{}", storeflow["healthcheck"]);
}

#[test]
fn storeflows_environment_in_the_compose_file_is_a_configuration_storeflow_accepts_and_matches_the_services() {
    let Some(c) = compose() else { return };
    let services = &c["services"];
    let env: BTreeMap<String, String> = serde_json::from_value(services["storeflow"]["environment"].clone()).unwrap();
    assert!(env.keys().all(|k| k.starts_with("STOREFLOW__")), "{env:?}");
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_storeflow"))
        .arg("config")
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(&env)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "storeflow refuses the compose file's environment: {}", String::from_utf8_lossy(&o.stderr));
    let config: toml::Table = toml::from_str(&shown).unwrap();
    assert_eq!(config["kafka"]["brokers"].as_str(), Some("kafka:29092"));
    assert_eq!(config["sinks"]["analytics"]["clickhouse"]["user"].as_str(), Some("storeflow"));
    assert!(config["sinks"]["read_model"]["postgres_url"].as_str().is_some_and(|u| u.contains("@postgres:5432/")), "{shown}");
    assert_eq!(config["sinks"]["search"]["elasticsearch"]["url"].as_str(), Some("http://elasticsearch:9200"));

    // The names storeflow dials are the ones the services listen on.
    let kafka = &services["kafka"]["environment"];
    assert!(kafka["KAFKA_ADVERTISED_LISTENERS"].as_str().unwrap().contains("INTERNAL://kafka:29092"), "{kafka}");
    assert!(kafka["KAFKA_ADVERTISED_LISTENERS"].as_str().unwrap().contains("EXTERNAL://localhost:9092"), "the host cannot reach Kafka: {kafka}");
    let ch = &services["clickhouse"]["environment"];
    assert_eq!(ch["CLICKHOUSE_USER"].as_str(), Some(env["STOREFLOW__SINKS__ANALYTICS__CLICKHOUSE__USER"].as_str()));
    assert_eq!(ch["CLICKHOUSE_PASSWORD"].as_str(), Some(env["STOREFLOW__SINKS__ANALYTICS__CLICKHOUSE__PASSWORD"].as_str()));
    let pg = &services["postgres"]["environment"];
    let url = &env["STOREFLOW__SINKS__READ_MODEL__POSTGRES_URL"];
    assert_eq!(url, &format!("postgres://{}:{}@postgres:5432/{}", pg["POSTGRES_USER"].as_str().unwrap(), pg["POSTGRES_PASSWORD"].as_str().unwrap(), pg["POSTGRES_DB"].as_str().unwrap()));

    // Prometheus scrapes the port storeflow listens on.
    let port = env["STOREFLOW__LISTEN"].rsplit(':').next().unwrap().to_string();
    let prometheus = std::fs::read_to_string(repo().join("deploy/prometheus.yml")).unwrap();
    assert!(prometheus.contains(&format!("\"storeflow:{port}\"")), "{prometheus}");
}

#[test]
fn grafana_is_provisioned_with_the_plugin_it_installs_and_the_dashboards_it_mounts() {
    let Some(c) = compose() else { return };
    let grafana = &c["services"]["grafana"];
    let plugins = grafana["environment"]["GF_INSTALL_PLUGINS"].as_str().unwrap();
    let provisioning = &c["provisioning"];
    let sources = &provisioning["dashboards/provisioning/datasources/storeflow.yml"]["datasources"];
    let types: Vec<&str> = sources.as_array().unwrap().iter().map(|d| d["type"].as_str().unwrap()).collect();
    assert!(types.contains(&"grafana-clickhouse-datasource") && plugins.contains("grafana-clickhouse-datasource"), "{types:?} / {plugins}");
    assert!(types.contains(&"prometheus"));
    let ch = sources.as_array().unwrap().iter().find(|d| d["type"] == "grafana-clickhouse-datasource").unwrap();
    assert_eq!(ch["jsonData"]["username"], c["services"]["clickhouse"]["environment"]["CLICKHOUSE_USER"]);
    let path = provisioning["dashboards/provisioning/dashboards/storeflow.yml"]["providers"][0]["options"]["path"].as_str().unwrap();
    let volumes: Vec<&str> = grafana["volumes"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(volumes.iter().any(|v| *v == format!("./dashboards:{path}:ro")), "{volumes:?} does not mount the dashboards at {path}");
    // The dashboard it provisions parses, and its panels query the provisioned data source type.
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(repo().join("dashboards/marketplace.json")).unwrap()).unwrap();
    assert!(dashboard.to_string().contains("grafana-clickhouse-datasource"));
}

#[test]
fn the_image_builds_as_a_non_root_user_that_stops_on_sigterm_without_the_build_output_in_its_context() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("cargo chef cook"), "no dependency-caching layer");
    let runtime = dockerfile.rsplit("FROM ").next().unwrap();
    assert!(runtime.contains("USER storeflow") && runtime.contains("STOPSIGNAL SIGTERM"), "{runtime}");
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    for p in ["target/", ".git/", "data/"] {
        assert!(ignore.lines().any(|l| l.trim() == p), ".dockerignore leaves {p} in the context");
    }
}
