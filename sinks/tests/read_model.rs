//! The read model against the real Postgres and its SQLite twin: every test runs on both
//! (`postgres::…` skips loudly without `STOREFLOW_TEST_POSTGRES`, and fails under CI).

mod common;

use std::path::Path;

use prometheus_client::registry::Registry;
use storeflow_avro::*;
use storeflow_sinks::read_model::ReadModelConfig;
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
        *c.sink_mut::<ReadModelSink>() = self.config();
        c.sink_mut::<ReadModelSink>().max_wait_ms = 50;
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
    forty_racing_reservations_for_five_units_leave_none_available_whatever_the_event_times,
    forty_receipts_of_one_unit_leave_forty_on_hand_whatever_the_event_times,
    the_read_model_equals_the_last_snapshot_per_entity_whatever_the_event_times,
    a_shipment_keeps_what_it_shipped_when_its_creation_is_delivered_again,
    a_vendor_takes_its_plan_changes_and_account_in_processing_order,
    a_rebuilt_read_model_equals_the_old_one_which_is_kept_aside_and_the_sink_goes_on_from_the_rebuild,
    a_vendor_sees_its_orders_with_its_lines_only_newest_first,
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

fn status(order: &str, version: i64, at: i64, s: &str, pay: &str, ful: &str) -> Event {
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
        version,
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
        status(order, 1, START + 10, "reserved", "pending", "unfulfilled"),
        Event::PaymentAuthorized(PaymentAuthorized {
            event_id: format!("pa-{order}"),
            occurred_at: Timestamp(START + 20),
            order_id: order.into(),
            payment_id: "pay-1".into(),
            amount_minor: 3_097,
            currency: "EUR".into(),
            provider: "stripe".into(),
            card_brand: Some("visa".into()),
            card_last4: Some("4242".into()),
        }),
        status(order, 2, START + 21, "payment_authorized", "authorized", "unfulfilled"),
        Event::PaymentCaptured(PaymentCaptured {
            event_id: format!("pc-{order}"),
            occurred_at: Timestamp(START + 30),
            order_id: order.into(),
            payment_id: "pay-1".into(),
            amount_minor: 3_097,
            currency: "EUR".into(),
        }),
        status(order, 3, START + 31, "confirmed", "captured", "unfulfilled"),
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
        // The history keeps no card token, IP or street address in the clear.
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
    // Was: the newest event time won (a status stamped START + 15 lost to START + 31, a price
    // stamped START + 100 to START + 200). Now stale means a lower version (snapshots) or an
    // earlier place in the partition (source topics), whatever the event times say.
    rt().block_on(async {
        let mut sink = ReadModelSink::open(&b.config(), dir.path()).await.expect("open");
        let mut evs = an_order("o-2");
        // A status of version 1 arrives late, stamped later than every other one.
        evs.push(status("o-2", 1, START + 900, "reserved", "pending", "unfulfilled"));
        // Prices in partition order; the newer one carries the older event time.
        evs.push(price(START + 200, 1_000, "pr-old"));
        evs.push(price(START + 100, 5_000, "pr-new"));
        let its = items(&evs);
        sink.write(&its).await.expect("write");
        // The older price record delivered again, alone (a stale batch).
        let old_price = its.iter().find(|i| i.event.event_id() == "pr-old").cloned().expect("pr-old");
        sink.write(&[old_price]).await.expect("stale batch");
        let rm = ReadModel::new(sink.db().clone(), tokio::runtime::Handle::current());
        let o = rm.order("o-2").await.expect("read").expect("order");
        assert_eq!(o.status, "confirmed");
        assert_eq!(o.status_at, Some(START + 31), "event time stays data");
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

fn inventory_by_sku_lists_each_warehouse_and_the_totals(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let mut sink = ReadModelSink::open(&b.config(), dir.path()).await.expect("open");
        let evs = vec![
            level("sku-9", "wh-a", 1, START, 10, 0, "received"),
            level("sku-9", "wh-b", 1, START + 1, 5, 1, "received"),
            level("sku-9", "wh-a", 2, START + 2, 8, 3, "reserved"),
            level("sku-8", "wh-a", 1, START + 2, 1, 0, "received"),
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

fn forty_racing_reservations_for_five_units_leave_none_available_whatever_the_event_times(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let events = racing_reservations("sku-race", "wh-a", "p-race", 5, 40);
    let stale = newest_by_event_time(&events).expect("levels");
    assert_eq!((stale.reserved, stale.version), (3, 4), "the fixture races: event time would keep reserved 3 of 5");
    let its = items(&events);
    rt().block_on(async {
        let mut sink = ReadModelSink::open(&b.config(), dir.path()).await.expect("open");
        for chunk in its.chunks(7) {
            sink.write(chunk).await.expect("write");
        }
        // An earlier batch delivered again after the later ones (a crash, a zombie instance).
        sink.write(its.chunks(7).nth(2).expect("a third batch")).await.expect("stale batch");
        let rm = ReadModel::new(sink.db().clone(), tokio::runtime::Handle::current());
        let inv = rm.inventory("sku-race").await.expect("read").expect("inventory");
        assert_eq!((inv.on_hand, inv.reserved, inv.available), (5, 5, 0), "{inv:?}");
        assert_eq!(inv.warehouses[0].cause, "reserved");
        let (mut held, mut rejected) = (0, 0);
        for k in 0..40 {
            let o = rm.order(&format!("sku-race-o{k}")).await.expect("read").expect("order");
            match (o.status.as_str(), o.reservations.as_slice()) {
                ("reserved", [r]) if r.status == "held" && r.warehouse_id == "wh-a" => held += 1,
                ("cancelled", [r]) if r.status == "rejected" => rejected += 1,
                other => panic!("order {k}: {other:?}"),
            }
        }
        assert_eq!((held, rejected), (5, 35));
    });
}

fn forty_receipts_of_one_unit_leave_forty_on_hand_whatever_the_event_times(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let events = receipts("sku-recv", "wh-b", 40);
    let stale = newest_by_event_time(&events).expect("levels");
    assert!(stale.on_hand < 40, "the fixture's clocks disagree: event time would keep {} on hand", stale.on_hand);
    let its = items(&events);
    rt().block_on(async {
        let mut sink = ReadModelSink::open(&b.config(), dir.path()).await.expect("open");
        // One batch (Postgres updates the row once per round), then again in small ones.
        sink.write(&its).await.expect("write");
        for chunk in its.chunks(3) {
            sink.write(chunk).await.expect("again");
        }
        let rm = ReadModel::new(sink.db().clone(), tokio::runtime::Handle::current());
        let inv = rm.inventory("sku-recv").await.expect("read").expect("inventory");
        assert_eq!((inv.on_hand, inv.reserved, inv.available), (40, 0, 40), "{inv:?}");
        // Event time stays data: the row says when its level was stamped.
        let last = match events.last() {
            Some(Event::StockLevelChanged(s)) => s.occurred_at.millis(),
            _ => unreachable!("receipts are levels"),
        };
        assert_eq!(inv.warehouses[0].updated_at, last);
    });
}

/// One change the processors (or the catalogue) make, in processing order.
#[derive(Clone, Debug)]
enum Change {
    /// A StockLevelChanged of sku `sku` in warehouse `wh`.
    Stock { sku: usize, wh: usize, on_hand: i32, reserved: i32 },
    /// An OrderStatusChanged of order `order` to `STATES[state]`.
    Status { order: usize, state: usize },
    /// A PriceChanged of product `product`.
    Price { product: usize, price: i64, currency: usize },
}

const STATES: [(&str, &str, &str); 6] = [
    ("placed", "pending", "unfulfilled"),
    ("reserved", "pending", "unfulfilled"),
    ("payment_authorized", "authorized", "unfulfilled"),
    ("confirmed", "captured", "unfulfilled"),
    ("shipped", "captured", "shipped"),
    ("cancelled", "refunded", "unfulfilled"),
];
const CURRENCIES: [&str; 3] = ["EUR", "USD", "JPY"];
const WAREHOUSES: [&str; 2] = ["wh-a", "wh-b"];

fn change() -> impl proptest::strategy::Strategy<Value = Change> {
    use proptest::prelude::*;
    prop_oneof![
        (0..2usize, 0..2usize, 0..50i32, 0..50i32).prop_map(|(sku, wh, on_hand, r)| Change::Stock { sku, wh, on_hand, reserved: r.min(on_hand) }),
        (0..3usize, 0..STATES.len()).prop_map(|(order, state)| Change::Status { order, state }),
        (0..3usize, 0..100_000i64, 0..CURRENCIES.len()).prop_map(|(product, price, currency)| Change::Price { product, price, currency }),
    ]
}

/// How the changes reach the sink: batches in log order, each starting up to `back` records
/// before where the last one ended (a redelivery after a crash, other batch edges) and
/// reaching `ahead` records further; after some, an earlier stretch again on its own (a
/// stale batch from an instance that lost its partitions).
#[derive(Clone, Debug)]
struct Delivery {
    ahead: usize,
    back: usize,
    stale: Option<(usize, usize)>,
}

fn delivery() -> impl proptest::strategy::Strategy<Value = Delivery> {
    use proptest::prelude::*;
    (1..12usize, 0..6usize, proptest::option::weighted(0.3, (1..30usize, 1..10usize))).prop_map(|(ahead, back, stale)| Delivery { ahead, back, stale })
}

/// The reference: what the processors' state ends as, per entity — the last change.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    stock: std::collections::BTreeMap<(String, String), (i64, i64, i64)>,
    status: std::collections::BTreeMap<String, (String, String, String)>,
    price: std::collections::BTreeMap<String, (i64, String)>,
}

/// Events (processing order, versions counting per entity, arbitrary event times) and the
/// state they end in, for case `case` (its own ids, so cases share one database).
fn snapshots(case: usize, changes: &[(Change, i64)]) -> (Vec<Event>, Expected) {
    let mut versions: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    let mut next = |key: String| {
        let v = versions.entry(key).or_default();
        *v += 1;
        *v
    };
    let mut want = Expected::default();
    let mut out = Vec::new();
    for (n, (c, at)) in changes.iter().enumerate() {
        match c {
            Change::Stock { sku, wh, on_hand, reserved } => {
                let (sku, wh) = (format!("c{case}-sku-{sku}"), WAREHOUSES[*wh].to_string());
                let v = next(format!("{sku}/{wh}"));
                out.push(level(&sku, &wh, v, *at, *on_hand, *reserved, "adjusted"));
                want.stock.insert((sku, wh), (i64::from(*on_hand), i64::from(*reserved), i64::from(on_hand - reserved)));
            }
            Change::Status { order, state } => {
                let order = format!("c{case}-o-{order}");
                let v = next(order.clone());
                let (st, pay, ful) = STATES[*state];
                out.push(Event::OrderStatusChanged(OrderStatusChanged {
                    event_id: format!("st-{order}-{v}"),
                    occurred_at: Timestamp(*at),
                    order_id: order.clone(),
                    customer_id: "c-prop".into(),
                    previous_status: None,
                    status: st.into(),
                    payment_status: pay.into(),
                    fulfillment_status: ful.into(),
                    reason: format!("change {n}"),
                    total_minor: 100,
                    currency: "EUR".into(),
                    version: v,
                }));
                want.status.insert(order, (st.into(), pay.into(), ful.into()));
            }
            Change::Price { product, price, currency } => {
                let product = format!("c{case}-p-{product}");
                out.push(Event::PriceChanged(PriceChanged {
                    event_id: format!("pr-{product}-{n}"),
                    occurred_at: Timestamp(*at),
                    product_id: product.clone(),
                    vendor_id: "v-prop".into(),
                    sku: format!("{product}-sku"),
                    old_price_minor: None,
                    price_minor: *price,
                    currency: CURRENCIES[*currency].into(),
                }));
                want.price.insert(product, (*price, CURRENCIES[*currency].into()));
            }
        }
    }
    (out, want)
}

async fn read_back(rm: &ReadModel, want: &Expected) -> Expected {
    let mut got = Expected::default();
    for (sku, wh) in want.stock.keys() {
        let inv = rm.inventory(sku).await.expect("read inventory").expect("inventory");
        if let Some(w) = inv.warehouses.iter().find(|w| w.warehouse_id == *wh) {
            got.stock.insert((sku.clone(), wh.clone()), (w.on_hand, w.reserved, w.available));
        }
    }
    for order in want.status.keys() {
        let o = rm.order(order).await.expect("read order").expect("order");
        got.status.insert(order.clone(), (o.status, o.payment_status, o.fulfillment_status));
    }
    for product in want.price.keys() {
        let p = rm.product(product).await.expect("read product").expect("product");
        got.price.insert(product.clone(), (p.price_minor.unwrap_or(-1), p.currency.unwrap_or_default()));
    }
    got
}

fn the_read_model_equals_the_last_snapshot_per_entity_whatever_the_event_times(b: Backend) {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let case = std::cell::Cell::new(0usize);
    let mut runner = TestRunner::new(Config { cases: 48, failure_persistence: None, ..Config::default() });
    // Event times anywhere in ±1 day around START, independent of processing order.
    let strategy = (
        prop::collection::vec((change(), (START - 86_400_000)..(START + 86_400_000)), 1..80),
        prop::collection::vec(delivery(), 1..20),
    );
    let result = runner.run(&strategy, |(changes, plan)| {
        case.set(case.get() + 1);
        let (events, want) = snapshots(case.get(), &changes);
        let its = items(&events);
        rt.block_on(async {
            let mut sink = ReadModelSink::open(&b.config(), dir.path()).await.expect("open");
            let mut done = 0;
            for d in plan.iter().cycle().take(plan.len().max(its.len())) {
                if done >= its.len() {
                    break;
                }
                let end = (done + d.ahead).min(its.len());
                sink.write(&its[done.saturating_sub(d.back)..end]).await.expect("batch");
                done = end;
                if let Some((back, len)) = d.stale {
                    let from = done.saturating_sub(back);
                    sink.write(&its[from..(from + len).min(done)]).await.expect("stale batch");
                }
            }
            sink.write(&its[done..]).await.expect("the rest");
            let rm = ReadModel::new(sink.db().clone(), tokio::runtime::Handle::current());
            let got = read_back(&rm, &want).await;
            prop_assert_eq!(got, want);
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

fn a_shipment_keeps_what_it_shipped_when_its_creation_is_delivered_again(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let line = |sku: &str, quantity: i32| SkuQuantity { sku: sku.into(), quantity };
    let mut evs = an_order("o-ship");
    // Created for one warehouse, shipped from another with one line less; the shipment is
    // stamped earlier than its creation (another clock).
    evs.push(Event::ShipmentCreated(ShipmentCreated {
        event_id: "sc".into(),
        occurred_at: Timestamp(START + 500),
        order_id: "o-ship".into(),
        shipment_id: "sh-1".into(),
        warehouse_id: "wh-a".into(),
        carrier: "dhl".into(),
        lines: vec![line("sku-1", 2), line("sku-2", 1)],
    }));
    evs.push(Event::ShipmentShipped(ShipmentShipped {
        event_id: "ss".into(),
        occurred_at: Timestamp(START + 400),
        order_id: "o-ship".into(),
        shipment_id: "sh-1".into(),
        warehouse_id: "wh-b".into(),
        tracking_number: "trk-1".into(),
        lines: vec![line("sku-1", 2)],
    }));
    let its = items(&evs);
    rt().block_on(async {
        let mut sink = ReadModelSink::open(&b.config(), dir.path()).await.expect("open");
        sink.write(&its).await.expect("write");
        let created = its.iter().find(|i| i.event.event_id() == "sc").cloned().expect("created");
        sink.write(&[created]).await.expect("the creation again");
        let rm = ReadModel::new(sink.db().clone(), tokio::runtime::Handle::current());
        let o = rm.order("o-ship").await.expect("read").expect("order");
        let sh = &o.shipments[0];
        assert_eq!((sh.status.as_str(), sh.warehouse_id.as_deref(), sh.carrier.as_deref(), sh.tracking_number.as_deref()), ("shipped", Some("wh-b"), Some("dhl"), Some("trk-1")));
        assert_eq!(sh.lines, Some(serde_json::json!([{"sku": "sku-1", "quantity": 2}])));
    });
}

fn a_vendor_takes_its_plan_changes_and_account_in_processing_order(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let onboarded = Event::VendorOnboarded(VendorOnboarded {
        event_id: "vo-1".into(),
        occurred_at: Timestamp(START),
        vendor_id: "v-9".into(),
        name: "Nine".into(),
        country: "DE".into(),
        plan: "basic".into(),
        payout_currency: "EUR".into(),
        stripe_account_id: None,
    });
    let plan = |id: &str, plan: &str, effective: i64| {
        Event::VendorPlanChanged(VendorPlanChanged {
            event_id: id.into(),
            occurred_at: Timestamp(START + 10),
            vendor_id: "v-9".into(),
            plan: plan.into(),
            subscription_id: Some("sub_9".into()),
            status: "active".into(),
            effective_at: Timestamp(effective),
        })
    };
    let account = Event::VendorAccountUpdated(VendorAccountUpdated {
        event_id: "va-1".into(),
        occurred_at: Timestamp(START + 20),
        vendor_id: "v-9".into(),
        account_id: "acct_9".into(),
        charges_enabled: true,
        payouts_enabled: true,
        details_submitted: true,
    });
    rt().block_on(async {
        let mut sink = ReadModelSink::open(&b.config(), dir.path()).await.expect("open");
        // One batch: onboarded, then pro, then enterprise stamped with an *earlier* effective
        // time (event time is data: the later record wins), then the account.
        let its = items(&[onboarded, plan("vp-1", "pro", START + 500), plan("vp-2", "enterprise", START + 100), account]);
        sink.write(&its).await.expect("write");
        // The pro change delivered again, alone: it is older than what the row holds.
        sink.write(&[its[1].clone()]).await.expect("stale batch");
        let rm = ReadModel::new(sink.db().clone(), tokio::runtime::Handle::current());
        let v = rm.vendor("v-9").await.expect("read").expect("vendor");
        assert_eq!(v.plan, "enterprise");
        let (acct,) = match sink.db() {
            storeflow_sinks::read_model::Db::Postgres(p) => sqlx::query_as::<_, (Option<String>,)>("SELECT stripe_account_id FROM vendors WHERE vendor_id = 'v-9'").fetch_one(p).await.unwrap(),
            storeflow_sinks::read_model::Db::Sqlite(p) => sqlx::query_as::<_, (Option<String>,)>("SELECT stripe_account_id FROM vendors WHERE vendor_id = 'v-9'").fetch_one(p).await.unwrap(),
        };
        assert_eq!(acct.as_deref(), Some("acct_9"));
        // A plan change of a vendor the read model never saw writes nothing.
        sink.write(&items(&[Event::VendorPlanChanged(VendorPlanChanged { vendor_id: "v-unknown".into(), ..match plan("vp-3", "pro", START) { Event::VendorPlanChanged(p) => p, _ => unreachable!() } })])).await.expect("write");
        assert!(rm.vendor("v-unknown").await.expect("read").is_none());
        // The payment → order lookup the dispute webhook uses.
        sink.write(&items(&an_order("o-9"))).await.expect("write");
        assert_eq!(rm.order_of_payment("pay-1").await.expect("read").as_deref(), Some("o-9"));
        assert_eq!(rm.order_of_payment("pi_nobody").await.expect("read"), None);
    });
}

/// Every row of every table of the read model (but the migrations' bookkeeping), as sorted
/// JSON lines per table: the SQLite twin through [`storeflow_sinks::snapshot`], Postgres
/// through `row_to_json`.
fn dump(b: &Backend, dir: &Path) -> std::collections::BTreeMap<String, Vec<String>> {
    match b {
        Backend::Sqlite => rt()
            .block_on(storeflow_sinks::snapshot::embedded(&dir.join("sinks")))
            .unwrap()
            .into_iter()
            .filter(|(t, _)| t.starts_with("read_model.") && t != "read_model._sqlx_migrations")
            .collect(),
        Backend::Postgres(url) => rt().block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            let tables: Vec<String> =
                sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' AND tablename <> '_sqlx_migrations'").fetch_all(&mut c).await.unwrap();
            let mut out = std::collections::BTreeMap::new();
            for t in tables {
                let sql = format!("SELECT row_to_json(t)::jsonb::text FROM \"{t}\" t");
                let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_all(&mut c).await.unwrap();
                let mut rows: Vec<String> = rows.iter().map(|r| storeflow_sinks::snapshot::canonical(&serde_json::from_str(r).unwrap())).collect();
                rows.sort();
                out.insert(format!("read_model.{t}"), rows);
            }
            out
        }),
    }
}

fn a_rebuilt_read_model_equals_the_old_one_which_is_kept_aside_and_the_sink_goes_on_from_the_rebuild(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let log = log(&dir.path().join("log"));
    let codec = codec();
    let events = sim(5_000, 17);
    let (first, second) = events.split_at(3_000);
    publish(log.as_ref(), &codec, first);
    let sinks = Sinks::start(log.clone(), codec.clone(), b.sinks(dir.path()), &mut Registry::default()).expect("start");
    sinks.wait_caught_up(PATIENCE).expect("caught up");
    sinks.stop().expect("stop");
    let before = dump(&b, dir.path());
    assert!(before["read_model.orders"].len() > 20, "{:?}", before.keys());

    let progress = std::sync::Mutex::new(Vec::new());
    let r = storeflow_sinks::rebuild::rebuild(log.clone(), codec.clone(), &b.sinks(dir.path()), "read_model", &|done, total| progress.lock().unwrap().push((done, total)))
        .expect("rebuild");
    let progress = progress.into_inner().unwrap();
    assert!(progress.last().is_some_and(|(done, total)| done == total && *total > 0), "{progress:?}");
    assert_eq!(r.counts.dead_lettered, 0);
    assert!(r.counts.written > 0);
    let after = dump(&b, dir.path());
    let diff = storeflow_sinks::snapshot::differences(&before, &after);
    assert!(diff.is_empty(), "the rebuilt read model differs:\n{}", diff.join("\n"));

    // The old store is kept aside, whole.
    match &b {
        Backend::Sqlite => {
            let kept = std::path::PathBuf::from(&r.replaced);
            assert!(kept.join("read_model.sqlite").exists(), "{}", r.replaced);
        }
        Backend::Postgres(url) => {
            let old = r.replaced.strip_prefix("database ").expect("a database");
            let (prefix, _) = url.rsplit_once('/').unwrap();
            let old_url = format!("{prefix}/{old}");
            assert_eq!(dump(&Backend::Postgres(old_url), dir.path()), before, "the replaced database is not the old store");
            let base = std::env::var("STOREFLOW_TEST_POSTGRES").unwrap();
            rt().block_on(async {
                use sqlx::Connection;
                let mut c = sqlx::PgConnection::connect(&base).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE \"{old}\" WITH (FORCE)"))).execute(&mut c).await.unwrap();
            });
        }
    }

    // The sink goes on from where the rebuild got to: nothing lost, nothing twice.
    publish(log.as_ref(), &codec, second);
    let sinks = Sinks::start(log.clone(), codec, b.sinks(dir.path()), &mut Registry::default()).expect("restart");
    sinks.wait_caught_up(PATIENCE).expect("drained");
    let written = sinks.counts()["read_model"].written;
    assert!(written <= second.len() as u64, "after the rebuild the sink wrote {written} records for {} new events", second.len());
    let counts = rt().block_on(sinks.read_model().expect("read model").counts()).expect("counts");
    for (table, want) in expected(&events) {
        assert_eq!(counts[table], want, "{table}");
    }
    sinks.stop().expect("stop");
}

fn a_vendor_sees_its_orders_with_its_lines_only_newest_first(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let mut sink = ReadModelSink::open(&b.config(), dir.path()).await.expect("open");
        let mut events = an_order("o-1");
        let mut later = an_order("o-2");
        for e in &mut later {
            // o-2 is placed a minute after o-1, with its own event ids.
            if let Event::OrderPlaced(o) = e {
                o.occurred_at = Timestamp(START + 60_000);
                o.event_id = "op-o-2".into();
            }
        }
        events.extend(later);
        sink.write(&items(&events)).await.expect("write");
        let rm = ReadModel::new(sink.db().clone(), tokio::runtime::Handle::current());
        let v1 = rm.vendor_orders("v-1", 10).await.expect("read");
        let got: Vec<(&str, Option<i64>, &str, i64, i64)> = v1.iter().map(|o| (o.order_id.as_str(), o.placed_at, o.status.as_str(), o.units, o.lines_minor)).collect();
        // v-1's line only (2 × 9.99), not the order's total.
        assert_eq!(got, [("o-2", Some(START + 60_000), "confirmed", 2, 1_998), ("o-1", Some(START), "confirmed", 2, 1_998)]);
        let v2 = rm.vendor_orders("v-2", 1).await.expect("read");
        assert_eq!(v2.iter().map(|o| (o.order_id.as_str(), o.lines_minor)).collect::<Vec<_>>(), [("o-2", 600)]);
        assert!(rm.vendor_orders("v-none", 10).await.expect("read").is_empty());
        assert!(rm.vendor_orders("v-1' OR '1'='1", 10).await.expect("read").is_empty(), "ids are parameters");
    });
}
