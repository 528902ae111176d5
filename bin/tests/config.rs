//! `balsa serve --config FILE.toml` and `--print-config` through the real executable: a node
//! runs with its file's settings; the command line wins over the environment, which wins over
//! the file, which wins over the defaults; an unknown key, a value of the wrong type, and a
//! file that is not TOML or too large exit 2 naming what is wrong and where; `--print-config`
//! prints what `--config` reads back to the same text, starts nothing, and refuses what
//! `serve` would.

#![allow(
    clippy::disallowed_methods,
    reason = "tests of real processes wait on wall-clock deadlines"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use common::{
    ELECTION_TIMEOUT, TestKeys, balsa_command, free_loopback_addresses, refused, spawn_serve,
    stderr, stdout, wait_until,
};

/// Writes `text` to `name` in `dir`; its path.
fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writing the file");
    path
}

/// A TOML string: `text` quoted (the paths here hold no quote or backslash).
fn quoted(path: &Path) -> String {
    let text = path.to_str().expect("a UTF-8 path");
    assert!(!text.contains(['"', '\\']), "{text}");
    format!("\"{text}\"")
}

/// `balsa serve --config FILE ARGS`, run to its end (no key variable inherited but those in
/// `env`).
fn serve(file: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut command = balsa_command(&["serve", "--config"]);
    command.arg(file).args(args);
    for (variable, value) in env {
        command.env(variable, value);
    }
    command.output().expect("running balsa serve")
}

/// `balsa serve --config FILE --print-config ARGS`: what it printed, after checking it exited 0
/// with nothing on stderr.
fn printed(file: &Path, args: &[&str], env: &[(&str, &Path)]) -> String {
    let output = serve(file, &[&["--print-config"], args].concat(), env);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stderr(&output), "");
    stdout(&output)
}

/// The TOML `text`, read.
fn table(text: &str) -> toml::Table {
    toml::from_str(text).unwrap_or_else(|error| panic!("not TOML: {error}\n{text}"))
}

/// The one line `balsa serve --config FILE ARGS` refuses with (see [`refused`]).
fn refusal(file: &Path, args: &[&str]) -> String {
    refused(&serve(file, args, &[]), "serve")
}

/// The settings a lone node needs (id 1, on `address`, keyed with `keys`), as TOML lines.
fn lone_node(dir: &Path, keys: &TestKeys) -> String {
    let address = free_loopback_addresses(1)[0];
    format!(
        "id = 1\ncluster = [\"1={address}\"]\ndata-dir = {}\npeer-key-file = {}\n\
         client-key-file = {}\n",
        quoted(&dir.join("data")),
        quoted(&keys.peer_file),
        quoted(&keys.client_file)
    )
}

/// A temporary directory with a peer and a client key in it.
fn dir_with_keys() -> (tempfile::TempDir, TestKeys) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let keys = TestKeys::create(dir.path());
    (dir, keys)
}

/// `node.toml` in `dir`: a lone node's settings (see [`lone_node`]), then the lines `more`.
fn lone_node_file(dir: &Path, keys: &TestKeys, more: &str) -> PathBuf {
    write(dir, "node.toml", &format!("{}{more}", lone_node(dir, keys)))
}

#[test]
fn a_node_runs_with_the_settings_of_its_file() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let keys = TestKeys::create(dir.path());
    let address = free_loopback_addresses(1)[0];
    let data = dir.path().join("node-7");
    let file = write(
        dir.path(),
        "node.toml",
        &format!(
            "# node 7, alone\nid = 7\ncluster = [\"7={address}\"]\ndata-dir = {}\n\
             peer-key-file = {}\nclient-key-file = {}\ntick-ms = 5\ncluster-token = \"blue\"\n",
            quoted(&data),
            quoted(&keys.peer_file),
            quoted(&keys.client_file)
        ),
    );
    let (_serving, line) = spawn_serve(
        balsa_command(&["serve", "--config"])
            .arg(&file)
            .stderr(Stdio::null()),
    );
    assert_eq!(line, format!("balsa: node 7 listening on {address}\n"));
    assert!(data.join("IDENTITY").is_file(), "the file's data directory");
    let endpoint = address.to_string();
    let status = wait_until(ELECTION_TIMEOUT, || {
        let output = balsa_command(&["status", "--json", "--endpoints", &endpoint])
            .arg("--key-file")
            .arg(&keys.client_file)
            .output()
            .expect("running balsa status");
        let parsed: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
        (parsed[0]["role"] == "leader").then_some(parsed)
    })
    .expect("the node leads itself within the bound");
    assert_eq!(status[0]["id"], 7, "the file's id");
    assert_eq!(
        status[0]["voters"],
        serde_json::json!([7]),
        "the file's cluster"
    );
}

