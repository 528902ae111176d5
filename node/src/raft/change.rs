//! Membership changes in the core (Raft §6, thesis ch. 4), wired around the pure pieces:
//! `membership/` says what a configuration is and how a change turns one into the next,
//! `configs.rs` which one is in force as the log moves, `quorum.rs` how it counts. This file is
//! what the leader and the followers do with them.
//!
//! - **In force on append** (thesis §4.1): a configuration entry rules from the moment it is in a
//!   node's log; [`Raft::configuration_changed`] swaps the quorum in, and a leader starts (or
//!   stops) replicating to the members it adds (or removes).
//! - **Joint consensus** (§6, thesis §4.3): a change is one `C_old,new` entry; once it commits, the
//!   leader appends `C_new` at once (auto-leave, as etcd's ConfChangeV2). One change at a time: a
//!   request while a configuration entry is uncommitted or joint is refused, never queued.
//! - **Learners first** (thesis §4.2.1): a voter to be added is added as a learner, then caught
//!   up in rounds of replication (a round ends when the learner holds what the leader held when
//!   the round began); once a round takes less than the minimum election timeout, it is
//!   promoted in the joint change. After [`Config::catch_up_rounds`] rounds, or one round longer
//!   than [`Config::catch_up_round_ticks`], the change fails and the learner stays a learner.
//! - **A leader outside `C_new`** (thesis §4.2.2) leads until `C_new` commits without counting
//!   itself in `C_new`'s majority (it is not in that set), then hands leadership to the most
//!   up-to-date voter of `C_new` (TimeoutNow) and steps down.
//! - **Removed members** are told: the leader keeps replicating to a member removed by `C_new`
//!   until it holds `C_new` and the commit index says so ([`REMOVAL_NOTICE_HEARTBEATS`]
//!   heartbeats after that), so that it learns it was removed (`Raft::is_removed`) and its
//!   runtime can stop. They cannot disrupt the cluster meanwhile: PreVote and the leader lease.
//!
//! [`Config::catch_up_rounds`]: super::Config::catch_up_rounds
//! [`Config::catch_up_round_ticks`]: super::Config::catch_up_round_ticks

use std::fmt;

use super::membership::{ChangeError, Membership, Step};
use super::message::EntryKind;
use super::quorum::{Joint, Majority};
use super::{Action, NodeId, Progress, Raft, Role};

/// Heartbeats a leader still sends a member removed by a committed configuration once it holds
/// that configuration, so that it learns it was removed.
pub const REMOVAL_NOTICE_HEARTBEATS: u32 = 3;

/// Why a membership change did not happen (or may not have).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeRefused {
    /// This node does not lead; `hint` is the leader it knows, if any. Nothing was changed.
    NotLeader {
        /// The leader, if known.
        hint: Option<NodeId>,
    },
    /// The change breaks a rule of membership (including: another change is in progress).
    /// Nothing was changed.
    Invalid(ChangeError),
    /// The leader is handing over leadership. Nothing was changed.
    TransferInProgress,
    /// A new voter did not catch up within the rounds allowed: it stays a learner.
    CatchUpFailed {
        /// The learner.
        id: NodeId,
        /// Rounds tried.
        rounds: u32,
    },
    /// The configuration would not fit one message (many members, long addresses, a small
    /// datagram limit). Nothing was changed.
    TooLarge {
        /// Its encoded size.
        size: usize,
        /// The largest entry that fits a message.
        max: usize,
    },
    /// This node stopped leading before the change completed: it may complete under the next
    /// leader, or not. The outcome is unknown; read the configuration to find out.
    LeadershipLost,
    /// The request is over the runtime's bounds (too many steps, an address too long): refused
    /// before the core saw it, never produced by the core. Nothing was changed.
    OutOfBounds(String),
}

impl fmt::Display for ChangeRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeRefused::NotLeader { hint: Some(leader) } => {
                write!(f, "not the leader (node {leader} leads)")
            }
            ChangeRefused::NotLeader { hint: None } => write!(f, "no leader known"),
            ChangeRefused::Invalid(error) => write!(f, "{error}"),
            ChangeRefused::TransferInProgress => {
                write!(f, "the leader is handing over leadership; retry")
            }
            ChangeRefused::CatchUpFailed { id, rounds } => write!(
                f,
                "node {id} did not catch up with the leader in {rounds} rounds; it stays a learner"
            ),
            ChangeRefused::TooLarge { size, max } => write!(
                f,
                "the new configuration takes {size} bytes, more than the {max} a message carries"
            ),
            ChangeRefused::OutOfBounds(reason) => write!(f, "{reason}"),
            ChangeRefused::LeadershipLost => write!(
                f,
                "leadership changed before the change completed; its outcome is unknown"
            ),
        }
    }
}

