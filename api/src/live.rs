//! What no sink stores, kept live from the processors' topics: each vendor's sales minute by
//! minute (`VendorSalesMinute` on `sales.vendor_minute`, also pushed to SSE subscribers) and
//! the recommendation lists (`RecommendationsUpdated`), with products that have no stock
//! available left out (`StockLevelChanged` on `inventory.levels`, and each product's sku
//! from `ProductCreated`). Everything else the API reads comes from the sinks' handles
//! ([`crate::read::Reads`]).
//!
//! The state lives in memory and is rebuilt from the start of the four topics at each start,
//! outside any consumer group (nothing is committed).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::FutureExt;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use storeflow_avro::{Codec, Event, Topic};
use storeflow_ingest::{ConsumerConfig, Log, LogError, TopicPartition};
use tokio::sync::broadcast;
use utoipa::ToSchema;

use crate::ready::{ReadError, ReadFuture, Ready};

/// The topics the live state reads.
pub const TOPICS: &[Topic] = &[Topic::Catalog, Topic::StockLevels, Topic::Recommendations, Topic::VendorSales];

/// A recommended product and its score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScoredProduct {
    pub product_id: String,
    pub score: f64,
}

/// Which list: `similar`/`bought_together` of a product, `trending` in a category (or
/// everywhere), `for_session` of a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecoList {
    Similar(String),
    BoughtTogether(String),
    Trending(Option<String>),
    ForSession(String),
}

/// minute, hour or day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    #[default]
    Minute,
    Hour,
    Day,
}

impl Granularity {
    /// Bucket width in milliseconds.
    pub fn millis(self) -> i64 {
        match self {
            Granularity::Minute => 60_000,
            Granularity::Hour => 3_600_000,
            Granularity::Day => 86_400_000,
        }
    }
}

/// A vendor's sales in one bucket and one currency, as the sales processor counted them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SalesBucket {
    /// Start of the bucket, milliseconds since the epoch.
    pub start: i64,
    pub currency: String,
    pub orders: i64,
    pub units: i64,
    pub gmv_minor: i64,
    pub refunds_minor: i64,
    pub commission_minor: i64,
    pub net_payout_minor: i64,
    pub base_currency: String,
    pub gmv_base_minor: i64,
    pub refunds_base_minor: i64,
    pub commission_base_minor: i64,
    pub net_payout_base_minor: i64,
}

#[derive(Default)]
struct State {
    sku_of_product: HashMap<String, String>,
    /// Units available per sku and warehouse.
    available: HashMap<String, BTreeMap<String, i64>>,
    recos: HashMap<(String, String), Vec<ScoredProduct>>,
    /// Per vendor: minute figures by (minute, currency); a newer figure replaces the older.
    sales: HashMap<String, BTreeMap<(i64, String), SalesBucket>>,
}

impl State {
    fn in_stock(&self, product_id: &str) -> bool {
        let Some(sku) = self.sku_of_product.get(product_id) else {
            return true; // unknown product: nothing says it is out of stock
        };
        self.available.get(sku).is_some_and(|w| w.values().sum::<i64>() > 0)
    }
}

/// The live state, fed by a consumer thread. Cheap to share (`Arc`).
pub struct Live {
    state: RwLock<State>,
    sales_tx: broadcast::Sender<(String, SalesBucket)>,
    caught_up: AtomicBool,
    failed: Mutex<Option<String>>,
    stop: AtomicBool,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").field("caught_up", &self.caught_up.load(Ordering::Relaxed)).finish()
    }
}

impl Live {
    /// Empty, fed by [`Live::apply`] only (tests).
    pub fn new() -> Arc<Live> {
        Arc::new(Live {
            state: RwLock::new(State::default()),
            sales_tx: broadcast::channel(4096).0,
            caught_up: AtomicBool::new(true),
            failed: Mutex::new(None),
            stop: AtomicBool::new(false),
        })
    }

