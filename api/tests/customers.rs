//! Customers through the router: a signed-in shopper's JWT (`[api.customers]`) reaches its
//! own orders, places orders for itself and publishes shoppers' events about itself, and
//! nothing else; a token that does not verify is a 401 naming why, counted as a failed
//! authentication. Keys are made here: an RSA and an EC key pair (aws-lc-rs) and the JWKS
//! file of their public halves.

mod common;

use axum::http::{Method, StatusCode};
use base64::Engine;
use common::*;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use storeflow_api::{ApiConfig, CustomersConfig};

fn error_of(v: &Value) -> (&str, &str) {
    (v["error"]["code"].as_str().unwrap_or("?"), v["error"]["message"].as_str().unwrap_or("?"))
}

async fn healthy(h: &Harness) {
    let (st, _, _) = h.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(st, StatusCode::OK);
}

/// An order `id` of customer `customer` in `status`, on the log and landed by the sinks.
fn seed_order_of(h: &Harness, id: &str, customer: &str, status: &str) {
    let mut events = vec![ev(json!({"type": "OrderPlaced", "order_id": id, "customer_id": customer,
        "items": [{"sku": "S1", "product_id": "P1", "vendor_id": "V-A", "quantity": 2, "unit_price_minor": 1999}],
        "currency": "EUR", "shipping_address": address(), "billing_address": address(),
        "payment_method_token": "pm_secret_token", "client_ip": "203.0.113.9"}))];
    if status != "placed" {
        events.push(ev(json!({"type": "OrderStatusChanged", "order_id": id, "customer_id": customer,
            "previous_status": "placed", "status": status, "payment_status": "captured",
            "fulfillment_status": status, "reason": "test", "total_minor": 3998, "currency": "EUR"})));
    }
    h.feed(events);
}

fn customers_harness() -> Harness {
    harness_with(with_customers(ApiConfig::default()), |r| r)
}

/// The 401 message of `token` on a read of an order, after checking it is a 401.
async fn refusal(h: &Harness, token: &str) -> String {
    let before = h.published();
    let (st, _, v) = h.call(Method::GET, "/v1/orders/o-mine", Some(token), None).await;
    assert_eq!((st, error_of(&v).0), (StatusCode::UNAUTHORIZED, "unauthorized"), "{v}");
    assert_eq!(h.published(), before);
    error_of(&v).1.to_string()
}

#[tokio::test]
async fn a_customer_reads_its_own_order_and_gets_the_same_403_for_another_customers_or_a_missing_one() {
    let h = customers_harness();
    seed_order_of(&h, "o-mine", "C1", "placed");
    seed_order_of(&h, "o-theirs", "C2", "placed");
    h.feed([ev(json!({"type": "FraudScored", "order_id": "o-mine", "customer_id": "C1", "score": 70, "decision": "review",
        "reasons": [{"code": "ip_velocity_10m", "points": 40, "detail": "5 orders from 203.0.113.9 in 10 minutes"}]}))]);
    let me = customer_token("C1");

    let (st, _, v) = h.call(Method::GET, "/v1/orders/o-mine", Some(&me), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["customer_id"], "C1");
    let text = v.to_string();
    for hidden in ["203.0.113.9", "pm_secret_token", "client_ip", "payment_method_token", "reasons"] {
        assert!(!text.contains(hidden), "the customer sees {hidden}: {text}");
    }
    assert_eq!(v["history"][0]["payload"]["shipping_address"]["line1"], "Street 1", "its own addresses it sees: {text}");

    let (st, _, theirs) = h.call(Method::GET, "/v1/orders/o-theirs", Some(&me), None).await;
    assert_eq!((st, error_of(&theirs).0), (StatusCode::FORBIDDEN, "forbidden"), "{theirs}");
    let (st, _, missing) = h.call(Method::GET, "/v1/orders/o-nowhere", Some(&me), None).await;
    assert_eq!((st, error_of(&missing).0), (StatusCode::FORBIDDEN, "forbidden"), "{missing}");
    assert_eq!(
        error_of(&theirs).1.replace("o-theirs", "<id>"),
        error_of(&missing).1.replace("o-nowhere", "<id>"),
        "an existing and a missing order are refused alike"
    );
    assert!(!theirs.to_string().contains("C2"), "the refusal names no other customer: {theirs}");
    // The other customer reads its own.
    let (st, _, _) = h.call(Method::GET, "/v1/orders/o-theirs", Some(&customer_token("C2")), None).await;
    assert_eq!(st, StatusCode::OK);
    healthy(&h).await;
}

