//! Shared by the integration tests: a Raft-shaped test message, transports on 127.0.0.1 with
//! their inboxes (plaintext or keyed), raw sockets to forge and capture datagrams with, and
//! waiting with bounded timeouts.
#![allow(dead_code, reason = "each test binary uses a different part")]

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use balsa_net::{
    Codec, Config, CounterValues, Inbound, KEY_LEN, Key, KeyRing, Keys, Kind, Outbox, Transport,
};
use crossbeam_channel::Receiver;
use serde::{Deserialize, Serialize};

pub const CLUSTER: u64 = 42;
/// The longest any test waits for something that should take microseconds.
pub const WAIT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Entry {
    pub index: u64,
    pub term: u64,
    pub data: Vec<u8>,
}

/// A message of every shape: unit, numbers, strings, bytes, nested vectors, options, structs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Msg {
    Unit,
    Number(u64),
    Signed(i64, i32),
    Text(String),
    Bytes(Vec<u8>),
    Nested(Vec<Vec<u8>>),
    Maybe(Option<u64>),
    Pair(bool, char),
    Append {
        term: u64,
        prev_index: u64,
        prev_term: u64,
        commit: u64,
        entries: Vec<Entry>,
    },
}

/// One example of each shape.
pub fn every_shape() -> Vec<Msg> {
    vec![
        Msg::Unit,
        Msg::Number(u64::MAX),
        Msg::Signed(-5, i32::MIN),
        Msg::Text("héllo".to_owned()),
        Msg::Bytes(vec![0, 1, 2, 255]),
        Msg::Nested(vec![vec![], vec![1], vec![2, 3]]),
        Msg::Maybe(Some(7)),
        Msg::Maybe(None),
        Msg::Pair(true, '∑'),
        Msg::Append {
            term: 3,
            prev_index: 99,
            prev_term: 2,
            commit: 98,
            entries: (100..103)
                .map(|index| Entry {
                    index,
                    term: 3,
                    data: vec![0xA5; 100],
                })
                .collect(),
        },
    ]
}

/// A transport with its inbox and an outbox.
pub struct Node {
    pub transport: Transport<Msg>,
    pub inbox: Receiver<Inbound<Msg>>,
    pub outbox: Outbox<Msg>,
}

impl Node {
    pub fn start(id: u64) -> Node {
        Node::start_with(config(id), 4096)
    }

    pub fn start_with(config: Config, inbox_capacity: usize) -> Node {
        let (sender, inbox) = crossbeam_channel::bounded(inbox_capacity);
        let transport = Transport::start(config, sender).expect("transport starts");
        let outbox = transport.outbox();
        Node {
            transport,
            inbox,
            outbox,
        }
    }

    /// A node whose inbox is an unbounded channel, bounded by `config.inbox_limit` only.
    pub fn start_unbounded(config: Config) -> Node {
        let (sender, inbox) = crossbeam_channel::unbounded();
        let transport = Transport::start(config, sender).expect("transport starts");
        let outbox = transport.outbox();
        Node {
            transport,
            inbox,
            outbox,
        }
    }

    pub fn id(&self) -> u64 {
        self.transport.id()
    }

    pub fn addr(&self) -> SocketAddr {
        self.transport.local_addr()
    }

    /// The next inbound message, within [`WAIT`].
    pub fn recv(&self) -> Inbound<Msg> {
        self.inbox.recv_timeout(WAIT).unwrap_or_else(|error| {
            panic!("node {} got nothing within {WAIT:?}: {error}", self.id())
        })
    }

    /// Asserts nothing is waiting in the inbox now.
    pub fn assert_inbox_empty(&self) {
        if let Ok(inbound) = self.inbox.try_recv() {
            panic!("node {} did not expect {inbound:?}", self.id());
        }
    }

    pub fn counters(&self) -> CounterValues {
        self.transport.counters().values()
    }

    /// Waits until `check` holds for this node's counters.
    pub fn wait_for_counters(&self, what: &str, check: impl Fn(&CounterValues) -> bool) {
        eventually(what, || check(&self.counters()));
    }
}

pub fn config(id: u64) -> Config {
    Config::new(id, CLUSTER, "127.0.0.1:0".parse().expect("valid address"))
}

/// Makes every node a peer of every other.
pub fn connect(nodes: &[&Node]) {
    for a in nodes {
        for b in nodes {
            if a.id() != b.id() {
                a.transport
                    .set_peer(b.id(), b.addr())
                    .expect("valid peer id");
            }
        }
    }
}

/// A plain socket on 127.0.0.1 to forge datagrams from, and to capture them with: a read waits
/// at most [`WAIT`].
pub fn raw_socket() -> UdpSocket {
    let raw = UdpSocket::bind("127.0.0.1:0").expect("bind a raw socket");
    raw.set_read_timeout(Some(WAIT))
        .expect("a read timeout on a raw socket");
    raw
}

