//! How Balsa's cost grows (issue 19): throughput and latency against the number of clients, the
//! value size, the cluster size, reads, and syncing, in one run, beside the floors of the same
//! run, with the targets computed as ratios of that run's figures and reported as met or
//! not met (never asserted: this machine is shared and a run can be noise).
//!
//! Every row is a timed closed-loop load of `balsa::client::load` (the load generator of
//! `balsa bench`) with the clients of a thread sharing a socket (`Sockets::Shared`) against
//! in-process nodes on loopback ([`LocalCluster`]: each node with its own threads, socket and
//! WAL, as `balsa serve` runs them):
//!
//! 1. `clients`: 1, 8, 64, 256 and 1,024 clients writing 100-byte values to 3 nodes;
//! 2. `values`: 64 clients writing values of 16 B, 1 KiB, 16 KiB and 60 KiB: writes/s and MB/s of
//!    payload (10⁶ bytes of values per second);
//! 3. `reads`: linearizable reads (ReadIndex), stale reads, and 90 % linearizable reads among
//!    10 % writes, at 1 and 64 clients, on the cluster of steps 1 and 2;
//! 4. `sizes`: fresh clusters of 3, 5 and 7 nodes, 1 and 64 clients writing 100-byte values;
//! 5. `fsync`: 64 and then 256 clients writing 100-byte values to a fresh durable cluster, then to a fresh
//!    one with syncing off (`NodeConfig::sync = false`, what `balsa serve --unsafe-no-fsync`
//!    sets): the ratio says what the disk costs under load.
//!
//! Each row reports operations per second, payload MB/s (of writes), p50 and p99 latency (all of
//! its operations), errors (failed operations, the warm-up's included), the elections during
//! it (the leader's term after the row minus before: a leader change takes at least one, and
//! with pre-vote a term is spent only by a candidate that could win, though a split vote spends
//! more than one), the leader changes (the most any node saw: `leader_changes_seen` of its
//! metrics), entries per WAL sync on the leader and
//! on a follower, and the share of CPU time the host stole meanwhile. A row with errors or a
//! leader change is reported, not fatal. Before each durable row the bench waits (at most
//! 5 s) for the machine's dirty pages to be written back, as `commit_latency` does.
//!
//! The floors, measured before and after the rows (ratios use the mean): `pwrite` + `fdatasync`
//! p50 on a preallocated file, two of three concurrent syncs on the shared disk, the UDP
//! loopback round trip, and the disk's sequential write bandwidth with `fdatasync` every 1 MiB
//! ([`measure_sequential_bandwidth`], 256 MiB). The three nodes share that disk: each byte of
//! payload is written by each node, so three times over, plus the zero-fill of the segments.
//!
//! Knobs: `BALSA_SCALE_SECS` seconds per row (default 8; the whole run then lasts six to seven
//! minutes); `BALSA_SCALE_ONLY` a comma-separated list of the sections to run (`clients`,
//! `values`, `sizes`, `reads`, `fsync`); `--json` (after `--`) prints, after the tables, one JSON
//! object with the floors, the rows and the targets. Data goes in `BALSA_BENCH_DIR` if set,
//! else in cargo's `CARGO_TARGET_TMPDIR`. Run with `cargo bench -p balsa-benches --bench scale`.
#![allow(
    clippy::print_stdout,
    clippy::disallowed_methods,
    reason = "benchmarks print their figures and read the clock"
)]

use std::{path::Path, time::Duration, time::Instant};

use balsa::client::load::{self, Load, Sockets, Workload};
use balsa_benches::{
    cluster::LocalCluster,
    floor::{
        measure_fdatasync_floor, measure_quorum_fdatasync, measure_sequential_bandwidth,
        measure_udp_rtt,
    },
    report::{self, Batching, Bound, Target},
    us_histogram,
};
use serde::Serialize;

