//! The key-value service's client library: a blocking UDP client that finds the leader, retries
//! with backoff, and says whether a failed write is known not to have happened.
//!
//! ```no_run
//! use balsa::client::{CasOutcome, Client, ClientOptions};
//!
//! # fn main() -> Result<(), balsa::client::ClientError> {
//! let endpoints = vec!["127.0.0.1:7001".parse().unwrap(), "127.0.0.1:7002".parse().unwrap()];
//! let mut client = Client::new(endpoints, ClientOptions::default())?;
//! client.put(b"colour", b"blue")?;
//! assert_eq!(client.get(b"colour", false)?, Some(b"blue".to_vec()));
//! match client.cas(b"colour", Some(b"blue"), b"green")? {
//!     CasOutcome::Swapped => println!("now green"),
//!     CasOutcome::Mismatch { current } => println!("it was {current:?}"),
//! }
//! # Ok(()) }
//! ```
//!
//! # How a request travels
//!
//! One UDP socket, one request outstanding at a time. A request goes to the node believed to
//! lead (at first, the first endpoint). A node that does not lead answers `NotLeader` with the
//! leader's address when it knows it: the client goes there at once; without a hint it waits a
//! backoff (20 ms, doubling, at most 500 ms) and tries the next endpoint. A node that does not
//! answer within the attempt timeout (300 ms) is left for the next endpoint. A follower that knows
//! the leader forwards writes itself, and the leader answers the client directly, from its own
//! address: the client remembers that address as the leader.
//!
//! Every attempt carries a fresh request id; an answer to any attempt of the operation in
//! progress is accepted (the first attempt may be the one that got applied), answers to earlier
//! operations and datagrams that do not decode are ignored.
//!
//! # Writes are applied once
//!
//! Each write is a [`Command`] carrying `(client_id, seq)`: `client_id` is chosen at random per
//! `Client`, `seq` grows by one per write and stays the same across the retries of one write. The
//! service's session table applies a `(client_id, seq)` once and answers a retry with the first
//! answer.
//!
//! # Errors: definitely failed or outcome unknown
//!
//! [`ClientError::Timeout`] means some attempt went unanswered: a write may or may not have been
//! applied (outcome unknown). [`ClientError::Unavailable`] means every attempt was refused
//! (no leader, or no node reachable): the write was not applied. [`ClientError::TooLarge`] and
//! [`ClientError::Rejected`] are definite refusals too. [`ClientError::outcome_unknown`] tells
//! them apart.
//!
//! Invariants: at most one request outstanding per client (methods take `&mut self`); a write's
//! `seq` never changes between its attempts and never repeats across writes; no operation takes
//! longer than [`ClientOptions::timeout`] plus one backoff step.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use balsa_net::{CLIENT_ID, Codec, DEFAULT_DATAGRAM_LIMIT, Kind};

use crate::kv::{Answer, Command, LimitExceeded, Op, Query};
use crate::raft::NodeId;
use crate::runtime::wire::{Request, RequestBody, ResponseBody, StatusReport, Wire};

/// How a [`Client`] waits and retries.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The longest one operation may take, retries included. Default 5 s.
    pub timeout: Duration,
    /// How long one attempt waits for an answer before trying the next endpoint. Default 300 ms.
    pub attempt_timeout: Duration,
    /// The first wait after "no leader". Default 20 ms.
    pub backoff_start: Duration,
    /// The longest wait between attempts (the backoff doubles up to it). Default 500 ms.
    pub backoff_max: Duration,
    /// The cluster's id: nodes drop datagrams of other clusters. Default 1.
    pub cluster_id: u64,
    /// The largest datagram sent or accepted. Default 65,000, as the nodes'.
    pub datagram_limit: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_millis(300),
            backoff_start: Duration::from_millis(20),
            backoff_max: Duration::from_millis(500),
            cluster_id: 1,
            datagram_limit: DEFAULT_DATAGRAM_LIMIT,
        }
    }
}

