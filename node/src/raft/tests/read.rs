//! Linearizable reads with ReadIndex (thesis §6.4): the leader notes its commit index as the read
//! index, makes sure it was still the leader when the read arrived (a round of heartbeats a
//! quorum answers), and only then says the read may be served. A follower asks the leader for the
//! read index.

use super::super::testkit::Cluster;
use super::super::{Body, Input, Message, ProgressState, Role};
use super::{appended, carries, in_flight, propose, read_ready, read_refused, sent};
use crate::raft::{Action, Redirect};

/// The read round a heartbeat (an empty AppendEntries) carries; `None` for any other message.
fn read_round(msg: &Message) -> Option<u64> {
    match msg.body {
        Body::AppendEntries { read_round, .. } if appended(msg) == Some(&[]) => Some(read_round),
        _ => None,
    }
}

/// Thesis §6.4 step 3: "the leader sends a new round of heartbeats and waits for their
/// acknowledgments from a majority of the cluster". In a cluster of five, one answer (with the
/// leader's own, two of five) is not enough; the second makes a quorum and the read is ready at
/// the commit index noted when it arrived.
#[test]
fn a_leader_read_is_ready_only_after_a_quorum_answers_a_heartbeat_round() {
    let mut cluster = Cluster::new(5, |_| {});
    cluster.elect(1);
    cluster.propose(1, b"x");
    let commit = cluster.commit(1);

    cluster.step(1, Input::ReadIndex { ctx: 7 });
    assert_eq!(read_ready(&cluster, 1, 7), None);
    for peer in 2..=5 {
        let rounds: Vec<u64> = in_flight(&cluster, 1, peer)
            .into_iter()
            .filter_map(read_round)
            .collect();
        assert_eq!(rounds, [1], "a heartbeat of round 1 to {peer}");
    }

    for _ in 2..=5 {
        cluster.deliver_one(); // the heartbeats; their answers queue up behind
    }
    cluster.deliver_one();
    assert_eq!(read_ready(&cluster, 1, 7), None, "two of five");
    cluster.deliver_one();
    assert_eq!(read_ready(&cluster, 1, 7), Some(commit), "three of five");
}

/// Thesis §6.4 step 1: "If the leader has not yet marked an entry from its current term
/// committed, it waits until it has." Node 1 committed x at index 2 and was cut off before
/// anyone else learned it; node 2 or 3 wins the next term knowing only commit index 1. A read
/// there must not be served at index 1 (it would miss x): it waits for the new leader's no-op
/// to commit, and gets index 3.
#[test]
fn a_read_waits_for_the_leaders_first_commit_in_its_term() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.propose(1, b"x");
    assert_eq!(
        (cluster.commit(1), cluster.commit(2), cluster.commit(3)),
        (2, 1, 1)
    );

    cluster.isolate(1);
    let (_, max) = cluster.node(2).config().election_ticks;
    let elected = cluster.run_until(&[2, 3], 10 * max, |cluster| {
        cluster.leader_among(&[2, 3]).is_some()
    });
    assert!(elected);
    let leader = cluster.leader_among(&[2, 3]).expect("elected");
    assert_eq!(cluster.commit(leader), 1, "it does not know x committed");

    cluster.step(leader, Input::ReadIndex { ctx: 5 });
    assert_eq!(read_ready(&cluster, leader, 5), None);
    let round_started = cluster
        .in_flight
        .iter()
        .any(|(from, _, msg)| *from == leader && read_round(msg).is_some_and(|round| round > 0));
    assert!(!round_started, "no round before the first commit");

    cluster.deliver_all();
    assert_eq!(cluster.commit(leader), 3);
    assert_eq!(read_ready(&cluster, leader, 5), Some(3), "x is visible");
}

