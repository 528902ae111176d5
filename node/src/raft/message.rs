//! What Raft nodes say to each other (Figure 2's RPCs, plus PreVote, TimeoutNow, ReadIndex and
//! forwarded proposals), and the log entry they carry.
//!
//! Every message carries the sender's term. Requests and responses are separate one-way messages:
//! the transport is datagrams, so nothing waits for a reply, and a lost reply is a lost message.

use serde::{Deserialize, Serialize};

/// A node's identity in the cluster. Never 0 (0 means "none" where an id is optional on disk).
pub type NodeId = u64;

/// What an entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EntryKind {
    /// A command for the state machine.
    Normal,
    /// The empty entry a new leader appends at once (§5.4.2, Figure 8): committing it commits
    /// every entry before it.
    Noop,
    /// A cluster configuration (`membership/codec.rs` encodes it in `data`): in force on every
    /// node from the moment it is appended (Raft §6). Appended after the two kinds above, so
    /// logs written before it existed read as they did.
    Config,
}

/// A log entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the log, from 1.
    pub index: u64,
    /// Term of the leader that created it.
    pub term: u64,
    /// What it holds.
    pub kind: EntryKind,
    /// The command (empty for a no-op).
    #[serde(with = "balsa_net::bytes")]
    pub data: Vec<u8>,
}

/// Bytes a message's framing and fixed fields may take on the wire, beyond its entries' data;
/// a generous bound (128 bytes) for the envelope and the bincode encoding of the fixed fields,
/// plus what sealing adds (`balsa_net::SEAL_OVERHEAD`, whether or not the node seals: the
/// budget of a message does not depend on the keys).
pub const MESSAGE_OVERHEAD: usize = 128 + balsa_net::SEAL_OVERHEAD;
/// Bytes an entry's framing takes on the wire beside its data (index, term, kind, length).
pub const ENTRY_OVERHEAD: usize = 32;

impl Entry {
    /// Bytes this entry adds to a message on the wire (an upper bound).
    pub fn wire_size(&self) -> usize {
        self.data.len() + ENTRY_OVERHEAD
    }
}

/// A message between two nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The sender's term (for a pre-vote request: the term it would campaign in).
    pub term: u64,
    /// What it says.
    pub body: Body,
}

/// Why a follower rejected an AppendEntries, so the leader can skip back a whole term at a time
/// (the fast backtracking of §5.3, as in the thesis and etcd).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// The term of the follower's entry at the leader's `prev_index`, or `None` if the follower's
    /// log is shorter than that.
    pub term: Option<u64>,
    /// The first index the follower holds with `term`, or its last index + 1 when `term` is None.
    pub index: u64,
}

/// The body of a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// RequestVote (§5.2), or PreVote (thesis §9.6) when `pre_vote`.
    RequestVote {
        /// True for a pre-vote: nobody changes term or vote for it.
        pre_vote: bool,
        /// The candidate's last log index (§5.4.1 election restriction).
        last_index: u64,
        /// The candidate's last log term.
        last_term: u64,
        /// Sent on a leader's request (TimeoutNow): voters skip the leader-lease check.
        transfer: bool,
    },
    /// The answer to a RequestVote or PreVote.
    RequestVoteResponse {
        /// Echoes the request's kind.
        pre_vote: bool,
        /// Whether the vote is granted.
        granted: bool,
    },
    /// AppendEntries (§5.3); without entries, a heartbeat.
    AppendEntries {
        /// Index of the entry just before `entries`.
        prev_index: u64,
        /// Its term.
        prev_term: u64,
        /// Entries to store, contiguous from `prev_index + 1`.
        entries: Vec<Entry>,
        /// The leader's commit index.
        leader_commit: u64,
        /// The newest ReadIndex round this message confirms leadership for (0: none).
        read_round: u64,
    },
    /// The answer to an AppendEntries.
    AppendEntriesResponse {
        /// On success: the index up to which the follower's log now matches the leader's. On a
        /// rejection: the `prev_index` that did not match.
        index: u64,
        /// `None` on success; why not, on a rejection.
        conflict: Option<Conflict>,
        /// Echo of the request's `read_round`.
        read_round: u64,
    },
    /// Start an election now, skipping the timeout and PreVote (leadership transfer, §3.10).
    TimeoutNow,
    /// A follower asks the leader for a read index on a client's behalf (§6.4).
    ReadIndex {
        /// The follower's tag for the read.
        ctx: u64,
    },
    /// The leader's answer to [`Body::ReadIndex`].
    ReadIndexResponse {
        /// The follower's tag.
        ctx: u64,
        /// The read index, or `None` if the leader could not serve it (it is no longer leader).
        index: Option<u64>,
    },
    /// One chunk of the leader's snapshot (§7, Figure 13; chunked as the thesis §5.3 suggests).
    /// The follower keys a transfer on the message's term and the snapshot's index, term, size
    /// and CRC.
    InstallSnapshot {
        /// Index of the last entry the snapshot covers.
        index: u64,
        /// Term of that entry.
        snapshot_term: u64,
        /// Bytes in the whole snapshot.
        size: u64,
        /// CRC-32 (crc32fast) of the whole snapshot.
        crc: u32,
        /// Where this chunk starts in the snapshot.
        offset: u64,
        /// The chunk.
        #[serde(with = "balsa_net::bytes")]
        data: Vec<u8>,
    },
    /// The follower's answer to [`Body::InstallSnapshot`]: a cumulative acknowledgement.
    InstallSnapshotResponse {
        /// The snapshot's index (echoed).
        index: u64,
        /// The follower holds every byte before this offset (0: start again).
        next_offset: u64,
        /// The snapshot is installed and durable.
        installed: bool,
    },
    /// A proposal a follower passes on to the leader.
    Forward {
        /// The command.
        #[serde(with = "balsa_net::bytes")]
        data: Vec<u8>,
    },
}

impl Message {
    /// Bytes this message may take on the wire (an upper bound used for batching).
    pub fn wire_size(&self) -> usize {
        MESSAGE_OVERHEAD
            + match &self.body {
                Body::AppendEntries { entries, .. } => entries.iter().map(Entry::wire_size).sum(),
                Body::Forward { data } | Body::InstallSnapshot { data, .. } => data.len(),
                _ => 0,
            }
    }
}
