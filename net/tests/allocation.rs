//! No datagram makes the decoder allocate more than the datagram limit: length prefixes of
//! 2^16, 2^32 - 1, 2^32 and 2^63 in a 20-byte body, for every kind of collection, are refused
//! while the decoder's allocations stay tiny. Opening a sealed datagram (verify and decrypt in
//! place) allocates nothing once its sender's subkey is known: an honest one costs exactly what
//! its plaintext twin does, a forged one of the full limit is refused having allocated nothing
//! at all.
//!
//! The proof is a counting global allocator, which is why this file is its own test binary. It
//! counts per thread (tests run in parallel), the peak of live bytes above where a decode began.
#![allow(
    clippy::print_stdout,
    reason = "the test prints the peaks it measured, for the record"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;

use balsa_net::{Codec, DropReason, HEADER_LEN, Kind};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

const CLUSTER: u64 = 42;
const LIMIT: usize = balsa_net::DEFAULT_DATAGRAM_LIMIT;

thread_local! {
    /// Live bytes allocated by this thread, and the most since the last reset.
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

struct Counting;

#[allow(
    unsafe_code,
    reason = "a global allocator is an unsafe impl; this one only forwards to System and counts"
)]
// SAFETY: forwards every call to the system allocator unchanged; it only counts, in
// const-initialised thread-locals that never allocate themselves.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which is System's.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            count_up(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Frees of memory another thread allocated may take this thread's count below zero:
        // saturate (the decode under test allocates and frees on one thread).
        let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(layout.size())));
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(layout.size())));
            count_up(new_size);
        }
        new
    }
}

fn count_up(size: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + size;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `decode` and returns its result with the most bytes it had allocated at once.
fn peak_allocation<T>(decode: impl FnOnce() -> T) -> (T, usize) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(start));
    let result = decode();
    (result, PEAK.with(Cell::get) - start)
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    index: u64,
    term: u64,
    data: Vec<u8>,
}

