//! A new node's data directory built from a snapshot, to bootstrap a new cluster holding that
//! state (`balsa restore`, as `etcdutl snapshot restore`).
//!
//! What [`restore_data_dir`] writes is what a node of the new cluster would hold had it
//! bootstrapped with its members and then taken the snapshot itself:
//!
//! - the write-ahead log with the snapshot at (index, term) installed: its frame (Raft §7,
//!   `raft/snapshot_frame.rs`) carries the configuration of the **new** members, all voters,
//!   at their new addresses (a configuration in a snapshot wins over any other at start, so the
//!   old cluster's members are never contacted), and the state machine's bytes as given; the
//!   log continues after `index`; the hard state is `term`, no vote, commit `index` (so the
//!   state is committed and applied at start, and the node's term is never below the term of
//!   its last entry);
//! - `IDENTITY` as a bootstrapping node records it: the cluster id derived from the members and
//!   the cluster token ([`Identity::bootstrap`]), so every member restored with the same
//!   members and token agrees on it, and the members as the bootstrap list. It is written last:
//!   a directory with an identity is a whole one.
//!
//! Rules it keeps: the configuration is checked as `serve` checks it ([`NodeConfig::validate`]);
//! the state is restored into the caller's state machine before anything is written, so a
//! snapshot the service cannot read is refused with nothing on disk; an existing data directory
//! must be empty (a restore never mixes with an earlier node's files), and a path that is not a
//! directory is refused. The identity comes after the log is synced and closed, so a directory
//! with one holds the whole log; a restore that fails part way leaves a directory to delete
//! before trying again (a second restore refuses it as not empty).

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use balsa_wal::{HardState, SnapshotMeta, Wal};

use super::identity::{Identity, IdentityError};
use super::members::address_bytes;
use super::{NodeConfig, NodeConfigError};
use crate::raft::membership::Membership;
use crate::raft::snapshot_frame;
use crate::state_machine::{RestoreError, StateMachine};

/// Why a data directory could not be built from a snapshot.
#[derive(Debug)]
pub enum RestoreDirError {
    /// The node's configuration cannot work (as `serve` would refuse it).
    Config(NodeConfigError),
    /// The snapshot covers nothing (index or term 0).
    EmptySnapshot {
        /// Its index.
        index: u64,
        /// Its term.
        term: u64,
    },
    /// The state machine cannot restore the snapshot's state.
    State(RestoreError),
    /// The data directory's path exists and is not a directory.
    NotADirectory {
        /// The path.
        dir: PathBuf,
    },
    /// The data directory exists and holds files: a restore only builds a new one.
    NotEmpty {
        /// The directory.
        dir: PathBuf,
        /// One of its entries.
        entry: String,
    },
    /// A file operation failed.
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// Writing the log failed.
    Wal(balsa_wal::Error),
    /// Writing the identity failed.
    Identity(IdentityError),
}

impl fmt::Display for RestoreDirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreDirError::Config(error) => write!(f, "bad configuration: {error}"),
            RestoreDirError::EmptySnapshot { index, term } => write!(
                f,
                "the snapshot covers nothing (index {index}, term {term}): there is no state \
                 to restore"
            ),
            RestoreDirError::State(error) => {
                write!(f, "the state machine cannot restore the snapshot: {error}")
            }
            RestoreDirError::NotADirectory { dir } => {
                write!(f, "data directory {} is not a directory", dir.display())
            }
            RestoreDirError::NotEmpty { dir, entry } => write!(
                f,
                "data directory {} is not empty (it holds {entry:?}): a restore builds a new \
                 node's directory; give an empty or new one",
                dir.display()
            ),
            RestoreDirError::Io { op, path, source } => {
                write!(f, "{op} {}: {source}", path.display())
            }
            RestoreDirError::Wal(error) => write!(f, "writing the log: {error}"),
            RestoreDirError::Identity(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for RestoreDirError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RestoreDirError::Config(error) => Some(error),
            RestoreDirError::State(error) => Some(error),
            RestoreDirError::Io { source, .. } => Some(source),
            RestoreDirError::Wal(error) => Some(error),
            RestoreDirError::Identity(error) => Some(error),
            _ => None,
        }
    }
}

impl RestoreDirError {
    /// True when the restore was refused as asked (a configuration, a snapshot or a directory
    /// that cannot be used), false when writing failed.
    pub fn is_refusal(&self) -> bool {
        !matches!(
            self,
            RestoreDirError::Io { .. } | RestoreDirError::Wal(_) | RestoreDirError::Identity(_)
        )
    }
}

/// Builds node `config.id`'s data directory `config.data_dir` for a new cluster of
/// `config.members` (and `config.cluster_token`) holding `state`, the state machine's bytes of
/// a snapshot covering the log up to (`index`, `term`); `state_machine` (a new, empty one)
/// checks that it restores. Returns the identity written. See the module documentation.
///
/// # Errors
/// [`RestoreDirError`]: refusals first (configuration, snapshot, state, directory), then the
/// failed step of writing.
pub fn restore_data_dir<S: StateMachine>(
    config: &NodeConfig,
    index: u64,
    term: u64,
    state: &[u8],
    mut state_machine: S,
) -> Result<Identity, RestoreDirError> {
    let mut config = config.clone();
    // A new cluster: its members bootstrap it.
    config.join = false;
    config.validate().map_err(RestoreDirError::Config)?;
    if index == 0 || term == 0 {
        return Err(RestoreDirError::EmptySnapshot { index, term });
    }
    state_machine
        .restore(state)
        .map_err(RestoreDirError::State)?;
    let dir = &config.data_dir;
    prepare_empty_dir(dir)?;

    let membership = Membership::bootstrap(
        config
            .members
            .iter()
            .map(|(id, address)| (*id, address_bytes(*address))),
    );
    let data = snapshot_frame::frame(Some(&membership), state);
    let (mut wal, _) = Wal::open(dir, config.wal.clone()).map_err(RestoreDirError::Wal)?;
    let write = |wal: &mut Wal| -> Result<(), balsa_wal::Error> {
        wal.save_snapshot(SnapshotMeta { index, term }, &data)?;
        wal.truncate_from(index + 1)?;
        wal.set_hard_state(HardState {
            term,
            vote: 0,
            commit: index,
        })?;
        wal.sync()
    };
    write(&mut wal).map_err(RestoreDirError::Wal)?;
    wal.close().map_err(RestoreDirError::Wal)?;

    let identity = Identity::bootstrap(config.id, &config.members, &config.cluster_token);
    identity.store(dir).map_err(RestoreDirError::Identity)?;
    Ok(identity)
}

