//! The client subcommands: `put`, `get`, `del`, `cas`, `status`, `transfer` and `snapshot`,
//! through [`balsa::client::Client`].
//!
//! Output: `put`, a swapping `cas` and `transfer` print `OK` (`transfer` once the node
//! named leads, which it waits for: see `Client::transfer`); `del` prints how many keys it
//! deleted (`1` or `0` for a key, the total for `--prefix`; a node too old to count answers the
//! old way, and `del` prints `OK`); `get` prints the value (UTF-8, lossy; `--hex`: hex) and a
//! newline, or with `--output FILE` writes its exact bytes there and prints nothing; `get
//! --prefix`/`--range` prints a line per pair, key, tab, value (`kv_io.rs`), a page at a time
//! as the pages arrive; `status` prints a table, its heading at once and a row per
//! endpoint as that endpoint answers (so in the order of the answers), the silent ones last,
//! marked unreachable once `--timeout` (1 s by default, for the whole command) has passed; or
//! with `--json`, once every endpoint answered or the time is out, one JSON array with an object
//! per endpoint in the order given (through `serde_json`; its keys, in order, are
//! [`StatusJson`]'s fields); `status --watch` asks again every `--interval` until Ctrl-C or
//! SIGTERM (`watch.rs`: the table of each refresh, or a JSON object per line); `snapshot`
//! prints a line per endpoint with the index its snapshot covers (`snapshot save` is
//! `backup.rs`'s). Errors are one line on stderr, followed by a `hint:` line when keys are the
//! likely cause ([`keys::hint`]).
//!
//! Keys: `--key-file FILE` (or `BALSA_KEY_FILE`) names the cluster's client key, which the
//! requests are sealed under; without it they go in plaintext, which only a cluster run with
//! `--insecure` takes. The status table shows a node's security counters (`auth_failed=N`,
//! `replayed=N`) after its configuration when they are not zero, and after the table a line per
//! source address a node counted suspicious drops from; without any, the table is the same as
//! before keys existed.
//!
//! Exit status: 0 success (a range read of no key, a delete of an absent key included); 1 key
//! absent (`get KEY`) or compare-and-swap mismatch (`cas`); 2 a request the service refuses as
//! such (a key or value over its limit, named; rejected — a transfer to a node that is not a
//! voter; unknown to a node older than this client), input that cannot be used (a value over
//! the maximum size, a file that cannot be read or written, a key that is not hex), a client
//! set-up error, or a key file that cannot be used; 3 cluster unavailable, timeout (a write's
//! outcome unknown; a read failed), no node answered at all, a transfer that did not happen in
//! time, a cluster that could not authenticate the requests, or a network or protocol failure.
//! `status` exits 3 only when no endpoint answered.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;

use balsa::client::{CasOutcome, Client, ClientError, ClientOptions};
use balsa::kv::KeyRange;
use balsa::runtime::identity::cluster_id_text;
use balsa::runtime::wire::{StatusReport, SuspiciousSource};
use serde::Serialize;

use crate::args::{ClientCommand, SnapshotAction};
use crate::keys::{self, ClientKey};
use crate::kv_io::{self, InputError};