impl std::error::Error for ChangeRefused {}

/// What became of a membership change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeOutcome {
    /// The new configuration is committed at `index` and in force.
    Done {
        /// The index of the entry holding it.
        index: u64,
    },
    /// It did not happen, or may not have.
    Refused(ChangeRefused),
}

/// The leader's change in progress.
#[derive(Clone, Debug)]
pub(super) struct PendingChange {
    /// The caller's tag.
    id: u64,
    /// The steps still to propose once the learners caught up: the caller's, with every voter
    /// to add made a promotion of the learner it now is.
    steps: Vec<Step>,
    phase: Phase,
}

#[derive(Clone, Debug)]
enum Phase {
    /// The new voters were added as learners by the entry at `index`; waiting for it to commit.
    AddingLearners { index: u64 },
    /// Catching up `learners`: round `round` ends when each holds `target`.
    CatchingUp {
        learners: Vec<NodeId>,
        round: u32,
        target: u64,
        elapsed: u32,
    },
    /// The change's entry is at `index`; done once a configuration at or after it is committed
    /// and not joint.
    Changing { index: u64 },
}

impl Raft {
    /// The configuration in force, if this node knows one (a node that joined knows none until
    /// its leader sends one).
    pub fn membership(&self) -> Option<&Membership> {
        self.configs.in_force()
    }

    /// The configuration in force at `index` (at or above the log's base), if known: what a
    /// snapshot up to `index` carries.
    pub fn membership_at(&self, index: u64) -> Option<&Membership> {
        self.configs.at(index)
    }

    /// The index of the entry holding the configuration in force (the log base's index when
    /// it came with the snapshot or the bootstrap).
    pub fn membership_index(&self) -> u64 {
        self.configs.in_force_index()
    }

    /// Leader: the index up to which member `id`'s log is known to match (for the
    /// simulator's checks and the member list's lag); `None` on a follower or for a non-member.
    pub fn match_index_of(&self, id: NodeId) -> Option<u64> {
        self.progress.get(&id).map(|progress| progress.match_index)
    }

    /// Whether this node, leading, still sends to `id` (a member, or a removed one not yet
    /// told).
    pub fn is_replicating_to(&self, id: NodeId) -> bool {
        self.progress.contains_key(&id)
    }

    /// Whether this node was removed from the cluster: a committed configuration in force
    /// retired its id. (A joining node also sees committed configurations without itself, from
    /// before it was added: those never name it retired.)
    pub fn is_removed(&self) -> bool {
        self.configs.in_force().is_some_and(|membership| {
            membership.is_retired(self.config.id)
                && !membership.is_member(self.config.id)
                && self.configs.in_force_index() <= self.log.commit_index()
        })
    }

    /// The configuration entry in force is committed (a new change may start).
    fn configuration_committed(&self) -> bool {
        self.configs.in_force_index() <= self.log.commit_index()
    }

    /// `Input::ChangeMembership`.
    pub(super) fn change_membership(&mut self, id: u64, steps: Vec<Step>) {
        if let Err(refused) = self.start_change(id, steps) {
            self.change_done(id, ChangeOutcome::Refused(refused));
        }
    }

    fn start_change(&mut self, id: u64, steps: Vec<Step>) -> Result<(), ChangeRefused> {
        if self.role != Role::Leader {
            return Err(ChangeRefused::NotLeader { hint: self.leader });
        }
        if self.transfer.is_some() {
            return Err(ChangeRefused::TransferInProgress);
        }
        let overlapping = self.faults().overlapping_changes;
        if !overlapping && (self.change.is_some() || !self.configuration_committed()) {
            return Err(ChangeRefused::Invalid(ChangeError::InProgress));
        }
        let current = self.changeable_membership()?;
        // Refuse now what the final change would refuse.
        current
            .enter_joint(&steps)
            .map_err(ChangeRefused::Invalid)?;
        let mut learner_steps = Vec::new();
        let mut final_steps = Vec::with_capacity(steps.len());
        let mut to_catch_up = Vec::new();
        for step in steps {
            match step {
                Step::AddVoter { id, address } if !current.is_learner(id) => {
                    learner_steps.push(Step::AddLearner { id, address });
                    final_steps.push(Step::Promote { id });
                    to_catch_up.push(id);
                }
                Step::AddVoter { id, .. } | Step::Promote { id } => {
                    final_steps.push(Step::Promote { id });
                    to_catch_up.push(id);
                }
                other => final_steps.push(other),
            }
        }
        let phase = if learner_steps.is_empty() {
            if to_catch_up.is_empty() {
                let index = self.append_configuration(&current, &final_steps)?;
                Phase::Changing { index }
            } else {
                self.catch_up_phase(to_catch_up)
            }
        } else {
            let index = self.append_configuration(&current, &learner_steps)?;
            Phase::AddingLearners { index }
        };
        self.change = Some(PendingChange {
            id,
            steps: final_steps,
            phase,
        });
        self.advance_change();
        Ok(())
    }

