//! What a run reports: its size, the faults it injected by kind, what the clients did, the
//! outcome of the linearizability check, and the violation that stopped it, if any.

use std::fmt;

/// The property a violation breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ViolationKind {
    /// Two leaders in one term (§5.2).
    ElectionSafety,
    /// A leader overwrote or removed an entry of its own log during its term.
    LeaderAppendOnly,
    /// Two logs hold the same (index, term) with different entries or different prefixes.
    LogMatching,
    /// A new leader lacks an entry known committed.
    LeaderCompleteness,
    /// Two nodes committed or applied different entries at one index, or a node applied out
    /// of order.
    StateMachineSafety,
    /// A node's commit index went down without a restart.
    CommitMonotone,
    /// Durable term went down, or the durable vote changed within a term, or a restarted node
    /// came back with a term or vote other than the durable one.
    TermOrVoteWentBack,
    /// A message that promises durability left before what it promises was durable.
    MessageBeforePersist,
    /// A successful append acknowledgement claimed a match with the leader's log that the
    /// sender's log does not have.
    FalseAcknowledgement,
    /// A leader's commit index advanced onto an entry that a quorum does not hold durably.
    CommitNotDurable,
    /// A leader's commit index advanced onto an entry of an earlier term (Figure 8's rule).
    CommitOfEarlierTerm,
    /// The in-memory log changed where no persist said it would, or a persist left a gap.
    UnpersistedLogChange,
    /// A snapshot or log base that is not the committed log's (index, term), or a snapshot
    /// installed at or below what was applied, or damaged in transfer.
    Snapshot,
    /// A retried `(client, seq)` took effect a second time: applied again at a later index, it
    /// changed the data (the session table must answer it with its first answer instead).
    SessionTable,
    /// A client got an answer the protocol does not allow (a write answered with anything
    /// but `Ok`, a value no client wrote, an answer to an address that is no client).
    ClientAnswer,
    /// No client write committed within the liveness window after healing.
    Liveness,
    /// The client history is not linearizable.
    Linearizability,
    /// A panic during the run: one of the core's own assertions (or, the message tells, a bug
    /// of the simulator itself).
    Panic,
    /// A node's configuration in force is not the newest in its log (thesis §4.1).
    ConfigurationInForce,
    /// A leader committed an index that no joint quorum of its configuration holds: it counted
    /// a learner, a member of one half only, or itself outside `C_new`.
    QuorumMiscount,
    /// A leader appended a configuration that does not follow from the one in force by one
    /// joint change (or its leaving), or before that one was committed.
    ConfigurationTransition,
    /// A tick came before the replica said anything was due ([`Replica::ticks_until_due`])
    /// and yet it acted, or it did not bring what was due one tick nearer: a runtime sleeping
    /// until then would have missed it.
    ///
    /// [`Replica::ticks_until_due`]: crate::replica::Replica::ticks_until_due
    SleepUnsafe,
}

impl ViolationKind {
    /// A short name, as printed.
    pub fn name(self) -> &'static str {
        match self {
            ViolationKind::ElectionSafety => "election safety",
            ViolationKind::LeaderAppendOnly => "leader append-only",
            ViolationKind::LogMatching => "log matching",
            ViolationKind::LeaderCompleteness => "leader completeness",
            ViolationKind::StateMachineSafety => "state machine safety",
            ViolationKind::CommitMonotone => "commit index monotone",
            ViolationKind::TermOrVoteWentBack => "term or vote went back",
            ViolationKind::MessageBeforePersist => "message before persist",
            ViolationKind::FalseAcknowledgement => "false acknowledgement",
            ViolationKind::CommitNotDurable => "commit not durable on a quorum",
            ViolationKind::CommitOfEarlierTerm => "commit of an earlier term's entry",
            ViolationKind::UnpersistedLogChange => "unpersisted log change",
            ViolationKind::Snapshot => "snapshot",
            ViolationKind::SessionTable => "session table",
            ViolationKind::ClientAnswer => "client answer",
            ViolationKind::Liveness => "liveness",
            ViolationKind::Linearizability => "linearizability",
            ViolationKind::Panic => "panic",
            ViolationKind::ConfigurationInForce => "configuration in force",
            ViolationKind::QuorumMiscount => "quorum miscount",
            ViolationKind::ConfigurationTransition => "configuration transition",
            ViolationKind::SleepUnsafe => "a tick not due acted",
        }
    }
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A broken property, found after `step` (the number of core steps taken so far).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The step after which it was found.
    pub step: u64,
    /// Which property.
    pub kind: ViolationKind,
    /// What exactly: nodes, terms, indexes.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at step {}: {}", self.kind, self.step, self.detail)
    }
}

