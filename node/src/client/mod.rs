//! The key-value service's client library: a blocking UDP client that finds the leader, retries
//! with backoff, and says whether a failed write is known not to have happened; the same protocol
//! without I/O ([`Session`]) for other drivers; many sessions on one socket ([`Multiplexer`]);
//! and the closed-loop load generator ([`load`]).
//!
//! ```no_run
//! use balsa::client::{CasOutcome, Client, ClientOptions};
//!
//! # fn main() -> Result<(), balsa::client::ClientError> {
//! let endpoints = vec!["127.0.0.1:7001".parse().unwrap(), "127.0.0.1:7002".parse().unwrap()];
//! let mut client = Client::new(endpoints, ClientOptions::default())?;
//! client.put(b"colour", b"blue")?;
//! assert_eq!(client.get(b"colour", false)?, Some(b"blue".to_vec()));
//! match client.cas(b"colour", Some(b"blue"), b"green")? {
//!     CasOutcome::Swapped => println!("now green"),
//!     CasOutcome::Mismatch { current } => println!("it was {current:?}"),
//! }
//! # Ok(()) }
//! ```
//!
//! # How a request travels
//!
//! One UDP socket, one request outstanding at a time. A request goes to the node believed to
//! lead (at first, the first endpoint). A node that does not lead answers `NotLeader` with the
//! leader's address when it knows it: the client goes there at once. A node that lost touch
//! with its leader (it heard nothing from it within an election timeout) answers at once that
//! it knows no leader, with a hint: the client tries the next endpoint at once. Without any
//! hint it waits a backoff (20 ms, doubling, at most 500 ms) and tries the next endpoint. A node
//! that does not answer within the attempt timeout (300 ms) is left for the next endpoint, and
//! an endpoint that failed so (or refused with no hint) is tried after the others for three
//! attempt timeouts. A follower that hears from the leader forwards writes itself, and the
//! leader answers the client directly, from its own address: the client remembers that
//! address as the leader.
//!
//! Every attempt carries a fresh request id; an answer to any attempt of the operation in
//! progress is accepted (the first attempt may be the one that got applied), answers to earlier
//! operations and datagrams that do not decode are ignored.
//!
//! # Writes are applied once
//!
//! Each write is a [`Command`](crate::kv::Command) carrying `(client_id, seq)`: `client_id` is chosen at random per
//! `Client`, `seq` grows by one per write and stays the same across the retries of one write. The
//! service's session table applies a `(client_id, seq)` once and answers a retry with the first
//! answer.
//!
//! # Errors: definitely failed or outcome unknown
//!
//! [`ClientError::Timeout`] means some attempt went unanswered: a write may or may not have been
//! applied (outcome unknown); a read simply failed. [`ClientError::NoNodeAnswered`] is the same
//! when no endpoint has answered this client anything at all, ever: most likely no cluster runs
//! there, and the message says so. [`ClientError::Unavailable`] means every attempt was refused
//! (no leader, or no node reachable): the write was not applied. [`ClientError::TooLarge`],
//! [`ClientError::OverLimit`] and [`ClientError::Rejected`] are definite refusals too.
//! [`ClientError::outcome_unknown`] tells them apart. Each error says which kind of operation
//! failed ([`OperationKind`]), so a failed read never reads as a write of unknown outcome.
//!
//! Invariants: at most one request outstanding per client (methods take `&mut self`); a write's
//! `seq` never changes between its attempts and never repeats across writes; no operation takes
//! longer than [`ClientOptions::timeout`] plus one backoff step.
//!
//! # Where the protocol lives
//!
//! Once, in [`Session`] (`session.rs`): sans-IO, it takes the time and the answers and says what
//! to send where and when it next needs waking. Everything else drives sessions:
//!
//! - `blocking.rs`: [`Client`], one session over its own blocking `UdpSocket`;
//! - `multiplexer.rs`: [`Multiplexer`], many sessions on one `mio` poll, with a socket each or
//!   all on one socket, their ready requests batched into one datagram per node;
//! - `load.rs`: [`load`], closed-loop load (writes, linearizable or stale reads, or a mix) on
//!   multiplexers (`balsa bench`, `balsa check perf`, the `commit_latency` benchmark);
//! - `scan.rs`: range and prefix reads a page at a time ([`Client::scan`], [`Client::scan_page`]);
//! - `datagram.rs`: framing requests and answers, shared by the drivers;
//! - `stand_in.rs` (tests only): a stand-in node on a UDP socket.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use balsa_net::DEFAULT_DATAGRAM_LIMIT;

