//! The figures `balsa bench` prints, made from the load generator's raw samples: per kind of
//! operation (writes, reads), an HDR histogram of microseconds (1 µs to 60 s, three significant
//! figures) and its percentiles; the table, the `--json` object and the `--hgrm` file.
//!
//! Rule: a `put` run prints what `balsa bench` always printed (the one-row table and the flat
//! JSON object of the writes), so scripts that read it keep working; the other workloads print a
//! row, and a JSON object, per kind of operation they measure.

use std::io::{self, Write};
use std::time::Duration;

use balsa::client::load::{Measured, Outcome, Workload};
use hdrhistogram::Histogram;

/// The quantiles of the table and the JSON: p50, p90, p99, p99.9.
const QUANTILES: [f64; 4] = [0.50, 0.90, 0.99, 0.999];

/// What a load run measured, with each kind's latencies as a histogram.
pub struct Figures {
    /// What the measured operations were.
    pub workload: Workload,
    /// Clients that ran.
    pub clients: usize,
    /// From the start of the measured phase until the last client finished.
    pub elapsed: Duration,
    /// The writes.
    pub writes: OpFigures,
    /// The reads.
    pub reads: OpFigures,
    /// Reads answered that their key was absent.
    pub read_misses: u64,
    /// The first failure, for the user.
    pub first_error: Option<String>,
}

/// One kind of operation's figures.
pub struct OpFigures {
    /// Latency of each measured operation, in microseconds.
    pub latency_us: Histogram<u64>,
    /// Failed operations (for writes, the warm-up's included).
    pub errors: u64,
    /// The raw samples, with when each ended (for the plot over time).
    pub raw: Measured,
}

impl From<Measured> for OpFigures {
    fn from(raw: Measured) -> OpFigures {
        let mut latency_us = new_histogram();
        for &us in &raw.latencies_us {
            latency_us.saturating_record(us);
        }
        OpFigures {
            latency_us,
            errors: raw.errors,
            raw,
        }
    }
}

/// An empty histogram of microseconds, 1 µs to 60 s, three significant figures.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant bounds are valid")
}

impl OpFigures {
    /// Measured operations.
    pub fn ops(&self) -> u64 {
        self.latency_us.len()
    }

    /// Measured operations per second over `elapsed`.
    pub fn per_sec(&self, elapsed: Duration) -> f64 {
        self.ops() as f64 / elapsed.as_secs_f64().max(1e-9)
    }

    /// The latency at `quantile` (0.0–1.0), in microseconds.
    pub fn us_at(&self, quantile: f64) -> u64 {
        self.latency_us.value_at_quantile(quantile)
    }

    /// The latency at `quantile` as a JSON value: `null` when nothing was measured (an empty
    /// histogram has no percentiles; 0 would read as a latency).
    fn json_us_at(&self, quantile: f64) -> String {
        self.json_us(self.us_at(quantile))
    }

    /// The largest latency as a JSON value, `null` when nothing was measured.
    fn json_max_us(&self) -> String {
        self.json_us(self.latency_us.max())
    }

    fn json_us(&self, us: u64) -> String {
        if self.ops() == 0 {
            String::from("null")
        } else {
            us.to_string()
        }
    }

    /// `"ops":…,"ops_per_sec":…,"p50_us":…,"p90_us":…,"p99_us":…,"p999_us":…,"max_us":…` (no
    /// braces); the latencies `null` when nothing was measured.
    fn json_fields(&self, elapsed: Duration) -> String {
        let [p50, p90, p99, p999] = QUANTILES.map(|q| self.json_us_at(q));
        format!(
            "\"ops\":{},\"ops_per_sec\":{:.1},\"p50_us\":{p50},\"p90_us\":{p90},\
             \"p99_us\":{p99},\"p999_us\":{p999},\"max_us\":{}",
            self.ops(),
            self.per_sec(elapsed),
            self.json_max_us(),
        )
    }
}

impl From<(Workload, Outcome)> for Figures {
    fn from((workload, outcome): (Workload, Outcome)) -> Figures {
        Figures {
            workload,
            clients: outcome.clients,
            elapsed: outcome.elapsed,
            writes: OpFigures::from(outcome.writes),
            reads: OpFigures::from(outcome.reads),
            read_misses: outcome.read_misses,
            first_error: outcome.first_error,
        }
    }
}

