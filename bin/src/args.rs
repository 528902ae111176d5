//! The command line: [`Cli`] and one clap struct per subcommand, each flag with its help text;
//! [`parse`] reads it into them, or says why it runs nothing ([`NotRun`]).
//!
//! Invariants:
//! - A default is written once. `serve`'s defaults come from the library ([`NodeConfig::new`],
//!   which takes the core's from `raft::Config::new`), `sim`'s from [`SimConfig::new`], the
//!   client commands' `--timeout` and `--attempt-timeout` from [`ClientOptions::default`]; only
//!   the defaults of what exists in this binary alone (`cluster`, `bench`, the endpoints, the
//!   shorter timeout of `status` and `members list`, a membership change's) are here.
//! - A check is made once. The parsers here read values (an address, a node id, `MIN-MAX`, a
//!   duration: [`parse_duration`], which other commands' durations reuse) and
//!   ranges of the binary's own settings; whether a node's configuration can work is
//!   [`NodeConfig::validate`]'s to say, when `serve` starts. What no single flag's parser can
//!   check and no library owns (`cluster`'s ports, `sim`'s last seed) is [`parse`]'s.
//! - Every refusal is one line, `balsa CMD: WHAT (usage: USAGE)`: clap's message without its
//!   tips, and the subcommand's usage. `--help` and `--version` are answers, not refusals.

use std::ffi::OsString;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use balsa::NodeConfig;
use balsa::client::ClientOptions;
use balsa::client::load::{MILLION, Workload};
use balsa::sim::{self, SimConfig};
use clap::builder::{PossibleValuesParser, RangedU64ValueParser};
use clap::{ArgGroup, Args, CommandFactory, FromArgMatches as _, Parser, Subcommand, value_parser};

use crate::config;

/// The default client endpoints: the ports `balsa cluster` uses by default.
pub const DEFAULT_ENDPOINTS: &str = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003";

/// The most clients `balsa bench` runs (each with its own session and socket).
pub const MAX_BENCH_CLIENTS: usize = 1024;
/// The largest value `balsa bench` writes: what fits in one request datagram with room to spare.
pub const MAX_BENCH_VALUE: usize = 60_000;

/// The most nodes `balsa cluster` starts and `balsa sim` simulates.
const MAX_NODES: u16 = 15;

const AFTER_HELP: &str = "\
Logs (serve) go to stderr; their filter is BALSA_LOG, or RUST_LOG when BALSA_LOG is unset
(env_logger's syntax: a level such as debug, or module=level,...); info by default.
Keys: serve runs with --peer-key-file and --client-key-file (make them with `balsa keygen FILE`)
or, on a trusted network only, --insecure; clients take the client key with --key-file or
BALSA_KEY_FILE.
Exit status: 0 success, 1 key absent or cas mismatch (check perf: a criterion failed), 2 bad
usage or configuration (or a membership change refused as asked, or a key file that cannot be
used; serve: also a data directory of another node or cluster), 3 cluster unavailable or
timeout (outcome unknown; serve --join: no member answered), or requests the cluster could not
authenticate.";

/// What `balsa --version` prints after the name: the crate's version and the git revision it
/// was built from (`unknown` outside a git checkout; `build.rs`), so a bug report names its
/// build.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("BALSA_GIT_REVISION"),
    ")"
);

/// A Raft replicated key-value node: run nodes, talk to them, measure them, simulate them.
#[derive(Debug, Parser)]
#[command(name = "balsa", bin_name = "balsa", version = VERSION, after_help = AFTER_HELP)]
#[command(subcommand_required = true, arg_required_else_help = false)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one node until it is killed
    Serve(ServeArgs),
    /// Run a local cluster of `balsa serve` processes until they stop
    Cluster(ClusterArgs),
    /// A guided demonstration: a local 3-node cluster, a leader kill, latency
    Demo,
    /// Write a new random key to FILE (mode 0600; never over an existing file)
    Keygen(KeygenArgs),
    /// A client operation against a running cluster.
    #[command(flatten)]
    Client(ClientCommand),
    /// List the cluster's members, or add, promote, remove or replace one
    Members(MembersArgs),
    /// Closed-loop load (writes, reads or both) against a running cluster, with latency
    /// percentiles; or plots of earlier runs (--compare)
    Bench(BenchArgs),
    /// Check a running cluster: `check perf` loads it and judges it against this machine
    Check(CheckArgs),
    /// Build a new node's data directory from a `snapshot save` file, to bootstrap a new
    /// cluster holding its state (run it for every member, then serve them)
    Restore(RestoreArgs),
    /// Run the deterministic simulator over a range of seeds
    Sim(SimArgs),
    /// Run a real cluster under faults (kills, pauses, partitions, membership changes) with a
    /// client workload, and check its history for linearizability
    Torture(TortureArgs),
    /// Print a shell completion script on stdout
    Completions(CompletionsArgs),
}

/// `balsa serve`: one node. The defaults are the library's ([`NodeConfig::new`]).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// This node's id (a positive integer; 0 is every client's)
    #[arg(long)]
    pub id: u64,
    /// Every member, this node included
    #[arg(long, value_name = "ID=IP:PORT,...", value_parser = parse_members)]
    // Fully qualified: clap reads a plain `Vec` as a flag given many times.
    pub cluster: ::std::vec::Vec<(u64, SocketAddr)>,
    /// Where the write-ahead log lives (locked while the node runs)
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Bind this address instead of this node's in --cluster, which stays the one peers and
    /// clients are told (for a relay or proxy in between; default: this node's in --cluster)
    #[arg(long, value_name = "IP:PORT", value_parser = parse_bind_address)]
    pub listen: Option<SocketAddr>,
    /// Serve GET /metrics (Prometheus' text format) and GET /health over HTTP at this address
    #[arg(long, value_name = "IP:PORT", value_parser = parse_bind_address)]
    pub metrics_addr: Option<SocketAddr>,
    /// The timer's period, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = default_tick_ms())]
    pub tick_ms: u64,
    /// Election timeout range in ticks, [MIN, MAX)
    #[arg(
        long,
        value_name = "MIN-MAX",
        default_value_t = TickRange::from(node_defaults().election_ticks)
    )]
    pub election_ticks: TickRange,
    /// Heartbeat period, in ticks
    #[arg(long, value_name = "TICKS", default_value_t = node_defaults().heartbeat_ticks)]
    pub heartbeat_ticks: u32,
    /// Acknowledge before the disk (unsafe: a power loss can lose acknowledged writes)
    #[arg(long)]
    pub unsafe_no_fsync: bool,
    /// Snapshot once this many entries were applied since the last snapshot
    #[arg(long, value_name = "ENTRIES", default_value_t = node_defaults().snapshot_entries)]
    pub snapshot_entries: u64,
    /// Snapshot once this many bytes of entries were applied since the last snapshot
    #[arg(long, value_name = "BYTES", default_value_t = node_defaults().snapshot_bytes)]
    pub snapshot_bytes: u64,
    /// Wait, as well, until the bytes of entries since the last snapshot reach this many times
    /// its size, so a large state is not rewritten every --snapshot-bytes (0: no such wait)
    #[arg(
        long,
        value_name = "FACTOR",
        default_value_t = node_defaults().snapshot_expansion
    )]
    pub snapshot_expansion: u64,
    /// Entries kept behind a snapshot when compacting, for slightly slow followers
    #[arg(
        long,
        value_name = "ENTRIES",
        default_value_t = node_defaults().snapshot_trailing_entries
    )]
    pub snapshot_trailing: u64,
    /// WAL segment size, in bytes
    #[arg(long, value_name = "BYTES", default_value_t = node_defaults().wal.segment_bytes)]
    pub segment_bytes: u64,
    /// Deprecated: the same as --join (a node that lost its data directory comes back under a
    /// new id, through `balsa members replace`)
    #[arg(long)]
    pub rejoin: bool,
    /// Mixed into the cluster id when bootstrapping: give every member of a new cluster the
    /// same one, and each new cluster its own (default: empty)
    #[arg(
        long,
        value_name = "TOKEN",
        default_value_t = node_defaults().cluster_token,
        hide_default_value = true
    )]
    pub cluster_token: String,
    /// Join a running cluster instead of bootstrapping one: learn its id from the other
    /// members of --cluster (which lists them, and this node), start with no configuration, a
    /// member once `balsa members add` adds it
    #[arg(long)]
    pub join: bool,
    /// How long --join asks the other members for the cluster's id, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = default_join_timeout_ms())]
    pub join_timeout_ms: u64,
    /// Write the WAL with O_DIRECT | O_DSYNC instead of pwrite + fdatasync (ignored with
    /// --unsafe-no-fsync)
    #[arg(long)]
    pub wal_direct: bool,
    /// The cluster's peer key, which member traffic is sealed under: a file `balsa keygen`
    /// wrote, readable by its owner only
    #[arg(
        long,
        value_name = "FILE",
        env = "BALSA_PEER_KEY_FILE",
        requires = "client_key_file"
    )]
    pub peer_key_file: Option<PathBuf>,
    /// The cluster's client key, which client traffic is sealed under (clients give the same
    /// file with --key-file)
    #[arg(
        long,
        value_name = "FILE",
        env = "BALSA_CLIENT_KEY_FILE",
        requires = "peer_key_file"
    )]
    pub client_key_file: Option<PathBuf>,
    /// While rotating keys: the peer key being replaced, still accepted
    #[arg(
        long,
        value_name = "FILE",
        env = "BALSA_PREVIOUS_PEER_KEY_FILE",
        requires = "peer_key_file"
    )]
    pub previous_peer_key_file: Option<PathBuf>,
    /// While rotating keys: the client key being replaced, still accepted
    #[arg(
        long,
        value_name = "FILE",
        env = "BALSA_PREVIOUS_CLIENT_KEY_FILE",
        requires = "client_key_file"
    )]
    pub previous_client_key_file: Option<PathBuf>,
    /// Run without keys, on a trusted network only: datagrams go in plaintext, and anyone who
    /// can send this node a datagram can speak for a member or a client
    #[arg(
        long,
        conflicts_with_all = [
            "peer_key_file",
            "client_key_file",
            "previous_peer_key_file",
            "previous_client_key_file"
        ]
    )]
    pub insecure: bool,
    /// Read settings from this TOML file: any serve flag, keyed by its long name (`id = 1`,
    /// `data-dir = "d1"`, `cluster = ["1=127.0.0.1:7001", "2=127.0.0.1:7002"]`, `join =
    /// true`). The command line wins over the BALSA_* environment variables, which win over
    /// the file, which wins over the defaults
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the configuration in effect (command line, environment, --config file and
    /// defaults) as a file --config reads, and exit without starting the node; a
    /// configuration serve would refuse exits 2
    #[arg(long)]
    pub print_config: bool,
    /// Stop, as on SIGTERM, once process PID exits; PID must be this process's parent (Linux:
    /// `balsa cluster` gives its nodes its own, so that none outlives it)
    #[arg(long, value_name = "PID", value_parser = value_parser!(i32).range(1..))]
    pub parent_pid: Option<i32>,
    /// `--print-config`'s text: the configuration in effect as TOML (empty without the flag).
    #[arg(skip)]
    pub effective_config: String,
}

