//! The replica: one node's Raft core, its state machine and everything between them, sans-IO.
//!
//! The runtime's consensus thread and the simulator drive this same type, so the code that
//! ships is the code the simulator judges (TigerBeetle's shape: the simulator runs the real
//! replica over simulated storage and network). A replica takes inputs — a tick, a peer's
//! message, a client's datagram, an embedding API call, what storage finished — and hands out
//! [`Effect`]s from [`Replica::poll_effect`]: send this message, answer this client, reply to
//! this API caller, and the [`StorageOp`]s its storage must carry out (in the order of
//! [`storage::stages`]). Between the two it owns:
//!
//! - applying committed entries to the state machine, in log order, and answering whoever waits
//!   for them: an API caller (by index and term), or a network client whose address rides inside
//!   the entry (`wire::frame`), answered by whichever node leads when the entry is applied
//!   (a follower forwards a client's command through the core; thesis §6.2);
//! - linearizable reads (ReadIndex, thesis §6.4): served once the read index is applied here;
//! - turning away what only a leader serves: a follower forwards a client's write or
//!   linearizable read only to a leader it heard from within the minimum election timeout, and
//!   otherwise answers `NotLeader` at once with no leader and its best hint
//!   ([`Raft::redirect`]), so a client cut off from the leader through this node moves on;
//! - membership requests from the network (`wire`'s module doc): a change in flight remembers
//!   the `(client address, token)` that started it, so a retry joins it rather than starting
//!   another, and the outcomes of the last [`RECENT_CHANGES`] changes answer retries that come
//!   after the end;
//! - the snapshot policy (§7): a snapshot once `SnapshotPolicy::entries` entries or
//!   `SnapshotPolicy::bytes` bytes were applied since the last, and at least
//!   `SnapshotPolicy::expansion` times the last snapshot's size in bytes (thesis §5.1.3), or
//!   when a client asks; one save at a time; restoring the state machine from an installed
//!   snapshot before the core hears of the install. A replica counts from a head start of `(id mod 3) / 3` of each interval
//!   ([`stagger`]), so the members of a cluster save in turn rather than together: three saves
//!   of a 7 MiB state at once, on a shared disk, stalled every WAL for 130–150 ms per sync,
//!   so no follower acknowledged anything, even a heartbeat, for longer than CheckQuorum's
//!   window, and the leader stepped down (the soak, `cargo bench --bench soak`, twice a minute
//!   at 48,000 writes/s). One follower saving at a time leaves the other to make the quorum.
//!
//! **The order of a turn's effects.** Messages leave as the core emits them; the turn's client
//! answers follow, grouped per address (clients multiplexed on one socket get one datagram);
//! the turn's storage work comes last, in the core's order. So a leader's AppendEntries start
//! the followers' writes — which the commit waits for — before its own write is queued (it runs
//! in parallel, thesis §10.2.1). No message that must wait for a persist is among the sends: the
//! core holds those, or attaches them to the persist's `then_send`.
//!
//! Invariants:
//! - An answer to a command leaves only after its entry is applied here; an answer to a
//!   linearizable read only once this replica has applied the read index.
//! - Every API waiter is answered exactly once: with its result, with an error, or (when the
//!   runtime stops) through [`Replica::take_waiters`].
//! - `applied_index` only grows, by one per entry, except when a snapshot is installed.
//! - At most one snapshot save is in flight.

pub mod storage;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use balsa_net::{Counters, DropReason};

use self::storage::{SnapshotData, StorageDone, StorageOp};
use crate::metrics::ReplicaCounts;
use crate::raft::membership::{Membership, Step};
use crate::raft::{
    self, Action, Body, ChangeOutcome, ChangeRefused, Entry, EntryKind, Message, NodeId,
    ProposalOutcome, ProposeError, Raft, Redirect, Role, Status, snapshot_frame,
};
use crate::runtime::wire::{
    self, MAX_REQUESTS_PER_DATAGRAM, MemberStep, MembersReport, RefusalKind, ReplyTo, Request,
    RequestBody, Response, ResponseBody, SnapshotPiece, StatusReport, SuspiciousSource, Wire,
};
use crate::runtime::{Error, NodeStatus, role_name};
use crate::state_machine::{RestoreError, StateMachine};

/// Restores `state_machine` from a snapshot's bytes: its own part, after the configuration the
/// core keeps in front of it (`raft/snapshot_frame.rs`). The one way every driver (the
/// replica, the runtime at a restart, the simulator) reads a snapshot into a state machine.
pub fn restore_from_snapshot<S: StateMachine>(
    state_machine: &mut S,
    data: &[u8],
) -> Result<(), RestoreError> {
    let framed =
        snapshot_frame::unframe(data).map_err(|error| RestoreError::new(error.to_string()))?;
    state_machine.restore(framed.state)
}

/// How many finished network membership changes a replica remembers the outcome of, for
/// retries whose answer was lost.
pub const RECENT_CHANGES: usize = 16;

/// The most attempts of one network membership change a replica answers (a client retrying
/// more often than that gets its newest attempts answered).
const MAX_CHANGE_WAITERS: usize = 64;

/// A network client's membership change in flight.
#[derive(Debug)]
struct ClientChange {
    /// `(client address, token)`: what a retry carries.
    key: (SocketAddr, u64),
    /// Every attempt to answer, oldest first, at most [`MAX_CHANGE_WAITERS`].
    waiters: Vec<ReplyTo>,
}

