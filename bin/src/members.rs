//! `balsa members`: list the cluster's members, or change them (issue 14).
//!
//! - `members [list] [--json]` asks every endpoint for its configuration at once and prints the
//!   leader's (which knows each member's match index, so the lag: entries behind the leader's
//!   last index); when no endpoint leads, it asks the leader they name, and failing that prints
//!   the newest configuration an endpoint holds, with the lag unknown. `--json` prints one array
//!   of objects with `id`, `address`, `role` (`voter` or `learner`), `lag` (null when unknown)
//!   and `leaving` (a voter of the configuration being left, while a change is joint).
//! - `members add ID=IP:PORT [--learner]`, `promote ID`, `remove ID` and `replace OLD NEW=IP:PORT`
//!   (one joint change: add NEW as a voter, remove OLD) send one change to the leader and wait
//!   up to `--timeout-ms` or `--timeout` (default 60 s: a new voter is caught up first; each
//!   attempt `--attempt-timeout`, default 1 s) for it to complete,
//!   then print the new configuration as `list` does. Every retry carries the same token, so a
//!   lost answer never starts a second change.
//!
//! Every form takes `--key-file FILE` (or `BALSA_KEY_FILE`), the cluster's client key, as the
//! client commands do.
//!
//! Exit status: 0 done; 2 refused as asked (bad usage, unknown id, id reused, already a member,
//! last voter, a change in progress), or a key file that cannot be used; 3 no leader, timeout
//! (outcome unknown), leadership lost (outcome unknown), a leader handing over, a learner that
//! did not catch up, or requests the cluster could not authenticate. One line on stderr for
//! each failure, and a `hint:` line when keys are the likely cause.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use balsa::client::{Client, ClientError, ClientOptions};
use balsa::keyfile::Key;
use balsa::runtime::wire::{MemberStep, MembersReport, RefusalKind};
use serde::Serialize;

use crate::args::{ChangeArgs, DEFAULT_ASKING_TIMEOUT, MembersAction, MembersArgs};
use crate::client_cmds::exit_status;
use crate::keys::{self, ClientKey};

/// Runs `balsa members`.
#[allow(clippy::print_stderr, reason = "a key file's one-line error")]
pub fn run(args: MembersArgs) -> ExitCode {
    let endpoints = args.endpoints().to_vec();
    let list_timeouts = args.list_timeouts().or(DEFAULT_ASKING_TIMEOUT);
    let key = match keys::read_client_key(args.cluster().key_file.as_deref()) {
        Ok(key) => key,
        Err(error) => {
            eprintln!("balsa members: {error}");
            return ExitCode::from(2);
        }
    };
    let key = key.as_ref();
    match args.action {
        None => list(&endpoints, args.json, list_timeouts, key),
        Some(MembersAction::List { json, .. }) => list(&endpoints, json, list_timeouts, key),
        Some(MembersAction::Add {
            member: (id, address),
            learner,
            change,
        }) => {
            let address = address.to_string().into_bytes();
            let step = if learner {
                MemberStep::AddLearner { id, address }
            } else {
                MemberStep::AddVoter { id, address }
            };
            apply(vec![step], &change, key)
        }
        Some(MembersAction::Promote { id, change }) => {
            apply(vec![MemberStep::Promote { id }], &change, key)
        }
        Some(MembersAction::Remove { id, change }) => {
            apply(vec![MemberStep::Remove { id }], &change, key)
        }
        Some(MembersAction::Replace {
            old,
            new: (id, address),
            change,
        }) => apply(replace_steps(old, id, address), &change, key),
    }
}

/// `members replace OLD NEW=ADDRESS` as one joint change: NEW added as a voter (the leader adds
/// it as a learner and catches it up first), OLD removed.
pub fn replace_steps(old: u64, new: u64, address: SocketAddr) -> Vec<MemberStep> {
    let address = address.to_string().into_bytes();
    vec![
        MemberStep::AddVoter { id: new, address },
        MemberStep::Remove { id: old },
    ]
}

/// Sends one change to the leader among `endpoints` and waits up to `timeout` for it to
/// complete, giving each attempt `attempt_timeout`, sealing its requests under the client key
/// `key` if given; returns the new configuration. What every `members` change and
/// `balsa demo`'s replacement run.
pub fn change(
    endpoints: Vec<SocketAddr>,
    steps: Vec<MemberStep>,
    (timeout, attempt_timeout): (Duration, Duration),
    key: Option<Key>,
) -> Result<MembersReport, ClientError> {
    let options = ClientOptions {
        timeout,
        attempt_timeout,
        key,
        ..ClientOptions::default()
    };
    Client::new(endpoints, options)?.change_membership(steps)
}

