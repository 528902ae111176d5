//! What travels in a node's datagrams (peer messages, client requests and responses), and how a
//! client command is framed inside a log entry so that whichever node leads when it is applied
//! can answer the client directly.
//!
//! Entry framing (the bytes of an `EntryKind::Normal` entry), little-endian:
//!
//! ```text
//! 0x00 | command                                       an API proposal: nobody to answer
//! 0x01 | family u8 (4 or 6) | ip (4 or 16) | port u16 | request id u64 | command
//!                                                      a client's: answer this address
//! ```
//!
//! Invariant: decoding never panics and never allocates beyond the entry it reads; a malformed
//! frame is a typed error (it can only come from a bug, since only this module writes frames).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::raft::{Message, NodeId};

/// Everything a node's socket carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Wire {
    /// Node to node.
    Raft(Message),
    /// Client to node.
    Request(Request),
    /// Node to client.
    Response(Response),
    /// Client to node: several requests in one datagram, from a client that multiplexes its
    /// sessions on one socket; each is handled as if it had come alone. A node takes at most
    /// [`MAX_REQUESTS_PER_DATAGRAM`] from one datagram and drops (and counts) a larger batch.
    Requests(Vec<Request>),
    /// Node to client: the answers one turn of the consensus thread has for one address, when
    /// there are several (one goes alone as [`Wire::Response`]).
    Responses(Vec<Response>),
}

/// The most requests a node takes from one datagram. Small requests (a status query is a few
/// bytes) can ask for large answers; the cap bounds what one datagram can make a node send.
pub const MAX_REQUESTS_PER_DATAGRAM: usize = 256;

/// A client's request, tagged with an id the response echoes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The client's tag for this request.
    pub id: u64,
    /// What it asks.
    pub body: RequestBody,
}

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestBody {
    /// Replicate and apply a command; the leader answers when it is applied.
    Command {
        /// The state machine's command.
        #[serde(with = "balsa_net::bytes")]
        data: Vec<u8>,
    },
    /// Answer a query against the state machine.
    Query {
        /// The state machine's query.
        #[serde(with = "balsa_net::bytes")]
        data: Vec<u8>,
        /// Answer from this node's state at once, without ReadIndex (may be stale).
        stale: bool,
    },
    /// Report this node's status.
    Status,
    /// Ask the leader to hand leadership to `to`.
    Transfer {
        /// The node to take over.
        to: NodeId,
    },
    /// Snapshot the state machine and compact the log now (this node only).
    Snapshot,
}

/// A node's answer to a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The request's tag.
    pub id: u64,
    /// The answer.
    pub body: ResponseBody,
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseBody {
    /// The command was applied; the state machine answered this.
    Applied {
        /// The state machine's answer.
        #[serde(with = "balsa_net::bytes")]
        data: Vec<u8>,
    },
    /// The query's answer.
    Query {
        /// The state machine's answer.
        #[serde(with = "balsa_net::bytes")]
        data: Vec<u8>,
    },
    /// This node cannot serve it now: no leader is known, or it no longer leads. Retry, at the
    /// hinted leader if there is one.
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
        /// Its address.
        address: Option<SocketAddr>,
    },
    /// The command does not fit in one datagram.
    TooLarge {
        /// Its size.
        size: u64,
        /// The largest that fits.
        max: u64,
    },
    /// The node's status.
    Status(StatusReport),
    /// A leadership transfer was started.
    TransferStarted,
    /// The snapshot asked for is durable; it covers the log up to `index`.
    SnapshotTaken {
        /// The last index the snapshot covers.
        index: u64,
    },
    /// Something else went wrong.
    Error {
        /// What.
        message: String,
    },
}

