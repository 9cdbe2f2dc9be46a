//! An HTTP client for the end-to-end tests on a bound port, and their shared data.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
}

impl Client {
    pub async fn send(&self, method: reqwest::Method, path: &str, key: &str, body: Option<Value>, idem: Option<&str>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(key);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        if let Some(k) = idem {
            req = req.header("idempotency-key", k);
        }
        let resp = req.send().await.expect("the API answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn get(&self, path: &str, key: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, key, None, None).await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, key, Some(body), None).await
    }

    pub async fn new_key(&self, admin: &str, role: &str) -> String {
        let (st, v) = self.post("/v1/admin/keys", admin, json!({"role": role})).await;
        assert_eq!(st, 201, "{v}");
        v["key"].as_str().unwrap().to_string()
    }

    /// GETs `path` until `ok` holds (processors work asynchronously), for up to 60 s.
    pub async fn eventually(&self, path: &str, key: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        self.eventually_within(Duration::from_secs(60), path, key, what, ok).await
    }

    /// [`Client::eventually`] with another patience.
    pub async fn eventually_within(&self, patience: Duration, path: &str, key: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let (status, v) = self.get(path, key).await;
            if status == 200 && ok(&v) {
                return v;
            }
            assert!(start.elapsed() < patience, "{what}: still {status} {v} after {patience:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The GMV over every bucket of a `GET /v1/vendors/{id}/sales` answer.
pub fn sales_gmv(report: &Value) -> i64 {
    report["buckets"].as_array().map_or(0, |b| b.iter().map(|b| b["gmv_minor"].as_i64().unwrap_or(0)).sum())
}

pub fn address() -> Value {
    json!({"name": "Ada", "line1": "Street 1", "city": "Berlin", "postal_code": "10115", "country": "DE"})
}

pub fn uuid(n: u128) -> String {
    uuid::Uuid::from_u128(0x0b4f6a4e_58a4_4b7b_9a53_000000000000 + n).to_string()
}

pub fn now() -> i64 {
    storeflow_avro::Timestamp::now().millis()
}
