//! A data directory's identity: the file `IDENTITY`, saying which cluster and which node the
//! directory belongs to and, for a node that bootstrapped its cluster, the members the cluster
//! was born with; and the cluster id's derivation at bootstrap.
//!
//! # The file
//!
//! Little-endian, 20 bytes of header, then the body:
//!
//! ```text
//! offset  size  field
//!      0     8  magic          b"BALSA-ID"
//!      8     4  version        u32: 1
//!     12     4  body length    u32: the bytes after the header
//!     16     4  CRC-32         u32: of the body (IEEE, crc32fast)
//!     20     …  body
//!
//! body:
//!      0     8  cluster id     u64, never 0
//!      8     8  node id        u64, never 0
//!     16     1  bootstrap      0: the node joined an existing cluster (the body ends here)
//!                              1: the node bootstrapped it; the members follow
//!     17     4  member count   u32 (bootstrap = 1 only)
//!     21     …  the members in the order recorded (a bootstrap sorts them by (id, address)),
//!               each: node id u64, then the address (below)
//!
//! address: family u8 4, IPv4 octets (4), port u16                        (7 bytes)
//!      or: family u8 6, IPv6 octets (16), port u16, flowinfo u32, scope id u32   (27 bytes)
//! ```
//!
//! # Deriving a cluster id
//!
//! Every bootstrapping member computes the same id without talking: [`derive_cluster_id`] is
//! FNV-1a 64 (offset basis `0xcbf29ce484222325`, prime `0x100000001b3`, written here rather than
//! taken from std's `DefaultHasher`, which is not stable across Rust versions) over
//!
//! ```text
//! b"balsa cluster id 1"            the derivation's own name and version (18 bytes)
//! member count                     u64
//! each member, by (id, address)    node id u64, then the address as in the file
//! token length                     u64
//! token                            its UTF-8 bytes
//! ```
//!
//! A hash of 0 (the clients' "any cluster") becomes 1.
//!
//! # Invariants
//!
//! - **Written atomically**: `IDENTITY.tmp`, written whole and fsynced, renamed over `IDENTITY`,
//!   then the directory fsynced. A crash leaves the old file or the new one, never a mix (a
//!   left-over `IDENTITY.tmp` is ignored and replaced by the next write).
//! - **Read bounded**: a file over [`MAX_IDENTITY_BYTES`] (64 KiB) is refused before anything
//!   is read, and the read itself stops one byte past the limit (the file may grow meanwhile).
//!   No length or count in the file is trusted: the body length is checked against the file's
//!   size and the member count against the bytes left before anything is reserved.
//! - **Never misread**: every byte is covered by the magic, the version, the length or the CRC;
//!   a damaged, truncated, unknown-version or oversized file is an [`IdentityError`] naming the
//!   file, never a panic and never a wrong identity.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::raft::NodeId;

/// The identity file's name in a data directory.
pub const IDENTITY_FILE: &str = "IDENTITY";
/// Where a new identity is written before it is renamed into place.
const IDENTITY_TEMP: &str = "IDENTITY.tmp";
/// The largest identity file read (64 KiB): room for about 1,800 IPv4 bootstrap members.
pub const MAX_IDENTITY_BYTES: u64 = 64 * 1024;

const MAGIC: [u8; 8] = *b"BALSA-ID";
/// The format this build writes and reads.
pub const IDENTITY_VERSION: u32 = 1;
const HEADER_LEN: usize = 20;
/// Body bytes before the member list: cluster id, node id, bootstrap flag.
const FIXED_BODY: usize = 17;
/// The smallest member: a node id and an IPv4 address.
const MIN_MEMBER: usize = 8 + 7;

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const DERIVATION_NAME: &[u8] = b"balsa cluster id 1";

/// Which cluster and which node a data directory belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The cluster's id, carried in every datagram; never 0.
    pub cluster_id: u64,
    /// The node the directory belongs to.
    pub node_id: NodeId,
    /// The members the cluster was born with, for a node that bootstrapped it (in the order
    /// recorded: [`Identity::bootstrap`] sorts them by (id, address)); `None` for a node that
    /// joined an existing cluster.
    pub bootstrap: Option<Vec<(NodeId, SocketAddr)>>,
}