/// Makes sure `dir` is an empty directory, creating it (and its parents) if it is missing.
fn prepare_empty_dir(dir: &Path) -> Result<(), RestoreDirError> {
    let io = |op, source| RestoreDirError::Io {
        op,
        path: dir.to_path_buf(),
        source,
    };
    match fs::metadata(dir) {
        Ok(metadata) if !metadata.is_dir() => {
            return Err(RestoreDirError::NotADirectory {
                dir: dir.to_path_buf(),
            });
        }
        Ok(_) => {
            let mut entries = fs::read_dir(dir).map_err(|error| io("list", error))?;
            if let Some(entry) = entries.next() {
                let entry = entry.map_err(|error| io("list", error))?;
                return Err(RestoreDirError::NotEmpty {
                    dir: dir.to_path_buf(),
                    entry: entry.file_name().to_string_lossy().into_owned(),
                });
            }
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|error| io("create", error))?;
        }
        Err(error) => return Err(io("stat", error)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::kv::KvStore;

    fn members() -> Vec<(u64, SocketAddr)> {
        (1..=3u16)
            .map(|id| (u64::from(id), SocketAddr::from(([127, 0, 0, 1], 7100 + id))))
            .collect()
    }

    /// The log holds the snapshot with the new members' configuration, the log continues
    /// after it, the hard state commits it; the identity is a bootstrap of the new members.
    #[test]
    fn a_restored_directory_holds_the_snapshot_with_the_new_members_and_their_identity() {
        let temp = tempfile::tempdir().expect("a temporary directory");
        let dir = temp.path().join("node-2");
        let mut config = NodeConfig::new(2, members(), dir.clone());
        config.cluster_token = "restored".into();
        let state = KvStore::new().snapshot();
        let identity = restore_data_dir(&config, 500, 7, &state, KvStore::new()).expect("restored");
        assert_eq!(identity, Identity::bootstrap(2, &members(), "restored"));
        assert_eq!(Identity::load(&dir).expect("readable"), Some(identity));

        let (wal, recovered) = Wal::open(&dir, config.wal.clone()).expect("opens");
        assert_eq!(
            recovered.snapshot,
            Some(SnapshotMeta {
                index: 500,
                term: 7
            })
        );
        assert!(recovered.entries.is_empty());
        assert_eq!(
            recovered.hard_state,
            HardState {
                term: 7,
                vote: 0,
                commit: 500
            }
        );
        assert_eq!(wal.next_index(), 501);
        let (_, data) = wal.load_snapshot().expect("reads").expect("a snapshot");
        let framed = snapshot_frame::unframe(&data).expect("a frame");
        let membership = framed.membership.expect("a configuration");
        let voters: Vec<u64> = membership.incoming().collect();
        assert_eq!(voters, [1, 2, 3]);
        assert_eq!(membership.address(3), Some(&b"127.0.0.1:7103"[..]));
        assert_eq!(framed.state, state);
    }

    #[test]
    fn a_directory_that_is_not_empty_or_not_a_directory_is_refused_untouched() {
        let temp = tempfile::tempdir().expect("a temporary directory");
        let state = KvStore::new().snapshot();
        let busy = temp.path().join("busy");
        fs::create_dir(&busy).expect("a directory");
        fs::write(busy.join("IDENTITY"), b"x").expect("a file");
        let config = NodeConfig::new(1, members(), busy.clone());
        let error = restore_data_dir(&config, 5, 1, &state, KvStore::new()).expect_err("busy");
        assert!(
            matches!(error, RestoreDirError::NotEmpty { ref entry, .. } if entry == "IDENTITY")
        );
        assert!(error.is_refusal());
        assert_eq!(fs::read_dir(&busy).expect("listed").count(), 1);

        let file = temp.path().join("file");
        fs::write(&file, b"x").expect("a file");
        let config = NodeConfig::new(1, members(), file);
        let error = restore_data_dir(&config, 5, 1, &state, KvStore::new()).expect_err("a file");
        assert!(error.to_string().contains("is not a directory"), "{error}");
    }

    #[test]
    fn a_state_the_state_machine_refuses_is_refused_before_anything_is_written() {
        let temp = tempfile::tempdir().expect("a temporary directory");
        let dir = temp.path().join("node-1");
        let config = NodeConfig::new(1, members(), dir.clone());
        let error =
            restore_data_dir(&config, 5, 1, b"not a snapshot", KvStore::new()).expect_err("bad");
        assert!(matches!(error, RestoreDirError::State(_)), "{error}");
        assert!(!dir.exists());
        let outsider = NodeConfig::new(9, members(), dir.clone());
        let error = restore_data_dir(&outsider, 5, 1, &KvStore::new().snapshot(), KvStore::new())
            .expect_err("not a member");
        assert!(matches!(error, RestoreDirError::Config(_)), "{error}");
        assert!(!dir.exists());
    }
}
