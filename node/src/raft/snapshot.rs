//! Snapshots and log compaction (Raft §7, Figure 13 "InstallSnapshot RPC"; thesis §5): the
//! snapshot a node holds, a leader's transfer of it to a follower behind its log base, and the
//! follower's side of that transfer.
//!
//! **Saving.** The runtime serialises the state machine as of an applied index, makes it durable
//! and reports [`Input::SnapshotSaved`](super::Input::SnapshotSaved). The core keeps the bytes as
//! the snapshot it sends, and compacts its in-memory log to `index - snapshot_trailing_entries`
//! (never backwards, never past applied), so a follower slightly behind still catches up from
//! the log; then it emits [`Action::Compact`](super::Action::Compact) for the WAL.
//!
//! **Sending** (leader). A follower whose next index is at or below the log base can only be
//! brought up to date by a snapshot: its `Progress` enters the `Snapshot` state holding an
//! [`OutgoingSnapshot`] (an `Arc` of the bytes, so a newer local snapshot leaves a transfer in
//! flight alone). Chunks go out in order, at most `snapshot_inflight_chunks` beyond the acked
//! offset; acks are cumulative; after [`Config::snapshot_resend_ticks`] ticks without progress
//! the leader resends from the acked offset (go-back-N). A repeated ack of the acked offset while
//! later chunks are out means the follower got a later chunk but not the next one: the leader
//! goes back at once, once per acked offset (a fast retransmit, as TCP's on duplicate acks), so
//! a lost chunk costs a round trip rather than the timeout. An ack of offset 0 after progress
//! means the follower lost the partial transfer (it restarted): start again from 0. Heartbeats
//! go on as usual meanwhile.
//!
//! **Receiving** (follower). A transfer is keyed on the leader's term and the snapshot's index,
//! term, size and CRC. A chunk at the expected offset is passed to the runtime
//! ([`Action::SnapshotChunk`](super::Action::SnapshotChunk)) and acknowledged; any other offset
//! re-acknowledges the expected one (0 when no transfer matches). The last chunk is not
//! acknowledged: it starts the install
//! ([`Action::InstallSnapshot`](super::Action::InstallSnapshot)), during which AppendEntries and
//! InstallSnapshot are dropped (the leader resends), until
//! [`Input::SnapshotInstalled`](super::Input::SnapshotInstalled). Then Figure 13 rules 6 and 7:
//! keep the log after the snapshot if it holds the snapshot's last entry, else discard it all.
//! The core also assembles the chunks in memory and checks their CRC before installing: the
//! runtime restores the state machine from those bytes, and a node that installed a snapshot
//! sends them on if it becomes leader.
//!
//! Invariants: a leader's transfer never sends bytes past the snapshot's size, and its acked
//! offset never exceeds what it sent; a follower's expected offset never exceeds the size, and
//! equals the bytes it assembled; a node never installs a snapshot at or below its commit index.

use std::sync::Arc;

use super::{Action, Body, Config, NodeId, PersistId, ProgressState, Raft, Role};

/// A snapshot this node holds, durable: what it sends to followers behind its log base.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotImage {
    /// Index of the last entry it covers.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
    /// CRC-32 of `data` (crc32fast).
    pub crc: u32,
    /// The serialised state machine.
    pub data: Arc<Vec<u8>>,
}

impl SnapshotImage {
    /// A snapshot of `data` covering up to (`index`, `term`); computes the CRC.
    pub fn new(index: u64, term: u64, data: Arc<Vec<u8>>) -> SnapshotImage {
        let crc = crc32fast::hash(&data);
        SnapshotImage {
            index,
            term,
            crc,
            data,
        }
    }

    /// Bytes in the snapshot.
    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }
}

/// A leader's transfer of a snapshot to one follower (the `Snapshot` state of its `Progress`).
///
/// Invariants: `acked <= next_offset <= size`; `sent_last` only once the chunk ending at `size`
/// went out since the last go-back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingSnapshot {
    /// What is being sent (fixed for the transfer's life).
    pub image: SnapshotImage,
    /// The follower acknowledged every byte before this.
    pub acked: u64,
    /// The next byte to send.
    pub next_offset: u64,
    /// The last chunk went out (for an empty snapshot: the one empty chunk).
    sent_last: bool,
    /// Ticks since the acked offset last moved (or since the last go-back).
    idle_ticks: u32,
    /// The acked offset this transfer last went back to on a repeated ack, so that the repeats
    /// the other chunks of the same window bring cause one go-back, not one each.
    fast_resent_at: Option<u64>,
}

