//! The envelope: the fixed 22-byte header in front of every datagram's body.
//!
//! ```text
//! offset  size  field
//!      0     4  magic        b"BLSA"
//!      4     1  version      3 (1, before sealing, and 2, sealed with XChaCha20-Poly1305 before
//!                            it was released, are dropped as a bad version)
//!      5     1  kind         1 peer message, 2 client request, 3 client response;
//!                            + 0x80 (SEALED) when what follows is sealed (`seal`)
//!      6     8  cluster id   u64, little-endian (0: "any", see below)
//!     14     8  from         u64, little-endian: the sender's node id (0 for a client)
//!     22     …  body         plaintext: the message, encoded by `codec`;
//!                            sealed: nonce, ciphertext and tag, laid out in `seal`
//! ```
//!
//! The header is checked completely, in this order, before a single byte of the body is looked
//! at: length, magic, version, cluster id, kind. This file knows nothing of the body's encoding
//! nor of sealing: whether the sealed bit is what the receiver requires is the codec's check.
//!
//! # The cluster rule
//!
//! Cluster id 0 ([`ANY_CLUSTER`]) is the wildcard of a client that does not know its cluster's
//! id. A receiver whose own id is `ours` accepts a datagram carrying `theirs` when:
//!
//! - `theirs == ours` (every kind: peers always need this exact match);
//! - or `ours` is 0: a client that does not know its cluster accepts answers of any;
//! - or `theirs` is 0 and the kind byte says client request: a node answers a client that does
//!   not know the cluster's id (with its own id in the answer's header).
//!
//! Anything else is [`DropReason::WrongCluster`]. The cluster check reads the kind byte raw
//! (without the sealed bit), before the kind itself is checked, so the order of the checks (and
//! what each drop is counted as) is unchanged.

use crate::DropReason;

/// First four bytes of every datagram.
pub const MAGIC: [u8; 4] = *b"BLSA";
/// The protocol version this build speaks. A datagram with any other is dropped. Version 2
/// added sealing (the kind byte's [`SEALED`] bit) and the status report's security counters;
/// version 3 seals with AES-256-GCM under per-sealer subkeys (`seal.rs`) in the same layout.
pub const VERSION: u8 = 3;
/// The kind byte's bit that says the rest of the datagram is sealed.
pub const SEALED: u8 = 0x80;
/// Bytes before the body.
pub const HEADER_LEN: usize = 22;
/// The cluster id that stands for "any cluster": what a client that does not know its
/// cluster's id sends and expects (see the module documentation for the rule).
pub const ANY_CLUSTER: u64 = 0;

const KIND_AT: usize = 5;
const CLUSTER_AT: usize = 6;
const FROM_AT: usize = 14;

/// What a datagram carries, which decides how the receiver checks its sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Node to node. Accepted only from a sender id in the peer table, at that peer's address.
    Peer = 1,
    /// Client to node. Accepted from any address.
    Request = 2,
    /// Node to client. Accepted from any address.
    Response = 3,
}

impl Kind {
    fn from_byte(byte: u8) -> Option<Kind> {
        match byte {
            1 => Some(Kind::Peer),
            2 => Some(Kind::Request),
            3 => Some(Kind::Response),
            _ => None,
        }
    }
}

/// Bytes of a sealed datagram's nonce, after the header (the layout is in `seal.rs`).
pub(crate) const NONCE_LEN: usize = 24;
/// Bytes of the boot id and sequence number, encrypted in front of a sealed body.
pub(crate) const SEQUENCE_LEN: usize = 16;
/// Bytes of a sealed datagram's tag, after the ciphertext.
pub(crate) const TAG_LEN: usize = 16;
/// Bytes a sealed datagram has beyond the plaintext one: nonce, boot id and sequence, tag. The
/// same in every build, so that message budgets do not depend on the `seal` feature.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + SEQUENCE_LEN + TAG_LEN;
/// Where the body starts in a sealed datagram.
pub(crate) const SEALED_BODY_AT: usize = HEADER_LEN + NONCE_LEN + SEQUENCE_LEN;

/// The kind byte of a notice: never a [`Kind`], so never delivered as a message.
const NOTICE_KIND: u8 = 4;
/// Bytes in a notice: a header and one byte of reason.
pub(crate) const NOTICE_LEN: usize = HEADER_LEN + 1;

