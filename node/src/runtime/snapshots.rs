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
//!    `index` (term and vote unchanged), sync;
//! 5. drop the segments the snapshot covers;
//! 6. tell the consensus thread, which restores the state machine from the bytes the core
//!    assembled (the file's, checked in step 1) and reports `SnapshotInstalled` to the core.
//!
//! Rule 6 (the log holds `index` with the snapshot's term) keeps the entries after `index`.

use std::sync::Arc;

use balsa_wal::{HardState, SnapshotMeta, SnapshotWriter, Wal};

use super::StorageError;

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

    /// Installs the received snapshot (steps 1–5 of the module doc).
    pub fn install(
        self,
        wal: &mut Wal,
        meta: SnapshotMeta,
        size: u64,
        crc: u32,
    ) -> Result<(), StorageError> {
        // Every step goes on, so the install either completes or fails.
        self.install_stepwise(wal, meta, size, crc, &mut |_| true)
            .map(|_| ())
    }

    /// [`install`](Self::install), asking `go_on(step)` before each step of the module doc that
    /// changes the disk (2: the rule 7 cut, 3: publishing, 4: the reset and the commit, 5:
    /// compaction); a false answer stops there, as a crash would (the tests' door into every
    /// crash point), and says where.
    fn install_stepwise(
        self,
        wal: &mut Wal,
        meta: SnapshotMeta,
        size: u64,
        crc: u32,
        go_on: &mut dyn FnMut(u8) -> bool,
    ) -> Result<Stepped, StorageError> {
        let failed = StorageError::wal("installing a snapshot");
        let written = self.writer.written();
        if self.writer.meta() != meta || written != (size, crc) {
            return Err(StorageError::SnapshotMismatch {
                received: self.writer.meta(),
                received_bytes: written.0,
                received_crc: written.1,
                announced: meta,
                announced_bytes: size,
                announced_crc: crc,
            });
        }
        let index = meta.index;
        if !go_on(2) {
            return Ok(Stepped::StoppedBefore(2));
        }
        if wal.term_at(index).is_some_and(|term| term != meta.term) {
            wal.truncate_from(index).map_err(failed)?;
            wal.sync().map_err(failed)?;
        }
        if !go_on(3) {
            return Ok(Stepped::StoppedBefore(3));
        }
        wal.finish_snapshot(self.writer).map_err(failed)?;
        if !go_on(4) {
            return Ok(Stepped::StoppedBefore(4));
        }
        if wal.next_index() <= index {
            wal.truncate_from(index + 1).map_err(failed)?;
        }
        let hard_state = wal.hard_state();
        if hard_state.commit < index {
            wal.set_hard_state(HardState {
                commit: index,
                ..hard_state
            })
            .map_err(failed)?;
        }
        wal.sync().map_err(failed)?;
        if !go_on(5) {
            return Ok(Stepped::StoppedBefore(5));
        }
        wal.compact_to(index).map_err(failed)?;
        Ok(Stepped::Installed)
    }
}

/// How far [`Receiving::install_stepwise`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stepped {
    /// Every step: the snapshot is installed.
    Installed,
    /// `go_on` said no before this step, as a crash there would.
    StoppedBefore(u8),
}

#[cfg(test)]
mod tests {
    //! A crash at every step of an install, on a real WAL: reopening finds the old state (at
    //! most without an uncommitted suffix that conflicts with the snapshot) or the new one, never
    //! the new snapshot followed by entries that disagree with it.

    use super::*;
    use balsa_wal::{Entry, Options, Recovered};

    const OLD: SnapshotMeta = SnapshotMeta { index: 40, term: 1 };
    const NEW: SnapshotMeta = SnapshotMeta {
        index: 100,
        term: 2,
    };
    const NEW_STATE: &[u8] = b"the state as of entry 100";

    /// A log of entries 1..=`last` whose terms `term_of` gives, commit 50, an old snapshot at 40.
    fn follower(dir: &std::path::Path, last: u64, term_of: fn(u64) -> u64) -> Wal {
        let (mut wal, _) = Wal::open(dir, Options::default()).expect("open");
        let entries: Vec<Entry> = (1..=last)
            .map(|index| Entry {
                index,
                term: term_of(index),
                data: vec![0, (index % 251) as u8],
            })
            .collect();
        wal.append(&entries).expect("append");
        wal.set_hard_state(HardState {
            term: 2,
            vote: 1,
            commit: 50,
        })
        .expect("hard state");
        wal.sync().expect("sync");
        wal.save_snapshot(OLD, b"the state as of entry 40")
            .expect("old snapshot");
        wal
    }

