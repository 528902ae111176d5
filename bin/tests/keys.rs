//! Keys through the real executable: `balsa keygen` writes a key only its owner may read and
//! never overwrites one; `serve` refuses to start without keys unless `--insecure` (and then
//! warns), refuses a key file others may read, and takes its keys from the environment too; a
//! client without the cluster's key, or with another, exits 3 naming authentication, and
//! `status` then shows what the nodes counted; a node with another peer key neither joins nor
//! disturbs the cluster.

#![allow(
    clippy::disallowed_methods,
    reason = "tests of real processes wait on wall-clock deadlines"
)]

mod common;

use balsa::keyfile::Fingerprint as _;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use balsa::keyfile::read_key_file;
use balsa::runtime::wire::StatusReport;
use common::{
    Cluster, ELECTION_TIMEOUT, TestKeys, assert_exit_saying, balsa_command, endpoints_arg,
    free_loopback_addresses, new_key_file, refused, run_balsa, spawn_serve, stderr, stdout,
    wait_until,
};

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("the file")
        .permissions()
        .mode()
        & 0o777
}

/// `balsa serve` as a lone node 1 on `address`, its data directory in `dir`.
fn lone_serve(dir: &Path, address: SocketAddr) -> Command {
    let mut command = balsa_command(&["serve", "--id", "1", "--cluster", &format!("1={address}")]);
    command.arg("--data-dir").arg(dir.join("data"));
    command
}

/// `balsa serve` as a lone node 1 on a free address with `args` (its data directory in `dir`),
/// expected to exit at once: its output.
fn lone_serve_refused(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    lone_serve(dir, free_loopback_addresses(1)[0])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("running balsa serve")
}

#[test]
fn keygen_writes_a_key_only_its_owner_may_read_and_never_overwrites_one() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("peer.key");
    let path_arg = path.to_str().expect("a UTF-8 path");
    let made = run_balsa(&["keygen", path_arg]);
    assert_eq!(made.status.code(), Some(0), "{}", stderr(&made));
    assert_eq!(mode(&path), 0o600);
    let key = read_key_file(&path).expect("a key file balsa reads");
    assert_eq!(
        stdout(&made),
        format!(
            "balsa: wrote a new key to {} (fingerprint {})\n",
            path.display(),
            key.fingerprint()
        )
    );
    assert!(!stdout(&made).contains(&key.to_hex()), "never the key");
    let written = std::fs::read(&path).expect("the file");

    let again = run_balsa(&["keygen", path_arg]);
    let message = refused(&again, "keygen");
    assert!(message.contains("exists already"), "{message}");
    assert_eq!(
        std::fs::read(&path).expect("the file"),
        written,
        "untouched"
    );

    let other = dir.path().join("client.key");
    let made = run_balsa(&["keygen", other.to_str().expect("a UTF-8 path")]);
    assert_eq!(made.status.code(), Some(0), "{}", stderr(&made));
    assert_ne!(
        read_key_file(&other).expect("a key"),
        key,
        "a new key each time"
    );

    let nowhere = dir.path().join("missing").join("k.key");
    refused(
        &run_balsa(&["keygen", nowhere.to_str().expect("a UTF-8 path")]),
        "keygen",
    );
    refused(&run_balsa(&["keygen"]), "keygen");
}

#[test]
fn serve_without_keys_refuses_saying_how_to_make_them_or_to_run_insecure() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let message = refused(&lone_serve_refused(dir.path(), &[], &[]), "serve");
    for needed in [
        "--peer-key-file",
        "--client-key-file",
        "balsa keygen",
        "--insecure",
    ] {
        assert!(message.contains(needed), "{needed}: {message}");
    }
    let keys = TestKeys::create(dir.path());
    let peer = keys.peer_file.to_str().expect("a UTF-8 path");
    let client = keys.client_file.to_str().expect("a UTF-8 path");
    for (args, says) in [
        (&["--peer-key-file", peer][..], "--client-key-file"),
        (
            &[
                "--peer-key-file",
                peer,
                "--client-key-file",
                client,
                "--insecure",
            ],
            "cannot be used with",
        ),
        (&["--previous-peer-key-file", peer], "--peer-key-file"),
    ] {
        let message = refused(&lone_serve_refused(dir.path(), args, &[]), "serve");
        assert!(message.contains(says), "{args:?}: {message}");
    }
    assert!(
        !dir.path().join("data").exists(),
        "no data directory made by a refused serve"
    );
}

