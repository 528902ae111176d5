//! The thread runtime: what turns the sans-IO core into a running node.
//!
//! Per node, four threads and one inbox:
//!
//! ```text
//!  client ──UDP──▶ [net thread: balsa-net]──inbox──▶ [consensus thread: core + state machine]
//!                        ▲                                │ persists (with then_send)
//!                        │ messages (sent from the        ▼
//!                        │ consensus thread directly) [wal thread: append, fdatasync, ack]
//!                        └── then_send, after the sync ──┤
//!  [timer thread] ──Tick──▶ inbox ◀── Persisted ─────────┘
//!        ▲                          │
//!        └──── next deadline ───────┘ (from the consensus thread, after a turn)
//! ```
//!
//! The timer thread sends a `Tick` only when something is due (a heartbeat, an election
//! deadline, a retry): the consensus thread counts ticks by the clock, delivers those that
//! ended before each event, and tells the timer when the next one that can matter ends
//! ([`raft::Raft::ticks_until_due`], `timer.rs`). An idle node wakes a few times a second.
//!
//! The runtime is the only part of Balsa that spawns threads (the transport's one event-loop
//! thread aside), reads the clock (the timer, and the consensus thread's tick count) and touches
//! files (through `balsa-wal`).
//!
//! Before any thread starts, [`Node::start`] settles which cluster and which node the data
//! directory belongs to (its `IDENTITY` file, [`identity`]; the decision, and asking the members
//! when joining, in `resolve.rs`): the cluster id every datagram carries comes from there.
//! [`restore`] builds a new node's data directory from a snapshot (`balsa restore`).
//!
//! Invariants: every thread a `Node` starts is joined by `shutdown` (or drop); a storage failure
//! or a panic in the consensus thread stops the node with the reason, never leaving it
//! half-alive; a call on a stopped node fails with `ShuttingDown` (or the reason it stopped); a
//! node's transport starts only once its identity is durable in its data directory (its socket
//! is bound before anything is written there: `datadir.rs`).
//!
//! Stopping: [`Node::shutdown`] stops at once; [`Node::stop_gracefully`] first hands leadership
//! to the most up-to-date voter ([`raft::Raft::hand_off_target`]) and waits, bounded, until
//! another node leads.

mod boot;
mod consensus;
mod datadir;
mod error;
pub mod identity;
mod members;
mod resolve;
pub mod restore;
mod snapshots;
mod storage;
mod throttle;
mod timer;
pub mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded};

use balsa_net::{Inbound, Transport};
use balsa_wal::Wal;

use self::consensus::{Consensus, OnTheWire, Stop};
use self::wire::Wire;
use crate::metrics::{ConsensusMetrics, Metrics, StorageMetrics};
use crate::raft::membership::{Membership, Step};
use crate::raft::{self, NodeId, Raft, Restored, Role};
use crate::replica::storage::StorageDone;
use crate::state_machine::StateMachine;

pub use self::consensus::role_name;
pub use self::error::{
    Error, Failure, NodeConfigError, NodeThread, SharedError, SharedWalError, StartError,
    StorageError,
};
pub use self::identity::{Identity, IdentityError};

/// Events queued for the consensus thread.
#[derive(Debug)]
pub enum Event {
    /// The timer's wake-up: a tick that can matter has ended (the clock counts which,
    /// `timer.rs`).
    Tick,
    /// A datagram arrived and decoded.
    Net(Inbound<Wire>),
    /// The WAL thread finished some work.
    Storage(StorageDone),
    /// The WAL failed; the node must stop.
    StorageFailed(StorageError),
    /// A call from the embedding API.
    Api(ApiCall),
    /// Stop.
    Shutdown,
}

impl From<Inbound<Wire>> for Event {
    fn from(inbound: Inbound<Wire>) -> Event {
        Event::Net(inbound)
    }
}

/// A call from the embedding API, with where to answer.
#[derive(Debug)]
pub enum ApiCall {
    /// Replicate and apply a command.
    Propose {
        /// The command.
        data: Vec<u8>,
        /// Where the state machine's answer goes.
        reply: Sender<Result<Vec<u8>, Error>>,
    },
    /// A linearizable read.
    Read {
        /// The query.
        query: Vec<u8>,
        /// Where the answer goes.
        reply: Sender<Result<Vec<u8>, Error>>,
    },
    /// The node's status.
    Status {
        /// Where it goes.
        reply: Sender<NodeStatus>,
    },
    /// Hand leadership to another node.
    Transfer {
        /// The node.
        to: NodeId,
        /// Whether the transfer started.
        reply: Sender<Result<(), Error>>,
    },
    /// If this node leads, hand leadership to the voter the core picks for a node about to
    /// stop ([`raft::Raft::hand_off_target`]).
    HandOff {
        /// The node the transfer goes to; `None` when this node does not lead or has no other
        /// voter.
        reply: Sender<Option<NodeId>>,
    },
    /// Change the cluster's membership (leader only).
    ChangeMembership {
        /// The change, as one joint change.
        steps: Vec<Step>,
        /// The new configuration ([`Membership::encode`]), or why not.
        reply: Sender<Result<Vec<u8>, Error>>,
    },
    /// The configuration in force at this node.
    Members {
        /// It, or `None` while this node knows none (it joined and no leader reached it yet).
        reply: Sender<Option<Membership>>,
    },
    /// What the consensus thread counts, for [`Node::metrics`].
    Metrics {
        /// Where it goes.
        reply: Sender<ConsensusMetrics>,
    },
}

