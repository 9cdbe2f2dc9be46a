//! Product search against the real Elasticsearch and its tantivy twin: every test runs on
//! both (`elasticsearch::…` skips loudly without `STOREFLOW_TEST_ELASTICSEARCH`, and fails
//! under CI). Filters and facets are compared with a brute-force count over the fixture.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use prometheus_client::registry::Registry;
use storeflow_avro::*;
use storeflow_sinks::search::{ElasticsearchConfig, SearchConfig};
use storeflow_sinks::runner::{Item, Sink};
use storeflow_sinks::search::{FacetCount, Facets, PRICE_BUCKETS, RATING_BUCKETS, Search, SearchSink};
use storeflow_sinks::{SearchQuery, SinksConfig, SortBy};

use common::*;

#[derive(Clone)]
enum Backend {
    Elasticsearch(ElasticsearchConfig),
    Tantivy,
}

impl Backend {
    fn config(&self) -> SearchConfig {
        match self {
            Backend::Elasticsearch(c) => SearchConfig { elasticsearch: Some(c.clone()), ..SearchConfig::default() },
            Backend::Tantivy => SearchConfig::default(),
        }
    }

    fn sinks(&self, dir: &Path) -> SinksConfig {
        let mut c = SinksConfig::embedded(dir.join("sinks")).only(&["search"]);
        *c.sink_mut::<SearchSink>() = self.config();
        c.sink_mut::<SearchSink>().max_wait_ms = 100;
        c
    }
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod elasticsearch {
            $(#[test] fn $name() { super::init(); if let Some((c, _cleanup)) = super::elasticsearch() { super::$name(super::Backend::Elasticsearch(c)); } })*
        }
        mod tantivy {
            $(#[test] fn $name() { super::init(); super::$name(super::Backend::Tantivy); })*
        }
    };
}

on_both!(
    a_typo_query_finds_the_product,
    filters_and_facets_match_a_brute_force_count_over_the_fixture,
    a_stale_price_update_does_not_overwrite_a_newer_one,
    a_batch_written_twice_leaves_one_copy,
    a_record_the_index_rejects_goes_to_the_dlq_and_the_stream_continues,
    stopped_sinks_restart_and_drain_the_backlog_without_loss_or_doubles,
    results_sort_paginate_and_highlight,
    forty_racing_reservations_leave_the_product_out_of_stock_whatever_the_event_times,
    forty_receipts_of_one_unit_leave_forty_available_whatever_the_event_times,
    a_rebuilt_index_equals_the_old_one_which_is_kept_aside_and_the_sink_goes_on_from_the_rebuild,
);

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("runtime")
}

