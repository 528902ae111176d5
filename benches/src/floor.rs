//! The physical floor of a durable append: `pwrite` at the next offset of a preallocated,
//! zero-filled file, then `fdatasync`. Anything a WAL does on top of this costs at least this much.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;

use crate::{Step, WARMUP, new_histogram, sample};

/// Size of the files the write-path benchmarks append to.
pub const FILE_BYTES: u64 = 64 << 20;

/// Byte every benchmark payload is filled with, so a read-back can tell it from the zero fill.
pub const FILL: u8 = 0xA5;

/// Creates `path` holding `bytes` real zeros (written in 1 MiB chunks, not a sparse hole), then
/// makes the data, the file's metadata and its directory entry durable.
///
/// # Errors
/// Any error from creating, writing or syncing the file or its parent directory.
pub fn preallocate(path: &Path, bytes: u64) -> io::Result<File> {
    const CHUNK: usize = 1 << 20;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)?;
    let zeros = vec![0u8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left).map_or(CHUNK, |left| left.min(CHUNK));
        file.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    file.sync_all()?;
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(parent)?.sync_all()?;
    Ok(file)
}

/// Appends `batch` records of `record_len` bytes with one `pwrite` per iteration, each followed
/// by `fdatasync`, on a fresh preallocated file `name` in `dir`; returns the per-sync latency of
/// `iterations` appends after [`WARMUP`] untimed ones. The file is checked and removed afterwards.
///
/// # Errors
/// Any I/O error, or `InvalidData` if the read-back does not match what was written.
pub fn measure_pwrite_fdatasync(
    dir: &Path,
    name: &str,
    record_len: usize,
    batch: usize,
    iterations: usize,
) -> io::Result<Histogram<u64>> {
    let mut floor = FloorFile::create(&dir.join(name), record_len * batch)?;
    let hist = sample(WARMUP, iterations, || floor.step())?;
    floor.finish()?;
    Ok(hist)
}

/// A fresh preallocated file of [`FILE_BYTES`] taking appends of a fixed size, each made durable
/// with `pwrite` + `fdatasync`: the floor as a [`Step`], to measure alongside other cases.
pub struct FloorFile {
    file: File,
    path: PathBuf,
    buf: Vec<u8>,
    offset: u64,
}

impl FloorFile {
    /// Creates and preallocates `path` for appends of `append_len` bytes.
    ///
    /// # Errors
    /// Any error from [`preallocate`].
    pub fn create(path: &Path, append_len: usize) -> io::Result<FloorFile> {
        Ok(FloorFile {
            file: preallocate(path, FILE_BYTES)?,
            path: path.to_path_buf(),
            buf: vec![FILL; append_len],
            offset: 0,
        })
    }

    /// Checks that the appends landed where intended ([`verify`]) and removes the file.
    ///
    /// # Errors
    /// Any I/O error, or `InvalidData` if the read-back does not match what was written.
    pub fn finish(self) -> io::Result<()> {
        verify(&self.file, self.offset)?;
        std::fs::remove_file(&self.path)
    }
}

impl Step for FloorFile {
    /// One append at the next offset, then `fdatasync`.
    fn step(&mut self) -> io::Result<()> {
        self.file.write_all_at(&self.buf, self.offset)?;
        self.file.sync_data()?;
        self.offset += self.buf.len() as u64;
        Ok(())
    }
}

/// The floor: `pwrite` of 64 bytes at sequential offsets + `fdatasync`, on a preallocated file in
/// `dir`, `iterations` times after [`WARMUP`] untimed ones. Nanoseconds per iteration.
///
/// # Panics
/// On any I/O error: without a floor, no figure of the run means anything.
#[must_use]
pub fn measure_fdatasync_floor(dir: &Path, iterations: usize) -> Histogram<u64> {
    measure_pwrite_fdatasync(dir, "floor.wal", 64, 1, iterations)
        .expect("measuring the pwrite + fdatasync floor")
}

