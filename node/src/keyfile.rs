//! Key files: a 256-bit key ([`balsa_net::Key`]) as 64 hexadecimal digits and a newline, in a
//! file only its owner may read. `balsa keygen` writes them; `balsa serve --peer-key-file`,
//! `--client-key-file` and the client's `--key-file` read them.
//!
//! - **Written** with mode 0600, never over an existing file (`create_new`), then fsynced.
//! - **Read** only if neither group nor others may read or write it (as ssh refuses a private key
//!   others can read): such a key must be taken as known, and the operator is told to fix the
//!   mode (`chmod 600`). Read bounded: at most [`MAX_KEY_FILE_BYTES`], so a wrong path (a log, a
//!   device) is refused, not slurped. Lines starting with `#` and blank lines are ignored, so a
//!   file may say what the key is for.
//! - Errors name the file and never repeat its content.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use balsa_net::KeyFormatError;
pub use balsa_net::{Key, KeyRing, Keys, generate_key};

/// A short name for a key that does not reveal it: the top 32 bits of the FNV-1a hash of its
/// bytes (the hash `IDENTITY`'s cluster ids use), as 8 hex digits. For logs and messages ("key
/// 1a2b3c4d"): enough to tell two keys apart, and 224 of the key's 256 bits stay unknown.
pub trait Fingerprint {
    /// The fingerprint.
    fn fingerprint(&self) -> String;
}

impl Fingerprint for Key {
    fn fingerprint(&self) -> String {
        format!(
            "{:08x}",
            crate::runtime::identity::fnv1a64(self.as_bytes()) >> 32
        )
    }
}

/// The most of a key file that is read: a key, a comment or two, and their newlines.
pub const MAX_KEY_FILE_BYTES: u64 = 4096;

/// Why a key file could not be written or used.
#[derive(Debug)]
pub enum KeyFileError {
    /// A file operation failed.
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The file exists already (a key is never overwritten: it may be the only copy).
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// Group or others may read or write the file.
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is larger than a key file can be.
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit, in bytes.
        limit: u64,
    },
    /// The file does not hold one key.
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyFileError::Io { op, path, source } => {
                write!(f, "cannot {op} key file {}: {source}", path.display())
            }
            KeyFileError::Exists { path } => write!(
                f,
                "key file {} exists already; a key is never overwritten (remove it first if \
                 it is no longer needed)",
                path.display()
            ),
            KeyFileError::TooOpen { path, mode } => write!(
                f,
                "key file {} has mode {:04o}: others than its owner may read or write it, so \
                 its key must be taken as known; make a new key, or if it never left this \
                 machine's owner, `chmod 600 {}`",
                path.display(),
                mode & 0o7777,
                path.display()
            ),
            KeyFileError::TooLarge { path, limit } => write!(
                f,
                "{} is over {limit} bytes: not a key file",
                path.display()
            ),
            KeyFileError::Malformed { path, reason } => {
                write!(f, "{} is not a key file: {reason}", path.display())
            }
        }
    }
}

impl std::error::Error for KeyFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KeyFileError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Writes `key` to a new file at `path`, mode 0600 (see the module documentation).
///
/// # Errors
/// [`KeyFileError::Exists`] if there is a file there; [`KeyFileError::Io`] otherwise.
pub fn write_key_file(path: &Path, key: &Key) -> Result<(), KeyFileError> {
    let io = |op| {
        move |source| KeyFileError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| match source.kind() {
            io::ErrorKind::AlreadyExists => KeyFileError::Exists {
                path: path.to_path_buf(),
            },
            _ => io("create")(source),
        })?;
    let text = format!(
        "# a Balsa key (fingerprint {}): keep it secret\n{}\n",
        key.fingerprint(),
        key.to_hex()
    );
    file.write_all(text.as_bytes()).map_err(io("write"))?;
    file.sync_all().map_err(io("fsync"))
}

