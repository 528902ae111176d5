//! Which configuration is in force, as the log changes under it (Raft §6, thesis §4.1: "a
//! server always uses the latest configuration in its log, regardless of whether the entry is
//! committed").
//!
//! [`Configurations`] holds the configuration at the log's base (from the snapshot, or the one
//! the cluster was bootstrapped with; unknown for a node that joined and has not seen one) and
//! every configuration entry after the base, by index. The one in force is the newest. When a
//! conflicting leader cuts entries, their configurations go and the one before is in force
//! again; when the log is compacted, the newest configuration at or below the new base becomes
//! the base's.
//!
//! Invariants: entries are ascending by index and all above `base_index`; the configuration at
//! any index from the base on is known exactly when one is at or below it.

use super::membership::Membership;

/// The configurations of one node's log. See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Configurations {
    /// The log base's index.
    base_index: u64,
    /// The configuration in force at the base, if known.
    base: Option<Membership>,
    /// Configuration entries after the base: `(index, configuration)`, ascending.
    entries: Vec<(u64, Membership)>,
}

impl Configurations {
    /// `base` in force at `base_index`, with no configuration entry after it yet.
    pub fn new(base_index: u64, base: Option<Membership>) -> Configurations {
        Configurations {
            base_index,
            base,
            entries: Vec::new(),
        }
    }

    /// The configuration in force: the newest in the log, else the base's.
    pub fn in_force(&self) -> Option<&Membership> {
        self.entries
            .last()
            .map(|(_, membership)| membership)
            .or(self.base.as_ref())
    }

    /// The index of the entry that holds the configuration in force (the base's index when it is
    /// the base's).
    pub fn in_force_index(&self) -> u64 {
        self.entries
            .last()
            .map_or(self.base_index, |(index, _)| *index)
    }

    /// The configuration in force at `index` (at or above the base).
    pub fn at(&self, index: u64) -> Option<&Membership> {
        assert!(index >= self.base_index, "{index} is below the log base");
        let newer = self.entries.partition_point(|(at, _)| *at <= index);
        match newer {
            0 => self.base.as_ref(),
            n => Some(&self.entries[n - 1].1),
        }
    }

    /// A configuration entry was appended at `index`: it is in force from now on.
    pub fn appended(&mut self, index: u64, membership: Membership) {
        assert!(
            index > self.in_force_index().max(self.base_index),
            "configuration at {index} appended out of order"
        );
        self.entries.push((index, membership));
    }

    /// Entries from `index` on were cut: their configurations are no longer in force.
    pub fn truncated_from(&mut self, index: u64) {
        self.entries.retain(|(at, _)| *at < index);
    }

    /// The log's base moved up to `index` (compaction): the configuration in force there is now
    /// the base's.
    pub fn compacted_to(&mut self, index: u64) {
        if index <= self.base_index {
            return;
        }
        let folded = self.entries.partition_point(|(at, _)| *at <= index);
        if folded > 0 {
            self.base = Some(self.entries[folded - 1].1.clone());
            self.entries.drain(..folded);
        }
        self.base_index = index;
    }

    /// A snapshot up to `index` was installed with `membership` (its configuration, if the
    /// snapshot carries one). With `kept_suffix` the log's entries after it stay, and their
    /// configurations with them; otherwise the log after the snapshot is gone.
    pub fn installed(&mut self, index: u64, membership: Option<Membership>, kept_suffix: bool) {
        if !kept_suffix {
            self.entries.clear();
        }
        self.compacted_to(index);
        if membership.is_some() {
            self.base = membership;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Configurations;
    use crate::raft::membership::{Membership, Step};

    fn three() -> Membership {
        Membership::bootstrap((1..=3).map(|id| (id, vec![b'x'])))
    }

    fn with_four(base: &Membership) -> Membership {
        base.enter_joint(&[Step::AddVoter {
            id: 4,
            address: vec![b'x'],
        }])
        .expect("valid")
    }

    /// Thesis §4.1: the newest configuration in the log is in force, committed or not; a cut
    /// entry takes its configuration with it.
    #[test]
    fn a_cut_configuration_entry_falls_back_to_the_one_before() {
        let mut configs = Configurations::new(0, Some(three()));
        let joint = with_four(&three());
        configs.appended(5, joint.clone());
        assert_eq!(configs.in_force(), Some(&joint));
        assert_eq!(configs.in_force_index(), 5);
        assert_eq!(configs.at(4), Some(&three()));
        configs.truncated_from(5);
        assert_eq!(configs.in_force(), Some(&three()));
        assert_eq!(configs.in_force_index(), 0);
    }

    #[test]
    fn compaction_folds_the_configurations_it_passes_into_the_base() {
        let mut configs = Configurations::new(0, Some(three()));
        let joint = with_four(&three());
        let new = joint.leave_joint();
        configs.appended(5, joint.clone());
        configs.appended(6, new.clone());
        configs.compacted_to(5);
        assert_eq!(configs.at(5), Some(&joint));
        assert_eq!(configs.in_force(), Some(&new));
        configs.compacted_to(10);
        assert_eq!(configs.in_force(), Some(&new));
        assert_eq!(configs.in_force_index(), 10);
    }

    #[test]
    fn a_joining_node_knows_no_configuration_until_it_sees_one() {
        let mut configs = Configurations::new(0, None);
        assert_eq!(configs.in_force(), None);
        configs.installed(20, Some(three()), false);
        assert_eq!(configs.in_force(), Some(&three()));
        assert_eq!(configs.in_force_index(), 20);
    }
}
