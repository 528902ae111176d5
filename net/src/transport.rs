//! The transport handle: binds the socket and starts the net thread, hands out outboxes, changes
//! the peer table, reads the counters, and stops and joins the thread.

use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};

use crossbeam_channel::Sender;
use mio::net::UdpSocket;
use mio::{Interest, Poll, Waker};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::Codec;
use crate::config::{CLIENT_ID, Config, SendPath};
use crate::counters::Counters;
use crate::envelope::Kind;
use crate::event_loop::{self, EventLoop};
use crate::faults::Faults;
use crate::outbox::Outbox;
use crate::peers::PeerTable;
use crate::shared::{KeyUsers, SPARE_BUFFERS, Shared};
use crate::{Error, Result};

/// A message that arrived, passed the envelope and sender checks, and decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inbound<M> {
    /// What the sender sent it as.
    pub kind: Kind,
    /// The sender's node id from the envelope: checked against the peer table for
    /// [`Kind::Peer`]; as claimed (0 for a client) otherwise.
    pub from: u64,
    /// The address it came from: where to answer a client.
    pub source: SocketAddr,
    /// The message.
    pub msg: M,
}

/// A node's UDP transport: one socket, one net thread. Dropping it stops the thread like
/// [`Transport::shutdown`], logging instead of returning a failure.
pub struct Transport<M> {
    shared: Arc<Shared>,
    /// The socket for direct sends, owned by the net thread.
    socket: Weak<std::net::UdpSocket>,
    /// The template every outbox's codec is cloned from.
    codec: Codec,
    id: u64,
    send_path: SendPath,
    thread: NetThread,
    _msg: PhantomData<fn(M) -> M>,
}

impl<M> Transport<M>
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    /// Binds `config.bind` and starts the net thread, named `balsa-net-<id>`, which delivers
    /// every message that passes its checks to `inbox` as `E::from(Inbound { .. })`, and never
    /// waits for it: when the inbox is full, the message is dropped and counted.
    ///
    /// This is the one place the crate starts a thread; [`Transport::shutdown`] (or drop) joins
    /// it.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] (see [`Config::validate`]); [`Error::Io`] if the socket cannot be
    /// bound or registered, or the thread cannot be started.
    pub fn start<E>(config: Config, inbox: Sender<E>) -> Result<Transport<M>>
    where
        E: From<Inbound<M>> + Send + 'static,
    {
        config.validate()?;
        let socket = bind(config.bind)?;
        Transport::start_on(config, socket, inbox)
    }

    /// As [`Transport::start`], on `socket`, bound already (by [`bind`]) in place of
    /// `config.bind`: a node binds its address before it touches its data directory, and
    /// starts its transport once its identity is settled. Datagrams that arrive in between wait
    /// in the socket's buffer and pass the same checks as any other.
    ///
    /// # Errors
    /// As [`Transport::start`], but for the bind.
    pub fn start_on<E>(
        config: Config,
        socket: std::net::UdpSocket,
        inbox: Sender<E>,
    ) -> Result<Transport<M>>
    where
        E: From<Inbound<M>> + Send + 'static,
    {
        config.validate()?;
        let codec = Codec::new(config.cluster_id, config.id, config.datagram_limit)?
            .with_keys(&config.keys, config.boot_id)?;
        let bound = socket.local_addr().unwrap_or(config.bind);
        let io_error = |op| {
            move |source| Error::Io {
                op,
                addr: bound,
                source,
            }
        };
        let std_socket = socket;
        std_socket
            .set_nonblocking(true)
            .map_err(io_error("make non-blocking the socket bound to"))?;
        match crate::socket_buffers::grow(&std_socket, crate::SOCKET_BUFFER_BYTES) {
            Ok(sizes) if sizes.hold(crate::SOCKET_BUFFER_BYTES) => {}
            Ok(sizes) => log::warn!(
                "the socket bound to {bound} got {} bytes of receive and {} of send buffer, \
                 less than the {} asked for: datagrams of large values may be dropped under \
                 load; raise net.core.rmem_max and net.core.wmem_max",
                sizes.receive,
                sizes.send,
                crate::SOCKET_BUFFER_BYTES
            ),
            Err(error) => {
                log::warn!("cannot size the buffers of the socket bound to {bound}: {error}")
            }
        }
        let local_addr = std_socket
            .local_addr()
            .map_err(io_error("read the address of"))?;
        // Outboxes send through a duplicate of the descriptor: the same socket, but one that
        // mio does not own, so the net thread alone registers and closes the socket.
        let direct_socket = Arc::new(
            std_socket
                .try_clone()
                .map_err(io_error("duplicate the socket bound to"))?,
        );
        let mut socket = UdpSocket::from_std(std_socket);
        let poll = Poll::new().map_err(io_error("create a poll for"))?;
        // Readable only: writable interest is added while a send waits for buffer space (see
        // `event_loop`), because a UDP socket reports "writable" after every datagram it sends.
        poll.registry()
            .register(&mut socket, event_loop::SOCKET, Interest::READABLE)
            .map_err(io_error("register with the poll the socket bound to"))?;
        let waker = Waker::new(poll.registry(), event_loop::WAKER)
            .map_err(io_error("create a waker for"))?;

        let peers = PeerTable::default();
        for &(id, addr) in &config.peers {
            peers.set(id, addr);
        }
        let (outbound, outbound_receiver) = crossbeam_channel::bounded(config.outbound_capacity);
        let (spare_sender, spare_buffers) = crossbeam_channel::bounded(SPARE_BUFFERS);
        let shared = Arc::new(Shared {
            local_addr,
            peers,
            counters: Arc::default(),
            faults: Faults::new(config.fault_seed),
            outbound,
            outbound_capacity: config.outbound_capacity,
            spare_buffers,
            waker,
            wake_pending: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            key_users: KeyUsers::default(),
        });
        let weak_socket = Arc::downgrade(&direct_socket);
        let event_loop = EventLoop::<M, E> {
            poll,
            socket,
            direct_socket,
            shared: Arc::clone(&shared),
            inbox,
            outbound: outbound_receiver,
            spare_buffers: spare_sender,
            codec: codec.clone(),
            read_budget: config.read_budget,
            inbox_limit: config.inbox_limit,
            _msg: PhantomData,
        };
        let handle =
            spawn_net_thread(config.id, move || event_loop.run()).map_err(|source| Error::Io {
                op: "start the net thread for",
                addr: local_addr,
                source,
            })?;
        Ok(Transport {
            shared: Arc::clone(&shared),
            socket: weak_socket,
            codec,
            id: config.id,
            send_path: config.send_path,
            thread: NetThread {
                shared,
                handle: Some(handle),
            },
            _msg: PhantomData,
        })
    }

    /// A new sending handle, with its own encode buffer; make one per sending thread.
    #[must_use]
    pub fn outbox(&self) -> Outbox<M> {
        Outbox::new(
            self.codec.clone(),
            Arc::clone(&self.shared),
            Weak::clone(&self.socket),
            self.send_path,
        )
    }
}

