//! Client sessions: what makes a retried command take effect once (Raft thesis §6.3,
//! "Implementing linearizable semantics").
//!
//! A client numbers its commands; a retry keeps the number. For each client the table keeps the
//! highest sequence number applied and the answer it got. A command whose number is not above it
//! is not applied again: the same number gets the saved answer back, a lower one gets
//! [`Answer::StaleRequest`] (the client has moved on and no longer waits for it).
//!
//! The table runs inside `apply`, so everything it does is a deterministic function of the
//! commands applied: sessions are keyed and ordered by client id in `BTreeMap`s, and a session's
//! age is the log index of its last activity, not a clock.
//!
//! **Bounded.** The table holds at most `capacity` sessions (default
//! [`DEFAULT_SESSION_CAPACITY`]); memory is about `capacity` × (the largest saved answer, a
//! compare-and-swap mismatch carrying a value of up to `MAX_VALUE_LEN` bytes, plus ~100 bytes).
//! When a new client arrives at a full table, the session whose last activity has the lowest
//! index is evicted, the same one on every replica. As the thesis notes, the price is that an
//! evicted client's retry of a command that was applied is not recognised and is applied twice;
//! the capacity should comfortably exceed the clients active within a retry's lifetime. The
//! capacity is part of the state machine's definition: every replica must use the same.
//!
//! Invariants: `len() <= capacity`; `by_activity` holds exactly `(last_index, client_id)` for
//! every session.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroUsize;

use super::command::Answer;

/// How many client sessions a [`SessionTable`] keeps unless told otherwise.
// `NonZeroUsize::new` of a non-zero literal, evaluated at compile time: cannot fail.
pub const DEFAULT_SESSION_CAPACITY: NonZeroUsize = NonZeroUsize::new(10_000).unwrap();

/// One client's record in the [`SessionTable`]: its last command applied, the answer that
/// command got, and its last activity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// The highest sequence number applied for the client.
    last_seq: u64,
    /// The answer that command got.
    answer: Answer,
    /// The log index of the client's last command (applied, retried or stale).
    last_index: u64,
}

impl SessionRecord {
    /// A session whose command `last_seq` got `answer` and whose last activity was at
    /// `last_index`.
    pub fn new(last_seq: u64, answer: Answer, last_index: u64) -> Self {
        SessionRecord {
            last_seq,
            answer,
            last_index,
        }
    }

    /// The highest sequence number applied for the client.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The answer that command got.
    pub fn answer(&self) -> &Answer {
        &self.answer
    }

    /// The log index of the client's last activity.
    pub fn last_index(&self) -> u64 {
        self.last_index
    }
}

/// What to do with a command, according to its client's session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// A new command: apply it, then [`SessionTable::record`] its answer.
    Apply,
    /// A retry of the last command applied: answer this, apply nothing.
    Duplicate(Answer),
    /// An older command than the last applied: answer [`Answer::StaleRequest`], apply nothing.
    Stale {
        /// The client's latest applied sequence number.
        last_seq: u64,
    },
}

/// The bounded, deterministic table of client sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionTable {
    /// The most sessions kept.
    capacity: NonZeroUsize,
    /// Client id → session.
    sessions: BTreeMap<u64, SessionRecord>,
    /// `(last_index, client_id)` of every session: the eviction order, oldest first.
    by_activity: BTreeSet<(u64, u64)>,
}

impl Default for SessionTable {
    fn default() -> Self {
        SessionTable::new(DEFAULT_SESSION_CAPACITY)
    }
}

impl SessionTable {
    /// An empty table keeping at most `capacity` sessions.
    pub fn new(capacity: NonZeroUsize) -> Self {
        SessionTable {
            capacity,
            sessions: BTreeMap::new(),
            by_activity: BTreeSet::new(),
        }
    }

    /// The most sessions kept.
    pub fn capacity(&self) -> NonZeroUsize {
        self.capacity
    }

    /// How many sessions are kept.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True when no session is kept.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The session of `client_id`, if kept.
    pub fn get(&self, client_id: u64) -> Option<&SessionRecord> {
        self.sessions.get(&client_id)
    }

