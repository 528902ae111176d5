//! The consensus thread: the loop around this node's [`Replica`], its only owner.
//!
//! It takes the events queued in the inbox (peer messages, client requests, storage reports,
//! API calls, the timer's wake-ups), hands them to the replica after the ticks that ended
//! before them (the node's clock, `timer.rs`: nothing ticks while nothing is due), then carries
//! out the replica's effects: messages and client answers to the network, storage work to the
//! WAL thread (sent at the end of the turn, in order), API results to their callers. After the
//! turn it asks the timer thread to wake it when the next tick that can matter ends
//! ([`Replica::ticks_until_due`]): a tick not due changes nothing but counters, which the next
//! event's ticks bring up to date. Taking all queued events before
//! draining the effects is what batches proposals arriving together into as few AppendEntries
//! and persists as possible. Everything Raft and the state machine decide lives in the replica,
//! which the simulator runs too; this file only moves bytes between it and the other threads.
//!
//! **Ticks and events.** A tick must never be handed over before an event that arrived before
//! it ended: a leader whose turn stalled (a snapshot of a large state, a descheduled thread)
//! and that then took the stall's ticks before the acknowledgements queued meanwhile would
//! find no follower heard from and step down (CheckQuorum) — seen under a 64-client load
//! before this rule, a leader change in the first minute of the soak. So a turn starts by
//! delivering only the ticks that ended before anything still queued arrived: after a sleep in
//! `recv`, every tick up to the wake-up; otherwise those up to the previous turn's start
//! (everything queued then was taken by that turn). It then takes at most the events queued at
//! its start, so the ticks of a busy stretch come at the next turn's start, one turn late at
//! most, as a timer's tick queued behind them did before the node slept between ticks. Taking
//! events first where the order is unknown can only delay a timeout, never cause one. The
//! scripted test `a_stalled_leader_given_its_ticks_before_the_answers_queued_meanwhile_steps_down`
//! in `raft/tests/disruption.rs` shows the step-down this order prevents (and the one after it,
//! the same leader kept by this order).
//!
//! It times the round trip to each peer it leads (from a heartbeat to that peer's next answer to
//! an AppendEntries, `RoundTrips`), for the node's metrics: the replica has no clock.
//!
//! A message that cannot be sent is logged, at most once per peer per interval with the count
//! of those left out (`throttle.rs`): a partition fails every one.
//!
//! It also keeps the transport's peer table and the replica's client hints in line with the
//! configuration in force (`members.rs`), and stops the node once the core says it was removed
//! from the cluster ([`Stop::Removed`]; a removed leader first hands leadership over).
//!
//! Invariants: every API waiter is answered exactly once (the replica's answers, and at a stop
//! `ShuttingDown` or the reason); a dead WAL or net thread stops the node, never leaving it
//! half-alive; a removed node stops only after the turn that learned it has sent its messages
//! and answers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use balsa_net::{Destination, DropReason, Inbound, Kind, Outbox, Transport};

use super::members::{PeerTable, member_addresses};
use super::storage::WalRequest;
use super::throttle::{self, Throttle, WARN_INTERVAL, repeated};
use super::timer::Clock;
use super::wire::{Response, ResponseBody, Wire};
use super::{ApiCall, Error, Event, Failure, NodeThread};
use crate::metrics::{ConsensusMetrics, LatencyHistogram};
use crate::raft::{Body, Message, NodeId, Raft, Role};
use crate::replica::{Effect, Input, Replica, SnapshotPolicy};
use crate::state_machine::StateMachine;

/// Where an embedding API call's answer goes.
pub type ApiReply = Sender<Result<Vec<u8>, Error>>;

