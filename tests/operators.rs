//! Operators' tools end to end on the embedded log: `topics tail|produce`, `groups
//! list|describe|reset`, `sinks rebuild` and `--log-format json`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

/// Runs `storeflow args…` in `cwd` with a clean environment, `stdin` piped in.
fn storeflow_with(args: &[&str], cwd: &Path, stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_storeflow"))
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run storeflow");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn storeflow(args: &[&str], cwd: &Path) -> Output {
    storeflow_with(args, cwd, "")
}

/// [`storeflow`] with environment variables set.
fn storeflow_env(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_storeflow"))
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .expect("run storeflow")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `storeflow schemas example NAME` as one JSON line.
fn example(name: &str, cwd: &Path) -> serde_json::Value {
    let o = storeflow(&["schemas", "example", name], cwd);
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Two valid StockReceived events (fresh ids, dated now) for `sku-a` and `sku-b`.
fn stock_received(cwd: &Path) -> Vec<serde_json::Value> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    ["sku-a", "sku-b"]
        .iter()
        .enumerate()
        .map(|(i, sku)| {
            let mut v = example("StockReceived", cwd);
            v["sku"] = serde_json::json!(sku);
            v["quantity"] = serde_json::json!(10 + i);
            v["event_id"] = serde_json::json!(format!("00000000-0000-4000-8000-00000000000{i}"));
            v["occurred_at"] = serde_json::json!(now);
            v
        })
        .collect()
}

fn jsonl(events: &[serde_json::Value]) -> String {
    events.iter().map(|e| format!("{e}\n")).collect()
}

/// The JSON lines `storeflow topics tail` prints.
fn tail(args: &[&str], cwd: &Path) -> Vec<serde_json::Value> {
    let mut all = vec!["topics", "tail"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--data-dir", "data"]);
    let o = storeflow(&all, cwd);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

/// `groups describe GROUP`: (total lag, committed offsets of its partitions).
fn describe(group: &str, cwd: &Path) -> (u64, Vec<Option<u64>>) {
    let o = storeflow(&["groups", "describe", group, "--data-dir", "data"], cwd);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let lag = out
        .lines()
        .find_map(|l| l.strip_prefix("total lag "))
        .unwrap_or_else(|| panic!("no total lag:\n{out}"))
        .trim()
        .parse()
        .unwrap();
    let committed = out
        .lines()
        .filter(|l| l.contains('/') && !l.starts_with("group "))
        .map(|l| l.split_whitespace().nth(1).and_then(|c| c.parse().ok()))
        .collect();
    (lag, committed)
}

#[test]
fn produce_with_one_bad_line_publishes_nothing_and_names_the_line_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let good = stock_received(dir.path());
    let mut bad = good[1].clone();
    bad["quantity"] = serde_json::json!("two");
    let input = jsonl(&[good[0].clone(), bad, good[1].clone()]);
    let o = storeflow_with(&["topics", "produce", "storefront.inventory", "--data-dir", "data"], dir.path(), &input);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("line 2: quantity: invalid type"), "{out}");
    assert!(out.contains("nothing published: 1 of 3 lines are invalid"), "{out}");
    assert!(tail(&["storefront.inventory"], dir.path()).is_empty(), "something was published");

    // An event of another topic's type is refused naming the type.
    let viewed = example("PageViewed", dir.path());
    let o = storeflow_with(&["topics", "produce", "storefront.inventory", "--data-dir", "data"], dir.path(), &jsonl(&[viewed]));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("line 1: type: PageViewed belongs to storefront.sessions"), "{}", text(&o));

    // --skip-invalid publishes the valid ones.
    let o = storeflow_with(&["topics", "produce", "storefront.inventory", "--skip-invalid", "--data-dir", "data"], dir.path(), &input);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("published 2 events to storefront.inventory (1 invalid lines skipped)"), "{}", text(&o));
    assert_eq!(tail(&["storefront.inventory"], dir.path()).len(), 2);
}