/// Floor samples per latency measurement.
const FLOOR_ITERATIONS: usize = 2000;
/// Bytes of the round-trip floor's datagram: about a client's write of a 100-byte value.
const FLOOR_DATAGRAM: usize = 160;
/// Bytes the bandwidth floor writes, and how often it syncs.
const BANDWIDTH_BYTES: u64 = 256 << 20;
const BANDWIDTH_SYNC_EVERY: usize = 1 << 20;
/// The value size of every row but the `values` section's.
const VALUE_SIZE: usize = 100;
/// Seconds per row unless `BALSA_SCALE_SECS` says otherwise.
const DEFAULT_SECS: u64 = 8;
/// The longest a durable row waits for the machine's writeback to settle: on a shared machine
/// other writers keep it busy, and 23 rows must fit in the bench's ten minutes.
const QUIET_WAIT: Duration = Duration::from_secs(5);
/// The same before each measurement of the floors.
const FLOOR_QUIET_WAIT: Duration = Duration::from_secs(5);
/// The client counts of the `clients` section.
const CLIENT_COUNTS: [usize; 5] = [1, 8, 64, 256, 1024];
/// The value sizes of the `values` section.
const VALUE_SIZES: [usize; 4] = [16, 1024, 16 * 1024, 60 * 1024];
/// The cluster sizes of the `sizes` section.
const CLUSTER_SIZES: [usize; 3] = [3, 5, 7];
/// The clients of the `values` section, the `sizes` and `reads` sections' larger load and the
/// `fsync` section.
const MANY: usize = 64;
/// A 90/10 read/write mix.
const MIX_90_10: Workload = Workload::Mixed {
    reads_per_million: 900_000,
};

/// The sections, in the order they are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Section {
    Clients,
    Values,
    Reads,
    Sizes,
    Fsync,
}

impl Section {
    const ALL: [Section; 5] = [
        Section::Clients,
        Section::Values,
        Section::Reads,
        Section::Sizes,
        Section::Fsync,
    ];

    fn name(self) -> &'static str {
        match self {
            Section::Clients => "clients",
            Section::Values => "values",
            Section::Reads => "reads",
            Section::Sizes => "sizes",
            Section::Fsync => "fsync",
        }
    }
}

/// The sections `BALSA_SCALE_ONLY` names (all without it).
fn sections_wanted() -> Result<Vec<Section>, String> {
    let Ok(text) = std::env::var("BALSA_SCALE_ONLY") else {
        return Ok(Section::ALL.to_vec());
    };
    let mut wanted = Vec::new();
    for name in text
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
    {
        let section = Section::ALL
            .into_iter()
            .find(|section| section.name() == name)
            .ok_or_else(|| {
                format!(
                    "BALSA_SCALE_ONLY names {name:?}; the sections are {}",
                    Section::ALL.map(Section::name).join(", ")
                )
            })?;
        wanted.push(section);
    }
    if wanted.is_empty() {
        return Err("BALSA_SCALE_ONLY names no section".into());
    }
    Ok(wanted)
}

/// The floors of one measurement, p50s in µs.
#[derive(Clone, Copy, Debug, Serialize)]
struct Floors {
    fdatasync_us: f64,
    quorum_fdatasync_us: f64,
    /// 3 of 5 and 4 of 7 concurrent syncs: the disk share of a commit of the larger clusters,
    /// whose nodes all share this one disk too.
    quorum_5_fdatasync_us: f64,
    quorum_7_fdatasync_us: f64,
    udp_rtt_us: f64,
    bandwidth_mb_per_sec: f64,
}

