//! Membership changes on loopback (nodes in this process, each with its own threads, UDP socket
//! and WAL on disk, as `balsa serve` runs them), measured:
//!
//! 1. **Adding a voter to a cluster holding a state**: 3 nodes, 100,000 distinct keys written
//!    (100-byte values, many concurrent clients), every node snapshots on request (whoever
//!    leads then holds a snapshot below its log base, so a new member can only catch up by
//!    it); a fresh node starts with `join` and the leader's `change_membership([AddVoter])` is
//!    timed from the call to its return: the learner added, caught up by the snapshot (and the
//!    log after it), promoted in the joint configuration, the joint configuration left. A
//!    thread polls the new node's status and the leader's configuration every millisecond
//!    meanwhile, to split the time into its parts (first chunk held, installed, caught up,
//!    joint, voter). Beside it, the floor of the same run: writing and fsyncing a file of the
//!    snapshot's size in the same directory, and the loopback round trip of a full snapshot
//!    chunk (with the leader's window of chunks in flight, the least a transfer can take).
//! 2. **Unavailability while the leader removes itself**: a 3-node cluster under closed-loop
//!    writes from a few blocking clients, each success time-stamped; the leader's
//!    `change_membership([Remove leader])`; the longest gap between two successful writes (all
//!    clients together) from the last success before the call until the new leader has
//!    committed writes (100 successes through it, and at least 200 ms after the change
//!    returned). The removed node stops by itself; a fresh node is then added back, so each
//!    trial starts from 3 voters. Min / median / max over the trials, against the minimum
//!    election timeout (the leader hands over with TimeoutNow rather than letting the
//!    followers time out, so the gap should stay below it).
//!
//! Knobs: `BALSA_BENCH_KEYS` (keys written in part 1, default 100,000), `BALSA_BENCH_TRIALS`
//! (trials of part 2, default 10), `BALSA_BENCH_WRITERS` (clients of part 2, default 4),
//! `BALSA_BENCH_ONLY` (`add` or `remove`: one part only). Data goes in `BALSA_BENCH_DIR`, else
//! in cargo's `CARGO_TARGET_TMPDIR`. A failed operation ends the run with its error (exit code
//! 1). Run with `cargo bench -p balsa-benches --bench membership`.
#![allow(
    clippy::print_stdout,
    clippy::disallowed_methods,
    reason = "benchmarks print their figures and read the clock"
)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use balsa::client::load::{self, KEYS_PER_CLIENT, Load, Sockets, Workload};
use balsa::client::{Client, ClientOptions};
use balsa::raft::membership::Step;
use balsa::{Node, NodeConfig};
use balsa_benches::{
    cluster::LocalCluster,
    floor::{measure_udp_rtt, measure_write_and_sync},
    report,
};

/// Value size of every write.
const VALUE_BYTES: usize = 100;
/// How long a membership change may take before the run fails.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(120);
/// Writes of part 2 before the change, untouched: the cluster's ordinary gaps, for comparison.
const BEFORE_CHANGE: Duration = Duration::from_millis(500);
/// Successful writes through the new leader that end a trial of part 2 …
const WRITES_THROUGH_NEW_LEADER: usize = 100;
/// … and the least time after the change returned that a trial goes on.
const AFTER_CHANGE: Duration = Duration::from_millis(200);