impl Identity {
    /// The identity of a node bootstrapping a cluster of `members` with `token`: the derived
    /// cluster id and the members, sorted.
    pub fn bootstrap(node_id: NodeId, members: &[(NodeId, SocketAddr)], token: &str) -> Identity {
        Identity {
            cluster_id: derive_cluster_id(members, token),
            node_id,
            bootstrap: Some(sorted(members)),
        }
    }

    /// The path of the identity file in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(IDENTITY_FILE)
    }

    /// Reads the identity file of `dir`: `None` if there is none.
    ///
    /// # Errors
    /// An [`IdentityError`] naming the file: it cannot be read, is over [`MAX_IDENTITY_BYTES`],
    /// or is not a whole, undamaged identity of a known version.
    pub fn load(dir: &Path) -> Result<Option<Identity>, IdentityError> {
        let path = Identity::path(dir);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(IdentityError::io("open", &path, error)),
        };
        let size = file
            .metadata()
            .map_err(|error| IdentityError::io("stat", &path, error))?
            .len();
        if size > MAX_IDENTITY_BYTES {
            return Err(IdentityError::TooLarge {
                path,
                size,
                limit: MAX_IDENTITY_BYTES,
            });
        }
        let mut bytes = Vec::new();
        // One byte past the limit at most, whatever the file grew to since the stat.
        file.take(MAX_IDENTITY_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| IdentityError::io("read", &path, error))?;
        if bytes.len() as u64 > MAX_IDENTITY_BYTES {
            return Err(IdentityError::TooLarge {
                path,
                size: bytes.len() as u64,
                limit: MAX_IDENTITY_BYTES,
            });
        }
        Identity::decode(&bytes, &path).map(Some)
    }

    /// Writes the identity file of `dir` atomically and durably (see the module documentation).
    ///
    /// # Errors
    /// [`IdentityError::Io`] naming the file and the step that failed;
    /// [`IdentityError::TooLarge`] for a bootstrap list too long for [`MAX_IDENTITY_BYTES`].
    pub fn store(&self, dir: &Path) -> Result<(), IdentityError> {
        let path = Identity::path(dir);
        let bytes = self.encode();
        if bytes.len() as u64 > MAX_IDENTITY_BYTES {
            return Err(IdentityError::TooLarge {
                path,
                size: bytes.len() as u64,
                limit: MAX_IDENTITY_BYTES,
            });
        }
        let temp = dir.join(IDENTITY_TEMP);
        let write = || -> io::Result<()> {
            let mut file = File::create(&temp)?;
            file.write_all(&bytes)?;
            file.sync_all()
        };
        write().map_err(|error| IdentityError::io("write", &temp, error))?;
        fs::rename(&temp, &path).map_err(|error| IdentityError::io("rename", &path, error))?;
        File::open(dir)
            .and_then(|handle| handle.sync_all())
            .map_err(|error| IdentityError::io("fsync the directory of", &path, error))
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(FIXED_BODY + 4);
        body.extend_from_slice(&self.cluster_id.to_le_bytes());
        body.extend_from_slice(&self.node_id.to_le_bytes());
        match &self.bootstrap {
            None => body.push(0),
            Some(members) => {
                body.push(1);
                // More members than a u32 counts cannot fit the size limit either: `store`
                // refuses the file for its size, and the count saturates rather than wraps.
                let count = u32::try_from(members.len()).unwrap_or(u32::MAX);
                body.extend_from_slice(&count.to_le_bytes());
                for member in members {
                    encode_member(&mut body, *member);
                }
            }
        }
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&IDENTITY_VERSION.to_le_bytes());
        let length = u32::try_from(body.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Reads an identity from the bytes of the file at `path` (named in the errors).
    ///
    /// # Errors
    /// The first check that fails, in this order: header size, magic, version, body length,
    /// CRC, then the body's fields.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<Identity, IdentityError> {
        let path = || path.to_path_buf();
        let Some((header, body)) = bytes.split_first_chunk::<HEADER_LEN>() else {
            return Err(IdentityError::Truncated {
                path: path(),
                size: bytes.len() as u64,
                needed: HEADER_LEN as u64,
            });
        };
        let mut fields = Reader::new(header);
        if fields.array::<8>() != Some(MAGIC) {
            return Err(IdentityError::BadMagic { path: path() });
        }
        let version = fields.u32().unwrap_or_default();
        if version != IDENTITY_VERSION {
            return Err(IdentityError::UnknownVersion {
                path: path(),
                version,
            });
        }
        let length = u64::from(fields.u32().unwrap_or_default());
        let stored_crc = fields.u32().unwrap_or_default();
        let actual = body.len() as u64;
        if actual < length {
            return Err(IdentityError::Truncated {
                path: path(),
                size: bytes.len() as u64,
                needed: HEADER_LEN as u64 + length,
            });
        }
        if actual > length {
            return Err(IdentityError::TrailingBytes {
                path: path(),
                extra: actual - length,
            });
        }
        let computed_crc = crc32fast::hash(body);
        if computed_crc != stored_crc {
            return Err(IdentityError::BadChecksum {
                path: path(),
                stored: stored_crc,
                computed: computed_crc,
            });
        }
        decode_body(body).map_err(|reason| IdentityError::Malformed {
            path: path(),
            reason,
        })
    }
}

