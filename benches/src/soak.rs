//! The soak bench's pieces that are not load: what it reads of a node process (`/proc`), the
//! size of a data directory, and the summaries of its per-minute series — a least-squares slope
//! per hour, and percentiles pooled over a span of minutes.
//!
//! Rules kept: `/proc` text is parsed without panicking on anything it holds (a field missing or
//! malformed is `None`); a directory walk counts regular files only and does not follow symbolic
//! links (a node's data directory holds none; a link would otherwise be counted twice or loop).

use std::io;
use std::path::Path;

use hdrhistogram::Histogram;

/// What a node process holds at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessSample {
    /// Resident set size, bytes (`VmRSS`).
    pub rss_bytes: u64,
    /// Open file descriptors (entries of `/proc/PID/fd`).
    pub fds: u64,
    /// Threads (`Threads`).
    pub threads: u64,
}

/// Reads `pid`'s resident set size, open file descriptors and threads from `/proc`.
///
/// # Errors
/// If `/proc/PID` cannot be read (the process is gone), or its `status` lacks `VmRSS` or
/// `Threads` (`InvalidData`, naming the file).
pub fn sample_process(pid: u32) -> io::Result<ProcessSample> {
    let status_path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&status_path)?;
    let (Some(rss_bytes), Some(threads)) = (
        status_field(&status, "VmRSS:").map(|kib| kib.saturating_mul(1024)),
        status_field(&status, "Threads:"),
    ) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{status_path} has no VmRSS or Threads line"),
        ));
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64;
    Ok(ProcessSample {
        rss_bytes,
        fds,
        threads,
    })
}

/// The first number after `name` on its line of a `/proc/PID/status` text (`VmRSS:` is in kB).
#[must_use]
pub fn status_field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// What a data directory holds: every regular file's length below it, summed, and the largest
/// snapshot file (`snap-…`, temporary ones included) among them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirSize {
    /// Bytes of all regular files (their lengths: a preallocated segment counts whole).
    pub bytes: u64,
    /// The largest file whose name starts with `snap-`.
    pub largest_snapshot: u64,
}

/// Walks `dir` (not following symbolic links). Files that vanish during the walk — a
/// compaction removing a segment, a snapshot's temporary file renamed — are skipped.
///
/// # Errors
/// If `dir` itself cannot be read.
pub fn dir_size(dir: &Path) -> io::Result<DirSize> {
    let mut size = DirSize::default();
    let mut pending = vec![dir.to_path_buf()];
    let mut first = true;
    while let Some(at) = pending.pop() {
        let entries = match std::fs::read_dir(&at) {
            Ok(entries) => entries,
            Err(error) if first => return Err(error),
            Err(_) => continue, // removed meanwhile
        };
        first = false;
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                let Ok(metadata) = entry.metadata() else {
                    continue;
                };
                size.bytes += metadata.len();
                if entry.file_name().to_string_lossy().starts_with("snap-") {
                    size.largest_snapshot = size.largest_snapshot.max(metadata.len());
                }
            }
        }
    }
    Ok(size)
}

/// The least-squares slope of `points` (`(minute, value)`), per hour; `None` with fewer than two
/// distinct minutes.
#[must_use]
pub fn slope_per_hour(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_x = points.iter().map(|(x, _)| x).sum::<f64>() / n;
    let mean_y = points.iter().map(|(_, y)| y).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, y) in points {
        sxy += (x - mean_x) * (y - mean_y);
        sxx += (x - mean_x) * (x - mean_x);
    }
    (sxx > 0.0).then(|| sxy / sxx * 60.0)
}

/// The value at `quantile` of `minutes` pooled into one distribution (every sample of each
/// counted once); `None` if they hold no sample.
///
/// # Panics
/// Never for histograms of the same bounds (the soak's are all [`crate::us_histogram`]s); mixed
/// bounds are a programming error.
#[must_use]
pub fn pooled_quantile(minutes: &[&Histogram<u64>], quantile: f64) -> Option<u64> {
    let mut pooled = crate::us_histogram(&[]);
    for minute in minutes {
        pooled
            .add(*minute)
            .expect("the soak's histograms share their bounds");
    }
    (!pooled.is_empty()).then(|| pooled.value_at_quantile(quantile))
}

