//! The OpenAPI document is the truth about the API: requests generated from
//! `/openapi.json` itself — every operation, every role and a customer's token, valid and
//! invalid path values, query parameters and bodies — never get a 5xx the document does not
//! declare, and every answer's status and content type is one the document declares for
//! that operation; every JSON body matches the schema the document declares for its
//! status (no field it does not name, none it requires missing, every type right).
//!
//! The generator is seeded (`STOREFLOW_OPENAPI_SEED`, `STOREFLOW_OPENAPI_CASES` to soak), so
//! a failure prints the request that caused it and can be replayed.

mod common;

use axum::http::Method;
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// One operation of the document.
struct Op {
    method: Method,
    path: String,
    /// Query parameters: name and schema.
    params: Vec<(String, Value)>,
    /// Whether it takes a JSON body.
    body: bool,
    /// Declared status codes and, for each, its content types and JSON body schema.
    responses: Vec<(u16, Vec<String>, Option<Value>)>,
}

fn resolve<'a>(spec: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/")) {
        Some(path) => path.split('/').fold(spec, |at, part| &at[part]),
        None => v,
    }
}

/// Whether `v` is of JSON Schema type `t`.
fn fits(t: &str, v: &Value) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "string" => v.is_string(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => true,
    }
}

/// `schema` with its `allOf` parts folded in: their properties and required fields together.
fn all_of(spec: &Value, schema: &Value) -> Value {
    let mut out = schema.clone();
    let Value::Object(o) = &mut out else { return out };
    let parts: Vec<Value> = o.remove("allOf").and_then(|v| v.as_array().cloned()).unwrap_or_default();
    for part in parts {
        let part = all_of(spec, resolve(spec, &part));
        for key in ["properties", "required"] {
            match (o.get_mut(key), part.get(key)) {
                (Some(Value::Object(mine)), Some(Value::Object(theirs))) => mine.extend(theirs.clone()),
                (Some(Value::Array(mine)), Some(Value::Array(theirs))) => mine.extend(theirs.iter().cloned()),
                (None, Some(theirs)) => {
                    o.insert(key.to_string(), theirs.clone());
                }
                _ => {}
            }
        }
        if let (None, Some(t)) = (o.get("type"), part.get("type")) {
            o.insert("type".into(), t.clone());
        }
    }
    out
}

