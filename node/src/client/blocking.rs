//! [`Client`]: the blocking client, one [`Session`] driven over one blocking `UdpSocket`.
//!
//! The session decides what to send where and when; this file only sends its datagrams, waits
//! on the socket until the session's next deadline (a read timeout) and hands it the answers and
//! the time. [`Client::status_all`] and [`Client::status_each`] drive one session per node on
//! the same socket at once, their request ids interleaved with the client's own so that none is
//! ever used twice; `status_each` hands each node's result over as soon as it is known.
//!
//! Invariant: a session is driven until its operation ends (or the socket fails, which abandons
//! it), so each method starts with an idle session.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use balsa_net::{Codec, Notice};

use super::datagram::{ReceiveFailure, decode_responses, encode_request, receive_failure};
use super::scan::too_old;
use super::session::{Operation, Reply, Session, Transmit};
use super::{
    CasOutcome, ClientError, ClientOptions, bind_address, clock, protocol, random_client_id,
};
use crate::kv::{Answer, MAX_DELETE_BATCH, Op, Query};
use crate::raft::NodeId;
use crate::runtime::wire::{MemberStep, MembersReport, Response, SnapshotPiece, StatusReport};

/// A blocking client of a Balsa key-value cluster. Not shared between threads: one request at
/// a time.
pub struct Client {
    pub(super) options: ClientOptions,
    link: Link,
    session: Session,
}

/// The client's socket, and what talking over it needs.
struct Link {
    socket: UdpSocket,
    codec: Codec,
    /// Receive buffer: one byte over the limit, so an oversized datagram is seen, not cut.
    buffer: Vec<u8>,
    /// The socket's read timeout as last set (`None`: never set).
    read_timeout: Option<Duration>,
    /// Time zero of the sessions driven here.
    origin: Instant,
    /// What nodes said of requests they could not open, during the current drive.
    notices: Notices,
}

/// The notices received during one drive, the latest per node, for [`MAX_NOTICES`] nodes.
#[derive(Default)]
struct Notices(Vec<(SocketAddr, Notice)>);

/// Nodes whose notices a drive remembers.
const MAX_NOTICES: usize = 16;

impl Notices {
    fn record(&mut self, from: SocketAddr, notice: Notice) {
        self.0.retain(|(node, _)| *node != from);
        if self.0.len() < MAX_NOTICES {
            self.0.push((from, notice));
        }
    }

    /// The notice of `node`, or of any node if `node` is `None` (the latest).
    fn of(&self, node: Option<SocketAddr>) -> Option<(SocketAddr, Notice)> {
        match node {
            Some(node) => self.0.iter().rev().find(|(from, _)| *from == node).copied(),
            None => self.0.last().copied(),
        }
    }
}

/// A read timeout within this of the one already set is left alone: a receive then ends at most
/// this much off its deadline, and an operation in the steady state (each attempt allows the same
/// time) makes one system call fewer per receive.
const READ_TIMEOUT_SLACK: Duration = Duration::from_millis(1);

impl Client {
    /// A client of the cluster reachable at `endpoints` (any subset of its nodes).
    ///
    /// # Errors
    /// [`ClientError::Config`] for no endpoints, endpoints of both address families, a zero
    /// timeout or a datagram limit the codec refuses; [`ClientError::Io`] if the socket cannot
    /// be bound.
    pub fn new(endpoints: Vec<SocketAddr>, options: ClientOptions) -> Result<Client, ClientError> {
        let bind = bind_address(&endpoints)?;
        let session = Session::new(endpoints, &options, random_client_id())?;
        let socket = UdpSocket::bind(bind).map_err(|source| ClientError::Io {
            op: "binding the client socket",
            source,
        })?;
        let codec = options.codec()?;
        let buffer = vec![0; options.datagram_limit + 1];
        Ok(Client {
            options,
            link: Link {
                socket,
                codec,
                buffer,
                read_timeout: None,
                origin: clock(),
                notices: Notices::default(),
            },
            session,
        })
    }

    /// This client's id in the service's session table.
    pub fn client_id(&self) -> u64 {
        self.session.client_id()
    }