/// Runs one client subcommand against its endpoints.
#[allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a client command's result goes to stdout, its one-line error to stderr"
)]
pub fn run(operation: ClientCommand) -> ExitCode {
    let operation = match operation {
        ClientCommand::Snapshot {
            action: Some(SnapshotAction::Save(save)),
            ..
        } => return crate::backup::save(save),
        operation => operation,
    };
    let command = operation_name(&operation);
    let endpoints = operation.endpoints().to_vec();
    let client_key = match keys::read_client_key(operation.cluster().key_file.as_deref()) {
        Ok(client_key) => client_key,
        Err(error) => {
            eprintln!("balsa {command}: {error}");
            return ExitCode::from(2);
        }
    };
    let client_key = client_key.as_ref();
    let mut client = match Client::new(endpoints.clone(), options(&operation, client_key)) {
        Ok(client) => client,
        Err(error) => return fail(command, &error, client_key),
    };
    match operation {
        ClientCommand::Put {
            key,
            value,
            value_file,
            hex_key,
            ..
        } => {
            let input = kv_io::key_bytes("KEY", &key, hex_key).and_then(|key| {
                kv_io::value_bytes(value.as_deref(), value_file.as_deref()).map(|v| (key, v))
            });
            let (key, value) = match input {
                Ok(input) => input,
                Err(error) => return usage(command, &error),
            };
            match client.put(&key, &value) {
                Ok(()) => ok(),
                Err(error) => fail(command, &error, client_key),
            }
        }
        ClientCommand::Get {
            key: Some(key),
            stale,
            hex,
            output,
            hex_key,
            ..
        } => {
            let key = match kv_io::key_bytes("KEY", &key, hex_key) {
                Ok(key) => key,
                Err(error) => return usage(command, &error),
            };
            match client.get(&key, stale) {
                Ok(Some(value)) => match output {
                    Some(path) => match kv_io::write_value(&path, &value) {
                        Ok(()) => ExitCode::SUCCESS,
                        Err(error) => usage(command, &error),
                    },
                    None => {
                        println!("{}", kv_io::show(&value, hex));
                        ExitCode::SUCCESS
                    }
                },
                Ok(None) => {
                    eprintln!("balsa get: key {} is absent", quoted(&key, hex_key));
                    ExitCode::from(1)
                }
                Err(error) => fail(command, &error, client_key),
            }
        }
        ClientCommand::Get {
            prefix,
            range,
            limit,
            stale,
            hex,
            hex_key,
            ..
        } => {
            let range = match key_range(prefix.as_deref(), range.as_deref(), hex_key) {
                Ok(range) => range,
                Err(error) => return usage(command, &error),
            };
            for page in client.scan(range, limit, stale) {
                match page {
                    Ok(pairs) => {
                        let mut out = std::io::stdout().lock();
                        for (key, value) in pairs {
                            // A closed stdout (a pager quit) ends the read quietly.
                            if writeln!(out, "{}", kv_io::pair_line(&key, &value, hex)).is_err() {
                                return ExitCode::SUCCESS;
                            }
                        }
                    }
                    Err(error) => return fail(command, &error, client_key),
                }
            }
            ExitCode::SUCCESS
        }
        ClientCommand::Delete {
            key: Some(key),
            hex_key,
            ..
        } => {
            let key = match kv_io::key_bytes("KEY", &key, hex_key) {
                Ok(key) => key,
                Err(error) => return usage(command, &error),
            };
            match client.delete_counted(&key) {
                Ok(count) => {
                    println!("{count}");
                    ExitCode::SUCCESS
                }
                // A node that predates counted deletes: the delete it knows, and its `OK`.
                Err(ClientError::Rejected { reason })
                    if reason.starts_with("unknown operation tag") =>
                {
                    match client.delete(&key) {
                        Ok(()) => ok(),
                        Err(error) => fail(command, &error, client_key),
                    }
                }
                Err(error) => fail(command, &error, client_key),
            }
        }
        ClientCommand::Delete {
            prefix, hex_key, ..
        } => {
            let prefix = prefix.unwrap_or_default();
            let prefix = match kv_io::key_bytes("PREFIX", &prefix, hex_key) {
                Ok(prefix) => prefix,
                Err(error) => return usage(command, &error),
            };
            // A batch (one command) at a time; the count so far is said if one fails.
            let mut total = 0_u64;
            loop {
                match client.delete_prefix_batch(&prefix) {
                    Ok((count, more)) => {
                        total = total.saturating_add(count);
                        if !more {
                            println!("{total}");
                            return ExitCode::SUCCESS;
                        }
                    }
                    Err(error) => {
                        if total > 0 {
                            eprintln!("balsa del: {total} keys were deleted before this error");
                        }
                        return fail(command, &error, client_key);
                    }
                }
            }
        }
        ClientCommand::Cas {
            key, expected, new, ..
        } => {
            // "-": the key must be absent.
            let expected = (expected != "-").then_some(expected.as_bytes());
            match client.cas(key.as_bytes(), expected, new.as_bytes()) {
                Ok(CasOutcome::Swapped) => ok(),
                Ok(CasOutcome::Mismatch { current }) => {
                    let holds = match current {
                        Some(value) => format!("holds {:?}", String::from_utf8_lossy(&value)),
                        None => String::from("is absent"),
                    };
                    eprintln!("balsa cas: mismatch: key {key:?} {holds}");
                    ExitCode::from(1)
                }
                Err(error) => fail(command, &error, client_key),
            }
        }
        ClientCommand::Status {
            json,
            watch: true,
            interval,
            ..
        } => crate::watch::run(&mut client, &endpoints, json, interval, client_key),
        ClientCommand::Status { json, .. } => {
            // What to do about keys, if a silent or refusing endpoint suggests it.
            let mut hint = None;
            let answered = if json {
                let reports = client.status_all(&endpoints);
                println!("{}", status_json(&endpoints, &reports));
                for error in reports.iter().filter_map(|report| report.as_ref().err()) {
                    hint = hint.or_else(|| keys::hint(error, client_key));
                }
                reports.iter().any(Result::is_ok)
            } else {
                // A row as each endpoint answers; the silent ones once the time is out; then
                // the sources of suspicious datagrams, if any node counted some.
                println!("{}", status_heading());
                let mut answered = false;
                let mut suspicious = Vec::new();
                client.status_each(&endpoints, |k, report| {
                    println!("{}", status_row(endpoints[k], &report));
                    match report {
                        Ok(report) => {
                            answered = true;
                            suspicious.push((k, endpoints[k], report.suspicious_sources));
                        }
                        Err(error) => {
                            hint = hint.take().or_else(|| keys::hint(&error, client_key));
                        }
                    }
                });
                suspicious.sort_by_key(|(k, _, _)| *k);
                for (_, endpoint, sources) in &suspicious {
                    for line in suspicious_lines(*endpoint, sources) {
                        println!("{line}");
                    }
                }
                answered
            };
            if answered {
                ExitCode::SUCCESS
            } else {
                eprintln!("balsa status: no endpoint answered");
                if let Some(hint) = hint {
                    eprintln!("balsa status: hint: {hint}");
                }
                ExitCode::from(3)
            }
        }
        ClientCommand::Transfer { to, .. } => match client.transfer(to) {
            Ok(()) => ok(),
            Err(error) => fail(command, &error, client_key),
        },
        ClientCommand::Snapshot { .. } => {
            // Each node snapshots its own state machine; one that fails does not stop the rest.
            let mut status = ExitCode::SUCCESS;
            for endpoint in endpoints {
                match client.take_snapshot(endpoint) {
                    Ok(index) => println!("{endpoint}: snapshot at index {index}"),
                    Err(error) => {
                        eprintln!("balsa snapshot: {endpoint}: {error}");
                        if let Some(hint) = keys::hint(&error, client_key) {
                            eprintln!("balsa snapshot: hint: {hint}");
                        }
                        status = ExitCode::from(exit_status(&error));
                    }
                }
            }
            status
        }
    }
}

