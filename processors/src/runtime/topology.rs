//! The processors as one graph: every processor's flow and task count, the locations
//! records wait at (a processor's input groups and its timers), and for each pair of
//! locations how many feedback edges the shortest path between them crosses. The progress
//! frontier of a location ([`super::progress`]) is computed over what can reach it.

use std::collections::{BTreeMap, VecDeque};

use crate::flow::Flow;
use crate::{Result, RuntimeError};

/// A place records (or timers) wait at: `(processor, slot)`, where slot `i < groups` is
/// input group `i` and slot `groups` is the processor's timers.
pub type Loc = (usize, usize);

/// One processor in the graph.
#[derive(Clone, Debug)]
pub struct Node {
    /// Its name.
    pub name: String,
    /// Its flow.
    pub flow: Flow,
    /// Its global inputs (read whole by every task; ordered with group 0).
    pub globals: Vec<String>,
    /// How many tasks it has (its inputs' partition count).
    pub tasks: u32,
}

impl Node {
    /// The slot of its timers.
    pub fn timers_slot(&self) -> usize {
        self.flow.groups.len()
    }

    /// How many slots it has (groups and timers).
    pub fn slots(&self) -> usize {
        self.flow.groups.len() + 1
    }
}

/// Every processor of a deployment and how records flow between them.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    /// The processors.
    pub nodes: Vec<Node>,
    /// Derived topic → the locations that write it, with whether the edge is feedback.
    writers: BTreeMap<String, Vec<(Loc, bool)>>,
    /// For each location, every location with a path of at least one edge to it, and the
    /// fewest feedback edges on such a path.
    reach: BTreeMap<Loc, Vec<(Loc, u32)>>,
}

impl Topology {
    /// The graph of `nodes`. Refuses a cycle without a feedback edge (its processors could
    /// only advance in lockstep).
    pub fn new(nodes: Vec<Node>) -> Result<Topology> {
        let mut writers: BTreeMap<String, Vec<(Loc, bool)>> = BTreeMap::new();
        for (p, n) in nodes.iter().enumerate() {
            n.flow.validate(&n.name).map_err(RuntimeError::Setup)?;
            for (s, emits) in n.flow.groups.iter().map(|g| &g.emits).chain(std::iter::once(&n.flow.timers)).enumerate() {
                for e in emits {
                    writers.entry(e.topic.clone()).or_default().push(((p, s), e.feedback));
                }
            }
        }
        // Edges: a location's emits feed the groups that read them; any group can set timers.
        let mut edges: BTreeMap<Loc, Vec<(Loc, u32)>> = BTreeMap::new();
        for (p, n) in nodes.iter().enumerate() {
            for g in 0..n.flow.groups.len() {
                edges.entry((p, g)).or_default().push(((p, n.timers_slot()), 0));
            }
        }
        for (topic, ws) in &writers {
            for (q, m) in nodes.iter().enumerate() {
                let Some(h) = m.flow.group_of(topic) else { continue };
                for (from, fb) in ws {
                    edges.entry(*from).or_default().push(((q, h), u32::from(*fb)));
                }
            }
        }
        // 0-1 breadth-first search from every location: fewest feedback edges to each other.
        let mut reach: BTreeMap<Loc, Vec<(Loc, u32)>> = BTreeMap::new();
        for (p, n) in nodes.iter().enumerate() {
            for s in 0..n.slots() {
                let from = (p, s);
                let mut best: BTreeMap<Loc, u32> = BTreeMap::new();
                let mut queue: VecDeque<(Loc, u32)> = VecDeque::new();
                for (to, w) in edges.get(&from).into_iter().flatten() {
                    queue.push_back((*to, *w));
                }
                while let Some((at, d)) = queue.pop_front() {
                    if best.get(&at).is_some_and(|b| *b <= d) {
                        continue;
                    }
                    best.insert(at, d);
                    for (to, w) in edges.get(&at).into_iter().flatten() {
                        if *w == 0 {
                            queue.push_front((*to, d));
                        } else {
                            queue.push_back((*to, d + w));
                        }
                    }
                }
                for (to, d) in best {
                    reach.entry(to).or_default().push((from, d));
                }
            }
        }
        let t = Topology { nodes, writers, reach };
        for (p, n) in t.nodes.iter().enumerate() {
            for g in 0..n.flow.groups.len() {
                if t.distance((p, g), (p, g)) == Some(0) {
                    return Err(RuntimeError::Setup(format!(
                        "input group {g} of {} feeds itself without a feedback edge: mark one output on the cycle with feeds_back",
                        n.name
                    )));
                }
            }
        }
        Ok(t)
    }

