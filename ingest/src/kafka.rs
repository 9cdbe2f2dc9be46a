//! The Kafka backend, on rdkafka (librdkafka 2.12, built from the bundled sources).
//!
//! Choices, each overridable through `properties` (any librdkafka name):
//! - producers: `enable.idempotence=true` and `acks=all` (no duplicates or reordering on
//!   retries), `compression.type=lz4` (fast, and Avro events of the same type compress well
//!   in a batch), `linger.ms=5` (batches form under load without adding visible latency),
//!   `partitioner=murmur2_random` (librdkafka's default is CRC32-based; murmur2 is the Java
//!   client's, and the embedded log's, so a key lands on the same partition everywhere);
//! - consumers: `partition.assignment.strategy=cooperative-sticky` (a rebalance moves only
//!   the partitions that must move), `enable.auto.commit=false` and
//!   `enable.auto.offset.store=false` (offsets are committed by the caller after its work is
//!   durable), `isolation.level=read_committed`;
//! - transactional producers: `transactional.id` as given (the runtime derives it from the
//!   processor and partition so a restarted instance fences the old one).
//!
//! Rebalance callbacks run inside `poll`: `pre_rebalance` hands revoked partitions to the
//! [`RebalanceListener`] with an [`OffsetCommitter`] bound to this consumer, before
//! librdkafka gives them up.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext, ConsumerGroupMetadata, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KHeader, Headers as _, Message as _, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::log::{Consumer, Log, OffsetCommitter, Producer, RebalanceListener, TransactionalProducer};
use crate::types::*;
use crate::{LogError, Result};

/// How to reach Kafka (`[kafka]` in `storeflow.toml`).
#[derive(Clone, Debug)]
pub struct KafkaSettings {
    /// Bootstrap servers, `host:port,host:port`.
    pub brokers: String,
    /// librdkafka properties, applied over storeflow's defaults.
    pub properties: BTreeMap<String, String>,
    /// Replication factor of topics storeflow creates (-1: the broker's default).
    pub replication_factor: i32,
    /// Timeout of admin, commit and transaction calls.
    pub timeout: Duration,
}

impl KafkaSettings {
    /// Settings for `brokers` with storeflow's defaults.
    pub fn new(brokers: &str) -> Self {
        KafkaSettings {
            brokers: brokers.to_string(),
            properties: BTreeMap::new(),
            replication_factor: -1,
            timeout: Duration::from_secs(30),
        }
    }

    fn config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in defaults {
            c.set(*k, *v);
        }
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}

fn kerr(context: &str, e: KafkaError) -> LogError {
    let retriable = match &e {
        KafkaError::Transaction(t) => t.is_retriable(),
        other => matches!(
            other.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::BrokerTransportFailure
                    | RDKafkaErrorCode::AllBrokersDown
                    | RDKafkaErrorCode::MessageTimedOut
                    | RDKafkaErrorCode::RequestTimedOut
                    | RDKafkaErrorCode::OperationTimedOut
                    | RDKafkaErrorCode::NotLeaderForPartition
                    | RDKafkaErrorCode::LeaderNotAvailable
                    | RDKafkaErrorCode::NetworkException
                    | RDKafkaErrorCode::NotEnoughReplicas
                    | RDKafkaErrorCode::NotEnoughReplicasAfterAppend
                    | RDKafkaErrorCode::CoordinatorLoadInProgress
                    | RDKafkaErrorCode::CoordinatorNotAvailable
                    | RDKafkaErrorCode::NotCoordinator
                    | RDKafkaErrorCode::QueueFull
            )
        ),
    };
    if let Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) = e.rdkafka_error_code() {
        return LogError::UnknownTopic(format!("{context}: {e}"));
    }
    // A refused property's value may be a secret (`sasl.password`, `sasl.jaas.config`):
    // name the property, never its value.
    let message = match &e {
        KafkaError::ClientConfig(_, desc, key, _) => format!("{context}: the Kafka client refuses property `{key}`: {desc}"),
        e => format!("{context}: {e}"),
    };
    LogError::Kafka { message, retriable }
}

/// A Kafka cluster.
pub struct KafkaLog {
    settings: KafkaSettings,
    admin: AdminClient<DefaultClientContext>,
    meta: BaseConsumer,
}

