//! One client session of the key-value service, sans-IO: the whole client protocol with no
//! socket and no clock.
//!
//! A [`Session`] owns what the protocol remembers between datagrams: the client id and the next
//! write's `seq`, the next request id, the node believed to lead, when each endpoint last
//! failed, and the one operation in progress with its attempts, backoff and deadlines. Its driver (the blocking
//! [`Client`](super::Client), the [`Multiplexer`](super::multiplexer::Multiplexer), or a
//! simulator) does the I/O and tells the time, quinn-proto style:
//!
//! - [`Session::start`] begins an operation;
//! - [`Session::poll_transmit`] hands out the next datagram to send and where (`None`: nothing
//!   to send now); a send that fails is reported with [`Session::handle_send_failed`];
//! - [`Session::handle_response`] takes an answer ([`Session::awaits`] says whether a request id
//!   is one of this operation's attempts, for drivers that share a socket);
//! - [`Session::poll_timeout`] says when the session next needs [`Session::handle_timeout`];
//! - [`Session::poll_outcome`] gives the operation's end, once.
//!
//! Time is a [`Duration`] since an origin the driver picks and keeps (its start, a simulation's
//! time zero): every `now` a session is given must be at or after the previous one.
//!
//! # The protocol
//!
//! A request goes to the node believed to lead (at first, the first endpoint). A `NotLeader`
//! answer to the current attempt that names the leader (another node) sends the next attempt
//! there at once. One that names no leader but gives a hint comes from a node that lost touch
//! with its leader (or hands leadership over): another node may not have, so the next attempt
//! goes at once to the next endpoint, not to the hint — until every endpoint has answered so
//! since the last pause, when a backoff step comes first. One with no hint at all waits a
//! backoff (from [`ClientOptions::backoff_start`], doubling, at most
//! [`ClientOptions::backoff_max`]) and goes to the next endpoint. An attempt unanswered for
//! [`ClientOptions::attempt_timeout`] goes to the next endpoint. An operation addressed to one
//! node (status, snapshot, a snapshot read) retries that node only. The node that answers a write (the leader
//! answers applied writes from its own address) becomes the believed leader; a `NotLeader`
//! answer, or silence from the believed leader, forgets it.
//!
//! **Endpoints that failed are tried last.** The session remembers when each endpoint last
//! failed an attempt — went silent for its attempt timeout, refused with no hint, or could not
//! be sent to — and, choosing the next endpoint (or where an operation starts), skips one that
//! failed within the last [`RECENT_FAILURE_ATTEMPTS`] attempt timeouts when another has not.
//! An answer from the endpoint forgets its failure. So a client whose first endpoint is down
//! pays its attempt timeout once, not at every operation.
//!
//! Every attempt carries a fresh request id; a final answer to any attempt of the operation in
//! progress is accepted (the first may be the one applied); `NotLeader` counts only from the
//! current attempt (an older one says nothing about where the newest went).
//!
//! # Ends
//!
//! When [`ClientOptions::timeout`] runs out, the operation ends with
//! [`ClientError::Timeout`] if some attempt went unanswered (a write may have been applied:
//! outcome unknown; a read failed) — or [`ClientError::NoNodeAnswered`] if no endpoint has ever
//! answered this session anything, which names the endpoints and asks whether a cluster runs
//! there — else with [`ClientError::Unavailable`] (every attempt was refused or not
//! sent: nothing was applied). [`ClientError::TooLarge`] and [`ClientError::Rejected`] end it
//! at once, definitely without effect.
//!
//! Invariants (asserted where cheap): at most one operation in progress, and its outcome taken
//! before the next starts; a write's `seq` is fixed when it starts (its command is encoded once,
//! every attempt sends those bytes) and grows by one per write, so it never repeats; request ids
//! strictly increase, by the session's stride, so no two attempts share one.

use std::net::SocketAddr;
use std::time::Duration;

use super::{ClientError, ClientOptions, OperationKind, protocol};
use crate::kv::{Answer, Command, Op, Query};
use crate::raft::NodeId;
use crate::runtime::wire::{
    MemberStep, MembersReport, Request, RequestBody, Response, ResponseBody, SnapshotPiece,
    StatusReport,
};

/// One operation of the key-value service's client protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Replicate a write under the session's next `seq`; goes to the leader.
    Write(Op),
    /// Read; linearizable through the leader, or, if `stale`, from the state of whichever node
    /// answers (it may miss recent writes).
    Read {
        /// What to read.
        query: Query,
        /// Answer from the asked node's own state at once.
        stale: bool,
    },
    /// A linearizable read answered by the node at `node` only (a follower asks the leader for
    /// the read index, and answers once it has applied that far): once it is answered, that
    /// node has applied every write acknowledged before the read started. `balsa snapshot
    /// save` uses it as the barrier before it asks that node for a snapshot.
    ReadAt {
        /// The node.
        node: SocketAddr,
        /// What to read.
        query: Query,
    },
    /// The status of the node at this address (that node only, any address).
    Status(SocketAddr),
    /// Ask the node at this address to snapshot its state machine and compact its log now.
    Snapshot(SocketAddr),
    /// Ask the leader to hand leadership to this node.
    Transfer(NodeId),
    /// The configuration in force at the node at this address (that node only).
    Members(SocketAddr),
    /// Ask the leader to change the membership; every attempt carries the same `token`, so a
    /// retry joins the change in flight rather than starting another.
    ChangeMembership {
        /// The change, as one joint change.
        steps: Vec<MemberStep>,
        /// The change's tag, the same on every attempt.
        token: u64,
    },
    /// Read the piece of the newest snapshot of the node at `node` (that node only) from
    /// `offset`, at most `max_bytes` of it.
    ReadSnapshot {
        /// The node.
        node: SocketAddr,
        /// The first byte wanted.
        offset: u64,
        /// The most bytes wanted (the node may send fewer).
        max_bytes: u32,
    },
}

/// What a finished operation got back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The write was applied; the state machine's answer (never `Rejected` or `StaleRequest`:
    /// those end the operation with an error).
    Written(Answer),
    /// The read's answer (never `Rejected`: that is an error).
    Read(Answer),
    /// The node's status.
    Status(StatusReport),
    /// The snapshot is durable; it covers the log up to this index.
    SnapshotTaken(u64),
    /// The leadership transfer started.
    TransferStarted,
    /// The node's configuration in force.
    Members(MembersReport),
    /// The membership change completed: the new configuration.
    MembershipChanged(MembersReport),
    /// A piece of the node's newest snapshot.
    SnapshotPiece(SnapshotPiece),
}

/// A datagram's worth to send: one request and its destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where it goes.
    pub to: SocketAddr,
    /// The attempt.
    pub request: Request,
}

/// How an operation ended.
#[derive(Debug)]
pub struct Completed {
    /// Its reply, or why it failed.
    pub result: Result<Reply, ClientError>,
    /// From its start to its end, in the driver's time.
    pub elapsed: Duration,
}

