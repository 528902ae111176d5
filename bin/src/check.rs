//! `balsa check perf`, after `etcdctl check perf`: a timed write load against a running cluster
//! (`--duration`, 30 s by default), judged against the floor of this machine measured on the
//! spot, with a PASS or FAIL line per criterion and what to do about a FAIL, then a summary.
//!
//! **The floor** is what one durable write costs at the least here, before any Raft: the median
//! `pwrite` + `fdatasync` of a 64-byte record in a small preallocated file in `--dir` (default:
//! the system's temporary directory; it should be on the nodes' disk), plus the median UDP
//! round trip — a loopback echo between two threads when every endpoint is on loopback, else
//! the median round trip of a status request to the endpoints (the network is then part of
//! the floor). It is measured before the load, while the cluster is idle.
//!
//! **The load**: [`CLIENTS`] closed-loop clients on shared sockets (their ready writes batched
//! per datagram, as a client library multiplexing sessions does), [`VALUE_SIZE`]-byte values,
//! [`WARMUP`] warm-up writes, then writes until `--duration` is up.
//!
//! **The criteria** (see [`judge`], and README "balsa check perf" for why these):
//! - throughput: at least [`THROUGHPUT_PER_FLOOR`] writes per floor of time;
//! - p99 latency: at most [`P99_FLOORS`] floors;
//! - errors: no write failed;
//! - leader: the same node led, in the same term, before and after the load (no election).
//!
//! Exit status: 0 every criterion passed; 1 some failed; 2 bad usage, a key file that cannot be
//! used, a floor that cannot be measured (say, `--dir` not writable) or a client set-up error;
//! 3 the cluster is unavailable (no leader before the load, or no write of it answered).

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use balsa::client::load::{self, Load, Sockets, Workload};
use balsa::client::{Client, ClientOptions};

use crate::args::{Check, CheckArgs, CheckPerfArgs, DEFAULT_ASKING_TIMEOUT};
use crate::bench::figures::OpFigures;
use crate::bench::plot::{latency_text, thousands};
use crate::keys;

/// The load's closed-loop clients.
pub const CLIENTS: usize = 16;
/// Bytes per value written.
pub const VALUE_SIZE: usize = 100;
/// Untimed writes before the timed ones.
pub const WARMUP: u64 = 1000;
/// The least throughput that passes, in writes per floor of time: the clients' writes must
/// share syncs and round trips (one client writing back to back cannot exceed one per floor).
pub const THROUGHPUT_PER_FLOOR: f64 = 2.0;
/// The largest p99 latency that passes, in floors.
pub const P99_FLOORS: f64 = 10.0;
/// An fdatasync faster than this (µs) did not reach a disk: `--dir` is likely on tmpfs.
const NO_DISK_US: f64 = 10.0;

/// Runs `balsa check`.
pub fn run(args: CheckArgs) -> ExitCode {
    match args.check {
        Check::Perf(perf_args) => perf(&perf_args),
    }
}

/// Who led, in which term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leadership {
    /// The leader's id.
    pub leader: u64,
    /// Its term.
    pub term: u64,
}

/// The floor, measured.
#[derive(Clone, Debug)]
pub struct Floor {
    /// Median `pwrite` + `fdatasync`, µs.
    pub fdatasync_us: f64,
    /// Median UDP round trip, µs.
    pub round_trip_us: f64,
    /// How the round trip was measured.
    pub round_trip_by: &'static str,
}

impl Floor {
    /// The floor of one durable write, µs.
    pub fn total_us(&self) -> f64 {
        self.fdatasync_us + self.round_trip_us
    }
}

