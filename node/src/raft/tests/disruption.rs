//! Disruptive servers: PreVote (thesis §9.6), CheckQuorum and the leader lease (thesis §6.2 and
//! §9.6). A node cut off from the cluster must not come back and depose a healthy leader; a
//! leader cut off from a quorum must stop acting as one. One script turns both off to show the
//! classic disruption they prevent.

use super::super::testkit::Cluster;
use super::super::{Action, Body, Config, Role};
use super::{grants_vote, inject, request_vote, sent};

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
