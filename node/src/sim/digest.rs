//! Stable 64-bit digests: of one log entry, of a log prefix (a hash chain), and of a whole run.
//!
//! - [`entry_digest`] names an entry by its index, term, kind and data.
//! - [`chain_digest`] extends the digest of the prefix before an entry with that entry, so two
//!   logs have equal chain digests at an index exactly when (barring a 2^-64 collision) they hold
//!   identical entries up to it. The checks compare logs in O(1) this way.
//! - [`RunDigest`] folds in every field of every effect of every replica, so two runs of a seed can
//!   be compared bit for bit.
//!
//! The hash takes eight bytes at a time (a multiply and a shift per word) and ends with the
//! SplitMix64 finaliser. It is fixed, so digests never depend on the process (unlike the
//! standard library's randomly keyed hasher). Not for cryptography.

use crate::raft::{Body, Entry, EntryKind, Message, NodeId};
use crate::replica::Effect;
use crate::replica::storage::StorageOp;

/// A fast word-wise hash with a strong finaliser.
#[derive(Clone, Copy, Debug)]
pub struct Hash64 {
    state: u64,
}

impl Default for Hash64 {
    fn default() -> Self {
        Hash64 {
            state: 0x243F_6A88_85A3_08D3,
        }
    }
}

impl Hash64 {
    /// Folds in one number.
    pub fn u64(&mut self, word: u64) {
        let mixed = (self.state ^ word).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.state = mixed ^ (mixed >> 29);
    }

    /// Folds in `bytes` and their length.
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.u64(bytes.len() as u64);
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut eight = [0; 8];
            eight.copy_from_slice(word);
            self.u64(u64::from_le_bytes(eight));
        }
        let mut tail = [0; 8];
        tail[..words.remainder().len()].copy_from_slice(words.remainder());
        self.u64(u64::from_le_bytes(tail));
    }

    /// The digest of everything folded in.
    pub fn finish(&self) -> u64 {
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The digest of one entry: its index, term, kind and data.
pub fn entry_digest(entry: &Entry) -> u64 {
    let mut hash = Hash64::default();
    hash.u64(entry.index);
    hash.u64(entry.term);
    hash.u64(match entry.kind {
        EntryKind::Normal => 1,
        EntryKind::Noop => 2,
        EntryKind::Config => 3,
    });
    hash.bytes(&entry.data);
    hash.finish()
}

/// The digest of a log prefix ending with `entry`, given the digest of the prefix before it
/// (0 for the empty prefix).
pub fn chain_digest(previous: u64, entry: &Entry) -> u64 {
    let mut hash = Hash64::default();
    hash.u64(previous);
    hash.u64(entry_digest(entry));
    hash.finish()
}

/// The digest of a whole run: every effect every replica produced, with the node.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunDigest {
    hash: Hash64,
}

impl RunDigest {
    /// Folds in one effect of node `node`, field by field.
    pub fn effect<R>(&mut self, node: NodeId, effect: &Effect<R>) {
        let hash = &mut self.hash;
        hash.u64(node);
        match effect {
            Effect::Storage(StorageOp::Persist(persist)) => {
                hash.u64(1);
                hash.u64(persist.id);
                hash.u64(persist.truncate_from.map_or(0, |from| from + 1));
                entries(hash, &persist.entries);
                match persist.hard_state {
                    Some(hard_state) => {
                        hash.u64(hard_state.term);
                        hash.u64(hard_state.vote);
                        hash.u64(hard_state.commit);
                    }
                    None => hash.u64(u64::MAX),
                }
                hash.u64(persist.then_send.len() as u64);
                for (to, msg) in &persist.then_send {
                    hash.u64(*to);
                    message(hash, msg);
                }
            }
            Effect::Send { to, msg } => {
                hash.u64(2);
                hash.u64(*to);
                message(hash, msg);
            }
            Effect::Applied { entries: applied } => {
                hash.u64(3);
                entries(hash, applied);
            }
            Effect::Answer { to, wire } => {
                hash.u64(4);
                // Debug output is deterministic (no maps, no addresses of memory) and answers
                // are few, so this is simpler than folding each variant.
                hash.bytes(format!("{to} {wire:?}").as_bytes());
            }
            Effect::Reply { result, .. } => {
                hash.u64(5);
                hash.bytes(format!("{result:?}").as_bytes());
            }
            Effect::Storage(StorageOp::SaveSnapshot { index, term, data }) => {
                hash.u64(6);
                hash.u64(*index);
                hash.u64(*term);
                hash.bytes(
                    data.serialised().expect(
                        "the driver serialises a save's state before digesting its effects",
                    ),
                );
            }
            Effect::Storage(StorageOp::SnapshotChunk { meta, offset, data }) => {
                hash.u64(9);
                for word in [meta.index, meta.term, *offset] {
                    hash.u64(word);
                }
                hash.bytes(data);
            }
            Effect::Storage(StorageOp::InstallSnapshot {
                meta, size, crc, ..
            }) => {
                hash.u64(10);
                for word in [meta.index, meta.term, *size, u64::from(*crc)] {
                    hash.u64(word);
                }
            }
            Effect::Storage(StorageOp::Compact { upto }) => {
                hash.u64(11);
                hash.u64(*upto);
            }
        }
    }