/// One client's side of the protocol: see the module doc.
#[derive(Debug)]
pub struct Session {
    endpoints: Vec<SocketAddr>,
    timing: Timing,
    client_id: u64,
    /// The seq of the next write.
    next_seq: u64,
    /// The seq of the last write started (0: none yet).
    last_write_seq: u64,
    /// The id of the next attempt; ids go up by `request_id_stride`.
    next_request_id: u64,
    request_id_stride: u64,
    /// The node believed to lead.
    leader: Option<SocketAddr>,
    /// Where round-robin over the endpoints continues.
    cursor: usize,
    /// When each endpoint (in the order of `endpoints`) last failed an attempt: went silent for
    /// its attempt timeout, refused with no hint, or could not be sent to. `None`: not since it
    /// last answered. An endpoint that failed within [`RECENT_FAILURE_ATTEMPTS`] attempt
    /// timeouts is tried after the others.
    failed_at: Vec<Option<Duration>>,
    /// Some node answered this session something (any answer, a refusal too), ever: until one
    /// does, a timeout says that no node answered at all.
    heard_from_a_node: bool,
    state: State,
}

/// How many attempt timeouts an endpoint's failure is remembered for: meanwhile, the endpoints
/// that have not failed are tried first.
pub const RECENT_FAILURE_ATTEMPTS: u32 = 3;

/// The retry schedule, from [`ClientOptions`].
#[derive(Clone, Copy, Debug)]
struct Timing {
    timeout: Duration,
    attempt_timeout: Duration,
    backoff_start: Duration,
    backoff_max: Duration,
}

#[derive(Debug)]
enum State {
    Idle,
    Busy(InFlight),
    /// Ended; the outcome waits for [`Session::poll_outcome`].
    Done(Completed),
}

/// The operation in progress.
#[derive(Debug)]
struct InFlight {
    expect: Expect,
    /// Encoded once: every attempt sends the same bytes (a write, the same `(client, seq)`).
    body: RequestBody,
    route: Route,
    started: Duration,
    deadline: Duration,
    /// The next pause after a refusal.
    backoff: Duration,
    /// The first and last attempt's ids; its attempts are the session's ids between them.
    attempts: Option<(u64, u64)>,
    /// Some attempt went unanswered for its whole attempt timeout.
    some_attempt_unanswered: bool,
    /// "No leader known here" answers that moved on to the next endpoint at once since the
    /// last pause: once every endpoint said so, the next one waits a backoff step.
    moved_on: usize,
    /// Why the last attempt was refused (for [`ClientError::Unavailable`]).
    last_refusal: String,
    step: AttemptState,
}

/// What an operation expects back: its kind.
#[derive(Clone, Copy, Debug)]
enum Expect {
    Write { seq: u64 },
    Read,
    Status,
    Snapshot,
    Transfer,
    Members,
    ChangeMembership,
    SnapshotPiece,
}

/// Which node a request goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// The leader, found through hints.
    Leader,
    /// This node and no other.
    Node(SocketAddr),
}

/// Where the operation's attempts stand.
#[derive(Clone, Copy, Debug)]
enum AttemptState {
    /// The next attempt is due now.
    Ready { target: SocketAddr },
    /// Attempt `attempt` went to `target`; it is given up at `until`.
    Awaiting {
        target: SocketAddr,
        attempt: u64,
        until: Duration,
    },
    /// Refused: the next attempt goes to `next` at `until`.
    Pausing { next: SocketAddr, until: Duration },
}

impl Session {
    /// A session of client `client_id` with the cluster reachable at `endpoints`, timed by
    /// `options`; its request ids are 1, 2, 3… (see [`Session::with_request_ids`]).
    ///
    /// # Errors
    /// [`ClientError::Config`] for no endpoints or a zero timeout.
    pub fn new(
        endpoints: Vec<SocketAddr>,
        options: &ClientOptions,
        client_id: u64,
    ) -> Result<Session, ClientError> {
        if endpoints.is_empty() {
            return Err(ClientError::Config {
                reason: "no endpoints".into(),
            });
        }
        if options.attempt_timeout.is_zero() || options.timeout.is_zero() {
            return Err(ClientError::Config {
                reason: "timeouts must be longer than zero".into(),
            });
        }
        Ok(Session {
            failed_at: vec![None; endpoints.len()],
            endpoints,
            timing: Timing {
                timeout: options.timeout,
                attempt_timeout: options.attempt_timeout,
                backoff_start: options.backoff_start,
                backoff_max: options.backoff_max,
            },
            client_id,
            next_seq: 1,
            last_write_seq: 0,
            next_request_id: 1,
            request_id_stride: 1,
            leader: None,
            cursor: 0,
            heard_from_a_node: false,
            state: State::Idle,
        })
    }

    /// The same session numbering its attempts `first`, `first + stride`, `first + 2 × stride`…:
    /// sessions sharing a socket number theirs apart, so an answer's id names its session.
    ///
    /// # Panics
    /// If `stride` is zero (every attempt would have the same id).
    #[must_use]
    pub fn with_request_ids(mut self, first: u64, stride: u64) -> Session {
        assert!(stride > 0, "request ids must differ");
        self.next_request_id = first;
        self.request_id_stride = stride;
        self
    }

    /// The client id its writes carry.
    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    /// The endpoints it was given.
    pub fn endpoints(&self) -> &[SocketAddr] {
        &self.endpoints
    }

    /// The node it believes leads, if any.
    pub fn leader(&self) -> Option<SocketAddr> {
        self.leader
    }

    /// The seq the next write will carry.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The id its next attempt will carry.
    pub fn next_request_id(&self) -> u64 {
        self.next_request_id
    }

    /// Moves its request ids on to `id` or beyond (keeping its stride), so that ids below `id`
    /// can be used by others (a [`Client`](super::Client) asking several nodes at once).
    pub fn skip_request_ids_to(&mut self, id: u64) {
        let behind = id.saturating_sub(self.next_request_id);
        self.next_request_id += behind.div_ceil(self.request_id_stride) * self.request_id_stride;
    }

    /// True while an operation is in progress (started, outcome not yet known).
    pub fn is_busy(&self) -> bool {
        matches!(self.state, State::Busy(_))
    }

