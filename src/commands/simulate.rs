//! `storeflow simulate`: publish simulated traffic through the ingest path — and, for the
//! demo, the storefront that follows the pipeline's decisions.
//!
//! Traffic is dated so that it ends just before the wall clock (a broker refuses records
//! from the future) and never runs past it: when the simulator's clock would, publishing
//! waits. The publisher declares its progress on `<app>.progress` as it goes (everything it
//! still writes is later than what it declared), so the processors wait for it exactly that
//! far — not for an idle timeout — and a replay of its traffic is processed the same way.
//!
//! In closed loop (the demo) the simulator asks the pipeline what it decided before it
//! pays, ships or cancels: [`Storefront`] answers from `orders.lifecycle`, once the
//! pipeline's progress says nothing earlier can still be decided.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use storeflow_avro::{Event, Timestamp, Topic};
use storeflow_ingest::publish::sealed_record_for;
use storeflow_ingest::{ConsumerConfig, Log, OffsetReset, ProduceRecord, Producer, TopicPartition};
use storeflow_processors::runtime::progress::{ProgressReader, declare, withdraw};
use storeflow_processors::Topology;
use storeflow_sim::{Decisions, Planted, SimConfig, SimSummary, Simulator};

use crate::backends::Backends;
use crate::cli::Traffic;
use crate::report;

/// What a publishing run did.
pub struct Published {
    /// What the simulator generated.
    pub summary: SimSummary,
    /// Bytes published per topic.
    pub bytes_by_topic: BTreeMap<&'static str, u64>,
    /// Wall-clock time spent.
    pub elapsed: Duration,
    /// The poison it planted on purpose.
    pub planted: Vec<Planted>,
}

/// The pipeline the storefront follows (closed loop).
pub struct Follow {
    /// Every processor, for progress.
    pub topology: Arc<Topology>,
    /// The runtime's application id (`<app>.progress`).
    pub app: String,
    /// The runtime's lookahead (ms).
    pub lookahead_ms: i64,
}

/// How long a declaration of the publisher's progress holds unless renewed.
const LEASE_MS: i64 = 30_000;

/// The publishing side: batches records, acknowledges them, declares how far it is.
struct Out {
    log: Arc<dyn Log>,
    producer: Box<dyn Producer>,
    batch: Vec<ProduceRecord>,
    batch_size: usize,
    app: String,
    name: String,
    topics: Vec<String>,
    declared: i64,
    renewed: Instant,
    sent: u64,
}

impl Out {
    fn flush(&mut self) -> anyhow::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let n = self.batch.len() as u64;
        for ack in self.producer.send_batch(std::mem::take(&mut self.batch))? {
            ack.wait().context("publishing simulated events")?;
        }
        self.sent += n;
        Ok(())
    }

    fn push(&mut self, rec: ProduceRecord) -> anyhow::Result<()> {
        self.batch.push(rec);
        if self.batch.len() >= self.batch_size {
            self.flush()?;
        }
        Ok(())
    }

    /// Publishes what it holds, then declares that nothing it still writes is earlier than
    /// `complete_before` (renewing the lease when it is getting old).
    fn declare(&mut self, complete_before: i64) -> anyhow::Result<()> {
        self.flush()?;
        if complete_before > self.declared || self.renewed.elapsed() > Duration::from_millis(LEASE_MS as u64 / 3) {
            self.declared = self.declared.max(complete_before);
            declare(&*self.log, &self.app, &self.name, &self.topics, self.declared, LEASE_MS).context("declaring the publisher's progress")?;
            self.renewed = Instant::now();
        }
        Ok(())
    }
}

/// The storefront, warehouses and customers of a closed loop: they learn what the pipeline
/// decided from `orders.lifecycle`.
struct Storefront {
    out: Arc<Mutex<Out>>,
    progress: ProgressReader,
    lifecycle: Box<dyn storeflow_ingest::Consumer>,
    partitions: Vec<TopicPartition>,
    codec: Arc<storeflow_avro::Codec>,
    lookahead: i64,
    /// The pipeline has decided everything before this.
    known_before: i64,
    /// The simulator's reaction time: when it asks about `at`, it has yielded everything up
    /// to `at + reaction`.
    reaction: i64,
    /// Order → (record time, version, status), as read.
    statuses: HashMap<String, Vec<(i64, i64, String)>>,
    log: Arc<dyn Log>,
}

