//! Hostile input: each request is refused with a 4xx naming the parameter or field,
//! nothing is published, and the API still answers afterwards. (Issue 13's list: deep
//! pages, huge query strings, huge strings inside a valid body, far-future and far-past
//! times, i64 extremes, unknown parameters.)

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::{Method, StatusCode};
use common::*;
use futures::FutureExt;
use serde_json::{Value, json};
use storeflow_api::ApiConfig;
use storeflow_api::read::{ReadFuture, SearchIndex, SearchQuery, SearchResults};
use storeflow_avro::Timestamp;

fn error_of(v: &Value) -> (&str, Option<&str>) {
    (v["error"]["code"].as_str().unwrap_or("?"), v["error"]["field"].as_str())
}

/// A search backend that counts the searches that reach it.
struct Counting(AtomicUsize);

impl SearchIndex for Counting {
    fn search<'a>(&'a self, _: &'a SearchQuery) -> ReadFuture<'a, SearchResults> {
        self.0.fetch_add(1, Ordering::SeqCst);
        async { Ok(SearchResults::default()) }.boxed()
    }
}

fn with_search() -> (Harness, Arc<Counting>) {
    let backend = Arc::new(Counting(AtomicUsize::new(0)));
    let b = backend.clone();
    let h = harness_with(ApiConfig::default(), move |mut r| {
        r.search = Some(b);
        r
    });
    (h, backend)
}

async fn still_answers(h: &Harness) {
    let (st, _, _) = h.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(st, StatusCode::OK, "the API no longer answers /healthz");
}

