//! Membership changes with real processes (issue 14): `balsa members` against `balsa serve`
//! nodes on loopback, under a write load, with nodes killed (SIGKILL), suspended (SIGSTOP) and
//! wiped. What each checks: the cluster keeps committing, nothing acknowledged is lost, removed
//! nodes exit 0 by themselves, every node ends in one configuration, and a refused request
//! changes nothing and says why with its exit status.

#![allow(
    clippy::disallowed_methods,
    reason = "the tests drive real processes against wall-clock deadlines"
)]

mod common;

use std::net::SocketAddr;
use std::process::Output;
use std::time::Duration;

use balsa::runtime::wire::StatusReport;
use common::{
    Cluster, ELECTION_TIMEOUT, Writer, assert_all_present, assert_exit_saying, stderr, stdout,
    wait_until,
};

/// Every node's timing: elections twice as patient as the default, so that five of these tests
/// sharing two cores do not depose leaders by load alone (a change in flight would end
/// "outcome unknown").
const SERVE_ARGS: &[&str] = &["--election-ticks", "30-60"];

/// A cluster of `n` nodes with [`SERVE_ARGS`].
fn start(n: usize) -> Cluster {
    Cluster::start_with(n, SERVE_ARGS)
}

/// A membership change's bound: a new voter is caught up first.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// `balsa members ARGS --endpoints <the running nodes>`.
fn members(cluster: &Cluster, args: &[&str]) -> Output {
    let mut all = vec!["members"];
    all.extend_from_slice(args);
    cluster.balsa_at(&cluster.running_endpoints(), &all)
}

/// Runs a change that must succeed; returns what it printed.
fn change(cluster: &Cluster, args: &[&str]) -> String {
    let output = members(cluster, args);
    assert!(
        output.status.success(),
        "balsa members {args:?}: {:?} {}",
        output.status,
        stderr(&output)
    );
    stdout(&output)
}

/// `ID=IP:PORT`.
fn member_arg(id: u64, address: SocketAddr) -> String {
    format!("{id}={address}")
}

/// A node's view of the configuration: (voters, learners, joint).
fn view(report: &StatusReport) -> (Vec<u64>, Vec<u64>, bool) {
    (
        report.voters.clone(),
        report.learners.clone(),
        !report.outgoing_voters.is_empty(),
    )
}

/// Waits until every running node (a removed node exits by itself) answers with the same
/// configuration, not joint, and a leader; returns it.
fn converged(cluster: &mut Cluster) -> (Vec<u64>, Vec<u64>) {
    let mut last = Vec::new();
    let agreed = wait_until(ELECTION_TIMEOUT, || {
        cluster.reap_exited();
        last = cluster.statuses();
        let running: Vec<&StatusReport> = cluster
            .ids()
            .into_iter()
            .zip(&last)
            .filter(|(id, _)| cluster.is_running(*id))
            .map(|(_, report)| report.as_ref())
            .collect::<Option<_>>()?;
        let (voters, learners, joint) = view(running.first()?);
        let same = running
            .iter()
            .all(|r| view(r) == (voters.clone(), learners.clone(), false));
        let led = running.iter().any(|r| r.role == "leader");
        (same && !joint && led).then_some((voters, learners))
    });
    agreed.unwrap_or_else(|| panic!("the running nodes never agreed: {last:?}"))
}

/// Starts node `id` as a new member joining the running cluster.
fn start_joining(cluster: &mut Cluster, id: u64) {
    cluster.start_node_with(id, &["--join"]);
}

/// Grow 3 → 5 under a continuous write load (each new node added as a learner, caught up,
/// promoted), then kill two of the original three: the five-voter cluster has a majority left
/// and keeps committing, and nothing acknowledged is lost.
#[test]
fn growing_to_five_under_load_then_losing_two_originals_keeps_committing() {
    let mut cluster = start(3);
    cluster.wait_for_leader(ELECTION_TIMEOUT);
    let writer = Writer::start(cluster.endpoints(), cluster.client_key(), "grow");
    writer.wait_for_more(20, ELECTION_TIMEOUT);
    for _ in 0..2 {
        let (id, address) = cluster.add_member();
        start_joining(&mut cluster, id);
        let printed = change(&cluster, &["add", &member_arg(id, address)]);
        assert!(printed.contains(&address.to_string()), "{printed}");
    }
    assert_eq!(converged(&mut cluster), (vec![1, 2, 3, 4, 5], vec![]));
    writer.wait_for_more(20, ELECTION_TIMEOUT);
    cluster.kill(1);
    cluster.kill(2);
    let (leader, _) = cluster.wait_for_leader(ELECTION_TIMEOUT);
    assert!([3, 4, 5].contains(&leader), "node {leader} leads");
    // The writer was given the first three addresses: only node 3 of them is left, and it
    // forwards to whichever node leads.
    writer.wait_for_more(20, ELECTION_TIMEOUT);
    let acknowledged = writer.stop();
    assert_all_present(
        &cluster.running_endpoints(),
        &cluster.client_options(),
        &acknowledged,
    );
}