/// What went wrong with an operation.
#[derive(Debug)]
pub enum ClientError {
    /// Every attempt was refused (no leader known, or no node reachable) until the timeout: the
    /// operation definitely did not take effect.
    Unavailable {
        /// The last refusal.
        reason: String,
    },
    /// Some attempt went unanswered until the timeout: a write may or may not have been applied
    /// (outcome unknown).
    Timeout {
        /// How long the operation tried.
        waited: Duration,
    },
    /// The request does not fit (a key or value over its limit, or the datagram over the
    /// limit). Nothing was applied.
    TooLarge {
        /// Its size in bytes.
        size: u64,
        /// The largest allowed.
        max: u64,
    },
    /// The service refused the request without effect.
    Rejected {
        /// Why, as the service said.
        reason: String,
    },
    /// The client's socket failed.
    Io {
        /// What the client was doing.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The service answered something that makes no sense for the request.
    Protocol {
        /// What.
        reason: String,
    },
    /// The client cannot be set up this way (no endpoints, mixed address families, bad limits).
    Config {
        /// What is wrong.
        reason: String,
    },
}

impl From<LimitExceeded> for ClientError {
    /// A key or value over its limit: refused before anything is sent.
    fn from(limit: LimitExceeded) -> ClientError {
        ClientError::TooLarge {
            size: limit.len,
            max: limit.max as u64,
        }
    }
}

impl ClientError {
    /// True when a write that failed this way may nevertheless have been applied.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, ClientError::Timeout { .. })
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Unavailable { reason } => {
                write!(f, "cluster unavailable ({reason}); nothing was applied")
            }
            ClientError::Timeout { waited } => write!(
                f,
                "no answer within {} ms; the outcome is unknown (a write may or may not have been \
                 applied)",
                waited.as_millis()
            ),
            ClientError::TooLarge { size, max } => {
                write!(f, "request of {size} bytes is too large (at most {max})")
            }
            ClientError::Rejected { reason } => write!(f, "rejected: {reason}"),
            ClientError::Io { op, source } => write!(f, "{op}: {source}"),
            ClientError::Protocol { reason } => write!(f, "protocol error: {reason}"),
            ClientError::Config { reason } => write!(f, "bad client configuration: {reason}"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// What a compare-and-swap did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CasOutcome {
    /// The key held the expected value (or was absent, as expected) and now holds the new one.
    Swapped,
    /// The key did not hold the expected value; nothing changed.
    Mismatch {
        /// What it held (`None`: absent).
        current: Option<Vec<u8>>,
    },
}

/// Which node a request goes to.
#[derive(Clone, Copy, Debug)]
enum Route {
    /// The leader, found through hints.
    Leader,
    /// This node and no other.
    Node(SocketAddr),
}

/// How one attempt ended.
enum AttemptEnd {
    /// A final answer (the node that sent it).
    Answer(ResponseBody, SocketAddr),
    /// The node does not lead; maybe it knows who does.
    NotLeader(Option<SocketAddr>),
    /// No answer in time.
    Silent,
}

/// A blocking client of a Balsa key-value cluster. Not shared between threads: one request at
/// a time.
pub struct Client {
    endpoints: Vec<SocketAddr>,
    options: ClientOptions,
    socket: UdpSocket,
    codec: Codec,
    /// Receive buffer: one byte over the limit, so an oversized datagram is seen, not cut.
    buffer: Vec<u8>,
    client_id: u64,
    /// The seq of the next write.
    next_seq: u64,
    /// The id of the next request datagram.
    next_request_id: u64,
    /// The node believed to lead.
    leader: Option<SocketAddr>,
    /// Where round-robin over the endpoints continues.
    cursor: usize,
    /// The socket's read timeout as last set (`None`: never set).
    read_timeout: Option<Duration>,
    /// Answers that arrived together in one datagram, not yet taken by `receive`. The socket is
    /// read only once this is empty, so it never holds more than one datagram's answers.
    received: VecDeque<(u64, ResponseBody, SocketAddr)>,
}

/// A read timeout within this of the one already set is left alone: a receive then ends at most
/// this much off its deadline, and an operation in the steady state (each attempt allows the same
/// time) makes one system call fewer per receive.
const READ_TIMEOUT_SLACK: Duration = Duration::from_millis(1);

impl Client {
    /// A client of the cluster reachable at `endpoints` (any subset of its nodes).
    ///
    /// # Errors
    /// [`ClientError::Config`] for no endpoints, endpoints of both address families, or a
    /// datagram limit the codec refuses; [`ClientError::Io`] if the socket cannot be bound.
    pub fn new(endpoints: Vec<SocketAddr>, options: ClientOptions) -> Result<Client, ClientError> {
        let bind = bind_address(&endpoints)?;
        if options.attempt_timeout.is_zero() || options.timeout.is_zero() {
            return Err(ClientError::Config {
                reason: "timeouts must be longer than zero".into(),
            });
        }
        let socket = UdpSocket::bind(bind).map_err(|source| ClientError::Io {
            op: "binding the client socket",
            source,
        })?;
        let codec =
            Codec::new(options.cluster_id, CLIENT_ID, options.datagram_limit).map_err(|error| {
                ClientError::Config {
                    reason: error.to_string(),
                }
            })?;
        let buffer = vec![0; options.datagram_limit + 1];
        Ok(Client {
            endpoints,
            options,
            socket,
            codec,
            buffer,
            client_id: random_client_id(),
            next_seq: 1,
            next_request_id: 1,
            leader: None,
            cursor: 0,
            read_timeout: None,
            received: VecDeque::new(),
        })
    }

