//! Printing benchmark figures: one table row per write path (p50, p99, ratio to the floor), the
//! filesystem the figures were taken on and how busy the machine was.

use std::{io, path::Path};

use balsa::runtime::wire::StatusReport;
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
    steal_share(before, after)
        .map_or_else(|| "?".to_owned(), |share| format!("{:.1}%", share * 100.0))
}

/// The share (0–1) of CPU time stolen between two [`cpu_ticks`] readings, if both were read and
/// time passed between them.
#[must_use]
pub fn steal_share(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> Option<f64> {
    match (before, after) {
        (Some((steal0, total0)), Some((steal1, total1))) if total1 > total0 => {
            Some(steal1.saturating_sub(steal0) as f64 / (total1 - total0) as f64)
        }
        _ => None,
    }
}

/// How well writes were batched between two sets of a cluster's status reports (the same nodes,
/// in the same order): entries committed per WAL sync on the leader and on a follower (the
/// followers' mean), and datagrams sent per entry, all nodes together.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Batching {
    /// Entries committed per sync of the leader's WAL.
    pub leader_entries_per_sync: f64,
    /// The same per follower, the followers' syncs averaged.
    pub follower_entries_per_sync: f64,
    /// Datagrams all nodes sent per entry committed.
    pub datagrams_per_entry: f64,
}

impl Batching {
    /// Compares `before` with `after`, `leader` being the node that led in between. Counts that
    /// went backwards (a node restarted) count as 0; no entries or no syncs count as 1, so that
    /// nothing divides by zero.
    #[must_use]
    pub fn between(before: &[StatusReport], after: &[StatusReport], leader: u64) -> Batching {
        let delta = |pick: fn(&StatusReport) -> u64, leader_only: Option<bool>| -> u64 {
            before
                .iter()
                .zip(after)
                .filter(|(report, _)| leader_only.is_none_or(|is| (report.id == leader) == is))
                .map(|(b, a)| pick(a).saturating_sub(pick(b)))
                .sum()
        };
        let followers = before
            .iter()
            .filter(|report| report.id != leader)
            .count()
            .max(1);
        let entries = delta(|r| r.commit_index, Some(true)).max(1) as f64;
        let leader_syncs = delta(|r| r.wal_syncs, Some(true)).max(1) as f64;
        let follower_syncs = delta(|r| r.wal_syncs, Some(false)).max(1) as f64 / followers as f64;
        Batching {
            leader_entries_per_sync: entries / leader_syncs,
            follower_entries_per_sync: entries / follower_syncs,
            datagrams_per_entry: delta(|r| r.datagrams_out, None) as f64 / entries,
        }
    }
}

impl std::fmt::Display for Batching {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "entries per sync: leader {:.1}, followers {:.1}; node datagrams per entry {:.2}",
            self.leader_entries_per_sync, self.follower_entries_per_sync, self.datagrams_per_entry
        )
    }
}

/// Which side of its limit a target's figure must be on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Bound {
    /// The figure must be at most the limit.
    AtMost,
    /// The figure must be at least the limit.
    AtLeast,
}

/// A target set against a figure of the same run: reported, never asserted.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Target {
    /// What is compared, for the reader.
    pub name: String,
    /// The figure (a ratio, usually); `None` if the run did not measure it.
    pub value: Option<f64>,
    /// Which side of `limit` it must be on.
    pub bound: Bound,
    /// The limit.
    pub limit: f64,
}

impl Target {
    /// Whether the figure is on the right side of the limit (`None`: not measured).
    #[must_use]
    pub fn met(&self) -> Option<bool> {
        self.value.map(|value| match self.bound {
            Bound::AtMost => value <= self.limit,
            Bound::AtLeast => value >= self.limit,
        })
    }

    /// One report line: `name: value (target <= limit: met)`, or `not measured`.
    #[must_use]
    pub fn line(&self) -> String {
        let sign = match self.bound {
            Bound::AtMost => "<=",
            Bound::AtLeast => ">=",
        };
        match (self.value, self.met()) {
            (Some(value), Some(met)) => format!(
                "{}: {value:.2} (target {sign} {}: {})",
                self.name,
                self.limit,
                if met { "met" } else { "NOT MET" }
            ),
            _ => format!(
                "{}: not measured in this run (target {sign} {})",
                self.name, self.limit
            ),
        }
    }
}

/// [`wait_for_disk_quiet`] for at most `max`, saying so on stdout when it waited (over
/// 100 ms), so that a row measured after a wait can be told from one that was not.
pub fn settle_disk(max: std::time::Duration) {
    let waited = wait_for_disk_quiet(max);
    if waited > std::time::Duration::from_millis(100) {
        println!(
            "  (waited {} ms for the disk's writeback to settle)",
            waited.as_millis()
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: u64, commit_index: u64, wal_syncs: u64, datagrams_out: u64) -> StatusReport {
        StatusReport {
            id,
            role: String::new(),
            term: 1,
            leader: Some(1),
            commit_index,
            applied_index: commit_index,
            last_index: commit_index,
            datagrams_in: 0,
            datagrams_out,
            datagrams_dropped: 0,
            wal_syncs,
            snapshot_index: 0,
            first_index: 1,
            cluster_id: 0,
            voters: Vec::new(),
            outgoing_voters: Vec::new(),
            learners: Vec::new(),
            configuration_index: 0,
            datagrams_auth_failed: 0,
            datagrams_replayed: 0,
            suspicious_sources: Vec::new(),
        }
    }

    /// The leader's entries over its syncs, over the followers' mean syncs, and every node's
    /// datagrams over the entries.
    #[test]
    fn batching_divides_the_leaders_entries_by_each_sides_syncs() {
        let before = [
            report(1, 100, 10, 0),
            report(2, 90, 10, 0),
            report(3, 90, 10, 0),
        ];
        let after = [
            report(1, 1100, 60, 500),
            report(2, 1090, 30, 200),
            report(3, 1090, 50, 300),
        ];
        let batching = Batching::between(&before, &after, 1);
        assert!(
            (batching.leader_entries_per_sync - 20.0).abs() < 1e-9,
            "{batching:?}"
        );
        assert!(
            (batching.follower_entries_per_sync - 1000.0 / 30.0).abs() < 1e-9,
            "{batching:?}"
        );
        assert!(
            (batching.datagrams_per_entry - 1.0).abs() < 1e-9,
            "{batching:?}"
        );
    }

    #[test]
    fn a_target_is_met_only_on_its_side_of_the_limit() {
        let target = |value, bound| Target {
            name: "ratio".into(),
            value,
            bound,
            limit: 1.5,
        };
        assert_eq!(target(Some(1.5), Bound::AtMost).met(), Some(true));
        assert_eq!(target(Some(1.6), Bound::AtMost).met(), Some(false));
        assert_eq!(target(Some(1.4), Bound::AtLeast).met(), Some(false));
        assert_eq!(target(Some(1.5), Bound::AtLeast).met(), Some(true));
        assert_eq!(target(None, Bound::AtLeast).met(), None);
        assert!(
            target(Some(1.6), Bound::AtMost)
                .line()
                .ends_with("NOT MET)")
        );
        assert!(target(None, Bound::AtMost).line().contains("not measured"));
    }

    #[test]
    fn steal_is_the_stolen_share_of_the_ticks_between() {
        assert_eq!(steal_share(Some((10, 100)), Some((20, 200))), Some(0.1));
        assert_eq!(steal_share(Some((10, 100)), Some((10, 100))), None);
        assert_eq!(steal_share(None, Some((10, 100))), None);
        assert_eq!(steal_between(Some((0, 0)), Some((5, 100))), "5.0%");
    }
}
