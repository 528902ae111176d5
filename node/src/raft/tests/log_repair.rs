//! Figure 7 (§5.3): "When the leader at the top comes to power, it is possible that any of
//! scenarios (a–f) could occur in follower logs." The leader forces every follower's log to
//! duplicate its own, finding the point where they agree with few round trips thanks to the
//! conflict term and its first index (§5.3, the optimization at the end; thesis §3.5 and etcd).

use std::collections::BTreeSet;

use super::super::testkit::{Cluster, log_with_terms};
use super::super::{HardState, Role};
use super::{rejection, sent};

/// The leader's log in Figure 7 (the terms of entries 1–10).
const LEADER: [u64; 10] = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];

/// Followers (a)–(f) of Figure 7, as nodes 2–7: (node, name, terms of its entries).
const FOLLOWERS: [(u64, &str, &[u64]); 6] = [
    (2, "a", &[1, 1, 1, 4, 4, 5, 5, 6, 6]),
    (3, "b", &[1, 1, 1, 4]),
    (4, "c", &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6]),
    (5, "d", &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7]),
    (6, "e", &[1, 1, 1, 4, 4, 4, 4]),
    (7, "f", &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3]),
];

/// Seven nodes restarted with the Figure 7 logs, each in the term of its last entry (the leader
/// in term 7, so that it campaigns in term 8 as in the figure).
fn figure_7() -> Cluster {
    let mut cluster = Cluster::new(7, |_| {});
    let in_term = |term| HardState {
        term,
        vote: 0,
        commit: 0,
    };
    cluster.restart_with(1, in_term(7), log_with_terms(&LEADER));
    for (id, _, terms) in FOLLOWERS {
        let last_term = *terms.last().expect("not empty");
        cluster.restart_with(id, in_term(last_term), log_with_terms(terms));
    }
    cluster
}

/// The most rejections fast backtracking may need for `follower`: one per distinct term among
/// the follower's entries that conflict with the leader's (those after the longest common
/// prefix, up to the leader's last entry), plus one if its log is shorter than the leader's.
fn rejection_bound(follower: &[u64]) -> usize {
    let common = LEADER
        .iter()
        .zip(follower)
        .take_while(|(leader, follower)| leader == follower)
        .count();
    let conflicting: BTreeSet<u64> = follower[common..]
        .iter()
        .take(LEADER.len().saturating_sub(common))
        .copied()
        .collect();
    conflicting.len() + usize::from(follower.len() < LEADER.len())
}

/// Figure 7 and §5.3: the leader of term 8 brings each of followers (a)–(f) to its own log —
/// missing entries (a, b), extra uncommitted entries (c, d), and both (e, f) — and every log
/// ends up the leader's, its no-op of term 8 included. Nodes (c) and (d) refuse it their votes
/// (§5.4.1), and it wins with the other five.
#[test]
fn the_leader_brings_every_figure_7_follower_to_its_log() {
    let mut cluster = figure_7();

    cluster.elect(1);

    assert_eq!(cluster.term(1), 8);
    let mut expected = LEADER.to_vec();
    expected.push(8);
    assert_eq!(cluster.terms(1), expected);
    for (id, name, _) in FOLLOWERS {
        assert_eq!(cluster.terms(id), expected, "follower ({name})");
        assert_eq!(cluster.role(id), Role::Follower);
    }
    assert_eq!(
        cluster.commit(1),
        11,
        "the no-op of term 8 commits everything"
    );
    for (id, name) in [(4, "c"), (5, "d")] {
        let granted = sent(&cluster, id, 1).into_iter().any(super::grants_vote);
        assert!(!granted, "({name}) holds a more up-to-date log");
    }
}

/// §5.3 "the follower can include the term of the conflicting entry and the first index it
/// stores for that term … one AppendEntries RPC will be required for each term with conflicting
/// entries, rather than one RPC per entry". Without it, follower (f) alone would take 7
/// rejections (one per entry from 10 down to 4); here each follower costs at most one rejection
/// per conflicting term (plus one for a short log), and one more AppendEntries than rejections.
#[test]
fn fast_backtracking_needs_at_most_one_rejection_per_conflicting_term() {
    let mut cluster = figure_7();

    cluster.elect(1);

    for (id, name, terms) in FOLLOWERS {
        let rejections = sent(&cluster, id, 1)
            .into_iter()
            .filter(|msg| rejection(msg).is_some())
            .count();
        let appends = sent(&cluster, 1, id)
            .into_iter()
            .filter(|msg| super::appended(msg).is_some())
            .count();
        let bound = rejection_bound(terms);
        assert!(
            rejections <= bound,
            "({name}): {rejections} rejections, at most {bound}"
        );
        assert_eq!(appends, rejections + 1, "({name}): a retry per rejection");
    }
    let total: usize = FOLLOWERS
        .iter()
        .map(|&(id, _, _)| {
            sent(&cluster, id, 1)
                .into_iter()
                .filter(|msg| rejection(msg).is_some())
                .count()
        })
        .sum();
    // (a) 1, (b) 1, (c) 0, (d) 0, (e) 2, (f) 2; one index at a time would take 1+6+0+0+3+7.
    assert_eq!(total, 6);
}
