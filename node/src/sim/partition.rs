//! The shapes of network partition the simulator puts in place (after Jepsen's nemeses), each
//! as the set of directed links `(from, to)` it cuts.
//!
//! - **isolate one**: one node cut off from all others, both ways.
//! - **halves**: a minority and a majority, cut from each other both ways.
//! - **majorities ring**: the nodes in a ring, each linked only to its nearest neighbours, so
//!   that every node sees a majority (itself included) but no two see the same one. With three
//!   nodes a ring is fully linked, so it becomes a line (the bridge shape).
//! - **bridge**: two halves that cannot talk to each other, and one node linked to both.
//! - **asymmetric**: one node that can send but not receive, or receive but not send.
//!
//! Which nodes play which part is drawn from the run's generator, except that the nemesis may
//! name a *focus* (usually the leader) to play the special part: the isolated node, a member
//! of the minority, the bridge, the deaf or mute node.

use std::collections::BTreeSet;

use super::rng::SimRng;
use crate::raft::NodeId;

/// A partition shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// One node cut off, both ways.
    IsolateOne,
    /// A minority and a majority.
    Halves,
    /// Every node sees a different majority.
    MajoritiesRing,
    /// Two halves joined only through one node.
    Bridge,
    /// One node deaf or mute.
    Asymmetric,
}

impl Shape {
    /// Every shape.
    pub const ALL: [Shape; 5] = [
        Shape::IsolateOne,
        Shape::Halves,
        Shape::MajoritiesRing,
        Shape::Bridge,
        Shape::Asymmetric,
    ];
}

/// The directed links `shape` cuts among `nodes`, with roles drawn from `rng`; `focus`, if
/// given, plays the special part.
pub fn links_cut(
    shape: Shape,
    nodes: &[NodeId],
    focus: Option<NodeId>,
    rng: &mut SimRng,
) -> BTreeSet<(NodeId, NodeId)> {
    let mut order = nodes.to_vec();
    rng.shuffle(&mut order);
    if let Some(position) = focus.and_then(|focus| order.iter().position(|&id| id == focus)) {
        order.swap(0, position);
    }
    let count = order.len();
    let mut cut = BTreeSet::new();
    let mut cut_unless = |linked: &dyn Fn(usize, usize) -> bool| {
        for a in 0..count {
            for b in 0..count {
                if a != b && !linked(a, b) {
                    cut.insert((order[a], order[b]));
                }
            }
        }
    };
    // Positions refer to `order`; position 0 plays the special part where there is one.
    match shape {
        Shape::IsolateOne => cut_unless(&|a, b| a != 0 && b != 0),
        Shape::Halves => {
            // Position 0 is in the minority.
            let minority = count / 2;
            cut_unless(&|a, b| (a < minority) == (b < minority));
        }
        Shape::MajoritiesRing if count >= 5 => {
            // Each node sees itself and `reach` neighbours on each side: a majority.
            let majority = count / 2 + 1;
            let reach = majority / 2;
            cut_unless(&|a, b| {
                let distance = a.abs_diff(b);
                distance.min(count - distance) <= reach
            });
        }
        Shape::MajoritiesRing | Shape::Bridge => {
            // Position 0 is the bridge; the others split in two halves by position parity.
            cut_unless(&|a, b| a == 0 || b == 0 || a % 2 == b % 2);
        }
        Shape::Asymmetric => {
            let deaf = rng.chance(500);
            cut_unless(&|a, b| if deaf { b != 0 } else { a != 0 });
        }
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::{Shape, links_cut};
    use crate::sim::rng::SimRng;

    /// How many nodes each node can send to, itself included.
    fn reach(nodes: u64, shape: Shape) -> Vec<usize> {
        let ids: Vec<u64> = (1..=nodes).collect();
        let cut = links_cut(shape, &ids, None, &mut SimRng::new(3));
        ids.iter()
            .map(|&a| {
                ids.iter()
                    .filter(|&&b| a == b || !cut.contains(&(a, b)))
                    .count()
            })
            .collect()
    }

    #[test]
    fn a_majorities_ring_shows_every_node_a_majority_and_nothing_more() {
        assert!(
            reach(5, Shape::MajoritiesRing)
                .iter()
                .all(|&seen| seen == 3)
        );
        assert!(
            reach(7, Shape::MajoritiesRing)
                .iter()
                .all(|&seen| seen == 5)
        );
    }

    #[test]
    fn isolating_one_node_leaves_the_others_linked() {
        let mut seen = reach(5, Shape::IsolateOne);
        seen.sort_unstable();
        assert_eq!(seen, [1, 4, 4, 4, 4]);
    }

    #[test]
    fn an_asymmetric_partition_cuts_one_direction_only() {
        let ids: Vec<u64> = (1..=3).collect();
        let cut = links_cut(Shape::Asymmetric, &ids, Some(2), &mut SimRng::new(9));
        assert_eq!(cut.len(), 2);
        for &(a, b) in &cut {
            assert!(!cut.contains(&(b, a)));
            assert!(a == 2 || b == 2, "the focus is the deaf or mute node");
        }
    }
}
