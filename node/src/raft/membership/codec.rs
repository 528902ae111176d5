//! The byte encoding of a [`Membership`]: what a configuration entry holds in the log and what a
//! snapshot's frame carries (`raft/snapshot_frame.rs`). Fixed-width little-endian integers; no
//! dependency beyond `std`, so the format is exactly what this file says:
//!
//! ```text
//! version    u8 = 1
//! incoming   u16 count, count × u64 id      ascending
//! outgoing   u16 count, count × u64 id      ascending (empty unless joint)
//! learners   u16 count, count × u64 id      ascending
//! addresses  u16 count, count × (u64 id, u16 length, length bytes)   ids ascending
//! retired    u32 count, count × u64 id      ascending
//! ```
//!
//! Decoding is bounded: every count is checked against the bytes left before anything is
//! reserved (each element takes at least 8 bytes), an address is at most
//! [`MAX_ADDRESS_LEN`] bytes, the sets must be strictly ascending (so a decoded configuration
//! re-encodes to the same bytes), nothing may follow the last field, and the result must keep
//! every invariant of [`Membership::broken_invariant`]. Bad bytes are an error, never a panic.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::Membership;
use crate::raft::NodeId;

/// The encoding's version byte.
pub const MEMBERSHIP_VERSION: u8 = 1;
/// The longest address a member may have, in bytes.
pub const MAX_ADDRESS_LEN: usize = 1024;

/// Why bytes are not a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipDecodeError {
    /// The bytes end inside `what`.
    Truncated {
        /// The field being read.
        what: &'static str,
    },
    /// An unknown version byte.
    UnsupportedVersion {
        /// The version found.
        found: u8,
    },
    /// A count claims more elements than the bytes left can hold.
    CountTooLarge {
        /// The field.
        what: &'static str,
        /// The count claimed.
        count: u64,
        /// The bytes left.
        left: usize,
    },
    /// An address over [`MAX_ADDRESS_LEN`].
    AddressTooLong {
        /// Its length.
        len: usize,
    },
    /// A set or map is not strictly ascending.
    NotAscending {
        /// The field.
        what: &'static str,
    },
    /// Bytes follow the last field.
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// The fields decode but break an invariant.
    Invalid(String),
}

impl fmt::Display for MembershipDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MembershipDecodeError::Truncated { what } => {
                write!(f, "configuration truncated in {what}")
            }
            MembershipDecodeError::UnsupportedVersion { found } => write!(
                f,
                "configuration format version {found} (this build reads {MEMBERSHIP_VERSION})"
            ),
            MembershipDecodeError::CountTooLarge { what, count, left } => {
                write!(f, "configuration claims {count} {what} in {left} bytes")
            }
            MembershipDecodeError::AddressTooLong { len } => write!(
                f,
                "configuration holds a {len}-byte address (at most {MAX_ADDRESS_LEN})"
            ),
            MembershipDecodeError::NotAscending { what } => {
                write!(f, "configuration's {what} are not strictly ascending")
            }
            MembershipDecodeError::TrailingBytes { count } => {
                write!(f, "{count} bytes follow the configuration")
            }
            MembershipDecodeError::Invalid(why) => write!(f, "invalid configuration: {why}"),
        }
    }
}

impl std::error::Error for MembershipDecodeError {}

impl Membership {
    /// The bytes of this configuration (see the module documentation).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![MEMBERSHIP_VERSION];
        for set in [&self.incoming, &self.outgoing, &self.learners] {
            put_u16_count(&mut out, set.len());
            for id in set {
                out.extend_from_slice(&id.to_le_bytes());
            }
        }
        put_u16_count(&mut out, self.addresses.len());
        for (id, address) in &self.addresses {
            out.extend_from_slice(&id.to_le_bytes());
            put_u16_count(&mut out, address.len());
            out.extend_from_slice(address);
        }
        let retired = u32::try_from(self.retired.len()).expect("fewer than 2^32 ids retired");
        out.extend_from_slice(&retired.to_le_bytes());
        for id in &self.retired {
            out.extend_from_slice(&id.to_le_bytes());
        }
        out
    }

    /// A configuration from its bytes, refused with the reason if they are not one.
    pub fn decode(bytes: &[u8]) -> Result<Membership, MembershipDecodeError> {
        let mut reader = Reader { rest: bytes };
        let version = reader.u8("version")?;
        if version != MEMBERSHIP_VERSION {
            return Err(MembershipDecodeError::UnsupportedVersion { found: version });
        }
        let count = u64::from(reader.u16("voters")?);
        let incoming = reader.id_set("voters", count)?;
        let count = u64::from(reader.u16("outgoing voters")?);
        let outgoing = reader.id_set("outgoing voters", count)?;
        let count = u64::from(reader.u16("learners")?);
        let learners = reader.id_set("learners", count)?;
        let count = u64::from(reader.u16("addresses")?);
        reader.check_count("addresses", count, 10)?;
        let mut addresses = BTreeMap::new();
        let mut previous = None;
        for _ in 0..count {
            let id = reader.u64("address id")?;
            if previous.is_some_and(|last| id <= last) {
                return Err(MembershipDecodeError::NotAscending { what: "addresses" });
            }
            previous = Some(id);
            let len = usize::from(reader.u16("address length")?);
            if len > MAX_ADDRESS_LEN {
                return Err(MembershipDecodeError::AddressTooLong { len });
            }
            addresses.insert(id, reader.take(len, "address")?.to_vec());
        }
        let count = u64::from(reader.u32("retired ids")?);
        let retired = reader.id_set("retired ids", count)?;
        if !reader.rest.is_empty() {
            return Err(MembershipDecodeError::TrailingBytes {
                count: reader.rest.len(),
            });
        }
        let membership = Membership {
            incoming,
            outgoing,
            learners,
            addresses,
            retired,
        };
        match membership.broken_invariant() {
            Some(why) => Err(MembershipDecodeError::Invalid(why)),
            None => Ok(membership),
        }
    }
}

