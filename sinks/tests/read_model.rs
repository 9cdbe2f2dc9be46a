//! The read model against the real Postgres and its SQLite twin: every test runs on both
//! (`postgres::…` skips loudly without `STOREFLOW_TEST_POSTGRES`, and fails under CI).

mod common;

use std::path::Path;

use prometheus_client::registry::Registry;
use storeflow_avro::*;
use storeflow_sinks::config::ReadModelConfig;
use storeflow_sinks::read_model::ReadModelSink;
use storeflow_sinks::runner::{Item, Sink};
use storeflow_sinks::{ReadModel, Sinks, SinksConfig};

use common::*;

/// Where a test's read model lives.
#[derive(Clone)]
enum Backend {
    Postgres(String),
    Sqlite,
}

impl Backend {
    fn config(&self) -> ReadModelConfig {
        match self {
            Backend::Postgres(url) => ReadModelConfig { postgres_url: Some(url.clone().into()), ..ReadModelConfig::default() },
            Backend::Sqlite => ReadModelConfig::default(),
        }
    }

    fn sinks(&self, dir: &Path) -> SinksConfig {
        let mut c = SinksConfig::embedded(dir.join("sinks")).only(&["read_model"]);
        c.read_model = self.config();
        c.read_model.max_wait_ms = 50;
        c
    }
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(#[test] fn $name() { super::init(); if let Some((url, _cleanup)) = super::postgres() { super::$name(super::Backend::Postgres(url)); } })*
        }
        mod sqlite {
            $(#[test] fn $name() { super::init(); super::$name(super::Backend::Sqlite); })*
        }
    };
}

on_both!(
    a_batch_written_twice_leaves_one_copy,
    a_record_the_database_rejects_goes_to_the_dlq_and_the_stream_continues,
    stopped_sinks_restart_and_drain_the_backlog_without_loss_or_doubles,
    an_order_reads_back_with_items_states_totals_payments_and_history,
    a_stale_status_or_price_never_overwrites_a_newer_one,
    an_erased_customer_stays_erased_when_the_registration_is_replayed,
    inventory_by_sku_lists_each_warehouse_and_the_totals,
);

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("runtime")
}

fn order_related(e: &Event) -> bool {
    matches!(e.topic(), Topic::Orders | Topic::Payments | Topic::Fulfillment | Topic::Lifecycle | Topic::FraudScores)
        || matches!(e, Event::ReservationMade(_) | Event::ReservationRejected(_) | Event::ReservationReleased(_) | Event::ReservationCommitted(_))
}

fn expected(events: &[Event]) -> Vec<(&'static str, i64)> {
    let items: i64 = events.iter().map(|e| if let Event::OrderPlaced(o) = e { o.items.len() as i64 } else { 0 }).sum();
    vec![
        ("orders", count(events, "OrderPlaced")),
        ("order_items", items),
        ("order_events", events.iter().filter(|e| order_related(e)).count() as i64),
        ("vendors", count(events, "VendorOnboarded")),
        ("products", count(events, "ProductCreated")),
        ("reviews", count(events, "ReviewSubmitted")),
        ("customers", count(events, "CustomerRegistered")),
        ("refunds", count(events, "RefundIssued")),
        ("shipments", count(events, "ShipmentCreated")),
    ]
}

async fn check_counts(rm: &ReadModelSink, events: &[Event]) {
    let h = ReadModel::new(rm.db().clone(), tokio::runtime::Handle::current());
    let counts = h.counts().await.expect("counts");
    for (table, want) in expected(events) {
        assert_eq!(counts[table], want, "{table}: {counts:?}");
    }
}