/// Binds a UDP socket to `addr` for [`Transport::start_on`].
///
/// # Errors
/// [`Error::Io`] naming the address (one in use, say).
pub fn bind(addr: SocketAddr) -> Result<std::net::UdpSocket> {
    std::net::UdpSocket::bind(addr).map_err(|source| Error::Io {
        op: "bind",
        addr,
        source,
    })
}

impl<M> Transport<M> {
    /// This node's id, as sent in every envelope.
    #[must_use]
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The address the socket is bound to (with the port the OS chose, if it was 0).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The largest datagram sent or accepted, in bytes, envelope included.
    #[must_use]
    pub fn datagram_limit(&self) -> usize {
        self.codec.datagram_limit()
    }

    /// Sets peer `id`'s address, from now on for both directions; returns the one it replaces.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for id 0, which is reserved for clients.
    pub fn set_peer(&self, id: u64, addr: SocketAddr) -> Result<Option<SocketAddr>> {
        if id == CLIENT_ID {
            return Err(Error::InvalidConfig {
                reason: format!("peer {addr} cannot have id {id}, which is reserved for clients"),
            });
        }
        Ok(self.shared.peers.set(id, addr))
    }

    /// Removes peer `id`: its messages are dropped from now on. Returns its address.
    pub fn remove_peer(&self, id: u64) -> Option<SocketAddr> {
        self.shared.peers.remove(id)
    }

    /// Peer `id`'s address.
    #[must_use]
    pub fn peer(&self, id: u64) -> Option<SocketAddr> {
        self.shared.peers.get(id)
    }

    /// The peer table, sorted by id.
    #[must_use]
    pub fn peers(&self) -> Vec<(u64, SocketAddr)> {
        self.shared.peers.entries()
    }

    /// The live counters; clone the `Arc` to read them from another thread, at any time (also
    /// after shutdown).
    #[must_use]
    pub fn counters(&self) -> &Arc<Counters> {
        &self.shared.counters
    }

    /// The fault-injection switches of this transport.
    #[must_use]
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Stops the net thread: it sends what was queued before this call, exits and closes the
    /// socket (outboxes still alive then fail with [`Error::Closed`]); then joins it.
    ///
    /// # Errors
    /// [`Error::ThreadPanicked`] if the net thread panicked; [`Error::Io`] if it could not be
    /// woken (it is then left to exit at its next event, not joined).
    pub fn shutdown(mut self) -> Result<()> {
        self.thread.stop()
    }
}

/// The net thread's handle; stopping is idempotent and happens at the latest on drop.
struct NetThread {
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
}

impl NetThread {
    fn stop(&mut self) -> Result<()> {
        let Some(handle) = self.handle.take() else {
            return Ok(());
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Err(source) = self.shared.waker.wake() {
            return Err(Error::Io {
                op: "wake for shutdown the net thread of",
                addr: self.shared.local_addr,
                source,
            });
        }
        handle.join().map_err(|panic| Error::ThreadPanicked {
            message: panic
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(not a string)".to_owned()),
        })
    }
}

impl Drop for NetThread {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            log::error!(
                "stopping the transport on {}: {error}",
                self.shared.local_addr
            );
        }
    }
}

/// Starts the net thread.
#[allow(
    clippy::disallowed_methods,
    reason = "the net thread is the transport's runtime piece: the one thread this crate \
              starts, joined by `Transport::shutdown` or drop"
)]
fn spawn_net_thread(id: u64, body: impl FnOnce() + Send + 'static) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name(format!("balsa-net-{id}"))
        .spawn(body)
}
