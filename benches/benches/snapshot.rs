//! Snapshot transfer on loopback: a 3-node cluster (threads, UDP sockets and WALs on disk, as
//! `balsa serve` runs them) holding a 256 MiB key-value state, one follower wiped and replaced
//! by a fresh node (`members replace`); measured:
//!
//! 1. the leader's snapshot of the state (serialise, then the WAL thread writes and syncs it);
//!    every node takes one, so whichever leads afterwards sends a snapshot;
//! 2. the transfer: from the first chunk the follower holds until the snapshot is installed
//!    there (checked, durable, state machine restored) — MB/s of snapshot bytes;
//! 3. the catch-up: from the replacement's start until it has applied the leader's commit
//!    index.
//!
//! The follower's progress is read from `Node::status` (`receiving_snapshot`), polled every
//! 200 µs, so the transfer time is exact to about that; the install and the catch-up each fail
//! the run after 600 s. Beside it, the floor of the same run: writing and fsyncing a file of the
//! snapshot's size in the same directory (what installing costs at least), and the UDP round
//! trip. `BALSA_BENCH_STATE_MIB` sets the state size (default 256). Data goes in
//! `BALSA_BENCH_DIR`, else in cargo's `CARGO_TARGET_TMPDIR`. Run with
//! `cargo bench -p balsa-benches --bench snapshot`.
#![allow(
    clippy::print_stdout,
    clippy::disallowed_methods,
    reason = "benchmarks print their figures and read the clock"
)]

use std::time::{Duration, Instant};

use balsa::client::load::{self, KEYS_PER_CLIENT, Load, Sockets, Workload};
use balsa::client::{Client, ClientOptions};
use balsa_benches::{
    cluster::LocalCluster,
    floor::{measure_udp_rtt, measure_write_and_sync},
    report,
};

/// Value size of the writes that build the state.
const VALUE_BYTES: usize = 16 << 10;

