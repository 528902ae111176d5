//! Tests of the key-value state machine through its public surface: the operations, exactly-once
//! application of retries, eviction determinism, snapshots; and properties over generated input
//! (decoders never panic on any bytes and decode only canonical encodings; the store agrees with
//! a plain model; snapshot → restore → continue matches never snapshotting).

use std::collections::BTreeMap;
use std::num::NonZeroUsize;

use proptest::prelude::*;

use super::*;

fn capacity(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).expect("tests use a non-zero capacity")
}

fn command(client_id: u64, seq: u64, op: Op) -> Command {
    Command { client_id, seq, op }
}

fn put(key: &str, value: &str) -> Op {
    Op::Put {
        key: key.into(),
        value: value.into(),
    }
}

fn delete(key: &str) -> Op {
    Op::Delete { key: key.into() }
}

fn cas(key: &str, expected: Option<&str>, new: &str) -> Op {
    Op::Cas {
        key: key.into(),
        expected: expected.map(Into::into),
        new: new.into(),
    }
}

/// Applies through the byte interface, as the node does, and decodes the answer.
fn apply(store: &mut KvStore, index: u64, command: &Command) -> Answer {
    let answer = StateMachine::apply(store, index, &command.encode());
    Answer::decode(&answer).expect("the store encodes its answers")
}

fn get(store: &KvStore, key: &str) -> Answer {
    let answer = StateMachine::query(store, &Query::Get { key: key.into() }.encode());
    Answer::decode(&answer).expect("the store encodes its answers")
}

fn value(text: &str) -> Answer {
    Answer::Value(Some(text.into()))
}

#[test]
fn put_get_delete() {
    let mut store = KvStore::new();
    assert_eq!(get(&store, "k"), Answer::Value(None));
    assert_eq!(
        apply(&mut store, 1, &command(1, 1, put("k", "v1"))),
        Answer::Ok
    );
    assert_eq!(get(&store, "k"), value("v1"));
    assert_eq!(store.get(b"k"), Some(&b"v1"[..]));
    assert_eq!(
        apply(&mut store, 2, &command(1, 2, put("k", "v2"))),
        Answer::Ok
    );
    assert_eq!(get(&store, "k"), value("v2"));
    assert_eq!(
        apply(&mut store, 3, &command(1, 3, delete("k"))),
        Answer::Ok
    );
    assert_eq!(get(&store, "k"), Answer::Value(None));
    // Deleting an absent key is not an error.
    assert_eq!(
        apply(&mut store, 4, &command(1, 4, delete("k"))),
        Answer::Ok
    );
    assert!(store.is_empty());
    assert_eq!(store.applied_index(), 4);
}

#[test]
fn cas_compares_with_absent_as_none() {
    let mut store = KvStore::new();
    // Absent expected ("-" on the command line) on an absent key: swaps.
    assert_eq!(
        apply(&mut store, 1, &command(1, 1, cas("k", None, "a"))),
        Answer::Ok
    );
    assert_eq!(get(&store, "k"), value("a"));
    // Absent expected on a present key: mismatch, with the current value.
    assert_eq!(
        apply(&mut store, 2, &command(1, 2, cas("k", None, "b"))),
        Answer::CasMismatch {
            current: Some("a".into())
        }
    );
    // The right value: swaps.
    assert_eq!(
        apply(&mut store, 3, &command(1, 3, cas("k", Some("a"), "c"))),
        Answer::Ok
    );
    assert_eq!(get(&store, "k"), value("c"));
    // A value expected on an absent key: mismatch with `None`.
    assert_eq!(
        apply(&mut store, 4, &command(1, 4, cas("x", Some("a"), "c"))),
        Answer::CasMismatch { current: None }
    );
    assert_eq!(store.len(), 1);
}

