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
//! - A restart builds [`Restored`] from the durable state only: the snapshot file, and the log
//!   entries after it if the log agrees with it at its index (Figure 13's rules 6/7 again).
//! - **Snapshots.** A saved snapshot is durable at once (the runtime reports it only then). A
//!   received one is written chunk by chunk to a temporary area that a crash loses; installing
//!   it is one atomic step (a crash leaves the old state or the new one): the file, the log
//!   reset by rules 6/7, the commit index. Compaction drops the durable entries up to an index
//!   (never past the log's end).
//! - **Order.** Work other than persists (saves, chunks, installs, compactions) waits for every
//!   persist queued before it, as `crate::replica::storage::stages` orders it for the WAL
//!   thread: [`SimDisk::submit_other`] queues it, and [`SimDisk::complete_upto`] releases it once
//!   those persists are written. A crash loses what waits. The log's base (index, term, chain digest) is what precedes its
//!   first entry.
//!
//! Checked here, on every durable write: the durable term never goes down and the durable vote
//! never changes within a term ([`ViolationKind::TermOrVoteWentBack`]), and a persist never
//! leaves a gap in the durable log ([`ViolationKind::UnpersistedLogChange`]).

use std::sync::Arc;

use super::digest::chain_digest;
use super::report::ViolationKind;
use crate::raft::{Entry, HardState, Message, NodeId, Persist, PersistId, Restored};
use crate::replica::storage::{Stage, StorageOp, StorageQueue};

/// A broken property and what exactly broke it.
pub type Finding = (ViolationKind, String);

/// What a completion made durable.
#[derive(Debug, Default)]
pub struct DiskCompletion {
    /// The id of the last persist written.
    pub upto: PersistId,
    /// The `then_send` messages of every persist written, in order: now free to leave.
    pub then_send: Vec<(NodeId, Message)>,
    /// Storage work that waited for these persists, in order: now due (after `then_send` and
    /// the report, as the WAL thread runs a stage only after the one before it).
    pub released: Vec<StorageOp>,
}

/// A durable snapshot: the last (index, term) it covers, the chain digest of the committed log
/// up to there, and the state machine's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotFile {
    /// Its last index.
    pub index: u64,
    /// The term there.
    pub term: u64,
    /// The chain digest of the log up to `index`.
    pub chain: u64,
    /// The state machine.
    pub data: Arc<Vec<u8>>,
}

/// One node's storage.
#[derive(Debug, Default)]
pub struct SimDisk {
    /// The durable hard state.
    hard_state: HardState,
    /// (index, term, chain digest) just before the first durable entry ((0, 0, 0) at first).
    base: (u64, u64, u64),
    /// The durable log, contiguous after `base`.
    entries: Vec<Entry>,
    /// `chain[k]`: the chain digest of the durable log up to `entries[k]`.
    chain: Vec<u64>,
    /// The durable snapshot, if any.
    snapshot: Option<SnapshotFile>,
    /// The snapshot being received (a temporary file; a crash loses it).
    receiving: Vec<u8>,
    /// Persists issued and not yet durable, and the work waiting behind them, in the order
    /// the runtime's WAL thread carries them out (`crate::replica::storage`).
    queue: StorageQueue,
    /// When the newest pending persist completes; later ones complete no earlier.
    last_completion: u64,
    /// Whether to check that the durable hard state never goes back.
    check_hard_state: bool,
}

impl SimDisk {
    /// An empty disk; `check_hard_state` turns on the check of the durable term and vote.
    pub fn new(check_hard_state: bool) -> SimDisk {
        SimDisk {
            check_hard_state,
            ..SimDisk::default()
        }
    }

    /// Queues `persist`, due at `due`; returns when it will actually complete (no earlier than
    /// the persist before it).
    pub fn submit(&mut self, persist: Persist, due: u64) -> u64 {
        self.last_completion = self.last_completion.max(due);
        let due_now = self.queue.push(StorageOp::Persist(persist));
        assert!(
            due_now.is_none(),
            "a persist always waits for its completion"
        );
        self.last_completion
    }

    /// The id of the newest pending persist.
    pub fn newest_pending(&self) -> Option<PersistId> {
        self.queue.pending().back().map(|persist| persist.id)
    }

