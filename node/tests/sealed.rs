//! Sealed clusters through the library (issue 16): real nodes on loopback with a peer key and a
//! client key, and the key-value client.
//!
//! What is checked: a keyed cluster serves a keyed client; a client without the cluster's
//! client key (or with another) is told authentication failed, and counted per source address;
//! a keyed client of a cluster without keys is told the cluster does not seal; a Raft message
//! sealed under the client key is dropped as the wrong kind, and a member datagram forged with
//! the client key fails authentication, neither moving any term; a member started with the
//! wrong peer key neither disrupts the others nor learns their log; a rolling rotation of the
//! peer key, and of the client key, under a write load loses no acknowledged write; during a
//! rotation of the client key, clients on either key complete writes a follower forwards.
//!
//! Not here: the replay of a captured member datagram (balsa-net's tests capture and replay
//! datagrams between transports; nodes on loopback would need a relay for it).

#![cfg(feature = "seal")]
#![allow(
    clippy::disallowed_methods,
    reason = "waits are bounded by wall-clock deadlines; these tests run the real runtime, and a \
              writer thread"
)]

mod common;

use common::free_addresses;

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use balsa::client::{Client, ClientError, ClientOptions};
use balsa::kv::KvStore;
use balsa::raft::{Body, Entry, EntryKind, Message, Role};
use balsa::runtime::wire::{StatusReport, SuspiciousSource, Wire};
use balsa::{Node, NodeConfig, NodeStatus};
use balsa_net::{CLIENT_ID, Codec, DEFAULT_DATAGRAM_LIMIT, Key, KeyRing, Keys, Kind, Notice};

/// Bound of every wait.
const WAIT: Duration = Duration::from_secs(10);

/// How often a wait looks again. A poll interval only: what ends a wait is its condition.
const POLL: Duration = Duration::from_millis(5);

/// The term forged messages claim: far above any term these clusters reach.
const FORGED_TERM: u64 = 1 << 40;

/// A fresh 256-bit key.
fn new_key() -> Key {
    balsa_net::generate_key().expect("the OS random source works")
}

/// A node's keys: `peer` for member traffic, `client` for client traffic, no previous keys.
fn node_keys(peer: &Key, client: &Key) -> Keys {
    Keys::node(KeyRing::new(peer.clone()), KeyRing::new(client.clone()))
}

/// Polls `probe` until it gives a value (bounded by [`WAIT`]); `what` names the awaited
/// condition in the failure.
fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "not within {WAIT:?}: {what}");
        std::thread::sleep(POLL);
    }
}

/// Nodes of one cluster, each with its own data directory; a stopped node's slot is `None`.
struct Cluster {
    dirs: Vec<tempfile::TempDir>,
    members: Vec<(u64, SocketAddr)>,
    nodes: Vec<Option<Node>>,
}

impl Cluster {
    /// Starts `keys.len()` nodes, node `i + 1` with `keys[i]`.
    fn start(keys: &[Keys]) -> Cluster {
        let members: Vec<(u64, SocketAddr)> = (1..).zip(free_addresses(keys.len())).collect();
        let dirs = keys
            .iter()
            .map(|_| tempfile::tempdir().expect("a temporary directory"))
            .collect();
        let mut cluster = Cluster {
            dirs,
            members,
            nodes: Vec::new(),
        };
        for (i, keys) in keys.iter().enumerate() {
            let node = cluster.start_node(i, keys.clone());
            cluster.nodes.push(Some(node));
        }
        cluster
    }

    /// The configuration of node `i + 1` with `keys`, on its own data directory.
    fn config(&self, i: usize, keys: Keys) -> NodeConfig {
        let mut config = NodeConfig::new(
            self.members[i].0,
            self.members.clone(),
            self.dirs[i].path().to_path_buf(),
        );
        config.wal.segment_bytes = 1 << 20;
        config.keys = keys;
        config
    }

