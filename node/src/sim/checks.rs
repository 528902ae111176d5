//! The safety properties the simulator checks after every step of every core (Raft paper
//! Figure 3, plus the durability rules of ARCHITECTURE.md), and how each is kept cheap.
//!
//! The checker keeps, per node, a *view* of its log as (term, chain digest) per index, where the
//! chain digest covers the entry and everything before it (see `digest.rs`). After a step it
//! recomputes the view only from the first index that may have changed: the lowest index any
//! `Persist` of that step truncates or writes at (every change to a core's log goes through a
//! persist), or the old or new end of the log. Every `FULL_CHECK_EVERY`-th step of a node it
//! recomputes the whole view instead, which catches a change that no persist announced (itself
//! a violation: [`ViolationKind::UnpersistedLogChange`]), so the incremental path cannot hide
//! one for longer than that. Nothing else is lost by going incrementally: every entry is checked
//! when it enters a log, since its chain digest is new there, and an entry that stays put keeps
//! the digest it was checked with. Each property then costs O(1) or O(entries that changed):
//!
//! - **Election safety**: at most one leader per term (a global term → leader map).
//! - **Leader append-only**: while a node leads a term, no entry of its log changes or goes.
//! - **Log matching**: every (index, term) ever seen in any log maps to one chain digest, so
//!   two logs holding the same (index, term) hold the same entries up to it. This is stronger
//!   than comparing logs present at one instant: it compares every log with every log ever.
//!   Checked for every entry whose chain digest changed.
//! - **Leader completeness**: the committed prefix is kept as chain digests, each index with
//!   the lowest term in which a node was seen knowing it committed; a node becoming leader of
//!   term `t` must hold the committed prefix known in terms below `t` (one digest compare).
//!   Entries first seen committed in term `t` or later are not demanded: a leader of `t` may
//!   learn of its victory after a later term committed something, and that is no violation.
//! - **State machine safety**: every node commits, and applies, the same entry at each index
//!   (global per-index digests), applies contiguously and only what it committed; and every
//!   node's state machine after index `i` has the same state digest (global per-index), whether
//!   it got there by applying entries or by restoring a snapshot.
//! - **Snapshots** (§7): a compacted log's base is an entry of the committed prefix, with that
//!   entry's term; the indexes below it are taken to hold the committed prefix (a snapshot holds
//!   only committed state), so every check above keeps comparing whole logs. A snapshot saved or
//!   installed at index `i` restores to the state digest recorded at `i`.
//! - **The session table** (thesis §6.3): a client's `(client, seq)` takes effect once. Every
//!   command a replica applies is recorded with the digest of the data before and after it
//!   (`store.rs`); applied again at a higher index than where it first took effect (a retry
//!   that was committed twice), it must leave the data as it was.
//! - **Commit index monotone**: within one incarnation of a node.
//! - **Term and vote never go back across restarts**: the in-memory term never goes down; a
//!   restarted node resumes exactly the durable term, vote and log (`disk.rs` checks that the
//!   durable hard state itself never goes back).
//! - **A leader's commit point is durable on a quorum, and of its own term** (ARCHITECTURE.md's
//!   durability rules 2–4, Figure 2's last rule for leaders): when a leader's commit index advances to `c`, the
//!   entry at `c` has the leader's term, and at least a quorum of disks hold the leader's log up
//!   to `c` (one digest compare per disk). Durable entries a quorum acknowledged in the entry's
//!   term cannot have been removed since: a leader that lacks them cannot have been elected.
//! - **No durability-implying message before its persist**: when a core emits a RequestVote, a
//!   granted vote or a successful append acknowledgement, the durable state must already back
//!   it: durable term at least the message's, the durable vote for the candidate (for
//!   RequestVote: itself) when the terms are equal, and for an acknowledgement of index `i`
//!   sent in the node's current term, a durable log identical to the in-memory one up to `i`.
//!   (An acknowledgement released after its node moved to a later term may vouch for entries
//!   a newer leader since replaced; its own entries were durable when it was made, but that
//!   moment is gone, so only its term is checked then.)
//!
//! - **What an append acknowledgement claims**: a successful acknowledgement of index `i` in
//!   term `T` says the sender's log matches the log of `T`'s leader up to `i`. The sender's
//!   chain digest at `i` is recorded as its claim, and compared with the leader's while that
//!   leader still leads `T`: when it is made (one riding on the persist of the step that made
//!   it), when it is sent in `T`, and when it is sent after its sender moved to a later term
//!   (from the log the sender held when it left `T`, kept while it had messages waiting: up to
//!   `i` that is the log the acknowledgement was made from, as a log does not change at or below
//!   an index it acknowledged within the term). Two claims of one index in one term to one
//!   leader must agree. When the leader counts it, the recorded claim is compared with the
//!   leader's log then; with the rule checks, every acknowledgement counted has one.
//!
//! The *rule checks* are the restart check (term, vote and log as on disk), the last three
//! families, and `disk.rs`'s check of the durable hard state: they catch a broken durability
//! rule at the step it breaks, before it has any consequence. `SimConfig::rule_checks` turns
//! them off, to measure how soon the consequences alone are caught.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry as MapEntry;

