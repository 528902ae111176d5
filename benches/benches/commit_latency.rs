//! Commit latency of a 3-node cluster on loopback, every write durable, against the physical floor
//! measured in the same run:
//!
//! 1. the floor: `pwrite` + `fdatasync` p50 on a preallocated file in the cluster's data directory
//!    and the UDP loopback round trip p50 between two blocking threads; floor = their sum, the cost
//!    of one durable write plus one network round trip. (A Raft commit as a client sees it needs two
//!    round trips — client ↔ leader and leader ↔ follower — and the follower's sync, so a ratio of
//!    1.0 is below what any implementation can reach.) Beside it, the commit floor of this set-up:
//!    the three nodes share one disk, so every write is synced three times at once
//!    and a commit waits for two of them — the time until two of three concurrent `pwrite` +
//!    `fdatasync` finished — plus the two round trips; and a *staggered* commit floor, with the
//!    leader's sync started first and the two followers' together a moment later, as a commit
//!    tries to arrange them (their flushes can then merge behind the leader's). And the cost of a
//!    thread hand-off, as a crossbeam round trip between two threads. And a *bare commit*: the
//!    same work with no Raft in it — a blocking thread per node, plain UDP, each node's append
//!    synced, the leader answering after its own sync and one follower's acknowledgement — with
//!    each write path (`p50/bc` compares a run with the bare commit of its write path): what the
//!    software adds, measured rather than argued; and the bare commit on Balsa's threads (a
//!    receiving, a consensus and a disk thread per node): what the thread layout costs alone;
//! 2. one closed-loop client: latency percentiles and throughput;
//! 3. 8 and 64 closed-loop clients: throughput (group commit and batching at work), each count
//!    twice: with a socket per client (one request per datagram), then with the clients of a
//!    load thread sharing one socket, their ready requests batched into one datagram and the
//!    leader's answers to them batched back (`Sockets::Shared`, as a client library multiplexing
//!    sessions on one connection would). Steps 2 and 3 run on a cluster writing its WAL the
//!    nodes' default way, then again with the other of `pwrite` + `fdatasync` and
//!    `O_DIRECT | O_DSYNC`, for comparison;
//! 4. sealing (issue 16): the same loads — one client, and the most clients both with shared
//!    sockets and with a socket each — on two clusters of the default write path running side by
//!    side, one insecure and one with keys (`NodeConfig::keys`, the clients with
//!    `ClientOptions::key`), each load on one then the other, the order alternating from round
//!    to round; prints each run against the floors and the ratio keyed / insecure per round and
//!    over all rounds, beside the targets (one-client p50 within +5 %, throughput with
//!    the most clients within −10 %); before step 5, whose writes leave the disk busy;
//! 5. one and 64 clients with syncing off (`--unsafe-no-fsync`): what threads and network cost
//!    alone;
//! 6. the floor again, to show how much the machine drifted meanwhile; ratios use the mean of the
//!    two p50s.
//!
//! The nodes run in this process (each with its own threads, socket and WAL, as `balsa serve`
//! runs them); the clients talk to them over UDP. The run fails if the leader changes during any
//! load run of steps 2, 3 and 5 (in step 4 such a run is marked and left out of the ratios).
//! Data goes in `BALSA_BENCH_DIR` if set, else in cargo's on-disk `CARGO_TARGET_TMPDIR`.
//! `BALSA_BENCH_OPS` sets the measured writes of the 1-client run (default 10,000; the larger runs
//! make three times as many); `BALSA_BENCH_CLIENTS` the client counts of the durable runs (default `1,8,64`; the
//! first is the latency run; step 4 takes 1, if named, and the largest);
//! `BALSA_BENCH_DURABLE_ONLY` skips the runs without fsync; `BALSA_BENCH_SEAL_ROUNDS` the rounds
//! of step 4 (default 2, 0 skips it; its one-client runs make `BALSA_BENCH_OPS / (2 × rounds)`
//! writes each, at least 1,000, so that together they make as many as step 2's one run; the
//! others `3 × BALSA_BENCH_OPS`, as in step 3);
//! `BALSA_BENCH_SEAL_NO_FSYNC` runs step 4 with syncing off (what sealing costs the threads and
//! the network alone); `BALSA_BENCH_ONLY=seal` runs the floors and step 4 alone.
//! Run with `cargo bench -p balsa-benches --bench commit_latency`.
#![allow(
    clippy::print_stdout,
    clippy::disallowed_methods,
    reason = "benchmarks print their figures and read the clock"
)]