/// A node's status, as `balsa status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The node.
    pub id: NodeId,
    /// `leader`, `follower`, `candidate` or `pre-candidate`.
    pub role: String,
    /// Current term.
    pub term: u64,
    /// The known leader.
    pub leader: Option<NodeId>,
    /// Commit index.
    pub commit_index: u64,
    /// Highest index applied to the state machine.
    pub applied_index: u64,
    /// Last log index.
    pub last_index: u64,
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Datagrams dropped, all reasons.
    pub datagrams_dropped: u64,
    /// WAL syncs since start.
    pub wal_syncs: u64,
    /// The last index of the newest snapshot (0: none yet).
    pub snapshot_index: u64,
    /// The first index still in the log (entries before it are only in the snapshot).
    pub first_index: u64,
    /// The node's cluster id (appended last, so the fields before it keep their place on the
    /// wire). The replica writes 0; the runtime writes the node's id in before it is sent.
    pub cluster_id: u64,
}

/// Who to answer when a command is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyTo {
    /// The client's address.
    pub address: SocketAddr,
    /// Its request tag.
    pub request: u64,
}

/// A malformed entry frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameError {
    /// What is wrong.
    pub reason: &'static str,
}

/// Frames `command` for the log, with the client to answer if any.
pub fn frame(reply: Option<ReplyTo>, command: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(command.len() + 32);
    match reply {
        None => out.push(0),
        Some(ReplyTo { address, request }) => {
            out.push(1);
            match address.ip() {
                IpAddr::V4(ip) => {
                    out.push(4);
                    out.extend_from_slice(&ip.octets());
                }
                IpAddr::V6(ip) => {
                    out.push(6);
                    out.extend_from_slice(&ip.octets());
                }
            }
            out.extend_from_slice(&address.port().to_le_bytes());
            out.extend_from_slice(&request.to_le_bytes());
        }
    }
    out.extend_from_slice(command);
    out
}

/// Splits a framed entry into the client to answer and the command.
pub fn unframe(bytes: &[u8]) -> Result<(Option<ReplyTo>, &[u8]), FrameError> {
    let short = FrameError {
        reason: "entry frame cut short",
    };
    let (&tag, rest) = bytes.split_first().ok_or(short.clone())?;
    match tag {
        0 => Ok((None, rest)),
        1 => {
            let (&family, rest) = rest.split_first().ok_or(short.clone())?;
            let (ip, rest) = match family {
                4 => {
                    let (octets, rest) = rest.split_at_checked(4).ok_or(short.clone())?;
                    let octets: [u8; 4] = octets.try_into().map_err(|_| short.clone())?;
                    (IpAddr::V4(Ipv4Addr::from(octets)), rest)
                }
                6 => {
                    let (octets, rest) = rest.split_at_checked(16).ok_or(short.clone())?;
                    let octets: [u8; 16] = octets.try_into().map_err(|_| short.clone())?;
                    (IpAddr::V6(Ipv6Addr::from(octets)), rest)
                }
                _ => {
                    return Err(FrameError {
                        reason: "unknown address family",
                    });
                }
            };
            let (port, rest) = rest.split_at_checked(2).ok_or(short.clone())?;
            let (request, rest) = rest.split_at_checked(8).ok_or(short.clone())?;
            let port = u16::from_le_bytes(port.try_into().map_err(|_| short.clone())?);
            let request = u64::from_le_bytes(request.try_into().map_err(|_| short)?);
            let reply = ReplyTo {
                address: SocketAddr::new(ip, port),
                request,
            };
            Ok((Some(reply), rest))
        }
        _ => Err(FrameError {
            reason: "unknown entry frame tag",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_every_truncation_is_an_error_not_a_panic() {
        let replies = [
            None,
            Some(ReplyTo {
                address: "127.0.0.1:7001".parse().unwrap(),
                request: 9,
            }),
            Some(ReplyTo {
                address: "[::1]:80".parse().unwrap(),
                request: u64::MAX,
            }),
        ];
        for reply in replies {
            let framed = frame(reply, b"put k v");
            assert_eq!(unframe(&framed), Ok((reply, b"put k v".as_slice())));
            let header = framed.len() - b"put k v".len();
            for cut in 0..header {
                assert!(
                    unframe(&framed[..cut]).is_err(),
                    "cut at {cut} of {reply:?}"
                );
            }
        }
        assert!(unframe(&[7, 1, 2]).is_err());
    }
}
