//! The bytes of a snapshot as the core keeps and sends them: the configuration in force at the
//! snapshot's index, then the state machine's own bytes (§7: "the snapshot also includes the
//! latest configuration as of the last included index"; thesis §5.1). The core reads the
//! configuration out of a snapshot it installs or restarts from; the state machine is given
//! only its own part.
//!
//! ```text
//! magic        8 bytes "BALSASNP"
//! version      u8 = 1
//! has_config   u8: 0 (no configuration known at that index: a node that joined and has not
//!              seen one yet) or 1
//! config_len   u32, then config_len bytes: the configuration (`membership/codec.rs`), if any
//! state        the rest: the state machine's snapshot
//! ```
//!
//! Snapshots written before configurations existed hold only the state machine's bytes: they
//! do not start with the magic, and read as "no configuration, all state" (the node then uses
//! the configuration it was bootstrapped with). A framed snapshot whose frame is damaged is
//! refused with the reason, never read as state.

use std::fmt;

use super::membership::{Membership, MembershipDecodeError};

/// What a framed snapshot starts with.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"BALSASNP";
/// The frame's version.
pub const SNAPSHOT_FRAME_VERSION: u8 = 1;

/// Why a snapshot's frame cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotFrameError {
    /// The frame ends early.
    Truncated,
    /// An unknown frame version.
    UnsupportedVersion {
        /// The version found.
        found: u8,
    },
    /// The has-configuration byte is neither 0 nor 1.
    BadFlag {
        /// The byte found.
        found: u8,
    },
    /// The configuration inside does not decode.
    Membership(MembershipDecodeError),
}

impl fmt::Display for SnapshotFrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotFrameError::Truncated => write!(f, "snapshot frame truncated"),
            SnapshotFrameError::UnsupportedVersion { found } => write!(
                f,
                "snapshot frame version {found} (this build reads {SNAPSHOT_FRAME_VERSION})"
            ),
            SnapshotFrameError::BadFlag { found } => {
                write!(
                    f,
                    "snapshot frame's configuration flag is {found}, not 0 or 1"
                )
            }
            SnapshotFrameError::Membership(error) => write!(f, "snapshot's {error}"),
        }
    }
}

impl std::error::Error for SnapshotFrameError {}

/// A snapshot's parts, borrowed from its bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Framed<'s> {
    /// The configuration in force at the snapshot's index, if known.
    pub membership: Option<Membership>,
    /// The state machine's bytes.
    pub state: &'s [u8],
}

/// The snapshot bytes for `state` with `membership` in front.
pub fn frame(membership: Option<&Membership>, state: &[u8]) -> Vec<u8> {
    let mut out = header(membership, state.len());
    out.extend_from_slice(state);
    out
}

/// The frame's header for `membership`, in a buffer with room for `state_len` more bytes: the
/// state is appended to it.
pub fn header(membership: Option<&Membership>, state_len: usize) -> Vec<u8> {
    let config = membership.map(Membership::encode).unwrap_or_default();
    let mut out = Vec::with_capacity(SNAPSHOT_MAGIC.len() + 6 + config.len() + state_len);
    out.extend_from_slice(&SNAPSHOT_MAGIC);
    out.push(SNAPSHOT_FRAME_VERSION);
    out.push(u8::from(membership.is_some()));
    let len = u32::try_from(config.len()).expect("a configuration is far below 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&config);
    out
}

/// The parts of snapshot `bytes`; unframed (older) snapshots are all state.
pub fn unframe(bytes: &[u8]) -> Result<Framed<'_>, SnapshotFrameError> {
    let Some(rest) = bytes.strip_prefix(&SNAPSHOT_MAGIC) else {
        return Ok(Framed {
            membership: None,
            state: bytes,
        });
    };
    let [version, flag, l0, l1, l2, l3, rest @ ..] = rest else {
        return Err(SnapshotFrameError::Truncated);
    };
    if *version != SNAPSHOT_FRAME_VERSION {
        return Err(SnapshotFrameError::UnsupportedVersion { found: *version });
    }
    let len = u32::from_le_bytes([*l0, *l1, *l2, *l3]) as usize;
    if rest.len() < len {
        return Err(SnapshotFrameError::Truncated);
    }
    let (config, state) = rest.split_at(len);
    let membership = match flag {
        0 if len == 0 => None,
        1 => Some(Membership::decode(config).map_err(SnapshotFrameError::Membership)?),
        found => return Err(SnapshotFrameError::BadFlag { found: *found }),
    };
    Ok(Framed { membership, state })
}

#[cfg(test)]
mod tests {
    use super::{SnapshotFrameError, frame, unframe};
    use crate::raft::membership::Membership;

    #[test]
    fn a_framed_snapshot_gives_back_its_configuration_and_state() {
        let three = Membership::bootstrap((1..=3).map(|id| (id, vec![b'a'; 3])));
        let bytes = frame(Some(&three), b"state");
        let framed = unframe(&bytes).expect("a frame");
        assert_eq!(framed.membership, Some(three));
        assert_eq!(framed.state, b"state");
        let bytes = frame(None, b"");
        let framed = unframe(&bytes).expect("a frame");
        assert_eq!((framed.membership, framed.state), (None, &b""[..]));
    }

    /// Snapshots of earlier versions (the key-value store's start with its version byte 1) are
    /// read as all state.
    #[test]
    fn an_unframed_snapshot_is_all_state() {
        let framed = unframe(&[1, 0x31, 0, 0, 0]).expect("readable");
        assert_eq!(framed.membership, None);
        assert_eq!(framed.state, &[1, 0x31, 0, 0, 0]);
    }

    #[test]
    fn a_damaged_frame_is_refused() {
        let three = Membership::bootstrap((1..=3).map(|id| (id, vec![b'a'; 3])));
        let bytes = frame(Some(&three), b"state");
        // Cut inside the configuration: refused, never read as a smaller configuration.
        assert_eq!(unframe(&bytes[..20]), Err(SnapshotFrameError::Truncated));
        let mut flag = bytes.clone();
        flag[9] = 7;
        assert_eq!(
            unframe(&flag),
            Err(SnapshotFrameError::BadFlag { found: 7 })
        );
        let mut version = bytes;
        version[8] = 2;
        assert_eq!(
            unframe(&version),
            Err(SnapshotFrameError::UnsupportedVersion { found: 2 })
        );
    }
}