use std::{io, path::Path, path::PathBuf, time::Duration, time::Instant};

use balsa::NodeConfig;
use balsa::client::load::{self, Load, Outcome, Sockets, Workload};
use balsa::wal::WritePath;
use balsa_benches::{
    bare_commit::{self, Layout},
    cluster::{Leadership, LocalCluster},
    floor::{
        measure_fdatasync_floor, measure_quorum_fdatasync, measure_staggered_commit_sync,
        measure_thread_handoff, measure_udp_rtt,
    },
    report, us_histogram,
};
use balsa_net::{KeyRing, Keys};
use hdrhistogram::Histogram;

/// Floor samples per measurement.
const FLOOR_ITERATIONS: usize = 2000;
/// Bytes of the floor's datagram: about a client's write of a 100-byte value.
const FLOOR_DATAGRAM: usize = 160;
/// Value size of every write.
const VALUE_SIZE: usize = 100;
/// Rounds of the sealing A/B unless `BALSA_BENCH_SEAL_ROUNDS` says otherwise.
const SEAL_ROUNDS: usize = 2;
/// The targets for a keyed cluster against an insecure one: one-client p50 at most this
/// ratio, throughput with the most clients at least this one.
const SEALED_P50_TARGET: f64 = 1.05;
const SEALED_THROUGHPUT_TARGET: f64 = 0.90;

struct Floor {
    fdatasync_p50_us: f64,
    rtt_p50_us: f64,
    /// Three files synced at once, time until two finished: the disk share of a commit when the
    /// three nodes share one disk.
    quorum_fdatasync_p50_us: f64,
    /// The same with the leader's sync started first and the followers' a moment later, as a
    /// commit makes them: timed from the followers' start until two of three finished.
    staggered_fdatasync_p50_us: f64,
    /// A crossbeam round trip between two threads: two thread hand-offs.
    handoff_rtt_p50_us: f64,
    /// A commit with no Raft in it: one thread per node, plain UDP and syncs
    /// ([`bare_commit`]).
    bare_commit_p50_us: f64,
    /// The same with `O_DIRECT | O_DSYNC` writes, where the WAL uses them.
    bare_commit_direct_p50_us: Option<f64>,
    /// The bare commit on Balsa's threads: four hand-offs on the path, nothing else of Raft.
    bare_commit_handoffs_p50_us: f64,
    /// The tails (p99), for the reader.
    p99_us: Tails,
}

/// The p99s of a floor measurement, in µs.
#[derive(Clone, Copy)]
struct Tails {
    fdatasync: f64,
    quorum_fdatasync: f64,
    rtt: f64,
    bare_commit: f64,
}

impl Floor {
    fn measure(dir: &Path) -> io::Result<Floor> {
        let p50_us = |hist: &hdrhistogram::Histogram<u64>| hist.value_at_quantile(0.5) as f64 / 1e3;
        let p99_us =
            |hist: &hdrhistogram::Histogram<u64>| hist.value_at_quantile(0.99) as f64 / 1e3;
        // Each error says which measurement failed.
        let named = |name: &str| {
            let name = name.to_owned();
            move |error: io::Error| io::Error::new(error.kind(), format!("{name}: {error}"))
        };
        let sync = measure_fdatasync_floor(dir, FLOOR_ITERATIONS);
        let rtt = measure_udp_rtt(FLOOR_DATAGRAM, FLOOR_ITERATIONS).map_err(named("UDP RTT"))?;
        let quorum = measure_quorum_fdatasync(dir, 3, 2, FLOOR_ITERATIONS)
            .map_err(named("2-of-3 fdatasync"))?;
        let staggered = measure_staggered_commit_sync(dir, FLOOR_ITERATIONS)
            .map_err(named("staggered syncs"))?;
        let handoff = measure_thread_handoff(FLOOR_ITERATIONS);
        let bare_commit = |path, layout| {
            bare_commit::measure(dir, path, layout, FLOOR_DATAGRAM, FLOOR_ITERATIONS)
                .map_err(named(&format!("bare commit ({path:?}, {layout:?})")))
        };
        let bare = bare_commit(WritePath::Pwrite, Layout::Bare)?;
        let handoffs = bare_commit(WritePath::Pwrite, Layout::Handoffs)?;
        let bare_direct = match bare_commit(WritePath::Direct, Layout::Bare) {
            Ok(hist) => Some(hist),
            Err(error) if error.kind() == io::ErrorKind::Unsupported => None,
            Err(error) => return Err(error),
        };
        Ok(Floor {
            fdatasync_p50_us: p50_us(&sync),
            rtt_p50_us: p50_us(&rtt),
            quorum_fdatasync_p50_us: p50_us(&quorum),
            staggered_fdatasync_p50_us: p50_us(&staggered),
            handoff_rtt_p50_us: p50_us(&handoff),
            bare_commit_p50_us: p50_us(&bare),
            bare_commit_direct_p50_us: bare_direct.as_ref().map(p50_us),
            bare_commit_handoffs_p50_us: p50_us(&handoffs),
            p99_us: Tails {
                fdatasync: p99_us(&sync),
                quorum_fdatasync: p99_us(&quorum),
                rtt: p99_us(&rtt),
                bare_commit: p99_us(&bare),
            },
        })
    }

