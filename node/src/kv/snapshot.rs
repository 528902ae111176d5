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
use super::session::{Session, SessionTable};
use super::{Data, KvStore};

const TAG_SNAPSHOT: u8 = 0x31;

/// The fewest bytes a pair takes (two empty byte strings).
const MIN_PAIR_LEN: usize = 2;

/// The fewest bytes a session takes (three one-byte varints and an answer tag).
const MIN_SESSION_LEN: usize = 4;

/// Appends the snapshot of `store` to `out`.
pub(super) fn encode_into(store: &KvStore, out: &mut Vec<u8>) {
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
        sessions.restore(client_id, Session::new(last_seq, answer, last_index));
    }
    Ok(sessions)
}
