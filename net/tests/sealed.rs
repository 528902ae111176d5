//! Sealed datagrams through real sockets (issue 16): keyed transports talk, and a socket on the
//! wire sees no plaintext; damaged, misdirected, relabelled and replayed datagrams are dropped
//! and counted (in total and per source address) with nothing delivered and real traffic
//! flowing on; a node rotating its keys answers each sender under the key it used; a client
//! whose request cannot be opened gets a notice, within the notice budget, and a member none.
//!
//! Capturing: a transport's peer table can name a raw socket as a peer, which then receives
//! what the transport sends that peer. Naming the same raw socket as the sender in the
//! receiver's table makes it the sender's registered address, so what it sends passes the
//! address check and reaches the seal checks (this is [`Wire`]).
#![cfg(feature = "seal")]

mod common;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};

use balsa_net::{
    CounterValues, Destination, DropReason, Error, HEADER_LEN, Inbound, KeyRing, Keys, Kind,
    NOTICES_PER_SECOND, Notice, REPLAY_WINDOW, SEAL_OVERHEAD, SEALED, SourceDrops, datagram_len,
};
use common::{
    CLIENT_KEY, Msg, Node, PEER_KEY, capture, client_keys, cluster_keys, connect, datagram,
    every_shape, key, keyed_config, node_keys, raw_socket, sealed_barrier, sealed_datagram,
    sealing_codec,
};

/// Where the kind byte is (see the envelope layout); [`SEALED`] is its high bit.
const KIND_AT: usize = 5;
/// Where the `from` field starts (see the envelope layout).
const FROM_AT: usize = 14;

/// The key a rotation moves to; [`PEER_KEY`] or [`CLIENT_KEY`] is the one it moves from.
const NEW: u8 = 3;
/// A key that is not the cluster's.
const STRANGER: u8 = 9;

/// Which barrier proves a node has handled what a raw socket sent before it.
type Barrier = fn(&UdpSocket, &Node, &str) -> Vec<Inbound<Msg>>;

/// Sends each datagram from `raw` to `node`, `barrier` after every 32 (so no socket buffer
/// overflows); checks that nothing was delivered and that every one was counted as dropped.
/// Returns the counters then.
fn send_all_and_count(
    raw: &UdpSocket,
    node: &Node,
    datagrams: &[Vec<u8>],
    barrier: Barrier,
) -> CounterValues {
    let before = node.counters();
    for chunk in datagrams.chunks(32) {
        for bytes in chunk {
            raw.send_to(bytes, node.addr()).expect("send a datagram");
        }
        let delivered = barrier(raw, node, "barrier");
        assert!(delivered.is_empty(), "delivered: {delivered:?}");
    }
    let after = node.counters();
    assert_eq!(
        after.dropped_total() - before.dropped_total(),
        datagrams.len() as u64,
        "{after}"
    );
    let barriers = datagrams.len().div_ceil(32) as u64;
    assert_eq!(after.delivered - before.delivered, barriers);
    after
}

fn addr(raw: &UdpSocket) -> SocketAddr {
    raw.local_addr().expect("bound")
}

/// `node`'s suspicious drops: one source, with these counts.
fn assert_one_source(node: &Node, source: SocketAddr, drops: SourceDrops) {
    assert_eq!(
        node.transport.counters().by_source(),
        vec![(source, drops)],
        "suspicious drops by source"
    );
}

/// A source's drops: `n` authentication failures and nothing else.
fn auth_failed(n: u64) -> SourceDrops {
    SourceDrops {
        auth_failed: n,
        ..SourceDrops::default()
    }
}

/// A source's drops: `n` replays (old boots among them) and nothing else.
fn replayed(n: u64) -> SourceDrops {
    SourceDrops {
        replayed: n,
        ..SourceDrops::default()
    }
}

/// Checks, by a barrier from `raw`, that `node` has handled everything `raw` sent before and
/// delivered none of it.
fn assert_nothing_delivered(raw: &UdpSocket, node: &Node) {
    let delivered = sealed_barrier(raw, node, "barrier");
    assert!(delivered.is_empty(), "delivered: {delivered:?}");
}