/// One fixture product and what search should know about it.
#[derive(Clone, Debug)]
struct P {
    id: String,
    vendor: String,
    category: String,
    brand: String,
    title: String,
    price_eur: i64,
    /// The price as listed (one product is listed in USD).
    listed: (i64, &'static str),
    ratings: Vec<i32>,
    stock: Vec<(String, i32)>,
}

impl P {
    fn rating(&self) -> Option<f64> {
        (!self.ratings.is_empty()).then(|| self.ratings.iter().map(|r| f64::from(*r)).sum::<f64>() / self.ratings.len() as f64)
    }
    fn in_stock(&self) -> bool {
        self.stock.iter().map(|(_, a)| a.max(&0)).sum::<i32>() > 0
    }
}

const BRANDS: [&str; 6] = ["Acme", "Kestrel", "Bluefin", "Oakwood", "Sora", "Halcyon"];
const CATEGORIES: [&str; 5] = ["electronics/audio/headphones", "electronics/audio/speakers", "home/kitchen/coffee", "home/lighting/lamps", "sports/fitness/yoga"];
const NOUNS: [&str; 6] = ["Classic", "Trail", "Urban", "Core", "Edge", "Flex"];

fn fixture() -> Vec<P> {
    let mut ps: Vec<P> = (0..120)
        .map(|i| {
            let category = CATEGORIES[i % 5].to_string();
            let last = category.rsplit('/').next().unwrap_or("thing").to_string();
            let brand = BRANDS[(i * 7) % 6].to_string();
            let price = 500 + (i as i64 * 3_779) % 40_000;
            // One product is listed in USD; search keeps its EUR price from the rate.
            let listed = if i == 3 { (price * 108 / 100, "USD") } else { (price, "EUR") };
            let mut rates = storeflow_sinks::money::Rates::new("EUR");
            rates.record("EUR", "USD", 0, 1_080_000_000);
            P {
                id: format!("p-{i:03}"),
                vendor: format!("v-{}", i % 4),
                title: format!("{brand} {} {last}", NOUNS[(i * 5) % 6]),
                category,
                brand,
                price_eur: rates.to_base(listed.0, listed.1, START).unwrap_or(0),
                listed,
                ratings: (0..(i % 4)).map(|k| ((i + k * 3) % 5) as i32 + 1).collect(),
                stock: vec![("wh-a".into(), (i % 3) as i32 * 2), ("wh-b".into(), if i % 7 == 0 { 3 } else { 0 })],
            }
        })
        .collect();
    ps.push(P {
        id: "p-nord".into(),
        vendor: "v-9".into(),
        category: "electronics/audio/headphones".into(),
        brand: "Nordlicht".into(),
        title: "Nordlicht Studio Headphones".into(),
        price_eur: 19_900,
        listed: (19_900, "EUR"),
        ratings: vec![5, 4],
        stock: vec![("wh-a".into(), 4)],
    });
    ps
}

fn events(ps: &[P]) -> Vec<Event> {
    let mut out = vec![Event::ExchangeRateUpdated(ExchangeRateUpdated {
        event_id: "rate".into(),
        occurred_at: Timestamp(START - 1_000),
        base_currency: "EUR".into(),
        quote_currency: "USD".into(),
        rate_e9: 1_080_000_000,
    })];
    for (n, p) in ps.iter().enumerate() {
        let at = START + n as i64;
        let mut translations = std::collections::BTreeMap::new();
        if p.id == "p-nord" {
            translations.insert("de".into(), Translation { title: "Nordlicht Studio Kopfhörer".into(), description: "Geschlossener Studiokopfhörer".into() });
        }
        let (price, currency) = p.listed;
        out.push(Event::ProductCreated(ProductCreated {
            event_id: format!("pc-{}", p.id),
            occurred_at: Timestamp(at),
            product_id: p.id.clone(),
            vendor_id: p.vendor.clone(),
            sku: format!("sku-{}", p.id),
            title: p.title.clone(),
            description: format!("A {} by {} for everyday use; closed-back studio monitor quality.", p.title.to_lowercase(), p.brand),
            translations,
            category: p.category.clone(),
            brand: p.brand.clone(),
            price_minor: price,
            currency: currency.into(),
        }));
    }
    for (n, p) in ps.iter().enumerate() {
        for (k, r) in p.ratings.iter().enumerate() {
            out.push(Event::ReviewSubmitted(ReviewSubmitted {
                event_id: format!("rv-{}-{k}", p.id),
                occurred_at: Timestamp(START + 10_000 + n as i64),
                review_id: format!("r-{}-{k}", p.id),
                product_id: p.id.clone(),
                vendor_id: p.vendor.clone(),
                customer_id: "c-1".into(),
                rating: *r,
                title: None,
                body: None,
            }));
        }
        for (w, a) in &p.stock {
            out.push(Event::StockLevelChanged(StockLevelChanged {
                event_id: format!("sl-{}-{w}", p.id),
                occurred_at: Timestamp(START + 20_000 + n as i64),
                sku: format!("sku-{}", p.id),
                warehouse_id: w.clone(),
                on_hand: *a,
                reserved: 0,
                available: *a,
                cause: "received".into(),
                version: 1,
            }));
        }
    }
    out
}

/// Opens a sink, writes the fixture, and returns the query handle.
async fn loaded(b: &Backend, dir: &Path, ps: &[P]) -> (SearchSink, Search) {
    let mut sink = SearchSink::open(&b.config(), "EUR", dir).await.expect("open");
    for chunk in items(&events(ps)).chunks(150) {
        sink.write(chunk).await.expect("write");
    }
    let s = Search::new(sink.index().clone(), tokio::runtime::Handle::current());
    s.refresh().await.expect("refresh");
    (sink, s)
}

fn a_typo_query_finds_the_product(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let ps = fixture();
    rt().block_on(async {
        let (_sink, s) = loaded(&b, dir.path(), &ps).await;
        for q in ["nordlciht headphnes", "Nordlicht", "nordlict studio", "kopfhorer"] {
            let r = s.search(&SearchQuery::text(q)).await.expect("search");
            assert_eq!(r.hits.first().map(|h| h.product_id.as_str()), Some("p-nord"), "{q}: {:?}", r.hits.iter().map(|h| &h.title).collect::<Vec<_>>());
        }
        let none = s.search(&SearchQuery::text("zzzqqq")).await.expect("search");
        assert_eq!(none.total, 0);
    });
}

fn matches(p: &P, q: &SearchQuery) -> bool {
    q.category.as_ref().is_none_or(|c| p.category == *c || p.category.starts_with(&format!("{c}/")))
        && (q.brands.is_empty() || q.brands.contains(&p.brand))
        && q.vendor_id.as_ref().is_none_or(|v| p.vendor == *v)
        && q.min_price_eur_minor.is_none_or(|m| p.price_eur >= m)
        && q.max_price_eur_minor.is_none_or(|m| p.price_eur <= m)
        && q.min_rating.is_none_or(|m| p.rating().is_some_and(|r| r >= m))
        && (!q.in_stock || p.in_stock())
}

fn counts<'a>(vals: impl Iterator<Item = String>) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for v in vals {
        *m.entry(v).or_default() += 1;
    }
    m
}

