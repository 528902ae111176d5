//! `balsa status --watch`: every endpoint's status, asked again every `--interval` (1 s by
//! default) until Ctrl-C or SIGTERM, which end it with exit status 0.
//!
//! Output, one refresh at a time ([`frame`]):
//! - on a terminal, the screen is cleared (ANSI: cursor home, erase display) and redrawn: a
//!   line with the time and the interval, a blank line, the status table;
//! - otherwise (a pipe, a file), a line `--- TIME` and the table after it, so that a log of
//!   the watch reads in order;
//! - with `--json` (terminal or not), one line per refresh: a JSON object `{"time": TIME,
//!   "endpoints": [...]}`, the array the one `status --json` prints.
//!
//! TIME is UTC in RFC 3339 with milliseconds (`2025-06-01T12:00:03.123Z`). The table is
//! `status`'s, its rows in the order of `--endpoints` (every answer is in before a refresh is
//! shown), then the lines of suspicious sources.
//!
//! Rules it keeps: nothing a node does ends the watch — an endpoint that does not answer
//! within `--timeout` (1 s by default) has its `unreachable` row in that refresh, and the next
//! refresh asks it again. Refreshes start every interval from the first; one that took longer
//! than the interval (a silent node costs the timeout) is followed by the next at once. A
//! stdout that is closed ends the watch too (exit 0: nobody is watching). When no endpoint
//! has answered yet and keys look like the cause, the `hint:` line goes to stderr once.

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use balsa::client::{Client, ClientError};
use balsa::runtime::wire::StatusReport;

use crate::client_cmds::{status_table, status_watch_json, suspicious_lines};
use crate::keys::{self, ClientKey};

/// Cursor home, then erase the whole display.
const CLEAR_SCREEN: &str = "\x1b[H\x1b[2J";

/// How each refresh is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// On a terminal: redrawn in place.
    Screen,
    /// Not on a terminal: each refresh after a `--- TIME` line.
    Log,
    /// `--json`: one object per line.
    Json,
}

/// Runs `balsa status --watch` with `client` on `endpoints` until Ctrl-C or SIGTERM.
#[allow(
    clippy::disallowed_methods,
    reason = "the watch runs on the wall clock: its refreshes are timed and stamped"
)]
#[allow(clippy::print_stderr, reason = "the one-time hint about keys")]
pub fn run(
    client: &mut Client,
    endpoints: &[SocketAddr],
    json: bool,
    interval: Duration,
    key: Option<&ClientKey>,
) -> ExitCode {
    let (stop, stopped) = mpsc::sync_channel::<()>(1);
    // Ctrl-C and SIGTERM (the crate's `termination` feature) end the wait between refreshes.
    // No other handler is set in this process; were one set, the signals would end the
    // process as by default.
    let _ = ctrlc::set_handler(move || {
        let _ = stop.try_send(());
    });
    let style = match (json, std::io::stdout().is_terminal()) {
        (true, _) => Style::Json,
        (false, true) => Style::Screen,
        (false, false) => Style::Log,
    };
    // Whether any endpoint ever answered (then keys are not why one is silent), and whether
    // the hint was given.
    let (mut answered, mut hinted) = (false, false);
    let mut next = Instant::now();
    loop {
        let reports = client.status_all(endpoints);
        let shown = frame(style, SystemTime::now(), interval, endpoints, &reports);
        let mut stdout = std::io::stdout().lock();
        if stdout
            .write_all(shown.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            // Nobody reads the watch any more.
            return ExitCode::SUCCESS;
        }
        drop(stdout);
        answered |= reports.iter().any(Result::is_ok);
        if !hinted && !answered {
            let hint = reports
                .iter()
                .filter_map(|report| report.as_ref().err())
                .find_map(|error| keys::hint(error, key));
            if let Some(hint) = hint {
                eprintln!("balsa status: hint: {hint}");
                hinted = true;
            }
        }
        next += interval;
        let now = Instant::now();
        next = next.max(now);
        match stopped.recv_timeout(next - now) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return ExitCode::SUCCESS,
        }
    }
}

/// What one refresh at `time` shows, in `style`, ending with a newline.
pub fn frame(
    style: Style,
    time: SystemTime,
    interval: Duration,
    endpoints: &[SocketAddr],
    reports: &[Result<StatusReport, ClientError>],
) -> String {
    let time = utc(time);
    if style == Style::Json {
        return status_watch_json(&time, endpoints, reports) + "\n";
    }
    let mut table = status_table(endpoints, reports);
    for (endpoint, report) in endpoints.iter().zip(reports) {
        if let Ok(report) = report {
            for line in suspicious_lines(*endpoint, &report.suspicious_sources) {
                table.push('\n');
                table.push_str(&line);
            }
        }
    }
    match style {
        Style::Screen => format!(
            "{CLEAR_SCREEN}balsa status, every {interval:?} (Ctrl-C to stop): {time}\n\n{table}\n"
        ),
        _ => format!("--- {time}\n{table}\n"),
    }
}

