//! The trait family every backend implements: what processors, sinks, the API and the
//! simulator need from a log. Kafka and the embedded log both implement it, and both pass
//! the same contract suite (`contract.rs`).
//!
//! The traits are synchronous and object-safe: a backend is picked at run time
//! (`Arc<dyn Log>`), consumers are driven by a dedicated thread (like a Kafka Streams
//! `StreamThread`), and a produce acknowledgement is a [`DeliveryFuture`] that async code
//! awaits and threads `wait()` on.

use std::time::Duration;

use crate::types::*;
use crate::Result;

/// A log: topics of partitioned, ordered, durable records.
pub trait Log: Send + Sync {
    /// `embedded` or `kafka`, for messages.
    fn backend(&self) -> &'static str;

    /// Creates the topics that do not exist yet. A topic that exists with fewer partitions
    /// than asked is an error (partitions decide where keys live; never change them silently).
    fn create_topics(&self, specs: &[TopicSpec]) -> Result<()>;

    /// Every topic with its partitions' start and end offsets.
    fn describe_topics(&self) -> Result<Vec<TopicInfo>>;

    /// A producer (thread-safe, shareable).
    fn producer(&self) -> Result<Box<dyn Producer>>;

    /// A consumer. `listener` hears about partitions being assigned and revoked, from inside
    /// [`Consumer::poll`], before a revoked partition is handed to another member.
    fn consumer(
        &self,
        config: ConsumerConfig,
        listener: Option<Box<dyn RebalanceListener>>,
    ) -> Result<Box<dyn Consumer>>;

    /// A transactional producer. Creating one with the same `transactional_id` fences the
    /// previous one: its next transaction fails with [`crate::LogError::Fenced`].
    fn transactional_producer(&self, transactional_id: &str) -> Result<Box<dyn TransactionalProducer>>;

    /// The offsets `group` has committed for `partitions` (the next offset to read).
    fn committed_offsets(&self, group: &str, partitions: &[TopicPartition]) -> Result<Vec<Option<u64>>>;

    /// The first offset held and the end (the offset the next record will get) of each
    /// partition.
    fn watermarks(&self, partitions: &[TopicPartition]) -> Result<Vec<(u64, u64)>>;

    /// The consumer groups the log knows: those with committed offsets (and, on Kafka, every
    /// group the coordinators list), sorted.
    fn list_groups(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// How many live members `group` has now; `None` when the backend cannot tell.
    fn group_members(&self, _group: &str) -> Result<Option<usize>> {
        Ok(None)
    }

    /// Sets `group`'s committed offsets (the next offset to read, per partition) from
    /// outside the group — an operator's reset. Refused while the group has live members
    /// ([`crate::LogError::NotOwner`]) where the backend can tell.
    fn reset_offsets(&self, group: &str, offsets: &[(TopicPartition, u64)]) -> Result<()> {
        if let Some(n) = self.group_members(group)?
            && n > 0
        {
            return Err(crate::LogError::NotOwner { group: group.to_string(), partition: format!("(the group has {n} live members)") });
        }
        let mut c = self.consumer(ConsumerConfig::new(group), None)?;
        let r = c.commit(offsets);
        c.close()?;
        r
    }

    /// Per partition, the first offset whose record's timestamp is at or after `millis`
    /// (the end when there is none): where `--from <datetime>` starts. Kafka answers from its
    /// time index; the default reads the partition from its start.
    fn offsets_for_time(&self, partitions: &[TopicPartition], millis: i64) -> Result<Vec<u64>> {
        let marks = self.watermarks(partitions)?;
        let mut out = Vec::with_capacity(partitions.len());
        for (tp, (start, end)) in partitions.iter().zip(marks) {
            if start >= end {
                out.push(end);
                continue;
            }
            let mut c = self.consumer(ConsumerConfig::new(&format!("storeflow.offsets-for-time.{}", std::process::id())), None)?;
            c.assign(&[(tp.clone(), start)])?;
            let mut found = end;
            let mut idle = 0;
            'scan: while c.position(tp).unwrap_or(start) < end && idle < 50 {
                let recs = c.poll(10_000, Duration::from_millis(100))?;
                if recs.is_empty() {
                    idle += 1;
                }
                for r in recs {
                    if r.timestamp >= millis {
                        found = r.offset;
                        break 'scan;
                    }
                }
            }
            c.close()?;
            out.push(found);
        }
        Ok(out)
    }
}

