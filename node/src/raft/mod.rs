//! The sans-IO Raft core: Raft as a deterministic state machine.
//!
//! No threads, clocks, sockets, files or global RNG live here (enforced by `clippy.toml`). The
//! world talks to the core through one path, in the style of quinn-proto:
//!
//! - [`Raft::step`] takes an [`Input`]: a tick, a message, a proposal, a read, a finished persist.
//! - [`Raft::poll_action`] hands out [`Action`]s, in order, until it returns `None`: persist this,
//!   send that, apply these, this read is ready, the role changed.
//!
//! The same `Vec<Input>` always yields the same actions, so a run replays exactly; the simulator,
//! the runtime and the scripted tests all drive this same code.
//!
//! **The durability barrier lives here** (Figure 2 "Persistent state … updated on stable storage
//! before responding to RPCs"): every `Persist` action has an id, the runtime reports
//! `Persisted { upto }` when all persists up to that id are durable, and no message that promises
//! durability — a vote request, a vote, an append acknowledgement — leaves before every persist
//! issued before it is covered. Such a message waiting for the batch this step opened rides on
//! that batch, in [`Persist::then_send`]: the writer sends it itself right after the sync, which
//! saves the hop back through the core. One waiting for a batch emitted in an earlier step (still
//! in flight) is held in the core and released as [`Action::Send`] at `Persisted`. A leader
//! counts itself toward a commit quorum only for entries its own storage has acknowledged; it
//! sends AppendEntries to followers in parallel with its own write (thesis §10.2.1).
//!
//! Files: `election.rs` (§5.2, PreVote, CheckQuorum), `replication.rs` (§5.3, §5.4.2, pipelining),
//! `read.rs` (ReadIndex, thesis §6.4), `transfer.rs` (leadership transfer, thesis §3.10),
//! `log.rs` (the log and its snapshot base), `snapshot.rs` (snapshots, compaction and their
//! transfer, §7), `progress.rs` (per-follower replication state),
//! `message.rs` (the messages), `rng.rs` (the seeded jitter), `config_error.rs` (why a
//! configuration is refused).

mod change;
mod config_error;
mod configs;
mod election;
mod log;
pub mod membership;
mod message;
mod progress;
pub mod quorum;
mod read;
mod replication;
pub(crate) mod rng;
mod snapshot;
pub mod snapshot_frame;
#[cfg(any(test, feature = "sim"))]
pub mod testkit;
#[cfg(test)]
mod tests;
mod transfer;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

pub use self::change::{ChangeOutcome, ChangeRefused, REMOVAL_NOTICE_HEARTBEATS};
pub use self::config_error::ConfigError;
use self::configs::Configurations;
pub use self::log::RaftLog;
use self::membership::{Membership, Step};
pub use self::message::{
    Body, Conflict, ENTRY_OVERHEAD, Entry, EntryKind, MESSAGE_OVERHEAD, Message, NodeId,
};
pub use self::progress::{Progress, ProgressState};
use self::quorum::Joint;
use self::read::ReadState;
use self::rng::Rng;
use self::snapshot::Incoming;
pub use self::snapshot::{OutgoingSnapshot, SnapshotImage};
use self::transfer::Transfer;

/// Identifies a [`Persist`] action. Ids increase by one per action, from 1.
pub type PersistId = u64;

/// How a node is set up. Times are in ticks (the runtime's tick is 10 ms by default).
#[derive(Clone, Debug)]
pub struct Config {
    /// This node.
    pub id: NodeId,
    /// The voters the cluster was bootstrapped with, this node included: the configuration in
    /// force until the log or a snapshot holds one. Ignored when `joining`.
    pub voters: Vec<NodeId>,
    /// How to reach each bootstrap voter (opaque to the core; the runtime's addresses). A voter
    /// without one gets an empty address.
    pub addresses: BTreeMap<NodeId, Vec<u8>>,
    /// This node joins a running cluster: it starts knowing no configuration and learns one
    /// from its leader's log or snapshot, and is a member only once a change adds it.
    pub joining: bool,
    /// A voter being added is promoted once a round of catch-up takes less than the minimum
    /// election timeout; after this many rounds the change fails. Default 10 (thesis §4.2.1).
    pub catch_up_rounds: u32,
    /// … or once one round takes longer than this many ticks. Default 3,000 (30 s).
    pub catch_up_round_ticks: u32,
    /// A leader sends heartbeats this often. Default 5 (50 ms).
    pub heartbeat_ticks: u32,
    /// Election timeouts are drawn uniformly from `[min, max)`. Default [15, 30) (150–300 ms).
    pub election_ticks: (u32, u32),
    /// PreVote (thesis §9.6): a node must win a pre-election before it bumps its term.
    pub pre_vote: bool,
    /// CheckQuorum (thesis §6.2): a leader that has not heard from a quorum within an election
    /// timeout steps down, and voters that heard from a leader within the minimum election
    /// timeout ignore vote requests (the leader lease).
    pub check_quorum: bool,
    /// The largest message on the wire (the datagram limit). AppendEntries carry as many entries
    /// as fit; a larger single proposal is refused. Default 65,000.
    pub max_message_bytes: usize,
    /// At most this many AppendEntries in flight to one follower. Default 64.
    pub max_inflight_messages: usize,
    /// At most this many bytes of AppendEntries in flight to one follower. Default 4 MiB.
    pub max_inflight_bytes: usize,
    /// Snapshot data bytes per InstallSnapshot chunk; a chunk must fit one message. Default
    /// `max_message_bytes - MESSAGE_OVERHEAD`, kept so by [`Config::set_max_message_bytes`].
    pub snapshot_chunk_bytes: usize,
    /// At most this many snapshot chunks in flight to one follower. Default 2: two full chunks
    /// (2 × 65,000 bytes) fit Linux's default socket receive buffer (212,992 bytes); four did
    /// not, and every overflow cost a resend (measured on loopback: 8 MB/s with 4 before fast
    /// retransmit, 216–241 MB/s with 2–4 after; docs/performance.md).
    pub snapshot_inflight_chunks: usize,
    /// Entries kept behind a snapshot's index when compacting, so that a slightly slow
    /// follower still catches up from the log. Default 5,000 (etcd's SnapshotCatchUpEntries).
    pub snapshot_trailing_entries: u64,
    /// Seed of the election jitter.
    pub seed: u64,
    /// Classic bugs, for the simulator's tests of its own teeth. Only read with feature
    /// `planted-bugs` (never in a build that serves).
    pub faults: Faults,
}

