//! Driving a `balsa-wal` [`Wal`] for benchmarks: append + sync cases measured together with the
//! floor (with the segment rolls that landed in them), and the time to recover a large log next to
//! the memory floor of what recovery hands back.

use std::{
    io,
    path::Path,
    time::{Duration, Instant},
};

use balsa_wal::{Entry, Options, Stats, Wal, WritePath};
use hdrhistogram::Histogram;

use crate::{
    Step, WARMUP,
    floor::{FILL, FloorFile},
    interleave, thread_cpu_time,
};

/// Term of every entry a benchmark appends.
const TERM: u64 = 1;

/// A WAL error as an I/O error, so benchmark steps can use `?` throughout.
pub fn io_err(error: balsa_wal::Error) -> io::Error {
    io::Error::other(error)
}

/// Opens the log in `dir` (a new one if `dir` holds none) and prepares its next segment fully, so
/// that no zero-filling lands on the commit path while measuring.
///
/// # Errors
/// Any error from opening the log or preparing the segment.
pub fn open_prepared(dir: &Path, options: Options) -> io::Result<Wal> {
    let (mut wal, _) = Wal::open(dir, options).map_err(io_err)?;
    while !wal.prepare_next_segment(u64::MAX).map_err(io_err)? {}
    Ok(wal)
}

/// A log taking `batch` entries of a fixed payload per sync: an append + sync case, as a [`Step`].
pub struct AppendCase {
    wal: Wal,
    data: Vec<u8>,
    batch: usize,
}

impl AppendCase {
    /// Opens a new log in `dir` ([`open_prepared`]) for `batch` entries of `payload` bytes per sync.
    ///
    /// # Errors
    /// Any error from the WAL.
    pub fn open(dir: &Path, options: Options, payload: usize, batch: usize) -> io::Result<Self> {
        Ok(AppendCase {
            wal: open_prepared(dir, options)?,
            data: vec![FILL; payload],
            batch,
        })
    }

    /// The write path in effect ([`Wal::write_path`]).
    pub fn write_path(&self) -> WritePath {
        self.wal.write_path()
    }

    /// Closes the log.
    ///
    /// # Errors
    /// Any error from the WAL.
    pub fn close(self) -> io::Result<()> {
        self.wal.close().map_err(io_err)
    }
}

impl Step for AppendCase {
    /// `batch` × `append_entry`, then `sync`.
    fn step(&mut self) -> io::Result<()> {
        append_batch(&mut self.wal, &self.data, self.batch)
    }
}

/// Per-sync latencies of one append + sync case, and what happened in its log meanwhile.
pub struct AppendSync {
    /// Nanoseconds per `batch × append_entry + sync`.
    pub hist: Histogram<u64>,
    /// Entries per sync.
    pub batch: usize,
    /// The WAL's counters over the measured iterations only (not the warmup).
    pub stats: Stats,
}

impl AppendSync {
    /// Entries made durable per second of this case's own time (`batch` / mean time per sync).
    pub fn entries_per_second(&self) -> f64 {
        self.batch as f64 * 1e9 / self.hist.mean().max(1.0)
    }

    /// Rolls in the measured iterations, as `rolls R (unprepared U)`.
    pub fn rolls(&self) -> String {
        format!(
            "rolls {} (unprepared {})",
            self.stats.rolls, self.stats.unprepared_rolls
        )
    }
}

/// Measures `floor` and `cases` together ([`interleave`]): [`WARMUP`] untimed rounds, then
/// `iterations` timed ones. Every log's next segment was prepared when it was opened and is not
/// prepared again, so a roll in the measurement would be shown in [`AppendSync::stats`], not hidden.
///
/// # Errors
/// Any I/O or WAL error.
pub fn measure(
    floor: &mut FloorFile,
    cases: &mut [AppendCase],
    iterations: usize,
) -> io::Result<(Histogram<u64>, Vec<AppendSync>)> {
    interleave(WARMUP, 0, &mut steps(floor, cases))?;
    let before: Vec<Stats> = cases.iter().map(|case| case.wal.stats()).collect();
    let mut hists = interleave(0, iterations, &mut steps(floor, cases))?.into_iter();
    let floor_hist = hists.next().expect("the floor is the first step");
    let results = cases
        .iter()
        .zip(before)
        .zip(hists)
        .map(|((case, before), hist)| AppendSync {
            hist,
            batch: case.batch,
            stats: delta(before, case.wal.stats()),
        })
        .collect();
    Ok((floor_hist, results))
}

fn steps<'a>(floor: &'a mut FloorFile, cases: &'a mut [AppendCase]) -> Vec<&'a mut dyn Step> {
    let mut steps: Vec<&mut dyn Step> = vec![floor];
    steps.extend(cases.iter_mut().map(|case| case as &mut dyn Step));
    steps
}

