//! `balsa serve`: runs one node of the key-value service until it is killed.
//!
//! It checks the configuration (with [`NodeConfig::validate`], the one place it is checked),
//! makes sure no other process has the data directory, starts a [`Node`] around a [`KvStore`],
//! prints one line on stdout once its socket listens (`balsa: node 1 listening on
//! 127.0.0.1:7001`: the address bound, `--listen` if given, else its own in `--cluster`, which
//! it advertises either way) and logs to stderr. It stops by itself when its storage fails, or
//! when a membership change removed it from the cluster (one more line on stdout, `balsa: node
//! 2 was removed from the cluster`, exit status 0).
//!
//! On SIGTERM, SIGINT or SIGHUP it stops gracefully ([`Node::stop_gracefully`]): it logs that
//! it is stopping, a leader hands leadership to its most up-to-date follower and waits (for
//! at most one maximum election timeout) until another node leads, the WAL is closed, and the
//! process exits 0 after a last log line. A second signal ends it at once (exit status 1;
//! the log is safe at every point, as under SIGKILL). The signals are caught from before the
//! node starts, so one that arrives during the start stops the node as soon as it runs.
//! `--parent-pid PID` (what `balsa cluster`, `demo` and `torture` give their nodes) asks the kernel for a SIGTERM
//! when the parent dies (`PR_SET_PDEATHSIG`), so that a node never outlives its supervisor.
//!
//! Before it listens, the node settles whose data directory it has (its `IDENTITY` file):
//! bootstrapping a new cluster (its id derived from `--cluster` and `--cluster-token`), joining
//! a running one (`--join`: its id asked of the other members; the node then starts knowing no
//! configuration and waits for `balsa members add` to add it), or reading the file back.
//! `--rejoin` is a deprecated alias of `--join`.
//!
//! Keys: secure by default. The node seals member traffic under `--peer-key-file` and client
//! traffic under `--client-key-file` (each also accepting its `--previous-...` key while keys
//! are rotated), and logs the keys' fingerprints, never the keys; without keys it starts only
//! with `--insecure`, and then logs a warning once. A key file that group or others may read
//! or write is refused.
//!
//! `--print-config` makes the same checks (the configuration, the keys), prints the
//! configuration in effect as TOML (`config.rs` renders it) and exits 0 without starting the
//! node; the settings a `--config` file gives are flags by the time `run` sees them.
//!
//! Exit status: 0 when removed from the cluster, stopped by a signal, or after
//! `--print-config`; 2 for bad configuration (including no keys
//! and no `--insecure`, a key file that cannot be read or is too open, a data
//! directory in use, one an earlier version's `--rejoin` marked, or one that belongs to another
//! node, or to another cluster than the one `--join` finds, or a path that is not a directory,
//! or a `--parent-pid` that is not its parent); 3 when `--join` found no member to answer; 1
//! when the node cannot start (its address taken, a full disk, a damaged log or identity file)
//! or stops on a storage failure, with the reason on stderr, or stops at a second signal. A
//! start that fails leaves the data directory as it found it (`Node::start`).

use balsa::keyfile::Fingerprint as _;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use balsa::keyfile::{self, Key, KeyRing, Keys};
use balsa::kv::KvStore;
use balsa::{Error, HandOff, Node, NodeConfig};

use crate::args::{NO_KEYS, ServeArgs};
use crate::{logger, metrics};

