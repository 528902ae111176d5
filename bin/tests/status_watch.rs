//! `balsa status --watch` against a real cluster, its stdout a pipe: refreshes come one after
//! another, each after its `--- TIME` line (with `--json`, one object per line); a write made
//! between two of them shows in the later; a node that is stopped shows as unreachable in the
//! refreshes that follow, which go on; SIGTERM ends the watch with exit status 0.

#![allow(
    clippy::disallowed_methods,
    reason = "tests of real processes read their output on a thread and wait on deadlines"
)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Cluster, ELECTION_TIMEOUT, balsa_command, endpoints_arg, stdout, wait_until};

/// How long a refresh that is expected may take to come: many intervals on a busy machine.
const REFRESH_BOUND: Duration = Duration::from_secs(20);

/// A running `balsa status --watch`, its stdout read line by line on a thread; killed when
/// dropped.
struct Watcher {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Watcher {
    /// Starts `balsa status --watch --interval 200ms` on every node of `cluster`, with `extra`.
    fn start(cluster: &Cluster, extra: &[&str]) -> Watcher {
        let endpoints = endpoints_arg(&cluster.endpoints());
        let mut args = vec![
            "status",
            "--watch",
            "--interval",
            "200ms",
            "--endpoints",
            &endpoints,
        ];
        args.extend(extra);
        let mut child = balsa_command(&args)
            .args(cluster.client_args())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning balsa status --watch");
        let output = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let read = Arc::clone(&lines);
        // Ends when the watcher's stdout closes (it exited, or was killed).
        std::thread::spawn(move || {
            for line in output.lines().map_while(Result::ok) {
                read.lock().expect("not poisoned").push(line);
            }
        });
        Watcher { child, lines }
    }

    /// Every line printed so far.
    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("not poisoned").clone()
    }

    /// The refreshes printed so far and complete (another began after them): each its lines
    /// after its `--- TIME` line.
    fn refreshes(&self) -> Vec<Vec<String>> {
        let mut refreshes: Vec<Vec<String>> = Vec::new();
        for line in self.lines() {
            if line.starts_with("--- ") {
                refreshes.push(Vec::new());
            } else if let Some(refresh) = refreshes.last_mut() {
                refresh.push(line);
            }
        }
        // The last may still be printing.
        refreshes.pop();
        refreshes
    }

    /// Waits (at most [`REFRESH_BOUND`]) for a refresh after the first `after` for which
    /// `wanted` gives a value; returns its position and the value.
    fn wait_for<T>(
        &self,
        after: usize,
        what: &str,
        wanted: impl Fn(&[String]) -> Option<T>,
    ) -> (usize, T) {
        let found = wait_until(REFRESH_BOUND, || {
            let refreshes = self.refreshes();
            refreshes
                .iter()
                .enumerate()
                .skip(after)
                .find_map(|(k, refresh)| wanted(refresh).map(|value| (k, value)))
        });
        found.unwrap_or_else(|| {
            panic!(
                "no refresh {what} within {REFRESH_BOUND:?}; printed:\n{}",
                self.lines().join("\n")
            )
        })
    }

    /// Sends SIGTERM; waits (at most 10 s) for the watch to exit; whether it exited 0.
    fn terminate(&mut self) -> bool {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -TERM: {status}");
        let exited = wait_until(Duration::from_secs(10), || {
            self.child.try_wait().expect("waiting for the watch")
        });
        exited.expect("the watch exits on SIGTERM").success()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The row of `endpoint` in a refresh.
fn row(refresh: &[String], endpoint: SocketAddr) -> Option<&str> {
    let start = format!("{endpoint} ");
    refresh
        .iter()
        .find(|line| line.starts_with(&start))
        .map(String::as_str)
}

/// The COMMIT column of the leader's row in a refresh, if a node there leads.
fn leader_commit(refresh: &[String]) -> Option<u64> {
    refresh.iter().find_map(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        // ENDPOINT ID ROLE TERM LEADER FIRST SNAPSHOT COMMIT ...
        (words.get(2) == Some(&"leader")).then(|| words.get(7)?.parse().ok())?
    })
}

#[test]
fn the_watch_shows_a_write_between_refreshes_and_outlives_a_stopped_node() {
    let mut cluster = Cluster::start(3);
    let (leader, _) = cluster.wait_for_leader(ELECTION_TIMEOUT);
    let mut watcher = Watcher::start(&cluster, &[]);
    let mut json = Watcher::start(&cluster, &["--json"]);
    let (before, commit) = watcher.wait_for(0, "with a leader", |refresh| {
        assert_eq!(refresh[0].split_whitespace().next(), Some("ENDPOINT"));
        leader_commit(refresh)
    });
    let put = cluster.balsa(&["put", "watched", "yes"]);
    assert_eq!(stdout(&put), "OK\n");
    let (after, later) = watcher.wait_for(before + 1, "showing the write", |refresh| {
        leader_commit(refresh).filter(|later| *later > commit)
    });
    assert!(after > before && later > commit);
    // A follower stops: its row says so in the refreshes that follow, and they go on.
    let follower = cluster
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .expect("three nodes");
    let address = cluster.address(follower);
    cluster.kill(follower);
    let unreachable = |refresh: &[String]| {
        row(refresh, address)
            .is_some_and(|row| row.contains("unreachable"))
            .then_some(())
    };
    let (first, ()) = watcher.wait_for(after + 1, "showing the stopped node", unreachable);
    let (second, ()) = watcher.wait_for(first + 1, "after that", unreachable);
    assert!(second > first);
    let last = &watcher.refreshes()[second];
    assert!(leader_commit(last).is_some(), "the others still answer");
    assert!(watcher.terminate(), "exit status 0 on SIGTERM");
    // The JSON watch: an object per line, the stopped node's error in the latest ones.
    let stopped = address.to_string();
    let shows_stopped = wait_until(REFRESH_BOUND, || {
        let lines = json.lines();
        let parsed: Vec<serde_json::Value> = lines
            .iter()
            .map(|line| serde_json::from_str(line).expect("a JSON object per line"))
            .collect();
        for refresh in &parsed {
            assert!(
                refresh["time"]
                    .as_str()
                    .is_some_and(|time| time.ends_with('Z'))
            );
            assert_eq!(refresh["endpoints"].as_array().map(Vec::len), Some(3));
        }
        parsed
            .last()?
            .get("endpoints")?
            .as_array()?
            .iter()
            .any(|node| node["endpoint"] == stopped.as_str() && node["error"].is_string())
            .then_some(parsed.len())
    });
    assert!(
        shows_stopped.is_some_and(|count| count >= 2),
        "{:?}",
        json.lines()
    );
    assert!(json.terminate(), "exit status 0 on SIGTERM");
}

#[test]
fn interval_needs_watch_and_a_duration() {
    for (args, expected) in [
        (
            &["status", "--interval", "1s"][..],
            "the following required arguments were not provided: --watch",
        ),
        (
            &["status", "--watch", "--interval", "0"],
            "longer than zero",
        ),
    ] {
        let output = common::run_balsa(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let message = common::stderr(&output);
        assert!(message.contains(expected), "{args:?}: {message}");
    }
}
