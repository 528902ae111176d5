//! Range reads against a real node (a thread, a UDP socket, a WAL on disk) whose datagram limit
//! is below the client's: the node cannot send the page the client's budget allows, answers
//! that it is too large with its own limit instead of dropping it, and the client asks again
//! within that limit; every page after fits, and the scan returns every pair in order.
#![allow(
    clippy::disallowed_methods,
    reason = "a test of a real node waits for real time, with bounds"
)]

mod common;

use std::time::Duration;

use balsa::client::{Client, ClientOptions};
use balsa::kv::{Answer, Command, KeyRange, KvStore, Op};
use balsa::{Node, NodeConfig};
use common::free_addresses;

const WAIT: Duration = Duration::from_secs(20);
/// The node's datagrams: far below the client's default of 65,000.
const NODE_DATAGRAM_LIMIT: usize = 4_000;

#[test]
fn a_node_with_smaller_datagrams_answers_too_large_and_the_scan_asks_again_within_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let address = free_addresses(1)[0];
    let mut config = NodeConfig::new(1, vec![(1, address)], dir.path().join("node-1"));
    config.datagram_limit = NODE_DATAGRAM_LIMIT;
    let node = Node::start(config, KvStore::new()).expect("node starts");
    node.wait_for_leader(WAIT).expect("a leader");
    // 20 values of 1,000 bytes: about 20 kB, five times the node's datagram.
    let value = |n: u64| vec![u8::try_from(n).expect("n < 20"); 1_000];
    for n in 0..20 {
        let command = Command {
            client_id: 7,
            seq: n + 1,
            op: Op::Put {
                key: format!("k/{n:02}").into_bytes(),
                value: value(n),
            },
        };
        let answer = node
            .propose(command.encode(), WAIT)
            .expect("the node applies the write");
        assert_eq!(Answer::decode(&answer), Ok(Answer::Ok));
    }

    let mut client = Client::new(vec![address], ClientOptions::default()).expect("a client");
    let pages: Vec<_> = client
        .scan(KeyRange::prefix(b"k/"), None, false)
        .collect::<Result<_, _>>()
        .expect("the scan completes");
    assert!(pages.len() >= 5, "{} pages", pages.len());
    let pairs: Vec<_> = pages.concat();
    let expected: Vec<_> = (0..20)
        .map(|n| (format!("k/{n:02}").into_bytes(), value(n)))
        .collect();
    assert_eq!(pairs, expected);
    node.shutdown().expect("the node stops");
}
