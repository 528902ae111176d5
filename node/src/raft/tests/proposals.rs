//! Proposals: where they go and how they travel. A follower forwards to the leader; with no leader
//! known a proposal is refused with a hint; a proposal that cannot fit in one
//! message is refused naming both sizes; proposals that arrive together leave together, in as few
//! AppendEntries as the datagram limit allows (thesis §10.2.1 batching).

use super::super::testkit::Cluster;
use super::super::{Body, Entry, Input, MESSAGE_OVERHEAD, ProposalOutcome, ProposeError, Role};
use super::{appended, in_flight, outcome, propose};

/// §5.1 "If a client contacts a follower, the follower redirects it to the leader" — here the
/// follower passes the command on itself, answers `Forwarded`, and the command commits and is
/// applied everywhere like any other.
#[test]
fn a_follower_forwards_a_proposal_to_the_leader_where_it_commits() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);

    propose(&mut cluster, 2, 5, b"via 2");
    assert_eq!(
        outcome(&cluster, 2, 5),
        Some(&ProposalOutcome::Forwarded { to: 1 })
    );
    let forwarded = in_flight(&cluster, 2, 1);
    assert_eq!(forwarded.len(), 1);
    assert_eq!(
        forwarded[0].body,
        Body::Forward {
            data: b"via 2".to_vec()
        }
    );

    cluster.deliver_all();
    let entry = cluster
        .node(1)
        .log()
        .entry(2)
        .expect("appended by the leader");
    assert_eq!((entry.term, entry.data.as_slice()), (1, &b"via 2"[..]));
    assert_eq!(cluster.commit(1), 2);
    cluster.run(&[1], cluster.node(1).config().heartbeat_ticks);
    for id in 1..=3 {
        let last = cluster.applied(id).last().expect("applied");
        assert_eq!(last.data, b"via 2", "node {id}");
    }
}

/// The requirement ("when no leader is known the client gets a clear 'no leader, retry' with any hint"):
/// before any election there is no hint; once a leader was known and lost, it is the hint.
#[test]
fn without_a_known_leader_a_proposal_is_refused_with_no_leader() {
    let mut cluster = Cluster::new(3, |_| {});
    propose(&mut cluster, 2, 1, b"x");
    assert_eq!(
        outcome(&cluster, 2, 1),
        Some(&ProposalOutcome::Refused(ProposeError::NoLeader {
            hint: None
        }))
    );

    cluster.elect(1);
    cluster.isolate(2);
    cluster.campaign(2); // its timeout elapses: it no longer knows a leader
    assert_eq!(cluster.node(2).status().leader, None);
    propose(&mut cluster, 2, 2, b"x");
    assert_eq!(
        outcome(&cluster, 2, 2),
        Some(&ProposalOutcome::Refused(ProposeError::NoLeader {
            hint: Some(1)
        }))
    );
}

/// Thesis §6.2 (the leader lease, seen from a follower) and the requirement ("a clear 'no leader,
/// retry' with any hint"): a follower forwards a proposal only to a leader it heard from within
/// the minimum election timeout. Cut off from its leader for that long, it refuses at once —
/// no leader, the one it lost as the hint — rather than forward into silence until its own
/// election timer fires; once it hears from the leader again, it forwards again.
#[test]
fn a_follower_not_heard_from_its_leader_within_an_election_timeout_refuses_at_once() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.isolate(2);
    let min = cluster.node(2).config().election_ticks.0;
    cluster.tick(2, min - 1);
    propose(&mut cluster, 2, 1, b"x");
    assert_eq!(
        outcome(&cluster, 2, 1),
        Some(&ProposalOutcome::Forwarded { to: 1 }),
        "heard from within the timeout"
    );

    cluster.tick(2, 1);
    assert_eq!(
        (cluster.role(2), cluster.node(2).status().leader),
        (Role::Follower, Some(1)),
        "it still follows node 1: its own election timer has not fired"
    );
    let sent_before = cluster.sent.len();
    propose(&mut cluster, 2, 2, b"x");
    assert_eq!(
        outcome(&cluster, 2, 2),
        Some(&ProposalOutcome::Refused(ProposeError::NoLeader {
            hint: Some(1)
        }))
    );
    assert_eq!(cluster.sent.len(), sent_before, "nothing forwarded");

    cluster.heal();
    cluster.run(&[1], cluster.node(1).config().heartbeat_ticks);
    propose(&mut cluster, 2, 3, b"x");
    assert_eq!(
        outcome(&cluster, 2, 3),
        Some(&ProposalOutcome::Forwarded { to: 1 })
    );
}

