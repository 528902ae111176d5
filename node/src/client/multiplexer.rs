//! [`Multiplexer`]: many [`Session`]s driven by one thread on one `mio` poll, each with a socket
//! of its own or all on one shared socket.
//!
//! With [`Sockets::Shared`] the requests the sessions have ready at the start of a turn leave
//! together, one datagram per node (`Wire::Requests`, split as `datagram.rs` says), as a client
//! library multiplexing sessions on one connection does; a node answers them together
//! (`Wire::Responses`). Each session still has one operation in progress and its own
//! client id and seqs. Session `k` of `n` numbers its attempts `k`, `k + n`, `k + 2n`…, so an
//! answer's request id names its session; the session then checks that the id is one of its
//! operation's attempts. With [`Sockets::PerClient`] session `k` has socket `k` and sends each
//! request alone, as separate client processes would.
//!
//! A turn ([`Multiplexer::turn`]): give every session the time and send what is due, wait until
//! an answer arrives or the earliest session deadline, hand every answer received to its
//! session, and again give every session the time and send what is due. An operation that ends
//! is handed at once to the turn's caller, which may return the session's next one: it starts
//! then and there. With a socket per session its first attempt leaves before anything more is
//! read (a closed loop's next write leaves as soon as the last is answered); on the shared
//! socket it leaves at the end of the turn, batched with the others.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use balsa_net::Codec;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

use super::datagram::{
    ReceiveFailure, decode_responses, encode_batch, encode_request, receive_failure,
};
use super::session::{Completed, Operation, Session};
use super::{ClientError, ClientOptions, bind_address, clock, random_client_id};
use crate::runtime::wire::Request;

/// How the sessions of a [`Multiplexer`] reach the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sockets {
    /// A socket per session, one request per datagram: what separate client processes (or
    /// [`Client`](super::Client)s) do.
    PerClient,
    /// One socket for all, the requests ready at one moment batched into one datagram per node
    /// (`Wire::Requests`); a node answers them together (`Wire::Responses`).
    Shared,
}

/// An operation that ended, and whose.
#[derive(Debug)]
pub struct Finished {
    /// The session's position in the multiplexer.
    pub session: usize,
    /// How it ended.
    pub completed: Completed,
}

/// Many sessions on one poll: see the module doc.
pub struct Multiplexer {
    sessions: Vec<Session>,
    layout: Sockets,
    /// `PerClient`: socket `k` is session `k`'s, polled as token `k`. `Shared`: one, token 0.
    sockets: Vec<UdpSocket>,
    poll: Poll,
    events: Events,
    /// The tokens of the sockets the last poll found readable.
    readable: Vec<usize>,
    codec: Codec,
    /// Receive buffer: one byte over the limit, so an oversized datagram is seen, not cut.
    buffer: Vec<u8>,
    /// `Shared`: this turn's attempts, gathered to leave grouped by node.
    outgoing: Vec<(SocketAddr, Request)>,
    /// Time zero of the sessions.
    origin: Instant,
    /// Whether a node's notice (it could not open our requests) was logged already: once.
    told_of_notice: bool,
}