/// What the load measured, to be judged.
pub struct Run {
    /// The floor.
    pub floor_us: f64,
    /// Timed writes answered.
    pub writes: u64,
    /// From the timed phase's start to its last answer.
    pub elapsed: Duration,
    /// The writes' p99 latency, µs.
    pub p99_us: u64,
    /// Writes that failed (warm-up included).
    pub errors: u64,
    /// The first failure.
    pub first_error: Option<String>,
    /// Who led before the load.
    pub before: Leadership,
    /// Who led after it (or why that is not known).
    pub after: Result<Leadership, String>,
}

/// One criterion's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// Its name.
    pub name: &'static str,
    /// Whether it passed.
    pub pass: bool,
    /// What was measured, against what.
    pub detail: String,
    /// What to do when it failed.
    pub advice: &'static str,
}

impl Verdict {
    /// `PASS name: detail`, or `FAIL name: detail` and a line of advice.
    pub fn lines(&self) -> String {
        if self.pass {
            format!("PASS {}: {}", self.name, self.detail)
        } else {
            format!(
                "FAIL {}: {}\n     what to do: {}",
                self.name, self.detail, self.advice
            )
        }
    }
}

/// The criteria, in the order they print.
pub fn judge(run: &Run) -> Vec<Verdict> {
    let floor_s = run.floor_us / 1e6;
    let throughput = run.writes as f64 / run.elapsed.as_secs_f64().max(1e-9);
    let least = THROUGHPUT_PER_FLOOR / floor_s.max(1e-9);
    let p99_most = P99_FLOORS * run.floor_us;
    let leader = match &run.after {
        Ok(after) if *after == run.before => Verdict {
            name: "leader",
            pass: true,
            detail: format!(
                "node {} led throughout, in term {}",
                after.leader, after.term
            ),
            advice: "",
        },
        Ok(after) => Verdict {
            name: "leader",
            pass: false,
            detail: format!(
                "node {} led in term {} before the load, node {} in term {} after it",
                run.before.leader, run.before.term, after.leader, after.term
            ),
            advice: LEADER_ADVICE,
        },
        Err(why) => Verdict {
            name: "leader",
            pass: false,
            detail: format!(
                "node {} led in term {} before the load; after it, {why}",
                run.before.leader, run.before.term
            ),
            advice: LEADER_ADVICE,
        },
    };
    vec![
        Verdict {
            name: "throughput",
            pass: throughput >= least,
            detail: format!(
                "{} writes/s {} {} writes/s ({THROUGHPUT_PER_FLOOR} writes per floor)",
                thousands(whole(throughput)),
                if throughput >= least { "≥" } else { "<" },
                thousands(whole(least)),
            ),
            advice: "the cluster commits fewer writes than this machine's disk and network \
                     allow: look for CPU contention or stolen CPU (top, vmstat's st), a slow \
                     follower (`balsa members` lag), a data directory on a slower disk than \
                     --dir (run again with --dir on the nodes' disk), or other I/O on that disk",
        },
        Verdict {
            name: "p99 latency",
            pass: run.p99_us as f64 <= p99_most,
            detail: format!(
                "{} {} {} ({P99_FLOORS} × the floor)",
                latency_text(run.p99_us as f64),
                if run.p99_us as f64 <= p99_most {
                    "≤"
                } else {
                    ">"
                },
                latency_text(p99_most),
            ),
            advice: "the slowest writes wait on something other than the disk and the network: \
                     CPU contention or stolen CPU, swapping, snapshots during the load (raise \
                     serve's --snapshot-entries), another process syncing the same disk; \
                     `balsa bench --plot` shows when the slow writes happen",
        },
        Verdict {
            name: "errors",
            pass: run.errors == 0,
            detail: if run.errors == 0 {
                format!("none of {} writes failed", thousands(run.writes))
            } else {
                format!(
                    "{} writes failed; the first: {}",
                    thousands(run.errors),
                    run.first_error.as_deref().unwrap_or("?")
                )
            },
            advice: "look at `balsa status` and the nodes' logs; a write that timed out may \
                     have been applied (outcome unknown); raise --timeout if the cluster is \
                     merely slow",
        },
        leader,
    ]
}