impl Config {
    /// The defaults for node `id` of a cluster of `voters`.
    pub fn new(id: NodeId, voters: Vec<NodeId>) -> Config {
        Config {
            id,
            voters,
            addresses: BTreeMap::new(),
            joining: false,
            catch_up_rounds: 10,
            catch_up_round_ticks: 3_000,
            heartbeat_ticks: 5,
            election_ticks: (15, 30),
            pre_vote: true,
            check_quorum: true,
            max_message_bytes: 65_000,
            max_inflight_messages: 64,
            max_inflight_bytes: 4 << 20,
            snapshot_chunk_bytes: 65_000 - MESSAGE_OVERHEAD,
            snapshot_inflight_chunks: 2,
            snapshot_trailing_entries: 5_000,
            seed: id,
            faults: Faults::default(),
        }
    }

    /// What is wrong with this configuration, if anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == 0 {
            return Err(ConfigError::ReservedId);
        }
        if self.joining {
            // No bootstrap voters: the configuration comes from the cluster.
        } else if !self.voters.contains(&self.id) {
            return Err(ConfigError::NotAVoter {
                id: self.id,
                voters: self.voters.clone(),
            });
        }
        let mut sorted = self.voters.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if !self.joining && (sorted.len() != self.voters.len() || sorted.first() == Some(&0)) {
            return Err(ConfigError::InvalidVoters {
                voters: self.voters.clone(),
            });
        }
        let (min, max) = self.election_ticks;
        if self.heartbeat_ticks == 0 || min <= self.heartbeat_ticks || max <= min {
            return Err(ConfigError::TicksOutOfOrder {
                heartbeat: self.heartbeat_ticks,
                min,
                max,
            });
        }
        let min_message_bytes = MESSAGE_OVERHEAD + ENTRY_OVERHEAD + 1;
        if self.max_message_bytes < min_message_bytes {
            return Err(ConfigError::MessageTooSmall {
                max_message_bytes: self.max_message_bytes,
                min: min_message_bytes,
            });
        }
        if self.max_inflight_messages == 0 || self.max_inflight_bytes == 0 {
            return Err(ConfigError::EmptyInflightWindow {
                messages: self.max_inflight_messages,
                bytes: self.max_inflight_bytes,
            });
        }
        let max_chunk_bytes = self.max_message_bytes - MESSAGE_OVERHEAD;
        if self.snapshot_chunk_bytes == 0 || self.snapshot_chunk_bytes > max_chunk_bytes {
            return Err(ConfigError::SnapshotChunkOutOfRange {
                chunk_bytes: self.snapshot_chunk_bytes,
                max: max_chunk_bytes,
            });
        }
        if self.snapshot_inflight_chunks == 0 {
            return Err(ConfigError::NoSnapshotChunksInFlight);
        }
        Ok(())
    }

    /// Sets the largest message on the wire, and the snapshot chunk that goes with it (the
    /// largest that fits one message), the two together as the defaults have them.
    pub fn set_max_message_bytes(&mut self, max_message_bytes: usize) {
        self.max_message_bytes = max_message_bytes;
        self.snapshot_chunk_bytes = max_message_bytes.saturating_sub(MESSAGE_OVERHEAD);
    }

    /// The configuration the cluster was bootstrapped with (`None` when joining).
    pub fn bootstrap_membership(&self) -> Option<Membership> {
        (!self.joining).then(|| {
            Membership::bootstrap(self.voters.iter().map(|&id| {
                let address = self.addresses.get(&id).cloned().unwrap_or_default();
                (id, address)
            }))
        })
    }

    /// The largest proposal that fits in one message.
    pub fn max_proposal_bytes(&self) -> usize {
        self.max_message_bytes
            .saturating_sub(MESSAGE_OVERHEAD + ENTRY_OVERHEAD)
    }
}

