//! The work a replica hands to its storage, and the one rule for the order it is carried out in.
//!
//! A [`StorageOp`] is everything the world must make durable or change on disk for a replica:
//! the core's persists (Raft Figure 2, "updated on stable storage before responding to RPCs"),
//! the replica's own snapshot saves, and the core's compactions and snapshot installs (§7,
//! Figure 13). The runtime's WAL thread and the simulator's disk both take them in the order the
//! replica emitted them and cut them into [`Stage`]s with [`stages`], so both follow one rule:
//!
//! - **Persists group-commit.** Consecutive persists form one stage: written in order, made
//!   durable by one sync, and only then are their `then_send` messages sent and their newest id
//!   reported (`Input::Persisted`). A crash before the sync loses the messages with the write.
//! - **Persists first.** Any other operation is a stage of its own, carried out only once every
//!   persist queued before it is durable, sent and reported: a compaction must not drop entries a
//!   persist before it may still rewrite, and an install must not be overtaken by a truncation
//!   or append queued before it (the core asserts at `SnapshotInstalled` that every persist it
//!   issued before the install is reported durable).
//! - **One save at a time.** The replica starts a save only once the previous one is reported
//!   (`Replica::snapshot_saved`); the storage may write it in steps between later stages.
//! - **A save serialises on the storage side.** Its [`SnapshotData`] is usually a point-in-time
//!   copy of the state machine ([`StateMachine::snapshot_later`](crate::StateMachine::snapshot_later))
//!   that the storage turns into bytes when the save starts, so the consensus thread never
//!   spends a large state's serialisation between two heartbeats.

use std::collections::VecDeque;
use std::sync::Arc;

use balsa_wal::SnapshotMeta;

use crate::raft::{Action, Persist, PersistId};

/// A snapshot's bytes: already serialised, or a writer that serialises a state taken earlier.
pub struct SnapshotData(Serialised);

enum Serialised {
    Done(Arc<Vec<u8>>),
    Later(Box<dyn FnOnce() -> Vec<u8> + Send>),
}

impl SnapshotData {
    /// Bytes `serialise` produces when asked ([`SnapshotData::resolve`]); once.
    pub fn later(serialise: impl FnOnce() -> Vec<u8> + Send + 'static) -> SnapshotData {
        SnapshotData(Serialised::Later(Box::new(serialise)))
    }

    /// Serialises now if not yet done; the bytes.
    pub fn resolve(&mut self) -> &Arc<Vec<u8>> {
        let bytes = match std::mem::replace(&mut self.0, Serialised::Done(Arc::default())) {
            Serialised::Done(bytes) => bytes,
            Serialised::Later(serialise) => Arc::new(serialise()),
        };
        self.0 = Serialised::Done(bytes);
        match &self.0 {
            Serialised::Done(bytes) => bytes,
            Serialised::Later(_) => unreachable!("set to the bytes just above"),
        }
    }

    /// The bytes, serialised now if not yet done.
    pub fn into_bytes(self) -> Arc<Vec<u8>> {
        match self.0 {
            Serialised::Done(bytes) => bytes,
            Serialised::Later(serialise) => Arc::new(serialise()),
        }
    }

    /// The bytes if already serialised.
    pub fn serialised(&self) -> Option<&Arc<Vec<u8>>> {
        match &self.0 {
            Serialised::Done(bytes) => Some(bytes),
            Serialised::Later(_) => None,
        }
    }
}

impl std::fmt::Debug for SnapshotData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Serialised::Done(bytes) => write!(f, "SnapshotData({} bytes)", bytes.len()),
            Serialised::Later(_) => f.write_str("SnapshotData(not serialised yet)"),
        }
    }
}

