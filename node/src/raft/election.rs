//! Leader election (§5.2) with the election restriction (§5.4.1), PreVote (thesis §9.6) and
//! CheckQuorum with the leader lease (thesis §6.2 and §9.6), and the term rules every message
//! goes through first (Figure 2, "Rules for Servers: All Servers").
//!
//! Invariants: the term never decreases; a vote is cast at most once per term and is persisted
//! before the grant leaves (the durability barrier in `mod.rs`); a pre-vote changes nobody's term
//! or vote.

use super::message::EntryKind;
use super::quorum::VoteResult;
use super::snapshot::Chunk;
use super::{Body, HardState, Message, NodeId, Progress, Raft, Redirect, Role};

/// How a campaign starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Campaign {
    /// The election timeout fired: a pre-election first if PreVote is on.
    Timeout,
    /// A real election straight away (after winning a pre-election).
    Election,
    /// The leader asked us to take over (TimeoutNow): a real election, past the leader lease.
    Transfer,
}

/// Whether stepping down restarts the election timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Timer {
    /// Draw a new timeout and start counting from 0.
    Restart,
    /// Keep counting towards the current timeout. A refused higher-term vote request moves a
    /// node to the term but is no reason to wait longer (Figure 2: a follower's timer restarts
    /// for a current leader's AppendEntries or a vote it grants): a node with a longer log then
    /// campaigns on its own schedule instead of restarting its timer at every doomed
    /// candidate's request.
    Keep,
}

impl Raft {
    pub(super) fn tick(&mut self) {
        if self.role == Role::Leader {
            self.tick_leader();
            return;
        }
        self.election_elapsed += 1;
        // A candidate that has won and waits only for its own vote to be durable does not
        // start over: under a slow disk it would bump its term at every timeout and never lead.
        let won = self.role == Role::Candidate
            && self.voters.vote_result(|id| self.votes.get(&id).copied()) == VoteResult::Won;
        if self.election_elapsed >= self.election_timeout && self.may_campaign() && !won {
            self.campaign(Campaign::Timeout);
        }
    }

    /// The fewest ticks after which a tick can make this node do something (`None`: no tick
    /// ever will, until another input comes): what lets a runtime sleep instead of ticking.
    ///
    /// The rule it keeps, which the simulator and the scripted tests assert at every tick: when
    /// it says `Some(n)` with `n > 1` (or `None`), the next tick emits no action and leaves it
    /// saying `Some(n - 1)` (or `None`). So a runtime that sleeps `n` ticks and then delivers
    /// them one by one, and delivers the ticks that passed before any other input, drives the
    /// core exactly as one that ticked all along: the skipped ticks only moved counters, and
    /// every input still sees them moved (the leader lease and [`Raft::redirect`] read them).
    ///
    /// Pure: no state changes and no draw from the election jitter. Counted here, per role:
    /// a follower's or candidate's election deadline (none for a node that may not stand); a
    /// leader's heartbeat, its CheckQuorum round, a leadership transfer's timeout and each
    /// snapshot transfer's resend. A membership change in progress and a leader the
    /// configuration left out are looked at every tick (1): both are short-lived.
    pub fn ticks_until_due(&self) -> Option<u32> {
        if self.role != Role::Leader {
            return self.may_campaign().then(|| {
                self.election_timeout
                    .saturating_sub(self.election_elapsed)
                    .max(1)
            });
        }
        if self.change.is_some() || !self.voters.contains(self.config.id) {
            return Some(1);
        }
        let (min_election, _) = self.config.election_ticks;
        let heartbeat = self
            .config
            .heartbeat_ticks
            .saturating_sub(self.heartbeat_elapsed);
        let check_quorum = min_election.saturating_sub(self.election_elapsed);
        let transfer = self
            .transfer
            .map_or(u32::MAX, |transfer| transfer.ticks_left(min_election));
        let resend_ticks = self.config.snapshot_resend_ticks();
        let snapshots = self
            .progress
            .values()
            .filter_map(|progress| progress.snapshot.as_ref())
            .map(|transfer| transfer.ticks_until_resend(resend_ticks))
            .min()
            .unwrap_or(u32::MAX);
        Some(
            heartbeat
                .min(check_quorum)
                .min(transfer)
                .min(snapshots)
                .max(1),
        )
    }