    /// Starts `n` nodes sharing a new peer key and a new client key; the client key.
    fn start_keyed(n: usize) -> (Cluster, Key) {
        let (peer, client_key) = (new_key(), new_key());
        let cluster = Cluster::start(&vec![node_keys(&peer, &client_key); n]);
        (cluster, client_key)
    }

    fn start_node(&self, i: usize, keys: Keys) -> Node {
        Node::start(self.config(i, keys), KvStore::new()).expect("node starts")
    }

    /// Node `i + 1`, which must be running.
    fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("the node is running")
    }

    fn addresses(&self) -> Vec<SocketAddr> {
        self.members.iter().map(|(_, address)| *address).collect()
    }

    /// Stops node `i + 1` cleanly.
    fn stop(&mut self, i: usize) {
        let node = self.nodes[i].take().expect("the node is running");
        node.shutdown().expect("a clean stop");
    }

    /// Stops node `i + 1` and starts it again on its data directory, with `keys`.
    fn restart(&mut self, i: usize, keys: Keys) {
        self.stop(i);
        self.nodes[i] = Some(self.start_node(i, keys));
    }

    /// The running nodes' statuses, by position.
    fn statuses(&self) -> Vec<(usize, NodeStatus)> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_some())
            .map(|i| (i, self.node(i).status().expect("a running node answers")))
            .collect()
    }

    /// Waits (bounded) until some running node leads; returns its position.
    fn leader(&self) -> usize {
        wait_for("a leader", || {
            self.statuses()
                .into_iter()
                .find(|(_, status)| status.role == Role::Leader)
                .map(|(i, _)| i)
        })
    }

    fn shutdown(mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_some() {
                self.stop(i);
            }
        }
    }
}

/// A client of `endpoints` sealing under `key` (`None`: plaintext), with the default timeouts.
fn client(endpoints: Vec<SocketAddr>, key: Option<Key>) -> Client {
    let options = ClientOptions {
        key,
        ..ClientOptions::default()
    };
    Client::new(endpoints, options).expect("a client")
}

/// A client that gives up quickly: for operations that are meant to fail.
fn impatient_client(endpoints: Vec<SocketAddr>, key: Option<Key>) -> Client {
    let options = ClientOptions {
        key,
        timeout: Duration::from_millis(500),
        attempt_timeout: Duration::from_millis(100),
        ..ClientOptions::default()
    };
    Client::new(endpoints, options).expect("a client")
}

/// The status reports of `endpoints`, in order; every node must answer.
fn reports(client: &mut Client, endpoints: &[SocketAddr]) -> Vec<StatusReport> {
    client
        .status_all(endpoints)
        .into_iter()
        .zip(endpoints)
        .map(|(report, endpoint)| {
            report.unwrap_or_else(|error| panic!("{endpoint} answers its status: {error}"))
        })
        .collect()
}

/// What `report`'s node dropped from `source` as suspicious (zeros if nothing).
fn drops_from(report: &StatusReport, source: SocketAddr) -> SuspiciousSource {
    report
        .suspicious_sources
        .iter()
        .find(|drops| drops.address == source)
        .copied()
        .unwrap_or(SuspiciousSource {
            address: source,
            auth_failed: 0,
            replayed: 0,
            wrong_kind: 0,
        })
}

/// What each of `endpoints` dropped from `source` as suspicious, in order.
fn drops_at(
    client: &mut Client,
    endpoints: &[SocketAddr],
    source: SocketAddr,
) -> Vec<SuspiciousSource> {
    reports(client, endpoints)
        .iter()
        .map(|report| drops_from(report, source))
        .collect()
}

/// Asserts that no node of `endpoints` has failed to authenticate a datagram or counted a
/// suspicious source (since its last restart); `why` says why none should have.
fn assert_no_auth_failures(client: &mut Client, endpoints: &[SocketAddr], why: &str) {
    for report in reports(client, endpoints) {
        assert_eq!(
            (
                report.datagrams_auth_failed,
                report.suspicious_sources.len()
            ),
            (0, 0),
            "node {}: {why}",
            report.id
        );
    }
}

