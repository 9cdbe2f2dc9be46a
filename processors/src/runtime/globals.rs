//! Global inputs: read in full, from the start, by every instance; nothing committed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use storeflow_avro::Codec;
use storeflow_ingest::{Consumer, ConsumerConfig, OffsetReset, Record, TopicPartition};

use super::progress::Board;
use super::shared::Shared;
use super::task::DynProcessor;
use crate::error::Result;

/// Reads a processor's global inputs in full: every partition, from the start, in every
/// instance; nothing is committed (each start rebuilds the processor's global state).
pub(super) struct GlobalReader {
    pub(super) consumer: Option<Box<dyn Consumer>>,
    pub(super) topics: Vec<String>,
    pub(super) ends: Vec<(TopicPartition, u64)>,
    pub(super) ends_at: Instant,
    /// The latest timestamp applied.
    pub(super) applied: i64,
}

impl GlobalReader {
    pub(super) fn start(shared: &Shared, processor: &dyn DynProcessor) -> Result<GlobalReader> {
        let topics = processor.global_inputs();
        if topics.is_empty() {
            return Ok(GlobalReader { consumer: None, topics, ends: vec![], ends_at: Instant::now(), applied: i64::MIN });
        }
        let infos = shared.log.describe_topics()?;
        let mut assignment = Vec::new();
        for t in &topics {
            if let Some(info) = infos.iter().find(|i| &i.name == t) {
                for p in &info.partitions {
                    assignment.push((TopicPartition::new(t, p.partition), p.start));
                }
            }
        }
        let tps: Vec<TopicPartition> = assignment.iter().map(|(tp, _)| tp.clone()).collect();
        let ends = tps.iter().cloned().zip(shared.log.watermarks(&tps)?.into_iter().map(|(_, e)| e)).collect();
        let mut cfg = ConsumerConfig::new(&format!("{}.global", shared.group()));
        cfg.reset = OffsetReset::Earliest;
        let mut consumer = shared.log.consumer(cfg, None)?;
        consumer.assign(&assignment)?;
        Ok(GlobalReader { consumer: Some(consumer), topics, ends, ends_at: Instant::now(), applied: i64::MIN })
    }

    pub(super) fn apply(&mut self, processor: &mut dyn DynProcessor, codec: &Arc<Codec>, records: Vec<Record>) {
        for r in records {
            self.applied = self.applied.max(r.timestamp);
            processor.handle_global(codec, &r);
        }
    }

    /// Reads up to where the global topics ended at start-up, before anything else.
    pub(super) fn catch_up(&mut self, processor: &mut dyn DynProcessor, codec: &Arc<Codec>, patience: Duration) -> Result<()> {
        let deadline = Instant::now() + patience;
        loop {
            let Some(c) = self.consumer.as_mut() else { return Ok(()) };
            // Kafka's last offset may be a transaction marker that is never fetched.
            let done = self.ends.iter().all(|(tp, end)| c.position(tp).unwrap_or(0) + 1 >= *end || *end == 0);
            if done || Instant::now() > deadline {
                return Ok(());
            }
            let recs = c.poll(10_000, Duration::from_millis(100))?;
            self.apply(processor, codec, recs);
        }
    }

    /// Applies whatever arrived since, without waiting.
    pub(super) fn poll(&mut self, processor: &mut dyn DynProcessor, codec: &Arc<Codec>) -> Result<()> {
        if let Some(c) = self.consumer.as_mut() {
            let recs = c.poll(10_000, Duration::ZERO)?;
            self.apply(processor, codec, recs);
        }
        Ok(())
    }

    /// The time below which every global record has been applied: all of them while the
    /// reader is caught up (or what their producers declared), else the latest applied.
    pub(super) fn complete_before(&mut self, shared: &Shared, board: &Board, wall: i64) -> i64 {
        let Some(c) = self.consumer.as_ref() else { return i64::MAX };
        if self.ends_at.elapsed() > Duration::from_millis(100) {
            let tps: Vec<TopicPartition> = self.ends.iter().map(|(tp, _)| tp.clone()).collect();
            if let Ok(marks) = shared.log.watermarks(&tps) {
                self.ends = tps.into_iter().zip(marks).map(|(tp, (_, e))| (tp, e)).collect();
                self.ends_at = Instant::now();
            }
        }
        let caught_up = self.ends.iter().all(|(tp, end)| *end == 0 || c.position(tp).is_some_and(|p| p + 1 >= *end));
        if !caught_up {
            return self.applied;
        }
        self.topics.iter().filter_map(|t| board.declared(t, wall)).min().unwrap_or(i64::MAX)
    }
}