const LEADER_ADVICE: &str = "an election happened under load: a follower heard no heartbeat for \
     an election timeout. Look in the nodes' logs for the election; on a busy or shared machine \
     give serve a longer --election-ticks (or --tick-ms), and keep the nodes off an overloaded \
     CPU";

/// `value` rounded to a whole number (saturating).
fn whole(value: f64) -> u64 {
    #[allow(
        clippy::cast_possible_truncation,
        reason = "a rate for display, saturating at the bounds"
    )]
    let rounded = value.round().max(0.0) as u64;
    rounded
}

/// Runs `balsa check perf`.
#[allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the verdicts go to stdout, progress and errors to stderr"
)]
fn perf(args: &CheckPerfArgs) -> ExitCode {
    let endpoints = &args.endpoints.addresses;
    let key = match keys::read_client_key(args.endpoints.key_file.as_deref()) {
        Ok(key) => key,
        Err(error) => {
            eprintln!("balsa check perf: {error}");
            return ExitCode::from(2);
        }
    };
    let (timeout, attempt_timeout) = args.timeouts.or_library();
    let options = ClientOptions {
        timeout,
        attempt_timeout,
        key: keys::option_key(key.as_ref()),
        ..ClientOptions::default()
    };
    let before = match leadership(endpoints, &options) {
        Ok(before) => before,
        Err(why) => {
            eprintln!("balsa check perf: the cluster is unavailable: {why}");
            if let Some(hint) = crate::bench::diagnose(endpoints, key.as_ref()) {
                eprintln!("balsa check perf: hint: {hint}");
            }
            return ExitCode::from(3);
        }
    };
    let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let floor = match measure_floor(&dir, endpoints, &options) {
        Ok(floor) => floor,
        Err(error) => {
            eprintln!("balsa check perf: measuring the floor: {error}");
            return ExitCode::from(2);
        }
    };
    println!(
        "floor: {} = fdatasync {} (median, in {}) + UDP round trip {} (median, {})",
        latency_text(floor.total_us()),
        latency_text(floor.fdatasync_us),
        dir.display(),
        latency_text(floor.round_trip_us),
        floor.round_trip_by,
    );
    if floor.fdatasync_us < NO_DISK_US {
        println!(
            "note: fdatasync in {} took {}: it reached no disk (tmpfs?); give --dir on the \
             nodes' disk, or the floor is too low to judge by",
            dir.display(),
            latency_text(floor.fdatasync_us)
        );
    }
    let load = Load {
        endpoints: endpoints.clone(),
        clients: CLIENTS,
        ops: u64::MAX,
        value_size: VALUE_SIZE,
        warmup: WARMUP,
        workload: Workload::Put,
        duration: Some(args.duration),
        options: options.clone(),
        sockets: Sockets::Shared,
    };
    let total_s = args.duration.as_secs_f64();
    // The load calls this about once a second of its timed phase.
    let mut seconds = 0_u64;
    let mut progress = |progress: load::LoadProgress| {
        if progress.warming_up {
            return;
        }
        let done = progress.done;
        seconds += 1;
        eprint!(
            "\rbalsa check perf: about {seconds} s of {total_s:.0} s, {} writes",
            thousands(done)
        );
        let _ = io::stderr().flush();
    };
    let outcome = match load::run(&load, &mut progress) {
        Ok(outcome) => outcome,
        Err(error) => {
            eprintln!("\rbalsa check perf: {error}");
            return ExitCode::from(2);
        }
    };
    eprintln!(
        "\rbalsa check perf: {} writes in {:.1} s",
        thousands(outcome.writes.ops()),
        outcome.elapsed.as_secs_f64()
    );
    let first_error = outcome.first_error.clone();
    let (elapsed, clients) = (outcome.elapsed, outcome.clients);
    let writes = OpFigures::from(outcome.writes);
    if writes.ops() == 0 {
        eprintln!(
            "balsa check perf: the cluster is unavailable: no write was answered; the first \
             failure: {}",
            first_error.as_deref().unwrap_or("?")
        );
        if let Some(hint) = crate::bench::diagnose(endpoints, key.as_ref()) {
            eprintln!("balsa check perf: hint: {hint}");
        }
        return ExitCode::from(3);
    }
    let after = leadership(endpoints, &options);
    println!(
        "load: {clients} clients, {VALUE_SIZE}-byte writes for {:.1} s: {} writes, {} \
         writes/s, p50 {}, p99 {}, max {}",
        elapsed.as_secs_f64(),
        thousands(writes.ops()),
        thousands(whole(writes.per_sec(elapsed))),
        latency_text(writes.us_at(0.5) as f64),
        latency_text(writes.us_at(0.99) as f64),
        latency_text(writes.latency_us.max() as f64),
    );
    let verdicts = judge(&Run {
        floor_us: floor.total_us(),
        writes: writes.ops(),
        elapsed,
        p99_us: writes.us_at(0.99),
        errors: writes.errors,
        first_error,
        before,
        after,
    });
    for verdict in &verdicts {
        println!("{}", verdict.lines());
    }
    let failed = verdicts.iter().filter(|verdict| !verdict.pass).count();
    if failed == 0 {
        println!(
            "balsa check perf: PASS ({} of {} criteria)",
            verdicts.len(),
            verdicts.len()
        );
        ExitCode::SUCCESS
    } else {
        println!(
            "balsa check perf: FAIL ({failed} of {} criteria failed)",
            verdicts.len()
        );
        ExitCode::from(1)
    }
}

