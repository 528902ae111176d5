//! The peer table: node id → address, shared by the net thread (which checks senders against it)
//! and every [`Outbox`](crate::Outbox) (which resolves destinations through it), changeable at run
//! time.
//!
//! Addresses are stored and compared in canonical form (an IPv4-mapped IPv6 address as IPv4),
//! so a socket bound to `[::]` still recognises a peer configured as `127.0.0.1`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};

use crate::DropReason;

/// A cheap-to-clone handle on one shared table.
#[derive(Clone, Debug, Default)]
pub(crate) struct PeerTable {
    // Poisoning is ignored: no code panics while holding the lock, and every write is a single
    // insert or remove, so the map is always whole.
    table: Arc<RwLock<HashMap<u64, SocketAddr>>>,
}

impl PeerTable {
    pub(crate) fn get(&self, id: u64) -> Option<SocketAddr> {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        table.get(&id).copied()
    }

    /// Sets `id`'s address; returns the one it replaces.
    pub(crate) fn set(&self, id: u64, addr: SocketAddr) -> Option<SocketAddr> {
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        table.insert(id, canonical(addr))
    }

    pub(crate) fn remove(&self, id: u64) -> Option<SocketAddr> {
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        table.remove(&id)
    }

    /// Every entry, sorted by id.
    pub(crate) fn entries(&self) -> Vec<(u64, SocketAddr)> {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        let mut entries: Vec<_> = table.iter().map(|(id, addr)| (*id, *addr)).collect();
        entries.sort_unstable();
        entries
    }

    /// Whether a peer message claiming to come from `id` may be believed, having come from
    /// `source`.
    pub(crate) fn check_sender(&self, id: u64, source: SocketAddr) -> Result<(), DropReason> {
        match self.get(id) {
            None => Err(DropReason::UnknownPeer),
            Some(addr) if addr == canonical(source) => Ok(()),
            Some(_) => Err(DropReason::WrongAddress),
        }
    }
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("valid address")
    }

    #[test]
    fn checks_id_then_address() {
        let peers = PeerTable::default();
        peers.set(2, addr("127.0.0.1:7002"));
        assert_eq!(peers.check_sender(2, addr("127.0.0.1:7002")), Ok(()));
        assert_eq!(
            peers.check_sender(2, addr("[::ffff:127.0.0.1]:7002")),
            Ok(())
        );
        assert_eq!(
            peers.check_sender(2, addr("127.0.0.1:7003")),
            Err(DropReason::WrongAddress)
        );
        assert_eq!(
            peers.check_sender(3, addr("127.0.0.1:7002")),
            Err(DropReason::UnknownPeer)
        );
        peers.remove(2);
        assert_eq!(
            peers.check_sender(2, addr("127.0.0.1:7002")),
            Err(DropReason::UnknownPeer)
        );
    }
}
