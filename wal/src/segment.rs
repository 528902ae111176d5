//! Segment files: their names, their 32-byte header, preparation and the write paths.
//!
//! A segment is a fixed-size file, zero-filled with real zeros when prepared (a sparse block would
//! cost a metadata update on its first write, on the commit path), renamed into place when the log
//! rolls onto it, and then written strictly forward. It is never truncated or resized while mapped.
//!
//! ```text
//! offset  size  field
//!      0     8  magic          b"BALSAWAL"
//!      8     4  version        u32 LE, 1
//!     12     4  header crc     CRC-32 of bytes 0..12 and 16..32; also the seed of the first record
//!     16     8  seq            u64 LE, the segment's sequence number (also in its file name)
//!     24     8  segment bytes  u64 LE, the file's size when it was prepared
//!     32     …  records        (see `record`)
//! ```
//!
//! Write paths (see ARCHITECTURE.md for the measurements that chose the default):
//! - [`WritePath::Pwrite`]: `pwrite` of the batch, then `fdatasync`. The map is used only to read.
//! - [`WritePath::Mmap`]: copy the batch into a shared writable map, then `msync` the dirty range.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapMut};

use crate::error::{Error, Result};

/// Bytes of the segment header.
pub const SEGMENT_HEADER: usize = 32;
const MAGIC: &[u8; 8] = b"BALSAWAL";
const VERSION: u32 = 1;
/// Name of the segment being prepared ahead of the roll.
pub const PREPARED_NAME: &str = "prepared.wal.tmp";

/// How records reach the file. Both are durable after [`SegmentWriter::sync`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WritePath {
    /// `pwrite` + `fdatasync`; the mapping is only read (at recovery).
    #[default]
    Pwrite,
    /// `memcpy` into a shared writable mapping + `msync` of the dirty range.
    Mmap,
}

/// The file name of segment `seq`.
pub fn file_name(seq: u64) -> String {
    format!("{seq:020}.wal")
}

/// The segment sequence number a file name stands for, if it names a segment.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".wal")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Encodes the header of segment `seq` of `segment_bytes` bytes; returns it with its crc.
pub fn encode_header(seq: u64, segment_bytes: u64) -> ([u8; SEGMENT_HEADER], u32) {
    let mut header = [0u8; SEGMENT_HEADER];
    header[0..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[16..24].copy_from_slice(&seq.to_le_bytes());
    header[24..32].copy_from_slice(&segment_bytes.to_le_bytes());
    let crc = header_crc(&header);
    header[12..16].copy_from_slice(&crc.to_le_bytes());
    (header, crc)
}

fn header_crc(header: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[0..12]);
    hasher.update(&header[16..SEGMENT_HEADER]);
    hasher.finalize()
}

/// What is wrong with a segment header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Unwritten, short or garbage: what an interrupted roll can leave.
    Torn(String),
    /// Well-formed (its crc holds) but not this segment's: a renamed or foreign file, never the
    /// result of a torn write.
    Foreign(String),
}

/// Checks the header of segment `seq` at the start of `bytes`. Returns the chain seed (the header
/// crc), or what is wrong with it.
pub fn check_header(seq: u64, bytes: &[u8]) -> std::result::Result<u32, HeaderError> {
    let Some(header) = bytes.get(..SEGMENT_HEADER) else {
        let reason = format!(
            "file of {} bytes is shorter than a segment header",
            bytes.len()
        );
        return Err(HeaderError::Torn(reason));
    };
    if header.iter().all(|&b| b == 0) {
        return Err(HeaderError::Torn("segment header never written".into()));
    }
    if &header[0..8] != MAGIC {
        return Err(HeaderError::Torn("bad magic".into()));
    }
    let stored = u32::from_le_bytes([header[12], header[13], header[14], header[15]]);
    if stored != header_crc(header) {
        return Err(HeaderError::Torn("segment header crc mismatch".into()));
    }
    let version = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    if version != VERSION {
        return Err(HeaderError::Foreign(format!(
            "unsupported segment version {version}"
        )));
    }
    let mut seq_bytes = [0u8; 8];
    seq_bytes.copy_from_slice(&header[16..24]);
    let stored_seq = u64::from_le_bytes(seq_bytes);
    if stored_seq != seq {
        let reason = format!("header says segment {stored_seq}, file name says {seq}");
        return Err(HeaderError::Foreign(reason));
    }
    Ok(stored)
}

/// The segment size a checked header declares.
pub fn declared_bytes(header: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&header[24..32]);
    u64::from_le_bytes(bytes)
}

/// Maps a whole file read-only, for recovery. An empty file maps to an empty slice.
#[allow(
    unsafe_code,
    reason = "reading segments through a map is the WAL's design"
)]
pub fn map_read(path: &Path) -> Result<Option<Mmap>> {
    let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io("stat", path, e))?
        .len();
    if len == 0 {
        return Ok(None);
    }
    // SAFETY: the data directory is locked by this process (see `dir::Lock`), so no other process
    // writes or truncates its files, and this process never truncates a mapped segment.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io("mmap", path, e))?;
    Ok(Some(map))
}