fn as_map(f: &[FacetCount]) -> BTreeMap<String, u64> {
    f.iter().filter(|c| c.count > 0).map(|c| (c.value.clone(), c.count)).collect()
}

fn brute_facets(found: &[&P]) -> Facets {
    let fc = |m: BTreeMap<String, u64>| m.into_iter().map(|(value, count)| FacetCount { value, count }).collect::<Vec<_>>();
    Facets {
        categories: fc(counts(found.iter().map(|p| p.category.clone()))),
        brands: fc(counts(found.iter().map(|p| p.brand.clone()))),
        vendors: fc(counts(found.iter().map(|p| p.vendor.clone()))),
        price: PRICE_BUCKETS
            .iter()
            .map(|(k, from, to)| FacetCount {
                value: k.to_string(),
                count: found.iter().filter(|p| from.is_none_or(|f| p.price_eur >= f) && to.is_none_or(|t| p.price_eur < t)).count() as u64,
            })
            .collect(),
        rating: RATING_BUCKETS
            .iter()
            .map(|(k, from)| FacetCount { value: k.to_string(), count: found.iter().filter(|p| p.rating().is_some_and(|r| r >= *from)).count() as u64 })
            .collect(),
        in_stock: fc(counts(found.iter().map(|p| p.in_stock().to_string()))),
    }
}

fn filters_and_facets_match_a_brute_force_count_over_the_fixture(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let ps = fixture();
    let queries = vec![
        SearchQuery::default(),
        SearchQuery { category: Some("electronics".into()), ..SearchQuery::default() },
        SearchQuery { category: Some("electronics/audio/headphones".into()), brands: vec!["Acme".into(), "Sora".into()], ..SearchQuery::default() },
        SearchQuery { min_price_eur_minor: Some(5_000), max_price_eur_minor: Some(20_000), in_stock: true, ..SearchQuery::default() },
        SearchQuery { min_rating: Some(3.5), vendor_id: Some("v-1".into()), ..SearchQuery::default() },
        SearchQuery { text: Some("headphones".into()), in_stock: true, ..SearchQuery::default() },
    ];
    rt().block_on(async {
        let (_sink, s) = loaded(&b, dir.path(), &ps).await;
        for q in queries {
            let r = s.search(&q).await.expect("search");
            let found: Vec<&P> = ps
                .iter()
                .filter(|p| matches(p, &q))
                .filter(|p| q.text.as_ref().is_none_or(|t| p.title.to_lowercase().contains(&t.to_lowercase()) || p.category.contains(&t.to_lowercase())))
                .collect();
            assert_eq!(r.total, found.len() as u64, "{q:?}");
            let want = brute_facets(&found);
            assert_eq!(as_map(&r.facets.categories), as_map(&want.categories), "categories of {q:?}");
            assert_eq!(as_map(&r.facets.brands), as_map(&want.brands), "brands of {q:?}");
            assert_eq!(as_map(&r.facets.vendors), as_map(&want.vendors), "vendors of {q:?}");
            assert_eq!(as_map(&r.facets.price), as_map(&want.price), "price of {q:?}");
            assert_eq!(as_map(&r.facets.rating), as_map(&want.rating), "rating of {q:?}");
            assert_eq!(as_map(&r.facets.in_stock), as_map(&want.in_stock), "in stock of {q:?}");
        }
    });
}