/// The fields of a body whose length and CRC were checked.
fn decode_body(body: &[u8]) -> Result<Identity, &'static str> {
    let mut fields = Reader::new(body);
    let cluster_id = fields.u64().ok_or("the body ends inside the cluster id")?;
    let node_id = fields.u64().ok_or("the body ends inside the node id")?;
    if cluster_id == 0 {
        return Err("cluster id 0");
    }
    if node_id == 0 {
        return Err("node id 0");
    }
    let bootstrap = match fields
        .u8()
        .ok_or("the body ends before the bootstrap flag")?
    {
        0 => None,
        1 => {
            let count = fields
                .u32()
                .ok_or("the body ends inside the member count")?;
            let count = usize::try_from(count).map_err(|_| "more members than memory")?;
            // Checked before reserving: every member takes at least MIN_MEMBER bytes.
            if count > fields.left() / MIN_MEMBER {
                return Err("the member count claims more members than the bytes left hold");
            }
            let mut members = Vec::with_capacity(count);
            for _ in 0..count {
                members.push(decode_member(&mut fields)?);
            }
            Some(members)
        }
        _ => return Err("unknown bootstrap flag (neither 0 nor 1)"),
    };
    if fields.left() > 0 {
        return Err("bytes left after the last field");
    }
    Ok(Identity {
        cluster_id,
        node_id,
        bootstrap,
    })
}

fn encode_member(out: &mut Vec<u8>, (id, address): (NodeId, SocketAddr)) {
    out.extend_from_slice(&id.to_le_bytes());
    match address {
        SocketAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.ip().octets());
            out.extend_from_slice(&v4.port().to_le_bytes());
        }
        SocketAddr::V6(v6) => {
            out.push(6);
            out.extend_from_slice(&v6.ip().octets());
            out.extend_from_slice(&v6.port().to_le_bytes());
            out.extend_from_slice(&v6.flowinfo().to_le_bytes());
            out.extend_from_slice(&v6.scope_id().to_le_bytes());
        }
    }
}

