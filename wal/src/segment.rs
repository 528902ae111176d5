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
//! Write paths (docs/performance.md has the measurements that chose the default):
//! - [`WritePath::Pwrite`]: `pwrite` of the batch, then `fdatasync`. The map is used only to read.
//! - [`WritePath::Mmap`]: copy the batch into a shared writable map, then `msync` the dirty range.
//! - [`WritePath::Direct`]: the segment is opened `O_DIRECT | O_DSYNC`; each flush writes whole
//!   4 KiB blocks, from the start of the block holding the end of the log through the end of the
//!   batch, from a 4096-aligned buffer, and returns durable. The writer keeps the partial last
//!   block in memory and writes it again, old bytes unchanged, with the next batch: the same
//!   block the kernel's writeback writes for `Pwrite` (ARCHITECTURE.md says why that is safe).
//!   Where the file system or the platform refuses `O_DIRECT`, the writer falls back to `Pwrite`
//!   and says why ([`SegmentWriter::direct_refused`]).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
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

/// How records reach the file. All are durable after [`SegmentWriter::sync`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WritePath {
    /// `pwrite` + `fdatasync`; the mapping is only read (at recovery).
    #[default]
    Pwrite,
    /// `memcpy` into a shared writable mapping + `msync` of the dirty range.
    Mmap,
    /// Whole 4 KiB blocks written with `O_DIRECT | O_DSYNC` from an aligned buffer: every write
    /// returns durable, with no `fdatasync`. Falls back to [`WritePath::Pwrite`] where `O_DIRECT`
    /// is refused (a file system without it, such as an older tmpfs, or a platform other than
    /// Linux on x86-64 or AArch64) or the segment size is not a multiple of [`BLOCK`].
    Direct,
}

/// Bytes of the unit [`WritePath::Direct`] writes in, aligns its buffer to and its offsets on.
pub const BLOCK: usize = 4096;

/// `O_DIRECT | O_DSYNC` for `OpenOptionsExt::custom_flags`, on the targets whose values are
/// known here (std does not export them and the crate takes no `libc` dependency). `O_DSYNC`
/// is `0o10000` on both; `O_DIRECT` differs by architecture (`asm-generic/fcntl.h` against
/// `arch/arm64/include/uapi/asm/fcntl.h`). `None` where [`WritePath::Direct`] is not used.
/// Public so that benchmarks measure the same flags.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub const DIRECT_FLAGS: Option<i32> = Some(0o40000 | 0o10000);
#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
pub const DIRECT_FLAGS: Option<i32> = Some(0o200000 | 0o10000);
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
pub const DIRECT_FLAGS: Option<i32> = None;

/// One 4096-aligned block: the unit of the [`WritePath::Direct`] buffer.
#[derive(Clone, Copy)]
#[repr(C, align(4096))]
struct Block([u8; BLOCK]);

const _: () = assert!(size_of::<Block>() == BLOCK && align_of::<Block>() == BLOCK);

const ZERO_BLOCK: Block = Block([0; BLOCK]);

/// The bytes of `blocks`, back to back, writable.
#[allow(
    unsafe_code,
    reason = "O_DIRECT needs one aligned buffer of many blocks, seen as bytes"
)]
fn block_bytes_mut(blocks: &mut [Block]) -> &mut [u8] {
    // SAFETY: `Block` is `repr(C)` around `[u8; BLOCK]` and exactly `BLOCK` bytes (asserted
    // above), so a slice of blocks is `len * BLOCK` initialised bytes without padding, and any
    // byte written through the result leaves a valid `Block`; `u8` needs no alignment; the
    // result holds the only (mutable) borrow of `blocks` while it lives.
    unsafe { std::slice::from_raw_parts_mut(blocks.as_mut_ptr().cast::<u8>(), size_of_val(blocks)) }
}

/// The state of a [`WritePath::Direct`] writer: its aligned buffer.
struct DirectTail {
    /// From the block holding the end of the log on: its first `written % BLOCK` bytes are the
    /// log's bytes there (the partial tail block, already on the disk); everything after them is
    /// zero when a write is made. Never empty.
    blocks: Vec<Block>,
}