    /// Every session, by increasing client id.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &SessionRecord)> {
        self.sessions
            .iter()
            .map(|(&client_id, session)| (client_id, session))
    }

    /// Decides what to do with command `seq` of `client_id`, applied at log `index`. A retried or
    /// stale command counts as activity: its session becomes the youngest.
    pub fn admit(&mut self, client_id: u64, seq: u64, index: u64) -> Admission {
        let Some(session) = self.sessions.get_mut(&client_id) else {
            return Admission::Apply;
        };
        if seq > session.last_seq {
            return Admission::Apply;
        }
        let admission = if seq == session.last_seq {
            Admission::Duplicate(session.answer.clone())
        } else {
            Admission::Stale {
                last_seq: session.last_seq,
            }
        };
        Self::touch(&mut self.by_activity, client_id, session, index);
        admission
    }

    /// Records that command `seq` of `client_id`, applied at log `index`, got `answer`. Makes
    /// room for a new client first by evicting the session least recently active; returns the
    /// evicted client's id.
    pub fn record(&mut self, client_id: u64, seq: u64, index: u64, answer: Answer) -> Option<u64> {
        if let Some(session) = self.sessions.get_mut(&client_id) {
            session.last_seq = seq;
            session.answer = answer;
            Self::touch(&mut self.by_activity, client_id, session, index);
            return None;
        }
        let evicted = if self.sessions.len() >= self.capacity.get() {
            self.evict_oldest()
        } else {
            None
        };
        self.insert(client_id, SessionRecord::new(seq, answer, index));
        evicted
    }

    /// Adds `client_id`'s `session` as restored from a snapshot, replacing any it had, then
    /// evicts the least recently active sessions while there are more than the capacity (a
    /// snapshot taken with a larger capacity).
    pub(crate) fn restore(&mut self, client_id: u64, session: SessionRecord) {
        if let Some(old) = self.sessions.remove(&client_id) {
            self.by_activity.remove(&(old.last_index, client_id));
        }
        self.insert(client_id, session);
        while self.sessions.len() > self.capacity.get() {
            self.evict_oldest();
        }
    }

    fn insert(&mut self, client_id: u64, session: SessionRecord) {
        self.by_activity.insert((session.last_index, client_id));
        self.sessions.insert(client_id, session);
    }

    /// Removes the session whose last activity has the lowest index (ties, which one log cannot
    /// produce, go to the lowest client id). Returns its client.
    fn evict_oldest(&mut self) -> Option<u64> {
        let (_, client_id) = self.by_activity.pop_first()?;
        self.sessions.remove(&client_id);
        Some(client_id)
    }

    /// Moves `session`'s last activity to `index`, keeping `by_activity` in step.
    fn touch(
        by_activity: &mut BTreeSet<(u64, u64)>,
        client_id: u64,
        session: &mut SessionRecord,
        index: u64,
    ) {
        by_activity.remove(&(session.last_index, client_id));
        session.last_index = index;
        by_activity.insert((index, client_id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(capacity: usize) -> SessionTable {
        SessionTable::new(NonZeroUsize::new(capacity).expect("tests use a non-zero capacity"))
    }

    #[test]
    fn new_seq_applies_same_seq_replays_lower_seq_is_stale() {
        let mut sessions = table(4);
        assert_eq!(sessions.admit(1, 1, 10), Admission::Apply);
        sessions.record(1, 1, 10, Answer::Ok);
        assert_eq!(sessions.admit(1, 1, 11), Admission::Duplicate(Answer::Ok));
        assert_eq!(sessions.admit(1, 2, 12), Admission::Apply);
        sessions.record(1, 2, 12, Answer::CasMismatch { current: None });
        assert_eq!(
            sessions.admit(1, 2, 13),
            Admission::Duplicate(Answer::CasMismatch { current: None })
        );
        assert_eq!(sessions.admit(1, 1, 14), Admission::Stale { last_seq: 2 });
        assert_eq!(sessions.get(1).map(SessionRecord::last_index), Some(14));
    }

    #[test]
    fn a_full_table_evicts_the_least_recently_active() {
        let mut sessions = table(2);
        assert_eq!(sessions.record(1, 1, 1, Answer::Ok), None);
        assert_eq!(sessions.record(2, 1, 2, Answer::Ok), None);
        // Client 1's retry makes it the youngest, so client 2 goes first.
        assert_eq!(sessions.admit(1, 1, 3), Admission::Duplicate(Answer::Ok));
        assert_eq!(sessions.record(3, 1, 4, Answer::Ok), Some(2));
        assert_eq!(sessions.len(), 2);
        assert!(sessions.get(2).is_none());
        // The evicted client is a stranger again: its retry would be applied.
        assert_eq!(sessions.admit(2, 1, 5), Admission::Apply);
        assert_eq!(sessions.record(4, 1, 6, Answer::Ok), Some(1));
        assert_eq!(
            sessions.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            [3, 4]
        );
    }

    #[test]
    fn restoring_more_than_the_capacity_keeps_the_most_recent() {
        let mut sessions = table(2);
        for (client_id, index) in [(5, 30), (6, 10), (7, 20)] {
            sessions.restore(client_id, SessionRecord::new(1, Answer::Ok, index));
        }
        assert_eq!(
            sessions.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            [5, 7]
        );
        assert_eq!(sessions.by_activity.len(), 2);
    }
}
