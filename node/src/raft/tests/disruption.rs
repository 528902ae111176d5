//! Disruptive servers: PreVote (thesis §9.6), CheckQuorum and the leader lease (thesis §6.2 and
//! §9.6). A node cut off from the cluster must not come back and depose a healthy leader; a
//! leader cut off from a quorum must stop acting as one. One script turns both off to show the
//! classic disruption they prevent; two show that a leader's check counts only the answers it
//! took before it, the order a runtime must keep after a stall.

use super::super::testkit::Cluster;
use super::super::{Action, Body, Config, Input, Role};
use super::{append_answer, grants_vote, inject, propose, request_vote, sent};

/// Node 1 leads term 1; node 3 is cut off while the others commit two more entries, and
/// `timeouts` of the longest election timeout pass on every node.
fn node_3_away(adjust: impl Fn(&mut Config), timeouts: u32) -> Cluster {
    let mut cluster = Cluster::new(3, adjust);
    cluster.elect(1);
    cluster.isolate(3);
    cluster.propose(1, b"a");
    cluster.propose(1, b"b");
    let (_, max) = cluster.node(3).config().election_ticks;
    cluster.run(&[1, 2, 3], timeouts * max);
    cluster
}

/// Heals the network and ticks node 3 until its next vote requests (pre-vote or not) are on
/// their way, so the others do hear from it before it hears a heartbeat.
fn node_3_returns_and_asks(cluster: &mut Cluster) {
    cluster.heal();
    let (_, max) = cluster.node(3).config().election_ticks;
    let asked = cluster.run_until(&[3], max, |cluster| {
        cluster
            .in_flight
            .iter()
            .any(|(from, _, msg)| *from == 3 && matches!(msg.body, Body::RequestVote { .. }))
    });
    assert!(asked, "node 3 campaigns again");
}

/// Thesis §9.6: with PreVote, a node that cannot reach a majority never wins a pre-election, so it
/// never increments its term, however many election timeouts pass. It does keep asking.
#[test]
fn an_isolated_node_does_not_raise_its_term_under_pre_vote() {
    let cluster = node_3_away(|_| {}, 5);

    assert_eq!(cluster.term(3), 1);
    assert_eq!(cluster.disks[&3].hard_state.term, 1);
    let pre_votes: Vec<u64> = sent(&cluster, 3, 1)
        .iter()
        .filter(|msg| matches!(msg.body, Body::RequestVote { pre_vote: true, .. }))
        .map(|msg| msg.term)
        .collect();
    assert!(pre_votes.len() >= 5, "it asked {} times", pre_votes.len());
    assert!(pre_votes.iter().all(|&term| term == 2), "always for term 2");
}

/// Thesis §9.6 (with §6.2's lease): when the isolated node returns, the healthy leader keeps its
/// term and its role, and the returning node simply follows it and catches up.
#[test]
fn a_returning_node_does_not_depose_a_healthy_leader() {
    let mut cluster = node_3_away(|_| {}, 5);
    node_3_returns_and_asks(&mut cluster);
    cluster.deliver_all();
    assert_eq!((cluster.role(1), cluster.term(1)), (Role::Leader, 1));
    for voter in [1, 2] {
        let answered = sent(&cluster, voter, 3)
            .iter()
            .any(|msg| matches!(msg.body, Body::RequestVoteResponse { .. }));
        assert!(!answered, "node {voter} ignores it within its lease");
    }

    let (_, max) = cluster.node(1).config().election_ticks;
    let disturbed = cluster.run_until(&[1, 2, 3], 10 * max, |cluster| {
        cluster.role(1) != Role::Leader || cluster.term(1) != 1
    });

    assert!(!disturbed, "node 1 still leads term 1");
    let status = cluster.node(3).status();
    assert_eq!(
        (status.role, status.term, status.leader),
        (Role::Follower, 1, Some(1))
    );
    assert_eq!(cluster.terms(3), cluster.terms(1), "and it caught up");
}

