//! Shared helpers for Balsa's benchmarks: latency histograms, the physical floor (pwrite +
//! fdatasync on a preallocated file) measured in the same run as the thing being measured, and
//! drivers for the WAL itself.
#![allow(
    clippy::print_stdout,
    clippy::disallowed_methods,
    reason = "benchmarks print their figures and read the clock"
)]

use std::{io, time::Instant};

use hdrhistogram::Histogram;

pub mod floor;
pub mod report;
pub mod wal;

/// Untimed iterations run before the measured ones.
pub const WARMUP: usize = 200;

/// An empty histogram of nanoseconds, 1 ns to 60 s, three significant figures.
#[must_use]
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("constant bounds are valid")
}

/// Runs `step` `warmup` times untimed, then `iterations` times, recording each call's wall time
/// in nanoseconds. Stops at the first error.
///
/// # Errors
/// Returns the first error `step` returns.
pub fn sample(
    warmup: usize,
    iterations: usize,
    mut step: impl FnMut() -> io::Result<()>,
) -> io::Result<Histogram<u64>> {
    for _ in 0..warmup {
        step()?;
    }
    let mut hist = new_histogram();
    for _ in 0..iterations {
        hist.saturating_record(timed(&mut step)?);
    }
    Ok(hist)
}

/// Runs `step` once; returns its wall time in nanoseconds.
///
/// # Errors
/// Returns the error `step` returns.
pub fn timed(step: impl FnOnce() -> io::Result<()>) -> io::Result<u64> {
    let start = Instant::now();
    step()?;
    Ok(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX))
}