/// The consensus thread's state.
pub struct Consensus<S> {
    replica: Replica<S, ApiReply>,
    outbox: Outbox<Wire>,
    storage: Sender<WalRequest>,
    /// The node's cluster id, written into the status reports it sends (the replica knows no
    /// cluster: a simulated one has none).
    cluster_id: u64,
    /// The transport, for its peer table (the `Node` owns its shutdown).
    transport: Arc<Transport<Wire>>,
    /// This node's advertised address (its own in the members, not necessarily the one its
    /// socket is bound to): what clients are hinted at when it leads.
    advertised: SocketAddr,
    /// The peer table's bookkeeping: which configuration it follows.
    peers: PeerTable,
    /// Ticks since the core first said this node was removed (a removed leader hands over
    /// before it stops, within a bound).
    removed_ticks: u32,
    /// Set when the WAL thread or the net thread is gone (it panicked): the node must stop,
    /// not run on half-alive.
    fatal: Option<Failure>,
    /// Failed sends, logged at most once per peer per interval (a partition fails every one).
    send_failures: Throttle<NodeId>,
    /// Round trips to the peers this node leads.
    round_trips: RoundTrips,
}

/// Round trips to peers, timed from a heartbeat (an AppendEntries without entries) to the
/// peer's next AppendEntries answer. One heartbeat per peer is timed at a time; one sent while
/// another is unanswered restarts the timing (the first was likely lost). Under load an answer
/// to an earlier AppendEntries may end the timing early: the figure is a round trip through
/// the peer's consensus thread, good to a heartbeat interval, not a network probe.
#[derive(Default)]
struct RoundTrips {
    /// When the heartbeat being timed left, per peer.
    in_flight: BTreeMap<NodeId, Instant>,
    /// Per peer of the configuration in force.
    histograms: BTreeMap<NodeId, LatencyHistogram>,
}

impl RoundTrips {
    fn sent(&mut self, to: NodeId, msg: &Message) {
        if matches!(&msg.body, Body::AppendEntries { entries, .. } if entries.is_empty()) {
            self.in_flight.insert(to, throttle::now());
        }
    }

    fn received(&mut self, from: NodeId, msg: &Message) {
        if matches!(msg.body, Body::AppendEntriesResponse { .. })
            && let Some(sent) = self.in_flight.remove(&from)
        {
            self.histograms
                .entry(from)
                .or_default()
                .observe(sent.elapsed());
        }
    }

    /// Forgets the peers not in `members`, so that churn cannot grow the maps.
    fn keep_only(&mut self, members: &BTreeMap<NodeId, SocketAddr>) {
        self.in_flight.retain(|id, _| members.contains_key(id));
        self.histograms.retain(|id, _| members.contains_key(id));
    }
}

/// Who this node is to the others on the wire.
#[derive(Clone, Copy, Debug)]
pub struct OnTheWire {
    /// The node's cluster id, written into the status reports it sends.
    pub cluster_id: u64,
    /// The node's advertised address: its own in the members, not necessarily the one its
    /// socket is bound to (`NodeConfig::listen`).
    pub advertised: SocketAddr,
}

/// Why the consensus thread stopped.
#[derive(Debug)]
pub enum Stop {
    /// Asked to.
    Shutdown,
    /// A committed configuration removed this node from the cluster: it has nothing more to do.
    Removed,
    /// It had to, for this reason: the WAL failed ([`Error::Storage`]), the state machine cannot
    /// restore the snapshot storage installed ([`Error::Restore`]), or another thread of the
    /// node died ([`Error::Failed`]: the WAL or the net thread stopped unexpectedly).
    Fatal(Error),
}

impl Stop {
    /// Whether storage may still be given work: not after it failed, nor once it holds a
    /// snapshot the state machine cannot take.
    fn storage_usable(&self) -> bool {
        !matches!(self, Stop::Fatal(Error::Storage(_) | Error::Restore { .. }))
    }
}

impl<S: StateMachine> Consensus<S> {
    /// A consensus thread's state around a restored core.
    pub fn new(
        raft: Raft,
        state_machine: S,
        transport: Arc<Transport<Wire>>,
        storage: Sender<WalRequest>,
        OnTheWire {
            cluster_id,
            advertised,
        }: OnTheWire,
        snapshot_base: (u64, u64),
        policy: SnapshotPolicy,
    ) -> Self {
        let own = raft.id();
        let mut hints = raft.membership().map(member_addresses).unwrap_or_default();
        hints.extend(transport.peers());
        hints.insert(own, advertised);
        Consensus {
            replica: Replica::new(
                raft,
                state_machine,
                Arc::clone(transport.counters()),
                hints,
                snapshot_base,
                policy,
            )
            .with_first_tag(crate::client::random_client_id()),
            outbox: transport.outbox(),
            storage,
            cluster_id,
            transport,
            advertised,
            peers: PeerTable::new(own),
            removed_ticks: 0,
            fatal: None,
            send_failures: Throttle::new(WARN_INTERVAL),
            round_trips: RoundTrips::default(),
        }
    }

