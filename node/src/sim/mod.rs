//! The deterministic simulator (feature `sim`): being written.

pub mod linearizability;
