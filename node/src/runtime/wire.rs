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
//! Membership (issue 14) added request and response bodies at the *end* of their enums, so the
//! variants older clients know keep their tags: [`RequestBody::Members`] (any node answers with
//! its configuration in force; the leader adds each member's match index and its last index,
//! for lag) and [`RequestBody::ChangeMembership`] (the leader only; a follower answers
//! `NotLeader` with the leader's address, as for commands). A change answers when it completes
//! (learners are caught up first: seconds), so a client retries; a retry carries the same
//! `token` and is attached to the change in flight, or answered with its outcome if it just
//! completed, never starting a second change. A request holds at most [`MAX_CHANGE_STEPS`] steps
//! and addresses of at most [`MAX_ADDRESS_LEN`] bytes; more is refused (`BadRequest`).
//!
//! Backup (issue 18) appended [`RequestBody::ReadSnapshot`] and [`ResponseBody::SnapshotPiece`]
//! the same way: a client reads the node's newest snapshot piece by piece, at the offsets it
//! chooses (a lost datagram is asked for again; nothing on the node remembers the reader), and
//! every piece names its snapshot, so a newer one taken meanwhile is seen, never mixed in. A
//! node older than that drops the request as undecodable: the client hears nothing.
//!
//! `NotLeader { leader, address }` keeps its shape and meaning, sharpened: `leader` is set only
//! when the answering node follows that leader and heard from it within the minimum election
//! timeout (the request goes there); `leader: None` with an `address` means "no leader known
//! here, this one is the best hint" (a follower cut off from its leader, or a leader handing
//! over), and the client moves to another node at once. `address` never names the answering
//! node.
//!
//! Invariant: decoding never panics and never allocates beyond the entry it reads; a malformed
//! frame is a typed error (it can only come from a bug, since only this module writes frames).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::raft::membership::{ChangeError, MAX_ADDRESS_LEN, Membership, Step};
use crate::raft::{ChangeRefused, Message, NodeId};

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
    /// Report this node's configuration in force ([`ResponseBody::Members`]); the leader adds
    /// each member's match index and its own last index.
    Members,
    /// Change the membership by `steps`, as one joint change (the leader only). Answered when
    /// the change completes ([`ResponseBody::MembershipChanged`]) or fails
    /// ([`ResponseBody::MembershipRefused`]).
    ChangeMembership {
        /// The change: at most [`MAX_CHANGE_STEPS`] steps.
        steps: Vec<MemberStep>,
        /// The client's tag for this change, the same on every attempt: a retry from the same
        /// address with the same token joins the change in flight (or gets its outcome)
        /// instead of starting another.
        token: u64,
    },
    /// Read a piece of this node's newest snapshot, as the node holds it (the configuration
    /// frame, then the state machine's bytes): `balsa snapshot save`. Answered with
    /// [`ResponseBody::SnapshotPiece`], or an `Error` when the node holds no snapshot or
    /// `offset` lies past its end. Appended after the membership bodies (issue 18): a node
    /// older than this drops the request as undecodable and answers nothing.
    ReadSnapshot {
        /// The first byte wanted.
        offset: u64,
        /// The most bytes wanted; the node sends at most its snapshot chunk size (what fits
        /// one of its datagrams), whichever is smaller.
        max_bytes: u32,
    },
}

/// The most steps one [`RequestBody::ChangeMembership`] may hold.
pub const MAX_CHANGE_STEPS: usize = 16;

/// One step of a membership change, on the wire ([`Step`] in the core).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberStep {
    /// Add a voter (added as a learner, caught up, then promoted).
    AddVoter {
        /// The new node.
        id: NodeId,
        /// Its address, `IP:PORT` as UTF-8, at most [`MAX_ADDRESS_LEN`] bytes.
        #[serde(with = "balsa_net::bytes")]
        address: Vec<u8>,
    },
    /// Add a learner.
    AddLearner {
        /// The new node.
        id: NodeId,
        /// Its address, as for `AddVoter`.
        #[serde(with = "balsa_net::bytes")]
        address: Vec<u8>,
    },
    /// Promote a learner to voter.
    Promote {
        /// The learner.
        id: NodeId,
    },
    /// Remove a member; its id is never used again.
    Remove {
        /// The member.
        id: NodeId,
    },
}