/// A node's state, from [`Node::status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// The node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
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
    /// The last index of the newest snapshot saved or installed (0: none).
    pub snapshot_index: u64,
    /// The first index still in the log.
    pub first_index: u64,
    /// A snapshot being received from the leader: its index and the bytes received so far.
    pub receiving_snapshot: Option<(u64, u64)>,
}

/// How a node is set up.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node.
    pub id: NodeId,
    /// Every member and its address, this node included: the cluster's configuration when it
    /// is new, and with [`NodeConfig::join`] the members to ask for the cluster's id and to hear
    /// from at first. Once the log holds a configuration, that one is in force and this only
    /// seeds the peer table. Until then, a node that bootstrapped its cluster runs with the
    /// members recorded in its data directory at bootstrap, whatever this says later (a
    /// difference is logged).
    pub members: Vec<(NodeId, SocketAddr)>,
    /// Mixed into the cluster id a node derives when it bootstraps a cluster (with the sorted
    /// members), so that two clusters of the same members, one after the other, do not take
    /// each other's datagrams. Every bootstrapping member must be given the same token. Read
    /// only at bootstrap (and when adopting a directory of an earlier version): afterwards the
    /// data directory's `IDENTITY` says the cluster id. Default empty.
    pub cluster_token: String,
    /// Join a running cluster rather than bootstrap one. On a data directory without an
    /// identity, the node asks the other members for the cluster's id (for up to
    /// `join_timeout`) and records it, marked as joined; while its log holds no state it then
    /// starts with no configuration (at every start, `join` or not), and is a member only once
    /// a change adds it ([`Node::change_membership`]). A node that lost its data directory
    /// comes back this way under a new id, replacing the old one. With an identity, the
    /// members are asked too, and one reporting another cluster's id is refused; if none
    /// answers, the node starts as its directory says. On a directory with an identity or log
    /// state, `join` only checks the cluster's id: the configuration comes from the log, or the
    /// members recorded at bootstrap. Default false.
    pub join: bool,
    /// How long a joining node asks the members for the cluster's id. Default 10 s.
    pub join_timeout: Duration,
    /// The address to bind the node's socket to, when it is not the node's own address in
    /// `members`. That one stays the node's *advertised* address: the one peers send to and
    /// believe its messages from, and clients are hinted at; a relay in between (a UDP proxy
    /// injecting faults) forwards it to this one, and forwards the node's datagrams on so that
    /// they arrive from the advertised address. Nothing compares the two. Default `None`: bind
    /// the advertised address.
    pub listen: Option<SocketAddr>,
    /// Where the write-ahead log lives (locked while the node runs).
    pub data_dir: PathBuf,
    /// The length of a tick, the unit the core counts heartbeats and timeouts in. Default
    /// 10 ms. Nothing ticks while nothing is due: the timer wakes the node at the end of the
    /// tick the core says can matter (`timer.rs`), not every tick.
    pub tick: Duration,
    /// Heartbeat period in ticks. Default 5.
    pub heartbeat_ticks: u32,
    /// Election timeout range in ticks, `[min, max)`. Default [15, 30).
    pub election_ticks: (u32, u32),
    /// The largest datagram. Default 65,000.
    pub datagram_limit: usize,
    /// Sync the WAL before acknowledging (default). `false` is unsafe: a power loss can lose
    /// acknowledged writes; it exists to measure what the threads and the network cost alone.
    pub sync: bool,
    /// Snapshot the state machine once this many entries were applied since the last
    /// snapshot. Default 100,000.
    pub snapshot_entries: u64,
    /// … or this many bytes of entries. Default 64 MiB.
    pub snapshot_bytes: u64,
    /// Either threshold waits until the bytes of entries applied since the last snapshot are
    /// at least this many times its size (the thesis' expansion factor, §5.1.3), so that a
    /// large state is not written again every threshold: snapshots write at most
    /// `1 + 1 / factor` bytes per byte of log, and the log holds up to `factor` times the
    /// state. 0: no such wait. Default 1.
    pub snapshot_expansion: u64,
    /// Entries kept in the log behind a snapshot, so a follower slightly behind catches up from
    /// the log rather than by a snapshot. Default 5,000.
    pub snapshot_trailing_entries: u64,
    /// The WAL's options.
    pub wal: balsa_wal::Options,
    /// What the node seals its datagrams with: a peer ring for member traffic and a client
    /// ring for client traffic (`balsa_net::Keys::node`), or none at all
    /// (`balsa_net::Keys::insecure`: plaintext, for a network where everyone who can send a
    /// datagram is trusted). Default none: the `balsa serve` command refuses to start so unless
    /// told `--insecure`; an embedder decides. See ARCHITECTURE.md, "Sealed datagrams".
    pub keys: balsa_net::Keys,
}

/// The file an earlier version's `--rejoin` left in a data directory: its node never votes
/// again. Such a directory is refused at a start ([`NodeConfigError::RejoinedWithoutState`]):
/// that node must be replaced under a new id.
pub const REJOINED_MARKER: &str = "REJOINED";

