//! One-line descriptions of stimuli, messages and effects, for the trace of a run
//! (`SimConfig::trace`, `balsa sim --trace`): what to read when a seed fails.

use super::driver::Stimulus;
use crate::raft::{Body, Message};
use crate::replica::storage::{StorageDone, StorageOp};
use crate::replica::{Effect, Input};
use crate::runtime::wire::{Request, RequestBody, Response, Wire};

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

/// A stimulus in a few words.
pub fn stimulus(stimulus: &Stimulus) -> String {
    match stimulus {
        Stimulus::Change { steps } => format!("change membership: {steps:?}"),
        Stimulus::Input(Input::Tick) => "tick".to_owned(),
        Stimulus::Input(Input::Peer { from, msg }) => format!("from {from}: {}", message(msg)),
        Stimulus::Input(Input::Client { source, wire }) => {
            format!("from client {source}: {}", wire_text(wire))
        }
        Stimulus::Input(Input::Storage(StorageDone::Persisted { upto })) => {
            format!("persisted up to {upto}")
        }
        Stimulus::Input(Input::Storage(StorageDone::SnapshotSaved { index, data })) => {
            format!("snapshot saved at {index} ({} bytes)", data.len())
        }
        Stimulus::Input(Input::Storage(StorageDone::SnapshotInstalled { index, .. })) => {
            format!("snapshot installed at {index}")
        }
        Stimulus::Transfer { to } => format!("transfer leadership to {to}"),
    }
}

/// A client datagram in a few words.
fn wire_text(wire: &Wire) -> String {
    let request = |request: &Request| match &request.body {
        RequestBody::Command { .. } => format!("command {:x}", request.id),
        RequestBody::Query { stale, .. } => {
            format!(
                "{}query {:x}",
                if *stale { "stale " } else { "" },
                request.id
            )
        }
        other => format!("{other:?} {:x}", request.id),
    };
    let response = |response: &Response| format!("{:x}: {:?}", response.id, response.body);
    match wire {
        Wire::Request(one) => request(one),
        Wire::Requests(many) => many.iter().map(request).collect::<Vec<_>>().join(", "),
        Wire::Response(one) => response(one),
        Wire::Responses(many) => many.iter().map(response).collect::<Vec<_>>().join(", "),
        Wire::Raft(msg) => message(msg),
    }
}

/// An effect in a few words.
pub fn effect<R>(effect: &Effect<R>) -> String {
    match effect {
        Effect::Send { to, msg } => format!("send {to} {}", message(msg)),
        Effect::Answer { to, wire } => format!("answer {to}: {}", wire_text(wire)),
        Effect::Reply { .. } => "reply to an API caller".to_owned(),
        Effect::Applied { entries } => match (entries.first(), entries.last()) {
            (Some(first), Some(last)) => format!("applied {}..={}", first.index, last.index),
            _ => "applied nothing".to_owned(),
        },
        Effect::Storage(StorageOp::Persist(persist)) => {
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
        Effect::Storage(StorageOp::SaveSnapshot { index, term, data }) => {
            let bytes = data.serialised().map_or(0, |bytes| bytes.len());
            format!("save snapshot {index}/t{term} ({bytes} bytes)")
        }
        Effect::Storage(StorageOp::SnapshotChunk { meta, offset, data }) => {
            format!("snapshot {} chunk {offset}+{}", meta.index, data.len())
        }
        Effect::Storage(StorageOp::InstallSnapshot { meta, .. }) => {
            format!("install snapshot {}/t{}", meta.index, meta.term)
        }
        Effect::Storage(StorageOp::Compact { upto }) => format!("compact up to {upto}"),
    }
}
