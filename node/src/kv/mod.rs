//! The replicated key-value service's state machine: put, delete (one key, counted, or a prefix in
//! bounded batches) and compare-and-swap through the log, get and paged range reads from one
//! replica, client sessions so that a retried write takes effect once (Raft thesis §6.3), and
//! snapshots of the whole state (§7).
//!
//! Files: `command.rs` (the commands, queries and answers and their encoding), `range.rs` (key
//! ranges and the paging rule), `session.rs` (the bounded session table), `snapshot.rs` (the
//! snapshot encoding), `codec.rs` (the byte-level reader and writer and [`DecodeError`]).
//!
//! Invariants:
//! - Deterministic: the state after `apply` depends only on the state and the command; data and
//!   sessions live in `BTreeMap`s, so iteration, snapshots and eviction follow key order and log
//!   indexes, never hashing or clocks.
//! - `applied_index` only grows: each `apply` has a higher index than the last (asserted).
//! - Every key and value held is within [`MAX_KEY_LEN`] and [`MAX_VALUE_LEN`], so every snapshot
//!   taken can be restored.
//! - A command that is refused (malformed, oversized) changes nothing but `applied_index`.
//! - Bounded work per command and query: a prefix delete removes at most [`MAX_DELETE_BATCH`]
//!   keys, a scan page holds at most its limit and about [`MAX_PAGE_BYTES`] bytes.

mod codec;
mod command;
mod range;
mod session;
mod snapshot;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::ops::Bound;
use std::sync::Arc;

pub use self::codec::{DecodeError, DecodeErrorKind, LimitExceeded};
pub use self::command::{
    Answer, Command, FORMAT_VERSION, MAX_DELETE_BATCH, MAX_KEY_LEN, MAX_PAGE_BYTES, MAX_REASON_LEN,
    MAX_VALUE_LEN, MAX_VALUE_SIZE, Op, Pair, Query, thousands,
};
pub use self::range::{KeyRange, MAX_BOUND_LEN, prefix_end};
pub use self::session::{Admission, DEFAULT_SESSION_CAPACITY, SessionRecord, SessionTable};
use crate::state_machine::{RestoreError, SnapshotWriter, StateMachine};

/// The store's data: key → value, both shared and immutable (see [`KvStore`]'s `data`).
type Data = BTreeMap<Arc<[u8]>, Arc<[u8]>>;

/// The key-value state machine one replica applies committed commands to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvStore {
    /// Key → value. Both are shared and never changed in place (a write inserts new ones), so
    /// a clone of the store costs a pointer copy per pair, not a copy of the data: what lets
    /// [`StateMachine::snapshot_later`] take a point-in-time copy on the consensus thread and
    /// serialise it on the storage thread.
    data: Data,
    /// The clients' sessions.
    sessions: SessionTable,
    /// The index of the last command applied (0: none).
    applied_index: u64,
}

impl Default for KvStore {
    fn default() -> Self {
        KvStore::new()
    }
}

impl KvStore {
    /// An empty store keeping [`DEFAULT_SESSION_CAPACITY`] client sessions.
    pub fn new() -> Self {
        KvStore::with_session_capacity(DEFAULT_SESSION_CAPACITY)
    }

    /// An empty store keeping at most `capacity` client sessions. Every replica must use the
    /// same capacity: eviction is part of what `apply` does.
    pub fn with_session_capacity(capacity: NonZeroUsize) -> Self {
        KvStore {
            data: BTreeMap::new(),
            sessions: SessionTable::new(capacity),
            applied_index: 0,
        }
    }