    /// Starts `operation` at `now`.
    ///
    /// # Errors
    /// [`ClientError::TooLarge`] for a key or value over its limit: nothing starts.
    ///
    /// # Panics
    /// If an operation is in progress or its outcome has not been taken: one at a time.
    pub fn start(&mut self, now: Duration, operation: Operation) -> Result<(), ClientError> {
        assert!(
            matches!(self.state, State::Idle),
            "a session runs one operation at a time, and its outcome is taken before the next"
        );
        let (expect, body, route) = match operation {
            Operation::Write(op) => {
                let seq = self.next_seq;
                let command = Command {
                    client_id: self.client_id,
                    seq,
                    op,
                };
                command.check_limits()?;
                assert!(seq > self.last_write_seq, "a write's seq never repeats");
                self.last_write_seq = seq;
                self.next_seq += 1;
                let data = command.encode();
                (
                    Expect::Write { seq },
                    RequestBody::Command { data },
                    Route::Leader,
                )
            }
            Operation::Read { query, stale } => {
                query.check_limits()?;
                let data = query.encode();
                (
                    Expect::Read,
                    RequestBody::Query { data, stale },
                    Route::Leader,
                )
            }
            Operation::ReadAt { node, query } => {
                query.check_limits()?;
                let data = query.encode();
                (
                    Expect::Read,
                    RequestBody::Query { data, stale: false },
                    Route::Node(node),
                )
            }
            Operation::Status(node) => (Expect::Status, RequestBody::Status, Route::Node(node)),
            Operation::Snapshot(node) => {
                (Expect::Snapshot, RequestBody::Snapshot, Route::Node(node))
            }
            Operation::Transfer(to) => (
                Expect::Transfer,
                RequestBody::Transfer { to },
                Route::Leader,
            ),
            Operation::Members(node) => (Expect::Members, RequestBody::Members, Route::Node(node)),
            Operation::ChangeMembership { steps, token } => (
                Expect::ChangeMembership,
                RequestBody::ChangeMembership { steps, token },
                Route::Leader,
            ),
            Operation::ReadSnapshot {
                node,
                offset,
                max_bytes,
            } => (
                Expect::SnapshotPiece,
                RequestBody::ReadSnapshot { offset, max_bytes },
                Route::Node(node),
            ),
        };
        let target = match route {
            Route::Node(node) => node,
            Route::Leader => self.leader.unwrap_or_else(|| self.first_choice(now)),
        };
        self.state = State::Busy(InFlight {
            expect,
            body,
            route,
            started: now,
            deadline: now.saturating_add(self.timing.timeout),
            backoff: self.timing.backoff_start,
            attempts: None,
            some_attempt_unanswered: false,
            moved_on: 0,
            last_refusal: String::from("no attempt was made"),
            step: AttemptState::Ready { target },
        });
        Ok(())
    }

    /// The next attempt to send, if one is due at `now`. The driver sends it and reports a
    /// failed send with [`Session::handle_send_failed`] before anything else.
    pub fn poll_transmit(&mut self, now: Duration) -> Option<Transmit> {
        let State::Busy(op) = &mut self.state else {
            return None;
        };
        let AttemptState::Ready { target } = op.step else {
            return None;
        };
        if now >= op.deadline {
            self.end_out_of_time(now);
            return None;
        }
        let id = self.next_request_id;
        self.next_request_id += self.request_id_stride;
        op.attempts = Some(match op.attempts {
            Some((first, last)) => {
                assert!(id > last, "request ids only grow");
                (first, id)
            }
            None => (id, id),
        });
        op.step = AttemptState::Awaiting {
            target,
            attempt: id,
            until: now
                .saturating_add(self.timing.attempt_timeout)
                .min(op.deadline),
        };
        Some(Transmit {
            to: target,
            request: Request {
                id,
                body: op.body.clone(),
            },
        })
    }

    /// The attempt just handed out by [`Session::poll_transmit`] was not sent (`error` says
    /// why): it had no effect. A request too large to encode ends the operation; anything else
    /// counts as a refusal (backoff, next endpoint).
    pub fn handle_send_failed(&mut self, now: Duration, error: ClientError) {
        let State::Busy(op) = &mut self.state else {
            return;
        };
        let AttemptState::Awaiting { target, .. } = op.step else {
            return;
        };
        if let ClientError::TooLarge { .. } = error {
            self.end(now, Err(error));
            return;
        }
        op.last_refusal = format!("sending to {target}: {error}");
        self.note_failure(target, now);
        self.pause(now, target);
    }

    /// True if request `id` is an attempt of the operation in progress: its answer is this
    /// session's to handle.
    pub fn awaits(&self, id: u64) -> bool {
        let State::Busy(op) = &self.state else {
            return false;
        };
        op.attempts.is_some_and(|(first, last)| {
            (first..=last).contains(&id) && (id - first).is_multiple_of(self.request_id_stride)
        })
    }

    /// Takes `response`, received at `now` from `from`. Returns false (and does nothing) if it
    /// answers no attempt of the operation in progress: a late answer to an earlier operation,
    /// another session's, or a duplicate after the end.
    pub fn handle_response(&mut self, now: Duration, from: SocketAddr, response: Response) -> bool {
        if !self.awaits(response.id) {
            return false;
        }
        self.note_answer(from);
        self.heard_from_a_node = true;
        let State::Busy(op) = &mut self.state else {
            unreachable!("awaits() holds only while busy");
        };
        match response.body {
            ResponseBody::NotLeader { leader, address } => {
                let AttemptState::Awaiting {
                    target, attempt, ..
                } = op.step
                else {
                    return true; // an older attempt's: the current one is elsewhere already
                };
                if attempt != response.id {
                    return true;
                }
                self.leader = None;
                op.last_refusal = match (leader, address) {
                    (Some(_), Some(hint)) => format!("{target} is not the leader; {hint} is"),
                    (None, Some(hint)) => {
                        format!("{target} knows no leader (it last heard of {hint})")
                    }
                    (_, None) => format!("{target} knows no leader"),
                };
                match (op.route, leader, address) {
                    // The leader it follows: go there at once.
                    (Route::Leader, Some(_), Some(hint)) if hint != target => {
                        self.ready(now, hint);
                    }
                    // It lost touch with the leader (or hands leadership over): another node
                    // may not have, so the next endpoint at once.
                    (Route::Leader, None, Some(_)) => self.move_on(now, target),
                    (_, _, None) => {
                        self.note_failure(target, now);
                        self.pause(now, target);
                    }
                    _ => self.pause(now, target),
                }
            }
            ResponseBody::TooLarge { size, max } => {
                self.end(now, Err(ClientError::TooLarge { size, max }));
            }
            ResponseBody::Error { message } => {
                self.end(now, Err(ClientError::Rejected { reason: message }));
            }
            body => {
                if op.route == Route::Leader
                    && (self.leader.is_none() || matches!(body, ResponseBody::Applied { .. }))
                {
                    // The leader answers applied writes from its own address.
                    self.leader = Some(from);
                }
                let result = op.expect.interpret(body);
                self.end(now, result);
            }
        }
        true
    }

    /// When the session next needs [`Session::handle_timeout`]: `None` while no operation is in
    /// progress; a time at or before now when an attempt is due ([`Session::poll_transmit`]).
    pub fn poll_timeout(&self) -> Option<Duration> {
        let State::Busy(op) = &self.state else {
            return None;
        };
        match op.step {
            AttemptState::Ready { .. } => Some(Duration::ZERO),
            AttemptState::Awaiting { until, .. } | AttemptState::Pausing { until, .. } => {
                Some(until)
            }
        }
    }

    /// Acts on the time: an attempt unanswered until its timeout moves on to the next endpoint,
    /// a pause that is over makes the next attempt due, and an operation out of time ends.
    pub fn handle_timeout(&mut self, now: Duration) {
        let State::Busy(op) = &mut self.state else {
            return;
        };
        match op.step {
            AttemptState::Awaiting { target, until, .. } if now >= until => {
                op.some_attempt_unanswered = true;
                if self.leader == Some(target) {
                    self.leader = None;
                }
                self.note_failure(target, now);
                let next = self.next_target(target, now);
                self.ready(now, next);
            }
            AttemptState::Pausing { next, until } if now >= until => self.ready(now, next),
            AttemptState::Ready { target } => self.ready(now, target),
            AttemptState::Awaiting { .. } | AttemptState::Pausing { .. } => {}
        }
    }