    /// Installs `NEW` on `wal`, crashing before step `crash_at` of the module doc (2–5; 6: no
    /// crash), and reopens.
    fn install_and_reopen(dir: &std::path::Path, mut wal: Wal, crash_at: u8) -> (Wal, Recovered) {
        let mut receiving = None;
        for (offset, chunk) in [(0_u64, &NEW_STATE[..10]), (10, &NEW_STATE[10..])] {
            receiving = Receiving::chunk(receiving, &mut wal, NEW, offset, chunk).expect("chunk");
        }
        let receiving = receiving.expect("a transfer in progress");
        let crc = crc32fast::hash(NEW_STATE);
        let size = NEW_STATE.len() as u64;
        let result =
            receiving.install_stepwise(&mut wal, NEW, size, crc, &mut |step| step < crash_at);
        let expected = if crash_at > 5 {
            Stepped::Installed
        } else {
            Stepped::StoppedBefore(crash_at)
        };
        assert_eq!(result, Ok(expected), "crash before step {crash_at}");
        drop(wal); // the crash (or, past step 4, just a restart)
        Wal::open(dir, Options::default()).expect("reopen after the crash")
    }

    fn indexes(recovered: &Recovered) -> Vec<u64> {
        recovered.entries.iter().map(|entry| entry.index).collect()
    }

    /// Rule 7: the follower holds entry 100 in term 1, the snapshot says term 2.
    #[test]
    fn a_conflicting_log_is_never_kept_after_the_new_snapshot() {
        for crash_at in 2..=6 {
            let dir = tempfile::tempdir().expect("temp dir");
            let wal = follower(dir.path(), 120, |_| 1);
            let (wal, recovered) = install_and_reopen(dir.path(), wal, crash_at);
            if recovered.snapshot == Some(NEW) {
                assert!(crash_at >= 4, "published at step 3");
                assert!(indexes(&recovered).is_empty(), "crash at {crash_at}");
                assert_eq!(wal.next_index(), 101, "crash at {crash_at}");
                let (_, data) = wal.load_snapshot().expect("load").expect("a snapshot");
                assert_eq!(data, NEW_STATE);
            } else {
                assert_eq!(recovered.snapshot, Some(OLD), "crash at {crash_at}");
                let held = indexes(&recovered);
                let expected_last = if crash_at >= 3 { 99 } else { 120 };
                assert_eq!(
                    held,
                    (41..=expected_last).collect::<Vec<_>>(),
                    "crash at {crash_at}"
                );
            }
        }
    }

    /// Rule 6: the follower holds entry 100 in the snapshot's term; what follows it stays.
    #[test]
    fn a_matching_suffix_survives_a_crash_at_every_step() {
        for crash_at in 2..=6 {
            let dir = tempfile::tempdir().expect("temp dir");
            let wal = follower(dir.path(), 110, |index| if index < 90 { 1 } else { 2 });
            let (_, recovered) = install_and_reopen(dir.path(), wal, crash_at);
            let held = indexes(&recovered);
            if recovered.snapshot == Some(NEW) {
                assert_eq!(held, (101..=110).collect::<Vec<_>>(), "crash at {crash_at}");
            } else {
                assert_eq!(recovered.snapshot, Some(OLD));
                assert_eq!(held, (41..=110).collect::<Vec<_>>(), "crash at {crash_at}");
            }
        }
    }

    /// A follower far behind (its log ends at 60): after publishing, the log continues at 101.
    #[test]
    fn a_short_log_continues_after_the_snapshot_whatever_the_crash() {
        for crash_at in 2..=6 {
            let dir = tempfile::tempdir().expect("temp dir");
            let wal = follower(dir.path(), 60, |_| 1);
            let (mut wal, recovered) = install_and_reopen(dir.path(), wal, crash_at);
            if recovered.snapshot == Some(NEW) {
                assert!(indexes(&recovered).is_empty());
                assert_eq!(wal.next_index(), 101, "crash at {crash_at}");
                wal.append(&[Entry {
                    index: 101,
                    term: 2,
                    data: vec![0],
                }])
                .expect("the next entry follows the snapshot");
            } else {
                assert_eq!(indexes(&recovered), (41..=60).collect::<Vec<_>>());
            }
        }
    }
}
