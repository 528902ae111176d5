//! Scripted scenarios of the replica's answers to clients, named for the rule each checks. The
//! core is brought into the state a scenario needs with the core's test kit
//! (`raft::testkit`), then taken out of the scripted cluster and wrapped in a replica, which
//! takes a client's datagram; the test reads the answer it gives at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use balsa_net::Counters;

use super::{Effect, Input, Replica, SnapshotPolicy, stagger};
use crate::kv::{Command, KvStore, Op, Query};
use crate::raft::testkit::Cluster;
use crate::raft::{self, Body, Message, NodeId, Role};
use crate::runtime::wire::{Request, RequestBody, Response, ResponseBody, Wire};

/// Node `id`'s address, as its replica hints clients at it.
fn address(id: NodeId) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, u8::try_from(id).expect("a small id")], 7000))
}

/// The client every script's request comes from.
fn client() -> SocketAddr {
    SocketAddr::from(([10, 1, 0, 1], 9000))
}

/// A snapshot policy that never snapshots by itself: scripts ask when they want one.
fn snapshots_on_request_only() -> SnapshotPolicy {
    SnapshotPolicy {
        entries: u64::MAX,
        bytes: u64::MAX,
        expansion: 0,
    }
}

/// Node `id` of `cluster`, taken out of it, as a replica knowing every member's address. Its
/// state machine is empty: a script applies nothing once the node is a replica.
fn replica(cluster: &mut Cluster, id: NodeId) -> Replica<KvStore, u32> {
    let members: BTreeMap<NodeId, SocketAddr> = cluster
        .nodes
        .keys()
        .map(|&member| (member, address(member)))
        .collect();
    let raft = cluster.nodes.remove(&id).expect("a node of the cluster");
    let policy = snapshots_on_request_only();
    Replica::new(
        raft,
        KvStore::new(),
        Arc::new(Counters::default()),
        members,
        (0, 0),
        policy,
    )
}

/// What `replica` answers at once to a client's request `body`, if anything.
fn answer(replica: &mut Replica<KvStore, u32>, body: RequestBody) -> Option<ResponseBody> {
    let wire = Wire::Request(Request { id: 1, body });
    let input = Input::Client {
        source: client(),
        wire,
    };
    replica.step(input).expect("no snapshot to restore");
    let mut answer = None;
    while let Some(effect) = replica.poll_effect() {
        if let Effect::Answer {
            to,
            wire: Wire::Response(Response { id: 1, body }),
        } = effect
        {
            assert_eq!(to, client());
            answer = Some(body);
        }
    }
    answer
}

/// A client's write.
fn put() -> RequestBody {
    let command = Command {
        client_id: 9,
        seq: 1,
        op: Op::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        },
    };
    RequestBody::Command {
        data: command.encode(),
    }
}

/// Thesis §3.10: a leader handing leadership over takes no writes meanwhile. It turns a
/// client's write away naming the node taking over, never itself: a client told "1 is not the
/// leader; 1 is" has nowhere to go but round its other endpoints.
#[test]
fn a_leader_handing_over_refuses_a_write_naming_the_node_taking_over_never_itself() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.step(1, raft::Input::TransferLeadership { to: 2 });
    assert_eq!(cluster.role(1), Role::Leader, "its TimeoutNow is in flight");
    let mut leader = replica(&mut cluster, 1);
    assert_eq!(
        answer(&mut leader, put()),
        Some(ResponseBody::NotLeader {
            leader: None,
            address: Some(address(2))
        })
    );
}

/// A transfer to a node that cannot lead is refused at once with the reason (a client that
/// was told "started" could only guess at the outcome), and one to a voter starts.
#[test]
fn a_leader_refuses_a_transfer_to_a_node_that_is_not_a_voter_saying_why() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    let mut leader = replica(&mut cluster, 1);
    assert_eq!(
        answer(&mut leader, RequestBody::Transfer { to: 9 }),
        Some(ResponseBody::Error {
            message: "node 9 is not a member of this cluster (voters: 1, 2, 3)".into()
        })
    );
    assert_eq!(
        answer(&mut leader, RequestBody::Transfer { to: 2 }),
        Some(ResponseBody::TransferStarted)
    );
}

/// A linearizable read of key `k`, or with `stale` one from the node's own state.
fn get(stale: bool) -> RequestBody {
    let query = Query::Get { key: b"k".to_vec() };
    RequestBody::Query {
        data: query.encode(),
        stale,
    }
}