    /// This client's id in the service's session table.
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

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), ClientError> {
        let op = Op::Put {
            key: key.to_vec(),
            value: value.to_vec(),
        };
        match self.write(op)? {
            Answer::Ok => Ok(()),
            other => Err(unexpected("put", &other)),
        }
    }

    /// Removes `key` (present or not).
    pub fn delete(&mut self, key: &[u8]) -> Result<(), ClientError> {
        match self.write(Op::Delete { key: key.to_vec() })? {
            Answer::Ok => Ok(()),
            other => Err(unexpected("delete", &other)),
        }
    }

    /// Sets `key` to `new` if it holds `expected` (`None`: if it is absent).
    pub fn cas(
        &mut self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<CasOutcome, ClientError> {
        let op = Op::Cas {
            key: key.to_vec(),
            expected: expected.map(<[u8]>::to_vec),
            new: new.to_vec(),
        };
        match self.write(op)? {
            Answer::Ok => Ok(CasOutcome::Swapped),
            Answer::CasMismatch { current } => Ok(CasOutcome::Mismatch { current }),
            other => Err(unexpected("compare-and-swap", &other)),
        }
    }

    /// The value of `key` (`None`: absent). Linearizable unless `stale`, in which case the node
    /// asked answers from its own state at once (it may miss recent writes).
    pub fn get(&mut self, key: &[u8], stale: bool) -> Result<Option<Vec<u8>>, ClientError> {
        let query = Query::Get { key: key.to_vec() };
        query.check_limits()?;
        let body = RequestBody::Query {
            data: query.encode(),
            stale,
        };
        let (answer, _) = self.call(&body, Route::Leader)?;
        let ResponseBody::Query { data } = answer else {
            return Err(protocol(format!("a query was answered with {answer:?}")));
        };
        match decode_answer(&data)? {
            Answer::Value(value) => Ok(value),
            Answer::Rejected { reason } => Err(ClientError::Rejected { reason }),
            other => Err(unexpected("get", &other)),
        }
    }

    /// The status of the node at `endpoint` (any address, not only the endpoints').
    pub fn status(&mut self, endpoint: SocketAddr) -> Result<StatusReport, ClientError> {
        let (answer, _) = self.call(&RequestBody::Status, Route::Node(endpoint))?;
        match answer {
            ResponseBody::Status(report) => Ok(report),
            other => Err(protocol(format!(
                "a status request was answered with {other:?}"
            ))),
        }
    }

    /// The status of every node in `endpoints`, asked all at once (one operation timeout for
    /// all), in the same order. A node that never answers gets [`ClientError::Timeout`].
    pub fn status_all(
        &mut self,
        endpoints: &[SocketAddr],
    ) -> Vec<Result<StatusReport, ClientError>> {
        let started = now();
        let deadline = started + self.options.timeout;
        let mut results: Vec<Option<Result<StatusReport, ClientError>>> =
            endpoints.iter().map(|_| None).collect();
        // Request id → the endpoint's position.
        let mut asked: Vec<(u64, usize)> = Vec::new();
        while now() < deadline && results.iter().any(Option::is_none) {
            for (position, endpoint) in endpoints.iter().enumerate() {
                if results[position].is_some() {
                    continue;
                }
                let id = self.request_id();
                if let Err(error) = self.send(*endpoint, id, &RequestBody::Status) {
                    results[position] = Some(Err(error));
                    continue;
                }
                asked.push((id, position));
            }
            let attempt_deadline = (now() + self.options.attempt_timeout).min(deadline);
            while results.iter().any(Option::is_none) {
                let received = match self.receive(attempt_deadline) {
                    Ok(Some(received)) => received,
                    Ok(None) => break,
                    Err(error) => {
                        // The socket failed: every node not heard from gets the reason.
                        let message = error.to_string();
                        for result in results.iter_mut().filter(|r| r.is_none()) {
                            *result = Some(Err(ClientError::Io {
                                op: "receiving",
                                source: io::Error::other(message.clone()),
                            }));
                        }
                        break;
                    }
                };
                let Some(&(_, position)) = asked.iter().find(|(id, _)| *id == received.0) else {
                    continue;
                };
                if results[position].is_some() {
                    continue;
                }
                results[position] = Some(match received.1 {
                    ResponseBody::Status(report) => Ok(report),
                    other => Err(protocol(format!(
                        "a status request was answered with {other:?}"
                    ))),
                });
            }
        }
        let waited = now().saturating_duration_since(started);
        results
            .into_iter()
            .map(|result| result.unwrap_or(Err(ClientError::Timeout { waited })))
            .collect()
    }

    /// Asks the node at `endpoint` to snapshot its state machine and compact its log now;
    /// returns the last index the snapshot covers once it is durable.
    pub fn snapshot(&mut self, endpoint: SocketAddr) -> Result<u64, ClientError> {
        let (answer, _) = self.call(&RequestBody::Snapshot, Route::Node(endpoint))?;
        match answer {
            ResponseBody::SnapshotTaken { index } => Ok(index),
            other => Err(protocol(format!(
                "a snapshot request was answered with {other:?}"
            ))),
        }
    }

    /// Asks the leader to hand leadership to node `to`. Returns once the transfer has started
    /// (it completes, or is abandoned, on the cluster's own schedule).
    pub fn transfer(&mut self, to: NodeId) -> Result<(), ClientError> {
        let (answer, _) = self.call(&RequestBody::Transfer { to }, Route::Leader)?;
        match answer {
            ResponseBody::TransferStarted => Ok(()),
            other => Err(protocol(format!("a transfer was answered with {other:?}"))),
        }
    }

    /// Replicates one command with a new seq, through every retry, and decodes its answer.
    fn write(&mut self, op: Op) -> Result<Answer, ClientError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let command = Command {
            client_id: self.client_id,
            seq,
            op,
        };
        command.check_limits()?;
        let body = RequestBody::Command {
            data: command.encode(),
        };
        let (answer, leader) = self.call(&body, Route::Leader)?;
        let ResponseBody::Applied { data } = answer else {
            return Err(protocol(format!("a command was answered with {answer:?}")));
        };
        // The answer to an applied command comes from the leader's own socket.
        self.leader = Some(leader);
        match decode_answer(&data)? {
            Answer::Rejected { reason } => Err(ClientError::Rejected { reason }),
            Answer::StaleRequest { last_seq } => Err(protocol(format!(
                "the service applied seq {last_seq} of this client before seq {seq}"
            ))),
            answer => Ok(answer),
        }
    }

