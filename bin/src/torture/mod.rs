//! `balsa torture`: Jepsen-style fault testing of real processes. It starts a cluster of
//! `balsa serve` child processes (this same executable) on a network it can partition, runs a
//! client workload and a nemesis for `--time`, heals everything, reads every key, and checks
//! the history for linearizability, lost acknowledged writes, and the nodes' agreement. The
//! nodes run sealed, with a peer key and a client key made in the run's directory (`peer.key`,
//! `client.key`; read back when `--dir` already holds them), and every client of the harness
//! seals under the client key; the proxy network relays datagrams unchanged.
//!
//! Files: `nodes.rs` (the child processes and the harness's view of the membership), `net/`
//! (partitions: network namespaces or a UDP proxy, behind one interface), `workload.rs` (the
//! clients and their [`history`]), `nemesis.rs` (the faults, on a schedule drawn from the
//! seed), `observer.rs` (every node's status every 100 ms: who leads, terms), `check.rs`,
//! `report.rs`, `plot.rs` (the SVG timeline), `timeline.rs` (the faults as events).
//!
//! Exit status: 0 when the history is linearizable and every check passed; 1 when not (the
//! report names each anomaly, and the checker's smallest excerpt of the history); 2 on bad
//! usage, when the machine cannot run the chosen network mode, or when the run's keys cannot
//! be made or read; 130 when interrupted.
//!
//! Invariant: everything the run starts (processes, namespaces, bridges, proxy threads) is
//! owned by [`nodes::Nodes`], whose `Drop` removes it, so every exit path — a failing check,
//! an error, Ctrl-C or SIGTERM — cleans up.

#![allow(
    clippy::disallowed_methods,
    reason = "the harness runs real processes on real clocks and threads; it is not the Raft core"
)]

pub mod check;
pub mod history;
pub mod nemesis;
pub mod net;
pub mod nodes;
pub mod observer;
pub mod plot;
pub mod report;
pub mod timeline;
pub mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use balsa::client::{Client, ClientOptions, random_client_id};
use balsa::sim::SimRng;

use self::check::Verdict;
use self::history::{Call, Outcome, Output, Record};
use self::nemesis::Nemesis;
use self::net::NetRequest;
use self::nodes::Nodes;
use self::observer::{Observer, nanos_since};
use self::workload::Workload;
use crate::args::TortureArgs;
use crate::keys::LocalKeys;

/// The most node ids one run uses (the first ones, then one per replacement): what the network
/// accepts.
const MAX_IDS: u64 = net::MAX_NODE_ID;
/// How long the harness waits for a leader (at the start, and after healing).
const LEADER_WAIT: Duration = Duration::from_secs(30);
/// How long the harness waits for the members to apply what the leader committed.
const CONVERGENCE_WAIT: Duration = Duration::from_secs(30);

/// Set by Ctrl-C or SIGTERM.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Runs `balsa torture`.
#[allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the command's report and errors"
)]
pub fn run(args: TortureArgs) -> ExitCode {
    let seed = args.seed.unwrap_or_else(random_client_id);
    let request = match args.net.as_str() {
        "netns" => NetRequest::Netns,
        "proxy" => NetRequest::Proxy,
        _ => NetRequest::Auto,
    };
    let network = match net::open(request) {
        Ok(network) => network,
        Err(error) if error.is_unsupported() => {
            eprintln!("balsa torture: {error}");
            return ExitCode::from(2);
        }
        Err(error) => {
            eprintln!("balsa torture: {error}");
            return ExitCode::from(1);
        }
    };
    let (dir, keep_dir) = match &args.dir {
        Some(dir) => (dir.clone(), true),
        None => (
            std::env::temp_dir().join(format!("balsa-torture-{}-{seed}", std::process::id())),
            false,
        ),
    };
    if let Err(error) = fs::create_dir_all(&dir) {
        eprintln!("balsa torture: cannot create {}: {error}", dir.display());
        return ExitCode::from(2);
    }
    // A second handler cannot be set (in tests that run twice): the first one is kept.
    let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::Relaxed));
    let token = format!("torture-{seed:016x}");
    // Its nodes run sealed, as a cluster should: the faults meet the code that opens datagrams.
    let keys = match LocalKeys::in_dir(&dir) {
        Ok(keys) => keys,
        Err(error) => {
            eprintln!("balsa torture: {error}");
            return ExitCode::from(2);
        }
    };
    let mut nodes = Nodes::new(network, dir.clone(), token, &keys, MAX_IDS);
    if !args.json {
        println!(
            "balsa torture: seed {seed}, {} nodes over {}, logs in {}",
            args.nodes,
            nodes.network_mode(),
            dir.display()
        );
    }
    let outcome = torture(&args, seed, &mut nodes);
    nodes.stop_all();
    drop(nodes);
    let report = match outcome {
        Ok(report) => report,
        Err(Stop::Interrupted) => {
            eprintln!("balsa torture: interrupted; every node stopped");
            return ExitCode::from(130);
        }
        Err(Stop::Failed(message)) => {
            eprintln!("balsa torture: {message} (logs in {})", dir.display());
            return ExitCode::from(1);
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(error) => eprintln!("balsa torture: the report: {error}"),
        }
    } else {
        print!("{}", report::text(&report));
    }
    let passed = report.verdict == "linearizable" && report.anomalies.is_empty();
    if passed && !keep_dir {
        let _ = fs::remove_dir_all(&dir);
    } else if !passed && !args.json {
        println!("logs and data directories kept in {}", dir.display());
    }
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Why a run ended without a report.
enum Stop {
    Interrupted,
    Failed(String),
}