use super::digest::{chain_digest, entry_digest};
use super::disk::{Finding, SimDisk};
use super::report::ViolationKind;
use super::store::AppliedCommand;
use crate::raft::membership::Membership;
use crate::raft::quorum::{Joint, Majority};
use crate::raft::{Body, Entry, Message, NodeId, Raft, Role, Status};

/// Every this many steps of a node, its whole log view is recomputed (see the module docs).
const FULL_CHECK_EVERY: u64 = 16;

/// One index of a node's log as the checker last saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    term: u64,
    /// Digest of the log up to and including this index.
    chain: u64,
}

/// What the checker remembers of one node (of its current incarnation).
#[derive(Clone, Debug)]
struct View {
    /// `log[k]` is index `k + 1`.
    log: Vec<Slot>,
    role: Role,
    term: u64,
    commit: u64,
    applied: u64,
    steps: u64,
    /// Whether messages were waiting for a persist at the end of its last step
    /// ([`Raft::held_messages`]): only then can a message of an earlier term still leave.
    waiting: bool,
}

/// A committed index: the chain digest up to it, the term of its entry, and the lowest term in
/// which a node was seen knowing it committed.
#[derive(Clone, Copy, Debug)]
struct Committed {
    chain: u64,
    entry_term: u64,
    term: u64,
}

/// The checker's memory across the whole run.
#[derive(Debug, Default)]
pub struct Checker {
    /// Term → its leader.
    leaders: BTreeMap<u64, NodeId>,
    /// (index, term) → chain digest, for every entry seen in any log.
    seen: BTreeMap<(u64, u64), u64>,
    /// `committed[k]`: index `k + 1`. Commitment is prefix-closed, so this is dense, and the
    /// terms in it never decrease.
    committed: Vec<Committed>,
    /// `applied[k]`: the digest of the entry applied at index `k + 1`.
    applied: Vec<u64>,
    /// `states[k]`: the state machine's digest after index `k + 1`.
    states: Vec<u64>,
    views: BTreeMap<NodeId, View>,
    /// `(client, seq)` → the lowest index where that command was applied.
    first_effect: BTreeMap<(u64, u64), u64>,
    /// What each successful append acknowledgement claimed: (sender, receiver, term, index) →
    /// the sender's chain digest at the index when it was made (one riding on the persist of
    /// the step that made it), sent (in the term it was made in), or when its sender left that
    /// term (one released later).
    ack_claims: BTreeMap<(NodeId, NodeId, u64, u64), u64>,
    /// (node, term) → the chain digests of the node's log (`[k]`: index `k + 1`) when it left
    /// that term, kept while messages it made in that term may still be waiting to leave: what
    /// an acknowledgement released after the term change claimed (see
    /// [`Checker::remember_left_term`]).
    left_terms: BTreeMap<(NodeId, u64), Vec<u64>>,
    /// Whether the rule checks run (see the module docs).
    rule_checks: bool,
}

fn finding(kind: ViolationKind, detail: String) -> Result<(), Finding> {
    Err((kind, detail))
}

impl Checker {
    /// A checker; `rule_checks` turns on the rule checks (see the module docs).
    pub fn new(rule_checks: bool) -> Checker {
        Checker {
            rule_checks,
            ..Checker::default()
        }
    }

    /// Node `id` (re)started as `raft` from `disk`.
    pub fn on_start(&mut self, id: NodeId, raft: &Raft, disk: &SimDisk) -> Result<(), Finding> {
        let status = raft.status();
        let durable = disk.hard_state();
        if self.rule_checks && (status.term, status.vote) != (durable.term, durable.vote) {
            return finding(
                ViolationKind::TermOrVoteWentBack,
                format!(
                    "node {id} restarted in term {} with vote {}, but its disk holds term {} \
                     and vote {}",
                    status.term, status.vote, durable.term, durable.vote
                ),
            );
        }
        self.views.insert(
            id,
            View {
                log: Vec::new(),
                role: status.role,
                term: status.term,
                commit: 0,
                // The state machine restarts from the snapshot base; the core hands out again
                // (in its first Apply) everything committed after it.
                applied: raft.log().base().0,
                steps: 0,
                waiting: raft.held_messages() > 0,
            },
        );
        // What a crashed incarnation made and had not sent died with it.
        self.forget_left_terms(id);
        self.refresh_log(id, raft, Some(1), true)?;
        let view = &self.views[&id];
        let memory_chain = view.log.last().map_or(0, |slot| slot.chain);
        if self.rule_checks
            && (status.last_index, Some(memory_chain)) != (disk.last_index(), durable_chain(disk))
        {
            return finding(
                ViolationKind::UnpersistedLogChange,
                format!(
                    "node {id} restarted with a log ending at {}, not the durable one ending \
                     at {}",
                    status.last_index,
                    disk.last_index()
                ),
            );
        }
        self.record_commit(id, status.commit_index, status.term)
    }

