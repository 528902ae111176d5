//! Closed-loop load against a running cluster: what `balsa bench`, `balsa check perf` and the
//! `commit_latency` benchmark drive.
//!
//! Each client is a [`Session`](super::Session) (its own client id and seqs, the protocol of
//! every other client of this crate) that sends one operation, waits for its end, records the
//! time and sends the next: the classic closed loop, so the load adapts to the cluster and the
//! latency of one operation is what a user would see.
//!
//! Clients are multiplexed, [`CLIENTS_PER_THREAD`] to a thread on one
//! [`Multiplexer`] (as wrk or memtier do with connections): with a thread per client, 64
//! clients spent more of a 2-core machine on their own context switches than the cluster they
//! measured. With [`Sockets::Shared`] a thread's clients also share one socket: the operations
//! they have ready after a turn leave in one datagram per node and the leader answers them
//! together, so an operation no longer costs four system calls and a wake-up on each side of
//! its own; each client still has one operation in flight. With [`Sockets::PerClient`] each has
//! a socket of its own. Every client first runs its share of the warm-up (always writes); all
//! of them then start the measured phase together, and throughput is the measured operations
//! over the time from that start until the last client finished. The measured phase ends when
//! [`Load::ops`] operations were started or, if [`Load::duration`] is set, once it has lasted
//! that long (no client starts an operation after that; those in flight finish and count).
//!
//! # Workloads
//!
//! [`Workload`] says what the measured operations are: writes (`Put`), linearizable reads
//! (`Get`, through the leader's ReadIndex, as `Client::get(key, false)`), stale reads
//! (`GetStale`, answered at once from the state of the node asked, as `Client::get(key, true)`;
//! the session asks the node it believes leads, the one that answered its writes), or both
//! (`Mixed`, its reads linearizable). The choice is deterministic, so the counts are known in
//! advance: in a mixed workload with a read share of `R` (in millionths), a client's `n`-th
//! measured operation (from 0) is a read when `⌊(n+1)·R⌋ > ⌊n·R⌋`, so `⌊m·R⌋` of its `m`
//! operations are reads, spread evenly among its writes.
//!
//! **Reads read keys that exist.** Client `c`'s `n`-th write (from 0, warm-up included) sets
//! `bench-c-(n mod KEYS_PER_CLIENT)`, and its `r`-th read gets `bench-c-(r mod k)` where `k` is
//! the number of distinct keys it has written so far: each was written by a write that ended
//! before the read began. In a workload with reads every client's warm-up is at least one write,
//! so that it has a key to read. A read answered "absent" (possible only after a failed write)
//! is counted in [`Outcome::read_misses`].
//!
//! # What is returned
//!
//! Each measured operation's latency, and when it ended, are returned raw, per kind
//! ([`Outcome::writes`], [`Outcome::reads`]): this crate keeps no histogram; its users build the
//! distributions they print. An operation that ends in an error (unavailable, outcome unknown,
//! refused) or with an answer other than its kind's success is counted as failed, not recorded;
//! a client stops after [`GIVE_UP_AFTER`] failures in a row.
//!
//! # Stopping a run that cannot succeed
//!
//! The whole run stops — no client starts another operation, warm-up or measured — at the first
//! failure that says no node ever answered ([`ClientError::NoNodeAnswered`]: no cluster there),
//! or once [`STOP_AFTER`] operations failed in a row over all clients (no success between
//! them): a dead cluster costs one operation timeout, or a few, not one per operation.
//! [`Outcome::stopped`] says why. [`LoadProgress`], about once a second from the start (the
//! warm-up too), counts the failures so far and gives the first, so a user sees them as they
//! happen.
//!
//! This and the node's runtime are the crate's only code that starts threads (scoped: every one
//! has ended when [`run`] returns).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use super::multiplexer::{Finished, Multiplexer};
use super::session::{Completed, Operation, Reply};
use super::{ClientError, ClientOptions, clock};
use crate::kv::{Answer, Op, Query};

pub use super::multiplexer::Sockets;

/// Consecutive failed operations after which a client stops (the cluster is down, not slow).
pub const GIVE_UP_AFTER: u32 = 20;

/// Consecutive failed operations over all clients (no success between them) after which the
/// whole run stops: see the module doc.
pub const STOP_AFTER: u32 = 20;

/// Clients driven by one thread.
pub const CLIENTS_PER_THREAD: usize = 32;

/// Distinct keys per client: writes cycle over them, so the state stays small. Client `c`'s
/// `n`-th write (from 0, warm-up included) sets `bench-c-(n mod KEYS_PER_CLIENT)`.
pub const KEYS_PER_CLIENT: u64 = 1024;

/// A read share of one: [`Workload::Mixed`] counts its reads in millionths.
pub const MILLION: u32 = 1_000_000;

