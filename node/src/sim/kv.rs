//! The replicated state machine each simulated node applies committed entries to: a map from key
//! to value, with a session table so that a client's retried write takes effect once (Raft
//! thesis §6.3).
//!
//! A client has at most one operation outstanding and numbers them 1, 2, 3…, so a write takes
//! effect exactly when its sequence number is above the last one applied for its client. Every
//! node applies the same log, so every node decides the same way, and the state machine of a
//! restarted node (which starts empty and re-applies from index 1) comes back identical.

use std::collections::BTreeMap;

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
    }
}