    /// Node `id` took a step; `persisted_from` is the lowest index the step's persists
    /// truncate or write at, if any.
    pub fn after_step(
        &mut self,
        id: NodeId,
        raft: &Raft,
        persisted_from: Option<u64>,
        disks: &[(NodeId, &SimDisk)],
        counting: Option<&Membership>,
    ) -> Result<(), Finding> {
        let status = raft.status();
        let view = self.views.get_mut(&id).expect("every live node has a view");
        view.steps += 1;
        let full = view.steps.is_multiple_of(FULL_CHECK_EVERY);
        let (was_role, was_term, was_waiting) = (view.role, view.term, view.waiting);
        if status.term < was_term {
            return finding(
                ViolationKind::TermOrVoteWentBack,
                format!(
                    "node {id} went from term {was_term} back to {}",
                    status.term
                ),
            );
        }
        let old_last = view.log.len() as u64;
        if self.rule_checks {
            if !was_waiting {
                // Everything it made before this step has left: no earlier term's message can.
                self.forget_left_terms(id);
            } else if status.term > was_term {
                self.remember_left_term(id, was_term);
            }
        }
        let first_changed = self.refresh_log(id, raft, persisted_from, full)?;
        if let Some(changed) = first_changed {
            if persisted_from.is_none_or(|from| from > changed) {
                return finding(
                    ViolationKind::UnpersistedLogChange,
                    format!(
                        "node {id}'s log changed from index {changed} on, but no persist of \
                         this step covers it (lowest persisted index: {persisted_from:?})"
                    ),
                );
            }
            let still_leading =
                was_role == Role::Leader && status.role == Role::Leader && was_term == status.term;
            if still_leading && changed <= old_last {
                return finding(
                    ViolationKind::LeaderAppendOnly,
                    format!(
                        "node {id}, leader of term {}, changed its entry {changed} (its log \
                         ended at {old_last})",
                        status.term
                    ),
                );
            }
        }
        if status.role == Role::Leader && (was_role != Role::Leader || was_term != status.term) {
            self.on_new_leader(id, &status)?;
        }
        let view = &self.views[&id];
        if self.rule_checks && status.role == Role::Leader && status.commit_index > view.commit {
            self.check_leader_commit(id, raft, &status, disks, counting)?;
        }
        let view = self.views.get_mut(&id).expect("checked above");
        if status.commit_index < view.commit {
            return finding(
                ViolationKind::CommitMonotone,
                format!(
                    "node {id}'s commit index went from {} down to {}",
                    view.commit, status.commit_index
                ),
            );
        }
        view.role = status.role;
        view.term = status.term;
        view.waiting = raft.held_messages() > 0;
        self.record_commit(id, status.commit_index, status.term)
    }

    /// Node `id` leaves `term` with messages still waiting for a persist (held by its core, or
    /// riding on a persist in flight): its log as it stands (the view, not yet refreshed from
    /// this step) is the one it held when it made any acknowledgement of `term` among them.
    /// Within one term a log does not change at or below an index it acknowledged (the term's
    /// leader only appends, and sends nothing that conflicts with what it was acknowledged), so
    /// this log up to that index is the one the acknowledgement was made from.
    fn remember_left_term(&mut self, id: NodeId, term: u64) {
        let chains = self.views[&id].log.iter().map(|slot| slot.chain).collect();
        self.left_terms.insert((id, term), chains);
    }

    /// Nothing node `id` made in an earlier term can still be sent.
    fn forget_left_terms(&mut self, id: NodeId) {
        self.left_terms.retain(|&(node, _), _| node != id);
    }

    /// Recomputes node `id`'s log view from the lowest index that may have changed (index 1 if
    /// `full`). Returns the first index whose entry changed (or went), if any; checks log
    /// matching for every changed entry.
    fn refresh_log(
        &mut self,
        id: NodeId,
        raft: &Raft,
        persisted_from: Option<u64>,
        full: bool,
    ) -> Result<Option<u64>, Finding> {
        let log = raft.log();
        let last = log.last_index();
        let (base, base_term) = log.base();
        let view = self.views.get_mut(&id).expect("every live node has a view");
        let old_last = view.log.len() as u64;
        let start = if full {
            1
        } else {
            persisted_from
                .unwrap_or(u64::MAX)
                .min(old_last + 1)
                .min(last + 1)
                .max(1)
        };
        let mut first_changed = (last < old_last).then_some(last + 1);
        let mut chain = start
            .checked_sub(2)
            .and_then(|position| view.log.get(usize::try_from(position).ok()?))
            .map_or(0, |slot| slot.chain);
        for index in start..=last {
            let position = usize::try_from(index - 1).expect("a log index fits a usize");
            let slot = if index <= base {
                // Compacted: a snapshot covers it, so it is the committed prefix's.
                let Some(committed) = self.committed.get(position) else {
                    return Err((
                        ViolationKind::Snapshot,
                        format!(
                            "node {id}'s log base {base} is past the committed prefix (up to {})",
                            self.committed.len()
                        ),
                    ));
                };
                if index == base && committed.entry_term != base_term {
                    return Err((
                        ViolationKind::Snapshot,
                        format!(
                            "node {id}'s log base is ({base}, term {base_term}) but the \
                             committed entry there has term {}",
                            committed.entry_term
                        ),
                    ));
                }
                Slot {
                    term: committed.entry_term,
                    chain: committed.chain,
                }
            } else {
                let entry = log.entry(index).expect("the log holds base+1..=last");
                Slot {
                    term: entry.term,
                    chain: chain_digest(chain, entry),
                }
            };
            chain = slot.chain;
            if view.log.get(position) == Some(&slot) {
                continue;
            }
            first_changed = Some(first_changed.map_or(index, |first| first.min(index)));
            match self.seen.entry((index, slot.term)) {
                MapEntry::Vacant(vacant) => {
                    vacant.insert(chain);
                }
                MapEntry::Occupied(occupied) if *occupied.get() != chain => {
                    return Err((
                        ViolationKind::LogMatching,
                        format!(
                            "node {id} holds entry ({index}, term {}) with a content or prefix \
                             that differs from another log's entry ({index}, term {})",
                            slot.term, slot.term
                        ),
                    ));
                }
                MapEntry::Occupied(_) => {}
            }
            if position < view.log.len() {
                view.log[position] = slot;
            } else {
                view.log.push(slot);
            }
        }
        view.log
            .truncate(usize::try_from(last).expect("a log index fits a usize"));
        Ok(first_changed)
    }

