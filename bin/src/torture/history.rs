//! The client history of a torture run: one [`Record`] per operation, as the workload saw it
//! (invoked at `call_ns`, returned at `return_ns`, with an [`Outcome`]), its JSON-lines export
//! (`--history FILE`, the format the README documents for outside checkers such as Porcupine
//! or Knossos), and its translation into the project's checker's operations.
//!
//! Outcomes follow Jepsen: `ok` took effect as answered; `fail` definitely did not take effect
//! (the client library said so: every attempt was refused, or a compare-and-swap mismatched);
//! `info` may or may not have taken effect, at any time after its invocation (a timeout).
//!
//! Invariants: values are unique per run (the workload writes `p<process>-<n>`), so a value
//! read names the one write that wrote it; a process has at most one operation outstanding,
//! and a process whose operation ended `info` never invokes another (the workload moves on
//! under a new process number), so an unanswered operation stays open to the end, as the
//! checker requires.

use std::collections::HashMap;
use std::io::{self, Write};

use balsa::sim::linearizability::{HistoryOp, Invocation, Ret};
use serde::Serialize;

/// What an operation did, as far as its client knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It took effect, with the output recorded.
    Ok,
    /// It definitely did not take effect.
    Fail,
    /// Unknown: it may take effect at any time after its invocation.
    Info,
}

/// The operation asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// Set the key to `value`.
    Put {
        /// The value (unique in the run).
        value: String,
    },
    /// Read the key (linearizable).
    Get,
    /// Set the key to `new` if it holds `expected` (`None`: if absent).
    Cas {
        /// The value expected.
        expected: Option<String>,
        /// The value written (unique in the run).
        new: String,
    },
    /// Delete the key.
    Del,
}

impl Call {
    /// `put`, `get`, `cas` or `del`, as in the export.
    pub fn name(&self) -> &'static str {
        match self {
            Call::Put { .. } => "put",
            Call::Get => "get",
            Call::Cas { .. } => "cas",
            Call::Del => "del",
        }
    }

    /// True for the operations that change the key when they succeed.
    pub fn is_write(&self) -> bool {
        !matches!(self, Call::Get)
    }
}

/// What an `ok` (or a mismatched compare-and-swap) returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Nothing to say (a put, a delete, or an operation that did not end `ok`).
    None,
    /// A read's value (`None`: absent).
    Value(Option<String>),
    /// A compare-and-swap swapped.
    Swapped,
    /// A compare-and-swap found this instead (`None`: absent); it is a `fail`.
    Mismatch(Option<String>),
}

/// One operation of the history.
#[derive(Clone, Debug)]
pub struct Record {
    /// The process that ran it (a client thread's current number; the final reads use their
    /// own).
    pub process: u64,
    /// The key.
    pub key: String,
    /// What was asked.
    pub call: Call,
    /// When it was invoked, in nanoseconds since the run started.
    pub call_ns: u64,
    /// When its answer (or its failure) came back.
    pub return_ns: u64,
    /// What it did.
    pub outcome: Outcome,
    /// What it returned.
    pub output: Output,
    /// The client library's error, for `fail` and `info`.
    pub error: Option<String>,
}

/// The JSON-lines form of a record (field names as the README documents them).
#[derive(Serialize)]
struct Line<'a> {
    process: u64,
    op: &'static str,
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expected: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    new: Option<&'a str>,
    call_ns: u64,
    return_ns: u64,
    outcome: Outcome,
    output: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

impl Record {
    fn line(&self) -> Line<'_> {
        let (value, expected, new) = match &self.call {
            Call::Put { value } => (Some(value.as_str()), None, None),
            Call::Cas { expected, new } => (None, Some(expected.as_deref()), Some(new.as_str())),
            Call::Get | Call::Del => (None, None, None),
        };
        let output = match &self.output {
            Output::None => serde_json::Value::Null,
            Output::Value(value) => serde_json::json!({ "value": value }),
            Output::Swapped => serde_json::json!({ "swapped": true }),
            Output::Mismatch(current) => {
                serde_json::json!({ "swapped": false, "current": current })
            }
        };
        Line {
            process: self.process,
            op: self.call.name(),
            key: &self.key,
            value,
            expected,
            new,
            call_ns: self.call_ns,
            return_ns: self.return_ns,
            outcome: self.outcome,
            output,
            error: self.error.as_deref(),
        }
    }
}

