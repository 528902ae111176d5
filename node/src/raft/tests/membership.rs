//! Membership changes (Raft §6; thesis ch. 4): joint consensus with its configuration in force
//! from its append, auto-leave, learners caught up before they vote, a leader removing itself,
//! one change at a time, and configurations that travel in snapshots.

use super::super::membership::{ChangeError, Membership, Step};
use super::super::testkit::Cluster;
use super::super::{Body, ChangeOutcome, ChangeRefused, Entry, EntryKind, Input, NodeId, Role};
use super::{append, inject, sent};

fn address(id: NodeId) -> Vec<u8> {
    format!("node-{id}").into_bytes()
}

fn add_voter(id: NodeId) -> Step {
    Step::AddVoter {
        id,
        address: address(id),
    }
}

fn add_learner(id: NodeId) -> Step {
    Step::AddLearner {
        id,
        address: address(id),
    }
}

/// Runs the nodes `ids` until node `at` reports the change tagged `tag`; returns its outcome.
fn run_change(cluster: &mut Cluster, ids: &[NodeId], at: NodeId, tag: u64) -> ChangeOutcome {
    let finished = cluster.run_until(ids, 1_000, |c| c.change_outcome(at, tag).is_some());
    assert!(finished, "change {tag} did not finish within 1,000 ticks");
    cluster.change_outcome(at, tag).expect("finished").clone()
}

/// The configurations in node `id`'s log, in order.
fn configurations(cluster: &Cluster, id: NodeId) -> Vec<Membership> {
    let log = cluster.node(id).log();
    (log.first_index()..=log.last_index())
        .filter_map(|index| log.entry(index))
        .filter(|entry| entry.kind == EntryKind::Config)
        .map(|entry| Membership::decode(&entry.data).expect("a readable configuration"))
        .collect()
}

/// A three-node cluster led by node 1 that added the learners `learners` (joining nodes).
fn with_learners(learners: &[NodeId], adjust: impl Fn(&mut super::super::Config)) -> Cluster {
    let mut cluster = Cluster::new(3, &adjust);
    cluster.elect(1);
    for &id in learners {
        cluster.add_joining(id, &adjust);
    }
    if !learners.is_empty() {
        let steps = learners.iter().map(|&id| add_learner(id)).collect();
        cluster.change(1, 100, steps);
        let mut all = vec![1, 2, 3];
        all.extend_from_slice(learners);
        let outcome = run_change(&mut cluster, &all, 1, 100);
        assert!(matches!(outcome, ChangeOutcome::Done { .. }), "{outcome:?}");
    }
    cluster
}

/// Thesis §4.2.1: a new voter joins as a learner, is caught up, and only then promoted, in a
/// joint change that the leader leaves at once when it commits.
#[test]
fn a_new_voter_is_added_as_a_learner_then_promoted_once_caught_up() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.propose(1, b"x");
    cluster.add_joining(4, |_| {});
    assert_eq!(
        cluster.members(4),
        None,
        "a joining node knows no configuration"
    );

    cluster.change(1, 7, vec![add_voter(4)]);
    let outcome = run_change(&mut cluster, &[1, 2, 3, 4], 1, 7);

    let ChangeOutcome::Done { index } = outcome else {
        panic!("the change failed: {outcome:?}");
    };
    assert_eq!(cluster.node(1).membership_index(), index);
    for id in 1..=4 {
        assert_eq!(
            cluster.members(id),
            Some((vec![1, 2, 3, 4], vec![], vec![])),
            "node {id}"
        );
    }
    let steps = configurations(&cluster, 1);
    assert_eq!(steps.len(), 3, "learner, joint, new: {steps:?}");
    assert!(steps[0].is_learner(4) && !steps[0].is_voter(4));
    assert!(steps[1].is_joint() && steps[1].is_voter(4));
    assert!(!steps[2].is_joint());
}

/// A learner receives entries but is never counted, and never campaigns.
#[test]
fn a_learner_is_never_counted_and_never_campaigns() {
    let mut cluster = with_learners(&[4], |_| {});
    let term = cluster.term(4);
    cluster.isolate(2);
    cluster.isolate(3);
    cluster.propose(1, b"only the learner hears this");

    let last = cluster.node(1).log().last_index();
    assert_eq!(
        cluster.progress(1, 4).match_index,
        last,
        "the learner has it"
    );
    assert!(
        cluster.commit(1) < last,
        "but a learner's copy commits nothing"
    );

    cluster.isolate(4);
    cluster.run(&[4], 200);
    assert_eq!(cluster.role(4), Role::Follower);
    assert_eq!(cluster.term(4), term, "a learner never starts an election");
}

