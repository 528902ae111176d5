//! The command line: every form of `balsa` (but `sim`, which parses its own arguments in
//! `sim.rs`) parsed into an [`Invocation`], or refused with a one-line [`UsageError`].
//!
//! ```text
//! balsa serve --id 1 --cluster 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003 --data-dir DIR
//!             [--tick-ms 10] [--election-ticks 15-30] [--heartbeat-ticks 5] [--unsafe-no-fsync]
//!             [--snapshot-entries 100000] [--snapshot-bytes 67108864] [--snapshot-trailing 5000]
//!             [--segment-bytes 67108864] [--rejoin] [--wal-direct]
//! balsa cluster [--nodes 3] [--base-port 7001] [--data-dir ./balsa-data] [--unsafe-no-fsync]
//! balsa demo
//! balsa put KEY VALUE [--endpoints A,B,C]
//! balsa get KEY [--stale] [--endpoints A,B,C]
//! balsa del KEY [--endpoints A,B,C]
//! balsa cas KEY EXPECTED NEW [--endpoints A,B,C]      EXPECTED "-": the key must be absent
//! balsa status [--endpoints A,B,C] [--json]
//! balsa transfer ID [--endpoints A,B,C]
//! balsa snapshot [--endpoints A,B,C]
//! balsa bench [--endpoints A,B,C] [--clients 1] [--ops 10000] [--value-size 100] [--warmup 1000]
//!             [--shared-sockets] [--json] [--hgrm FILE]
//! balsa sim ...
//! ```
//!
//! Grammar shared by every subcommand: flags start with `--` and take their value as the next
//! argument or after `=` (`--nodes 3`, `--nodes=3`); a flag given twice is an error; `--` ends
//! the flags (so a key may start with `--`); `--help` / `-h` asks for the usage. Everything else
//! is a positional argument, so a value such as `-5` or `-` needs no quoting.
//!
//! Configuration checks made here (exit 2 when they fail): addresses parse as `IP:PORT`, node
//! ids are unique and not 0 (the client id), addresses are unique, the node's own id is in the
//! cluster, election ticks are a range `MIN-MAX` with `MIN` above the heartbeat ticks and below
//! `MAX`, the tick is at least 1 ms.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The default client endpoints: the ports `balsa cluster` uses by default.
pub const DEFAULT_ENDPOINTS: &str = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003";

/// The usage of every form, for `balsa --help` and a bad subcommand.
pub const USAGE: &str = "\
usage:
  balsa serve --id ID --cluster ID=IP:PORT,... --data-dir DIR [--tick-ms 10]
              [--election-ticks 15-30] [--heartbeat-ticks 5] [--unsafe-no-fsync]
              [--snapshot-entries 100000] [--snapshot-bytes 67108864]
              [--snapshot-trailing 5000] [--segment-bytes 67108864] [--rejoin]
              [--wal-direct]
  balsa cluster [--nodes 3] [--base-port 7001] [--data-dir ./balsa-data] [--unsafe-no-fsync]
  balsa demo
  balsa put KEY VALUE [--endpoints A,B,C]
  balsa get KEY [--stale] [--endpoints A,B,C]
  balsa del KEY [--endpoints A,B,C]
  balsa cas KEY EXPECTED NEW [--endpoints A,B,C]     (EXPECTED \"-\": the key must be absent)
  balsa status [--endpoints A,B,C] [--json]
  balsa transfer ID [--endpoints A,B,C]
  balsa snapshot [--endpoints A,B,C]
  balsa bench [--endpoints A,B,C] [--clients 1] [--ops 10000] [--value-size 100]
              [--warmup 1000] [--shared-sockets] [--json] [--hgrm FILE]
  balsa sim --seeds N [--seed S] ...
endpoints default to 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
exit status: 0 success, 1 key absent or cas mismatch, 2 bad usage or configuration,
             3 cluster unavailable or timeout (outcome unknown)";

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invocation {
    /// Print this usage text and succeed.
    Help(&'static str),
    /// Run one node.
    Serve(ServeArgs),
    /// Run a local cluster of `balsa serve` processes until they stop.
    Cluster(ClusterArgs),
    /// The guided demonstration.
    Demo,
    /// A client operation.
    Client {
        /// The nodes to talk to.
        endpoints: Vec<SocketAddr>,
        /// What to do.
        operation: ClientOperation,
    },
    /// Closed-loop write load against a running cluster.
    Bench(BenchArgs),
    /// The simulator, with the arguments after `sim`.
    Sim(Vec<String>),
}

/// `balsa bench`'s arguments, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchArgs {
    /// The nodes to talk to.
    pub endpoints: Vec<SocketAddr>,
    /// Concurrent closed-loop clients (1..=1024).
    pub clients: usize,
    /// Measured writes over all clients (≥ 1).
    pub ops: u64,
    /// Bytes per value (1..=MAX_BENCH_VALUE).
    pub value_size: usize,
    /// Untimed writes first.
    pub warmup: u64,
    /// Clients share a socket per load thread and batch their requests (`Sockets::Shared`).
    pub shared_sockets: bool,
    /// Print one JSON object instead of the table.
    pub json: bool,
    /// Write the latency distribution here, in HdrHistogram's text format.
    pub hgrm: Option<PathBuf>,
}

/// The most clients `balsa bench` runs (each with its own session and socket).
pub const MAX_BENCH_CLIENTS: usize = 1024;
/// The largest value `balsa bench` writes: what fits in one request datagram with room to spare.
pub const MAX_BENCH_VALUE: usize = 60_000;

/// `balsa serve`'s arguments, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeArgs {
    /// This node's id.
    pub id: u64,
    /// Every member, this node included.
    pub cluster: Vec<(u64, SocketAddr)>,
    /// Where the write-ahead log lives.
    pub data_dir: PathBuf,
    /// The timer's period in milliseconds.
    pub tick_ms: u64,
    /// Election timeout range in ticks, `[min, max)`.
    pub election_ticks: (u32, u32),
    /// Heartbeat period in ticks.
    pub heartbeat_ticks: u32,
    /// Skip fdatasync (unsafe: a power loss can lose acknowledged writes).
    pub unsafe_no_fsync: bool,
    /// Snapshot once this many entries were applied since the last snapshot.
    pub snapshot_entries: u64,
    /// Snapshot once this many bytes of entries were applied since the last snapshot.
    pub snapshot_bytes: u64,
    /// Entries kept behind a snapshot when compacting, for slightly slow followers.
    pub snapshot_trailing: u64,
    /// WAL segment size in bytes.
    pub segment_bytes: u64,
    /// The data directory was lost: rejoin empty, as a replica that never votes again.
    pub rejoin: bool,
    /// Write the WAL with `O_DIRECT | O_DSYNC` instead of `pwrite` + `fdatasync`; ignored with
    /// `--unsafe-no-fsync`, which syncs nothing while every direct write is durable.
    pub wal_direct: bool,
}