/// The kinds of operation `workload` measures, writes first (known before the run).
pub fn kinds_of(workload: Workload) -> Vec<OpKind> {
    let mut kinds = Vec::new();
    if workload.has_writes() {
        kinds.push(OpKind::Writes);
    }
    if workload.has_reads() {
        kinds.push(OpKind::Reads);
    }
    kinds
}

/// One kind of operation a run measured, as the table and the JSON name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// Writes.
    Writes,
    /// Reads (stale ones in a `get-stale` run).
    Reads,
}

impl Figures {
    /// The kinds of operation the workload measures, writes first.
    pub fn kinds(&self) -> Vec<OpKind> {
        kinds_of(self.workload)
    }

    /// The figures of one kind.
    pub fn of(&self, kind: OpKind) -> &OpFigures {
        match kind {
            OpKind::Writes => &self.writes,
            OpKind::Reads => &self.reads,
        }
    }

    /// How a kind is named in the table and the plot: `writes`, `reads`, `stale reads`.
    pub fn label(&self, kind: OpKind) -> &'static str {
        match (kind, self.workload) {
            (OpKind::Writes, _) => "writes",
            (OpKind::Reads, Workload::GetStale) => "stale reads",
            (OpKind::Reads, _) => "reads",
        }
    }

    /// Failed operations of every kind, the warm-up's included.
    pub fn errors(&self) -> u64 {
        self.writes.errors + self.reads.errors
    }

    /// Measured writes per second (the `put` table's and JSON's throughput).
    pub fn ops_per_sec(&self) -> f64 {
        self.writes.per_sec(self.elapsed)
    }

    /// The latency of a write at `quantile` (0.0–1.0), in microseconds.
    pub fn us_at(&self, quantile: f64) -> u64 {
        self.writes.us_at(quantile)
    }

    /// The `--json` object. A `put` run's is flat, as it always was: `ops`, `clients`,
    /// `ops_per_sec`, `p50_us`, `p90_us`, `p99_us`, `p999_us`, `max_us`, `errors` (of the
    /// writes). Any other run's has `workload`, `clients`, `elapsed_s`, `errors` (all failed
    /// operations, the warm-up's included), and an object per kind it measures, `writes` and
    /// `reads`, each with `ops`, `ops_per_sec`, the percentiles, `max_us` and `errors` (and for
    /// reads `absent`: reads that found no value).
    pub fn to_json(&self) -> String {
        if self.workload == Workload::Put {
            return format!(
                "{{\"ops\":{},\"clients\":{},\"ops_per_sec\":{:.1},\"p50_us\":{},\"p90_us\":{},\
                 \"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"errors\":{}}}",
                self.writes.ops(),
                self.clients,
                self.ops_per_sec(),
                self.writes.json_us_at(0.50),
                self.writes.json_us_at(0.90),
                self.writes.json_us_at(0.99),
                self.writes.json_us_at(0.999),
                self.writes.json_max_us(),
                self.writes.errors,
            );
        }
        let mut json = format!(
            "{{\"workload\":\"{}\",\"clients\":{},\"elapsed_s\":{:.3},\"errors\":{}",
            self.workload,
            self.clients,
            self.elapsed.as_secs_f64(),
            self.errors()
        );
        for kind in self.kinds() {
            let figures = self.of(kind);
            let (name, extra) = match kind {
                OpKind::Writes => ("writes", String::new()),
                OpKind::Reads => ("reads", format!(",\"absent\":{}", self.read_misses)),
            };
            json.push_str(&format!(
                ",\"{name}\":{{{},\"errors\":{}{extra}}}",
                figures.json_fields(self.elapsed),
                figures.errors
            ));
        }
        json.push('}');
        json
    }

    /// The table on stdout: for `put`, the line and the one row it always was; for the other
    /// workloads a heading line and a row per kind of operation.
    pub fn table(&self, value_size: usize) -> String {
        let mut out = String::new();
        if self.workload == Workload::Put {
            out.push_str(&format!(
                "{} clients, {} writes of {} bytes in {:.2} s: {:.0} writes/s\n",
                self.clients,
                self.writes.ops(),
                value_size,
                self.elapsed.as_secs_f64(),
                self.ops_per_sec()
            ));
            out.push_str(&format!(
                "{:>8} {:>8} {:>8} {:>8} {:>8}\n",
                "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs"
            ));
            out.push_str(&format!(
                "{:>8} {:>8} {:>8} {:>8} {:>8}\n",
                self.us_at(0.5),
                self.us_at(0.9),
                self.us_at(0.99),
                self.us_at(0.999),
                self.writes.latency_us.max()
            ));
            return out;
        }
        let reads = match self.workload {
            Workload::GetStale => "stale reads: from the asked node's state",
            _ => "reads linearizable, through ReadIndex",
        };
        out.push_str(&format!(
            "{} clients, workload {} ({reads}), values of {value_size} bytes, {:.2} s\n",
            self.clients,
            self.workload,
            self.elapsed.as_secs_f64(),
        ));
        out.push_str(&format!(
            "{:<12} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}\n",
            "op", "count", "ops/s", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs", "errors"
        ));
        for kind in self.kinds() {
            let figures = self.of(kind);
            let [p50, p90, p99, p999] = QUANTILES.map(|q| figures.us_at(q));
            out.push_str(&format!(
                "{:<12} {:>9} {:>9.0} {p50:>8} {p90:>8} {p99:>8} {p999:>8} {:>8} {:>7}\n",
                self.label(kind),
                figures.ops(),
                figures.per_sec(self.elapsed),
                figures.latency_us.max(),
                figures.errors,
            ));
        }
        out
    }
}

