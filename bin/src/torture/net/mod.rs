//! The network of `balsa torture`: where its `balsa serve` children listen, how the harness
//! reaches them, and the partitions between them, all on one Linux machine.
//!
//! One interface, [`Network`], with two implementations:
//!
//! - [`netns::NetnsNetwork`] (`--net netns`, needs root and the `ip` command): each node in a
//!   network namespace of its own, on a Linux bridge; a blocked directed link `(i, j)` is a
//!   blackhole route for `j`'s address inside `i`'s namespace. The kernel does the dropping.
//! - [`proxy::ProxyNetwork`] (`--net proxy`, any user): every datagram between nodes goes through
//!   a UDP proxy thread in the harness process, which relays or drops it per directed link, and
//!   can also drop, delay and duplicate per link ([`proxy::LinkQuality`]).
//!
//! [`open`] chooses: `--net auto` takes netns when this machine can run it, else the proxy.
//!
//! Invariants shared by both modes:
//! - Node ids are `1..=`[`MAX_NODE_ID`], each added at most once per network.
//! - Blocking applies to member traffic only: the harness's own clients reach every node in
//!   every partition, as Jepsen's control node does.
//! - [`Network::set_blocked`] takes the whole set of blocked directed links each time; when it
//!   returns `Ok`, exactly that set is in force for datagrams sent from then on.
//! - [`Network::teardown`] removes everything the network made, is idempotent, and runs on drop.

pub mod netns;
pub mod proxy;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::net::SocketAddr;

/// The largest node id a network accepts (ids are `1..=MAX_NODE_ID`).
pub const MAX_NODE_ID: u64 = 32;

/// Which network `balsa torture` asked for (`--net auto|netns|proxy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NetRequest {
    /// Network namespaces when this machine can make them, else the proxy.
    Auto,
    /// Network namespaces on a bridge, partitions by blackhole routes (root and `ip` needed).
    Netns,
    /// A UDP proxy thread in the harness process (no privileges needed).
    Proxy,
}

/// Where node `id` listens and where the others (its `--cluster` entry) reach it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeAddresses {
    /// The node's `balsa serve --listen` address.
    pub listen: SocketAddr,
    /// The node's address in every node's `--cluster` list.
    pub advertised: SocketAddr,
}

/// The network of one torture run. See the module documentation for the invariants.
pub trait Network: Send {
    /// `"netns"` or `"proxy"`.
    fn mode(&self) -> &'static str;

    /// Makes room for node `id` (in `1..=MAX_NODE_ID`, each id at most once) and returns its
    /// addresses: the node runs `balsa serve --listen <listen>` and `--cluster` lists it at
    /// `<advertised>`.
    fn add_node(&mut self, id: u64) -> Result<NodeAddresses, NetError>;

    /// The program and leading arguments that run a command as node `id`: netns gives
    /// `["ip", "netns", "exec", NAMESPACE]`, the proxy nothing (the command runs as is).
    fn wrap_command(&self, id: u64) -> Vec<OsString>;

    /// The address the harness's own clients (sockets of the harness process) use to reach
    /// node `id`.
    ///
    /// # Panics
    ///
    /// The proxy panics when `id` was never added: a bug of the harness, which only asks about
    /// nodes it has made.
    fn client_address(&self, id: u64) -> SocketAddr;

    /// Drops every datagram on each directed member link `(from, to)` in `blocked` and restores
    /// all the others: the set replaces the previous one. Every id must have been added, and
    /// `from != to`. Traffic between the harness's clients and the nodes is never blocked.
    fn set_blocked(&mut self, blocked: &BTreeSet<(u64, u64)>) -> Result<(), NetError>;

    /// Removes everything this network made (namespaces, bridge and veths; proxy thread and
    /// sockets). Idempotent; dropping the network calls it.
    fn teardown(&mut self);
}

/// Opens the network `request` asks for.
///
/// `Auto` takes netns when this process runs as root, `ip` is there and a throwaway namespace
/// (with a veth into it) can be made and entered; otherwise the proxy. `Netns` on a machine
/// that cannot run it is [`NetError::Unsupported`] (`balsa torture` exits 2 on that).
pub fn open(request: NetRequest) -> Result<Box<dyn Network>, NetError> {
    match request {
        NetRequest::Netns => Ok(Box::new(netns::NetnsNetwork::open()?)),
        NetRequest::Proxy => Ok(Box::new(proxy::ProxyNetwork::start(
            proxy::ProxyConfig::default(),
        )?)),
        NetRequest::Auto => match netns::NetnsNetwork::open() {
            Ok(network) => Ok(Box::new(network)),
            Err(error) if error.is_unsupported() => {
                log::info!("using the UDP proxy: {error}");
                Ok(Box::new(proxy::ProxyNetwork::start(
                    proxy::ProxyConfig::default(),
                )?))
            }
            Err(error) => Err(error),
        },
    }
}