    /// Each p50 the mean of this one's and `other`'s (the tails are not averaged: kept as this
    /// one's, only printed per measurement).
    fn mean_with(&self, other: &Floor) -> Floor {
        Floor {
            fdatasync_p50_us: f64::midpoint(self.fdatasync_p50_us, other.fdatasync_p50_us),
            rtt_p50_us: f64::midpoint(self.rtt_p50_us, other.rtt_p50_us),
            quorum_fdatasync_p50_us: f64::midpoint(
                self.quorum_fdatasync_p50_us,
                other.quorum_fdatasync_p50_us,
            ),
            staggered_fdatasync_p50_us: f64::midpoint(
                self.staggered_fdatasync_p50_us,
                other.staggered_fdatasync_p50_us,
            ),
            handoff_rtt_p50_us: f64::midpoint(self.handoff_rtt_p50_us, other.handoff_rtt_p50_us),
            bare_commit_p50_us: f64::midpoint(self.bare_commit_p50_us, other.bare_commit_p50_us),
            bare_commit_direct_p50_us: self
                .bare_commit_direct_p50_us
                .zip(other.bare_commit_direct_p50_us)
                .map(|(this, that)| f64::midpoint(this, that)),
            bare_commit_handoffs_p50_us: f64::midpoint(
                self.bare_commit_handoffs_p50_us,
                other.bare_commit_handoffs_p50_us,
            ),
            p99_us: self.p99_us,
        }
    }

    /// The bare commit's p50 with the nodes' syncs made as `path` makes them, if measured
    /// (`Mmap` has none of its own: the `fdatasync` one is the nearest).
    fn bare_commit_us(&self, path: WritePath) -> Option<f64> {
        match path {
            WritePath::Direct => self.bare_commit_direct_p50_us,
            WritePath::Pwrite | WritePath::Mmap => Some(self.bare_commit_p50_us),
        }
    }

    /// The floor: one fdatasync and one UDP round trip.
    fn total_us(&self) -> f64 {
        self.fdatasync_p50_us + self.rtt_p50_us
    }

    /// What a commit needs at least here: two of three concurrent syncs on the shared disk, and
    /// two round trips (client ↔ leader, leader ↔ follower).
    fn commit_floor_us(&self) -> f64 {
        self.quorum_fdatasync_p50_us + 2.0 * self.rtt_p50_us
    }

    /// The same with the staggered syncs a commit actually makes (the lower of the two, usually).
    fn staggered_commit_floor_us(&self) -> f64 {
        self.staggered_fdatasync_p50_us + 2.0 * self.rtt_p50_us
    }
}