/// `hist`'s percentile distribution as (percentile 0.0–1.0, value) steps: five ticks per half
/// distance, as HdrHistogram's `outputPercentileDistribution` lists them (the rows of the
/// `.hgrm` file, and the points of the percentile plot), with the total count up to each.
pub fn percentile_steps(hist: &Histogram<u64>) -> Vec<(f64, f64, u64)> {
    let mut total = 0_u64;
    hist.iter_quantiles(5)
        .map(|step| {
            total += step.count_since_last_iteration();
            (
                step.quantile_iterated_to(),
                step.value_iterated_to() as f64,
                total,
            )
        })
        .collect()
}

/// Writes `hist` (microseconds) as HdrHistogram's percentile distribution text (the `.hgrm`
/// format of `outputPercentileDistribution`, five ticks per half distance, values in µs), which
/// the HdrHistogram plotter and `balsa bench --compare` read.
///
/// # Errors
/// Any write error.
pub fn write_hgrm(hist: &Histogram<u64>, out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    for (quantile, value, total) in percentile_steps(hist) {
        if quantile < 1.0 {
            writeln!(
                out,
                "{value:>12.3} {quantile:>2.12} {total:>10} {:>14.2}",
                1.0 / (1.0 - quantile)
            )?;
        } else {
            writeln!(out, "{value:>12.3} {quantile:>2.12} {total:>10}")?;
        }
    }
    writeln!(
        out,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        hist.mean(),
        hist.stdev()
    )?;
    writeln!(
        out,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        hist.max() as f64,
        hist.len()
    )?;
    // As HdrHistogram computes it: the smallest power of two holding 2 × 10^significant figures.
    let sub_buckets = (2 * 10_u64.pow(u32::from(hist.sigfig()))).next_power_of_two();
    writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        hist.buckets(),
        sub_buckets
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(latencies_us: Vec<u64>) -> Measured {
        Measured {
            ended_us: (0..latencies_us.len() as u64).collect(),
            latencies_us,
            errors: 0,
        }
    }

    fn figures(latencies_us: Vec<u64>) -> Figures {
        Figures::from((
            Workload::Put,
            Outcome {
                clients: 1,
                elapsed: Duration::from_millis(500),
                writes: measured(latencies_us),
                reads: Measured::default(),
                read_misses: 0,
                first_error: None,
                stopped: None,
            },
        ))
    }

    fn mixed(writes: Vec<u64>, reads: Vec<u64>) -> Figures {
        Figures::from((
            Workload::Mixed {
                reads_per_million: 500_000,
            },
            Outcome {
                clients: 2,
                elapsed: Duration::from_secs(2),
                writes: measured(writes),
                reads: Measured {
                    errors: 3,
                    ..measured(reads)
                },
                read_misses: 1,
                first_error: None,
                stopped: None,
            },
        ))
    }

    #[test]
    fn hgrm_lists_percentiles_up_to_the_max_and_the_totals() {
        let figures = figures((1..=1000).collect());
        let mut text = Vec::new();
        write_hgrm(&figures.writes.latency_us, &mut text).expect("writing to memory");
        let text = String::from_utf8(text).expect("ascii");
        let rows: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with(' ') && !line.contains("Value"))
            .collect();
        let last = rows.last().expect("rows");
        assert!(last.contains("1.000000000000"), "{last}");
        assert!(last.trim_end().ends_with("1000"), "{last}");
        assert!(text.contains("Total count    =         1000]"), "{text}");
        assert!(text.contains("SubBuckets     =         2048]"), "{text}");
        assert!(rows.len() > 20, "{} rows", rows.len());
    }

    #[test]
    fn percentiles_come_from_every_sample() {
        let figures = figures((1..=1000).rev().collect());
        assert_eq!(figures.us_at(0.5), 500);
        assert_eq!(figures.us_at(0.99), 990);
        assert_eq!(figures.writes.latency_us.max(), 1000);
        assert_eq!(figures.writes.ops(), 1000);
    }

    /// An empty run has no percentiles: `null`, never a 0 that reads as a latency.
    #[test]
    fn the_json_of_an_empty_run_has_null_percentiles() {
        let json: serde_json::Value =
            serde_json::from_str(&figures(Vec::new()).to_json()).expect("valid JSON");
        for key in ["p50_us", "p90_us", "p99_us", "p999_us", "max_us"] {
            assert_eq!(json[key], serde_json::Value::Null, "{key}: {json}");
        }
        assert_eq!(json["ops"], 0);
        let json: serde_json::Value =
            serde_json::from_str(&mixed(Vec::new(), vec![40]).to_json()).expect("valid JSON");
        assert_eq!(json["writes"]["p99_us"], serde_json::Value::Null, "{json}");
        assert_eq!(json["reads"]["p99_us"], 40, "{json}");
    }

    #[test]
    fn json_names_every_key_the_issue_lists() {
        let json = figures(vec![250]).to_json();
        for key in [
            "ops",
            "clients",
            "ops_per_sec",
            "p50_us",
            "p90_us",
            "p99_us",
            "p999_us",
            "max_us",
            "errors",
        ] {
            assert!(json.contains(&format!("\"{key}\":")), "{key} in {json}");
        }
        assert!(json.contains("\"ops_per_sec\":2.0"), "{json}");
        assert!(json.contains("\"p50_us\":250,"), "{json}");
        assert!(
            !json.contains("workload"),
            "a put run's JSON is as it was: {json}"
        );
    }

    /// A mixed run's JSON has an object per kind, each with its own count, throughput,
    /// percentiles and errors; its table a row per kind.
    #[test]
    fn a_mixed_run_reports_reads_beside_writes() {
        let figures = mixed(vec![100; 30], vec![40; 10]);
        let json = figures.to_json();
        let parsed: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(parsed["workload"], "mixed:0.5");
        assert_eq!(parsed["errors"], 3);
        assert_eq!(parsed["writes"]["ops"], 30);
        assert_eq!(parsed["writes"]["ops_per_sec"], 15.0);
        assert_eq!(parsed["writes"]["p99_us"], 100);
        assert_eq!(parsed["reads"]["ops"], 10);
        assert_eq!(parsed["reads"]["p50_us"], 40);
        assert_eq!(parsed["reads"]["errors"], 3);
        assert_eq!(parsed["reads"]["absent"], 1);
        let table = figures.table(100);
        let rows: Vec<&str> = table.lines().collect();
        assert_eq!(rows.len(), 4, "{table}");
        assert!(rows[0].contains("workload mixed:0.5"), "{table}");
        assert!(
            rows[2].starts_with("writes") && rows[2].contains(" 30 "),
            "{table}"
        );
        assert!(
            rows[3].starts_with("reads") && rows[3].contains(" 10 "),
            "{table}"
        );
    }

    #[test]
    fn a_read_run_reports_only_its_reads() {
        let figures = Figures {
            workload: Workload::GetStale,
            ..mixed(Vec::new(), vec![7; 5])
        };
        assert_eq!(figures.kinds(), vec![OpKind::Reads]);
        let parsed: serde_json::Value =
            serde_json::from_str(&figures.to_json()).expect("valid JSON");
        assert!(parsed.get("writes").is_none(), "{parsed}");
        assert_eq!(parsed["reads"]["ops"], 5);
        assert!(figures.table(8).contains("stale reads"));
    }
}
