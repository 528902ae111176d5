//! What the embedding API reports: [`Error`], and the typed causes it carries — why a
//! configuration is refused ([`NodeConfigError`], including a data directory that belongs to
//! another node or cluster), why a node could not start ([`StartError`]), why storage failed
//! ([`StorageError`]), why a running node failed ([`Failure`]) and why the identity file cannot
//! be read ([`IdentityError`]).
//!
//! Each error's `Display` is one line that includes its cause's message (the CLI prints that
//! line and nothing else), and `source()` returns the cause itself, for programs that inspect
//! it (a `balsa_wal::Error` behind a storage failure or a start that could not open the log,
//! the `balsa_net::Error` behind an address that cannot be bound, the `io::Error` behind a file
//! that cannot be written, the core's `ConfigError` behind a refused configuration), as
//! `balsa_wal::Error::Io` does with its `io::Error`.
//!
//! `Error` is `Clone + Eq`: every waiter of a stopped node gets a copy of the reason. A
//! `balsa_wal::Error`, a `balsa_net::Error` or an `io::Error` is neither, so it is held shared
//! ([`SharedError`]; [`SharedWalError`] for the WAL's), and two are equal when they say the
//! same thing.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use balsa_wal::SnapshotMeta;

use super::identity::{IdentityError, cluster_id_text};
use crate::client::ClientError;
use crate::raft::membership::MembershipDecodeError;
use crate::raft::{self, NodeId};
use crate::state_machine::RestoreError;

/// What went wrong, as the embedding API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// This node does not lead; `leader` is the one it knows of, if any.
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
    },
    /// No answer in time: the command may or may not be applied (outcome unknown).
    Timeout,
    /// The command does not fit in one message.
    TooLarge {
        /// Its size.
        size: usize,
        /// The largest that fits.
        max: usize,
    },
    /// The entry was replaced by another leader's before it committed: it was not applied.
    Lost,
    /// The node is stopping or stopped.
    ShuttingDown,
    /// The node stopped because its storage failed.
    Storage(StorageError),
    /// The node stopped because its state machine cannot restore the snapshot it installed from
    /// the leader: storage now holds that snapshot as the node's state, and running on would
    /// diverge from the cluster.
    Restore {
        /// The snapshot's last index.
        index: u64,
        /// What the state machine said.
        source: RestoreError,
    },
    /// A membership change did not happen, or may not have (see the reason).
    Membership(raft::ChangeRefused),
    /// This node knows no configuration yet: it joined a running cluster and no leader has
    /// reached it.
    NoConfiguration,
    /// The node stopped because one of its threads died (a panic, or an end while the node
    /// still needed it), or a committed configuration does not decode; the failure says which.
    Failed(Failure),
    /// The configuration cannot work.
    Config(NodeConfigError),
    /// Another process (or another `Node` here) holds the data directory.
    DataDirInUse {
        /// The data directory.
        dir: PathBuf,
    },
    /// Starting failed (storage, network, or a thread that cannot be started); the cause says
    /// which, and is the error's `source()`.
    Start(StartError),
    /// The file system holding the data directory is full: the WAL could not write its first
    /// segment, which it fills with zeros up front. The data directory was left as it was.
    NoSpace {
        /// The data directory.
        dir: PathBuf,
        /// The segment size asked for ([`balsa_wal::Options::segment_bytes`]).
        segment_bytes: u64,
        /// The WAL's error, naming the file.
        source: SharedWalError,
    },
    /// The data directory's identity file cannot be read or written.
    Identity(IdentityError),
    /// A node joining a cluster asked the other members for the cluster's id, and none
    /// answered in time.
    NoMemberAnswered {
        /// The members asked.
        asked: Vec<SocketAddr>,
        /// How long the node asked.
        waited: Duration,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotLeader { leader: Some(id) } => write!(f, "not the leader; node {id} leads"),
            Error::NotLeader { leader: None } => write!(f, "no leader known; retry"),
            Error::Timeout => write!(f, "timed out; the outcome is unknown"),
            Error::TooLarge { size, max } => {
                write!(f, "command of {size} bytes is too large (at most {max})")
            }
            Error::Lost => write!(f, "the entry lost to a new leader's; it was not applied"),
            Error::ShuttingDown => write!(f, "the node is shutting down"),
            Error::Storage(error) => write!(f, "the node stopped: storage failed: {error}"),
            Error::Restore { index, source } => write!(
                f,
                "the node stopped: restoring the installed snapshot at {index}: {source}"
            ),
            Error::Failed(failure) => write!(f, "the node stopped: {failure}"),
            Error::Membership(refused) => write!(f, "membership change: {refused}"),
            Error::NoConfiguration => write!(
                f,
                "this node knows no configuration yet (it joined; no leader has reached it)"
            ),
            Error::Config(error) => write!(f, "bad configuration: {error}"),
            Error::DataDirInUse { dir } => {
                write!(
                    f,
                    "data directory {} is in use by another process",
                    dir.display()
                )
            }
            Error::Start(error) => write!(f, "cannot start: {error}"),
            Error::NoSpace {
                dir,
                segment_bytes,
                source,
            } => write!(
                f,
                "cannot start: no space left for a WAL segment of {segment_bytes} bytes in {} \
                 ({source}); free some space, or make the segments smaller (segment_bytes)",
                dir.display()
            ),
            Error::Identity(error) => write!(f, "{error}"),
            Error::NoMemberAnswered { asked, waited } => write!(
                f,
                "cannot join: no member of the cluster answered within {} ms (asked {})",
                waited.as_millis(),
                addresses(asked)
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Storage(error) => Some(error),
            Error::Restore { source, .. } => Some(source),
            Error::Config(error) => Some(error),
            Error::Identity(error) => Some(error),
            Error::Start(error) => Some(error),
            Error::Failed(failure) => Some(failure),
            Error::NoSpace { source, .. } => Some(source.wal()),
            Error::NotLeader { .. }
            | Error::Timeout
            | Error::TooLarge { .. }
            | Error::Lost
            | Error::ShuttingDown
            | Error::Membership(_)
            | Error::NoConfiguration
            | Error::DataDirInUse { .. }
            | Error::NoMemberAnswered { .. } => None,
        }
    }
}

