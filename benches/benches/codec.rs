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
//!    - `balsa-net` sending directly, both transports sealing under the same keys (what a
//!      cluster with keys pays per round trip: two seals and two opens).
//!
//!    In the transport cases a message goes client thread → server's net thread → server's
//!    inbox → echo thread (as a consensus thread would) → client's net thread → client's inbox.
//! 3. sealing (AES-256-GCM, `net/src/seal.rs`): a message of one byte string whose body is
//!    64 B, 1 KiB, and the largest that fits the 65,000-byte datagram limit sealed (64,922 B),
//!    encoded and decoded by a plaintext codec and by a sealing one, in ns per datagram and MB/s
//!    of body. Opening decrypts in place, so each sealed decode first copies the sealed datagram
//!    afresh: that copy alone is the floor, measured in the same alternating batches, and is
//!    subtracted from the sealed decode (`open+dec`). `seal` = sealed encode − encode, `open` =
//!    `open+dec` − decode: what the cryptography adds to a datagram.
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
use balsa_net::{HEADER_LEN, KeyRing, Keys, SEAL_OVERHEAD, SendPath, Transport};
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
/// The boot id of the bench's sealing codecs (any value: nothing here keeps a replay window).
const BOOT_ID: u64 = 1;
/// Body sizes of part 3: small, a kibibyte, and the largest a sealed datagram holds within the
/// default limit.
const SEALED_BODIES: [usize; 3] = [
    64,
    1024,
    DEFAULT_DATAGRAM_LIMIT - HEADER_LEN - SEAL_OVERHEAD,
];

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

/// One byte string: a body of the wanted size with as little encoding work as possible, so that
/// part 3 measures the sealing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Blob(#[serde(with = "balsa_net::bytes")] Vec<u8>);

