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
//! `--fault NAME` plants one of the core's classic bugs ([`sim::FAULT_NAMES`]);
//! `--no-rule-checks` leaves only the checks of consequences; `--stale-reads` plants a stale
//! read in the clients; `--liveness-down K` keeps K nodes down through the liveness phase;
//! `--ticks T` sets the length of the chaos phase. `--trace` prints every step of every core
//! and every nemesis action (read a failing seed with it). The flags are [`SimArgs`]'s.
//!
//! Exit status: 0 when every seed passed, 1 on a violation (or when stdout closes early); bad
//! usage was refused with exit status 2 before this runs.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Instant;

use balsa::sim::{self, FaultCounts, Linearizability, Report, SimConfig};

use crate::args::SimArgs;

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

/// The runs `args` asks for, or why they cannot run in this build.
fn options(args: &SimArgs) -> Result<Options, String> {
    if (!args.faults.is_empty() || args.stale_reads) && !sim::PLANTED_BUGS {
        return Err(
            "planting a bug (--fault, --stale-reads) needs a build with them: cargo run \
                    --release -p balsa-cli --features planted-bugs -- sim ..."
                .to_owned(),
        );
    }
    let mut template = SimConfig::new(3);
    for name in &args.faults {
        let known = sim::set_fault(&mut template.faults, name);
        // The flag's parser accepts only `sim::FAULT_NAMES`.
        assert!(known, "unknown fault {name:?} got past the parser");
    }
    template.chaos_ticks = args.ticks;
    template.rule_checks = !args.no_rule_checks;
    template.liveness_down = args.liveness_down;
    template.stale_reads = args.stale_reads;
    template.trace = args.trace;
    template.membership = match args.membership {
        crate::args::MembershipArg::Some => sim::MembershipRuns::Some,
        crate::args::MembershipArg::All => sim::MembershipRuns::All,
        crate::args::MembershipArg::None => sim::MembershipRuns::None,
    };
    Ok(Options {
        first_seed: args.first_seed(),
        seeds: args.seed_count(),
        nodes: args.nodes,
        template,
        verbose: args.verbose,
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

/// Runs `balsa sim`.
#[allow(
    clippy::print_stderr,
    reason = "a refusal is one line on stderr, as every command's"
)]
pub fn main(args: &SimArgs) -> ExitCode {
    let options = match options(args) {
        Ok(options) => options,
        Err(refusal) => {
            eprintln!("balsa sim: {refusal}");
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
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};

    fn options_of(line: &str) -> Options {
        planted(line).expect("this line plants no bug")
    }

    /// The options of a line that may plant a bug: `None` (refused, naming the feature) in a
    /// build without planted bugs.
    fn planted(line: &str) -> Option<Options> {
        let cli = Cli::try_parse_from(["balsa", "sim"].into_iter().chain(line.split_whitespace()))
            .expect("a valid sim line");
        let Command::Sim(args) = cli.command else {
            panic!("{line:?} is not sim");
        };
        match options(&args) {
            Ok(options) => Some(options),
            Err(refusal) => {
                assert!(refusal.contains("--features planted-bugs"), "{refusal}");
                None
            }
        }
    }

    #[test]
    fn a_seed_alone_runs_that_seed() {
        let options = options_of("--seed 7 --nodes 5");
        assert_eq!(
            (options.first_seed, options.seeds, options.nodes),
            (7, 1, Some(5))
        );
        let defaults = SimConfig::new(3);
        assert_eq!(options.template.chaos_ticks, defaults.chaos_ticks);
        assert!(options.template.rule_checks);
    }

    #[test]
    fn every_flag_reaches_the_template() {
        let Some(options) = planted(
            "--seeds 4 --seed 2 --ticks 50 --no-rule-checks --liveness-down 1 --stale-reads \
             --trace --verbose",
        ) else {
            return; // a build without planted bugs refuses --stale-reads (checked in planted)
        };
        assert_eq!(
            (options.first_seed, options.seeds, options.nodes),
            (2, 4, None)
        );
        let template = &options.template;
        assert_eq!((template.chaos_ticks, template.liveness_down), (50, 1));
        assert!(!template.rule_checks && template.stale_reads && template.trace);
        assert!(options.verbose);
    }

    #[test]
    fn fault_switches_are_set_by_name() {
        for name in sim::FAULT_NAMES {
            let Some(options) = planted(&format!("--seeds 1 --fault {name}")) else {
                return; // a build without planted bugs refuses them all (checked in planted)
            };
            let mut expected = SimConfig::new(3).faults;
            assert!(sim::set_fault(&mut expected, name));
            assert_eq!(options.template.faults, expected, "{name}");
        }
        let both = planted("--seeds 1 --fault forget-vote-on-restart --fault ack-before-persist")
            .expect("accepted, as the single faults were");
        assert!(both.template.faults.forget_vote_on_restart);
        assert!(both.template.faults.ack_before_persist);
    }
}