impl From<StartError> for Error {
    fn from(error: StartError) -> Error {
        Error::Start(error)
    }
}

impl From<Failure> for Error {
    fn from(failure: Failure) -> Error {
        Error::Failed(failure)
    }
}

impl From<IdentityError> for Error {
    fn from(error: IdentityError) -> Error {
        Error::Identity(error)
    }
}

/// `A, B, C`.
fn addresses(list: &[SocketAddr]) -> String {
    list.iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl From<NodeConfigError> for Error {
    fn from(error: NodeConfigError) -> Error {
        Error::Config(error)
    }
}

/// Why [`NodeConfig::validate`](super::NodeConfig::validate) refuses a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeConfigError {
    /// Two members have the same id.
    DuplicateIds {
        /// The members.
        members: Vec<(NodeId, SocketAddr)>,
    },
    /// Two members have the same address.
    DuplicateAddresses {
        /// The members.
        members: Vec<(NodeId, SocketAddr)>,
    },
    /// This node is not a member.
    NotAMember {
        /// This node.
        id: NodeId,
        /// The members' ids, sorted.
        ids: Vec<NodeId>,
    },
    /// The timer's period is zero.
    ZeroTick,
    /// A snapshot threshold is zero (a snapshot after every entry, or every byte).
    ZeroSnapshotThreshold {
        /// Entries between snapshots.
        entries: u64,
        /// Bytes of entries between snapshots.
        bytes: u64,
    },
    /// The data directory is the empty path.
    EmptyDataDir,
    /// The WAL refuses its options.
    Wal(SharedWalError),
    /// The data directory holds the marker an earlier version's `--rejoin` left: that node
    /// lost its state once and must be replaced under a new id, not run on.
    RejoinedWithoutState {
        /// The node.
        id: NodeId,
        /// Its data directory.
        dir: PathBuf,
    },
    /// The core refuses what the node's settings make of its configuration (ticks, members,
    /// the datagram limit).
    Core(raft::ConfigError),
    /// The join timeout is zero: a joining node could ask nobody.
    ZeroJoinTimeout,
    /// The node is to join its cluster, but no other member is listed to ask for
    /// the cluster's id.
    NoMemberToAsk {
        /// This node.
        id: NodeId,
    },
    /// The data directory's identity names another node.
    WrongNode {
        /// The data directory.
        dir: PathBuf,
        /// The node its identity names.
        recorded: NodeId,
        /// The node it was started as.
        configured: NodeId,
    },
    /// The data directory belongs to another cluster than the one its members report.
    WrongCluster {
        /// The data directory.
        dir: PathBuf,
        /// The cluster its identity names.
        recorded: u64,
        /// The cluster the members report.
        learned: u64,
        /// The member whose answer said so.
        from: SocketAddr,
    },
    /// The members asked for the cluster's id do not agree on it: they are not one cluster.
    MembersDisagree {
        /// Each member that answered, and the id it reported.
        answers: Vec<(SocketAddr, u64)>,
    },
    /// The data directory's path names something that is not a directory (a file, say).
    DataDirNotADirectory {
        /// The path.
        dir: PathBuf,
    },
}

