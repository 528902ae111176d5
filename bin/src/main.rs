//! The `balsa` command.
//!
//! It will run standalone nodes (`serve`, `cluster`, `demo`), act as a client (`put`, `get`, `del`,
//! `cas`, `status`, `members`, `transfer`), measure (`bench`) and run the simulator (`sim`).
//! Today only `sim` is built; every other subcommand says so.

mod sim;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("sim") {
        return sim::main(&args[1..]);
    }
    let version = env!("CARGO_PKG_VERSION");
    #[allow(clippy::print_stderr, reason = "the command's one line of output")]
    {
        eprintln!(
            "balsa {version}: the node is coming; today the write-ahead log (balsa-wal) and the \
             simulator (`balsa sim --seeds N`) are built. Run `cargo test --workspace --release` \
             to test them."
        );
    }
    ExitCode::from(2)
}
