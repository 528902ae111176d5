//! Client batching through real nodes on loopback: a datagram carrying several requests
//! (`Wire::Requests`) is handled as if each had come alone, a batch over
//! `MAX_REQUESTS_PER_DATAGRAM` is dropped and counted, and the answers a turn has for one address
//! leave together (`Wire::Responses`), split into datagrams that fit.
//!
//! The requests go out from a raw UDP socket, framed as `balsa bench --shared-sockets` frames
//! them. Where a test must know that nothing more is coming, it sends a single status request
//! after the batch and waits for its answer (a fence): a node handles one client's datagrams in
//! order and sends a turn's answers in order, so anything the batch made it answer has arrived
//! by then.
#![allow(
    clippy::disallowed_methods,
    reason = "a test of real threads waits for real time, with bounds"
)]

mod common;

use common::free_addresses;

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use balsa::client::{Client, ClientOptions};
use balsa::kv::{Answer, Command, KvStore, Op};
use balsa::runtime::wire::{
    MAX_REQUESTS_PER_DATAGRAM, Request, RequestBody, Response, ResponseBody, StatusReport, Wire,
};
use balsa::{Node, NodeConfig};
use balsa_net::{ANY_CLUSTER, CLIENT_ID, Codec, DEFAULT_DATAGRAM_LIMIT, Kind};

/// Bound of every wait.
const WAIT: Duration = Duration::from_secs(10);

/// Nodes of one cluster, each with its own data directory.
struct Cluster {
    _dirs: Vec<tempfile::TempDir>,
    addresses: Vec<SocketAddr>,
    nodes: Vec<Node>,
}

impl Cluster {
    fn start(n: usize, datagram_limit: usize) -> Cluster {
        let addresses = free_addresses(n);
        let members: Vec<(u64, SocketAddr)> = (1..).zip(addresses.iter().copied()).collect();
        let dirs: Vec<tempfile::TempDir> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
        let nodes = members
            .iter()
            .zip(&dirs)
            .map(|(&(id, _), dir)| {
                let mut config = NodeConfig::new(id, members.clone(), dir.path().to_path_buf());
                config.wal.segment_bytes = 1 << 20;
                config.datagram_limit = datagram_limit;
                Node::start(config, KvStore::new()).expect("node starts")
            })
            .collect();
        Cluster {
            _dirs: dirs,
            addresses,
            nodes,
        }
    }

    fn shutdown(self) {
        for node in self.nodes {
            node.shutdown().expect("a clean stop");
        }
    }
}

/// A client socket that sends what it is given and collects the answers, datagram by datagram.
struct RawClient {
    socket: UdpSocket,
    codec: Codec,
    buffer: Vec<u8>,
}

/// One datagram received: its size and the answers it carried.
struct Received {
    len: usize,
    batched: bool,
    responses: Vec<Response>,
}

impl RawClient {
    fn new() -> RawClient {
        RawClient {
            socket: UdpSocket::bind("127.0.0.1:0").expect("bind"),
            codec: Codec::new(ANY_CLUSTER, CLIENT_ID, DEFAULT_DATAGRAM_LIMIT)
                .expect("a valid limit"),
            buffer: vec![0; DEFAULT_DATAGRAM_LIMIT + 1],
        }
    }

    fn send(&mut self, to: SocketAddr, wire: &Wire) {
        let datagram = self.codec.encode(Kind::Request, wire).expect("fits");
        self.socket.send_to(datagram, to).expect("send");
    }