/// Thesis §6.2's lease seen from a follower, on the wire: a follower that heard from its
/// leader within the minimum election timeout passes a client's write and linearizable read on
/// (the answer comes later, from the leader or through it); one that has not answers both at
/// once, `NotLeader` with no leader and the leader it lost as the hint, so the client tries
/// another node rather than wait out its attempt timeout. A stale read is answered either way.
#[test]
fn a_follower_not_heard_from_its_leader_within_an_election_timeout_answers_no_leader_at_once() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    let min = cluster.node(2).config().election_ticks.0;
    cluster.isolate(2);
    cluster.tick(2, min - 1);
    let mut follower = replica(&mut cluster, 2);
    assert_eq!(answer(&mut follower, put()), None, "forwarded to node 1");
    assert_eq!(answer(&mut follower, get(false)), None, "asked node 1");

    follower.step(Input::Tick).expect("a tick");
    while follower.poll_effect().is_some() {}
    assert_eq!(follower.raft().role(), Role::Follower);
    let no_leader = Some(ResponseBody::NotLeader {
        leader: None,
        address: Some(address(1)),
    });
    assert_eq!(answer(&mut follower, put()), no_leader);
    assert_eq!(answer(&mut follower, get(false)), no_leader);
    assert!(matches!(
        answer(&mut follower, get(true)),
        Some(ResponseBody::Query { .. })
    ));
}

/// Sends a client's linearizable read to `follower` and returns the `ctx` of the ReadIndex it
/// asks the leader (node 1) with.
fn read_index_ctx(follower: &mut Replica<KvStore, u32>) -> u64 {
    let wire = Wire::Request(Request {
        id: 1,
        body: get(false),
    });
    follower
        .step(Input::Client {
            source: client(),
            wire,
        })
        .expect("no snapshot to restore");
    let mut ctxs = Vec::new();
    while let Some(effect) = follower.poll_effect() {
        if let Effect::Send {
            to: 1,
            msg:
                Message {
                    body: Body::ReadIndex { ctx },
                    ..
                },
        } = effect
        {
            ctxs.push(ctx);
        }
    }
    assert_eq!(ctxs.len(), 1, "one ReadIndex to the leader");
    ctxs[0]
}

/// Whether `follower` answers the client after the leader's ReadIndex answer for `ctx`.
fn answers_after(follower: &mut Replica<KvStore, u32>, ctx: u64, term: u64) -> bool {
    let msg = Message {
        term,
        body: Body::ReadIndexResponse {
            ctx,
            index: Some(0),
        },
    };
    follower
        .step(Input::Peer { from: 1, msg })
        .expect("no snapshot to restore");
    let mut answered = false;
    while let Some(effect) = follower.poll_effect() {
        answered |= matches!(effect, Effect::Answer { to, .. } if to == client());
    }
    answered
}

/// Found by the simulator (seed 5688 of `f2a7e42`): a follower's read travels to the leader
/// and back under its tag (ReadIndex's `ctx`). A follower that asked, crashed and came back
/// numbering its reads from the same start gave a new read the old one's tag, and the leader's
/// late answer to the old read served the new one at an index from before a write the new read
/// had to see: a stale read. Each incarnation's tags now start where its driver says (random in
/// the runtime, from the incarnation's seed in the simulator), so a late answer to a read of an
/// earlier incarnation serves nothing, and the answer to this one's read does.
#[test]
fn a_late_read_index_answer_to_an_earlier_incarnation_serves_no_read_of_this_one() {
    // Two runs of the same script stand for two incarnations of node 2.
    let incarnation = |first_tag: u64| {
        let mut cluster = Cluster::new(3, |_| {});
        cluster.elect(1);
        let term = cluster.term(1);
        (replica(&mut cluster, 2).with_first_tag(first_tag), term)
    };
    let (mut before_the_crash, _) = incarnation(1_000);
    let earlier_ctx = read_index_ctx(&mut before_the_crash);
    let (mut after_the_crash, term) = incarnation(7_000_000);
    let ctx = read_index_ctx(&mut after_the_crash);
    assert_ne!(ctx, earlier_ctx);

    assert!(
        !answers_after(&mut after_the_crash, earlier_ctx, term),
        "the late answer serves nothing"
    );
    assert!(
        answers_after(&mut after_the_crash, ctx, term),
        "its own answer serves the read"
    );
}