/// Asserts that a linearizable read of `key` through `client` gives `value`.
fn assert_holds(client: &mut Client, key: &[u8], value: &[u8]) {
    assert_eq!(
        client.get(key, false).expect("a read"),
        Some(value.to_vec()),
        "{:?}",
        String::from_utf8_lossy(key)
    );
}

/// Whether `result` is [`ClientError::Unauthenticated`] carrying `notice` from one of
/// `endpoints`.
fn refused_with<T: std::fmt::Debug>(
    result: &Result<T, ClientError>,
    notice: Notice,
    endpoints: &[SocketAddr],
) -> bool {
    matches!(
        result,
        Err(ClientError::Unauthenticated { endpoint, notice: said, .. })
            if *said == notice && endpoints.contains(endpoint)
    )
}

#[test]
fn a_keyed_cluster_elects_a_leader_and_serves_a_keyed_client() {
    let (cluster, client_key) = Cluster::start_keyed(3);
    cluster.leader();
    let endpoints = cluster.addresses();
    let mut client = client(endpoints.clone(), Some(client_key));
    for i in 0..10 {
        let (key, value) = (format!("key {i}"), format!("value {i}"));
        client.put(key.as_bytes(), value.as_bytes()).expect("put");
    }
    for i in 0..10 {
        let (key, value) = (format!("key {i}"), format!("value {i}"));
        assert_holds(&mut client, key.as_bytes(), value.as_bytes());
    }
    assert_no_auth_failures(
        &mut client,
        &endpoints,
        "everyone speaks under the right keys",
    );
    cluster.shutdown();
}

#[test]
fn a_client_without_the_client_key_or_with_another_is_refused_and_counted() {
    let (cluster, client_key) = Cluster::start_keyed(3);
    let endpoints = cluster.addresses();
    let mut keyed = client(endpoints.clone(), Some(client_key));
    keyed
        .put(b"colour", b"blue")
        .expect("the keyed client writes");

    for (what, key) in [("no key", None), ("another key", Some(new_key()))] {
        let mut stranger = impatient_client(endpoints.clone(), key);
        let source = stranger.local_addr().expect("a bound socket");
        let written = stranger.put(b"colour", b"red");
        assert!(
            refused_with(&written, Notice::AuthFailed, &endpoints),
            "a write with {what}: {written:?}"
        );
        let message = written.expect_err("refused").to_string();
        assert!(
            message.contains("authentication failed") && message.contains("client key"),
            "the message names the likely cause: {message}"
        );
        let read = stranger.get(b"colour", false);
        assert!(
            refused_with(&read, Notice::AuthFailed, &endpoints),
            "a read with {what}: {read:?}"
        );
        // Each operation sent at least one request, and every request failed authentication
        // where it arrived, counted against the stranger's address and nothing else.
        let drops = drops_at(&mut keyed, &endpoints, source);
        let auth_failed: u64 = drops.iter().map(|drops| drops.auth_failed).sum();
        assert!(auth_failed >= 2, "{what}: {drops:?}");
        assert!(
            drops.iter().all(|d| d.replayed == 0 && d.wrong_kind == 0),
            "{what}: {drops:?}"
        );
    }
    // Neither write took effect.
    assert_holds(&mut keyed, b"colour", b"blue");
    cluster.shutdown();
}

