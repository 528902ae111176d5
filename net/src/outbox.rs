//! The sending side: an [`Outbox`] encodes a message on the calling thread (so a message over
//! the datagram limit is refused at once, with both sizes) and either sends it through the
//! shared socket from that thread, or hands the encoded datagram to the net thread.

use std::io;
use std::marker::PhantomData;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Weak};

use crossbeam_channel::TrySendError;
use serde::Serialize;

use crate::codec::Codec;
use crate::config::SendPath;
use crate::envelope::Kind;
use crate::keys::KeySlot;
use crate::shared::{Shared, Slots};
use crate::{Error, Result};

/// Where a message goes, which also decides its [`Kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A node of the cluster, by id, at its address in the peer table; sent as [`Kind::Peer`].
    Peer(u64),
    /// A client's address, to answer it; sent as [`Kind::Response`].
    Client(SocketAddr),
    /// A node's address, from a client; sent as [`Kind::Request`].
    Server(SocketAddr),
}

impl Destination {
    /// The kind of datagram a message to this destination is sent as.
    #[must_use]
    pub fn kind(self) -> Kind {
        match self {
            Destination::Peer(_) => Kind::Peer,
            Destination::Client(_) => Kind::Response,
            Destination::Server(_) => Kind::Request,
        }
    }
}

/// An encoded datagram on its way to the net thread.
#[derive(Debug)]
pub(crate) struct Datagram {
    pub(crate) to: SocketAddr,
    /// The peer it is for, when sent to one by id (partitions are per peer).
    pub(crate) peer: Option<u64>,
    pub(crate) bytes: Vec<u8>,
}

/// A sending handle for one thread. Each holds its own encode buffer of the datagram limit's
/// size, reused for every message; clone one per sending thread.
///
/// Sending after the transport has shut down fails with [`Error::Closed`].
pub struct Outbox<M> {
    codec: Codec,
    shared: Arc<Shared>,
    /// The socket for direct sends (a duplicate of the net thread's, the same socket), owned by
    /// the net thread: it closes when the net thread exits, whatever outboxes remain.
    socket: Weak<UdpSocket>,
    send_path: SendPath,
    _msg: PhantomData<fn(&M)>,
}

impl<M> Outbox<M> {
    pub(crate) fn new(
        codec: Codec,
        shared: Arc<Shared>,
        socket: Weak<UdpSocket>,
        send_path: SendPath,
    ) -> Outbox<M> {
        Outbox {
            codec,
            shared,
            socket,
            send_path,
            _msg: PhantomData,
        }
    }

    /// The largest datagram this outbox sends, in bytes, envelope included.
    #[must_use]
    pub fn datagram_limit(&self) -> usize {
        self.codec.datagram_limit()
    }
}

impl<M: Serialize> Outbox<M> {
    /// Sends `msg` to `to` by the transport's configured [`SendPath`]; through the net thread
    /// whenever a fault is injected.
    ///
    /// Success means the datagram was handed to the kernel or queued for the net thread; UDP
    /// may still lose it.
    ///
    /// # Errors
    /// [`Error::TooLarge`] (nothing sent; split the message), [`Error::UnknownPeer`],
    /// [`Error::Encode`], [`Error::QueueFull`] (through the net thread), [`Error::Closed`], or
    /// [`Error::Io`] from a direct `send_to`.
    pub fn send(&mut self, to: Destination, msg: &M) -> Result<()> {
        self.route(to, msg, self.send_path)
    }

    /// As [`Outbox::send`], with `send_to` on the shared socket from this thread (through the
    /// net thread while faults are injected, or if the socket's buffer is full).
    ///
    /// # Errors
    /// As [`Outbox::send`].
    pub fn send_direct(&mut self, to: Destination, msg: &M) -> Result<()> {
        self.route(to, msg, SendPath::Direct)
    }

    /// As [`Outbox::send`], always handing the datagram to the net thread.
    ///
    /// # Errors
    /// As [`Outbox::send`], except [`Error::Io`] only if the net thread cannot be woken.
    pub fn send_via_loop(&mut self, to: Destination, msg: &M) -> Result<()> {
        self.route(to, msg, SendPath::EventLoop)
    }

    fn route(&mut self, to: Destination, msg: &M, path: SendPath) -> Result<()> {
        let (addr, peer) = match to {
            Destination::Peer(id) => {
                let addr = self.shared.peers.get(id).ok_or(Error::UnknownPeer { id })?;
                (addr, Some(id))
            }
            Destination::Client(addr) | Destination::Server(addr) => (addr, None),
        };
        let Outbox {
            codec,
            shared,
            socket,
            ..
        } = self;
        let kind = to.kind();
        let slots = if codec.rotating(kind) {
            shared.key_users.slots_for(kind, addr)
        } else {
            Slots::One(KeySlot::Current)
        };
        for slot in slots.each() {
            let bytes = codec.encode_under(kind, slot, msg)?;
            if path == SendPath::Direct && !shared.faults.is_active() {
                send_direct(shared, socket, addr, peer, bytes)?;
            } else {
                post(shared, addr, peer, bytes)?;
            }
        }
        Ok(())
    }
}

impl<M> Clone for Outbox<M> {
    /// Another handle on the same transport, with an encode buffer of its own.
    fn clone(&self) -> Self {
        Outbox::new(
            self.codec.clone(),
            Arc::clone(&self.shared),
            Weak::clone(&self.socket),
            self.send_path,
        )
    }
}

fn send_direct(
    shared: &Shared,
    socket: &Weak<UdpSocket>,
    addr: SocketAddr,
    peer: Option<u64>,
    bytes: &[u8],
) -> Result<()> {
    let socket = socket.upgrade().ok_or(Error::Closed)?;
    loop {
        match socket.send_to(bytes, addr) {
            Ok(sent) => {
                shared.counters.sent(sent);
                return Ok(());
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            // The socket's send buffer is full: the net thread sends it once it drains.
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                return post(shared, addr, peer, bytes);
            }
            Err(source) => {
                shared.counters.send_failed();
                return Err(Error::Io {
                    op: "send_to",
                    addr,
                    source,
                });
            }
        }
    }
}

/// Copies `bytes` into a spare buffer and queues it for the net thread.
fn post(shared: &Shared, addr: SocketAddr, peer: Option<u64>, bytes: &[u8]) -> Result<()> {
    let mut buffer = shared.spare_buffers.try_recv().unwrap_or_default();
    buffer.clear();
    buffer.extend_from_slice(bytes);
    let datagram = Datagram {
        to: addr,
        peer,
        bytes: buffer,
    };
    match shared.outbound.try_send(datagram) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            shared.counters.queue_full();
            return Err(Error::QueueFull {
                capacity: shared.outbound_capacity,
            });
        }
        Err(TrySendError::Disconnected(_)) => return Err(Error::Closed),
    }
    shared.wake().map_err(|source| Error::Io {
        op: "wake the net thread of",
        addr: shared.local_addr,
        source,
    })
}
