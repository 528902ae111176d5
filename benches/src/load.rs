//! Closed-loop load against a running cluster: what `balsa bench` and the `commit_latency` bench
//! both drive.
//!
//! Each client has its own session (client id, sequence numbers) and its own UDP socket (unless
//! it shares its thread's, below), sends one write, waits for its answer, records the time and
//! sends the next: the classic closed loop, so the load adapts to the cluster and the latency of
//! one write is what a user would see.
//!
//! Clients are multiplexed, [`CLIENTS_PER_THREAD`] to a thread on one `mio` poll (as wrk or
//! memtier do with connections): with a thread per client, 64 clients spent more of a 2-core
//! machine on their own context switches than the cluster they measured. With
//! [`Sockets::Shared`] a thread's clients also share one socket: the writes they have ready after
//! a turn of the poll leave in one datagram per target (`Wire::Requests`) and the leader answers
//! them together (`Wire::Responses`), so a write no longer costs four system calls and a wake-up
//! on each side of its own; each client still has one write in flight and its own session. Every
//! client first runs its share of the warm-up writes; all of them then start the measured phase
//! together, and throughput is the measured writes over the time from that start until the last
//! client finished.
//!
//! A client follows the leader as a [`balsa::client::Client`] does: it starts at the first
//! endpoint, goes where a `NotLeader` answer points (or to the next endpoint, after the client's
//! first backoff, when no other node is named), and tries the next endpoint when an attempt goes
//! unanswered for the attempt timeout; every attempt of a write carries the same
//! `(client, seq)`, so a write is applied once. Latencies are recorded in microseconds into an
//! HDR histogram (1 µs to 60 s, 3 significant figures). A write still unanswered at the operation
//! timeout, or answered with anything but success, is counted as failed, not recorded; a client
//! stops after [`GIVE_UP_AFTER`] failures in a row.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use balsa::client::ClientOptions;
use balsa::kv::{Answer, Command, Op};
use balsa::runtime::wire::{
    MAX_REQUESTS_PER_DATAGRAM, Request, RequestBody, Response, ResponseBody, Wire,
};
use balsa_net::{CLIENT_ID, Codec, Kind};
use hdrhistogram::Histogram;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

/// Consecutive failed writes after which a client stops (the cluster is down, not slow).
pub const GIVE_UP_AFTER: u32 = 20;

/// Clients driven by one thread.
pub const CLIENTS_PER_THREAD: usize = 32;

/// Distinct keys per client: writes cycle over them, so the state stays small.
pub const KEYS_PER_CLIENT: u64 = 1024;

/// How clients reach the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sockets {
    /// A socket per client, one request per datagram: what separate client processes (or
    /// [`balsa::client::Client`]s) do.
    PerClient,
    /// The [`CLIENTS_PER_THREAD`] clients of a thread share one socket, and the writes they
    /// have ready at one moment leave in one datagram (`Wire::Requests`), as a client library
    /// multiplexing many sessions on one connection does; a node answers them together
    /// (`Wire::Responses`). Each client is still a closed loop with one write in flight.
    Shared,
}

/// What load to run.
#[derive(Clone, Debug)]
pub struct Load {
    /// The nodes to talk to (any of them; clients find the leader).
    pub endpoints: Vec<SocketAddr>,
    /// Concurrent closed-loop clients (≥ 1).
    pub clients: usize,
    /// Measured writes, over all clients.
    pub ops: u64,
    /// Bytes per value.
    pub value_size: usize,
    /// Untimed writes before the measured ones, over all clients.
    pub warmup: u64,
    /// How each client waits and retries.
    pub options: ClientOptions,
    /// A socket per client, or one per thread shared by its clients.
    pub sockets: Sockets,
}

/// What a load run measured.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Writes measured (answered).
    pub ops: u64,
    /// Clients that ran.
    pub clients: usize,
    /// From the start of the measured phase until the last client finished.
    pub elapsed: Duration,
    /// Latency of each measured write, in microseconds.
    pub latency_us: Histogram<u64>,
    /// Writes that failed (warm-up included).
    pub errors: u64,
    /// The first failure, for the user.
    pub first_error: Option<String>,
}

