//! Snapshots and log compaction (§7, Figure 13 "InstallSnapshot RPC"; thesis §5): compaction
//! behind trailing entries, a leader sending a snapshot in chunks under a window to a follower
//! behind its log base, go-back-N after a lost chunk, duplicates, a leader change and a follower
//! restart in mid-transfer, and the follower's rules 6 and 7.

use super::super::testkit::{Cluster, log_with_terms};
use super::super::{Action, Body, Config, HardState, Input, Message, NodeId, ProgressState};
use super::{append, append_answer, inject, sent};

/// Three nodes; node 1 leads and compacted its log (no trailing entries) while node 3 was cut
/// off, so node 3 can only catch up through a snapshot. Node 3 stays cut off; the snapshot
/// covers index 7 and its bytes are `"state@7"` (7 bytes).
fn lagging(adjust: impl Fn(&mut Config)) -> Cluster {
    let mut cluster = Cluster::new(3, |config| {
        config.snapshot_trailing_entries = 0;
        adjust(config);
    });
    cluster.elect(1);
    cluster.isolate(3);
    for _ in 0..6 {
        cluster.propose(1, b"x");
    }
    cluster.save_snapshot(1);
    assert_eq!(cluster.node(1).status().snapshot_index, 7);
    assert_eq!(cluster.node(1).status().first_index, 8);
    cluster
}

/// Small chunks (2 bytes: the 7-byte snapshot takes 4) and a window of 2.
fn small_chunks(config: &mut Config) {
    config.snapshot_chunk_bytes = 2;
    config.snapshot_inflight_chunks = 2;
}

/// The offsets of the InstallSnapshot chunks among `msgs`, in order.
fn offsets(msgs: Vec<&Message>) -> Vec<u64> {
    msgs.into_iter()
        .filter_map(|msg| match msg.body {
            Body::InstallSnapshot { offset, .. } => Some(offset),
            _ => None,
        })
        .collect()
}

/// The offsets of the InstallSnapshot chunks `from` sent `to`, in order.
fn chunk_offsets(cluster: &Cluster, from: NodeId, to: NodeId) -> Vec<u64> {
    offsets(sent(cluster, from, to))
}

/// The offsets node `id` was told to write (`Action::SnapshotChunk`), in order.
fn written_offsets(cluster: &Cluster, id: NodeId) -> Vec<u64> {
    cluster
        .events(id)
        .iter()
        .filter_map(|action| match action {
            Action::SnapshotChunk { offset, .. } => Some(*offset),
            _ => None,
        })
        .collect()
}

/// The snapshot indexes node `id` was told to install.
fn installs(cluster: &Cluster, id: NodeId) -> Vec<u64> {
    cluster
        .events(id)
        .iter()
        .filter_map(|action| match action {
            Action::InstallSnapshot { index, .. } => Some(*index),
            _ => None,
        })
        .collect()
}

fn is_chunk(msg: &Message) -> bool {
    matches!(msg.body, Body::InstallSnapshot { .. })
}

/// Heals node 3 and ticks the leader through two heartbeats, delivering nothing: the first
/// finds the stream to node 3 unanswered, the second probes it, and the probe finds its next
/// entry compacted.
fn heal_and_heartbeat(cluster: &mut Cluster) {
    cluster.heal();
    let heartbeat = cluster.node(1).config().heartbeat_ticks;
    cluster.tick(1, 2 * heartbeat);
}