fn price(at: i64, p: i64, id: &str) -> Event {
    Event::PriceChanged(PriceChanged {
        event_id: id.into(),
        occurred_at: Timestamp(at),
        product_id: "p-nord".into(),
        vendor_id: "v-9".into(),
        sku: "sku-p-nord".into(),
        old_price_minor: None,
        price_minor: p,
        currency: "EUR".into(),
    })
}

// Was: the price stamped START + 800_000 lost to the one stamped START + 900_000 although it
// came later in the partition. Now the later record in the partition wins whatever its
// event time, and an older one — redelivered, or from a lower log position the document
// has not seen — changes nothing, also for a fresh sink that reads the document back.
fn a_stale_price_update_does_not_overwrite_a_newer_one(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let ps = fixture();
    rt().block_on(async {
        let (mut sink, s) = loaded(&b, dir.path(), &ps).await;
        // Offsets after the fixture's on the catalog partition of p-nord.
        let its = items(&[events(&ps), vec![price(START + 900_000, 9_900, "old"), price(START + 800_000, 24_900, "new")]].concat());
        let tail: Vec<Item> = its.iter().rev().take(2).rev().cloned().collect();
        sink.write(&tail[..1]).await.expect("older price");
        sink.write(&tail[1..]).await.expect("newer price, stamped earlier");
        sink.write(&tail[..1]).await.expect("older price, again");
        // A fresh sink (no cache) reads the document back and still refuses an older price:
        // delivered again, or from a lower partition it has no offset for.
        let mut again = SearchSink::open(&b.config(), "EUR", dir.path()).await.expect("reopen");
        again.write(&tail[..1]).await.expect("older price, redelivered");
        assert!(tail[0].partition > 0, "p-nord's catalog partition has one below it");
        let mut lower = tail[0].clone();
        lower.partition -= 1;
        lower.offset += 1_000;
        again.write(&[lower]).await.expect("older price, lower position");
        s.refresh().await.expect("refresh");
        let d = s.product("p-nord").await.expect("read").expect("doc");
        assert_eq!((d.price_minor, d.price_eur_minor), (Some(24_900), Some(24_900)));
        assert_eq!(d.price_at, START + 800_000, "event time stays data");
        let r = s.search(&SearchQuery { min_price_eur_minor: Some(24_000), max_price_eur_minor: Some(25_000), ..SearchQuery::default() }).await.expect("search");
        assert!(r.hits.iter().any(|h| h.product_id == "p-nord"));
        let r = s.search(&SearchQuery { max_price_eur_minor: Some(10_000), text: Some("nordlicht".into()), ..SearchQuery::default() }).await.expect("search");
        assert_eq!(r.total, 0);
    });
}

fn product(id: &str, sku: &str) -> Event {
    Event::ProductCreated(ProductCreated {
        event_id: format!("pc-{id}"),
        occurred_at: Timestamp(START - 120_000),
        product_id: id.into(),
        vendor_id: "v-race".into(),
        sku: sku.into(),
        title: format!("Racing {id}"),
        description: "Much wanted".into(),
        translations: Default::default(),
        category: "sports/fitness/yoga".into(),
        brand: "Sora".into(),
        price_minor: 1_000,
        currency: "EUR".into(),
    })
}

fn forty_racing_reservations_leave_the_product_out_of_stock_whatever_the_event_times(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let race = racing_reservations("sku-race", "wh-a", "p-race", 5, 40);
    assert_eq!(newest_by_event_time(&race).map(|s| s.available), Some(2), "the fixture races: event time would keep 2 available");
    let its = items(&[vec![product("p-race", "sku-race")], race].concat());
    rt().block_on(async {
        let mut sink = SearchSink::open(&b.config(), "EUR", dir.path()).await.expect("open");
        for chunk in its.chunks(7) {
            sink.write(chunk).await.expect("write");
        }
        sink.write(its.chunks(7).nth(2).expect("a third batch")).await.expect("stale batch");
        let s = Search::new(sink.index().clone(), tokio::runtime::Handle::current());
        s.refresh().await.expect("refresh");
        let d = s.product("p-race").await.expect("read").expect("doc");
        assert_eq!((d.available, d.in_stock, d.stock["wh-a"].on_hand), (0, false, 5), "{:?}", d.stock);
        let r = s.search(&SearchQuery { in_stock: true, text: Some("racing".into()), ..SearchQuery::default() }).await.expect("search");
        assert_eq!(r.total, 0);
    });
}