impl From<MemberStep> for Step {
    fn from(step: MemberStep) -> Step {
        match step {
            MemberStep::AddVoter { id, address } => Step::AddVoter { id, address },
            MemberStep::AddLearner { id, address } => Step::AddLearner { id, address },
            MemberStep::Promote { id } => Step::Promote { id },
            MemberStep::Remove { id } => Step::Remove { id },
        }
    }
}

impl MemberStep {
    /// The node it names.
    pub fn id(&self) -> NodeId {
        match self {
            MemberStep::AddVoter { id, .. }
            | MemberStep::AddLearner { id, .. }
            | MemberStep::Promote { id }
            | MemberStep::Remove { id } => *id,
        }
    }
}

/// Why `steps` are over a change request's bounds, if they are: more than
/// [`MAX_CHANGE_STEPS`], or an address over [`MAX_ADDRESS_LEN`] bytes.
pub fn check_change_bounds(steps: &[Step]) -> Result<(), String> {
    if steps.len() > MAX_CHANGE_STEPS {
        return Err(format!(
            "{} steps in one change (at most {MAX_CHANGE_STEPS})",
            steps.len()
        ));
    }
    for step in steps {
        if let Step::AddVoter { address, .. } | Step::AddLearner { address, .. } = step
            && address.len() > MAX_ADDRESS_LEN
        {
            return Err(format!(
                "node {}'s address is {} bytes (at most {MAX_ADDRESS_LEN})",
                step.id(),
                address.len()
            ));
        }
    }
    Ok(())
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
    /// This node cannot serve it now: it does not lead, and either follows `leader` (the
    /// request goes there) or knows no leader to send it to. Clients retry elsewhere.
    NotLeader {
        /// The leader this node follows and heard from within the minimum election timeout.
        /// `None`: no leader known (none heard from that recently, an election under way, or
        /// this node hands leadership over); go to another node at once.
        leader: Option<NodeId>,
        /// The best hint's address: `leader`'s when there is one, else the leader this node
        /// last heard of, or the node it hands leadership over to (`None`: no idea). Never
        /// this node's own.
        address: Option<SocketAddr>,
    },
    /// The command does not fit in one datagram.
    TooLarge {
        /// Its size.
        size: u64,
        /// The largest that fits.
        max: u64,
    },
    /// The node's status (boxed: it is the largest answer, and rare).
    Status(Box<StatusReport>),
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
    /// The answering node's configuration in force.
    Members(MembersReport),
    /// The membership change completed: the new configuration, committed and in force.
    MembershipChanged(MembersReport),
    /// The membership change did not happen, or may not have (`kind` says which).
    MembershipRefused {
        /// Why, for a program (the CLI's exit status).
        kind: RefusalKind,
        /// Why, for a person: one line.
        message: String,
    },
    /// A piece of the node's newest snapshot ([`RequestBody::ReadSnapshot`]).
    SnapshotPiece(SnapshotPiece),
}

/// A piece of a node's newest snapshot. Every piece names the snapshot it comes from (index,
/// term, size and CRC), so a reader sees at once when a newer snapshot replaced the one it was
/// reading, and never mixes the two.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotPiece {
    /// The last index the snapshot covers.
    pub index: u64,
    /// The term of that entry.
    pub term: u64,
    /// The snapshot's size in bytes.
    pub size: u64,
    /// CRC-32 (IEEE, crc32fast) of the whole snapshot.
    pub crc: u32,
    /// Where `data` starts in the snapshot.
    pub offset: u64,
    /// The bytes from `offset`: empty only at the end.
    #[serde(with = "balsa_net::bytes")]
    pub data: Vec<u8>,
}

