//! Log replication: Figure 2's "AppendEntries RPC, Receiver implementation", the Leaders rules and
//! the All Servers apply rule (§5.3), and pipelining under the in-flight window (thesis §10.2.1).
//! The receiver scripts feed one follower hand-made AppendEntries from node 1.

use super::super::testkit::{Cluster, log_with_terms};
use super::super::{
    Body, Conflict, Entry, EntryKind, HardState, Input, Message, ProgressState, Role,
};
use super::{
    append, append_answer, appended, carries, in_flight, inject, propose, rejection, sent,
};

/// A cluster of three where node 2 restarted in `term` with `terms` in its log.
fn follower_with_log(term: u64, terms: &[u64]) -> Cluster {
    let mut cluster = Cluster::new(3, |_| {});
    let hard_state = HardState {
        term,
        vote: 0,
        commit: 0,
    };
    cluster.restart_with(2, hard_state, log_with_terms(terms));
    cluster
}

/// An entry as a leader would send it.
fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        kind: EntryKind::Normal,
        data: format!("{index}@{term}").into_bytes(),
    }
}

/// Node 2's last answer to node 1: (index, success).
fn last_answer(cluster: &Cluster) -> (u64, bool) {
    let answer = sent(cluster, 2, 1).pop().expect("node 2 answered");
    append_answer(answer).expect("an AppendEntries answer")
}

// ---- Figure 2, AppendEntries receiver ----

/// Figure 2, AppendEntries receiver, rule 1: "Reply false if term < currentTerm". A leader of
/// term 1 sends an entry to a follower that has moved on to term 3: the follower stores nothing
/// and answers in term 3, which turns the stale leader into a follower (All Servers rule).
#[test]
fn append_entries_from_an_older_term_is_rejected_and_the_stale_leader_steps_down() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    let entries = cluster.disks[&2].entries.clone();
    let hard_state = HardState {
        term: 3,
        vote: 0,
        commit: 1,
    };
    cluster.restart_with(2, hard_state, entries); // node 2 saw term 3 meanwhile

    propose(&mut cluster, 1, 1, b"x");
    cluster.deliver_all();

    assert_eq!(cluster.terms(2), [1], "the stale entry was not stored");
    let answer = sent(&cluster, 2, 1).pop().expect("node 2 answered");
    assert_eq!(answer.term, 3);
    assert_eq!(
        append_answer(answer),
        Some((0, true)),
        "acknowledges nothing"
    );
    assert_eq!((cluster.role(1), cluster.term(1)), (Role::Follower, 3));
}

/// Figure 2, AppendEntries receiver, rule 2: "Reply false if log doesn't contain an entry at
/// prevLogIndex whose term matches prevLogTerm". The refusal says why (§5.3's optimization): the
/// log is too short (no term, and its next index), or it holds another term there (that term and
/// the first index the follower holds with it).
#[test]
fn append_entries_is_refused_when_the_log_lacks_the_previous_entry() {
    let mut cluster = follower_with_log(2, &[1, 1, 2]);

    inject(&mut cluster, 1, 2, 2, append(5, 2, vec![entry(6, 2)], 0));
    let answer = sent(&cluster, 2, 1).pop().expect("answered");
    assert_eq!(
        rejection(answer),
        Some(Conflict {
            term: None,
            index: 4
        })
    );
    assert_eq!(last_answer(&cluster), (5, false));

    inject(&mut cluster, 1, 2, 2, append(3, 3, vec![entry(4, 3)], 0));
    let answer = sent(&cluster, 2, 1).pop().expect("answered");
    assert_eq!(
        rejection(answer),
        Some(Conflict {
            term: Some(2),
            index: 3
        })
    );
    assert_eq!(cluster.terms(2), [1, 1, 2], "nothing stored");
}

/// Figure 2, AppendEntries receiver, rule 3: "If an existing entry conflicts with a new one (same
/// index but different terms), delete the existing entry and all that follow it" — on disk too.
#[test]
fn a_conflicting_entry_and_all_that_follow_it_are_deleted() {
    let mut cluster = follower_with_log(3, &[1, 1, 2, 2, 2]);

    inject(&mut cluster, 1, 2, 3, append(2, 1, vec![entry(3, 3)], 0));

    assert_eq!(cluster.terms(2), [1, 1, 3]);
    let on_disk: Vec<u64> = cluster.disks[&2].entries.iter().map(|e| e.term).collect();
    assert_eq!(on_disk, [1, 1, 3]);
    assert_eq!(last_answer(&cluster), (3, true));
}

