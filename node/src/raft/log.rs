//! The in-memory Raft log: entries after a base, the commit index and what has been handed out
//! for applying (§5.3, Figure 2 "Log Matching").
//!
//! The *base* is the last entry compacted away (§7): what precedes the first entry held. It is
//! not the snapshot's index: a node keeps `snapshot_trailing_entries` entries behind its newest
//! snapshot, so the base sits at or below the snapshot's index (`Raft::snapshot_index`), and
//! only an installed snapshot sets both to the same point.
//!
//! Invariants:
//! - `entries[k].index == base_index + 1 + k`: contiguous from the base.
//! - Terms never decrease along the log.
//! - `base_index <= applied_index <= commit_index <= last_index()`.
//! - Committed entries are never removed or changed (asserted in `truncate_from`).

use super::message::{Conflict, Entry};

/// The log of one node.
#[derive(Clone, Debug, Default)]
pub struct RaftLog {
    /// Index of the last entry compacted away (0: none). Entries start after it.
    base_index: u64,
    /// Term of that entry.
    base_term: u64,
    /// The entries after the base, contiguous.
    entries: Vec<Entry>,
    /// Highest index known committed.
    commit_index: u64,
    /// Highest index handed out to be applied.
    applied_index: u64,
}

impl RaftLog {
    /// A log holding `entries` after a base of (`base_index`, `base_term`).
    pub fn restore(base_index: u64, base_term: u64, entries: Vec<Entry>, commit: u64) -> Self {
        for (offset, entry) in entries.iter().enumerate() {
            assert_eq!(
                entry.index,
                base_index + 1 + offset as u64,
                "entries are contiguous"
            );
        }
        let mut log = RaftLog {
            base_index,
            base_term,
            entries,
            commit_index: base_index,
            applied_index: base_index,
        };
        // A recovered commit index can trail the log (it is written lazily) but never lead it.
        log.commit_index = commit.clamp(base_index, log.last_index());
        log
    }

    /// Index of the first entry held (the base + 1).
    pub fn first_index(&self) -> u64 {
        self.base_index + 1
    }

    /// Index of the last entry (the base when the log is empty).
    pub fn last_index(&self) -> u64 {
        self.base_index + self.entries.len() as u64
    }

    /// Term of the last entry (the base's when empty).
    pub fn last_term(&self) -> u64 {
        self.entries
            .last()
            .map_or(self.base_term, |entry| entry.term)
    }

    /// The base: (index, term) of the last entry compacted away ((0, 0): none).
    pub fn base(&self) -> (u64, u64) {
        (self.base_index, self.base_term)
    }

    /// Highest committed index.
    pub fn commit_index(&self) -> u64 {
        self.commit_index
    }

    /// Highest index handed out for applying.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// Term of the entry at `index`: known for the base and the entries held.
    pub fn term_at(&self, index: u64) -> Option<u64> {
        if index == self.base_index {
            return Some(self.base_term);
        }
        self.entry(index).map(|entry| entry.term)
    }

    /// The entry at `index`, if held.
    pub fn entry(&self, index: u64) -> Option<&Entry> {
        let offset = index.checked_sub(self.first_index())?;
        self.entries.get(usize::try_from(offset).ok()?)
    }

    /// True when the entry at `index` exists and has `term` (the AppendEntries consistency check).
    pub fn matches(&self, index: u64, term: u64) -> bool {
        self.term_at(index) == Some(term)
    }

    /// §5.4.1: a candidate's log is at least as up to date as ours.
    pub fn is_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// Entries from `from` on whose wire size fits in `max_bytes` (at least one, if any exist, so
    /// the caller must bound single entries beforehand).
    pub fn entries_from(&self, from: u64, max_bytes: usize) -> Vec<Entry> {
        let Some(offset) = from.checked_sub(self.first_index()) else {
            return Vec::new();
        };
        let Ok(offset) = usize::try_from(offset) else {
            return Vec::new();
        };
        let mut total = 0;
        let mut batch = Vec::new();
        for entry in self.entries.iter().skip(offset) {
            total += entry.wire_size();
            if total > max_bytes && !batch.is_empty() {
                break;
            }
            batch.push(entry.clone());
        }
        batch
    }

    /// Appends an entry at the end (a leader's own proposal).
    pub fn push(&mut self, entry: Entry) {
        assert_eq!(
            entry.index,
            self.last_index() + 1,
            "a leader appends at the end"
        );
        assert!(
            entry.term >= self.last_term(),
            "terms never decrease along the log"
        );
        self.entries.push(entry);
    }

