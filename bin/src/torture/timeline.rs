//! The nemesis timeline: the faults a torture run injected, each with the interval it lasted,
//! as the report, the JSON output and the plot show them.

use serde::Serialize;

/// A kind of fault (`--nemesis` names them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    /// `kill -9` of a node, restarted a few seconds later.
    Kill,
    /// SIGSTOP of a node for 1–5 s, then SIGCONT.
    Pause,
    /// A network partition (leader isolated, majority/minority, bridge, one-way), then healed.
    Partition,
    /// A membership change: add, remove, or replace with a fresh node.
    Membership,
    /// A leadership transfer.
    Transfer,
    /// A snapshot forced on a node.
    Snapshot,
    /// A node killed, its data directory wiped, and the node replaced by a fresh one.
    Wipe,
}

impl FaultKind {
    /// Every kind, in the order `--nemesis all` lists them.
    pub const ALL: [FaultKind; 7] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::Membership,
        FaultKind::Transfer,
        FaultKind::Snapshot,
        FaultKind::Wipe,
    ];

    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::Membership => "membership",
            FaultKind::Transfer => "transfer",
            FaultKind::Snapshot => "snapshot",
            FaultKind::Wipe => "wipe",
        }
    }

    /// The kind named `name`.
    pub fn from_name(name: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// One fault injected.
#[derive(Clone, Debug, Serialize)]
pub struct NemesisEvent {
    /// What kind.
    pub kind: FaultKind,
    /// What exactly, for people ("kill leader n2", "partition {1,2} | {3}").
    pub detail: String,
    /// When it began, in nanoseconds since the run started.
    pub start_ns: u64,
    /// When it was healed (equal to `start_ns` for instantaneous faults).
    pub end_ns: u64,
    /// Whether it hit the node that was leading at the time.
    pub hit_leader: bool,
}