/// The range `get --prefix` or `get --range` reads (one of them is given: clap requires it).
fn key_range(
    prefix: Option<&str>,
    range: Option<&[String]>,
    hex_key: bool,
) -> Result<KeyRange, InputError> {
    match (prefix, range) {
        (_, Some([from, to])) => Ok(KeyRange::between(
            &kv_io::key_bytes("FROM", from, hex_key)?,
            &kv_io::key_bytes("TO", to, hex_key)?,
        )),
        (prefix, _) => Ok(KeyRange::prefix(&kv_io::key_bytes(
            "PREFIX",
            prefix.unwrap_or_default(),
            hex_key,
        )?)),
    }
}

/// A key in an error line: quoted text, or hex when it was given in hex.
fn quoted(key: &[u8], hex: bool) -> String {
    if hex {
        kv_io::encode_hex(key)
    } else {
        format!("{:?}", String::from_utf8_lossy(key))
    }
}

/// Says why the input given cannot be used; exit 2.
#[allow(clippy::print_stderr, reason = "the command's one-line error")]
fn usage(command: &str, error: &InputError) -> ExitCode {
    eprintln!("balsa {command}: {error}");
    ExitCode::from(2)
}

/// How the command's client waits: `--timeout` and `--attempt-timeout`, else the command's
/// defaults (a status request is answered at once or not at all: its timeout is shorter); and
/// the client key it seals its requests under, if given.
fn options(operation: &ClientCommand, key: Option<&ClientKey>) -> ClientOptions {
    let (timeout, attempt_timeout) = operation.timeouts();
    ClientOptions {
        timeout,
        attempt_timeout,
        key: keys::option_key(key),
        ..ClientOptions::default()
    }
}

