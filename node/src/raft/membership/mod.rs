//! Cluster membership as data: the configuration in force and the pure rules that change it
//! (Raft §6, thesis ch. 4; etcd's `confchange` package is the shape). Nothing here is wired into
//! the core yet: this is the piece the core will swap in, tested on its own.
//!
//! A [`Membership`] holds the voters (`incoming`; while a change is joint, also the `outgoing`
//! voters of the configuration being left, `C_old`), the learners (who receive entries but never
//! vote or count), every member's address (opaque bytes to the core; the runtime needs them to
//! reach a new member), and the ids ever removed, which are never reused (etcd's rule: a node
//! that lost its data comes back under a new id).
//!
//! A change is any set of [`Step`]s, applied as one joint change (thesis §4.3):
//! [`Membership::enter_joint`] turns `C_old` into `C_old,new`, in force from the moment its entry
//! is appended; once that entry commits, [`Membership::leave_joint`] gives `C_new`. One change at
//! a time: a change asked for while joint is refused, never queued.
//!
//! Invariants (checked by [`Membership::check`], asserted after every change): no id is both
//! a voter and a learner; every member has an address; no member's id is retired; `incoming`
//! has at least one voter; a member of `outgoing` only is a voter being removed (it is neither a
//! learner nor in `incoming`), and it keeps its address until the change completes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

mod codec;

pub use self::codec::{MAX_ADDRESS_LEN, MEMBERSHIP_VERSION, MembershipDecodeError};
use super::NodeId;
use super::quorum::{Joint, Majority};

/// One part of a membership change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Make `id` a voter (a new member, or a learner promoted; its address is kept then).
    AddVoter {
        /// The member.
        id: NodeId,
        /// How to reach it.
        address: Vec<u8>,
    },
    /// Make `id` a learner: a new member that receives entries and never votes.
    AddLearner {
        /// The member.
        id: NodeId,
        /// How to reach it.
        address: Vec<u8>,
    },
    /// Make learner `id` a voter.
    Promote {
        /// The learner.
        id: NodeId,
    },
    /// Remove `id`, voter or learner; its id is never used again.
    Remove {
        /// The member.
        id: NodeId,
    },
}

/// Why a change is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeError {
    /// A change is in flight (the configuration is joint): one change at a time.
    InProgress,
    /// The change has no steps.
    Empty,
    /// Node id 0 is reserved.
    ReservedId,
    /// Two steps of one change name the same node.
    Repeated {
        /// The node.
        id: NodeId,
    },
    /// The node is a member already (in the role the step asks for, or a voter asked to be a
    /// learner).
    AlreadyMember {
        /// The node.
        id: NodeId,
    },
    /// The node was removed before: ids are never reused.
    IdReused {
        /// The node.
        id: NodeId,
    },
    /// No such member.
    UnknownMember {
        /// The node.
        id: NodeId,
    },
    /// Only a learner can be promoted.
    NotALearner {
        /// The node.
        id: NodeId,
    },
    /// The change would leave no voter.
    NoVoterLeft,
}

impl fmt::Display for ChangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeError::InProgress => {
                write!(
                    f,
                    "a membership change is in progress; retry once it completes"
                )
            }
            ChangeError::Empty => write!(f, "the change names no member"),
            ChangeError::ReservedId => write!(f, "node id 0 is reserved"),
            ChangeError::Repeated { id } => write!(f, "node {id} appears twice in one change"),
            ChangeError::AlreadyMember { id } => write!(f, "node {id} is already a member"),
            ChangeError::IdReused { id } => {
                write!(
                    f,
                    "node id {id} was removed before; a new node needs a new id"
                )
            }
            ChangeError::UnknownMember { id } => write!(f, "node {id} is not a member"),
            ChangeError::NotALearner { id } => write!(f, "node {id} is not a learner"),
            ChangeError::NoVoterLeft => write!(f, "the change would leave no voter"),
        }
    }
}

impl std::error::Error for ChangeError {}

