//! Every datagram is hostile until proved otherwise: forged and damaged datagrams sent through
//! real sockets are dropped, counted under the right reason, and never delivered; real traffic
//! gets through a flood of junk; a full inbox drops instead of blocking.
#![allow(
    clippy::print_stdout,
    reason = "the flood test prints what it measured, for the record"
)]

mod common;

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use balsa_net::{ANY_CLUSTER, CounterValues, Destination, DropReason, HEADER_LEN, Kind, MAGIC};
use common::{Msg, Node, barrier, config, connect, datagram, every_shape, raw_socket};

fn send_raw(raw: &UdpSocket, node: &Node, bytes: &[u8]) {
    raw.send_to(bytes, node.addr())
        .expect("send forged datagram");
}

/// Sends each datagram from `raw`, a barrier after every 32 (so the socket's receive buffer
/// never overflows, however slow the net thread is scheduled); returns the counters once every
/// one of them is counted as dropped, checking that nothing was delivered.
fn send_all_and_count(raw: &UdpSocket, node: &Node, datagrams: &[Vec<u8>]) -> CounterValues {
    let before = node.counters();
    for chunk in datagrams.chunks(32) {
        for bytes in chunk {
            send_raw(raw, node, bytes);
        }
        let delivered = barrier(raw, node, "barrier");
        assert!(delivered.is_empty(), "delivered: {delivered:?}");
    }
    let expected = before.dropped_total() + datagrams.len() as u64;
    node.wait_for_counters("every forged datagram dropped", |c| {
        c.dropped_total() == expected
    });
    let after = node.counters();
    let barriers = datagrams.len().div_ceil(32) as u64;
    assert_eq!(
        after.datagrams_in - before.datagrams_in,
        datagrams.len() as u64 + barriers
    );
    after
}

#[test]
fn header_damage_is_dropped_by_reason() {
    let node = Node::start(1);
    let raw = raw_socket();
    node.transport
        .set_peer(2, raw.local_addr().expect("bound"))
        .expect("valid id");
    let valid = datagram(Kind::Peer, 2, &Msg::Number(1));
    let with = |at: usize, byte: u8| {
        let mut bytes = valid.clone();
        bytes[at] = byte;
        bytes
    };
    let wrong_cluster = {
        let mut codec = balsa_net::Codec::new(common::CLUSTER + 1, 2, 65_000).expect("valid");
        codec
            .encode(Kind::Peer, &Msg::Number(1))
            .expect("fits")
            .to_vec()
    };
    let counters = send_all_and_count(
        &raw,
        &node,
        &[
            Vec::new(),     // too short: empty
            MAGIC.to_vec(), // too short: the magic alone
            with(0, b'X'),  // bad magic
            with(3, 0),     // bad magic, last byte
            with(4, 1),     // bad version (1: before sealing)
            with(4, 0),     // bad version
            wrong_cluster,  // wrong cluster
            with(5, 0),     // unknown kind
            with(5, 4),     // unknown kind
        ],
    );
    assert_eq!(counters.dropped(DropReason::TooShort), 2);
    assert_eq!(counters.dropped(DropReason::BadMagic), 2);
    assert_eq!(counters.dropped(DropReason::BadVersion), 2);
    assert_eq!(counters.dropped(DropReason::WrongCluster), 1);
    assert_eq!(counters.dropped(DropReason::Undecodable), 2);
    // The real thing still works from the same socket.
    send_raw(&raw, &node, &valid);
    assert_eq!(node.recv().msg, Msg::Number(1));
}

/// A datagram of `kind` from `from` as a sender of cluster `cluster` writes it.
fn datagram_of_cluster(cluster: u64, kind: Kind, from: u64, msg: &Msg) -> Vec<u8> {
    let mut codec = balsa_net::Codec::new(cluster, from, 65_000).expect("valid");
    codec.encode(kind, msg).expect("fits").to_vec()
}

/// The cluster rule (crate doc): peers need the exact id; a client request may carry the
/// wildcard 0 or the node's own id, never another cluster's.
#[test]
fn the_cluster_rule_drops_other_clusters_and_lets_the_client_wildcard_through() {
    let node = Node::start(1);
    let raw = raw_socket();
    node.transport
        .set_peer(2, raw.local_addr().expect("bound"))
        .expect("valid id");
    let other = common::CLUSTER + 1;
    let counters = send_all_and_count(
        &raw,
        &node,
        &[
            datagram_of_cluster(other, Kind::Peer, 2, &Msg::Number(1)),
            datagram_of_cluster(ANY_CLUSTER, Kind::Peer, 2, &Msg::Number(2)),
            datagram_of_cluster(other, Kind::Request, 0, &Msg::Number(3)),
            datagram_of_cluster(ANY_CLUSTER, Kind::Response, 0, &Msg::Number(4)),
        ],
    );
    assert_eq!(counters.dropped(DropReason::WrongCluster), 4);
    // A client request with the wildcard is delivered, as is one with the node's own id.
    send_raw(
        &raw,
        &node,
        &datagram_of_cluster(ANY_CLUSTER, Kind::Request, 0, &Msg::Number(5)),
    );
    let inbound = node.recv();
    assert_eq!((inbound.kind, inbound.msg), (Kind::Request, Msg::Number(5)));
    send_raw(&raw, &node, &datagram(Kind::Request, 0, &Msg::Number(6)));
    assert_eq!(node.recv().msg, Msg::Number(6));
    assert_eq!(node.counters().dropped(DropReason::WrongCluster), 4);
}