    /// The endpoints it was given.
    pub fn endpoints(&self) -> &[SocketAddr] {
        self.session.endpoints()
    }

    /// The node it believes leads, if any.
    pub fn leader(&self) -> Option<SocketAddr> {
        self.session.leader()
    }

    /// The address of this client's socket: the source nodes see its requests come from (and
    /// name in `StatusReport::suspicious_sources` when they cannot open them).
    ///
    /// # Errors
    /// The OS error if the socket cannot tell.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.link.socket.local_addr()
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), ClientError> {
        let op = Op::Put {
            key: key.to_vec(),
            value: value.to_vec(),
        };
        match self.run(Operation::Write(op))? {
            Reply::Written(Answer::Ok) => Ok(()),
            other => Err(unexpected("put", &other)),
        }
    }

    /// Removes `key` (present or not).
    pub fn delete(&mut self, key: &[u8]) -> Result<(), ClientError> {
        match self.run(Operation::Write(Op::Delete { key: key.to_vec() }))? {
            Reply::Written(Answer::Ok) => Ok(()),
            other => Err(unexpected("delete", &other)),
        }
    }

    /// Removes `key`; answers how many keys it removed: 1 if `key` was present, 0 if not. Needs
    /// nodes that know counted deletes (an older node refuses it, and the error says so).
    pub fn delete_counted(&mut self, key: &[u8]) -> Result<u64, ClientError> {
        let op = Op::DeleteCounted { key: key.to_vec() };
        match self.run(Operation::Write(op)).map_err(too_old)? {
            Reply::Written(Answer::Deleted { count, .. }) => Ok(count),
            other => Err(unexpected("delete", &other)),
        }
    }

    /// Removes one batch of the keys that start with `prefix` (at most
    /// [`MAX_DELETE_BATCH`](crate::kv::MAX_DELETE_BATCH), one replicated command): how many it
    /// removed, and whether keys with the prefix remain.
    pub fn delete_prefix_batch(&mut self, prefix: &[u8]) -> Result<(u64, bool), ClientError> {
        let op = Op::DeletePrefix {
            prefix: prefix.to_vec(),
            max_keys: MAX_DELETE_BATCH as u64,
        };
        match self.run(Operation::Write(op)).map_err(too_old)? {
            Reply::Written(Answer::Deleted { count, more }) => {
                if more && count == 0 {
                    return Err(protocol(
                        "a prefix delete removed nothing yet says keys remain".into(),
                    ));
                }
                Ok((count, more))
            }
            other => Err(unexpected("a prefix delete", &other)),
        }
    }

    /// Removes every key that starts with `prefix`, a batch (one command) at a time until none
    /// remains; answers how many it removed. Each batch is atomic, the whole is not: a key
    /// written with the prefix meanwhile may be removed or not. On an error, the batches before
    /// it stand.
    pub fn delete_prefix(&mut self, prefix: &[u8]) -> Result<u64, ClientError> {
        let mut total = 0_u64;
        loop {
            let (count, more) = self.delete_prefix_batch(prefix)?;
            total = total.saturating_add(count);
            if !more {
                return Ok(total);
            }
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
        match self.run(Operation::Write(op))? {
            Reply::Written(Answer::Ok) => Ok(CasOutcome::Swapped),
            Reply::Written(Answer::CasMismatch { current }) => Ok(CasOutcome::Mismatch { current }),
            other => Err(unexpected("compare-and-swap", &other)),
        }
    }

    /// The value of `key` (`None`: absent). Linearizable unless `stale`, in which case the node
    /// asked answers from its own state at once (it may miss recent writes).
    pub fn get(&mut self, key: &[u8], stale: bool) -> Result<Option<Vec<u8>>, ClientError> {
        let query = Query::Get { key: key.to_vec() };
        match self.run(Operation::Read { query, stale })? {
            Reply::Read(Answer::Value(value)) => Ok(value),
            other => Err(unexpected("get", &other)),
        }
    }

    /// The status of the node at `endpoint` (any address, not only the endpoints').
    pub fn status(&mut self, endpoint: SocketAddr) -> Result<StatusReport, ClientError> {
        match self.run(Operation::Status(endpoint))? {
            Reply::Status(report) => Ok(report),
            other => Err(unexpected("a status request", &other)),
        }
    }

    /// The status of every node in `endpoints`, asked all at once (one operation timeout for
    /// all), in the same order. A node that never answers gets [`ClientError::Timeout`].
    pub fn status_all(
        &mut self,
        endpoints: &[SocketAddr],
    ) -> Vec<Result<StatusReport, ClientError>> {
        let mut results: Vec<Option<Result<StatusReport, ClientError>>> =
            endpoints.iter().map(|_| None).collect();
        self.status_each(endpoints, |k, result| results[k] = Some(result));
        results
            .into_iter()
            .map(|result| result.expect("status_each reports every endpoint once"))
            .collect()
    }

    /// The status of every node in `endpoints`, asked all at once (one operation timeout for
    /// all): `each(k, result)` is called once per endpoint, `k` its place in `endpoints`, as
    /// soon as its result is known — an answer as it arrives, a silent node's
    /// [`ClientError::Timeout`] once the time is out. So a caller can show the answers while a
    /// silent node is still waited for.
    pub fn status_each(
        &mut self,
        endpoints: &[SocketAddr],
        mut each: impl FnMut(usize, Result<StatusReport, ClientError>),
    ) {
        let timeout = self.options.timeout;
        self.ask_each(endpoints, timeout, Operation::Status, |k, reply| {
            let result = reply.and_then(|reply| match reply {
                Reply::Status(report) => Ok(report),
                other => Err(unexpected("a status request", &other)),
            });
            each(k, result);
        });
    }

    /// The configuration in force at every node in `endpoints`, asked all at once, in the same
    /// order (a node that never answers gets [`ClientError::Timeout`]). The leader's answer
    /// carries each member's match index.
    pub fn members_all(
        &mut self,
        endpoints: &[SocketAddr],
    ) -> Vec<Result<MembersReport, ClientError>> {
        let mut results: Vec<Option<Result<MembersReport, ClientError>>> =
            endpoints.iter().map(|_| None).collect();
        let timeout = self.options.timeout;
        self.ask_each(endpoints, timeout, Operation::Members, |k, reply| {
            results[k] = Some(reply.and_then(|reply| match reply {
                Reply::Members(report) => Ok(report),
                other => Err(unexpected("a members request", &other)),
            }));
        });
        results
            .into_iter()
            .map(|result| result.expect("ask_each reports every endpoint once"))
            .collect()
    }

    /// Asks the leader to change the membership by `steps` (one joint change) and waits, up
    /// to the client's timeout, for it to complete; returns the new configuration. Every
    /// attempt carries the same token, so a retry never starts a second change. A refusal is
    /// [`ClientError::MembershipRefused`]; a timeout leaves the outcome unknown.
    pub fn change_membership(
        &mut self,
        steps: Vec<MemberStep>,
    ) -> Result<MembersReport, ClientError> {
        let token = random_client_id();
        match self.run(Operation::ChangeMembership { steps, token })? {
            Reply::MembershipChanged(report) => Ok(report),
            other => Err(unexpected("a membership change", &other)),
        }
    }

    /// Runs `ask(node)` at every node of `endpoints` at once (one operation timeout, `timeout`,
    /// for all); `reply(k, result)` is called once for each, `k` its place in `endpoints`, as
    /// soon as its operation ends (the socket failing ends every one not ended yet, with the
    /// reason).
    fn ask_each(
        &mut self,
        endpoints: &[SocketAddr],
        timeout: Duration,
        ask: impl Fn(SocketAddr) -> Operation,
        mut reply: impl FnMut(usize, Result<Reply, ClientError>),
    ) {
        // One session per node, numbering their attempts apart from each other and from the
        // client's own, which continue after the last of theirs.
        let first = self.session.next_request_id();
        let stride = endpoints.len() as u64;
        let now = self.link.now();
        let options = ClientOptions {
            timeout,
            ..self.options.clone()
        };
        let mut sessions: Vec<Session> = (0_u64..)
            .zip(endpoints)
            .map(|(k, endpoint)| {
                let mut session = Session::new(
                    self.session.endpoints().to_vec(),
                    &options,
                    self.session.client_id(),
                )
                .expect(
                    "the client's own session was made with these endpoints and options, and \
                     `timeout` is never zero (its callers' invariant)",
                )
                .with_request_ids(first + k, stride);
                session
                    .start(now, ask(*endpoint))
                    .expect("a request to one node has no key or value to exceed a limit");
                session
            })
            .collect();
        let mut replied = vec![false; sessions.len()];
        let driven = self.link.drive(&mut sessions, |k, session, notices| {
            if let Some(completed) = session.poll_outcome() {
                replied[k] = true;
                let notice = notices.of(Some(endpoints[k]));
                reply(
                    k,
                    completed.result.map_err(|error| error.explained_by(notice)),
                );
            }
        });
        let after_theirs = sessions.iter().map(Session::next_request_id).max();
        self.session
            .skip_request_ids_to(after_theirs.unwrap_or(first));
        // The socket failed: every node not heard from gets the reason.
        let failure = driven.err().map(|error| error.to_string());
        for (k, session) in sessions.iter_mut().enumerate() {
            if replied[k] {
                continue;
            }
            let result = match session.poll_outcome() {
                Some(completed) => completed.result,
                None => Err(ClientError::Io {
                    op: "receiving",
                    source: io::Error::other(failure.clone().unwrap_or_default()),
                }),
            };
            reply(k, result);
        }
    }

    /// Asks the node at `endpoint` to snapshot its state machine and compact its log now;
    /// returns the last index the snapshot covers once it is durable.
    pub fn take_snapshot(&mut self, endpoint: SocketAddr) -> Result<u64, ClientError> {
        match self.run(Operation::Snapshot(endpoint))? {
            Reply::SnapshotTaken(index) => Ok(index),
            other => Err(unexpected("a snapshot request", &other)),
        }
    }

    /// A linearizable read answered by the node at `endpoint` only (see
    /// [`Operation::ReadAt`]): when it returns, that node has applied every write acknowledged
    /// before the call. A node that knows no leader is asked again until the timeout.
    ///
    /// # Errors
    /// Those of [`Client::get`].
    pub fn read_at(&mut self, endpoint: SocketAddr, query: Query) -> Result<Answer, ClientError> {
        match self.run(Operation::ReadAt {
            node: endpoint,
            query,
        })? {
            Reply::Read(answer) => Ok(answer),
            other => Err(unexpected("a read", &other)),
        }
    }

    /// Reads the piece of the newest snapshot of the node at `endpoint` from `offset`, at
    /// most `max_bytes` of it (the node sends at most what fits one of its datagrams). That
    /// node alone is asked; an unanswered attempt is sent again until the timeout.
    ///
    /// # Errors
    /// [`ClientError::Rejected`] when the node holds no snapshot or `offset` lies past its
    /// end; [`ClientError::Timeout`] when it never answered (a node older than this request
    /// drops it as undecodable, and answers nothing).
    pub fn read_snapshot(
        &mut self,
        endpoint: SocketAddr,
        offset: u64,
        max_bytes: u32,
    ) -> Result<SnapshotPiece, ClientError> {
        let operation = Operation::ReadSnapshot {
            node: endpoint,
            offset,
            max_bytes,
        };
        match self.run(operation)? {
            Reply::SnapshotPiece(piece) => Ok(piece),
            other => Err(unexpected("a snapshot read", &other)),
        }
    }

    /// Asks the leader to hand leadership to node `to`, and waits, within the client's
    /// timeout, until node `to` leads: some endpoint reports itself as node `to` leading, or
    /// follows node `to` as its leader. (The leader answers as soon as the transfer starts; it
    /// gives the transfer up if `to` does not catch up and take over within an election
    /// timeout, so only the cluster's status tells the outcome, which is also how this works
    /// against nodes of any version.)
    ///
    /// # Errors
    /// [`ClientError::Rejected`] when the leader refuses at once (node `to` is not a voter of
    /// the configuration in force); [`ClientError::NotTransferred`], with what the endpoints
    /// reported, when node `to` did not lead in time; the errors of any operation otherwise.
    pub fn transfer(&mut self, to: NodeId) -> Result<(), ClientError> {
        let started = self.link.now();
        match self.run(Operation::Transfer(to))? {
            Reply::TransferStarted => {}
            other => return Err(unexpected("a transfer", &other)),
        }
        let deadline = started.saturating_add(self.options.timeout);
        let endpoints = self.session.endpoints().to_vec();
        loop {
            let left = deadline.saturating_sub(self.link.now());
            // A round of status requests waits at most an attempt timeout (never zero).
            let round = self
                .options
                .attempt_timeout
                .min(left)
                .max(Duration::from_millis(1));
            let mut reports = Vec::new();
            self.ask_each(&endpoints, round, Operation::Status, |_, reply| {
                if let Ok(Reply::Status(report)) = reply {
                    reports.push(report);
                }
            });
            if reports.iter().any(|report| leads(report, to)) {
                return Ok(());
            }
            let now = self.link.now();
            if now >= deadline {
                return Err(ClientError::NotTransferred {
                    to,
                    waited: now.saturating_sub(started),
                    reason: not_transferred_reason(&reports, to),
                });
            }
            // Between rounds of answers, a pause: the outcome takes an election to show.
            std::thread::sleep(TRANSFER_POLL.min(deadline.saturating_sub(now)));
        }
    }

    /// Runs `operation` to its end.
    pub(super) fn run(&mut self, operation: Operation) -> Result<Reply, ClientError> {
        self.session.start(self.link.now(), operation)?;
        let ended = |_, _: &mut Session, _: &Notices| {};
        if let Err(error) = self
            .link
            .drive(std::slice::from_mut(&mut self.session), ended)
        {
            self.session.abandon();
            return Err(error);
        }
        let completed = self
            .session
            .poll_outcome()
            .expect("drive returns once every session's operation ended");
        let notice = self.link.notices.of(None);
        completed.result.map_err(|error| error.explained_by(notice))
    }
}

