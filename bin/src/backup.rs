//! Backup and restore: `balsa snapshot save FILE` and `balsa restore FILE`, and the file
//! between them.
//!
//! # The file
//!
//! Little-endian; a 48-byte header, then the snapshot exactly as the node held it:
//!
//! ```text
//! offset  size  field
//!      0     8  magic        b"BALSABAK"
//!      8     4  version      u32: 1
//!     12     4  header CRC   CRC-32 (IEEE, crc32fast) of bytes 0..12 and 16..48
//!     16     8  index        u64: the last log index the snapshot covers
//!     24     8  term         u64: the term of that entry
//!     32     8  size         u64: bytes of snapshot after the header (the file is 48 + size)
//!     40     4  data CRC     CRC-32 of those bytes, as the node computed it
//!     44     4  reserved     0
//!     48     …  the snapshot: its frame (raft/snapshot_frame.rs), then the state machine's bytes
//!
//! the frame, at offset 48:
//!      0     8  magic        b"BALSASNP"
//!      8     1  version      1
//!      9     1  has config   0: no configuration known at that index; 1: one follows
//!     10     4  config len   u32
//!     14     …  the configuration in force at the index (raft/membership/codec.rs)
//!      …     …  the key-value store's snapshot (node/src/kv/snapshot.rs)
//! ```
//!
//! The data CRC is the node's own, checked by the client as the pieces arrive and again by
//! `restore`: the bytes are checked end to end, from the node's memory to the new data
//! directory. Reading is bounded: the header is read first, and the size it announces must be
//! exactly what the file holds before anything else is allocated (so at most the file's real
//! size). Every refusal names the file, a byte offset and the reason: a truncated file the
//! offset where it ends, a damaged one the first byte of the region whose CRC fails.
//!
//! # Saving
//!
//! From the leader (found by asking every endpoint's status), or `--from ID`. First a barrier:
//! a linearizable read answered by that node ([`Client::read_at`]), after which it has applied
//! every write acknowledged before the save began — a leader just elected, or a follower, may
//! not have until then. Then the node is asked to snapshot now (as `balsa snapshot` asks), which
//! covers everything it applied, so every such write; then its newest snapshot is read
//! piece by piece ([`RequestBody::ReadSnapshot`](balsa::runtime::wire::RequestBody)), each a
//! client operation of its own at the offset reached, retried on silence: a lost datagram costs
//! one attempt, never the fetch. Every piece names its snapshot; when another one (a newer
//! snapshot, taken meanwhile) answers, the fetch starts again from 0, at most
//! [`MAX_FETCH_RESTARTS`] times. The pieces go straight to `FILE.tmp` (mode 0600): the client
//! holds one piece in memory. Then the header, an fsync, a rename over FILE and an fsync of its
//! directory.
//!
//! A node older than the snapshot read drops it as undecodable and answers nothing: the first
//! read's timeout is reported as a node that may be too old.
//!
//! # Restoring
//!
//! The file is read and checked whole, the snapshot's state checked by the key-value store,
//! then [`balsa::runtime::restore::restore_data_dir`] builds the directory (see there).
//!
//! Exit status: 0 done; 2 usage, a file refused (with its offset), a data directory that is
//! not empty or not a directory, a node that refuses the read; 3 no leader or node answered,
//! a timeout, a snapshot that kept changing or arrived damaged; 1 writing the data directory
//! failed.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use balsa::NodeConfig;
use balsa::client::{Client, ClientError, ClientOptions};
use balsa::kv::{KvStore, Query};
use balsa::raft::MESSAGE_OVERHEAD;
use balsa::raft::membership::Membership;
use balsa::raft::snapshot_frame;
use balsa::runtime::identity::cluster_id_text;
use balsa::runtime::restore::{RestoreDirError, restore_data_dir};
use balsa::runtime::wire::{SnapshotPiece, StatusReport};

use crate::args::{RestoreArgs, SaveArgs};
use crate::client_cmds;
use crate::keys::{self, ClientKey};

/// What a backup file starts with.
pub const MAGIC: [u8; 8] = *b"BALSABAK";
/// The format this build writes and reads.
pub const VERSION: u32 = 1;
/// Bytes of the header.
pub const HEADER_LEN: usize = 48;
/// How many times a fetch starts again because a newer snapshot replaced the one being read.
pub const MAX_FETCH_RESTARTS: u32 = 3;

