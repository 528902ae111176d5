//! Snapshot files: `snap-<index>-<term>`, written whole or not at all.
//!
//! ```text
//! offset  size  field
//!      0     8  magic        b"BALSASNP"
//!      8     4  version      u32 LE, 1
//!     12     4  header crc   CRC-32 of bytes 0..12 and 16..48
//!     16     8  index        u64 LE, last log index the snapshot covers
//!     24     8  term         u64 LE, term of that entry
//!     32     8  data bytes   u64 LE
//!     40     4  data crc     CRC-32 of the data
//!     44     4  zero
//!     48     …  data
//! ```
//!
//! Saving: write `snap-<index>-<term>.tmp`, `fsync` it, rename it to its final name, `fsync` the
//! directory, then delete all but the newest `kept` snapshots. A crash at any step leaves either
//! the old newest snapshot or the new one as the newest *valid* file: a final name is only ever
//! given to a file whose bytes are already durable, and temp files are deleted at open.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::dir;
use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"BALSASNP";
const VERSION: u32 = 1;
/// Bytes of the snapshot file header.
pub const SNAPSHOT_HEADER: usize = 48;
const TMP_SUFFIX: &str = ".tmp";

/// What a snapshot covers: every log entry up to and including `index`, which had `term`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SnapshotMeta {
    /// Last log index the snapshot covers.
    pub index: u64,
    /// Term of the entry at `index`.
    pub term: u64,
}

/// The file name of a snapshot.
pub fn file_name(meta: SnapshotMeta) -> String {
    format!("snap-{:020}-{:020}", meta.index, meta.term)
}

/// The snapshot a file name stands for, if it names a finished snapshot.
pub fn parse_file_name(name: &str) -> Option<SnapshotMeta> {
    let rest = name.strip_prefix("snap-")?;
    let (index, term) = rest.split_once('-')?;
    let is_number = |s: &str| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit());
    if !is_number(index) || !is_number(term) {
        return None;
    }
    Some(SnapshotMeta {
        index: index.parse().ok()?,
        term: term.parse().ok()?,
    })
}

/// True for a snapshot's temporary file, which never survives an open.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with("snap-") && name.ends_with(TMP_SUFFIX)
}

fn header_crc(header: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[0..12]);
    hasher.update(&header[16..SNAPSHOT_HEADER]);
    hasher.finalize()
}

fn encode_header(meta: SnapshotMeta, data_len: u64, data_crc: u32) -> [u8; SNAPSHOT_HEADER] {
    let mut header = [0u8; SNAPSHOT_HEADER];
    header[0..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[16..24].copy_from_slice(&meta.index.to_le_bytes());
    header[24..32].copy_from_slice(&meta.term.to_le_bytes());
    header[32..40].copy_from_slice(&data_len.to_le_bytes());
    header[40..44].copy_from_slice(&data_crc.to_le_bytes());
    let crc = header_crc(&header);
    header[12..16].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Streams a snapshot into its temporary file;
/// [`Wal::finish_snapshot`](crate::Wal::finish_snapshot) publishes it.
pub struct SnapshotWriter {
    meta: SnapshotMeta,
    dir: PathBuf,
    tmp_path: PathBuf,
    file: File,
    data_len: u64,
    hasher: crc32fast::Hasher,
}

impl SnapshotWriter {
    /// Creates the temporary file for a snapshot of `meta` in `dir`.
    pub(crate) fn create(dir: &Path, meta: SnapshotMeta) -> Result<SnapshotWriter> {
        let tmp_path = dir.join(format!("{}{TMP_SUFFIX}", file_name(meta)));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp_path)
            .map_err(|e| Error::io("create", &tmp_path, e))?;
        // Placeholder header: all zeros never validates, so a half-written file is never taken.
        file.write_all(&[0; SNAPSHOT_HEADER])
            .map_err(|e| Error::io("write", &tmp_path, e))?;
        Ok(SnapshotWriter {
            meta,
            dir: dir.to_path_buf(),
            tmp_path,
            file,
            data_len: 0,
            hasher: crc32fast::Hasher::new(),
        })
    }

    /// Appends a piece of the snapshot's data.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.file
            .write_all(data)
            .map_err(|e| Error::io("write", &self.tmp_path, e))?;
        self.hasher.update(data);
        self.data_len += data.len() as u64;
        Ok(())
    }

    /// The snapshot being written.
    pub fn meta(&self) -> SnapshotMeta {
        self.meta
    }

    /// Makes the data written so far durable (the final sync at publishing is then short).
    pub fn sync(&mut self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io("fdatasync", &self.tmp_path, e))
    }

    /// Gives the snapshot up: removes its temporary file.
    pub fn abandon(self) -> Result<()> {
        fs::remove_file(&self.tmp_path).map_err(|e| Error::io("remove", &self.tmp_path, e))
    }

    /// Bytes of data written so far, and their CRC-32 (crc32fast, as a sender computes it over
    /// the whole snapshot), to check a received snapshot before it is published.
    pub fn written(&self) -> (u64, u32) {
        (self.data_len, self.hasher.clone().finalize())
    }

    /// Writes the header, syncs the file, and stops before the rename: the state a crash leaves
    /// between the two. Returns the temp and final paths.
    pub(crate) fn write_header_and_sync(self) -> Result<(PathBuf, PathBuf)> {
        let header = encode_header(self.meta, self.data_len, self.hasher.clone().finalize());
        self.file
            .write_all_at(&header, 0)
            .map_err(|e| Error::io("write", &self.tmp_path, e))?;
        self.file
            .sync_all()
            .map_err(|e| Error::io("fsync", &self.tmp_path, e))?;
        let final_path = self.dir.join(file_name(self.meta));
        Ok((self.tmp_path, final_path))
    }
}