    /// Sends `body` until a final answer arrives or the operation times out; see the module
    /// doc for the routing. Returns the answer and the node that sent it.
    fn call(
        &mut self,
        body: &RequestBody,
        route: Route,
    ) -> Result<(ResponseBody, SocketAddr), ClientError> {
        let started = now();
        let deadline = started + self.options.timeout;
        let mut backoff = self.options.backoff_start;
        let mut target = match route {
            Route::Node(address) => address,
            Route::Leader => self.leader.unwrap_or_else(|| self.endpoints[self.cursor]),
        };
        let mut attempts: Vec<u64> = Vec::new();
        let mut some_attempt_unanswered = false;
        let mut last_refusal = String::from("no attempt was made");
        while now() < deadline {
            let id = self.request_id();
            attempts.push(id);
            if let Err(error) = self.send(target, id, body) {
                if let ClientError::TooLarge { .. } = error {
                    return Err(error);
                }
                // Not sent: this attempt surely had no effect.
                last_refusal = format!("sending to {target}: {error}");
                self.pause(&mut backoff, deadline);
                target = self.next_target(route, target);
                continue;
            }
            let attempt_deadline = (now() + self.options.attempt_timeout).min(deadline);
            match self.await_answer(&attempts, id, attempt_deadline)? {
                AttemptEnd::Answer(ResponseBody::TooLarge { size, max }, _) => {
                    return Err(ClientError::TooLarge { size, max });
                }
                AttemptEnd::Answer(ResponseBody::Error { message }, _) => {
                    return Err(ClientError::Rejected { reason: message });
                }
                AttemptEnd::Answer(answer, from) => {
                    if let Route::Leader = route
                        && self.leader.is_none()
                    {
                        self.leader = Some(from);
                    }
                    return Ok((answer, from));
                }
                AttemptEnd::NotLeader(hint) => {
                    self.leader = None;
                    last_refusal = match hint {
                        Some(leader) => format!("{target} is not the leader; {leader} is"),
                        None => format!("{target} knows no leader"),
                    };
                    match (route, hint) {
                        (Route::Leader, Some(leader)) if leader != target => target = leader,
                        _ => {
                            self.pause(&mut backoff, deadline);
                            target = self.next_target(route, target);
                        }
                    }
                }
                AttemptEnd::Silent => {
                    some_attempt_unanswered = true;
                    if self.leader == Some(target) {
                        self.leader = None;
                    }
                    target = self.next_target(route, target);
                }
            }
        }
        if some_attempt_unanswered {
            Err(ClientError::Timeout {
                waited: now().saturating_duration_since(started),
            })
        } else {
            Err(ClientError::Unavailable {
                reason: last_refusal,
            })
        }
    }