/// `members list`.
#[allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the list goes to stdout, a failure's one line to stderr"
)]
fn list(
    endpoints: &[SocketAddr],
    json: bool,
    (timeout, attempt_timeout): (Duration, Duration),
    key: Option<&ClientKey>,
) -> ExitCode {
    // Answered at once or not at all, as status is: its default timeout is short.
    let options = ClientOptions {
        timeout,
        attempt_timeout,
        key: keys::option_key(key),
        ..ClientOptions::default()
    };
    let mut client = match Client::new(endpoints.to_vec(), options) {
        Ok(client) => client,
        Err(error) => return fail(&error, key),
    };
    let mut hint = None;
    let reports: Vec<MembersReport> = client
        .members_all(endpoints)
        .into_iter()
        .filter_map(|answer| {
            answer
                .map_err(|error| hint = hint.take().or_else(|| keys::hint(&error, key)))
                .ok()
        })
        .collect();
    let Some(report) = best_view(&mut client, reports) else {
        eprintln!("balsa members: no endpoint answered with a configuration");
        if let Some(hint) = hint {
            eprintln!("balsa members: hint: {hint}");
        }
        return ExitCode::from(3);
    };
    println!("{}", render(&report, json));
    ExitCode::SUCCESS
}

/// The view to print: the leader's, asking the leader the endpoints name if none of them
/// leads; else the newest configuration among them.
fn best_view(client: &mut Client, reports: Vec<MembersReport>) -> Option<MembersReport> {
    if let Some(leader) = reports.iter().find(|r| r.last_index.is_some()) {
        return Some(leader.clone());
    }
    let named = reports.iter().find_map(|report| {
        let leader = report.leader?;
        let member = report.members.iter().find(|m| m.id == leader)?;
        std::str::from_utf8(&member.address).ok()?.parse().ok()
    });
    if let Some(address) = named
        && let Some(Ok(report)) = client.members_all(&[address]).pop()
        && report.last_index.is_some()
    {
        return Some(report);
    }
    reports
        .into_iter()
        .filter(|report| !report.members.is_empty())
        .max_by_key(|report| report.index)
}

/// One change, waited for.
#[allow(clippy::print_stdout, reason = "the new configuration goes to stdout")]
fn apply(steps: Vec<MemberStep>, args: &ChangeArgs, key: Option<&ClientKey>) -> ExitCode {
    let endpoints = args.endpoints.addresses.clone();
    match change(endpoints, steps, args.timeouts(), keys::option_key(key)) {
        Ok(report) => {
            println!("{}", render(&report, false));
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error, key),
    }
}

#[allow(clippy::print_stderr, reason = "the command's one-line error")]
fn fail(error: &ClientError, key: Option<&ClientKey>) -> ExitCode {
    match error {
        ClientError::Timeout { waited, .. } | ClientError::NoNodeAnswered { waited, .. } => {
            eprintln!(
                "balsa members: no answer within {} ms; the outcome of the change is unknown (see \
             `balsa members list`)",
                waited.as_millis()
            )
        }
        other => eprintln!("balsa members: {other}"),
    }
    if let Some(hint) = keys::hint(error, key) {
        eprintln!("balsa members: hint: {hint}");
    }
    ExitCode::from(change_exit_status(error))
}

/// The exit status of a failed `members` command (see the module doc).
pub fn change_exit_status(error: &ClientError) -> u8 {
    match error {
        ClientError::MembershipRefused { kind, .. } => match kind {
            RefusalKind::BadRequest
            | RefusalKind::UnknownMember
            | RefusalKind::IdReused
            | RefusalKind::AlreadyMember
            | RefusalKind::NoVoterLeft
            | RefusalKind::InProgress => 2,
            RefusalKind::TransferInProgress
            | RefusalKind::CatchUpFailed
            | RefusalKind::LeadershipLost => 3,
        },
        other => exit_status(other),
    }
}

/// One element of `members list --json`. Its keys are these fields, in this order.
#[derive(Serialize)]
struct MemberJson {
    id: u64,
    address: String,
    role: &'static str,
    lag: Option<u64>,
    leaving: bool,
}

