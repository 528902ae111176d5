//! Helpers shared by the in-process node tests.

use std::net::{SocketAddr, UdpSocket};

/// `n` loopback addresses free a moment ago: bind, read the port, release; the nodes bind them
/// moments later.
pub fn free_addresses(n: usize) -> Vec<SocketAddr> {
    let sockets: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
        .collect();
    sockets
        .iter()
        .map(|socket| socket.local_addr().expect("address"))
        .collect()
}