    /// The follower's side of AppendEntries (§5.3): checks that the entry at `prev_index` has
    /// `prev_term`, then stores `entries`, removing a conflicting suffix. Returns the index up to
    /// which the log now matches the leader's and the index the log was truncated from (if it
    /// was), or the conflict that lets the leader skip back (fast backtracking).
    pub fn maybe_append(
        &mut self,
        prev_index: u64,
        prev_term: u64,
        entries: &[Entry],
    ) -> Result<(u64, Option<u64>), Conflict> {
        if prev_index < self.commit_index {
            // Committed entries match the leader's (Leader Completeness): skip what we have.
            let skip = usize::try_from(self.commit_index - prev_index).unwrap_or(usize::MAX);
            if skip >= entries.len() {
                return Ok((self.commit_index, None));
            }
            let prev = &entries[skip - 1];
            return self.maybe_append(prev.index, prev.term, &entries[skip..]);
        }
        if !self.matches(prev_index, prev_term) {
            return Err(self.conflict_at(prev_index));
        }
        let mut truncated = None;
        for (offset, entry) in entries.iter().enumerate() {
            // Peers are trusted (Raft tolerates crashes, not lies): a gap here is a bug, and
            // storing it would corrupt the log.
            assert_eq!(
                entry.index,
                prev_index + 1 + offset as u64,
                "AppendEntries carry entries contiguous from prev_index + 1"
            );
            match self.term_at(entry.index) {
                Some(term) if term == entry.term => continue,
                Some(_) => {
                    truncated = Some(entry.index);
                    self.truncate_from(entry.index);
                    self.entries.extend_from_slice(&entries[offset..]);
                }
                None => self.entries.extend_from_slice(&entries[offset..]),
            }
            break;
        }
        Ok((prev_index + entries.len() as u64, truncated))
    }

    /// What a follower tells the leader when the entry at `prev_index` does not match.
    fn conflict_at(&self, prev_index: u64) -> Conflict {
        match self.term_at(prev_index) {
            None => Conflict {
                term: None,
                index: self.last_index() + 1,
            },
            Some(term) => {
                let mut first = prev_index;
                while first > self.first_index().max(self.commit_index + 1)
                    && self.term_at(first - 1) == Some(term)
                {
                    first -= 1;
                }
                Conflict {
                    term: Some(term),
                    index: first,
                }
            }
        }
    }

    /// The leader's side of fast backtracking: where to probe next after `conflict` was
    /// returned for `rejected_prev_index`.
    pub fn next_after_conflict(&self, rejected_prev_index: u64, conflict: Conflict) -> u64 {
        let next = match conflict.term {
            None => conflict.index,
            Some(term) => match self.last_index_of_term(term, rejected_prev_index) {
                Some(last) => last + 1,
                None => conflict.index,
            },
        };
        next.min(rejected_prev_index).max(1)
    }

    /// The last index at or below `at_most` holding `term`, if any entry held there has it.
    fn last_index_of_term(&self, term: u64, at_most: u64) -> Option<u64> {
        let mut index = at_most.min(self.last_index());
        while index >= self.first_index() {
            let found = self.term_at(index)?;
            if found == term {
                return Some(index);
            }
            if found < term {
                return None;
            }
            index -= 1;
        }
        None
    }

    /// Removes every entry at or after `index`. Never touches committed entries.
    fn truncate_from(&mut self, index: u64) {
        assert!(
            index > self.commit_index,
            "committed entry {index} is never removed"
        );
        let keep = usize::try_from(index - self.first_index()).unwrap_or(usize::MAX);
        self.entries.truncate(keep);
    }

    /// Drops the entries up to `index` (a snapshot covers them): the base becomes (`index`, its
    /// term). Only applied entries are compacted, and the base never moves back.
    pub fn compact_to(&mut self, index: u64) {
        assert!(
            self.base_index <= index && index <= self.applied_index,
            "compaction to {index} outside base {} ..= applied {}",
            self.base_index,
            self.applied_index
        );
        let Some(term) = self.term_at(index) else {
            unreachable!("the base and every entry after it up to applied are held");
        };
        let drop = usize::try_from(index - self.base_index).unwrap_or(usize::MAX);
        self.entries.drain(..drop);
        self.base_index = index;
        self.base_term = term;
    }

    /// Installs a snapshot covering up to (`index`, `term`) (Figure 13, receiver rules 6 and 7):
    /// if the log holds that entry, the entries after it stay; otherwise the whole log goes.
    /// The snapshot is committed, and the state machine now holds it: commit and applied move
    /// up to `index`. Returns whether the entries after it were kept.
    pub fn install_snapshot(&mut self, index: u64, term: u64) -> bool {
        assert!(
            index > self.applied_index && index > self.base_index,
            "snapshot {index} is not past applied {} and base {}",
            self.applied_index,
            self.base_index
        );
        let keep = self.matches(index, term);
        if keep {
            let drop = usize::try_from(index - self.base_index).unwrap_or(usize::MAX);
            self.entries.drain(..drop);
        } else {
            self.entries.clear();
        }
        self.base_index = index;
        self.base_term = term;
        self.commit_index = self.commit_index.max(index);
        self.applied_index = index;
        keep
    }

    /// Raises the commit index (never lowers it; never past the last entry).
    pub fn commit_to(&mut self, index: u64) -> bool {
        let index = index.min(self.last_index());
        if index <= self.commit_index {
            return false;
        }
        self.commit_index = index;
        true
    }

    /// The committed entries not yet handed out for applying; marks them handed out.
    pub fn take_committed(&mut self) -> Vec<Entry> {
        if self.applied_index >= self.commit_index {
            return Vec::new();
        }
        let from = self.applied_index + 1;
        let count = usize::try_from(self.commit_index - self.applied_index).unwrap_or(usize::MAX);
        let start = usize::try_from(from - self.first_index()).unwrap_or(usize::MAX);
        let batch = self.entries[start..start + count].to_vec();
        self.applied_index = self.commit_index;
        batch
    }
}
