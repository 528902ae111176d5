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
//! query    = version, tag, fields
//!   0x11 get     key: bytes
//! answer   = version, tag, fields
//!   0x21 ok
//!   0x22 value          value: option
//!   0x23 cas mismatch   current: option
//!   0x24 stale request  last_seq: varint
//!   0x25 rejected       reason: bytes (UTF-8)
//! ```
//!
//! Invariants: decoding never panics and allocates at most the input's size (see `codec.rs`);
//! keys, values and reasons over [`MAX_KEY_LEN`], [`MAX_VALUE_LEN`] and [`MAX_REASON_LEN`] are
//! refused; bytes that decode re-encode to exactly themselves.

use std::fmt;

use super::codec::{
    DecodeError, DecodeErrorKind, LimitExceeded, Reader, put_bytes, put_option, put_varint,
    put_version,
};

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

const TAG_PUT: u8 = 0x01;
const TAG_DELETE: u8 = 0x02;
const TAG_CAS: u8 = 0x03;
const TAG_GET: u8 = 0x11;
const TAG_OK: u8 = 0x21;
const TAG_VALUE: u8 = 0x22;
const TAG_CAS_MISMATCH: u8 = 0x23;
const TAG_STALE_REQUEST: u8 = 0x24;
const TAG_REJECTED: u8 = 0x25;

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
    /// Removes `key` (whether or not it is present). Answer: [`Answer::Ok`].
    Delete {
        /// The key.
        key: Vec<u8>,
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
}

impl Op {
    /// The key the operation acts on.
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Put { key, .. } | Op::Delete { key } | Op::Cas { key, .. } => key,
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
            Op::Delete { .. } => Ok(()),
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
        };
        out.push(tag);
        put_varint(&mut out, self.client_id);
        put_varint(&mut out, self.seq);
        match &self.op {
            Op::Put { key, value } => {
                put_bytes(&mut out, key);
                put_bytes(&mut out, value);
            }
            Op::Delete { key } => put_bytes(&mut out, key),
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

/// `n` with a comma between each group of three digits: `63,488`.
fn thousands(n: u64) -> String {
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