/// Reads the key in the file at `path` (see the module documentation for what is refused).
///
/// # Errors
/// A [`KeyFileError`] naming the file.
pub fn read_key_file(path: &Path) -> Result<Key, KeyFileError> {
    let io = |op| {
        move |source| KeyFileError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    };
    let file = File::open(path).map_err(io("open"))?;
    let metadata = file.metadata().map_err(io("read the metadata of"))?;
    let mode = metadata.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(KeyFileError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io("read"))?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(KeyFileError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_KEY_FILE_BYTES,
        });
    }
    let malformed = |reason: String| KeyFileError::Malformed {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| malformed("not UTF-8 text".into()))?;
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'));
    let key = lines
        .next()
        .ok_or_else(|| malformed("it holds no key".into()))?;
    if lines.next().is_some() {
        return Err(malformed(
            "it holds more than one line besides comments".into(),
        ));
    }
    Key::from_hex(key).map_err(|error: KeyFormatError| malformed(error.to_string()))
}

/// Whether `path` names an existing file (for commands that make a key only if there is none).
pub fn key_file_exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key::from_bytes([0x42; balsa_net::KEY_LEN])
    }

    #[test]
    fn fingerprints_are_eight_hex_digits_and_tell_keys_apart() {
        let one = Key::from_bytes([1; balsa_net::KEY_LEN]);
        let two = Key::from_bytes([2; balsa_net::KEY_LEN]);
        assert_ne!(one.fingerprint(), two.fingerprint());
        assert_eq!(one.fingerprint().len(), 8);
        assert!(!one.fingerprint().contains(&one.to_hex()[..8]));
    }

    #[test]
    fn a_written_key_reads_back_and_is_never_overwritten() {
        let dir = tempfile::tempdir().expect("a directory");
        let path = dir.path().join("peer.key");
        write_key_file(&path, &key()).expect("written");
        let mode = fs::metadata(&path).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(read_key_file(&path).expect("read"), key());
        assert!(matches!(
            write_key_file(&path, &Key::from_bytes([1; 32])),
            Err(KeyFileError::Exists { .. })
        ));
        assert_eq!(read_key_file(&path).expect("read"), key(), "unchanged");
    }

    #[test]
    fn a_key_file_others_may_read_is_refused_naming_the_mode() {
        let dir = tempfile::tempdir().expect("a directory");
        let path = dir.path().join("open.key");
        write_key_file(&path, &key()).expect("written");
        for mode in [0o640, 0o604, 0o620, 0o644] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
            let error = read_key_file(&path).expect_err("refused");
            assert!(matches!(error, KeyFileError::TooOpen { .. }), "{error}");
            assert!(
                error.to_string().contains(&format!("{mode:04o}")),
                "{error}"
            );
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).expect("chmod");
        assert_eq!(read_key_file(&path).expect("read"), key());
    }

    #[test]
    fn malformed_and_oversized_files_are_refused_without_echoing_them() {
        let dir = tempfile::tempdir().expect("a directory");
        let write = |name: &str, content: &[u8]| {
            let path = dir.path().join(name);
            fs::write(&path, content).expect("written");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
            path
        };
        let secretish = "ab".repeat(31);
        for (name, content) in [
            ("short", format!("{secretish}\n").into_bytes()),
            ("empty", b"# nothing\n\n".to_vec()),
            (
                "two",
                format!("{}\n{}\n", key().to_hex(), key().to_hex()).into_bytes(),
            ),
            ("binary", vec![0xFF, 0xFE, 0x00]),
        ] {
            let error = read_key_file(&write(name, &content)).expect_err(name);
            assert!(
                matches!(error, KeyFileError::Malformed { .. }),
                "{name}: {error}"
            );
            assert!(!error.to_string().contains(&secretish), "{error}");
        }
        let big = write("big", &vec![b'#'; 10_000]);
        assert!(matches!(
            read_key_file(&big),
            Err(KeyFileError::TooLarge { .. })
        ));
        assert!(matches!(
            read_key_file(&dir.path().join("missing")),
            Err(KeyFileError::Io { op: "open", .. })
        ));
    }
}