/// Thesis §6.4 ("Followers can also offload reads"): a follower asks the leader for a read index;
/// the leader runs its heartbeat round and answers with its commit index — here ahead of the
/// follower's own — and the follower's read is ready at that index.
#[test]
fn a_follower_read_goes_through_the_leader_and_is_ready_at_the_leaders_commit_index() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.propose(1, b"x");
    assert_eq!((cluster.commit(1), cluster.commit(2)), (2, 1));

    cluster.step(2, Input::ReadIndex { ctx: 4 });
    assert_eq!(read_ready(&cluster, 2, 4), None);
    assert_eq!(
        in_flight(&cluster, 2, 1)
            .into_iter()
            .map(|msg| &msg.body)
            .collect::<Vec<_>>(),
        [&Body::ReadIndex { ctx: 4 }]
    );

    cluster.deliver_all();
    let answer = Body::ReadIndexResponse {
        ctx: 4,
        index: Some(2),
    };
    assert!(
        sent(&cluster, 1, 2)
            .into_iter()
            .any(|msg| msg.body == answer)
    );
    assert_eq!(
        read_ready(&cluster, 2, 4),
        Some(2),
        "the leader's commit index"
    );
}

/// Thesis §6.4: a node that knows no leader cannot get a read index: the read is refused at once.
#[test]
fn a_read_with_no_known_leader_is_refused() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.step(2, Input::ReadIndex { ctx: 1 });
    assert!(read_refused(&cluster, 2, 1));
}

/// Thesis §6.4 with §6.2's lease seen from a follower: a follower asks for a read index only a
/// leader it heard from within the minimum election timeout. Cut off from its leader for that
/// long (its own election timer not fired yet), it refuses a read at once, naming no leader and
/// the one it lost as the hint, instead of asking into silence.
#[test]
fn a_follower_not_heard_from_its_leader_within_an_election_timeout_refuses_a_read_at_once() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.isolate(2);
    let min = cluster.node(2).config().election_ticks.0;
    cluster.tick(2, min - 1);
    cluster.step(2, Input::ReadIndex { ctx: 1 });
    assert!(!read_refused(&cluster, 2, 1), "asked node 1");
    assert!(
        sent(&cluster, 2, 1)
            .into_iter()
            .any(|msg| msg.body == Body::ReadIndex { ctx: 1 })
    );

    cluster.tick(2, 1);
    assert_eq!(
        (cluster.role(2), cluster.node(2).status().leader),
        (Role::Follower, Some(1))
    );
    let sent_before = cluster.sent.len();
    cluster.step(2, Input::ReadIndex { ctx: 2 });
    let no_leader = Redirect {
        leader: None,
        hint: Some(1),
    };
    assert!(cluster.events(2).contains(&Action::ReadRefused {
        ctx: 2,
        redirect: no_leader
    }));
    assert_eq!(cluster.sent.len(), sent_before, "nobody asked");
}

/// Thesis §6.4 and §6.2, a deposed leader: node 1 is cut off with a read pending. It cannot get
/// a quorum to answer its round, so it never says the read is ready — rightly, as nodes 2 and 3
/// elect a new leader and commit a write node 1 has not seen. Once CheckQuorum makes node 1 step
/// down, the read is refused.
#[test]
fn an_isolated_old_leader_never_serves_a_read() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.isolate(1);
    cluster.step(1, Input::ReadIndex { ctx: 9 });

    let (min, max) = cluster.node(2).config().election_ticks;
    let elected = cluster.run_until(&[2, 3], 10 * max, |cluster| {
        cluster.leader_among(&[2, 3]).is_some()
    });
    assert!(elected);
    let leader = cluster.leader_among(&[2, 3]).expect("elected");
    cluster.propose(leader, b"y");
    assert_eq!(cluster.commit(leader), 3, "a write node 1 knows nothing of");
    assert_eq!(cluster.role(1), Role::Leader, "node 1 does not know yet");
    assert_eq!(read_ready(&cluster, 1, 9), None);

    cluster.tick(1, 2 * min);
    assert_eq!(cluster.role(1), Role::Follower, "CheckQuorum");
    assert!(read_refused(&cluster, 1, 9));
    assert_eq!(read_ready(&cluster, 1, 9), None, "never ready");
}

