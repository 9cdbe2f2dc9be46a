//! The vendors' live page and the analysts' dashboard page in a real browser: Debian's headless Chromium, driven over
//! WebDriver (chromedriver, spoken to in plain HTTP/JSON here) against the API, every
//! registered processor and the sinks' embedded twins in one process, as `storeflow run`
//! wires them. The page shows today's GMV, an order placed through the API changes it
//! within 2 s without a reload, another vendor's key sees nothing, the page raises no error
//! (script, console or Content-Security-Policy), and fits a phone's width. A screenshot is
//! saved under the test's target directory.
//!
//! Needs `chromedriver` and `chromium` on PATH (`scripts/services up` installs Debian's
//! `chromium` and `chromium-driver`). Without them the test says so and passes, except under
//! `CI=true`, where it fails.

#[path = "common/client.rs"]
mod client;
#[path = "common/stack.rs"]
mod stack;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use client::{Client, address, now, sales_gmv, uuid};
use serde_json::{Value, json};
use storeflow_api::{ApiConfig, ApiMetrics, ApiState, KeyStore, Live, Reads};
use storeflow_avro::Codec;
use storeflow_ingest::publish::contract_topics;
use storeflow_ingest::{EmbeddedLog, Log};

/// A chromedriver process and one headless Chromium session on it.
struct Browser {
    driver: Child,
    http: reqwest::Client,
    session: String,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

impl Browser {
    /// Starts chromedriver and a phone-sized headless session; `None` (with a note) when
    /// the browser is not installed and this is not CI.
    async fn start() -> Option<Browser> {
        if !on_path("chromedriver") || !on_path("chromium") {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "chromedriver or chromium is missing (scripts/services up installs them)");
            eprintln!("skipped: chromedriver or chromium is not installed (scripts/services up installs them)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new("chromedriver").arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("chromedriver starts");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "chromedriver did not answer in 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {"binary": which("chromium"), "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=412,915", format!("--user-data-dir={}", profile.path().display())
            ]}
        }}});
        let r: Value = http.post(format!("{base}/session")).json(&caps).send().await.unwrap().json().await.unwrap();
        let session = r["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {r}")).to_string();
        Some(Browser { driver, http, session: format!("{base}/session/{session}"), _profile: profile })
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.session));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        assert!(v["value"].get("error").is_none(), "WebDriver {path}: {v}");
        v["value"].clone()
    }

    /// Opens `url` as a new page (through about:blank: a change of the fragment alone would
    /// not load the page again).
    async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({"url": "about:blank"}))).await;
        self.command(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    /// Runs `script` (a function body) in the page; returns what it returns.
    async fn eval(&self, script: &str) -> Value {
        self.command(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": []}))).await
    }

    /// Waits up to `patience` for `script` to return something truthy; returns it.
    async fn until(&self, patience: Duration, what: &str, script: &str) -> Value {
        let started = Instant::now();
        loop {
            let v = self.eval(script).await;
            if !(v.is_null() || v == json!(false) || v == json!("")) {
                return v;
            }
            assert!(started.elapsed() < patience, "{what}: not within {patience:?} (page status: {})", self.eval("return document.getElementById('status').textContent").await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn screenshot(&self, name: &str) -> std::path::PathBuf {
        let png = self.command(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// The browser console's warnings and errors so far (chromedriver's log endpoint).
    async fn console_problems(&self) -> Vec<String> {
        let r: Value = self.http.post(format!("{}/se/log", self.session)).json(&json!({"type": "browser"})).send().await.unwrap().json().await.unwrap();
        r["value"]
            .as_array()
            .map(|entries| entries.iter().filter(|e| matches!(e["level"].as_str(), Some("SEVERE" | "WARNING"))).map(|e| e["message"].to_string()).collect())
            .unwrap_or_default()
    }
}

fn which(name: &str) -> String {
    let path = std::env::var_os("PATH").unwrap();
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file()).unwrap().display().to_string()
}

const GMV: &str = "return document.getElementById('gmv').dataset.minor";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vendor_page_updates_todays_gmv_live_for_a_new_order_another_vendor_sees_nothing_and_analytics_shows_every_panel() {
    let Some(browser) = Browser::start().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir.path().join("log")).unwrap());
    log.create_topics(&contract_topics(Some(2))).unwrap();
    let codec = Arc::new(Codec::embedded().unwrap());
    let mut registry = prometheus_client::registry::Registry::default();
    let _runtimes = stack::processors(&log, &codec, "page", &mut registry);
    let sinks = storeflow_sinks::Sinks::start(log.clone(), codec.clone(), storeflow_sinks::SinksConfig::embedded(dir.path().join("sinks")), &mut registry).unwrap();
    let live = Live::start(log.clone(), codec.clone()).unwrap();
    let (keys, admin) = KeyStore::open(dir.path()).unwrap();
    let admin = admin.unwrap();
    let metrics = ApiMetrics::register(&mut registry);
    let state = ApiState::new(ApiConfig::default(), log.clone(), codec.clone(), keys, Arc::new(storeflow_avro::pii::Vault::in_memory()), Reads::from_sinks(&sinks, live.clone()), Arc::new(registry), metrics).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(storeflow_api::serve(listener, state, std::future::pending()));
    let c = Client { http: reqwest::Client::new(), base: base.clone() };
    let app = c.new_key(&admin, "app").await;
    let service = c.new_key(&admin, "service").await;
    let vendor = c.new_key(&admin, "vendor:V-A").await;
    let other = c.new_key(&admin, "vendor:V-B").await;

    // The page's headers: a strict policy, no sniffing, no framing.
    let r = c.http.get(format!("{base}/vendors/V-A")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(c.http.get(format!("{base}/vendors/%3Cscript%3E")).send().await.unwrap().status(), 400);

    let (st, v) = c
        .post("/v1/events", &service, json!({"events": [
            {"type": "VendorOnboarded", "event_id": uuid(1), "occurred_at": now(), "vendor_id": "V-A", "name": "Acme", "country": "DE", "plan": "pro", "payout_currency": "EUR"},
            {"type": "ProductCreated", "event_id": uuid(2), "occurred_at": now(), "product_id": "P1", "vendor_id": "V-A", "sku": "S1", "title": "Headphones", "description": "Closed-back",
             "category": "electronics/audio", "brand": "Acme", "price_minor": 4999, "currency": "EUR"},
            {"type": "ProductCreated", "event_id": uuid(6), "occurred_at": now(), "product_id": "P2", "vendor_id": "V-A", "sku": "S2", "title": "Earbuds", "description": "In-ear",
             "category": "electronics/audio", "brand": "Acme", "price_minor": 2999, "currency": "EUR"},
            {"type": "StockReceived", "event_id": uuid(3), "occurred_at": now(), "sku": "S1", "warehouse_id": "wh-de-berlin", "quantity": 10},
            {"type": "StockReceived", "event_id": uuid(5), "occurred_at": now(), "sku": "S2", "warehouse_id": "wh-de-berlin", "quantity": 3}
        ]}))
        .await;
    assert_eq!(st, 202, "{v}");
    c.eventually("/v1/inventory/S1", &app, "stock received", |v| v["available"] == 10).await;

    // The vendor opens its page (the key in the fragment, which no server sees).
    browser.goto(&format!("{base}/vendors/V-A#key={vendor}")).await;
    browser.until(Duration::from_secs(20), "the page goes live", "const s = document.getElementById('status').textContent; return s.startsWith('Live') && s").await;
    assert_eq!(browser.eval(GMV).await, "0", "no sales yet today");
    assert_eq!(browser.eval("return location.hash").await, "", "the key is taken out of the address");
    browser.eval("window.__marker = 'no reload'; return 1").await;

    // An order through the API, authorized by the provider's webhook.
    let order = json!({"customer_id": "C1", "items": [{"sku": "S1", "quantity": 2}], "currency": "EUR",
        "shipping_address": address(), "payment_method_token": "pm_card_visa", "client_ip": "198.51.100.7"});
    let (st, placed) = c.send(reqwest::Method::POST, "/v1/orders", &app, Some(order), Some("page-1")).await;
    assert_eq!(st, 202, "{placed}");
    let id = placed["order_id"].as_str().unwrap().to_string();
    c.eventually(&format!("/v1/orders/{id}"), &app, "reserved", |v| v["status"] == "reserved").await;
    let (st, v) = c
        .post("/v1/events", &service, json!({"type": "PaymentAuthorized", "event_id": uuid(4), "occurred_at": now(), "order_id": id,
            "payment_id": "pay_1", "amount_minor": 9998, "currency": "EUR", "provider": "stripe"}))
        .await;
    assert_eq!(st, 202, "{v}");
    c.eventually_within(Duration::from_secs(60), "/v1/vendors/V-A/sales?granularity=hour", &vendor, "sale reported", |v| sales_gmv(v) == 9998).await;
    // From the moment the API reports the sale, the open page has 2 s to show it.
    browser.until(Duration::from_secs(2), "the page shows the new GMV", &format!("{GMV} === '9998'")).await;
    assert_eq!(browser.eval("return window.__marker").await, "no reload", "the page was reloaded");
    let seen = browser.eval("return ['login', 'board'].map(id => document.getElementById(id).checkVisibility())").await;
    assert_eq!(seen, json!([false, true]), "the key form hides and the board shows once signed in");
    assert_eq!(browser.eval("return document.getElementById('orders').textContent").await, "1");
    let shown = browser.eval("return document.getElementById('gmv').textContent").await;
    assert!(shown.as_str().unwrap().contains("99.98"), "{shown}");
    // The order shows among the recent ones, with its status, and S2 (3 left) is running out.
    let recent = browser
        .until(Duration::from_secs(5), "the order shows in the recent orders", &format!("const t = document.getElementById('recent').textContent; return t.includes('{id}') && t"))
        .await;
    assert!(recent.as_str().unwrap().contains("€99.98"), "{recent}");
    let cells = browser.eval("return [...document.querySelectorAll('#low-stock td')].map(td => td.textContent)").await;
    assert_eq!(cells, json!(["Earbuds", "S2", "wh-de-berlin", "3", "0"]), "the skus running out");
    // Readable on a phone: nothing wider than the 412 px window.
    let fits = browser.eval("return document.documentElement.scrollWidth <= window.innerWidth").await;
    assert_eq!(fits, true, "the page scrolls sideways on a phone");
    let shot = browser.screenshot("vendor-page.png").await;
    eprintln!("screenshot: {}", shot.display());
    assert_eq!(browser.eval("return window.__errors").await, json!([]), "errors on the page");
    assert_eq!(browser.console_problems().await, Vec::<String>::new(), "console warnings or errors");

    // Another vendor's key on V-A's page: refused by the API, nothing of V-A shown.
    browser.eval("sessionStorage.clear(); return 1").await;
    browser.goto(&format!("{base}/vendors/V-A#key={other}")).await;
    browser.until(Duration::from_secs(10), "the other vendor's key is refused", "const s = document.getElementById('status').textContent; return s.includes('cannot read') && s").await;
    let seen = browser.eval("return ['login', 'board'].map(id => document.getElementById(id).checkVisibility())").await;
    assert_eq!(seen, json!([true, false]), "the board of V-A shows to V-B's key");
    assert_eq!(browser.eval(GMV).await, "0", "V-A's GMV reached V-B's browser");
    let text = browser.eval("return document.body.innerText").await;
    assert!(!text.as_str().unwrap().contains("99.98"), "{text}");
    browser.screenshot("vendor-page-refused.png").await;
    // Its 403s are in the console, as they should be; what follows starts clean.
    browser.console_problems().await;

    // The analysts' page: every panel, from the same analytics the dashboard API reads.
    let analyst = c.new_key(&admin, "analyst").await;
    c.eventually("/v1/analytics/dashboard?range=24h", &analyst, "dashboard", |v| v["orders"] == 1).await;
    c.eventually("/v1/analytics/inventory?range=24h", &analyst, "low stock", |v| v["low_stock"].as_array().is_some_and(|l| l.iter().any(|l| l["sku"] == "S2"))).await;
    let fraud = c.eventually("/v1/analytics/fraud?range=24h", &analyst, "the order scored", |v| v["decisions"].as_array().is_some_and(|d| !d.is_empty())).await;
    let decision = fraud["decisions"][0]["decision"].as_str().unwrap().to_string();
    let held = fraud["held"][0]["order_id"].as_str().map_or("No order held".to_string(), str::to_string);
    let signal = fraud["signals"][0]["reason"].as_str().map_or("No fraud signal fired".to_string(), str::to_string);
    browser.eval("sessionStorage.clear(); return 1").await;
    browser.goto(&format!("{base}/analytics#key={vendor}")).await;
    browser.until(Duration::from_secs(10), "a vendor's key is refused the dashboard", "const s = document.getElementById('status').textContent; return s.includes('cannot read') && s").await;
    browser.console_problems().await;
    browser.goto(&format!("{base}/analytics#key={analyst}")).await;
    browser.until(Duration::from_secs(20), "the dashboard loads", "const s = document.getElementById('status').textContent; return s.startsWith('Updated') && s").await;
    let panels = browser
        .eval("return Object.fromEntries([...document.querySelectorAll('[data-panel]')].map(p => [p.dataset.panel, ((p.querySelector('.big, tbody[id]') || {}).textContent || '') + (p.querySelector('canvas') ? '[chart]' : '')]))")
        .await;
    eprintln!("analytics panels: {panels}");
    let expected = [
        ("total-sales", "99.98"),
        ("orders", "1"),
        ("aov", "99.98"),
        ("units", "2"),
        ("conversion", "%"),
        ("new-customers", "0"),
        ("return-rate", "%"),
        ("funnel", "[chart]"),
        ("top-categories", "electronics/audio"),
        ("top-products", "Headphones"),
        ("money", "in this range"),
        ("sales-series", "99.98"),
        ("sales-series", "[chart]"),
        ("vendors", "Acme"),
        ("top-customers", "C1"),
        ("cohorts", "99.98"),
        ("low-stock", "S2"),
        ("warehouses", "wh-de-berlin"),
        ("reservations", ":00"),
        ("fraud-decisions", &decision),
        ("held-orders", &held),
        ("fraud-signals", &signal),
    ];
    for (panel, want) in expected {
        let shown = panels[panel].as_str().unwrap_or_else(|| panic!("no panel {panel}: {panels}"));
        assert!(shown.contains(want), "panel {panel} shows {shown:?}, not {want:?}");
    }
    let cells = |id: &str| format!("return [...document.querySelectorAll('#{id} td')].map(td => td.textContent)");
    let reservations = browser.eval(&cells("reservations")).await;
    assert_eq!((&reservations[1], &reservations[2]), (&json!("1"), &json!("0")), "one order reserved, none refused: {reservations}");
    assert_eq!(browser.eval(&cells("warehouses")).await, json!(["wh-de-berlin", "13", "2", "11", "0"]));
    assert_eq!(browser.eval(&cells("low-stock")).await, json!(["S2", "wh-de-berlin", "3", "0", "3"]));
    // Every panel of the page is one asserted above.
    let on_page: std::collections::BTreeSet<&str> = panels.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(on_page, expected.iter().map(|(p, _)| *p).collect(), "the page's panels and the asserted ones differ");
    assert_eq!(browser.eval(GMV).await, "9998");
    let fits = browser.eval("return document.documentElement.scrollWidth <= window.innerWidth").await;
    assert_eq!(fits, true, "the analytics page scrolls sideways on a phone");
    eprintln!("screenshot: {}", browser.screenshot("analytics-page.png").await.display());
    assert_eq!(browser.eval("return window.__errors").await, json!([]), "errors on the analytics page");
    assert_eq!(browser.console_problems().await, Vec::<String>::new(), "console warnings or errors on the analytics page");
    live.stop();
}