fn main() -> Result<(), String> {
    let started = Instant::now();
    let keys: u64 = knob("BALSA_BENCH_KEYS", 100_000)?;
    let trials: usize = knob("BALSA_BENCH_TRIALS", 10)?;
    let writers: usize = knob("BALSA_BENCH_WRITERS", 4)?;
    let only = std::env::var("BALSA_BENCH_ONLY").ok();
    if keys == 0 || trials == 0 || writers == 0 {
        return Err("BALSA_BENCH_KEYS, _TRIALS and _WRITERS must be at least 1".into());
    }
    if only
        .as_deref()
        .is_some_and(|part| part != "add" && part != "remove")
    {
        return Err("BALSA_BENCH_ONLY must be `add` or `remove`".into());
    }
    let dir = report::bench_dir(
        &format!("membership: 3 nodes on loopback, {VALUE_BYTES}-byte values"),
        env!("CARGO_TARGET_TMPDIR"),
    )?;
    let dir = dir.path();

    if only.as_deref() != Some("remove") {
        println!("\n1. add a voter to a cluster holding {keys} keys");
        let ticks = report::cpu_ticks();
        let added = add_voter(&dir.join("add"), keys)?;
        let steal = report::steal_between(ticks, report::cpu_ticks());
        added.print(&steal);
    }
    if only.as_deref() != Some("add") {
        println!("\n2. the leader removes itself, {trials} trials, {writers} closed-loop clients");
        let ticks = report::cpu_ticks();
        let removals = remove_leader(&dir.join("remove"), trials, writers)?;
        let steal = report::steal_between(ticks, report::cpu_ticks());
        removals.print(&steal);
    }
    println!("\ndone in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The value of the environment variable `name`, or `default` when unset.
fn knob<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .replace(['_', ','], "")
            .parse()
            .map_err(|_| format!("{name}={text} is not a number")),
        Err(_) => Ok(default),
    }
}

// ---- 1. Adding a voter ----------------------------------------------------------------------

/// What part 1 measured.
struct Added {
    keys: u64,
    /// Writing the keys: how long, and writes per second.
    build: Duration,
    /// The leader's snapshot: index, file size (header included), the log's first index.
    snapshot_index: u64,
    snapshot_bytes: u64,
    first_index: u64,
    /// Bytes node 4 was last seen holding before the install (the last chunk is not seen).
    bytes_seen: u64,
    /// Time writeback of the new node's segment zero-fill was waited for before the change.
    disk_wait: Duration,
    new: u64,
    leader: u64,
    /// The change, from the call to its return.
    total: Duration,
    /// When the poller first saw each part, from the call.
    events: Events,
    /// Floor: write + fsync of the snapshot's size, UDP round trip of a full chunk.
    write_sync: Duration,
    chunk_bytes: usize,
    window: usize,
    chunk_rtt: Duration,
    /// The leader's term before and after the change.
    terms: (u64, u64),
}

/// When the poller first saw each step of an added voter, from the call.
#[derive(Default, Clone, Copy, Debug)]
struct Events {
    learner: Option<Duration>,
    first_chunk: Option<Duration>,
    installed: Option<Duration>,
    caught_up: Option<Duration>,
    joint: Option<Duration>,
    voter: Option<Duration>,
}

