//! The envelope: the fixed 22-byte header in front of every datagram's body.
//!
//! ```text
//! offset  size  field
//!      0     4  magic        b"BLSA"
//!      4     1  version      1
//!      5     1  kind         1 peer message, 2 client request, 3 client response
//!      6     8  cluster id   u64, little-endian
//!     14     8  from         u64, little-endian: the sender's node id (0 for a client)
//!     22     …  body         the message, encoded by `codec`
//! ```
//!
//! The header is checked completely, in this order, before a single byte of the body is looked
//! at: length, magic, version, cluster id, kind. This file knows nothing of the body's encoding.

use crate::DropReason;

/// First four bytes of every datagram.
pub const MAGIC: [u8; 4] = *b"BLSA";
/// The protocol version this build speaks. A datagram with any other is dropped.
pub const VERSION: u8 = 1;
/// Bytes before the body.
pub const HEADER_LEN: usize = 22;

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

/// A checked header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// What the datagram carries.
    pub kind: Kind,
    /// The sender's node id; 0 for a client.
    pub from: u64,
}

/// Writes the header for a datagram of `kind` from `from` in cluster `cluster_id` into `out`.
pub(crate) fn write_header(out: &mut [u8; HEADER_LEN], kind: Kind, cluster_id: u64, from: u64) {
    out[..KIND_AT - 1].copy_from_slice(&MAGIC);
    out[KIND_AT - 1] = VERSION;
    out[KIND_AT] = kind as u8;
    out[CLUSTER_AT..FROM_AT].copy_from_slice(&cluster_id.to_le_bytes());
    out[FROM_AT..HEADER_LEN].copy_from_slice(&from.to_le_bytes());
}

/// Checks the header of `datagram` for cluster `cluster_id`; returns it and the body.
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
    if read_u64(header, CLUSTER_AT) != cluster_id {
        return Err(DropReason::WrongCluster);
    }
    let kind = Kind::from_byte(header[KIND_AT]).ok_or(DropReason::Undecodable)?;
    let from = read_u64(header, FROM_AT);
    Ok((Header { kind, from }, body))
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
        write_header(&mut out, kind, cluster, from);
        out
    }

    #[test]
    fn layout_is_as_documented() {
        let bytes = header(Kind::Response, 0x0102_0304_0506_0708, 9);
        assert_eq!(&bytes[..4], b"BLSA");
        assert_eq!(bytes[4], 1);
        assert_eq!(bytes[5], 3);
        assert_eq!(bytes[6..14], [8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(bytes[14..22], [9, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn parses_what_it_writes() {
        for kind in [Kind::Peer, Kind::Request, Kind::Response] {
            let mut datagram = header(kind, 7, 3).to_vec();
            datagram.extend_from_slice(b"body");
            let (parsed, body) = parse_header(&datagram, 7).expect("valid header");
            assert_eq!(parsed, Header { kind, from: 3 });
            assert_eq!(body, b"body");
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
}