impl KafkaLog {
    /// Connects (lazily: librdkafka connects on first use) and checks the cluster answers.
    pub fn connect(settings: KafkaSettings) -> Result<KafkaLog> {
        let admin: AdminClient<DefaultClientContext> = settings
            .config(&[])
            .create()
            .map_err(|e| kerr("creating the Kafka admin client", e))?;
        let meta: BaseConsumer = settings
            .config(&[("group.id", "storeflow-metadata"), ("enable.auto.commit", "false")])
            .create()
            .map_err(|e| kerr("creating the Kafka metadata client", e))?;
        meta.fetch_metadata(None, settings.timeout)
            .map_err(|e| kerr(&format!("reaching Kafka at {}", settings.brokers), e))?;
        Ok(KafkaLog { settings, admin, meta })
    }

    /// The bootstrap servers.
    pub fn brokers(&self) -> &str {
        &self.settings.brokers
    }

    /// A partition's low and high watermarks, retrying while its leadership settles (a new
    /// topic answers `NotLeaderForPartition` for a moment after its creation).
    fn partition_watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64)> {
        let deadline = Instant::now() + self.settings.timeout;
        loop {
            match self.meta.fetch_watermarks(topic, partition, self.settings.timeout) {
                Ok(w) => return Ok(w),
                Err(e) => {
                    let err = kerr(&format!("watermarks of {topic}/{partition}"), e);
                    if !err.is_retriable() || Instant::now() > deadline {
                        return Err(err);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    fn partition_counts(&self) -> Result<HashMap<String, (u32, bool)>> {
        let md = self
            .meta
            .fetch_metadata(None, self.settings.timeout)
            .map_err(|e| kerr("fetching metadata", e))?;
        Ok(md
            .topics()
            .iter()
            .map(|t| {
                let ready = !t.partitions().is_empty() && t.partitions().iter().all(|p| p.leader() >= 0);
                (t.name().to_string(), (t.partitions().len() as u32, ready))
            })
            .collect())
    }
}

impl Log for KafkaLog {
    fn backend(&self) -> &'static str {
        "kafka"
    }

    fn create_topics(&self, specs: &[TopicSpec]) -> Result<()> {
        let existing = self.partition_counts()?;
        let mut new = Vec::new();
        for s in specs {
            match existing.get(&s.name) {
                Some((n, _)) if *n == s.partitions => {}
                Some((n, _)) => {
                    return Err(LogError::InvalidConfig(format!(
                        "topic {} exists with {n} partitions, not {}; partitions decide where keys live, so they are never changed silently",
                        s.name, s.partitions
                    )));
                }
                None => new.push(s),
            }
        }
        if new.is_empty() {
            return Ok(());
        }
        let retention: Vec<Option<String>> = new.iter().map(|s| s.retention.map(|d| d.as_millis().to_string())).collect();
        let topics: Vec<NewTopic<'_>> = new
            .iter()
            .zip(&retention)
            .map(|(s, r)| {
                let mut t = NewTopic::new(&s.name, s.partitions as i32, TopicReplication::Fixed(self.settings.replication_factor));
                if s.compact {
                    t = t.set("cleanup.policy", "compact");
                }
                if let Some(r) = r {
                    t = t.set("retention.ms", r);
                }
                t
            })
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(self.settings.timeout));
        let results = futures::executor::block_on(self.admin.create_topics(&topics, &opts))
            .map_err(|e| kerr("creating topics", e))?;
        for r in results {
            if let Err((name, code)) = r {
                if code != RDKafkaErrorCode::TopicAlreadyExists {
                    return Err(LogError::Kafka {
                        message: format!("creating topic {name}: {code}"),
                        retriable: false,
                    });
                }
            }
        }
        // Creation is asynchronous on the broker: wait until every partition has a leader.
        let deadline = Instant::now() + self.settings.timeout;
        loop {
            let now = self.partition_counts()?;
            if new.iter().all(|s| now.get(&s.name).is_some_and(|(n, ready)| *n == s.partitions && *ready)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(LogError::Timeout("waiting for new topics to get partition leaders".into()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn describe_topics(&self) -> Result<Vec<TopicInfo>> {
        let md = self
            .meta
            .fetch_metadata(None, self.settings.timeout)
            .map_err(|e| kerr("fetching metadata", e))?;
        let names: Vec<String> = md
            .topics()
            .iter()
            .map(|t| t.name().to_string())
            .filter(|n| !n.starts_with("__") && !n.starts_with('_'))
            .collect();
        let resources: Vec<ResourceSpecifier<'_>> = names.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
        let mut compact: HashMap<String, bool> = HashMap::new();
        if !resources.is_empty() {
            let opts = AdminOptions::new().request_timeout(Some(self.settings.timeout));
            if let Ok(configs) = futures::executor::block_on(self.admin.describe_configs(&resources, &opts)) {
                for (name, c) in names.iter().zip(configs) {
                    if let Ok(rc) = c {
                        let is = rc.get("cleanup.policy").and_then(|e| e.value.as_deref()).is_some_and(|v| v.contains("compact"));
                        compact.insert(name.clone(), is);
                    }
                }
            }
        }
        let mut out = Vec::new();
        for t in md.topics() {
            if !names.iter().any(|n| n == t.name()) {
                continue;
            }
            let mut partitions = Vec::new();
            for p in t.partitions() {
                let (lo, hi) = self.partition_watermarks(t.name(), p.id())?;
                partitions.push(PartitionInfo { partition: p.id() as u32, start: lo.max(0) as u64, end: hi.max(0) as u64 });
            }
            partitions.sort_by_key(|p| p.partition);
            out.push(TopicInfo { name: t.name().to_string(), compact: compact.get(t.name()).copied().unwrap_or(false), partitions });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn producer(&self) -> Result<Box<dyn Producer>> {
        let producer: ThreadedProducer<DeliveryContext> = self
            .settings
            .config(&[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("compression.type", "lz4"),
                ("linger.ms", "5"),
                ("partitioner", "murmur2_random"),
            ])
            .create_with_context(DeliveryContext)
            .map_err(|e| kerr("creating a producer", e))?;
        Ok(Box::new(KafkaProducer { producer, timeout: self.settings.timeout }))
    }

    fn consumer(&self, config: ConsumerConfig, listener: Option<Box<dyn RebalanceListener>>) -> Result<Box<dyn Consumer>> {
        let reset = match config.reset {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
        };
        let isolation = if config.read_committed { "read_committed" } else { "read_uncommitted" };
        let mut cc = self.settings.config(&[
            ("group.id", &config.group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", reset),
            ("isolation.level", isolation),
            (
                "partition.assignment.strategy",
                if config.co_partitioned { "range" } else { "cooperative-sticky" },
            ),
            ("enable.partition.eof", "false"),
        ]);
        for (k, v) in &config.properties {
            cc.set(k, v);
        }
        let consumer: BaseConsumer<RebalanceContext> = cc
            .create_with_context(RebalanceContext { listener: Mutex::new(listener), timeout: self.settings.timeout })
            .map_err(|e| kerr("creating a consumer", e))?;
        Ok(Box::new(KafkaConsumer {
            consumer: Some(consumer),
            config: cc,
            subscription: None,
            group: config.group,
            positions: BTreeMap::new(),
            timeout: self.settings.timeout,
        }))
    }

    fn transactional_producer(&self, transactional_id: &str) -> Result<Box<dyn TransactionalProducer>> {
        let producer: ThreadedProducer<TxnContext> = self
            .settings
            .config(&[
                ("transactional.id", transactional_id),
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("compression.type", "lz4"),
                ("linger.ms", "5"),
                ("partitioner", "murmur2_random"),
                ("transaction.timeout.ms", "60000"),
            ])
            .create_with_context(TxnContext::default())
            .map_err(|e| kerr("creating a transactional producer", e))?;
        producer
            .init_transactions(self.settings.timeout)
            .map_err(|e| txn_err(transactional_id, "initializing transactions", e))?;
        Ok(Box::new(KafkaTransaction {
            producer,
            tid: transactional_id.to_string(),
            timeout: self.settings.timeout,
        }))
    }

    fn watermarks(&self, partitions: &[TopicPartition]) -> Result<Vec<(u64, u64)>> {
        partitions
            .iter()
            .map(|tp| self.partition_watermarks(&tp.topic, tp.partition as i32).map(|(lo, hi)| (lo.max(0) as u64, hi.max(0) as u64)))
            .collect()
    }

    fn committed_offsets(&self, group: &str, partitions: &[TopicPartition]) -> Result<Vec<Option<u64>>> {
        let c: BaseConsumer = self
            .settings
            .config(&[("group.id", group), ("enable.auto.commit", "false")])
            .create()
            .map_err(|e| kerr("creating a consumer", e))?;
        let mut tpl = TopicPartitionList::new();
        for tp in partitions {
            tpl.add_partition(&tp.topic, tp.partition as i32);
        }
        let got = c.committed_offsets(tpl, self.settings.timeout).map_err(|e| kerr("fetching committed offsets", e))?;
        Ok(partitions
            .iter()
            .map(|tp| match got.find_partition(&tp.topic, tp.partition as i32).map(|e| e.offset()) {
                Some(Offset::Offset(o)) if o >= 0 => Some(o as u64),
                _ => None,
            })
            .collect())
    }

    fn list_groups(&self) -> Result<Vec<String>> {
        let list = self.meta.fetch_group_list(None, self.settings.timeout).map_err(|e| kerr("listing consumer groups", e))?;
        let mut names: Vec<String> = list.groups().iter().map(|g| g.name().to_string()).collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// From the group coordinator (`DescribeGroups`): its members now.
    fn group_members(&self, group: &str) -> Result<Option<usize>> {
        let list = self.meta.fetch_group_list(Some(group), self.settings.timeout).map_err(|e| kerr(&format!("describing group {group}"), e))?;
        Ok(Some(list.groups().iter().filter(|g| g.name() == group).map(|g| g.members().len()).sum()))
    }

    fn reset_offsets(&self, group: &str, offsets: &[(TopicPartition, u64)]) -> Result<()> {
        if let Some(n) = self.group_members(group)?
            && n > 0
        {
            return Err(LogError::NotOwner { group: group.to_string(), partition: format!("(the group has {n} live members)") });
        }
        if offsets.is_empty() {
            return Ok(());
        }
        // A consumer that never joins commits for the empty group (the coordinator accepts
        // a commit without a generation while the group has no members).
        let c: BaseConsumer = self
            .settings
            .config(&[("group.id", group), ("enable.auto.commit", "false")])
            .create()
            .map_err(|e| kerr("creating a consumer", e))?;
        let mut tpl = TopicPartitionList::new();
        for (tp, o) in offsets {
            tpl.add_partition_offset(&tp.topic, tp.partition as i32, Offset::Offset(*o as i64))
                .map_err(|e| kerr("building an offset list", e))?;
        }
        c.commit(&tpl, CommitMode::Sync).map_err(|e| kerr(&format!("committing offsets of group {group}"), e))
    }

    fn offsets_for_time(&self, partitions: &[TopicPartition], millis: i64) -> Result<Vec<u64>> {
        let mut tpl = TopicPartitionList::new();
        for tp in partitions {
            tpl.add_partition_offset(&tp.topic, tp.partition as i32, Offset::Offset(millis))
                .map_err(|e| kerr("building an offset list", e))?;
        }
        let got = self.meta.offsets_for_times(tpl, self.settings.timeout).map_err(|e| kerr("looking offsets up by time", e))?;
        let marks = self.watermarks(partitions)?;
        Ok(partitions
            .iter()
            .zip(marks)
            .map(|(tp, (_, end))| match got.find_partition(&tp.topic, tp.partition as i32).map(|e| e.offset()) {
                Some(Offset::Offset(o)) if o >= 0 => o as u64,
                // No record at or after the time: the end.
                _ => end,
            })
            .collect())
    }
}

// ------------------------------------------------------------------ producer

struct DeliveryContext;

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<oneshot::Sender<Result<Delivery>>>;

    fn delivery(&self, result: &DeliveryResult<'_>, tx: Self::DeliveryOpaque) {
        let r = match result {
            Ok(m) => Ok(Delivery { partition: m.partition() as u32, offset: m.offset() as u64 }),
            Err((e, m)) => Err(kerr(&format!("delivering to {}", m.topic()), e.clone())),
        };
        let _ = tx.send(r);
    }
}

fn headers(hs: &[Header]) -> Option<OwnedHeaders> {
    if hs.is_empty() {
        return None;
    }
    let mut out = OwnedHeaders::new_with_capacity(hs.len());
    for h in hs {
        out = out.insert(KHeader { key: &h.key, value: Some(&h.value) });
    }
    Some(out)
}

/// Enqueues `rec`, backing off while librdkafka's queue is full.
fn enqueue<C: ProducerContext>(
    producer: &ThreadedProducer<C>,
    rec: &ProduceRecord,
    opaque: C::DeliveryOpaque,
    timeout: Duration,
) -> Result<()> {
    let mut r = BaseRecord::with_opaque_to(&rec.topic, opaque);
    if let Some(k) = &rec.key {
        r = r.key(k.as_slice());
    }
    if let Some(v) = &rec.value {
        r = r.payload(v.as_slice());
    }
    if let Some(p) = rec.partition {
        r = r.partition(p as i32);
    }
    if let Some(ts) = rec.timestamp {
        r = r.timestamp(ts);
    }
    if let Some(h) = headers(&rec.headers) {
        r = r.headers(h);
    }
    let deadline = Instant::now() + timeout;
    // The queue drains as the broker acknowledges; wait a little, up to 100 ms.
    let mut backoff = crate::Backoff::new(Duration::from_millis(1), Duration::from_millis(100));
    loop {
        match producer.send(r) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) if Instant::now() < deadline => {
                r = back;
                std::thread::sleep(backoff.next());
            }
            Err((e, _)) => return Err(kerr(&format!("producing to {}", rec.topic), e)),
        }
    }
}

struct KafkaProducer {
    producer: ThreadedProducer<DeliveryContext>,
    timeout: Duration,
}

impl Producer for KafkaProducer {
    fn send(&self, record: ProduceRecord) -> Result<DeliveryFuture> {
        let (tx, rx) = oneshot::channel();
        enqueue(&self.producer, &record, Box::new(tx), self.timeout)?;
        Ok(DeliveryFuture::pending(async move { rx.await.unwrap_or(Err(LogError::Closed)) }))
    }

    fn flush(&self, timeout: Duration) -> Result<()> {
        self.producer.flush(timeout).map_err(|e| kerr("flushing the producer", e))
    }
}

impl Drop for KafkaProducer {
    fn drop(&mut self) {
        if let Err(e) = self.producer.flush(self.timeout) {
            tracing::warn!(error = %e, "records still unacknowledged when the producer closed");
        }
    }
}

// ------------------------------------------------------------------ consumer

struct RebalanceContext {
    listener: Mutex<Option<Box<dyn RebalanceListener>>>,
    timeout: Duration,
}

impl ClientContext for RebalanceContext {}

fn tps_of(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements().iter().map(|e| TopicPartition::new(e.topic(), e.partition() as u32)).collect()
}

struct ConsumerCommitter<'a> {
    consumer: &'a BaseConsumer<RebalanceContext>,
}

impl OffsetCommitter for ConsumerCommitter<'_> {
    fn commit(&mut self, offsets: &[(TopicPartition, u64)]) -> Result<()> {
        commit_sync(self.consumer, offsets)
    }

    fn group_metadata(&self) -> Option<GroupMetadata> {
        let cgm = self.consumer.group_metadata()?;
        Some(GroupMetadata { group: String::new(), member: String::new(), generation: 0, backend: Some(Arc::new(cgm)) })
    }
}

fn commit_sync(consumer: &BaseConsumer<RebalanceContext>, offsets: &[(TopicPartition, u64)]) -> Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for (tp, o) in offsets {
        tpl.add_partition_offset(&tp.topic, tp.partition as i32, Offset::Offset(*o as i64))
            .map_err(|e| kerr("building an offset list", e))?;
    }
    consumer.commit(&tpl, CommitMode::Sync).map_err(|e| kerr("committing offsets", e))
}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let tps = tps_of(tpl);
                tracing::info!(partitions = ?tps, "partitions revoked");
                if let Some(l) = self.listener.lock().expect("listener lock").as_mut() {
                    let mut committer = ConsumerCommitter { consumer };
                    l.on_revoked(&tps, &mut committer);
                }
            }
            Rebalance::Error(e) => tracing::error!(error = %e, timeout = ?self.timeout, "rebalance error"),
            Rebalance::Assign(_) => {}
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let tps = tps_of(tpl);
            tracing::info!(partitions = ?tps, "partitions assigned");
            if let Some(l) = self.listener.lock().expect("listener lock").as_mut() {
                l.on_assigned(&tps);
            }
        }
    }
}

struct KafkaConsumer {
    consumer: Option<BaseConsumer<RebalanceContext>>,
    /// What it was created from, to create it again after a fatal error.
    config: ClientConfig,
    /// The topics it subscribed to, if it is a group member (else it was assigned partitions).
    subscription: Option<Vec<String>>,
    group: String,
    positions: BTreeMap<TopicPartition, u64>,
    timeout: Duration,
}

impl KafkaConsumer {
    fn c(&self) -> Result<&BaseConsumer<RebalanceContext>> {
        self.consumer.as_ref().ok_or(LogError::Closed)
    }

    /// After a fatal consumer error librdkafka's handle is dead for good: every later poll
    /// fails the same way. Seen on a broker restart: the group coordinator came back, the
    /// static member's session had timed out, and its rejoin was refused as "fenced by
    /// another consumer with the same group.instance.id" — the other being itself. Without
    /// this the processor polled a dead handle forever with its partitions gone. The new
    /// handle carries the same listener: partitions still assigned to the old one are
    /// revoked through it first (as librdkafka does when a member loses its assignment),
    /// then the new one joins the group (or takes the same partitions at the same positions)
    /// and its assignment arrives through the listener at a later poll.
    fn recreate(&mut self, why: &KafkaError) -> Result<()> {
        let Some(old) = self.consumer.take() else { return Err(LogError::Closed) };
        let mut listener = old.context().listener.lock().expect("listener lock").take();
        if let (Some(l), Ok(assigned)) = (listener.as_mut(), old.assignment()) {
            let tps = tps_of(&assigned);
            if !tps.is_empty() && self.subscription.is_some() {
                let mut committer = ConsumerCommitter { consumer: &old };
                l.on_revoked(&tps, &mut committer);
            }
        }
        std::thread::spawn(move || drop(old)); // the same care as Drop
        tracing::warn!(group = %self.group, error = %why, "the Kafka consumer failed for good; creating it again");
        let consumer: BaseConsumer<RebalanceContext> = self
            .config
            .create_with_context(RebalanceContext { listener: Mutex::new(listener), timeout: self.timeout })
            .map_err(|e| kerr("creating the consumer again", e))?;
        match &self.subscription {
            Some(topics) => {
                let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
                consumer.subscribe(&topics).map_err(|e| kerr("subscribing again", e))?;
            }
            None if !self.positions.is_empty() => {
                let mut tpl = TopicPartitionList::new();
                for (tp, o) in &self.positions {
                    tpl.add_partition_offset(&tp.topic, tp.partition as i32, Offset::Offset(*o as i64))
                        .map_err(|e| kerr("building an assignment", e))?;
                }
                consumer.assign(&tpl).map_err(|e| kerr("assigning partitions again", e))?;
            }
            None => {}
        }
        self.consumer = Some(consumer);
        Ok(())
    }
}

impl Consumer for KafkaConsumer {
    fn subscribe(&mut self, topics: &[&str]) -> Result<()> {
        self.c()?.subscribe(topics).map_err(|e| kerr("subscribing", e))?;
        self.subscription = Some(topics.iter().map(|t| t.to_string()).collect());
        Ok(())
    }

    fn assign(&mut self, partitions: &[(TopicPartition, u64)]) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        for (tp, o) in partitions {
            tpl.add_partition_offset(&tp.topic, tp.partition as i32, Offset::Offset(*o as i64))
                .map_err(|e| kerr("building an assignment", e))?;
            self.positions.insert(tp.clone(), *o);
        }
        self.c()?.assign(&tpl).map_err(|e| kerr("assigning partitions", e))
    }

    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Record>> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        let consumer = self.consumer.as_ref().ok_or(LogError::Closed)?;
        while out.len() < max {
            let wait = if out.is_empty() { deadline.saturating_duration_since(Instant::now()) } else { Duration::ZERO };
            match consumer.poll(wait) {
                None => {
                    if !out.is_empty() || Instant::now() >= deadline {
                        break;
                    }
                }
                Some(Ok(m)) => {
                    let hs = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|x| Header { key: x.key.to_string(), value: x.value.map(<[u8]>::to_vec).unwrap_or_default() })
                                .collect()
                        })
                        .unwrap_or_default();
                    let rec = Record {
                        topic: Arc::from(m.topic()),
                        partition: m.partition() as u32,
                        offset: m.offset() as u64,
                        timestamp: m.timestamp().to_millis().unwrap_or(0),
                        key: m.key().map(bytes::Bytes::copy_from_slice),
                        value: m.payload().map(bytes::Bytes::copy_from_slice),
                        headers: hs,
                    };
                    self.positions.insert(rec.tp(), rec.offset + 1);
                    out.push(rec);
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => {
                    if matches!(e, KafkaError::MessageConsumptionFatal(_)) {
                        self.recreate(&e)?;
                        // Retriable: the caller polls again, and the new handle's
                        // assignment arrives through the listener.
                        return Err(LogError::Kafka { message: format!("consuming: {e}; the consumer was created again"), retriable: true });
                    }
                    tracing::warn!(error = %e, group = %self.group, "consumer error (retrying)");
                    if out.is_empty() && Instant::now() >= deadline {
                        break;
                    }
                }
            }
        }
        // Forget positions of partitions no longer assigned.
        if let Ok(a) = consumer.assignment() {
            let now: std::collections::HashSet<TopicPartition> = tps_of(&a).into_iter().collect();
            self.positions.retain(|tp, _| now.contains(tp));
        }
        Ok(out)
    }

    fn seek(&mut self, partition: &TopicPartition, offset: u64) -> Result<()> {
        self.c()?
            .seek(&partition.topic, partition.partition as i32, Offset::Offset(offset as i64), self.timeout)
            .map_err(|e| kerr(&format!("seeking {partition}"), e))?;
        self.positions.insert(partition.clone(), offset);
        Ok(())
    }

    fn position(&self, partition: &TopicPartition) -> Option<u64> {
        // librdkafka's own position also moves past transaction markers, which are never
        // returned as records; take the larger of the two.
        let ours = self.positions.get(partition).copied();
        let theirs = self.consumer.as_ref().and_then(|c| c.position().ok()).and_then(|tpl| {
            match tpl.find_partition(&partition.topic, partition.partition as i32)?.offset() {
                Offset::Offset(o) if o >= 0 => Some(o as u64),
                _ => None,
            }
        });
        match (ours, theirs) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        self.consumer.as_ref().and_then(|c| c.assignment().ok()).map(|t| tps_of(&t)).unwrap_or_default()
    }

    fn commit(&mut self, offsets: &[(TopicPartition, u64)]) -> Result<()> {
        commit_sync(self.c()?, offsets)
    }

    fn group_metadata(&self) -> Option<GroupMetadata> {
        let cgm = self.consumer.as_ref()?.group_metadata()?;
        Some(GroupMetadata {
            group: self.group.clone(),
            member: String::new(),
            generation: 0,
            backend: Some(Arc::new(cgm)),
        })
    }

    fn close(mut self: Box<Self>) -> Result<()> {
        let Some(consumer) = self.consumer.take() else { return Ok(()) };
        // Leave the group deliberately: the revocation runs through the listener here.
        consumer.unsubscribe();
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until {
            if consumer.poll(Duration::from_millis(50)).is_none() && consumer.assignment().map(|a| a.count() == 0).unwrap_or(true) {
                break;
            }
        }
        // Dropping can hang in rd_kafka_destroy (STACK.md): do it on a side thread and give up
        // waiting after the timeout rather than stall the caller.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(consumer);
            let _ = tx.send(());
        });
        if rx.recv_timeout(self.timeout).is_err() {
            tracing::warn!(group = %self.group, "the Kafka consumer did not close within {:?}; leaving it behind", self.timeout);
        }
        Ok(())
    }
}