impl fmt::Display for NodeConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeConfigError::DuplicateIds { members } => {
                write!(f, "duplicate node ids in {members:?}")
            }
            NodeConfigError::DuplicateAddresses { members } => {
                write!(f, "duplicate addresses in {members:?}")
            }
            NodeConfigError::NotAMember { id, ids } => {
                write!(f, "node {id} is not in the cluster {ids:?}")
            }
            NodeConfigError::ZeroTick => write!(f, "the tick must be longer than zero"),
            NodeConfigError::ZeroSnapshotThreshold { entries, bytes } => write!(
                f,
                "snapshot_entries and snapshot_bytes must be at least 1 (they are {entries} and \
                 {bytes})"
            ),
            NodeConfigError::EmptyDataDir => {
                write!(f, "the data directory is empty (not a path)")
            }
            NodeConfigError::Wal(error) => write!(f, "WAL: {error}"),
            NodeConfigError::RejoinedWithoutState { id, dir } => write!(
                f,
                "{} was marked by --rejoin (node {id} lost its state once and may never vote \
                 again); replace it under a new id: start a fresh node with --join and a new \
                 --id, then run `balsa members replace {id} NEW_ID=IP:PORT`",
                dir.join(super::REJOINED_MARKER).display()
            ),
            NodeConfigError::Core(error) => write!(f, "{error}"),
            NodeConfigError::ZeroJoinTimeout => {
                write!(f, "the join timeout must be longer than zero")
            }
            NodeConfigError::NoMemberToAsk { id } => write!(
                f,
                "node {id} cannot join: no other member is listed to ask for the cluster's id"
            ),
            NodeConfigError::WrongNode {
                dir,
                recorded,
                configured,
            } => write!(
                f,
                "data directory {} belongs to node {recorded}, not node {configured}",
                dir.display()
            ),
            NodeConfigError::WrongCluster {
                dir,
                recorded,
                learned,
                from,
            } => write!(
                f,
                "data directory {} belongs to cluster {}, not cluster {} that the member at \
                 {from} reports",
                dir.display(),
                cluster_id_text(*recorded),
                cluster_id_text(*learned)
            ),
            NodeConfigError::DataDirNotADirectory { dir } => {
                write!(f, "data directory {} is not a directory", dir.display())
            }
            NodeConfigError::MembersDisagree { answers } => {
                let said: Vec<String> = answers
                    .iter()
                    .map(|(from, id)| format!("{from} says {}", cluster_id_text(*id)))
                    .collect();
                write!(
                    f,
                    "the members do not agree on the cluster's id: {}",
                    said.join(", ")
                )
            }
        }
    }
}

impl std::error::Error for NodeConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NodeConfigError::Wal(error) => Some(error.wal()),
            NodeConfigError::Core(error) => Some(error),
            _ => None,
        }
    }
}

impl From<raft::ConfigError> for NodeConfigError {
    fn from(error: raft::ConfigError) -> NodeConfigError {
        NodeConfigError::Core(error)
    }
}

