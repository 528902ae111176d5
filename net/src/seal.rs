//! Sealing and opening datagrams: XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`) over the
//! body, with the envelope header as associated data. **The only file in the crate that holds
//! cryptography**; built with the `seal` feature (on by default). Without it, `seal_off.rs` stands
//! in with the same interface and refuses every key.
//!
//! # A sealed datagram
//!
//! ```text
//! offset  size  field
//!      0    22  header       as `envelope`, with the kind byte's SEALED bit (0x80) set: the
//!                            associated data, authenticated, not encrypted
//!     22    24  nonce        16 bytes drawn from the OS when the sealer is made, then an 8-byte
//!                            little-endian counter
//!     46     8  boot id      encrypted: the sender's boot id (grows across its restarts)
//!     54     8  sequence     encrypted: the counter of the nonce, again
//!     62     …  body         encrypted: the message, as `codec` encodes it
//!    end    16  tag          Poly1305 over the header, the nonce and the ciphertext
//! ```
//!
//! [`SEAL_OVERHEAD`](crate::SEAL_OVERHEAD) (56 bytes) beyond the plaintext datagram, all inside the datagram limit.
//!
//! # Why the nonce never repeats under a key
//!
//! A key is shared by every member (the peer key) or by every member and every client (the
//! client key), across processes and restarts, so a nonce must be unique among all of them
//! without coordination. Each sealer draws a 128-bit prefix from the operating system's random
//! source when it is made (once per transport or client) and counts its datagrams in the other
//! 64 bits. A sealer never repeats its own nonces (the counter does not wrap in any lifetime:
//! 2^64 datagrams); two sealers collide only if they draw the same prefix, which for a billion
//! sealers under one key has probability below 2^-68. A durable counter would need storage the
//! transport does not have (a client has none), and a random 192-bit nonce per datagram would
//! cost a system call per datagram.
//!
//! # What opening checks
//!
//! The tag, under the ring of the datagram's kind (peer for member traffic, client for client
//! traffic): the current key first, then the previous one while rotating. Nothing of the body is
//! decrypted, let alone decoded, before the tag is verified. The boot id and sequence come out
//! with the body, for the receiver's replay window (`replay.rs`).

use std::sync::atomic::{AtomicU64, Ordering};

use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::{AeadInPlace, KeyInit, OsRng};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};

use crate::envelope::{HEADER_LEN, Kind, NONCE_LEN, SEALED_BODY_AT, SEQUENCE_LEN, TAG_LEN};
use crate::keys::{Key, KeyRing, KeySlot, Keys};
use crate::{DropReason, Error, Result};

/// A new key from the operating system's random source.
///
/// # Errors
/// The operating system's error, if its random source fails.
pub fn generate_key() -> std::io::Result<Key> {
    let mut bytes = [0; crate::keys::KEY_LEN];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|error| std::io::Error::other(error.to_string()))?;
    Ok(Key::from_bytes(bytes))
}

/// What opening a datagram found, beside its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sealing {
    /// The sender's boot id.
    pub boot_id: u64,
    /// The sender's sequence number for this datagram.
    pub sequence: u64,
    /// Which key of the ring opened it.
    pub slot: KeySlot,
}

/// Seals and opens for one transport or client; shared by all its codecs (one nonce counter).
pub(crate) struct Sealer {
    peer: Option<Ring>,
    client: Option<Ring>,
    nonce_prefix: [u8; NONCE_LEN - 8],
    /// The next datagram's counter: nonce suffix and sequence number.
    next_sequence: AtomicU64,
    boot_id: u64,
}

struct Ring {
    current: XChaCha20Poly1305,
    previous: Option<XChaCha20Poly1305>,
}

impl Ring {
    fn new(ring: &KeyRing) -> Ring {
        Ring {
            current: cipher(&ring.current),
            previous: ring.previous.as_ref().map(cipher),
        }
    }
}

