//! `balsa cluster`: a local cluster of `balsa serve` child processes (this same executable) on
//! consecutive loopback ports, which stays up until its nodes stop; and [`ServeProcess`], the
//! child-process handle `balsa demo` uses too.
//!
//! Node `i` (from 1) listens on `127.0.0.1:(base-port + i - 1)` and keeps its log in
//! `DATA-DIR/node-i`, so running the command again restarts the same cluster with its data.
//! Each run passes its nodes a new random `--cluster-token` ([`random_token`]): a new cluster
//! gets an id of its own, and a restarted one keeps the id its data directories record.
//! The nodes run with the keys in `DATA-DIR/peer.key` and `DATA-DIR/client.key`, made on the
//! first run and read back on the next ([`LocalKeys`]); the command prints the line that hands
//! the client key to the client commands (`export BALSA_KEY_FILE=...`). The nodes log to this
//! command's stderr. A node killed on its own is reported, and the command returns once every
//! node has exited.
//!
//! Stopping: the nodes run in a process group of their own, so a signal reaches them only
//! through this command. On SIGTERM, SIGINT or SIGHUP it sends each node SIGTERM (each stops
//! gracefully: a leader hands leadership over first) and waits for them, for at most
//! [`STOP_GRACE`], then kills what still runs; a second signal is passed on too (the nodes
//! then stop at once). Should this command die without a word (SIGKILL), its nodes do not
//! outlive it: each runs with `--parent-pid`, which has the kernel send it SIGTERM when its
//! parent dies (`PR_SET_PDEATHSIG`, set by the node itself, so no code runs between fork and
//! exec). That signal comes when the thread that started the node ends: here the main
//! thread, which lives as long as the command.
//!
//! Invariant: a [`ServeProcess`] that is dropped has its process killed and reaped, so no
//! error path leaves a node running behind the command.

use balsa::keyfile::Fingerprint as _;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitCode, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use crate::args::ClusterArgs;
use crate::keys::LocalKeys;

/// A running `balsa serve` child process. Killed when dropped.
pub struct ServeProcess {
    /// Its node id.
    pub id: u64,
    /// The address it listens on.
    pub address: SocketAddr,
    child: Child,
    /// Kept open: the node's stdout after its one line.
    _stdout: BufReader<ChildStdout>,
}

/// How [`ServeProcess::launch`] runs `balsa serve`.
#[derive(Debug, Default)]
pub struct Launch {
    /// A program and its arguments to run the executable under (`ip netns exec NS`); empty
    /// runs it directly.
    pub wrap: Vec<OsString>,
    /// Start it in a process group of its own, so that a Ctrl-C at the terminal reaches only
    /// the parent, which stops its nodes itself (`balsa torture`, `balsa cluster`).
    pub own_process_group: bool,
    /// Pass it `--parent-pid` with this process's id: it stops (gracefully) when this process
    /// dies. Only for a process started by a thread that lives as long as this process: the
    /// kernel's signal comes when the starting thread ends.
    pub stop_with_parent: bool,
}

/// Why a node did not start.
#[derive(Debug)]
pub struct SpawnError {
    /// What happened, for stderr.
    pub message: String,
    /// The child's exit code, if it ran and exited.
    pub exit_code: Option<i32>,
}