/// Why [`Node::start`](super::Node::start) failed, when it is not one of [`Error`]'s own
/// refusals (a bad configuration, a data directory in use, a full disk, an identity file, a
/// join no member answered). `Display` says what was being done and what went wrong;
/// `source()` is the error underneath, whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// The node's address cannot be bound (taken by another process, say).
    Bind {
        /// The transport's error, naming the address.
        source: SharedError<balsa_net::Error>,
    },
    /// The WAL cannot be opened and recovered (a damaged log, say).
    OpenWal {
        /// The WAL's error.
        source: SharedWalError,
    },
    /// The snapshot the WAL recovered cannot be read.
    LoadSnapshot {
        /// The WAL's error.
        source: SharedWalError,
    },
    /// The WAL recovered a snapshot, but had none to load: only a bug gets here.
    SnapshotVanished,
    /// The state machine cannot restore the snapshot the WAL recovered.
    RestoreSnapshot {
        /// The snapshot's last index.
        index: u64,
        /// What the state machine said.
        source: RestoreError,
    },
    /// A recovered log entry has a kind this build does not know.
    UnknownEntryKind {
        /// The entry's index.
        index: u64,
        /// The kind byte it holds.
        kind: u8,
    },
    /// A recovered log entry holds no bytes at all, not even its kind.
    EmptyEntry {
        /// The entry's index.
        index: u64,
    },
    /// A file or directory in the data directory cannot be read or written.
    Io {
        /// What was being done ("reading", "writing").
        doing: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: SharedError<io::Error>,
    },
    /// A joining node cannot make the client it asks the members with.
    AskMembers {
        /// The client's error.
        source: SharedError<ClientError>,
    },
    /// The transport (the net thread) cannot start.
    Transport {
        /// The transport's error.
        source: SharedError<balsa_net::Error>,
    },
    /// One of the node's threads cannot be started.
    Spawn {
        /// The thread's name.
        thread: String,
        /// The OS error.
        source: SharedError<io::Error>,
    },
}

impl StartError {
    /// For `map_err`: an I/O error while `doing` something to `path`.
    pub(crate) fn io(doing: &'static str, path: &std::path::Path) -> impl Fn(io::Error) -> Self {
        move |error| StartError::Io {
            doing,
            path: path.to_path_buf(),
            source: SharedError::from(error),
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Bind { source } | StartError::Transport { source } => {
                write!(f, "{source}")
            }
            StartError::OpenWal { source } | StartError::LoadSnapshot { source } => {
                write!(f, "{source}")
            }
            StartError::SnapshotVanished => write!(f, "the recovered snapshot vanished"),
            StartError::RestoreSnapshot { index, source } => {
                write!(f, "restoring the snapshot at {index}: {source}")
            }
            StartError::UnknownEntryKind { index, kind } => {
                write!(f, "entry {index} has unknown kind {kind}")
            }
            StartError::EmptyEntry { index } => write!(f, "entry {index} is empty"),
            StartError::Io {
                doing,
                path,
                source,
            } => write!(f, "{doing} {}: {source}", path.display()),
            StartError::AskMembers { source } => {
                write!(f, "asking the members for the cluster's id: {source}")
            }
            StartError::Spawn { thread, source } => {
                write!(f, "starting thread {thread}: {source}")
            }
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Bind { source } | StartError::Transport { source } => Some(source.get()),
            StartError::OpenWal { source } | StartError::LoadSnapshot { source } => {
                Some(source.wal())
            }
            StartError::RestoreSnapshot { source, .. } => Some(source),
            StartError::Io { source, .. } | StartError::Spawn { source, .. } => Some(source.get()),
            StartError::AskMembers { source } => Some(source.get()),
            StartError::SnapshotVanished
            | StartError::UnknownEntryKind { .. }
            | StartError::EmptyEntry { .. } => None,
        }
    }
}

/// Why a running node stopped on its own, when neither its storage nor its state machine is
/// the cause (those are [`Error::Storage`] and [`Error::Restore`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// One of the node's threads panicked.
    Panicked {
        /// The thread.
        thread: NodeThread,
    },
    /// One of the node's threads ended while the node still needed it (its channel
    /// disconnected).
    Stopped {
        /// The thread.
        thread: NodeThread,
    },
    /// The configuration a membership change committed does not decode: the consensus thread
    /// encoded it, so only a bug gets here.
    UndecodableConfiguration {
        /// The decoder's error.
        source: MembershipDecodeError,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Panicked { thread } => write!(f, "the {thread} thread panicked"),
            Failure::Stopped { thread } => write!(f, "the {thread} thread stopped unexpectedly"),
            Failure::UndecodableConfiguration { source } => {
                write!(f, "the new configuration does not decode: {source}")
            }
        }
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Failure::UndecodableConfiguration { source } => Some(source),
            Failure::Panicked { .. } | Failure::Stopped { .. } => None,
        }
    }
}

