//! The key-value store's snapshot encoding: the whole state — data, client sessions and the last
//! index applied — in one versioned byte string (Raft §7; the sessions are in it because `apply`
//! depends on them, thesis §6.3).
//!
//! Layout (varints, `bytes` and the answer body as in `command.rs`):
//!
//! ```text
//! version        u8 = 1
//! tag            u8 = 0x31
//! applied_index  varint
//! pair_count     varint
//! pair_count ×   key: bytes (≤ MAX_KEY_LEN), value: bytes (≤ MAX_VALUE_LEN)
//!                keys strictly increasing (bytewise)
//! session_count  varint
//! session_count × client_id: varint, last_seq: varint, last_index: varint (≤ applied_index),
//!                answer: tag + fields, as in an answer after its version byte
//!                client ids strictly increasing
//! ```
//!
//! Both sequences are in `BTreeMap` order, so equal states give equal bytes. Decoding is bounded
//! like every decoder here (see `codec.rs`): counts are checked against the bytes left, lengths
//! against their limits and the bytes left; the strict orders make a decoded snapshot re-encode
//! to itself.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::Arc;

use super::codec::{DecodeError, DecodeErrorKind, Reader, put_bytes, put_varint, put_version};
use super::command::{Answer, MAX_KEY_LEN, MAX_VALUE_LEN};
use super::session::{SessionRecord, SessionTable};
use super::{Data, KvStore};

const TAG_SNAPSHOT: u8 = 0x31;

/// The fewest bytes a pair takes (two empty byte strings).
const MIN_PAIR_LEN: usize = 2;

/// The fewest bytes a session takes (three one-byte varints and an answer tag).
const MIN_SESSION_LEN: usize = 4;

/// A session's bytes in a snapshot, about: three varints and a short answer. Only a hint for
/// the buffer's size (a session whose answer carries a value takes more).
const SESSION_LEN_HINT: usize = 24;

/// Appends the snapshot of `store` to `out`, which it first grows once to about the size the
/// snapshot takes: a state of hundreds of MB is not copied again and again as the buffer
/// doubles, nor held twice while it does.
pub(super) fn encode_into(store: &KvStore, out: &mut Vec<u8>) {
    out.reserve(encoded_len_hint(store));
    put_version(out);
    out.push(TAG_SNAPSHOT);
    put_varint(out, store.applied_index);
    put_varint(out, store.data.len() as u64);
    for (key, value) in &store.data {
        put_bytes(out, key);
        put_bytes(out, value);
    }
    put_varint(out, store.sessions.len() as u64);
    for (client_id, session) in store.sessions.iter() {
        put_varint(out, client_id);
        put_varint(out, session.last_seq());
        put_varint(out, session.last_index());
        session.answer().encode_body(out);
    }
}

/// About how many bytes the snapshot of `store` takes: its pairs exactly, its sessions by
/// [`SESSION_LEN_HINT`], its header at most.
fn encoded_len_hint(store: &KvStore) -> usize {
    let pairs: usize = store
        .data
        .iter()
        .map(|(key, value)| bytes_len(key) + bytes_len(value))
        .sum();
    pairs + store.sessions.len() * SESSION_LEN_HINT + 32
}

/// The bytes `put_bytes` appends for `bytes`: its length as a varint, then it.
fn bytes_len(bytes: &[u8]) -> usize {
    varint_len(bytes.len() as u64) + bytes.len()
}

/// The bytes `put_varint` appends for `value`: one per 7 bits, at least one.
fn varint_len(value: u64) -> usize {
    let bits = 64 - value.leading_zeros();
    usize::try_from(bits.div_ceil(7).max(1)).expect("at most 10")
}

/// The store in `bytes`, with a session table of `capacity` (the least recently active sessions
/// are dropped if the snapshot holds more).
pub(super) fn decode(bytes: &[u8], capacity: NonZeroUsize) -> Result<KvStore, DecodeError> {
    let mut reader = Reader::new(bytes);
    reader.version()?;
    let tag_offset = reader.offset();
    let tag = reader.u8("snapshot tag")?;
    if tag != TAG_SNAPSHOT {
        return Err(Reader::error_at(
            tag_offset,
            DecodeErrorKind::UnknownTag {
                what: "snapshot",
                tag,
            },
        ));
    }
    let applied_index = reader.varint("applied index")?;
    let data = decode_pairs(&mut reader)?;
    let sessions = decode_sessions(&mut reader, applied_index, capacity)?;
    reader.finish()?;
    Ok(KvStore {
        data,
        sessions,
        applied_index,
    })
}

fn decode_pairs(reader: &mut Reader<'_>) -> Result<Data, DecodeError> {
    let count = reader.count("pair count", MIN_PAIR_LEN)?;
    let mut data = BTreeMap::new();
    let mut previous: Option<&[u8]> = None;
    for _ in 0..count {
        let key_offset = reader.offset();
        let key = reader.slice("key", MAX_KEY_LEN)?;
        if previous.is_some_and(|previous| previous >= key) {
            return Err(Reader::error_at(
                key_offset,
                DecodeErrorKind::Invalid {
                    reason: "snapshot keys are not strictly increasing",
                },
            ));
        }
        previous = Some(key);
        let value = reader.slice("value", MAX_VALUE_LEN)?;
        data.insert(Arc::from(key), Arc::from(value));
    }
    Ok(data)
}

fn decode_sessions(
    reader: &mut Reader<'_>,
    applied_index: u64,
    capacity: NonZeroUsize,
) -> Result<SessionTable, DecodeError> {
    let count = reader.count("session count", MIN_SESSION_LEN)?;
    let mut sessions = SessionTable::new(capacity);
    let mut previous: Option<u64> = None;
    for _ in 0..count {
        let client_offset = reader.offset();
        let client_id = reader.varint("client id")?;
        if previous.is_some_and(|previous| previous >= client_id) {
            return Err(Reader::error_at(
                client_offset,
                DecodeErrorKind::Invalid {
                    reason: "snapshot sessions are not in strictly increasing client order",
                },
            ));
        }
        previous = Some(client_id);
        let last_seq = reader.varint("last sequence number")?;
        let index_offset = reader.offset();
        let last_index = reader.varint("last activity index")?;
        if last_index > applied_index {
            return Err(Reader::error_at(
                index_offset,
                DecodeErrorKind::Invalid {
                    reason: "a session's last activity is after the snapshot's applied index",
                },
            ));
        }
        let answer = Answer::decode_body(reader)?;
        sessions.restore(client_id, SessionRecord::new(last_seq, answer, last_index));
    }
    Ok(sessions)
}

#[cfg(test)]
mod tests {
    use super::{encoded_len_hint, put_varint, varint_len};
    use crate::kv::{Command, KvStore, Op};
    use crate::state_machine::StateMachine;

    #[test]
    fn the_buffer_is_grown_once_for_a_store_of_plain_writes() {
        let mut store = KvStore::new();
        for index in 1..=300u64 {
            let command = Command {
                client_id: index % 7,
                seq: index,
                op: Op::Put {
                    key: format!("key-{index}").into_bytes(),
                    value: vec![7; usize::try_from(index * 13).expect("small")],
                },
            };
            store.apply(index, &command.encode());
        }
        let snapshot = store.snapshot();
        let hint = encoded_len_hint(&store);
        assert!(snapshot.len() <= hint, "{} > {hint}", snapshot.len());
        assert!(hint - snapshot.len() <= 32 + 7 * 24, "a close hint");
    }

    #[test]
    fn a_varints_length_is_the_bytes_put_varint_appends() {
        for value in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(varint_len(value), out.len(), "{value}");
        }
    }
}