/// What the measured operations are (the warm-up is always writes). See the module doc.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Workload {
    /// Writes (puts) only.
    #[default]
    Put,
    /// Linearizable reads only, through the leader's ReadIndex.
    Get,
    /// Stale reads only: the node asked answers from its own state at once.
    GetStale,
    /// Writes and linearizable reads, `reads_per_million` of every million operations reads
    /// (at most [`MILLION`]).
    Mixed {
        /// The read share, in millionths.
        reads_per_million: u32,
    },
}

impl Workload {
    /// Whether client operation `n` (from 0) of the measured phase is a read.
    fn is_read(self, n: u64) -> bool {
        match self {
            Workload::Put => false,
            Workload::Get | Workload::GetStale => true,
            Workload::Mixed { reads_per_million } => {
                let share = u128::from(reads_per_million.min(MILLION));
                let n = u128::from(n);
                (n + 1) * share / u128::from(MILLION) > n * share / u128::from(MILLION)
            }
        }
    }

    /// Whether any measured operation may be a read.
    #[must_use]
    pub fn has_reads(self) -> bool {
        match self {
            Workload::Put => false,
            Workload::Get | Workload::GetStale => true,
            Workload::Mixed { reads_per_million } => reads_per_million > 0,
        }
    }

    /// Whether any measured operation may be a write.
    #[must_use]
    pub fn has_writes(self) -> bool {
        match self {
            Workload::Put => true,
            Workload::Get | Workload::GetStale => false,
            Workload::Mixed { reads_per_million } => reads_per_million < MILLION,
        }
    }

    /// How many of a client's first `ops` measured operations are reads.
    #[must_use]
    pub fn reads_among(self, ops: u64) -> u64 {
        match self {
            Workload::Put => 0,
            Workload::Get | Workload::GetStale => ops,
            Workload::Mixed { reads_per_million } => {
                let reads = u128::from(ops) * u128::from(reads_per_million.min(MILLION))
                    / u128::from(MILLION);
                // At most `ops`, so it fits.
                u64::try_from(reads).unwrap_or(ops)
            }
        }
    }
}

impl fmt::Display for Workload {
    /// `put`, `get`, `get-stale`, or `mixed:R` with `R` the read share as a decimal (`mixed:0.9`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Workload::Put => f.write_str("put"),
            Workload::Get => f.write_str("get"),
            Workload::GetStale => f.write_str("get-stale"),
            Workload::Mixed { reads_per_million } => {
                let share = reads_per_million.min(&MILLION);
                if *share == MILLION {
                    return f.write_str("mixed:1");
                }
                let digits = format!("{share:06}");
                let digits = digits.trim_end_matches('0');
                if digits.is_empty() {
                    f.write_str("mixed:0")
                } else {
                    write!(f, "mixed:0.{digits}")
                }
            }
        }
    }
}

/// What load to run.
#[derive(Clone, Debug)]
pub struct Load {
    /// The nodes to talk to (any of them; clients find the leader).
    pub endpoints: Vec<std::net::SocketAddr>,
    /// Concurrent closed-loop clients (≥ 1).
    pub clients: usize,
    /// Measured operations, over all clients (at most, with [`Load::duration`]).
    pub ops: u64,
    /// Bytes per value written.
    pub value_size: usize,
    /// Untimed writes before the measured operations, over all clients (in a workload with
    /// reads, at least one per client).
    pub warmup: u64,
    /// What the measured operations are.
    pub workload: Workload,
    /// If set, the measured phase also ends once it has lasted this long.
    pub duration: Option<Duration>,
    /// How each client waits and retries.
    pub options: ClientOptions,
    /// A socket per client, or one per thread shared by its clients.
    pub sockets: Sockets,
}

/// What one kind of measured operation (writes, or reads) gave.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Measured {
    /// Latency of each measured operation that succeeded, in microseconds (at least 1), in no
    /// particular order.
    pub latencies_us: Vec<u64>,
    /// When each of them ended, in microseconds since the measured phase started: position
    /// `k` is the operation of `latencies_us[k]`.
    pub ended_us: Vec<u64>,
    /// Operations of this kind that failed (the warm-up's writes included).
    pub errors: u64,
}

impl Measured {
    /// Measured operations that succeeded.
    #[must_use]
    pub fn ops(&self) -> u64 {
        self.latencies_us.len() as u64
    }
}

/// What a load run measured.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Clients that ran.
    pub clients: usize,
    /// From the start of the measured phase until the last client finished.
    pub elapsed: Duration,
    /// The measured writes (and every failed write, warm-up included).
    pub writes: Measured,
    /// The measured reads.
    pub reads: Measured,
    /// Reads answered that their key was absent (they are among [`Outcome::reads`]: they were
    /// answered).
    pub read_misses: u64,
    /// The first failure, for the user.
    pub first_error: Option<String>,
    /// Why the run stopped before its end, if it did (see the module doc).
    pub stopped: Option<String>,
}