/// Why a [`WritePath::Direct`] writer was refused, or the error that is not a refusal.
enum DirectOpen {
    Refused(String),
    Failed(Error),
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
/// are durable; bytes in `synced..written` are in the OS but not known durable. With
/// [`WritePath::Direct`] every write returns durable, so `synced == written` between calls.
pub struct SegmentWriter {
    /// Sequence number.
    pub seq: u64,
    /// Path of the file.
    pub path: PathBuf,
    /// Opened `O_DIRECT | O_DSYNC` when `direct` is set.
    file: File,
    map: Option<MmapMut>,
    direct: Option<DirectTail>,
    /// Why [`WritePath::Direct`] was asked for and [`WritePath::Pwrite`] is used instead.
    direct_refused: Option<String>,
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
    /// are the log (durable: recovery synced them) and the rest zeros. With
    /// [`WritePath::Direct`] it reopens the file `O_DIRECT | O_DSYNC` and reads the block
    /// holding `end` back (which also proves the file system takes aligned direct I/O).
    pub fn open(
        seq: u64,
        path: PathBuf,
        file: File,
        end: u64,
        write_path: WritePath,
    ) -> Result<SegmentWriter> {
        SegmentWriter::open_with(seq, path, file, end, write_path, true)
    }

    /// Opens the writer on a segment just rolled onto: prepared (zero-filled and synced) and
    /// empty. Unlike [`open`](Self::open) it reads nothing back, since the first block is known
    /// to be zeros: a roll happens on the commit path.
    pub fn open_rolled(
        seq: u64,
        path: PathBuf,
        file: File,
        write_path: WritePath,
    ) -> Result<SegmentWriter> {
        SegmentWriter::open_with(seq, path, file, 0, write_path, false)
    }