/// A raw socket that `node`'s peer table names as node 1, so that what it sends passes the
/// address check.
fn raw_as_node_1(node: &Node) -> UdpSocket {
    let raw = raw_socket();
    node.transport.set_peer(1, addr(&raw)).expect("valid id");
    raw
}

/// The notice `bytes` is to a client with the cluster's client key (`None`: no notice).
fn client_notice(bytes: &[u8]) -> Option<Notice> {
    sealing_codec(0, &client_keys(), 1).notice(bytes)
}

/// Node 1 and node 2 with the cluster's keys, and a raw socket on the wire between them: node
/// 1's table has the raw socket as node 2 (so it captures what node 1 sends), node 2's has it
/// as node 1 (so what it forwards passes the address check).
struct Wire {
    sender: Node,
    receiver: Node,
    raw: UdpSocket,
}

impl Wire {
    fn new() -> Wire {
        Wire::with_sender(Node::start_keyed(1))
    }

    fn with_sender(sender: Node) -> Wire {
        let wire = Wire {
            sender,
            receiver: Node::start_keyed(2),
            raw: raw_socket(),
        };
        wire.route_through_raw();
        wire
    }

    fn route_through_raw(&self) {
        let raw = addr(&self.raw);
        self.sender.transport.set_peer(2, raw).expect("valid id");
        self.receiver.transport.set_peer(1, raw).expect("valid id");
    }

    /// The nodes talk directly, as if the raw socket had left the wire.
    fn route_directly(&self) {
        connect(&[&self.sender, &self.receiver]);
    }

    /// Node 1 sends `msg` to node 2; returns the datagram the raw socket caught.
    fn capture(&mut self, msg: &Msg) -> Vec<u8> {
        self.sender
            .outbox
            .send(Destination::Peer(2), msg)
            .expect("sent");
        let (bytes, from) = capture(&self.raw);
        assert_eq!(from, self.sender.addr());
        bytes
    }

    fn forward(&self, bytes: &[u8]) {
        self.raw
            .send_to(bytes, self.receiver.addr())
            .expect("forward");
    }

    /// Forwards `bytes` and checks that node 2 takes it as `msg` from node 1.
    fn forward_delivered(&self, bytes: &[u8], msg: &Msg) {
        self.forward(bytes);
        let inbound = self.receiver.recv();
        assert_eq!(
            (inbound.kind, inbound.from, &inbound.msg),
            (Kind::Peer, 1, msg)
        );
    }

    /// Checks that node 2 has handled everything forwarded so far and delivered none of it.
    fn assert_nothing_more_delivered(&self) {
        assert_nothing_delivered(&self.raw, &self.receiver);
    }

    /// Checks that node 2 dropped `n` datagrams in all, every one for `reason` (a replay or an
    /// old boot), counted against the raw socket as replays.
    fn assert_replays_dropped(&self, reason: DropReason, n: u64) {
        let counters = self.receiver.counters();
        assert_eq!(counters.dropped(reason), n, "{counters}");
        assert_eq!(counters.dropped_total(), n, "{counters}");
        assert_one_source(&self.receiver, addr(&self.raw), replayed(n));
    }
}