/// Shrink 5 → 3, removing a follower and then the leader: the removed processes print that
/// they were removed and exit 0 by themselves, a remaining voter leads, and nothing
/// acknowledged is lost.
#[test]
fn shrinking_to_three_removes_the_leader_among_others_and_they_exit_0() {
    let mut cluster = start(5);
    let (leader, _) = cluster.wait_for_leader(ELECTION_TIMEOUT);
    let writer = Writer::start(cluster.endpoints(), cluster.client_key(), "shrink");
    writer.wait_for_more(20, ELECTION_TIMEOUT);
    let follower = cluster
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .expect("followers");
    for removed in [follower, leader] {
        let printed = change(&cluster, &["remove", &removed.to_string()]);
        assert!(!printed.contains(&format!("\n{removed:>4}  ")), "{printed}");
        let (status, said) = cluster.wait_for_exit(removed, CHANGE_TIMEOUT);
        assert!(status.success(), "node {removed} exited with {status}");
        assert_eq!(
            said,
            format!("balsa: node {removed} was removed from the cluster\n")
        );
    }
    let (voters, learners) = converged(&mut cluster);
    let mut rest = cluster.ids();
    rest.retain(|id| *id != follower && *id != leader);
    assert_eq!((voters, learners), (rest, vec![]));
    writer.wait_for_more(20, ELECTION_TIMEOUT);
    let acknowledged = writer.stop();
    assert_all_present(
        &cluster.running_endpoints(),
        &cluster.client_options(),
        &acknowledged,
    );
}

/// A node whose data directory was lost comes back under a new id (`members replace`, one
/// joint change), with a new address and a fresh directory; then another original node is
/// killed and the cluster is still available.
#[test]
fn a_node_that_lost_its_disk_is_replaced_under_a_new_id_and_the_cluster_survives_another_loss() {
    let mut cluster = start(3);
    cluster.wait_for_leader(ELECTION_TIMEOUT);
    let writer = Writer::start(cluster.endpoints(), cluster.client_key(), "replace");
    writer.wait_for_more(20, ELECTION_TIMEOUT);
    cluster.kill(3);
    cluster.wipe(3);
    let (id, address) = cluster.add_member();
    start_joining(&mut cluster, id);
    change(&cluster, &["replace", "3", &member_arg(id, address)]);
    assert_eq!(converged(&mut cluster), (vec![1, 2, id], vec![]));
    // The removed id is never taken back.
    let again = members(&cluster, &["add", &member_arg(3, cluster.address(3))]);
    assert_exit_saying(&again, 2, "node id 3 was removed before");

    let (leader, term) = cluster.wait_for_leader(ELECTION_TIMEOUT);
    let victim = if leader == id { 1 } else { leader };
    cluster.kill(victim);
    cluster.wait_for_leader_after(if victim == leader { term } else { 0 }, ELECTION_TIMEOUT);
    writer.wait_for_more(20, ELECTION_TIMEOUT);
    let acknowledged = writer.stop();
    let after = cluster.balsa_at(&cluster.running_endpoints(), &["put", "after", "loss"]);
    assert_eq!(stdout(&after), "OK\n", "{}", stderr(&after));
    assert_all_present(
        &cluster.running_endpoints(),
        &cluster.client_options(),
        &acknowledged,
    );
}

