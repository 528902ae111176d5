//! The WAL thread: makes the core's `Persist` actions durable, in order, with group commit.
//!
//! It takes every persist queued since its last turn, writes them all into the log, syncs once,
//! sends the messages the batch carries in `then_send` straight to the network (a follower's
//! acknowledgement, a vote: no hop back through the consensus thread), and reports the newest id
//! as durable (the core then releases the messages still held for earlier persists).
//! When idle it writes a snapshot being saved a step at a time, or zero-fills the next segment a
//! little at a time, so a roll never waits for it. Snapshot chunks, installs and compactions come
//! through the same queue (`snapshots.rs`).
//!
//! The order is the replica's rule (`crate::replica::storage`), which the simulator's disk
//! follows too: the thread cuts what is queued into [`stages`].
//!
//! It times each sync and each snapshot save, and counts the bytes written, into the node's
//! `StorageMetrics` (relaxed atomics: a clock read and an add per sync, beside an fdatasync).
//!
//! Invariants: operations take effect in the order they were queued, and persists before any
//! other operation are durable (synced, their messages sent, their ids reported) before it runs;
//! their `then_send` messages leave, and their ids are reported, only after the sync that covers
//! them returned (a storage error before it drops them unsent; a failed send is logged at most
//! once per peer per interval, `throttle.rs`); after any storage error it
//! reports the failure and stops (the WAL refuses further writes anyway): no retry-and-carry-on.

use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use balsa_net::{Destination, Outbox};
use balsa_wal::{HardState as WalHardState, Wal};

use super::snapshots::{Receiving, Saving};
use super::throttle::{self, Throttle, WARN_INTERVAL, repeated};
use super::wire::Wire;
use super::{Event, StartError, StorageError};
use crate::metrics::StorageMetrics;
use crate::raft::{Entry, EntryKind, HardState, Message, NodeId, Persist, PersistId};
use crate::replica::storage::{Stage, StorageDone, StorageOp, stages};

/// Bytes of the next segment zero-filled per idle turn.
const PREPARE_STEP: u64 = 1 << 20;

/// What the consensus thread sends the WAL thread.
#[derive(Debug)]
pub enum WalRequest {
    /// Storage work of the replica, carried out in the order of [`stages`].
    Work(StorageOp),
    /// Sync, close the log and stop.
    Shutdown,
}

/// Runs the WAL thread until shutdown or a storage error.
pub fn run(
    mut wal: Wal,
    ops: Receiver<WalRequest>,
    inbox: Sender<Event>,
    mut outbox: Outbox<Wire>,
    sync: bool,
    metrics: &StorageMetrics,
) {
    let result = serve(&mut wal, &ops, &inbox, &mut outbox, sync, metrics);
    match result {
        Ok(()) => {
            if let Err(error) = wal.close() {
                log::error!("closing the write-ahead log failed: {error}");
            }
        }
        Err(error) => {
            log::error!("storage failed: {error}");
            let _ = inbox.send(Event::StorageFailed(error));
        }
    }
}

/// The WAL thread's state between turns.
struct Writer<'a> {
    wal: &'a mut Wal,
    inbox: &'a Sender<Event>,
    outbox: &'a mut Outbox<Wire>,
    sync: bool,
    /// The newest persist written and not yet synced.
    unsynced: Option<PersistId>,
    /// The messages of the persists written since the last sync; they wait for it.
    then_send: Vec<(NodeId, Message)>,
    /// A roll may have used the prepared segment: prepare the next when idle.
    prepared: bool,
    saving: Option<Saving>,
    /// When the snapshot being saved started.
    saving_since: Option<Instant>,
    receiving: Option<Receiving>,
    /// Failed sends, logged at most once per peer per interval.
    send_failures: Throttle<NodeId>,
    metrics: &'a StorageMetrics,
}