/// §7 "Servers take snapshots independently … the server deletes all log entries up through the
/// last included index"; etcd keeps some behind (SnapshotCatchUpEntries) so that a slightly slow
/// follower is still served from the log. The base moves to the snapshot's index minus the
/// trailing entries, the WAL is told so, and a snapshot not newer than the current one changes
/// nothing.
#[test]
fn compaction_keeps_the_trailing_entries_behind_the_snapshot() {
    let mut cluster = Cluster::new(3, |config| config.snapshot_trailing_entries = 3);
    cluster.elect(1);
    for _ in 0..10 {
        cluster.propose(1, b"x");
    }
    cluster.save_snapshot(1);

    let status = cluster.node(1).status();
    assert_eq!((status.snapshot_index, status.first_index), (11, 9));
    assert_eq!(cluster.node(1).log().base(), (8, 1));
    assert!(cluster.events(1).contains(&Action::Compact { upto: 8 }));
    assert_eq!(cluster.disks[&1].entries.first().map(|e| e.index), Some(9));

    let compactions = |cluster: &Cluster| {
        let is_compact = |action: &&Action| matches!(action, Action::Compact { .. });
        cluster.events(1).iter().filter(is_compact).count()
    };
    cluster.save_snapshot(1);
    assert_eq!(compactions(&cluster), 1, "the same index again is ignored");

    // Fewer entries than the trailing count: nothing to compact yet.
    let mut young = Cluster::new(3, |config| config.snapshot_trailing_entries = 50);
    young.elect(1);
    young.propose(1, b"x");
    young.save_snapshot(1);
    assert_eq!(young.node(1).status().snapshot_index, 2);
    assert_eq!(young.node(1).status().first_index, 1);
    assert!(young.events(1).is_empty() || compactions(&young) == 0);
}

/// §7 "the leader must occasionally send snapshots to followers that lag behind": a follower
/// whose next entry was compacted gets the snapshot, never an AppendEntries with entries the
/// leader no longer has, and is then served from the log again; its state machine resumes after
/// the snapshot.
#[test]
fn a_follower_behind_the_log_base_gets_the_snapshot_instead_of_entries() {
    let mut cluster = lagging(|_| {});
    let before = sent(&cluster, 1, 3).len();

    heal_and_heartbeat(&mut cluster);
    cluster.deliver_all();

    assert_eq!(installs(&cluster, 3), [7]);
    let status = cluster.node(3).status();
    assert_eq!((status.snapshot_index, status.commit_index), (7, 7));
    assert_eq!(status.applied_index, 7);
    assert_eq!(cluster.log_terms(3), cluster.log_terms(1));
    let progress = cluster.progress(1, 3);
    assert_eq!(progress.state, ProgressState::Replicate);
    assert_eq!(progress.match_index, 7);
    for msg in sent(&cluster, 1, 3).into_iter().skip(before) {
        if let Body::AppendEntries {
            prev_index,
            entries,
            ..
        } = &msg.body
        {
            assert!(entries.iter().all(|entry| entry.index > 7), "compacted");
            assert!(*prev_index >= 7 || (*prev_index == 0 && entries.is_empty()));
        }
    }

    cluster.propose(1, b"after");
    let heartbeat = cluster.node(1).config().heartbeat_ticks;
    cluster.tick(1, heartbeat);
    cluster.deliver_all();
    assert_eq!(cluster.commit(3), 8);
    let applied: Vec<u64> = cluster.applied(3).iter().map(|e| e.index).collect();
    assert_eq!(applied, [8], "applying resumes after the snapshot");
}

/// Thesis §5.3 "sends it in chunks": chunks leave in order, at most the window beyond the acked
/// offset, and each is written once by the follower.
#[test]
fn chunks_go_out_in_order_under_the_window() {
    let mut cluster = lagging(small_chunks);

    heal_and_heartbeat(&mut cluster);
    let first = offsets(super::in_flight(&cluster, 1, 3));
    assert_eq!(first, [0, 2], "a window of two chunks");
    assert_eq!(cluster.progress(1, 3).state, ProgressState::Snapshot);

    cluster.deliver_all();
    assert_eq!(chunk_offsets(&cluster, 1, 3), [0, 2, 4, 6]);
    assert_eq!(written_offsets(&cluster, 3), [0, 2, 4, 6]);
    assert_eq!(installs(&cluster, 3), [7]);
    assert_eq!(cluster.log_terms(3), cluster.log_terms(1));
}

