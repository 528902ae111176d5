//! The simulator's side of membership changes: the checks of the configuration rules after
//! every step (Raft §6, thesis ch. 4), independent of how the core tracks them.
//!
//! - **In force from its append** (thesis §4.1): no configuration entry a step persisted lies
//!   after the one the node says is in force, and the entry it names holds exactly that
//!   configuration.
//! - **A commit is a joint quorum's**: when a leader's commit index moves, the configuration it
//!   has in force must have a majority of each half holding the new commit index, counting the
//!   leader only if it is a voter of that half and only up to what its storage acknowledged,
//!   and never a learner. This is what the planted `joint-counts-only-new`, `learner-counted`
//!   and `leader-counts-itself-outside-config` break.
//! - **One change at a time**: a configuration a leader appends follows from the one in force
//!   before it, which was committed: it leaves a joint one (`C_new` of `C_old,new`), or enters
//!   a joint one from a configuration that is not (its outgoing half is the old voters), or
//!   changes learners only. The planted `overlapping-changes` breaks it.

use crate::raft::membership::Membership;
use crate::raft::quorum::{Joint, Majority};
use crate::raft::{EntryKind, Raft, Role};

use super::disk::Finding;
use super::report::ViolationKind;

/// What the checks need of a node from before its step.
#[derive(Debug)]
pub struct Before {
    role: Role,
    commit_index: u64,
    membership_index: u64,
    /// Only kept for a node that may append configurations in this step (a leader, or a
    /// candidate about to win).
    membership: Option<Membership>,
}

impl Before {
    /// The configuration a leader counted commits with in this step: the one it had in force
    /// as the step began (`None` unless it led then).
    pub fn counting(&self) -> Option<&Membership> {
        (self.role == Role::Leader)
            .then_some(self.membership.as_ref())
            .flatten()
    }

    /// Node `raft` before its step.
    pub fn of(raft: &Raft) -> Before {
        let role = raft.role();
        let may_append = matches!(role, Role::Leader | Role::Candidate | Role::PreCandidate);
        Before {
            role,
            commit_index: raft.status().commit_index,
            membership_index: raft.membership_index(),
            membership: may_append.then(|| raft.membership().cloned()).flatten(),
        }
    }
}

/// The checks of the module documentation, after a step of node `raft` whose persists wrote
/// entries from `persisted_from` on.
pub fn after_step(
    before: &Before,
    raft: &Raft,
    persisted_from: Option<u64>,
    rule_checks: bool,
) -> Result<(), Finding> {
    in_force(raft, persisted_from)?;
    if !rule_checks || raft.role() != Role::Leader {
        return Ok(());
    }
    let status = raft.status();
    if status.commit_index > before.commit_index
        && let Some(counting) = before.counting()
    {
        commit_is_a_joint_quorums(raft, counting)?;
    }
    if raft.membership_index() > before.membership_index && before.role != Role::Follower {
        transitions(before, raft)?;
    }
    Ok(())
}

fn in_force(raft: &Raft, persisted_from: Option<u64>) -> Result<(), Finding> {
    let id = raft.id();
    let log = raft.log();
    let in_force_index = raft.membership_index();
    if let Some(from) = persisted_from {
        let newest = (from.max(log.first_index())..=log.last_index())
            .rev()
            .find(|&index| {
                log.entry(index)
                    .is_some_and(|e| e.kind == EntryKind::Config)
            });
        if let Some(index) = newest
            && index > in_force_index
        {
            return Err((
                ViolationKind::ConfigurationInForce,
                format!(
                    "node {id} holds a configuration at {index} but says the one at \
                     {in_force_index} is in force"
                ),
            ));
        }
    }
    if let Some(entry) = log.entry(in_force_index) {
        let held = Membership::decode(&entry.data).ok();
        if entry.kind != EntryKind::Config || held.as_ref() != raft.membership() {
            return Err((
                ViolationKind::ConfigurationInForce,
                format!(
                    "node {id}'s configuration in force is not the one its entry \
                     {in_force_index} holds"
                ),
            ));
        }
    }
    Ok(())
}

/// `membership` is the configuration that counted the commit: the one in force when the step
/// began (a configuration appended later in the step counts only later commits).
fn commit_is_a_joint_quorums(raft: &Raft, membership: &Membership) -> Result<(), Finding> {
    let id = raft.id();
    let status = raft.status();
    let quorum = Joint {
        incoming: Majority::new(membership.incoming()),
        outgoing: Majority::new(membership.outgoing()),
    };
    let held = quorum.committed_index(|voter| {
        if voter == id {
            Some(status.stable_index)
        } else {
            raft.match_index_of(voter)
        }
    });
    if status.commit_index > held {
        return Err((
            ViolationKind::QuorumMiscount,
            format!(
                "leader {id} committed {} but a joint quorum of its configuration (voters {:?}, \
                 outgoing {:?}) holds only up to {held}",
                status.commit_index,
                membership.incoming().collect::<Vec<_>>(),
                membership.outgoing().collect::<Vec<_>>(),
            ),
        ));
    }
    Ok(())
}

fn transitions(before: &Before, raft: &Raft) -> Result<(), Finding> {
    let id = raft.id();
    let Some(mut previous) = before.membership.clone() else {
        return Ok(());
    };
    let mut previous_index = before.membership_index;
    let log = raft.log();
    let commit_index = raft.status().commit_index;
    let first = (before.membership_index + 1).max(log.first_index());
    for index in first..=raft.membership_index() {
        let Some(entry) = log.entry(index).filter(|e| e.kind == EntryKind::Config) else {
            continue;
        };
        let Ok(next) = Membership::decode(&entry.data) else {
            continue; // `in_force` reports it
        };
        let follows = if previous.is_joint() {
            next == previous.leave_joint()
        } else if next.is_joint() {
            next.outgoing().eq(previous.incoming())
        } else {
            next.incoming().eq(previous.incoming())
        };
        if !follows || previous_index > commit_index {
            return Err((
                ViolationKind::ConfigurationTransition,
                format!(
                    "leader {id} appended the configuration at {index} (joint: {}) after the \
                     one at {previous_index} (joint: {}, committed: {})",
                    next.is_joint(),
                    previous.is_joint(),
                    previous_index <= commit_index
                ),
            ));
        }
        previous = next;
        previous_index = index;
    }
    Ok(())
}
