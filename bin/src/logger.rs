//! The `log` backend of `balsa serve`: one line per record on stderr, prefixed with the time
//! since the process started, the level and the node.
//!
//! ```text
//! [   0.231s INFO  node 2] now Leader in term 1, leader Some(2)
//! ```
//!
//! The level comes from the `BALSA_LOG` environment variable (`off`, `error`, `warn`, `info`,
//! `debug`, `trace`); `info` by default.

use std::io::Write;
use std::sync::OnceLock;
use std::time::Instant;

use log::{LevelFilter, Log, Metadata, Record};

struct StderrLogger {
    started: Instant,
    /// Who is logging: `node 2`.
    name: String,
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        // One write per line, so lines from threads do not interleave; a closed stderr is
        // nothing to report.
        let line = format!(
            "[{elapsed:8.3}s {:<5} {}] {}\n",
            record.level(),
            self.name,
            record.args()
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

static LOGGER: OnceLock<StderrLogger> = OnceLock::new();

/// Installs the logger for the process, naming the records `name`. A second call changes
/// nothing.
#[allow(
    clippy::disallowed_methods,
    reason = "log lines carry the time since start; the binary may read the clock"
)]
pub fn init(name: String) {
    let level = match std::env::var("BALSA_LOG").as_deref() {
        Ok("off") => LevelFilter::Off,
        Ok("error") => LevelFilter::Error,
        Ok("warn") => LevelFilter::Warn,
        Ok("debug") => LevelFilter::Debug,
        Ok("trace") => LevelFilter::Trace,
        _ => LevelFilter::Info,
    };
    let logger = LOGGER.get_or_init(|| StderrLogger {
        started: Instant::now(),
        name,
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}
