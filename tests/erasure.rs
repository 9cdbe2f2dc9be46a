//! Erasure that really erases: a customer's planted email, name, address, payment token and
//! IP go through `storeflow run` (API, processors, sinks); after `CustomerErased` none of them
//! can be read from anything the installation keeps — the data directory (log segments, the
//! journal, processor state, the embedded stores), the decoded log records and the API —
//! while another customer's data still opens.
//!
//! Avro stores a string as its UTF-8 bytes, so a byte search of the log's segment files is a
//! search of the decoded records too; the test also decodes every record of the two topics
//! and tries to open what it holds.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::http;
use serde_json::{Value, json};
use storeflow_avro::pii::{self, Opened, Vault};

struct Planted {
    customer: &'static str,
    order: &'static str,
    email: &'static str,
    name: &'static str,
    line1: &'static str,
    city: &'static str,
    postal_code: &'static str,
    token: &'static str,
    ip: &'static str,
}

const ADA: Planted = Planted {
    customer: "cust-erasure-ada",
    order: "ord-erasure-ada",
    email: "ada.plantedmail@example.org",
    name: "Ada Plantedname",
    line1: "77 Plantedway",
    city: "Shredtown",
    postal_code: "PL-99177",
    token: "pm_planted_ada_4242",
    ip: "198.51.100.177",
};

const BOB: Planted = Planted {
    customer: "cust-erasure-bob",
    order: "ord-erasure-bob",
    email: "bob.keptmail@example.org",
    name: "Bob Keptname",
    line1: "12 Keptstreet",
    city: "Keepville",
    postal_code: "KP-31337",
    token: "pm_kept_bob_1881",
    ip: "203.0.113.188",
};

impl Planted {
    fn values(&self) -> [&'static str; 7] {
        [self.email, self.name, self.line1, self.city, self.postal_code, self.token, self.ip]
    }
}

fn storeflow(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_storeflow"));
    c.args(args).current_dir(dir).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    c
}

fn example(dir: &Path, event_type: &str) -> Value {
    let out = storeflow(dir, &["schemas", "example", event_type]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn events(dir: &Path, p: &Planted) -> Vec<Value> {
    let mut registered = example(dir, "CustomerRegistered");
    registered["customer_id"] = json!(p.customer);
    registered["email"] = json!(p.email);
    registered["name"] = json!(p.name);
    // No event_id: the API assigns one.
    registered.as_object_mut().unwrap().remove("event_id");
    let mut order = example(dir, "OrderPlaced");
    order["order_id"] = json!(p.order);
    order["customer_id"] = json!(p.customer);
    order.as_object_mut().unwrap().remove("event_id");
    let address = json!({"name": p.name, "line1": p.line1, "line2": null, "city": p.city, "postal_code": p.postal_code, "region": null, "country": "DE"});
    order["shipping_address"] = address.clone();
    order["billing_address"] = address;
    order["payment_method_token"] = json!(p.token);
    order["client_ip"] = json!(p.ip);
    vec![registered, order]
}

/// Every file under `dir` that holds one of `needles`, with the needle.
fn grep(dir: &Path, needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).unwrap_or_default();
            for n in needles {
                if bytes.windows(n.len()).any(|w| w == n.as_bytes()) {
                    found.push(format!("{n} in {}", path.display()));
                }
            }
        }
    }
    found
}

