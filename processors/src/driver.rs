//! `TestDriver`: runs processors on in-memory records, with controllable time — no broker,
//! no disk — the way Kafka Streams' `TopologyTestDriver` does.
//!
//! ```ignore
//! let mut d = TestDriver::new(Inventory::new(Default::default()));
//! d.pipe(Event::StockReceived(..));
//! d.pipe(Event::OrderPlaced(..));
//! let made: Vec<Event> = d.outputs("inventory.reservations");
//! d.advance_time(t + 15 * 60_000);           // fire reservation timeouts
//! assert_eq!(d.store("inventory", STOCK, "SKU-1|wh-1"), Some(..));
//! ```
//!
//! Records are partitioned with Kafka's murmur2 over `partitions` (4 by default), each
//! partition of a processor is a task with its own in-memory stores, and a record's outputs
//! go to every processor of the driver that reads their topic (chains). Every record is
//! committed right after it is processed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use storeflow_avro::Codec;
use storeflow_ingest::partitioner::partition_for_key;
use storeflow_ingest::{ProduceRecord, Record};

use crate::flow::Flow;
use crate::runtime::align::step_of_record;
use crate::runtime::task::{DynProcessor, Outcome, Step, TaskCore, dlq_headers};
use crate::state::backend::MemBackend;
use crate::state::encoding::{decode_value, full_key, split_key};
use crate::state::store::{Store, sweep_expired};
use crate::state::task_state::TaskState;
use crate::wire::Wire;

/// A record that went to a dead-letter topic.
#[derive(Clone, Debug)]
pub struct DeadLetter {
    /// The processor that gave up.
    pub processor: String,
    /// Why.
    pub reason: String,
    /// The original topic.
    pub topic: String,
    /// The original offset.
    pub offset: u64,
    /// The original value.
    pub value: Option<Vec<u8>>,
}

struct Node {
    processor: Box<dyn DynProcessor>,
    flow: Arc<Flow>,
    inputs: Vec<String>,
    globals: Vec<String>,
    tasks: BTreeMap<u32, TaskCore>,
}

/// Runs processors without a log.
pub struct TestDriver {
    codec: Arc<Codec>,
    partitions: u32,
    nodes: Vec<Node>,
    /// topic → partition → records.
    topics: BTreeMap<String, Vec<Vec<Record>>>,
    /// Every record in the order it was written: (topic, partition, offset).
    written: Vec<(String, u32, u64)>,
    queue: VecDeque<(String, u32, u64)>,
    checkpoint: u64,
    now: i64,
}

impl TestDriver {
    /// A driver running one processor.
    pub fn new(processor: impl DynProcessor + 'static) -> Self {
        TestDriver::chain(vec![Box::new(processor)])
    }

    /// A driver running several processors; outputs of one feed those that read their topic.
    pub fn chain(processors: Vec<Box<dyn DynProcessor>>) -> Self {
        TestDriver {
            codec: Arc::new(Codec::embedded().expect("the contract's schemas load")),
            partitions: 4,
            nodes: processors
                .into_iter()
                .map(|p| {
                    let flow = p.flow();
                    Node { inputs: flow.inputs(), flow: Arc::new(flow), globals: p.global_inputs(), processor: p, tasks: BTreeMap::new() }
                })
                .collect(),
            topics: BTreeMap::new(),
            written: Vec::new(),
            queue: VecDeque::new(),
            checkpoint: 0,
            now: i64::MIN,
        }
    }

    /// Uses `n` partitions per topic (before piping anything).
    pub fn with_partitions(mut self, n: u32) -> Self {
        assert!(self.written.is_empty(), "set partitions before piping records");
        self.partitions = n.max(1);
        self
    }

    /// Writes `value` to its topic under its key, then runs every processor until nothing is
    /// left to do.
    pub fn pipe<T: Wire>(&mut self, value: T) {
        let (topic, key) = (value.topic(), value.key());
        self.pipe_to(&topic, &key, value);
    }

    /// Writes `value` to `topic` under `key`, then runs every processor to quiescence.
    pub fn pipe_to<T: Wire>(&mut self, topic: &str, key: &str, value: T) {
        let bytes = value.encode(&self.codec).unwrap_or_else(|e| panic!("cannot encode the piped {}: {e}", value.kind()));
        self.append(ProduceRecord {
            topic: topic.to_string(),
            partition: None,
            key: Some(key.as_bytes().to_vec()),
            value: Some(bytes),
            headers: vec![],
            timestamp: Some(value.time()),
        });
        self.run();
    }