impl Blob {
    /// The blob whose encoded body (length prefix and bytes) is exactly `body` bytes.
    fn with_body(body: usize) -> io::Result<Blob> {
        // The length prefix takes 1, 3 or 5 bytes: try the data lengths those leave.
        [1, 3, 5]
            .into_iter()
            .filter_map(|prefix| body.checked_sub(prefix))
            .map(|len| Blob(vec![0x5A; len]))
            .find(|blob| balsa_net::datagram_len(blob).is_ok_and(|len| len == HEADER_LEN + body))
            .ok_or_else(|| io::Error::other(format!("no blob has a {body}-byte body")))
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
    let mut sealed = TransportEcho::start_sealed(SendPath::Direct, &msg)?;
    println!(
        "datagram {} bytes ({} sealed)",
        std_echo.payload.len(),
        std_echo.payload.len() + SEAL_OVERHEAD
    );
    let hists = interleave(
        WARMUP,
        ROUND_TRIPS,
        &mut [&mut std_echo, &mut via_loop, &mut direct, &mut sealed],
    )?;
    let floor_p50 = hists[0].value_at_quantile(0.5);
    report::header();
    report::row("std UdpSocket blocking echo (floor)", &hists[0], floor_p50);
    report::row("balsa-net, through the event loop", &hists[1], floor_p50);
    report::row("balsa-net, direct send", &hists[2], floor_p50);
    report::row("balsa-net, direct send, sealed", &hists[3], floor_p50);
    let p50 = |i: usize| hists[i].value_at_quantile(0.5) as f64;
    println!(
        "event loop / direct send, p50: {:.2}   (> 1: direct send is faster)",
        p50(1) / p50(2)
    );
    println!(
        "sealed / plaintext direct send, p50: {:.3}; p99: {:.3}",
        p50(3) / p50(2),
        hists[3].value_at_quantile(0.99) as f64 / hists[2].value_at_quantile(0.99) as f64,
    );
    std_echo.stop()?;
    via_loop.stop()?;
    direct.stop()?;
    sealed.stop()?;

    println!(
        "\n3. sealing (AES-256-GCM), a message of one byte string, p50 per datagram \
         (floor: memcpy of the sealed datagram, which each open needs afresh, subtracted from \
         open+dec; MB = 10^6 B of body)"
    );
    println!(
        "{:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7}",
        "body B",
        "sealed B",
        "memcpy ns",
        "encode ns",
        "sealed ns",
        "seal ns",
        "decode ns",
        "open+dec",
        "open ns",
        "enc MB/s",
        "seal MB/s",
        "open MB/s",
        "enc x",
        "dec x"
    );
    for body in SEALED_BODIES {
        sealing_row(&Blob::with_body(body)?)?;
    }
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

/// Prints one row of part 3.
fn sealing_row(msg: &Blob) -> io::Result<()> {
    let keys = bench_keys()?;
    let sealing = |from| -> io::Result<Codec> {
        Codec::new(CLUSTER, from, DEFAULT_DATAGRAM_LIMIT)
            .and_then(|codec| codec.with_keys(&keys, BOOT_ID))
            .map_err(io::Error::other)
    };
    let plain = |from| Codec::new(CLUSTER, from, DEFAULT_DATAGRAM_LIMIT).map_err(io::Error::other);
    let (mut plain_encoder, plain_decoder) = (plain(1)?, plain(2)?);
    let (mut sealed_encoder, sealed_decoder) = (sealing(1)?, sealing(2)?);
    let plain_datagram = plain_encoder
        .encode(Kind::Peer, msg)
        .map_err(io::Error::other)?
        .to_vec();
    let sealed_datagram = sealed_encoder
        .encode(Kind::Peer, msg)
        .map_err(io::Error::other)?
        .to_vec();
    let body = plain_datagram.len() - HEADER_LEN;
    if sealed_datagram.len() != plain_datagram.len() + SEAL_OVERHEAD {
        return Err(io::Error::other("a sealed datagram of an unexpected size"));
    }
    let opened = sealed_decoder
        .decode::<Blob>(&mut sealed_datagram.clone())
        .map_err(|reason| io::Error::other(format!("the bench's own sealed datagram: {reason}")))?;
    assert_eq!(&opened.1, msg, "sealed round trip");

    let mut copy = vec![0_u8; sealed_datagram.len()];
    let mut floor = || {
        copy.copy_from_slice(black_box(&sealed_datagram));
        black_box(&copy);
    };
    let mut encode = || {
        let bytes = plain_encoder.encode(Kind::Peer, black_box(msg));
        black_box(bytes.map(<[u8]>::len).ok());
    };
    let mut encode_sealed = || {
        let bytes = sealed_encoder.encode(Kind::Peer, black_box(msg));
        black_box(bytes.map(<[u8]>::len).ok());
    };
    // A plaintext datagram is decoded without being changed: the same one serves every time.
    let mut received = plain_datagram.clone();
    let mut decode = || {
        black_box(plain_decoder.decode::<Blob>(black_box(&mut received)).ok());
    };
    // Opening decrypts in place: each time a fresh copy, as the floor makes it.
    let mut sealed_received = vec![0_u8; sealed_datagram.len()];
    let mut open_decode = || {
        sealed_received.copy_from_slice(black_box(&sealed_datagram));
        let decoded = sealed_decoder.decode::<Blob>(black_box(&mut sealed_received));
        black_box(decoded.ok());
    };
    let [floor, encode, encode_sealed, decode, open_decode] = per_message([
        &mut floor,
        &mut encode,
        &mut encode_sealed,
        &mut decode,
        &mut open_decode,
    ]);
    let ns = |hist: &Histogram<u64>| hist.value_at_quantile(0.5) as f64 / 1e3; // stored in ps
    // What a positive difference of two p50s is per byte of body, in MB/s.
    let mb_per_s = |ns: f64| body as f64 / ns.max(1e-3) * 1e3;
    let open_dec = ns(&open_decode) - ns(&floor);
    let seal = ns(&encode_sealed) - ns(&encode);
    let open = open_dec - ns(&decode);
    println!(
        "{:>6} {:>9} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} \
         {:>9.0} {:>9.0} {:>9.0} {:>6.1}x {:>6.1}x",
        body,
        sealed_datagram.len(),
        ns(&floor),
        ns(&encode),
        ns(&encode_sealed),
        seal,
        ns(&decode),
        open_dec,
        open,
        mb_per_s(ns(&encode)),
        mb_per_s(seal),
        mb_per_s(open),
        ns(&encode_sealed) / ns(&encode).max(1e-3),
        open_dec / ns(&decode).max(1e-3),
    );
    Ok(())
}

/// Fresh keys for both rings, as a node has them.
fn bench_keys() -> io::Result<Keys> {
    Ok(Keys::node(
        KeyRing::new(balsa_net::generate_key()?),
        KeyRing::new(balsa_net::generate_key()?),
    ))
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
        Self::start_with(path, &Keys::insecure(), msg)
    }

    /// Both transports sealing under the same fresh keys.
    fn start_sealed(path: SendPath, msg: &AppendEntries) -> io::Result<TransportEcho> {
        Self::start_with(path, &bench_keys()?, msg)
    }

    fn start_with(path: SendPath, keys: &Keys, msg: &AppendEntries) -> io::Result<TransportEcho> {
        let localhost: SocketAddr = "127.0.0.1:0".parse().map_err(io::Error::other)?;
        let config = |id| Config {
            send_path: path,
            keys: keys.clone(),
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
            .name(format!(
                "echo-{path:?}-{}",
                if keys.is_sealed() { "sealed" } else { "plain" }
            ))
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