/// Who leads now, as the nodes at `endpoints` say (the leader in the highest term any of them
/// reports).
fn leadership(endpoints: &[SocketAddr], options: &ClientOptions) -> Result<Leadership, String> {
    let asking = ClientOptions {
        timeout: DEFAULT_ASKING_TIMEOUT,
        ..options.clone()
    };
    let mut client = Client::new(endpoints.to_vec(), asking).map_err(|e| e.to_string())?;
    let reports = client.status_all(endpoints);
    let answered: Vec<_> = reports.iter().filter_map(|r| r.as_ref().ok()).collect();
    if answered.is_empty() {
        let first = reports
            .iter()
            .find_map(|r| r.as_ref().err())
            .map_or_else(|| "no endpoint".to_owned(), ToString::to_string);
        return Err(format!("no node answered ({first})"));
    }
    answered
        .iter()
        .filter(|report| report.role == "leader")
        .max_by_key(|report| report.term)
        .map(|report| Leadership {
            leader: report.id,
            term: report.term,
        })
        .ok_or_else(|| format!("{} nodes answered; none leads", answered.len()))
}

#[allow(
    clippy::disallowed_methods,
    reason = "the floor and the progress line are wall-clock measurements, not the Raft core"
)]
fn now() -> Instant {
    Instant::now()
}

/// Samples of each measurement of the floor (after a few untimed ones), and the longest the
/// fdatasync samples may take (a slow disk gives fewer, at least [`LEAST_SAMPLES`]).
const SAMPLES: usize = 200;
const LEAST_SAMPLES: usize = 10;
const UNTIMED: usize = 10;
const SYNC_BUDGET: Duration = Duration::from_secs(3);

/// Measures the floor (see the module doc).
fn measure_floor(
    dir: &Path,
    endpoints: &[SocketAddr],
    options: &ClientOptions,
) -> Result<Floor, String> {
    let fdatasync_us = fdatasync_median_us(dir)
        .map_err(|error| format!("fdatasync in {}: {error}", dir.display()))?;
    let (round_trip_us, round_trip_by) = if endpoints.iter().all(|e| e.ip().is_loopback()) {
        let median = loopback_median_us()
            .map_err(|error| format!("the loopback UDP round trip: {error}"))?;
        (median, "loopback echo")
    } else {
        (
            status_median_us(endpoints, options)?,
            "status requests to the endpoints",
        )
    };
    Ok(Floor {
        fdatasync_us,
        round_trip_us,
        round_trip_by,
    })
}