/// What a client request may carry: a Raft message in one (what a holder of the client key,
/// which every client has, could try) is dropped, counted as the wrong kind for its source, and
/// reaches neither the core nor an answer.
#[test]
fn a_raft_message_in_a_client_request_is_dropped_and_counted_as_the_wrong_kind() {
    let mut cluster = Cluster::new(3, |_| {});
    let mut replica = replica(&mut cluster, 1);
    let counters = Arc::clone(&replica.counters);
    let vote = Message {
        term: 1 << 40,
        body: Body::RequestVote {
            pre_vote: false,
            last_index: 0,
            last_term: 0,
            transfer: false,
        },
    };
    replica
        .step(Input::Client {
            source: client(),
            wire: Wire::Raft(vote),
        })
        .expect("no snapshot to restore");
    assert!(
        replica.poll_effect().is_none(),
        "nothing sent, answered or stored"
    );
    assert_eq!(replica.status().term, 0, "the forged term reached nothing");
    assert_eq!(
        counters.values().dropped(balsa_net::DropReason::WrongKind),
        1
    );
    let sources = counters.by_source();
    assert_eq!(sources.len(), 1);
    assert_eq!((sources[0].0, sources[0].1.wrong_kind), (client(), 1));
}

/// A replica of node 1 of 3 restored from a snapshot at (40, 2) holding `data`, its datagrams
/// at most `max_message_bytes`.
fn restored_with_snapshot(data: Vec<u8>, max_message_bytes: usize) -> Replica<KvStore, u32> {
    let mut config = raft::Config::new(1, vec![1, 2, 3]);
    config.set_max_message_bytes(max_message_bytes);
    let restored = raft::Restored {
        hard_state: raft::HardState {
            term: 2,
            vote: 0,
            commit: 40,
        },
        snapshot: (40, 2),
        entries: Vec::new(),
        snapshot_data: Some(Arc::new(data)),
    };
    let raft = raft::Raft::new(config, restored).expect("a valid configuration");
    let members = (1..=3).map(|id| (id, address(id))).collect();
    let policy = snapshots_on_request_only();
    Replica::new(
        raft,
        KvStore::new(),
        Arc::new(Counters::default()),
        members,
        (40, 2),
        policy,
    )
}

fn read_snapshot(offset: u64, max_bytes: u32) -> RequestBody {
    RequestBody::ReadSnapshot { offset, max_bytes }
}

/// `balsa snapshot save` reads a node's snapshot in pieces at offsets it chooses: each piece
/// names the snapshot (index, term, size, CRC), holds the bytes at its offset, and is at most
/// what the client asked and what fits the node's datagrams; the end is an empty piece, and
/// past the end is an error, never a panic.
#[test]
fn a_snapshot_is_read_in_pieces_that_fit_a_datagram_and_name_their_snapshot() {
    let data: Vec<u8> = (0..10_000u32).map(|n| (n % 251) as u8).collect();
    let crc = crc32fast::hash(&data);
    let mut node = restored_with_snapshot(data.clone(), 2_000);
    let cap = node.raft().config().snapshot_chunk_bytes;
    assert!(cap < 2_000, "the chunk leaves room for the answer's fields");
    let mut read = Vec::new();
    while read.len() < data.len() {
        let offset = read.len() as u64;
        let Some(ResponseBody::SnapshotPiece(piece)) =
            answer(&mut node, read_snapshot(offset, u32::MAX))
        else {
            panic!("a piece at {offset}");
        };
        assert_eq!(piece.snapshot_id(), (40, 2, data.len() as u64, crc));
        assert_eq!(piece.offset, offset);
        assert!(!piece.data.is_empty() && piece.data.len() <= cap);
        read.extend_from_slice(&piece.data);
    }
    assert_eq!(read, data);
    let Some(ResponseBody::SnapshotPiece(small)) = answer(&mut node, read_snapshot(100, 7)) else {
        panic!("a piece");
    };
    assert_eq!(small.data, data[100..107]);
    let Some(ResponseBody::SnapshotPiece(end)) =
        answer(&mut node, read_snapshot(data.len() as u64, 100))
    else {
        panic!("the end");
    };
    assert!(end.data.is_empty());
    let Some(ResponseBody::Error { message }) = answer(&mut node, read_snapshot(u64::MAX, 100))
    else {
        panic!("an error past the end");
    };
    assert!(message.contains("past the end"), "{message}");
}

