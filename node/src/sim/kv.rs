//! The replicated state machine each simulated node applies committed entries to: a map from key
//! to value, with a session table so that a client's retried write takes effect once (Raft
//! thesis §6.3).
//!
//! A client has at most one operation outstanding and numbers them 1, 2, 3…, so a write takes
//! effect exactly when its sequence number is above the last one applied for its client. Every
//! node applies the same log, so every node decides the same way, and the state machine of a
//! restarted node (which starts from its snapshot, or empty, and re-applies what follows) comes
//! back identical. A snapshot is the whole state as bytes (`snapshot`, `restore`).

use std::collections::BTreeMap;

use super::digest::Hash64;
use crate::raft::{Entry, EntryKind};

/// A client's write, as carried in an entry's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Command {
    /// The client.
    pub client: u64,
    /// The client's sequence number for this operation (from 1).
    pub seq: u64,
    /// The key.
    pub key: u64,
    /// The value (unique across the run).
    pub value: u64,
}

impl Command {
    /// Bytes in an encoded command.
    pub const SIZE: usize = 32;

    /// The entry data: four little-endian u64s.
    pub fn encode(&self) -> Vec<u8> {
        let mut data = Vec::with_capacity(Self::SIZE);
        for field in [self.client, self.seq, self.key, self.value] {
            data.extend_from_slice(&field.to_le_bytes());
        }
        data
    }

    /// The command in `data`, if it is one.
    pub fn decode(data: &[u8]) -> Option<Command> {
        if data.len() != Self::SIZE {
            return None;
        }
        let field = |at: usize| -> Option<u64> {
            let bytes: [u8; 8] = data.get(at..at + 8)?.try_into().ok()?;
            Some(u64::from_le_bytes(bytes))
        };
        Some(Command {
            client: field(0)?,
            seq: field(8)?,
            key: field(16)?,
            value: field(24)?,
        })
    }
}

/// One node's key-value state, built from the entries it applied.
#[derive(Clone, Debug, Default)]
pub struct Kv {
    values: BTreeMap<u64, u64>,
    /// Client → the last sequence number that took effect.
    sessions: BTreeMap<u64, u64>,
    /// The last index applied.
    applied: u64,
}

impl Kv {
    /// Applies the committed `entry` (the next index). Returns its command if it took effect,
    /// `None` for a no-op, foreign data, or a duplicate of a write already applied.
    pub fn apply(&mut self, entry: &Entry) -> Option<Command> {
        self.applied = entry.index;
        if entry.kind != EntryKind::Normal {
            return None;
        }
        let command = Command::decode(&entry.data)?;
        let last = self.sessions.entry(command.client).or_insert(0);
        if command.seq <= *last {
            return None;
        }
        *last = command.seq;
        self.values.insert(command.key, command.value);
        Some(command)
    }

    /// The value of `key`, if it was ever written.
    pub fn get(&self, key: u64) -> Option<u64> {
        self.values.get(&key).copied()
    }

    /// The last index applied.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// The state as bytes: the applied index, then the values and the sessions, each as a
    /// count and (key, value) pairs, every number a little-endian u64.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut data = Vec::with_capacity(24 + 16 * (self.values.len() + self.sessions.len()));
        data.extend_from_slice(&self.applied.to_le_bytes());
        for map in [&self.values, &self.sessions] {
            data.extend_from_slice(&(map.len() as u64).to_le_bytes());
            for (key, value) in map {
                data.extend_from_slice(&key.to_le_bytes());
                data.extend_from_slice(&value.to_le_bytes());
            }
        }
        data
    }

    /// The state `data` holds (made by [`Kv::snapshot`]), or `None` if it is not one.
    pub fn restore(data: &[u8]) -> Option<Kv> {
        let mut words = data.chunks_exact(8).map(|word| {
            let mut bytes = [0; 8];
            bytes.copy_from_slice(word);
            u64::from_le_bytes(bytes)
        });
        if !data.len().is_multiple_of(8) {
            return None;
        }
        let applied = words.next()?;
        let mut maps = [BTreeMap::new(), BTreeMap::new()];
        for map in &mut maps {
            let count = words.next()?;
            for _ in 0..count {
                map.insert(words.next()?, words.next()?);
            }
        }
        if words.next().is_some() {
            return None;
        }
        let [values, sessions] = maps;
        Some(Kv {
            values,
            sessions,
            applied,
        })
    }

    /// A digest of the whole state (values and sessions; not the applied index): two nodes
    /// that applied the same log up to an index have equal digests there.
    pub fn state_digest(&self) -> u64 {
        let mut hash = Hash64::default();
        for map in [&self.values, &self.sessions] {
            hash.u64(map.len() as u64);
            for (key, value) in map {
                hash.u64(*key);
                hash.u64(*value);
            }
        }
        hash.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::{Command, Kv};
    use crate::raft::{Entry, EntryKind};

    fn entry(index: u64, command: Command) -> Entry {
        Entry {
            index,
            term: 1,
            kind: EntryKind::Normal,
            data: command.encode(),
        }
    }

    #[test]
    fn a_retried_write_takes_effect_once() {
        let first = Command {
            client: 1,
            seq: 1,
            key: 0,
            value: 10,
        };
        let second = Command {
            seq: 2,
            value: 20,
            ..first
        };
        let mut kv = Kv::default();
        assert_eq!(Command::decode(&first.encode()), Some(first));
        assert_eq!(kv.apply(&entry(1, first)), Some(first));
        assert_eq!(kv.apply(&entry(2, second)), Some(second));
        assert_eq!(kv.apply(&entry(3, first)), None, "a late retry of seq 1");
        assert_eq!(kv.get(0), Some(20));
        assert_eq!(kv.applied(), 3);

        let restored = Kv::restore(&kv.snapshot()).expect("a snapshot");
        assert_eq!(restored.state_digest(), kv.state_digest());
        assert_eq!((restored.applied(), restored.get(0)), (3, Some(20)));
        assert_eq!(
            Kv::restore(&kv.snapshot()[1..]).map(|kv| kv.applied()),
            None
        );
    }
}
