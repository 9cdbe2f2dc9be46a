//! One task: a processor's work on one partition (of every input topic at once). Shared by
//! the log-driven runtime and the test driver: decode, process, keep or drop the record's
//! state writes, encode outputs, route failures to the dead-letter topic, fire timers.

use std::sync::Arc;

use storeflow_avro::Codec;
use storeflow_ingest::{Header, ProduceRecord, Record};

use crate::ctx::{Ctx, sweep_expired, take_due_timers};
use crate::processor::{Input, ProcessError, Processor, Timer};
use crate::store::TaskState;
use crate::wire::Wire;
use crate::RuntimeError;

/// Header names on dead-letter records.
pub mod dlq_headers {
    /// The processor that gave up on the record.
    pub const PROCESSOR: &str = "storeflow.dlq.processor";
    /// Why.
    pub const REASON: &str = "storeflow.dlq.reason";
    /// Where the record came from.
    pub const TOPIC: &str = "storeflow.dlq.topic";
    /// Its partition there.
    pub const PARTITION: &str = "storeflow.dlq.partition";
    /// Its offset there.
    pub const OFFSET: &str = "storeflow.dlq.offset";
    /// When it was dead-lettered (ms since the epoch, stream time).
    pub const TIME: &str = "storeflow.dlq.time";
}

/// A task's state and the records it will publish at its next commit.
pub struct TaskCore {
    /// The partition.
    pub partition: u32,
    /// Its state stores.
    pub state: TaskState,
    /// Outputs and dead-letter records of accepted work, in order.
    pub pending: Vec<ProduceRecord>,
    /// Records handled since the last commit.
    pub handled: u64,
    /// Records sent to the DLQ since the last commit.
    pub dead_lettered: u64,
}

impl TaskCore {
    /// A task for `partition` over `state`.
    pub fn new(partition: u32, state: TaskState) -> Self {
        TaskCore { partition, state, pending: Vec::new(), handled: 0, dead_lettered: 0 }
    }
}

/// What became of one record.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Processed; its writes and outputs wait for the commit.
    Done,
    /// Sent to the dead-letter topic with this reason.
    DeadLettered(String),
    /// Not processed; try the same record again later.
    Retry(String),
}

/// A processor with its types erased, as the runtime and the registry hold it.
pub trait DynProcessor: Send {
    /// [`Processor::NAME`].
    fn name(&self) -> &'static str;
    /// [`Processor::inputs`].
    fn inputs(&self) -> Vec<String>;
    /// Handles one record in `task`.
    fn handle(&mut self, task: &mut TaskCore, codec: &Arc<Codec>, record: &Record) -> Outcome;
    /// Fires the timers that are due and sweeps expired state; returns how many timers fired.
    fn fire_timers(&mut self, task: &mut TaskCore, codec: &Arc<Codec>) -> Result<usize, RuntimeError>;
    /// [`Processor::global_inputs`].
    fn global_inputs(&self) -> Vec<String>;
    /// Applies a record of a global input (an undecodable one is logged and skipped).
    fn handle_global(&mut self, codec: &Arc<Codec>, record: &Record);
}

fn dlq_record(processor: &str, record: &Record, reason: &str, now: i64) -> ProduceRecord {
    let mut headers = record.headers.clone();
    headers.push(Header::text(dlq_headers::PROCESSOR, processor));
    headers.push(Header::text(dlq_headers::REASON, reason));
    headers.push(Header::text(dlq_headers::TOPIC, record.topic.to_string()));
    headers.push(Header::text(dlq_headers::PARTITION, record.partition.to_string()));
    headers.push(Header::text(dlq_headers::OFFSET, record.offset.to_string()));
    headers.push(Header::text(dlq_headers::TIME, now.to_string()));
    ProduceRecord {
        topic: storeflow_avro::dlq_topic(&record.topic),
        partition: None,
        key: record.key.as_ref().map(|k| k.to_vec()),
        value: record.value.as_ref().map(|v| v.to_vec()),
        headers,
        timestamp: Some(record.timestamp),
    }
}