fn a_batch_written_twice_leaves_one_copy(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let events = sim(4_000, 11);
    let its = items(&events);
    rt().block_on(async {
        let mut sink = ReadModelSink::open(&b.config(), dir.path()).await.expect("open");
        for chunk in its.chunks(700) {
            sink.write(chunk).await.expect("first write");
        }
        check_counts(&sink, &events).await;
        // The same batches again (a crash between write and commit), and overlapping ones.
        for chunk in its.chunks(700) {
            sink.write(chunk).await.expect("second write");
        }
        for chunk in its.chunks(1_300) {
            sink.write(chunk).await.expect("third write, other batch edges");
        }
        check_counts(&sink, &events).await;
        // A fresh sink on the same database, as after a restart.
        let mut again = ReadModelSink::open(&b.config(), dir.path()).await.expect("reopen");
        again.write(&its).await.expect("rewrite everything");
        check_counts(&again, &events).await;
    });
}

fn review(id: &str, rating: i32, at: i64) -> Event {
    Event::ReviewSubmitted(ReviewSubmitted {
        event_id: format!("ev-{id}"),
        occurred_at: Timestamp(at),
        review_id: id.into(),
        product_id: "p-bad".into(),
        vendor_id: "v-1".into(),
        customer_id: "c-1".into(),
        rating,
        title: None,
        body: None,
    })
}

fn a_record_the_database_rejects_goes_to_the_dlq_and_the_stream_continues(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let log = log(&dir.path().join("log"));
    let codec = codec();
    let mut events = sim(1_500, 12);
    let before = events.len();
    events.push(review("r-ok-1", 4, START + 1));
    events.push(review("r-bad", 9, START + 2));
    events.push(review("r-ok-2", 5, START + 3));
    events.extend(sim(3_000, 12).into_iter().skip(before));
    publish(log.as_ref(), &codec, &events);
    let sinks = Sinks::start(log.clone(), codec, b.sinks(dir.path()), &mut Registry::default()).expect("start");
    sinks.wait_caught_up(PATIENCE).expect("caught up");
    let dead = storeflow_processors::dlq::list(log.as_ref(), "storefront.catalog").expect("dlq");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].processor, "read_model");
    assert!(dead[0].reason.contains("review_rating_range"), "{}", dead[0].reason);
    let rm = sinks.read_model().expect("read model");
    let counts = rt().block_on(rm.counts()).expect("counts");
    let valid: Vec<Event> = events.iter().filter(|e| !matches!(e, Event::ReviewSubmitted(r) if r.rating == 9)).cloned().collect();
    for (table, want) in expected(&valid) {
        assert_eq!(counts[table], want, "{table}");
    }
    sinks.stop().expect("stop");
}

fn stopped_sinks_restart_and_drain_the_backlog_without_loss_or_doubles(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let log = log(&dir.path().join("log"));
    let codec = codec();
    let events = sim(6_000, 13);
    let (first, second) = events.split_at(2_500);
    publish(log.as_ref(), &codec, first);
    let sinks = Sinks::start(log.clone(), codec.clone(), b.sinks(dir.path()), &mut Registry::default()).expect("start");
    sinks.wait_caught_up(PATIENCE).expect("caught up");
    sinks.stop().expect("stop");
    // The backlog builds while the sink is down.
    publish(log.as_ref(), &codec, second);
    let sinks = Sinks::start(log.clone(), codec, b.sinks(dir.path()), &mut Registry::default()).expect("restart");
    sinks.wait_caught_up(PATIENCE).expect("drained");
    let counts = rt().block_on(sinks.read_model().expect("read model").counts()).expect("counts");
    for (table, want) in expected(&events) {
        assert_eq!(counts[table], want, "{table}");
    }
    sinks.stop().expect("stop");
}

fn addr(country: &str) -> Address {
    Address { name: "Ada".into(), line1: "1 Way".into(), line2: None, city: "Berlin".into(), postal_code: "10115".into(), region: None, country: country.into() }
}