use crate::kv::LimitExceeded;
use crate::runtime::wire::RefusalKind;

mod blocking;
mod datagram;
pub mod load;
pub mod multiplexer;
mod scan;
pub mod session;
#[cfg(test)]
mod stand_in;

pub use blocking::Client;
pub use multiplexer::{Finished, Multiplexer, Sockets};
pub use scan::{PAGE_ENVELOPE, Page, Scan};
pub use session::{Completed, Operation, Reply, Session, Transmit};

/// How a [`Client`] waits and retries.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The longest one operation may take, retries included. Default 5 s.
    pub timeout: Duration,
    /// How long one attempt waits for an answer before trying the next endpoint. Default 300 ms.
    pub attempt_timeout: Duration,
    /// The first wait after "no leader". Default 20 ms.
    pub backoff_start: Duration,
    /// The longest wait between attempts (the backoff doubles up to it). Default 500 ms.
    pub backoff_max: Duration,
    /// The cluster's id, if the client knows it: requests carry it, and answers of another
    /// cluster are ignored. Default 0, "any cluster" (`balsa_net::ANY_CLUSTER`): requests
    /// carry 0, which a node accepts as its own, and answers of any cluster are taken (a
    /// node's answers carry its real id; `balsa status` shows it).
    pub cluster_id: u64,
    /// The largest datagram sent or accepted. Default 65,000, as the nodes'.
    pub datagram_limit: usize,
    /// The cluster's client key: requests are sealed under it, and only answers sealed under
    /// it are taken. Default `None`: plaintext, for a cluster whose nodes run without keys.
    pub key: Option<balsa_net::Key>,
}

impl ClientOptions {
    /// The codec this client's requests are encoded with, sealing under [`ClientOptions::key`].
    pub(crate) fn codec(&self) -> Result<balsa_net::Codec, ClientError> {
        let keys = match &self.key {
            Some(key) => balsa_net::Keys::client(key.clone()),
            None => balsa_net::Keys::insecure(),
        };
        balsa_net::Codec::new(self.cluster_id, balsa_net::CLIENT_ID, self.datagram_limit)
            .and_then(|codec| codec.with_keys(&keys, balsa_net::wall_clock_micros()))
            .map_err(|error| ClientError::Config {
                reason: error.to_string(),
            })
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_millis(300),
            backoff_start: Duration::from_millis(20),
            backoff_max: Duration::from_millis(500),
            cluster_id: balsa_net::ANY_CLUSTER,
            datagram_limit: DEFAULT_DATAGRAM_LIMIT,
            key: None,
        }
    }
}