#[tokio::test]
async fn a_customer_cancels_and_returns_its_own_orders_only_and_only_as_the_customer() {
    let h = customers_harness();
    h.seed_catalog();
    seed_order_of(&h, "o-mine", "C1", "placed");
    seed_order_of(&h, "o-mine-delivered", "C1", "delivered");
    seed_order_of(&h, "o-theirs", "C2", "placed");
    seed_order_of(&h, "o-theirs-delivered", "C2", "delivered");
    let me = customer_token("C1");
    let ret = json!({"items": [{"sku": "S1", "quantity": 1}], "reason": "too small"});

    for (uri, body) in [
        ("/v1/orders/o-theirs/cancel", json!({"reason": "x"})),
        ("/v1/orders/o-nowhere/cancel", json!({"reason": "x"})),
        ("/v1/orders/o-theirs-delivered/returns", ret.clone()),
        ("/v1/orders/o-nowhere/returns", ret.clone()),
        ("/v1/orders/o-mine/cancel", json!({"reason": "x", "requested_by": "support"})),
    ] {
        let (st, _, v) = h.call(Method::POST, uri, Some(&me), Some(body)).await;
        assert_eq!((st, error_of(&v).0), (StatusCode::FORBIDDEN, "forbidden"), "{uri}: {v}");
        assert_eq!(h.published(), 0, "{uri}: a refused request was published");
    }
    let (st, _, v) = h.call(Method::POST, "/v1/orders/o-mine/cancel", Some(&me), Some(json!({"reason": "changed my mind"}))).await;
    assert_eq!((st, v["status"].as_str()), (StatusCode::ACCEPTED, Some("cancel_requested")), "{v}");
    let (st, _, v) = h.call(Method::POST, "/v1/orders/o-mine-delivered/returns", Some(&me), Some(ret)).await;
    assert_eq!((st, v["status"].as_str()), (StatusCode::ACCEPTED, Some("return_requested")), "{v}");
    let cancels: Vec<_> = h
        .events_on("storefront.orders")
        .into_iter()
        .filter_map(|e| match e {
            storeflow_avro::Event::OrderCancelRequested(c) => Some((c.order_id, c.requested_by)),
            _ => None,
        })
        .collect();
    assert_eq!(cancels, [("o-mine".to_string(), "customer".to_string())]);
    assert_eq!(h.published(), 2);
    healthy(&h).await;
}

#[tokio::test]
async fn a_customer_places_orders_for_itself_and_not_for_another_customer() {
    let h = customers_harness();
    h.seed_catalog();
    let me = customer_token("C1");
    let place = |body: Value, idem: &'static str| {
        let me = me.clone();
        let h = &h;
        async move { h.raw(Method::POST, "/v1/orders", Some(&me), Some(body.to_string().into_bytes()), &[("idempotency-key", idem)]).await }
    };
    let mut body = order_body();
    body.as_object_mut().unwrap().remove("client_ip");
    let mut other = body.clone();
    other["customer_id"] = json!("C2");
    let mut with_ip = body.clone();
    with_ip["client_ip"] = json!("192.0.2.1");
    for (refused, idem) in [(other, "o-1"), (with_ip, "o-2")] {
        let (st, _, v) = place(refused, idem).await;
        assert_eq!((st, error_of(&v).0), (StatusCode::FORBIDDEN, "forbidden"), "{v}");
        assert_eq!(h.published(), 0);
    }
    let (st, _, v) = place(body.clone(), "o-3").await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let order_id = v["order_id"].as_str().unwrap().to_string();
    let placed: Vec<_> = h
        .events_on("storefront.orders")
        .into_iter()
        .filter_map(|e| match e {
            storeflow_avro::Event::OrderPlaced(o) => Some((o.order_id, o.customer_id)),
            _ => None,
        })
        .collect();
    assert_eq!(placed, [(order_id.clone(), "C1".to_string())]);
    // A retry is the same order; another customer's same Idempotency-Key is its own order.
    let (_, _, again) = place(body.clone(), "o-3").await;
    assert_eq!(again["order_id"], order_id.as_str());
    let mut theirs = body;
    theirs["customer_id"] = json!("C2");
    let (st, _, v) = h.raw(Method::POST, "/v1/orders", Some(&customer_token("C2")), Some(theirs.to_string().into_bytes()), &[("idempotency-key", "o-3")]).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert_ne!(v["order_id"], order_id.as_str());
    healthy(&h).await;
}

