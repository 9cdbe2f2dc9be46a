//! The rebalance listener: revoked partitions committed and handed over, assigned ones
//! opened.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use storeflow_ingest::{OffsetCommitter, RebalanceListener, TopicPartition};

use super::shared::Shared;

/// Turns revocations and assignments into task commits, closes and opens.
pub(super) struct Listener(pub(super) Arc<Shared>);

impl RebalanceListener for Listener {
    fn on_revoked(&mut self, partitions: &[TopicPartition], committer: &mut dyn OffsetCommitter) {
        let s = &self.0;
        if s.crashed.load(Ordering::Relaxed) {
            return;
        }
        let numbers: BTreeSet<u32> = partitions.iter().map(|tp| tp.partition).collect();
        let group = committer.group_metadata();
        let mut tasks = s.tasks.lock();
        for p in numbers {
            let Some(mut t) = tasks.remove(&p) else { continue };
            if let Some(g) = &group {
                // What it last published stands (the next owner starts from the same committed
                // state), plus the outputs this last commit carries.
                let mut progress = t.published.clone().unwrap_or_default();
                for rec in &t.core.pending {
                    let Some(n) = s.topology.partitions_of(&rec.topic) else { continue };
                    let x = rec.partition.unwrap_or_else(|| rec.key.as_deref().map(|k| storeflow_ingest::partitioner::partition_for_key(k, n)).unwrap_or(0));
                    progress.emitted.entry(rec.topic.clone()).or_default().entry(x).or_default().push((u64::MAX, rec.timestamp.unwrap_or(i64::MIN)));
                }
                if let Err(e) = s.commit_task(&mut t, g, &progress) {
                    tracing::warn!(processor = s.name, partition = p, error = %e, "commit on revocation failed; the next owner resumes from the last commit");
                }
            }
            let _ = t.txn.abort();
            s.revoked.lock().push(p);
            tracing::info!(processor = s.name, partition = p, "task handed over");
        }
        let mut unopened = s.unopened.lock();
        for tp in partitions {
            unopened.remove(&tp.partition);
        }
    }

    fn on_assigned(&mut self, partitions: &[TopicPartition]) {
        let s = &self.0;
        let numbers: BTreeSet<u32> = partitions.iter().map(|tp| tp.partition).collect();
        let mut tasks = s.tasks.lock();
        for p in numbers {
            if tasks.contains_key(&p) {
                continue;
            }
            match s.open_task(p) {
                Ok(t) => {
                    tasks.insert(p, t);
                    s.unopened.lock().remove(&p);
                }
                Err(e) => {
                    tracing::error!(processor = s.name, partition = p, error = %e, "could not start a task; retrying, its records wait");
                    s.unopened.lock().insert(p, Instant::now() + Duration::from_secs(1));
                }
            }
        }
    }
}