/// §6: while joint, a decision needs a majority of C_old and of C_new. Here C_new's majority
/// (1, 4, 5) holds the entry, C_old's (1, 2, 3) does not: nothing commits until 2 or 3 is back.
#[test]
fn a_joint_configuration_commits_only_with_a_majority_of_both_halves() {
    let mut cluster = with_learners(&[4, 5], |config| config.check_quorum = false);
    for id in [2, 3] {
        cluster.cut.insert((1, id));
        cluster.cut.insert((id, 1));
    }
    cluster.change(
        1,
        8,
        vec![
            Step::Promote { id: 4 },
            Step::Promote { id: 5 },
            Step::Remove { id: 2 },
            Step::Remove { id: 3 },
        ],
    );
    // 2 and 3 do not tick: cut off from the leader, they would elect one of themselves.
    cluster.run(&[1, 4, 5], 100);
    assert_eq!(cluster.change_outcome(1, 8), None);
    assert_eq!(
        cluster.members(1),
        Some((vec![1, 4, 5], vec![1, 2, 3], vec![])),
        "C_old,new is in force from its append"
    );
    let joint_index = cluster.node(1).membership_index();
    assert!(cluster.commit(1) < joint_index);
    assert!(cluster.progress(1, 4).match_index >= joint_index);
    assert!(cluster.progress(1, 5).match_index >= joint_index);

    cluster.heal();
    let outcome = run_change(&mut cluster, &[1, 2, 3, 4, 5], 1, 8);
    assert!(matches!(outcome, ChangeOutcome::Done { index } if index > joint_index));
    assert_eq!(cluster.members(1), Some((vec![1, 4, 5], vec![], vec![])));
    let told = cluster.run_until(&[1, 4, 5], 100, |c| {
        c.node(2).is_removed() && c.node(3).is_removed()
    });
    assert!(told, "the removed voters learn it");
}

/// Thesis §4.1: a node uses the newest configuration in its log, committed or not, so when a
/// new leader cuts an uncommitted configuration entry, the one before it is in force again.
#[test]
fn a_cut_configuration_entry_falls_back_to_the_configuration_before_it() {
    let mut cluster = Cluster::new(5, |config| {
        config.pre_vote = false;
        config.check_quorum = false;
    });
    cluster.elect(1);
    for id in [3, 4, 5] {
        cluster.cut.insert((1, id));
    }
    cluster.change(1, 9, vec![Step::Remove { id: 5 }]);
    cluster.deliver_all();
    assert_eq!(
        cluster.members(2),
        Some((vec![1, 2, 3, 4], vec![1, 2, 3, 4, 5], vec![])),
        "node 2 holds C_old,new, uncommitted"
    );
    let joint_index = cluster.node(2).membership_index();

    cluster.isolate(1);
    cluster.isolate(2);
    cluster.elect(3);
    cluster.propose(3, b"from the new leader");
    cluster.heal();
    cluster.run(&[3], 20);

    for id in [1, 2] {
        assert_eq!(
            cluster.members(id),
            Some((vec![1, 2, 3, 4, 5], vec![], vec![])),
            "node {id} fell back"
        );
        let entry = cluster.node(id).log().entry(joint_index).expect("held");
        assert_ne!(
            entry.kind,
            EntryKind::Config,
            "node {id}'s entry was replaced"
        );
    }
    assert_eq!(
        cluster.change_outcome(1, 9),
        Some(&ChangeOutcome::Refused(ChangeRefused::LeadershipLost))
    );
}

/// Thesis §4.2.2: a leader removing itself leads until C_new commits, without counting itself
/// in C_new, then hands leadership to a voter of C_new with TimeoutNow instead of letting the
/// cluster wait out an election timeout.
#[test]
fn a_leader_removing_itself_hands_off_once_the_new_configuration_commits() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.change(1, 10, vec![Step::Remove { id: 1 }]);
    let outcome = run_change(&mut cluster, &[1, 2, 3], 1, 10);
    assert!(matches!(outcome, ChangeOutcome::Done { .. }), "{outcome:?}");
    let handed = cluster.run_until(&[1, 2, 3], 100, |c| c.leader_among(&[2, 3]).is_some());
    assert!(handed, "a voter of C_new leads");

    let timeout_now = [2, 3].iter().any(|&to| {
        sent(&cluster, 1, to)
            .iter()
            .any(|m| m.body == Body::TimeoutNow)
    });
    assert!(timeout_now, "the hand-off went by TimeoutNow");
    assert_eq!(cluster.role(1), Role::Follower);
    assert!(cluster.node(1).is_removed());
    assert_eq!(cluster.members(2), Some((vec![2, 3], vec![], vec![])));
}

/// One change at a time: a second request while the first is in flight is refused, not queued.
#[test]
fn a_change_while_another_is_in_flight_is_refused() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.change(1, 1, vec![Step::Remove { id: 3 }]);
    cluster.change(1, 2, vec![Step::Remove { id: 2 }]);
    assert_eq!(
        cluster.change_outcome(1, 2),
        Some(&ChangeOutcome::Refused(ChangeRefused::Invalid(
            ChangeError::InProgress
        )))
    );
    let outcome = run_change(&mut cluster, &[1, 2, 3], 1, 1);
    assert!(matches!(outcome, ChangeOutcome::Done { .. }));
    assert_eq!(cluster.members(1), Some((vec![1, 2], vec![], vec![])));
}