#[test]
fn keyed_transports_deliver_every_shape_sealed() {
    let mut a = Node::start_keyed(1);
    let mut b = Node::start_keyed(2);
    connect(&[&a, &b]);
    let mut client = Node::start_keyed(0);
    let mut sizes = 0;
    for msg in every_shape() {
        sizes += datagram_len(&msg).expect("counts") + SEAL_OVERHEAD;
        a.outbox.send(Destination::Peer(2), &msg).expect("sent");
        assert_eq!(
            b.recv(),
            Inbound {
                kind: Kind::Peer,
                from: 1,
                source: a.addr(),
                msg: msg.clone()
            }
        );
        client
            .outbox
            .send(Destination::Server(b.addr()), &msg)
            .expect("sent");
        let request = b.recv();
        assert_eq!(
            (request.kind, request.from, request.source, &request.msg),
            (Kind::Request, 0, client.addr(), &msg)
        );
        b.outbox
            .send(Destination::Client(request.source), &msg)
            .expect("sent");
        let response = client.recv();
        assert_eq!(
            (response.kind, response.from, &response.msg),
            (Kind::Response, 2, &msg)
        );
    }
    let shapes = every_shape().len() as u64;
    assert_eq!(b.counters().delivered, 2 * shapes);
    assert_eq!(client.counters().delivered, shapes);
    for node in [&a, &b, &client] {
        assert_eq!(node.counters().dropped_total(), 0, "{}", node.counters());
    }
    assert_eq!(a.counters().bytes_out, sizes as u64, "sealed sizes");
}

#[test]
fn the_wire_carries_no_plaintext() {
    let secret = "attack at dawn, bring the spare keys";
    let leaks = |bytes: &[u8]| {
        bytes
            .windows(6)
            .any(|w| secret.as_bytes().windows(6).any(|s| s == w))
    };
    let messages = [
        Msg::Text(secret.to_owned()),
        Msg::Bytes(secret.as_bytes().to_vec()),
    ];
    let mut wire = Wire::new();
    let mut client = Node::start_keyed(0);
    for msg in &messages {
        let member = wire.capture(msg);
        client
            .outbox
            .send(Destination::Server(addr(&wire.raw)), msg)
            .expect("sent");
        let (request, _) = capture(&wire.raw);
        for (bytes, kind) in [(&member, Kind::Peer), (&request, Kind::Request)] {
            assert!(!leaks(bytes), "{kind:?} datagram shows the secret");
            assert_eq!(bytes[KIND_AT], kind as u8 | SEALED);
            assert_eq!(
                bytes.len(),
                datagram_len(msg).expect("counts") + SEAL_OVERHEAD
            );
        }
        // What was caught is the real thing.
        wire.forward_delivered(&member, msg);
    }
    // The check can fail: without keys, the secret is there for the raw socket to read.
    let mut plain = Node::start(1);
    plain
        .transport
        .set_peer(2, addr(&wire.raw))
        .expect("valid id");
    plain
        .outbox
        .send(Destination::Peer(2), &messages[0])
        .expect("sent");
    assert!(leaks(&capture(&wire.raw).0));
}

/// Why a captured member datagram with byte `at` XORed with 1 is dropped.
fn flipped_reason(at: usize) -> DropReason {
    match at {
        0..4 => DropReason::BadMagic,
        4 => DropReason::BadVersion,
        // 0x81 (sealed peer) becomes 0x80: kind 0, which is none.
        KIND_AT => DropReason::Undecodable,
        6..FROM_AT => DropReason::WrongCluster,
        // Node 1's id with a bit flipped is in no one's table.
        FROM_AT..HEADER_LEN => DropReason::UnknownPeer,
        _ => DropReason::AuthFailed,
    }
}

