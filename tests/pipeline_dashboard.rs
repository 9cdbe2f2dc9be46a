//! The pipeline-health dashboard (`dashboards/pipeline.json`, Prometheus) against a real
//! `storeflow run`: each panel holds its file's PromQL (`sql/grafana/pipeline/<panel>.promql`)
//! as it is; every expression parses (promql-parser, GreptimeDB's Rust PromQL parser, through
//! its Python binding in the tests' venv); and every series it selects is on the running
//! process's `/metrics` — the metric, each label it matches on, and each label an
//! aggregation groups by. Prometheus itself cannot run here; this checks what the panels ask
//! against what storeflow exports, which is where a renamed metric or label would break them.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Run, metric, storeflow};

/// `(title, PromQL)` of every panel, checked against its file.
fn panels(root: &Path) -> Vec<(String, String)> {
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(root.join("dashboards/pipeline.json")).unwrap()).unwrap();
    assert_eq!(json["templating"]["list"][0]["query"], "prometheus", "the dashboard's data source is Prometheus");
    let mut out = Vec::new();
    for p in json["panels"].as_array().unwrap() {
        let title = p["title"].as_str().unwrap().to_string();
        let slug = title.to_lowercase().split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).collect::<Vec<_>>().join("_");
        let file = root.join(format!("sql/grafana/pipeline/{slug}.promql"));
        let promql = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("panel {title:?}: {}: {e}", file.display()));
        let targets = p["targets"].as_array().unwrap();
        assert_eq!(targets.len(), 1, "panel {title:?}: one query");
        assert_eq!(targets[0]["expr"].as_str(), Some(promql.trim_end()), "panel {title:?}: dashboards/pipeline.json must hold {} as it is", file.display());
        out.push((title, promql.trim_end().to_string()));
    }
    for f in std::fs::read_dir(root.join("sql/grafana/pipeline")).unwrap() {
        let stem = f.unwrap().path().file_stem().unwrap().to_string_lossy().into_owned();
        let belongs = out.iter().any(|(t, _)| t.to_lowercase().split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).collect::<Vec<_>>().join("_") == stem);
        assert!(belongs, "sql/grafana/pipeline/{stem}.promql belongs to no panel");
    }
    out
}

/// Every series family on `/metrics`: its name and the labels its samples carry.
fn exposition(port: u16) -> BTreeMap<String, BTreeSet<String>> {
    let (status, body) = common::http(port, "GET", "/metrics", None, None).unwrap();
    assert_eq!(status, 200);
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in body.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (name, labels) = match line.split_once('{') {
            Some((n, rest)) => (n, rest.split_once('}').map_or("", |(l, _)| l)),
            None => (line.split(' ').next().unwrap(), ""),
        };
        let set = out.entry(name.to_string()).or_default();
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            set.insert(pair.split('=').next().unwrap().to_string());
        }
    }
    out
}

#[test]
fn every_pipeline_panel_parses_and_selects_series_and_labels_that_storeflow_exports() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let panels = panels(root);
    assert!(panels.len() >= 10, "{panels:?}");
    let Some(python) = common::venv_python("parse the pipeline dashboard's PromQL") else { return };
    let mut child = Command::new(&python)
        .arg(root.join("tests/clients/promql_selectors.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exprs: Vec<&str> = panels.iter().map(|(_, e)| e.as_str()).collect();
    child.stdin.take().unwrap().write_all(serde_json::to_string(&exprs).unwrap().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let parsed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();

    // A real process with every part running: processors, sinks (their series exist from the
    // start, at 0), the API (this test's own requests are counted).
    let dir = tempfile::tempdir().unwrap();
    let o = storeflow(dir.path()).args(["demo", "--events", "500", "--quiet"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = Run::start(dir.path());
    let started = Instant::now();
    while metric(run.port, "storeflow_sink_records_written_total").is_none() {
        assert!(started.elapsed() < Duration::from_secs(120), "storeflow run did not come up");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Some series appear only once their part has measured something (a sink's lag after
    // its first poll): wait, up to the same limit, until every selected family is there.
    let wanted: Vec<String> =
        parsed.iter().flat_map(|p| p["selectors"].as_array().into_iter().flatten().filter_map(|s| s["name"].as_str().map(str::to_string))).collect();
    let exported = loop {
        let exported = exposition(run.port);
        if wanted.iter().all(|n| exported.contains_key(n)) || started.elapsed() > Duration::from_secs(120) {
            break exported;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut checked = 0;
    for ((title, expr), p) in panels.iter().zip(&parsed) {
        assert!(p.get("error").is_none(), "panel {title:?}: {expr} does not parse: {}", p["error"]);
        let selectors = p["selectors"].as_array().unwrap();
        assert!(!selectors.is_empty(), "panel {title:?} selects nothing");
        for s in selectors {
            let name = s["name"].as_str().unwrap_or_else(|| panic!("panel {title:?}: a selector without a metric name"));
            let labels = exported.get(name).unwrap_or_else(|| panic!("panel {title:?}: {name} is not on /metrics (families: {:?})", exported.keys().collect::<Vec<_>>()));
            for l in s["labels"].as_array().unwrap() {
                assert!(labels.contains(l.as_str().unwrap()), "panel {title:?}: {name} has no label {l} (it has {labels:?})");
            }
            checked += 1;
        }
        for g in p["groupings"].as_array().unwrap() {
            let under: BTreeSet<&String> = g["metrics"].as_array().unwrap().iter().flat_map(|m| &exported[m.as_str().unwrap()]).collect();
            for l in g["labels"].as_array().unwrap() {
                assert!(under.iter().any(|u| u.as_str() == l.as_str().unwrap()), "panel {title:?}: grouped by {l}, which no series under it has ({under:?})");
            }
        }
    }
    println!("{} panels, {checked} selectors checked against /metrics", panels.len());
    drop(run);
}