    /// Runs until shutdown or a storage failure; answers every waiter before returning. Time
    /// comes from `clock` (`timer.rs`): before each event the ticks that ended since the last
    /// delivered are delivered, and after each turn the timer is asked to wake the thread when
    /// the next tick that can matter ends.
    pub fn run(mut self, inbox: &Receiver<Event>, mut clock: Clock) -> Stop {
        self.drain_effects(true);
        self.arm_timer(&mut clock);
        // Ticks that ended before this instant are older than every event still queued (see
        // "Ticks and events" in the module doc).
        let mut queued_since = throttle::now();
        let stop = loop {
            let first = match inbox.try_recv() {
                Ok(event) => event,
                Err(TryRecvError::Empty) => match inbox.recv() {
                    // Slept: what woke the thread arrived after every tick that ended so far.
                    Ok(event) => {
                        queued_since = throttle::now();
                        event
                    }
                    Err(_) => break Stop::Shutdown,
                },
                Err(TryRecvError::Disconnected) => break Stop::Shutdown,
            };
            let turn_started = throttle::now();
            // At most what is queued now: an inbox that never empties must not hold back the
            // ticks that come at the next turn's start.
            let queued = inbox.len();
            let mut stop = self.catch_up(&mut clock, queued_since);
            if stop.is_none() {
                for event in std::iter::once(first).chain(inbox.try_iter().take(queued)) {
                    if let Some(reason) = self.handle(event, &mut clock) {
                        stop = Some(reason);
                        break;
                    }
                }
            }
            queued_since = turn_started;
            // Even a turn that ends in a stop answers what it can (clients, API callers); a
            // failed WAL gets no more work.
            self.drain_effects(stop.as_ref().is_none_or(Stop::storage_usable));
            self.follow_configuration();
            let dead_thread = || {
                self.fatal
                    .take()
                    .map(|failure| Stop::Fatal(Error::Failed(failure)))
            };
            if let Some(reason) = stop.or_else(dead_thread).or_else(|| self.removal()) {
                break reason;
            }
            self.arm_timer(&mut clock);
        };
        self.fail_all(&stop);
        let _ = self.storage.send(WalRequest::Shutdown);
        stop
    }

    /// Delivers, one by one, the ticks that ended by `until` since the last delivered.
    fn catch_up(&mut self, clock: &mut Clock, until: Instant) -> Option<Stop> {
        for _ in 0..clock.take_elapsed(until) {
            if self.replica.raft().is_removed() {
                self.removed_ticks = self.removed_ticks.saturating_add(1);
            }
            if let Some(stop) = self.step(Input::Tick) {
                return Some(stop);
            }
        }
        None
    }

    /// Asks the timer for a wake-up when the fewest ticks until one can make this node act
    /// have passed: the replica's count, or 1 while a removed leader counts the ticks it may
    /// take to hand over (`removal`). A leader's alarm then repeats every heartbeat interval
    /// (`timer.rs`, "Repeating alarms"): the next heartbeat needs no message to the timer.
    fn arm_timer(&self, clock: &mut Clock) {
        let raft = self.replica.raft();
        let leading = raft.role() == Role::Leader;
        let due = if raft.is_removed() && leading {
            Some(1)
        } else {
            self.replica.ticks_until_due()
        };
        let every = leading.then_some(raft.config().heartbeat_ticks);
        clock.arm(due, every);
    }

    fn handle(&mut self, event: Event, clock: &mut Clock) -> Option<Stop> {
        match event {
            // A wake-up from the timer: the ticks themselves come from the clock (`catch_up`).
            Event::Tick => clock.fired(),
            Event::Storage(done) => return self.step(Input::Storage(done)),
            Event::Net(inbound) => return self.on_inbound(inbound),
            Event::Api(call) => self.on_api(call, clock),
            Event::StorageFailed(error) => return Some(Stop::Fatal(Error::Storage(error))),
            Event::Shutdown => return Some(Stop::Shutdown),
        }
        None
    }