/// Publishes records. Every record is acknowledged once it is durable under the log's
/// policy; on Kafka the producer is idempotent (`acks=all`).
pub trait Producer: Send + Sync {
    /// Publishes one record.
    fn send(&self, record: ProduceRecord) -> Result<DeliveryFuture>;

    /// Publishes many records; on the embedded log one write for the whole batch.
    fn send_batch(&self, records: Vec<ProduceRecord>) -> Result<Vec<DeliveryFuture>> {
        records.into_iter().map(|r| self.send(r)).collect()
    }

    /// Waits until every record sent so far is acknowledged.
    fn flush(&self, timeout: Duration) -> Result<()>;
}

/// Commits consumer offsets from inside [`RebalanceListener::on_revoked`].
pub trait OffsetCommitter {
    /// Commits `offsets` (the next offset to read, per partition) for the group, now.
    fn commit(&mut self, offsets: &[(TopicPartition, u64)]) -> Result<()>;
    /// The member's identity now, to commit offsets inside a transaction instead.
    fn group_metadata(&self) -> Option<GroupMetadata>;
}

/// Hears about partition assignment changes of a group consumer.
pub trait RebalanceListener: Send {
    /// These partitions are about to go to another member: flush state and commit now —
    /// through a transaction, or through `committer` for plain consumers. The member still
    /// owns them during this call.
    fn on_revoked(&mut self, partitions: &[TopicPartition], committer: &mut dyn OffsetCommitter);
    /// These partitions are now this member's; their positions are the committed offsets.
    fn on_assigned(&mut self, partitions: &[TopicPartition]);
}

/// Reads records, in order per partition.
pub trait Consumer: Send {
    /// Joins the consumer group for `topics`; partitions are shared among members.
    fn subscribe(&mut self, topics: &[&str]) -> Result<()>;

    /// Reads exactly these partitions from these offsets, outside group management.
    fn assign(&mut self, partitions: &[(TopicPartition, u64)]) -> Result<()>;

    /// Up to `max` records, waiting up to `timeout` for the first. Rebalance callbacks run
    /// inside this call.
    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Record>>;

    /// Moves the position of an assigned partition.
    fn seek(&mut self, partition: &TopicPartition, offset: u64) -> Result<()>;

    /// The next offset this consumer will read from `partition`.
    fn position(&self, partition: &TopicPartition) -> Option<u64>;

    /// The partitions this consumer reads now.
    fn assignment(&self) -> Vec<TopicPartition>;

    /// Commits offsets for the group (the next offset to read, per partition).
    fn commit(&mut self, offsets: &[(TopicPartition, u64)]) -> Result<()>;

    /// This member's identity, for committing offsets inside a transaction.
    fn group_metadata(&self) -> Option<GroupMetadata>;

    /// Leaves the group (revoking partitions through the listener). Always call it rather
    /// than dropping a Kafka consumer mid-stream (see STACK.md on `rd_kafka_destroy` hangs).
    fn close(self: Box<Self>) -> Result<()>;
}

/// Publishes records and consumer offsets atomically: all of a transaction or nothing.
pub trait TransactionalProducer: Send {
    /// Starts a transaction.
    fn begin(&mut self) -> Result<()>;

    /// Adds a record to the current transaction.
    fn send(&mut self, record: ProduceRecord) -> Result<()>;

    /// Adds consumer offsets to the current transaction.
    fn send_offsets(&mut self, offsets: &[(TopicPartition, u64)], group: &GroupMetadata) -> Result<()>;

    /// Commits the transaction: records become visible to read_committed consumers and the
    /// offsets become the group's, together. Returns, per partition written, the offset
    /// after the transaction's last record there (where a reader that has applied the
    /// transaction stands — the processor runtime checkpoints its state stores with it).
    fn commit(&mut self) -> Result<Vec<(TopicPartition, u64)>>;

    /// Abandons the transaction: nothing of it is ever visible.
    fn abort(&mut self) -> Result<()>;
}