/// Figure 2, AppendEntries receiver, rule 4: "Append any new entries not already in the log".
/// Entries already held are kept as they are: a late duplicate of an older AppendEntries must not
/// cut off what a newer one appended.
#[test]
fn new_entries_are_appended_and_entries_already_held_are_kept() {
    let mut cluster = follower_with_log(1, &[1, 1, 1]);

    inject(&mut cluster, 1, 2, 1, append(1, 1, vec![entry(2, 1)], 0));
    assert_eq!(
        cluster.terms(2),
        [1, 1, 1],
        "entry 3 survives a duplicate of entry 2"
    );
    assert_eq!(
        last_answer(&cluster),
        (2, true),
        "matches up to what was sent"
    );

    inject(
        &mut cluster,
        1,
        2,
        1,
        append(3, 1, vec![entry(4, 1), entry(5, 1)], 0),
    );
    assert_eq!(cluster.terms(2), [1, 1, 1, 1, 1]);
    assert_eq!(cluster.disks[&2].entries.len(), 5);
    assert_eq!(last_answer(&cluster), (5, true));
}

/// Figure 2, AppendEntries receiver, rule 5: "If leaderCommit > commitIndex, set commitIndex =
/// min(leaderCommit, index of last new entry)". The follower's entries 3 and 4 (term 2) are left
/// from an old leader: a heartbeat that only vouches for entries up to 2 must not commit them,
/// even though the leader's commit index is 4. The commit index never goes down.
#[test]
fn the_commit_index_is_the_leaders_capped_at_the_last_entry_known_to_match() {
    let mut cluster = follower_with_log(3, &[1, 1, 2, 2]);

    inject(&mut cluster, 1, 2, 3, append(2, 1, Vec::new(), 4));
    assert_eq!(
        cluster.commit(2),
        2,
        "3 and 4 are not known to match the leader's"
    );

    inject(&mut cluster, 1, 2, 3, append(2, 1, vec![entry(3, 3)], 4));
    assert_eq!(cluster.terms(2), [1, 1, 3]);
    assert_eq!(cluster.commit(2), 3, "the last new entry");

    inject(&mut cluster, 1, 2, 3, append(3, 3, Vec::new(), 1));
    assert_eq!(cluster.commit(2), 3, "never lowered");
    let applied: Vec<(u64, u64)> = cluster
        .applied(2)
        .iter()
        .map(|e| (e.index, e.term))
        .collect();
    assert_eq!(
        applied,
        [(1, 1), (2, 1), (3, 3)],
        "the stale (3, 2) never applied"
    );
}

// ---- Figure 2, Rules for Servers: Leaders and All Servers ----

/// Figure 2, Leaders: "Upon election: send initial empty AppendEntries RPCs (heartbeat) to each
/// server". Here the first AppendEntries carries the leader's no-op (§8), and it leaves at once,
/// before any tick.
#[test]
fn a_new_leader_announces_itself_at_once_with_its_no_op() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.campaign(1);
    cluster.deliver_until(|cluster| cluster.role(1) == Role::Leader);

    for peer in [2, 3] {
        let announcement: Vec<&Message> = in_flight(&cluster, 1, peer)
            .into_iter()
            .filter(|msg| appended(msg).is_some())
            .collect();
        assert_eq!(announcement.len(), 1, "to {peer}");
        let entries = appended(announcement[0]).expect("an AppendEntries");
        assert_eq!(entries.len(), 1);
        assert_eq!((entries[0].index, entries[0].term), (1, 1));
        assert_eq!(entries[0].kind, EntryKind::Noop);
    }
}