    fn on_inbound(&mut self, inbound: Inbound<Wire>) -> Option<Stop> {
        let input = match (inbound.kind, inbound.msg) {
            (Kind::Peer, Wire::Raft(msg)) => {
                self.round_trips.received(inbound.from, &msg);
                Input::Peer {
                    from: inbound.from,
                    msg,
                }
            }
            // What a client request may carry is the replica's rule (it counts the rest).
            (Kind::Request, wire) => Input::Client {
                source: inbound.source,
                wire,
            },
            (kind, _) => {
                // Anything but a Raft message in member traffic, or a response sent to a node.
                log::debug!(
                    "dropped a {kind:?} datagram from {} carrying the wrong message",
                    inbound.source
                );
                self.transport
                    .counters()
                    .dropped_from(DropReason::WrongKind, inbound.source);
                return None;
            }
        };
        self.step(input)
    }

    /// Hands `input` to the replica; an error stops the node.
    fn step(&mut self, input: Input) -> Option<Stop> {
        self.replica.step(input).err().map(Stop::Fatal)
    }

    fn on_api(&mut self, call: ApiCall, clock: &Clock) {
        match call {
            ApiCall::Propose { data, reply } => self.replica.propose(&data, reply),
            ApiCall::Read { query, reply } => self.replica.read(query, reply),
            ApiCall::Status { reply } => {
                let _ = reply.send(self.replica.status());
            }
            ApiCall::Transfer { to, reply } => {
                let _ = reply.send(self.replica.transfer_leader(to));
            }
            ApiCall::HandOff { reply } => {
                let target = self.replica.raft().hand_off_target();
                if let Some(to) = target {
                    // It leads (a target says so), so the replica takes the transfer.
                    let _ = self.replica.transfer_leader(to);
                }
                let _ = reply.send(target);
            }
            ApiCall::ChangeMembership { steps, reply } => {
                self.replica.change_membership(steps, reply);
            }
            ApiCall::Members { reply } => {
                let _ = reply.send(self.replica.raft().membership().cloned());
            }
            ApiCall::Metrics { reply } => {
                let _ = reply.send(ConsensusMetrics {
                    status: self.replica.status(),
                    proposals_pending: self.replica.proposals_pending(),
                    counts: self.replica.counts(),
                    client_sessions: self.replica.state_machine().client_sessions(),
                    peer_round_trip: self
                        .round_trips
                        .histograms
                        .iter()
                        .map(|(id, histogram)| (*id, histogram.histogram()))
                        .collect(),
                    ticks: clock.delivered(),
                    timer_wakeups: clock.wakeups(),
                });
            }
        }
    }

    /// Carries out every effect the replica has: messages and answers leave at once, storage
    /// work goes to the WAL thread at the end, in the replica's order (which already puts it
    /// after the turn's messages and answers). Without `to_storage` the storage work is dropped.
    fn drain_effects(&mut self, mut to_storage: bool) {
        while let Some(effect) = self.replica.poll_effect() {
            match effect {
                Effect::Send { to, msg } => {
                    // A member added in this turn is in the table before its first message.
                    self.follow_configuration();
                    self.round_trips.sent(to, &msg);
                    match self.outbox.send(Destination::Peer(to), &Wire::Raft(msg)) {
                        Ok(()) => {}
                        Err(balsa_net::Error::Closed) => {
                            log::error!("the net thread is gone; the node is stopping");
                            self.fatal = Some(Failure::Stopped {
                                thread: NodeThread::Net,
                            });
                        }
                        Err(error) => {
                            if let Some(left_out) = self.send_failures.hit(to, throttle::now()) {
                                log::warn!("sending to node {to}: {error}{}", repeated(left_out));
                            }
                        }
                    }
                }
                Effect::Answer { to, mut wire } => {
                    stamp_cluster_id(&mut wire, self.cluster_id);
                    self.send_to_client(to, wire);
                }
                Effect::Reply { reply, result } => {
                    let _ = reply.send(result);
                }
                // The replica hands storage work out last in a turn, after the messages and
                // answers, so it goes to the WAL thread as it comes.
                Effect::Storage(op) if to_storage => {
                    if self.storage.send(WalRequest::Work(op)).is_err() {
                        log::error!("the WAL thread is gone; the node is stopping");
                        self.fatal = Some(Failure::Stopped {
                            thread: NodeThread::Wal,
                        });
                        to_storage = false;
                    }
                }
                Effect::Storage(_) | Effect::Applied { .. } => {}
            }
        }
    }

