//! One task: a processor's work on one partition (of every input topic at once). Shared by
//! the log-driven runtime and the test driver: decode, process, keep or drop the record's
//! state writes, stamp and encode outputs, route failures to the dead-letter topic, fire
//! timers.
//!
//! Every step — a record or a timer — happens at a logical time the caller decides
//! ([`Step::time`]: the record's time, or the stream time for a late record, or the timer's
//! due time). Outputs are stamped with it (plus the lookahead on a feedback edge of the
//! processor's [`Flow`]) and carry their position among the step's outputs in the
//! [`ORDER_HEADER`](crate::runtime::align::ORDER_HEADER), so that a downstream task can put
//! records from many writers into one reproducible order.

use std::sync::Arc;

use storeflow_avro::Codec;
use storeflow_ingest::{Header, ProduceRecord, Record};

use crate::ctx::{Ctx, Emitted};
use crate::error::{ProcessError, RuntimeError};
use crate::flow::Flow;
use crate::processor::{Input, Processor};
use crate::runtime::align::{ORDER_HEADER, order_header, step_of_timer};
use crate::state::task_state::TaskState;
use crate::state::timers::{Timer, next_timer, remove_timer};
use crate::wire::Wire;

/// Header names on dead-letter records (see [`storeflow_ingest::dlq`]).
pub use storeflow_ingest::dlq::headers as dlq_headers;

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
    /// What each input group (and the timers) may emit.
    pub flow: Arc<Flow>,
    /// How much later than its cause a record on a feedback edge is stamped (ms).
    pub lookahead: i64,
    /// The earliest timer, cached with the timer store's version it was read at.
    next_timer: Option<(u64, Option<Timer>)>,
}

impl TaskCore {
    /// A task for `partition` over `state`.
    pub fn new(partition: u32, state: TaskState, flow: Arc<Flow>, lookahead: i64) -> Self {
        TaskCore { partition, state, pending: Vec::new(), handled: 0, dead_lettered: 0, flow, lookahead, next_timer: None }
    }

    /// The earliest pending timer, if any.
    pub fn next_timer(&mut self) -> Result<Option<Timer>, RuntimeError> {
        let version = self.state.timers_version();
        if let Some((v, t)) = &self.next_timer {
            if *v == version {
                return Ok(t.clone());
            }
        }
        let t = next_timer(&mut self.state)?;
        self.next_timer = Some((version, t.clone()));
        Ok(t)
    }
}

/// Where and when one step happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// The input group (index in the flow), or `flow.groups.len()` for a timer.
    pub slot: usize,
    /// Its logical time (ms): what the context's clock reads and what outputs are stamped.
    pub time: i64,
    /// Its identity, for the order of its outputs ([`crate::runtime::align::step_of_record`]).
    pub cause: u64,
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
    /// [`Processor::name`].
    fn name(&self) -> &'static str;
    /// [`Processor::flow`].
    fn flow(&self) -> Flow;
    /// Every input topic.
    fn inputs(&self) -> Vec<String> {
        self.flow().inputs()
    }
    /// Handles one record in `task` as `step`.
    fn handle(&mut self, task: &mut TaskCore, codec: &Arc<Codec>, record: &Record, step: Step) -> Outcome;
    /// Removes `timer` from the task's timers and fires it (a timer that fails is logged;
    /// its writes are dropped).
    fn fire_timer(&mut self, task: &mut TaskCore, codec: &Arc<Codec>, timer: &Timer) -> Result<(), RuntimeError>;
    /// [`Processor::global_inputs`].
    fn global_inputs(&self) -> Vec<String>;
    /// Applies a record of a global input (an undecodable one is logged and skipped).
    fn handle_global(&mut self, codec: &Arc<Codec>, record: &Record);
}

/// The dead-letter record of `record`, which `processor` gave up on at stream time `now`.
pub fn dlq_record(processor: &str, record: &Record, reason: &str, now: i64) -> ProduceRecord {
    storeflow_ingest::dlq::dead_letter(processor, record, reason, now)
}

