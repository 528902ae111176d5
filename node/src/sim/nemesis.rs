//! The nemesis: what goes wrong next during the chaos phase, and when.
//!
//! Every few ticks it picks one act: put a new partition in place (`partition.rs`), heal every
//! link, crash a node for a while, *bounce* a node (crash it and restart it within three ticks:
//! the window between a message and the persist it depends on, or between two vote requests of
//! one term, is that short), ask the leader to hand over leadership, wipe a follower's disk (see
//! the driver's `wipe` for when that is allowed), or do nothing. The driver
//! aims half the partitions and crashes at the current leader.
//!
//! The weights of the acts are drawn per seed, and an act may be switched off entirely for a
//! seed ("swarm testing", Groce et al., ISSTA 2012): a run without, say, partitions explores
//! crash interleavings that partitions would otherwise keep cutting short.

use super::network::SUBTICKS_PER_TICK;
use super::partition::Shape;
use super::rng::SimRng;

/// One act of the nemesis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// Replace the partition by a new one of this shape.
    Partition(Shape),
    /// Heal every link.
    Heal,
    /// Crash a node; it restarts after `downtime` subticks.
    Crash {
        /// Subticks until the restart.
        downtime: u64,
    },
    /// Ask the leader to hand leadership to another node.
    Transfer,
    /// Wipe a follower's disk and restart it empty after `downtime` subticks.
    Wipe {
        /// Subticks until the restart.
        downtime: u64,
    },
    /// Nothing this time.
    Idle,
}

/// Indexes into the weights.
const PARTITION: usize = 0;
const HEAL: usize = 1;
const CRASH: usize = 2;
const BOUNCE: usize = 3;
const TRANSFER: usize = 4;
const IDLE: usize = 5;
const WIPE: usize = 6;

/// A bounced node is down for at most this many subticks.
const BOUNCE_DOWNTIME: u64 = 3 * SUBTICKS_PER_TICK;

/// One run's nemesis.
#[derive(Clone, Copy, Debug)]
pub struct Nemesis {
    /// Relative weights of partition, heal, crash, bounce, transfer, idle, wipe.
    weights: [u64; 7],
    /// It acts every `[min, max]` ticks.
    every: (u64, u64),
    /// A crashed node stays down `[min, max]` ticks.
    downtime: (u64, u64),
}

impl Nemesis {
    /// A nemesis with weights, pace and downtimes drawn from `rng`.
    pub fn draw(rng: &mut SimRng) -> Nemesis {
        let mut weight = |off_per_mille: u64, max: u64| {
            if rng.chance(off_per_mille) {
                0
            } else {
                rng.range(1, max + 1)
            }
        };
        let mut weights = [0; 7];
        weights[PARTITION] = weight(150, 10);
        weights[HEAL] = weight(0, 6);
        weights[CRASH] = weight(200, 10);
        weights[BOUNCE] = weight(200, 10);
        weights[TRANSFER] = weight(300, 4);
        weights[IDLE] = weight(300, 4);
        weights[WIPE] = weight(500, 2);
        let slowest = rng.range(5, 50);
        Nemesis {
            weights,
            every: ((slowest / 4).max(1), slowest),
            downtime: (1, rng.range(2, 41)),
        }
    }

    /// Subticks until the next act.
    pub fn next_delay(&self, rng: &mut SimRng) -> u64 {
        rng.range(self.every.0, self.every.1 + 1) * SUBTICKS_PER_TICK
    }

    /// The next act.
    pub fn act(&self, rng: &mut SimRng) -> Act {
        let total: u64 = self.weights.iter().sum();
        // HEAL's weight is never 0, so the total is positive.
        let mut roll = rng.range(0, total);
        let mut chosen = IDLE;
        for (kind, &weight) in self.weights.iter().enumerate() {
            if roll < weight {
                chosen = kind;
                break;
            }
            roll -= weight;
        }
        match chosen {
            PARTITION => Act::Partition(rng.pick(&Shape::ALL)),
            HEAL => Act::Heal,
            CRASH => Act::Crash {
                downtime: rng.range(self.downtime.0, self.downtime.1 + 1) * SUBTICKS_PER_TICK,
            },
            BOUNCE => Act::Crash {
                downtime: rng.range(1, BOUNCE_DOWNTIME + 1),
            },
            TRANSFER => Act::Transfer,
            WIPE => Act::Wipe {
                downtime: rng.range(self.downtime.0, self.downtime.1 + 1) * SUBTICKS_PER_TICK,
            },
            _ => Act::Idle,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Act, Nemesis};
    use crate::sim::rng::SimRng;

    #[test]
    fn every_act_happens_under_some_seed() {
        let mut seen = [false; 6];
        for seed in 0..50 {
            let mut rng = SimRng::new(seed);
            let nemesis = Nemesis::draw(&mut rng);
            for _ in 0..100 {
                let kind = match nemesis.act(&mut rng) {
                    Act::Partition(_) => 0,
                    Act::Heal => 1,
                    Act::Crash { .. } => 2,
                    Act::Transfer => 3,
                    Act::Idle => 4,
                    Act::Wipe { .. } => 5,
                };
                seen[kind] = true;
            }
        }
        assert_eq!(seen, [true; 6]);
    }
}