/// The pause between two rounds of status requests while a transfer's outcome is awaited.
const TRANSFER_POLL: Duration = Duration::from_millis(20);

/// Whether `report` says node `to` leads: it is node `to`, leading, or it follows node `to`.
fn leads(report: &StatusReport, to: NodeId) -> bool {
    (report.id == to && report.role == "leader") || report.leader == Some(to)
}

/// Why node `to` is not leading, from the last round of status `reports`: who leads instead,
/// and whether node `to` answered at all.
fn not_transferred_reason(reports: &[StatusReport], to: NodeId) -> String {
    let leader = reports
        .iter()
        .filter(|report| report.role == "leader")
        .max_by_key(|report| report.term);
    let still = match leader {
        Some(leader) => format!("node {} still leads (term {})", leader.id, leader.term),
        None => String::from("no endpoint reports a leader"),
    };
    let target = if reports.iter().any(|report| report.id == to) {
        format!(
            "node {to} answers but did not take over (behind, or cut off from the leader?); \
             the leader gives a transfer up after an election timeout"
        )
    } else {
        format!(
            "node {to} did not answer at any endpoint (is it running?); the leader gives a \
             transfer up when its target does not catch up within an election timeout"
        )
    };
    format!("{still}; {target}")
}

impl Link {
    /// The sessions' time: since this link was made.
    fn now(&self) -> Duration {
        clock().saturating_duration_since(self.origin)
    }

