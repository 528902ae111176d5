//! The durability barrier (Figure 2: "Persistent state on all servers: (Updated on stable storage
//! before responding to RPCs)"; the durability rules 1–3 of ARCHITECTURE.md). Every script here
//! turns `auto_persist` off: a node's writes become durable only when the script calls `persist`,
//! and a `restart` loses whatever was not.

use super::super::testkit::{Cluster, log_with_terms};
use super::super::{
    Action, Body, Config, HardState, Input, Message, ProposalOutcome, Raft, Restored, Role,
};
use super::{
    append, append_answer, grants_vote, in_flight, inject, outcome, propose, request_vote, sent,
};

/// Three nodes without PreVote (so a timeout persists a new term at once), disks persisting only
/// when told.
fn slow_disks() -> Cluster {
    let mut cluster = Cluster::new(3, |config| config.pre_vote = false);
    cluster.auto_persist = false;
    cluster
}

fn durable(term: u64, vote: u64) -> HardState {
    HardState {
        term,
        vote,
        commit: 0,
    }
}

/// Node 2 of `[1, 2, 3]`, fresh, stepped by hand (no test kit: the script sees every action).
fn follower_2() -> Raft {
    Raft::new(Config::new(2, vec![1, 2, 3]), Restored::default()).expect("a valid config")
}

/// A message from node 1, the leader, in `term`.
fn from_leader(term: u64, body: Body) -> Input {
    Input::Message {
        from: 1,
        msg: Message { term, body },
    }
}

/// Every action the node has ready.
fn drain(node: &mut Raft) -> Vec<Action> {
    std::iter::from_fn(|| node.poll_action()).collect()
}

/// The append answers among `actions` sent to node 1 as they stand (not riding on a write).
fn acks_to_leader(actions: &[Action]) -> Vec<(u64, bool)> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Send { to: 1, msg } => append_answer(msg),
            _ => None,
        })
        .collect()
}

/// Durability rule 1 (ARCHITECTURE.md; Figure 2, "Persistent state"): a candidate's RequestVote
/// relies on its new term and its vote for itself, so it leaves only once both are durable.
#[test]
fn a_candidates_request_vote_waits_until_its_term_and_vote_are_durable() {
    let mut cluster = slow_disks();

    cluster.campaign(1);
    assert_eq!(cluster.role(1), Role::Candidate);
    assert!(cluster.in_flight.is_empty(), "held back");
    assert_eq!(cluster.node(1).held_messages(), 2);
    assert_eq!(cluster.disks[&1].hard_state, durable(0, 0));

    cluster.persist(1);
    assert_eq!(cluster.disks[&1].hard_state, durable(1, 1));
    for peer in [2, 3] {
        let requests = in_flight(&cluster, 1, peer);
        assert_eq!(requests.len(), 1);
        assert_eq!(
            (requests[0].term, &requests[0].body),
            (1, &request_vote(0, 0))
        );
    }
}

/// Durability rule 1 (ARCHITECTURE.md; Figure 2, "Persistent state", votedFor): a vote is a promise
/// not to vote again in that term, so the grant leaves only once the vote is durable.
#[test]
fn a_vote_grant_waits_until_the_vote_is_durable() {
    let mut cluster = slow_disks();

    inject(&mut cluster, 1, 2, 1, request_vote(0, 0));
    assert_eq!(cluster.node(2).status().vote, 1, "granted in memory");
    assert!(sent(&cluster, 2, 1).is_empty(), "held back");
    assert_eq!(cluster.node(2).held_messages(), 1);

    cluster.persist(2);
    assert_eq!(cluster.disks[&2].hard_state, durable(1, 1));
    let answers = sent(&cluster, 2, 1);
    assert_eq!(answers.len(), 1);
    assert!(grants_vote(answers[0]));
}