impl Outcome {
    /// Measured writes per second.
    #[must_use]
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The latency at `quantile` (0.0–1.0), in microseconds.
    #[must_use]
    pub fn us_at(&self, quantile: f64) -> u64 {
        self.latency_us.value_at_quantile(quantile)
    }

    /// One JSON object: `ops`, `clients`, `ops_per_sec`, `p50_us`, `p90_us`, `p99_us`,
    /// `p999_us`, `max_us`, `errors`.
    #[must_use]
    pub fn to_json(&self) -> String {
        format!(
            "{{\"ops\":{},\"clients\":{},\"ops_per_sec\":{:.1},\"p50_us\":{},\"p90_us\":{},\
             \"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"errors\":{}}}",
            self.ops,
            self.clients,
            self.ops_per_sec(),
            self.us_at(0.50),
            self.us_at(0.90),
            self.us_at(0.99),
            self.us_at(0.999),
            self.latency_us.max(),
            self.errors,
        )
    }
}

/// An empty histogram of microseconds, 1 µs to 60 s, three significant figures.
#[must_use]
fn new_us_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant bounds are valid")
}

/// Runs `load`; calls `progress(measured_done, measured_total)` about once a second while the
/// measured phase runs.
///
/// # Errors
/// If `load` asks for no clients, has no endpoints or endpoints of both address families, or a
/// client's socket cannot be set up.
pub fn run(load: &Load, progress: &mut dyn FnMut(u64, u64)) -> Result<Outcome, String> {
    if load.clients == 0 || load.endpoints.is_empty() {
        return Err("at least one client and one endpoint are needed".into());
    }
    // Where every socket binds, as a `Client`'s would.
    let bind = balsa::client::bind_address(&load.endpoints).map_err(|e| e.to_string())?;
    let share = |total: u64, k: usize| {
        let clients = load.clients as u64;
        total / clients + u64::from((k as u64) < total % clients)
    };
    let mut groups: Vec<Vec<Conn>> = Vec::new();
    for k in 0..load.clients {
        if k % CLIENTS_PER_THREAD == 0 {
            groups.push(Vec::new());
        }
        let conn = Conn::new(k, load, bind, share(load.warmup, k), share(load.ops, k))?;
        groups.last_mut().expect("pushed above").push(conn);
    }
    let value = vec![b'v'; load.value_size];
    let done = AtomicU64::new(0);
    // Each worker says when its measured phase ended (or that it failed: dropped unsent).
    let (finished, finishes) = crossbeam_channel::unbounded::<Instant>();
    let start_line = Barrier::new(groups.len() + 1);
    let merged = Mutex::new((new_us_histogram(), 0_u64, None::<String>));
    let elapsed = std::thread::scope(|scope| -> Result<Duration, String> {
        let mut workers = Vec::new();
        for conns in groups {
            let (value, done, finished) = (&value, &done, finished.clone());
            let (start_line, merged) = (&start_line, &merged);
            workers.push(scope.spawn(move || -> Result<(), String> {
                // A worker that fails to set up or warm up still reaches the start line: the
                // others and the timer wait there for every worker.
                let warmed = Driver::new(conns, load, value, bind)
                    .and_then(|mut driver| driver.run_phase(None).map(|()| driver));
                start_line.wait();
                let mut driver = warmed?;
                driver.run_phase(Some(done))?;
                let _ = finished.send(Instant::now());
                let mut merged = merged.lock().expect("no worker panics holding the lock");
                merged.0.add(&driver.latency_us).expect("same bounds");
                merged.1 += driver.errors;
                if merged.2.is_none() {
                    merged.2 = driver.first_error.take();
                }
                Ok(())
            }));
        }
        drop(finished);
        start_line.wait();
        let start = Instant::now();
        let mut last_end = start;
        // Until every worker ended (its end time arrived, or it dropped its sender failing).
        loop {
            match finishes.recv_timeout(Duration::from_secs(1)) {
                Ok(end) => last_end = last_end.max(end),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    progress(done.load(Ordering::Relaxed), load.ops);
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
        }
        let elapsed = last_end.duration_since(start);
        for worker in workers {
            worker
                .join()
                .map_err(|_| "a load thread panicked".to_owned())??;
        }
        Ok(elapsed)
    })?;
    let (latency_us, errors, first_error) = merged.into_inner().expect("every client finished");
    Ok(Outcome {
        ops: latency_us.len(),
        clients: load.clients,
        elapsed,
        latency_us,
        errors,
        first_error,
    })
}

/// One closed-loop client: its session, its socket (unless it shares its thread's), the write
/// in flight.
struct Conn {
    socket: Option<UdpSocket>,
    /// Its position among all clients (its keys are `bench-<index>-<n>`).
    index: usize,
    client_id: u64,
    /// The sequence number of the write in flight (or the last one): also how many writes it
    /// started, each of which ended before the next began.
    seq: u64,
    /// Writes left in the warm-up and in the measured phase.
    warmup_left: u64,
    measured_left: u64,
    /// The endpoint the next attempt goes to.
    target: SocketAddr,
    /// The write in flight, encoded once: every attempt sends the same `(client, seq)`.
    command: Vec<u8>,
    /// The id of this client's next attempt. A thread's clients number their attempts apart:
    /// the client in slot `s` uses `s`, `s + CLIENTS_PER_THREAD`, `s + 2 × CLIENTS_PER_THREAD`…,
    /// so on a shared socket an answer's id says whose attempt it answers.
    next_request: u64,
    /// This client's attempts of the write in flight are its ids from `first_request` to
    /// `last_request`; an answer to any of them is the write's (they all carry the same
    /// `(client, seq)`).
    first_request: u64,
    last_request: u64,
    /// When the write in flight started, and when its current attempt gives up.
    started: Option<Instant>,
    attempt_deadline: Instant,
    failures_in_a_row: u32,
}

impl Conn {
    fn new(
        index: usize,
        load: &Load,
        bind: SocketAddr,
        warmup: u64,
        measured: u64,
    ) -> Result<Conn, String> {
        let socket = match load.sockets {
            Sockets::PerClient => Some(bind_client_socket(bind)?),
            Sockets::Shared => None,
        };
        Ok(Conn {
            socket,
            index,
            client_id: balsa::client::random_client_id(),
            seq: 0,
            warmup_left: warmup,
            measured_left: measured,
            target: load.endpoints[0],
            command: Vec::new(),
            next_request: 0, // numbered from its slot by `Driver::new`
            first_request: 0,
            last_request: 0,
            started: None,
            attempt_deadline: Instant::now(),
            failures_in_a_row: 0,
        })
    }

    fn left(&self, measuring: bool) -> u64 {
        if measuring {
            self.measured_left
        } else {
            self.warmup_left
        }
    }
}

/// A client socket bound to `bind` ([`balsa::client::bind_address`]).
fn bind_client_socket(bind: SocketAddr) -> Result<UdpSocket, String> {
    UdpSocket::bind(bind).map_err(|e| format!("binding a client socket: {e}"))
}

/// The poll token of a thread's shared socket (a client's own socket has its slot's).
const SHARED: Token = Token(usize::MAX);

/// How far apart one client's request ids are: see [`Conn::next_request`].
const REQUEST_ID_STRIDE: u64 = CLIENTS_PER_THREAD as u64;

/// One thread's clients on one poll.
struct Driver<'a> {
    /// At most [`CLIENTS_PER_THREAD`]; a client's position here is its slot.
    conns: Vec<Conn>,
    /// With [`Sockets::Shared`]: the socket, and the attempts not yet sent (they leave together
    /// after each turn, grouped by target).
    shared: Option<UdpSocket>,
    outgoing: Vec<(SocketAddr, Request)>,
    poll: Poll,
    codec: Codec,
    load: &'a Load,
    value: &'a [u8],
    buffer: Vec<u8>,
    latency_us: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl<'a> Driver<'a> {
    fn new(
        mut conns: Vec<Conn>,
        load: &'a Load,
        value: &'a [u8],
        bind: SocketAddr,
    ) -> Result<Driver<'a>, String> {
        let poll = Poll::new().map_err(|e| format!("creating a poll: {e}"))?;
        let register = |socket: &mut UdpSocket, token| {
            poll.registry()
                .register(socket, token, Interest::READABLE)
                .map_err(|e| format!("registering a client socket: {e}"))
        };
        for (slot, conn) in conns.iter_mut().enumerate() {
            conn.next_request = slot as u64;
            if let Some(socket) = &mut conn.socket {
                register(socket, Token(slot))?;
            }
        }
        let mut shared = match load.sockets {
            Sockets::PerClient => None,
            Sockets::Shared => Some(bind_client_socket(bind)?),
        };
        if let Some(socket) = &mut shared {
            register(socket, SHARED)?;
        }
        let codec = Codec::new(
            load.options.cluster_id,
            CLIENT_ID,
            load.options.datagram_limit,
        )
        .map_err(|e| e.to_string())?;
        Ok(Driver {
            conns,
            shared,
            outgoing: Vec::new(),
            poll,
            codec,
            load,
            value,
            buffer: vec![0; load.options.datagram_limit + 1],
            latency_us: new_us_histogram(),
            errors: 0,
            first_error: None,
        })
    }

    /// Runs every client's writes of one phase (measured when `done` is given) to the end.
    fn run_phase(&mut self, done: Option<&AtomicU64>) -> Result<(), String> {
        let measuring = done.is_some();
        for slot in 0..self.conns.len() {
            self.next_write(slot, measuring)?;
        }
        self.send_outgoing()?;
        let mut events = Events::with_capacity(CLIENTS_PER_THREAD);
        while let Some(wake_at) = self.next_deadline() {
            let wait = wake_at.saturating_duration_since(Instant::now());
            self.poll
                .poll(&mut events, Some(wait))
                .map_err(|e| format!("polling: {e}"))?;
            for event in &events {
                self.receive(event.token(), done)?;
            }
            let now = Instant::now();
            for slot in 0..self.conns.len() {
                let conn = &self.conns[slot];
                let Some(started) = conn.started else {
                    continue;
                };
                if now.duration_since(started) >= self.load.options.timeout {
                    self.fail(
                        slot,
                        "no answer within the operation timeout".into(),
                        measuring,
                    )?;
                } else if now >= conn.attempt_deadline {
                    self.retarget(slot, None);
                    self.send(slot)?;
                }
            }
            self.send_outgoing()?;
        }
        Ok(())
    }

    /// The first moment a client must act if no answer comes: its attempt or its whole write
    /// times out. `None` once no client has a write in flight.
    fn next_deadline(&self) -> Option<Instant> {
        let timeout = self.load.options.timeout;
        self.conns
            .iter()
            .filter_map(|conn| Some(conn.attempt_deadline.min(conn.started? + timeout)))
            .min()
    }

    /// Starts the client's next write of this phase, if it has one left.
    fn next_write(&mut self, slot: usize, measuring: bool) -> Result<(), String> {
        let conn = &mut self.conns[slot];
        conn.started = None;
        if conn.left(measuring) == 0 || conn.failures_in_a_row >= GIVE_UP_AFTER {
            return Ok(());
        }
        if measuring {
            conn.measured_left -= 1;
        } else {
            conn.warmup_left -= 1;
        }
        // Keys cycle with the writes started before this one.
        let key = format!("bench-{}-{}", conn.index, conn.seq % KEYS_PER_CLIENT);
        conn.seq += 1;
        conn.command = Command {
            client_id: conn.client_id,
            seq: conn.seq,
            op: Op::Put {
                key: key.into_bytes(),
                value: self.value.to_vec(),
            },
        }
        .encode();
        conn.started = Some(Instant::now());
        conn.first_request = conn.next_request;
        self.send(slot)
    }

    /// Sends the write in flight (again), as a new attempt with a new request id.
    fn send(&mut self, slot: usize) -> Result<(), String> {
        let conn = &mut self.conns[slot];
        let id = conn.next_request;
        conn.next_request += REQUEST_ID_STRIDE;
        conn.last_request = id;
        conn.attempt_deadline = Instant::now() + self.load.options.attempt_timeout;
        let request = Request {
            id,
            body: RequestBody::Command {
                data: conn.command.clone(),
            },
        };
        let Some(socket) = &conn.socket else {
            self.outgoing.push((conn.target, request));
            return Ok(());
        };
        let datagram = self
            .codec
            .encode(Kind::Request, &Wire::Request(request))
            .map_err(|e| format!("encoding a write: {e}"))?;
        // A send that fails (a full socket buffer) is an attempt lost: the timeout resends.
        let _ = socket.send_to(datagram, conn.target);
        Ok(())
    }

    /// Sends the attempts gathered for the shared socket: per target, as few datagrams as fit.
    fn send_outgoing(&mut self) -> Result<(), String> {
        if self.outgoing.is_empty() {
            return Ok(());
        }
        // Taken for the loop and put back empty, so one buffer serves every turn.
        let mut outgoing = std::mem::take(&mut self.outgoing);
        outgoing.sort_by_key(|(target, _)| *target); // stable
        let mut sorted = outgoing.drain(..).peekable();
        while let Some((target, first)) = sorted.next() {
            let mut group = vec![first];
            while let Some((_, request)) = sorted.next_if(|(to, _)| *to == target) {
                group.push(request);
            }
            while group.len() > MAX_REQUESTS_PER_DATAGRAM {
                let rest = group.split_off(MAX_REQUESTS_PER_DATAGRAM);
                self.send_requests(target, std::mem::replace(&mut group, rest))?;
            }
            self.send_requests(target, group)?;
        }
        drop(sorted);
        self.outgoing = outgoing;
        Ok(())
    }

    /// Sends `part` to `target` on the shared socket, halved until each half fits a datagram.
    fn send_requests(&mut self, target: SocketAddr, mut part: Vec<Request>) -> Result<(), String> {
        let wire = match part.len() {
            0 => return Ok(()),
            1 => Wire::Request(part.pop().expect("one request")),
            _ => Wire::Requests(part),
        };
        let datagram = match (self.codec.encode(Kind::Request, &wire), wire) {
            (Ok(datagram), _) => datagram,
            (Err(balsa_net::Error::TooLarge { .. }), Wire::Requests(mut part)) => {
                let second = part.split_off(part.len() / 2);
                self.send_requests(target, part)?;
                return self.send_requests(target, second);
            }
            (Err(e), _) => return Err(format!("encoding a write: {e}")),
        };
        let socket = self
            .shared
            .as_ref()
            .expect("only the shared mode gathers attempts");
        // A send that fails (a full socket buffer) loses these attempts: their timeouts resend.
        let _ = socket.send_to(datagram, target);
        Ok(())
    }

    /// Takes every datagram waiting on the socket of `token` (a client's own, or the thread's
    /// shared one); each answer goes to the client whose attempt it answers. Several answers for
    /// one socket in one turn of a node (the clients sharing it, or a retry's answer beside the
    /// original's) arrive together, as `Responses`.
    fn receive(&mut self, token: Token, done: Option<&AtomicU64>) -> Result<(), String> {
        loop {
            let socket = if token == SHARED {
                self.shared.as_ref()
            } else {
                self.conns[token.0].socket.as_ref()
            };
            let socket = socket.expect("a token names a socket this driver registered");
            let (len, from) = match socket.recv_from(&mut self.buffer) {
                Ok(received) => received,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                // An ICMP "port unreachable" from an earlier send (that node is down, which the
                // attempt timeout handles), or a signal: as `Client` does, read on. Anything else
                // would come back at every read.
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::ConnectionRefused
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue;
                }
                Err(error) => return Err(format!("receiving: {error}")),
            };
            match self.codec.decode::<Wire>(&self.buffer[..len]) {
                Ok((header, Wire::Response(response))) if header.kind == Kind::Response => {
                    self.deliver(token, response, from, done)?;
                }
                Ok((header, Wire::Responses(responses))) if header.kind == Kind::Response => {
                    for response in responses {
                        self.deliver(token, response, from, done)?;
                    }
                }
                _ => {} // not an answer of this cluster
            }
        }
    }

    /// Gives `response`, received from `from` on `token`'s socket, to the client whose write in
    /// flight it answers, if any.
    fn deliver(
        &mut self,
        token: Token,
        response: Response,
        from: SocketAddr,
        done: Option<&AtomicU64>,
    ) -> Result<(), String> {
        let Some(slot) = self.answered_slot(token, response.id) else {
            return Ok(()); // a late answer to an earlier write, or a duplicate
        };
        let current = response.id == self.conns[slot].last_request;
        self.answer(slot, response.body, from, current, done)
    }

    /// The client whose write in flight request `id`, received on `token`'s socket, answers.
    fn answered_slot(&self, token: Token, id: u64) -> Option<usize> {
        let slot = if token == SHARED {
            usize::try_from(id % REQUEST_ID_STRIDE).ok()?
        } else {
            token.0
        };
        // `id` is one of this client's (its own socket, or the slot the id names); from its
        // first attempt of the write in flight to its last, it is one of them.
        let conn = self.conns.get(slot)?;
        let ours = conn.started.is_some() && (conn.first_request..=conn.last_request).contains(&id);
        ours.then_some(slot)
    }

    fn answer(
        &mut self,
        slot: usize,
        body: ResponseBody,
        from: SocketAddr,
        current: bool,
        done: Option<&AtomicU64>,
    ) -> Result<(), String> {
        let measuring = done.is_some();
        match body {
            ResponseBody::Applied { data } => match Answer::decode(&data) {
                Ok(Answer::Ok) => {
                    let conn = &mut self.conns[slot];
                    conn.target = from; // the leader answers applied writes itself
                    conn.failures_in_a_row = 0;
                    if let (Some(done), Some(started)) = (done, conn.started) {
                        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                        self.latency_us.saturating_record(us.max(1));
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    self.next_write(slot, measuring)
                }
                other => self.fail(slot, format!("the write was answered {other:?}"), measuring),
            },
            ResponseBody::NotLeader { address, .. } => {
                let conn = &self.conns[slot];
                match address.filter(|leader| *leader != conn.target) {
                    Some(leader) if current => {
                        self.retarget(slot, Some(leader));
                        self.send(slot)?;
                    }
                    // Nobody else is known to lead (an election, or a transfer away from the
                    // node that answered): pause, then the attempt's expiry moves on to the
                    // next endpoint, as `Client` does.
                    _ if current => {
                        self.conns[slot].attempt_deadline =
                            Instant::now() + self.load.options.backoff_start;
                    }
                    _ => {}
                }
                Ok(())
            }
            other => self.fail(slot, format!("the write was answered {other:?}"), measuring),
        }
    }

    /// Points the client at `leader`, or at the endpoint after its current target.
    fn retarget(&mut self, slot: usize, leader: Option<SocketAddr>) {
        let endpoints = &self.load.endpoints;
        let conn = &mut self.conns[slot];
        conn.target = leader.unwrap_or_else(|| {
            let at = endpoints.iter().position(|e| *e == conn.target);
            endpoints[at.map_or(0, |at| (at + 1) % endpoints.len())]
        });
    }

    fn fail(&mut self, slot: usize, reason: String, measuring: bool) -> Result<(), String> {
        self.errors += 1;
        self.first_error.get_or_insert(reason);
        let conn = &mut self.conns[slot];
        conn.failures_in_a_row += 1;
        self.next_write(slot, measuring)
    }
}