/// A lost chunk with a later one delivered: the follower acknowledges the offset it still
/// expects again, and the leader goes back to it at once (fast retransmit), without waiting for
/// its resend timeout.
#[test]
fn a_lost_chunk_is_sent_again_at_the_repeated_ack() {
    let mut cluster = lagging(small_chunks);
    heal_and_heartbeat(&mut cluster);
    let mut lost = false;
    cluster.deliver_all_but(|_, _, _, msg| {
        let first_of_offset_2 =
            !lost && matches!(msg.body, Body::InstallSnapshot { offset: 2, .. });
        lost |= first_of_offset_2;
        first_of_offset_2
    });
    assert!(lost);
    assert_eq!(chunk_offsets(&cluster, 1, 3), [0, 2, 4, 2, 4, 6]);
    assert_eq!(written_offsets(&cluster, 3), [0, 2, 4, 6]);
    assert_eq!(installs(&cluster, 3), [7], "no tick was needed");
    assert_eq!(cluster.progress(1, 3).match_index, 7);
}

/// A lost chunk with no later one to reveal it (the last) stalls the transfer until the leader,
/// after its resend timeout (the minimum election timeout) without progress, goes back to the
/// acked offset (go-back-N).
#[test]
fn a_lost_last_chunk_is_sent_again_after_the_timeout() {
    let mut cluster = lagging(small_chunks);
    heal_and_heartbeat(&mut cluster);
    let mut lost = false;
    cluster.deliver_all_but(|_, _, _, msg| {
        let first_of_offset_6 =
            !lost && matches!(msg.body, Body::InstallSnapshot { offset: 6, .. });
        lost |= first_of_offset_6;
        first_of_offset_6
    });
    assert!(lost);
    assert!(installs(&cluster, 3).is_empty(), "stalled");
    assert_eq!(chunk_offsets(&cluster, 1, 3), [0, 2, 4, 6]);

    let resend = cluster.node(1).config().snapshot_resend_ticks();
    cluster.run(&[1], resend);

    assert_eq!(chunk_offsets(&cluster, 1, 3), [0, 2, 4, 6, 6]);
    assert_eq!(written_offsets(&cluster, 3), [0, 2, 4, 6]);
    assert_eq!(installs(&cluster, 3), [7]);
    assert_eq!(cluster.progress(1, 3).match_index, 7);
}

/// Duplicated chunks and acknowledgements, and acknowledgements that are stale or impossible,
/// change nothing: each chunk is written once, the snapshot installed once.
#[test]
fn duplicate_and_stale_chunks_and_acks_are_harmless() {
    let mut cluster = lagging(small_chunks);
    heal_and_heartbeat(&mut cluster);
    let term = cluster.term(1);
    // No progress, past what was sent, and for another snapshot.
    for bogus in [0, 100] {
        let body = Body::InstallSnapshotResponse {
            index: 7,
            next_offset: bogus,
            installed: false,
        };
        inject(&mut cluster, 3, 1, term, body);
        let other_index = Body::InstallSnapshotResponse {
            index: 6,
            next_offset: 4,
            installed: false,
        };
        inject(&mut cluster, 3, 1, term, other_index);
    }
    let transfer = cluster.progress(1, 3).snapshot.clone().expect("sending");
    assert_eq!((transfer.acked, transfer.next_offset), (0, 4), "unmoved");

    while let Some((from, to, msg)) = cluster.in_flight.pop_front() {
        let twice = is_chunk(&msg) || matches!(msg.body, Body::InstallSnapshotResponse { .. });
        for _ in 0..if twice { 2 } else { 1 } {
            let input = super::super::Input::Message {
                from,
                msg: msg.clone(),
            };
            if !cluster.cut.contains(&(from, to)) {
                cluster.step(to, input);
            }
        }
    }

    assert_eq!(written_offsets(&cluster, 3), [0, 2, 4, 6]);
    assert_eq!(installs(&cluster, 3), [7]);
    assert_eq!(cluster.log_terms(3), cluster.log_terms(1));
    assert_eq!(cluster.progress(1, 3).state, ProgressState::Replicate);
}