/// When a replica snapshots its state machine on its own.
#[derive(Clone, Copy, Debug)]
pub struct SnapshotPolicy {
    /// Once this many entries were applied since the last snapshot.
    pub entries: u64,
    /// Once this many bytes of entries were applied since the last snapshot.
    pub bytes: u64,
    /// The thesis' expansion factor (§5.1.3, "when to snapshot"): either threshold above waits
    /// until the bytes of entries applied since the last snapshot are at least this many times
    /// that snapshot's size. Each snapshot is then at most the one before plus the log since,
    /// so snapshots write at most `1 + 1 / expansion` bytes per byte of log (`1 / expansion`
    /// while the state does not grow), however large the state: without the wait, a state of
    /// 250 MB was written again every 64 MiB of log, four bytes of snapshot per byte of log.
    /// The price is a log (on disk, and in memory until compacted) of up to this many times
    /// the state. 0: no such wait.
    pub expansion: u64,
}

impl SnapshotPolicy {
    /// Whether a replica that applied `entries_since` entries of `bytes_since` bytes since its
    /// last snapshot, of `last_snapshot_bytes` bytes (0: none), snapshots now.
    pub fn is_due(&self, entries_since: u64, bytes_since: u64, last_snapshot_bytes: u64) -> bool {
        (entries_since >= self.entries || bytes_since >= self.bytes)
            && bytes_since >= self.expansion.saturating_mul(last_snapshot_bytes)
    }
}

/// What the world tells a replica (the embedding API's calls aside: they are methods, since
/// they carry where the answer goes).
#[derive(Debug)]
pub enum Input {
    /// One tick of logical time passed.
    Tick,
    /// A peer's message arrived.
    Peer {
        /// The peer.
        from: NodeId,
        /// The message.
        msg: Message,
    },
    /// A client's datagram arrived.
    Client {
        /// Where it came from (where the answers go).
        source: SocketAddr,
        /// The datagram.
        wire: Wire,
    },
    /// Storage finished some work.
    Storage(StorageDone),
}

/// Something the world must carry out for a replica.
#[derive(Debug)]
pub enum Effect<R> {
    /// Send a Raft message to a peer.
    Send {
        /// The peer.
        to: NodeId,
        /// The message.
        msg: Message,
    },
    /// Send a client its answers: a `Wire::Response`, or a `Wire::Responses` of two or more
    /// (the runtime halves one too large for a datagram).
    Answer {
        /// The client's address.
        to: SocketAddr,
        /// The answers.
        wire: Wire,
    },
    /// Hand an embedding API caller its result.
    Reply {
        /// Where it goes (the runtime's reply channel; the simulator's token).
        reply: R,
        /// The result.
        result: Result<Vec<u8>, Error>,
    },
    /// Storage work, to be carried out in the order given (see [`storage`]).
    Storage(StorageOp),
    /// These entries were just applied to the state machine, in order (nothing to carry out:
    /// for observers — the simulator's checks — and dropped by the runtime). Moved out, not
    /// copied.
    Applied {
        /// The entries, contiguous and ascending.
        entries: Vec<Entry>,
    },
}

/// Who waits for an answer.
#[derive(Debug)]
enum Waiter<R> {
    /// An embedding API call.
    Api(R),
    /// A client over the network.
    Client(ReplyTo),
}

/// A linearizable read waiting for its read index, then for the state machine to reach it.
#[derive(Debug)]
struct WaitingRead<R> {
    query: Vec<u8>,
    waiter: Waiter<R>,
}

/// Snapshot bookkeeping.
#[derive(Debug)]
struct Snapshots {
    policy: SnapshotPolicy,
    /// Entries and bytes applied since the newest snapshot (the core knows its index).
    entries_since: u64,
    bytes_since: u64,
    /// A snapshot handed to storage and not yet reported saved.
    saving: Option<u64>,
    /// Clients that asked for a snapshot (`balsa snapshot`), answered once one is saved.
    waiters: Vec<ReplyTo>,
}

/// The replica. `S` is the state machine; `R` is how an embedding API caller is answered (the
/// runtime's reply channel), handed back untouched in [`Effect::Reply`].
#[derive(Debug)]
pub struct Replica<S, R> {
    raft: Raft,
    state_machine: S,
    counters: Arc<Counters>,
    /// Addresses of the members, to hint clients at the leader.
    members: BTreeMap<NodeId, SocketAddr>,
    /// Tags for proposals and reads. A read's tag travels to the leader (ReadIndex's `ctx`) and
    /// back, so tags must not repeat across the node's restarts: a late answer to a read of an
    /// earlier incarnation would serve a new read that reused its tag, with a read index from
    /// before writes the new read must see (a stale read; simulator seed 5688 of `f2a7e42`).
    /// The driver gives each incarnation its own start ([`Replica::with_first_tag`]).
    next_tag: u64,
    /// Proposals stepped in, waiting for their `Proposal` outcome.
    proposing: BTreeMap<u64, Waiter<R>>,
    /// API proposals accepted at (index, term), waiting for that index to be applied.
    awaiting_apply: BTreeMap<u64, (u64, R)>,
    /// Network clients' membership changes stepped in, by tag, until their outcome.
    client_changes: BTreeMap<u64, ClientChange>,
    /// Outcomes of the last [`RECENT_CHANGES`] network changes, oldest first.
    recent_changes: VecDeque<((SocketAddr, u64), ResponseBody)>,
    /// Reads waiting for `ReadReady`.
    reads: BTreeMap<u64, WaitingRead<R>>,
    /// Reads whose index is known, waiting for the state machine to apply it.
    ready_reads: BTreeMap<u64, Vec<WaitingRead<R>>>,
    /// Highest index applied to the state machine.
    applied_index: u64,
    /// The term of the entry at `applied_index` (what a snapshot taken now records).
    applied_term: u64,
    snapshots: Snapshots,
    /// Syncs reported by storage since start (for status).
    storage_syncs: u64,
    /// Effects ready to hand out, in order.
    effects: std::collections::VecDeque<Effect<R>>,
    /// Storage work gathered in this turn, handed out at its end.
    storage_ops: Vec<StorageOp>,
    /// Answers to network clients gathered in this turn, handed out at its end, grouped per
    /// address.
    answers: Vec<(SocketAddr, Response)>,
    /// What this replica counted since start (`crate::metrics`).
    counts: ReplicaCounts,
    /// The commit index when `counts` last caught up with it.
    counted_commit: u64,
    /// The leader last seen, to count changes.
    counted_leader: Option<NodeId>,
}

