//! Figure 8 (§5.4.2, "Committing entries from previous terms"): "a leader cannot immediately
//! conclude that an entry from a previous term is committed once it is stored on a majority of
//! servers". Servers S1–S5 are nodes 1–5, started from the logs of the figure's step (b):
//!
//! ```text
//!        index 1 2
//!   S1         1 2      term 3 (S1 crashed in term 2 and has since heard of term 3)
//!   S2         1 2      term 3
//!   S3         1        term 3, voted for S5
//!   S4         1        term 3, voted for S5
//!   S5         1 3      term 3, leader of term 3, about to crash
//! ```
//!
//! Step (c): S5 crashes, S1 wins term 4 and copies entry (2, term 2) to S3, so a majority stores
//! it; S1's own no-op of term 4 (index 3) reaches only S2. S4 hears no AppendEntries in time.
//! To let (2, term 2) reach S3 without the no-op, messages hold one such entry at most.
//!
//! CheckQuorum is off: the figure is about commitment, and without the leader lease S5 can win
//! step (d) as soon as it comes back.

use super::super::testkit::Cluster;
use super::super::{Entry, EntryKind, HardState, MESSAGE_OVERHEAD, Message, NodeId, Role};
use super::{appended, carries};

/// Bytes of a command: (2, term 2) and (2, term 3) are this large.
const COMMAND: usize = 100;

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        kind: EntryKind::Normal,
        data: vec![u8::try_from(term).expect("small term"); COMMAND],
    }
}

/// Step (c)'s losses: S1's no-op (index 3) never reaches S3 once S3 could store it (S3 refuses
/// the first one, which S1 sends before it knows where their logs match), and nothing of S1's
/// log reaches S4.
fn lost_in_step_c(cluster: &Cluster, from: NodeId, to: NodeId, msg: &Message) -> bool {
    let s3_could_store_it = cluster.node(3).log().last_index() >= 2;
    from == 1
        && ((to == 3 && carries(msg, 3) && s3_could_store_it)
            || (to == 4 && appended(msg).is_some()))
}

/// The cluster after Figure 8's step (c), with the Figure 8 fault switch set as given.
fn figure_8_step_c(commit_old_terms_by_counting: bool) -> Cluster {
    let mut cluster = Cluster::new(5, |config| {
        config.check_quorum = false;
        // One 100-byte command fits in a message, not with the no-op after it.
        config.set_max_message_bytes(MESSAGE_OVERHEAD + COMMAND + 50);
        config.faults.commit_old_terms_by_counting = commit_old_terms_by_counting;
    });
    let state = |vote| HardState {
        term: 3,
        vote,
        commit: 1,
    };
    for (id, vote, log) in [
        (1, 0, vec![entry(1, 1), entry(2, 2)]),
        (2, 0, vec![entry(1, 1), entry(2, 2)]),
        (3, 5, vec![entry(1, 1)]),
        (4, 5, vec![entry(1, 1)]),
        (5, 5, vec![entry(1, 1), entry(2, 3)]),
    ] {
        cluster.restart_with(id, state(vote), log);
    }

    cluster.isolate(5); // S5 crashes
    cluster.campaign(1);
    cluster.deliver_all_but(lost_in_step_c);
    assert_eq!((cluster.role(1), cluster.term(1)), (Role::Leader, 4));
    for id in [1, 2, 3] {
        assert_eq!(
            cluster.node(id).log().term_at(2),
            Some(2),
            "S{id} stores (2, term 2)"
        );
    }
    assert_eq!(cluster.terms(2), [1, 2, 4], "the no-op reached S2");
    assert_eq!(cluster.terms(3), [1, 2], "but not S3");
    cluster
}

/// Step (d): S1 crashes; S5 comes back and wins term 5 with the votes of S3 and S4 (its last
/// term, 3, is newer than theirs), then makes every log it reaches hold its entry (2, term 3).
fn s5_takes_over(cluster: &mut Cluster) {
    cluster.heal();
    cluster.isolate(1);
    // S5's first pre-vote (for term 4) is refused and teaches it term 4; the second wins.
    for _ in 0..2 {
        cluster.campaign(5);
        cluster.deliver_all();
    }
    assert_eq!((cluster.role(5), cluster.term(5)), (Role::Leader, 5));
    let interval = cluster.node(5).config().heartbeat_ticks;
    cluster.tick(5, interval); // the commit index reaches the followers
    cluster.deliver_all();
}