/// `balsa cluster`'s arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterArgs {
    /// How many nodes.
    pub nodes: u16,
    /// Node `i` (from 1) listens on `base_port + i - 1`.
    pub base_port: u16,
    /// Node `i` stores its log in `data_dir/node-i`.
    pub data_dir: PathBuf,
    /// Start every node with `--unsafe-no-fsync`.
    pub unsafe_no_fsync: bool,
}

/// A client subcommand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientOperation {
    /// `put KEY VALUE`.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// `get KEY [--stale]`.
    Get {
        /// The key.
        key: String,
        /// Read one node's state without ReadIndex.
        stale: bool,
    },
    /// `del KEY`.
    Delete {
        /// The key.
        key: String,
    },
    /// `cas KEY EXPECTED NEW`.
    Cas {
        /// The key.
        key: String,
        /// `None`: the key must be absent (given as `-`).
        expected: Option<String>,
        /// The new value.
        new: String,
    },
    /// `status [--json]`.
    Status {
        /// One JSON array instead of a table.
        json: bool,
    },
    /// `transfer ID`.
    Transfer {
        /// The node to hand leadership to.
        to: u64,
    },
    /// `snapshot`: every endpoint snapshots its state machine and compacts its log now.
    Snapshot,
}

/// Bad usage or configuration: one line for stderr, exit status 2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageError {
    /// The subcommand (`serve`, `put`, ...), or empty for `balsa` itself.
    pub command: &'static str,
    /// What is wrong.
    pub message: String,
    /// The subcommand's usage line.
    pub usage: &'static str,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let command = if self.command.is_empty() {
            String::from("balsa")
        } else {
            format!("balsa {}", self.command)
        };
        write!(f, "{command}: {} (usage: {})", self.message, self.usage)
    }
}

impl std::error::Error for UsageError {}

/// What one subcommand accepts.
struct Spec {
    command: &'static str,
    usage: &'static str,
    /// Names of the positional arguments, all required.
    positionals: &'static [&'static str],
    /// Flags that take a value.
    options: &'static [&'static str],
    /// Flags that take none.
    switches: &'static [&'static str],
}

impl Spec {
    fn error(&self, message: impl Into<String>) -> UsageError {
        UsageError {
            command: self.command,
            message: message.into(),
            usage: self.usage,
        }
    }
}

/// The arguments of one subcommand, sorted by kind, before their values are checked.
#[derive(Debug, Default)]
struct Matches {
    positionals: Vec<String>,
    options: Vec<(&'static str, String)>,
    switches: Vec<&'static str>,
    help: bool,
}

impl Matches {
    fn value(&self, flag: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(name, _)| *name == flag)
            .map(|(_, value)| value.as_str())
    }

    fn switch(&self, flag: &str) -> bool {
        self.switches.contains(&flag)
    }
}