/// What went wrong with an operation.
#[derive(Debug)]
pub enum ClientError {
    /// Every attempt was refused (no leader known, or no node reachable) until the timeout: the
    /// operation definitely did not take effect.
    Unavailable {
        /// The last refusal.
        reason: String,
    },
    /// Some attempt went unanswered until the timeout: a write may or may not have been applied
    /// (outcome unknown); a read failed.
    Timeout {
        /// How long the operation tried.
        waited: Duration,
        /// What failed: a write's outcome is unknown, a read's is not.
        kind: OperationKind,
    },
    /// No endpoint answered anything, this operation or any before it on this client, until
    /// the timeout: most likely no Balsa cluster runs at these addresses (or a firewall, or the
    /// wrong key: a keyed node answers nothing it cannot open). As [`ClientError::Timeout`], a
    /// write's outcome is unknown all the same.
    NoNodeAnswered {
        /// Every endpoint the client was given.
        endpoints: Vec<SocketAddr>,
        /// How long the operation tried.
        waited: Duration,
        /// What failed.
        kind: OperationKind,
    },
    /// A key or value over the service's limit ([`crate::kv::MAX_KEY_LEN`],
    /// [`crate::kv::MAX_VALUE_SIZE`]), named: refused before anything was sent.
    OverLimit(LimitExceeded),
    /// The request does not fit (a key or value over its limit, or the datagram over the
    /// limit). Nothing was applied.
    TooLarge {
        /// Its size in bytes.
        size: u64,
        /// The largest allowed.
        max: u64,
    },
    /// The service refused the request without effect.
    Rejected {
        /// Why, as the service said.
        reason: String,
    },
    /// The leader refused a membership change, or it may not have happened (`kind` says
    /// which: [`RefusalKind::LeadershipLost`] leaves the outcome unknown).
    MembershipRefused {
        /// Why, for a program.
        kind: RefusalKind,
        /// Why, as the leader said.
        message: String,
    },
    /// A leadership transfer the leader started did not happen: node `to` did not lead within
    /// the timeout ([`Client::transfer`]).
    NotTransferred {
        /// The node that was to take over.
        to: crate::raft::NodeId,
        /// How long the client waited.
        waited: Duration,
        /// What the endpoints reported last (who leads, whether `to` answered).
        reason: String,
    },
    /// The client's socket failed.
    Io {
        /// What the client was doing.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The service answered something that makes no sense for the request.
    Protocol {
        /// What.
        reason: String,
    },
    /// The client cannot be set up this way (no endpoints, mixed address families, bad limits).
    Config {
        /// What is wrong.
        reason: String,
    },
    /// The operation failed (unavailable, or unanswered until the timeout), and a node said it
    /// could not open the client's requests: most likely the client's key is not the cluster's
    /// client key, or it has none and the cluster requires one (or the other way round). The
    /// node's word is a hint (it cannot be authenticated), which is why this only ever replaces
    /// an error the operation had anyway.
    Unauthenticated {
        /// The node that said so.
        endpoint: SocketAddr,
        /// What it said.
        notice: balsa_net::Notice,
        /// Whether the operation's outcome is unknown (it timed out, and some node may have
        /// taken it).
        outcome_unknown: bool,
    },
}

/// What kind of operation failed: what its failure means for the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperationKind {
    /// A write (put, delete, compare-and-swap) or a membership change: unanswered, it may or
    /// may not have taken effect.
    Write,
    /// A read of the key-value store: unanswered, it failed, and nothing changed.
    Read,
    /// A request about the nodes themselves (status, members, snapshot, transfer).
    Other,
}

impl From<LimitExceeded> for ClientError {
    /// A key or value over its limit: refused before anything is sent.
    fn from(limit: LimitExceeded) -> ClientError {
        ClientError::OverLimit(limit)
    }
}

