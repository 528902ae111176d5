//! Key ranges for range and prefix reads ([`Query::Scan`](super::Query::Scan)) and the paging
//! rule that lets a large result stream in datagram-sized pieces.
//!
//! A [`KeyRange`] is `start` (inclusive) to `end` (exclusive; `None`: to the last key), in
//! bytewise key order, as the store's `BTreeMap` sorts keys. A prefix `P` is the range from `P`
//! to [`prefix_end`]`(P)`, the least byte string greater than every string starting with `P`.
//!
//! **Paging.** A scan is answered a page at a time: the store returns the keys of the range in
//! order, stopping at the page's key limit or its byte budget, whichever comes first (but a
//! non-empty range always yields at least one pair), and says whether keys remain. The
//! continuation is the last key returned: the next page asks for [`KeyRange::after`] that key,
//! which starts at `key ‖ 0x00`, the least key greater than it. Keys are at most
//! [`MAX_KEY_LEN`] bytes, so a bound may be one byte longer ([`MAX_BOUND_LEN`]).
//!
//! Invariants: an empty or inverted range (`end <= start`) holds nothing and never reaches
//! `BTreeMap::range` (which panics on an inverted range); `after(k).start > k` and nothing lies
//! strictly between them, so successive pages neither skip nor repeat a key.

use super::command::MAX_KEY_LEN;

/// The longest range bound: a key and one byte (a continuation, `key ‖ 0x00`).
pub const MAX_BOUND_LEN: usize = MAX_KEY_LEN + 1;

/// The keys from `start` (inclusive) to `end` (exclusive; `None`: no end), bytewise.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyRange {
    /// The least key in the range.
    pub start: Vec<u8>,
    /// The least key past the range (`None`: the range runs to the last key).
    pub end: Option<Vec<u8>>,
}

impl KeyRange {
    /// Every key.
    pub fn all() -> KeyRange {
        KeyRange::default()
    }

    /// The keys that start with `prefix` (every key for an empty prefix).
    pub fn prefix(prefix: &[u8]) -> KeyRange {
        KeyRange {
            start: prefix.to_vec(),
            end: prefix_end(prefix),
        }
    }

    /// The keys from `from` (inclusive) to `to` (exclusive).
    pub fn between(from: &[u8], to: &[u8]) -> KeyRange {
        KeyRange {
            start: from.to_vec(),
            end: Some(to.to_vec()),
        }
    }

    /// True when `key` lies in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|end| key < end)
    }

    /// True when the range can hold no key (`end <= start`).
    pub fn is_empty(&self) -> bool {
        self.end
            .as_deref()
            .is_some_and(|end| end <= self.start.as_slice())
    }

    /// The rest of the range after `key` (a page's last key): from `key ‖ 0x00`, the least key
    /// greater than `key`, to the same end.
    pub fn after(&self, key: &[u8]) -> KeyRange {
        let mut start = Vec::with_capacity(key.len() + 1);
        start.extend_from_slice(key);
        start.push(0);
        KeyRange {
            start,
            end: self.end.clone(),
        }
    }
}

/// The least byte string greater than every string that starts with `prefix`: the prefix with
/// its trailing `0xff` bytes dropped and its last byte then incremented; `None` when there is
/// none (an empty prefix, or one of `0xff` bytes only: the range runs to the last key).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&byte| byte != 0xff)?;
    let mut end = prefix[..=last].to_vec();
    // `last` is an index of `end` whose byte is below 0xff: the increment cannot overflow.
    end[last] += 1;
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_at_its_least_upper_bound() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
        let range = KeyRange::prefix(b"a\xff");
        assert!(range.contains(b"a\xff"));
        assert!(range.contains(b"a\xff\xff\x00"));
        assert!(!range.contains(b"b"));
        assert!(!range.contains(b"a\xfe\xff"));
        assert!(KeyRange::prefix(b"\xff").contains(b"\xff\xff\xff"));
    }

    #[test]
    fn after_a_key_nothing_lies_between_it_and_the_next_start() {
        let range = KeyRange::between(b"a", b"z");
        let rest = range.after(b"k");
        assert_eq!(rest.start, b"k\x00");
        assert!(!rest.contains(b"k"));
        assert!(rest.contains(b"k\x00"));
        assert_eq!(rest.end, range.end);
        let longest = vec![b'x'; MAX_KEY_LEN];
        assert_eq!(range.after(&longest).start.len(), MAX_BOUND_LEN);
    }

    #[test]
    fn inverted_and_equal_bounds_are_empty() {
        assert!(KeyRange::between(b"b", b"a").is_empty());
        assert!(KeyRange::between(b"a", b"a").is_empty());
        assert!(!KeyRange::between(b"a", b"a\x00").is_empty());
        assert!(!KeyRange::all().is_empty());
    }
}
