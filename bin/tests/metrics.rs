//! `serve --metrics-addr`: a real `balsa serve` scraped over HTTP. The body is parsed with
//! `prometheus-parse`, a parser of Prometheus' text format this project did not write; the
//! counters move as writes happen; `/health` says 200 with a leader and 503 without one; a
//! taken metrics port is refused before the node touches its data directory.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use prometheus_parse::{Sample, Scrape, Value};

use common::{Cluster, ELECTION_TIMEOUT, assert_exit_saying, stderr, wait_until};

/// A loopback TCP address whose port was free a moment ago.
fn free_tcp_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free TCP port");
    listener.local_addr().expect("its address")
}

/// `GET path` from `address`: the status code and the body, or `None` if nothing answers yet.
fn get(address: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// The scrape at `address`, parsed; the samples by name and labels.
fn scrape(address: SocketAddr) -> Scrape {
    let (status, body) = wait_until(ELECTION_TIMEOUT, || get(address, "/metrics"))
        .expect("the metrics endpoint answers");
    assert_eq!(status, 200, "{body}");
    Scrape::parse(body.lines().map(|line| Ok(line.to_owned()))).expect("a valid exposition")
}

/// The first sample of the metric `name`.
fn sample<'a>(scrape: &'a Scrape, name: &str) -> &'a Sample {
    scrape
        .samples
        .iter()
        .find(|sample| sample.metric == name)
        .unwrap_or_else(|| panic!("no sample {name}"))
}

/// The value of an unlabelled counter or gauge.
fn value(scrape: &Scrape, name: &str) -> f64 {
    let sample = sample(scrape, name);
    match sample.value {
        Value::Counter(value) | Value::Gauge(value) => value,
        ref other => panic!("{name} is {other:?}, not a counter or gauge"),
    }
}

/// The observations a histogram counted (its `+Inf` bucket).
fn histogram_count(scrape: &Scrape, name: &str) -> f64 {
    let sample = sample(scrape, name);
    let Value::Histogram(ref buckets) = sample.value else {
        panic!("{name} is {:?}, not a histogram", sample.value);
    };
    assert!(
        buckets
            .windows(2)
            .all(|pair| pair[0].count <= pair[1].count),
        "{name}: cumulative buckets never decrease"
    );
    buckets
        .iter()
        .find(|bucket| bucket.less_than.is_infinite())
        .expect("a +Inf bucket")
        .count
}

