//! The soak (issue 19): a continuous write load on a 3-node cluster for many minutes, with
//! snapshots and compaction on, reporting per minute the throughput, p50/p99 and each node's
//! resident memory, open file descriptors, threads and data-directory size; at the end, the p99
//! of the last five minutes over the first five, the slopes of the nodes' figures after the
//! warm-up (per hour), the largest data directory against the bound the compaction settings set,
//! and the elections.
//!
//! **The nodes are `balsa serve` processes**, not in-process nodes: only a process of its own
//! gives a node's memory, descriptors and threads apart from the other nodes' and from the load
//! generator's. The executable is the `balsa` beside this bench's target directory
//! (`target/release/balsa`: build it first with `cargo build --release -p balsa-cli`; the bench
//! prints its `--version` so a stale one shows), or `BALSA_BIN`. Each node runs with
//! `--insecure` on loopback and `--parent-pid`, so it stops if the bench dies; one that stops by
//! itself ends the soak with an error. Their logs go to `node-N.log` beside, not inside, their
//! data directories. The snapshot and WAL settings are the nodes' defaults, which the bound is
//! computed from.
//!
//! **The load** is `balsa::client::load` (as `balsa bench --clients 64 --shared-sockets`): 64
//! closed-loop clients writing 100-byte values, run one minute at a time, back to back (the
//! pause between two minutes is a new set of 64 sessions starting: milliseconds; 64 sessions a
//! minute join the nodes' session tables, well within their default capacity of 10,000), so each
//! minute's row holds that minute's operations exactly. The nodes are sampled at the end of
//! each minute (`/proc/PID/status` `VmRSS` and `Threads`, `/proc/PID/fd`) and their directories
//! walked.
//!
//! Knobs: `BALSA_SOAK_MINUTES` (default 30), `BALSA_SOAK_WARMUP_MINUTES` (minutes left out of
//! the slopes; default 5, at most a third of the run). Data goes in `BALSA_BENCH_DIR` if set,
//! else in cargo's `CARGO_TARGET_TMPDIR`. Run with `cargo bench -p balsa-benches --bench soak`.
#![allow(
    clippy::print_stdout,
    clippy::disallowed_methods,
    reason = "benchmarks print their figures and read the clock"
)]

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use balsa::NodeConfig;
use balsa::client::load::{self, Load, Sockets, Workload};
use balsa::client::{Client, ClientOptions};
use balsa_benches::report;
use balsa_benches::soak::{
    DirSize, ProcessSample, dir_size, first_and_last, pooled_quantile, sample_process,
    slope_per_hour,
};
use balsa_benches::us_histogram;
use hdrhistogram::Histogram;

const NODES: usize = 3;
const CLIENTS: usize = 64;
const VALUE_SIZE: usize = 100;
const DEFAULT_MINUTES: usize = 30;
const DEFAULT_WARMUP_MINUTES: usize = 5;
/// The span compared at the start and the end of the run, in minutes.
const P99_WINDOW: usize = 5;
/// A generous estimate of the bytes a 100-byte write takes in the log: the value, a key of up to
/// 13 bytes, the client id and sequence number, the command's and the record's framing.
const ENTRY_BYTES_ESTIMATE: u64 = VALUE_SIZE as u64 + 128;

/// A running `balsa serve`; killed and reaped when dropped.
struct ServeNode {
    id: u64,
    child: Child,
    data_dir: PathBuf,
    /// The node's stdout: its one line, then kept open.
    stdout: BufReader<ChildStdout>,
}

