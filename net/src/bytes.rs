//! `#[serde(with = "balsa_net::bytes")]` for `Vec<u8>` fields: the same bytes on the wire, decoded
//! with one copy instead of one call per byte.
//!
//! Serde sees a plain `Vec<u8>` as a sequence of `u8`s, so the decoder runs once per byte (about
//! 2–3 ns each). Marked with this module, the field is a byte string: the length prefix is checked
//! against the bytes left like any other, then the bytes are copied at once. The encoding is the
//! same either way (a varint length, then the raw bytes), so marking or unmarking a field never
//! changes the wire format; `benches/benches/codec.rs` measures both.
//!
//! ```
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Entry {
//!     index: u64,
//!     term: u64,
//!     #[serde(with = "balsa_net::bytes")]
//!     data: Vec<u8>,
//! }
//! ```

use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserializer, Serializer};

/// Serializes `bytes` as a byte string.
///
/// # Errors
/// Whatever the serializer returns.
pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bytes(bytes)
}

/// Deserializes a byte string (or, from formats that give one, a sequence of bytes).
///
/// # Errors
/// Whatever the deserializer returns for data that is not a byte string.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    deserializer.deserialize_byte_buf(ByteBuf)
}

struct ByteBuf;

impl<'de> Visitor<'de> for ByteBuf {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(bytes)
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
        Ok(bytes.to_vec())
    }

    /// Grows as elements arrive rather than trusting the sequence's size hint.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut bytes = Vec::new();
        while let Some(byte) = seq.next_element()? {
            bytes.push(byte);
        }
        Ok(bytes)
    }
}