#[test]
fn a_node_without_a_snapshot_says_so_to_a_snapshot_read() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    let mut leader = replica(&mut cluster, 1);
    assert_eq!(
        answer(&mut leader, read_snapshot(0, 100)),
        Some(ResponseBody::Error {
            message: "node 1 holds no snapshot yet".into()
        })
    );
}

/// The members of a cluster save their snapshots in turn, not together (`stagger`): any three
/// ids in a row count from head starts of 0, 1/3 and 2/3 of the interval, so their first
/// snapshots, and every one after, come a third of an interval apart.
#[test]
fn members_with_ids_in_a_row_snapshot_a_third_of_an_interval_apart() {
    let interval = 300;
    let firsts: Vec<u64> = (1..=3).map(|id| interval - stagger(id, interval)).collect();
    assert_eq!(firsts, [200, 100, 300]);
    for first in [1, 7, 1000] {
        let mut head_starts: Vec<u64> =
            (first..first + 3).map(|id| stagger(id, interval)).collect();
        head_starts.sort_unstable();
        assert_eq!(head_starts, [0, 100, 200], "ids from {first}");
    }
    // An interval that never comes (snapshots by request only) stays out of reach.
    assert!(stagger(2, u64::MAX) < u64::MAX - 1_000_000);
}

/// The thesis' expansion factor (§5.1.3): a threshold reached with less log than `expansion`
/// times the last snapshot waits; a state that keeps growing is then written a bounded number
/// of times per byte of log.
#[test]
fn a_snapshot_waits_for_expansion_times_the_last_snapshot_of_log() {
    let policy = SnapshotPolicy {
        entries: 100,
        bytes: 1_000,
        expansion: 2,
    };
    // No snapshot yet: the thresholds alone decide.
    assert!(!policy.is_due(99, 999, 0));
    assert!(policy.is_due(100, 10, 0));
    assert!(policy.is_due(1, 1_000, 0));
    // A last snapshot of 5,000 bytes: either threshold waits for 10,000 bytes of log.
    assert!(!policy.is_due(100, 9_999, 5_000));
    assert!(!policy.is_due(1_000_000, 9_999, 5_000));
    assert!(policy.is_due(100, 10_000, 5_000));
    // ... but the log reaching that is not a threshold by itself.
    let few_large = SnapshotPolicy {
        entries: 100,
        bytes: 1_000_000,
        expansion: 2,
    };
    assert!(!few_large.is_due(99, 20_000, 5_000));
    // 0: the thresholds alone, however large the last snapshot.
    let off = SnapshotPolicy {
        expansion: 0,
        ..policy
    };
    assert!(off.is_due(100, 10, u64::MAX));
    // A product past u64 waits, rather than wrapping round to a small floor.
    let huge = SnapshotPolicy {
        expansion: u64::MAX,
        ..policy
    };
    assert!(!huge.is_due(100, u64::MAX - 1, 2));
}

/// With a state that every entry grows (the worst case: nothing is overwritten), each snapshot
/// is the one before plus the log since, which the wait makes at least `expansion` times the one
/// before: snapshots write at most `1 + 1 / expansion` bytes per byte of log, where the
/// thresholds alone write a state again every threshold, quadratic in the log.
#[test]
fn a_growing_state_is_written_at_most_one_and_one_expansionth_times_the_log() {
    let written_by = |expansion: u64| {
        let policy = SnapshotPolicy {
            entries: u64::MAX,
            bytes: 10_000,
            expansion,
        };
        let entry_bytes = 100;
        let (mut state, mut since, mut last, mut written) = (0, 0, 0, 0);
        for _ in 0..100_000 {
            state += entry_bytes;
            since += entry_bytes;
            if policy.is_due(u64::MAX, since, last) {
                written += state;
                last = state;
                since = 0;
            }
        }
        (written, state)
    };
    for expansion in [1, 2, 4] {
        let (written, log) = written_by(expansion);
        assert!(
            written * expansion <= log * (expansion + 1),
            "{written} bytes of snapshots for {log} of log at {expansion}"
        );
    }
    let (written, log) = written_by(0);
    assert!(written > 100 * log, "{written} for {log} without the wait");
}
