//! The Stripe provider against the real stripe-mock (`scripts/services up stripe`; its address
//! in `STOREFLOW_TEST_STRIPE`), through a recording proxy written here: every request the
//! real async-stripe client sends is recorded (method, path, headers, form fields) and
//! forwarded, so the tests assert what we ask Stripe for, and stripe-mock — which validates
//! every request against Stripe's OpenAPI spec and answers 400 to an unknown field or a
//! value outside an enum — checks that it is a request Stripe accepts.
//!
//! stripe-mock is stateless: it answers from fixtures (a created PaymentIntent is always
//! `requires_payment_method`, ids are made up) and does not enforce idempotency keys. So a
//! test that needs a particular answer has the proxy rewrite stripe-mock's JSON (or answer
//! in its place, for errors stripe-mock cannot produce), and idempotency is asserted as "the
//! same key is sent", which is what makes Stripe itself replay its first answer.
#![cfg(feature = "stripe")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use storeflow_ingest::contract::service_address;
use storeflow_processors::payments::provider::{
    AuthorizeRequest, Authorization, CancelRequest, CaptureRequest, PaymentProvider, ProviderError, RefundRequest,
    ReversalRequest, TransferRequest,
};
use storeflow_processors::payments::stripe::Stripe;

const SECRET: &str = "sk_test_4eC39HqLyjWDarjtT1zdp7dc";

/// One request as the proxy saw it.
#[derive(Clone, Debug)]
struct Recorded {
    method: String,
    path: String,
    /// Names in lower case.
    headers: Vec<(String, String)>,
    /// The form body, decoded (`metadata[order_id]` stays one key).
    form: Vec<(String, String)>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    fn field(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    fn idempotency_key(&self) -> Option<&str> {
        self.header("idempotency-key")
    }
}

/// What the proxy answers instead of stripe-mock's own answer.
enum Answer {
    /// Pass stripe-mock's answer through.
    Forward,
    /// Forward, then change stripe-mock's JSON before returning it.
    Patch(Box<dyn Fn(&mut Value) + Send + Sync>),
    /// Do not forward; answer with this status and JSON body.
    Canned(u16, Value),
}

type Script = dyn Fn(&Recorded) -> Answer + Send + Sync;

/// A recording HTTP/1.1 proxy on 127.0.0.1:0 in front of stripe-mock, one thread per
/// connection (async-stripe does not pool connections; we close each after one exchange).
struct Proxy {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Recorded>>>,
}

impl Proxy {
    fn start(upstream: &str, script: impl Fn(&Recorded) -> Answer + Send + Sync + 'static) -> Proxy {
        let upstream = upstream.trim().trim_start_matches("http://").trim_end_matches('/').to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the recording proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let log = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let thread_log = log.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (log, script, upstream) = (thread_log.clone(), script.clone(), upstream.clone());
                std::thread::spawn(move || {
                    if let Err(e) = serve(conn, &upstream, &log, &*script) {
                        eprintln!("recording proxy: {e}");
                    }
                });
            }
        });
        Proxy { addr, log }
    }

    fn forwarding(upstream: &str) -> Proxy {
        Proxy::start(upstream, |_| Answer::Forward)
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<Recorded> {
        self.log.lock().expect("the proxy's log").clone()
    }

    /// The one request recorded so far (fails if there were more or none).
    fn only_request(&self) -> Recorded {
        let all = self.requests();
        assert_eq!(all.len(), 1, "expected exactly one request, got {all:#?}");
        all.into_iter().next().expect("one request")
    }
}

