//! Durable appends made by several threads at once, as the nodes of a cluster on one machine do
//! for every write: the raw `O_DIRECT | O_DSYNC` block write (next to the `pwrite` + `fdatasync`
//! floor of `floor`), and rounds in which every thread makes one append durable, timed until a
//! quorum of them finished.

use std::{
    fs::{File, OpenOptions},
    io,
    os::unix::fs::{FileExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{Barrier, mpsc},
    time::Instant,
};

use balsa_wal::segment::{BLOCK, DIRECT_FLAGS};
use hdrhistogram::Histogram;

use crate::{
    Step,
    floor::{FILE_BYTES, FILL, preallocate, verify},
    new_histogram,
};

/// Blocks of the aligned buffer: enough for an append of up to `BLOCK + 1` bytes at any offset.
const BUFFER_BLOCKS: usize = 2;

/// A 4096-aligned buffer of [`BUFFER_BLOCKS`] blocks, as `O_DIRECT` needs.
#[repr(C, align(4096))]
struct AlignedBlocks([u8; BLOCK * BUFFER_BLOCKS]);

/// A fresh preallocated file of [`FILE_BYTES`] taking appends of a fixed size, each made durable
/// the way [`balsa_wal::WritePath::Direct`] does: one `O_DIRECT | O_DSYNC` write of the whole
/// blocks that hold it (offset rounded down to the block, old bytes of the first block kept), from
/// an aligned buffer, no `fdatasync`.
pub struct DirectBlockFile {
    file: File,
    path: PathBuf,
    buffer: Box<AlignedBlocks>,
    append_len: usize,
    offset: u64,
}

impl DirectBlockFile {
    /// Creates and preallocates `path` (buffered zeros, synced), then reopens it
    /// `O_DIRECT | O_DSYNC`, for appends of `append_len` bytes (at most one block).
    ///
    /// # Errors
    /// Any error from [`preallocate`] or the reopen; `Unsupported` where the WAL does not use
    /// `O_DIRECT`.
    pub fn create(path: &Path, append_len: usize) -> io::Result<DirectBlockFile> {
        assert!(
            (1..=BLOCK).contains(&append_len),
            "appends of 1..=4096 bytes"
        );
        let flags = DIRECT_FLAGS
            .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "O_DIRECT not used here"))?;
        drop(preallocate(path, FILE_BYTES)?);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(flags)
            .open(path)?;
        Ok(DirectBlockFile {
            file,
            path: path.to_path_buf(),
            buffer: Box::new(AlignedBlocks([0; BLOCK * BUFFER_BLOCKS])),
            append_len,
            offset: 0,
        })
    }

    /// Checks that the appends landed where intended and removes the file.
    ///
    /// # Errors
    /// Any I/O error, or `InvalidData` if the read-back does not match what was written.
    pub fn finish(self) -> io::Result<()> {
        let buffered = File::open(&self.path)?;
        verify(&buffered, self.offset)?;
        std::fs::remove_file(&self.path)
    }
}

impl Step for DirectBlockFile {
    /// One append at the next offset: the blocks holding it, written whole and durable.
    fn step(&mut self) -> io::Result<()> {
        let block = BLOCK as u64;
        let start = self.offset - self.offset % block;
        let kept = usize::try_from(self.offset - start).expect("less than a block");
        let end = kept + self.append_len;
        let len = end.div_ceil(BLOCK) * BLOCK;
        let bytes = &mut self.buffer.0;
        bytes[kept..end].fill(FILL);
        bytes[end..len].fill(0);
        let written = self.file.write_at(&bytes[..len], start)?;
        if written != len {
            return Err(io::Error::other(format!("short O_DIRECT write: {written}")));
        }
        // The block holding the new end moves to the front (it already is, unless the append
        // crossed into the next block).
        if !end.is_multiple_of(BLOCK) && end >= BLOCK {
            bytes.copy_within(BLOCK..2 * BLOCK, 0);
        }
        self.offset += self.append_len as u64;
        Ok(())
    }
}

/// Runs rounds in which `groups[g][k]` is node `k`'s step of case `g`: per round and per case
/// (in an order that shifts by one every round), every node's thread starts its step at the same
/// moment (a barrier), and the round is timed until `quorum` of them finished: what a commit waits
/// for when every node of a cluster on one machine syncs the same write. [`crate::WARMUP`] rounds
/// untimed, then `iterations`. Returns one histogram per case, nanoseconds per round.
///
/// Every case runs in the same rounds, so a shared disk's slow phases hit them all alike.
///
/// # Errors
/// The first error a step returned (every round still runs, so no thread is left waiting).
///
/// # Panics
/// If the groups do not all have the same number of nodes, or `quorum` is not in `1..=nodes`.
pub fn measure_quorum_rounds(
    groups: Vec<Vec<&mut (dyn Step + Send)>>,
    quorum: usize,
    iterations: usize,
) -> io::Result<Vec<Histogram<u64>>> {
    let cases = groups.len();
    let nodes = groups.first().map_or(0, Vec::len);
    assert!(
        groups.iter().all(|group| group.len() == nodes),
        "every case has a step per node"
    );
    assert!(
        (1..=nodes).contains(&quorum),
        "a quorum is 1..=nodes, not {quorum} of {nodes}"
    );
    // Node k's steps, one per case.
    let mut columns: Vec<Vec<&mut (dyn Step + Send)>> = (0..nodes).map(|_| Vec::new()).collect();
    for group in groups {
        for (k, step) in group.into_iter().enumerate() {
            columns[k].push(step);
        }
    }
    let rounds = crate::WARMUP + iterations;
    let order = |round: usize, i: usize| (round + i) % cases;
    let start_line = Barrier::new(nodes + 1);
    let (finished, finishes) = mpsc::channel::<io::Result<Instant>>();
    std::thread::scope(|scope| {
        for mut steps in columns {
            let (start_line, finished) = (&start_line, finished.clone());
            scope.spawn(move || {
                for round in 0..rounds {
                    for i in 0..cases {
                        start_line.wait();
                        let result = steps[order(round, i)].step().map(|()| Instant::now());
                        if finished.send(result).is_err() {
                            return;
                        }
                    }
                }
            });
        }
        drop(finished);
        let mut hists = vec![new_histogram(); cases];
        let mut outcome = Ok(());
        for round in 0..rounds {
            for i in 0..cases {
                start_line.wait();
                let started = Instant::now();
                let mut done = Vec::with_capacity(nodes);
                for _ in 0..nodes {
                    match finishes.recv() {
                        Ok(Ok(at)) => done.push(at),
                        Ok(Err(error)) => outcome = outcome.and(Err(error)),
                        Err(_) => return Err(io::Error::other("a node thread stopped")),
                    }
                }
                done.sort_unstable();
                if round >= crate::WARMUP && done.len() >= quorum {
                    let ns = done[quorum - 1].duration_since(started).as_nanos();
                    let hist = &mut hists[order(round, i)];
                    hist.saturating_record(u64::try_from(ns).unwrap_or(u64::MAX));
                }
            }
        }
        outcome.map(|()| hists)
    })
}