    /// The next response datagram, or `None` once `deadline` has passed.
    fn receive(&mut self, deadline: Instant) -> Option<Received> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.socket.set_read_timeout(Some(left)).unwrap();
            let len = match self.socket.recv_from(&mut self.buffer) {
                Ok((len, _)) => len,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(e) => panic!("receiving: {e}"),
            };
            let (header, wire) = self
                .codec
                .decode::<Wire>(&mut self.buffer[..len])
                .expect("a node's datagram decodes");
            assert_eq!(header.kind, Kind::Response);
            let (batched, responses) = match wire {
                Wire::Response(one) => (false, vec![one]),
                Wire::Responses(all) => (true, all),
                other => panic!("a client was sent {other:?}"),
            };
            return Some(Received {
                len,
                batched,
                responses,
            });
        }
    }

    /// Every datagram received until one answers `last` (bounded by [`WAIT`]).
    fn receive_until(&mut self, last: u64) -> Vec<Received> {
        let deadline = Instant::now() + WAIT;
        let mut all = Vec::new();
        loop {
            let received = self
                .receive(deadline)
                .unwrap_or_else(|| panic!("request {last} unanswered within {WAIT:?}"));
            let done = received.responses.iter().any(|r| r.id == last);
            all.push(received);
            if done {
                return all;
            }
        }
    }

    /// The status of the node at `node`, asked with request id `id` in a datagram of its own;
    /// also every datagram received until it came.
    fn status(&mut self, node: SocketAddr, id: u64) -> (StatusReport, Vec<Received>) {
        let request = Request {
            id,
            body: RequestBody::Status,
        };
        self.send(node, &Wire::Request(request));
        let received = self.receive_until(id);
        let body = received
            .iter()
            .flat_map(|r| &r.responses)
            .find(|r| r.id == id)
            .map(|r| r.body.clone());
        match body {
            Some(ResponseBody::Status(report)) => (*report, received),
            other => panic!("status answered with {other:?}"),
        }
    }
}

/// The ids answered in `received`, in the order they arrived.
fn answered_ids(received: &[Received]) -> Vec<u64> {
    received
        .iter()
        .flat_map(|r| r.responses.iter().map(|response| response.id))
        .collect()
}

fn status_requests(ids: std::ops::Range<u64>) -> Vec<Request> {
    ids.map(|id| Request {
        id,
        body: RequestBody::Status,
    })
    .collect()
}

/// Twenty writes of twenty sessions in one datagram are each applied and answered exactly once,
/// in the order sent; the answers leave together (the twenty entries are proposed in one turn,
/// persisted and replicated together, so they commit and apply in one turn), and every value
/// reads back.
#[test]
fn a_datagram_of_writes_is_applied_once_each_and_answered_together() {
    const WRITES: u64 = 20;
    let cluster = Cluster::start(3, DEFAULT_DATAGRAM_LIMIT);
    let mut client = Client::new(cluster.addresses.clone(), ClientOptions::default()).unwrap();
    // A write first: a leader of this term has committed, and its address is known.
    client.put(b"warm-up", b"w").expect("the warm-up write");
    let leader = client.leader().expect("the leader answered the write");

    let key = |i: u64| format!("batch-{i}").into_bytes();
    let value = |i: u64| format!("value-{i}").into_bytes();
    let ids: Vec<u64> = (100..100 + WRITES).collect();
    let requests: Vec<Request> = (0..WRITES)
        .zip(&ids)
        .map(|(i, &id)| Request {
            id,
            body: RequestBody::Command {
                data: Command {
                    client_id: 0xba7c_4000 + i,
                    seq: 1,
                    op: Op::Put {
                        key: key(i),
                        value: value(i),
                    },
                }
                .encode(),
            },
        })
        .collect();
    let mut raw = RawClient::new();
    raw.send(leader, &Wire::Requests(requests));
    let mut received = Vec::new();
    let deadline = Instant::now() + WAIT;
    while answered_ids(&received).len() < ids.len() {
        let Some(datagram) = raw.receive(deadline) else {
            panic!(
                "within {WAIT:?} only {:?} of {ids:?} were answered",
                answered_ids(&received)
            );
        };
        received.push(datagram);
    }
    // Fence: any other answer the batch caused comes before this one.
    let (_, after) = raw.status(leader, 1);
    let extra: Vec<u64> = answered_ids(&after)
        .into_iter()
        .filter(|&id| id != 1)
        .collect();
    assert_eq!(extra, Vec::<u64>::new(), "answers after the batch's");

    assert_eq!(answered_ids(&received), ids, "each once, in the order sent");
    for response in received.iter().flat_map(|r| &r.responses) {
        let ResponseBody::Applied { data } = &response.body else {
            panic!("request {} answered {:?}", response.id, response.body);
        };
        assert_eq!(
            Answer::decode(data),
            Ok(Answer::Ok),
            "request {}",
            response.id
        );
    }
    assert!(
        received.len() < ids.len(),
        "{} answers in {} datagrams",
        ids.len(),
        received.len()
    );

    for i in 0..WRITES {
        assert_eq!(client.get(&key(i), false).expect("a read"), Some(value(i)));
    }
    cluster.shutdown();
}

