//! `--net proxy`: partitions without privileges, by a UDP proxy thread in the harness process
//! through which every datagram to a node passes.
//!
//! Per node `k` there are two loopback addresses: `L_k`, a free port the node binds
//! (`--listen`), and `A_k`, a socket the proxy owns, which is the node's advertised address
//! (in every `--cluster`) and the harness's client address for it. Nothing else reaches a node:
//! peers and clients only know `A` addresses.
//!
//! - **Member traffic.** A datagram arriving on `A_j` from `L_i` is the directed link `i -> j`.
//!   Unless that link is blocked (or its [`LinkQuality`] drops it), the proxy sends it on to
//!   `L_j` *from `A_i`*, so `j` sees it come from `i`'s advertised address, the only address its
//!   peer table accepts for `i`.
//! - **Client traffic.** A datagram arriving on `A_j` from an address that is no node's `L` is
//!   a client's. The proxy forwards it to `L_j` from a socket of its own for the pair
//!   (client, `j`) (made on first use; at most [`ProxyConfig::nat_capacity`] of them, the least
//!   recently used closed first), and relays what comes back on that socket to the client, sent
//!   from `A_k` where `L_k` is the answer's sender: a leader that answers a request a follower
//!   forwarded answers directly, and the client learns the leader from the answer's source.
//!   Client traffic is never blocked and has no link quality.
//!
//! Invariants: one thread (the *relay*) owns every socket and does all the forwarding; the
//! [`ProxyNetwork`] handle changes it only through requests it acknowledges, so when
//! `add_node`, `set_blocked` or `set_link_quality` returns `Ok`, the relay applies the change
//! to every datagram it reads from then on. Blocking is judged when a datagram arrives, so a
//! delayed one already accepted is still delivered. `teardown` stops and joins the relay,
//! which closes every socket, and releases the `L` ports.
//!
//! `L` ports are taken below the kernel's ephemeral range where there is room, starting at a
//! point derived from the process id, so that no socket bound to port 0 (the proxy's own, the
//! harness's clients', anyone's) is given a node's port while that node is down. A port is free
//! when chosen (not in the kernel's UDP socket table, nor handed out by a live proxy of this
//! process); another program may still take it before the node binds it.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::ffi::OsString;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use balsa::sim::SimRng;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};

use super::{MAX_NODE_ID, NetError, Network, NodeAddresses, check_links, check_new_node};

const MODE: &str = "proxy";
/// The relay's waker; tokens `1..=MAX_NODE_ID` are the nodes' `A` sockets.
const WAKER: Token = Token(0);
/// Client (NAT) sockets have tokens from here on, never reused.
const FIRST_NAT_TOKEN: usize = 1 << 16;
/// Larger than any UDP payload over IPv4 (65,507 bytes).
const BUFFER_SIZE: usize = 1 << 16;
/// How long a request to the relay may take before the relay counts as gone.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Consecutive receive errors (other than "would block") after which a socket is left until
/// its next readiness event.
const MAX_RECEIVE_ERRORS: u32 = 16;
/// `L` ports below the ephemeral range are taken from this one up.
const FIRST_LISTEN_PORT: u16 = 10_000;

/// The `L` ports handed out by the proxies of this process and not yet released: they are not
/// bound (their nodes bind them), so binding cannot tell two proxies of one process apart.
static RESERVED_PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// How the proxy treats the datagrams of one directed member link that is not blocked.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkQuality {
    /// The chance, in `0.0..=1.0`, that a datagram is dropped.
    pub drop_probability: f64,
    /// Added to every datagram's trip.
    pub delay: Duration,
    /// Up to this much more, uniformly at random, per datagram (so datagrams may overtake).
    pub jitter: Duration,
    /// The chance, in `0.0..=1.0`, that a datagram (not dropped) is delivered twice, each copy
    /// with its own delay.
    pub duplicate_probability: f64,
}

impl LinkQuality {
    /// A link that delivers everything at once, exactly once (the default).
    pub const PERFECT: LinkQuality = LinkQuality {
        drop_probability: 0.0,
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
        duplicate_probability: 0.0,
    };
}

impl Default for LinkQuality {
    fn default() -> LinkQuality {
        LinkQuality::PERFECT
    }
}

/// How a proxy is made.
#[derive(Clone, Copy, Debug)]
pub struct ProxyConfig {
    /// Seeds the link-quality random choices (the same seed, the same choices for the same
    /// sequence of datagrams).
    pub seed: u64,
    /// The most client sockets open at once; the least recently used goes first.
    pub nat_capacity: usize,
}

impl Default for ProxyConfig {
    fn default() -> ProxyConfig {
        ProxyConfig {
            seed: 0x6261_6c73_612d_6e65,
            nat_capacity: 4096,
        }
    }
}

/// What the relay has done so far. Each datagram is counted before it is sent on, so a count
/// read after a datagram arrived includes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    not(test),
    allow(
        dead_code,
        reason = "the link-quality knobs and counters are tested but not yet used by the nemesis"
    )
)]
pub struct ProxyStats {
    /// Member datagrams sent on (a duplicate counts twice).
    pub relayed: u64,
    /// Member datagrams dropped because their link is blocked.
    pub blocked: u64,
    /// Member datagrams dropped by their link's quality.
    pub quality_dropped: u64,
    /// Extra copies sent by link quality.
    pub duplicated: u64,
    /// Client datagrams forwarded to a node.
    pub client_requests: u64,
    /// Node datagrams relayed back to a client.
    pub client_answers: u64,
    /// Datagrams from an address the proxy does not know, on a client socket (dropped).
    pub unknown_dropped: u64,
    /// `send_to` calls that failed (the datagram is lost, as UDP may lose it).
    pub send_failed: u64,
    /// Client sockets opened.
    pub nat_opened: u64,
    /// Client sockets closed to make room.
    pub nat_evicted: u64,
}

