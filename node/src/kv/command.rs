//! What clients send the key-value service and what it answers: [`Command`]s (writes, replicated
//! through the log), [`Query`]s (reads) and [`Answer`]s, with their binary encoding.
//!
//! The encoding is hand-written and versioned, with no dependency. Every encoding starts with
//! the version byte ([`FORMAT_VERSION`]) and a tag byte; tags are distinct across commands,
//! queries and answers, so bytes of one kind never decode as another. Integers are unsigned
//! LEB128 varints; `bytes` is a varint length then the bytes; `option` is `0`, or `1` then
//! `bytes`.
//!
//! ```text
//! command  = version, tag, client_id: varint, seq: varint, fields
//!   0x01 put     key: bytes, value: bytes
//!   0x02 delete  key: bytes
//!   0x03 cas     key: bytes, expected: option, new: bytes
//!   0x04 delete counted  key: bytes                         (answer: deleted)
//!   0x05 delete prefix   prefix: bytes, max_keys: varint    (answer: deleted)
//! query    = version, tag, fields
//!   0x11 get     key: bytes
//!   0x12 scan    start: bytes, end: option, limit: varint, max_bytes: varint (answer: page)
//! answer   = version, tag, fields
//!   0x21 ok
//!   0x22 value          value: option
//!   0x23 cas mismatch   current: option
//!   0x24 stale request  last_seq: varint
//!   0x25 rejected       reason: bytes (UTF-8)
//!   0x26 deleted        count: varint, more: flag
//!   0x27 page           pair_count: varint, pair_count × (key: bytes, value: bytes), more: flag
//! ```
//!
//! `flag` is one byte, 0 or 1. A page's keys are strictly increasing.
//!
//! **Compatibility.** Tags `0x04`, `0x05`, `0x12`, `0x26` and `0x27` were added after the
//! first release, without a new version byte: every older encoding decodes exactly as before,
//! and a node that predates them refuses the new requests as an unknown tag (an
//! [`Answer::Rejected`] naming the tag, which the client turns into "the node may be older than
//! this client"). The old `delete` (0x02) keeps its answer, `ok`: a replica's answers are part
//! of its state (the session table saves them), so a command's meaning never changes once
//! released; the counted delete is a new command instead. A cluster must run nodes that know a
//! command before any client sends it: a node that refuses a command its leader applied would
//! diverge (its answer and session table differ). These tags shipped with envelope version 3,
//! which no older release speaks, so no such cluster can form today; ARCHITECTURE.md ("The
//! key-value surface") states the rule for the next replicated kind.
//!
//! Invariants: decoding never panics and allocates at most the input's size (see `codec.rs`);
//! keys, values and reasons over [`MAX_KEY_LEN`], [`MAX_VALUE_LEN`] and [`MAX_REASON_LEN`],
//! range bounds over [`MAX_BOUND_LEN`] and delete batches over [`MAX_DELETE_BATCH`] are refused;
//! bytes that decode re-encode to exactly themselves.

use std::fmt;

use super::codec::{
    DecodeError, DecodeErrorKind, LimitExceeded, Reader, put_bytes, put_flag, put_option,
    put_varint, put_version,
};
use super::range::{KeyRange, MAX_BOUND_LEN};

pub use super::codec::FORMAT_VERSION;

/// The longest key, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// The longest value (and compare-and-swap `expected` / `new`), in bytes: 64 KiB.
///
/// A decoding bound, not the effective limit: a command travels in one datagram, so the
/// transport's datagram limit (at most 65,507 bytes, 65,000 by default, minus the envelope) is
/// what really caps a value, and the node enforces it when a proposal arrives. This constant is
/// at least that large, so it never refuses what the transport could carry, and it bounds what a
/// snapshot may claim.
pub const MAX_VALUE_LEN: usize = 64 * 1024;

/// The largest value a client writes, in bytes: 62 KiB (63,488). Stated once, here, and
/// reported by name when exceeded ([`Command::check_limits`], [`LimitExceeded::refusal`]).
///
/// A put of any key of up to [`MAX_KEY_LEN`] bytes and a value of up to this fits one message
/// of a node with the default datagram limit, framed as the log holds it (a unit test checks
/// the arithmetic against the core's own bound); a compare-and-swap's expected and new values
/// together are held to it. [`MAX_VALUE_LEN`] is the decoder's bound, larger, so that nothing
/// written before this limit was stated is misread.
pub const MAX_VALUE_SIZE: usize = 62 * 1024;