/// Sorts `args` into positionals, options and switches as `spec` says.
fn match_args(spec: &Spec, args: &[String]) -> Result<Matches, UsageError> {
    let mut matches = Matches::default();
    let mut args = args.iter();
    let mut flags_ended = false;
    while let Some(arg) = args.next() {
        if flags_ended || !arg.starts_with("--") {
            if !flags_ended && arg == "-h" {
                matches.help = true;
            } else {
                matches.positionals.push(arg.clone());
            }
            continue;
        }
        if arg == "--" {
            flags_ended = true;
            continue;
        }
        if arg == "--help" {
            matches.help = true;
            continue;
        }
        let (name, inline_value) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (arg.as_str(), None),
        };
        if let Some(&flag) = spec.switches.iter().find(|&&flag| flag == name) {
            if inline_value.is_some() {
                return Err(spec.error(format!("{flag} takes no value")));
            }
            if matches.switch(flag) {
                return Err(spec.error(format!("{flag} given twice")));
            }
            matches.switches.push(flag);
        } else if let Some(&flag) = spec.options.iter().find(|&&flag| flag == name) {
            if matches.value(flag).is_some() {
                return Err(spec.error(format!("{flag} given twice")));
            }
            let value = match inline_value {
                Some(value) => value,
                None => args
                    .next()
                    .cloned()
                    .ok_or_else(|| spec.error(format!("{flag} needs a value")))?,
            };
            matches.options.push((flag, value));
        } else {
            return Err(spec.error(format!("unknown flag {name}")));
        }
    }
    if matches.help {
        return Ok(matches);
    }
    let wanted = spec.positionals.len();
    match matches.positionals.len() {
        given if given < wanted => {
            Err(spec.error(format!("missing {}", spec.positionals[given..].join(" "))))
        }
        given if given > wanted => Err(spec.error(format!(
            "unexpected argument {:?}",
            matches.positionals[wanted]
        ))),
        _ => Ok(matches),
    }
}

const SERVE: Spec = Spec {
    command: "serve",
    usage: "balsa serve --id ID --cluster ID=IP:PORT,... --data-dir DIR [--tick-ms 10] \
            [--election-ticks 15-30] [--heartbeat-ticks 5] [--unsafe-no-fsync] \
            [--snapshot-entries 100000] [--snapshot-bytes 67108864] [--snapshot-trailing 5000] \
            [--segment-bytes 67108864] [--rejoin] [--wal-direct]",
    positionals: &[],
    options: &[
        "--id",
        "--cluster",
        "--data-dir",
        "--tick-ms",
        "--election-ticks",
        "--heartbeat-ticks",
        "--snapshot-entries",
        "--snapshot-bytes",
        "--snapshot-trailing",
        "--segment-bytes",
    ],
    switches: &["--unsafe-no-fsync", "--rejoin", "--wal-direct"],
};

const CLUSTER: Spec = Spec {
    command: "cluster",
    usage: "balsa cluster [--nodes 3] [--base-port 7001] [--data-dir ./balsa-data] \
            [--unsafe-no-fsync]",
    positionals: &[],
    options: &["--nodes", "--base-port", "--data-dir"],
    switches: &["--unsafe-no-fsync"],
};

const DEMO: Spec = Spec {
    command: "demo",
    usage: "balsa demo",
    positionals: &[],
    options: &[],
    switches: &[],
};

const PUT: Spec = Spec {
    command: "put",
    usage: "balsa put KEY VALUE [--endpoints A,B,C]",
    positionals: &["KEY", "VALUE"],
    options: &["--endpoints"],
    switches: &[],
};

const GET: Spec = Spec {
    command: "get",
    usage: "balsa get KEY [--stale] [--endpoints A,B,C]",
    positionals: &["KEY"],
    options: &["--endpoints"],
    switches: &["--stale"],
};

const DEL: Spec = Spec {
    command: "del",
    usage: "balsa del KEY [--endpoints A,B,C]",
    positionals: &["KEY"],
    options: &["--endpoints"],
    switches: &[],
};

const CAS: Spec = Spec {
    command: "cas",
    usage: "balsa cas KEY EXPECTED NEW [--endpoints A,B,C] (EXPECTED \"-\": absent)",
    positionals: &["KEY", "EXPECTED", "NEW"],
    options: &["--endpoints"],
    switches: &[],
};

const STATUS: Spec = Spec {
    command: "status",
    usage: "balsa status [--endpoints A,B,C] [--json]",
    positionals: &[],
    options: &["--endpoints"],
    switches: &["--json"],
};

const TRANSFER: Spec = Spec {
    command: "transfer",
    usage: "balsa transfer ID [--endpoints A,B,C]",
    positionals: &["ID"],
    options: &["--endpoints"],
    switches: &[],
};

const SNAPSHOT: Spec = Spec {
    command: "snapshot",
    usage: "balsa snapshot [--endpoints A,B,C]",
    positionals: &[],
    options: &["--endpoints"],
    switches: &[],
};