#[test]
fn a_capture_damaged_anywhere_is_dropped_by_reason_and_traffic_flows_on() {
    let mut wire = Wire::new();
    let mut expected: HashMap<DropReason, u64> = HashMap::new();
    let append = every_shape().pop().expect("shapes");
    for msg in [Msg::Number(7), append] {
        let good = wire.capture(&msg);
        let mut damaged = Vec::new();
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            damaged.push(bad);
            *expected.entry(flipped_reason(at)).or_default() += 1;
        }
        for len in 0..good.len() {
            damaged.push(good[..len].to_vec());
            let reason = if len < HEADER_LEN {
                DropReason::TooShort
            } else {
                DropReason::AuthFailed
            };
            *expected.entry(reason).or_default() += 1;
        }
        damaged.push([good.as_slice(), &[0]].concat());
        *expected.entry(DropReason::AuthFailed).or_default() += 1;
        send_all_and_count(&wire.raw, &wire.receiver, &damaged, sealed_barrier);
        // None of it moved the replay window: the original still goes through, once.
        wire.forward_delivered(&good, &msg);
    }
    let counters = wire.receiver.counters();
    for reason in DropReason::ALL {
        assert_eq!(
            counters.dropped(reason),
            expected.get(&reason).copied().unwrap_or(0),
            "{reason}: {counters}"
        );
    }
    assert_one_source(
        &wire.receiver,
        addr(&wire.raw),
        auth_failed(expected[&DropReason::AuthFailed]),
    );
    // Member traffic got no notice: the first datagram back is the notice for a request now.
    wire.raw
        .send_to(
            &datagram(Kind::Request, 0, &Msg::Number(5)),
            wire.receiver.addr(),
        )
        .expect("sent");
    let (bytes, from) = capture(&wire.raw);
    assert_eq!(from, wire.receiver.addr());
    assert_eq!(client_notice(&bytes), Some(Notice::AuthFailed));
    // And the nodes still talk, directly.
    wire.route_directly();
    wire.sender
        .outbox
        .send(Destination::Peer(2), &Msg::Number(99))
        .expect("sent");
    let inbound = wire.receiver.recv();
    assert_eq!(
        (inbound.source, inbound.msg),
        (wire.sender.addr(), Msg::Number(99))
    );
}

#[test]
fn a_datagram_sealed_under_another_peer_key_fails_authentication() {
    let receiver = Node::start_keyed(2);
    let mut forger = Node::start_with(keyed_config(1, node_keys(STRANGER, STRANGER), 1), 16);
    forger
        .transport
        .set_peer(2, receiver.addr())
        .expect("valid id");
    receiver
        .transport
        .set_peer(1, forger.addr())
        .expect("valid id");
    forger
        .outbox
        .send(Destination::Peer(2), &Msg::Number(1))
        .expect("sent");
    forger
        .outbox
        .send(Destination::Server(receiver.addr()), &Msg::Number(2))
        .expect("sent");
    receiver.wait_for_counters("both counted", |c| c.dropped(DropReason::AuthFailed) == 2);
    assert_nothing_delivered(&raw_socket(), &receiver);
    assert_eq!(receiver.counters().dropped_total(), 2);
    assert_one_source(&receiver, forger.addr(), auth_failed(2));
}

#[test]
fn plaintext_to_a_keyed_node_fails_authentication() {
    let node = Node::start_keyed(2);
    let raw = raw_as_node_1(&node);
    let counters = send_all_and_count(
        &raw,
        &node,
        &[
            datagram(Kind::Peer, 1, &Msg::Number(1)),
            datagram(Kind::Request, 0, &Msg::Number(2)),
            datagram(Kind::Response, 0, &Msg::Number(3)),
        ],
        sealed_barrier,
    );
    assert_eq!(counters.dropped(DropReason::AuthFailed), 3, "{counters}");
    assert_one_source(&node, addr(&raw), auth_failed(3));
}

#[test]
fn sealed_to_an_insecure_node_fails_authentication() {
    let node = Node::start(2);
    let raw = raw_as_node_1(&node);
    let counters = send_all_and_count(
        &raw,
        &node,
        &[
            sealed_datagram(&cluster_keys(), Kind::Peer, 1, &Msg::Number(1)),
            sealed_datagram(&client_keys(), Kind::Request, 0, &Msg::Number(2)),
            sealed_datagram(&cluster_keys(), Kind::Response, 0, &Msg::Number(3)),
        ],
        common::barrier,
    );
    assert_eq!(counters.dropped(DropReason::AuthFailed), 3, "{counters}");
    assert_one_source(&node, addr(&raw), auth_failed(3));
}

