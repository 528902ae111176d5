//! The command line as a user meets it, through the real executable: `--help` and `--version`
//! on stdout with exit status 0, a refusal as one line on stderr with exit status 2, shell
//! completions, `BALSA_ENDPOINTS`, the log filter of `serve` (`BALSA_LOG`, then `RUST_LOG`), and
//! `balsa cluster` (its keys and what it says about them among them). The key flags, `keygen`
//! and authentication have their own file, `keys.rs`.

#![allow(
    clippy::disallowed_methods,
    reason = "tests of real processes wait on wall-clock deadlines"
)]

mod common;

use balsa::keyfile::Fingerprint as _;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::process::{ChildStdout, Command, Output, Stdio};

use balsa::client::{Client, ClientOptions};
use common::{
    Cluster, ELECTION_TIMEOUT, TestKeys, endpoints_arg, free_loopback_addresses, run_balsa, stderr,
    stdout, wait_until,
};

/// Runs `balsa ARGS` with `env` and none of the variables the tests look at inherited.
fn balsa_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    common::balsa_command(args)
        .env_remove("BALSA_ENDPOINTS")
        .env_remove("BALSA_LOG")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("running the balsa executable")
}

#[test]
fn help_and_version_go_to_stdout_with_exit_status_0() {
    for args in [
        &["--help"][..],
        &["help"],
        &["put", "--help"],
        &["sim", "-h"],
    ] {
        let output = run_balsa(args);
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        assert!(stdout(&output).contains("Usage: balsa"), "{args:?}");
        assert_eq!(stderr(&output), "", "{args:?}");
    }
    let version = run_balsa(&["--version"]);
    assert_eq!(version.status.code(), Some(0));
    // The version, then the git revision of the build (`unknown` outside a checkout).
    let printed = stdout(&version);
    let revision = printed
        .strip_prefix(&format!("balsa {} (", env!("CARGO_PKG_VERSION")))
        .and_then(|rest| rest.strip_suffix(")\n"))
        .unwrap_or_else(|| panic!("{printed:?}"));
    assert!(
        revision == "unknown"
            || (revision.len() >= 7 && revision.chars().all(|c| c.is_ascii_hexdigit())),
        "{printed:?}"
    );
}