fn status(order: &str, at: i64, s: &str, pay: &str, ful: &str) -> Event {
    Event::OrderStatusChanged(OrderStatusChanged {
        event_id: format!("st-{order}-{at}-{s}"),
        occurred_at: Timestamp(at),
        order_id: order.into(),
        customer_id: "c-9".into(),
        previous_status: None,
        status: s.into(),
        payment_status: pay.into(),
        fulfillment_status: ful.into(),
        reason: format!("to {s}"),
        total_minor: 2_598 + 499,
        currency: "EUR".into(),
        version: 1,
    })
}

fn an_order(order: &str) -> Vec<Event> {
    vec![
        Event::OrderPlaced(OrderPlaced {
            event_id: format!("op-{order}"),
            occurred_at: Timestamp(START),
            order_id: order.into(),
            customer_id: "c-9".into(),
            session_id: Some("s-9".into()),
            customer_since: None,
            items: vec![
                OrderItem { sku: "sku-1".into(), product_id: "p-1".into(), vendor_id: "v-1".into(), quantity: 2, unit_price_minor: 999 },
                OrderItem { sku: "sku-2".into(), product_id: "p-2".into(), vendor_id: "v-2".into(), quantity: 1, unit_price_minor: 600 },
            ],
            currency: "EUR".into(),
            shipping_address: addr("DE"),
            billing_address: addr("FR"),
            shipping_minor: 499,
            tax_minor: 0,
            discount_minor: 0,
            payment_method_token: "tok_secret".into(),
            client_ip: "10.0.0.9".into(),
        }),
        status(order, START + 10, "reserved", "pending", "unfulfilled"),
        Event::PaymentAuthorized(PaymentAuthorized {
            event_id: format!("pa-{order}"),
            occurred_at: Timestamp(START + 20),
            order_id: order.into(),
            payment_id: "pay-1".into(),
            amount_minor: 3_097,
            currency: "EUR".into(),
            provider: "stripe".into(),
        }),
        status(order, START + 21, "payment_authorized", "authorized", "unfulfilled"),
        Event::PaymentCaptured(PaymentCaptured {
            event_id: format!("pc-{order}"),
            occurred_at: Timestamp(START + 30),
            order_id: order.into(),
            payment_id: "pay-1".into(),
            amount_minor: 3_097,
            currency: "EUR".into(),
        }),
        status(order, START + 31, "confirmed", "captured", "unfulfilled"),
    ]
}

fn an_order_reads_back_with_items_states_totals_payments_and_history(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let mut sink = ReadModelSink::open(&b.config(), dir.path()).await.expect("open");
        sink.write(&items(&an_order("o-1"))).await.expect("write");
        let rm = ReadModel::new(sink.db().clone(), tokio::runtime::Handle::current());
        let o = rm.order("o-1").await.expect("read").expect("the order exists");
        assert_eq!((o.status.as_str(), o.payment_status.as_str(), o.fulfillment_status.as_str()), ("confirmed", "captured", "unfulfilled"));
        assert_eq!((o.subtotal_minor, o.total_minor, o.units), (Some(2_598), Some(3_097), Some(3)));
        assert_eq!(o.items.len(), 2);
        assert_eq!((o.items[0].sku.as_str(), o.items[0].quantity), ("sku-1", 2));
        assert_eq!(o.payments.len(), 1);
        assert_eq!((o.payments[0].status.as_str(), o.payments[0].captured_minor), ("captured", Some(3_097)));
        let h = rm.order_history("o-1").await.expect("history");
        let types: Vec<&str> = h.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(
            types,
            ["OrderPlaced", "OrderStatusChanged", "PaymentAuthorized", "OrderStatusChanged", "PaymentCaptured", "OrderStatusChanged"]
        );
        // The history keeps no card token, IP or street address.
        let placed = h[0].payload.to_string();
        assert!(!placed.contains("tok_secret") && !placed.contains("10.0.0.9") && !placed.contains("1 Way"), "{placed}");
        assert!(rm.order("nope").await.expect("read").is_none());
    });
}

