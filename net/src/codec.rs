//! The codec: a message to a datagram (envelope header, then body, sealed when keys are given)
//! and back, with every limit checked. **The only file in the crate that names `bincode`.**
//!
//! # Sealed or plaintext
//!
//! A codec made with keys ([`Codec::with_keys`]) seals every datagram it writes (`seal`) and
//! opens every datagram before its body is decoded: a plaintext datagram, or a sealed one that
//! fails verification under its kind's key ring, is [`DropReason::AuthFailed`] before the
//! decoder sees a byte. A codec without keys writes plaintext and refuses sealed datagrams the
//! same way (it cannot verify them). A sealed datagram's body is shorter than the datagram limit
//! by [`SEAL_OVERHEAD`]: what fits is decided on the sealed size.
//!
//! The body is the message in bincode 2's serde encoding with its `standard()` configuration:
//! integers as little-endian varints (below 251: one byte; 251, 252, 253 then 2, 4 or 8 bytes),
//! lengths as varints, enum variants as varint indexes. The `bincode` crate is marked
//! unmaintained (RUSTSEC-2025-0141). Nothing outside this file depends on it, so replacing it
//! with a maintained crate that writes the same bytes is a change to this file alone; the
//! round-trip and bounded-decode tests then say whether the replacement is faithful.
//!
//! # Bounded decoding
//!
//! A datagram is checked in this order, and dropped at the first failure: its size against the
//! datagram limit; the header (`envelope`); then the body, decoded through `bounded::Bounded`,
//! which refuses every length prefix that claims more than the bytes left after it before
//! bincode sees it; finally, no byte may be left over. Decoding reads from the datagram in
//! place; the only allocations are the message's own, each collection reserving at most
//! (bytes left) × (element size).
//!
//! Bincode's own limit is also set, as a second fence, but it is not the datagram limit: bincode
//! counts the *decoded* size of what it reads (8 bytes for a `u64` that took 1 byte on the wire,
//! 16 for a `u128`), so a limit equal to the datagram limit refuses honest datagrams (a 10 kB
//! datagram of 10,000 small `u64`s counts 80 kB). Nor does it cover serde sequences, whose
//! reservation serde caps at 1 MiB whatever bincode's limit. [`DECODE_CLAIM_LIMIT`] is the most
//! an honest datagram of [`MAX_DATAGRAM_LIMIT`] bytes can count: 16 per wire byte.

use bincode::config::{self, Configuration, Limit};
use bincode::de::read::Reader;
use bincode::enc::write::SizeWriter;
use bincode::error::{DecodeError, EncodeError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use std::sync::Arc;

use crate::bounded::{Bounded, Input};
use crate::config::{MAX_DATAGRAM_LIMIT, MIN_DATAGRAM_LIMIT};
use crate::envelope::{self, HEADER_LEN, Header, Kind, SEAL_OVERHEAD, SEALED_BODY_AT, TAG_LEN};
use crate::keys::{KeySlot, Keys};
use crate::seal::{Sealer, Sealing};
use crate::{DropReason, Error, Result};

/// Bincode's decode limit: what an honest datagram of [`MAX_DATAGRAM_LIMIT`] bytes can make it
/// count (16 decoded bytes per wire byte at most, for a one-byte `u128`), rounded up to 1 MiB.
pub const DECODE_CLAIM_LIMIT: usize = 1 << 20;
const _: () = assert!(DECODE_CLAIM_LIMIT >= 16 * MAX_DATAGRAM_LIMIT);

const WIRE: Configuration = config::standard();
const DECODE: Configuration<config::LittleEndian, config::Varint, Limit<DECODE_CLAIM_LIMIT>> =
    config::standard().with_limit::<DECODE_CLAIM_LIMIT>();

/// Encodes messages into datagrams for one sender (its cluster and node id) and decodes
/// datagrams for that cluster. Encoding reuses one buffer of the datagram limit's size.
/// Clones share the sealer (one nonce counter), each with a buffer of its own.
#[derive(Clone, Debug)]
pub struct Codec {
    cluster_id: u64,
    from: u64,
    datagram_limit: usize,
    /// Where datagrams are encoded: exactly `datagram_limit` bytes long, allocated once.
    scratch: Vec<u8>,
    /// `None`: plaintext.
    sealer: Option<Arc<Sealer>>,
}

/// A datagram that passed its size, header and (when sealed) authentication checks, with its
/// body not decoded yet.
#[derive(Debug)]
pub struct Opened<'d> {
    /// The checked header.
    pub header: Header,
    /// The body, decrypted in place when it was sealed.
    pub body: &'d [u8],
    /// What the sealed part said; `None` for a plaintext datagram.
    pub sealing: Option<Sealing>,
}