/// `balsa keygen FILE`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the key (a new file: an existing one is never overwritten)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// `balsa cluster`: node `i` (from 1) listens on `127.0.0.1:(base-port + i - 1)`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// How many nodes
    #[arg(
        long,
        default_value_t = 3,
        value_parser = value_parser!(u16).range(1..=i64::from(MAX_NODES))
    )]
    pub nodes: u16,
    /// Node i (from 1) listens on this port + i - 1
    #[arg(
        long,
        value_name = "PORT",
        default_value_t = 7001,
        value_parser = value_parser!(u16).range(1..)
    )]
    pub base_port: u16,
    /// Node i stores its log in DIR/node-i
    #[arg(long, value_name = "DIR", default_value = "./balsa-data")]
    pub data_dir: PathBuf,
    /// Start every node with --unsafe-no-fsync
    #[arg(long)]
    pub unsafe_no_fsync: bool,
}

/// `--endpoints` and `--key-file`, which every client command, `members` and `bench` take:
/// where the cluster is, and the key to speak to it with.
#[derive(Clone, Debug, Args)]
pub struct Endpoints {
    /// The nodes to talk to
    #[arg(
        id = "endpoints",
        long = "endpoints",
        value_name = "A,B,C",
        env = "BALSA_ENDPOINTS",
        default_value = DEFAULT_ENDPOINTS,
        value_parser = parse_endpoints
    )]
    // Fully qualified: clap reads a plain `Vec` as a flag given many times.
    pub addresses: ::std::vec::Vec<SocketAddr>,
    /// The cluster's client key (the file its nodes' --client-key-file names); without one,
    /// requests go in plaintext, which only a cluster run with --insecure takes
    #[arg(
        id = "key_file",
        long = "key-file",
        value_name = "FILE",
        env = "BALSA_KEY_FILE"
    )]
    pub key_file: Option<PathBuf>,
}

/// `--timeout` and `--attempt-timeout`, which every client command, `members list` and
/// `bench` take. Unset, each command uses its own default ([`Timeouts::or`]).
#[derive(Clone, Copy, Debug, Default, Args)]
pub struct Timeouts {
    /// How long to wait for the answer, retries included (snapshot: each endpoint's; bench and
    /// check perf: each operation's) [default: 5s; status and members list: 1s]. DURATION: a whole number with
    /// ms, s, m or h (a bare number is milliseconds)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// How long one attempt waits for a node's answer before trying the next node [default:
    /// 300ms]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub attempt_timeout: Option<Duration>,
}

/// The default `--timeout` of the commands that only ask each node about itself (`status`,
/// `members list`): a node answers at once or not at all, so a dead one should cost little.
pub const DEFAULT_ASKING_TIMEOUT: Duration = Duration::from_secs(1);

impl Timeouts {
    /// `(timeout, attempt timeout)`: the flags given, else `timeout` and the library's attempt
    /// timeout ([`ClientOptions::default`]).
    pub fn or(self, timeout: Duration) -> (Duration, Duration) {
        (
            self.timeout.unwrap_or(timeout),
            self.attempt_timeout
                .unwrap_or(ClientOptions::default().attempt_timeout),
        )
    }

    /// `(timeout, attempt timeout)`: the flags given, else the library's
    /// ([`ClientOptions::default`]).
    pub fn or_library(self) -> (Duration, Duration) {
        self.or(ClientOptions::default().timeout)
    }
}

/// The client subcommands, through `balsa::client::Client`.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Write VALUE under KEY (VALUE "-": read it from standard input; or --value-file FILE)
    Put {
        /// The key
        #[arg(allow_negative_numbers = true)]
        key: String,
        /// The value; "-" reads it from standard input (all of it, as bytes)
        #[arg(
            allow_negative_numbers = true,
            required_unless_present = "value_file",
            conflicts_with = "value_file"
        )]
        value: Option<String>,
        /// Read the value from FILE (all of it, as bytes)
        #[arg(long, value_name = "FILE")]
        value_file: Option<PathBuf>,
        /// KEY is written in hex (two digits a byte), for a key that is not text
        #[arg(long)]
        hex_key: bool,
        /// Where the cluster is.
        #[command(flatten)]
        endpoints: Endpoints,
        /// How long to wait.
        #[command(flatten)]
        timeouts: Timeouts,
    },
    /// Print the value of KEY (exit 1 when it is absent), or every pair of a prefix or a range
    #[command(group(ArgGroup::new("many").args(["prefix", "range"])))]
    Get {
        /// The key
        #[arg(
            allow_negative_numbers = true,
            required_unless_present_any = ["prefix", "range"],
            conflicts_with = "many"
        )]
        key: Option<String>,
        /// Every key that starts with PREFIX, in key order: a line per pair, the key, a tab and
        /// the value ("" for every key)
        #[arg(long, value_name = "PREFIX", allow_hyphen_values = true)]
        prefix: Option<String>,
        /// Every key from FROM (included) to TO (excluded), in key order, as --prefix prints
        #[arg(
            long,
            num_args = 2,
            value_names = ["FROM", "TO"],
            allow_hyphen_values = true
        )]
        range: Option<Vec<String>>,
        /// At most N pairs (with --prefix or --range)
        #[arg(
            long,
            value_name = "N",
            requires = "many",
            value_parser = RangedU64ValueParser::<u64>::new().range(1..)
        )]
        limit: Option<u64>,
        /// Read one node's state, without ReadIndex (may be stale)
        #[arg(long)]
        stale: bool,
        /// Print the value in hex (and with --prefix or --range the keys too)
        #[arg(long, conflicts_with = "output")]
        hex: bool,
        /// Write the value's bytes to FILE, exactly, instead of printing it (a single KEY)
        #[arg(long, value_name = "FILE", conflicts_with = "many")]
        output: Option<PathBuf>,
        /// KEY, PREFIX, FROM and TO are written in hex (two digits a byte)
        #[arg(long)]
        hex_key: bool,
        /// Where the cluster is.
        #[command(flatten)]
        endpoints: Endpoints,
        /// How long to wait.
        #[command(flatten)]
        timeouts: Timeouts,
    },
    /// Delete KEY, or every key that starts with a prefix; print how many keys were deleted
    #[command(name = "del")]
    Delete {
        /// The key
        #[arg(
            allow_negative_numbers = true,
            required_unless_present = "prefix",
            conflicts_with = "prefix"
        )]
        key: Option<String>,
        /// Every key that starts with PREFIX, in batches of at most 1,000 keys (one replicated
        /// command each)
        #[arg(long, value_name = "PREFIX", allow_hyphen_values = true)]
        prefix: Option<String>,
        /// KEY or PREFIX is written in hex (two digits a byte)
        #[arg(long)]
        hex_key: bool,
        /// Where the cluster is.
        #[command(flatten)]
        endpoints: Endpoints,
        /// How long to wait.
        #[command(flatten)]
        timeouts: Timeouts,
    },
    /// Set KEY to NEW if it holds EXPECTED (exit 1 on a mismatch)
    Cas {
        /// The key
        #[arg(allow_negative_numbers = true)]
        key: String,
        /// The value KEY must hold; "-": KEY must be absent
        #[arg(allow_negative_numbers = true)]
        expected: String,
        /// The new value
        #[arg(allow_negative_numbers = true)]
        new: String,
        /// Where the cluster is.
        #[command(flatten)]
        endpoints: Endpoints,
        /// How long to wait.
        #[command(flatten)]
        timeouts: Timeouts,
    },
    /// Every endpoint's role, term and indexes
    Status {
        /// One JSON array, an object per endpoint, instead of a table
        #[arg(long)]
        json: bool,
        /// Ask again every --interval until Ctrl-C or SIGTERM (exit 0): on a terminal the table
        /// is redrawn in place; otherwise each refresh follows a `--- TIME` line (UTC), or with
        /// --json is one JSON object per line. An endpoint that stops answering shows as
        /// unreachable; the watch goes on
        #[arg(long)]
        watch: bool,
        /// How often --watch asks: a DURATION, a whole number with ms, s, m or h (a bare
        /// number is milliseconds)
        #[arg(
            long,
            value_name = "DURATION",
            default_value = "1s",
            value_parser = parse_duration,
            requires = "watch"
        )]
        interval: Duration,
        /// Where the cluster is.
        #[command(flatten)]
        endpoints: Endpoints,
        /// How long to wait.
        #[command(flatten)]
        timeouts: Timeouts,
    },
    /// Hand leadership to node ID
    Transfer {
        /// The node to hand leadership to
        #[arg(value_name = "ID", value_parser = parse_node_id)]
        to: u64,
        /// Where the cluster is.
        #[command(flatten)]
        endpoints: Endpoints,
        /// How long to wait.
        #[command(flatten)]
        timeouts: Timeouts,
    },
    /// Every endpoint snapshots its state machine and compacts its log now; `snapshot save
    /// FILE` fetches a snapshot into a file (a backup)
    #[command(args_conflicts_with_subcommands = true)]
    Snapshot {
        /// `save FILE`; without one, every endpoint snapshots
        #[command(subcommand)]
        action: Option<SnapshotAction>,
        /// Where the cluster is.
        #[command(flatten)]
        endpoints: Endpoints,
        /// How long to wait.
        #[command(flatten)]
        timeouts: Timeouts,
    },
}

/// `balsa snapshot ...`: what else than asking every endpoint to snapshot.
#[derive(Debug, Subcommand)]
pub enum SnapshotAction {
    /// Fetch a consistent snapshot of the state machine from the leader (or --from ID) into
    /// FILE, with its index, term, configuration and CRC-32 (written atomically, mode 0600);
    /// `balsa restore` builds a new cluster from it
    Save(SaveArgs),
}

/// `balsa snapshot save FILE`.
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Where to write the snapshot (a file there is replaced, atomically)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Fetch from node ID (one of the endpoints) instead of the leader
    #[arg(long, value_name = "ID", value_parser = parse_node_id)]
    pub from: Option<u64>,
    /// Where the cluster is.
    #[command(flatten)]
    pub endpoints: Endpoints,
    /// How long to wait.
    #[command(flatten)]
    pub timeouts: Timeouts,
}

/// `balsa restore FILE`: a new node's data directory from a `snapshot save` file.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The file `balsa snapshot save` wrote
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The new node's id
    #[arg(long, value_name = "ID", value_parser = parse_node_id)]
    pub id: u64,
    /// Every member of the new cluster, this node included: the same list for every member,
    /// and the one each is then served with
    #[arg(long, value_name = "ID=IP:PORT,...", value_parser = parse_members)]
    // Fully qualified: clap reads a plain `Vec` as a flag given many times.
    pub cluster: ::std::vec::Vec<(u64, SocketAddr)>,
    /// The new node's data directory: created, or an empty one
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Mixed into the new cluster's id, as serve's --cluster-token: give every member the same
    /// one, and the new cluster a token of its own (default: empty)
    #[arg(
        long,
        value_name = "TOKEN",
        default_value_t = node_defaults().cluster_token,
        hide_default_value = true
    )]
    pub cluster_token: String,
}

/// `balsa members`: list the members (the default), or change them.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct MembersArgs {
    /// What to do; without one, list
    #[command(subcommand)]
    pub action: Option<MembersAction>,
    /// One JSON array, an object per member, instead of a table
    #[arg(long)]
    pub json: bool,
    /// Where the cluster is.
    #[command(flatten)]
    pub endpoints: Endpoints,
    /// How long to wait.
    #[command(flatten)]
    pub timeouts: Timeouts,
}