/// What a node tells a client whose request it could not open: a plaintext datagram (kind byte
/// 4, one byte of reason after the header), sent at most [`NOTICES_PER_SECOND`] times a second,
/// and only for a request longer than itself.
/// It is not authenticated (whoever sent it, a client without the key could not check it), so a
/// client uses it only to word the error of a request that failed anyway, never to act on.
///
/// [`NOTICES_PER_SECOND`]: crate::NOTICES_PER_SECOND
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The request was not sealed under this node's client key (another key, or none).
    AuthFailed = 1,
    /// The request was sealed, and this node runs without keys (`--insecure`).
    NotSealing = 2,
}

/// Writes the notice `notice` from node `from` of cluster `cluster_id`.
pub(crate) fn write_notice(notice: Notice, cluster_id: u64, from: u64) -> [u8; NOTICE_LEN] {
    let mut out = [0; NOTICE_LEN];
    out[..KIND_AT - 1].copy_from_slice(&MAGIC);
    out[KIND_AT - 1] = VERSION;
    out[KIND_AT] = NOTICE_KIND;
    out[CLUSTER_AT..FROM_AT].copy_from_slice(&cluster_id.to_le_bytes());
    out[FROM_AT..HEADER_LEN].copy_from_slice(&from.to_le_bytes());
    out[HEADER_LEN] = notice as u8;
    out
}

/// The notice `datagram` is, if it is one (of any cluster: it is only a hint).
pub(crate) fn parse_notice(datagram: &[u8]) -> Option<Notice> {
    if datagram.len() != NOTICE_LEN
        || datagram[..4] != MAGIC
        || datagram[4] != VERSION
        || datagram[KIND_AT] != NOTICE_KIND
    {
        return None;
    }
    match datagram[HEADER_LEN] {
        1 => Some(Notice::AuthFailed),
        2 => Some(Notice::NotSealing),
        _ => None,
    }
}

/// A checked header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// What the datagram carries.
    pub kind: Kind,
    /// The sender's node id; 0 for a client.
    pub from: u64,
    /// Whether the rest is sealed (the kind byte's [`SEALED`] bit).
    pub sealed: bool,
}

/// Writes the header for a datagram of `kind` from `from` in cluster `cluster_id` into `out`,
/// with the sealed bit if `sealed`.
pub(crate) fn write_header(
    out: &mut [u8; HEADER_LEN],
    kind: Kind,
    sealed: bool,
    cluster_id: u64,
    from: u64,
) {
    out[..KIND_AT - 1].copy_from_slice(&MAGIC);
    out[KIND_AT - 1] = VERSION;
    out[KIND_AT] = kind as u8 | if sealed { SEALED } else { 0 };
    out[CLUSTER_AT..FROM_AT].copy_from_slice(&cluster_id.to_le_bytes());
    out[FROM_AT..HEADER_LEN].copy_from_slice(&from.to_le_bytes());
}

/// Checks the header of `datagram` for a receiver of cluster `cluster_id` (by the cluster rule
/// of the module documentation); returns it and the body.
///
/// # Errors
/// The first check that fails, as the reason the datagram is dropped. An unknown kind byte is
/// [`DropReason::Undecodable`]: the header's own fields were fine, its content is not.
pub(crate) fn parse_header(
    datagram: &[u8],
    cluster_id: u64,
) -> Result<(Header, &[u8]), DropReason> {
    let Some((header, body)) = datagram.split_first_chunk::<HEADER_LEN>() else {
        return Err(DropReason::TooShort);
    };
    if header[..4] != MAGIC {
        return Err(DropReason::BadMagic);
    }
    if header[4] != VERSION {
        return Err(DropReason::BadVersion);
    }
    let kind_byte = header[KIND_AT] & !SEALED;
    if !accepts_cluster(cluster_id, read_u64(header, CLUSTER_AT), kind_byte) {
        return Err(DropReason::WrongCluster);
    }
    let kind = Kind::from_byte(kind_byte).ok_or(DropReason::Undecodable)?;
    let from = read_u64(header, FROM_AT);
    let sealed = header[KIND_AT] & SEALED != 0;
    Ok((Header { kind, from, sealed }, body))
}

/// The cluster rule: whether a receiver of cluster `ours` accepts a datagram of cluster `theirs`
/// whose kind byte is `kind`.
fn accepts_cluster(ours: u64, theirs: u64, kind: u8) -> bool {
    theirs == ours || ours == ANY_CLUSTER || (theirs == ANY_CLUSTER && kind == Kind::Request as u8)
}

