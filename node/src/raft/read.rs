//! Linearizable reads with ReadIndex (thesis §6.4): the leader notes its commit index, confirms
//! it still leads with a round of heartbeats acknowledged by a quorum, and then the read may be
//! served once the state machine has applied that index. A follower asks the leader for the index.
//!
//! Invariants: a read index is handed out only by a leader that has committed an entry of its
//! own term (so its commit index is at least every index committed before it led), and only after
//! a quorum answered a heartbeat sent after the read arrived (so no newer leader existed then); a
//! follower asks only a leader it heard from within the minimum election timeout, and refuses
//! the read at once otherwise ([`Raft::redirect`]).

use std::collections::VecDeque;

use super::{Action, Body, NodeId, Raft, Role};

/// A read waiting for its heartbeat round.
#[derive(Clone, Copy, Debug)]
struct PendingRead {
    ctx: u64,
    /// The follower that asked, or `None` for a local read.
    from: Option<NodeId>,
    index: u64,
    round: u64,
}

/// The leader's reads in progress.
#[derive(Debug, Default)]
pub(super) struct ReadState {
    /// The newest heartbeat round; every AppendEntries carries it.
    pub round: u64,
    /// Reads waiting for a quorum to confirm their round, oldest first.
    pending: VecDeque<PendingRead>,
    /// Reads waiting for the leader's first commit in its term.
    waiting_commit: Vec<(u64, Option<NodeId>)>,
    /// Reads started this step wait for a round not yet sent.
    pub round_due: bool,
}

impl Raft {
    pub(super) fn read_index(&mut self, ctx: u64, from: Option<NodeId>) {
        if self.role == Role::Leader {
            if self.log.term_at(self.log.commit_index()) == Some(self.term) {
                self.start_read(ctx, from);
            } else {
                self.reads.waiting_commit.push((ctx, from));
            }
            return;
        }
        let redirect = self.redirect();
        match (from, redirect.leader) {
            // Asked by a follower that thinks we lead: we do not.
            (Some(follower), _) => {
                self.send(follower, Body::ReadIndexResponse { ctx, index: None });
            }
            // Only a leader heard from within an election timeout is asked (`redirect`).
            (None, Some(leader)) => self.send(leader, Body::ReadIndex { ctx }),
            (None, None) => self
                .actions
                .push_back(Action::ReadRefused { ctx, redirect }),
        }
    }

    fn start_read(&mut self, ctx: u64, from: Option<NodeId>) {
        let index = self.log.commit_index();
        let me = self.config.id;
        if self.voters.has_majority(|id| id == me) {
            self.read_ready(ctx, from, index);
            return;
        }
        // Every read of this step shares one heartbeat round, sent at the next `poll_action`.
        let round = self.reads.round + 1;
        self.reads.pending.push_back(PendingRead {
            ctx,
            from,
            index,
            round,
        });
        self.reads.round_due = true;
    }

    /// Starts the heartbeat round the reads of this step wait for.
    pub(super) fn send_read_round(&mut self) {
        self.reads.round_due = false;
        if self.role != Role::Leader {
            return;
        }
        self.reads.round += 1;
        let peers = self.replication_targets();
        for peer in peers {
            self.send_heartbeat(peer);
        }
    }

    fn read_ready(&mut self, ctx: u64, from: Option<NodeId>, index: u64) {
        match from {
            None => self.actions.push_back(Action::ReadReady { ctx, index }),
            Some(follower) => {
                self.send(
                    follower,
                    Body::ReadIndexResponse {
                        ctx,
                        index: Some(index),
                    },
                );
            }
        }
    }

    /// Serves every pending read whose round a quorum confirmed.
    pub(super) fn check_reads(&mut self) {
        while let Some(read) = self.reads.pending.front().copied() {
            let me = self.config.id;
            let progress = &self.progress;
            let confirmed = self.voters.has_majority(|id| {
                id == me
                    || progress
                        .get(&id)
                        .is_some_and(|p| p.read_round >= read.round)
            });
            if !confirmed {
                break;
            }
            self.reads.pending.pop_front();
            self.read_ready(read.ctx, read.from, read.index);
        }
    }

    /// The leader committed: reads that waited for its first commit in the term can start.
    pub(super) fn on_leader_commit(&mut self) {
        if self.reads.waiting_commit.is_empty()
            || self.log.term_at(self.log.commit_index()) != Some(self.term)
        {
            return;
        }
        for (ctx, from) in std::mem::take(&mut self.reads.waiting_commit) {
            self.start_read(ctx, from);
        }
    }

    /// No longer leader: every read in progress is refused.
    pub(super) fn fail_reads(&mut self) {
        let pending: Vec<(u64, Option<NodeId>)> = self
            .reads
            .pending
            .drain(..)
            .map(|read| (read.ctx, read.from))
            .chain(self.reads.waiting_commit.drain(..))
            .collect();
        self.reads.round_due = false;
        let redirect = self.redirect();
        for (ctx, from) in pending {
            match from {
                None => self
                    .actions
                    .push_back(Action::ReadRefused { ctx, redirect }),
                Some(follower) => {
                    self.send(follower, Body::ReadIndexResponse { ctx, index: None });
                }
            }
        }
    }

    /// The leader this node asked answered a read it passed on. A refusal that finds this node
    /// leading by now (it asked as a follower, then won an election) starts the read again
    /// here, as the leader's own; otherwise it points where [`Raft::redirect`] says, never at
    /// itself.
    pub(super) fn on_read_index_response(&mut self, ctx: u64, index: Option<u64>) {
        match index {
            Some(index) => self.actions.push_back(Action::ReadReady { ctx, index }),
            None if self.role == Role::Leader => self.read_index(ctx, None),
            None => self.actions.push_back(Action::ReadRefused {
                ctx,
                redirect: self.redirect(),
            }),
        }
    }
}
