//! The `log` backend of `balsa serve`: `env_logger`, one line per record on stderr, prefixed
//! with the time since the process started, the level and the node.
//!
//! ```text
//! [   0.231s INFO  node 2] now Leader in term 1, leader Some(2)
//! ```
//!
//! The filter is `BALSA_LOG`, or `RUST_LOG` when `BALSA_LOG` is unset or empty, in
//! `env_logger`'s syntax (a level — `off`, `error`, `warn`, `info`, `debug`, `trace` — or
//! `module=level,...`); `info` when neither is set.

use std::io::Write;
use std::time::Instant;

/// The variables the filter is read from, the first one set winning.
const FILTER_VARIABLES: [&str; 2] = ["BALSA_LOG", "RUST_LOG"];

/// Installs the logger for the process, naming the records `name`. A second call changes
/// nothing.
#[allow(
    clippy::disallowed_methods,
    reason = "log lines carry the time since start; the binary may read the clock"
)]
pub fn init(name: String) {
    let filter = FILTER_VARIABLES
        .iter()
        .filter_map(|variable| std::env::var(variable).ok())
        .find(|value| !value.is_empty())
        .unwrap_or_else(|| String::from("info"));
    let started = Instant::now();
    let installed = env_logger::Builder::new()
        .parse_filters(&filter)
        .target(env_logger::Target::Stderr)
        .format(move |line, record| {
            // env_logger writes each record whole, so lines from threads do not interleave.
            writeln!(
                line,
                "[{:8.3}s {:<5} {name}] {}",
                started.elapsed().as_secs_f64(),
                record.level(),
                record.args()
            )
        })
        .try_init();
    // An error means a logger is installed already: the first one stays.
    drop(installed);
}
