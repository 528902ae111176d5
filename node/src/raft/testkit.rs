//! A scripted cluster for the core's tests, in the style of etcd's interaction tests: nodes,
//! in-memory storage that persists when told to, a queue of messages in flight that a test
//! delivers, drops or cuts, and the actions each node produced.
//!
//! Storage work is routed as the replica routes it ([`StorageOp::from_action`]) and held in
//! the order the runtime's WAL thread carries it out ([`StorageQueue`], the order of
//! `crate::replica::storage::stages`): a compaction or an install waits for the persists
//! queued before it.
//!
//! Time passes only when a test says so: [`Cluster::tick`] ticks one node, [`Cluster::run`] ticks
//! several in lockstep and delivers everything between ticks. Nothing is random but the nodes'
//! seeded election jitter, so every script replays exactly.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use super::{
    Action, Config, Entry, EntryKind, HardState, Input, Message, NodeId, Persist, PersistId,
    Progress, Raft, Restored, Role,
};
use crate::replica::storage::{Stage, StorageOp, StorageQueue};

/// Entries at indexes 1, 2, … with the given terms, each holding a short command naming its
/// place (`"3@2"` is index 3, term 2). For logs drawn from the paper's figures.
pub fn log_with_terms(terms: &[u64]) -> Vec<Entry> {
    terms
        .iter()
        .zip(1u64..)
        .map(|(&term, index)| Entry {
            index,
            term,
            kind: EntryKind::Normal,
            data: format!("{index}@{term}").into_bytes(),
        })
        .collect()
}

/// Ticks `node` once, asserting the rule of [`Raft::ticks_until_due`] that lets a runtime
/// sleep: a tick it did not say was due leaves a quiet node quiet, one tick nearer.
pub fn tick_checked(node: &mut Raft) {
    let due = node.ticks_until_due();
    let quiet = node.is_quiet();
    node.step(Input::Tick);
    if quiet && due != Some(1) {
        let id = node.id();
        assert!(
            node.is_quiet(),
            "node {id}: a tick {due:?} ticks before anything was due made it act"
        );
        assert_eq!(
            node.ticks_until_due(),
            due.map(|n| n - 1),
            "node {id}: a quiet tick must bring what is due one tick nearer"
        );
    }
}

/// What one node has on "disk" and what it asked for.
#[derive(Debug, Default)]
pub struct ScriptedDisk {
    /// Durable hard state.
    pub hard_state: HardState,
    /// Durable log.
    pub entries: Vec<Entry>,
    /// Persists issued but not yet made durable, in order, each with the messages it releases,
    /// and the storage work queued behind them.
    pub queue: StorageQueue,
    /// The durable snapshot's (index, term) ((0, 0): none).
    pub snapshot: (u64, u64),
    /// Its bytes.
    pub snapshot_data: Option<Arc<Vec<u8>>>,
    /// The snapshot being received (chunks appended in order).
    pub receiving: Vec<u8>,
    /// An `InstallSnapshot` asked for and not carried out yet: (index, term).
    pub install_due: Option<(u64, u64)>,
}

impl ScriptedDisk {
    /// Persists issued but not yet made durable, in order.
    pub fn pending(&self) -> &VecDeque<Persist> {
        self.queue.pending()
    }

    /// Carries out storage work other than a persist, once the persists before it are done.
    fn carry_out(&mut self, op: StorageOp) {
        match op {
            StorageOp::Persist(persist) => {
                self.apply(persist);
            }
            StorageOp::SnapshotChunk { offset, data, .. } => {
                if offset == 0 {
                    self.receiving.clear();
                }
                self.receiving.extend_from_slice(&data);
            }
            StorageOp::InstallSnapshot { meta, .. } => {
                self.install_due = Some((meta.index, meta.term));
            }
            StorageOp::Compact { upto } => self.entries.retain(|entry| entry.index > upto),
            StorageOp::SaveSnapshot { .. } => {
                unreachable!("the core asks for no save; the test kit saves by itself")
            }
        }
    }

    fn apply(&mut self, persist: Persist) -> PersistId {
        if let Some(from) = persist.truncate_from {
            self.entries.retain(|entry| entry.index < from);
        }
        if let Some(first) = persist.entries.first() {
            self.entries.retain(|entry| entry.index < first.index);
        }
        self.entries.extend(persist.entries);
        if let Some(hard_state) = persist.hard_state {
            self.hard_state = hard_state;
        }
        persist.id
    }

