//! The secrets a transport seals and opens datagrams with: what they are, not what is done with
//! them (that is `seal.rs`, the one file that holds cryptography). Compiled with or without the
//! `seal` feature, so that a configuration names its keys the same way in both builds.
//!
//! A node holds two key rings: the *peer* ring for member traffic ([`Kind::Peer`]) and the
//! *client* ring for client traffic ([`Kind::Request`], [`Kind::Response`]). A client holds the
//! client ring only. Each ring has a current key (what is sealed under) and, while keys are being
//! rotated, a previous one (also accepted). A credential for one ring opens nothing of the other:
//! the kind byte is authenticated with the datagram, and each kind is opened under its own ring.
//!
//! [`Kind::Peer`]: crate::Kind::Peer
//! [`Kind::Request`]: crate::Kind::Request
//! [`Kind::Response`]: crate::Kind::Response

use std::fmt;

/// Bytes in a key: 256 bits.
pub const KEY_LEN: usize = 32;

/// A 256-bit secret. Its `Debug` never shows it (`balsa::keyfile::Fingerprint` names a key in
/// logs).
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; KEY_LEN]);

impl Key {
    /// The key made of these bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Key {
        Key(bytes)
    }

    /// The key's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Parses the text form: 64 hexadecimal digits (either case), surrounding whitespace
    /// ignored.
    ///
    /// # Errors
    /// What is wrong with the text, without repeating any of it (it may be most of a secret).
    pub fn from_hex(text: &str) -> Result<Key, KeyFormatError> {
        let text = text.trim();
        if text.len() != 2 * KEY_LEN {
            return Err(KeyFormatError::Length { chars: text.len() });
        }
        let mut bytes = [0; KEY_LEN];
        for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            let high = hex_digit(pair[0]).ok_or(KeyFormatError::NotHex)?;
            let low = hex_digit(pair[1]).ok_or(KeyFormatError::NotHex)?;
            *byte = high << 4 | low;
        }
        Ok(Key(bytes))
    }

    /// The text form: 64 lowercase hexadecimal digits.
    #[must_use]
    pub fn to_hex(&self) -> String {
        use fmt::Write;
        self.0
            .iter()
            .fold(String::with_capacity(2 * KEY_LEN), |mut text, byte| {
                let _ = write!(text, "{byte:02x}");
                text
            })
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Why a key's text form was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFormatError {
    /// Not 64 characters once trimmed.
    Length {
        /// How many there were.
        chars: usize,
    },
    /// A character that is not a hexadecimal digit.
    NotHex,
}

impl fmt::Display for KeyFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyFormatError::Length { chars } => write!(
                f,
                "a key is {} hexadecimal digits, not {chars} characters",
                2 * KEY_LEN
            ),
            KeyFormatError::NotHex => f.write_str("a key holds only hexadecimal digits"),
        }
    }
}

impl std::error::Error for KeyFormatError {}

/// Which key of a ring opened a datagram, or is to seal one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeySlot {
    /// The ring's current key.
    Current,
    /// The key it replaces, accepted while keys are rotated.
    Previous,
}

/// One ring: the key datagrams are sealed under, and the one it replaces, still accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRing {
    /// Sealed under; accepted.
    pub current: Key,
    /// Accepted only; `None` outside a rotation.
    pub previous: Option<Key>,
}

impl KeyRing {
    /// A ring of one key.
    #[must_use]
    pub fn new(current: Key) -> KeyRing {
        KeyRing {
            current,
            previous: None,
        }
    }

    /// This ring, also accepting `previous`.
    #[must_use]
    pub fn with_previous(mut self, previous: Option<Key>) -> KeyRing {
        self.previous = previous;
        self
    }
}

/// What a transport or codec seals with. Either both rings are absent ([`Keys::insecure`]:
/// plaintext datagrams, as a trusted network allows) or at least one is present, and then every
/// datagram is sealed: a plaintext one is refused, and a kind whose ring is absent can be
/// neither sent nor received.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keys {
    /// Member traffic.
    pub peer: Option<KeyRing>,
    /// Client traffic.
    pub client: Option<KeyRing>,
}

impl Keys {
    /// No keys: datagrams go in plaintext and plaintext is accepted.
    #[must_use]
    pub fn insecure() -> Keys {
        Keys::default()
    }

    /// A node's keys.
    #[must_use]
    pub fn node(peer: KeyRing, client: KeyRing) -> Keys {
        Keys {
            peer: Some(peer),
            client: Some(client),
        }
    }

    /// A client's: the client key alone.
    #[must_use]
    pub fn client(key: Key) -> Keys {
        Keys {
            peer: None,
            client: Some(KeyRing::new(key)),
        }
    }

    /// Whether datagrams are sealed (some key is given).
    #[must_use]
    pub fn is_sealed(&self) -> bool {
        self.peer.is_some() || self.client.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_without_echoing() {
        let key = Key::from_bytes(std::array::from_fn(|i| {
            u8::try_from(i * 7).expect("under 256")
        }));
        let text = key.to_hex();
        assert_eq!(text.len(), 64);
        assert_eq!(
            Key::from_hex(&format!("  {}\n", text.to_uppercase())),
            Ok(key.clone())
        );
        assert_eq!(
            Key::from_hex(&text[1..]),
            Err(KeyFormatError::Length { chars: 63 })
        );
        let mut bad = text.clone();
        bad.replace_range(10..11, "g");
        assert_eq!(Key::from_hex(&bad), Err(KeyFormatError::NotHex));
        assert!(
            !format!("{key:?}").contains(&text[..16]),
            "Debug hides the key"
        );
    }
}
