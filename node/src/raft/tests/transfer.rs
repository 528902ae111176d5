//! Leadership transfer (thesis §3.10): the leader stops taking proposals, brings the target's log
//! up to date, sends it TimeoutNow, and the target starts an election at once, in the next term,
//! past the others' leader lease. If it has not taken over within an election timeout, the
//! transfer is given up.

use super::super::testkit::Cluster;
use super::super::{Action, Body, Input, ProposalOutcome, ProposeError, Role};
use super::{append_answer, grants_vote, in_flight, outcome, propose, sent};

/// Where in the cluster's record of sent messages the first TimeoutNow to `to` is.
fn timeout_now_position(cluster: &Cluster, to: u64) -> Option<usize> {
    cluster
        .sent
        .iter()
        .position(|(_, t, msg)| *t == to && msg.body == Body::TimeoutNow)
}

fn aborted(cluster: &Cluster, leader: u64) -> bool {
    cluster
        .events(leader)
        .iter()
        .any(|action| matches!(action, Action::TransferAborted { .. }))
}

/// Thesis §3.10: to an up-to-date follower, TimeoutNow leaves at once; the target campaigns in
/// the next term without waiting for its timeout, and wins — node 3 votes for it although it
/// heard from node 1 a moment ago, since the request says it comes on the leader's behalf.
#[test]
fn a_transfer_to_an_up_to_date_follower_makes_it_leader_in_the_next_term() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.propose(1, b"x");

    cluster.step(1, Input::TransferLeadership { to: 2 });
    let to_2 = in_flight(&cluster, 1, 2);
    assert_eq!(to_2.len(), 1);
    assert_eq!(to_2[0].body, Body::TimeoutNow);

    cluster.deliver_all();
    assert_eq!((cluster.role(2), cluster.term(2)), (Role::Leader, 2));
    assert_eq!((cluster.role(1), cluster.term(1)), (Role::Follower, 2));
    assert!(sent(&cluster, 3, 2).into_iter().any(grants_vote));
    assert!(!aborted(&cluster, 1), "the transfer succeeded");
    assert_eq!(cluster.terms(2), [1, 1, 2], "x kept, then the new no-op");
}

/// Thesis §3.10: "the prior leader sends its log entries to the target server" first. Node 3
/// missed two entries while cut off; the leader sends them, and only after node 3 acknowledged
/// the leader's last entry does TimeoutNow leave.
#[test]
fn a_transfer_to_a_lagging_follower_first_brings_its_log_up_to_date() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.isolate(3);
    cluster.propose(1, b"a");
    cluster.propose(1, b"b");
    cluster.heal();
    let last = cluster.node(1).log().last_index();
    assert!(cluster.progress(1, 3).match_index < last);

    cluster.step(1, Input::TransferLeadership { to: 3 });
    assert_eq!(
        timeout_now_position(&cluster, 3),
        None,
        "not before it caught up"
    );
    let (min, _) = cluster.node(1).config().election_ticks;
    let took_over = cluster.run_until(&[1], min, |cluster| cluster.role(3) == Role::Leader);

    assert!(took_over, "within an election timeout");
    let caught_up = cluster
        .sent
        .iter()
        .position(|(from, _, msg)| *from == 3 && append_answer(msg) == Some((last, true)))
        .expect("node 3 acknowledged the last entry");
    let timeout_now = timeout_now_position(&cluster, 3).expect("TimeoutNow was sent");
    assert!(caught_up < timeout_now, "caught up first, then TimeoutNow");
    assert_eq!(cluster.term(3), 2);
    assert!(!aborted(&cluster, 1));
}