fn main() -> Result<(), String> {
    let started = Instant::now();
    let ops: u64 = std::env::var("BALSA_BENCH_OPS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(10_000);
    let dir = report::bench_dir(
        &format!(
            "commit_latency: 3 nodes on loopback, {VALUE_SIZE}-byte values, closed-loop clients"
        ),
        env!("CARGO_TARGET_TMPDIR"),
    )?;
    let dir = dir.path();

    let before = Floor::measure(dir).map_err(|e| format!("measuring the floor: {e}"))?;
    print_floor("floor before", &before);

    let clients: Vec<usize> = std::env::var("BALSA_BENCH_CLIENTS").map_or_else(
        |_| vec![1, 8, 64],
        |text| {
            text.split(',')
                .filter_map(|n| n.trim().parse().ok())
                .filter(|&n: &usize| n > 0)
                .collect()
        },
    );
    if clients.is_empty() {
        return Err("BALSA_BENCH_CLIENTS names no client count".into());
    }
    // The nodes' default write path first (its runs are the ones checked against the targets),
    // then the other, for comparison.
    let default_path = NodeConfig::new(1, Vec::new(), PathBuf::new())
        .wal
        .write_path;
    let other_path = if default_path == WritePath::Direct {
        WritePath::Pwrite
    } else {
        WritePath::Direct
    };
    let seal_only = std::env::var("BALSA_BENCH_ONLY").is_ok_and(|only| only == "seal");
    let seal_rounds: usize = std::env::var("BALSA_BENCH_SEAL_ROUNDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(SEAL_ROUNDS);
    let runs = runs_for(&clients);
    let (durable, durable_other) = if seal_only {
        (Vec::new(), Vec::new())
    } else {
        (
            run_cluster(&dir.join("durable"), true, default_path, ops, &runs)?,
            run_cluster(&dir.join("other"), true, other_path, ops, &runs)?,
        )
    };
    // Before the runs without syncs: each waits for the disk to settle, and those leave it
    // busy writing back for seconds.
    let sealing = if seal_rounds == 0 {
        None
    } else {
        let sync = std::env::var_os("BALSA_BENCH_SEAL_NO_FSYNC").is_none();
        Some(run_seal_ab(
            &dir.join("sealing"),
            (sync, default_path),
            ops,
            &clients,
            seal_rounds,
        )?)
    };
    let unsafe_runs = if seal_only || std::env::var_os("BALSA_BENCH_DURABLE_ONLY").is_some() {
        Vec::new()
    } else {
        run_cluster(
            &dir.join("no-fsync"),
            false,
            WritePath::Pwrite,
            ops,
            &runs_for(&[1, 64]),
        )?
    };

    let after = Floor::measure(dir).map_err(|e| format!("measuring the floor: {e}"))?;
    print_floor("floor after", &after);
    // Ratios use the mean of the measurements before and after the load.
    let mean = before.mean_with(&after);
    let floor_us = mean.total_us();
    println!(
        "floor = fdatasync p50 + UDP RTT p50, mean of before and after: {floor_us:.1} µs \
         (fdatasync {:.1}, RTT {:.1})",
        mean.fdatasync_p50_us, mean.rtt_p50_us,
    );
    let commit_floor_us = mean.commit_floor_us();
    println!(
        "commit floor = 2-of-3 concurrent fdatasync p50 + 2 × UDP RTT p50: {commit_floor_us:.1} µs \
         (2-of-3 fdatasync {:.1}); thread hand-off round trip p50 {:.1} µs",
        mean.quorum_fdatasync_p50_us, mean.handoff_rtt_p50_us,
    );
    let staggered_floor_us = mean.staggered_commit_floor_us();
    println!(
        "staggered commit floor = the leader's sync first, the followers' a moment later, until two \
         of three finished ({:.1} µs) + 2 × UDP RTT p50: {staggered_floor_us:.1} µs = {:.2} × floor",
        mean.staggered_fdatasync_p50_us,
        staggered_floor_us / floor_us,
    );
    println!(
        "bare commit = the same work with no Raft (a thread per node, plain UDP), p50: {:.1} µs = \
         {:.2} × floor{}",
        mean.bare_commit_p50_us,
        mean.bare_commit_p50_us / floor_us,
        mean.bare_commit_direct_p50_us
            .map_or_else(String::new, |us| format!(
                "; with O_DIRECT|O_DSYNC {us:.1} µs = {:.2} × floor",
                us / floor_us
            )),
    );
    println!(
        "bare commit on Balsa's threads (receive → consensus → disk, four hand-offs on the path), \
         p50: {:.1} µs = {:.2} × floor = {:.2} × the bare commit",
        mean.bare_commit_handoffs_p50_us,
        mean.bare_commit_handoffs_p50_us / floor_us,
        mean.bare_commit_handoffs_p50_us / mean.bare_commit_p50_us,
    );

    let default_name = format!("{default_path:?}").to_lowercase();
    let other_name = format!("{other_path:?}").to_lowercase();
    if !durable.is_empty() {
        print_run_header();
    }
    // The last column compares a durable run with the bare commit of its write path.
    for (name, bare_us, (sockets, run)) in durable
        .iter()
        .map(|o| (default_name.as_str(), mean.bare_commit_us(default_path), o))
        .chain(
            durable_other
                .iter()
                .map(|o| (other_name.as_str(), mean.bare_commit_us(other_path), o)),
        )
        .chain(unsafe_runs.iter().map(|o| ("no fsync (unsafe)", None, o)))
    {
        print_run(
            &format!(
                "{name}, {} client(s){}",
                run.outcome.clients,
                shared_label(*sockets)
            ),
            run,
            floor_us,
            bare_us,
        );
    }
    if let Some(sealing) = &sealing {
        sealing.print(&default_name, floor_us, mean.bare_commit_us(default_path));
    }

    // The first run is the latency run; the scaling compares it with the most clients, on
    // shared sockets and on a socket each.
    let Some((_, one)) = durable.first() else {
        println!("\ndone in {:.1} s", started.elapsed().as_secs_f64());
        return Ok(());
    };
    let most = |wanted: Sockets| {
        durable
            .iter()
            .filter(|(sockets, _)| *sockets == wanted)
            .max_by_key(|(_, run)| run.outcome.clients)
            .map(|(_, run)| run)
    };
    println!("\ntargets (durable, the default write path: {default_name}):");
    verdict(
        "1 client p50 <= 1.5 x floor",
        one.us_at(0.5) as f64 / floor_us,
        1.5,
    );
    println!(
        "    (the staggered commit floor, no software at all, is {:.2} x floor; a bare commit of \
         this write path, no Raft, {})",
        staggered_floor_us / floor_us,
        mean.bare_commit_us(default_path).map_or_else(
            || "not measured".to_owned(),
            |bare_us| format!("{:.2} x floor", bare_us / floor_us)
        ),
    );
    verdict(
        "1 client p99 <= 3 x floor",
        one.us_at(0.99) as f64 / floor_us,
        3.0,
    );
    println!(
        "    (a bare commit's p99, before / after the load: {:.2} / {:.2} x floor)",
        before.p99_us.bare_commit / floor_us,
        after.p99_us.bare_commit / floor_us,
    );
    for sockets in [Sockets::Shared, Sockets::PerClient] {
        let Some(many) = most(sockets).filter(|many| many.outcome.clients > one.outcome.clients)
        else {
            continue;
        };
        let scaling = many.outcome.ops_per_sec() / one.outcome.ops_per_sec();
        println!(
            "  {} clients{} / {} client throughput >= 20: {scaling:.1} ({})",
            many.outcome.clients,
            shared_label(sockets),
            one.outcome.clients,
            if scaling >= 20.0 { "met" } else { "MISSED" }
        );
    }
    println!("  no leader change during any run: met (checked after each run)");
    println!("\ndone in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The loads of one cluster: each client count with a socket per client, and counts above one
/// again with shared sockets.
fn runs_for(clients: &[usize]) -> Vec<(usize, Sockets)> {
    let per_client = clients.iter().map(|&count| (count, Sockets::PerClient));
    let shared = clients
        .iter()
        .filter(|&&count| count > 1)
        .map(|&count| (count, Sockets::Shared));
    per_client.chain(shared).collect()
}

/// Starts a cluster in `dir` writing its WAL with `write_path`, runs one load per entry of
/// `runs` (`ops` writes with one client, three times as many with more), checks the leader never
/// changed, and stops it.
fn run_cluster(
    dir: &Path,
    sync: bool,
    write_path: WritePath,
    ops: u64,
    runs: &[(usize, Sockets)],
) -> Result<Vec<(Sockets, Run)>, String> {
    let cluster = LocalCluster::start_configured(3, dir, &mut |config| {
        config.sync = sync;
        config.wal.write_path = write_path;
    })?;
    let leadership = cluster.leadership()?;
    let label = if sync {
        format!("durable, {write_path:?}")
    } else {
        "no fsync".to_owned()
    };
    let mut outcomes = Vec::new();
    for &(count, sockets) in runs {
        let writes = if count == 1 { ops } else { ops * 3 };
        let run = run_load(
            &cluster,
            leadership,
            &label,
            sync,
            (count, sockets),
            writes,
            LeaderChange::Fails,
        )?;
        outcomes.push((sockets, run));
    }
    cluster.shutdown()?;
    Ok(outcomes)
}

/// What a load run makes of a leader change during it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LeaderChange {
    /// The bench fails.
    Fails,
    /// The run is marked ([`Run::leader_changed`]) and the bench goes on.
    IsNoted,
}

/// Runs one load of `count` closed-loop clients on `sockets` making `ops` measured writes on
/// `cluster` (waiting first for the disk to settle when the cluster syncs), prints a line about
/// it starting with `label`, and checks that no write failed and that the leader is still
/// `leadership` (what a change does is `on_change`'s).
fn run_load(
    cluster: &LocalCluster,
    leadership: Leadership,
    label: &str,
    sync: bool,
    (count, sockets): (usize, Sockets),
    ops: u64,
    on_change: LeaderChange,
) -> Result<Run, String> {
    // Without syncs the runs leave dirty pages behind that nothing waits for: no point
    // waiting for them to drain.
    if sync {
        report::settle_disk(Duration::from_secs(10));
    }
    let load = Load {
        endpoints: cluster.endpoints(),
        clients: count,
        ops,
        value_size: VALUE_SIZE,
        warmup: 1000.max(count as u64 * 20),
        workload: Workload::Put,
        duration: None,
        options: cluster.client_options(),
        sockets,
    };
    let before = cluster.reports()?;
    let ticks = report::cpu_ticks();
    let outcome = load::run(&load, &mut |progress| {
        if !progress.warming_up {
            println!("  … {}/{}", progress.done, progress.total);
        }
    })
    .map_err(|error| error.to_string())?;
    let steal = report::steal_between(ticks, report::cpu_ticks());
    if outcome.errors() > 0 {
        return Err(format!(
            "{} writes failed with {count} clients ({label}), first: {}",
            outcome.errors(),
            outcome.first_error.unwrap_or_default()
        ));
    }
    let now = cluster.leadership()?;
    let leader_changed = now != leadership;
    if leader_changed {
        let what =
            format!("the leader changed during the run ({label}): {leadership:?} -> {now:?}");
        if on_change == LeaderChange::Fails {
            return Err(what);
        }
        println!("  NOTE: {what}; the run is left out of the ratios");
    }
    let after = cluster.reports()?;
    let mut run = Run::from(outcome);
    run.leader_changed = leader_changed;
    println!(
        "{label} {count} client(s){}: {:.0} writes/s, p50 {} µs, p99 {} µs; {}; CPU stolen by \
         the host {steal}",
        shared_label(sockets),
        run.outcome.ops_per_sec(),
        run.us_at(0.5),
        run.us_at(0.99),
        report::Batching::between(&before, &after, leadership.leader)
    );
    Ok(run)
}

/// The sealing A/B: each load's runs on the insecure cluster and on the keyed one, round by
/// round.
struct SealAb {
    /// `(clients, sockets)` of each load.
    loads: Vec<(usize, Sockets)>,
    /// Per load, per round: the insecure run and the keyed one.
    runs: Vec<Vec<[Run; 2]>>,
    /// Whether the clusters synced (the targets are for durable writes).
    sync: bool,
}

/// The two sides of the sealing A/B, in the order of [`SealAb::runs`]' pairs.
const SEAL_SIDES: [&str; 2] = ["insecure", "keyed"];

/// Starts two 3-node clusters syncing (or not) and writing their WAL with `write_path` in `dir`,
/// one insecure, one with fresh keys, and runs on both, `rounds` times, one client if `clients`
/// has 1 (`ops / (2 × rounds)` writes, at least 1,000) and the most of `clients` if more than
/// one, with shared sockets and with a socket each (`3 × ops`), each load on one cluster then
/// the other, the first one alternating from round to round. Both clusters run throughout (the idle one
/// only sends heartbeats), so each pair sees the same moments of the machine. A leader change
/// marks its run (left out of the ratios) instead of failing the bench: on this shared machine
/// the longest loads sometimes starve a leader's heartbeats.
fn run_seal_ab(
    dir: &Path,
    (sync, write_path): (bool, WritePath),
    ops: u64,
    clients: &[usize],
    rounds: usize,
) -> Result<SealAb, String> {
    let key = || balsa_net::generate_key().map_err(|error| format!("generating a key: {error}"));
    let keys = Keys::node(KeyRing::new(key()?), KeyRing::new(key()?));
    let insecure = LocalCluster::start_configured(3, &dir.join("insecure"), &mut |config| {
        config.sync = sync;
        config.wal.write_path = write_path;
    })?;
    let keyed = LocalCluster::start_configured(3, &dir.join("keyed"), &mut |config| {
        config.sync = sync;
        config.wal.write_path = write_path;
        config.keys = keys.clone();
    })?;
    let clusters = [&insecure, &keyed];
    let mut loads = Vec::new();
    if clients.contains(&1) {
        loads.push((1, Sockets::PerClient));
    }
    if let Some(most) = clients.iter().copied().filter(|&count| count > 1).max() {
        loads.extend([(most, Sockets::Shared), (most, Sockets::PerClient)]);
    }
    let one_client_ops = (ops / (2 * rounds as u64)).max(1000);
    let mut runs: Vec<Vec<[Run; 2]>> = loads.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (&load, load_runs) in loads.iter().zip(&mut runs) {
            let writes = if load.0 == 1 { one_client_ops } else { ops * 3 };
            let first = round % 2;
            let mut pair = [None, None];
            for side in [first, 1 - first] {
                let label = format!("sealing A/B round {}, {}", round + 1, SEAL_SIDES[side]);
                // Read afresh each time: a run that lost its leader is noted, and the next one
                // compared with the new leader.
                let leadership = clusters[side].leadership()?;
                pair[side] = Some(run_load(
                    clusters[side],
                    leadership,
                    &label,
                    sync,
                    load,
                    writes,
                    LeaderChange::IsNoted,
                )?);
            }
            let [Some(plain), Some(sealed)] = pair else {
                unreachable!("both sides ran");
            };
            load_runs.push([plain, sealed]);
        }
    }
    insecure.shutdown()?;
    keyed.shutdown()?;
    Ok(SealAb { loads, runs, sync })
}

impl SealAb {
    /// Prints every run against the floors, then the ratios keyed / insecure against the
    /// issue's targets.
    fn print(&self, path_name: &str, floor_us: f64, bare_us: Option<f64>) {
        println!(
            "\nsealing A/B ({}): an insecure and a keyed cluster side by side, each load on both \
             in turn, {} round(s)",
            if self.sync {
                path_name
            } else {
                "no fsync (unsafe): the issue's targets are for durable writes"
            },
            self.runs.first().map_or(0, Vec::len)
        );
        let bare_us = bare_us.filter(|_| self.sync);
        print_run_header();
        for (&(count, sockets), rounds) in self.loads.iter().zip(&self.runs) {
            for (round, pair) in rounds.iter().enumerate() {
                for (side, run) in SEAL_SIDES.iter().zip(pair) {
                    let name = format!(
                        "{side}, {count} client(s){}, round {}{}",
                        shared_label(sockets),
                        round + 1,
                        if run.leader_changed {
                            " (new leader)"
                        } else {
                            ""
                        }
                    );
                    print_run(&name, run, floor_us, bare_us);
                }
            }
        }
        println!(
            "keyed / insecure, per round; over all rounds (p50 of all samples together; writes \
             over time):"
        );
        for (&(count, sockets), rounds) in self.loads.iter().zip(&self.runs) {
            // Pairs in which either cluster's leader changed are left out.
            let rounds: Vec<&[Run; 2]> = rounds
                .iter()
                .filter(|pair| pair.iter().all(|run| !run.leader_changed))
                .collect();
            let name = format!("{count} client(s){}", shared_label(sockets));
            if rounds.is_empty() {
                println!("  {name:<34} no round without a leader change");
                continue;
            }
            let rounds = rounds.as_slice();
            let per_round = |measure: fn(&Run) -> f64| {
                rounds
                    .iter()
                    .map(|[plain, sealed]| format!("{:.3}", measure(sealed) / measure(plain)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let p50_ratio = pooled_p50(rounds, 1) / pooled_p50(rounds, 0);
            let throughput_ratio = pooled_throughput(rounds, 1) / pooled_throughput(rounds, 0);
            // The targets are for durable writes: without syncs, the plain ratio.
            let target = |ratio: f64, met: bool, target: &str| {
                if self.sync {
                    format!(
                        "{ratio:.3} (target {target}: {})",
                        if met { "met" } else { "MISSED" }
                    )
                } else {
                    format!("{ratio:.3}")
                }
            };
            let (p50_note, throughput_note) = if count == 1 {
                (
                    target(
                        p50_ratio,
                        p50_ratio <= SEALED_P50_TARGET,
                        &format!("<= {SEALED_P50_TARGET}"),
                    ),
                    format!("{throughput_ratio:.3}"),
                )
            } else {
                (
                    format!("{p50_ratio:.3}"),
                    target(
                        throughput_ratio,
                        throughput_ratio >= SEALED_THROUGHPUT_TARGET,
                        &format!(">= {SEALED_THROUGHPUT_TARGET}"),
                    ),
                )
            };
            println!(
                "  {name:<34} p50 {}; {p50_note}   writes/s {}; {throughput_note}",
                per_round(|run| run.us_at(0.5) as f64),
                per_round(|run| run.outcome.ops_per_sec()),
            );
        }
    }
}

/// The p50 of side `side`'s latencies over all `rounds`, in µs.
fn pooled_p50(rounds: &[&[Run; 2]], side: usize) -> f64 {
    let mut all = us_histogram(&[]);
    for pair in rounds {
        all.add(&pair[side].latency_us)
            .expect("histograms of the same bounds add");
    }
    all.value_at_quantile(0.5) as f64
}

/// Side `side`'s writes over its time, all `rounds` together.
fn pooled_throughput(rounds: &[&[Run; 2]], side: usize) -> f64 {
    let (ops, secs) = rounds.iter().fold((0, 0.0), |(ops, secs), pair| {
        let outcome = &pair[side].outcome;
        (
            ops + outcome.writes.ops(),
            secs + outcome.elapsed.as_secs_f64(),
        )
    });
    ops as f64 / f64::max(secs, 1e-9)
}

fn print_run_header() {
    println!(
        "\n{:<46} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}",
        "run",
        "ops/s",
        "p50 µs",
        "p90 µs",
        "p99 µs",
        "p99.9",
        "max µs",
        "p50/fl",
        "p99/fl",
        "p50/bc"
    );
}

/// One row of the runs' table: `run` against the floor and, if given, the bare commit.
fn print_run(name: &str, run: &Run, floor_us: f64, bare_us: Option<f64>) {
    println!(
        "{:<46} {:>7.0} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7.2} {:>7.2} {:>7}",
        name,
        run.outcome.ops_per_sec(),
        run.us_at(0.5),
        run.us_at(0.9),
        run.us_at(0.99),
        run.us_at(0.999),
        run.latency_us.max(),
        run.us_at(0.5) as f64 / floor_us,
        run.us_at(0.99) as f64 / floor_us,
        bare_us.map_or_else(
            || "-".to_owned(),
            |bare_us| format!("{:.2}", run.us_at(0.5) as f64 / bare_us)
        ),
    );
}

/// One load run: what the load generator returned, and its latencies as a histogram.
struct Run {
    outcome: Outcome,
    latency_us: Histogram<u64>,
    /// Whether the leader changed during the run (only where that does not fail the bench).
    leader_changed: bool,
}

impl From<Outcome> for Run {
    fn from(outcome: Outcome) -> Run {
        let latency_us = us_histogram(&outcome.writes.latencies_us);
        Run {
            outcome,
            latency_us,
            leader_changed: false,
        }
    }
}

impl Run {
    /// The latency at `quantile` (0.0–1.0), in microseconds.
    fn us_at(&self, quantile: f64) -> u64 {
        self.latency_us.value_at_quantile(quantile)
    }
}

fn shared_label(sockets: Sockets) -> &'static str {
    match sockets {
        Sockets::PerClient => "",
        Sockets::Shared => ", shared sockets",
    }
}

fn print_floor(name: &str, floor: &Floor) {
    println!(
        "{name}: pwrite+fdatasync p50 {:.1} µs, UDP loopback RTT p50 {:.1} µs ({FLOOR_DATAGRAM} B), \
         2-of-3 concurrent fdatasync p50 {:.1} µs (staggered {:.1} µs), thread hand-off round trip \
         p50 {:.1} µs",
        floor.fdatasync_p50_us,
        floor.rtt_p50_us,
        floor.quorum_fdatasync_p50_us,
        floor.staggered_fdatasync_p50_us,
        floor.handoff_rtt_p50_us
    );
    println!(
        "  bare commit (no Raft: a thread per node, plain UDP, each node syncing) p50 {:.1} µs; \
         with O_DIRECT|O_DSYNC {}; on Balsa's threads (four hand-offs) {:.1} µs",
        floor.bare_commit_p50_us,
        floor
            .bare_commit_direct_p50_us
            .map_or_else(|| "not measured".to_owned(), |us| format!("{us:.1} µs")),
        floor.bare_commit_handoffs_p50_us,
    );
    let tails = floor.p99_us;
    println!(
        "  p99: fdatasync {:.1} µs, 2-of-3 fdatasync {:.1} µs, UDP RTT {:.1} µs, bare commit {:.1} µs",
        tails.fdatasync, tails.quorum_fdatasync, tails.rtt, tails.bare_commit
    );
}

fn verdict(name: &str, ratio: f64, target: f64) {
    println!(
        "  {name}: {ratio:.2} ({})",
        if ratio <= target { "met" } else { "MISSED" }
    );
}