/// The header's fields (the rest is derived or fixed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The last log index the snapshot covers.
    pub index: u64,
    /// The term of that entry.
    pub term: u64,
    /// Bytes of snapshot after the header.
    pub size: u64,
    /// CRC-32 of those bytes.
    pub crc: u32,
}

/// A backup file read and checked.
#[derive(Debug)]
pub struct Backup {
    /// Its header.
    pub header: Header,
    /// The snapshot as the node held it (frame, then state).
    pub data: Vec<u8>,
    /// The configuration in force at the snapshot's index, if the snapshot holds one.
    pub membership: Option<Membership>,
    /// Where the state machine's bytes start in `data`.
    pub state_start: usize,
}

impl Backup {
    /// The backup of `header` and the snapshot's bytes `data`, once [`check_data`] finds them
    /// whole; `Err((offset, reason))` as it says.
    fn checked(header: Header, data: Vec<u8>) -> Result<Backup, (u64, String)> {
        let (membership, state_start) = check_data(header, &data)?;
        Ok(Backup {
            header,
            data,
            membership,
            state_start,
        })
    }

    /// The state machine's bytes.
    pub fn state(&self) -> &[u8] {
        &self.data[self.state_start..]
    }
}

/// Why a backup file is refused or cannot be read.
#[derive(Debug)]
pub enum FileError {
    /// A file operation failed.
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The bytes are not a whole, undamaged backup of a known version.
    Refused {
        /// The file.
        path: PathBuf,
        /// Where the problem is, in bytes from the start of the file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::Io { op, path, source } => write!(f, "{op} {}: {source}", path.display()),
            FileError::Refused {
                path,
                offset,
                reason,
            } => write!(f, "{}: offset {offset}: {reason}", path.display()),
        }
    }
}

/// The header's bytes.
pub fn encode_header(header: Header) -> [u8; HEADER_LEN] {
    let mut bytes = [0u8; HEADER_LEN];
    bytes[0..8].copy_from_slice(&MAGIC);
    bytes[8..12].copy_from_slice(&VERSION.to_le_bytes());
    bytes[16..24].copy_from_slice(&header.index.to_le_bytes());
    bytes[24..32].copy_from_slice(&header.term.to_le_bytes());
    bytes[32..40].copy_from_slice(&header.size.to_le_bytes());
    bytes[40..44].copy_from_slice(&header.crc.to_le_bytes());
    let crc = header_crc(&bytes);
    bytes[12..16].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn header_crc(bytes: &[u8; HEADER_LEN]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&bytes[0..12]);
    hasher.update(&bytes[16..HEADER_LEN]);
    hasher.finalize()
}

fn u32_at(bytes: &[u8; HEADER_LEN], at: usize) -> u32 {
    let mut field = [0u8; 4];
    field.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(field)
}

fn u64_at(bytes: &[u8; HEADER_LEN], at: usize) -> u64 {
    let mut field = [0u8; 8];
    field.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(field)
}

/// Checks the header of a file of `file_len` bytes: `Err((offset, reason))` for the first
/// problem, in this order: magic, version, header CRC, reserved bytes, size against the file.
pub fn check_header(bytes: &[u8; HEADER_LEN], file_len: u64) -> Result<Header, (u64, String)> {
    let Some(held) = file_len.checked_sub(HEADER_LEN as u64) else {
        return Err((
            file_len,
            format!(
                "the file ends at byte {file_len}, inside its {HEADER_LEN}-byte header: it is \
                 truncated, or not a snapshot file"
            ),
        ));
    };
    if bytes[0..8] != MAGIC {
        return Err((
            0,
            "not a Balsa snapshot file (it does not start with \"BALSABAK\")".into(),
        ));
    }
    let version = u32_at(bytes, 8);
    if version != VERSION {
        return Err((
            8,
            format!("format version {version}; this build reads version {VERSION}"),
        ));
    }
    let (stored, computed) = (u32_at(bytes, 12), header_crc(bytes));
    if stored != computed {
        return Err((
            12,
            format!(
                "the header's CRC-32 does not match (stored {stored:08x}, computed \
                 {computed:08x}): bytes 0..{HEADER_LEN} are damaged"
            ),
        ));
    }
    if u32_at(bytes, 44) != 0 {
        return Err((44, "reserved bytes 44..48 are not zero".into()));
    }
    let header = Header {
        index: u64_at(bytes, 16),
        term: u64_at(bytes, 24),
        size: u64_at(bytes, 32),
        crc: u32_at(bytes, 40),
    };
    if held < header.size {
        return Err((
            file_len,
            format!(
                "the file ends at byte {file_len}, but its header announces {} bytes of \
                 snapshot, to byte {}: it is truncated",
                header.size,
                u128::from(header.size) + HEADER_LEN as u128
            ),
        ));
    }
    if held > header.size {
        return Err((
            HEADER_LEN as u64 + header.size,
            format!(
                "{} bytes follow the end of the snapshot its header announces",
                held - header.size
            ),
        ));
    }
    Ok(header)
}