#[test]
fn a_client_key_datagram_relabelled_as_member_traffic_fails_authentication() {
    let vote = Msg::Append {
        term: 1_000,
        prev_index: 0,
        prev_term: 0,
        commit: 0,
        entries: Vec::new(),
    };
    // A client's codec, claiming node 1's id: it holds the client key, not the peer key.
    let mut client = sealing_codec(1, &client_keys(), 1);
    assert!(
        matches!(
            client.encode(Kind::Peer, &vote),
            Err(Error::InvalidConfig { .. })
        ),
        "a client codec has no key for member traffic"
    );
    let request = client.encode(Kind::Request, &vote).expect("fits").to_vec();
    let relabel = |kind: Kind| {
        let mut bytes = request.clone();
        bytes[KIND_AT] = kind as u8 | SEALED;
        bytes
    };
    // Also to a node whose peer and client keys are the same: the kind byte is authenticated.
    let same_keys = Node::start_with(keyed_config(2, node_keys(CLIENT_KEY, CLIENT_KEY), 1), 16);
    for node in [Node::start_keyed(2), same_keys] {
        let raw = raw_as_node_1(&node);
        let counters = send_all_and_count(
            &raw,
            &node,
            &[relabel(Kind::Peer), relabel(Kind::Response)],
            sealed_barrier,
        );
        assert_eq!(counters.dropped(DropReason::AuthFailed), 2, "{counters}");
        assert_one_source(&node, addr(&raw), auth_failed(2));
        // Not relabelled, it is what it always was: a client's request.
        raw.send_to(&request, node.addr()).expect("sent");
        let inbound = node.recv();
        assert_eq!((inbound.kind, &inbound.msg), (Kind::Request, &vote));
    }
}

#[test]
fn a_replayed_member_datagram_is_delivered_once_then_counted_replayed() {
    let mut wire = Wire::new();
    let captured = wire.capture(&Msg::Number(1));
    wire.forward_delivered(&captured, &Msg::Number(1));
    for _ in 0..3 {
        wire.forward(&captured);
    }
    wire.assert_nothing_more_delivered();
    wire.assert_replays_dropped(DropReason::Replayed, 3);
}

#[test]
fn after_the_sender_restarts_its_old_datagrams_are_old_boot() {
    let mut wire = Wire::with_sender(Node::start_with(keyed_config(1, cluster_keys(), 1_000), 16));
    let delivered = wire.capture(&Msg::Number(1));
    let held_back = wire.capture(&Msg::Number(2));
    wire.forward_delivered(&delivered, &Msg::Number(1));
    // Node 1 restarts: a new transport for the same id, a later boot, its counter from 1 again.
    let restarted = Node::start_with(keyed_config(1, cluster_keys(), 2_000), 16);
    let old = std::mem::replace(&mut wire.sender, restarted);
    old.transport.shutdown().expect("stops");
    wire.route_through_raw();
    let fresh = wire.capture(&Msg::Number(3));
    wire.forward_delivered(&fresh, &Msg::Number(3));
    // The old boot's datagrams, seen or not, are refused from now on.
    wire.forward(&delivered);
    wire.forward(&held_back);
    wire.assert_nothing_more_delivered();
    wire.assert_replays_dropped(DropReason::OldBoot, 2);
    // The new boot's traffic flows on, and is replay-checked in its turn.
    let next = wire.capture(&Msg::Number(4));
    wire.forward_delivered(&next, &Msg::Number(4));
    wire.forward(&fresh);
    wire.assert_nothing_more_delivered();
    assert_eq!(wire.receiver.counters().dropped(DropReason::Replayed), 1);
}

#[test]
fn the_window_takes_late_datagrams_once_and_refuses_those_it_has_passed() {
    let mut wire = Wire::new();
    let early = wire.capture(&Msg::Number(1));
    let late = wire.capture(&Msg::Number(2));
    let never_forwarded = wire.capture(&Msg::Number(3));
    // Out of order, within the window: each is taken, once.
    wire.forward_delivered(&late, &Msg::Number(2));
    wire.forward_delivered(&early, &Msg::Number(1));
    wire.forward(&early);
    wire.assert_nothing_more_delivered();
    assert_eq!(wire.receiver.counters().dropped(DropReason::Replayed), 1);
    // More than a window's worth of datagrams, straight from node 1.
    wire.route_directly();
    for n in 0..REPLAY_WINDOW + 8 {
        let msg = Msg::Number(1_000 + n);
        wire.sender
            .outbox
            .send(Destination::Peer(2), &msg)
            .expect("sent");
        assert_eq!(wire.receiver.recv().msg, msg);
    }
    // Far below the window now: seen or not, refused as replays.
    wire.route_through_raw();
    wire.forward(&never_forwarded);
    wire.forward(&late);
    wire.assert_nothing_more_delivered();
    wire.assert_replays_dropped(DropReason::Replayed, 3);
}