fn add_voter(dir: &Path, keys: u64) -> Result<Added, String> {
    // The nodes' own snapshot policy is left as it is (it may snapshot by itself near the end
    // of the writes); every node then snapshots on request, below.
    let mut cluster = LocalCluster::start_configured(3, dir, &mut |_| {})?;

    // Distinct keys, each written once: a client cycles over KEYS_PER_CLIENT keys of its own,
    // so enough clients that none wraps around, on shared sockets (a datagram per node for a
    // thread's ready writes).
    let clients =
        usize::try_from(keys.div_ceil(KEYS_PER_CLIENT)).map_err(|_| "too many keys".to_owned())?;
    let load = Load {
        endpoints: cluster.endpoints(),
        clients,
        ops: keys,
        value_size: VALUE_BYTES,
        warmup: 0,
        workload: Workload::Put,
        duration: None,
        options: ClientOptions::default(),
        sockets: Sockets::Shared,
    };
    let building = Instant::now();
    let outcome = load::run(&load, &mut |progress| {
        println!("  writing {}/{}", progress.done, progress.total);
    })
    .map_err(|error| format!("writing the keys: {error}"))?;
    let build = building.elapsed();
    if outcome.errors() > 0 || outcome.writes.ops() != keys {
        return Err(format!(
            "{} of {keys} writes succeeded, {} failed, first: {}",
            outcome.writes.ops(),
            outcome.errors(),
            outcome.first_error.unwrap_or_default()
        ));
    }
    println!(
        "  {keys} keys written by {clients} clients in {:.1} s ({:.0} writes/s)",
        build.as_secs_f64(),
        keys as f64 / build.as_secs_f64()
    );

    // Every node snapshots (so whichever leads next sends one), then the leader must hold one
    // below its log base.
    let mut client = Client::new(
        cluster.endpoints(),
        ClientOptions {
            timeout: Duration::from_secs(60),
            ..ClientOptions::default()
        },
    )
    .map_err(|e| e.to_string())?;
    for address in cluster.endpoints() {
        client
            .take_snapshot(address)
            .map_err(|e| format!("snapshot at {address}: {e}"))?;
    }
    let leadership = cluster.leadership()?;
    let leader = leadership.leader;
    let status = cluster
        .node(leader)
        .ok_or("the leader stopped")?
        .status()
        .map_err(|e| e.to_string())?;
    if status.snapshot_index == 0 || status.first_index <= 1 {
        return Err(format!(
            "the leader holds no snapshot below its log base (snapshot index {}, first index {})",
            status.snapshot_index, status.first_index
        ));
    }
    let target = status.commit_index;
    let snapshot_bytes =
        snapshot_file_size(&cluster.config(leader).data_dir, status.snapshot_index)
            .map_err(|e| format!("reading the leader's snapshot file: {e}"))?;

    // The new node: it zero-fills its first segment at start; that writeback is let settle so
    // that the change is measured on a quiet disk.
    let (new, address) = cluster.start_joining(leader)?;
    let disk_wait = report::wait_for_disk_quiet(Duration::from_secs(10));
    let leader_node = cluster.node(leader).ok_or("the leader stopped")?;
    let new_node = cluster.node(new).ok_or("the new node stopped")?;
    let steps = vec![Step::AddVoter {
        id: new,
        address: address.to_string().into_bytes(),
    }];
    let done = AtomicBool::new(false);
    let call = Instant::now();
    let (result, total, polled) = std::thread::scope(|scope| {
        let poller = scope.spawn(|| poll_added(leader_node, new_node, new, target, call, &done));
        let result = leader_node.change_membership(steps, CHANGE_TIMEOUT);
        let total = call.elapsed();
        done.store(true, Ordering::Relaxed);
        let polled = poller.join();
        (result, total, polled)
    });
    let membership = result.map_err(|e| format!("adding node {new} as a voter: {e}"))?;
    let (events, bytes_seen) = polled.map_err(|_| "the poller panicked".to_owned())??;
    if !membership.is_voter(new) {
        return Err(format!(
            "the change returned but node {new} is no voter: {membership:?}"
        ));
    }
    let term_after = cluster.leadership()?.term;

    // The floor of the same run.
    let write_sync = measure_write_and_sync(&dir.join("floor.snap"), snapshot_bytes)
        .map_err(|e| format!("measuring the write + fsync floor: {e}"))?;
    let core = balsa::raft::Config::new(1, vec![1]);
    let chunk_rtt = measure_udp_rtt(core.snapshot_chunk_bytes, 500)
        .map_err(|e| format!("measuring the UDP round trip: {e}"))?;
    cluster.shutdown()?;
    Ok(Added {
        keys,
        build,
        snapshot_index: status.snapshot_index,
        snapshot_bytes,
        first_index: status.first_index,
        bytes_seen,
        disk_wait,
        new,
        leader,
        total,
        events,
        write_sync,
        chunk_bytes: core.snapshot_chunk_bytes,
        window: core.snapshot_inflight_chunks,
        chunk_rtt: Duration::from_nanos(chunk_rtt.value_at_quantile(0.5)),
        terms: (leadership.term, term_after),
    })
}