    /// The outcome of the operation that ended, once; the session is then idle.
    pub fn poll_outcome(&mut self) -> Option<Completed> {
        if !matches!(self.state, State::Done(_)) {
            return None;
        }
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Done(completed) => Some(completed),
            State::Idle | State::Busy(_) => unreachable!("checked above"),
        }
    }

    /// Drops the operation in progress without an outcome: its driver failed (its socket) and
    /// reports that instead. The session is then idle.
    pub fn abandon(&mut self) {
        self.state = State::Idle;
    }

    /// The next attempt goes to `target` now, unless the operation is out of time.
    fn ready(&mut self, now: Duration, target: SocketAddr) {
        let State::Busy(op) = &mut self.state else {
            return;
        };
        if now >= op.deadline {
            self.end_out_of_time(now);
        } else {
            op.step = AttemptState::Ready { target };
        }
    }

    /// Waits one backoff step (never past the deadline) before trying the node after `target`;
    /// the next step is twice as long, up to the maximum.
    fn pause(&mut self, now: Duration, target: SocketAddr) {
        let next = self.next_target(target, now);
        let State::Busy(op) = &mut self.state else {
            return;
        };
        op.step = AttemptState::Pausing {
            next,
            until: now.saturating_add(op.backoff).min(op.deadline),
        };
        op.backoff = (op.backoff * 2).min(self.timing.backoff_max);
        op.moved_on = 0;
    }

    /// `target` knows no leader but is no help either: the next endpoint goes at once, unless
    /// every endpoint has said so since the last pause (an election is under way, most likely):
    /// then a backoff step first.
    fn move_on(&mut self, now: Duration, target: SocketAddr) {
        let State::Busy(op) = &mut self.state else {
            return;
        };
        op.moved_on += 1;
        if op.moved_on >= self.endpoints.len() {
            self.pause(now, target);
        } else {
            let next = self.next_target(target, now);
            self.ready(now, next);
        }
    }

    /// Where an operation for the leader starts when none is believed to lead: where the
    /// round-robin stands, or the first endpoint after it that has not failed recently.
    fn first_choice(&mut self, now: Duration) -> SocketAddr {
        let len = self.endpoints.len();
        if let Some(cursor) = (0..len)
            .map(|k| (self.cursor + k) % len)
            .find(|&position| !self.failed_recently(position, now))
        {
            self.cursor = cursor;
        }
        self.endpoints[self.cursor]
    }

    /// Where to try after `current`: the same node for an operation addressed to one, else the
    /// first endpoint after it that has not failed recently, or the one right after it if every
    /// other has.
    fn next_target(&mut self, current: SocketAddr, now: Duration) -> SocketAddr {
        if let State::Busy(InFlight {
            route: Route::Node(node),
            ..
        }) = self.state
        {
            return node;
        }
        let len = self.endpoints.len();
        // A hinted node that is not an endpoint: the round-robin goes on after where it stood.
        let after = self
            .endpoints
            .iter()
            .position(|e| *e == current)
            .unwrap_or(self.cursor);
        self.cursor = (1..len)
            .map(|k| (after + k) % len)
            .find(|&position| !self.failed_recently(position, now))
            .unwrap_or((after + 1) % len);
        self.endpoints[self.cursor]
    }

    /// Whether the endpoint at `position` failed within the last
    /// [`RECENT_FAILURE_ATTEMPTS`] attempt timeouts.
    fn failed_recently(&self, position: usize, now: Duration) -> bool {
        let window = self.timing.attempt_timeout * RECENT_FAILURE_ATTEMPTS;
        self.failed_at[position].is_some_and(|at| now < at.saturating_add(window))
    }

    /// `node` failed an attempt at `now` (silence, a refusal with no hint, a failed send).
    fn note_failure(&mut self, node: SocketAddr, now: Duration) {
        if let Some(position) = self.endpoints.iter().position(|e| *e == node) {
            self.failed_at[position] = Some(now);
        }
    }

    /// `node` answered: whatever it failed before is forgotten.
    fn note_answer(&mut self, node: SocketAddr) {
        if let Some(position) = self.endpoints.iter().position(|e| *e == node) {
            self.failed_at[position] = None;
        }
    }

    /// Ends the operation at its deadline: unknown if an attempt went unanswered, else refused.
    fn end_out_of_time(&mut self, now: Duration) {
        let State::Busy(op) = &mut self.state else {
            return;
        };
        let (waited, kind) = (now.saturating_sub(op.started), op.expect.kind());
        let error = if op.some_attempt_unanswered && !self.heard_from_a_node {
            ClientError::NoNodeAnswered {
                endpoints: self.endpoints.clone(),
                waited,
                kind,
            }
        } else if op.some_attempt_unanswered {
            ClientError::Timeout { waited, kind }
        } else {
            ClientError::Unavailable {
                reason: std::mem::take(&mut op.last_refusal),
            }
        };
        self.end(now, Err(error));
    }

    fn end(&mut self, now: Duration, result: Result<Reply, ClientError>) {
        let State::Busy(op) = &self.state else {
            return;
        };
        let elapsed = now.saturating_sub(op.started);
        self.state = State::Done(Completed { result, elapsed });
    }
}

impl Expect {
    /// The reply a final answer makes for an operation of this kind.
    fn interpret(self, body: ResponseBody) -> Result<Reply, ClientError> {
        match (self, body) {
            (Expect::Write { seq }, ResponseBody::Applied { data }) => {
                match decode_answer(&data)? {
                    Answer::Rejected { reason } => Err(ClientError::Rejected { reason }),
                    Answer::StaleRequest { last_seq } => Err(protocol(format!(
                        "the service applied seq {last_seq} of this client before seq {seq}"
                    ))),
                    answer => Ok(Reply::Written(answer)),
                }
            }
            (Expect::Read, ResponseBody::Query { data }) => match decode_answer(&data)? {
                Answer::Rejected { reason } => Err(ClientError::Rejected { reason }),
                answer => Ok(Reply::Read(answer)),
            },
            (Expect::Status, ResponseBody::Status(report)) => Ok(Reply::Status(*report)),
            (Expect::Snapshot, ResponseBody::SnapshotTaken { index }) => {
                Ok(Reply::SnapshotTaken(index))
            }
            (Expect::Transfer, ResponseBody::TransferStarted) => Ok(Reply::TransferStarted),
            (Expect::Members, ResponseBody::Members(report)) => Ok(Reply::Members(report)),
            (Expect::ChangeMembership, ResponseBody::MembershipChanged(report)) => {
                Ok(Reply::MembershipChanged(report))
            }
            (Expect::ChangeMembership, ResponseBody::MembershipRefused { kind, message }) => {
                Err(ClientError::MembershipRefused { kind, message })
            }
            (Expect::SnapshotPiece, ResponseBody::SnapshotPiece(piece)) => {
                Ok(Reply::SnapshotPiece(piece))
            }
            (expect, body) => Err(protocol(format!(
                "{} was answered with {body:?}",
                expect.name()
            ))),
        }
    }