    /// Sends what `sessions` have to send and feeds them answers and the time until none has an
    /// operation in progress. An answer goes to the session whose attempt it answers. As each
    /// session's operation ends, `ended(k, session, notices)` is called once (`k` its place in
    /// `sessions`), before the others are waited for; it may take the outcome. `notices` are
    /// what nodes said so far of requests they could not open.
    ///
    /// # Errors
    /// [`ClientError::Io`] if the socket fails to receive; the operations are left unfinished.
    fn drive(
        &mut self,
        sessions: &mut [Session],
        mut ended: impl FnMut(usize, &mut Session, &Notices),
    ) -> Result<(), ClientError> {
        self.notices = Notices::default();
        let mut told = vec![false; sessions.len()];
        loop {
            let now = self.now();
            let mut wake: Option<Duration> = None;
            for (k, session) in sessions.iter_mut().enumerate() {
                session.handle_timeout(now);
                while let Some(transmit) = session.poll_transmit(now) {
                    if let Err(error) = self.send(transmit) {
                        session.handle_send_failed(now, error);
                    }
                }
                match session.poll_timeout() {
                    Some(at) => wake = Some(wake.map_or(at, |wake| wake.min(at))),
                    None if !told[k] => {
                        told[k] = true;
                        ended(k, session, &self.notices);
                    }
                    None => {}
                }
            }
            let Some(wake) = wake else {
                return Ok(());
            };
            if let Some((from, responses)) = self.receive(wake)? {
                let now = self.now();
                for response in responses {
                    let id = response.id;
                    if let Some(session) = sessions.iter_mut().find(|s| s.awaits(id)) {
                        session.handle_response(now, from, response);
                    }
                }
            }
        }
    }

