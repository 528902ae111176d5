//! What an idle node costs: a 3-node cluster of `balsa serve` processes left alone (no client
//! but a status request at the start and at the end), measured per node from `/proc` over the
//! run (30 s by default):
//!
//! - CPU: the process's utime + stime over wall time (`/proc/PID/stat`, in the kernel's 10 ms
//!   clock ticks: a coarse figure at this level), and the same from the scheduler's own
//!   nanosecond count (`/proc/PID/task/*/schedstat`, summed over the threads: the precise one);
//! - wake-ups per second: voluntary context switches (`/proc/PID/task/*/status`), each a thread
//!   that went to sleep because it had nothing to do, so one per wake-up; in total and for the
//!   timer and consensus threads, which a tick wakes;
//! - memory at the end: RSS and its anonymous part (`/proc/PID/status`).
//!
//! Processes, not in-process nodes (`LocalCluster`), because a node's memory is only separable
//! as a process's, and because a process is what an operator runs and sizes; CPU and wake-ups
//! then need no thread-name bookkeeping either.
//!
//! The leader and term are read at the start and at the end: an idle cluster must keep its
//! leader (the same term), or the figures measured elections rather than idleness.
//!
//! Set `BALSA_BIN` to the `balsa` binary to measure (default: `balsa` beside this bench's
//! directory, i.e. `target/release/balsa`: build it first with `cargo build --release -p
//! balsa-cli`), `BALSA_BASELINE_BIN` to another build to measure alongside it in the same run
//! (its own cluster, at the same time: the same machine noise for both), and
//! `BALSA_IDLE_SECONDS` to change the duration.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    reason = "a benchmark prints its figures and reads the clock"
)]

use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use balsa::client::{Client, ClientOptions};

/// Nodes per cluster.
const NODES: usize = 3;
/// Time for the cluster to elect and settle before the measured span.
const SETTLE: Duration = Duration::from_secs(3);
/// The kernel's clock tick for utime and stime (`USER_HZ`, 100 on every Linux ABI).
const USER_HZ: f64 = 100.0;

fn main() {
    if let Err(error) = run() {
        eprintln!("idle bench: {error}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let seconds: u64 = match std::env::var("BALSA_IDLE_SECONDS") {
        Ok(text) => text
            .parse()
            .map_err(|_| format!("BALSA_IDLE_SECONDS={text:?} is not a number of seconds"))?,
        Err(_) => 30,
    };
    let mut builds = vec![("this build", this_build()?)];
    if let Ok(path) = std::env::var("BALSA_BASELINE_BIN") {
        builds.insert(0, ("baseline", PathBuf::from(path)));
    }
    let dir = tempfile::tempdir().map_err(|error| format!("a temporary directory: {error}"))?;
    let mut clusters = Vec::new();
    for (k, (label, binary)) in builds.iter().enumerate() {
        let data = dir.path().join(format!("cluster-{k}"));
        clusters.push(Cluster::start(label, binary, &data)?);
    }
    sleep(SETTLE);
    let before: Vec<_> = clusters
        .iter()
        .map(Cluster::sample)
        .collect::<Result<_, _>>()?;
    let leadership_before: Vec<_> = clusters.iter().map(Cluster::leadership).collect();
    let started = Instant::now();
    sleep(Duration::from_secs(seconds));
    let wall = started.elapsed();
    let after: Vec<_> = clusters
        .iter()
        .map(Cluster::sample)
        .collect::<Result<_, _>>()?;
    let leadership_after: Vec<_> = clusters.iter().map(Cluster::leadership).collect();

    println!(
        "idle 3-node cluster of `balsa serve` processes, {:.1} s measured after {} s to settle",
        wall.as_secs_f64(),
        SETTLE.as_secs()
    );
    println!(
        "{:<11} {:>4} {:>10} {:>14} {:>9} {:>9} {:>9} {:>8} {:>8}",
        "build",
        "node",
        "cpu % stat",
        "cpu % schedst",
        "wakeups/s",
        "timer/s",
        "consens/s",
        "RSS MiB",
        "anon MiB"
    );
    for (k, cluster) in clusters.iter().enumerate() {
        for (node, (start, end)) in before[k].iter().zip(&after[k]).enumerate() {
            let secs = wall.as_secs_f64();
            let per_second = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
            println!(
                "{:<11} {:>4} {:>10.3} {:>14.3} {:>9.1} {:>9.1} {:>9.1} {:>8.1} {:>8.1}",
                cluster.label,
                node + 1,
                (end.cpu_ticks.saturating_sub(start.cpu_ticks)) as f64 / USER_HZ / secs * 100.0,
                (end.cpu_ns.saturating_sub(start.cpu_ns)) as f64 / 1e9 / secs * 100.0,
                per_second(start.wakeups, end.wakeups),
                per_second(start.timer_wakeups, end.timer_wakeups),
                per_second(start.consensus_wakeups, end.consensus_wakeups),
                end.rss_kib as f64 / 1024.0,
                end.anon_kib as f64 / 1024.0,
            );
        }
        let verdict = match (&leadership_before[k], &leadership_after[k]) {
            (Ok(before), Ok(after)) if before == after => {
                format!("kept its leader: node {} in term {}", before.0, before.1)
            }
            (Ok(before), Ok(after)) => format!(
                "LEADER CHANGED: node {} in term {} before, node {} in term {} after",
                before.0, before.1, after.0, after.1
            ),
            (Err(error), _) | (_, Err(error)) => format!("leadership unknown: {error}"),
        };
        println!("{:<11} {verdict}", cluster.label);
    }
    Ok(())
}

/// The `balsa` binary to measure: `BALSA_BIN`, else the one `cargo build --release -p
/// balsa-cli` puts beside this bench's `deps` directory.
fn this_build() -> Result<PathBuf, String> {
    if let Ok(path) = std::env::var("BALSA_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(|error| format!("this bench's path: {error}"))?;
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("balsa"))
        .ok_or("this bench's path has no grandparent directory")?;
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!(
            "no balsa binary at {}: build it first (cargo build --release -p balsa-cli) or set \
             BALSA_BIN",
            binary.display()
        ))
    }
}

