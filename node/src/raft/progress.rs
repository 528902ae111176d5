//! What a leader knows of each follower's log, and how fast it may send to it (the pipelined
//! replication of the thesis §10.2.1, in etcd's probe / replicate shape).
//!
//! - **Probe**: the leader does not know where the follower's log matches its own. It sends one
//!   AppendEntries at a time and waits for the answer (or the next heartbeat) before another.
//! - **Replicate**: the follower's log is known to match up to `match_index`. The leader streams
//!   AppendEntries ahead of the acknowledgements, bounded by a window in messages and bytes.
//!
//! - **Snapshot**: the follower needs entries the leader compacted away; the leader sends it a
//!   snapshot in chunks (`snapshot.rs`) and no AppendEntries but heartbeats.
//!
//! Invariants: `match_index < next_index`; in Replicate, the in-flight messages cover
//! `match_index + 1 .. next_index` in ascending order (the first ends past `match_index`, the
//! last at `next_index - 1`); only Replicate has messages in flight, only Probe waits for a probe
//! (`probe_sent`); `snapshot` is set exactly in Snapshot. Every mutator asserts them
//! (`Progress::check`, O(1), on in release builds too).

use std::collections::VecDeque;

use super::snapshot::OutgoingSnapshot;

/// How the leader sends to a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// One message at a time until a match is found.
    Probe,
    /// Pipelined under the in-flight window.
    Replicate,
    /// Sending a snapshot (`snapshot`); no entries until it is installed, or an answer shows
    /// the follower caught up past the log's base some other way.
    Snapshot,
}

/// The leader's view of one follower.
#[derive(Clone, Debug)]
pub struct Progress {
    /// Highest index known to match the leader's log.
    pub match_index: u64,
    /// Next index to send.
    pub next_index: u64,
    /// How to send.
    pub state: ProgressState,
    /// In Probe: a probe is outstanding; wait for its answer or the next heartbeat.
    pub probe_sent: bool,
    /// In Replicate: the last index and wire size of each message in flight, ascending.
    inflight: VecDeque<(u64, usize)>,
    inflight_bytes: usize,
    /// Heard from since the last CheckQuorum round.
    pub recent_active: bool,
    /// Acknowledged new entries since the last heartbeat (else in-flight messages are presumed
    /// lost).
    pub acked_since_heartbeat: bool,
    /// The newest ReadIndex round this follower confirmed.
    pub read_round: u64,
    /// In Snapshot: the transfer in flight.
    pub snapshot: Option<OutgoingSnapshot>,
}