// The decoder takes every value a client may send.
const _: () = assert!(MAX_VALUE_SIZE < MAX_VALUE_LEN);

/// The longest reason in an [`Answer::Rejected`], in bytes (longer ones are cut).
pub const MAX_REASON_LEN: usize = 256;

/// The most keys one [`Op::DeletePrefix`] removes: one command removes at most this many, so
/// that applying it cannot stall the state machine for long (a few hundred microseconds); the
/// answer says whether keys with the prefix remain, and the client sends another.
pub const MAX_DELETE_BATCH: usize = 1_000;

/// The largest page a [`Query::Scan`] is answered with, in encoded bytes: the largest UDP
/// datagram's payload. A scan's own `max_bytes` (what fits the client's datagrams) is usually
/// lower; the store keeps to the smaller. A page holds at least one pair when the range is not
/// empty, whatever the budget: a stored pair always fits, since it came in one command.
pub const MAX_PAGE_BYTES: u64 = 65_507;

const TAG_PUT: u8 = 0x01;
const TAG_DELETE: u8 = 0x02;
const TAG_CAS: u8 = 0x03;
const TAG_DELETE_COUNTED: u8 = 0x04;
const TAG_DELETE_PREFIX: u8 = 0x05;
const TAG_GET: u8 = 0x11;
const TAG_SCAN: u8 = 0x12;
const TAG_OK: u8 = 0x21;
const TAG_VALUE: u8 = 0x22;
const TAG_CAS_MISMATCH: u8 = 0x23;
const TAG_STALE_REQUEST: u8 = 0x24;
const TAG_REJECTED: u8 = 0x25;
const TAG_DELETED: u8 = 0x26;
const TAG_PAGE: u8 = 0x27;

/// A key and its value, as a range read returns them.
pub type Pair = (Vec<u8>, Vec<u8>);

/// The fewest bytes a page's pair takes (two empty byte strings).
const MIN_PAIR_LEN: usize = 2;

/// A write, replicated through the log and applied on every replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// The client's id. Clients pick it at random (64 bits), so that two never share a session.
    pub client_id: u64,
    /// The client's sequence number for this command: from 1, one higher for each new command,
    /// the same for a retry. The session table applies each (client, seq) at most once.
    pub seq: u64,
    /// What to do.
    pub op: Op,
}

/// The operation a [`Command`] carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Sets `key` to `value`. Answer: [`Answer::Ok`].
    Put {
        /// The key.
        key: Vec<u8>,
        /// The new value.
        value: Vec<u8>,
    },
    /// Removes `key` (whether or not it is present). Answer: [`Answer::Ok`]. Kept for clients
    /// that predate [`Op::DeleteCounted`], which says whether the key was there.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
    /// Removes `key` (whether or not it is present). Answer: [`Answer::Deleted`], `count` 1 if
    /// it was present, 0 if not, `more` false.
    DeleteCounted {
        /// The key.
        key: Vec<u8>,
    },
    /// Removes the first `max_keys` keys (in key order) that start with `prefix`; `max_keys` is
    /// at most [`MAX_DELETE_BATCH`] (decoding refuses more; the store cuts more to it).
    /// Answer: [`Answer::Deleted`], with whether keys with the prefix remain (`more`).
    DeletePrefix {
        /// The prefix (empty: every key).
        prefix: Vec<u8>,
        /// The most keys to remove.
        max_keys: u64,
    },
    /// Sets `key` to `new` if its value is `expected` (`None`: the key is absent). Answer:
    /// [`Answer::Ok`] if it did, [`Answer::CasMismatch`] with the current value if not.
    Cas {
        /// The key.
        key: Vec<u8>,
        /// The value the key must have; `None` means it must be absent.
        expected: Option<Vec<u8>>,
        /// The value to set.
        new: Vec<u8>,
    },
}