/// Thesis §3.10: "the prior leader stops accepting client requests" during the transfer, so the
/// target's log stays caught up: a proposal is refused naming the target, and one a follower
/// forwards is dropped.
#[test]
fn proposals_are_refused_while_a_transfer_is_in_progress() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.isolate(3); // node 3 lags, so the transfer stays in progress
    cluster.propose(1, b"a");
    cluster.heal();
    cluster.step(1, Input::TransferLeadership { to: 3 });

    propose(&mut cluster, 1, 7, b"refused");
    assert_eq!(
        outcome(&cluster, 1, 7),
        Some(&ProposalOutcome::Refused(
            ProposeError::TransferInProgress { to: 3 }
        ))
    );
    propose(&mut cluster, 2, 8, b"forwarded");
    assert_eq!(
        outcome(&cluster, 2, 8),
        Some(&ProposalOutcome::Forwarded { to: 1 })
    );
    cluster.deliver_all();

    let held = |data: &[u8]| {
        let log = cluster.node(1).log();
        (log.first_index()..=log.last_index())
            .any(|index| log.entry(index).is_some_and(|e| e.data == data))
    };
    assert!(!held(b"refused"));
    assert!(!held(b"forwarded"), "dropped by the leader");
}

/// Thesis §3.10: "if the transfer does not complete within an election timeout, the prior leader
/// aborts the transfer and resumes accepting client requests". The target is cut off, so the
/// TimeoutNow is lost; after exactly an election timeout (the minimum), the leader gives up,
/// still leads its term, and takes proposals again.
#[test]
fn a_transfer_aborts_if_the_target_does_not_take_over_within_an_election_timeout() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.isolate(2);
    cluster.step(1, Input::TransferLeadership { to: 2 });
    assert!(
        timeout_now_position(&cluster, 2).is_some(),
        "sent, and lost"
    );
    let (min, _) = cluster.node(1).config().election_ticks;

    cluster.run(&[1], min - 1);
    assert!(!aborted(&cluster, 1), "not yet");
    cluster.run(&[1], 1);

    assert!(
        cluster
            .events(1)
            .iter()
            .any(|action| matches!(action, Action::TransferAborted { to: 2, .. }))
    );
    assert_eq!((cluster.role(1), cluster.term(1)), (Role::Leader, 1));
    propose(&mut cluster, 1, 9, b"after");
    assert!(matches!(
        outcome(&cluster, 1, 9),
        Some(ProposalOutcome::Accepted { .. })
    ));
}

/// Thesis §3.10: only a leader can hand leadership over; anyone else answers at once that the
/// transfer will not happen.
#[test]
fn only_a_leader_transfers_leadership() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);

    cluster.step(2, Input::TransferLeadership { to: 3 });

    assert!(cluster.events(2).contains(&Action::TransferAborted {
        to: 3,
        reason: "not the leader",
    }));
    assert_eq!(timeout_now_position(&cluster, 3), None);
}

/// A stopping leader hands over to the voter whose log matches furthest: node 3, cut off while
/// two entries were appended, is passed over for node 2; once both match, the lower id. A
/// follower, and a leader with no other voter, have no one to hand over to.
#[test]
fn the_hand_off_target_is_the_voter_whose_log_matches_furthest() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    assert_eq!(cluster.node(2).hand_off_target(), None, "a follower");
    cluster.isolate(3);
    cluster.propose(1, b"a");
    cluster.propose(1, b"b");
    assert!(cluster.progress(1, 3).match_index < cluster.progress(1, 2).match_index);
    assert_eq!(cluster.node(1).hand_off_target(), Some(2));

    // Now node 2 is cut off, and node 3 catches up (at the heartbeats) and goes past it.
    cluster.heal();
    cluster.isolate(2);
    cluster.propose(1, b"c");
    let last = cluster.node(1).log().last_index();
    let heartbeat = cluster.node(1).config().heartbeat_ticks;
    let caught_up = cluster.run_until(&[1], 4 * heartbeat, |cluster| {
        cluster.progress(1, 3).match_index == last
    });
    assert!(caught_up, "node 3 catches up within a few heartbeats");
    assert!(cluster.progress(1, 2).match_index < cluster.progress(1, 3).match_index);
    assert_eq!(
        cluster.node(1).hand_off_target(),
        Some(3),
        "now node 3 is ahead"
    );

    let mut alone = Cluster::new(1, |_| {});
    alone.elect(1);
    assert_eq!(alone.node(1).hand_off_target(), None, "no other voter");
}