#[test]
fn a_scrape_parses_and_its_counters_move_with_writes() {
    let metrics = free_tcp_address();
    let cluster = Cluster::start_with(1, &["--metrics-addr", &metrics.to_string()]);
    cluster.wait_for_leader(ELECTION_TIMEOUT);
    let before = scrape(metrics);

    // Every family the issue names, with its type.
    let types: BTreeMap<&str, &str> = [
        ("balsa_wal_fsync_duration_seconds", "histogram"),
        ("balsa_wal_bytes_written_total", "counter"),
        ("balsa_proposals_committed_total", "counter"),
        ("balsa_proposals_applied_total", "counter"),
        ("balsa_proposals_pending", "gauge"),
        ("balsa_proposals_failed_total", "counter"),
        ("balsa_leader_changes_seen_total", "counter"),
        ("balsa_has_leader", "gauge"),
        ("balsa_is_leader", "gauge"),
        ("balsa_term", "gauge"),
        ("balsa_commit_index", "gauge"),
        ("balsa_applied_index", "gauge"),
        ("balsa_snapshot_save_duration_seconds", "histogram"),
        ("balsa_snapshots_sent_total", "counter"),
        ("balsa_net_datagrams_received_total", "counter"),
        ("balsa_net_datagrams_sent_total", "counter"),
        ("balsa_net_datagrams_dropped_total", "counter"),
        ("balsa_peer_round_trip_seconds", "histogram"),
        ("balsa_read_index_total", "counter"),
        ("balsa_client_sessions", "gauge"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_cpu_seconds_total", "counter"),
        ("process_open_fds", "gauge"),
    ]
    .into_iter()
    .collect();
    let (_, body) = get(metrics, "/metrics").expect("answers");
    for (name, kind) in &types {
        assert!(
            body.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} is not a {kind}:\n{body}"
        );
        assert!(before.docs.contains_key(*name), "{name} has no HELP");
    }
    assert_eq!(value(&before, "balsa_is_leader"), 1.0);
    assert_eq!(value(&before, "balsa_has_leader"), 1.0);
    assert!(value(&before, "balsa_leader_changes_seen_total") >= 1.0);
    assert!(value(&before, "process_resident_memory_bytes") > 0.0);
    let auth_failed = before.samples.iter().find(|sample| {
        sample.metric == "balsa_net_datagrams_dropped_total"
            && sample.labels.get("reason") == Some("auth_failed")
    });
    assert!(auth_failed.is_some(), "drops are labelled by reason");

    const WRITES: usize = 5;
    for n in 0..WRITES {
        let put = cluster.balsa(&["put", &format!("k{n}"), "v"]);
        assert_eq!(put.status.code(), Some(0), "{}", stderr(&put));
    }
    let get_output = cluster.balsa(&["get", "k0"]);
    assert_eq!(get_output.status.code(), Some(0), "{}", stderr(&get_output));

    // The put answers once applied: what the node counts is there by the next scrape.
    let after = scrape(metrics);
    let grew = |name: &str| value(&after, name) - value(&before, name);
    assert!(grew("balsa_proposals_applied_total") >= WRITES as f64);
    assert!(grew("balsa_proposals_committed_total") >= WRITES as f64);
    assert!(grew("balsa_commit_index") >= WRITES as f64);
    assert!(grew("balsa_wal_bytes_written_total") > 0.0);
    assert!(grew("balsa_net_datagrams_received_total") >= WRITES as f64);
    assert!(grew("balsa_read_index_total") >= 1.0);
    assert!(
        histogram_count(&after, "balsa_wal_fsync_duration_seconds")
            >= histogram_count(&before, "balsa_wal_fsync_duration_seconds") + WRITES as f64,
        "each write was synced"
    );
    // Each `balsa put` is a client of its own, with a session of its own.
    assert!(value(&after, "balsa_client_sessions") >= WRITES as f64);
}

#[test]
fn health_is_200_with_a_leader_and_503_without_one() {
    let metrics = free_tcp_address();
    let mut cluster = Cluster::start(3);
    cluster.wait_for_leader(ELECTION_TIMEOUT);
    // Node 1 again, with the endpoint: the others keep the cluster going meanwhile.
    cluster.kill(1);
    cluster.start_node_with(1, &["--metrics-addr", &metrics.to_string()]);
    let healthy = wait_until(ELECTION_TIMEOUT, || {
        get(metrics, "/health").filter(|(status, _)| *status == 200)
    });
    let (_, body) = healthy.expect("node 1 knows a leader again");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["health"], "true", "{body}");

    // Without a quorum node 1 loses its leader (or, leading, steps down: check quorum).
    for id in [2, 3] {
        cluster.kill(id);
    }
    let unhealthy = wait_until(ELECTION_TIMEOUT, || {
        get(metrics, "/health").filter(|(status, _)| *status == 503)
    });
    let (_, body) = unhealthy.expect("node 1 says it has no leader");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["health"], "false", "{body}");
    assert_eq!(json["reason"], "no leader", "{body}");

    let (status, _) = get(metrics, "/nothing-here").expect("answers");
    assert_eq!(status, 404);
}

#[test]
fn a_taken_metrics_port_is_refused_before_the_data_directory_is_touched() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address");
    let cluster = Cluster::start(1);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data_dir = dir.path().join("fresh");
    let output = cluster.serve_to_exit(1, &data_dir, &["--metrics-addr", &address.to_string()]);
    assert_exit_saying(&output, 2, "--metrics-addr");
    assert!(!data_dir.exists(), "nothing was written");
}