    /// Fed from `log` by a thread that reads [`TOPICS`] from their first record. `/readyz`
    /// waits until the thread has read what was there at start.
    pub fn start(log: Arc<dyn Log>, codec: Arc<Codec>) -> Result<Arc<Live>, LogError> {
        let live = Live::new();
        live.caught_up.store(false, Ordering::SeqCst);
        let infos = log.describe_topics()?;
        let mut assignment = Vec::new();
        let mut ends = HashMap::new();
        for t in TOPICS {
            let Some(info) = infos.iter().find(|i| i.name == t.name()) else { continue };
            for p in &info.partitions {
                let tp = TopicPartition::new(t.name(), p.partition);
                assignment.push((tp.clone(), p.start));
                if p.end > p.start {
                    ends.insert(tp, p.end);
                }
            }
        }
        let mut consumer = log.consumer(ConsumerConfig::new("storeflow.api.live"), None)?;
        consumer.assign(&assignment)?;
        let weak: Weak<Live> = Arc::downgrade(&live);
        std::thread::Builder::new()
            .name("api-live".into())
            .spawn(move || {
                let mut behind = ends;
                loop {
                    let Some(live) = weak.upgrade() else { break };
                    if live.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match consumer.poll(2000, Duration::from_millis(100)) {
                        Ok(records) => {
                            for r in &records {
                                let Some(value) = &r.value else { continue };
                                match codec.decode(value) {
                                    Ok(e) => live.apply(&e),
                                    Err(e) => tracing::warn!(topic = %r.topic, offset = r.offset, "the API's live state skips a record: {e}"),
                                }
                            }
                            // Positions, not record offsets: on Kafka transaction markers
                            // take offsets too.
                            behind.retain(|tp, end| consumer.position(tp).is_some_and(|p| p < *end));
                            if behind.is_empty() {
                                live.caught_up.store(true, Ordering::SeqCst);
                            }
                        }
                        Err(e) => {
                            tracing::error!("the API's live state stopped reading the log: {e}");
                            *live.failed.lock() = Some(e.to_string());
                            break;
                        }
                    }
                }
                let _ = consumer.close();
            })
            .map_err(|e| LogError::Io { context: "starting the API's live-state thread".into(), source: e })?;
        Ok(live)
    }