impl Writer<'_> {
    /// Syncs what was written, sends the messages waiting for it, reports it durable. False if
    /// the consensus thread is gone.
    fn complete(&mut self) -> Result<bool, StorageError> {
        let Some(upto) = self.unsynced.take() else {
            return Ok(true);
        };
        let started = throttle::now();
        if self.sync {
            self.wal
                .sync()
                .map_err(StorageError::wal("syncing the log"))?;
        } else {
            self.wal
                .flush()
                .map_err(StorageError::wal("flushing the log"))?;
        }
        self.metrics.fsync.observe(started.elapsed());
        self.metrics.bytes_written.store(
            self.wal.stats().bytes_written,
            std::sync::atomic::Ordering::Relaxed,
        );
        for (to, msg) in self.then_send.drain(..) {
            if let Err(error) = self.outbox.send(Destination::Peer(to), &Wire::Raft(msg))
                && let Some(left_out) = self.send_failures.hit(to, throttle::now())
            {
                log::warn!("sending to node {to}: {error}{}", repeated(left_out));
            }
        }
        self.prepared = false;
        Ok(self
            .inbox
            .send(Event::Storage(StorageDone::Persisted { upto }))
            .is_ok())
    }

    /// Carries out one operation other than a persist, after the persists before it completed.
    fn apply(&mut self, op: StorageOp) -> Result<(), StorageError> {
        match op {
            StorageOp::Persist(_) => unreachable!("stages never hand a persist alone"),
            StorageOp::SaveSnapshot { index, term, data } => {
                // The consensus thread starts a save only once the last one is reported.
                assert!(self.saving.is_none(), "one snapshot save at a time");
                self.saving_since = Some(throttle::now());
                // A large state takes a while to serialise: here, not on the consensus thread,
                // which must keep its heartbeats going (`StateMachine::snapshot_later`).
                let saving = Saving::start(self.wal, index, term, data.into_bytes())
                    .map_err(StorageError::wal("saving a snapshot"))?;
                self.saving = Some(saving);
            }
            StorageOp::Compact { upto } => self
                .wal
                .compact_to(upto)
                .map_err(StorageError::wal("compacting the log"))?,
            StorageOp::SnapshotChunk { meta, offset, data } => {
                let current = self.receiving.take();
                self.receiving = Receiving::chunk(current, self.wal, meta, offset, &data)
                    .map_err(StorageError::wal("receiving a snapshot"))?;
            }
            StorageOp::InstallSnapshot {
                meta,
                size,
                crc,
                data,
            } => {
                let Some(receiving) = self.receiving.take() else {
                    return Err(StorageError::NoSnapshotReceived { announced: meta });
                };
                receiving.install(self.wal, meta, size, crc)?;
                let installed = StorageDone::SnapshotInstalled {
                    index: meta.index,
                    term: meta.term,
                    data,
                };
                let _ = self.inbox.send(Event::Storage(installed));
            }
        }
        Ok(())
    }

    /// Work for an idle moment: the next step of a snapshot being saved, else of preparing the
    /// next segment. False when there is none left.
    fn idle_step(&mut self) -> Result<bool, StorageError> {
        if let Some(saving) = self.saving.take() {
            let step = saving
                .step(self.wal)
                .map_err(StorageError::wal("saving a snapshot"))?;
            match step {
                Ok((index, data)) => {
                    if let Some(since) = self.saving_since.take() {
                        self.metrics.snapshot_save.observe(since.elapsed());
                    }
                    let _ = self
                        .inbox
                        .send(Event::Storage(StorageDone::SnapshotSaved { index, data }));
                }
                Err(unfinished) => self.saving = Some(unfinished),
            }
            return Ok(true);
        }
        if !self.prepared {
            self.prepared = self
                .wal
                .prepare_next_segment(PREPARE_STEP)
                .map_err(StorageError::wal("preparing the next segment"))?;
            return Ok(true);
        }
        Ok(false)
    }
}

fn serve(
    wal: &mut Wal,
    ops: &Receiver<WalRequest>,
    inbox: &Sender<Event>,
    outbox: &mut Outbox<Wire>,
    sync: bool,
    metrics: &StorageMetrics,
) -> Result<(), StorageError> {
    let mut writer = Writer {
        wal,
        inbox,
        outbox,
        sync,
        unsynced: None,
        then_send: Vec::new(),
        prepared: false,
        saving: None,
        saving_since: None,
        receiving: None,
        send_failures: Throttle::new(WARN_INTERVAL),
        metrics,
    };
    loop {
        let idle_work = writer.saving.is_some() || !writer.prepared;
        let first = if idle_work {
            match ops.try_recv() {
                Ok(request) => request,
                Err(crossbeam_channel::TryRecvError::Empty) => {
                    writer.idle_step()?;
                    continue;
                }
                Err(crossbeam_channel::TryRecvError::Disconnected) => return Ok(()),
            }
        } else {
            match ops.recv() {
                Ok(request) => request,
                Err(_) => return Ok(()),
            }
        };
        // Everything queued now (not what arrives while this turn writes: the sync would wait
        // behind it), in order: one group commit per run of persists.
        let mut shutdown = false;
        let queued = ops.len();
        let work = std::iter::once(first)
            .chain(ops.try_iter().take(queued))
            .map_while(|request| match request {
                WalRequest::Work(op) => Some(op),
                WalRequest::Shutdown => {
                    shutdown = true;
                    None
                }
            });
        for stage in stages(work) {
            match stage {
                Stage::Write(mut persist) => {
                    writer.unsynced = Some(persist.id);
                    writer.then_send.append(&mut persist.then_send);
                    write(writer.wal, persist).map_err(StorageError::wal("writing the log"))?;
                }
                Stage::Sync => {
                    if !writer.complete()? {
                        return Ok(()); // the consensus thread is gone: the node is stopping
                    }
                }
                Stage::Other(op) => writer.apply(op)?,
            }
        }
        if shutdown {
            return Ok(());
        }
    }
}

/// Writes one persist: truncate, append, hard state (the order `Persist` documents). Its
/// `then_send` is the caller's, sent after the sync.
fn write(wal: &mut Wal, persist: Persist) -> Result<(), balsa_wal::Error> {
    if let Some(from) = persist.truncate_from {
        wal.truncate_from(from)?;
    }
    let mut framed = Vec::new();
    for entry in &persist.entries {
        framed.clear();
        framed.push(kind_byte(entry.kind));
        framed.extend_from_slice(&entry.data);
        wal.append_entry(entry.index, entry.term, &framed)?;
    }
    if let Some(HardState { term, vote, commit }) = persist.hard_state {
        wal.set_hard_state(WalHardState { term, vote, commit })?;
    }
    Ok(())
}

fn kind_byte(kind: EntryKind) -> u8 {
    match kind {
        EntryKind::Normal => 0,
        EntryKind::Noop => 1,
        EntryKind::Config => 2,
    }
}

/// Turns a recovered WAL entry back into a Raft entry. The first byte is the kind.
pub fn entry_from_wal(entry: balsa_wal::Entry) -> Result<Entry, StartError> {
    let balsa_wal::Entry {
        index,
        term,
        mut data,
    } = entry;
    let kind = match data.first() {
        Some(0) => EntryKind::Normal,
        Some(1) => EntryKind::Noop,
        Some(2) => EntryKind::Config,
        Some(&kind) => return Err(StartError::UnknownEntryKind { index, kind }),
        None => return Err(StartError::EmptyEntry { index }),
    };
    data.remove(0);
    Ok(Entry {
        index,
        term,
        kind,
        data,
    })
}