/// The requirement ("A proposal too large to fit in one datagram is refused with an error that names both
/// sizes"): one byte over `max_proposal_bytes` is refused, at the leader and at a follower
/// (before forwarding); exactly that size is accepted, travels in one message within the limit,
/// and commits.
#[test]
fn a_proposal_too_large_for_one_message_is_refused_naming_both_sizes() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    let max = cluster.node(1).config().max_proposal_bytes();
    let limit = cluster.node(1).config().max_message_bytes;
    let too_large = ProposalOutcome::Refused(ProposeError::TooLarge { size: max + 1, max });

    propose(&mut cluster, 1, 1, &vec![0; max + 1]);
    assert_eq!(outcome(&cluster, 1, 1), Some(&too_large));
    propose(&mut cluster, 2, 2, &vec![0; max + 1]);
    assert_eq!(outcome(&cluster, 2, 2), Some(&too_large));
    assert!(cluster.in_flight.is_empty(), "nothing sent for either");

    propose(&mut cluster, 1, 3, &vec![0; max]);
    assert!(matches!(
        outcome(&cluster, 1, 3),
        Some(ProposalOutcome::Accepted { index: 2, .. })
    ));
    for peer in [2, 3] {
        let messages = in_flight(&cluster, 1, peer);
        assert_eq!(messages.len(), 1);
        assert!(messages[0].wire_size() <= limit, "fits the datagram limit");
    }
    cluster.deliver_all();
    assert_eq!(cluster.commit(1), 2);
}

/// The AppendEntries leader 1 sent node 2 since `from` in its record of sent messages.
fn appends_to_2(cluster: &Cluster, from: usize) -> Vec<&[Entry]> {
    cluster.sent[from..]
        .iter()
        .filter(|(f, t, _)| (*f, *t) == (1, 2))
        .filter_map(|(_, _, msg)| appended(msg))
        .collect()
}

/// 100 proposals of 100 bytes taken in one step (as a runtime takes everything queued in its
/// inbox), then sent with `max_message_bytes`.
fn hundred_proposals(max_message_bytes: usize) -> (Cluster, usize) {
    let mut cluster = Cluster::new(3, |config| config.set_max_message_bytes(max_message_bytes));
    cluster.elect(1);
    let before = cluster.sent.len();
    let proposals = (0..100).map(|id| Input::Propose {
        id,
        data: vec![1; 100],
    });
    cluster.step_all(1, proposals);
    (cluster, before)
}

/// The requirement ("proposals batched into as few AppendEntries as the datagram limit allows"): with the
/// default 65,000-byte limit, 100 proposals of 100 bytes go to each follower in one message.
#[test]
fn proposals_of_one_step_go_out_in_one_append_entries_when_they_fit() {
    let (mut cluster, before) = hundred_proposals(65_000);

    let batches = appends_to_2(&cluster, before);
    assert_eq!(batches.len(), 1);
    let indexes: Vec<u64> = batches[0].iter().map(|entry| entry.index).collect();
    assert_eq!(indexes, (2..=101).collect::<Vec<_>>());
    assert_eq!(in_flight(&cluster, 1, 3).len(), 1);

    cluster.deliver_all();
    assert_eq!(cluster.commit(1), 101);
}

/// Batching under a smaller datagram limit: at 2,000 bytes a message carries
/// (2,000 − 184) / (100 + 32) = 13 such entries (184: `MESSAGE_OVERHEAD`, room for the envelope
/// and the fixed fields, sealed), so the 100 go in ⌈100 / 13⌉ = 8 messages, each within the
/// limit, together covering every entry once, in order.
#[test]
fn proposals_of_one_step_fill_each_append_entries_up_to_the_byte_limit() {
    let (mut cluster, before) = hundred_proposals(2_000);

    let batches = appends_to_2(&cluster, before);
    assert_eq!(batches.len(), 8);
    let sizes: Vec<usize> = batches.iter().map(|batch| batch.len()).collect();
    assert_eq!(MESSAGE_OVERHEAD, 184);
    assert_eq!(sizes, [13, 13, 13, 13, 13, 13, 13, 9]);
    for (_, to, msg) in &cluster.sent[before..] {
        assert!(
            msg.wire_size() <= 2_000,
            "to {to}: {} bytes",
            msg.wire_size()
        );
    }
    let indexes: Vec<u64> = batches.concat().iter().map(|entry| entry.index).collect();
    assert_eq!(indexes, (2..=101).collect::<Vec<_>>());

    cluster.deliver_all();
    assert_eq!(cluster.commit(1), 101);
    assert_eq!(cluster.role(1), Role::Leader);
}
