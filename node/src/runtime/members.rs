//! The runtime's side of membership: the transport's peer table and the replica's client hints
//! follow the configuration in force in the core, and a node removed from the cluster stops.
//!
//! **The peer table rule.** The transport believes a peer message only from an id in its table
//! at that id's address, and sends to an id only through the table. So, whenever the index of
//! the configuration in force changes ([`Raft::membership_index`]), [`PeerTable::follow`]:
//!
//! - sets every member (voter or learner, either half of a joint configuration) whose address
//!   parses as a socket address (a member whose does not is logged and skipped: the core holds
//!   addresses as opaque bytes, and only `members add` or `--cluster` put them there);
//! - removes every other peer, unless the core still talks to it: a leader still telling a
//!   removed member that it was removed ([`Raft::is_replicating_to`]), or the leader this node
//!   follows (a leader removing itself leads until `C_new` commits). Such a peer *lingers* and
//!   is removed at the first turn where neither holds any more.
//!
//! At a start the table is the configuration in force (the log's or snapshot's, else the one
//! the cluster was bootstrapped with, as the data directory's `IDENTITY` records it) joined with
//! `--cluster` ([`initial_peers`]): the configuration wins where they disagree on an address,
//! and a difference is logged as a warning. Keeping the `--cluster` entries until the first
//! change seen lets a node that was down across a change still hear from a leader its log does
//! not know yet.
//!
//! Invariants: the table never holds this node's own id; a member of the configuration in
//! force whose address parses is always in the table once `follow` ran after the change; a peer
//! is only removed when it is neither a member, nor sent to by this leader, nor this node's
//! leader.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use balsa_net::Transport;

use super::wire::Wire;
use crate::raft::membership::Membership;
use crate::raft::{NodeId, Raft, Role};

/// A member's address as the core holds it (UTF-8 text such as `127.0.0.1:7001`), parsed.
pub fn parse_address(bytes: &[u8]) -> Result<SocketAddr, String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| format!("{} bytes that are not UTF-8", bytes.len()))?;
    text.parse()
        .map_err(|_| format!("{text:?} is not a socket address"))
}

/// A socket address as the core holds it.
pub fn address_bytes(address: SocketAddr) -> Vec<u8> {
    address.to_string().into_bytes()
}

/// The members of `membership` whose address parses, with it; the others are logged.
pub fn member_addresses(membership: &Membership) -> BTreeMap<NodeId, SocketAddr> {
    let mut addresses = BTreeMap::new();
    for id in membership.members() {
        let bytes = membership.address(id).unwrap_or_default();
        match parse_address(bytes) {
            Ok(address) => {
                addresses.insert(id, address);
            }
            Err(reason) => {
                log::warn!("member {id} cannot be reached: its address is {reason}; skipped");
            }
        }
    }
    addresses
}

/// The peer table to start with (this node excluded): the configuration in force at the start
/// (the log's, else the bootstrap one), if any, joined with `cluster` (`--cluster`); its
/// address wins for an id in both. Logs a warning when the two differ.
pub fn initial_peers(
    own: NodeId,
    cluster: &[(NodeId, SocketAddr)],
    in_log: Option<&Membership>,
) -> Vec<(NodeId, SocketAddr)> {
    let given: BTreeMap<NodeId, SocketAddr> = cluster.iter().copied().collect();
    let mut peers = given.clone();
    if let Some(membership) = in_log {
        let logged = member_addresses(membership);
        if logged != given {
            log::warn!(
                "the configuration in force ({}: the log's, or the recorded bootstrap one) \
                 differs from --cluster ({}); it wins",
                describe(&logged),
                describe(&given)
            );
        }
        peers.extend(logged);
    }
    peers.remove(&own);
    peers.into_iter().collect()
}

fn describe(members: &BTreeMap<NodeId, SocketAddr>) -> String {
    let items: Vec<String> = members
        .iter()
        .map(|(id, address)| format!("{id}={address}"))
        .collect();
    items.join(",")
}

/// What [`PeerTable::follow`] remembers between turns. See the module documentation.
#[derive(Debug)]
pub struct PeerTable {
    own: NodeId,
    /// The configuration index last followed (`None`: not yet).
    followed: Option<u64>,
    /// Peers that are not members but were kept because the core still talks to them.
    lingering: BTreeSet<NodeId>,
}