#[tokio::test]
async fn a_page_past_the_result_window_is_refused_naming_page_before_any_backend_sees_it() {
    let (h, backend) = with_search();
    for uri in [
        "/v1/search?q=shoe&page=4294967295&size=100",
        "/v1/search?q=shoe&page=100&size=100",
        "/v1/search?page=500",
    ] {
        let (st, _, v) = h.call(Method::GET, uri, Some(&h.app_key), None).await;
        assert_eq!((st, error_of(&v).1), (StatusCode::BAD_REQUEST, Some("page")), "{uri}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("10000"), "{v}");
    }
    assert_eq!(backend.0.load(Ordering::SeqCst), 0, "a refused search reached the backend");
    // The deepest page inside the window is served.
    let (st, _, v) = h.call(Method::GET, "/v1/search?q=shoe&page=99&size=100", Some(&h.app_key), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    still_answers(&h).await;
}

#[tokio::test]
async fn a_search_text_too_long_or_with_too_many_words_is_refused_naming_q() {
    let (h, backend) = with_search();
    let long = "a".repeat(257);
    let many = (0..17).map(|i| format!("w{i}")).collect::<Vec<_>>().join("%20");
    let huge = "x".repeat(60_000);
    for uri in [format!("/v1/search?q={long}"), format!("/v1/search?q={many}"), format!("/v1/search?q={huge}")] {
        let (st, _, v) = h.call(Method::GET, &uri, Some(&h.app_key), None).await;
        assert_eq!((st, error_of(&v).1), (StatusCode::BAD_REQUEST, Some("q")), "{v}");
    }
    let brands = (0..21).map(|i| format!("b{i}")).collect::<Vec<_>>().join(",");
    for (uri, field) in [
        (format!("/v1/search?brand={brands}"), "brand"),
        (format!("/v1/search?category={}", "c".repeat(201)), "category"),
        (format!("/v1/search?vendor={}", "v".repeat(201)), "vendor"),
    ] {
        let (st, _, v) = h.call(Method::GET, &uri, Some(&h.app_key), None).await;
        assert_eq!((st, error_of(&v).1), (StatusCode::BAD_REQUEST, Some(field)), "{uri}: {v}");
    }
    assert_eq!(backend.0.load(Ordering::SeqCst), 0);
    still_answers(&h).await;
}

#[tokio::test]
async fn an_unknown_query_parameter_is_refused_naming_it_on_every_route() {
    let (h, backend) = with_search();
    h.seed_order("O1", "placed");
    for (uri, field) in [
        ("/v1/search?q=shoe&sizee=5", "sizee"),
        ("/v1/recommendations?type=trending&limt=3", "limt"),
        ("/v1/orders/O1?expand=all", "expand"),
        ("/healthz?verbose=1", "verbose"),
    ] {
        let (st, _, v) = h.call(Method::GET, uri, Some(&h.admin), None).await;
        assert_eq!((st, error_of(&v)), (StatusCode::BAD_REQUEST, ("unknown_parameter", Some(field))), "{uri}: {v}");
    }
    assert_eq!(backend.0.load(Ordering::SeqCst), 0);
    // Declared parameters still work.
    let (st, _, v) = h.call(Method::GET, "/v1/search?q=shoe&size=5", Some(&h.app_key), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn a_long_string_or_array_inside_a_valid_event_is_refused_naming_the_field_and_nothing_is_published() {
    let h = harness();
    let before = h.published();
    let page = |p: Value| json!({"type": "PageViewed", "session_id": "s1", "page": p});
    let cases = [
        (page(json!("/".repeat(1_001))), "page"),
        (json!({"events": [page(json!("/ok")), page(json!("é".repeat(1_001)))]}), "events[1].page"),
        (json!({"type": "PageViewed", "session_id": "s".repeat(5_000), "page": "/"}), "session_id"),
    ];
    for (body, field) in cases {
        let (st, _, v) = h.call(Method::POST, "/v1/events", Some(&h.app_key), Some(body)).await;
        assert_eq!((st, error_of(&v).1), (StatusCode::BAD_REQUEST, Some(field)), "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("at most 1000 characters"), "{v}");
    }
    // 10 MB inside an otherwise valid body: refused by size before it is parsed.
    let (st, _, v) = h.call(Method::POST, "/v1/events", Some(&h.app_key), Some(page(json!("x".repeat(10 << 20))))).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    // An order of 101 lines.
    let line = json!({"sku": "S1", "product_id": "P1", "vendor_id": "V-A", "quantity": 1, "unit_price_minor": 100});
    let order = json!({"type": "OrderPlaced", "order_id": "O-big", "customer_id": "C1", "items": vec![line; 101],
        "currency": "EUR", "shipping_address": address(), "billing_address": address(), "payment_method_token": "pm_card_visa"});
    let (st, _, v) = h.call(Method::POST, "/v1/events", Some(&h.admin), Some(order)).await;
    assert_eq!((st, error_of(&v).1), (StatusCode::BAD_REQUEST, Some("items")), "{v}");
    assert_eq!(h.published(), before, "a refused event was published");
    still_answers(&h).await;
}

#[tokio::test]
async fn an_occurred_at_far_from_the_server_clock_is_refused_naming_it_and_nothing_is_published() {
    let h = harness();
    let before = h.published();
    let now = Timestamp::now().millis();
    let at = |t: Value| json!({"type": "PageViewed", "session_id": "s1", "page": "/", "occurred_at": t});
    let cases = [
        (at(json!("2100-01-01T00:00:00Z")), "occurred_at", "ahead"),
        (at(json!(now + 6 * 60_000)), "occurred_at", "ahead"),
        (at(json!(i64::MAX)), "occurred_at", "ahead"),
        (at(json!("2000-01-01T00:00:00Z")), "occurred_at", "before"),
        (at(json!(now - 8 * 86_400_000)), "occurred_at", "before"),
        (at(json!(i64::MIN)), "occurred_at", "before"),
        (json!({"events": [at(json!(now)), at(json!("2100-01-01T00:00:00Z"))]}), "events[1].occurred_at", "ahead"),
    ];
    for (body, field, word) in cases {
        let (st, _, v) = h.call(Method::POST, "/v1/events", Some(&h.app_key), Some(body.clone())).await;
        assert_eq!((st, error_of(&v)), (StatusCode::BAD_REQUEST, ("occurred_at_out_of_range", Some(field))), "{body}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(word), "{v}");
    }
    // Past i64: not a timestamp at all, still a 400 naming the field.
    let (st, _, v) = h.raw(Method::POST, "/v1/events", Some(&h.app_key), Some(br#"{"type":"PageViewed","session_id":"s","page":"/","occurred_at":92233720368547758070}"#.to_vec()), &[]).await;
    assert_eq!((st, error_of(&v).1), (StatusCode::BAD_REQUEST, Some("occurred_at")), "{v}");
    assert_eq!(h.published(), before, "a refused event was published");
    // Within the bounds: accepted (a device a few minutes off, an app that was offline a day).
    for t in [now + 4 * 60_000, now - 86_400_000] {
        let (st, _, v) = h.call(Method::POST, "/v1/events", Some(&h.app_key), Some(at(json!(t)))).await;
        assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    }
    still_answers(&h).await;
}

#[tokio::test]
async fn readiness_is_503_naming_a_stopped_thread_to_an_admin_only() {
    let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let a = alive.clone();
    let h = harness_with(ApiConfig::default(), move |mut r| {
        let probe: Arc<dyn Fn() -> bool + Send + Sync> = Arc::new(move || a.load(Ordering::SeqCst));
        r.readiness.push(("threads", Arc::new(storeflow_api::read::ThreadsReady(vec![("orders".into(), probe)]))));
        r
    });
    let (st, _, _) = h.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(st, StatusCode::OK);
    alive.store(false, Ordering::SeqCst);
    let (st, _, v) = h.call(Method::GET, "/readyz", None, None).await;
    assert_eq!((st, &v["problems"]), (StatusCode::SERVICE_UNAVAILABLE, &Value::Null), "{v}");
    let (st, _, v) = h.call(Method::GET, "/readyz", Some(&h.admin), None).await;
    assert_eq!((st, v["problems"].clone()), (StatusCode::SERVICE_UNAVAILABLE, json!(["threads: stopped: orders"])));
    let (st, _, _) = h.call(Method::GET, "/readyz", Some(&h.app_key), None).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn unknown_keys_from_one_address_are_answered_429_after_a_few_tries() {
    let h = harness();
    let mut statuses = Vec::new();
    for i in 0..40 {
        let (st, _, _) = h.call(Method::GET, "/v1/orders/O1", Some(&format!("sf_guess_{i}")), None).await;
        statuses.push(st);
    }
    assert_eq!(statuses[0], StatusCode::UNAUTHORIZED);
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    // A real key still works.
    let (st, _, _) = h.call(Method::GET, "/v1/search?q=x", Some(&h.app_key), None).await;
    assert_ne!(st, StatusCode::TOO_MANY_REQUESTS);
}

async fn open_stream(h: &Harness, key: &str) -> axum::response::Response {
    use tower::ServiceExt;
    let req = axum::http::Request::get("/v1/vendors/V-A/sales/stream")
        .header("authorization", format!("Bearer {key}"))
        .body(axum::body::Body::empty())
        .unwrap();
    h.app.clone().oneshot(req).await.unwrap()
}

#[tokio::test]
async fn a_key_holds_at_most_its_stream_cap_and_a_closed_stream_gives_its_slot_back() {
    let h = harness();
    let mut open = Vec::new();
    for _ in 0..ApiConfig::default().max_streams_per_key {
        let r = open_stream(&h, &h.vendor_a).await;
        assert_eq!(r.status(), StatusCode::OK);
        open.push(r);
    }
    assert_eq!(open_stream(&h, &h.vendor_a).await.status(), StatusCode::TOO_MANY_REQUESTS, "one stream past the cap");
    assert_eq!(open_stream(&h, &h.admin).await.status(), StatusCode::OK, "another key is not held back");
    drop(open.pop());
    assert_eq!(open_stream(&h, &h.vendor_a).await.status(), StatusCode::OK, "the closed stream's slot is free again");
}

#[tokio::test]
async fn an_open_stream_ends_when_its_key_is_revoked() {
    use http_body_util::BodyExt;
    let h = harness();
    let r = open_stream(&h, &h.vendor_a).await;
    assert_eq!(r.status(), StatusCode::OK);
    let mut body = r.into_body();
    let (id, _) = h.state.keys().lookup(&h.vendor_a).unwrap();
    h.state.keys().revoke(&id).unwrap();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            match body.frame().await {
                None => return true,
                Some(Ok(_)) => continue, // keep-alives
                Some(Err(_)) => return true,
            }
        }
    })
    .await;
    assert_eq!(ended, Ok(true), "the stream of a revoked key stayed open");
}

#[tokio::test]
async fn a_client_slow_to_send_its_headers_is_disconnected_and_a_stop_does_not_wait_on_open_streams() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = harness_with(ApiConfig { header_read_timeout_ms: 300, ..ApiConfig::default() }, |r| r);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(storeflow_api::serve(listener, h.state.clone(), async move {
        let _ = stop_rx.await;
    }));
    // Slowloris: half a request line, then nothing.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "the server still holds a connection that never sent its headers");
    // An open SSE stream, then a stop: the server ends within seconds.
    let mut sse = tokio::net::TcpStream::connect(addr).await.unwrap();
    sse.write_all(format!("GET /v1/vendors/V-A/sales/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n", h.vendor_a).as_bytes()).await.unwrap();
    let mut head = [0u8; 64];
    let n = sse.read(&mut head).await.unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head[..n]));
    stop_tx.send(()).unwrap();
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "serve did not stop with a stream open: {stopped:?}");
}