/// The next datagram `raw` receives, within [`WAIT`], and where it came from.
pub fn capture(raw: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buffer = vec![0; 65_536];
    let (len, from) = raw.recv_from(&mut buffer).unwrap_or_else(|error| {
        panic!(
            "{} captured nothing within {WAIT:?}: {error}",
            raw.local_addr().expect("bound")
        )
    });
    buffer.truncate(len);
    (buffer, from)
}

/// The test key made of 32 copies of `byte`: one distinct key per byte.
pub fn key(byte: u8) -> Key {
    Key::from_bytes([byte; KEY_LEN])
}

/// The byte of the test cluster's peer key and of its client key.
pub const PEER_KEY: u8 = 1;
pub const CLIENT_KEY: u8 = 2;

/// A node's keys: peer ring [`key`]`(peer)`, client ring [`key`]`(client)`, one key each.
pub fn node_keys(peer: u8, client: u8) -> Keys {
    Keys::node(KeyRing::new(key(peer)), KeyRing::new(key(client)))
}

/// The test cluster's keys for a node.
pub fn cluster_keys() -> Keys {
    node_keys(PEER_KEY, CLIENT_KEY)
}

/// The test cluster's keys for a client.
pub fn client_keys() -> Keys {
    Keys::client(key(CLIENT_KEY))
}

/// Node `id`'s configuration sealing under `keys` as boot `boot_id`.
pub fn keyed_config(id: u64, keys: Keys, boot_id: u64) -> Config {
    let mut config = config(id);
    config.keys = keys;
    config.boot_id = boot_id;
    config
}

impl Node {
    /// Node `id` with the test cluster's keys (or a client's for id 0), as boot 1.
    pub fn start_keyed(id: u64) -> Node {
        let keys = if id == balsa_net::CLIENT_ID {
            client_keys()
        } else {
            cluster_keys()
        };
        Node::start_with(keyed_config(id, keys, 1), 4096)
    }
}

/// A codec sealing under `keys` as node `from` of the test cluster, boot `boot_id`.
pub fn sealing_codec(from: u64, keys: &Keys, boot_id: u64) -> Codec {
    Codec::new(CLUSTER, from, balsa_net::MAX_DATAGRAM_LIMIT)
        .and_then(|codec| codec.with_keys(keys, boot_id))
        .expect("a sealing codec")
}

/// A datagram of `kind` from `from` sealed under `keys`.
pub fn sealed_datagram(keys: &Keys, kind: Kind, from: u64, msg: &Msg) -> Vec<u8> {
    sealing_codec(from, keys, 1)
        .encode(kind, msg)
        .expect("fits")
        .to_vec()
}

/// A valid datagram of `kind` from node `from` in the test cluster.
pub fn datagram(kind: Kind, from: u64, msg: &Msg) -> Vec<u8> {
    let mut codec = Codec::new(CLUSTER, from, balsa_net::MAX_DATAGRAM_LIMIT).expect("valid limit");
    codec.encode(kind, msg).expect("fits").to_vec()
}

/// Sends a client request carrying `Msg::Text(marker)` from `raw` and waits until it is
/// delivered, returning every other message delivered before it. Datagrams from one socket
/// over loopback arrive in order, so everything `raw` sent before has then been processed.
pub fn barrier(raw: &UdpSocket, node: &Node, marker: &str) -> Vec<Inbound<Msg>> {
    barrier_with(raw, node, marker, |msg| datagram(Kind::Request, 0, msg))
}

/// As [`barrier`], for a node with the test cluster's keys: the marker is sealed under the
/// client key.
pub fn sealed_barrier(raw: &UdpSocket, node: &Node, marker: &str) -> Vec<Inbound<Msg>> {
    barrier_with(raw, node, marker, |msg| {
        sealed_datagram(&client_keys(), Kind::Request, 0, msg)
    })
}

/// As [`barrier`], with the marker request made by `request`.
pub fn barrier_with(
    raw: &UdpSocket,
    node: &Node,
    marker: &str,
    request: impl Fn(&Msg) -> Vec<u8>,
) -> Vec<Inbound<Msg>> {
    let msg = Msg::Text(marker.to_owned());
    raw.send_to(&request(&msg), node.addr())
        .expect("send marker");
    let mut before = Vec::new();
    loop {
        let inbound = node.recv();
        if inbound.msg == msg {
            return before;
        }
        before.push(inbound);
    }
}

/// Waits until `condition` holds, checking every millisecond, for at most [`WAIT`]. For state
/// that another thread updates without telling anyone (counters); never a fixed sleep.
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = crossbeam_channel::after(WAIT);
    let tick = crossbeam_channel::tick(Duration::from_millis(1));
    while !condition() {
        crossbeam_channel::select! {
            recv(deadline) -> _ => panic!("not within {WAIT:?}: {what}"),
            recv(tick) -> _ => {}
        }
    }
}