/// Encodes `out`, the outputs of `step` of processor `name`: each must be declared by the
/// step's group (or the timers) in `flow`, except dead letters; each is stamped with the
/// step's time (plus `lookahead` on a feedback edge) and its order header.
fn encode_all<O: Wire>(name: &str, codec: &Codec, flow: &Flow, lookahead: i64, step: Step, out: Vec<Emitted<O>>) -> Result<Vec<ProduceRecord>, String> {
    let emits = match flow.groups.get(step.slot) {
        Some(g) => &g.emits,
        None => &flow.timers,
    };
    out.into_iter()
        .enumerate()
        .map(|(i, e)| {
            let timestamp = if e.topic.ends_with(".dlq") {
                step.time
            } else {
                let emit = emits.iter().find(|x| x.topic == e.topic).ok_or_else(|| {
                    let from = match flow.groups.get(step.slot) {
                        Some(g) => format!("input group {} ({})", step.slot, g.inputs.join(", ")),
                        None => "its timers".to_string(),
                    };
                    format!("the flow of {name} does not declare {} as an output of {from}", e.topic)
                })?;
                if emit.feedback { step.time.saturating_add(lookahead) } else { step.time }
            };
            let value = e.value.encode(codec).map_err(|err| format!("encoding a {} output: {err}", e.value.kind()))?;
            let mut headers = vec![
                Header::text(storeflow_ingest::publish::EVENT_TYPE_HEADER, e.value.kind()),
                Header { key: ORDER_HEADER.into(), value: order_header(step.cause, i as u32) },
            ];
            headers.extend(e.headers);
            Ok(ProduceRecord { topic: e.topic, partition: None, key: Some(e.key.into_bytes()), value: Some(value), headers, timestamp: Some(timestamp) })
        })
        .collect()
}

fn input_of<T>(value: T, record: &Record, timestamp: i64, cause: u64) -> Input<T> {
    Input {
        value,
        topic: record.topic.to_string(),
        partition: record.partition,
        offset: record.offset,
        timestamp,
        key: record.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default(),
        cause,
    }
}

impl<P: Processor> DynProcessor for P {
    fn name(&self) -> &'static str {
        Processor::name(self)
    }

    fn flow(&self) -> Flow {
        Processor::flow(self)
    }

    fn handle(&mut self, task: &mut TaskCore, codec: &Arc<Codec>, record: &Record, step: Step) -> Outcome {
        task.state.stream_time = step.time;
        let value = match record.value.as_deref() {
            Some(bytes) => P::In::decode(codec, bytes),
            None => Err("the record has no value (a tombstone)".to_string()),
        };
        let value = match value {
            Ok(v) => v,
            Err(reason) => {
                let reason = format!("cannot decode: {reason}");
                task.pending.push(dlq_record(Processor::name(self), record, &reason, step.time));
                task.dead_lettered += 1;
                task.handled += 1;
                return Outcome::DeadLettered(reason);
            }
        };
        let input = input_of(value, record, step.time, step.cause);
        let stores = self.stores();
        let mut ctx = Ctx::new(Processor::name(self), &mut task.state, task.partition, stores, step.time);
        let result = self.process(&input, &mut ctx);
        let out = std::mem::take(&mut ctx.out);
        match result.and_then(|()| encode_all(Processor::name(self), codec, &task.flow, task.lookahead, step, out).map_err(ProcessError::Permanent)) {
            Ok(records) => {
                task.state.accept();
                task.pending.extend(records);
                task.handled += 1;
                Outcome::Done
            }
            Err(ProcessError::Permanent(reason)) => {
                task.state.reject();
                task.pending.push(dlq_record(Processor::name(self), record, &reason, step.time));
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
            Ok(value) => self.on_global(&input_of(value, record, record.timestamp, 0)),
            Err(e) => tracing::warn!(processor = Processor::name(self), topic = %record.topic, offset = record.offset, error = %e, "skipping an undecodable record of a global input"),
        }
    }

    fn fire_timer(&mut self, task: &mut TaskCore, codec: &Arc<Codec>, timer: &Timer) -> Result<(), RuntimeError> {
        remove_timer(&mut task.state, timer);
        task.state.accept();
        task.state.stream_time = timer.at;
        let step = Step { slot: task.flow.groups.len(), time: timer.at, cause: step_of_timer(&timer.key, timer.at) };
        let stores = self.stores();
        let mut ctx = Ctx::new(Processor::name(self), &mut task.state, task.partition, stores, timer.at);
        let result = self.on_timer(timer, &mut ctx);
        let out = std::mem::take(&mut ctx.out);
        match result.and_then(|()| encode_all(Processor::name(self), codec, &task.flow, task.lookahead, step, out).map_err(ProcessError::Permanent)) {
            Ok(records) => {
                task.state.accept();
                task.pending.extend(records);
            }
            Err(e) => {
                // A timer has no record to dead-letter: log it; its writes are dropped.
                task.state.reject();
                tracing::error!(processor = Processor::name(self), partition = task.partition, timer = ?timer, error = %e, "a timer failed");
            }
        }
        Ok(())
    }
}