/// Checks that `file` holds [`FILL`] in `0..written` and zeros in the next page (if any), i.e. the
/// writes landed where intended. This reads the page cache: it does not prove durability.
///
/// # Errors
/// Any read error, or `InvalidData` on a mismatch.
pub fn verify(file: &File, written: u64) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    while offset < written {
        let n = usize::try_from((written - offset).min(buf.len() as u64)).expect("<= 1 MiB");
        file.read_exact_at(&mut buf[..n], offset)?;
        if buf[..n].iter().any(|&b| b != FILL) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "payload not in file",
            ));
        }
        offset += n as u64;
    }
    let tail = (file.metadata()?.len() - written).min(4096);
    let tail_len = usize::try_from(tail).expect("<= 4096");
    file.read_exact_at(&mut buf[..tail_len], written)?;
    if buf[..tail_len].iter().any(|&b| b != 0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bytes past the end",
        ));
    }
    Ok(())
}

/// Writes `bytes` to a new file at `path` in 1 MiB writes and fsyncs it, then removes it: the
/// least installing a snapshot of that size costs. Returns the time from the file's creation to
/// the end of the sync.
///
/// # Errors
/// Any error from creating, writing, syncing or removing the file.
pub fn measure_write_and_sync(path: &Path, bytes: u64) -> io::Result<Duration> {
    let chunk = vec![FILL; 1 << 20];
    let start = Instant::now();
    let mut file = File::create(path)?;
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left.min(chunk.len() as u64)).expect("at most 1 MiB");
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    file.sync_all()?;
    let elapsed = start.elapsed();
    std::fs::remove_file(path)?;
    Ok(elapsed)
}

/// What [`measure_sequential_bandwidth`] measured: the bytes written, the syncs made and the
/// time from the file's creation to the end of the last sync.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bandwidth {
    /// Bytes written (all of them synced).
    pub bytes: u64,
    /// `fdatasync` calls made.
    pub syncs: u64,
    /// Wall time of the whole write.
    pub elapsed: Duration,
}

impl Bandwidth {
    /// Megabytes (10⁶ bytes) per second; 0 for a write that took no measurable time.
    #[must_use]
    pub fn mb_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.bytes as f64 / secs / 1e6
        } else {
            0.0
        }
    }
}

/// The disk's sequential write bandwidth as a log streaming large records sees it: `bytes`
/// written to a new file in `dir` in writes of `sync_every` bytes (the last may be shorter), each
/// followed by `fdatasync`; the file is checked ([`verify`]) and removed. The file grows as it
/// is written (no preallocation), so each sync also makes its new length durable, as a WAL's
/// first pass over a fresh segment would not have to: the figure is the disk's, not the WAL's.
///
/// # Errors
/// `InvalidInput` if `sync_every` is 0; any error from creating, writing, syncing, reading back
/// or removing the file.
pub fn measure_sequential_bandwidth(
    dir: &Path,
    bytes: u64,
    sync_every: usize,
) -> io::Result<Bandwidth> {
    if sync_every == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the sequential bandwidth floor needs a positive sync interval",
        ));
    }
    let path = dir.join("bandwidth-floor.dat");
    let chunk = vec![FILL; sync_every];
    let start = Instant::now();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    let (mut written, mut syncs) = (0_u64, 0_u64);
    while written < bytes {
        let n = usize::try_from(bytes - written).map_or(chunk.len(), |left| left.min(chunk.len()));
        file.write_all_at(&chunk[..n], written)?;
        file.sync_data()?;
        written += n as u64;
        syncs += 1;
    }
    let elapsed = start.elapsed();
    verify(&file, written)?;
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(Bandwidth {
        bytes: written,
        syncs,
        elapsed,
    })
}