#[test]
fn a_flag_wins_over_the_file_and_the_file_over_the_defaults() {
    let (dir, keys) = dir_with_keys();
    let file = lone_node_file(
        dir.path(),
        &keys,
        "tick-ms = 5\nheartbeat-ticks = 3\nwal-direct = true\n",
    );
    let from_file = table(&printed(&file, &[], &[]));
    assert_eq!(from_file["tick-ms"].as_integer(), Some(5));
    assert_eq!(from_file["heartbeat-ticks"].as_integer(), Some(3));
    assert_eq!(from_file["wal-direct"].as_bool(), Some(true));
    assert_eq!(from_file["snapshot-entries"].as_integer(), Some(100_000));
    assert_eq!(from_file["unsafe-no-fsync"].as_bool(), Some(false));
    let with_flags = table(&printed(
        &file,
        &[
            "--tick-ms",
            "7",
            "--unsafe-no-fsync",
            "--data-dir",
            "elsewhere",
        ],
        &[],
    ));
    assert_eq!(with_flags["tick-ms"].as_integer(), Some(7));
    assert_eq!(with_flags["data-dir"].as_str(), Some("elsewhere"));
    assert_eq!(with_flags["unsafe-no-fsync"].as_bool(), Some(true));
    assert_eq!(with_flags["heartbeat-ticks"].as_integer(), Some(3));
}

#[test]
fn the_environment_wins_over_the_file_and_the_command_line_over_both() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (in_file, in_env, on_line) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    for keys_dir in [&in_file, &in_env, &on_line] {
        std::fs::create_dir(keys_dir).expect("a directory");
    }
    let file_keys = TestKeys::create(&in_file);
    let env_keys = TestKeys::create(&in_env);
    let line_keys = TestKeys::create(&on_line);
    let file = lone_node_file(dir.path(), &file_keys, "");
    let peer_key = |printed: &str| table(printed)["peer-key-file"].as_str().map(PathBuf::from);
    assert_eq!(
        peer_key(&printed(&file, &[], &[])),
        Some(file_keys.peer_file.clone())
    );
    let env = [
        ("BALSA_PEER_KEY_FILE", env_keys.peer_file.as_path()),
        ("BALSA_CLIENT_KEY_FILE", env_keys.client_file.as_path()),
    ];
    let from_env = printed(&file, &[], &env);
    assert_eq!(peer_key(&from_env), Some(env_keys.peer_file.clone()));
    assert_eq!(
        table(&from_env)["client-key-file"]
            .as_str()
            .map(PathBuf::from),
        Some(env_keys.client_file.clone())
    );
    let line = [
        "--peer-key-file",
        line_keys.peer_file.to_str().expect("UTF-8"),
        "--client-key-file",
        line_keys.client_file.to_str().expect("UTF-8"),
    ];
    assert_eq!(
        peer_key(&printed(&file, &line, &env)),
        Some(line_keys.peer_file.clone())
    );
}

#[test]
fn an_unknown_key_exits_2_naming_it_and_the_closest_flag() {
    let (dir, keys) = dir_with_keys();
    let file = lone_node_file(dir.path(), &keys, "\nsnapshot_entries = 10\n");
    let message = refusal(&file, &[]);
    assert!(
        message.contains(&format!(
            "{}, line 7: unknown key \"snapshot_entries\" (did you mean snapshot-entries?)",
            file.display()
        )),
        "{message}"
    );
    assert!(!dir.path().join("data").exists(), "no node started");
}