#[test]
fn a_key_file_group_or_others_may_read_is_refused_by_serve_and_by_clients() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let keys = TestKeys::create(dir.path());
    let peer = keys.peer_file.to_str().expect("a UTF-8 path");
    let client = keys.client_file.to_str().expect("a UTF-8 path");
    let serve_args = ["--peer-key-file", peer, "--client-key-file", client];
    for (file, open) in [(&keys.peer_file, 0o644), (&keys.client_file, 0o640)] {
        chmod(file, open);
        let message = refused(&lone_serve_refused(dir.path(), &serve_args, &[]), "serve");
        assert!(message.contains(&format!("{open:04o}")), "{message}");
        assert!(message.contains("chmod 600"), "{message}");
        chmod(file, 0o600);
    }
    let previous = dir.path().join("previous.key");
    new_key_file(&previous);
    chmod(&previous, 0o604);
    let previous = previous.to_str().expect("a UTF-8 path");
    let rotating = [&serve_args[..], &["--previous-peer-key-file", previous]].concat();
    let message = refused(&lone_serve_refused(dir.path(), &rotating, &[]), "serve");
    assert!(message.contains("0604"), "{message}");

    chmod(&keys.client_file, 0o644);
    let endpoint = free_loopback_addresses(1)[0].to_string();
    for command in [
        &["put", "k", "v"][..],
        &["get", "k"],
        &["status"],
        &["members"],
        &["bench", "--ops", "1"],
    ] {
        let args = [command, &["--endpoints", &endpoint, "--key-file", client]].concat();
        let message = refused(&run_balsa(&args), command[0]);
        assert!(message.contains("chmod 600"), "{args:?}: {message}");
    }
    let missing = dir.path().join("missing.key");
    let args = ["get", "k", "--key-file", missing.to_str().expect("UTF-8")];
    let message = refused(&run_balsa(&args), "get");
    assert!(message.contains("missing.key"), "{message}");
}

/// The keys of `serve` and of the client commands come from their environment variables too.
#[test]
fn serve_and_clients_take_their_keys_from_the_environment() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let keys = TestKeys::create(dir.path());
    let address = free_loopback_addresses(1)[0];
    let (_serving, line) = spawn_serve(
        lone_serve(dir.path(), address)
            .env("BALSA_PEER_KEY_FILE", &keys.peer_file)
            .env("BALSA_CLIENT_KEY_FILE", &keys.client_file)
            .stderr(Stdio::null()),
    );
    assert!(line.contains("listening"), "serve did not start: {line:?}");
    let endpoint = address.to_string();
    let put = wait_until(ELECTION_TIMEOUT, || {
        let put = balsa_command(&["put", "k", "v", "--endpoints", &endpoint])
            .env("BALSA_KEY_FILE", &keys.client_file)
            .output()
            .expect("running balsa put");
        put.status.success().then_some(put)
    });
    assert!(put.is_some(), "no write with the key from BALSA_KEY_FILE");
    // The flag wins over the variable.
    let other = dir.path().join("other.key");
    new_key_file(&other);
    let get = balsa_command(&["get", "k", "--endpoints", &endpoint, "--timeout", "1s"])
        .arg("--key-file")
        .arg(&keys.client_file)
        .env("BALSA_KEY_FILE", &other)
        .output()
        .expect("running balsa get");
    assert_eq!(get.status.code(), Some(0), "{}", stderr(&get));
    assert_eq!(stdout(&get), "v\n");
}

