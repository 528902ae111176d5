//! Quorum arithmetic: the one piece of code that decides what a quorum agreed on, for elections,
//! the commit index, ReadIndex confirmations and CheckQuorum alike (etcd's `quorum` package is
//! the shape: a majority of one set, and a joint of two).
//!
//! - [`Majority`]: a set of voters; any majority of it decides (§5.2, §5.3).
//! - [`Joint`]: two sets, `incoming` and `outgoing`; while a configuration change is under way
//!   (joint consensus, §6 and thesis §4.3) a decision needs a majority of each. With `outgoing`
//!   empty it is exactly `incoming`'s majority, so the core always counts through a `Joint`.
//!
//! Invariants: a `Majority`'s voters are sorted, distinct and never 0; an empty `Majority`
//! agrees to everything (it is the absent half of a joint configuration), so a `Joint` decides
//! exactly as its non-empty halves do. Nothing here allocates once built, unless a set holds more
//! than [`STACK_VOTERS`] voters (the commit index then sorts on the heap).

use super::NodeId;

/// Voter sets up to this size compute the commit index in a stack buffer.
pub const STACK_VOTERS: usize = 16;

/// The outcome of an election so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    /// Enough grants: the candidate won.
    Won,
    /// Enough refusals that it can no longer win.
    Lost,
    /// Not decided yet.
    Pending,
}

/// A set of voters, any majority of which decides.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Majority {
    /// Sorted, distinct, no 0.
    voters: Vec<NodeId>,
}

impl Majority {
    /// The set of `voters` (order and repeats do not matter).
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Majority {
        let mut voters: Vec<NodeId> = voters.into_iter().collect();
        voters.sort_unstable();
        voters.dedup();
        assert!(voters.first() != Some(&0), "node id 0 is reserved");
        Majority { voters }
    }

    /// The voters, ascending.
    pub fn voters(&self) -> &[NodeId] {
        &self.voters
    }

    /// Whether `id` votes here.
    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.binary_search(&id).is_ok()
    }

    /// How many agreeing voters make a majority (0 for the empty set).
    pub fn quorum(&self) -> usize {
        if self.voters.is_empty() {
            0
        } else {
            self.voters.len() / 2 + 1
        }
    }

    /// Whether a majority of the voters satisfy `agrees`.
    pub fn has_majority(&self, agrees: impl Fn(NodeId) -> bool) -> bool {
        let agreeing = self.voters.iter().filter(|&&id| agrees(id)).count();
        agreeing >= self.quorum()
    }

    /// The highest index a majority has acknowledged, given each voter's acknowledged index
    /// (`acked(id)`; `None` counts as 0). `u64::MAX` for the empty set, which holds back
    /// nothing.
    pub fn committed_index(&self, acked: impl Fn(NodeId) -> Option<u64>) -> u64 {
        let count = self.voters.len();
        if count == 0 {
            return u64::MAX;
        }
        let index_of = |id: &NodeId| acked(*id).unwrap_or(0);
        // The quorum-th highest acknowledgement: every voter of some majority acked at least it.
        let pick = |indexes: &mut [u64]| {
            indexes.sort_unstable_by(|a, b| b.cmp(a));
            indexes[self.quorum() - 1]
        };
        if count <= STACK_VOTERS {
            let mut buffer = [0u64; STACK_VOTERS];
            for (slot, id) in buffer.iter_mut().zip(&self.voters) {
                *slot = index_of(id);
            }
            pick(&mut buffer[..count])
        } else {
            let mut indexes: Vec<u64> = self.voters.iter().map(index_of).collect();
            pick(&mut indexes)
        }
    }

    /// The election's outcome so far, given each voter's answer (`vote(id)`: `Some(granted)`,
    /// or `None` while it has not answered). The empty set has always voted yes.
    pub fn vote_result(&self, vote: impl Fn(NodeId) -> Option<bool>) -> VoteResult {
        let (mut granted, mut missing) = (0, 0);
        for &id in &self.voters {
            match vote(id) {
                Some(true) => granted += 1,
                Some(false) => {}
                None => missing += 1,
            }
        }
        let quorum = self.quorum();
        if granted >= quorum {
            VoteResult::Won
        } else if granted + missing >= quorum {
            VoteResult::Pending
        } else {
            VoteResult::Lost
        }
    }
}