impl Codec {
    /// A codec for node `from` (0 for a client) of cluster `cluster_id`, for datagrams of at
    /// most `datagram_limit` bytes. Cluster id 0 ([`ANY_CLUSTER`](crate::ANY_CLUSTER)) is a
    /// client's "any": it sends 0 and accepts datagrams of every cluster (the crate
    /// documentation has the whole rule).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if `datagram_limit` is outside
    /// [`MIN_DATAGRAM_LIMIT`]..=[`MAX_DATAGRAM_LIMIT`].
    pub fn new(cluster_id: u64, from: u64, datagram_limit: usize) -> Result<Codec> {
        if !(MIN_DATAGRAM_LIMIT..=MAX_DATAGRAM_LIMIT).contains(&datagram_limit) {
            return Err(Error::InvalidConfig {
                reason: format!(
                    "datagram limit {datagram_limit} is outside \
                     {MIN_DATAGRAM_LIMIT}..={MAX_DATAGRAM_LIMIT} bytes"
                ),
            });
        }
        Ok(Codec {
            cluster_id,
            from,
            datagram_limit,
            scratch: vec![0; datagram_limit],
            sealer: None,
        })
    }

    /// This codec, sealing under `keys` as boot `boot_id` (see [`Config::boot_id`]), or in
    /// plaintext if `keys` is [`Keys::insecure`]. Draws a sealer's salt from the OS: clones share
    /// it and one counter; each call makes a new one.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] in a build without the `seal` feature, or if the OS random
    /// source fails.
    ///
    /// [`Config::boot_id`]: crate::Config::boot_id
    pub fn with_keys(mut self, keys: &Keys, boot_id: u64) -> Result<Codec> {
        self.sealer = if keys.is_sealed() {
            Some(Arc::new(Sealer::new(keys, boot_id)?))
        } else {
            None
        };
        Ok(self)
    }

    /// Whether this codec seals what it writes and requires what it reads to be sealed.
    #[must_use]
    pub fn is_sealed(&self) -> bool {
        self.sealer.is_some()
    }

    /// Whether datagrams of `kind` may be sealed under a previous key (a rotation is under way),
    /// so that a sender should ask which key its receiver last used.
    #[must_use]
    pub fn rotating(&self, kind: Kind) -> bool {
        self.sealer
            .as_ref()
            .is_some_and(|sealer| sealer.rotating(kind))
    }

    /// The largest datagram this codec writes or accepts, in bytes.
    #[must_use]
    pub fn datagram_limit(&self) -> usize {
        self.datagram_limit
    }

    /// Encodes `msg` as a datagram of `kind`; returns it, borrowed from the codec's buffer.
    ///
    /// # Errors
    /// [`Error::TooLarge`] with the size it would have had, if over the datagram limit (the
    /// buffer never grows past the limit: the size is then counted without writing);
    /// [`Error::Encode`] if `msg`'s `Serialize` fails.
    pub fn encode<M: Serialize + ?Sized>(&mut self, kind: Kind, msg: &M) -> Result<&[u8]> {
        self.encode_under(kind, KeySlot::Current, msg)
    }

