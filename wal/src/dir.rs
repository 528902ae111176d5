//! The data directory: its lock, its listing and directory fsync.
//!
//! Invariant: while a [`Lock`] lives, no other process (and no other `Wal` in this process) has
//! the directory open for writing. Everything else in the crate relies on it, the maps included.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::{segment, snapshot};

/// Name of the lock file inside the data directory.
pub const LOCK_NAME: &str = "LOCK";

/// An exclusive lock on a data directory, held until dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Creates `dir` if needed and takes its lock, or says who has it.
    pub fn acquire(dir: &Path) -> Result<Lock> {
        fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
        let path = dir.join(LOCK_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(Lock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked {
                dir: dir.to_path_buf(),
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io("lock", &path, e)),
        }
    }
}

/// Makes creations, renames and deletions in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// What a data directory holds, by file kind.
#[derive(Debug, Default)]
pub struct Listing {
    /// Segments by sequence number, ascending.
    pub segments: Vec<(u64, PathBuf)>,
    /// Finished snapshots, ascending by (index, term).
    pub snapshots: Vec<(snapshot::SnapshotMeta, PathBuf)>,
    /// Temporary files a crash left behind.
    pub temporaries: Vec<PathBuf>,
}

/// Lists `dir`. Files the WAL does not know are left alone.
pub fn list(dir: &Path) -> Result<Listing> {
    let mut listing = Listing::default();
    for entry in fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let path = entry.path();
        if let Some(seq) = segment::parse_file_name(&name) {
            listing.segments.push((seq, path));
        } else if let Some(meta) = snapshot::parse_file_name(&name) {
            listing.snapshots.push((meta, path));
        } else if snapshot::is_temp_name(&name) || name == segment::PREPARED_NAME {
            listing.temporaries.push(path);
        }
    }
    listing.segments.sort();
    listing.snapshots.sort();
    Ok(listing)
}
