//! Sealing and opening datagrams: AES-256-GCM (`ring`) over the body, with the envelope header
//! as associated data, under a subkey per sealer that HKDF-SHA256 derives from the shared key.
//! **The only file in the crate that holds cryptography**; built with the `seal` feature (on by
//! default). Without it, `seal_off.rs` stands in with the same interface and refuses every key.
//!
//! # A sealed datagram
//!
//! ```text
//! offset  size  field
//!      0    22  header       as `envelope`, with the kind byte's SEALED bit (0x80) set: the
//!                            associated data, authenticated, not encrypted
//!     22    16  salt         drawn from the OS when the sealer is made: names its subkeys
//!     38     8  counter      little-endian: the sealer's datagram count, the GCM nonce
//!     46     8  boot id      encrypted: the sender's boot id (grows across its restarts)
//!     54     8  sequence     encrypted: the counter, again, for the replay window
//!     62     …  body         encrypted: the message, as `codec` encodes it
//!    end    16  tag          GCM's, over the header and the ciphertext
//! ```
//!
//! [`SEAL_OVERHEAD`](crate::SEAL_OVERHEAD) (56 bytes) beyond the plaintext datagram, all inside
//! the datagram limit.
//!
//! # Subkeys, and why a nonce never repeats under one
//!
//! A key is shared by every member (the peer key) or by every member and every client (the
//! client key), across processes and restarts, and GCM's 96-bit nonce is too short for a random
//! prefix to keep sealers apart. So no datagram is sealed under the shared key itself: each
//! sealer (one per transport or client) draws a 128-bit salt from the OS when it is made, and
//! seals under `HKDF-SHA256(key, salt, INFO ‖ epoch)`, where the epoch is the counter's bits above
//! [`EPOCH_BITS`]. Under one subkey the nonce is the counter, which a sealer never repeats (it
//! does not wrap in any lifetime: 2^64 datagrams); two sealers share subkeys only if they draw
//! the same salt, which for a billion sealers under one key has probability below 2^-68. The
//! epoch rekeys a sealer every 2^24 datagrams, so no subkey seals more than 2^24 datagrams of at
//! most 64 KiB (2^36 AES blocks): the margin TLS 1.3 keeps for AES-GCM (RFC 8446, 5.5).
//!
//! A receiver derives the subkey of a (salt, epoch) it has not seen once, and keeps it only
//! after it verified a datagram: at most [`MAX_OPENERS`] sealers' subkeys, the least recently
//! used dropped first. A forged datagram costs one derivation per key of the ring (about a
//! microsecond) and leaves nothing behind.
//!
//! # What opening checks
//!
//! The tag, under the ring of the datagram's kind (peer for member traffic, client for client
//! traffic): the key that last opened this salt first, then the other while rotating. GCM
//! decrypts as it authenticates; on a mismatch the buffer is wiped before `open` returns, so no
//! plaintext of a forged datagram is left, and the decoder never sees a byte of it. The boot id
//! and sequence come out with the body, for the receiver's replay window (`replay.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN as GCM_NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf::{HKDF_SHA256, Salt};
use ring::rand::{SecureRandom, SystemRandom};

use crate::envelope::{HEADER_LEN, Kind, NONCE_LEN, SEALED_BODY_AT, SEQUENCE_LEN, TAG_LEN};
use crate::keys::{Key, KeyRing, KeySlot, Keys};
use crate::{DropReason, Error, Result};

/// Bytes of a sealer's salt: the first part of the sealed datagram's nonce field.
const SALT_LEN: usize = 16;
/// A sealer moves to a new subkey every 2^`EPOCH_BITS` datagrams.
pub const EPOCH_BITS: u32 = 24;
/// Other sealers' subkeys a sealer keeps for opening, at about 600 bytes each.
pub const MAX_OPENERS: usize = 1024;
/// HKDF's info: names what the subkey is for, so that no other use of the key derives it.
const INFO: &[u8] = b"balsa-net sealed datagram, AES-256-GCM, v3";

const _: () = assert!(
    NONCE_LEN == SALT_LEN + 8,
    "the nonce field is salt and counter"
);
const _: () = assert!(
    TAG_LEN == ring::aead::MAX_TAG_LEN,
    "the tag is GCM's (and checked below)"
);