/// The configuration in force. See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    /// The voters being moved to, or the only ones when not joint.
    incoming: BTreeSet<NodeId>,
    /// The voters being left while joint (`C_old`); empty otherwise.
    outgoing: BTreeSet<NodeId>,
    /// Members that receive entries and never vote.
    learners: BTreeSet<NodeId>,
    /// How to reach every member of either half and every learner.
    addresses: BTreeMap<NodeId, Vec<u8>>,
    /// Every id ever removed.
    retired: BTreeSet<NodeId>,
}

impl Membership {
    /// A new cluster's configuration: `voters` with their addresses, nobody joint or retired.
    pub fn bootstrap(voters: impl IntoIterator<Item = (NodeId, Vec<u8>)>) -> Membership {
        let addresses: BTreeMap<NodeId, Vec<u8>> = voters.into_iter().collect();
        let membership = Membership {
            incoming: addresses.keys().copied().collect(),
            addresses,
            ..Membership::default()
        };
        membership.check();
        membership
    }

    /// Whether a change is under way (`C_old,new` in force).
    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// The voter sets every decision is counted over.
    pub fn quorum(&self) -> Joint {
        Joint {
            incoming: Majority::new(self.incoming.iter().copied()),
            outgoing: Majority::new(self.outgoing.iter().copied()),
        }
    }

    /// Whether `id` votes (in either half).
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.incoming.contains(&id) || self.outgoing.contains(&id)
    }

    /// Whether `id` is a learner.
    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.contains(&id)
    }

    /// The learners, ascending.
    pub fn learners(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.learners.iter().copied()
    }

    /// Every member a leader replicates to: voters of either half and learners, ascending.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.addresses.keys().copied()
    }

    /// How to reach member `id`.
    pub fn address(&self, id: NodeId) -> Option<&[u8]> {
        self.addresses.get(&id).map(Vec::as_slice)
    }

    /// Whether `id` was removed at some point (and so can never come back).
    pub fn is_retired(&self, id: NodeId) -> bool {
        self.retired.contains(&id)
    }

    /// `C_old,new`: this configuration with `steps` applied to its voters and learners, the
    /// current voters kept as `outgoing`. In force as soon as its entry is appended.
    pub fn enter_joint(&self, steps: &[Step]) -> Result<Membership, ChangeError> {
        if self.is_joint() {
            return Err(ChangeError::InProgress);
        }
        if steps.is_empty() {
            return Err(ChangeError::Empty);
        }
        let mut named = BTreeSet::new();
        let mut next = self.clone();
        next.outgoing = self.incoming.clone();
        for step in steps {
            let id = step.id();
            if id == 0 {
                return Err(ChangeError::ReservedId);
            }
            if !named.insert(id) {
                return Err(ChangeError::Repeated { id });
            }
            if self.retired.contains(&id) {
                return Err(ChangeError::IdReused { id });
            }
            next.apply(step)?;
        }
        if next.incoming.is_empty() {
            return Err(ChangeError::NoVoterLeft);
        }
        if next.incoming == next.outgoing {
            // Only learners changed: no voter set moves, so there is nothing to be joint about.
            next.outgoing.clear();
            next.forget_removed();
        }
        next.check();
        Ok(next)
    }

    /// `C_new`: once `C_old,new` commits, the outgoing voters go; members removed by the change
    /// lose their addresses.
    pub fn leave_joint(&self) -> Membership {
        let mut next = self.clone();
        next.outgoing.clear();
        next.forget_removed();
        next.check();
        next
    }

    /// Applies one step to `incoming`, the learners and the addresses.
    fn apply(&mut self, step: &Step) -> Result<(), ChangeError> {
        match step {
            Step::AddVoter { id, address } => {
                if self.incoming.contains(id) {
                    return Err(ChangeError::AlreadyMember { id: *id });
                }
                self.learners.remove(id);
                self.incoming.insert(*id);
                self.addresses.insert(*id, address.clone());
            }
            Step::AddLearner { id, address } => {
                if self.incoming.contains(id) || self.learners.contains(id) {
                    return Err(ChangeError::AlreadyMember { id: *id });
                }
                self.learners.insert(*id);
                self.addresses.insert(*id, address.clone());
            }
            Step::Promote { id } => {
                if !self.learners.remove(id) {
                    return Err(if self.incoming.contains(id) {
                        ChangeError::NotALearner { id: *id }
                    } else {
                        ChangeError::UnknownMember { id: *id }
                    });
                }
                self.incoming.insert(*id);
            }
            Step::Remove { id } => {
                let was_voter = self.incoming.remove(id);
                let was_learner = self.learners.remove(id);
                if !was_voter && !was_learner {
                    return Err(ChangeError::UnknownMember { id: *id });
                }
                self.retired.insert(*id);
            }
        }
        Ok(())
    }

    /// Drops the addresses of members in neither half nor among the learners.
    fn forget_removed(&mut self) {
        let (incoming, outgoing, learners) = (&self.incoming, &self.outgoing, &self.learners);
        self.addresses.retain(|id, _| {
            incoming.contains(id) || outgoing.contains(id) || learners.contains(id)
        });
    }

    /// Asserts the invariants of the module documentation.
    pub fn check(&self) {
        if let Some(broken) = self.broken_invariant() {
            panic!("{broken}");
        }
    }

    /// The first invariant of the module documentation this configuration breaks, if any (a
    /// decoded configuration is refused with it rather than asserted).
    pub fn broken_invariant(&self) -> Option<String> {
        if self.incoming.is_empty() {
            return Some("a configuration has no voter".to_string());
        }
        if self.members().any(|id| id == 0) || self.retired.contains(&0) {
            return Some("node id 0 is reserved".to_string());
        }
        if let Some(id) = self.learners.intersection(&self.incoming).next() {
            return Some(format!("node {id} is a voter and a learner"));
        }
        for id in self
            .incoming
            .iter()
            .chain(&self.outgoing)
            .chain(&self.learners)
        {
            if !self.addresses.contains_key(id) {
                return Some(format!("member {id} has no address"));
            }
            if self.retired.contains(id) && !self.outgoing.contains(id) {
                return Some(format!("retired node {id} is a member"));
            }
        }
        for id in self.addresses.keys() {
            if !self.incoming.contains(id)
                && !self.outgoing.contains(id)
                && !self.learners.contains(id)
            {
                return Some(format!("node {id} has an address but is no member"));
            }
        }
        for id in self.outgoing.difference(&self.incoming) {
            if self.learners.contains(id) {
                return Some(format!("removed voter {id} became a learner"));
            }
            if !self.retired.contains(id) {
                return Some(format!("voter {id} leaves but is not retired"));
            }
        }
        None
    }

    /// The voters being moved to (the only ones when not joint), ascending.
    pub fn incoming(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.incoming.iter().copied()
    }

    /// The voters being left while joint, ascending (none otherwise).
    pub fn outgoing(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.outgoing.iter().copied()
    }

    /// Whether `id` is a member in any role (a voter of either half, or a learner).
    pub fn is_member(&self, id: NodeId) -> bool {
        self.addresses.contains_key(&id)
    }

    /// The retired ids, ascending.
    pub fn retired(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.retired.iter().copied()
    }
}