fn main() -> Result<(), String> {
    let started = Instant::now();
    let state_mib: u64 = std::env::var("BALSA_BENCH_STATE_MIB")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(256);
    let dir = report::bench_dir(
        &format!(
            "snapshot: 3 nodes on loopback, a {state_mib} MiB state, one follower wiped and replaced"
        ),
        env!("CARGO_TARGET_TMPDIR"),
    )?;
    let dir = dir.path();

    let mut cluster = LocalCluster::start_configured(3, dir, &mut |config| {
        // Snapshots only when asked, so the measurement sees exactly one.
        config.snapshot_entries = u64::MAX;
        config.snapshot_bytes = u64::MAX;
        config.snapshot_trailing_entries = 0;
    })?;
    let leader = cluster.leadership()?.leader;

    // Build the state: distinct keys, each written once (a client cycles over its keys, so
    // enough clients that none wraps around).
    let writes = state_mib * (1 << 20) / VALUE_BYTES as u64;
    let writers = usize::try_from(writes.div_ceil(KEYS_PER_CLIENT).max(1))
        .map_err(|_| "the state is too large".to_owned())?;
    let load = Load {
        endpoints: cluster.endpoints(),
        clients: writers,
        ops: writes,
        value_size: VALUE_BYTES,
        warmup: 0,
        workload: Workload::Put,
        duration: None,
        options: ClientOptions::default(),
        sockets: Sockets::PerClient,
    };
    let built = Instant::now();
    let outcome = load::run(&load, &mut |progress| {
        print!("\r  writing {}/{}", progress.done, progress.total)
    })
    .map_err(|error| error.to_string())?;
    println!(
        "\rstate: {} writes of {VALUE_BYTES} B in {:.1} s ({:.1} MB/s)",
        outcome.writes.ops(),
        built.elapsed().as_secs_f64(),
        (outcome.writes.ops() * VALUE_BYTES as u64) as f64 / 1e6 / built.elapsed().as_secs_f64()
    );
    if outcome.errors() > 0 {
        return Err(format!("{} writes failed", outcome.errors()));
    }

    // 1. Every node snapshots (whichever leads next has a snapshot and a compacted log); the
    //    leader's is timed. Serialising a large state holds the consensus thread, which can
    //    cost the leader its lease: the bench says so and goes on with whoever leads after.
    let term_before = cluster.leadership()?.term;
    let mut client = Client::new(
        cluster.endpoints(),
        ClientOptions {
            timeout: Duration::from_secs(120),
            ..ClientOptions::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let mut snapshot_time = Duration::ZERO;
    for (id, address) in (1..).zip(cluster.endpoints()) {
        let snapshotting = Instant::now();
        client.take_snapshot(address).map_err(|e| e.to_string())?;
        if id == leader {
            snapshot_time = snapshotting.elapsed();
        }
    }
    let leadership = cluster.leadership()?;
    let leader = leadership.leader;
    let follower = if leader == 3 { 2 } else { 3 };
    let target = cluster
        .node(leader)
        .ok_or("the leader stopped")?
        .status()
        .map_err(|e| e.to_string())?
        .commit_index;

    // 2-3. Wipe a follower; a fresh node replaces it (one membership change) and catches up
    // by the snapshot, as a learner before it is promoted.
    cluster.stop_node(follower)?;
    let rejoined = Instant::now();
    let (replacement, change) = cluster.wipe_and_replace(follower)?;
    let node = cluster.node(replacement).ok_or("the new node stopped")?;
    let mut first_chunk = None;
    let mut size = 0;
    let installed = loop {
        let status = node.status().map_err(|e| e.to_string())?;
        if let Some((_, received)) = status.receiving_snapshot {
            first_chunk.get_or_insert_with(Instant::now);
            size = size.max(received);
        }
        if status.snapshot_index > 0 {
            break Instant::now();
        }
        if rejoined.elapsed() > Duration::from_secs(600) {
            return Err("the follower did not install the snapshot within 600 s".into());
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    let caught_up = loop {
        let status = node.status().map_err(|e| e.to_string())?;
        if status.applied_index >= target {
            break rejoined.elapsed();
        }
        if rejoined.elapsed() > Duration::from_secs(600) {
            return Err("the follower did not catch up within 600 s".into());
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    change
        .wait(Duration::from_secs(600))
        .map_err(|e| format!("the replacement: {e}"))?;
    let first_chunk = first_chunk.ok_or("no chunk was seen before the install")?;
    let snapshot_index = node.status().map_err(|e| e.to_string())?.snapshot_index;
    let transfer = installed.duration_since(first_chunk);

    // The floor of the same run.
    let floor_file = dir.join("floor.snap");
    let floor = measure_write_and_sync(&floor_file, size).map_err(|e| e.to_string())?;
    let rtt = measure_udp_rtt(160, 2000).map_err(|e| e.to_string())?;
    cluster.shutdown()?;

    let mb = size as f64 / 1e6;
    println!("\nsnapshot of {mb:.1} MB at index {snapshot_index}");
    println!(
        "  leader changed while the nodes serialised their snapshots: {}",
        if leadership.term == term_before {
            "no"
        } else {
            "yes"
        }
    );
    println!(
        "  leader's snapshot (serialise, write, sync):  {:>8.2} s",
        snapshot_time.as_secs_f64()
    );
    println!(
        "  transfer, first chunk to installed:          {:>8.2} s  {:>7.1} MB/s",
        transfer.as_secs_f64(),
        mb / transfer.as_secs_f64()
    );
    println!(
        "  replacement's catch-up, start to applied:   {:>8.2} s",
        caught_up.as_secs_f64()
    );
    println!(
        "  floor: write + fsync of {mb:.1} MB in the same directory {:.2} s ({:.1} MB/s); \
         UDP RTT p50 {:.1} µs",
        floor.as_secs_f64(),
        mb / floor.as_secs_f64(),
        rtt.value_at_quantile(0.5) as f64 / 1e3
    );
    println!(
        "target: transfer >= 100 MB/s: {}",
        if mb / transfer.as_secs_f64() >= 100.0 {
            "met"
        } else {
            "MISSED"
        }
    );
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