    /// Node `id` just became leader: election safety and leader completeness.
    fn on_new_leader(&mut self, id: NodeId, status: &Status) -> Result<(), Finding> {
        let term = status.term;
        if let Some(&other) = self.leaders.get(&term)
            && other != id
        {
            return finding(
                ViolationKind::ElectionSafety,
                format!("nodes {other} and {id} both lead term {term}"),
            );
        }
        self.leaders.insert(term, id);
        // The committed prefix known in terms below `term` (the terms never decrease).
        let required = self.committed.partition_point(|entry| entry.term < term);
        if required == 0 {
            return Ok(());
        }
        let expected = self.committed[required - 1].chain;
        let held = self.views[&id].log.get(required - 1).map(|slot| slot.chain);
        if held != Some(expected) {
            return finding(
                ViolationKind::LeaderCompleteness,
                format!(
                    "node {id} leads term {term} but its log (ending at {}) does not hold the \
                     committed prefix up to index {required}",
                    status.last_index
                ),
            );
        }
        Ok(())
    }

    /// Node `id`, leader of `status.term`, just advanced its commit index: the new commit point
    /// must be an entry of its term, held durably by a quorum.
    fn check_leader_commit(
        &self,
        id: NodeId,
        raft: &Raft,
        status: &Status,
        disks: &[(NodeId, &SimDisk)],
        counting: Option<&Membership>,
    ) -> Result<(), Finding> {
        let commit = status.commit_index;
        let term = raft.log().term_at(commit);
        if term != Some(status.term) {
            return finding(
                ViolationKind::CommitOfEarlierTerm,
                format!(
                    "node {id}, leader of term {}, committed up to index {commit}, an entry of \
                     term {term:?}",
                    status.term
                ),
            );
        }
        let position = usize::try_from(commit - 1).expect("a log index fits a usize");
        let chain = self.views[&id].log.get(position).map(|slot| slot.chain);
        let holders: Vec<NodeId> = disks
            .iter()
            .filter(|(_, disk)| self.durably_holds(disk, commit, chain))
            .map(|(holder, _)| *holder)
            .collect();
        // A quorum of the configuration that counted the commit (the one in force when the
        // step began: one appended later in the step counts only later commits), both halves
        // while joint.
        let Some(membership) = counting else {
            return Ok(()); // it became leader in this step: it has committed nothing yet
        };
        let quorum = Joint {
            incoming: Majority::new(membership.incoming()),
            outgoing: Majority::new(membership.outgoing()),
        };
        if !quorum.has_majority(|voter| holders.contains(&voter)) {
            return finding(
                ViolationKind::CommitNotDurable,
                format!(
                    "node {id}, leader of term {}, committed up to index {commit}, which only \
                     the disks of {holders:?} hold (voters {:?}, outgoing {:?})",
                    status.term,
                    membership.incoming().collect::<Vec<_>>(),
                    membership.outgoing().collect::<Vec<_>>(),
                ),
            );
        }
        Ok(())
    }

    /// Node `id`, in `term`, knows everything up to `commit` committed.
    fn record_commit(&mut self, id: NodeId, commit: u64, term: u64) -> Result<(), Finding> {
        let view = self.views.get_mut(&id).expect("every live node has a view");
        view.commit = view.commit.max(commit);
        let commit = usize::try_from(commit).expect("a log index fits a usize");
        if commit == 0 {
            return Ok(());
        }
        // Chain digests make one comparison, at the highest index both know, cover the prefix.
        let shared = commit.min(self.committed.len());
        if shared > 0 && view.log[shared - 1].chain != self.committed[shared - 1].chain {
            return finding(
                ViolationKind::StateMachineSafety,
                format!(
                    "node {id} committed up to index {commit}, but its log up to {shared} \
                     differs from what other nodes committed"
                ),
            );
        }
        for index in self.committed.len()..commit {
            self.committed.push(Committed {
                chain: view.log[index].chain,
                entry_term: view.log[index].term,
                term,
            });
        }
        // Known committed in `term`: lower the recorded term where it is higher (a suffix,
        // since the terms never decrease along the prefix).
        for entry in self.committed[..commit].iter_mut().rev() {
            if entry.term <= term {
                break;
            }
            entry.term = term;
        }
        Ok(())
    }