    /// As [`Codec::encode`], sealed under the ring's key in `slot` (the current one if the ring
    /// has no previous key; ignored in plaintext).
    ///
    /// # Errors
    /// As [`Codec::encode`]; [`Error::InvalidConfig`] if this codec seals, but has no key for
    /// `kind` (a client's codec has none for member traffic).
    pub fn encode_under<M: Serialize + ?Sized>(
        &mut self,
        kind: Kind,
        slot: KeySlot,
        msg: &M,
    ) -> Result<&[u8]> {
        let sealed = self.sealer.is_some();
        let (body_at, body_end) = if sealed {
            (SEALED_BODY_AT, self.datagram_limit - TAG_LEN)
        } else {
            (HEADER_LEN, self.datagram_limit)
        };
        let Some((header, _)) = self.scratch.split_first_chunk_mut::<HEADER_LEN>() else {
            unreachable!("new() makes the buffer at least MIN_DATAGRAM_LIMIT > HEADER_LEN bytes");
        };
        envelope::write_header(header, kind, sealed, self.cluster_id, self.from);
        let body_len = match bincode::serde::encode_into_slice(
            msg,
            &mut self.scratch[body_at..body_end],
            WIRE,
        ) {
            Ok(body_len) => body_len,
            Err(EncodeError::UnexpectedEnd) => {
                return Err(Error::TooLarge {
                    size: self.datagram_len(msg)?,
                    limit: self.datagram_limit,
                });
            }
            Err(other) => return Err(encode_error(&other)),
        };
        let len = match &self.sealer {
            Some(sealer) => sealer.seal(kind, slot, &mut self.scratch, body_len)?,
            None => HEADER_LEN + body_len,
        };
        Ok(&self.scratch[..len])
    }

    /// The size of the datagram this codec would send `msg` in: [`datagram_len`], plus
    /// [`SEAL_OVERHEAD`] when it seals.
    ///
    /// # Errors
    /// [`Error::Encode`] if `msg`'s `Serialize` fails.
    pub fn datagram_len<M: Serialize + ?Sized>(&self, msg: &M) -> Result<usize> {
        let overhead = if self.sealer.is_some() {
            SEAL_OVERHEAD
        } else {
            0
        };
        Ok(datagram_len(msg)? + overhead)
    }

    /// Checks and decodes one datagram.
    ///
    /// # Errors
    /// The reason to drop it: [`DropReason::TooLarge`], a header reason (see `envelope`), or
    /// [`DropReason::Undecodable`] for a body that is malformed, truncated, claims a length
    /// longer than the bytes left, or has bytes after the message.
    pub fn decode<M: DeserializeOwned>(
        &self,
        datagram: &mut [u8],
    ) -> Result<(Header, M), DropReason> {
        let header = self.check_header(datagram)?;
        let opened = self.open(header, datagram)?;
        Ok((header, decode_body(opened.body)?))
    }

    /// The first step of [`Codec::decode`]: checks the datagram's size and header, without
    /// touching the rest. Lets the receiver check the sender before paying for the rest.
    ///
    /// # Errors
    /// [`DropReason::TooLarge`] or a header reason (see `envelope`).
    pub fn check_header(&self, datagram: &[u8]) -> Result<Header, DropReason> {
        if datagram.len() > self.datagram_limit {
            return Err(DropReason::TooLarge);
        }
        envelope::parse_header(datagram, self.cluster_id).map(|(header, _)| header)
    }

    /// The second step of [`Codec::decode`]: for a datagram whose `header` passed
    /// [`Codec::check_header`], verifies and decrypts it in place when this codec seals, or
    /// takes its body as it is when it does not.
    ///
    /// # Errors
    /// [`DropReason::AuthFailed`]: a plaintext datagram to a codec that seals, a sealed one to a
    /// codec that does not, or one no key of its kind's ring verifies.
    pub fn open<'d>(
        &self,
        header: Header,
        datagram: &'d mut [u8],
    ) -> Result<Opened<'d>, DropReason> {
        match (&self.sealer, header.sealed) {
            (Some(sealer), true) => {
                let (body, sealing) = sealer.open(header.kind, datagram)?;
                Ok(Opened {
                    header,
                    body,
                    sealing: Some(sealing),
                })
            }
            (None, false) => Ok(Opened {
                header,
                body: &datagram[HEADER_LEN..],
                sealing: None,
            }),
            _ => Err(DropReason::AuthFailed),
        }
    }
}