const BENCH: Spec = Spec {
    command: "bench",
    usage: "balsa bench [--endpoints A,B,C] [--clients 1] [--ops 10000] [--value-size 100] \
            [--warmup 1000] [--shared-sockets] [--json] [--hgrm FILE]",
    positionals: &[],
    options: &[
        "--endpoints",
        "--clients",
        "--ops",
        "--value-size",
        "--warmup",
        "--hgrm",
    ],
    switches: &["--shared-sockets", "--json"],
};

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Invocation, UsageError> {
    let top = |message: String| UsageError {
        command: "",
        message,
        usage: "balsa serve|cluster|demo|put|get|del|cas|status|transfer|snapshot|bench|sim ... \
                (balsa --help)",
    };
    let Some((command, rest)) = args.split_first() else {
        return Err(top("no subcommand given".into()));
    };
    let spec = match command.as_str() {
        "help" | "--help" | "-h" => return Ok(Invocation::Help(USAGE)),
        "sim" => return Ok(Invocation::Sim(rest.to_vec())),
        "serve" => &SERVE,
        "cluster" => &CLUSTER,
        "demo" => &DEMO,
        "put" => &PUT,
        "get" => &GET,
        "del" => &DEL,
        "cas" => &CAS,
        "status" => &STATUS,
        "transfer" => &TRANSFER,
        "bench" => &BENCH,
        "snapshot" => &SNAPSHOT,
        other => return Err(top(format!("unknown subcommand {other:?}"))),
    };
    let matches = match_args(spec, rest)?;
    if matches.help {
        return Ok(Invocation::Help(spec.usage));
    }
    match spec.command {
        "serve" => parse_serve(spec, &matches).map(Invocation::Serve),
        "cluster" => parse_cluster(spec, &matches).map(Invocation::Cluster),
        "demo" => Ok(Invocation::Demo),
        "bench" => parse_bench(spec, &matches).map(Invocation::Bench),
        _ => parse_client(spec, matches),
    }
}

fn parse_client(spec: &Spec, matches: Matches) -> Result<Invocation, UsageError> {
    let endpoints = parse_endpoints(matches.value("--endpoints").unwrap_or(DEFAULT_ENDPOINTS))
        .map_err(|message| spec.error(message))?;
    let json = matches.switch("--json");
    let stale = matches.switch("--stale");
    let mut positionals = matches.positionals.into_iter();
    // match_args checked the count of positionals against the spec.
    let mut next = || positionals.next().unwrap_or_default();
    let operation = match spec.command {
        "put" => ClientOperation::Put {
            key: next(),
            value: next(),
        },
        "get" => ClientOperation::Get { key: next(), stale },
        "del" => ClientOperation::Delete { key: next() },
        "cas" => {
            let key = next();
            let expected = Some(next()).filter(|expected| expected != "-");
            ClientOperation::Cas {
                key,
                expected,
                new: next(),
            }
        }
        "status" => ClientOperation::Status { json },
        "snapshot" => ClientOperation::Snapshot,
        "transfer" => {
            let id = next();
            ClientOperation::Transfer {
                to: parse_node_id(&id).map_err(|message| spec.error(message))?,
            }
        }
        other => unreachable!("parse() sends only client subcommands here, not {other}"),
    };
    Ok(Invocation::Client {
        endpoints,
        operation,
    })
}

fn parse_serve(spec: &Spec, matches: &Matches) -> Result<ServeArgs, UsageError> {
    let required = |flag: &str| {
        matches
            .value(flag)
            .ok_or_else(|| spec.error(format!("{flag} is required")))
    };
    let id = parse_node_id(required("--id")?).map_err(|message| spec.error(message))?;
    let cluster = parse_cluster_members(required("--cluster")?)
        .map_err(|message| spec.error(format!("--cluster: {message}")))?;
    let data_dir = PathBuf::from(required("--data-dir")?);
    if data_dir.as_os_str().is_empty() {
        return Err(spec.error("--data-dir is empty"));
    }
    let tick_ms = match matches.value("--tick-ms") {
        None => 10,
        Some(text) => parse_number::<u64>("--tick-ms", text).map_err(|m| spec.error(m))?,
    };
    if tick_ms == 0 {
        return Err(spec.error("--tick-ms must be at least 1"));
    }
    let heartbeat_ticks = match matches.value("--heartbeat-ticks") {
        None => 5,
        Some(text) => parse_number::<u32>("--heartbeat-ticks", text).map_err(|m| spec.error(m))?,
    };
    if heartbeat_ticks == 0 {
        return Err(spec.error("--heartbeat-ticks must be at least 1"));
    }
    let election_ticks = match matches.value("--election-ticks") {
        None => (15, 30),
        Some(text) => parse_tick_range(text).map_err(|m| spec.error(m))?,
    };
    if election_ticks.0 <= heartbeat_ticks {
        return Err(spec.error(format!(
            "election ticks ({}-{}) must be above the heartbeat ticks ({heartbeat_ticks})",
            election_ticks.0, election_ticks.1
        )));
    }
    if !cluster.iter().any(|(member, _)| *member == id) {
        let ids: Vec<String> = cluster.iter().map(|(id, _)| id.to_string()).collect();
        return Err(spec.error(format!(
            "node {id} is not in the cluster (its ids: {})",
            ids.join(", ")
        )));
    }
    let segment_bytes = number_in(
        spec,
        matches,
        "--segment-bytes",
        64 << 20,
        balsa_wal::SEGMENT_BYTES,
    )?;
    Ok(ServeArgs {
        id,
        cluster,
        data_dir,
        tick_ms,
        election_ticks,
        heartbeat_ticks,
        unsafe_no_fsync: matches.switch("--unsafe-no-fsync"),
        snapshot_entries: at_least(spec, matches, "--snapshot-entries", 100_000, 1)?,
        snapshot_bytes: at_least(spec, matches, "--snapshot-bytes", 64 << 20, 1)?,
        snapshot_trailing: at_least(spec, matches, "--snapshot-trailing", 5000, 0)?,
        segment_bytes,
        rejoin: matches.switch("--rejoin"),
        wal_direct: matches.switch("--wal-direct"),
    })
}

