//! `balsa sim`: runs the deterministic simulator over a range of seeds and reports.
//!
//! ```text
//! balsa sim --seeds N [--seed S] [--nodes K] [--fault NAME]... [--ticks T]
//!           [--no-rule-checks] [--liveness-down K] [--stale-reads] [--verbose] [--trace]
//! ```
//!
//! Runs seeds `S .. S+N` (`S` defaults to 0, `N` to 1 when `--seed` is given). Without
//! `--nodes`, seed `s` runs 3, 5 or 7 nodes by `s % 3`. Prints seeds per second, steps, faults
//! injected and violations; every failing seed is printed with the command that replays it.
//! `--fault NAME` plants one of the core's classic bugs (`ack-before-persist`,
//! `commit-old-terms-by-counting`, `vote-without-log-check`, `forget-vote-on-restart`,
//! `snapshot-with-current-term`);
//! `--no-rule-checks` leaves only the checks of consequences; `--stale-reads` plants a stale
//! read in the clients; `--liveness-down K` keeps K nodes down through the liveness phase;
//! `--ticks T` sets the length of the chaos phase (default 2000). `--trace` prints every step of
//! every core and every nemesis action (read a failing seed with it).
//!
//! Exit status: 0 when every seed passed, 1 on a violation (or when stdout closes early), 2 on
//! bad usage (with a one-line error on stderr).

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Instant;

use balsa::sim::{self, FaultCounts, Linearizability, Report, SimConfig};

const USAGE: &str = "usage: balsa sim --seeds N [--seed S] [--nodes K] [--fault NAME]... \
                     [--ticks T] [--no-rule-checks] [--liveness-down K] [--stale-reads] \
                     [--verbose] [--trace]";

/// What the command line asked for.
#[derive(Debug)]
struct Options {
    first_seed: u64,
    seeds: u64,
    /// `None`: 3, 5, 7 by seed.
    nodes: Option<u64>,
    /// Applied to every run (its `nodes` is replaced per seed).
    template: SimConfig,
    verbose: bool,
}

/// Parses the arguments after `sim`. The error is one line for stderr.
fn parse(args: &[String]) -> Result<Options, String> {
    let mut first_seed = None;
    let mut seeds = None;
    let mut nodes = None;
    let mut template = SimConfig::new(3);
    let mut verbose = false;
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = |what: &str| -> Result<String, String> {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs {what}"))
        };
        let number = |text: String| -> Result<u64, String> {
            text.parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {text:?}"))
        };
        match flag.as_str() {
            "--seeds" => seeds = Some(number(value("a count")?)?),
            "--seed" => first_seed = Some(number(value("a seed")?)?),
            "--nodes" => {
                let count = number(value("a node count")?)?;
                if !(2..=15).contains(&count) {
                    return Err(format!("--nodes must be between 2 and 15, not {count}"));
                }
                nodes = Some(count);
            }
            "--fault" => {
                let name = value("a fault name")?;
                if !sim::set_fault(&mut template.faults, &name) {
                    return Err(format!(
                        "unknown fault {name:?}; known: {}",
                        sim::FAULT_NAMES.join(", ")
                    ));
                }
            }
            "--ticks" => template.chaos_ticks = number(value("a tick count")?)?,
            "--no-rule-checks" => template.rule_checks = false,
            "--liveness-down" => template.liveness_down = number(value("a node count")?)?,
            "--stale-reads" => template.stale_reads = true,
            "--verbose" | "-v" => verbose = true,
            "--trace" => template.trace = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let seeds = match (seeds, first_seed) {
        (Some(0), _) => return Err("--seeds must be at least 1".to_owned()),
        (Some(count), _) => count,
        (None, Some(_)) => 1,
        (None, None) => return Err("give --seeds N or --seed S".to_owned()),
    };
    let first_seed = first_seed.unwrap_or(0);
    if first_seed.checked_add(seeds).is_none() {
        return Err("--seed + --seeds overflows".to_owned());
    }
    Ok(Options {
        first_seed,
        seeds,
        nodes,
        template,
        verbose,
    })
}

/// Totals over the seeds run.
#[derive(Debug, Default)]
struct Totals {
    steps: u64,
    ticks: u64,
    faults: FaultCounts,
    committed_writes: u64,
    reads: u64,
    linearizable: u64,
    inconclusive: u64,
    failed_seeds: u64,
}

impl Totals {
    fn add(&mut self, report: &Report) {
        self.steps += report.steps;
        self.ticks += report.ticks;
        self.faults.add(&report.faults);
        self.committed_writes += report.committed_writes;
        self.reads += report.reads;
        match report.linearizability {
            Linearizability::Ok => self.linearizable += 1,
            Linearizability::Inconclusive(_) => self.inconclusive += 1,
            Linearizability::NotChecked | Linearizability::Violated => {}
        }
        if !report.passed() {
            self.failed_seeds += 1;
        }
    }
}

/// Runs `balsa sim` with the arguments after `sim`.
#[allow(
    clippy::print_stderr,
    reason = "a usage error is the command's one line on stderr"
)]
pub fn main(args: &[String]) -> ExitCode {
    let options = match parse(args) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("balsa sim: {error} ({USAGE})");
            return ExitCode::from(2);
        }
    };
    match run(&options, &mut std::io::stdout().lock()) {
        Ok(totals) if totals.failed_seeds > 0 => ExitCode::from(1),
        Ok(_) => ExitCode::SUCCESS,
        // Stdout went away (say, `| head`): nothing more to say, and no verdict to give.
        Err(_) => ExitCode::from(1),
    }
}