/// Polls the new node's status and the leader's configuration every millisecond until `done`;
/// when each step was first seen, and the most snapshot bytes seen received.
fn poll_added(
    leader: &Node,
    new_node: &Node,
    new: u64,
    target: u64,
    call: Instant,
    done: &AtomicBool,
) -> Result<(Events, u64), String> {
    let mut events = Events::default();
    let mut bytes = 0;
    let mark = |slot: &mut Option<Duration>| {
        slot.get_or_insert_with(|| call.elapsed());
    };
    // One last look after the change returned: the joint configuration may have been left
    // within the last millisecond.
    let mut last = false;
    while !last {
        last = done.load(Ordering::Relaxed);
        let status = new_node
            .status()
            .map_err(|e| format!("node {new}'s status: {e}"))?;
        if let Some((_, received)) = status.receiving_snapshot {
            mark(&mut events.first_chunk);
            bytes = bytes.max(received);
        }
        if status.snapshot_index > 0 {
            mark(&mut events.installed);
        }
        if status.applied_index >= target {
            mark(&mut events.caught_up);
        }
        // The leader's configuration in force; it may have stopped leading (then the change
        // fails, and says so).
        if let Ok(members) = leader.members() {
            if members.is_learner(new) {
                mark(&mut events.learner);
            }
            if members.is_joint() {
                mark(&mut events.joint);
            } else if members.is_voter(new) {
                mark(&mut events.voter);
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok((events, bytes))
}

/// The size of the snapshot file at `index` in `data_dir` (`snap-<index>-<term>`).
fn snapshot_file_size(data_dir: &Path, index: u64) -> std::io::Result<u64> {
    let prefix = format!("snap-{index:020}-");
    for entry in std::fs::read_dir(data_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) && !name.ends_with(".tmp") {
            return Ok(entry.metadata()?.len());
        }
    }
    Err(std::io::Error::other(format!(
        "no snapshot file at index {index} in {}",
        data_dir.display()
    )))
}

impl Added {
    fn print(&self, steal: &str) {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let at = |event: Option<Duration>| {
            event.map_or_else(
                || format!("{:>12}", "not seen"),
                |d| format!("{:>9.1} ms", ms(d)),
            )
        };
        let mb = self.snapshot_bytes as f64 / 1e6;
        println!(
            "  keys: {} ({:.1} s to write); the leader's snapshot: {mb:.2} MB at index {}, its \
             log from index {}",
            self.keys,
            self.build.as_secs_f64(),
            self.snapshot_index,
            self.first_index
        );
        if self.disk_wait > Duration::from_millis(100) {
            println!(
                "  (waited {} ms for the disk's writeback to settle after node {} started)",
                self.disk_wait.as_millis(),
                self.new
            );
        }
        println!(
            "  node {} added as a voter by leader {}; from the call, as polled every ms:",
            self.new, self.leader
        );
        let new = self.new;
        for (what, event) in [
            (
                "learner in the leader's configuration".to_owned(),
                self.events.learner,
            ),
            (
                format!("first snapshot chunk held by node {new}"),
                self.events.first_chunk,
            ),
            (
                format!("snapshot installed at node {new}"),
                self.events.installed,
            ),
            (
                format!("node {new} applied the leader's commit index"),
                self.events.caught_up,
            ),
            (
                "joint configuration at the leader".to_owned(),
                self.events.joint,
            ),
            (format!("joint left, node {new} a voter"), self.events.voter),
        ] {
            println!("    {what:<44} {}", at(event));
        }
        println!(
            "  change_membership([AddVoter {}]), call to return: {:.1} ms",
            self.new,
            ms(self.total)
        );
        if let (Some(first), Some(installed)) = (self.events.first_chunk, self.events.installed) {
            let transfer = installed.saturating_sub(first);
            println!(
                "  snapshot transfer, first chunk held to installed: {:.1} ms ({:.1} MB/s; \
                 {:.2} MB seen received before the install)",
                ms(transfer),
                mb / transfer.as_secs_f64().max(1e-9),
                self.bytes_seen as f64 / 1e6
            );
        }
        let chunks = self.snapshot_bytes.div_ceil(self.chunk_bytes as u64);
        let rounds = chunks.div_ceil(self.window as u64);
        let wire_floor = self.chunk_rtt * u32::try_from(rounds).unwrap_or(u32::MAX);
        println!(
            "  floor: write + fsync of {mb:.2} MB in the same directory {:.1} ms ({:.0} MB/s); \
             UDP loopback RTT of a {} B chunk p50 {:.1} µs, × {rounds} windows of {} chunks = \
             {:.1} ms",
            ms(self.write_sync),
            mb / self.write_sync.as_secs_f64().max(1e-9),
            self.chunk_bytes,
            self.chunk_rtt.as_secs_f64() * 1e6,
            self.window,
            ms(wire_floor)
        );
        println!(
            "  leader changed during the change: {}; CPU stolen by the host {steal}",
            if self.terms.0 == self.terms.1 {
                "no"
            } else {
                "YES"
            }
        );
    }
}

// ---- 2. The leader removes itself -----------------------------------------------------------

/// One trial of part 2.
struct Removal {
    old: u64,
    new: u64,
    /// The change, from the call to its return.
    change: Duration,
    /// The longest gap between successes from the last one before the call, and where it began
    /// (from the call; negative: before it).
    gap: Duration,
    gap_start_ms: f64,
    /// The longest gap before the call (the cluster's ordinary gaps).
    gap_before: Duration,
    /// The longest gap from the last success before the call to the first through the new
    /// leader: the hand-off's own share, without the ordinary gaps that follow.
    handoff_gap: Duration,
    /// First success through the new leader, from the call.
    first_new: Option<Duration>,
    successes: usize,
    failures: Vec<String>,
    /// The fresh node added back, and how long that took.
    added: (u64, Duration),
}

/// What part 2 measured.
struct Removals {
    trials: Vec<Removal>,
    writers: usize,
    min_election_timeout: Duration,
}

fn remove_leader(dir: &Path, trials: usize, writers: usize) -> Result<Removals, String> {
    let mut cluster = LocalCluster::start_configured(3, dir, &mut |_| {})?;
    let config: &NodeConfig = cluster.config(1);
    let min_election_timeout = config.tick * config.election_ticks.0;
    let mut results = Vec::new();
    for trial in 1..=trials {
        report::settle_disk(Duration::from_secs(10));
        let removal = remove_once(&mut cluster, trial, writers)?;
        println!(
            "  trial {trial:>2}: leader {} removed in {:.1} ms (call to return); node {} leads, \
             its first write {}",
            removal.old,
            removal.change.as_secs_f64() * 1e3,
            removal.new,
            removal.first_new.map_or_else(
                || "not seen".to_owned(),
                |d| format!("+{:.1} ms from the call", d.as_secs_f64() * 1e3)
            ),
        );
        println!(
            "            longest gap {:.1} ms, from {:+.1} ms (until the new leader's first write: \
             {:.1} ms; before the call: {:.1} ms)",
            removal.gap.as_secs_f64() * 1e3,
            removal.gap_start_ms,
            removal.handoff_gap.as_secs_f64() * 1e3,
            removal.gap_before.as_secs_f64() * 1e3,
        );
        println!(
            "            {} writes, {} failed{}; node {} stopped by itself; node {} added back in \
             {:.0} ms",
            removal.successes,
            removal.failures.len(),
            removal
                .failures
                .first()
                .map_or_else(String::new, |first| format!(" (first: {first})")),
            removal.old,
            removal.added.0,
            removal.added.1.as_secs_f64() * 1e3,
        );
        results.push(removal);
    }
    cluster.shutdown()?;
    Ok(Removals {
        trials: results,
        writers,
        min_election_timeout,
    })
}

/// One success of a client of part 2: when it ended, and whether through the node that led
/// before the change.
#[derive(Clone, Copy)]
struct Success {
    at: Instant,
    through_old: bool,
}

fn remove_once(
    cluster: &mut LocalCluster,
    trial: usize,
    writers: usize,
) -> Result<Removal, String> {
    let old = cluster.leadership()?.leader;
    let endpoints = cluster.endpoints();
    let old_address = cluster.node(old).ok_or("the leader stopped")?.local_addr();
    let stop = AtomicBool::new(false);
    let returned: OnceLock<Instant> = OnceLock::new();
    let through_new = AtomicUsize::new(0);
    let start = Instant::now();
    let leader_node = cluster.node(old).ok_or("the leader stopped")?;
    let (outcome, logs) = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..writers)
            .map(|w| {
                let (endpoints, stop, returned, through_new) =
                    (&endpoints, &stop, &returned, &through_new);
                scope.spawn(move || {
                    write_until(
                        endpoints,
                        format!("t{trial}-w{w}"),
                        old_address,
                        stop,
                        returned,
                        through_new,
                    )
                })
            })
            .collect();
        std::thread::sleep(BEFORE_CHANGE);
        let call = Instant::now();
        let result = leader_node.change_membership(vec![Step::Remove { id: old }], CHANGE_TIMEOUT);
        let back = Instant::now();
        let _ = returned.set(back);
        // Until the new leader has committed writes: enough successes through it, and a
        // moment after the change returned (bounded: a failed change ends it at once).
        if result.is_ok() {
            while (through_new.load(Ordering::Relaxed) < WRITES_THROUGH_NEW_LEADER
                || back.elapsed() < AFTER_CHANGE)
                && back.elapsed() < Duration::from_secs(30)
            {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        stop.store(true, Ordering::Relaxed);
        let logs: Vec<_> = threads.into_iter().map(|t| t.join()).collect();
        ((result, call, back), logs)
    });
    let (result, call, back) = outcome;
    let mut successes = Vec::new();
    let mut failures = Vec::new();
    for log in logs {
        let (mut ok, mut failed) = log.map_err(|_| "a client thread panicked".to_owned())??;
        successes.append(&mut ok);
        failures.append(&mut failed);
    }
    result.map_err(|e| format!("trial {trial}: removing leader {old}: {e}"))?;
    successes.sort_by_key(|s| s.at);
    let first_new_at = successes.iter().position(|s| !s.through_old && s.at > call);
    let first_new = first_new_at.map(|k| successes[k].at - call);
    if successes
        .iter()
        .filter(|s| !s.through_old && s.at > back)
        .count()
        < WRITES_THROUGH_NEW_LEADER
    {
        return Err(format!(
            "trial {trial}: the new leader committed fewer than {WRITES_THROUGH_NEW_LEADER} \
             writes within 30 s of the change ({} failures, first: {})",
            failures.len(),
            failures.first().cloned().unwrap_or_default()
        ));
    }
    // The longest gap from the last success before the call, and the longest before it (from
    // 100 ms into the load, once every client found the leader).
    let from = successes
        .iter()
        .rposition(|s| s.at <= call)
        .ok_or_else(|| format!("trial {trial}: no write succeeded before the change"))?;
    let (gap, gap_at) = longest_gap(&successes[from..]);
    let (handoff_gap, _) = longest_gap(&successes[from..=first_new_at.unwrap_or(from)]);
    let settled = successes
        .iter()
        .position(|s| s.at >= start + Duration::from_millis(100))
        .unwrap_or(from);
    let (gap_before, _) = longest_gap(&successes[settled..=from]);
    let gap_start_ms = if gap_at >= call {
        (gap_at - call).as_secs_f64() * 1e3
    } else {
        -(call - gap_at).as_secs_f64() * 1e3
    };

    // The removed node stops by itself; a fresh node takes its place, so the next trial starts
    // from 3 voters again.
    cluster.retire(old, Duration::from_secs(5))?;
    let new = cluster.leadership()?.leader;
    let (fresh, address) = cluster.start_joining(new)?;
    let adding = Instant::now();
    cluster
        .node(new)
        .ok_or("the new leader stopped")?
        .change_membership(
            vec![Step::AddVoter {
                id: fresh,
                address: address.to_string().into_bytes(),
            }],
            CHANGE_TIMEOUT,
        )
        .map_err(|e| format!("trial {trial}: adding node {fresh} back: {e}"))?;
    Ok(Removal {
        old,
        new,
        change: back - call,
        gap,
        gap_start_ms,
        gap_before,
        handoff_gap,
        first_new,
        successes: successes.len(),
        failures,
        added: (fresh, adding.elapsed()),
    })
}

/// The longest time between two consecutive successes, and when it began.
fn longest_gap(successes: &[Success]) -> (Duration, Instant) {
    successes
        .windows(2)
        .map(|pair| (pair[1].at - pair[0].at, pair[0].at))
        .max_by_key(|&(gap, _)| gap)
        .unwrap_or((
            Duration::ZERO,
            successes.first().map_or_else(Instant::now, |s| s.at),
        ))
}

/// One closed-loop client of part 2: writes keys `<prefix>-<n mod 1024>` until `stop`, and
/// returns each success and each failure. Counts successes through a node other than
/// `old_leader` that end after the change returned.
fn write_until(
    endpoints: &[SocketAddr],
    prefix: String,
    old_leader: SocketAddr,
    stop: &AtomicBool,
    returned: &OnceLock<Instant>,
    through_new: &AtomicUsize,
) -> Result<(Vec<Success>, Vec<String>), String> {
    let mut client = Client::new(endpoints.to_vec(), ClientOptions::default())
        .map_err(|e| format!("a client: {e}"))?;
    let value = vec![b'v'; VALUE_BYTES];
    let mut successes = Vec::new();
    let mut failures = Vec::new();
    let mut n = 0_u64;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("{prefix}-{}", n % KEYS_PER_CLIENT);
        n += 1;
        match client.put(key.as_bytes(), &value) {
            Ok(()) => {
                let at = Instant::now();
                let through_old = client.leader() == Some(old_leader);
                if !through_old && returned.get().is_some_and(|&back| at > back) {
                    through_new.fetch_add(1, Ordering::Relaxed);
                }
                successes.push(Success { at, through_old });
            }
            Err(error) => failures.push(error.to_string()),
        }
    }
    Ok((successes, failures))
}