/// The run itself: start, load, faults, heal, final reads, checks.
fn torture(args: &TortureArgs, seed: u64, nodes: &mut Nodes) -> Result<report::Report, Stop> {
    let origin = Instant::now();
    nodes
        .bootstrap(args.nodes)
        .map_err(|error| Stop::Failed(format!("the cluster did not start: {error}")))?;
    let observer = Observer::start(nodes.directory(), origin);
    await_leader(&observer, nodes, "the new cluster")?;
    let workload = Workload::start(
        args.clients,
        args.keys,
        seed,
        args.stale_reads,
        &nodes.directory(),
        origin,
    );
    let mut nemesis = Nemesis {
        nodes,
        observer: &observer,
        rng: SimRng::new(seed),
        kinds: args.nemesis.0.clone(),
        voters: usize::try_from(args.nodes).unwrap_or(usize::MAX),
        origin,
        events: Vec::new(),
        notes: Vec::new(),
    };
    nemesis.run(Instant::now() + args.time, &INTERRUPTED);
    let events = std::mem::take(&mut nemesis.events);
    let mut notes = std::mem::take(&mut nemesis.notes);
    let mut history = workload.finish();
    if INTERRUPTED.load(Ordering::Relaxed) {
        return Err(Stop::Interrupted);
    }

    // Heal everything, then read every key and see that the members agree.
    let healed = nodes
        .set_blocked(&BTreeSet::new())
        .and_then(|()| nodes.heal());
    if let Err(error) = healed {
        notes.push(format!("healing: {error}"));
    }
    nemesis::refresh_members(nodes);
    let mut anomalies = Vec::new();
    if let Err(Stop::Failed(message)) = await_leader(&observer, nodes, "the healed cluster") {
        anomalies.push(message);
    }
    let finals = final_reads(args.keys, nodes, origin, &mut history);
    let digests = match converge(&observer, nodes, args.keys) {
        Ok(digests) => digests,
        Err(message) => {
            anomalies.push(message);
            BTreeMap::new()
        }
    };
    let distinct: BTreeSet<u64> = digests.values().copied().collect();
    if distinct.len() > 1 {
        anomalies.push(format!(
            "the members hold different values: digests {digests:x?}"
        ));
    }
    nodes.reap();
    let samples = observer.finish();
    for (term, leaders) in observer::leaders_sharing_a_term(&samples) {
        anomalies.push(format!("two leaders in term {term}: {leaders:?}"));
    }
    for (id, led, later) in observer::terms_gone_back(&samples) {
        anomalies.push(format!(
            "node {id} led term {led} and was later seen in term {later}"
        ));
    }
    for exit in &nodes.unexpected_exits {
        anomalies.push(format!(
            "node {} exited on its own: {}",
            exit.id, exit.status
        ));
    }
    let verdict = check::linearizable(&history);
    let lost = check::lost_writes(&history, &finals);
    if let Some(path) = &args.history {
        write_file(path, |out| history::export(&history, out))?;
    }
    let setup = report::Setup {
        seed,
        nodes: args.nodes,
        clients: args.clients,
        keys: args.keys,
        time_s: args.time.as_secs_f64(),
        net: nodes.network_mode().to_owned(),
        nemesis: args.nemesis.0.clone(),
    };
    if let Some(path) = &args.plot {
        let title = format!(
            "balsa torture: {} nodes ({}), seed {seed}",
            args.nodes,
            nodes.network_mode()
        );
        write_file(path, |out| plot::write_svg(&history, &events, &title, out))?;
    }
    if matches!(verdict, Verdict::Unknown(_)) {
        notes.push("the checker ran out of budget on some key: the verdict is unknown".into());
    }
    Ok(report::build(report::Inputs {
        setup,
        history: &history,
        events: &events,
        samples: &samples,
        verdict,
        lost: &lost,
        anomalies,
        notes,
        digests,
    }))
}