impl NodeConfig {
    /// Node `id` of the cluster `members`, storing its log in `data_dir`, with the defaults.
    pub fn new(id: NodeId, members: Vec<(NodeId, SocketAddr)>, data_dir: PathBuf) -> NodeConfig {
        // The core's defaults, so that each is written once (`raft::Config::new`).
        let core = raft::Config::new(id, vec![id]);
        NodeConfig {
            id,
            members,
            cluster_token: String::new(),
            join: false,
            join_timeout: Duration::from_secs(10),
            listen: None,
            data_dir,
            tick: Duration::from_millis(10),
            heartbeat_ticks: core.heartbeat_ticks,
            election_ticks: core.election_ticks,
            datagram_limit: core.max_message_bytes,
            sync: true,
            snapshot_entries: 100_000,
            snapshot_bytes: 64 << 20,
            snapshot_expansion: 1,
            snapshot_trailing_entries: core.snapshot_trailing_entries,
            wal: balsa_wal::Options::default(),
            keys: balsa_net::Keys::insecure(),
        }
    }

    /// What is wrong with this configuration, if anything.
    pub fn validate(&self) -> Result<(), NodeConfigError> {
        let mut ids: Vec<NodeId> = self.members.iter().map(|(id, _)| *id).collect();
        let mut addresses: Vec<SocketAddr> = self.members.iter().map(|(_, a)| *a).collect();
        ids.sort_unstable();
        addresses.sort_unstable();
        if ids.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(NodeConfigError::DuplicateIds {
                members: self.members.clone(),
            });
        }
        if addresses.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(NodeConfigError::DuplicateAddresses {
                members: self.members.clone(),
            });
        }
        if !ids.contains(&self.id) {
            return Err(NodeConfigError::NotAMember { id: self.id, ids });
        }
        if self.tick.is_zero() {
            return Err(NodeConfigError::ZeroTick);
        }
        if self.snapshot_entries == 0 || self.snapshot_bytes == 0 {
            return Err(NodeConfigError::ZeroSnapshotThreshold {
                entries: self.snapshot_entries,
                bytes: self.snapshot_bytes,
            });
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(NodeConfigError::EmptyDataDir);
        }
        if self.join_timeout.is_zero() {
            return Err(NodeConfigError::ZeroJoinTimeout);
        }
        // Checked here too, so that a bad WAL option is a configuration error, not a failed start.
        self.wal
            .validate()
            .map_err(|error| NodeConfigError::Wal(error.into()))?;
        self.raft_config().validate().map_err(NodeConfigError::Core)
    }

    fn raft_config(&self) -> raft::Config {
        let mut config =
            raft::Config::new(self.id, self.members.iter().map(|(id, _)| *id).collect());
        config.heartbeat_ticks = self.heartbeat_ticks;
        config.election_ticks = self.election_ticks;
        config.set_max_message_bytes(self.datagram_limit);
        config.snapshot_trailing_entries = self.snapshot_trailing_entries;
        config.seed = jitter_seed(self.id);
        config.addresses = self
            .members
            .iter()
            .map(|(id, address)| (*id, members::address_bytes(*address)))
            .collect();
        config.joining = self.join;
        config
    }

    /// The node's own address in `members`: the one it advertises.
    fn address(&self) -> SocketAddr {
        let own = self.members.iter().find(|(id, _)| *id == self.id);
        own.map(|(_, address)| *address)
            .expect("validate checked the node is a member")
    }
}

/// Refuses a data directory an earlier version's `--rejoin` marked: its node forgot the votes
/// and acknowledgements Raft's safety rests on and may never vote again, so it cannot simply
/// run on; the cluster must replace it under a new id.
fn refuse_rejoined(config: &NodeConfig) -> Result<(), Error> {
    if config.data_dir.join(REJOINED_MARKER).exists() {
        return Err(Error::Config(NodeConfigError::RejoinedWithoutState {
            id: config.id,
            dir: config.data_dir.clone(),
        }));
    }
    Ok(())
}

/// A seed for the election jitter that differs between runs, so nodes restarted together do
/// not keep timing out together.
#[allow(
    clippy::disallowed_methods,
    reason = "the runtime may read the clock; the core may not"
)]
fn jitter_seed(id: NodeId) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    id.rotate_left(17) ^ u64::from(nanos)
}

/// A membership change under way, from [`Node::change_membership_async`].
#[derive(Debug)]
pub struct MembershipChange {
    answer: Receiver<Result<Vec<u8>, Error>>,
    /// The node's: disconnects when its consensus thread ends.
    stopped: Receiver<()>,
}

impl MembershipChange {
    /// Waits up to `timeout` for the change to complete; returns the new configuration, or why
    /// not (as [`Node::change_membership`]). A timeout leaves the outcome unknown.
    pub fn wait(&self, timeout: Duration) -> Result<Membership, Error> {
        let encoded = await_answer(&self.answer, &self.stopped, Some(timeout))??;
        Membership::decode(&encoded)
            .map_err(|source| Error::Failed(Failure::UndecodableConfiguration { source }))
    }
}

/// What [`Node::stop_gracefully`] did with leadership before the node stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandOff {
    /// The node did not lead, or led no other voter: there was nothing to hand over.
    NotLeading,
    /// Another node leads: `leader`, usually `to`, the node leadership was handed to (another
    /// may win the election the transfer starts).
    TakenOver {
        /// The node the transfer went to.
        to: NodeId,
        /// The node this one last knew leading.
        leader: NodeId,
    },
    /// No other node was seen leading before the timeout (`to` may be down, or still catching
    /// up); the node stopped all the same, and the cluster elects a leader after an election
    /// timeout.
    NotTakenOver {
        /// The node the transfer went to.
        to: NodeId,
    },
}