#[test]
fn produced_events_are_tailed_back_decoded_under_the_contracts_key() {
    let dir = tempfile::tempdir().unwrap();
    let events = stock_received(dir.path());
    let o = storeflow_with(&["topics", "produce", "storefront.inventory", "--data-dir", "data"], dir.path(), &jsonl(&events));
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("published 2 events to storefront.inventory"), "{}", text(&o));

    let mut lines = tail(&["storefront.inventory"], dir.path());
    assert_eq!(lines.len(), 2, "{lines:?}");
    lines.sort_by_key(|l| l["key"].as_str().unwrap_or_default().to_string());
    for (line, sent) in lines.iter().zip(&events) {
        assert_eq!(line["topic"], "storefront.inventory");
        assert_eq!(line["type"], "StockReceived");
        // The inventory topic is keyed by SKU.
        assert_eq!(line["key"], sent["sku"], "{line}");
        assert_eq!(line["value"]["event_id"], sent["event_id"], "{line}");
        assert_eq!(line["value"]["quantity"], sent["quantity"], "{line}");
        assert!(line["offset"].is_u64() && line["partition"].is_u64(), "{line}");
        assert!(line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{line}");
    }
    assert_eq!(tail(&["storefront.inventory", "--limit", "1"], dir.path()).len(), 1);
    assert!(tail(&["storefront.inventory", "--from", "latest"], dir.path()).is_empty());
    assert!(tail(&["storefront.inventory", "--from", "2099-01-01T00:00:00Z"], dir.path()).is_empty());
    assert_eq!(tail(&["storefront.inventory", "--from", "2020-01-01T00:00:00Z"], dir.path()).len(), 2);
    let p = lines[0]["partition"].as_u64().unwrap().to_string();
    let only = tail(&["storefront.inventory", "--partition", &p], dir.path());
    assert!(!only.is_empty() && only.iter().all(|l| l["partition"].as_u64().unwrap().to_string() == p), "{only:?}");
}

#[test]
fn after_a_demo_every_group_has_lag_zero_and_dead_letters_tail_with_their_reason_and_logs_can_be_json() {
    let dir = tempfile::tempdir().unwrap();
    let o = storeflow(&["--log-format", "json", "--log", "info", "demo", "--events", "3000", "--quiet", "--data-dir", "data"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let logs: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stderr).lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(logs.iter().any(|l| l["level"] == "INFO" && l["fields"]["message"].is_string()), "no JSON log lines:\n{}", text(&o));

    let o = storeflow(&["groups", "list", "--data-dir", "data"], dir.path());
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for group in ["storeflow.inventory", "storeflow.orders", "storeflow.sink.read_model", "storeflow.sink.search"] {
        let line = out.lines().find(|l| l.starts_with(&format!("{group} "))).unwrap_or_else(|| panic!("no {group}:\n{out}"));
        assert_eq!(line.split_whitespace().nth(3), Some("0"), "lag of {group}: {line}");
    }
    let (lag, committed) = describe("storeflow.sink.read_model", dir.path());
    assert_eq!(lag, 0);
    assert!(committed.iter().any(|c| c.is_some_and(|c| c > 0)), "{committed:?}");
    let (lag, _) = describe("storeflow.inventory", dir.path());
    assert_eq!(lag, 0);

    // The demo plants poison records: they tail with the processor and the reason.
    let o = storeflow(&["topics", "list", "--data-dir", "data"], dir.path());
    let dlq = text(&o)
        .lines()
        .find(|l| l.split_whitespace().next().is_some_and(|t| t.ends_with(".dlq")) && l.split_whitespace().nth(2).is_some_and(|n| n != "0"))
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| panic!("no dead letters:\n{}", text(&o)));
    let letters = tail(&[&dlq], dir.path());
    assert!(!letters.is_empty());
    for l in &letters {
        let d = &l["dead_letter"];
        assert!(d["reason"].as_str().is_some_and(|r| !r.is_empty()) && d["by"].as_str().is_some_and(|b| !b.is_empty()), "{l}");
        assert!(d["from"].as_str().is_some_and(|f| f.contains('@')), "{l}");
    }
}

