//! The WAL's error type: every variant carries what a user needs to act (file, offset, sizes).

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in `balsa-wal`.
#[derive(Debug)]
pub enum Error {
    /// An operating-system call failed.
    Io {
        /// What the WAL was doing.
        op: &'static str,
        /// The file or directory it was doing it to.
        path: PathBuf,
        /// The byte offset in the file, for reads and writes at one.
        offset: Option<u64>,
        /// The OS error.
        source: io::Error,
    },
    /// Another process (or another `Wal` in this one) holds the data directory.
    Locked {
        /// The data directory.
        dir: PathBuf,
    },
    /// Damage that recovery must not paper over: bytes that were durable are wrong, or durable
    /// records contradict each other. The log is left untouched.
    Corrupt {
        /// The file holding the damage.
        path: PathBuf,
        /// Byte offset of the damaged record in that file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A sync failed earlier. What was written since the last good sync may or may not be on the
    /// disk, so the WAL refuses all further writes until it is reopened (and recovery decides).
    Poisoned {
        /// The failure that poisoned the WAL.
        reason: String,
    },
    /// An entry does not fit in one segment.
    EntryTooLarge {
        /// The entry's payload size.
        size: usize,
        /// The largest payload this WAL's segment size allows.
        max: usize,
    },
    /// An append or truncate that would break index continuity or term order.
    OutOfOrder {
        /// What is wrong, with the indexes and terms involved.
        reason: String,
    },
    /// `compact_to` or a truncate past the end asked for entries not covered by a saved snapshot.
    NotCovered {
        /// The index asked for.
        index: u64,
        /// The index of the newest saved snapshot (0 when there is none).
        snapshot_index: u64,
    },
    /// The options are not usable.
    InvalidOptions {
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            offset: None,
            source,
        }
    }

    pub(crate) fn io_at(
        op: &'static str,
        path: impl Into<PathBuf>,
        offset: u64,
        source: io::Error,
    ) -> Error {
        Error::Io {
            op,
            path: path.into(),
            offset: Some(offset),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io {
                op,
                path,
                offset: None,
                source,
            } => write!(f, "{op} {}: {source}", path.display()),
            Error::Io {
                op,
                path,
                offset: Some(offset),
                source,
            } => write!(f, "{op} {} at offset {offset}: {source}", path.display()),
            Error::Locked { dir } => write!(
                f,
                "data directory {} is in use by another process (its LOCK file is held)",
                dir.display()
            ),
            Error::Corrupt {
                path,
                offset,
                reason,
            } => {
                write!(
                    f,
                    "corrupt log: {} at offset {offset}: {reason}",
                    path.display()
                )
            }
            Error::Poisoned { reason } => write!(
                f,
                "the log refuses writes after a failed sync ({reason}); reopen it to recover"
            ),
            Error::EntryTooLarge { size, max } => write!(
                f,
                "entry of {size} bytes does not fit in a segment (at most {max} bytes)"
            ),
            Error::OutOfOrder { reason } => write!(f, "out of order: {reason}"),
            Error::NotCovered {
                index,
                snapshot_index,
            } => write!(
                f,
                "index {index} is not covered by a saved snapshot (newest snapshot: {snapshot_index})"
            ),
            Error::InvalidOptions { reason } => write!(f, "invalid options: {reason}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
