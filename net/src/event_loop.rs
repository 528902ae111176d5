//! The net thread's body: one `mio::Poll` over the node's UDP socket and a `mio::Waker`.
//!
//! Each turn: wait for readiness (not at all if reading was cut short last turn), then send
//! what is due (held-back datagrams, then the outbound channel), then read up to the read
//! budget. mio is edge-triggered: a readable event says "something arrived", once, so the
//! thread keeps `readable` set until `recv_from` says `WouldBlock`, and while it is set polls with
//! a zero timeout. That way a flood is read in budget-sized slices with sending in between, and
//! nothing that arrived is left unread.
//!
//! Writable readiness is asked for only while a datagram waits for buffer space (`stalled`): a UDP
//! socket reports "writable" each time the kernel frees a sent datagram, so a permanent interest
//! would wake the net thread once per datagram that any outbox sends directly.
//!
//! Invariants:
//! - **The net thread never blocks on the inbox**: it uses `try_send`; a full inbox (its
//!   channel's bound, or [`Config::inbox_limit`](crate::Config::inbox_limit) events waiting)
//!   drops the message and counts [`DropReason::InboxFull`].
//! - **Every inbound datagram is counted**: received, then either delivered or dropped for one
//!   reason.
//! - **The receive buffer is allocated once** (datagram limit + 1 bytes, so a larger datagram
//!   is seen as larger rather than silently cut).
//! - **Datagrams to send keep their order** when the socket's buffer is full: once one is held
//!   in `stalled`, later ones queue behind it until the socket is writable again.

use std::collections::VecDeque;
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use serde::de::DeserializeOwned;

use crate::DropReason;
use crate::codec::{self, Codec};
use crate::delayed::DelayQueue;
use crate::envelope::Kind;
use crate::faults::Verdict;
use crate::outbox::Datagram;
use crate::replay::ReplayWindows;
use crate::shared::Shared;
use crate::transport::Inbound;

pub(crate) const SOCKET: Token = Token(0);
pub(crate) const WAKER: Token = Token(1);

/// Outbound datagrams sent per turn at most, so that a flood of sends cannot starve reading.
const SEND_BUDGET: usize = 256;

pub(crate) struct EventLoop<M, E> {
    pub(crate) poll: Poll,
    /// The socket, registered with `poll`; the net thread reads and sends through it.
    pub(crate) socket: UdpSocket,
    /// The duplicate outboxes send through directly (they hold it weakly): dropped with the
    /// loop, so that the socket closes when the net thread exits.
    #[allow(
        dead_code,
        reason = "owned, never read: its drop closes the outboxes' descriptor"
    )]
    pub(crate) direct_socket: Arc<std::net::UdpSocket>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) inbox: Sender<E>,
    pub(crate) outbound: Receiver<Datagram>,
    /// Where the net thread hands back the buffers of sent datagrams.
    pub(crate) spare_buffers: Sender<Vec<u8>>,
    /// For decoding only (the net thread encodes nothing).
    pub(crate) codec: Codec,
    pub(crate) read_budget: usize,
    /// `Config::inbox_limit`.
    pub(crate) inbox_limit: Option<usize>,
    pub(crate) _msg: PhantomData<fn() -> M>,
}

/// The loop's moving parts, apart from what it was started with.
struct State {
    events: Events,
    /// Datagram limit + 1 bytes, allocated once.
    receive_buffer: Vec<u8>,
    /// The socket may hold datagrams not read yet.
    readable: bool,
    /// The outbound channel may hold datagrams not sent yet (the send budget ran out).
    outbound_pending: bool,
    /// Datagrams that met a full socket buffer, oldest first; sent before anything else.
    stalled: VecDeque<Datagram>,
    /// Whether the socket is registered for writable readiness (exactly while `stalled` is not
    /// empty, after each turn).
    writable_interest: bool,
    delayed: DelayQueue,
    /// What checking inbound datagrams remembers.
    receiving: Receiving,
}

/// The state of the inbound checks.
#[derive(Default)]
struct Receiving {
    /// Member datagrams seen, per sender (sealed traffic only).
    replay: ReplayWindows,
    /// Notices left to send this second, and when the second started.
    notices: Option<(Instant, u32)>,
    /// When a member's datagram that failed authentication was last logged.
    last_auth_warning: Option<Instant>,
}

/// The least time between two warnings of member datagrams failing authentication.
const AUTH_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Notices (see [`crate::Notice`]) a node sends per second at most, to all clients together: a
/// forger cannot make a node send more than this, each smaller than the datagram that asked (a
/// request no longer than a notice gets none).
pub const NOTICES_PER_SECOND: u32 = 16;

impl Receiving {
    /// Whether to log a member's datagram that failed authentication now (at most once per
    /// [`AUTH_WARNING_INTERVAL`]: the counters have every one).
    fn auth_warning_due(&mut self) -> bool {
        let now = now();
        let due = self
            .last_auth_warning
            .is_none_or(|last| now.duration_since(last) >= AUTH_WARNING_INTERVAL);
        if due {
            self.last_auth_warning = Some(now);
        }
        due
    }

