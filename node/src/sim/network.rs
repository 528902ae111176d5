//! The simulated network between the cores: what becomes of each message, and which links are
//! cut.
//!
//! A message sent at time `t` is lost with the run's loss rate, else delivered at `t + delay`
//! with a delay of 1–30 subticks (a tenth of a tick to three ticks), and sometimes much later
//! (up to 60 ticks) so that stale messages arrive far out of order; it may also be duplicated,
//! the copy taking its own delay. Since every message gets its own delay, messages reorder
//! freely. Partitions are checked at delivery: a message in flight when its link is cut is lost,
//! one in flight when the link heals arrives. The driver keeps the messages in flight in its
//! event queue; this module decides their fate and holds the cut links.

use std::collections::BTreeSet;

use super::partition::{Shape, links_cut};
use super::report::FaultCounts;
use super::rng::SimRng;
use crate::raft::NodeId;

/// Subticks in a tick: the unit of simulated time is a tenth of a tick.
pub const SUBTICKS_PER_TICK: u64 = 10;
/// The usual delivery delay, in subticks: `[MIN, MAX]`. A round trip stays well under a
/// heartbeat (5 ticks).
const DELAY: (u64, u64) = (1, 30);
/// A long delay, in subticks: the message arrives long after its peers.
const LONG_DELAY: (u64, u64) = (31, 600);

/// A run's network fault rates, per mille of messages.
#[derive(Clone, Copy, Debug)]
pub struct Rates {
    /// Lost at random.
    pub loss: u64,
    /// Delivered twice.
    pub duplicate: u64,
    /// Delayed long.
    pub long_delay: u64,
}

/// The network: fault rates and cut links.
#[derive(Debug)]
pub struct Network {
    rates: Rates,
    /// Directed links `(from, to)` that deliver nothing.
    cut: BTreeSet<(NodeId, NodeId)>,
}

impl Network {
    /// A fully linked network with these rates.
    pub fn new(rates: Rates) -> Network {
        Network {
            rates,
            cut: BTreeSet::new(),
        }
    }

    /// The delays after which a message sent now is delivered: none if it is lost, two if it
    /// is duplicated.
    pub fn fate(&self, rng: &mut SimRng, counts: &mut FaultCounts) -> Vec<u64> {
        if rng.chance(self.rates.loss) {
            counts.drops += 1;
            return Vec::new();
        }
        let copies = if rng.chance(self.rates.duplicate) {
            counts.duplicates += 1;
            2
        } else {
            1
        };
        (0..copies)
            .map(|_| {
                if rng.chance(self.rates.long_delay) {
                    counts.long_delays += 1;
                    rng.range(LONG_DELAY.0, LONG_DELAY.1 + 1)
                } else {
                    rng.range(DELAY.0, DELAY.1 + 1)
                }
            })
            .collect()
    }

    /// Whether the link `from → to` delivers now.
    pub fn allows(&self, from: NodeId, to: NodeId) -> bool {
        !self.cut.contains(&(from, to))
    }

    /// Replaces the partition in place by a new one of `shape`, `focus` playing its special
    /// part (see `partition.rs`).
    pub fn partition(
        &mut self,
        shape: Shape,
        nodes: &[NodeId],
        focus: Option<NodeId>,
        rng: &mut SimRng,
    ) {
        self.cut = links_cut(shape, nodes, focus, rng);
    }

    /// No more loss or long delays (duplicates stay: they are harmless to progress).
    pub fn quiet(&mut self) {
        self.rates.loss = 0;
        self.rates.long_delay = 0;
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// The cut links, as `a>b` pairs.
    pub fn describe_cut(&self) -> String {
        let links: Vec<String> = self.cut.iter().map(|(a, b)| format!("{a}>{b}")).collect();
        links.join(" ")
    }

    /// Whether some link is cut.
    pub fn is_partitioned(&self) -> bool {
        !self.cut.is_empty()
    }
}