#[test]
fn a_keyed_client_of_a_cluster_without_keys_is_told_the_cluster_does_not_seal() {
    let cluster = Cluster::start(&[Keys::insecure()]);
    let endpoints = cluster.addresses();
    let mut plain = client(endpoints.clone(), None);
    plain
        .put(b"colour", b"blue")
        .expect("a plaintext client writes");

    let mut keyed = impatient_client(endpoints.clone(), Some(new_key()));
    let source = keyed.local_addr().expect("a bound socket");
    let written = keyed.put(b"colour", b"red");
    assert!(
        refused_with(&written, Notice::NotSealing, &endpoints),
        "{written:?}"
    );
    let read = keyed.get(b"colour", false);
    assert!(
        refused_with(&read, Notice::NotSealing, &endpoints),
        "{read:?}"
    );

    let report = &reports(&mut plain, &endpoints)[0];
    assert!(drops_from(report, source).auth_failed >= 2, "{report:?}");
    assert_holds(&mut plain, b"colour", b"blue");
    cluster.shutdown();
}

/// A vote request that, taken, would depose any leader: a huge term, a log that looks longer
/// than anyone's, and the transfer flag that skips the leader-lease check.
fn forged_vote() -> Wire {
    Wire::Raft(Message {
        term: FORGED_TERM,
        body: Body::RequestVote {
            pre_vote: false,
            last_index: FORGED_TERM,
            last_term: FORGED_TERM,
            transfer: true,
        },
    })
}

/// An AppendEntries of a huge term that would overwrite the first entry and commit it.
fn forged_append() -> Wire {
    Wire::Raft(Message {
        term: FORGED_TERM,
        body: Body::AppendEntries {
            prev_index: 0,
            prev_term: 0,
            entries: vec![Entry {
                index: 1,
                term: FORGED_TERM,
                kind: EntryKind::Normal,
                data: b"forged".to_vec(),
            }],
            leader_commit: 1,
            read_round: 0,
        },
    })
}

/// Sends [`forged_vote`] and [`forged_append`], sealed by `codec` as `kind`, from `raw` to each
/// of `endpoints`.
fn send_forgeries(codec: &mut Codec, kind: Kind, raw: &UdpSocket, endpoints: &[SocketAddr]) {
    for endpoint in endpoints {
        for forged in [forged_vote(), forged_append()] {
            let datagram = codec.encode(kind, &forged).expect("encodes");
            raw.send_to(datagram, endpoint).expect("sends");
        }
    }
}

/// Asserts that no running node took the forged term.
fn assert_no_forged_term(cluster: &Cluster) {
    for (i, status) in cluster.statuses() {
        assert!(
            status.term < FORGED_TERM,
            "node {} took the forged term: {status:?}",
            i + 1
        );
    }
}

/// After the forgeries: no node took the forged term, before or after the cluster commits a
/// write through `keyed`.
fn assert_unmoved_and_committing(cluster: &Cluster, keyed: &mut Client) {
    assert_no_forged_term(cluster);
    keyed
        .put(b"colour", b"green")
        .expect("the cluster keeps committing");
    assert_holds(keyed, b"colour", b"green");
    assert_no_forged_term(cluster);
}

/// Issue 16: "a datagram sealed with the client key can carry only client requests". A holder of
/// the client key seals Raft messages as client requests: they open, and are then dropped and
/// counted as the wrong kind against their source; no term moves and the cluster keeps
/// committing.
#[test]
fn a_raft_message_sealed_under_the_client_key_is_dropped_as_the_wrong_kind() {
    let (cluster, client_key) = Cluster::start_keyed(3);
    let endpoints = cluster.addresses();
    let mut keyed = client(endpoints.clone(), Some(client_key.clone()));
    keyed.put(b"colour", b"blue").expect("put");

    let cluster_id = cluster.node(0).cluster_id();
    let mut codec = Codec::new(cluster_id, CLIENT_ID, DEFAULT_DATAGRAM_LIMIT)
        .and_then(|codec| codec.with_keys(&Keys::client(client_key), 1))
        .expect("a client's codec");
    let raw = UdpSocket::bind("127.0.0.1:0").expect("a socket");
    let source = raw.local_addr().expect("bound");
    send_forgeries(&mut codec, Kind::Request, &raw, &endpoints);
    // Counted by the consensus thread as it takes each message: wait until both were.
    let drops = wait_for("every node counted both forged messages", || {
        let drops = drops_at(&mut keyed, &endpoints, source);
        drops.iter().all(|d| d.wrong_kind >= 2).then_some(drops)
    });
    for d in &drops {
        // They opened (the client key is the cluster's): not authentication failures.
        assert_eq!(
            (d.wrong_kind, d.auth_failed, d.replayed),
            (2, 0, 0),
            "{drops:?}"
        );
    }
    assert_holds(&mut keyed, b"colour", b"blue");
    assert_unmoved_and_committing(&cluster, &mut keyed);
    cluster.shutdown();
}