/// A new key from the operating system's random source.
///
/// # Errors
/// The operating system's error, if its random source fails.
pub fn generate_key() -> std::io::Result<Key> {
    let mut bytes = [0; crate::keys::KEY_LEN];
    random_fill(&mut bytes)?;
    Ok(Key::from_bytes(bytes))
}

fn random_fill(bytes: &mut [u8]) -> std::io::Result<()> {
    SystemRandom::new()
        .fill(bytes)
        .map_err(|_| std::io::Error::other("the operating system's random source failed"))
}

/// The subkey a sealer with `salt` seals its `epoch`'s datagrams under.
fn subkey(key: &Key, salt: &[u8; SALT_LEN], epoch: u64) -> LessSafeKey {
    let epoch = epoch.to_le_bytes();
    let info: [&[u8]; 2] = [INFO, &epoch];
    let pseudorandom_key = Salt::new(HKDF_SHA256, salt).extract(key.as_bytes());
    let okm = pseudorandom_key
        .expand(&info, &AES_256_GCM)
        // HKDF-SHA256 refuses only outputs over 255 × 32 bytes; this one is 32.
        .expect("a 32-byte HKDF output");
    let subkey = LessSafeKey::new(UnboundKey::from(okm));
    debug_assert_eq!(subkey.algorithm().tag_len(), TAG_LEN);
    subkey
}

/// GCM's 96-bit nonce for the sealer's `counter`th datagram (under the subkey of its epoch).
fn nonce(counter: u64) -> Nonce {
    let mut bytes = [0; GCM_NONCE_LEN];
    bytes[GCM_NONCE_LEN - 8..].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(bytes)
}