/// A read, answered from one replica's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// The value of `key`. Answer: [`Answer::Value`].
    Get {
        /// The key.
        key: Vec<u8>,
    },
    /// The pairs of a key range, in key order: one page of them. Answer: [`Answer::Page`]. The
    /// page stops after `limit` pairs or before its encoding would pass `max_bytes` (at most
    /// [`MAX_PAGE_BYTES`]), but holds at least one pair if the range holds one; the next page
    /// asks for [`KeyRange::after`] its last key (see `range.rs`).
    Scan {
        /// The keys to read.
        range: KeyRange,
        /// The most pairs in the page.
        limit: u64,
        /// The most bytes the encoded answer may take (the client's datagram, less its
        /// envelope).
        max_bytes: u64,
    },
}

/// The service's answer to a command or a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The command took effect.
    Ok,
    /// A get's result: the key's value, `None` if absent.
    Value(Option<Vec<u8>>),
    /// A compare-and-swap did nothing: the key's value was not the one expected.
    CasMismatch {
        /// The value it had (`None`: absent).
        current: Option<Vec<u8>>,
    },
    /// The command was not applied: its client has already had a later command applied, so this
    /// is a late duplicate the client no longer waits for.
    StaleRequest {
        /// The client's latest applied sequence number.
        last_seq: u64,
    },
    /// The request was refused without effect (malformed, or over a limit).
    Rejected {
        /// Why, for a human (at most [`MAX_REASON_LEN`] bytes).
        reason: String,
    },
    /// A counted delete's result.
    Deleted {
        /// How many keys it removed.
        count: u64,
        /// Keys it was asked to remove remain (a prefix delete stopped at its batch size).
        more: bool,
    },
    /// One page of a scan: pairs in strictly increasing key order.
    Page {
        /// The pairs.
        pairs: Vec<Pair>,
        /// The range holds keys after the last pair.
        more: bool,
    },
}

impl Op {
    /// The key the operation acts on.
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Put { key, .. }
            | Op::Delete { key }
            | Op::DeleteCounted { key }
            | Op::Cas { key, .. } => key,
            Op::DeletePrefix { prefix, .. } => prefix,
        }
    }
}

impl Command {
    /// Checks the key and value sizes against [`MAX_KEY_LEN`] and [`MAX_VALUE_SIZE`] (a
    /// compare-and-swap's expected and new values together); a client checks before sending,
    /// and the service refuses an oversized command either way.
    pub fn check_limits(&self) -> Result<(), LimitExceeded> {
        check_len("key", self.op.key(), MAX_KEY_LEN)?;
        match &self.op {
            Op::Put { value, .. } => check_len("value", value, MAX_VALUE_SIZE),
            // A prefix delete's batch is a count, not a size: the decoder refuses one over
            // MAX_DELETE_BATCH, and the store cuts one built in memory to it.
            Op::Delete { .. } | Op::DeleteCounted { .. } | Op::DeletePrefix { .. } => Ok(()),
            Op::Cas { expected, new, .. } => {
                let together = expected.as_ref().map_or(0, Vec::len) + new.len();
                check_size("expected and new values", together, MAX_VALUE_SIZE)
            }
        }
    }