/// A holder of the client key forges member datagrams (the client key in the peer slot), from
/// the very address of a member that stopped, so that the peer table lets them through to
/// authentication: they fail it, are counted against that address, and no term moves.
#[test]
fn a_member_datagram_sealed_under_the_client_key_fails_authentication() {
    let (mut cluster, client_key) = Cluster::start_keyed(3);
    let endpoints = cluster.addresses();
    let mut keyed = client(endpoints.clone(), Some(client_key.clone()));
    keyed.put(b"colour", b"blue").expect("put");

    let victim = (cluster.leader() + 1) % 3;
    let (victim_id, victim_address) = cluster.members[victim];
    cluster.stop(victim);
    let raw = UdpSocket::bind(victim_address).expect("the stopped member's address is free");
    let cluster_id = cluster.node((victim + 1) % 3).cluster_id();
    let client_only = Keys::node(
        KeyRing::new(client_key.clone()),
        KeyRing::new(client_key.clone()),
    );
    let mut codec = Codec::new(cluster_id, victim_id, DEFAULT_DATAGRAM_LIMIT)
        .and_then(|codec| codec.with_keys(&client_only, 1))
        .expect("a codec sealing member traffic under the client key");
    let others: Vec<SocketAddr> = endpoints
        .iter()
        .copied()
        .filter(|address| *address != victim_address)
        .collect();
    send_forgeries(&mut codec, Kind::Peer, &raw, &others);
    let drops = wait_for("both live nodes counted both forgeries", || {
        let drops = drops_at(&mut keyed, &others, victim_address);
        drops.iter().all(|d| d.auth_failed >= 2).then_some(drops)
    });
    for d in &drops {
        // Nothing else came from that address since the member stopped, and before it only
        // datagrams sealed under the peer key.
        assert_eq!(
            (d.auth_failed, d.replayed, d.wrong_kind),
            (2, 0, 0),
            "{drops:?}"
        );
    }
    assert_unmoved_and_committing(&cluster, &mut keyed);
    cluster.shutdown();
}

/// Campaigns the impostor must be seen to run (each reaches both other members as one pre-vote
/// request, counted there as an authentication failure).
const CAMPAIGNS: u64 = 10;