impl Drop for ServeNode {
    fn drop(&mut self) {
        // An error means it has exited already; wait reaps it either way.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One minute's figures.
struct Minute {
    ops_per_sec: f64,
    latency_us: Histogram<u64>,
    errors: u64,
    /// Per node, in id order.
    nodes: Vec<(ProcessSample, DirSize)>,
    leader: Option<u64>,
    term: u64,
}

fn main() -> Result<(), String> {
    let started = Instant::now();
    let minutes = env_count("BALSA_SOAK_MINUTES")
        .unwrap_or(DEFAULT_MINUTES)
        .max(1);
    let warmup_minutes = env_count("BALSA_SOAK_WARMUP_MINUTES")
        .unwrap_or(DEFAULT_WARMUP_MINUTES)
        .min(minutes / 3);
    let executable = balsa_executable()?;
    let version = Command::new(&executable)
        .arg("--version")
        .output()
        .map_err(|error| format!("running {} --version: {error}", executable.display()))?;
    let dir = report::bench_dir(
        &format!(
            "soak: {NODES} balsa serve processes, {CLIENTS} clients on shared sockets writing \
             {VALUE_SIZE}-byte values, {minutes} min"
        ),
        env!("CARGO_TARGET_TMPDIR"),
    )?;
    println!(
        "executable {}: {}",
        executable.display(),
        String::from_utf8_lossy(&version.stdout).trim()
    );
    let defaults = NodeConfig::new(1, Vec::new(), PathBuf::new());
    let bound = DirBound::of(&defaults);
    println!(
        "compaction settings (the nodes' defaults): snapshot every {} entries or {} bytes (and {} \
         times the last snapshot), {} trailing entries, {} snapshots kept, {} MiB segments",
        defaults.snapshot_entries,
        defaults.snapshot_bytes,
        defaults.snapshot_expansion,
        defaults.snapshot_trailing_entries,
        defaults.wal.snapshots_kept,
        defaults.wal.segment_bytes >> 20,
    );

    let members = free_addresses(NODES)?;
    let nodes = members
        .iter()
        .map(|&(id, _)| start_node(&executable, dir.path(), id, &members))
        .collect::<Result<Vec<_>, String>>()?;
    let endpoints: Vec<SocketAddr> = members.iter().map(|&(_, address)| address).collect();
    let (first_leader, first_term) = wait_for_leader(&endpoints, Duration::from_secs(10))?;
    println!("node {first_leader} leads, term {first_term}");

    print_minute_header();
    let mut rows: Vec<Minute> = Vec::new();
    for minute in 1..=minutes {
        let load = Load {
            endpoints: endpoints.clone(),
            clients: CLIENTS,
            ops: u64::MAX,
            value_size: VALUE_SIZE,
            // The first minute's sessions warm the cluster up; the later ones only start.
            warmup: if minute == 1 { 20 * CLIENTS as u64 } else { 0 },
            workload: Workload::Put,
            duration: Some(Duration::from_secs(60)),
            options: ClientOptions::default(),
            sockets: Sockets::Shared,
        };
        let outcome = load::run(&load, &mut |_| {})
            .map_err(|error| format!("minute {minute}: the load could not run: {error}"))?;
        let mut sampled = Vec::new();
        for node in &nodes {
            sampled.push(sample_node(node)?);
        }
        let (leader, term) = status(&endpoints);
        let row = Minute {
            ops_per_sec: outcome.ops_per_sec(),
            latency_us: us_histogram(&outcome.writes.latencies_us),
            errors: outcome.errors(),
            nodes: sampled,
            leader,
            term,
        };
        print_minute(minute, &row);
        if let Some(why) = &outcome.stopped {
            println!("  the load stopped early: {why}");
        }
        rows.push(row);
    }
    summarise(&rows, warmup_minutes, first_term, &bound);
    drop(nodes);
    println!(
        "\ndone in {:.1} min",
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

/// A positive count from the environment variable `name`, if set and valid.
fn env_count(name: &str) -> Option<usize> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// `BALSA_BIN`, or the `balsa` of this bench's target directory (the bench runs from
/// `target/<profile>/deps/`).
fn balsa_executable() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("BALSA_BIN") {
        return Ok(PathBuf::from(path));
    }
    let bench = std::env::current_exe()
        .map_err(|error| format!("cannot find this bench's executable: {error}"))?;
    let beside = bench
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join("balsa"))
        .filter(|path| path.is_file());
    beside.ok_or_else(|| {
        format!(
            "no balsa executable in the target directory of {}: build it first with `cargo \
             build --release -p balsa-cli`, or name one with BALSA_BIN",
            bench.display()
        )
    })
}

/// `n` members on loopback ports free a moment ago (bound, read, released).
fn free_addresses(n: usize) -> Result<Vec<(u64, SocketAddr)>, String> {
    let sockets = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("finding free ports: {error}"))?;
    sockets
        .iter()
        .zip(1..)
        .map(|(socket, id)| Ok((id, socket.local_addr()?)))
        .collect::<Result<Vec<_>, std::io::Error>>()
        .map_err(|error| format!("finding free ports: {error}"))
}

/// Starts `balsa serve` for node `id`, its data in `dir/node-ID`, its log in `dir/node-ID.log`,
/// and waits for its line saying it listens.
fn start_node(
    executable: &Path,
    dir: &Path,
    id: u64,
    members: &[(u64, SocketAddr)],
) -> Result<ServeNode, String> {
    let data_dir = dir.join(format!("node-{id}"));
    let log_path = dir.join(format!("node-{id}.log"));
    let log = std::fs::File::create(&log_path)
        .map_err(|error| format!("creating {}: {error}", log_path.display()))?;
    let cluster = members
        .iter()
        .map(|(id, address)| format!("{id}={address}"))
        .collect::<Vec<_>>()
        .join(",");
    let args: Vec<OsString> = vec![
        "serve".into(),
        "--id".into(),
        id.to_string().into(),
        "--cluster".into(),
        cluster.into(),
        "--data-dir".into(),
        data_dir.clone().into(),
        "--insecure".into(),
        "--parent-pid".into(),
        std::process::id().to_string().into(),
    ];
    let mut child = Command::new(executable)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|error| format!("starting node {id} ({}): {error}", executable.display()))?;
    let Some(stdout) = child.stdout.take() else {
        unreachable!("stdout was set to piped");
    };
    let mut node = ServeNode {
        id,
        child,
        data_dir,
        stdout: BufReader::new(stdout),
    };
    let mut line = String::new();
    // serve prints its line once listening, or exits (closing the pipe) on failure.
    match node.stdout.read_line(&mut line) {
        Ok(n) if n > 0 && line.contains("listening") => Ok(node),
        _ => Err(format!(
            "node {id} did not start; its log is {}",
            log_path.display()
        )),
    }
}

