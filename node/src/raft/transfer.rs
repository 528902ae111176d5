//! Leadership transfer (thesis §3.10): the leader stops taking proposals, brings the target's
//! log up to date, then tells it to start an election at once (TimeoutNow). If the target has
//! not caught up within an election timeout, the transfer is given up.
//!
//! A leader that is about to stop (a node told to stop gracefully) picks whom to hand over to
//! with [`Raft::hand_off_target`]: the voter that takes over soonest, the one heard from lately
//! whose log matches furthest, so the transfer need send it the least.

use super::{Action, Body, NodeId, Raft, Role};

/// A transfer under way.
#[derive(Clone, Copy, Debug)]
pub(super) struct Transfer {
    /// The node taking over.
    pub to: NodeId,
    /// Ticks since it began.
    pub elapsed: u32,
    /// TimeoutNow has been sent.
    pub timeout_now_sent: bool,
}

impl Transfer {
    /// Ticks until the tick that gives it up (`tick_transfer`), at least 1.
    pub(super) fn ticks_left(&self, timeout: u32) -> u32 {
        timeout.saturating_sub(self.elapsed).max(1)
    }
}

impl Raft {
    /// Leader: the voter to hand leadership to before this node stops. A voter heard from since
    /// the last CheckQuorum round comes before one that was not (a transfer to a node that is
    /// down only runs out its election timeout); among those, the highest match index (its log
    /// is the most up to date, so the transfer has the least to send it); among equals, the
    /// lowest id. `None` when this node does not lead, or no other voter exists.
    pub fn hand_off_target(&self) -> Option<NodeId> {
        if self.role != Role::Leader {
            return None;
        }
        self.voting_peers()
            .filter_map(|id| {
                let progress = self.progress.get(&id)?;
                Some((
                    progress.recent_active,
                    progress.match_index,
                    std::cmp::Reverse(id),
                ))
            })
            .max()
            .map(|(_, _, std::cmp::Reverse(id))| id)
    }

    pub(super) fn transfer_leadership(&mut self, to: NodeId) {
        if self.role != Role::Leader {
            self.actions.push_back(Action::TransferAborted {
                to,
                reason: "not the leader",
            });
            return;
        }
        if to == self.config.id {
            return;
        }
        if !self.voters.contains(to) {
            self.actions.push_back(Action::TransferAborted {
                to,
                reason: "not a voter",
            });
            return;
        }
        if let Some(current) = self.transfer {
            if current.to == to {
                return;
            }
            self.abort_transfer("superseded by a transfer to another node");
        }
        self.transfer = Some(Transfer {
            to,
            elapsed: 0,
            timeout_now_sent: false,
        });
        self.maybe_send_timeout_now(to);
        if self.transfer.is_some_and(|t| !t.timeout_now_sent) {
            self.send_append(to);
        }
    }

    /// Sends TimeoutNow once the target's log matches ours.
    pub(super) fn maybe_send_timeout_now(&mut self, from: NodeId) {
        let Some(transfer) = self.transfer else {
            return;
        };
        if transfer.to != from || transfer.timeout_now_sent {
            return;
        }
        let caught_up = self
            .progress
            .get(&from)
            .is_some_and(|p| p.match_index == self.log.last_index());
        if caught_up {
            self.transfer = Some(Transfer {
                timeout_now_sent: true,
                ..transfer
            });
            self.send(from, Body::TimeoutNow);
            if !self.voters.contains(self.config.id) {
                // A leader the configuration left out hands over and is done (thesis §4.2.2):
                // the new leader will not send to it, so it would not learn the new term.
                self.become_follower(self.term, None, super::election::Timer::Restart);
                self.last_leader = Some(from);
            }
        }
    }

    pub(super) fn tick_transfer(&mut self) {
        let Some(transfer) = &mut self.transfer else {
            return;
        };
        transfer.elapsed += 1;
        if transfer.elapsed >= self.config.election_ticks.0 {
            self.abort_transfer("the target did not take over within an election timeout");
        }
    }

    pub(super) fn abort_transfer(&mut self, reason: &'static str) {
        if let Some(transfer) = self.transfer.take() {
            self.actions.push_back(Action::TransferAborted {
                to: transfer.to,
                reason,
            });
        }
    }
}