#[derive(Default)]
struct Counters {
    relayed: AtomicU64,
    blocked: AtomicU64,
    quality_dropped: AtomicU64,
    duplicated: AtomicU64,
    client_requests: AtomicU64,
    client_answers: AtomicU64,
    unknown_dropped: AtomicU64,
    send_failed: AtomicU64,
    nat_opened: AtomicU64,
    nat_evicted: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    #[cfg_attr(
        not(test),
        allow(
            dead_code,
            reason = "the link-quality knobs and counters are tested but not yet used by the nemesis"
        )
    )]
    fn stats(&self) -> ProxyStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ProxyStats {
            relayed: read(&self.relayed),
            blocked: read(&self.blocked),
            quality_dropped: read(&self.quality_dropped),
            duplicated: read(&self.duplicated),
            client_requests: read(&self.client_requests),
            client_answers: read(&self.client_answers),
            unknown_dropped: read(&self.unknown_dropped),
            send_failed: read(&self.send_failed),
            nat_opened: read(&self.nat_opened),
            nat_evicted: read(&self.nat_evicted),
        }
    }
}

/// The network of one run in proxy mode: the handle of the relay thread. See the module
/// documentation.
pub struct ProxyNetwork {
    /// `None` once torn down.
    relay: Option<RelayHandle>,
    nodes: BTreeMap<u64, NodeAddresses>,
    /// Every id ever added (ids are used once per network).
    added: BTreeSet<u64>,
    counters: Arc<Counters>,
    /// The `L` ports this proxy reserved in [`RESERVED_PORTS`].
    reserved_ports: Vec<u16>,
}

struct RelayHandle {
    requests: mpsc::Sender<Request>,
    waker: Arc<Waker>,
    thread: JoinHandle<()>,
}

/// A change for the relay, acknowledged on `done` once in force.
struct Request {
    change: Change,
    done: mpsc::SyncSender<()>,
}

enum Change {
    AddNode {
        id: u64,
        socket: UdpSocket,
        listen: SocketAddr,
    },
    SetBlocked(BTreeSet<(u64, u64)>),
    #[cfg_attr(
        not(test),
        allow(
            dead_code,
            reason = "the link-quality knobs and counters are tested but not yet used by the nemesis"
        )
    )]
    SetQuality {
        link: (u64, u64),
        quality: LinkQuality,
    },
    Stop,
}

impl ProxyNetwork {
    /// Starts the relay thread.
    pub fn start(config: ProxyConfig) -> Result<ProxyNetwork, NetError> {
        let io_error = |action: &str| {
            let action = action.to_string();
            move |source| NetError::Io { action, source }
        };
        let poll = Poll::new().map_err(io_error("creating the proxy's poll"))?;
        let waker = Arc::new(
            Waker::new(poll.registry(), WAKER).map_err(io_error("creating the proxy's waker"))?,
        );
        let (requests, receiver) = mpsc::channel();
        let counters = Arc::new(Counters::default());
        let relay = Relay {
            poll,
            requests: receiver,
            nodes: BTreeMap::new(),
            by_listen: HashMap::new(),
            blocked: BTreeSet::new(),
            quality: BTreeMap::new(),
            nat: Nat::new(config.nat_capacity.max(1)),
            delayed: BinaryHeap::new(),
            sequence: 0,
            rng: LinkRng::new(config.seed),
            counters: Arc::clone(&counters),
        };
        let thread =
            spawn_relay(move || relay.run()).map_err(io_error("starting the proxy thread"))?;
        Ok(ProxyNetwork {
            relay: Some(RelayHandle {
                requests,
                waker,
                thread,
            }),
            nodes: BTreeMap::new(),
            added: BTreeSet::new(),
            counters,
            reserved_ports: Vec::new(),
        })
    }

    /// Sets the quality of the directed member link `from -> to` (both added, distinct),
    /// in force for datagrams read from then on. Probabilities must be within `0.0..=1.0`.
    #[cfg_attr(
        not(test),
        allow(
            dead_code,
            reason = "the link-quality knobs and counters are tested but not yet used by the nemesis"
        )
    )]
    pub fn set_link_quality(
        &mut self,
        from: u64,
        to: u64,
        quality: LinkQuality,
    ) -> Result<(), NetError> {
        let added: BTreeSet<u64> = self.nodes.keys().copied().collect();
        check_links(&[(from, to)].into(), &added)?;
        let probability = 0.0..=1.0;
        if !probability.contains(&quality.drop_probability)
            || !probability.contains(&quality.duplicate_probability)
        {
            return Err(NetError::BadLink {
                from,
                to,
                problem: "probabilities are within 0.0..=1.0",
            });
        }
        self.request(Change::SetQuality {
            link: (from, to),
            quality,
        })
    }

    /// What the relay has done so far.
    #[cfg_attr(
        not(test),
        allow(
            dead_code,
            reason = "the link-quality knobs and counters are tested but not yet used by the nemesis"
        )
    )]
    pub fn stats(&self) -> ProxyStats {
        self.counters.stats()
    }

    /// Sends `change` to the relay and waits until it is in force.
    fn request(&self, change: Change) -> Result<(), NetError> {
        let relay = self.relay.as_ref().ok_or(NetError::ProxyStopped)?;
        let (done, applied) = mpsc::sync_channel(1);
        relay
            .requests
            .send(Request { change, done })
            .map_err(|_| NetError::ProxyStopped)?;
        relay.waker.wake().map_err(|source| NetError::Io {
            action: "waking the proxy thread".into(),
            source,
        })?;
        applied
            .recv_timeout(REQUEST_TIMEOUT)
            .map_err(|_| NetError::ProxyStopped)
    }
}

