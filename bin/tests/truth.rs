//! Client errors that tell the truth, through the real executable: a transfer that did not
//! happen fails (exit 2 for a node that is not a voter, 3 for one that did not take over in
//! time); a read nobody answered says the read failed, and that no node answered at all; a
//! value over the limit names the limit; `bench` against nothing stops early, with `null`
//! percentiles, and refuses an output file it cannot write before it runs; an empty address or
//! port 0 is a usage error, and a host name is an address.

mod common;

use std::net::{SocketAddr, UdpSocket};

use common::{
    Cluster, ELECTION_TIMEOUT, assert_exit_saying, endpoints_arg, run_balsa, stderr, stdout,
    wait_until,
};

/// Loopback addresses of sockets that are bound and never answer (kept while the guard lives).
fn silent_endpoints(n: usize) -> (Vec<UdpSocket>, Vec<SocketAddr>) {
    let sockets: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("binding a silent socket"))
        .collect();
    let addresses = sockets
        .iter()
        .map(|socket| socket.local_addr().expect("a bound socket has an address"))
        .collect();
    (sockets, addresses)
}

#[test]
fn transfer_waits_for_the_new_leader_and_fails_when_the_transfer_cannot_happen() {
    let mut cluster = Cluster::start(3);
    let (leader, _) = cluster.wait_for_leader(ELECTION_TIMEOUT);
    let others: Vec<u64> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != leader)
        .collect();

    // No such node: refused at once, as usage (exit 2), saying why.
    let unknown = cluster.balsa(&["transfer", "9"]);
    assert_exit_saying(
        &unknown,
        2,
        "node 9 is not a member of this cluster (voters: 1, 2, 3)",
    );
    assert_eq!(stdout(&unknown), "");

    // A voter that is up: OK once it leads, and it does.
    let target = others[0];
    let moved = cluster.balsa(&["transfer", &target.to_string()]);
    assert_eq!(moved.status.code(), Some(0), "{}", stderr(&moved));
    assert_eq!(stdout(&moved), "OK\n");
    let leading = wait_until(ELECTION_TIMEOUT, || {
        cluster
            .statuses()
            .into_iter()
            .flatten()
            .find_map(|report| (report.role == "leader").then_some(report.id))
    });
    assert_eq!(leading, Some(target));

    // A voter that is down: the leader gives the transfer up; the command says so, exit 3.
    let down = others[1];
    cluster.kill(down);
    let running = cluster.running_endpoints();
    let failed = cluster.balsa_at(
        &running,
        &["transfer", &down.to_string(), "--timeout", "2s"],
    );
    assert_eq!(failed.status.code(), Some(3), "{}", stderr(&failed));
    let message = stderr(&failed);
    assert!(
        message.contains(&format!("leadership did not move to node {down} within")),
        "{message}"
    );
    assert!(
        message.contains(&format!("node {down} did not answer at any endpoint")),
        "{message}"
    );
    assert_eq!(stdout(&failed), "");
}

#[test]
fn against_no_cluster_a_read_says_the_read_failed_and_that_no_node_answered() {
    let (_silent, endpoints) = silent_endpoints(2);
    let list = endpoints_arg(&endpoints);
    let named = endpoints
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let timeouts = ["--timeout", "400ms", "--attempt-timeout", "100ms"];

    let get = run_balsa(&[&["get", "k", "--endpoints", &list][..], &timeouts].concat());
    assert_eq!(get.status.code(), Some(3), "{}", stderr(&get));
    let message = stderr(&get);
    assert!(
        message.starts_with(&format!(
            "balsa get: the read failed: no Balsa node answered at {named} within"
        )),
        "{message}"
    );
    assert!(message.contains("is a cluster running?"), "{message}");
    assert!(
        !message.contains("write"),
        "a read is not a write: {message}"
    );

    let put = run_balsa(&[&["put", "k", "v", "--endpoints", &list][..], &timeouts].concat());
    assert_exit_saying(
        &put,
        3,
        "(if one is, the write may or may not have been applied)",
    );
}