impl OutgoingSnapshot {
    /// A transfer of `image` from offset 0.
    pub fn new(image: SnapshotImage) -> OutgoingSnapshot {
        OutgoingSnapshot {
            image,
            acked: 0,
            next_offset: 0,
            sent_last: false,
            idle_ticks: 0,
            fast_resent_at: None,
        }
    }

    /// The next chunk `[offset, end)` to send, if the window of `window` chunks of
    /// `chunk_bytes` beyond the acked offset allows one; marks it sent.
    pub fn next_chunk(&mut self, chunk_bytes: u64, window: u64) -> Option<(u64, u64)> {
        if self.sent_last || self.next_offset >= self.acked + window * chunk_bytes {
            return None;
        }
        let offset = self.next_offset;
        let end = (offset + chunk_bytes).min(self.image.size());
        self.next_offset = end;
        self.sent_last = end == self.image.size();
        self.check();
        Some((offset, end))
    }

    /// The follower holds every byte before `next_offset`. Returns whether that moved the
    /// transfer (so more may be sent). Stale, duplicate and impossible acks change nothing.
    pub fn on_ack(&mut self, next_offset: u64) -> bool {
        if next_offset == 0 && self.acked > 0 {
            // The follower lost the partial transfer (it restarted): start again.
            self.go_back_to(0);
            return true;
        }
        if next_offset == self.acked
            && self.next_offset > self.acked
            && self.fast_resent_at != Some(self.acked)
        {
            // A later chunk arrived, the next one did not: it was lost.
            self.fast_resent_at = Some(self.acked);
            self.go_back_to(self.acked);
            return true;
        }
        if next_offset <= self.acked || next_offset > self.next_offset {
            return false;
        }
        self.acked = next_offset;
        self.idle_ticks = 0;
        self.check();
        true
    }

    /// One tick passed. After `resend_ticks` ticks without progress, goes back to the acked
    /// offset (the last chunk at the latest, which is never acked: its answer is the install)
    /// and returns true: chunks are due again.
    pub fn tick(&mut self, resend_ticks: u32, chunk_bytes: u64) -> bool {
        self.idle_ticks += 1;
        if self.idle_ticks < resend_ticks {
            return false;
        }
        let last_chunk = self.image.size().saturating_sub(1) / chunk_bytes * chunk_bytes;
        self.go_back_to(self.acked.min(last_chunk));
        true
    }

    /// Ticks until the [`tick`](OutgoingSnapshot::tick) that goes back and resends, at least 1.
    pub fn ticks_until_resend(&self, resend_ticks: u32) -> u32 {
        resend_ticks.saturating_sub(self.idle_ticks).max(1)
    }

    fn go_back_to(&mut self, offset: u64) {
        self.acked = offset;
        self.next_offset = offset;
        self.sent_last = false;
        self.idle_ticks = 0;
        self.check();
    }

    /// Asserts the invariants of the type's documentation, after every mutation (O(1)).
    fn check(&self) {
        assert!(
            self.acked <= self.next_offset && self.next_offset <= self.image.size(),
            "acked {} <= next offset {} <= size {}",
            self.acked,
            self.next_offset,
            self.image.size()
        );
        assert!(
            !self.sent_last || self.next_offset == self.image.size(),
            "the last chunk ends at the size"
        );
    }
}

