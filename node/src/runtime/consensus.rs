//! The consensus thread: the only owner of the Raft core and the state machine.
//!
//! It takes every event queued in the inbox (ticks, peer messages, client requests, WAL acks, API
//! calls), steps the core with each, then routes the core's actions: persists to the WAL thread,
//! messages to the network, committed entries to the state machine, answers to whoever waits.
//! Taking all queued events before draining the actions is what batches proposals arriving
//! together into as few AppendEntries and persists as possible. The same holds for clients:
//! a datagram may carry several requests (`Wire::Requests`), and the answers a turn has for one
//! address leave together (`Wire::Responses`), so clients multiplexed on one socket cost one
//! datagram each way per turn, not one per write.
//!
//! Invariants:
//! - An answer to a command leaves only after its entry is applied here; an answer to a
//!   linearizable read only once this node has applied the read index.
//! - Every waiter is answered exactly once: with its result, with an error, or (on shutdown)
//!   with `ShuttingDown`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use balsa_net::{Counters, Destination, DropReason, Inbound, Kind, Outbox};

use super::storage::StorageOp;
use super::wire::{
    self, MAX_REQUESTS_PER_DATAGRAM, ReplyTo, Request, RequestBody, Response, ResponseBody,
    StatusReport, Wire,
};
use super::{ApiCall, Error, Event, NodeStatus};
use crate::raft::{
    Action, EntryKind, Input, NodeId, ProposalOutcome, ProposeError, Raft, Role, Status,
};
use crate::state_machine::StateMachine;
use balsa_wal::SnapshotMeta;

/// When a node snapshots its state machine on its own.
#[derive(Clone, Copy, Debug)]
pub struct SnapshotPolicy {
    /// Once this many entries were applied since the last snapshot.
    pub entries: u64,
    /// Once this many bytes of entries were applied since the last snapshot.
    pub bytes: u64,
}

/// Snapshot bookkeeping on the consensus thread.
#[derive(Debug)]
struct Snapshots {
    policy: SnapshotPolicy,
    /// Entries and bytes applied since the newest snapshot (the core knows its index).
    entries_since: u64,
    bytes_since: u64,
    /// A snapshot handed to the WAL thread and not yet saved.
    saving: Option<u64>,
    /// Clients that asked for a snapshot (`balsa snapshot`), answered once one is saved.
    waiters: Vec<ReplyTo>,
}

/// Where an embedding API call's answer goes.
type ApiReply = Sender<Result<Vec<u8>, Error>>;

/// Who waits for an answer.
enum Waiter {
    /// An embedding API call.
    Api(ApiReply),
    /// A client over the network.
    Client(ReplyTo),
}

/// A read waiting for its read index, then for the state machine to reach it.
struct PendingRead {
    query: Vec<u8>,
    waiter: Waiter,
}

/// The consensus thread's state.
pub struct Consensus<S> {
    raft: Raft,
    state_machine: S,
    outbox: Outbox<Wire>,
    storage: Sender<StorageOp>,
    counters: Arc<Counters>,
    /// Addresses of the members, to hint clients at the leader.
    members: BTreeMap<NodeId, SocketAddr>,
    /// Tags for proposals and reads.
    next_tag: u64,
    /// Proposals stepped in, waiting for their `Proposal` outcome.
    proposing: HashMap<u64, Waiter>,
    /// API proposals accepted at (index, term), waiting for that index to be applied.
    awaiting_apply: BTreeMap<u64, (u64, ApiReply)>,
    /// Reads waiting for `ReadReady`.
    reads: HashMap<u64, PendingRead>,
    /// Reads whose index is known, waiting for the state machine to apply it.
    ready_reads: BTreeMap<u64, Vec<PendingRead>>,
    /// Highest index applied to the state machine.
    applied_index: u64,
    /// The term of the entry at `applied_index` (what a snapshot taken now records).
    applied_term: u64,
    snapshots: Snapshots,
    /// Syncs reported by the WAL thread since start (for status).
    wal_syncs: u64,
    /// Work for the WAL thread gathered in this turn, sent in order at its end.
    storage_ops: Vec<StorageOp>,
    /// Answers to network clients gathered in this turn: sent at its end, one datagram per
    /// address where they fit, so clients that share a socket get their answers together.
    answers: Vec<(SocketAddr, Response)>,
    /// Set when the WAL thread or the net thread is gone (it panicked): the node must stop,
    /// not run on half-alive.
    fatal: Option<String>,
}