impl Floors {
    fn measure(dir: &Path) -> Result<Floors, String> {
        // Cargo has just written this bench's executable (hundreds of MB with debug info), and
        // the rows leave segments behind: a floor measured during their writeback is the
        // writeback's. (On the shared machine other writers rarely let it settle: bounded.)
        report::settle_disk(FLOOR_QUIET_WAIT);
        let p50_us = |hist: &hdrhistogram::Histogram<u64>| hist.value_at_quantile(0.5) as f64 / 1e3;
        let sync = measure_fdatasync_floor(dir, FLOOR_ITERATIONS);
        let quorum = measure_quorum_fdatasync(dir, 3, 2, FLOOR_ITERATIONS)
            .map_err(|error| format!("2-of-3 fdatasync floor: {error}"))?;
        let quorum_5 = measure_quorum_fdatasync(dir, 5, 3, FLOOR_ITERATIONS / 2)
            .map_err(|error| format!("3-of-5 fdatasync floor: {error}"))?;
        let quorum_7 = measure_quorum_fdatasync(dir, 7, 4, FLOOR_ITERATIONS / 2)
            .map_err(|error| format!("4-of-7 fdatasync floor: {error}"))?;
        let rtt = measure_udp_rtt(FLOOR_DATAGRAM, FLOOR_ITERATIONS)
            .map_err(|error| format!("UDP round-trip floor: {error}"))?;
        let bandwidth = measure_sequential_bandwidth(dir, BANDWIDTH_BYTES, BANDWIDTH_SYNC_EVERY)
            .map_err(|error| format!("sequential bandwidth floor: {error}"))?;
        Ok(Floors {
            fdatasync_us: p50_us(&sync),
            quorum_fdatasync_us: p50_us(&quorum),
            quorum_5_fdatasync_us: p50_us(&quorum_5),
            quorum_7_fdatasync_us: p50_us(&quorum_7),
            udp_rtt_us: p50_us(&rtt),
            bandwidth_mb_per_sec: bandwidth.mb_per_sec(),
        })
    }

    fn mean_with(&self, other: &Floors) -> Floors {
        Floors {
            fdatasync_us: f64::midpoint(self.fdatasync_us, other.fdatasync_us),
            quorum_fdatasync_us: f64::midpoint(self.quorum_fdatasync_us, other.quorum_fdatasync_us),
            quorum_5_fdatasync_us: f64::midpoint(
                self.quorum_5_fdatasync_us,
                other.quorum_5_fdatasync_us,
            ),
            quorum_7_fdatasync_us: f64::midpoint(
                self.quorum_7_fdatasync_us,
                other.quorum_7_fdatasync_us,
            ),
            udp_rtt_us: f64::midpoint(self.udp_rtt_us, other.udp_rtt_us),
            bandwidth_mb_per_sec: f64::midpoint(
                self.bandwidth_mb_per_sec,
                other.bandwidth_mb_per_sec,
            ),
        }
    }

    /// The commit floor of a cluster of `nodes` on this one disk: its quorum of concurrent
    /// syncs and two round trips.
    fn commit_floor_us(&self, nodes: usize) -> f64 {
        let syncs = match nodes {
            5 => self.quorum_5_fdatasync_us,
            7 => self.quorum_7_fdatasync_us,
            _ => self.quorum_fdatasync_us,
        };
        syncs + 2.0 * self.udp_rtt_us
    }

    fn print(&self, name: &str) {
        println!(
            "{name}: pwrite+fdatasync p50 {:.1} µs, 2-of-3 concurrent fdatasync p50 {:.1} µs \
             (3 of 5: {:.1} µs, 4 of 7: {:.1} µs), UDP loopback RTT p50 {:.1} µs \
             ({FLOOR_DATAGRAM} B), sequential write {:.1} MB/s (fdatasync every 1 MiB)",
            self.fdatasync_us,
            self.quorum_fdatasync_us,
            self.quorum_5_fdatasync_us,
            self.quorum_7_fdatasync_us,
            self.udp_rtt_us,
            self.bandwidth_mb_per_sec
        );
    }
}

/// What one row runs.
#[derive(Clone, Copy, Debug)]
struct Spec {
    section: Section,
    nodes: usize,
    clients: usize,
    value_size: usize,
    workload: Workload,
    durable: bool,
}

impl Spec {
    fn writes(section: Section, nodes: usize, clients: usize, value_size: usize) -> Spec {
        Spec {
            section,
            nodes,
            clients,
            value_size,
            workload: Workload::Put,
            durable: true,
        }
    }

