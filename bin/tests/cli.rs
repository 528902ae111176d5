//! The command line as a user meets it, through the real executable: `--help` and `--version`
//! on stdout with exit status 0, a refusal as one line on stderr with exit status 2, shell
//! completions, `BALSA_ENDPOINTS` and the log filter of `serve` (`BALSA_LOG`, then `RUST_LOG`).

#![allow(
    clippy::disallowed_methods,
    reason = "tests of real processes wait on wall-clock deadlines"
)]

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

use balsa::client::{Client, ClientOptions};
use common::{
    BALSA, Cluster, ELECTION_TIMEOUT, endpoints_arg, free_loopback_addresses, run_balsa, stderr,
    stdout, wait_until,
};

/// Runs `balsa ARGS` with `env` and neither of the variables the tests look at inherited.
fn balsa_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BALSA)
        .args(args)
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
    assert_eq!(
        stdout(&version),
        format!("balsa {}\n", env!("CARGO_PKG_VERSION"))
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
    let put = balsa_with_env(&["put", "k", "v"], &[("BALSA_ENDPOINTS", &endpoints)]);
    assert_eq!(put.status.code(), Some(0), "{}", stderr(&put));
    assert_eq!(stdout(&put), "OK\n");
    // The flag wins over the variable.
    let get = balsa_with_env(
        &["get", "k", "--endpoints", &endpoints],
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
    let address = free_loopback_addresses(1)[0];
    let log_path = dir.path().join("log");
    let log = File::create(&log_path).expect("creating the log file");
    let mut child = Command::new(BALSA)
        .args(["serve", "--id", "1", "--cluster", &format!("1={address}")])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env_remove("BALSA_LOG")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("spawning balsa serve");
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().expect("stdout is piped"));
    out.read_line(&mut line).expect("reading serve's line");
    assert!(line.contains("listening"), "serve did not start: {line:?}");
    // A lone node elects itself; it logs that before it answers a status as the leader.
    let mut client = Client::new(vec![address], ClientOptions::default()).expect("a client");
    let led = wait_until(ELECTION_TIMEOUT, || {
        let status = client.status(address).ok()?;
        (status.role == "leader").then_some(())
    });
    let _ = child.kill();
    let _ = child.wait();
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
    // `[   0.231s INFO  node 1] now Leader in term 1, leader Some(1)`
    let (prefix, _) = leader_line
        .split_once("s INFO  node 1] now Leader")
        .expect("the format");
    let seconds = prefix.strip_prefix('[').expect("a leading bracket");
    assert_eq!(seconds.len(), 8, "{leader_line}");
    assert!(seconds.trim().parse::<f64>().is_ok(), "{leader_line}");

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
    use std::os::unix::process::CommandExt as _;
    for n in [1u16, 7] {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let base = consecutive_free_ports(n);
        let mut child = Command::new(BALSA)
            .args(["cluster", "--nodes", &n.to_string()])
            .args(["--base-port", &base.to_string()])
            .arg("--data-dir")
            .arg(dir.path())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning balsa cluster");
        let stdout = child.stdout.take().expect("stdout is piped");
        let command = ClusterCommand { child };
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
        let options = ClientOptions {
            timeout: std::time::Duration::from_millis(500),
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
