//! The byte-level pieces of the key-value service's encodings (commands, queries, answers and
//! snapshots): LEB128 varints, length-prefixed byte strings, optional byte strings, flags, a
//! version header; a writer onto a `Vec<u8>` and a bounds-checked reader with a typed error.
//!
//! Invariants the reader keeps, whatever the input:
//! - It never panics and never reads past the end (`offset <= input.len()` at all times).
//! - It never allocates from a length field before checking that length against its limit and
//!   against the bytes left, so it allocates at most as many bytes as it was given.
//! - Every value has exactly one accepted encoding (varints must be minimal, option markers and
//!   flags are 0 or 1), so bytes that decode re-encode to themselves.

use std::fmt;

/// The format version written first in every encoding. A decoder refuses any other.
pub const FORMAT_VERSION: u8 = 1;

/// The longest LEB128 encoding of a `u64`.
const MAX_VARINT_LEN: usize = 10;

/// A value was larger than its limit (found when checking before encoding, or when decoding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitExceeded {
    /// What was too large ("key", "value", …).
    pub what: &'static str,
    /// Its length in bytes.
    pub len: u64,
    /// The most allowed.
    pub max: usize,
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} bytes is too large (at most {} bytes)",
            self.what, self.len, self.max
        )
    }
}

impl std::error::Error for LimitExceeded {}

/// Bytes that are not a valid encoding, and where the decoder found out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// Byte offset in the input of the field that is wrong.
    pub offset: usize,
    /// What is wrong with it.
    pub kind: DecodeErrorKind,
}

