//! Shared helpers for Balsa's benchmarks: latency histograms of one case at a time ([`sample`]) or
//! of several measured together ([`interleave`]), the physical floor (pwrite + fdatasync on a
//! preallocated file) measured in the same run as the thing being measured, and drivers for the
//! WAL itself.
#![allow(
    clippy::print_stdout,
    clippy::disallowed_methods,
    reason = "benchmarks print their figures and read the clock"
)]

use std::{io, time::Instant};

use hdrhistogram::Histogram;

pub mod bare_commit;
pub mod cluster;
pub mod concurrent;
pub mod floor;
pub mod report;
pub mod soak;
pub mod wal;

/// Untimed iterations run before the measured ones.
pub const WARMUP: usize = 200;

/// An empty histogram of nanoseconds, 1 ns to 60 s, three significant figures.
#[must_use]
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("constant bounds are valid")
}

/// A histogram of microsecond samples (the load generator's latencies,
/// `balsa::client::load::Measured::latencies_us`): 1 µs to 60 s, three significant figures.
#[must_use]
pub fn us_histogram(samples_us: &[u64]) -> Histogram<u64> {
    let mut hist = Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant bounds are valid");
    for &us in samples_us {
        hist.saturating_record(us);
    }
    hist
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

/// One operation of a benchmark case, timed over and over by [`interleave`].
pub trait Step {
    /// Runs the operation once.
    ///
    /// # Errors
    /// Whatever the operation fails with.
    fn step(&mut self) -> io::Result<()>;
}

/// Runs `steps` in rounds of one call each, `warmup` rounds untimed then `iterations` timed, and
/// returns each step's histogram (nanoseconds per call). Each round starts one step further along
/// than the last, so no step always follows the same one.
///
/// Steps measured together see the same moments of the machine: a shared disk's slow phases (this
/// VM's goes from ~0.15 ms to ~4 ms per sync and back within seconds) hit them all alike, so the
/// ratios between them hold even when the absolute figures do not. Measured one after the other,
/// identical cases differed by up to 40%.
///
/// # Errors
/// The first error a step returns.
pub fn interleave(
    warmup: usize,
    iterations: usize,
    steps: &mut [&mut dyn Step],
) -> io::Result<Vec<Histogram<u64>>> {
    let n = steps.len();
    let mut hists = vec![new_histogram(); n];
    for round in 0..warmup + iterations {
        for k in 0..n {
            let i = (round + k) % n;
            let ns = timed(|| steps[i].step())?;
            if round >= warmup {
                hists[i].saturating_record(ns);
            }
        }
    }
    Ok(hists)
}

/// Time the calling thread has spent on a CPU (`/proc/thread-self/schedstat`), if the kernel
/// says. Next to wall time it shows waiting: for the disk, or for a CPU other processes hold.
#[must_use]
pub fn thread_cpu_time() -> Option<std::time::Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = text.split_whitespace().next()?.parse().ok()?;
    Some(std::time::Duration::from_nanos(ns))
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