    /// Waits until `attempt_deadline` for an answer to attempt `current` (or a final answer to
    /// any of `attempts`: an earlier attempt may be the one applied).
    fn await_answer(
        &mut self,
        attempts: &[u64],
        current: u64,
        attempt_deadline: Instant,
    ) -> Result<AttemptEnd, ClientError> {
        loop {
            let (id, body, from) = match self.receive(attempt_deadline) {
                Ok(Some(received)) => received,
                Ok(None) => return Ok(AttemptEnd::Silent),
                Err(error) => return Err(error),
            };
            if !attempts.contains(&id) {
                continue; // an earlier operation's, or a duplicate
            }
            match body {
                ResponseBody::NotLeader { address, .. } => {
                    if id == current {
                        return Ok(AttemptEnd::NotLeader(address));
                    }
                }
                body => return Ok(AttemptEnd::Answer(body, from)),
            }
        }
    }

    /// Receives the next response until `deadline`: `None` when it passed. Datagrams that are
    /// not responses of this cluster are skipped.
    fn receive(
        &mut self,
        deadline: Instant,
    ) -> Result<Option<(u64, ResponseBody, SocketAddr)>, ClientError> {
        loop {
            if let Some(first) = self.received.pop_front() {
                return Ok(Some(first));
            }
            let left = deadline.saturating_duration_since(now());
            if left.is_zero() {
                return Ok(None);
            }
            // A timeout set too long by up to the slack ends the receive that late at most; one
            // set too short just ends a wait early and this loop sets it again.
            if self
                .read_timeout
                .is_none_or(|set| set.abs_diff(left) > READ_TIMEOUT_SLACK)
            {
                self.socket
                    .set_read_timeout(Some(left))
                    .map_err(|source| ClientError::Io {
                        op: "setting the socket's timeout",
                        source,
                    })?;
                self.read_timeout = Some(left);
            }
            let (len, from) = match self.socket.recv_from(&mut self.buffer) {
                Ok(received) => received,
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                            // An ICMP "port unreachable" from an earlier send: that node is
                            // down, which the attempt timeout handles.
                            | io::ErrorKind::ConnectionRefused
                            | io::ErrorKind::ConnectionReset
                    ) =>
                {
                    continue;
                }
                Err(source) => {
                    return Err(ClientError::Io {
                        op: "receiving",
                        source,
                    });
                }
            };
            let Ok((header, wire)) = self.codec.decode::<Wire>(&self.buffer[..len]) else {
                continue;
            };
            match (header.kind, wire) {
                (Kind::Response, Wire::Response(response)) => {
                    return Ok(Some((response.id, response.body, from)));
                }
                // Several answers for this socket in one turn of a node (a retry's answer
                // beside the original's, say): taken one at a time, from the loop's top.
                (Kind::Response, Wire::Responses(responses)) => {
                    let answers = responses.into_iter().map(|r| (r.id, r.body, from));
                    self.received.extend(answers);
                }
                _ => {}
            }
        }
    }