/// Why the consensus thread stopped.
#[derive(Debug)]
pub enum Stop {
    /// Asked to.
    Shutdown,
    /// The WAL failed.
    Storage(String),
    /// Another thread of the node died (the WAL or the net thread panicked).
    Failed(String),
}

impl<S: StateMachine> Consensus<S> {
    /// A consensus thread's state around a restored core.
    #[allow(clippy::too_many_arguments, reason = "assembled once, by Node::start")]
    pub fn new(
        raft: Raft,
        state_machine: S,
        outbox: Outbox<Wire>,
        storage: Sender<StorageOp>,
        counters: Arc<Counters>,
        members: BTreeMap<NodeId, SocketAddr>,
        (snapshot_index, snapshot_term): (u64, u64),
        policy: SnapshotPolicy,
    ) -> Self {
        Consensus {
            raft,
            state_machine,
            outbox,
            storage,
            counters,
            members,
            next_tag: 1,
            proposing: HashMap::new(),
            awaiting_apply: BTreeMap::new(),
            reads: HashMap::new(),
            ready_reads: BTreeMap::new(),
            applied_index: snapshot_index,
            applied_term: snapshot_term,
            snapshots: Snapshots {
                policy,
                entries_since: 0,
                bytes_since: 0,
                saving: None,
                waiters: Vec::new(),
            },
            wal_syncs: 0,
            storage_ops: Vec::new(),
            answers: Vec::new(),
            fatal: None,
        }
    }

    /// Runs until shutdown or a storage failure; answers every waiter before returning.
    pub fn run(mut self, inbox: &Receiver<Event>) -> Stop {
        self.drain_actions();
        let stop = loop {
            let Ok(first) = inbox.recv() else {
                break Stop::Shutdown;
            };
            let mut stop = None;
            for event in std::iter::once(first).chain(inbox.try_iter()) {
                if let Some(reason) = self.handle(event) {
                    stop = Some(reason);
                    break;
                }
            }
            if let Some(reason) = stop {
                break reason;
            }
            self.drain_actions();
            if let Some(reason) = self.fatal.take() {
                break Stop::Failed(reason);
            }
        };
        self.fail_all(&stop);
        self.send_answers(); // answers of a turn that ended in the stop
        let _ = self.storage.send(StorageOp::Shutdown);
        stop
    }

    fn handle(&mut self, event: Event) -> Option<Stop> {
        match event {
            Event::Tick => self.raft.step(Input::Tick),
            Event::Persisted(upto) => {
                self.wal_syncs += 1;
                self.raft.step(Input::Persisted { upto });
            }
            Event::Net(inbound) => self.on_inbound(inbound),
            Event::Api(call) => self.on_api(call),
            Event::StorageFailed(reason) => return Some(Stop::Storage(reason)),
            Event::SnapshotSaved { index, data } => self.on_snapshot_saved(index, data),
            Event::SnapshotInstalled { index, term, data } => {
                return self.on_snapshot_installed(index, term, &data);
            }
            Event::Shutdown => return Some(Stop::Shutdown),
        }
        None
    }