impl Step {
    /// The member this step is about.
    pub fn id(&self) -> NodeId {
        match self {
            Step::AddVoter { id, .. }
            | Step::AddLearner { id, .. }
            | Step::Promote { id }
            | Step::Remove { id } => *id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ChangeError, Membership, Step};
    use crate::raft::quorum::VoteResult;

    fn address(id: u64) -> Vec<u8> {
        format!("10.0.0.{id}:7000").into_bytes()
    }

    fn three() -> Membership {
        Membership::bootstrap((1..=3).map(|id| (id, address(id))))
    }

    fn add_voter(id: u64) -> Step {
        Step::AddVoter {
            id,
            address: address(id),
        }
    }

    fn add_learner(id: u64) -> Step {
        Step::AddLearner {
            id,
            address: address(id),
        }
    }

    /// Thesis §4.3: `C_old,new` needs a majority of both; `C_new` alone once it commits.
    #[test]
    fn replacing_a_voter_is_one_joint_change_then_the_new_configuration() {
        let joint = three()
            .enter_joint(&[add_voter(4), Step::Remove { id: 3 }])
            .expect("a valid change");
        assert!(joint.is_joint());
        let quorum = joint.quorum();
        assert_eq!(quorum.incoming.voters(), [1, 2, 4]);
        assert_eq!(quorum.outgoing.voters(), [1, 2, 3]);
        // Nodes 3 and 4 alone are one voter of each half: no decision.
        let votes = |id| Some(id >= 3);
        assert_eq!(quorum.vote_result(votes), VoteResult::Lost);
        assert!(
            quorum.has_majority(|id| id <= 2),
            "1 and 2 are a majority of both"
        );
        assert!(
            joint.address(3).is_some(),
            "the leaving voter is still reached"
        );

        let new = joint.leave_joint();
        assert!(!new.is_joint());
        assert_eq!(new.quorum().incoming.voters(), [1, 2, 4]);
        assert_eq!(new.address(3), None);
        assert!(new.is_retired(3));
        assert_eq!(
            new.enter_joint(&[add_voter(3)]),
            Err(ChangeError::IdReused { id: 3 }),
            "a removed id never comes back"
        );
    }

    /// One change at a time: a second change while joint is refused, never queued.
    #[test]
    fn a_change_while_joint_is_refused() {
        let joint = three().enter_joint(&[add_voter(4)]).expect("valid");
        assert_eq!(
            joint.enter_joint(&[add_voter(5)]),
            Err(ChangeError::InProgress)
        );
    }

    /// A voter is added as a learner first, then promoted (thesis §4.2.1); learners never
    /// count.
    #[test]
    fn a_learner_is_replicated_to_and_never_counted_until_promoted() {
        let with_learner = three().enter_joint(&[add_learner(4)]).expect("valid");
        assert!(!with_learner.is_joint(), "no voter set moved");
        assert!(with_learner.is_learner(4) && !with_learner.is_voter(4));
        assert_eq!(with_learner.members().collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert!(!with_learner.quorum().has_majority(|id| id == 1 || id == 4));

        let promoting = with_learner
            .enter_joint(&[Step::Promote { id: 4 }])
            .expect("valid");
        assert!(promoting.is_joint());
        let promoted = promoting.leave_joint();
        assert!(promoted.is_voter(4) && !promoted.is_learner(4));
        assert_eq!(promoted.address(4), Some(address(4).as_slice()));
        assert_eq!(
            promoted.enter_joint(&[Step::Promote { id: 4 }]),
            Err(ChangeError::NotALearner { id: 4 })
        );
    }

    #[test]
    fn bad_changes_are_refused_with_their_reason() {
        let cluster = three();
        let refused = |steps: &[Step]| cluster.enter_joint(steps).expect_err("refused");
        assert_eq!(refused(&[]), ChangeError::Empty);
        assert_eq!(refused(&[add_voter(0)]), ChangeError::ReservedId);
        assert_eq!(
            refused(&[add_voter(2)]),
            ChangeError::AlreadyMember { id: 2 }
        );
        assert_eq!(
            refused(&[add_learner(2)]),
            ChangeError::AlreadyMember { id: 2 }
        );
        assert_eq!(
            refused(&[Step::Remove { id: 9 }]),
            ChangeError::UnknownMember { id: 9 }
        );
        assert_eq!(
            refused(&[Step::Promote { id: 9 }]),
            ChangeError::UnknownMember { id: 9 }
        );
        assert_eq!(
            refused(&[add_voter(4), Step::Remove { id: 4 }]),
            ChangeError::Repeated { id: 4 }
        );
        assert_eq!(
            refused(&[
                Step::Remove { id: 1 },
                Step::Remove { id: 2 },
                Step::Remove { id: 3 }
            ]),
            ChangeError::NoVoterLeft
        );
        assert_eq!(
            ChangeError::IdReused { id: 3 }.to_string(),
            "node id 3 was removed before; a new node needs a new id"
        );
    }

    /// A leader may remove itself: the change is valid, and the leaving voter counts in C_old
    /// only (the core keeps leading until C_new commits, then steps down).
    #[test]
    fn removing_the_leader_leaves_it_in_the_outgoing_half_only() {
        let joint = three()
            .enter_joint(&[Step::Remove { id: 1 }])
            .expect("valid");
        let quorum = joint.quorum();
        assert!(!quorum.incoming.contains(1) && quorum.outgoing.contains(1));
        assert_eq!(quorum.voters().collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(joint.leave_joint().members().collect::<Vec<_>>(), [2, 3]);
    }
}
