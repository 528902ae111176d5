//! Records: the unit of the log, their byte layout and their chained CRC.
//!
//! ```text
//! offset  size  field
//!      0     4  len    payload length in bytes (u32 LE)
//!      4     4  crc    CRC-32 (IEEE, crc32fast) seeded with the previous record's crc, over
//!                      bytes 0..4 (len) and 8..25+len (kind, index, term, payload)
//!      8     1  kind   1 entry, 2 hard state, 3 truncate-from, 4 sync mark, 5 seal
//!      9     8  index  u64 LE, meaning depends on kind
//!     17     8  term   u64 LE, meaning depends on kind
//!     25   len  payload
//! ```
//!
//! Invariant kept here: a record validates only under the crc of the record that preceded it when
//! it was written (the chain). A record left behind a rewritten or cut tail was chained from a
//! different predecessor, so it cannot validate where the new chain reaches it.
//!
//! A sync mark additionally carries, as its payload, a crc of its own header seeded from its
//! segment's sequence number alone. That lets recovery recognise a mark found *past* a break in the
//! chain (see `recovery`), where the chain can no longer vouch for it.

/// Bytes of the fixed record header (len, crc, kind, index, term).
pub const RECORD_HEADER: usize = 25;
/// Payload bytes of a hard-state record: the vote (u64 LE, 0 for none).
pub const HARD_STATE_PAYLOAD: usize = 8;
/// Payload bytes of a sync mark: its self-check crc (u32 LE).
pub const MARK_PAYLOAD: usize = 4;
/// Total bytes of a hard-state record.
pub const HARD_STATE_RECORD: usize = RECORD_HEADER + HARD_STATE_PAYLOAD;
/// Total bytes of a sync mark.
pub const MARK_RECORD: usize = RECORD_HEADER + MARK_PAYLOAD;
/// Total bytes of a seal (and of a truncate-from) record.
pub const EMPTY_RECORD: usize = RECORD_HEADER;

/// What a record says. The numeric values are the on-disk `kind` byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A log entry: `index`, `term`, payload = the entry's bytes.
    Entry = 1,
    /// The hard state: `index` = commit index, `term` = current term, payload = vote.
    HardState = 2,
    /// Every entry at or after `index` is removed; the next entry appended has this index.
    TruncateFrom = 3,
    /// Everything in the log before byte `index` of segment `term` was durable when this was
    /// written. Payload: crc of this record's header seeded by [`mark_seed`] of its own segment.
    SyncMark = 4,
    /// The segment ends here; the log goes on in segment `term` (= this segment's seq + 1), whose
    /// first entry will have index `index`.
    Seal = 5,
}

impl Kind {
    /// The kind for an on-disk byte, if it is one.
    pub fn from_byte(byte: u8) -> Option<Kind> {
        match byte {
            1 => Some(Kind::Entry),
            2 => Some(Kind::HardState),
            3 => Some(Kind::TruncateFrom),
            4 => Some(Kind::SyncMark),
            5 => Some(Kind::Seal),
            _ => None,
        }
    }

    /// The payload length this kind must have, or `None` if any length is allowed.
    pub fn fixed_payload_len(self) -> Option<usize> {
        match self {
            Kind::Entry => None,
            Kind::HardState => Some(HARD_STATE_PAYLOAD),
            Kind::SyncMark => Some(MARK_PAYLOAD),
            Kind::TruncateFrom | Kind::Seal => Some(0),
        }
    }
}

/// A record header as read from the disk, before any of it is trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Payload length.
    pub len: u32,
    /// Stored crc.
    pub crc: u32,
    /// Raw kind byte.
    pub kind: u8,
    /// Index field.
    pub index: u64,
    /// Term field.
    pub term: u64,
}

impl Header {
    /// Reads a header from the first [`RECORD_HEADER`] bytes of `bytes`.
    pub fn read(bytes: &[u8]) -> Option<Header> {
        let bytes = bytes.get(..RECORD_HEADER)?;
        Some(Header {
            len: u32::from_le_bytes(bytes[0..4].try_into().ok()?),
            crc: u32::from_le_bytes(bytes[4..8].try_into().ok()?),
            kind: bytes[8],
            index: u64::from_le_bytes(bytes[9..17].try_into().ok()?),
            term: u64::from_le_bytes(bytes[17..25].try_into().ok()?),
        })
    }