impl PeerTable {
    /// For node `own`, before the first turn.
    pub fn new(own: NodeId) -> PeerTable {
        PeerTable {
            own,
            followed: None,
            lingering: BTreeSet::new(),
        }
    }

    /// Brings `transport`'s table in line with `raft`'s configuration in force. Returns the
    /// addresses clients should be hinted at (members and lingering peers, this node included)
    /// when they changed, else `None`. Cheap when nothing changed: one comparison, plus one
    /// look-up per lingering peer.
    pub fn follow(
        &mut self,
        raft: &Raft,
        transport: &Transport<Wire>,
    ) -> Option<BTreeMap<NodeId, SocketAddr>> {
        let index = raft.membership_index();
        let changed = self.followed != Some(index);
        if !changed && self.lingering.is_empty() {
            return None;
        }
        // A joining node knows no configuration yet: its table stays as started.
        let membership = raft.membership()?;
        self.followed = Some(index);
        let leader = match raft.role() {
            Role::Leader => None,
            _ => raft.status().leader,
        };
        let still_needed = |id: NodeId| raft.is_replicating_to(id) || leader == Some(id);
        let mut hints_changed = changed;
        if changed {
            let members = member_addresses(membership);
            for (&id, &address) in &members {
                if id != self.own && transport.peer(id) != Some(address) {
                    // Only id 0 is refused, and a configuration never holds it.
                    if let Err(error) = transport.set_peer(id, address) {
                        log::warn!("member {id} at {address}: {error}");
                    }
                }
            }
            for (id, _) in transport.peers() {
                if membership.is_member(id) {
                    self.lingering.remove(&id);
                } else if still_needed(id) {
                    self.lingering.insert(id);
                } else {
                    transport.remove_peer(id);
                    self.lingering.remove(&id);
                }
            }
        } else {
            let before = self.lingering.len();
            self.lingering.retain(|&id| {
                let keep = !membership.is_member(id) && still_needed(id);
                if !keep && !membership.is_member(id) {
                    transport.remove_peer(id);
                }
                keep
            });
            hints_changed = self.lingering.len() != before;
        }
        if !hints_changed {
            return None;
        }
        let mut hints = member_addresses(membership);
        for &id in &self.lingering {
            if let Some(address) = transport.peer(id) {
                hints.insert(id, address);
            }
        }
        Some(hints)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("a literal address")
    }

    fn three() -> Membership {
        Membership::bootstrap((1..=3u16).map(|id| {
            (
                u64::from(id),
                format!("127.0.0.1:{}", 7000 + id).into_bytes(),
            )
        }))
    }

    #[test]
    fn an_address_is_utf8_text_and_anything_else_is_refused_not_a_panic() {
        assert_eq!(parse_address(b"127.0.0.1:7001"), Ok(addr("127.0.0.1:7001")));
        assert_eq!(parse_address(b"[::1]:80"), Ok(addr("[::1]:80")));
        assert!(parse_address(b"\xff\xfe").is_err());
        assert!(parse_address(b"localhost:1").is_err());
        assert!(parse_address(b"").is_err());
        assert_eq!(
            parse_address(&address_bytes(addr("10.0.0.1:9"))),
            Ok(addr("10.0.0.1:9"))
        );
    }

    #[test]
    fn a_member_whose_address_does_not_parse_is_skipped() {
        let membership = Membership::bootstrap([(1, b"127.0.0.1:1".to_vec()), (2, b"x".to_vec())]);
        let addresses = member_addresses(&membership);
        assert_eq!(addresses.keys().copied().collect::<Vec<_>>(), vec![1]);
    }

    /// At a start the log's configuration wins over `--cluster` where they disagree, and
    /// `--cluster`'s other members are kept too; this node is never its own peer.
    #[test]
    fn the_starting_table_is_the_log_joined_with_cluster_the_log_winning() {
        let cluster = [
            (1, addr("127.0.0.1:7001")),
            (2, addr("127.0.0.1:9999")),
            (4, addr("127.0.0.1:7004")),
        ];
        let peers = initial_peers(1, &cluster, Some(&three()));
        assert_eq!(
            peers,
            vec![
                (2, addr("127.0.0.1:7002")),
                (3, addr("127.0.0.1:7003")),
                (4, addr("127.0.0.1:7004")),
            ]
        );
        assert_eq!(
            initial_peers(4, &cluster, None),
            vec![(1, addr("127.0.0.1:7001")), (2, addr("127.0.0.1:9999"))]
        );
    }
}
