//! How a transport is set up: who it is, where it listens, its limits.

use std::net::SocketAddr;

use crate::keys::Keys;
use crate::{Error, Result};

/// The default datagram limit: under the 65,507-byte UDP payload limit of IPv4, with room to
/// spare. Over loopback and most LANs the kernel fragments and reassembles such datagrams.
pub const DEFAULT_DATAGRAM_LIMIT: usize = 65_000;
/// The smallest datagram limit accepted: fits a path with a 1,280-byte MTU (the IPv6 minimum)
/// after IP and UDP headers.
pub const MIN_DATAGRAM_LIMIT: usize = 1_200;
/// The largest datagram limit accepted: the largest UDP payload over IPv4.
pub const MAX_DATAGRAM_LIMIT: usize = 65_507;
/// Datagrams the net thread reads per turn before it looks at outbound traffic again.
pub const DEFAULT_READ_BUDGET: usize = 64;
/// Datagrams waiting for the net thread to send them, at most, by default.
pub const DEFAULT_OUTBOUND_CAPACITY: usize = 1024;

/// The id a client sends as: never a peer's.
pub const CLIENT_ID: u64 = 0;

/// Which way [`Outbox::send`](crate::Outbox::send) hands a datagram to the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendPath {
    /// `send_to` on the shared socket, from the sending thread itself.
    Direct,
    /// Through a channel to the net thread, which is woken to send it.
    EventLoop,
}

/// A transport's configuration. Start from [`Config::new`] and change what you need.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's id, sent in every envelope; [`CLIENT_ID`] (0) for a client.
    pub id: u64,
    /// The cluster's id: datagrams carrying another are dropped, except client requests
    /// carrying [`ANY_CLUSTER`](crate::ANY_CLUSTER) (0), a client's "any" (see the crate
    /// documentation). A node needs one of its own: 0 is refused unless `id` is [`CLIENT_ID`].
    pub cluster_id: u64,
    /// The address to bind the socket to (port 0: any free port).
    pub bind: SocketAddr,
    /// The peer table to start with: node id and address. It can change at run time.
    pub peers: Vec<(u64, SocketAddr)>,
    /// The largest datagram sent or accepted, in bytes, envelope included.
    pub datagram_limit: usize,
    /// Datagrams read per turn of the net thread before it sends again (a flood of inbound
    /// datagrams cannot starve outbound traffic).
    pub read_budget: usize,
    /// Datagrams handed to the net thread and not sent yet, at most. Beyond it a send fails
    /// with [`Error::QueueFull`] rather than wait or let memory grow: a sender outrunning the
    /// socket loses datagrams, as the network would.
    pub outbound_capacity: usize,
    /// Decoded datagrams waiting in the inbox, at most, when the inbox channel has no bound of
    /// its own: beyond it the net thread drops a datagram (counted as
    /// [`DropReason::InboxFull`](crate::DropReason::InboxFull)), as it does when a bounded
    /// inbox is full. An unbounded channel allocates as it fills, where a bounded one allocates
    /// (and touches) every slot when it is made: a limit of 65,536 costs an idle node nothing
    /// this way, and about 10 MB of memory as a bounded channel. `None`: the channel's own
    /// bound only (the default).
    pub inbox_limit: Option<usize>,
    /// How [`Outbox::send`](crate::Outbox::send) sends while no fault is injected.
    pub send_path: SendPath,
    /// Seed of fault injection's random choices.
    pub fault_seed: u64,
    /// What datagrams are sealed with ([`Keys::insecure`]: plaintext). A node's keys need both
    /// rings; see `seal` for the envelope.
    pub keys: Keys,
    /// This transport's boot id, sealed into every datagram: receivers drop datagrams of a
    /// boot older than one they heard from this sender (`replay`). It must grow across the
    /// sender's restarts: [`Config::new`] takes the wall clock in microseconds; a node with a
    /// data directory gives a durable counter that also grows (the runtime does).
    pub boot_id: u64,
}

impl Config {
    /// Node `id` of cluster `cluster_id`, bound to `bind`, with no peers and default limits.
    #[must_use]
    pub fn new(id: u64, cluster_id: u64, bind: SocketAddr) -> Config {
        Config {
            id,
            cluster_id,
            bind,
            peers: Vec::new(),
            datagram_limit: DEFAULT_DATAGRAM_LIMIT,
            read_budget: DEFAULT_READ_BUDGET,
            outbound_capacity: DEFAULT_OUTBOUND_CAPACITY,
            inbox_limit: None,
            send_path: SendPath::Direct,
            fault_seed: 0,
            keys: Keys::insecure(),
            boot_id: wall_clock_micros(),
        }
    }

    /// Checks the values that [`Transport::start`](crate::Transport::start) would refuse.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad value.
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: String| Err(Error::InvalidConfig { reason });
        if !(MIN_DATAGRAM_LIMIT..=MAX_DATAGRAM_LIMIT).contains(&self.datagram_limit) {
            return invalid(format!(
                "datagram limit {} is outside {MIN_DATAGRAM_LIMIT}..={MAX_DATAGRAM_LIMIT} bytes",
                self.datagram_limit
            ));
        }
        if self.read_budget == 0 {
            return invalid("read budget is 0: the net thread would never read".to_owned());
        }
        if self.outbound_capacity == 0 {
            return invalid(
                "outbound capacity is 0: nothing could be sent through the net thread".to_owned(),
            );
        }
        if self.inbox_limit == Some(0) {
            return invalid("inbox limit is 0: every datagram would be dropped".to_owned());
        }
        if self.cluster_id == crate::ANY_CLUSTER && self.id != CLIENT_ID {
            return invalid(format!(
                "node {} has cluster id 0, the clients' \"any cluster\": a node needs its own",
                self.id
            ));
        }
        if let Some((id, addr)) = self.peers.iter().find(|(id, _)| *id == CLIENT_ID) {
            return invalid(format!(
                "peer {addr} has id {id}, which is reserved for clients"
            ));
        }
        if self.keys.is_sealed() && self.id != CLIENT_ID {
            let missing = match (&self.keys.peer, &self.keys.client) {
                (None, _) => Some("peer"),
                (_, None) => Some("client"),
                _ => None,
            };
            if let Some(ring) = missing {
                return invalid(format!(
                    "node {} has keys but no {ring} key: a node seals both member and client \
                     traffic, or neither",
                    self.id
                ));
            }
        }
        Ok(())
    }
}

/// Microseconds since the Unix epoch (0 if the clock is before it): a boot id that grows across
/// restarts as long as the clock does not step back by more than the time between them.
#[allow(
    clippy::disallowed_methods,
    reason = "the transport's default boot id is the wall clock at start, read once"
)]
#[must_use]
pub fn wall_clock_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    #[test]
    fn a_node_needs_a_cluster_id_of_its_own() {
        let refused = Config::new(1, crate::ANY_CLUSTER, bind()).validate();
        assert!(
            matches!(&refused, Err(Error::InvalidConfig { reason })
                if reason.contains("node 1 has cluster id 0")),
            "{refused:?}"
        );
        assert!(Config::new(1, 9, bind()).validate().is_ok());
        // A client's transport may listen for any cluster.
        assert!(
            Config::new(CLIENT_ID, crate::ANY_CLUSTER, bind())
                .validate()
                .is_ok()
        );
    }
}
