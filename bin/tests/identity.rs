//! A data directory's identity with real `balsa serve` processes: a directory of another node
//! is refused, a restarted cluster reads its identity back (the file winning over a new token,
//! and a directory without one adopted), a new cluster on the addresses of an old one ignores a
//! stale node of the old, and a fresh node joins a running cluster by asking for its id.

mod common;

use std::path::Path;

use balsa::runtime::identity::{Identity, cluster_id_text, derive_cluster_id};
use balsa::runtime::wire::StatusReport;
use common::{Cluster, ELECTION_TIMEOUT, stderr, stdout, wait_until};

/// The one line `balsa serve` printed for its refusal: the last on stderr (logs come first),
/// the only one that starts with `balsa serve:`.
fn refusal(output: &std::process::Output) -> String {
    let text = stderr(output);
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("balsa serve:"))
        .collect();
    assert_eq!(lines.len(), 1, "one refusal line: {text}");
    assert_eq!(text.lines().last(), Some(lines[0]), "{text}");
    lines[0].to_owned()
}

fn identity(dir: &Path) -> Option<Identity> {
    Identity::load(dir).expect("a readable identity file")
}

/// Every running node's cluster id, as its status reports it, in id order.
fn cluster_ids(cluster: &Cluster) -> Vec<u64> {
    cluster
        .statuses()
        .into_iter()
        .flatten()
        .map(|report| report.cluster_id)
        .collect()
}