impl<S: StateMachine, R> Replica<S, R> {
    /// A replica around a restored core and its state machine, restored to the snapshot at
    /// `(snapshot_index, snapshot_term)` ((0, 0): none).
    pub fn new(
        raft: Raft,
        state_machine: S,
        counters: Arc<Counters>,
        members: BTreeMap<NodeId, SocketAddr>,
        (snapshot_index, snapshot_term): (u64, u64),
        policy: SnapshotPolicy,
    ) -> Self {
        let counted_commit = raft.log().commit_index();
        let id = raft.id();
        let head_start = |interval: u64| stagger(id, interval);
        Replica {
            raft,
            state_machine,
            counters,
            members,
            next_tag: 1,
            proposing: BTreeMap::new(),
            awaiting_apply: BTreeMap::new(),
            client_changes: BTreeMap::new(),
            recent_changes: VecDeque::new(),
            reads: BTreeMap::new(),
            ready_reads: BTreeMap::new(),
            applied_index: snapshot_index,
            applied_term: snapshot_term,
            snapshots: Snapshots {
                policy,
                entries_since: head_start(policy.entries),
                bytes_since: head_start(policy.bytes),
                saving: None,
                waiters: Vec::new(),
            },
            storage_syncs: 0,
            effects: std::collections::VecDeque::new(),
            storage_ops: Vec::new(),
            answers: Vec::new(),
            counts: ReplicaCounts::default(),
            counted_commit,
            counted_leader: None,
        }
    }

    /// The core (read-only), for status pages, tests and the simulator's checks.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The fewest ticks after which a tick can make this replica do something (`None`: none
    /// will before another input): the core's [`Raft::ticks_until_due`], since nothing of the
    /// replica's own is counted in ticks. Its rule holds here too: a tick not yet due emits no
    /// effect (the simulator asserts it at every tick), so a runtime may sleep until then.
    pub fn ticks_until_due(&self) -> Option<u32> {
        self.raft.ticks_until_due()
    }

    /// Whether [`poll_effect`](Replica::poll_effect) has nothing to hand out (a restarted
    /// replica has what it applies again at once, before any input).
    pub fn is_quiet(&self) -> bool {
        self.effects.is_empty() && self.raft.is_quiet()
    }

    /// Sets the members' addresses clients are hinted at (the runtime's, from the
    /// configuration in force).
    pub fn set_member_addresses(&mut self, members: BTreeMap<NodeId, SocketAddr>) {
        self.members = members;
    }

    /// The state machine (read-only).
    pub fn state_machine(&self) -> &S {
        &self.state_machine
    }

    /// The state machine, to change: for the simulator's observed store only (changing the
    /// replicated state through it would break every replica's agreement).
    #[cfg(feature = "sim")]
    pub(crate) fn state_machine_mut(&mut self) -> &mut S {
        &mut self.state_machine
    }

    /// The highest index applied to the state machine.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// Takes one input. An error means the replica cannot go on (the state machine cannot
    /// restore a snapshot storage now holds as this node's state): the node must stop.
    pub fn step(&mut self, input: Input) -> Result<(), Error> {
        match input {
            Input::Tick => self.raft.step(raft::Input::Tick),
            Input::Peer { from, msg } => self.raft.step(raft::Input::Message { from, msg }),
            Input::Client { source, wire } => self.client_datagram(source, wire),
            Input::Storage(StorageDone::Persisted { upto }) => {
                self.storage_syncs += 1;
                self.raft.step(raft::Input::Persisted { upto });
            }
            // A saved or installed snapshot was synced too (its file, then its directory).
            Input::Storage(StorageDone::SnapshotSaved { index, data }) => {
                self.storage_syncs += 1;
                self.snapshot_saved(index, data);
            }
            Input::Storage(StorageDone::SnapshotInstalled { index, term, data }) => {
                self.storage_syncs += 1;
                self.snapshot_installed(index, term, &data)?;
            }
        }
        Ok(())
    }

