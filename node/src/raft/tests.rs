//! Scripted scenarios, each checking one rule of the Raft paper (section named in the test).

use super::testkit::Cluster;
use super::{Action, Input, Role};

/// §5.2: a node whose election timeout elapses becomes candidate, wins a majority, leads.
#[test]
fn a_timed_out_follower_wins_the_election_and_the_others_follow() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    assert_eq!(cluster.role(1), Role::Leader);
    assert_eq!(cluster.role(2), Role::Follower);
    assert_eq!(cluster.role(3), Role::Follower);
    assert_eq!(cluster.term(1), 1);
    // §5.4.2: the new leader's no-op commits at once, on all nodes after the next heartbeat.
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
        let applied: Vec<&[u8]> = cluster.applied[&id]
            .iter()
            .map(|entry| entry.data.as_slice())
            .collect();
        assert_eq!(applied, [b"".as_slice(), b"x=1"], "node {id}");
    }
}

/// Figure 2 (persistence before responding): a follower's acknowledgement waits for its disk,
/// and the leader does not commit on an acknowledgement that was never sent.
#[test]
fn a_follower_acknowledges_only_what_it_has_persisted() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.auto_persist = false;
    cluster.persist(1);
    cluster.step(
        1,
        Input::Propose {
            id: 7,
            data: b"v".to_vec(),
        },
    );
    cluster.persist(1);
    cluster.deliver_all();
    assert_eq!(cluster.commit(1), 1, "no follower has persisted entry 2");
    assert!(cluster.node(2).held_messages() > 0);
    cluster.persist(2);
    cluster.deliver_all();
    assert_eq!(cluster.commit(1), 2, "node 2's durable ack makes a quorum");
}

/// The leader counts itself only for what its own disk acknowledged (DESIGN rule 3).
#[test]
fn a_leader_does_not_count_its_own_unpersisted_entries() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.auto_persist = false;
    cluster.step(
        1,
        Input::Propose {
            id: 7,
            data: b"v".to_vec(),
        },
    );
    cluster.deliver_all();
    cluster.persist(2);
    cluster.deliver_all();
    // One follower acked entry 2: with the leader's own durable copy that is a quorum, but the
    // leader's copy is not durable yet.
    assert_eq!(cluster.commit(1), 1);
    cluster.persist(1);
    assert_eq!(cluster.commit(1), 2);
    let accepted = cluster.events[&1].iter().any(|action| {
        matches!(
            action,
            Action::Proposal {
                id: 7,
                outcome: super::ProposalOutcome::Accepted { index: 2, .. }
            }
        )
    });
    assert!(accepted);
}