fn read_u64(header: &[u8; HEADER_LEN], at: usize) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&header[at..at + 8]);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: Kind, cluster: u64, from: u64) -> [u8; HEADER_LEN] {
        let mut out = [0; HEADER_LEN];
        write_header(&mut out, kind, false, cluster, from);
        out
    }

    #[test]
    fn layout_is_as_documented() {
        let bytes = header(Kind::Response, 0x0102_0304_0506_0708, 9);
        assert_eq!(&bytes[..4], b"BLSA");
        assert_eq!(bytes[4], 3);
        assert_eq!(bytes[5], 3);
        let mut sealed = [0; HEADER_LEN];
        write_header(&mut sealed, Kind::Response, true, 1, 9);
        assert_eq!(sealed[5], 0x83);
        assert_eq!(bytes[6..14], [8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(bytes[14..22], [9, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn parses_what_it_writes() {
        for kind in [Kind::Peer, Kind::Request, Kind::Response] {
            let mut datagram = header(kind, 7, 3).to_vec();
            datagram.extend_from_slice(b"body");
            let (parsed, body) = parse_header(&datagram, 7).expect("valid header");
            assert_eq!(
                parsed,
                Header {
                    kind,
                    from: 3,
                    sealed: false
                }
            );
            assert_eq!(body, b"body");
            let mut sealed = [0; HEADER_LEN];
            write_header(&mut sealed, kind, true, 7, 3);
            let (parsed, _) = parse_header(&sealed, 7).expect("valid header");
            assert!(parsed.sealed && parsed.kind == kind);
        }
    }

    #[test]
    fn each_field_is_checked_in_order() {
        let good = header(Kind::Peer, 7, 3);
        assert_eq!(
            parse_header(&good[..HEADER_LEN - 1], 7),
            Err(DropReason::TooShort)
        );
        assert_eq!(parse_header(&good, 8), Err(DropReason::WrongCluster));
        let mut bad = good;
        bad[0] = b'X';
        bad[4] = 9; // magic is checked first
        assert_eq!(parse_header(&bad, 7), Err(DropReason::BadMagic));
        bad[0] = b'B';
        assert_eq!(parse_header(&bad, 7), Err(DropReason::BadVersion));
        let mut bad = good;
        bad[5] = 0;
        assert_eq!(parse_header(&bad, 7), Err(DropReason::Undecodable));
    }

    #[test]
    fn peers_and_responses_need_the_exact_cluster() {
        for kind in [Kind::Peer, Kind::Response] {
            assert_eq!(
                parse_header(&header(kind, 8, 3), 7),
                Err(DropReason::WrongCluster)
            );
            assert_eq!(
                parse_header(&header(kind, ANY_CLUSTER, 3), 7),
                Err(DropReason::WrongCluster),
                "{kind:?}: the wildcard is for client requests only"
            );
        }
    }

    #[test]
    fn a_node_accepts_client_requests_of_its_cluster_or_the_wildcard_only() {
        for theirs in [7, ANY_CLUSTER] {
            let (parsed, _) = parse_header(&header(Kind::Request, theirs, 0), 7).expect("accepted");
            assert_eq!(parsed.kind, Kind::Request);
        }
        assert_eq!(
            parse_header(&header(Kind::Request, 8, 0), 7),
            Err(DropReason::WrongCluster)
        );
    }

    #[test]
    fn a_receiver_of_any_cluster_accepts_every_cluster() {
        for theirs in [1, 7, u64::MAX, ANY_CLUSTER] {
            for kind in [Kind::Peer, Kind::Request, Kind::Response] {
                assert!(parse_header(&header(kind, theirs, 3), ANY_CLUSTER).is_ok());
            }
        }
    }

    #[test]
    fn a_notice_is_never_a_message() {
        for notice in [Notice::AuthFailed, Notice::NotSealing] {
            let bytes = write_notice(notice, 7, 2);
            assert_eq!(parse_notice(&bytes), Some(notice));
            assert_eq!(parse_header(&bytes, 7), Err(DropReason::Undecodable));
            assert_eq!(parse_notice(&bytes[..NOTICE_LEN - 1]), None);
        }
        assert_eq!(parse_notice(&header(Kind::Response, 7, 2)), None);
    }

    #[test]
    fn an_unknown_kind_with_the_wildcard_is_still_the_wrong_cluster() {
        // The wildcard is allowed for the request kind byte alone; an unknown kind with cluster
        // 0 fails the cluster check first, as the order says.
        let mut bad = header(Kind::Request, ANY_CLUSTER, 0);
        bad[KIND_AT] = 9;
        assert_eq!(parse_header(&bad, 7), Err(DropReason::WrongCluster));
    }
}