/// What is wrong with an encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// The input ends inside a field.
    UnexpectedEnd {
        /// The field being read.
        what: &'static str,
    },
    /// The version header is not [`FORMAT_VERSION`].
    UnsupportedVersion {
        /// The version found.
        found: u8,
    },
    /// A tag byte names no known variant.
    UnknownTag {
        /// What the tag chooses between ("operation", "answer", …).
        what: &'static str,
        /// The tag found.
        tag: u8,
    },
    /// A varint is longer than 10 bytes, overflows 64 bits, or is not minimal.
    BadVarint {
        /// The field being read.
        what: &'static str,
    },
    /// A length is over its limit.
    TooLong(LimitExceeded),
    /// A text field is not UTF-8.
    InvalidUtf8 {
        /// The field being read.
        what: &'static str,
    },
    /// Bytes are left after a complete value.
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// The fields decode but break a rule of the format (order, consistency).
    Invalid {
        /// The rule broken.
        reason: &'static str,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let offset = self.offset;
        match &self.kind {
            DecodeErrorKind::UnexpectedEnd { what } => {
                write!(f, "input ends inside the {what} at offset {offset}")
            }
            DecodeErrorKind::UnsupportedVersion { found } => write!(
                f,
                "format version {found} at offset {offset} is not supported (expected {FORMAT_VERSION})"
            ),
            DecodeErrorKind::UnknownTag { what, tag } => {
                write!(f, "unknown {what} tag {tag:#04x} at offset {offset}")
            }
            DecodeErrorKind::BadVarint { what } => write!(
                f,
                "the {what} at offset {offset} is not a minimal 64-bit varint"
            ),
            DecodeErrorKind::TooLong(limit) => write!(f, "{limit} at offset {offset}"),
            DecodeErrorKind::InvalidUtf8 { what } => {
                write!(f, "the {what} at offset {offset} is not UTF-8")
            }
            DecodeErrorKind::TrailingBytes { count } => {
                write!(
                    f,
                    "{count} unexpected bytes after the end, at offset {offset}"
                )
            }
            DecodeErrorKind::Invalid { reason } => write!(f, "{reason} at offset {offset}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Appends the version header.
pub(crate) fn put_version(out: &mut Vec<u8>) {
    out.push(FORMAT_VERSION);
}

/// Appends `value` as an unsigned LEB128 varint (7 bits per byte, low first, high bit = more).
pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    // `to_le_bytes()[0]` is the low 8 bits, without a truncating cast.
    while value >= 0x80 {
        out.push((value.to_le_bytes()[0] & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value.to_le_bytes()[0]);
}

/// Appends `len(bytes)` as a varint, then the bytes.
pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends 0 for `None`, or 1 and the bytes for `Some`.
pub(crate) fn put_option(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => out.push(0),
        Some(bytes) => {
            out.push(1);
            put_bytes(out, bytes);
        }
    }
}

/// Appends a flag: 1 for true, 0 for false.
pub(crate) fn put_flag(out: &mut Vec<u8>, flag: bool) {
    out.push(u8::from(flag));
}

/// A cursor over untrusted bytes. Invariant: `offset <= input.len()`.
pub(crate) struct Reader<'a> {
    input: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `input`.
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Reader { input, offset: 0 }
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.input.len() - self.offset
    }

    /// An error at `offset`.
    pub(crate) fn error_at(offset: usize, kind: DecodeErrorKind) -> DecodeError {
        DecodeError { offset, kind }
    }

    /// The offset of the next byte.
    pub(crate) fn offset(&self) -> usize {
        self.offset
    }

    /// Reads the version header and checks it.
    pub(crate) fn version(&mut self) -> Result<(), DecodeError> {
        let start = self.offset;
        let found = self.u8("version")?;
        if found != FORMAT_VERSION {
            return Err(Self::error_at(
                start,
                DecodeErrorKind::UnsupportedVersion { found },
            ));
        }
        Ok(())
    }

    /// Reads one byte.
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let Some(&byte) = self.input.get(self.offset) else {
            return Err(Self::error_at(
                self.offset,
                DecodeErrorKind::UnexpectedEnd { what },
            ));
        };
        self.offset += 1;
        Ok(byte)
    }

    /// Reads a minimal LEB128 varint of at most 64 bits.
    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let start = self.offset;
        let bad = || Self::error_at(start, DecodeErrorKind::BadVarint { what });
        let mut value: u64 = 0;
        for position in 0..MAX_VARINT_LEN {
            let byte = self
                .u8(what)
                .map_err(|_| Self::error_at(start, DecodeErrorKind::UnexpectedEnd { what }))?;
            let bits = u64::from(byte & 0x7f);
            // The tenth byte holds bit 63 only.
            if position == MAX_VARINT_LEN - 1 && bits > 1 {
                return Err(bad());
            }
            value |= bits << (7 * position);
            if byte & 0x80 == 0 {
                // A zero last byte after the first would be a longer encoding of a shorter value.
                if byte == 0 && position > 0 {
                    return Err(bad());
                }
                return Ok(value);
            }
        }
        Err(bad())
    }

    /// Reads a count of elements each at least `min_element_len` bytes long; refuses one the
    /// remaining input cannot hold, so a caller may reserve for it.
    pub(crate) fn count(
        &mut self,
        what: &'static str,
        min_element_len: usize,
    ) -> Result<usize, DecodeError> {
        let start = self.offset;
        let count = self.varint(what)?;
        let room = self.remaining() / min_element_len.max(1);
        match usize::try_from(count) {
            Ok(count) if count <= room => Ok(count),
            _ => Err(Self::error_at(
                start,
                DecodeErrorKind::UnexpectedEnd { what },
            )),
        }
    }

    /// Reads a length-prefixed byte string of at most `max` bytes, without copying.
    pub(crate) fn slice(
        &mut self,
        what: &'static str,
        max: usize,
    ) -> Result<&'a [u8], DecodeError> {
        let start = self.offset;
        let len = self.varint(what)?;
        let too_long = || {
            Self::error_at(
                start,
                DecodeErrorKind::TooLong(LimitExceeded { what, len, max }),
            )
        };
        let len = usize::try_from(len).map_err(|_| too_long())?;
        if len > max {
            return Err(too_long());
        }
        if len > self.remaining() {
            return Err(Self::error_at(
                start,
                DecodeErrorKind::UnexpectedEnd { what },
            ));
        }
        // In bounds: `len <= remaining()`, so `offset + len <= input.len()`.
        let bytes = &self.input[self.offset..self.offset + len];
        self.offset += len;
        Ok(bytes)
    }

    /// Reads a length-prefixed byte string of at most `max` bytes.
    pub(crate) fn bytes(&mut self, what: &'static str, max: usize) -> Result<Vec<u8>, DecodeError> {
        self.slice(what, max).map(<[u8]>::to_vec)
    }

    /// Reads an optional byte string of at most `max` bytes (marker 0, or 1 and the bytes).
    pub(crate) fn option(
        &mut self,
        what: &'static str,
        max: usize,
    ) -> Result<Option<Vec<u8>>, DecodeError> {
        let start = self.offset;
        match self.u8(what)? {
            0 => Ok(None),
            1 => self.bytes(what, max).map(Some),
            tag => Err(Self::error_at(
                start,
                DecodeErrorKind::UnknownTag { what, tag },
            )),
        }
    }

    /// Reads a flag: 0 (false) or 1 (true); any other byte is refused.
    pub(crate) fn flag(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        let start = self.offset;
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(Self::error_at(
                start,
                DecodeErrorKind::UnknownTag { what, tag },
            )),
        }
    }

    /// Reads a length-prefixed UTF-8 string of at most `max` bytes.
    pub(crate) fn text(&mut self, what: &'static str, max: usize) -> Result<String, DecodeError> {
        let start = self.offset;
        let bytes = self.slice(what, max)?;
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(text.to_owned()),
            Err(_) => Err(Self::error_at(start, DecodeErrorKind::InvalidUtf8 { what })),
        }
    }

    /// Checks that the whole input was read.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(Self::error_at(
                self.offset,
                DecodeErrorKind::TrailingBytes { count },
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint_bytes(value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, value);
        out
    }

    #[test]
    fn varints_round_trip_at_every_width() {
        for shift in 0..64 {
            for value in [1u64 << shift, (1u64 << shift) - 1, (1u64 << shift) + 1] {
                let bytes = varint_bytes(value);
                assert!(bytes.len() <= MAX_VARINT_LEN);
                let mut reader = Reader::new(&bytes);
                assert_eq!(reader.varint("v"), Ok(value));
                assert_eq!(reader.finish(), Ok(()));
            }
        }
        assert_eq!(varint_bytes(u64::MAX).len(), MAX_VARINT_LEN);
        assert_eq!(
            Reader::new(&varint_bytes(u64::MAX)).varint("v"),
            Ok(u64::MAX)
        );
    }

    #[test]
    fn varints_refuse_overlong_overflowing_and_truncated_forms() {
        let bad = |bytes: &[u8]| Reader::new(bytes).varint("v").map_err(|error| error.kind);
        // 0 written in two bytes.
        assert_eq!(
            bad(&[0x80, 0x00]),
            Err(DecodeErrorKind::BadVarint { what: "v" })
        );
        // Eleven bytes.
        assert_eq!(
            bad(&[0xff; 11]),
            Err(DecodeErrorKind::BadVarint { what: "v" })
        );
        // Ten bytes whose last carries more than bit 63.
        let mut overflow = vec![0xff; 9];
        overflow.push(0x02);
        assert_eq!(
            bad(&overflow),
            Err(DecodeErrorKind::BadVarint { what: "v" })
        );
        // Ends inside.
        assert_eq!(
            bad(&[0x80]),
            Err(DecodeErrorKind::UnexpectedEnd { what: "v" })
        );
    }

    #[test]
    fn lengths_are_checked_before_allocating() {
        // A length of u64::MAX with nothing behind it.
        let mut input = Vec::new();
        put_varint(&mut input, u64::MAX);
        let error = Reader::new(&input).bytes("value", 100).unwrap_err();
        assert!(matches!(error.kind, DecodeErrorKind::TooLong(limit) if limit.len == u64::MAX));
        // Within the limit but past the end.
        let error = Reader::new(&[5, 1, 2]).bytes("value", 100).unwrap_err();
        assert_eq!(
            error,
            DecodeError {
                offset: 0,
                kind: DecodeErrorKind::UnexpectedEnd { what: "value" }
            }
        );
        // A count the input cannot hold.
        let error = Reader::new(&[200, 1, 0, 0]).count("pairs", 2).unwrap_err();
        assert_eq!(error.kind, DecodeErrorKind::UnexpectedEnd { what: "pairs" });
    }

    #[test]
    fn errors_name_the_offset() {
        let mut reader = Reader::new(&[1, 2, 3]);
        reader.version().unwrap();
        assert_eq!(reader.offset(), 1);
        let error = reader.finish().unwrap_err();
        assert_eq!(error.offset, 1);
        assert_eq!(error.kind, DecodeErrorKind::TrailingBytes { count: 2 });
        assert!(error.to_string().contains("offset 1"));
    }
}