/// Whether node `id` applied the entry at `index` of `term`.
fn applied(cluster: &Cluster, id: NodeId, index: u64, term: u64) -> bool {
    cluster
        .applied(id)
        .iter()
        .any(|entry| (entry.index, entry.term) == (index, term))
}

/// Figure 8 (c)–(d), §5.4.2: "Raft never commits log entries from previous terms by counting
/// replicas." S1 knows (2, term 2) is on S1, S2 and S3, a majority, yet its commit index stays 1
/// through rounds of heartbeats. Rightly so: S5 can still be elected and overwrite it, and
/// since nobody applied it, nothing committed is lost.
#[test]
fn an_entry_of_an_earlier_term_on_a_majority_is_not_committed_by_counting() {
    let mut cluster = figure_8_step_c(false);
    let interval = cluster.node(1).config().heartbeat_ticks;
    assert_eq!(cluster.progress(1, 3).match_index, 2, "S1 knows S3 has it");

    for _ in 0..3 {
        assert_eq!(cluster.commit(1), 1);
        cluster.tick(1, interval);
        cluster.deliver_all_but(lost_in_step_c);
    }
    assert_eq!(cluster.commit(1), 1);

    s5_takes_over(&mut cluster);
    for id in [2, 3, 5] {
        assert_eq!(cluster.terms(id), [1, 3, 5], "S{id} holds S5's log");
    }
    for id in 1..=5 {
        assert!(
            !applied(&cluster, id, 2, 2),
            "S{id} never applied (2, term 2)"
        );
    }
    assert!(
        applied(&cluster, 3, 2, 3),
        "S3 applied S5's entry 2 instead"
    );
}

/// Figure 8 (e), §5.4.2: "once an entry from the current term has been committed by counting
/// replicas, then all prior entries are committed indirectly" — when S1's no-op of term 4
/// reaches S3, index 3 commits and (2, term 2) with it.
#[test]
fn an_entry_of_an_earlier_term_commits_once_an_entry_of_the_current_term_does() {
    let mut cluster = figure_8_step_c(false);
    assert_eq!(cluster.commit(1), 1);

    // The losses end: the next heartbeats find S3's stream stalled and send index 3 again.
    let interval = cluster.node(1).config().heartbeat_ticks;
    cluster.run(&[1], 2 * interval);

    assert_eq!(cluster.terms(3), [1, 2, 4]);
    assert_eq!(cluster.commit(1), 3);
    assert!(applied(&cluster, 1, 2, 2));
    assert!(applied(&cluster, 1, 3, 4));
}

/// The fault switch `faults.commit_old_terms_by_counting` (feature `planted-bugs`) does what it says:
/// S1 commits and applies (2, term 2) as soon as a majority stores it, and Figure 8 (d) then
/// plays out: S5 overwrites it and index 2 is applied as two different entries — the violation
/// of State Machine Safety the simulator must catch.
#[cfg(feature = "planted-bugs")]
#[test]
fn with_the_fault_switch_an_earlier_term_entry_is_committed_by_counting() {
    let mut cluster = figure_8_step_c(true);
    assert_eq!(cluster.commit(1), 2, "committed by counting");
    assert!(applied(&cluster, 1, 2, 2));

    s5_takes_over(&mut cluster);
    assert!(
        applied(&cluster, 5, 2, 3),
        "S5 applied another entry at index 2"
    );
}

/// Without feature `planted-bugs` the fault switches are inert: the Figure 8 switch set in the
/// configuration changes nothing.
#[cfg(not(feature = "planted-bugs"))]
#[test]
fn without_planted_bugs_the_fault_switch_is_ignored() {
    let cluster = figure_8_step_c(true);
    assert_eq!(cluster.commit(1), 1);
}