#[tokio::test]
async fn a_customer_publishes_behaviour_about_itself_but_no_orders_payments_or_another_customers_events() {
    let h = customers_harness();
    let me = customer_token("C1");
    let page = |customer: Value| json!({"type": "PageViewed", "session_id": "s1", "page": "/", "customer_id": customer});
    let mut order = storeflow_avro::json::example(storeflow_avro::EventType::by_name("OrderPlaced").unwrap());
    order["customer_id"] = json!("C1");
    let payment = json!({"type": "PaymentAuthorized", "order_id": "o-1", "payment_id": "pay_1", "amount_minor": 100,
        "currency": "EUR", "provider": "stripe"});
    for (body, field, names) in [
        (order, "type", "OrderPlaced"),
        (payment.clone(), "type", "PaymentAuthorized"),
        (page(json!("C2")), "type", "C2"),
        (json!({"events": [page(json!("C1")), payment]}), "events[1].type", "PaymentAuthorized"),
        (json!({"events": [page(json!("C1")), page(json!("C2"))]}), "events[1].type", "C2"),
    ] {
        let (st, _, v) = h.call(Method::POST, "/v1/events", Some(&me), Some(body)).await;
        assert_eq!((st, v["error"]["field"].as_str()), (StatusCode::FORBIDDEN, Some(field)), "{v}");
        assert!(error_of(&v).1.contains(names) && error_of(&v).1.contains("C1"), "{v}");
        assert_eq!(h.published(), 0, "a refused request was published");
    }
    let (st, _, v) = h.call(Method::POST, "/v1/events", Some(&me), Some(json!({"events": [page(json!("C1")), page(Value::Null)]}))).await;
    assert_eq!((st, v["accepted"].as_u64()), (StatusCode::ACCEPTED, Some(2)), "its own and an anonymous view: {v}");
    assert_eq!(h.published(), 2);
    healthy(&h).await;
}

#[tokio::test]
async fn a_customer_is_refused_wherever_customers_are_not_explicitly_allowed() {
    let h = customers_harness();
    h.seed_catalog();
    let me = customer_token("C1");
    for uri in [
        "/v1/inventory/S1",
        "/v1/products/P1",
        "/v1/search?q=x",
        "/v1/recommendations?type=trending",
        "/v1/vendors/V-A/sales",
        "/v1/vendors/V-A/sales/stream",
        "/v1/vendors/V-A/orders",
        "/v1/vendors/V-A/low-stock",
        "/v1/analytics/dashboard",
        "/v1/analytics/vendors/V-A",
        "/v1/analytics/customers/C1",
        "/v1/analytics/inventory",
        "/v1/analytics/fraud",
        "/v1/admin/keys",
    ] {
        let (st, _, v) = h.call(Method::GET, uri, Some(&me), None).await;
        assert_eq!((st, error_of(&v).0), (StatusCode::FORBIDDEN, "forbidden"), "{uri}: {v}");
    }
    let (st, _, v) = h.call(Method::POST, "/v1/admin/keys", Some(&me), Some(json!({"role": "admin"}))).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, _, v) = h.call(Method::GET, "/readyz", Some(&me), None).await;
    assert!(v["problems"].is_null(), "{st}: readiness problems are for admins: {v}");

    // Where anonymous callers may read, customers may too: no more.
    let open = harness_with(with_customers(ApiConfig { public_search: true, ..Default::default() }), |r| r);
    open.seed_catalog();
    let (st, _, v) = open.call(Method::GET, "/v1/products/P1", Some(&me), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _, _) = open.call(Method::GET, "/v1/inventory/S1", Some(&me), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(h.published(), 0);
    healthy(&h).await;
}