/// Durability rule 2 (ARCHITECTURE.md; Figure 2, "Persistent state", log[]): a follower's
/// acknowledgement waits for its disk, and the leader does not commit on an acknowledgement that
/// was never sent.
#[test]
fn a_follower_acknowledges_only_what_it_has_persisted() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.auto_persist = false;

    propose(&mut cluster, 1, 7, b"v");
    cluster.persist(1);
    cluster.deliver_all();
    assert_eq!(cluster.terms(2), [1, 1], "stored in memory");
    assert_eq!(cluster.disks[&2].entries.len(), 1, "not on disk");
    let acknowledged = sent(&cluster, 2, 1)
        .into_iter()
        .any(|msg| append_answer(msg) == Some((2, true)));
    assert!(!acknowledged);
    assert_eq!(cluster.commit(1), 1, "no follower has persisted entry 2");

    cluster.persist(2);
    cluster.deliver_all();
    assert_eq!(cluster.commit(1), 2, "node 2's durable ack makes a quorum");
}

/// Durability rule 3 (ARCHITECTURE.md; thesis §10.2.1): the leader writes its own entries in
/// parallel with sending them, and counts itself toward a quorum only for what its own disk
/// acknowledged.
#[test]
fn a_leader_does_not_count_its_own_unpersisted_entries() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.auto_persist = false;

    propose(&mut cluster, 1, 7, b"v");
    assert_eq!(
        in_flight(&cluster, 1, 2).len(),
        1,
        "sent before its own write is done"
    );
    cluster.deliver_all();
    cluster.persist(2);
    cluster.deliver_all();
    // One follower acked entry 2: with the leader's own durable copy that is a quorum, but the
    // leader's copy is not durable yet.
    assert_eq!(cluster.commit(1), 1);

    cluster.persist(1);
    assert_eq!(cluster.commit(1), 2);
    assert!(matches!(
        outcome(&cluster, 1, 7),
        Some(ProposalOutcome::Accepted { index: 2, .. })
    ));
}

/// Figure 2 ("Persistent state") and §5.2 "vote for at most one candidate in a given term": node
/// 2 grants node 1 its vote in term 1 but crashes before the vote is durable. The vote is lost
/// with the crash — and that is safe only because the grant was held back and never left. Node 2
/// can then vote for node 3 in that same term, and term 1 still has a single leader.
#[test]
fn a_vote_lost_in_a_crash_had_never_left_so_the_node_may_vote_again() {
    let mut cluster = slow_disks();
    cluster.campaign(1);
    cluster.persist(1);
    cluster.deliver_all_but(|_, _, to, _| to == 3); // only node 2 hears node 1
    assert_eq!(cluster.node(2).status().vote, 1);
    assert_eq!(cluster.node(2).held_messages(), 1);

    cluster.restart(2);
    assert!(sent(&cluster, 2, 1).is_empty(), "the grant never left");
    let status = cluster.node(2).status();
    assert_eq!((status.term, status.vote), (0, 0), "term and vote lost");

    cluster.auto_persist = true;
    cluster.campaign(3);
    cluster.deliver_all();
    assert!(sent(&cluster, 2, 3).into_iter().any(grants_vote));
    assert_eq!((cluster.role(3), cluster.term(3)), (Role::Leader, 1));
    assert_eq!((cluster.role(1), cluster.term(1)), (Role::Follower, 1));
}

/// Figure 2 ("Persistent state"): once the grant left, the vote is durable and survives a crash;
/// the restarted node refuses another candidate of the same term.
#[test]
fn a_vote_that_left_survives_a_crash() {
    let mut cluster = slow_disks();
    inject(&mut cluster, 1, 2, 1, request_vote(0, 0));
    cluster.persist(2);
    assert!(sent(&cluster, 2, 1).into_iter().any(grants_vote));

    cluster.restart(2);
    cluster.auto_persist = true;
    inject(&mut cluster, 3, 2, 1, request_vote(0, 0));

    assert_eq!(cluster.node(2).status().vote, 1);
    let answers = sent(&cluster, 2, 3);
    assert_eq!(answers.len(), 1);
    assert_eq!(
        answers[0].body,
        Body::RequestVoteResponse {
            pre_vote: false,
            granted: false
        }
    );
}

