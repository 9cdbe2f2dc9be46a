//! Each real store **hangs** while events keep arriving: a TCP proxy between the sink and the
//! store stops passing bytes — the store still accepts connections, and never answers on
//! them. A stopped store refuses connections at once (`outage.rs`); a hung one holds every
//! call until something gives up. The sink's write timeout (`[sinks] write_timeout_ms`) must
//! fire, the offsets must be held meanwhile, and once the store answers again the sink
//! drains the backlog and the store ends with exactly the input: nothing lost, nothing
//! doubled.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use storeflow_avro::*;
use storeflow_sinks::analytics::{AnalyticsConfig, AnalyticsSink};
use storeflow_sinks::read_model::{ReadModelConfig, ReadModelSink};
use storeflow_sinks::search::{SearchConfig, SearchSink};
use storeflow_sinks::{Sinks, SinksConfig};

use common::*;

/// How long the store hangs: several write timeouts.
const HANG: Duration = Duration::from_secs(14);
/// The sinks' write timeout in these tests.
const WRITE_TIMEOUT_MS: u64 = 3_000;

/// A TCP proxy to a store that can be made to hang: while it hangs, every connection open
/// through it (and every new one) is held open and never passes another byte either way.
/// Connections opened after the hang pass bytes again.
struct Proxy {
    port: u16,
    hang: Arc<AtomicBool>,
}

impl Proxy {
    fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let hang = Arc::new(AtomicBool::new(false));
        let h = hang.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(target) else { continue };
                let poisoned = Arc::new(AtomicBool::new(false));
                for (from, to, upstream) in [(client.try_clone().unwrap(), server.try_clone().unwrap(), true), (server, client, false)] {
                    let (hang, poisoned) = (h.clone(), poisoned.clone());
                    std::thread::spawn(move || pump(from, to, upstream, &hang, &poisoned));
                }
            }
        });
        Proxy { port, hang }
    }

    fn hang(&self, on: bool) {
        self.hang.store(on, Ordering::SeqCst);
    }
}

