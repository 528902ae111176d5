//! Balsa's examples, run with `cargo run --release -p balsa-examples --example NAME`:
//!
//! - `counter` (`examples/counter.rs`): embedding. Three [`balsa::Node`]s in one process, on
//!   loopback, replicate a counter: a [`balsa::StateMachine`] of a dozen lines.
//! - `visits` (`examples/visits.rs`): a client. A small service that counts page visits in a
//!   running `balsa cluster` through [`balsa::client::Client`], with compare-and-swap.
//!
//! This library is empty: Cargo wants a target in a package of examples.
