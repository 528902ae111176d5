//! A commit with no Raft in it: the least software that can make one client's write durable on
//! two of three nodes sharing this machine's disk and CPUs, to tell what the machine allows from
//! what a node adds.
//!
//! Three nodes and a client on loopback UDP. The client sends a request and waits for the
//! answer; the leader sends it on to both followers, makes its own append durable, and answers
//! once its own sync and one follower's acknowledgement are in (two of three); each follower
//! makes the append durable, then acknowledges. Per round, the client's wall time: two round
//! trips and the disk share as a commit arranges it (the leader's sync first, the followers'
//! half a round trip later). Two layouts of the same work:
//!
//! - [`Layout::Bare`]: one blocking thread per node, no hand-offs inside a node — the least
//!   software there can be;
//! - [`Layout::Handoffs`]: Balsa's threads (ARCHITECTURE.md, "The path of a write"): per node a
//!   receiving thread passing datagrams over a crossbeam channel to a consensus thread, which
//!   hands the append to a disk thread; a follower's disk thread sends the acknowledgement after
//!   its sync, the leader's reports back to its consensus thread. Four hand-offs on the commit
//!   path, and nothing else of Raft: what the thread layout costs by itself.
//!
//! Requests carry their round in their first 8 bytes; acknowledgements and answers are those 8
//! bytes. The slower follower's acknowledgement of a round arrives after the answer and is
//! skipped. An empty datagram stops a node.

use std::{
    io,
    net::{SocketAddr, UdpSocket},
    path::Path,
    time::Duration,
};

use balsa_wal::WritePath;
use crossbeam_channel::{Receiver, Sender, unbounded};
use hdrhistogram::Histogram;

use crate::{
    Step, WARMUP,
    concurrent::DirectBlockFile,
    floor::{FILL, FloorFile},
    sample,
};

/// How a node's work is spread over threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One thread per node.
    Bare,
    /// Receiving, consensus and disk threads per node, as Balsa has.
    Handoffs,
}

/// A round's id, the first 8 bytes of its request.
type Round = [u8; 8];

/// A bare commit whose nodes append 64 bytes to their own preallocated file in `dir` and make
/// them durable as `path` does: `pwrite` + `fdatasync` ([`FloorFile`]; also the nearest to
/// `Mmap`), or one `O_DIRECT | O_DSYNC` write of the blocks holding the append
/// ([`DirectBlockFile`]). Nanoseconds per round, after [`WARMUP`] untimed rounds.
///
/// # Errors
/// Any socket or file error, or a datagram not answered within 1 s; `Unsupported` for `Direct`
/// where the WAL does not use `O_DIRECT`.
pub fn measure(
    dir: &Path,
    path: WritePath,
    layout: Layout,
    datagram_len: usize,
    iterations: usize,
) -> io::Result<Histogram<u64>> {
    let name = |k: usize| dir.join(format!("bare-commit-{path:?}-{k}.wal"));
    match path {
        WritePath::Pwrite | WritePath::Mmap => {
            let files = (0..3)
                .map(|k| FloorFile::create(&name(k), 64))
                .collect::<io::Result<Vec<_>>>()?;
            measure_on_files(files, FloorFile::finish, layout, datagram_len, iterations)
        }
        WritePath::Direct => {
            let files = (0..3)
                .map(|k| DirectBlockFile::create(&name(k), 64))
                .collect::<io::Result<Vec<_>>>()?;
            measure_on_files(
                files,
                DirectBlockFile::finish,
                layout,
                datagram_len,
                iterations,
            )
        }
    }
}

/// [`measure_with`] on three nodes' files, each checked and removed with `finish` afterwards.
fn measure_on_files<F: Step + Send>(
    mut files: Vec<F>,
    finish: fn(F) -> io::Result<()>,
    layout: Layout,
    datagram_len: usize,
    iterations: usize,
) -> io::Result<Histogram<u64>> {
    let [leader, first, second] = &mut files[..] else {
        unreachable!("a file per node: three");
    };
    let hist = measure_with([leader, first, second], layout, datagram_len, iterations)?;
    for file in files {
        finish(file)?;
    }
    Ok(hist)
}