/// Switches for classic Raft bugs. The simulator turns one on and must catch it; nothing else
/// ever does. Without feature `planted-bugs` they are compiled out: the core ignores them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Send vote grants and append acknowledgements before they are durable.
    pub ack_before_persist: bool,
    /// Commit entries of earlier terms by counting replicas (the Figure 8 bug).
    pub commit_old_terms_by_counting: bool,
    /// Grant votes without the §5.4.1 up-to-date check.
    pub vote_without_log_check: bool,
    /// Forget the vote on restart.
    pub forget_vote_on_restart: bool,
    /// A leader labels the snapshot it sends with its current term instead of the term of the
    /// snapshot's last entry, so the follower's log base claims a term that entry never had.
    pub snapshot_with_current_term: bool,
    /// A follower that accepts an AppendEntries acknowledges its last index rather than the
    /// last index the append matched, vouching for a stale tail the leader never sent.
    pub ack_beyond_match: bool,
    /// While a configuration is joint, count only `C_new`'s majority.
    pub joint_counts_only_new: bool,
    /// Count learners in the voters' majority.
    pub learner_counted: bool,
    /// Allow a second change while the first is uncommitted or joint (a second `C_old,new`
    /// built from the first's `C_new` before the first finished).
    pub overlapping_changes: bool,
    /// A leader outside `C_new` counts its own log toward `C_new`'s majority when committing.
    pub leader_counts_itself_outside_config: bool,
}

/// What survives a restart: the hard state, the snapshot base and the log after it.
#[derive(Clone, Debug, Default)]
pub struct Restored {
    /// Term, vote and commit index.
    pub hard_state: HardState,
    /// Index and term of the last entry the snapshot covers ((0, 0) without one).
    pub snapshot: (u64, u64),
    /// The entries after the snapshot.
    pub entries: Vec<Entry>,
    /// The bytes of the snapshot at `snapshot`, so that a restarted leader can send it to a
    /// follower behind its log base (`None` without a snapshot, or if the runtime keeps none).
    pub snapshot_data: Option<Arc<Vec<u8>>>,
}

/// The state Raft keeps on stable storage besides the log (Figure 2), with the commit index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    /// Latest term seen.
    pub term: u64,
    /// Voted for in `term` (0: nobody).
    pub vote: NodeId,
    /// Highest index known committed (kept for a faster restart; not needed for safety).
    pub commit: u64,
}

/// A node's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader, or waits for one.
    Follower,
    /// Runs a pre-election: asks whether it could win, without bumping its term.
    PreCandidate,
    /// Runs an election in its own new term.
    Candidate,
    /// Leads its term.
    Leader,
}

/// Everything the world can tell the core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// One tick of logical time passed.
    Tick,
    /// A message from another node.
    Message {
        /// Its sender.
        from: NodeId,
        /// The message.
        msg: Message,
    },
    /// A client command to replicate. Answered by an [`Action::Proposal`] with the same `id`.
    Propose {
        /// The caller's tag.
        id: u64,
        /// The command.
        data: Vec<u8>,
    },
    /// A linearizable read (ReadIndex). Answered by [`Action::ReadReady`] or
    /// [`Action::ReadRefused`] with the same `ctx`.
    ReadIndex {
        /// The caller's tag. A follower sends it to the leader and matches the answer by it, so
        /// it must not repeat across the node's restarts either: a late answer to an earlier
        /// incarnation's read would serve a new read under the same tag (the replica's tags
        /// start where its driver says, `Replica::with_first_tag`).
        ctx: u64,
    },
    /// Every [`Persist`] action with an id up to `upto` is durable.
    Persisted {
        /// The newest durable persist id.
        upto: PersistId,
    },
    /// Hand leadership to `to` (thesis §3.10).
    TransferLeadership {
        /// The node to hand it to.
        to: NodeId,
    },
    /// The runtime serialised the state machine as of applied index `index` and made that
    /// snapshot durable. The core sends it to followers behind its log, compacts its log to
    /// `index - snapshot_trailing_entries` and emits [`Action::Compact`]. Ignored unless `index`
    /// is above the current snapshot's and at most the applied index.
    SnapshotSaved {
        /// The last index the snapshot covers.
        index: u64,
        /// The serialised state machine.
        data: Arc<Vec<u8>>,
    },
    /// Change the cluster's membership by `steps`, as one joint change (Raft §6). Only the leader
    /// takes it; answered by [`Action::MembershipChange`] with the same `id` once the change
    /// completed (its `C_new` committed) or failed.
    ChangeMembership {
        /// The caller's tag.
        id: u64,
        /// What to change.
        steps: Vec<Step>,
    },
    /// The runtime finished an [`Action::InstallSnapshot`]: the snapshot is durable, the WAL
    /// was reset by Figure 13's rules 6/7 and the state machine restored from it.
    SnapshotInstalled {
        /// The snapshot's index.
        index: u64,
    },
}

