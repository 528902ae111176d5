//! `balsa-net`'s codec and transport, against the floors of the same run:
//!
//! 1. encode and decode of an AppendEntries-like message (prev index/term, commit, entries of
//!    index, term and 100 data bytes) with 1, 16 and 256 entries: ns per message and MB/s of
//!    datagram, next to the floor, a `memcpy` of the same datagram's bytes. Floor, encode and
//!    decode are measured in alternating batches.
//! 2. a UDP echo round trip over loopback of the 1-entry message's datagram, three ways measured
//!    together, one round trip of each per round (`balsa_benches::interleave`):
//!    - the floor: a plain blocking `std::net::UdpSocket` client and an echo thread;
//!    - `balsa-net` through the event loop: both sides send with `Outbox::send_via_loop`;
//!    - `balsa-net` sending directly: both sides send with `Outbox::send_direct`.
//!
//!    In both transport cases a message goes client thread → server's net thread → server's
//!    inbox → echo thread (as a consensus thread would) → client's net thread → client's inbox.
//!
//! Run with `cargo bench -p balsa-benches --bench codec`.
#![allow(
    clippy::print_stdout,
    clippy::disallowed_methods,
    reason = "benchmarks print their figures, read the clock and start echo threads"
)]

use std::hint::black_box;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use balsa_benches::{Step, WARMUP, interleave, new_histogram, report};
use balsa_net::{Codec, Config, DEFAULT_DATAGRAM_LIMIT, Destination, Inbound, Kind, Outbox};
use balsa_net::{SendPath, Transport};
use crossbeam_channel::Receiver;
use hdrhistogram::Histogram;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Measured round trips per echo case, after [`WARMUP`] untimed ones.
const ROUND_TRIPS: usize = 20_000;
/// Measured batches per codec case; each batch runs long enough to time well.
const BATCHES: usize = 2_000;
/// The time one codec batch aims at.
const BATCH_TARGET: Duration = Duration::from_micros(50);
/// How long a round trip may take before the bench gives up on a lost datagram.
const LOST: Duration = Duration::from_secs(5);
const CLUSTER: u64 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Entry {
    index: u64,
    term: u64,
    data: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct AppendEntries {
    term: u64,
    leader: u64,
    prev_index: u64,
    prev_term: u64,
    commit: u64,
    entries: Vec<Entry>,
}

/// The same message with its data marked `#[serde(with = "balsa_net::bytes")]`: the same bytes on
/// the wire, decoded as byte strings instead of sequences of `u8`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct MarkedEntry {
    index: u64,
    term: u64,
    #[serde(with = "balsa_net::bytes")]
    data: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct MarkedAppendEntries {
    term: u64,
    leader: u64,
    prev_index: u64,
    prev_term: u64,
    commit: u64,
    entries: Vec<MarkedEntry>,
}

impl From<AppendEntries> for MarkedAppendEntries {
    fn from(msg: AppendEntries) -> Self {
        MarkedAppendEntries {
            term: msg.term,
            leader: msg.leader,
            prev_index: msg.prev_index,
            prev_term: msg.prev_term,
            commit: msg.commit,
            entries: msg
                .entries
                .into_iter()
                .map(|Entry { index, term, data }| MarkedEntry { index, term, data })
                .collect(),
        }
    }
}

/// `entries` entries of 100 B at realistic positions (indexes around a million, term 7).
fn append_entries(entries: u64) -> AppendEntries {
    let first = 1_000_000;
    AppendEntries {
        term: 7,
        leader: 1,
        prev_index: first - 1,
        prev_term: 7,
        commit: first - 1,
        entries: (first..first + entries)
            .map(|index| Entry {
                index,
                term: 7,
                data: vec![0xA5; 100],
            })
            .collect(),
    }
}

fn main() -> io::Result<()> {
    let started = Instant::now();
    println!(
        "codec: {BATCHES} batches of ~{BATCH_TARGET:?} per codec case; \
         {WARMUP} warmup + {ROUND_TRIPS} round trips per echo case"
    );
    println!("machine before measuring: {}", report::machine_load());

    println!(
        "\n1. encode / decode, AppendEntries with 100 B entries, p50 per message \
         (floor: memcpy of the datagram; MB = 10^6 B of datagram)"
    );
    println!(
        "{:<22} {:>7} {:>9} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9}",
        "data field",
        "entries",
        "datagram",
        "memcpy ns",
        "encode ns",
        "decode ns",
        "enc MB/s",
        "dec MB/s",
        "dec/floor"
    );
    for entries in [1, 16, 256] {
        codec_row("Vec<u8>", entries, &append_entries(entries))?;
        let marked = MarkedAppendEntries::from(append_entries(entries));
        codec_row("Vec<u8> + net::bytes", entries, &marked)?;
    }

    println!(
        "\n2. UDP echo round trip over loopback, 1-entry AppendEntries, measured together \
         (ratio: p50 / std echo p50)"
    );
    let msg = append_entries(1);
    let mut std_echo = StdEcho::start(&msg)?;
    let mut via_loop = TransportEcho::start(SendPath::EventLoop, &msg)?;
    let mut direct = TransportEcho::start(SendPath::Direct, &msg)?;
    println!("datagram {} bytes", std_echo.payload.len());
    let hists = interleave(
        WARMUP,
        ROUND_TRIPS,
        &mut [&mut std_echo, &mut via_loop, &mut direct],
    )?;
    let floor_p50 = hists[0].value_at_quantile(0.5);
    report::header();
    report::row("std UdpSocket blocking echo (floor)", &hists[0], floor_p50);
    report::row("balsa-net, through the event loop", &hists[1], floor_p50);
    report::row("balsa-net, direct send", &hists[2], floor_p50);
    let p50 = |i: usize| hists[i].value_at_quantile(0.5) as f64;
    println!(
        "event loop / direct send, p50: {:.2}   (> 1: direct send is faster)",
        p50(1) / p50(2)
    );
    std_echo.stop()?;
    via_loop.stop()?;
    direct.stop()?;
    println!("total bench time {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Prints one row of part 1.
fn codec_row<M>(field: &str, entries: u64, msg: &M) -> io::Result<()>
where
    M: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let mut codec = Codec::new(CLUSTER, 1, DEFAULT_DATAGRAM_LIMIT).map_err(io::Error::other)?;
    let datagram = codec
        .encode(Kind::Peer, msg)
        .map_err(io::Error::other)?
        .to_vec();
    let decoded = codec
        .decode::<M>(&mut datagram.clone())
        .map_err(|reason| io::Error::other(format!("the bench's own datagram: {reason}")))?;
    assert_eq!(&decoded.1, msg, "round trip");

    let mut copy = vec![0_u8; datagram.len()];
    let mut floor = || {
        copy.copy_from_slice(black_box(&datagram));
        black_box(&copy);
    };
    let mut encode = || {
        let bytes = codec.encode(Kind::Peer, black_box(msg));
        black_box(bytes.map(<[u8]>::len).ok());
    };
    let decoder = Codec::new(CLUSTER, 2, DEFAULT_DATAGRAM_LIMIT).map_err(io::Error::other)?;
    // A plaintext datagram is decoded without being changed, so the same one serves every
    // iteration.
    let mut received = datagram.clone();
    let mut decode = || {
        black_box(decoder.decode::<M>(black_box(&mut received)).ok());
    };
    let [floor, encode, decode] = per_message([&mut floor, &mut encode, &mut decode]);
    let ns = |hist: &Histogram<u64>| hist.value_at_quantile(0.5) as f64 / 1e3; // stored in ps
    let mb_per_s = |hist: &Histogram<u64>| datagram.len() as f64 / ns(hist) * 1e3;
    println!(
        "{field:<22} {:>7} {:>7} B {:>10.1} {:>10.1} {:>10.1} {:>9.0} {:>9.0} {:>8.1}x",
        entries,
        datagram.len(),
        ns(&floor),
        ns(&encode),
        ns(&decode),
        mb_per_s(&encode),
        mb_per_s(&decode),
        ns(&decode) / ns(&floor).max(1e-3),
    );
    Ok(())
}

/// Times the operations in alternating batches; histograms of picoseconds per operation (so
/// that sub-nanosecond floors still show).
fn per_message<const N: usize>(ops: [&mut dyn FnMut(); N]) -> [Histogram<u64>; N] {
    let batch_sizes = ops.map(|op| {
        let mut size = 1_u64;
        loop {
            let start = Instant::now();
            for _ in 0..size {
                op();
            }
            if start.elapsed() >= BATCH_TARGET || size >= 1 << 24 {
                break (op, size);
            }
            size *= 2;
        }
    });
    let mut ops = batch_sizes;
    let mut hists = [(); N].map(|()| new_histogram());
    for _ in 0..BATCHES {
        for ((op, size), hist) in ops.iter_mut().zip(&mut hists) {
            let start = Instant::now();
            for _ in 0..*size {
                op();
            }
            let ps = start.elapsed().as_nanos() * 1_000 / u128::from(*size);
            hist.saturating_record(u64::try_from(ps).unwrap_or(u64::MAX));
        }
    }
    hists
}

/// The floor: a blocking `std` socket sending to an echo thread and waiting for the echo.
struct StdEcho {
    client: UdpSocket,
    server: SocketAddr,
    payload: Vec<u8>,
    reply: Vec<u8>,
    echo: Option<JoinHandle<io::Result<()>>>,
}

impl StdEcho {
    /// `msg`'s datagram as the payload, so the floor carries the same bytes as the transport.
    fn start(msg: &AppendEntries) -> io::Result<StdEcho> {
        let mut codec = Codec::new(CLUSTER, 1, DEFAULT_DATAGRAM_LIMIT).map_err(io::Error::other)?;
        let payload = codec
            .encode(Kind::Peer, msg)
            .map_err(io::Error::other)?
            .to_vec();
        let server_socket = UdpSocket::bind("127.0.0.1:0")?;
        let server = server_socket.local_addr()?;
        let echo = thread::Builder::new().name("std-echo".to_owned()).spawn(
            move || -> io::Result<()> {
                let mut buffer = vec![0_u8; 65_536];
                loop {
                    let (len, from) = server_socket.recv_from(&mut buffer)?;
                    if len == 0 {
                        return Ok(()); // the stop signal
                    }
                    server_socket.send_to(&buffer[..len], from)?;
                }
            },
        )?;
        let client = UdpSocket::bind("127.0.0.1:0")?;
        client.set_read_timeout(Some(LOST))?;
        Ok(StdEcho {
            client,
            server,
            reply: vec![0; payload.len() + 1],
            payload,
            echo: Some(echo),
        })
    }

    fn stop(&mut self) -> io::Result<()> {
        self.client.send_to(&[], self.server)?;
        match self.echo.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the std echo thread panicked")),
            None => Ok(()),
        }
    }
}

impl Step for StdEcho {
    fn step(&mut self) -> io::Result<()> {
        self.client.send_to(&self.payload, self.server)?;
        let (len, _) = self.client.recv_from(&mut self.reply)?;
        if len != self.payload.len() {
            return Err(io::Error::other(format!("echo of {len} bytes")));
        }
        Ok(())
    }
}

/// Two transports: the client sends to the server, whose echo thread sends each message back.
struct TransportEcho {
    client: Option<Transport<AppendEntries>>,
    client_outbox: Outbox<AppendEntries>,
    client_inbox: Receiver<Inbound<AppendEntries>>,
    server: Option<Transport<AppendEntries>>,
    echo: Option<JoinHandle<()>>,
    msg: AppendEntries,
}

impl TransportEcho {
    fn start(path: SendPath, msg: &AppendEntries) -> io::Result<TransportEcho> {
        let localhost: SocketAddr = "127.0.0.1:0".parse().map_err(io::Error::other)?;
        let config = |id| Config {
            send_path: path,
            ..Config::new(id, CLUSTER, localhost)
        };
        let (client_sender, client_inbox) = crossbeam_channel::bounded(1024);
        let (server_sender, server_inbox) =
            crossbeam_channel::bounded::<Inbound<AppendEntries>>(1024);
        let client = Transport::start(config(1), client_sender).map_err(io::Error::other)?;
        let server = Transport::start(config(2), server_sender).map_err(io::Error::other)?;
        client
            .set_peer(2, server.local_addr())
            .map_err(io::Error::other)?;
        server
            .set_peer(1, client.local_addr())
            .map_err(io::Error::other)?;
        let mut server_outbox = server.outbox();
        let echo = thread::Builder::new()
            .name(format!("echo-{path:?}"))
            .spawn(move || {
                // Ends when the server transport stops and drops the inbox's sender.
                while let Ok(inbound) = server_inbox.recv() {
                    if let Err(error) = server_outbox.send(Destination::Peer(1), &inbound.msg) {
                        println!("echo: {error}");
                        return;
                    }
                }
            })?;
        Ok(TransportEcho {
            client_outbox: client.outbox(),
            client: Some(client),
            client_inbox,
            server: Some(server),
            echo: Some(echo),
            msg: msg.clone(),
        })
    }

    fn stop(&mut self) -> io::Result<()> {
        for transport in [self.client.take(), self.server.take()]
            .into_iter()
            .flatten()
        {
            transport.shutdown().map_err(io::Error::other)?;
        }
        if let Some(echo) = self.echo.take() {
            echo.join()
                .map_err(|_| io::Error::other("the echo thread panicked"))?;
        }
        Ok(())
    }
}

impl Step for TransportEcho {
    fn step(&mut self) -> io::Result<()> {
        self.client_outbox
            .send(Destination::Peer(2), &self.msg)
            .map_err(io::Error::other)?;
        let inbound = self
            .client_inbox
            .recv_timeout(LOST)
            .map_err(|error| io::Error::other(format!("no echo within {LOST:?}: {error}")))?;
        if inbound.msg.entries.len() != self.msg.entries.len() {
            return Err(io::Error::other("a different message came back"));
        }
        Ok(())
    }
}