impl Drop for KafkaConsumer {
    fn drop(&mut self) {
        if let Some(c) = self.consumer.take() {
            // Same care as close(), without waiting.
            std::thread::spawn(move || drop(c));
        }
    }
}

// ------------------------------------------------------------------ transactions

#[derive(Default)]
struct TxnContext {
    failed: Mutex<Option<String>>,
    /// Per partition, the offset after the last record delivered in this transaction.
    ends: Mutex<BTreeMap<TopicPartition, u64>>,
}

impl ClientContext for TxnContext {}

impl ProducerContext for TxnContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                let tp = TopicPartition::new(m.topic(), m.partition() as u32);
                let end = m.offset() as u64 + 1;
                let mut ends = self.ends.lock().expect("lock");
                let e = ends.entry(tp).or_default();
                *e = (*e).max(end);
            }
            Err((e, m)) => {
                let mut f = self.failed.lock().expect("lock");
                f.get_or_insert_with(|| format!("delivering to {}: {e}", m.topic()));
            }
        }
    }
}

fn txn_err(tid: &str, what: &str, e: KafkaError) -> LogError {
    if let KafkaError::Transaction(t) = &e {
        if matches!(t.code(), RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch) {
            return LogError::Fenced(tid.to_string());
        }
        if t.is_fatal() {
            return LogError::Kafka { message: format!("{what} ({tid}): fatal: {t}"), retriable: false };
        }
        if t.txn_requires_abort() {
            return LogError::Transaction(format!("{what} ({tid}): {t}; the transaction must be aborted"));
        }
    }
    kerr(&format!("{what} ({tid})"), e)
}