/// A follower's side of a snapshot transfer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) enum Incoming {
    /// No transfer.
    #[default]
    Idle,
    /// Receiving chunks in order.
    Receiving {
        /// The sending leader's term: with the snapshot's index, term, size and CRC, the
        /// transfer's key.
        leader_term: u64,
        /// The snapshot's last index.
        index: u64,
        /// Its term.
        term: u64,
        /// Its size.
        size: u64,
        /// Its CRC.
        crc: u32,
        /// The bytes so far (`data.len()` is the expected offset).
        data: Vec<u8>,
    },
    /// Every chunk arrived; the runtime installs it. Appends and chunks are dropped meanwhile.
    Installing {
        /// The leader to answer.
        leader: NodeId,
        /// The snapshot.
        image: SnapshotImage,
        /// The newest persist emitted before the `InstallSnapshot` action (set when it is
        /// polled): the runtime reports the install only after this one is durable.
        after: PersistId,
    },
}

impl Incoming {
    /// The snapshot being received or installed, and the bytes of it held: for status pages.
    pub(super) fn progress(&self) -> Option<(u64, u64)> {
        match self {
            Incoming::Idle => None,
            Incoming::Receiving { index, data, .. } => Some((*index, data.len() as u64)),
            Incoming::Installing { image, .. } => Some((image.index, image.size())),
        }
    }
}

/// One InstallSnapshot chunk, as received.
#[derive(Clone, Debug)]
pub(super) struct Chunk {
    pub index: u64,
    pub snapshot_term: u64,
    pub size: u64,
    pub crc: u32,
    pub offset: u64,
    pub data: Vec<u8>,
}

impl Config {
    /// Ticks without acknowledged progress after which a leader resends a snapshot transfer
    /// from its acked offset: the minimum election timeout (a lost chunk costs about as much as
    /// a lost leader; chunks are rarely lost on a healthy network).
    pub fn snapshot_resend_ticks(&self) -> u32 {
        self.election_ticks.0
    }
}

impl Raft {
    /// Whether a snapshot install is under way (appends and chunks are dropped).
    pub(super) fn installing(&self) -> bool {
        matches!(self.incoming, Incoming::Installing { .. })
    }

    /// `Input::SnapshotSaved`: keep the snapshot to send, compact the log, tell the WAL.
    pub(super) fn on_snapshot_saved(&mut self, index: u64, data: Arc<Vec<u8>>) {
        if index <= self.snapshot_index() {
            return; // not newer than what we hold
        }
        if index > self.log.applied_index() {
            log::warn!(
                "node {}: snapshot at {index} is past the applied index {}; ignored",
                self.config.id,
                self.log.applied_index()
            );
            return;
        }
        // index > snapshot_index >= log base, and index <= applied <= last: the log holds it.
        let Some(term) = self.log.term_at(index) else {
            log::warn!("node {}: no term for snapshot at {index}", self.config.id);
            return;
        };
        self.snapshot = Some(SnapshotImage::new(index, term, data));
        // The snapshot is durable: every entry it covers is too.
        self.durability.stable_index = self
            .durability
            .stable_index
            .max(index)
            .min(self.log.last_index());
        let (base, _) = self.log.base();
        let upto = index
            .saturating_sub(self.config.snapshot_trailing_entries)
            .max(base);
        if upto > base {
            self.log.compact_to(upto);
            self.configs.compacted_to(upto);
            self.actions.push_back(Action::Compact { upto });
        }
    }

    /// Leader: `to` needs entries below the log base; start sending it the snapshot.
    pub(super) fn start_snapshot(&mut self, to: NodeId) {
        let Some(image) = self.snapshot.clone() else {
            log::warn!(
                "node {}: follower {to} needs a snapshot and none is held",
                self.config.id
            );
            return;
        };
        let Some(progress) = self.progress.get_mut(&to) else {
            return;
        };
        progress.become_snapshot(OutgoingSnapshot::new(image));
        self.send_snapshot_chunks(to);
    }

    /// Leader: sends `to` the chunks its transfer's window allows.
    pub(super) fn send_snapshot_chunks(&mut self, to: NodeId) {
        let chunk_bytes = self.config.snapshot_chunk_bytes as u64;
        let window = self.config.snapshot_inflight_chunks as u64;
        let stamp_current_term = self.faults().snapshot_with_current_term;
        let current_term = self.term;
        loop {
            let Some(transfer) = self
                .progress
                .get_mut(&to)
                .and_then(|progress| progress.snapshot.as_mut())
            else {
                return;
            };
            let Some((offset, end)) = transfer.next_chunk(chunk_bytes, window) else {
                return;
            };
            let image = &transfer.image;
            let snapshot_term = if stamp_current_term {
                current_term
            } else {
                image.term
            };
            // offset <= end <= size = data.len(): in bounds (next_chunk's invariant).
            let range = usize::try_from(offset).unwrap_or(usize::MAX)
                ..usize::try_from(end).unwrap_or(usize::MAX);
            let body = Body::InstallSnapshot {
                index: image.index,
                snapshot_term,
                size: image.size(),
                crc: image.crc,
                offset,
                data: image.data[range].to_vec(),
            };
            self.send(to, body);
        }
    }