impl Codec {
    /// The notice `datagram` is, if it is one: what a node says of a request it could not open
    /// (see [`Notice`](crate::Notice): a hint for an error message, not authenticated).
    #[must_use]
    pub fn notice(&self, datagram: &[u8]) -> Option<crate::Notice> {
        envelope::parse_notice(datagram)
    }

    /// The notice a node answers a `len`-byte request with `header` when [`Codec::open`]
    /// failed, if any: only client requests get one, and only those longer than a notice (so
    /// that a forged source address cannot be sent more bytes than the forger sent).
    pub(crate) fn notice_for(
        &self,
        header: Header,
        len: usize,
    ) -> Option<[u8; envelope::NOTICE_LEN]> {
        if header.kind != Kind::Request || len <= envelope::NOTICE_LEN {
            return None;
        }
        let notice = if self.sealer.is_some() {
            crate::Notice::AuthFailed
        } else {
            crate::Notice::NotSealing
        };
        Some(envelope::write_notice(notice, self.cluster_id, self.from))
    }
}

/// The second half of [`Codec::decode`]: decodes a body (the bytes after the header) as one `M`.
///
/// # Errors
/// [`DropReason::Undecodable`] for a body that is malformed, truncated, claims a length longer
/// than the bytes left, or has bytes after the message.
pub fn decode_body<M: DeserializeOwned>(body: &[u8]) -> Result<M, DropReason> {
    decode_bounded(body).map_err(|error| {
        log::trace!("undecodable {}-byte body: {error}", body.len());
        DropReason::Undecodable
    })
}

/// The size of the datagram `msg` would be sent in: header plus encoded body, in bytes. Counts
/// without writing or allocating; for planning what fits in the datagram limit.
///
/// # Errors
/// [`Error::Encode`] if `msg`'s `Serialize` fails.
pub fn datagram_len<M: Serialize + ?Sized>(msg: &M) -> Result<usize> {
    let mut counter = SizeWriter::default();
    bincode::serde::encode_into_writer(msg, &mut counter, WIRE)
        .map_err(|error| encode_error(&error))?;
    Ok(HEADER_LEN + counter.bytes_written)
}

fn encode_error(error: &EncodeError) -> Error {
    Error::Encode {
        reason: error.to_string(),
    }
}

/// Decodes a whole body as one `M`, through the [`Bounded`] proxy, refusing leftover bytes.
fn decode_bounded<M: DeserializeOwned>(body: &[u8]) -> Result<M, DecodeError> {
    let input = Input::new(body, peek_varint_length);
    let reader = InputReader { input: &input };
    let mut decoder = bincode::serde::OwnedSerdeDecoder::from_reader(reader, DECODE);
    let msg = M::deserialize(Bounded::new(decoder.as_deserializer(), &input))?;
    let left = input.rest().len();
    if left > 0 {
        return Err(DecodeError::OtherString(format!(
            "{left} bytes left after the message"
        )));
    }
    Ok(msg)
}

/// Bincode's reader over an [`Input`], so that the [`Bounded`] proxy always sees where decoding
/// has got to.
struct InputReader<'i, 'b> {
    input: &'i Input<'b>,
}

impl Reader for InputReader<'_, '_> {
    #[inline]
    fn read(&mut self, out: &mut [u8]) -> Result<(), DecodeError> {
        let rest = self.input.rest();
        let Some((head, tail)) = rest.split_at_checked(out.len()) else {
            return Err(DecodeError::UnexpectedEnd {
                additional: out.len() - rest.len(),
            });
        };
        out.copy_from_slice(head);
        self.input.advance_to(tail);
        Ok(())
    }