/// Issue 16: "a node started with the wrong peer key cannot join or disrupt". A follower stops
/// and an impostor takes its id and address with another peer key (and the right client key),
/// timing out far sooner than the members: its campaigns fail authentication at the others,
/// which keep their term and leader and keep committing, and it never learns an entry. (Its
/// campaigns are pre-votes from an empty log, which the others would refuse anyway: what the
/// keys decide here is the counts, and that the leader's entries never reach it.)
#[test]
fn a_member_started_with_the_wrong_peer_key_neither_disrupts_nor_learns_the_log() {
    let (mut cluster, client_key) = Cluster::start_keyed(3);
    let endpoints = cluster.addresses();
    let mut keyed = client(endpoints.clone(), Some(client_key.clone()));
    for i in 0..5 {
        keyed.put(format!("key {i}").as_bytes(), b"v").expect("put");
    }
    let leader = cluster.leader();
    let replaced = (leader + 1) % 3;
    let staying = 3 - leader - replaced;
    let replaced_address = cluster.members[replaced].1;
    cluster.stop(replaced);
    // The live members' terms and leaders.
    let terms_and_leaders = |cluster: &Cluster| -> Vec<(u64, Option<u64>)> {
        [leader, staying]
            .iter()
            .map(|&i| {
                let status = cluster.node(i).status().expect("running");
                (status.term, status.leader)
            })
            .collect()
    };
    let before = terms_and_leaders(&cluster);
    assert_eq!(before[0].1, Some(cluster.members[leader].0));

    let impostor_dir = tempfile::tempdir().expect("a temporary directory");
    let mut config = cluster.config(replaced, node_keys(&new_key(), &client_key));
    config.data_dir = impostor_dir.path().to_path_buf();
    config.heartbeat_ticks = 2;
    config.election_ticks = (5, 10);
    let impostor = Node::start(config, KvStore::new()).expect("the impostor starts");

    let live = [cluster.members[leader].1, cluster.members[staying].1];
    let mut campaigned = false;
    // Watch the others' term and leader over the impostor's campaigns: bounded by their number
    // (each is counted where it arrives), not by time.
    wait_for(
        "the impostor's campaigns were counted at both live members",
        || {
            let now = terms_and_leaders(&cluster);
            assert_eq!(now, before, "a live member's term or leader moved");
            let impostor_status = impostor.status().expect("the impostor runs");
            campaigned |= matches!(impostor_status.role, Role::PreCandidate | Role::Candidate);
            let counted = reports(&mut keyed, &live)
                .iter()
                .all(|report| drops_from(report, replaced_address).auth_failed >= CAMPAIGNS);
            counted.then_some(())
        },
    );
    assert!(campaigned, "the impostor was never seen campaigning");

    let impostor_status = impostor.status().expect("the impostor runs");
    assert_eq!(
        (impostor_status.last_index, impostor_status.commit_index),
        (0, 0),
        "the impostor learned entries: {impostor_status:?}"
    );
    // It could not open the leader's heartbeats either.
    let impostor_report = keyed
        .status(replaced_address)
        .expect("its client key is right");
    assert!(
        drops_from(&impostor_report, live[0]).auth_failed > 0,
        "{impostor_report:?}"
    );
    keyed
        .put(b"after", b"v")
        .expect("the cluster keeps committing");
    assert_holds(&mut keyed, b"key 4", b"v");
    impostor.shutdown().expect("a clean stop");
    cluster.shutdown();
}

/// Distinct keys the writer cycles through.
const WRITER_KEYS: u64 = 16;

/// A thread doing sequential puts of unique values (`n` to key `n % WRITER_KEYS`), retrying a
/// write until it is acknowledged.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    rekey: crossbeam_channel::Sender<Key>,
    handle: JoinHandle<Written>,
}

/// What the writer did.
struct Written {
    /// Per key, the value of the last acknowledged write.
    last_acked: BTreeMap<Vec<u8>, u64>,
    /// Every error an attempt ended with.
    errors: Vec<String>,
}

fn writer_key(n: u64) -> Vec<u8> {
    format!("key {}", n % WRITER_KEYS).into_bytes()
}

