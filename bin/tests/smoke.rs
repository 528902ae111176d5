//! A quick multi-process smoke test of the `balsa` command: three `balsa serve` processes on
//! loopback elect a leader, and the client commands write and read through them. Plus the
//! configuration errors `serve` refuses, which need no cluster.
//!
//! Heavier multi-process tests (kill -9, restart cycles) use the same helpers, in
//! `tests/common/mod.rs`.

mod common;

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::Stdio;

use common::{
    Cluster, ELECTION_TIMEOUT, assert_exit_saying, endpoints_arg, run_balsa, stderr, stdout,
};

#[test]
fn three_serve_processes_elect_a_leader_and_serve_put_and_get_from_every_node() {
    let cluster = Cluster::start(3);
    let (leader, term) = cluster.wait_for_leader(ELECTION_TIMEOUT);
    assert!((1..=3).contains(&leader) && term >= 1);

    let put = cluster.balsa(&["put", "k", "v"]);
    assert_eq!(put.status.code(), Some(0), "put: {}", stderr(&put));
    assert_eq!(stdout(&put), "OK\n");

    for endpoint in cluster.endpoints() {
        let get = cluster.balsa_at(&[endpoint], &["get", "k"]);
        assert_eq!(
            get.status.code(),
            Some(0),
            "get at {endpoint}: {}",
            stderr(&get)
        );
        assert_eq!(stdout(&get), "v\n", "get at {endpoint}");
    }

    let missing = cluster.balsa(&["get", "missing"]);
    assert_eq!(missing.status.code(), Some(1), "{}", stderr(&missing));
    assert_eq!(stdout(&missing), "");

    let status = cluster.balsa(&["status", "--json"]);
    assert_eq!(status.status.code(), Some(0), "{}", stderr(&status));
    let json = stdout(&status);
    assert!(
        json.starts_with('[') && json.trim_end().ends_with(']'),
        "{json}"
    );
    assert_eq!(json.matches("\"role\":\"leader\"").count(), 1, "{json}");

    // A second process on node 1's data directory is refused, and node 1 keeps serving.
    let second = cluster.serve_to_exit(1, &cluster.data_dir(1), &[]);
    assert_exit_saying(&second, 2, "is in use by another process");
}

/// `balsa status` prints a node's row as soon as it answers, though a silent endpoint is listed
/// first and still waited for; the silent one's row comes last, once `--timeout` has passed.
/// `--json` waits for both and keeps the order given.
#[test]
fn status_prints_each_answer_as_it_comes_and_a_silent_endpoint_last() {
    let cluster = Cluster::start(1);
    cluster.wait_for_leader(ELECTION_TIMEOUT);
    let silent = UdpSocket::bind("127.0.0.1:0").expect("a socket that never answers");
    let silent = silent.local_addr().expect("bound");
    let node = cluster.address(1);
    let endpoints = endpoints_arg(&[silent, node]);

    let mut waiting = common::balsa_command(&["status", "--endpoints", &endpoints])
        .args(["--timeout", "10m"])
        .args(cluster.client_args())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("running balsa status");
    let mut lines = BufReader::new(waiting.stdout.take().expect("piped")).lines();
    let heading = lines.next().expect("a heading").expect("text");
    let row = lines.next().expect("the node's row").expect("text");
    let still_waiting = waiting.try_wait().expect("polling balsa status").is_none();
    let _ = waiting.kill();
    let _ = waiting.wait();
    assert!(heading.starts_with("ENDPOINT"), "{heading}");
    assert!(
        row.starts_with(&node.to_string()) && row.contains("leader"),
        "{row}"
    );
    assert!(
        still_waiting,
        "the row came while the silent endpoint was waited for"
    );

    let bounded = cluster.balsa_at(&[silent, node], &["status", "--timeout", "300ms"]);
    assert_eq!(bounded.status.code(), Some(0), "{}", stderr(&bounded));
    let table = stdout(&bounded);
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 3, "{table}");
    assert!(rows[1].starts_with(&node.to_string()), "{table}");
    assert!(
        rows[2].starts_with(&format!("{silent:<22} unreachable: no answer within")),
        "{table}"
    );

    let json = cluster.balsa_at(&[silent, node], &["status", "--json", "--timeout", "300ms"]);
    assert_eq!(json.status.code(), Some(0), "{}", stderr(&json));
    let parsed: serde_json::Value = serde_json::from_str(&stdout(&json)).expect("one document");
    assert_eq!(parsed[0]["endpoint"], silent.to_string());
    assert!(parsed[0]["error"].is_string());
    assert_eq!(parsed[1]["endpoint"], node.to_string());
}

