//! The checks of a torture run, on the history the clients recorded and on what the nodes said
//! at the end:
//!
//! - **linearizability**, per key, with the project's checker
//!   (`balsa::sim::linearizability`, the one the simulator uses);
//! - **acknowledged writes**: each final read (taken after the faults were healed) must show a
//!   value that an acknowledged write could have been overwritten by. A write acknowledged
//!   `ok` is *lost* when the final value of its key was written by an operation that returned
//!   before the write was invoked (values are unique, so that operation is known), or the key
//!   is absent and no delete could have come after the write. The checker finds the same
//!   anomalies as violations; this count names them plainly;
//! - **convergence**: every member, once it has applied as far as the leader committed, holds
//!   the same value for every key (a digest per node).

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash as _, Hasher as _};

use balsa::sim::linearizability::{self, INCONCLUSIVE_PREFIX};

use super::history::{Call, Outcome, Output, Record, to_checker};

/// The checker's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Linearizable.
    Linearizable,
    /// Not linearizable, with the checker's explanation (the smallest excerpt it found).
    NotLinearizable(String),
    /// The search ran out of budget.
    Unknown(String),
}

/// Runs the linearizability checker over the history.
pub fn linearizable(history: &[Record]) -> Verdict {
    match linearizability::check(&to_checker(history)) {
        Ok(()) => Verdict::Linearizable,
        Err(message) if message.starts_with(INCONCLUSIVE_PREFIX) => Verdict::Unknown(message),
        Err(message) => Verdict::NotLinearizable(message),
    }
}

/// The checker's explanation with each operation it names followed by the operation as the
/// history has it (the checker numbers values; the history shows them as written).
pub fn translate(explanation: &str, history: &[Record]) -> String {
    let by_call: HashMap<(u64, u64), &Record> = history
        .iter()
        .map(|record| ((record.process, record.call_ns.saturating_mul(2)), record))
        .collect();
    let mut out = String::new();
    for line in explanation.lines() {
        out.push_str(line);
        out.push('\n');
        let process = line
            .split("client ")
            .nth(1)
            .and_then(|rest| rest.split(':').next())
            .and_then(|n| n.trim().parse::<u64>().ok());
        let call = line
            .split("[call ")
            .nth(1)
            .and_then(|rest| rest.split([',', ']']).next())
            .and_then(|n| n.trim().parse::<u64>().ok());
        if let (Some(process), Some(call)) = (process, call)
            && let Some(record) = by_call.get(&(process, call))
        {
            out.push_str("      = ");
            out.push_str(&describe(record));
            out.push('\n');
        }
    }
    out
}

/// An acknowledged write that the final read of its key contradicts.
#[derive(Clone, Debug)]
pub struct LostWrite {
    /// The key.
    pub key: String,
    /// The write, as the history has it.
    pub write: String,
    /// What the final read saw.
    pub final_value: Option<String>,
}

/// The acknowledged writes the final reads contradict. `finals` holds each key's final read
/// (a key missing from it was not read, and is not judged).
pub fn lost_writes(
    history: &[Record],
    finals: &BTreeMap<String, Option<String>>,
) -> Vec<LostWrite> {
    // Who wrote each value, and when that write returned (`None`: never answered).
    let mut writers: HashMap<(&str, &str), Option<u64>> = HashMap::new();
    for record in history {
        let returned = (record.outcome == Outcome::Ok).then_some(record.return_ns);
        let value = match &record.call {
            Call::Put { value } => value,
            Call::Cas { new, .. } => new,
            Call::Get | Call::Del => continue,
        };
        if record.outcome != Outcome::Fail {
            writers.insert((record.key.as_str(), value.as_str()), returned);
        }
    }
    // Per key, the latest a delete that may have happened could have taken effect (never
    // answered: any time).
    let mut last_delete_end: HashMap<&str, u64> = HashMap::new();
    for record in history {
        if matches!(record.call, Call::Del) && record.outcome != Outcome::Fail {
            let end = match record.outcome {
                Outcome::Info => u64::MAX,
                _ => record.return_ns,
            };
            let latest = last_delete_end.entry(record.key.as_str()).or_insert(0);
            *latest = (*latest).max(end);
        }
    }
    let mut lost = Vec::new();
    for record in history {
        if record.outcome != Outcome::Ok || !record.call.is_write() {
            continue;
        }
        let Some(final_value) = finals.get(&record.key) else {
            continue;
        };
        let overwritten_in_time = match final_value {
            // The final value's write must be able to follow this one: it did not return
            // before this one was invoked.
            Some(value) if matches!(&record.call, Call::Put { value: v } | Call::Cas { new: v, .. } if v == value) => {
                true
            }
            Some(value) => match writers.get(&(record.key.as_str(), value.as_str())) {
                Some(Some(returned)) => *returned > record.call_ns,
                Some(None) => true,
                // A value no one wrote: the checker reports it; here it overwrote nothing.
                None => false,
            },
            None => last_delete_end
                .get(record.key.as_str())
                .is_some_and(|end| *end > record.call_ns),
        };
        if !overwritten_in_time {
            lost.push(LostWrite {
                key: record.key.clone(),
                write: describe(record),
                final_value: final_value.clone(),
            });
        }
    }
    lost
}