/// Thesis §6.4 with §6.2 off: without CheckQuorum the cut-off leader leads on in its own eyes,
/// its read still pending and never ready; when it rejoins and hears of the newer term, it steps
/// down and refuses the read.
#[test]
fn a_deposed_leader_refuses_its_pending_read_once_it_hears_of_the_new_term() {
    let mut cluster = Cluster::new(3, |config| config.check_quorum = false);
    cluster.elect(1);
    cluster.isolate(1);
    cluster.step(1, Input::ReadIndex { ctx: 9 });

    let (_, max) = cluster.node(2).config().election_ticks;
    assert!(cluster.run_until(&[1, 2, 3], 10 * max, |cluster| {
        cluster.leader_among(&[2, 3]).is_some()
    }));
    let leader = cluster.leader_among(&[2, 3]).expect("elected");
    cluster.propose(leader, b"y");
    assert_eq!(cluster.role(1), Role::Leader);
    assert_eq!(read_ready(&cluster, 1, 9), None);

    cluster.heal();
    cluster.run(&[leader], cluster.node(leader).config().heartbeat_ticks);

    assert_eq!(
        (cluster.role(1), cluster.term(1)),
        (Role::Follower, cluster.term(leader))
    );
    assert!(read_refused(&cluster, 1, 9));
    assert_eq!(read_ready(&cluster, 1, 9), None);
}

/// Thesis §6.4 with §10.2.1: a read's heartbeat round is not the periodic heartbeat, so it does
/// not take entries still in flight for lost and send them again.
#[test]
fn a_read_round_does_not_disturb_entries_in_flight() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    let interval = cluster.node(1).config().heartbeat_ticks;
    cluster.run(&[1], interval);

    propose(&mut cluster, 1, 1, b"x");
    cluster.step(1, Input::ReadIndex { ctx: 1 });

    for peer in [2, 3] {
        let copies = sent(&cluster, 1, peer)
            .into_iter()
            .filter(|msg| carries(msg, 2))
            .count();
        assert_eq!(copies, 1, "entry 2 went to {peer} once");
        assert_eq!(cluster.progress(1, peer).state, ProgressState::Replicate);
    }
    cluster.deliver_all();
    assert_eq!(read_ready(&cluster, 1, 1), Some(1));
}

/// Thesis §6.4 with §3.10: node 2 passes a read on to leader 1 and then takes leadership over
/// (a transfer); node 1, deposed with the read pending, refuses it, and the refusal reaches
/// node 2 only once node 2 leads. Node 2 must not pass the refusal on naming itself as the
/// leader to ask ("2 is not the leader; 2 is": the client gives up on the one node that can
/// serve it): it leads now, so it serves the read as its own, with a heartbeat round of its
/// term, at its own commit index.
#[test]
fn a_read_passed_on_and_refused_once_this_node_leads_is_served_here() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.propose(1, b"x");
    cluster.step(2, Input::ReadIndex { ctx: 6 });
    cluster.deliver_one(); // node 1 takes the read and starts a heartbeat round for it
    cluster.drop_in_flight(); // the round is lost: the read stays pending at node 1
    assert_eq!(read_ready(&cluster, 1, 6), None);

    cluster.step(1, Input::TransferLeadership { to: 2 });
    let refusal = |msg: &Message| {
        matches!(
            msg.body,
            Body::ReadIndexResponse {
                ctx: 6,
                index: None
            }
        )
    };
    // Node 1 steps down at node 2's vote request and refuses the read; the refusal is late.
    cluster.deliver_all_but(|_, from, to, msg| from == 1 && to == 2 && refusal(msg));
    assert_eq!(cluster.role(2), Role::Leader);
    let late = sent(&cluster, 1, 2)
        .into_iter()
        .find(|msg| refusal(msg))
        .cloned()
        .expect("node 1 refused the read when it stepped down");
    cluster.step(2, Input::Message { from: 1, msg: late });
    assert!(
        !read_refused(&cluster, 2, 6),
        "refused by the leader itself"
    );

    cluster.deliver_all();
    assert_eq!(read_ready(&cluster, 2, 6), Some(cluster.commit(2)));
    for id in 1..=3 {
        let names_itself = cluster.events(id).iter().any(|action| {
            matches!(action, Action::ReadRefused { redirect, .. }
                if redirect.leader == Some(id) || redirect.hint == Some(id))
        });
        assert!(
            !names_itself,
            "node {id} named itself: {:?}",
            cluster.events(id)
        );
    }
}