fn operation_name(operation: &ClientCommand) -> &'static str {
    match operation {
        ClientCommand::Put { .. } => "put",
        ClientCommand::Get { .. } => "get",
        ClientCommand::Delete { .. } => "del",
        ClientCommand::Cas { .. } => "cas",
        ClientCommand::Status { .. } => "status",
        ClientCommand::Transfer { .. } => "transfer",
        ClientCommand::Snapshot { .. } => "snapshot",
    }
}

#[allow(clippy::print_stdout, reason = "the command's one line of output")]
fn ok() -> ExitCode {
    println!("OK");
    ExitCode::SUCCESS
}

/// Says why `command` failed (and, when keys are the likely cause, what to do); its exit status.
#[allow(clippy::print_stderr, reason = "the command's one-line error")]
pub fn fail(command: &str, error: &ClientError, key: Option<&ClientKey>) -> ExitCode {
    eprintln!("balsa {command}: {error}");
    if let Some(hint) = keys::hint(error, key) {
        eprintln!("balsa {command}: hint: {hint}");
    }
    ExitCode::from(exit_status(error))
}

/// The exit status for a failed operation (see the module doc).
pub fn exit_status(error: &ClientError) -> u8 {
    match error {
        ClientError::TooLarge { .. }
        | ClientError::OverLimit(_)
        | ClientError::Rejected { .. }
        | ClientError::Config { .. } => 2,
        // Only `members` sends changes; it maps each kind itself (`members::change_exit_status`).
        ClientError::MembershipRefused { .. } => 2,
        ClientError::Unavailable { .. }
        | ClientError::Timeout { .. }
        | ClientError::NoNodeAnswered { .. }
        | ClientError::NotTransferred { .. }
        | ClientError::Unauthenticated { .. }
        | ClientError::Io { .. }
        | ClientError::Protocol { .. } => 3,
    }
}

/// One element of `balsa status --json`: an endpoint's report, or why it gave none. Its keys
/// are these fields, in this order.
#[derive(Serialize)]
#[serde(untagged)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per endpoint, serialized at once; never moved around"
)]
enum StatusJson<'a> {
    Answered {
        endpoint: String,
        id: u64,
        role: &'a str,
        term: u64,
        leader: Option<u64>,
        commit_index: u64,
        applied_index: u64,
        last_index: u64,
        datagrams_in: u64,
        datagrams_out: u64,
        datagrams_dropped: u64,
        datagrams_auth_failed: u64,
        datagrams_replayed: u64,
        suspicious_sources: &'a [SuspiciousSource],
        wal_syncs: u64,
        snapshot_index: u64,
        first_index: u64,
        /// 16 hex digits, as in the table: a JSON number would lose digits in most readers.
        cluster_id: String,
        voters: &'a [u64],
        outgoing_voters: &'a [u64],
        learners: &'a [u64],
        joint: bool,
        configuration_index: u64,
    },
    Unreachable {
        endpoint: String,
        error: String,
    },
}