/// The one test path without keys: `--insecure` starts, warns once in its log, serves
/// plaintext clients, and tells a client that seals its requests to drop its key.
#[test]
fn an_insecure_cluster_warns_once_serves_plaintext_and_tells_a_keyed_client_to_drop_its_key() {
    let cluster = Cluster::start_insecure(1, &[]);
    cluster.wait_for_leader(ELECTION_TIMEOUT);
    let log = std::fs::read_to_string(cluster.log_path(1)).expect("the node's log");
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("--insecure")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("WARN"), "{log}");
    assert!(
        warnings[0].contains("anyone who can send this node a datagram can speak for a member"),
        "{log}"
    );
    assert!(!log.contains("sealing member traffic"), "{log}");

    let put = cluster.balsa(&["put", "k", "plain"]);
    assert_eq!(put.status.code(), Some(0), "{}", stderr(&put));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let key = dir.path().join("client.key");
    new_key_file(&key);
    let endpoints = endpoints_arg(&cluster.endpoints());
    let sealed = run_balsa(&[
        "get",
        "k",
        "--endpoints",
        &endpoints,
        "--key-file",
        key.to_str().expect("a UTF-8 path"),
        "--timeout",
        "1s",
    ]);
    let said = assert_exit_saying(&sealed, 3, "drop --key-file");
    assert!(
        said.starts_with("balsa get: authentication failed: "),
        "{said}"
    );
}

/// The status rows of `output` (`balsa status`'s table) and the lines after them.
fn status_lines(output: &Output) -> Vec<String> {
    assert_eq!(output.status.code(), Some(0), "{}", stderr(output));
    stdout(output).lines().map(str::to_owned).collect()
}

#[test]
fn clients_without_the_key_or_with_another_exit_3_naming_authentication_and_status_counts_them() {
    let cluster = Cluster::start(1);
    cluster.wait_for_leader(ELECTION_TIMEOUT);
    let log = std::fs::read_to_string(cluster.log_path(1)).expect("the node's log");
    let keys = cluster.keys().expect("the cluster runs with keys");
    let client = read_key_file(&keys.client_file).expect("the client key");
    let peer = read_key_file(&keys.peer_file).expect("the peer key");
    assert!(
        log.contains(&format!(
            "sealing member traffic under peer key {} and client traffic under client key {}",
            peer.fingerprint(),
            client.fingerprint()
        )),
        "{log}"
    );
    assert!(!log.contains(&peer.to_hex()) && !log.contains(&client.to_hex()));
    assert!(!log.contains("--insecure"), "{log}");

    // Before any stranger: the table is what it was before keys existed.
    let quiet = status_lines(&cluster.balsa(&["status"]));
    assert_eq!(quiet.len(), 2, "{quiet:#?}");
    assert!(quiet[1].ends_with("  voters=1"), "{quiet:#?}");

    let dir = tempfile::tempdir().expect("a temporary directory");
    let wrong = dir.path().join("wrong.key");
    let wrong_key = new_key_file(&wrong);
    let wrong = wrong.to_str().expect("a UTF-8 path").to_owned();
    let endpoints = endpoints_arg(&cluster.endpoints());
    let ways: [(&str, Vec<&str>); 2] = [
        ("no key", vec![]),
        ("another key", vec!["--key-file", &wrong]),
    ];
    for (way, key_args) in &ways {
        for command in [
            &["put", "k", "v"][..],
            &["get", "k"],
            &["cas", "k", "-", "v"],
            &["del", "k"],
        ] {
            let args = [
                command,
                &["--endpoints", &endpoints, "--timeout", "1s"],
                key_args,
            ]
            .concat();
            let output = run_balsa(&args);
            let said = stderr(&output);
            assert_eq!(output.status.code(), Some(3), "{way}, {args:?}: {said}");
            assert!(
                said.starts_with(&format!("balsa {}: authentication failed: ", command[0])),
                "{way}, {args:?}: {said}"
            );
            let hint = said.lines().nth(1).unwrap_or_default();
            assert!(
                hint.starts_with(&format!("balsa {}: hint: ", command[0]))
                    && hint.contains("--key-file FILE or BALSA_KEY_FILE"),
                "{way}, {args:?}: {said}"
            );
        }
        for command in [&["status"][..], &["members"]] {
            let args = [command, &["--endpoints", &endpoints], key_args].concat();
            let output = run_balsa(&args);
            let said = stderr(&output);
            assert_eq!(output.status.code(), Some(3), "{way}, {args:?}: {said}");
            assert!(said.contains("hint: "), "{way}, {args:?}: {said}");
            assert!(said.contains("--key-file"), "{way}, {args:?}: {said}");
        }
    }
    let put = |key_args: &[&str]| {
        let args = [
            "put",
            "k",
            "v",
            "--endpoints",
            &endpoints,
            "--timeout",
            "1s",
        ];
        run_balsa(&[&args[..], key_args].concat())
    };
    let output = put(&[]);
    assert!(
        stderr(&output).contains("this command has none"),
        "{}",
        stderr(&output)
    );
    let output = put(&["--key-file", &wrong]);
    let said = stderr(&output);
    assert!(said.contains(&wrong_key.fingerprint()), "{said}");
    assert!(said.contains("not the cluster's client key"), "{said}");
    // Nothing of theirs was applied.
    let get = cluster.balsa(&["get", "k"]);
    assert_eq!(get.status.code(), Some(1), "{}", stderr(&get));

    // The node counted them, per source.
    let lines = status_lines(&cluster.balsa(&["status"]));
    let counters = lines[1]
        .split_once("voters=1 ")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("no counters after the configuration: {lines:#?}"));
    let failed: u64 = counters
        .strip_prefix("auth_failed=")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{counters:?}"));
    // Each of the 14 commands above sent one request at least.
    assert!(failed >= 14, "{lines:#?}");
    let per_source: Vec<&String> = lines[2..]
        .iter()
        .filter(|line| line.contains(" dropped datagrams from 127.0.0.1:"))
        .collect();
    assert!(!per_source.is_empty(), "{lines:#?}");
    assert_eq!(per_source.len(), lines.len() - 2, "{lines:#?}");
    assert!(
        per_source
            .iter()
            .all(|line| line.contains(", replayed=0, wrong_kind=0")),
        "{lines:#?}"
    );
    let json = cluster.balsa(&["status", "--json"]);
    let reports: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(reports[0]["datagrams_auth_failed"], failed);
    assert_eq!(reports[0]["datagrams_replayed"], 0);
    let sources = reports[0]["suspicious_sources"]
        .as_array()
        .expect("an array");
    assert_eq!(sources.len(), per_source.len());
    let counted: u64 = sources
        .iter()
        .map(|source| source["auth_failed"].as_u64().expect("a count"))
        .sum();
    assert_eq!(counted, failed, "{sources:?}");
}

