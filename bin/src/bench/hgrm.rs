//! Reading a `.hgrm` file back, for `balsa bench --compare`: HdrHistogram's percentile
//! distribution text (what `outputPercentileDistribution` and `balsa bench --hgrm` write).
//!
//! The format, line by line: a heading (`Value Percentile TotalCount 1/(1-Percentile)`), blank
//! lines, then one row per step — the value (a latency; `--hgrm` writes microseconds), the
//! percentile as a fraction (0.0–1.0), the count up to it, and `1/(1-percentile)` except on the
//! last rows, where the percentile is 1 — and the `#[...]` footer lines (mean, max, total count,
//! buckets). The footer is not needed: the rows are the curve.
//!
//! Rules kept: a file is read through a bound ([`MAX_FILE_BYTES`]), so a huge or endless file
//! is refused rather than read; every row is checked (numbers, a percentile in 0..=1,
//! percentiles and counts that never go down, a value that is finite and not negative), and a
//! bad one is refused with the file's name and the line's number; a file without a row is
//! refused too.

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// The largest `.hgrm` file read: `--hgrm` writes a few kilobytes; a megabyte leaves room for
/// any histogram's distribution.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// One step of a percentile distribution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    /// The value (latency, µs for the files `--hgrm` writes).
    pub value: f64,
    /// The percentile, as a fraction (0.0–1.0).
    pub percentile: f64,
    /// Values recorded up to this step.
    pub total_count: u64,
}

/// Why a `.hgrm` file was refused.
#[derive(Debug)]
pub struct HgrmError {
    /// The file.
    pub path: PathBuf,
    /// The line (from 1), when the fault is on one.
    pub line: Option<usize>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for HgrmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path.display(), self.reason),
            None => write!(f, "{}: {}", self.path.display(), self.reason),
        }
    }
}

impl std::error::Error for HgrmError {}