/// Thesis §9.6, PreVote on its own (CheckQuorum off, so no lease): the returning node's
/// pre-election is refused because its log is behind, so it never raises its term and the
/// leader keeps its term.
#[test]
fn with_pre_vote_alone_a_returning_node_with_a_stale_log_cannot_disrupt() {
    let mut cluster = node_3_away(|config| config.check_quorum = false, 5);
    assert_eq!(cluster.term(3), 1);
    node_3_returns_and_asks(&mut cluster);
    cluster.deliver_all();
    let refused = Body::RequestVoteResponse {
        pre_vote: true,
        granted: false,
    };
    for voter in [1, 2] {
        let answers = sent(&cluster, voter, 3);
        assert!(
            answers.iter().any(|msg| msg.body == refused),
            "node {voter} refused the pre-vote: node 3's log is behind"
        );
    }
    assert_eq!((cluster.role(1), cluster.term(1)), (Role::Leader, 1));

    let (_, max) = cluster.node(1).config().election_ticks;

    let disturbed = cluster.run_until(&[1, 2, 3], 10 * max, |cluster| {
        cluster.role(1) != Role::Leader || cluster.term(1) != 1
    });

    assert!(!disturbed);
    assert_eq!(cluster.term(3), 1);
}

/// Thesis §9.6, the problem PreVote and CheckQuorum solve. With both off, the isolated node
/// raises its term at every timeout; back in touch, its RequestVote of a higher term deposes
/// the leader (Figure 2, All Servers), though its stale log can never win (§5.4.1).
#[test]
fn without_pre_vote_or_check_quorum_a_returning_node_deposes_the_leader() {
    let mut cluster = node_3_away(
        |config| {
            config.pre_vote = false;
            config.check_quorum = false;
        },
        3,
    );
    assert!(
        cluster.term(3) >= 3,
        "term {} after three timeouts",
        cluster.term(3)
    );
    node_3_returns_and_asks(&mut cluster);
    cluster.deliver_all();

    assert_ne!(
        cluster.role(1),
        Role::Leader,
        "node 3's RequestVote deposed node 1"
    );
    assert_eq!(cluster.term(1), cluster.term(3));
    assert!(cluster.term(1) > 1);
    assert_ne!(cluster.role(3), Role::Leader, "its log is behind");
}

/// Thesis §6.2 (CheckQuorum): "a leader steps down if an election timeout elapses without a
/// successful round of heartbeats to a majority of its cluster". It cannot know before the first
/// check (at the minimum election timeout), and must by the second. A leader that still hears one
/// follower of three keeps leading.
#[test]
fn a_leader_that_hears_no_quorum_for_an_election_timeout_steps_down() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    let (min, max) = cluster.node(1).config().election_ticks;

    cluster.isolate(3);
    cluster.run(&[1, 2], 10 * max);
    assert_eq!(cluster.role(1), Role::Leader, "node 2 still answers");

    cluster.isolate(1);
    cluster.tick(1, min - 1);
    assert_eq!(cluster.role(1), Role::Leader);
    cluster.tick(1, min + 1);
    assert_eq!(
        (cluster.role(1), cluster.term(1)),
        (Role::Follower, 1),
        "stepped down, in the same term"
    );
    let stepped_down = Action::RoleChanged {
        role: Role::Follower,
        term: 1,
        leader: None,
    };
    assert!(cluster.events(1).contains(&stepped_down));
}

/// Node 1 leads term 1 and a CheckQuorum round has just started: its check at the minimum
/// election timeout after it took office found both followers heard from, and forgot them. It
/// sends a proposal's AppendEntries, and then its turn stalls (a snapshot of a large state, a
/// descheduled thread): the followers append and answer meanwhile. Returns their answers, held
/// back from node 1 as its inbox holds them while it is stalled.
fn a_leader_stalls_after_sending() -> (Cluster, Vec<Input>) {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    let (min, _) = cluster.node(1).config().election_ticks;
    cluster.run(&[1, 2, 3], min - 1);
    cluster.tick(1, 1); // the round's check, at `min` ticks: passed, and a new round starts
    assert_eq!((cluster.role(1), cluster.term(1)), (Role::Leader, 1));
    for follower in [2, 3] {
        assert!(
            !cluster.progress(1, follower).recent_active,
            "node {follower} not heard from in the new round yet"
        );
    }

    propose(&mut cluster, 1, 1, b"x");
    let to_followers: Vec<_> = cluster.in_flight.drain(..).collect();
    for (from, to, msg) in to_followers {
        assert_eq!(from, 1);
        cluster.step(to, Input::Message { from, msg });
    }
    let answers: Vec<_> = cluster.in_flight.drain(..).collect();
    for follower in [2, 3] {
        let appended = answers.iter().any(|(from, to, msg)| {
            (*from, *to) == (follower, 1) && append_answer(msg) == Some((2, true))
        });
        assert!(
            appended,
            "node {follower} acknowledged the proposal at index 2"
        );
    }
    let inputs = answers
        .into_iter()
        .map(|(from, _, msg)| Input::Message { from, msg })
        .collect();
    (cluster, inputs)
}

