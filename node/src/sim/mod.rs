//! The deterministic simulator (feature `sim`): N sans-IO Raft cores, a hostile world around
//! them, and a checker of Raft's safety properties after every step.
//!
//! One seeded generator drives everything (`rng.rs`), the cores included (their jitter seeds
//! are drawn from it), and nothing else varies, so a seed replays bit for bit:
//!
//! ```text
//! cargo run --release -p balsa-cli -- sim --seed S --nodes K
//! ```
//!
//! A run has two phases:
//!
//! 1. **Chaos** (`SimConfig::chaos_ticks` ticks). The network (`network.rs`) loses 0–20% of the
//!    messages, duplicates some, delays each by its own random delay (so they reorder), and
//!    holds a few back for tens of ticks. The nemesis (`nemesis.rs`) puts partitions in place
//!    (`partition.rs`: isolate one node, two halves, a ring of majorities, a bridge, one node
//!    deaf or mute), heals them, crashes nodes for a while or bounces them (`disk.rs`:
//!    everything not yet durable is lost, except a random prefix of what was written but not
//!    acknowledged), restarts them from their disk, and asks leaders to hand over leadership;
//!    half its blows aim at the leader. Persists complete after random delays, in order, some
//!    of them late. Clients (`clients.rs`) write and read through random nodes, against each
//!    node's applied state machine (`kv.rs`). Rates, weights and the cores' settings differ
//!    from seed to seed (`setup.rs`).
//! 2. **Liveness.** Every partition heals, every crashed node restarts, and the faults stop (no
//!    more loss, long delays or late persists: Raft promises progress only when its broadcast
//!    time is well under the election timeout). A probe client then writes once, and that
//!    write must commit within 10 × the maximum election timeout.
//!
//! After every step of a core, `checks.rs` checks election safety, leader append-only, log
//! matching, leader completeness, state machine safety, that commit indexes never go down,
//! that term and vote never go back across restarts, and ARCHITECTURE.md's durability rules: no
//! message promising durability leaves before what it promises is durable, a leader commits
//! only what a quorum holds durably, and only through an entry of its own term. The first
//! violation stops the run; a panic in a core is caught and reported as one. At the end the
//! clients' history goes to the linearizability checker (`linearizability.rs`); an answer
//! starting with "inconclusive" (its search budget ran out) is reported in
//! [`Report::linearizability`] but is not a violation, since it means "unknown", not "broken".
//!
//! Time is logical (`queue.rs`): a tick is 10 subticks; every node gets a `Tick` every 10
//! subticks (each at its own phase), messages take 1–30 subticks, so a round trip is well under
//! a heartbeat. Iteration is over ordered maps only, never over a `HashMap`. `driver.rs` runs
//! the loop; `trace.rs` describes each step when `SimConfig::trace` asks for it.
//!
//! The core's fault switches ([`Faults`]) plant classic bugs; `node/tests/sim.rs` shows that
//! the simulator catches each within a stated number of seeds.

mod checks;
mod clients;
mod digest;
mod disk;
mod driver;
pub mod linearizability;
mod membership;
mod nemesis;
mod network;
mod partition;
mod queue;
mod report;
mod rng;
pub use self::rng::SimRng;
mod setup;
mod store;
mod trace;

pub use self::report::{FaultCounts, Linearizability, Report, Violation, ViolationKind};
use crate::raft::Faults;

/// How a run is set up, besides its seed (which decides everything else: fault rates, the
/// workload, the cores' settings).
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Nodes in the cluster, at least 2 (3, 5 and 7 are the sizes tested).
    pub nodes: u64,
    /// Ticks of the chaos phase. The liveness phase follows.
    pub chaos_ticks: u64,
    /// Classic bugs to plant in every core.
    pub faults: Faults,
    /// The direct checks of ARCHITECTURE.md's durability rules: no vote request, vote or
    /// acknowledgement before what it promises is durable (rules 1, 2), a restarted node resumes
    /// its durable term and vote, the durable hard state never goes back (rule 1), a leader's
    /// commit point is durable on a quorum (rules 2, 3) and is an entry of its own term
    /// (rule 4). On by default. Turned off only to measure how soon the *consequences* of such a
    /// bug (two leaders in a term, a lost commit, a non-linearizable history) are caught
    /// without them.
    pub rule_checks: bool,
    /// Nodes kept crashed through the liveness phase: the first ids. 0 normally; a majority
    /// makes the liveness check fail, which tests the check itself (without the membership
    /// nemesis: a change may have replaced those ids).
    pub liveness_down: u64,
    /// Test only: serve reads at once from the local state machine of whatever node the client
    /// picked, without ReadIndex (the classic stale read). The linearizability check must
    /// catch it; `node/tests/sim.rs` shows it does.
    pub stale_reads: bool,
    /// Test only: every replica's key-value store applies each command under a client id of
    /// its own, so its session table never recognises a retry (the planted bug
    /// `apply-retries-again`). The session check must catch it; `node/tests/sim.rs` shows it
    /// does.
    pub ignore_sessions: bool,
    /// Record a line per step and per nemesis action in [`Report::trace`] (slow; for reading
    /// a failing seed).
    pub trace: bool,
    /// Which seeds run the membership nemesis (additions, removals, promotions, replacements
    /// of lost nodes, the leader removing itself). Default: a third of the seeds.
    pub membership: MembershipRuns,
}