    /// The command's bytes (see the module doc for the layout).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_version(&mut out);
        let tag = match self.op {
            Op::Put { .. } => TAG_PUT,
            Op::Delete { .. } => TAG_DELETE,
            Op::Cas { .. } => TAG_CAS,
            Op::DeleteCounted { .. } => TAG_DELETE_COUNTED,
            Op::DeletePrefix { .. } => TAG_DELETE_PREFIX,
        };
        out.push(tag);
        put_varint(&mut out, self.client_id);
        put_varint(&mut out, self.seq);
        match &self.op {
            Op::Put { key, value } => {
                put_bytes(&mut out, key);
                put_bytes(&mut out, value);
            }
            Op::Delete { key } | Op::DeleteCounted { key } => put_bytes(&mut out, key),
            Op::DeletePrefix { prefix, max_keys } => {
                put_bytes(&mut out, prefix);
                put_varint(&mut out, *max_keys);
            }
            Op::Cas { key, expected, new } => {
                put_bytes(&mut out, key);
                put_option(&mut out, expected.as_deref());
                put_bytes(&mut out, new);
            }
        }
        out
    }

    /// The command in `bytes`: all of them, in the current format, within the limits.
    pub fn decode(bytes: &[u8]) -> Result<Command, DecodeError> {
        let mut reader = Reader::new(bytes);
        reader.version()?;
        let tag_offset = reader.offset();
        let tag = reader.u8("operation")?;
        let client_id = reader.varint("client id")?;
        let seq = reader.varint("sequence number")?;
        let op = match tag {
            TAG_PUT => Op::Put {
                key: reader.bytes("key", MAX_KEY_LEN)?,
                value: reader.bytes("value", MAX_VALUE_LEN)?,
            },
            TAG_DELETE => Op::Delete {
                key: reader.bytes("key", MAX_KEY_LEN)?,
            },
            TAG_CAS => Op::Cas {
                key: reader.bytes("key", MAX_KEY_LEN)?,
                expected: reader.option("expected value", MAX_VALUE_LEN)?,
                new: reader.bytes("new value", MAX_VALUE_LEN)?,
            },
            TAG_DELETE_COUNTED => Op::DeleteCounted {
                key: reader.bytes("key", MAX_KEY_LEN)?,
            },
            TAG_DELETE_PREFIX => {
                let prefix = reader.bytes("prefix", MAX_KEY_LEN)?;
                let at = reader.offset();
                let max_keys = reader.varint("delete batch")?;
                if max_keys > MAX_DELETE_BATCH as u64 {
                    return Err(Reader::error_at(
                        at,
                        DecodeErrorKind::Invalid {
                            reason: "a prefix delete's batch is over MAX_DELETE_BATCH keys",
                        },
                    ));
                }
                Op::DeletePrefix { prefix, max_keys }
            }
            tag => {
                return Err(Reader::error_at(
                    tag_offset,
                    DecodeErrorKind::UnknownTag {
                        what: "operation",
                        tag,
                    },
                ));
            }
        };
        reader.finish()?;
        Ok(Command { client_id, seq, op })
    }
}

impl Query {
    /// Checks the key's size against [`MAX_KEY_LEN`].
    pub fn check_limits(&self) -> Result<(), LimitExceeded> {
        match self {
            Query::Get { key } => check_len("key", key, MAX_KEY_LEN),
            Query::Scan { range, .. } => {
                check_len("range start", &range.start, MAX_BOUND_LEN)?;
                match &range.end {
                    Some(end) => check_len("range end", end, MAX_BOUND_LEN),
                    None => Ok(()),
                }
            }
        }
    }

    /// The query's bytes (see the module doc for the layout).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_version(&mut out);
        match self {
            Query::Get { key } => {
                out.push(TAG_GET);
                put_bytes(&mut out, key);
            }
            Query::Scan {
                range,
                limit,
                max_bytes,
            } => {
                out.push(TAG_SCAN);
                put_bytes(&mut out, &range.start);
                put_option(&mut out, range.end.as_deref());
                put_varint(&mut out, *limit);
                put_varint(&mut out, *max_bytes);
            }
        }
        out
    }

    /// The query in `bytes`: all of them, in the current format, within the limits.
    pub fn decode(bytes: &[u8]) -> Result<Query, DecodeError> {
        let mut reader = Reader::new(bytes);
        reader.version()?;
        let tag_offset = reader.offset();
        let query = match reader.u8("query")? {
            TAG_GET => Query::Get {
                key: reader.bytes("key", MAX_KEY_LEN)?,
            },
            TAG_SCAN => Query::Scan {
                range: KeyRange {
                    start: reader.bytes("range start", MAX_BOUND_LEN)?,
                    end: reader.option("range end", MAX_BOUND_LEN)?,
                },
                limit: reader.varint("page limit")?,
                max_bytes: reader.varint("page bytes")?,
            },
            tag => {
                return Err(Reader::error_at(
                    tag_offset,
                    DecodeErrorKind::UnknownTag { what: "query", tag },
                ));
            }
        };
        reader.finish()?;
        Ok(query)
    }
}

impl Answer {
    /// A [`Answer::Rejected`] saying `reason`, cut to [`MAX_REASON_LEN`] bytes at a character
    /// boundary.
    pub fn rejected(reason: impl fmt::Display) -> Answer {
        let mut reason = reason.to_string();
        if reason.len() > MAX_REASON_LEN {
            // Index 0 is always a boundary, so the search finds one.
            let cut = (0..=MAX_REASON_LEN)
                .rev()
                .find(|&at| reason.is_char_boundary(at))
                .unwrap_or(0);
            reason.truncate(cut);
        }
        Answer::Rejected { reason }
    }