    /// A client's datagram arrived from `source`. Anything but requests is dropped and counted
    /// as the wrong kind (a Raft message above all: the client key, which every client holds,
    /// must not carry member traffic); a batch over [`MAX_REQUESTS_PER_DATAGRAM`] is dropped and
    /// counted as refused.
    fn client_datagram(&mut self, source: SocketAddr, wire: Wire) {
        match wire {
            Wire::Request(request) => self.on_request(source, request),
            Wire::Requests(requests) => {
                if requests.len() > MAX_REQUESTS_PER_DATAGRAM {
                    log::debug!(
                        "dropped a batch of {} requests from {source} (at most \
                         {MAX_REQUESTS_PER_DATAGRAM})",
                        requests.len(),
                    );
                    self.counters.dropped(DropReason::Refused);
                    return;
                }
                for request in requests {
                    self.on_request(source, request);
                }
            }
            Wire::Raft(_) | Wire::Response(_) | Wire::Responses(_) => {
                log::debug!("dropped a client datagram from {source} carrying the wrong message");
                self.counters.dropped_from(DropReason::WrongKind, source);
            }
        }
    }

    /// Proposes `data` from the embedding API; `reply` gets the state machine's answer once it is
    /// applied. The embedding API does not forward: on a follower the caller learns who leads.
    pub fn propose(&mut self, data: &[u8], reply: R) {
        if self.raft.role() != Role::Leader {
            let leader = self.raft.status().leader;
            self.reply(reply, Err(Error::NotLeader { leader }));
            return;
        }
        let tag = self.tag();
        self.proposing.insert(tag, Waiter::Api(reply));
        self.raft.step(raft::Input::Propose {
            id: tag,
            data: wire::frame(None, data),
        });
    }

    /// A linearizable read from the embedding API.
    pub fn read(&mut self, query: Vec<u8>, reply: R) {
        self.start_read(query, Waiter::Api(reply));
    }

    /// Changes the cluster's membership by `steps` as one joint change (only the leader takes
    /// it); `reply` gets the new configuration ([`Membership::encode`]) once it is committed,
    /// or why it failed.
    pub fn change_membership(&mut self, steps: Vec<Step>, reply: R) {
        if self.raft.role() != Role::Leader {
            let leader = self.raft.status().leader;
            self.reply(reply, Err(Error::NotLeader { leader }));
            return;
        }
        if let Err(reason) = wire::check_change_bounds(&steps) {
            let refused = ChangeRefused::OutOfBounds(reason);
            self.reply(reply, Err(Error::Membership(refused)));
            return;
        }
        let tag = self.tag();
        self.proposing.insert(tag, Waiter::Api(reply));
        self.raft
            .step(raft::Input::ChangeMembership { id: tag, steps });
    }

    /// Asks the core, if it leads, to hand leadership to `to`.
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<(), Error> {
        if self.raft.role() == Role::Leader {
            self.raft.step(raft::Input::TransferLeadership { to });
            Ok(())
        } else {
            Err(Error::NotLeader {
                leader: self.raft.status().leader,
            })
        }
    }