/// A write the runtime must make durable, in id order, then report with [`Input::Persisted`].
/// Carry it out in this order: truncate, append, hard state, sync (this persist and every one
/// before it must be durable), then send `then_send`, then report `Persisted`. A crash before the
/// sync loses `then_send` with the write: those messages must never leave.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Persist {
    /// Its id.
    pub id: PersistId,
    /// Remove every stored entry at or after this index first.
    pub truncate_from: Option<u64>,
    /// Entries to append.
    pub entries: Vec<Entry>,
    /// The hard state to store, when it changed.
    pub hard_state: Option<HardState>,
    /// Messages to send once this persist (and every one before it) is durable — the writer
    /// sends them itself, right after the sync, so they skip a hop. In the order the core
    /// queued them: `(receiver, message)`.
    pub then_send: Vec<(NodeId, Message)>,
}

/// Why a proposal was not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposeError {
    /// No leader is known, or none was heard from within the minimum election timeout
    /// ([`Raft::redirect`]); `hint` is the last one known, if any.
    NoLeader {
        /// A node that led recently.
        hint: Option<NodeId>,
    },
    /// The command does not fit in one message.
    TooLarge {
        /// Its size.
        size: usize,
        /// The largest that fits.
        max: usize,
    },
    /// The leader is handing over leadership and accepts nothing meanwhile.
    TransferInProgress {
        /// The node taking over.
        to: NodeId,
    },
}

/// What became of a proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposalOutcome {
    /// Appended to the leader's log at `index` in `term`. It commits if that entry does.
    Accepted {
        /// Its index.
        index: u64,
        /// Its term.
        term: u64,
    },
    /// Passed on to the leader, who answers through the state machine.
    Forwarded {
        /// The leader it went to.
        to: NodeId,
    },
    /// Refused.
    Refused(ProposeError),
}

/// Everything the core asks of the world.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Make this durable, send its `then_send`, then report it with [`Input::Persisted`].
    Persist(Persist),
    /// Send a message.
    Send {
        /// Receiver.
        to: NodeId,
        /// The message.
        msg: Message,
    },
    /// Apply these committed entries to the state machine, in order.
    Apply {
        /// The entries, contiguous and ascending.
        entries: Vec<Entry>,
    },
    /// The answer to a proposal.
    Proposal {
        /// The caller's tag.
        id: u64,
        /// What became of it.
        outcome: ProposalOutcome,
    },
    /// The read tagged `ctx` may be served once the state machine has applied `index`.
    ReadReady {
        /// The caller's tag.
        ctx: u64,
        /// The read index.
        index: u64,
    },
    /// The read tagged `ctx` cannot be served here; `redirect` says where to go instead.
    ReadRefused {
        /// The caller's tag.
        ctx: u64,
        /// The leader to ask, or none known and a hint.
        redirect: Redirect,
    },
    /// What became of the membership change tagged `id`.
    MembershipChange {
        /// The caller's tag.
        id: u64,
        /// Completed, or why not.
        outcome: ChangeOutcome,
    },
    /// A leadership transfer to `to` was given up.
    TransferAborted {
        /// The target.
        to: NodeId,
        /// Why.
        reason: &'static str,
    },
    /// Append `data` to the snapshot being received at `offset` (0: start a new temporary
    /// file, dropping any partial one). Not durable yet; nothing waits for it.
    SnapshotChunk {
        /// The snapshot's last index.
        index: u64,
        /// Its term.
        term: u64,
        /// Where `data` goes.
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
        /// The whole snapshot's size.
        size: u64,
        /// Its CRC-32.
        crc: u32,
    },
    /// Every chunk arrived: once every persist emitted before this action is durable and
    /// reported (`Persisted`; the core asserts it at `SnapshotInstalled`), check the file
    /// against `size` and `crc`, make it the node's snapshot durably, reset the WAL by Figure 13's rules (if it holds an entry at `index`
    /// with term `term`, keep the entries after it; else keep none after the base
    /// (`index`, `term`)), raise the stored commit index to at least `index`, keep term and
    /// vote, restore the state machine from `data`, then report [`Input::SnapshotInstalled`].
    /// A crash at any point must leave the old state or the new one.
    InstallSnapshot {
        /// The snapshot's last index.
        index: u64,
        /// Its term.
        term: u64,
        /// Its size.
        size: u64,
        /// Its CRC-32.
        crc: u32,
        /// Its bytes, as the core assembled and checked them: what the state machine restores
        /// from (the file holds the same bytes; reading them back would only copy them again).
        data: Arc<Vec<u8>>,
    },
    /// A snapshot covers the log up to here and beyond: stored entries at or below `upto` may
    /// be dropped (the WAL drops the segments wholly at or below it). Carry it out after every
    /// persist emitted before it: one of those may still rewrite entries it would drop.
    Compact {
        /// The new log base.
        upto: u64,
    },
    /// The role, term or known leader changed.
    RoleChanged {
        /// The new role.
        role: Role,
        /// The current term.
        term: u64,
        /// The known leader.
        leader: Option<NodeId>,
    },
}