    /// A graph of one processor alone (its derived inputs, if any, have no known writer).
    pub fn single(node: Node) -> Result<Topology> {
        Topology::new(vec![node])
    }

    /// The index of the processor named `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// True when a processor of the graph writes `topic`.
    pub fn is_derived(&self, topic: &str) -> bool {
        self.writers.contains_key(topic)
    }

    /// The locations that write `topic`, with whether the edge is feedback.
    pub fn writers_of(&self, topic: &str) -> &[(Loc, bool)] {
        self.writers.get(topic).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Every location that can reach `to` (by at least one edge), with the fewest feedback
    /// edges on the way.
    pub fn reaching(&self, to: Loc) -> &[(Loc, u32)] {
        self.reach.get(&to).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The fewest feedback edges on a path of at least one edge from `from` to `to`.
    pub fn distance(&self, from: Loc, to: Loc) -> Option<u32> {
        self.reaching(to).iter().find(|(l, _)| *l == from).map(|(_, d)| *d)
    }

    /// The derived inputs of group `g` of processor `p`.
    pub fn derived_inputs(&self, p: usize, g: usize) -> Vec<String> {
        self.nodes[p].flow.groups[g].inputs.iter().filter(|t| self.is_derived(t)).cloned().collect()
    }

    /// The processors that read `topic` (in one of their groups).
    pub fn readers_of(&self, topic: &str) -> Vec<usize> {
        self.nodes.iter().enumerate().filter(|(_, n)| n.flow.group_of(topic).is_some()).map(|(i, _)| i).collect()
    }

    /// The partition count of `topic` if a processor reads it (its task count: inputs are
    /// co-partitioned).
    pub fn partitions_of(&self, topic: &str) -> Option<u32> {
        self.readers_of(topic).first().map(|q| self.nodes[*q].tasks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, flow: impl Into<Flow>) -> Node {
        Node { name: name.into(), flow: flow.into(), globals: vec![], tasks: 2 }
    }

    /// orders ⇄ inventory, with the feedback edge where the saga answers inventory.
    fn saga() -> Topology {
        Topology::new(vec![
            node(
                "orders",
                Flow::new()
                    .group(&["storefront.orders"])
                    .emits(&["lifecycle", "commands"])
                    .group(&["replies"])
                    .emits(&["lifecycle"])
                    .feeds_back(&["commands"])
                    .timers()
                    .feeds_back(&["commands"]),
            ),
            node("inventory", Flow::new().group(&["storefront.inventory", "commands"]).emits(&["replies", "levels"])),
        ])
        .unwrap()
    }

    #[test]
    fn every_location_knows_what_reaches_it_and_through_how_many_feedback_edges() {
        let t = saga();
        let (orders_src, orders_replies, orders_timers, inventory) = ((0, 0), (0, 1), (0, 2), (1, 0));
        assert_eq!(t.distance(orders_src, orders_replies), Some(0), "source → commands → inventory → replies");
        assert_eq!(t.distance(orders_replies, inventory), Some(1), "the saga's answers are feedback");
        assert_eq!(t.distance(orders_replies, orders_replies), Some(1), "around the cycle once");
        assert_eq!(t.distance(inventory, inventory), Some(1));
        assert_eq!(t.distance(orders_timers, inventory), Some(1));
        assert_eq!(t.distance(inventory, orders_src), None, "nothing flows back into a source group");
        assert!(t.is_derived("commands") && !t.is_derived("storefront.orders"));
    }

    #[test]
    fn a_cycle_without_a_feedback_edge_is_refused() {
        let err = Topology::new(vec![
            node("a", Flow::new().group(&["x"]).emits(&["y"])),
            node("b", Flow::new().group(&["y"]).emits(&["x"])),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("feeds itself"), "{err}");
    }

    #[test]
    fn a_topic_knows_who_reads_it_and_how_many_partitions_it_has() {
        let t = saga();
        assert_eq!(t.readers_of("commands"), vec![1]);
        assert_eq!(t.partitions_of("replies"), Some(2));
        assert_eq!(t.partitions_of("lifecycle"), None, "no processor reads it");
    }
}
