//! Tests of the deterministic simulator (`balsa::sim`), and through it of the Raft core.
//!
//! 1. **Safety under faults**: 500 seeds each of 3, 5 and 7 nodes (1,500 runs of 2,000 ticks of
//!    chaos plus the liveness phase, the defaults of `balsa sim`), every fault of the network,
//!    the disks and the nemesis on, no violation. Each node runs the real replica and key-value
//!    store, so this covers the session table too. About 30 s of CPU in `cargo test --release`.
//! 2. **Determinism**: a seed run twice gives the same run, bit for bit (the digest of every
//!    effect of every replica).
//! 3. **Teeth**: each of the core's fault switches plants a classic bug; a test per switch shows
//!    the simulator catches it within a stated number of seeds, once with every check (the rule
//!    checks catch the broken rule at the step it breaks) and once with only the checks of its
//!    consequences (two leaders in a term, a lost commit). The numbers in the test names are
//!    bounds with a wide margin over what was measured; the measurements are in each test's
//!    documentation. The stale-read switch of the simulator itself shows the linearizability
//!    check works end to end. The snapshot switch plants a wrong snapshot term; the session
//!    switch a key-value store that applies a retried write again.
//! 4. **Liveness**: every run above must commit a write within 10 election timeouts of healing;
//!    a run that keeps a majority down must be reported as a liveness violation.
//!
//! A failing run prints its seed and the command that replays it.
#![cfg(feature = "sim")]

use std::ops::Range;

use balsa::sim::{self, Linearizability, MembershipRuns, Report, SimConfig, ViolationKind};