/// Checks the snapshot's bytes against the header: their CRC, then their frame. Returns the
/// configuration and where the state starts, or `Err((offset, reason))`.
pub fn check_data(
    header: Header,
    data: &[u8],
) -> Result<(Option<Membership>, usize), (u64, String)> {
    let computed = crc32fast::hash(data);
    if computed != header.crc {
        return Err((
            HEADER_LEN as u64,
            format!(
                "the snapshot's CRC-32 does not match (stored {:08x}, computed {computed:08x}): \
                 bytes {HEADER_LEN}..{} are damaged",
                header.crc,
                HEADER_LEN + data.len()
            ),
        ));
    }
    let framed = snapshot_frame::unframe(data)
        .map_err(|error| (HEADER_LEN as u64, format!("the snapshot's {error}")))?;
    let state_start = data.len() - framed.state.len();
    Ok((framed.membership, state_start))
}

/// Reads and checks the backup file at `path` (see the module documentation: bounded by the
/// file's real size).
pub fn read_backup(path: &Path) -> Result<Backup, FileError> {
    let io = |op, source| FileError::Io {
        op,
        path: path.to_path_buf(),
        source,
    };
    let refused = |(offset, reason): (u64, String)| FileError::Refused {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let mut file = File::open(path).map_err(|error| io("open", error))?;
    let file_len = file.metadata().map_err(|error| io("stat", error))?.len();
    if file_len < HEADER_LEN as u64 {
        return Err(refused((
            file_len,
            format!(
                "the file ends at byte {file_len}, inside its {HEADER_LEN}-byte header: it is \
                 truncated, or not a snapshot file"
            ),
        )));
    }
    let mut bytes = [0u8; HEADER_LEN];
    file.read_exact(&mut bytes)
        .map_err(|error| io("read", error))?;
    let header = check_header(&bytes, file_len).map_err(refused)?;
    // Exactly the file's size, checked just above.
    let size = usize::try_from(header.size).map_err(|_| {
        refused((
            32,
            format!("{} bytes of snapshot do not fit in memory", header.size),
        ))
    })?;
    let mut data = Vec::with_capacity(size);
    file.take(header.size)
        .read_to_end(&mut data)
        .map_err(|error| io("read", error))?;
    if data.len() != size {
        // The file shrank since it was measured.
        let end = HEADER_LEN + data.len();
        return Err(refused((
            end as u64,
            format!("the file ends at byte {end}: it is truncated"),
        )));
    }
    Backup::checked(header, data).map_err(refused)
}

/// A snapshot fetched into a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// Its header (written by the caller).
    pub header: Header,
    /// How many times the fetch started again because the snapshot changed.
    pub restarts: u32,
    /// The first piece's bytes: the frame with the configuration, when it fits one piece.
    pub first_piece: Vec<u8>,
}

/// Why a fetch failed.
#[derive(Debug)]
pub enum FetchError {
    /// Reading the piece at `offset` failed.
    Client {
        /// The offset asked for.
        offset: u64,
        /// Why.
        error: ClientError,
    },
    /// A newer snapshot replaced the one being read more than [`MAX_FETCH_RESTARTS`] times.
    KeptChanging {
        /// The restarts made.
        restarts: u32,
    },
    /// A piece broke the protocol (an offset not asked, bytes past the end, no progress).
    BadPiece {
        /// What was wrong.
        reason: String,
    },
    /// The bytes received do not match the snapshot's CRC.
    Damaged {
        /// The CRC the node gave.
        stored: u32,
        /// The CRC of the bytes received.
        computed: u32,
    },
    /// Writing the file failed.
    Io(io::Error),
}

impl From<io::Error> for FetchError {
    fn from(error: io::Error) -> FetchError {
        FetchError::Io(error)
    }
}