/// A bare commit over three nodes whose durable append is `nodes[k].step()` (the leader is
/// node 0), the client's requests `datagram_len` bytes long (at least 8).
///
/// # Errors
/// Any socket error or error of a step, or a datagram not answered within 1 s.
pub fn measure_with(
    nodes: [&mut (dyn Step + Send); 3],
    layout: Layout,
    datagram_len: usize,
    iterations: usize,
) -> io::Result<Histogram<u64>> {
    let [leader_node, first_node, second_node] = nodes;
    let (client, _) = bind()?;
    let (leader, leader_address) = bind()?;
    let (first, first_address) = bind()?;
    let (second, second_address) = bind()?;
    let followers = [first_address, second_address];
    let mut request = vec![FILL; datagram_len.max(8)];
    std::thread::scope(|scope| -> io::Result<Histogram<u64>> {
        let node_threads = match layout {
            Layout::Bare => [
                scope.spawn(|| bare::lead(&leader, followers, leader_node)),
                scope.spawn(|| bare::follow(&first, first_node)),
                scope.spawn(|| bare::follow(&second, second_node)),
            ],
            Layout::Handoffs => [
                scope.spawn(|| handoffs::lead(&leader, followers, leader_node)),
                scope.spawn(|| handoffs::follow(&first, first_node)),
                scope.spawn(|| handoffs::follow(&second, second_node)),
            ],
        };
        let mut round = 0_u64;
        let result = sample(WARMUP, iterations, || {
            round += 1;
            request[..8].copy_from_slice(&round.to_le_bytes());
            client.send_to(&request, leader_address)?;
            let mut answer: Round = [0; 8];
            let len = client.recv(&mut answer)?;
            if len == 8 && answer == round.to_le_bytes() {
                Ok(())
            } else {
                Err(io::Error::other("an answer to another round"))
            }
        });
        client.send_to(&[], leader_address)?;
        for node in node_threads {
            node.join()
                .map_err(|_| io::Error::other("a node thread panicked"))??;
        }
        result
    })
}

fn bind() -> io::Result<(UdpSocket, SocketAddr)> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_secs(1)))?;
    let address = socket.local_addr()?;
    Ok((socket, address))
}

/// The round a request carries; `None` for a datagram too short to be one.
fn round_of(request: &[u8]) -> Option<Round> {
    request.get(..8)?.try_into().ok()
}

mod bare {
    use super::{Round, SocketAddr, Step, UdpSocket, io, round_of};

    /// A follower: every datagram is one write to make durable, then acknowledged.
    pub(super) fn follow(socket: &UdpSocket, node: &mut (dyn Step + Send)) -> io::Result<()> {
        let mut buffer = vec![0_u8; 65_536];
        loop {
            let (len, from) = socket.recv_from(&mut buffer)?;
            let Some(round) = round_of(&buffer[..len]) else {
                return Ok(());
            };
            node.step()?;
            socket.send_to(&round, from)?;
        }
    }

    /// The leader: per request, on to the followers, its own sync, then the first
    /// acknowledgement of this round; only the client's datagrams are requests.
    pub(super) fn lead(
        socket: &UdpSocket,
        followers: [SocketAddr; 2],
        node: &mut (dyn Step + Send),
    ) -> io::Result<()> {
        let mut buffer = vec![0_u8; 65_536];
        loop {
            let (len, client) = socket.recv_from(&mut buffer)?;
            if followers.contains(&client) {
                continue; // the slower follower's acknowledgement of an earlier round
            }
            let Some(round) = round_of(&buffer[..len]) else {
                for follower in followers {
                    socket.send_to(&[], follower)?;
                }
                return Ok(());
            };
            for follower in followers {
                socket.send_to(&buffer[..len], follower)?;
            }
            node.step()?;
            let mut ack: Round = [0; 8];
            while socket.recv(&mut ack)? != 8 || ack != round {
                // a late acknowledgement of an earlier round
            }
            socket.send_to(&round, client)?;
        }
    }
}

mod handoffs {
    use super::{Receiver, Round, Sender, SocketAddr, Step, UdpSocket, io, round_of, unbounded};

    /// What a node's consensus thread is told.
    enum Event {
        /// A request from the client (at the leader) or the leader (at a follower).
        Request(Vec<u8>, SocketAddr),
        /// A follower's acknowledgement (at the leader).
        Acknowledged(Round),
        /// The node's own append of this round is durable (at the leader).
        Persisted(Round),
        /// The receiving thread ended.
        Stop,
    }

    /// The round the leader's consensus thread is committing, and what of it is in.
    struct InFlight {
        round: Round,
        client: SocketAddr,
        persisted: bool,
        acknowledged: bool,
    }

    fn stopped<T>(_: T) -> io::Error {
        io::Error::other("a thread of the node stopped")
    }

    /// A node's receiving thread: every datagram to the consensus thread until an empty one;
    /// datagrams from `peers` are acknowledgements, any other a request. Whatever ends it, the
    /// consensus thread is told to stop.
    fn receive(
        socket: &UdpSocket,
        peers: &[SocketAddr],
        consensus: &Sender<Event>,
    ) -> io::Result<()> {
        let mut buffer = vec![0_u8; 65_536];
        let result = loop {
            let (len, from) = match socket.recv_from(&mut buffer) {
                Ok(received) => received,
                Err(error) => break Err(error),
            };
            let event = match round_of(&buffer[..len]) {
                None => break Ok(()),
                Some(round) if peers.contains(&from) => Event::Acknowledged(round),
                Some(_) => Event::Request(buffer[..len].to_vec(), from),
            };
            if consensus.send(event).is_err() {
                break Err(stopped(()));
            }
        };
        let _ = consensus.send(Event::Stop); // it may have stopped already
        result
    }

