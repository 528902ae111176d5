//! One node's simulated stable storage: the durable hard state and log, and the persists the
//! core issued that are not durable yet.
//!
//! - Persists become durable strictly in the order they were issued (a WAL appends in order),
//!   each at a completion time drawn by the driver and never earlier than the one before.
//! - A completed persist hands back its `then_send` messages: the driver releases them into the
//!   network at that moment, before it reports `Persisted` to the core, as the WAL thread does.
//! - A crash drops every pending persist, except that a prefix of them may survive: written to
//!   the platter, but the acknowledgement never reached the core. Raft must tolerate that (it is
//!   as if those persists finished just before the crash). The `then_send` messages of every
//!   pending persist, survivors included, die with the node: they never leave.
//! - A restart builds [`Restored`] from the durable state only.
//!
//! Checked here, on every durable write: the durable term never goes down and the durable vote
//! never changes within a term ([`ViolationKind::TermOrVoteWentBack`]), and a persist never
//! leaves a gap in the durable log ([`ViolationKind::UnpersistedLogChange`]).

use std::collections::VecDeque;

use super::digest::chain_digest;
use super::report::ViolationKind;
use crate::raft::{Entry, HardState, Message, NodeId, Persist, PersistId, Restored};

/// A broken property and what exactly broke it.
pub type Finding = (ViolationKind, String);

/// What a completion made durable.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Completed {
    /// The id of the last persist written.
    pub upto: PersistId,
    /// The `then_send` messages of every persist written, in order: now free to leave.
    pub then_send: Vec<(NodeId, Message)>,
}

/// One node's storage.
#[derive(Debug, Default)]
pub struct Disk {
    /// The durable hard state.
    hard_state: HardState,
    /// The durable log, contiguous from index 1 (no snapshots in the simulator).
    entries: Vec<Entry>,
    /// `chain[k]`: the chain digest of the durable log up to `entries[k]`.
    chain: Vec<u64>,
    /// Persists issued and not yet durable, in issue order.
    pending: VecDeque<Persist>,
    /// When the newest pending persist completes; later ones complete no earlier.
    last_completion: u64,
    /// Whether to check that the durable hard state never goes back.
    check_hard_state: bool,
}

impl Disk {
    /// An empty disk; `check_hard_state` turns on the check of the durable term and vote.
    pub fn new(check_hard_state: bool) -> Disk {
        Disk {
            check_hard_state,
            ..Disk::default()
        }
    }

    /// Queues `persist`, due at `due`; returns when it will actually complete (no earlier than
    /// the persist before it).
    pub fn submit(&mut self, persist: Persist, due: u64) -> u64 {
        self.last_completion = self.last_completion.max(due);
        self.pending.push_back(persist);
        self.last_completion
    }

    /// The id of the newest pending persist.
    pub fn newest_pending(&self) -> Option<PersistId> {
        self.pending.back().map(|persist| persist.id)
    }

    /// Makes every pending persist with an id up to `upto` durable, in order. Returns the id of
    /// the last one written and the messages they release (`None` if none was pending there).
    pub fn complete_upto(&mut self, upto: PersistId) -> Result<Option<Completed>, Finding> {
        let mut completed: Option<Completed> = None;
        while self
            .pending
            .front()
            .is_some_and(|persist| persist.id <= upto)
        {
            let mut persist = self.pending.pop_front().expect("checked just above");
            let done = completed.get_or_insert_with(Completed::default);
            done.upto = persist.id;
            done.then_send.append(&mut persist.then_send);
            self.write(persist)?;
        }
        Ok(completed)
    }

    /// The node crashed: the first `survivors` pending persists reach the disk anyway, the rest
    /// are lost. No `then_send` message of any of them leaves. Returns how many survived.
    pub fn crash(&mut self, survivors: usize) -> Result<usize, Finding> {
        let survivors = survivors.min(self.pending.len());
        let kept: Vec<Persist> = self.pending.drain(..survivors).collect();
        self.pending.clear();
        self.last_completion = 0;
        for mut persist in kept {
            persist.then_send.clear(); // the writer died before it could send them
            self.write(persist)?;
        }
        Ok(survivors)
    }

    /// Persists issued and not yet durable.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// What a restarted node gets back.
    pub fn restored(&self) -> Restored {
        Restored {
            hard_state: self.hard_state,
            snapshot: (0, 0),
            entries: self.entries.clone(),
            snapshot_data: None,
        }
    }

    /// The durable hard state.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// The last durable index.
    pub fn last_index(&self) -> u64 {
        self.entries.len() as u64
    }