/// Why the network could not do what was asked.
#[derive(Debug)]
pub enum NetError {
    /// The requested mode cannot run on this machine (`balsa torture` exits 2).
    Unsupported {
        /// `"netns"` or `"proxy"`.
        mode: &'static str,
        /// What is missing and what to do about it.
        reason: String,
    },
    /// An `ip` command failed.
    Command {
        /// The command line, as run (for a batch, with the lines it was given).
        command: String,
        /// How it ended (`exit status: 2`) or why it did not start.
        status: String,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// A socket or thread operation failed.
    Io {
        /// What was being done.
        action: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A node id outside `1..=MAX_NODE_ID`, added twice, or not added.
    BadNode {
        /// The id.
        id: u64,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A directed link that cannot be blocked (a node to itself).
    BadLink {
        /// The sending node.
        from: u64,
        /// The receiving node.
        to: u64,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// Nothing left to allocate (a private subnet, a port, an instance slot).
    Exhausted {
        /// What ran out, and where to look.
        what: String,
    },
    /// The proxy thread is gone (it panicked or was torn down).
    ProxyStopped,
}

impl NetError {
    /// Whether the requested mode cannot run here at all (exit status 2), as opposed to a
    /// failure while it ran.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, NetError::Unsupported { .. })
    }
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::Unsupported { mode, reason } => {
                write!(f, "--net {mode} cannot run here: {reason}")
            }
            NetError::Command {
                command,
                status,
                stderr,
            } => {
                write!(f, "`{command}` failed ({status})")?;
                if stderr.is_empty() {
                    Ok(())
                } else {
                    write!(f, ": {stderr}")
                }
            }
            NetError::Io { action, source } => write!(f, "{action}: {source}"),
            NetError::BadNode { id, problem } => write!(f, "node {id}: {problem}"),
            NetError::BadLink { from, to, problem } => {
                write!(f, "link {from} -> {to}: {problem}")
            }
            NetError::Exhausted { what } => write!(f, "no free {what}"),
            NetError::ProxyStopped => write!(
                f,
                "the UDP proxy thread has stopped (torn down, or it panicked: see the log above)"
            ),
        }
    }
}

impl std::error::Error for NetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NetError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Checks that `id` may be added to a network that already has `added`.
fn check_new_node(id: u64, added: impl IntoIterator<Item = u64>) -> Result<(), NetError> {
    if !(1..=MAX_NODE_ID).contains(&id) {
        return Err(NetError::BadNode {
            id,
            problem: "node ids are 1..=32 (MAX_NODE_ID)",
        });
    }
    if added.into_iter().any(|known| known == id) {
        return Err(NetError::BadNode {
            id,
            problem: "already added to this network",
        });
    }
    Ok(())
}

/// Checks that every link of `blocked` joins two distinct nodes of `added`.
fn check_links(blocked: &BTreeSet<(u64, u64)>, added: &BTreeSet<u64>) -> Result<(), NetError> {
    for &(from, to) in blocked {
        for id in [from, to] {
            if !added.contains(&id) {
                return Err(NetError::BadNode {
                    id,
                    problem: "not added to this network, so it has no link to block",
                });
            }
        }
        if from == to {
            return Err(NetError::BadLink {
                from,
                to,
                problem: "a node's traffic to itself is not a link",
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_checked() {
        assert!(check_new_node(1, []).is_ok());
        assert!(check_new_node(MAX_NODE_ID, [1, 2]).is_ok());
        assert!(matches!(
            check_new_node(0, []),
            Err(NetError::BadNode { id: 0, .. })
        ));
        assert!(matches!(
            check_new_node(MAX_NODE_ID + 1, []),
            Err(NetError::BadNode { id, .. }) if id == MAX_NODE_ID + 1
        ));
        assert!(matches!(
            check_new_node(2, [1, 2]),
            Err(NetError::BadNode { id: 2, .. })
        ));
    }

    #[test]
    fn blocked_links_must_join_two_added_nodes() {
        let added: BTreeSet<u64> = [1, 2, 3].into();
        assert!(check_links(&[(1, 2), (3, 1)].into(), &added).is_ok());
        assert!(matches!(
            check_links(&[(1, 4)].into(), &added),
            Err(NetError::BadNode { id: 4, .. })
        ));
        assert!(matches!(
            check_links(&[(2, 2)].into(), &added),
            Err(NetError::BadLink { from: 2, to: 2, .. })
        ));
    }

    #[test]
    fn unsupported_is_distinguishable_and_says_what_to_do() {
        let error = NetError::Unsupported {
            mode: "netns",
            reason: "netns mode needs root and the `ip` command: run as root or use --net proxy"
                .into(),
        };
        assert!(error.is_unsupported());
        assert!(error.to_string().contains("--net proxy"), "{error}");
        assert!(!NetError::ProxyStopped.is_unsupported());
    }

    #[test]
    fn open_proxy_and_auto() {
        let _serial = netns::tests::NETNS_TESTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let proxy = open(NetRequest::Proxy).expect("the proxy runs anywhere");
        assert_eq!(proxy.mode(), "proxy");
        drop(proxy);
        let auto = open(NetRequest::Auto).expect("auto falls back to the proxy");
        let expected = if netns::tests::can_run_netns() {
            "netns"
        } else {
            "proxy"
        };
        assert_eq!(auto.mode(), expected);
    }
}
