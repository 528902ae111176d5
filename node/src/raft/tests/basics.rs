//! The two scenarios everything else builds on: an election and a committed proposal.

use super::super::Role;
use super::super::testkit::Cluster;

/// §5.2: a node whose election timeout elapses becomes candidate, wins a majority, leads.
#[test]
fn a_timed_out_follower_wins_the_election_and_the_others_follow() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    assert_eq!(cluster.role(1), Role::Leader);
    assert_eq!(cluster.role(2), Role::Follower);
    assert_eq!(cluster.role(3), Role::Follower);
    assert_eq!(cluster.term(1), 1);
    // §5.4.2: the new leader's no-op commits at once.
    assert_eq!(cluster.commit(1), 1);
}

/// §5.3: a proposal on the leader replicates, commits on a quorum, and is applied everywhere.
#[test]
fn a_proposal_commits_and_applies_on_every_node() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.propose(1, b"x=1");
    assert_eq!(cluster.commit(1), 2);
    cluster.tick(1, 5); // a heartbeat carries the commit index
    cluster.deliver_all();
    for id in 1..=3 {
        let applied: Vec<&[u8]> = cluster
            .applied(id)
            .iter()
            .map(|entry| entry.data.as_slice())
            .collect();
        assert_eq!(applied, [b"".as_slice(), b"x=1"], "node {id}");
    }
}

/// §5.3 and Figure 2 ("If commitIndex > lastApplied: … apply"): a restarted node applies again,
/// at once, everything its durable hard state says was committed, since its state machine
/// restarts empty.
#[test]
fn a_restarted_node_applies_again_what_it_knew_committed() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.propose(1, b"x=1");
    cluster.propose(1, b"x=2");
    cluster.tick(1, 5);
    cluster.deliver_all();
    let before: Vec<Vec<u8>> = cluster.applied[&2].iter().map(|e| e.data.clone()).collect();
    assert_eq!(before.len(), 3, "the no-op and two writes");
    cluster.restart(2);
    let after: Vec<Vec<u8>> = cluster.applied[&2].iter().map(|e| e.data.clone()).collect();
    // The commit index node 2 had persisted covers what its last append carried.
    assert!(!after.is_empty(), "nothing applied after the restart");
    assert_eq!(after, before[..after.len()]);
}