fn forty_receipts_of_one_unit_leave_forty_available_whatever_the_event_times(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let stock = receipts("sku-recv", "wh-b", 40);
    assert!(newest_by_event_time(&stock).is_some_and(|s| s.available < 40), "the fixture's clocks disagree");
    // The stock comes first: it waits in the sku's pending document, then the product's.
    let (early, late) = stock.split_at(15);
    let its = items(&[early.to_vec(), vec![product("p-recv", "sku-recv")], late.to_vec()].concat());
    rt().block_on(async {
        let mut sink = SearchSink::open(&b.config(), "EUR", dir.path()).await.expect("open");
        for chunk in its.chunks(4) {
            sink.write(chunk).await.expect("write");
        }
        let s = Search::new(sink.index().clone(), tokio::runtime::Handle::current());
        s.refresh().await.expect("refresh");
        let d = s.product("p-recv").await.expect("read").expect("doc");
        assert_eq!((d.available, d.stock["wh-b"].version), (40, 40), "{:?}", d.stock);
    });
}

/// An index created by a release before the guards: its strict mapping lacks their fields,
/// and the sink adds them when it opens the index.
#[test]
fn an_index_created_before_the_guards_gets_their_fields_and_takes_documents() {
    init();
    let Some((c, _cleanup)) = elasticsearch() else { return };
    let ps = fixture();
    rt().block_on(async {
        let mut mapping: serde_json::Value = serde_json::from_str(storeflow_sinks::search::elastic::INDEX_BODY).expect("mapping");
        let props = mapping["mappings"]["properties"].as_object_mut().expect("properties");
        for f in ["catalog_pos", "price_pos", "trending_list", "trending_version"] {
            assert!(props.remove(f).is_some(), "{f} is mapped");
        }
        let transport = ::elasticsearch::http::transport::Transport::single_node(&c.url).expect("transport");
        let es = ::elasticsearch::Elasticsearch::new(transport);
        let r = es.indices().create(::elasticsearch::indices::IndicesCreateParts::Index(&c.index)).body(mapping).send().await.expect("create");
        assert!(r.status_code().is_success(), "{:?}", r.text().await);
        let dir = tempfile::tempdir().unwrap();
        let (_sink, s) = loaded(&Backend::Elasticsearch(c.clone()), dir.path(), &ps).await;
        let r = s.search(&SearchQuery { per_page: 100, ..SearchQuery::default() }).await.expect("search");
        assert_eq!(r.total, ps.len() as u64);
        let d = s.product("p-nord").await.expect("read").expect("doc");
        assert!(d.catalog_pos.is_some() && d.price_pos.is_some(), "{d:?}");
    });
}

fn a_batch_written_twice_leaves_one_copy(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let ps = fixture();
    rt().block_on(async {
        let (mut sink, s) = loaded(&b, dir.path(), &ps).await;
        let its = items(&events(&ps));
        for chunk in its.chunks(150) {
            sink.write(chunk).await.expect("again");
        }
        let mut again = SearchSink::open(&b.config(), "EUR", dir.path()).await.expect("reopen");
        again.write(&its).await.expect("everything again, fresh sink");
        s.refresh().await.expect("refresh");
        let r = s.search(&SearchQuery::default()).await.expect("search");
        assert_eq!(r.total, ps.len() as u64);
        for p in &ps {
            let d = s.product(&p.id).await.expect("read").expect("doc");
            assert_eq!(d.rating_count, p.ratings.len() as i64, "{}", p.id);
            assert_eq!(d.rating, p.rating(), "{}", p.id);
            assert_eq!(d.in_stock, p.in_stock(), "{}", p.id);
        }
        // The USD product got its EUR price from the rate.
        let d = s.product(&ps[3].id).await.expect("read").expect("doc");
        assert_eq!((d.price_minor, d.currency.as_deref()), (Some(ps[3].listed.0), Some("USD")));
        assert_eq!(d.price_eur_minor, Some(ps[3].price_eur));
    });
}