impl SnapshotPiece {
    /// Which snapshot it comes from, as (index, term, size, CRC): pieces with equal ids come
    /// from the same snapshot.
    pub fn snapshot_id(&self) -> (u64, u64, u64, u32) {
        (self.index, self.term, self.size, self.crc)
    }
}

/// A node's view of the configuration ([`RequestBody::Members`], and the result of a change).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersReport {
    /// The node answering.
    pub id: NodeId,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// The index of the entry holding the configuration (0: the bootstrap configuration).
    pub index: u64,
    /// Whether a change is under way (`C_old,new` in force).
    pub joint: bool,
    /// Every member, ascending by id; empty while the node knows no configuration (it joined
    /// and no leader has reached it).
    pub members: Vec<MemberReport>,
    /// The leader's last log index, when the answering node leads (each member's lag is this
    /// minus its match index).
    pub last_index: Option<u64>,
}

/// One member, as [`MembersReport`] lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberReport {
    /// Its id.
    pub id: NodeId,
    /// Its address as the configuration holds it (`IP:PORT`, UTF-8).
    #[serde(with = "balsa_net::bytes")]
    pub address: Vec<u8>,
    /// A voter (in either half of a joint configuration); otherwise a learner.
    pub voter: bool,
    /// A voter of the configuration being left only: it goes when the change completes.
    pub leaving: bool,
    /// What the leader knows it stores, when the answering node leads.
    pub match_index: Option<u64>,
}

impl MembersReport {
    /// `membership` as node `id` sees it; `progress` gives, on a leader, a member's match index.
    pub fn new(
        id: NodeId,
        leader: Option<NodeId>,
        index: u64,
        membership: Option<&Membership>,
        last_index: Option<u64>,
        progress: impl Fn(NodeId) -> Option<u64>,
    ) -> MembersReport {
        let members = membership.map_or_else(Vec::new, |membership| {
            membership
                .members()
                .map(|member| MemberReport {
                    id: member,
                    address: membership.address(member).unwrap_or_default().to_vec(),
                    voter: membership.is_voter(member),
                    leaving: membership.is_voter(member)
                        && !membership.incoming().any(|voter| voter == member),
                    match_index: progress(member),
                })
                .collect()
        });
        MembersReport {
            id,
            leader,
            index,
            joint: membership.is_some_and(Membership::is_joint),
            members,
            last_index,
        }
    }
}

/// Why a membership change was refused, for a program: the CLI maps each to an exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusalKind {
    /// The request cannot work as asked (no steps, an id twice, id 0, promoting a voter, over
    /// the request's bounds, a configuration too large for a message). Nothing was changed.
    BadRequest,
    /// A step names a node that is not a member. Nothing was changed.
    UnknownMember,
    /// A step adds a node that was removed before: ids are never reused. Nothing was changed.
    IdReused,
    /// A step adds a node that is a member already. Nothing was changed.
    AlreadyMember,
    /// The change would leave no voter. Nothing was changed.
    NoVoterLeft,
    /// Another change is in progress: one at a time. Nothing was changed.
    InProgress,
    /// The leader is handing leadership over. Nothing was changed; retry.
    TransferInProgress,
    /// A new voter did not catch up with the leader in time; it stays a learner.
    CatchUpFailed,
    /// The leader lost leadership before the change completed: the outcome is unknown.
    LeadershipLost,
}