    /// Sends `wire`, one `Response` or a `Responses` of two or more, to `address`; a `Responses`
    /// too large for a datagram is halved until each part fits (a part of one answer goes alone
    /// as a `Response`; halves of two or more are never empty). One answer too large for a
    /// datagram (a range read's page asked for with a client's larger datagram limit) is
    /// replaced by `TooLarge` with this node's limit, so the client can ask again within it.
    fn send_to_client(&mut self, address: SocketAddr, wire: Wire) {
        match (self.outbox.send(Destination::Client(address), &wire), wire) {
            (Ok(()), _) => {}
            (Err(balsa_net::Error::TooLarge { size, limit }), Wire::Response(response))
                if !matches!(response.body, ResponseBody::TooLarge { .. }) =>
            {
                let refusal = Wire::Response(Response {
                    id: response.id,
                    body: ResponseBody::TooLarge {
                        size: size as u64,
                        max: limit as u64,
                    },
                });
                self.send_to_client(address, refusal);
            }
            (Err(balsa_net::Error::TooLarge { .. }), Wire::Responses(mut group)) => {
                let second = group.split_off(group.len() / 2);
                for mut part in [group, second] {
                    let wire = match part.len() {
                        1 => Wire::Response(part.pop().expect("a part of one holds one answer")),
                        _ => Wire::Responses(part),
                    };
                    self.send_to_client(address, wire);
                }
            }
            (Err(error), _) => log::warn!("answering client {address}: {error}"),
        }
    }

    /// Keeps the peer table and the client hints in line with the configuration in force.
    fn follow_configuration(&mut self) {
        if let Some(hints) = self.peers.follow(self.replica.raft(), &self.transport) {
            let mut hints = hints;
            self.round_trips.keep_only(&hints);
            hints.insert(self.replica.raft().id(), self.advertised);
            self.replica.set_member_addresses(hints);
        }
    }

    /// `Some(Stop::Removed)` once a committed configuration removed this node and it has
    /// nothing more to do: at once on a follower; a leader first hands leadership over (the
    /// core does, at the commit), or gives up after two maximum election timeouts.
    fn removal(&self) -> Option<Stop> {
        let raft = self.replica.raft();
        if !raft.is_removed() {
            return None;
        }
        let hand_off_ticks = raft.config().election_ticks.1.saturating_mul(2);
        if raft.role() == Role::Leader && self.removed_ticks < hand_off_ticks {
            return None;
        }
        let index = raft.membership_index();
        log::info!(
            "node {} was removed from the cluster by the configuration at index {index}",
            raft.id()
        );
        Some(Stop::Removed)
    }

    /// Answers every API waiter before the thread ends.
    fn fail_all(&mut self, stop: &Stop) {
        let error = || match stop {
            Stop::Shutdown | Stop::Removed => Error::ShuttingDown,
            Stop::Fatal(error) => error.clone(),
        };
        for reply in self.replica.take_waiters() {
            let _ = reply.send(Err(error()));
        }
    }
}

/// Writes `cluster_id` into every status report `wire` carries: the replica leaves it 0, since
/// the cluster is the runtime's (its identity) and a simulated replica has none.
fn stamp_cluster_id(wire: &mut Wire, cluster_id: u64) {
    let stamp = |response: &mut Response| {
        if let ResponseBody::Status(report) = &mut response.body {
            report.cluster_id = cluster_id;
        }
    };
    match wire {
        Wire::Response(response) => stamp(response),
        Wire::Responses(responses) => responses.iter_mut().for_each(stamp),
        Wire::Raft(_) | Wire::Request(_) | Wire::Requests(_) => {}
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
