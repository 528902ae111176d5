//! `balsa bench --workload`, `--plot`, `--compare` and `balsa check perf` against real
//! `balsa serve` processes (see `tests/common/mod.rs`). Counts are asserted, never timings: the
//! load's read/write split is deterministic, and a check's verdicts depend on the machine, so
//! only their shape is.

mod common;

use std::path::Path;

use common::{
    Cluster, ELECTION_TIMEOUT, assert_exit_saying, endpoints_arg, free_loopback_addresses,
    run_balsa, stderr, stdout,
};

/// The writes' and the reads' colours in the pictures, and the second compared file's.
const WRITES: &str = "#0072B2";
const READS: &str = "#D55E00";

fn json(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(&stdout(output))
        .unwrap_or_else(|error| panic!("not JSON ({error}): {}", stdout(output)))
}

/// Every workload runs and reports what it measured: writes for `put`, reads (linearizable
/// or stale) for `get` and `get-stale`, both for `mixed:R` — whose reads are exactly the
/// share asked of each client's operations — and no read finds its key absent.
#[test]
fn each_workload_reports_its_reads_and_writes() {
    let cluster = Cluster::start(3);
    cluster.wait_for_leader(ELECTION_TIMEOUT);
    let run = |workload: &str| {
        let output = cluster.balsa(&[
            "bench",
            "--workload",
            workload,
            "--clients",
            "4",
            "--ops",
            "200",
            "--warmup",
            "20",
            "--json",
        ]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{workload}: {}",
            stderr(&output)
        );
        json(&output)
    };

    // A put run's JSON is the flat object bench always printed.
    let put = run("put");
    assert_eq!(put["ops"], 200, "{put}");
    assert_eq!(put["errors"], 0, "{put}");
    assert!(put.get("workload").is_none(), "{put}");

    for workload in ["get", "get-stale"] {
        let reads = run(workload);
        assert_eq!(reads["workload"], workload, "{reads}");
        assert_eq!(reads["reads"]["ops"], 200, "{reads}");
        assert_eq!(reads["reads"]["absent"], 0, "{reads}");
        assert_eq!(reads["errors"], 0, "{reads}");
        assert!(reads.get("writes").is_none(), "{reads}");
        for key in ["ops_per_sec", "p50_us", "p99_us", "p999_us", "max_us"] {
            assert!(reads["reads"].get(key).is_some(), "{key} in {reads}");
        }
    }

    // 4 clients of 50 operations, a quarter of each client's reads: ⌊50 × 0.25⌋ = 12 each.
    for share in ["mixed:0.25", "mixed:25%"] {
        let mixed = run(share);
        assert_eq!(mixed["workload"], "mixed:0.25", "{mixed}");
        assert_eq!(mixed["reads"]["ops"], 48, "{mixed}");
        assert_eq!(mixed["writes"]["ops"], 152, "{mixed}");
        assert_eq!(mixed["reads"]["absent"], 0, "{mixed}");
        assert_eq!(mixed["errors"], 0, "{mixed}");
    }

    // The table: a row per kind.
    let table = cluster.balsa(&[
        "bench",
        "--workload",
        "mixed:0.5",
        "--clients",
        "2",
        "--ops",
        "100",
        "--warmup",
        "10",
    ]);
    assert_eq!(table.status.code(), Some(0), "{}", stderr(&table));
    let text = stdout(&table);
    let rows: Vec<&str> = text.lines().collect();
    assert!(rows[0].contains("workload mixed:0.5"), "{text}");
    assert!(
        rows[2].starts_with("writes") && rows[2].contains(" 50 "),
        "{text}"
    );
    assert!(
        rows[3].starts_with("reads") && rows[3].contains(" 50 "),
        "{text}"
    );
}

/// Stroked elements of `colour` with more than two points: series, not legend samples.
fn series_of(document: &roxmltree::Document<'_>, colour: &str) -> usize {
    document
        .descendants()
        .filter(|node| node.has_tag_name("polyline") && node.attribute("stroke") == Some(colour))
        .filter(|node| {
            node.attribute("points")
                .is_some_and(|points| points.split_whitespace().count() > 2)
        })
        .count()
}

fn texts(document: &roxmltree::Document<'_>) -> Vec<String> {
    document
        .descendants()
        .filter(|node| node.has_tag_name("text"))
        .filter_map(|node| node.text())
        .map(|text| text.trim().to_owned())
        .collect()
}