fn parse_cluster(spec: &Spec, matches: &Matches) -> Result<ClusterArgs, UsageError> {
    let nodes = match matches.value("--nodes") {
        None => 3,
        Some(text) => parse_number::<u16>("--nodes", text).map_err(|m| spec.error(m))?,
    };
    if !(1..=15).contains(&nodes) {
        return Err(spec.error(format!("--nodes must be between 1 and 15, not {nodes}")));
    }
    let base_port = match matches.value("--base-port") {
        None => 7001,
        Some(text) => parse_number::<u16>("--base-port", text).map_err(|m| spec.error(m))?,
    };
    if base_port == 0 || base_port.checked_add(nodes - 1).is_none() {
        return Err(spec.error(format!(
            "--base-port {base_port} leaves no room for {nodes} ports"
        )));
    }
    let data_dir = PathBuf::from(matches.value("--data-dir").unwrap_or("./balsa-data"));
    if data_dir.as_os_str().is_empty() {
        return Err(spec.error("--data-dir is empty"));
    }
    Ok(ClusterArgs {
        nodes,
        base_port,
        data_dir,
        unsafe_no_fsync: matches.switch("--unsafe-no-fsync"),
    })
}

/// `A,B,C`: socket addresses, at least one, no repeats.
pub fn parse_endpoints(text: &str) -> Result<Vec<SocketAddr>, String> {
    let mut endpoints = Vec::new();
    for item in text.split(',') {
        let address = parse_address(item).map_err(|message| format!("--endpoints: {message}"))?;
        if endpoints.contains(&address) {
            return Err(format!("--endpoints: {address} is listed twice"));
        }
        endpoints.push(address);
    }
    Ok(endpoints)
}

/// `1=IP:PORT,2=IP:PORT,...`: unique ids (not 0), unique addresses.
fn parse_cluster_members(text: &str) -> Result<Vec<(u64, SocketAddr)>, String> {
    let mut members: Vec<(u64, SocketAddr)> = Vec::new();
    for item in text.split(',') {
        let Some((id, address)) = item.split_once('=') else {
            return Err(format!("{item:?} is not ID=IP:PORT"));
        };
        let id = parse_node_id(id)?;
        let address = parse_address(address)?;
        if members.iter().any(|(member, _)| *member == id) {
            return Err(format!("node id {id} is listed twice"));
        }
        if members.iter().any(|(_, taken)| *taken == address) {
            return Err(format!("address {address} is listed twice"));
        }
        members.push((id, address));
    }
    Ok(members)
}

fn parse_address(text: &str) -> Result<SocketAddr, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{text:?} is not an address (IP:PORT, such as 127.0.0.1:7001)"))
}

/// A node id: a positive integer (0 is every client's id).
fn parse_node_id(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(0) => Err("node id 0 is reserved for clients; ids start at 1".into()),
        Ok(id) => Ok(id),
        Err(_) => Err(format!("{text:?} is not a node id (a positive integer)")),
    }
}

/// `MIN-MAX` with `MIN < MAX`.
fn parse_tick_range(text: &str) -> Result<(u32, u32), String> {
    let shape = || format!("--election-ticks {text:?} is not MIN-MAX (such as 15-30)");
    let (min, max) = text.split_once('-').ok_or_else(shape)?;
    let min: u32 = min.parse().map_err(|_| shape())?;
    let max: u32 = max.parse().map_err(|_| shape())?;
    if min >= max {
        return Err(format!(
            "--election-ticks {min}-{max}: MIN must be below MAX"
        ));
    }
    Ok((min, max))
}

fn parse_bench(spec: &Spec, matches: &Matches) -> Result<BenchArgs, UsageError> {
    let endpoints = parse_endpoints(matches.value("--endpoints").unwrap_or(DEFAULT_ENDPOINTS))
        .map_err(|message| spec.error(message))?;
    let number = |flag: &str, default: u64, range| number_in(spec, matches, flag, default, range);
    let as_usize = |value: u64| usize::try_from(value).unwrap_or(usize::MAX);
    let clients = as_usize(number("--clients", 1, 1..=MAX_BENCH_CLIENTS as u64)?);
    let ops = number("--ops", 10_000, 1..=u64::MAX)?;
    let value_size = as_usize(number("--value-size", 100, 1..=MAX_BENCH_VALUE as u64)?);
    let warmup = number("--warmup", 1000, 0..=u64::MAX)?;
    let hgrm = match matches.value("--hgrm") {
        Some("") => return Err(spec.error("--hgrm is empty")),
        other => other.map(PathBuf::from),
    };
    Ok(BenchArgs {
        endpoints,
        clients,
        ops,
        value_size,
        warmup,
        shared_sockets: matches.switch("--shared-sockets"),
        json: matches.switch("--json"),
        hgrm,
    })
}

