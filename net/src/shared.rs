//! What the net thread shares with the [`Transport`](crate::Transport) handle and every
//! [`Outbox`](crate::Outbox): the peer table, the counters, the faults, the way in to the net
//! thread (outbound channel and waker) and the spare buffers it hands back.

use std::collections::HashMap;
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
    /// Which key each address last sealed to this node under (only while a ring has a
    /// previous key).
    pub(crate) key_users: KeyUsers,
}

/// Addresses remembered per key ring at most; beyond it, an address is sent to as if never
/// heard from (see [`KeyUsers`]).
pub(crate) const MAX_KEY_USERS: usize = 4096;

/// Which key of a ring each address last sealed to this node under, so that it is sent to under
/// a key it holds: a node or client that has not rotated yet can still read what it is sent, and
/// one that has is sent to under the new key. Consulted and updated only while the ring has a
/// previous key (a rotation is under way), so it costs nothing otherwise.
///
/// An address never heard from is sent to under the current key, except a client being
/// answered: a follower forwards a client's write to the leader, and whichever node leads when
/// the write is applied answers the client directly, maybe never having heard from it. Under the
/// current key alone, a client still on the previous key could not read that answer, and one
/// that reaches the cluster through a follower could never complete a write until it rotated.
/// Such an answer is sealed under both keys, in two datagrams, and the client opens the one it
/// can (the other is dropped as any datagram it cannot open).
#[derive(Debug, Default)]
pub(crate) struct KeyUsers {
    peer: Mutex<HashMap<SocketAddr, KeySlot>>,
    client: Mutex<HashMap<SocketAddr, KeySlot>>,
}

/// The keys a datagram to one address is sealed under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slots {
    /// That key only.
    One(KeySlot),
    /// Both keys of the ring, one datagram each: for a client not heard from.
    Both,
}

impl Slots {
    /// Each key, in the order its datagram is sent (the previous key's first).
    pub(crate) fn each(self) -> impl Iterator<Item = KeySlot> {
        let (first, second) = match self {
            Slots::One(slot) => (slot, None),
            Slots::Both => (KeySlot::Previous, Some(KeySlot::Current)),
        };
        std::iter::once(first).chain(second)
    }
}

impl KeyUsers {
    fn map(&self, kind: Kind) -> &Mutex<HashMap<SocketAddr, KeySlot>> {
        match kind {
            Kind::Peer => &self.peer,
            Kind::Request | Kind::Response => &self.client,
        }
    }

    /// Records that a datagram of `kind` from `source` opened under `slot`.
    pub(crate) fn record(&self, kind: Kind, source: SocketAddr, slot: KeySlot) {
        let source = canonical(source);
        let mut users = self
            .map(kind)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if users.len() < MAX_KEY_USERS || users.contains_key(&source) {
            users.insert(source, slot);
        }
    }

    /// The keys to seal a datagram of `kind` to `to` under.
    pub(crate) fn slots_for(&self, kind: Kind, to: SocketAddr) -> Slots {
        let users = self
            .map(kind)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match users.get(&canonical(to)) {
            Some(&slot) => Slots::One(slot),
            None if kind == Kind::Response => Slots::Both,
            None => Slots::One(KeySlot::Current),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn an_address_is_sent_to_under_the_key_it_last_used() {
        let users = KeyUsers::default();
        users.record(Kind::Peer, addr(1), KeySlot::Previous);
        users.record(Kind::Request, addr(2), KeySlot::Previous);
        users.record(Kind::Request, addr(3), KeySlot::Previous);
        users.record(Kind::Request, addr(3), KeySlot::Current);
        assert_eq!(
            users.slots_for(Kind::Peer, addr(1)),
            Slots::One(KeySlot::Previous)
        );
        assert_eq!(
            users.slots_for(Kind::Response, addr(2)),
            Slots::One(KeySlot::Previous)
        );
        assert_eq!(
            users.slots_for(Kind::Response, addr(3)),
            Slots::One(KeySlot::Current)
        );
        // The rings are apart: a client's key says nothing of a peer at the same address.
        assert_eq!(
            users.slots_for(Kind::Peer, addr(2)),
            Slots::One(KeySlot::Current)
        );
    }

    #[test]
    fn a_client_never_heard_from_is_answered_under_both_keys_a_peer_under_the_current_one() {
        let users = KeyUsers::default();
        assert_eq!(users.slots_for(Kind::Response, addr(1)), Slots::Both);
        assert_eq!(
            Slots::Both.each().collect::<Vec<_>>(),
            [KeySlot::Previous, KeySlot::Current]
        );
        assert_eq!(
            users.slots_for(Kind::Peer, addr(1)),
            Slots::One(KeySlot::Current)
        );
        assert_eq!(
            users.slots_for(Kind::Request, addr(1)),
            Slots::One(KeySlot::Current)
        );
    }

    #[test]
    fn beyond_the_bound_a_new_address_is_not_remembered_and_a_known_one_still_is() {
        let users = KeyUsers::default();
        for port in 0..MAX_KEY_USERS {
            users.record(
                Kind::Request,
                addr(u16::try_from(port).expect("4096 ports")),
                KeySlot::Previous,
            );
        }
        let past = addr(u16::try_from(MAX_KEY_USERS).expect("4096 fits"));
        users.record(Kind::Request, past, KeySlot::Previous);
        assert_eq!(users.slots_for(Kind::Response, past), Slots::Both);
        users.record(Kind::Request, addr(0), KeySlot::Current);
        assert_eq!(
            users.slots_for(Kind::Response, addr(0)),
            Slots::One(KeySlot::Current)
        );
    }
}