    /// The configuration a new change starts from. With fault `overlapping_changes`, a joint
    /// one is treated as if it had already been left.
    fn changeable_membership(&self) -> Result<Membership, ChangeRefused> {
        let Some(current) = self.configs.in_force() else {
            unreachable!("a leader knows its configuration: it won an election counted over it");
        };
        if current.is_joint() && self.faults().overlapping_changes {
            return Ok(current.leave_joint());
        }
        Ok(current.clone())
    }

    fn catch_up_phase(&self, learners: Vec<NodeId>) -> Phase {
        Phase::CatchingUp {
            learners,
            round: 1,
            target: self.log.last_index(),
            elapsed: 0,
        }
    }

    /// Appends the configuration `steps` make of `current`; returns its index.
    fn append_configuration(
        &mut self,
        current: &Membership,
        steps: &[Step],
    ) -> Result<u64, ChangeRefused> {
        let next = current.enter_joint(steps).map_err(ChangeRefused::Invalid)?;
        // C_old,new is the largest of a change's entries: C_new and a learner-only step are
        // never larger, so if this fits, the leave fits too.
        let (size, max) = (next.encode().len(), self.config.max_proposal_bytes());
        if size > max {
            return Err(ChangeRefused::TooLarge { size, max });
        }
        Ok(self.append_configuration_entry(next))
    }

    /// Appends `membership` as a configuration entry; it is in force at once.
    fn append_configuration_entry(&mut self, membership: Membership) -> u64 {
        let (index, _) = self.append_new(EntryKind::Config, membership.encode());
        self.configs.appended(index, membership);
        self.configuration_changed();
        index
    }

    /// Moves the leader's change on after a commit or a tick; reports it when it completes or
    /// fails.
    pub(super) fn advance_change(&mut self) {
        let Some(mut change) = self.change.take() else {
            return;
        };
        let commit_index = self.log.commit_index();
        let outcome = match &mut change.phase {
            Phase::AddingLearners { index } if *index <= commit_index => {
                let learners = change
                    .steps
                    .iter()
                    .filter_map(|step| match step {
                        Step::Promote { id } => Some(*id),
                        _ => None,
                    })
                    .collect();
                change.phase = self.catch_up_phase(learners);
                None
            }
            Phase::AddingLearners { .. } => None,
            Phase::CatchingUp {
                learners,
                round,
                target,
                elapsed,
            } => {
                let behind = learners.iter().copied().find(|learner| {
                    self.progress
                        .get(learner)
                        .is_none_or(|progress| progress.match_index < *target)
                });
                match behind {
                    Some(learner) if *elapsed > self.config.catch_up_round_ticks => {
                        Some(ChangeOutcome::Refused(ChangeRefused::CatchUpFailed {
                            id: learner,
                            rounds: *round,
                        }))
                    }
                    Some(_) => None,
                    None if *elapsed < self.config.election_ticks.0 => {
                        // Caught up: a round took less than an election timeout.
                        match self
                            .changeable_membership()
                            .and_then(|current| self.append_configuration(&current, &change.steps))
                        {
                            Ok(index) => {
                                change.phase = Phase::Changing { index };
                                None
                            }
                            Err(refused) => Some(ChangeOutcome::Refused(refused)),
                        }
                    }
                    None if *round >= self.config.catch_up_rounds => {
                        Some(ChangeOutcome::Refused(ChangeRefused::CatchUpFailed {
                            id: learners[0],
                            rounds: *round,
                        }))
                    }
                    None => {
                        *round += 1;
                        *target = self.log.last_index();
                        *elapsed = 0;
                        None
                    }
                }
            }
            Phase::Changing { index } => {
                let in_force = self.configs.in_force_index();
                let settled = in_force >= *index
                    && in_force <= commit_index
                    && self.configs.in_force().is_some_and(|m| !m.is_joint());
                settled.then_some(ChangeOutcome::Done { index: in_force })
            }
        };
        match outcome {
            Some(outcome) => self.change_done(change.id, outcome),
            None => self.change = Some(change),
        }
    }

