//! Keys on the command line: `balsa keygen FILE`; the client key the client commands read
//! (`--key-file`, `BALSA_KEY_FILE`) and what they say when a cluster refuses to open their
//! requests; and the pair of keys `balsa cluster`, `demo` and `torture` keep in their
//! directory ([`LocalKeys`]).
//!
//! Invariants: a key is never printed, logged or put on a command line, only its fingerprint
//! and the name of its file; a key file is only ever written by [`balsa::keyfile`] (mode 0600,
//! never over an existing file) and read by it (refused when group or others may read it).
//!
//! Exit status of `keygen`: 0 written; 2 bad usage, or the file exists or cannot be written
//! (one line on stderr).

use balsa::keyfile::Fingerprint as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use balsa::client::ClientError;
use balsa::keyfile::{self, Key, KeyFileError};

use crate::args::KeygenArgs;

/// The peer key's file in a directory of [`LocalKeys`].
pub const PEER_KEY_FILE: &str = "peer.key";
/// The client key's file in a directory of [`LocalKeys`].
pub const CLIENT_KEY_FILE: &str = "client.key";

/// Runs `balsa keygen FILE`: one line on stdout naming the file and the key's fingerprint.
#[allow(
    clippy::print_stderr,
    reason = "the command's one-line error goes to stderr"
)]
pub fn keygen(args: &KeygenArgs) -> ExitCode {
    match new_key_file(&args.file) {
        Ok(key) => {
            // A closed stdout leaves nothing to tell; the file is written all the same.
            let _ = writeln!(
                std::io::stdout(),
                "balsa: wrote a new key to {} (fingerprint {})",
                args.file.display(),
                key.fingerprint()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("balsa keygen: {error}");
            ExitCode::from(2)
        }
    }
}

/// Writes a new random key to a new file at `path` (mode 0600); returns it.
fn new_key_file(path: &Path) -> Result<Key, KeyFileError> {
    let key = keyfile::generate_key().map_err(|source| KeyFileError::Io {
        op: "make a random key for",
        path: path.to_path_buf(),
        source,
    })?;
    keyfile::write_key_file(path, &key)?;
    Ok(key)
}

/// The client key a client command was given, and where from (for what it says on a refusal).
#[derive(Clone, Debug)]
pub struct ClientKey {
    /// The file it was read from.
    pub file: PathBuf,
    /// The key.
    pub key: Key,
}

/// Reads the client key in `file`, if one was given (`--key-file`, `BALSA_KEY_FILE`).
///
/// # Errors
/// The file's [`KeyFileError`] (the command exits 2 with it).
pub fn read_client_key(file: Option<&Path>) -> Result<Option<ClientKey>, KeyFileError> {
    file.map(|file| {
        keyfile::read_key_file(file).map(|key| ClientKey {
            file: file.to_path_buf(),
            key,
        })
    })
    .transpose()
}

/// The key itself, for [`balsa::client::ClientOptions::key`].
pub fn option_key(key: Option<&ClientKey>) -> Option<Key> {
    key.map(|given| given.key.clone())
}

/// What to do about `error`, when keys are its likely cause: for the line the command prints
/// after the error's own (`None` when keys have nothing to do with it).
///
/// - A node could not open the requests ([`Notice::AuthFailed`]): the client key is
///   missing, or the one given is not the cluster's.
/// - A node runs without keys and refused sealed requests: drop the key.
/// - No node answered in time and no key was given: a cluster that runs with keys serves no
///   request without its client key (its notices saying so may be lost or rate-limited), so
///   the key may be what is missing. Said as a possibility: the nodes may simply be down.
///
/// [`Notice::AuthFailed`]: balsa::net::Notice::AuthFailed
pub fn hint(error: &ClientError, key: Option<&ClientKey>) -> Option<String> {
    use balsa::net::Notice;
    const GIVE: &str = "give the cluster's client key with --key-file FILE or BALSA_KEY_FILE";
    match (error, key) {
        (
            ClientError::Unauthenticated {
                notice: Notice::AuthFailed,
                ..
            },
            None,
        ) => Some(format!(
            "the cluster runs with keys and this command has none: {GIVE}"
        )),
        (
            ClientError::Unauthenticated {
                notice: Notice::AuthFailed,
                ..
            },
            Some(given),
        ) => Some(format!(
            "the key in {} (fingerprint {}) is not the cluster's client key: {GIVE}",
            given.file.display(),
            given.key.fingerprint()
        )),
        (
            ClientError::Unauthenticated {
                notice: Notice::NotSealing,
                ..
            },
            _,
        ) => Some(
            "this cluster runs without keys (--insecure): drop --key-file and unset \
             BALSA_KEY_FILE"
                .into(),
        ),
        (ClientError::Timeout { .. } | ClientError::NoNodeAnswered { .. }, None) => Some(format!(
            "if the cluster runs with keys, it serves no request without its client key: \
             {GIVE}"
        )),
        _ => None,
    }
}

/// A peer key and a client key in a directory (`peer.key`, `client.key`), for the nodes a
/// command starts itself (`balsa cluster`, `demo`, `torture`).
#[derive(Clone, Debug)]
pub struct LocalKeys {
    /// The peer key's file.
    pub peer_file: PathBuf,
    /// The client key's file.
    pub client_file: PathBuf,
    /// The client key, for the command's own clients.
    pub client: Key,
    /// The peer key's fingerprint.
    pub peer_fingerprint: String,
    /// Whether both files were there already.
    pub reused: bool,
}

impl LocalKeys {
    /// The keys in `dir` (which must exist): read back if both files are there (a cluster
    /// restarted in the same directory keeps its keys), else made (each file that is missing).
    ///
    /// # Errors
    /// A [`KeyFileError`] for a file that cannot be read or written.
    pub fn in_dir(dir: &Path) -> Result<LocalKeys, KeyFileError> {
        let peer_file = dir.join(PEER_KEY_FILE);
        let client_file = dir.join(CLIENT_KEY_FILE);
        let reused = keyfile::key_file_exists(&peer_file) && keyfile::key_file_exists(&client_file);
        let load = |path: &Path| {
            if keyfile::key_file_exists(path) {
                keyfile::read_key_file(path)
            } else {
                new_key_file(path)
            }
        };
        let peer = load(&peer_file)?;
        let client = load(&client_file)?;
        Ok(LocalKeys {
            peer_file,
            client_file,
            client,
            peer_fingerprint: peer.fingerprint(),
            reused,
        })
    }

    /// The `serve` arguments that give a node these keys.
    pub fn serve_args(&self) -> Vec<std::ffi::OsString> {
        vec![
            "--peer-key-file".into(),
            self.peer_file.clone().into_os_string(),
            "--client-key-file".into(),
            self.client_file.clone().into_os_string(),
        ]
    }

    /// The client key, for [`balsa::client::ClientOptions::key`].
    pub fn client_key(&self) -> Option<Key> {
        Some(self.client.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use balsa::net::Notice;

    use super::*;

    fn unauthenticated(notice: Notice) -> ClientError {
        ClientError::Unauthenticated {
            endpoint: "127.0.0.1:7001".parse().expect("literal"),
            notice,
            outcome_unknown: false,
        }
    }

    #[test]
    fn local_keys_are_made_once_and_read_back_after() {
        let dir = tempfile::tempdir().expect("a directory");
        let made = LocalKeys::in_dir(dir.path()).expect("made");
        assert!(!made.reused);
        for file in [&made.peer_file, &made.client_file] {
            let mode = std::fs::metadata(file)
                .expect("written")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{}", file.display());
        }
        let again = LocalKeys::in_dir(dir.path()).expect("read back");
        assert!(again.reused);
        assert_eq!(again.client, made.client);
        assert_eq!(again.peer_fingerprint, made.peer_fingerprint);
        assert_ne!(made.peer_fingerprint, made.client.fingerprint());
    }

    #[test]
    fn a_missing_half_of_the_local_keys_is_made_and_the_other_kept() {
        let dir = tempfile::tempdir().expect("a directory");
        let made = LocalKeys::in_dir(dir.path()).expect("made");
        std::fs::remove_file(&made.client_file).expect("removed");
        let again = LocalKeys::in_dir(dir.path()).expect("made again");
        assert!(!again.reused);
        assert_eq!(again.peer_fingerprint, made.peer_fingerprint);
        assert_ne!(again.client, made.client);
    }

    #[test]
    fn local_keys_in_a_file_others_may_read_are_refused() {
        let dir = tempfile::tempdir().expect("a directory");
        let made = LocalKeys::in_dir(dir.path()).expect("made");
        std::fs::set_permissions(&made.peer_file, std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        assert!(matches!(
            LocalKeys::in_dir(dir.path()),
            Err(KeyFileError::TooOpen { .. })
        ));
    }

    #[test]
    fn every_refusal_for_keys_says_what_to_do_and_other_errors_nothing() {
        let given = ClientKey {
            file: PathBuf::from("wrong.key"),
            key: Key::from_bytes([7; 32]),
        };
        let missing = hint(&unauthenticated(Notice::AuthFailed), None).expect("a hint");
        assert!(missing.contains("--key-file") && missing.contains("BALSA_KEY_FILE"));
        let wrong = hint(&unauthenticated(Notice::AuthFailed), Some(&given)).expect("a hint");
        assert!(wrong.contains("wrong.key") && wrong.contains(&given.key.fingerprint()));
        assert!(!wrong.contains(&given.key.to_hex()), "never the key itself");
        let insecure = hint(&unauthenticated(Notice::NotSealing), Some(&given)).expect("a hint");
        assert!(insecure.contains("drop --key-file"), "{insecure}");
        let timeout = ClientError::Timeout {
            waited: Duration::from_secs(1),
            kind: balsa::client::OperationKind::Write,
        };
        let maybe = hint(&timeout, None).expect("a hint");
        assert!(
            maybe.starts_with("if the cluster runs with keys"),
            "{maybe}"
        );
        assert!(hint(&timeout, Some(&given)).is_none());
        let unavailable = ClientError::Unavailable {
            reason: "no leader".into(),
        };
        assert!(hint(&unavailable, None).is_none(), "a node answered");
    }
}