impl RefusalKind {
    /// The kind of the core's refusal (`NotLeader` is answered as [`ResponseBody::NotLeader`]
    /// instead; here it reads as `LeadershipLost`).
    pub fn of(refused: &ChangeRefused) -> RefusalKind {
        match refused {
            ChangeRefused::Invalid(error) => match error {
                ChangeError::InProgress => RefusalKind::InProgress,
                ChangeError::AlreadyMember { .. } => RefusalKind::AlreadyMember,
                ChangeError::IdReused { .. } => RefusalKind::IdReused,
                ChangeError::UnknownMember { .. } => RefusalKind::UnknownMember,
                ChangeError::NoVoterLeft => RefusalKind::NoVoterLeft,
                ChangeError::Empty
                | ChangeError::ReservedId
                | ChangeError::Repeated { .. }
                | ChangeError::NotALearner { .. } => RefusalKind::BadRequest,
            },
            ChangeRefused::OutOfBounds(_) | ChangeRefused::TooLarge { .. } => {
                RefusalKind::BadRequest
            }
            ChangeRefused::TransferInProgress => RefusalKind::TransferInProgress,
            ChangeRefused::CatchUpFailed { .. } => RefusalKind::CatchUpFailed,
            ChangeRefused::NotLeader { .. } | ChangeRefused::LeadershipLost => {
                RefusalKind::LeadershipLost
            }
        }
    }
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
    /// Syncs since start that the replica waited for: group commits of the log, snapshots
    /// saved and snapshots installed (a node that caught up by a snapshot alone shows one).
    pub wal_syncs: u64,
    /// The last index of the newest snapshot (0: none yet).
    pub snapshot_index: u64,
    /// The first index still in the log (entries before it are only in the snapshot).
    pub first_index: u64,
    /// The node's cluster id. The replica writes 0; the runtime writes the node's id in before
    /// the report is sent.
    pub cluster_id: u64,
    /// The voters of the configuration in force (while joint, those of `C_new`).
    pub voters: Vec<NodeId>,
    /// While joint, the voters of the configuration being left (`C_old`); empty otherwise.
    pub outgoing_voters: Vec<NodeId>,
    /// The learners.
    pub learners: Vec<NodeId>,
    /// The index of the entry holding the configuration in force (0: the bootstrap one).
    pub configuration_index: u64,
    /// Datagrams dropped because they failed authentication (`auth_failed`).
    pub datagrams_auth_failed: u64,
    /// Member datagrams dropped as replays or of an older boot of their sender.
    pub datagrams_replayed: u64,
    /// The sources of those drops (and of messages of the wrong kind), per address, at most
    /// `balsa_net::MAX_SOURCES` of them (plus `0.0.0.0:0` for the rest).
    pub suspicious_sources: Vec<SuspiciousSource>,
}