#[test]
fn a_sink_reset_changes_nothing_without_execute_and_with_it_the_next_run_replays_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let o = storeflow(&["demo", "--events", "1000", "--quiet", "--data-dir", "data"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let group = "storeflow.sink.read_model";
    let (lag, before) = describe(group, dir.path());
    assert_eq!(lag, 0);

    let o = storeflow(&["groups", "reset", group, "--to-earliest", "--data-dir", "data"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("Dry run: nothing changed"), "{}", text(&o));
    assert_eq!(describe(group, dir.path()), (0, before.clone()), "a dry run moved the offsets");

    let o = storeflow(&["groups", "reset", group, "--to-earliest", "--execute", "--data-dir", "data"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let (replay, after) = describe(group, dir.path());
    let held: u64 = before.iter().map(|c| c.unwrap_or(0)).sum();
    assert_eq!(replay, held, "the reset must put every record the sink read back to read");
    assert!(replay > 0 && after.iter().all(|c| *c == Some(0)), "{after:?}");

    // The next run reads it all again (the demo's sink report counts what it wrote) and
    // catches up.
    let o = storeflow(&["demo", "--events", "100", "--quiet", "--data-dir", "data"], dir.path());
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let written: u64 = out
        .lines()
        .find(|l| l.trim_start().starts_with("read_model "))
        .and_then(|l| l.split(" records written").next())
        .and_then(|l| l.split_whitespace().last())
        .map(|n| n.replace(',', "").parse().unwrap())
        .unwrap_or_else(|| panic!("no read_model line:\n{out}"));
    assert!(written >= replay, "the read model wrote {written} records, fewer than the {replay} it had to replay:\n{out}");
    assert_eq!(describe(group, dir.path()).0, 0);
}

/// The embedded stores under `data/sinks`, canonically ([`storeflow_sinks::snapshot`]).
fn stores(cwd: &Path) -> std::collections::BTreeMap<String, Vec<String>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(storeflow_sinks::snapshot::embedded(&cwd.join("data/sinks"))).unwrap()
}

/// Records on every dead-letter topic, from `topics list`.
fn dead_letters(cwd: &Path) -> u64 {
    let o = storeflow(&["topics", "list", "--data-dir", "data"], cwd);
    assert!(o.status.success(), "{}", text(&o));
    text(&o)
        .lines()
        .filter(|l| l.split_whitespace().next().is_some_and(|t| t.ends_with(".dlq")))
        .map(|l| l.split_whitespace().nth(2).unwrap().replace(',', "").parse::<u64>().unwrap())
        .sum()
}

#[test]
fn a_rebuilt_store_equals_the_old_one_undamaged_keeps_the_old_aside_publishes_no_dead_letter_twice_and_the_next_run_goes_on_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let o = storeflow(&["demo", "--events", "3000", "--quiet", "--data-dir", "data"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let before = stores(dir.path());
    assert!(before.get("read_model.orders").is_some_and(|rows| rows.len() > 10), "the demo populated no orders: {:?}", before.keys());
    let letters = dead_letters(dir.path());
    assert!(letters > 0, "the demo plants poison records");

    // Damage one store: analytics loses its orders (files deleted by hand, say).
    let orders = dir.path().join("data/sinks/analytics/fact_orders");
    for f in std::fs::read_dir(&orders).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    assert!(stores(dir.path())["analytics.fact_orders"].is_empty(), "the damage did not take");

    let held: u64 = describe("storeflow.sink.read_model", dir.path()).1.iter().map(|c| c.unwrap_or(0)).sum();
    let mut known = 0;
    for sink in ["read_model", "analytics", "search"] {
        let (_, offsets) = describe(&format!("storeflow.sink.{sink}"), dir.path());
        let o = storeflow(&["sinks", "rebuild", sink, "--data-dir", "data"], dir.path());
        let out = text(&o);
        assert!(o.status.success(), "{out}");
        assert!(out.contains(&format!("Rebuilt {sink} (embedded")), "{out}");
        known += out.split(" could not be written").next().and_then(|l| l.split_whitespace().last()).map(|n| n.replace(',', "").parse::<u64>().unwrap()).unwrap();
        // The group goes on where the new store is: the log did not grow, so that is where
        // the old one was.
        assert_eq!(describe(&format!("storeflow.sink.{sink}"), dir.path()), (0, offsets), "{out}");
    }
    let after = stores(dir.path());
    let diff = storeflow_sinks::snapshot::differences(&before, &after);
    assert!(diff.is_empty(), "the rebuilt stores differ from the old ones:\n{}", diff.join("\n"));
    assert!(known > 0, "the poison records the sinks dead-lettered the first time came up again");
    assert_eq!(dead_letters(dir.path()), letters, "a rebuild published dead letters again");

    // The old stores are kept aside, and nothing is left staged.
    let entries: Vec<String> = std::fs::read_dir(dir.path().join("data/sinks")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!entries.iter().any(|e| e.starts_with("rebuild-")), "{entries:?}");
    let replaced: Vec<&String> = entries.iter().filter(|e| e.starts_with("replaced-")).collect();
    assert!(!replaced.is_empty(), "{entries:?}");
    let kept: Vec<String> = replaced.iter().flat_map(|r| std::fs::read_dir(dir.path().join("data/sinks").join(r)).unwrap()).map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    for store in ["read_model.sqlite", "analytics", "search"] {
        assert!(kept.iter().any(|k| k == store), "{store} was not kept: {kept:?}");
    }

    // The next run reads only what is new.
    let o = storeflow(&["demo", "--events", "100", "--quiet", "--data-dir", "data"], dir.path());
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let written: u64 = out
        .lines()
        .find(|l| l.trim_start().starts_with("read_model "))
        .and_then(|l| l.split(" records written").next())
        .and_then(|l| l.split_whitespace().last())
        .map(|n| n.replace(',', "").parse().unwrap())
        .unwrap_or_else(|| panic!("no read_model line:\n{out}"));
    assert!(written < held / 2, "after the rebuild the read model wrote {written} records: it read the log again from the start:\n{out}");
    assert_eq!(describe("storeflow.sink.read_model", dir.path()).0, 0);
}

#[test]
fn a_rebuild_of_a_sink_that_does_not_exist_is_disabled_or_cannot_reach_its_store_changes_nothing_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let o = storeflow(&["demo", "--events", "300", "--quiet", "--data-dir", "data"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let before = stores(dir.path());
    let o = storeflow(&["sinks", "rebuild", "readmodel", "--data-dir", "data"], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("there is no sink `readmodel`: the sinks are read_model, analytics, search"), "{}", text(&o));
    let o = storeflow_env(&["sinks", "rebuild", "search", "--data-dir", "data"], dir.path(), &[("STOREFLOW__SINKS__SEARCH__ENABLED", "false")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("the search sink is not enabled"), "{}", text(&o));
    // A store that cannot be reached: nothing is staged, nothing moved.
    let o = storeflow_env(&["sinks", "rebuild", "search", "--data-dir", "data"], dir.path(), &[("STOREFLOW__SINKS__SEARCH__ELASTICSEARCH__URL", "http://127.0.0.1:9")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("rebuilding the search sink") && text(&o).contains("storeflow-products-rebuild-"), "{}", text(&o));
    assert_eq!(stores(dir.path()), before);
    let entries: Vec<String> = std::fs::read_dir(dir.path().join("data/sinks")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!entries.iter().any(|e| e.starts_with("rebuild-") || e.starts_with("replaced-")), "{entries:?}");
}

#[test]
fn a_processor_group_is_not_reset_because_its_state_would_replay_twice() {
    let dir = tempfile::tempdir().unwrap();
    let o = storeflow(&["demo", "--events", "500", "--quiet", "--data-dir", "data"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let before = describe("storeflow.inventory", dir.path());
    let o = storeflow(&["groups", "reset", "storeflow.inventory", "--to-earliest", "--execute", "--data-dir", "data"], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("storeflow.inventory.changelog"), "{}", text(&o));
    assert_eq!(describe("storeflow.inventory", dir.path()), before);
    let o = storeflow(&["groups", "reset", "storeflow.nothing", "--to-latest", "--data-dir", "data"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("no processor or sink group named storeflow.nothing"), "{}", text(&o));
}

#[test]
fn every_operators_command_teaches_with_an_example() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in [&["topics", "tail"][..], &["topics", "produce"], &["groups", "list"], &["groups", "describe"], &["groups", "reset"], &["sinks", "rebuild"]] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let o = storeflow(&args, dir.path());
        let out = text(&o);
        assert!(o.status.success(), "{out}");
        assert!(out.contains("Example") && out.contains(&format!("storeflow {} {}", cmd[0], cmd[1])), "{cmd:?} --help has no example:\n{out}");
    }
    let o = storeflow(&["--help"], dir.path());
    assert!(text(&o).contains("--log-format"), "{}", text(&o));
}

#[test]
fn storeflow_process_serves_metrics_and_readyz_on_ops_listen_and_the_metrics_count_what_it_processed() {
    let dir = tempfile::tempdir().unwrap();
    let o = storeflow_with(&["topics", "produce", "storefront.inventory", "--data-dir", "data"], dir.path(), &jsonl(&stock_received(dir.path())));
    assert!(o.status.success(), "{}", text(&o));
    let port = common::free_port();
    let log = std::fs::File::create(dir.path().join("process.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_storeflow"))
        .args(["process", "--data-dir", "data", "--ops-listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut run = common::Run { child, port };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(run.child.try_wait().unwrap().is_none(), "storeflow process exited: {}", std::fs::read_to_string(dir.path().join("process.log")).unwrap_or_default());
        let ready = common::http(port, "GET", "/readyz", None, None).ok();
        let handled = common::metric(port, "storeflow_processor_records_in_total").unwrap_or(0.0);
        if ready.as_ref().is_some_and(|(code, body)| *code == 200 && body.contains("\"ok\"")) && handled >= 2.0 {
            break;
        }
        assert!(Instant::now() < deadline, "not ready with both records handled in 120 s: /readyz {ready:?}, records_in {handled}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(common::http(port, "GET", "/healthz", None, None).unwrap().0, 200);
    // Only the operations endpoints: the API is not served by `storeflow process`.
    assert_eq!(common::http(port, "GET", "/v1/inventory/sku-a", None, None).unwrap().0, 404);
    let _ = run.child.kill();
}

#[test]
fn storeflow_process_refuses_an_ops_listen_that_is_not_an_address_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = common::storeflow(dir.path())
        .args(["process", "--data-dir", "data", "--ops-listen", "metrics.example:ninety"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "storeflow process did not refuse a bad ops_listen within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    assert!(err.contains("ops_listen") && err.contains("metrics.example:ninety"), "{err}");
}