/// Waits until the members agree on a leader.
fn await_leader(observer: &Observer, nodes: &mut Nodes, what: &str) -> Result<u64, Stop> {
    let deadline = Instant::now() + LEADER_WAIT;
    while Instant::now() < deadline {
        if INTERRUPTED.load(Ordering::Relaxed) {
            return Err(Stop::Interrupted);
        }
        nodes.reap();
        if let Some(leader) = observer.leader() {
            let latest = observer.latest();
            let running = nodes.running_members();
            let agree = running
                .iter()
                .all(|id| latest.get(id).is_some_and(|s| s.leader == Some(leader)));
            if agree {
                return Ok(leader);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(Stop::Failed(format!(
        "{what} had no leader all its members knew within {} s",
        LEADER_WAIT.as_secs()
    )))
}

/// Reads every key once, linearizably, after the faults: these reads join the history (as
/// processes of their own) and are what lost writes are judged against.
fn final_reads(
    keys: u64,
    nodes: &Nodes,
    origin: Instant,
    history: &mut Vec<Record>,
) -> BTreeMap<String, Option<String>> {
    let options = ClientOptions {
        timeout: Duration::from_secs(5),
        ..workload::client_options(&nodes.directory())
    };
    let mut finals = BTreeMap::new();
    let first_process = history.iter().map(|r| r.process).max().unwrap_or(0) + 1;
    for (process, key) in (first_process..).zip((0..keys).map(|k| format!("k{k}"))) {
        let Ok(mut client) = Client::new(nodes.directory().endpoints(), options.clone()) else {
            continue;
        };
        for _attempt in 0..3 {
            let call_ns = nanos_since(origin);
            let result = client.get(key.as_bytes(), false);
            let return_ns = nanos_since(origin);
            let (outcome, output, error) = match result {
                Ok(value) => {
                    let value = value.map(|v| String::from_utf8_lossy(&v).into_owned());
                    finals.insert(key.clone(), value.clone());
                    (Outcome::Ok, Output::Value(value), None)
                }
                Err(error) => (Outcome::Info, Output::None, Some(error.to_string())),
            };
            history.push(Record {
                process,
                key: key.clone(),
                call: Call::Get,
                call_ns,
                return_ns,
                outcome,
                output,
                error,
            });
            if outcome == Outcome::Ok {
                break;
            }
        }
    }
    finals
}

/// Waits until every running member has applied what the leader had committed, then reads
/// every key from each of them (from its own state) and returns a digest per member.
fn converge(
    observer: &Observer,
    nodes: &mut Nodes,
    keys: u64,
) -> Result<BTreeMap<u64, u64>, String> {
    let deadline = Instant::now() + CONVERGENCE_WAIT;
    let leader = observer.leader();
    let target = leader
        .and_then(|leader| observer.latest().get(&leader).map(|s| s.commit_index))
        .ok_or("no leader to converge on")?;
    let running = nodes.running_members();
    loop {
        let latest = observer.latest();
        let behind: Vec<u64> = running
            .iter()
            .copied()
            .filter(|id| latest.get(id).is_none_or(|s| s.applied_index < target))
            .collect();
        if behind.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "members {behind:?} did not apply up to the leader's commit index {target} within {} s",
                CONVERGENCE_WAIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let keys: Vec<String> = (0..keys).map(|k| format!("k{k}")).collect();
    let mut digests = BTreeMap::new();
    for id in running {
        let Some(address) = nodes.node(id).map(|node| node.client_address) else {
            continue;
        };
        let mut client = Client::new(vec![address], workload::client_options(&nodes.directory()))
            .map_err(|error| format!("a client of node {id}: {error}"))?;
        let mut values = BTreeMap::new();
        for key in &keys {
            let value = client
                .get(key.as_bytes(), true)
                .map_err(|error| format!("reading {key} from node {id}: {error}"))?;
            values.insert(
                key.clone(),
                value.map(|v| String::from_utf8_lossy(&v).into_owned()),
            );
        }
        digests.insert(id, check::digest(&values));
    }
    Ok(digests)
}

/// Writes a file through `write`, or says which and why not.
fn write_file(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<(), Stop> {
    let failed =
        |error: std::io::Error| Stop::Failed(format!("writing {}: {error}", path.display()));
    let mut out = BufWriter::new(File::create(path).map_err(failed)?);
    write(&mut out).map_err(failed)?;
    out.flush().map_err(failed)
}
