//! A processor's flow: which of its inputs are processed in one event-time order, and what
//! each of them (and its timers) may emit. The runtime needs it to order records across
//! processors — to know, for every input, when no record older than a given time can still
//! arrive (docs/ARCHITECTURE.md, "Time and order").
//!
//! ```
//! use storeflow_processors::Flow;
//! // Kafka Streams' semantics: every input in one timestamp order.
//! let simple = Flow::new().group(&["storefront.orders"]).emits(&["orders.counts"]);
//! // Two groups that touch different state and so need not wait for each other; the
//! // second is fed by the processor's own output (a repartition), and timers emit too.
//! let staged = Flow::new()
//!     .group(&["storefront.orders"]).emits(&["checks"])
//!     .group(&["checks"]).emits(&["scores"])
//!     .timers().emits(&["scores"]);
//! assert_eq!(staged.inputs(), vec!["storefront.orders", "checks"]);
//! # let _ = simple;
//! ```

/// What a processor reads, in which orders, and what it may write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    /// Groups of inputs. Records of one group are processed in one timestamp order (the
    /// oldest first, waiting for an input that may still deliver older records); records of
    /// different groups are not ordered against each other, so the processor must keep
    /// what different groups do to its state independent of which comes first (per-entity
    /// buffering, or separate stores).
    pub groups: Vec<Group>,
    /// What timers may emit. A timer at `t` fires once every group has passed `t`.
    pub timers: Vec<Emit>,
}

/// Inputs processed in one timestamp order, and what processing them may emit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Group {
    /// Topics (all co-partitioned with the processor's other inputs).
    pub inputs: Vec<String>,
    /// Topics its records may cause records on.
    pub emits: Vec<Emit>,
}

/// An output a group (or the timers) may write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Emit {
    /// The topic.
    pub topic: String,
    /// A feedback edge: records written here are stamped `lookahead` later than what caused
    /// them. Every cycle between processors (orders → inventory → orders) needs one, so
    /// that each side can work `lookahead` ahead of the other instead of in lockstep.
    pub feedback: bool,
}

/// Which part of a flow the builder adds outputs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Group(usize),
    Timers,
}

/// Builder state: the flow and where `emits` goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowBuilder {
    flow: Flow,
    slot: Slot,
}

impl Flow {
    /// An empty flow; add groups with [`Flow::group`].
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> FlowBuilder {
        FlowBuilder { flow: Flow::default(), slot: Slot::Timers }
    }

    /// Every input, in the order of the groups.
    pub fn inputs(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for g in &self.groups {
            for i in &g.inputs {
                if !out.contains(i) {
                    out.push(i.clone());
                }
            }
        }
        out
    }

    /// The group `topic` belongs to.
    pub fn group_of(&self, topic: &str) -> Option<usize> {
        self.groups.iter().position(|g| g.inputs.iter().any(|i| i == topic))
    }

    /// Every topic the processor may write (groups and timers), once each.
    pub fn outputs(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for e in self.groups.iter().flat_map(|g| g.emits.iter()).chain(self.timers.iter()) {
            if !out.contains(&e.topic) {
                out.push(e.topic.clone());
            }
        }
        out
    }

    /// Checks that no input is in two groups and that there is at least one input.
    pub fn validate(&self, processor: &str) -> Result<(), String> {
        if self.groups.iter().all(|g| g.inputs.is_empty()) {
            return Err(format!("the flow of {processor} has no input"));
        }
        let mut seen: Vec<&str> = Vec::new();
        for g in &self.groups {
            for i in &g.inputs {
                if seen.contains(&i.as_str()) {
                    return Err(format!("the flow of {processor} puts {i} in two groups"));
                }
                seen.push(i);
            }
        }
        Ok(())
    }
}

impl Group {
    /// How a record processed in this group may be emitted to `topic`: `None` if the flow
    /// does not declare it.
    pub fn emit(&self, topic: &str) -> Option<&Emit> {
        self.emits.iter().find(|e| e.topic == topic)
    }
}

impl FlowBuilder {
    /// Starts a group of inputs processed in one timestamp order.
    pub fn group(mut self, inputs: &[&str]) -> FlowBuilder {
        self.flow.groups.push(Group { inputs: inputs.iter().map(|s| s.to_string()).collect(), emits: vec![] });
        self.slot = Slot::Group(self.flow.groups.len() - 1);
        self
    }

    /// Switches to what the processor's timers emit.
    pub fn timers(mut self) -> FlowBuilder {
        self.slot = Slot::Timers;
        self
    }

    /// The current group (or the timers) may write `topics`.
    pub fn emits(self, topics: &[&str]) -> FlowBuilder {
        self.add(topics, false)
    }

    /// The current group (or the timers) may write `topics` on a feedback edge (see
    /// [`Emit::feedback`]).
    pub fn feeds_back(self, topics: &[&str]) -> FlowBuilder {
        self.add(topics, true)
    }

    fn add(mut self, topics: &[&str], feedback: bool) -> FlowBuilder {
        let list = match self.slot {
            Slot::Group(g) => &mut self.flow.groups[g].emits,
            Slot::Timers => &mut self.flow.timers,
        };
        for t in topics {
            match list.iter_mut().find(|e| e.topic == *t) {
                Some(e) => e.feedback = feedback,
                None => list.push(Emit { topic: t.to_string(), feedback }),
            }
        }
        self
    }

    /// The finished flow.
    pub fn build(self) -> Flow {
        self.flow
    }

    /// Every input so far (see [`Flow::inputs`]).
    pub fn inputs(&self) -> Vec<String> {
        self.flow.inputs()
    }
}

impl From<FlowBuilder> for Flow {
    fn from(b: FlowBuilder) -> Flow {
        b.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_builder_collects_groups_timers_and_feedback_edges() {
        let f: Flow = Flow::new()
            .group(&["a", "b"])
            .emits(&["x", "y"])
            .group(&["r"])
            .emits(&["x"])
            .feeds_back(&["c"])
            .timers()
            .feeds_back(&["c"])
            .into();
        assert_eq!(f.inputs(), vec!["a", "b", "r"]);
        assert_eq!(f.outputs(), vec!["x", "y", "c"]);
        assert_eq!(f.group_of("r"), Some(1));
        assert!(f.groups[1].emit("c").unwrap().feedback);
        assert!(!f.groups[1].emit("x").unwrap().feedback);
        assert!(f.groups[0].emit("c").is_none(), "a group emits only what it declares");
        assert!(f.timers[0].feedback);
        f.validate("p").unwrap();
    }

    #[test]
    fn an_input_in_two_groups_is_refused() {
        let f: Flow = Flow::new().group(&["a"]).group(&["a"]).into();
        assert!(f.validate("p").unwrap_err().contains("two groups"));
    }
}
