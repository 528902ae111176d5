//! Stands in for `seal.rs` in a build without the `seal` feature: the same interface, no
//! cryptography. Every key is refused when a codec or transport is made, so such a build only
//! ever sends and accepts plaintext datagrams, and a sealed one is dropped as
//! [`DropReason::AuthFailed`](crate::DropReason::AuthFailed).

use crate::envelope::Kind;
use crate::keys::{Key, KeySlot, Keys};
use crate::{DropReason, Error, Result};

/// Refused: this build has no cryptography.
///
/// # Errors
/// Always.
pub fn generate_key() -> std::io::Result<Key> {
    Err(std::io::Error::other(
        "balsa-net was built without the `seal` feature",
    ))
}

/// What opening a datagram found, beside its body (never made in this build).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sealing {
    /// The sender's boot id.
    pub boot_id: u64,
    /// The sender's sequence number for this datagram.
    pub sequence: u64,
    /// Which key of the ring opened it.
    pub slot: KeySlot,
}

/// Never made: [`Sealer::new`] refuses.
#[derive(Debug)]
pub(crate) enum Sealer {}

impl Sealer {
    pub(crate) fn new(_keys: &Keys, _boot_id: u64) -> Result<Sealer> {
        Err(Error::InvalidConfig {
            reason: "keys given, but balsa-net was built without the `seal` feature".to_owned(),
        })
    }

    pub(crate) fn rotating(&self, _kind: Kind) -> bool {
        match *self {}
    }

    pub(crate) fn seal(
        &self,
        _kind: Kind,
        _slot: KeySlot,
        _datagram: &mut [u8],
        _body_len: usize,
    ) -> Result<usize> {
        match *self {}
    }

    pub(crate) fn open<'d>(
        &self,
        _kind: Kind,
        _datagram: &'d mut [u8],
    ) -> Result<(&'d [u8], Sealing), DropReason> {
        match *self {}
    }
}
