//! Why [`Config::validate`](super::Config::validate) refuses a configuration: one variant per
//! refusal, carrying the values a user needs to fix it.

use std::fmt;

use super::{MESSAGE_OVERHEAD, NodeId};

/// A configuration the core cannot run with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// Node id 0 means "nobody" (no vote, no leader).
    ReservedId,
    /// This node is not among the voters.
    NotAVoter {
        /// This node.
        id: NodeId,
        /// The voters.
        voters: Vec<NodeId>,
    },
    /// The voters repeat an id or include 0.
    InvalidVoters {
        /// The voters.
        voters: Vec<NodeId>,
    },
    /// The ticks do not satisfy 0 < heartbeat < election minimum < election maximum: a leader
    /// must heartbeat well within every follower's election timeout, and the timeouts need a
    /// range to be drawn from.
    TicksOutOfOrder {
        /// The heartbeat period.
        heartbeat: u32,
        /// The election timeout's minimum.
        min: u32,
        /// The election timeout's maximum (exclusive).
        max: u32,
    },
    /// A message this small cannot carry one byte of one entry.
    MessageTooSmall {
        /// The configured limit.
        max_message_bytes: usize,
        /// The smallest limit that works: one entry of one byte.
        min: usize,
    },
    /// The in-flight window allows no message (a count or a byte bound of 0).
    EmptyInflightWindow {
        /// The message bound.
        messages: usize,
        /// The byte bound.
        bytes: usize,
    },
    /// A snapshot chunk is empty or does not fit one message.
    SnapshotChunkOutOfRange {
        /// The configured chunk size.
        chunk_bytes: usize,
        /// The largest that fits (`max_message_bytes - MESSAGE_OVERHEAD`).
        max: usize,
    },
    /// The snapshot window allows no chunk.
    NoSnapshotChunksInFlight,
    /// The restored snapshot's frame (its configuration) cannot be read.
    UnreadableSnapshot {
        /// The snapshot's index.
        index: u64,
        /// Why.
        reason: String,
    },
    /// A configuration entry of the restored log cannot be read.
    UnreadableConfiguration {
        /// The entry's index.
        index: u64,
        /// Why.
        reason: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ReservedId => write!(f, "node id 0 is reserved"),
            ConfigError::NotAVoter { id, voters } => {
                write!(f, "node {id} is not among the voters {voters:?}")
            }
            ConfigError::InvalidVoters { voters } => {
                write!(f, "voters {voters:?} repeat an id or use 0")
            }
            ConfigError::TicksOutOfOrder {
                heartbeat,
                min,
                max,
            } => write!(
                f,
                "need 0 < heartbeat ticks ({heartbeat}) < election ticks min ({min}) < max ({max})"
            ),
            ConfigError::MessageTooSmall {
                max_message_bytes,
                min,
            } => write!(
                f,
                "max_message_bytes {max_message_bytes} is too small (at least {min})"
            ),
            ConfigError::EmptyInflightWindow { messages, bytes } => write!(
                f,
                "the in-flight window must allow at least one message (it allows {messages} \
                 messages, {bytes} bytes)"
            ),
            ConfigError::SnapshotChunkOutOfRange { chunk_bytes, max } => write!(
                f,
                "snapshot_chunk_bytes {chunk_bytes} must be between 1 and max_message_bytes - \
                 {MESSAGE_OVERHEAD} ({max})"
            ),
            ConfigError::NoSnapshotChunksInFlight => {
                write!(f, "snapshot_inflight_chunks must be at least 1")
            }
            ConfigError::UnreadableSnapshot { index, reason } => {
                write!(f, "the snapshot at index {index} cannot be read: {reason}")
            }
            ConfigError::UnreadableConfiguration { index, reason } => write!(
                f,
                "the configuration entry at index {index} cannot be read: {reason}"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{Config, ENTRY_OVERHEAD};

    /// Every refusal, from the configuration that causes it, with what it says.
    #[test]
    fn each_refusal_names_the_values_at_fault() {
        let refused = |change: fn(&mut Config)| {
            let mut config = Config::new(1, vec![1, 2, 3]);
            change(&mut config);
            config.validate().expect_err("refused")
        };
        let cases: [(ConfigError, ConfigError, &str); 8] = [
            (
                refused(|c| c.id = 0),
                ConfigError::ReservedId,
                "node id 0 is reserved",
            ),
            (
                refused(|c| c.id = 4),
                ConfigError::NotAVoter {
                    id: 4,
                    voters: vec![1, 2, 3],
                },
                "node 4 is not among the voters [1, 2, 3]",
            ),
            (
                refused(|c| c.voters = vec![1, 2, 2]),
                ConfigError::InvalidVoters {
                    voters: vec![1, 2, 2],
                },
                "voters [1, 2, 2] repeat an id or use 0",
            ),
            (
                refused(|c| c.election_ticks = (5, 30)),
                ConfigError::TicksOutOfOrder {
                    heartbeat: 5,
                    min: 5,
                    max: 30,
                },
                "need 0 < heartbeat ticks (5) < election ticks min (5) < max (30)",
            ),
            (
                refused(|c| c.set_max_message_bytes(10)),
                ConfigError::MessageTooSmall {
                    max_message_bytes: 10,
                    min: MESSAGE_OVERHEAD + ENTRY_OVERHEAD + 1,
                },
                "max_message_bytes 10 is too small (at least ",
            ),
            (
                refused(|c| c.max_inflight_bytes = 0),
                ConfigError::EmptyInflightWindow {
                    messages: 64,
                    bytes: 0,
                },
                "the in-flight window must allow at least one message (it allows 64 messages, 0 \
                 bytes)",
            ),
            (
                refused(|c| c.snapshot_chunk_bytes = 0),
                ConfigError::SnapshotChunkOutOfRange {
                    chunk_bytes: 0,
                    max: 65_000 - MESSAGE_OVERHEAD,
                },
                "snapshot_chunk_bytes 0 must be between 1 and max_message_bytes - ",
            ),
            (
                refused(|c| c.snapshot_inflight_chunks = 0),
                ConfigError::NoSnapshotChunksInFlight,
                "snapshot_inflight_chunks must be at least 1",
            ),
        ];
        for (refusal, expected, says) in cases {
            assert_eq!(refusal, expected);
            assert!(refusal.to_string().starts_with(says), "{refusal}");
        }
        assert_eq!(Config::new(1, vec![1, 2, 3]).validate(), Ok(()));
    }
}