    /// Takes a notice from this second's budget.
    fn take_notice(&mut self) -> bool {
        let now = now();
        match &mut self.notices {
            Some((start, left)) if now.duration_since(*start) < Duration::from_secs(1) => {
                if *left == 0 {
                    return false;
                }
                *left -= 1;
            }
            slot => *slot = Some((now, NOTICES_PER_SECOND - 1)),
        }
        true
    }
}

impl<M, E> EventLoop<M, E>
where
    M: DeserializeOwned,
    E: From<Inbound<M>>,
{
    /// Runs until the transport is stopped; sends what is queued, then returns (dropping the
    /// socket, which closes it).
    pub(crate) fn run(mut self) {
        let mut state = State {
            events: Events::with_capacity(64),
            receive_buffer: vec![0; self.codec.datagram_limit() + 1],
            readable: true, // datagrams may have arrived between bind and register
            outbound_pending: false,
            stalled: VecDeque::new(),
            writable_interest: false,
            delayed: DelayQueue::default(),
            receiving: Receiving::default(),
        };
        loop {
            let timeout = self.poll_timeout(&state);
            if let Err(error) = self.poll.poll(&mut state.events, timeout) {
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!(
                    "net thread of {}: poll failed, stopping: {error}",
                    self.local()
                );
                return;
            }
            let mut woken = false;
            for event in &state.events {
                match event.token() {
                    SOCKET if event.is_readable() => state.readable = true,
                    WAKER => woken = true,
                    _ => {}
                }
            }
            if woken {
                // Cleared before draining, with a read-modify-write so that it synchronises
                // with the senders' swaps: see `Shared::wake`.
                self.shared.wake_pending.swap(false, Ordering::SeqCst);
            }
            if self.shared.stopping.load(Ordering::SeqCst) {
                // What was queued before the stop, not what keeps coming after it.
                self.send_outbound(&mut state, self.outbound.len());
                return;
            }
            self.send_due(&mut state);
            self.send_outbound(&mut state, SEND_BUDGET);
            if state.readable {
                self.read(&mut state);
            }
            if let Err(error) = self.update_interest(&mut state) {
                log::error!(
                    "net thread of {}: reregister failed, stopping: {error}",
                    self.local()
                );
                return;
            }
        }
    }

    /// Asks for writable readiness while a datagram waits for buffer space, and only then.
    fn update_interest(&mut self, state: &mut State) -> io::Result<()> {
        let wanted = !state.stalled.is_empty();
        if wanted == state.writable_interest {
            return Ok(());
        }
        let interest = if wanted {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        // Re-registering reports readiness that is already there, so nothing is missed if the
        // buffer drained in between.
        self.poll
            .registry()
            .reregister(&mut self.socket, SOCKET, interest)?;
        state.writable_interest = wanted;
        Ok(())
    }

    fn poll_timeout(&self, state: &State) -> Option<Duration> {
        if state.readable || state.outbound_pending {
            return Some(Duration::ZERO);
        }
        let due = state.delayed.next_due()?;
        Some(due.saturating_duration_since(now()))
    }

    fn local(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// Reads up to the read budget; clears `readable` once the socket is empty.
    fn read(&self, state: &mut State) {
        for _ in 0..self.read_budget {
            match self.socket.recv_from(&mut state.receive_buffer) {
                Ok((len, source)) => self.receive(
                    &mut state.receive_buffer[..len],
                    source,
                    &mut state.receiving,
                ),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    state.readable = false;
                    return;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                // E.g. an ICMP error reported on some platforms: nothing was read; go on.
                Err(error) => log::debug!("net thread of {}: recv_from: {error}", self.local()),
            }
        }
    }

    fn receive(&self, datagram: &mut [u8], source: SocketAddr, receiving: &mut Receiving) {
        let counters = &self.shared.counters;
        let len = datagram.len();
        counters.received(len);
        let inbound = match self.accept(datagram, source, receiving) {
            Ok(inbound) => inbound,
            Err(reason) => {
                log::trace!("dropped {len}-byte datagram from {source}: {reason}");
                counters.dropped_from(reason, source);
                return;
            }
        };
        if self
            .inbox_limit
            .is_some_and(|limit| self.inbox.len() >= limit)
        {
            counters.dropped(DropReason::InboxFull);
            return;
        }
        match self.inbox.try_send(E::from(inbound)) {
            Ok(()) => counters.delivered(),
            Err(TrySendError::Full(_)) => counters.dropped(DropReason::InboxFull),
            Err(TrySendError::Disconnected(_)) => counters.dropped(DropReason::InboxClosed),
        }
    }

    /// Checks a datagram in order of cost: size and header, then the sender, then its seal
    /// (authentication, then the replay window), and only then the body.
    fn accept(
        &self,
        datagram: &mut [u8],
        source: SocketAddr,
        receiving: &mut Receiving,
    ) -> Result<Inbound<M>, DropReason> {
        let header = self.codec.check_header(datagram)?;
        let (kind, from) = (header.kind, header.from);
        if kind == Kind::Peer {
            self.shared.peers.check_sender(from, source)?;
            if self.shared.faults.is_active() && self.shared.faults.cuts_inbound(from) {
                return Err(DropReason::Fault);
            }
        }
        let len = datagram.len();
        let opened = match self.codec.open(header, datagram) {
            Ok(opened) => opened,
            Err(reason) => {
                if let Some(notice) = self.codec.notice_for(header, len)
                    && receiving.take_notice()
                {
                    self.send_notice(&notice, source);
                }
                if kind == Kind::Peer && receiving.auth_warning_due() {
                    log::warn!(
                        "{}: a datagram from member {from} at {source} failed authentication \
                         ({} so far, all sources): does it have this cluster's peer key, and \
                         this node the right one? (or someone forges its datagrams)",
                        self.local(),
                        self.shared
                            .counters
                            .values()
                            .dropped(DropReason::AuthFailed)
                            + 1
                    );
                }
                return Err(reason);
            }
        };
        if let Some(sealing) = opened.sealing {
            if kind == Kind::Peer {
                receiving
                    .replay
                    .admit(from, sealing.boot_id, sealing.sequence)?;
            }
            if self.codec.rotating(kind) {
                self.shared.key_users.record(kind, source, sealing.slot);
            }
        }
        let msg = codec::decode_body(opened.body)?;
        Ok(Inbound {
            kind,
            from,
            source,
            msg,
        })
    }

    /// Tells a client its request could not be opened; best effort (a full buffer loses it).
    fn send_notice(&self, notice: &[u8], to: SocketAddr) {
        match self.socket.send_to(notice, to) {
            Ok(sent) => self.shared.counters.sent(sent),
            Err(error) => log::debug!("net thread of {}: notice to {to}: {error}", self.local()),
        }
    }

    /// Sends the held-back datagrams that are due.
    fn send_due(&self, state: &mut State) {
        if state.delayed.is_empty() {
            return;
        }
        let now = now();
        while let Some(datagram) = state.delayed.pop_due(now) {
            self.send(state, datagram);
        }
    }

    /// Sends stalled datagrams, then up to `budget` from the outbound channel, applying faults.
    fn send_outbound(&self, state: &mut State, budget: usize) {
        while let Some(datagram) = state.stalled.pop_front() {
            if let Err(datagram) = self.try_send_to(datagram) {
                state.stalled.push_front(datagram);
                return; // wait for the socket to drain; the rest stays queued
            }
        }
        state.outbound_pending = false;
        for _ in 0..budget {
            let Ok(datagram) = self.outbound.try_recv() else {
                return;
            };
            if self.shared.faults.is_active() {
                self.send_with_faults(state, datagram);
            } else {
                self.send(state, datagram);
            }
            if !state.stalled.is_empty() {
                return;
            }
        }
        state.outbound_pending = true;
    }

    fn send_with_faults(&self, state: &mut State, datagram: Datagram) {
        let counters = &self.shared.counters;
        match self.shared.faults.outbound(datagram.peer) {
            Verdict::Drop => {
                counters.dropped(DropReason::Fault);
                self.recycle(datagram.bytes);
            }
            Verdict::Send { duplicate, delay } => {
                if duplicate {
                    counters.fault_duplicated();
                    let copy = Datagram {
                        bytes: datagram.bytes.clone(),
                        ..datagram
                    };
                    self.send_after(state, copy, delay);
                }
                self.send_after(state, datagram, delay);
            }
        }
    }

    fn send_after(&self, state: &mut State, datagram: Datagram, delay: Duration) {
        if delay.is_zero() {
            self.send(state, datagram);
        } else {
            self.shared.counters.fault_delayed();
            state.delayed.push(now() + delay, datagram);
        }
    }

    /// Sends now, or queues behind datagrams already stalled on a full socket buffer.
    fn send(&self, state: &mut State, datagram: Datagram) {
        if !state.stalled.is_empty() {
            state.stalled.push_back(datagram);
            return;
        }
        if let Err(datagram) = self.try_send_to(datagram) {
            state.stalled.push_back(datagram);
        }
    }

    /// One `send_to`; gives the datagram back if the socket's buffer is full. Other errors lose
    /// it (counted), as the network could have.
    fn try_send_to(&self, datagram: Datagram) -> Result<(), Datagram> {
        let counters = &self.shared.counters;
        loop {
            match self.socket.send_to(&datagram.bytes, datagram.to) {
                Ok(sent) => {
                    counters.sent(sent);
                    break;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Err(datagram),
                Err(error) => {
                    counters.send_failed();
                    log::debug!(
                        "net thread of {}: send_to {}: {error}",
                        self.local(),
                        datagram.to
                    );
                    break;
                }
            }
        }
        self.recycle(datagram.bytes);
        Ok(())
    }

    /// Hands a sent datagram's buffer back for reuse, unless enough are spare already (the
    /// channel is bounded: then the buffer is freed).
    fn recycle(&self, buffer: Vec<u8>) {
        let _ = self.spare_buffers.try_send(buffer);
    }
}

/// The clock, read only for fault injection's delays.
#[allow(
    clippy::disallowed_methods,
    reason = "the net thread is runtime, not core: it times held-back datagrams"
)]
fn now() -> Instant {
    Instant::now()
}