/// The median of `samples`, µs.
fn median_us(samples: &mut [Duration]) -> f64 {
    samples.sort_unstable();
    samples
        .get(samples.len().saturating_sub(1) / 2)
        .map_or(0.0, |sample| sample.as_secs_f64() * 1e6)
}

/// A file of ours in `dir`, removed when dropped.
struct ScratchFile {
    file: File,
    path: PathBuf,
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The median `pwrite` + `fdatasync` of a 64-byte record at the next offset of a small
/// preallocated file in `dir`, µs.
fn fdatasync_median_us(dir: &Path) -> io::Result<f64> {
    const RECORD: usize = 64;
    let path = dir.join(format!(".balsa-check-perf-{}", std::process::id()));
    let scratch = ScratchFile {
        file: OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?,
        path,
    };
    // Preallocated and synced, so that each timed sync has data and no size to make durable.
    let length = (UNTIMED + SAMPLES) * RECORD;
    scratch.file.write_all_at(&vec![0; length], 0)?;
    scratch.file.sync_all()?;
    File::open(dir)?.sync_all()?;
    let record = [0xA5_u8; RECORD];
    let mut samples = Vec::with_capacity(SAMPLES);
    let budget_end = now() + SYNC_BUDGET;
    for index in 0..UNTIMED + SAMPLES {
        let started = now();
        scratch
            .file
            .write_all_at(&record, (index * RECORD) as u64)?;
        scratch.file.sync_data()?;
        let ended = now();
        if index >= UNTIMED {
            samples.push(ended.duration_since(started));
            if samples.len() >= LEAST_SAMPLES && ended >= budget_end {
                break;
            }
        }
    }
    Ok(median_us(&mut samples))
}

/// The median round trip of a 64-byte datagram between two loopback sockets, one echoing on
/// its own thread, µs.
fn loopback_median_us() -> io::Result<f64> {
    let client = UdpSocket::bind("127.0.0.1:0")?;
    let echo = UdpSocket::bind("127.0.0.1:0")?;
    client.connect(echo.local_addr()?)?;
    echo.connect(client.local_addr()?)?;
    // Bounds, so that a lost datagram fails the measurement rather than hangs it.
    for socket in [&client, &echo] {
        socket.set_read_timeout(Some(Duration::from_secs(1)))?;
    }
    let total = UNTIMED + SAMPLES;
    std::thread::scope(|scope| {
        let echoing = scope.spawn(|| -> io::Result<()> {
            let mut buffer = [0_u8; 256];
            for _ in 0..total {
                let len = echo.recv(&mut buffer)?;
                echo.send(&buffer[..len])?;
            }
            Ok(())
        });
        let mut samples = Vec::with_capacity(SAMPLES);
        let mut buffer = [0_u8; 256];
        let mut measured = || -> io::Result<()> {
            for index in 0..total {
                let started = now();
                client.send(&[0x5A; 64])?;
                client.recv(&mut buffer)?;
                if index >= UNTIMED {
                    samples.push(now().duration_since(started));
                }
            }
            Ok(())
        };
        let sent = measured();
        let echoed = echoing
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        sent.and(echoed)?;
        Ok(median_us(&mut samples))
    })
}

/// The median round trip of a status request to the endpoints (each asked in turn), µs.
fn status_median_us(endpoints: &[SocketAddr], options: &ClientOptions) -> Result<f64, String> {
    let asking = ClientOptions {
        timeout: DEFAULT_ASKING_TIMEOUT,
        ..options.clone()
    };
    let mut client = Client::new(endpoints.to_vec(), asking).map_err(|e| e.to_string())?;
    let per_endpoint = (SAMPLES / endpoints.len().max(1)).max(LEAST_SAMPLES);
    let mut samples = Vec::new();
    for &endpoint in endpoints {
        for _ in 0..per_endpoint {
            let started = now();
            if client.status(endpoint).is_ok() {
                samples.push(now().duration_since(started));
            }
        }
    }
    if samples.is_empty() {
        return Err("no endpoint answered a status request".into());
    }
    Ok(median_us(&mut samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(throughput: u64, p99_us: u64, errors: u64, after: Result<Leadership, String>) -> Run {
        Run {
            floor_us: 200.0,
            writes: throughput * 10,
            elapsed: Duration::from_secs(10),
            p99_us,
            errors,
            first_error: (errors > 0).then(|| "no answer within 5000 ms".to_owned()),
            before: Leadership { leader: 1, term: 3 },
            after,
        }
    }

    fn passes(verdicts: &[Verdict]) -> Vec<(&'static str, bool)> {
        verdicts.iter().map(|v| (v.name, v.pass)).collect()
    }

    /// Against a floor of 200 µs: 10,000 writes/s is the least throughput, 2 ms the largest
    /// p99; the same leader in the same term passes.
    #[test]
    fn each_criterion_passes_or_fails_on_its_own_bound() {
        let same = Ok(Leadership { leader: 1, term: 3 });
        let verdicts = judge(&run(10_000, 2000, 0, same.clone()));
        assert_eq!(
            passes(&verdicts),
            [
                ("throughput", true),
                ("p99 latency", true),
                ("errors", true),
                ("leader", true)
            ]
        );
        let verdicts = judge(&run(9_999, 2001, 4, Ok(Leadership { leader: 1, term: 4 })));
        assert!(verdicts.iter().all(|v| !v.pass), "{verdicts:?}");
        let verdicts = judge(&run(20_000, 100, 0, Err("no node answered".into())));
        assert!(!verdicts[3].pass);
        assert!(verdicts[3].detail.contains("no node answered"));
    }

    /// A PASS is one line; a FAIL two, the second saying what to do.
    #[test]
    fn a_failed_criterion_says_what_to_do() {
        let verdicts = judge(&run(1, 50_000, 2, Ok(Leadership { leader: 2, term: 4 })));
        for verdict in &verdicts {
            let lines = verdict.lines();
            let mut lines = lines.lines();
            let first = lines.next().expect("a line");
            assert!(
                first.starts_with(&format!("FAIL {}: ", verdict.name)),
                "{first}"
            );
            let advice = lines.next().expect("advice");
            assert!(advice.trim_start().starts_with("what to do: "), "{advice}");
        }
        assert!(
            verdicts[1].detail.starts_with("50.0 ms > 2.00 ms"),
            "{:?}",
            verdicts[1]
        );
        assert!(
            verdicts[2].detail.contains("no answer within"),
            "{:?}",
            verdicts[2]
        );
        assert!(
            verdicts[3].detail.contains("node 2 in term 4"),
            "{:?}",
            verdicts[3]
        );
        let pass = judge(&run(10_000, 10, 0, Ok(Leadership { leader: 1, term: 3 })));
        assert_eq!(pass[0].lines().lines().count(), 1);
        assert!(
            pass[0]
                .lines()
                .starts_with("PASS throughput: 10,000 writes/s ≥ 10,000")
        );
    }

    /// The floor's parts measure something, and its scratch file is removed.
    #[test]
    fn the_floor_is_measured_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let fdatasync = fdatasync_median_us(dir.path()).expect("fdatasync in a temporary dir");
        assert!(fdatasync > 0.0);
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("listing").count(),
            0,
            "the scratch file is gone"
        );
        assert!(loopback_median_us().expect("loopback") > 0.0);
        let missing = dir.path().join("missing");
        assert!(fdatasync_median_us(&missing).is_err());
    }
}