fn a_record_the_index_rejects_goes_to_the_dlq_and_the_stream_continues(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let log = log(&dir.path().join("log"));
    let codec = codec();
    let ps = fixture();
    let mut evs = events(&ps);
    evs.insert(
        10,
        Event::ProductCreated(ProductCreated {
            event_id: "pc-huge".into(),
            occurred_at: Timestamp(START),
            product_id: "p-huge".into(),
            vendor_id: "v-1".into(),
            sku: "sku-huge".into(),
            title: "Huge brand".into(),
            description: "x".into(),
            translations: Default::default(),
            category: "home/kitchen/coffee".into(),
            brand: "B".repeat(40_000),
            price_minor: 100,
            currency: "EUR".into(),
        }),
    );
    publish(log.as_ref(), &codec, &evs);
    let sinks = storeflow_sinks::Sinks::start(log.clone(), codec, b.sinks(dir.path()), &mut Registry::default()).expect("start");
    sinks.wait_caught_up(PATIENCE).expect("caught up");
    let dead = storeflow_processors::dlq::list(log.as_ref(), "storefront.catalog").expect("dlq");
    assert_eq!(dead.len(), 1, "{:?}", dead.iter().map(|d| &d.reason).collect::<Vec<_>>());
    assert_eq!(dead[0].processor, "search");
    assert!(dead[0].reason.contains("immense") || dead[0].reason.contains("document_parsing_exception"), "{}", dead[0].reason);
    let s = sinks.search().expect("search");
    let r = rt().block_on(async {
        s.refresh().await.expect("refresh");
        s.search(&SearchQuery::default()).await.expect("search")
    });
    assert_eq!(r.total, ps.len() as u64);
    sinks.stop().expect("stop");
}

fn stopped_sinks_restart_and_drain_the_backlog_without_loss_or_doubles(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let log = log(&dir.path().join("log"));
    let codec = codec();
    let ps = fixture();
    let evs = events(&ps);
    let (first, second) = evs.split_at(evs.len() / 2);
    publish(log.as_ref(), &codec, first);
    let sinks = storeflow_sinks::Sinks::start(log.clone(), codec.clone(), b.sinks(dir.path()), &mut Registry::default()).expect("start");
    sinks.wait_caught_up(PATIENCE).expect("caught up");
    sinks.stop().expect("stop");
    publish(log.as_ref(), &codec, second);
    let sinks = storeflow_sinks::Sinks::start(log.clone(), codec, b.sinks(dir.path()), &mut Registry::default()).expect("restart");
    sinks.wait_caught_up(PATIENCE).expect("drained");
    let s = sinks.search().expect("search");
    rt().block_on(async {
        s.refresh().await.expect("refresh");
        let r = s.search(&SearchQuery { per_page: 100, ..SearchQuery::default() }).await.expect("search");
        assert_eq!(r.total, ps.len() as u64);
        for p in &ps {
            let d = s.product(&p.id).await.expect("read").expect("doc");
            assert_eq!((d.rating_count, d.in_stock), (p.ratings.len() as i64, p.in_stock()), "{}", p.id);
        }
    });
    sinks.stop().expect("stop");
}

fn results_sort_paginate_and_highlight(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let ps = fixture();
    rt().block_on(async {
        let (_sink, s) = loaded(&b, dir.path(), &ps).await;
        let mut seen = HashSet::new();
        let mut last = i64::MIN;
        for page in 0..7 {
            let r = s.search(&SearchQuery { sort: SortBy::PriceAsc, page, per_page: 20, ..SearchQuery::default() }).await.expect("search");
            for h in &r.hits {
                let p = h.price_eur_minor.unwrap_or(i64::MAX);
                assert!(p >= last, "prices go up: {p} after {last}");
                last = p;
                assert!(seen.insert(h.product_id.clone()), "{} on two pages", h.product_id);
            }
        }
        assert_eq!(seen.len(), ps.len());
        let r = s.search(&SearchQuery { sort: SortBy::Rating, per_page: 100, ..SearchQuery::default() }).await.expect("search");
        let ratings: Vec<f64> = r.hits.iter().filter_map(|h| h.rating).collect();
        assert!(ratings.windows(2).all(|w| w[0] >= w[1]), "{ratings:?}");
        let r = s.search(&SearchQuery::text("nordlciht")).await.expect("search");
        let title = r.hits[0].highlights.get("title").and_then(|t| t.first()).cloned().unwrap_or_default();
        assert!(title.contains("<em>Nordlicht</em>"), "{:?}", r.hits[0].highlights);
    });
}