/// Where a node that does not serve a request only a leader serves (a write, a linearizable
/// read) points its client ([`Raft::redirect`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Redirect {
    /// The leader this node follows and heard from within the minimum election timeout: the
    /// one to ask. `None`: no leader known now.
    pub leader: Option<NodeId>,
    /// The best node to try: `leader` when there is one, else the leader this node last heard
    /// of (which it lost touch with), if any. Never this node.
    pub hint: Option<NodeId>,
}

/// A summary for status pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Current term.
    pub term: u64,
    /// Vote in the current term.
    pub vote: NodeId,
    /// Known leader.
    pub leader: Option<NodeId>,
    /// Commit index.
    pub commit_index: u64,
    /// Highest index handed out for applying.
    pub applied_index: u64,
    /// Last log index.
    pub last_index: u64,
    /// Highest index durable in the local log.
    pub stable_index: u64,
    /// The newest snapshot's index, saved, installed or restored (0: none).
    pub snapshot_index: u64,
    /// The first entry still in the in-memory log.
    pub first_index: u64,
    /// A snapshot being received from the leader: its index and the bytes received so far.
    pub receiving_snapshot: Option<(u64, u64)>,
}

/// Bookkeeping of the durability barrier.
///
/// Invariants: `durable_id <= issued_id`; `held` is ordered by the id each message waits for,
/// and no id there exceeds `issued_id`; once `open` is emitted, no held message waits for its id
/// (they moved into its `then_send`); `attached` holds ids above `durable_id` only, ascending;
/// `stable_index` never exceeds the log's last index, and every entry up to it is durable.
#[derive(Debug, Default)]
struct Durability {
    /// The batch collecting this step's writes, emitted at the next `poll_action`.
    open: Option<Persist>,
    /// The newest id handed out (to `open` or an emitted batch).
    issued_id: PersistId,
    /// The newest id reported durable.
    durable_id: PersistId,
    /// `(id, last index after that batch)` for batches not yet durable, ascending.
    pending_ranges: VecDeque<(PersistId, u64)>,
    /// Every entry up to here is durable in the current log.
    stable_index: u64,
    /// Messages waiting for an emitted persist id to become durable, released at `Persisted`.
    held: VecDeque<(PersistId, NodeId, Message)>,
    /// `(id, how many messages)` for emitted batches not yet durable that carry messages in
    /// their `then_send`, ascending: those messages still wait for durability, in the writer.
    attached: VecDeque<(PersistId, usize)>,
    /// The hard state in the newest batch (what storage will hold).
    written_hard_state: HardState,
    /// The newest batch that writes a term or a vote other than the batch before it: every
    /// message of the current term relies on it (0: none since the start).
    term_vote_id: PersistId,
}

impl Durability {
    /// The stored log now ends at `last` at most (a truncation, or a snapshot replacing it):
    /// nothing after it is durable, now or once the batches in flight land.
    fn cut_after(&mut self, last: u64) {
        self.stable_index = self.stable_index.min(last);
        for (_, batch_last) in &mut self.pending_ranges {
            *batch_last = (*batch_last).min(last);
        }
    }

    /// Moves every held message waiting for `batch` (about to be emitted) into its `then_send`.
    /// They are the back of `held`: ids there never decrease and never exceed `batch.id`, the
    /// newest issued. Messages waiting for an earlier batch stay held until `Persisted`.
    fn attach_held(&mut self, batch: &mut Persist) {
        assert_eq!(batch.id, self.issued_id, "the open batch has the newest id");
        let first_waiting = self
            .held
            .partition_point(|(needed, _, _)| *needed < batch.id);
        if first_waiting == self.held.len() {
            return;
        }
        let count = self.held.len() - first_waiting;
        batch.then_send.extend(
            self.held
                .drain(first_waiting..)
                .map(|(_, to, msg)| (to, msg)),
        );
        self.attached.push_back((batch.id, count));
    }
}

/// One Raft node. See the module documentation.
#[derive(Debug)]
pub struct Raft {
    config: Config,
    /// The voters of the configuration in force: every decision is counted through it
    /// (`quorum.rs`). Empty while no configuration is known (a joining node).
    voters: Joint,
    /// The configurations in the log, and which is in force (`configs.rs`).
    configs: Configurations,
    /// Leader: the membership change it drives (`change.rs`).
    change: Option<change::PendingChange>,
    /// Leader: members removed by a configuration, still sent to until they know it: id →
    /// (index of that configuration, heartbeats left once they hold it committed).
    retiring: BTreeMap<NodeId, (u64, u32)>,
    /// Latest term seen (persistent). Never decreases.
    term: u64,
    /// Voted for in `term` (persistent; 0: nobody). Set at most once per term.
    vote: NodeId,
    log: RaftLog,
    role: Role,
    /// The leader of `term`, once known.
    leader: Option<NodeId>,
    /// The last leader known in any term, for hints.
    last_leader: Option<NodeId>,
    /// Ticks since the last heartbeat from a leader (follower) or since the election started;
    /// on a leader, ticks since the last CheckQuorum round.
    election_elapsed: u32,
    /// Leader: ticks since the last heartbeat.
    heartbeat_elapsed: u32,
    /// This round's election timeout, drawn from `config.election_ticks`.
    election_timeout: u32,
    /// Votes received this election (PreCandidate, Candidate): voter → granted.
    votes: BTreeMap<NodeId, bool>,
    /// Leader: what it knows of every other member (voters, learners, retiring members).
    progress: BTreeMap<NodeId, Progress>,
    rng: Rng,
    durability: Durability,
    actions: VecDeque<Action>,
    /// Leader: new entries wait to be sent, batched, at the next `poll_action`.
    broadcast_due: bool,
    reads: ReadState,
    transfer: Option<Transfer>,
    /// The newest snapshot's bytes, if held (saved, installed or restored): what a leader sends.
    /// Without it, the newest snapshot is the log's base (see `snapshot_index`).
    snapshot: Option<SnapshotImage>,
    /// Follower: a snapshot being received or installed.
    incoming: Incoming,
}

