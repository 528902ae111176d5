//! Helpers for tests that run real `balsa` processes on loopback: a [`Cluster`] of
//! `balsa serve` children (killed when dropped, panicking or not), a way to run the `balsa`
//! client commands against it, and bounded waits for a leader or a condition.
//!
//! A cluster runs sealed, as `serve` does by default: its peer and client keys are made per
//! cluster in its temporary directory ([`TestKeys`]), every node is started with them, and the
//! clients the helpers make (the library's, and `balsa` commands run through
//! [`Cluster::balsa`]) use its client key. [`Cluster::start_insecure`] runs one with
//! `--insecure` instead.
//!
//! Every wait is a polling loop with a deadline; nothing sleeps to synchronise. When a test
//! panics, dropping its cluster prints the tail of every node's log (their stderr) to help.
//!
//! ```ignore
//! mod common;
//! let mut cluster = common::Cluster::start(3);
//! let (leader, term) = cluster.wait_for_leader(common::ELECTION_TIMEOUT);
//! cluster.kill(leader);                       // SIGKILL
//! let (new_leader, _) = cluster.wait_for_leader_after(term, common::ELECTION_TIMEOUT);
//! cluster.start_node(leader);                 // same data directory, same address
//! let output = cluster.balsa(&["put", "k", "v"]);
//! assert_eq!(common::stdout(&output), "OK\n");
//! ```

#![allow(
    dead_code,
    reason = "each test file uses its own subset of the helpers"
)]
#![allow(
    clippy::disallowed_methods,
    reason = "tests of real processes wait on wall-clock deadlines"
)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use balsa::client::{Client, ClientOptions};
use balsa::keyfile::{Key, generate_key, write_key_file};
use balsa::runtime::wire::StatusReport;

/// The `balsa` executable Cargo built for these tests.
pub const BALSA: &str = env!("CARGO_BIN_EXE_balsa");

/// A generous bound on an election on a busy test machine.
pub const ELECTION_TIMEOUT: Duration = Duration::from_secs(20);

/// `n` loopback addresses whose ports were free a moment ago (bound to port 0, then released).
pub fn free_loopback_addresses(n: usize) -> Vec<SocketAddr> {
    let sockets: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("binding a loopback UDP socket"))
        .collect();
    sockets
        .iter()
        .map(|socket| socket.local_addr().expect("a bound socket has an address"))
        .collect()
}

