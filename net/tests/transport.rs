//! Real sockets on 127.0.0.1: every kind and shape round-trips, by both send paths, between
//! many peers; oversized messages and unknown destinations are refused; the peer table changes
//! at run time.

mod common;

use balsa_net::{Destination, DropReason, Error, Inbound, Kind, SendPath};
use common::{Msg, Node, config, connect, every_shape, raw_socket};

#[test]
fn every_kind_and_shape_round_trips() {
    let a = Node::start(1);
    let mut b = Node::start(2);
    connect(&[&a, &b]);
    let mut client = Node::start(0); // a client: id 0, no peers
    let mut a_outbox = a.transport.outbox();

    for msg in every_shape() {
        // Peer message, node 1 → node 2.
        a_outbox.send(Destination::Peer(2), &msg).expect("sent");
        let got = b.recv();
        assert_eq!(
            got,
            Inbound {
                kind: Kind::Peer,
                from: 1,
                source: a.addr(),
                msg: msg.clone()
            }
        );

        // Client request, client → node 2, and the answer back to where it came from.
        client
            .outbox
            .send(Destination::Server(b.addr()), &msg)
            .expect("sent");
        let request = b.recv();
        assert_eq!(
            (request.kind, request.from, request.source),
            (Kind::Request, 0, client.addr())
        );
        assert_eq!(request.msg, msg);
        b.outbox
            .send(Destination::Client(request.source), &msg)
            .expect("sent");
        let response = client.recv();
        assert_eq!(
            (response.kind, response.from, response.source),
            (Kind::Response, 2, b.addr())
        );
        assert_eq!(response.msg, msg);
    }
    let shapes = every_shape().len() as u64;
    let b_counters = b.counters();
    assert_eq!(b_counters.delivered, 2 * shapes);
    assert_eq!(b_counters.dropped_total(), 0);
    assert_eq!(b_counters.datagrams_out, shapes);
    assert_eq!(a.counters().datagrams_out, shapes);
    assert_eq!(
        a.counters().bytes_out,
        b_counters.bytes_in - client.counters().bytes_out
    );
}

#[test]
fn both_send_paths_deliver() {
    for path in [SendPath::Direct, SendPath::EventLoop] {
        let mut config_a = config(1);
        config_a.send_path = path;
        let mut a = Node::start_with(config_a, 64);
        let b = Node::start(2);
        connect(&[&a, &b]);
        for n in 0..100 {
            match n % 3 {
                0 => a.outbox.send(Destination::Peer(2), &Msg::Number(n)),
                1 => a.outbox.send_direct(Destination::Peer(2), &Msg::Number(n)),
                _ => a
                    .outbox
                    .send_via_loop(Destination::Peer(2), &Msg::Number(n)),
            }
            .expect("sent");
            assert_eq!(b.recv().msg, Msg::Number(n), "{path:?}");
        }
        // The net thread counts a datagram after `send_to` returns: maybe after it arrived.
        a.wait_for_counters("100 counted out", |c| c.datagrams_out == 100);
    }
}

#[test]
fn eight_peers_exchange() {
    const NODES: u64 = 8;
    const EACH: i32 = 25;
    let mut nodes: Vec<Node> = (1..=NODES).map(Node::start).collect();
    connect(&nodes.iter().collect::<Vec<_>>());
    for node in &mut nodes {
        let id = node.id();
        for to in (1..=NODES).filter(|to| *to != id) {
            for seq in 0..EACH {
                let msg = Msg::Signed(i64::try_from(id).expect("small"), seq);
                node.outbox.send(Destination::Peer(to), &msg).expect("sent");
            }
        }
    }
    for node in &nodes {
        let mut received = std::collections::BTreeSet::new();
        for _ in 0..(NODES - 1) * EACH.unsigned_abs() as u64 {
            let inbound = node.recv();
            let Msg::Signed(from, seq) = inbound.msg else {
                panic!("unexpected {inbound:?}");
            };
            assert_eq!(inbound.from, from.unsigned_abs());
            assert_eq!(
                inbound.source,
                nodes[usize::try_from(from - 1).expect("small")].addr()
            );
            assert!(
                received.insert((inbound.from, seq)),
                "duplicate {from}/{seq}"
            );
        }
        let expected: std::collections::BTreeSet<_> = (1..=NODES)
            .filter(|from| *from != node.id())
            .flat_map(|from| (0..EACH).map(move |seq| (from, seq)))
            .collect();
        assert_eq!(received, expected);
        node.assert_inbox_empty();
        assert_eq!(node.counters().dropped_total(), 0);
    }
}

