//! `balsa bench`: closed-loop load against a running cluster, with the latency distribution as
//! users measure it (see `balsa::client::load` for the loop itself, `bench/figures.rs` for the
//! histograms made of its samples, `bench/plot.rs` for the pictures, `bench/hgrm.rs` for
//! reading `.hgrm` files back).
//!
//! `--workload` says what is measured: `put` (writes, the default), `get` (linearizable reads,
//! through ReadIndex, as `balsa get`), `get-stale` (stale reads, as `balsa get --stale`), or
//! `mixed:R` (a share R of linearizable reads among writes). The warm-up writes the keys the
//! reads read.
//!
//! Output: a progress line on stderr about once a second (from the warm-up on, with the count
//! of failed operations, and the first failure on a line of its own as soon as there is one);
//! then on stdout either a table or, with
//! `--json`, one JSON object (see [`figures::Figures::to_json`]): for `put`, exactly what bench
//! always printed; for the other workloads a row, or an object, per kind of operation.
//! `--hgrm FILE` also writes the distribution in HdrHistogram's percentile text format: of the
//! one kind the workload measures, or for `mixed` the writes' in FILE and the reads' in
//! FILE.reads. `--plot FILE.svg` draws the run (see `bench/plot.rs`). Each of these files is
//! created before the run starts, so one that cannot be written is refused (exit 2) before any
//! load, not after it.
//!
//! A run against a cluster that does not answer stops early (`balsa::client::load`: at the
//! first operation no node ever answered, or after `load::STOP_AFTER` failures in a row), says
//! why, and exits 3; the JSON of a kind with no measured operation has `null` percentiles.
//!
//! `--compare A.hgrm B.hgrm … --plot FILE.svg` runs nothing: it draws the percentile curves of
//! the files, one per file.
//!
//! `--key-file FILE` (or `BALSA_KEY_FILE`) names the cluster's client key, as for the client
//! commands. When operations failed, bench asks every endpoint for its status once, to say
//! whether keys are the likely cause (a `hint:` line).
//!
//! Exit status: 0 every operation answered; 2 bad usage, a client set-up or socket error, a key
//! file that cannot be used, an unwritable `--hgrm` or `--plot` file (before the run), or a
//! `--compare` file that cannot be read or is not a percentile distribution; 3 some operations
//! failed (unavailable, timed out with outcome unknown, or not authenticated), or the run
//! stopped early — the figures of the answered ones are printed anyway.

use std::ffi::OsString;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::fs::File;

use balsa::client::load::{self, Load, LoadProgress, Sockets, Workload};
use balsa::client::{Client, ClientError, ClientOptions};

use crate::args::{BenchArgs, DEFAULT_ASKING_TIMEOUT};
use crate::keys::{self, ClientKey};
use figures::{Figures, OpKind, kinds_of, percentile_steps, write_hgrm};
use plot::{COMPARE_COLOURS, Curve};

pub mod figures;
pub mod hgrm;
pub mod plot;