    /// Node `id` applied `entries` (in an `Apply` action).
    pub fn on_apply(&mut self, id: NodeId, entries: &[Entry]) -> Result<(), Finding> {
        let view = self.views.get_mut(&id).expect("every live node has a view");
        for entry in entries {
            if entry.index != view.applied + 1 || entry.index > view.commit {
                return finding(
                    ViolationKind::StateMachineSafety,
                    format!(
                        "node {id} applies index {} after {} with its commit index at {}",
                        entry.index, view.applied, view.commit
                    ),
                );
            }
            view.applied = entry.index;
            let digest = entry_digest(entry);
            let position = usize::try_from(entry.index - 1).expect("a log index fits a usize");
            match self.applied.get(position) {
                Some(&other) if other != digest => {
                    return finding(
                        ViolationKind::StateMachineSafety,
                        format!(
                            "node {id} applies an entry at index {} (term {}) that differs from \
                             the one another node applied there",
                            entry.index, entry.term
                        ),
                    );
                }
                Some(_) => {}
                None => self.applied.push(digest),
            }
        }
        Ok(())
    }

    /// Node `id` applied `command`: a `(client, seq)` that took effect at a lower index must
    /// change nothing when applied again (the session table answers the retry instead).
    pub fn on_command(&mut self, id: NodeId, command: &AppliedCommand) -> Result<(), Finding> {
        if command.client_seq == (0, 0) {
            return Ok(());
        }
        let first = self
            .first_effect
            .entry(command.client_seq)
            .or_insert(command.index);
        if *first > command.index {
            *first = command.index;
        }
        if *first < command.index && command.data_before != command.data_after {
            let (client, seq) = command.client_seq;
            return finding(
                ViolationKind::SessionTable,
                format!(
                    "node {id} applied client {client}'s command {seq} again at index {}, \
                     changing the data, after it took effect at index {first}",
                    command.index
                ),
            );
        }
        Ok(())
    }

    /// Node `id` (now in `term`) emits `msg` to `to`: a message that promises durability must
    /// be backed by `disk` already.
    pub fn check_send(
        &mut self,
        id: NodeId,
        term: u64,
        disk: &SimDisk,
        to: NodeId,
        msg: &Message,
    ) -> Result<(), Finding> {
        if !self.rule_checks {
            return Ok(());
        }
        let durable = disk.hard_state();
        let vouch = |voted_for: NodeId, what: &str| {
            let backed =
                durable.term > msg.term || (durable.term == msg.term && durable.vote == voted_for);
            if backed {
                Ok(())
            } else {
                finding(
                    ViolationKind::MessageBeforePersist,
                    format!(
                        "node {id} sent {what} to {to} in term {} while its disk holds term {} \
                         and vote {}",
                        msg.term, durable.term, durable.vote
                    ),
                )
            }
        };
        match msg.body {
            Body::RequestVote {
                pre_vote: false, ..
            } => vouch(id, "a vote request"),
            Body::RequestVoteResponse {
                pre_vote: false,
                granted: true,
            } => vouch(to, "a vote"),
            Body::AppendEntriesResponse {
                index,
                conflict: None,
                ..
            } if index > 0 => {
                if durable.term < msg.term {
                    return finding(
                        ViolationKind::MessageBeforePersist,
                        format!(
                            "node {id} acknowledged index {index} to {to} in term {} while its \
                             disk holds term {}",
                            msg.term, durable.term
                        ),
                    );
                }
                if msg.term != term {
                    // Released late, after a term change (see the module docs): its own
                    // entries were durable when it was made; its claim is the log the node
                    // held when it left the term.
                    return self.check_late_ack(id, to, msg.term, index);
                }
                let position = usize::try_from(index - 1).expect("a log index fits a usize");
                let memory = self.views[&id].log.get(position).map(|slot| slot.chain);
                if !self.durably_holds(disk, index, memory) {
                    return finding(
                        ViolationKind::MessageBeforePersist,
                        format!(
                            "node {id} acknowledged index {index} to {to} in term {} but its \
                             durable log (ending at {}) does not hold its log up to {index}",
                            msg.term,
                            disk.last_index()
                        ),
                    );
                }
                let Some(chain) = memory else {
                    return Ok(()); // caught just above: nothing durable backs a missing index
                };
                self.check_ack_claim(id, to, msg.term, index, chain)
            }
            _ => Ok(()),
        }
    }

