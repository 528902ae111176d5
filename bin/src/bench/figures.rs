//! The figures `balsa bench` prints, made from the load generator's raw latency samples: an HDR
//! histogram of microseconds (1 µs to 60 s, three significant figures), its percentiles, the
//! `--json` object and the `--hgrm` file.

use std::io::{self, Write};
use std::time::Duration;

use balsa::client::load::Outcome;
use hdrhistogram::Histogram;

/// What a load run measured, with its latencies as a histogram.
pub struct Figures {
    /// Writes measured (answered).
    pub ops: u64,
    /// Clients that ran.
    pub clients: usize,
    /// From the start of the measured phase until the last client finished.
    pub elapsed: Duration,
    /// Latency of each measured write, in microseconds.
    pub latency_us: Histogram<u64>,
    /// Writes that failed (warm-up included).
    pub errors: u64,
    /// The first failure, for the user.
    pub first_error: Option<String>,
}

impl From<Outcome> for Figures {
    fn from(outcome: Outcome) -> Figures {
        let mut latency_us =
            Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant bounds are valid");
        for &us in &outcome.latencies_us {
            latency_us.saturating_record(us);
        }
        Figures {
            ops: outcome.ops,
            clients: outcome.clients,
            elapsed: outcome.elapsed,
            latency_us,
            errors: outcome.errors,
            first_error: outcome.first_error,
        }
    }
}

impl Figures {
    /// Measured writes per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The latency at `quantile` (0.0–1.0), in microseconds.
    pub fn us_at(&self, quantile: f64) -> u64 {
        self.latency_us.value_at_quantile(quantile)
    }

    /// One JSON object: `ops`, `clients`, `ops_per_sec`, `p50_us`, `p90_us`, `p99_us`,
    /// `p999_us`, `max_us`, `errors`.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"ops\":{},\"clients\":{},\"ops_per_sec\":{:.1},\"p50_us\":{},\"p90_us\":{},\
             \"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"errors\":{}}}",
            self.ops,
            self.clients,
            self.ops_per_sec(),
            self.us_at(0.50),
            self.us_at(0.90),
            self.us_at(0.99),
            self.us_at(0.999),
            self.latency_us.max(),
            self.errors,
        )
    }
}

/// Writes `hist` (microseconds) as HdrHistogram's percentile distribution text (the `.hgrm`
/// format of `outputPercentileDistribution`, five ticks per half distance, values in µs), which
/// the HdrHistogram plotter reads.
///
/// # Errors
/// Any write error.
pub fn write_hgrm(hist: &Histogram<u64>, out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    let mut total = 0_u64;
    for step in hist.iter_quantiles(5) {
        total += step.count_since_last_iteration();
        let quantile = step.quantile_iterated_to();
        let value = step.value_iterated_to() as f64;
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

    fn figures(latencies_us: Vec<u64>) -> Figures {
        Figures::from(Outcome {
            ops: latencies_us.len() as u64,
            clients: 1,
            elapsed: Duration::from_millis(500),
            latencies_us,
            errors: 0,
            first_error: None,
        })
    }

    #[test]
    fn hgrm_lists_percentiles_up_to_the_max_and_the_totals() {
        let figures = figures((1..=1000).collect());
        let mut text = Vec::new();
        write_hgrm(&figures.latency_us, &mut text).expect("writing to memory");
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
        assert_eq!(figures.latency_us.max(), 1000);
        assert_eq!(figures.latency_us.len(), 1000);
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
    }
}