impl Removals {
    fn print(&self, steal: &str) {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let summary = |values: Vec<Duration>| {
            let mut values = values;
            values.sort_unstable();
            let median = values[values.len() / 2];
            let median = if values.len().is_multiple_of(2) {
                (values[values.len() / 2 - 1] + median) / 2
            } else {
                median
            };
            format!(
                "min {:.1} / median {:.1} / max {:.1} ms",
                ms(values[0]),
                ms(median),
                ms(values[values.len() - 1])
            )
        };
        let n = self.trials.len();
        println!(
            "  longest gap between successful writes ({} clients), {n} trials: {}",
            self.writers,
            summary(self.trials.iter().map(|t| t.gap).collect())
        );
        println!(
            "  … from the last write before the call to the first through the new leader: {}",
            summary(self.trials.iter().map(|t| t.handoff_gap).collect())
        );
        println!(
            "  longest gap before the call (the cluster's ordinary gaps):      {}",
            summary(self.trials.iter().map(|t| t.gap_before).collect())
        );
        println!(
            "  change_membership([Remove leader]), call to return:            {}",
            summary(self.trials.iter().map(|t| t.change).collect())
        );
        let under = self
            .trials
            .iter()
            .filter(|t| t.gap < self.min_election_timeout)
            .count();
        println!(
            "  minimum election timeout (ticks × tick): {:.0} ms; gap under it in {under} of \
             {n} trials",
            ms(self.min_election_timeout)
        );
        let failed: usize = self.trials.iter().map(|t| t.failures.len()).sum();
        println!("  writes failed, all trials: {failed}; CPU stolen by the host {steal}");
    }
}