#[test]
fn every_truncation_and_every_trailing_byte_is_dropped_and_counted() {
    let node = Node::start(1);
    let raw = raw_socket();
    node.transport
        .set_peer(2, raw.local_addr().expect("bound"))
        .expect("valid id");
    let mut too_short = 0;
    let mut undecodable = 0;
    for msg in every_shape() {
        let valid = datagram(Kind::Peer, 2, &msg);
        let mut damaged: Vec<Vec<u8>> = (0..valid.len()).map(|len| valid[..len].to_vec()).collect();
        too_short += HEADER_LEN.min(valid.len());
        undecodable += valid.len().saturating_sub(HEADER_LEN);
        for extra in [&[0_u8][..], &[1, 2], &[0xFF; 100]] {
            damaged.push([valid.as_slice(), extra].concat());
            undecodable += 1;
        }
        send_all_and_count(&raw, &node, &damaged);
        send_raw(&raw, &node, &valid);
        assert_eq!(
            node.recv().msg,
            msg,
            "the undamaged datagram still goes through"
        );
    }
    let counters = node.counters();
    assert_eq!(counters.dropped(DropReason::TooShort), too_short as u64);
    assert_eq!(
        counters.dropped(DropReason::Undecodable),
        undecodable as u64
    );
    assert_eq!(counters.dropped_total(), (too_short + undecodable) as u64);
}

#[test]
fn a_datagram_over_the_limit_is_dropped() {
    let mut small = config(1);
    small.datagram_limit = 1_200;
    let node = Node::start_with(small, 16);
    let raw = raw_socket();
    let big = datagram(Kind::Request, 0, &Msg::Bytes(vec![1; 1_500]));
    // Bytes: a variant index, a 3-byte length, the bytes.
    let at_limit = datagram(
        Kind::Request,
        0,
        &Msg::Bytes(vec![1; 1_200 - HEADER_LEN - 4]),
    );
    assert_eq!(at_limit.len(), 1_200);
    let counters = send_all_and_count(&raw, &node, &[big]);
    assert_eq!(counters.dropped(DropReason::TooLarge), 1);
    send_raw(&raw, &node, &at_limit);
    assert_eq!(node.recv().msg, Msg::Bytes(vec![1; 1_200 - HEADER_LEN - 4]));
}

#[test]
fn unknown_peers_and_spoofed_addresses_are_dropped() {
    let a = Node::start(1);
    let b = Node::start(2);
    connect(&[&a, &b]);
    let stranger = raw_socket();
    let counters = send_all_and_count(
        &stranger,
        &a,
        &[
            datagram(Kind::Peer, 3, &Msg::Unit), // an id not in the table
            datagram(Kind::Peer, 0, &Msg::Unit), // a client's id as a peer
            datagram(Kind::Peer, 2, &Msg::Unit), // peer 2's id, not from peer 2's address
        ],
    );
    assert_eq!(counters.dropped(DropReason::UnknownPeer), 2);
    assert_eq!(counters.dropped(DropReason::WrongAddress), 1);
    // Client kinds are accepted from anywhere, whatever id they claim.
    send_raw(&stranger, &a, &datagram(Kind::Request, 2, &Msg::Number(5)));
    let inbound = a.recv();
    assert_eq!(
        (inbound.kind, inbound.from, inbound.msg),
        (Kind::Request, 2, Msg::Number(5))
    );
    assert_eq!(inbound.source, stranger.local_addr().expect("bound"));
}

/// Sends requests 0 to 4 from `raw` and waits until the net thread delivered or dropped each.
fn five_requests_handled(node: &Node, raw: &UdpSocket) -> CounterValues {
    for n in 0..5 {
        send_raw(raw, node, &datagram(Kind::Request, 0, &Msg::Number(n)));
    }
    node.wait_for_counters("5 datagrams handled", |c| {
        c.delivered + c.dropped_total() == 5
    });
    node.counters()
}

