//! The transport's error type: what the *caller* of `balsa-net` can get wrong or run into.
//!
//! Bad datagrams from the network are not errors: they are dropped and counted
//! ([`DropReason`](crate::DropReason)), because nothing the caller could do would help.

use std::fmt;
use std::io;
use std::net::SocketAddr;

/// Everything that can go wrong when starting a transport or sending through it.
#[derive(Debug)]
pub enum Error {
    /// An operating-system call failed.
    Io {
        /// What the transport was doing.
        op: &'static str,
        /// The address involved: the one bound, or the destination of a send.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// The configuration is not usable.
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// The encoded message would not fit in one datagram. Nothing was sent; split the message
    /// (the core batches fewer entries) and send the parts.
    TooLarge {
        /// The size the datagram would have had: envelope header plus encoded body, in bytes.
        size: usize,
        /// The configured datagram limit, in bytes.
        limit: usize,
    },
    /// The message's `Serialize` implementation failed (the wire format supports every serde
    /// data model type, so this is a custom implementation returning an error).
    Encode {
        /// The serializer's message.
        reason: String,
    },
    /// A message was addressed to a peer id that is not in the peer table.
    UnknownPeer {
        /// The id asked for.
        id: u64,
    },
    /// The queue of datagrams for the net thread is full (the socket cannot keep up): this one
    /// was dropped and counted, as the network drops what it cannot carry.
    QueueFull {
        /// The queue's capacity, in datagrams ([`Config::outbound_capacity`](crate::Config)).
        capacity: usize,
    },
    /// The transport has been shut down: its socket is closed.
    Closed,
    /// The net thread panicked; found when joining it at shutdown.
    ThreadPanicked {
        /// The panic's message, when it was a string.
        message: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, addr, source } => write!(f, "{op} {addr}: {source}"),
            Error::InvalidConfig { reason } => write!(f, "invalid transport config: {reason}"),
            Error::TooLarge { size, limit } => write!(
                f,
                "message needs a {size}-byte datagram, over the {limit}-byte datagram limit"
            ),
            Error::Encode { reason } => write!(f, "cannot encode message: {reason}"),
            Error::UnknownPeer { id } => write!(f, "no address for peer {id} in the peer table"),
            Error::QueueFull { capacity } => write!(
                f,
                "{capacity} datagrams already wait for the net thread; this one was dropped"
            ),
            Error::Closed => write!(f, "the transport is shut down"),
            Error::ThreadPanicked { message } => write!(f, "the net thread panicked: {message}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