/// Writes `history` as JSON lines, one object per operation, in invocation order.
pub fn export(history: &[Record], out: &mut impl Write) -> io::Result<()> {
    for record in history {
        serde_json::to_writer(&mut *out, &record.line())?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Numbers for keys and values, so that the checker's registers hold integers.
#[derive(Default)]
struct Interner {
    numbers: HashMap<String, u64>,
}

impl Interner {
    fn number(&mut self, text: &str) -> u64 {
        let next = self.numbers.len() as u64;
        *self.numbers.entry(text.to_owned()).or_insert(next)
    }

    fn option(&mut self, text: Option<&String>) -> Option<u64> {
        text.map(|text| self.number(text))
    }
}

/// The history as the checker takes it. `fail` operations are left out: they did not happen.
/// `info` operations never returned; a read that ended `info` has no effect and is left out
/// too. Times are the nanosecond times, doubled, so that a return and a call at the same
/// nanosecond stay ordered as recorded (the checker treats equal times as concurrent anyway).
pub fn to_checker(history: &[Record]) -> Vec<HistoryOp> {
    let mut keys = Interner::default();
    let mut values = Interner::default();
    let mut operations = Vec::with_capacity(history.len());
    for record in history {
        // The workload's keys are `k<n>`: key n for the checker, so its messages name them.
        let key = record
            .key
            .strip_prefix('k')
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| (1 << 40) + keys.number(&record.key));
        let (op, ret) = match (&record.call, record.outcome, &record.output) {
            (_, Outcome::Fail, Output::Mismatch(current)) => {
                // A mismatched compare-and-swap saw `current`: it is a read that took effect.
                let Call::Cas { expected, new } = &record.call else {
                    continue;
                };
                let op = Invocation::Cas {
                    key,
                    expected: values.option(expected.as_ref()),
                    new: values.number(new),
                };
                (op, Some(Ret::CasFail(values.option(current.as_ref()))))
            }
            (_, Outcome::Fail, _) | (Call::Get, Outcome::Info, _) => continue,
            (Call::Put { value }, outcome, _) => {
                let op = Invocation::Write {
                    key,
                    value: values.number(value),
                };
                (op, (outcome == Outcome::Ok).then_some(Ret::WriteOk))
            }
            (Call::Get, Outcome::Ok, output) => {
                let seen = match output {
                    Output::Value(value) => values.option(value.as_ref()),
                    _ => None,
                };
                (Invocation::Read { key }, Some(Ret::ReadOk(seen)))
            }
            (Call::Cas { expected, new }, outcome, _) => {
                let op = Invocation::Cas {
                    key,
                    expected: values.option(expected.as_ref()),
                    new: values.number(new),
                };
                (op, (outcome == Outcome::Ok).then_some(Ret::CasOk))
            }
            (Call::Del, outcome, _) => (
                Invocation::Delete { key },
                (outcome == Outcome::Ok).then_some(Ret::DeleteOk),
            ),
        };
        operations.push(HistoryOp {
            client: record.process,
            op,
            call: record.call_ns.saturating_mul(2),
            ret: ret.map(|ret| (record.return_ns.saturating_mul(2).saturating_add(1), ret)),
        });
    }
    operations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        process: u64,
        call: Call,
        times: (u64, u64),
        outcome: Outcome,
        output: Output,
    ) -> Record {
        Record {
            process,
            key: "k0".into(),
            call,
            call_ns: times.0,
            return_ns: times.1,
            outcome,
            output,
            error: None,
        }
    }

    #[test]
    fn export_writes_one_json_object_per_operation_with_the_documented_fields() {
        let history = vec![
            record(
                1,
                Call::Put {
                    value: "p1-0".into(),
                },
                (10, 20),
                Outcome::Ok,
                Output::None,
            ),
            record(
                2,
                Call::Cas {
                    expected: None,
                    new: "p2-0".into(),
                },
                (15, 30),
                Outcome::Fail,
                Output::Mismatch(Some("p1-0".into())),
            ),
            record(3, Call::Get, (40, 50), Outcome::Ok, Output::Value(None)),
        ];
        let mut out = Vec::new();
        export(&history, &mut out).expect("writing to a Vec cannot fail");
        let text = String::from_utf8(out).expect("serde_json writes UTF-8");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("each line is one JSON object"))
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["op"], "put");
        assert_eq!(lines[0]["value"], "p1-0");
        assert_eq!(lines[0]["outcome"], "ok");
        assert_eq!(lines[1]["op"], "cas");
        assert_eq!(lines[1]["expected"], serde_json::Value::Null);
        assert_eq!(lines[1]["new"], "p2-0");
        assert_eq!(lines[1]["output"]["current"], "p1-0");
        assert_eq!(lines[2]["output"]["value"], serde_json::Value::Null);
        assert_eq!(
            (lines[2]["call_ns"].as_u64(), lines[2]["return_ns"].as_u64()),
            (Some(40), Some(50))
        );
    }

    #[test]
    fn failed_operations_are_left_out_of_the_checked_history_but_mismatches_are_kept_as_reads() {
        let history = vec![
            record(
                1,
                Call::Put { value: "a".into() },
                (1, 2),
                Outcome::Fail,
                Output::None,
            ),
            record(2, Call::Get, (3, 4), Outcome::Info, Output::None),
            record(
                3,
                Call::Cas {
                    expected: None,
                    new: "b".into(),
                },
                (5, 6),
                Outcome::Fail,
                Output::Mismatch(None),
            ),
            record(4, Call::Del, (7, 8), Outcome::Info, Output::None),
        ];
        let checked = to_checker(&history);
        assert_eq!(checked.len(), 2);
        assert!(matches!(checked[0].ret, Some((_, Ret::CasFail(None)))));
        assert!(matches!(checked[1].op, Invocation::Delete { .. }));
        assert_eq!(checked[1].ret, None);
    }
}