    /// A node's disk thread: each round's append made durable, then reported with `done`.
    fn persist(
        rounds: &Receiver<(Round, SocketAddr)>,
        node: &mut (dyn Step + Send),
        mut done: impl FnMut(Round, SocketAddr) -> io::Result<()>,
    ) -> io::Result<()> {
        for (round, to) in rounds {
            node.step()?;
            done(round, to)?;
        }
        Ok(())
    }

    /// A follower: receive → consensus → disk; the disk thread acknowledges after its sync (as
    /// Balsa's WAL thread sends the messages its sync released).
    pub(super) fn follow(socket: &UdpSocket, node: &mut (dyn Step + Send)) -> io::Result<()> {
        let (to_consensus, events) = unbounded();
        let (to_disk, rounds) = unbounded();
        std::thread::scope(|scope| {
            let consensus = scope.spawn(move || {
                for event in events {
                    match event {
                        Event::Request(request, leader) => {
                            let round = round_of(&request).expect("the receiver checked it");
                            if to_disk.send((round, leader)).is_err() {
                                return;
                            }
                        }
                        Event::Stop => return,
                        Event::Acknowledged(_) | Event::Persisted(_) => {}
                    }
                }
            });
            let disk = scope.spawn(move || {
                persist(&rounds, node, |round, leader| {
                    socket.send_to(&round, leader).map(drop)
                })
            });
            let received = receive(socket, &[], &to_consensus);
            consensus.join().map_err(stopped)?;
            disk.join().map_err(stopped)??;
            received
        })
    }

    /// The leader: receive → consensus; the consensus thread sends each request on to the
    /// followers, then hands its own append to the disk thread, and answers once the round is
    /// durable here and acknowledged by a follower.
    pub(super) fn lead(
        socket: &UdpSocket,
        followers: [SocketAddr; 2],
        node: &mut (dyn Step + Send),
    ) -> io::Result<()> {
        let (to_consensus, events) = unbounded();
        let (to_disk, rounds) = unbounded();
        std::thread::scope(|scope| {
            let persisted = to_consensus.clone();
            let disk = scope.spawn(move || {
                persist(&rounds, node, |round, _| {
                    persisted.send(Event::Persisted(round)).map_err(stopped)
                })
            });
            let consensus = scope.spawn(move || -> io::Result<()> {
                let mut in_flight: Option<InFlight> = None;
                for event in &events {
                    match event {
                        Event::Request(request, client) => {
                            for follower in followers {
                                socket.send_to(&request, follower)?;
                            }
                            let round = round_of(&request).expect("the receiver checked it");
                            to_disk.send((round, client)).map_err(stopped)?;
                            in_flight = Some(InFlight {
                                round,
                                client,
                                persisted: false,
                                acknowledged: false,
                            });
                        }
                        Event::Acknowledged(round) => {
                            if let Some(commit) = in_flight.as_mut().filter(|c| c.round == round) {
                                commit.acknowledged = true;
                            }
                        }
                        Event::Persisted(round) => {
                            if let Some(commit) = in_flight.as_mut().filter(|c| c.round == round) {
                                commit.persisted = true;
                            }
                        }
                        Event::Stop => break,
                    }
                    if let Some(commit) = in_flight.take_if(|c| c.persisted && c.acknowledged) {
                        socket.send_to(&commit.round, commit.client)?;
                    }
                }
                Ok(())
            });
            let received = receive(socket, &followers, &to_consensus);
            for follower in followers {
                socket.send_to(&[], follower)?;
            }
            consensus.join().map_err(stopped)??;
            disk.join().map_err(stopped)??;
            received
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_layout_times_each_round_once_and_cleans_up() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for layout in [Layout::Bare, Layout::Handoffs] {
            let hist = measure(dir.path(), WritePath::Pwrite, layout, 160, 50)
                .expect("every round answered");
            assert_eq!(hist.len(), 50, "{layout:?}: one sample per measured round");
            match measure(dir.path(), WritePath::Direct, layout, 160, 50) {
                Ok(hist) => assert_eq!(hist.len(), 50, "{layout:?}: one sample per round"),
                Err(error) => assert_eq!(error.kind(), io::ErrorKind::Unsupported, "{error}"),
            }
        }
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("the directory is readable")
            .collect();
        assert!(left.is_empty(), "the nodes' files are removed: {left:?}");
    }
}