/// kill -9 the leader while the joint configuration C_old,new is in force and C_new is not yet
/// appended (the two other old voters are suspended, so C_old,new cannot commit): once they
/// resume, the cluster settles on one configuration that every node reports, and nothing
/// acknowledged is lost.
#[test]
fn killing_the_leader_while_joint_converges_to_one_configuration() {
    let mut cluster = start(3);
    cluster.wait_for_leader(ELECTION_TIMEOUT);
    let writer = Writer::start(cluster.endpoints(), cluster.client_key(), "joint");
    writer.wait_for_more(20, ELECTION_TIMEOUT);
    let (new, address) = cluster.add_member();
    start_joining(&mut cluster, new);
    change(&cluster, &["add", &member_arg(new, address), "--learner"]);
    // Who leads now (it may have changed under load), just before the others are suspended.
    let (leader, term) = cluster.wait_for_leader(ELECTION_TIMEOUT);
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    for &id in &others {
        cluster.signal(id, "STOP");
    }
    let suspended = wait_until(ELECTION_TIMEOUT, || {
        others
            .iter()
            .all(|&id| cluster.is_suspended(id))
            .then_some(())
    });
    assert!(suspended.is_some(), "nodes {others:?} were not suspended");
    // Promote the caught-up learner and remove a suspended voter, in one joint change.
    let replace = {
        let endpoints = common::endpoints_arg(&[cluster.address(leader)]);
        let (old, new_arg) = (others[0].to_string(), member_arg(new, address));
        let key_args = cluster.client_args();
        std::thread::spawn(move || {
            let mut args = vec![
                "members",
                "replace",
                &old,
                &new_arg,
                "--timeout-ms",
                "20000",
                "--endpoints",
                &endpoints,
            ];
            args.extend(key_args.iter().map(String::as_str));
            common::run_balsa(&args)
        })
    };
    let mut seen = Vec::new();
    let joint = wait_until(ELECTION_TIMEOUT, || {
        seen = cluster.statuses();
        let report = seen[usize::try_from(leader - 1).ok()?].as_ref()?;
        (!report.outgoing_voters.is_empty()).then_some(())
    });
    if joint.is_none() {
        let replaced = replace.join().expect("the replace thread did not panic");
        panic!(
            "node {leader} never held C_old,new: {seen:?}; the replace said {:?} {}",
            replaced.status,
            stderr(&replaced)
        );
    }
    cluster.kill(leader);
    for &id in &others {
        cluster.signal(id, "CONT");
    }
    let outcome = replace.join().expect("the replace thread did not panic");
    // Done before the kill, or unknown (the leader died or lost its quorum): never "refused".
    assert!(
        matches!(outcome.status.code(), Some(0 | 3)),
        "{:?} {}",
        outcome.status,
        stderr(&outcome)
    );
    cluster.wait_for_leader_after(term, ELECTION_TIMEOUT);
    let (voters, learners) = converged(&mut cluster);
    let promoted = voters == [leader.min(others[1]), leader.max(others[1]), new];
    let unchanged = voters == [1, 2, 3] && learners == [new];
    assert!(promoted || unchanged, "{voters:?} {learners:?}");
    // `members list` agrees, asked at each running node.
    let mut seen = Vec::new();
    let in_configuration = |id: &u64| voters.contains(id) || learners.contains(id);
    for id in cluster.ids().into_iter().filter(in_configuration) {
        if !cluster.is_running(id) {
            continue;
        }
        let endpoint = cluster.address(id);
        let listed = cluster.balsa_at(&[endpoint], &["members", "list", "--json"]);
        assert!(listed.status.success(), "{}", stderr(&listed));
        let rows: serde_json::Value = serde_json::from_str(&stdout(&listed)).expect("JSON");
        let roles: Vec<(u64, String)> = rows
            .as_array()
            .expect("an array")
            .iter()
            .map(|row| {
                let id = row["id"].as_u64().expect("an id");
                (id, row["role"].as_str().expect("a role").to_owned())
            })
            .collect();
        seen.push(roles);
    }
    assert!(seen.windows(2).all(|pair| pair[0] == pair[1]), "{seen:?}");
    let acknowledged = writer.stop();
    // Read through members only: a removed node may still be stopping.
    let members: Vec<SocketAddr> = cluster
        .ids()
        .into_iter()
        .filter(|id| in_configuration(id) && cluster.is_running(*id))
        .map(|id| cluster.address(id))
        .collect();
    assert_all_present(&members, &cluster.client_options(), &acknowledged);
}