fn decode_member(fields: &mut Reader<'_>) -> Result<(NodeId, SocketAddr), &'static str> {
    let short = "the body ends inside a member";
    let id = fields.u64().ok_or(short)?;
    let address = match fields.u8().ok_or(short)? {
        4 => {
            let ip = Ipv4Addr::from(fields.array::<4>().ok_or(short)?);
            let port = fields.u16().ok_or(short)?;
            SocketAddr::V4(SocketAddrV4::new(ip, port))
        }
        6 => {
            let ip = Ipv6Addr::from(fields.array::<16>().ok_or(short)?);
            let port = fields.u16().ok_or(short)?;
            let flowinfo = fields.u32().ok_or(short)?;
            let scope_id = fields.u32().ok_or(short)?;
            SocketAddr::V6(SocketAddrV6::new(ip, port, flowinfo, scope_id))
        }
        _ => return Err("unknown address family (neither 4 nor 6)"),
    };
    Ok((id, address))
}

/// `members`, sorted by (id, address): the order the derivation hashes them in and a
/// bootstrapping node records them in.
fn sorted(members: &[(NodeId, SocketAddr)]) -> Vec<(NodeId, SocketAddr)> {
    let mut members = members.to_vec();
    members.sort_unstable_by_key(|&(id, address)| (id, address_key(address)));
    members
}

/// `SocketAddr` orders V4 before V6 and then by its fields; this key makes that order explicit
/// (so that it cannot change under us with std).
fn address_key(address: SocketAddr) -> (u8, IpAddr, u16) {
    match address {
        SocketAddr::V4(_) => (4, address.ip(), address.port()),
        SocketAddr::V6(_) => (6, address.ip(), address.port()),
    }
}

/// The cluster id every member bootstrapping a cluster of `members` with `token` derives
/// (the module documentation has the bytes hashed). Never 0; independent of the order
/// `members` are listed in.
pub fn derive_cluster_id(members: &[(NodeId, SocketAddr)], token: &str) -> u64 {
    let mut bytes = Vec::with_capacity(DERIVATION_NAME.len() + 16 + 35 * members.len());
    bytes.extend_from_slice(DERIVATION_NAME);
    bytes.extend_from_slice(&(members.len() as u64).to_le_bytes());
    for member in sorted(members) {
        encode_member(&mut bytes, member);
    }
    bytes.extend_from_slice(&(token.len() as u64).to_le_bytes());
    bytes.extend_from_slice(token.as_bytes());
    match fnv1a64(&bytes) {
        0 => 1,
        id => id,
    }
}

/// FNV-1a, 64 bits.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    })
}

/// How a cluster id is shown to people: 16 hex digits.
pub fn cluster_id_text(cluster_id: u64) -> String {
    format!("{cluster_id:016x}")
}

/// A cursor over bytes whose every read says `None` rather than run past the end.
struct Reader<'b> {
    rest: &'b [u8],
}

impl<'b> Reader<'b> {
    fn new(bytes: &'b [u8]) -> Reader<'b> {
        Reader { rest: bytes }
    }

    fn left(&self) -> usize {
        self.rest.len()
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, tail) = self.rest.split_first_chunk::<N>()?;
        self.rest = tail;
        Some(*head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[byte]| byte)
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }
}

/// Why an identity file cannot be read or written. Each names the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityError {
    /// A file operation failed.
    Io {
        /// What was being done ("read", "rename", …).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: SharedIoError,
    },
    /// The file is larger than any identity may be.
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// [`MAX_IDENTITY_BYTES`].
        limit: u64,
    },
    /// The file ends before its header, or before the body its header announces.
    Truncated {
        /// The file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// The size it needed to be.
        needed: u64,
    },
    /// The file goes on past the body its header announces.
    TrailingBytes {
        /// The file.
        path: PathBuf,
        /// How many bytes too many.
        extra: u64,
    },
    /// The file does not start with the identity magic: it is not an identity file.
    BadMagic {
        /// The file.
        path: PathBuf,
    },
    /// The file is of a format version this build does not know (a newer Balsa wrote it).
    UnknownVersion {
        /// The file.
        path: PathBuf,
        /// The version it claims.
        version: u32,
    },
    /// The body does not match its CRC: the file is damaged.
    BadChecksum {
        /// The file.
        path: PathBuf,
        /// The CRC in the header.
        stored: u32,
        /// The CRC of the body as read.
        computed: u32,
    },
    /// The body passed its CRC but does not hold a valid identity (only a bug writes one).
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
}