fn read_svg(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// `--plot` draws a mixed run: per kind a percentile curve, a throughput line and a p50 line
/// (and a dashed p99), with their legends; `--hgrm` writes the writes' and the reads'
/// distributions; `--compare` overlays those two files, labelled by name.
#[test]
fn plot_draws_each_series_and_compare_overlays_saved_runs() {
    let cluster = Cluster::start(3);
    cluster.wait_for_leader(ELECTION_TIMEOUT);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let svg_path = dir.path().join("run.svg");
    let hgrm_path = dir.path().join("run.hgrm");
    let output = cluster.balsa(&[
        "bench",
        "--workload",
        "mixed:0.5",
        "--clients",
        "4",
        "--ops",
        "2000",
        "--warmup",
        "20",
        "--shared-sockets",
        "--plot",
        svg_path.to_str().expect("a UTF-8 path"),
        "--hgrm",
        hgrm_path.to_str().expect("a UTF-8 path"),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let svg = read_svg(&svg_path);
    let document = roxmltree::Document::parse(&svg).expect("a well-formed SVG");
    assert_eq!(document.root_element().tag_name().name(), "svg");
    for colour in [WRITES, READS] {
        assert!(
            series_of(&document, colour) >= 3,
            "{colour}: a percentile curve, a throughput line and a p50 line"
        );
    }
    let texts = texts(&document);
    for expected in [
        "writes/s",
        "reads/s",
        "writes p50",
        "writes p99",
        "reads p50",
        "reads p99",
        "90%",
        "99%",
        "99.9%",
        "99.99%",
    ] {
        assert!(
            texts.iter().any(|t| t == expected),
            "{expected:?} in {texts:?}"
        );
    }
    assert!(
        texts.iter().any(|t| t.starts_with("writes: 1,000 ops")),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.starts_with("reads: 1,000 ops")),
        "{texts:?}"
    );

    let reads_path = dir.path().join("run.hgrm.reads");
    for path in [&hgrm_path, &reads_path] {
        let text = std::fs::read_to_string(path).expect("the hgrm file was written");
        assert!(text.contains("Total count    =         1000]"), "{text}");
    }

    let compared = dir.path().join("compare.svg");
    let output = run_balsa(&[
        "bench",
        "--compare",
        hgrm_path.to_str().expect("a UTF-8 path"),
        reads_path.to_str().expect("a UTF-8 path"),
        "--plot",
        compared.to_str().expect("a UTF-8 path"),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let svg = read_svg(&compared);
    let document = roxmltree::Document::parse(&svg).expect("a well-formed SVG");
    // The compared files take the first two colours: the writes' blue, then vermillion.
    assert_eq!(series_of(&document, WRITES), 1, "one curve per file");
    assert_eq!(series_of(&document, READS), 1, "one curve per file");
    let texts = self::texts(&document);
    for label in ["run.hgrm: 1,000 ops", "run.hgrm.reads: 1,000 ops"] {
        assert!(
            texts.iter().any(|t| t.starts_with(label)),
            "{label:?} in {texts:?}"
        );
    }
}

/// A file `--compare` cannot use is refused with exit 2, one line naming the file (and the
/// line, when a row is bad), and no picture.
#[test]
fn a_bad_hgrm_file_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let good = dir.path().join("good.hgrm");
    std::fs::write(
        &good,
        "10.000 0.000000000000 1 1.00\n20.000 1.000000000000 2\n",
    )
    .expect("writing");
    let bad = dir.path().join("bad.hgrm");
    std::fs::write(
        &bad,
        "       Value     Percentile TotalCount 1/(1-Percentile)\n\n\
         10.000 0.500000000000 1 2.00\nfast 0.9 2 10.0\n",
    )
    .expect("writing");
    let plot = dir.path().join("out.svg");
    let compare = |files: &[&Path]| {
        let mut args = vec!["bench".to_owned(), "--compare".to_owned()];
        args.extend(files.iter().map(|file| file.display().to_string()));
        args.extend(["--plot".to_owned(), plot.display().to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_balsa(&args)
    };
    let missing = dir.path().join("missing.hgrm");
    for (files, says) in [
        (
            vec![good.as_path(), bad.as_path()],
            format!("{}:4: value \"fast\"", bad.display()),
        ),
        (
            vec![good.as_path(), missing.as_path()],
            missing.display().to_string(),
        ),
    ] {
        let output = compare(&files);
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        let message = stderr(&output);
        assert_eq!(message.lines().count(), 1, "{message}");
        assert!(message.starts_with("balsa bench: "), "{message}");
        assert!(message.contains(&says), "{says:?} in {message}");
        assert!(!plot.exists(), "no picture of a refused comparison");
    }
    let output = compare(&[good.as_path()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(plot.exists());
}

/// `check perf` against a healthy cluster prints the floor, the load, a PASS or FAIL line per
/// criterion (a FAIL with what to do) and a summary, and exits 0 or 1 as the summary says;
/// against no cluster at all it exits 3.
#[test]
fn check_perf_judges_each_criterion() {
    let cluster = Cluster::start(3);
    cluster.wait_for_leader(ELECTION_TIMEOUT);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let output = cluster.balsa(&[
        "check",
        "perf",
        "--duration",
        "2s",
        "--dir",
        dir.path().to_str().expect("a UTF-8 path"),
    ]);
    let code = output.status.code();
    assert!(
        matches!(code, Some(0 | 1)),
        "exit {code:?}: {}",
        stderr(&output)
    );
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("floor: "), "{text}");
    assert!(
        lines.iter().any(|line| line.starts_with("load: ")),
        "{text}"
    );
    let mut failed = 0;
    for criterion in ["throughput", "p99 latency", "errors", "leader"] {
        let pass = format!("PASS {criterion}: ");
        let fail = format!("FAIL {criterion}: ");
        let found: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, line)| line.starts_with(&pass) || line.starts_with(&fail))
            .map(|(at, _)| at)
            .collect();
        assert_eq!(found.len(), 1, "one line for {criterion}: {text}");
        if lines[found[0]].starts_with("FAIL") {
            failed += 1;
            assert!(
                lines[found[0] + 1].trim_start().starts_with("what to do: "),
                "{text}"
            );
        }
    }
    let summary = lines.last().expect("a summary");
    if failed == 0 {
        assert_eq!(*summary, "balsa check perf: PASS (4 of 4 criteria)");
        assert_eq!(code, Some(0));
    } else {
        assert_eq!(
            *summary,
            format!("balsa check perf: FAIL ({failed} of 4 criteria failed)")
        );
        assert_eq!(code, Some(1));
    }
    drop(cluster);

    // Nobody at these addresses: unavailable.
    let nobody = endpoints_arg(&free_loopback_addresses(3));
    let output = run_balsa(&["check", "perf", "--duration", "1s", "--endpoints", &nobody]);
    assert_exit_saying(&output, 3, "the cluster is unavailable");
}