/// Each bad request is refused with a one-line message and exit status 2, and changes nothing:
/// adding a member again, removing an unknown id, reusing a removed id, removing the last
/// voter, a second change while one is in flight.
#[test]
fn bad_membership_requests_are_refused_with_a_message_and_change_nothing() {
    let refused = |output: &Output, says: &str| {
        assert_eq!(
            output.status.code(),
            Some(2),
            "{:?}: {}",
            says,
            stderr(output)
        );
        assert!(
            stderr(output).contains(says),
            "{says:?}: {}",
            stderr(output)
        );
        assert_eq!(stderr(output).lines().count(), 1, "{}", stderr(output));
    };
    let mut cluster = start(3);
    cluster.wait_for_leader(ELECTION_TIMEOUT);
    let existing = member_arg(2, cluster.address(2));
    refused(
        &members(&cluster, &["add", &existing]),
        "node 2 is already a member",
    );
    refused(
        &members(&cluster, &["remove", "9"]),
        "node 9 is not a member",
    );
    assert_eq!(converged(&mut cluster), (vec![1, 2, 3], vec![]));

    // A change in flight: node 4 is added but not started, so it cannot catch up yet.
    let (new, address) = cluster.add_member();
    let endpoints = common::endpoints_arg(&cluster.endpoints()[..3]);
    let new_arg = member_arg(new, address);
    let key_args = cluster.client_args();
    let adding = std::thread::spawn(move || {
        let mut args = vec!["members", "add", &new_arg, "--endpoints", &endpoints];
        args.extend(key_args.iter().map(String::as_str));
        common::run_balsa(&args)
    });
    let learning = wait_until(ELECTION_TIMEOUT, || {
        let statuses = cluster.statuses();
        statuses
            .iter()
            .flatten()
            .any(|r| r.learners == [new])
            .then_some(())
    });
    assert!(learning.is_some(), "node {new} never became a learner");
    let second = cluster.balsa_at(&cluster.endpoints()[..3], &["members", "remove", "3"]);
    refused(&second, "a membership change is in progress");
    start_joining(&mut cluster, new);
    let added = adding.join().expect("the add thread did not panic");
    assert!(added.status.success(), "{}", stderr(&added));
    assert_eq!(converged(&mut cluster), (vec![1, 2, 3, new], vec![]));

    // A removed id is never reused, and the last voter cannot go.
    let mut alone = start(1);
    alone.wait_for_leader(ELECTION_TIMEOUT);
    let (learner, learner_address) = alone.add_member();
    let learner_arg = member_arg(learner, learner_address);
    change(&alone, &["add", &learner_arg, "--learner"]);
    change(&alone, &["remove", &learner.to_string()]);
    refused(
        &members(&alone, &["add", &learner_arg, "--learner"]),
        "node id 2 was removed",
    );
    refused(
        &members(&alone, &["remove", "1"]),
        "the change would leave no voter",
    );
    assert_eq!(converged(&mut alone), (vec![1], vec![]));
}

/// `--rejoin` is now a deprecated `--join`: the node starts knowing no configuration, says
/// what to do instead, and becomes a member only when added; a data directory an earlier
/// version's `--rejoin` marked is refused (exit 2) with what to do instead.
#[test]
fn rejoin_is_a_deprecated_join_and_an_old_rejoined_directory_is_refused() {
    let mut cluster = start(1);
    cluster.wait_for_leader(ELECTION_TIMEOUT);
    let (id, address) = cluster.add_member();
    cluster.start_node_with(id, &["--rejoin"]);
    let log = std::fs::read_to_string(cluster.log_path(id)).expect("the node's log");
    assert!(log.contains("--rejoin is deprecated"), "{log}");
    assert!(log.contains("must come back under a NEW id"), "{log}");
    let joined = cluster.statuses()[1].clone().expect("node 2 answers");
    assert!(
        joined.voters.is_empty(),
        "it knows no configuration: {joined:?}"
    );
    change(&cluster, &["add", &member_arg(id, address)]);
    assert_eq!(converged(&mut cluster), (vec![1, id], vec![]));

    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("REJOINED"), b"").expect("the old marker");
    let data_dir = dir.path().to_str().expect("a UTF-8 path");
    let free = common::free_loopback_addresses(1)[0];
    let refused = common::run_balsa(&[
        "serve",
        "--id",
        "3",
        "--cluster",
        &format!("3={free}"),
        "--data-dir",
        data_dir,
        "--insecure",
    ]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    let says = stderr(&refused);
    assert!(says.contains("replace it under a new id"), "{says}");
    assert!(
        says.contains("balsa members replace 3 NEW_ID=IP:PORT"),
        "{says}"
    );
    assert_eq!(says.lines().count(), 1, "{says}");
}

/// `balsa demo` replaces the leader it killed with a fresh node (new id, port and directory,
/// `--join`) through `members replace`'s code, prints the new configuration, and shows the old
/// node, restarted, stop by itself once it learns it was removed.
#[test]
fn the_demo_replaces_the_node_it_killed_and_the_old_one_stops_by_itself() {
    let output = common::run_balsa(&["demo"]);
    let said = stdout(&output);
    assert!(output.status.success(), "{said}\n{}", stderr(&output));
    assert!(said.contains("balsa members replace"), "{said}");
    assert!(said.contains("The new configuration:"), "{said}");
    assert!(
        said.contains("learned it was removed and exited by itself"),
        "{said}"
    );
    let configuration = said
        .lines()
        .rev()
        .find(|line| line.contains("voters="))
        .expect("the final status table");
    let voters: Vec<&str> = configuration
        .rsplit("voters=")
        .next()
        .expect("rsplit yields at least one part")
        .split_whitespace()
        .next()
        .expect("the voters' ids")
        .split(',')
        .collect();
    assert_eq!(voters.len(), 3, "{configuration}");
    assert!(voters.contains(&"4"), "the new node votes: {configuration}");
}
