//! What the net thread shares with the [`Transport`](crate::Transport) handle and every
//! [`Outbox`](crate::Outbox): the peer table, the counters, the faults, the way in to the net
//! thread (outbound channel and waker) and the spare buffers it hands back.

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crossbeam_channel::{Receiver, Sender};

use crate::counters::Counters;
use crate::envelope::Kind;
use crate::faults::Faults;
use crate::keys::KeySlot;
use crate::outbox::Datagram;
use crate::peers::PeerTable;

/// Spare send buffers kept for reuse; more are dropped (each may be as large as the limit).
pub(crate) const SPARE_BUFFERS: usize = 64;

#[derive(Debug)]
pub(crate) struct Shared {
    /// The socket's address (kept here: the socket itself belongs to the net thread).
    pub(crate) local_addr: SocketAddr,
    pub(crate) peers: PeerTable,
    pub(crate) counters: Arc<Counters>,
    pub(crate) faults: Faults,
    /// Encoded datagrams for the net thread to send; bounded by `Config::outbound_capacity`,
    /// and never waited on (`try_send`): memory cannot grow without bound, nor a sender block.
    pub(crate) outbound: Sender<Datagram>,
    pub(crate) outbound_capacity: usize,
    /// Buffers of sent datagrams, handed back by the net thread for the next one.
    pub(crate) spare_buffers: Receiver<Vec<u8>>,
    pub(crate) waker: mio::Waker,
    /// Set by whoever wakes the net thread, cleared by the net thread before it drains the
    /// outbound channel: while set, a wake-up is on its way, so a sender need not make another
    /// (a wake is a system call; posting many datagrams costs one).
    pub(crate) wake_pending: AtomicBool,
    /// Set once: the net thread sends what is queued and exits.
    pub(crate) stopping: AtomicBool,
    /// Who last sealed to this node under a previous key (only while a ring has one).
    pub(crate) previous_key_users: PreviousKeyUsers,
}

/// Addresses remembered per key ring at most; beyond it a sender under the previous key is
/// answered under the current one (and cannot read the answer until it rotates).
pub(crate) const MAX_PREVIOUS_KEY_USERS: usize = 4096;

/// The addresses whose last datagram opened under the previous key of a ring: they are
/// answered under that key, so that a node or client that has not rotated yet can still read
/// what it is sent. Consulted and updated only while the ring has a previous key (a rotation is
/// under way), so it costs nothing otherwise.
#[derive(Debug, Default)]
pub(crate) struct PreviousKeyUsers {
    peer: Mutex<HashSet<SocketAddr>>,
    client: Mutex<HashSet<SocketAddr>>,
}

impl PreviousKeyUsers {
    fn set(&self, kind: Kind) -> &Mutex<HashSet<SocketAddr>> {
        match kind {
            Kind::Peer => &self.peer,
            Kind::Request | Kind::Response => &self.client,
        }
    }

    /// Records that a datagram of `kind` from `source` opened under `slot`.
    pub(crate) fn record(&self, kind: Kind, source: SocketAddr, slot: KeySlot) {
        let source = canonical(source);
        let mut users = self
            .set(kind)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match slot {
            KeySlot::Previous if users.len() < MAX_PREVIOUS_KEY_USERS => {
                users.insert(source);
            }
            KeySlot::Previous => {}
            KeySlot::Current => {
                users.remove(&source);
            }
        }
    }

    /// The key to seal a datagram of `kind` to `to` under.
    pub(crate) fn slot_for(&self, kind: Kind, to: SocketAddr) -> KeySlot {
        let users = self
            .set(kind)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if users.contains(&canonical(to)) {
            KeySlot::Previous
        } else {
            KeySlot::Current
        }
    }
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

impl Shared {
    /// Makes sure the net thread looks at the outbound channel after this call: wakes it unless
    /// a wake-up is already on its way.
    ///
    /// Why one flag is enough: a sender queues, then swaps the flag to true. If the swap finds
    /// it already set, the wake-up that set it has not been handled: the net thread will take
    /// that wake-up, swap the flag back to false and only then drain the channel. Both sides
    /// swap (read-modify-write, `SeqCst`), so the net thread's swap reads this sender's write or
    /// a later one and synchronises with it: the datagram queued before is visible to the drain.
    pub(crate) fn wake(&self) -> io::Result<()> {
        if self.wake_pending.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.waker.wake()
    }
}