/// `balsa status --json`: one array, an object per endpoint in order.
pub fn status_json(
    endpoints: &[SocketAddr],
    reports: &[Result<StatusReport, ClientError>],
) -> String {
    serde_json::to_string(&status_items(endpoints, reports))
        .expect("strings, integers, nulls and addresses always serialize (no map keys, no floats)")
}

/// One refresh of `balsa status --watch --json`: its time, then the array `status --json`
/// prints.
#[derive(Serialize)]
struct WatchJson<'a> {
    time: &'a str,
    endpoints: Vec<StatusJson<'a>>,
}

/// `balsa status --watch --json`'s line for one refresh at `time`: one object, `{"time":
/// TIME, "endpoints": [...]}`, the array as [`status_json`]'s.
pub fn status_watch_json(
    time: &str,
    endpoints: &[SocketAddr],
    reports: &[Result<StatusReport, ClientError>],
) -> String {
    let refresh = WatchJson {
        time,
        endpoints: status_items(endpoints, reports),
    };
    serde_json::to_string(&refresh)
        .expect("strings, integers, nulls and addresses always serialize (no map keys, no floats)")
}

/// An element of `status --json` per endpoint, in order.
fn status_items<'a>(
    endpoints: &[SocketAddr],
    reports: &'a [Result<StatusReport, ClientError>],
) -> Vec<StatusJson<'a>> {
    endpoints
        .iter()
        .zip(reports)
        .map(|(endpoint, report)| match report {
            Ok(report) => StatusJson::Answered {
                endpoint: endpoint.to_string(),
                id: report.id,
                role: &report.role,
                term: report.term,
                leader: report.leader,
                commit_index: report.commit_index,
                applied_index: report.applied_index,
                last_index: report.last_index,
                datagrams_in: report.datagrams_in,
                datagrams_out: report.datagrams_out,
                datagrams_dropped: report.datagrams_dropped,
                datagrams_auth_failed: report.datagrams_auth_failed,
                datagrams_replayed: report.datagrams_replayed,
                suspicious_sources: &report.suspicious_sources,
                wal_syncs: report.wal_syncs,
                snapshot_index: report.snapshot_index,
                first_index: report.first_index,
                cluster_id: cluster_id_text(report.cluster_id),
                voters: &report.voters,
                outgoing_voters: &report.outgoing_voters,
                learners: &report.learners,
                joint: !report.outgoing_voters.is_empty(),
                configuration_index: report.configuration_index,
            },
            Err(error) => StatusJson::Unreachable {
                endpoint: endpoint.to_string(),
                error: status_error(error),
            },
        })
        .collect()
}

/// A status table, a row per endpoint in order (no trailing newline): the heading, then
/// [`status_row`] for each. `balsa status` prints the same lines, the rows as the answers come.
pub fn status_table(
    endpoints: &[SocketAddr],
    reports: &[Result<StatusReport, ClientError>],
) -> String {
    let mut out = status_heading();
    for (endpoint, report) in endpoints.iter().zip(reports) {
        out.push('\n');
        out.push_str(&status_row(*endpoint, report));
    }
    out
}

/// The heading line of the status table.
pub fn status_heading() -> String {
    format!(
        "{:<22} {:>3}  {:<13} {:>5} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}  {:<16}  {}",
        "ENDPOINT",
        "ID",
        "ROLE",
        "TERM",
        "LEADER",
        "FIRST",
        "SNAPSHOT",
        "COMMIT",
        "APPLIED",
        "LAST",
        "WAL-SYNCS",
        "CLUSTER",
        "CONFIGURATION"
    )
}