/// Renames a synced temporary snapshot into place and makes the rename durable.
pub(crate) fn publish(dir_path: &Path, tmp_path: &Path, final_path: &Path) -> Result<()> {
    fs::rename(tmp_path, final_path).map_err(|e| Error::io("rename", final_path, e))?;
    dir::sync_dir(dir_path)
}

/// Checks the snapshot file at `path` without keeping its data; returns its metadata.
pub fn verify(path: &Path) -> Result<SnapshotMeta> {
    check(path, None)
}

/// Reads and checks the snapshot file at `path`; returns its metadata and data.
pub fn read(path: &Path) -> Result<(SnapshotMeta, Vec<u8>)> {
    let mut data = Vec::new();
    let meta = check(path, Some(&mut data))?;
    Ok((meta, data))
}

/// Checks header, length and data crc of a snapshot file, streaming the data into `keep` if given.
fn check(path: &Path, mut keep: Option<&mut Vec<u8>>) -> Result<SnapshotMeta> {
    let mut file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let file_len = file
        .metadata()
        .map_err(|e| Error::io("stat", path, e))?
        .len();
    let corrupt = |offset: u64, reason: String| Error::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    if file_len < SNAPSHOT_HEADER as u64 {
        return Err(corrupt(
            0,
            format!("snapshot file of {file_len} bytes has no header"),
        ));
    }
    let mut header = [0u8; SNAPSHOT_HEADER];
    file.read_exact(&mut header)
        .map_err(|e| Error::io("read", path, e))?;
    let field = |range: std::ops::Range<usize>| {
        let mut bytes = [0u8; 8];
        bytes[..range.len()].copy_from_slice(&header[range]);
        u64::from_le_bytes(bytes)
    };
    if &header[0..8] != MAGIC {
        return Err(corrupt(0, "bad snapshot magic".into()));
    }
    if field(12..16) != u64::from(header_crc(&header)) {
        return Err(corrupt(12, "snapshot header crc mismatch".into()));
    }
    if field(8..12) != u64::from(VERSION) {
        return Err(corrupt(
            8,
            format!("unsupported snapshot version {}", field(8..12)),
        ));
    }
    let meta = SnapshotMeta {
        index: field(16..24),
        term: field(24..32),
    };
    if let Some(named) = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(parse_file_name)
        && named != meta
    {
        return Err(corrupt(
            16,
            format!("header says {meta:?}, file name says {named:?}"),
        ));
    }
    let data_len = field(32..40);
    let held = file_len - SNAPSHOT_HEADER as u64;
    if held != data_len {
        return Err(corrupt(
            32,
            format!("header says {data_len} data bytes, file holds {held}"),
        ));
    }
    if let Some(keep) = keep.as_deref_mut() {
        // Bounded by the file's real size, checked just above.
        keep.reserve_exact(usize::try_from(data_len).unwrap_or(0));
    }
    let mut hasher = crc32fast::Hasher::new();
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = data_len;
    while left > 0 {
        let step = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
        file.read_exact(&mut chunk[..step])
            .map_err(|e| Error::io("read", path, e))?;
        hasher.update(&chunk[..step]);
        if let Some(keep) = keep.as_deref_mut() {
            keep.extend_from_slice(&chunk[..step]);
        }
        left -= step as u64;
    }
    if u64::from(hasher.finalize()) != field(40..44) {
        return Err(corrupt(
            SNAPSHOT_HEADER as u64,
            "snapshot data crc mismatch".into(),
        ));
    }
    Ok(meta)
}
