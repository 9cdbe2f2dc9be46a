//! docs/ADDING-A-SINK.md, followed exactly: its step 1 (the sink's folder) and step 3 (its
//! test, which runs it on the embedded log) are below verbatim, and its step 2 (the registry
//! line) builds a registry here. `the_guide_shows_this_file` fails when the guide and this
//! file drift apart.

#[macro_use]
extern crate storeflow_sinks;

mod ratings {
//! Ratings: every product's review count and star total, in one JSON file
//! `<data_dir>/ratings.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use storeflow_avro::{Event, Topic};
use storeflow_ingest::TopicPartition;
use storeflow_sinks::runner::{Batching, Item, Sink};
use storeflow_sinks::{Registered, Result, Retry, SinkConfig, SinkContext, SinkError, Store};

/// `[sinks.ratings]` in storeflow.toml; every field documented, defaults in `Default`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RatingsConfig {
    /// Records per write.
    pub max_batch: usize,
    /// Longest a record waits before it is written, in milliseconds.
    pub max_wait_ms: u64,
}

impl Default for RatingsConfig {
    fn default() -> Self {
        RatingsConfig { max_batch: 1_000, max_wait_ms: 200 }
    }
}

impl SinkConfig for RatingsConfig {
    fn validate(&self) -> Result<()> {
        if self.max_batch == 0 {
            return Err(SinkError::Config("[sinks.ratings] max_batch must be at least 1".into()));
        }
        Ok(())
    }

    // The start-up banner's line: "ratings: a JSON file, data/sinks/ratings.json".
    fn describe(&self, data_dir: &Path) -> String {
        format!("a JSON file, {}", data_dir.join("ratings.json").display())
    }

    // What `storeflow sinks rebuild ratings` replays into a fresh copy of, and swaps.
    fn store(&self) -> Store {
        Store::Embedded(&["ratings.json"])
    }
}

/// A product's reviews.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rating {
    /// How many.
    pub reviews: u64,
    /// Their stars, summed.
    pub stars: u64,
}

/// What the file holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Stored {
    products: BTreeMap<String, Rating>,
    /// Per source partition (`topic/partition`), the offset after the last record counted:
    /// a batch written again counts nothing twice.
    next: BTreeMap<String, u64>,
}

pub struct Ratings {
    path: PathBuf,
    stored: Arc<RwLock<Stored>>,
    batching: Batching,
}

impl Sink for Ratings {
    fn topics(&self) -> Vec<Topic> {
        vec![Topic::Catalog]
    }

    fn batching(&self) -> Batching {
        self.batching
    }

    // Other records of its topics are skipped (and committed).
    fn wants(&self, event: &Event) -> bool {
        matches!(event, Event::ReviewSubmitted(_))
    }

    // The one retry-or-give-up decision: a disk that failed may work again; anything else
    // is about the record, which goes to the dead-letter topic.
    fn retry(&self, err: &SinkError) -> Retry {
        match err {
            SinkError::Io { .. } => Retry::Transient,
            _ => Retry::Permanent,
        }
    }

    async fn assigned(&mut self, _partitions: &[TopicPartition]) -> Result<()> {
        Ok(())
    }

    async fn write(&mut self, items: &[Item]) -> Result<()> {
        let mut stored = self.stored.read().clone();
        for it in items {
            let Event::ReviewSubmitted(review) = &it.event else { continue };
            // Permanent: the runner dead-letters this record alone, with the reason.
            let stars = u64::try_from(review.rating).map_err(|_| SinkError::Rejected(format!("{} stars", review.rating)))?;
            let next = stored.next.entry(it.source()).or_insert(0);
            if it.offset < *next {
                continue; // counted before
            }
            *next = it.offset + 1;
            let rating = stored.products.entry(review.product_id.clone()).or_default();
            rating.reviews += 1;
            rating.stars += stars;
        }
        // The whole file under a temporary name, then renamed over the old one: a crash
        // leaves one or the other, never half of each.
        let io = |context: &str| {
            let context = format!("{context} {}", self.path.display());
            move |source| SinkError::Io { context, source }
        };
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(&stored).map_err(|e| SinkError::Rejected(e.to_string()))?;
        std::fs::write(&tmp, bytes).map_err(io("writing"))?;
        std::fs::rename(&tmp, &self.path).map_err(io("replacing"))?;
        *self.stored.write() = stored;
        Ok(())
    }
}

/// Reads of the ratings, for the API: cheap to clone, `Send + Sync`.
#[derive(Clone)]
pub struct RatingsHandle(Arc<RwLock<Stored>>);

impl RatingsHandle {
    /// A product's reviews; `None` if it has none.
    pub fn rating(&self, product_id: &str) -> Option<Rating> {
        self.0.read().products.get(product_id).copied()
    }
}

impl Registered for Ratings {
    const NAME: &'static str = "ratings"; // module, [sinks.ratings], consumer group, metrics label
    type Config = RatingsConfig;
    type Handle = RatingsHandle;

    async fn open(config: &RatingsConfig, cx: &SinkContext) -> Result<Self> {
        config.validate()?;
        let path = cx.data_dir.join("ratings.json");
        let io = |source| SinkError::Io { context: format!("reading {}", path.display()), source };
        std::fs::create_dir_all(&cx.data_dir).map_err(io)?;
        let stored = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| SinkError::Config(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stored::default(),
            Err(e) => return Err(io(e)),
        };
        let batching = Batching::new(config.max_batch, config.max_wait_ms);
        Ok(Ratings { path, stored: Arc::new(RwLock::new(stored)), batching })
    }