    /// Node `id` makes `msg` for `to` in the step just checked, to leave once the persist it
    /// rides on is durable: a successful append acknowledgement's claim is recorded (and
    /// checked) now, from the log it is made from, in case it is released only after a term
    /// change.
    pub fn on_ack_made(&mut self, id: NodeId, to: NodeId, msg: &Message) -> Result<(), Finding> {
        let Some(index) = acknowledged_index(msg) else {
            return Ok(());
        };
        let view = &self.views[&id];
        if !self.rule_checks || index == 0 || msg.term != view.term {
            return Ok(()); // a message of an earlier term is not made now: checked when sent
        }
        let position = usize::try_from(index - 1).expect("a log index fits a usize");
        let Some(chain) = view.log.get(position).map(|slot| slot.chain) else {
            return finding(
                ViolationKind::FalseAcknowledgement,
                format!(
                    "node {id} acknowledges index {index} to {to} in term {}, but its log ends \
                     at {}",
                    msg.term,
                    view.log.len()
                ),
            );
        };
        self.check_ack_claim(id, to, msg.term, index, chain)
    }

    /// Node `id`, now in a later term, sends `to` an acknowledgement of `index` made in `term`:
    /// its claim is the log the node held when it left `term` (remembered, since a message of
    /// that term was waiting then).
    fn check_late_ack(
        &mut self,
        id: NodeId,
        to: NodeId,
        term: u64,
        index: u64,
    ) -> Result<(), Finding> {
        let Some(chains) = self.left_terms.get(&(id, term)) else {
            return finding(
                ViolationKind::FalseAcknowledgement,
                format!(
                    "node {id} acknowledged index {index} to {to} in term {term}, a term this \
                     incarnation did not leave with messages waiting"
                ),
            );
        };
        let position = usize::try_from(index - 1).expect("a log index fits a usize");
        let Some(&chain) = chains.get(position) else {
            return finding(
                ViolationKind::FalseAcknowledgement,
                format!(
                    "node {id} acknowledged index {index} to {to} in term {term}, but its log \
                     ended at {} when it left that term",
                    chains.len()
                ),
            );
        };
        self.check_ack_claim(id, to, term, index, chain)
    }

    /// A successful append acknowledgement of `index` in `term` claims that the sender's log,
    /// whose chain digest there is `chain`, matches the log of `term`'s leader up to `index`.
    /// Checked against that leader's log now, if it still leads `term` (its log only grows
    /// during its term, so now is as good as when the entries were sent), and recorded for
    /// [`Checker::on_ack_counted`]. Two claims of one index in one term, to its leader, must
    /// agree: that leader's log there is one for the whole term.
    fn check_ack_claim(
        &mut self,
        id: NodeId,
        to: NodeId,
        term: u64,
        index: u64,
        chain: u64,
    ) -> Result<(), Finding> {
        if let Some(earlier) = self.ack_claims.insert((id, to, term, index), chain)
            && earlier != chain
        {
            return finding(
                ViolationKind::FalseAcknowledgement,
                format!(
                    "node {id} acknowledged index {index} to {to} in term {term} twice, from \
                     logs that differ there"
                ),
            );
        }
        let Some(&leader) = self.leaders.get(&term) else {
            return Ok(());
        };
        let Some(leader_chain) = self.leading_chain_at(leader, term, index) else {
            return Ok(()); // that leader no longer leads the term: its log may have changed
        };
        match leader_chain {
            Some(leader_chain) if leader_chain == chain => Ok(()),
            leader_slot => finding(
                ViolationKind::FalseAcknowledgement,
                format!(
                    "node {id} acknowledged index {index} to {to} in term {term}, but its log \
                     there differs from the log of leader {leader} ({})",
                    if leader_slot.is_some() {
                        "a different entry"
                    } else {
                        "which does not reach it"
                    }
                ),
            ),
        }
    }

    /// `None` unless `leader` leads `term` now; else the chain digest of its log at `index`
    /// (`None` if its log does not reach it).
    fn leading_chain_at(&self, leader: NodeId, term: u64, index: u64) -> Option<Option<u64>> {
        let view = self.views.get(&leader)?;
        if index == 0 || view.role != Role::Leader || view.term != term {
            return None;
        }
        let position = usize::try_from(index - 1).expect("a log index fits a usize");
        Some(view.log.get(position).map(|slot| slot.chain))
    }

    /// Leader `leader`, in `term`, counts `from`'s acknowledgement of `index` (it is about to
    /// step it): what the acknowledgement claimed when sent must match the leader's log there.
    pub fn on_ack_counted(
        &self,
        from: NodeId,
        leader: NodeId,
        msg: &Message,
    ) -> Result<(), Finding> {
        let Some(index) = acknowledged_index(msg) else {
            return Ok(());
        };
        let Some(leader_chain) = self.leading_chain_at(leader, msg.term, index) else {
            return Ok(()); // not counted: a leader counts only acknowledgements of its term
        };
        let Some(&claimed) = self.ack_claims.get(&(from, leader, msg.term, index)) else {
            if !self.rule_checks {
                return Ok(()); // nothing is recorded without the rule checks
            }
            // With them every sent acknowledgement is recorded or found false (`check_send`).
            return finding(
                ViolationKind::FalseAcknowledgement,
                format!(
                    "leader {leader} counts node {from}'s acknowledgement of index {index} in \
                     term {}, which was never checked when sent",
                    msg.term
                ),
            );
        };
        match leader_chain {
            Some(leader_chain) if leader_chain == claimed => Ok(()),
            _ => finding(
                ViolationKind::FalseAcknowledgement,
                format!(
                    "leader {leader} counts node {from}'s acknowledgement of index {index} in \
                     term {}, but the log it was sent from differs from the leader's there",
                    msg.term
                ),
            ),
        }
    }