impl Network for ProxyNetwork {
    fn mode(&self) -> &'static str {
        MODE
    }

    fn add_node(&mut self, id: u64) -> Result<NodeAddresses, NetError> {
        check_new_node(id, self.added.iter().copied())?;
        if self.relay.is_none() {
            return Err(NetError::ProxyStopped);
        }
        self.added.insert(id);
        let port = reserve_listen_port(id)?;
        self.reserved_ports.push(port);
        let listen = loopback(port);
        let socket = UdpSocket::bind(loopback(0)).map_err(|source| NetError::Io {
            action: format!("binding node {id}'s advertised socket on 127.0.0.1"),
            source,
        })?;
        let advertised = socket.local_addr().map_err(|source| NetError::Io {
            action: format!("reading node {id}'s advertised address"),
            source,
        })?;
        self.request(Change::AddNode { id, socket, listen })?;
        let addresses = NodeAddresses { listen, advertised };
        self.nodes.insert(id, addresses);
        Ok(addresses)
    }

    fn wrap_command(&self, _id: u64) -> Vec<OsString> {
        Vec::new()
    }

    fn client_address(&self, id: u64) -> SocketAddr {
        match self.nodes.get(&id) {
            Some(addresses) => addresses.advertised,
            None => panic!("node {id} was never added to the proxy"),
        }
    }

    fn set_blocked(&mut self, blocked: &BTreeSet<(u64, u64)>) -> Result<(), NetError> {
        let added: BTreeSet<u64> = self.nodes.keys().copied().collect();
        check_links(blocked, &added)?;
        self.request(Change::SetBlocked(blocked.clone()))
    }

    fn teardown(&mut self) {
        if let Some(relay) = self.relay.take() {
            // The relay stops at the request even if it cannot acknowledge it; a send that
            // fails means it is gone already.
            let (done, _applied) = mpsc::sync_channel(1);
            let _ = relay.requests.send(Request {
                change: Change::Stop,
                done,
            });
            if let Err(error) = relay.waker.wake() {
                log::warn!("proxy teardown: waking the proxy thread: {error}");
            }
            if relay.thread.join().is_err() {
                log::warn!("proxy teardown: the proxy thread had panicked");
            }
        }
        let mut reserved = RESERVED_PORTS
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for port in self.reserved_ports.drain(..) {
            reserved.remove(&port);
        }
    }
}

impl Drop for ProxyNetwork {
    fn drop(&mut self) {
        self.teardown();
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

#[allow(
    clippy::disallowed_methods,
    reason = "the proxy's relay is the harness's one network thread, joined by teardown"
)]
fn spawn_relay(body: impl FnOnce() + Send + 'static) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("torture-proxy".into())
        .spawn(body)
}

#[allow(
    clippy::disallowed_methods,
    reason = "link delays are wall-clock time; the harness is not the Raft core"
)]
fn now() -> Instant {
    Instant::now()
}

/// A free loopback UDP port for node `id` to listen on, recorded in [`RESERVED_PORTS`].
fn reserve_listen_port(id: u64) -> Result<u16, NetError> {
    let mut reserved = RESERVED_PORTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    // Read from the kernel's socket table where possible rather than by binding: a probe
    // socket is copied into any child process forked meanwhile (the harness starts many), which
    // holds the port until it execs, and the node's own bind could fail on it.
    let in_use = udp_ports_in_use();
    let free = |port: u16| match &in_use {
        Some(in_use) => !in_use.contains(&port),
        None => std::net::UdpSocket::bind(loopback(port)).is_ok(),
    };
    let ephemeral_start = ephemeral_port_range().map_or(32_768, |(low, _)| low);
    if let Some(span) = ephemeral_start
        .checked_sub(FIRST_LISTEN_PORT)
        .filter(|&span| span >= 100)
    {
        let span = u32::from(span);
        let start = std::process::id()
            .wrapping_mul(16)
            .wrapping_add(u32::try_from(id).unwrap_or(0))
            % span;
        for step in 0..span {
            // Below `span`, itself a u16, so the sum stays a valid port.
            let offset = u16::try_from((start + step) % span).unwrap_or(0);
            let port = FIRST_LISTEN_PORT + offset;
            if !reserved.contains(&port) && free(port) {
                reserved.insert(port);
                return Ok(port);
            }
        }
    }
    // No room below the ephemeral range: a port the kernel picks, not one handed out already.
    for _ in 0..64 {
        let socket = std::net::UdpSocket::bind(loopback(0)).map_err(|source| NetError::Io {
            action: format!("finding a free port for node {id}"),
            source,
        })?;
        let port = socket.local_addr().map(|address| address.port()).ok();
        if let Some(port) = port.filter(|port| !reserved.contains(port)) {
            reserved.insert(port);
            return Ok(port);
        }
    }
    Err(NetError::Exhausted {
        what: format!("loopback UDP port for node {id} to listen on"),
    })
}

