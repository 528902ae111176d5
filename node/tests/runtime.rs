//! Nodes in one process on loopback: elections, commits, reads, restarts through the real
//! threads, sockets and write-ahead logs.

#![allow(
    clippy::disallowed_methods,
    reason = "waits are bounded by wall-clock deadlines; these tests run the real runtime"
)]

mod common;

use common::free_addresses;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use balsa::state_machine::RestoreError;
use balsa::{Error, Node, NodeConfig, StateMachine};

/// A state machine that appends every command to a list; queries return the list's length.
#[derive(Default)]
struct Journal {
    commands: Vec<Vec<u8>>,
}

impl StateMachine for Journal {
    fn apply(&mut self, _index: u64, command: &[u8]) -> Vec<u8> {
        self.commands.push(command.to_vec());
        (self.commands.len() as u64).to_le_bytes().to_vec()
    }

    fn query(&self, _query: &[u8]) -> Vec<u8> {
        (self.commands.len() as u64).to_le_bytes().to_vec()
    }

    fn snapshot(&self) -> Vec<u8> {
        Vec::new()
    }

    fn restore(&mut self, _snapshot: &[u8]) -> Result<(), RestoreError> {
        Ok(())
    }
}

struct Cluster {
    dirs: Vec<tempfile::TempDir>,
    members: Vec<(u64, SocketAddr)>,
    nodes: Vec<Option<Node>>,
}

impl Cluster {
    fn start(n: usize) -> Cluster {
        let addresses = free_addresses(n);
        let members: Vec<(u64, SocketAddr)> = addresses
            .iter()
            .enumerate()
            .map(|(i, a)| (i as u64 + 1, *a))
            .collect();
        let dirs: Vec<tempfile::TempDir> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut cluster = Cluster {
            dirs,
            members,
            nodes: Vec::new(),
        };
        for i in 0..n {
            let node = cluster.start_node(i);
            cluster.nodes.push(Some(node));
        }
        cluster
    }

    fn start_node(&self, i: usize) -> Node {
        let mut config = NodeConfig::new(
            i as u64 + 1,
            self.members.clone(),
            self.dirs[i].path().to_path_buf(),
        );
        config.wal.segment_bytes = 1 << 20;
        Node::start(config, Journal::default()).expect("node starts")
    }

    /// Waits (bounded) until some node leads; returns its position.
    fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            for (i, node) in self.nodes.iter().enumerate() {
                if let Some(node) = node
                    && node
                        .status()
                        .is_ok_and(|s| s.role == balsa::raft::Role::Leader)
                {
                    return i;
                }
            }
            std::thread::yield_now();
        }
        panic!("no leader within 10 s");
    }

    /// Proposes until a leader accepts and applies it (bounded).
    fn write(&self, command: &[u8]) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let leader = self.leader();
            let node = self.nodes[leader].as_ref().expect("running");
            match node.propose(command.to_vec(), Duration::from_secs(2)) {
                Ok(answer) => return u64::from_le_bytes(answer.try_into().expect("8 bytes")),
                Err(Error::NotLeader { .. } | Error::Lost | Error::Timeout) => continue,
                Err(other) => panic!("propose failed: {other}"),
            }
        }
        panic!("no write committed within 10 s");
    }
}

#[test]
fn three_nodes_elect_a_leader_commit_writes_and_serve_linearizable_reads() {
    let cluster = Cluster::start(3);
    for i in 1..=20u64 {
        assert_eq!(cluster.write(format!("w{i}").as_bytes()), i);
    }
    let leader = cluster.leader();
    let node = cluster.nodes[leader].as_ref().unwrap();
    let count = node.read(Vec::new(), Duration::from_secs(5)).expect("read");
    assert_eq!(u64::from_le_bytes(count.try_into().unwrap()), 20);
    // A follower's read goes through the leader's read index.
    let follower = (leader + 1) % 3;
    let count = cluster.nodes[follower]
        .as_ref()
        .unwrap()
        .read(Vec::new(), Duration::from_secs(5));
    assert_eq!(
        count.map(|c| u64::from_le_bytes(c.try_into().unwrap())),
        Ok(20)
    );
}

#[test]
fn a_follower_refuses_an_api_proposal_naming_the_leader() {
    let cluster = Cluster::start(3);
    cluster.write(b"first");
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    let result = cluster.nodes[follower]
        .as_ref()
        .unwrap()
        .propose(b"x".to_vec(), Duration::from_secs(2));
    assert_eq!(
        result,
        Err(Error::NotLeader {
            leader: Some(leader as u64 + 1)
        })
    );
}

#[test]
fn a_restarted_cluster_keeps_every_acknowledged_write() {
    let mut cluster = Cluster::start(3);
    for i in 1..=10u64 {
        assert_eq!(cluster.write(format!("w{i}").as_bytes()), i);
    }
    for node in &mut cluster.nodes {
        node.take().unwrap().shutdown().expect("clean shutdown");
    }
    for i in 0..3 {
        cluster.nodes[i] = Some(cluster.start_node(i));
    }
    // The 11th write's answer counts the commands applied: the 10 before it survived.
    assert_eq!(cluster.write(b"after restart"), 11);
}