/// Which seeds change the cluster's membership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipRuns {
    /// A third of the seeds, chosen by the seed (the default).
    Some,
    /// Every seed.
    All,
    /// No seed.
    None,
}

impl SimConfig {
    /// The defaults for a cluster of `nodes`: 2000 ticks of chaos, no planted bug, every check.
    pub fn new(nodes: u64) -> SimConfig {
        SimConfig {
            nodes,
            chaos_ticks: 2000,
            faults: Faults::default(),
            rule_checks: true,
            liveness_down: 0,
            stale_reads: false,
            ignore_sessions: false,
            trace: false,
            membership: MembershipRuns::Some,
        }
    }
}

/// Runs the simulation of `seed`. A panic in a core (or in the simulator) does not propagate:
/// it is reported as a [`ViolationKind::Panic`] violation.
///
/// Precondition: `config.nodes >= 2`. A lone node sends no messages, and it may lead the same
/// term twice (it wins in the step that bumps the term; a crash before that persist is durable
/// brings it back in the older term), so the log-matching check, which compares every log ever
/// seen, would flag entries that never left it.
pub fn run(seed: u64, config: &SimConfig) -> Report {
    assert!(config.nodes >= 2, "the simulator needs at least two nodes");
    driver::run(seed, config)
}

/// The cluster size the multi-seed runs use for `seed` when none is given: 3, 5 and 7 in turn.
pub fn nodes_for_seed(seed: u64) -> u64 {
    [3, 5, 7][usize::try_from(seed % 3).expect("below 3")]
}

/// Whether this build can plant bugs (feature `planted-bugs`): without it the fault switches,
/// `stale_reads` and `ignore_sessions` are compiled out and change nothing.
pub const PLANTED_BUGS: bool = cfg!(feature = "planted-bugs");

/// The names of the fault switches, as the command line spells them.
pub const FAULT_NAMES: [&str; 10] = [
    "ack-before-persist",
    "commit-old-terms-by-counting",
    "vote-without-log-check",
    "forget-vote-on-restart",
    "snapshot-with-current-term",
    "ack-beyond-match",
    "joint-counts-only-new",
    "learner-counted",
    "overlapping-changes",
    "leader-counts-itself-outside-config",
];

/// Turns on the fault switch called `name` (one of [`FAULT_NAMES`]) in `faults`. Returns false
/// for an unknown name.
pub fn set_fault(faults: &mut Faults, name: &str) -> bool {
    match name {
        "ack-before-persist" => faults.ack_before_persist = true,
        "commit-old-terms-by-counting" => faults.commit_old_terms_by_counting = true,
        "vote-without-log-check" => faults.vote_without_log_check = true,
        "forget-vote-on-restart" => faults.forget_vote_on_restart = true,
        "snapshot-with-current-term" => faults.snapshot_with_current_term = true,
        "ack-beyond-match" => faults.ack_beyond_match = true,
        "joint-counts-only-new" => faults.joint_counts_only_new = true,
        "learner-counted" => faults.learner_counted = true,
        "overlapping-changes" => faults.overlapping_changes = true,
        "leader-counts-itself-outside-config" => faults.leader_counts_itself_outside_config = true,
        _ => return false,
    }
    true
}

/// The command that replays `seed` exactly (with the config's fault switches).
pub fn replay_command(seed: u64, config: &SimConfig) -> String {
    let faults = config.faults;
    let switches = [
        faults.ack_before_persist,
        faults.commit_old_terms_by_counting,
        faults.vote_without_log_check,
        faults.forget_vote_on_restart,
        faults.snapshot_with_current_term,
        faults.ack_beyond_match,
        faults.joint_counts_only_new,
        faults.learner_counted,
        faults.overlapping_changes,
        faults.leader_counts_itself_outside_config,
    ];
    let planted = switches.contains(&true) || config.stale_reads;
    let features = if planted {
        " --features planted-bugs"
    } else {
        ""
    };
    let mut command = format!(
        "cargo run --release -p balsa-cli{features} -- sim --seed {seed} --nodes {}",
        config.nodes
    );
    for (name, on) in FAULT_NAMES.iter().zip(switches) {
        if on {
            command.push_str(" --fault ");
            command.push_str(name);
        }
    }
    let defaults = SimConfig::new(config.nodes);
    if config.chaos_ticks != defaults.chaos_ticks {
        command.push_str(&format!(" --ticks {}", config.chaos_ticks));
    }
    if !config.rule_checks {
        command.push_str(" --no-rule-checks");
    }
    match config.membership {
        MembershipRuns::Some => {}
        MembershipRuns::All => command.push_str(" --membership all"),
        MembershipRuns::None => command.push_str(" --membership none"),
    }
    if config.stale_reads {
        command.push_str(" --stale-reads");
    }
    if config.liveness_down != 0 {
        command.push_str(&format!(" --liveness-down {}", config.liveness_down));
    }
    command
}