/// How a run is going, handed to [`run`]'s `progress` about once a second.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadProgress {
    /// The warm-up is still running (nothing is measured yet).
    pub warming_up: bool,
    /// Measured operations that succeeded so far.
    pub done: u64,
    /// Measured operations asked for ([`Load::ops`]).
    pub total: u64,
    /// Operations that failed so far, the warm-up's included.
    pub failed: u64,
    /// The first failure, once there is one.
    pub first_error: Option<String>,
}

/// What every worker of a run shares while it runs: the counts a progress line shows, and
/// whether the run was stopped (see the module doc).
#[derive(Default)]
struct Live {
    done: AtomicU64,
    failed: AtomicU64,
    failing_in_a_row: AtomicU32,
    stop: AtomicBool,
    /// The first failure, and why the run stopped, once known.
    first_error: Mutex<Option<String>>,
    stopped: Mutex<Option<String>>,
}

impl Live {
    /// Counts a failure (`nobody_answered`: no node ever answered the client).
    fn failed(&self, reason: &str, nobody_answered: bool) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let in_a_row = self.failing_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        lock(&self.first_error).get_or_insert_with(|| reason.to_owned());
        let why = if nobody_answered {
            reason.to_owned()
        } else if in_a_row >= STOP_AFTER {
            format!("{STOP_AFTER} operations failed in a row; the last: {reason}")
        } else {
            return;
        };
        lock(&self.stopped).get_or_insert(why);
        self.stop.store(true, Ordering::Relaxed);
    }

    fn succeeded(&self) {
        self.failing_in_a_row.store(0, Ordering::Relaxed);
    }

    fn progress(&self, warming_up: bool, total: u64) -> LoadProgress {
        LoadProgress {
            warming_up,
            done: self.done.load(Ordering::Relaxed),
            total,
            failed: self.failed.load(Ordering::Relaxed),
            first_error: lock(&self.first_error).clone(),
        }
    }
}