    /// Sends `transmit`'s request where it says.
    fn send(&mut self, transmit: Transmit) -> Result<(), ClientError> {
        let datagram = encode_request(&mut self.codec, transmit.request)?;
        self.socket
            .send_to(datagram, transmit.to)
            .map(|_| ())
            .map_err(|source| ClientError::Io {
                op: "sending",
                source,
            })
    }

    /// Receives the next datagram of answers until `deadline` (the sessions' time): `None` when
    /// it passed. Datagrams that are not responses of this cluster are skipped.
    fn receive(
        &mut self,
        deadline: Duration,
    ) -> Result<Option<(SocketAddr, Vec<Response>)>, ClientError> {
        loop {
            let left = deadline.saturating_sub(self.now());
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
                Err(error) => match receive_failure(error) {
                    // The loop's top checks the deadline.
                    ReceiveFailure::NothingWaiting | ReceiveFailure::ReadOn => continue,
                    ReceiveFailure::Failed(error) => return Err(error),
                },
            };
            if let Some(notice) = self.codec.notice(&self.buffer[..len]) {
                self.notices.record(from, notice);
                continue;
            }
            let responses = decode_responses(&self.codec, &mut self.buffer[..len]);
            if !responses.is_empty() {
                return Ok(Some((from, responses)));
            }
        }
    }
}