    /// Sends request `id` carrying `body` to `to`.
    fn send(&mut self, to: SocketAddr, id: u64, body: &RequestBody) -> Result<(), ClientError> {
        let request = Wire::Request(Request {
            id,
            body: body.clone(),
        });
        let datagram = self
            .codec
            .encode(Kind::Request, &request)
            .map_err(|error| match error {
                balsa_net::Error::TooLarge { size, limit } => ClientError::TooLarge {
                    size: size as u64,
                    max: limit as u64,
                },
                other => protocol(format!("encoding the request: {other}")),
            })?;
        self.socket
            .send_to(datagram, to)
            .map(|_| ())
            .map_err(|source| ClientError::Io {
                op: "sending",
                source,
            })
    }

    /// Where to try after `current`: the same node for a fixed route, else the next endpoint.
    fn next_target(&mut self, route: Route, current: SocketAddr) -> SocketAddr {
        if let Route::Node(address) = route {
            return address;
        }
        if let Some(position) = self.endpoints.iter().position(|e| *e == current) {
            self.cursor = (position + 1) % self.endpoints.len();
        } else {
            self.cursor = (self.cursor + 1) % self.endpoints.len();
        }
        self.endpoints[self.cursor]
    }

    /// Sleeps one backoff step (never past `deadline`) and doubles the next one.
    fn pause(&self, backoff: &mut Duration, deadline: Instant) {
        let sleep = (*backoff).min(deadline.saturating_duration_since(now()));
        std::thread::sleep(sleep);
        *backoff = (*backoff * 2).min(self.options.backoff_max);
    }

    fn request_id(&mut self) -> u64 {
        let id = self.next_request_id;
        self.next_request_id += 1;
        id
    }
}

fn decode_answer(data: &[u8]) -> Result<Answer, ClientError> {
    Answer::decode(data).map_err(|error| protocol(format!("undecodable answer: {error}")))
}

fn unexpected(operation: &str, answer: &Answer) -> ClientError {
    protocol(format!("{operation} was answered with {answer:?}"))
}

fn protocol(reason: String) -> ClientError {
    ClientError::Protocol { reason }
}

#[allow(
    clippy::disallowed_methods,
    reason = "the client waits on wall-clock deadlines; it is not part of the Raft core"
)]
fn now() -> Instant {
    Instant::now()
}

/// The address a client socket talking to `endpoints` binds: any port, in the endpoints' address
/// family, on loopback when every endpoint is on loopback. [`Client::new`] binds its socket here;
/// so does anything else that speaks the client protocol on sockets of its own.
///
/// # Errors
/// [`ClientError::Config`] for no endpoints, or endpoints of both address families.
pub fn bind_address(endpoints: &[SocketAddr]) -> Result<SocketAddr, ClientError> {
    let Some(first) = endpoints.first() else {
        return Err(ClientError::Config {
            reason: "no endpoints".into(),
        });
    };
    if endpoints.iter().any(|e| e.is_ipv4() != first.is_ipv4()) {
        return Err(ClientError::Config {
            reason: "endpoints mix IPv4 and IPv6 addresses".into(),
        });
    }
    let all_loopback = endpoints.iter().all(|e| e.ip().is_loopback());
    Ok(match (first.is_ipv4(), all_loopback) {
        (true, true) => (Ipv4Addr::LOCALHOST, 0).into(),
        (true, false) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        (false, true) => (Ipv6Addr::LOCALHOST, 0).into(),
        (false, false) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    })
}

