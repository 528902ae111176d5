//! The data directory as a start finds it, and putting it back so when the start fails.
//!
//! [`Node::start`](super::Node::start) surveys the data directory before anything touches it
//! ([`Found::survey`]), binds its socket, and only then opens the WAL (which creates the
//! directory, its `LOCK` and a first segment filled with zeros), records its identity and
//! boot id, and starts its threads. When one of those steps fails (a full disk, a directory it
//! may not write, a join no member answered, a damaged file), [`Found::restore`] puts the
//! directory back as it was, so a retry with other settings starts from what the operator had,
//! not from the files of a node that never ran.
//!
//! Rules:
//! - A path that exists and is not a directory is refused before anything is written
//!   ([`NodeConfigError::DataDirNotADirectory`]), and so is a directory another process has
//!   locked ([`Error::DataDirInUse`]): its lock is probed, not kept.
//! - Only a directory that held no node's state is put back: one that did not exist is
//!   removed again; one that existed without a log segment or an `IDENTITY` (new, or a mount
//!   point holding `lost+found`) loses the entries the start made and keeps the rest. A
//!   directory with state is never touched here: what the WAL's recovery did to it is
//!   recovery's to decide.
//! - The restore runs under the directory's lock, taken as the WAL takes it (`flock` on
//!   `LOCK`), once the failed start has released it: if another process holds it, that process
//!   started on the directory meanwhile and nothing is removed. `LOCK` goes last, so no process
//!   can lock the directory while entries are being removed.
//! - The survey reads at most [`MAX_SURVEYED`] names: a directory with more is treated as
//!   one with state.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

use super::error::{Error, NodeConfigError, StartError};
use super::identity::IDENTITY_FILE;

/// The most names the survey reads; beyond it the directory counts as one with state.
pub const MAX_SURVEYED: usize = 4096;

/// What the data directory was before the start, as far as putting it back needs.
#[derive(Debug)]
pub struct Found {
    dir: PathBuf,
    before: Before,
}

#[derive(Debug, PartialEq, Eq)]
enum Before {
    /// Nothing was at the path.
    Absent,
    /// A directory without a node's state, holding these names.
    Stateless(BTreeSet<OsString>),
    /// A directory with a node's state (or too many names to tell): never restored.
    WithState,
}

impl Found {
    /// Looks at `dir` before the start touches it.
    ///
    /// # Errors
    /// [`NodeConfigError::DataDirNotADirectory`] when something other than a directory is
    /// there; [`Error::DataDirInUse`] when another process holds its lock; [`Error::Start`]
    /// ([`StartError::Io`]) when it cannot be read.
    pub fn survey(dir: &Path) -> Result<Found, Error> {
        let unreadable = |error: io::Error| Error::Start(StartError::io("reading", dir)(error));
        let before = match fs::metadata(dir) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => Before::Absent,
            Err(error) => return Err(unreadable(error)),
            Ok(metadata) if !metadata.is_dir() => {
                return Err(Error::Config(NodeConfigError::DataDirNotADirectory {
                    dir: dir.to_path_buf(),
                }));
            }
            Ok(_) => {
                refuse_if_locked(dir)?;
                let mut names = BTreeSet::new();
                let mut with_state = false;
                for entry in fs::read_dir(dir).map_err(unreadable)? {
                    let name = entry.map_err(unreadable)?.file_name();
                    if names.len() == MAX_SURVEYED || holds_state(&name) {
                        with_state = true;
                        break;
                    }
                    names.insert(name);
                }
                if with_state {
                    Before::WithState
                } else {
                    Before::Stateless(names)
                }
            }
        };
        Ok(Found {
            dir: dir.to_path_buf(),
            before,
        })
    }

    /// Puts the directory back as the survey found it, if it held no state (see the module
    /// documentation). Call it once everything the failed start opened there is closed (the
    /// WAL dropped). What cannot be removed is logged, and left.
    pub fn restore(&self) {
        let kept = match &self.before {
            Before::WithState => return,
            Before::Absent => None,
            Before::Stateless(names) => Some(names),
        };
        if let Err(error) = self.restore_entries(kept) {
            log::warn!(
                "the failed start could not put {} back as it was: {error}",
                self.dir.display()
            );
        }
    }

    fn restore_entries(&self, kept: Option<&BTreeSet<OsString>>) -> io::Result<()> {
        let lock_path = self.dir.join(balsa_wal::LOCK_NAME);
        let made_lock = kept.is_none_or(|names| !names.contains(OsStr::new(balsa_wal::LOCK_NAME)));
        // Held until the end of this function, so that no other start takes the directory
        // while its entries go.
        let lock = match File::open(&lock_path) {
            Ok(file) => match file.try_lock() {
                Ok(()) => Some(file),
                // Another process started on the directory meanwhile: it is theirs now.
                Err(TryLockError::WouldBlock) => return Ok(()),
                Err(TryLockError::Error(error)) => return Err(error),
            },
            // The start failed before the WAL made it (creating the directory, say).
            Err(error) if error.kind() == io::ErrorKind::NotFound => None,
            Err(error) => return Err(error),
        };
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let made = kept.is_none_or(|names| !names.contains(&name));
            if made && name != balsa_wal::LOCK_NAME {
                fs::remove_file(entry.path())?;
            }
        }
        if made_lock && lock.is_some() {
            fs::remove_file(&lock_path)?;
        }
        drop(lock);
        if kept.is_none() {
            fs::remove_dir(&self.dir)?;
        }
        // Not at info: a refusal to start stays the one line the operator reads.
        log::debug!(
            "the failed start left {} as it found it",
            self.dir.display()
        );
        Ok(())
    }
}