/// Writes `hist` (microseconds) as HdrHistogram's percentile distribution text (the `.hgrm`
/// format of `outputPercentileDistribution`, five ticks per half distance, values in µs), which
/// the HdrHistogram plotter reads.
///
/// # Errors
/// Any write error.
pub fn write_hgrm(hist: &Histogram<u64>, out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    let mut total = 0_u64;
    for step in hist.iter_quantiles(5) {
        total += step.count_since_last_iteration();
        let quantile = step.quantile_iterated_to();
        let value = step.value_iterated_to() as f64;
        if quantile < 1.0 {
            writeln!(
                out,
                "{value:>12.3} {quantile:>2.12} {total:>10} {:>14.2}",
                1.0 / (1.0 - quantile)
            )?;
        } else {
            writeln!(out, "{value:>12.3} {quantile:>2.12} {total:>10}")?;
        }
    }
    writeln!(
        out,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        hist.mean(),
        hist.stdev()
    )?;
    writeln!(
        out,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        hist.max() as f64,
        hist.len()
    )?;
    // As HdrHistogram computes it: the smallest power of two holding 2 × 10^significant figures.
    let sub_buckets = (2 * 10_u64.pow(u32::from(hist.sigfig()))).next_power_of_two();
    writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        hist.buckets(),
        sub_buckets
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hgrm_lists_percentiles_up_to_the_max_and_the_totals() {
        let mut hist = new_us_histogram();
        for us in 1..=1000 {
            hist.record(us).expect("in range");
        }
        let mut text = Vec::new();
        write_hgrm(&hist, &mut text).expect("writing to memory");
        let text = String::from_utf8(text).expect("ascii");
        let rows: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with(' ') && !line.contains("Value"))
            .collect();
        let last = rows.last().expect("rows");
        assert!(last.contains("1.000000000000"), "{last}");
        assert!(last.trim_end().ends_with("1000"), "{last}");
        assert!(text.contains("Total count    =         1000]"), "{text}");
        assert!(text.contains("SubBuckets     =         2048]"), "{text}");
        assert!(rows.len() > 20, "{} rows", rows.len());
    }

    /// A stand-in leader on its own socket until `stop`: answers every write, alone or batched,
    /// with one `Responses` datagram, an answer to nobody's request first.
    fn batching_node(socket: &std::net::UdpSocket, stop: &std::sync::atomic::AtomicBool) {
        let mut codec = Codec::new(1, 1, balsa_net::DEFAULT_DATAGRAM_LIMIT).unwrap();
        let mut buffer = vec![0; balsa_net::DEFAULT_DATAGRAM_LIMIT + 1];
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        while !stop.load(Ordering::Relaxed) {
            let Ok((len, from)) = socket.recv_from(&mut buffer) else {
                continue;
            };
            let requests = match codec.decode::<Wire>(&buffer[..len]).unwrap() {
                (_, Wire::Request(one)) => vec![one],
                (_, Wire::Requests(all)) => all,
                (_, other) => panic!("not a request: {other:?}"),
            };
            let nobodys = Response {
                id: u64::MAX,
                body: ResponseBody::Error {
                    message: "not an answer to this client".into(),
                },
            };
            let answers = requests.iter().map(|request| Response {
                id: request.id,
                body: ResponseBody::Applied {
                    data: Answer::Ok.encode(),
                },
            });
            let responses = Wire::Responses(std::iter::once(nobodys).chain(answers).collect());
            let datagram = codec.encode(Kind::Response, &responses).unwrap();
            socket.send_to(datagram, from).unwrap();
        }
    }

    /// Either way of using sockets, a load client takes its answer out of a `Responses`
    /// datagram (a node sends one whenever a turn has several answers for one address).
    #[test]
    fn answers_batched_in_one_datagram_reach_their_clients() {
        for sockets in [Sockets::PerClient, Sockets::Shared] {
            let node = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let stop = std::sync::atomic::AtomicBool::new(false);
            let load = Load {
                endpoints: vec![node.local_addr().unwrap()],
                clients: 2,
                ops: 4,
                value_size: 8,
                warmup: 0,
                options: ClientOptions::default(),
                sockets,
            };
            let outcome = std::thread::scope(|scope| {
                scope.spawn(|| batching_node(&node, &stop));
                let outcome = run(&load, &mut |_, _| {});
                stop.store(true, Ordering::Relaxed);
                outcome
            })
            .unwrap();
            assert_eq!(
                (outcome.ops, outcome.errors, outcome.first_error),
                (4, 0, None),
                "{sockets:?}"
            );
        }
    }

    /// A load thread that cannot set up (here: a datagram limit the codec refuses) fails the run
    /// rather than leaving the others waiting for it at the start line.
    #[test]
    fn a_thread_failing_to_set_up_fails_the_run() {
        let node = std::net::UdpSocket::bind("127.0.0.1:0").unwrap(); // never answers
        let load = Load {
            endpoints: vec![node.local_addr().unwrap()],
            clients: CLIENTS_PER_THREAD + 1,
            ops: 1,
            value_size: 8,
            warmup: 0,
            options: ClientOptions {
                datagram_limit: 1,
                ..ClientOptions::default()
            },
            sockets: Sockets::Shared,
        };
        let error = run(&load, &mut |_, _| {}).unwrap_err();
        assert!(error.contains("datagram limit"), "{error}");
    }

    /// Endpoints of both address families are refused, as `Client` refuses them: no socket
    /// could reach them all.
    #[test]
    fn endpoints_of_both_families_are_refused() {
        let load = Load {
            endpoints: vec![
                "127.0.0.1:7001".parse().unwrap(),
                "[::1]:7002".parse().unwrap(),
            ],
            clients: 1,
            ops: 1,
            value_size: 8,
            warmup: 0,
            options: ClientOptions::default(),
            sockets: Sockets::PerClient,
        };
        let error = run(&load, &mut |_, _| {}).unwrap_err();
        assert!(error.contains("mix IPv4 and IPv6"), "{error}");
    }

    /// On a shared socket, a client that had to retry its write has attempts on both sides of
    /// another client's: when its write is answered, the other's attempt is still the other's.
    #[test]
    fn a_retried_write_leaves_other_clients_attempts_theirs() {
        let node = std::net::UdpSocket::bind("127.0.0.1:0").unwrap(); // never answers
        let load = Load {
            endpoints: vec![node.local_addr().unwrap()],
            clients: 2,
            ops: 0,
            value_size: 8,
            warmup: 2,
            options: ClientOptions::default(),
            sockets: Sockets::Shared,
        };
        let bind = balsa::client::bind_address(&load.endpoints).unwrap();
        let conns = (0..2)
            .map(|k| Conn::new(k, &load, bind, 1, 0).unwrap())
            .collect();
        let value = vec![b'v'; load.value_size];
        let mut driver = Driver::new(conns, &load, &value, bind).unwrap();
        driver.next_write(0, false).unwrap();
        driver.next_write(1, false).unwrap();
        driver.send(0).unwrap(); // client 0 retries, after client 1's attempt
        let (retry, other) = (driver.conns[0].last_request, driver.conns[1].last_request);
        assert_eq!(driver.answered_slot(SHARED, retry), Some(0));
        assert_eq!(driver.answered_slot(SHARED, other), Some(1));
        let applied = ResponseBody::Applied {
            data: Answer::Ok.encode(),
        };
        driver
            .answer(0, applied, load.endpoints[0], true, None)
            .unwrap();
        assert_eq!(
            driver.conns[0].started, None,
            "client 0 wrote its one write"
        );
        assert_eq!(
            driver.answered_slot(SHARED, retry),
            None,
            "answered already"
        );
        assert_eq!(driver.answered_slot(SHARED, other), Some(1));
    }

    #[test]
    fn json_names_every_key_the_issue_lists() {
        let mut latency_us = new_us_histogram();
        latency_us.record(250).expect("in range");
        let outcome = Outcome {
            ops: 1,
            clients: 1,
            elapsed: Duration::from_millis(500),
            latency_us,
            errors: 0,
            first_error: None,
        };
        let json = outcome.to_json();
        for key in [
            "ops",
            "clients",
            "ops_per_sec",
            "p50_us",
            "p90_us",
            "p99_us",
            "p999_us",
            "max_us",
        ] {
            assert!(json.contains(&format!("\"{key}\":")), "{key} in {json}");
        }
        assert!(json.contains("\"ops_per_sec\":2.0"), "{json}");
    }
}