/// Runs every seed of `seeds` with `nodes` nodes and fails, listing every failing seed with its
/// replay command, if any run found a violation.
fn assert_no_violation(seeds: Range<u64>, nodes: u64) {
    let config = SimConfig::new(nodes);
    let mut failures = Vec::new();
    let mut steps = 0;
    for seed in seeds.clone() {
        let report = sim::run(seed, &config);
        steps += report.steps;
        assert!(
            report.liveness_ticks.is_some() || !report.passed(),
            "seed {seed}: a run that passed must have shown liveness"
        );
        for violation in &report.violations {
            failures.push(format!(
                "seed {seed} ({nodes} nodes): {violation}\n  replay: {}",
                sim::replay_command(seed, &config)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of seeds {seeds:?} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(steps > 0);
}

#[test]
fn no_violation_in_500_seeds_of_3_nodes() {
    assert_no_violation(0..500, 3);
}

#[test]
fn no_violation_in_500_seeds_of_5_nodes() {
    assert_no_violation(0..500, 5);
}

#[test]
fn no_violation_in_500_seeds_of_7_nodes() {
    assert_no_violation(0..500, 7);
}

#[test]
fn a_seed_replays_bit_for_bit() {
    for (seed, nodes) in [(7, 3), (12_345, 5), (99, 7)] {
        let config = SimConfig::new(nodes);
        let first = sim::run(seed, &config);
        let second = sim::run(seed, &config);
        assert_eq!(first.digest, second.digest, "seed {seed}");
        assert_eq!(
            (
                first.steps,
                first.ticks,
                first.faults,
                first.committed_writes,
                first.reads
            ),
            (
                second.steps,
                second.ticks,
                second.faults,
                second.committed_writes,
                second.reads
            ),
            "seed {seed}"
        );
        assert_eq!(first.linearizability, second.linearizability);
        assert_eq!(first.violations, second.violations);
    }
    let other = sim::run(8, &SimConfig::new(3));
    assert_ne!(
        other.digest,
        sim::run(7, &SimConfig::new(3)).digest,
        "different seeds, different runs"
    );
}

#[test]
fn a_run_reports_its_work_and_a_linearizable_history() {
    let report = sim::run(3, &SimConfig::new(5));
    assert!(report.passed(), "{:?}", report.violations);
    assert_eq!(report.linearizability, Linearizability::Ok);
    assert!(report.steps > 1_000);
    assert!(report.committed_writes > 0 && report.reads > 0);
    assert!(report.history_len > 0);
    assert!(report.faults.drops + report.faults.cut > 0);
    assert!(report.faults.crashes > 0 || report.faults.partitions > 0);
}

#[test]
fn the_replay_command_names_everything_that_shapes_the_run() {
    let mut config = SimConfig::new(5);
    assert_eq!(
        sim::replay_command(42, &config),
        "cargo run --release -p balsa-cli -- sim --seed 42 --nodes 5"
    );
    config.faults.forget_vote_on_restart = true;
    config.rule_checks = false;
    assert_eq!(
        sim::replay_command(42, &config),
        "cargo run --release -p balsa-cli --features planted-bugs -- sim --seed 42 --nodes 5 \
         --fault forget-vote-on-restart --no-rule-checks"
    );
}

// ----------------------------------------------------------------------------------------------
// Teeth.

/// Runs seeds in order until one finds a violation; fails if none of `seeds` does. Returns the
/// report of the first failing seed, after checking its violation is of one of `kinds`. Seeds
/// run `nodes` nodes, or 3, 5, 7 by seed when `nodes` is `None`.
#[allow(
    clippy::print_stdout,
    reason = "the seed that caught the bug, shown by `cargo test -- --nocapture`"
)]
fn first_catch(
    seeds: Range<u64>,
    nodes: Option<u64>,
    kinds: &[ViolationKind],
    adjust: impl Fn(&mut SimConfig),
) -> Report {
    for seed in seeds.clone() {
        let mut config = SimConfig::new(nodes.unwrap_or_else(|| sim::nodes_for_seed(seed)));
        adjust(&mut config);
        let report = sim::run(seed, &config);
        let Some(violation) = report.violations.first() else {
            continue;
        };
        assert!(
            kinds.contains(&violation.kind),
            "seed {seed} caught it, but as {violation} (expected one of {kinds:?})\n  replay: {}",
            sim::replay_command(seed, &config)
        );
        println!(
            "caught at seed {seed} ({} nodes) after {} steps: {violation}\n  replay: {}",
            report.nodes,
            report.steps,
            sim::replay_command(seed, &config)
        );
        return report;
    }
    panic!("no seed of {seeds:?} caught the planted bug");
}

/// Every seed of 300 catches it at once: a candidate's first RequestVote leaves before its
/// term is durable (seed 0: step 79).
#[test]
fn ack_before_persist_is_caught_within_5_seeds() {
    first_catch(
        0..5,
        None,
        &[ViolationKind::MessageBeforePersist],
        |config| {
            config.faults.ack_before_persist = true;
        },
    );
}

/// Its consequences alone (a follower loses an entry it acknowledged, and a leader that lacks
/// a committed entry is elected) show in 12 of 300 seeds of 3 nodes (first: seed 26, step
/// 4,904; before the simulator ran the replica: 98 of 1,000, first seed 4).
#[test]
fn ack_before_persist_consequences_are_caught_within_200_seeds_of_3_nodes() {
    first_catch(
        0..200,
        Some(3),
        &[
            ViolationKind::LeaderCompleteness,
            ViolationKind::ElectionSafety,
            ViolationKind::LogMatching,
            ViolationKind::StateMachineSafety,
            ViolationKind::Liveness,
            ViolationKind::Linearizability,
        ],
        |config| {
            config.faults.ack_before_persist = true;
            config.rule_checks = false;
        },
    );
}

/// Caught in 207 of 300 seeds of 3 nodes: the leader's commit index lands on an entry of an
/// earlier term (first: seed 2, step 4,514).
#[test]
fn commit_old_terms_by_counting_is_caught_within_20_seeds() {
    first_catch(
        0..20,
        None,
        &[ViolationKind::CommitOfEarlierTerm],
        |config| {
            config.faults.commit_old_terms_by_counting = true;
        },
    );
}

/// The Figure 8 loss itself needs a rare sequence: an old-term entry committed by counting on
/// a bare majority, its leader cut off before its own no-op reaches them, then a node holding
/// a later-term entry at that index elected by that majority. Measured: 23 seeds in 20,000 of
/// 3 nodes (about 1 in 870; first: seed 622, step 1,489) before the simulator ran the replica;
/// none in the first 300 since; never seen in 1,000 seeds of 5 or 7 nodes. The runs moved
/// twice since (snapshots carry their configuration; a third of the seeds change membership and
/// clients move on from an unanswered node): the first catch is seed 959 (step 6,342). It stops
/// at the first catch.
#[test]
fn commit_old_terms_by_counting_consequences_are_caught_within_5000_seeds_of_3_nodes() {
    first_catch(
        0..5_000,
        Some(3),
        &[
            ViolationKind::LeaderCompleteness,
            ViolationKind::StateMachineSafety,
            ViolationKind::Linearizability,
        ],
        |config| {
            config.faults.commit_old_terms_by_counting = true;
            config.rule_checks = false;
        },
    );
}

/// A node with a stale log wins an election: caught in 206 of 300 seeds of 3 nodes, as a
/// leader without the committed prefix (seed 0: step 431). There is no rule check for it:
/// leader completeness is the check.
#[test]
fn vote_without_log_check_is_caught_within_20_seeds() {
    first_catch(
        0..20,
        None,
        &[
            ViolationKind::LeaderCompleteness,
            ViolationKind::StateMachineSafety,
        ],
        |config| {
            config.faults.vote_without_log_check = true;
        },
    );
}

/// Caught in 293 of 300 seeds of 3 nodes, at the first restart of a node that had voted
/// (seed 0: step 324): it comes back with no vote while its disk holds one. (It needs restarts: 96% of
/// seeds crash or bounce nodes, the nemesis acting every 1 to 49 ticks.)
#[test]
fn forget_vote_on_restart_is_caught_within_10_seeds() {
    first_catch(
        0..10,
        None,
        &[ViolationKind::TermOrVoteWentBack],
        |config| {
            config.faults.forget_vote_on_restart = true;
        },
    );
}

/// Its consequence (two leaders in one term: the restarted node votes again in the term it
/// had voted in) needs a bounce between two vote requests of one term: 5 of 300 seeds of 3
/// nodes (first: seed 43, step 4,152; before the simulator ran the replica: 29 of 1,000).
#[test]
fn forget_vote_on_restart_consequences_are_caught_within_1000_seeds_of_3_nodes() {
    first_catch(
        0..1_000,
        Some(3),
        &[
            ViolationKind::ElectionSafety,
            ViolationKind::LogMatching,
            ViolationKind::LeaderCompleteness,
            ViolationKind::StateMachineSafety,
            ViolationKind::Linearizability,
        ],
        |config| {
            config.faults.forget_vote_on_restart = true;
            config.rule_checks = false;
        },
    );
}

/// Reads served from a node's local state, without ReadIndex, return stale values whenever
/// that node lags: the linearizability check catches it in 268 seeds of 300, the first at once.
#[test]
fn stale_reads_are_caught_by_the_linearizability_check_within_5_seeds() {
    first_catch(0..5, None, &[ViolationKind::Linearizability], |config| {
        config.stale_reads = true;
    });
}

/// A follower acknowledging its last index instead of what the append matched vouches for a
/// stale tail: caught at the acknowledgement in 137 of 300 seeds of 3 nodes (first: seed 1, step
/// 7,863, as the acknowledgement is made). Without the acknowledgement check (measured before the election-timer fix) the other
/// checks caught it in 35 of 300, later, as a commit that a quorum did not hold.
#[test]
fn ack_beyond_match_is_caught_within_10_seeds() {
    first_catch(
        0..10,
        Some(3),
        &[ViolationKind::FalseAcknowledgement],
        |config| config.faults.ack_beyond_match = true,
    );
}

/// A key-value store whose session table never recognises a retry applies a retried write a
/// second time wherever the retry was committed too (its client heard nothing, and sent it
/// again): caught by the session check in 258 of 300 seeds, the first at seed 0 (step 632:
/// client 4's command 3 took effect at index 7 and again at index 14).
#[test]
fn apply_retries_again_is_caught_within_5_seeds() {
    first_catch(0..5, None, &[ViolationKind::SessionTable], |config| {
        config.ignore_sessions = true;
    });
}

// ----------------------------------------------------------------------------------------------
// Liveness.

#[test]
fn the_liveness_phase_commits_a_write_within_10_election_timeouts() {
    for seed in 0..30 {
        let report = sim::run(seed, &SimConfig::new(sim::nodes_for_seed(seed)));
        assert!(report.passed(), "seed {seed}: {:?}", report.violations);
        let ticks = report
            .liveness_ticks
            .expect("a passing run reached the liveness phase");
        assert!(ticks <= 10 * 30, "seed {seed}: {ticks} ticks");
    }
}

/// The nodes kept down are the first ids, so the cluster keeps its members: a membership
/// change replacing one of them would leave a majority up.
#[test]
fn a_majority_kept_down_is_a_liveness_violation() {
    let mut config = SimConfig::new(3);
    config.liveness_down = 2;
    config.membership = MembershipRuns::None;
    let report = sim::run(1, &config);
    let kinds: Vec<ViolationKind> = report.violations.iter().map(|v| v.kind).collect();
    assert_eq!(kinds, [ViolationKind::Liveness]);
    assert_eq!(report.liveness_ticks, None);
}

#[test]
fn a_minority_kept_down_still_makes_progress() {
    let mut config = SimConfig::new(5);
    config.liveness_down = 2;
    config.membership = MembershipRuns::None;
    let report = sim::run(1, &config);
    assert!(report.passed(), "{:?}", report.violations);
    assert!(report.liveness_ticks.is_some());
}

/// A leader that labels the snapshot it sends with its current term (not the term of the
/// snapshot's last entry) gives followers a log base the committed log never had. Caught at the
/// first install of a seed: 133 of 300 seeds of 3 nodes install one and catch it (40 of the
/// first 100), the first at seed 2 (step 1,300), then seeds 5, 6 and 11. (The bound was 60
/// while installs were rarer, 17 of 100 seeds, the first at seed 18.)
#[test]
fn snapshot_with_current_term_is_caught_within_10_seeds() {
    first_catch(0..10, Some(3), &[ViolationKind::Snapshot], |config| {
        config.faults.snapshot_with_current_term = true;
    });
}

/// The snapshot machinery is exercised, not just present: across a few seeds nodes save
/// snapshots, followers install them from leaders, and disks are lost (and their nodes
/// replaced, with the membership nemesis), with no violation.
#[test]
fn snapshots_installs_and_wipes_happen_without_violation() {
    let (mut snapshots, mut installs, mut wipes) = (0, 0, 0);
    // Installs are rare and come in clusters: 238 in 300 seeds, 32 in the first 60.
    for seed in 0..60 {
        let mut config = SimConfig::new(3);
        config.membership = MembershipRuns::Some;
        let report = sim::run(seed, &config);
        assert!(report.passed(), "seed {seed}: {:?}", report.violations);
        snapshots += report.faults.snapshots;
        installs += report.faults.installs;
        wipes += report.faults.wipes;
    }
    assert!(
        snapshots > 100 && installs > 10 && wipes > 3,
        "{snapshots} {installs} {wipes}"
    );
}

// ----------------------------------------------------------------------------------------------
// Membership changes: with `MembershipRuns::Some` a third of the seeds run the membership
// nemesis (additions, removals, promotions, the leader removing itself, lost nodes replaced
// under a new id). Catch figures: 300 seeds with it, default cluster sizes, this commit.

/// The membership nemesis acts, and every check holds (the 1,500 seeds above run it in a third
/// of them; this runs it in every one of 20).
#[test]
fn the_membership_nemesis_changes_the_cluster_and_every_check_holds() {
    let mut config = SimConfig::new(3);
    config.membership = MembershipRuns::All;
    let mut changes = 0;
    // Seeds of 3 nodes shrink to one voter and grow to seven.
    for seed in 0..20 {
        let report = sim::run(seed, &config);
        assert!(report.passed(), "seed {seed}: {:?}", report.violations);
        changes += report.faults.membership_changes;
    }
    assert!(changes > 0, "the nemesis asked for no change in 20 seeds");
}

/// Counting only `C_new` while joint: caught in 45 of 300 seeds (first: seed 0, a commit that
/// the old voters' majority did not hold).
#[test]
fn joint_counts_only_new_is_caught_within_10_seeds() {
    first_catch(
        0..10,
        None,
        &[
            ViolationKind::QuorumMiscount,
            ViolationKind::CommitNotDurable,
            ViolationKind::ElectionSafety,
        ],
        |config| {
            config.membership = MembershipRuns::Some;
            config.faults.joint_counts_only_new = true;
        },
    );
}

/// A learner counted among the voters: caught in 44 of 300 seeds (first: seed 0, a commit no
/// quorum of voters held).
#[test]
fn learner_counted_is_caught_within_10_seeds() {
    first_catch(
        0..10,
        None,
        &[
            ViolationKind::QuorumMiscount,
            ViolationKind::CommitNotDurable,
        ],
        |config| {
            config.membership = MembershipRuns::Some;
            config.faults.learner_counted = true;
        },
    );
}

/// A second change before the first finished: caught in 30 of 300 seeds (first: seed 0, at the
/// append of the second configuration).
#[test]
fn overlapping_changes_are_caught_within_10_seeds() {
    first_catch(
        0..10,
        None,
        &[ViolationKind::ConfigurationTransition],
        |config| {
            config.membership = MembershipRuns::Some;
            config.faults.overlapping_changes = true;
        },
    );
}

/// A leader outside `C_new` counting itself toward it: caught in 11 of 300 seeds (first: seed 0,
/// a commit no joint quorum held).
#[test]
fn leader_counting_itself_outside_the_configuration_is_caught_within_10_seeds() {
    first_catch(
        0..10,
        None,
        &[
            ViolationKind::QuorumMiscount,
            ViolationKind::CommitNotDurable,
        ],
        |config| {
            config.membership = MembershipRuns::Some;
            config.faults.leader_counts_itself_outside_config = true;
        },
    );
}
