//! `balsa-wal` append + sync and recovery, against the pwrite + fdatasync floor of the same run:
//!
//! 1. the floor: `pwrite` of 64 B + `fdatasync` on a preallocated file;
//! 2. one entry (64 B or 4 KiB) appended and synced per iteration, with each write path; then
//!    64 B entries interleaved with the floor, one of each per iteration, which the target uses
//!    (cases run one after the other drift apart by more than the 10% the target allows);
//! 3. group commit: 1, 16 or 256 entries of 64 B per sync;
//! 4. recovery: `Wal::open` on a 1 GiB log of 4 KiB entries and a 256 MiB log of 100 B entries,
//!    just written (so read from a warm page cache), next to its memory floor: building the same
//!    `Vec<Entry>` from memory, which `Recovered` costs whatever the scan does;
//! 5. a summary against the targets.
//!
//! Every latency case gets a new log with its next segment prepared before the warmup; rolls that
//! still land in the measurement are printed, not hidden. Files go in `BALSA_BENCH_DIR` if set,
//! else in cargo's on-disk `CARGO_TARGET_TMPDIR` (`/tmp` may be tmpfs, where syncing costs
//! nothing). Run with `cargo bench -p balsa-benches --bench wal`.
#![allow(
    clippy::print_stdout,
    clippy::disallowed_methods,
    reason = "benchmarks print their figures and read the clock"
)]

use std::{io, path::Path, path::PathBuf, time::Instant};

use balsa_benches::{
    WARMUP, floor, report,
    wal::{self, AppendSync},
};
use balsa_wal::{Options, WritePath};
use hdrhistogram::Histogram;

/// Measured syncs per latency case, after [`WARMUP`] untimed ones.
const ITERATIONS: usize = 2000;
/// Recovery cases: entry payload bytes and log bytes. Both sync every 256 entries.
const RECOVERY: [(usize, u64); 2] = [(4096, 1 << 30), (100, 256 << 20)];

