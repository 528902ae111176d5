//! `balsa-wal`: the write-ahead log every Balsa node stands on.
//!
//! It stores log entries `(index, term, bytes)`, the hard state `(term, vote, commit)` and
//! snapshots, and gives them back after a crash. It knows nothing of Raft beyond two rules it
//! enforces: entry indexes are contiguous and terms never go down.
//!
//! ```no_run
//! use balsa_wal::{Entry, HardState, Options, Wal};
//!
//! # fn main() -> Result<(), balsa_wal::Error> {
//! let (mut wal, recovered) = Wal::open("data/wal", Options::default())?;
//! let next = recovered.entries.last().map_or(1, |e| e.index + 1);
//! wal.set_hard_state(HardState { term: 1, vote: 1, commit: 0 })?;
//! wal.append(&[Entry { index: next, term: 1, data: b"hello".to_vec() }])?;
//! wal.sync()?; // one fdatasync for everything since the last sync: group commit
//! wal.close()?;
//! # Ok(()) }
//! ```
//!
//! # The promises
//!
//! - **Nothing synced is lost.** After [`Wal::sync`] returns, what was appended before it comes
//!   back from [`Wal::open`], whatever happens next short of damage to the disk.
//! - **Nothing cut comes back.** A truncated entry never reappears, across any number of restarts.
//! - **Damage is never hidden.** A torn tail (writes that were never synced) is cut; damage to
//!   data that was synced makes `open` fail with the file and offset. See `recovery` for the
//!   decision table.
//! - **A failed sync poisons the log.** Every later call fails with [`Error::Poisoned`] until it
//!   is reopened: no retry-and-carry-on over pages the kernel may have dropped.
//! - **One process at a time.** The directory is locked; a second `open` gets [`Error::Locked`].
//!
//! # On-disk format
//!
//! A data directory holds:
//!
//! | file | what |
//! |---|---|
//! | `LOCK` | empty; locked (`flock`) while a `Wal` is open |
//! | `NNNNNNNNNNNNNNNNNNNN.wal` | segment number N (20 digits), a fixed-size file |
//! | `prepared.wal.tmp` | the next segment, being zero-filled ahead of the roll |
//! | `snap-IIIIIIIIIIIIIIIIIIII-TTTTTTTTTTTTTTTTTTTT` | snapshot at index I, term T (20 digits each) |
//! | `snap-….tmp` | a snapshot being written |
//!
//! All integers are little-endian. CRCs are CRC-32 (IEEE polynomial, as `crc32fast` computes it).
//!
//! **Segment** (size fixed when prepared, default 64 MiB, zero-filled with real zeros):
//!
//! ```text
//! offset  size  field
//!      0     8  magic          b"BALSAWAL"
//!      8     4  version        1
//!     12     4  header crc     CRC-32 of bytes 0..12 and 16..32
//!     16     8  seq            the segment's number, as in its file name
//!     24     8  segment bytes  the file's size when prepared
//!     32     …  records, back to back, then zeros
//! ```
//!
//! **Record**:
//!
//! ```text
//! offset  size  field
//!      0     4  len      payload bytes
//!      4     4  crc      CRC-32 seeded with the previous record's crc (the segment's header crc
//!                        for its first record), over bytes 0..4 and 8..25+len
//!      8     1  kind
//!      9     8  index
//!     17     8  term
//!     25   len  payload
//! ```
//!
//! | kind | name | index | term | payload |
//! |---|---|---|---|---|
//! | 1 | entry | entry index | entry term | the entry's bytes |
//! | 2 | hard state | commit index | current term | vote, u64 (0: none) |
//! | 3 | truncate-from | first index removed; the next entry has it | 0 | none |
//! | 4 | sync mark | offset O | segment S | u32 CRC-32 of bytes 0..4 and 8..25 seeded with the crc of `S`'s seq (see `record::mark_seed`) |
//! | 5 | seal | index of the next entry | seq of the next segment | none |
//!
//! A sync mark says: everything in the log before offset O of segment S was durable when this
//! record was written. One starts the first batch after every sync. Every segment's first record
//! is the hard state current when it was started, so deleting older segments never loses it. A
//! segment ends with a seal, or, for the last one, with zeros.
//!
//! **Snapshot file**: a 48-byte header (magic `b"BALSASNP"`, version, header crc, index, term,
//! data length, data crc) and the data; see `snapshot`.
//!
//! # Write path
//!
//! Records are encoded into a per-segment buffer as they are appended; [`Wal::sync`] hands the
//! buffer to the kernel with one `pwrite` and makes it durable with one `fdatasync`. Segments
//! are read back through `mmap` at recovery. Writing through a shared map and `msync` is
//! available as [`WritePath::Mmap`]; it measured 1.9–3.4× slower here (docs/performance.md).
//!
//! [`WritePath::Direct`] opens the active segment `O_DIRECT | O_DSYNC` and writes whole 4 KiB
//! blocks from an aligned buffer: one write per sync that returns durable, no `fdatasync`. The
//! partial block at the end of the log is kept in memory and written again, its durable bytes
//! unchanged, with the next batch; the rest of the last block is zeros, which recovery reads as
//! the end of the log. The bytes on disk are the same as with `Pwrite`, so a log written with one
//! path is opened with any other. Where `O_DIRECT` is refused (a file system without it, a
//! platform other than Linux on x86-64 or AArch64, a segment size that is not a multiple of
//! 4 KiB), the log writes with `Pwrite`, logs a warning, and [`Wal::write_path`] says so.

mod dir;
mod error;
pub mod record;
pub mod recovery;
pub mod segment;
pub mod snapshot;
mod wal;

pub use dir::LOCK_NAME;
pub use error::{Error, Result};
pub use recovery::Tail;
pub use segment::WritePath;
pub use snapshot::{SnapshotMeta, SnapshotWriter};
pub use wal::{Options, Recovered, SEGMENT_BYTES, Stats, Wal, max_entry_bytes};

/// A log entry: its position, the term it was created in, and the caller's bytes.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Entry {
    /// Position in the log, from 1.
    pub index: u64,
    /// Term of the leader that created it.
    pub term: u64,
    /// The caller's bytes.
    pub data: Vec<u8>,
}

/// What must survive a restart besides the log: the current term, the vote cast in it (0 for
/// none) and the commit index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HardState {
    /// Current term.
    pub term: u64,
    /// Node voted for in `term`, 0 for none.
    pub vote: u64,
    /// Highest index known committed.
    pub commit: u64,
}