    /// The answer's bytes (see the module doc for the layout).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_version(&mut out);
        self.encode_body(&mut out);
        out
    }

    /// The answer in `bytes`: all of them, in the current format, within the limits.
    pub fn decode(bytes: &[u8]) -> Result<Answer, DecodeError> {
        let mut reader = Reader::new(bytes);
        reader.version()?;
        let answer = Answer::decode_body(&mut reader)?;
        reader.finish()?;
        Ok(answer)
    }

    /// Appends the tag and fields, without the version (snapshots embed answers this way).
    pub(crate) fn encode_body(&self, out: &mut Vec<u8>) {
        match self {
            Answer::Ok => out.push(TAG_OK),
            Answer::Value(value) => {
                out.push(TAG_VALUE);
                put_option(out, value.as_deref());
            }
            Answer::CasMismatch { current } => {
                out.push(TAG_CAS_MISMATCH);
                put_option(out, current.as_deref());
            }
            Answer::StaleRequest { last_seq } => {
                out.push(TAG_STALE_REQUEST);
                put_varint(out, *last_seq);
            }
            Answer::Rejected { reason } => {
                out.push(TAG_REJECTED);
                put_bytes(out, reason.as_bytes());
            }
            Answer::Deleted { count, more } => {
                out.push(TAG_DELETED);
                put_varint(out, *count);
                put_flag(out, *more);
            }
            Answer::Page { pairs, more } => {
                out.push(TAG_PAGE);
                put_varint(out, pairs.len() as u64);
                for (key, value) in pairs {
                    put_bytes(out, key);
                    put_bytes(out, value);
                }
                put_flag(out, *more);
            }
        }
    }

    /// Reads what [`Answer::encode_body`] wrote.
    pub(crate) fn decode_body(reader: &mut Reader<'_>) -> Result<Answer, DecodeError> {
        let tag_offset = reader.offset();
        Ok(match reader.u8("answer")? {
            TAG_OK => Answer::Ok,
            TAG_VALUE => Answer::Value(reader.option("value", MAX_VALUE_LEN)?),
            TAG_CAS_MISMATCH => Answer::CasMismatch {
                current: reader.option("current value", MAX_VALUE_LEN)?,
            },
            TAG_STALE_REQUEST => Answer::StaleRequest {
                last_seq: reader.varint("last sequence number")?,
            },
            TAG_REJECTED => Answer::Rejected {
                reason: reader.text("reason", MAX_REASON_LEN)?,
            },
            TAG_DELETED => Answer::Deleted {
                count: reader.varint("deleted count")?,
                more: reader.flag("more")?,
            },
            TAG_PAGE => Answer::Page {
                pairs: decode_pairs(reader)?,
                more: reader.flag("more")?,
            },
            tag => {
                return Err(Reader::error_at(
                    tag_offset,
                    DecodeErrorKind::UnknownTag {
                        what: "answer",
                        tag,
                    },
                ));
            }
        })
    }
}