/// A running node. See the crate documentation for a tutorial.
pub struct Node {
    id: NodeId,
    identity: Identity,
    address: SocketAddr,
    inbox: Sender<Event>,
    consensus: Option<JoinHandle<Stop>>,
    storage: Option<JoinHandle<()>>,
    timer: Option<(JoinHandle<()>, Sender<()>)>,
    /// Shared with the consensus thread (which keeps its peer table); shut down here once that
    /// thread has ended.
    transport: Option<Arc<Transport<Wire>>>,
    /// Disconnects when the consensus thread ends (see `start`).
    stopped: Receiver<()>,
    /// What the WAL thread counts.
    storage_metrics: Arc<StorageMetrics>,
}

/// Reads a node's [`Metrics`] from any thread ([`Node::metrics_reader`]). It does not keep the
/// node running: once the node stops, [`MetricsReader::read`] says so.
#[derive(Clone, Debug)]
pub struct MetricsReader {
    inbox: Sender<Event>,
    stopped: Receiver<()>,
    storage: Arc<StorageMetrics>,
    net: Option<Arc<balsa_net::Counters>>,
}

impl MetricsReader {
    /// The node's metrics now: the consensus thread's numbers (one call, like
    /// [`Node::status`]), the WAL thread's and the transport's (read from their atomics).
    ///
    /// # Errors
    /// [`Error::ShuttingDown`] once the node stopped, whatever the reason.
    pub fn read(&self) -> Result<Metrics, Error> {
        let (reply, answer) = bounded(1);
        self.inbox
            .send(Event::Api(ApiCall::Metrics { reply }))
            .map_err(|_| Error::ShuttingDown)?;
        let ConsensusMetrics {
            status,
            proposals_pending,
            counts,
            client_sessions,
            peer_round_trip,
            ticks,
            timer_wakeups,
        } = await_answer(&answer, &self.stopped, None)?;
        Ok(Metrics {
            id: status.id,
            role: status.role,
            term: status.term,
            leader: status.leader,
            commit_index: status.commit_index,
            applied_index: status.applied_index,
            last_index: status.last_index,
            snapshot_index: status.snapshot_index,
            proposals_pending,
            counts,
            client_sessions,
            wal_fsync: self.storage.fsync.histogram(),
            wal_bytes_written: self.storage.bytes_written.load(Ordering::Relaxed),
            snapshot_save: self.storage.snapshot_save.histogram(),
            peer_round_trip,
            net: self
                .net
                .as_deref()
                .map(balsa_net::Counters::values)
                .unwrap_or_default(),
            ticks,
            timer_wakeups,
        })
    }
}

/// Events waiting in the inbox at most before the net thread drops datagrams (and counts them)
/// rather than let it grow (`balsa_net::Config::inbox_limit`); the node's other threads and the
/// API are bounded by what they wait for.
const INBOX_CAPACITY: usize = 1 << 16;

impl Node {
    /// Binds its socket, recovers the node's log from `config.data_dir`, settles its identity
    /// (reading the directory's `IDENTITY`, or bootstrapping, adopting or joining: see
    /// [`NodeConfig::join`]), starts its threads and returns once it runs.
    ///
    /// A start that fails leaves the data directory as it found it: the socket is bound before
    /// anything is written, and a directory that held no node's state (new, or absent) is put
    /// back when a later step fails (see ARCHITECTURE.md, "Starting and stopping").
    ///
    /// # Errors
    /// [`Error::Config`] for a configuration that cannot work, including a data directory that
    /// belongs to another node or (when joining) another cluster, or a path that is not a
    /// directory; [`Error::DataDirInUse`]; [`Error::Identity`] for an identity file that cannot
    /// be read or written; [`Error::NoMemberAnswered`] for a join no member answered;
    /// [`Error::NoSpace`] when the file system has no room for the WAL's first segment;
    /// [`Error::Start`] for the rest, with a [`StartError`] that says which (the address taken
    /// among them: [`StartError::Bind`]).
    pub fn start<S: StateMachine>(config: NodeConfig, state_machine: S) -> Result<Node, Error> {
        config.validate()?;
        // Nothing is written before the address is bound: a start that fails leaves the data
        // directory as it found it (`datadir`).
        let found = datadir::Found::survey(&config.data_dir)?;
        let bind = config.listen.unwrap_or_else(|| config.address());
        let socket = balsa_net::bind(bind).map_err(|error| StartError::Bind {
            source: error.into(),
        })?;
        Node::start_on(config, state_machine, socket).inspect_err(|error| {
            // A directory in use is another process's: it is not this start's to put back.
            if !matches!(error, Error::DataDirInUse { .. }) {
                found.restore();
            }
        })
    }