/// Two voter sets that must both agree: `incoming` (C_new, or the only configuration) and
/// `outgoing` (C_old while a change is joint; empty otherwise).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Joint {
    /// The configuration being moved to (or the only one).
    pub incoming: Majority,
    /// The configuration being left; empty when not joint.
    pub outgoing: Majority,
}

impl Joint {
    /// A configuration that is not joint: `voters` alone.
    pub fn single(voters: impl IntoIterator<Item = NodeId>) -> Joint {
        Joint {
            incoming: Majority::new(voters),
            outgoing: Majority::default(),
        }
    }

    /// Whether `id` votes in either half.
    pub fn contains(&self, id: NodeId) -> bool {
        self.incoming.contains(id) || self.outgoing.contains(id)
    }

    /// Every voter of either half, ascending, once each.
    pub fn voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        let (mut incoming, mut outgoing) = (
            self.incoming.voters().iter().peekable(),
            self.outgoing.voters().iter().peekable(),
        );
        std::iter::from_fn(move || match (incoming.peek(), outgoing.peek()) {
            (Some(&&a), Some(&&b)) if a == b => {
                incoming.next();
                outgoing.next()
            }
            (Some(&&a), Some(&&b)) if a < b => incoming.next(),
            (Some(_), Some(_)) | (None, Some(_)) => outgoing.next(),
            (Some(_), None) => incoming.next(),
            (None, None) => None,
        })
        .copied()
    }

    /// Whether a majority of each half satisfies `agrees`.
    pub fn has_majority(&self, agrees: impl Fn(NodeId) -> bool) -> bool {
        self.incoming.has_majority(&agrees) && self.outgoing.has_majority(&agrees)
    }

    /// The highest index a majority of each half acknowledged.
    pub fn committed_index(&self, acked: impl Fn(NodeId) -> Option<u64>) -> u64 {
        let incoming = self.incoming.committed_index(&acked);
        incoming.min(self.outgoing.committed_index(&acked))
    }

    /// Won when both halves won, lost when either lost, else pending.
    pub fn vote_result(&self, vote: impl Fn(NodeId) -> Option<bool>) -> VoteResult {
        match (
            self.incoming.vote_result(&vote),
            self.outgoing.vote_result(&vote),
        ) {
            (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
            (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
            _ => VoteResult::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{Joint, Majority, STACK_VOTERS, VoteResult};
    use crate::raft::NodeId;

    fn acks(pairs: &[(NodeId, u64)]) -> impl Fn(NodeId) -> Option<u64> + '_ {
        move |id| {
            pairs
                .iter()
                .find(|(voter, _)| *voter == id)
                .map(|(_, i)| *i)
        }
    }

    fn votes(pairs: &[(NodeId, bool)]) -> impl Fn(NodeId) -> Option<bool> + '_ {
        move |id| {
            pairs
                .iter()
                .find(|(voter, _)| *voter == id)
                .map(|(_, v)| *v)
        }
    }

    /// §5.3: an entry is committed once a majority stores it; the commit index is the highest
    /// index a majority acknowledged (the median, for an odd count).
    #[test]
    fn the_commit_index_is_what_a_majority_acknowledged() {
        let three = Majority::new([1, 2, 3]);
        assert_eq!(three.committed_index(acks(&[(1, 5), (2, 3), (3, 1)])), 3);
        assert_eq!(
            three.committed_index(acks(&[(1, 5)])),
            0,
            "one of three is no majority"
        );
        assert_eq!(three.committed_index(acks(&[(1, 5), (2, 5)])), 5);
        let four = Majority::new([1, 2, 3, 4]);
        assert_eq!(four.quorum(), 3);
        assert_eq!(
            four.committed_index(acks(&[(1, 9), (2, 8), (3, 2), (4, 1)])),
            2
        );
        let lone = Majority::new([7]);
        assert_eq!(lone.committed_index(acks(&[(7, 4)])), 4);
        assert_eq!(Majority::default().committed_index(acks(&[])), u64::MAX);
    }

    #[test]
    fn a_large_set_counts_the_same_on_the_heap() {
        let count = STACK_VOTERS as u64 + 3;
        let large = Majority::new(1..=count);
        let acked: BTreeMap<NodeId, u64> = (1..=count).map(|id| (id, id * 10)).collect();
        // The quorum-th highest of 10, 20, …, 190: 19 voters, quorum 10, so the 10th highest.
        assert_eq!(large.committed_index(|id| acked.get(&id).copied()), 100);
    }

    #[test]
    fn an_election_is_won_lost_or_pending() {
        let five = Majority::new([1, 2, 3, 4, 5]);
        assert_eq!(
            five.vote_result(votes(&[(1, true), (2, true)])),
            VoteResult::Pending
        );
        assert_eq!(
            five.vote_result(votes(&[(1, true), (2, true), (3, true)])),
            VoteResult::Won
        );
        assert_eq!(
            five.vote_result(votes(&[(1, true), (2, false), (3, false), (4, false)])),
            VoteResult::Lost
        );
        assert_eq!(
            five.vote_result(votes(&[(9, true), (8, true), (7, true)])),
            VoteResult::Pending,
            "non-voters do not count"
        );
        assert_eq!(Majority::default().vote_result(votes(&[])), VoteResult::Won);
    }

    /// Thesis §4.3: while joint, every decision needs a majority of C_old and of C_new.
    #[test]
    fn a_joint_configuration_needs_a_majority_of_each_half() {
        let joint = Joint {
            incoming: Majority::new([1, 2, 3]),
            outgoing: Majority::new([3, 4, 5]),
        };
        // 1 and 2 are C_new's majority; of C_old only 3 acknowledged anything.
        assert_eq!(joint.committed_index(acks(&[(1, 7), (2, 7), (3, 2)])), 0);
        assert_eq!(
            joint.committed_index(acks(&[(1, 7), (2, 7), (3, 2), (4, 2)])),
            2
        );
        assert_eq!(
            joint.committed_index(acks(&[(1, 7), (2, 7), (3, 7), (4, 7)])),
            7
        );
        assert!(!joint.has_majority(|id| id <= 2));
        assert!(joint.has_majority(|id| id <= 4));
        assert_eq!(
            joint.vote_result(votes(&[(1, true), (2, true)])),
            VoteResult::Pending
        );
        assert_eq!(
            joint.vote_result(votes(&[(1, true), (2, true), (4, false), (5, false)])),
            VoteResult::Lost
        );
        assert_eq!(
            joint.vote_result(votes(&[(1, true), (3, true), (4, true)])),
            VoteResult::Won
        );
        assert_eq!(joint.voters().collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        assert!(joint.contains(5) && !joint.contains(6));
    }

    /// Not joint, a `Joint` is its one majority.
    #[test]
    fn a_single_configuration_decides_as_its_majority() {
        let single = Joint::single([3, 1, 2, 2]);
        assert_eq!(single.incoming.voters(), [1, 2, 3]);
        assert_eq!(single.committed_index(acks(&[(1, 4), (2, 6)])), 4);
        assert_eq!(
            single.vote_result(votes(&[(1, true), (2, true)])),
            VoteResult::Won
        );
        assert_eq!(single.voters().collect::<Vec<_>>(), [1, 2, 3]);
    }
}