/// The status table's row for `endpoint`: its report, or why it gave none.
pub fn status_row(endpoint: SocketAddr, report: &Result<StatusReport, ClientError>) -> String {
    match report {
        Ok(report) => format!(
            "{:<22} {:>3}  {:<13} {:>5} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}  {:<16}  {}",
            endpoint.to_string(),
            report.id,
            report.role,
            report.term,
            report
                .leader
                .map_or_else(|| "-".to_owned(), |id| id.to_string()),
            report.first_index,
            report.snapshot_index,
            report.commit_index,
            report.applied_index,
            report.last_index,
            report.wal_syncs,
            cluster_id_text(report.cluster_id),
            configuration(report) + &security_counters(report),
        ),
        Err(error) => format!(
            "{:<22} unreachable: {}",
            endpoint.to_string(),
            status_error(error)
        ),
    }
}

/// A node's view of the configuration, in one word: `voters=1,2,3`, then ` learners=4` if
/// any, and while joint ` leaving=1,2,3` (the voters of the configuration being left).
fn configuration(report: &StatusReport) -> String {
    let ids = |ids: &[u64]| ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let mut out = format!("voters={}", ids(&report.voters));
    if !report.learners.is_empty() {
        let _ = write!(out, " learners={}", ids(&report.learners));
    }
    if !report.outgoing_voters.is_empty() {
        let _ = write!(out, " joint, leaving={}", ids(&report.outgoing_voters));
    }
    out
}

/// A node's security counters, as trailing words of its row: ` auth_failed=N replayed=N`, each
/// only when it is not zero (so a row without them is what it was before keys existed).
fn security_counters(report: &StatusReport) -> String {
    let mut out = String::new();
    if report.datagrams_auth_failed > 0 {
        let _ = write!(out, " auth_failed={}", report.datagrams_auth_failed);
    }
    if report.datagrams_replayed > 0 {
        let _ = write!(out, " replayed={}", report.datagrams_replayed);
    }
    out
}

/// The lines after the status table for the sources `endpoint` counted suspicious drops from,
/// one per source (none when it counted none).
pub fn suspicious_lines(endpoint: SocketAddr, sources: &[SuspiciousSource]) -> Vec<String> {
    sources
        .iter()
        .map(|source| {
            // The node counts the sources beyond the ones it tracks under the unspecified address.
            let from = if source.address.ip().is_unspecified() && source.address.port() == 0 {
                String::from("other sources")
            } else {
                source.address.to_string()
            };
            format!(
                "{endpoint} dropped datagrams from {from}: auth_failed={}, replayed={}, \
                 wrong_kind={}",
                source.auth_failed, source.replayed, source.wrong_kind
            )
        })
        .collect()
}