/// Appends `batch` entries holding `data`, then syncs.
fn append_batch(wal: &mut Wal, data: &[u8], batch: usize) -> io::Result<()> {
    for _ in 0..batch {
        let index = wal.next_index();
        wal.append_entry(index, TERM, data).map_err(io_err)?;
    }
    wal.sync().map_err(io_err)
}

fn delta(before: Stats, after: Stats) -> Stats {
    Stats {
        syncs: after.syncs - before.syncs,
        bytes_written: after.bytes_written - before.bytes_written,
        entries_appended: after.entries_appended - before.entries_appended,
        rolls: after.rolls - before.rolls,
        unprepared_rolls: after.unprepared_rolls - before.unprepared_rolls,
    }
}

/// A log written by [`recovery`] and the time `Wal::open` took to read it back.
pub struct Recovery {
    /// Bytes of records in the log (entries, hard states, sync marks), as the writer counted.
    pub log_bytes: u64,
    /// Segment files of the log.
    pub segments: u64,
    /// Entries `Wal::open` handed back.
    pub entries: usize,
    /// Wall time of `Wal::open`.
    pub open: Duration,
    /// Time the thread spent on a CPU during `Wal::open`, if known ([`thread_cpu_time`]).
    pub open_cpu: Option<Duration>,
    /// Wall time of [`alloc_floor`] for as many entries, measured just before and just after the
    /// open: the allocation and copy `Recovered::entries` costs whatever the scan does.
    pub alloc_floor: [Duration; 2],
}

impl Recovery {
    /// Log bytes recovered per second, in MB (10^6 B).
    pub fn mb_per_second(&self) -> f64 {
        self.log_bytes as f64 / 1e6 / self.open.as_secs_f64()
    }

    /// Log bytes per second of the time the opening thread was on a CPU, in MB (10^6 B): what the
    /// open would reach with a CPU to itself.
    pub fn cpu_mb_per_second(&self) -> Option<f64> {
        self.open_cpu
            .map(|cpu| self.log_bytes as f64 / 1e6 / cpu.as_secs_f64())
    }

    /// Log bytes per second of each [`Recovery::alloc_floor`], in MB (10^6 B).
    pub fn floor_mb_per_second(&self) -> [f64; 2] {
        self.alloc_floor
            .map(|floor| self.log_bytes as f64 / 1e6 / floor.as_secs_f64())
    }
}

/// Writes a new log of at least `log_bytes` bytes of records into `dir` (entries of `payload`
/// bytes, a sync every `per_sync` of them, the next segment prepared after each sync as a node
/// would when idle) and closes it; then times `Wal::open` on it. The log was just written, so it
/// is read from a warm page cache, not from the disk. The recovered entries are freed untimed.
/// [`alloc_floor`] is measured just before and just after the open: fresh anonymous memory costs
/// differently from one moment to the next here, so both are shown.
///
/// # Errors
/// Any error from the WAL.
pub fn recovery(
    dir: &Path,
    options: &Options,
    payload: usize,
    per_sync: usize,
    log_bytes: u64,
) -> io::Result<Recovery> {
    let mut wal = open_prepared(dir, options.clone())?;
    let data = vec![FILL; payload];
    while wal.stats().bytes_written < log_bytes {
        append_batch(&mut wal, &data, per_sync)?;
        while !wal.prepare_next_segment(u64::MAX).map_err(io_err)? {}
    }
    let written = wal.stats();
    wal.close().map_err(io_err)?;

    let count = usize::try_from(written.entries_appended).expect("entries fit in memory");
    let before = alloc_floor(count, payload);
    let (start, start_cpu) = (Instant::now(), thread_cpu_time());
    let (wal, recovered) = Wal::open(dir, options.clone()).map_err(io_err)?;
    let open = start.elapsed();
    let open_cpu = thread_cpu_time()
        .zip(start_cpu)
        .map(|(end, start)| end - start);
    let entries = recovered.entries.len();
    drop(recovered);
    wal.close().map_err(io_err)?;
    Ok(Recovery {
        log_bytes: written.bytes_written,
        segments: 1 + written.rolls,
        entries,
        open,
        open_cpu,
        alloc_floor: [before, alloc_floor(entries, payload)],
    })
}

/// The memory floor of recovery: the time to build a `Vec<Entry>` of `entries` entries, each
/// owning a fresh copy of a `payload`-byte buffer, as `Recovered::entries` does.
pub fn alloc_floor(entries: usize, payload: usize) -> Duration {
    let data = vec![FILL; payload];
    let start = Instant::now();
    let built: Vec<Entry> = (1..=entries as u64)
        .map(|index| Entry {
            index,
            term: TERM,
            data: data.clone(),
        })
        .collect();
    let elapsed = start.elapsed();
    std::hint::black_box(built);
    elapsed
}