    fn handle(&self, _cx: &SinkContext) -> RatingsHandle {
        RatingsHandle(self.stored.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use storeflow_avro::{Codec, ReviewSubmitted, Timestamp};
    use storeflow_ingest::publish::{Publisher, contract_topics};
    use storeflow_ingest::{EmbeddedLog, Log};
    use storeflow_sinks::registry::Registration;
    use storeflow_sinks::{Sinks, SinksConfig};

    use super::*;

    fn review(n: u32, product: &str, stars: i32) -> Event {
        Event::ReviewSubmitted(ReviewSubmitted {
            event_id: format!("00000000-0000-4000-8000-{n:012}"),
            occurred_at: Timestamp(1_764_000_000_000 + i64::from(n)),
            review_id: format!("r-{n}"),
            product_id: product.into(),
            vendor_id: "v-1".into(),
            customer_id: "c-1".into(),
            rating: stars,
            title: None,
            body: None,
        })
    }

    #[test]
    fn reviews_on_the_log_are_counted_once_however_often_they_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir.path()).unwrap());
        log.create_topics(&contract_topics(None)).unwrap();
        let codec = Arc::new(Codec::embedded().unwrap());
        let vault = Arc::new(storeflow_avro::pii::Vault::in_memory());
        let publisher = Publisher::new(log.as_ref(), codec.clone(), vault).unwrap();
        for ack in publisher.publish_batch(&[review(1, "p-1", 5), review(2, "p-1", 3), review(3, "p-2", 4)]).unwrap() {
            ack.wait().unwrap();
        }

        // Only this sink, on the embedded log, its file under `sinks/`.
        let mut config = SinksConfig::of(vec![Registration::of::<Ratings>()], dir.path().join("sinks"));
        let sinks = Sinks::start(log.clone(), codec.clone(), config.clone(), &mut Default::default()).unwrap();
        sinks.wait_caught_up(Duration::from_secs(30)).unwrap();
        let ratings = sinks.handle::<Ratings>().expect("the ratings sink runs");
        assert_eq!(ratings.rating("p-1"), Some(Rating { reviews: 2, stars: 8 }));
        assert_eq!(ratings.rating("p-2"), Some(Rating { reviews: 1, stars: 4 }));
        assert_eq!(sinks.counts()["ratings"].written, 3);
        sinks.stop().unwrap();

        // Another group reads the whole log again into the same file: nothing counts twice.
        config.app = "again".into();
        let again = Sinks::start(log, codec, config, &mut Default::default()).unwrap();
        again.wait_caught_up(Duration::from_secs(30)).unwrap();
        assert_eq!(again.handle::<Ratings>().unwrap().rating("p-1"), Some(Rating { reviews: 2, stars: 8 }));
        again.stop().unwrap();
    }
}
}

mod registered {
    use super::ratings;
    // Step 2's line, with the modules it names.
    use storeflow_sinks::{analytics, read_model, search};

    registry!(
        read_model::ReadModelSink,
        analytics::AnalyticsSink,
        search::SearchSink,
        ratings::Ratings,
    );

    #[test]
    fn the_registry_line_registers_the_new_sink_beside_the_others() {
        let names: Vec<&str> = registry().iter().map(|r| r.name).collect();
        assert_eq!(names, ["read_model", "analytics", "search", "ratings"]);
        let config = storeflow_sinks::SinksConfig::of(registry(), "data/sinks");
        let banner = config.describe();
        assert_eq!(banner.last().map(|(n, s)| (*n, s.as_str())), Some(("ratings", "a JSON file, data/sinks/ratings.json")));
        // `[sinks.ratings]` as storeflow.toml gives it; unknown keys refused.
        let mut section = registry()[3].defaults();
        assert!(section.parse(serde_json::json!({"max_batch": 10})).is_ok());
        let err = section.parse(serde_json::json!({"max_bach": 10})).unwrap_err().to_string();
        assert!(err.contains("[sinks.ratings]") && err.contains("max_bach"), "{err}");
    }
}

/// The guide's blocks, as written there, are in this file; and step 2's list is the
/// registry in sinks/src/lib.rs with one line added.
#[test]
fn the_guide_shows_this_file() {
    let guide = include_str!("../../docs/ADDING-A-SINK.md");
    let this = include_str!("adding_a_sink.rs");
    let blocks: Vec<&str> = guide.split("```rust\n").skip(1).map(|b| b.split("```").next().unwrap()).collect();
    assert_eq!(blocks.len(), 3, "the guide has three Rust blocks");
    for (i, b) in [blocks[0], blocks[2]].into_iter().enumerate() {
        assert!(this.contains(b.trim_end()), "block {} of the guide is not in this file as written", [1, 3][i]);
    }
    let lib = include_str!("../src/lib.rs");
    let start = lib.find("\nregistry!(").expect("lib.rs invokes registry!") + 1;
    let real = &lib[start..start + lib[start..].find(");").unwrap() + 2];
    let expected = real.replace("\n);", "\n    ratings::Ratings,\n);");
    assert_eq!(blocks[1].trim_end(), expected, "step 2 is not lib.rs's registry with one line added");
}