    #[inline]
    fn peek_read(&mut self, n: usize) -> Option<&[u8]> {
        self.input.rest().get(..n)
    }

    #[inline]
    fn consume(&mut self, n: usize) {
        let rest = self.input.rest();
        self.input.advance_to(rest.get(n..).unwrap_or_default());
    }
}

/// Reads a bincode `standard()` varint length at the start of `bytes`: `(value, prefix bytes)`.
/// `None` for a truncated prefix or a tag no `usize` length uses (254: u128, 255: reserved).
fn peek_varint_length(bytes: &[u8]) -> Option<(u64, usize)> {
    fn le<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
        bytes.get(1..=N)?.try_into().ok()
    }
    match *bytes.first()? {
        tag @ 0..=250 => Some((u64::from(tag), 1)),
        251 => Some((u64::from(u16::from_le_bytes(le(bytes)?)), 3)),
        252 => Some((u64::from(u32::from_le_bytes(le(bytes)?)), 5)),
        253 => Some((u64::from_le_bytes(le(bytes)?), 9)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        index: u64,
        data: Vec<u8>,
        note: String,
    }

    fn sample() -> Sample {
        Sample {
            index: 300,
            data: vec![1, 2, 3],
            note: "hi".into(),
        }
    }

    #[test]
    fn peeks_every_varint_width() {
        for value in [
            0_u64,
            250,
            251,
            65_535,
            65_536,
            u64::from(u32::MAX) + 1,
            u64::MAX,
        ] {
            let bytes = bincode::serde::encode_to_vec(value, WIRE).expect("encodes");
            assert_eq!(
                peek_varint_length(&bytes),
                Some((value, bytes.len())),
                "{value}"
            );
            assert_eq!(
                peek_varint_length(&bytes[..bytes.len() - 1]),
                None,
                "{value}"
            );
        }
        assert_eq!(peek_varint_length(&[254]), None);
        assert_eq!(peek_varint_length(&[255]), None);
    }

    #[test]
    fn round_trips_with_header() {
        let mut codec = Codec::new(7, 3, 1_200).expect("valid limit");
        let mut datagram = codec
            .encode(Kind::Request, &sample())
            .expect("fits")
            .to_vec();
        assert_eq!(datagram.len(), datagram_len(&sample()).expect("counts"));
        let (header, msg) = codec.decode::<Sample>(&mut datagram).expect("decodes");
        assert_eq!(
            header,
            Header {
                kind: Kind::Request,
                from: 3,
                sealed: false
            }
        );
        assert_eq!(msg, sample());
    }

    #[test]
    fn over_the_limit_names_both_sizes_and_keeps_the_buffer() {
        let mut codec = Codec::new(7, 3, 1_200).expect("valid limit");
        let big = vec![0xAB_u8; 5_000];
        let expected = datagram_len(&big).expect("counts");
        match codec.encode(Kind::Peer, &big) {
            Err(Error::TooLarge { size, limit }) => assert_eq!((size, limit), (expected, 1_200)),
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert_eq!(codec.scratch.len(), 1_200);
        assert_eq!(codec.scratch.capacity(), 1_200);
        // Exactly at the limit fits (a 3-byte length prefix: 251 then a u16); one more does not.
        let mut fits = vec![0_u8; 1_200 - HEADER_LEN - 3];
        assert_eq!(codec.encode(Kind::Peer, &fits).expect("fits").len(), 1_200);
        fits.push(0);
        assert!(matches!(
            codec.encode(Kind::Peer, &fits),
            Err(Error::TooLarge {
                size: 1_201,
                limit: 1_200
            })
        ));
    }

    #[test]
    fn limits_outside_the_range_are_refused() {
        assert!(Codec::new(1, 1, MIN_DATAGRAM_LIMIT - 1).is_err());
        assert!(Codec::new(1, 1, MAX_DATAGRAM_LIMIT + 1).is_err());
    }

    #[test]
    fn trailing_bytes_are_undecodable() {
        let mut codec = Codec::new(7, 3, 1_200).expect("valid limit");
        let mut datagram = codec.encode(Kind::Peer, &sample()).expect("fits").to_vec();
        datagram.push(0);
        assert_eq!(
            codec.decode::<Sample>(&mut datagram).err(),
            Some(DropReason::Undecodable)
        );
    }

    #[test]
    fn a_length_past_the_end_is_refused_before_decoding_it() {
        // `data` claims 100 bytes but 3 follow.
        let mut body = vec![1_u8, 100, 1, 2, 3];
        body.push(0);
        let error = decode_bounded::<Sample>(&body).expect_err("must fail");
        assert!(
            error
                .to_string()
                .contains("length 100 with only 4 bytes left"),
            "{error}"
        );
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct PlainEntry {
        index: u64,
        data: Vec<u8>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct MarkedEntry {
        index: u64,
        #[serde(with = "crate::bytes")]
        data: Vec<u8>,
    }

    #[test]
    fn byte_strings_are_the_same_bytes_as_sequences_of_bytes() {
        for data in [vec![], vec![7], vec![0xA5; 300]] {
            let plain = PlainEntry {
                index: 1_000_000,
                data: data.clone(),
            };
            let marked = MarkedEntry {
                index: 1_000_000,
                data,
            };
            let plain_bytes = bincode::serde::encode_to_vec(&plain, WIRE).expect("encodes");
            let marked_bytes = bincode::serde::encode_to_vec(&marked, WIRE).expect("encodes");
            assert_eq!(plain_bytes, marked_bytes);
            assert_eq!(decode_body::<MarkedEntry>(&plain_bytes), Ok(marked));
            assert_eq!(decode_body::<PlainEntry>(&marked_bytes), Ok(plain));
        }
        // And the length check covers byte strings too.
        assert_eq!(
            decode_body::<MarkedEntry>(&[1, 200, 1, 2]),
            Err(DropReason::Undecodable)
        );
    }

    /// A recursive type: each level costs two bytes on the wire.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Chain(Option<Box<Chain>>);

    fn chain(depth: usize) -> Chain {
        (0..depth).fold(Chain(None), |inner, _| Chain(Some(Box::new(inner))))
    }

    #[test]
    fn nesting_is_limited_so_recursion_cannot_overflow_the_stack() {
        let mut codec = Codec::new(7, 3, 65_000).expect("valid limit");
        // Chain nests two levels per link (newtype, option).
        let shallow = chain(60);
        let mut datagram = codec.encode(Kind::Peer, &shallow).expect("fits").to_vec();
        assert_eq!(
            codec.decode::<Chain>(&mut datagram).expect("decodes").1,
            shallow
        );
        // 30,000 links: enough to overflow a 2 MiB stack without the limit.
        let mut datagram = codec
            .encode(Kind::Peer, &Chain(None))
            .expect("fits")
            .to_vec();
        datagram.truncate(HEADER_LEN);
        datagram.extend(std::iter::repeat_n(1_u8, 30_000));
        datagram.push(0);
        assert_eq!(
            codec.decode::<Chain>(&mut datagram).err(),
            Some(DropReason::Undecodable)
        );
    }

    #[test]
    fn an_honest_datagram_of_many_small_integers_decodes() {
        // 10,000 one-byte varints: bincode counts 80 kB for this 10 kB body.
        let numbers: Vec<u64> = (0..10_000).map(|i| i % 200).collect();
        let mut codec = Codec::new(7, 3, 65_000).expect("valid limit");
        let mut datagram = codec.encode(Kind::Peer, &numbers).expect("fits").to_vec();
        assert!(datagram.len() < 10_100);
        assert_eq!(
            codec.decode::<Vec<u64>>(&mut datagram).expect("decodes").1,
            numbers
        );
    }
}

/// Sealing, as the codec does it: what is refused, and that the sizes include the overhead.
#[cfg(all(test, feature = "seal"))]
mod sealed_tests {
    use super::*;
    use crate::envelope::SEAL_OVERHEAD;
    use crate::keys::{Key, KeyRing};

    fn key(byte: u8) -> Key {
        Key::from_bytes([byte; crate::keys::KEY_LEN])
    }

    fn node_keys(peer: u8, client: u8) -> Keys {
        Keys::node(KeyRing::new(key(peer)), KeyRing::new(key(client)))
    }

    fn codec(from: u64, keys: &Keys) -> Codec {
        Codec::new(7, from, 65_000)
            .and_then(|codec| codec.with_keys(keys, 99))
            .expect("a codec")
    }

    fn sealed(kind: Kind, msg: &str) -> Vec<u8> {
        codec(3, &node_keys(1, 2))
            .encode(kind, &msg)
            .expect("fits")
            .to_vec()
    }

    #[test]
    fn sealed_round_trip_hides_the_body_and_says_who_sent_it() {
        let msg = "a secret of some length";
        let mut datagram = sealed(Kind::Peer, msg);
        assert_eq!(
            datagram.len(),
            datagram_len(&msg).expect("counts") + SEAL_OVERHEAD
        );
        assert!(!datagram.windows(6).any(|w| w == b"secret"), "encrypted");
        let receiver = codec(4, &node_keys(1, 2));
        let header = receiver.check_header(&datagram).expect("header");
        let opened = receiver.open(header, &mut datagram).expect("opens");
        assert!(opened.header.sealed);
        let sealing = opened.sealing.expect("sealed");
        assert_eq!((sealing.boot_id, sealing.slot), (99, KeySlot::Current));
        assert_eq!(decode_body::<String>(opened.body).expect("decodes"), msg);
    }

    #[test]
    fn any_byte_flipped_is_dropped_and_past_the_checked_header_fails_authentication() {
        let receiver = codec(4, &node_keys(1, 2));
        let good = sealed(Kind::Peer, "hello");
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            let result = receiver.decode::<String>(&mut bad);
            match at {
                0..4 => assert_eq!(result.err(), Some(DropReason::BadMagic)),
                4 => assert_eq!(result.err(), Some(DropReason::BadVersion)),
                // Kind 1 (peer) becomes 0, which is no kind.
                5 => assert_eq!(result.err(), Some(DropReason::Undecodable)),
                6..14 => assert_eq!(result.err(), Some(DropReason::WrongCluster)),
                _ => assert_eq!(result.err(), Some(DropReason::AuthFailed), "byte {at}"),
            }
        }
    }

    #[test]
    fn truncated_or_extended_fails_authentication() {
        let receiver = codec(4, &node_keys(1, 2));
        let good = sealed(Kind::Request, "hello");
        for len in HEADER_LEN..good.len() {
            let mut cut = good[..len].to_vec();
            assert_eq!(
                receiver.decode::<String>(&mut cut).err(),
                Some(DropReason::AuthFailed)
            );
        }
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(
            receiver.decode::<String>(&mut longer).err(),
            Some(DropReason::AuthFailed)
        );
    }

    #[test]
    fn another_key_fails_and_a_previous_key_opens_while_rotating() {
        let mut old = sealed(Kind::Peer, "hi");
        let rotated = Keys::node(
            KeyRing::new(key(5)).with_previous(Some(key(1))),
            KeyRing::new(key(2)),
        );
        assert_eq!(
            codec(4, &node_keys(5, 2))
                .decode::<String>(&mut old.clone())
                .err(),
            Some(DropReason::AuthFailed),
            "the new key alone"
        );
        let receiver = codec(4, &rotated);
        assert!(receiver.rotating(Kind::Peer) && !receiver.rotating(Kind::Request));
        let header = receiver.check_header(&old).expect("header");
        let opened = receiver
            .open(header, &mut old)
            .expect("opens under the previous key");
        assert_eq!(opened.sealing.map(|s| s.slot), Some(KeySlot::Previous));
        // Sealed under the previous key on request, under the current one by default.
        let mut sender = codec(4, &rotated);
        let mut under_previous = sender
            .encode_under(Kind::Peer, KeySlot::Previous, &"x")
            .expect("fits")
            .to_vec();
        assert!(
            codec(3, &node_keys(1, 2))
                .decode::<String>(&mut under_previous)
                .is_ok()
        );
        let mut under_current = sender.encode(Kind::Peer, &"x").expect("fits").to_vec();
        assert!(
            codec(3, &node_keys(5, 2))
                .decode::<String>(&mut under_current)
                .is_ok()
        );
    }

    #[test]
    fn the_client_key_cannot_speak_for_a_member() {
        let mut client = codec(0, &Keys::client(key(2)));
        assert!(matches!(
            client.encode(Kind::Peer, &"vote for me"),
            Err(Error::InvalidConfig { .. })
        ));
        // A request sealed under the client key, relabelled as member traffic: the kind byte
        // is authenticated, and member traffic is opened under the peer key anyway.
        let mut relabelled = client
            .encode(Kind::Request, &"vote for me")
            .expect("fits")
            .to_vec();
        relabelled[5] = Kind::Peer as u8 | crate::envelope::SEALED;
        let node = codec(4, &node_keys(1, 2));
        assert_eq!(
            node.decode::<String>(&mut relabelled).err(),
            Some(DropReason::AuthFailed)
        );
        // With both keys the same, the authenticated kind byte still tells them apart.
        let same = node_keys(2, 2);
        let mut relabelled = codec(0, &Keys::client(key(2)))
            .encode(Kind::Request, &"x")
            .expect("fits")
            .to_vec();
        relabelled[5] = Kind::Peer as u8 | crate::envelope::SEALED;
        assert_eq!(
            codec(4, &same).decode::<String>(&mut relabelled).err(),
            Some(DropReason::AuthFailed)
        );
    }

    #[test]
    fn plaintext_and_sealed_refuse_each_other() {
        let mut plain = Codec::new(7, 3, 65_000).expect("codec");
        let mut plaintext = plain.encode(Kind::Peer, &"x").expect("fits").to_vec();
        let node = codec(4, &node_keys(1, 2));
        assert_eq!(
            node.decode::<String>(&mut plaintext).err(),
            Some(DropReason::AuthFailed)
        );
        let mut sealed = sealed(Kind::Peer, "x");
        assert_eq!(
            plain.decode::<String>(&mut sealed).err(),
            Some(DropReason::AuthFailed)
        );
    }

    #[test]
    fn the_limit_counts_the_sealed_size() {
        let mut codec = Codec::new(7, 3, 1_200)
            .and_then(|codec| codec.with_keys(&node_keys(1, 2), 1))
            .expect("codec");
        let mut fits = vec![0_u8; 1_200 - HEADER_LEN - 3 - SEAL_OVERHEAD];
        assert_eq!(codec.encode(Kind::Peer, &fits).expect("fits").len(), 1_200);
        fits.push(0);
        assert!(matches!(
            codec.encode(Kind::Peer, &fits),
            Err(Error::TooLarge {
                size: 1_201,
                limit: 1_200
            })
        ));
        assert_eq!(codec.datagram_len(&fits).expect("counts"), 1_201);
    }

    #[test]
    fn nonces_never_repeat_within_or_across_codecs() {
        let keys = node_keys(1, 2);
        let mut first = codec(3, &keys);
        let mut clone = first.clone();
        let mut second = codec(3, &keys);
        let mut nonces = std::collections::HashSet::new();
        for _ in 0..100 {
            for codec in [&mut first, &mut clone, &mut second] {
                let datagram = codec.encode(Kind::Peer, &"x").expect("fits");
                assert!(nonces.insert(datagram[HEADER_LEN..HEADER_LEN + 24].to_vec()));
            }
        }
    }
}