/// Runs `balsa serve`.
#[allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "serve says once on stdout that it listens, and why it stopped on stderr"
)]
pub fn run(args: ServeArgs) -> ExitCode {
    logger::init(format!("node {}", args.id));
    let mut config = NodeConfig::new(args.id, args.cluster.clone(), args.data_dir.clone());
    config.tick = Duration::from_millis(args.tick_ms);
    config.heartbeat_ticks = args.heartbeat_ticks;
    config.election_ticks = (args.election_ticks.min, args.election_ticks.max);
    config.sync = !args.unsafe_no_fsync;
    config.snapshot_entries = args.snapshot_entries;
    config.snapshot_bytes = args.snapshot_bytes;
    config.snapshot_expansion = args.snapshot_expansion;
    config.snapshot_trailing_entries = args.snapshot_trailing;
    config.wal.segment_bytes = args.segment_bytes;
    config.cluster_token = args.cluster_token.clone();
    config.join = args.join || args.rejoin;
    config.join_timeout = Duration::from_millis(args.join_timeout_ms);
    config.listen = args.listen;
    if args.wal_direct && !args.unsafe_no_fsync {
        // Every direct write is durable: with --unsafe-no-fsync it would save nothing.
        config.wal.write_path = balsa::wal::WritePath::Direct;
    }
    if let Err(refusal) = config.validate() {
        eprintln!("balsa serve: {}", Error::from(refusal));
        return ExitCode::from(2);
    }
    config.keys = match keys(&args) {
        Ok(keys) => keys,
        Err(error) => {
            eprintln!("balsa serve: {error}");
            return ExitCode::from(2);
        }
    };
    if args.print_config {
        // Checked as it would be to serve; nothing started.
        let mut stdout = std::io::stdout().lock();
        let _ = stdout
            .write_all(args.effective_config.as_bytes())
            .and_then(|()| stdout.flush());
        return ExitCode::SUCCESS;
    }
    let sealing = describe_keys(&config.keys);
    if args.rejoin {
        log::warn!(
            "--rejoin is deprecated and now means --join. A node that lost its data directory \
             must come back under a NEW id: start it with --join and a new --id, then run \
             `balsa members replace {} NEW_ID=IP:PORT`",
            args.id
        );
    }
    if args.unsafe_no_fsync {
        log::warn!("--unsafe-no-fsync: a power loss can lose acknowledged writes");
    }
    // Bound before the node starts: a taken port is a configuration error, and leaves the data
    // directory as it was.
    let metrics = match args.metrics_addr.map(metrics::Endpoint::bind).transpose() {
        Ok(metrics) => metrics,
        Err(error) => {
            eprintln!("balsa serve: {error}");
            return ExitCode::from(2);
        }
    };
    if let Some(parent) = args.parent_pid
        && let Err(refusal) = stop_with_parent(parent)
    {
        eprintln!("balsa serve: {refusal}");
        return ExitCode::from(2);
    }
    let signalled = stop_signals();
    let hand_off_bound = config.tick * config.election_ticks.1;
    let node = match Node::start(config, KvStore::new()) {
        Ok(node) => node,
        Err(Error::NoSpace {
            dir,
            segment_bytes,
            source,
        }) => {
            // The library's message names the setting; this one the flag.
            eprintln!(
                "balsa serve: node {}: cannot start: no space left in {} for a WAL segment of \
                 {segment_bytes} bytes ({source}); free some space, or give a smaller \
                 --segment-bytes (at least {})",
                args.id,
                dir.display(),
                balsa::wal::SEGMENT_BYTES.start()
            );
            return ExitCode::from(1);
        }
        Err(error @ (Error::Config(_) | Error::DataDirInUse { .. })) => {
            eprintln!("balsa serve: {error}");
            return ExitCode::from(2);
        }
        Err(error @ Error::NoMemberAnswered { .. }) => {
            eprintln!("balsa serve: node {}: {error}", args.id);
            return ExitCode::from(3);
        }
        Err(error) => {
            eprintln!("balsa serve: node {}: {error}", args.id);
            return ExitCode::from(1);
        }
    };
    // Said once the node runs, so that a refusal to start stays the one line on stderr.
    match sealing {
        Ok(fingerprints) => log::info!("{fingerprints}"),
        Err(warning) => log::warn!("{warning}"),
    }
    if let Some(metrics) = metrics {
        let address = metrics.local_addr();
        match metrics.serve(node.metrics_reader()) {
            Ok(()) => log::info!(
                "metrics at http://{}/metrics, health at /health",
                address.map_or_else(|| "?".to_owned(), |address| address.to_string())
            ),
            Err(error) => log::error!("the metrics endpoint could not start: {error}"),
        }
    }
    let mut stdout = std::io::stdout().lock();
    // If stdout is closed nobody waits for the line; the node serves all the same.
    let _ = writeln!(
        stdout,
        "balsa: node {} listening on {}",
        args.id,
        node.local_addr()
    );
    let _ = stdout.flush();
    drop(stdout);
    let stopped = node.stopped();
    crossbeam_channel::select! {
        recv(signalled) -> _ => stop_gracefully(node, hand_off_bound),
        // Never sent on: it disconnects when the node stops by itself.
        recv(stopped) -> _ => match node.join() {
            // The node stops by itself without an error only when the cluster removed it.
            Ok(()) => {
                println!("balsa: node {} was removed from the cluster", args.id);
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("balsa serve: node {} stopped: {error}", args.id);
                ExitCode::from(1)
            }
        },
    }
}