    /// What kind of operation this is, for what its failure means.
    fn kind(self) -> OperationKind {
        match self {
            Expect::Write { .. } | Expect::ChangeMembership => OperationKind::Write,
            Expect::Read => OperationKind::Read,
            Expect::Status
            | Expect::Snapshot
            | Expect::SnapshotPiece
            | Expect::Transfer
            | Expect::Members => OperationKind::Other,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Expect::Write { .. } => "a command",
            Expect::Read => "a query",
            Expect::Status => "a status request",
            Expect::Snapshot => "a snapshot request",
            Expect::Transfer => "a transfer",
            Expect::Members => "a members request",
            Expect::ChangeMembership => "a membership change",
            Expect::SnapshotPiece => "a snapshot read",
        }
    }
}

fn decode_answer(data: &[u8]) -> Result<Answer, ClientError> {
    Answer::decode(data).map_err(|error| protocol(format!("undecodable answer: {error}")))
}

#[cfg(test)]
mod tests {
    //! Scripts: the test plays the driver and the nodes, with time it moves by hand.

    use super::*;
    use crate::kv::{Command, Op};

    const A: &str = "127.0.0.1:7001";
    const B: &str = "127.0.0.1:7002";
    const C: &str = "127.0.0.1:7003";

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn session() -> Session {
        let endpoints = vec![addr(A), addr(B), addr(C)];
        Session::new(endpoints, &ClientOptions::default(), 77).unwrap()
    }

