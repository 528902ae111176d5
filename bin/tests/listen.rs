//! `balsa serve --listen`: a node binds one address and advertises another (its own in
//! `--cluster`), so that a relay can stand between the members. Here every node binds a port
//! of its own, and a relay in the test owns the advertised ones: peers and clients talk only to
//! the relay, which forwards each datagram to the node's listen address, from the advertised
//! address of the node that sent it.

#![allow(
    clippy::disallowed_methods,
    reason = "tests of real processes wait on wall-clock deadlines"
)]

mod common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use common::{Cluster, ELECTION_TIMEOUT, free_loopback_addresses, stderr, stdout};

/// How long a relay thread blocks in one receive before it looks whether it should stop.
const RECEIVE_SLICE: Duration = Duration::from_millis(50);

/// Pairs of node sockets: node `k` is advertised at `advertised[k]` and listens at
/// `listen[k]`.
struct Addresses {
    advertised: Vec<SocketAddr>,
    listen: Vec<SocketAddr>,
}

impl Addresses {
    /// The node listening at `address`, if any.
    fn node_listening_at(&self, address: SocketAddr) -> Option<usize> {
        self.listen.iter().position(|listen| *listen == address)
    }
}

/// A UDP relay standing in for the advertised addresses. A datagram that reaches node `j`'s
/// advertised address from node `i`'s listen address goes on to node `j`'s listen address
/// from node `i`'s advertised address, so `j` sees it come from where its peer table says `i`
/// is. A datagram from anyone else (a client) goes on from a socket of the relay's own for that
/// client, and what the nodes answer there goes back to the client from the advertised address
/// of the node that answered.
struct Relay {
    stop: Arc<AtomicBool>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// Datagrams relayed between nodes.
    between_nodes: Arc<AtomicU64>,
}

impl Relay {
    fn start(addresses: Addresses) -> Relay {
        let addresses = Arc::new(addresses);
        let sockets: Vec<Arc<UdpSocket>> = addresses
            .advertised
            .iter()
            .map(|address| {
                let socket = UdpSocket::bind(address).expect("binding an advertised address");
                socket
                    .set_read_timeout(Some(RECEIVE_SLICE))
                    .expect("setting a read timeout");
                Arc::new(socket)
            })
            .collect();
        let relay = Relay {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Arc::new(Mutex::new(Vec::new())),
            between_nodes: Arc::new(AtomicU64::new(0)),
        };
        let clients: Arc<Mutex<BTreeMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
        for (j, socket) in sockets.iter().enumerate() {
            let (socket, sockets) = (Arc::clone(socket), sockets.clone());
            let (addresses, clients) = (Arc::clone(&addresses), Arc::clone(&clients));
            let (stop, threads) = (Arc::clone(&relay.stop), Arc::clone(&relay.threads));
            let between_nodes = Arc::clone(&relay.between_nodes);
            relay.spawn(move || {
                let mut buffer = vec![0; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((len, from)) = socket.recv_from(&mut buffer) else {
                        continue;
                    };
                    let datagram = &buffer[..len];
                    let to = addresses.listen[j];
                    if let Some(i) = addresses.node_listening_at(from) {
                        between_nodes.fetch_add(1, Ordering::Relaxed);
                        let _ = sockets[i].send_to(datagram, to);
                        continue;
                    }
                    let mut known = clients.lock().expect("not poisoned");
                    let outward = match known.get(&from) {
                        Some(outward) => Arc::clone(outward),
                        None => {
                            let outward = client_side(
                                from,
                                &sockets,
                                &addresses,
                                &stop,
                                &mut threads.lock().expect("not poisoned"),
                            );
                            known.insert(from, Arc::clone(&outward));
                            outward
                        }
                    };
                    drop(known);
                    let _ = outward.send_to(datagram, to);
                }
            });
        }
        relay
    }

    fn spawn(&self, body: impl FnOnce() + Send + 'static) {
        let handle = std::thread::spawn(body);
        self.threads.lock().expect("not poisoned").push(handle);
    }
}

/// The relay's socket for `client`: what the nodes answer there goes back to the client from
/// the advertised address of the node that answered.
fn client_side(
    client: SocketAddr,
    sockets: &[Arc<UdpSocket>],
    addresses: &Arc<Addresses>,
    stop: &Arc<AtomicBool>,
    threads: &mut Vec<JoinHandle<()>>,
) -> Arc<UdpSocket> {
    let outward = UdpSocket::bind("127.0.0.1:0").expect("binding a relay socket");
    outward
        .set_read_timeout(Some(RECEIVE_SLICE))
        .expect("setting a read timeout");
    let outward = Arc::new(outward);
    let (socket, sockets) = (Arc::clone(&outward), sockets.to_vec());
    let (addresses, stop) = (Arc::clone(addresses), Arc::clone(stop));
    threads.push(std::thread::spawn(move || {
        let mut buffer = vec![0; 65_536];
        while !stop.load(Ordering::Relaxed) {
            let Ok((len, from)) = socket.recv_from(&mut buffer) else {
                continue;
            };
            if let Some(k) = addresses.node_listening_at(from) {
                let _ = sockets[k].send_to(&buffer[..len], client);
            }
        }
    }));
    outward
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let threads = std::mem::take(&mut *self.threads.lock().expect("not poisoned"));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

/// Three nodes, each bound to another port than the one it advertises, with every datagram
/// between them (and every client's) through the relay: they elect a leader, commit a write,
/// and answer it back, all through the advertised addresses.
#[test]
fn nodes_listening_behind_a_relay_elect_a_leader_and_commit() {
    let advertised = free_loopback_addresses(3);
    let listen = free_loopback_addresses(3);
    let members: Vec<(u64, SocketAddr)> = (1..).zip(advertised.iter().copied()).collect();
    let relay = Relay::start(Addresses {
        advertised,
        listen: listen.clone(),
    });
    let mut cluster = Cluster::on_addresses(members, &[]);
    for (id, address) in (1..).zip(&listen) {
        cluster.start_node_with(id, &["--listen", &address.to_string()]);
    }

    // `status` and `put` go to the advertised addresses: through the relay.
    cluster.wait_for_leader(ELECTION_TIMEOUT);
    let put = cluster.balsa(&["put", "behind", "relay"]);
    assert_eq!(put.status.code(), Some(0), "{}", stderr(&put));
    let get = cluster.balsa(&["get", "behind"]);
    assert_eq!(get.status.code(), Some(0), "{}", stderr(&get));
    assert_eq!(stdout(&get), "relay\n");
    let mut client = cluster.client();
    client
        .put(b"again", b"x")
        .expect("a write through the relay");
    let answered = client.leader().expect("the node that applied it");
    assert!(
        cluster.endpoints().contains(&answered),
        "the leader answers from its advertised address, not {answered}"
    );
    assert!(relay.between_nodes.load(Ordering::Relaxed) > 0);
}