/// A transfer is keyed on (leader term, index): a new leader's transfer starts from offset 0,
/// dropping the partial one (the runtime is told to start a new file), and completes.
#[test]
fn a_leader_change_in_mid_transfer_starts_the_transfer_again() {
    let mut cluster = lagging(|config| {
        small_chunks(config);
        config.check_quorum = false;
    });
    let heartbeat = cluster.node(1).config().heartbeat_ticks;
    cluster.tick(1, heartbeat);
    cluster.deliver_all(); // node 2 learns that index 7 committed
    cluster.save_snapshot(2);
    assert_eq!(cluster.node(2).status().snapshot_index, 7);
    heal_and_heartbeat(&mut cluster);
    // Only the first chunk arrives; then node 1 is cut off.
    let chunk = cluster
        .in_flight
        .iter()
        .position(|(_, to, msg)| *to == 3 && is_chunk(msg))
        .expect("a chunk in flight");
    let (from, to, msg) = cluster.in_flight.remove(chunk).expect("present");
    cluster.step(to, super::super::Input::Message { from, msg });
    cluster.drop_in_flight();
    assert_eq!(written_offsets(&cluster, 3), [0]);

    cluster.isolate(1);
    cluster.elect(2);
    cluster.deliver_all();

    assert_eq!(written_offsets(&cluster, 3), [0, 0, 2, 4, 6]);
    assert_eq!(installs(&cluster, 3), [7]);
    assert_eq!(cluster.log_terms(3), cluster.log_terms(2));
}

/// A follower that restarts loses the partial transfer; its answer of offset 0 to the next chunk
/// makes the leader start again from 0.
#[test]
fn a_follower_restart_in_mid_transfer_starts_again_from_zero() {
    let mut cluster = lagging(small_chunks);
    heal_and_heartbeat(&mut cluster);
    // Chunk 0 arrives and is acked; the follower crashes before more arrive.
    cluster.deliver_until(|cluster| {
        cluster
            .progress(1, 3)
            .snapshot
            .as_ref()
            .is_some_and(|transfer| transfer.acked == 2)
    });
    cluster.restart(3);

    let resend = cluster.node(1).config().snapshot_resend_ticks();
    cluster.run(&[1], resend + 1);

    let offsets = chunk_offsets(&cluster, 1, 3);
    let restarts = offsets.iter().filter(|&&offset| offset == 0).count();
    assert_eq!(restarts, 2, "from 0 again: {offsets:?}");
    assert_eq!(installs(&cluster, 3), [7]);
    assert_eq!(cluster.log_terms(3), cluster.log_terms(1));
}

/// A one-chunk snapshot (3 bytes) at (`index`, `term`).
fn whole_snapshot(index: u64, term: u64) -> Body {
    let data = b"abc".to_vec();
    Body::InstallSnapshot {
        index,
        snapshot_term: term,
        size: data.len() as u64,
        crc: crc32fast::hash(&data),
        offset: 0,
        data,
    }
}

/// Node 2 of a fresh cluster, restarted in term 2 with a log of terms `terms`.
fn follower_with(terms: &[u64], commit: u64) -> Cluster {
    let mut cluster = Cluster::new(3, |_| {});
    let hard_state = HardState {
        term: 2,
        vote: 0,
        commit,
    };
    cluster.restart_with(2, hard_state, log_with_terms(terms));
    cluster
}

fn installed_answer(msg: &Message) -> Option<u64> {
    match msg.body {
        Body::InstallSnapshotResponse {
            index,
            installed: true,
            ..
        } => Some(index),
        _ => None,
    }
}

/// Figure 13, receiver rule 6: "If existing log entry has same index and term as snapshot's last
/// included entry, retain log entries following it and reply". Rule 7: "Discard the entire log".
#[test]
fn rule_6_keeps_the_matching_suffix_and_rule_7_discards_a_conflicting_log() {
    let mut cluster = follower_with(&[1, 1, 1, 2, 2], 0);
    inject(&mut cluster, 1, 2, 3, whole_snapshot(3, 1));
    assert_eq!(cluster.log_terms(2), [(4, 2), (5, 2)], "rule 6");
    assert_eq!(cluster.node(2).log().base(), (3, 1));
    let status = cluster.node(2).status();
    assert_eq!((status.commit_index, status.applied_index), (3, 3));
    assert_eq!(status.stable_index, 5, "the kept entries stay durable");
    let disk = &cluster.disks[&2];
    assert_eq!(
        disk.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
        [4, 5]
    );
    let answers: Vec<u64> = sent(&cluster, 2, 1)
        .into_iter()
        .filter_map(installed_answer)
        .collect();
    assert_eq!(answers, [3]);

    let mut cluster = follower_with(&[1, 1, 1, 2, 2], 0);
    inject(&mut cluster, 1, 2, 3, whole_snapshot(4, 3));
    assert_eq!(cluster.log_terms(2), [], "rule 7: nothing after the base");
    assert_eq!(cluster.node(2).log().base(), (4, 3));
    let status = cluster.node(2).status();
    assert_eq!((status.last_index, status.stable_index), (4, 4));
    assert!(cluster.disks[&2].entries.is_empty());
}