/// Node `id` whose peer ring is `NEW`, with `PEER_KEY` as its previous key.
fn rotating_node(id: u64) -> Node {
    let keys = Keys::node(
        KeyRing::new(key(NEW)).with_previous(Some(key(PEER_KEY))),
        KeyRing::new(key(CLIENT_KEY)),
    );
    Node::start_with(keyed_config(id, keys, 1), 64)
}

fn node_on(id: u64, peer_key: u8) -> Node {
    Node::start_with(keyed_config(id, node_keys(peer_key, CLIENT_KEY), 1), 64)
}

#[test]
fn a_rotating_node_accepts_both_keys_and_answers_each_sender_under_its_own() {
    let mut rotating = rotating_node(2);
    let mut on_old = node_on(1, PEER_KEY);
    let mut on_new = node_on(3, NEW);
    connect(&[&rotating, &on_old]);
    connect(&[&rotating, &on_new]);
    for (sender, id) in [(&mut on_old, 1), (&mut on_new, 3)] {
        sender
            .outbox
            .send(Destination::Peer(2), &Msg::Number(id))
            .expect("sent");
        let inbound = rotating.recv();
        assert_eq!((inbound.from, inbound.msg), (id, Msg::Number(id)));
    }
    // Each answer opens at a node that holds one key only: it was sealed under that key.
    for (receiver, id) in [(&on_old, 1), (&on_new, 3)] {
        rotating
            .outbox
            .send(Destination::Peer(id), &Msg::Number(10 * id))
            .expect("sent");
        let inbound = receiver.recv();
        assert_eq!((inbound.from, inbound.msg), (2, Msg::Number(10 * id)));
    }
    for node in [&rotating, &on_old, &on_new] {
        assert_eq!(node.counters().dropped_total(), 0, "{}", node.counters());
    }
}

#[test]
fn a_rotating_node_answers_under_the_new_key_a_sender_it_has_not_heard_or_that_moved() {
    let mut rotating = rotating_node(2);
    let mut on_old = node_on(1, PEER_KEY);
    connect(&[&rotating, &on_old]);
    // Not heard from yet: sealed under the current key, which node 1 cannot open.
    rotating
        .outbox
        .send(Destination::Peer(1), &Msg::Number(0))
        .expect("sent");
    on_old.wait_for_counters("the new key refused", |c| {
        c.dropped(DropReason::AuthFailed) == 1
    });
    on_old
        .outbox
        .send(Destination::Peer(2), &Msg::Number(1))
        .expect("sent");
    assert_eq!(rotating.recv().msg, Msg::Number(1));
    rotating
        .outbox
        .send(Destination::Peer(1), &Msg::Number(2))
        .expect("sent");
    assert_eq!(on_old.recv().msg, Msg::Number(2));
    // Node 1 restarts on the new key alone, at the same address (round two of the rotation).
    let at = on_old.addr();
    on_old.transport.shutdown().expect("stops");
    let mut config = keyed_config(1, node_keys(NEW, CLIENT_KEY), 2);
    config.bind = at;
    let mut moved = Node::start_with(config, 64);
    moved
        .transport
        .set_peer(2, rotating.addr())
        .expect("valid id");
    moved
        .outbox
        .send(Destination::Peer(2), &Msg::Number(3))
        .expect("sent");
    assert_eq!(rotating.recv().msg, Msg::Number(3));
    rotating
        .outbox
        .send(Destination::Peer(1), &Msg::Number(4))
        .expect("sent");
    assert_eq!(moved.recv().msg, Msg::Number(4));
    assert_eq!(moved.counters().dropped_total(), 0, "{}", moved.counters());
    assert_eq!(rotating.counters().dropped_total(), 0);
}