/// A page's pairs: a count the input can hold, keys strictly increasing.
fn decode_pairs(reader: &mut Reader<'_>) -> Result<Vec<Pair>, DecodeError> {
    let count = reader.count("pair count", MIN_PAIR_LEN)?;
    // Grown as pairs are read (each took at least two input bytes), not reserved from the count.
    let mut pairs: Vec<Pair> = Vec::new();
    for _ in 0..count {
        let key_offset = reader.offset();
        let key = reader.bytes("key", MAX_KEY_LEN)?;
        if pairs.last().is_some_and(|(previous, _)| *previous >= key) {
            return Err(Reader::error_at(
                key_offset,
                DecodeErrorKind::Invalid {
                    reason: "a page's keys are not strictly increasing",
                },
            ));
        }
        let value = reader.bytes("value", MAX_VALUE_LEN)?;
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// The bytes `pair` takes in a page's encoding.
pub(crate) fn pair_len(key: &[u8], value: &[u8]) -> u64 {
    let field = |len: usize| varint_len(len as u64) + len as u64;
    field(key.len()) + field(value.len())
}

/// The bytes of an empty page's encoding at its largest: version, tag, a 10-byte pair count,
/// the flag.
pub(crate) const PAGE_OVERHEAD: u64 = 13;

/// The length of `value`'s varint.
fn varint_len(value: u64) -> u64 {
    u64::from((64 - value.leading_zeros()).div_ceil(7).max(1))
}

/// Refuses `bytes` longer than `max`.
fn check_len(what: &'static str, bytes: &[u8], max: usize) -> Result<(), LimitExceeded> {
    check_size(what, bytes.len(), max)
}

/// Refuses a size `len` over `max`.
fn check_size(what: &'static str, len: usize, max: usize) -> Result<(), LimitExceeded> {
    if len > max {
        return Err(LimitExceeded {
            what,
            len: len as u64,
            max,
        });
    }
    Ok(())
}

impl LimitExceeded {
    /// The client's refusal of a key or value over the service's limits, one line naming the
    /// limit exceeded and stating the other: `value of 70,000 bytes exceeds the maximum value
    /// size of 63,488 bytes (keys: at most 1,024 bytes)`.
    pub fn refusal(&self) -> String {
        let (limit, other) = if self.what == "key" {
            (
                "key",
                format!("values: at most {} bytes", thousands(MAX_VALUE_SIZE as u64)),
            )
        } else {
            (
                "value",
                format!("keys: at most {} bytes", thousands(MAX_KEY_LEN as u64)),
            )
        };
        let verb = if self.what.ends_with('s') {
            "exceed"
        } else {
            "exceeds"
        };
        format!(
            "{} of {} bytes {verb} the maximum {limit} size of {} bytes ({other})",
            self.what,
            thousands(self.len),
            thousands(self.max as u64)
        )
    }
}

/// `n` with a comma between each group of three digits: `63,488`. How every size and count a
/// user reads is written (the limits' messages here, and the `balsa` command's output).
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (k, digit) in digits.chars().enumerate() {
        if k > 0 && (digits.len() - k).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &[u8], value: &[u8]) -> Command {
        Command {
            client_id: 7,
            seq: 300,
            op: Op::Put {
                key: key.to_vec(),
                value: value.to_vec(),
            },
        }
    }

    #[test]
    fn a_put_is_laid_out_as_documented() {
        assert_eq!(
            put(b"k", b"vv").encode(),
            [1, TAG_PUT, 7, 0xac, 0x02, 1, b'k', 2, b'v', b'v']
        );
    }

    #[test]
    fn a_cas_with_absent_expected_is_laid_out_as_documented() {
        let cas = Command {
            client_id: 1,
            seq: 2,
            op: Op::Cas {
                key: b"k".to_vec(),
                expected: None,
                new: b"n".to_vec(),
            },
        };
        assert_eq!(cas.encode(), [1, TAG_CAS, 1, 2, 1, b'k', 0, 1, b'n']);
        assert_eq!(Command::decode(&cas.encode()), Ok(cas));
    }

    #[test]
    fn released_encodings_decode_as_they_always_did() {
        // Bytes as the first release wrote them, written out (not from the constants): the new
        // tags changed none of them.
        let delete = [1, 0x02, 7, 9, 1, b'k'];
        assert_eq!(
            Command::decode(&delete),
            Ok(Command {
                client_id: 7,
                seq: 9,
                op: Op::Delete { key: b"k".to_vec() }
            })
        );
        assert_eq!(
            Query::decode(&[1, 0x11, 1, b'k']),
            Ok(Query::Get { key: b"k".to_vec() })
        );
        assert_eq!(Answer::decode(&[1, 0x21]), Ok(Answer::Ok));
        assert_eq!(
            Answer::decode(&[1, 0x22, 1, 1, b'v']),
            Ok(Answer::Value(Some(b"v".to_vec())))
        );
        assert_eq!(
            Answer::decode(&[1, 0x23, 0]),
            Ok(Answer::CasMismatch { current: None })
        );
        assert_eq!(
            Query::Get { key: b"k".to_vec() }.encode(),
            [1, 0x11, 1, b'k']
        );
    }

    #[test]
    fn the_new_kinds_are_laid_out_as_documented() {
        let counted = Command {
            client_id: 1,
            seq: 2,
            op: Op::DeleteCounted { key: b"k".to_vec() },
        };
        assert_eq!(counted.encode(), [1, 0x04, 1, 2, 1, b'k']);
        let prefix = Command {
            client_id: 1,
            seq: 2,
            op: Op::DeletePrefix {
                prefix: b"p".to_vec(),
                max_keys: 1_000,
            },
        };
        assert_eq!(prefix.encode(), [1, 0x05, 1, 2, 1, b'p', 0xe8, 0x07]);
        let scan = Query::Scan {
            range: KeyRange::between(b"a", b"b"),
            limit: 3,
            max_bytes: 200,
        };
        assert_eq!(scan.encode(), [1, 0x12, 1, b'a', 1, 1, b'b', 3, 0xc8, 0x01]);
        let open = Query::Scan {
            range: KeyRange::all(),
            limit: 1,
            max_bytes: 1,
        };
        assert_eq!(open.encode(), [1, 0x12, 0, 0, 1, 1]);
        let deleted = Answer::Deleted {
            count: 2,
            more: true,
        };
        assert_eq!(deleted.encode(), [1, 0x26, 2, 1]);
        let page = Answer::Page {
            pairs: vec![(b"a".to_vec(), b"x".to_vec()), (b"b".to_vec(), Vec::new())],
            more: false,
        };
        assert_eq!(page.encode(), [1, 0x27, 2, 1, b'a', 1, b'x', 1, b'b', 0, 0]);
        for bytes in [counted.encode(), prefix.encode()] {
            assert_eq!(Command::decode(&bytes).map(|c| c.encode()), Ok(bytes));
        }
        assert_eq!(Query::decode(&scan.encode()), Ok(scan));
        assert_eq!(Answer::decode(&page.encode()), Ok(page.clone()));
        assert_eq!(
            page.encode().len() as u64,
            PAGE_OVERHEAD - 9 + pair_len(b"a", b"x") + pair_len(b"b", b""),
            "an empty page's overhead at its largest is 13 bytes: a 10-byte count at most"
        );
    }

    #[test]
    fn hostile_new_encodings_are_refused_at_the_offending_offset() {
        let kind = |bytes: &[u8]| Answer::decode(bytes).map_err(|error| (error.offset, error.kind));
        // Keys out of order.
        assert!(matches!(
            kind(&[1, TAG_PAGE, 2, 1, b'b', 0, 1, b'a', 0, 0]),
            Err((6, DecodeErrorKind::Invalid { .. }))
        ));
        // Equal keys.
        assert!(kind(&[1, TAG_PAGE, 2, 1, b'a', 0, 1, b'a', 0, 0]).is_err());
        // A flag that is neither 0 nor 1.
        assert!(matches!(
            kind(&[1, TAG_DELETED, 0, 2]),
            Err((
                3,
                DecodeErrorKind::UnknownTag {
                    what: "more",
                    tag: 2
                }
            ))
        ));
        // A pair count the input cannot hold: refused before any pair is read.
        let mut huge = vec![1, TAG_PAGE];
        huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert!(matches!(
            kind(&huge),
            Err((2, DecodeErrorKind::UnexpectedEnd { what: "pair count" }))
        ));
        // A batch over the maximum.
        let mut batch = vec![1, TAG_DELETE_PREFIX, 1, 1, 0];
        put_varint(&mut batch, MAX_DELETE_BATCH as u64 + 1);
        let error = Command::decode(&batch).unwrap_err();
        assert_eq!(error.offset, 5);
        assert!(matches!(error.kind, DecodeErrorKind::Invalid { .. }));
        // A range bound over a key and one byte.
        let mut long = vec![1, TAG_SCAN];
        put_bytes(&mut long, &[0; MAX_BOUND_LEN + 1]);
        long.extend_from_slice(&[0, 1, 1]);
        assert!(matches!(
            Query::decode(&long).unwrap_err().kind,
            DecodeErrorKind::TooLong(limit) if limit.what == "range start"
        ));
        let mut longest = vec![1, TAG_SCAN];
        put_bytes(&mut longest, &[0; MAX_BOUND_LEN]);
        longest.extend_from_slice(&[0, 1, 1]);
        assert!(Query::decode(&longest).is_ok());
    }

    #[test]
    fn limits_are_inclusive() {
        let at_limit = put(&[0; MAX_KEY_LEN], &[0; MAX_VALUE_SIZE]);
        assert_eq!(at_limit.check_limits(), Ok(()));
        assert_eq!(Command::decode(&at_limit.encode()), Ok(at_limit));

        let long_key = put(&[0; MAX_KEY_LEN + 1], b"");
        assert!(long_key.check_limits().is_err());
        let error = Command::decode(&long_key.encode()).unwrap_err();
        assert_eq!(error.offset, 5, "the key's length prefix");
        assert!(matches!(error.kind, DecodeErrorKind::TooLong(limit) if limit.what == "key"));

        let long_value = put(b"k", &[0; MAX_VALUE_SIZE + 1]);
        assert!(long_value.check_limits().is_err());
        let undecodable = put(b"k", &[0; MAX_VALUE_LEN + 1]);
        assert!(matches!(
            Command::decode(&undecodable.encode()).unwrap_err().kind,
            DecodeErrorKind::TooLong(limit) if limit.what == "value"
        ));
    }

    /// The value limit is one a node with the default settings can always take: the largest
    /// command the client lets through, framed for the log with an IPv6 client to answer (the
    /// longest frame), fits the core's largest proposal.
    #[test]
    fn the_largest_command_a_client_sends_fits_a_default_nodes_proposal() {
        let largest = Command {
            client_id: u64::MAX,
            seq: u64::MAX,
            op: Op::Cas {
                key: vec![0; MAX_KEY_LEN],
                expected: Some(vec![0; MAX_VALUE_SIZE / 2]),
                new: vec![0; MAX_VALUE_SIZE - MAX_VALUE_SIZE / 2],
            },
        };
        assert_eq!(largest.check_limits(), Ok(()));
        let put = Command {
            op: Op::Put {
                key: vec![0; MAX_KEY_LEN],
                value: vec![0; MAX_VALUE_SIZE],
            },
            ..largest.clone()
        };
        assert_eq!(put.check_limits(), Ok(()));
        let reply = crate::runtime::wire::ReplyTo {
            address: "[::1]:7001".parse().expect("literal"),
            request: u64::MAX,
        };
        let max = crate::raft::Config::new(1, vec![1]).max_proposal_bytes();
        for command in [largest, put] {
            let entry = crate::runtime::wire::frame(Some(reply), &command.encode());
            assert!(entry.len() <= max, "{} > {max}", entry.len());
        }
    }

    #[test]
    fn a_refusal_names_the_limit_and_states_the_other() {
        let value = put(b"k", &[0; 70_000]).check_limits().unwrap_err();
        assert_eq!(
            value.refusal(),
            "value of 70,000 bytes exceeds the maximum value size of 63,488 bytes (keys: at \
             most 1,024 bytes)"
        );
        let key = put(&[0; 2048], b"v").check_limits().unwrap_err();
        assert_eq!(
            key.refusal(),
            "key of 2,048 bytes exceeds the maximum key size of 1,024 bytes (values: at most \
             63,488 bytes)"
        );
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn kinds_do_not_decode_as_each_other() {
        let query = Query::Get { key: b"k".to_vec() }.encode();
        assert!(matches!(
            Command::decode(&query).unwrap_err().kind,
            DecodeErrorKind::UnknownTag { tag: TAG_GET, .. }
        ));
        let command = put(b"k", b"v").encode();
        assert!(Query::decode(&command).is_err());
        assert!(Answer::decode(&command).is_err());
    }

    #[test]
    fn other_versions_and_trailing_bytes_are_refused() {
        let mut bytes = put(b"k", b"v").encode();
        bytes[0] = 2;
        assert_eq!(
            Command::decode(&bytes).unwrap_err().kind,
            DecodeErrorKind::UnsupportedVersion { found: 2 }
        );
        let mut bytes = Answer::Ok.encode();
        bytes.push(0);
        assert_eq!(
            Answer::decode(&bytes),
            Err(DecodeError {
                offset: 2,
                kind: DecodeErrorKind::TrailingBytes { count: 1 }
            })
        );
        assert!(Command::decode(&[]).is_err());
    }

    #[test]
    fn rejected_reasons_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_REASON_LEN);
        let Answer::Rejected { reason } = Answer::rejected(&long) else {
            unreachable!("rejected() makes a Rejected");
        };
        assert!(reason.len() <= MAX_REASON_LEN);
        assert!(long.starts_with(&reason));
        let answer = Answer::Rejected { reason };
        assert_eq!(Answer::decode(&answer.encode()), Ok(answer));
    }
}