/// The writer sends what rides on a persist: a follower's acknowledgement of entries it appended
/// in this step comes out attached to that step's `Persist` (`then_send`), never as a `Send`, so
/// the WAL thread can send it right after its sync without a hop back through the core.
#[test]
fn a_followers_acknowledgement_rides_on_the_persist_it_waits_for() {
    let mut cluster = slow_disks();

    inject(&mut cluster, 1, 2, 1, append(0, 0, log_with_terms(&[1]), 0));
    assert!(sent(&cluster, 2, 1).is_empty(), "not a Send");
    let pending = cluster.disks[&2].pending();
    assert_eq!(pending.len(), 1);
    let riders: Vec<_> = pending[0]
        .then_send
        .iter()
        .map(|(to, msg)| (*to, msg.term, append_answer(msg)))
        .collect();
    assert_eq!(riders, [(1, 1, Some((1, true)))], "attached to persist 1");
    assert_eq!(
        cluster.node(2).held_messages(),
        1,
        "still waiting, in the writer"
    );

    cluster.persist(2);
    let answers: Vec<_> = sent(&cluster, 2, 1)
        .into_iter()
        .filter_map(append_answer)
        .collect();
    assert_eq!(answers, [(1, true)], "sent once, by the writer");
    assert_eq!(cluster.node(2).held_messages(), 0);
}

/// A message that waits for a persist emitted in an earlier step (still in flight, so nothing
/// can ride on it any more) stays held in the core and comes out as a `Send` at `Persisted`:
/// here a heartbeat's acknowledgement of entry 1, which persist 1 is still writing. (A vote
/// grant always rides: granting rewrites the hard state, so its step opens a batch of its own.)
#[test]
fn an_ack_waiting_for_an_earlier_persist_is_released_at_persisted() {
    let mut node = follower_2();

    node.step(from_leader(1, append(0, 0, log_with_terms(&[1]), 0)));
    let first = drain(&mut node);
    let Some(Action::Persist(persist)) = first.first() else {
        panic!("the entry is written first: {first:?}");
    };
    assert_eq!(persist.id, 1);
    let riders: Vec<_> = persist
        .then_send
        .iter()
        .map(|(to, msg)| (*to, append_answer(msg)))
        .collect();
    assert_eq!(riders, [(1, Some((1, true)))]);
    assert!(acks_to_leader(&first).is_empty(), "not a Send: {first:?}");

    // A heartbeat before persist 1 is durable: its acknowledgement of entry 1 needs persist 1,
    // which is already out, and this step writes nothing, so the core holds it.
    node.step(from_leader(1, append(1, 1, Vec::new(), 0)));
    let second = drain(&mut node);
    assert!(
        second.is_empty(),
        "nothing written, nothing sent: {second:?}"
    );
    assert_eq!(
        node.held_messages(),
        2,
        "one in the writer, one in the core"
    );

    node.step(Input::Persisted { upto: 1 });
    let released = drain(&mut node);
    assert_eq!(
        acks_to_leader(&released),
        [(1, true)],
        "the held ack, as a Send"
    );
    assert_eq!(node.held_messages(), 0);
}

// ---- The simulator's fault switches (feature `planted-bugs`) do what they say ----

/// Fault `ack_before_persist`: the vote grant leaves before the vote is durable (the bug the
/// barrier above prevents).
#[cfg(feature = "planted-bugs")]
#[test]
fn with_the_fault_switch_a_vote_grant_leaves_before_it_is_durable() {
    let mut cluster = Cluster::new(3, |config| config.faults.ack_before_persist = true);
    cluster.auto_persist = false;

    inject(&mut cluster, 1, 2, 1, request_vote(0, 0));

    assert!(sent(&cluster, 2, 1).into_iter().any(grants_vote));
    assert_eq!(cluster.disks[&2].hard_state, durable(0, 0), "not durable");
}

