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
pub mod kv;
pub mod raft;
pub mod replica;
pub mod runtime;
#[cfg(feature = "sim")]
pub mod sim;
pub mod state_machine;

pub use balsa_net as net;
pub use balsa_wal as wal;
pub use runtime::{Error, Node, NodeConfig, NodeStatus};
pub use state_machine::StateMachine;