#[test]
fn a_message_over_the_limit_is_refused_with_both_sizes() {
    let mut small = config(1);
    small.datagram_limit = 1_200;
    let mut a = Node::start_with(small, 16);
    let b = Node::start(2);
    connect(&[&a, &b]);
    let big = Msg::Bytes(vec![7; 2_000]);
    let expected = balsa_net::datagram_len(&big).expect("counts");
    for result in [
        a.outbox.send_direct(Destination::Peer(2), &big),
        a.outbox.send_via_loop(Destination::Peer(2), &big),
    ] {
        match result {
            Err(Error::TooLarge { size, limit }) => assert_eq!((size, limit), (expected, 1_200)),
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }
    let error = a
        .outbox
        .send(Destination::Peer(2), &big)
        .expect_err("too large");
    assert!(
        error.to_string().contains(&format!("{expected}-byte")),
        "{error}"
    );
    assert!(error.to_string().contains("1200-byte"), "{error}");
    // Nothing left; the next message that fits goes through.
    a.outbox
        .send(Destination::Peer(2), &Msg::Bytes(vec![7; 1_000]))
        .expect("fits");
    assert_eq!(b.recv().msg, Msg::Bytes(vec![7; 1_000]));
    assert_eq!(a.counters().datagrams_out, 1);
}

#[test]
fn an_unknown_destination_peer_is_an_error() {
    let mut a = Node::start(1);
    match a.outbox.send(Destination::Peer(9), &Msg::Unit) {
        Err(Error::UnknownPeer { id: 9 }) => {}
        other => panic!("expected UnknownPeer, got {other:?}"),
    }
    assert!(
        a.transport.set_peer(0, a.addr()).is_err(),
        "id 0 is for clients"
    );
}

#[test]
fn the_peer_table_changes_at_run_time() {
    let a = Node::start(1);
    let mut b = Node::start(2);
    let other = raw_socket();
    b.transport.set_peer(1, a.addr()).expect("valid id");
    let send = |b: &mut Node, n| {
        b.outbox
            .send(Destination::Peer(1), &Msg::Number(n))
            .expect("sent")
    };

    // Node 2 is not in node 1's table yet.
    send(&mut b, 1);
    a.wait_for_counters("unknown peer counted", |c| {
        c.dropped(DropReason::UnknownPeer) == 1
    });
    // Now it is, at its address.
    a.transport.set_peer(2, b.addr()).expect("valid id");
    send(&mut b, 2);
    assert_eq!(a.recv().msg, Msg::Number(2));
    // Its address changes in node 1's table: what comes from the old one is refused.
    let old = a
        .transport
        .set_peer(2, other.local_addr().expect("bound"))
        .expect("valid id");
    assert_eq!(old, Some(b.addr()));
    send(&mut b, 3);
    a.wait_for_counters("wrong address counted", |c| {
        c.dropped(DropReason::WrongAddress) == 1
    });
    // Removed: unknown again.
    assert_eq!(a.transport.remove_peer(2), other.local_addr().ok());
    send(&mut b, 4);
    a.wait_for_counters("unknown peer counted", |c| {
        c.dropped(DropReason::UnknownPeer) == 2
    });
    a.assert_inbox_empty();
    assert_eq!(a.transport.peers(), []);
}

/// A sender outrunning the net thread gets `QueueFull` (counted) instead of waiting or growing
/// the queue; every datagram is either sent or refused, none is lost silently.
#[test]
fn a_full_queue_to_the_net_thread_refuses_instead_of_waiting() {
    const SENDS: u64 = 20_000;
    let mut small_queue = config(1);
    small_queue.outbound_capacity = 2;
    let mut a = Node::start_with(small_queue, 16);
    let b = Node::start_with(config(2), 1); // its inbox overflows: not what is measured here
    connect(&[&a, &b]);
    let mut refused = 0;
    for n in 0..SENDS {
        match a
            .outbox
            .send_via_loop(Destination::Peer(2), &Msg::Number(n))
        {
            Ok(()) => {}
            Err(Error::QueueFull { capacity: 2 }) => refused += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    a.wait_for_counters("every datagram sent or refused", |c| {
        c.datagrams_out + c.queue_full == SENDS
    });
    assert_eq!(a.counters().queue_full, refused);
}