/// The default `--timeout-ms` of a membership change: a new voter is caught up first.
pub const DEFAULT_CHANGE_TIMEOUT_MS: u64 = 60_000;
/// The longest default attempt of a membership change: a change answers when it completes
/// (seconds, while a learner catches up), so an attempt is given a while before the next goes
/// (with the same token: it joins the first).
pub const DEFAULT_CHANGE_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// `balsa members ...`: list, or one membership change.
#[derive(Debug, Subcommand)]
pub enum MembersAction {
    /// Each member's id, address, role (voter or learner) and lag behind the leader
    List {
        /// One JSON array, an object per member, instead of a table
        #[arg(long)]
        json: bool,
        /// Where the cluster is.
        #[command(flatten)]
        endpoints: Endpoints,
        /// How long to wait.
        #[command(flatten)]
        timeouts: Timeouts,
    },
    /// Add node ID at IP:PORT: as a voter (added as a learner, caught up, then promoted), or
    /// with --learner as a learner
    Add {
        /// The new node and its address
        #[arg(value_name = "ID=IP:PORT", value_parser = parse_member)]
        member: (u64, SocketAddr),
        /// Add it as a learner (receives the log, never votes)
        #[arg(long)]
        learner: bool,
        /// How the change is waited for.
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Make learner ID a voter (after catching it up)
    Promote {
        /// The learner
        #[arg(value_name = "ID", value_parser = parse_node_id)]
        id: u64,
        /// How the change is waited for.
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Remove member ID (its id can never be used again); a removed node stops by itself
    Remove {
        /// The member
        #[arg(value_name = "ID", value_parser = parse_node_id)]
        id: u64,
        /// How the change is waited for.
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Replace member OLD_ID by a new node NEW_ID at IP:PORT, in one joint change
    Replace {
        /// The member to remove
        #[arg(value_name = "OLD_ID", value_parser = parse_node_id)]
        old: u64,
        /// The new voter and its address
        #[arg(value_name = "NEW_ID=IP:PORT", value_parser = parse_member)]
        new: (u64, SocketAddr),
        /// How the change is waited for.
        #[command(flatten)]
        change: ChangeArgs,
    },
}

/// What every membership change takes.
#[derive(Clone, Debug, Args)]
pub struct ChangeArgs {
    /// How long to wait for the change to complete before giving up (outcome then unknown), in
    /// milliseconds
    #[arg(
        long,
        value_name = "MS",
        default_value_t = DEFAULT_CHANGE_TIMEOUT_MS,
        value_parser = value_parser!(u64).range(1..),
        conflicts_with = "timeout"
    )]
    pub timeout_ms: u64,
    /// The same as --timeout-ms, as a DURATION: a whole number with ms, s, m or h (a bare
    /// number is milliseconds) [default: 60s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// How long one attempt waits before it is sent again (the same change: a retry joins it)
    /// [default: 1s, or --timeout if shorter]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub attempt_timeout: Option<Duration>,
    /// Where the cluster is.
    #[command(flatten)]
    pub endpoints: Endpoints,
}

impl ChangeArgs {
    /// `(timeout, attempt timeout)` of the change, from the flags and their defaults.
    pub fn timeouts(&self) -> (Duration, Duration) {
        let timeout = self
            .timeout
            .unwrap_or(Duration::from_millis(self.timeout_ms));
        let attempt = self
            .attempt_timeout
            .unwrap_or(DEFAULT_CHANGE_ATTEMPT_TIMEOUT.min(timeout));
        (timeout, attempt)
    }
}

impl MembersArgs {
    /// Where the cluster is and the key to speak to it with: the subcommand's `--endpoints`
    /// and `--key-file`, or `members`' own when listing without `list`.
    pub fn cluster(&self) -> &Endpoints {
        match &self.action {
            None => &self.endpoints,
            Some(MembersAction::List { endpoints, .. }) => endpoints,
            Some(
                MembersAction::Add { change, .. }
                | MembersAction::Promote { change, .. }
                | MembersAction::Remove { change, .. }
                | MembersAction::Replace { change, .. },
            ) => &change.endpoints,
        }
    }

    /// The nodes to talk to: [`MembersArgs::cluster`]'s addresses.
    pub fn endpoints(&self) -> &[SocketAddr] {
        &self.cluster().addresses
    }

    /// The timeouts of listing: `list`'s flags, or `members`' own without `list` (a change
    /// has its own, [`ChangeArgs::timeouts`]).
    pub fn list_timeouts(&self) -> Timeouts {
        match &self.action {
            Some(MembersAction::List { timeouts, .. }) => *timeouts,
            _ => self.timeouts,
        }
    }
}

impl ClientCommand {
    /// Where the cluster is and the key to speak to it with.
    pub fn cluster(&self) -> &Endpoints {
        match self {
            ClientCommand::Put { endpoints, .. }
            | ClientCommand::Get { endpoints, .. }
            | ClientCommand::Delete { endpoints, .. }
            | ClientCommand::Cas { endpoints, .. }
            | ClientCommand::Status { endpoints, .. }
            | ClientCommand::Transfer { endpoints, .. }
            | ClientCommand::Snapshot { endpoints, .. } => endpoints,
        }
    }

    /// The nodes to talk to.
    pub fn endpoints(&self) -> &[SocketAddr] {
        &self.cluster().addresses
    }

    /// `(timeout, attempt timeout)`: the flags given, else the command's defaults (`status`
    /// waits [`DEFAULT_ASKING_TIMEOUT`] in all, every other the library's timeout).
    pub fn timeouts(&self) -> (Duration, Duration) {
        match self {
            ClientCommand::Status { timeouts, .. } => timeouts.or(DEFAULT_ASKING_TIMEOUT),
            ClientCommand::Put { timeouts, .. }
            | ClientCommand::Get { timeouts, .. }
            | ClientCommand::Delete { timeouts, .. }
            | ClientCommand::Cas { timeouts, .. }
            | ClientCommand::Transfer { timeouts, .. }
            | ClientCommand::Snapshot { timeouts, .. } => timeouts.or_library(),
        }
    }
}

/// `balsa bench`: closed-loop load, or (`--compare`) a plot of earlier runs.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Where the cluster is.
    #[command(flatten)]
    pub endpoints: Endpoints,
    /// Concurrent closed-loop clients
    #[arg(
        long,
        default_value_t = 1,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_BENCH_CLIENTS as u64)
    )]
    pub clients: usize,
    /// Measured writes over all clients
    #[arg(long, default_value_t = 10_000, value_parser = value_parser!(u64).range(1..))]
    pub ops: u64,
    /// Bytes per value
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = 100,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_BENCH_VALUE as u64)
    )]
    pub value_size: usize,
    /// Untimed writes first
    #[arg(long, default_value_t = 1000)]
    pub warmup: u64,
    /// Clients share a socket per load thread and batch their requests
    #[arg(long)]
    pub shared_sockets: bool,
    /// Print one JSON object instead of the table
    #[arg(long)]
    pub json: bool,
    /// Also write the latency distribution to FILE, in HdrHistogram's text format (mixed: the
    /// writes' in FILE, the reads' in FILE.reads)
    #[arg(long, value_name = "FILE")]
    pub hgrm: Option<PathBuf>,
    /// What the measured operations are: put (writes), get (linearizable reads, through
    /// ReadIndex), get-stale (reads from the asked node's state), or mixed:R (a share R of
    /// linearizable reads among writes: 0.9 or 90%)
    #[arg(long, value_name = "WORKLOAD", default_value = "put", value_parser = parse_workload)]
    pub workload: Workload,
    /// Draw the latency by percentile and over time as an SVG picture to FILE (with --compare:
    /// the compared files' percentile curves)
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Run nothing: overlay the percentile curves of these --hgrm files in the --plot picture
    #[arg(
        long,
        value_name = "FILE.hgrm",
        num_args = 1..,
        requires = "plot",
        conflicts_with_all = [
            "clients", "ops", "value_size", "warmup", "shared_sockets", "json", "hgrm", "workload"
        ]
    )]
    pub compare: Vec<PathBuf>,
    /// How long to wait.
    #[command(flatten)]
    pub timeouts: Timeouts,
}

/// `balsa check`: checks of a running cluster.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Which check.
    #[command(subcommand)]
    pub check: Check,
}

/// The checks `balsa check` runs.
#[derive(Debug, Subcommand)]
pub enum Check {
    /// Load the cluster with writes and judge it against this machine's floor (fdatasync and
    /// a UDP round trip, measured on the spot): a PASS/FAIL line per criterion
    Perf(CheckPerfArgs),
}

/// `balsa check perf`.
#[derive(Debug, Args)]
pub struct CheckPerfArgs {
    /// Where the cluster is.
    #[command(flatten)]
    pub endpoints: Endpoints,
    /// How long the load runs. DURATION: a whole number with ms, s, m or h
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Measure fdatasync in DIR: give a directory on the nodes' disk [default: the system's
    /// temporary directory]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// How long to wait.
    #[command(flatten)]
    pub timeouts: Timeouts,
}

/// `--workload`: `put`, `get`, `get-stale`, or `mixed:R` with R a share of reads from 0 to 1,
/// as a fraction (`0.9`) or a percentage (`90%`).
///
/// # Errors
/// One line saying what is wrong: an unknown workload, or a share that is not a number in 0..1.
pub fn parse_workload(text: &str) -> Result<Workload, String> {
    let share = match text.trim() {
        "put" => return Ok(Workload::Put),
        "get" => return Ok(Workload::Get),
        "get-stale" => return Ok(Workload::GetStale),
        other => other.strip_prefix("mixed:").ok_or_else(|| {
            format!("{text:?} is not a workload (put, get, get-stale or mixed:R)")
        })?,
    };
    let shape = || {
        format!(
            "{share:?} is not a share of reads: a fraction from 0 to 1 (0.9) or a percentage \
             from 0% to 100% (90%)"
        )
    };
    let (number, scale) = match share.strip_suffix('%') {
        Some(percent) => (percent, 100.0),
        None => (share, 1.0),
    };
    let value: f64 = number.trim().parse().map_err(|_| shape())?;
    let fraction = value / scale;
    if !(0.0..=1.0).contains(&fraction) {
        return Err(shape());
    }
    // In 0..=1 (checked above, NaN refused by `contains`): the rounded product fits.
    #[allow(
        clippy::cast_possible_truncation,
        reason = "a fraction in 0..=1 times a million fits in u32"
    )]
    let reads_per_million = (fraction * f64::from(MILLION)).round() as u32;
    Ok(Workload::Mixed { reads_per_million })
}

/// `balsa torture`: a real cluster of `balsa serve` processes under a nemesis.
#[derive(Debug, Args)]
pub struct TortureArgs {
    /// Voters in the cluster (membership changes keep between N and N+1)
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = value_parser!(u64).range(3..=7))]
    pub nodes: u64,
    /// How long to inject faults (e.g. 60s, 5m)
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub time: std::time::Duration,
    /// Concurrent clients
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = value_parser!(u64).range(1..=256))]
    pub clients: u64,
    /// Keys the clients share
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = value_parser!(u64).range(1..=10_000))]
    pub keys: u64,
    /// The faults: all, or a list of kill,pause,partition,membership,transfer,snapshot,wipe
    #[arg(long, value_name = "KINDS", default_value = "all", value_parser = parse_nemesis)]
    pub nemesis: NemesisKinds,
    /// How partitions are made: netns (network namespaces; root and `ip`), proxy (a UDP proxy
    /// in this process), or auto (netns when it can)
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = PossibleValuesParser::new(["auto", "netns", "proxy"]))]
    pub net: String,
    /// The seed of the fault schedule and the workload (default: random, printed)
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Write the history as JSON lines to FILE
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
    /// Write an SVG timeline of latencies and faults to FILE
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Print the report as one JSON object
    #[arg(long)]
    pub json: bool,
    /// Keep the nodes' data directories and logs in DIR (default: a temporary directory,
    /// removed after a run that passed)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The clients read with stale reads (from any node's state, without ReadIndex), which
    /// are not linearizable: to watch the checker catch them
    #[arg(long, hide = true)]
    pub stale_reads: bool,
}