struct KafkaTransaction {
    producer: ThreadedProducer<TxnContext>,
    tid: String,
    timeout: Duration,
}

impl TransactionalProducer for KafkaTransaction {
    fn begin(&mut self) -> Result<()> {
        *self.producer.context().failed.lock().expect("lock") = None;
        self.producer.context().ends.lock().expect("lock").clear();
        self.producer.begin_transaction().map_err(|e| txn_err(&self.tid, "beginning a transaction", e))
    }

    fn send(&mut self, record: ProduceRecord) -> Result<()> {
        enqueue(&self.producer, &record, (), self.timeout).map_err(|e| match e {
            LogError::Kafka { message, .. } if message.contains("fenced") => LogError::Fenced(self.tid.clone()),
            other => other,
        })
    }

    fn send_offsets(&mut self, offsets: &[(TopicPartition, u64)], group: &GroupMetadata) -> Result<()> {
        let cgm = group
            .backend
            .as_ref()
            .and_then(|b| b.downcast_ref::<ConsumerGroupMetadata>())
            .ok_or_else(|| LogError::Transaction("group metadata does not come from a Kafka consumer".into()))?;
        let mut tpl = TopicPartitionList::new();
        for (tp, o) in offsets {
            tpl.add_partition_offset(&tp.topic, tp.partition as i32, Offset::Offset(*o as i64))
                .map_err(|e| kerr("building an offset list", e))?;
        }
        self.producer
            .send_offsets_to_transaction(&tpl, cgm, self.timeout)
            .map_err(|e| txn_err(&self.tid, "adding offsets to the transaction", e))
    }

    fn commit(&mut self) -> Result<Vec<(TopicPartition, u64)>> {
        self.producer
            .commit_transaction(self.timeout)
            .map_err(|e| txn_err(&self.tid, "committing", e))?;
        if let Some(f) = self.producer.context().failed.lock().expect("lock").take() {
            // commit_transaction fails when a delivery failed; this is a second guard.
            return Err(LogError::Transaction(f));
        }
        // commit_transaction flushed: every delivery report of this transaction has arrived.
        Ok(std::mem::take(&mut *self.producer.context().ends.lock().expect("lock")).into_iter().collect())
    }

    fn abort(&mut self) -> Result<()> {
        self.producer
            .abort_transaction(self.timeout)
            .map_err(|e| txn_err(&self.tid, "aborting", e))
    }
}