#[test]
fn serve_refuses_bad_configuration_with_exit_status_2() {
    let cases: [&[&str]; 4] = [
        &[
            "serve",
            "--id",
            "4",
            "--cluster",
            "1=127.0.0.1:1",
            "--data-dir",
            "unused",
            "--insecure",
        ],
        &[
            "serve",
            "--id",
            "1",
            "--cluster",
            "1=127.0.0.1:1,1=127.0.0.1:2",
            "--data-dir",
            "x",
            "--insecure",
        ],
        &[
            "serve",
            "--id",
            "1",
            "--cluster",
            "1=nowhere",
            "--data-dir",
            "unused",
            "--insecure",
        ],
        &[
            "serve",
            "--id",
            "1",
            "--cluster",
            "1=127.0.0.1:1",
            "--data-dir",
            "unused",
            "--election-ticks",
            "4-30",
            "--insecure",
        ],
    ];
    for args in cases {
        let output = run_balsa(args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        let message = stderr(&output);
        assert_eq!(message.lines().count(), 1, "one line: {message}");
        assert!(message.starts_with("balsa serve: "), "{message}");
    }
}

#[test]
fn bench_drives_a_running_cluster_and_reports_json_and_an_hgrm_file() {
    let cluster = Cluster::start(3);
    cluster.wait_for_leader(ELECTION_TIMEOUT);
    let dir = tempfile::tempdir().expect("temp dir");
    let hgrm = dir.path().join("latency.hgrm");
    let hgrm_arg = hgrm.to_str().expect("utf-8 temp path");
    let bench = cluster.balsa(&[
        "bench",
        "--clients",
        "4",
        "--ops",
        "200",
        "--warmup",
        "20",
        "--json",
        "--hgrm",
        hgrm_arg,
    ]);
    assert_eq!(bench.status.code(), Some(0), "bench: {}", stderr(&bench));
    let json = stdout(&bench);
    assert!(json.contains("\"ops\":200,"), "{json}");
    assert!(json.contains("\"clients\":4,"), "{json}");
    assert!(json.contains("\"errors\":0}"), "{json}");
    for key in [
        "ops_per_sec",
        "p50_us",
        "p90_us",
        "p99_us",
        "p999_us",
        "max_us",
    ] {
        assert!(json.contains(&format!("\"{key}\":")), "{key} in {json}");
    }
    let text = std::fs::read_to_string(&hgrm).expect("the hgrm file was written");
    assert!(text.contains("Total count    =          200]"), "{text}");

    // Every bench write went through Raft: one of its keys reads back from any node.
    let get = cluster.balsa(&["get", "bench-0-0"]);
    assert_eq!(get.status.code(), Some(0), "get: {}", stderr(&get));
    assert_eq!(stdout(&get).trim_end().len(), 100);
}

/// `balsa bench --shared-sockets`: clients multiplexed on one socket per load thread, their
/// writes batched into shared datagrams, all complete, and each client's writes land.
#[test]
fn bench_with_shared_sockets_completes_every_write() {
    let cluster = Cluster::start(3);
    cluster.wait_for_leader(ELECTION_TIMEOUT);
    let bench = cluster.balsa(&[
        "bench",
        "--clients",
        "8",
        "--ops",
        "400",
        "--warmup",
        "40",
        "--shared-sockets",
        "--json",
    ]);
    assert_eq!(bench.status.code(), Some(0), "bench: {}", stderr(&bench));
    let json = stdout(&bench);
    assert!(json.contains("\"ops\":400,"), "{json}");
    assert!(json.contains("\"clients\":8,"), "{json}");
    assert!(json.contains("\"errors\":0}"), "{json}");

    // The first and the last client's first keys read back: both went through Raft.
    for key in ["bench-0-0", "bench-7-0"] {
        let get = cluster.balsa(&["get", key]);
        assert_eq!(get.status.code(), Some(0), "get {key}: {}", stderr(&get));
        assert_eq!(stdout(&get).trim_end().len(), 100, "{key}");
    }
}