/// A node started with another peer key (and the right client key) cannot join or disturb the
/// cluster: its requests for votes are dropped, counted, and the members stay in their term
/// under their leader, committing.
#[test]
fn a_node_with_another_peer_key_neither_joins_nor_disturbs_the_cluster() {
    // Patient elections, so that load alone on a shared test machine does not change the term.
    let mut cluster = Cluster::start_with(3, &["--election-ticks", "30-60"]);
    let (leader, term) = cluster.wait_for_leader(ELECTION_TIMEOUT);
    let outsider = if leader == 3 { 2 } else { 3 };
    cluster.kill(outsider);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let foreign = TestKeys::create(dir.path());
    let keys = cluster.keys().expect("the cluster runs with keys").clone();
    let mixed = vec![
        "--peer-key-file".to_owned(),
        foreign.peer_file.display().to_string(),
        "--client-key-file".to_owned(),
        keys.client_file.display().to_string(),
    ];
    cluster.start_node_with_keys(outsider, &mixed, &[]);
    let member = 6 - leader - outsider;
    let [leader_index, member_index, outsider_index] =
        [leader, member, outsider].map(|id| usize::try_from(id - 1).expect("small ids"));
    // Until both members have dropped a good number of the outsider's datagrams.
    let mut seen: Vec<Option<StatusReport>> = Vec::new();
    let dropped = wait_until(ELECTION_TIMEOUT, || {
        seen = cluster.statuses();
        let counted = |index: usize| {
            seen[index]
                .as_ref()
                .is_some_and(|report| report.datagrams_auth_failed >= 10)
        };
        (counted(leader_index) && counted(member_index)).then_some(())
    });
    assert!(dropped.is_some(), "the outsider's datagrams: {seen:#?}");
    let put = cluster.balsa_at(
        &[cluster.address(leader), cluster.address(member)],
        &["put", "still", "committing"],
    );
    assert_eq!(put.status.code(), Some(0), "{}", stderr(&put));
    let after = cluster.statuses();
    for index in [leader_index, member_index] {
        let report = after[index].as_ref().expect("a member answers");
        assert_eq!(
            (report.term, report.leader),
            (term, Some(leader)),
            "{after:#?}"
        );
        let outsider_address = cluster.address(outsider);
        assert!(
            report
                .suspicious_sources
                .iter()
                .any(|source| source.address == outsider_address && source.auth_failed > 0),
            "{report:?}"
        );
    }
    // The outsider heard nothing it could open: it knows no leader and applied nothing new.
    let outsider_view = after[outsider_index]
        .as_ref()
        .expect("it answers its client");
    assert_eq!(outsider_view.leader, None, "{outsider_view:?}");
    assert!(outsider_view.datagrams_auth_failed > 0, "{outsider_view:?}");
}

