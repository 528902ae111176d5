//! `balsa demo`: a guided tour in a few seconds, with no arguments.
//!
//! It starts a 3-node cluster of `balsa serve` child processes on free loopback ports, in a
//! fresh temporary directory, with a peer key and a client key made there (its clients use
//! the client key, as `balsa cluster`'s users do); waits for the election; writes keys through the client library
//! and reads them back; kills the leader with SIGKILL and shows the survivors elect a new one;
//! keeps writing; checks that every acknowledged write is still there; replaces the dead node
//! with a fresh one (a new id, port and data directory, started with `--join`) in one
//! membership change, through the code `balsa members replace` runs, prints the new
//! configuration and shows the new node catching up (its applied index reaching the leader's
//! commit index); restarts the old leader from its data directory and shows it learn that it
//! was removed and exit by itself; and ends with the commit latency of the writes it made
//! (p50, p99, max). It says what happens in plain words as it goes.
//!
//! The nodes' logs go to `node-N.log` in the temporary directory, which is removed at the end;
//! when the demo fails it is kept, and its path printed, for a look at the logs.
//!
//! Exit status: 0 when every step worked, 1 when one did not (with the reason on stderr).

use balsa::keyfile::Fingerprint as _;
use std::fs::{self, File};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use balsa::client::{CasOutcome, Client, ClientOptions};
use balsa::runtime::wire::StatusReport;

use crate::args::DEFAULT_CHANGE_ATTEMPT_TIMEOUT;
use crate::client_cmds::status_table;
use crate::cluster::{Launch, ServeProcess, os_args, random_token};
use crate::keys::LocalKeys;
use crate::members;

/// Nodes in the demo's cluster.
const NODES: u64 = 3;
/// Keys written before the leader is killed.
const WRITES_BEFORE: usize = 200;
/// Keys written while it is down.
const WRITES_DURING: usize = 100;
/// The longest wait for any one step (an election, a catch-up).
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// A failed step, for stderr.
type StepError = String;

/// Runs `balsa demo`.
#[allow(
    clippy::print_stderr,
    reason = "a failed demo says why on stderr, in one line"
)]
pub fn run() -> ExitCode {
    let started = now();
    let dir = match TempDir::create() {
        Ok(dir) => dir,
        Err(error) => {
            eprintln!("balsa demo: {error}");
            return ExitCode::from(1);
        }
    };
    let result = Demo::start(&dir.path).and_then(|mut demo| demo.tour(started));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!(
                "balsa demo: {error} (logs kept in {})",
                dir.keep().display()
            );
            ExitCode::from(1)
        }
    }
}

/// The demo's cluster and client.
struct Demo {
    dir: PathBuf,
    members: Vec<(u64, SocketAddr)>,
    /// This run's `--cluster-token`: the demo's cluster gets an id of its own.
    token: String,
    /// The keys its nodes run with and its clients use.
    keys: LocalKeys,
    /// Node `i` at position `i - 1`; `None` while it is down.
    nodes: Vec<Option<ServeProcess>>,
    client: Client,
    /// For status polls: short timeouts, so a dead node costs little.
    probe: Client,
    /// Every write's time from request to acknowledgement.
    latencies: Vec<Duration>,
    /// Key → value of every acknowledged write.
    acknowledged: Vec<(String, String)>,
    /// When the first node was started.
    nodes_started: Instant,
}

impl Demo {
    #[allow(clippy::print_stdout, reason = "the demo narrates on stdout")]
    fn start(dir: &Path) -> Result<Demo, StepError> {
        let addresses = free_loopback_addresses(NODES)?;
        let members: Vec<(u64, SocketAddr)> = (1..=NODES).zip(addresses.clone()).collect();
        println!(
            "balsa demo: a {NODES}-node Balsa cluster on loopback, in {}",
            dir.display()
        );
        let keys = LocalKeys::in_dir(dir).map_err(|error| error.to_string())?;
        println!(
            "  Every datagram is sealed: member traffic under the peer key {}, client traffic \
             under the client key {} (both made just now, in peer.key and client.key).",
            keys.peer_fingerprint,
            keys.client.fingerprint()
        );
        let client_options = ClientOptions {
            key: keys.client_key(),
            ..ClientOptions::default()
        };
        let client = Client::new(addresses.clone(), client_options)
            .map_err(|error| format!("cannot make a client: {error}"))?;
        let probe_options = ClientOptions {
            timeout: Duration::from_millis(300),
            attempt_timeout: Duration::from_millis(150),
            key: keys.client_key(),
            ..ClientOptions::default()
        };
        let probe = Client::new(addresses, probe_options)
            .map_err(|error| format!("cannot make a client: {error}"))?;
        let mut demo = Demo {
            dir: dir.to_path_buf(),
            members,
            token: random_token(),
            keys,
            nodes: Vec::new(),
            client,
            probe,
            latencies: Vec::new(),
            acknowledged: Vec::new(),
            nodes_started: now(),
        };
        for id in 1..=NODES {
            let node = demo.spawn(id)?;
            demo.nodes.push(Some(node));
        }
        Ok(demo)
    }

