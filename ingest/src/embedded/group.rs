//! A consumer group of the embedded log: its members, a sticky balanced assignment, and the
//! member that owns each partition now. The group's consumers (`consumer.rs`) follow the
//! assignment and hand partitions over.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::types::*;

/// One group's membership.
#[derive(Default)]
pub(crate) struct Group {
    pub generation: u64,
    /// member → subscribed topics.
    pub(super) members: BTreeMap<String, Vec<String>>,
    /// member → partitions it should own.
    pub(super) target: HashMap<String, BTreeSet<TopicPartition>>,
    /// partition → member that owns it now.
    pub(super) owner: HashMap<TopicPartition, String>,
}

impl Group {
    /// True when `member` owns `tp` now.
    pub(crate) fn owns(&self, member: &str, tp: &TopicPartition) -> bool {
        self.owner.get(tp).is_some_and(|m| m == member)
    }

    /// True when the group has live members.
    pub(crate) fn has_members(&self) -> bool {
        !self.members.is_empty()
    }

    /// Recomputes the target assignment. Partition *numbers* are what gets assigned: a member
    /// owning number p owns partition p of every topic it subscribes to, so co-partitioned
    /// topics (same key, same partition count) meet in one member — what Kafka's range
    /// assignor gives the processor runtime. Balanced, and sticky: a number stays with its
    /// member when the balance allows.
    pub(super) fn rebalance(&mut self, partitions_of: &dyn Fn(&str) -> u32) {
        self.generation += 1;
        let members: Vec<&str> = self.members.keys().map(String::as_str).collect();
        let mut target: HashMap<String, BTreeSet<TopicPartition>> =
            members.iter().map(|m| (m.to_string(), BTreeSet::new())).collect();
        if members.is_empty() {
            self.target = target;
            return;
        }
        let max_p = self
            .members
            .values()
            .flat_map(|ts| ts.iter().map(|t| partitions_of(t)))
            .max()
            .unwrap_or(0);
        let quota = (max_p as usize).div_ceil(members.len());
        let prev_owner = |p: u32| {
            self.target
                .iter()
                .find(|(_, set)| set.iter().any(|tp| tp.partition == p))
                .map(|(m, _)| m.clone())
        };
        let mut owner_of: Vec<Option<String>> = vec![None; max_p as usize];
        let mut count: HashMap<&str, usize> = members.iter().map(|m| (*m, 0)).collect();
        for p in 0..max_p {
            if let Some(m) = prev_owner(p) {
                if let Some(c) = count.get_mut(m.as_str()) {
                    if *c < quota {
                        *c += 1;
                        owner_of[p as usize] = Some(m);
                    }
                }
            }
        }
        for p in 0..max_p {
            if owner_of[p as usize].is_none() {
                let m = *members.iter().min_by_key(|m| (count[**m], **m)).expect("members is not empty");
                *count.get_mut(m).expect("member") += 1;
                owner_of[p as usize] = Some(m.to_string());
            }
        }
        for (m, topics) in &self.members {
            for t in topics {
                for p in 0..partitions_of(t) {
                    if owner_of[p as usize].as_deref() == Some(m.as_str()) {
                        target.get_mut(m).expect("member").insert(TopicPartition::new(t, p));
                    }
                }
            }
        }
        self.target = target;
    }
}