#[test]
fn a_retried_command_is_applied_once_and_gets_its_first_answer() {
    let mut store = KvStore::new();
    let first = command(1, 1, cas("k", None, "mine"));
    assert_eq!(apply(&mut store, 1, &first), Answer::Ok);
    assert_eq!(
        apply(&mut store, 2, &command(2, 1, put("k", "theirs"))),
        Answer::Ok
    );
    // Applied again, the compare-and-swap would now mismatch; the retry gets the first answer and
    // changes nothing.
    assert_eq!(apply(&mut store, 3, &first), Answer::Ok);
    assert_eq!(get(&store, "k"), value("theirs"));
    // A mismatch is an answer like any other: the retry gets it back.
    let mismatch = command(1, 2, cas("k", None, "again"));
    let answer = apply(&mut store, 4, &mismatch);
    assert_eq!(
        answer,
        Answer::CasMismatch {
            current: Some("theirs".into())
        }
    );
    assert_eq!(
        apply(&mut store, 5, &command(2, 2, delete("k"))),
        Answer::Ok
    );
    assert_eq!(apply(&mut store, 6, &mismatch), answer);
    assert_eq!(get(&store, "k"), Answer::Value(None));
}

#[test]
fn an_older_seq_is_stale_and_not_applied() {
    let mut store = KvStore::new();
    apply(&mut store, 1, &command(1, 5, put("k", "five")));
    assert_eq!(
        apply(&mut store, 2, &command(1, 4, put("k", "four"))),
        Answer::StaleRequest { last_seq: 5 }
    );
    assert_eq!(get(&store, "k"), value("five"));
    // The stale request did not replace the saved answer.
    assert_eq!(
        apply(&mut store, 3, &command(1, 5, put("k", "five"))),
        Answer::Ok
    );
}

#[test]
fn refused_commands_change_nothing_but_the_applied_index() {
    let mut store = KvStore::new();
    apply(&mut store, 1, &command(1, 1, put("k", "v")));
    let before = store.clone();

    let answer = Answer::decode(&StateMachine::apply(&mut store, 2, b"\x01\xffjunk")).unwrap();
    assert!(
        matches!(&answer, Answer::Rejected { reason } if reason.contains("offset 1")),
        "{answer:?}"
    );
    let oversized = command(
        1,
        2,
        Op::Put {
            key: vec![0; MAX_KEY_LEN + 1],
            value: Vec::new(),
        },
    );
    assert!(matches!(
        store.apply_command(3, &oversized),
        Answer::Rejected { .. }
    ));
    assert!(matches!(
        Answer::decode(&StateMachine::query(&store, b"")).unwrap(),
        Answer::Rejected { .. }
    ));

    assert_eq!(store.applied_index(), 3);
    assert_eq!(store.sessions(), before.sessions());
    assert_eq!(
        store.snapshot()[3..],
        before.snapshot()[3..],
        "all but the applied index"
    );
}

#[test]
#[should_panic(expected = "each index is applied once, in order")]
fn applying_an_index_twice_is_a_bug_that_stops_the_node() {
    let mut store = KvStore::new();
    store.apply_command(1, &command(1, 1, put("k", "v")));
    store.apply_command(1, &command(1, 2, put("k", "v")));
}

/// A fixed stream of commands from `clients` clients with retries and stale requests.
fn scripted_commands(count: u64, clients: u64) -> Vec<Command> {
    let mut seqs = vec![0u64; usize::try_from(clients).expect("few clients")];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..count)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let client = (state >> 33) % clients;
            let slot = &mut seqs[usize::try_from(client).expect("few clients")];
            let seq = match (state >> 20) % 4 {
                0 if *slot > 1 => *slot - 1, // an older number: stale
                1 if *slot > 0 => *slot,     // a retry of the last
                _ => {
                    *slot += 1;
                    *slot
                }
            };
            let key = format!("k{}", (state >> 40) % 5);
            let op = match (state >> 50) % 3 {
                0 => put(&key, &format!("v{}", state % 7)),
                1 => delete(&key),
                _ => cas(&key, None, "fresh"),
            };
            command(client, seq, op)
        })
        .collect()
}

#[test]
fn eviction_is_deterministic_across_replicas() {
    let commands = scripted_commands(500, 12);
    let replica = || {
        let mut store = KvStore::with_session_capacity(capacity(4));
        let answers: Vec<Answer> = commands
            .iter()
            .zip(1..)
            .map(|(command, index)| apply(&mut store, index, command))
            .collect();
        (store, answers)
    };
    let (first, first_answers) = replica();
    let (second, second_answers) = replica();
    assert_eq!(first.sessions().len(), 4, "the table filled up and evicted");
    assert_eq!(first_answers, second_answers);
    assert_eq!(first, second);
    assert_eq!(first.snapshot(), second.snapshot());
}