impl ClientError {
    /// True when a write that failed this way may nevertheless have been applied.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            ClientError::Timeout { kind, .. } | ClientError::NoNodeAnswered { kind, .. } => {
                *kind != OperationKind::Read
            }
            ClientError::Unauthenticated {
                outcome_unknown, ..
            } => *outcome_unknown,
            _ => false,
        }
    }

    /// This error, or [`ClientError::Unauthenticated`] if it is one an operation ends with when
    /// its requests are not opened (unavailable or a timeout), and `notice` says why.
    pub(crate) fn explained_by(
        self,
        notice: Option<(SocketAddr, balsa_net::Notice)>,
    ) -> ClientError {
        match (self, notice) {
            (
                error @ (ClientError::Timeout { .. }
                | ClientError::NoNodeAnswered { .. }
                | ClientError::Unavailable { .. }),
                Some((endpoint, notice)),
            ) => ClientError::Unauthenticated {
                endpoint,
                notice,
                outcome_unknown: error.outcome_unknown(),
            },
            (error, _) => error,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Unavailable { reason } => {
                write!(f, "cluster unavailable ({reason}); nothing was applied")
            }
            ClientError::Timeout { waited, kind } => {
                let waited = waited.as_millis();
                match kind {
                    OperationKind::Write => write!(
                        f,
                        "no answer within {waited} ms; the outcome is unknown (the write may or \
                         may not have been applied)"
                    ),
                    OperationKind::Read => {
                        write!(f, "the read failed: no answer within {waited} ms")
                    }
                    OperationKind::Other => write!(f, "no answer within {waited} ms"),
                }
            }
            ClientError::NoNodeAnswered {
                endpoints,
                waited,
                kind,
            } => {
                let at = endpoints
                    .iter()
                    .map(SocketAddr::to_string)
                    .collect::<Vec<_>>()
                    .join(", ");
                let silence = format!(
                    "no Balsa node answered at {at} within {} ms \u{2014} is a cluster running?",
                    waited.as_millis()
                );
                match kind {
                    OperationKind::Write => write!(
                        f,
                        "{silence} (if one is, the write may or may not have been applied)"
                    ),
                    OperationKind::Read => write!(f, "the read failed: {silence}"),
                    OperationKind::Other => write!(f, "{silence}"),
                }
            }
            ClientError::OverLimit(limit) => write!(f, "{}", limit.refusal()),
            ClientError::NotTransferred { to, waited, reason } => write!(
                f,
                "leadership did not move to node {to} within {} ms: {reason}",
                waited.as_millis()
            ),
            ClientError::TooLarge { size, max } => {
                write!(f, "request of {size} bytes is too large (at most {max})")
            }
            ClientError::Rejected { reason } => write!(f, "rejected: {reason}"),
            ClientError::MembershipRefused { message, .. } => write!(f, "{message}"),
            ClientError::Io { op, source } => write!(f, "{op}: {source}"),
            ClientError::Protocol { reason } => write!(f, "protocol error: {reason}"),
            ClientError::Config { reason } => write!(f, "bad client configuration: {reason}"),
            ClientError::Unauthenticated {
                endpoint, notice, ..
            } => match notice {
                balsa_net::Notice::AuthFailed => write!(
                    f,
                    "authentication failed: {endpoint} could not open the requests; the client \
                     key is likely missing or not this cluster's"
                ),
                balsa_net::Notice::NotSealing => write!(
                    f,
                    "authentication failed: {endpoint} runs without keys and refuses sealed \
                     requests; send them without a key"
                ),
            },
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// What a compare-and-swap did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CasOutcome {
    /// The key held the expected value (or was absent, as expected) and now holds the new one.
    Swapped,
    /// The key did not hold the expected value; nothing changed.
    Mismatch {
        /// What it held (`None`: absent).
        current: Option<Vec<u8>>,
    },
}

/// A [`ClientError::Protocol`] saying `reason`.
pub(crate) fn protocol(reason: String) -> ClientError {
    ClientError::Protocol { reason }
}

/// The clock every driver of sessions reads (a session itself reads none).
#[allow(
    clippy::disallowed_methods,
    reason = "the client's drivers wait on wall-clock deadlines; they are not part of the Raft core"
)]
pub(crate) fn clock() -> Instant {
    Instant::now()
}

/// The address a client socket talking to `endpoints` binds: any port, in the endpoints' address
/// family, on loopback when every endpoint is on loopback. [`Client::new`] binds its socket here;
/// so does anything else that speaks the client protocol on sockets of its own.
///
/// # Errors
/// [`ClientError::Config`] for no endpoints, or endpoints of both address families.
pub fn bind_address(endpoints: &[SocketAddr]) -> Result<SocketAddr, ClientError> {
    let Some(first) = endpoints.first() else {
        return Err(ClientError::Config {
            reason: "no endpoints".into(),
        });
    };
    if endpoints.iter().any(|e| e.is_ipv4() != first.is_ipv4()) {
        return Err(ClientError::Config {
            reason: "endpoints mix IPv4 and IPv6 addresses".into(),
        });
    }
    let all_loopback = endpoints.iter().all(|e| e.ip().is_loopback());
    Ok(match (first.is_ipv4(), all_loopback) {
        (true, true) => (Ipv4Addr::LOCALHOST, 0).into(),
        (true, false) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        (false, true) => (Ipv6Addr::LOCALHOST, 0).into(),
        (false, false) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    })
}

/// A client id unlikely to be any other client's: the clock's nanoseconds, the process id and a
/// per-process counter, mixed (SplitMix64's finaliser) so that close inputs give far ids.
#[allow(
    clippy::disallowed_methods,
    reason = "the client id is seeded from the wall clock; it is not part of the Raft core"
)]
pub fn random_client_id() -> u64 {
    static CLIENTS_MADE: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            elapsed
                .as_secs()
                .wrapping_mul(1_000_000_000)
                .wrapping_add(u64::from(elapsed.subsec_nanos()))
        });
    let counter = CLIENTS_MADE.fetch_add(1, Ordering::Relaxed);
    let mut x = nanos ^ u64::from(std::process::id()).rotate_left(32) ^ counter.rotate_left(48);
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_differ_between_clients_of_one_process() {
        let ids: std::collections::BTreeSet<u64> = (0..100).map(|_| random_client_id()).collect();
        assert_eq!(ids.len(), 100);
    }
}
