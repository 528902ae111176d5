//! A stand-in node for the client's tests: a UDP socket, served on a thread of the test, that
//! answers requests as the test says. Nothing else in this file.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use balsa_net::{Codec, DEFAULT_DATAGRAM_LIMIT, Kind};

use crate::runtime::wire::{Request, Wire};

/// Serves `socket`: hands the requests of each datagram (one, or a batch) to `answer` and sends
/// back what it returns (`None`: nothing), until a datagram that does not decode arrives (see
/// [`stop`]). Returns, per datagram, its sender and its requests.
pub(crate) fn serve(
    socket: &UdpSocket,
    mut answer: impl FnMut(&[Request]) -> Option<Wire>,
) -> Vec<(SocketAddr, Vec<Request>)> {
    let mut codec = Codec::new(1, 9, DEFAULT_DATAGRAM_LIMIT).unwrap();
    let mut buffer = vec![0; DEFAULT_DATAGRAM_LIMIT + 1];
    // Only so that a failing test cannot hang: every test stops its node.
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut seen = Vec::new();
    while let Ok((len, from)) = socket.recv_from(&mut buffer) {
        let requests = match codec.decode::<Wire>(&mut buffer[..len]) {
            Ok((_, Wire::Request(one))) => vec![one],
            Ok((_, Wire::Requests(all))) => all,
            Ok((_, other)) => panic!("not a request: {other:?}"),
            Err(_) => break,
        };
        if let Some(wire) = answer(&requests) {
            let datagram = codec.encode(Kind::Response, &wire).unwrap();
            socket.send_to(datagram, from).unwrap();
        }
        seen.push((from, requests));
    }
    seen
}

/// Ends [`serve`] on the node at `address`, once it has handled what reached it before.
pub(crate) fn stop(address: SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.send_to(b"stop", address).unwrap();
}