    /// Stops the feeding thread.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// True once everything on the log at start has been read.
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::SeqCst)
    }

    /// Applies one event; events of other kinds are ignored.
    pub fn apply(&self, event: &Event) {
        let mut s = self.state.write();
        match event {
            Event::ProductCreated(p) => {
                s.sku_of_product.insert(p.product_id.clone(), p.sku.clone());
            }
            Event::StockLevelChanged(l) => {
                s.available.entry(l.sku.clone()).or_default().insert(l.warehouse_id.clone(), i64::from(l.available));
            }
            Event::RecommendationsUpdated(r) => {
                let key = match r.kind.as_str() {
                    "trending" => r.category.clone().unwrap_or_default(),
                    "for_session" => r.session_id.clone().unwrap_or_default(),
                    _ => r.product_id.clone(),
                };
                let items = r.items.iter().map(|i| ScoredProduct { product_id: i.product_id.clone(), score: i.score }).collect();
                s.recos.insert((r.kind.clone(), key), items);
            }
            Event::VendorSalesMinute(m) => {
                let b = SalesBucket {
                    start: m.minute.millis(),
                    currency: m.currency.clone(),
                    orders: i64::from(m.orders),
                    units: i64::from(m.units),
                    gmv_minor: m.gmv_minor,
                    refunds_minor: m.refunds_minor,
                    commission_minor: m.commission_minor,
                    net_payout_minor: m.net_payout_minor,
                    base_currency: m.base_currency.clone(),
                    gmv_base_minor: m.gmv_base_minor,
                    refunds_base_minor: m.refunds_base_minor,
                    commission_base_minor: m.commission_base_minor,
                    net_payout_base_minor: m.net_payout_base_minor,
                };
                s.sales.entry(m.vendor_id.clone()).or_default().insert((b.start, b.currency.clone()), b.clone());
                // No subscriber is fine: the send fails and nobody misses anything.
                let _ = self.sales_tx.send((m.vendor_id.clone(), b));
            }
            _ => {}
        }
    }

    /// Up to `limit` products of the list, best first, without products out of stock.
    pub fn recommendations(&self, list: &RecoList, limit: usize) -> Vec<ScoredProduct> {
        let s = self.state.read();
        let get = |kind: &str, key: &str| s.recos.get(&(kind.to_string(), key.to_string())).cloned().unwrap_or_default();
        let mut items = match list {
            RecoList::Similar(p) => get("similar", p),
            RecoList::BoughtTogether(p) => get("bought_together", p),
            RecoList::ForSession(sid) => get("for_session", sid),
            RecoList::Trending(Some(c)) => get("trending", c),
            RecoList::Trending(None) => {
                let mut all: Vec<ScoredProduct> =
                    s.recos.iter().filter(|((k, _), _)| k == "trending").flat_map(|(_, v)| v.iter().cloned()).collect();
                all.sort_by(|a, b| b.score.total_cmp(&a.score));
                all
            }
        };
        let mut seen = HashSet::new();
        items.retain(|i| seen.insert(i.product_id.clone()) && s.in_stock(&i.product_id));
        items.truncate(limit);
        items
    }

    /// A vendor's buckets of `granularity` in `[from, to)`, oldest first, one per bucket and
    /// currency.
    pub fn sales(&self, vendor_id: &str, from: i64, to: i64, granularity: Granularity) -> Vec<SalesBucket> {
        let s = self.state.read();
        let width = granularity.millis();
        let mut out: BTreeMap<(i64, String), SalesBucket> = BTreeMap::new();
        if let Some(minutes) = s.sales.get(vendor_id) {
            for ((start, currency), b) in minutes.range((from, String::new())..) {
                if *start >= to {
                    break;
                }
                let bucket = start.div_euclid(width) * width;
                // Saturating: figures of a hostile producer on the topic must not panic a read.
                let e = out.entry((bucket, currency.clone())).or_insert_with(|| SalesBucket {
                    start: bucket,
                    currency: currency.clone(),
                    base_currency: b.base_currency.clone(),
                    ..SalesBucket::default()
                });
                e.orders = e.orders.saturating_add(b.orders);
                e.units = e.units.saturating_add(b.units);
                e.gmv_minor = e.gmv_minor.saturating_add(b.gmv_minor);
                e.refunds_minor = e.refunds_minor.saturating_add(b.refunds_minor);
                e.commission_minor = e.commission_minor.saturating_add(b.commission_minor);
                e.net_payout_minor = e.net_payout_minor.saturating_add(b.net_payout_minor);
                e.gmv_base_minor = e.gmv_base_minor.saturating_add(b.gmv_base_minor);
                e.refunds_base_minor = e.refunds_base_minor.saturating_add(b.refunds_base_minor);
                e.commission_base_minor = e.commission_base_minor.saturating_add(b.commission_base_minor);
                e.net_payout_base_minor = e.net_payout_base_minor.saturating_add(b.net_payout_base_minor);
            }
        }
        out.into_values().collect()
    }

    /// Every new minute figure of every vendor, as it arrives (the SSE stream filters).
    pub fn subscribe(&self) -> broadcast::Receiver<(String, SalesBucket)> {
        self.sales_tx.subscribe()
    }
}

impl Ready for Live {
    fn ready(&self) -> ReadFuture<'_, ()> {
        let r = if let Some(e) = self.failed.lock().clone() {
            Err(ReadError::Unavailable(format!("the API's live state stopped reading the log: {e}")))
        } else if !self.caught_up() {
            Err(ReadError::Unavailable("the API's live state is still reading the log".into()))
        } else {
            Ok(())
        };
        async move { r }.boxed()
    }
}
