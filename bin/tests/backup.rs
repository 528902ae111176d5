//! Backup and restore end to end, with real `balsa serve` processes: a snapshot saved while a
//! client writes restores into a new 3-node cluster on other addresses holding every write
//! acknowledged before the save; a truncated or damaged file and a data directory in use are
//! refused with the reason (and, for a file, the offset).

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::{
    Cluster, ELECTION_TIMEOUT, Writer, assert_all_present, assert_exit_saying,
    free_loopback_addresses, run_balsa, stderr, stdout,
};

/// Long enough for a few hundred writes on a busy test machine.
const WRITES: Duration = Duration::from_secs(60);

/// `balsa restore FILE --id ID --cluster CLUSTER --data-dir DIR`.
fn restore(file: &Path, id: u64, cluster: &str, dir: &Path) -> std::process::Output {
    let id = id.to_string();
    let file = file.display().to_string();
    let dir = dir.display().to_string();
    run_balsa(&[
        "restore",
        &file,
        "--id",
        &id,
        "--cluster",
        cluster,
        "--data-dir",
        &dir,
        "--cluster-token",
        "restored",
    ])
}

#[test]
fn a_snapshot_saved_under_writes_restores_into_a_new_cluster_with_every_earlier_write() {
    // Policy snapshots every 500 entries: the writer makes the nodes take new ones while the
    // save reads, which the save must never mix.
    let cluster = Cluster::start_with(3, &["--snapshot-entries", "500"]);
    cluster.wait_for_leader(ELECTION_TIMEOUT);
    // Large values first, so the snapshot spans many datagrams.
    let mut client = cluster.client();
    let mut before = BTreeMap::new();
    for n in 0..200 {
        let (key, value) = (format!("big-{n}"), format!("{n:04}").repeat(256));
        client
            .put(key.as_bytes(), value.as_bytes())
            .unwrap_or_else(|error| panic!("writing {key}: {error}"));
        before.insert(key, value);
    }
    let writer = Writer::start(cluster.endpoints(), cluster.client_key(), "w");
    writer.wait_for_more(300, WRITES);
    before.extend(writer.acknowledged_writes());

    let temp = tempfile::tempdir().expect("a temporary directory");
    let file = temp.path().join("cluster.bsnap");
    let output = cluster.balsa(&["snapshot", "save", &file.display().to_string()]);
    assert!(output.status.success(), "save failed: {}", stderr(&output));
    assert!(
        stdout(&output).starts_with("saved the snapshot at index "),
        "{}",
        stdout(&output)
    );
    writer.wait_for_more(50, WRITES);
    let after = writer.stop();
    assert!(after.len() > before.len() - 200, "the writer went on");

    let metadata = std::fs::metadata(&file).expect("the file exists");
    assert_eq!(
        metadata.permissions().mode() & 0o777,
        0o600,
        "it holds the data"
    );
    assert!(
        metadata.len() > 200 * 1024,
        "the snapshot spans many datagrams: {} bytes",
        metadata.len()
    );
    assert!(
        !temp.path().join("cluster.bsnap.tmp").exists(),
        "no temporary file is left"
    );

    // A new cluster on other addresses, each member's directory restored from the file.
    let members: Vec<(u64, std::net::SocketAddr)> = (1..).zip(free_loopback_addresses(3)).collect();
    let cluster_arg = members
        .iter()
        .map(|(id, address)| format!("{id}={address}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut restored = Cluster::on_addresses(members, &[]);
    for id in 1..=3 {
        let output = restore(&file, id, &cluster_arg, &restored.data_dir(id));
        assert!(output.status.success(), "restore {id}: {}", stderr(&output));
        assert!(stdout(&output).contains("start it with `balsa serve"));
    }
    for id in 1..=3 {
        restored.start_node(id);
    }
    restored.wait_for_leader(ELECTION_TIMEOUT);
    assert_all_present(&restored.endpoints(), &restored.client_options(), &before);

    // It is a cluster of its own: the new members only, another cluster id, and it takes writes.
    let statuses = restored.statuses();
    let status = statuses[0].as_ref().expect("node 1 answers");
    assert_eq!(status.voters, [1, 2, 3]);
    let old = cluster.statuses();
    let old_id = old[0].as_ref().expect("the old cluster answers").cluster_id;
    assert_ne!(status.cluster_id, old_id);
    let mut client = restored.client();
    client
        .put(b"after", b"restore")
        .expect("a write to the new cluster");
    assert_eq!(
        client.get(b"after", false).expect("a read"),
        Some(b"restore".to_vec())
    );
}

#[test]
fn a_truncated_or_damaged_file_or_a_used_directory_is_refused_with_the_reason() {
    let cluster = Cluster::start(1);
    cluster.wait_for_leader(ELECTION_TIMEOUT);
    let mut client = cluster.client();
    for n in 0..20 {
        client
            .put(format!("k{n}").as_bytes(), b"v")
            .expect("a write");
    }
    let temp = tempfile::tempdir().expect("a temporary directory");
    let file = temp.path().join("one.bsnap");
    let output = cluster.balsa(&["snapshot", "save", &file.display().to_string()]);
    assert!(output.status.success(), "save failed: {}", stderr(&output));
    let bytes = std::fs::read(&file).expect("the file");
    let address = free_loopback_addresses(1)[0];
    let cluster_arg = format!("1={address}");

    let truncated = temp.path().join("truncated.bsnap");
    std::fs::write(&truncated, &bytes[..bytes.len() - 10]).expect("written");
    let dir = temp.path().join("node-a");
    let output = restore(&truncated, 1, &cluster_arg, &dir);
    let expected = format!("offset {}: the file ends at byte", bytes.len() - 10);
    assert_exit_saying(&output, 2, &expected);
    assert!(!dir.exists(), "nothing is written for a refused file");

    let flipped = temp.path().join("flipped.bsnap");
    let mut damaged = bytes.clone();
    let middle = 48 + (bytes.len() - 48) / 2;
    damaged[middle] ^= 0x10;
    std::fs::write(&flipped, &damaged).expect("written");
    let output = restore(&flipped, 1, &cluster_arg, &dir);
    assert_exit_saying(
        &output,
        2,
        "offset 48: the snapshot's CRC-32 does not match",
    );
    assert!(!dir.exists());

    // A directory a node uses (or used) is never restored over.
    let used = cluster.data_dir(1);
    let output = restore(&file, 1, &cluster_arg, &used);
    assert_exit_saying(&output, 2, "is not empty");
    // The whole file restores.
    let output = restore(&file, 1, &cluster_arg, &dir);
    assert!(output.status.success(), "{}", stderr(&output));
}