    /// Leader, every tick: transfers without progress for a while resend from the acked offset.
    pub(super) fn tick_snapshots(&mut self) {
        let resend_ticks = self.config.snapshot_resend_ticks();
        let chunk_bytes = self.config.snapshot_chunk_bytes as u64;
        let due: Vec<NodeId> = self
            .progress
            .iter_mut()
            .filter_map(|(&peer, progress)| {
                let transfer = progress.snapshot.as_mut()?;
                transfer.tick(resend_ticks, chunk_bytes).then_some(peer)
            })
            .collect();
        for peer in due {
            self.send_snapshot_chunks(peer);
        }
    }

    /// Leader: the answer to a chunk.
    pub(super) fn on_install_snapshot_response(
        &mut self,
        from: NodeId,
        index: u64,
        next_offset: u64,
        installed: bool,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        progress.recent_active = true;
        if installed {
            // The follower's state covers the snapshot durably: its log matches ours up to
            // `index` (a snapshot holds committed entries only).
            if progress
                .snapshot
                .as_ref()
                .is_some_and(|transfer| index >= transfer.image.index)
            {
                progress.become_probe();
            }
            if progress.on_success(index) {
                self.maybe_commit();
                self.maybe_send_timeout_now(from);
            }
            while self.send_append(from) {}
            self.check_reads();
            return;
        }
        let moved = progress
            .snapshot
            .as_mut()
            .is_some_and(|transfer| transfer.image.index == index && transfer.on_ack(next_offset));
        if moved {
            self.send_snapshot_chunks(from);
        }
    }

    /// Follower: one chunk from the current leader, after the term rules.
    pub(super) fn on_install_snapshot(&mut self, from: NodeId, chunk: Chunk) {
        if !self.heard_from_leader(from) {
            return; // the leader resends; the answer comes once installed
        }
        if chunk.index <= self.log.commit_index() {
            // We already have everything the snapshot holds (committed entries match).
            let body = Body::AppendEntriesResponse {
                index: self.log.commit_index(),
                conflict: None,
                read_round: 0,
            };
            self.send(from, body);
            return;
        }
        let key = (
            self.term,
            chunk.index,
            chunk.snapshot_term,
            chunk.size,
            chunk.crc,
        );
        let expected = match &self.incoming {
            Incoming::Receiving {
                leader_term,
                index,
                term,
                size,
                crc,
                data,
            } if (*leader_term, *index, *term, *size, *crc) == key => Some(data.len() as u64),
            _ => None,
        };
        let starts = chunk.offset == 0 && expected.is_none_or(|offset| offset == 0);
        let fits = chunk
            .offset
            .checked_add(chunk.data.len() as u64)
            .is_some_and(|end| end <= chunk.size)
            && (!chunk.data.is_empty() || chunk.size == 0);
        if !fits || !(starts || expected == Some(chunk.offset)) {
            self.send_snapshot_ack(from, chunk.index, expected.unwrap_or(0));
            return;
        }
        if starts {
            // A new transfer replaces any partial one.
            self.incoming = Incoming::Receiving {
                leader_term: self.term,
                index: chunk.index,
                term: chunk.snapshot_term,
                size: chunk.size,
                crc: chunk.crc,
                data: Vec::new(),
            };
        }
        let Incoming::Receiving { data, .. } = &mut self.incoming else {
            unreachable!("a transfer was found or started just above");
        };
        data.extend_from_slice(&chunk.data);
        let next_offset = data.len() as u64;
        assert!(next_offset <= chunk.size, "the chunk was checked to fit");
        self.actions.push_back(Action::SnapshotChunk {
            index: chunk.index,
            term: chunk.snapshot_term,
            offset: chunk.offset,
            data: chunk.data,
            size: chunk.size,
            crc: chunk.crc,
        });
        if next_offset < chunk.size {
            self.send_snapshot_ack(from, chunk.index, next_offset);
            return;
        }
        let Incoming::Receiving { data, .. } = std::mem::take(&mut self.incoming) else {
            unreachable!("receiving, as matched above");
        };
        let image = SnapshotImage::new(chunk.index, chunk.snapshot_term, Arc::new(data));
        if image.crc != chunk.crc {
            log::warn!(
                "node {}: snapshot {} from {from} fails its CRC; starting again",
                self.config.id,
                chunk.index
            );
            self.send_snapshot_ack(from, chunk.index, 0);
            return;
        }
        self.actions.push_back(Action::InstallSnapshot {
            index: image.index,
            term: image.term,
            size: image.size(),
            crc: image.crc,
            data: Arc::clone(&image.data),
        });
        self.incoming = Incoming::Installing {
            leader: from,
            image,
            after: self.durability.issued_id,
        };
    }