/// Fetches a snapshot with `read(offset, max_bytes)` into `file` after its header (which is left
/// for the caller to write), asking for `max_bytes` per piece. See the module documentation.
///
/// # Errors
/// [`FetchError`].
pub fn fetch(
    mut read: impl FnMut(u64, u32) -> Result<SnapshotPiece, ClientError>,
    max_bytes: u32,
    file: &mut File,
) -> Result<Fetched, FetchError> {
    let mut restarts = 0;
    'fetch: loop {
        file.set_len(HEADER_LEN as u64)?;
        file.seek(SeekFrom::Start(HEADER_LEN as u64))?;
        let mut hasher = crc32fast::Hasher::new();
        let mut offset = 0u64;
        let mut fetching = None;
        let mut first_piece = Vec::new();
        loop {
            let piece =
                read(offset, max_bytes).map_err(|error| FetchError::Client { offset, error })?;
            let snapshot = piece.snapshot_id();
            if fetching.is_some_and(|fetching| fetching != snapshot) {
                restarts += 1;
                if restarts > MAX_FETCH_RESTARTS {
                    return Err(FetchError::KeptChanging {
                        restarts: MAX_FETCH_RESTARTS,
                    });
                }
                continue 'fetch;
            }
            fetching = Some(snapshot);
            check_piece(&piece, offset, max_bytes)?;
            file.write_all(&piece.data)?;
            hasher.update(&piece.data);
            if offset == 0 {
                first_piece.clone_from(&piece.data);
            }
            offset += piece.data.len() as u64;
            if offset == piece.size {
                let computed = hasher.finalize();
                if computed != piece.crc {
                    return Err(FetchError::Damaged {
                        stored: piece.crc,
                        computed,
                    });
                }
                let header = Header {
                    index: piece.index,
                    term: piece.term,
                    size: piece.size,
                    crc: piece.crc,
                };
                return Ok(Fetched {
                    header,
                    restarts,
                    first_piece,
                });
            }
        }
    }
}

/// A piece answering a read at `offset` of at most `max_bytes` must start there, stay within
/// its snapshot and make progress.
fn check_piece(piece: &SnapshotPiece, offset: u64, max_bytes: u32) -> Result<(), FetchError> {
    let bad = |reason: String| Err(FetchError::BadPiece { reason });
    let len = piece.data.len() as u64;
    if piece.offset != offset {
        return bad(format!(
            "asked for offset {offset}, got a piece at {}",
            piece.offset
        ));
    }
    if len > u64::from(max_bytes) {
        return bad(format!("asked for {max_bytes} bytes, got {len}"));
    }
    if offset.checked_add(len).is_none_or(|end| end > piece.size) {
        return bad(format!(
            "a piece of {len} bytes at {offset} runs past the snapshot's {} bytes",
            piece.size
        ));
    }
    if len == 0 && offset < piece.size {
        return bad(format!(
            "an empty piece at {offset} of a snapshot of {} bytes",
            piece.size
        ));
    }
    Ok(())
}