fn put_u16_count(out: &mut Vec<u8>, count: usize) {
    let count = u16::try_from(count).expect("members and addresses stay below 2^16");
    out.extend_from_slice(&count.to_le_bytes());
}

/// The bytes not read yet.
struct Reader<'b> {
    rest: &'b [u8],
}

impl<'b> Reader<'b> {
    fn take(&mut self, len: usize, what: &'static str) -> Result<&'b [u8], MembershipDecodeError> {
        if self.rest.len() < len {
            return Err(MembershipDecodeError::Truncated { what });
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, MembershipDecodeError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, MembershipDecodeError> {
        let mut bytes = [0; 2];
        bytes.copy_from_slice(self.take(2, what)?);
        Ok(u16::from_le_bytes(bytes))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, MembershipDecodeError> {
        let mut bytes = [0; 4];
        bytes.copy_from_slice(self.take(4, what)?);
        Ok(u32::from_le_bytes(bytes))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, MembershipDecodeError> {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(bytes))
    }

    /// Refuses a count of elements of at least `min_len` bytes each that the rest cannot hold.
    fn check_count(
        &self,
        what: &'static str,
        count: u64,
        min_len: u64,
    ) -> Result<(), MembershipDecodeError> {
        let left = self.rest.len();
        if count.saturating_mul(min_len) > left as u64 {
            return Err(MembershipDecodeError::CountTooLarge { what, count, left });
        }
        Ok(())
    }

    fn id_set(
        &mut self,
        what: &'static str,
        count: u64,
    ) -> Result<BTreeSet<NodeId>, MembershipDecodeError> {
        self.check_count(what, count, 8)?;
        let mut set = BTreeSet::new();
        let mut previous = None;
        for _ in 0..count {
            let id = self.u64(what)?;
            if previous.is_some_and(|last| id <= last) {
                return Err(MembershipDecodeError::NotAscending { what });
            }
            previous = Some(id);
            set.insert(id);
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::{Membership, MembershipDecodeError};
    use crate::raft::membership::Step;

    fn joint() -> Membership {
        let three =
            Membership::bootstrap((1..=3).map(|id| (id, format!("10.0.0.{id}:7000").into_bytes())));
        three
            .enter_joint(&[
                Step::AddVoter {
                    id: 4,
                    address: b"10.0.0.4:7000".to_vec(),
                },
                Step::AddLearner {
                    id: 5,
                    address: b"10.0.0.5:7000".to_vec(),
                },
                Step::Remove { id: 3 },
            ])
            .expect("a valid change")
    }

    #[test]
    fn a_configuration_decodes_to_itself() {
        let joint = joint();
        assert_eq!(Membership::decode(&joint.encode()), Ok(joint.clone()));
        let new = joint.leave_joint();
        assert_eq!(Membership::decode(&new.encode()), Ok(new));
    }

    /// Every prefix of a valid encoding is refused, never a panic and never a smaller
    /// configuration.
    #[test]
    fn every_truncation_is_refused() {
        let bytes = joint().encode();
        for len in 0..bytes.len() {
            assert!(
                Membership::decode(&bytes[..len]).is_err(),
                "prefix of {len}"
            );
        }
        let mut longer = bytes;
        longer.push(0);
        assert_eq!(
            Membership::decode(&longer),
            Err(MembershipDecodeError::TrailingBytes { count: 1 })
        );
    }

    #[test]
    fn a_count_beyond_the_bytes_left_is_refused_before_allocating() {
        // Version, then 65,535 voters claimed in 4 bytes.
        let bytes = [1, 0xff, 0xff, 0, 0, 0, 0];
        assert_eq!(
            Membership::decode(&bytes),
            Err(MembershipDecodeError::CountTooLarge {
                what: "voters",
                count: 65_535,
                left: 4
            })
        );
        assert_eq!(
            Membership::decode(&[9]),
            Err(MembershipDecodeError::UnsupportedVersion { found: 9 })
        );
    }

    #[test]
    fn decoded_fields_that_break_an_invariant_are_refused() {
        // One voter (1) without an address.
        let mut bytes = vec![1, 1, 0];
        bytes.extend_from_slice(&1u64.to_le_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            Membership::decode(&bytes),
            Err(MembershipDecodeError::Invalid(
                "member 1 has no address".to_string()
            ))
        );
    }
}