impl IdentityError {
    fn io(op: &'static str, path: &Path, error: io::Error) -> IdentityError {
        IdentityError::Io {
            op,
            path: path.to_path_buf(),
            source: SharedIoError(Arc::new(error)),
        }
    }
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityError::Io { op, path, source } => {
                write!(f, "{op} {}: {source}", path.display())
            }
            IdentityError::TooLarge { path, size, limit } => write!(
                f,
                "identity file {} is {size} bytes, over the {limit}-byte limit",
                path.display()
            ),
            IdentityError::Truncated { path, size, needed } => write!(
                f,
                "identity file {} is truncated: {size} bytes, {needed} needed",
                path.display()
            ),
            IdentityError::TrailingBytes { path, extra } => write!(
                f,
                "identity file {} has {extra} bytes after its body",
                path.display()
            ),
            IdentityError::BadMagic { path } => write!(
                f,
                "{} is not an identity file (wrong magic)",
                path.display()
            ),
            IdentityError::UnknownVersion { path, version } => write!(
                f,
                "identity file {} has format version {version}; this build reads version \
                 {IDENTITY_VERSION}",
                path.display()
            ),
            IdentityError::BadChecksum {
                path,
                stored,
                computed,
            } => write!(
                f,
                "identity file {} is damaged: CRC {computed:08x}, {stored:08x} recorded",
                path.display()
            ),
            IdentityError::Malformed { path, reason } => {
                write!(f, "identity file {} is malformed: {reason}", path.display())
            }
        }
    }
}

impl std::error::Error for IdentityError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            IdentityError::Io { source, .. } => Some(source.0.as_ref()),
            _ => None,
        }
    }
}

/// An `io::Error`, shared so that the errors holding it stay `Clone`, and equal to another when
/// both say the same thing.
#[derive(Debug, Clone)]
pub struct SharedIoError(Arc<io::Error>);

impl SharedIoError {
    /// The operating system's error.
    pub fn io(&self) -> &io::Error {
        &self.0
    }
}