    /// Starts node `id` (again), its stderr going to `node-ID.log`.
    fn spawn(&self, id: u64) -> Result<ServeProcess, StepError> {
        self.spawn_with(id, &[])
    }

    /// Starts node `id` with `extra` flags, its stderr going to `node-ID.log`.
    #[allow(clippy::print_stdout, reason = "the demo narrates on stdout")]
    fn spawn_with(&self, id: u64, extra: &[&str]) -> Result<ServeProcess, StepError> {
        let log_path = self.dir.join(format!("node-{id}.log"));
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|error| format!("cannot open {}: {error}", log_path.display()))?;
        let data_dir = self.dir.join(format!("node-{id}"));
        let mut flags = os_args(&["--cluster-token", self.token.as_str()]);
        flags.extend(self.keys.serve_args());
        flags.extend(os_args(extra));
        // The demo starts its nodes from its one thread, so they can stop with it.
        let launch = Launch {
            stop_with_parent: true,
            ..Launch::default()
        };
        let node = ServeProcess::launch(
            &launch,
            id,
            &self.members,
            &data_dir,
            &flags,
            Stdio::from(log),
        )
        .map_err(|error| error.message)?;
        println!(
            "  node {id} runs as process {} on {} (data in node-{id}/, log in node-{id}.log)",
            node.pid(),
            node.address
        );
        Ok(node)
    }

    #[allow(clippy::print_stdout, reason = "the demo narrates on stdout")]
    fn tour(&mut self, started: Instant) -> Result<(), StepError> {
        println!("Waiting for the nodes to elect a leader...");
        let (leader, term) = self.wait_for_leader(None)?;
        println!(
            "Node {leader} won the election for term {term}, {} ms after the first node started.",
            self.nodes_started.elapsed().as_millis()
        );

        println!(
            "\nWriting {WRITES_BEFORE} keys through the client. A write is acknowledged only \
             once a majority of nodes has it on disk and the leader has applied it."
        );
        let written = now();
        self.write_keys(0, WRITES_BEFORE)?;
        println!(
            "  {WRITES_BEFORE} writes acknowledged in {} ms.",
            written.elapsed().as_millis()
        );
        self.show_reads(&["key-000", "key-100", "key-199"])?;
        self.show_cas()?;

        let victim = self.nodes[index_of(leader)]
            .as_mut()
            .ok_or_else(|| format!("node {leader} is not running"))?;
        println!(
            "\nKilling node {leader}, the leader, with SIGKILL (process {}): no goodbye, no \
             flush.",
            victim.pid()
        );
        victim.kill();
        self.nodes[index_of(leader)] = None;
        let killed = now();
        println!("Waiting for the two survivors to elect a new leader...");
        let (new_leader, new_term) = self.wait_for_leader(Some((leader, term)))?;
        println!(
            "Node {new_leader} won the election for term {new_term}, {} ms after the kill.",
            killed.elapsed().as_millis()
        );

        println!("\nWriting {WRITES_DURING} more keys while node {leader} is down...");
        let written = now();
        self.write_keys(WRITES_BEFORE, WRITES_DURING)?;
        println!(
            "  {WRITES_DURING} writes acknowledged in {} ms: two of three nodes are a majority.",
            written.elapsed().as_millis()
        );
        self.check_acknowledged()?;

        let new = self.replace(leader)?;
        let replaced = now();
        self.wait_for_catch_up(new, new_leader, replaced)?;
        let last_key = format!("key-{:03}", WRITES_BEFORE + WRITES_DURING - 1);
        let address = self.members[index_of(new)].1;
        let options = ClientOptions {
            key: self.keys.client_key(),
            ..ClientOptions::default()
        };
        let mut local = Client::new(vec![address], options)
            .map_err(|error| format!("cannot make a client: {error}"))?;
        let value = local
            .get(last_key.as_bytes(), true)
            .map_err(|error| format!("stale read on node {new}: {error}"))?;
        println!(
            "  A stale read of {last_key} (written before node {new} existed) from node \
             {new}'s own state: {}.",
            describe(value.as_deref())
        );

        println!(
            "\nRestarting node {leader} from its data directory: it is no longer a member, so it \
             should learn that from the leader and stop by itself..."
        );
        let old = self.spawn(leader)?;
        self.nodes[index_of(leader)] = Some(old);
        self.wait_for_removed_exit(leader)?;

        println!("\nThe cluster now:");
        let endpoints: Vec<SocketAddr> = self
            .members
            .iter()
            .filter(|(id, _)| *id != leader)
            .map(|(_, a)| *a)
            .collect();
        let reports = self.probe.status_all(&endpoints);
        for line in status_table(&endpoints, &reports).lines() {
            println!("  {line}");
        }

        println!(
            "\nCommit latency of the {} writes, from request to acknowledgement (each fsynced \
             on a majority): {}. The slowest include the first write after the kill, which \
             waited for the dead leader before trying the next node.",
            self.latencies.len(),
            latency_summary(&self.latencies)
        );
        println!(
            "Stopping the nodes and removing {}. Done in {:.1} s.",
            self.dir.display(),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Replaces dead node `dead` with a fresh node under a new id, port and data directory (as
    /// an operator replaces a node whose disk is lost): starts it with `--join`, then one
    /// membership change through `balsa members replace`'s code; prints the new configuration.
    /// Returns the new node's id.
    #[allow(clippy::print_stdout, reason = "the demo narrates on stdout")]
    fn replace(&mut self, dead: u64) -> Result<u64, StepError> {
        let new = self.members.len() as u64 + 1;
        let address = free_loopback_addresses(1)?
            .pop()
            .ok_or("cannot find a free port")?;
        println!(
            "\nSay node {dead}'s disk is gone for good. A fresh node replaces it under a new id \
             (ids are never reused: the old one forgot what it promised): node {new} on \
             {address}, started with --join, then `balsa members replace {dead} {new}={address}` \
             (node {new} is caught up as a learner first, then the change is one joint \
             configuration)..."
        );
        self.members.push((new, address));
        let node = self.spawn_with(new, &["--join"])?;
        self.nodes.push(Some(node));
        let endpoints: Vec<SocketAddr> = self
            .members
            .iter()
            .filter(|(id, _)| self.nodes[index_of(*id)].is_some())
            .map(|(_, a)| *a)
            .collect();
        let started = now();
        let report = members::change(
            endpoints,
            members::replace_steps(dead, new, address),
            (
                STEP_TIMEOUT,
                DEFAULT_CHANGE_ATTEMPT_TIMEOUT.min(STEP_TIMEOUT),
            ),
            self.keys.client_key(),
        )
        .map_err(|error| format!("replacing node {dead} by node {new}: {error}"))?;
        println!(
            "  Done in {} ms. The new configuration:",
            started.elapsed().as_millis()
        );
        for line in members::render(&report, false).lines() {
            println!("    {line}");
        }
        Ok(new)
    }

    /// Polls until node `id` exits by itself; says how.
    #[allow(clippy::print_stdout, reason = "the demo narrates on stdout")]
    fn wait_for_removed_exit(&mut self, id: u64) -> Result<(), StepError> {
        let restarted = now();
        let deadline = restarted + STEP_TIMEOUT;
        loop {
            let node = self.nodes[index_of(id)]
                .as_mut()
                .ok_or_else(|| format!("node {id} is not running"))?;
            let exited = node
                .try_wait()
                .map_err(|error| format!("waiting for node {id}: {error}"))?;
            if let Some(status) = exited {
                self.nodes[index_of(id)] = None;
                if !status.success() {
                    return Err(format!("node {id} exited with {status}"));
                }
                println!(
                    "  Node {id} learned it was removed and exited by itself ({status}), {} ms \
                     after its restart.",
                    restarted.elapsed().as_millis()
                );
                return Ok(());
            }
            if now() >= deadline {
                return Err(format!(
                    "node {id} did not stop within {} s",
                    STEP_TIMEOUT.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Writes `key-N = value-N` for `count` keys from `first`, recording latencies.
    fn write_keys(&mut self, first: usize, count: usize) -> Result<(), StepError> {
        for n in first..first + count {
            let key = format!("key-{n:03}");
            let value = format!("value-{n:03}");
            let sent = now();
            self.client
                .put(key.as_bytes(), value.as_bytes())
                .map_err(|error| format!("writing {key}: {error}"))?;
            self.latencies.push(sent.elapsed());
            self.acknowledged.push((key, value));
        }
        Ok(())
    }

    #[allow(clippy::print_stdout, reason = "the demo narrates on stdout")]
    fn show_reads(&mut self, keys: &[&str]) -> Result<(), StepError> {
        let mut shown = Vec::new();
        for key in keys {
            let value = self
                .client
                .get(key.as_bytes(), false)
                .map_err(|error| format!("reading {key}: {error}"))?;
            shown.push(format!("{key} = {}", describe(value.as_deref())));
        }
        println!(
            "  Linearizable reads (the leader confirms it still leads first): {}.",
            shown.join(", ")
        );
        Ok(())
    }

    #[allow(clippy::print_stdout, reason = "the demo narrates on stdout")]
    fn show_cas(&mut self) -> Result<(), StepError> {
        let first = self
            .client
            .cas(b"counter", None, b"1")
            .map_err(|error| format!("compare-and-swap: {error}"))?;
        let second = self
            .client
            .cas(b"counter", Some(b"5"), b"6")
            .map_err(|error| format!("compare-and-swap: {error}"))?;
        let describe_cas = |outcome: &CasOutcome| match outcome {
            CasOutcome::Swapped => String::from("swapped"),
            CasOutcome::Mismatch { current } => {
                format!("refused, it holds {}", describe(current.as_deref()))
            }
        };
        println!(
            "  Compare-and-swap: counter from absent to 1: {}; counter from 5 to 6: {}.",
            describe_cas(&first),
            describe_cas(&second)
        );
        self.acknowledged.push(("counter".into(), "1".into()));
        Ok(())
    }

    /// Reads back every acknowledged write.
    #[allow(clippy::print_stdout, reason = "the demo narrates on stdout")]
    fn check_acknowledged(&mut self) -> Result<(), StepError> {
        for (key, expected) in &self.acknowledged {
            let found = self
                .client
                .get(key.as_bytes(), false)
                .map_err(|error| format!("reading {key}: {error}"))?;
            if found.as_deref() != Some(expected.as_bytes()) {
                return Err(format!(
                    "acknowledged write lost: {key} should be {expected:?}, found {}",
                    describe(found.as_deref())
                ));
            }
        }
        println!(
            "Checked every acknowledged write with linearizable reads: all {} keys hold the \
             value written. Nothing acknowledged was lost with the old leader.",
            self.acknowledged.len()
        );
        Ok(())
    }

    /// Polls until one node leads in a term after `after`'s (and is not `after`'s leader).
    fn wait_for_leader(&mut self, after: Option<(u64, u64)>) -> Result<(u64, u64), StepError> {
        let deadline = now() + STEP_TIMEOUT;
        loop {
            let leader = self
                .statuses()
                .into_iter()
                .flatten()
                .filter(|report| report.role == "leader")
                .filter(|report| {
                    after.is_none_or(|(old, term)| report.id != old && report.term > term)
                })
                .max_by_key(|report| report.term);
            if let Some(report) = leader {
                return Ok((report.id, report.term));
            }
            if now() >= deadline {
                return Err(format!(
                    "no leader elected within {} s",
                    STEP_TIMEOUT.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls until node `id`'s applied index reaches the leader's commit index.
    #[allow(clippy::print_stdout, reason = "the demo narrates on stdout")]
    fn wait_for_catch_up(
        &mut self,
        id: u64,
        leader: u64,
        restarted: Instant,
    ) -> Result<(), StepError> {
        let deadline = now() + STEP_TIMEOUT;
        let mut first_look = true;
        loop {
            let reports = self.statuses();
            let node = reports[index_of(id)].as_ref();
            let leading = reports[index_of(leader)].as_ref();
            if let (Some(node), Some(leading)) = (node, leading) {
                // Said once the node has heard from the leader: before that it may still show
                // the term it started in, which the cluster has left.
                if first_look && node.leader == Some(leader) && node.term == leading.term {
                    println!(
                        "  Node {id} runs as a {} in term {}, with applied index {} while the \
                         leader's commit index is {}.",
                        node.role, node.term, node.applied_index, leading.commit_index
                    );
                    first_look = false;
                }
                if node.applied_index >= leading.commit_index {
                    println!(
                        "  Node {id} caught up {} ms after it started: applied index {}, the \
                         leader's commit index {}.",
                        restarted.elapsed().as_millis(),
                        node.applied_index,
                        leading.commit_index
                    );
                    return Ok(());
                }
            }
            if now() >= deadline {
                return Err(format!(
                    "node {id} did not catch up within {} s",
                    STEP_TIMEOUT.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every node's status, `None` for one down or silent.
    fn statuses(&mut self) -> Vec<Option<StatusReport>> {
        let endpoints: Vec<SocketAddr> = self.members.iter().map(|(_, a)| *a).collect();
        let up: Vec<bool> = self.nodes.iter().map(Option::is_some).collect();
        let asked: Vec<SocketAddr> = endpoints
            .iter()
            .zip(&up)
            .filter(|(_, up)| **up)
            .map(|(endpoint, _)| *endpoint)
            .collect();
        let mut answers = self.probe.status_all(&asked).into_iter();
        up.iter()
            .map(|up| {
                if *up {
                    answers.next().and_then(Result::ok)
                } else {
                    None
                }
            })
            .collect()
    }
}

/// Node `id`'s position in the member list.
fn index_of(id: u64) -> usize {
    // Ids are 1..=NODES and the replacement's, a handful.
    usize::try_from(id - 1).unwrap_or(usize::MAX)
}

fn describe(value: Option<&[u8]>) -> String {
    match value {
        Some(value) => format!("{:?}", String::from_utf8_lossy(value)),
        None => String::from("absent"),
    }
}

/// `p50 … µs, p99 … µs, max … µs` (nearest rank).
fn latency_summary(latencies: &[Duration]) -> String {
    let mut sorted = latencies.to_vec();
    sorted.sort_unstable();
    let percentile = |p: usize| -> u128 {
        if sorted.is_empty() {
            return 0;
        }
        let rank = (p * sorted.len()).div_ceil(100).max(1);
        sorted[rank - 1].as_micros()
    };
    let max = sorted.last().map_or(0, Duration::as_micros);
    format!(
        "p50 {} µs, p99 {} µs, max {max} µs",
        percentile(50),
        percentile(99)
    )
}

/// `n` loopback addresses with ports free a moment ago (bound to port 0, then released).
fn free_loopback_addresses(n: u64) -> Result<Vec<SocketAddr>, StepError> {
    let sockets = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("cannot find free ports: {error}"))?;
    sockets
        .iter()
        .map(UdpSocket::local_addr)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("cannot find free ports: {error}"))
}

/// A fresh directory under the system's temporary directory, removed when dropped unless kept.
struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl TempDir {
    fn create() -> Result<TempDir, StepError> {
        let base = std::env::temp_dir();
        let pid = std::process::id();
        for attempt in 0..100u32 {
            let path = base.join(format!("balsa-demo-{pid}-{attempt}"));
            match fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir { path, keep: false }),
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(error) => {
                    return Err(format!("cannot create {}: {error}", path.display()));
                }
            }
        }
        Err(format!(
            "cannot create a fresh directory in {}",
            base.display()
        ))
    }

    /// Keeps the directory (for its logs) and returns its path.
    fn keep(mut self) -> PathBuf {
        self.keep = true;
        self.path.clone()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

#[allow(
    clippy::disallowed_methods,
    reason = "the demo times elections and writes on the wall clock"
)]
fn now() -> Instant {
    Instant::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles_use_the_nearest_rank() {
        let latencies: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(
            latency_summary(&latencies),
            "p50 50 µs, p99 99 µs, max 100 µs"
        );
        assert_eq!(
            latency_summary(&[Duration::from_micros(7)]),
            "p50 7 µs, p99 7 µs, max 7 µs"
        );
        assert_eq!(latency_summary(&[]), "p50 0 µs, p99 0 µs, max 0 µs");
    }
}