/// Passes bytes from `from` to `to` until either side closes; once the proxy hangs, the
/// connection is poisoned for good: what arrives is swallowed, nothing is passed, and the
/// client's side stays open (a hung server does not close it either).
fn pump(mut from: TcpStream, mut to: TcpStream, upstream: bool, hang: &AtomicBool, poisoned: &AtomicBool) {
    from.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if hang.load(Ordering::SeqCst) {
            poisoned.store(true, Ordering::SeqCst);
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if hang.load(Ordering::SeqCst) {
                    poisoned.store(true, Ordering::SeqCst);
                }
                if !poisoned.load(Ordering::SeqCst) && to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    // The client went away: drop the store's side too. The store went away while the
    // connection is poisoned: keep the client waiting (it must time out on its own).
    if upstream || !poisoned.load(Ordering::SeqCst) {
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    }
}

/// `url` with its `host:port` replaced by that of a proxy to it, and the proxy.
fn through_proxy(url: &str) -> (String, Proxy) {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let addr: SocketAddr = host_port.replace("localhost", "127.0.0.1").parse().unwrap_or_else(|e| panic!("{host_port} in {url}: {e}"));
    let proxy = Proxy::start(addr);
    let at = scheme_end + authority_end - host_port.len();
    let rewritten = format!("{}127.0.0.1:{}{}", &url[..at], proxy.port, &url[scheme_end + authority_end..]);
    (rewritten, proxy)
}

/// The sinks' config with the test's write timeout.
fn config(dir: &std::path::Path, sink: &str) -> SinksConfig {
    let mut cfg = SinksConfig::embedded(dir.join("sinks")).only(&[sink]);
    cfg.write_timeout_ms = WRITE_TIMEOUT_MS;
    cfg.max_backoff_ms = 500;
    cfg
}

/// `storeflow_sink_errors_total{sink, kind="timeout"}`.
fn timeouts(registry: &Registry, sink: &str) -> f64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encode the metrics");
    text.lines()
        .filter(|l| l.starts_with("storeflow_sink_errors_total{") && l.contains(&format!("sink=\"{sink}\"")) && l.contains("kind=\"timeout\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Makes the store hang while `backlog` is published; checks that the sink's write
/// timeout fired and that it committed nothing meanwhile; then lets the store answer again.
fn hung(proxy: &Proxy, sinks: &Sinks, registry: &Registry, sink: &str, publish_backlog: impl FnOnce()) {
    proxy.hang(true);
    let since = Instant::now();
    publish_backlog();
    std::thread::sleep(Duration::from_secs(2));
    let lag = sinks.lag().expect("lag")[sink];
    assert!(lag > 0, "the {sink} sink must hold its offsets while its store hangs");
    std::thread::sleep(HANG.saturating_sub(since.elapsed()));
    assert_eq!(sinks.lag().expect("lag")[sink], lag, "nothing is committed while the store hangs");
    let fired = timeouts(registry, sink);
    assert!(fired >= 2.0, "the write timeout fired {fired} times in {HANG:?} of a hung store (timeout {WRITE_TIMEOUT_MS} ms)");
    proxy.hang(false);
    println!("{sink}: the store hung for {:?}; the write timeout fired {fired} times; offsets held at lag {lag}", since.elapsed());
}

/// Starts `sink` (its store set by `store`) over the first `split` of `events`, makes its
/// store hang while the rest is published ([`hung`]), and returns the sinks once they have
/// drained the backlog (with the folder the log lives in).
fn through_a_hang(proxy: &Proxy, sink: &str, events: &[Event], split: usize, store: impl FnOnce(&mut SinksConfig)) -> (Sinks, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (log, codec) = (log(&dir.path().join("log")), codec());
    let (first, second) = events.split_at(split);
    publish(log.as_ref(), &codec, first);
    let mut cfg = config(dir.path(), sink);
    store(&mut cfg);
    let mut registry = Registry::default();
    let sinks = Sinks::start(log.clone(), codec.clone(), cfg, &mut registry).expect("start");
    sinks.wait_caught_up(PATIENCE).expect("caught up");
    hung(proxy, &sinks, &registry, sink, || publish(log.as_ref(), &codec, second));
    sinks.wait_caught_up(PATIENCE).expect("drained once the store answers");
    (sinks, dir)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("runtime")
}

#[test]
fn a_hung_postgres_times_the_writes_out_and_the_read_model_ends_with_exactly_the_input() {
    init();
    let Some((url, _cleanup)) = postgres() else { return };
    let (url, proxy) = through_proxy(&url);
    let events = sim(6_000, 41);
    let (sinks, _dir) = through_a_hang(&proxy, "read_model", &events, 2_000, |cfg| *cfg.sink_mut::<ReadModelSink>() = ReadModelConfig { postgres_url: Some(url.into()), max_wait_ms: 50, ..ReadModelConfig::default() });
    let counts = rt().block_on(sinks.read_model().expect("read model").counts()).expect("counts");
    let items: i64 = events.iter().map(|e| if let Event::OrderPlaced(o) = e { o.items.len() as i64 } else { 0 }).sum();
    assert_eq!(counts["orders"], count(&events, "OrderPlaced"));
    assert_eq!(counts["order_items"], items);
    assert_eq!(counts["reviews"], count(&events, "ReviewSubmitted"));
    let history = events.iter().filter(|e| matches!(e.topic(), Topic::Orders | Topic::Payments | Topic::Fulfillment)).count() as i64;
    assert_eq!(counts["order_events"], history);
    sinks.stop().expect("stop");
}

#[test]
fn a_hung_clickhouse_times_the_inserts_out_and_analytics_ends_with_exactly_the_input() {
    init();
    let Some((mut ch, _cleanup)) = clickhouse() else { return };
    let (url, proxy) = through_proxy(&ch.url);
    ch.url = url;
    let events = sim(8_000, 42);
    let (sinks, _dir) = through_a_hang(&proxy, "analytics", &events, 3_000, |cfg| *cfg.sink_mut::<AnalyticsSink>() = AnalyticsConfig { clickhouse: Some(ch), max_wait_ms: 200, ..AnalyticsConfig::default() });
    let counts = rt().block_on(sinks.analytics().expect("analytics").row_counts()).expect("counts");
    let lines: u64 = events.iter().map(|e| if let Event::OrderPlaced(o) = e { o.items.len() as u64 } else { 0 }).sum();
    assert_eq!(counts["fact_orders"], count(&events, "OrderPlaced") as u64);
    assert_eq!(counts["fact_order_items"], lines);
    assert_eq!(counts["fact_reviews"], count(&events, "ReviewSubmitted") as u64);
    sinks.stop().expect("stop");
}

#[test]
fn a_hung_elasticsearch_times_the_bulk_writes_out_and_the_index_ends_with_exactly_the_input() {
    init();
    let Some((mut es, _cleanup)) = elasticsearch() else { return };
    let (url, proxy) = through_proxy(&es.url);
    es.url = url;
    let events = sim(8_000, 43);
    let (sinks, _dir) = through_a_hang(&proxy, "search", &events, 3_000, |cfg| *cfg.sink_mut::<SearchSink>() = SearchConfig { elasticsearch: Some(es), max_wait_ms: 200, ..SearchConfig::default() });
    let s = sinks.search().expect("search");
    let products: Vec<&ProductCreated> = events.iter().filter_map(|e| if let Event::ProductCreated(p) = e { Some(p) } else { None }).collect();
    let (views, reviews) = rt().block_on(async {
        s.refresh().await.expect("refresh");
        let (mut views, mut reviews) = (0i64, 0i64);
        for p in &products {
            let d = s.product(&p.product_id).await.expect("read").expect("every product is indexed");
            views += d.views;
            reviews += d.rating_count;
        }
        (views, reviews)
    });
    // Counting fields would show any event applied twice.
    assert_eq!(views, count(&events, "ProductViewed"));
    assert_eq!(reviews, count(&events, "ReviewSubmitted"));
    sinks.stop().expect("stop");
}