/// Reads the percentile distribution in the file at `path`.
///
/// # Errors
/// The file cannot be read, is larger than [`MAX_FILE_BYTES`], is not UTF-8, has a row that is
/// not one (see the module doc), or has no row.
pub fn read(path: &Path) -> Result<Vec<Step>, HgrmError> {
    let refuse = |line: Option<usize>, reason: String| HgrmError {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let file = std::fs::File::open(path).map_err(|error| refuse(None, error.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| refuse(None, error.to_string()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(refuse(
            None,
            format!(
                "larger than {} bytes: not a percentile distribution `--hgrm` writes",
                MAX_FILE_BYTES
            ),
        ));
    }
    let text = String::from_utf8(bytes).map_err(|_| refuse(None, "not UTF-8 text".into()))?;
    parse(&text).map_err(|(line, reason)| refuse(Some(line), reason))
}

/// The steps of `text`; an error is the line's number (from 1) and what is wrong with it.
fn parse(text: &str) -> Result<Vec<Step>, (usize, String)> {
    let mut steps: Vec<Step> = Vec::new();
    let mut lines = 0;
    for (index, line) in text.lines().enumerate() {
        lines = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("Value") {
            continue;
        }
        let step = parse_row(line).map_err(|reason| (index + 1, reason))?;
        if let Some(last) = steps.last() {
            let going_down =
                |what: &str, now: &dyn std::fmt::Display, before: &dyn std::fmt::Display| {
                    (
                        index + 1,
                        format!("{what} {now} after {before}: the rows must go up"),
                    )
                };
            if step.percentile < last.percentile {
                return Err(going_down("percentile", &step.percentile, &last.percentile));
            }
            if step.total_count < last.total_count {
                return Err(going_down(
                    "total count",
                    &step.total_count,
                    &last.total_count,
                ));
            }
        }
        steps.push(step);
    }
    if steps.is_empty() {
        return Err((
            lines.max(1),
            "no percentile row (VALUE PERCENTILE TOTALCOUNT [1/(1-PERCENTILE)]): \
             not a file `balsa bench --hgrm` wrote"
                .into(),
        ));
    }
    Ok(steps)
}

/// One row: `VALUE PERCENTILE TOTALCOUNT [1/(1-PERCENTILE)]`.
fn parse_row(line: &str) -> Result<Step, String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if !(3..=4).contains(&fields.len()) {
        return Err(format!(
            "{} fields where a row has 3 or 4 (VALUE PERCENTILE TOTALCOUNT \
             [1/(1-PERCENTILE)]): {line:?}",
            fields.len()
        ));
    }
    let number = |name: &str, text: &str| -> Result<f64, String> {
        text.parse::<f64>()
            .ok()
            .filter(|value| value.is_finite() && *value >= 0.0)
            .ok_or_else(|| format!("{name} {text:?} is not a number ≥ 0"))
    };
    let value = number("value", fields[0])?;
    let percentile = number("percentile", fields[1])?;
    if percentile > 1.0 {
        return Err(format!(
            "percentile {} is over 1 (a fraction: 0.99 is p99)",
            fields[1]
        ));
    }
    let total_count = fields[2]
        .parse::<u64>()
        .map_err(|_| format!("total count {:?} is not a whole number", fields[2]))?;
    if let Some(inverse) = fields.get(3) {
        number("1/(1-percentile)", inverse)?;
    }
    Ok(Step {
        value,
        percentile,
        total_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::figures::{new_histogram, write_hgrm};

    /// What `--hgrm` writes reads back as the same steps.
    #[test]
    fn what_hgrm_writes_reads_back() {
        let mut hist = new_histogram();
        for us in 1..=5000 {
            hist.record(us).expect("within bounds");
        }
        let mut text = Vec::new();
        write_hgrm(&hist, &mut text).expect("writing to memory");
        let steps = parse(std::str::from_utf8(&text).expect("ascii")).expect("a valid file");
        let expected = crate::bench::figures::percentile_steps(&hist);
        assert_eq!(steps.len(), expected.len());
        for (step, (percentile, value, total)) in steps.iter().zip(expected) {
            assert!((step.percentile - percentile).abs() < 1e-12);
            assert!((step.value - value).abs() < 1e-3);
            assert_eq!(step.total_count, total);
        }
        assert_eq!(steps.last().map(|step| step.total_count), Some(5000));
    }

    /// Each fault is refused with its line's number.
    #[test]
    fn a_bad_row_is_refused_with_its_line() {
        let good = "       Value     Percentile TotalCount 1/(1-Percentile)\n\n\
                    10.000 0.000000000000 1 1.00\n\
                    20.000 0.500000000000 5 2.00\n";
        assert_eq!(parse(good).expect("valid").len(), 2);
        for (bad, line, says) in [
            ("10.000 0.5 3 2.00\nten 0.6 4 2.5\n", 2, "value \"ten\""),
            ("10.000 1.5 3\n", 1, "over 1"),
            ("10.000 0.5\n", 1, "2 fields"),
            ("10.000 0.5 3\n11.0 0.4 4\n", 2, "percentile 0.4 after 0.5"),
            ("10.000 0.5 3\n11.0 0.6 2\n", 2, "total count 2 after 3"),
            ("-1 0.5 3\n", 1, "not a number ≥ 0"),
            ("10 0.5 3.5\n", 1, "not a whole number"),
            ("NaN 0.5 3\n", 1, "value \"NaN\""),
            ("# only a comment\n\n", 2, "no percentile row"),
            ("", 1, "no percentile row"),
        ] {
            let (at, reason) = parse(bad).expect_err(bad);
            assert_eq!(at, line, "{bad:?}: {reason}");
            assert!(reason.contains(says), "{bad:?}: {reason}");
        }
    }

    /// A file over the bound is refused without being read whole; the error names the file.
    #[test]
    fn a_file_over_the_bound_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("huge.hgrm");
        let row = "10.000 0.500000000000 5 2.00\n";
        let rows = usize::try_from(MAX_FILE_BYTES).expect("small") / row.len() + 1;
        std::fs::write(&path, row.repeat(rows)).expect("writing the file");
        let error = read(&path).expect_err("over the bound");
        assert!(error.to_string().starts_with(&path.display().to_string()));
        assert!(error.to_string().contains("larger than"), "{error}");
        let missing = read(&dir.path().join("missing.hgrm")).expect_err("absent");
        assert!(missing.to_string().contains("missing.hgrm"), "{missing}");
    }
}