    /// One tick of the leader's change (catch-up rounds are timed in ticks).
    pub(super) fn tick_change(&mut self) {
        if let Some(PendingChange {
            phase: Phase::CatchingUp { elapsed, .. },
            ..
        }) = &mut self.change
        {
            *elapsed += 1;
        }
        self.advance_change();
    }

    fn change_done(&mut self, id: u64, outcome: ChangeOutcome) {
        self.actions
            .push_back(Action::MembershipChange { id, outcome });
    }

    /// No longer leader: a change in progress may or may not complete under the next leader.
    pub(super) fn fail_change(&mut self) {
        if let Some(change) = self.change.take() {
            self.change_done(
                change.id,
                ChangeOutcome::Refused(ChangeRefused::LeadershipLost),
            );
        }
    }

    /// The leader's duties once its commit index moved: leave a committed joint configuration
    /// (auto-leave), hand leadership over if a committed configuration left it out, move its own
    /// change on.
    pub(super) fn on_configuration_commit(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let committed = self.configuration_committed();
        if let Some(membership) = self.configs.in_force()
            && committed
            && membership.is_joint()
        {
            let new = membership.leave_joint();
            self.append_configuration_entry(new);
        }
        // The change completes before a hand-off ends this node's leadership.
        self.advance_change();
        self.hand_off_if_removed();
    }

    /// A leader that a committed configuration leaves out of the voters hands leadership to the
    /// most up-to-date voter (thesis §4.2.2), through the transfer's TimeoutNow.
    pub(super) fn hand_off_if_removed(&mut self) {
        if self.role != Role::Leader
            || self.transfer.is_some()
            || self.voters.contains(self.config.id)
            || !self.configuration_committed()
        {
            return;
        }
        let progress = &self.progress;
        let best = self
            .voters
            .voters()
            .max_by_key(|id| progress.get(id).map_or(0, |p| p.match_index));
        if let Some(to) = best {
            log::info!(
                "node {}: not a voter of the committed configuration; handing leadership to {to}",
                self.config.id
            );
            self.transfer_leadership(to);
        }
    }

    /// The configuration in force changed (appended, cut, installed): swap the quorum in, and
    /// on a leader, start or stop replicating to the members it adds or removes.
    pub(super) fn configuration_changed(&mut self) {
        self.voters = self.quorum_in_force();
        let me = self.config.id;
        if !self.voters.contains(me) && matches!(self.role, Role::PreCandidate | Role::Candidate) {
            self.become_follower(self.term, None, super::election::Timer::Restart);
        }
        if self.role != Role::Leader {
            return;
        }
        let next_index = self.log.last_index() + 1;
        let in_force_index = self.configs.in_force_index();
        if let Some(membership) = self.configs.in_force() {
            for member in membership.members().filter(|&id| id != me) {
                self.progress
                    .entry(member)
                    .or_insert_with(|| Progress::new(next_index));
                self.retiring.remove(&member);
            }
            for id in self.progress.keys() {
                if !membership.is_member(*id) {
                    self.retiring
                        .entry(*id)
                        .or_insert((in_force_index, REMOVAL_NOTICE_HEARTBEATS));
                }
            }
        }
        if let Some(transfer) = self.transfer
            && !self.voters.contains(transfer.to)
        {
            self.abort_transfer("the target is no longer a voter");
        }
    }

    /// The quorum of the configuration in force (nobody's, while none is known), with the
    /// planted faults that miscount it.
    pub(super) fn quorum_in_force(&self) -> Joint {
        let Some(membership) = self.configs.in_force() else {
            return Joint::default();
        };
        let mut quorum = membership.quorum();
        let faults = self.faults();
        if faults.joint_counts_only_new {
            quorum.outgoing = Majority::default();
        }
        if faults.learner_counted {
            let voters = quorum.incoming.voters().iter().copied();
            quorum.incoming = Majority::new(voters.chain(membership.learners()));
        }
        quorum
    }

    /// At a heartbeat: a removed member that holds the committed configuration removing it has
    /// been told; after a few more heartbeats the leader stops sending to it.
    pub(super) fn retire_removed_members(&mut self) {
        let commit_index = self.log.commit_index();
        let progress = &mut self.progress;
        self.retiring.retain(|id, (removed_at, heartbeats_left)| {
            let told = *removed_at <= commit_index
                && progress
                    .get(id)
                    .is_some_and(|p| p.match_index >= *removed_at);
            if told {
                *heartbeats_left = heartbeats_left.saturating_sub(1);
            }
            if *heartbeats_left == 0 || !progress.contains_key(id) {
                progress.remove(id);
                return false;
            }
            true
        });
    }
}
