//! The physical floor of a durable append: `pwrite` at the next offset of a preallocated,
//! zero-filled file, then `fdatasync`. Anything a WAL does on top of this costs at least this much.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

use hdrhistogram::Histogram;

use crate::{Step, WARMUP, sample};

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