fn cipher(key: &Key) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.as_bytes().into())
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("peer", &self.peer.is_some())
            .field("client", &self.client.is_some())
            .field("boot_id", &self.boot_id)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// A sealer for `keys` (at least one ring), sending as boot `boot_id`.
    ///
    /// # Errors
    /// [`Error::Io`]-like [`Error::InvalidConfig`] if the OS random source fails.
    pub(crate) fn new(keys: &Keys, boot_id: u64) -> Result<Sealer> {
        debug_assert!(keys.is_sealed(), "a sealer needs a key");
        let mut nonce_prefix = [0; NONCE_LEN - 8];
        OsRng
            .try_fill_bytes(&mut nonce_prefix)
            .map_err(|error| Error::InvalidConfig {
                reason: format!("the OS random source failed drawing a nonce prefix: {error}"),
            })?;
        Ok(Sealer {
            peer: keys.peer.as_ref().map(Ring::new),
            client: keys.client.as_ref().map(Ring::new),
            nonce_prefix,
            next_sequence: AtomicU64::new(1),
            boot_id,
        })
    }

    fn ring(&self, kind: Kind) -> Option<&Ring> {
        match kind {
            Kind::Peer => self.peer.as_ref(),
            Kind::Request | Kind::Response => self.client.as_ref(),
        }
    }

    /// Whether the ring of `kind` has a previous key (only then does a sender ask which key a
    /// receiver last used).
    pub(crate) fn rotating(&self, kind: Kind) -> bool {
        self.ring(kind).is_some_and(|ring| ring.previous.is_some())
    }

    /// Seals `datagram[..SEALED_BODY_AT + body_len + TAG_LEN]` in place: its header is written,
    /// its body is at [`SEALED_BODY_AT`]; fills in nonce, boot id, sequence and tag. Returns the
    /// sealed datagram's length.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if there is no key for `kind`.
    pub(crate) fn seal(
        &self,
        kind: Kind,
        slot: KeySlot,
        datagram: &mut [u8],
        body_len: usize,
    ) -> Result<usize> {
        let ring = self.ring(kind).ok_or_else(|| Error::InvalidConfig {
            reason: format!("no key to seal a {kind:?} datagram under"),
        })?;
        let cipher = match (slot, &ring.previous) {
            (KeySlot::Previous, Some(previous)) => previous,
            _ => &ring.current,
        };
        let sequence = self.next_sequence.fetch_add(1, Ordering::Relaxed);
        let end = SEALED_BODY_AT + body_len;
        let (header, rest) = datagram.split_at_mut(HEADER_LEN);
        let (nonce, rest) = rest.split_at_mut(NONCE_LEN);
        nonce[..NONCE_LEN - 8].copy_from_slice(&self.nonce_prefix);
        nonce[NONCE_LEN - 8..].copy_from_slice(&sequence.to_le_bytes());
        let (plaintext, tag_space) = rest.split_at_mut(end - HEADER_LEN - NONCE_LEN);
        plaintext[..8].copy_from_slice(&self.boot_id.to_le_bytes());
        plaintext[8..SEQUENCE_LEN].copy_from_slice(&sequence.to_le_bytes());
        let tag = cipher
            .encrypt_in_place_detached(XNonce::from_slice(nonce), header, plaintext)
            .map_err(|_| Error::Encode {
                reason: "the cipher refused a datagram's length".to_owned(),
            })?;
        tag_space[..TAG_LEN].copy_from_slice(&tag);
        Ok(end + TAG_LEN)
    }

    /// Opens a sealed datagram of `kind` in place: verifies its tag under the kind's ring, then
    /// decrypts. Returns the body (within `datagram`) and what the sealed part said.
    ///
    /// # Errors
    /// [`DropReason::AuthFailed`] if it is too short to be sealed, or no key of the ring
    /// verifies it (then nothing was decrypted).
    pub(crate) fn open<'d>(
        &self,
        kind: Kind,
        datagram: &'d mut [u8],
    ) -> Result<(&'d [u8], Sealing), DropReason> {
        let ring = self.ring(kind).ok_or(DropReason::AuthFailed)?;
        if datagram.len() < SEALED_BODY_AT + TAG_LEN {
            return Err(DropReason::AuthFailed);
        }
        let (header, rest) = datagram.split_at_mut(HEADER_LEN);
        let (nonce, rest) = rest.split_at_mut(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        let nonce = XNonce::from_slice(nonce);
        let tag = Tag::from_slice(tag);
        // A failed verification leaves the buffer as it was (the crate checks before it
        // decrypts), so the previous key is tried on the same bytes.
        let slot = if ring
            .current
            .decrypt_in_place_detached(nonce, header, ciphertext, tag)
            .is_ok()
        {
            KeySlot::Current
        } else if ring.previous.as_ref().is_some_and(|previous| {
            previous
                .decrypt_in_place_detached(nonce, header, ciphertext, tag)
                .is_ok()
        }) {
            KeySlot::Previous
        } else {
            return Err(DropReason::AuthFailed);
        };
        let (sequence_part, body) = ciphertext.split_at(SEQUENCE_LEN);
        let word = |at: usize| {
            let mut bytes = [0; 8];
            bytes.copy_from_slice(&sequence_part[at..at + 8]);
            u64::from_le_bytes(bytes)
        };
        Ok((
            body,
            Sealing {
                boot_id: word(0),
                sequence: word(8),
                slot,
            },
        ))
    }
}