impl Multiplexer {
    /// `sessions` sessions (each with a random client id) of the cluster at `endpoints`, timed by
    /// `options`, on sockets laid out as `layout` says.
    ///
    /// # Errors
    /// [`ClientError::Config`] for no sessions, no endpoints, endpoints of both address families,
    /// a zero timeout or a datagram limit the codec refuses; [`ClientError::Io`] if a socket
    /// cannot be bound or polled.
    pub fn new(
        endpoints: &[SocketAddr],
        options: &ClientOptions,
        sessions: usize,
        layout: Sockets,
    ) -> Result<Multiplexer, ClientError> {
        if sessions == 0 {
            return Err(ClientError::Config {
                reason: "at least one session is needed".into(),
            });
        }
        let bind = bind_address(endpoints)?;
        let codec = options.codec()?;
        let stride = sessions as u64;
        let sessions = (0..stride)
            .map(|k| {
                Session::new(endpoints.to_vec(), options, random_client_id())
                    .map(|session| session.with_request_ids(k, stride))
            })
            .collect::<Result<Vec<Session>, ClientError>>()?;
        let poll = Poll::new().map_err(|source| ClientError::Io {
            op: "creating a poll",
            source,
        })?;
        let socket_count = match layout {
            Sockets::PerClient => sessions.len(),
            Sockets::Shared => 1,
        };
        let mut sockets = Vec::with_capacity(socket_count);
        for token in 0..socket_count {
            let std_socket = std::net::UdpSocket::bind(bind).map_err(|source| ClientError::Io {
                op: "binding a client socket",
                source,
            })?;
            // Many sessions' answers may wait in one socket: the default buffer holds three
            // of 64 KiB. Best effort: a smaller buffer only loses answers, which are retried.
            let _ = balsa_net::grow_socket_buffers(&std_socket, balsa_net::SOCKET_BUFFER_BYTES);
            std_socket
                .set_nonblocking(true)
                .map_err(|source| ClientError::Io {
                    op: "making a client socket non-blocking",
                    source,
                })?;
            let mut socket = UdpSocket::from_std(std_socket);
            poll.registry()
                .register(&mut socket, Token(token), Interest::READABLE)
                .map_err(|source| ClientError::Io {
                    op: "registering a client socket",
                    source,
                })?;
            sockets.push(socket);
        }
        Ok(Multiplexer {
            sessions,
            layout,
            sockets,
            poll,
            events: Events::with_capacity(socket_count),
            readable: Vec::with_capacity(socket_count),
            codec,
            buffer: vec![0; options.datagram_limit + 1],
            outgoing: Vec::new(),
            origin: clock(),
            told_of_notice: false,
        })
    }

    /// How many sessions it drives.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Always false: a multiplexer has at least one session.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Session `session`.
    pub fn session(&self, session: usize) -> &Session {
        &self.sessions[session]
    }

    /// The sessions' time: since this multiplexer was made.
    pub fn now(&self) -> Duration {
        clock().saturating_duration_since(self.origin)
    }

    /// True while some session has an operation in progress.
    pub fn is_busy(&self) -> bool {
        self.sessions.iter().any(Session::is_busy)
    }

    /// Starts `operation` on session `session`; its requests leave at the next turn.
    ///
    /// # Errors
    /// [`ClientError::TooLarge`] for a key or value over its limit: nothing starts.
    ///
    /// # Panics
    /// If that session has an operation in progress or an outcome not yet reported.
    pub fn start(&mut self, session: usize, operation: Operation) -> Result<(), ClientError> {
        let now = self.now();
        self.sessions[session].start(now, operation)
    }