/// Who leads and in which term, waiting (at most `within`) for a leader.
fn wait_for_leader(endpoints: &[SocketAddr], within: Duration) -> Result<(u64, u64), String> {
    let deadline = Instant::now() + within;
    loop {
        if let (Some(leader), term) = status(endpoints) {
            return Ok((leader, term));
        }
        if Instant::now() >= deadline {
            return Err(format!("no leader within {} s", within.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The leader some node reports as itself, and the highest term any node reports.
fn status(endpoints: &[SocketAddr]) -> (Option<u64>, u64) {
    let Ok(mut client) = Client::new(endpoints.to_vec(), ClientOptions::default()) else {
        return (None, 0);
    };
    let reports: Vec<_> = client.status_all(endpoints).into_iter().flatten().collect();
    let leader = reports
        .iter()
        .find(|report| report.role == "leader")
        .map(|report| report.id);
    let term = reports.iter().map(|report| report.term).max().unwrap_or(0);
    (leader, term)
}

/// The node's process figures and its data directory's size; an error if it has exited.
fn sample_node(node: &ServeNode) -> Result<(ProcessSample, DirSize), String> {
    let pid = node.child.id();
    let process = sample_process(pid).map_err(|error| {
        format!(
            "node {} (pid {pid}) cannot be sampled — has it stopped? {error}",
            node.id
        )
    })?;
    let size = dir_size(&node.data_dir)
        .map_err(|error| format!("reading {}: {error}", node.data_dir.display()))?;
    Ok((process, size))
}

const MIB: f64 = 1024.0 * 1024.0;

fn print_minute_header() {
    let mut line = format!(
        "\n{:>4} {:>8} {:>7} {:>7} {:>6}",
        "min", "writes/s", "p50 µs", "p99 µs", "errors"
    );
    for id in 1..=NODES {
        line.push_str(&format!(
            " | n{id} {:>7} {:>4} {:>3} {:>7}",
            "RSS MiB", "fds", "thr", "dir MiB"
        ));
    }
    line.push_str(" | leader term");
    println!("{line}");
}

fn print_minute(minute: usize, row: &Minute) {
    let mut line = format!(
        "{minute:>4} {:>8.0} {:>7} {:>7} {:>6}",
        row.ops_per_sec,
        row.latency_us.value_at_quantile(0.5),
        row.latency_us.value_at_quantile(0.99),
        row.errors
    );
    for (process, size) in &row.nodes {
        line.push_str(&format!(
            " |    {:>7.1} {:>4} {:>3} {:>7.1}",
            process.rss_bytes as f64 / MIB,
            process.fds,
            process.threads,
            size.bytes as f64 / MIB
        ));
    }
    line.push_str(&format!(
        " | {:>6} {:>4}",
        row.leader
            .map_or_else(|| "none".to_owned(), |id| id.to_string()),
        row.term
    ));
    println!("{line}");
}

/// The most a node's data directory should hold with its compaction settings: the log behind
/// the newest snapshot (the entries a snapshot threshold lets accumulate, or the expansion
/// factor times the snapshot if that is more, plus the trailing ones kept) rounded up to whole
/// segments, plus the segment compaction cannot remove yet (it also holds entries after the
/// compaction point), the segment being written and the one zero-filled ahead; and the
/// snapshots kept plus one being written.
struct DirBound {
    threshold: u64,
    expansion: u64,
    trailing: u64,
    segment_bytes: u64,
    snapshots: u64,
}

impl DirBound {
    fn of(config: &NodeConfig) -> DirBound {
        DirBound {
            threshold: config
                .snapshot_bytes
                .min(config.snapshot_entries.saturating_mul(ENTRY_BYTES_ESTIMATE)),
            expansion: config.snapshot_expansion,
            trailing: config
                .snapshot_trailing_entries
                .saturating_mul(ENTRY_BYTES_ESTIMATE),
            segment_bytes: config.wal.segment_bytes.max(1),
            snapshots: config.wal.snapshots_kept as u64 + 1,
        }
    }

    /// The log segments the bound allows, given the largest snapshot file seen.
    fn segments(&self, largest_snapshot: u64) -> u64 {
        let log = self
            .threshold
            .max(self.expansion.saturating_mul(largest_snapshot))
            + self.trailing;
        log.div_ceil(self.segment_bytes) + 3
    }

    /// The bound in bytes, given the largest snapshot file seen.
    fn bytes(&self, largest_snapshot: u64) -> u64 {
        self.segments(largest_snapshot) * self.segment_bytes + self.snapshots * largest_snapshot
    }
}

fn summarise(rows: &[Minute], warmup_minutes: usize, first_term: u64, bound: &DirBound) {
    let minutes = rows.len();
    println!("\nsummary ({minutes} min; slopes leave out the first {warmup_minutes} min):");
    let (first, last) = first_and_last(minutes, P99_WINDOW);
    let pooled = |span: &std::ops::RangeInclusive<usize>| {
        let hists: Vec<&Histogram<u64>> = span
            .clone()
            .map(|minute| &rows[minute - 1].latency_us)
            .collect();
        pooled_quantile(&hists, 0.99)
    };
    match (pooled(&first), pooled(&last)) {
        (Some(early), Some(late)) => println!(
            "  p99 of minutes {last:?} / minutes {first:?}: {late} / {early} µs = {:.2} (target \
             <= 1.3: {})",
            late as f64 / early.max(1) as f64,
            if late as f64 <= 1.3 * early as f64 {
                "met"
            } else {
                "NOT MET"
            }
        ),
        _ => println!("  p99 first / last: too short a run to compare"),
    }
    let total_ops: f64 = rows.iter().map(|row| row.ops_per_sec * 60.0).sum();
    let errors: u64 = rows.iter().map(|row| row.errors).sum();
    println!(
        "  writes: {:.0} in all, {:.0}/s on average; errors {errors}",
        total_ops,
        total_ops / (minutes as f64 * 60.0)
    );
    let after_warmup: Vec<(usize, &Minute)> = rows
        .iter()
        .enumerate()
        .map(|(k, row)| (k + 1, row))
        .skip(warmup_minutes)
        .collect();
    type Pick = fn(&(ProcessSample, DirSize)) -> f64;
    let figures: [(&str, &str, Pick); 4] = [
        ("RSS", "MiB", |(p, _)| p.rss_bytes as f64 / MIB),
        ("fds", "", |(p, _)| p.fds as f64),
        ("threads", "", |(p, _)| p.threads as f64),
        ("data dir", "MiB", |(_, d)| d.bytes as f64 / MIB),
    ];
    for node in 0..NODES {
        let mut parts = Vec::new();
        for (name, unit, pick) in figures {
            let points: Vec<(f64, f64)> = after_warmup
                .iter()
                .map(|(minute, row)| (*minute as f64, pick(&row.nodes[node])))
                .collect();
            parts.push(slope_per_hour(&points).map_or_else(
                || format!("{name} -"),
                |slope| format!("{name} {slope:+.2} {unit}/h"),
            ));
        }
        println!("  node {} slopes: {}", node + 1, parts.join(", "));
    }
    for node in 0..NODES {
        let biggest = rows
            .iter()
            .map(|row| row.nodes[node].1)
            .max_by_key(|size| size.bytes)
            .unwrap_or_default();
        let largest_snapshot = rows
            .iter()
            .map(|row| row.nodes[node].1.largest_snapshot)
            .max()
            .unwrap_or(0);
        let limit = bound.bytes(largest_snapshot);
        println!(
            "  node {} data dir at most {:.1} MiB; bound {:.1} MiB ({} segments of {} MiB + {} \
             snapshots of up to {:.1} MiB): {}",
            node + 1,
            biggest.bytes as f64 / MIB,
            limit as f64 / MIB,
            bound.segments(largest_snapshot),
            bound.segment_bytes >> 20,
            bound.snapshots,
            largest_snapshot as f64 / MIB,
            if biggest.bytes <= limit {
                "within"
            } else {
                "OVER"
            }
        );
    }
    let last_term = rows.last().map_or(first_term, |row| row.term);
    let leaders: Vec<u64> = rows.iter().filter_map(|row| row.leader).collect();
    let changes = leaders.windows(2).filter(|pair| pair[0] != pair[1]).count();
    println!(
        "  elections during the soak (term {first_term} -> {last_term}): {}; leader changes seen \
         minute to minute: {changes} (target: none)",
        last_term.saturating_sub(first_term)
    );
}