/// Why a node gave no status: a status request changes nothing, so a timeout is only silence.
fn status_error(error: &ClientError) -> String {
    match error {
        ClientError::Timeout { waited, .. } | ClientError::NoNodeAnswered { waited, .. } => {
            format!("no answer within {} ms", waited.as_millis())
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};

    /// A leader's status report (node 2 of voters 1 to 3, learner 4); `watch`'s tests use it too.
    pub(crate) fn report() -> StatusReport {
        StatusReport {
            id: 2,
            role: "leader".into(),
            term: 7,
            leader: Some(2),
            commit_index: 10,
            applied_index: 9,
            last_index: 11,
            datagrams_in: 100,
            datagrams_out: 90,
            datagrams_dropped: 1,
            wal_syncs: 12,
            snapshot_index: 8,
            first_index: 5,
            cluster_id: 0x0123_4567_89ab_cdef,
            voters: vec![1, 2, 3],
            outgoing_voters: Vec::new(),
            learners: vec![4],
            configuration_index: 3,
            datagrams_auth_failed: 0,
            datagrams_replayed: 0,
            suspicious_sources: Vec::new(),
        }
    }

    /// Two endpoints, for two reports; `watch`'s tests use them too.
    pub(crate) fn endpoints() -> Vec<SocketAddr> {
        vec![
            "127.0.0.1:7001".parse().expect("literal"),
            "127.0.0.1:7002".parse().expect("literal"),
        ]
    }

    fn reports() -> Vec<Result<StatusReport, ClientError>> {
        vec![
            Ok(report()),
            Err(ClientError::Timeout {
                waited: Duration::from_millis(5000),
                kind: balsa::client::OperationKind::Other,
            }),
        ]
    }

    #[test]
    fn status_json_has_every_field_and_the_errors() {
        assert_eq!(
            status_json(&endpoints(), &reports()),
            "[{\"endpoint\":\"127.0.0.1:7001\",\"id\":2,\"role\":\"leader\",\"term\":7,\
             \"leader\":2,\"commit_index\":10,\"applied_index\":9,\"last_index\":11,\
             \"datagrams_in\":100,\"datagrams_out\":90,\"datagrams_dropped\":1,\
             \"datagrams_auth_failed\":0,\"datagrams_replayed\":0,\"suspicious_sources\":[],\
             \"wal_syncs\":12,\"snapshot_index\":8,\"first_index\":5,\
             \"cluster_id\":\"0123456789abcdef\",\"voters\":[1,2,3],\
             \"outgoing_voters\":[],\"learners\":[4],\"joint\":false,\
             \"configuration_index\":3},{\"endpoint\":\"127.0.0.1:7002\",\
             \"error\":\"no answer within 5000 ms\"}]"
        );
        let mut follower = report();
        follower.leader = None;
        assert!(status_json(&endpoints()[..1], &[Ok(follower)]).contains("\"leader\":null"));
    }

    fn attacked() -> StatusReport {
        StatusReport {
            datagrams_dropped: 9,
            datagrams_auth_failed: 5,
            datagrams_replayed: 2,
            suspicious_sources: vec![
                SuspiciousSource {
                    address: "10.0.0.9:4000".parse().expect("literal"),
                    auth_failed: 5,
                    replayed: 0,
                    wrong_kind: 1,
                },
                SuspiciousSource {
                    address: "0.0.0.0:0".parse().expect("literal"),
                    auth_failed: 0,
                    replayed: 2,
                    wrong_kind: 0,
                },
            ],
            ..report()
        }
    }

    #[test]
    fn status_json_has_the_security_counters_and_each_suspicious_source() {
        let rendered = status_json(&endpoints()[..1], &[Ok(attacked())]);
        let parsed: serde_json::Value = serde_json::from_str(&rendered).expect("valid JSON");
        assert_eq!(parsed[0]["datagrams_auth_failed"], 5);
        assert_eq!(parsed[0]["datagrams_replayed"], 2);
        assert_eq!(
            parsed[0]["suspicious_sources"],
            serde_json::json!([
                {"address": "10.0.0.9:4000", "auth_failed": 5, "replayed": 0, "wrong_kind": 1},
                {"address": "0.0.0.0:0", "auth_failed": 0, "replayed": 2, "wrong_kind": 0}
            ])
        );
    }

    #[test]
    fn the_status_table_shows_nonzero_security_counters_after_the_configuration() {
        let quiet = status_row(endpoints()[0], &Ok(report()));
        assert!(quiet.ends_with("voters=1,2,3 learners=4"), "{quiet}");
        let row = status_row(endpoints()[0], &Ok(attacked()));
        assert!(
            row.ends_with("voters=1,2,3 learners=4 auth_failed=5 replayed=2"),
            "{row}"
        );
        let replays_only = StatusReport {
            datagrams_replayed: 3,
            ..report()
        };
        let row = status_row(endpoints()[0], &Ok(replays_only));
        assert!(row.ends_with("learners=4 replayed=3"), "{row}");
        assert_eq!(
            row.strip_suffix(" replayed=3"),
            Some(quiet.as_str()),
            "the same row otherwise"
        );
    }

    #[test]
    fn suspicious_sources_are_a_line_each_and_none_without_them() {
        assert!(suspicious_lines(endpoints()[0], &report().suspicious_sources).is_empty());
        assert_eq!(
            suspicious_lines(endpoints()[0], &attacked().suspicious_sources),
            [
                "127.0.0.1:7001 dropped datagrams from 10.0.0.9:4000: auth_failed=5, \
                 replayed=0, wrong_kind=1",
                "127.0.0.1:7001 dropped datagrams from other sources: auth_failed=0, \
                 replayed=2, wrong_kind=0",
            ]
        );
    }

    #[test]
    fn status_json_escapes_what_a_string_holds() {
        let mut odd = report();
        odd.role = "a\"b\\c\n\u{1}é".into();
        let rendered = status_json(&endpoints()[..1], &[Ok(odd)]);
        assert!(
            rendered.contains(r#""role":"a\"b\\c\n\u0001é""#),
            "{rendered}"
        );
        let parsed: serde_json::Value = serde_json::from_str(&rendered).expect("valid JSON");
        assert_eq!(parsed[0]["role"], "a\"b\\c\n\u{1}é");
    }

    #[test]
    fn status_table_has_a_row_per_endpoint() {
        let table = status_table(&endpoints(), &reports());
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ENDPOINT"));
        assert!(lines[1].contains("leader"), "{table}");
        assert!(
            lines[0].ends_with(&format!("{:<16}  CONFIGURATION", "CLUSTER")),
            "{table}"
        );
        assert!(
            lines[1].ends_with(" 0123456789abcdef  voters=1,2,3 learners=4"),
            "{table}"
        );
        assert!(lines[2].contains("unreachable"), "{table}");
    }

    #[test]
    fn definite_refusals_and_unknown_outcomes_exit_differently() {
        let too_large = ClientError::TooLarge { size: 2, max: 1 };
        let timeout = ClientError::Timeout {
            waited: Duration::ZERO,
            kind: balsa::client::OperationKind::Write,
        };
        let unavailable = ClientError::Unavailable {
            reason: "no leader".into(),
        };
        assert_eq!(exit_status(&too_large), 2);
        assert_eq!(exit_status(&timeout), 3);
        assert_eq!(exit_status(&unavailable), 3);
    }

    fn options_of(line: &str) -> ClientOptions {
        let words = std::iter::once("balsa").chain(line.split_whitespace());
        match Cli::try_parse_from(words).map(|cli| cli.command) {
            Ok(Command::Client(operation)) => options(&operation, None),
            other => panic!("{line:?} is not a client command: {other:?}"),
        }
    }

    #[test]
    fn the_client_key_given_goes_into_the_options_and_none_means_plaintext() {
        assert_eq!(options_of("put k v").key, None);
        let given = ClientKey {
            file: "client.key".into(),
            key: balsa::keyfile::Key::from_bytes([9; 32]),
        };
        let words = ["balsa", "get", "k", "--key-file", "client.key"];
        let Ok(Command::Client(operation)) = Cli::try_parse_from(words).map(|cli| cli.command)
        else {
            panic!("{words:?} is a client command");
        };
        assert_eq!(
            operation.cluster().key_file.as_deref(),
            Some(std::path::Path::new("client.key"))
        );
        assert_eq!(options(&operation, Some(&given)).key, Some(given.key));
    }

    #[test]
    fn timeouts_come_from_the_flags_else_the_commands_defaults() {
        let library = ClientOptions::default();
        let waits = |options: ClientOptions| (options.timeout, options.attempt_timeout);
        for line in [
            "put k v",
            "get k",
            "del k",
            "cas k - v",
            "transfer 2",
            "snapshot",
        ] {
            assert_eq!(
                waits(options_of(line)),
                (library.timeout, library.attempt_timeout),
                "{line}"
            );
            let given = options_of(&format!("{line} --timeout 2m --attempt-timeout 40"));
            assert_eq!(
                waits(given),
                (Duration::from_secs(120), Duration::from_millis(40)),
                "{line}"
            );
        }
        assert_eq!(
            waits(options_of("status")),
            (Duration::from_secs(1), library.attempt_timeout)
        );
        assert_eq!(
            waits(options_of("status --timeout 250ms")),
            (Duration::from_millis(250), library.attempt_timeout)
        );
    }
}
