//! The WAL thread: makes the core's `Persist` actions durable, in order, with group commit.
//!
//! It takes every persist queued since its last turn, writes them all into the log, syncs once,
//! sends the messages the batch carries in `then_send` straight to the network (a follower's
//! acknowledgement, a vote: no hop back through the consensus thread), and reports the newest id
//! as durable (the core then releases the messages still held for earlier persists).
//! When idle it zero-fills the next segment a little at a time, so a roll never waits for it.
//!
//! Invariants: persists are applied in id order; their `then_send` messages leave, and their ids
//! are reported, only after the sync that covers them returned (a storage error before it drops
//! them unsent); after any storage error it reports the failure and stops (the WAL refuses
//! further writes anyway): no retry-and-carry-on.

use crossbeam_channel::{Receiver, Sender};

use balsa_net::{Destination, Outbox};
use balsa_wal::{HardState as WalHardState, Wal};

use super::Event;
use super::wire::Wire;
use crate::raft::{Entry, EntryKind, HardState, Message, NodeId, Persist};

/// Bytes of the next segment zero-filled per idle turn.
const PREPARE_STEP: u64 = 1 << 20;

/// What the consensus thread asks of the WAL thread.
#[derive(Debug)]
pub enum StorageOp {
    /// Make this durable, then send its `then_send` messages.
    Persist(Persist),
    /// Sync, close the log and stop.
    Shutdown,
}

/// Runs the WAL thread until shutdown or a storage error.
pub fn run(
    mut wal: Wal,
    ops: Receiver<StorageOp>,
    inbox: Sender<Event>,
    mut outbox: Outbox<Wire>,
    sync: bool,
) {
    let result = serve(&mut wal, &ops, &inbox, &mut outbox, sync);
    match result {
        Ok(()) => {
            if let Err(error) = wal.close() {
                log::error!("closing the write-ahead log failed: {error}");
            }
        }
        Err(error) => {
            log::error!("storage failed: {error}");
            let _ = inbox.send(Event::StorageFailed(error.to_string()));
        }
    }
}

fn serve(
    wal: &mut Wal,
    ops: &Receiver<StorageOp>,
    inbox: &Sender<Event>,
    outbox: &mut Outbox<Wire>,
    sync: bool,
) -> Result<(), balsa_wal::Error> {
    let mut prepared = false;
    // The messages of the batch being written; they wait for its sync.
    let mut then_send: Vec<(NodeId, Message)> = Vec::new();
    loop {
        let first = if prepared {
            match ops.recv() {
                Ok(op) => op,
                Err(_) => return Ok(()),
            }
        } else {
            match ops.try_recv() {
                Ok(op) => op,
                Err(crossbeam_channel::TryRecvError::Empty) => {
                    prepared = wal.prepare_next_segment(PREPARE_STEP)?;
                    continue;
                }
                Err(crossbeam_channel::TryRecvError::Disconnected) => return Ok(()),
            }
        };
        let mut newest = None;
        let mut stop = false;
        for op in std::iter::once(first).chain(ops.try_iter()) {
            match op {
                StorageOp::Persist(mut persist) => {
                    newest = Some(persist.id);
                    then_send.append(&mut persist.then_send);
                    write(wal, persist)?;
                }
                StorageOp::Shutdown => stop = true,
            }
        }
        if let Some(upto) = newest {
            if sync {
                wal.sync()?;
            } else {
                wal.flush()?;
            }
            for (to, msg) in then_send.drain(..) {
                if let Err(error) = outbox.send(Destination::Peer(to), &Wire::Raft(msg)) {
                    log::warn!("sending to node {to}: {error}");
                }
            }
            if inbox.send(Event::Persisted(upto)).is_err() {
                return Ok(()); // the consensus thread is gone: the node is stopping
            }
            // A roll may have used the prepared segment; prepare the next when idle.
            prepared = false;
        }
        if stop {
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
    }
}

/// Turns a recovered WAL entry back into a Raft entry. The first byte is the kind.
pub fn entry_from_wal(entry: balsa_wal::Entry) -> Result<Entry, String> {
    let balsa_wal::Entry {
        index,
        term,
        mut data,
    } = entry;
    let kind = match data.first() {
        Some(0) => EntryKind::Normal,
        Some(1) => EntryKind::Noop,
        Some(other) => return Err(format!("entry {index} has unknown kind {other}")),
        None => return Err(format!("entry {index} is empty")),
    };
    data.remove(0);
    Ok(Entry {
        index,
        term,
        kind,
        data,
    })
}