    fn name(&self) -> String {
        let what = match self.workload {
            Workload::Put => format!("writes {} B", self.value_size),
            Workload::Get => "linearizable reads".to_owned(),
            Workload::GetStale => "stale reads".to_owned(),
            Workload::Mixed { .. } => "90/10 reads/writes".to_owned(),
        };
        format!(
            "{} nodes, {:>4} clients, {what}{}",
            self.nodes,
            self.clients,
            if self.durable { "" } else { ", no fsync" }
        )
    }
}

/// What one row measured.
#[derive(Clone, Debug, Serialize)]
struct Row {
    section: &'static str,
    name: String,
    nodes: usize,
    clients: usize,
    value_size: usize,
    workload: String,
    durable: bool,
    ops_per_sec: f64,
    payload_mb_per_sec: f64,
    p50_us: u64,
    p99_us: u64,
    errors: u64,
    elections: u64,
    leader_changes: u64,
    leader_entries_per_sync: f64,
    follower_entries_per_sync: f64,
    stolen: Option<f64>,
    /// Why the load stopped early, if it did.
    stopped: Option<String>,
    #[serde(skip)]
    spec: Spec,
}

fn main() -> Result<(), String> {
    let started = Instant::now();
    let sections = sections_wanted()?;
    let secs = std::env::var("BALSA_SCALE_SECS")
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .filter(|&secs| secs > 0)
        .unwrap_or(DEFAULT_SECS);
    let json = std::env::args().any(|arg| arg == "--json");
    let dir = report::bench_dir(
        &format!(
            "scale: closed-loop clients on shared sockets, {secs} s per row, sections {}",
            sections
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        env!("CARGO_TARGET_TMPDIR"),
    )?;
    let dir = dir.path();
    let before = Floors::measure(dir)?;
    before.print("floor before");

    let row_time = Duration::from_secs(secs);
    let wants = |section| sections.contains(&section);
    let mut rows = Vec::new();
    if wants(Section::Clients) || wants(Section::Values) || wants(Section::Reads) {
        let main = &dir.join("main");
        let cluster = LocalCluster::start_configured(3, main, &mut |_| {})?;
        let mut specs = Vec::new();
        if wants(Section::Clients) {
            specs.extend(
                CLIENT_COUNTS.map(|clients| Spec::writes(Section::Clients, 3, clients, VALUE_SIZE)),
            );
        }
        if wants(Section::Values) {
            specs.extend(VALUE_SIZES.map(|size| Spec::writes(Section::Values, 3, MANY, size)));
        }
        if wants(Section::Reads) {
            for workload in [Workload::Get, Workload::GetStale, MIX_90_10] {
                for clients in [1, MANY] {
                    specs.push(Spec {
                        workload,
                        ..Spec::writes(Section::Reads, 3, clients, VALUE_SIZE)
                    });
                }
            }
        }
        for spec in specs {
            rows.push(run_row(&cluster, spec, row_time)?);
        }
        cluster.shutdown()?;
        remove(main);
    }
    if wants(Section::Sizes) {
        for nodes in CLUSTER_SIZES {
            let at = &dir.join(format!("size-{nodes}"));
            let cluster = LocalCluster::start_configured(nodes, at, &mut |_| {})?;
            for clients in [1, MANY] {
                let spec = Spec::writes(Section::Sizes, nodes, clients, VALUE_SIZE);
                rows.push(run_row(&cluster, spec, row_time)?);
            }
            cluster.shutdown()?;
            remove(at);
        }
    }
    if wants(Section::Fsync) {
        for durable in [true, false] {
            let at = &dir.join(if durable { "durable" } else { "no-fsync" });
            let cluster =
                LocalCluster::start_configured(3, at, &mut |config| config.sync = durable)?;
            // 64 clients, the target's load, and 256: whether the disk's share shrinks once
            // more writes wait behind each sync.
            for clients in [MANY, 4 * MANY] {
                let spec = Spec {
                    durable,
                    ..Spec::writes(Section::Fsync, 3, clients, VALUE_SIZE)
                };
                rows.push(run_row(&cluster, spec, row_time)?);
            }
            cluster.shutdown()?;
            remove(at);
        }
    }

    let after = Floors::measure(dir)?;
    after.print("floor after");
    let floors = before.mean_with(&after);
    floors.print("floor, mean of before and after");
    print_table(&rows, &floors);
    let targets = targets(&rows, &floors);
    println!("\ntargets (issue 19; figures of this run, reported, not asserted):");
    for target in &targets {
        println!("  {}", target.line());
    }
    println!("\ndone in {:.1} s", started.elapsed().as_secs_f64());
    if json {
        #[derive(Serialize)]
        struct Output<'a> {
            seconds_per_row: u64,
            floor_before: Floors,
            floor_after: Floors,
            floor: Floors,
            rows: &'a [Row],
            targets: &'a [Target],
        }
        let output = Output {
            seconds_per_row: secs,
            floor_before: before,
            floor_after: after,
            floor: floors,
            rows: &rows,
            targets: &targets,
        };
        println!(
            "{}",
            serde_json::to_string(&output).map_err(|error| format!("--json: {error}"))?
        );
    }
    Ok(())
}