impl ServeProcess {
    /// Starts `balsa serve` for node `id` of `members` on `data_dir` (with `extra` flags), run
    /// as `launch` says, its stderr going to `stderr`, and returns once it says it listens.
    pub fn launch(
        launch: &Launch,
        id: u64,
        members: &[(u64, SocketAddr)],
        data_dir: &Path,
        extra: &[OsString],
        stderr: Stdio,
    ) -> Result<ServeProcess, SpawnError> {
        let spawn_error = |message: String| SpawnError {
            message,
            exit_code: None,
        };
        let address = members
            .iter()
            .find(|(member, _)| *member == id)
            .map(|(_, address)| *address)
            .ok_or_else(|| spawn_error(format!("node {id} is not a member")))?;
        let executable = std::env::current_exe()
            .map_err(|error| spawn_error(format!("cannot find the balsa executable: {error}")))?;
        let mut command = match launch.wrap.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(executable);
                command
            }
            None => Command::new(executable),
        };
        if launch.own_process_group {
            command.process_group(0);
        }
        command
            .arg("serve")
            .arg("--id")
            .arg(id.to_string())
            .arg("--cluster")
            .arg(cluster_arg(members))
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra);
        if launch.stop_with_parent {
            command
                .arg("--parent-pid")
                .arg(std::process::id().to_string());
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|error| spawn_error(format!("cannot start node {id}: {error}")))?;
        let Some(stdout) = child.stdout.take() else {
            unreachable!("stdout was set to piped");
        };
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        // serve prints its line once listening, or exits (closing the pipe) on failure.
        let read = stdout.read_line(&mut line);
        if matches!(read, Ok(n) if n > 0) && line.contains("listening") {
            return Ok(ServeProcess {
                id,
                address,
                child,
                _stdout: stdout,
            });
        }
        let _ = child.kill();
        let status = child.wait();
        let exit_code = status.as_ref().ok().and_then(ExitStatus::code);
        let how = match status {
            Ok(status) => status.to_string(),
            Err(error) => format!("unknown ({error})"),
        };
        Err(SpawnError {
            message: format!("node {id} did not start ({how})"),
            exit_code,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process with SIGKILL (a crash, as far as the node is concerned) and reaps it.
    pub fn kill(&mut self) {
        // An error means it has already exited; wait reaps it either way.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Its exit status if it has exited.
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Sends it SIGTERM: a graceful stop. Nothing happens if it has exited (and, not reaped
    /// yet, its pid cannot have been reused).
    pub fn terminate(&self) {
        // A child's id is a positive pid_t; an error means it has exited, which reaping notes.
        if let Some(pid) = i32::try_from(self.pid()).ok().and_then(Pid::from_raw) {
            let _ = kill_process(pid, Signal::TERM);
        }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A new cluster token: 16 random bytes from `/dev/urandom`, as 32 hex digits. Where that
/// cannot be read, the client library's random id (the clock, the process id and a counter,
/// mixed) twice: weaker, but tokens need only differ between runs, not resist guessing.
pub fn random_token() -> String {
    let mut bytes = [0_u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut file| file.read_exact(&mut bytes));
    if read.is_err() {
        let (high, low) = (
            balsa::client::random_client_id(),
            balsa::client::random_client_id(),
        );
        bytes[..8].copy_from_slice(&high.to_le_bytes());
        bytes[8..].copy_from_slice(&low.to_le_bytes());
    }
    bytes
        .iter()
        .fold(String::with_capacity(32), |mut text, byte| {
            // Writing to a String cannot fail.
            let _ = write!(text, "{byte:02x}");
            text
        })
}

/// `1=IP:PORT,2=IP:PORT,...`, the form `--cluster` takes.
pub fn cluster_arg(members: &[(u64, SocketAddr)]) -> String {
    members
        .iter()
        .map(|(id, address)| format!("{id}={address}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `args` as the arguments of a command: each an owned string.
pub fn os_args<S: AsRef<OsStr>>(args: &[S]) -> Vec<OsString> {
    args.iter().map(|arg| arg.as_ref().to_owned()).collect()
}

/// `path` as one word a POSIX shell reads back as it is: as is when it holds only characters
/// no shell treats specially, else in single quotes.
pub fn shell_word(path: &Path) -> String {
    let text = path.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+,:@%".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// `A,B,C`, the form `--endpoints` takes.
pub fn endpoints_arg(addresses: &[SocketAddr]) -> String {
    addresses
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs `balsa cluster`.
#[allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the command prints the endpoints on stdout, and node exits on stderr"
)]
pub fn run(args: ClusterArgs) -> ExitCode {
    let members: Vec<(u64, SocketAddr)> = (1..=args.nodes)
        .map(|i| {
            let port = args.base_port + (i - 1); // parse checked it fits
            (u64::from(i), SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        })
        .collect();
    let keys = match std::fs::create_dir_all(&args.data_dir)
        .map_err(|error| format!("cannot create {}: {error}", args.data_dir.display()))
        .and_then(|()| LocalKeys::in_dir(&args.data_dir).map_err(|error| error.to_string()))
    {
        Ok(keys) => keys,
        Err(message) => {
            eprintln!("balsa cluster: {message}");
            return ExitCode::from(2);
        }
    };
    let mut nodes = Vec::new();
    let token = random_token();
    let mut extra = os_args(&["--cluster-token", token.as_str()]);
    if args.unsafe_no_fsync {
        extra.push("--unsafe-no-fsync".into());
    }
    extra.extend(keys.serve_args());
    let signalled = forward_signals();
    let launch = Launch {
        wrap: Vec::new(),
        own_process_group: true,
        stop_with_parent: true,
    };
    for &(id, _) in &members {
        let data_dir: PathBuf = args.data_dir.join(format!("node-{id}"));
        match ServeProcess::launch(&launch, id, &members, &data_dir, &extra, Stdio::inherit()) {
            Ok(node) => nodes.push(node),
            Err(error) => {
                eprintln!("balsa cluster: {}", error.message);
                // The nodes started so far are killed as `nodes` drops.
                return ExitCode::from(if error.exit_code == Some(2) { 2 } else { 1 });
            }
        }
    }
    let addresses: Vec<SocketAddr> = members.iter().map(|(_, address)| *address).collect();
    // Written at once, and a reader that went away is no reason to stop the cluster (a
    // `println!` would panic on the broken pipe).
    let mut said = String::new();
    let _ = writeln!(
        said,
        "balsa: cluster of {} nodes up, data in {}",
        args.nodes,
        args.data_dir.display()
    );
    for node in &nodes {
        let _ = writeln!(
            said,
            "  node {} on {} (pid {})",
            node.id,
            node.address,
            node.pid()
        );
    }
    let endpoints = endpoints_arg(&addresses);
    let _ = writeln!(said, "endpoints: {endpoints}");
    let _ = writeln!(
        said,
        "keys: peer key {} and client key {}, {} {}",
        keys.peer_fingerprint,
        keys.client.fingerprint(),
        if keys.reused { "read from" } else { "made in" },
        args.data_dir.display()
    );
    let endpoints_flag = if endpoints == crate::args::DEFAULT_ENDPOINTS {
        String::new()
    } else {
        format!(" --endpoints {endpoints}")
    };
    // Absolute, so that the line works from any directory.
    let client_file = std::path::absolute(&keys.client_file).unwrap_or(keys.client_file);
    let _ = writeln!(
        said,
        "the client commands need the client key: export BALSA_KEY_FILE={}",
        shell_word(&client_file)
    );
    let _ = writeln!(
        said,
        "stop with Ctrl-C or SIGTERM (pid {}); try `balsa status{endpoints_flag}` and \
         `balsa put KEY VALUE{endpoints_flag}`",
        std::process::id()
    );
    let mut stdout = std::io::stdout().lock();
    let _ = std::io::Write::write_all(&mut stdout, said.as_bytes());
    let _ = std::io::Write::flush(&mut stdout);
    drop(stdout);
    let mut failed = false;
    let mut stopping: Option<Instant> = None;
    while !nodes.is_empty() {
        match signalled.recv_timeout(Duration::from_millis(200)) {
            Ok(()) => {
                if stopping.is_none() {
                    eprintln!(
                        "balsa cluster: stopping: SIGTERM to each node (killed after {} s)",
                        STOP_GRACE.as_secs()
                    );
                    stopping = Some(now() + STOP_GRACE);
                } else {
                    eprintln!("balsa cluster: a second signal, passed on: the nodes stop at once");
                }
                nodes.iter().for_each(ServeProcess::terminate);
            }
            Err(RecvTimeoutError::Timeout) => {}
            // The handler could not be installed: signals end this command as they would
            // without it, and the nodes then stop through --parent-pid.
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(Duration::from_millis(200)),
        }
        if stopping.is_some_and(|deadline| now() >= deadline) {
            for node in &mut nodes {
                eprintln!(
                    "balsa cluster: node {} did not stop within {} s: killed",
                    node.id,
                    STOP_GRACE.as_secs()
                );
                node.kill();
            }
            failed = true;
            nodes.clear();
        }
        nodes.retain_mut(|node| match node.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                eprintln!("balsa cluster: node {} exited ({status})", node.id);
                failed |= !status.success();
                false
            }
            Err(error) => {
                eprintln!("balsa cluster: node {}: {error}", node.id);
                failed = true;
                false
            }
        });
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// How long `balsa cluster` waits for its nodes to stop after it passed a signal on, before it
/// kills them: a graceful stop takes about one maximum election timeout, and the WAL's close.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Catches SIGINT, SIGTERM and SIGHUP (`ctrlc`): each arrives on the channel returned, which
/// is disconnected (with a warning) if the handler cannot be installed.
#[allow(clippy::print_stderr, reason = "the command's warnings go to stderr")]
fn forward_signals() -> Receiver<()> {
    let (signal, signalled) = std::sync::mpsc::channel();
    if let Err(error) = ctrlc::set_handler(move || {
        // The command is gone if the receiver is: nothing to forward to.
        let _ = signal.send(());
    }) {
        eprintln!("balsa cluster: signals cannot be caught ({error}); its nodes stop with it");
    }
    signalled
}

#[allow(
    clippy::disallowed_methods,
    reason = "the wait for the nodes to stop is bounded in wall-clock time"
)]
fn now() -> Instant {
    Instant::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_quote_only_what_a_shell_would_read_otherwise() {
        assert_eq!(
            shell_word(Path::new("/tmp/balsa-data/client.key")),
            "/tmp/balsa-data/client.key"
        );
        assert_eq!(
            shell_word(Path::new("/a b/client.key")),
            "'/a b/client.key'"
        );
        assert_eq!(shell_word(Path::new("/it's/k")), r"'/it'\''s/k'");
        assert_eq!(shell_word(Path::new("$HOME/k")), "'$HOME/k'");
    }

    #[test]
    fn tokens_are_32_hex_digits_and_differ_between_calls() {
        let (first, second) = (random_token(), random_token());
        assert_eq!(first.len(), 32);
        assert!(
            first.bytes().all(|byte| byte.is_ascii_hexdigit()),
            "{first}"
        );
        assert_ne!(first, second);
    }
}
