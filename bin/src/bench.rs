//! `balsa bench`: closed-loop write load against a running cluster, with the latency
//! distribution as users measure it (see `balsa::client::load` for the loop itself, and
//! `bench/figures.rs` for the histogram made of its samples).
//!
//! Output: a progress line on stderr about once a second; then on stdout either a short table
//! (throughput and p50 / p90 / p99 / p99.9 / max in µs) or, with `--json`, one JSON object with
//! the keys `ops`, `clients`, `ops_per_sec`, `p50_us`, `p90_us`, `p99_us`, `p999_us`, `max_us` and
//! `errors`. `--hgrm FILE` also writes the distribution in HdrHistogram's percentile text format.
//!
//! `--key-file FILE` (or `BALSA_KEY_FILE`) names the cluster's client key, as for the client
//! commands. When writes failed, bench asks every endpoint for its status once, to say whether
//! keys are the likely cause (a `hint:` line).
//!
//! Exit status: 0 every write answered; 2 bad usage, a client set-up or socket error, a key
//! file that cannot be used or an unwritable `--hgrm` file; 3 some writes failed (unavailable,
//! timed out with outcome unknown, or not authenticated) — the figures of the answered ones are
//! printed anyway.

use std::io::Write as _;
use std::process::ExitCode;

use std::net::SocketAddr;

use balsa::client::load::{self, Load, Sockets};
use balsa::client::{Client, ClientError, ClientOptions};

use crate::args::{BenchArgs, DEFAULT_ASKING_TIMEOUT};
use crate::keys::{self, ClientKey};
use figures::{Figures, write_hgrm};

mod figures;

/// Runs `balsa bench`.
#[allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the figures go to stdout, progress and errors to stderr"
)]
pub fn run(args: BenchArgs) -> ExitCode {
    let (timeout, attempt_timeout) = args.timeouts.or_library();
    let key = match keys::read_client_key(args.endpoints.key_file.as_deref()) {
        Ok(key) => key,
        Err(error) => {
            eprintln!("balsa bench: {error}");
            return ExitCode::from(2);
        }
    };
    let load = Load {
        endpoints: args.endpoints.addresses.clone(),
        clients: args.clients,
        ops: args.ops,
        value_size: args.value_size,
        warmup: args.warmup,
        options: ClientOptions {
            timeout,
            attempt_timeout,
            key: keys::option_key(key.as_ref()),
            ..ClientOptions::default()
        },
        sockets: if args.shared_sockets {
            Sockets::Shared
        } else {
            Sockets::PerClient
        },
    };
    let mut progress = |done: u64, total: u64| {
        eprint!("\rbalsa bench: {done}/{total} writes");
        let _ = std::io::stderr().flush();
    };
    let outcome = match load::run(&load, &mut progress).map(Figures::from) {
        Ok(outcome) => outcome,
        Err(error) => {
            eprintln!("balsa bench: {error}");
            return ExitCode::from(2);
        }
    };
    eprintln!("\rbalsa bench: {}/{} writes", outcome.ops, args.ops);
    if args.json {
        println!("{}", outcome.to_json());
    } else {
        println!(
            "{} clients, {} writes of {} bytes in {:.2} s: {:.0} writes/s",
            outcome.clients,
            outcome.ops,
            args.value_size,
            outcome.elapsed.as_secs_f64(),
            outcome.ops_per_sec()
        );
        println!(
            "{:>8} {:>8} {:>8} {:>8} {:>8}",
            "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs"
        );
        println!(
            "{:>8} {:>8} {:>8} {:>8} {:>8}",
            outcome.us_at(0.5),
            outcome.us_at(0.9),
            outcome.us_at(0.99),
            outcome.us_at(0.999),
            outcome.latency_us.max()
        );
    }
    if let Some(path) = &args.hgrm {
        let written = std::fs::File::create(path).and_then(|mut file| {
            write_hgrm(&outcome.latency_us, &mut file)?;
            file.sync_all()
        });
        if let Err(error) = written {
            eprintln!("balsa bench: writing {}: {error}", path.display());
            return ExitCode::from(2);
        }
    }
    if outcome.errors > 0 {
        eprintln!(
            "balsa bench: {} writes failed; the first: {}",
            outcome.errors,
            outcome.first_error.as_deref().unwrap_or("?")
        );
        if let Some(hint) = diagnose(&args.endpoints.addresses, key.as_ref()) {
            eprintln!("balsa bench: hint: {hint}");
        }
        return ExitCode::from(3);
    }
    ExitCode::SUCCESS
}

/// After failed writes: what to do about keys, if they are the likely cause. Asks every
/// endpoint for its status once (a node that cannot open a request says so, which a write of
/// the load may not have heard: the load's clients only count their failures).
fn diagnose(endpoints: &[SocketAddr], key: Option<&ClientKey>) -> Option<String> {
    let options = ClientOptions {
        timeout: DEFAULT_ASKING_TIMEOUT,
        key: keys::option_key(key),
        ..ClientOptions::default()
    };
    let reports = Client::new(endpoints.to_vec(), options)
        .ok()?
        .status_all(endpoints);
    let errors: Vec<&ClientError> = reports.iter().filter_map(|r| r.as_ref().err()).collect();
    let refused = errors
        .iter()
        .find(|error| matches!(error, ClientError::Unauthenticated { .. }));
    match refused {
        Some(error) => keys::hint(error, key),
        // Silence everywhere: keys may be why (see `keys::hint`).
        None if errors.len() == reports.len() => errors.first().and_then(|e| keys::hint(e, key)),
        None => None,
    }
}