/// A snapshot at or below the commit index holds nothing new: answered at once with a success
/// at the commit index, without writing or installing anything.
#[test]
fn a_snapshot_at_or_below_the_commit_index_is_answered_without_installing() {
    let mut cluster = follower_with(&[1, 1, 1], 3);
    inject(&mut cluster, 1, 2, 3, whole_snapshot(2, 1));

    assert!(written_offsets(&cluster, 2).is_empty());
    assert!(installs(&cluster, 2).is_empty());
    let answers: Vec<(u64, bool)> = sent(&cluster, 2, 1)
        .into_iter()
        .filter_map(append_answer)
        .collect();
    assert_eq!(answers, [(3, true)]);
}

/// Follower 2 with entries 1–6 (the sixth appended by leader 1 in term 3, not yet durable: the
/// script persists by hand), asked to install leader 1's snapshot at (4, term 3), whose term
/// conflicts with its entry 4.
fn installing_follower() -> Cluster {
    let mut cluster = follower_with(&[1, 1, 1, 2, 2], 0);
    cluster.auto_install = false;
    cluster.auto_persist = false;
    inject(
        &mut cluster,
        1,
        2,
        3,
        append(5, 2, log_with_terms(&[1; 6])[5..].to_vec(), 0),
    );
    assert_eq!(cluster.node(2).status().last_index, 6);
    inject(&mut cluster, 1, 2, 3, whole_snapshot(4, 3));
    assert_eq!(installs(&cluster, 2), [4]);
    cluster
}

/// While the runtime installs the snapshot, AppendEntries and chunks are dropped (the leader
/// sends them again): nothing is appended, persisted or answered for them (persists are left
/// pending here, so an answer would be held rather than sent: the log, the persists and the
/// held messages show the drop); once installed, the follower answers and appends again.
/// Persists issued before the install and reported after it do not make entries the install
/// removed durable.
#[test]
fn appends_are_dropped_while_a_snapshot_installs() {
    let mut cluster = installing_follower();
    let before = sent(&cluster, 2, 1).len();
    let persists_before = cluster.disks[&2].pending().len();
    let held_before = cluster.node(2).held_messages();

    // An append that would add entry 7 if it were taken.
    let seventh = log_with_terms(&[1; 7])[6..].to_vec();
    inject(&mut cluster, 1, 2, 3, append(6, 1, seventh, 0));
    assert_eq!(
        cluster.node(2).status().last_index,
        6,
        "entry 7 not appended"
    );
    assert_eq!(
        cluster.disks[&2].pending().len(),
        persists_before,
        "nothing persisted for a dropped append"
    );
    assert_eq!(
        cluster.node(2).held_messages(),
        held_before,
        "no answer waits for the disk either"
    );
    // The snapshot again: not installed twice.
    inject(&mut cluster, 1, 2, 3, whole_snapshot(4, 3));
    assert_eq!(installs(&cluster, 2), [4]);
    assert_eq!(
        sent(&cluster, 2, 1).len(),
        before,
        "dropped while installing"
    );

    cluster.install(2);
    let status = cluster.node(2).status();
    assert_eq!((status.last_index, status.stable_index), (4, 4));
    assert_eq!(
        sent(&cluster, 2, 1)
            .into_iter()
            .filter_map(installed_answer)
            .collect::<Vec<_>>(),
        [4]
    );

    let entry = super::super::Entry {
        index: 5,
        term: 3,
        kind: super::super::EntryKind::Normal,
        data: b"v".to_vec(),
    };
    inject(&mut cluster, 1, 2, 3, append(4, 3, vec![entry], 4));
    cluster.persist(2);
    assert_eq!(cluster.node(2).status().stable_index, 5);
    assert!(
        sent(&cluster, 2, 1)
            .into_iter()
            .filter_map(append_answer)
            .any(|answer| answer == (5, true))
    );
}