/// One cluster's processes, killed when dropped.
struct Cluster {
    label: &'static str,
    endpoints: Vec<SocketAddr>,
    children: Vec<Child>,
}

/// One node's counters at one moment.
#[derive(Debug, Default)]
struct Sample {
    /// utime + stime, in `USER_HZ` ticks.
    cpu_ticks: u64,
    /// Time on a CPU, summed over the threads, in nanoseconds.
    cpu_ns: u64,
    /// Voluntary context switches, summed over the threads.
    wakeups: u64,
    timer_wakeups: u64,
    consensus_wakeups: u64,
    rss_kib: u64,
    anon_kib: u64,
}

impl Cluster {
    fn start(label: &'static str, binary: &Path, data: &Path) -> Result<Cluster, String> {
        // Bind, read the port, release: the ports are free when the nodes bind them moments later.
        let sockets = (0..NODES)
            .map(|_| UdpSocket::bind("127.0.0.1:0"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| format!("finding free ports: {error}"))?;
        let endpoints = sockets
            .iter()
            .map(UdpSocket::local_addr)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| format!("finding free ports: {error}"))?;
        drop(sockets);
        let members = endpoints
            .iter()
            .zip(1..)
            .map(|(address, id)| format!("{id}={address}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            label,
            endpoints,
            children: Vec::new(),
        };
        for id in 1..=NODES {
            let node_dir = data.join(format!("node-{id}"));
            fs::create_dir_all(&node_dir)
                .map_err(|error| format!("creating {}: {error}", node_dir.display()))?;
            let log = fs::File::create(node_dir.with_extension("log"))
                .map_err(|error| format!("a log file for node {id}: {error}"))?;
            let child = Command::new(binary)
                .args(["serve", "--insecure", "--id", &id.to_string()])
                .args(["--cluster", &members])
                .arg("--data-dir")
                .arg(&node_dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(|error| format!("starting {}: {error}", binary.display()))?;
            cluster.children.push(child);
        }
        Ok(cluster)
    }

    fn sample(&self) -> Result<Vec<Sample>, String> {
        self.children
            .iter()
            .map(|child| sample(child.id()))
            .collect()
    }

    /// (leader, term) as the nodes report it, agreed by every node.
    fn leadership(&self) -> Result<(u64, u64), String> {
        let mut client = Client::new(self.endpoints.clone(), ClientOptions::default())
            .map_err(|error| error.to_string())?;
        let mut seen = None;
        for report in client.status_all(&self.endpoints) {
            let report = report.map_err(|error| format!("status: {error}"))?;
            let leader = report
                .leader
                .ok_or_else(|| format!("node {} knows no leader", report.id))?;
            match seen {
                None => seen = Some((leader, report.term)),
                Some(agreed) if agreed == (leader, report.term) => {}
                Some((other, term)) => {
                    return Err(format!(
                        "nodes disagree: node {leader} in term {} against node {other} in term \
                         {term}",
                        report.term
                    ));
                }
            }
        }
        seen.ok_or_else(|| "no node answered".to_owned())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Process `pid`'s counters from `/proc`.
fn sample(pid: u32) -> Result<Sample, String> {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let read = |path: &Path| {
        fs::read_to_string(path).map_err(|error| format!("reading {}: {error}", path.display()))
    };
    let stat = read(&proc.join("stat"))?;
    // The fields after the command name (which may hold spaces), from field 3 (state).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let (Some(utime), Some(stime)) = (field(14), field(15)) else {
        return Err(format!("no utime/stime in /proc/{pid}/stat"));
    };
    let status = read(&proc.join("status"))?;
    let mut sample = Sample {
        cpu_ticks: utime + stime,
        rss_kib: status_number(&status, "VmRSS:"),
        anon_kib: status_number(&status, "RssAnon:"),
        ..Sample::default()
    };
    let tasks = fs::read_dir(proc.join("task"))
        .map_err(|error| format!("listing /proc/{pid}/task: {error}"))?;
    for task in tasks.flatten() {
        let path = task.path();
        // A thread that ended meanwhile is left out.
        let (Ok(name), Ok(status)) = (
            fs::read_to_string(path.join("comm")),
            fs::read_to_string(path.join("status")),
        ) else {
            continue;
        };
        let switches = status_number(&status, "voluntary_ctxt_switches:");
        sample.wakeups += switches;
        if name.starts_with("balsa-timer") {
            sample.timer_wakeups += switches;
        } else if name.starts_with("balsa-consensus") {
            sample.consensus_wakeups += switches;
        }
        if let Ok(schedstat) = fs::read_to_string(path.join("schedstat")) {
            sample.cpu_ns += schedstat
                .split_whitespace()
                .next()
                .and_then(|ns| ns.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(sample)
}

/// The number after `key` on its line of a `/proc/.../status` file (0 if absent).
fn status_number(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}
