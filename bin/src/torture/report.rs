//! The report of a torture run: operations by outcome and kind, the nemesis timeline, the
//! unavailability each kind of fault caused (time from the fault to the next successful write),
//! leader changes caused by heals, the checks and the verdict — as text for people and as one
//! JSON object (`--json`) for scripts.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::check::{LostWrite, Verdict};
use super::history::{Call, Outcome, Record};
use super::observer::Sample;
use super::timeline::{FaultKind, NemesisEvent};

/// How long after a heal a new leader counts as caused by the heal.
const HEAL_WINDOW_NS: u64 = 2_000_000_000;

/// What the run was.
#[derive(Clone, Debug, Serialize)]
pub struct Setup {
    /// The seed of the nemesis and the workload.
    pub seed: u64,
    /// Voters kept.
    pub nodes: u64,
    /// Client threads.
    pub clients: u64,
    /// Keys.
    pub keys: u64,
    /// Seconds of faults asked for.
    pub time_s: f64,
    /// `netns` or `proxy`.
    pub net: String,
    /// The kinds of fault enabled.
    pub nemesis: Vec<FaultKind>,
}

/// Unavailability after the faults of one kind.
#[derive(Clone, Debug, Serialize)]
pub struct Unavailability {
    /// Faults of this kind.
    pub faults: usize,
    /// Faults after which some write succeeded before the run ended.
    pub measured: usize,
    /// Median time from the fault to the next successful write, in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, in milliseconds.
    pub p99_ms: f64,
    /// The longest, in milliseconds.
    pub max_ms: f64,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `linearizable`, `not linearizable` or `unknown`.
    pub verdict: &'static str,
    /// What was run.
    pub setup: Setup,
    /// Operations in the history (the final reads included).
    pub ops: usize,
    /// Operations that took effect as answered.
    pub ok: usize,
    /// Operations that definitely did not take effect.
    pub fail: usize,
    /// Operations whose outcome is unknown.
    pub info: usize,
    /// `[ok, fail, info]` per operation kind (`put`, `get`, `cas`, `del`).
    pub by_kind: BTreeMap<&'static str, [usize; 3]>,
    /// Faults injected.
    pub nemesis_events: usize,
    /// Faults by kind.
    pub faults_by_kind: BTreeMap<&'static str, usize>,
    /// The timeline.
    pub events: Vec<NemesisEvent>,
    /// Unavailability per kind of fault (`kill-leader` and `pause-leader` apart from the
    /// others of their kind).
    pub unavailability: BTreeMap<String, Unavailability>,
    /// New leaders elected within 2 s of a partition's heal.
    pub leader_changes_after_heals: usize,
    /// Leader changes seen over the run.
    pub leader_changes: usize,
    /// Acknowledged writes the final reads contradict.
    pub lost_acknowledged_writes: usize,
    /// Everything that is wrong, one line each (empty when the run passed).
    pub anomalies: Vec<String>,
    /// Remarks that are not anomalies (faults skipped, refused changes).
    pub notes: Vec<String>,
    /// Each member's digest of its final values.
    pub digests: BTreeMap<u64, String>,
    /// The checker's explanation when the verdict is not `linearizable`.
    pub explanation: Option<String>,
}

/// What the report is made from.
pub struct Inputs<'a> {
    /// The run.
    pub setup: Setup,
    /// Every operation, in invocation order.
    pub history: &'a [Record],
    /// The faults.
    pub events: &'a [NemesisEvent],
    /// The observer's samples.
    pub samples: &'a [Sample],
    /// The checker's verdict.
    pub verdict: Verdict,
    /// Lost acknowledged writes.
    pub lost: &'a [LostWrite],
    /// Other anomalies found (terms, leaders, convergence, unexpected exits).
    pub anomalies: Vec<String>,
    /// Notes.
    pub notes: Vec<String>,
    /// Digests per member.
    pub digests: BTreeMap<u64, u64>,
}