fn epoch_of(counter: u64) -> u64 {
    counter >> EPOCH_BITS
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while one of these is held, and every state they guard is valid between
    // statements; a poisoned one is used as it is.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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

/// Seals and opens for one transport or client; shared by all its codecs (one counter).
pub(crate) struct Sealer {
    peer: Option<KeyRing>,
    client: Option<KeyRing>,
    salt: [u8; SALT_LEN],
    /// The next datagram's counter: nonce and sequence number.
    next_counter: AtomicU64,
    boot_id: u64,
    /// This sealer's subkeys for its current epoch, derived when first used.
    own: Mutex<OwnSubkeys>,
    /// Other sealers' subkeys that have opened a datagram.
    openers: Mutex<Openers>,
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

/// Which of the four keys a subkey comes from: the ring of a kind, and its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct KeyIndex {
    peer: bool,
    slot: KeySlot,
}

impl KeyIndex {
    fn new(kind: Kind, slot: KeySlot) -> KeyIndex {
        KeyIndex {
            peer: kind == Kind::Peer,
            slot,
        }
    }

    fn position(self) -> usize {
        usize::from(self.peer) * 2 + usize::from(self.slot == KeySlot::Previous)
    }
}

struct OwnSubkeys {
    epoch: u64,
    /// By [`KeyIndex::position`].
    subkeys: [Option<Arc<LessSafeKey>>; 4],
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct OpenerId {
    key: KeyIndex,
    salt: [u8; SALT_LEN],
}

struct Opener {
    epoch: u64,
    subkey: LessSafeKey,
    last_used: u64,
}

/// Other sealers' subkeys, at most [`MAX_OPENERS`], and a copy of the datagram being opened for
/// a second try while keys are rotated (GCM wipes what fails).
#[derive(Default)]
struct Openers {
    by_id: HashMap<OpenerId, Opener>,
    uses: u64,
    retry_copy: Vec<u8>,
}

impl Openers {
    /// No subkeys yet. While a ring holds a previous key, the retry copy is made as large as
    /// any datagram now (64 KiB per transport or client, only while rotating), so that opening
    /// never allocates for a datagram it refuses — not even the first time the copy grows.
    fn for_keys(keys: &Keys) -> Openers {
        let rotating = [&keys.peer, &keys.client]
            .into_iter()
            .flatten()
            .any(|ring| ring.previous.is_some());
        Openers {
            retry_copy: if rotating {
                Vec::with_capacity(crate::config::MAX_DATAGRAM_LIMIT)
            } else {
                Vec::new()
            },
            ..Openers::default()
        }
    }

    /// Opens `sealed` (ciphertext and tag) under the subkey of `id` at `epoch`, derived from
    /// `key` unless known. Returns the plaintext's length; on failure `sealed` is wiped.
    fn open(
        &mut self,
        id: OpenerId,
        key: &Key,
        counter: u64,
        header: &[u8],
        sealed: &mut [u8],
    ) -> Option<usize> {
        self.uses += 1;
        let epoch = epoch_of(counter);
        let aad = Aad::from(header);
        if let Some(opener) = self
            .by_id
            .get_mut(&id)
            .filter(|opener| opener.epoch == epoch)
        {
            let plaintext = opener
                .subkey
                .open_in_place(nonce(counter), aad, sealed)
                .ok()?;
            opener.last_used = self.uses;
            return Some(plaintext.len());
        }
        let subkey = subkey(key, &id.salt, epoch);
        let length = subkey
            .open_in_place(nonce(counter), aad, sealed)
            .ok()?
            .len();
        // Verified: worth keeping, unless it is a straggler from an epoch the sealer has left.
        if self.by_id.get(&id).is_none_or(|known| known.epoch < epoch) {
            if self.by_id.len() >= MAX_OPENERS && !self.by_id.contains_key(&id) {
                self.evict_least_recently_used();
            }
            self.by_id.insert(
                id,
                Opener {
                    epoch,
                    subkey,
                    last_used: self.uses,
                },
            );
        }
        Some(length)
    }

    fn evict_least_recently_used(&mut self) {
        let oldest = self
            .by_id
            .iter()
            .min_by_key(|(_, opener)| opener.last_used)
            .map(|(id, _)| *id);
        if let Some(id) = oldest {
            self.by_id.remove(&id);
        }
    }
}

impl Sealer {
    /// A sealer for `keys` (at least one ring), sending as boot `boot_id`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if the OS random source fails.
    pub(crate) fn new(keys: &Keys, boot_id: u64) -> Result<Sealer> {
        debug_assert!(keys.is_sealed(), "a sealer needs a key");
        let mut salt = [0; SALT_LEN];
        random_fill(&mut salt).map_err(|error| Error::InvalidConfig {
            reason: format!("drawing a sealer's salt: {error}"),
        })?;
        Ok(Sealer {
            peer: keys.peer.clone(),
            client: keys.client.clone(),
            salt,
            next_counter: AtomicU64::new(1),
            boot_id,
            own: Mutex::new(OwnSubkeys {
                epoch: 0,
                subkeys: Default::default(),
            }),
            openers: Mutex::new(Openers::for_keys(keys)),
        })
    }

    fn ring(&self, kind: Kind) -> Option<&KeyRing> {
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

    /// This sealer's subkey for `index` at the epoch of `counter`.
    fn own_subkey(&self, index: KeyIndex, key: &Key, counter: u64) -> Arc<LessSafeKey> {
        let epoch = epoch_of(counter);
        let mut own = lock(&self.own);
        if epoch < own.epoch {
            // Another thread took a later counter and moved on first: rare, not kept.
            return Arc::new(subkey(key, &self.salt, epoch));
        }
        if epoch > own.epoch {
            *own = OwnSubkeys {
                epoch,
                subkeys: Default::default(),
            };
        }
        Arc::clone(
            own.subkeys[index.position()]
                .get_or_insert_with(|| Arc::new(subkey(key, &self.salt, epoch))),
        )
    }

    /// Seals `datagram[..SEALED_BODY_AT + body_len + TAG_LEN]` in place: its header is written,
    /// its body is at [`SEALED_BODY_AT`]; fills in salt, counter, boot id, sequence and tag.
    /// Returns the sealed datagram's length.
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
        let (slot, key) = match (slot, &ring.previous) {
            (KeySlot::Previous, Some(previous)) => (KeySlot::Previous, previous),
            _ => (KeySlot::Current, &ring.current),
        };
        let counter = self.next_counter.fetch_add(1, Ordering::Relaxed);
        let subkey = self.own_subkey(KeyIndex::new(kind, slot), key, counter);
        let end = SEALED_BODY_AT + body_len;
        let (header, rest) = datagram.split_at_mut(HEADER_LEN);
        let (nonce_field, rest) = rest.split_at_mut(NONCE_LEN);
        nonce_field[..SALT_LEN].copy_from_slice(&self.salt);
        nonce_field[SALT_LEN..].copy_from_slice(&counter.to_le_bytes());
        let (plaintext, tag_space) = rest.split_at_mut(end - HEADER_LEN - NONCE_LEN);
        plaintext[..8].copy_from_slice(&self.boot_id.to_le_bytes());
        plaintext[8..SEQUENCE_LEN].copy_from_slice(&counter.to_le_bytes());
        let tag = subkey
            .seal_in_place_separate_tag(nonce(counter), Aad::from(&*header), plaintext)
            .map_err(|_| Error::Encode {
                reason: "the cipher refused a datagram's length".to_owned(),
            })?;
        tag_space[..TAG_LEN].copy_from_slice(tag.as_ref());
        Ok(end + TAG_LEN)
    }

    /// Opens a sealed datagram of `kind` in place: verifies its tag under the kind's ring and
    /// decrypts. Returns the body (within `datagram`) and what the sealed part said.
    ///
    /// # Errors
    /// [`DropReason::AuthFailed`] if it is too short to be sealed, or no key of the ring
    /// verifies it (then the part after the nonce is wiped, or as it came).
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
        let (nonce_field, sealed) = rest.split_at_mut(NONCE_LEN);
        let mut salt = [0; SALT_LEN];
        salt.copy_from_slice(&nonce_field[..SALT_LEN]);
        let mut counter = [0; 8];
        counter.copy_from_slice(&nonce_field[SALT_LEN..]);
        let counter = u64::from_le_bytes(counter);
        let id = |slot| OpenerId {
            key: KeyIndex::new(kind, slot),
            salt,
        };

        let mut openers = lock(&self.openers);
        let opened = match &ring.previous {
            None => openers
                .open(id(KeySlot::Current), &ring.current, counter, header, sealed)
                .map(|length| (length, KeySlot::Current)),
            Some(previous) => {
                // Rotating: the key this sealer was last opened under first, the other on a
                // copy of the datagram as it came.
                let previous_first = openers.by_id.contains_key(&id(KeySlot::Previous))
                    && !openers.by_id.contains_key(&id(KeySlot::Current));
                let tries = if previous_first {
                    [
                        (KeySlot::Previous, previous),
                        (KeySlot::Current, &ring.current),
                    ]
                } else {
                    [
                        (KeySlot::Current, &ring.current),
                        (KeySlot::Previous, previous),
                    ]
                };
                let mut retry_copy = std::mem::take(&mut openers.retry_copy);
                retry_copy.clear();
                retry_copy.extend_from_slice(sealed);
                let [(first_slot, first_key), (second_slot, second_key)] = tries;
                let opened = match openers.open(id(first_slot), first_key, counter, header, sealed)
                {
                    Some(length) => Some((length, first_slot)),
                    None => {
                        sealed.copy_from_slice(&retry_copy);
                        openers
                            .open(id(second_slot), second_key, counter, header, sealed)
                            .map(|length| (length, second_slot))
                    }
                };
                openers.retry_copy = retry_copy;
                opened
            }
        };
        drop(openers);
        let (length, slot) = opened.ok_or(DropReason::AuthFailed)?;
        debug_assert_eq!(
            length + TAG_LEN,
            sealed.len(),
            "GCM's plaintext is all but the tag"
        );
        let (sequence_part, body) = sealed[..length].split_at(SEQUENCE_LEN);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::SEALED;

    fn keys(byte: u8) -> Keys {
        Keys::node(
            KeyRing::new(Key::from_bytes([byte; 32])),
            KeyRing::new(Key::from_bytes([byte + 1; 32])),
        )
    }

    /// A sealed peer datagram from `sealer`, its counter forced to `counter`.
    fn sealed_at(sealer: &Sealer, counter: u64, body: &[u8]) -> Vec<u8> {
        sealer.next_counter.store(counter, Ordering::Relaxed);
        let mut datagram = vec![0; SEALED_BODY_AT + body.len() + TAG_LEN];
        datagram[..HEADER_LEN].fill(7);
        datagram[5] = Kind::Peer as u8 | SEALED;
        datagram[SEALED_BODY_AT..SEALED_BODY_AT + body.len()].copy_from_slice(body);
        let length = sealer
            .seal(Kind::Peer, KeySlot::Current, &mut datagram, body.len())
            .expect("a peer key");
        assert_eq!(length, datagram.len());
        datagram
    }

    #[test]
    fn each_epoch_seals_under_its_own_subkey_and_still_opens() {
        let sender = Sealer::new(&keys(1), 5).expect("random source");
        let receiver = Sealer::new(&keys(1), 6).expect("random source");
        let last_of_first = (1 << EPOCH_BITS) - 1;
        for counter in [1, last_of_first, last_of_first + 1, 3 << EPOCH_BITS] {
            let mut datagram = sealed_at(&sender, counter, b"hello");
            let (body, sealing) = receiver.open(Kind::Peer, &mut datagram).expect("opens");
            assert_eq!(body, b"hello");
            assert_eq!((sealing.boot_id, sealing.sequence), (5, counter));
        }
        // The receiver keeps one subkey per sealer, of its latest epoch.
        assert_eq!(lock(&receiver.openers).by_id.len(), 1);
        // Two datagrams with the same counter from one sealer in different epochs would share
        // a nonce; different epochs mean different subkeys, so their tags differ.
        let early = sealed_at(&sender, 1, b"same");
        let late = sealed_at(&sender, 1 + (1 << EPOCH_BITS), b"same");
        assert_ne!(early[SEALED_BODY_AT..], late[SEALED_BODY_AT..]);
    }

    #[test]
    fn a_straggler_from_an_earlier_epoch_opens_without_displacing_the_later_subkey() {
        let sender = Sealer::new(&keys(1), 5).expect("random source");
        let receiver = Sealer::new(&keys(1), 6).expect("random source");
        let mut late = sealed_at(&sender, 2 << EPOCH_BITS, b"late");
        let mut early = sealed_at(&sender, 7, b"early");
        receiver.open(Kind::Peer, &mut late).expect("opens");
        receiver.open(Kind::Peer, &mut early).expect("opens");
        let openers = lock(&receiver.openers);
        let kept: Vec<u64> = openers.by_id.values().map(|opener| opener.epoch).collect();
        assert_eq!(kept, [2]);
    }

    #[test]
    fn at_most_max_openers_subkeys_are_kept_the_least_recently_used_going_first() {
        let receiver = Sealer::new(&keys(1), 6).expect("random source");
        let first = Sealer::new(&keys(1), 1).expect("random source");
        let mut datagram = sealed_at(&first, 1, b"x");
        receiver.open(Kind::Peer, &mut datagram).expect("opens");
        for boot in 0..MAX_OPENERS {
            let other = Sealer::new(&keys(1), boot as u64).expect("random source");
            let mut datagram = sealed_at(&other, 1, b"x");
            receiver.open(Kind::Peer, &mut datagram).expect("opens");
            assert!(lock(&receiver.openers).by_id.len() <= MAX_OPENERS);
        }
        let openers = lock(&receiver.openers);
        assert_eq!(openers.by_id.len(), MAX_OPENERS);
        let first_id = OpenerId {
            key: KeyIndex::new(Kind::Peer, KeySlot::Current),
            salt: first.salt,
        };
        assert!(!openers.by_id.contains_key(&first_id), "the oldest went");
    }

    #[test]
    fn a_forged_datagram_leaves_no_subkey_and_no_plaintext_behind() {
        let sender = Sealer::new(&keys(1), 5).expect("random source");
        let receiver = Sealer::new(&keys(1), 6).expect("random source");
        let secret = [0x5A; 300];
        let mut forged = sealed_at(&sender, 1, &secret);
        *forged.last_mut().expect("a tag") ^= 1;
        assert_eq!(
            receiver.open(Kind::Peer, &mut forged),
            Err(DropReason::AuthFailed)
        );
        assert!(lock(&receiver.openers).by_id.is_empty());
        assert!(
            !forged.windows(8).any(|window| window == [0x5A; 8]),
            "no plaintext left in the buffer"
        );
    }
}