/// The local ports of every UDP socket of this network namespace (IPv4 and IPv6, any address),
/// from `/proc/net/udp` and `/proc/net/udp6`; `None` if the IPv4 table cannot be read.
fn udp_ports_in_use() -> Option<BTreeSet<u16>> {
    let mut ports = BTreeSet::new();
    for (table, required) in [("/proc/net/udp", true), ("/proc/net/udp6", false)] {
        let text = match std::fs::read_to_string(table) {
            Ok(text) => text,
            Err(_) if !required => continue,
            Err(_) => return None,
        };
        // After a header line: "sl local_address rem_address ...", the local address being
        // HEXADDRESS:HEXPORT.
        for line in text.lines().skip(1) {
            let port = line
                .split_whitespace()
                .nth(1)
                .and_then(|local| local.rsplit_once(':'))
                .and_then(|(_, port)| u16::from_str_radix(port, 16).ok());
            ports.extend(port);
        }
    }
    Some(ports)
}

/// The kernel's ephemeral port range (`net.ipv4.ip_local_port_range`), if readable.
fn ephemeral_port_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut numbers = text.split_whitespace().map(str::parse::<u16>);
    Some((numbers.next()?.ok()?, numbers.next()?.ok()?))
}

/// The relay's randomness: the simulator's SplitMix64, seeded, so a run's link faults repeat.
struct LinkRng(SimRng);

impl LinkRng {
    fn new(seed: u64) -> LinkRng {
        LinkRng(SimRng::new(seed))
    }

    /// A uniform number in `0.0..1.0` (53 random bits).
    fn next_f64(&mut self) -> f64 {
        const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
        (self.0.next_u64() >> 11) as f64 * SCALE
    }

    /// `true` with probability `p` (never for 0, always for 1).
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.next_f64() < p
    }
}

/// A node as the relay knows it.
struct RelayNode {
    /// Its `A` socket.
    socket: UdpSocket,
    /// Its `L` address.
    listen: SocketAddr,
}

/// A member datagram waiting out its link's delay.
struct Delayed {
    due: Instant,
    /// Breaks ties in arrival order.
    sequence: u64,
    from: u64,
    to: u64,
    bytes: Vec<u8>,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Delayed) -> bool {
        (self.due, self.sequence) == (other.due, other.sequence)
    }
}

impl Eq for Delayed {}

impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Delayed) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Delayed {
    fn cmp(&self, other: &Delayed) -> std::cmp::Ordering {
        (self.due, self.sequence).cmp(&(other.due, other.sequence))
    }
}

/// The client sockets: one per (client address, node), least recently used closed first.
struct Nat {
    capacity: usize,
    by_pair: HashMap<(SocketAddr, u64), Token>,
    entries: HashMap<Token, NatEntry>,
    /// Last use → token; uses are numbered by `clock`, so keys are unique.
    by_age: BTreeMap<u64, Token>,
    clock: u64,
    next_token: usize,
}

struct NatEntry {
    client: SocketAddr,
    node: u64,
    socket: UdpSocket,
    last_use: u64,
}

impl Nat {
    fn new(capacity: usize) -> Nat {
        Nat {
            capacity,
            by_pair: HashMap::new(),
            entries: HashMap::new(),
            by_age: BTreeMap::new(),
            clock: 0,
            next_token: FIRST_NAT_TOKEN,
        }
    }

    /// Marks `token`'s entry as just used.
    fn touch(&mut self, token: Token) {
        if let Some(entry) = self.entries.get_mut(&token) {
            self.by_age.remove(&entry.last_use);
            self.clock += 1;
            entry.last_use = self.clock;
            self.by_age.insert(self.clock, token);
        }
    }

    /// The socket for (client, node), opened (and registered with `poll`) if there is none.
    fn socket_for(
        &mut self,
        client: SocketAddr,
        node: u64,
        poll: &Poll,
        counters: &Counters,
    ) -> io::Result<&UdpSocket> {
        let token = match self.by_pair.get(&(client, node)) {
            Some(&token) => token,
            None => {
                while self.entries.len() >= self.capacity {
                    let Some((_, oldest)) = self.by_age.pop_first() else {
                        break;
                    };
                    if let Some(mut entry) = self.entries.remove(&oldest) {
                        self.by_pair.remove(&(entry.client, entry.node));
                        // Closing the socket removes it from the poll in any case.
                        let _ = poll.registry().deregister(&mut entry.socket);
                        Counters::bump(&counters.nat_evicted);
                    }
                }
                let mut socket = UdpSocket::bind(loopback(0))?;
                let token = Token(self.next_token);
                self.next_token += 1;
                poll.registry()
                    .register(&mut socket, token, Interest::READABLE)?;
                Counters::bump(&counters.nat_opened);
                self.by_pair.insert((client, node), token);
                self.entries.insert(
                    token,
                    NatEntry {
                        client,
                        node,
                        socket,
                        last_use: 0,
                    },
                );
                token
            }
        };
        self.touch(token);
        match self.entries.get(&token) {
            Some(entry) => Ok(&entry.socket),
            None => Err(io::Error::other("a client socket vanished from the table")),
        }
    }
}

/// The relay thread's state: it owns every socket of the proxy.
struct Relay {
    poll: Poll,
    requests: mpsc::Receiver<Request>,
    nodes: BTreeMap<u64, RelayNode>,
    by_listen: HashMap<SocketAddr, u64>,
    blocked: BTreeSet<(u64, u64)>,
    quality: BTreeMap<(u64, u64), LinkQuality>,
    nat: Nat,
    delayed: BinaryHeap<Reverse<Delayed>>,
    sequence: u64,
    rng: LinkRng,
    counters: Arc<Counters>,
}

