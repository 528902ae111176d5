//! Scripted scenarios of the replica's answers to clients, named for the rule each checks. The
//! core is brought into the state a scenario needs with the core's test kit
//! (`raft::testkit`), then taken out of the scripted cluster and wrapped in a replica, which
//! takes a client's datagram; the test reads the answer it gives at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use balsa_net::Counters;

use super::{Effect, Input, Replica, SnapshotPolicy};
use crate::kv::{Command, KvStore, Op};
use crate::raft::testkit::Cluster;
use crate::raft::{self, NodeId, Role};
use crate::runtime::wire::{Request, RequestBody, Response, ResponseBody, Wire};

/// Node `id`'s address, as its replica hints clients at it.
fn address(id: NodeId) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, u8::try_from(id).expect("a small id")], 7000))
}

/// The client every script's request comes from.
fn client() -> SocketAddr {
    SocketAddr::from(([10, 1, 0, 1], 9000))
}

/// Node `id` of `cluster`, taken out of it, as a replica knowing every member's address. Its
/// state machine is empty: a script applies nothing once the node is a replica.
fn replica(cluster: &mut Cluster, id: NodeId) -> Replica<KvStore, u32> {
    let members: BTreeMap<NodeId, SocketAddr> = cluster
        .nodes
        .keys()
        .map(|&member| (member, address(member)))
        .collect();
    let raft = cluster.nodes.remove(&id).expect("a node of the cluster");
    let policy = SnapshotPolicy {
        entries: u64::MAX,
        bytes: u64::MAX,
    };
    Replica::new(
        raft,
        KvStore::new(),
        Arc::new(Counters::default()),
        members,
        (0, 0),
        policy,
    )
}

/// What `replica` answers at once to a client's request `body`, if anything.
fn answer(replica: &mut Replica<KvStore, u32>, body: RequestBody) -> Option<ResponseBody> {
    let wire = Wire::Request(Request { id: 1, body });
    let input = Input::Client {
        source: client(),
        wire,
    };
    replica.step(input).expect("no snapshot to restore");
    let mut answer = None;
    while let Some(effect) = replica.poll_effect() {
        if let Effect::Answer {
            to,
            wire: Wire::Response(Response { id: 1, body }),
        } = effect
        {
            assert_eq!(to, client());
            answer = Some(body);
        }
    }
    answer
}

/// A client's write.
fn put() -> RequestBody {
    let command = Command {
        client_id: 9,
        seq: 1,
        op: Op::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        },
    };
    RequestBody::Command {
        data: command.encode(),
    }
}

/// Thesis §3.10: a leader handing leadership over takes no writes meanwhile. It turns a
/// client's write away naming the node taking over, never itself: a client told "1 is not the
/// leader; 1 is" has nowhere to go but round its other endpoints.
#[test]
fn a_leader_handing_over_refuses_a_write_naming_the_node_taking_over_never_itself() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.step(1, raft::Input::TransferLeadership { to: 2 });
    assert_eq!(cluster.role(1), Role::Leader, "its TimeoutNow is in flight");
    let mut leader = replica(&mut cluster, 1);
    let refused = answer(&mut leader, put());
    assert!(
        matches!(
            refused,
            Some(ResponseBody::NotLeader { leader, address: Some(to) })
                if to == address(2) && leader != Some(1)
        ),
        "{refused:?}"
    );
}