fn wait_for(what: &str, child: &mut Child, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ok() {
        assert!(child.try_wait().unwrap().is_none(), "storeflow run exited while waiting for {what}");
        assert!(Instant::now() < deadline, "{what}: not within 2 minutes");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every string inside `v`.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// Every string of every record on the customers and orders topics, decoded.
fn logged_strings(data: &Path) -> Vec<String> {
    use storeflow_ingest::{ConsumerConfig, EmbeddedLog, Log, TopicPartition};
    let log = EmbeddedLog::open(data).unwrap();
    let codec = storeflow_avro::Codec::new(std::sync::Arc::new(storeflow_avro::EmbeddedRegistry::new().unwrap())).unwrap();
    let mut out = Vec::new();
    for topic in ["storefront.customers", "storefront.orders"] {
        let info = log.describe_topics().unwrap().into_iter().find(|t| t.name == topic).unwrap();
        let mut c = log.consumer(ConsumerConfig::new("erasure-test"), None).unwrap();
        c.assign(&info.partitions.iter().map(|p| (TopicPartition::new(topic, p.partition), p.start)).collect::<Vec<_>>()).unwrap();
        let total: u64 = info.partitions.iter().map(|p| p.end - p.start).sum();
        let mut seen = 0u64;
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen < total && Instant::now() < deadline {
            for r in c.poll(10_000, Duration::from_millis(200)).unwrap() {
                seen += 1;
                if let Some(Ok(e)) = r.value.as_deref().map(|v| codec.decode(v)) {
                    strings(&e.to_json(), &mut out);
                }
            }
        }
    }
    out
}

/// The plaintexts of every sealed string on the log that `vault` opens.
fn opened(data: &Path, vault: &Vault) -> Vec<String> {
    logged_strings(data)
        .iter()
        .filter_map(|s| match vault.open(s).unwrap() {
            Opened::Clear(c) => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn an_erased_customers_personal_data_is_unreadable_everywhere_and_another_customers_is_intact() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = std::fs::File::create(dir.path().join("run.log")).unwrap();
    let mut child = storeflow(dir.path(), &["run", "--listen", &format!("127.0.0.1:{port}"), "--registry-listen", ""])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    wait_for("/healthz", &mut child, || http(port, "GET", "/healthz", None, None).map(|r| r.0).ok() == Some(200));
    let admin = std::fs::read_to_string(data.join("admin.key")).unwrap().trim().to_string();

    let planted = [events(dir.path(), &ADA), events(dir.path(), &BOB)].concat();
    let batch = json!({ "events": planted }).to_string();
    let (code, body) = http(port, "POST", "/v1/events", Some(&admin), Some(&batch)).unwrap();
    assert_eq!(code, 202, "{body}");
    for p in [&ADA, &BOB] {
        wait_for("the order in the read model", &mut child, || http(port, "GET", &format!("/v1/orders/{}", p.order), Some(&admin), None).unwrap().0 == 200);
    }
    let vault = Vault::load(&data.join("keys")).unwrap();
    assert!(vault.has_key(ADA.customer).unwrap() && vault.has_key(BOB.customer).unwrap());

    // Before: sealed at the edge, so no file of the installation holds them in the clear —
    // but the log holds every one of them, and they open with the customer's key.
    let all: Vec<&str> = ADA.values().into_iter().chain(BOB.values()).collect();
    assert_eq!(grep(&data, &all), Vec::<String>::new(), "personal data in the clear on disk");
    // The log cannot be opened while `storeflow run` holds it: read it from a copy.
    let copy = dir.path().join("copy-before");
    common::copy_dir(&data, &copy);
    let before = opened(&copy, &vault);
    for v in all.iter() {
        assert!(before.iter().any(|s| s == v), "{v} is not on the log before the erasure: {before:?}");
    }

    // The erasure, by an admin (services may too; app keys may not: tests in api/tests/roles.rs).
    let mut erased = example(dir.path(), "CustomerErased");
    erased.as_object_mut().unwrap().remove("event_id");
    erased["customer_id"] = json!(ADA.customer);
    let (code, body) = http(port, "POST", "/v1/events", Some(&admin), Some(&erased.to_string())).unwrap();
    assert_eq!(code, 202, "{body}");
    assert!(!vault.has_key(ADA.customer).unwrap(), "Ada's key outlived her erasure");
    assert!(vault.has_key(BOB.customer).unwrap(), "Bob's key went with Ada's");

    // The API: an admin reads an order's personal data opened from the read model's sealed
    // copy — the erased customer's as nothing, the other's whole — and never a sealed value.
    for (p, erased) in [(&ADA, true), (&BOB, false)] {
        let (code, body) = http(port, "GET", &format!("/v1/orders/{}", p.order), Some(&admin), None).unwrap();
        assert_eq!(code, 200, "{body}");
        for v in [p.name, p.line1, p.city, p.postal_code, p.token, p.ip] {
            assert_eq!(body.contains(v), !erased, "{v}: erased {erased}, the API's answer: {body}");
        }
        assert!(!body.contains(p.email), "an order carries no email: {body}");
        assert!(!body.contains(pii::SEALED_PREFIX), "a sealed value in the API's answer: {body}");
    }

    // Stop gracefully (every processor and sink commits), then look at everything.
    let pid = child.id().to_string();
    std::thread::sleep(Duration::from_secs(2));
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert!(child.wait().unwrap().success(), "storeflow run did not stop cleanly: {}", std::fs::read_to_string(dir.path().join("run.log")).unwrap());

    assert_eq!(grep(&data, &all), Vec::<String>::new(), "personal data in the clear on disk after the erasure");
    let after = opened(&data, &Vault::load(&data.join("keys")).unwrap());
    for v in ADA.values() {
        assert!(!after.iter().any(|s| s == v), "{v} still opens after the erasure");
    }
    for v in BOB.values() {
        assert!(after.iter().any(|s| s == v), "another customer's {v} no longer opens");
    }
    // Ada's sealed copies are still on the log (an append-only log keeps them): unreadable.
    let sealed = logged_strings(&data).into_iter().filter(|s| pii::is_sealed(s)).count();
    assert!(sealed >= 2 * ADA.values().len(), "the sealed values are not on the log: {sealed}");
}