/// The graceful stop at the first signal: hand leadership over (for at most `bound`), close
/// the WAL, say so.
#[allow(
    clippy::print_stderr,
    reason = "why the node had stopped, if it had stopped by itself"
)]
fn stop_gracefully(node: Node, bound: Duration) -> ExitCode {
    let id = node.id();
    log::info!(
        "node {id} is stopping (a leader first hands leadership over, waiting at most {} ms)",
        bound.as_millis()
    );
    match node.stop_gracefully(bound) {
        Ok(handed) => {
            let how = match handed {
                HandOff::NotLeading => String::from("it did not lead"),
                HandOff::TakenOver { leader, .. } => format!("node {leader} leads"),
                HandOff::NotTakenOver { to } => {
                    format!("node {to} had not taken leadership over")
                }
            };
            log::info!("node {id} stopped: its log is closed, and {how}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("balsa serve: node {id} stopped: {error}");
            ExitCode::from(1)
        }
    }
}

/// Catches SIGINT, SIGTERM and SIGHUP (`ctrlc`, on a thread of its own): the first is
/// delivered on the channel returned, a second ends the process at once with exit status 1.
/// If the handler cannot be installed, a warning says so and the signals end the node at once,
/// as they would without it.
fn stop_signals() -> crossbeam_channel::Receiver<()> {
    let (first, signalled) = crossbeam_channel::bounded(1);
    let count = AtomicU32::new(0);
    let installed = ctrlc::set_handler(move || {
        if count.fetch_add(1, Ordering::SeqCst) == 0 {
            log::info!("signal received: stopping (a second signal stops at once)");
            // Room for one, and only the first is sent.
            let _ = first.try_send(());
        } else {
            log::warn!("a second signal: stopping at once, without a clean stop");
            std::process::exit(1);
        }
    });
    if let Err(error) = installed {
        log::warn!("signals cannot be caught ({error}): they stop the node at once");
    }
    signalled
}

/// `--parent-pid PID`: asks the kernel for a SIGTERM when this process's parent dies, then
/// checks that its parent is `parent`. Checked after the request, so that a parent that died
/// before it is seen (this process then has another parent).
fn stop_with_parent(parent: i32) -> Result<(), String> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM)).map_err(
        |error| format!("--parent-pid: cannot ask to be told of the parent's death: {error}"),
    )?;
    let actual = rustix::process::Pid::as_raw(rustix::process::getppid());
    if actual == parent {
        Ok(())
    } else {
        Err(format!(
            "--parent-pid {parent}: this process's parent is {actual} (the process {parent} \
             exited, or is not its parent)"
        ))
    }
}

/// The node's keys, as the key flags say (`--insecure`: none).
fn keys(args: &ServeArgs) -> Result<Keys, String> {
    if args.insecure {
        return Ok(Keys::insecure());
    }
    // `parse` refuses serve with neither keys nor --insecure, and clap one key without the
    // other: this is the same refusal, should the two ever drift apart.
    let (Some(peer), Some(client)) = (&args.peer_key_file, &args.client_key_file) else {
        return Err(NO_KEYS.into());
    };
    let read = |path: &PathBuf| keyfile::read_key_file(path).map_err(|e| e.to_string());
    let previous = |path: &Option<PathBuf>| -> Result<Option<Key>, String> {
        path.as_ref().map(read).transpose()
    };
    let peer = KeyRing::new(read(peer)?).with_previous(previous(&args.previous_peer_key_file)?);
    let client =
        KeyRing::new(read(client)?).with_previous(previous(&args.previous_client_key_file)?);
    Ok(Keys::node(peer, client))
}

