//! Durable-append write paths for the WAL, measured against the pwrite + fdatasync floor in the
//! same run. Each case appends payloads at sequential offsets of its own fresh, preallocated,
//! zero-filled 64 MiB file and makes every append durable before the next one:
//!
//! - a: `pwrite` + `fdatasync` (the floor)
//! - b: memcpy into a shared `MmapMut` + `msync` of the dirty range only
//! - c: memcpy into the `MmapMut` + `fdatasync` on the file
//! - d: as b, with the map pre-faulted (`MAP_POPULATE`)
//! - e: 16 or 256 payloads of 64 B in one `pwrite` per `fdatasync` (latency per sync)
//! - f: `O_DIRECT | O_DSYNC` write of the whole 4 KiB block(s) holding the append, from an aligned
//!   buffer, no `fdatasync` (`WritePath::Direct`), measured in alternating turns with a second
//!   floor file (a'), one append each per round
//!
//! Files go in `BALSA_BENCH_DIR` if set, else in cargo's on-disk `CARGO_TARGET_TMPDIR`
//! (`/tmp` may be tmpfs, where syncing costs nothing). Run with
//! `cargo bench -p balsa-benches --bench write_paths`.
#![allow(
    clippy::print_stdout,
    clippy::disallowed_methods,
    reason = "benchmarks print their figures and read the clock"
)]

use std::{fs::File, io, path::Path, path::PathBuf};

use balsa_benches::{
    Step, WARMUP,
    concurrent::DirectBlockFile,
    floor::{self, FILE_BYTES, FILL, FloorFile},
    interleave, report, sample,
};
use hdrhistogram::Histogram;
use memmap2::{MmapMut, MmapOptions};

/// Measured appends per case, after [`WARMUP`] untimed ones.
const ITERATIONS: usize = 2000;

/// How a memory-mapped append is made durable.
#[derive(Clone, Copy)]
enum Durable {
    /// `msync(MS_SYNC)` over the pages of the dirty range.
    Msync,
    /// `fdatasync` on the mapped file.
    Fdatasync,
}

fn main() -> io::Result<()> {
    let base = std::env::var_os("BALSA_BENCH_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from);
    let dir = tempfile::tempdir_in(&base)?;
    let dir = dir.path();
    let (fs_type, mount) = report::filesystem_of(dir)?;
    println!(
        "write paths: {FILE_BYTES}-byte zero-filled file per case, {WARMUP} warmup + {ITERATIONS} measured appends"
    );
    println!("dir {mount}");
    if matches!(fs_type.as_str(), "tmpfs" | "ramfs") {
        println!(
            "WARNING: {fs_type} does not persist; set BALSA_BENCH_DIR to a disk-backed directory"
        );
    }

    section(
        dir,
        64,
        floor::measure_fdatasync_floor(dir, ITERATIONS),
        &[16, 256],
    )?;
    let floor_4k = floor::measure_pwrite_fdatasync(dir, "a-4096.wal", 4096, 1, ITERATIONS)?;
    section(dir, 4096, floor_4k, &[])
}

/// Measures cases b to d (and e for each of `batches`) for `payload`-byte appends and prints them
/// under the floor (case a) measured for the same payload.
fn section(dir: &Path, payload: usize, floor: Histogram<u64>, batches: &[usize]) -> io::Result<()> {
    println!("\npayload {payload} B (ratio: p50 / p50 of a at {payload} B)");
    report::header();
    let floor_p50 = floor.value_at_quantile(0.5);
    report::row("a pwrite + fdatasync (floor)", &floor, floor_p50);
    let b = mmap_appends(dir, "b", payload, false, Durable::Msync)?;
    report::row("b mmap memcpy + msync(dirty range)", &b, floor_p50);
    let c = mmap_appends(dir, "c", payload, false, Durable::Fdatasync)?;
    report::row("c mmap memcpy + fdatasync", &c, floor_p50);
    let d = mmap_appends(dir, "d", payload, true, Durable::Msync)?;
    report::row("d mmap populate + memcpy + msync(range)", &d, floor_p50);
    for &batch in batches {
        let name = format!("e-{batch}.wal");
        let e = floor::measure_pwrite_fdatasync(dir, &name, payload, batch, ITERATIONS)?;
        report::row(
            &format!("e pwrite {batch}x{payload} B + fdatasync, per sync"),
            &e,
            floor_p50,
        );
    }
    let mut floor_again = FloorFile::create(&dir.join(format!("a2-{payload}.wal")), payload)?;
    let mut direct = DirectBlockFile::create(&dir.join(format!("f-{payload}.wal")), payload)?;
    let steps: &mut [&mut dyn Step] = &mut [&mut floor_again, &mut direct];
    let hists = interleave(WARMUP, ITERATIONS, steps)?;
    floor_again.finish()?;
    direct.finish()?;
    let again_p50 = hists[0].value_at_quantile(0.5);
    println!("measured together (ratio: p50 / p50 of a'):");
    report::row("a' pwrite + fdatasync (floor, again)", &hists[0], again_p50);
    report::row("f O_DIRECT|O_DSYNC 4 KiB block write", &hists[1], again_p50);
    Ok(())
}

/// Appends `payload`-byte records through a shared map of a fresh preallocated file, making each
/// durable as `how` says; checks the file afterwards and removes it.
fn mmap_appends(
    dir: &Path,
    tag: &str,
    payload: usize,
    populate: bool,
    how: Durable,
) -> io::Result<Histogram<u64>> {
    let path = dir.join(format!("{tag}-{payload}.wal"));
    let file = floor::preallocate(&path, FILE_BYTES)?;
    let mut map = map(&file, populate)?;
    let record = vec![FILL; payload];
    let mut offset = 0;
    let hist = sample(WARMUP, ITERATIONS, || {
        map[offset..offset + payload].copy_from_slice(&record);
        match how {
            Durable::Msync => map.flush_range(offset, payload)?,
            Durable::Fdatasync => file.sync_data()?,
        }
        offset += payload;
        Ok(())
    })?;
    drop(map);
    floor::verify(&file, offset as u64)?;
    std::fs::remove_file(path)?;
    Ok(hist)
}

/// Maps all of `file` shared and writable, pre-faulting its pages if `populate`.
#[allow(
    unsafe_code,
    reason = "mapping a file is unsafe; the SAFETY comment says why it holds"
)]
fn map(file: &File, populate: bool) -> io::Result<MmapMut> {
    let mut options = MmapOptions::new();
    if populate {
        options.populate();
    }
    // SAFETY: the file was just created (create_new) in this benchmark's private temporary
    // directory; no other process truncates, resizes or writes it, and this process only writes
    // it through this map while the map lives, so the mapped memory stays valid and is not
    // changed behind the `&mut [u8]` the map hands out.
    unsafe { options.map_mut(file) }
}