/// One of a node's long-lived threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeThread {
    /// The consensus thread: the core, the state machine, the API.
    Consensus,
    /// The WAL thread: the node's storage.
    Wal,
    /// The net thread: the transport's socket.
    Net,
}

impl fmt::Display for NodeThread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NodeThread::Consensus => "consensus",
            NodeThread::Wal => "WAL",
            NodeThread::Net => "net",
        })
    }
}

/// Why storage failed; the node stops on any of them (no retry-and-carry-on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageError {
    /// The WAL failed.
    Wal {
        /// What the WAL thread was doing ("syncing the log").
        during: &'static str,
        /// The WAL's error.
        source: SharedWalError,
    },
    /// The snapshot received is not the one the leader announced, so it was not installed. The
    /// chunks arrive in order over checked datagrams: only a bug gets here.
    SnapshotMismatch {
        /// What the received snapshot covers.
        received: SnapshotMeta,
        /// Its size in bytes.
        received_bytes: u64,
        /// Its CRC-32.
        received_crc: u32,
        /// What the leader announced it covers.
        announced: SnapshotMeta,
        /// The size the leader announced.
        announced_bytes: u64,
        /// The CRC-32 the leader announced.
        announced_crc: u32,
    },
    /// The consensus thread asked for a snapshot to be installed, but none was received: only a
    /// bug gets here.
    NoSnapshotReceived {
        /// The snapshot asked for.
        announced: SnapshotMeta,
    },
}

impl StorageError {
    /// For `map_err`: the WAL's error, while doing `during`.
    pub(crate) fn wal(during: &'static str) -> impl Fn(balsa_wal::Error) -> StorageError + Copy {
        move |error| StorageError::Wal {
            during,
            source: SharedWalError::from(error),
        }
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Wal { during, source } => write!(f, "{during}: {source}"),
            StorageError::SnapshotMismatch {
                received,
                received_bytes,
                received_crc,
                announced,
                announced_bytes,
                announced_crc,
            } => write!(
                f,
                "refusing to install a snapshot: received snapshot {received:?} holds \
                 {received_bytes} bytes with CRC {received_crc:#010x}; the leader announced \
                 {announced:?} of {announced_bytes} bytes with CRC {announced_crc:#010x}"
            ),
            StorageError::NoSnapshotReceived { announced } => write!(
                f,
                "refusing to install a snapshot: asked to install {announced:?}, but none was \
                 received"
            ),
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StorageError::Wal { source, .. } => Some(source.wal()),
            StorageError::SnapshotMismatch { .. } | StorageError::NoSnapshotReceived { .. } => None,
        }
    }
}

/// An error that is neither `Clone` nor `Eq` (a `balsa_wal::Error`, a `balsa_net::Error`, an
/// `io::Error`), shared so that the errors holding it stay `Clone` (every waiter of a stopped
/// node gets a copy), and equal to another when both say the same thing (an `io::Error` has no
/// equality of its own).
#[derive(Debug)]
pub struct SharedError<E>(Arc<E>);

/// The WAL's error, shared ([`SharedError`]).
pub type SharedWalError = SharedError<balsa_wal::Error>;

impl<E> SharedError<E> {
    /// The error itself.
    pub fn get(&self) -> &E {
        &self.0
    }
}

impl SharedError<balsa_wal::Error> {
    /// The WAL's error.
    pub fn wal(&self) -> &balsa_wal::Error {
        &self.0
    }
}

impl<E> Clone for SharedError<E> {
    fn clone(&self) -> Self {
        SharedError(Arc::clone(&self.0))
    }
}

impl<E> From<E> for SharedError<E> {
    fn from(error: E) -> Self {
        SharedError(Arc::new(error))
    }
}

impl<E: fmt::Display> PartialEq for SharedError<E> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

impl<E: fmt::Display> Eq for SharedError<E> {}