#[tokio::test]
async fn an_expired_token_is_401_naming_expiry_but_one_within_the_leeway_passes() {
    let h = customers_harness();
    seed_order_of(&h, "o-mine", "C1", "placed");
    let mut c = claims("C1");
    c["exp"] = json!(now_secs() - 120);
    let why = refusal(&h, &hs256(&c, HS256_SECRET)).await;
    assert!(why.contains("expired"), "{why}");
    c["exp"] = json!(now_secs() - 5);
    let (st, _, v) = h.call(Method::GET, "/v1/orders/o-mine", Some(&hs256(&c, HS256_SECRET)), None).await;
    assert_eq!(st, StatusCode::OK, "5 s past exp is within the 30 s leeway: {v}");
    let mut early = claims("C1");
    early["nbf"] = json!(now_secs() + 600);
    assert!(refusal(&h, &hs256(&early, HS256_SECRET)).await.contains("nbf"));
    healthy(&h).await;
}

#[tokio::test]
async fn a_token_signed_with_another_secret_or_tampered_with_is_401_bad_signature() {
    let h = customers_harness();
    seed_order_of(&h, "o-mine", "C1", "placed");
    let forged = hs256(&claims("C1"), "another-secret-of-at-least-32-bytes-long");
    assert!(refusal(&h, &forged).await.contains("bad signature"));
    // A valid token of C2 with its claims swapped for C1's.
    let valid = customer_token("C2");
    let parts: Vec<&str> = valid.split('.').collect();
    let c1 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims("C1").to_string());
    assert!(refusal(&h, &format!("{}.{c1}.{}", parts[0], parts[2])).await.contains("bad signature"));
    healthy(&h).await;
}

#[tokio::test]
async fn an_alg_none_token_is_401() {
    let h = customers_harness();
    seed_order_of(&h, "o-mine", "C1", "placed");
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    for alg in ["none", "None", "NONE"] {
        let token = format!("{}.{}.", b64(json!({"alg": alg, "typ": "JWT"})), b64(claims("C1")));
        let why = refusal(&h, &token).await;
        assert!(why.contains(alg), "{why}");
    }
    // And with the signature of a valid token pasted on.
    let valid = customer_token("C1");
    let sig = valid.rsplit('.').next().unwrap();
    refusal(&h, &format!("{}.{}.{sig}", b64(json!({"alg": "none"})), b64(claims("C1")))).await;
    healthy(&h).await;
}

#[tokio::test]
async fn a_token_for_another_audience_or_issuer_or_without_a_claim_is_401_naming_which() {
    let h = customers_harness();
    seed_order_of(&h, "o-mine", "C1", "placed");
    let with = |k: &str, v: Value| {
        let mut c = claims("C1");
        c[k] = v;
        hs256(&c, HS256_SECRET)
    };
    let without = |k: &str| {
        let mut c = claims("C1");
        c.as_object_mut().unwrap().remove(k);
        hs256(&c, HS256_SECRET)
    };
    assert!(refusal(&h, &with("aud", json!("another-api"))).await.contains("wrong audience"));
    assert!(refusal(&h, &with("aud", json!(["another-api", "a-third"]))).await.contains("wrong audience"));
    assert!(refusal(&h, &with("iss", json!("https://evil.example"))).await.contains("wrong issuer"));
    for claim in ["exp", "iss", "aud", "sub"] {
        let why = refusal(&h, &without(claim)).await;
        assert!(why.contains(&format!("`{claim}`")), "{claim}: {why}");
    }
    assert!(refusal(&h, &with("sub", json!(""))).await.contains("sub"));
    let (st, _, v) = h.call(Method::GET, "/v1/orders/o-mine", Some(&with("aud", json!(["another-api", AUDIENCE]))), None).await;
    assert_eq!(st, StatusCode::OK, "an audience list naming this API: {v}");
    healthy(&h).await;
}

#[tokio::test]
async fn forged_tokens_count_as_failed_authentications_and_end_in_429() {
    let h = harness_with(with_customers(ApiConfig { auth_failures_per_second: 1, ..Default::default() }), |r| r);
    let forged = hs256(&claims("C1"), "another-secret-of-at-least-32-bytes-long");
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let (st, _, _) = h.call(Method::GET, "/v1/orders/o-1", Some(&forged), None).await;
        statuses.push(st);
    }
    assert_eq!(statuses[0], StatusCode::UNAUTHORIZED);
    assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    healthy(&h).await;
}

