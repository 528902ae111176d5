//! `balsa-net`: a Balsa node's UDP transport, the only door into a node from outside.
//!
//! It owns the node's one UDP socket (shared by peers and clients) and the thread that reads it
//! (the *net thread*: one `mio::Poll` over the socket and a waker), the wire envelope and its
//! bounded codec, the peer table, the counters and fault injection for tests. It is generic over
//! the message type `M` (any serde type) and knows nothing of Raft.
//!
//! ```no_run
//! use balsa_net::{Config, Destination, Inbound, Transport};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! enum Msg { Ping(u64), Pong(u64) }
//!
//! # fn main() -> Result<(), balsa_net::Error> {
//! let mut config = Config::new(1, 42, "127.0.0.1:7001".parse().unwrap());
//! config.peers.push((2, "127.0.0.1:7002".parse().unwrap()));
//! let (inbox, received) = crossbeam_channel::bounded::<Inbound<Msg>>(1024);
//! let transport = Transport::<Msg>::start(config, inbox)?;
//! let mut outbox = transport.outbox(); // one per sending thread
//! outbox.send(Destination::Peer(2), &Msg::Ping(1))?;
//! if let Ok(Inbound { from, msg: Msg::Pong(n), .. }) = received.recv() {
//!     println!("pong {n} from {from}");
//! }
//! println!("{}", transport.counters().values());
//! transport.shutdown()?; // joins the net thread, closes the socket
//! # Ok(()) }
//! ```
//!
//! The runtime's inbox usually carries more than network messages: `start` takes any
//! `Sender<E>` with `E: From<Inbound<M>>`.
//!
//! # The envelope
//!
//! Every datagram is a 22-byte header, then the body. Integers little-endian.
//!
//! ```text
//! offset  size  field
//!      0     4  magic        b"BLSA"
//!      4     1  version      2
//!      5     1  kind         1 peer message, 2 client request, 3 client response;
//!                            + 0x80 when sealed
//!      6     8  cluster id   u64 (0: any, see "What is accepted")
//!     14     8  from         u64: the sender's node id (0 for a client)
//!     22     …  body         plaintext: the message (bincode 2, serde, standard() config);
//!                            sealed: salt and counter, encrypted boot id + sequence + message, tag
//! ```
//!
//! The whole datagram, header included, is at most the datagram limit.
//!
//! # Sealed datagrams
//!
//! With keys ([`Config::keys`]: a peer ring for member traffic, a client ring for client
//! traffic) every datagram is sealed with AES-256-GCM, the header as associated data
//! (`seal.rs`, the one file with cryptography, behind the default `seal` feature): nobody
//! without the key can read it, or make or change one that a receiver accepts. Member
//! datagrams also carry the sender's boot id and a sequence number, and each receiver keeps a
//! replay window per sender (`replay.rs`). A node that cannot open a client request answers it
//! with a [`Notice`] (unauthenticated, rate-limited), so that the client can say why it failed.
//! Without keys ([`Keys::insecure`]) datagrams go in plaintext, for a trusted network.
//!
//! # What is accepted
//!
//! In this order, dropping at the first failure ([`DropReason`]): the datagram's size (at most the
//! limit: the receive buffer is one byte larger, so a larger one is seen, not cut); the header
//! (at least 22 bytes, magic, version, cluster id, a known kind); for a peer message, the sender
//! (its id in the peer table, and the datagram from that id's address) and a partition injected
//! on that peer; then the seal (sealed exactly when this transport has keys, and verified under
//! the ring of its kind: `auth_failed`), the replay window for a peer message (`replayed`,
//! `old_boot`); then the body, which must decode as one `M` using every byte. Client requests and
//! responses are accepted from any address: [`Inbound::source`] says where to answer.
//!
//! **The cluster rule.** Cluster id 0 ([`ANY_CLUSTER`]) is the wildcard of a client that does
//! not know its cluster's id. A receiver of cluster `ours` accepts a datagram of cluster
//! `theirs` when `theirs == ours`; or when `ours` is 0 (a client that does not know its cluster
//! accepts answers of any); or when `theirs` is 0 and the datagram is a client request (a node
//! answers such a client, with its own id in the answer). Peer messages thus always need the
//! exact id, and a node must have an id of its own (a node's [`Config`] with cluster id 0 is
//! refused). Anything else is dropped as [`DropReason::WrongCluster`].
//!
//! # Limits
//!
//! - **Datagram limit**: [`DEFAULT_DATAGRAM_LIMIT`] (65,000) bytes, configurable from
//!   [`MIN_DATAGRAM_LIMIT`] (1,200, a small path MTU) to [`MAX_DATAGRAM_LIMIT`] (65,507).
//!   Encoding a message over it returns [`Error::TooLarge`] with both sizes, and sends nothing;
//!   [`datagram_len`] says in advance what a message needs.
//! - **Nesting**: at most [`MAX_DEPTH`] (128) levels of compound values in a body, so a recursive
//!   message type cannot be driven to overflow the net thread's stack.
//! - **Read budget**: the net thread reads at most [`Config::read_budget`] (64) datagrams before it
//!   sends again, so a flood cannot starve outbound traffic; it comes back for the rest at once.
//!
//! # Sending
//!
//! An [`Outbox`] (one per sending thread) encodes on the calling thread into its own reused
//! buffer, so a message over the limit is refused there and then. It sends by the configured
//! [`SendPath`]:
//!
//! - `Direct` (the default): `send_to` from the calling thread on a duplicate of the socket's
//!   descriptor. Measured faster (`benches/benches/codec.rs`, docs/performance.md); falls back to the
//!   net thread when the socket's buffer is full.
//! - `EventLoop`: the datagram goes into a bounded channel to the net thread, which is woken by a
//!   `mio::Waker` (one wake per burst, not per datagram). A full channel refuses the datagram
//!   ([`Error::QueueFull`], counted) rather than block the sender or grow without bound.
//!
//! While faults are injected every datagram goes through the net thread, which applies them.
//!
//! `Vec<u8>` fields decode ~3.5× faster marked `#[serde(with = "balsa_net::bytes")]`, with the
//! same bytes on the wire (see [`bytes`]).
//!
//! # Counters
//!
//! [`Transport::counters`], readable from any thread at any time: datagrams and bytes in and
//! out, messages delivered, send errors, datagrams refused for a full queue, the faults injected,
//! and drops by [`DropReason`]: too short, bad magic, bad version, wrong cluster, undecodable,
//! too large, unknown peer, wrong address, inbox full, inbox closed, fault, refused by the
//! application ([`Counters::dropped`], e.g. a client batch over a node's limit), auth failed,
//! replayed, old boot and wrong kind (the last four also per source address,
//! [`Counters::by_source`], for at most [`MAX_SOURCES`] addresses).
//!
//! # Fault injection (tests)
//!
//! [`Transport::faults`]: drop, duplicate, delay and reorder outbound datagrams (for all
//! destinations or per peer), partition a peer inbound, outbound or both; seeded, switchable at
//! run time, free when off (see [`Faults`]).
//!
//! # Invariants
//!
//! - **No length prefix is trusted.** Every length prefix in a body is checked against the bytes
//!   left after it before anything is reserved, so a collection reserves at most (bytes left) ×
//!   (its element's size): what a datagram can make the decoder hold is bounded by its own size,
//!   times the element sizes, exactly as for an honest datagram of that size. A 20-byte body
//!   claiming 2^32 or 2^63 elements fails having allocated only its error message (under 120
//!   bytes, against the 65,000-byte requirement): `tests/allocation.rs`, with a counting
//!   allocator.
//! - **No datagram makes the net thread panic** or recurse past [`MAX_DEPTH`]. Every check
//!   returns a drop reason; the decoder is fuzzed (`fuzz/`).
//! - **Every datagram received is counted once, then delivered or dropped for one reason.**
//! - **The net thread never blocks on anything but `poll`**: not on the inbox (`try_send`; full
//!   means drop and count), not on the socket (non-blocking); and no caller ever blocks on the
//!   net thread (bounded channel, `try_send`).
//! - **Only `transport.rs` starts a thread**, the net thread, and the transport joins it. Its
//!   socket closes when it exits, whatever outboxes remain (they hold it weakly).
//! - **Only `codec.rs` names `bincode`** (marked unmaintained, RUSTSEC-2025-0141): a
//!   wire-compatible replacement is a change to that file alone.
//! - **Only `seal.rs` holds cryptography** (`ring`); `seal_off.rs` stands in for it
//!   without the `seal` feature and refuses every key.
//! - **Nothing of a sealed datagram is decoded before its tag is verified** (what GCM decrypted
//!   of a forged one is wiped before `open` returns), and nothing is remembered of it (replay window, key memory) before then either: a forger
//!   cannot move a window or change which key a receiver is answered under.