    /// Carries out the install asked for, as the runtime does: the received bytes become the
    /// snapshot, the log is reset by Figure 13's rules 6/7, the commit index raised.
    fn install(&mut self) -> Option<u64> {
        let (index, term) = self.install_due.take()?;
        self.snapshot = (index, term);
        self.snapshot_data = Some(Arc::new(std::mem::take(&mut self.receiving)));
        let keeps = self
            .entries
            .iter()
            .any(|entry| entry.index == index && entry.term == term);
        if keeps {
            self.entries.retain(|entry| entry.index > index);
        } else {
            self.entries.clear();
        }
        self.hard_state.commit = self.hard_state.commit.max(index);
        Some(index)
    }

    /// What a restart gets back: the snapshot and the entries after it (none if the entry at
    /// its index conflicts with it).
    fn restored(&self) -> Restored {
        let (index, term) = self.snapshot;
        let consistent = self
            .entries
            .iter()
            .find(|entry| entry.index == index)
            .is_none_or(|entry| entry.term == term);
        let entries = if consistent {
            self.entries
                .iter()
                .filter(|entry| entry.index > index)
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        Restored {
            hard_state: self.hard_state,
            snapshot: self.snapshot,
            entries,
            snapshot_data: self.snapshot_data.clone(),
        }
    }
}

/// A cluster under a test's control.
pub struct Cluster {
    /// The nodes.
    pub nodes: BTreeMap<NodeId, Raft>,
    /// Their storage.
    pub disks: BTreeMap<NodeId, ScriptedDisk>,
    /// Messages sent and not yet delivered, in order.
    pub in_flight: VecDeque<(NodeId, NodeId, Message)>,
    /// Every message any node handed out, cut links included, in order: (from, to, message).
    pub sent: Vec<(NodeId, NodeId, Message)>,
    /// Entries each node was told to apply, in order.
    pub applied: BTreeMap<NodeId, Vec<Entry>>,
    /// Every other action (proposal outcomes, reads, role changes), per node, in order.
    pub events: BTreeMap<NodeId, Vec<Action>>,
    /// Links that drop everything: (from, to).
    pub cut: BTreeSet<(NodeId, NodeId)>,
    /// Persist at once after every step (default); when false, a test calls `persist`.
    pub auto_persist: bool,
    /// Carry out an `InstallSnapshot` at once (default); when false, a test calls `install`.
    pub auto_install: bool,
}

impl Cluster {
    /// `n` fresh nodes 1..=n with the default config, tweaked by `adjust`.
    pub fn new(n: u64, adjust: impl Fn(&mut Config)) -> Cluster {
        let voters: Vec<NodeId> = (1..=n).collect();
        let mut cluster = Cluster {
            nodes: BTreeMap::new(),
            disks: BTreeMap::new(),
            in_flight: VecDeque::new(),
            sent: Vec::new(),
            applied: BTreeMap::new(),
            events: BTreeMap::new(),
            cut: BTreeSet::new(),
            auto_persist: true,
            auto_install: true,
        };
        for &id in &voters {
            let mut config = Config::new(id, voters.clone());
            adjust(&mut config);
            let raft = Raft::new(config, Restored::default()).expect("valid config");
            cluster.nodes.insert(id, raft);
            cluster.disks.insert(id, ScriptedDisk::default());
        }
        cluster
    }

    /// The node `id`.
    pub fn node(&self, id: NodeId) -> &Raft {
        &self.nodes[&id]
    }

    /// Feeds `input` to node `id` and collects what it asks for.
    pub fn step(&mut self, id: NodeId, input: Input) {
        self.step_all(id, [input]);
    }

    /// Feeds several inputs to node `id` before collecting what it asks for, as a runtime does
    /// with everything queued in its inbox (so the node can batch).
    pub fn step_all(&mut self, id: NodeId, inputs: impl IntoIterator<Item = Input>) {
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        for input in inputs {
            if input == Input::Tick {
                tick_checked(node);
            } else {
                node.step(input);
            }
        }
        self.drain(id);
    }