    /// The digest so far.
    pub fn finish(&self) -> u64 {
        self.hash.finish()
    }
}

fn entries(hash: &mut Hash64, entries: &[Entry]) {
    hash.u64(entries.len() as u64);
    for entry in entries {
        hash.u64(entry_digest(entry));
    }
}

fn message(hash: &mut Hash64, msg: &Message) {
    hash.u64(msg.term);
    match &msg.body {
        Body::RequestVote {
            pre_vote,
            last_index,
            last_term,
            transfer,
        } => {
            hash.u64(1);
            hash.u64(u64::from(*pre_vote));
            hash.u64(*last_index);
            hash.u64(*last_term);
            hash.u64(u64::from(*transfer));
        }
        Body::RequestVoteResponse { pre_vote, granted } => {
            hash.u64(2);
            hash.u64(u64::from(*pre_vote));
            hash.u64(u64::from(*granted));
        }
        Body::AppendEntries {
            prev_index,
            prev_term,
            entries: sent,
            leader_commit,
            read_round,
        } => {
            hash.u64(3);
            hash.u64(*prev_index);
            hash.u64(*prev_term);
            entries(hash, sent);
            hash.u64(*leader_commit);
            hash.u64(*read_round);
        }
        Body::AppendEntriesResponse {
            index,
            conflict,
            read_round,
        } => {
            hash.u64(4);
            hash.u64(*index);
            match conflict {
                Some(conflict) => {
                    hash.u64(conflict.term.map_or(0, |term| term + 1));
                    hash.u64(conflict.index);
                }
                None => hash.u64(u64::MAX),
            }
            hash.u64(*read_round);
        }
        Body::TimeoutNow => hash.u64(5),
        Body::ReadIndex { ctx } => {
            hash.u64(6);
            hash.u64(*ctx);
        }
        Body::ReadIndexResponse { ctx, index } => {
            hash.u64(7);
            hash.u64(*ctx);
            hash.u64(index.map_or(0, |index| index + 1));
        }
        Body::Forward { data } => {
            hash.u64(8);
            hash.bytes(data);
        }
        Body::InstallSnapshot {
            index,
            snapshot_term,
            size,
            crc,
            offset,
            data,
        } => {
            hash.u64(9);
            for word in [*index, *snapshot_term, *size, u64::from(*crc), *offset] {
                hash.u64(word);
            }
            hash.bytes(data);
        }
        Body::InstallSnapshotResponse {
            index,
            next_offset,
            installed,
        } => {
            hash.u64(10);
            hash.u64(*index);
            hash.u64(*next_offset);
            hash.u64(u64::from(*installed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Hash64, chain_digest, entry_digest};
    use crate::raft::{Entry, EntryKind};

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            kind: EntryKind::Normal,
            data: data.to_vec(),
        }
    }

    #[test]
    fn digests_tell_entries_and_prefixes_apart() {
        assert_ne!(
            entry_digest(&entry(1, 1, b"a")),
            entry_digest(&entry(1, 2, b"a"))
        );
        assert_ne!(
            entry_digest(&entry(1, 1, b"a")),
            entry_digest(&entry(1, 1, b"b"))
        );
        assert_ne!(
            entry_digest(&entry(1, 1, b"")),
            entry_digest(&entry(1, 1, b"\0"))
        );
        let second = entry(2, 1, b"x");
        let a = chain_digest(chain_digest(0, &entry(1, 1, b"a")), &second);
        let b = chain_digest(chain_digest(0, &entry(1, 1, b"b")), &second);
        assert_ne!(a, b, "a different prefix changes the chain");
    }

    #[test]
    fn every_bit_of_the_data_counts() {
        let base = [0u8; 20];
        let digest = |bytes: &[u8]| {
            let mut hash = Hash64::default();
            hash.bytes(bytes);
            hash.finish()
        };
        for bit in 0..base.len() * 8 {
            let mut flipped = base;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert_ne!(digest(&flipped), digest(&base), "bit {bit}");
        }
    }
}
