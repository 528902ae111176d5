//! Scripted scenarios in the style of etcd's interaction tests: a few nodes, a script of messages,
//! the expected state. Each test is named for the rule it checks, and its doc comment names the
//! place in the Raft paper ("In Search of an Understandable Consensus Algorithm", extended
//! version: §N, Figure N) or in Ongaro's thesis ("thesis §N") that states the rule.
//!
//! - `election.rs`: Figure 2's RequestVote receiver, Followers, Candidates and All Servers rules;
//!   the election restriction (§5.4.1).
//! - `replication.rs`: Figure 2's AppendEntries receiver and Leaders rules; pipelining.
//! - `log_repair.rs`: the Figure 7 logs and fast backtracking.
//! - `commitment.rs`: the Figure 8 scenario (§5.4.2).
//! - `disruption.rs`: PreVote and CheckQuorum (thesis §9.6, §6.2).
//! - `transfer.rs`: leadership transfer (thesis §3.10).
//! - `read.rs`: ReadIndex (thesis §6.4).
//! - `durability.rs`: the durability barrier (Figure 2, "Persistent state").
//! - `proposals.rs`: forwarding, size limits, batching.
//! - `snapshot.rs`: compaction and snapshot transfer (§7, Figure 13; thesis §5).
//! - `membership.rs`: joint consensus, learners, removal (§6; thesis ch. 4).
//! - `sleep.rs`: `ticks_until_due`, what lets a runtime sleep between the ticks that matter.

mod basics;
mod commitment;
mod disruption;
mod durability;
mod election;
mod log_repair;
mod membership;
mod proposals;
mod read;
mod replication;
mod sleep;
mod snapshot;
mod transfer;

use super::testkit::Cluster;
use super::{Action, Body, Conflict, Entry, Input, Message, NodeId, ProposalOutcome};

/// Delivers `body`, stamped with `term`, from `from` to `to`, as if it came off the wire.
fn inject(cluster: &mut Cluster, from: NodeId, to: NodeId, term: u64, body: Body) {
    cluster.step(
        to,
        Input::Message {
            from,
            msg: Message { term, body },
        },
    );
}

/// A RequestVote (not a pre-vote) for a candidate whose log ends at (`last_index`, `last_term`).
fn request_vote(last_index: u64, last_term: u64) -> Body {
    Body::RequestVote {
        pre_vote: false,
        last_index,
        last_term,
        transfer: false,
    }
}

/// An AppendEntries without a read round.
fn append(prev_index: u64, prev_term: u64, entries: Vec<Entry>, leader_commit: u64) -> Body {
    Body::AppendEntries {
        prev_index,
        prev_term,
        entries,
        leader_commit,
        read_round: 0,
    }
}

/// The entries of an AppendEntries (empty for a heartbeat); `None` for any other message.
fn appended(msg: &Message) -> Option<&[Entry]> {
    match &msg.body {
        Body::AppendEntries { entries, .. } => Some(entries),
        _ => None,
    }
}

/// Whether `msg` is an AppendEntries carrying the entry at `index`.
fn carries(msg: &Message, index: u64) -> bool {
    appended(msg).is_some_and(|entries| entries.iter().any(|entry| entry.index == index))
}

/// The conflict of a rejected AppendEntries; `None` for any other message.
fn rejection(msg: &Message) -> Option<Conflict> {
    match msg.body {
        Body::AppendEntriesResponse { conflict, .. } => conflict,
        _ => None,
    }
}

/// `(index, success)` of an AppendEntries answer; `None` for any other message.
fn append_answer(msg: &Message) -> Option<(u64, bool)> {
    match msg.body {
        Body::AppendEntriesResponse {
            index, conflict, ..
        } => Some((index, conflict.is_none())),
        _ => None,
    }
}

/// Whether `msg` grants a real (not pre-) vote.
fn grants_vote(msg: &Message) -> bool {
    matches!(
        msg.body,
        Body::RequestVoteResponse {
            pre_vote: false,
            granted: true
        }
    )
}

/// The messages `from` sent to `to` so far (cut links included), in order.
fn sent(cluster: &Cluster, from: NodeId, to: NodeId) -> Vec<&Message> {
    cluster
        .sent
        .iter()
        .filter(|(f, t, _)| (*f, *t) == (from, to))
        .map(|(_, _, msg)| msg)
        .collect()
}

/// The messages from `from` to `to` in flight now, in order.
fn in_flight(cluster: &Cluster, from: NodeId, to: NodeId) -> Vec<&Message> {
    cluster
        .in_flight
        .iter()
        .filter(|(f, t, _)| (*f, *t) == (from, to))
        .map(|(_, _, msg)| msg)
        .collect()
}

/// What node `id` answered to the proposal tagged `tag`, if it answered.
fn outcome(cluster: &Cluster, id: NodeId, tag: u64) -> Option<&ProposalOutcome> {
    cluster.events(id).iter().find_map(|action| match action {
        Action::Proposal { id, outcome } if *id == tag => Some(outcome),
        _ => None,
    })
}

/// The read index node `id` handed out for the read tagged `ctx`, if it did.
fn read_ready(cluster: &Cluster, id: NodeId, ctx: u64) -> Option<u64> {
    cluster.events(id).iter().find_map(|action| match action {
        Action::ReadReady { ctx: c, index } if *c == ctx => Some(*index),
        _ => None,
    })
}

/// Whether node `id` refused the read tagged `ctx`.
fn read_refused(cluster: &Cluster, id: NodeId, ctx: u64) -> bool {
    cluster
        .events(id)
        .iter()
        .any(|action| matches!(action, Action::ReadRefused { ctx: c, .. } if *c == ctx))
}

/// Proposes `data` at node `id` tagged `tag`, without delivering anything.
fn propose(cluster: &mut Cluster, id: NodeId, tag: u64, data: &[u8]) {
    cluster.step(
        id,
        Input::Propose {
            id: tag,
            data: data.to_vec(),
        },
    );
}
