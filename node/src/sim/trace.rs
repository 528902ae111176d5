//! One-line descriptions of inputs, messages and actions, for the trace of a run
//! (`SimConfig::trace`, `balsa sim --trace`): what to read when a seed fails.

use crate::raft::{Action, Body, Input, Message};

/// A message in a few words: kind, term and the fields that matter.
pub fn message(msg: &Message) -> String {
    let term = msg.term;
    match &msg.body {
        Body::RequestVote {
            pre_vote,
            last_index,
            last_term,
            transfer,
        } => format!(
            "{}(t{term}, last {last_index}/t{last_term}{})",
            if *pre_vote { "PreVote" } else { "RequestVote" },
            if *transfer { ", transfer" } else { "" }
        ),
        Body::RequestVoteResponse { pre_vote, granted } => format!(
            "{}(t{term}, {})",
            if *pre_vote { "PreVoteResp" } else { "VoteResp" },
            if *granted { "granted" } else { "rejected" }
        ),
        Body::AppendEntries {
            prev_index,
            prev_term,
            entries,
            leader_commit,
            read_round,
        } => {
            let span = match (entries.first(), entries.last()) {
                (Some(first), Some(last)) => {
                    format!(" [{}..={}/t{}]", first.index, last.index, last.term)
                }
                _ => String::new(),
            };
            format!(
                "Append(t{term}, prev {prev_index}/t{prev_term}{span}, commit {leader_commit}, \
                 round {read_round})"
            )
        }
        Body::AppendEntriesResponse {
            index,
            conflict,
            read_round,
        } => match conflict {
            None => format!("AppendOk(t{term}, {index}, round {read_round})"),
            Some(conflict) => format!(
                "AppendReject(t{term}, prev {index}, conflict {:?}@{}, round {read_round})",
                conflict.term, conflict.index
            ),
        },
        Body::TimeoutNow => format!("TimeoutNow(t{term})"),
        Body::ReadIndex { ctx } => format!("ReadIndex(t{term}, ctx {ctx:x})"),
        Body::ReadIndexResponse { ctx, index } => {
            format!("ReadIndexResp(t{term}, ctx {ctx:x}, {index:?})")
        }
        Body::Forward { data } => format!("Forward(t{term}, {} bytes)", data.len()),
        Body::InstallSnapshot {
            index,
            snapshot_term,
            size,
            offset,
            data,
            ..
        } => format!(
            "Snapshot(t{term}, {index}/t{snapshot_term}, {offset}+{} of {size})",
            data.len()
        ),
        Body::InstallSnapshotResponse {
            index,
            next_offset,
            installed,
        } => format!(
            "SnapshotAck(t{term}, {index}, next {next_offset}{})",
            if *installed { ", installed" } else { "" }
        ),
    }
}

/// An input in a few words.
pub fn input(input: &Input) -> String {
    match input {
        Input::Tick => "tick".to_owned(),
        Input::Message { from, msg } => format!("from {from}: {}", message(msg)),
        Input::Propose { id, .. } => format!("propose {id:x}"),
        Input::ReadIndex { ctx } => format!("read index {ctx:x}"),
        Input::Persisted { upto } => format!("persisted up to {upto}"),
        Input::TransferLeadership { to } => format!("transfer leadership to {to}"),
        Input::SnapshotSaved { index, data } => {
            format!("snapshot saved at {index} ({} bytes)", data.len())
        }
        Input::SnapshotInstalled { index } => format!("snapshot installed at {index}"),
    }
}

/// An action in a few words.
pub fn action(action: &Action) -> String {
    match action {
        Action::Persist(persist) => {
            let span = match (persist.entries.first(), persist.entries.last()) {
                (Some(first), Some(last)) => {
                    format!(" [{}..={}/t{}]", first.index, last.index, last.term)
                }
                _ => String::new(),
            };
            let truncate = persist
                .truncate_from
                .map(|from| format!(" truncate {from}"))
                .unwrap_or_default();
            let hard_state = persist
                .hard_state
                .map(|hs| format!(" hs t{} v{} c{}", hs.term, hs.vote, hs.commit))
                .unwrap_or_default();
            let then_send: String = persist
                .then_send
                .iter()
                .map(|(to, msg)| format!(", then send {to} {}", message(msg)))
                .collect();
            format!(
                "persist #{}{truncate}{span}{hard_state}{then_send}",
                persist.id
            )
        }
        Action::Send { to, msg } => format!("send {to} {}", message(msg)),
        Action::Apply { entries } => match (entries.first(), entries.last()) {
            (Some(first), Some(last)) => format!("apply {}..={}", first.index, last.index),
            _ => "apply nothing".to_owned(),
        },
        Action::Proposal { id, outcome } => format!("proposal {id:x}: {outcome:?}"),
        Action::ReadReady { ctx, index } => format!("read {ctx:x} ready at {index}"),
        Action::ReadRefused { ctx, leader } => format!("read {ctx:x} refused, leader {leader:?}"),
        Action::TransferAborted { to, reason } => format!("transfer to {to} aborted: {reason}"),
        Action::RoleChanged { role, term, leader } => {
            format!("role {role:?} t{term} leader {leader:?}")
        }
        Action::SnapshotChunk {
            index,
            offset,
            data,
            size,
            ..
        } => format!("snapshot {index} chunk {offset}+{} of {size}", data.len()),
        Action::InstallSnapshot { index, term, .. } => {
            format!("install snapshot {index}/t{term}")
        }
        Action::Compact { upto } => format!("compact up to {upto}"),
    }
}
