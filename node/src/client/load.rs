//! Closed-loop write load against a running cluster: what `balsa bench` and the
//! `commit_latency` benchmark both drive.
//!
//! Each client is a [`Session`](super::Session) (its own client id and seqs, the protocol of
//! every other client of this crate) that sends one write, waits for its end, records the time
//! and sends the next: the classic closed loop, so the load adapts to the cluster and the latency
//! of one write is what a user would see.
//!
//! Clients are multiplexed, [`CLIENTS_PER_THREAD`] to a thread on one
//! [`Multiplexer`] (as wrk or memtier do with connections): with a thread per client, 64
//! clients spent more of a 2-core machine on their own context switches than the cluster they
//! measured. With [`Sockets::Shared`] a thread's clients also share one socket: the writes they
//! have ready after a turn leave in one datagram per node and the leader answers them together,
//! so a write no longer costs four system calls and a wake-up on each side of its own; each
//! client still has one write in flight. With [`Sockets::PerClient`] each has a socket of its
//! own. Every client first runs its share of the warm-up writes; all of them then start the
//! measured phase together, and throughput is the measured writes over the time from that start
//! until the last client finished.
//!
//! Each measured write's latency is returned raw, in microseconds ([`Outcome::latencies_us`]):
//! this crate keeps no histogram; its users build the distribution they print. A write that
//! ends in an error (unavailable, outcome unknown, refused) or with an answer other than
//! success is counted as failed, not recorded; a client stops after [`GIVE_UP_AFTER`] failures
//! in a row.
//!
//! This and the node's runtime are the crate's only code that starts threads (scoped: every one
//! has ended when [`run`] returns).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use super::multiplexer::{Finished, Multiplexer};
use super::session::{Completed, Operation, Reply};
use super::{ClientError, ClientOptions, clock};
use crate::kv::{Answer, Op};

pub use super::multiplexer::Sockets;

/// Consecutive failed writes after which a client stops (the cluster is down, not slow).
pub const GIVE_UP_AFTER: u32 = 20;

/// Clients driven by one thread.
pub const CLIENTS_PER_THREAD: usize = 32;

/// Distinct keys per client: writes cycle over them, so the state stays small. Client `c`'s
/// `n`-th write (from 0, warm-up included) sets `bench-c-(n mod KEYS_PER_CLIENT)`.
pub const KEYS_PER_CLIENT: u64 = 1024;

/// What load to run.
#[derive(Clone, Debug)]
pub struct Load {
    /// The nodes to talk to (any of them; clients find the leader).
    pub endpoints: Vec<std::net::SocketAddr>,
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
    /// Writes measured (answered with success).
    pub ops: u64,
    /// Clients that ran.
    pub clients: usize,
    /// From the start of the measured phase until the last client finished.
    pub elapsed: Duration,
    /// Latency of each measured write, in microseconds (at least 1), in no particular order.
    pub latencies_us: Vec<u64>,
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
}