#[test]
fn a_value_over_the_limit_is_refused_naming_the_limit() {
    // Refused before anything is sent: no cluster needed.
    let (_silent, endpoints) = silent_endpoints(1);
    let value = "v".repeat(70_000);
    let put = run_balsa(&[
        "put",
        "k",
        &value,
        "--endpoints",
        &endpoints_arg(&endpoints),
    ]);
    assert_eq!(put.status.code(), Some(2), "{}", stderr(&put));
    assert_eq!(
        stderr(&put),
        "balsa put: value of 70,000 bytes exceeds the maximum value size of 63,488 bytes \
         (keys: at most 1,024 bytes)\n"
    );
}

#[test]
fn an_empty_endpoint_or_port_0_is_a_usage_error_and_a_host_name_is_an_address() {
    for endpoints in ["", "127.0.0.1:0", "127.0.0.1:7001,"] {
        let get = run_balsa(&["get", "k", "--endpoints", endpoints]);
        assert_eq!(
            get.status.code(),
            Some(2),
            "{endpoints:?}: {}",
            stderr(&get)
        );
        assert_eq!(stderr(&get).lines().count(), 1, "{}", stderr(&get));
    }
    let cluster = Cluster::start(1);
    cluster.wait_for_leader(ELECTION_TIMEOUT);
    let by_name = format!("localhost:{}", cluster.address(1).port());
    let mut args = vec!["put", "k", "v", "--endpoints", &by_name];
    let key_file = cluster.key_file().map(|file| file.display().to_string());
    if let Some(file) = &key_file {
        args.extend(["--key-file", file]);
    }
    let put = run_balsa(&args);
    assert_eq!(put.status.code(), Some(0), "{}", stderr(&put));
    assert_eq!(stdout(&put), "OK\n");
}

#[test]
fn bench_against_no_cluster_stops_early_with_null_percentiles() {
    let (_silent, endpoints) = silent_endpoints(1);
    let bench = run_balsa(&[
        "bench",
        "--endpoints",
        &endpoints_arg(&endpoints),
        "--clients",
        "2",
        "--ops",
        "100000",
        "--warmup",
        "0",
        "--timeout",
        "300ms",
        "--attempt-timeout",
        "100ms",
        "--json",
    ]);
    let message = assert_exit_saying(&bench, 3, "balsa bench: stopped early: ");
    assert!(message.contains("no Balsa node answered at"), "{message}");
    let json: serde_json::Value =
        serde_json::from_str(stdout(&bench).trim()).expect("one JSON object");
    assert_eq!(json["ops"], 0, "{json}");
    for key in ["p50_us", "p90_us", "p99_us", "p999_us", "max_us"] {
        assert_eq!(json[key], serde_json::Value::Null, "{key}: {json}");
    }
    assert!(
        json["errors"]
            .as_u64()
            .is_some_and(|errors| (1..=2).contains(&errors))
    );
}

#[test]
fn bench_refuses_an_output_file_it_cannot_write_before_it_runs() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (_silent, endpoints) = silent_endpoints(1);
    let missing = dir.path().join("no-such-directory");
    for (flag, file) in [("--hgrm", "run.hgrm"), ("--plot", "run.svg")] {
        let path = missing.join(file);
        let bench = run_balsa(&[
            "bench",
            "--endpoints",
            &endpoints_arg(&endpoints),
            flag,
            path.to_str().expect("a UTF-8 path"),
        ]);
        assert_eq!(bench.status.code(), Some(2), "{}", stderr(&bench));
        let message = stderr(&bench);
        assert!(
            message.starts_with(&format!("balsa bench: cannot write {}", path.display())),
            "{message}"
        );
        // Refused before the run: no operation was tried, so none failed.
        assert!(!message.contains("failed"), "{message}");
        assert_eq!(stdout(&bench), "");
    }
}