/// Runs `balsa bench`.
#[allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the figures go to stdout, progress and errors to stderr"
)]
pub fn run(args: BenchArgs) -> ExitCode {
    if !args.compare.is_empty() {
        // clap makes sure --plot comes with --compare.
        let Some(plot) = &args.plot else {
            eprintln!("balsa bench: --compare needs --plot FILE.svg");
            return ExitCode::from(2);
        };
        return match compare(&args.compare, plot) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("balsa bench: {error}");
                ExitCode::from(2)
            }
        };
    }
    // The output files first: one that cannot be written is refused before the run.
    let mut hgrm_out = Vec::new();
    if let Some(path) = &args.hgrm {
        for (file, kind) in hgrm_files(path, args.workload) {
            match File::create(&file) {
                Ok(out) => hgrm_out.push((file, kind, out)),
                Err(error) => {
                    eprintln!("balsa bench: cannot write {}: {error}", file.display());
                    return ExitCode::from(2);
                }
            }
        }
    }
    let plot_out = match args.plot.as_deref().map(|path| (path, File::create(path))) {
        None => None,
        Some((_, Ok(out))) => Some(out),
        Some((path, Err(error))) => {
            eprintln!("balsa bench: cannot write {}: {error}", path.display());
            return ExitCode::from(2);
        }
    };
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
        workload: args.workload,
        duration: None,
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
    // A put run's progress reads as it always did.
    let unit = if args.workload == Workload::Put {
        "writes"
    } else {
        "operations"
    };
    let mut told_first_error = false;
    let mut progress = |progress: LoadProgress| {
        if let Some(first) = &progress.first_error
            && !told_first_error
        {
            told_first_error = true;
            eprintln!("\rbalsa bench: failing: {first}");
        }
        eprint!("{}", progress_line(&progress, unit));
        let _ = std::io::stderr().flush();
    };
    let (outcome, stopped) = match load::run(&load, &mut progress) {
        Ok(mut outcome) => {
            let stopped = outcome.stopped.take();
            (Figures::from((args.workload, outcome)), stopped)
        }
        Err(error) => {
            eprintln!("balsa bench: {error}");
            return ExitCode::from(2);
        }
    };
    let measured = outcome.writes.ops() + outcome.reads.ops();
    eprintln!("\rbalsa bench: {measured}/{} {unit}", args.ops);
    if args.json {
        println!("{}", outcome.to_json());
    } else {
        print!("{}", outcome.table(args.value_size));
    }
    for (file, kind, mut out) in hgrm_out {
        let written =
            write_hgrm(&outcome.of(kind).latency_us, &mut out).and_then(|()| out.sync_all());
        if let Err(error) = written {
            eprintln!("balsa bench: writing {}: {error}", file.display());
            return ExitCode::from(2);
        }
    }
    if let (Some(path), Some(out)) = (&args.plot, plot_out)
        && let Err(error) = plot_run(out, &outcome, &args)
    {
        eprintln!("balsa bench: writing {}: {error}", path.display());
        return ExitCode::from(2);
    }
    if outcome.read_misses > 0 {
        eprintln!(
            "balsa bench: {} reads found their key absent (a warm-up write of it failed?)",
            outcome.read_misses
        );
    }
    if outcome.errors() > 0 {
        let failed = match (outcome.writes.errors, outcome.reads.errors) {
            (writes, 0) => format!("{writes} writes failed"),
            (0, reads) => format!("{reads} reads failed"),
            (writes, reads) => format!("{writes} writes and {reads} reads failed"),
        };
        eprintln!(
            "balsa bench: {failed}; the first: {}",
            outcome.first_error.as_deref().unwrap_or("?")
        );
        if let Some(why) = &stopped {
            eprintln!("balsa bench: stopped early: {why}");
        }
        if let Some(hint) = diagnose(&args.endpoints.addresses, key.as_ref()) {
            eprintln!("balsa bench: hint: {hint}");
        }
        return ExitCode::from(3);
    }
    ExitCode::SUCCESS
}

/// The progress line (after a carriage return, no newline): the measured operations done of
/// those asked for, and the failed ones when there are some.
fn progress_line(progress: &LoadProgress, unit: &str) -> String {
    let mut line = if progress.warming_up {
        String::from("\rbalsa bench: warming up")
    } else {
        format!("\rbalsa bench: {}/{} {unit}", progress.done, progress.total)
    };
    if progress.failed > 0 {
        line.push_str(&format!(", {} failed", progress.failed));
    }
    line
}

/// The `--hgrm` files of a run and what each holds: `path` the first kind the workload
/// measures (writes, or reads when it has no writes); for `mixed`, the reads in `path.reads`.
fn hgrm_files(path: &Path, workload: Workload) -> Vec<(PathBuf, OpKind)> {
    kinds_of(workload)
        .into_iter()
        .enumerate()
        .map(|(position, kind)| {
            if position == 0 {
                (path.to_path_buf(), kind)
            } else {
                (with_suffix(path, ".reads"), kind)
            }
        })
        .collect()
}

/// `path` with `suffix` after its whole name (`run.hgrm` → `run.hgrm.reads`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// `--plot` of a run into `out` (created before the run): the percentile panel and the panel
/// over time, of each kind measured.
fn plot_run(mut out: File, figures: &Figures, args: &BenchArgs) -> std::io::Result<()> {
    let mut curves = Vec::new();
    let mut timelines = Vec::new();
    for kind in figures.kinds() {
        let reads = kind == OpKind::Reads;
        let label = figures.label(kind);
        let of_kind = figures.of(kind);
        let (colour, _) = plot::kind_colours(reads);
        curves.push(Curve {
            label: label.to_owned(),
            colour,
            steps: percentile_steps(&of_kind.latency_us)
                .into_iter()
                .map(|(percentile, us, _)| (percentile, us))
                .collect(),
            count: of_kind.ops(),
        });
        timelines.push(plot::timeline(label, reads, &of_kind.raw, figures.elapsed));
    }
    let sockets = if args.shared_sockets {
        "shared sockets"
    } else {
        "a socket per client"
    };
    let title = format!(
        "balsa bench · {} · {} clients",
        figures.workload, figures.clients
    );
    let subtitle = format!(
        "{} measured operations in {:.2} s, {} failed; values of {} bytes, {sockets}; {} endpoints",
        plot::thousands(figures.writes.ops() + figures.reads.ops()),
        figures.elapsed.as_secs_f64(),
        plot::thousands(figures.errors()),
        args.value_size,
        args.endpoints.addresses.len(),
    );
    plot::write_run_svg(&title, &subtitle, &curves, &timelines, &mut out)?;
    out.sync_all()
}