    /// The chain digest of the durable log up to `index`, if it holds that index.
    pub fn chain_at(&self, index: u64) -> Option<u64> {
        let position = usize::try_from(index.checked_sub(1)?).ok()?;
        self.chain.get(position).copied()
    }

    /// Applies one persist: truncate, append, hard state (the order `Persist` prescribes).
    fn write(&mut self, persist: Persist) -> Result<(), Finding> {
        if let Some(from) = persist.truncate_from {
            self.truncate_from(from);
        }
        if let Some(first) = persist.entries.first() {
            // Entries may rewrite the tail without an explicit truncation (a batch that was
            // truncated and refilled in one step): what follows them is gone either way.
            self.truncate_from(first.index);
            if first.index != self.last_index() + 1 {
                return Err((
                    ViolationKind::UnpersistedLogChange,
                    format!(
                        "persist {} appends at index {} but the durable log ends at {}",
                        persist.id,
                        first.index,
                        self.last_index()
                    ),
                ));
            }
        }
        for entry in persist.entries {
            if entry.index != self.last_index() + 1 {
                return Err((
                    ViolationKind::UnpersistedLogChange,
                    format!(
                        "persist {} holds non-contiguous entry {}",
                        persist.id, entry.index
                    ),
                ));
            }
            let previous = self.chain.last().copied().unwrap_or(0);
            self.chain.push(chain_digest(previous, &entry));
            self.entries.push(entry);
        }
        if let Some(new) = persist.hard_state {
            let old = std::mem::replace(&mut self.hard_state, new);
            if !self.check_hard_state {
                return Ok(());
            }
            if new.term < old.term {
                return Err((
                    ViolationKind::TermOrVoteWentBack,
                    format!(
                        "persist {} writes term {} over durable term {}",
                        persist.id, new.term, old.term
                    ),
                ));
            }
            if new.term == old.term && old.vote != 0 && new.vote != old.vote {
                return Err((
                    ViolationKind::TermOrVoteWentBack,
                    format!(
                        "persist {} changes the durable vote in term {} from {} to {}",
                        persist.id, new.term, old.vote, new.vote
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Removes every durable entry at or after `from`.
    fn truncate_from(&mut self, from: u64) {
        let keep = usize::try_from(from.saturating_sub(1)).unwrap_or(usize::MAX);
        self.entries.truncate(keep);
        self.chain.truncate(keep);
    }
}

#[cfg(test)]
mod tests {
    use super::Disk;
    use crate::raft::{Entry, EntryKind, HardState, Persist};
    use crate::sim::report::ViolationKind;

    fn entries(from: u64, to: u64, term: u64) -> Vec<Entry> {
        (from..=to)
            .map(|index| Entry {
                index,
                term,
                kind: EntryKind::Noop,
                data: Vec::new(),
            })
            .collect()
    }

    fn persist(id: u64, truncate_from: Option<u64>, entries: Vec<Entry>) -> Persist {
        Persist {
            id,
            truncate_from,
            entries,
            hard_state: None,
            then_send: Vec::new(),
        }
    }

    #[test]
    fn persists_complete_in_order_and_a_crash_keeps_only_a_prefix() {
        let mut disk = Disk::new(true);
        assert_eq!(disk.submit(persist(1, None, entries(1, 3, 1)), 50), 50);
        assert_eq!(
            disk.submit(persist(2, Some(3), entries(3, 4, 2)), 10),
            50,
            "never before the one ahead of it"
        );
        disk.submit(persist(3, None, entries(5, 5, 2)), 60);
        let completed = disk.complete_upto(1).map(|done| done.map(|done| done.upto));
        assert_eq!(completed, Ok(Some(1)));
        assert_eq!(disk.last_index(), 3);
        assert_eq!(disk.crash(1), Ok(1));
        assert_eq!(disk.pending_len(), 0);
        let restored = disk.restored();
        let terms: Vec<u64> = restored.entries.iter().map(|entry| entry.term).collect();
        assert_eq!(
            terms,
            [1, 1, 2, 2],
            "persist 2 survived, persist 3 was lost"
        );
    }

    #[test]
    fn a_vote_changed_within_a_term_is_caught() {
        let mut disk = Disk::new(true);
        let vote = |id, vote| Persist {
            id,
            hard_state: Some(HardState {
                term: 3,
                vote,
                commit: 0,
            }),
            ..Persist::default()
        };
        disk.submit(vote(1, 2), 0);
        disk.submit(vote(2, 3), 0);
        let found = disk.complete_upto(2).map_err(|(kind, _)| kind);
        assert_eq!(found, Err(ViolationKind::TermOrVoteWentBack));
    }
}
