//! The `balsa` command.
//!
//! It will run standalone nodes (`serve`, `cluster`, `demo`), act as a client (`put`, `get`, `del`,
//! `cas`, `status`, `members`, `transfer`), measure (`bench`) and run the simulator (`sim`).
//! Until the node exists it only says so.

use std::process::ExitCode;

fn main() -> ExitCode {
    let version = env!("CARGO_PKG_VERSION");
    #[allow(clippy::print_stderr, reason = "the command's one line of output")]
    {
        eprintln!(
            "balsa {version}: the node is coming; today the write-ahead log (balsa-wal) is built. \
             Run `cargo test --workspace --release` to test it."
        );
    }
    ExitCode::from(2)
}