/// A client id unlikely to be any other client's: the clock's nanoseconds, the process id and a
/// per-process counter, mixed (SplitMix64's finaliser) so that close inputs give far ids.
#[allow(
    clippy::disallowed_methods,
    reason = "the client id is seeded from the wall clock; it is not part of the Raft core"
)]
pub fn random_client_id() -> u64 {
    static CLIENTS_MADE: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            elapsed
                .as_secs()
                .wrapping_mul(1_000_000_000)
                .wrapping_add(u64::from(elapsed.subsec_nanos()))
        });
    let counter = CLIENTS_MADE.fetch_add(1, Ordering::Relaxed);
    let mut x = nanos ^ u64::from(std::process::id()).rotate_left(32) ^ counter.rotate_left(48);
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::wire::Response;

    #[test]
    fn client_ids_differ_between_clients_of_one_process() {
        let ids: std::collections::BTreeSet<u64> = (0..100).map(|_| random_client_id()).collect();
        assert_eq!(ids.len(), 100);
    }

    #[test]
    fn no_endpoints_or_mixed_families_are_refused() {
        let options = ClientOptions::default();
        assert!(matches!(
            Client::new(Vec::new(), options.clone()),
            Err(ClientError::Config { .. })
        ));
        let mixed = vec!["127.0.0.1:1".parse().unwrap(), "[::1]:1".parse().unwrap()];
        assert!(matches!(
            Client::new(mixed, options),
            Err(ClientError::Config { .. })
        ));
    }

    #[test]
    fn oversized_keys_and_values_are_refused_before_sending() {
        let endpoint: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut client = Client::new(vec![endpoint], ClientOptions::default()).unwrap();
        let key = vec![b'k'; crate::kv::MAX_KEY_LEN + 1];
        assert!(matches!(
            client.put(&key, b"v"),
            Err(ClientError::TooLarge { .. })
        ));
        assert!(matches!(
            client.get(&key, false),
            Err(ClientError::TooLarge { .. })
        ));
        let value = vec![0; crate::kv::MAX_VALUE_LEN];
        let error = client.put(b"k", &value).unwrap_err();
        assert!(
            matches!(error, ClientError::TooLarge { max: 65_000, .. }),
            "{error:?}"
        );
        assert!(!error.outcome_unknown());
    }

    /// A stand-in node on its own socket: answers each request with what `answer` says
    /// (`None`: stays silent) until none comes for 2 s, and returns the requests it saw.
    fn fake_node(
        socket: &UdpSocket,
        mut answer: impl FnMut(&Request) -> Option<ResponseBody>,
    ) -> Vec<Request> {
        fake_node_sending(socket, |request| {
            answer(request).map(|body| {
                Wire::Response(Response {
                    id: request.id,
                    body,
                })
            })
        })
    }

    /// [`fake_node`], answering with whole datagrams of its choice.
    fn fake_node_sending(
        socket: &UdpSocket,
        mut answer: impl FnMut(&Request) -> Option<Wire>,
    ) -> Vec<Request> {
        let mut codec = Codec::new(1, 9, DEFAULT_DATAGRAM_LIMIT).unwrap();
        let mut buffer = vec![0; DEFAULT_DATAGRAM_LIMIT + 1];
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut seen = Vec::new();
        while let Ok((len, from)) = socket.recv_from(&mut buffer) {
            let (_, Wire::Request(request)) = codec.decode::<Wire>(&buffer[..len]).unwrap() else {
                panic!("not a request");
            };
            if let Some(response) = answer(&request) {
                let datagram = codec.encode(Kind::Response, &response).unwrap();
                socket.send_to(datagram, from).unwrap();
            }
            seen.push(request);
        }
        seen
    }

    fn quick_options() -> ClientOptions {
        ClientOptions {
            timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_millis(300),
            backoff_start: Duration::from_millis(1),
            ..ClientOptions::default()
        }
    }

    fn command_of(request: &Request) -> Command {
        let RequestBody::Command { data } = &request.body else {
            panic!("not a command: {request:?}");
        };
        Command::decode(data).unwrap()
    }

    #[test]
    fn refusals_without_a_hint_until_the_timeout_are_unavailable_not_unknown() {
        let node = UdpSocket::bind("127.0.0.1:0").unwrap();
        // One attempt, refused, then a backoff longer than the time left: no attempt is left
        // unanswered when the time runs out.
        let options = ClientOptions {
            timeout: Duration::from_secs(1),
            attempt_timeout: Duration::from_secs(1),
            backoff_start: Duration::from_secs(1),
            ..quick_options()
        };
        let mut client = Client::new(vec![node.local_addr().unwrap()], options).unwrap();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                fake_node(&node, |_| {
                    Some(ResponseBody::NotLeader {
                        leader: None,
                        address: None,
                    })
                })
            });
            let error = client.put(b"k", b"v").unwrap_err();
            assert!(
                matches!(error, ClientError::Unavailable { .. }),
                "{error:?}"
            );
            assert!(!error.outcome_unknown());
        });
    }

    #[test]
    fn a_leader_hint_is_followed_and_a_retry_keeps_its_seq() {
        let follower = UdpSocket::bind("127.0.0.1:0").unwrap();
        let leader = UdpSocket::bind("127.0.0.1:0").unwrap();
        let leader_address = leader.local_addr().unwrap();
        let endpoints = vec![follower.local_addr().unwrap(), leader_address];
        let mut client = Client::new(endpoints, quick_options()).unwrap();
        let client_id = client.client_id();
        std::thread::scope(|scope| {
            let hints = scope.spawn(|| {
                fake_node(&follower, |_| {
                    Some(ResponseBody::NotLeader {
                        leader: Some(2),
                        address: Some(leader_address),
                    })
                })
            });
            // The leader ignores the first request (a lost datagram), then answers.
            let mut first = true;
            let applied = scope.spawn(move || {
                fake_node(&leader, |_| {
                    let silent = std::mem::replace(&mut first, false);
                    (!silent).then(|| ResponseBody::Applied {
                        data: Answer::Ok.encode(),
                    })
                })
            });
            client.put(b"k", b"v").unwrap();
            assert_eq!(client.leader(), Some(leader_address));
            client.delete(b"k").unwrap();
            assert!(
                !hints.join().unwrap().is_empty(),
                "the follower was asked first"
            );
            let commands: Vec<Command> = applied.join().unwrap().iter().map(command_of).collect();
            let seqs: Vec<(u64, u64)> = commands.iter().map(|c| (c.client_id, c.seq)).collect();
            // The put's attempts (the lost one and its retry, at least) share seq 1; the
            // delete has seq 2.
            assert!(seqs.iter().all(|(id, _)| *id == client_id), "{seqs:?}");
            let put_attempts = seqs.iter().take_while(|(_, seq)| *seq == 1).count();
            assert!(put_attempts >= 2, "{seqs:?}");
            assert!(
                seqs[put_attempts..].iter().all(|(_, seq)| *seq == 2),
                "{seqs:?}"
            );
            assert!(seqs.len() > put_attempts, "{seqs:?}");
        });
    }

    /// Answers that arrive together in one `Responses` datagram are taken one at a time: an
    /// unrelated answer ahead of the operation's is skipped, and one left over after it does not
    /// answer the next operation.
    #[test]
    fn answers_batched_in_one_datagram_are_matched_by_request_id() {
        let node = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut client = Client::new(vec![node.local_addr().unwrap()], quick_options()).unwrap();
        let value = |bytes: &[u8]| ResponseBody::Query {
            data: Answer::Value(Some(bytes.to_vec())).encode(),
        };
        let unrelated = |id: u64, body| Response {
            id: u64::MAX - id,
            body,
        };
        std::thread::scope(|scope| {
            let fake = scope.spawn(|| {
                fake_node_sending(&node, |request| {
                    let RequestBody::Query { data, .. } = &request.body else {
                        panic!("not a query: {request:?}");
                    };
                    let Ok(Query::Get { key }) = Query::decode(data) else {
                        panic!("not a get: {request:?}");
                    };
                    let right = Response {
                        id: request.id,
                        body: value(&[b"right-".as_slice(), &key].concat()),
                    };
                    let wrong = unrelated(request.id, value(b"wrong"));
                    // The first get's answer comes after an unrelated one, the second's before.
                    Some(Wire::Responses(if key == b"first" {
                        vec![wrong, right]
                    } else {
                        vec![right, wrong]
                    }))
                })
            });
            assert_eq!(
                client.get(b"first", false).unwrap(),
                Some(b"right-first".to_vec())
            );
            assert_eq!(
                client.get(b"second", false).unwrap(),
                Some(b"right-second".to_vec())
            );
            // The second datagram's leftover is waiting; it does not answer the third get.
            assert_eq!(
                client.get(b"third", false).unwrap(),
                Some(b"right-third".to_vec())
            );
            assert!(fake.join().unwrap().len() >= 3);
        });
    }

    #[test]
    fn a_silent_endpoint_times_out_with_the_outcome_unknown() {
        // A bound socket that never answers.
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let options = ClientOptions {
            timeout: Duration::from_millis(150),
            attempt_timeout: Duration::from_millis(50),
            ..ClientOptions::default()
        };
        let mut client = Client::new(vec![silent.local_addr().unwrap()], options).unwrap();
        let error = client.put(b"k", b"v").unwrap_err();
        assert!(error.outcome_unknown(), "{error:?}");
        assert_eq!(
            client.next_seq, 2,
            "one write, one seq, however many attempts"
        );
    }
}