impl Storefront {
    /// Waits until the pipeline can no longer decide anything about a time at or before
    /// `at`, and has read what it decided.
    fn catch_up(&mut self, at: i64) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            self.progress.poll(Duration::from_millis(2))?;
            let f = self.progress.frontier(Topic::Lifecycle.name(), self.lookahead);
            if f > at {
                let ends = self.log.watermarks(&self.partitions)?;
                self.read_to(&ends.iter().map(|(_, e)| *e).collect::<Vec<_>>())?;
                self.known_before = f;
                return Ok(());
            }
            // Keep the declaration alive while waiting; the pipeline may be busy.
            self.out.lock().expect("not poisoned").declare(at + 1 + self.reaction)?;
            if started.elapsed() > Duration::from_secs(300) {
                bail!("the pipeline decided nothing past {at} in 300 s (its progress stands at {f}): is a processor stuck? (see the log above)");
            }
        }
    }

    fn read_to(&mut self, ends: &[u64]) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // Kafka ends a transaction with a marker that takes an offset and is never read.
            let slack = u64::from(self.log.backend() == "kafka");
            let done = self.partitions.iter().zip(ends).all(|(tp, end)| self.lifecycle.position(tp).unwrap_or(0) + slack >= *end || *end == 0);
            if done && self.lifecycle.poll(10_000, Duration::ZERO)?.is_empty() {
                return Ok(());
            }
            for r in self.lifecycle.poll(10_000, Duration::from_millis(5))? {
                if let Ok(Event::OrderStatusChanged(s)) = self.codec.decode(r.value.as_deref().unwrap_or_default()) {
                    self.statuses.entry(s.order_id).or_default().push((r.timestamp, s.version, s.status));
                }
            }
            if Instant::now() > deadline {
                bail!("orders.lifecycle did not read to its end within 60 s");
            }
        }
    }
}

impl Decisions for Storefront {
    fn status_at(&mut self, order_id: &str, at: i64) -> Option<String> {
        if self.known_before <= at {
            // The simulator has yielded everything up to its clock, `reaction` after `at`:
            // the pipeline may go that far.
            if let Err(e) = self.out.lock().expect("not poisoned").declare(at + 1 + self.reaction) {
                tracing::error!(error = %e, "the storefront could not publish what it holds");
                return None;
            }
            if let Err(e) = self.catch_up(at) {
                tracing::error!(error = %e, "the storefront cannot follow the pipeline");
                return None;
            }
        }
        let seen = self.statuses.get(order_id)?;
        seen.iter().filter(|(t, _, _)| *t <= at).max_by_key(|(_, v, _)| *v).map(|(_, _, s)| s.clone())
    }
}

/// The seed of a run that names none (and the first one tried).
pub const DEFAULT_SEED: u64 = 42;

/// Where each simulation run records its seed: `<app>.simulations` (compacted, keyed by
/// seed), so that a second run on the same log does not repeat the first one's ids.
fn simulations_topic(app: &str) -> String {
    format!("{app}.simulations")
}

/// The seed this run uses, recorded on the log before anything is published:
/// `traffic.seed` when given (refused when this log already ran it), otherwise the first
/// seed from [`DEFAULT_SEED`] up that it has not run.
fn claim_seed(b: &Backends, traffic: &Traffic, app: &str) -> anyhow::Result<u64> {
    let topic = simulations_topic(app);
    b.log.create_topics(&[storeflow_ingest::TopicSpec::compacted(&topic, 1)])?;
    let ran: std::collections::BTreeSet<u64> =
        seeds_ran(b, &topic)?.iter().filter_map(|k| std::str::from_utf8(k).ok()?.parse().ok()).collect();
    let seed = match traffic.seed {
        Some(s) if ran.contains(&s) => anyhow::bail!(
            "seed {s} already ran on this log: its orders are there, and placing them again would only be refused as duplicates; \
             pass another --seed, leave --seed out to take the next free one, or use a fresh log (--data-dir)"
        ),
        Some(s) => s,
        None => (DEFAULT_SEED..).find(|s| !ran.contains(s)).expect("a free seed"),
    };
    if traffic.seed.is_none() && seed != DEFAULT_SEED {
        eprintln!("seed: {seed} (this log already ran {}; pass --seed to choose)", ran.iter().map(u64::to_string).collect::<Vec<_>>().join(", "));
    }
    let value = serde_json::json!({"events": traffic.events, "at": Timestamp::now().millis()});
    b.log
        .producer()?
        .send(storeflow_ingest::ProduceRecord {
            topic,
            partition: Some(0),
            key: Some(seed.to_string().into_bytes()),
            value: Some(value.to_string().into_bytes()),
            headers: vec![],
            timestamp: None,
        })?
        .wait()?;
    Ok(seed)
}