/// The kinds of fault `--nemesis` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NemesisKinds(pub Vec<crate::torture::timeline::FaultKind>);

fn parse_nemesis(text: &str) -> Result<NemesisKinds, String> {
    use crate::torture::timeline::FaultKind;
    if text == "all" {
        return Ok(NemesisKinds(FaultKind::ALL.to_vec()));
    }
    if text == "none" {
        return Ok(NemesisKinds(Vec::new()));
    }
    let mut kinds = Vec::new();
    for name in text.split(',') {
        let kind = FaultKind::from_name(name.trim()).ok_or_else(|| {
            format!(
                "unknown fault {name:?} (all, none, or a list of kill,pause,partition,membership,\
                 transfer,snapshot,wipe)"
            )
        })?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    Ok(NemesisKinds(kinds))
}

/// `balsa sim`: seeds `S .. S+N`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("runs").args(["seeds", "seed"]).required(true).multiple(true)))]
pub struct SimArgs {
    /// How many seeds to run (1 when only --seed is given)
    #[arg(long, value_name = "N", value_parser = value_parser!(u64).range(1..))]
    pub seeds: Option<u64>,
    /// The first seed (0 when only --seeds is given)
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Nodes in every run; without it, seed s runs 3, 5 or 7 nodes by s % 3
    #[arg(
        long,
        value_name = "K",
        value_parser = value_parser!(u64).range(2..=u64::from(MAX_NODES))
    )]
    pub nodes: Option<u64>,
    /// Plant one of the core's classic bugs (repeatable)
    #[arg(
        long = "fault",
        value_name = "NAME",
        value_parser = PossibleValuesParser::new(sim::FAULT_NAMES)
    )]
    pub faults: Vec<String>,
    /// Ticks of the chaos phase
    #[arg(long, value_name = "T", default_value_t = sim_defaults().chaos_ticks)]
    pub ticks: u64,
    /// Leave only the checks of consequences (not of the durability rules)
    #[arg(long)]
    pub no_rule_checks: bool,
    /// Keep K nodes down through the liveness phase
    #[arg(long, value_name = "K", default_value_t = sim_defaults().liveness_down)]
    pub liveness_down: u64,
    /// Plant a stale read in the clients
    #[arg(long)]
    pub stale_reads: bool,
    /// A line per seed
    #[arg(short, long)]
    pub verbose: bool,
    /// Print every step of every core and every nemesis action
    #[arg(long)]
    pub trace: bool,
    /// Which seeds run the membership nemesis: some (a third, chosen by the seed), all, none
    #[arg(long, value_enum, value_name = "WHICH", default_value = "some")]
    pub membership: MembershipArg,
}

/// `balsa sim --membership`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MembershipArg {
    /// A third of the seeds, chosen by the seed.
    Some,
    /// Every seed.
    All,
    /// No seed.
    None,
}

impl SimArgs {
    /// The first seed to run.
    pub fn first_seed(&self) -> u64 {
        self.seed.unwrap_or(0)
    }

    /// How many seeds to run: the group "runs" makes sure `--seeds` or `--seed` was given.
    pub fn seed_count(&self) -> u64 {
        self.seeds.unwrap_or(1)
    }
}

/// `balsa completions SHELL`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `--election-ticks MIN-MAX`. Whether the range can work is [`NodeConfig::validate`]'s to say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TickRange {
    /// The shortest election timeout, in ticks.
    pub min: u32,
    /// The end of the range (exclusive), in ticks.
    pub max: u32,
}

impl From<(u32, u32)> for TickRange {
    fn from((min, max): (u32, u32)) -> TickRange {
        TickRange { min, max }
    }
}

impl FromStr for TickRange {
    type Err = String;

    fn from_str(text: &str) -> Result<TickRange, String> {
        let shape = || format!("{text:?} is not MIN-MAX (such as 15-30)");
        let (min, max) = text.split_once('-').ok_or_else(shape)?;
        Ok(TickRange {
            min: min.parse().map_err(|_| shape())?,
            max: max.parse().map_err(|_| shape())?,
        })
    }
}

impl std::fmt::Display for TickRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.min, self.max)
    }
}

/// The library's defaults for a node; its identity and directory are placeholders, never read.
fn node_defaults() -> NodeConfig {
    NodeConfig::new(1, Vec::new(), PathBuf::new())
}

fn default_tick_ms() -> u64 {
    u64::try_from(node_defaults().tick.as_millis()).unwrap_or(u64::MAX)
}

fn default_join_timeout_ms() -> u64 {
    u64::try_from(node_defaults().join_timeout.as_millis()).unwrap_or(u64::MAX)
}

/// The library's defaults for a simulation; the node count is a placeholder, never read.
fn sim_defaults() -> SimConfig {
    SimConfig::new(3)
}

/// `A,B,C`: socket addresses, at least one, no repeats.
fn parse_endpoints(text: &str) -> Result<Vec<SocketAddr>, String> {
    let mut endpoints = Vec::new();
    for item in text.split(',') {
        let address = parse_address(item)?;
        if endpoints.contains(&address) {
            return Err(format!("{address} is listed twice"));
        }
        endpoints.push(address);
    }
    Ok(endpoints)
}

/// `ID=IP:PORT`: one member (id 0 is refused: it is every client's).
fn parse_member(text: &str) -> Result<(u64, SocketAddr), String> {
    let (id, address) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not ID=IP:PORT"))?;
    Ok((parse_node_id(id)?, parse_address(address)?))
}

/// `1=IP:PORT,2=IP:PORT,...`. Repeated ids or addresses are [`NodeConfig::validate`]'s to refuse.
fn parse_members(text: &str) -> Result<Vec<(u64, SocketAddr)>, String> {
    text.split(',')
        .map(|item| {
            let (id, address) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?} is not ID=IP:PORT"))?;
            let id = id
                .trim()
                .parse()
                .map_err(|_| format!("{id:?} is not a node id (a positive integer)"))?;
            Ok((id, parse_address(address)?))
        })
        .collect()
}

/// An address others reach a node at (an endpoint, a member of `--cluster`): `IP:PORT` or
/// `HOST:PORT`, as [`parse_bind_address`], and port 0 is refused (nothing listens there).
fn parse_address(text: &str) -> Result<SocketAddr, String> {
    let address = parse_bind_address(text)?;
    if address.port() == 0 {
        return Err(format!(
            "{:?}: port 0 is not a port a node can be reached at (give the port it listens on)",
            text.trim()
        ));
    }
    Ok(address)
}

/// An address to bind (`--listen`, `--metrics-addr`; port 0 binds any free port) or to reach:
/// `IP:PORT`, or `HOST:PORT` with the host name resolved here, once, when the command line is
/// read (its first IPv4 address, else its first). An empty address is refused.
fn parse_bind_address(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("an empty address (give IP:PORT or HOST:PORT, such as 127.0.0.1:7001)".into());
    }
    if let Ok(address) = text.parse() {
        return Ok(address);
    }
    let shape =
        || format!("{text:?} is not an address (IP:PORT or HOST:PORT, such as 127.0.0.1:7001)");
    let (host, port) = text.rsplit_once(':').ok_or_else(shape)?;
    let port: u16 = port.parse().map_err(|_| shape())?;
    if host.is_empty() || host.contains(':') {
        return Err(shape());
    }
    let resolved: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|error| format!("{text:?}: cannot resolve {host:?}: {error}"))?
        .collect();
    resolved
        .iter()
        .find(|address| address.is_ipv4())
        .or_else(|| resolved.first())
        .copied()
        .ok_or_else(|| format!("{text:?}: {host:?} resolves to no address"))
}

/// A node id to send to the cluster: a positive integer (0 is every client's id).
fn parse_node_id(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(0) => Err("node id 0 is reserved for clients; ids start at 1".into()),
        Ok(id) => Ok(id),
        Err(_) => Err(format!("{text:?} is not a node id (a positive integer)")),
    }
}

/// A duration on the command line: a whole number followed by `ms`, `s`, `m` or `h` (`300ms`,
/// `5s`, `1m`); a bare number is milliseconds. Zero is refused: nothing here waits for no time.
/// Every flag that takes a duration reads it with this (`--timeout`, `--attempt-timeout`).
///
/// # Errors
/// One line saying what is wrong: not a number with a known unit, zero, or too long to count in
/// milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let shape = || {
        format!(
            "{text:?} is not a duration (such as 300ms, 5s or 1m; a bare number is milliseconds)"
        )
    };
    let trimmed = text.trim();
    let digits = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits);
    let millis_per_unit: u64 = match unit {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(shape()),
    };
    if number.is_empty() {
        return Err(shape());
    }
    let too_long = || format!("{text:?} is too long a duration");
    // Only digits are left: a parse error is an overflow.
    let count: u64 = number.parse().map_err(|_| too_long())?;
    let millis = count.checked_mul(millis_per_unit).ok_or_else(too_long)?;
    if millis == 0 {
        return Err(format!("{text:?}: a duration must be longer than zero"));
    }
    Ok(Duration::from_millis(millis))
}

/// Why `serve` without keys is refused, and the two ways on.
pub const NO_KEYS: &str = "no keys: give --peer-key-file and --client-key-file (make each \
     with `balsa keygen FILE`), or --insecure on a trusted network (anyone who can send the \
     node a datagram can then speak for a member or a client)";

/// Why the command line runs no command.
#[derive(Debug)]
pub enum NotRun {
    /// `--help` or `--version`: clap's answer, for stdout, exit status 0.
    Answer(clap::Error),
    /// Bad usage: one line for stderr (`balsa CMD: WHAT (usage: USAGE)`), exit status 2.
    Refused(String),
}

/// Parses the command line (the program's name first), then makes the checks across flags.
pub fn parse(args: Vec<OsString>) -> Result<Cli, NotRun> {
    let words = args.get(1..).unwrap_or_default().to_vec();
    // `serve --config FILE`: the file's settings, as the flags they stand for, after the
    // command line's (see config.rs); clap then reads the whole.
    let (args, from_file) = config::with_file(args)
        .map_err(|message| NotRun::Refused(one_line_of(&message, &words)))?;
    let note = from_file
        .as_ref()
        .map(config::Applied::note)
        .unwrap_or_default();
    let clap_refusal = |error: clap::Error| {
        if error.use_stderr() {
            NotRun::Refused(one_line(&error, &note, &words))
        } else {
            NotRun::Answer(error)
        }
    };
    let matches = Cli::command()
        .try_get_matches_from(&args)
        .map_err(clap_refusal)?;
    let mut cli = Cli::from_arg_matches(&matches)
        .map_err(|error| clap_refusal(error.format(&mut Cli::command())))?;
    if let Command::Serve(serve) = &mut cli.command
        && serve.print_config
        && let Some(("serve", serve_matches)) = matches.subcommand()
    {
        serve.effective_config = config::effective(serve_matches);
    }
    let words = words.as_slice();
    let refused = |message: String| Err(NotRun::Refused(one_line_of(&message, words)));
    match &cli.command {
        // `nodes` is at least 1 (its parser's range).
        Command::Cluster(args) if args.base_port.checked_add(args.nodes - 1).is_none() => {
            refused(format!(
                "--base-port {} leaves no room for {} ports",
                args.base_port, args.nodes
            ))
        }
        Command::Sim(args) if args.first_seed().checked_add(args.seed_count()).is_none() => {
            refused("--seed + --seeds overflows".into())
        }
        // Secure by default: no keys is a choice to be made out loud. (clap makes sure the
        // two key files come together, and never with --insecure.)
        Command::Serve(args) if !args.insecure && args.peer_key_file.is_none() => {
            refused(NO_KEYS.into())
        }
        _ => Ok(cli),
    }
}