/// One source address of datagrams a node dropped as not speaking with the right to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuspiciousSource {
    /// Where they came from (as the datagrams said: a source address can be forged).
    pub address: SocketAddr,
    /// Datagrams that failed authentication.
    pub auth_failed: u64,
    /// Member datagrams replayed, or of an older boot of their sender.
    pub replayed: u64,
    /// Messages of a kind their datagram may not carry (a Raft message in a client request).
    pub wrong_kind: u64,
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

    /// The body of `wire` as the codec encodes it (after the envelope).
    fn body(wire: &Wire) -> Vec<u8> {
        let mut codec = balsa_net::Codec::new(1, 0, 65_000).expect("a codec");
        let datagram = codec
            .encode(balsa_net::Kind::Request, wire)
            .expect("encodes");
        datagram[balsa_net::HEADER_LEN..].to_vec()
    }

    /// The membership bodies were appended: the variants older clients know keep their tags,
    /// and the new ones round-trip.
    #[test]
    fn new_bodies_are_appended_so_old_tags_are_unchanged() {
        let request = |body| Wire::Request(Request { id: 1, body });
        // Wire::Request is tag 1, the request id 1, then the body's tag: Snapshot is the 5th.
        assert_eq!(body(&request(RequestBody::Snapshot)), [1, 1, 4]);
        assert_eq!(body(&request(RequestBody::Members)), [1, 1, 5]);
        let change = request(RequestBody::ChangeMembership {
            steps: vec![
                MemberStep::AddVoter {
                    id: 4,
                    address: b"127.0.0.1:7004".to_vec(),
                },
                MemberStep::Remove { id: 1 },
            ],
            token: 9,
        });
        let encoded = body(&change);
        assert_eq!(encoded[..3], [1, 1, 6]);
        let decoded: Wire = balsa_net::codec::decode_body(&encoded).expect("decodes");
        assert_eq!(decoded, change);
        let refused = Wire::Response(Response {
            id: 2,
            body: ResponseBody::MembershipRefused {
                kind: RefusalKind::NoVoterLeft,
                message: "the change would leave no voter".into(),
            },
        });
        let decoded: Wire = balsa_net::codec::decode_body(&body(&refused)).expect("decodes");
        assert_eq!(decoded, refused);
        // ResponseBody::Error was the last before: the new ones follow it.
        let error = body(&Wire::Response(Response {
            id: 2,
            body: ResponseBody::Error {
                message: String::new(),
            },
        }));
        assert_eq!(error[..3], [2, 2, 7]);
    }

    /// Issue 18 appended the snapshot read after the membership bodies: every older tag keeps
    /// its number (an older node drops the new request as undecodable, which the client
    /// reports as a node that may be too old).
    #[test]
    fn the_snapshot_read_is_appended_after_every_older_body() {
        let read = Wire::Request(Request {
            id: 1,
            body: RequestBody::ReadSnapshot {
                offset: 7,
                max_bytes: 9,
            },
        });
        let encoded = body(&read);
        assert_eq!(encoded[..3], [1, 1, 7], "after ChangeMembership (6)");
        let decoded: Wire = balsa_net::codec::decode_body(&encoded).expect("decodes");
        assert_eq!(decoded, read);
        let piece = Wire::Response(Response {
            id: 2,
            body: ResponseBody::SnapshotPiece(SnapshotPiece {
                index: 5,
                term: 2,
                size: 3,
                crc: 0xdead_beef,
                offset: 0,
                data: vec![1, 2, 3],
            }),
        });
        let encoded = body(&piece);
        assert_eq!(encoded[..3], [2, 2, 11], "after MembershipRefused (10)");
        let decoded: Wire = balsa_net::codec::decode_body(&encoded).expect("decodes");
        assert_eq!(decoded, piece);
    }

    #[test]
    fn a_change_over_the_bounds_is_refused_with_the_reason() {
        let remove = |id| Step::Remove { id };
        let many: Vec<Step> = (1..=MAX_CHANGE_STEPS as u64 + 1).map(remove).collect();
        let reason = check_change_bounds(&many).expect_err("17 steps");
        assert!(reason.contains("17 steps"), "{reason}");
        assert!(check_change_bounds(&many[..MAX_CHANGE_STEPS]).is_ok());
        let long = vec![Step::AddLearner {
            id: 5,
            address: vec![b'x'; MAX_ADDRESS_LEN + 1],
        }];
        let reason = check_change_bounds(&long).expect_err("an address too long");
        assert!(
            reason.contains("node 5's address is 1025 bytes"),
            "{reason}"
        );
    }

    /// The CLI's exit status rests on this mapping: refusals of the request as asked are told
    /// apart from outcomes that are unknown.
    #[test]
    fn each_core_refusal_has_the_kind_the_cli_maps() {
        let invalid = |error| RefusalKind::of(&ChangeRefused::Invalid(error));
        assert_eq!(invalid(ChangeError::InProgress), RefusalKind::InProgress);
        assert_eq!(
            invalid(ChangeError::AlreadyMember { id: 1 }),
            RefusalKind::AlreadyMember
        );
        assert_eq!(
            invalid(ChangeError::IdReused { id: 1 }),
            RefusalKind::IdReused
        );
        assert_eq!(
            invalid(ChangeError::UnknownMember { id: 1 }),
            RefusalKind::UnknownMember
        );
        assert_eq!(invalid(ChangeError::NoVoterLeft), RefusalKind::NoVoterLeft);
        assert_eq!(invalid(ChangeError::Empty), RefusalKind::BadRequest);
        assert_eq!(
            invalid(ChangeError::NotALearner { id: 1 }),
            RefusalKind::BadRequest
        );
        assert_eq!(
            RefusalKind::of(&ChangeRefused::LeadershipLost),
            RefusalKind::LeadershipLost
        );
        assert_eq!(
            RefusalKind::of(&ChangeRefused::CatchUpFailed { id: 4, rounds: 10 }),
            RefusalKind::CatchUpFailed
        );
    }
}
