//! Shutdown under load: the net thread is joined, the socket closed (its port can be bound
//! again), outboxes left behind fail cleanly, and dropping a transport does the same.

mod common;

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use balsa_net::{Destination, Error, Kind};
use common::{Msg, Node, config, connect, datagram, raw_socket};

fn port_is_free(node_addr: std::net::SocketAddr) -> bool {
    UdpSocket::bind(node_addr).is_ok()
}

/// Four threads send to node 2 and two flood node 1's socket, by every path, while node 1 shuts
/// down. The senders see `Closed` and stop; shutdown returns; node 1's port is free again.
#[test]
fn shutdown_under_load_joins_the_thread_and_frees_the_port() {
    let a = Node::start(1);
    let b = Node::start(2);
    connect(&[&a, &b]);
    let a_addr = a.addr();
    let flooding = Arc::new(AtomicBool::new(true));

    let senders: Vec<_> = (0..4)
        .map(|i| {
            let mut outbox = a.transport.outbox();
            thread::Builder::new()
                .name(format!("sender-{i}"))
                .spawn(move || {
                    let mut sent = 0_u64;
                    loop {
                        let msg = Msg::Number(sent);
                        let result = if i % 2 == 0 {
                            outbox.send_direct(Destination::Peer(2), &msg)
                        } else {
                            outbox.send_via_loop(Destination::Peer(2), &msg)
                        };
                        match result {
                            Ok(()) => sent += 1,
                            // Faster than the socket: the queue to the net thread fills.
                            Err(Error::QueueFull { .. }) => {}
                            Err(Error::Closed) => return sent,
                            Err(other) => panic!("sender {i}: {other}"),
                        }
                    }
                })
                .expect("spawn sender")
        })
        .collect();
    let flooders: Vec<_> = (0..2)
        .map(|i| {
            let flooding = Arc::clone(&flooding);
            let bytes = datagram(Kind::Request, 0, &Msg::Bytes(vec![0; 500]));
            thread::Builder::new()
                .name(format!("flood-{i}"))
                .spawn(move || {
                    let raw = raw_socket();
                    while flooding.load(Ordering::Relaxed) {
                        let _ = raw.send_to(&bytes, a_addr);
                    }
                })
                .expect("spawn flooder")
        })
        .collect();

    // Wait until traffic flows both ways through node 1, then shut it down mid-stream.
    b.recv();
    a.recv();
    let Node {
        transport,
        inbox,
        outbox,
    } = a;
    drop(outbox);
    transport.shutdown().expect("clean shutdown");
    let sent: u64 = senders.into_iter().map(|s| s.join().expect("sender")).sum();
    assert!(sent > 0);
    assert!(
        port_is_free(a_addr),
        "the socket is closed once shutdown returns"
    );
    // What arrived before the stop is still in the inbox; nothing comes after.
    drop(inbox);
    flooding.store(false, Ordering::Relaxed);
    for flooder in flooders {
        flooder.join().expect("flooder");
    }
}

#[test]
fn dropping_the_transport_stops_it_too() {
    let mut a = Node::start(1);
    let b = Node::start(2);
    connect(&[&a, &b]);
    a.outbox
        .send(Destination::Peer(2), &Msg::Unit)
        .expect("sent");
    b.recv();
    let addr = a.addr();
    let Node {
        transport,
        outbox: mut left_behind,
        ..
    } = a;
    drop(transport);
    assert!(port_is_free(addr));
    assert!(matches!(
        left_behind.send_direct(Destination::Peer(2), &Msg::Unit),
        Err(Error::Closed)
    ));
    assert!(matches!(
        left_behind.send_via_loop(Destination::Peer(2), &Msg::Unit),
        Err(Error::Closed)
    ));
}

#[test]
fn what_was_queued_before_shutdown_is_sent() {
    let mut cfg = config(1);
    cfg.send_path = balsa_net::SendPath::EventLoop;
    let mut a = Node::start_with(cfg, 16);
    let b = Node::start(2);
    connect(&[&a, &b]);
    for n in 0..50 {
        a.outbox
            .send(Destination::Peer(2), &Msg::Number(n))
            .expect("queued");
    }
    a.transport.shutdown().expect("clean shutdown");
    let mut got: Vec<Msg> = (0..50).map(|_| b.recv().msg).collect();
    got.sort_unstable();
    assert_eq!(got, (0..50).map(Msg::Number).collect::<Vec<_>>());
}

#[test]
fn many_transports_start_and_stop() {
    for round in 0..20 {
        let nodes: Vec<Node> = (1..=4).map(Node::start).collect();
        connect(&nodes.iter().collect::<Vec<_>>());
        let addrs: Vec<_> = nodes.iter().map(Node::addr).collect();
        for node in nodes {
            node.transport
                .shutdown()
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
        assert!(addrs.into_iter().all(port_is_free), "round {round}");
    }
}

/// The names of this process's threads (Linux: `/proc/self/task/*/comm`).
#[cfg(target_os = "linux")]
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .expect("list threads")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .collect()
}

/// The net thread is named after its node and is gone once shutdown returns: no thread leaks.
#[cfg(target_os = "linux")]
#[test]
fn the_named_net_thread_exists_until_shutdown_returns() {
    let node = Node::start(7_707);
    let name = "balsa-net-7707";
    // The thread names itself as it starts.
    common::eventually("the net thread is named", || {
        thread_names().iter().filter(|n| *n == name).count() == 1
    });
    node.transport.shutdown().expect("clean shutdown");
    assert!(
        !thread_names().iter().any(|n| n == name),
        "{name} still running"
    );
}