fn encode_all<O: Wire>(codec: &Codec, out: Vec<crate::ctx::Emitted<O>>) -> Result<Vec<ProduceRecord>, String> {
    out.into_iter()
        .map(|e| {
            let value = e.value.encode(codec).map_err(|err| format!("encoding a {} output: {err}", e.value.kind()))?;
            let mut headers = vec![Header::text(storeflow_ingest::publish::EVENT_TYPE_HEADER, e.value.kind())];
            headers.extend(e.headers);
            Ok(ProduceRecord {
                topic: e.topic,
                partition: None,
                key: Some(e.key.into_bytes()),
                value: Some(value),
                headers,
                timestamp: Some(e.timestamp),
            })
        })
        .collect()
}

impl<P: Processor> DynProcessor for P {
    fn name(&self) -> &'static str {
        P::NAME
    }

    fn inputs(&self) -> Vec<String> {
        Processor::inputs(self)
    }

    fn handle(&mut self, task: &mut TaskCore, codec: &Arc<Codec>, record: &Record) -> Outcome {
        task.state.stream_time = task.state.stream_time.max(record.timestamp);
        let value = match record.value.as_deref() {
            Some(bytes) => P::In::decode(codec, bytes),
            None => Err("the record has no value (a tombstone)".to_string()),
        };
        let value = match value {
            Ok(v) => v,
            Err(reason) => {
                let reason = format!("cannot decode: {reason}");
                task.pending.push(dlq_record(P::NAME, record, &reason, task.state.stream_time));
                task.dead_lettered += 1;
                task.handled += 1;
                return Outcome::DeadLettered(reason);
            }
        };
        let input = Input {
            value,
            topic: record.topic.to_string(),
            partition: record.partition,
            offset: record.offset,
            timestamp: record.timestamp,
            key: record.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default(),
        };
        let stores = self.stores();
        let mut ctx = Ctx::new(P::NAME, &mut task.state, task.partition, stores, record.timestamp);
        let result = self.process(&input, &mut ctx);
        let out = std::mem::take(&mut ctx.out);
        match result.map_err(|e| e).and_then(|()| encode_all(codec, out).map_err(ProcessError::Permanent)) {
            Ok(records) => {
                task.state.accept();
                task.pending.extend(records);
                task.handled += 1;
                Outcome::Done
            }
            Err(ProcessError::Permanent(reason)) => {
                task.state.reject();
                task.pending.push(dlq_record(P::NAME, record, &reason, task.state.stream_time));
                task.dead_lettered += 1;
                task.handled += 1;
                Outcome::DeadLettered(reason)
            }
            Err(ProcessError::Transient(reason)) => {
                task.state.reject();
                Outcome::Retry(reason)
            }
        }
    }

    fn global_inputs(&self) -> Vec<String> {
        Processor::global_inputs(self)
    }

    fn handle_global(&mut self, codec: &Arc<Codec>, record: &Record) {
        let Some(bytes) = record.value.as_deref() else { return };
        match P::In::decode(codec, bytes) {
            Ok(value) => self.on_global(&Input {
                value,
                topic: record.topic.to_string(),
                partition: record.partition,
                offset: record.offset,
                timestamp: record.timestamp,
                key: record.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default(),
            }),
            Err(e) => tracing::warn!(processor = P::NAME, topic = %record.topic, offset = record.offset, error = %e, "skipping an undecodable record of a global input"),
        }
    }

    fn fire_timers(&mut self, task: &mut TaskCore, codec: &Arc<Codec>) -> Result<usize, RuntimeError> {
        sweep_expired(&mut task.state)?;
        task.state.accept();
        let due = take_due_timers(&mut task.state)?;
        task.state.accept();
        let stores = self.stores();
        let mut fired = 0;
        for timer in due {
            let mut ctx = Ctx::new(P::NAME, &mut task.state, task.partition, stores, timer.at);
            let result = self.on_timer(&timer, &mut ctx);
            let out = std::mem::take(&mut ctx.out);
            match result.and_then(|()| encode_all(codec, out).map_err(ProcessError::Permanent)) {
                Ok(records) => {
                    task.state.accept();
                    task.pending.extend(records);
                    fired += 1;
                }
                Err(e) => {
                    // A timer has no record to dead-letter: log it; its writes are dropped.
                    task.state.reject();
                    tracing::error!(processor = P::NAME, partition = task.partition, timer = ?Timer { ..timer }, error = %e, "a timer failed");
                }
            }
        }
        Ok(fired)
    }
}