/// The configuration as `members` prints it: a table with a heading line, or one JSON array.
pub fn render(report: &MembersReport, json: bool) -> String {
    let rows: Vec<MemberJson> = report
        .members
        .iter()
        .map(|member| MemberJson {
            id: member.id,
            address: String::from_utf8_lossy(&member.address).into_owned(),
            role: if member.voter { "voter" } else { "learner" },
            lag: report
                .last_index
                .zip(member.match_index)
                .map(|(last, matched)| last.saturating_sub(matched)),
            leaving: member.leaving,
        })
        .collect();
    if json {
        return serde_json::to_string(&rows)
            .expect("strings, integers, booleans and nulls always serialize (no map keys)");
    }
    let leader = report
        .leader
        .map_or_else(|| "no leader known".to_owned(), |id| format!("leader {id}"));
    let joint = if report.joint {
        "; joint: a change is in progress"
    } else {
        ""
    };
    let mut out = format!(
        "configuration at index {} as node {} sees it ({leader}{joint})\n{:>4}  {:<22} {:<8} {:>8}",
        report.index, report.id, "ID", "ADDRESS", "ROLE", "LAG"
    );
    for row in rows {
        let lag = row
            .lag
            .map_or_else(|| "-".to_owned(), |lag| lag.to_string());
        let leaving = if row.leaving { "  (leaving)" } else { "" };
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "\n{:>4}  {:<22} {:<8} {:>8}{leaving}",
            row.id, row.address, row.role, lag
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use balsa::runtime::wire::MemberReport;

    use super::*;

    fn report() -> MembersReport {
        let member = |id: u64, voter, leaving, match_index| MemberReport {
            id,
            address: format!("127.0.0.1:700{id}").into_bytes(),
            voter,
            leaving,
            match_index,
        };
        MembersReport {
            id: 1,
            leader: Some(1),
            index: 12,
            joint: true,
            members: vec![
                member(1, true, false, Some(20)),
                member(2, true, true, Some(17)),
                member(4, false, false, None),
            ],
            last_index: Some(20),
        }
    }

    #[test]
    fn members_json_has_id_address_role_lag_and_null_when_unknown() {
        let rendered = render(&report(), true);
        assert_eq!(
            rendered,
            "[{\"id\":1,\"address\":\"127.0.0.1:7001\",\"role\":\"voter\",\"lag\":0,\
             \"leaving\":false},{\"id\":2,\"address\":\"127.0.0.1:7002\",\"role\":\"voter\",\
             \"lag\":3,\"leaving\":true},{\"id\":4,\"address\":\"127.0.0.1:7004\",\
             \"role\":\"learner\",\"lag\":null,\"leaving\":false}]"
        );
        let mut follower = report();
        follower.last_index = None;
        let parsed: serde_json::Value =
            serde_json::from_str(&render(&follower, true)).expect("valid JSON");
        assert!(parsed[0]["lag"].is_null(), "a follower knows no lag");
    }

    #[test]
    fn members_table_has_a_heading_and_a_row_per_member() {
        let table = render(&report(), false);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5, "{table}");
        assert!(
            lines[0].contains("index 12") && lines[0].contains("joint"),
            "{table}"
        );
        assert!(
            lines[3].contains("voter") && lines[3].ends_with("(leaving)"),
            "{table}"
        );
        assert!(
            lines[4].contains("learner") && lines[4].contains(" -"),
            "{table}"
        );
    }

    #[test]
    fn refusals_as_asked_exit_2_and_unknown_outcomes_exit_3() {
        let refused = |kind| ClientError::MembershipRefused {
            kind,
            message: String::new(),
        };
        for kind in [
            RefusalKind::BadRequest,
            RefusalKind::UnknownMember,
            RefusalKind::IdReused,
            RefusalKind::AlreadyMember,
            RefusalKind::NoVoterLeft,
            RefusalKind::InProgress,
        ] {
            assert_eq!(change_exit_status(&refused(kind)), 2, "{kind:?}");
        }
        for kind in [
            RefusalKind::TransferInProgress,
            RefusalKind::CatchUpFailed,
            RefusalKind::LeadershipLost,
        ] {
            assert_eq!(change_exit_status(&refused(kind)), 3, "{kind:?}");
        }
        let timeout = ClientError::Timeout {
            waited: Duration::ZERO,
            kind: balsa::client::OperationKind::Write,
        };
        assert_eq!(change_exit_status(&timeout), 3);
    }
}