/// `1=127.0.0.1:7001,2=...` (a learner marked so), or "none known".
fn members_text(membership: Option<&Membership>) -> String {
    let Some(membership) = membership else {
        return "none known".into();
    };
    membership
        .members()
        .map(|id| {
            let address = String::from_utf8_lossy(membership.address(id).unwrap_or_default());
            let learner = if membership.is_voter(id) {
                ""
            } else {
                " (learner)"
            };
            format!("{id}={address}{learner}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `FILE.tmp`, beside FILE.
fn temp_path(file: &Path) -> Option<PathBuf> {
    let name = file.file_name()?;
    let mut temp = name.to_os_string();
    temp.push(".tmp");
    Some(file.with_file_name(temp))
}

/// The directory holding `file` (`.` for a bare name).
fn parent_dir(file: &Path) -> &Path {
    match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// `balsa snapshot save FILE`.
#[allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the command's one line of result on stdout, its one-line error on stderr"
)]
pub fn save(args: SaveArgs) -> ExitCode {
    const COMMAND: &str = "snapshot save";
    let fail = |message: String, status: u8| {
        eprintln!("balsa {COMMAND}: {message}");
        ExitCode::from(status)
    };
    let client_key = match keys::read_client_key(args.endpoints.key_file.as_deref()) {
        Ok(client_key) => client_key,
        Err(error) => return fail(error.to_string(), 2),
    };
    let client_key = client_key.as_ref();
    let Some(temp) = temp_path(&args.file) else {
        return fail(format!("{} names no file", args.file.display()), 2);
    };
    let (timeout, attempt_timeout) = args.timeouts.or_library();
    let options = ClientOptions {
        timeout,
        attempt_timeout,
        key: keys::option_key(client_key),
        ..ClientOptions::default()
    };
    let max_bytes =
        u32::try_from(options.datagram_limit.saturating_sub(MESSAGE_OVERHEAD)).unwrap_or(u32::MAX);
    let endpoints = args.endpoints.addresses.clone();
    let mut client = match Client::new(endpoints.clone(), options) {
        Ok(client) => client,
        Err(error) => return client_cmds::fail(COMMAND, &error, client_key),
    };
    let (node, address) = match source(&mut client, &endpoints, args.from, client_key) {
        Ok(found) => found,
        Err((message, status)) => return fail(message, status),
    };
    // The barrier: once that node answers a linearizable read, it has applied every write
    // acknowledged before now (a leader just elected may not have yet), so the snapshot taken
    // next holds them all. The key read is irrelevant; the empty key is never written.
    if let Err(error) = client.read_at(address, Query::Get { key: Vec::new() }) {
        return client_cmds::fail(
            COMMAND,
            &with_context(
                error,
                &format!("node {node} at {address}: reading its applied index"),
            ),
            client_key,
        );
    }
    if let Err(error) = client.take_snapshot(address) {
        return client_cmds::fail(
            COMMAND,
            &with_context(error, &format!("node {node} at {address}: snapshotting")),
            client_key,
        );
    }
    // Mode 0600 from the start: the file holds the data.
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .and_then(|file| {
            // A temporary file left by an earlier run keeps its mode: set it.
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
            Ok(file)
        });
    let mut file = match opened {
        Ok(file) => file,
        Err(error) => return fail(format!("create {}: {error}", temp.display()), 2),
    };
    let read = |offset, max| client.read_snapshot(address, offset, max);
    let written = fetch(read, max_bytes, &mut file).and_then(|fetched| {
        file.write_all_at(&encode_header(fetched.header), 0)?;
        file.sync_all()?;
        fs::rename(&temp, &args.file)?;
        File::open(parent_dir(&args.file)).and_then(|dir| dir.sync_all())?;
        Ok(fetched)
    });
    let fetched = match written {
        Ok(fetched) => fetched,
        Err(error) => {
            let _ = fs::remove_file(&temp);
            return fetch_failed(error, node, address, timeout, &args.file, client_key);
        }
    };
    // The configuration, from the snapshot's frame, if it fits the first piece (it does but
    // for thousands of members).
    let members = match snapshot_frame::unframe(&fetched.first_piece) {
        Ok(framed) => members_text(framed.membership.as_ref()),
        Err(_) => "in the file, too many to show".into(),
    };
    let Header {
        index,
        term,
        size,
        crc,
    } = fetched.header;
    let changed = match fetched.restarts {
        0 => String::new(),
        n => format!("; started again {n} time(s) as newer snapshots were taken"),
    };
    println!(
        "saved the snapshot at index {index}, term {term} from node {node} at {address} to {} \
         ({size} bytes, CRC-32 {crc:08x}; members {members}{changed})",
        args.file.display(),
    );
    ExitCode::SUCCESS
}

/// `error`, its reason prefixed with `context` where it has one.
fn with_context(error: ClientError, context: &str) -> ClientError {
    match error {
        ClientError::Rejected { reason } => ClientError::Rejected {
            reason: format!("{context}: {reason}"),
        },
        ClientError::Unavailable { reason } => ClientError::Unavailable {
            reason: format!("{context}: {reason}"),
        },
        other => other,
    }
}

/// Says why a fetch failed; the exit status.
#[allow(clippy::print_stderr, reason = "the command's one-line error")]
fn fetch_failed(
    error: FetchError,
    node: u64,
    address: SocketAddr,
    timeout: std::time::Duration,
    file: &Path,
    client_key: Option<&ClientKey>,
) -> ExitCode {
    let (message, status) = match error {
        FetchError::Client {
            offset: 0,
            error: ClientError::Timeout { .. },
        } => (
            format!(
                "node {node} at {address} took a snapshot but did not answer a snapshot read \
                 within {} ms: it may be too old for `snapshot save` (a node before this \
                 version drops the request as undecodable); upgrade it or save from another \
                 node with --from",
                timeout.as_millis()
            ),
            3,
        ),
        FetchError::Client { offset, error } => {
            let error = with_context(error, &format!("node {node} at {address}"));
            eprintln!("balsa snapshot save: reading the snapshot at offset {offset}: {error}");
            if let Some(hint) = keys::hint(&error, client_key) {
                eprintln!("balsa snapshot save: hint: {hint}");
            }
            return ExitCode::from(client_cmds::exit_status(&error));
        }
        FetchError::KeptChanging { restarts } => (
            format!(
                "node {node}'s snapshot changed under the fetch {restarts} times (newer ones \
                 were taken); try again, or when it takes fewer"
            ),
            3,
        ),
        FetchError::BadPiece { reason } => (
            format!("node {node} at {address} answered a snapshot read wrongly: {reason}"),
            3,
        ),
        FetchError::Damaged { stored, computed } => (
            format!(
                "the snapshot from node {node} arrived damaged (its CRC-32 is {stored:08x}, the \
                 bytes received have {computed:08x})"
            ),
            3,
        ),
        FetchError::Io(error) => (format!("writing {}: {error}", file.display()), 2),
    };
    eprintln!("balsa snapshot save: {message}");
    ExitCode::from(status)
}

/// The node to save from: `--from ID` among the endpoints, else the leader; its id and address.
fn source(
    client: &mut Client,
    endpoints: &[SocketAddr],
    from: Option<u64>,
    client_key: Option<&ClientKey>,
) -> Result<(u64, SocketAddr), (String, u8)> {
    let reports = client.status_all(endpoints);
    let answered: Vec<(SocketAddr, &StatusReport)> = endpoints
        .iter()
        .zip(&reports)
        .filter_map(|(address, report)| Some((*address, report.as_ref().ok()?)))
        .collect();
    if answered.is_empty() {
        let errors = reports.iter().filter_map(|report| report.as_ref().err());
        let hint = errors
            .filter_map(|error| keys::hint(error, client_key))
            .next()
            .map(|hint| format!(" (hint: {hint})"))
            .unwrap_or_default();
        let list = endpoints
            .iter()
            .map(SocketAddr::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        return Err((
            format!("no Balsa node answered at {list}: is a cluster running?{hint}"),
            3,
        ));
    }
    let ids = || {
        answered
            .iter()
            .map(|(address, report)| format!("{}={address}", report.id))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match from {
        Some(id) => answered
            .iter()
            .find(|(_, report)| report.id == id)
            .map(|(address, _)| (id, *address))
            .ok_or_else(|| {
                let status = if answered.len() == endpoints.len() {
                    2
                } else {
                    3
                };
                (
                    format!("no endpoint answered as node {id} (answered: {})", ids()),
                    status,
                )
            }),
        None => answered
            .iter()
            .filter(|(_, report)| report.role == "leader")
            .max_by_key(|(_, report)| report.term)
            .map(|(address, report)| (report.id, *address))
            .ok_or_else(|| {
                (
                    format!(
                        "no leader among the endpoints that answered ({}): an election may be \
                         under way; try again, or save from a node with --from ID",
                        ids()
                    ),
                    3,
                )
            }),
    }
}

/// `balsa restore FILE --id ID --cluster ... --data-dir DIR`.
#[allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the command's result on stdout, its one-line error on stderr"
)]
pub fn restore(args: RestoreArgs) -> ExitCode {
    let backup = match read_backup(&args.file) {
        Ok(backup) => backup,
        Err(error) => {
            eprintln!("balsa restore: {error}");
            return ExitCode::from(2);
        }
    };
    let mut config = NodeConfig::new(args.id, args.cluster.clone(), args.data_dir.clone());
    config.cluster_token.clone_from(&args.cluster_token);
    let Header { index, term, .. } = backup.header;
    match restore_data_dir(&config, index, term, backup.state(), KvStore::new()) {
        Ok(identity) => {
            let members = args
                .cluster
                .iter()
                .map(|(id, address)| format!("{id}={address}"))
                .collect::<Vec<_>>()
                .join(",");
            println!(
                "restored the snapshot at index {index}, term {term} into {} as node {} of a \
                 new cluster {} of {members} (it was taken from members {}); start it with \
                 `balsa serve --id {} --cluster {members} --data-dir {}` and the new cluster's \
                 keys",
                args.data_dir.display(),
                args.id,
                cluster_id_text(identity.cluster_id),
                members_text(backup.membership.as_ref()),
                args.id,
                args.data_dir.display(),
            );
            ExitCode::SUCCESS
        }
        Err(RestoreDirError::State(error)) => {
            eprintln!(
                "balsa restore: {}: offset {}: the key-value state does not restore: {error}",
                args.file.display(),
                HEADER_LEN + backup.state_start
            );
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("balsa restore: {error}");
            ExitCode::from(if error.is_refusal() { 2 } else { 1 })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use balsa::StateMachine as _;
    use balsa::kv::{Command, Op};

    use super::*;

    /// A snapshot as a node of a 3-node cluster holds it, with `keys` keys written.
    fn snapshot(keys: u64) -> Vec<u8> {
        let mut store = KvStore::new();
        for n in 1..=keys {
            let command = Command {
                client_id: 1,
                seq: n,
                op: Op::Put {
                    key: format!("k{n}").into_bytes(),
                    value: vec![b'v'; 40],
                },
            };
            store.apply(n, &command.encode());
        }
        let three = Membership::bootstrap(
            (1..=3).map(|id| (id, format!("127.0.0.1:700{id}").into_bytes())),
        );
        snapshot_frame::frame(Some(&three), &store.snapshot())
    }

    fn backup_bytes(data: &[u8]) -> Vec<u8> {
        let header = Header {
            index: 77,
            term: 3,
            size: data.len() as u64,
            crc: crc32fast::hash(data),
        };
        let mut bytes = encode_header(header).to_vec();
        bytes.extend_from_slice(data);
        bytes
    }

    /// What reading `bytes` as a file gives.
    fn read_bytes(bytes: &[u8]) -> Result<Backup, FileError> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("backup");
        fs::write(&path, bytes).expect("written");
        read_backup(&path)
    }

    fn refused_at(result: Result<Backup, FileError>) -> (u64, String) {
        match result {
            Err(FileError::Refused { offset, reason, .. }) => (offset, reason),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_backup_reads_back_its_header_configuration_and_state() {
        let data = snapshot(50);
        let backup = read_bytes(&backup_bytes(&data)).expect("reads");
        assert_eq!((backup.header.index, backup.header.term), (77, 3));
        assert_eq!(backup.data, data);
        let membership = backup.membership.as_ref().expect("a configuration");
        assert_eq!(
            members_text(Some(membership)),
            "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003"
        );
        let mut store = KvStore::new();
        store.restore(backup.state()).expect("the state restores");
    }

    /// A file cut anywhere is refused, at the offset where it ends (inside the header or the
    /// snapshot), never read as a smaller snapshot.
    #[test]
    fn a_truncated_file_is_refused_at_the_offset_where_it_ends() {
        let bytes = backup_bytes(&snapshot(5));
        for cut in 0..bytes.len() {
            let (offset, reason) = refused_at(read_bytes(&bytes[..cut]));
            assert_eq!(offset, cut as u64, "cut at {cut}: {reason}");
            assert!(reason.contains("truncated"), "cut at {cut}: {reason}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let (offset, reason) = refused_at(read_bytes(&longer));
        assert_eq!(offset, bytes.len() as u64);
        assert!(reason.contains("1 bytes follow"), "{reason}");
    }

    /// Every single flipped bit is refused, with the offset of the field or region it damaged:
    /// the magic (0), the version (8), the header CRC (12) or the snapshot (48).
    #[test]
    fn every_flipped_bit_is_refused_with_the_offset_of_what_it_damaged() {
        let bytes = backup_bytes(&snapshot(2));
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let (offset, reason) = refused_at(read_bytes_fast(&flipped));
            let expected = match bit / 8 {
                0..8 => 0,
                8..12 => 8,
                12..HEADER_LEN => 12,
                _ => HEADER_LEN as u64,
            };
            assert_eq!(offset, expected, "bit {bit}: {reason}");
        }
    }

    /// As [`read_bytes`], without a file: the same checks in the same order.
    fn read_bytes_fast(bytes: &[u8]) -> Result<Backup, FileError> {
        let refused = |(offset, reason): (u64, String)| FileError::Refused {
            path: PathBuf::from("test"),
            offset,
            reason,
        };
        let header: &[u8; HEADER_LEN] = bytes
            .first_chunk()
            .ok_or_else(|| refused((bytes.len() as u64, "truncated".into())))?;
        let header = check_header(header, bytes.len() as u64).map_err(refused)?;
        Backup::checked(header, bytes[HEADER_LEN..].to_vec()).map_err(refused)
    }

    #[test]
    fn another_version_or_kind_of_file_is_refused_by_name() {
        let mut bytes = backup_bytes(&snapshot(1));
        bytes[8] = 2;
        let (offset, reason) = refused_at(read_bytes(&bytes));
        assert_eq!(offset, 8);
        assert!(reason.contains("format version 2"), "{reason}");
        // A WAL snapshot file (snap-…) is not a backup.
        let mut wal_snapshot = bytes;
        wal_snapshot[0..8].copy_from_slice(b"BALSASNP");
        let (offset, reason) = refused_at(read_bytes(&wal_snapshot));
        assert_eq!(offset, 0);
        assert!(reason.contains("not a Balsa snapshot file"), "{reason}");
    }

    /// A node's snapshots, by (index, term): a fake node answering reads from whichever is
    /// newest when asked, as the replica does.
    struct FakeNode {
        snapshots: Vec<(u64, Arc<Vec<u8>>)>,
        /// The number of reads after which each next snapshot replaces the current one.
        replace_after: Option<usize>,
        reads: usize,
    }

    impl FakeNode {
        fn read(&mut self, offset: u64, max: u32) -> Result<SnapshotPiece, ClientError> {
            self.reads += 1;
            let current = match self.replace_after {
                Some(every) => ((self.reads - 1) / every).min(self.snapshots.len() - 1),
                None => 0,
            };
            let (index, data) = &self.snapshots[current];
            let start = usize::try_from(offset).expect("small");
            let end = (start + max as usize).min(data.len());
            Ok(SnapshotPiece {
                index: *index,
                term: 1,
                size: data.len() as u64,
                crc: crc32fast::hash(data),
                offset,
                data: data[start..end].to_vec(),
            })
        }
    }

    fn fetched_file() -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("fetched"))
            .expect("a file");
        (dir, file)
    }

    fn body(file: &mut File) -> Vec<u8> {
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(HEADER_LEN as u64)).expect("seek");
        file.read_to_end(&mut bytes).expect("read");
        bytes
    }

    #[test]
    fn a_fetch_assembles_the_pieces_after_the_header() {
        let data = Arc::new(snapshot(100));
        let mut node = FakeNode {
            snapshots: vec![(10, Arc::clone(&data))],
            replace_after: None,
            reads: 0,
        };
        let (_dir, mut file) = fetched_file();
        let fetched = fetch(|offset, max| node.read(offset, max), 1000, &mut file).expect("ok");
        assert_eq!(fetched.restarts, 0);
        assert_eq!(fetched.header.size, data.len() as u64);
        assert_eq!(node.reads, data.len().div_ceil(1000));
        assert_eq!(body(&mut file), *data);
    }

    /// A newer snapshot taken mid-fetch is seen in the next piece: the fetch starts again and
    /// the file holds the newer one alone, never a mix; one that keeps changing is refused.
    #[test]
    fn a_snapshot_replaced_mid_fetch_restarts_the_fetch_and_is_never_mixed() {
        let old = Arc::new(snapshot(100));
        let new = Arc::new(snapshot(120));
        let mut node = FakeNode {
            snapshots: vec![(10, old), (20, Arc::clone(&new))],
            replace_after: Some(3),
            reads: 0,
        };
        let (_dir, mut file) = fetched_file();
        let fetched = fetch(|offset, max| node.read(offset, max), 1000, &mut file).expect("ok");
        assert_eq!((fetched.header.index, fetched.restarts), (20, 1));
        assert_eq!(body(&mut file), *new);

        let changing: Vec<_> = (0..10).map(|n| (n, Arc::new(snapshot(100 + n)))).collect();
        let mut node = FakeNode {
            snapshots: changing,
            replace_after: Some(2),
            reads: 0,
        };
        let error = fetch(|offset, max| node.read(offset, max), 1000, &mut file)
            .expect_err("it keeps changing");
        assert!(
            matches!(
                error,
                FetchError::KeptChanging {
                    restarts: MAX_FETCH_RESTARTS
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn a_piece_that_breaks_the_protocol_is_refused() {
        let (_dir, mut file) = fetched_file();
        let piece = |offset, data: Vec<u8>| SnapshotPiece {
            index: 1,
            term: 1,
            size: 10,
            crc: 0,
            offset,
            data,
        };
        for (bad, max, expected) in [
            (
                piece(5, vec![0; 2]),
                1000,
                "asked for offset 0, got a piece at 5",
            ),
            (piece(0, vec![0; 5]), 4, "asked for 4 bytes, got 5"),
            (
                piece(0, vec![0; 11]),
                1000,
                "runs past the snapshot's 10 bytes",
            ),
            (piece(0, Vec::new()), 1000, "an empty piece at 0"),
        ] {
            let mut once = Some(bad);
            let error = fetch(|_, _| Ok(once.take().expect("one read")), max, &mut file);
            match error {
                Err(FetchError::BadPiece { reason }) => {
                    assert!(reason.contains(expected), "{reason}");
                }
                other => panic!("expected a bad piece, got {other:?}"),
            }
        }
    }
}