    fn drain(&mut self, id: NodeId) {
        while let Some(action) = self.nodes.get_mut(&id).expect("node").poll_action() {
            // Storage work other than persists is also recorded, for the tests to read.
            if matches!(
                action,
                Action::SnapshotChunk { .. }
                    | Action::InstallSnapshot { .. }
                    | Action::Compact { .. }
            ) {
                self.events.entry(id).or_default().push(action.clone());
            }
            match StorageOp::from_action(action) {
                Ok(op) => {
                    let disk = self.disks.get_mut(&id).expect("disk");
                    if let Some(due) = disk.queue.push(op) {
                        disk.carry_out(due);
                    }
                }
                Err(Action::Send { to, msg }) => self.queue_send(id, to, msg),
                Err(Action::Apply { entries }) => {
                    self.applied.entry(id).or_default().extend(entries);
                }
                Err(other) => self.events.entry(id).or_default().push(other),
            }
        }
        if self.auto_persist && !self.disks[&id].pending().is_empty() {
            self.persist(id);
        }
        if self.auto_install && self.disks[&id].install_due.is_some() {
            self.install(id);
        }
    }

    /// Carries out node `id`'s pending snapshot install (persisting what was issued before it
    /// first, as the runtime's ordered writer does) and tells the node.
    pub fn install(&mut self, id: NodeId) {
        self.persist(id);
        if let Some(index) = self.disks.get_mut(&id).expect("disk").install() {
            self.step(id, Input::SnapshotInstalled { index });
        }
    }

    /// Node `id` saves a snapshot of its state machine as of its applied index (the test's
    /// state machine is the list of applied entries; the bytes name the index). The bytes are
    /// the state alone, as a snapshot of a version before configurations travelled in them:
    /// short, so that the chunking scripts count chunks by hand.
    pub fn save_snapshot(&mut self, id: NodeId) {
        self.save(id, false);
    }

    /// Like [`save_snapshot`](Cluster::save_snapshot), framed as the replica frames it: the
    /// configuration at its index, then the state.
    pub fn save_snapshot_with_configuration(&mut self, id: NodeId) {
        self.save(id, true);
    }

    fn save(&mut self, id: NodeId, framed: bool) {
        let status = self.nodes[&id].status();
        let index = status.applied_index;
        let term = self.nodes[&id]
            .log()
            .term_at(index)
            .expect("applied is held");
        let state = format!("state@{index}").into_bytes();
        let data = Arc::new(if framed {
            super::snapshot_frame::frame(self.nodes[&id].membership_at(index), &state)
        } else {
            state
        });
        let disk = self.disks.get_mut(&id).expect("disk");
        disk.snapshot = (index, term);
        disk.snapshot_data = Some(Arc::clone(&data));
        self.step(id, Input::SnapshotSaved { index, data });
    }

    /// Records a message `from` hands out and puts it in flight, unless its link is cut.
    fn queue_send(&mut self, from: NodeId, to: NodeId, msg: Message) {
        self.sent.push((from, to, msg.clone()));
        if !self.cut.contains(&(from, to)) {
            self.in_flight.push_back((from, to, msg));
        }
    }

    /// Makes every pending persist of node `id` durable (and carries out the work queued
    /// behind them), sends what each carries in `then_send` (as the writer does, right after
    /// its sync), and then tells the node.
    pub fn persist(&mut self, id: NodeId) {
        let disk = self.disks.get_mut(&id).expect("disk");
        let mut upto = None;
        let mut then_send = Vec::new();
        for stage in disk.queue.complete_upto(PersistId::MAX) {
            match stage {
                Stage::Write(mut persist) => {
                    then_send.append(&mut persist.then_send);
                    upto = Some(disk.apply(persist));
                }
                // Everything persisted is reported at once, below.
                Stage::Sync => {}
                Stage::Other(op) => disk.carry_out(op),
            }
        }
        for (to, msg) in then_send {
            self.queue_send(id, to, msg);
        }
        if let Some(upto) = upto {
            self.step(id, Input::Persisted { upto });
        }
    }

    /// Ticks node `id` `n` times.
    pub fn tick(&mut self, id: NodeId, n: u32) {
        for _ in 0..n {
            self.step(id, Input::Tick);
        }
    }