/// `time` in UTC, RFC 3339 with milliseconds: `2025-06-01T12:00:03.123Z` (the epoch for a
/// time before it).
pub fn utc(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs();
    let days = i64::try_from(seconds / 86_400).expect("u64 seconds / 86,400 fits in an i64");
    let (year, month, day) = civil_from_days(days);
    let of_day = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian (year, month, day) of `days` since 1970-01-01: the days counted in
/// 400-year eras of 146,097 days from 0000-03-01, whose leap day ends each year.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months from March: 0 is March, 11 February.
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_cmds::tests::{endpoints, report};

    fn at(seconds: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_millis(millis)
    }

    #[test]
    fn times_are_utc_in_rfc_3339_with_milliseconds() {
        for (seconds, millis, expected) in [
            (0, 0, "1970-01-01T00:00:00.000Z"),
            (951_782_400, 5, "2000-02-29T00:00:00.005Z"),
            (951_868_799, 999, "2000-02-29T23:59:59.999Z"),
            (1_709_210_096, 120, "2024-02-29T12:34:56.120Z"),
            (1_735_689_599, 0, "2024-12-31T23:59:59.000Z"),
            (4_107_542_400, 0, "2100-03-01T00:00:00.000Z"),
        ] {
            assert_eq!(utc(at(seconds, millis)), expected, "{seconds}");
        }
        assert_eq!(
            utc(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00.000Z"
        );
    }

    /// An endpoint that did not answer, then a leader.
    fn reports() -> Vec<Result<StatusReport, ClientError>> {
        vec![
            Err(ClientError::Timeout {
                waited: Duration::from_millis(1000),
                kind: balsa::client::OperationKind::Other,
            }),
            Ok(report()),
        ]
    }

    /// A refresh of [`endpoints`] with [`reports`] in `style`, at `now`, every `every`.
    fn refresh(style: Style, now: SystemTime, every: Duration) -> String {
        frame(style, now, every, &endpoints(), &reports())
    }

    #[test]
    fn a_log_refresh_is_a_time_line_then_the_table_in_the_order_of_the_endpoints() {
        let shown = refresh(Style::Log, at(0, 0), Duration::from_secs(1));
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines[0], "--- 1970-01-01T00:00:00.000Z");
        assert!(lines[1].starts_with("ENDPOINT"), "{shown}");
        assert!(
            lines[2].starts_with("127.0.0.1:7001") && lines[2].contains("unreachable"),
            "{shown}"
        );
        assert!(
            lines[3].starts_with("127.0.0.1:7002") && lines[3].contains("leader"),
            "{shown}"
        );
        assert_eq!(lines.len(), 4);
        assert!(shown.ends_with('\n') && !shown.contains('\x1b'), "{shown}");
    }

    #[test]
    fn a_screen_refresh_clears_the_terminal_first() {
        let shown = refresh(Style::Screen, at(0, 0), Duration::from_millis(500));
        assert!(
            shown.starts_with(
                "\x1b[H\x1b[2Jbalsa status, every 500ms (Ctrl-C to stop): \
                 1970-01-01T00:00:00.000Z\n\nENDPOINT"
            ),
            "{shown:?}"
        );
        assert_eq!(shown.matches('\x1b').count(), 2, "{shown:?}");
    }

    #[test]
    fn a_json_refresh_is_one_line_holding_the_time_and_the_status_array() {
        let shown = refresh(Style::Json, at(60, 0), Duration::from_secs(1));
        assert_eq!(shown.lines().count(), 1, "{shown}");
        assert!(shown.ends_with('\n'));
        let parsed: serde_json::Value = serde_json::from_str(&shown).expect("JSON");
        assert_eq!(parsed["time"], "1970-01-01T00:01:00.000Z");
        assert_eq!(parsed["endpoints"][0]["error"], "no answer within 1000 ms");
        assert_eq!(parsed["endpoints"][1]["role"], "leader");
        let status: serde_json::Value =
            serde_json::from_str(&crate::client_cmds::status_json(&endpoints(), &reports()))
                .expect("JSON");
        assert_eq!(parsed["endpoints"], status);
    }
}