    fn put() -> Operation {
        Operation::Write(Op::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        })
    }

    fn applied(answer: Answer) -> ResponseBody {
        ResponseBody::Applied {
            data: answer.encode(),
        }
    }

    /// `NotLeader` from a node that follows the leader at `address` (`None`: knows none, and
    /// has no hint).
    fn not_leader(address: Option<&str>) -> ResponseBody {
        ResponseBody::NotLeader {
            leader: address.map(|_| 9),
            address: address.map(addr),
        }
    }

    /// `NotLeader` from a node that knows no leader now, `hint` the one it lost touch with.
    fn no_leader_known(hint: &str) -> ResponseBody {
        ResponseBody::NotLeader {
            leader: None,
            address: Some(addr(hint)),
        }
    }

    fn respond(session: &mut Session, now: Duration, from: &str, id: u64, body: ResponseBody) {
        let response = Response { id, body };
        assert!(session.handle_response(now, addr(from), response));
    }

    /// The node at `from` answers attempt `id` at `now`: applied. Returns the write's end,
    /// checked to be that success.
    fn applied_at(session: &mut Session, now: Duration, from: &str, id: u64) -> Completed {
        respond(session, now, from, id, applied(Answer::Ok));
        let completed = session.poll_outcome().expect("an applied write ends");
        assert_eq!(
            completed.result.as_ref().unwrap(),
            &Reply::Written(Answer::Ok)
        );
        completed
    }

    fn command_of(transmit: &Transmit) -> Command {
        let RequestBody::Command { data } = &transmit.request.body else {
            panic!("not a command: {transmit:?}");
        };
        Command::decode(data).unwrap()
    }

    /// Plays the driver until the operation ends: sends whatever is due, lets `node` answer each
    /// attempt at once (`None`: silence), and otherwise moves the time to the session's next
    /// deadline. Returns every attempt with the time it left, and the end.
    fn run_to_end(
        session: &mut Session,
        mut now: Duration,
        mut node: impl FnMut(&Transmit) -> Option<ResponseBody>,
    ) -> (Vec<(Duration, Transmit)>, Completed) {
        let mut sent = Vec::new();
        loop {
            if let Some(completed) = session.poll_outcome() {
                return (sent, completed);
            }
            if let Some(transmit) = session.poll_transmit(now) {
                if let Some(body) = node(&transmit) {
                    let (from, id) = (transmit.to, transmit.request.id);
                    assert!(session.handle_response(now, from, Response { id, body }));
                }
                sent.push((now, transmit));
                continue;
            }
            let wake = session.poll_timeout().expect("busy until it ends");
            assert!(wake > now, "woken for nothing at {now:?}");
            now = wake;
            session.handle_timeout(now);
        }
    }

    #[test]
    fn a_not_leader_hint_redirects_the_next_attempt_at_once() {
        let mut session = session();
        session.start(ms(0), put()).unwrap();
        let first = session.poll_transmit(ms(0)).unwrap();
        assert_eq!(first.to, addr(A), "the first endpoint first");
        respond(
            &mut session,
            ms(1),
            A,
            first.request.id,
            not_leader(Some(C)),
        );
        assert_eq!(session.poll_timeout(), Some(Duration::ZERO), "due now");
        let second = session.poll_transmit(ms(1)).unwrap();
        assert_eq!(second.to, addr(C));
        assert_eq!(second.request.body, first.request.body, "the same command");
        let completed = applied_at(&mut session, ms(2), C, second.request.id);
        assert_eq!(completed.elapsed, ms(2));
        // The node that applied it leads: the next operation goes there first.
        assert_eq!(session.leader(), Some(addr(C)));
        session.start(ms(3), put()).unwrap();
        assert_eq!(session.poll_transmit(ms(3)).unwrap().to, addr(C));
    }

    #[test]
    fn without_a_hint_the_backoff_doubles_up_to_its_maximum_and_endpoints_rotate() {
        let mut session = session();
        let options = ClientOptions {
            timeout: Duration::from_secs(60),
            ..ClientOptions::default()
        };
        session.timing.timeout = options.timeout;
        session.start(ms(0), put()).unwrap();
        // Every node refuses, knowing no leader, at once; the first 9 attempts.
        let mut sent = Vec::new();
        let mut now = ms(0);
        while sent.len() < 9 {
            let transmit = session.poll_transmit(now).unwrap();
            respond(
                &mut session,
                now,
                &transmit.to.to_string(),
                transmit.request.id,
                not_leader(None),
            );
            sent.push((now, transmit.to));
            now = session.poll_timeout().unwrap();
            assert_eq!(
                session.poll_transmit(now - ms(1)),
                None,
                "nothing before the pause ends"
            );
            session.handle_timeout(now);
        }
        let pauses: Vec<u64> = sent
            .windows(2)
            .map(|pair| u64::try_from((pair[1].0 - pair[0].0).as_millis()).unwrap())
            .collect();
        assert_eq!(pauses, vec![20, 40, 80, 160, 320, 500, 500, 500]);
        let targets: Vec<SocketAddr> = sent.iter().map(|(_, to)| *to).collect();
        let rotation = [addr(A), addr(B), addr(C)];
        assert!(
            targets
                .iter()
                .zip(rotation.iter().cycle())
                .all(|(t, r)| t == r),
            "{targets:?}"
        );
    }

    #[test]
    fn an_answer_to_an_earlier_attempt_is_accepted() {
        let mut session = session();
        session.start(ms(0), put()).unwrap();
        let first = session.poll_transmit(ms(0)).unwrap();
        assert_eq!(session.poll_timeout(), Some(ms(300)), "the attempt timeout");
        session.handle_timeout(ms(300));
        let second = session.poll_transmit(ms(300)).unwrap();
        assert_eq!(second.to, addr(B), "an unanswered attempt moves on");
        assert!(second.request.id > first.request.id);
        // The first attempt was applied after all; its answer comes late, from A.
        applied_at(&mut session, ms(310), A, first.request.id);
        assert_eq!(session.leader(), Some(addr(A)));
        // The second attempt's answer, arriving after the end, is no one's.
        let late = Response {
            id: second.request.id,
            body: applied(Answer::Ok),
        };
        assert!(!session.handle_response(ms(311), addr(B), late));
    }

    #[test]
    fn not_leader_from_an_older_attempt_changes_nothing() {
        let mut session = session();
        session.start(ms(0), put()).unwrap();
        let first = session.poll_transmit(ms(0)).unwrap();
        session.handle_timeout(ms(300));
        let second = session.poll_transmit(ms(300)).unwrap();
        respond(
            &mut session,
            ms(301),
            A,
            first.request.id,
            not_leader(Some(C)),
        );
        assert!(session.is_busy());
        assert_eq!(
            session.poll_transmit(ms(301)),
            None,
            "still waiting for {second:?}"
        );
        assert_eq!(session.poll_timeout(), Some(ms(600)));
    }

    #[test]
    fn silence_until_the_timeout_leaves_the_outcome_unknown() {
        let mut session = session();
        session.start(ms(0), put()).unwrap();
        let (sent, completed) = run_to_end(&mut session, ms(0), |_| None);
        let error = completed.result.unwrap_err();
        assert!(
            matches!(
                &error,
                ClientError::NoNodeAnswered { endpoints, waited, kind: OperationKind::Write }
                    if *waited == ms(5000) && endpoints.len() == 3
            ),
            "{error:?}"
        );
        assert!(error.outcome_unknown());
        assert_eq!(completed.elapsed, ms(5000));
        // An attempt every 300 ms, round the endpoints; never past the operation's timeout.
        assert_eq!(sent.len(), 17, "{sent:?}");
        assert!(sent.iter().all(|(at, _)| *at < ms(5000)));
        let times: Vec<Duration> = sent.iter().map(|(at, _)| *at).collect();
        assert_eq!(times[..3], [ms(0), ms(300), ms(600)]);
        let targets: Vec<SocketAddr> = sent.iter().take(4).map(|(_, t)| t.to).collect();
        assert_eq!(targets, vec![addr(A), addr(B), addr(C), addr(A)]);
    }

    #[test]
    fn refusals_until_the_timeout_are_unavailable_not_unknown() {
        let mut session = session();
        session.start(ms(0), put()).unwrap();
        let (sent, completed) = run_to_end(&mut session, ms(0), |_| Some(not_leader(None)));
        let error = completed.result.unwrap_err();
        assert!(
            matches!(&error, ClientError::Unavailable { reason } if reason.contains("knows no leader")),
            "{error:?}"
        );
        assert!(!error.outcome_unknown());
        assert!(sent.len() > 10, "{}", sent.len());
    }

    #[test]
    fn a_read_nobody_answers_says_the_read_failed_and_names_the_endpoints() {
        let mut session = session();
        let read = Operation::Read {
            query: Query::Get { key: b"k".to_vec() },
            stale: false,
        };
        session.start(ms(0), read).unwrap();
        let (_, completed) = run_to_end(&mut session, ms(0), |_| None);
        let error = completed.result.unwrap_err();
        assert!(!error.outcome_unknown(), "{error:?}");
        let message = error.to_string();
        assert!(
            message.starts_with(
                "the read failed: no Balsa node answered at 127.0.0.1:7001, 127.0.0.1:7002, \
                 127.0.0.1:7003 within 5000 ms"
            ),
            "{message}"
        );
        assert!(message.ends_with("is a cluster running?"), "{message}");
        assert!(!message.contains("write"), "{message}");
    }

    #[test]
    fn silence_after_a_node_once_answered_is_a_timeout_not_no_cluster() {
        let mut session = session();
        session.start(ms(0), put()).unwrap();
        let mut first = true;
        // The first attempt is refused (an answer); every later one goes unanswered.
        let (_, completed) = run_to_end(&mut session, ms(0), |_| {
            std::mem::replace(&mut first, false).then(|| not_leader(None))
        });
        let error = completed.result.unwrap_err();
        assert!(
            matches!(
                error,
                ClientError::Timeout {
                    kind: OperationKind::Write,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .ends_with("the write may or may not have been applied)"),
            "{error}"
        );
    }

    #[test]
    fn one_unanswered_attempt_among_refusals_makes_the_outcome_unknown() {
        let mut session = session();
        session.start(ms(0), put()).unwrap();
        let mut first = true;
        let (_, completed) = run_to_end(&mut session, ms(0), |_| {
            (!std::mem::replace(&mut first, false)).then(|| not_leader(None))
        });
        assert!(completed.result.unwrap_err().outcome_unknown());
    }

    #[test]
    fn a_write_keeps_its_seq_across_attempts_and_every_attempt_has_a_fresh_id() {
        let mut session = session();
        session.start(ms(0), put()).unwrap();
        let mut answered = 0;
        let (sent, completed) = run_to_end(&mut session, ms(0), |transmit| {
            answered += 1;
            match answered {
                1 => Some(not_leader(None)),
                2 => None,
                3 => Some(not_leader(Some(B))),
                _ if transmit.to == addr(B) => Some(applied(Answer::Ok)),
                _ => None,
            }
        });
        completed.result.unwrap();
        assert!(sent.len() >= 4, "{sent:?}");
        let keys: Vec<(u64, u64)> = sent
            .iter()
            .map(|(_, t)| command_of(t))
            .map(|c| (c.client_id, c.seq))
            .collect();
        assert!(keys.iter().all(|key| *key == (77, 1)), "{keys:?}");
        let ids: Vec<u64> = sent.iter().map(|(_, t)| t.request.id).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
        // The next write has the next seq, and a fresh id again.
        session.start(ms(9000), put()).unwrap();
        let next = session.poll_transmit(ms(9000)).unwrap();
        assert_eq!(command_of(&next).seq, 2);
        assert!(next.request.id > *ids.last().unwrap());
    }

    #[test]
    fn a_late_answer_to_the_previous_operation_is_ignored() {
        let mut session = session();
        session.start(ms(0), put()).unwrap();
        session.handle_timeout(ms(0));
        let first = session.poll_transmit(ms(0)).unwrap();
        session.handle_timeout(ms(300));
        let retry = session.poll_transmit(ms(300)).unwrap();
        applied_at(&mut session, ms(301), B, retry.request.id);
        session.start(ms(302), put()).unwrap();
        let stale = Response {
            id: first.request.id,
            body: applied(Answer::Ok),
        };
        assert!(!session.awaits(first.request.id));
        assert!(!session.handle_response(ms(303), addr(A), stale));
        assert!(
            session.is_busy(),
            "the second write still waits for its own answer"
        );
    }

    #[test]
    fn an_operation_for_one_node_retries_only_that_node() {
        let mut session = session();
        session.start(ms(0), Operation::Status(addr(C))).unwrap();
        let (sent, completed) = run_to_end(&mut session, ms(0), |_| None);
        assert!(sent.iter().all(|(_, t)| t.to == addr(C)), "{sent:?}");
        assert!(completed.result.unwrap_err().outcome_unknown());
        assert_eq!(
            session.leader(),
            None,
            "a status answer says nothing of the leader"
        );
    }

    /// A snapshot read goes to its node alone, asks for the offset and size given on every
    /// attempt (a lost answer is asked for again, nothing else), and gives back the piece.
    #[test]
    fn a_snapshot_read_retries_its_node_at_the_same_offset_and_gives_the_piece() {
        let mut session = session();
        let read = Operation::ReadSnapshot {
            node: addr(B),
            offset: 4096,
            max_bytes: 512,
        };
        session.start(ms(0), read).unwrap();
        let first = session.poll_transmit(ms(0)).unwrap();
        session.handle_timeout(ms(300));
        let second = session.poll_transmit(ms(300)).unwrap();
        for transmit in [&first, &second] {
            assert_eq!(transmit.to, addr(B));
            assert_eq!(
                transmit.request.body,
                RequestBody::ReadSnapshot {
                    offset: 4096,
                    max_bytes: 512
                }
            );
        }
        let piece = SnapshotPiece {
            index: 9,
            term: 2,
            size: 5000,
            crc: 1,
            offset: 4096,
            data: vec![7; 512],
        };
        let body = ResponseBody::SnapshotPiece(piece.clone());
        respond(&mut session, ms(301), B, second.request.id, body);
        let reply = session.poll_outcome().unwrap().result.unwrap();
        assert_eq!(reply, Reply::SnapshotPiece(piece));
    }

    #[test]
    fn silence_from_the_believed_leader_forgets_it() {
        let mut session = session();
        session.start(ms(0), put()).unwrap();
        let first = session.poll_transmit(ms(0)).unwrap();
        applied_at(&mut session, ms(1), A, first.request.id);
        assert_eq!(session.leader(), Some(addr(A)));
        session.start(ms(2), put()).unwrap();
        assert_eq!(session.poll_transmit(ms(2)).unwrap().to, addr(A));
        session.handle_timeout(ms(302));
        assert_eq!(session.leader(), None);
        assert_eq!(session.poll_transmit(ms(302)).unwrap().to, addr(B));
    }

    #[test]
    fn too_large_and_error_answers_end_the_operation_without_effect() {
        for (body, too_large) in [
            (ResponseBody::TooLarge { size: 9, max: 8 }, true),
            (
                ResponseBody::Error {
                    message: "no".into(),
                },
                false,
            ),
        ] {
            let mut session = session();
            session.start(ms(0), put()).unwrap();
            let transmit = session.poll_transmit(ms(0)).unwrap();
            respond(&mut session, ms(1), A, transmit.request.id, body);
            let error = session.poll_outcome().unwrap().result.unwrap_err();
            assert_eq!(
                matches!(error, ClientError::TooLarge { size: 9, max: 8 }),
                too_large
            );
            assert_eq!(matches!(error, ClientError::Rejected { .. }), !too_large);
            assert!(!error.outcome_unknown());
        }
    }

    #[test]
    fn answers_are_interpreted_per_operation() {
        let mut session = session();
        let rejected = applied(Answer::Rejected {
            reason: "bad".into(),
        });
        session.start(ms(0), put()).unwrap();
        let transmit = session.poll_transmit(ms(0)).unwrap();
        respond(&mut session, ms(1), A, transmit.request.id, rejected);
        let error = session.poll_outcome().unwrap().result.unwrap_err();
        assert!(matches!(error, ClientError::Rejected { reason } if reason == "bad"));

        let get = Operation::Read {
            query: Query::Get { key: b"k".to_vec() },
            stale: false,
        };
        session.start(ms(2), get).unwrap();
        let transmit = session.poll_transmit(ms(2)).unwrap();
        let value = ResponseBody::Query {
            data: Answer::Value(Some(b"v".to_vec())).encode(),
        };
        respond(&mut session, ms(3), A, transmit.request.id, value);
        let reply = session.poll_outcome().unwrap().result.unwrap();
        assert_eq!(reply, Reply::Read(Answer::Value(Some(b"v".to_vec()))));

        session.start(ms(4), Operation::Snapshot(addr(B))).unwrap();
        let transmit = session.poll_transmit(ms(4)).unwrap();
        respond(
            &mut session,
            ms(5),
            B,
            transmit.request.id,
            ResponseBody::TransferStarted,
        );
        let error = session.poll_outcome().unwrap().result.unwrap_err();
        assert!(
            matches!(&error, ClientError::Protocol { reason } if reason.starts_with("a snapshot request was answered")),
            "{error:?}"
        );
    }

    #[test]
    fn a_read_at_a_node_is_linearizable_and_stays_with_that_node_when_refused() {
        let mut session = session();
        let barrier = Operation::ReadAt {
            node: addr(C),
            query: Query::Get { key: Vec::new() },
        };
        session.start(ms(0), barrier).unwrap();
        let first = session.poll_transmit(ms(0)).unwrap();
        assert_eq!(first.to, addr(C));
        assert!(
            matches!(first.request.body, RequestBody::Query { stale: false, .. }),
            "{:?}",
            first.request.body
        );
        // A follower pointing at the leader is asked again, not left for the leader: the
        // barrier is about what that node has applied.
        respond(
            &mut session,
            ms(1),
            C,
            first.request.id,
            not_leader(Some(A)),
        );
        let again = loop {
            let now = session.poll_timeout().expect("a retry is due");
            session.handle_timeout(now);
            if let Some(transmit) = session.poll_transmit(now) {
                break transmit;
            }
        };
        assert_eq!(again.to, addr(C));
        let value = ResponseBody::Query {
            data: Answer::Value(None).encode(),
        };
        respond(&mut session, ms(50), C, again.request.id, value);
        let reply = session.poll_outcome().unwrap().result.unwrap();
        assert_eq!(reply, Reply::Read(Answer::Value(None)));
    }

    #[test]
    fn a_failed_send_is_a_refusal_and_a_request_too_large_to_send_ends_it() {
        let mut session = session();
        session.start(ms(0), put()).unwrap();
        session.poll_transmit(ms(0)).unwrap();
        let full = std::io::Error::from(std::io::ErrorKind::WouldBlock);
        session.handle_send_failed(
            ms(0),
            ClientError::Io {
                op: "sending",
                source: full,
            },
        );
        assert_eq!(session.poll_timeout(), Some(ms(20)), "a backoff step");
        session.handle_timeout(ms(20));
        let retry = session.poll_transmit(ms(20)).unwrap();
        assert_eq!(retry.to, addr(B));
        session.handle_send_failed(
            ms(20),
            ClientError::TooLarge {
                size: 70_000,
                max: 65_000,
            },
        );
        let error = session.poll_outcome().unwrap().result.unwrap_err();
        assert!(matches!(error, ClientError::TooLarge { size: 70_000, .. }));
    }

    #[test]
    fn a_key_over_its_limit_is_refused_before_anything_starts() {
        let mut session = session();
        let key = vec![b'k'; crate::kv::MAX_KEY_LEN + 1];
        let op = Operation::Write(Op::Delete { key });
        assert!(matches!(
            session.start(ms(0), op),
            Err(ClientError::OverLimit(limit)) if limit.what == "key"
        ));
        assert!(!session.is_busy());
        assert_eq!(session.next_seq(), 1, "no seq used");
    }

    #[test]
    fn strided_request_ids_stay_apart_and_skipping_keeps_the_stride() {
        let mut session = session().with_request_ids(3, 4);
        session.start(ms(0), put()).unwrap();
        let mut ids = Vec::new();
        for k in 0..3 {
            ids.push(session.poll_transmit(ms(300 * k)).unwrap().request.id);
            session.handle_timeout(ms(300 * (k + 1)));
        }
        assert_eq!(ids, vec![3, 7, 11]);
        assert!(session.awaits(7));
        assert!(
            !session.awaits(8),
            "another session's id between two of this one's"
        );
        assert!(!session.awaits(15), "not sent yet");
        session.skip_request_ids_to(20);
        assert_eq!(
            session.next_request_id(),
            23,
            "the first of its own at or after 20"
        );
    }

    #[test]
    #[should_panic(expected = "one operation at a time")]
    fn a_second_operation_while_one_is_in_progress_is_a_bug() {
        let mut session = session();
        session.start(ms(0), put()).unwrap();
        let _ = session.start(ms(0), put());
    }

    /// A node that lost touch with its leader answers "no leader known" with the lost one as
    /// the hint: the next attempt goes at once to the next endpoint (another node may still
    /// hear from a leader), not to the hint, and not after a backoff; only once every endpoint
    /// said so does a backoff step come.
    #[test]
    fn no_leader_known_moves_to_the_next_endpoint_at_once_and_pauses_after_a_whole_round() {
        let mut session = session();
        session.start(ms(0), put()).unwrap();
        let mut sent = Vec::new();
        for (at, from) in [(1, A), (2, B), (3, C)] {
            let transmit = session.poll_transmit(ms(at - 1)).expect("due at once");
            assert_eq!(transmit.to, addr(from));
            sent.push(transmit.to);
            respond(
                &mut session,
                ms(at),
                from,
                transmit.request.id,
                no_leader_known(C),
            );
        }
        assert_eq!(
            sent,
            [addr(A), addr(B), addr(C)],
            "the hint C was not followed"
        );
        assert_eq!(
            session.poll_transmit(ms(3)),
            None,
            "every endpoint said so: a pause"
        );
        assert_eq!(session.poll_timeout(), Some(ms(23)), "one backoff step");
        session.handle_timeout(ms(23));
        let after_pause = session.poll_transmit(ms(23)).unwrap();
        assert_eq!(after_pause.to, addr(A));
        respond(
            &mut session,
            ms(24),
            A,
            after_pause.request.id,
            no_leader_known(C),
        );
        let to_b = session.poll_transmit(ms(24)).unwrap();
        assert_eq!(to_b.to, addr(B), "at once again");
        respond(&mut session, ms(24), B, to_b.request.id, no_leader_known(C));
        let completed = run_to_end(&mut session, ms(24), |_| Some(no_leader_known(C))).1;
        let error = completed.result.unwrap_err();
        assert!(
            matches!(&error, ClientError::Unavailable { reason } if reason.contains("knows no leader (it last heard of 127.0.0.1:7003)")),
            "{error:?}"
        );
    }

    /// An endpoint that failed (silence, or a refusal with no hint) is tried after the others
    /// for a few attempt timeouts: here A went silent, and when C, knowing no leader, sends
    /// the write on, it goes to B, not back round to A.
    #[test]
    fn an_endpoint_that_failed_recently_is_tried_after_the_others() {
        let mut session = session();
        session.start(ms(0), put()).unwrap();
        let first = session.poll_transmit(ms(0)).unwrap();
        assert_eq!(first.to, addr(A));
        session.handle_timeout(ms(300)); // A is silent
        let second = session.poll_transmit(ms(300)).unwrap();
        assert_eq!(second.to, addr(B));
        applied_at(&mut session, ms(301), B, second.request.id);

        // B, the leader, then loses touch: it answers no leader, C too.
        session.start(ms(302), put()).unwrap();
        let to_b = session.poll_transmit(ms(302)).unwrap();
        assert_eq!(to_b.to, addr(B));
        respond(
            &mut session,
            ms(303),
            B,
            to_b.request.id,
            no_leader_known(C),
        );
        let to_c = session.poll_transmit(ms(303)).unwrap();
        assert_eq!(to_c.to, addr(C));
        respond(
            &mut session,
            ms(304),
            C,
            to_c.request.id,
            no_leader_known(B),
        );
        let next = session.poll_transmit(ms(304)).unwrap();
        assert_eq!(next.to, addr(B), "A failed at 300: skipped");
        applied_at(&mut session, ms(305), B, next.request.id);
    }

    /// The start of an operation skips a recently failed endpoint too (here A, found silent by
    /// a status request, which leaves the round-robin where it was), and the failure is
    /// forgotten once a few attempt timeouts have passed, or once the endpoint answers.
    #[test]
    fn a_failure_is_remembered_for_a_few_attempt_timeouts_or_until_the_endpoint_answers() {
        let window = ClientOptions::default().attempt_timeout * RECENT_FAILURE_ATTEMPTS;
        let silent_status_of_a = |session: &mut Session| {
            session.start(ms(0), Operation::Status(addr(A))).unwrap();
            let (_, completed) = run_to_end(session, ms(0), |_| None);
            assert!(completed.result.unwrap_err().outcome_unknown());
            completed.elapsed // A's last attempt timed out at the end
        };

        let mut session = session();
        let failed = silent_status_of_a(&mut session);
        session.start(failed, put()).unwrap();
        assert_eq!(
            session.poll_transmit(failed).unwrap().to,
            addr(B),
            "A skipped"
        );

        let mut session = self::session();
        let failed = silent_status_of_a(&mut session);
        session.start(failed + window, put()).unwrap();
        assert_eq!(
            session.poll_transmit(failed + window).unwrap().to,
            addr(A),
            "forgotten after {window:?}"
        );

        let mut session = self::session();
        let failed = silent_status_of_a(&mut session);
        session.start(failed, Operation::Snapshot(addr(A))).unwrap();
        let asked = session.poll_transmit(failed).unwrap();
        let taken = ResponseBody::SnapshotTaken { index: 0 };
        respond(&mut session, failed, A, asked.request.id, taken);
        session.poll_outcome().unwrap().result.unwrap();
        session.start(failed, put()).unwrap();
        assert_eq!(
            session.poll_transmit(failed).unwrap().to,
            addr(A),
            "it answered since"
        );
    }
}