#[test]
fn an_evicted_clients_retry_is_applied_again() {
    let mut store = KvStore::with_session_capacity(capacity(1));
    let first = command(1, 1, cas("k", None, "a"));
    assert_eq!(apply(&mut store, 1, &first), Answer::Ok);
    apply(&mut store, 2, &command(2, 1, delete("k")));
    // Client 1's session was evicted to make room for client 2: its retry is new again.
    assert!(store.sessions().get(1).is_none());
    assert_eq!(apply(&mut store, 3, &first), Answer::Ok);
    assert_eq!(get(&store, "k"), value("a"));
}

#[test]
fn snapshot_then_restore_gives_an_equal_store_that_continues_identically() {
    let commands = scripted_commands(300, 6);
    let mut original = KvStore::with_session_capacity(capacity(4));
    for (command, index) in commands.iter().zip(1..200) {
        apply(&mut original, index, command);
    }
    let mut restored = KvStore::with_session_capacity(capacity(4));
    restored.restore(&original.snapshot()).unwrap();
    assert_eq!(restored, original);
    assert_eq!(restored.snapshot(), original.snapshot());
    for (command, index) in commands.iter().zip(1..).skip(199) {
        assert_eq!(
            apply(&mut restored, index, command),
            apply(&mut original, index, command)
        );
    }
    assert_eq!(restored, original);
}

#[test]
fn a_snapshot_taken_for_later_is_the_state_when_taken_whatever_is_applied_after() {
    let commands = scripted_commands(300, 6);
    let mut store = KvStore::with_session_capacity(capacity(4));
    for (command, index) in commands.iter().zip(1..150) {
        apply(&mut store, index, command);
    }
    let when_taken = store.snapshot();
    let later = store.snapshot_later();
    // Overwrites, deletes, compare-and-swaps and new sessions after the copy was taken.
    for (command, index) in commands.iter().zip(1..).skip(149) {
        apply(&mut store, index, command);
    }
    assert_ne!(store.snapshot(), when_taken, "the script changes the state");
    let mut written = b"frame header".to_vec();
    later(&mut written);
    assert_eq!(&written[..12], b"frame header", "the writer appends");
    assert_eq!(written[12..], when_taken[..]);
}

#[test]
fn a_damaged_snapshot_is_refused_and_changes_nothing() {
    let mut source = KvStore::new();
    for (command, index) in scripted_commands(50, 3).iter().zip(1..) {
        apply(&mut source, index, command);
    }
    let snapshot = source.snapshot();
    let mut store = KvStore::new();
    apply(&mut store, 1, &command(9, 1, put("mine", "x")));
    let before = store.clone();
    for len in 0..snapshot.len() {
        let error = store.restore(&snapshot[..len]).unwrap_err();
        assert!(error.to_string().starts_with("cannot restore snapshot"));
        assert_eq!(store, before);
    }
    let mut longer = snapshot.clone();
    longer.push(0);
    assert!(store.restore(&longer).is_err());
    assert_eq!(store, before);
}

#[test]
fn restoring_into_a_smaller_table_keeps_the_most_recent_sessions() {
    let mut source = KvStore::new();
    for client in 1..=5 {
        apply(&mut source, client, &command(client, 1, put("k", "v")));
    }
    let mut small = KvStore::with_session_capacity(capacity(2));
    small.restore(&source.snapshot()).unwrap();
    let kept: Vec<u64> = small.sessions().iter().map(|(client, _)| client).collect();
    assert_eq!(kept, [4, 5]);
}

#[test]
fn an_empty_store_snapshot_is_laid_out_as_documented() {
    // version, tag, applied index, no pairs, no sessions.
    assert_eq!(KvStore::new().snapshot(), [1, 0x31, 0, 0, 0]);
    let mut store = KvStore::new();
    apply(&mut store, 3, &command(2, 1, put("k", "v")));
    assert_eq!(
        store.snapshot(),
        [1, 0x31, 3, 1, 1, b'k', 1, b'v', 1, 2, 1, 3, 0x21]
    );
}

fn query(store: &KvStore, query: &Query) -> Answer {
    Answer::decode(&StateMachine::query(store, &query.encode()))
        .expect("the store encodes its answers")
}

