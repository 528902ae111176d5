//! A snapshot transfer between real nodes (threads, UDP sockets, WALs on disk) under 10%
//! datagram loss on every link, with a leader change while the transfer is in flight: the
//! lagging follower still ends up with the whole state.
#![allow(
    clippy::disallowed_methods,
    reason = "a test of real threads waits for real time, with bounds"
)]

mod common;

use common::free_addresses;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use balsa::kv::{Answer, Command, KvStore, Op, Query};
use balsa::net::LinkFaults;
use balsa::raft::Role;
use balsa::{Error, Node, NodeConfig};

/// Writes of `VALUE_BYTES` each: a state of about 6 MB, about 95 chunks to send.
const WRITES: u64 = 1500;
const VALUE_BYTES: usize = 4096;
/// Bounds for the waits (generous: 10% loss stalls go-back-N windows until resent).
const WAIT: Duration = Duration::from_secs(60);

fn start(id: u64, members: &[(u64, SocketAddr)], dir: &std::path::Path) -> Node {
    let mut config = NodeConfig::new(id, members.to_vec(), dir.join(format!("node-{id}")));
    config.snapshot_entries = 200;
    config.snapshot_trailing_entries = 10;
    config.wal.segment_bytes = 1 << 20;
    Node::start(config, KvStore::new()).expect("node starts")
}

fn until<T>(what: &str, mut condition: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = condition() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        std::thread::yield_now();
    }
}

fn put(node: &Node, seq: u64, key: String, value: Vec<u8>) {
    let command = Command {
        client_id: 7,
        seq,
        op: Op::Put {
            key: key.into_bytes(),
            value,
        },
    };
    let answer = node
        .propose(command.encode(), Duration::from_secs(5))
        .expect("the leader applies the write");
    assert_eq!(Answer::decode(&answer), Ok(Answer::Ok));
}

fn lossy() -> LinkFaults {
    LinkFaults {
        drop: 0.10,
        ..LinkFaults::NONE
    }
}

#[test]
fn a_snapshot_transfer_completes_under_loss_across_a_leader_change() {
    let dir = tempfile::tempdir().expect("temp dir");
    let members: Vec<(u64, SocketAddr)> = (1..).zip(free_addresses(3)).collect();
    let mut nodes: Vec<Option<Node>> = members
        .iter()
        .map(|&(id, _)| Some(start(id, &members, dir.path())))
        .collect();
    let leader_id = nodes[0]
        .as_ref()
        .expect("running")
        .wait_for_leader(WAIT)
        .expect("a leader");
    let lagging_id = members
        .iter()
        .map(|&(id, _)| id)
        .find(|&id| id != leader_id)
        .expect("three members");
    let other_id = 6 - leader_id - lagging_id;
    let at = |id: u64| usize::try_from(id - 1).expect("small ids");

    nodes[at(lagging_id)]
        .take()
        .expect("running")
        .shutdown()
        .expect("a clean stop");
    let leader = nodes[at(leader_id)].as_ref().expect("running");
    for seq in 1..=WRITES {
        put(
            leader,
            seq,
            format!("key-{seq}"),
            vec![(seq % 251) as u8; VALUE_BYTES],
        );
    }
    let target = leader.status().expect("status").commit_index;
    for node in nodes.iter().flatten() {
        node.net_faults().expect("running").set_all(lossy());
    }

    let restarted = start(lagging_id, &members, dir.path());
    restarted.net_faults().expect("running").set_all(lossy());
    // The leader has compacted far past what the restarted node holds: it sends a snapshot.
    let (receiving_index, _) = until("the snapshot transfer starts", || {
        restarted.status().ok()?.receiving_snapshot
    });
    assert!(receiving_index > restarted.status().expect("status").applied_index);

    // Mid-transfer, leadership moves (a transfer's TimeoutNow may be lost: ask again).
    let old_term = leader.status().expect("status").term;
    let new_leader = until("the leadership moves", || {
        let _ = nodes[at(leader_id)]
            .as_ref()
            .expect("running")
            .transfer_leader(other_id);
        let status = nodes[at(other_id)].as_ref()?.status().ok()?;
        (status.role == Role::Leader && status.term > old_term).then_some(status)
    });
    let still_receiving = restarted.status().expect("status");
    assert!(
        still_receiving.applied_index < target,
        "the leader changed only after the transfer had finished ({still_receiving:?})"
    );

    // The new leader's snapshot arrives all the same.
    let caught_up = until("the lagging node catches up", || {
        let status = restarted.status().ok()?;
        (status.applied_index >= target).then_some(status)
    });
    assert!(caught_up.snapshot_index > 0, "{caught_up:?}");
    assert!(new_leader.term > old_term);
    for node in nodes.iter().flatten() {
        node.net_faults().expect("running").clear();
    }
    restarted.net_faults().expect("running").clear();
    let query = Query::Get {
        key: format!("key-{WRITES}").into_bytes(),
    };
    let answer = until(
        "a linearizable read at the caught-up node",
        || match restarted.read(query.encode(), Duration::from_secs(2)) {
            Ok(answer) => Some(answer),
            Err(Error::NotLeader { .. } | Error::Timeout) => None,
            Err(other) => panic!("read failed: {other}"),
        },
    );
    assert_eq!(
        Answer::decode(&answer),
        Ok(Answer::Value(Some(vec![(WRITES % 251) as u8; VALUE_BYTES])))
    );
    restarted.shutdown().expect("a clean stop");
    for node in nodes.into_iter().flatten() {
        node.shutdown().expect("a clean stop");
    }
}