    /// One turn (see the module doc). Each operation that ends is handed to `next` at once,
    /// which may return the session's next operation: it starts then and there (with a socket
    /// per session its first attempt leaves before anything else is read; on the shared socket
    /// it leaves with the turn's others). A next operation refused at its start (a key over its
    /// limit) is handed back to `next` as ended with that error. Returns at once when no session
    /// is busy.
    ///
    /// # Errors
    /// [`ClientError::Io`] if polling or receiving fails; the operations in progress are left
    /// as they are.
    pub fn turn(
        &mut self,
        next: &mut dyn FnMut(Finished) -> Option<Operation>,
    ) -> Result<(), ClientError> {
        let now = self.now();
        self.act_on_time(now, next);
        let Some(wake) = self.sessions.iter().filter_map(Session::poll_timeout).min() else {
            return Ok(());
        };
        let wait = wake.saturating_sub(self.now());
        match self.poll.poll(&mut self.events, Some(wait)) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(ClientError::Io {
                    op: "polling",
                    source,
                });
            }
        }
        self.readable.clear();
        self.readable
            .extend(self.events.iter().map(|event| event.token().0));
        for k in 0..self.readable.len() {
            self.receive(self.readable[k], next)?;
        }
        let now = self.now();
        self.act_on_time(now, next);
        Ok(())
    }

    /// Gives every session the time, hands on the operations that ended, and sends what is due.
    fn act_on_time(&mut self, now: Duration, next: &mut dyn FnMut(Finished) -> Option<Operation>) {
        for session in 0..self.sessions.len() {
            self.sessions[session].handle_timeout(now);
            self.settle(session, now, next);
        }
        self.transmit(now);
        // A send that failed for good (a request too large) ended its operation.
        for session in 0..self.sessions.len() {
            self.settle(session, now, next);
        }
    }

    /// If session `session`'s operation ended, hands it to `next` and starts what `next` returns
    /// (with a socket per session, its first attempt leaves now), until `next` returns nothing or
    /// an operation is under way.
    fn settle(
        &mut self,
        session: usize,
        now: Duration,
        next: &mut dyn FnMut(Finished) -> Option<Operation>,
    ) {
        let mut ended = self.sessions[session].poll_outcome();
        while let Some(completed) = ended.take() {
            let Some(operation) = next(Finished { session, completed }) else {
                return;
            };
            ended = match self.sessions[session].start(now, operation) {
                Ok(()) => {
                    if self.layout == Sockets::PerClient {
                        self.send_alone(session, now);
                    }
                    self.sessions[session].poll_outcome()
                }
                Err(error) => Some(Completed {
                    result: Err(error),
                    elapsed: Duration::ZERO,
                }),
            };
        }
    }

    /// With a socket per session: sends session `session`'s due attempts on its socket.
    fn send_alone(&mut self, session: usize, now: Duration) {
        while let Some(transmit) = self.sessions[session].poll_transmit(now) {
            let socket = &self.sockets[session];
            let sent = encode_request(&mut self.codec, transmit.request).and_then(|datagram| {
                socket
                    .send_to(datagram, transmit.to)
                    .map_err(|source| ClientError::Io {
                        op: "sending",
                        source,
                    })
            });
            if let Err(error) = sent {
                self.sessions[session].handle_send_failed(now, error);
            }
        }
    }

    /// Sends every attempt due: alone on its session's socket, or gathered and batched per node
    /// on the shared one. A send that fails is reported to the sessions it carried.
    fn transmit(&mut self, now: Duration) {
        for k in 0..self.sessions.len() {
            match self.layout {
                Sockets::PerClient => self.send_alone(k, now),
                Sockets::Shared => {
                    while let Some(transmit) = self.sessions[k].poll_transmit(now) {
                        self.outgoing.push((transmit.to, transmit.request));
                    }
                }
            }
        }
        if self.outgoing.is_empty() {
            return;
        }
        // Taken for the loop and put back empty, so one buffer serves every turn.
        let mut outgoing = std::mem::take(&mut self.outgoing);
        outgoing.sort_by_key(|(target, _)| *target); // stable: each node's in session order
        let mut sorted = outgoing.drain(..).peekable();
        let stride = self.sessions.len() as u64;
        while let Some((target, first)) = sorted.next() {
            let mut group = vec![first];
            while let Some((_, request)) = sorted.next_if(|(to, _)| *to == target) {
                group.push(request);
            }
            let shared = &self.sockets[0];
            let failed = encode_batch(&mut self.codec, group, &mut |datagram| {
                shared.send_to(datagram, target).map(|_| ())
            });
            for (id, error) in failed {
                // An id of this multiplexer names its session (see the module doc).
                let session = usize::try_from(id % stride).expect("below the session count");
                self.sessions[session].handle_send_failed(now, error);
            }
        }
        drop(sorted);
        self.outgoing = outgoing;
    }

    /// Takes every datagram waiting on socket `token` and hands each answer to the session whose
    /// attempt it answers.
    fn receive(
        &mut self,
        token: usize,
        next: &mut dyn FnMut(Finished) -> Option<Operation>,
    ) -> Result<(), ClientError> {
        loop {
            let (len, from) = match self.sockets[token].recv_from(&mut self.buffer) {
                Ok(received) => received,
                Err(error) => match receive_failure(error) {
                    ReceiveFailure::NothingWaiting => return Ok(()),
                    ReceiveFailure::ReadOn => continue,
                    ReceiveFailure::Failed(error) => return Err(error),
                },
            };
            if let Some(notice) = self.codec.notice(&self.buffer[..len]) {
                if !self.told_of_notice {
                    self.told_of_notice = true;
                    log::warn!("{from} refuses this client's requests: {notice:?}");
                }
                continue;
            }
            let now = self.now();
            let stride = self.sessions.len() as u64;
            for response in decode_responses(&self.codec, &mut self.buffer[..len]) {
                let session = match self.layout {
                    Sockets::PerClient => token,
                    // An id of this multiplexer names its session (see the module doc).
                    Sockets::Shared => {
                        usize::try_from(response.id % stride).expect("below the session count")
                    }
                };
                // Not this session's (a late answer to an earlier operation, a duplicate, or
                // a stranger's id): it says so and ignores it.
                if self.sessions[session].handle_response(now, from, response) {
                    self.settle(session, now, next);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::session::Reply;
    use crate::client::stand_in;
    use crate::kv::{Answer, Query};
    use crate::runtime::wire::{RequestBody, Response, ResponseBody, Wire};

    fn key_of(request: &Request) -> Vec<u8> {
        let RequestBody::Query { data, .. } = &request.body else {
            panic!("not a query: {request:?}");
        };
        let Ok(Query::Get { key }) = Query::decode(data) else {
            panic!("not a get: {request:?}");
        };
        key
    }

    /// The answer a node gives a get of `request`'s key: the key itself, under `id`.
    fn echo_key(request: &Request, id: u64) -> Response {
        Response {
            id,
            body: ResponseBody::Query {
                data: Answer::Value(Some(key_of(request))).encode(),
            },
        }
    }

    fn get(key: &str) -> Operation {
        Operation::Read {
            query: Query::Get {
                key: key.as_bytes().to_vec(),
            },
            stale: false,
        }
    }

    /// A datagram the stand-in node received: its sender and its requests' ids.
    type Datagram = (SocketAddr, Vec<u64>);

    /// A multiplexer of `count` sessions laid out as `layout`, against a stand-in node that
    /// answers as `answer` says: starts a get of `key-<k>` on every session `k` and turns until
    /// all ended. Returns what each session got, and the node's datagrams: their senders and
    /// their requests' ids.
    fn gets_against_stand_in(
        count: usize,
        layout: Sockets,
        options: &ClientOptions,
        answer: impl FnMut(&[Request]) -> Option<Wire> + Send,
    ) -> (Vec<(usize, Reply)>, Vec<Datagram>) {
        let node = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let address = node.local_addr().unwrap();
        let mut mux = Multiplexer::new(&[address], options, count, layout).unwrap();
        let (finished, seen) = std::thread::scope(|scope| {
            let fake = scope.spawn(|| stand_in::serve(&node, answer));
            for k in 0..count {
                mux.start(k, get(&format!("key-{k}"))).unwrap();
            }
            let mut finished = Vec::new();
            while mux.is_busy() {
                mux.turn(&mut |ended| {
                    finished.push(ended);
                    None
                })
                .unwrap();
            }
            stand_in::stop(address);
            (finished, fake.join().unwrap())
        });
        let mut replies: Vec<(usize, Reply)> = finished
            .into_iter()
            .map(|f| (f.session, f.completed.result.unwrap()))
            .collect();
        replies.sort_by_key(|(session, _)| *session);
        let ids = |requests: Vec<Request>| requests.iter().map(|r| r.id).collect();
        let seen = seen
            .into_iter()
            .map(|(from, requests)| (from, ids(requests)));
        (replies, seen.collect())
    }

    /// What every session of `count` should get: the value of its own key.
    fn own_keys(count: usize) -> Vec<(usize, Reply)> {
        (0..count)
            .map(|k| {
                let key = format!("key-{k}").into_bytes();
                (k, Reply::Read(Answer::Value(Some(key))))
            })
            .collect()
    }

    /// Shared: the four requests ready at one turn leave in one datagram; the node's answers,
    /// in one datagram in another order and with a stranger's among them, reach their sessions.
    #[test]
    fn shared_sessions_batch_their_requests_and_each_gets_its_own_answer() {
        let options = ClientOptions::default();
        let (replies, seen) = gets_against_stand_in(4, Sockets::Shared, &options, |requests| {
            let stranger = Response {
                id: u64::MAX,
                body: ResponseBody::Error {
                    message: "not an answer to this client".into(),
                },
            };
            let answers = requests.iter().rev().map(|r| echo_key(r, r.id));
            Some(Wire::Responses(
                std::iter::once(stranger).chain(answers).collect(),
            ))
        });
        assert_eq!(replies, own_keys(4));
        assert_eq!(seen.len(), 1, "one datagram: {seen:?}");
        assert_eq!(seen[0].1, vec![0, 1, 2, 3], "session k's first id is k");
    }

    /// PerClient: each session sends its request alone, from its own socket.
    #[test]
    fn per_client_sessions_send_alone_from_their_own_sockets() {
        let options = ClientOptions::default();
        let (replies, seen) = gets_against_stand_in(3, Sockets::PerClient, &options, |requests| {
            let [request] = requests else {
                panic!("batched: {requests:?}");
            };
            Some(Wire::Response(echo_key(request, request.id)))
        });
        assert_eq!(replies, own_keys(3));
        let senders: std::collections::BTreeSet<SocketAddr> =
            seen.iter().map(|(from, _)| *from).collect();
        assert_eq!((seen.len(), senders.len()), (3, 3), "{seen:?}");
    }

    /// Shared: the first datagram is lost; each session's retry is answered with the answer to
    /// its first attempt, which each accepts as its own while the other's is still pending.
    #[test]
    fn answers_to_earlier_attempts_reach_their_sessions_on_a_shared_socket() {
        let options = ClientOptions {
            attempt_timeout: Duration::from_millis(20),
            ..ClientOptions::default()
        };
        let mut first = true;
        let (replies, seen) = gets_against_stand_in(2, Sockets::Shared, &options, |requests| {
            if std::mem::replace(&mut first, false) {
                return None;
            }
            // Two sessions: a session's attempt before id `r` is `r - 2`.
            let answers = requests.iter().map(|r| echo_key(r, r.id - 2)).collect();
            Some(Wire::Responses(answers))
        });
        assert_eq!(replies, own_keys(2));
        assert_eq!(seen[0].1, vec![0, 1], "{seen:?}");
        assert!(seen.len() >= 2, "{seen:?}");
    }

    /// What `next` returns starts at once, on the session whose operation ended; one refused at
    /// its start comes back to `next` as ended with the refusal.
    #[test]
    fn a_turn_starts_what_next_returns_and_hands_back_a_refused_start() {
        let node = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let address = node.local_addr().unwrap();
        let options = ClientOptions::default();
        let mut mux = Multiplexer::new(&[address], &options, 1, Sockets::PerClient).unwrap();
        let oversized = "k".repeat(crate::kv::MAX_KEY_LEN + 1);
        // Taken from the end: key-1, then a key over the limit, then key-2.
        let mut plan = vec![get("key-2"), get(&oversized), get("key-1")];
        let mut ended = Vec::new();
        let seen = std::thread::scope(|scope| {
            let fake = scope.spawn(|| {
                stand_in::serve(&node, |requests| {
                    Some(Wire::Response(echo_key(&requests[0], requests[0].id)))
                })
            });
            mux.start(0, get("key-0")).unwrap();
            while mux.is_busy() {
                mux.turn(&mut |Finished { session, completed }| {
                    assert_eq!(session, 0);
                    ended.push(completed.result);
                    plan.pop()
                })
                .unwrap();
            }
            stand_in::stop(address);
            fake.join().unwrap()
        });
        let value = |key: &str| Reply::Read(Answer::Value(Some(key.as_bytes().to_vec())));
        assert_eq!(ended.len(), 4, "{ended:?}");
        assert_eq!(ended[0].as_ref().unwrap(), &value("key-0"));
        assert_eq!(ended[1].as_ref().unwrap(), &value("key-1"));
        assert!(
            matches!(ended[2], Err(ClientError::OverLimit(_))),
            "{ended:?}"
        );
        assert_eq!(ended[3].as_ref().unwrap(), &value("key-2"));
        assert_eq!(seen.len(), 3, "the refused one never left");
    }

    #[test]
    fn no_sessions_or_a_limit_the_codec_refuses_is_a_configuration_error() {
        let endpoint: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let options = ClientOptions::default();
        let none = Multiplexer::new(&[endpoint], &options, 0, Sockets::Shared);
        assert!(matches!(none, Err(ClientError::Config { .. })));
        let tiny = ClientOptions {
            datagram_limit: 1,
            ..ClientOptions::default()
        };
        let refused = Multiplexer::new(&[endpoint], &tiny, 1, Sockets::PerClient);
        assert!(
            matches!(&refused, Err(ClientError::Config { reason }) if reason.contains("datagram limit")),
            "{:?}",
            refused.err()
        );
    }
}