/// The minutes (from 1) of the first and the last `window` of a run of `minutes`: each at most
/// `window` long, and at most half the run, so that they never overlap (empty for a run
/// shorter than two minutes).
#[must_use]
pub fn first_and_last(
    minutes: usize,
    window: usize,
) -> (
    std::ops::RangeInclusive<usize>,
    std::ops::RangeInclusive<usize>,
) {
    let width = window.min(minutes / 2);
    if width == 0 {
        #[allow(
            clippy::reversed_empty_ranges,
            reason = "an empty range on purpose: no minutes to compare"
        )]
        return (1..=0, 1..=0);
    }
    (1..=width, minutes - width + 1..=minutes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_straight_line_is_its_gradient_per_hour() {
        let line: Vec<(f64, f64)> = (0..10)
            .map(|m| (f64::from(m), 5.0 + 2.0 * f64::from(m)))
            .collect();
        let slope = slope_per_hour(&line).expect("two or more minutes");
        assert!((slope - 120.0).abs() < 1e-9, "{slope}");
        let flat: Vec<(f64, f64)> = (3..8).map(|m| (f64::from(m), 7.0)).collect();
        assert!(slope_per_hour(&flat).expect("a fit").abs() < 1e-9);
        assert_eq!(slope_per_hour(&[(1.0, 2.0)]), None);
        assert_eq!(
            slope_per_hour(&[(1.0, 2.0), (1.0, 3.0)]),
            None,
            "one distinct minute"
        );
    }

    /// Noise around a flat line tilts the fit only as far as least squares says: a zig-zag
    /// between 9 and 11 that ends high slopes up by 2/33 per minute, not by the noise's 2.
    #[test]
    fn slope_of_a_zigzag_around_a_flat_line_is_only_its_least_squares_tilt() {
        let zigzag: Vec<(f64, f64)> = (0..10)
            .map(|m| (f64::from(m), if m % 2 == 0 { 9.0 } else { 11.0 }))
            .collect();
        let slope = slope_per_hour(&zigzag).expect("a fit");
        assert!((slope - 60.0 * 2.0 / 33.0).abs() < 1e-9, "{slope}");
    }

    #[test]
    fn status_fields_are_read_from_proc_text() {
        let text = "Name:\tbalsa\nVmRSS:\t   17920 kB\nThreads:\t7\nVmBad:\tmany kB\n";
        assert_eq!(status_field(text, "VmRSS:"), Some(17_920));
        assert_eq!(status_field(text, "Threads:"), Some(7));
        assert_eq!(status_field(text, "VmBad:"), None, "not a number");
        assert_eq!(status_field(text, "VmSwap:"), None, "absent");
    }

    /// The bench's own process: it holds memory, a thread and open files (stdin at least).
    #[test]
    fn the_own_process_is_sampled() {
        let sample = sample_process(std::process::id()).expect("this process is readable");
        assert!(
            sample.rss_bytes > 0 && sample.threads >= 1 && sample.fds >= 1,
            "{sample:?}"
        );
        assert!(sample_process(u32::MAX).is_err(), "no such process");
    }

    #[test]
    fn dir_size_counts_every_file_below_and_the_largest_snapshot() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::create_dir(dir.path().join("sub")).expect("a subdirectory");
        std::fs::write(dir.path().join("a"), [0_u8; 10]).expect("a file");
        std::fs::write(dir.path().join("sub/snap-1"), [0_u8; 20]).expect("a file");
        std::fs::write(dir.path().join("snap-2.tmp"), [0_u8; 30]).expect("a file");
        assert_eq!(
            dir_size(dir.path()).expect("readable"),
            DirSize {
                bytes: 60,
                largest_snapshot: 30
            }
        );
        assert!(dir_size(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn pooled_quantiles_count_every_minute_once() {
        let low = crate::us_histogram(&[100; 99]);
        let high = crate::us_histogram(&[10_000; 1]);
        assert_eq!(pooled_quantile(&[&low, &high], 0.5), Some(100));
        let p100 = pooled_quantile(&[&low, &high], 1.0).expect("samples");
        assert!((10_000..10_010).contains(&p100), "{p100}");
        assert_eq!(pooled_quantile(&[], 0.5), None);
    }

    #[test]
    fn first_and_last_windows_never_overlap() {
        assert_eq!(first_and_last(30, 5), (1..=5, 26..=30));
        assert_eq!(first_and_last(3, 5), (1..=1, 3..=3));
        assert_eq!(first_and_last(8, 5), (1..=4, 5..=8));
        assert!(first_and_last(1, 5).0.is_empty());
    }
}