/// Thesis §6.2 (CheckQuorum), the leader change of the soak that the consensus thread's order of
/// ticks and events prevents (`runtime/consensus.rs`, "Ticks and events"). The stall lasts the
/// minimum election timeout, so the round's check falls on its last tick. Handed those ticks
/// before the answers that arrived during them, the leader checks a round in which it took
/// nothing from anyone, and steps down, though both followers answered in time.
#[test]
fn a_stalled_leader_given_its_ticks_before_the_answers_queued_meanwhile_steps_down() {
    let (mut cluster, answers) = a_leader_stalls_after_sending();
    let (min, _) = cluster.node(1).config().election_ticks;

    cluster.tick(1, min - 1);
    assert_eq!(cluster.role(1), Role::Leader, "no check before `min` ticks");
    cluster.tick(1, 1);
    assert_eq!(
        (cluster.role(1), cluster.term(1)),
        (Role::Follower, 1),
        "stepped down at the check, in the same term"
    );

    cluster.step_all(1, answers);
    assert_eq!(cluster.role(1), Role::Follower, "the answers come too late");
}

/// Thesis §6.2 and the consensus thread's rule ("Ticks and events" in `runtime/consensus.rs`): a
/// tick is never handed over before an event that arrived before it ended. Handed the answers
/// queued during the stall first, the same leader counts both followers in the round it checks
/// at the stall's last tick, and keeps leading.
#[test]
fn a_stalled_leader_given_the_answers_queued_meanwhile_before_its_ticks_keeps_leading() {
    let (mut cluster, answers) = a_leader_stalls_after_sending();
    let (min, _) = cluster.node(1).config().election_ticks;

    cluster.step_all(1, answers);
    assert!(cluster.progress(1, 2).recent_active && cluster.progress(1, 3).recent_active);
    cluster.tick(1, min);

    assert_eq!((cluster.role(1), cluster.term(1)), (Role::Leader, 1));
    assert_eq!(cluster.commit(1), 2, "and the proposal committed");
}

/// Thesis §6.2: CheckQuorum is what makes a cut-off leader step down; without it, the leader of a
/// lost majority leads on, alone, however long.
#[test]
fn without_check_quorum_a_cut_off_leader_leads_on() {
    let mut cluster = Cluster::new(3, |config| config.check_quorum = false);
    cluster.elect(1);
    let (_, max) = cluster.node(1).config().election_ticks;

    cluster.isolate(1);
    cluster.tick(1, 10 * max);

    assert_eq!((cluster.role(1), cluster.term(1)), (Role::Leader, 1));
}

/// Thesis §6.2 and §9.6, the leader lease: "if a server receives a RequestVote request within the
/// minimum election timeout of hearing from a current leader, it does not update its term or
/// grant its vote". Once that much time passes without the leader, the same request is honored.
#[test]
fn a_follower_that_heard_from_the_leader_recently_ignores_a_vote_request_of_a_higher_term() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    let (min, _) = cluster.node(2).config().election_ticks;
    let last_index = cluster.node(1).log().last_index();

    inject(&mut cluster, 3, 2, 5, request_vote(last_index, 1));
    assert_eq!(cluster.term(2), 1, "ignored");
    assert!(sent(&cluster, 2, 3).is_empty(), "not even answered");

    cluster.tick(2, min); // the lease runs out: nothing heard from node 1 meanwhile
    inject(&mut cluster, 3, 2, 5, request_vote(last_index, 1));
    assert_eq!(cluster.term(2), 5);
    assert_eq!(cluster.node(2).status().vote, 3);
    assert!(sent(&cluster, 2, 3).into_iter().any(grants_vote));
}