    /// Delivers the message at the front of the queue; returns it.
    pub fn deliver_one(&mut self) -> Option<(NodeId, NodeId, Message)> {
        let (from, to, msg) = self.in_flight.pop_front()?;
        if self.nodes.contains_key(&to) && !self.cut.contains(&(from, to)) {
            self.step(
                to,
                Input::Message {
                    from,
                    msg: msg.clone(),
                },
            );
        }
        Some((from, to, msg))
    }

    /// Delivers messages until none is in flight. Panics past a bound (a livelock in a test).
    pub fn deliver_all(&mut self) {
        for _ in 0..100_000 {
            if self.deliver_one().is_none() {
                return;
            }
        }
        panic!("messages kept flowing: livelock");
    }

    /// Delivers messages until none is in flight, dropping (instead of delivering) every one for
    /// which `lose(cluster, from, to, message)` holds when its turn comes, including those sent
    /// meanwhile.
    pub fn deliver_all_but(
        &mut self,
        mut lose: impl FnMut(&Cluster, NodeId, NodeId, &Message) -> bool,
    ) {
        for _ in 0..100_000 {
            let Some((from, to, msg)) = self.in_flight.front() else {
                return;
            };
            if lose(self, *from, *to, msg) {
                self.in_flight.pop_front();
            } else {
                self.deliver_one();
            }
        }
        panic!("messages kept flowing: livelock");
    }

    /// Delivers messages one at a time until `done` holds (checked before each); returns whether
    /// it did before the queue ran dry.
    pub fn deliver_until(&mut self, done: impl Fn(&Cluster) -> bool) -> bool {
        for _ in 0..100_000 {
            if done(self) {
                return true;
            }
            if self.deliver_one().is_none() {
                return false;
            }
        }
        panic!("messages kept flowing: livelock");
    }

    /// Lets `ticks` ticks pass on the nodes `ids` in lockstep, delivering every message after
    /// each tick.
    pub fn run(&mut self, ids: &[NodeId], ticks: u32) {
        self.run_until(ids, ticks, |_| false);
    }

    /// Like [`run`](Cluster::run), but stops as soon as `done` holds, checked after every input
    /// any node takes; returns whether it did within `max_ticks`.
    pub fn run_until(
        &mut self,
        ids: &[NodeId],
        max_ticks: u32,
        done: impl Fn(&Cluster) -> bool,
    ) -> bool {
        if done(self) {
            return true;
        }
        for _ in 0..max_ticks {
            for &id in ids {
                self.step(id, Input::Tick);
                if done(self) {
                    return true;
                }
            }
            if self.deliver_until(&done) {
                return true;
            }
        }
        false
    }

    /// Drops every message in flight.
    pub fn drop_in_flight(&mut self) {
        self.in_flight.clear();
    }