/// A store holding `count` keys `{prefix}{n:04}` (values `v{n}`) and a few keys around them.
fn store_with(prefix: &str, count: u64) -> KvStore {
    let mut store = KvStore::new();
    let mut index = 0;
    let mut next = |store: &mut KvStore, op| {
        index += 1;
        apply(store, index, &command(1, index, op))
    };
    for key in ["a", "zz", prefix, &format!("{prefix}\u{7f}")] {
        next(&mut store, put(key, "around"));
    }
    // Around the prefix's keys: the prefix itself (before them) and `prefix\x7f` (after them).
    for n in 0..count {
        next(
            &mut store,
            put(&format!("{prefix}/{n:04}"), &format!("v{n}")),
        );
    }
    store
}

/// Reads `range` a page at a time (`limit` pairs, `max_bytes`) through the byte interface,
/// as a client does; returns the pairs and how many pages it took.
fn read_all(store: &KvStore, range: &KeyRange, limit: u64, max_bytes: u64) -> (Vec<Pair>, usize) {
    let mut rest = range.clone();
    let mut pairs = Vec::new();
    let mut pages = 0;
    loop {
        let answer = query(
            store,
            &Query::Scan {
                range: rest.clone(),
                limit,
                max_bytes,
            },
        );
        let Answer::Page { pairs: page, more } = answer else {
            panic!("a scan is answered with a page: {answer:?}");
        };
        pages += 1;
        assert!(page.len() as u64 <= limit);
        let Some((last, _)) = page.last().cloned() else {
            assert!(!more, "an empty page says nothing remains");
            break;
        };
        pairs.extend(page);
        if !more {
            break;
        }
        rest = range.after(&last);
    }
    (pairs, pages)
}

#[test]
fn pages_of_a_prefix_continue_after_their_last_key_without_gaps_or_repeats() {
    let store = store_with("app", 50);
    let range = KeyRange::prefix(b"app/");
    let expected: Vec<Pair> = (0..50)
        .map(|n| {
            (
                format!("app/{n:04}").into_bytes(),
                format!("v{n}").into_bytes(),
            )
        })
        .collect();
    // By count: 7 a page, the last page short.
    let (pairs, pages) = read_all(&store, &range, 7, MAX_PAGE_BYTES);
    assert_eq!(pairs, expected);
    assert_eq!(pages, 8);
    // By bytes: a pair takes 12 or 13 bytes, a page 13 more at most: 60 bytes hold 3 pairs.
    let (pairs, pages) = read_all(&store, &range, u64::MAX, 60);
    assert_eq!(pairs, expected);
    assert!(pages > 10, "{pages}");
    // A budget below one pair still makes progress, a pair a page.
    let (pairs, pages) = read_all(&store, &range, u64::MAX, 1);
    assert_eq!(pairs, expected);
    assert_eq!(pages, 50);
    // Exactly the prefix: not "app" itself nor "app\x7f".
    assert_eq!(store.scan(&range).count(), 50);
    assert_eq!(store.scan(&KeyRange::prefix(b"app")).count(), 52);
}

#[test]
fn a_page_is_within_its_budget_unless_it_holds_one_pair() {
    let store = store_with("p", 100);
    for budget in [1, 20, 100, 1_000, 65_000] {
        let Answer::Page { pairs, more } = store.page(&KeyRange::prefix(b"p/"), u64::MAX, budget)
        else {
            unreachable!("page() makes a page");
        };
        let len = Answer::Page {
            pairs: pairs.clone(),
            more,
        }
        .encode()
        .len() as u64;
        assert!(
            len <= budget || pairs.len() == 1,
            "{len} bytes for a budget of {budget}"
        );
        assert_eq!(more, pairs.len() < 100);
    }
}

#[test]
fn ranges_include_from_and_exclude_to_and_inverted_ones_are_empty() {
    let store = store_with("k", 10);
    let keys = |range: KeyRange| -> Vec<Vec<u8>> {
        read_all(&store, &range, 3, MAX_PAGE_BYTES)
            .0
            .into_iter()
            .map(|(key, _)| key)
            .collect()
    };
    assert_eq!(
        keys(KeyRange::between(b"k/0002", b"k/0005")),
        [b"k/0002".to_vec(), b"k/0003".to_vec(), b"k/0004".to_vec()]
    );
    // Inverted and empty ranges reach no BTreeMap::range (which would panic) and hold nothing.
    assert!(keys(KeyRange::between(b"k/0005", b"k/0002")).is_empty());
    assert!(keys(KeyRange::between(b"k/0005", b"k/0005")).is_empty());
    assert_eq!(keys(KeyRange::all()).len(), 14);
    // A limit of 0 reads nothing but says whether anything is there.
    assert_eq!(
        store.page(&KeyRange::all(), 0, MAX_PAGE_BYTES),
        Answer::Page {
            pairs: Vec::new(),
            more: true
        }
    );
}