/// Writes `segment_bytes` real zeros to `file` in bounded steps, so preparation can be spread
/// over idle moments. Tracks how far it got.
pub struct Preparer {
    file: File,
    path: PathBuf,
    zeroed: u64,
    segment_bytes: u64,
}

impl Preparer {
    /// Starts preparing a segment at `path` (created or truncated).
    pub fn start(path: PathBuf, segment_bytes: u64) -> Result<Preparer> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| Error::io("create", &path, e))?;
        Ok(Preparer {
            file,
            path,
            zeroed: 0,
            segment_bytes,
        })
    }

    /// Zeroes up to `budget` more bytes. Returns true once the whole file is zeroed and synced.
    pub fn step(&mut self, budget: u64) -> Result<bool> {
        const CHUNK: usize = 1 << 20;
        static ZEROS: [u8; CHUNK] = [0; CHUNK];
        let target = self
            .segment_bytes
            .min(self.zeroed.saturating_add(budget.max(1)));
        while self.zeroed < target {
            let step = usize::try_from((target - self.zeroed).min(CHUNK as u64))
                .expect("a step is at most one chunk");
            self.file
                .write_all(&ZEROS[..step])
                .map_err(|e| Error::io("zero-fill", &self.path, e))?;
            self.zeroed += step as u64;
        }
        if self.zeroed < self.segment_bytes {
            return Ok(false);
        }
        self.file
            .sync_all()
            .map_err(|e| Error::io("fsync", &self.path, e))?;
        Ok(true)
    }

    /// True once [`step`](Self::step) has returned true.
    pub fn is_done(&self) -> bool {
        self.zeroed == self.segment_bytes
    }

    /// The finished file. Precondition: [`is_done`](Self::is_done).
    pub fn into_file(self) -> (File, PathBuf) {
        assert!(
            self.is_done(),
            "a segment is used only once fully zeroed and synced"
        );
        (self.file, self.path)
    }
}

/// The write side of one segment: a buffer of encoded records not yet handed to the OS, and the
/// file positions that say what is where.
///
/// Invariants: `synced <= written <= written + pending.len() <= capacity`; bytes before `synced`
/// are durable; bytes in `synced..written` are in the OS but not known durable.
pub struct SegmentWriter {
    /// Sequence number.
    pub seq: u64,
    /// Path of the file.
    pub path: PathBuf,
    file: File,
    map: Option<MmapMut>,
    /// File size.
    pub capacity: u64,
    /// Bytes handed to the OS.
    written: u64,
    /// Bytes known durable.
    synced: u64,
    /// Encoded records that follow `written`.
    pub pending: Vec<u8>,
}

impl SegmentWriter {
    /// Opens the writer on an existing, fully zeroed or recovered file whose first `end` bytes
    /// are the log (durable: recovery synced them) and the rest zeros.
    #[allow(
        unsafe_code,
        reason = "the mmap write path writes through a shared map"
    )]
    pub fn open(
        seq: u64,
        path: PathBuf,
        file: File,
        end: u64,
        write_path: WritePath,
    ) -> Result<SegmentWriter> {
        let capacity = file
            .metadata()
            .map_err(|e| Error::io("stat", &path, e))?
            .len();
        let map = match write_path {
            WritePath::Pwrite => None,
            WritePath::Mmap => {
                // SAFETY: the data directory is locked by this process, no other process writes
                // or truncates this file, and this process never truncates it while mapped.
                let map = unsafe { MmapMut::map_mut(&file) };
                Some(map.map_err(|e| Error::io("mmap", &path, e))?)
            }
        };
        Ok(SegmentWriter {
            seq,
            path,
            file,
            map,
            capacity,
            written: end,
            synced: end,
            pending: Vec::with_capacity(64 * 1024),
        })
    }

    /// The file offset the next encoded record will start at.
    pub fn end(&self) -> u64 {
        self.written + self.pending.len() as u64
    }

    /// Bytes still free after what is written and pending.
    pub fn free(&self) -> u64 {
        self.capacity - self.end()
    }

    /// The durable prefix of the segment.
    pub fn synced(&self) -> u64 {
        self.synced
    }

    /// Hands pending records to the OS (no durability).
    pub fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        debug_assert!(
            self.end() <= self.capacity,
            "records never run past the segment"
        );
        match &mut self.map {
            None => self
                .file
                .write_all_at(&self.pending, self.written)
                .map_err(|e| Error::io("pwrite", &self.path, e))?,
            Some(map) => {
                let start = usize::try_from(self.written).expect("segments are mapped whole");
                map[start..start + self.pending.len()].copy_from_slice(&self.pending);
            }
        }
        self.written += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Makes everything written so far durable: one `fdatasync` or one `msync` over the dirty range.
    pub fn sync(&mut self) -> Result<()> {
        self.flush()?;
        if self.synced == self.written {
            return Ok(());
        }
        match &self.map {
            None => self
                .file
                .sync_data()
                .map_err(|e| Error::io("fdatasync", &self.path, e))?,
            Some(map) => {
                let start = usize::try_from(self.synced).expect("segments are mapped whole");
                let len = usize::try_from(self.written - self.synced).expect("mapped whole");
                map.flush_range(start, len)
                    .map_err(|e| Error::io("msync", &self.path, e))?;
            }
        }
        self.synced = self.written;
        Ok(())
    }
}
