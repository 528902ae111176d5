//! The `log` backend of `balsa serve`: `env_logger`, one line per record on stderr, prefixed
//! with the wall-clock time in RFC 3339, UTC, to the microsecond (so the logs of several
//! nodes, on one machine or several, line up), the level and the node.
//!
//! ```text
//! [2025-06-01T09:12:03.231544Z INFO  node 2] now Leader in term 1, leader Some(2)
//! ```
//!
//! The filter is `BALSA_LOG`, or `RUST_LOG` when `BALSA_LOG` is unset or empty, in
//! `env_logger`'s syntax (a level — `off`, `error`, `warn`, `info`, `debug`, `trace` — or
//! `module=level,...`); `info` when neither is set.

use std::io::Write;

/// The variables the filter is read from, the first one set winning.
const FILTER_VARIABLES: [&str; 2] = ["BALSA_LOG", "RUST_LOG"];

/// Installs the logger for the process, naming the records `name`. A second call changes
/// nothing.
pub fn init(name: String) {
    let filter = FILTER_VARIABLES
        .iter()
        .filter_map(|variable| std::env::var(variable).ok())
        .find(|value| !value.is_empty())
        .unwrap_or_else(|| String::from("info"));
    let installed = env_logger::Builder::new()
        .parse_filters(&filter)
        .target(env_logger::Target::Stderr)
        .format(move |line, record| {
            // env_logger writes each record whole, so lines from threads do not interleave.
            // env_logger reads the wall clock for the time (RFC 3339, UTC).
            let time = line.timestamp_micros();
            writeln!(
                line,
                "[{time} {:<5} {name}] {}",
                record.level(),
                record.args()
            )
        })
        .try_init();
    // An error means a logger is installed already: the first one stays.
    drop(installed);
}