#[test]
fn a_counted_delete_answers_one_for_a_present_key_and_zero_for_an_absent_one() {
    let mut store = KvStore::new();
    apply(&mut store, 1, &command(1, 1, put("k", "v")));
    let counted = |seq| command(1, seq, Op::DeleteCounted { key: b"k".to_vec() });
    assert_eq!(
        apply(&mut store, 2, &counted(2)),
        Answer::Deleted {
            count: 1,
            more: false
        }
    );
    assert_eq!(
        apply(&mut store, 3, &counted(3)),
        Answer::Deleted {
            count: 0,
            more: false
        }
    );
    // A retry gets the first answer back: the count it had, not a recount.
    assert_eq!(
        apply(&mut store, 4, &counted(3)),
        Answer::Deleted {
            count: 0,
            more: false
        }
    );
    // The old delete keeps its old answer.
    assert_eq!(
        apply(&mut store, 5, &command(1, 4, delete("k"))),
        Answer::Ok
    );
}

#[test]
fn a_prefix_delete_removes_at_most_a_batch_and_says_whether_more_remain() {
    let mut store = store_with("big", 2_500);
    let before = store.len();
    let delete_prefix = |seq, max_keys| {
        command(
            2,
            seq,
            Op::DeletePrefix {
                prefix: b"big/".to_vec(),
                max_keys,
            },
        )
    };
    let mut index = store.applied_index();
    let mut answers = Vec::new();
    for seq in 1..=4 {
        index += 1;
        answers.push(apply(
            &mut store,
            index,
            &delete_prefix(seq, MAX_DELETE_BATCH as u64),
        ));
    }
    assert_eq!(
        answers,
        [
            Answer::Deleted {
                count: 1_000,
                more: true
            },
            Answer::Deleted {
                count: 1_000,
                more: true
            },
            Answer::Deleted {
                count: 500,
                more: false
            },
            Answer::Deleted {
                count: 0,
                more: false
            },
        ]
    );
    assert_eq!(store.len(), before - 2_500);
    // The keys around the prefix are untouched.
    for key in [&b"a"[..], &b"zz"[..], &b"big"[..], &b"big\x7f"[..]] {
        assert!(store.get(key).is_some(), "{key:?}");
    }
    // A batch over the maximum, built without the encoder (which refuses it), is cut to it.
    let mut store = store_with("big", 1_500);
    let index = store.applied_index() + 1;
    assert_eq!(
        store.apply_command(index, &delete_prefix(1, u64::MAX)),
        Answer::Deleted {
            count: 1_000,
            more: true
        }
    );
    assert_eq!(
        store.apply_command(index + 1, &delete_prefix(2, 10)),
        Answer::Deleted {
            count: 10,
            more: true
        }
    );
    // An empty prefix is every key: the 490 left under the prefix and the 4 around it.
    assert_eq!(
        store.apply_command(
            index + 2,
            &command(
                2,
                3,
                Op::DeletePrefix {
                    prefix: Vec::new(),
                    max_keys: 1_000
                }
            )
        ),
        Answer::Deleted {
            count: 494,
            more: false
        }
    );
    assert!(store.is_empty());
}

// ---- properties ----

fn small_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max)
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        (small_bytes(40), small_bytes(200)).prop_map(|(key, value)| Op::Put { key, value }),
        small_bytes(40).prop_map(|key| Op::Delete { key }),
        small_bytes(40).prop_map(|key| Op::DeleteCounted { key }),
        (small_bytes(40), 0..=MAX_DELETE_BATCH as u64)
            .prop_map(|(prefix, max_keys)| Op::DeletePrefix { prefix, max_keys }),
        (
            small_bytes(40),
            prop::option::of(small_bytes(60)),
            small_bytes(60)
        )
            .prop_map(|(key, expected, new)| Op::Cas { key, expected, new }),
    ]
}

fn command_strategy() -> impl Strategy<Value = Command> {
    (any::<u64>(), any::<u64>(), op_strategy()).prop_map(|(client_id, seq, op)| Command {
        client_id,
        seq,
        op,
    })
}