/// Figure 2, Leaders: "repeat during idle periods to prevent election timeouts" — an empty
/// AppendEntries to every follower each `heartbeat_ticks`, carrying the commit index.
#[test]
fn a_leader_sends_a_heartbeat_to_every_follower_each_interval() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.sent.clear();
    let interval = cluster.node(1).config().heartbeat_ticks;

    for round in 1..=3 {
        cluster.tick(1, interval - 1);
        assert_eq!(cluster.in_flight.len(), 0, "round {round}: not yet");
        cluster.tick(1, 1);
        for peer in [2, 3] {
            let beats = in_flight(&cluster, 1, peer);
            assert_eq!(beats.len(), 1, "round {round}, to {peer}");
            assert_eq!(
                beats[0].body,
                append(1, 1, Vec::new(), 1),
                "at the match index, with the commit index"
            );
        }
        cluster.deliver_all();
    }
}

/// Figure 2, Leaders: "If last log index ≥ nextIndex for a follower: send AppendEntries RPC with
/// log entries starting at nextIndex"; "If successful: update nextIndex and matchIndex". While
/// streaming, nextIndex moves on when the message leaves; matchIndex when the answer comes.
#[test]
fn a_leader_sends_from_next_index_and_updates_next_and_match_index() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    let before = cluster.progress(1, 2).clone();
    assert_eq!(
        (before.state, before.match_index, before.next_index),
        (ProgressState::Replicate, 1, 2)
    );

    propose(&mut cluster, 1, 1, b"x");
    let sent_now = in_flight(&cluster, 1, 2);
    assert_eq!(sent_now.len(), 1);
    let Body::AppendEntries { prev_index, .. } = sent_now[0].body else {
        panic!("an AppendEntries");
    };
    assert_eq!(prev_index, 1, "from nextIndex 2");
    let progress = cluster.progress(1, 2);
    assert_eq!((progress.match_index, progress.next_index), (1, 3));

    cluster.deliver_all();
    let progress = cluster.progress(1, 2);
    assert_eq!((progress.match_index, progress.next_index), (2, 3));
    assert_eq!(cluster.commit(1), 2);
}

/// Figure 2, Leaders: "If AppendEntries fails because of log inconsistency: decrement nextIndex
/// and retry". Node 3 lacks entries 3 and 4; the new leader's first AppendEntries (after entry 4)
/// is refused, and the leader retries from where node 3's log ends.
#[test]
fn a_refused_append_moves_next_index_back_and_the_leader_retries() {
    let mut cluster = Cluster::new(3, |_| {});
    let hard_state = HardState {
        term: 1,
        vote: 0,
        commit: 0,
    };
    for id in [1, 2] {
        cluster.restart_with(id, hard_state, log_with_terms(&[1, 1, 1, 1]));
    }
    cluster.restart_with(3, hard_state, log_with_terms(&[1, 1]));

    cluster.elect(1);

    let probes: Vec<u64> = sent(&cluster, 1, 3)
        .into_iter()
        .filter_map(|msg| match msg.body {
            Body::AppendEntries { prev_index, .. } => Some(prev_index),
            _ => None,
        })
        .collect();
    assert_eq!(probes, [4, 2], "after 4, then after node 3's last entry");
    let answers: Vec<(u64, bool)> = sent(&cluster, 3, 1)
        .into_iter()
        .filter_map(append_answer)
        .collect();
    assert_eq!(answers, [(4, false), (5, true)]);
    assert_eq!(cluster.terms(3), [1, 1, 1, 1, 2]);
    let progress = cluster.progress(1, 3);
    assert_eq!((progress.match_index, progress.next_index), (5, 6));
}

/// Figure 2, All Servers: "If commitIndex > lastApplied: increment lastApplied, apply
/// log[lastApplied] to state machine" — every node applies each committed entry once, in log
/// order, and hearing the commit index again applies nothing twice.
#[test]
fn committed_entries_are_applied_once_in_log_order_on_every_node() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    for (tag, data) in [b"a", b"b", b"c"].into_iter().enumerate() {
        propose(&mut cluster, 1, tag as u64, data);
        cluster.deliver_all();
    }
    let interval = cluster.node(1).config().heartbeat_ticks;
    cluster.tick(1, interval);
    cluster.deliver_all();
    inject(&mut cluster, 1, 2, 1, append(4, 1, Vec::new(), 4)); // the commit index, again

    for id in 1..=3 {
        let applied: Vec<(u64, &[u8])> = cluster
            .applied(id)
            .iter()
            .map(|e| (e.index, e.data.as_slice()))
            .collect();
        assert_eq!(
            applied,
            [(1, &b""[..]), (2, b"a"), (3, b"b"), (4, b"c")],
            "node {id}"
        );
        assert_eq!(cluster.node(id).status().applied_index, 4);
    }
}