impl Raft {
    /// A node starting from `restored` (all of it durable), as a follower.
    pub fn new(config: Config, restored: Restored) -> Result<Raft, ConfigError> {
        config.validate()?;
        let (snapshot_index, snapshot_term) = restored.snapshot;
        let configs = restored_configurations(&config, &restored)?;
        let log = RaftLog::restore(
            snapshot_index,
            snapshot_term,
            restored.entries,
            restored.hard_state.commit,
        );
        let mut hard_state = restored.hard_state;
        if config.faults.forget_vote_on_restart && cfg!(feature = "planted-bugs") {
            hard_state.vote = 0;
        }
        let stable_index = log.last_index();
        let snapshot = restored
            .snapshot_data
            .filter(|_| snapshot_index > 0)
            .map(|data| SnapshotImage::new(snapshot_index, snapshot_term, data));
        let mut raft = Raft {
            rng: Rng::new(config.seed ^ config.id.rotate_left(32)),
            config,
            voters: Joint::default(),
            configs,
            change: None,
            retiring: BTreeMap::new(),
            term: hard_state.term,
            vote: hard_state.vote,
            log,
            role: Role::Follower,
            leader: None,
            last_leader: None,
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            election_timeout: 0,
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            durability: Durability {
                stable_index,
                written_hard_state: hard_state,
                ..Durability::default()
            },
            actions: VecDeque::new(),
            broadcast_due: false,
            reads: ReadState::default(),
            transfer: None,
            snapshot,
            incoming: Incoming::Idle,
        };
        raft.voters = raft.quorum_in_force();
        raft.reset_election_timeout();
        // What was committed before the restart is applied again at once: the state machine
        // starts from the snapshot, not from where it was before the crash.
        let committed = raft.log.take_committed();
        if !committed.is_empty() {
            raft.actions.push_back(Action::Apply { entries: committed });
        }
        Ok(raft)
    }

    /// Takes one input. Actions it causes come out of [`poll_action`](Raft::poll_action).
    pub fn step(&mut self, input: Input) {
        match input {
            Input::Tick => self.tick(),
            Input::Message { from, msg } => self.on_message(from, msg),
            Input::Propose { id, data } => self.propose(id, data),
            Input::ReadIndex { ctx } => self.read_index(ctx, None),
            Input::Persisted { upto } => self.on_persisted(upto),
            Input::TransferLeadership { to } => self.transfer_leadership(to),
            Input::ChangeMembership { id, steps } => self.change_membership(id, steps),
            Input::SnapshotSaved { index, data } => self.on_snapshot_saved(index, data),
            Input::SnapshotInstalled { index } => self.on_snapshot_installed(index),
        }
        self.check_invariants();
    }

    /// The next thing the core asks of the world, in order; `None` once there is nothing more.
    pub fn poll_action(&mut self) -> Option<Action> {
        loop {
            // The write first, so the runtime starts the disk while the messages go out.
            if let Some(mut persist) = self.durability.open.take() {
                self.durability.attach_held(&mut persist);
                return Some(Action::Persist(persist));
            }
            if let Some(action) = self.actions.pop_front() {
                if let (Action::InstallSnapshot { .. }, Incoming::Installing { after, .. }) =
                    (&action, &mut self.incoming)
                {
                    // Every persist emitted so far precedes the install in the runtime's order.
                    *after = self.durability.issued_id;
                }
                return Some(action);
            }
            if self.broadcast_due {
                self.broadcast_due = false;
                self.broadcast_append();
            } else if self.reads.round_due {
                self.send_read_round();
            } else {
                return None;
            }
        }
    }

    /// A summary of the node's state.
    pub fn status(&self) -> Status {
        Status {
            id: self.config.id,
            role: self.role,
            term: self.term,
            vote: self.vote,
            leader: self.leader,
            commit_index: self.log.commit_index(),
            applied_index: self.log.applied_index(),
            last_index: self.log.last_index(),
            stable_index: self.durability.stable_index,
            snapshot_index: self.snapshot_index(),
            first_index: self.log.first_index(),
            receiving_snapshot: self.incoming.progress(),
        }
    }