/// [`Error::DataDirInUse`] when another process holds the directory's lock: said before the
/// address is bound (a second node on the same directory is most likely on the same address
/// too, and the directory in use is what the operator must hear). The lock is only probed,
/// and released at once; the WAL takes it for good, and says the same if it lost a race.
fn refuse_if_locked(dir: &Path) -> Result<(), Error> {
    let Ok(file) = File::open(dir.join(balsa_wal::LOCK_NAME)) else {
        // No lock file, or one that cannot be opened: the WAL's open says what is wrong.
        return Ok(());
    };
    match file.try_lock() {
        Err(TryLockError::WouldBlock) => Err(Error::DataDirInUse {
            dir: dir.to_path_buf(),
        }),
        // Released as `file` closes.
        Ok(()) | Err(TryLockError::Error(_)) => Ok(()),
    }
}

/// Whether a file of this name is part of a node's state: a log segment or the identity.
fn holds_state(name: &OsString) -> bool {
    name.to_str().is_some_and(|name| {
        name == IDENTITY_FILE || balsa_wal::segment::parse_file_name(name).is_some()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_where_the_data_directory_should_be_is_refused() {
        let dir = tempfile::tempdir().expect("a directory");
        let file = dir.path().join("data");
        fs::write(&file, b"not a directory").expect("written");
        let refused = Found::survey(&file).expect_err("a file");
        assert_eq!(
            refused,
            Error::Config(NodeConfigError::DataDirNotADirectory { dir: file.clone() })
        );
        assert!(
            refused.to_string().ends_with("is not a directory"),
            "{refused}"
        );
    }

    #[test]
    fn a_directory_another_process_holds_is_refused_before_anything_else() {
        let dir = tempfile::tempdir().expect("a directory");
        let lock = File::create(dir.path().join(balsa_wal::LOCK_NAME)).expect("made");
        lock.try_lock().expect("locked");
        assert_eq!(
            Found::survey(dir.path()).expect_err("in use"),
            Error::DataDirInUse {
                dir: dir.path().to_path_buf()
            }
        );
        drop(lock);
        assert!(Found::survey(dir.path()).is_ok(), "free again");
    }

    #[test]
    fn a_directory_the_start_made_is_removed_again() {
        let dir = tempfile::tempdir().expect("a directory");
        let data = dir.path().join("data");
        let found = Found::survey(&data).expect("surveyed");
        fs::create_dir(&data).expect("made");
        fs::write(data.join(balsa_wal::LOCK_NAME), b"").expect("written");
        fs::write(data.join("00000000000000000001.wal"), b"").expect("written");
        found.restore();
        assert!(!data.exists());
    }

    #[test]
    fn a_directory_without_state_loses_only_what_the_start_made() {
        let dir = tempfile::tempdir().expect("a directory");
        let data = dir.path().join("data");
        fs::create_dir_all(data.join("lost+found")).expect("made");
        fs::write(data.join("notes.txt"), b"mine").expect("written");
        let found = Found::survey(&data).expect("surveyed");
        fs::write(data.join(balsa_wal::LOCK_NAME), b"").expect("written");
        fs::write(data.join(IDENTITY_FILE), b"").expect("written");
        found.restore();
        let mut left: Vec<OsString> = fs::read_dir(&data)
            .expect("listed")
            .map(|entry| entry.expect("an entry").file_name())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [OsString::from("lost+found"), OsString::from("notes.txt")]
        );
    }

    #[test]
    fn a_directory_with_state_is_never_touched() {
        let dir = tempfile::tempdir().expect("a directory");
        fs::write(dir.path().join(IDENTITY_FILE), b"").expect("written");
        let found = Found::survey(dir.path()).expect("surveyed");
        fs::write(dir.path().join("BOOT"), b"1\n").expect("written");
        found.restore();
        assert!(dir.path().join("BOOT").exists());
    }

    #[test]
    fn a_directory_another_process_has_locked_is_left_to_it() {
        let dir = tempfile::tempdir().expect("a directory");
        let data = dir.path().join("data");
        let found = Found::survey(&data).expect("surveyed");
        fs::create_dir(&data).expect("made");
        let lock = File::create(data.join(balsa_wal::LOCK_NAME)).expect("made");
        lock.try_lock().expect("locked");
        found.restore();
        assert!(data.join(balsa_wal::LOCK_NAME).exists());
    }
}