/// Thesis §6.4: a leader cut off from the others must never answer a linearizable read, while
/// the majority elects a new leader and commits new writes. (Fault injection in the transport
/// isolates it, both ways.)
#[test]
fn an_isolated_old_leader_never_answers_a_linearizable_read_with_stale_data() {
    let cluster = Cluster::start(3);
    assert_eq!(cluster.write(b"before"), 1);
    let old = cluster.leader();
    let old_node = cluster.nodes[old].as_ref().unwrap();
    let faults = old_node.net_faults().expect("running");
    for (id, _) in &cluster.members {
        if *id != old as u64 + 1 {
            faults.partition(*id, balsa_net::Direction::Both);
        }
    }
    // The others elect a new leader among themselves and commit a second write there.
    let deadline = Instant::now() + Duration::from_secs(10);
    let new = loop {
        assert!(Instant::now() < deadline, "no new leader within 10 s");
        let found = (0..3).filter(|&i| i != old).find(|&i| {
            let status = cluster.nodes[i].as_ref().unwrap().status().unwrap();
            status.role == balsa::raft::Role::Leader
        });
        if let Some(found) = found {
            break found;
        }
        std::thread::yield_now();
    };
    let answer = cluster.nodes[new]
        .as_ref()
        .unwrap()
        .propose(b"after".to_vec(), Duration::from_secs(5));
    assert_eq!(
        answer.map(|a| u64::from_le_bytes(a.try_into().unwrap())),
        Ok(2)
    );
    // The old leader must not serve a read: it would say 1 command, which is stale.
    let read = old_node.read(Vec::new(), Duration::from_secs(2));
    assert!(
        matches!(read, Err(Error::Timeout | Error::NotLeader { .. })),
        "the isolated old leader answered {read:?}"
    );
    faults.clear();
}

/// The cluster rule at a running node: a client request carrying 0 ("any cluster") or the
/// node's own id is answered, the answer carrying the node's id in its header and in the status
/// report; one carrying another cluster's id is dropped and counted.
#[test]
fn a_node_answers_the_client_wildcard_and_drops_requests_of_another_cluster() {
    use balsa::runtime::identity::derive_cluster_id;
    use balsa::runtime::wire::{Request, RequestBody, Response, ResponseBody, Wire};
    use balsa_net::{ANY_CLUSTER, CLIENT_ID, Codec, DEFAULT_DATAGRAM_LIMIT, Kind};

    let dir = tempfile::tempdir().unwrap();
    let members = vec![(1, free_addresses(1)[0])];
    let mut config = NodeConfig::new(1, members.clone(), dir.path().to_path_buf());
    config.cluster_token = "runtime test".into();
    let node = Node::start(config, Journal::default()).expect("node starts");
    let cluster_id = node.cluster_id();
    assert_eq!(cluster_id, derive_cluster_id(&members, "runtime test"));
    assert_eq!(node.identity().bootstrap, Some(members));

    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let ask_status = |cluster: u64, request: u64| {
        let mut codec = Codec::new(cluster, CLIENT_ID, DEFAULT_DATAGRAM_LIMIT).unwrap();
        let wire = Wire::Request(Request {
            id: request,
            body: RequestBody::Status,
        });
        let datagram = codec.encode(Kind::Request, &wire).unwrap();
        socket.send_to(datagram, node.local_addr()).unwrap();
    };
    // Answers must carry exactly the node's id: decoded by a codec of that cluster.
    let exact = Codec::new(cluster_id, CLIENT_ID, DEFAULT_DATAGRAM_LIMIT).unwrap();
    let mut buffer = vec![0; DEFAULT_DATAGRAM_LIMIT + 1];
    let mut answer = || {
        let (len, _) = socket
            .recv_from(&mut buffer)
            .expect("an answer within 10 s");
        match exact.decode::<Wire>(&buffer[..len]) {
            Ok((
                _,
                Wire::Response(Response {
                    id,
                    body: ResponseBody::Status(report),
                }),
            )) => (id, report),
            other => panic!("not a status answer of cluster {cluster_id:x}: {other:?}"),
        }
    };

    ask_status(cluster_id ^ 1, 1);
    ask_status(ANY_CLUSTER, 2);
    let (id, report) = answer();
    assert_eq!(id, 2, "the request of another cluster went unanswered");
    assert_eq!(report.cluster_id, cluster_id);
    assert_eq!(report.datagrams_dropped, 1, "the other cluster's, counted");
    ask_status(cluster_id, 3);
    let (id, report) = answer();
    assert_eq!((id, report.cluster_id), (3, cluster_id));
    node.shutdown().expect("clean shutdown");
}