fn answer_strategy() -> impl Strategy<Value = Answer> {
    prop_oneof![
        Just(Answer::Ok),
        prop::option::of(small_bytes(60)).prop_map(Answer::Value),
        prop::option::of(small_bytes(60)).prop_map(|current| Answer::CasMismatch { current }),
        any::<u64>().prop_map(|last_seq| Answer::StaleRequest { last_seq }),
        ".{0,80}".prop_map(Answer::rejected),
        (any::<u64>(), any::<bool>()).prop_map(|(count, more)| Answer::Deleted { count, more }),
        (
            prop::collection::btree_map(small_bytes(20), small_bytes(40), 0..6),
            any::<bool>()
        )
            .prop_map(|(pairs, more)| Answer::Page {
                pairs: pairs.into_iter().collect(),
                more
            }),
    ]
}

/// Decodes `bytes` as every kind; whatever decodes must re-encode to exactly `bytes`.
fn check_decoders(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(command) = Command::decode(bytes) {
        prop_assert_eq!(command.encode(), bytes);
    }
    if let Ok(query) = Query::decode(bytes) {
        prop_assert_eq!(query.encode(), bytes);
    }
    if let Ok(answer) = Answer::decode(bytes) {
        prop_assert_eq!(answer.encode(), bytes);
    }
    let mut store = KvStore::new();
    if store.restore(bytes).is_ok() {
        prop_assert_eq!(store.snapshot(), bytes);
    }
    let mut store = KvStore::new();
    let answer = StateMachine::apply(&mut store, 1, bytes);
    prop_assert!(Answer::decode(&answer).is_ok());
    prop_assert!(Answer::decode(&StateMachine::query(&store, bytes)).is_ok());
    Ok(())
}

/// A step of a client workload: which client, whether it sends a new command, retries its last
/// one or sends an older one, and the operation over a few keys and values.
#[derive(Clone, Debug)]
struct Step {
    client: u64,
    kind: u8,
    op: Op,
}

fn step_strategy() -> impl Strategy<Value = Step> {
    let key = prop::sample::select(vec!["a", "b", "c"]);
    let text = prop::sample::select(vec!["x", "y", "z"]);
    let op = prop_oneof![
        (key.clone(), text.clone()).prop_map(|(k, v)| put(k, v)),
        key.clone().prop_map(delete),
        key.clone()
            .prop_map(|k| Op::DeleteCounted { key: k.into() }),
        (prop::sample::select(vec!["", "a", "b"]), 0u64..3).prop_map(|(p, max_keys)| {
            Op::DeletePrefix {
                prefix: p.into(),
                max_keys,
            }
        }),
        (key, prop::option::of(text.clone()), text).prop_map(|(k, e, n)| cas(k, e, n)),
    ];
    (0u64..5, 0u8..4, op).prop_map(|(client, kind, op)| Step { client, kind, op })
}

/// Turns steps into commands: kind 0 retries the client's last command, kind 1 sends an older
/// number, others a new one.
fn commands_from(steps: &[Step]) -> Vec<Command> {
    let mut last: BTreeMap<u64, Command> = BTreeMap::new();
    steps
        .iter()
        .map(|step| {
            let previous = last.get(&step.client);
            let next = match (step.kind, previous) {
                (0, Some(previous)) => previous.clone(),
                (1, Some(previous)) if previous.seq > 1 => {
                    command(step.client, previous.seq - 1, step.op.clone())
                }
                _ => command(
                    step.client,
                    previous.map_or(1, |previous| previous.seq + 1),
                    step.op.clone(),
                ),
            };
            last.insert(step.client, next.clone());
            next
        })
        .collect()
}

/// The service's meaning, written plainly: unbounded sessions, a map.
#[derive(Default)]
struct Model {
    data: BTreeMap<Vec<u8>, Vec<u8>>,
    sessions: BTreeMap<u64, (u64, Answer)>,
}