/// A datagram of `MAX_REQUESTS_PER_DATAGRAM + 1` requests is dropped whole: none of them is
/// answered, and the node counts one dropped datagram.
#[test]
fn a_batch_over_the_limit_is_dropped_unanswered_and_counted() {
    // One node: nothing but this test's datagrams reaches it, so its drop count is exact.
    let cluster = Cluster::start(1, DEFAULT_DATAGRAM_LIMIT);
    let node = cluster.addresses[0];
    let mut raw = RawClient::new();
    let (before, _) = raw.status(node, 1);

    let too_many = 1000..1000 + MAX_REQUESTS_PER_DATAGRAM as u64 + 1;
    raw.send(node, &Wire::Requests(status_requests(too_many.clone())));
    // The fence: the node handles the batch before this request.
    let (after, received) = raw.status(node, 2);
    let batch_answers: Vec<u64> = answered_ids(&received)
        .into_iter()
        .filter(|id| too_many.contains(id))
        .collect();
    assert_eq!(
        batch_answers,
        Vec::<u64>::new(),
        "answers to the dropped batch"
    );
    assert_eq!(
        after.datagrams_dropped,
        before.datagrams_dropped + 1,
        "{before:?} then {after:?}"
    );
    cluster.shutdown();
}

/// A datagram of exactly `MAX_REQUESTS_PER_DATAGRAM` requests is taken: every request is
/// answered once, in order, and answers too many for one datagram are split (halved) into
/// `Responses` datagrams within the node's datagram limit, not dropped and not sent one by one.
#[test]
fn a_batch_at_the_limit_is_answered_in_batches_that_fit() {
    const LIMIT: usize = 1_500;
    let cluster = Cluster::start(1, LIMIT);
    let node = cluster.addresses[0];
    let mut raw = RawClient::new();
    let (report, _) = raw.status(node, 1);

    let ids: Vec<u64> = (1000..1000 + MAX_REQUESTS_PER_DATAGRAM as u64).collect();
    let batch = Wire::Requests(status_requests(1000..1000 + ids.len() as u64));
    assert!(
        balsa_net::datagram_len(&batch).unwrap() <= LIMIT,
        "the batch fits"
    );
    let all_in_one = Wire::Responses(
        ids.iter()
            .map(|&id| Response {
                id,
                body: ResponseBody::Status(Box::new(report.clone())),
            })
            .collect(),
    );
    assert!(
        balsa_net::datagram_len(&all_in_one).unwrap() > 2 * LIMIT,
        "the answers cannot fit in one datagram"
    );
    raw.send(node, &batch);
    let last = *ids.last().expect("ids");
    let received = raw.receive_until(last);
    // Fence: any other answer the batch caused comes before this one.
    let (after, fenced) = raw.status(node, 2);

    let mut answered = answered_ids(&received);
    answered.extend(answered_ids(&fenced).into_iter().filter(|&id| id != 2));
    assert_eq!(answered, ids, "each once, in the order sent");
    assert!(received.len() > 1, "one datagram over the limit");
    for datagram in &received {
        assert!(datagram.len <= LIMIT, "a {}-byte datagram", datagram.len);
        assert!(
            datagram.batched && datagram.responses.len() > 1,
            "a part of {} answers",
            datagram.responses.len()
        );
    }
    for response in received.iter().flat_map(|r| &r.responses) {
        assert!(
            matches!(response.body, ResponseBody::Status(_)),
            "request {} answered {:?}",
            response.id,
            response.body
        );
    }
    assert_eq!(after.datagrams_dropped, report.datagrams_dropped);
    cluster.shutdown();
}