#[test]
fn a_node_with_the_new_key_only_refuses_the_old() {
    let new_only = node_on(2, NEW);
    let mut on_old = node_on(1, PEER_KEY);
    connect(&[&new_only, &on_old]);
    on_old
        .outbox
        .send(Destination::Peer(2), &Msg::Number(1))
        .expect("sent");
    new_only.wait_for_counters("the old key refused", |c| {
        c.dropped(DropReason::AuthFailed) == 1
    });
    assert_nothing_delivered(&raw_socket(), &new_only);
    assert_one_source(&new_only, on_old.addr(), auth_failed(1));
}

#[test]
fn a_rotating_node_answers_each_client_under_the_client_key_it_used() {
    let keys = Keys::node(
        KeyRing::new(key(PEER_KEY)),
        KeyRing::new(key(NEW)).with_previous(Some(key(CLIENT_KEY))),
    );
    let mut node = Node::start_with(keyed_config(2, keys, 1), 64);
    let old_client = Node::start_keyed(0);
    let new_client = Node::start_with(keyed_config(0, Keys::client(key(NEW)), 1), 64);
    for (n, mut client) in [old_client, new_client].into_iter().enumerate() {
        let n = n as u64;
        client
            .outbox
            .send(Destination::Server(node.addr()), &Msg::Number(n))
            .expect("sent");
        let request = node.recv();
        assert_eq!(request.msg, Msg::Number(n));
        node.outbox
            .send(Destination::Client(request.source), &Msg::Number(100 + n))
            .expect("sent");
        assert_eq!(client.recv().msg, Msg::Number(100 + n));
        assert_eq!(client.counters().dropped_total(), 0);
    }
    assert_eq!(node.counters().dropped_total(), 0);
}

#[test]
fn a_keyed_node_answers_a_request_it_cannot_open_with_a_notice() {
    let node = Node::start_keyed(2);
    let raw = raw_socket();
    let mut damaged = sealed_datagram(&client_keys(), Kind::Request, 0, &Msg::Number(3));
    *damaged.last_mut().expect("a tag") ^= 1;
    for request in [
        datagram(Kind::Request, 0, &Msg::Number(1)),
        sealed_datagram(
            &Keys::client(key(STRANGER)),
            Kind::Request,
            0,
            &Msg::Number(2),
        ),
        damaged,
    ] {
        raw.send_to(&request, node.addr()).expect("sent");
        let (notice, from) = capture(&raw);
        assert_eq!(from, node.addr());
        assert_eq!(notice.len(), HEADER_LEN + 1);
        assert_eq!(client_notice(&notice), Some(Notice::AuthFailed));
        assert_eq!(client_notice(&request), None, "a request is no notice");
    }
    // The notice goes out before the drop is counted.
    node.wait_for_counters("each request counted", |c| {
        c.dropped(DropReason::AuthFailed) == 3
    });
    assert_eq!(node.counters().delivered, 0);
}

#[test]
fn an_insecure_node_answers_a_sealed_request_with_a_not_sealing_notice() {
    let node = Node::start(2);
    let raw = raw_socket();
    raw.send_to(
        &sealed_datagram(&client_keys(), Kind::Request, 0, &Msg::Number(1)),
        node.addr(),
    )
    .expect("sent");
    let (notice, from) = capture(&raw);
    assert_eq!(from, node.addr());
    assert_eq!(client_notice(&notice), Some(Notice::NotSealing));
    node.wait_for_counters("the request counted", |c| {
        c.dropped(DropReason::AuthFailed) == 1
    });
}

