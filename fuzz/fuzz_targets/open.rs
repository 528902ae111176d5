//! Fuzzes opening sealed datagrams: `balsa_net::Codec::decode` on a codec with keys (a peer
//! ring that also accepts a previous key, and a client ring), which verifies and decrypts before
//! it decodes.
//!
//! Each input is tried three ways:
//!
//! 1. as a whole datagram (the header checks, and the opener behind them);
//! 2. behind a valid sealed header, of member and of client traffic (so the fuzzer is at the
//!    opener at once);
//! 3. as a mutation of a valid sealed datagram: the first byte says how many (offset, XOR)
//!    triples follow (0 to 7), which kind and key the datagram is sealed as, and whether it is
//!    then cut by a byte, extended by one, or truncated at the first offset; the rest is the
//!    payload sealed.
//!
//! Every one must not panic, and must allocate nothing at all unless it opens (a forged datagram
//! is refused before a byte is decrypted or decoded); a datagram that opens may allocate its
//! payload, within the datagram limit. Random bytes and every real mutation must be refused (a
//! forgery succeeds with probability 2^-128); a mutation that changes nothing must open to the
//! payload; damage past the header must be refused as `auth_failed`.
#![no_main]

mod counting;

use std::sync::OnceLock;
use std::sync::{Mutex, PoisonError};

use balsa_net::{
    Codec, DropReason, HEADER_LEN, KEY_LEN, Key, KeyRing, KeySlot, Keys, Kind, MAGIC, SEALED,
    VERSION,
};
use libfuzzer_sys::fuzz_target;

const CLUSTER: u64 = 0x0B41_5A00;
const LIMIT: usize = 65_000;

fn key(byte: u8) -> Key {
    Key::from_bytes([byte; KEY_LEN])
}

/// The cluster's keys: peer key 1 (key 0 still accepted), client key 2.
fn keys() -> Keys {
    Keys::node(
        KeyRing::new(key(1)).with_previous(Some(key(0))),
        KeyRing::new(key(2)),
    )
}

fn codec(from: u64) -> Codec {
    Codec::new(CLUSTER, from, LIMIT)
        .and_then(|codec| codec.with_keys(&keys(), 7))
        .expect("a sealing codec")
}

/// The receiver (made once: making a codec with keys draws from the OS).
fn receiver() -> &'static Codec {
    static RECEIVER: OnceLock<Codec> = OnceLock::new();
    RECEIVER.get_or_init(|| codec(1))
}

/// Seals `payload` as a datagram of `kind` from node 2 under the ring's key in `slot`.
fn seal(kind: Kind, slot: KeySlot, payload: &[u8]) -> Vec<u8> {
    static SENDER: OnceLock<Mutex<Codec>> = OnceLock::new();
    let mut sender = SENDER
        .get_or_init(|| Mutex::new(codec(2)))
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    sender
        .encode_under(kind, slot, payload)
        .expect("a payload under the limit less 1 KiB fits")
        .to_vec()
}

/// Decodes `datagram` with the keyed receiver; checks it allocated nothing unless it opened,
/// and no more than the limit if it did.
fn open(datagram: &[u8]) -> Result<Vec<u8>, DropReason> {
    // Opening works in place: a copy, made before the measurement starts.
    let mut copy = datagram.to_vec();
    let receiver = receiver();
    let (opened, extra) = counting::peak_during(|| receiver.decode::<Vec<u8>>(&mut copy));
    match &opened {
        Ok(_) => assert!(extra <= LIMIT, "opening took {extra} bytes"),
        Err(reason) => assert_eq!(
            extra,
            0,
            "refusing {} bytes ({reason}) allocated",
            datagram.len()
        ),
    }
    opened.map(|(_, payload)| payload)
}

fn sealed_header(kind: Kind) -> Vec<u8> {
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(&MAGIC);
    header.push(VERSION);
    header.push(kind as u8 | SEALED);
    header.extend_from_slice(&CLUSTER.to_le_bytes());
    header.extend_from_slice(&2_u64.to_le_bytes());
    header
}

fuzz_target!(|data: &[u8]| {
    // 1 and 2: nothing the fuzzer writes is sealed under the cluster's keys.
    assert!(open(data).is_err(), "random bytes opened");
    for kind in [Kind::Peer, Kind::Request] {
        let datagram = [sealed_header(kind).as_slice(), data].concat();
        assert_eq!(
            open(&datagram).err(),
            Some(DropReason::AuthFailed),
            "random bytes behind a sealed header"
        );
    }
    // 3: a real datagram, mutated.
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let flips = usize::from(control & 0x07);
    let (flips, payload) = rest.split_at((3 * flips).min(rest.len()));
    // What fits a datagram whatever the fuzzer's -max_len.
    let payload = &payload[..payload.len().min(LIMIT - 1_024)];
    let kind = [Kind::Peer, Kind::Request, Kind::Response][usize::from(control >> 3 & 0x03) % 3];
    let slot = if control & 0x20 == 0 {
        KeySlot::Current
    } else {
        KeySlot::Previous
    };
    let good = seal(kind, slot, payload);
    let mut bad = good.clone();
    let offsets: Vec<usize> = flips
        .chunks_exact(3)
        .map(|triple| usize::from(u16::from_le_bytes([triple[0], triple[1]])) % good.len())
        .collect();
    for (triple, &at) in flips.chunks_exact(3).zip(&offsets) {
        bad[at] ^= triple[2];
    }
    match control >> 6 {
        1 => {
            bad.pop();
        }
        2 => bad.push(0),
        3 => bad.truncate(offsets.first().copied().unwrap_or(0)),
        _ => {}
    }
    let opened = open(&bad);
    if bad == good {
        assert_eq!(opened.as_deref(), Ok(payload), "an undamaged datagram");
    } else if bad.len() >= HEADER_LEN && bad[..HEADER_LEN] == good[..HEADER_LEN] {
        assert_eq!(
            opened.err(),
            Some(DropReason::AuthFailed),
            "damage past the header"
        );
    } else {
        assert!(opened.is_err(), "a damaged header opened");
    }
});