#[test]
fn a_data_directory_of_node_1_refuses_to_serve_as_node_2() {
    let mut cluster = Cluster::start(1);
    cluster.wait_for_leader(ELECTION_TIMEOUT);
    cluster.kill(1);
    let before = identity(&cluster.data_dir(1));
    assert_eq!(before.as_ref().map(|identity| identity.node_id), Some(1));
    cluster.add_member();
    let output = cluster.serve_to_exit(2, &cluster.data_dir(1), &[]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_eq!(
        refusal(&output),
        format!(
            "balsa serve: bad configuration: data directory {} belongs to node 1, not node 2",
            cluster.data_dir(1).display()
        )
    );
    assert!(stdout(&output).is_empty(), "it never listened");
    assert_eq!(identity(&cluster.data_dir(1)), before, "left as it was");
    // Node 1 still starts on it, with the membership it bootstrapped (itself alone) rather
    // than the two members `--cluster` now lists: it leads alone.
    cluster.start_node(1);
    cluster.wait_for_leader(ELECTION_TIMEOUT);
    let log = std::fs::read_to_string(cluster.log_path(1)).expect("node 1's log");
    assert!(log.contains("the recorded membership wins"), "{log}");
}

#[test]
fn a_restarted_cluster_reads_its_identity_back_and_adopts_a_directory_without_one() {
    let mut cluster = Cluster::start_with(3, &["--cluster-token", "first"]);
    let (_, term) = cluster.wait_for_leader(ELECTION_TIMEOUT);
    assert_eq!(common::stdout(&cluster.balsa(&["put", "k", "v"])), "OK\n");
    let derived = derive_cluster_id(cluster.members(), "first");
    assert_eq!(cluster_ids(&cluster), vec![derived; 3]);
    for id in cluster.ids() {
        assert_eq!(
            identity(&cluster.data_dir(id)),
            Some(Identity::bootstrap(id, cluster.members(), "first"))
        );
    }

    // Restarted with another token: the recorded identity wins.
    for id in cluster.ids() {
        cluster.kill(id);
    }
    cluster.set_serve_args(&["--cluster-token", "second"]);
    for id in cluster.ids() {
        cluster.start_node(id);
    }
    let (_, term) = cluster.wait_for_leader_after(term, ELECTION_TIMEOUT);
    assert_eq!(common::stdout(&cluster.balsa(&["get", "k"])), "v\n");
    assert_eq!(cluster_ids(&cluster), vec![derived; 3]);

    // Directories an earlier version wrote (a log, no identity) are adopted, with the id
    // derived from the flags as at a bootstrap, and keep their data.
    for id in cluster.ids() {
        cluster.kill(id);
        std::fs::remove_file(cluster.data_dir(id).join("IDENTITY")).expect("remove IDENTITY");
    }
    for id in cluster.ids() {
        cluster.start_node(id);
    }
    cluster.wait_for_leader_after(term, ELECTION_TIMEOUT);
    assert_eq!(common::stdout(&cluster.balsa(&["get", "k"])), "v\n");
    let adopted = derive_cluster_id(cluster.members(), "second");
    assert_ne!(adopted, derived);
    assert_eq!(cluster_ids(&cluster), vec![adopted; 3]);
    for id in cluster.ids() {
        assert_eq!(
            identity(&cluster.data_dir(id)).map(|identity| identity.cluster_id),
            Some(adopted)
        );
        let log = std::fs::read_to_string(cluster.log_path(id)).expect("the node's log");
        assert!(log.contains("adopting it as node"), "node {id}: {log}");
    }
}

#[test]
fn a_new_cluster_on_the_addresses_of_an_old_one_ignores_its_stale_node() {
    let mut old = Cluster::start_with(3, &["--cluster-token", "old"]);
    old.wait_for_leader(ELECTION_TIMEOUT);
    assert_eq!(stdout(&old.balsa(&["put", "from-old", "1"])), "OK\n");
    // The old cluster's nodes 2 and 3 go; its node 1 stays on its address, stale, with a
    // longer log than anything the new cluster has.
    old.kill(2);
    old.kill(3);
    // The same keys: the new cluster is told from the old by its cluster id alone.
    let mut new = Cluster::on_addresses(old.members().to_vec(), &["--cluster-token", "new"])
        .sharing_keys_with(&old);
    new.start_node(2);
    new.start_node(3);
    let (leader, _) = new.wait_for_leader(ELECTION_TIMEOUT);
    assert!(
        leader == 2 || leader == 3,
        "node {leader} leads the new cluster"
    );
    let endpoints = [new.address(2), new.address(3)];
    let get = new.balsa_at(&endpoints, &["get", "from-old"]);
    assert_eq!(get.status.code(), Some(1), "absent: {}", stderr(&get));
    assert_eq!(
        stdout(&new.balsa_at(&endpoints, &["put", "from-new", "2"])),
        "OK\n"
    );

    let new_id = derive_cluster_id(new.members(), "new");
    let old_id = derive_cluster_id(old.members(), "old");
    assert_ne!(new_id, old_id);
    assert_eq!(cluster_ids(&new), vec![new_id, new_id]);
    // Each side drops the other's datagrams (the stale node's votes and the new leader's
    // heartbeats), counted, and the stale node never hears of the new leader.
    let dropped = |report: &StatusReport| report.datagrams_dropped > 0;
    let both_dropped = wait_until(ELECTION_TIMEOUT, || {
        let stale = old.statuses()[0].clone()?;
        let fresh: Vec<StatusReport> = new.statuses().into_iter().flatten().collect();
        (fresh.len() == 2 && fresh.iter().all(dropped) && dropped(&stale)).then_some((stale, fresh))
    });
    let (stale, _) = both_dropped.unwrap_or_else(|| {
        panic!(
            "no drops counted: old {:?}, new {:?}",
            old.statuses(),
            new.statuses()
        )
    });
    assert_eq!(stale.cluster_id, old_id);
    assert_ne!(stale.leader, Some(leader));
}

#[test]
fn a_fresh_node_joins_a_running_cluster_with_its_id() {
    let mut cluster = Cluster::start(3);
    cluster.wait_for_leader(ELECTION_TIMEOUT);
    let (joiner, _) = cluster.add_member();
    cluster.start_node_with(joiner, &["--join"]);
    let output = cluster.balsa_at(
        &[cluster.address(joiner), cluster.address(1)],
        &["status", "--json"],
    );
    let reports: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("status --json prints JSON");
    let joined_id = reports[0]["cluster_id"].as_str().expect("node 4 answered");
    assert_eq!(Some(joined_id), reports[1]["cluster_id"].as_str());
    let cluster_id = derive_cluster_id(&cluster.members()[..3], "");
    assert_eq!(joined_id, cluster_id_text(cluster_id));
    assert_eq!(
        identity(&cluster.data_dir(joiner)),
        Some(Identity {
            cluster_id,
            node_id: joiner,
            bootstrap: None
        })
    );

    // A directory of another cluster is refused when its node joins this one.
    let (stranger, _) = cluster.add_member();
    let foreign = Identity {
        cluster_id: 0x3039,
        node_id: stranger,
        bootstrap: None,
    };
    std::fs::create_dir_all(cluster.data_dir(stranger)).expect("mkdir");
    foreign
        .store(&cluster.data_dir(stranger))
        .expect("store an identity");
    let output = cluster.serve_to_exit(stranger, &cluster.data_dir(stranger), &["--join"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let line = refusal(&output);
    assert!(
        line.starts_with(&format!(
            "balsa serve: bad configuration: data directory {} belongs to cluster \
             0000000000003039, not cluster {} that the member at ",
            cluster.data_dir(stranger).display(),
            cluster_id_text(cluster_id)
        )),
        "{line}"
    );

    // With every member down, a fresh node cannot join (exit 3, nothing recorded)...
    for id in 1..=joiner {
        cluster.kill(id);
    }
    let (late, output) = cluster.join_new_member_to_exit();
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        refusal(&output).contains("no member of the cluster answered"),
        "{}",
        stderr(&output)
    );
    assert_eq!(identity(&cluster.data_dir(late)), None);
    // ... but the joined node restarts from its identity, with nobody to ask.
    cluster.start_node_with(joiner, &["--join", "--join-timeout-ms", "300"]);
    let restarted = wait_until(ELECTION_TIMEOUT, || {
        cluster.statuses()[usize::try_from(joiner - 1).ok()?].clone()
    })
    .expect("the restarted node answers");
    assert_eq!(restarted.cluster_id, cluster_id);
}