/// A refusal of clap's as one line: the first paragraph of its message, without the tips and
/// the pointer to `--help` that follow, then `note` (what a configuration file set).
fn one_line(error: &clap::Error, note: &str, words: &[OsString]) -> String {
    let rendered = error.render().to_string();
    let first = rendered.split("\n\n").next().unwrap_or_default();
    let lines: Vec<&str> = first.lines().map(str::trim).collect();
    let message = lines.join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    one_line_of(&format!("{message}{note}"), words)
}

/// `message` about `balsa SUBCOMMAND` (or `balsa` itself, when the first argument names no
/// subcommand) as one line with the command's usage: `balsa CMD: MESSAGE (usage: USAGE)`.
fn one_line_of(message: &str, words: &[OsString]) -> String {
    let mut balsa = Cli::command();
    // Building names every subcommand `balsa SUBCOMMAND`, as its usage shows.
    balsa.build();
    // The deepest subcommand the leading words name (`balsa members add`), else `balsa`.
    let mut names = Vec::new();
    let mut found: &clap::Command = &balsa;
    for word in words {
        match word.to_str().and_then(|name| found.find_subcommand(name)) {
            Some(subcommand) => {
                names.push(subcommand.get_name().to_owned());
                found = subcommand;
            }
            None => break,
        }
    }
    let mut command = &mut balsa;
    for name in &names {
        command = command
            .find_subcommand_mut(name)
            .expect("each name was found under the one before, just above");
    }
    let path = command
        .get_bin_name()
        .unwrap_or_else(|| command.get_name())
        .to_owned();
    let usage = command.render_usage().to_string();
    let usage = usage.strip_prefix("Usage: ").unwrap_or(&usage);
    // A command with several forms (`balsa members`) shows them all, on one line.
    let forms: Vec<&str> = usage.lines().map(str::trim).collect();
    format!("{path}: {message} (usage: {})", forms.join(" | "))
}

#[cfg(test)]
mod tests {
    //! The clap structs, form by form. The defaults of `--endpoints` assume `BALSA_ENDPOINTS` is
    //! unset in the test's environment.

    use clap::error::ErrorKind;

    use super::*;

    fn parse_line(line: &str) -> Result<Cli, NotRun> {
        let words = std::iter::once("balsa").chain(line.split_whitespace());
        parse(words.map(OsString::from).collect())
    }

    fn command(line: &str) -> Command {
        match parse_line(line) {
            Ok(cli) => cli.command,
            Err(not_run) => panic!("{line:?} was not run: {not_run:?}"),
        }
    }

    /// The one line printed for a refused `line`.
    fn error(line: &str) -> String {
        match parse_line(line) {
            Err(NotRun::Refused(message)) => {
                assert_eq!(message.lines().count(), 1, "{message}");
                message
            }
            Err(NotRun::Answer(answer)) => panic!("{line:?} was answered: {answer}"),
            Ok(cli) => panic!("{line:?} parsed as {:?}", cli.command),
        }
    }

    /// What clap answered `line` with (help or version).
    fn answer(line: &str) -> ErrorKind {
        match parse_line(line) {
            Err(NotRun::Answer(answer)) => answer.kind(),
            Err(NotRun::Refused(message)) => panic!("{line:?} was refused: {message}"),
            Ok(cli) => panic!("{line:?} parsed as {:?}", cli.command),
        }
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("a literal address")
    }

    fn default_endpoints() -> Vec<SocketAddr> {
        vec![
            addr("127.0.0.1:7001"),
            addr("127.0.0.1:7002"),
            addr("127.0.0.1:7003"),
        ]
    }

    fn client(line: &str) -> ClientCommand {
        match command(line) {
            Command::Client(client) => client,
            other => panic!("{line:?} parsed as {other:?}"),
        }
    }

    /// `serve` with `extra`, run `--insecure` (the key flags have tests of their own:
    /// [`serve_keyed`]).
    fn serve(extra: &str) -> Result<ServeArgs, String> {
        serve_keyed(&format!("--insecure {extra}"))
    }

