//! Printing benchmark figures: one table row per write path (p50, p99, ratio to the floor), the
//! filesystem the figures were taken on and how busy the machine was.

use std::{io, path::Path};

use hdrhistogram::Histogram;

/// A fresh directory for a bench's data, in `BALSA_BENCH_DIR` if set, else in cargo's
/// `target_tmpdir` (the bench's `CARGO_TARGET_TMPDIR`). Prints `title`, the filesystem the
/// figures are taken on, how busy the machine is, and a warning if that filesystem does not
/// persist.
pub fn bench_dir(title: &str, target_tmpdir: &str) -> Result<tempfile::TempDir, String> {
    let base = std::env::var_os("BALSA_BENCH_DIR")
        .map_or_else(|| std::path::PathBuf::from(target_tmpdir), Into::into);
    let dir = tempfile::tempdir_in(&base).map_err(|e| e.to_string())?;
    let (fs_type, mount) = filesystem_of(dir.path()).map_err(|e| e.to_string())?;
    println!("{title}");
    println!("dir {mount}");
    println!("machine before measuring: {}", machine_load());
    if matches!(fs_type.as_str(), "tmpfs" | "ramfs") {
        println!("WARNING: {fs_type} does not persist; set BALSA_BENCH_DIR to a disk-backed dir");
    }
    Ok(dir)
}

/// Prints the column headings matching [`row`].
pub fn header() {
    println!(
        "{:<44} {:>10} {:>10} {:>12}",
        "path", "p50 µs", "p99 µs", "p50 / floor"
    );
}

/// Prints `name`, the p50 and p99 of `hist` (nanoseconds) in µs, and p50 / `floor_p50_ns`.
pub fn row(name: &str, hist: &Histogram<u64>, floor_p50_ns: u64) {
    row_with(name, hist, floor_p50_ns, "");
}

/// As [`row`], followed by `note` (if not empty) in a last column.
pub fn row_with(name: &str, hist: &Histogram<u64>, floor_p50_ns: u64, note: &str) {
    let p50 = hist.value_at_quantile(0.50);
    let p99 = hist.value_at_quantile(0.99);
    let gap = if note.is_empty() { "" } else { "  " };
    println!(
        "{name:<44} {:>10.1} {:>10.1} {:>11.2}x{gap}{note}",
        p50 as f64 / 1e3,
        p99 as f64 / 1e3,
        p50 as f64 / floor_p50_ns.max(1) as f64,
    );
}

/// The filesystem holding `dir`, as `(type, description)`: from the `/proc/mounts` entry whose
/// mount point is the longest prefix of the canonicalized `dir` (the last one if mounted over).
///
/// # Errors
/// If `dir` cannot be canonicalized or `/proc/mounts` cannot be read.
pub fn filesystem_of(dir: &Path) -> io::Result<(String, String)> {
    let dir = dir.canonicalize()?;
    let mounts = std::fs::read_to_string("/proc/mounts")?;
    let best = mounts
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [device, mount_point, fs_type, options, ..] = fields[..] else {
                return None;
            };
            // Mount points escape blanks as octal; undo the common one (`\040`, a space).
            let mount_point = mount_point.replace("\\040", " ");
            let text = format!("{fs_type} ({device} on {mount_point}, {options})");
            dir.starts_with(&mount_point)
                .then(|| (mount_point.len(), fs_type.to_owned(), text))
        })
        .max_by_key(|(len, ..)| *len); // the last of equals: the mount on top
    Ok(match best {
        Some((_, fs_type, text)) => (fs_type, format!("{}: {text}", dir.display())),
        None => (
            "?".to_owned(),
            format!("{}: no /proc/mounts entry", dir.display()),
        ),
    })
}

/// The machine's state before measuring, for the reader to judge the figures by: the 1-minute
/// load average and the share of the last 10 s in which some task waited for I/O
/// (`/proc/pressure/io`, `some avg10`). Other I/O on the machine moves every figure.
pub fn machine_load() -> String {
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned());
    let io = std::fs::read_to_string("/proc/pressure/io")
        .ok()
        .and_then(|text| {
            let some = text.lines().find(|line| line.starts_with("some"))?;
            let avg10 = some
                .split_whitespace()
                .find_map(|f| f.strip_prefix("avg10="))?;
            Some(format!("{avg10}%"))
        })
        .unwrap_or_else(|| "?".to_owned());
    format!("load average {load}, io pressure (some, avg10) {io}")
}

/// The machine's CPU time so far, from `/proc/stat`'s first line: (stolen, total) in clock
/// ticks. "Stolen" is time the hypervisor gave this VM's CPUs to someone else: on a shared host
/// it moves every latency figure, so the benchmarks print its share during each run.
#[must_use]
pub fn cpu_ticks() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal (guest time is inside user already).
    let total = fields.iter().take(8).sum();
    Some((*fields.get(7)?, total))
}

/// The share of CPU time stolen between two [`cpu_ticks`] readings, as "x.y%" ("?" without
/// them).
#[must_use]
pub fn steal_between(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> String {
    match (before, after) {
        (Some((steal0, total0)), Some((steal1, total1))) if total1 > total0 => {
            let share = (steal1 - steal0) as f64 / (total1 - total0) as f64;
            format!("{:.1}%", share * 100.0)
        }
        _ => "?".to_owned(),
    }
}

/// Waits, at most `max`, until the machine holds almost no data waiting for the disk
/// (`/proc/meminfo` `Dirty:` + `Writeback:`, under 1 MiB) for three checks 10 ms apart, and
/// returns how long that took. A node that just started zero-fills its next 64 MiB segment in
/// the background and syncs it at the end; measured during that writeback, every sync waits
/// behind it (dirty pages count too: the zero-fill may still be going on when nothing is under
/// writeback yet). Without `/proc/meminfo`, returns at once.
#[must_use]
pub fn wait_for_disk_quiet(max: std::time::Duration) -> std::time::Duration {
    let started = std::time::Instant::now();
    let writeback_kib = || -> Option<u64> {
        let text = std::fs::read_to_string("/proc/meminfo").ok()?;
        let kib = |name: &str| -> Option<u64> {
            let line = text.lines().find(|line| line.starts_with(name))?;
            line.split_whitespace().nth(1)?.parse().ok()
        };
        Some(kib("Dirty:")? + kib("Writeback:")?)
    };
    let mut quiet_checks = 0;
    loop {
        match writeback_kib() {
            None => break,
            Some(kib) if kib < 1024 => quiet_checks += 1,
            Some(_) => quiet_checks = 0,
        }
        if quiet_checks == 3 || started.elapsed() >= max {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    started.elapsed()
}