mod bounded;
pub mod bytes;
pub mod codec;
mod config;
mod counters;
mod delayed;
mod envelope;
mod error;
mod event_loop;
mod faults;
mod keys;
mod outbox;
mod peers;
mod replay;
#[cfg(feature = "seal")]
mod seal;
#[cfg(not(feature = "seal"))]
#[path = "seal_off.rs"]
mod seal;
mod shared;
mod socket_buffers;
mod transport;

pub use bounded::MAX_DEPTH;
pub use codec::{Codec, Opened, datagram_len};
pub use config::{
    CLIENT_ID, Config, DEFAULT_DATAGRAM_LIMIT, DEFAULT_OUTBOUND_CAPACITY, DEFAULT_READ_BUDGET,
    MAX_DATAGRAM_LIMIT, MIN_DATAGRAM_LIMIT, SendPath, wall_clock_micros,
};
pub use counters::{CounterValues, Counters, DropReason, MAX_SOURCES, SourceDrops};
pub use envelope::{
    ANY_CLUSTER, HEADER_LEN, Header, Kind, MAGIC, Notice, SEAL_OVERHEAD, SEALED, VERSION,
};
pub use error::{Error, Result};
pub use event_loop::NOTICES_PER_SECOND;
pub use faults::{Direction, Faults, LinkFaults};
pub use keys::{KEY_LEN, Key, KeyFormatError, KeyRing, KeySlot, Keys};
pub use outbox::{Destination, Outbox};
pub use replay::WINDOW as REPLAY_WINDOW;
pub use seal::{Sealing, generate_key};
pub use socket_buffers::{BufferSizes, SOCKET_BUFFER_BYTES, grow as grow_socket_buffers};
pub use transport::{Inbound, Transport, bind};