    /// Node `id`'s state machine, after applying index `index` (or restoring a snapshot of it),
    /// has digest `digest`: it must be every other node's there.
    pub fn on_state(&mut self, id: NodeId, index: u64, digest: u64) -> Result<(), Finding> {
        let position = usize::try_from(index.checked_sub(1).ok_or((
            ViolationKind::Snapshot,
            format!("node {id} has a state at index 0"),
        ))?)
        .expect("a log index fits a usize");
        match self.states.get(position) {
            Some(&other) if other != digest => finding(
                ViolationKind::StateMachineSafety,
                format!(
                    "node {id}'s state machine after index {index} differs from another node's \
                     there"
                ),
            ),
            Some(_) => Ok(()),
            None if position == self.states.len() => {
                self.states.push(digest);
                Ok(())
            }
            None => finding(
                ViolationKind::StateMachineSafety,
                format!(
                    "node {id} reached index {index} before any node reached {}",
                    self.states.len() + 1
                ),
            ),
        }
    }

    /// Node `id` restored its state machine from a snapshot at `index` with state `digest`
    /// (an install): applying resumes after it.
    pub fn on_install(&mut self, id: NodeId, index: u64, digest: u64) -> Result<(), Finding> {
        let view = self.views.get_mut(&id).expect("every live node has a view");
        if index <= view.applied {
            return finding(
                ViolationKind::Snapshot,
                format!(
                    "node {id} installs a snapshot at {index}, not past its applied index {}",
                    view.applied
                ),
            );
        }
        view.applied = index;
        self.on_state(id, index, digest)
    }

    /// The chain digest and entry term of the committed prefix at `index`, if known committed.
    pub fn committed_at(&self, index: u64) -> Option<(u64, u64)> {
        let position = usize::try_from(index.checked_sub(1)?).ok()?;
        let committed = self.committed.get(position)?;
        Some((committed.chain, committed.entry_term))
    }

    /// Whether `disk` durably holds a log whose chain digest at `index` is `chain`: in its log,
    /// or in a snapshot covering `index` when `chain` is the committed prefix's there (a
    /// snapshot holds the committed prefix). False when `chain` is `None` (no log there).
    fn durably_holds(&self, disk: &SimDisk, index: u64, chain: Option<u64>) -> bool {
        chain.is_some()
            && (disk.chain_at(index) == chain
                || (disk.snapshot_covers(index)
                    && self.committed_at(index).map(|(committed, _)| committed) == chain))
    }

    /// Node `id` crashed: its view goes (a restart builds a new one), and with it what it made
    /// and had not sent.
    pub fn on_crash(&mut self, id: NodeId) {
        self.views.remove(&id);
        self.forget_left_terms(id);
    }
}

/// The chain digest of the whole durable log (0 when empty).
fn durable_chain(disk: &SimDisk) -> Option<u64> {
    match disk.last_index() {
        0 => Some(0),
        last => disk.chain_at(last),
    }
}

