//! Fuzzes `balsa_net::Codec::decode` with a Raft-shaped message type.
//!
//! Each input is tried twice: as a whole datagram (so the header checks are fuzzed too) and as
//! the body behind a valid header (so the fuzzer need not find the magic and cluster id first).
//! For each, the decoder must not panic, must not allocate more than a bound proportional to the
//! input (a counting allocator measures the peak of live bytes during the decode), and whatever
//! decodes must re-encode, decode and re-encode to the same bytes.
#![no_main]

mod counting;

use std::collections::BTreeMap;

use balsa_net::{Codec, HEADER_LEN, Kind, MAGIC, VERSION};
use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};

const CLUSTER: u64 = 0x0B41_5A00;
const LIMIT: usize = 65_000;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Entry {
    index: u64,
    term: u64,
    data: Vec<u8>,
}

/// The same wire format as [`Entry`], decoded through the byte-string path.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct MarkedEntry {
    index: u64,
    term: u64,
    #[serde(with = "balsa_net::bytes")]
    data: Vec<u8>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Message {
    Heartbeat,
    Vote {
        term: u64,
        candidate: u64,
        last_index: u64,
        last_term: u64,
        pre_vote: bool,
    },
    Append {
        term: u64,
        prev_index: u64,
        prev_term: u64,
        commit: u64,
        entries: Vec<Entry>,
    },
    Reply {
        term: u64,
        success: bool,
        conflict: Option<(u64, u64)>,
    },
    Client {
        id: u64,
        seq: u64,
        key: String,
        value: Option<Vec<u8>>,
    },
    Marked {
        commit: u64,
        entries: Vec<MarkedEntry>,
    },
    Batch(Vec<Vec<u8>>),
    Table(BTreeMap<u64, String>),
    Ranges(Vec<(u64, u32, i16)>),
    Wrapped(Option<Box<Message>>),
    Float(f64),
    Char(char),
}

fuzz_target!(|data: &[u8]| {
    let codec = Codec::new(CLUSTER, 1, LIMIT).expect("a valid limit");
    check(&codec, data);
    let mut datagram = Vec::with_capacity(HEADER_LEN + data.len());
    datagram.extend_from_slice(&MAGIC);
    datagram.push(VERSION);
    datagram.push(Kind::Peer as u8);
    datagram.extend_from_slice(&CLUSTER.to_le_bytes());
    datagram.extend_from_slice(&2_u64.to_le_bytes());
    datagram.extend_from_slice(data);
    check(&codec, &datagram);
});

fn check(codec: &Codec, datagram: &[u8]) {
    // Decoding takes the datagram mutably (a sealed one is opened in place): a copy, made
    // before the measurement starts.
    let mut copy = datagram.to_vec();
    let (decoded, extra) = counting::peak_during(|| codec.decode::<Message>(&mut copy));
    // An honest message holds at most ~40 bytes of memory per wire byte (an Entry of three
    // one-byte fields); a lying length prefix adds at most (bytes left) × (element size) more.
    let bound = 64 * datagram.len() + 16 * 1024;
    assert!(
        extra <= bound,
        "decoding {} bytes took {extra} bytes (bound {bound})",
        datagram.len()
    );
    if let Ok((header, message)) = decoded {
        // Compared as bytes, not values: a NaN decodes to a message unequal to itself.
        let mut codec = codec.clone();
        let encoded = codec
            .encode(header.kind, &message)
            .expect("a decoded message re-encodes");
        let encoded = encoded.to_vec();
        let (_, back) = codec
            .decode::<Message>(&mut encoded.clone())
            .expect("a re-encoded message decodes");
        let again = codec
            .encode(header.kind, &back)
            .expect("and re-encodes again");
        assert_eq!(again, encoded.as_slice());
    }
}
