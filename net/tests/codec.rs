//! The codec on its own: arbitrary messages of every shape round-trip (proptest), their sizes
//! are what `datagram_len` says, and every truncation and every extension of a valid datagram
//! is refused.

mod common;

use balsa_net::{Codec, DropReason, HEADER_LEN, Header, Kind};
use common::{CLUSTER, Entry, Msg, every_shape};
use proptest::prelude::*;

fn entry() -> impl Strategy<Value = Entry> {
    (
        any::<u64>(),
        any::<u64>(),
        prop::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(index, term, data)| Entry { index, term, data })
}

fn msg() -> impl Strategy<Value = Msg> {
    prop_oneof![
        Just(Msg::Unit),
        any::<u64>().prop_map(Msg::Number),
        (any::<i64>(), any::<i32>()).prop_map(|(a, b)| Msg::Signed(a, b)),
        ".{0,40}".prop_map(Msg::Text),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(Msg::Bytes),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20), 0..20)
            .prop_map(Msg::Nested),
        any::<Option<u64>>().prop_map(Msg::Maybe),
        (any::<bool>(), any::<char>()).prop_map(|(b, c)| Msg::Pair(b, c)),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            prop::collection::vec(entry(), 0..8)
        )
            .prop_map(
                |(term, prev_index, prev_term, commit, entries)| Msg::Append {
                    term,
                    prev_index,
                    prev_term,
                    commit,
                    entries,
                }
            ),
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![Just(Kind::Peer), Just(Kind::Request), Just(Kind::Response)]
}

fn codec(from: u64) -> Codec {
    Codec::new(CLUSTER, from, balsa_net::DEFAULT_DATAGRAM_LIMIT).expect("valid limit")
}

/// Every strict prefix is refused (too short within the header, undecodable after it), and so
/// is the datagram with any bytes appended.
fn assert_damage_refused(codec: &Codec, valid: &[u8]) {
    for len in 0..valid.len() {
        let expected = if len < HEADER_LEN {
            DropReason::TooShort
        } else {
            DropReason::Undecodable
        };
        assert_eq!(
            codec.decode::<Msg>(&mut valid[..len].to_vec()).err(),
            Some(expected),
            "prefix of {len}"
        );
    }
    for extra in [&[0_u8][..], &[0xFF], &[1, 2, 3], &[0; 64]] {
        let mut longer = [valid, extra].concat();
        assert_eq!(
            codec.decode::<Msg>(&mut longer).err(),
            Some(DropReason::Undecodable)
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_messages_round_trip(msg in msg(), kind in kind(), from in any::<u64>()) {
        let mut encoder = codec(from);
        let mut datagram = encoder.encode(kind, &msg).expect("fits").to_vec();
        prop_assert_eq!(datagram.len(), balsa_net::datagram_len(&msg).expect("counts"));
        let (header, decoded) = codec(0).decode::<Msg>(&mut datagram).expect("decodes");
        prop_assert_eq!(header, Header { kind, from, sealed: false });
        prop_assert_eq!(decoded, msg);
    }

    #[test]
    fn arbitrary_messages_refuse_every_truncation_and_extension(msg in msg()) {
        let mut encoder = codec(1);
        let datagram = encoder.encode(Kind::Peer, &msg).expect("fits").to_vec();
        assert_damage_refused(&encoder, &datagram);
    }
}

#[test]
fn every_shape_refuses_every_truncation_and_extension() {
    for msg in every_shape() {
        let mut encoder = codec(1);
        let datagram = encoder.encode(Kind::Response, &msg).expect("fits").to_vec();
        assert_damage_refused(&encoder, &datagram);
    }
}