    /// `serve` with `extra`, and no key flag but those in `extra`.
    fn serve_keyed(extra: &str) -> Result<ServeArgs, String> {
        let line = format!(
            "serve --id 1 --cluster 1=127.0.0.1:7001,2=127.0.0.1:7002 --data-dir d1 {extra}"
        );
        match parse_line(&line) {
            Ok(Cli {
                command: Command::Serve(args),
            }) => Ok(args),
            Ok(cli) => panic!("{line:?} parsed as {:?}", cli.command),
            Err(not_run) => match not_run {
                NotRun::Refused(message) => Err(message),
                NotRun::Answer(answer) => panic!("{line:?} was answered: {answer}"),
            },
        }
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_defaults_are_the_librarys() {
        let args = serve("").expect("serve parses");
        assert_eq!(args.id, 1);
        assert_eq!(
            args.cluster,
            vec![(1, addr("127.0.0.1:7001")), (2, addr("127.0.0.1:7002"))]
        );
        assert_eq!(args.data_dir, PathBuf::from("d1"));
        let library = node_defaults();
        assert_eq!(u128::from(args.tick_ms), library.tick.as_millis());
        assert_eq!(args.election_ticks, TickRange::from(library.election_ticks));
        assert_eq!(args.heartbeat_ticks, library.heartbeat_ticks);
        assert_eq!(args.snapshot_entries, library.snapshot_entries);
        assert_eq!(args.snapshot_bytes, library.snapshot_bytes);
        assert_eq!(args.snapshot_trailing, library.snapshot_trailing_entries);
        assert_eq!(args.segment_bytes, library.wal.segment_bytes);
        assert_eq!(args.cluster_token, library.cluster_token);
        assert_eq!(
            u128::from(args.join_timeout_ms),
            library.join_timeout.as_millis()
        );
        assert_eq!(
            (args.cluster_token.as_str(), args.join_timeout_ms),
            ("", 10_000)
        );
        // The figures the usage has always shown.
        assert_eq!(
            (args.tick_ms, args.election_ticks, args.heartbeat_ticks),
            (10, TickRange { min: 15, max: 30 }, 5)
        );
        assert_eq!(
            (
                args.snapshot_entries,
                args.snapshot_bytes,
                args.snapshot_trailing,
                args.segment_bytes
            ),
            (100_000, 64 << 20, 5000, 64 << 20)
        );
        assert!(!args.unsafe_no_fsync && !args.rejoin && !args.wal_direct && !args.join);
        assert_eq!(args.listen, None, "bind the address in --cluster");
    }

    #[test]
    fn serve_takes_every_flag_in_both_spellings() {
        let args = serve(
            "--tick-ms=5 --election-ticks 20-40 --heartbeat-ticks=4 --unsafe-no-fsync \
             --snapshot-entries 1000 --snapshot-bytes=4096 --snapshot-trailing 0 \
             --segment-bytes 1048576 --wal-direct --rejoin --cluster-token=blue \
             --join --join-timeout-ms 250",
        )
        .expect("serve parses");
        assert_eq!(args.tick_ms, 5);
        assert_eq!(args.election_ticks, TickRange { min: 20, max: 40 });
        assert_eq!(args.heartbeat_ticks, 4);
        assert_eq!(
            (
                args.snapshot_entries,
                args.snapshot_bytes,
                args.snapshot_trailing,
                args.segment_bytes
            ),
            (1000, 4096, 0, 1 << 20)
        );
        assert!(args.unsafe_no_fsync && args.wal_direct && args.rejoin && args.join);
        assert_eq!(
            (args.cluster_token.as_str(), args.join_timeout_ms),
            ("blue", 250)
        );
        let args = serve("--listen 127.0.0.1:9001").expect("serve parses");
        assert_eq!(args.listen, Some(addr("127.0.0.1:9001")));
        let args = serve("--listen=[::1]:0").expect("serve parses");
        assert_eq!(args.listen, Some(addr("[::1]:0")));
        let args = serve("--listen localhost:9001 --metrics-addr localhost:9101")
            .expect("host names are addresses");
        assert_eq!(args.listen, Some(addr("127.0.0.1:9001")));
        assert_eq!(args.metrics_addr, Some(addr("127.0.0.1:9101")));
        let args = serve("--cluster-token a-b,c --join-timeout-ms=7").expect("serve parses");
        assert_eq!(
            (args.cluster_token.as_str(), args.join_timeout_ms),
            ("a-b,c", 7)
        );
    }

    #[test]
    fn serve_refuses_what_it_cannot_read() {
        for (line, expected) in [
            ("serve --cluster 1=127.0.0.1:1 --data-dir d", "--id <ID>"),
            ("serve --id 1 --data-dir d", "--cluster <ID=IP:PORT,...>"),
            ("serve --id 1 --cluster 1=127.0.0.1:1", "--data-dir <DIR>"),
            (
                "serve --id 1 --cluster 1=localhost:0 --data-dir d",
                "\"localhost:0\": port 0 is not a port a node can be reached at",
            ),
            (
                "serve --id 1 --cluster 1=127.0.0.1:1,2= --data-dir d",
                "an empty address",
            ),
            (
                "serve --id 1 --cluster 1=127.0.0.1 --data-dir d",
                "\"127.0.0.1\" is not an address",
            ),
            (
                "serve --id 1 --cluster 127.0.0.1:1 --data-dir d",
                "is not ID=IP:PORT",
            ),
            (
                "serve --id 1 --cluster x=127.0.0.1:1 --data-dir d",
                "\"x\" is not a node id",
            ),
            ("serve --id x --cluster 1=127.0.0.1:1 --data-dir d", "'x'"),
        ] {
            let message = error(line);
            assert!(message.contains(expected), "{line:?}: {message}");
            assert!(message.starts_with("balsa serve: "), "{message}");
            assert!(message.contains("(usage: balsa serve "), "{message}");
        }
        for (extra, expected) in [
            ("--election-ticks 30", "is not MIN-MAX"),
            ("--election-ticks a-b", "is not MIN-MAX"),
            ("--tick-ms -3", "'-3'"),
            ("--snapshot-trailing x", "'x'"),
            ("--unsafe-no-fsync=yes", "'yes'"),
            ("--tick-ms 5 --tick-ms 6", "cannot be used multiple times"),
            ("--rejoin --rejoin", "cannot be used multiple times"),
            ("--join --join", "cannot be used multiple times"),
            ("--join=yes", "'yes'"),
            ("--join-timeout-ms x", "'x'"),
            ("--listen 7001", "\"7001\" is not an address"),
            ("--listen :7001", "\":7001\" is not an address"),
            ("--metrics-addr=", "an empty address"),
            (
                "--listen 127.0.0.1:1 --listen 127.0.0.1:2",
                "cannot be used multiple times",
            ),
            ("--join-timeout-ms -1", "'-1'"),
            (
                "--cluster-token",
                "a value is required for '--cluster-token <TOKEN>'",
            ),
            (
                "--cluster-token a --cluster-token b",
                "cannot be used multiple times",
            ),
            ("--tick-ms", "a value is required for '--tick-ms <MS>'"),
            ("--bogus", "unexpected argument '--bogus'"),
            ("stray", "unexpected argument 'stray'"),
        ] {
            let message = serve(extra).expect_err(extra);
            assert!(message.contains(expected), "{extra:?}: {message}");
            assert!(message.starts_with("balsa serve: "), "{message}");
        }
    }

    #[test]
    fn serve_leaves_the_configuration_to_the_library() {
        // Parsed here, refused by `NodeConfig::validate` when `serve` starts.
        for extra in [
            "--election-ticks 30-30",
            "--election-ticks 5-30",
            "--tick-ms 0",
            "--heartbeat-ticks 0",
            "--snapshot-entries 0",
            "--segment-bytes 1000",
            "--join-timeout-ms 0",
        ] {
            assert!(serve(extra).is_ok(), "{extra}");
        }
        let parsed = parse_line(
            "serve --id 4 --cluster 1=127.0.0.1:1,1=127.0.0.1:1 --data-dir d --insecure",
        );
        assert!(parsed.is_ok());
    }

    #[test]
    fn serve_takes_its_key_files_and_their_previous_ones() {
        let args = serve_keyed("--peer-key-file p.key --client-key-file=c.key").expect("parses");
        assert_eq!(
            (args.peer_key_file, args.client_key_file),
            (Some("p.key".into()), Some("c.key".into()))
        );
        assert_eq!(
            (args.previous_peer_key_file, args.previous_client_key_file),
            (None, None)
        );
        assert!(!args.insecure);
        let args = serve_keyed(
            "--peer-key-file p.key --client-key-file c.key --previous-peer-key-file p0.key \
             --previous-client-key-file c0.key",
        )
        .expect("parses");
        assert_eq!(
            (args.previous_peer_key_file, args.previous_client_key_file),
            (Some("p0.key".into()), Some("c0.key".into()))
        );
        let args = serve("").expect("parses");
        assert!(args.insecure && args.peer_key_file.is_none() && args.client_key_file.is_none());
    }

    #[test]
    fn serve_without_keys_says_how_to_make_them_or_to_run_insecure() {
        let message = serve_keyed("").expect_err("no keys");
        assert!(message.starts_with("balsa serve: no keys: "), "{message}");
        for needed in [
            "--peer-key-file",
            "--client-key-file",
            "balsa keygen",
            "--insecure",
        ] {
            assert!(message.contains(needed), "{needed}: {message}");
        }
    }

    #[test]
    fn serve_refuses_half_a_pair_of_keys_a_lone_previous_key_and_keys_with_insecure() {
        for (extra, expected) in [
            (
                "--peer-key-file p",
                "not provided: --client-key-file <FILE>",
            ),
            (
                "--client-key-file c",
                "not provided: --peer-key-file <FILE>",
            ),
            ("--previous-peer-key-file p0", "--peer-key-file <FILE>"),
            (
                "--peer-key-file p --previous-client-key-file c0",
                "--client-key-file <FILE>",
            ),
            (
                "--insecure --peer-key-file p --client-key-file c",
                "cannot be used with",
            ),
            (
                "--insecure --previous-peer-key-file p0",
                "cannot be used with",
            ),
            (
                "--peer-key-file p --client-key-file c --previous-peer-key-file",
                "a value is required for '--previous-peer-key-file <FILE>'",
            ),
            (
                "--peer-key-file p --peer-key-file q --client-key-file c",
                "cannot be used multiple times",
            ),
            ("--insecure=yes", "'yes'"),
        ] {
            let message = serve_keyed(extra).expect_err(extra);
            assert!(message.contains(expected), "{extra:?}: {message}");
            assert!(message.starts_with("balsa serve: "), "{message}");
        }
    }

    #[test]
    fn keygen_takes_one_file() {
        let Command::Keygen(args) = command("keygen peer.key") else {
            panic!("keygen did not parse as keygen");
        };
        assert_eq!(args.file, PathBuf::from("peer.key"));
        assert!(error("keygen").contains("<FILE>"));
        assert!(error("keygen a b").contains("unexpected argument 'b'"));
        assert!(error("keygen --bits 128 a").contains("unexpected argument '--bits'"));
    }

    #[test]
    fn cluster_with_defaults_and_options() {
        let Command::Cluster(args) = command("cluster") else {
            panic!("cluster did not parse as cluster");
        };
        assert_eq!(
            (
                args.nodes,
                args.base_port,
                args.data_dir,
                args.unsafe_no_fsync
            ),
            (3, 7001, PathBuf::from("./balsa-data"), false)
        );
        let Command::Cluster(args) =
            command("cluster --nodes 5 --base-port 9000 --data-dir /tmp/x --unsafe-no-fsync")
        else {
            panic!("cluster did not parse as cluster");
        };
        assert_eq!(
            (
                args.nodes,
                args.base_port,
                args.data_dir,
                args.unsafe_no_fsync
            ),
            (5, 9000, PathBuf::from("/tmp/x"), true)
        );
    }

    #[test]
    fn cluster_refuses_bad_sizes() {
        for (line, expected) in [
            ("cluster --nodes 0", "0 is not in 1..=15"),
            ("cluster --nodes 16", "16 is not in 1..=15"),
            (
                "cluster --base-port 65535 --nodes 2",
                "--base-port 65535 leaves no room for 2 ports",
            ),
            ("cluster --base-port 0", "0 is not in 1..=65535"),
            ("cluster --base-port 70000", "70000 is not in 1..=65535"),
            ("cluster extra", "unexpected argument 'extra'"),
        ] {
            let message = error(line);
            assert!(message.contains(expected), "{line:?}: {message}");
            assert!(
                message.starts_with("balsa cluster: ") && message.contains("(usage: balsa cluster"),
                "{message}"
            );
        }
        assert!(parse_line("cluster --base-port 65535 --nodes 1").is_ok());
    }

    #[test]
    fn demo_takes_no_arguments() {
        assert!(matches!(command("demo"), Command::Demo));
        assert!(error("demo --nodes 3").contains("unexpected argument '--nodes'"));
        assert!(error("demo now").starts_with("balsa demo: unexpected argument 'now'"));
    }

    #[test]
    fn put_get_del_with_default_and_given_endpoints() {
        let put = client("put k v");
        assert_eq!(put.endpoints(), default_endpoints());
        assert!(
            matches!(put, ClientCommand::Put { key, value: Some(value), .. } if key == "k" && value == "v")
        );
        let get = client("get k --stale --endpoints 127.0.0.1:9,[::1]:10");
        assert_eq!(get.endpoints(), [addr("127.0.0.1:9"), addr("[::1]:10")]);
        assert!(
            matches!(get, ClientCommand::Get { key: Some(key), stale: true, .. } if key == "k")
        );
        assert!(matches!(
            client("get k"),
            ClientCommand::Get { stale: false, .. }
        ));
        let del = client("del k --endpoints=127.0.0.1:9");
        assert_eq!(del.endpoints(), [addr("127.0.0.1:9")]);
        assert!(matches!(del, ClientCommand::Delete { key: Some(key), .. } if key == "k"));
    }

    #[test]
    fn values_that_look_like_flags() {
        assert!(matches!(
            client("put k -5"),
            ClientCommand::Put { value: Some(value), .. } if value == "-5"
        ));
        assert!(matches!(
            client("put - -"),
            ClientCommand::Put { key, value: Some(value), .. } if key == "-" && value == "-"
        ));
        assert!(matches!(
            client("put -- --k --v"),
            ClientCommand::Put { key, value: Some(value), .. } if key == "--k" && value == "--v"
        ));
        assert!(matches!(
            client("cas -- -k -x -y"),
            ClientCommand::Cas { key, expected, new, .. }
                if key == "-k" && expected == "-x" && new == "-y"
        ));
        // A word that is not a number needs `--` before it, or it reads as an unknown flag.
        assert!(error("put k -x").contains("unexpected argument '-x'"));
        assert!(error("put k --v").contains("unexpected argument '--v'"));
    }

    #[test]
    fn put_takes_its_value_from_the_line_standard_input_or_a_file_never_two() {
        assert!(matches!(
            client("put k -"),
            ClientCommand::Put { value: Some(value), value_file: None, .. } if value == "-"
        ));
        assert!(matches!(
            client("put k --value-file v.bin --hex-key"),
            ClientCommand::Put { value: None, value_file: Some(file), hex_key: true, .. }
                if file == std::path::Path::new("v.bin")
        ));
        assert!(error("put k v --value-file v.bin").contains("cannot be used with"));
        assert!(error("put k").contains("required arguments were not provided"));
    }

    #[test]
    fn get_reads_one_key_a_prefix_or_a_range() {
        assert!(matches!(
            client("get --prefix app/ --limit 10 --hex"),
            ClientCommand::Get { key: None, prefix: Some(prefix), limit: Some(10), hex: true, .. }
                if prefix == "app/"
        ));
        assert!(matches!(
            client("get --range a m --stale"),
            ClientCommand::Get { range: Some(range), stale: true, .. } if range == ["a", "m"]
        ));
        assert!(matches!(
            client("get k --output v.bin"),
            ClientCommand::Get {
                output: Some(_),
                ..
            }
        ));
        assert!(error("get k --prefix a").contains("cannot be used with"));
        assert!(error("get --prefix a --range a b").contains("cannot be used with"));
        assert!(error("get k --limit 3").contains("required arguments were not provided"));
        assert!(error("get --prefix a --limit 0").contains("invalid value '0'"));
        assert!(error("get --prefix a --output f").contains("cannot be used with"));
        assert!(error("get k --hex --output f").contains("cannot be used with"));
        assert!(error("get --range a").contains("2 values required"));
        assert!(error("get").contains("required arguments were not provided"));
    }

    #[test]
    fn del_takes_a_key_or_a_prefix() {
        assert!(matches!(
            client("del --prefix app/"),
            ClientCommand::Delete { key: None, prefix: Some(prefix), .. } if prefix == "app/"
        ));
        assert!(error("del k --prefix a").contains("cannot be used with"));
        assert!(error("del").contains("required arguments were not provided"));
    }

    #[test]
    fn cas_with_a_value_or_absent() {
        assert!(matches!(
            client("cas k old new"),
            ClientCommand::Cas { key, expected, new, .. }
                if key == "k" && expected == "old" && new == "new"
        ));
        assert!(matches!(
            client("cas k - new"),
            ClientCommand::Cas { expected, .. } if expected == "-"
        ));
        let message = error("cas k old");
        assert!(
            message.starts_with(
                "balsa cas: the following required arguments were not provided: <NEW>"
            ),
            "{message}"
        );
    }

    #[test]
    fn status_transfer_and_snapshot() {
        let status = client("status");
        assert_eq!(status.endpoints(), default_endpoints());
        assert!(matches!(status, ClientCommand::Status { json: false, .. }));
        assert!(matches!(
            client("status --json"),
            ClientCommand::Status { json: true, .. }
        ));
        assert!(matches!(
            client("transfer 2"),
            ClientCommand::Transfer { to: 2, .. }
        ));
        assert!(error("transfer 0").contains("reserved for clients"));
        assert!(error("transfer two").contains("not a node id"));
        assert!(error("transfer").contains("<ID>"));
        let snapshot = client("snapshot --endpoints 127.0.0.1:9001");
        assert_eq!(snapshot.endpoints(), [addr("127.0.0.1:9001")]);
        assert!(matches!(
            snapshot,
            ClientCommand::Snapshot { action: None, .. }
        ));
    }

    /// `snapshot` alone keeps asking every endpoint; `snapshot save FILE` takes its own
    /// endpoints, `--from` and timeouts.
    #[test]
    fn snapshot_save_takes_a_file_and_a_node_to_save_from() {
        let save = |line: &str| match client(line) {
            ClientCommand::Snapshot {
                action: Some(SnapshotAction::Save(save)),
                ..
            } => save,
            other => panic!("{line:?} parsed as {other:?}"),
        };
        let plain = save("snapshot save b.bsnap");
        assert_eq!(plain.file, PathBuf::from("b.bsnap"));
        assert_eq!(plain.from, None);
        assert_eq!(plain.endpoints.addresses, default_endpoints());
        let from = save("snapshot save b.bsnap --from 3 --endpoints 127.0.0.1:9001 --timeout 2s");
        assert_eq!(from.from, Some(3));
        assert_eq!(from.endpoints.addresses, [addr("127.0.0.1:9001")]);
        assert_eq!(from.timeouts.timeout, Some(Duration::from_secs(2)));
        assert!(error("snapshot save").contains("<FILE>"));
        assert!(error("snapshot save b --from 0").contains("reserved for clients"));
    }

    #[test]
    fn restore_takes_a_file_the_new_members_and_a_directory() {
        let Command::Restore(restore) = command(
            "restore b.bsnap --id 2 --cluster 1=127.0.0.1:7001,2=127.0.0.1:7002 --data-dir d2",
        ) else {
            panic!("restore parses as restore");
        };
        assert_eq!(restore.file, PathBuf::from("b.bsnap"));
        assert_eq!(restore.id, 2);
        assert_eq!(
            restore.cluster,
            [(1, addr("127.0.0.1:7001")), (2, addr("127.0.0.1:7002"))]
        );
        assert_eq!(restore.data_dir, PathBuf::from("d2"));
        assert_eq!(restore.cluster_token, node_defaults().cluster_token);
        assert!(error("restore b.bsnap --id 1 --cluster 1=127.0.0.1:7001").contains("--data-dir"));
        assert!(error("restore --id 1 --cluster 1=127.0.0.1:7001 --data-dir d").contains("<FILE>"));
    }

    #[test]
    fn status_watches_every_interval_one_second_by_default() {
        let watched = |line: &str| match client(line) {
            ClientCommand::Status {
                watch,
                interval,
                json,
                ..
            } => (watch, interval, json),
            other => panic!("{line:?} parsed as {other:?}"),
        };
        let second = Duration::from_secs(1);
        assert_eq!(watched("status"), (false, second, false));
        assert_eq!(watched("status --watch"), (true, second, false));
        assert_eq!(
            watched("status --watch --json --interval 250ms"),
            (true, Duration::from_millis(250), true)
        );
        assert!(error("status --interval 2s").contains("--watch"));
        assert!(error("status --watch --interval 0").contains("longer than zero"));
    }

    #[test]
    fn client_commands_refuse_bad_usage() {
        for (line, expected) in [
            (
                "put k",
                "balsa put: the following required arguments were not provided: <VALUE>",
            ),
            (
                "put",
                "balsa put: the following required arguments were not provided: <KEY> <VALUE>",
            ),
            ("put k v w", "unexpected argument 'w'"),
            ("get k --json", "unexpected argument '--json'"),
            ("get", "<KEY>"),
            ("del", "<KEY>"),
            ("status --stale", "unexpected argument '--stale'"),
            ("status --json --json", "cannot be used multiple times"),
            (
                "get k --endpoints",
                "a value is required for '--endpoints <A,B,C>'",
            ),
            ("get k --endpoints nowhere", "\"nowhere\" is not an address"),
            ("get k --endpoints 127.0.0.1:1,", "an empty address"),
            (
                "get k --endpoints 127.0.0.1:0",
                "port 0 is not a port a node can be reached at",
            ),
            ("get k --endpoints ,", "an empty address"),
            (
                "get k --endpoints localhost",
                "\"localhost\" is not an address",
            ),
            (
                "get k --endpoints 127.0.0.1:1,127.0.0.1:1",
                "127.0.0.1:1 is listed twice",
            ),
            (
                "get k --endpoints 127.0.0.1:1 --endpoints 127.0.0.1:2",
                "cannot be used multiple times",
            ),
        ] {
            let message = error(line);
            assert!(message.contains(expected), "{line:?}: {message}");
            assert!(message.contains("(usage: balsa "), "{message}");
            assert_eq!(message.lines().count(), 1, "{message}");
        }
    }

    #[test]
    fn help_version_and_unknown_subcommands() {
        for line in [
            "--help",
            "-h",
            "help",
            "put --help",
            "serve -h",
            "help sim",
            "put k -h",
        ] {
            assert_eq!(answer(line), ErrorKind::DisplayHelp, "{line}");
        }
        for line in ["--version", "-V"] {
            assert_eq!(answer(line), ErrorKind::DisplayVersion, "{line}");
        }
        assert!(error("").starts_with("balsa: 'balsa' requires a subcommand"));
        assert!(error("frobnicate").starts_with("balsa: unrecognized subcommand 'frobnicate'"));
        assert!(error("--bogus").starts_with("balsa: unexpected argument '--bogus'"));
    }

    #[test]
    fn sim_takes_its_flags() {
        let Command::Sim(args) = command("sim --seed 7 --nodes 5") else {
            panic!("sim did not parse as sim");
        };
        assert_eq!(
            (args.first_seed(), args.seed_count(), args.nodes),
            (7, 1, Some(5))
        );
        let Command::Sim(args) = command(
            "sim --seeds 3 --fault forget-vote-on-restart --fault ack-before-persist --ticks 50 \
             --no-rule-checks --liveness-down 2 --stale-reads -v --trace",
        ) else {
            panic!("sim did not parse as sim");
        };
        assert_eq!(
            (args.first_seed(), args.seed_count(), args.nodes),
            (0, 3, None)
        );
        assert_eq!(
            args.faults,
            ["forget-vote-on-restart", "ack-before-persist"]
        );
        assert_eq!((args.ticks, args.liveness_down), (50, 2));
        assert!(args.no_rule_checks && args.stale_reads && args.verbose && args.trace);
        let Command::Sim(args) = command("sim --seeds 1") else {
            panic!("sim did not parse as sim");
        };
        let library = sim_defaults();
        assert_eq!(
            (args.ticks, args.liveness_down),
            (library.chaos_ticks, library.liveness_down)
        );
        assert!(!args.no_rule_checks && !args.stale_reads && !args.verbose && !args.trace);
    }

    #[test]
    fn sim_refuses_bad_usage() {
        for (line, expected) in [
            ("sim", "the following required arguments were not provided"),
            ("sim --seeds", "a value is required for '--seeds <N>'"),
            ("sim --seeds x", "'x'"),
            ("sim --seeds 0", "0 is not in 1.."),
            ("sim --seeds 3 --bogus", "unexpected argument '--bogus'"),
            (
                "sim --seeds 3 --fault nope",
                "invalid value 'nope' for '--fault <NAME>'",
            ),
            ("sim --seeds 3 --nodes 1", "1 is not in 2..=15"),
            (
                "sim --seeds 2 --seed 18446744073709551615",
                "--seed + --seeds overflows",
            ),
        ] {
            let message = error(line);
            assert!(message.contains(expected), "{line:?}: {message}");
            assert!(message.starts_with("balsa sim: "), "{message}");
        }
    }

    /// `balsa bench`'s settings, in the order of its flags.
    fn bench(
        line: &str,
    ) -> (
        Vec<SocketAddr>,
        usize,
        u64,
        usize,
        u64,
        bool,
        bool,
        Option<PathBuf>,
    ) {
        let Command::Bench(args) = command(line) else {
            panic!("{line:?} did not parse as bench");
        };
        (
            args.endpoints.addresses,
            args.clients,
            args.ops,
            args.value_size,
            args.warmup,
            args.shared_sockets,
            args.json,
            args.hgrm,
        )
    }

    #[test]
    fn bench_defaults_and_every_flag() {
        assert_eq!(
            bench("bench"),
            (
                default_endpoints(),
                1,
                10_000,
                100,
                1000,
                false,
                false,
                None
            )
        );
        assert_eq!(
            bench(
                "bench --endpoints 127.0.0.1:9001 --clients 64 --ops 5 --value-size 7 --warmup 0 \
                 --shared-sockets --json --hgrm out.hgrm"
            ),
            (
                vec![addr("127.0.0.1:9001")],
                64,
                5,
                7,
                0,
                true,
                true,
                Some(PathBuf::from("out.hgrm"))
            )
        );
    }

    #[test]
    fn bench_refuses_out_of_range_values() {
        for (line, expected) in [
            ("bench --clients 0", "0 is not in 1..=1024"),
            ("bench --clients 1025", "1025 is not in 1..=1024"),
            ("bench --ops 0", "0 is not in 1.."),
            ("bench --value-size 0", "0 is not in 1..=60000"),
            ("bench --value-size 60001", "60001 is not in 1..=60000"),
            ("bench --ops -1", "'-1'"),
            ("bench --hgrm=", "'--hgrm <FILE>'"),
            ("bench extra", "unexpected argument 'extra'"),
        ] {
            let message = error(line);
            assert!(message.contains(expected), "{line}: {message}");
            assert!(message.starts_with("balsa bench: "), "{message}");
        }
    }

    fn bench_args(line: &str) -> BenchArgs {
        match command(line) {
            Command::Bench(args) => args,
            other => panic!("{line:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn bench_workloads_parse_as_fractions_or_percentages() {
        let mixed = |reads_per_million| Workload::Mixed { reads_per_million };
        assert_eq!(bench_args("bench").workload, Workload::Put);
        for (given, expected) in [
            ("put", Workload::Put),
            ("get", Workload::Get),
            ("get-stale", Workload::GetStale),
            ("mixed:0.9", mixed(900_000)),
            ("mixed:90%", mixed(900_000)),
            ("mixed:0", mixed(0)),
            ("mixed:1", mixed(MILLION)),
            ("mixed:100%", mixed(MILLION)),
            ("mixed:12.5%", mixed(125_000)),
            ("mixed:.25", mixed(250_000)),
        ] {
            let line = format!("bench --workload {given}");
            assert_eq!(bench_args(&line).workload, expected, "{given}");
        }
        for (given, says) in [
            ("mixed:1.5", "is not a share of reads"),
            ("mixed:-0.1", "is not a share of reads"),
            ("mixed:101%", "is not a share of reads"),
            ("mixed:NaN", "is not a share of reads"),
            ("mixed:", "is not a share of reads"),
            ("mixed:half", "is not a share of reads"),
            ("mixed", "is not a workload"),
            ("scan", "is not a workload"),
        ] {
            let message = error(&format!("bench --workload {given}"));
            assert!(message.starts_with("balsa bench: "), "{message}");
            assert!(message.contains(says), "{given}: {message}");
        }
    }

    #[test]
    fn bench_compare_takes_files_and_needs_a_plot() {
        let args = bench_args("bench --compare a.hgrm b.hgrm --plot out.svg");
        assert_eq!(
            args.compare,
            vec![PathBuf::from("a.hgrm"), PathBuf::from("b.hgrm")]
        );
        assert_eq!(args.plot, Some(PathBuf::from("out.svg")));
        assert_eq!(
            bench_args("bench --plot run.svg").plot,
            Some(PathBuf::from("run.svg"))
        );
        assert!(bench_args("bench").compare.is_empty());
        for (line, says) in [
            ("bench --compare a.hgrm", "--plot"),
            (
                "bench --compare a.hgrm --plot o.svg --clients 4",
                "--clients",
            ),
            (
                "bench --compare a.hgrm --plot o.svg --workload get",
                "--workload",
            ),
            ("bench --compare --plot o.svg", "--compare"),
        ] {
            let message = error(line);
            assert!(message.starts_with("balsa bench: "), "{message}");
            assert!(message.contains(says), "{line}: {message}");
        }
    }

    fn check_perf(line: &str) -> CheckPerfArgs {
        match command(line) {
            Command::Check(CheckArgs {
                check: Check::Perf(args),
            }) => args,
            other => panic!("{line:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn check_perf_defaults_and_flags() {
        let args = check_perf("check perf");
        assert_eq!(args.duration, Duration::from_secs(30));
        assert_eq!(args.dir, None);
        assert_eq!(args.endpoints.addresses, default_endpoints());
        let args = check_perf(
            "check perf --duration 2s --dir /some/disk --endpoints 127.0.0.1:9001 --timeout 1s",
        );
        assert_eq!(args.duration, Duration::from_secs(2));
        assert_eq!(args.dir, Some(PathBuf::from("/some/disk")));
        assert_eq!(args.endpoints.addresses, vec![addr("127.0.0.1:9001")]);
        assert_eq!(args.timeouts.timeout, Some(Duration::from_secs(1)));
        for (line, says) in [
            ("check perf --duration 0s", "longer than zero"),
            ("check perf --duration soon", "is not a duration"),
            ("check", "balsa check"),
            ("check speed", "unrecognized subcommand"),
        ] {
            let message = error(line);
            assert!(message.starts_with("balsa check"), "{message}");
            assert!(message.contains(says), "{line}: {message}");
        }
    }

    fn members(line: &str) -> MembersArgs {
        match command(line) {
            Command::Members(args) => args,
            other => panic!("{line:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn members_forms_parse_with_their_flags() {
        let listed = members("members");
        assert!(listed.action.is_none() && !listed.json);
        assert_eq!(listed.endpoints(), default_endpoints());
        assert!(members("members --json").json);
        let listed = members("members list --json --endpoints 127.0.0.1:9");
        assert!(matches!(
            listed.action,
            Some(MembersAction::List { json: true, .. })
        ));
        assert_eq!(listed.endpoints(), [addr("127.0.0.1:9")]);
        let added = members("members add 4=127.0.0.1:7004 --learner --timeout-ms 500");
        let Some(MembersAction::Add {
            member,
            learner,
            change,
        }) = &added.action
        else {
            panic!("not an add: {added:?}");
        };
        assert_eq!(*member, (4, addr("127.0.0.1:7004")));
        assert!(*learner);
        assert_eq!(change.timeout_ms, 500);
        let promoted = members("members promote 4");
        assert!(matches!(
            promoted.action,
            Some(MembersAction::Promote { id: 4, ref change }) if change.timeout_ms == 60_000
        ));
        assert!(matches!(
            members("members remove 2").action,
            Some(MembersAction::Remove { id: 2, .. })
        ));
        let replaced = members("members replace 1 5=127.0.0.1:7005 --endpoints 127.0.0.1:7002");
        assert!(matches!(
            replaced.action,
            Some(MembersAction::Replace {
                old: 1,
                new: (5, _),
                ..
            })
        ));
        assert_eq!(replaced.endpoints(), [addr("127.0.0.1:7002")]);
    }

    #[test]
    fn host_names_are_resolved_once_wherever_an_address_is_taken() {
        let Ok(Cli {
            command: Command::Client(operation),
        }) = parse_line("get k --endpoints localhost:7001,127.0.0.1:7002")
        else {
            panic!("a host name is an endpoint");
        };
        assert_eq!(
            operation.endpoints(),
            [addr("127.0.0.1:7001"), addr("127.0.0.1:7002")]
        );
        // Resolved, the same address twice is caught as such.
        let twice = error("get k --endpoints localhost:7001,127.0.0.1:7001");
        assert!(twice.contains("127.0.0.1:7001 is listed twice"), "{twice}");
        assert_eq!(
            parse_members("1=localhost:7001,2=127.0.0.1:7002"),
            Ok(vec![
                (1, addr("127.0.0.1:7001")),
                (2, addr("127.0.0.1:7002"))
            ])
        );
        assert_eq!(parse_bind_address(" localhost:0 "), Ok(addr("127.0.0.1:0")));
        assert!(parse_address("localhost:0").is_err());
    }

    #[test]
    fn members_refuses_bad_usage_in_one_line() {
        for (line, expected) in [
            ("members add 4", "\"4\" is not ID=IP:PORT"),
            ("members add 0=127.0.0.1:1", "node id 0 is reserved"),
            ("members add 4=localhost:0", "port 0 is not a port"),
            ("members add 4=", "an empty address"),
            ("members remove", "<ID>"),
            ("members remove x", "\"x\" is not a node id"),
            ("members promote 0", "node id 0 is reserved"),
            ("members replace 1", "<NEW_ID=IP:PORT>"),
            ("members remove 2 --timeout-ms 0", "0 is not in 1.."),
            ("members frob", "unrecognized subcommand 'frob'"),
            ("members --json remove 2", "cannot be used with '--json'"),
            ("members list --learner", "unexpected argument '--learner'"),
        ] {
            let message = error(line);
            assert!(message.contains(expected), "{line:?}: {message}");
            assert!(message.starts_with("balsa members"), "{message}");
        }
    }

    #[test]
    fn completions_for_the_shells() {
        for shell in ["bash", "zsh", "fish"] {
            let Command::Completions(args) = command(&format!("completions {shell}")) else {
                panic!("completions did not parse as completions");
            };
            assert_eq!(args.shell.to_string(), shell);
        }
        assert!(error("completions tcsh").contains("invalid value 'tcsh'"));
    }

    #[test]
    fn durations_take_a_unit_or_are_milliseconds() {
        let ms = Duration::from_millis;
        for (text, expected) in [
            ("300ms", ms(300)),
            ("5s", ms(5_000)),
            ("1m", ms(60_000)),
            ("2h", ms(7_200_000)),
            ("250", ms(250)),
            (" 7s ", ms(7_000)),
            ("007ms", ms(7)),
        ] {
            assert_eq!(parse_duration(text), Ok(expected), "{text:?}");
        }
        for (text, expected) in [
            ("0", "longer than zero"),
            ("0s", "longer than zero"),
            ("0ms", "longer than zero"),
            ("", "is not a duration"),
            ("s", "is not a duration"),
            ("5 s", "is not a duration"),
            ("5sec", "is not a duration"),
            ("1.5s", "is not a duration"),
            ("-5s", "is not a duration"),
            ("+5s", "is not a duration"),
            ("5S", "is not a duration"),
            ("ten", "is not a duration"),
            ("99999999999999999999", "too long"),
            ("18446744073709551615h", "too long"),
        ] {
            let message = parse_duration(text).expect_err(text);
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }

    #[test]
    fn client_commands_bench_and_members_take_a_key_file() {
        let given = |line: &str| match command(line) {
            Command::Client(client) => client.cluster().key_file.clone(),
            Command::Bench(args) => args.endpoints.key_file,
            Command::Members(args) => args.cluster().key_file.clone(),
            other => panic!("{line:?} parsed as {other:?}"),
        };
        for line in [
            "put k v",
            "get k --stale",
            "del k",
            "cas k a b",
            "status --json",
            "transfer 3",
            "snapshot",
            "bench --clients 2",
            "members",
            "members --json",
            "members list",
            "members add 4=127.0.0.1:7004",
            "members promote 4",
            "members remove 2",
            "members replace 1 5=127.0.0.1:7005",
        ] {
            assert_eq!(given(line), None, "{line}: plaintext without one");
            assert_eq!(
                given(&format!("{line} --key-file client.key")),
                Some(PathBuf::from("client.key")),
                "{line}"
            );
        }
        assert!(
            error("put k v --key-file").contains("a value is required for '--key-file <FILE>'")
        );
        assert!(error("get k --key-file a --key-file b").contains("cannot be used multiple times"));
    }

    #[test]
    fn client_commands_bench_and_members_take_timeouts() {
        let given = |line: &str| match command(line) {
            Command::Client(client) => client.timeouts(),
            Command::Bench(args) => args.timeouts.or_library(),
            Command::Members(args) => args.list_timeouts().or(DEFAULT_ASKING_TIMEOUT),
            other => panic!("{line:?} parsed as {other:?}"),
        };
        let expected = (Duration::from_secs(3), Duration::from_millis(50));
        for line in [
            "put k v",
            "get k --stale",
            "del k",
            "cas k a b",
            "status --json",
            "transfer 3",
            "snapshot",
            "bench --clients 2",
            "members",
            "members --json",
            "members list",
        ] {
            assert_eq!(
                given(&format!("{line} --timeout 3s --attempt-timeout 50ms")),
                expected,
                "{line}"
            );
        }
        let library = ClientOptions::default();
        // The figures the help text names.
        assert_eq!(
            (library.timeout, library.attempt_timeout),
            (Duration::from_secs(5), Duration::from_millis(300))
        );
        assert_eq!(given("bench"), (library.timeout, library.attempt_timeout));
        assert_eq!(
            given("members list"),
            (Duration::from_secs(1), library.attempt_timeout)
        );
    }

    #[test]
    fn a_membership_change_takes_its_timeout_in_either_spelling() {
        let change = |line: &str| match members(line).action {
            Some(
                MembersAction::Add { change, .. }
                | MembersAction::Promote { change, .. }
                | MembersAction::Remove { change, .. }
                | MembersAction::Replace { change, .. },
            ) => change.timeouts(),
            other => panic!("{line:?} is not a change: {other:?}"),
        };
        let s = Duration::from_secs;
        assert_eq!(change("members remove 2"), (s(60), s(1)));
        assert_eq!(change("members remove 2 --timeout-ms 5000"), (s(5), s(1)));
        assert_eq!(change("members remove 2 --timeout 2m"), (s(120), s(1)));
        assert_eq!(
            change("members promote 4 --timeout 400ms"),
            (Duration::from_millis(400), Duration::from_millis(400))
        );
        assert_eq!(
            change("members add 4=127.0.0.1:7004 --attempt-timeout 3s"),
            (s(60), s(3))
        );
        assert!(
            error("members remove 2 --timeout 1s --timeout-ms 1000")
                .contains("cannot be used with")
        );
    }

    #[test]
    fn zero_and_garbage_timeouts_are_refused_in_one_line() {
        for line in [
            "put k v --timeout 0",
            "get k --attempt-timeout 0ms",
            "status --timeout soon",
            "bench --timeout 1.5s",
            "members --attempt-timeout x",
            "members list --timeout 0s",
            "members remove 2 --timeout 0",
            "snapshot --timeout",
        ] {
            let message = error(line);
            let name = line.split_whitespace().next().unwrap_or_default();
            assert!(
                message.starts_with(&format!("balsa {name}")),
                "{line:?}: {message}"
            );
            assert!(
                message.contains("duration") || message.contains("a value is required"),
                "{line:?}: {message}"
            );
        }
    }
}