/// Thesis §4.2.1: a learner that does not catch up within the rounds allowed fails the change,
/// and stays a learner.
#[test]
fn a_learner_that_cannot_catch_up_fails_the_change_and_stays_a_learner() {
    let adjust = |config: &mut super::super::Config| config.catch_up_round_ticks = 50;
    let mut cluster = Cluster::new(3, adjust);
    cluster.elect(1);
    cluster.add_joining(4, adjust);
    cluster.isolate(4);
    cluster.change(1, 11, vec![add_voter(4)]);
    let outcome = run_change(&mut cluster, &[1, 2, 3], 1, 11);
    assert_eq!(
        outcome,
        ChangeOutcome::Refused(ChangeRefused::CatchUpFailed { id: 4, rounds: 1 })
    );
    assert_eq!(cluster.members(1), Some((vec![1, 2, 3], vec![], vec![4])));
}

/// A follower removed by a committed configuration learns it (the leader keeps telling it
/// until it holds C_new, committed), then is no longer sent to and never campaigns.
#[test]
fn a_removed_follower_learns_it_was_removed_and_stays_quiet() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.change(1, 12, vec![Step::Remove { id: 3 }]);
    run_change(&mut cluster, &[1, 2, 3], 1, 12);
    let told = cluster.run_until(&[1, 2, 3], 100, |c| c.node(3).is_removed());
    assert!(told, "node 3 learns it was removed");
    cluster.run(&[1, 2, 3], 100);
    assert!(
        !cluster.node(1).progress.contains_key(&3),
        "the leader stopped sending to it"
    );
    let term = cluster.term(3);
    cluster.isolate(3);
    cluster.run(&[3], 200);
    assert_eq!(cluster.role(3), Role::Follower);
    assert_eq!(cluster.term(3), term, "a removed node never campaigns");
}

/// §7: a snapshot carries the configuration at its index, so a node restarted from one, or a
/// new node that received one, knows it.
#[test]
fn a_snapshot_carries_the_configuration_at_its_index() {
    let adjust = |config: &mut super::super::Config| config.snapshot_trailing_entries = 0;
    let mut cluster = with_learners(&[4], adjust);
    cluster.run(&[1, 2, 3, 4], 10);
    cluster.save_snapshot_with_configuration(2);
    assert!(cluster.node(2).log().base().0 > 0, "the log was compacted");
    cluster.restart(2);
    assert_eq!(cluster.members(2), Some((vec![1, 2, 3], vec![], vec![4])));

    cluster.save_snapshot_with_configuration(1);
    cluster.add_joining(5, adjust);
    cluster.change(1, 13, vec![add_learner(5)]);
    run_change(&mut cluster, &[1, 2, 3, 4, 5], 1, 13);
    // The snapshot predates node 5's addition: for a moment node 5 holds a configuration
    // without itself, and it was never removed, so it must not read as removed then.
    let held_without_itself = std::cell::Cell::new(false);
    let looked_removed = std::cell::Cell::new(false);
    let caught_up = cluster.run_until(&[1, 2, 3, 4, 5], 100, |c| {
        let node = c.node(5);
        if node.membership().is_some_and(|m| !m.is_member(5)) {
            held_without_itself.set(true);
        }
        if node.is_removed() {
            looked_removed.set(true);
        }
        node.log().last_index() == c.node(1).log().last_index()
    });
    assert!(caught_up, "node 5 catches up");
    assert!(
        held_without_itself.get(),
        "the snapshot's configuration predates node 5"
    );
    assert!(
        !looked_removed.get(),
        "a joining node is not removed by an older configuration"
    );
    assert!(
        cluster.node(5).snapshot_index() > 0,
        "node 5 got the snapshot"
    );
    assert_eq!(
        cluster.members(5),
        Some((vec![1, 2, 3], vec![], vec![4, 5]))
    );
}

/// An append carrying a configuration that does not decode is dropped whole, unanswered.
#[test]
fn an_append_with_an_unreadable_configuration_is_dropped() {
    let mut cluster = Cluster::new(3, |_| {});
    let bad = Entry {
        index: 1,
        term: 1,
        kind: EntryKind::Config,
        data: vec![9, 9, 9],
    };
    inject(&mut cluster, 1, 2, 1, append(0, 0, vec![bad], 0));
    assert_eq!(cluster.node(2).log().last_index(), 0);
    assert!(sent(&cluster, 2, 1).is_empty());
    assert_eq!(cluster.members(2), Some((vec![1, 2, 3], vec![], vec![])));
}

/// A joining node is no voter of any configuration it knows: it never campaigns.
#[test]
fn a_joining_node_never_campaigns() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.add_joining(4, |_| {});
    cluster.run(&[4], 200);
    assert_eq!((cluster.role(4), cluster.term(4)), (Role::Follower, 0));
    cluster.step(4, Input::Tick);
}