/// Runs the seeds, writing the report to `out`.
#[allow(
    clippy::disallowed_methods,
    reason = "seeds per second is wall-clock time; the simulation itself never reads a clock"
)]
fn run(options: &Options, out: &mut impl Write) -> io::Result<Totals> {
    let started = Instant::now();
    let mut totals = Totals::default();
    for seed in options.first_seed..options.first_seed + options.seeds {
        let mut config = options.template.clone();
        config.nodes = options.nodes.unwrap_or_else(|| sim::nodes_for_seed(seed));
        let report = sim::run(seed, &config);
        totals.add(&report);
        for line in &report.trace {
            writeln!(out, "{line}")?;
        }
        if options.verbose {
            writeln!(
                out,
                "seed {seed} ({} nodes): {} steps, {} ticks, {} writes, {} reads, liveness in \
                 {:?} ticks, linearizability {:?}, digest {:016x}",
                report.nodes,
                report.steps,
                report.ticks,
                report.committed_writes,
                report.reads,
                report.liveness_ticks,
                report.linearizability,
                report.digest
            )?;
        }
        if let Linearizability::Inconclusive(message) = &report.linearizability {
            writeln!(
                out,
                "seed {seed}: linearizability inconclusive (not a violation): {message}"
            )?;
        }
        for violation in &report.violations {
            writeln!(
                out,
                "seed {seed} ({} nodes): VIOLATION {violation}",
                report.nodes
            )?;
            writeln!(out, "  replay: {}", sim::replay_command(seed, &config))?;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let seeds_per_second = options.seeds as f64 / seconds.max(1e-9);
    let plural = if options.seeds == 1 { "" } else { "s" };
    writeln!(
        out,
        "balsa sim: {} seed{plural} from {} in {seconds:.2} s ({seeds_per_second:.1} seeds/s), \
         {} steps, {} ticks",
        options.seeds, options.first_seed, totals.steps, totals.ticks
    )?;
    writeln!(out, "faults injected: {}", totals.faults)?;
    writeln!(
        out,
        "clients: {} writes committed, {} reads answered; linearizability: {} linearizable, {} \
         inconclusive",
        totals.committed_writes, totals.reads, totals.linearizable, totals.inconclusive
    )?;
    writeln!(out, "violations: {} seeds failed", totals.failed_seeds)?;
    Ok(totals)
}

#[cfg(test)]
mod tests {
    use super::parse;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn a_seed_alone_runs_that_seed() {
        let options = parse(&args("--seed 7 --nodes 5")).expect("valid");
        assert_eq!(
            (options.first_seed, options.seeds, options.nodes),
            (7, 1, Some(5))
        );
    }

    #[test]
    fn bad_usage_is_an_error() {
        assert!(parse(&args("")).is_err());
        assert!(parse(&args("--seeds")).is_err());
        assert!(parse(&args("--seeds x")).is_err());
        assert!(parse(&args("--seeds 3 --bogus")).is_err());
        assert!(parse(&args("--seeds 3 --fault nope")).is_err());
        assert!(parse(&args("--seeds 3 --nodes 1")).is_err());
    }

    #[test]
    fn fault_switches_are_set_by_name() {
        let options = parse(&args("--seeds 1 --fault forget-vote-on-restart")).expect("valid");
        assert!(options.template.faults.forget_vote_on_restart);
    }
}