    fn on_inbound(&mut self, inbound: Inbound<Wire>) {
        match (inbound.kind, inbound.msg) {
            (Kind::Peer, Wire::Raft(msg)) => {
                self.raft.step(Input::Message {
                    from: inbound.from,
                    msg,
                });
            }
            (Kind::Request, Wire::Request(request)) => self.on_request(inbound.source, request),
            (Kind::Request, Wire::Requests(requests)) => {
                if requests.len() > MAX_REQUESTS_PER_DATAGRAM {
                    log::debug!(
                        "dropped a batch of {} requests from {} (at most \
                         {MAX_REQUESTS_PER_DATAGRAM})",
                        requests.len(),
                        inbound.source
                    );
                    self.counters.dropped(DropReason::Refused);
                    return;
                }
                for request in requests {
                    self.on_request(inbound.source, request);
                }
            }
            (kind, _) => log::debug!("dropped a {kind:?} datagram carrying the wrong message"),
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
                self.raft.step(Input::Propose { id: tag, data });
            }
            RequestBody::Query { data, stale: true } => {
                let answer = self.state_machine.query(&data);
                self.respond(reply, ResponseBody::Query { data: answer });
            }
            RequestBody::Query { data, stale: false } => {
                self.read(data, Waiter::Client(reply));
            }
            RequestBody::Status => {
                let report = self.status_report();
                self.respond(reply, ResponseBody::Status(report));
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
                let body = if self.raft.role() == Role::Leader {
                    self.raft.step(Input::TransferLeadership { to });
                    ResponseBody::TransferStarted
                } else {
                    self.not_leader()
                };
                self.respond(reply, body);
            }
        }
    }

    fn on_api(&mut self, call: ApiCall) {
        match call {
            ApiCall::Propose { data, reply } => {
                // The embedding API does not forward: the caller learns who leads instead.
                let status = self.raft.status();
                if status.role != Role::Leader {
                    let _ = reply.send(Err(Error::NotLeader {
                        leader: status.leader,
                    }));
                    return;
                }
                let tag = self.tag();
                self.proposing.insert(tag, Waiter::Api(reply));
                self.raft.step(Input::Propose {
                    id: tag,
                    data: wire::frame(None, &data),
                });
            }
            ApiCall::Read { query, reply } => self.read(query, Waiter::Api(reply)),
            ApiCall::Status { reply } => {
                let _ = reply.send(self.node_status());
            }
            ApiCall::Transfer { to, reply } => {
                let result = if self.raft.role() == Role::Leader {
                    self.raft.step(Input::TransferLeadership { to });
                    Ok(())
                } else {
                    Err(Error::NotLeader {
                        leader: self.raft.status().leader,
                    })
                };
                let _ = reply.send(result);
            }
        }
    }

    fn read(&mut self, query: Vec<u8>, waiter: Waiter) {
        let ctx = self.tag();
        self.reads.insert(ctx, PendingRead { query, waiter });
        self.raft.step(Input::ReadIndex { ctx });
    }

    fn tag(&mut self) -> u64 {
        self.next_tag += 1;
        self.next_tag
    }

    /// Routes every action the core has for us.
    ///
    /// Work for the WAL thread (persists, snapshot chunks, installs, compactions, in the core's
    /// order, and this thread's snapshot saves, all gathered over the turn) goes there after the
    /// messages and the client answers of the same turn have left: a leader's AppendEntries
    /// start the followers' writes, which the commit waits for, while its own write runs in
    /// parallel (thesis §10.2.1) and is usually the first of the quorum to finish. Order among
    /// persists is kept, and no message that must wait for a persist is among the sends (the
    /// core holds those, or attaches them to the persist's `then_send`).
    fn drain_actions(&mut self) {
        while let Some(action) = self.raft.poll_action() {
            match action {
                Action::Persist(persist) => self.storage_ops.push(StorageOp::Persist(persist)),
                Action::Send { to, msg } => {
                    match self.outbox.send(Destination::Peer(to), &Wire::Raft(msg)) {
                        Ok(()) => {}
                        Err(balsa_net::Error::Closed) => {
                            log::error!("the net thread is gone; the node is stopping");
                            self.fatal = Some("the net thread stopped unexpectedly".into());
                        }
                        Err(error) => log::warn!("sending to node {to}: {error}"),
                    }
                }
                Action::Apply { entries } => {
                    for entry in entries {
                        self.apply(entry);
                    }
                    self.serve_ready_reads();
                    let policy = self.snapshots.policy;
                    if self.snapshots.saving.is_none()
                        && (self.snapshots.entries_since >= policy.entries
                            || self.snapshots.bytes_since >= policy.bytes)
                    {
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
                Action::ReadRefused { ctx, leader } => {
                    if let Some(read) = self.reads.remove(&ctx) {
                        self.refuse(read.waiter, leader);
                    }
                }
                Action::TransferAborted { to, reason } => {
                    log::warn!("leadership transfer to node {to} aborted: {reason}");
                }
                Action::RoleChanged { role, term, leader } => {
                    log::info!("now {role:?} in term {term}, leader {leader:?}");
                }
                Action::SnapshotChunk {
                    index,
                    term,
                    offset,
                    data,
                    ..
                } => self.storage_ops.push(StorageOp::SnapshotChunk {
                    meta: SnapshotMeta { index, term },
                    offset,
                    data,
                }),
                Action::InstallSnapshot {
                    index,
                    term,
                    size,
                    crc,
                    data,
                } => self.storage_ops.push(StorageOp::InstallSnapshot {
                    meta: SnapshotMeta { index, term },
                    size,
                    crc,
                    data,
                }),
                Action::Compact { upto } => self.storage_ops.push(StorageOp::Compact { upto }),
            }
        }
        self.send_answers();
        for op in self.storage_ops.drain(..) {
            if self.storage.send(op).is_err() {
                log::error!("the WAL thread is gone; the node is stopping");
                self.fatal = Some("the WAL thread stopped unexpectedly".into());
                break;
            }
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
                let leader = self.raft.status().leader;
                match (error, waiter) {
                    (ProposeError::TooLarge { size, max }, Waiter::Api(reply)) => {
                        let _ = reply.send(Err(Error::TooLarge { size, max }));
                    }
                    (ProposeError::TooLarge { size, max }, Waiter::Client(reply)) => {
                        let (size, max) = (size as u64, max as u64);
                        self.respond(reply, ResponseBody::TooLarge { size, max });
                    }
                    (ProposeError::NoLeader { hint }, waiter) => self.refuse(waiter, hint),
                    (ProposeError::TransferInProgress { to }, waiter) => {
                        self.refuse(waiter, leader.or(Some(to)));
                    }
                }
            }
        }
    }

    /// Applies one committed entry and answers whoever waits for it.
    fn apply(&mut self, entry: crate::raft::Entry) {
        debug_assert_eq!(
            entry.index,
            self.applied_index + 1,
            "entries apply in order"
        );
        self.applied_index = entry.index;
        self.applied_term = entry.term;
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
        while let Some((&index, _)) = self.awaiting_apply.first_key_value() {
            if index > entry.index {
                break;
            }
            let (_, (term, reply)) = self.awaiting_apply.pop_first().expect("just seen");
            let result = match (&answer, index == entry.index && term == entry.term) {
                (Some(answer), true) => Ok(answer.clone()),
                _ => Err(Error::Lost),
            };
            let _ = reply.send(result);
        }
        if let (Some(answer), Some(reply)) = (answer, reply_to)
            && self.raft.role() == Role::Leader
        {
            self.respond(reply, ResponseBody::Applied { data: answer });
        }
    }

    /// Serialises the state machine as of the applied index (the commit path waits only for
    /// this) and queues it for the WAL thread to save, in order with this turn's other work.
    fn take_snapshot(&mut self) {
        let index = self.applied_index;
        if index <= self.raft.snapshot_index() {
            return;
        }
        let data = Arc::new(self.state_machine.snapshot());
        log::info!(
            "snapshotting up to index {index} ({} bytes, {} entries since the last)",
            data.len(),
            self.snapshots.entries_since
        );
        self.snapshots.saving = Some(index);
        self.snapshots.entries_since = 0;
        self.snapshots.bytes_since = 0;
        let term = self.applied_term;
        self.storage_ops
            .push(StorageOp::SaveSnapshot { index, term, data });
    }

    /// This node's snapshot is durable: the core sends it to followers behind and compacts.
    fn on_snapshot_saved(&mut self, index: u64, data: Arc<Vec<u8>>) {
        // One save at a time: a new one starts only once this one is reported.
        debug_assert_eq!(self.snapshots.saving, Some(index));
        self.snapshots.saving = None;
        self.raft.step(Input::SnapshotSaved { index, data });
        for reply in std::mem::take(&mut self.snapshots.waiters) {
            self.respond(reply, ResponseBody::SnapshotTaken { index });
        }
    }

    /// A leader's snapshot is installed in the WAL: the state machine takes it over.
    fn on_snapshot_installed(&mut self, index: u64, term: u64, data: &[u8]) -> Option<Stop> {
        if let Err(error) = self.state_machine.restore(data) {
            // The WAL already holds the snapshot as this node's state: running on with the old
            // state machine would diverge. Stop; a restart restores from the file or fails loudly.
            return Some(Stop::Storage(format!(
                "restoring the installed snapshot at {index}: {error}"
            )));
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
        while let Some((&waiting, _)) = self.awaiting_apply.first_key_value() {
            if waiting > index {
                break;
            }
            let (_, (_, reply)) = self.awaiting_apply.pop_first().expect("just seen");
            let _ = reply.send(Err(Error::Timeout));
        }
        self.raft.step(Input::SnapshotInstalled { index });
        self.serve_ready_reads();
        None
    }

    fn serve_ready_reads(&mut self) {
        while let Some((&index, _)) = self.ready_reads.first_key_value() {
            if index > self.applied_index {
                break;
            }
            let (_, reads) = self.ready_reads.pop_first().expect("just seen");
            for read in reads {
                let answer = self.state_machine.query(&read.query);
                match read.waiter {
                    Waiter::Api(reply) => {
                        let _ = reply.send(Ok(answer));
                    }
                    Waiter::Client(reply) => {
                        self.respond(reply, ResponseBody::Query { data: answer });
                    }
                }
            }
        }
    }

    fn refuse(&mut self, waiter: Waiter, leader: Option<NodeId>) {
        match waiter {
            Waiter::Api(reply) => {
                let _ = reply.send(Err(Error::NotLeader { leader }));
            }
            Waiter::Client(reply) => {
                let address = leader.and_then(|id| self.members.get(&id).copied());
                self.respond(reply, ResponseBody::NotLeader { leader, address });
            }
        }
    }

    fn not_leader(&self) -> ResponseBody {
        let leader = self.raft.status().leader;
        let address = leader.and_then(|id| self.members.get(&id).copied());
        ResponseBody::NotLeader { leader, address }
    }

    fn respond(&mut self, reply: ReplyTo, body: ResponseBody) {
        let response = Response {
            id: reply.request,
            body,
        };
        self.answers.push((reply.address, response));
    }

    /// Sends the turn's answers: per address, in the order given, as few datagrams as fit.
    fn send_answers(&mut self) {
        if self.answers.is_empty() {
            return;
        }
        // Taken for the loop and put back empty, so one buffer serves every turn.
        let mut answers = std::mem::take(&mut self.answers);
        // Stable: one address's answers keep their order.
        answers.sort_by_key(|(address, _)| *address);
        let mut sorted = answers.drain(..).peekable();
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
            self.send_to_client(address, wire);
        }
        drop(sorted);
        self.answers = answers;
    }

    /// Sends `wire`, one `Response` or a `Responses` of two or more, to `address`; a `Responses`
    /// too large for a datagram is halved until each part fits (a part of one answer goes alone
    /// as a `Response`; halves of two or more are never empty).
    fn send_to_client(&mut self, address: SocketAddr, wire: Wire) {
        match (self.outbox.send(Destination::Client(address), &wire), wire) {
            (Ok(()), _) => {}
            (Err(balsa_net::Error::TooLarge { .. }), Wire::Responses(mut group)) => {
                let second = group.split_off(group.len() / 2);
                for mut part in [group, second] {
                    let wire = match part.len() {
                        1 => Wire::Response(part.pop().expect("one answer")),
                        _ => Wire::Responses(part),
                    };
                    self.send_to_client(address, wire);
                }
            }
            (Err(error), _) => log::warn!("answering client {address}: {error}"),
        }
    }

    fn node_status(&self) -> NodeStatus {
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

    fn status_report(&self) -> StatusReport {
        let status = self.node_status();
        let counters = self.counters.snapshot();
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
            wal_syncs: self.wal_syncs,
            snapshot_index: status.snapshot_index,
            first_index: status.first_index,
        }
    }

    /// Answers every waiter before the thread ends.
    fn fail_all(&mut self, stop: &Stop) {
        let error = || match stop {
            Stop::Shutdown => Error::ShuttingDown,
            Stop::Storage(reason) => Error::Storage(reason.clone()),
            Stop::Failed(reason) => Error::Failed(reason.clone()),
        };
        for (_, waiter) in self.proposing.drain() {
            if let Waiter::Api(reply) = waiter {
                let _ = reply.send(Err(error()));
            }
        }
        for (_, (_, reply)) in std::mem::take(&mut self.awaiting_apply) {
            let _ = reply.send(Err(error()));
        }
        let reads = self.reads.drain().map(|(_, read)| read);
        let ready = std::mem::take(&mut self.ready_reads)
            .into_values()
            .flatten();
        for read in reads.chain(ready).collect::<Vec<_>>() {
            if let Waiter::Api(reply) = read.waiter {
                let _ = reply.send(Err(error()));
            }
        }
    }
}

/// The name `balsa status` shows for a role.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::PreCandidate => "pre-candidate",
    }
}