impl Model {
    fn apply(&mut self, command: &Command) -> Answer {
        if let Some((last_seq, answer)) = self.sessions.get(&command.client_id) {
            if command.seq == *last_seq {
                return answer.clone();
            }
            if command.seq < *last_seq {
                return Answer::StaleRequest {
                    last_seq: *last_seq,
                };
            }
        }
        let answer = match &command.op {
            Op::Put { key, value } => {
                self.data.insert(key.clone(), value.clone());
                Answer::Ok
            }
            Op::Delete { key } => {
                self.data.remove(key);
                Answer::Ok
            }
            Op::DeleteCounted { key } => Answer::Deleted {
                count: u64::from(self.data.remove(key).is_some()),
                more: false,
            },
            Op::DeletePrefix { prefix, max_keys } => {
                let matching: Vec<Vec<u8>> = self
                    .data
                    .keys()
                    .filter(|key| key.starts_with(prefix))
                    .cloned()
                    .collect();
                let cut = usize::try_from(*max_keys)
                    .unwrap_or(usize::MAX)
                    .min(MAX_DELETE_BATCH)
                    .min(matching.len());
                for key in &matching[..cut] {
                    self.data.remove(key);
                }
                Answer::Deleted {
                    count: cut as u64,
                    more: cut < matching.len(),
                }
            }
            Op::Cas { key, expected, new } => {
                if self.data.get(key) == expected.as_ref() {
                    self.data.insert(key.clone(), new.clone());
                    Answer::Ok
                } else {
                    Answer::CasMismatch {
                        current: self.data.get(key).cloned(),
                    }
                }
            }
        };
        self.sessions
            .insert(command.client_id, (command.seq, answer.clone()));
        answer
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in small_bytes(300)) {
        check_decoders(&bytes)?;
    }

    #[test]
    fn decoding_damaged_encodings_never_panics(
        command in command_strategy(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut store = KvStore::new();
        store.apply_command(1, &command);
        for bytes in [command.encode(), store.snapshot()] {
            let mut damaged = bytes.clone();
            for (at, byte) in &edits {
                let at = at.index(damaged.len());
                damaged[at] = *byte;
            }
            check_decoders(&damaged)?;
            check_decoders(&bytes[..cut.index(bytes.len() + 1)])?;
        }
    }

    #[test]
    fn commands_round_trip(command in command_strategy()) {
        prop_assert_eq!(Command::decode(&command.encode()), Ok(command));
    }

    #[test]
    fn queries_and_answers_round_trip(
        key in small_bytes(60),
        end in prop::option::of(small_bytes(60)),
        limit in any::<u64>(),
        max_bytes in any::<u64>(),
        answer in answer_strategy(),
    ) {
        let scan = Query::Scan {
            range: KeyRange { start: key.clone(), end },
            limit,
            max_bytes,
        };
        prop_assert_eq!(Query::decode(&scan.encode()), Ok(scan));
        let query = Query::Get { key };
        prop_assert_eq!(Query::decode(&query.encode()), Ok(query));
        prop_assert_eq!(Answer::decode(&answer.encode()), Ok(answer));
    }

    #[test]
    fn the_store_agrees_with_the_model(steps in prop::collection::vec(step_strategy(), 0..80)) {
        let mut store = KvStore::new();
        let mut model = Model::default();
        for (command, index) in commands_from(&steps).iter().zip(1..) {
            prop_assert_eq!(apply(&mut store, index, command), model.apply(command));
        }
        let model_data: Vec<(&[u8], &[u8])> =
            model.data.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
        for (key, value) in &model_data {
            prop_assert_eq!(store.get(key), Some(*value));
        }
        prop_assert_eq!(store.len(), model_data.len());
    }

    #[test]
    fn snapshot_restore_continue_matches_never_snapshotting(
        steps in prop::collection::vec(step_strategy(), 1..80),
        at in any::<prop::sample::Index>(),
        table in 1usize..4,
    ) {
        let commands = commands_from(&steps);
        let split = at.index(commands.len());
        let mut straight = KvStore::with_session_capacity(capacity(table));
        let mut resumed = KvStore::with_session_capacity(capacity(table));
        for (command, index) in commands.iter().zip(1..).take(split) {
            apply(&mut straight, index, command);
            apply(&mut resumed, index, command);
        }
        let snapshot = resumed.snapshot();
        let mut resumed = KvStore::with_session_capacity(capacity(table));
        resumed.restore(&snapshot).map_err(|error| TestCaseError::fail(error.to_string()))?;
        prop_assert_eq!(&resumed, &straight);
        for (command, index) in commands.iter().zip(1..).skip(split) {
            prop_assert_eq!(apply(&mut resumed, index, command), apply(&mut straight, index, command));
        }
        prop_assert_eq!(resumed.snapshot(), straight.snapshot());
    }
}