    /// The value of `key` on this replica, without going through the leader: a stale read (it
    /// may miss writes committed but not yet applied here).
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.data.get(key).map(|value| &**value)
    }

    /// Every key and its value, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.data.iter().map(|(key, value)| (&**key, &**value))
    }

    /// The pairs of `range`, in key order (nothing for an empty or inverted range).
    pub fn scan<'a>(&'a self, range: &'a KeyRange) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        // `BTreeMap::range` panics on an inverted range: an empty one is never asked for.
        let bounds = (!range.is_empty()).then(|| {
            let end = match &range.end {
                Some(end) => Bound::Excluded(end.as_slice()),
                None => Bound::Unbounded,
            };
            (Bound::Included(range.start.as_slice()), end)
        });
        bounds
            .into_iter()
            .flat_map(|bounds| self.data.range::<[u8], _>(bounds))
            .map(|(key, value)| (&**key, &**value))
    }

    /// One page of `range` (see `range.rs`): the pairs in key order, at most `limit` of them and
    /// no more than fit an answer of `max_bytes` (at most [`MAX_PAGE_BYTES`]) — but at least one
    /// if `limit` is not 0 and the range holds one; and whether the range holds keys after them.
    pub fn page(&self, range: &KeyRange, limit: u64, max_bytes: u64) -> Answer {
        let budget = max_bytes.min(MAX_PAGE_BYTES);
        let mut used = command::PAGE_OVERHEAD;
        let mut pairs: Vec<Pair> = Vec::new();
        let mut rest = self.scan(range).peekable();
        while let Some(&(key, value)) = rest.peek() {
            let len = command::pair_len(key, value);
            let full = pairs.len() as u64 >= limit
                || (!pairs.is_empty() && used.saturating_add(len) > budget);
            if full {
                break;
            }
            used = used.saturating_add(len);
            pairs.push((key.to_vec(), value.to_vec()));
            rest.next();
        }
        let more = rest.peek().is_some();
        Answer::Page { pairs, more }
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The index of the last command applied (0: none).
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The client sessions.
    pub fn sessions(&self) -> &SessionTable {
        &self.sessions
    }

    /// Applies `command`, committed at log `index`: once per (client, seq), as the session table
    /// decides. A command over the size limits is refused with [`Answer::Rejected`].
    ///
    /// # Panics
    /// If `index` is not above the last index applied: the node applies each index once, in
    /// order, and a second application could change the state differently from other replicas.
    pub fn apply_command(&mut self, index: u64, command: &Command) -> Answer {
        self.advance_to(index);
        if let Err(limit) = command.check_limits() {
            return Answer::rejected(limit);
        }
        match self.sessions.admit(command.client_id, command.seq, index) {
            Admission::Duplicate(answer) => answer,
            Admission::Stale { last_seq } => Answer::StaleRequest { last_seq },
            Admission::Apply => {
                let answer = self.execute(&command.op);
                self.sessions
                    .record(command.client_id, command.seq, index, answer.clone());
                answer
            }
        }
    }

    /// Answers `query` from this replica's state.
    pub fn answer_query(&self, query: &Query) -> Answer {
        match query {
            Query::Get { key } => Answer::Value(self.get(key).map(<[u8]>::to_vec)),
            Query::Scan {
                range,
                limit,
                max_bytes,
            } => self.page(range, *limit, *max_bytes),
        }
    }

    /// Records that `index` is applied, checking it comes after the last.
    fn advance_to(&mut self, index: u64) {
        assert!(
            index > self.applied_index,
            "apply at index {index} after index {}: each index is applied once, in order",
            self.applied_index
        );
        self.applied_index = index;
    }

    /// Carries out `op` on the data (its sizes already checked).
    fn execute(&mut self, op: &Op) -> Answer {
        match op {
            Op::Put { key, value } => {
                self.data
                    .insert(Arc::from(key.as_slice()), Arc::from(value.as_slice()));
                Answer::Ok
            }
            Op::Delete { key } => {
                self.data.remove(key.as_slice());
                Answer::Ok
            }
            Op::DeleteCounted { key } => Answer::Deleted {
                count: u64::from(self.data.remove(key.as_slice()).is_some()),
                more: false,
            },
            Op::DeletePrefix { prefix, max_keys } => self.delete_prefix(prefix, *max_keys),
            Op::Cas { key, expected, new } => {
                let current = self.get(key);
                if current == expected.as_deref() {
                    self.data
                        .insert(Arc::from(key.as_slice()), Arc::from(new.as_slice()));
                    Answer::Ok
                } else {
                    Answer::CasMismatch {
                        current: current.map(<[u8]>::to_vec),
                    }
                }
            }
        }
    }
}

impl KvStore {
    /// Removes the first `max_keys` keys (at most [`MAX_DELETE_BATCH`]) starting with `prefix`.
    fn delete_prefix(&mut self, prefix: &[u8], max_keys: u64) -> Answer {
        let range = KeyRange::prefix(prefix);
        let batch = usize::try_from(max_keys)
            .unwrap_or(MAX_DELETE_BATCH)
            .min(MAX_DELETE_BATCH);
        let doomed: Vec<Vec<u8>> = self
            .scan(&range)
            .take(batch)
            .map(|(key, _)| key.to_vec())
            .collect();
        for key in &doomed {
            self.data.remove(key.as_slice());
        }
        let more = self.scan(&range).next().is_some();
        Answer::Deleted {
            count: doomed.len() as u64,
            more,
        }
    }
}

impl StateMachine for KvStore {
    /// Decodes a [`Command`] and applies it; bytes that are not one are answered with
    /// [`Answer::Rejected`] and change nothing else. Returns the encoded [`Answer`].
    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8> {
        let answer = match Command::decode(command) {
            Ok(command) => self.apply_command(index, &command),
            Err(error) => {
                self.advance_to(index);
                Answer::rejected(error)
            }
        };
        answer.encode()
    }

    /// Decodes a [`Query`] and answers it (encoded [`Answer`]).
    fn query(&self, query: &[u8]) -> Vec<u8> {
        match Query::decode(query) {
            Ok(query) => self.answer_query(&query),
            Err(error) => Answer::rejected(error),
        }
        .encode()
    }

    fn client_sessions(&self) -> Option<u64> {
        Some(self.sessions.len() as u64)
    }

    /// The data, the sessions and the applied index (layout in `snapshot.rs`).
    fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        snapshot::encode_into(self, &mut out);
        out
    }

    /// A clone of the store (shared keys and values: a pointer copy per pair, see `data`),
    /// encoded when the writer runs.
    fn snapshot_later(&self) -> SnapshotWriter {
        let copy = self.clone();
        Box::new(move |out: &mut Vec<u8>| snapshot::encode_into(&copy, out))
    }

    /// Replaces the state with the snapshot's, keeping this store's session capacity. On error
    /// the state is unchanged.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let restored = snapshot::decode(snapshot, self.sessions.capacity())
            .map_err(|error| RestoreError::new(error.to_string()))?;
        *self = restored;
        Ok(())
    }
}