/// Removes a stopped cluster's directory (its segments are large); a failure is only reported.
fn remove(dir: &Path) {
    if let Err(error) = std::fs::remove_dir_all(dir) {
        println!("  (could not remove {}: {error})", dir.display());
    }
}

/// How many leader changes each of the cluster's first `nodes` nodes has seen since it started.
fn leader_changes_seen(cluster: &LocalCluster, nodes: usize) -> Result<Vec<u64>, String> {
    (1..=nodes as u64)
        .map(|id| {
            let node = cluster
                .node(id)
                .ok_or_else(|| format!("node {id} is not running"))?;
            let metrics = node
                .metrics()
                .map_err(|error| format!("node {id}'s metrics: {error}"))?;
            Ok(metrics.counts.leader_changes_seen)
        })
        .collect()
}

/// Runs one row on `cluster` for `time` and prints a line about it.
fn run_row(cluster: &LocalCluster, spec: Spec, time: Duration) -> Result<Row, String> {
    if spec.durable {
        report::settle_disk(QUIET_WAIT);
    }
    let load = Load {
        endpoints: cluster.endpoints(),
        clients: spec.clients,
        ops: u64::MAX,
        value_size: spec.value_size,
        warmup: 1000.max(spec.clients as u64 * 20),
        workload: spec.workload,
        duration: Some(time),
        options: cluster.client_options(),
        sockets: Sockets::Shared,
    };
    let leadership = cluster.leadership()?;
    let reports_before = cluster.reports()?;
    let changes_before = leader_changes_seen(cluster, spec.nodes)?;
    let ticks = report::cpu_ticks();
    let outcome = load::run(&load, &mut |_| {})
        .map_err(|error| format!("{}: the load could not run: {error}", spec.name()))?;
    let stolen = report::steal_share(ticks, report::cpu_ticks());
    // Waits (bounded) for a leader: a row that lost one ends with the next.
    let now = cluster.leadership()?;
    let reports_after = cluster.reports()?;
    let changes_after = leader_changes_seen(cluster, spec.nodes)?;
    let leader_changes = changes_before
        .iter()
        .zip(&changes_after)
        .map(|(before, after)| after.saturating_sub(*before))
        .max()
        .unwrap_or(0);
    let batching = Batching::between(&reports_before, &reports_after, leadership.leader);
    let mut latency = us_histogram(&outcome.writes.latencies_us);
    for &us in &outcome.reads.latencies_us {
        latency.saturating_record(us);
    }
    let secs = outcome.elapsed.as_secs_f64().max(1e-9);
    let row = Row {
        section: spec.section.name(),
        name: spec.name(),
        nodes: spec.nodes,
        clients: spec.clients,
        value_size: spec.value_size,
        workload: spec.workload.to_string(),
        durable: spec.durable,
        ops_per_sec: outcome.ops_per_sec(),
        payload_mb_per_sec: outcome.writes.ops() as f64 * spec.value_size as f64 / secs / 1e6,
        p50_us: latency.value_at_quantile(0.5),
        p99_us: latency.value_at_quantile(0.99),
        errors: outcome.errors(),
        elections: now.term.saturating_sub(leadership.term),
        leader_changes,
        leader_entries_per_sync: batching.leader_entries_per_sync,
        follower_entries_per_sync: batching.follower_entries_per_sync,
        stolen,
        stopped: outcome.stopped.clone(),
        spec,
    };
    println!(
        "{}: {:.0} ops/s, {:.1} MB/s, p50 {} µs, p99 {} µs, {} errors, {} elections, {} leader changes; {batching}; \
         CPU stolen {}{}",
        row.name,
        row.ops_per_sec,
        row.payload_mb_per_sec,
        row.p50_us,
        row.p99_us,
        row.errors,
        row.elections,
        row.leader_changes,
        report::steal_between(ticks, report::cpu_ticks()),
        outcome
            .first_error
            .map_or_else(String::new, |first| format!("; first error: {first}")),
    );
    Ok(row)
}