fn main() -> io::Result<()> {
    let started = Instant::now();
    let base = std::env::var_os("BALSA_BENCH_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from);
    let dir = tempfile::tempdir_in(&base)?;
    let dir = dir.path();
    let (fs_type, mount) = report::filesystem_of(dir)?;
    println!("wal: {WARMUP} warmup + {ITERATIONS} measured syncs per latency case");
    println!("dir {mount}");
    if matches!(fs_type.as_str(), "tmpfs" | "ramfs") {
        println!(
            "WARNING: {fs_type} does not persist; set BALSA_BENCH_DIR to a disk-backed directory"
        );
    }

    println!("\n1-2. one entry per sync, 64 MiB segments (ratio: p50 / floor p50)");
    report::header();
    let floor = floor::measure_fdatasync_floor(dir, ITERATIONS);
    let floor_p50 = floor.value_at_quantile(0.5);
    report::row("floor: pwrite 64 B + fdatasync", &floor, floor_p50);
    for write_path in [WritePath::Pwrite, WritePath::Mmap] {
        for payload in [64, 4096] {
            let case = fresh_case(dir, write_path, payload, 1)?;
            let name = format!("wal {write_path:?}: 1 x {payload} B + sync");
            report::row_with(&name, &case.hist, floor_p50, &case.rolls());
        }
    }
    let again = floor::measure_fdatasync_floor(dir, ITERATIONS);
    report::row("floor again (drift check)", &again, floor_p50);
    println!("interleaved: one floor and one WAL sync per iteration, in alternating order");
    let (paired_floor, paired) = interleaved_case(dir)?;
    let paired_floor_p50 = paired_floor.value_at_quantile(0.5);
    report::row("floor, interleaved", &paired_floor, paired_floor_p50);
    report::row(
        "wal Pwrite: 1 x 64 B + sync, interleaved",
        &paired,
        paired_floor_p50,
    );

    println!("\n3. group commit: entries of 64 B per sync, WritePath::Pwrite");
    println!(
        "{:>13} {:>12} {:>12} {:>12} {:>14}",
        "entries/sync", "p50 µs/sync", "p99 µs/sync", "entries/s", "p50 / 1-entry"
    );
    let mut batch_ratio = 0.0;
    let mut single_p50 = 0;
    for batch in [1, 16, 256] {
        let case = fresh_case(dir, WritePath::Pwrite, 64, batch)?;
        let p50 = case.hist.value_at_quantile(0.5);
        if batch == 1 {
            single_p50 = p50;
        }
        batch_ratio = p50 as f64 / single_p50.max(1) as f64;
        println!(
            "{batch:>13} {:>12.1} {:>12.1} {:>12.0} {batch_ratio:>13.2}x  {}",
            p50 as f64 / 1e3,
            case.hist.value_at_quantile(0.99) as f64 / 1e3,
            case.entries_per_second(),
            case.rolls(),
        );
    }

    println!("\n4. recovery: Wal::open on a log just written and closed (warm page cache)");
    println!("   alloc floor: building the same Vec<Entry> (a fresh Vec<u8> each) in memory,");
    println!("   just before / just after the open");
    let columns = [
        "entry",
        "log MB",
        "entries",
        "segs",
        "open ms",
        "MB/s",
        "entries/s",
    ];
    let [c0, c1, c2, c3, c4, c5, c6] = columns;
    println!(
        "{c0:>8} {c1:>8} {c2:>9} {c3:>5} {c4:>9} {c5:>7} {c6:>11} {:>21}",
        "alloc floor ms"
    );
    let mut recovery = Vec::new();
    for (payload, log_bytes) in RECOVERY {
        let case_dir = tempfile::tempdir_in(dir)?;
        let r = wal::recovery(
            case_dir.path(),
            &Options::default(),
            payload,
            256,
            log_bytes,
        )?;
        case_dir.close()?;
        println!(
            "{payload:>6} B {:>8.1} {:>9} {:>5} {:>9.1} {:>7.0} {:>11.0} {:>10.1} / {:>8.1}",
            r.log_bytes as f64 / 1e6,
            r.entries,
            r.segments,
            r.open.as_secs_f64() * 1e3,
            r.mb_per_second(),
            r.entries as f64 / r.open.as_secs_f64(),
            r.alloc_floor[0].as_secs_f64() * 1e3,
            r.alloc_floor[1].as_secs_f64() * 1e3,
        );
        recovery.push((payload, r));
    }

    let one_ratio = paired.value_at_quantile(0.5) as f64 / paired_floor_p50.max(1) as f64;
    println!("\n5. summary (MB = 10^6 B; recovery from a warm page cache)");
    println!(
        "one-entry append+sync p50 / floor p50 = {one_ratio:.2} (target ≤ 1.1) {}, interleaved",
        verdict(one_ratio <= 1.1)
    );
    println!(
        "256 entries per sync / 1 entry per sync = {batch_ratio:.2} (target ≤ 2) {}",
        verdict(batch_ratio <= 2.0)
    );
    for (payload, r) in recovery {
        let mb_per_second = r.mb_per_second();
        let [before, after] = r.floor_mb_per_second();
        println!(
            "recovery = {mb_per_second:.0} MB/s (target ≥ 500) {}, {payload} B entries \
             (alloc floor alone: {before:.0} / {after:.0} MB/s)",
            verdict(mb_per_second >= 500.0),
        );
    }
    println!("total bench time {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Runs [`wal::interleaved_with_floor`] with 64 B entries on a new log and floor file in a new
/// directory under `dir`, removed afterwards. Returns the floor's and the WAL's histograms.
fn interleaved_case(dir: &Path) -> io::Result<(Histogram<u64>, Histogram<u64>)> {
    let case_dir = tempfile::tempdir_in(dir)?;
    let mut log = wal::open_prepared(&case_dir.path().join("wal"), Options::default())?;
    let floor_path = case_dir.path().join("floor.wal");
    let hists = wal::interleaved_with_floor(&mut log, &floor_path, 64, ITERATIONS)?;
    log.close().map_err(wal::io_err)?;
    case_dir.close()?;
    Ok(hists)
}

/// Measures `batch` entries of `payload` bytes per sync on a new log in a new directory under
/// `dir` (default options but `write_path`), which is closed and removed afterwards.
fn fresh_case(
    dir: &Path,
    write_path: WritePath,
    payload: usize,
    batch: usize,
) -> io::Result<AppendSync> {
    let case_dir = tempfile::tempdir_in(dir)?;
    let options = Options {
        write_path,
        ..Options::default()
    };
    let mut log = wal::open_prepared(case_dir.path(), options)?;
    let case = wal::append_sync(&mut log, payload, batch, ITERATIONS)?;
    log.close().map_err(wal::io_err)?;
    case_dir.close()?;
    Ok(case)
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}