    #[allow(
        unsafe_code,
        reason = "the mmap write path writes through a shared map"
    )]
    fn open_with(
        seq: u64,
        path: PathBuf,
        file: File,
        end: u64,
        write_path: WritePath,
        read_tail: bool,
    ) -> Result<SegmentWriter> {
        let capacity = file
            .metadata()
            .map_err(|e| Error::io("stat", &path, e))?
            .len();
        assert!(end <= capacity, "the log ends inside its segment");
        let mut writer = SegmentWriter {
            seq,
            path,
            file,
            map: None,
            direct: None,
            direct_refused: None,
            capacity,
            written: end,
            synced: end,
            pending: Vec::with_capacity(64 * 1024),
        };
        match write_path {
            WritePath::Pwrite => {}
            WritePath::Mmap => {
                // SAFETY: the data directory is locked by this process, no other process writes
                // or truncates this file, and this process never truncates it while mapped.
                let map = unsafe { MmapMut::map_mut(&writer.file) };
                writer.map = Some(map.map_err(|e| Error::io("mmap", &writer.path, e))?);
            }
            WritePath::Direct => match open_direct(&writer.path, capacity, end, read_tail) {
                Ok((file, tail)) => {
                    writer.file = file;
                    writer.direct = Some(tail);
                }
                Err(DirectOpen::Refused(reason)) => writer.direct_refused = Some(reason),
                Err(DirectOpen::Failed(error)) => return Err(error),
            },
        }
        Ok(writer)
    }

    /// The write path in effect: the one asked for, or [`WritePath::Pwrite`] when
    /// [`WritePath::Direct`] was refused.
    pub fn write_path(&self) -> WritePath {
        match (&self.map, &self.direct) {
            (Some(_), _) => WritePath::Mmap,
            (None, Some(_)) => WritePath::Direct,
            (None, None) => WritePath::Pwrite,
        }
    }

    /// Why [`WritePath::Direct`] was asked for but [`WritePath::Pwrite`] is in effect.
    pub fn direct_refused(&self) -> Option<&str> {
        self.direct_refused.as_deref()
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

    /// Hands pending records to the OS (no durability), or with [`WritePath::Direct`] writes
    /// them to the disk (durable when it returns).
    pub fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        debug_assert!(
            self.end() <= self.capacity,
            "records never run past the segment"
        );
        if let Some(tail) = &mut self.direct {
            write_direct(
                &self.file,
                &self.path,
                tail,
                self.written,
                &self.pending,
                self.capacity,
            )?;
            self.written += self.pending.len() as u64;
            self.synced = self.written;
            self.pending.clear();
            return Ok(());
        }
        match &mut self.map {
            None => self
                .file
                .write_all_at(&self.pending, self.written)
                .map_err(|e| Error::io_at("pwrite", &self.path, self.written, e))?,
            Some(map) => {
                let start = usize::try_from(self.written).expect("segments are mapped whole");
                map[start..start + self.pending.len()].copy_from_slice(&self.pending);
            }
        }
        self.written += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Makes everything written so far durable: one `fdatasync` or one `msync` over the dirty
    /// range; with [`WritePath::Direct`], the flush's own write.
    pub fn sync(&mut self) -> Result<()> {
        self.flush()?;
        if self.synced == self.written {
            return Ok(());
        }
        debug_assert!(self.direct.is_none(), "direct writes return durable");
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

/// True for the errors by which a file system says it does not do (aligned) direct I/O.
fn refuses_direct_io(error: &io::Error) -> bool {
    // EINVAL, the same number on every Linux architecture.
    const EINVAL: i32 = 22;
    error.raw_os_error() == Some(EINVAL)
}

/// Opens `path` `O_DIRECT | O_DSYNC` for a segment of `capacity` bytes whose log ends at `end`,
/// and, if `read_tail`, reads the block holding `end` into the buffer (keeping only the log's
/// bytes of it); otherwise that block must be zeros.
fn open_direct(
    path: &Path,
    capacity: u64,
    end: u64,
    read_tail: bool,
) -> std::result::Result<(File, DirectTail), DirectOpen> {
    use std::os::unix::fs::OpenOptionsExt;

    let Some(flags) = DIRECT_FLAGS else {
        let reason = "O_DIRECT is only used on Linux on x86-64 and AArch64".to_owned();
        return Err(DirectOpen::Refused(reason));
    };
    if !capacity.is_multiple_of(BLOCK as u64) {
        let reason = format!("segment size {capacity} is not a multiple of {BLOCK}");
        return Err(DirectOpen::Refused(reason));
    }
    let file = match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(flags)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if refuses_direct_io(&e) => {
            let reason = format!("the file system refuses O_DIRECT ({e})");
            return Err(DirectOpen::Refused(reason));
        }
        Err(e) => return Err(DirectOpen::Failed(Error::io("open O_DIRECT", path, e))),
    };
    let mut tail = DirectTail {
        blocks: vec![ZERO_BLOCK],
    };
    let tail_start = end - end % BLOCK as u64;
    if read_tail && tail_start < capacity {
        let block = block_bytes_mut(&mut tail.blocks[..1]);
        match file.read_exact_at(block, tail_start) {
            Ok(()) => {}
            Err(e) if refuses_direct_io(&e) => {
                let reason = format!("the file system refuses aligned O_DIRECT reads ({e})");
                return Err(DirectOpen::Refused(reason));
            }
            Err(e) => {
                let error = Error::io_at("read tail block", path, tail_start, e);
                return Err(DirectOpen::Failed(error));
            }
        }
        // Past the end of the log the segment is zeros (prepared so, or zeroed by recovery);
        // the buffer says so whatever the disk held.
        let kept = usize::try_from(end - tail_start).expect("less than a block");
        block[kept..].fill(0);
    }
    Ok((file, tail))
}

/// Writes `pending`, the records that follow `written`, with one `O_DIRECT | O_DSYNC` write of
/// whole blocks starting at the block holding `written` (whose first bytes, the log's, come from
/// `tail`). Leaves in `tail` the block holding the new end.
fn write_direct(
    file: &File,
    path: &Path,
    tail: &mut DirectTail,
    written: u64,
    pending: &[u8],
    capacity: u64,
) -> Result<()> {
    let block_len = BLOCK as u64;
    let tail_start = written - written % block_len;
    let kept = usize::try_from(written - tail_start).expect("less than a block");
    let total = kept + pending.len();
    let count = total.div_ceil(BLOCK);
    if tail.blocks.len() < count {
        tail.blocks.resize(count, ZERO_BLOCK);
    }
    let bytes = block_bytes_mut(&mut tail.blocks[..count]);
    bytes[kept..total].copy_from_slice(pending);
    bytes[total..].fill(0);
    let bytes = &bytes[..];
    assert!(
        tail_start + bytes.len() as u64 <= capacity,
        "direct writes stay inside the segment: its size is a multiple of the block"
    );
    assert!(
        bytes.as_ptr().addr().is_multiple_of(BLOCK) && bytes.len().is_multiple_of(BLOCK),
        "direct writes are whole aligned blocks"
    );
    // One call: a short direct write (possible only on a full disk, not in a preallocated file)
    // is an error, never continued from an unaligned offset.
    let done = file
        .write_at(bytes, tail_start)
        .map_err(|e| Error::io_at("O_DIRECT|O_DSYNC write", path, tail_start, e))?;
    if done != bytes.len() {
        let short = io::Error::new(
            io::ErrorKind::WriteZero,
            format!("wrote {done} of {} bytes", bytes.len()),
        );
        return Err(Error::io_at(
            "O_DIRECT|O_DSYNC write",
            path,
            tail_start,
            short,
        ));
    }
    // The block holding the new end becomes the head of the buffer (unless it is there already);
    // when the end is block-aligned, that block holds none of the log yet and is rewritten whole.
    let last = total / BLOCK;
    if !total.is_multiple_of(BLOCK) && last > 0 {
        tail.blocks[0] = tail.blocks[last];
    }
    Ok(())
}