fn print_table(rows: &[Row], floors: &Floors) {
    let commit_floor_us = floors.commit_floor_us(3);
    println!(
        "\ncommit floor = 2-of-3 fdatasync + 2 × UDP RTT = {commit_floor_us:.1} µs (5 nodes, 3 of 5 \
         syncs: {:.1} µs; 7 nodes, 4 of 7: {:.1} µs; p50/fl is over the row's own); payload MB/s \
         against the sequential write bandwidth of {:.1} MB/s",
        floors.commit_floor_us(5),
        floors.commit_floor_us(7),
        floors.bandwidth_mb_per_sec
    );
    println!(
        "{:<8} {:<48} {:>8} {:>7} {:>7} {:>7} {:>7} {:>6} {:>5} {:>4} {:>11} {:>6}",
        "section",
        "row",
        "ops/s",
        "MB/s",
        "p50 µs",
        "p99 µs",
        "p50/fl",
        "errors",
        "elect",
        "lead",
        "e/sync L/F",
        "stolen"
    );
    for section in Section::ALL {
        for row in rows.iter().filter(|row| row.section == section.name()) {
            println!(
                "{:<8} {:<48} {:>8.0} {:>7.1} {:>7} {:>7} {:>7.2} {:>6} {:>5} {:>4} {:>5.1}/{:<5.1} {:>6}{}",
                row.section,
                row.name,
                row.ops_per_sec,
                row.payload_mb_per_sec,
                row.p50_us,
                row.p99_us,
                row.p50_us as f64 / floors.commit_floor_us(row.spec.nodes),
                row.errors,
                row.elections,
                row.leader_changes,
                row.leader_entries_per_sync,
                row.follower_entries_per_sync,
                row.stolen
                    .map_or_else(|| "?".to_owned(), |share| format!("{:.1}%", share * 100.0)),
                row.stopped
                    .as_deref()
                    .map_or_else(String::new, |why| format!("  stopped early: {why}")),
            );
        }
    }
}