/// The network floor: the round trip of a `payload_len`-byte datagram over loopback between two
/// blocking `std` sockets on two threads (one sends and waits, the other echoes), after
/// [`WARMUP`] untimed round trips. Nanoseconds per round trip.
///
/// # Errors
/// Any socket error, a lost datagram (no echo within 1 s) or an echo of the wrong length.
pub fn measure_udp_rtt(payload_len: usize, iterations: usize) -> io::Result<Histogram<u64>> {
    use std::net::UdpSocket;
    use std::time::Duration;

    let server = UdpSocket::bind("127.0.0.1:0")?;
    let server_address = server.local_addr()?;
    let client = UdpSocket::bind("127.0.0.1:0")?;
    client.set_read_timeout(Some(Duration::from_secs(1)))?;
    let payload = vec![FILL; payload_len.max(1)];
    std::thread::scope(|scope| {
        let echo = scope.spawn(move || -> io::Result<()> {
            let mut buffer = vec![0_u8; 65_536];
            loop {
                let (len, from) = server.recv_from(&mut buffer)?;
                if len == 0 {
                    return Ok(()); // the stop signal
                }
                server.send_to(&buffer[..len], from)?;
            }
        });
        let mut reply = vec![0_u8; payload.len() + 1];
        let result = sample(WARMUP, iterations, || {
            client.send_to(&payload, server_address)?;
            let len = client.recv(&mut reply)?;
            if len == payload.len() {
                Ok(())
            } else {
                Err(io::Error::other(format!("echo of {len} bytes")))
            }
        });
        client.send_to(&[], server_address)?;
        echo.join()
            .map_err(|_| io::Error::other("the echo thread panicked"))??;
        result
    })
}

/// The disk floor of a cluster whose nodes share one disk: `nodes` threads, each appending
/// 64 bytes + `fdatasync` to its own preallocated file in `dir`, all starting each round
/// together; per round, the time until `quorum` of them finished (what a commit waits for when
/// every node syncs the same write), through [`crate::concurrent::measure_quorum_rounds`].
/// Nanoseconds per round.
///
/// # Errors
/// Any I/O error of a node's file.
pub fn measure_quorum_fdatasync(
    dir: &Path,
    nodes: usize,
    quorum: usize,
    iterations: usize,
) -> io::Result<Histogram<u64>> {
    let mut files = (0..nodes)
        .map(|k| FloorFile::create(&dir.join(format!("quorum-floor-{k}.wal")), 64))
        .collect::<io::Result<Vec<_>>>()?;
    let steps: Vec<&mut (dyn Step + Send)> = files
        .iter_mut()
        .map(|file| file as &mut (dyn Step + Send))
        .collect();
    let mut hists = crate::concurrent::measure_quorum_rounds(vec![steps], quorum, iterations)?;
    for file in files {
        file.finish()?;
    }
    Ok(hists.remove(0))
}