/// Every document of the index, canonical, without its revision (`version`, which counts
/// applications in an order that depends on how topics interleave in batches): the tantivy
/// twin through [`storeflow_sinks::snapshot`], Elasticsearch through `_search`.
fn documents(b: &Backend, dir: &Path) -> BTreeMap<String, Vec<String>> {
    match b {
        Backend::Tantivy => rt()
            .block_on(storeflow_sinks::snapshot::embedded(&dir.join("sinks")))
            .unwrap()
            .into_iter()
            .filter(|(t, _)| t.starts_with("search."))
            .collect(),
        Backend::Elasticsearch(c) => rt().block_on(async {
            let transport = ::elasticsearch::http::transport::Transport::single_node(&c.url).unwrap();
            let es = ::elasticsearch::Elasticsearch::new(transport);
            es.indices().refresh(::elasticsearch::indices::IndicesRefreshParts::Index(&[&c.index])).send().await.unwrap();
            let r = es
                .search(::elasticsearch::SearchParts::Index(&[&c.index]))
                .body(serde_json::json!({"size": 10000, "query": {"match_all": {}}}))
                .send()
                .await
                .unwrap();
            assert!(r.status_code().is_success(), "{}", r.status_code());
            let v: serde_json::Value = r.json().await.unwrap();
            let mut rows: Vec<String> = v["hits"]["hits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    let mut d = h["_source"].clone();
                    d.as_object_mut().unwrap().remove("version");
                    d["_id"] = h["_id"].clone();
                    storeflow_sinks::snapshot::canonical(&d)
                })
                .collect();
            rows.sort();
            BTreeMap::from([("search.products".to_string(), rows)])
        }),
    }
}

fn a_rebuilt_index_equals_the_old_one_which_is_kept_aside_and_the_sink_goes_on_from_the_rebuild(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let log = log(&dir.path().join("log"));
    let codec = codec();
    let ps = fixture();
    let evs = events(&ps);
    let (first, second) = evs.split_at(evs.len() / 2);
    publish(log.as_ref(), &codec, first);
    let sinks = storeflow_sinks::Sinks::start(log.clone(), codec.clone(), b.sinks(dir.path()), &mut Registry::default()).expect("start");
    sinks.wait_caught_up(PATIENCE).expect("caught up");
    sinks.stop().expect("stop");
    let before = documents(&b, dir.path());
    assert!(before["search.products"].len() > 3, "{before:?}");

    let r = storeflow_sinks::rebuild::rebuild(log.clone(), codec.clone(), &b.sinks(dir.path()), "search", &|_, _| {}).expect("rebuild");
    let after = documents(&b, dir.path());
    let diff = storeflow_sinks::snapshot::differences(&before, &after);
    assert!(diff.is_empty(), "the rebuilt index differs:\n{}", diff.join("\n"));
    if let Backend::Elasticsearch(c) = &b {
        let old = r.replaced.strip_prefix("Elasticsearch index ").expect("an index").to_string();
        let _drop_old = cleanup({
            let url = c.url.clone();
            let old = old.clone();
            move || {
                let _ = rt().block_on(async move {
                    let es = ::elasticsearch::Elasticsearch::new(::elasticsearch::http::transport::Transport::single_node(&url)?);
                    es.indices().delete(::elasticsearch::indices::IndicesDeleteParts::Index(&[&old])).send().await.map(|_| ())
                });
            }
        });
        assert_eq!(documents(&Backend::Elasticsearch(ElasticsearchConfig { index: old, ..c.clone() }), dir.path()), before, "the replaced index is not the old one");
    }

    // The sink goes on from the rebuild: the index takes writes again and ends with every
    // product as it should be.
    publish(log.as_ref(), &codec, second);
    let sinks = storeflow_sinks::Sinks::start(log.clone(), codec, b.sinks(dir.path()), &mut Registry::default()).expect("restart");
    sinks.wait_caught_up(PATIENCE).expect("drained");
    let s = sinks.search().expect("search");
    rt().block_on(async {
        s.refresh().await.expect("refresh");
        let r = s.search(&SearchQuery { per_page: 100, ..SearchQuery::default() }).await.expect("search");
        assert_eq!(r.total, ps.len() as u64);
        for p in &ps {
            let d = s.product(&p.id).await.expect("read").expect("doc");
            assert_eq!((d.rating_count, d.in_stock), (p.ratings.len() as i64, p.in_stock()), "{}", p.id);
        }
    });
    sinks.stop().expect("stop");
}