impl Progress {
    /// A follower the leader knows nothing of yet: probe from the end of the leader's log.
    pub fn new(next_index: u64) -> Progress {
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            recent_active: false,
            acked_since_heartbeat: false,
            read_round: 0,
            snapshot: None,
        }
    }

    /// Whether nothing more may be sent now.
    pub fn is_paused(&self, max_messages: usize, max_bytes: usize) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Snapshot => true,
            ProgressState::Replicate => {
                self.inflight.len() >= max_messages || self.inflight_bytes >= max_bytes
            }
        }
    }

    /// Messages in flight (Replicate).
    pub fn inflight_messages(&self) -> usize {
        self.inflight.len()
    }

    /// Wire bytes of the messages in flight (Replicate).
    pub fn inflight_bytes(&self) -> usize {
        self.inflight_bytes
    }

    /// Records an AppendEntries sent with entries up to `last_index` taking `bytes`.
    pub fn on_sent(&mut self, last_index: u64, bytes: usize) {
        match self.state {
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot => {}
            ProgressState::Replicate => {
                if last_index >= self.next_index {
                    // Appending only past the newest keeps the in-flight messages ascending
                    // (`check` sees only both ends).
                    assert!(
                        self.inflight
                            .back()
                            .is_none_or(|&(last, _)| last < last_index),
                        "in-flight messages ascend"
                    );
                    self.inflight.push_back((last_index, bytes));
                    self.inflight_bytes += bytes;
                    self.next_index = last_index + 1;
                }
            }
        }
        self.check();
    }

    /// The follower matches up to `index`. Returns whether that is news.
    pub fn on_success(&mut self, index: u64) -> bool {
        let news = index > self.match_index;
        if news {
            // Only an answer that moves the match index acknowledges the stream: a heartbeat's
            // answer (at the match index) says nothing of the messages in flight, and counting it
            // would keep a lost message from ever being sent again.
            self.acked_since_heartbeat = true;
            self.match_index = index;
        }
        self.next_index = self.next_index.max(index + 1);
        while let Some(&(last, bytes)) = self.inflight.front() {
            if last > self.match_index {
                break;
            }
            self.inflight.pop_front();
            self.inflight_bytes -= bytes;
        }
        if self.state == ProgressState::Probe {
            // The probe found where the logs match: stream from there.
            self.probe_sent = false;
            self.state = ProgressState::Replicate;
            self.next_index = self.match_index + 1;
            self.clear_inflight();
        }
        self.check();
        news
    }

    /// The follower rejected the message whose `prev_index` was `rejected`; probe from `next`.
    /// `follower_last` is the follower's last index when it said so (a rejection for a log too
    /// short). Returns false for a stale rejection, which changes nothing.
    ///
    /// A follower whose log ends below what it acknowledged (`match_index`) lost its stable
    /// storage and came back empty (a fault Raft does not tolerate in a voter: such a node
    /// must be replaced under a new id; this only keeps the leader honest), or the answer is an old one
    /// overtaken by later successes. Either way the match drops to what it says it holds: a stale
    /// answer costs one more probe, a lost log would otherwise never be noticed (every message
    /// to it carries a `prev_index` at or below the stale match, and such rejections are
    /// otherwise ignored).
    pub fn on_reject(&mut self, rejected: u64, next: u64, follower_last: Option<u64>) -> bool {
        if let Some(last) = follower_last
            && last < self.match_index
            && self.state != ProgressState::Snapshot
        {
            self.match_index = last;
            self.become_probe();
            return true;
        }
        self.acked_since_heartbeat = true;
        if rejected <= self.match_index || self.state == ProgressState::Snapshot {
            // Answers a message older than what is already known to match, or one sent before
            // the snapshot transfer began.
            return false;
        }
        if self.state == ProgressState::Probe && rejected + 1 != self.next_index {
            return false; // answers an older probe
        }
        self.become_probe();
        self.next_index = next.clamp(self.match_index + 1, rejected.max(self.match_index + 1));
        self.check();
        true
    }

    /// In the `Snapshot` state: whether the transfer is over, because the log serves the
    /// follower again from `log_base`, or because the follower holds everything the snapshot
    /// being sent covers (its answer that it installed it was lost; if the log was compacted
    /// past that snapshot since, probing starts a transfer of the newer one).
    pub fn snapshot_no_longer_needed(&self, log_base: u64) -> bool {
        self.state == ProgressState::Snapshot
            && (self.match_index >= log_base
                || self
                    .snapshot
                    .as_ref()
                    .is_some_and(|transfer| self.match_index >= transfer.image.index))
    }

    /// Falls back to probing right after what is known to match.
    pub fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.snapshot = None;
        self.probe_sent = false;
        self.next_index = self.match_index + 1;
        self.clear_inflight();
        self.check();
    }

    pub(super) fn clear_inflight(&mut self) {
        self.inflight.clear();
        self.inflight_bytes = 0;
    }

    /// Asserts the invariants of the module documentation, after every mutation. O(1), so they
    /// stay on in release builds; that the messages between the two ends ascend is `on_sent`'s
    /// to assert, where each is appended.
    pub(super) fn check(&self) {
        assert!(
            self.match_index < self.next_index,
            "match index {} below next index {}",
            self.match_index,
            self.next_index
        );
        assert_eq!(
            self.snapshot.is_some(),
            self.state == ProgressState::Snapshot,
            "a snapshot transfer is held exactly in Snapshot"
        );
        assert!(
            !self.probe_sent || self.state == ProgressState::Probe,
            "only Probe waits for a probe's answer"
        );
        assert!(
            self.state == ProgressState::Replicate || self.inflight.is_empty(),
            "only Replicate has messages in flight"
        );
        assert!(
            !self.inflight.is_empty() || self.inflight_bytes == 0,
            "no bytes in flight without messages"
        );
        if let (Some(&(first, _)), Some(&(last, _))) = (self.inflight.front(), self.inflight.back())
        {
            assert!(
                first > self.match_index,
                "an acknowledged message is still in flight"
            );
            assert_eq!(
                last + 1,
                self.next_index,
                "the newest message in flight ends just before the next index"
            );
        }
    }
}
