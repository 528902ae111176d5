//! Multi-process failure tests: real `balsa serve` processes on loopback, killed with SIGKILL and
//! restarted. What they check is the service's one promise: nothing acknowledged is ever lost,
//! and a retried request is applied once.

#![allow(
    clippy::disallowed_methods,
    reason = "the tests drive real processes against wall-clock deadlines"
)]

mod common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use balsa::client::{Client, ClientOptions};
use balsa::keyfile::{Key, Keys};
use balsa::kv::{Answer, Command, Op};
use balsa::net::{Codec, Kind};
use balsa::runtime::wire::{Request, RequestBody, ResponseBody, Wire};
use common::{Cluster, ELECTION_TIMEOUT, wait_until};

/// Writes unique keys under the client key `key` until told to stop; records the ones
/// acknowledged.
fn spawn_writer(
    endpoints: Vec<SocketAddr>,
    key: Option<Key>,
    prefix: &'static str,
    acknowledged: Arc<Mutex<BTreeMap<String, String>>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let options = ClientOptions {
            timeout: Duration::from_secs(1),
            key,
            ..ClientOptions::default()
        };
        let mut client = Client::new(endpoints, options).expect("a client");
        let mut attempts = 0;
        while !stop.load(Ordering::Relaxed) {
            attempts += 1;
            let key = format!("{prefix}-{attempts}");
            let value = format!("value-{attempts}");
            // A timeout leaves the outcome unknown: such a write is neither counted nor expected.
            if client.put(key.as_bytes(), value.as_bytes()).is_ok() {
                acknowledged
                    .lock()
                    .expect("not poisoned")
                    .insert(key, value);
            }
        }
        attempts
    })
}

fn acked_count(acknowledged: &Mutex<BTreeMap<String, String>>) -> usize {
    acknowledged.lock().expect("not poisoned").len()
}

/// Every acknowledged write reads back, linearizably, with its value.
fn assert_all_present(cluster: &Cluster, acknowledged: &BTreeMap<String, String>) {
    let mut client = cluster.client();
    for (key, value) in acknowledged {
        let got = client
            .get(key.as_bytes(), false)
            .expect("a linearizable read");
        assert_eq!(
            got.as_deref(),
            Some(value.as_bytes()),
            "acknowledged write {key} lost"
        );
    }
}

