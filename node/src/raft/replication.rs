//! Log replication (§5.3) and commitment (§5.4.2): proposals, AppendEntries on both sides,
//! heartbeats, pipelining under the in-flight window, fast conflict backtracking, forwarding.
//!
//! Invariants: a leader only appends to its log, never rewrites it (Leader Append-Only); it commits
//! by counting replicas only entries of its own term (Figure 8), counting itself only up to what
//! its own storage acknowledged; an AppendEntries never exceeds `max_message_bytes`.

use super::Action;
use super::election::Timer;
use super::message::EntryKind;
use super::{
    Body, Conflict, Entry, MESSAGE_OVERHEAD, NodeId, ProgressState, ProposalOutcome, ProposeError,
    Raft, Role,
};

impl Raft {
    pub(super) fn propose(&mut self, id: u64, data: Vec<u8>) {
        let outcome = self.try_propose(data);
        self.actions.push_back(Action::Proposal { id, outcome });
    }

    fn try_propose(&mut self, data: Vec<u8>) -> ProposalOutcome {
        let max = self.config.max_proposal_bytes();
        if data.len() > max {
            return ProposalOutcome::Refused(ProposeError::TooLarge {
                size: data.len(),
                max,
            });
        }
        if self.role == Role::Leader {
            if let Some(transfer) = self.transfer {
                return ProposalOutcome::Refused(ProposeError::TransferInProgress {
                    to: transfer.to,
                });
            }
            let (index, term) = self.append_new(EntryKind::Normal, data);
            return ProposalOutcome::Accepted { index, term };
        }
        // Forwarded only to a leader heard from within an election timeout (`redirect`).
        let redirect = self.redirect();
        match redirect.leader {
            Some(leader) => {
                self.send(leader, Body::Forward { data });
                ProposalOutcome::Forwarded { to: leader }
            }
            None => ProposalOutcome::Refused(ProposeError::NoLeader {
                hint: redirect.hint,
            }),
        }
    }

    /// A follower passed a proposal on. Dropped unless we lead and take proposals; the client
    /// times out and retries, and its session makes the retry safe.
    pub(super) fn on_forward(&mut self, data: Vec<u8>) {
        if self.role == Role::Leader
            && self.transfer.is_none()
            && data.len() <= self.config.max_proposal_bytes()
        {
            self.append_new(EntryKind::Normal, data);
        }
    }

    /// Appends a new entry of the current term to the leader's log; it is sent, batched with
    /// whatever else this step appends, at the next `poll_action`.
    pub(super) fn append_new(&mut self, kind: EntryKind, data: Vec<u8>) -> (u64, u64) {
        assert_eq!(self.role, Role::Leader, "only a leader appends new entries");
        let entry = Entry {
            index: self.log.last_index() + 1,
            term: self.term,
            kind,
            data,
        };
        let position = (entry.index, entry.term);
        // One copy for the log; the entry itself goes to storage.
        self.log.push(entry.clone());
        self.persist_entries(None, vec![entry]);
        self.broadcast_due = true;
        position
    }

    /// Sends every follower what it is missing, as far as its window allows.
    pub(super) fn broadcast_append(&mut self) {
        let peers = self.replication_targets();
        for peer in peers {
            while self.send_append(peer) {}
        }
    }