    /// Makes every pending persist with an id up to `upto` durable, in order, with the
    /// compactions that waited for them. Returns the id of the last one written, the messages
    /// they release and the other work now due (`None` if none was pending there).
    pub fn complete_upto(&mut self, upto: PersistId) -> Result<Option<DiskCompletion>, Finding> {
        let mut completed: Option<DiskCompletion> = None;
        for stage in self.queue.complete_upto(upto) {
            let done = completed.get_or_insert_with(DiskCompletion::default);
            match stage {
                Stage::Write(mut persist) => {
                    done.upto = persist.id;
                    done.then_send.append(&mut persist.then_send);
                    self.write(persist)?;
                }
                // The completion reports everything written at once.
                Stage::Sync => {}
                // In order between the writes, as the WAL thread runs it.
                Stage::Other(StorageOp::Compact { upto }) => self.compact(upto),
                Stage::Other(op) => done.released.push(op),
            }
        }
        Ok(completed)
    }

    /// The node crashed: the first `survivors` pending persists reach the disk anyway, the rest
    /// are lost. No `then_send` message of any of them leaves. Returns how many survived.
    /// Work waiting behind them dies with the node: a compaction is optional, a save or an
    /// install not begun is simply not there after the restart.
    pub fn crash(&mut self, survivors: usize) -> Result<usize, Finding> {
        let pending = self.queue.crash();
        let survivors = survivors.min(pending.len());
        self.last_completion = 0;
        self.receiving.clear();
        for mut persist in pending.into_iter().take(survivors) {
            persist.then_send.clear(); // the writer died before it could send them
            self.write(persist)?;
        }
        Ok(survivors)
    }

    /// Persists issued and not yet durable.
    pub fn pending_len(&self) -> usize {
        self.queue.pending().len()
    }

    /// What a restarted node gets back: the snapshot, and the log after it unless the log
    /// holds a different entry at the snapshot's index.
    pub fn restored(&self) -> Restored {
        let Some(snapshot) = &self.snapshot else {
            return Restored {
                hard_state: self.hard_state,
                snapshot: (self.base.0, self.base.1),
                entries: self.entries.clone(),
                snapshot_data: None,
            };
        };
        let agrees = self.chain_in_log(snapshot.index) == Some(snapshot.chain);
        let entries = if agrees {
            let skip = usize::try_from(snapshot.index - self.base.0).unwrap_or(usize::MAX);
            self.entries.iter().skip(skip).cloned().collect()
        } else {
            Vec::new()
        };
        Restored {
            hard_state: self.hard_state,
            snapshot: (snapshot.index, snapshot.term),
            entries,
            snapshot_data: Some(Arc::clone(&snapshot.data)),
        }
    }

    /// Recovery at a restart: a log that does not reach the snapshot's last entry, or holds a
    /// different one there, is reset to start after the snapshot (what it holds after it cannot
    /// follow it), so that the restarted node's appends continue it.
    pub fn recover(&mut self) {
        let Some(snapshot) = &self.snapshot else {
            return;
        };
        if self.chain_in_log(snapshot.index) != Some(snapshot.chain) {
            self.entries.clear();
            self.chain.clear();
            self.base = (snapshot.index, snapshot.term, snapshot.chain);
        }
    }

    /// Whether the durable snapshot covers `index`.
    pub fn snapshot_covers(&self, index: u64) -> bool {
        self.snapshot
            .as_ref()
            .is_some_and(|file| file.index >= index)
    }

    /// The durable snapshot.
    pub fn snapshot_file(&self) -> Option<&SnapshotFile> {
        self.snapshot.as_ref()
    }

    /// A snapshot the node saved (durable before the core hears of it). An older one is kept
    /// if it is newer.
    pub fn save_snapshot(&mut self, file: SnapshotFile) {
        if self
            .snapshot
            .as_ref()
            .is_none_or(|old| old.index < file.index)
        {
            self.snapshot = Some(file);
        }
    }

    /// Appends a received chunk to the temporary file (offset 0 starts a new one). Returns
    /// false if it does not continue the file.
    pub fn write_chunk(&mut self, offset: u64, data: &[u8]) -> bool {
        if offset == 0 {
            self.receiving.clear();
        }
        if offset != self.receiving.len() as u64 {
            return false;
        }
        self.receiving.extend_from_slice(data);
        true
    }