fn unexpected(operation: &str, reply: &Reply) -> ClientError {
    protocol(format!("{operation} was answered with {reply:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::stand_in::{self, stop};
    use crate::kv::Command;
    use crate::runtime::wire::{Request, RequestBody, Response, ResponseBody, Wire};

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
            Err(ClientError::OverLimit(_))
        ));
        let error = client.get(&key, false).unwrap_err();
        assert_eq!(
            error.to_string(),
            "key of 1,025 bytes exceeds the maximum key size of 1,024 bytes (values: at most \
             63,488 bytes)"
        );
        let value = vec![0; 70_000];
        let error = client.put(b"k", &value).unwrap_err();
        assert_eq!(
            error.to_string(),
            "value of 70,000 bytes exceeds the maximum value size of 63,488 bytes (keys: at most \
             1,024 bytes)"
        );
        assert!(!error.outcome_unknown());
        let half = vec![0; crate::kv::MAX_VALUE_SIZE / 2 + 1];
        let error = client.cas(b"k", Some(&half), &half).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("expected and new values of 63,490 bytes exceed the maximum value"),
            "{error}"
        );
    }

    /// A stand-in node on its own socket ([`stand_in::serve`]): answers each request, sent
    /// alone as a client sends it, with what `answer` says (`None`: stays silent) until stopped,
    /// and returns the requests it saw.
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
        let seen = stand_in::serve(socket, |requests| {
            let [request] = requests else {
                panic!("a client sends its requests alone: {requests:?}");
            };
            answer(request)
        });
        seen.into_iter()
            .flat_map(|(_, requests)| requests)
            .collect()
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
            stop(node.local_addr().unwrap());
        });
    }

    #[test]
    fn a_leader_hint_is_followed_and_a_retry_keeps_its_seq() {
        let follower = UdpSocket::bind("127.0.0.1:0").unwrap();
        let leader = UdpSocket::bind("127.0.0.1:0").unwrap();
        let leader_address = leader.local_addr().unwrap();
        let follower_address = follower.local_addr().unwrap();
        let endpoints = vec![follower_address, leader_address];
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
            stop(follower_address);
            stop(leader_address);
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
            stop(node.local_addr().unwrap());
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
            client.session.next_seq(),
            2,
            "one write, one seq, however many attempts"
        );
    }

    fn status_of(id: NodeId) -> StatusReport {
        StatusReport {
            id,
            role: "follower".into(),
            term: 1,
            leader: None,
            commit_index: 0,
            applied_index: 0,
            last_index: 0,
            datagrams_in: 0,
            datagrams_out: 0,
            datagrams_dropped: 0,
            wal_syncs: 0,
            snapshot_index: 0,
            first_index: 1,
            cluster_id: 1,
            voters: vec![id],
            outgoing_voters: Vec::new(),
            learners: Vec::new(),
            configuration_index: 0,
            datagrams_auth_failed: 0,
            datagrams_replayed: 0,
            suspicious_sources: Vec::new(),
        }
    }

    /// Two stand-in nodes, one to answer and one to stay silent, and a client of the first whose
    /// operations end within 400 ms (attempts of 100 ms).
    fn answering_and_silent() -> (UdpSocket, UdpSocket, Client) {
        let answering = UdpSocket::bind("127.0.0.1:0").unwrap();
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let options = ClientOptions {
            timeout: Duration::from_millis(400),
            attempt_timeout: Duration::from_millis(100),
            ..ClientOptions::default()
        };
        let client = Client::new(vec![answering.local_addr().unwrap()], options).unwrap();
        (answering, silent, client)
    }

    /// `status_all` asks every node at once: one answering, one silent, in the order asked;
    /// the ids it used are never used again by the client's own requests.
    #[test]
    fn status_all_asks_every_node_at_once_and_reports_each() {
        let (answering, silent, mut client) = answering_and_silent();
        let (answering_address, silent_address) = (
            answering.local_addr().unwrap(),
            silent.local_addr().unwrap(),
        );
        std::thread::scope(|scope| {
            let node = scope.spawn(|| {
                fake_node(&answering, |_| {
                    Some(ResponseBody::Status(Box::new(status_of(5))))
                })
            });
            let results = client.status_all(&[silent_address, answering_address]);
            assert!(
                matches!(&results[0], Err(error) if error.outcome_unknown()),
                "{:?}",
                results[0]
            );
            assert_eq!(results[1].as_ref().unwrap().id, 5);
            assert_eq!(client.status(answering_address).unwrap().id, 5);
            stop(answering_address);
            let ids: Vec<u64> = node.join().unwrap().iter().map(|r| r.id).collect();
            let (last, asked_all) = ids.split_last().unwrap();
            assert!(asked_all.iter().all(|id| id < last), "{ids:?}");
        });
        // The silent node was asked too.
        silent.set_nonblocking(true).unwrap();
        let mut buffer = [0; 256];
        assert!(silent.recv_from(&mut buffer).is_ok(), "never asked");
    }

    /// `status_each` hands each node's result over as it is known: the answer of the node that
    /// answers first, though it is listed second, and the silent node's timeout once the time
    /// is out, after it.
    #[test]
    fn status_each_reports_each_node_as_soon_as_its_result_is_known() {
        let (answering, silent, mut client) = answering_and_silent();
        let (answering_address, silent_address) = (
            answering.local_addr().unwrap(),
            silent.local_addr().unwrap(),
        );
        std::thread::scope(|scope| {
            scope.spawn(|| {
                fake_node(&answering, |_| {
                    Some(ResponseBody::Status(Box::new(status_of(5))))
                })
            });
            let mut reported = Vec::new();
            client.status_each(&[silent_address, answering_address], |k, result| {
                reported.push((k, result.map(|report| report.id)));
            });
            stop(answering_address);
            assert!(
                matches!(&reported[..], [(1, Ok(5)), (0, Err(error))] if error.outcome_unknown()),
                "{reported:?}"
            );
        });
    }
}