    /// Where this node points a client whose request only a leader serves. A follower that
    /// heard from its leader within the minimum election timeout (the span of the leader
    /// lease, thesis §6.2) names it, and forwards to it. One that has not — cut off from it,
    /// or the leader is gone — names no leader, with that one as the hint, so the client
    /// learns at once to try another node, rather than each request being forwarded into
    /// silence until this node's own election timer fires. Never names this node: a leader
    /// asking is one handing over or stepping down, with no other leader to name.
    pub fn redirect(&self) -> Redirect {
        let me = self.config.id;
        let leader = self.leader.filter(|&leader| {
            leader != me
                && self.role == Role::Follower
                && self.election_elapsed < self.config.election_ticks.0
        });
        let hint = leader
            .or(self.leader)
            .or(self.last_leader)
            .filter(|&id| id != me);
        Redirect { leader, hint }
    }

    /// Whether this node may stand for election: a voter that kept its stable storage, not in
    /// the middle of installing a snapshot (its state machine and log are being replaced).
    fn may_campaign(&self) -> bool {
        self.may_stand() && !self.installing()
    }

    /// Whether the configurations let this node stand for election: it is a voter of the one
    /// in force, or that one is not committed yet and it was a voter of the one before.
    /// Thesis §4.1: "a server that is not part of its own latest configuration should still
    /// start new elections, as it might still be needed until the C_new entry is committed"
    /// (the simulator found the deadlock otherwise: the only node holding `C_new` was left out
    /// of it, and the other could not win without its vote).
    pub(super) fn may_stand(&self) -> bool {
        let me = self.config.id;
        if self.voters.contains(me) {
            return true;
        }
        let in_force_index = self.configs.in_force_index();
        in_force_index > self.log.commit_index()
            && self
                .configs
                .at(in_force_index - 1)
                .is_some_and(|previous| previous.is_voter(me))
    }

    fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        self.tick_transfer();
        self.tick_snapshots();
        self.tick_change();
        self.hand_off_if_removed();
        if self.election_elapsed >= self.config.election_ticks.0 {
            self.election_elapsed = 0;
            if self.config.check_quorum && !self.quorum_recently_active() {
                // CheckQuorum: a leader cut off from a quorum stops acting as one.
                self.become_follower(self.term, None, Timer::Restart);
                return;
            }
        }
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
    }

    /// Whether a quorum (this node included) was heard from since the last call; starts a new
    /// round.
    fn quorum_recently_active(&mut self) -> bool {
        let me = self.config.id;
        let progress = &self.progress;
        let active = self.voters.has_majority(|id| {
            id == me
                || progress
                    .get(&id)
                    .is_some_and(|progress| progress.recent_active)
        });
        for progress in self.progress.values_mut() {
            progress.recent_active = false;
        }
        active
    }

    pub(super) fn reset_election_timeout(&mut self) {
        let (min, max) = self.config.election_ticks;
        self.election_timeout = self.rng.range(min, max);
        self.election_elapsed = 0;
    }

    pub(super) fn campaign(&mut self, how: Campaign) {
        let pre_vote = how == Campaign::Timeout && self.config.pre_vote;
        if pre_vote {
            self.role = Role::PreCandidate;
            self.leader = None;
            self.reset_election_timeout();
            self.notify_role();
        } else {
            self.become_candidate();
        }
        self.votes.clear();
        self.votes.insert(self.config.id, true);
        if self.tally() {
            return; // a single voter wins at once
        }
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        let term = if pre_vote { self.term + 1 } else { self.term };
        let peers: Vec<NodeId> = self.voting_peers().collect();
        for peer in peers {
            let body = Body::RequestVote {
                pre_vote,
                last_index,
                last_term,
                transfer: how == Campaign::Transfer,
            };
            self.send_with_term(peer, term, body);
        }
    }

    fn become_candidate(&mut self) {
        self.term += 1;
        self.vote = self.config.id;
        self.role = Role::Candidate;
        self.leader = None;
        self.persist_hard_state();
        self.reset_election_timeout();
        self.notify_role();
    }

    /// Counts the votes; moves on when a quorum decided. Returns whether the campaign ended.
    pub(super) fn tally(&mut self) -> bool {
        let votes = &self.votes;
        let result = self.voters.vote_result(|id| votes.get(&id).copied());
        if result == VoteResult::Won
            && self.role == Role::Candidate
            && self.durability.durable_id < self.durability.issued_id
        {
            // A lone voter wins on its own vote: it leads once that vote (and its term) is
            // durable, as every other vote it counts is. Otherwise a crash before that persist
            // would bring it back in the older term, free to lead the same term again.
            return false;
        }
        if result == VoteResult::Won {
            match self.role {
                Role::PreCandidate => self.campaign(Campaign::Election),
                Role::Candidate => self.become_leader(),
                Role::Follower | Role::Leader => unreachable!("only candidates count votes"),
            }
            true
        } else if result == VoteResult::Lost {
            self.become_follower(self.term, None, Timer::Restart);
            true
        } else {
            false
        }
    }

    /// Follows `leader` (or nobody yet) in `term`; `timer` says whether the election timer
    /// restarts (see [`Timer`]).
    pub(super) fn become_follower(&mut self, term: u64, leader: Option<NodeId>, timer: Timer) {
        assert!(
            term >= self.term,
            "the term never goes down ({} to {term})",
            self.term
        );
        let changed = term != self.term || self.role != Role::Follower || leader != self.leader;
        if term > self.term {
            self.term = term;
            self.vote = 0;
            self.persist_hard_state();
        }
        let was_leader = self.role == Role::Leader;
        self.role = Role::Follower;
        self.leader = leader;
        if leader.is_some() {
            self.last_leader = leader;
        }
        self.progress.clear();
        self.retiring.clear();
        self.votes.clear();
        self.broadcast_due = false;
        if timer == Timer::Restart {
            self.reset_election_timeout();
        }
        if was_leader {
            match self.transfer {
                // The target was told to take over: stepping down is the transfer succeeding.
                Some(transfer) if transfer.timeout_now_sent => self.transfer = None,
                _ => self.abort_transfer("leadership lost"),
            }
        }
        self.fail_reads();
        self.fail_change();
        if changed {
            self.notify_role();
        }
    }

    fn become_leader(&mut self) {
        assert_eq!(
            self.role,
            Role::Candidate,
            "only a candidate wins an election"
        );
        assert_eq!(self.vote, self.config.id, "a candidate votes for itself");
        self.role = Role::Leader;
        self.leader = Some(self.config.id);
        // A hint is for others: a node that stops leading never names itself.
        self.last_leader = None;
        self.votes.clear();
        let next_index = self.log.last_index() + 1;
        let me = self.config.id;
        let members = self
            .configs
            .in_force()
            .map(|m| m.members().filter(|&id| id != me));
        self.progress = members
            .into_iter()
            .flatten()
            .map(|peer| (peer, Progress::new(next_index)))
            .collect();
        self.heartbeat_elapsed = 0;
        self.election_elapsed = 0;
        self.notify_role();
        // §5.4.2 / Figure 8: entries of earlier terms commit only under one of our own.
        self.append_new(EntryKind::Noop, Vec::new());
        // A joint configuration committed under an earlier leader is left now.
        self.on_configuration_commit();
    }

    /// Figure 2 "All Servers" and the PreVote/CheckQuorum refinements, then the handler.
    ///
    /// Messages are processed without consulting the configuration (thesis §4.1): a new member
    /// hears from a leader before it holds the entry that adds it, and a candidate may be a
    /// voter of a configuration this node has not seen yet. Only voters' votes and members'
    /// acknowledgements are counted (`quorum.rs`, `progress`).
    pub(super) fn on_message(&mut self, from: NodeId, msg: Message) {
        if from == self.config.id || from == 0 {
            log::debug!("node {}: dropped a message from {from}", self.config.id);
            return;
        }
        self.tell_if_removed(from);
        if msg.term > self.term {
            match msg.body {
                Body::RequestVote {
                    pre_vote, transfer, ..
                } => {
                    let in_lease = self.config.check_quorum
                        && self.leader.is_some()
                        && self.election_elapsed < self.config.election_ticks.0;
                    if in_lease && !transfer {
                        // A healthy leader was heard from recently: this candidate is the one
                        // that was cut off. Ignoring it keeps it from deposing the leader.
                        return;
                    }
                    if !pre_vote {
                        // `on_request_vote` restarts the timer if it grants the vote.
                        self.become_follower(msg.term, None, Timer::Keep);
                    }
                }
                // A granted pre-vote carries the term it was asked for; nothing changes.
                Body::RequestVoteResponse {
                    pre_vote: true,
                    granted: true,
                } => {}
                Body::AppendEntries { .. } | Body::InstallSnapshot { .. } => {
                    self.become_follower(msg.term, Some(from), Timer::Restart);
                }
                _ => self.become_follower(msg.term, None, Timer::Restart),
            }
        } else if msg.term < self.term {
            self.on_stale_message(from, &msg);
            return;
        }
        match msg.body {
            Body::RequestVote {
                pre_vote,
                last_index,
                last_term,
                ..
            } => {
                self.on_request_vote(from, msg.term, pre_vote, last_index, last_term);
            }
            Body::RequestVoteResponse { pre_vote, granted } => {
                self.on_vote_response(from, msg.term, pre_vote, granted);
            }
            Body::AppendEntries {
                prev_index,
                prev_term,
                entries,
                leader_commit,
                read_round,
            } => {
                self.on_append_entries(
                    from,
                    prev_index,
                    prev_term,
                    entries,
                    leader_commit,
                    read_round,
                );
            }
            Body::AppendEntriesResponse {
                index,
                conflict,
                read_round,
            } => {
                self.on_append_response(from, index, conflict, read_round);
            }
            Body::InstallSnapshot {
                index,
                snapshot_term,
                size,
                crc,
                offset,
                data,
            } => {
                let chunk = Chunk {
                    index,
                    snapshot_term,
                    size,
                    crc,
                    offset,
                    data,
                };
                self.on_install_snapshot(from, chunk);
            }
            Body::InstallSnapshotResponse {
                index,
                next_offset,
                installed,
            } => self.on_install_snapshot_response(from, index, next_offset, installed),
            Body::TimeoutNow => self.on_timeout_now(),
            Body::ReadIndex { ctx } => self.read_index(ctx, Some(from)),
            Body::ReadIndexResponse { ctx, index } => self.on_read_index_response(ctx, index),
            Body::Forward { data } => self.on_forward(data),
        }
    }

    /// A message from an older term. Most are dropped; two get an answer so the sender learns
    /// it is behind (as etcd does): a stale leader's AppendEntries, and a pre-vote.
    fn on_stale_message(&mut self, from: NodeId, msg: &Message) {
        match msg.body {
            Body::AppendEntries { read_round, .. }
                if self.config.check_quorum || self.config.pre_vote =>
            {
                let body = Body::AppendEntriesResponse {
                    index: 0,
                    conflict: None,
                    read_round,
                };
                self.send(from, body);
            }
            Body::RequestVote { pre_vote: true, .. } => {
                self.send(
                    from,
                    Body::RequestVoteResponse {
                        pre_vote: true,
                        granted: false,
                    },
                );
            }
            _ => {}
        }
    }

    fn on_request_vote(
        &mut self,
        from: NodeId,
        msg_term: u64,
        pre_vote: bool,
        last_index: u64,
        last_term: u64,
    ) {
        let can_vote = self.vote == from
            || (self.vote == 0 && self.leader.is_none())
            || (pre_vote && msg_term > self.term);
        let up_to_date =
            self.faults().vote_without_log_check || self.log.is_up_to_date(last_index, last_term);
        let granted = can_vote && up_to_date;
        if granted && !pre_vote {
            self.vote = from;
            self.election_elapsed = 0;
            self.persist_hard_state();
        }
        let term = if pre_vote && granted {
            msg_term
        } else {
            self.term
        };
        self.send_with_term(from, term, Body::RequestVoteResponse { pre_vote, granted });
    }

    fn on_vote_response(&mut self, from: NodeId, msg_term: u64, pre_vote: bool, granted: bool) {
        let counts = match self.role {
            Role::PreCandidate => {
                pre_vote && (msg_term == self.term + 1 || (!granted && msg_term == self.term))
            }
            Role::Candidate => !pre_vote && msg_term == self.term,
            Role::Follower | Role::Leader => false,
        };
        if counts {
            self.votes.insert(from, granted);
            self.tally();
        }
    }

    fn on_timeout_now(&mut self) {
        if self.role != Role::Leader && self.may_campaign() {
            self.campaign(Campaign::Transfer);
        }
    }

    /// Queues a message with an explicit term (a pre-vote asks in a term not yet entered).
    pub(super) fn send_with_term(&mut self, to: NodeId, term: u64, body: Body) {
        let saved = self.term;
        assert!(
            term >= saved,
            "a message never carries a term below the current one"
        );
        // `send` stamps the current term; a pre-vote's term is one ahead and never persisted.
        self.term = term;
        self.send(to, body);
        self.term = saved;
    }

    /// The hard state as it stands in memory.
    pub(super) fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.commit_index(),
        }
    }
}