    /// True when every header byte is zero: never-written space of a zero-filled segment.
    pub fn is_zero(&self) -> bool {
        self.len == 0 && self.crc == 0 && self.kind == 0 && self.index == 0 && self.term == 0
    }
}

/// The chained crc of the record whose header and payload are `record` (len field included,
/// crc field skipped), seeded with `seed`.
pub fn chained_crc(seed: u32, record: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new_with_initial(seed);
    hasher.update(&record[0..4]);
    hasher.update(&record[8..]);
    hasher.finalize()
}

/// The seed of a sync mark's self-check in segment `seq`. Independent of the chain on purpose.
pub fn mark_seed(seq: u64) -> u32 {
    let mut hasher = crc32fast::Hasher::new_with_initial(0x6d61_726b); // "mark"
    hasher.update(&seq.to_le_bytes());
    hasher.finalize()
}

/// The self-check crc a sync mark carries as its payload: over len, kind, index and term.
pub fn mark_self_crc(seq: u64, header_bytes: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new_with_initial(mark_seed(seq));
    hasher.update(&header_bytes[0..4]);
    hasher.update(&header_bytes[8..RECORD_HEADER]);
    hasher.finalize()
}

/// Appends one record to `out`, chained from `seed`, and returns its crc (the next seed).
///
/// `segment_seq` is only used for sync marks, whose payload is computed here.
pub fn encode(
    out: &mut Vec<u8>,
    seed: u32,
    kind: Kind,
    index: u64,
    term: u64,
    payload: &[u8],
    segment_seq: u64,
) -> u32 {
    debug_assert!(
        kind.fixed_payload_len()
            .is_none_or(|len| kind == Kind::SyncMark || len == payload.len())
    );
    let start = out.len();
    let len = match kind {
        Kind::SyncMark => MARK_PAYLOAD,
        _ => payload.len(),
    };
    // Callers bound payloads by the segment size, far below 4 GiB.
    let len_u32 = u32::try_from(len).expect("payload length is bounded by the segment size");
    out.extend_from_slice(&len_u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(kind as u8);
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&term.to_le_bytes());
    match kind {
        Kind::SyncMark => {
            let self_crc = mark_self_crc(segment_seq, &out[start..start + RECORD_HEADER]);
            out.extend_from_slice(&self_crc.to_le_bytes());
        }
        _ => out.extend_from_slice(payload),
    }
    let crc = chained_crc(seed, &out[start..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    crc
}

/// Checks the sync mark that starts at `bytes[0]` in segment `seq` on its own, without the chain.
/// Returns `(segment, offset)` it vouches for when it is a well-formed mark.
pub fn standalone_mark(seq: u64, bytes: &[u8]) -> Option<(u64, u64)> {
    let header = Header::read(bytes)?;
    if header.kind != Kind::SyncMark as u8 || header.len as usize != MARK_PAYLOAD {
        return None;
    }
    let stored = u32::from_le_bytes(bytes.get(RECORD_HEADER..MARK_RECORD)?.try_into().ok()?);
    (stored == mark_self_crc(seq, bytes)).then_some((header.term, header.index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoded_record_reads_back_and_validates_only_under_its_seed() {
        let mut out = Vec::new();
        let crc = encode(&mut out, 7, Kind::Entry, 42, 3, b"hello", 1);
        assert_eq!(out.len(), RECORD_HEADER + 5);
        let header = Header::read(&out).unwrap();
        assert_eq!(
            (header.len, header.kind, header.index, header.term),
            (5, 1, 42, 3)
        );
        assert_eq!(header.crc, crc);
        assert_eq!(chained_crc(7, &out), crc);
        assert_ne!(
            chained_crc(8, &out),
            crc,
            "a different predecessor must not validate"
        );
    }

    #[test]
    fn a_sync_mark_validates_standalone_only_in_its_own_segment() {
        let mut out = Vec::new();
        encode(&mut out, 99, Kind::SyncMark, 4096, 3, &[], 3);
        assert_eq!(out.len(), MARK_RECORD);
        assert_eq!(standalone_mark(3, &out), Some((3, 4096)));
        assert_eq!(standalone_mark(4, &out), None);
        out[12] ^= 1;
        assert_eq!(standalone_mark(3, &out), None);
    }
}