/// The notice budget: of 200 bad requests sent as fast as the node takes them, at most
/// [`NOTICES_PER_SECOND`] are answered in any second (counted against whole seconds elapsed,
/// plus the one that was started: no timing threshold).
#[test]
fn notices_are_sent_within_their_budget() {
    const REQUESTS: u64 = 200;
    let node = Node::start_keyed(2);
    let raw = raw_socket();
    let bad: Vec<Vec<u8>> = (0..REQUESTS)
        .map(|n| datagram(Kind::Request, 0, &Msg::Number(n)))
        .collect();
    #[allow(
        clippy::disallowed_methods,
        reason = "the test measures how long the node had to send notices, for their bound"
    )]
    let start = std::time::Instant::now();
    let counters = send_all_and_count(&raw, &node, &bad, sealed_barrier);
    let elapsed = start.elapsed();
    assert_eq!(counters.dropped(DropReason::AuthFailed), REQUESTS);
    // The node sends nothing but notices: each one it sent reaches the raw socket.
    let sent = counters.datagrams_out;
    for _ in 0..sent {
        let (notice, from) = capture(&raw);
        assert_eq!(from, node.addr());
        assert_eq!(client_notice(&notice), Some(Notice::AuthFailed));
    }
    let budget = u64::from(NOTICES_PER_SECOND) * (elapsed.as_secs() + 1);
    assert!(
        (1..=budget).contains(&sent),
        "{sent} notices for {REQUESTS} requests in {elapsed:?}: budget {budget}"
    );
}

#[test]
fn member_traffic_that_fails_authentication_gets_no_notice() {
    let node = Node::start_keyed(2);
    let raw = raw_as_node_1(&node);
    let stranger = node_keys(STRANGER, STRANGER);
    let counters = send_all_and_count(
        &raw,
        &node,
        &[
            datagram(Kind::Peer, 1, &Msg::Number(1)),
            sealed_datagram(&stranger, Kind::Peer, 1, &Msg::Number(2)),
            datagram(Kind::Response, 0, &Msg::Number(3)),
            sealed_datagram(&stranger, Kind::Response, 0, &Msg::Number(4)),
        ],
        sealed_barrier,
    );
    assert_eq!(counters.dropped(DropReason::AuthFailed), 4, "{counters}");
    assert_eq!(counters.datagrams_out, 0, "no notice sent");
    // The first datagram back is the notice for a request sent now.
    raw.send_to(&datagram(Kind::Request, 0, &Msg::Number(5)), node.addr())
        .expect("sent");
    let (notice, _) = capture(&raw);
    assert_eq!(client_notice(&notice), Some(Notice::AuthFailed));
}

/// A notice is 23 bytes; a request no longer than that gets none, so a forger with a spoofed
/// source address cannot make a node send more bytes than it was sent.
#[test]
fn a_notice_is_never_larger_than_the_request_that_asked() {
    let node = Node::start_keyed(2);
    let raw = raw_socket();
    let plaintext = datagram(Kind::Request, 0, &Msg::Number(1));
    let sealed = sealed_datagram(&client_keys(), Kind::Request, 0, &Msg::Number(2));
    let mut sealed_header = sealed[..HEADER_LEN].to_vec();
    sealed_header[KIND_AT] = Kind::Request as u8 | SEALED;
    let counters = send_all_and_count(
        &raw,
        &node,
        &[
            plaintext[..HEADER_LEN].to_vec(),
            sealed_header.clone(),
            [sealed_header.as_slice(), &[0]].concat(),
        ],
        sealed_barrier,
    );
    assert_eq!(counters.dropped(DropReason::AuthFailed), 3, "{counters}");
    assert_eq!(
        counters.datagrams_out, 0,
        "no notice for a datagram of 22 or 23 bytes"
    );
    // One byte more is answered.
    raw.send_to(&[sealed_header.as_slice(), &[0, 0]].concat(), node.addr())
        .expect("sent");
    let (notice, _) = capture(&raw);
    assert_eq!(notice.len(), HEADER_LEN + 1);
    assert_eq!(client_notice(&notice), Some(Notice::AuthFailed));
}
