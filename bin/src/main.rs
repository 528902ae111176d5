//! The `balsa` command: runs nodes (`serve`, `cluster`, `demo`), acts as a client of the
//! key-value service (`put`, `get`, `del`, `cas`, `status`, `transfer`), measures commit
//! latency (`bench`) and runs the deterministic simulator (`sim`). `balsa --help` lists every
//! form.
//!
//! Files: `args.rs` (the command line), `serve.rs`, `cluster.rs` (and the child-process handle),
//! `demo.rs`, `client_cmds.rs` (with `status --json` through `serde_json`), `bench.rs`
//! (closed-loop load), `logger.rs` (stderr logging for `serve`, through `env_logger`), `sim.rs`.
//!
//! Exit status: 0 success; 1 key absent or compare-and-swap mismatch (a node that cannot start
//! or stops on a storage failure also exits 1); 2 bad usage or configuration; 3 cluster
//! unavailable or timeout (outcome unknown).

mod args;
mod bench;
mod client_cmds;
mod cluster;
mod demo;
mod logger;
mod serve;
mod sim;

use std::process::ExitCode;

use args::Invocation;

fn main() -> ExitCode {
    let mut args = Vec::new();
    for (position, arg) in std::env::args_os().skip(1).enumerate() {
        match arg.into_string() {
            Ok(arg) => args.push(arg),
            Err(arg) => {
                return usage_error(&format!(
                    "balsa: argument {} ({arg:?}) is not valid UTF-8",
                    position + 1
                ));
            }
        }
    }
    match args::parse(&args) {
        Ok(Invocation::Help(usage)) => help(usage),
        Ok(Invocation::Sim(sim_args)) => sim::main(&sim_args),
        Ok(Invocation::Serve(serve_args)) => serve::run(serve_args),
        Ok(Invocation::Cluster(cluster_args)) => cluster::run(cluster_args),
        Ok(Invocation::Demo) => demo::run(),
        Ok(Invocation::Bench(bench_args)) => bench::run(bench_args),
        Ok(Invocation::Client {
            endpoints,
            operation,
        }) => client_cmds::run(endpoints, operation),
        Err(error) => usage_error(&error.to_string()),
    }
}

#[allow(clippy::print_stdout, reason = "the usage asked for")]
fn help(usage: &str) -> ExitCode {
    println!("{usage}");
    ExitCode::SUCCESS
}

#[allow(clippy::print_stderr, reason = "the command's one-line error")]
fn usage_error(message: &str) -> ExitCode {
    eprintln!("{message}");
    ExitCode::from(2)
}