    /// The temporary file, if it holds `size` bytes with CRC `crc`.
    pub fn received(&self, size: u64, crc: u32) -> Option<Vec<u8>> {
        let complete = self.receiving.len() as u64 == size;
        (complete && crc32fast::hash(&self.receiving) == crc).then(|| self.receiving.clone())
    }

    /// Installs `file` in one atomic step: it becomes the snapshot, the log keeps what follows
    /// it only if it holds the snapshot's last entry (rules 6/7), the commit index rises to it.
    pub fn install(&mut self, file: SnapshotFile) {
        if self.chain_in_log(file.index) == Some(file.chain) {
            self.compact(file.index);
        } else {
            self.entries.clear();
            self.chain.clear();
            self.base = (file.index, file.term, file.chain);
        }
        self.hard_state.commit = self.hard_state.commit.max(file.index);
        self.receiving.clear();
        self.snapshot = Some(file);
    }

    /// Queues storage work other than a persist behind the persists pending now (the order
    /// of `crate::replica::storage::stages`); returns it if none is pending, to be carried out
    /// at once.
    pub fn submit_other(&mut self, op: StorageOp) -> Option<StorageOp> {
        assert!(
            !matches!(op, StorageOp::Persist(_)),
            "persists go to submit"
        );
        self.queue.push(op)
    }

    /// Drops the durable entries up to `upto` (or up to the log's end, if shorter).
    pub fn compact(&mut self, upto: u64) {
        let upto = upto.min(self.log_end());
        if upto <= self.base.0 {
            return;
        }
        let drop = usize::try_from(upto - self.base.0).unwrap_or(usize::MAX);
        let last = &self.entries[drop - 1];
        self.base = (last.index, last.term, self.chain[drop - 1]);
        self.entries.drain(..drop);
        self.chain.drain(..drop);
    }

    /// The last index of the durable log itself (its base when empty).
    fn log_end(&self) -> u64 {
        self.base.0 + self.entries.len() as u64
    }

    /// The chain digest the durable log (base included) holds at `index`.
    fn chain_in_log(&self, index: u64) -> Option<u64> {
        if index == self.base.0 {
            return Some(self.base.2);
        }
        let position = usize::try_from(index.checked_sub(self.base.0 + 1)?).ok()?;
        self.chain.get(position).copied()
    }

    /// The durable hard state.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// The last durable index, as a restart sees it (the snapshot's, if the log ends before).
    pub fn last_index(&self) -> u64 {
        let restored = self.restored();
        restored.snapshot.0 + restored.entries.len() as u64
    }

    /// The chain digest of the durable state up to `index`, if it holds that index: in the
    /// log, or as the snapshot's last index. (Below the snapshot's index and compacted out of
    /// the log: `None`, though the snapshot covers it; see [`SimDisk::snapshot_covers`].)
    pub fn chain_at(&self, index: u64) -> Option<u64> {
        match (self.chain_in_log(index), &self.snapshot) {
            (Some(chain), _) => Some(chain),
            (None, Some(snapshot)) if snapshot.index == index => Some(snapshot.chain),
            _ => None,
        }
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
            if first.index != self.log_end() + 1 {
                return Err((
                    ViolationKind::UnpersistedLogChange,
                    format!(
                        "persist {} appends at index {} but the durable log ends at {}",
                        persist.id,
                        first.index,
                        self.log_end()
                    ),
                ));
            }
        }
        for entry in persist.entries {
            if entry.index != self.log_end() + 1 {
                return Err((
                    ViolationKind::UnpersistedLogChange,
                    format!(
                        "persist {} holds non-contiguous entry {}",
                        persist.id, entry.index
                    ),
                ));
            }
            let previous = self.chain.last().copied().unwrap_or(self.base.2);
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
        let keep = usize::try_from(from.saturating_sub(self.base.0 + 1)).unwrap_or(usize::MAX);
        self.entries.truncate(keep);
        self.chain.truncate(keep);
    }
}

#[cfg(test)]
mod tests {
    use super::SimDisk;
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
        let mut disk = SimDisk::new(true);
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
        let mut disk = SimDisk::new(true);
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
        let found = disk.complete_upto(2).map(|_| ()).map_err(|(kind, _)| kind);
        assert_eq!(found, Err(ViolationKind::TermOrVoteWentBack));
    }
}