/// The value behind `mutex`; a worker that panicked holding it is a broken invariant that
/// [`run`] re-raises anyway, so its value is taken as it is.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Outcome {
    /// Measured operations (writes and reads) per second.
    #[must_use]
    pub fn ops_per_sec(&self) -> f64 {
        (self.writes.ops() + self.reads.ops()) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Operations that failed, of both kinds (the warm-up's included).
    #[must_use]
    pub fn errors(&self) -> u64 {
        self.writes.errors + self.reads.errors
    }
}

/// Runs `load`; calls `progress` about once a second, from the warm-up on, with the counts so
/// far.
///
/// # Errors
/// [`ClientError::Config`] if `load` asks for no clients, has no endpoints or endpoints of both
/// address families, or options a client refuses; [`ClientError::Io`] if a client socket cannot
/// be set up or fails.
pub fn run(load: &Load, progress: &mut dyn FnMut(LoadProgress)) -> Result<Outcome, ClientError> {
    if load.clients == 0 {
        return Err(ClientError::Config {
            reason: "at least one client is needed".into(),
        });
    }
    let share = |total: u64, k: usize| {
        let clients = load.clients as u64;
        total / clients + u64::from((k as u64) < total % clients)
    };
    // A client of a workload with reads writes at least one key before it reads.
    let least_warmup = u64::from(load.workload.has_reads());
    let value = vec![b'v'; load.value_size];
    let live = Live::default();
    let mut workers = Vec::new();
    for first in (0..load.clients).step_by(CLIENTS_PER_THREAD) {
        let count = CLIENTS_PER_THREAD.min(load.clients - first);
        let clients = (first..first + count)
            .map(|index| LoadClient {
                index,
                warmup_left: share(load.warmup, index).max(least_warmup),
                measured_left: share(load.ops, index),
                measured_started: 0,
                writes_started: 0,
                reads_started: 0,
                in_flight: Kind::Write,
                failures_in_a_row: 0,
            })
            .collect();
        let mux = Multiplexer::new(&load.endpoints, &load.options, count, load.sockets)?;
        workers.push(Worker {
            mux,
            tally: Tally {
                clients,
                value: &value,
                workload: load.workload,
                deadline: None,
                tallied: Tallied::default(),
                live: &live,
            },
        });
    }
    let done = &live.done;
    // Each worker says when its measured phase ended (or that it failed: dropped unsent).
    let (finished, finishes) = crossbeam_channel::unbounded::<Instant>();
    // ... and when its warm-up did.
    let (warmed_up, warm_ups) = crossbeam_channel::unbounded::<()>();
    let start_line = Barrier::new(workers.len() + 1);
    let merged = Mutex::new(Tallied::default());
    let (start, elapsed) = std::thread::scope(|scope| -> Result<_, ClientError> {
        let mut threads = Vec::new();
        let worker_count = workers.len();
        for mut worker in workers {
            let (finished, warmed_up) = (finished.clone(), warmed_up.clone());
            let (start_line, merged) = (&start_line, &merged);
            threads.push(scope.spawn(move || -> Result<(), ClientError> {
                // A worker that fails to warm up still reaches the start line: the others and
                // the timer wait there for every worker.
                let warmed = worker.run_phase(None);
                let _ = warmed_up.send(());
                start_line.wait();
                warmed?;
                worker.tally.deadline = load.duration.map(|duration| clock() + duration);
                worker.run_phase(Some(done))?;
                let _ = finished.send(clock());
                let mut merged = merged.lock().expect("no worker panics holding the lock");
                merged.absorb(&mut worker.tally.tallied);
                Ok(())
            }));
        }
        drop((finished, warmed_up));
        // The warm-up's progress, until every worker is through it.
        let mut warming = worker_count;
        while warming > 0 {
            match warm_ups.recv_timeout(Duration::from_secs(1)) {
                Ok(()) => warming -= 1,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    progress(live.progress(true, load.ops));
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
        }
        start_line.wait();
        let start = clock();
        let mut last_end = start;
        // Until every worker ended (its end time arrived, or it dropped its sender failing).
        loop {
            match finishes.recv_timeout(Duration::from_secs(1)) {
                Ok(end) => last_end = last_end.max(end),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    progress(live.progress(false, load.ops));
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
        }
        for thread in threads {
            match thread.join() {
                Ok(ended) => ended?,
                // A worker's panic is a broken invariant: it goes on up as it was.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok((start, last_end.duration_since(start)))
    })?;
    let tallied = merged
        .into_inner()
        .expect("every worker finished without panicking");
    Ok(Outcome {
        clients: load.clients,
        elapsed,
        writes: tallied.writes.measured_from(start),
        reads: tallied.reads.measured_from(start),
        read_misses: tallied.read_misses,
        first_error: tallied.first_error,
        stopped: lock(&live.stopped).take(),
    })
}

/// The two kinds of operation a load runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Write,
    Read,
}

/// One closed-loop client's place in the load: which it is and what it has left to do.
struct LoadClient {
    /// Its position among all clients (its keys are `bench-<index>-<n>`).
    index: usize,
    /// Warm-up writes left, and measured operations left.
    warmup_left: u64,
    measured_left: u64,
    /// Measured operations it started (what decides whether the next is a read).
    measured_started: u64,
    /// Writes (warm-up included) and reads it started, each of which ended before the next
    /// operation began.
    writes_started: u64,
    reads_started: u64,
    /// The kind of the operation in flight (or of the last one).
    in_flight: Kind,
    failures_in_a_row: u32,
}

/// One thread's clients: client `k` is session `k` of the multiplexer.
struct Worker<'a> {
    mux: Multiplexer,
    tally: Tally<'a>,
}

/// What a thread's clients have left to do and what they measured.
struct Tally<'a> {
    clients: Vec<LoadClient>,
    value: &'a [u8],
    workload: Workload,
    /// When the measured phase ends, if it is timed.
    deadline: Option<Instant>,
    tallied: Tallied,
    /// What every worker of the run shares.
    live: &'a Live,
}

/// What some clients measured, their end times as instants (the phase's start is known only
/// once every worker is done).
#[derive(Default)]
struct Tallied {
    writes: Samples,
    reads: Samples,
    read_misses: u64,
    first_error: Option<String>,
}

impl Tallied {
    /// Moves `other`'s figures into these.
    fn absorb(&mut self, other: &mut Tallied) {
        self.writes.absorb(&mut other.writes);
        self.reads.absorb(&mut other.reads);
        self.read_misses += other.read_misses;
        if self.first_error.is_none() {
            self.first_error = other.first_error.take();
        }
    }
}

/// One kind's samples: `latencies_us[k]` ended at `ended[k]`.
#[derive(Default)]
struct Samples {
    latencies_us: Vec<u64>,
    ended: Vec<Instant>,
    errors: u64,
}

impl Samples {
    fn absorb(&mut self, other: &mut Samples) {
        self.latencies_us.append(&mut other.latencies_us);
        self.ended.append(&mut other.ended);
        self.errors += other.errors;
    }

    /// As [`Measured`], the end times counted from `start`.
    fn measured_from(self, start: Instant) -> Measured {
        Measured {
            latencies_us: self.latencies_us,
            ended_us: self
                .ended
                .iter()
                .map(|end| micros(end.saturating_duration_since(start)))
                .collect(),
            errors: self.errors,
        }
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

impl Worker<'_> {
    /// Runs every client's operations of one phase (measured when `done` is given) to the end.
    fn run_phase(&mut self, done: Option<&AtomicU64>) -> Result<(), ClientError> {
        let measuring = done.is_some();
        let Worker { mux, tally } = self;
        for client in 0..tally.clients.len() {
            while let Some(operation) = tally.next_operation(client, measuring) {
                match mux.start(client, operation) {
                    Ok(()) => break,
                    Err(error) => tally.fail(client, &error),
                }
            }
        }
        // Each operation that ends is counted, and the client's next starts at once.
        while mux.is_busy() {
            mux.turn(&mut |Finished { session, completed }| {
                tally.record(session, completed, done);
                tally.next_operation(session, measuring)
            })?;
        }
        Ok(())
    }
}

impl Tally<'_> {
    /// Counts client `client`'s ended operation: its latency and end if it succeeded (and is
    /// measured), a failure if not.
    fn record(&mut self, client: usize, completed: Completed, done: Option<&AtomicU64>) {
        let kind = self.clients[client].in_flight;
        let answered = match (kind, completed.result) {
            (_, Err(error)) => return self.fail(client, &error),
            (Kind::Write, Ok(Reply::Written(Answer::Ok))) => Ok(()),
            (Kind::Read, Ok(Reply::Read(Answer::Value(value)))) => {
                if value.is_none() {
                    self.tallied.read_misses += u64::from(done.is_some());
                }
                Ok(())
            }
            (Kind::Write, Ok(other)) => Err(format!("a write was answered {other:?}")),
            (Kind::Read, Ok(other)) => Err(format!("a read was answered {other:?}")),
        };
        match answered {
            Ok(()) => {
                self.clients[client].failures_in_a_row = 0;
                self.live.succeeded();
                if let Some(done) = done {
                    let samples = self.samples(kind);
                    samples.latencies_us.push(micros(completed.elapsed).max(1));
                    samples.ended.push(clock());
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(reason) => self.count_failure(client, reason, false),
        }
    }

    fn samples(&mut self, kind: Kind) -> &mut Samples {
        match kind {
            Kind::Write => &mut self.tallied.writes,
            Kind::Read => &mut self.tallied.reads,
        }
    }

    /// Counts client `client`'s operation in flight as failed with `error`.
    fn fail(&mut self, client: usize, error: &ClientError) {
        let nobody_answered = matches!(error, ClientError::NoNodeAnswered { .. });
        self.count_failure(client, error.to_string(), nobody_answered);
    }

    /// Counts a failure of client `client`'s operation in flight, here and in the run's shared
    /// counts (which may stop the run).
    fn count_failure(&mut self, client: usize, reason: String, nobody_answered: bool) {
        let kind = self.clients[client].in_flight;
        self.samples(kind).errors += 1;
        self.live.failed(&reason, nobody_answered);
        self.tallied.first_error.get_or_insert(reason);
        self.clients[client].failures_in_a_row += 1;
    }

    /// Client `client`'s next operation of this phase, if it has one left, has not given up
    /// and (measuring) the phase's time is not up.
    fn next_operation(&mut self, client: usize, measuring: bool) -> Option<Operation> {
        let timed_out = measuring && self.deadline.is_some_and(|deadline| clock() >= deadline);
        let state = &mut self.clients[client];
        let left = if measuring {
            &mut state.measured_left
        } else {
            &mut state.warmup_left
        };
        if *left == 0
            || timed_out
            || state.failures_in_a_row >= GIVE_UP_AFTER
            || self.live.stop.load(Ordering::Relaxed)
        {
            return None;
        }
        *left -= 1;
        let read = measuring && self.workload.is_read(state.measured_started);
        if measuring {
            state.measured_started += 1;
        }
        if read {
            state.in_flight = Kind::Read;
            // The keys it wrote so far: at least one (its warm-up), by construction.
            let written = state.writes_started.clamp(1, KEYS_PER_CLIENT);
            let key = format!("bench-{}-{}", state.index, state.reads_started % written);
            state.reads_started += 1;
            return Some(Operation::Read {
                query: Query::Get {
                    key: key.into_bytes(),
                },
                stale: self.workload == Workload::GetStale,
            });
        }
        state.in_flight = Kind::Write;
        // Keys cycle with the writes started before this one.
        let key = format!(
            "bench-{}-{}",
            state.index,
            state.writes_started % KEYS_PER_CLIENT
        );
        state.writes_started += 1;
        Some(Operation::Write(Op::Put {
            key: key.into_bytes(),
            value: self.value.to_vec(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::stand_in;
    use crate::kv::Command;
    use crate::runtime::wire::{RequestBody, Response, ResponseBody, Wire};
    use std::collections::BTreeMap;
    use std::net::{SocketAddr, UdpSocket};

    /// A request the stand-in leader saw.
    #[derive(Debug)]
    enum Seen {
        Write(Command),
        Read { key: Vec<u8>, stale: bool },
    }

    /// A stand-in leader on `socket`: answers every write, alone or batched, with one
    /// `Responses` datagram (an answer to nobody's request first) saying what `answer` makes of
    /// it, applying the puts it answers `Ok`; answers each read from the puts applied. Runs
    /// until stopped; returns what it saw.
    fn leader(socket: &UdpSocket, answer: impl Fn(&Command) -> ResponseBody) -> Vec<Seen> {
        let mut seen = Vec::new();
        let mut state: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        stand_in::serve(socket, |requests| {
            let nobodys = Response {
                id: u64::MAX,
                body: ResponseBody::Error {
                    message: "not an answer to this client".into(),
                },
            };
            let mut responses = vec![nobodys];
            for request in requests {
                let body = match &request.body {
                    RequestBody::Command { data } => {
                        let command = Command::decode(data).unwrap();
                        let body = answer(&command);
                        if let (ResponseBody::Applied { .. }, Op::Put { key, value }) =
                            (&body, &command.op)
                        {
                            state.insert(key.clone(), value.clone());
                        }
                        seen.push(Seen::Write(command));
                        body
                    }
                    RequestBody::Query { data, stale } => {
                        let Ok(Query::Get { key }) = Query::decode(data) else {
                            panic!("the load generator reads with gets only: {data:?}");
                        };
                        let value = state.get(&key).cloned();
                        seen.push(Seen::Read { key, stale: *stale });
                        ResponseBody::Query {
                            data: Answer::Value(value).encode(),
                        }
                    }
                    other => panic!("neither a write nor a read: {other:?}"),
                };
                responses.push(Response {
                    id: request.id,
                    body,
                });
            }
            Some(Wire::Responses(responses))
        });
        seen
    }

    fn ok(_: &Command) -> ResponseBody {
        ResponseBody::Applied {
            data: Answer::Ok.encode(),
        }
    }

    fn load(endpoint: SocketAddr, clients: usize, warmup: u64, ops: u64, sockets: Sockets) -> Load {
        Load {
            endpoints: vec![endpoint],
            clients,
            ops,
            value_size: 8,
            warmup,
            workload: Workload::Put,
            duration: None,
            options: ClientOptions::default(),
            sockets,
        }
    }

    /// Runs `load` against a stand-in leader answering writes as `answer` says: the outcome and
    /// what the leader saw.
    fn run_against_leader(
        load: &Load,
        node: &UdpSocket,
        answer: impl Fn(&Command) -> ResponseBody + Send,
    ) -> (Outcome, Vec<Seen>) {
        let address = node.local_addr().unwrap();
        std::thread::scope(|scope| {
            let fake = scope.spawn(|| leader(node, answer));
            let outcome = run(load, &mut |_| {}).unwrap();
            stand_in::stop(address);
            (outcome, fake.join().unwrap())
        })
    }

    fn writes(seen: &[Seen]) -> Vec<&Command> {
        seen.iter()
            .filter_map(|seen| match seen {
                Seen::Write(command) => Some(command),
                Seen::Read { .. } => None,
            })
            .collect()
    }

    /// Either way of using sockets, every client runs its warm-up and its measured writes, each
    /// taken out of a `Responses` datagram; only the measured ones are timed.
    #[test]
    fn every_client_runs_its_share_and_only_measured_writes_are_timed() {
        for sockets in [Sockets::PerClient, Sockets::Shared] {
            let node = UdpSocket::bind("127.0.0.1:0").unwrap();
            let load = load(node.local_addr().unwrap(), 3, 4, 7, sockets);
            let (outcome, seen) = run_against_leader(&load, &node, ok);
            assert_eq!(
                (outcome.writes.ops(), outcome.errors(), outcome.first_error),
                (7, 0, None),
                "{sockets:?}"
            );
            assert_eq!(outcome.reads, Measured::default());
            assert_eq!(outcome.writes.ended_us.len(), 7);
            assert!(outcome.writes.latencies_us.iter().all(|us| *us >= 1));
            let seen = writes(&seen);
            assert_eq!(
                seen.len(),
                11,
                "4 warm-up and 7 measured writes: {sockets:?}"
            );
            // Client 0 has 2 warm-up and 3 measured writes: seqs 1 to 5 of one client id, its
            // keys bench-0-0 to bench-0-4.
            let first_key = b"bench-0-0".to_vec();
            let client = seen
                .iter()
                .find(|c| matches!(&c.op, Op::Put { key, .. } if *key == first_key))
                .unwrap()
                .client_id;
            let mut mine: Vec<&Command> = seen
                .iter()
                .copied()
                .filter(|c| c.client_id == client)
                .collect();
            mine.sort_by_key(|c| c.seq);
            let seqs: Vec<u64> = mine.iter().map(|c| c.seq).collect();
            assert_eq!(seqs, vec![1, 2, 3, 4, 5], "{sockets:?}");
            let keys: Vec<&[u8]> = mine.iter().map(|c| c.op.key()).collect();
            let expected: Vec<String> = (0..5).map(|n| format!("bench-0-{n}")).collect();
            assert!(
                keys.iter().zip(&expected).all(|(k, e)| *k == e.as_bytes()),
                "{keys:?}"
            );
        }
    }

    /// A mixed workload's reads are exactly `⌊m·R⌋` of each client's `m` measured operations,
    /// linearizable, and every one reads a key its client wrote before: none is absent.
    #[test]
    fn a_mixed_workload_reads_its_share_of_keys_that_exist() {
        let node = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut load = load(node.local_addr().unwrap(), 3, 3, 300, Sockets::Shared);
        load.workload = Workload::Mixed {
            reads_per_million: 300_000,
        };
        let (outcome, seen) = run_against_leader(&load, &node, ok);
        // 100 operations per client, 30 of them reads.
        assert_eq!((outcome.reads.ops(), outcome.writes.ops()), (90, 210));
        assert_eq!((outcome.errors(), outcome.read_misses), (0, 0));
        assert_eq!(outcome.reads.ended_us.len(), 90);
        let reads: Vec<(&[u8], bool)> = seen
            .iter()
            .filter_map(|seen| match seen {
                Seen::Read { key, stale } => Some((key.as_slice(), *stale)),
                Seen::Write(_) => None,
            })
            .collect();
        assert_eq!(reads.len(), 90);
        assert!(reads.iter().all(|(_, stale)| !stale), "linearizable reads");
        assert_eq!(writes(&seen).len(), 3 + 210);
    }

    /// `get-stale` asks for stale reads; a read workload with no warm-up still writes one key
    /// per client first, and its reads find it.
    #[test]
    fn a_read_workload_writes_a_key_per_client_first_and_reads_it() {
        for (workload, stale) in [(Workload::Get, false), (Workload::GetStale, true)] {
            let node = UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut load = load(node.local_addr().unwrap(), 2, 0, 10, Sockets::PerClient);
            load.workload = workload;
            let (outcome, seen) = run_against_leader(&load, &node, ok);
            assert_eq!(
                (
                    outcome.reads.ops(),
                    outcome.writes.ops(),
                    outcome.read_misses
                ),
                (10, 0, 0),
                "{workload}"
            );
            assert_eq!(writes(&seen).len(), 2, "one warm-up write per client");
            assert!(
                seen.iter().all(|seen| match seen {
                    Seen::Read { key, stale: asked } => {
                        *asked == stale && key.ends_with(b"-0")
                    }
                    Seen::Write(_) => true,
                }),
                "{workload}: {seen:?}"
            );
        }
    }

    /// A timed phase ends by itself with no operation count to reach, and every end time it
    /// reports lies within it.
    #[test]
    fn a_timed_phase_ends_without_reaching_its_count() {
        let node = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut load = load(node.local_addr().unwrap(), 2, 0, u64::MAX, Sockets::Shared);
        load.duration = Some(Duration::from_millis(200));
        let (outcome, seen) = run_against_leader(&load, &node, ok);
        assert!(outcome.writes.ops() > 0);
        assert_eq!(writes(&seen).len() as u64, outcome.writes.ops());
        let elapsed_us = micros(outcome.elapsed);
        assert!(
            outcome.writes.ended_us.iter().all(|&us| us <= elapsed_us),
            "ends within {elapsed_us} µs"
        );
    }

    #[test]
    fn workload_shares_count_exactly_and_print_as_given() {
        let mixed = |reads_per_million| Workload::Mixed { reads_per_million };
        assert_eq!(mixed(900_000).reads_among(1000), 900);
        assert_eq!(mixed(333_333).reads_among(3), 0);
        assert_eq!(mixed(333_334).reads_among(3), 1);
        assert_eq!(Workload::Get.reads_among(7), 7);
        assert_eq!(Workload::Put.reads_among(7), 0);
        // Spread evenly: a read share of a half alternates, writes first.
        let pattern: Vec<bool> = (0..6).map(|n| mixed(500_000).is_read(n)).collect();
        assert_eq!(pattern, [false, true, false, true, false, true]);
        let counted = (0..1000).filter(|&n| mixed(123_456).is_read(n)).count();
        assert_eq!(counted as u64, mixed(123_456).reads_among(1000));
        for (workload, text) in [
            (Workload::Put, "put"),
            (Workload::Get, "get"),
            (Workload::GetStale, "get-stale"),
            (mixed(900_000), "mixed:0.9"),
            (mixed(125_000), "mixed:0.125"),
            (mixed(0), "mixed:0"),
            (mixed(MILLION), "mixed:1"),
        ] {
            assert_eq!(workload.to_string(), text);
        }
        assert!(!mixed(0).has_reads() && mixed(0).has_writes());
        assert!(mixed(MILLION).has_reads() && !mixed(MILLION).has_writes());
    }

    /// A client whose every write fails stops after `GIVE_UP_AFTER` in a row.
    #[test]
    fn a_client_gives_up_after_a_run_of_failures() {
        let node = UdpSocket::bind("127.0.0.1:0").unwrap();
        let load = load(node.local_addr().unwrap(), 1, 0, 100, Sockets::PerClient);
        let refuse = |_: &Command| ResponseBody::Error {
            message: "refused".into(),
        };
        let (outcome, seen) = run_against_leader(&load, &node, refuse);
        assert_eq!(
            (outcome.writes.ops(), outcome.writes.errors),
            (0, u64::from(GIVE_UP_AFTER))
        );
        assert_eq!(seen.len(), GIVE_UP_AFTER as usize);
        assert!(
            outcome
                .first_error
                .as_deref()
                .is_some_and(|e| e.contains("refused")),
            "{:?}",
            outcome.first_error
        );
        assert!(
            outcome
                .stopped
                .as_deref()
                .is_some_and(|why| why.starts_with("20 operations failed in a row")),
            "{:?}",
            outcome.stopped
        );
    }

    /// Failures in a row over all clients stop the whole run: eight refused clients stop after
    /// about [`STOP_AFTER`] failures between them (those in flight then finish), not eight times
    /// [`GIVE_UP_AFTER`]; the warm-up counts, and stops the measured phase from starting.
    #[test]
    fn failures_in_a_row_over_all_clients_stop_the_whole_run() {
        let node = UdpSocket::bind("127.0.0.1:0").unwrap();
        let load = load(node.local_addr().unwrap(), 8, 16, 800, Sockets::Shared);
        let refuse = |_: &Command| ResponseBody::Error {
            message: "refused".into(),
        };
        let (outcome, _) = run_against_leader(&load, &node, refuse);
        let failed = outcome.errors();
        assert!(
            (u64::from(STOP_AFTER)..u64::from(STOP_AFTER) + 8).contains(&failed),
            "{failed} failures"
        );
        assert_eq!(outcome.writes.ops(), 0);
        assert!(outcome.stopped.is_some());
    }

    /// Against nothing at all, the run stops at the first operation that ends with no node
    /// ever having answered: one operation timeout per client at most, and it says why.
    #[test]
    fn a_run_against_no_cluster_stops_at_the_first_silence_and_says_so() {
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap(); // never answers
        let mut load = load(silent.local_addr().unwrap(), 4, 0, 1000, Sockets::PerClient);
        load.options.timeout = Duration::from_millis(100);
        load.options.attempt_timeout = Duration::from_millis(30);
        let mut reports = Vec::new();
        let outcome = run(&load, &mut |progress| reports.push(progress)).unwrap();
        assert!(outcome.errors() <= 4, "{} failures", outcome.errors());
        assert_eq!(outcome.writes.ops(), 0);
        let stopped = outcome.stopped.expect("the run stopped");
        assert!(stopped.contains("no Balsa node answered at"), "{stopped}");
        // Progress reports, if the run lasted long enough for one, count only what happened.
        assert!(
            reports
                .iter()
                .all(|report| report.done == 0 && report.total == 1000)
        );
    }

    /// A load that cannot set up (here: a datagram limit the codec refuses, on the second
    /// thread's clients as on the first's) fails the run before any thread starts.
    #[test]
    fn a_load_that_cannot_set_up_fails() {
        let node = UdpSocket::bind("127.0.0.1:0").unwrap(); // never answers
        let mut load = load(
            node.local_addr().unwrap(),
            CLIENTS_PER_THREAD + 1,
            0,
            1,
            Sockets::Shared,
        );
        load.options.datagram_limit = 1;
        let error = run(&load, &mut |_| {}).unwrap_err();
        assert!(error.to_string().contains("datagram limit"), "{error}");
        load.clients = 0;
        assert!(matches!(
            run(&load, &mut |_| {}),
            Err(ClientError::Config { .. })
        ));
    }

    /// Endpoints of both address families are refused, as `Client` refuses them: no socket
    /// could reach them all.
    #[test]
    fn endpoints_of_both_families_are_refused() {
        let mut load = load(
            "127.0.0.1:7001".parse().unwrap(),
            1,
            0,
            1,
            Sockets::PerClient,
        );
        load.endpoints.push("[::1]:7002".parse().unwrap());
        let error = run(&load, &mut |_| {}).unwrap_err();
        assert!(error.to_string().contains("mix IPv4 and IPv6"), "{error}");
    }
}