/// Runs `load`; calls `progress(measured_done, measured_total)` about once a second while the
/// measured phase runs.
///
/// # Errors
/// [`ClientError::Config`] if `load` asks for no clients, has no endpoints or endpoints of both
/// address families, or options a client refuses; [`ClientError::Io`] if a client socket cannot
/// be set up or fails.
pub fn run(load: &Load, progress: &mut dyn FnMut(u64, u64)) -> Result<Outcome, ClientError> {
    if load.clients == 0 {
        return Err(ClientError::Config {
            reason: "at least one client is needed".into(),
        });
    }
    let share = |total: u64, k: usize| {
        let clients = load.clients as u64;
        total / clients + u64::from((k as u64) < total % clients)
    };
    let value = vec![b'v'; load.value_size];
    let mut workers = Vec::new();
    for first in (0..load.clients).step_by(CLIENTS_PER_THREAD) {
        let count = CLIENTS_PER_THREAD.min(load.clients - first);
        let clients = (first..first + count)
            .map(|index| LoadClient {
                index,
                warmup_left: share(load.warmup, index),
                measured_left: share(load.ops, index),
                writes_started: 0,
                failures_in_a_row: 0,
            })
            .collect();
        let mux = Multiplexer::new(&load.endpoints, &load.options, count, load.sockets)?;
        workers.push(Worker {
            mux,
            tally: Tally {
                clients,
                value: &value,
                latencies_us: Vec::new(),
                errors: 0,
                first_error: None,
            },
        });
    }
    let done = AtomicU64::new(0);
    // Each worker says when its measured phase ended (or that it failed: dropped unsent).
    let (finished, finishes) = crossbeam_channel::unbounded::<Instant>();
    let start_line = Barrier::new(workers.len() + 1);
    let merged = Mutex::new((Vec::new(), 0_u64, None::<String>));
    let elapsed = std::thread::scope(|scope| -> Result<Duration, ClientError> {
        let mut threads = Vec::new();
        for mut worker in workers {
            let (done, finished) = (&done, finished.clone());
            let (start_line, merged) = (&start_line, &merged);
            threads.push(scope.spawn(move || -> Result<(), ClientError> {
                // A worker that fails to warm up still reaches the start line: the others and
                // the timer wait there for every worker.
                let warmed = worker.run_phase(None);
                start_line.wait();
                warmed?;
                worker.run_phase(Some(done))?;
                let _ = finished.send(clock());
                let tally = &mut worker.tally;
                let mut merged = merged.lock().expect("no worker panics holding the lock");
                merged.0.append(&mut tally.latencies_us);
                merged.1 += tally.errors;
                if merged.2.is_none() {
                    merged.2 = tally.first_error.take();
                }
                Ok(())
            }));
        }
        drop(finished);
        start_line.wait();
        let start = clock();
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
        for thread in threads {
            match thread.join() {
                Ok(ended) => ended?,
                // A worker's panic is a broken invariant: it goes on up as it was.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok(last_end.duration_since(start))
    })?;
    let (latencies_us, errors, first_error) = merged
        .into_inner()
        .expect("every worker finished without panicking");
    Ok(Outcome {
        ops: latencies_us.len() as u64,
        clients: load.clients,
        elapsed,
        latencies_us,
        errors,
        first_error,
    })
}

/// One closed-loop client's place in the load: which it is and what it has left to do.
struct LoadClient {
    /// Its position among all clients (its keys are `bench-<index>-<n>`).
    index: usize,
    /// Writes left in the warm-up and in the measured phase.
    warmup_left: u64,
    measured_left: u64,
    /// Writes it started, each of which ended before the next began.
    writes_started: u64,
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
    latencies_us: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Worker<'_> {
    /// Runs every client's writes of one phase (measured when `done` is given) to the end.
    fn run_phase(&mut self, done: Option<&AtomicU64>) -> Result<(), ClientError> {
        let measuring = done.is_some();
        let Worker { mux, tally } = self;
        for client in 0..tally.clients.len() {
            while let Some(write) = tally.next_write(client, measuring) {
                match mux.start(client, write) {
                    Ok(()) => break,
                    Err(error) => tally.fail(client, error.to_string()),
                }
            }
        }
        // Each write that ends is counted, and the client's next starts at once.
        while mux.is_busy() {
            mux.turn(&mut |Finished { session, completed }| {
                tally.record(session, completed, done);
                tally.next_write(session, measuring)
            })?;
        }
        Ok(())
    }
}

impl Tally<'_> {
    /// Counts client `client`'s ended write: its latency if it succeeded (and is measured), a
    /// failure if not.
    fn record(&mut self, client: usize, completed: Completed, done: Option<&AtomicU64>) {
        match completed.result {
            Ok(Reply::Written(Answer::Ok)) => {
                self.clients[client].failures_in_a_row = 0;
                if let Some(done) = done {
                    let us = u64::try_from(completed.elapsed.as_micros()).unwrap_or(u64::MAX);
                    self.latencies_us.push(us.max(1));
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(other) => self.fail(client, format!("the write was answered {other:?}")),
            Err(error) => self.fail(client, error.to_string()),
        }
    }

    fn fail(&mut self, client: usize, reason: String) {
        self.errors += 1;
        self.first_error.get_or_insert(reason);
        self.clients[client].failures_in_a_row += 1;
    }

    /// Client `client`'s next write of this phase, if it has one left and has not given up.
    fn next_write(&mut self, client: usize, measuring: bool) -> Option<Operation> {
        let state = &mut self.clients[client];
        let left = if measuring {
            &mut state.measured_left
        } else {
            &mut state.warmup_left
        };
        if *left == 0 || state.failures_in_a_row >= GIVE_UP_AFTER {
            return None;
        }
        *left -= 1;
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
    use std::net::{SocketAddr, UdpSocket};

    /// A stand-in leader on `socket`: answers every write, alone or batched, with one
    /// `Responses` datagram (an answer to nobody's request first) saying what `answer` makes of
    /// it, until stopped. Returns the commands it saw.
    fn leader(socket: &UdpSocket, answer: impl Fn(&Command) -> ResponseBody) -> Vec<Command> {
        let mut seen = Vec::new();
        stand_in::serve(socket, |requests| {
            let nobodys = Response {
                id: u64::MAX,
                body: ResponseBody::Error {
                    message: "not an answer to this client".into(),
                },
            };
            let mut responses = vec![nobodys];
            for request in requests {
                let RequestBody::Command { data } = &request.body else {
                    panic!("not a write: {request:?}");
                };
                let command = Command::decode(data).unwrap();
                responses.push(Response {
                    id: request.id,
                    body: answer(&command),
                });
                seen.push(command);
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
            options: ClientOptions::default(),
            sockets,
        }
    }

    /// Runs `load` against a stand-in leader answering as `answer` says: the outcome and the
    /// commands the leader saw.
    fn run_against_leader(
        load: &Load,
        node: &UdpSocket,
        answer: impl Fn(&Command) -> ResponseBody + Send,
    ) -> (Outcome, Vec<Command>) {
        let address = node.local_addr().unwrap();
        std::thread::scope(|scope| {
            let fake = scope.spawn(|| leader(node, answer));
            let outcome = run(load, &mut |_, _| {}).unwrap();
            stand_in::stop(address);
            (outcome, fake.join().unwrap())
        })
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
                (outcome.ops, outcome.errors, outcome.first_error),
                (7, 0, None),
                "{sockets:?}"
            );
            assert_eq!(outcome.latencies_us.len(), 7);
            assert!(outcome.latencies_us.iter().all(|us| *us >= 1));
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
            let mut mine: Vec<&Command> = seen.iter().filter(|c| c.client_id == client).collect();
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

    /// A client whose every write fails stops after `GIVE_UP_AFTER` in a row.
    #[test]
    fn a_client_gives_up_after_a_run_of_failures() {
        let node = UdpSocket::bind("127.0.0.1:0").unwrap();
        let load = load(node.local_addr().unwrap(), 1, 0, 100, Sockets::PerClient);
        let refuse = |_: &Command| ResponseBody::Error {
            message: "refused".into(),
        };
        let (outcome, seen) = run_against_leader(&load, &node, refuse);
        assert_eq!((outcome.ops, outcome.errors), (0, u64::from(GIVE_UP_AFTER)));
        assert_eq!(seen.len(), GIVE_UP_AFTER as usize);
        assert!(
            outcome
                .first_error
                .as_deref()
                .is_some_and(|e| e.contains("refused")),
            "{:?}",
            outcome.first_error
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
        let error = run(&load, &mut |_, _| {}).unwrap_err();
        assert!(error.to_string().contains("datagram limit"), "{error}");
        load.clients = 0;
        assert!(matches!(
            run(&load, &mut |_, _| {}),
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
        let error = run(&load, &mut |_, _| {}).unwrap_err();
        assert!(error.to_string().contains("mix IPv4 and IPv6"), "{error}");
    }
}