/// One line for an operation: `process 3: put(k1, p3-7) ok [1.204 s, 1.206 s]`.
pub fn describe(record: &Record) -> String {
    let what = match &record.call {
        Call::Put { value } => format!("put({}, {value})", record.key),
        Call::Get => format!("get({})", record.key),
        Call::Cas { expected, new } => format!(
            "cas({}, {} -> {new})",
            record.key,
            expected.as_deref().unwrap_or("absent")
        ),
        Call::Del => format!("del({})", record.key),
    };
    let output = match &record.output {
        Output::None => String::new(),
        Output::Value(value) => format!(" = {}", value.as_deref().unwrap_or("absent")),
        Output::Swapped => String::new(),
        Output::Mismatch(current) => {
            format!(" mismatch: {}", current.as_deref().unwrap_or("absent"))
        }
    };
    let outcome = match record.outcome {
        Outcome::Ok => "ok",
        Outcome::Fail => "fail",
        Outcome::Info => "info",
    };
    format!(
        "process {}: {what}{output} {outcome} [{:.6} s, {:.6} s]",
        record.process,
        seconds(record.call_ns),
        seconds(record.return_ns)
    )
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// A digest of one node's values for the keys, to compare the members and show in the report:
/// std's `DefaultHasher` (SipHash with fixed keys, the same in every process of one build) over
/// the map, in key order.
pub fn digest(values: &BTreeMap<String, Option<String>>) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    values.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(process: u64, value: &str, times: (u64, u64), outcome: Outcome) -> Record {
        Record {
            process,
            key: "k0".into(),
            call: Call::Put {
                value: value.into(),
            },
            call_ns: times.0,
            return_ns: times.1,
            outcome,
            output: Output::None,
            error: None,
        }
    }

    fn finals(value: Option<&str>) -> BTreeMap<String, Option<String>> {
        BTreeMap::from([("k0".to_owned(), value.map(str::to_owned))])
    }

    #[test]
    fn an_acknowledged_write_overwritten_by_an_earlier_write_is_lost() {
        let history = [
            put(1, "a", (0, 10), Outcome::Ok),
            put(2, "b", (20, 30), Outcome::Ok),
        ];
        // The final value is `a`, whose write returned before `b`'s was invoked: `b` was lost.
        let lost = lost_writes(&history, &finals(Some("a")));
        assert_eq!(lost.len(), 1);
        assert!(lost[0].write.contains("put(k0, b)"), "{lost:?}");
        assert!(lost_writes(&history, &finals(Some("b"))).is_empty());
    }

    #[test]
    fn a_concurrent_or_unanswered_write_may_overwrite_an_acknowledged_one() {
        let history = [
            put(1, "a", (0, 50), Outcome::Ok),
            put(2, "b", (20, 30), Outcome::Ok),
        ];
        assert!(lost_writes(&history, &finals(Some("a"))).is_empty());
        let history = [
            put(1, "a", (0, 10), Outcome::Info),
            put(2, "b", (20, 30), Outcome::Ok),
        ];
        assert!(lost_writes(&history, &finals(Some("a"))).is_empty());
    }

    #[test]
    fn an_absent_key_loses_a_write_unless_a_delete_could_follow_it() {
        let history = [put(1, "a", (0, 10), Outcome::Ok)];
        assert_eq!(lost_writes(&history, &finals(None)).len(), 1);
        let mut history = history.to_vec();
        history.push(Record {
            call: Call::Del,
            call_ns: 5,
            return_ns: 20,
            ..put(2, "", (0, 0), Outcome::Ok)
        });
        assert!(lost_writes(&history, &finals(None)).is_empty());
    }

    #[test]
    fn digests_differ_when_one_value_differs() {
        let one = finals(Some("a"));
        let other = finals(Some("b"));
        assert_eq!(digest(&one), digest(&one.clone()));
        assert_ne!(digest(&one), digest(&other));
        assert_ne!(digest(&finals(None)), digest(&finals(Some(""))));
    }
}
