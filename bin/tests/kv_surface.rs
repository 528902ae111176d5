//! The fuller key-value surface against a real three-node cluster: values from standard input
//! and from a file, binary values and keys end to end (`--output`, `--hex`, `--hex-key`), range
//! and prefix reads larger than one datagram returned complete and in order (through the CLI
//! and `Client::scan`), counted deletes and prefix deletes past one batch.

mod common;

use std::io::Write as _;
use std::process::{Output, Stdio};

use balsa::kv::{KeyRange, MAX_DELETE_BATCH, MAX_VALUE_SIZE, thousands};
use common::{Cluster, ELECTION_TIMEOUT, balsa_command, endpoints_arg, stderr, stdout};

/// Runs `balsa ARGS` against `cluster` with `input` on its standard input.
fn balsa_with_stdin(cluster: &Cluster, args: &[&str], input: &[u8]) -> Output {
    let endpoints = endpoints_arg(&cluster.endpoints());
    let mut all = args.to_vec();
    all.extend(["--endpoints", &endpoints]);
    let mut command = balsa_command(&all);
    if let Some(file) = cluster.key_file() {
        command.arg("--key-file").arg(file);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running the balsa executable");
    let mut stdin = child.stdin.take().expect("stdin was piped");
    // The command reads all of its input before it sends anything: no deadlock on a full pipe.
    stdin.write_all(input).expect("writing balsa's input");
    drop(stdin);
    child.wait_with_output().expect("waiting for balsa")
}

fn succeeded(output: &Output, what: &str) -> String {
    assert_eq!(output.status.code(), Some(0), "{what}: {}", stderr(output));
    stdout(output)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[test]
fn binary_values_from_stdin_and_files_come_back_exactly() {
    let cluster = Cluster::start(3);
    cluster.wait_for_leader(ELECTION_TIMEOUT);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let every_byte: Vec<u8> = (0..=255).cycle().take(3 * 256 + 7).collect();

    // From standard input.
    let put = balsa_with_stdin(&cluster, &["put", "from-stdin", "-"], &every_byte);
    assert_eq!(succeeded(&put, "put from stdin"), "OK\n");
    let out = dir.path().join("out.bin");
    let out_arg = out.to_str().expect("a UTF-8 path");
    let get = cluster.balsa(&["get", "from-stdin", "--output", out_arg]);
    assert_eq!(succeeded(&get, "get --output"), "", "nothing printed");
    assert_eq!(std::fs::read(&out).expect("the output file"), every_byte);
    let get = cluster.balsa(&["get", "from-stdin", "--hex"]);
    assert_eq!(
        succeeded(&get, "get --hex"),
        format!("{}\n", hex(&every_byte))
    );

    // From a file, under a key given in hex that is not UTF-8.
    let file = dir.path().join("value.bin");
    let reversed: Vec<u8> = every_byte.iter().rev().copied().collect();
    std::fs::write(&file, &reversed).expect("writing the value file");
    let file_arg = file.to_str().expect("a UTF-8 path");
    let put = cluster.balsa(&["put", "ff00fe", "--hex-key", "--value-file", file_arg]);
    assert_eq!(succeeded(&put, "put --value-file"), "OK\n");
    let mut client = cluster.client();
    assert_eq!(
        client.get(&[0xff, 0x00, 0xfe], false).expect("get"),
        Some(reversed.clone())
    );
    let get = cluster.balsa(&["get", "FF00FE", "--hex-key", "--output", out_arg]);
    succeeded(&get, "get --hex-key --output");
    assert_eq!(std::fs::read(&out).expect("the output file"), reversed);

    // An absent key: exit 1, and no file written.
    let absent = dir.path().join("absent.bin");
    let get = cluster.balsa(&["get", "nope", "--output", absent.to_str().expect("UTF-8")]);
    assert_eq!(get.status.code(), Some(1), "{}", stderr(&get));
    assert!(!absent.exists());

    // Over the maximum value size, from stdin or a file: refused by name, exit 2, nothing sent.
    let huge = vec![b'x'; MAX_VALUE_SIZE + 1];
    let put = balsa_with_stdin(&cluster, &["put", "huge", "-"], &huge);
    assert_eq!(put.status.code(), Some(2), "{}", stderr(&put));
    assert!(
        stderr(&put).contains(&format!(
            "exceeds the maximum value size of {} bytes",
            thousands(MAX_VALUE_SIZE as u64)
        )),
        "{}",
        stderr(&put)
    );
    std::fs::write(&file, &huge).expect("writing the value file");
    let put = cluster.balsa(&["put", "huge", "--value-file", file_arg]);
    assert_eq!(put.status.code(), Some(2), "{}", stderr(&put));
    assert!(
        stderr(&put).contains(&format!(
            "of {} bytes exceeds the maximum value size",
            thousands(MAX_VALUE_SIZE as u64 + 1)
        )),
        "{}",
        stderr(&put)
    );
    let bad_hex = cluster.balsa(&["put", "xyz", "v", "--hex-key"]);
    assert_eq!(bad_hex.status.code(), Some(2), "{}", stderr(&bad_hex));
    assert!(client.get(b"huge", false).expect("get").is_none());
}

#[test]
fn a_prefix_read_of_more_than_a_datagram_streams_complete_and_in_order() {
    let cluster = Cluster::start(3);
    cluster.wait_for_leader(ELECTION_TIMEOUT);
    let mut client = cluster.client();
    // 40 values of 4,000 bytes: about 160 kB, three datagrams' worth at least.
    let value = |n: usize| format!("{n:04}").repeat(1_000);
    for n in (0..40).rev() {
        client
            .put(format!("big/{n:02}").as_bytes(), value(n).as_bytes())
            .expect("put");
    }
    for key in ["big", "big0", "bif/zz", "a"] {
        client.put(key.as_bytes(), b"outside").expect("put");
    }

    let get = cluster.balsa(&["get", "--prefix", "big/"]);
    let printed = succeeded(&get, "get --prefix");
    let expected: Vec<String> = (0..40)
        .map(|n| format!("big/{n:02}\t{}", value(n)))
        .collect();
    assert_eq!(printed.lines().collect::<Vec<_>>(), expected);

    let limited = cluster.balsa(&["get", "--prefix", "big/", "--limit", "25"]);
    let printed = succeeded(&limited, "get --prefix --limit");
    assert_eq!(printed.lines().collect::<Vec<_>>(), expected[..25]);

    let range = cluster.balsa(&["get", "--range", "big/10", "big/13"]);
    assert_eq!(
        succeeded(&range, "get --range"),
        format!("{}\n", expected[10..13].join("\n"))
    );
    let none = cluster.balsa(&["get", "--prefix", "nothing/"]);
    assert_eq!(succeeded(&none, "an empty prefix read"), "");

    // The library: the same pairs, in pages that each fit a datagram.
    let pages: Vec<Vec<(Vec<u8>, Vec<u8>)>> = client
        .scan(KeyRange::prefix(b"big/"), None, false)
        .collect::<Result<_, _>>()
        .expect("scan");
    assert!(pages.len() >= 3, "{} pages", pages.len());
    let keys: Vec<Vec<u8>> = pages.concat().into_iter().map(|(key, _)| key).collect();
    let expected_keys: Vec<Vec<u8>> = (0..40)
        .map(|n| format!("big/{n:02}").into_bytes())
        .collect();
    assert_eq!(keys, expected_keys);
    let first_five: Vec<_> = client
        .scan(KeyRange::prefix(b"big/"), Some(5), false)
        .collect::<Result<Vec<_>, _>>()
        .expect("scan")
        .concat();
    assert_eq!(first_five.len(), 5);
}

#[test]
fn deletes_answer_how_many_keys_they_removed() {
    let cluster = Cluster::start(3);
    cluster.wait_for_leader(ELECTION_TIMEOUT);
    let mut client = cluster.client();
    client.put(b"k", b"v").expect("put");
    let del = cluster.balsa(&["del", "k"]);
    assert_eq!(succeeded(&del, "del of a present key"), "1\n");
    let del = cluster.balsa(&["del", "k"]);
    assert_eq!(
        succeeded(&del, "del of an absent key: exit 0, as before"),
        "0\n"
    );

    // More keys than one batch: the CLI sends batches until none remains.
    let count = MAX_DELETE_BATCH + 5;
    for n in 0..count {
        client
            .put(format!("tmp/{n:05}").as_bytes(), b"x")
            .expect("put");
    }
    client.put(b"tmp", b"kept").expect("put");
    client.put(b"tmq/0", b"kept").expect("put");
    let del = cluster.balsa(&["del", "--prefix", "tmp/"]);
    assert_eq!(succeeded(&del, "del --prefix"), format!("{count}\n"));
    let left: Vec<Vec<u8>> = client
        .scan(KeyRange::all(), None, false)
        .collect::<Result<Vec<_>, _>>()
        .expect("scan")
        .concat()
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    assert_eq!(left, [b"tmp".to_vec(), b"tmq/0".to_vec()]);
    let del = cluster.balsa(&["del", "--prefix", "tmp/"]);
    assert_eq!(succeeded(&del, "del --prefix of nothing"), "0\n");
    assert_eq!(client.delete_counted(b"tmp").expect("delete"), 1);
    assert_eq!(client.delete_prefix(b"tmq/").expect("delete"), 1);
}