/// What the node seals with, for the log at start: the keys' fingerprints (never the keys), or
/// (`Err`) the warning that it seals nothing.
fn describe_keys(keys: &Keys) -> Result<String, String> {
    let ring = |ring: &KeyRing| match &ring.previous {
        Some(previous) => format!(
            "{} (also accepting the previous key {})",
            ring.current.fingerprint(),
            previous.fingerprint()
        ),
        None => ring.current.fingerprint(),
    };
    match (&keys.peer, &keys.client) {
        (Some(peer), Some(client)) => Ok(format!(
            "sealing member traffic under peer key {} and client traffic under client key {}",
            ring(peer),
            ring(client)
        )),
        _ => Err(String::from(
            "--insecure: datagrams go in plaintext, and anyone who can send this node a \
             datagram can speak for a member or a client; run with --peer-key-file and \
             --client-key-file (see `balsa keygen`) unless the network is trusted",
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::*;
    use crate::args::{Cli, Command};

    fn serve_args(extra: &[&Path]) -> ServeArgs {
        let mut words: Vec<OsString> = [
            "balsa",
            "serve",
            "--id",
            "1",
            "--cluster",
            "1=127.0.0.1:7001",
            "--data-dir",
            "d",
        ]
        .map(OsString::from)
        .to_vec();
        words.extend(extra.iter().map(|word| word.as_os_str().to_owned()));
        match crate::args::parse(words) {
            Ok(Cli {
                command: Command::Serve(args),
            }) => args,
            other => panic!("{extra:?} did not parse as serve: {other:?}"),
        }
    }

    fn key_file(dir: &Path, name: &str, byte: u8) -> (std::path::PathBuf, Key) {
        let path = dir.join(name);
        let key = Key::from_bytes([byte; 32]);
        keyfile::write_key_file(&path, &key).expect("written");
        (path, key)
    }

    #[test]
    fn the_key_flags_make_the_nodes_rings_and_insecure_makes_none() {
        let dir = tempfile::tempdir().expect("a directory");
        let (peer, peer_key) = key_file(dir.path(), "peer.key", 1);
        let (client, client_key) = key_file(dir.path(), "client.key", 2);
        let (old_client, old_client_key) = key_file(dir.path(), "old-client.key", 3);
        let flag = |name: &'static str| Path::new(name);
        let args = serve_args(&[
            flag("--peer-key-file"),
            &peer,
            flag("--client-key-file"),
            &client,
            flag("--previous-client-key-file"),
            &old_client,
        ]);
        assert_eq!(
            keys(&args),
            Ok(Keys::node(
                KeyRing::new(peer_key),
                KeyRing::new(client_key).with_previous(Some(old_client_key))
            ))
        );
        assert_eq!(
            keys(&serve_args(&[flag("--insecure")])),
            Ok(Keys::insecure())
        );
        std::fs::set_permissions(&old_client, std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        let refused = keys(&args).expect_err("a key file others may read");
        assert!(refused.contains("chmod 600"), "{refused}");
    }

    #[test]
    fn what_the_log_says_of_the_keys_is_their_fingerprints_or_a_warning() {
        let (peer, client, old) = (
            Key::from_bytes([1; 32]),
            Key::from_bytes([2; 32]),
            Key::from_bytes([3; 32]),
        );
        let keys = Keys::node(
            KeyRing::new(peer.clone()).with_previous(Some(old.clone())),
            KeyRing::new(client.clone()),
        );
        let said = describe_keys(&keys).expect("keyed");
        assert_eq!(
            said,
            format!(
                "sealing member traffic under peer key {} (also accepting the previous key {}) \
                 and client traffic under client key {}",
                peer.fingerprint(),
                old.fingerprint(),
                client.fingerprint()
            )
        );
        for key in [&peer, &client, &old] {
            assert!(!said.contains(&key.to_hex()), "never a key");
        }
        let warning = describe_keys(&Keys::insecure()).expect_err("a warning");
        assert!(
            warning.contains("anyone who can send this node a datagram can speak for a member"),
            "{warning}"
        );
    }
}