    /// Sends `to` one AppendEntries from its `next_index`, if its window allows and (when
    /// streaming) there is something new. Returns whether it sent one that may be followed by
    /// another.
    pub(super) fn send_append(&mut self, to: NodeId) -> bool {
        let (max_messages, max_bytes) = (
            self.config.max_inflight_messages,
            self.config.max_inflight_bytes,
        );
        let Some(progress) = self.progress.get(&to) else {
            return false;
        };
        if progress.is_paused(max_messages, max_bytes) {
            return false;
        }
        let streaming = progress.state == ProgressState::Replicate;
        if streaming && progress.next_index > self.log.last_index() {
            return false;
        }
        let prev_index = progress.next_index - 1;
        let Some(prev_term) = self.log.term_at(prev_index) else {
            // Behind our log base: the entries are compacted, only a snapshot can help (§7).
            self.start_snapshot(to);
            return false;
        };
        let entries = self.log.entries_from(
            progress.next_index,
            self.config.max_message_bytes - MESSAGE_OVERHEAD,
        );
        let last_index = prev_index + entries.len() as u64;
        let body = Body::AppendEntries {
            prev_index,
            prev_term,
            entries,
            leader_commit: self.log.commit_index(),
            read_round: self.reads.round,
        };
        let message = super::Message {
            term: self.term,
            body,
        };
        let size = message.wire_size();
        assert!(
            size <= self.config.max_message_bytes,
            "messages fit the datagram limit"
        );
        let progress = self.progress.get_mut(&to).expect("checked above");
        progress.on_sent(last_index, size);
        // The window was open before this message (`is_paused` above): it now holds at most
        // `max_messages` messages, and at most this message's bytes past `max_bytes`.
        assert!(progress.inflight_messages() <= max_messages);
        assert!(progress.inflight_bytes() < max_bytes.saturating_add(size));
        self.send(to, message.body);
        streaming
    }

    /// The periodic heartbeat: to every follower, an empty AppendEntries at the index known to
    /// match (it carries the commit index and the read round). Followers in probe get their probe
    /// again, and a stream that got no answer since the last heartbeat is presumed lost and
    /// re-probed.
    pub(super) fn broadcast_heartbeat(&mut self) {
        self.retire_removed_members();
        let peers = self.replication_targets();
        for peer in peers {
            let progress = self
                .progress
                .get_mut(&peer)
                .expect("a leader tracks every peer");
            if progress.state == ProgressState::Replicate
                && progress.inflight_messages() > 0
                && !progress.acked_since_heartbeat
            {
                progress.become_probe();
            }
            progress.acked_since_heartbeat = false;
            if progress.state == ProgressState::Probe {
                progress.probe_sent = false;
            }
            self.send_heartbeat(peer);
            while self.send_append(peer) {}
        }
    }

    /// An empty AppendEntries at the index known to match: it cannot be rejected for a gap, and
    /// every answer confirms this node still leads (used by ReadIndex rounds too).
    pub(super) fn send_heartbeat(&mut self, peer: NodeId) {
        let match_index = self
            .progress
            .get(&peer)
            .map_or(0, |progress| progress.match_index);
        // Below our log base the term at the match index is compacted away: heartbeat at
        // (0, 0) instead, which every log holds (a follower answers it at its commit index,
        // whose entries match ours).
        let (prev_index, prev_term) = match self.log.term_at(match_index) {
            Some(match_term) => (match_index, match_term),
            None => (0, 0),
        };
        let body = Body::AppendEntries {
            prev_index,
            prev_term,
            entries: Vec::new(),
            leader_commit: self.log.commit_index(),
            read_round: self.reads.round,
        };
        self.send(peer, body);
    }

    /// The follower's side of AppendEntries (Figure 2, "AppendEntries RPC, Receiver
    /// implementation"), after the term rules.
    pub(super) fn on_append_entries(
        &mut self,
        from: NodeId,
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        leader_commit: u64,
        read_round: u64,
    ) {
        if !self.heard_from_leader(from) {
            return; // the log is about to be replaced; the leader sends again
        }
        let Some(configurations) = decode_configurations(&entries) else {
            log::warn!(
                "node {}: an append from {from} holds an unreadable configuration; dropped",
                self.config.id
            );
            return;
        };
        let old_last = self.log.last_index();
        let body = match self.log.maybe_append(prev_index, prev_term, &entries) {
            Ok((match_index, truncated)) => {
                let first_new = truncated.unwrap_or(old_last + 1);
                let new: Vec<Entry> = entries
                    .into_iter()
                    .filter(|entry| entry.index >= first_new)
                    .collect();
                let mut changed = false;
                if let Some(from) = truncated {
                    // A cut configuration entry: the one before it is in force again.
                    changed = from <= self.configs.in_force_index();
                    self.configs.truncated_from(from);
                }
                for (index, membership) in configurations {
                    if index >= first_new {
                        self.configs.appended(index, membership);
                        changed = true;
                    }
                }
                if !new.is_empty() || truncated.is_some() {
                    self.persist_entries(truncated, new);
                }
                if changed {
                    self.configuration_changed();
                }
                self.commit_to(leader_commit.min(match_index));
                let index = if self.faults().ack_beyond_match {
                    self.log.last_index()
                } else {
                    match_index
                };
                Body::AppendEntriesResponse {
                    index,
                    conflict: None,
                    read_round,
                }
            }
            Err(conflict) => Body::AppendEntriesResponse {
                index: prev_index,
                conflict: Some(conflict),
                read_round,
            },
        };
        // Held by `send` until everything stored so far is durable.
        self.send(from, body);
    }