/// Builds the report.
pub fn build(inputs: Inputs<'_>) -> Report {
    let history = inputs.history;
    let count = |outcome| history.iter().filter(|r| r.outcome == outcome).count();
    let mut by_kind: BTreeMap<&'static str, [usize; 3]> = BTreeMap::new();
    for record in history {
        let slot = match record.outcome {
            Outcome::Ok => 0,
            Outcome::Fail => 1,
            Outcome::Info => 2,
        };
        by_kind.entry(record.call.name()).or_default()[slot] += 1;
    }
    let mut faults_by_kind: BTreeMap<&'static str, usize> = BTreeMap::new();
    for event in inputs.events {
        *faults_by_kind.entry(event.kind.name()).or_default() += 1;
    }
    let changes = super::observer::leader_changes(inputs.samples);
    let after_heals = leader_changes_after_heals(inputs.events, &changes);
    let mut anomalies = Vec::new();
    let (verdict, explanation) = match &inputs.verdict {
        Verdict::Linearizable => ("linearizable", None),
        Verdict::NotLinearizable(why) => {
            anomalies.push("the history is not linearizable".to_owned());
            (
                "not linearizable",
                Some(super::check::translate(why, history)),
            )
        }
        Verdict::Unknown(why) => ("unknown", Some(why.clone())),
    };
    for lost in inputs.lost {
        anomalies.push(format!(
            "acknowledged write lost: {} (the final read of {} saw {})",
            lost.write,
            lost.key,
            lost.final_value.as_deref().unwrap_or("absent")
        ));
    }
    anomalies.extend(inputs.anomalies);
    Report {
        verdict,
        setup: inputs.setup,
        ops: history.len(),
        ok: count(Outcome::Ok),
        fail: count(Outcome::Fail),
        info: count(Outcome::Info),
        by_kind,
        nemesis_events: inputs.events.len(),
        faults_by_kind,
        events: inputs.events.to_vec(),
        unavailability: unavailability(history, inputs.events),
        leader_changes_after_heals: after_heals,
        leader_changes: changes.len().saturating_sub(1),
        lost_acknowledged_writes: inputs.lost.len(),
        anomalies,
        notes: inputs.notes,
        digests: inputs
            .digests
            .into_iter()
            .map(|(id, digest)| (id, format!("{digest:016x}")))
            .collect(),
        explanation,
    }
}

/// Per kind of fault: the time from each fault's start to the return of the first write
/// invoked after it that succeeded.
fn unavailability(history: &[Record], events: &[NemesisEvent]) -> BTreeMap<String, Unavailability> {
    let writes: Vec<&Record> = history
        .iter()
        .filter(|r| r.call.is_write() && r.outcome == Outcome::Ok && !matches!(r.call, Call::Get))
        .collect();
    let mut gaps: BTreeMap<String, (usize, Vec<u64>)> = BTreeMap::new();
    for event in events {
        let mut label = event.kind.name().to_owned();
        if event.hit_leader && matches!(event.kind, FaultKind::Kill | FaultKind::Pause) {
            label.push_str("-leader");
        }
        let entry = gaps.entry(label).or_default();
        entry.0 += 1;
        let next = writes
            .iter()
            .filter(|r| r.call_ns >= event.start_ns)
            .map(|r| r.return_ns)
            .min();
        if let Some(returned) = next {
            entry.1.push(returned - event.start_ns);
        }
    }
    gaps.into_iter()
        .map(|(label, (faults, mut gaps))| {
            gaps.sort_unstable();
            let at = |q: f64| -> f64 {
                if gaps.is_empty() {
                    return 0.0;
                }
                // The nearest rank: ceil(len * q), within 1..=len.
                let rank = (1..=gaps.len())
                    .find(|&rank| rank as f64 >= gaps.len() as f64 * q)
                    .unwrap_or(gaps.len());
                gaps[rank - 1] as f64 / 1e6
            };
            let summary = Unavailability {
                faults,
                measured: gaps.len(),
                p50_ms: at(0.5),
                p99_ms: at(0.99),
                max_ms: at(1.0),
            };
            (label, summary)
        })
        .collect()
}

/// New leaders that took office within [`HEAL_WINDOW_NS`] of a partition's heal (and before
/// the next fault): a healthy leader deposed by a node coming back.
fn leader_changes_after_heals(events: &[NemesisEvent], changes: &[(u64, u64, u64)]) -> usize {
    let mut count = 0;
    for (index, event) in events.iter().enumerate() {
        if event.kind != FaultKind::Partition {
            continue;
        }
        let next_fault = events.get(index + 1).map_or(u64::MAX, |next| next.start_ns);
        let window_end = (event.end_ns + HEAL_WINDOW_NS).min(next_fault);
        count += changes
            .iter()
            .skip(1)
            .filter(|(at, _, _)| *at > event.end_ns && *at <= window_end)
            .count();
    }
    count
}