/// The disk share of a commit as a 3-node cluster on one disk makes it, closer than
/// [`measure_quorum_fdatasync`]'s "all three at once": the leader starts its sync first, and the
/// two followers start theirs together a moment later (here a sleep of the shortest duration,
/// which on Linux lasts about as long as a datagram takes to reach the follower's WAL thread);
/// per round, the time from the followers' start until two of the three finished (any two are
/// a quorum; usually the leader and the faster follower). Each thread appends 64 bytes + `fdatasync` to its own
/// preallocated file in `dir`. Nanoseconds per round, after [`WARMUP`] untimed rounds.
///
/// # Errors
/// Any I/O error of a node's file.
pub fn measure_staggered_commit_sync(dir: &Path, iterations: usize) -> io::Result<Histogram<u64>> {
    const NODES: usize = 3;
    let mut files = (0..NODES)
        .map(|k| FloorFile::create(&dir.join(format!("staggered-floor-{k}.wal")), 64))
        .collect::<io::Result<Vec<_>>>()?;
    let rounds = WARMUP + iterations;
    let start_line = std::sync::Barrier::new(NODES + 1);
    let (finished, finishes) =
        std::sync::mpsc::channel::<(usize, io::Result<(Instant, Instant)>)>();
    let hist = std::thread::scope(|scope| -> io::Result<Histogram<u64>> {
        for (node, file) in files.iter_mut().enumerate() {
            let (start_line, finished) = (&start_line, finished.clone());
            scope.spawn(move || {
                for _ in 0..rounds {
                    start_line.wait();
                    if node > 0 {
                        std::thread::sleep(Duration::from_nanos(1));
                    }
                    let started = Instant::now();
                    let result = file.step().map(|()| (started, Instant::now()));
                    if finished.send((node, result)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(finished);
        let mut hist = new_histogram();
        let mut outcome = Ok(());
        for round in 0..rounds {
            start_line.wait();
            let mut times = [None; NODES];
            for _ in 0..NODES {
                match finishes.recv() {
                    Ok((node, Ok(span))) => times[node] = Some(span),
                    Ok((_, Err(error))) => outcome = outcome.and(Err(error)),
                    Err(_) => return Err(io::Error::other("a node thread stopped")),
                }
            }
            let [Some(leader), Some(first), Some(second)] = times else {
                continue;
            };
            if round < WARMUP {
                continue;
            }
            let followers_start = first.0.max(second.0);
            // Any two of the three are a quorum: the commit waits for the second to finish.
            let mut ends = [leader.1, first.1, second.1];
            ends.sort_unstable();
            let done = ends[1];
            let ns = done.saturating_duration_since(followers_start).as_nanos();
            hist.saturating_record(u64::try_from(ns).unwrap_or(u64::MAX));
        }
        outcome.map(|()| hist)
    })?;
    for file in files {
        file.finish()?;
    }
    Ok(hist)
}

/// The cost of handing work to another thread: the round trip of a message between two threads
/// over a pair of crossbeam channels (two hand-offs, each a wake-up of a waiting thread), after
/// [`WARMUP`] untimed ones. Nanoseconds per round trip.
#[must_use]
pub fn measure_thread_handoff(iterations: usize) -> Histogram<u64> {
    let (to_echo, echo_in) = crossbeam_channel::bounded::<u64>(1);
    let (echo_out, back) = crossbeam_channel::bounded::<u64>(1);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for value in echo_in {
                if echo_out.send(value).is_err() {
                    return;
                }
            }
        });
        let hist = sample(WARMUP, iterations, || {
            to_echo.send(1).map_err(io::Error::other)?;
            back.recv().map(|_| ()).map_err(io::Error::other)
        })
        .expect("both ends live until the scope ends");
        drop(to_echo);
        hist
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte asked for is written and synced, one sync per interval (the last one short),
    /// and the file is gone afterwards.
    #[test]
    fn sequential_bandwidth_writes_every_byte_with_a_sync_per_interval() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let bytes = 3 * 65_536 + 100;
        let measured =
            measure_sequential_bandwidth(dir.path(), bytes, 65_536).expect("the disk writes");
        assert_eq!((measured.bytes, measured.syncs), (bytes, 4));
        assert!(measured.mb_per_sec() > 0.0, "{measured:?}");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("the directory is readable")
            .collect();
        assert!(left.is_empty(), "the file is removed: {left:?}");
    }

    #[test]
    fn sequential_bandwidth_refuses_a_zero_interval() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let error = measure_sequential_bandwidth(dir.path(), 10, 0).expect_err("refused");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn bandwidth_is_megabytes_per_second() {
        let two_mb_in_half_a_second = Bandwidth {
            bytes: 1_000_000,
            syncs: 1,
            elapsed: Duration::from_millis(500),
        };
        assert!((two_mb_in_half_a_second.mb_per_sec() - 2.0).abs() < 1e-9);
        let instant = Bandwidth {
            elapsed: Duration::ZERO,
            ..two_mb_in_half_a_second
        };
        assert!(instant.mb_per_sec().abs() < f64::EPSILON);
    }
}