    /// A message from the current term's leader (AppendEntries, InstallSnapshot), after the term
    /// rules: a candidate learns the election is lost, a follower learns who leads, the election
    /// timer restarts. False while a snapshot is being installed: the caller drops the message
    /// (the leader sends again).
    pub(super) fn heard_from_leader(&mut self, from: NodeId) -> bool {
        assert!(
            self.role != Role::Leader,
            "two leaders in term {}",
            self.term
        );
        if self.role != Role::Follower || self.leader != Some(from) {
            self.become_follower(self.term, Some(from), Timer::Restart);
        }
        self.election_elapsed = 0;
        !self.installing()
    }

    /// The leader's side of an AppendEntries answer.
    pub(super) fn on_append_response(
        &mut self,
        from: NodeId,
        index: u64,
        conflict: Option<Conflict>,
        read_round: u64,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        progress.recent_active = true;
        progress.read_round = progress.read_round.max(read_round);
        match conflict {
            Some(conflict) => {
                let next = self.log.next_after_conflict(index, conflict);
                let follower_last = conflict
                    .term
                    .is_none()
                    .then(|| conflict.index.saturating_sub(1));
                let acknowledged = progress.match_index;
                let probe = progress.on_reject(index, next, follower_last);
                if progress.match_index < acknowledged {
                    log::warn!(
                        "node {}: node {from} holds entries only up to {}, below the \
                         {acknowledged} it acknowledged: probing it again",
                        self.config.id,
                        progress.match_index
                    );
                }
                if probe {
                    self.send_append(from);
                }
            }
            None => {
                let news = progress.on_success(index);
                if progress.snapshot_no_longer_needed(self.log.base().0) {
                    progress.become_probe();
                }
                if news {
                    self.maybe_commit();
                    self.maybe_send_timeout_now(from);
                }
                while self.send_append(from) {}
            }
        }
        self.check_reads();
    }

    /// Figure 2 "Rules for Servers: Leaders", last rule: commit the highest index a quorum
    /// stores, if it is of the current term. The leader counts itself only up to its stable index.
    pub(super) fn maybe_commit(&mut self) {
        assert_eq!(self.role, Role::Leader, "only a leader counts replicas");
        let (me, stable_index) = (self.config.id, self.durability.stable_index);
        let progress = &self.progress;
        let acked = |id| {
            if id == me {
                Some(stable_index)
            } else {
                progress.get(&id).map(|p| p.match_index)
            }
        };
        let mut quorum_index = self.voters.committed_index(acked);
        if self.faults().leader_counts_itself_outside_config && !self.voters.incoming.contains(me) {
            let incoming = self.voters.incoming.voters().iter().copied();
            let planted = super::quorum::Joint {
                incoming: super::quorum::Majority::new(incoming.chain([me])),
                outgoing: self.voters.outgoing.clone(),
            };
            quorum_index = planted.committed_index(acked);
        }
        if quorum_index <= self.log.commit_index() {
            return;
        }
        let of_current_term = self.log.term_at(quorum_index) == Some(self.term);
        if of_current_term || self.faults().commit_old_terms_by_counting {
            self.commit_to(quorum_index);
        }
    }
}

/// The configurations among `entries`, by index; `None` if one cannot be read (the whole
/// message is then dropped: appending part of it would leave a configuration out).
fn decode_configurations(entries: &[Entry]) -> Option<Vec<(u64, super::membership::Membership)>> {
    entries
        .iter()
        .filter(|entry| entry.kind == EntryKind::Config)
        .map(|entry| {
            super::membership::Membership::decode(&entry.data)
                .ok()
                .map(|membership| (entry.index, membership))
        })
        .collect()
}