fn a_stale_status_or_price_never_overwrites_a_newer_one(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let price = |at: i64, p: i64, id: &str| {
        Event::PriceChanged(PriceChanged {
            event_id: id.into(),
            occurred_at: Timestamp(at),
            product_id: "p-1".into(),
            vendor_id: "v-1".into(),
            sku: "sku-1".into(),
            old_price_minor: None,
            price_minor: p,
            currency: "EUR".into(),
        })
    };
    rt().block_on(async {
        let mut sink = ReadModelSink::open(&b.config(), dir.path()).await.expect("open");
        let mut evs = an_order("o-2");
        // Lifecycle events arrive late and out of order (another topic).
        evs.push(status("o-2", START + 15, "reserved", "pending", "unfulfilled"));
        evs.push(price(START + 200, 5_000, "pr-new"));
        evs.push(price(START + 100, 1_000, "pr-old"));
        sink.write(&items(&evs)).await.expect("write");
        let rm = ReadModel::new(sink.db().clone(), tokio::runtime::Handle::current());
        let o = rm.order("o-2").await.expect("read").expect("order");
        assert_eq!(o.status, "confirmed");
        let p = rm.product("p-1").await.expect("read").expect("product");
        assert_eq!(p.price_minor, Some(5_000));
    });
}

fn an_erased_customer_stays_erased_when_the_registration_is_replayed(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let reg = Event::CustomerRegistered(CustomerRegistered {
        event_id: "cr".into(),
        occurred_at: Timestamp(START),
        customer_id: "c-e".into(),
        email: "ada@example.com".into(),
        name: "Ada".into(),
        country: "DE".into(),
        marketing_opt_in: true,
    });
    let erase = Event::CustomerErased(CustomerErased { event_id: "ce".into(), occurred_at: Timestamp(START + 5), customer_id: "c-e".into(), reason: Some("gdpr".into()) });
    rt().block_on(async {
        let mut sink = ReadModelSink::open(&b.config(), dir.path()).await.expect("open");
        let its = items(&[reg, erase]);
        sink.write(&its).await.expect("write");
        sink.write(&its[..1]).await.expect("replay the registration");
        let rm = ReadModel::new(sink.db().clone(), tokio::runtime::Handle::current());
        let c = rm.customer("c-e").await.expect("read").expect("customer");
        assert!(c.erased);
        assert_eq!((c.email, c.name), (None, None));
        assert_eq!(c.country.as_deref(), Some("DE"));
    });
}

fn level(sku: &str, wh: &str, at: i64, on_hand: i32, reserved: i32) -> Event {
    Event::StockLevelChanged(StockLevelChanged {
        event_id: format!("sl-{sku}-{wh}-{at}"),
        occurred_at: Timestamp(at),
        sku: sku.into(),
        warehouse_id: wh.into(),
        on_hand,
        reserved,
        available: on_hand - reserved,
        cause: "received".into(),
        version: 1,
    })
}

fn inventory_by_sku_lists_each_warehouse_and_the_totals(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let mut sink = ReadModelSink::open(&b.config(), dir.path()).await.expect("open");
        let evs = vec![
            level("sku-9", "wh-a", START, 10, 0),
            level("sku-9", "wh-b", START + 1, 5, 1),
            level("sku-9", "wh-a", START + 2, 8, 3),
            level("sku-8", "wh-a", START + 2, 1, 0),
        ];
        let its: Vec<Item> = items(&evs);
        sink.write(&its).await.expect("write");
        let rm = ReadModel::new(sink.db().clone(), tokio::runtime::Handle::current());
        let inv = rm.inventory("sku-9").await.expect("read").expect("inventory");
        assert_eq!((inv.on_hand, inv.reserved, inv.available), (13, 4, 9));
        assert_eq!(inv.warehouses.len(), 2);
        assert_eq!((inv.warehouses[0].warehouse_id.as_str(), inv.warehouses[0].on_hand), ("wh-a", 8));
        assert!(rm.inventory("sku-none").await.expect("read").is_none());
    });
}