    /// Cuts node `id` off from every other node, both ways.
    pub fn isolate(&mut self, id: NodeId) {
        let others: Vec<NodeId> = self.nodes.keys().copied().filter(|&o| o != id).collect();
        for other in others {
            self.cut.insert((id, other));
            self.cut.insert((other, id));
        }
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Ticks node `id` until its election timeout elapses and it campaigns (it stops being a
    /// follower); delivers nothing.
    pub fn campaign(&mut self, id: NodeId) {
        let timeout = self.nodes[&id].config().election_ticks.1;
        for _ in 0..timeout {
            if self.nodes[&id].status().role != Role::Follower {
                return;
            }
            self.step(id, Input::Tick);
        }
        assert_ne!(self.role(id), Role::Follower, "node {id} should campaign");
    }

    /// Makes node `id` campaign now (its election timeout elapses) and runs the election out.
    pub fn elect(&mut self, id: NodeId) {
        self.campaign(id);
        self.deliver_all();
        assert_eq!(
            self.nodes[&id].status().role,
            Role::Leader,
            "node {id} should lead"
        );
    }

    /// Proposes `data` at node `id` and delivers everything.
    pub fn propose(&mut self, id: NodeId, data: &[u8]) {
        self.step(
            id,
            Input::Propose {
                id: 0,
                data: data.to_vec(),
            },
        );
        self.deliver_all();
    }

    /// The role of node `id`.
    pub fn role(&self, id: NodeId) -> Role {
        self.nodes[&id].status().role
    }

    /// The term of node `id`.
    pub fn term(&self, id: NodeId) -> u64 {
        self.nodes[&id].status().term
    }

    /// The commit index of node `id`.
    pub fn commit(&self, id: NodeId) -> u64 {
        self.nodes[&id].status().commit_index
    }

    /// The leader among `ids` in the highest term, if any.
    pub fn leader_among(&self, ids: &[NodeId]) -> Option<NodeId> {
        ids.iter()
            .copied()
            .filter(|&id| self.role(id) == Role::Leader)
            .max_by_key(|&id| self.term(id))
    }

    /// What leader `leader` knows of `follower`.
    pub fn progress(&self, leader: NodeId, follower: NodeId) -> &Progress {
        &self.nodes[&leader].progress[&follower]
    }

    /// The actions other than persists, sends and applies that node `id` produced, in order.
    pub fn events(&self, id: NodeId) -> &[Action] {
        self.events.get(&id).map_or(&[], Vec::as_slice)
    }

    /// The entries node `id` was told to apply, in order.
    pub fn applied(&self, id: NodeId) -> &[Entry] {
        self.applied.get(&id).map_or(&[], Vec::as_slice)
    }

    /// The term of every entry in node `id`'s log, from its first index.
    pub fn terms(&self, id: NodeId) -> Vec<u64> {
        self.log_terms(id)
            .into_iter()
            .map(|(_, term)| term)
            .collect()
    }

    /// The (index, term) of every entry in node `id`'s log.
    pub fn log_terms(&self, id: NodeId) -> Vec<(u64, u64)> {
        let log = self.nodes[&id].log();
        (log.first_index()..=log.last_index())
            .map(|index| (index, log.term_at(index).expect("held")))
            .collect()
    }

    /// Adds node `id`, empty and joining: it knows no configuration until the leader sends one.
    pub fn add_joining(&mut self, id: NodeId, adjust: impl Fn(&mut Config)) {
        let mut config = Config::new(id, Vec::new());
        config.joining = true;
        adjust(&mut config);
        let raft = Raft::new(config, Restored::default()).expect("valid config");
        self.nodes.insert(id, raft);
        self.disks.insert(id, ScriptedDisk::default());
    }

    /// Asks node `id` to change the membership by `steps`, tagged `tag`; delivers nothing.
    pub fn change(&mut self, id: NodeId, tag: u64, steps: Vec<super::membership::Step>) {
        self.step(id, Input::ChangeMembership { id: tag, steps });
    }

    /// What became of the membership change tagged `tag` at node `id`, once known.
    pub fn change_outcome(&self, id: NodeId, tag: u64) -> Option<&super::ChangeOutcome> {
        self.events(id).iter().find_map(|event| match event {
            Action::MembershipChange { id, outcome } if *id == tag => Some(outcome),
            _ => None,
        })
    }

    /// The voters (incoming, outgoing) and learners of the configuration node `id` has in
    /// force; `None` if it knows none.
    pub fn members(&self, id: NodeId) -> Option<(Vec<NodeId>, Vec<NodeId>, Vec<NodeId>)> {
        self.nodes[&id].membership().map(|membership| {
            (
                membership.incoming().collect(),
                membership.outgoing().collect(),
                membership.learners().collect(),
            )
        })
    }

    /// Crashes node `id` and restarts it from a disk holding `hard_state` and `entries`: a state
    /// the test sets up, such as a follower's log from Figure 7.
    pub fn restart_with(&mut self, id: NodeId, hard_state: HardState, entries: Vec<Entry>) {
        let disk = self.disks.get_mut(&id).expect("disk");
        disk.hard_state = hard_state;
        disk.entries = entries;
        self.restart(id);
    }

    /// Crashes node `id` (everything not durable is lost) and restarts it from its disk.
    pub fn restart(&mut self, id: NodeId) {
        let config = self.nodes[&id].config().clone();
        let disk = self.disks.get_mut(&id).expect("disk");
        disk.queue.crash();
        disk.receiving.clear();
        disk.install_due = None;
        let restored = disk.restored();
        self.nodes
            .insert(id, Raft::new(config, restored).expect("valid config"));
        self.in_flight.retain(|(_, to, _)| *to != id);
        // The state machine restarts empty; the node hands out what it knows committed again.
        self.applied.remove(&id);
        self.drain(id);
    }
}