#[test]
fn a_full_inbox_drops_and_counts_without_blocking_the_net_thread() {
    let node = Node::start_with(config(1), 1);
    let raw = raw_socket();
    let counters = five_requests_handled(&node, &raw);
    assert_eq!(
        (counters.delivered, counters.dropped(DropReason::InboxFull)),
        (1, 4)
    );
    assert_eq!(node.recv().msg, Msg::Number(0));
    // The net thread went on: with room again, the next one is delivered.
    send_raw(&raw, &node, &datagram(Kind::Request, 0, &Msg::Number(9)));
    assert_eq!(node.recv().msg, Msg::Number(9));
}

/// An unbounded inbox (which allocates only as it fills) is held to `inbox_limit` by the net
/// thread: beyond it datagrams are dropped and counted as a full bounded inbox's are, so a
/// flood cannot grow the node's memory without bound.
#[test]
fn an_unbounded_inbox_is_held_to_the_inbox_limit() {
    let mut limited = config(1);
    limited.inbox_limit = Some(2);
    let node = Node::start_unbounded(limited);
    let raw = raw_socket();
    let counters = five_requests_handled(&node, &raw);
    assert_eq!(
        (counters.delivered, counters.dropped(DropReason::InboxFull)),
        (2, 3)
    );
    assert_eq!(node.recv().msg, Msg::Number(0));
    assert_eq!(node.recv().msg, Msg::Number(1));
    // With room again, the next one is delivered.
    send_raw(&raw, &node, &datagram(Kind::Request, 0, &Msg::Number(9)));
    assert_eq!(node.recv().msg, Msg::Number(9));
}

/// Two threads flood node 2 with junk (bad magic, unknown peers, truncated bodies) while node
/// 1 sends it 200 messages, each answered by node 2 through its net thread. The answers prove
/// the flooded net thread still sends; a message the kernel drops (its buffer full of junk) is
/// sent again, up to a bound.
#[test]
fn real_traffic_gets_through_a_flood_of_junk() {
    const MESSAGES: u64 = 200;
    const TRIES: usize = 100;
    let mut a = Node::start(1);
    let b = Node::start(2);
    connect(&[&a, &b]);
    let stop = Arc::new(AtomicBool::new(false));
    let flooders: Vec<_> = (0..2)
        .map(|i| {
            let stop = Arc::clone(&stop);
            let target = b.addr();
            let junk = [
                vec![0xEE; 64],
                datagram(Kind::Peer, 99, &Msg::Bytes(vec![0; 200])),
                {
                    let valid = datagram(Kind::Request, 0, &Msg::Number(300));
                    valid[..valid.len() - 1].to_vec()
                },
            ];
            thread::Builder::new()
                .name(format!("flood-{i}"))
                .spawn(move || {
                    let raw = raw_socket();
                    let mut sent = 0_u64;
                    while !stop.load(Ordering::Relaxed) {
                        let bytes = &junk[(sent % 3) as usize];
                        let _ = raw.send_to(bytes, target);
                        sent += 1;
                    }
                    sent
                })
                .expect("spawn flooder")
        })
        .collect();

    let echo = {
        let mut outbox = b.transport.outbox();
        let inbox = b.inbox.clone();
        thread::Builder::new()
            .name("echo".to_owned())
            .spawn(move || {
                while let Ok(inbound) = inbox.recv_timeout(common::WAIT) {
                    assert_eq!(
                        (inbound.kind, inbound.from),
                        (Kind::Peer, 1),
                        "junk delivered"
                    );
                    if inbound.msg == Msg::Unit {
                        break;
                    }
                    // Through the flooded net thread on purpose.
                    outbox
                        .send_via_loop(Destination::Peer(1), &inbound.msg)
                        .expect("echo");
                }
            })
            .expect("spawn echo")
    };

    let mut retries = 0;
    for n in 0..MESSAGES {
        let msg = Msg::Number(n);
        let mut answered = false;
        for _ in 0..TRIES {
            a.outbox.send(Destination::Peer(2), &msg).expect("sent");
            match a.inbox.recv_timeout(std::time::Duration::from_millis(200)) {
                Ok(inbound) if inbound.msg == msg => {
                    answered = true;
                    break;
                }
                // A late echo of an earlier try, or nothing yet: try again.
                Ok(_) | Err(_) => retries += 1,
            }
        }
        assert!(
            answered,
            "message {n} not answered in {TRIES} tries: {}",
            b.counters()
        );
    }
    stop.store(true, Ordering::Relaxed);
    let junk_sent: u64 = flooders
        .into_iter()
        .map(|f| f.join().expect("flooder"))
        .sum();
    a.outbox
        .send(Destination::Peer(2), &Msg::Unit)
        .expect("sent");
    echo.join().expect("echo thread");
    let counters = b.counters();
    println!("junk sent {junk_sent}, node 2: {counters}, retries {retries}");
    assert!(
        counters.dropped_total() > 0,
        "the flood reached the net thread"
    );
    assert!(counters.delivered >= MESSAGES);
}