    /// [`Node::start`] once the socket is bound: everything that writes to the data directory.
    fn start_on<S: StateMachine>(
        mut config: NodeConfig,
        mut state_machine: S,
        socket: std::net::UdpSocket,
    ) -> Result<Node, Error> {
        let segment_bytes = config.wal.segment_bytes;
        let (wal, recovered) =
            Wal::open(&config.data_dir, config.wal.clone()).map_err(|error| match error {
                balsa_wal::Error::Locked { dir } => Error::DataDirInUse { dir },
                balsa_wal::Error::Io { ref source, .. }
                    if source.kind() == std::io::ErrorKind::StorageFull =>
                {
                    Error::NoSpace {
                        dir: config.data_dir.clone(),
                        segment_bytes,
                        source: error.into(),
                    }
                }
                other => Error::Start(StartError::OpenWal {
                    source: other.into(),
                }),
            })?;
        let fresh = recovered.snapshot.is_none()
            && recovered.entries.is_empty()
            && recovered.hard_state == balsa_wal::HardState::default();
        // Before the identity: such a directory has none, and must not be adopted.
        refuse_rejoined(&config)?;
        // Under the WAL's lock, so no other process writes the identity meanwhile.
        let recorded = Identity::load(&config.data_dir)?;
        let identity = resolve::resolve(&config, recorded, fresh, resolve::ask_members)?;
        // The bootstrap voters and addresses the core starts with, in force until the log (or a
        // snapshot) holds a configuration: the members recorded at bootstrap for a node that
        // bootstrapped its cluster, else `config.members`. `--cluster`'s list still seeds the
        // peer table (`given`), so a node that was down across a change hears from its leader.
        let bootstrap_members = resolve::membership(&config, &identity);
        let given = std::mem::replace(&mut config.members, bootstrap_members);
        config.validate()?;
        let joining = resolve::joining(&config, &identity, fresh);
        let mut snapshot_base = (0, 0);
        let mut snapshot_data = None;
        if let Some(meta) = recovered.snapshot {
            let (_, data) = wal
                .load_snapshot()
                .map_err(|error| StartError::LoadSnapshot {
                    source: error.into(),
                })?
                .ok_or(StartError::SnapshotVanished)?;
            crate::replica::restore_from_snapshot(&mut state_machine, &data).map_err(|source| {
                StartError::RestoreSnapshot {
                    index: meta.index,
                    source,
                }
            })?;
            snapshot_base = (meta.index, meta.term);
            snapshot_data = Some(Arc::new(data));
        }
        let entries = recovered
            .entries
            .into_iter()
            .map(storage::entry_from_wal)
            .collect::<Result<Vec<_>, _>>()?;
        let hard_state = raft::HardState {
            term: recovered.hard_state.term,
            vote: recovered.hard_state.vote,
            commit: recovered.hard_state.commit,
        };
        let restored = Restored {
            hard_state,
            snapshot: snapshot_base,
            entries,
            snapshot_data,
        };
        let mut raft_config = config.raft_config();
        raft_config.joining = joining;
        let bootstrap = raft_config.bootstrap_membership();
        let raft = Raft::new(raft_config, restored).map_err(NodeConfigError::Core)?;
        if bootstrap.is_some() && raft.membership() == bootstrap.as_ref() {
            resolve::warn_if_bootstrap_differs(&given, &config, &identity);
        }

        // Unbounded, with the net thread's limit (`inbox_limit`): a bounded channel of this
        // capacity allocates and touches every slot up front (about 10 MB), an unbounded one
        // only the blocks its events fill, freed as they are taken.
        let (inbox, events) = crossbeam_channel::unbounded();
        let bind = config.listen.unwrap_or_else(|| config.address());
        let mut net_config = balsa_net::Config::new(config.id, identity.cluster_id, bind);
        net_config.peers = members::initial_peers(config.id, &given, raft.membership());
        net_config.datagram_limit = config.datagram_limit;
        net_config.inbox_limit = Some(INBOX_CAPACITY);
        net_config.keys = config.keys.clone();
        net_config.boot_id = boot::next_boot_id(&config.data_dir)?;
        let transport = Arc::new(
            Transport::start_on(net_config, socket, inbox.clone()).map_err(|error| {
                StartError::Transport {
                    source: error.into(),
                }
            })?,
        );
        let address = transport.local_addr();
        // Bound where it is advertised, the socket's own address (with the port the OS chose,
        // if the advertised one was 0).
        let advertised = match config.listen {
            Some(_) => config.address(),
            None => address,
        };
        if config.listen.is_some() {
            log::info!(
                "node {} listens on {address}, advertised as {advertised}",
                config.id
            );
        }
        let (storage_ops, storage_rx) = crossbeam_channel::unbounded();
        let (timer_alarms, alarms) = crossbeam_channel::unbounded();
        let clock = timer::Clock::new(config.tick, throttle::now(), timer_alarms);
        let consensus = Consensus::new(
            raft,
            state_machine,
            Arc::clone(&transport),
            storage_ops,
            OnTheWire {
                cluster_id: identity.cluster_id,
                advertised,
            },
            snapshot_base,
            crate::replica::SnapshotPolicy {
                entries: config.snapshot_entries,
                bytes: config.snapshot_bytes,
                expansion: config.snapshot_expansion,
            },
        );

        let storage_inbox = inbox.clone();
        let storage_outbox = transport.outbox();
        let sync = config.sync;
        let storage_metrics = Arc::new(StorageMetrics::default());
        let wal_metrics = Arc::clone(&storage_metrics);
        let storage = spawn(format!("balsa-wal-{}", config.id), move || {
            storage::run(
                wal,
                storage_rx,
                storage_inbox,
                storage_outbox,
                sync,
                &wal_metrics,
            );
        })?;
        let (stop_timer, timer_stop) = bounded(0);
        let timer_inbox = inbox.clone();
        let timer = spawn(format!("balsa-timer-{}", config.id), move || {
            timer::run(&alarms, &timer_inbox, &timer_stop);
        })?;
        // Dropped when the consensus thread ends, however it ends: an API call waiting for an
        // answer learns the node stopped (a call left in the inbox is never answered, and its
        // reply sender, held in the channel, never disconnects).
        let (alive, stopped) = bounded::<()>(0);
        let consensus = spawn(format!("balsa-consensus-{}", config.id), move || {
            let _alive = alive;
            consensus.run(&events, clock)
        })?;
        Ok(Node {
            id: config.id,
            identity,
            address,
            inbox,
            consensus: Some(consensus),
            storage: Some(storage),
            timer: Some((timer, stop_timer)),
            transport: Some(transport),
            stopped,
            storage_metrics,
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The address its socket is bound to ([`NodeConfig::listen`], else its own address in
    /// [`NodeConfig::members`]).
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// The identity the node runs with, as its data directory records it: its cluster's id,
    /// its own id, and the members its cluster was bootstrapped with (`None` if it joined).
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Its cluster's id, which every datagram it sends carries.
    pub fn cluster_id(&self) -> u64 {
        self.identity.cluster_id
    }

    /// Proposes a command; the receiver gets the state machine's answer once it is applied, or
    /// why not. Only the leader takes proposals ([`Error::NotLeader`] names the leader).
    pub fn propose_async(
        &self,
        command: Vec<u8>,
    ) -> Result<Receiver<Result<Vec<u8>, Error>>, Error> {
        let (reply, answer) = bounded(1);
        self.call(ApiCall::Propose {
            data: command,
            reply,
        })?;
        Ok(answer)
    }

    /// Proposes a command and waits up to `timeout` for the state machine's answer. A timeout
    /// leaves the outcome unknown: the command may still be applied.
    pub fn propose(&self, command: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, Error> {
        await_answer(&self.propose_async(command)?, &self.stopped, Some(timeout))?
    }

    /// A linearizable read: the answer reflects every command applied before the call.
    pub fn read(&self, query: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, Error> {
        let (reply, answer) = bounded(1);
        self.call(ApiCall::Read { query, reply })?;
        await_answer(&answer, &self.stopped, Some(timeout))?
    }

    /// The node's role, term, leader and indexes.
    pub fn status(&self) -> Result<NodeStatus, Error> {
        let (reply, answer) = bounded(1);
        self.call(ApiCall::Status { reply })?;
        await_answer(&answer, &self.stopped, None)
    }

    /// Everything the node counts, at one moment: role, term and indexes, proposals, reads,
    /// leader changes, snapshots, the WAL's syncs and bytes, the peers' round trips and the
    /// transport's counters (`crate::metrics`). As cheap as [`Node::status`].
    ///
    /// # Errors
    /// [`Error::ShuttingDown`] once the node stopped (by a shutdown, a removal or a failure,
    /// a failed WAL among them): a node that answers is one whose storage works.
    pub fn metrics(&self) -> Result<Metrics, Error> {
        self.metrics_reader().read()
    }

    /// A handle another thread can keep to read this node's [`Metrics`] (an HTTP endpoint, say)
    /// while this one waits in [`Node::join`].
    pub fn metrics_reader(&self) -> MetricsReader {
        MetricsReader {
            inbox: self.inbox.clone(),
            stopped: self.stopped.clone(),
            storage: Arc::clone(&self.storage_metrics),
            net: self
                .transport
                .as_deref()
                .map(|transport| Arc::clone(transport.counters())),
        }
    }

    /// The transport's fault injection (drop, delay, partition), for tests of the node under a
    /// hostile network. Nothing is injected unless asked.
    pub fn net_faults(&self) -> Option<&balsa_net::Faults> {
        self.transport.as_deref().map(Transport::faults)
    }

    /// Waits up to `timeout` until this node knows a leader (itself included); returns it.
    #[allow(clippy::disallowed_methods, reason = "the runtime may read the clock")]
    pub fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId, Error> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(leader) = self.status()?.leader {
                return Ok(leader);
            }
            if std::time::Instant::now() >= deadline {
                return Err(Error::Timeout);
            }
            // A tick is the finest grain at which the answer can change.
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Asks this node, if it leads, to hand leadership to `to`.
    pub fn transfer_leader(&self, to: NodeId) -> Result<(), Error> {
        let (reply, answer) = bounded(1);
        self.call(ApiCall::Transfer { to, reply })?;
        await_answer(&answer, &self.stopped, None)?
    }

    /// Changes the cluster's membership by `steps`, applied as one joint change, and waits up to
    /// `timeout` for it to complete; returns the new configuration. Only the leader takes a
    /// change ([`Error::NotLeader`] names the leader); one change at a time. A voter to add is
    /// added as a learner, caught up, then promoted, so a change can take seconds. A refusal
    /// is [`Error::Membership`] with the reason ([`raft::ChangeRefused`]); a timeout leaves the
    /// outcome unknown: read [`Node::members`] (on the leader) to find out.
    pub fn change_membership(
        &self,
        steps: Vec<Step>,
        timeout: Duration,
    ) -> Result<Membership, Error> {
        self.change_membership_async(steps)?.wait(timeout)
    }

    /// Starts the membership change [`Node::change_membership`] waits for, and returns at once;
    /// [`MembershipChange::wait`] gives its outcome.
    pub fn change_membership_async(&self, steps: Vec<Step>) -> Result<MembershipChange, Error> {
        let (reply, answer) = bounded(1);
        self.call(ApiCall::ChangeMembership { steps, reply })?;
        Ok(MembershipChange {
            answer,
            stopped: self.stopped.clone(),
        })
    }

    /// The configuration in force at this node (the newest in its log, committed or not).
    /// [`Error::NoConfiguration`] while it knows none: it joined and no leader has reached it.
    pub fn members(&self) -> Result<Membership, Error> {
        let (reply, answer) = bounded(1);
        self.call(ApiCall::Members { reply })?;
        await_answer(&answer, &self.stopped, None)?.ok_or(Error::NoConfiguration)
    }

    /// Stops every thread and waits for them. Returns why the node had stopped if it had
    /// stopped by itself (a storage failure).
    pub fn shutdown(mut self) -> Result<(), Error> {
        self.stop()
    }

    /// Stops the node as an operator's stop should (`balsa serve` on SIGTERM): a leader first
    /// hands leadership to the voter whose log is the most up to date (the transfer of thesis
    /// §3.10, to the target [`raft::Raft::hand_off_target`] picks) and waits, for at most
    /// `timeout`, until another node leads; then the node shuts down as
    /// [`Node::shutdown`] does, its WAL closed cleanly. The cluster has a leader again without
    /// waiting out an election timeout. A follower shuts down at once. About one maximum
    /// election timeout is a fitting `timeout`: the core gives a transfer up after a minimum
    /// one. While the transfer runs, the leader refuses proposals (naming the target as the
    /// leader to go to), so clients move on to the new leader.
    ///
    /// # Errors
    /// As [`Node::shutdown`]: why the node had stopped, if it had stopped by itself.
    pub fn stop_gracefully(self, timeout: Duration) -> Result<HandOff, Error> {
        let handed = self.hand_off(timeout);
        match &handed {
            HandOff::NotLeading => {}
            HandOff::TakenOver { leader, .. } => {
                log::info!("node {} handed leadership to node {leader}", self.id);
            }
            HandOff::NotTakenOver { to } => log::warn!(
                "node {to} did not take leadership over within {} ms; node {} stops all the same",
                timeout.as_millis(),
                self.id
            ),
        }
        self.shutdown().map(|()| handed)
    }

    /// The hand-off of [`Node::stop_gracefully`]: starts the transfer and waits, until the
    /// deadline, for another node to lead.
    #[allow(
        clippy::disallowed_methods,
        reason = "the runtime may read the clock: the hand-off is bounded in wall-clock time"
    )]
    fn hand_off(&self, timeout: Duration) -> HandOff {
        let deadline = std::time::Instant::now() + timeout;
        let (reply, answer) = bounded(1);
        if self.call(ApiCall::HandOff { reply }).is_err() {
            return HandOff::NotLeading;
        }
        let Ok(Some(to)) = await_answer(&answer, &self.stopped, None) else {
            return HandOff::NotLeading;
        };
        log::info!(
            "node {} hands leadership to node {to} before it stops",
            self.id
        );
        loop {
            match self.status() {
                Ok(status) => {
                    if let Some(leader) = status.leader.filter(|leader| *leader != self.id) {
                        return HandOff::TakenOver { to, leader };
                    }
                }
                // Stopped by itself meanwhile: `shutdown` says why.
                Err(_) => return HandOff::NotTakenOver { to },
            }
            if std::time::Instant::now() >= deadline {
                return HandOff::NotTakenOver { to };
            }
            // As `wait_for_leader`: a tick is the finest grain at which the answer changes.
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// A receiver that disconnects once the node has stopped, whatever the reason; nothing is
    /// ever sent on it. For a caller that waits for the node to stop and for something else at
    /// once (`crossbeam_channel::select!`: `balsa serve` waits so for a signal), then calls
    /// [`Node::join`], [`Node::shutdown`] or [`Node::stop_gracefully`].
    pub fn stopped(&self) -> Receiver<()> {
        self.stopped.clone()
    }

    /// Waits until the node stops by itself and says why: `Ok(())` when a committed
    /// configuration removed it from the cluster, else the failure (storage, a panic).
    pub fn join(mut self) -> Result<(), Error> {
        let result = self.join_consensus();
        let stopped = self.stop();
        result.and(stopped)
    }

    fn call(&self, call: ApiCall) -> Result<(), Error> {
        self.inbox
            .send(Event::Api(call))
            .map_err(|_| Error::ShuttingDown)
    }

    /// Waits for the consensus thread, if it was not waited for yet, and says why it stopped:
    /// `Ok` for a shutdown that was asked for.
    fn join_consensus(&mut self) -> Result<(), Error> {
        match self.consensus.take().map(JoinHandle::join) {
            Some(Ok(Stop::Shutdown | Stop::Removed)) | None => Ok(()),
            Some(Ok(Stop::Fatal(error))) => Err(error),
            Some(Err(_)) => Err(Error::Failed(Failure::Panicked {
                thread: NodeThread::Consensus,
            })),
        }
    }

    fn stop(&mut self) -> Result<(), Error> {
        let _ = self.inbox.send(Event::Shutdown);
        let mut result = self.join_consensus();
        if let Some(storage) = self.storage.take()
            && storage.join().is_err()
        {
            result = Err(Error::Failed(Failure::Panicked {
                thread: NodeThread::Wal,
            }));
        }
        if let Some((timer, stop)) = self.timer.take() {
            drop(stop);
            let _ = timer.join();
        }
        // The consensus thread has ended, so this is the transport's last handle; were it not,
        // dropping it leaves the net thread to the last handle's drop, which stops it too.
        if let Some(transport) = self.transport.take().and_then(|t| Arc::try_unwrap(t).ok())
            && let Err(error) = transport.shutdown()
        {
            log::warn!("stopping the transport: {error}");
        }
        result
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            log::error!("node {} stopped with an error: {error}", self.id);
        }
    }
}

/// Waits for an API call's answer (up to `timeout`, if given), or until the consensus thread
/// has ended, whichever comes first: a call it never took would otherwise wait forever. An
/// answer sent just before the end still wins.
fn await_answer<T>(
    answer: &Receiver<T>,
    stopped: &Receiver<()>,
    timeout: Option<Duration>,
) -> Result<T, Error> {
    let mut select = crossbeam_channel::Select::new();
    let answered = select.recv(answer);
    select.recv(stopped);
    let operation = match timeout {
        Some(timeout) => select.select_timeout(timeout).map_err(|_| Error::Timeout)?,
        None => select.select(),
    };
    if operation.index() == answered {
        return operation.recv(answer).map_err(|_| Error::ShuttingDown);
    }
    // `stopped` is never sent on: it disconnected.
    let _ = operation.recv(stopped);
    answer.try_recv().map_err(|_| Error::ShuttingDown)
}

/// Starts a named thread: the one place the runtime spawns.
#[allow(
    clippy::disallowed_methods,
    reason = "the runtime is where Balsa's threads start"
)]
fn spawn<T: Send + 'static>(
    name: String,
    body: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, Error> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(body)
        .map_err(|error| {
            Error::Start(StartError::Spawn {
                thread: name,
                source: error.into(),
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three_nodes() -> NodeConfig {
        let members = (1..=3u16)
            .map(|id| (u64::from(id), SocketAddr::from(([127, 0, 0, 1], 7000 + id))))
            .collect();
        NodeConfig::new(1, members, PathBuf::from("data"))
    }

    #[test]
    fn the_defaults_are_valid_and_the_cores() {
        let config = three_nodes();
        assert!(config.validate().is_ok());
        let core = raft::Config::new(1, vec![1]);
        assert_eq!(config.heartbeat_ticks, core.heartbeat_ticks);
        assert_eq!(config.election_ticks, core.election_ticks);
        assert_eq!(config.datagram_limit, core.max_message_bytes);
    }

    /// Each refusal: its variant and its whole message (`balsa serve` prints it after "bad
    /// configuration: ").
    #[test]
    fn validate_refuses_what_cannot_work() {
        let refused = |change: fn(&mut NodeConfig)| {
            let mut config = three_nodes();
            change(&mut config);
            config.validate().expect_err("refused")
        };
        let cases: [(NodeConfigError, &str); 11] = [
            (
                refused(|c| c.members[1].0 = 1),
                "duplicate node ids in [(1, 127.0.0.1:7001), (1, 127.0.0.1:7002), \
                 (3, 127.0.0.1:7003)]",
            ),
            (
                refused(|c| c.members[1].1 = c.members[0].1),
                "duplicate addresses in [(1, 127.0.0.1:7001), (2, 127.0.0.1:7001), \
                 (3, 127.0.0.1:7003)]",
            ),
            (
                refused(|c| c.id = 4),
                "node 4 is not in the cluster [1, 2, 3]",
            ),
            (
                refused(|c| c.tick = Duration::ZERO),
                "the tick must be longer than zero",
            ),
            (
                refused(|c| c.snapshot_entries = 0),
                "snapshot_entries and snapshot_bytes must be at least 1 (they are 0 and 67108864)",
            ),
            (
                refused(|c| c.data_dir = PathBuf::new()),
                "the data directory is empty (not a path)",
            ),
            (
                refused(|c| c.wal.segment_bytes = 1000),
                "WAL: invalid options: segment_bytes 1000",
            ),
            (
                refused(|c| c.election_ticks = (5, 30)),
                "need 0 < heartbeat ticks (5) < election ticks min (5) < max (30)",
            ),
            (
                refused(|c| c.election_ticks = (30, 30)),
                "need 0 < heartbeat ticks (5) < election ticks min (30) < max (30)",
            ),
            (
                refused(|c| c.heartbeat_ticks = 0),
                "need 0 < heartbeat ticks (0) < election ticks min (15) < max (30)",
            ),
            (
                refused(|c| c.join_timeout = Duration::ZERO),
                "the join timeout must be longer than zero",
            ),
        ];
        for (refusal, says) in &cases {
            assert!(refusal.to_string().starts_with(says), "{refusal}");
        }
        assert!(matches!(cases[0].0, NodeConfigError::DuplicateIds { .. }));
        assert!(matches!(
            cases[1].0,
            NodeConfigError::DuplicateAddresses { .. }
        ));
        assert_eq!(
            cases[2].0,
            NodeConfigError::NotAMember {
                id: 4,
                ids: vec![1, 2, 3]
            }
        );
        assert_eq!(cases[3].0, NodeConfigError::ZeroTick);
        assert!(matches!(
            cases[4].0,
            NodeConfigError::ZeroSnapshotThreshold { entries: 0, .. }
        ));
        assert_eq!(cases[5].0, NodeConfigError::EmptyDataDir);
        assert_eq!(cases[10].0, NodeConfigError::ZeroJoinTimeout);
        assert!(matches!(&cases[6].0, NodeConfigError::Wal(error)
            if matches!(error.wal(), balsa_wal::Error::InvalidOptions { .. })));
        assert_eq!(
            cases[7].0,
            NodeConfigError::Core(raft::ConfigError::TicksOutOfOrder {
                heartbeat: 5,
                min: 5,
                max: 30
            })
        );
        // A segment too large for the WAL's offsets is refused too.
        assert!(
            refused(|c| c.wal.segment_bytes = 1 << 32)
                .to_string()
                .contains("segment_bytes 4294967296")
        );
    }
}