#[test]
fn a_value_of_the_wrong_type_exits_2_naming_the_key_and_what_it_expected() {
    let (dir, keys) = dir_with_keys();
    for (setting, expected) in [
        (
            "tick-ms = \"fast\"",
            "tick-ms: expected an integer (MS), found a string",
        ),
        (
            "join = \"yes\"",
            "join: expected true or false, found a string",
        ),
        (
            "listen = 7001",
            "listen: expected a string (IP:PORT), found an integer",
        ),
        (
            "listen = \"7001\"",
            "listen = \"7001\": \"7001\" is not an address",
        ),
    ] {
        // The wrong setting before the good ones: the refusal is about it.
        let file = write(
            dir.path(),
            "node.toml",
            &format!("{setting}\n{}", lone_node(dir.path(), &keys)),
        );
        let message = refusal(&file, &[]);
        let at = format!("{}, line 1, column ", file.display());
        assert!(message.contains(&at), "{setting}: {message}");
        assert!(message.contains(expected), "{setting}: {message}");
    }
    let file = write(
        dir.path(),
        "node.toml",
        "id = 1\ncluster = \"1=127.0.0.1:7001\"\n",
    );
    let message = refusal(&file, &[]);
    assert!(
        message.contains("cluster: expected an array of strings (ID=IP:PORT,...), found a string"),
        "{message}"
    );
}

#[test]
fn a_file_that_cannot_be_read_is_not_toml_or_is_too_large_exits_2_naming_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let missing = dir.path().join("missing.toml");
    let message = refusal(&missing, &[]);
    assert!(
        message.contains(&format!("cannot read {}: ", missing.display())),
        "{message}"
    );
    let broken = write(
        dir.path(),
        "broken.toml",
        "id = 1\ncluster = [\"1=127.0.0.1:1\"\n",
    );
    let message = refusal(&broken, &[]);
    assert!(
        message.contains(&format!("{}, line ", broken.display())) && message.contains("not TOML"),
        "{message}"
    );
    let huge = write(
        dir.path(),
        "huge.toml",
        &format!("# {}\n", "x".repeat(2 << 20)),
    );
    let message = refusal(&huge, &[]);
    assert!(
        message.contains(&format!("{} is over 1024 KiB", huge.display())),
        "{message}"
    );
}

#[test]
fn print_config_reads_back_to_the_same_text_and_starts_nothing() {
    let (dir, keys) = dir_with_keys();
    let file = lone_node_file(
        dir.path(),
        &keys,
        "election-ticks = \"20-40\"\ncluster-token = \"a \\\"quoted\\\" token\"\n",
    );
    let first = printed(&file, &["--snapshot-trailing", "0", "--join"], &[]);
    let printed_file = write(dir.path(), "printed.toml", &first);
    let second = printed(&printed_file, &[], &[]);
    assert_eq!(second, first);
    let settings = table(&first);
    assert_eq!(settings["election-ticks"].as_str(), Some("20-40"));
    assert_eq!(
        settings["cluster-token"].as_str(),
        Some("a \"quoted\" token")
    );
    assert_eq!(settings["snapshot-trailing"].as_integer(), Some(0));
    assert_eq!(settings["join"].as_bool(), Some(true));
    // Every serve flag is there, set or commented out.
    for key in [
        "id",
        "cluster",
        "data-dir",
        "listen",
        "tick-ms",
        "heartbeat-ticks",
        "segment-bytes",
        "rejoin",
        "join-timeout-ms",
        "previous-peer-key-file",
        "insecure",
    ] {
        assert!(
            settings.contains_key(key) || first.contains(&format!("\n# {key} is not set\n")),
            "{key}: {first}"
        );
    }
    // The flags about the file are not settings.
    assert!(
        !first.contains("\nconfig") && !first.contains("print-config ="),
        "{first}"
    );
    assert!(!dir.path().join("data").exists(), "no node started");
}

#[test]
fn print_config_refuses_what_serve_would() {
    let (dir, keys) = dir_with_keys();
    let file = lone_node_file(dir.path(), &keys, "election-ticks = \"30-30\"\n");
    let message = refusal(&file, &["--print-config"]);
    assert!(message.contains("bad configuration"), "{message}");
    // Without keys or --insecure, as serve.
    let file = write(
        dir.path(),
        "bare.toml",
        &format!(
            "id = 1\ncluster = [\"1=127.0.0.1:1\"]\ndata-dir = {}\n",
            quoted(&dir.path().join("data"))
        ),
    );
    let message = refusal(&file, &["--print-config"]);
    assert!(message.contains("no keys"), "{message}");
    // A key file that is not there.
    let message = refusal(
        &file,
        &[
            "--print-config",
            "--peer-key-file",
            "nowhere.key",
            "--client-key-file",
            keys.client_file.to_str().expect("UTF-8"),
        ],
    );
    assert!(message.contains("nowhere.key"), "{message}");
}