// ---- Pipelining (thesis §10.2.1) ----

/// Thesis §10.2.1 (pipelining), bounded by `max_inflight_messages`: proposals too large to share
/// a message go out one per AppendEntries, at most 4 unacknowledged at a time per follower; each
/// acknowledgement lets one more go, and all of them arrive.
#[test]
fn a_leader_keeps_at_most_max_inflight_messages_unacknowledged_per_follower() {
    let mut cluster = Cluster::new(3, |config| config.max_inflight_messages = 4);
    cluster.elect(1);
    let big = vec![7u8; 40_000]; // two would not fit in one 65,000-byte message
    let proposals = (0..10).map(|id| Input::Propose {
        id,
        data: big.clone(),
    });
    cluster.step_all(1, proposals);

    // Unacknowledged to node 2: AppendEntries on their way plus answers not yet back.
    let unacknowledged = |cluster: &Cluster| {
        cluster
            .in_flight
            .iter()
            .filter(|(from, to, msg)| match (from, to) {
                (1, 2) => appended(msg).is_some(),
                (2, 1) => append_answer(msg).is_some(),
                _ => false,
            })
            .count()
    };
    assert_eq!(unacknowledged(&cluster), 4);
    let mut most = 0;
    while cluster.deliver_one().is_some() {
        most = most.max(unacknowledged(&cluster));
        assert!(cluster.progress(1, 2).inflight_messages() <= 4);
    }
    assert_eq!(most, 4, "the window was used, never exceeded");

    let messages_to_2 = sent(&cluster, 1, 2)
        .into_iter()
        .filter_map(|msg| appended(msg))
        .filter(|entries| entries.iter().any(|entry| entry.data == big))
        .count();
    assert_eq!(messages_to_2, 10, "one message per large entry");
    assert_eq!(cluster.node(2).log().last_index(), 11);
    assert_eq!(cluster.commit(1), 11);
}

/// Thesis §10.2.1: with pipelining, a lost AppendEntries is not answered at all, so nothing
/// refuses the messages after it. In an idle cluster, the heartbeat after the loss finds the
/// stream unacknowledged, falls back to probing from the match index, and the entry gets there.
#[test]
fn a_lost_append_in_replicate_is_sent_again_at_the_next_heartbeat() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    let interval = cluster.node(1).config().heartbeat_ticks;
    cluster.tick(1, interval); // an idle round: heartbeats and their answers
    cluster.deliver_all();

    propose(&mut cluster, 1, 1, b"x");
    cluster.deliver_all_but(|_, _, to, msg| to == 2 && carries(msg, 2));
    assert_eq!(cluster.commit(1), 2, "committed with node 3");
    assert_eq!(cluster.terms(2), [1], "node 2 missed it");
    assert_eq!(cluster.progress(1, 2).state, ProgressState::Replicate);

    cluster.tick(1, interval);
    cluster.deliver_all();

    assert_eq!(cluster.terms(2), [1, 1]);
    assert_eq!(cluster.progress(1, 2).match_index, 2);
}

/// §5.3 "the leader retries AppendEntries RPCs indefinitely … until all followers eventually
/// store all log entries": an entry whose every AppendEntries was lost still commits, at the next
/// heartbeat, with no further proposal to push it along. Ten heartbeat intervals is a generous
/// bound: it must not depend on more traffic.
#[test]
fn an_entry_whose_appends_were_all_lost_still_commits() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    let interval = cluster.node(1).config().heartbeat_ticks;
    cluster.tick(1, interval);
    cluster.deliver_all();

    propose(&mut cluster, 1, 1, b"x");
    cluster.drop_in_flight();
    cluster.run(&[1, 2, 3], interval);
    assert_eq!(
        cluster.commit(1),
        2,
        "committed once a heartbeat found the loss"
    );
    for id in [2, 3] {
        assert_eq!(cluster.terms(id), [1, 1], "node {id}");
    }
}