/// A follower that lost its disk and came back empty (an operator must replace such a node
/// under a new id; no election happens here, so its forgotten votes do not matter) answers the leader's heartbeat with a rejection saying its log ends at 0, below what it
/// acknowledged. The leader notices, forgets the stale match and probes it — here straight into
/// a snapshot, since its log was compacted — without waiting for new entries to reveal the gap.
#[test]
fn a_follower_that_lost_its_log_is_probed_again_and_gets_the_snapshot() {
    let mut cluster = Cluster::new(3, |config| config.snapshot_trailing_entries = 0);
    cluster.elect(1);
    for _ in 0..6 {
        cluster.propose(1, b"x");
    }
    cluster.save_snapshot(1);
    assert_eq!(cluster.progress(1, 3).match_index, 7);

    // Node 3's disk is wiped: it restarts with nothing.
    cluster.restart_with(3, HardState::default(), Vec::new());
    let heartbeat = cluster.node(1).config().heartbeat_ticks;
    cluster.tick(1, heartbeat);
    cluster.deliver_all();

    assert_eq!(
        installs(&cluster, 3),
        [7],
        "caught up by the snapshot, with no new entry"
    );
    assert_eq!(cluster.progress(1, 3).match_index, 7);
    assert_eq!(cluster.log_terms(3), cluster.log_terms(1));
}

/// `Action::InstallSnapshot`'s contract: the runtime carries out an install after the persists
/// emitted before it, and reports it after their `Persisted`. A runtime that reports it first
/// is caught at once, before the core resets its log on a durability it cannot know.
#[test]
#[should_panic(expected = "reported installed before persist")]
fn an_install_reported_before_the_persists_before_it_is_refused() {
    let mut cluster = installing_follower();
    assert!(
        !cluster.disks[&2].pending().is_empty(),
        "the append is not durable yet"
    );
    cluster.step(2, Input::SnapshotInstalled { index: 4 });
}

/// Found by `balsa torture` (a one-way partition: the leader heard nothing from a follower it
/// was sending a snapshot to). The follower installs the snapshot, but its answer is lost, and
/// meanwhile the leader takes a newer snapshot and compacts past the first. The leader's resent
/// last chunk is answered "I already hold this" (a success at the follower's commit index, which
/// is below the new log base): the transfer is over, and the leader must move on to the newer
/// snapshot rather than resend the old one forever (it did: the follower never caught up).
#[test]
fn a_follower_whose_install_answer_was_lost_gets_the_newer_snapshot() {
    let mut cluster = lagging(|_| {});
    heal_and_heartbeat(&mut cluster);
    let follower_unheard =
        |_: &Cluster, from: NodeId, to: NodeId, _: &Message| from == 3 && to == 1;
    cluster.deliver_all_but(follower_unheard);
    assert_eq!(installs(&cluster, 3), [7]);
    assert_eq!(
        cluster.progress(1, 3).state,
        ProgressState::Snapshot,
        "the leader never heard"
    );

    // The leader commits more with node 2 and compacts past the snapshot node 3 holds.
    for _ in 0..3 {
        cluster.propose(1, b"y");
    }
    cluster.deliver_all_but(follower_unheard);
    cluster.save_snapshot(1);
    assert_eq!(cluster.node(1).status().snapshot_index, 10);
    assert_eq!(cluster.commit(3), 7);

    let resend = cluster.node(1).config().snapshot_resend_ticks();
    cluster.run(&[1], 3 * resend);

    assert_eq!(installs(&cluster, 3), [7, 10]);
    assert_eq!(cluster.progress(1, 3).state, ProgressState::Replicate);
    assert_eq!(cluster.commit(3), cluster.commit(1));
}