/// The number `flag` gives (`default` without it), refused below `min`.
fn at_least(
    spec: &Spec,
    matches: &Matches,
    flag: &str,
    default: u64,
    min: u64,
) -> Result<u64, UsageError> {
    let value = flag_number(spec, matches, flag, default)?;
    if value < min {
        return Err(spec.error(format!("{flag} must be at least {min}, not {value}")));
    }
    Ok(value)
}

/// The number `flag` gives (`default` without it), refused outside `range`.
fn number_in(
    spec: &Spec,
    matches: &Matches,
    flag: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, UsageError> {
    let value = flag_number(spec, matches, flag, default)?;
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(spec.error(format!(
            "{flag} must be between {} and {}, not {value}",
            range.start(),
            range.end()
        )))
    }
}

/// The number `flag` gives, `default` without it.
fn flag_number(
    spec: &Spec,
    matches: &Matches,
    flag: &str,
    default: u64,
) -> Result<u64, UsageError> {
    match matches.value(flag) {
        None => Ok(default),
        Some(text) => parse_number::<u64>(flag, text).map_err(|m| spec.error(m)),
    }
}

fn parse_number<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{flag}: {text:?} is not a number in range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_line(line: &str) -> Result<Invocation, UsageError> {
        let args: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        parse(&args)
    }

    fn error(line: &str) -> String {
        match parse_line(line) {
            Err(error) => error.to_string(),
            Ok(invocation) => panic!("{line:?} parsed as {invocation:?}"),
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

    fn client(line: &str) -> (Vec<SocketAddr>, ClientOperation) {
        match parse_line(line) {
            Ok(Invocation::Client {
                endpoints,
                operation,
            }) => (endpoints, operation),
            other => panic!("{line:?} parsed as {other:?}"),
        }
    }

    const CLUSTER3: &str = "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003";

    fn serve(extra: &str) -> Result<Invocation, UsageError> {
        parse_line(&format!(
            "serve --id 1 --cluster {CLUSTER3} --data-dir d1 {extra}"
        ))
    }

    #[test]
    fn serve_with_defaults() {
        let Ok(Invocation::Serve(args)) = serve("") else {
            panic!("serve did not parse");
        };
        assert_eq!(
            args,
            ServeArgs {
                id: 1,
                cluster: vec![
                    (1, addr("127.0.0.1:7001")),
                    (2, addr("127.0.0.1:7002")),
                    (3, addr("127.0.0.1:7003")),
                ],
                data_dir: PathBuf::from("d1"),
                tick_ms: 10,
                election_ticks: (15, 30),
                heartbeat_ticks: 5,
                unsafe_no_fsync: false,
                snapshot_entries: 100_000,
                snapshot_bytes: 64 << 20,
                snapshot_trailing: 5000,
                segment_bytes: 64 << 20,
                rejoin: false,
                wal_direct: false,
            }
        );
    }

    #[test]
    fn serve_with_every_option_in_both_spellings() {
        let Ok(Invocation::Serve(args)) =
            serve("--tick-ms=5 --election-ticks 20-40 --heartbeat-ticks=4 --unsafe-no-fsync")
        else {
            panic!("serve did not parse");
        };
        assert_eq!(args.tick_ms, 5);
        assert_eq!(args.election_ticks, (20, 40));
        assert_eq!(args.heartbeat_ticks, 4);
        assert!(args.unsafe_no_fsync);
    }

    #[test]
    fn serve_refuses_bad_configuration() {
        let cases = [
            (
                "serve --cluster 1=127.0.0.1:1 --data-dir d",
                "--id is required",
            ),
            ("serve --id 1 --data-dir d", "--cluster is required"),
            (
                "serve --id 1 --cluster 1=127.0.0.1:1",
                "--data-dir is required",
            ),
            (
                "serve --id 4 --cluster 1=127.0.0.1:1,2=127.0.0.1:2 --data-dir d",
                "node 4 is not in the cluster (its ids: 1, 2)",
            ),
            (
                "serve --id 1 --cluster 1=127.0.0.1:1,1=127.0.0.1:2 --data-dir d",
                "node id 1 is listed twice",
            ),
            (
                "serve --id 1 --cluster 1=127.0.0.1:1,2=127.0.0.1:1 --data-dir d",
                "address 127.0.0.1:1 is listed twice",
            ),
            (
                "serve --id 1 --cluster 1=localhost:1 --data-dir d",
                "\"localhost:1\" is not an address",
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
                "serve --id 0 --cluster 1=127.0.0.1:1 --data-dir d",
                "node id 0 is reserved",
            ),
            (
                "serve --id x --cluster 1=127.0.0.1:1 --data-dir d",
                "\"x\" is not a node id",
            ),
        ];
        for (line, expected) in cases {
            let message = error(line);
            assert!(message.contains(expected), "{line:?}: {message}");
            assert!(message.starts_with("balsa serve: "), "{message}");
        }
        let tick_cases = [
            (
                "--election-ticks 5-30",
                "must be above the heartbeat ticks (5)",
            ),
            (
                "--election-ticks 10-20 --heartbeat-ticks 10",
                "must be above the heartbeat ticks (10)",
            ),
            ("--election-ticks 30-30", "MIN must be below MAX"),
            ("--election-ticks 30", "is not MIN-MAX"),
            ("--election-ticks a-b", "is not MIN-MAX"),
            ("--tick-ms 0", "--tick-ms must be at least 1"),
            ("--tick-ms -3", "is not a number"),
            (
                "--heartbeat-ticks 0",
                "--heartbeat-ticks must be at least 1",
            ),
            ("--unsafe-no-fsync=yes", "--unsafe-no-fsync takes no value"),
            ("--tick-ms 5 --tick-ms 6", "--tick-ms given twice"),
            ("--tick-ms", "--tick-ms needs a value"),
            ("--bogus", "unknown flag --bogus"),
            ("stray", "unexpected argument \"stray\""),
        ];
        for (extra, expected) in tick_cases {
            let message = serve(extra).unwrap_err().to_string();
            assert!(message.contains(expected), "{extra:?}: {message}");
        }
    }

    #[test]
    fn cluster_with_defaults_and_options() {
        assert_eq!(
            parse_line("cluster"),
            Ok(Invocation::Cluster(ClusterArgs {
                nodes: 3,
                base_port: 7001,
                data_dir: PathBuf::from("./balsa-data"),
                unsafe_no_fsync: false,
            }))
        );
        assert_eq!(
            parse_line("cluster --nodes 5 --base-port 9000 --data-dir /tmp/x --unsafe-no-fsync"),
            Ok(Invocation::Cluster(ClusterArgs {
                nodes: 5,
                base_port: 9000,
                data_dir: PathBuf::from("/tmp/x"),
                unsafe_no_fsync: true,
            }))
        );
    }

    #[test]
    fn cluster_refuses_bad_sizes() {
        assert!(error("cluster --nodes 0").contains("between 1 and 15"));
        assert!(error("cluster --nodes 16").contains("between 1 and 15"));
        assert!(error("cluster --base-port 65535 --nodes 2").contains("leaves no room"));
        assert!(error("cluster --base-port 0").contains("leaves no room"));
        assert!(error("cluster --base-port 70000").contains("not a number in range"));
        assert!(error("cluster extra").contains("unexpected argument"));
    }

    #[test]
    fn demo_takes_no_arguments() {
        assert_eq!(parse_line("demo"), Ok(Invocation::Demo));
        assert!(error("demo --nodes 3").contains("unknown flag --nodes"));
        assert!(error("demo now").contains("unexpected argument"));
    }

    #[test]
    fn put_get_del_with_default_and_given_endpoints() {
        assert_eq!(
            client("put k v"),
            (
                default_endpoints(),
                ClientOperation::Put {
                    key: "k".into(),
                    value: "v".into()
                }
            )
        );
        assert_eq!(
            client("get k --stale --endpoints 127.0.0.1:9,[::1]:10"),
            (
                vec![addr("127.0.0.1:9"), addr("[::1]:10")],
                ClientOperation::Get {
                    key: "k".into(),
                    stale: true
                }
            )
        );
        assert_eq!(
            client("get k").1,
            ClientOperation::Get {
                key: "k".into(),
                stale: false
            }
        );
        assert_eq!(
            client("del k --endpoints=127.0.0.1:9"),
            (
                vec![addr("127.0.0.1:9")],
                ClientOperation::Delete { key: "k".into() }
            )
        );
    }

    #[test]
    fn values_that_look_like_flags() {
        assert_eq!(
            client("put k -5").1,
            ClientOperation::Put {
                key: "k".into(),
                value: "-5".into()
            }
        );
        assert_eq!(
            client("put -- --k --v").1,
            ClientOperation::Put {
                key: "--k".into(),
                value: "--v".into()
            }
        );
    }

    #[test]
    fn cas_with_a_value_or_absent() {
        assert_eq!(
            client("cas k old new").1,
            ClientOperation::Cas {
                key: "k".into(),
                expected: Some("old".into()),
                new: "new".into()
            }
        );
        assert_eq!(
            client("cas k - new").1,
            ClientOperation::Cas {
                key: "k".into(),
                expected: None,
                new: "new".into()
            }
        );
        assert!(error("cas k old").contains("missing NEW"));
    }

    #[test]
    fn status_and_transfer() {
        assert_eq!(
            client("status"),
            (default_endpoints(), ClientOperation::Status { json: false })
        );
        assert_eq!(
            client("status --json").1,
            ClientOperation::Status { json: true }
        );
        assert_eq!(client("transfer 2").1, ClientOperation::Transfer { to: 2 });
        assert!(error("transfer 0").contains("reserved for clients"));
        assert!(error("transfer two").contains("not a node id"));
        assert!(error("transfer").contains("missing ID"));
    }

    #[test]
    fn client_commands_refuse_bad_usage() {
        let cases = [
            ("put k", "balsa put: missing VALUE"),
            ("put", "balsa put: missing KEY VALUE"),
            ("put k v w", "unexpected argument \"w\""),
            ("get k --json", "unknown flag --json"),
            ("get", "missing KEY"),
            ("del", "missing KEY"),
            ("status --stale", "unknown flag --stale"),
            ("status --json --json", "--json given twice"),
            ("get k --endpoints", "--endpoints needs a value"),
            ("get k --endpoints nowhere", "\"nowhere\" is not an address"),
            ("get k --endpoints 127.0.0.1:1,", "\"\" is not an address"),
            (
                "get k --endpoints 127.0.0.1:1,127.0.0.1:1",
                "127.0.0.1:1 is listed twice",
            ),
            (
                "get k --endpoints 127.0.0.1:1 --endpoints 127.0.0.1:2",
                "--endpoints given twice",
            ),
        ];
        for (line, expected) in cases {
            let message = error(line);
            assert!(message.contains(expected), "{line:?}: {message}");
            assert!(message.contains("(usage: balsa "), "{message}");
        }
    }

    #[test]
    fn help_and_unknown_subcommands() {
        assert_eq!(parse_line("--help"), Ok(Invocation::Help(USAGE)));
        assert_eq!(parse_line("help"), Ok(Invocation::Help(USAGE)));
        assert_eq!(parse_line("put --help"), Ok(Invocation::Help(PUT.usage)));
        assert_eq!(parse_line("serve -h"), Ok(Invocation::Help(SERVE.usage)));
        assert!(error("").contains("no subcommand given"));
        assert!(error("frobnicate").contains("unknown subcommand \"frobnicate\""));
    }

    #[test]
    fn sim_keeps_its_own_arguments() {
        assert_eq!(
            parse_line("sim --seeds 3 --bogus"),
            Ok(Invocation::Sim(vec![
                "--seeds".into(),
                "3".into(),
                "--bogus".into()
            ]))
        );
    }

    #[test]
    fn bench_defaults_and_every_flag() {
        let Ok(Invocation::Bench(args)) = parse_line("bench") else {
            panic!("bench did not parse");
        };
        assert_eq!(
            (
                args.clients,
                args.ops,
                args.value_size,
                args.warmup,
                args.shared_sockets,
                args.json
            ),
            (1, 10_000, 100, 1000, false, false)
        );
        assert_eq!(args.endpoints.len(), 3);
        assert_eq!(args.hgrm, None);
        let Ok(Invocation::Bench(args)) = parse_line(
            "bench --endpoints 127.0.0.1:9001 --clients 64 --ops 5 --value-size 7 --warmup 0 \
             --shared-sockets --json --hgrm out.hgrm",
        ) else {
            panic!("bench with flags did not parse");
        };
        assert_eq!(
            args,
            BenchArgs {
                endpoints: vec![addr("127.0.0.1:9001")],
                clients: 64,
                ops: 5,
                value_size: 7,
                warmup: 0,
                shared_sockets: true,
                json: true,
                hgrm: Some(PathBuf::from("out.hgrm")),
            }
        );
    }

    #[test]
    fn bench_refuses_out_of_range_values() {
        for (line, expected) in [
            (
                "bench --clients 0",
                "--clients must be between 1 and 1024, not 0",
            ),
            (
                "bench --clients 1025",
                "--clients must be between 1 and 1024",
            ),
            ("bench --ops 0", "--ops must be between 1"),
            (
                "bench --value-size 0",
                "--value-size must be between 1 and 60000",
            ),
            (
                "bench --value-size 60001",
                "--value-size must be between 1 and 60000",
            ),
            ("bench --ops -1", "is not a number"),
            ("bench --hgrm=", "--hgrm is empty"),
            ("bench extra", "unexpected argument"),
        ] {
            let message = error(line);
            assert!(message.contains(expected), "{line}: {message}");
        }
    }

    #[test]
    fn serve_takes_the_snapshot_and_segment_sizes() {
        let Ok(Invocation::Serve(args)) = serve(
            "--snapshot-entries 1000 --snapshot-bytes=4096 --snapshot-trailing 0 \
             --segment-bytes 1048576 --wal-direct",
        ) else {
            panic!("serve did not parse");
        };
        assert_eq!(
            (
                args.snapshot_entries,
                args.snapshot_bytes,
                args.snapshot_trailing,
                args.segment_bytes
            ),
            (1000, 4096, 0, 1 << 20)
        );
        assert!(args.wal_direct);
        for (extra, expected) in [
            (
                "--snapshot-entries 0",
                "--snapshot-entries must be at least 1, not 0",
            ),
            (
                "--snapshot-bytes 0",
                "--snapshot-bytes must be at least 1, not 0",
            ),
            (
                "--segment-bytes 1000",
                "--segment-bytes must be between 65536 and",
            ),
            (
                "--segment-bytes 99999999999",
                "--segment-bytes must be between",
            ),
            (
                "--segment-bytes 4294967296",
                "and 4294967295, not 4294967296",
            ),
            ("--snapshot-trailing x", "is not a number"),
        ] {
            let message = serve(extra).expect_err(extra).to_string();
            assert!(message.contains(expected), "{extra}: {message}");
        }
    }

    #[test]
    fn snapshot_is_a_client_command() {
        let (endpoints, operation) = client("snapshot --endpoints 127.0.0.1:9001");
        assert_eq!(endpoints, vec![addr("127.0.0.1:9001")]);
        assert_eq!(operation, ClientOperation::Snapshot);
    }
}