    /// Why a transfer of leadership to `to` cannot start, if it cannot: `to` is not a voter of
    /// the configuration in force (a learner, or no member at all). One line, naming the voters.
    fn transfer_refusal(&self, to: NodeId) -> Option<String> {
        let membership = self.raft.membership()?;
        if membership.is_voter(to) {
            return None;
        }
        let voters = membership
            .incoming()
            .map(|id| id.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Some(if membership.members().any(|member| member == to) {
            format!("node {to} is a learner, not a voter, so it cannot lead (voters: {voters})")
        } else {
            format!("node {to} is not a member of this cluster (voters: {voters})")
        })
    }

    /// Storage saved this replica's snapshot at `index`: the core sends it to followers behind
    /// and compacts; clients that asked for a snapshot are answered.
    fn snapshot_saved(&mut self, index: u64, data: Arc<Vec<u8>>) {
        assert_eq!(
            self.snapshots.saving,
            Some(index),
            "storage reports the one save in flight"
        );
        self.snapshots.saving = None;
        log::info!("snapshot up to index {index} saved ({} bytes)", data.len());
        self.raft.step(raft::Input::SnapshotSaved { index, data });
        for reply in std::mem::take(&mut self.snapshots.waiters) {
            self.respond(reply, ResponseBody::SnapshotTaken { index });
        }
    }

    /// Storage installed a leader's snapshot: the state machine takes it over, then the core
    /// hears of it. An error means the state machine cannot restore what storage now holds as
    /// this node's state: the node must stop (running on would diverge).
    fn snapshot_installed(&mut self, index: u64, term: u64, data: &[u8]) -> Result<(), Error> {
        if let Err(source) = restore_from_snapshot(&mut self.state_machine, data) {
            return Err(Error::Restore { index, source });
        }
        log::info!(
            "installed a snapshot up to index {index} ({} bytes)",
            data.len()
        );
        self.applied_index = index;
        self.applied_term = term;
        self.snapshots.entries_since = 0;
        self.snapshots.bytes_since = 0;
        // API proposals at or below the snapshot cannot learn their own answer any more.
        while let Some(entry) = self.awaiting_apply.first_entry() {
            if *entry.key() > index {
                break;
            }
            let (_, reply) = entry.remove();
            self.reply(reply, Err(Error::Timeout));
        }
        self.raft.step(raft::Input::SnapshotInstalled { index });
        self.serve_ready_reads();
        Ok(())
    }

    /// The next effect, in order; `None` once the turn has nothing more. Call it until `None`
    /// after each input (or after a batch of inputs: inputs taken together batch their
    /// proposals into as few AppendEntries and persists as possible).
    pub fn poll_effect(&mut self) -> Option<Effect<R>> {
        loop {
            if let Some(effect) = self.effects.pop_front() {
                return Some(effect);
            }
            if let Some(action) = self.raft.poll_action() {
                self.on_action(action);
                continue;
            }
            // The core is done: the turn's answers, then its storage work.
            if !self.answers.is_empty() {
                self.group_answers();
                continue;
            }
            if !self.storage_ops.is_empty() {
                self.effects
                    .extend(self.storage_ops.drain(..).map(Effect::Storage));
                continue;
            }
            self.count_commits();
            return None;
        }
    }

    /// Every API caller still waiting (the runtime answers them when it stops).
    pub fn take_waiters(&mut self) -> Vec<R> {
        let mut waiters = Vec::new();
        for (_, waiter) in std::mem::take(&mut self.proposing) {
            if let Waiter::Api(reply) = waiter {
                waiters.push(reply);
            }
        }
        waiters.extend(
            std::mem::take(&mut self.awaiting_apply)
                .into_values()
                .map(|(_, reply)| reply),
        );
        let reads = std::mem::take(&mut self.reads).into_values();
        let ready = std::mem::take(&mut self.ready_reads)
            .into_values()
            .flatten();
        for read in reads.chain(ready) {
            if let Waiter::Api(reply) = read.waiter {
                waiters.push(reply);
            }
        }
        waiters
    }

    /// What this replica counted since start.
    pub fn counts(&self) -> ReplicaCounts {
        self.counts
    }

    /// Proposals waiting to commit: on a leader the entries it appended and has not committed
    /// yet, and API proposals still waiting for the core's outcome.
    pub fn proposals_pending(&self) -> u64 {
        let status = self.raft.status();
        let uncommitted = if status.role == Role::Leader {
            status.last_index - status.commit_index
        } else {
            0
        };
        uncommitted + self.proposing.len() as u64
    }

    /// Counts the entries committed since the last call (at the end of every turn).
    fn count_commits(&mut self) {
        let commit_index = self.raft.log().commit_index();
        // A snapshot installed moves the commit index too: it counts as committed here.
        if commit_index > self.counted_commit {
            self.counts.proposals_committed += commit_index - self.counted_commit;
            self.counted_commit = commit_index;
        }
    }

    /// The replica's status, for the embedding API.
    pub fn status(&self) -> NodeStatus {
        let Status {
            id,
            role,
            term,
            leader,
            commit_index,
            last_index,
            snapshot_index,
            first_index,
            receiving_snapshot,
            ..
        } = self.raft.status();
        NodeStatus {
            id,
            role,
            term,
            leader,
            commit_index,
            applied_index: self.applied_index,
            last_index,
            snapshot_index,
            first_index,
            receiving_snapshot,
        }
    }

    fn on_request(&mut self, source: SocketAddr, request: Request) {
        let reply = ReplyTo {
            address: source,
            request: request.id,
        };
        match request.body {
            RequestBody::Command { data } => {
                let tag = self.tag();
                self.proposing.insert(tag, Waiter::Client(reply));
                let data = wire::frame(Some(reply), &data);
                self.raft.step(raft::Input::Propose { id: tag, data });
            }
            RequestBody::Query { data, stale: true } => {
                let answer = self.state_machine.query(&data);
                self.respond(reply, ResponseBody::Query { data: answer });
            }
            RequestBody::Query { data, stale: false } => {
                self.start_read(data, Waiter::Client(reply));
            }
            RequestBody::Status => {
                let report = self.status_report();
                self.respond(reply, ResponseBody::Status(Box::new(report)));
            }
            RequestBody::Snapshot => {
                let index = self.raft.snapshot_index();
                if self.snapshots.saving.is_none() && index == self.applied_index {
                    // Nothing applied since the last one: it is the snapshot asked for.
                    self.respond(reply, ResponseBody::SnapshotTaken { index });
                } else {
                    self.snapshots.waiters.push(reply);
                    if self.snapshots.saving.is_none() {
                        self.take_snapshot();
                    }
                }
            }
            RequestBody::Transfer { to } => {
                // A leader refuses a target that cannot lead at once, saying why (the core
                // would give the transfer up in the same step); a follower redirects.
                let refusal = if self.raft.role() == Role::Leader {
                    self.transfer_refusal(to)
                } else {
                    None
                };
                let body = match refusal {
                    Some(message) => ResponseBody::Error { message },
                    None => match self.transfer_leader(to) {
                        Ok(()) => ResponseBody::TransferStarted,
                        Err(_) => self.not_leader(),
                    },
                };
                self.respond(reply, body);
            }
            RequestBody::Members => {
                let report = self.members_report();
                self.respond(reply, ResponseBody::Members(report));
            }
            RequestBody::ChangeMembership { steps, token } => {
                self.client_change(reply, steps, token);
            }
            RequestBody::ReadSnapshot { offset, max_bytes } => {
                let body = self.snapshot_piece(offset, max_bytes);
                self.respond(reply, body);
            }
        }
    }

    /// The piece of this node's newest snapshot from `offset`: at most `max_bytes`, and at most
    /// the core's snapshot chunk size (what fits one of this node's datagrams with room for
    /// the answer's fields). Any node answers, from the snapshot it holds.
    fn snapshot_piece(&self, offset: u64, max_bytes: u32) -> ResponseBody {
        let id = self.raft.id();
        let Some(image) = self.raft.snapshot_image() else {
            return ResponseBody::Error {
                message: format!("node {id} holds no snapshot yet"),
            };
        };
        let size = image.size();
        if offset > size {
            return ResponseBody::Error {
                message: format!(
                    "offset {offset} is past the end of node {id}'s snapshot at index {} \
                     ({size} bytes)",
                    image.index
                ),
            };
        }
        let cap = (max_bytes as usize).min(self.raft.config().snapshot_chunk_bytes);
        // `offset <= size`, and `size` is the length of bytes in memory: both fit a usize.
        let start = usize::try_from(offset).unwrap_or(image.data.len());
        let end = start.saturating_add(cap).min(image.data.len());
        ResponseBody::SnapshotPiece(SnapshotPiece {
            index: image.index,
            term: image.term,
            size,
            crc: image.crc,
            offset,
            data: image.data[start..end].to_vec(),
        })
    }

    /// A network client's membership change (or a retry of one: the same address and token).
    fn client_change(&mut self, reply: ReplyTo, steps: Vec<MemberStep>, token: u64) {
        let key = (reply.address, token);
        if let Some((_, body)) = self.recent_changes.iter().find(|(done, _)| *done == key) {
            let body = body.clone();
            self.respond(reply, body);
            return;
        }
        if let Some(change) = self.client_changes.values_mut().find(|c| c.key == key) {
            if change.waiters.len() >= MAX_CHANGE_WAITERS {
                change.waiters.remove(0);
            }
            change.waiters.push(reply);
            return;
        }
        if self.raft.role() != Role::Leader {
            let body = self.not_leader();
            self.respond(reply, body);
            return;
        }
        let steps: Vec<Step> = steps.into_iter().map(Step::from).collect();
        if let Err(message) = wire::check_change_bounds(&steps) {
            let kind = RefusalKind::BadRequest;
            self.respond(reply, ResponseBody::MembershipRefused { kind, message });
            return;
        }
        let tag = self.tag();
        let waiters = vec![reply];
        self.client_changes
            .insert(tag, ClientChange { key, waiters });
        self.raft
            .step(raft::Input::ChangeMembership { id: tag, steps });
    }

    /// A network client's change ended: every attempt gets the outcome, which is kept for
    /// retries (a `NotLeader` is not: the client goes to the leader).
    fn client_change_done(&mut self, change: ClientChange, outcome: ChangeOutcome) {
        let body = match outcome {
            ChangeOutcome::Done { .. } => ResponseBody::MembershipChanged(self.members_report()),
            ChangeOutcome::Refused(ChangeRefused::NotLeader { .. }) => self.not_leader(),
            ChangeOutcome::Refused(refused) => ResponseBody::MembershipRefused {
                kind: RefusalKind::of(&refused),
                message: refused.to_string(),
            },
        };
        if !matches!(body, ResponseBody::NotLeader { .. }) {
            if self.recent_changes.len() >= RECENT_CHANGES {
                self.recent_changes.pop_front();
            }
            self.recent_changes.push_back((change.key, body.clone()));
        }
        for waiter in change.waiters {
            self.respond(waiter, body.clone());
        }
    }

    /// This node's configuration in force, with the leader's view of each member's progress.
    fn members_report(&self) -> MembersReport {
        let status = self.raft.status();
        let leads = status.role == Role::Leader;
        // A leader's own log matches up to what its disk acknowledged.
        let matched = |id| {
            if id == status.id {
                leads.then_some(status.stable_index)
            } else {
                self.raft.match_index_of(id)
            }
        };
        MembersReport::new(
            status.id,
            status.leader,
            self.raft.membership_index(),
            self.raft.membership(),
            leads.then_some(status.last_index),
            matched,
        )
    }

    fn start_read(&mut self, query: Vec<u8>, waiter: Waiter<R>) {
        let ctx = self.tag();
        self.reads.insert(ctx, WaitingRead { query, waiter });
        self.raft.step(raft::Input::ReadIndex { ctx });
    }

    fn tag(&mut self) -> u64 {
        // Wrapping: a random start may sit anywhere in the range.
        self.next_tag = self.next_tag.wrapping_add(1);
        self.next_tag
    }

    /// This incarnation's tags start after `first`: the runtime gives a random number, the
    /// simulator one drawn from the incarnation's seed, so that no two incarnations of a node
    /// are likely to share a tag (see `next_tag`).
    #[must_use]
    pub fn with_first_tag(mut self, first: u64) -> Self {
        self.next_tag = first;
        self
    }

    /// Carries out one action of the core: what the world must do becomes an effect; applying,
    /// answering and reads are done here.
    fn on_action(&mut self, action: Action) {
        let action = match StorageOp::from_action(action) {
            Ok(op) => return self.storage_ops.push(op),
            Err(action) => action,
        };
        match action {
            Action::Send { to, msg } => {
                if let Body::InstallSnapshot { offset: 0, .. } = msg.body {
                    self.counts.snapshots_sent += 1;
                }
                self.effects.push_back(Effect::Send { to, msg });
            }
            Action::Apply { entries } => {
                for entry in &entries {
                    self.apply(entry);
                }
                self.effects.push_back(Effect::Applied { entries });
                self.serve_ready_reads();
                if self.snapshots.saving.is_none() && self.snapshot_due() {
                    self.take_snapshot();
                }
            }
            Action::Proposal { id, outcome } => self.on_proposal(id, outcome),
            Action::ReadReady { ctx, index } => {
                if let Some(read) = self.reads.remove(&ctx) {
                    self.ready_reads.entry(index).or_default().push(read);
                    self.serve_ready_reads();
                }
            }
            Action::ReadRefused { ctx, redirect } => {
                if let Some(read) = self.reads.remove(&ctx) {
                    self.counts.read_index_failed += 1;
                    self.refuse(read.waiter, redirect);
                }
            }
            Action::MembershipChange { id, outcome } => {
                if let Some(change) = self.client_changes.remove(&id) {
                    self.client_change_done(change, outcome);
                    return;
                }
                let Some(Waiter::Api(reply)) = self.proposing.remove(&id) else {
                    return;
                };
                let result = match outcome {
                    ChangeOutcome::Done { .. } => Ok(self
                        .raft
                        .membership()
                        .map(Membership::encode)
                        .unwrap_or_default()),
                    ChangeOutcome::Refused(refused) => Err(Error::Membership(refused)),
                };
                self.reply(reply, result);
            }
            Action::TransferAborted { to, reason } => {
                log::warn!("leadership transfer to node {to} aborted: {reason}");
            }
            Action::RoleChanged { role, term, leader } => {
                log::info!("now {role:?} in term {term}, leader {leader:?}");
                if leader.is_some() && leader != self.counted_leader {
                    self.counts.leader_changes_seen += 1;
                    self.counted_leader = leader;
                }
            }
            Action::Persist(_)
            | Action::SnapshotChunk { .. }
            | Action::InstallSnapshot { .. }
            | Action::Compact { .. } => unreachable!("storage work, taken above"),
        }
    }

    fn on_proposal(&mut self, tag: u64, outcome: ProposalOutcome) {
        let Some(waiter) = self.proposing.remove(&tag) else {
            return;
        };
        match (outcome, waiter) {
            (ProposalOutcome::Accepted { index, term }, Waiter::Api(reply)) => {
                self.awaiting_apply.insert(index, (term, reply));
            }
            // A client's command carries its reply address in the entry: whoever leads when it
            // is applied answers. Forwarded ones likewise, from the leader.
            (ProposalOutcome::Accepted { .. } | ProposalOutcome::Forwarded { .. }, _) => {}
            (ProposalOutcome::Refused(error), waiter) => {
                self.counts.proposals_failed += 1;
                match (error, waiter) {
                    (ProposeError::TooLarge { size, max }, Waiter::Api(reply)) => {
                        self.reply(reply, Err(Error::TooLarge { size, max }));
                    }
                    (ProposeError::TooLarge { size, max }, Waiter::Client(reply)) => {
                        let (size, max) = (size as u64, max as u64);
                        self.respond(reply, ResponseBody::TooLarge { size, max });
                    }
                    (ProposeError::NoLeader { hint }, waiter) => {
                        self.refuse(waiter, Redirect { leader: None, hint });
                    }
                    // This node still leads, but hands over to `to` and takes nothing
                    // meanwhile: no leader to ask now, `to` the best hint; never itself (a
                    // client told "X is not the leader; X is" gives up on X and waits).
                    (ProposeError::TransferInProgress { to }, waiter) => {
                        let hint = Some(to);
                        self.refuse(waiter, Redirect { leader: None, hint });
                    }
                }
            }
        }
    }

    /// Applies one committed entry and answers whoever waits for it.
    fn apply(&mut self, entry: &Entry) {
        assert_eq!(
            entry.index,
            self.applied_index + 1,
            "entries apply in order, once each"
        );
        self.applied_index = entry.index;
        self.applied_term = entry.term;
        self.counts.proposals_applied += 1;
        self.snapshots.entries_since += 1;
        self.snapshots.bytes_since += entry.data.len() as u64;
        let mut answer = None;
        let mut reply_to = None;
        if entry.kind == EntryKind::Normal {
            match wire::unframe(&entry.data) {
                Ok((reply, command)) => {
                    answer = Some(self.state_machine.apply(entry.index, command));
                    reply_to = reply;
                }
                Err(error) => log::error!("entry {} is malformed: {}", entry.index, error.reason),
            }
        }
        // API waiters at or below this index: theirs, or overwritten by another leader's entry.
        while let Some(waiting) = self.awaiting_apply.first_entry() {
            if *waiting.key() > entry.index {
                break;
            }
            let (index, (term, reply)) = waiting.remove_entry();
            let result = match (&answer, index == entry.index && term == entry.term) {
                (Some(answer), true) => Ok(answer.clone()),
                _ => {
                    self.counts.proposals_failed += 1;
                    Err(Error::Lost)
                }
            };
            self.reply(reply, result);
        }
        if let (Some(answer), Some(reply)) = (answer, reply_to)
            && self.raft.role() == Role::Leader
        {
            self.respond(reply, ResponseBody::Applied { data: answer });
        }
    }

    /// Whether the policy calls for a snapshot now, the newest snapshot this node holds (saved,
    /// installed or restored) being the last.
    fn snapshot_due(&self) -> bool {
        let last_snapshot_bytes = self
            .raft
            .snapshot_image()
            .map_or(0, |image| image.data.len() as u64);
        self.snapshots.policy.is_due(
            self.snapshots.entries_since,
            self.snapshots.bytes_since,
            last_snapshot_bytes,
        )
    }

    /// Takes the state machine as of the applied index (a copy the storage serialises:
    /// [`StateMachine::snapshot_later`]) and queues it for storage to save, in order with this
    /// turn's other work.
    fn take_snapshot(&mut self) {
        let index = self.applied_index;
        if index <= self.raft.snapshot_index() {
            return;
        }
        assert!(
            self.snapshots.saving.is_none(),
            "one snapshot save at a time"
        );
        // §7: the snapshot carries the configuration in force at its index.
        let membership = self.raft.membership_at(index).cloned();
        let write_state = self.state_machine.snapshot_later();
        let data = SnapshotData::later(move || {
            let mut out = snapshot_frame::header(membership.as_ref(), 0);
            write_state(&mut out);
            out
        });
        log::info!(
            "snapshotting up to index {index} ({} bytes and {} entries since the last)",
            self.snapshots.bytes_since,
            self.snapshots.entries_since
        );
        self.snapshots.saving = Some(index);
        self.snapshots.entries_since = 0;
        self.snapshots.bytes_since = 0;
        let term = self.applied_term;
        self.storage_ops
            .push(StorageOp::SaveSnapshot { index, term, data });
    }

    fn serve_ready_reads(&mut self) {
        while let Some(ready) = self.ready_reads.first_entry() {
            if *ready.key() > self.applied_index {
                break;
            }
            for read in ready.remove() {
                self.counts.read_index += 1;
                let answer = self.state_machine.query(&read.query);
                match read.waiter {
                    Waiter::Api(reply) => self.reply(reply, Ok(answer)),
                    Waiter::Client(reply) => {
                        self.respond(reply, ResponseBody::Query { data: answer });
                    }
                }
            }
        }
    }

    /// Turns a waiter for something only a leader serves away, pointing where `redirect`
    /// says: a network client gets [`ResponseBody::NotLeader`] (see [`Replica::not_leader`]);
    /// an API caller [`Error::NotLeader`] naming the leader, else the hint.
    fn refuse(&mut self, waiter: Waiter<R>, redirect: Redirect) {
        match waiter {
            Waiter::Api(reply) => {
                let leader = redirect.leader.or(redirect.hint);
                self.reply(reply, Err(Error::NotLeader { leader }));
            }
            Waiter::Client(reply) => {
                let body = self.not_leader_to(redirect);
                self.respond(reply, body);
            }
        }
    }

    /// The answer of a node that does not lead to a request only the leader serves, pointing
    /// where the core says ([`Raft::redirect`]).
    fn not_leader(&self) -> ResponseBody {
        self.not_leader_to(self.raft.redirect())
    }

    /// `NotLeader` pointing where `redirect` says: `leader` is the leader this node follows and
    /// heard from within an election timeout, `None` when it knows none; `address` is the best
    /// hint's, present with a leader and without (the leader it last heard of, or the node
    /// taking over from it).
    fn not_leader_to(&self, Redirect { leader, hint }: Redirect) -> ResponseBody {
        let address = hint.and_then(|id| self.members.get(&id).copied());
        ResponseBody::NotLeader { leader, address }
    }

    fn reply(&mut self, reply: R, result: Result<Vec<u8>, Error>) {
        self.effects.push_back(Effect::Reply { reply, result });
    }

    fn respond(&mut self, reply: ReplyTo, body: ResponseBody) {
        let response = Response {
            id: reply.request,
            body,
        };
        self.answers.push((reply.address, response));
    }

    /// Turns the turn's answers into one effect per address, in the order given.
    fn group_answers(&mut self) {
        // Stable: one address's answers keep their order.
        self.answers.sort_by_key(|(address, _)| *address);
        let mut sorted = self.answers.drain(..).peekable();
        while let Some((address, first)) = sorted.next() {
            // A lone answer (the usual case: one client per socket) goes without a group.
            let wire = if sorted.peek().is_some_and(|(to, _)| *to == address) {
                let mut group = vec![first];
                while let Some((_, response)) = sorted.next_if(|(to, _)| *to == address) {
                    group.push(response);
                }
                Wire::Responses(group)
            } else {
                Wire::Response(first)
            };
            self.effects.push_back(Effect::Answer { to: address, wire });
        }
    }

    fn status_report(&self) -> StatusReport {
        let status = self.status();
        let counters = self.counters.values();
        let membership = self.raft.membership();
        StatusReport {
            id: status.id,
            role: role_name(status.role).to_string(),
            term: status.term,
            leader: status.leader,
            commit_index: status.commit_index,
            applied_index: status.applied_index,
            last_index: status.last_index,
            datagrams_in: counters.datagrams_in,
            datagrams_out: counters.datagrams_out,
            datagrams_dropped: counters.dropped_total(),
            wal_syncs: self.storage_syncs,
            snapshot_index: status.snapshot_index,
            first_index: status.first_index,
            cluster_id: 0, // the runtime's to fill in (runtime/consensus.rs, stamp_cluster_id)
            voters: membership.map_or_else(Vec::new, |m| m.incoming().collect()),
            outgoing_voters: membership.map_or_else(Vec::new, |m| m.outgoing().collect()),
            learners: membership.map_or_else(Vec::new, |m| m.learners().collect()),
            configuration_index: self.raft.membership_index(),
            datagrams_auth_failed: counters.dropped(DropReason::AuthFailed),
            datagrams_replayed: counters.dropped(DropReason::Replayed)
                + counters.dropped(DropReason::OldBoot),
            suspicious_sources: self
                .counters
                .by_source()
                .into_iter()
                .map(|(address, drops)| SuspiciousSource {
                    address,
                    auth_failed: drops.auth_failed,
                    replayed: drops.replayed,
                    wrong_kind: drops.wrong_kind,
                })
                .collect(),
        }
    }
}

/// The head start of replica `id` toward its first snapshot: `(id mod 3) / 3` of `interval`, so
/// that the members of a cluster (ids in a row, as they are given) snapshot a third of an
/// interval apart (see the module doc for why).
fn stagger(id: NodeId, interval: u64) -> u64 {
    // At most two thirds of the interval: the first snapshot still comes after some entries.
    interval / 3 * (id % 3)
}