/// Reads one HTTP/1.1 request (headers, then a Content-Length body).
fn read_request(conn: &mut TcpStream) -> std::io::Result<(String, String, Vec<(String, String)>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::other("connection closed before the request's headers ended"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut start = lines.next().unwrap_or_default().split(' ');
    let method = start.next().unwrap_or_default().to_string();
    let path = start.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize =
        headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((method, path, headers, body))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Sends the request to stripe-mock as HTTP/1.0 (so the answer is not chunked and ends at
/// EOF) and returns its status and body.
fn forward(upstream: &str, method: &str, path: &str, headers: &[(String, String)], body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let mut up = TcpStream::connect(upstream)?;
    up.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {path} HTTP/1.0\r\n");
    for (k, v) in headers {
        if k != "connection" && k != "content-length" {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    req.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n", body.len()));
    up.write_all(req.as_bytes())?;
    up.write_all(body)?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    let head_end = find(&answer, b"\r\n\r\n").ok_or_else(|| std::io::Error::other("stripe-mock's answer has no header end"))?;
    let status_line = String::from_utf8_lossy(&answer[..head_end]).lines().next().unwrap_or_default().to_string();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("stripe-mock's status line `{status_line}`")))?;
    Ok((status, answer[head_end + 4..].to_vec()))
}

fn serve(mut conn: TcpStream, upstream: &str, log: &Mutex<Vec<Recorded>>, script: &Script) -> std::io::Result<()> {
    let (method, path, headers, body) = read_request(&mut conn)?;
    let form = form_urlencoded::parse(&body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let recorded = Recorded { method: method.clone(), path: path.clone(), headers: headers.clone(), form };
    log.lock().expect("the proxy's log").push(recorded.clone());
    let (status, body) = match script(&recorded) {
        Answer::Canned(status, json) => (status, json.to_string().into_bytes()),
        Answer::Forward => forward(upstream, &method, &path, &headers, &body)?,
        Answer::Patch(patch) => {
            let (status, body) = forward(upstream, &method, &path, &headers, &body)?;
            let mut json: Value = serde_json::from_slice(&body).map_err(std::io::Error::other)?;
            patch(&mut json);
            (status, json.to_string().into_bytes())
        }
    };
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())?;
    conn.write_all(&body)?;
    conn.flush()
}

fn stripe_mock() -> Option<String> {
    service_address("STOREFLOW_TEST_STRIPE", "stripe-mock")
}

fn client(proxy: &Proxy) -> Stripe {
    Stripe::new(SECRET, Some(&proxy.base())).expect("a Stripe client for the proxy")
}

fn authorize_request(key: &str) -> AuthorizeRequest {
    AuthorizeRequest {
        order_id: "ord_1001".into(),
        customer_id: "cus_ada".into(),
        amount_minor: 4_250,
        currency: "EUR".into(),
        payment_method: "pm_card_visa".into(),
        transfer_group: "order_ord_1001".into(),
        idempotency_key: key.into(),
    }
}

/// Makes a created PaymentIntent come back in `status` (stripe-mock always says
/// `requires_payment_method`).
fn payment_intents_in(status: &'static str) -> impl Fn(&Recorded) -> Answer + Send + Sync {
    move |r: &Recorded| {
        if r.method == "POST" && r.path == "/v1/payment_intents" {
            Answer::Patch(Box::new(move |pi: &mut Value| pi["status"] = json!(status)))
        } else {
            Answer::Forward
        }
    }
}

#[test]
fn authorize_creates_a_manual_capture_payment_intent_with_the_orders_idempotency_key() {
    let Some(upstream) = stripe_mock() else { return };
    let proxy = Proxy::start(&upstream, payment_intents_in("requires_capture"));
    let outcome = client(&proxy).authorize(&authorize_request("pay:ord_1001:authorize")).expect("authorize");

    let Authorization::Authorized { payment_id, card_brand, card_last4 } = outcome else {
        panic!("expected Authorized, got {outcome:?}")
    };
    assert!(payment_id.starts_with("pi_"), "{payment_id}");
    // From the expanded latest charge in stripe-mock's fixture.
    assert_eq!(card_brand.as_deref(), Some("visa"));
    assert_eq!(card_last4.as_deref(), Some("4242"));

    let r = proxy.only_request();
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/v1/payment_intents"));
    assert_eq!(r.idempotency_key(), Some("pay:ord_1001:authorize"));
    assert_eq!(r.header("authorization"), Some(format!("Bearer {SECRET}").as_str()));
    assert_eq!(r.field("amount"), Some("4250"));
    assert_eq!(r.field("currency"), Some("eur"));
    assert_eq!(r.field("capture_method"), Some("manual"));
    assert_eq!(r.field("confirm"), Some("true"));
    assert_eq!(r.field("payment_method"), Some("pm_card_visa"));
    assert_eq!(r.field("transfer_group"), Some("order_ord_1001"));
    assert_eq!(r.field("metadata[order_id]"), Some("ord_1001"));
    assert_eq!(r.field("metadata[customer_id]"), Some("cus_ada"));
    assert_eq!(r.field("expand[0]"), Some("latest_charge"));
    // Each shipment captures its share (stripe-mock accepts the parameter: Stripe's spec has it).
    assert_eq!(r.field("payment_method_options[card][request_multicapture]"), Some("if_available"));
}

#[test]
fn authorizing_twice_with_the_same_key_sends_the_same_idempotency_key_both_times() {
    let Some(upstream) = stripe_mock() else { return };
    let proxy = Proxy::start(&upstream, payment_intents_in("requires_capture"));
    let stripe = client(&proxy);
    let request = authorize_request("pay:ord_1001:authorize");
    stripe.authorize(&request).expect("first authorize");
    stripe.authorize(&request).expect("redelivered authorize");

    // stripe-mock does not enforce idempotency (it would create a second PaymentIntent);
    // Stripe replays the first answer for a repeated key. What we own is sending the same
    // key with the same parameters, which is what this checks.
    let sent = proxy.requests();
    assert_eq!(sent.len(), 2, "{sent:#?}");
    assert_eq!(sent[0].idempotency_key(), Some("pay:ord_1001:authorize"));
    assert_eq!(sent[1].idempotency_key(), sent[0].idempotency_key());
    // The same parameters (Stripe compares them parsed; metadata is a map, so its keys may
    // come in another order).
    let sorted = |form: &Vec<(String, String)>| {
        let mut f = form.clone();
        f.sort();
        f
    };
    assert_eq!(sorted(&sent[1].form), sorted(&sent[0].form), "a retry must send the same parameters, or Stripe answers idempotency_error");
}

#[test]
fn a_payment_intent_that_requires_action_is_declined_as_authentication_required() {
    let Some(upstream) = stripe_mock() else { return };
    let proxy = Proxy::start(&upstream, payment_intents_in("requires_action"));
    let outcome = client(&proxy).authorize(&authorize_request("pay:ord_1001:authorize")).expect("an outcome, not an error");
    match outcome {
        Authorization::Declined { payment_id, code, .. } => {
            assert!(payment_id.is_some_and(|id| id.starts_with("pi_")));
            assert_eq!(code, "authentication_required");
        }
        other => panic!("expected Declined, got {other:?}"),
    }
}

#[test]
fn a_declined_card_is_a_declined_outcome_with_stripes_decline_code() {
    let Some(upstream) = stripe_mock() else { return };
    // stripe-mock cannot decline a card, so the proxy answers as Stripe does (HTTP 402).
    let proxy = Proxy::start(&upstream, |_| {
        Answer::Canned(
            402,
            json!({"error": {
                "type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
                "message": "Your card has insufficient funds.",
            }}),
        )
    });
    let outcome = client(&proxy).authorize(&authorize_request("pay:ord_1001:authorize")).expect("an outcome, not an error");
    assert_eq!(
        outcome,
        Authorization::Declined {
            payment_id: None,
            code: "insufficient_funds".into(),
            message: "Your card has insufficient funds.".into()
        }
    );
}

#[test]
fn rate_limits_and_server_errors_are_transient_and_other_client_errors_are_rejected() {
    let Some(upstream) = stripe_mock() else { return };
    let answers = [
        (429, json!({"error": {"type": "invalid_request_error", "code": "rate_limit", "message": "Too many requests"}})),
        (500, json!({"error": {"type": "api_error", "message": "Something went wrong on Stripe's end."}})),
    ];
    for (status, body) in answers {
        let proxy = Proxy::start(&upstream, move |_| Answer::Canned(status, body.clone()));
        let got = client(&proxy).authorize(&authorize_request("k"));
        assert!(matches!(got, Err(ProviderError::Transient(_))), "HTTP {status}: {got:?}");
    }
    // A real 4xx from stripe-mock itself: an id that is not one of its routes.
    let proxy = Proxy::forwarding(&upstream);
    let got = client(&proxy).cancel(&CancelRequest { payment_id: "pi_1/nope".into(), idempotency_key: "k".into() });
    match got {
        Err(ProviderError::Rejected { code, message }) => {
            assert_eq!(code, "invalid_request_error");
            assert!(message.contains("Unrecognized request URL"), "{message}");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[test]
fn capture_sends_amount_to_capture_and_final_capture_and_returns_the_charge() {
    let Some(upstream) = stripe_mock() else { return };
    // stripe-mock's captured PaymentIntent has no charge; Stripe's has one.
    let proxy = Proxy::start(&upstream, |r| {
        if r.path.ends_with("/capture") {
            Answer::Patch(Box::new(|pi| pi["latest_charge"] = json!("ch_3Captured")))
        } else {
            Answer::Forward
        }
    });
    let stripe = client(&proxy);
    // A first shipment's share keeps the rest of the authorization; the last one releases it.
    let first = stripe
        .capture(&CaptureRequest { payment_id: "pi_3Abc".into(), amount_minor: 3_000, final_capture: false, idempotency_key: "pay:ord_1001:capture:1".into() })
        .expect("a partial capture");
    assert_eq!(first.charge_id.as_deref(), Some("ch_3Captured"));
    assert_eq!(first.amount_minor, 3_000, "this capture's amount, not the PaymentIntent's total received");
    let last = stripe
        .capture(&CaptureRequest { payment_id: "pi_3Abc".into(), amount_minor: 1_250, final_capture: true, idempotency_key: "pay:ord_1001:capture:2".into() })
        .expect("the final capture");
    assert_eq!(last.amount_minor, 1_250);

    let sent = proxy.requests();
    assert_eq!(sent.len(), 2, "{sent:#?}");
    for (r, (amount, final_capture, key)) in sent.iter().zip([("3000", "false", "pay:ord_1001:capture:1"), ("1250", "true", "pay:ord_1001:capture:2")]) {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/v1/payment_intents/pi_3Abc/capture"));
        assert_eq!(r.field("amount_to_capture"), Some(amount));
        assert_eq!(r.field("final_capture"), Some(final_capture));
        assert_eq!(r.idempotency_key(), Some(key));
    }
}

#[test]
fn each_vendor_gets_one_transfer_of_its_net_amount_to_its_account_in_the_orders_transfer_group() {
    let Some(upstream) = stripe_mock() else { return };
    let proxy = Proxy::forwarding(&upstream);
    let stripe = client(&proxy);
    let vendors = [("ven_a", "acct_1A", 1_800, Some("ch_3Captured")), ("ven_b", "acct_1B", 950, Some("ch_3Captured")), ("ven_c", "acct_1C", 425, None)];
    for (vendor, account, net, source) in vendors {
        let id = stripe
            .transfer(&TransferRequest {
                order_id: "ord_1001".into(),
                vendor_id: vendor.into(),
                destination: account.into(),
                amount_minor: net,
                currency: "EUR".into(),
                transfer_group: "order_ord_1001".into(),
                source_charge: source.map(String::from),
                idempotency_key: format!("pay:ord_1001:transfer:{vendor}"),
            })
            .expect("transfer");
        assert!(id.starts_with("tr_"), "{id}");
    }

    let sent = proxy.requests();
    assert_eq!(sent.len(), 3, "{sent:#?}");
    for (r, (vendor, account, net, source)) in sent.iter().zip(vendors) {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/v1/transfers"));
        assert_eq!(r.field("amount"), Some(net.to_string().as_str()));
        assert_eq!(r.field("destination"), Some(account));
        assert_eq!(r.field("currency"), Some("eur"));
        assert_eq!(r.field("transfer_group"), Some("order_ord_1001"));
        assert_eq!(r.field("source_transaction"), source);
        assert_eq!(r.field("metadata[order_id]"), Some("ord_1001"));
        assert_eq!(r.field("metadata[vendor_id]"), Some(vendor));
        assert_eq!(r.idempotency_key(), Some(format!("pay:ord_1001:transfer:{vendor}").as_str()));
    }
}

#[test]
fn refund_sends_the_amount_with_stripes_reason_and_ours_in_metadata() {
    let Some(upstream) = stripe_mock() else { return };
    let proxy = Proxy::forwarding(&upstream);
    let id = client(&proxy)
        .refund(&RefundRequest {
            payment_id: "pi_3Abc".into(),
            amount_minor: 1_200,
            reason: "item_out_of_stock".into(),
            idempotency_key: "pay:ord_1001:refund:1".into(),
        })
        .expect("refund");
    assert!(id.starts_with("re_"), "{id}");

    let r = proxy.only_request();
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/v1/refunds"));
    assert_eq!(r.field("payment_intent"), Some("pi_3Abc"));
    assert_eq!(r.field("amount"), Some("1200"));
    assert_eq!(r.field("reason"), Some("requested_by_customer"));
    assert_eq!(r.field("metadata[reason]"), Some("item_out_of_stock"));
    assert_eq!(r.idempotency_key(), Some("pay:ord_1001:refund:1"));
}

#[test]
fn reverse_transfer_reverses_the_amount_on_that_transfer() {
    let Some(upstream) = stripe_mock() else { return };
    let proxy = Proxy::forwarding(&upstream);
    let id = client(&proxy)
        .reverse_transfer(&ReversalRequest {
            transfer_id: "tr_1VenA".into(),
            amount_minor: 600,
            idempotency_key: "pay:ord_1001:reverse:ven_a".into(),
        })
        .expect("reversal");
    assert!(id.starts_with("trr_"), "{id}");

    let r = proxy.only_request();
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/v1/transfers/tr_1VenA/reversals"));
    assert_eq!(r.field("amount"), Some("600"));
    assert_eq!(r.idempotency_key(), Some("pay:ord_1001:reverse:ven_a"));
}

#[test]
fn cancel_cancels_the_payment_intent_with_the_commands_key() {
    let Some(upstream) = stripe_mock() else { return };
    let proxy = Proxy::forwarding(&upstream);
    client(&proxy)
        .cancel(&CancelRequest { payment_id: "pi_3Abc".into(), idempotency_key: "pay:ord_1001:cancel".into() })
        .expect("cancel");

    let r = proxy.only_request();
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/v1/payment_intents/pi_3Abc/cancel"));
    assert_eq!(r.idempotency_key(), Some("pay:ord_1001:cancel"));
    assert!(r.form.is_empty(), "{:?}", r.form);
}

#[test]
fn the_client_reaches_stripe_mock_directly_too() {
    // The proxy above is transparent: the same call straight at stripe-mock works.
    let Some(upstream) = stripe_mock() else { return };
    let stripe = Stripe::new(SECRET, Some(&upstream)).expect("a Stripe client for stripe-mock");
    // stripe-mock's fixture PaymentIntent is `requires_payment_method`: a decline, as an outcome.
    let outcome = stripe.authorize(&authorize_request("pay:direct")).expect("an outcome");
    assert!(matches!(outcome, Authorization::Declined { ref code, .. } if code == "requires_payment_method"), "{outcome:?}");
    assert_eq!(stripe.name(), "stripe");
}

/// Vendors' plans (subscriptions) and Connect onboarding (accounts, account links).
mod vendors {
    use super::*;
    use storeflow_processors::payments::provider::{AccountLinkRequest, AccountRequest, CurrentSubscription, PlanRequest};

    fn plan_request(plan: &str, price: Option<&str>, customer: Option<&str>, current: Option<(&str, &str)>, key: &str) -> PlanRequest {
        PlanRequest {
            vendor_id: "ven_a".into(),
            plan: plan.into(),
            price: price.map(String::from),
            customer_id: customer.map(String::from),
            current: current.map(|(id, item)| CurrentSubscription { id: id.into(), item_id: item.into() }),
            idempotency_key: key.into(),
        }
    }

    #[test]
    fn a_first_plan_creates_the_vendors_customer_then_a_subscription_to_the_plans_price() {
        let Some(upstream) = stripe_mock() else { return };
        let proxy = Proxy::forwarding(&upstream);
        let sub = client(&proxy).change_plan(&plan_request("pro", Some("price_1Pro"), None, None, "storeflow-cmd1-plan")).expect("subscribe");
        assert!(sub.customer_id.as_deref().is_some_and(|c| c.starts_with("cus_")), "{sub:?}");
        assert!(sub.id.as_deref().is_some_and(|s| s.starts_with("sub_")), "{sub:?}");
        assert!(sub.item_id.as_deref().is_some_and(|s| s.starts_with("si_")), "{sub:?}");
        assert!(!sub.status.is_empty());

        let sent = proxy.requests();
        assert_eq!(sent.len(), 2, "{sent:#?}");
        let (customer, subscription) = (&sent[0], &sent[1]);
        assert_eq!((customer.method.as_str(), customer.path.as_str()), ("POST", "/v1/customers"));
        assert_eq!(customer.field("metadata[vendor_id]"), Some("ven_a"));
        assert_eq!(customer.field("metadata[storeflow_source]"), Some("payments_worker"));
        assert_eq!(customer.idempotency_key(), Some("storeflow-vendor-ven_a-customer"), "one Customer per vendor, whichever command asks");
        assert_eq!((subscription.method.as_str(), subscription.path.as_str()), ("POST", "/v1/subscriptions"));
        assert_eq!(subscription.field("customer"), Some(sub.customer_id.as_deref().unwrap()));
        assert_eq!(subscription.field("items[0][price]"), Some("price_1Pro"));
        assert_eq!(subscription.field("metadata[vendor_id]"), Some("ven_a"));
        assert_eq!(subscription.field("metadata[plan]"), Some("pro"));
        assert_eq!((subscription.field("collection_method"), subscription.field("days_until_due")), (Some("send_invoice"), Some("30")), "the vendor pays its plan by invoice");
        assert_eq!(subscription.field("metadata[storeflow_source]"), Some("payments_worker"));
        assert_eq!(subscription.idempotency_key(), Some("storeflow-cmd1-plan"));
    }

    #[test]
    fn a_plan_change_gives_the_subscriptions_item_the_new_price() {
        let Some(upstream) = stripe_mock() else { return };
        let proxy = Proxy::forwarding(&upstream);
        let r = plan_request("enterprise", Some("price_1Ent"), Some("cus_Known"), Some(("sub_1Abc", "si_1Item")), "storeflow-cmd2-plan");
        let sub = client(&proxy).change_plan(&r).expect("change");
        assert_eq!(sub.customer_id.as_deref(), Some("cus_Known"));

        let r = proxy.only_request();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/v1/subscriptions/sub_1Abc"));
        assert_eq!(r.field("items[0][id]"), Some("si_1Item"));
        assert_eq!(r.field("items[0][price]"), Some("price_1Ent"));
        assert_eq!(r.field("metadata[plan]"), Some("enterprise"));
        assert_eq!(r.field("metadata[vendor_id]"), Some("ven_a"));
        assert_eq!(r.field("customer"), None, "the customer of a subscription does not change");
        assert_eq!(r.idempotency_key(), Some("storeflow-cmd2-plan"));
    }

    #[test]
    fn the_free_plan_cancels_the_subscription_and_without_one_sends_nothing() {
        let Some(upstream) = stripe_mock() else { return };
        let proxy = Proxy::start(&upstream, |r: &Recorded| {
            // stripe-mock answers a cancel with its fixture's status: say what Stripe says.
            if r.method == "DELETE" { Answer::Patch(Box::new(|s: &mut Value| s["status"] = json!("canceled"))) } else { Answer::Forward }
        });
        let stripe = client(&proxy);
        let sub = stripe.change_plan(&plan_request("basic", None, Some("cus_Known"), Some(("sub_1Abc", "si_1Item")), "storeflow-cmd3-plan")).expect("cancel");
        assert_eq!((sub.status.as_str(), sub.item_id.as_ref()), ("canceled", None));
        let r = proxy.only_request();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("DELETE", "/v1/subscriptions/sub_1Abc"));
        assert_eq!(r.idempotency_key(), Some("storeflow-cmd3-plan"));

        let none = stripe.change_plan(&plan_request("basic", None, None, None, "storeflow-cmd4-plan")).expect("nothing to cancel");
        assert_eq!((none.id, none.status.as_str()), (None, "active"));
        assert_eq!(proxy.requests().len(), 1, "no request for a vendor that never subscribed");
    }

    #[test]
    fn an_account_is_an_express_account_marked_with_its_vendor_and_its_link_is_for_onboarding() {
        let Some(upstream) = stripe_mock() else { return };
        let proxy = Proxy::forwarding(&upstream);
        let stripe = client(&proxy);
        let account = stripe
            .create_account(&AccountRequest { vendor_id: "ven_a".into(), country: "DE".into(), idempotency_key: "storeflow-vendor-ven_a-account".into() })
            .expect("account");
        assert!(account.starts_with("acct_"), "{account}");
        let link = stripe
            .account_link(&AccountLinkRequest {
                account_id: account.clone(),
                refresh_url: "https://vendors.example/onboarding/refresh".into(),
                return_url: "https://vendors.example/onboarding/done".into(),
                idempotency_key: "storeflow-link-1".into(),
            })
            .expect("link");
        assert!(link.url.as_deref().is_some_and(|u| u.starts_with("https://")), "{link:?}");
        assert!(link.expires_at.is_some_and(|t| t > 1_000_000_000_000), "milliseconds: {link:?}");
        stripe.account_status(&account).expect("the account's flags");

        let sent = proxy.requests();
        assert_eq!(sent.len(), 3, "{sent:#?}");
        let (a, l, read) = (&sent[0], &sent[1], &sent[2]);
        assert_eq!((a.method.as_str(), a.path.as_str()), ("POST", "/v1/accounts"));
        assert_eq!(a.field("type"), Some("express"));
        assert_eq!(a.field("country"), Some("DE"));
        assert_eq!(a.field("capabilities[transfers][requested]"), Some("true"));
        assert_eq!(a.field("metadata[vendor_id]"), Some("ven_a"));
        assert_eq!(a.field("metadata[storeflow_source]"), Some("payments_worker"));
        assert_eq!(a.idempotency_key(), Some("storeflow-vendor-ven_a-account"));
        assert_eq!((l.method.as_str(), l.path.as_str()), ("POST", "/v1/account_links"));
        assert_eq!(l.field("account"), Some(account.as_str()));
        assert_eq!(l.field("type"), Some("account_onboarding"));
        assert_eq!(l.field("refresh_url"), Some("https://vendors.example/onboarding/refresh"));
        assert_eq!(l.field("return_url"), Some("https://vendors.example/onboarding/done"));
        assert_eq!((read.method.as_str(), read.path.as_str()), ("GET", format!("/v1/accounts/{account}").as_str()));
    }
}