    /// Writes raw bytes (for example a corrupt value) to `topic`, then runs to quiescence.
    pub fn pipe_raw(&mut self, topic: &str, key: &str, value: &[u8], timestamp: i64) {
        self.append(ProduceRecord {
            topic: topic.to_string(),
            partition: None,
            key: Some(key.as_bytes().to_vec()),
            value: Some(value.to_vec()),
            headers: vec![],
            timestamp: Some(timestamp),
        });
        self.run();
    }

    /// Moves every task's stream time to at least `to` (ms) and fires the timers due at or
    /// before it — like time passing with no traffic.
    pub fn advance_time(&mut self, to: i64) {
        self.now = self.now.max(to);
        for n in 0..self.nodes.len() {
            let parts: Vec<u32> = self.nodes[n].tasks.keys().copied().collect();
            for p in parts {
                self.fire_until(n, p, to.saturating_add(1));
                let task = self.nodes[n].tasks.get_mut(&p).expect("listed");
                task.state.stream_time = task.state.stream_time.max(to);
            }
        }
        self.run();
    }

    /// Fires the timers of task `p` of node `n` due before `before`, earliest first.
    fn fire_until(&mut self, n: usize, p: u32, before: i64) {
        loop {
            let node = &mut self.nodes[n];
            let Some(task) = node.tasks.get_mut(&p) else { return };
            let Some(timer) = task.next_timer().expect("timers in memory") else { return };
            if timer.at >= before {
                return;
            }
            node.processor.fire_timer(task, &self.codec, &timer).expect("firing a timer on in-memory state");
            self.flush(n, p);
        }
    }

    /// Every record written to `topic` so far, decoded, in the order written.
    pub fn outputs<T: Wire>(&self, topic: &str) -> Vec<T> {
        self.records(topic)
            .into_iter()
            .filter_map(|r| r.value.as_deref().map(|v| T::decode(&self.codec, v)))
            .map(|r| r.unwrap_or_else(|e| panic!("an output on {topic} does not decode: {e}")))
            .collect()
    }

    /// Every record written to `topic` so far, raw, in the order written.
    pub fn records(&self, topic: &str) -> Vec<Record> {
        self.written
            .iter()
            .filter(|(t, _, _)| t == topic)
            .map(|(t, p, o)| self.topics[t][*p as usize][*o as usize].clone())
            .collect()
    }

    /// The records dead-lettered from `topic` (they are on `<topic>.dlq`).
    pub fn dlq(&self, topic: &str) -> Vec<DeadLetter> {
        let h = |r: &Record, k: &str| r.header(k).map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default();
        self.records(&storeflow_avro::dlq_topic(topic))
            .iter()
            .map(|r| DeadLetter {
                processor: h(r, dlq_headers::PROCESSOR),
                reason: h(r, dlq_headers::REASON),
                topic: h(r, dlq_headers::TOPIC),
                offset: h(r, dlq_headers::OFFSET).parse().unwrap_or(0),
                value: r.value.as_ref().map(|v| v.to_vec()),
            })
            .collect()
    }

    /// The value of `key` in `store` of `processor`, from whichever partition holds it.
    pub fn store<V: DeserializeOwned>(&mut self, processor: &str, store: Store<V>, key: &str) -> Option<V> {
        let node = self.nodes.iter_mut().find(|n| n.processor.name() == processor)?;
        for task in node.tasks.values_mut() {
            if let Some(bytes) = task.state.get(&full_key(store.name, key)).expect("in-memory state") {
                return Some(decode_value(&bytes).unwrap_or_else(|e| panic!("{}/{key}: {e}", store.name)));
            }
        }
        None
    }