/// The targets, each a figure of this run against its limit.
fn targets(rows: &[Row], floors: &Floors) -> Vec<Target> {
    let find =
        |section: Section, nodes: usize, clients: usize, value_size: usize, workload, durable| {
            rows.iter().find(|row| {
                let spec = &row.spec;
                spec.section == section
                    && spec.nodes == nodes
                    && spec.clients == clients
                    && spec.value_size == value_size
                    && spec.workload == workload
                    && spec.durable == durable
            })
        };
    let writes = |section, nodes, clients, value_size| {
        find(section, nodes, clients, value_size, Workload::Put, true)
    };
    let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b.max(1e-9));
    let throughput = |row: Option<&Row>| row.map(|row| row.ops_per_sec);
    let p50 = |row: Option<&Row>| row.map(|row| row.p50_us as f64);
    let durable_64 = writes(Section::Clients, 3, MANY, VALUE_SIZE);
    let reads_64 = find(Section::Reads, 3, MANY, VALUE_SIZE, Workload::Get, true);
    let large = writes(Section::Values, 3, MANY, 60 * 1024);
    let (three, five, seven) = (
        writes(Section::Sizes, 3, 1, VALUE_SIZE),
        writes(Section::Sizes, 5, 1, VALUE_SIZE),
        writes(Section::Sizes, 7, 1, VALUE_SIZE),
    );
    let most = writes(Section::Clients, 3, 1024, VALUE_SIZE);
    let fsync_on = writes(Section::Fsync, 3, MANY, VALUE_SIZE);
    let fsync_off = find(Section::Fsync, 3, MANY, VALUE_SIZE, Workload::Put, false);
    let target = |name: &str, value, bound, limit| Target {
        name: name.to_owned(),
        value,
        bound,
        limit,
    };
    vec![
        target(
            "linearizable reads / durable writes, 64 clients (ops/s)",
            ratio(throughput(reads_64), throughput(durable_64)),
            Bound::AtLeast,
            3.0,
        ),
        target(
            "60 KiB values, 64 clients: payload MB/s / sequential write bandwidth",
            large.map(|row| row.payload_mb_per_sec / floors.bandwidth_mb_per_sec.max(1e-9)),
            Bound::AtLeast,
            0.5,
        ),
        target(
            "60 KiB values, 64 clients: payload MB/s / (sequential bandwidth / 3), the most \
             three replicas on one disk can reach (context)",
            large.map(|row| row.payload_mb_per_sec * 3.0 / floors.bandwidth_mb_per_sec.max(1e-9)),
            Bound::AtLeast,
            0.5,
        ),
        target(
            "5 nodes / 3 nodes, 1-client p50",
            ratio(p50(five), p50(three)),
            Bound::AtMost,
            1.15,
        ),
        target(
            "5 nodes / 3 nodes, 1-client p50 over each size's commit floor (q-of-n syncs on the \
             one disk + 2 RTT) (context)",
            ratio(
                ratio(p50(five), Some(floors.commit_floor_us(5))),
                ratio(p50(three), Some(floors.commit_floor_us(3))),
            ),
            Bound::AtMost,
            1.15,
        ),
        target(
            "7 nodes / 3 nodes, 1-client p50 over each size's commit floor (context)",
            ratio(
                ratio(p50(seven), Some(floors.commit_floor_us(7))),
                ratio(p50(three), Some(floors.commit_floor_us(3))),
            ),
            Bound::AtMost,
            1.3,
        ),
        target(
            "7 nodes / 3 nodes, 1-client p50",
            ratio(p50(seven), p50(three)),
            Bound::AtMost,
            1.3,
        ),
        target(
            "1,024 clients: errors",
            most.map(|row| row.errors as f64),
            Bound::AtMost,
            0.0,
        ),
        target(
            "1,024 clients: leader changes",
            most.map(|row| row.leader_changes as f64),
            Bound::AtMost,
            0.0,
        ),
        target(
            "1,024 / 64 clients, writes/s",
            ratio(throughput(most), throughput(durable_64)),
            Bound::AtLeast,
            1.0,
        ),
        target(
            "durable / no-fsync writes/s, 64 clients",
            ratio(throughput(fsync_on), throughput(fsync_off)),
            Bound::AtLeast,
            0.8,
        ),
        target(
            "durable / no-fsync writes/s, 256 clients (context)",
            ratio(
                throughput(writes(Section::Fsync, 3, 4 * MANY, VALUE_SIZE)),
                throughput(find(
                    Section::Fsync,
                    3,
                    4 * MANY,
                    VALUE_SIZE,
                    Workload::Put,
                    false,
                )),
            ),
            Bound::AtLeast,
            0.8,
        ),
    ]
}