/// kill -9 the leader: a new leader is elected, writes continue; the old leader restarts and
/// catches up.
#[test]
fn killing_the_leader_elects_another_and_the_old_one_catches_up_after_restart() {
    let mut cluster = Cluster::start(3);
    let (old_leader, old_term) = cluster.wait_for_leader(ELECTION_TIMEOUT);
    let acknowledged = Arc::new(Mutex::new(BTreeMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(
        cluster.endpoints(),
        cluster.client_key(),
        "w",
        Arc::clone(&acknowledged),
        Arc::clone(&stop),
    );
    assert!(
        wait_until(ELECTION_TIMEOUT, || (acked_count(&acknowledged) >= 20)
            .then_some(()))
        .is_some()
    );

    cluster.kill(old_leader);
    let (new_leader, new_term) = cluster.wait_for_leader_after(old_term, ELECTION_TIMEOUT);
    assert_ne!(new_leader, old_leader);
    assert!(new_term > old_term);
    let before = acked_count(&acknowledged);
    let more = wait_until(ELECTION_TIMEOUT, || {
        (acked_count(&acknowledged) >= before + 20).then_some(())
    });
    assert!(
        more.is_some(),
        "writes did not continue under the new leader"
    );

    cluster.start_node(old_leader);
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("the writer thread");
    let acknowledged = acknowledged.lock().expect("not poisoned").clone();
    assert_all_present(&cluster, &acknowledged);
    // The old leader catches up: its state machine reaches the leader's commit index.
    let target = cluster.statuses()[usize::try_from(new_leader - 1).unwrap()]
        .as_ref()
        .map(|status| status.commit_index)
        .expect("the new leader answers");
    let caught_up = wait_until(ELECTION_TIMEOUT, || {
        let status = cluster.statuses()[usize::try_from(old_leader - 1).unwrap()].clone()?;
        (status.applied_index >= target).then_some(status)
    });
    assert!(
        caught_up.is_some(),
        "the restarted old leader did not catch up to {target}"
    );
    // And it serves every write from its own state.
    let mut local =
        Client::new(vec![cluster.address(old_leader)], cluster.client_options()).expect("a client");
    for (key, value) in &acknowledged {
        let got = local.get(key.as_bytes(), true).expect("a stale read");
        assert_eq!(
            got.as_deref(),
            Some(value.as_bytes()),
            "{key} on the restarted node"
        );
    }
}

/// Kill every node and restart them, 20 cycles under a write load: every acknowledged write is
/// present afterwards, each cycle's leader leads in a term above the last cycle's, and no node
/// that led a term comes back in an older one.
///
/// Only a leader's term is compared across restarts: it was made durable before the node asked
/// for votes. A term a follower has just learned is in memory until its persist completes, and a
/// node killed in between restarts in its older term, which is harmless because it sent nothing
/// in the newer one (the durability barrier).
#[test]
fn twenty_crash_restart_cycles_of_the_whole_cluster_lose_no_acknowledged_write() {
    const CYCLES: usize = 20;
    let mut cluster = Cluster::start(3);
    let acknowledged = Arc::new(Mutex::new(BTreeMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(
        cluster.endpoints(),
        cluster.client_key(),
        "c",
        Arc::clone(&acknowledged),
        Arc::clone(&stop),
    );
    let mut highest_led_term: BTreeMap<u64, u64> = BTreeMap::new();
    let mut last_cycle_term = 0;
    for cycle in 0..CYCLES {
        let (leader, term) = cluster.wait_for_leader(ELECTION_TIMEOUT);
        assert!(
            term > last_cycle_term,
            "cycle {cycle}: node {leader} leads in term {term}, not above the last cycle's {last_cycle_term}"
        );
        last_cycle_term = term;
        let before = acked_count(&acknowledged);
        let progressed = wait_until(ELECTION_TIMEOUT, || {
            (acked_count(&acknowledged) >= before + 5).then_some(())
        });
        assert!(
            progressed.is_some(),
            "cycle {cycle}: no write acknowledged in term {term}"
        );
        for (position, status) in cluster.statuses().into_iter().enumerate() {
            let Some(status) = status else { continue };
            let id = position as u64 + 1;
            let led = highest_led_term.entry(id).or_insert(0);
            assert!(
                status.term >= *led,
                "cycle {cycle}: node {id} led term {led} but came back in term {}",
                status.term
            );
            if status.role == "leader" {
                *led = status.term;
                last_cycle_term = last_cycle_term.max(status.term);
            }
        }
        for id in cluster.ids() {
            cluster.kill(id);
        }
        for id in cluster.ids() {
            cluster.start_node(id);
        }
    }
    cluster.wait_for_leader(ELECTION_TIMEOUT);
    stop.store(true, Ordering::Relaxed);
    let attempts = writer.join().expect("the writer thread");
    let acknowledged = acknowledged.lock().expect("not poisoned").clone();
    assert!(
        acknowledged.len() >= CYCLES * 5,
        "{} acknowledged of {attempts}",
        acknowledged.len()
    );
    assert_all_present(&cluster, &acknowledged);
}

/// Sends one raw request carrying `command`, sealed under the client key `key`, and returns the
/// answer the leader applied. Every attempt sends the very same datagram: a replay, to the node.
fn send_command(
    socket: &UdpSocket,
    to: SocketAddr,
    key: &Key,
    id: u64,
    command: &Command,
) -> Answer {
    // Cluster id 0: a client that does not know its cluster's id (any node accepts it).
    let mut codec = Codec::new(0, 0, 65_000)
        .and_then(|codec| {
            codec.with_keys(&Keys::client(key.clone()), balsa::net::wall_clock_micros())
        })
        .expect("a codec");
    let request = Wire::Request(Request {
        id,
        body: RequestBody::Command {
            data: command.encode(),
        },
    });
    let datagram = codec
        .encode(Kind::Request, &request)
        .expect("fits")
        .to_vec();
    let mut buffer = vec![0u8; 65_536];
    for _attempt in 0..50 {
        socket.send_to(&datagram, to).expect("send");
        while let Ok((len, _)) = socket.recv_from(&mut buffer) {
            // Attempts answered in one turn of the leader come together, as `Responses`.
            let responses = match codec.decode::<Wire>(&mut buffer[..len]) {
                Ok((_, Wire::Response(one))) => vec![one],
                Ok((_, Wire::Responses(all))) => all,
                _ => continue,
            };
            if let Some(response) = responses.into_iter().find(|r| r.id == id) {
                match response.body {
                    ResponseBody::Applied { data } => {
                        return Answer::decode(&data).expect("an answer");
                    }
                    other => panic!("request {id}: {other:?}"),
                }
            }
        }
    }
    panic!("request {id} got no answer");
}

/// Raft thesis §6.3: a client's retry of the same (client id, seq) is applied once, and gets
/// the first answer; an older seq, retried after a newer one, is not applied at all.
#[test]
fn a_retried_request_is_applied_once() {
    let cluster = Cluster::start(3);
    let key = cluster.client_key().expect("the cluster runs with keys");
    let (leader, _) = cluster.wait_for_leader(ELECTION_TIMEOUT);
    let to = cluster.address(leader);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let client_id = 0xB415A;
    let put = |seq: u64, value: &[u8]| Command {
        client_id,
        seq,
        op: Op::Put {
            key: b"k".to_vec(),
            value: value.to_vec(),
        },
    };
    assert_eq!(
        send_command(&socket, to, &key, 1, &put(1, b"one")),
        Answer::Ok
    );
    assert_eq!(
        send_command(&socket, to, &key, 2, &put(2, b"two")),
        Answer::Ok
    );
    // The retry of seq 1 comes after seq 2: applying it would bring "one" back.
    let stale = send_command(&socket, to, &key, 3, &put(1, b"one"));
    assert!(matches!(stale, Answer::StaleRequest { .. }), "{stale:?}");
    // A compare-and-swap retried: the first answer again, not a mismatch against itself.
    let cas = Command {
        client_id,
        seq: 3,
        op: Op::Cas {
            key: b"c".to_vec(),
            expected: None,
            new: b"x".to_vec(),
        },
    };
    assert_eq!(send_command(&socket, to, &key, 4, &cas), Answer::Ok);
    assert_eq!(send_command(&socket, to, &key, 5, &cas), Answer::Ok);
    let mut client = cluster.client();
    assert_eq!(
        client.get(b"k", false).expect("read").as_deref(),
        Some(b"two".as_slice())
    );
    assert_eq!(
        client.get(b"c", false).expect("read").as_deref(),
        Some(b"x".as_slice())
    );
}
