//! The `balsa` command: runs nodes (`serve`, `cluster`, `demo`), acts as a client of the
//! key-value service (`put`, `get`, `del`, `cas`, `status`, `transfer`, `snapshot`), backs up
//! and restores (`snapshot save`, `restore`), lists and changes the cluster's members (`members`), measures latency (`bench`), checks a cluster's
//! performance against the machine's floor (`check perf`), runs the deterministic simulator
//! (`sim`), makes keys (`keygen`) and prints shell completions (`completions`). `balsa --help`
//! lists every form, `balsa CMD --help` its flags.
//!
//! Files: `args.rs` (the command line, as clap structs), `serve.rs`, `config.rs` (`serve
//! --config FILE.toml` and `--print-config`, through `toml`), `cluster.rs` (and the
//! child-process handle), `demo.rs`, `client_cmds.rs` (with `status --json` through
//! `serde_json`), `watch.rs` (`status --watch`), `members.rs` (`members`: list and changes),
//! `bench.rs` (closed-loop load, its figures, `.hgrm` files and plots), `check.rs` (`check
//! perf`), `logger.rs` (stderr logging for `serve`, through `env_logger`), `metrics.rs`
//! (`serve --metrics-addr`), `backup.rs` (`snapshot save`, `restore` and their file),
//! `keys.rs` (`keygen`, the client key of the client commands, the keys `cluster`, `demo` and
//! `torture` make), `sim.rs`.
//!
//! Exit status: 0 success (`--help` and `--version` too, on stdout); 1 key absent or
//! compare-and-swap mismatch, or a `check perf` criterion failed (a node that cannot start or
//! stops on a storage failure, or at a second signal, also exits 1); 2 bad usage or
//! configuration (for `serve`, also a data directory of another node or cluster, or one that is
//! a file, or no keys without `--insecure`; a key file that cannot be used, or that `keygen`
//! would overwrite), or a membership change refused as asked,
//! with one line on stderr; 3 cluster unavailable or timeout (outcome unknown; for `serve
//! --join`, no member answered), or requests the cluster could not authenticate.

mod args;
mod backup;
mod bench;
mod check;
mod client_cmds;
mod cluster;
mod config;
mod demo;
mod keys;
mod kv_io;
mod logger;
mod members;
mod metrics;
mod serve;
mod sim;
mod torture;
mod watch;

use std::process::ExitCode;

use args::{Command, NotRun};
use clap::CommandFactory;

fn main() -> ExitCode {
    let cli = match args::parse(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(NotRun::Answer(answer)) => {
            // `--help` or `--version`, on stdout; a closed stdout leaves nothing to tell.
            let _ = answer.print();
            return ExitCode::SUCCESS;
        }
        Err(NotRun::Refused(line)) => return usage_error(&line),
    };
    match cli.command {
        Command::Serve(serve_args) => serve::run(serve_args),
        Command::Cluster(cluster_args) => cluster::run(cluster_args),
        Command::Demo => demo::run(),
        Command::Keygen(keygen_args) => keys::keygen(&keygen_args),
        Command::Client(client_command) => client_cmds::run(client_command),
        Command::Members(members_args) => members::run(members_args),
        Command::Bench(bench_args) => bench::run(bench_args),
        Command::Check(check_args) => check::run(check_args),
        Command::Restore(restore_args) => backup::restore(restore_args),
        Command::Sim(sim_args) => sim::main(&sim_args),
        Command::Torture(torture_args) => torture::run(torture_args),
        Command::Completions(completions) => {
            let mut command = args::Cli::command();
            clap_complete::generate(
                completions.shell,
                &mut command,
                "balsa",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
    }
}

#[allow(clippy::print_stderr, reason = "the command's one-line error")]
fn usage_error(message: &str) -> ExitCode {
    eprintln!("{message}");
    ExitCode::from(2)
}
