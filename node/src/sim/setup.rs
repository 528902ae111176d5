//! What a seed decides before the run starts: the network's fault rates, how often persists
//! are late, the nemesis, the workload, and the cores' settings. Drawn first, in a fixed order,
//! from the run's generator.
//!
//! Every setting varies across seeds so that the seeds together cover the space: PreVote and
//! CheckQuorum each off in one seed of five; messages that carry one entry (200 bytes), two
//! (300), about fifteen (1,000) or a thousand (65,000); an in-flight window of 1, 4 or 64
//! messages. Small messages and a window of one make a lagging follower catch up one round trip
//! at a time, which opens the windows where old-term entries are acknowledged one by one.
//! Snapshots: in four seeds of five, every 5–50 applied entries, keeping 0–10 trailing entries,
//! with 1, 2 or 4 chunks in flight (chunks of one message: 72 bytes at the smallest).

use super::SimConfig;
use super::clients::SimWorkload;
use super::nemesis::Nemesis;
use super::network::Rates;
use super::rng::SimRng;
use crate::raft::{Config, NodeId};

/// A run's parameters.
#[derive(Clone, Debug)]
pub struct Setup {
    /// Network fault rates.
    pub rates: Rates,
    /// Share of persists that complete late, per mille.
    pub late_persist_per_mille: u64,
    /// The nemesis.
    pub nemesis: Nemesis,
    /// The clients' workload.
    pub workload: SimWorkload,
    /// A node snapshots its state machine once it applied this many entries since its last
    /// snapshot (`None`: never, in one seed of five).
    pub snapshot_every: Option<u64>,
    /// Each node's core settings (its jitter seed is drawn again at every start).
    pub cores: Vec<Config>,
    /// With the membership nemesis: the share (per mille) of nemesis acts followed by a
    /// membership change (drawn last, so seeds without it run as they did).
    pub membership_per_mille: Option<u64>,
}

impl Setup {
    /// The parameters of a run of `config`, drawn from `rng`.
    pub fn draw(seed: u64, config: &SimConfig, rng: &mut SimRng) -> Setup {
        let rates = Rates {
            loss: rng.range(0, 201),
            duplicate: rng.range(0, 51),
            long_delay: rng.range(0, 31),
        };
        let late_persist_per_mille = rng.range(0, 101);
        let nemesis = Nemesis::draw(rng);
        let workload = SimWorkload {
            clients: usize::try_from(rng.range(2, 6)).expect("a small count"),
            keys: rng.range(1, 5),
            writes_per_mille: rng.range(300, 701),
        };
        let pre_vote = rng.chance(800);
        let check_quorum = rng.chance(800);
        let max_message_bytes = rng.pick(&[200, 300, 1_000, 65_000]);
        let max_inflight_messages = rng.pick(&[1, 4, 64]);
        // Snapshots every few entries and few trailing entries, so transfers happen often.
        let snapshot_every = rng.chance(800).then(|| rng.range(5, 51));
        let snapshot_trailing_entries = rng.range(0, 11);
        let snapshot_inflight_chunks = rng.pick(&[1, 2, 4]);
        let ids: Vec<NodeId> = (1..=config.nodes).collect();
        let cores = ids
            .iter()
            .map(|&id| {
                let mut core = Config::new(id, ids.clone());
                core.pre_vote = pre_vote;
                core.check_quorum = check_quorum;
                // What the sealed envelope adds on top, so that the entries a message carries
                // (the budget beyond MESSAGE_OVERHEAD) are what they were before sealing, and
                // every seed plays as it did.
                core.set_max_message_bytes(max_message_bytes + balsa_net::SEAL_OVERHEAD);
                core.snapshot_inflight_chunks = snapshot_inflight_chunks;
                core.snapshot_trailing_entries = snapshot_trailing_entries;
                core.max_inflight_messages = max_inflight_messages;
                core.faults = config.faults;
                core
            })
            .collect();
        // Chosen by the seed, not drawn, so that the other seeds' runs do not move.
        let membership = match config.membership {
            super::MembershipRuns::All => true,
            super::MembershipRuns::None => false,
            super::MembershipRuns::Some => (seed / 3).is_multiple_of(3),
        };
        let membership_per_mille = membership.then(|| rng.range(100, 501));
        Setup {
            rates,
            late_persist_per_mille,
            nemesis,
            workload,
            snapshot_every,
            cores,
            membership_per_mille,
        }
    }
}