/// The keys of every record on `topic` (one partition, written without transactions): read
/// until a record at the last offset has come, by the records' own offsets (a consumer's
/// position may stand at the end before it has fetched anything).
fn seeds_ran(b: &Backends, topic: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let tp = TopicPartition::new(topic, 0);
    let (start, end) = b.log.watermarks(std::slice::from_ref(&tp))?[0];
    if start >= end {
        return Ok(vec![]);
    }
    let mut cfg = ConsumerConfig::new(&format!("storeflow-seeds-{}", std::process::id()));
    cfg.reset = OffsetReset::Earliest;
    let mut consumer = b.log.consumer(cfg, None)?;
    consumer.assign(&[(tp, start)])?;
    let mut keys = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut next = start;
    while next < end {
        if Instant::now() > deadline {
            anyhow::bail!("reading the seeds this log already ran ({topic}): only offsets {start}..{next} of {start}..{end} came in 30 s");
        }
        for r in consumer.poll(1_000, Duration::from_millis(200))? {
            next = next.max(r.offset + 1);
            keys.extend(r.key.map(|k| k.to_vec()));
        }
    }
    consumer.close()?;
    Ok(keys)
}

/// The simulator for `traffic`, dated to end just before now (or `--ending-at`).
fn simulator(traffic: &Traffic, poison: usize) -> Simulator {
    let mut config = SimConfig {
        seed: traffic.seed.unwrap_or(DEFAULT_SEED),
        fraud_ring_share: traffic.fraud_ring.clamp(0.0, 1.0),
        // Established customers are imported first; a short run keeps most of its event
        // budget for sessions and orders (1,000 from 20,000 events up).
        established_customers: (traffic.events / 20).min(1000) as usize,
        poison,
        ..SimConfig::default()
    };
    config = config.ending_at(traffic.ending_at.map_or_else(Timestamp::now, Timestamp), traffic.events);
    Simulator::new(config)
}

/// A publishing run, prepared: its producer has declared where its traffic starts, so
/// processors started after this wait for it instead of taking its quiet start for
/// idleness.
pub struct Publishing {
    sim: Simulator,
    out: Arc<Mutex<Out>>,
    events: u64,
    rate: f64,
    quiet: bool,
}

impl Publishing {
    /// Prepares `traffic.events` simulated events, planting `poison` records the pipeline
    /// must dead-letter; declares the producer on `<app>.progress`.
    pub fn new(b: &Backends, traffic: &Traffic, poison: usize, app: &str) -> anyhow::Result<Publishing> {
        // Before anything is published: traffic dated past the wall clock would be
        // dead-lettered by the processors (a source record may be at most minutes ahead).
        if let Some(end) = traffic.ending_at.filter(|end| *end > Timestamp::now().millis()) {
            anyhow::bail!(
                "--ending-at {} is in the future: the traffic must have happened by now (leave it out to end now)",
                chrono::DateTime::from_timestamp_millis(end).map_or_else(|| end.to_string(), |t| t.to_rfc3339())
            );
        }
        let topics: Vec<String> = Topic::ALL.iter().filter(|t| t.is_input()).map(|t| t.name().to_string()).collect();
        let batch_size = if traffic.rate > 0.0 { ((traffic.rate / 20.0).ceil() as usize).clamp(1, 2000) } else { 2000 };
        let name = format!("simulator-{}-{}", std::process::id(), Timestamp::now().millis());
        let seed = claim_seed(b, traffic, app)?;
        let sim = simulator(&Traffic { seed: Some(seed), ..traffic.clone() }, poison);
        let out = Arc::new(Mutex::new(Out {
            log: b.log.clone(),
            producer: b.log.producer()?,
            batch: Vec::with_capacity(batch_size),
            batch_size,
            app: app.to_string(),
            name,
            topics,
            declared: i64::MIN,
            renewed: Instant::now(),
            sent: 0,
        }));
        let first = sim.next_time().map_or(Timestamp::now().millis(), |t| t.millis());
        out.lock().expect("not poisoned").declare(first)?;
        Ok(Publishing { sim, out, events: traffic.events, rate: traffic.rate, quiet: traffic.quiet })
    }