    /// This node's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The newest snapshot's index (saved, installed or restored): the one held, else the log's
    /// base (a restart without the snapshot's bytes, or none yet: 0).
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot
            .as_ref()
            .map_or(self.log.base().0, |image| image.index)
    }

    /// The newest snapshot this node holds in memory (saved, installed or restored at start),
    /// if any: what a follower behind the log is sent, and what a client reading the node's
    /// snapshot (`balsa snapshot save`) is given.
    pub fn snapshot_image(&self) -> Option<&SnapshotImage> {
        self.snapshot.as_ref()
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// The log (read-only), for tests and the simulator's checks.
    pub fn log(&self) -> &RaftLog {
        &self.log
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Messages waiting for a persist to become durable: those held here, released at
    /// `Persisted`, and those attached to an emitted persist's `then_send` that has not been
    /// reported durable yet.
    pub fn held_messages(&self) -> usize {
        let attached: usize = self.durability.attached.iter().map(|(_, n)| n).sum();
        self.durability.held.len() + attached
    }

    /// Whether [`poll_action`](Raft::poll_action) has nothing to hand out: no action queued, no
    /// write open, no broadcast or read round due. For the checks of
    /// [`ticks_until_due`](Raft::ticks_until_due)'s rule.
    pub fn is_quiet(&self) -> bool {
        self.actions.is_empty()
            && self.durability.open.is_none()
            && !self.broadcast_due
            && !self.reads.round_due
    }

    fn faults(&self) -> Faults {
        if cfg!(feature = "planted-bugs") {
            self.config.faults
        } else {
            Faults::default()
        }
    }

    /// The voters other than this node: whom a candidate asks for votes.
    fn voting_peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        let me = self.config.id;
        self.voters.voters().filter(move |&id| id != me)
    }

    /// Leader: every node it replicates to (voters, learners, members being retired).
    fn replication_targets(&self) -> Vec<NodeId> {
        self.progress.keys().copied().collect()
    }

    /// Queues a message. One that promises durability waits for every persist issued so far.
    fn send(&mut self, to: NodeId, body: Body) {
        assert_ne!(to, self.config.id, "a node never messages itself");
        let msg = Message {
            term: self.term,
            body,
        };
        let promises_durability = matches!(
            msg.body,
            Body::RequestVote {
                pre_vote: false,
                ..
            } | Body::RequestVoteResponse {
                pre_vote: false,
                ..
            } | Body::AppendEntriesResponse { .. }
        );
        let needed = self.needed_for(&msg.body);
        if promises_durability
            && needed > self.durability.durable_id
            && !self.faults().ack_before_persist
        {
            // Held messages wait in the order they were sent, for ids that never decrease
            // (`attach_held` relies on it): one that needs less than the one before it waits
            // as long (only an answer whose term is not durable yet is held for less).
            let held = &mut self.durability.held;
            let needed = held
                .back()
                .map_or(needed, |(before, _, _)| needed.max(*before));
            held.push_back((needed, to, msg));
        } else {
            self.actions.push_back(Action::Send { to, msg });
        }
    }

    /// The newest batch a promising message relies on. An AppendEntries answer relies on the
    /// term it carries and, on success, on the entries up to the index it claims: when those
    /// are durable already (a heartbeat's answer, as a rule: its `prev_index` is what the
    /// follower acknowledged before), it relies on the term alone, so a follower whose disk is
    /// slow with newer entries still answers its leader's heartbeats at once — a leader hears
    /// from it, keeps its lease (CheckQuorum) and confirms its reads. Anything else relies on
    /// every batch issued so far (a vote on the term and the vote; an ack of new entries on
    /// the batch that wrote them, or a later one).
    fn needed_for(&self, body: &Body) -> PersistId {
        let durability = &self.durability;
        match body {
            Body::AppendEntriesResponse {
                index, conflict, ..
            } if conflict.is_some() || *index <= durability.stable_index => durability.term_vote_id,
            _ => durability.issued_id,
        }
    }

    /// The batch this step's writes go into, opened with a fresh id if none is open.
    fn open_batch(&mut self) -> &mut Persist {
        let durability = &mut self.durability;
        durability.open.get_or_insert_with(|| {
            durability.issued_id += 1;
            Persist {
                id: durability.issued_id,
                ..Persist::default()
            }
        })
    }

    /// Writes term and vote (and the current commit index) in this step's batch.
    fn persist_hard_state(&mut self) {
        let hard_state = self.hard_state();
        let id = self.open_batch().id;
        self.open_batch().hard_state = Some(hard_state);
        self.note_written_hard_state(id, hard_state);
    }

    /// `hard_state` goes into batch `id`: from it on, what storage will hold.
    fn note_written_hard_state(&mut self, id: PersistId, hard_state: HardState) {
        let durability = &mut self.durability;
        let written = durability.written_hard_state;
        if (written.term, written.vote) != (hard_state.term, hard_state.vote) {
            durability.term_vote_id = id;
        }
        durability.written_hard_state = hard_state;
    }

    /// Writes appended entries (after an optional truncation) in this step's batch.
    fn persist_entries(&mut self, truncate_from: Option<u64>, entries: Vec<Entry>) {
        let hard_state = self.hard_state();
        let last_index = self.log.last_index();
        let durability = &mut self.durability;
        if let Some(from) = truncate_from {
            durability.cut_after(from - 1);
        }
        let batch = self.open_batch();
        if let Some(from) = truncate_from {
            let batch_first = batch.entries.first().map(|entry| entry.index);
            batch.entries.retain(|entry| entry.index < from);
            if batch_first.is_none_or(|first| from <= first) {
                batch.truncate_from = Some(batch.truncate_from.map_or(from, |t| t.min(from)));
            }
        }
        batch.entries.extend(entries);
        let id = batch.id;
        // Piggyback the commit index on every write: it costs nothing and speeds a restart.
        if hard_state != self.durability.written_hard_state {
            self.open_batch().hard_state = Some(hard_state);
            self.note_written_hard_state(id, hard_state);
        }
        let ranges = &mut self.durability.pending_ranges;
        match ranges.back_mut() {
            Some((last_id, last)) if *last_id == id => *last = last_index,
            _ => ranges.push_back((id, last_index)),
        }
    }

    fn on_persisted(&mut self, upto: PersistId) {
        assert!(
            upto <= self.durability.issued_id,
            "persist {upto} was never issued"
        );
        let durability = &mut self.durability;
        if upto <= durability.durable_id {
            return;
        }
        durability.durable_id = upto;
        while let Some(&(id, last)) = durability.pending_ranges.front() {
            if id > upto {
                break;
            }
            durability.stable_index = durability.stable_index.max(last);
            durability.pending_ranges.pop_front();
        }
        while durability
            .attached
            .front()
            .is_some_and(|(id, _)| *id <= upto)
        {
            durability.attached.pop_front();
        }
        while let Some((needed, _, _)) = durability.held.front() {
            if *needed > upto {
                break;
            }
            let (_, to, msg) = durability.held.pop_front().expect("front exists");
            self.actions.push_back(Action::Send { to, msg });
        }
        match self.role {
            Role::Leader => self.maybe_commit(),
            // A candidate that won on its own vote leads now that the vote is durable.
            Role::Candidate => {
                self.tally();
            }
            Role::Follower | Role::PreCandidate => {}
        }
    }

    /// Raises the commit index and hands the newly committed entries out for applying.
    fn commit_to(&mut self, index: u64) {
        if self.log.commit_to(index) {
            let entries = self.log.take_committed();
            if !entries.is_empty() {
                self.actions.push_back(Action::Apply { entries });
            }
            if self.role == Role::Leader {
                self.on_leader_commit();
                self.on_configuration_commit();
            }
        }
    }

    fn notify_role(&mut self) {
        self.actions.push_back(Action::RoleChanged {
            role: self.role,
            term: self.term,
            leader: self.leader,
        });
    }

    /// Checks the invariants that span modules, after every step. They are O(1), so they stay
    /// on in release builds (the README's test command runs in release).
    fn check_invariants(&self) {
        assert!(self.durability.durable_id <= self.durability.issued_id);
        assert!(self.durability.stable_index <= self.log.last_index());
        assert!(self.durability.stable_index >= self.log.base().0);
        assert!(self.snapshot_index() >= self.log.base().0);
        assert!(!self.installing() || self.role != Role::Leader);
        assert!(self.log.applied_index() <= self.log.commit_index());
        assert!(self.log.commit_index() <= self.log.last_index());
        assert!(self.role != Role::Leader || self.leader == Some(self.config.id));
        assert!(self.role == Role::Leader || self.progress.is_empty());
        assert!(self.role != Role::Candidate || self.vote == self.config.id);
        assert!(self.configs.in_force_index() >= self.log.base().0);
        assert!(self.configs.in_force_index() <= self.log.last_index());
        assert!(self.role != Role::Leader || self.configs.in_force().is_some());
        assert!(self.change.is_none() || self.role == Role::Leader);
        assert!(
            self.retiring
                .keys()
                .all(|id| self.progress.contains_key(id))
        );
    }
}

/// The configurations of a restarted node: the snapshot's (or, without one, the bootstrap
/// configuration), then every configuration entry of the log after it.
fn restored_configurations(
    config: &Config,
    restored: &Restored,
) -> Result<Configurations, ConfigError> {
    let (snapshot_index, _) = restored.snapshot;
    let framed = match &restored.snapshot_data {
        Some(data) if snapshot_index > 0 => Some(
            snapshot_frame::unframe(data)
                .map_err(|error| ConfigError::UnreadableSnapshot {
                    index: snapshot_index,
                    reason: error.to_string(),
                })?
                .membership,
        ),
        _ => None,
    };
    // A snapshot of an earlier version (no frame) or none at all: the bootstrap configuration.
    let base = framed.flatten().or_else(|| config.bootstrap_membership());
    let mut configs = Configurations::new(snapshot_index, base);
    for entry in &restored.entries {
        if entry.kind == EntryKind::Config {
            let membership = Membership::decode(&entry.data).map_err(|error| {
                ConfigError::UnreadableConfiguration {
                    index: entry.index,
                    reason: error.to_string(),
                }
            })?;
            configs.appended(entry.index, membership);
        }
    }
    Ok(configs)
}
