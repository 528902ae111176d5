//! Balsa: Raft consensus without an async runtime.
//!
//! This crate is what users embed. It holds (or will hold):
//!
//! - `raft/`: the sans-IO Raft core. `step(Input)` in, `poll_action() -> Option<Action>` out; no
//!   threads, clocks, sockets or files, so the simulator and the runtime drive the very same code.
//! - `runtime/`: the thread runtime (timer, net, WAL and consensus threads over crossbeam channels).
//! - the `StateMachine` trait, the replicated key-value state machine and its client.
//! - `sim/` (feature `sim`): the deterministic simulator that judges the core's safety.
//!
//! Status: the Raft core (`raft`) and the simulator (`sim`) are built; the runtime, the state
//! machine and the client are coming. Storage lives in [`balsa_wal`], the transport in
//! [`balsa_net`].

pub mod kv;
pub mod raft;
pub mod runtime;
#[cfg(feature = "sim")]
pub mod sim;
pub mod state_machine;

pub use balsa_net as net;
pub use balsa_wal as wal;
pub use runtime::{Error, Node, NodeConfig, NodeStatus};
pub use state_machine::StateMachine;