/// One field of each collection type, each a separate message so the prefix is its length.
#[derive(Debug, Serialize, Deserialize)]
struct Bytes(Vec<u8>);
#[derive(Debug, Serialize, Deserialize)]
struct ByteString(#[serde(with = "balsa_net::bytes")] Vec<u8>);
#[derive(Debug, Serialize, Deserialize)]
struct Words(Vec<u64>);
#[derive(Debug, Serialize, Deserialize)]
struct Text(String);
#[derive(Debug, Serialize, Deserialize)]
struct Nested(Vec<Vec<u8>>);
#[derive(Debug, Serialize, Deserialize)]
struct Entries(Vec<Entry>);
#[derive(Debug, Serialize, Deserialize)]
struct Map(HashMap<u64, Vec<u8>>);
#[derive(Debug, Serialize, Deserialize)]
enum Append {
    Heartbeat,
    Entries {
        term: u64,
        commit: u64,
        entries: Vec<Entry>,
    },
}

/// bincode's standard varint spelling of `value`.
fn varint(value: u64) -> Vec<u8> {
    match value {
        0..=250 => vec![u8::try_from(value).expect("below 251")],
        251..=0xFFFF => [
            &[251][..],
            &u16::try_from(value).expect("in range").to_le_bytes(),
        ]
        .concat(),
        0x1_0000..=0xFFFF_FFFF => [
            &[252][..],
            &u32::try_from(value).expect("in range").to_le_bytes(),
        ]
        .concat(),
        _ => [&[253][..], &value.to_le_bytes()].concat(),
    }
}

/// A datagram whose 20-byte body is `before`, the length prefix, then filler bytes.
fn datagram_claiming(before: &[u8], length: u64) -> Vec<u8> {
    let mut codec = Codec::new(CLUSTER, 2, LIMIT).expect("valid limit");
    let mut datagram = codec.encode(Kind::Peer, &()).expect("fits").to_vec();
    datagram.truncate(HEADER_LEN);
    datagram.extend_from_slice(before);
    datagram.extend_from_slice(&varint(length));
    datagram.resize(HEADER_LEN + 20, 0x61);
    datagram
}

fn assert_refused_cheaply<M: DeserializeOwned + std::fmt::Debug>(what: &str, before: &[u8]) {
    let codec = Codec::new(CLUSTER, 1, LIMIT).expect("valid limit");
    for length in [1 << 16, u64::from(u32::MAX), 1 << 32, 1 << 63, u64::MAX] {
        let mut datagram = datagram_claiming(before, length);
        assert_eq!(datagram.len(), HEADER_LEN + 20);
        let (result, peak) = peak_allocation(|| codec.decode::<M>(&mut datagram));
        assert_eq!(
            result.err(),
            Some(DropReason::Undecodable),
            "{what}, length {length}"
        );
        println!("{what:<28} length {length:>20}: peak {peak:>4} bytes");
        // The requirement is the datagram limit; the decoder does far better: only the
        // refusal's error message is ever allocated.
        assert!(peak <= LIMIT, "{what}, length {length}: {peak} bytes");
        assert!(peak <= 256, "{what}, length {length}: {peak} bytes");
    }
}

#[test]
fn huge_length_prefixes_in_a_20_byte_body_allocate_nothing_to_speak_of() {
    assert_refused_cheaply::<Bytes>("Vec<u8>", &[]);
    assert_refused_cheaply::<ByteString>("Vec<u8> as balsa_net::bytes", &[]);
    assert_refused_cheaply::<Words>("Vec<u64>", &[]);
    assert_refused_cheaply::<Text>("String", &[]);
    assert_refused_cheaply::<Nested>("Vec<Vec<u8>>", &[]);
    assert_refused_cheaply::<Nested>("Vec<Vec<u8>>, inner", &[1]);
    assert_refused_cheaply::<Entries>("Vec<Entry>", &[]);
    assert_refused_cheaply::<Entries>("Entry.data", &[1, 5, 6]);
    assert_refused_cheaply::<Map>("HashMap<u64, Vec<u8>>", &[]);
    // Variant 1 (Entries), term 3, commit 2, then the entries' length.
    assert_refused_cheaply::<Append>("enum variant's Vec<Entry>", &[1, 3, 2]);
}

/// The other side of the bound: a length that the bytes do back decodes, and costs what the
/// message holds, not more.
#[test]
fn an_honest_full_datagram_costs_what_it_holds() {
    let mut codec = Codec::new(CLUSTER, 1, LIMIT).expect("valid limit");
    let data = vec![0x5A; LIMIT - HEADER_LEN - 3];
    let mut datagram = codec
        .encode(Kind::Peer, &Bytes(data.clone()))
        .expect("fits")
        .to_vec();
    assert_eq!(datagram.len(), LIMIT);
    let (result, peak) = peak_allocation(|| codec.decode::<Bytes>(&mut datagram));
    assert_eq!(result.expect("decodes").1.0, data);
    println!("honest {LIMIT}-byte datagram: peak {peak} bytes");
    assert!(peak <= 2 * LIMIT, "{peak}");
}

/// Sealed datagrams: what opening costs on top of decoding.
#[cfg(feature = "seal")]
mod sealed {
    use balsa_net::{KEY_LEN, Key, KeyRing, KeySlot, Keys, SEAL_OVERHEAD};

    use super::*;

    fn ring(byte: u8) -> KeyRing {
        KeyRing::new(Key::from_bytes([byte; KEY_LEN]))
    }

    fn keyed(from: u64, keys: &Keys) -> Codec {
        Codec::new(CLUSTER, from, LIMIT)
            .and_then(|codec| codec.with_keys(keys, 1))
            .expect("a sealing codec")
    }

    /// A sealed datagram of exactly the limit, and the message it carries.
    fn full_sealed_datagram(sender: &mut Codec, slot: KeySlot) -> (Vec<u8>, Vec<u8>) {
        let data = vec![0x5A; LIMIT - HEADER_LEN - 3 - SEAL_OVERHEAD];
        let datagram = sender
            .encode_under(Kind::Peer, slot, &Bytes(data.clone()))
            .expect("fits")
            .to_vec();
        assert_eq!(datagram.len(), LIMIT);
        (datagram, data)
    }

    /// The bound: once a sender's subkey is known, opening adds nothing, under the current key
    /// or (tried second) the previous one, so a sealed datagram's peak is its plaintext twin's,
    /// which is the message's own buffer. The first datagram of a sender also keeps its subkey
    /// (one entry of at most `MAX_OPENERS`) and, while rotating, sizes the copy a second try
    /// needs (at most the datagram limit).
    #[test]
    fn opening_a_sealed_full_datagram_allocates_only_the_message() {
        let rotating = Keys::node(ring(3).with_previous(Some(ring(1).current)), ring(2));
        let receiver = keyed(1, &rotating);
        let mut sender = keyed(2, &rotating);
        let mut plain = Codec::new(CLUSTER, 2, LIMIT).expect("valid limit");
        for slot in [KeySlot::Current, KeySlot::Previous] {
            let (mut first, data) = full_sealed_datagram(&mut sender, slot);
            let (result, first_peak) = peak_allocation(|| receiver.decode::<Bytes>(&mut first));
            assert_eq!(result.expect("opens and decodes").1.0, data);
            let (mut sealed, _) = full_sealed_datagram(&mut sender, slot);
            let mut twin = plain
                .encode(Kind::Peer, &Bytes(data.clone()))
                .expect("fits")
                .to_vec();
            let (result, sealed_peak) = peak_allocation(|| receiver.decode::<Bytes>(&mut sealed));
            assert_eq!(result.expect("opens and decodes").1.0, data);
            let plain_codec = Codec::new(CLUSTER, 1, LIMIT).expect("valid limit");
            let (result, plain_peak) = peak_allocation(|| plain_codec.decode::<Bytes>(&mut twin));
            assert_eq!(result.expect("decodes").1.0, data);
            println!(
                "sealed {LIMIT}-byte datagram under the {slot:?} key: peak {sealed_peak} bytes \
                 (the sender's first: {first_peak}; plaintext twin {plain_peak}, message {})",
                data.len()
            );
            assert_eq!(sealed_peak, plain_peak, "{slot:?}");
            assert_eq!(
                sealed_peak,
                data.len(),
                "{slot:?}: the message's buffer alone"
            );
            // The message and a small table of subkeys (4 KiB for its first few entries):
            // the copy for a second try was made with the codec.
            assert!(first_peak <= data.len() + 4096, "{slot:?}: {first_peak}");
        }
    }

    /// A forged datagram of the full limit: a damaged tag, a damaged body, another key, or
    /// filler behind a sealed header. Each is refused having allocated nothing, not even an error
    /// message, and leaves no plaintext in the buffer (GCM wipes what it decrypted) — also as
    /// the first datagram a receiver in the middle of a key rotation sees, which tries both
    /// keys (the `open` fuzz target found that its retry copy grew on that first refusal).
    #[test]
    fn a_forged_full_datagram_is_refused_having_allocated_nothing() {
        let keys = Keys::node(ring(1), ring(2));
        let rotating = Keys::node(ring(1).with_previous(Some(ring(7).current)), ring(2));
        for receiver_keys in [keys.clone(), rotating] {
            refuses_forgeries_allocating_nothing(&keys, &keyed(1, &receiver_keys));
        }
    }

    fn refuses_forgeries_allocating_nothing(keys: &Keys, receiver: &Codec) {
        let (good, _) = full_sealed_datagram(&mut keyed(2, keys), KeySlot::Current);
        let mut bad_tag = good.clone();
        *bad_tag.last_mut().expect("not empty") ^= 1;
        let mut bad_body = good.clone();
        bad_body[LIMIT / 2] ^= 1;
        let (other_key, _) = full_sealed_datagram(
            &mut keyed(2, &Keys::node(ring(9), ring(2))),
            KeySlot::Current,
        );
        let mut filler = good[..HEADER_LEN].to_vec();
        filler.resize(LIMIT, 0x61);
        for (what, forged) in [
            ("a damaged tag", bad_tag),
            ("a damaged body", bad_body),
            ("another key", other_key),
            ("filler", filler),
        ] {
            let mut datagram = forged.clone();
            let (result, peak) = peak_allocation(|| receiver.decode::<Bytes>(&mut datagram));
            assert_eq!(result.err(), Some(DropReason::AuthFailed), "{what}");
            println!("forged {LIMIT}-byte datagram, {what}: peak {peak} bytes");
            assert_eq!(peak, 0, "{what}");
            assert!(
                !datagram.windows(16).any(|window| window == [0x5A; 16]),
                "{what}: no plaintext left"
            );
        }
    }
}