    fn send_snapshot_ack(&mut self, to: NodeId, index: u64, next_offset: u64) {
        let body = Body::InstallSnapshotResponse {
            index,
            next_offset,
            installed: false,
        };
        self.send(to, body);
    }

    /// `Input::SnapshotInstalled`: the runtime made the snapshot durable, reset its WAL by
    /// rules 6/7 and restored the state machine. Apply the same rules to the in-memory log.
    pub(super) fn on_snapshot_installed(&mut self, index: u64) {
        let (leader, image) = match std::mem::take(&mut self.incoming) {
            Incoming::Installing {
                leader,
                image,
                after,
            } if image.index == index => {
                assert!(
                    self.durability.durable_id >= after,
                    "snapshot {index} reported installed before persist {after}, emitted before \
                     the install, was reported durable (Action::InstallSnapshot's contract)"
                );
                (leader, image)
            }
            other => {
                self.incoming = other;
                log::warn!(
                    "node {}: snapshot {index} installed, but no install of it was asked",
                    self.config.id
                );
                return;
            }
        };
        let kept_suffix = self.log.install_snapshot(image.index, image.term);
        // §7: the snapshot carries the configuration in force at its index.
        let membership = match super::snapshot_frame::unframe(&image.data) {
            Ok(framed) => framed.membership,
            Err(error) => {
                log::warn!(
                    "node {}: snapshot {index}'s configuration cannot be read ({error}); \
                     keeping the one in force",
                    self.config.id
                );
                None
            }
        };
        self.configs.installed(index, membership, kept_suffix);
        let durability = &mut self.durability;
        if kept_suffix {
            // Rule 6: the entries after the snapshot stay, durable as they were; the snapshot
            // covers everything up to its index.
            durability.stable_index = durability.stable_index.max(index);
        } else {
            // Rule 7: the WAL holds nothing after the snapshot any more. Persists issued before
            // the install were written before it (the runtime keeps their order), so what they
            // wrote after `index` is gone too.
            durability.cut_after(index);
            durability.stable_index = index;
        }
        let size = image.size();
        self.snapshot = Some(image);
        self.configuration_changed();
        // The runtime restored the state machine: applying resumes after the snapshot.
        let committed = self.log.take_committed();
        if !committed.is_empty() {
            self.actions.push_back(Action::Apply { entries: committed });
        }
        // This answer promises the snapshot is durable. The runtime reports the install only
        // once it is, and the answer promises nothing about our term, vote or entries after
        // `index`, so it needs no persist barrier: `send` does not hold it.
        let body = Body::InstallSnapshotResponse {
            index,
            next_offset: size,
            installed: true,
        };
        self.send(leader, body);
    }
}

impl super::Progress {
    /// Enters the `Snapshot` state sending `transfer`.
    pub fn become_snapshot(&mut self, transfer: OutgoingSnapshot) {
        self.state = ProgressState::Snapshot;
        self.probe_sent = false;
        self.snapshot = Some(transfer);
        self.clear_inflight();
        self.check();
    }
}
