//! The WAL thread's share of snapshots (Raft §7, Figure 13): saving this node's own snapshot
//! in steps between write batches, receiving a leader's snapshot chunk by chunk into a temporary
//! file, and installing it.
//!
//! Saving: the consensus thread serialises the state machine (the only time the commit path
//! waits for a snapshot) and hands the bytes over; this thread writes them [`SAVE_STEP`] bytes at
//! a time when no persist is queued, syncing the file every [`SAVE_SYNC_EVERY`] bytes so that the
//! final sync is short, then publishes the file and reports `SnapshotSaved`.
//!
//! Installing (`Action::InstallSnapshot`), in an order where a crash at any step leaves the old
//! state or the new one:
//! 1. the received file must hold exactly `size` bytes with CRC `crc`, or the node stops (the
//!    chunks arrive in order over checked datagrams: a mismatch is a bug, never installed);
//! 2. Figure 13 rule 7: if the log holds a different term at `index`, cut the log from `index`
//!    and sync — a crash here leaves the old snapshot and a log without its uncommitted,
//!    conflicting suffix (nothing there was committed: it disagrees with a committed entry);
//! 3. publish the snapshot (temp file synced, renamed, directory synced) — from here a restart
//!    starts from it (the WAL reopens a log that ends below it as continuing after it);
//! 4. reset the log to continue after `index` if it ended below, raise the stored commit index to
//!    `index` (term and vote unchanged), sync, drop the segments it covers;
//! 5. read the published file back and hand it to the consensus thread, which restores the state
//!    machine and reports `SnapshotInstalled` to the core.
//!
//! Rule 6 (the log holds `index` with the snapshot's term) keeps the entries after `index`.

use std::sync::Arc;

use balsa_wal::{HardState, SnapshotMeta, SnapshotWriter, Wal};

/// Bytes of a snapshot being saved written per idle turn.
pub const SAVE_STEP: usize = 1 << 20;
/// A snapshot being saved is synced after this many bytes, so the final sync is short.
pub const SAVE_SYNC_EVERY: u64 = 8 << 20;

/// What a save step leads to: the published snapshot's index and data, or the save to go on.
pub type SaveProgress = Result<(u64, Arc<Vec<u8>>), Saving>;

/// This node's snapshot being written.
pub struct Saving {
    writer: SnapshotWriter,
    data: Arc<Vec<u8>>,
    written: usize,
    unsynced: u64,
}

impl Saving {
    /// Starts saving `data` as the snapshot of (`index`, `term`).
    pub fn start(
        wal: &mut Wal,
        index: u64,
        term: u64,
        data: Arc<Vec<u8>>,
    ) -> Result<Saving, balsa_wal::Error> {
        let writer = wal.begin_snapshot(SnapshotMeta { index, term })?;
        Ok(Saving {
            writer,
            data,
            written: 0,
            unsynced: 0,
        })
    }

    /// Gives the save up (a newer snapshot replaces it): removes its temporary file.
    pub fn abandon(self) -> Result<(), balsa_wal::Error> {
        self.writer.abandon()
    }

    /// Writes the next step. Once everything is written, publishes the snapshot and returns its
    /// index and data.
    pub fn step(mut self, wal: &mut Wal) -> Result<SaveProgress, balsa_wal::Error> {
        let end = self.data.len().min(self.written + SAVE_STEP);
        self.writer.write(&self.data[self.written..end])?;
        self.unsynced += (end - self.written) as u64;
        self.written = end;
        if self.written < self.data.len() {
            if self.unsynced >= SAVE_SYNC_EVERY {
                self.writer.sync()?;
                self.unsynced = 0;
            }
            return Ok(Err(self));
        }
        let index = self.writer.meta().index;
        wal.finish_snapshot(self.writer)?;
        Ok(Ok((index, self.data)))
    }
}

/// A leader's snapshot being received.
pub struct Receiving {
    writer: SnapshotWriter,
}

impl Receiving {
    /// Takes chunk `data` at `offset` of the snapshot (`index`, `term`): offset 0 starts a new
    /// temporary file (abandoning `current`); a chunk that does not continue `current` is
    /// dropped (the core sends them in order, so only a bug gets here).
    pub fn chunk(
        current: Option<Receiving>,
        wal: &mut Wal,
        meta: SnapshotMeta,
        offset: u64,
        data: &[u8],
    ) -> Result<Option<Receiving>, balsa_wal::Error> {
        let mut receiving = match current {
            Some(receiving) if offset != 0 => receiving,
            other => {
                if let Some(old) = other {
                    old.writer.abandon()?;
                }
                if offset != 0 {
                    log::warn!("dropped snapshot chunk at {offset}: no transfer in progress");
                    return Ok(None);
                }
                Receiving {
                    writer: wal.begin_snapshot(meta)?,
                }
            }
        };
        if receiving.writer.meta() != meta || receiving.writer.written().0 != offset {
            log::warn!(
                "dropped snapshot chunk {meta:?} at {offset}: receiving {:?} at {}",
                receiving.writer.meta(),
                receiving.writer.written().0
            );
            return Ok(Some(receiving));
        }
        receiving.writer.write(data)?;
        Ok(Some(receiving))
    }

    /// Installs the received snapshot (the steps of the module doc); returns its data for the
    /// state machine.
    pub fn install(
        self,
        wal: &mut Wal,
        meta: SnapshotMeta,
        size: u64,
        crc: u32,
    ) -> Result<Arc<Vec<u8>>, InstallError> {
        let written = self.writer.written();
        if self.writer.meta() != meta || written != (size, crc) {
            return Err(InstallError::Mismatch(format!(
                "received snapshot {:?} holds {} bytes with CRC {:#010x}; the leader announced \
                 {meta:?} of {size} bytes with CRC {crc:#010x}",
                self.writer.meta(),
                written.0,
                written.1
            )));
        }
        let index = meta.index;
        if wal.term_at(index).is_some_and(|term| term != meta.term) {
            wal.truncate_from(index)?;
            wal.sync()?;
        }
        wal.finish_snapshot(self.writer)?;
        if wal.next_index() <= index {
            wal.truncate_from(index + 1)?;
        }
        let hard_state = wal.hard_state();
        if hard_state.commit < index {
            wal.set_hard_state(HardState {
                commit: index,
                ..hard_state
            })?;
        }
        wal.sync()?;
        wal.compact_to(index)?;
        let (_, data) = wal.load_snapshot()?.ok_or_else(|| {
            InstallError::Mismatch("the snapshot just published is not there".into())
        })?;
        Ok(Arc::new(data))
    }
}

/// Why an install failed.
#[derive(Debug)]
pub enum InstallError {
    /// The log failed.
    Storage(balsa_wal::Error),
    /// What arrived is not what the leader announced.
    Mismatch(String),
}

impl From<balsa_wal::Error> for InstallError {
    fn from(error: balsa_wal::Error) -> Self {
        InstallError::Storage(error)
    }
}

impl std::fmt::Display for InstallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InstallError::Storage(error) => write!(f, "installing a snapshot: {error}"),
            InstallError::Mismatch(reason) => write!(f, "refusing to install a snapshot: {reason}"),
        }
    }
}
