//! The embedding API's state machine: what a user plugs into a node so that Raft replicates it
//! (Raft §5 "replicated state machines", §7 snapshots; thesis §6 for the client interaction).
//!
//! The node applies every committed command, in log order, to the state machine of every
//! replica. Replicas stay identical only if the state machine keeps the contract below; the node
//! cannot check it, so it is the implementer's to keep.
//!
//! **Determinism.** `apply` must be a deterministic function of the current state, the index and
//! the command bytes alone, identical on every replica, build and platform: no clocks, random
//! numbers, environment, thread scheduling, `HashMap` iteration order, or anything read from
//! outside. Its answer is sent to the client, and the client may get it from any replica.
//!
//! **Snapshots.** `restore(&snapshot())` must give a state that answers every later `apply` and
//! `query` exactly as the state it was taken from would have: everything `apply` depends on
//! (including client sessions, if the machine keeps them) belongs in the snapshot.
//!
//! **Where a snapshot is serialised.** The node takes a snapshot on its consensus thread, which
//! must also keep sending heartbeats: a leader that stops for longer than an election timeout
//! loses its followers (measured: a 200 MB key-value state took long enough to serialise that
//! every snapshot of a 16 KiB-value load cost a leader change). So the node asks for
//! [`StateMachine::snapshot_later`], a point-in-time copy that the storage thread serialises. Its
//! default serialises at once with `snapshot`; a machine whose state is large overrides it with
//! a copy that is cheap to take (the key-value store shares its keys and values).

use std::fmt;

/// Serialises a state taken earlier (see [`StateMachine::snapshot_later`]) by appending it to
/// the buffer it is given. Runs once, on the node's storage thread.
pub type SnapshotWriter = Box<dyn FnOnce(&mut Vec<u8>) + Send>;

/// A replicated state machine, driven by the node's consensus thread.
///
/// A node calls `apply` once for each committed command, in increasing index order; indexes can
/// skip (entries that carry no command, such as a new leader's no-op, are not applied). After a
/// `restore`, application resumes after the snapshot's index.
pub trait StateMachine: Send + 'static {
    /// Applies a committed command (in log order, exactly once per index on this replica) and
    /// returns the answer for the client.
    ///
    /// Must be deterministic (see the module doc): every replica applies the same commands to the
    /// same state and must reach the same state and answer. It must not fail for any input: a
    /// command it cannot make sense of is answered with an error the client understands, and
    /// still leaves every replica in the same state.
    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8>;

    /// Answers a read-only query against the current state.
    fn query(&self, query: &[u8]) -> Vec<u8>;

    /// Serialises the whole state.
    fn snapshot(&self) -> Vec<u8>;

    /// The state as it is now, to be serialised later, on another thread: the writer must
    /// append exactly the bytes `snapshot` returns now, whatever `apply` does meanwhile. Called
    /// on the consensus thread, so it should be cheap (a copy of shared, immutable parts, say);
    /// the default calls `snapshot` at once and copies the bytes when the writer runs.
    fn snapshot_later(&self) -> SnapshotWriter {
        let bytes = self.snapshot();
        Box::new(move |out: &mut Vec<u8>| out.extend_from_slice(&bytes))
    }

    /// Replaces the whole state with a snapshot's.
    ///
    /// On error the state must be left as it was: the node treats a snapshot it cannot restore
    /// as damage and stops rather than run with a half-replaced state.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError>;

    /// The client sessions this state machine keeps to apply a retried request once, for the
    /// node's metrics; `None` (the default) for one that keeps none.
    fn client_sessions(&self) -> Option<u64> {
        None
    }
}

/// A snapshot could not be restored: its bytes are damaged, from an incompatible version, or
/// describe a state this machine cannot hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreError {
    /// What is wrong, for a human (with offsets or sizes where they help).
    message: String,
}

impl RestoreError {
    /// A restore error saying `message`.
    pub fn new(message: impl Into<String>) -> Self {
        RestoreError {
            message: message.into(),
        }
    }

    /// What is wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot restore snapshot: {}", self.message)
    }
}

impl std::error::Error for RestoreError {}