    /// Publishes, acknowledged, with a progress bar; in closed loop when `follow` is given
    /// (the pipeline must be running).
    pub fn run(self, b: &Backends, follow: Option<Follow>) -> anyhow::Result<Published> {
        let Publishing { mut sim, out, events, rate, quiet } = self;
        if let Some(f) = follow {
            let lifecycle = Topic::Lifecycle.name();
            let info = b.log.describe_topics()?.into_iter().find(|t| t.name == lifecycle).context("orders.lifecycle does not exist")?;
            let partitions: Vec<TopicPartition> = info.partitions.iter().map(|p| TopicPartition::new(lifecycle, p.partition)).collect();
            let mut cfg = ConsumerConfig::new(&format!("storeflow-storefront-{}", std::process::id()));
            cfg.reset = OffsetReset::Latest;
            cfg.read_committed = true;
            let mut consumer = b.log.consumer(cfg, None)?;
            // Only this run's decisions matter: read from where the topic ends now.
            consumer.assign(&info.partitions.iter().map(|p| (TopicPartition::new(lifecycle, p.partition), p.end)).collect::<Vec<_>>())?;
            let storefront = Storefront {
                out: out.clone(),
                progress: ProgressReader::open(&*b.log, &f.app, f.topology)?,
                lifecycle: consumer,
                partitions,
                codec: b.codec.clone(),
                lookahead: f.lookahead_ms,
                known_before: i64::MIN,
                reaction: sim.config().reaction_ms.max(0),
                statuses: HashMap::new(),
                log: b.log.clone(),
            };
            sim = sim.with_decisions(Box::new(storefront));
        }
        let pb = report::progress(events, "publishing", quiet);
        let started = Instant::now();
        let mut bytes_by_topic: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut n = 0u64;
        while n < events {
            let Some(e) = sim.next() else {
                // Paused: its next event would be later than the wall clock. Say how far it
                // is, then wait for the clock.
                let Some(next) = sim.next_time() else { break };
                out.lock().expect("not poisoned").declare(next.millis())?;
                let wait = next.millis() - Timestamp::now().millis();
                std::thread::sleep(Duration::from_millis(wait.clamp(1, 1_000) as u64));
                sim.set_not_after(Some(Timestamp::now()));
                continue;
            };
            let rec = sealed_record_for(&b.codec, &b.vault, &e).with_context(|| format!("encoding {}", e.name()))?;
            *bytes_by_topic.entry(e.topic().name()).or_default() += rec.value.as_ref().map_or(0, |v| v.len() as u64);
            out.lock().expect("not poisoned").push(rec)?;
            n += 1;
            if n % 1000 == 0 {
                pb.set_position(n);
            }
            if rate > 0.0 {
                let due = Duration::from_secs_f64(n as f64 / rate);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    out.lock().expect("not poisoned").flush()?;
                    std::thread::sleep(wait);
                }
            }
        }
        {
            let mut o = out.lock().expect("not poisoned");
            o.flush()?;
            o.producer.flush(Duration::from_secs(30))?;
            // Everything is written: from now on its topics are waited for as any source is.
            withdraw(&*o.log, &o.app, &o.name).context("withdrawing the publisher's declaration")?;
        }
        pb.finish_and_clear();
        Ok(Published { summary: sim.summary().clone(), bytes_by_topic, elapsed: started.elapsed(), planted: sim.planted().to_vec() })
    }
}

/// Prints what was published.
pub fn print_published(p: &Published, target: &str) {
    let s = &p.summary;
    println!(
        "Published {} simulated events in {} ({} events/s) to {target}.",
        report::count(s.events()),
        report::duration(p.elapsed),
        report::rate(s.events(), p.elapsed)
    );
    println!(
        "  {} sessions, {} orders ({} by the simulated fraud ring), GMV €{}.{:02}",
        report::count(s.sessions),
        report::count(s.orders),
        report::count(s.ring_orders),
        report::count((s.gmv_eur_minor / 100) as u64),
        s.gmv_eur_minor % 100
    );
}

/// `storeflow simulate`.
pub fn run(b: &Backends, traffic: &Traffic, app: &str) -> anyhow::Result<()> {
    for line in &b.banner {
        eprintln!("{line}");
    }
    let p = Publishing::new(b, traffic, 0, app)?.run(b, None)?;
    print_published(&p, &b.target);
    println!("  {:<28} {:>10} {:>10}", "topic", "events", "bytes");
    for (topic, n) in &p.summary.by_topic {
        println!(
            "  {:<28} {:>10} {:>10}",
            topic,
            report::count(*n),
            report::bytes(p.bytes_by_topic.get(topic).copied().unwrap_or(0))
        );
    }
    Ok(())
}