impl PartialEq for SharedIoError {
    fn eq(&self, other: &SharedIoError) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

impl Eq for SharedIoError {}

impl fmt::Display for SharedIoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("a literal address")
    }

    fn members() -> Vec<(NodeId, SocketAddr)> {
        vec![
            (3, addr("127.0.0.1:7003")),
            (1, addr("127.0.0.1:7001")),
            (2, addr("[fe80::1%7]:7002")),
        ]
    }

    fn bootstrapped() -> Identity {
        Identity::bootstrap(2, &members(), "token")
    }

    fn joined() -> Identity {
        Identity {
            cluster_id: 0x0123_4567_89ab_cdef,
            node_id: 4,
            bootstrap: None,
        }
    }

    fn path() -> PathBuf {
        PathBuf::from("d2/IDENTITY")
    }

    /// Decodes `bytes`, expecting a refusal; returns its one line.
    fn refusal(bytes: &[u8]) -> (IdentityError, String) {
        let error = Identity::decode(bytes, &path()).expect_err("refused");
        let line = error.to_string();
        assert!(line.contains("d2/IDENTITY"), "names the file: {line}");
        (error, line)
    }

    /// The file's bytes with the body replaced by `body` (length and CRC made to fit it).
    fn with_body(body: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&IDENTITY_VERSION.to_le_bytes());
        let length = u32::try_from(body.len()).expect("a test body is a few dozen bytes");
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn an_identity_round_trips_through_its_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(
            Identity::load(dir.path()).expect("no file is no error"),
            None
        );
        for identity in [bootstrapped(), joined()] {
            identity.store(dir.path()).expect("stored");
            assert_eq!(
                Identity::load(dir.path()).expect("loads"),
                Some(identity.clone())
            );
            assert!(
                !dir.path().join(IDENTITY_TEMP).exists(),
                "renamed into place"
            );
        }
    }

    #[test]
    fn the_layout_is_as_documented() {
        let bytes = joined().encode();
        assert_eq!(&bytes[..8], b"BALSA-ID");
        assert_eq!(bytes[8..12], [1, 0, 0, 0]);
        assert_eq!(bytes[12..16], [17, 0, 0, 0]);
        assert_eq!(bytes[16..20], crc32fast::hash(&bytes[20..]).to_le_bytes());
        assert_eq!(bytes[20..28], 0x0123_4567_89ab_cdef_u64.to_le_bytes());
        assert_eq!(bytes[28..36], 4_u64.to_le_bytes());
        assert_eq!(bytes[36], 0);
        assert_eq!(bytes.len(), 37);
        let bytes = bootstrapped().encode();
        assert_eq!(bytes[36], 1);
        assert_eq!(bytes[37..41], [3, 0, 0, 0]);
        // Members sorted by id: node 1 (IPv4) first.
        assert_eq!(bytes[41..49], 1_u64.to_le_bytes());
        assert_eq!(bytes[49..56], [4, 127, 0, 0, 1, 0x59, 0x1b]);
        // Node 2 (IPv6): 8 + 1 + 16 + 2 + 4 + 4 bytes, its scope id last.
        assert_eq!(bytes[56..64], 2_u64.to_le_bytes());
        assert_eq!(bytes[64], 6);
        assert_eq!(bytes[87..91], 7_u32.to_le_bytes());
        assert_eq!(bytes.len(), 41 + 15 + 35 + 15);
    }

    #[test]
    fn every_cut_of_the_file_is_refused_as_truncated() {
        let bytes = bootstrapped().encode();
        for cut in 0..bytes.len() {
            let (error, line) = refusal(&bytes[..cut]);
            assert!(
                matches!(error, IdentityError::Truncated { size, .. } if size == cut as u64),
                "cut at {cut}: {line}"
            );
            assert!(line.contains("is truncated"), "{line}");
        }
    }

    #[test]
    fn every_flipped_bit_is_refused_never_misread() {
        let bytes = bootstrapped().encode();
        for at in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[at] ^= 1 << bit;
                let (error, line) = refusal(&damaged);
                let expected = match at {
                    0..8 => matches!(error, IdentityError::BadMagic { .. }),
                    8..12 => matches!(error, IdentityError::UnknownVersion { .. }),
                    12..16 => matches!(
                        error,
                        IdentityError::Truncated { .. } | IdentityError::TrailingBytes { .. }
                    ),
                    _ => matches!(error, IdentityError::BadChecksum { .. }),
                };
                assert!(expected, "bit {bit} of byte {at}: {line}");
            }
        }
    }

    #[test]
    fn each_corruption_is_refused_with_its_message() {
        let good = joined().encode();
        let mut wrong_magic = good.clone();
        wrong_magic[..8].copy_from_slice(b"NOT-BALS");
        let mut newer = good.clone();
        newer[8..12].copy_from_slice(&2_u32.to_le_bytes());
        let mut damaged = good.clone();
        damaged[30] ^= 0x40;
        let mut trailing = good.clone();
        trailing.extend_from_slice(&[0, 0]);
        let cases: [(Vec<u8>, &str); 5] = [
            (
                wrong_magic,
                "d2/IDENTITY is not an identity file (wrong magic)",
            ),
            (
                newer,
                "identity file d2/IDENTITY has format version 2; this build reads version 1",
            ),
            (damaged, "identity file d2/IDENTITY is damaged: CRC "),
            (
                trailing,
                "identity file d2/IDENTITY has 2 bytes after its body",
            ),
            (
                good[..10].to_vec(),
                "identity file d2/IDENTITY is truncated: 10 bytes, 20 needed",
            ),
        ];
        for (bytes, says) in cases {
            let (_, line) = refusal(&bytes);
            assert!(line.starts_with(says), "{line}");
        }
    }

    #[test]
    fn a_body_that_passes_its_crc_is_still_checked_field_by_field() {
        let id = |cluster: u64, node: u64| {
            let mut body = cluster.to_le_bytes().to_vec();
            body.extend_from_slice(&node.to_le_bytes());
            body
        };
        let member_count_lie = {
            let mut body = id(5, 1);
            body.push(1);
            body.extend_from_slice(&u32::MAX.to_le_bytes());
            body.extend_from_slice(&[0; 14]);
            body
        };
        let bad_family = {
            let mut body = id(5, 1);
            body.push(1);
            body.extend_from_slice(&1_u32.to_le_bytes());
            body.extend_from_slice(&1_u64.to_le_bytes());
            body.extend_from_slice(&[5, 127, 0, 0, 1, 1, 0]);
            body
        };
        let cases: [(Vec<u8>, &str); 7] = [
            ([id(0, 1), vec![0]].concat(), "cluster id 0"),
            ([id(5, 0), vec![0]].concat(), "node id 0"),
            ([id(5, 1), vec![2]].concat(), "unknown bootstrap flag"),
            ([id(5, 1), vec![0, 0]].concat(), "bytes left after"),
            (id(5, 1), "ends before the bootstrap flag"),
            (member_count_lie, "claims more members than the bytes left"),
            (bad_family, "unknown address family"),
        ];
        for (body, says) in cases {
            let (error, line) = refusal(&with_body(&body));
            assert!(
                matches!(error, IdentityError::Malformed { .. }),
                "{says}: {line}"
            );
            assert!(line.contains(says), "{line}");
        }
        // The same framing around a valid body is accepted: the cases above fail for their field.
        assert!(Identity::decode(&with_body(&[id(5, 1), vec![0]].concat()), &path()).is_ok());
    }

    #[test]
    fn a_file_over_the_limit_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = File::create(Identity::path(dir.path())).expect("create");
        // Sparse: its size is what matters, not its bytes.
        file.set_len(MAX_IDENTITY_BYTES + 1).expect("set_len");
        let error = Identity::load(dir.path()).expect_err("refused");
        assert!(matches!(
            error,
            IdentityError::TooLarge { size, limit: MAX_IDENTITY_BYTES, .. }
                if size == MAX_IDENTITY_BYTES + 1
        ));
        assert!(
            error
                .to_string()
                .ends_with("IDENTITY is 65537 bytes, over the 65536-byte limit"),
            "{error}"
        );
    }

    #[test]
    fn a_bootstrap_list_too_long_for_the_limit_is_not_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let many: Vec<(NodeId, SocketAddr)> =
            (1..=5_000_u64).map(|id| (id, addr("[::1]:1"))).collect();
        let identity = Identity::bootstrap(1, &many, "");
        assert!(matches!(
            identity.store(dir.path()),
            Err(IdentityError::TooLarge { .. })
        ));
        assert!(!Identity::path(dir.path()).exists());
    }

    #[test]
    fn an_unreadable_identity_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        // A directory where the file should be: opening works, reading does not.
        fs::create_dir(Identity::path(dir.path())).expect("mkdir");
        let error = Identity::load(dir.path()).expect_err("refused");
        assert!(matches!(error, IdentityError::Io { .. }), "{error}");
        assert!(error.to_string().contains("IDENTITY"), "{error}");
        assert!(std::error::Error::source(&error).is_some());
    }

    #[test]
    fn the_derived_cluster_id_is_stable_and_ignores_the_listing_order() {
        let mut reversed = members();
        reversed.reverse();
        assert_eq!(
            derive_cluster_id(&members(), "token"),
            derive_cluster_id(&reversed, "token")
        );
        // Pinned: a change to the derivation would split clusters across an upgrade.
        let three = [
            (1, addr("127.0.0.1:7001")),
            (2, addr("127.0.0.1:7002")),
            (3, addr("127.0.0.1:7003")),
        ];
        assert_eq!(derive_cluster_id(&three, ""), PINNED_THREE_EMPTY_TOKEN);
    }

    /// `derive_cluster_id` of 1..3 on 127.0.0.1:7001..7003 with the empty token, computed by
    /// a separate implementation (a few lines of Python) from the documented bytes.
    const PINNED_THREE_EMPTY_TOKEN: u64 = 0xb55b_44df_504e_32ee;

    #[test]
    fn fnv1a64_matches_the_reference_vectors() {
        // From the FNV reference (draft-eastlake-fnv): "", "a", "foobar".
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn the_token_members_and_addresses_all_change_the_cluster_id() {
        let base = derive_cluster_id(&members(), "token");
        assert_ne!(base, derive_cluster_id(&members(), "token2"));
        assert_ne!(base, derive_cluster_id(&members(), ""));
        assert_ne!(base, derive_cluster_id(&members()[..2], "token"));
        let mut moved = members();
        moved[0].1 = addr("127.0.0.1:7004");
        assert_ne!(base, derive_cluster_id(&moved, "token"));
        let mut renumbered = members();
        renumbered[0].0 = 4;
        assert_ne!(base, derive_cluster_id(&renumbered, "token"));
        // A token cannot pass for a member: its length is hashed before it.
        assert_ne!(
            derive_cluster_id(&[], "ab"),
            derive_cluster_id(&[], "a\u{0}b")
        );
    }

    #[test]
    fn a_cluster_id_is_shown_as_16_hex_digits() {
        assert_eq!(cluster_id_text(0xab), "00000000000000ab");
        assert_eq!(cluster_id_text(u64::MAX), "ffffffffffffffff");
    }
}