/// The rolling rotation of both keys the README gives, through `serve`'s flags, under a write
/// load: round 1 restarts each node with the new keys and the old ones as `--previous-...`, the
/// clients move to the new client key, round 2 restarts each node with the new keys alone. The
/// cluster keeps committing after every restart, and no acknowledged write is lost.
#[test]
fn a_rolling_rotation_of_both_keys_through_the_flags_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start_with(3, &["--election-ticks", "30-60"]);
    cluster.wait_for_leader(ELECTION_TIMEOUT);
    let old = cluster.keys().expect("the cluster runs with keys").clone();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let new = TestKeys::create(dir.path());
    let path = |file: &Path| file.display().to_string();
    let rotating = [
        "--peer-key-file".to_owned(),
        path(&new.peer_file),
        "--previous-peer-key-file".to_owned(),
        path(&old.peer_file),
        "--client-key-file".to_owned(),
        path(&new.client_file),
        "--previous-client-key-file".to_owned(),
        path(&old.client_file),
    ];

    let on_old = common::Writer::start(cluster.endpoints(), Some(old.client.clone()), "old");
    on_old.wait_for_more(20, ELECTION_TIMEOUT);
    for id in cluster.ids() {
        cluster.kill(id);
        cluster.start_node_with_keys(id, &rotating, &[]);
        cluster.wait_for_leader(ELECTION_TIMEOUT);
        on_old.wait_for_more(10, ELECTION_TIMEOUT);
    }
    let log = std::fs::read_to_string(cluster.log_path(1)).expect("node 1's log");
    let old_peer = read_key_file(&old.peer_file).expect("the old peer key");
    assert!(
        log.contains(&format!(
            "(also accepting the previous key {})",
            old_peer.fingerprint()
        )),
        "{log}"
    );
    // The clients move to the new client key (the test's own probes too).
    cluster.set_keys(new.clone());
    let on_new = common::Writer::start(cluster.endpoints(), Some(new.client.clone()), "new");
    on_new.wait_for_more(20, ELECTION_TIMEOUT);
    let mut acknowledged = on_old.stop();
    for id in cluster.ids() {
        cluster.kill(id);
        cluster.start_node(id);
        cluster.wait_for_leader(ELECTION_TIMEOUT);
        on_new.wait_for_more(10, ELECTION_TIMEOUT);
    }
    acknowledged.extend(on_new.stop());
    let options = balsa::client::ClientOptions {
        key: Some(new.client.clone()),
        ..balsa::client::ClientOptions::default()
    };
    common::assert_all_present(&cluster.endpoints(), &options, &acknowledged);
    // The old client key is no longer taken.
    let endpoints = endpoints_arg(&cluster.endpoints());
    let stale = run_balsa(&[
        "get",
        "old-1",
        "--endpoints",
        &endpoints,
        "--key-file",
        &path(&old.client_file),
        "--timeout",
        "1s",
    ]);
    assert_exit_saying(&stale, 3, "authentication failed");
}