/// Fault `forget_vote_on_restart`: a durable vote is forgotten on restart, and the node votes a
/// second time in the same term.
#[cfg(feature = "planted-bugs")]
#[test]
fn with_the_fault_switch_a_restarted_node_votes_twice_in_a_term() {
    let mut cluster = Cluster::new(3, |config| config.faults.forget_vote_on_restart = true);
    inject(&mut cluster, 1, 2, 1, request_vote(0, 0));
    assert_eq!(cluster.disks[&2].hard_state, durable(1, 1));

    cluster.restart(2);
    inject(&mut cluster, 3, 2, 1, request_vote(0, 0));

    assert!(sent(&cluster, 2, 1).into_iter().any(grants_vote));
    assert!(
        sent(&cluster, 2, 3).into_iter().any(grants_vote),
        "a second vote"
    );
}

/// Without feature `planted-bugs`, the durability fault switches are inert.
#[cfg(not(feature = "planted-bugs"))]
#[test]
fn without_planted_bugs_the_durability_fault_switches_are_ignored() {
    let mut cluster = Cluster::new(3, |config| {
        config.faults.ack_before_persist = true;
        config.faults.forget_vote_on_restart = true;
    });
    cluster.auto_persist = false;
    inject(&mut cluster, 1, 2, 1, request_vote(0, 0));
    assert!(sent(&cluster, 2, 1).is_empty(), "held back all the same");

    cluster.persist(2);
    cluster.restart(2);
    assert_eq!(cluster.node(2).status().vote, 1, "remembered all the same");
}

/// Durability rule 2, exactly: an answer waits for what it claims and no more. A follower whose
/// write of entries 2–3 is still in flight answers a heartbeat at `prev_index` 1, durable
/// already, at once (so its leader keeps hearing from it while its disk is slow); the
/// acknowledgement of entry 3 still rides on the batch that writes it.
#[test]
fn a_heartbeat_is_answered_at_once_while_newer_entries_are_being_written() {
    let mut node = follower_2();
    let entries = log_with_terms(&[1, 1, 1]);

    node.step(from_leader(1, append(0, 0, entries[..1].to_vec(), 0)));
    drain(&mut node);
    node.step(Input::Persisted { upto: 1 });
    drain(&mut node);

    node.step(from_leader(1, append(1, 1, entries[1..].to_vec(), 0)));
    let writing = drain(&mut node);
    let Some(Action::Persist(persist)) = writing.first() else {
        panic!("entries 2-3 are written: {writing:?}");
    };
    assert_eq!(persist.id, 2);

    node.step(from_leader(1, append(1, 1, Vec::new(), 0)));
    let answered = drain(&mut node);
    assert_eq!(acks_to_leader(&answered), [(1, true)], "{answered:?}");
    assert_eq!(node.held_messages(), 1, "the ack of entry 3, in the writer");

    // A heartbeat claiming entry 3 (the leader's view moved on) waits for it.
    node.step(from_leader(1, append(3, 1, Vec::new(), 0)));
    assert!(acks_to_leader(&drain(&mut node)).is_empty());
    node.step(Input::Persisted { upto: 2 });
    assert_eq!(acks_to_leader(&drain(&mut node)), [(3, true)]);
}

/// Rule 1 still holds for answers: a heartbeat of a newer term is answered only once that term
/// is durable, however little the answer claims.
#[test]
fn a_heartbeat_of_a_new_term_is_answered_once_the_term_is_durable() {
    let mut node = follower_2();
    node.step(from_leader(4, append(0, 0, Vec::new(), 0)));
    let first = drain(&mut node);
    let Some(Action::Persist(persist)) = first.first() else {
        panic!("term 4 is written first: {first:?}");
    };
    assert_eq!(persist.hard_state.map(|state| state.term), Some(4));
    assert!(
        !first
            .iter()
            .any(|action| matches!(action, Action::Send { .. })),
        "no answer before the term is durable: {first:?}"
    );
    let riders: Vec<_> = persist
        .then_send
        .iter()
        .map(|(to, msg)| (*to, append_answer(msg)))
        .collect();
    assert_eq!(
        riders,
        [(1, Some((0, true)))],
        "it rides on the term's batch"
    );
}