/// Why `--compare` drew nothing.
#[derive(Debug)]
enum CompareError {
    /// More files than colours.
    TooMany(usize),
    /// A file that is not a percentile distribution.
    Hgrm(hgrm::HgrmError),
    /// The picture could not be written.
    Write(PathBuf, std::io::Error),
}

impl std::fmt::Display for CompareError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CompareError::TooMany(count) => write!(
                f,
                "--compare takes at most {} files (one colour each), not {count}",
                COMPARE_COLOURS.len()
            ),
            CompareError::Hgrm(error) => write!(f, "--compare {error}"),
            CompareError::Write(path, error) => write!(f, "writing {}: {error}", path.display()),
        }
    }
}

/// `--compare FILES --plot PLOT`: the files' percentile curves on one chart.
fn compare(files: &[PathBuf], plot_path: &Path) -> Result<(), CompareError> {
    if files.len() > COMPARE_COLOURS.len() {
        return Err(CompareError::TooMany(files.len()));
    }
    let mut curves = Vec::new();
    for (file, colour) in files.iter().zip(COMPARE_COLOURS) {
        let steps = hgrm::read(file).map_err(CompareError::Hgrm)?;
        let label = file.file_name().map_or_else(
            || file.display().to_string(),
            |name| name.to_string_lossy().into_owned(),
        );
        curves.push(Curve {
            label,
            colour,
            count: steps.last().map_or(0, |step| step.total_count),
            steps: steps
                .iter()
                .map(|step| (step.percentile, step.value))
                .collect(),
        });
    }
    let subtitle = format!(
        "{} runs saved with --hgrm (values read as µs)",
        curves.len()
    );
    let written = std::fs::File::create(plot_path).and_then(|mut out| {
        plot::write_compare_svg("balsa bench --compare", &subtitle, &curves, &mut out)?;
        out.sync_all()
    });
    written.map_err(|error| CompareError::Write(plot_path.to_path_buf(), error))
}

/// After failed operations: what to do about keys, if they are the likely cause. Asks every
/// endpoint for its status once (a node that cannot open a request says so, which an operation
/// of the load may not have heard: the load's clients only count their failures).
pub(crate) fn diagnose(endpoints: &[SocketAddr], key: Option<&ClientKey>) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `--hgrm FILE` holds the one kind a workload measures; a mixed run's reads go beside it,
    /// in FILE.reads. Known from the workload alone, before the run.
    #[test]
    fn a_mixed_run_writes_its_reads_beside_its_writes() {
        let path = Path::new("out/run.hgrm");
        let mixed = Workload::Mixed {
            reads_per_million: 100_000,
        };
        assert_eq!(
            hgrm_files(path, mixed),
            vec![
                (PathBuf::from("out/run.hgrm"), OpKind::Writes),
                (PathBuf::from("out/run.hgrm.reads"), OpKind::Reads),
            ]
        );
        for (workload, kind) in [
            (Workload::Put, OpKind::Writes),
            (Workload::Get, OpKind::Reads),
            (Workload::GetStale, OpKind::Reads),
        ] {
            assert_eq!(
                hgrm_files(path, workload),
                vec![(path.to_path_buf(), kind)],
                "{workload}"
            );
        }
    }

    #[test]
    fn the_progress_line_shows_failures_as_they_happen() {
        let mut progress = LoadProgress {
            warming_up: true,
            done: 0,
            total: 100,
            failed: 0,
            first_error: None,
        };
        assert_eq!(
            progress_line(&progress, "writes"),
            "\rbalsa bench: warming up"
        );
        progress.failed = 3;
        assert_eq!(
            progress_line(&progress, "writes"),
            "\rbalsa bench: warming up, 3 failed"
        );
        progress.warming_up = false;
        progress.done = 40;
        assert_eq!(
            progress_line(&progress, "writes"),
            "\rbalsa bench: 40/100 writes, 3 failed"
        );
        progress.failed = 0;
        assert_eq!(
            progress_line(&progress, "operations"),
            "\rbalsa bench: 40/100 operations"
        );
    }
}