#[test]
fn every_refusal_is_one_line_with_exit_status_2() {
    let cases: [(&[&str], &str); 12] = [
        (&[], "balsa: "),
        (&["frobnicate"], "balsa: "),
        (&["serve", "--bogus"], "balsa serve: "),
        (&["cluster", "--nodes", "16"], "balsa cluster: "),
        (&["put", "k"], "balsa put: "),
        (&["put", "k", "v", "--timeout", "0"], "balsa put: "),
        (
            &["get", "k", "--attempt-timeout", "5 minutes"],
            "balsa get: ",
        ),
        (&["members", "--timeout", "0s"], "balsa members: "),
        (&["transfer", "0"], "balsa transfer: "),
        (&["bench", "--clients", "0"], "balsa bench: "),
        (&["sim", "--fault", "nope", "--seeds", "1"], "balsa sim: "),
        (&["completions", "tcsh"], "balsa completions: "),
    ];
    for (args, prefix) in cases {
        let output = run_balsa(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let message = stderr(&output);
        assert_eq!(message.lines().count(), 1, "{args:?}: {message}");
        assert!(message.starts_with(prefix), "{args:?}: {message}");
        assert!(message.contains("(usage: balsa"), "{args:?}: {message}");
        assert_eq!(stdout(&output), "", "{args:?}");
    }
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let output = run_balsa(&["completions", shell]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{shell}: {}",
            stderr(&output)
        );
        let script = stdout(&output);
        for word in [
            "serve",
            "snapshot",
            "endpoints",
            "election-ticks",
            "cluster-token",
            "join-timeout-ms",
            "members",
            "replace",
        ] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
}

#[test]
fn balsa_endpoints_stands_in_for_the_flag() {
    let cluster = Cluster::start(1);
    cluster.wait_for_leader(ELECTION_TIMEOUT);
    let endpoints = endpoints_arg(&cluster.endpoints());
    let key = cluster.client_args();
    let key: Vec<&str> = key.iter().map(String::as_str).collect();
    let put = balsa_with_env(
        &[&["put", "k", "v"], &key[..]].concat(),
        &[("BALSA_ENDPOINTS", &endpoints)],
    );
    assert_eq!(put.status.code(), Some(0), "{}", stderr(&put));
    assert_eq!(stdout(&put), "OK\n");
    // The flag wins over the variable.
    let get = balsa_with_env(
        &[&["get", "k", "--endpoints", &endpoints], &key[..]].concat(),
        &[("BALSA_ENDPOINTS", "nowhere")],
    );
    assert_eq!(get.status.code(), Some(0), "{}", stderr(&get));
    assert_eq!(stdout(&get), "v\n");
    let refused = balsa_with_env(&["get", "k"], &[("BALSA_ENDPOINTS", "nowhere")]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("\"nowhere\" is not an address"),
        "{}",
        stderr(&refused)
    );
}

/// The log of a lone `balsa serve` with `env`, once it has led.
fn serve_log(env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let keys = TestKeys::create(dir.path());
    let address = free_loopback_addresses(1)[0];
    let log_path = dir.path().join("log");
    let log = File::create(&log_path).expect("creating the log file");
    let (serving, line) = common::spawn_serve(
        common::balsa_command(&["serve", "--id", "1"])
            .args(["--cluster", &format!("1={address}")])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(keys.serve_args())
            .env_remove("BALSA_LOG")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stderr(log),
    );
    assert!(line.contains("listening"), "serve did not start: {line:?}");
    // A lone node elects itself; it logs that before it answers a status as the leader.
    let options = ClientOptions {
        key: Some(keys.client),
        ..ClientOptions::default()
    };
    let mut client = Client::new(vec![address], options).expect("a client");
    let led = wait_until(ELECTION_TIMEOUT, || {
        let status = client.status(address).ok()?;
        (status.role == "leader").then_some(())
    });
    drop(serving);
    assert!(led.is_some(), "the lone node never led");
    std::fs::read_to_string(&log_path).expect("reading the log")
}

#[test]
fn serve_logs_at_info_unless_balsa_log_or_rust_log_say_otherwise() {
    let default = serve_log(&[]);
    let leader_line = default
        .lines()
        .find(|line| line.contains("now Leader"))
        .unwrap_or_else(|| panic!("no leader line at info: {default}"));
    // `[2025-06-01T09:12:03.231544Z INFO  node 1] now Leader in term 1, leader Some(1)`: the
    // wall-clock time, RFC 3339 in UTC, to the microsecond.
    let (prefix, _) = leader_line
        .split_once(" INFO  node 1] now Leader")
        .expect("the format");
    let time = prefix.strip_prefix('[').expect("a leading bracket");
    let shape: String = time
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert_eq!(shape, "9999-99-99T99:99:99.999999Z", "{leader_line}");
    let year: u32 = time[..4].parse().expect("digits");
    assert!(
        year >= 2025,
        "a wall-clock year, not time since start: {leader_line}"
    );

    let quiet = serve_log(&[("RUST_LOG", "warn")]);
    assert!(
        !quiet.contains(" INFO "),
        "RUST_LOG=warn logged info: {quiet}"
    );
    let balsa_log_wins = serve_log(&[("RUST_LOG", "warn"), ("BALSA_LOG", "info")]);
    assert!(
        balsa_log_wins.contains("INFO  node 1] now Leader"),
        "{balsa_log_wins}"
    );
    let off = serve_log(&[("BALSA_LOG", "off"), ("RUST_LOG", "info")]);
    assert_eq!(off, "");
}

/// A `balsa cluster` command and its nodes, one process group, killed whole when dropped.
struct ClusterCommand {
    child: std::process::Child,
}

impl ClusterCommand {
    /// Spawns `balsa cluster --nodes N --base-port PORT --data-dir DIR` leading its own process
    /// group; the command, and its stdout to read.
    fn spawn(n: u16, port: u16, dir: &std::path::Path) -> (ClusterCommand, ChildStdout) {
        use std::os::unix::process::CommandExt as _;
        let mut child = common::balsa_command(&["cluster", "--nodes", &n.to_string()])
            .args(["--base-port", &port.to_string()])
            .arg("--data-dir")
            .arg(dir)
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning balsa cluster");
        let stdout = child.stdout.take().expect("stdout is piped");
        (ClusterCommand { child }, stdout)
    }
}

impl Drop for ClusterCommand {
    fn drop(&mut self) {
        // The command and its nodes share the group the command leads.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// A port from which `n` consecutive loopback ports were free a moment ago.
fn consecutive_free_ports(n: u16) -> u16 {
    for _ in 0..50 {
        let first = free_loopback_addresses(1)[0].port();
        let Some(last) = first.checked_add(n - 1) else {
            continue;
        };
        let held: Vec<_> = (first..=last)
            .map_while(|port| std::net::UdpSocket::bind(("127.0.0.1", port)).ok())
            .collect();
        if held.len() == usize::from(n) {
            return first;
        }
    }
    panic!("no {n} consecutive free ports in 50 tries");
}

/// `balsa cluster --nodes N` for the smallest and the largest cluster the membership commands
/// are documented for (1 and 7): every node answers, all agree on one leader and on the
/// voters 1..=N.
#[test]
fn cluster_runs_one_to_seven_nodes_that_agree_on_a_leader_and_the_voters() {
    for n in [1u16, 7] {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let base = consecutive_free_ports(n);
        let (command, stdout) = ClusterCommand::spawn(n, base, dir.path());
        // The command prints its endpoints once every node listens (or exits: EOF).
        let endpoints = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| line.strip_prefix("endpoints: ").map(str::to_owned))
            .expect("balsa cluster printed its endpoints");
        let endpoints: Vec<std::net::SocketAddr> = endpoints
            .split(',')
            .map(|address| address.parse().expect("an address"))
            .collect();
        assert_eq!(endpoints.len(), usize::from(n));
        // The command made the cluster's keys in its data directory.
        let key = balsa::keyfile::read_key_file(&dir.path().join("client.key"))
            .expect("the client key balsa cluster made");
        let options = ClientOptions {
            timeout: std::time::Duration::from_millis(500),
            key: Some(key),
            ..ClientOptions::default()
        };
        let mut client = Client::new(endpoints.clone(), options).expect("a client");
        let voters: Vec<u64> = (1..=u64::from(n)).collect();
        let agreed = wait_until(ELECTION_TIMEOUT, || {
            let reports: Vec<_> = client
                .status_all(&endpoints)
                .into_iter()
                .collect::<Result<_, _>>()
                .ok()?;
            let leader = reports.iter().find(|r| r.role == "leader")?.id;
            reports
                .iter()
                .all(|r| r.leader == Some(leader) && r.voters == voters)
                .then_some(leader)
        });
        assert!(agreed.is_some(), "{n} nodes never agreed on a leader");
        drop(command);
    }
}

/// `balsa cluster --nodes 1` in `dir` on port `port`: the command, and what it printed up to its
/// last line of directions (`stop with Ctrl-C ...`).
fn cluster_in(dir: &std::path::Path, port: u16) -> (ClusterCommand, Vec<String>) {
    let (command, stdout) = ClusterCommand::spawn(1, port, dir);
    let mut said = Vec::new();
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let last = line.starts_with("stop with");
        said.push(line);
        if last {
            break;
        }
    }
    (command, said)
}

/// The value of the line of `said` that starts with `prefix`, as printed after it.
fn said_after<'a>(said: &'a [String], prefix: &str) -> &'a str {
    said.iter()
        .find_map(|line| line.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in {said:#?}"))
}

/// `balsa cluster` makes a peer key and a client key in its data directory (mode 0600), runs
/// its nodes with them, and prints the line that hands the client key to the client commands;
/// run again in the same directory, it reads the same keys back, so the restarted cluster
/// serves its data to the same clients.
#[test]
fn cluster_makes_its_keys_once_and_says_how_to_use_the_client_key() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let port = consecutive_free_ports(1);
    let (command, said) = cluster_in(dir.path(), port);
    let key_file = dir.path().join("client.key");
    for name in ["peer.key", "client.key"] {
        let mode = std::fs::metadata(dir.path().join(name))
            .expect("the key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    let exported = said_after(&said, "the client commands need the client key: ");
    assert_eq!(
        exported,
        format!("export BALSA_KEY_FILE={}", key_file.display()),
        "{said:#?}"
    );
    let keys_line = said_after(&said, "keys: ").to_owned();
    assert!(keys_line.contains(", made in "), "{keys_line}");
    let client = balsa::keyfile::read_key_file(&key_file).expect("the client key");
    assert!(keys_line.contains(&client.fingerprint()), "{keys_line}");
    assert!(!said.join("\n").contains(&client.to_hex()), "never the key");
    let endpoints = said_after(&said, "endpoints: ").to_owned();
    let env = [
        ("BALSA_KEY_FILE", key_file.to_str().expect("a UTF-8 path")),
        ("BALSA_ENDPOINTS", endpoints.as_str()),
    ];
    let put = wait_until(ELECTION_TIMEOUT, || {
        let put = balsa_with_env(&["put", "k", "kept"], &env);
        put.status.success().then_some(put)
    });
    assert!(put.is_some(), "no write to the new cluster with its key");
    let refused = balsa_with_env(
        &["get", "k", "--endpoints", &endpoints, "--timeout", "1s"],
        &[],
    );
    assert_eq!(refused.status.code(), Some(3), "{}", stderr(&refused));
    drop(command);

    // The same port: the node's address is part of its cluster's configuration. Once the
    // killed node's socket is gone (its data directory's lock goes with it).
    let freed = wait_until(ELECTION_TIMEOUT, || {
        std::net::UdpSocket::bind(("127.0.0.1", port))
            .ok()
            .map(drop)
    });
    assert!(freed.is_some(), "port {port} still taken");
    let (command, said) = cluster_in(dir.path(), port);
    assert_eq!(
        said_after(&said, "keys: "),
        keys_line.replace(", made in ", ", read from "),
        "the same keys"
    );
    let endpoints = said_after(&said, "endpoints: ").to_owned();
    let env = [
        ("BALSA_KEY_FILE", key_file.to_str().expect("a UTF-8 path")),
        ("BALSA_ENDPOINTS", endpoints.as_str()),
    ];
    let got = wait_until(ELECTION_TIMEOUT, || {
        let get = balsa_with_env(&["get", "k"], &env);
        get.status.success().then(|| stdout(&get))
    });
    assert_eq!(
        got.as_deref(),
        Some("kept\n"),
        "the restarted cluster's data"
    );
    drop(command);
}