impl Writer {
    fn start(endpoints: Vec<SocketAddr>, key: Key) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let (rekey, rekeyed) = crossbeam_channel::bounded::<Key>(0);
        let handle = {
            let (stop, acked) = (Arc::clone(&stop), Arc::clone(&acked));
            std::thread::spawn(move || {
                let mut client = client(endpoints.clone(), Some(key));
                let mut written = Written {
                    last_acked: BTreeMap::new(),
                    errors: Vec::new(),
                };
                let mut n = 0_u64;
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(key) = rekeyed.try_recv() {
                        client = self::client(endpoints.clone(), Some(key));
                    }
                    n += 1;
                    while !stop.load(Ordering::SeqCst) {
                        match client.put(&writer_key(n), n.to_string().as_bytes()) {
                            Ok(()) => {
                                written.last_acked.insert(writer_key(n), n);
                                acked.fetch_add(1, Ordering::SeqCst);
                                break;
                            }
                            Err(error) => written.errors.push(error.to_string()),
                        }
                    }
                }
                written
            })
        };
        Writer {
            stop,
            acked,
            rekey,
            handle,
        }
    }

    fn acked(&self) -> u64 {
        self.acked.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until `more` writes were acknowledged after this call.
    fn wait_for_writes(&self, more: u64, why: &str) {
        let target = self.acked() + more;
        wait_for(why, || (self.acked() >= target).then_some(()));
    }

    /// Hands the writer a new client key: its next write goes through a new client under it.
    fn rekey(&self, key: Key) {
        self.rekey
            .send_timeout(key, WAIT)
            .expect("the writer takes the key between two writes");
        self.wait_for_writes(3, "writes acknowledged under the new client key");
    }

    fn stop(self) -> Written {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().expect("the writer does not panic")
    }
}

/// Restarts node `i + 1` with `keys` and waits (bounded) until the cluster commits writes again
/// and the node has caught up with them under a leader it knows.
fn restart_under_load(cluster: &mut Cluster, i: usize, keys: Keys, writer: &Writer) {
    cluster.restart(i, keys);
    writer.wait_for_writes(3, "writes acknowledged after a restart");
    let target = cluster
        .statuses()
        .iter()
        .map(|(_, status)| status.commit_index)
        .max()
        .expect("nodes run");
    wait_for("the restarted node catches up under a leader", || {
        let status = cluster.node(i).status().expect("running");
        (status.leader.is_some() && status.commit_index >= target).then_some(())
    });
}

/// Every acknowledged write is readable: each key holds the value of its last acknowledged
/// write, or of a later write (one whose acknowledgement was lost: the outcome was unknown).
fn assert_no_write_lost(client: &mut Client, written: &Written) {
    for (key, acked) in &written.last_acked {
        let value = client.get(key, false).expect("a read");
        let value: u64 = value
            .as_deref()
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .and_then(|text| text.parse().ok())
            .unwrap_or_else(|| panic!("{key:?} holds {value:?}, acknowledged {acked}"));
        assert!(
            value >= *acked,
            "{:?} holds {value}, older than its acknowledged {acked}",
            String::from_utf8_lossy(key)
        );
    }
}

/// The README's rolling procedure for the peer key, under a writer: every node, one at a time,
/// restarted with the new key and the old one as previous; then every node, one at a time, with
/// the new key only.
#[test]
fn a_rolling_rotation_of_the_peer_key_under_writes_loses_no_acknowledged_write() {
    let (old, new, client_key) = (new_key(), new_key(), new_key());
    let mut cluster = Cluster::start(&vec![node_keys(&old, &client_key); 3]);
    cluster.leader();
    let endpoints = cluster.addresses();
    let writer = Writer::start(endpoints.clone(), client_key.clone());
    writer.wait_for_writes(3, "writes acknowledged before the rotation");

    let rotating = Keys::node(
        KeyRing::new(new.clone()).with_previous(Some(old)),
        KeyRing::new(client_key.clone()),
    );
    for i in 0..3 {
        restart_under_load(&mut cluster, i, rotating.clone(), &writer);
    }
    for i in 0..3 {
        restart_under_load(&mut cluster, i, node_keys(&new, &client_key), &writer);
    }
    // Every node now holds the new key alone and seals under it: nothing can fail
    // authentication any more. What failed during the rotation, each node's count since its
    // last restart, was member traffic at the changeover: a node that restarted (in the first
    // round) sealing to a peer still on the old key alone before hearing from it, or a peer that
    // last heard a node under the old key sealing to it under that key after it restarted with
    // the new key alone (in the second), until the restarted one's next datagram (at the latest
    // its campaign, one election timeout later) says which key it holds. A few datagrams, or
    // none, per restart.
    let mut probe = client(endpoints.clone(), Some(client_key.clone()));
    let after_rotation = reports(&mut probe, &endpoints);
    let members = cluster.addresses();
    for report in &after_rotation {
        for source in &report.suspicious_sources {
            assert!(
                members.contains(&source.address) && source.wrong_kind == 0,
                "node {}: {source:?} is not a member's changeover",
                report.id
            );
        }
    }
    writer.wait_for_writes(10, "writes acknowledged after the rotation");
    let written = writer.stop();
    let settled = reports(&mut probe, &endpoints);
    for (before, after) in after_rotation.iter().zip(&settled) {
        assert_eq!(
            after.datagrams_auth_failed, before.datagrams_auth_failed,
            "node {} failed authentication after the rotation",
            after.id
        );
    }
    assert_eq!(written.errors, Vec::<String>::new());
    assert_no_write_lost(&mut probe, &written);
    cluster.shutdown();
}

