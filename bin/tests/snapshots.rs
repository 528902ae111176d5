//! Snapshots and log compaction end to end, with real `balsa serve` processes: the data
//! directories stay bounded under a long write load, a follower stopped during the writes
//! catches up by snapshot, and a follower whose data directory was wiped is replaced under a
//! new id by a fresh node that catches up by snapshot.

mod common;

use std::path::Path;
use std::time::Duration;

use balsa::client::Client;
use common::{Cluster, ELECTION_TIMEOUT, stderr, wait_until};

/// Small thresholds so that 50,000 writes make many snapshots and segments.
const SERVE_ARGS: [&str; 6] = [
    "--snapshot-entries",
    "1000",
    "--snapshot-trailing",
    "100",
    "--segment-bytes",
    "1048576",
];

/// How large a node's data directory may grow. The state is at most 8 clients × 1,024 bench keys
/// of ~120 bytes plus 200 checked keys: about 1 MB, so a snapshot file is about 1 MB and two are
/// kept; the log keeps the active 1 MiB segment, the prepared one, and the segments not yet
/// compacted (at most 1,100 entries of ~150 bytes since the last snapshot's trailing point,
/// which can straddle one more segment). 2 + 4 × 1 MiB, with room: 8 MiB.
const DATA_DIR_BOUND: u64 = 8 << 20;

/// Long enough for a follower to catch up under this test machine's load.
const CATCH_UP: Duration = Duration::from_secs(30);

#[test]
fn compaction_keeps_data_bounded_and_lagging_or_wiped_followers_catch_up_by_snapshot() {
    let mut cluster = Cluster::start_with(3, &SERVE_ARGS);
    let (leader, _) = cluster.wait_for_leader(ELECTION_TIMEOUT);
    let followers: Vec<u64> = cluster
        .ids()
        .into_iter()
        .filter(|&id| id != leader)
        .collect();
    let (lagging, wiped) = (followers[0], followers[1]);

    bench(&cluster, 20_000);
    cluster.kill(lagging);
    let stopped_at = leader_commit(&cluster);
    bench(&cluster, 15_000);
    cluster.start_node(lagging);
    let report = caught_up(&cluster, lagging);
    assert!(
        report.snapshot_index > stopped_at,
        "node {lagging} stopped at {stopped_at} and caught up to {} with snapshot {} (first \
         index {}): not by snapshot",
        report.applied_index,
        report.snapshot_index,
        report.first_index
    );

    // A node that lost its disk forgot its votes and acknowledgements: it comes back under a
    // new id, replacing the old one in one membership change (README, "Membership").
    cluster.kill(wiped);
    cluster.wipe(wiped);
    let (fresh, address) = cluster.add_member();
    cluster.start_node_with(fresh, &["--join"]);
    let new_arg = format!("{fresh}={address}");
    let replaced = cluster.balsa_at(
        &cluster.running_endpoints(),
        &["members", "replace", &wiped.to_string(), &new_arg],
    );
    assert!(replaced.status.success(), "replace: {}", stderr(&replaced));
    let values = checked_writes(&cluster);
    bench(&cluster, 15_000);
    let report = caught_up(&cluster, fresh);
    assert!(
        report.snapshot_index > 0,
        "node {fresh} caught up without a snapshot"
    );

    for id in cluster
        .ids()
        .into_iter()
        .filter(|id| cluster.is_running(*id))
    {
        let size = dir_size(&cluster.data_dir(id));
        assert!(
            size <= DATA_DIR_BOUND,
            "node {id}'s data directory holds {size} bytes, over {DATA_DIR_BOUND}"
        );
        let mut client = Client::new(vec![cluster.address(id)], cluster.client_options())
            .expect("a client of one node");
        for (key, value) in &values {
            let got = client.get(key.as_bytes(), true).expect("a stale read");
            assert_eq!(got.as_deref(), Some(value.as_bytes()), "{key} at node {id}");
        }
        let sample = client
            .get(b"bench-7-1023", true)
            .expect("a stale read")
            .expect("the bench key is there");
        assert_eq!(sample, vec![b'v'; 100], "bench-7-1023 at node {id}");
    }
}

/// `ops` closed-loop writes from 8 clients (keys `bench-C-N`, values of 100 × `v`).
fn bench(cluster: &Cluster, ops: u64) {
    let ops = ops.to_string();
    let args = ["bench", "--clients", "8", "--ops", &ops, "--warmup", "0"];
    let output = cluster.balsa_at(&cluster.running_endpoints(), &args);
    assert_eq!(output.status.code(), Some(0), "bench: {}", stderr(&output));
}

/// 200 writes of distinct values, read back from every node at the end.
fn checked_writes(cluster: &Cluster) -> Vec<(String, String)> {
    let mut client = Client::new(cluster.running_endpoints(), cluster.client_options())
        .expect("a client of the running nodes");
    (0..200)
        .map(|i| {
            let (key, value) = (format!("checked-{i}"), format!("value-{i}"));
            client
                .put(key.as_bytes(), value.as_bytes())
                .expect("a checked write");
            (key, value)
        })
        .collect()
}

/// The leader's commit index (waiting for a leader).
fn leader_commit(cluster: &Cluster) -> u64 {
    let (leader, _) = cluster.wait_for_leader(ELECTION_TIMEOUT);
    cluster.statuses()[index(leader)]
        .as_ref()
        .map(|report| report.commit_index)
        .expect("the leader answers")
}

/// Waits until node `id` has applied everything the leader has committed; returns its report.
fn caught_up(cluster: &Cluster, id: u64) -> balsa::runtime::wire::StatusReport {
    let target = leader_commit(cluster);
    wait_until(CATCH_UP, || {
        cluster.statuses()[index(id)]
            .clone()
            .filter(|report| report.applied_index >= target)
    })
    .unwrap_or_else(|| {
        panic!(
            "node {id} did not reach {target} within {CATCH_UP:?}; its log:\n{}",
            cluster.log_tail(id, 30)
        )
    })
}

fn index(id: u64) -> usize {
    usize::try_from(id - 1).expect("small ids")
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("listing a data directory")
        .map(|entry| {
            let entry = entry.expect("a directory entry");
            let meta = entry.metadata().expect("its metadata");
            if meta.is_dir() {
                dir_size(&entry.path())
            } else {
                meta.len()
            }
        })
        .sum()
}
