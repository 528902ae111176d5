//! The workload: `--clients` threads, each a client of the client library doing put, get
//! (linearizable), compare-and-swap and delete on `--keys` keys, recording each operation as it
//! was invoked and as it ended ([`Record`]).
//!
//! Values are unique in the run (`p<process>-<n>`). A compare-and-swap expects the value its
//! process last saw for the key (or absence), so that some succeed. After an operation whose
//! outcome is unknown (`info`), the thread goes on as a new process with a new client, as
//! Jepsen does: the old operation may still take effect, and a process never has two
//! operations open. A thread also takes a new client after a refusal when the membership has
//! changed, so that it talks to the members of now.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use balsa::client::{CasOutcome, Client, ClientError, ClientOptions};
use balsa::sim::SimRng;

use super::history::{Call, Outcome, Output, Record};
use super::nodes::Directory;
use super::observer::nanos_since;

/// How the workload's clients wait, and the key they seal under (the run's client key, which
/// `directory` holds).
pub fn client_options(directory: &Directory) -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_secs(2),
        attempt_timeout: Duration::from_millis(250),
        key: directory.key(),
        ..ClientOptions::default()
    }
}

/// The running workload.
pub struct Workload {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<Record>>>,
}

impl Workload {
    /// Starts `clients` threads on `keys` keys; their random choices come from `seed`.
    pub fn start(
        clients: u64,
        keys: u64,
        seed: u64,
        stale_reads: bool,
        directory: &Directory,
        origin: Instant,
    ) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..clients)
            .filter_map(|thread| {
                let stop = Arc::clone(&stop);
                let directory = directory.clone();
                let mut client = ClientThread {
                    first_process: thread,
                    stride: clients,
                    keys,
                    rng: SimRng::new(seed ^ (thread + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                    origin,
                    stale_reads,
                };
                std::thread::Builder::new()
                    .name(format!("torture-client-{thread}"))
                    .spawn(move || client.run(&directory, &stop))
                    .ok()
            })
            .collect();
        Workload { stop, threads }
    }

    /// Stops the clients (each finishes the operation it is in) and returns their operations,
    /// in invocation order.
    pub fn finish(self) -> Vec<Record> {
        self.stop.store(true, Ordering::Relaxed);
        let mut history: Vec<Record> = self
            .threads
            .into_iter()
            .filter_map(|thread| thread.join().ok())
            .flatten()
            .collect();
        history.sort_by_key(|record| (record.call_ns, record.process));
        history
    }
}

struct ClientThread {
    first_process: u64,
    stride: u64,
    keys: u64,
    rng: SimRng,
    origin: Instant,
    /// Reads skip ReadIndex (`--stale-reads`: a planted anomaly for the checker to find).
    stale_reads: bool,
}

impl ClientThread {
    fn run(&mut self, directory: &Directory, stop: &AtomicBool) -> Vec<Record> {
        let mut records = Vec::new();
        let mut process = self.first_process;
        let mut written: u64 = 0;
        let mut seen: HashMap<String, Option<String>> = HashMap::new();
        let mut members = directory.members();
        let mut slot: Option<Client> = None;
        while !stop.load(Ordering::Relaxed) {
            if slot.is_none() {
                slot = Client::new(directory.endpoints(), client_options(directory)).ok();
            }
            let Some(client) = slot.as_mut() else {
                // No member to talk to, for a moment, during a replacement.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let key = format!("k{}", self.rng.range(0, self.keys));
            let call = match self.rng.range(0, 10) {
                0..=2 => Call::Put {
                    value: format!("p{process}-{written}"),
                },
                3..=6 => Call::Get,
                7..=8 => Call::Cas {
                    expected: seen.get(&key).cloned().flatten(),
                    new: format!("p{process}-{written}"),
                },
                _ => Call::Del,
            };
            if call.is_write() && !matches!(call, Call::Del) {
                written += 1;
            }
            // With --stale-reads, a read goes to a member picked at random, which answers from
            // its own state: a follower a moment behind shows the anomaly.
            let reader = match (&call, self.stale_reads) {
                (Call::Get, true) => {
                    let endpoints = directory.endpoints();
                    let picked = endpoints
                        .get(self.rng.index(endpoints.len().max(1)))
                        .copied();
                    picked.and_then(|endpoint| {
                        Client::new(vec![endpoint], client_options(directory)).ok()
                    })
                }
                _ => None,
            };
            let call_ns = nanos_since(self.origin);
            let (outcome, output, error) = match reader {
                Some(mut reader) => perform(&mut reader, &key, &call, true),
                None => perform(client, &key, &call, false),
            };
            let return_ns = nanos_since(self.origin);
            match (&call, outcome, &output) {
                (_, _, Output::Value(value) | Output::Mismatch(value)) => {
                    seen.insert(key.clone(), value.clone());
                }
                (Call::Put { value }, Outcome::Ok, _) => {
                    seen.insert(key.clone(), Some(value.clone()));
                }
                (Call::Cas { new, .. }, Outcome::Ok, _) => {
                    seen.insert(key.clone(), Some(new.clone()));
                }
                (Call::Del, Outcome::Ok, _) => {
                    seen.insert(key.clone(), None);
                }
                _ => {}
            }
            let changed = directory.members() != members;
            let renew = outcome == Outcome::Info || (outcome == Outcome::Fail && changed);
            records.push(Record {
                process,
                key,
                call,
                call_ns,
                return_ns,
                outcome,
                output,
                error,
            });
            if outcome == Outcome::Info {
                process += self.stride;
                written = 0;
            }
            if renew {
                // The next turn builds a client on the members of now.
                members = directory.members();
                slot = None;
            }
        }
        records
    }
}

/// Runs `call` on `key`: its outcome, output and error text.
fn perform(
    client: &mut Client,
    key: &str,
    call: &Call,
    stale_reads: bool,
) -> (Outcome, Output, Option<String>) {
    let key = key.as_bytes();
    let result = match call {
        Call::Put { value } => client.put(key, value.as_bytes()).map(|()| Output::None),
        Call::Get => client
            .get(key, stale_reads)
            .map(|value| Output::Value(text(value))),
        Call::Cas { expected, new } => client
            .cas(key, expected.as_deref().map(str::as_bytes), new.as_bytes())
            .map(|outcome| match outcome {
                CasOutcome::Swapped => Output::Swapped,
                CasOutcome::Mismatch { current } => Output::Mismatch(text(current)),
            }),
        Call::Del => client.delete(key).map(|()| Output::None),
    };
    match result {
        Ok(Output::Mismatch(current)) => (Outcome::Fail, Output::Mismatch(current), None),
        Ok(output) => (Outcome::Ok, output, None),
        Err(error) => {
            let outcome = if definitely_not_applied(&error) {
                Outcome::Fail
            } else {
                Outcome::Info
            };
            (outcome, Output::None, Some(error.to_string()))
        }
    }
}

/// True for the client errors that mean the operation did not take effect.
fn definitely_not_applied(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::Unavailable { .. }
            | ClientError::TooLarge { .. }
            | ClientError::OverLimit(_)
            | ClientError::Rejected { .. }
    )
}

fn text(value: Option<Vec<u8>>) -> Option<String> {
    value.map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}