/// The same for the client key: every node, one at a time, restarted with the new client key
/// and the old one as previous; the clients moved to the new key; then every node, one at a
/// time, with the new client key only.
#[test]
fn a_rolling_rotation_of_the_client_key_under_writes_loses_no_acknowledged_write() {
    let (peer, old, new) = (new_key(), new_key(), new_key());
    let mut cluster = Cluster::start(&vec![node_keys(&peer, &old); 3]);
    cluster.leader();
    let endpoints = cluster.addresses();
    let writer = Writer::start(endpoints.clone(), old.clone());
    writer.wait_for_writes(3, "writes acknowledged before the rotation");

    let rotating = Keys::node(
        KeyRing::new(peer.clone()),
        KeyRing::new(new.clone()).with_previous(Some(old)),
    );
    for i in 0..3 {
        restart_under_load(&mut cluster, i, rotating.clone(), &writer);
    }
    writer.rekey(new.clone());
    for i in 0..3 {
        restart_under_load(&mut cluster, i, node_keys(&peer, &new), &writer);
    }
    let written = writer.stop();
    assert_eq!(written.errors, Vec::<String>::new());
    let mut reader = client(endpoints.clone(), Some(new));
    assert_no_write_lost(&mut reader, &written);
    // Each count is since the node's last restart.
    assert_no_auth_failures(
        &mut reader,
        &endpoints,
        "every client request was sealed under a key its node held, and every node holds the \
         peer key",
    );
    cluster.shutdown();
}

/// A follower forwards a client's write to the leader, which answers the client directly
/// (issue 16's rotation must not break it). While the client key is rotated, a leader that
/// never heard from the client answers under both keys, so a client still on the previous key
/// and one on the new key both complete writes through a follower, the only node they know.
/// (Under the current key alone, the client on the previous key never read an answer.)
#[test]
fn clients_on_either_client_key_complete_writes_a_follower_forwards_during_a_rotation() {
    let (peer, old, new) = (new_key(), new_key(), new_key());
    let rotating = Keys::node(
        KeyRing::new(peer),
        KeyRing::new(new.clone()).with_previous(Some(old.clone())),
    );
    let cluster = Cluster::start(&vec![rotating; 3]);
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    let leader_id = cluster.members[leader].0;
    wait_for("the follower follows the leader", || {
        let status = cluster.node(follower).status().ok()?;
        (status.leader == Some(leader_id)).then_some(())
    });
    let only_the_follower = vec![cluster.members[follower].1];
    for (which, key) in [("previous", old), ("new", new)] {
        let mut client = client(only_the_follower.clone(), Some(key));
        client
            .put(which.as_bytes(), b"written")
            .unwrap_or_else(|error| panic!("a client on the {which} key: {error}"));
        assert_holds(&mut client, which.as_bytes(), b"written");
    }
    cluster.shutdown();
}