/// What a replica asks of its storage.
#[derive(Debug)]
pub enum StorageOp {
    /// Make this durable, then send its `then_send` messages, then report it.
    Persist(Persist),
    /// Save this replica's snapshot of (`index`, `term`), then report
    /// `Replica::snapshot_saved`.
    SaveSnapshot {
        /// The last index it covers.
        index: u64,
        /// That entry's term.
        term: u64,
        /// The framed state machine, serialised when the save starts.
        data: SnapshotData,
    },
    /// Drop the stored entries wholly at or below `upto` (a saved snapshot covers them).
    Compact {
        /// The new log base.
        upto: u64,
    },
    /// A chunk of a leader's snapshot (offset 0: a new transfer).
    SnapshotChunk {
        /// The snapshot.
        meta: SnapshotMeta,
        /// Where the bytes go.
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Check and install the received snapshot (Figure 13's rules 6 and 7 on the log), then
    /// report `Replica::snapshot_installed`.
    InstallSnapshot {
        /// The snapshot.
        meta: SnapshotMeta,
        /// Its announced size.
        size: u64,
        /// Its announced CRC-32.
        crc: u32,
        /// Its bytes, for the state machine once installed.
        data: Arc<Vec<u8>>,
    },
}

impl StorageOp {
    /// The storage work `action` asks for, or the action back if it asks for none. The one
    /// place that decides which of the core's actions are storage's (the replica, the
    /// simulator and the test kit all route through it).
    pub fn from_action(action: Action) -> Result<StorageOp, Action> {
        match action {
            Action::Persist(persist) => Ok(StorageOp::Persist(persist)),
            Action::SnapshotChunk {
                index,
                term,
                offset,
                data,
                ..
            } => Ok(StorageOp::SnapshotChunk {
                meta: SnapshotMeta { index, term },
                offset,
                data,
            }),
            Action::InstallSnapshot {
                index,
                term,
                size,
                crc,
                data,
            } => Ok(StorageOp::InstallSnapshot {
                meta: SnapshotMeta { index, term },
                size,
                crc,
                data,
            }),
            Action::Compact { upto } => Ok(StorageOp::Compact { upto }),
            other => Err(other),
        }
    }
}

/// What storage reports back to the replica once it carried work out, in the order it did it.
#[derive(Debug)]
pub enum StorageDone {
    /// Every persist up to `upto` is durable, and its `then_send` messages were sent.
    Persisted {
        /// The newest durable persist.
        upto: PersistId,
    },
    /// The replica's snapshot up to `index` is durable.
    SnapshotSaved {
        /// The last index it covers.
        index: u64,
        /// Its bytes.
        data: Arc<Vec<u8>>,
    },
    /// A leader's snapshot is installed (Figure 13's rules applied to the log): the state
    /// machine restores from `data`.
    SnapshotInstalled {
        /// The last index it covers.
        index: u64,
        /// That entry's term.
        term: u64,
        /// Its bytes.
        data: Arc<Vec<u8>>,
    },
}

/// One step of storage work, in the order [`stages`] gives them.
#[derive(Debug)]
pub enum Stage {
    /// Write this persist (truncate, append, hard state); it is durable at the next `Sync`.
    Write(Persist),
    /// Sync what was written, then send the written persists' `then_send` messages in order,
    /// then report the last one's id: the end of a group commit.
    Sync,
    /// Carry out this operation (never a persist); every persist before it is already done.
    Other(StorageOp),
}

/// Cuts `ops`, in the order a replica emitted them, into the stages storage carries out one
/// after the other: each run of consecutive persists is one group commit (its writes, then one
/// `Sync`), every other operation a stage of its own after it. Allocates nothing.
pub fn stages(ops: impl IntoIterator<Item = StorageOp>) -> impl Iterator<Item = Stage> {
    let mut ops = ops.into_iter().peekable();
    let mut last_written: Option<PersistId> = None;
    std::iter::from_fn(move || {
        if last_written.is_some() && !matches!(ops.peek(), Some(StorageOp::Persist(_))) {
            last_written = None;
            return Some(Stage::Sync);
        }
        match ops.next()? {
            StorageOp::Persist(persist) => {
                assert!(
                    persist.id > last_written.unwrap_or(0),
                    "persists are queued in id order"
                );
                last_written = Some(persist.id);
                Some(Stage::Write(persist))
            }
            other => Some(Stage::Other(other)),
        }
    })
}

/// Storage work held for a storage model whose persists complete later (the simulator's disk,
/// the core's test kit): the same order as [`stages`], kept instead of carried out at once.
/// Persists wait in id order; any other operation waits behind the persists queued before it
/// and is released, in order, once they complete.
#[derive(Debug, Default)]
pub struct StorageQueue {
    /// Persists not yet durable, in id order.
    pending: VecDeque<Persist>,
    /// Other operations, each behind the newest persist pending when it was queued.
    waiting: VecDeque<(PersistId, StorageOp)>,
}

impl StorageQueue {
    /// Queues `op`. An operation other than a persist with no persist pending is due now: it
    /// comes back.
    pub fn push(&mut self, op: StorageOp) -> Option<StorageOp> {
        match op {
            StorageOp::Persist(persist) => {
                assert!(
                    persist.id > self.pending.back().map_or(0, |last| last.id),
                    "persists are queued in id order"
                );
                self.pending.push_back(persist);
                None
            }
            other => match self.pending.back() {
                Some(newest) => {
                    self.waiting.push_back((newest.id, other));
                    None
                }
                None => Some(other),
            },
        }
    }

    /// The persists not yet durable, in id order.
    pub fn pending(&self) -> &VecDeque<Persist> {
        &self.pending
    }

    /// The pending persists with ids up to `upto`, and the operations that waited for them,
    /// in the order storage carries them out (a `Sync` after each run of writes).
    pub fn complete_upto(&mut self, upto: PersistId) -> Vec<Stage> {
        let mut done = Vec::new();
        while self
            .pending
            .front()
            .is_some_and(|persist| persist.id <= upto)
        {
            let persist = self.pending.pop_front().expect("checked just above");
            let id = persist.id;
            done.push(Stage::Write(persist));
            let released = self.waiting.front().is_some_and(|(after, _)| *after <= id);
            let last = self.pending.front().is_none_or(|next| next.id > upto);
            if released || last {
                done.push(Stage::Sync);
            }
            while self.waiting.front().is_some_and(|(after, _)| *after <= id) {
                let (_, op) = self.waiting.pop_front().expect("checked just above");
                done.push(Stage::Other(op));
            }
        }
        done
    }

    /// A crash: everything queued is dropped; the persists come back (a storage model may let
    /// a prefix of them reach the disk).
    pub fn crash(&mut self) -> VecDeque<Persist> {
        self.waiting.clear();
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::{SnapshotData, Stage, StorageOp, StorageQueue, stages};
    use crate::raft::Persist;

    #[test]
    fn a_snapshot_is_serialised_once_when_first_asked_for() {
        let runs = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&runs);
        let mut data = SnapshotData::later(move || {
            counted.fetch_add(1, Ordering::Relaxed);
            b"state".to_vec()
        });
        assert_eq!(data.serialised(), None, "not before it is asked for");
        assert_eq!(runs.load(Ordering::Relaxed), 0);
        assert_eq!(data.resolve().as_slice(), b"state");
        assert_eq!(data.resolve().as_slice(), b"state");
        assert_eq!(data.into_bytes().as_slice(), b"state");
        assert_eq!(runs.load(Ordering::Relaxed), 1, "serialised once");
    }

    fn persist(id: u64) -> StorageOp {
        StorageOp::Persist(Persist {
            id,
            ..Persist::default()
        })
    }

    fn shape(stage: &Stage) -> String {
        match stage {
            Stage::Write(persist) => format!("w{}", persist.id),
            Stage::Sync => "sync".to_owned(),
            Stage::Other(StorageOp::Compact { upto }) => format!("c{upto}"),
            Stage::Other(other) => format!("{other:?}"),
        }
    }

    #[test]
    fn consecutive_persists_group_and_every_other_op_waits_for_the_persists_before_it() {
        let ops = vec![
            persist(1),
            persist(2),
            StorageOp::Compact { upto: 5 },
            StorageOp::Compact { upto: 6 },
            persist(3),
        ];
        let shapes: Vec<String> = stages(ops).map(|stage| shape(&stage)).collect();
        assert_eq!(shapes, ["w1", "w2", "sync", "c5", "c6", "w3", "sync"]);
    }

    #[test]
    fn a_queued_op_is_released_after_the_persists_before_it_in_stage_order() {
        let mut queue = StorageQueue::default();
        assert!(
            queue.push(StorageOp::Compact { upto: 1 }).is_some(),
            "nothing to wait for"
        );
        assert!(queue.push(persist(1)).is_none());
        assert!(queue.push(StorageOp::Compact { upto: 2 }).is_none());
        assert!(queue.push(persist(2)).is_none());
        assert!(queue.push(persist(3)).is_none());
        assert!(queue.push(StorageOp::Compact { upto: 3 }).is_none());
        let shapes: Vec<String> = queue.complete_upto(2).iter().map(shape).collect();
        assert_eq!(shapes, ["w1", "sync", "c2", "w2", "sync"]);
        let shapes: Vec<String> = queue.complete_upto(3).iter().map(shape).collect();
        assert_eq!(shapes, ["w3", "sync", "c3"]);
        assert!(queue.pending().is_empty());
    }

    #[test]
    #[should_panic(expected = "persists are queued in id order")]
    fn persists_out_of_order_are_refused() {
        let _ = stages(vec![persist(2), persist(1)]).count();
    }
}