/// Checks `v` against `schema`, for the part of JSON Schema the document uses (`$ref`,
/// `type`, `properties`, `required`, `items`, `additionalProperties`, `oneOf`/`anyOf`/
/// `allOf`, `enum`) — stricter than JSON Schema in one way: an object's property the schema
/// does not name is an error unless `additionalProperties` allows it, so an answer cannot
/// carry a field the document does not tell of. (A test-only subset: the `jsonschema` crate
/// would bring a regex engine and an HTTP client for what these 40 lines check.)
fn check(spec: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let merged;
    let mut schema = resolve(spec, schema);
    if schema.get("allOf").is_some() {
        // One object made of several parts (`#[serde(flatten)]`): its properties are all of
        // theirs together, so a field of one part is not foreign to another.
        merged = all_of(spec, schema);
        schema = &merged;
    }
    if let Some(alts) = schema["oneOf"].as_array().or(schema["anyOf"].as_array())
        && !alts.iter().any(|s| check(spec, s, v, at).is_ok())
    {
        let why: Vec<String> = alts.iter().filter_map(|s| check(spec, s, v, at).err()).collect();
        return Err(format!("{at}: fits none of its alternatives ({})", why.join("; ")));
    }
    if let Some(e) = schema["enum"].as_array()
        && !e.contains(v)
    {
        return Err(format!("{at}: {v} is not one of {e:?}"));
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !types.is_empty() && !types.iter().any(|t| fits(t, v)) {
        return Err(format!("{at}: {v} is not of type {types:?}"));
    }
    match v {
        Value::Object(m) if types.is_empty() || types.contains(&"object") => {
            for r in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                if !m.contains_key(r) {
                    return Err(format!("{at}: required `{r}` missing"));
                }
            }
            let props = schema["properties"].as_object();
            for (k, x) in m {
                match (props.and_then(|p| p.get(k)), schema.get("additionalProperties")) {
                    (Some(p), _) => check(spec, p, x, &format!("{at}.{k}"))?,
                    (None, Some(Value::Bool(true))) => {}
                    (None, Some(ap)) if ap.is_object() => check(spec, ap, x, &format!("{at}.{k}"))?,
                    // A free-form object (`{}` or `type: object` alone) holds anything.
                    (None, None) if props.is_none() => {}
                    _ => return Err(format!("{at}: `{k}` is not in the document")),
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items") {
                for (i, x) in a.iter().enumerate() {
                    check(spec, items, x, &format!("{at}[{i}]"))?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn operations(spec: &Value) -> Vec<Op> {
    let mut ops = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (m, op) in item.as_object().unwrap() {
            let Ok(method) = m.to_uppercase().parse::<Method>() else { continue };
            let params = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .map(|p| (p["name"].as_str().unwrap().to_string(), resolve(spec, &p["schema"]).clone()))
                .collect();
            let responses = op["responses"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(code, r)| {
                    let r = resolve(spec, r);
                    let types = r["content"].as_object().map(|c| c.keys().cloned().collect()).unwrap_or_default();
                    let schema = r["content"]["application/json"].get("schema").cloned();
                    (code.parse().unwrap(), types, schema)
                })
                .collect();
            ops.push(Op { method, path: path.clone(), params, body: !op["requestBody"].is_null(), responses });
        }
    }
    ops
}

fn pick<'a, T>(rng: &mut StdRng, xs: &'a [T]) -> &'a T {
    &xs[rng.random_range(0..xs.len())]
}

/// A path segment: an id the harness knows, or something hostile.
fn segment(rng: &mut StdRng) -> String {
    let known = ["O1", "O2", "V-A", "V-B", "S1", "P1", "P3", "nope"];
    let hostile = ["%2e%2e%2f", "%00", "%E2%80%AE", "a%20b", "x".repeat(3_000).leak(), "%F0%9F%92%A9", "-1", "99999999999999999999"];
    if rng.random_bool(0.6) { pick(rng, &known).to_string() } else { pick(rng, &hostile).to_string() }
}

/// A query value for a parameter of `schema`: mostly fitting, sometimes not.
fn query_value(rng: &mut StdRng, schema: &Value) -> String {
    let ty = schema["type"].as_str().or_else(|| schema["type"].as_array().and_then(|t| t.iter().find_map(|x| x.as_str().filter(|s| *s != "null")))).unwrap_or("string");
    let garbage = ["", "%FF", "-", "1e400", "NaN", "true", "%3Cscript%3E", "9223372036854775808", "-9223372036854775809"];
    if rng.random_bool(0.25) {
        return pick(rng, &garbage).to_string();
    }
    if let Some(choices) = schema["enum"].as_array() {
        return choices[rng.random_range(0..choices.len())].as_str().unwrap_or("x").to_string();
    }
    match ty {
        "integer" => pick(rng, &["0", "1", "5", "20", "99", "100", "101", "4294967295", "-3", "9223372036854775807"]).to_string(),
        "number" => pick(rng, &["0", "4.5", "5", "-1", "1e3"]).to_string(),
        "boolean" => pick(rng, &["true", "false", "yes"]).to_string(),
        _ => pick(rng, &["shoe", "1h", "24h", "7d", "trending", "similar", "P1", "electronics", "Acme,Zed", "x".repeat(300).leak()]).to_string(),
    }
}

/// A body: an example event (sometimes broken), an order request, a request that fits (so
/// that successes are reached as often as refusals), or junk.
fn body(rng: &mut StdRng) -> Vec<u8> {
    let types = storeflow_avro::EVENT_TYPES;
    match rng.random_range(0..8) {
        6 => json!({"customer_id": "C1", "currency": "EUR", "items": [{"sku": "S1", "quantity": 1}], "shipping_address": address(),
            "payment_method_token": "pm_card_visa"})
        .to_string()
        .into_bytes(),
        7 => json!({"type": "PageViewed", "session_id": "sess-1", "page": "/home"}).to_string().into_bytes(),
        0 => storeflow_avro::json::example(&types[rng.random_range(0..types.len())]).to_string().into_bytes(),
        1 => {
            let mut e = storeflow_avro::json::example(&types[rng.random_range(0..types.len())]);
            let obj = e.as_object_mut().unwrap();
            let keys: Vec<String> = obj.keys().cloned().collect();
            let k = pick(rng, &keys).clone();
            obj.insert(k, pick(rng, &[json!(null), json!(-1), json!(i64::MAX), json!("x"), json!([]), json!({"a": 1}), json!(1e300)]).clone());
            e.to_string().into_bytes()
        }
        2 => json!({"customer_id": "C1", "currency": pick(rng, &["EUR", "eur", "XXX"]), "items": [{"sku": "S1", "quantity": pick(rng, &[1, 0, -1, i64::MAX])}],
            "shipping_address": address(), "billing_address": address(), "payment_method_token": "pm_card_visa"})
        .to_string()
        .into_bytes(),
        3 => json!({"role": pick(rng, &["app", "admin", "vendor:V-A", "vendor:", "root"]), "reason": "x", "items": [{"sku": "S1", "quantity": 1}]}).to_string().into_bytes(),
        4 => pick(rng, &[&b"{"[..], b"null", b"[]", b"\"x\"", b"{\"events\": []}", b"\xff\xfe"]).to_vec(),
        _ => json!({"events": (0..rng.random_range(1..4)).map(|_| storeflow_avro::json::example(&types[rng.random_range(0..types.len())])).collect::<Vec<_>>()}).to_string().into_bytes(),
    }
}

#[tokio::test]
async fn the_body_check_refuses_a_field_the_document_does_not_name_a_missing_one_and_a_wrong_type() {
    let h = harness();
    let (_, _, spec) = h.call(Method::GET, "/openapi.json", None, None).await;
    let error = json!({"$ref": "#/components/schemas/ErrorBody"});
    let good = json!({"error": {"code": "x", "message": "y"}});
    assert_eq!(check(&spec, &error, &good, "body"), Ok(()));
    let mut extra = good.clone();
    extra["stack_trace"] = json!("…");
    assert!(check(&spec, &error, &extra, "body").unwrap_err().contains("stack_trace"));
    assert!(check(&spec, &error, &json!({}), "body").unwrap_err().contains("required `error`"));
    assert!(check(&spec, &error, &json!({"error": {"code": 7, "message": "y"}}), "body").is_err());
}

#[tokio::test]
async fn every_generated_request_gets_an_answer_the_openapi_document_declares() {
    // Webhooks configured, so a generated delivery meets the signature check, not a 503.
    let hooks = storeflow_api::webhooks::StripeWebhookConfig { secrets: vec!["whsec_contract".into()], tolerance_secs: 300 };
    let h = harness_with(with_customers(storeflow_api::ApiConfig { stripe_webhook: Some(hooks), ..Default::default() }), |r| r);
    h.seed_catalog();
    h.seed_order("O1", "placed");
    h.seed_order("O2", "delivered");
    let (_, _, spec) = h.call(Method::GET, "/openapi.json", None, None).await;
    let ops = operations(&spec);
    assert!(ops.len() >= 18, "{} operations", ops.len());
    let seed: u64 = std::env::var("STOREFLOW_OPENAPI_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(13);
    let cases: usize = std::env::var("STOREFLOW_OPENAPI_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(3_000);
    let mut rng = StdRng::seed_from_u64(seed);
    let keys = [None, Some(h.app_key.clone()), Some(h.vendor_a.clone()), Some(h.vendor_b.clone()), Some(h.analyst.clone()), Some(h.admin.clone()), Some("sf_forged".to_string()),
        // Customer C1 (O1 and O2 are its orders), and a token signed with another secret.
        Some(customer_token("C1")), Some(hs256(&claims("C1"), "not-the-secret-but-32-bytes-long-anyway"))];
    let mut seen = std::collections::BTreeMap::<(String, u16), usize>::new();
    // Bodies checked against their schema, by status.
    let mut bodies = std::collections::BTreeMap::<u16, usize>::new();
    for case in 0..cases {
        let op = pick(&mut rng, &ops);
        // Never revoke keys mid-run: the generator would lock itself out. Streams never end
        // (their tests are in hostile.rs and handlers.rs).
        if op.method == Method::DELETE || op.responses.iter().any(|(_, t, _)| t.iter().any(|t| t == "text/event-stream")) {
            continue;
        }
        let mut uri = String::new();
        for part in op.path.split('/').skip(1) {
            uri.push('/');
            if part.starts_with('{') { uri.push_str(&segment(&mut rng)) } else { uri.push_str(part) }
        }
        let mut query: Vec<String> = Vec::new();
        for (n, schema) in &op.params {
            if rng.random_bool(0.5) {
                query.push(format!("{n}={}", query_value(&mut rng, schema)));
            }
        }
        if rng.random_bool(0.05) {
            query.push("unknown_param=1".into());
        }
        if !query.is_empty() {
            uri = format!("{uri}?{}", query.join("&"));
        }
        let key = pick(&mut rng, &keys).clone();
        let payload = op.body.then(|| body(&mut rng));
        let (status, headers, v) = h.raw(op.method.clone(), &uri, key.as_deref(), payload.clone(), &[("idempotency-key", &format!("k{case}"))]).await;
        let req = format!("case {case} (seed {seed}): {} {uri} key={key:?} body={}", op.method, payload.as_deref().map(String::from_utf8_lossy).unwrap_or_default().chars().take(300).collect::<String>());
        let code = status.as_u16();
        let declared = op.responses.iter().find(|(c, _, _)| *c == code);
        assert!(code != 500, "a 500: {req} → {v}");
        let Some((_, types, schema)) = declared else {
            panic!("{code} is not declared for {} {}: {req} → {v}", op.method, op.path);
        };
        let ct = headers.get("content-type").and_then(|c| c.to_str().ok()).unwrap_or("");
        if !ct.is_empty() {
            assert!(types.is_empty() || types.iter().any(|t| ct.starts_with(t.as_str())), "content type {ct} is not one of {types:?}: {req}");
        }
        if let Some(schema) = schema.as_ref().filter(|_| ct.starts_with("application/json")) {
            if let Err(why) = check(&spec, schema, &v, "body") {
                panic!("the answer's body does not match the document's schema for {code}: {why}\n{req} → {v}");
            }
            *bodies.entry(code).or_default() += 1;
        }
        if code >= 400 {
            assert!(v["error"]["code"].is_string() && v["error"]["message"].is_string(), "an error body without the ErrorBody shape: {req} → {v}");
        }
        *seen.entry((format!("{} {}", op.method, op.path), code)).or_default() += 1;
    }
    let (st, _, _) = h.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(st.as_u16(), 200);
    println!("{} operation × status pairs seen:", seen.len());
    for ((op, code), n) in &seen {
        println!("  {op} → {code}: {n}");
    }
    println!("bodies checked against their schema, by status: {bodies:?}");
    assert!(bodies.get(&200).is_some_and(|n| *n > 50), "too few success bodies checked: {bodies:?}");
    // The generator reaches success and refusals alike, not only 400s.
    assert!(seen.keys().any(|(_, c)| *c == 200) && seen.keys().any(|(_, c)| *c == 202) && seen.keys().any(|(_, c)| *c == 403), "{seen:?}");
}