#[tokio::test]
async fn each_customer_has_its_own_rate_limit_bucket() {
    let h = harness_with(with_customers(ApiConfig { rate_per_second: 1, rate_burst: 2, ..Default::default() }), |r| r);
    seed_order_of(&h, "o-1", "C1", "placed");
    let c1 = customer_token("C1");
    let mut last = StatusCode::OK;
    for _ in 0..3 {
        last = h.call(Method::GET, "/v1/orders/o-1", Some(&c1), None).await.0;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    // A fresh token of the same customer is the same bucket; another customer is not.
    let (st, _, _) = h.call(Method::GET, "/v1/orders/o-1", Some(&customer_token("C1")), None).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    let (st, _, _) = h.call(Method::GET, "/v1/orders/o-1", Some(&customer_token("C2")), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "C2's bucket is full, and o-1 is not its order");
}

#[tokio::test]
async fn a_customer_token_is_an_unknown_key_when_customers_are_not_configured() {
    let h = harness();
    let (st, _, v) = h.call(Method::GET, "/v1/orders/o-1", Some(&customer_token("C1")), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert!(error_of(&v).1.contains("[api.customers]"), "{v}");
}

// ---------------------------------------------------------------------------- JWKS

/// A key pair made here, and its public half as a JWK with `kid`.
struct Pair {
    key: EncodingKey,
    jwk: Jwk,
}

fn rsa_pair(kid: &str) -> Pair {
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
    let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let der: Pkcs8V1Der = kp.as_der().unwrap();
    // jsonwebtoken reads RSA private keys as PEM (PKCS#8 or PKCS#1) only.
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n"));
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.into());
    Pair { key, jwk }
}

fn ec_pair(kid: &str) -> Pair {
    let kp = aws_lc_rs::signature::EcdsaKeyPair::generate(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let key = EncodingKey::from_ec_der(kp.to_pkcs8v1().unwrap().as_ref());
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some(kid.into());
    Pair { key, jwk }
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let header = Header { kid: kid.map(String::from), ..Header::new(alg) };
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// An API whose `[api.customers]` has only a JWKS file, with `keys`.
fn jwks_harness(dir: &tempfile::TempDir, keys: &[&Jwk]) -> Harness {
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, serde_json::to_string(&JwkSet { keys: keys.iter().map(|k| (*k).clone()).collect() }).unwrap()).unwrap();
    let customers = CustomersConfig { issuer: ISSUER.into(), audience: AUDIENCE.into(), jwks_file: Some(path), ..Default::default() };
    harness_with(ApiConfig { customers: Some(customers), ..Default::default() }, |r| r)
}

#[tokio::test]
async fn rs256_and_es256_tokens_verify_with_the_jwks_key_their_kid_names_and_only_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (rsa, ec, stranger) = (rsa_pair("rsa-1"), ec_pair("ec-1"), rsa_pair("rsa-1"));
    let h = jwks_harness(&dir, &[&rsa.jwk, &ec.jwk]);
    seed_order_of(&h, "o-mine", "C1", "placed");
    let c = claims("C1");
    for token in [sign(Algorithm::RS256, Some("rsa-1"), &c, &rsa.key), sign(Algorithm::ES256, Some("ec-1"), &c, &ec.key)] {
        let (st, _, v) = h.call(Method::GET, "/v1/orders/o-mine", Some(&token), None).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    // Another key under a known kid, an unknown kid, no kid, and a kid of the other kind.
    assert!(refusal(&h, &sign(Algorithm::RS256, Some("rsa-1"), &c, &stranger.key)).await.contains("bad signature"));
    assert!(refusal(&h, &sign(Algorithm::RS256, Some("rsa-9"), &c, &rsa.key)).await.contains("rsa-9"));
    assert!(refusal(&h, &sign(Algorithm::RS256, None, &c, &rsa.key)).await.contains("kid"));
    assert!(refusal(&h, &sign(Algorithm::ES256, Some("rsa-1"), &c, &ec.key)).await.contains("RS256"));
    // Algorithms the keys do not allow, though the crate could verify them.
    assert!(refusal(&h, &sign(Algorithm::RS512, Some("rsa-1"), &c, &rsa.key)).await.contains("RS512"));
    healthy(&h).await;
}

#[tokio::test]
async fn an_hs256_token_is_refused_when_only_jwks_keys_are_configured() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = rsa_pair("rsa-1");
    let h = jwks_harness(&dir, &[&rsa.jwk]);
    seed_order_of(&h, "o-mine", "C1", "placed");
    // The classic confusion: the public key (what an attacker has) as the HMAC secret.
    let public = serde_json::to_string(&rsa.jwk).unwrap();
    let n = match &rsa.jwk.algorithm {
        jsonwebtoken::jwk::AlgorithmParameters::RSA(p) => p.n.clone(),
        other => panic!("{other:?}"),
    };
    for secret in [public.as_str(), n.as_str()] {
        let token = jsonwebtoken::encode(&Header { kid: Some("rsa-1".into()), ..Header::new(Algorithm::HS256) }, &claims("C1"), &EncodingKey::from_secret(secret.as_bytes()).unwrap()).unwrap();
        assert!(refusal(&h, &token).await.contains("HS256"));
    }
    healthy(&h).await;
}

/// A value already in the sealed form (`pii1.<key id>.<pseudonym>.…`) carries the pseudonym
/// the fraud checks compare: whoever could send one would make two orders from one IP look
/// like two IPs (or one stolen card look new). Nobody sends one — not an app, not a customer,
/// not a service — whether it is forged or copied from the log.
#[tokio::test]
async fn a_value_already_in_the_sealed_form_is_refused_from_every_caller_naming_the_field() {
    let h = customers_harness();
    h.seed_catalog();
    let (st, _, v) = h.raw(Method::POST, "/v1/orders", Some(&h.app_key), Some(order_body().to_string().into_bytes()), &[("idempotency-key", "real")]).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let logged = h
        .events_on("storefront.orders")
        .into_iter()
        .find_map(|e| match e {
            storeflow_avro::Event::OrderPlaced(o) => Some(o),
            _ => None,
        })
        .unwrap();
    assert!(storeflow_avro::pii::is_sealed(&logged.client_ip), "the order was logged sealed");
    let copied_ip = logged.client_ip.clone();
    let forged = "pii1.0123456789abcdef.AAAAAAAAAAAA.AAAA".to_string();
    let before = h.published();

    let mut with_copied_ip = order_body();
    with_copied_ip["client_ip"] = json!(copied_ip);
    let mut with_forged_line = order_body();
    with_forged_line.as_object_mut().unwrap().remove("client_ip");
    with_forged_line["shipping_address"]["line1"] = json!(forged);
    let me = customer_token("C1");
    for (caller, body, field) in [(&h.app_key, with_copied_ip, "client_ip"), (&me, with_forged_line, "shipping_address.line1")] {
        let (st, _, v) = h.raw(Method::POST, "/v1/orders", Some(caller), Some(body.to_string().into_bytes()), &[("idempotency-key", field)]).await;
        assert_eq!((st, v["error"]["code"].as_str(), v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("sealed_value"), Some(field)), "{v}");
        assert!(error_of(&v).1.contains("send the value itself"), "{v}");
    }

    let order = json!({"type": "OrderPlaced", "order_id": "o-forged", "customer_id": "C1",
        "items": [{"sku": "S1", "product_id": "P1", "vendor_id": "V-A", "quantity": 1, "unit_price_minor": 1999}],
        "currency": "EUR", "shipping_address": address(), "billing_address": address(),
        "payment_method_token": forged, "client_ip": "203.0.113.9"});
    let registered = json!({"type": "CustomerRegistered", "customer_id": "C9", "email": logged.client_ip,
        "name": "Ada", "country": "DE", "marketing_opt_in": false});
    let page = json!({"type": "PageViewed", "session_id": "s", "page": "/"});
    for (body, field) in [(order, "payment_method_token"), (json!({"events": [page, registered]}), "events[1].email")] {
        let (st, _, v) = h.call(Method::POST, "/v1/events", Some(&h.service), Some(body)).await;
        assert_eq!((st, v["error"]["code"].as_str(), v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("sealed_value"), Some(field)), "{v}");
    }
    assert_eq!(h.published(), before, "a refused request was published");
    healthy(&h).await;
}
