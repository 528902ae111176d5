//! Balsa: Raft consensus without an async runtime.
//!
//! Embed a replicated state machine: implement [`StateMachine`] (apply a committed command, answer
//! a query, snapshot and restore), start a [`Node`] per member with a [`NodeConfig`], and propose
//! commands to the leader. Every command a node acknowledges is applied, in the same order, on
//! every member, and survives crashes of a minority; reads through [`Node::read`] are
//! linearizable.
//!
//! ```
//! use std::time::Duration;
//! use balsa::{Node, NodeConfig, StateMachine, state_machine::RestoreError};
//!
//! /// A replicated counter: each command adds its first byte.
//! #[derive(Default)]
//! struct Counter(u64);
//!
//! impl StateMachine for Counter {
//!     fn apply(&mut self, _index: u64, command: &[u8]) -> Vec<u8> {
//!         self.0 += u64::from(command.first().copied().unwrap_or(0));
//!         self.0.to_le_bytes().to_vec()
//!     }
//!     fn query(&self, _query: &[u8]) -> Vec<u8> {
//!         self.0.to_le_bytes().to_vec()
//!     }
//!     fn snapshot(&self) -> Vec<u8> {
//!         self.0.to_le_bytes().to_vec()
//!     }
//!     fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
//!         let bytes = snapshot.try_into().map_err(|_| RestoreError::new("not 8 bytes"))?;
//!         self.0 = u64::from_le_bytes(bytes);
//!         Ok(())
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! // A one-member cluster; list every member's id and address for more.
//! let config = NodeConfig::new(1, vec![(1, "127.0.0.1:0".parse()?)], dir.path().into());
//! let node = Node::start(config, Counter::default())?;
//! node.wait_for_leader(Duration::from_secs(5))?;
//! let total = node.propose(vec![5], Duration::from_secs(5))?; // durable, committed, applied
//! assert_eq!(total, 5u64.to_le_bytes());
//! assert_eq!(node.read(Vec::new(), Duration::from_secs(5))?, 5u64.to_le_bytes());
//! node.shutdown()?;
//! # Ok(()) }
//! ```
//!
//! **Membership changes.** [`Node::change_membership`] (on the leader) changes who is in the
//! cluster, any set of [`Step`](raft::membership::Step)s as one joint change (Raft §6): a voter
//! to add is added as a learner, caught up, then promoted; a removed node stops by itself
//! ([`Node::join`] returns `Ok`). A new node starts with [`NodeConfig::join`] (it learns the
//! cluster's id from the members it lists, and knows no configuration until the change adds
//! it); [`Node::members`] is a node's configuration in force.
//! A refusal is [`Error::Membership`], whose [`ChangeRefused`](raft::ChangeRefused) says why: a
//! change in progress, a learner that did not catch up, an unknown member, an id used before
//! (ids are never reused: a node that lost its disk comes back under a new one), no voter
//! left, not the leader.
//!
//! ```
//! # use std::time::Duration;
//! # use balsa::{Error, Node, NodeConfig, StateMachine, state_machine::RestoreError};
//! use balsa::raft::membership::Step;
//! # #[derive(Default)]
//! # struct Counter(u64);
//! # impl StateMachine for Counter {
//! #     fn apply(&mut self, _: u64, c: &[u8]) -> Vec<u8> { self.0 += 1; self.0.to_le_bytes().to_vec() }
//! #     fn query(&self, _: &[u8]) -> Vec<u8> { self.0.to_le_bytes().to_vec() }
//! #     fn snapshot(&self) -> Vec<u8> { self.0.to_le_bytes().to_vec() }
//! #     fn restore(&mut self, s: &[u8]) -> Result<(), RestoreError> {
//! #         self.0 = u64::from_le_bytes(s.try_into().map_err(|_| RestoreError::new("8 bytes"))?);
//! #         Ok(())
//! #     }
//! # }
//! # fn free_address() -> std::net::SocketAddr {
//! #     std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
//! # }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (one, two) = (free_address(), free_address());
//! let (dir1, dir2) = (tempfile::tempdir()?, tempfile::tempdir()?);
//! let first = Node::start(NodeConfig::new(1, vec![(1, one)], dir1.path().into()), Counter::default())?;
//! first.wait_for_leader(Duration::from_secs(5))?;
//! // Node 2 joins: it lists whom to ask and hear from (and itself), and waits to be added.
//! let mut config = NodeConfig::new(2, vec![(1, one), (2, two)], dir2.path().into());
//! config.join = true;
//! let second = Node::start(config, Counter::default())?;
//! assert_eq!(second.members(), Err(Error::NoConfiguration));
//! let address = two.to_string().into_bytes(); // addresses are "IP:PORT" as bytes
//! let grown = first.change_membership(vec![Step::AddVoter { id: 2, address }], Duration::from_secs(10))?;
//! assert_eq!(grown.incoming().collect::<Vec<_>>(), [1, 2]);
//! // Adding it again is refused, with the reason.
//! let again = first.change_membership(vec![Step::AddLearner { id: 2, address: Vec::new() }], Duration::from_secs(10));
//! assert!(matches!(again, Err(Error::Membership(_))), "{again:?}");
//! second.shutdown()?;
//! first.shutdown()?;
//! # Ok(()) }
//! ```
//!
//! What is inside:
//!
//! - [`raft`]: the sans-IO Raft core. `step(Input)` in, `poll_action() -> Option<Action>` out; no
//!   threads, clocks, sockets or files, so the simulator and the runtime drive the very same code.
//! - [`runtime`]: the threads (timer, net, WAL, consensus) around the core, and [`Node`]. A
//!   node's data directory records which cluster and node it belongs to
//!   ([`runtime::identity`]); members of a new cluster are given the same
//!   [`NodeConfig::cluster_token`], and a node that joins a running one sets
//!   [`NodeConfig::join`].
//! - [`kv`]: the replicated key-value state machine with client sessions, served by `balsa serve`.
//! - [`client`]: the key-value service's client library (leader discovery, retries, sessions).
//! - `sim/` (feature `sim`): the deterministic simulator that judges the core's safety.
//!
//! Storage lives in [`balsa_wal`], the transport in [`balsa_net`]. `ARCHITECTURE.md` has the map.

pub mod client;
pub mod keyfile;
pub mod kv;
pub mod metrics;
pub mod raft;
pub mod replica;
pub mod runtime;
#[cfg(feature = "sim")]
pub mod sim;
pub mod state_machine;

pub use balsa_net as net;
pub use balsa_wal as wal;
pub use metrics::Metrics;
pub use runtime::{Error, HandOff, MembershipChange, MetricsReader, Node, NodeConfig, NodeStatus};
pub use state_machine::StateMachine;