/// Faults the run injected, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Messages lost at random.
    pub drops: u64,
    /// Messages cut by a partition (or sent to a crashed node).
    pub cut: u64,
    /// Messages delivered twice.
    pub duplicates: u64,
    /// Messages held back long enough to arrive far out of order.
    pub long_delays: u64,
    /// Partitions put in place.
    pub partitions: u64,
    /// Times every link was healed.
    pub heals: u64,
    /// Node crashes.
    pub crashes: u64,
    /// Node restarts.
    pub restarts: u64,
    /// Persists that completed late (after several ticks).
    pub late_persists: u64,
    /// Persists that had been written but not acknowledged when their node crashed, and
    /// survived it (durable without the core ever hearing so).
    pub unacked_persists_kept: u64,
    /// Leadership transfers requested.
    pub transfers: u64,
    /// Snapshots saved by nodes.
    pub snapshots: u64,
    /// Snapshots installed from a leader.
    pub installs: u64,
    /// Disks lost for good (their node is replaced under a new id).
    pub wipes: u64,
    /// Membership changes the nemesis asked a leader for (refused ones included).
    pub membership_changes: u64,
}

impl FaultCounts {
    /// Every count with its name, in a fixed order.
    pub fn by_kind(&self) -> [(&'static str, u64); 15] {
        [
            ("drops", self.drops),
            ("cut", self.cut),
            ("duplicates", self.duplicates),
            ("long delays", self.long_delays),
            ("partitions", self.partitions),
            ("heals", self.heals),
            ("crashes", self.crashes),
            ("restarts", self.restarts),
            ("late persists", self.late_persists),
            ("unacked persists kept", self.unacked_persists_kept),
            ("transfers", self.transfers),
            ("snapshots", self.snapshots),
            ("installs", self.installs),
            ("wipes", self.wipes),
            ("membership changes", self.membership_changes),
        ]
    }

    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &FaultCounts) {
        self.drops += other.drops;
        self.cut += other.cut;
        self.duplicates += other.duplicates;
        self.long_delays += other.long_delays;
        self.partitions += other.partitions;
        self.membership_changes += other.membership_changes;
        self.heals += other.heals;
        self.crashes += other.crashes;
        self.restarts += other.restarts;
        self.late_persists += other.late_persists;
        self.unacked_persists_kept += other.unacked_persists_kept;
        self.transfers += other.transfers;
        self.snapshots += other.snapshots;
        self.installs += other.installs;
        self.wipes += other.wipes;
    }
}

impl fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, (name, count)) in self.by_kind().iter().enumerate() {
            if position > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name} {count}")?;
        }
        Ok(())
    }
}

/// What the linearizability check of the client history said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Linearizability {
    /// Not checked (the run stopped at a violation first).
    NotChecked,
    /// Linearizable.
    Ok,
    /// The checker ran out of budget: nothing is known. Reported, not counted as a violation.
    Inconclusive(String),
    /// Not linearizable (also recorded as a violation).
    Violated,
}

/// The result of one run.
#[derive(Clone, Debug)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Nodes in the cluster.
    pub nodes: u64,
    /// Inputs given to cores.
    pub steps: u64,
    /// Logical ticks simulated.
    pub ticks: u64,
    /// Faults injected, by kind.
    pub faults: FaultCounts,
    /// Client writes known committed (applied somewhere).
    pub committed_writes: u64,
    /// Client reads answered.
    pub reads: u64,
    /// Operations in the history handed to the linearizability checker.
    pub history_len: usize,
    /// Ticks from healing to the first committed write of the liveness phase (`None` if the
    /// run stopped before, or the write never came: then there is a liveness violation).
    pub liveness_ticks: Option<u64>,
    /// The linearizability check.
    pub linearizability: Linearizability,
    /// What went wrong; the run stops at the first violation, so at most one.
    pub violations: Vec<Violation>,
    /// The digest of every action of every core: equal for two runs of the same seed.
    pub digest: u64,
    /// With `SimConfig::trace`: what happened, a line per step or nemesis action.
    pub trace: Vec<String>,
}

impl Report {
    /// True when the run found no violation.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}