/// The report as text.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    let setup = &report.setup;
    let kinds: Vec<&str> = setup.nemesis.iter().map(|k| k.name()).collect();
    let _ = writeln!(
        out,
        "balsa torture: {} nodes ({}), {} clients, {} keys, {:.0} s, nemesis {}, seed {}",
        setup.nodes,
        setup.net,
        setup.clients,
        setup.keys,
        setup.time_s,
        kinds.join(","),
        setup.seed
    );
    let _ = writeln!(
        out,
        "operations: {} (ok {}, fail {}, info {})",
        report.ops, report.ok, report.fail, report.info
    );
    for (kind, [ok, fail, info]) in &report.by_kind {
        let _ = writeln!(
            out,
            "  {kind:<4} ok {ok:>7}  fail {fail:>6}  info {info:>5}"
        );
    }
    let _ = writeln!(out, "nemesis: {} faults", report.nemesis_events);
    for event in &report.events {
        let length = (event.end_ns - event.start_ns) as f64 / 1e9;
        let _ = writeln!(
            out,
            "  {:>7.2} s  {:<10} {} ({length:.1} s)",
            event.start_ns as f64 / 1e9,
            event.kind.name(),
            event.detail
        );
    }
    let _ = writeln!(out, "unavailability (fault to the next successful write):");
    let _ = writeln!(
        out,
        "  {:<14} {:>6} {:>9} {:>9} {:>9}",
        "fault", "count", "p50 ms", "p99 ms", "max ms"
    );
    for (label, u) in &report.unavailability {
        let _ = writeln!(
            out,
            "  {label:<14} {:>6} {:>9.0} {:>9.0} {:>9.0}",
            u.faults, u.p50_ms, u.p99_ms, u.max_ms
        );
    }
    let _ = writeln!(
        out,
        "leader changes: {} ({} within 2 s of a healed partition)",
        report.leader_changes, report.leader_changes_after_heals
    );
    let digests: Vec<String> = report
        .digests
        .iter()
        .map(|(id, d)| format!("n{id} {d}"))
        .collect();
    let _ = writeln!(out, "final state: {}", digests.join(", "));
    let _ = writeln!(
        out,
        "acknowledged writes lost: {}",
        report.lost_acknowledged_writes
    );
    for note in &report.notes {
        let _ = writeln!(out, "note: {note}");
    }
    for anomaly in &report.anomalies {
        let _ = writeln!(out, "ANOMALY: {anomaly}");
    }
    if let Some(explanation) = &report.explanation {
        let _ = writeln!(out, "{explanation}");
    }
    let _ = writeln!(out, "verdict: {}", report.verdict);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::torture::history::Output;

    fn write(call_ns: u64, return_ns: u64) -> Record {
        Record {
            process: 1,
            key: "k0".into(),
            call: Call::Put {
                value: format!("v{call_ns}"),
            },
            call_ns,
            return_ns,
            outcome: Outcome::Ok,
            output: Output::None,
            error: None,
        }
    }

    fn event(kind: FaultKind, start_ns: u64, end_ns: u64, hit_leader: bool) -> NemesisEvent {
        NemesisEvent {
            kind,
            detail: String::new(),
            start_ns,
            end_ns,
            hit_leader,
        }
    }

    #[test]
    fn unavailability_runs_from_the_fault_to_the_first_write_invoked_after_it_that_succeeded() {
        let history = [write(0, 150), write(100, 900), write(200, 400)];
        let events = [event(FaultKind::Kill, 100, 150, true)];
        let measured = unavailability(&history, &events);
        let kill = &measured["kill-leader"];
        assert_eq!((kill.faults, kill.measured), (1, 1));
        assert!((kill.max_ms - 300.0 / 1e6).abs() < 1e-9, "{kill:?}");
    }

    #[test]
    fn a_new_leader_soon_after_a_heal_is_counted_and_one_elected_during_the_partition_is_not() {
        let events = [event(FaultKind::Partition, 1_000, 5_000_000_000, true)];
        let during = [(0, 1, 1), (3_000_000_000, 2, 2)];
        assert_eq!(leader_changes_after_heals(&events, &during), 0);
        let after = [(0, 1, 1), (5_500_000_000, 2, 2)];
        assert_eq!(leader_changes_after_heals(&events, &after), 1);
    }
}