    /// Every entry of `store` of `processor` whose key starts with `prefix`, over all
    /// partitions, sorted by key.
    pub fn store_scan<V: DeserializeOwned>(&mut self, processor: &str, store: Store<V>, prefix: &str) -> Vec<(String, V)> {
        let Some(node) = self.nodes.iter_mut().find(|n| n.processor.name() == processor) else { return vec![] };
        let start = full_key(store.name, prefix);
        let mut end = full_key(store.name, prefix);
        end.push(0xff);
        let mut out = Vec::new();
        for task in node.tasks.values_mut() {
            for (k, v) in task.state.scan(&start, &end).expect("in-memory state") {
                out.push((split_key(&k).1.to_string(), decode_value(&v).expect("state decodes")));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// How many entries `store` of `processor` holds over all partitions, and their size in
    /// bytes (keys and encoded values) — for measuring that state stays bounded.
    pub fn store_size(&mut self, processor: &str, store: &str) -> (usize, usize) {
        let Some(node) = self.nodes.iter_mut().find(|n| n.processor.name() == processor) else { return (0, 0) };
        let start = full_key(store, "");
        let mut end = full_key(store, "");
        end.push(0xff);
        let (mut entries, mut bytes) = (0, 0);
        for task in node.tasks.values_mut() {
            for (k, v) in task.state.scan(&start, &end).expect("in-memory state") {
                entries += 1;
                bytes += k.len() + v.len();
            }
        }
        (entries, bytes)
    }

    /// Forgets every record written so far (outputs included), keeping the processors' state:
    /// long runs such as benchmarks stay flat in memory. Only between pipes.
    pub fn forget_records(&mut self) {
        assert!(self.queue.is_empty(), "records are still in flight");
        self.topics.clear();
        self.written.clear();
    }

    fn append(&mut self, rec: ProduceRecord) {
        let p = match (rec.partition, &rec.key) {
            (Some(p), _) => p % self.partitions,
            (None, Some(k)) => partition_for_key(k, self.partitions),
            (None, None) => 0,
        };
        let parts = self.topics.entry(rec.topic.clone()).or_insert_with(|| vec![Vec::new(); self.partitions as usize]);
        let offset = parts[p as usize].len() as u64;
        parts[p as usize].push(Record {
            topic: Arc::from(rec.topic.as_str()),
            partition: p,
            offset,
            timestamp: rec.timestamp.unwrap_or(self.now),
            key: rec.key.map(bytes::Bytes::from),
            value: rec.value.map(bytes::Bytes::from),
            headers: rec.headers,
        });
        self.written.push((rec.topic.clone(), p, offset));
        self.queue.push_back((rec.topic, p, offset));
    }

    fn run(&mut self) {
        while let Some((topic, p, offset)) = self.queue.pop_front() {
            let record = self.topics[&topic][p as usize][offset as usize].clone();
            for node in self.nodes.iter_mut().filter(|n| n.globals.contains(&topic)) {
                node.processor.handle_global(&self.codec, &record);
            }
            for n in 0..self.nodes.len() {
                if !self.nodes[n].inputs.contains(&topic) {
                    continue;
                }
                let node = &mut self.nodes[n];
                let flow = node.flow.clone();
                node.tasks.entry(p).or_insert_with(|| TaskCore::new(p, TaskState::new(Box::new(MemBackend::default())), flow, 0));
                // Timers due before the record go first, as in the runtime.
                self.fire_until(n, p, record.timestamp);
                let node = &mut self.nodes[n];
                let slot = node.flow.group_of(&topic).unwrap_or(0);
                let task = node.tasks.get_mut(&p).expect("just made");
                let time = record.timestamp.max(task.state.stream_time);
                let step = Step { slot, time, cause: step_of_record(&record) };
                let mut attempts = 0;
                loop {
                    match node.processor.handle(task, &self.codec, &record, step) {
                        Outcome::Retry(reason) if attempts < 3 => {
                            attempts += 1;
                            tracing::warn!(%reason, "transient error in the test driver; retrying");
                        }
                        Outcome::Retry(reason) => panic!("{} keeps failing transiently on {topic}/{p}@{offset}: {reason}", node.processor.name()),
                        _ => break,
                    }
                }
                self.flush(n, p);
            }
        }
    }

    /// Commits a task: applies its state and publishes its pending records.
    fn flush(&mut self, n: usize, p: u32) {
        self.checkpoint += 1;
        let task = self.nodes[n].tasks.get_mut(&p).expect("task exists");
        sweep_expired(&mut task.state).expect("in-memory state");
        task.state.accept();
        task.state.apply_committed(self.checkpoint).expect("in-memory state");
        let pending = std::mem::take(&mut task.pending);
        for rec in pending {
            self.append(rec);
        }
    }
}
