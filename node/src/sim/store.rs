//! The state machine every simulated replica runs: the real key-value store
//! ([`crate::kv::KvStore`], with its session table, thesis §6.3), with a window for the checks.
//!
//! [`ObservedStore`] passes every call through to the store and records, for each command it
//! applies, the index, the command's `(client, seq)`, and digests of the data before and after
//! and of the whole state after. The driver takes those records after each step: the state
//! digests feed the state-machine-safety check (every replica's state after index `i` is the
//! same), and the data digests the session check: a `(client, seq)` that takes effect at index
//! `i` must change nothing when a retry of it is applied again at a later index
//! ([`ViolationKind::SessionTable`](super::ViolationKind::SessionTable)).
//!
//! The simulated clients write unique values as 8-byte keys and values ([`key_bytes`],
//! [`value_bytes`]).

use crate::kv::{Command, KvStore};
use crate::state_machine::{RestoreError, SnapshotWriter, StateMachine};

use super::digest::Hash64;

/// One command applied, as the checks see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppliedCommand {
    /// Its log index.
    pub index: u64,
    /// Its client and sequence number (0, 0 for bytes that are not a command).
    pub client_seq: (u64, u64),
    /// The digest of the data (keys and values only) before and after it.
    pub data_before: u64,
    /// See `data_before`.
    pub data_after: u64,
    /// The digest of the whole state after it (data, sessions, applied index).
    pub state_after: u64,
}

/// The real key-value store, observed. See the module documentation.
#[derive(Debug)]
pub struct ObservedStore {
    store: KvStore,
    /// Commands applied since the driver last took them.
    applied: Vec<AppliedCommand>,
    /// The planted bug `apply-retries-again`: every command is applied under a client id of its
    /// own (derived from its index, so every replica agrees), so the session table never
    /// recognises a retry.
    ignore_sessions: bool,
}

impl ObservedStore {
    /// An empty store; `ignore_sessions` plants the session bug.
    pub fn new(ignore_sessions: bool) -> ObservedStore {
        ObservedStore {
            store: KvStore::new(),
            applied: Vec::new(),
            ignore_sessions,
        }
    }

    /// The commands applied since the last call, in order.
    pub fn take_applied(&mut self) -> Vec<AppliedCommand> {
        std::mem::take(&mut self.applied)
    }

    /// The digest of the whole state.
    pub fn state_digest(&self) -> u64 {
        let mut hash = Hash64::default();
        hash.bytes(&self.store.snapshot());
        hash.finish()
    }

    fn data_digest(&self) -> u64 {
        let mut hash = Hash64::default();
        hash.u64(self.store.len() as u64);
        for (key, value) in self.store.iter() {
            hash.bytes(key);
            hash.bytes(value);
        }
        hash.finish()
    }
}

impl StateMachine for ObservedStore {
    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8> {
        let data_before = self.data_digest();
        let decoded = Command::decode(command).ok();
        let client_seq = decoded
            .as_ref()
            .map_or((0, 0), |command| (command.client_id, command.seq));
        let answer = match decoded {
            Some(mut command) if self.ignore_sessions && cfg!(feature = "planted-bugs") => {
                // Simulated client ids are small; the index in the high bits makes each unique.
                command.client_id |= index << 24;
                self.store.apply(index, &command.encode())
            }
            _ => self.store.apply(index, command),
        };
        self.applied.push(AppliedCommand {
            index,
            client_seq,
            data_before,
            data_after: self.data_digest(),
            state_after: self.state_digest(),
        });
        answer
    }

    fn query(&self, query: &[u8]) -> Vec<u8> {
        self.store.query(query)
    }

    fn snapshot(&self) -> Vec<u8> {
        self.store.snapshot()
    }

    fn snapshot_later(&self) -> SnapshotWriter {
        self.store.snapshot_later()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        self.store.restore(snapshot)
    }

    fn client_sessions(&self) -> Option<u64> {
        self.store.client_sessions()
    }
}

/// A simulated client's key as bytes.
pub fn key_bytes(key: u64) -> Vec<u8> {
    key.to_le_bytes().to_vec()
}

/// A simulated client's value as bytes.
pub fn value_bytes(value: u64) -> Vec<u8> {
    value.to_le_bytes().to_vec()
}

/// The value `bytes` holds, if they are one of [`value_bytes`].
pub fn value_from_bytes(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}