/// The index a successful append acknowledgement claims the sender matches up to (`None`: not
/// one).
fn acknowledged_index(msg: &Message) -> Option<u64> {
    match msg.body {
        Body::AppendEntriesResponse {
            index,
            conflict: None,
            ..
        } => Some(index),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{Body, Checker, Message, NodeId, Role, SimDisk, Slot, View, ViolationKind};
    use crate::raft::{HardState, Persist};

    /// The leader of term 2.
    const LEADER: NodeId = 1;
    /// A follower that acknowledges index 3 in term 2 and sends it once in term 3.
    const FOLLOWER: NodeId = 2;

    fn view(role: Role, term: u64, chains: &[u64], waiting: bool) -> View {
        View {
            log: chains.iter().map(|&chain| Slot { term, chain }).collect(),
            role,
            term,
            commit: 0,
            applied: 0,
            steps: 1,
            waiting,
        }
    }

    fn disk_in_term(term: u64) -> SimDisk {
        let mut disk = SimDisk::new(true);
        let hard_state = HardState {
            term,
            vote: 0,
            commit: 0,
        };
        disk.submit(
            Persist {
                id: 1,
                hard_state: Some(hard_state),
                ..Persist::default()
            },
            0,
        );
        disk.complete_upto(1).expect("a first hard state");
        disk
    }

    fn ack(term: u64, index: u64) -> Message {
        Message {
            term,
            body: Body::AppendEntriesResponse {
                index,
                conflict: None,
                read_round: 0,
            },
        }
    }

    fn kind(result: Result<(), (ViolationKind, String)>) -> Option<ViolationKind> {
        result.err().map(|(kind, _)| kind)
    }

    /// Leader 1 leads term 2 with a log whose chain digests are 11, 12, 13 (if `leader_known`:
    /// else the checker has not seen term 2's leader yet). Follower 2 holds 11, 12, `tail` in
    /// term 2 and makes an acknowledgement of index 3 there, which waits for a persist; it
    /// moves to term 3 (a newer leader cuts its tail) before the acknowledgement leaves.
    fn follower_left_term_2_with_an_ack_waiting(tail: u64, leader_known: bool) -> Checker {
        let mut checker = Checker::new(true);
        if leader_known {
            checker.leaders.insert(2, LEADER);
        }
        checker
            .views
            .insert(LEADER, view(Role::Leader, 2, &[11, 12, 13], false));
        checker
            .views
            .insert(FOLLOWER, view(Role::Follower, 2, &[11, 12, tail], true));
        // As `after_step` does at the step that moves it to term 3, before refreshing its view.
        checker.remember_left_term(FOLLOWER, 2);
        checker
            .views
            .insert(FOLLOWER, view(Role::Follower, 3, &[11, 12], true));
        checker
    }

    /// The hole this closes: an acknowledgement released after its sender's term changed was
    /// checked at neither end (`check_send` skipped it, so nothing was recorded for
    /// `on_ack_counted` either). A false one is now caught when it leaves.
    #[test]
    fn a_false_acknowledgement_released_after_a_term_change_is_caught_when_sent() {
        let mut checker = follower_left_term_2_with_an_ack_waiting(99, true);
        let sent = checker.check_send(FOLLOWER, 3, &disk_in_term(3), LEADER, &ack(2, 3));
        assert_eq!(kind(sent), Some(ViolationKind::FalseAcknowledgement));
    }

    /// When the send side cannot compare (the checker does not know the term's leader then),
    /// the claim recorded for a late acknowledgement is what the counting side compares.
    #[test]
    fn a_false_acknowledgement_released_after_a_term_change_is_caught_when_counted() {
        let mut checker = follower_left_term_2_with_an_ack_waiting(99, false);
        let sent = checker.check_send(FOLLOWER, 3, &disk_in_term(3), LEADER, &ack(2, 3));
        assert_eq!(kind(sent), None, "no leader of term 2 to compare with yet");
        checker.leaders.insert(2, LEADER);
        let counted = checker.on_ack_counted(FOLLOWER, LEADER, &ack(2, 3));
        assert_eq!(kind(counted), Some(ViolationKind::FalseAcknowledgement));
    }

    #[test]
    fn a_true_acknowledgement_released_after_a_term_change_passes_both_ends() {
        let mut checker = follower_left_term_2_with_an_ack_waiting(13, true);
        let sent = checker.check_send(FOLLOWER, 3, &disk_in_term(3), LEADER, &ack(2, 3));
        assert_eq!(kind(sent), None);
        let counted = checker.on_ack_counted(FOLLOWER, LEADER, &ack(2, 3));
        assert_eq!(kind(counted), None);
    }

    /// A late acknowledgement of an index its log did not reach when it left the term, or of a
    /// term it did not leave with messages waiting, claims what it never held.
    #[test]
    fn a_late_acknowledgement_beyond_the_log_or_from_an_unknown_term_is_caught() {
        let mut checker = follower_left_term_2_with_an_ack_waiting(13, true);
        let beyond = checker.check_send(FOLLOWER, 3, &disk_in_term(3), LEADER, &ack(2, 4));
        assert_eq!(kind(beyond), Some(ViolationKind::FalseAcknowledgement));
        let mut checker = follower_left_term_2_with_an_ack_waiting(13, true);
        checker.forget_left_terms(FOLLOWER);
        let unknown = checker.check_send(FOLLOWER, 3, &disk_in_term(3), LEADER, &ack(2, 3));
        assert_eq!(kind(unknown), Some(ViolationKind::FalseAcknowledgement));
    }

    /// An acknowledgement made riding on a persist is recorded from the log it is made from;
    /// sent later from a log that differs there, the two claims disagree.
    #[test]
    fn two_claims_of_one_index_in_one_term_must_agree() {
        let mut checker = Checker::new(true);
        checker
            .views
            .insert(FOLLOWER, view(Role::Follower, 2, &[11, 12, 99], false));
        assert_eq!(
            kind(checker.on_ack_made(FOLLOWER, LEADER, &ack(2, 3))),
            None
        );
        checker
            .views
            .insert(FOLLOWER, view(Role::Follower, 2, &[11, 12, 13], false));
        let again = checker.check_ack_claim(FOLLOWER, LEADER, 2, 3, 13);
        assert_eq!(kind(again), Some(ViolationKind::FalseAcknowledgement));
    }

    /// With the rule checks, every acknowledgement a leader counts was recorded when sent.
    #[test]
    fn an_acknowledgement_counted_but_never_checked_is_a_violation_with_the_rule_checks() {
        for rule_checks in [true, false] {
            let mut checker = Checker::new(rule_checks);
            checker.leaders.insert(2, LEADER);
            checker
                .views
                .insert(LEADER, view(Role::Leader, 2, &[11, 12, 13], false));
            let counted = checker.on_ack_counted(FOLLOWER, LEADER, &ack(2, 3));
            let expected = rule_checks.then_some(ViolationKind::FalseAcknowledgement);
            assert_eq!(kind(counted), expected, "rule checks {rule_checks}");
        }
    }
}