/// One `send_to`, again if a signal interrupts it. A full buffer ("would block") loses the
/// datagram, as UDP may.
fn send_to(socket: &UdpSocket, bytes: &[u8], to: SocketAddr) -> io::Result<()> {
    loop {
        match socket.send_to(bytes, to) {
            Ok(_) => return Ok(()),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
}

/// The token of node `id`'s `A` socket.
fn node_token(id: u64) -> Token {
    // Ids are checked to be within 1..=MAX_NODE_ID before they reach the relay.
    Token(usize::try_from(id).unwrap_or(usize::MAX))
}

impl Relay {
    fn run(mut self) {
        let mut events = Events::with_capacity(256);
        let mut buffer = vec![0u8; BUFFER_SIZE];
        loop {
            let timeout = self
                .delayed
                .peek()
                .map(|Reverse(first)| first.due.saturating_duration_since(now()));
            if let Err(error) = self.poll.poll(&mut events, timeout) {
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("the torture proxy stops: polling: {error}");
                return;
            }
            for event in &events {
                match event.token() {
                    WAKER => {}
                    Token(node) if node < FIRST_NAT_TOKEN => {
                        if let Some(id) = u64::try_from(node).ok().filter(|&id| id <= MAX_NODE_ID) {
                            self.drain_advertised(id, &mut buffer);
                        }
                    }
                    token => self.drain_nat(token, &mut buffer),
                }
            }
            if !self.serve_requests() {
                return;
            }
            self.send_due();
        }
    }

    /// Applies the pending requests; `false` on `Stop` or once the handle is gone.
    fn serve_requests(&mut self) -> bool {
        loop {
            let request = match self.requests.try_recv() {
                Ok(request) => request,
                Err(mpsc::TryRecvError::Empty) => return true,
                Err(mpsc::TryRecvError::Disconnected) => return false,
            };
            match request.change {
                Change::AddNode {
                    id,
                    mut socket,
                    listen,
                } => {
                    let registered = self.poll.registry().register(
                        &mut socket,
                        node_token(id),
                        Interest::READABLE,
                    );
                    if let Err(error) = registered {
                        // Not acknowledged: `add_node` reports the proxy as stopped.
                        log::error!("the torture proxy stops: registering node {id}: {error}");
                        return false;
                    }
                    self.by_listen.insert(listen, id);
                    self.nodes.insert(id, RelayNode { socket, listen });
                }
                Change::SetBlocked(blocked) => self.blocked = blocked,
                Change::SetQuality { link, quality } => {
                    if quality == LinkQuality::PERFECT {
                        self.quality.remove(&link);
                    } else {
                        self.quality.insert(link, quality);
                    }
                }
                Change::Stop => return false,
            }
            // The handle may have given up waiting; the change is in force all the same.
            let _ = request.done.try_send(());
        }
    }

    /// Reads every datagram waiting on node `to`'s `A` socket.
    fn drain_advertised(&mut self, to: u64, buffer: &mut [u8]) {
        let mut errors = 0;
        while errors < MAX_RECEIVE_ERRORS {
            let Some(node) = self.nodes.get(&to) else {
                return;
            };
            match node.socket.recv_from(buffer) {
                Ok((length, source)) => match self.by_listen.get(&source) {
                    Some(&from) => self.member_datagram(from, to, &buffer[..length]),
                    None => self.client_request(source, to, &buffer[..length]),
                },
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    errors += 1;
                    log::debug!("torture proxy: receiving on node {to}'s socket: {error}");
                }
            }
        }
    }

    /// Reads every datagram waiting on a client socket, relaying the nodes' answers.
    fn drain_nat(&mut self, token: Token, buffer: &mut [u8]) {
        let mut errors = 0;
        while errors < MAX_RECEIVE_ERRORS {
            let Some(entry) = self.nat.entries.get(&token) else {
                return;
            };
            match entry.socket.recv_from(buffer) {
                Ok((length, source)) => {
                    let client = entry.client;
                    let Some(answering) = self.by_listen.get(&source).copied() else {
                        Counters::bump(&self.counters.unknown_dropped);
                        continue;
                    };
                    self.nat.touch(token);
                    Counters::bump(&self.counters.client_answers);
                    self.send_from(answering, client, &buffer[..length]);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    errors += 1;
                    log::debug!("torture proxy: receiving on a client socket: {error}");
                }
            }
        }
    }

    /// A datagram of the directed link `from -> to`.
    fn member_datagram(&mut self, from: u64, to: u64, bytes: &[u8]) {
        if self.blocked.contains(&(from, to)) {
            Counters::bump(&self.counters.blocked);
            return;
        }
        let quality = self.quality.get(&(from, to)).copied().unwrap_or_default();
        if self.rng.chance(quality.drop_probability) {
            Counters::bump(&self.counters.quality_dropped);
            return;
        }
        let copies = if self.rng.chance(quality.duplicate_probability) {
            Counters::bump(&self.counters.duplicated);
            2
        } else {
            1
        };
        let Some(destination) = self.nodes.get(&to).map(|node| node.listen) else {
            return;
        };
        for _ in 0..copies {
            // Counted first, so that whoever receives it can read the count.
            Counters::bump(&self.counters.relayed);
            let mut delay = quality.delay;
            if !quality.jitter.is_zero() {
                delay += quality.jitter.mul_f64(self.rng.next_f64());
            }
            if delay.is_zero() {
                self.send_from(from, destination, bytes);
            } else {
                self.sequence += 1;
                self.delayed.push(Reverse(Delayed {
                    due: now() + delay,
                    sequence: self.sequence,
                    from,
                    to,
                    bytes: bytes.to_vec(),
                }));
            }
        }
    }

    /// A client's datagram to node `to`: forwarded from the client's own socket for `to`.
    fn client_request(&mut self, client: SocketAddr, to: u64, bytes: &[u8]) {
        let Some(destination) = self.nodes.get(&to).map(|node| node.listen) else {
            return;
        };
        let socket = match self.nat.socket_for(client, to, &self.poll, &self.counters) {
            Ok(socket) => socket,
            Err(error) => {
                log::warn!("torture proxy: no socket for client {client} of node {to}: {error}");
                Counters::bump(&self.counters.send_failed);
                return;
            }
        };
        Counters::bump(&self.counters.client_requests);
        if let Err(error) = send_to(socket, bytes, destination) {
            log::debug!("torture proxy: forwarding client {client} to node {to}: {error}");
            Counters::bump(&self.counters.send_failed);
        }
    }

    /// Sends `bytes` to `to` from node `from`'s `A` socket.
    fn send_from(&self, from: u64, to: SocketAddr, bytes: &[u8]) {
        let Some(node) = self.nodes.get(&from) else {
            return;
        };
        if let Err(error) = send_to(&node.socket, bytes, to) {
            log::debug!("torture proxy: sending from node {from}'s address to {to}: {error}");
            Counters::bump(&self.counters.send_failed);
        }
    }

    /// Sends the delayed datagrams that are due.
    fn send_due(&mut self) {
        let now = now();
        while self
            .delayed
            .peek()
            .is_some_and(|Reverse(first)| first.due <= now)
        {
            let Some(Reverse(datagram)) = self.delayed.pop() else {
                break;
            };
            if let Some(destination) = self.nodes.get(&datagram.to).map(|node| node.listen) {
                self.send_from(datagram.from, destination, &datagram.bytes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain UDP socket standing in for a node or a client.
    struct Endpoint(std::net::UdpSocket);

    /// How long a test waits for a datagram that should come.
    const PATIENCE: Duration = Duration::from_secs(5);

    impl Endpoint {
        fn bind(address: SocketAddr) -> Endpoint {
            let socket = std::net::UdpSocket::bind(address).expect("the address is free");
            socket
                .set_read_timeout(Some(PATIENCE))
                .expect("a non-zero timeout");
            Endpoint(socket)
        }

        fn client() -> Endpoint {
            Endpoint::bind(loopback(0))
        }

        fn address(&self) -> SocketAddr {
            self.0.local_addr().expect("a bound socket")
        }

        fn send(&self, text: &str, to: SocketAddr) {
            self.0.send_to(text.as_bytes(), to).expect("send_to");
        }

        /// The next datagram, within [`PATIENCE`], as (text, sender).
        fn receive(&self) -> (String, SocketAddr) {
            let deadline = now() + PATIENCE;
            let mut buffer = [0u8; 2048];
            loop {
                let left = deadline.saturating_duration_since(now());
                assert!(!left.is_zero(), "no datagram within the patience");
                self.0
                    .set_read_timeout(Some(left))
                    .expect("a non-zero timeout");
                match self.0.recv_from(&mut buffer) {
                    Ok((length, from)) => {
                        let text = String::from_utf8_lossy(&buffer[..length]).into_owned();
                        return (text, from);
                    }
                    // A stop and continue of the process interrupts a receive with a timeout.
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => panic!("no datagram within the patience: {error}"),
                }
            }
        }
    }

    /// A proxy with nodes `1..=count` and an endpoint bound on each one's `L` address.
    fn proxy_with_nodes(config: ProxyConfig, count: u64) -> (ProxyNetwork, Vec<Endpoint>) {
        let mut proxy = ProxyNetwork::start(config).expect("the proxy starts");
        let nodes = (1..=count)
            .map(|id| {
                let addresses = proxy.add_node(id).expect("a node");
                assert_eq!(addresses.advertised, proxy.client_address(id));
                assert_ne!(addresses.listen, addresses.advertised);
                Endpoint::bind(addresses.listen)
            })
            .collect();
        (proxy, nodes)
    }

    /// Node `id`'s advertised address (`A_id`).
    fn advertised(proxy: &ProxyNetwork, id: u64) -> SocketAddr {
        proxy.client_address(id)
    }

    #[test]
    fn member_relay_arrives_from_the_senders_advertised_address() {
        let (proxy, nodes) = proxy_with_nodes(ProxyConfig::default(), 3);
        assert_eq!(proxy.mode(), "proxy");
        assert!(proxy.wrap_command(1).is_empty());
        nodes[0].send("one to two", advertised(&proxy, 2));
        assert_eq!(
            nodes[1].receive(),
            ("one to two".to_string(), advertised(&proxy, 1))
        );
        nodes[2].send("three to one", advertised(&proxy, 1));
        assert_eq!(
            nodes[0].receive(),
            ("three to one".to_string(), advertised(&proxy, 3))
        );
        // The answer goes back the same way.
        nodes[0].send("one to three", advertised(&proxy, 3));
        assert_eq!(
            nodes[2].receive(),
            ("one to three".to_string(), advertised(&proxy, 1))
        );
        assert_eq!(proxy.stats().relayed, 3);
    }

    #[test]
    fn a_blocked_link_drops_one_direction_only() {
        let (mut proxy, nodes) = proxy_with_nodes(ProxyConfig::default(), 3);
        let client = Endpoint::client();
        proxy.set_blocked(&[(1, 2)].into()).expect("blocked");
        nodes[0].send("dropped", advertised(&proxy, 2));
        // The relay reads node 2's socket in order: once the client's marker, sent after, is
        // through, the blocked datagram was dealt with, and it would have arrived first.
        client.send("marker", advertised(&proxy, 2));
        assert_eq!(nodes[1].receive().0, "marker");
        assert_eq!(proxy.stats().blocked, 1);
        // The other direction and the other links are open.
        nodes[1].send("two to one", advertised(&proxy, 1));
        assert_eq!(
            nodes[0].receive(),
            ("two to one".to_string(), advertised(&proxy, 2))
        );
        nodes[0].send("one to three", advertised(&proxy, 3));
        assert_eq!(
            nodes[2].receive(),
            ("one to three".to_string(), advertised(&proxy, 1))
        );
        // The set replaces the previous one.
        proxy.set_blocked(&[(2, 1)].into()).expect("blocked");
        nodes[0].send("healed", advertised(&proxy, 2));
        assert_eq!(
            nodes[1].receive(),
            ("healed".to_string(), advertised(&proxy, 1))
        );
        nodes[1].send("dropped too", advertised(&proxy, 1));
        client.send("marker", advertised(&proxy, 1));
        assert_eq!(nodes[0].receive().0, "marker");
        assert_eq!(proxy.stats().blocked, 2);
        assert!(matches!(
            proxy.set_blocked(&[(1, 4)].into()),
            Err(NetError::BadNode { id: 4, .. })
        ));
    }

    #[test]
    fn a_client_round_trip_and_an_answer_from_another_node() {
        let (mut proxy, nodes) = proxy_with_nodes(ProxyConfig::default(), 3);
        let client = Endpoint::client();
        client.send("request", advertised(&proxy, 1));
        let (request, nat) = nodes[0].receive();
        assert_eq!(request, "request");
        assert_ne!(nat, client.address());
        assert!((1..=3).all(|id| nat != advertised(&proxy, id)));
        nodes[0].send("answer", nat);
        assert_eq!(
            client.receive(),
            ("answer".to_string(), advertised(&proxy, 1))
        );
        // Node 1 forwards the request to the leader, node 3, which answers the client directly.
        nodes[0].send(&format!("forwarded for {nat}"), advertised(&proxy, 3));
        let (forwarded, from) = nodes[2].receive();
        assert_eq!(forwarded, format!("forwarded for {nat}"));
        assert_eq!(from, advertised(&proxy, 1));
        nodes[2].send("answer from the leader", nat);
        assert_eq!(
            client.receive(),
            ("answer from the leader".to_string(), advertised(&proxy, 3))
        );
        // The same client and node keep their socket; another client gets its own.
        client.send("again", advertised(&proxy, 1));
        assert_eq!(nodes[0].receive(), ("again".to_string(), nat));
        let other = Endpoint::client();
        other.send("hello", advertised(&proxy, 1));
        let (_, other_nat) = nodes[0].receive();
        assert_ne!(other_nat, nat);
        nodes[0].send("yours", other_nat);
        assert_eq!(
            other.receive(),
            ("yours".to_string(), advertised(&proxy, 1))
        );
        // An answer from a stranger is dropped; the client hears only what follows.
        let stranger = Endpoint::client();
        stranger.send("not a node", nat);
        nodes[0].send("after the stranger", nat);
        assert_eq!(client.receive().0, "after the stranger");
        let stats = proxy.stats();
        assert_eq!(stats.unknown_dropped, 1);
        assert_eq!(stats.nat_opened, 2);
        assert_eq!(stats.client_requests, 3);
        // Client traffic ignores partitions.
        proxy
            .set_blocked(&[(1, 2), (1, 3), (2, 1), (3, 1)].into())
            .expect("blocked");
        client.send("isolated", advertised(&proxy, 1));
        assert_eq!(nodes[0].receive(), ("isolated".to_string(), nat));
        nodes[0].send("still answers", nat);
        assert_eq!(
            client.receive(),
            ("still answers".to_string(), advertised(&proxy, 1))
        );
    }

    #[test]
    fn the_client_sockets_are_bounded_and_the_oldest_goes_first() {
        let config = ProxyConfig {
            nat_capacity: 2,
            ..ProxyConfig::default()
        };
        let (proxy, nodes) = proxy_with_nodes(config, 1);
        let clients: Vec<Endpoint> = (0..3).map(|_| Endpoint::client()).collect();
        let mut nats = Vec::new();
        for (index, client) in clients.iter().enumerate() {
            client.send(&format!("client {index}"), advertised(&proxy, 1));
            let (text, nat) = nodes[0].receive();
            assert_eq!(text, format!("client {index}"));
            nats.push(nat);
        }
        let stats = proxy.stats();
        assert_eq!((stats.nat_opened, stats.nat_evicted), (3, 1));
        // The two most recent still round-trip.
        for (client, nat) in clients.iter().zip(&nats).skip(1) {
            nodes[0].send("answer", *nat);
            assert_eq!(
                client.receive(),
                ("answer".to_string(), advertised(&proxy, 1))
            );
        }
    }

    #[test]
    fn teardown_stops_the_thread_and_frees_the_ports() {
        let (mut proxy, nodes) = proxy_with_nodes(ProxyConfig::default(), 2);
        let client = Endpoint::client();
        client.send("opens a client socket", advertised(&proxy, 1));
        assert_eq!(nodes[0].receive().0, "opens a client socket");
        let advertised: Vec<SocketAddr> = (1..=2).map(|id| advertised(&proxy, id)).collect();
        let listen: Vec<u16> = nodes.iter().map(|node| node.address().port()).collect();
        proxy.teardown();
        proxy.teardown();
        assert!(proxy.relay.is_none());
        // The relay has exited (joined), and with it every socket it owned. A child process
        // forked meanwhile by another test holds copies until it execs: wait that out.
        let deadline = now() + PATIENCE;
        for address in advertised {
            while std::net::UdpSocket::bind(address).is_err() {
                assert!(now() < deadline, "{address} is still bound");
                std::thread::yield_now();
            }
        }
        let reserved = RESERVED_PORTS
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        assert!(listen.iter().all(|port| !reserved.contains(port)));
        drop(reserved);
        assert!(matches!(
            proxy.set_blocked(&BTreeSet::new()),
            Err(NetError::ProxyStopped)
        ));
        assert!(matches!(proxy.add_node(3), Err(NetError::ProxyStopped)));
    }

    #[test]
    fn link_quality_drops_duplicates_and_delays() {
        let (mut proxy, nodes) = proxy_with_nodes(ProxyConfig::default(), 2);
        let client = Endpoint::client();
        let all_dropped = LinkQuality {
            drop_probability: 1.0,
            ..LinkQuality::PERFECT
        };
        proxy.set_link_quality(1, 2, all_dropped).expect("quality");
        for _ in 0..10 {
            nodes[0].send("lost", advertised(&proxy, 2));
        }
        client.send("marker", advertised(&proxy, 2));
        assert_eq!(nodes[1].receive().0, "marker");
        assert_eq!(proxy.stats().quality_dropped, 10);
        // The other direction has its own quality.
        nodes[1].send("two to one", advertised(&proxy, 1));
        assert_eq!(nodes[0].receive().0, "two to one");

        let doubled = LinkQuality {
            duplicate_probability: 1.0,
            ..LinkQuality::PERFECT
        };
        proxy.set_link_quality(1, 2, doubled).expect("quality");
        nodes[0].send("twice", advertised(&proxy, 2));
        assert_eq!(nodes[1].receive().0, "twice");
        assert_eq!(nodes[1].receive().0, "twice");

        let delay = Duration::from_millis(150);
        let slow = LinkQuality {
            delay,
            ..LinkQuality::PERFECT
        };
        proxy.set_link_quality(1, 2, slow).expect("quality");
        let sent = now();
        nodes[0].send("late", advertised(&proxy, 2));
        client.send("overtakes", advertised(&proxy, 2));
        assert_eq!(nodes[1].receive().0, "overtakes");
        assert_eq!(
            nodes[1].receive(),
            ("late".to_string(), advertised(&proxy, 1))
        );
        assert!(now().duration_since(sent) >= delay);

        proxy
            .set_link_quality(1, 2, LinkQuality::PERFECT)
            .expect("quality");
        nodes[0].send("prompt", advertised(&proxy, 2));
        assert_eq!(nodes[1].receive().0, "prompt");

        let impossible = LinkQuality {
            drop_probability: 1.5,
            ..LinkQuality::PERFECT
        };
        assert!(matches!(
            proxy.set_link_quality(1, 2, impossible),
            Err(NetError::BadLink { .. })
        ));
        assert!(matches!(
            proxy.set_link_quality(1, 1, LinkQuality::PERFECT),
            Err(NetError::BadLink { .. })
        ));
    }

    #[test]
    fn a_partial_drop_probability_is_seeded() {
        let lossy = LinkQuality {
            drop_probability: 0.5,
            ..LinkQuality::PERFECT
        };
        let run = |seed| {
            let config = ProxyConfig {
                seed,
                ..ProxyConfig::default()
            };
            let (mut proxy, nodes) = proxy_with_nodes(config, 2);
            let client = Endpoint::client();
            proxy.set_link_quality(1, 2, lossy).expect("quality");
            for index in 0..64 {
                nodes[0].send(&index.to_string(), advertised(&proxy, 2));
            }
            client.send("end", advertised(&proxy, 2));
            let mut delivered = Vec::new();
            loop {
                let (text, _) = nodes[1].receive();
                if text == "end" {
                    return delivered;
                }
                delivered.push(text);
            }
        };
        let first = run(7);
        assert!(
            (8..56).contains(&first.len()),
            "about half of 64: {}",
            first.len()
        );
        assert_eq!(run(7), first);
        assert_ne!(run(8), first);
    }

    #[test]
    fn the_kernel_socket_table_shows_bound_ports() {
        let socket = Endpoint::client();
        let in_use = udp_ports_in_use().expect("Linux has /proc/net/udp");
        assert!(in_use.contains(&socket.address().port()));
    }

    #[test]
    fn node_ids_are_checked_and_listen_ports_differ() {
        let mut proxy = ProxyNetwork::start(ProxyConfig::default()).expect("the proxy starts");
        assert!(matches!(
            proxy.add_node(0),
            Err(NetError::BadNode { id: 0, .. })
        ));
        let ports: BTreeSet<u16> = (1..=12)
            .map(|id| proxy.add_node(id).expect("a node").listen.port())
            .collect();
        assert_eq!(ports.len(), 12);
        assert!(matches!(
            proxy.add_node(5),
            Err(NetError::BadNode { id: 5, .. })
        ));
        if let Some((low, _)) = ephemeral_port_range().filter(|&(low, _)| low > 10_100) {
            assert!(ports.iter().all(|&port| port < low), "{ports:?}");
        }
    }
}