/// `A,B,C`.
pub fn endpoints_arg(endpoints: &[SocketAddr]) -> String {
    endpoints
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A command's stdout, as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A command's stderr, as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The environment variables `balsa` reads its keys from: none is inherited by the commands
/// the tests run, so that only the flags they give count.
pub const KEY_VARIABLES: [&str; 5] = [
    "BALSA_KEY_FILE",
    "BALSA_PEER_KEY_FILE",
    "BALSA_CLIENT_KEY_FILE",
    "BALSA_PREVIOUS_PEER_KEY_FILE",
    "BALSA_PREVIOUS_CLIENT_KEY_FILE",
];

/// `balsa ARGS`, its stdin closed and no key variable inherited.
pub fn balsa_command(args: &[&str]) -> Command {
    let mut command = Command::new(BALSA);
    command.args(args).stdin(Stdio::null());
    for variable in KEY_VARIABLES {
        command.env_remove(variable);
    }
    command
}

/// Runs `balsa ARGS` to completion.
pub fn run_balsa(args: &[&str]) -> Output {
    balsa_command(args)
        .output()
        .expect("running the balsa executable")
}

/// A peer key and a client key in two new files (mode 0600) in `dir`: `peer.key` and
/// `client.key`.
#[derive(Clone, Debug)]
pub struct TestKeys {
    /// The peer key's file.
    pub peer_file: PathBuf,
    /// The client key's file.
    pub client_file: PathBuf,
    /// The client key.
    pub client: Key,
}

impl TestKeys {
    /// Makes the two keys in `dir`.
    ///
    /// # Panics
    /// If a file cannot be written (say, it exists).
    pub fn create(dir: &Path) -> TestKeys {
        let peer_file = dir.join("peer.key");
        let client_file = dir.join("client.key");
        let client = new_key_file(&client_file);
        new_key_file(&peer_file);
        TestKeys {
            peer_file,
            client_file,
            client,
        }
    }

    /// The `serve` arguments that give a node these keys.
    pub fn serve_args(&self) -> Vec<String> {
        vec![
            "--peer-key-file".into(),
            self.peer_file.display().to_string(),
            "--client-key-file".into(),
            self.client_file.display().to_string(),
        ]
    }
}

/// Writes a new random key to the new file `path` (mode 0600); returns it.
///
/// # Panics
/// If it cannot.
pub fn new_key_file(path: &Path) -> Key {
    let key = generate_key().expect("the system's random source");
    write_key_file(path, &key).unwrap_or_else(|error| panic!("{error}"));
    key
}

/// Asserts that `output` is of a process that exited with `code` and said `text` on stderr;
/// returns its stderr, for more checks.
pub fn assert_exit_saying(output: &Output, code: i32, text: &str) -> String {
    let said = stderr(output);
    assert_eq!(output.status.code(), Some(code), "{said}");
    assert!(said.contains(text), "{text:?} not in: {said}");
    said
}

/// A refusal of `balsa COMMAND`: exit status 2, nothing on stdout, one line on stderr starting
/// `balsa COMMAND: `; returns the line.
pub fn refused(output: &Output, command: &str) -> String {
    let message = stderr(output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert_eq!(stdout(output), "", "{message}");
    assert_eq!(message.lines().count(), 1, "one line: {message}");
    assert!(
        message.starts_with(&format!("balsa {command}: ")),
        "{message}"
    );
    message
}

/// A child process killed and reaped when dropped, so that a failed test leaves none behind.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `command`, a `balsa serve`, with its stdout piped, and reads the line `serve` prints
/// once it listens (empty if it exited first); the child, killed when dropped, and the line.
pub fn spawn_serve(command: &mut Command) -> (Reaped, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawning balsa serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout is piped"))
        .read_line(&mut line)
        .expect("serve's line");
    (Reaped(child), line)
}

/// One `balsa serve` child.
struct NodeProcess {
    child: Child,
    /// Kept open: the node's stdout after its one line.
    _stdout: BufReader<ChildStdout>,
}

/// A cluster of `balsa serve` processes, each with its own data directory and log file in one
/// temporary directory. Every process is killed (SIGKILL) when the cluster is dropped.
pub struct Cluster {
    dir: tempfile::TempDir,
    /// The keys every node runs with and the clients use; `None`: `--insecure`.
    keys: Option<TestKeys>,
    members: Vec<(u64, SocketAddr)>,
    /// Extra `serve` arguments, for every start and restart.
    serve_args: Vec<String>,
    /// Node `id` at position `id - 1`; `None` while it is down.
    nodes: Vec<Option<NodeProcess>>,
}

impl Cluster {
    /// Starts `n` nodes (ids 1..=n) with the default timing.
    pub fn start(n: usize) -> Cluster {
        Cluster::start_with(n, &[])
    }

    /// Starts `n` nodes, passing `serve_args` (say, `["--tick-ms", "5"]`) to each.
    pub fn start_with(n: usize, serve_args: &[&str]) -> Cluster {
        let members = (1..).zip(free_loopback_addresses(n)).collect();
        let mut cluster = Cluster::on_addresses(members, serve_args);
        for id in 1..=n as u64 {
            cluster.start_node(id);
        }
        cluster
    }

    /// Starts `n` nodes with `--insecure` (no keys: plaintext datagrams) and `serve_args`.
    pub fn start_insecure(n: usize, serve_args: &[&str]) -> Cluster {
        let members = (1..).zip(free_loopback_addresses(n)).collect();
        let mut cluster = Cluster::on_addresses(members, serve_args);
        cluster.keys = None;
        cluster.serve_args.push("--insecure".into());
        for id in 1..=n as u64 {
            cluster.start_node(id);
        }
        cluster
    }

    /// A cluster of `members` (ids 1..=n, in order) of which no node runs yet: say, a second
    /// cluster on the addresses of a first. Start its nodes with [`start_node`](Self::start_node).
    pub fn on_addresses(members: Vec<(u64, SocketAddr)>, serve_args: &[&str]) -> Cluster {
        assert!(
            members
                .iter()
                .zip(1..)
                .all(|((id, _), expected)| *id == expected),
            "ids 1..=n, in order: {members:?}"
        );
        let dir = tempfile::tempdir().expect("a temporary directory");
        Cluster {
            keys: Some(TestKeys::create(dir.path())),
            dir,
            nodes: members.iter().map(|_| None).collect(),
            members,
            serve_args: serve_args.iter().map(|arg| (*arg).to_owned()).collect(),
        }
    }

    /// This cluster, running with `other`'s keys instead of its own (as a cluster whose
    /// operator kept the keys across a rebuild): it is told from `other` by its cluster id
    /// alone.
    ///
    /// # Panics
    /// If a node runs already, or either cluster runs without keys.
    pub fn sharing_keys_with(mut self, other: &Cluster) -> Cluster {
        assert!(self.nodes.iter().all(Option::is_none), "no node runs yet");
        assert!(self.keys.is_some(), "this cluster runs with keys");
        self.keys = Some(other.keys().expect("the other runs with keys").clone());
        self
    }

    /// From now on, start its nodes with `keys` and give its clients their client key (after
    /// a rotation).
    ///
    /// # Panics
    /// If it runs without keys.
    pub fn set_keys(&mut self, keys: TestKeys) {
        assert!(self.keys.is_some(), "the cluster runs with keys");
        self.keys = Some(keys);
    }

    /// The keys its nodes run with (`None`: `--insecure`).
    pub fn keys(&self) -> Option<&TestKeys> {
        self.keys.as_ref()
    }

    /// The client key (`None`: `--insecure`).
    pub fn client_key(&self) -> Option<Key> {
        self.keys.as_ref().map(|keys| keys.client.clone())
    }

    /// The client key's file, for `--key-file` (`None`: `--insecure`).
    pub fn key_file(&self) -> Option<&Path> {
        self.keys.as_ref().map(|keys| keys.client_file.as_path())
    }

    /// The arguments that give a `balsa` client command this cluster's client key:
    /// `--key-file FILE`, or none when it runs without keys.
    pub fn client_args(&self) -> Vec<String> {
        self.key_file().map_or_else(Vec::new, |file| {
            vec!["--key-file".into(), file.display().to_string()]
        })
    }

    /// The library's default client options, with this cluster's client key.
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            key: self.client_key(),
            ..ClientOptions::default()
        }
    }

    /// The `serve` arguments of the keys (none when insecure).
    pub fn key_args(&self) -> Vec<String> {
        self.keys
            .as_ref()
            .map_or_else(Vec::new, TestKeys::serve_args)
    }

    /// Replaces the extra `serve` arguments of every later start.
    pub fn set_serve_args(&mut self, serve_args: &[&str]) {
        self.serve_args = serve_args.iter().map(|arg| (*arg).to_owned()).collect();
    }

    /// Runs `balsa serve` as node `id` of this cluster's members on `data_dir` (any
    /// directory, another node's say) with `extra` arguments, expecting it to exit rather than
    /// serve: returns its output once it has, within 30 s.
    ///
    /// # Panics
    /// If it is still running after 30 s (it is killed first).
    pub fn serve_to_exit(&self, id: u64, data_dir: &Path, extra: &[&str]) -> Output {
        let mut child = balsa_command(&["serve"])
            .args(["--id", &id.to_string(), "--cluster", &self.cluster_arg()])
            .arg("--data-dir")
            .arg(data_dir)
            .args(self.key_args())
            .args(&self.serve_args)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning balsa serve");
        let exited = wait_until(Duration::from_secs(30), || {
            child.try_wait().expect("waiting for balsa serve")
        });
        if exited.is_none() {
            let _ = child.kill();
        }
        let output = child.wait_with_output().expect("reaping balsa serve");
        assert!(
            exited.is_some(),
            "node {id} did not exit within 30 s: {}",
            stderr(&output)
        );
        output
    }

    /// `1=IP:PORT,2=IP:PORT,...` of every member.
    fn cluster_arg(&self) -> String {
        self.members
            .iter()
            .map(|(member, address)| format!("{member}={address}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts node `id` (again), on its address and data directory; returns once it listens.
    ///
    /// # Panics
    /// If it is running, or does not start.
    pub fn start_node(&mut self, id: u64) {
        self.start_node_with(id, &[]);
    }

    /// As [`start_node`](Self::start_node), with `extra` arguments for this start only.
    pub fn start_node_with(&mut self, id: u64, extra: &[&str]) {
        self.spawn_node(id, &self.key_args(), extra);
    }

    /// As [`start_node_with`](Self::start_node_with), with `key_args` (the key flags, say
    /// another cluster's keys, or a rotation's previous ones) instead of the cluster's keys.
    pub fn start_node_with_keys(&mut self, id: u64, key_args: &[String], extra: &[&str]) {
        self.spawn_node(id, key_args, extra);
    }

    fn spawn_node(&mut self, id: u64, key_args: &[String], extra: &[&str]) {
        assert!(!self.is_running(id), "node {id} is already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path(id))
            .expect("opening the node's log file");
        let cluster_arg = self.cluster_arg();
        let mut child = balsa_command(&["serve"])
            .args(["--id", &id.to_string(), "--cluster", &cluster_arg])
            .arg("--data-dir")
            .arg(self.data_dir(id))
            .args(key_args)
            .args(&self.serve_args)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawning balsa serve");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut line = String::new();
        // serve prints its line once it listens, or exits (EOF) if it cannot start.
        stdout
            .read_line(&mut line)
            .expect("reading balsa serve's stdout");
        if !line.contains("listening") {
            let _ = child.kill();
            let status = child.wait();
            panic!(
                "node {id} did not start ({status:?}); its log:\n{}",
                self.log_tail(id, 40)
            );
        }
        self.nodes[index(id)] = Some(NodeProcess {
            child,
            _stdout: stdout,
        });
    }

    /// A new member's id (the next after every id so far) and a free loopback address for it;
    /// it is not started (see [`start_node_with`](Self::start_node_with) and `--join`). Every
    /// node started from now on is given it in `--cluster` (the running ones know nothing of
    /// it until a membership change adds it).
    pub fn add_member(&mut self) -> (u64, SocketAddr) {
        let id = self.members.len() as u64 + 1;
        let address = free_loopback_addresses(1)[0];
        self.members.push((id, address));
        self.nodes.push(None);
        (id, address)
    }

    /// Adds a member (see [`add_member`](Self::add_member)) and runs its `balsa serve --join`
    /// (a join timeout of 300 ms) on its data directory to its exit: its id and the output.
    /// With no member up to answer, the join fails.
    pub fn join_new_member_to_exit(&mut self) -> (u64, Output) {
        let (id, _) = self.add_member();
        let output = self.serve_to_exit(
            id,
            &self.data_dir(id),
            &["--join", "--join-timeout-ms", "300"],
        );
        (id, output)
    }

    /// Waits (at most `timeout`) for node `id` to exit by itself; returns its exit status and
    /// what it printed on stdout after its first line.
    ///
    /// # Panics
    /// If it is not running, or still runs when the time is out.
    pub fn wait_for_exit(&mut self, id: u64, timeout: Duration) -> (ExitStatus, String) {
        let exited = {
            let node = self.nodes[index(id)].as_mut().expect("the node runs");
            wait_until(timeout, || node.child.try_wait().ok().flatten())
        };
        let Some(status) = exited else {
            panic!(
                "node {id} did not exit within {timeout:?}; its log:\n{}",
                self.log_tail(id, 20)
            );
        };
        let mut node = self.nodes[index(id)].take().expect("the node ran");
        let mut rest = String::new();
        // The process has exited: reading its stdout ends at once.
        let _ = node._stdout.read_to_string(&mut rest);
        (status, rest)
    }

    /// Marks every node that exited by itself (a removed node does) as down; returns their
    /// ids.
    pub fn reap_exited(&mut self) -> Vec<u64> {
        let mut exited = Vec::new();
        for (slot, (id, _)) in self.nodes.iter_mut().zip(&self.members) {
            if slot
                .as_mut()
                .is_some_and(|node| node.child.try_wait().ok().flatten().is_some())
            {
                *slot = None;
                exited.push(*id);
            }
        }
        exited
    }

    /// Suspends (`STOP`) or resumes (`CONT`) node `id` with the system's `kill`.
    pub fn signal(&self, id: u64, signal: &str) {
        let pid = self.pid(id).expect("the node runs");
        let status = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} {pid}: {status}");
    }

    /// Whether node `id`'s process is stopped by a signal (state `T` in `/proc/PID/stat`).
    pub fn is_suspended(&self, id: u64) -> bool {
        let Some(pid) = self.pid(id) else {
            return false;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The state follows the command name, which is in parentheses.
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('T'))
    }

    /// Deletes node `id`'s data directory (it must be down): its disk is lost.
    pub fn wipe(&self, id: u64) {
        assert!(!self.is_running(id), "node {id} runs");
        std::fs::remove_dir_all(self.data_dir(id)).expect("removing the data directory");
    }

    /// Kills node `id` with SIGKILL and reaps it (no-op if it is down).
    pub fn kill(&mut self, id: u64) {
        if let Some(mut node) = self.nodes[index(id)].take() {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
    }

    /// Whether node `id` runs (as far as this cluster started and did not kill it).
    pub fn is_running(&self, id: u64) -> bool {
        self.nodes[index(id)].is_some()
    }

    /// Node `id`'s process id, while it runs.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.nodes[index(id)].as_ref().map(|node| node.child.id())
    }

    /// Every member's id and address.
    pub fn members(&self) -> &[(u64, SocketAddr)] {
        &self.members
    }

    /// The ids, 1..=n.
    pub fn ids(&self) -> Vec<u64> {
        self.members.iter().map(|(id, _)| *id).collect()
    }

    /// Node `id`'s address.
    pub fn address(&self, id: u64) -> SocketAddr {
        self.members[index(id)].1
    }

    /// Every node's address, in id order.
    pub fn endpoints(&self) -> Vec<SocketAddr> {
        self.members.iter().map(|(_, address)| *address).collect()
    }

    /// Node `id`'s data directory.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node-{id}"))
    }

    /// Node `id`'s log (its stderr, across restarts).
    pub fn log_path(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node-{id}.log"))
    }

    /// The last `lines` lines of node `id`'s log.
    pub fn log_tail(&self, id: u64, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(id)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Runs `balsa ARGS --endpoints <every node>` (and `--key-file` with the client key).
    pub fn balsa(&self, args: &[&str]) -> Output {
        self.balsa_at(&self.endpoints(), args)
    }

    /// Runs `balsa ARGS --endpoints <endpoints>` (and `--key-file` with the client key).
    pub fn balsa_at(&self, endpoints: &[SocketAddr], args: &[&str]) -> Output {
        let endpoints = endpoints_arg(endpoints);
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--endpoints", &endpoints]);
        let mut command = balsa_command(&all);
        if let Some(file) = self.key_file() {
            command.arg("--key-file").arg(file);
        }
        command.output().expect("running the balsa executable")
    }

    /// A client library handle on every node, with default options and the client key.
    pub fn client(&self) -> Client {
        Client::new(self.endpoints(), self.client_options()).expect("a client")
    }

    /// The addresses of the nodes running, in id order.
    pub fn running_endpoints(&self) -> Vec<SocketAddr> {
        self.ids()
            .into_iter()
            .filter(|id| self.is_running(*id))
            .map(|id| self.address(id))
            .collect()
    }

    /// Every running node's status (`None` for a node down or silent), in id order. Quick:
    /// a silent node costs at most 300 ms.
    pub fn statuses(&self) -> Vec<Option<StatusReport>> {
        let options = ClientOptions {
            timeout: Duration::from_millis(300),
            attempt_timeout: Duration::from_millis(150),
            ..self.client_options()
        };
        let mut probe = Client::new(self.endpoints(), options).expect("a client");
        let running: Vec<SocketAddr> = self
            .ids()
            .into_iter()
            .filter(|id| self.is_running(*id))
            .map(|id| self.address(id))
            .collect();
        let mut answers = probe.status_all(&running).into_iter();
        self.ids()
            .into_iter()
            .map(|id| {
                if self.is_running(id) {
                    answers.next().and_then(Result::ok)
                } else {
                    None
                }
            })
            .collect()
    }

    /// Waits (at most `timeout`) for a leader; returns its id and term.
    pub fn wait_for_leader(&self, timeout: Duration) -> (u64, u64) {
        self.wait_for_leader_after(0, timeout)
    }

    /// Waits (at most `timeout`) for a node leading in a term above `term` whom every running
    /// node that answers in that term agrees on; returns its id and term.
    ///
    /// # Panics
    /// When the time runs out, with the statuses last seen.
    pub fn wait_for_leader_after(&self, term: u64, timeout: Duration) -> (u64, u64) {
        let mut last = Vec::new();
        let found = wait_until(timeout, || {
            last = self.statuses();
            let reports: Vec<&StatusReport> = last.iter().flatten().collect();
            let leader = reports
                .iter()
                .filter(|report| report.role == "leader" && report.term > term)
                .max_by_key(|report| report.term)?;
            let agreed = reports
                .iter()
                .filter(|report| report.term == leader.term)
                .all(|report| report.leader == Some(leader.id));
            agreed.then_some((leader.id, leader.term))
        });
        found.unwrap_or_else(|| panic!("no leader after term {term} within {timeout:?}: {last:?}"))
    }
}

impl Drop for Cluster {
    #[allow(clippy::print_stderr, reason = "a failed test shows the nodes' logs")]
    fn drop(&mut self) {
        let ids = self.ids();
        for &id in &ids {
            self.kill(id);
        }
        if std::thread::panicking() {
            for id in ids {
                eprintln!(
                    "--- node {id} log (last 40 lines) ---\n{}",
                    self.log_tail(id, 40)
                );
            }
        }
    }
}

/// A client thread writing unique keys until stopped, recording the writes acknowledged.
pub struct Writer {
    acknowledged: Arc<Mutex<BTreeMap<String, String>>>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Writer {
    /// Starts writing `PREFIX-n` keys through `endpoints` under the client key `key` (a write
    /// that times out is neither counted nor expected: its outcome is unknown).
    pub fn start(endpoints: Vec<SocketAddr>, key: Option<Key>, prefix: &'static str) -> Writer {
        let acknowledged = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (record, stopped) = (Arc::clone(&acknowledged), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let options = ClientOptions {
                timeout: Duration::from_secs(1),
                key,
                ..ClientOptions::default()
            };
            let mut client = Client::new(endpoints, options).expect("a client");
            let mut attempt = 0;
            while !stopped.load(Ordering::Relaxed) {
                attempt += 1;
                let (key, value) = (format!("{prefix}-{attempt}"), format!("value-{attempt}"));
                if client.put(key.as_bytes(), value.as_bytes()).is_ok() {
                    record.lock().expect("not poisoned").insert(key, value);
                }
            }
        });
        Writer {
            acknowledged,
            stop,
            thread,
        }
    }

    /// How many writes were acknowledged so far.
    pub fn acknowledged(&self) -> usize {
        self.acknowledged.lock().expect("not poisoned").len()
    }

    /// Every write acknowledged so far (the writer goes on).
    pub fn acknowledged_writes(&self) -> BTreeMap<String, String> {
        self.acknowledged.lock().expect("not poisoned").clone()
    }

    /// Waits (at most `timeout`) until `more` writes beyond those acknowledged now are.
    ///
    /// # Panics
    /// When the time runs out.
    pub fn wait_for_more(&self, more: usize, timeout: Duration) {
        let target = self.acknowledged() + more;
        let done = wait_until(timeout, || (self.acknowledged() >= target).then_some(()));
        assert!(
            done.is_some(),
            "only {} of {target} writes acknowledged within {timeout:?}",
            self.acknowledged()
        );
    }

    /// Stops the thread; returns every write acknowledged.
    pub fn stop(self) -> BTreeMap<String, String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the writer did not panic");
        let acknowledged = self.acknowledged.lock().expect("not poisoned");
        acknowledged.clone()
    }
}

/// Every write in `acknowledged` reads back through `endpoints` (with `options`, the cluster's
/// client key among them): one linearizable read, then each key from the state of the node
/// that answered it (which had then applied every write acknowledged before, and never goes
/// back), so thousands of keys cost little.
pub fn assert_all_present(
    endpoints: &[SocketAddr],
    options: &ClientOptions,
    acknowledged: &BTreeMap<String, String>,
) {
    let Some((last, _)) = acknowledged.last_key_value() else {
        return;
    };
    let mut client = Client::new(endpoints.to_vec(), options.clone()).expect("a client");
    client
        .get(last.as_bytes(), false)
        .unwrap_or_else(|error| panic!("a linearizable read of {last}: {error}"));
    let answered = client
        .leader()
        .map_or_else(|| endpoints.to_vec(), |node| vec![node]);
    let mut pinned = Client::new(answered, options.clone()).expect("a client");
    for (key, value) in acknowledged {
        let got = pinned
            .get(key.as_bytes(), true)
            .unwrap_or_else(|error| panic!("reading {key}: {error}"));
        assert_eq!(
            got.as_deref(),
            Some(value.as_bytes()),
            "acknowledged write {key} lost"
        );
    }
}

/// Polls `condition` every 20 ms until it gives a value or `timeout` passes.
pub fn wait_until<T>(timeout: Duration, mut condition: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = condition() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn index(id: u64) -> usize {
    usize::try_from(id - 1).expect("node ids are small")
}