impl<E: fmt::Display> fmt::Display for SharedError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;
    use std::io;

    use super::*;

    fn io_failure() -> balsa_wal::Error {
        balsa_wal::Error::Io {
            op: "fdatasync",
            path: PathBuf::from("wal/00000001.seg"),
            offset: None,
            source: io::Error::other("disk gone"),
        }
    }

    /// The chain of `source()`s below `error`, outermost first.
    fn causes<'a>(
        error: &'a (dyn std::error::Error + 'static),
    ) -> Vec<&'a (dyn std::error::Error + 'static)> {
        std::iter::successors(error.source(), |&cause| cause.source()).collect()
    }

    /// Each new variant's one line, as `balsa serve` prints it after "balsa serve: ".
    #[test]
    fn each_error_says_what_happened_in_one_line() {
        let cases = [
            (
                Error::Storage(StorageError::wal("syncing the log")(io_failure())),
                "the node stopped: storage failed: syncing the log: fdatasync \
                 wal/00000001.seg: disk gone",
            ),
            (
                Error::Storage(StorageError::SnapshotMismatch {
                    received: SnapshotMeta { index: 9, term: 2 },
                    received_bytes: 3,
                    received_crc: 0xab,
                    announced: SnapshotMeta { index: 9, term: 2 },
                    announced_bytes: 5,
                    announced_crc: 0xcd,
                }),
                "the node stopped: storage failed: refusing to install a snapshot: received \
                 snapshot SnapshotMeta { index: 9, term: 2 } holds 3 bytes with CRC 0x000000ab; \
                 the leader announced SnapshotMeta { index: 9, term: 2 } of 5 bytes with CRC \
                 0x000000cd",
            ),
            (
                Error::Storage(StorageError::NoSnapshotReceived {
                    announced: SnapshotMeta { index: 9, term: 2 },
                }),
                "the node stopped: storage failed: refusing to install a snapshot: asked to \
                 install SnapshotMeta { index: 9, term: 2 }, but none was received",
            ),
            (
                Error::Restore {
                    index: 40,
                    source: RestoreError::new("not 8 bytes"),
                },
                "the node stopped: restoring the installed snapshot at 40: cannot restore \
                 snapshot: not 8 bytes",
            ),
            (
                Error::Config(NodeConfigError::Core(raft::ConfigError::ReservedId)),
                "bad configuration: node id 0 is reserved",
            ),
            (
                Error::Config(NodeConfigError::Wal(
                    balsa_wal::Error::InvalidOptions {
                        reason: "segment_bytes 1000 is too small".into(),
                    }
                    .into(),
                )),
                "bad configuration: WAL: invalid options: segment_bytes 1000 is too small",
            ),
            (
                Error::Config(NodeConfigError::WrongNode {
                    dir: PathBuf::from("d1"),
                    recorded: 1,
                    configured: 2,
                }),
                "bad configuration: data directory d1 belongs to node 1, not node 2",
            ),
            (
                Error::Config(NodeConfigError::WrongCluster {
                    dir: PathBuf::from("d4"),
                    recorded: 0xab,
                    learned: 0xcd,
                    from: "127.0.0.1:7001".parse().expect("literal"),
                }),
                "bad configuration: data directory d4 belongs to cluster 00000000000000ab, not \
                 cluster 00000000000000cd that the member at 127.0.0.1:7001 reports",
            ),
            (
                Error::Config(NodeConfigError::MembersDisagree {
                    answers: vec![
                        ("127.0.0.1:7001".parse().expect("literal"), 1),
                        ("127.0.0.1:7002".parse().expect("literal"), 2),
                    ],
                }),
                "bad configuration: the members do not agree on the cluster's id: \
                 127.0.0.1:7001 says 0000000000000001, 127.0.0.1:7002 says 0000000000000002",
            ),
            (
                Error::NoMemberAnswered {
                    asked: vec![
                        "127.0.0.1:7001".parse().expect("literal"),
                        "127.0.0.1:7002".parse().expect("literal"),
                    ],
                    waited: Duration::from_millis(10_000),
                },
                "cannot join: no member of the cluster answered within 10000 ms (asked \
                 127.0.0.1:7001, 127.0.0.1:7002)",
            ),
            (
                Error::Identity(IdentityError::BadMagic {
                    path: PathBuf::from("d1/IDENTITY"),
                }),
                "d1/IDENTITY is not an identity file (wrong magic)",
            ),
        ];
        for (error, says) in cases {
            assert_eq!(error.to_string(), says);
        }
    }

    /// `cause` is [`io_failure`]'s WAL error, whole.
    fn assert_is_io_failure(cause: &(dyn std::error::Error + 'static)) {
        let wal = cause
            .downcast_ref::<balsa_wal::Error>()
            .expect("the WAL's error, whole");
        assert!(matches!(
            wal,
            balsa_wal::Error::Io {
                op: "fdatasync",
                ..
            }
        ));
    }

    #[test]
    fn source_reaches_the_wal_error_and_the_io_error_under_it() {
        let error = Error::Storage(StorageError::wal("syncing the log")(io_failure()));
        let causes = causes(&error);
        assert_eq!(causes.len(), 3, "storage error, WAL error, I/O error");
        assert!(causes[0].is::<StorageError>());
        assert_is_io_failure(causes[1]);
        let io = causes[2].downcast_ref::<io::Error>().expect("the OS error");
        assert_eq!(io.to_string(), "disk gone");
    }

    /// A failure a real WAL reports keeps its variant and fields through the runtime's errors.
    #[test]
    fn a_real_wal_failure_is_kept_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut wal, _) =
            balsa_wal::Wal::open(dir.path(), balsa_wal::Options::default()).expect("open");
        let failure = wal.compact_to(10).expect_err("no snapshot covers index 10");
        let error = Error::Storage(StorageError::wal("compacting the log")(failure));
        let wal_error = causes(&error)
            .into_iter()
            .find_map(|cause| cause.downcast_ref::<balsa_wal::Error>())
            .expect("the chain reaches the WAL's error");
        assert!(matches!(
            wal_error,
            balsa_wal::Error::NotCovered { index: 10, .. }
        ));
        assert!(error.to_string().contains("compacting the log: index 10"));
    }

    #[test]
    fn the_other_causes_are_sources_too() {
        let restore = Error::Restore {
            index: 7,
            source: RestoreError::new("damaged"),
        };
        let cause = restore.source().expect("the state machine's error");
        assert_eq!(
            cause
                .downcast_ref::<RestoreError>()
                .map(RestoreError::message),
            Some("damaged")
        );
        let refused = Error::Config(NodeConfigError::Core(raft::ConfigError::ReservedId));
        let causes = causes(&refused);
        assert!(causes[0].is::<NodeConfigError>());
        assert_eq!(
            causes[1].downcast_ref::<raft::ConfigError>(),
            Some(&raft::ConfigError::ReservedId)
        );
        assert!(Error::Config(NodeConfigError::ZeroTick).source().is_some());
        assert!(NodeConfigError::ZeroTick.source().is_none());
        assert!(Error::Timeout.source().is_none());
    }

    /// A start error says what the `String` it replaced said, word for word (`balsa serve`
    /// prints it, and scripts and tests match on it), and keeps its cause whole.
    #[test]
    fn a_start_error_says_what_it_said_and_keeps_its_source() {
        let dir = PathBuf::from("d1");
        let denied = || io::Error::new(io::ErrorKind::PermissionDenied, "Permission denied");
        let reading = Error::Start(StartError::io("reading", &dir)(denied()));
        // What `datadir.rs` formatted before: `format!("reading {}: {error}", dir.display())`.
        assert_eq!(
            reading.to_string(),
            format!("cannot start: reading {}: {}", dir.display(), denied())
        );
        assert_eq!(
            reading.to_string(),
            "cannot start: reading d1: Permission denied"
        );
        let causes_of_reading = causes(&reading);
        assert!(causes_of_reading[0].is::<StartError>());
        let io = causes_of_reading[1]
            .downcast_ref::<io::Error>()
            .expect("the OS error, whole");
        assert_eq!(io.kind(), io::ErrorKind::PermissionDenied);

        let taken = balsa_net::Error::Io {
            op: "bind",
            addr: "127.0.0.1:7001".parse().expect("literal"),
            source: io::Error::new(io::ErrorKind::AddrInUse, "Address already in use"),
        };
        let bind = Error::Start(StartError::Bind {
            source: taken.into(),
        });
        // As README.md shows it.
        assert_eq!(
            bind.to_string(),
            "cannot start: bind 127.0.0.1:7001: Address already in use"
        );
        let causes_of_bind = causes(&bind);
        assert!(matches!(
            causes_of_bind[1].downcast_ref::<balsa_net::Error>(),
            Some(balsa_net::Error::Io { op: "bind", .. })
        ));
        assert_eq!(
            causes_of_bind[2]
                .downcast_ref::<io::Error>()
                .map(io::Error::kind),
            Some(io::ErrorKind::AddrInUse)
        );

        let open = Error::Start(StartError::OpenWal {
            source: io_failure().into(),
        });
        assert_eq!(
            open.to_string(),
            "cannot start: fdatasync wal/00000001.seg: disk gone"
        );
        assert_is_io_failure(causes(&open)[1]);

        let spawn = Error::Start(StartError::Spawn {
            thread: "balsa-wal-1".into(),
            source: io::Error::other("out of threads").into(),
        });
        assert_eq!(
            spawn.to_string(),
            "cannot start: starting thread balsa-wal-1: out of threads"
        );
        assert!(causes(&spawn)[1].is::<io::Error>());
        // Every waiter of a stopped node gets a copy; a copy is equal to the original.
        assert_eq!(spawn.clone(), spawn);
        assert_ne!(spawn, bind);

        let asking = Error::Start(StartError::AskMembers {
            source: ClientError::Unavailable {
                reason: "no socket".into(),
            }
            .into(),
        });
        assert_eq!(
            asking.to_string(),
            "cannot start: asking the members for the cluster's id: cluster unavailable (no \
             socket); nothing was applied"
        );
        assert!(causes(&asking)[1].is::<ClientError>());
    }

    /// The start errors whose cause is not another error, and the full disk.
    #[test]
    fn the_other_start_errors_say_what_they_said() {
        let restore = Error::Start(StartError::RestoreSnapshot {
            index: 40,
            source: RestoreError::new("not 8 bytes"),
        });
        assert_eq!(
            restore.to_string(),
            "cannot start: restoring the snapshot at 40: cannot restore snapshot: not 8 bytes"
        );
        assert!(causes(&restore)[1].is::<RestoreError>());
        let cases = [
            (
                StartError::SnapshotVanished,
                "cannot start: the recovered snapshot vanished",
            ),
            (
                StartError::UnknownEntryKind { index: 7, kind: 9 },
                "cannot start: entry 7 has unknown kind 9",
            ),
            (
                StartError::EmptyEntry { index: 7 },
                "cannot start: entry 7 is empty",
            ),
        ];
        for (error, says) in cases {
            assert!(error.source().is_none(), "{error}");
            assert_eq!(Error::Start(error).to_string(), says);
        }

        let full = Error::NoSpace {
            dir: PathBuf::from("d1"),
            segment_bytes: 65536,
            source: io_failure().into(),
        };
        assert_eq!(
            full.to_string(),
            "cannot start: no space left for a WAL segment of 65536 bytes in d1 (fdatasync \
             wal/00000001.seg: disk gone); free some space, or make the segments smaller \
             (segment_bytes)"
        );
        assert!(
            full.source()
                .is_some_and(|cause| cause.is::<balsa_wal::Error>())
        );
    }

    /// A node that stopped on its own says which thread, in the words it used before.
    #[test]
    fn a_failure_names_the_thread() {
        let cases = [
            (
                Failure::Panicked {
                    thread: NodeThread::Consensus,
                },
                "the node stopped: the consensus thread panicked",
            ),
            (
                Failure::Panicked {
                    thread: NodeThread::Wal,
                },
                "the node stopped: the WAL thread panicked",
            ),
            (
                Failure::Stopped {
                    thread: NodeThread::Net,
                },
                "the node stopped: the net thread stopped unexpectedly",
            ),
            (
                Failure::Stopped {
                    thread: NodeThread::Wal,
                },
                "the node stopped: the WAL thread stopped unexpectedly",
            ),
        ];
        for (failure, says) in cases {
            let error = Error::Failed(failure);
            assert_eq!(error.to_string(), says);
            assert!(error.source().is_some_and(|cause| cause.source().is_none()));
        }
        let undecodable = Error::Failed(Failure::UndecodableConfiguration {
            source: MembershipDecodeError::Invalid("no voters".into()),
        });
        let decode = causes(&undecodable)[1]
            .downcast_ref::<MembershipDecodeError>()
            .expect("the decoder's error");
        assert_eq!(
            undecodable.to_string(),
            format!("the node stopped: the new configuration does not decode: {decode}")
        );
    }

    /// Waiters get clones; equality is what the error says.
    #[test]
    fn wal_errors_are_equal_when_they_say_the_same() {
        let error = Error::Storage(StorageError::wal("syncing the log")(io_failure()));
        assert_eq!(error.clone(), error);
        assert_eq!(
            Error::Storage(StorageError::wal("syncing the log")(io_failure())),
            error
        );
        assert_ne!(
            Error::Storage(StorageError::wal("writing the log")(io_failure())),
            error
        );
    }
}
