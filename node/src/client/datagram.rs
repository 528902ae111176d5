//! Framing for the drivers of [`Session`](super::Session)s: a request, or a batch of them, into
//! datagrams, and the answers out of one; and what a failed receive means. No socket here: the
//! drivers send and receive.
//!
//! A batch goes out as `Wire::Requests` in as few datagrams as fit: at most
//! [`MAX_REQUESTS_PER_DATAGRAM`] each (a node drops a larger batch), halved until each part
//! encodes within the datagram limit. A lone request goes as `Wire::Request`.

use std::io;

use balsa_net::{Codec, Kind};

use super::{ClientError, protocol};
use crate::runtime::wire::{MAX_REQUESTS_PER_DATAGRAM, Request, Response, Wire};

/// Encodes `request` alone as a datagram.
///
/// # Errors
/// [`ClientError::TooLarge`] if it does not fit the codec's datagram limit.
pub(crate) fn encode_request(codec: &mut Codec, request: Request) -> Result<&[u8], ClientError> {
    codec
        .encode(Kind::Request, &Wire::Request(request))
        .map_err(|error| encode_error(&error))
}

/// Encodes `requests`, all for one node, into datagrams (see the module doc) and hands each to
/// `send`. Returns the requests that did not leave, by id, with why: too large to go even alone,
/// or carried by a datagram `send` failed to send.
pub(crate) fn encode_batch(
    codec: &mut Codec,
    mut requests: Vec<Request>,
    send: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Vec<(u64, ClientError)> {
    let mut failed = Vec::new();
    while requests.len() > MAX_REQUESTS_PER_DATAGRAM {
        let rest = requests.split_off(MAX_REQUESTS_PER_DATAGRAM);
        let part = std::mem::replace(&mut requests, rest);
        encode_part(codec, part, send, &mut failed);
    }
    encode_part(codec, requests, send, &mut failed);
    failed
}

/// [`encode_batch`] for at most [`MAX_REQUESTS_PER_DATAGRAM`] requests: halved until it fits.
fn encode_part(
    codec: &mut Codec,
    mut part: Vec<Request>,
    send: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    failed: &mut Vec<(u64, ClientError)>,
) {
    let wire = match part.len() {
        0 => return,
        1 => Wire::Request(part.remove(0)),
        _ => Wire::Requests(part),
    };
    let error = match codec.encode(Kind::Request, &wire) {
        Ok(datagram) => match send(datagram) {
            Ok(()) => return,
            Err(error) => ClientError::Io {
                op: "sending",
                source: error,
            },
        },
        Err(balsa_net::Error::TooLarge { .. }) if matches!(wire, Wire::Requests(_)) => {
            let Wire::Requests(mut first) = wire else {
                unreachable!("matched as Requests above");
            };
            let second = first.split_off(first.len() / 2);
            encode_part(codec, first, send, failed);
            encode_part(codec, second, send, failed);
            return;
        }
        Err(error) => encode_error(&error),
    };
    // Each request gets its own copy of the error.
    for request in carried(&wire) {
        failed.push((request.id, copy_error(&error)));
    }
}

/// A copy of a sending error for each request the datagram carried (`io::Error` is not `Clone`).
fn copy_error(error: &ClientError) -> ClientError {
    match error {
        ClientError::TooLarge { size, max } => ClientError::TooLarge {
            size: *size,
            max: *max,
        },
        ClientError::Io { op, source } => ClientError::Io {
            op,
            source: io::Error::new(source.kind(), source.to_string()),
        },
        other => protocol(other.to_string()),
    }
}

/// The requests a datagram built by [`encode_part`] carries.
fn carried(wire: &Wire) -> &[Request] {
    match wire {
        Wire::Request(request) => std::slice::from_ref(request),
        Wire::Requests(requests) => requests,
        Wire::Raft(_) | Wire::Response(_) | Wire::Responses(_) => &[],
    }
}

/// The client's view of an encoding failure: too large, or a protocol error.
fn encode_error(error: &balsa_net::Error) -> ClientError {
    match error {
        balsa_net::Error::TooLarge { size, limit } => ClientError::TooLarge {
            size: *size as u64,
            max: *limit as u64,
        },
        other => protocol(format!("encoding the request: {other}")),
    }
}

/// The answers `datagram` carries, in order: none if it is not a response of this cluster
/// (another cluster's, a request, not sealed under the client's key when it has one, or bytes
/// that do not decode). Opens it in place.
pub(crate) fn decode_responses(codec: &Codec, datagram: &mut [u8]) -> Vec<Response> {
    match codec.decode::<Wire>(datagram) {
        Ok((header, Wire::Response(response))) if header.kind == Kind::Response => {
            vec![response]
        }
        Ok((header, Wire::Responses(responses))) if header.kind == Kind::Response => responses,
        _ => Vec::new(),
    }
}

/// What a driver does after its socket failed to receive.
pub(crate) enum ReceiveFailure {
    /// Nothing is waiting: the socket would block, or its read timeout passed.
    NothingWaiting,
    /// Read again: a signal interrupted the read, or an ICMP "port unreachable" from an earlier
    /// send came back (that node is down, which the attempt timeout handles).
    ReadOn,
    /// The socket failed, and would fail again at every read.
    Failed(ClientError),
}

/// Sorts a receive's `error` (see [`ReceiveFailure`]).
pub(crate) fn receive_failure(error: io::Error) -> ReceiveFailure {
    match error.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ReceiveFailure::NothingWaiting,
        io::ErrorKind::Interrupted
        | io::ErrorKind::ConnectionRefused
        | io::ErrorKind::ConnectionReset => ReceiveFailure::ReadOn,
        _ => ReceiveFailure::Failed(ClientError::Io {
            op: "receiving",
            source: error,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::wire::{RequestBody, ResponseBody};
    use balsa_net::{CLIENT_ID, DEFAULT_DATAGRAM_LIMIT};

    fn command(id: u64, bytes: usize) -> Request {
        Request {
            id,
            body: RequestBody::Command {
                data: vec![7; bytes],
            },
        }
    }

    /// Encodes `requests` and decodes every datagram back: the ids of each datagram, and the
    /// ids refused.
    fn batches(limit: usize, requests: Vec<Request>) -> (Vec<Vec<u64>>, Vec<u64>) {
        let mut codec = Codec::new(1, CLIENT_ID, limit).unwrap();
        let node = Codec::new(1, 2, limit).unwrap();
        let mut sent = Vec::new();
        let failed = encode_batch(&mut codec, requests, &mut |datagram| {
            let (_, wire) = node.decode::<Wire>(&mut datagram.to_vec()).unwrap();
            sent.push(carried(&wire).iter().map(|r| r.id).collect());
            Ok(())
        });
        let refused = failed
            .into_iter()
            .map(|(id, error)| {
                assert!(matches!(error, ClientError::TooLarge { .. }), "{error:?}");
                id
            })
            .collect();
        (sent, refused)
    }

    #[test]
    fn a_failed_send_fails_every_request_it_carried() {
        let mut codec = Codec::new(1, CLIENT_ID, DEFAULT_DATAGRAM_LIMIT).unwrap();
        let failed = encode_batch(
            &mut codec,
            (1..=3).map(|id| command(id, 10)).collect(),
            &mut |_| Err(io::Error::from(io::ErrorKind::WouldBlock)),
        );
        let ids: Vec<u64> = failed.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        assert!(failed.iter().all(|(_, error)| matches!(
            error,
            ClientError::Io { source, .. } if source.kind() == io::ErrorKind::WouldBlock
        )));
    }

    #[test]
    fn a_batch_goes_in_one_datagram_and_a_lone_request_alone() {
        let (sent, refused) = batches(
            DEFAULT_DATAGRAM_LIMIT,
            (1..=3).map(|id| command(id, 10)).collect(),
        );
        assert_eq!(sent, vec![vec![1, 2, 3]]);
        assert!(refused.is_empty());
        let (sent, _) = batches(DEFAULT_DATAGRAM_LIMIT, vec![command(9, 10)]);
        assert_eq!(sent, vec![vec![9]]);
    }

    #[test]
    fn a_batch_over_the_cap_is_split_at_the_cap() {
        let requests = (0..MAX_REQUESTS_PER_DATAGRAM as u64 + 2)
            .map(|id| command(id, 1))
            .collect();
        let (sent, _) = batches(DEFAULT_DATAGRAM_LIMIT, requests);
        let sizes: Vec<usize> = sent.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![MAX_REQUESTS_PER_DATAGRAM, 2]);
    }

    #[test]
    fn a_batch_too_large_for_a_datagram_is_halved_and_an_oversized_request_refused() {
        // Four 500-byte requests in a 1,200-byte limit: two per datagram; a 1,300-byte one
        // alone does not fit at all.
        let requests = vec![
            command(1, 500),
            command(2, 500),
            command(3, 1300),
            command(4, 500),
            command(5, 500),
        ];
        let (sent, refused) = batches(1200, requests);
        let all: Vec<u64> = sent.concat();
        assert_eq!(all, vec![1, 2, 4, 5], "in order, none lost: {sent:?}");
        assert!(sent.iter().all(|ids| ids.len() <= 2), "{sent:?}");
        assert_eq!(refused, vec![3]);
    }

    #[test]
    fn only_responses_of_this_cluster_are_decoded() {
        let mut node = Codec::new(1, 2, DEFAULT_DATAGRAM_LIMIT).unwrap();
        let client = Codec::new(1, CLIENT_ID, DEFAULT_DATAGRAM_LIMIT).unwrap();
        let answer = |id| Response {
            id,
            body: ResponseBody::TransferStarted,
        };
        let mut one = node
            .encode(Kind::Response, &Wire::Response(answer(4)))
            .unwrap()
            .to_vec();
        assert_eq!(decode_responses(&client, &mut one), vec![answer(4)]);
        let mut many = node
            .encode(Kind::Response, &Wire::Responses(vec![answer(5), answer(6)]))
            .unwrap()
            .to_vec();
        assert_eq!(
            decode_responses(&client, &mut many),
            vec![answer(5), answer(6)]
        );
        let mut other_cluster = Codec::new(2, 2, DEFAULT_DATAGRAM_LIMIT).unwrap();
        let mut foreign = other_cluster
            .encode(Kind::Response, &Wire::Response(answer(7)))
            .unwrap()
            .to_vec();
        assert!(decode_responses(&client, &mut foreign).is_empty());
        assert!(decode_responses(&client, &mut b"junk".to_vec()).is_empty());
    }

    #[test]
    fn a_client_of_any_cluster_takes_the_responses_of_every_cluster() {
        let client = Codec::new(balsa_net::ANY_CLUSTER, CLIENT_ID, DEFAULT_DATAGRAM_LIMIT).unwrap();
        let answer = Response {
            id: 9,
            body: ResponseBody::TransferStarted,
        };
        for cluster in [1, 2, u64::MAX] {
            let mut node = Codec::new(cluster, 2, DEFAULT_DATAGRAM_LIMIT).unwrap();
            let mut datagram = node
                .encode(Kind::Response, &Wire::Response(answer.clone()))
                .unwrap()
                .to_vec();
            assert_eq!(
                decode_responses(&client, &mut datagram),
                vec![answer.clone()]
            );
        }
    }
}
