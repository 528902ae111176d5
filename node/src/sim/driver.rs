//! The simulation loop: one queue of timed events (ticks, deliveries, finished persists and
//! saves, client timers, the nemesis, restarts, the phase changes), handled in time order, ties
//! broken by the order they were scheduled in. Handling an event gives at most one replica a
//! [`Stimulus`]; every effect the replica emits is carried out at once (messages and client
//! answers into the network, storage work onto its disk in the order of
//! `crate::replica::storage::stages`), and the checks run after every step.
//!
//! Each node runs the real [`Replica`] — the code the runtime's consensus thread runs — with the
//! real key-value store (observed, `store.rs`), so applying, answering clients, forwarding,
//! reads, the snapshot policy and the session table are all under test.
//!
//! Per-run parameters (`setup.rs`) are drawn from the seed before anything else, so the seed
//! alone decides the run.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use balsa_net::Counters;

use super::SimConfig;
use super::checks::Checker;
use super::clients::{self, Clients, Outgoing};
use super::digest::RunDigest;
use super::disk::{DiskCompletion, Finding, SimDisk, SnapshotFile};
use super::linearizability;
use super::membership;
use super::nemesis::Act;
use super::network::{Network, SUBTICKS_PER_TICK};
use super::queue::{EventQueue, SimEvent};
use super::report::{FaultCounts, Linearizability, Report, Violation, ViolationKind};
use super::rng::SimRng;
use super::setup::Setup;
use super::store::{AppliedCommand, ObservedStore};
use super::trace;
use crate::raft::membership::{Membership, Step};
use crate::raft::{Config, Message, NodeId, PersistId, Raft, Restored, Role};
use crate::replica::storage::{Stage, StorageDone, StorageOp, stages};
use crate::replica::{Effect, Input, Replica, SnapshotPolicy};
use crate::runtime::wire::{ResponseBody, Wire};

/// A snapshot installed on a disk: its index, term and bytes.
type Installed = (u64, u64, Arc<Vec<u8>>);

/// The replica as simulated: no embedding API callers.
type SimReplica = Replica<ObservedStore, ()>;

/// What a replica is told in one step: one of its inputs, or (from the nemesis) to hand over
/// leadership.
#[derive(Debug)]
pub enum Stimulus {
    /// One of the replica's inputs.
    Input(Input),
    /// Hand leadership to `to` (refused unless the replica leads).
    Transfer {
        /// The node.
        to: NodeId,
    },
    /// Change the membership (refused unless the replica leads).
    Change {
        /// The change.
        steps: Vec<Step>,
    },
}

/// A persist usually completes within this many subticks.
const PERSIST_DELAY: (u64, u64) = (1, 15);
/// A late persist completes within this many subticks (3–40 ticks).
const LATE_PERSIST_DELAY: (u64, u64) = (30, 400);
/// Share of persist completions that also complete every persist queued behind (group commit).
const GROUP_COMMIT_PER_MILLE: u64 = 200;
/// Share of a crashed node's pending persists (each in turn) that reach the disk anyway.
const UNACKED_SURVIVES_PER_MILLE: u64 = 300;
/// Share of partitions and crashes aimed at the current leader, where there is one.
const AIM_AT_LEADER_PER_MILLE: u64 = 500;
/// The liveness window, in maximum election timeouts.
const LIVENESS_ELECTION_TIMEOUTS: u64 = 10;
/// Saving a snapshot takes this many subticks once the persists before it are written.
const SAVE_DELAY: (u64, u64) = (1, 20);
/// An install takes this many subticks once the persists queued before it are written.
const INSTALL_DELAY: (u64, u64) = (1, 30);
/// Share of crashes during an install (with every persist before it written) after which the
/// install turns out to have reached the disk.
const INSTALL_SURVIVES_PER_MILLE: u64 = 500;

/// The most members a configuration grows to.
const MAX_MEMBERS: usize = 7;
/// The most node ids a run uses (the first cluster and every node added since).
const MAX_IDS_PER_RUN: usize = 12;

/// One simulated node: its replica (while up) and its disk.
struct SimNode {
    /// The replica (core and state machine); `None` while crashed.
    replica: Option<SimReplica>,
    /// Bumped at every restart; persists of an older incarnation are void.
    incarnation: u64,
    disk: SimDisk,
    /// The settings it restarts with (a fresh jitter seed each time).
    config: Config,
    /// The digest of its state machine's state after its applied index.
    state_digest: u64,
    /// The save under way, not durable yet.
    saving: Option<SnapshotFile>,
    /// The install under way and not done yet: (index, term, bytes).
    installing: Option<(u64, u64, Arc<Vec<u8>>)>,
}

/// Where the run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Chaos,
    /// Healed at `since` (subticks).
    Liveness {
        since: u64,
    },
    Done,
}

struct Sim {
    seed: u64,
    config: SimConfig,
    setup: Setup,
    rng: SimRng,
    queue: EventQueue,
    nodes: BTreeMap<NodeId, SimNode>,
    ids: Vec<NodeId>,
    /// Nodes kept down through the liveness phase.
    kept_down: BTreeSet<NodeId>,
    network: Network,
    clients: Clients,
    checker: Checker,
    faults: FaultCounts,
    steps: u64,
    phase: Phase,
    liveness_ticks: Option<u64>,
    violation: Option<Violation>,
    digest: RunDigest,
    /// With `SimConfig::trace`: the lines so far.
    trace: Vec<String>,
    /// Nodes gone for good: removed from the cluster (a removed node stops, as `serve` does),
    /// or lost with their disk (and replaced under a new id). Never restarted.
    gone: BTreeSet<NodeId>,
    /// A lost node the nemesis still has to replace.
    to_replace: Option<NodeId>,
}

/// Runs `seed` under `config` (see [`super::run`]).
pub fn run(seed: u64, config: &SimConfig) -> Report {
    let mut sim = Sim::new(seed, config);
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| sim.run())) {
        let message = panic
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned());
        sim.fail((ViolationKind::Panic, message));
    }
    sim.finish()
}

impl Sim {
    fn new(seed: u64, config: &SimConfig) -> Sim {
        let mut rng = SimRng::new(seed);
        let setup = Setup::draw(seed, config, &mut rng);
        let nodes = setup
            .cores
            .iter()
            .map(|core| {
                let node = SimNode {
                    replica: None,
                    incarnation: 0,
                    disk: SimDisk::new(config.rule_checks),
                    config: core.clone(),
                    state_digest: 0,
                    saving: None,
                    installing: None,
                };
                (core.id, node)
            })
            .collect();
        let ids: Vec<NodeId> = (1..=config.nodes).collect();
        let stale_reads = config.stale_reads && super::PLANTED_BUGS;
        let clients = Clients::new(setup.workload, stale_reads, &mut rng);
        let kept_down = ids
            .iter()
            .copied()
            .take(usize::try_from(config.liveness_down).unwrap_or(usize::MAX))
            .collect();
        Sim {
            seed,
            config: config.clone(),
            network: Network::new(setup.rates),
            setup,
            rng,
            queue: EventQueue::default(),
            nodes,
            ids,
            kept_down,
            clients,
            checker: Checker::new(config.rule_checks),
            faults: FaultCounts::default(),
            steps: 0,
            phase: Phase::Chaos,
            liveness_ticks: None,
            violation: None,
            digest: RunDigest::default(),
            trace: Vec::new(),
            gone: BTreeSet::new(),
            to_replace: None,
        }
    }

    fn schedule(&mut self, delay: u64, event: SimEvent) {
        self.queue.schedule(delay, event);
    }

    fn now(&self) -> u64 {
        self.queue.now()
    }

    fn ticks(ticks: u64) -> u64 {
        ticks * SUBTICKS_PER_TICK
    }

    /// Records the first violation; the loop stops at it.
    fn fail(&mut self, (kind, detail): Finding) {
        if self.violation.is_none() {
            self.violation = Some(Violation {
                step: self.steps,
                kind,
                detail: format!("{detail} (tick {})", self.now() / SUBTICKS_PER_TICK),
            });
        }
    }

    /// Adds a line to the trace, if tracing (the line is only built then).
    fn note(&mut self, line: impl FnOnce() -> String) {
        if self.config.trace {
            let now = self.now();
            self.trace.push(format!(
                "{:>5}.{} {}",
                now / SUBTICKS_PER_TICK,
                now % SUBTICKS_PER_TICK,
                line()
            ));
        }
    }

    fn check(&mut self, result: Result<(), Finding>) {
        if let Err(found) = result {
            self.fail(found);
        }
    }

    fn run(&mut self) {
        let setup = format!("{:?}", self.setup);
        self.note(|| format!("setup {setup}"));
        for id in self.ids.clone() {
            self.start_node(id);
            let phase = self.rng.range(0, SUBTICKS_PER_TICK);
            self.schedule(phase, SimEvent::Tick(id));
        }
        self.schedule_client_wakeups();
        let first = self.setup.nemesis.next_delay(&mut self.rng);
        self.schedule(first, SimEvent::Nemesis);
        self.schedule(Self::ticks(self.config.chaos_ticks), SimEvent::Liveness);
        while self.violation.is_none() && self.phase != Phase::Done {
            let Some(event) = self.queue.pop() else {
                break;
            };
            self.handle(event);
            self.schedule_client_wakeups();
            if let (Phase::Liveness { since }, Some(_)) = (self.phase, self.clients.probe_done()) {
                self.liveness_ticks = Some((self.now() - since) / SUBTICKS_PER_TICK);
                self.phase = Phase::Done;
            }
        }
    }

    fn handle(&mut self, event: SimEvent) {
        match event {
            SimEvent::Tick(id) => {
                self.schedule(SUBTICKS_PER_TICK, SimEvent::Tick(id));
                if self.is_up(id) {
                    self.step(id, Stimulus::Input(Input::Tick));
                }
            }
            SimEvent::Deliver { from, to, msg } => {
                if self.network.allows(from, to) && self.is_up(to) {
                    let result = self.checker.on_ack_counted(from, to, &msg);
                    self.check(result);
                    self.step(to, Stimulus::Input(Input::Peer { from, msg }));
                } else {
                    self.faults.cut += 1;
                    self.note(|| format!("n{from} -> n{to} cut: {}", trace::message(&msg)));
                }
            }
            SimEvent::ToReplica { node, source, wire } => {
                if self.is_up(node) {
                    let input = Input::Client {
                        source,
                        wire: *wire,
                    };
                    self.step(node, Stimulus::Input(input));
                }
            }
            SimEvent::ToClient { client, response } => {
                if let Err(detail) = self.clients.on_response(client, *response, &mut self.rng) {
                    self.fail((ViolationKind::ClientAnswer, detail));
                }
            }
            SimEvent::PersistDone {
                node,
                incarnation,
                id,
            } => self.persist_done(node, incarnation, id),
            SimEvent::Client { client, token } => {
                let up = self.up_nodes();
                if let Some(outgoing) = self.clients.on_timer(client, token, &up, &mut self.rng) {
                    self.send_request(outgoing);
                }
            }
            SimEvent::SaveDone { node, incarnation } => self.save_done(node, incarnation),
            SimEvent::InstallDone { node, incarnation } => self.install_done(node, incarnation),
            SimEvent::Nemesis => self.nemesis(),
            SimEvent::Restart(id) => {
                // Nodes kept down for the liveness phase stay down once it has begun.
                let kept_down = self.phase != Phase::Chaos && self.kept_down.contains(&id);
                if !self.is_up(id) && !kept_down {
                    self.restart_unless_gated(id);
                }
            }
            SimEvent::Liveness => self.start_liveness(),
            SimEvent::Deadline => {
                if self.clients.probe_done().is_none() {
                    let window = LIVENESS_ELECTION_TIMEOUTS * self.max_election_ticks();
                    self.fail((
                        ViolationKind::Liveness,
                        format!(
                            "no client write committed within {window} ticks of healing every \
                             link and restarting every node"
                        ),
                    ));
                }
            }
        }
    }

    /// A client's request goes into the network (clients are never partitioned off; their
    /// datagrams are lost, duplicated and delayed like any other).
    fn send_request(&mut self, outgoing: Outgoing) {
        let Outgoing { node, source, wire } = outgoing;
        let delays = self.network.fate(&mut self.rng, &mut self.faults);
        for delay in delays {
            let wire = Box::new(wire.clone());
            self.schedule(delay, SimEvent::ToReplica { node, source, wire });
        }
    }

    fn is_up(&self, id: NodeId) -> bool {
        self.nodes
            .get(&id)
            .is_some_and(|node| node.replica.is_some())
    }

    fn up_nodes(&self) -> Vec<NodeId> {
        self.ids
            .iter()
            .copied()
            .filter(|&id| self.is_up(id))
            .collect()
    }

    fn max_election_ticks(&self) -> u64 {
        let node = self.nodes.values().next().expect("a cluster has nodes");
        u64::from(node.config.election_ticks.1)
    }

    fn schedule_client_wakeups(&mut self) {
        for (delay, client, token) in self.clients.take_wakeups() {
            self.schedule(delay, SimEvent::Client { client, token });
        }
    }

    /// Gives node `id`'s replica `stimulus`, carries out every effect it emits, and runs the
    /// checks.
    fn step(&mut self, id: NodeId, stimulus: Stimulus) {
        self.steps += 1;
        let described = self.config.trace.then(|| trace::stimulus(&stimulus));
        let installed = match &stimulus {
            Stimulus::Input(Input::Storage(StorageDone::SnapshotInstalled { index, .. })) => {
                Some(*index)
            }
            _ => None,
        };
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        let replica = node.replica.as_mut().expect("only live nodes are stepped");
        let before = membership::Before::of(replica.raft());
        // The rule of `ticks_until_due`, checked at every tick of a quiet replica (every turn
        // drains the effects; only a restarted one has some before its first input).
        let due = (matches!(stimulus, Stimulus::Input(Input::Tick)) && replica.is_quiet())
            .then(|| replica.ticks_until_due());
        // The installed snapshot's state, as restored (before anything after it is applied).
        let mut restored: Option<(u64, u64)> = None;
        let mut outcome: Result<(), Finding> = Ok(());
        match stimulus {
            Stimulus::Input(input) => {
                if let Err(error) = replica.step(input) {
                    outcome = Err((ViolationKind::Snapshot, format!("node {id}: {error}")));
                } else if let Some(index) = installed {
                    restored = Some((index, replica.state_machine().state_digest()));
                }
            }
            Stimulus::Transfer { to } => {
                // Refused unless it leads; the nemesis asks leaders only, but one may have
                // stepped down in this very tick.
                let _ = replica.transfer_leader(to);
            }
            Stimulus::Change { steps } => replica.change_membership(steps, ()),
        }
        let mut effects: Vec<Effect<()>> = std::iter::from_fn(|| replica.poll_effect()).collect();
        // A save's state is serialised by the storage (the runtime's WAL thread); here at once,
        // before the replica applies anything more, so the trace and the digest see its bytes.
        for effect in &mut effects {
            if let Effect::Storage(StorageOp::SaveSnapshot { data, .. }) = effect {
                data.resolve();
            }
        }
        if let Some(due) = due.filter(|&due| due != Some(1)) {
            let now = replica.ticks_until_due();
            if !effects.is_empty() || now != due.map(|n| n - 1) {
                outcome = Err((
                    ViolationKind::SleepUnsafe,
                    format!(
                        "node {id}: a tick with {due:?} ticks until due left {now:?} and \
                         emitted [{}]",
                        effects
                            .iter()
                            .map(trace::effect)
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                ));
            }
        }
        let applied: VecDeque<AppliedCommand> = replica.state_machine_mut().take_applied().into();
        if let Some(described) = described {
            let status = replica.raft().status();
            let mut line = format!(
                "n{id} {described} => {:?} t{} v{} commit {} last {} stable {}",
                status.role,
                status.term,
                status.vote,
                status.commit_index,
                status.last_index,
                status.stable_index
            );
            for effect in &effects {
                line.push_str("\n          ");
                line.push_str(&trace::effect(effect));
            }
            self.note(|| line);
        }
        // An install rewrites the log itself, durably (the runtime's own write).
        let mut persisted_from: Option<u64> = installed.map(|_| 1);
        for effect in &effects {
            self.digest.effect(id, effect);
            if let Effect::Storage(StorageOp::Persist(persist)) = effect {
                let from = persist
                    .truncate_from
                    .into_iter()
                    .chain(persist.entries.first().map(|entry| entry.index))
                    .min();
                persisted_from = match (persisted_from, from) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        let node = &self.nodes[&id];
        let raft = node.replica.as_ref().expect("still up").raft();
        let disks: Vec<(NodeId, &SimDisk)> = self
            .nodes
            .iter()
            .map(|(&node_id, node)| (node_id, &node.disk))
            .collect();
        let counting = before.counting();
        let result = self
            .checker
            .after_step(id, raft, persisted_from, &disks, counting)
            .and_then(|()| {
                membership::after_step(&before, raft, persisted_from, self.config.rule_checks)
            });
        self.check(result);
        self.check(outcome);
        if let Some((index, digest)) = restored {
            let result = self.checker.on_install(id, index, digest);
            self.check(result);
            self.nodes
                .get_mut(&id)
                .expect("a node of the cluster")
                .state_digest = digest;
        }
        // The messages riding on this step's persists were made in it, from the log just
        // checked: what they claim is recorded now, whenever they leave.
        for effect in &effects {
            if let Effect::Storage(StorageOp::Persist(persist)) = effect {
                for (to, msg) in &persist.then_send {
                    let result = self.checker.on_ack_made(id, *to, msg);
                    self.check(result);
                }
            }
        }
        let mut applied = applied;
        let mut storage = Vec::new();
        for effect in effects {
            if self.violation.is_some() {
                return;
            }
            match effect {
                Effect::Send { to, msg } => self.send(id, to, msg),
                Effect::Answer { to, wire } => self.answer(id, to, wire),
                // The nemesis's membership changes: their outcome shows in the configurations.
                Effect::Reply { .. } => {}
                Effect::Applied { entries } => self.on_applied(id, &entries, &mut applied),
                Effect::Storage(op) => storage.push(op),
            }
        }
        for stage in stages(storage) {
            if self.violation.is_some() {
                return;
            }
            match stage {
                Stage::Write(persist) => self.submit_persist(id, persist),
                // Each persist completes on its own schedule (`submit_persist`).
                Stage::Sync => {}
                Stage::Other(op) => {
                    let node = self.nodes.get_mut(&id).expect("a node of the cluster");
                    if let Some(op) = node.disk.submit_other(op) {
                        self.run_storage_op(id, op);
                    }
                }
            }
        }
        let removed = self.nodes[&id]
            .replica
            .as_ref()
            .is_some_and(|replica| replica.raft().is_removed());
        if removed && self.violation.is_none() {
            // As `serve` does: a node a committed configuration removed stops for good.
            self.note(|| format!("n{id} was removed: it stops"));
            self.crash(id);
            self.gone.insert(id);
        }
    }

    /// Node `id` applied `entries`; `applied` holds the commands among them (and maybe later
    /// ones of the same step), as the observed store recorded them.
    fn on_applied(
        &mut self,
        id: NodeId,
        entries: &[crate::raft::Entry],
        applied: &mut VecDeque<AppliedCommand>,
    ) {
        let result = self.checker.on_apply(id, entries);
        self.check(result);
        for entry in entries {
            if self.violation.is_some() {
                return;
            }
            let command = applied
                .front()
                .is_some_and(|command| command.index == entry.index)
                .then(|| applied.pop_front())
                .flatten();
            let node = self.nodes.get_mut(&id).expect("a node of the cluster");
            if let Some(command) = &command {
                node.state_digest = command.state_after;
            }
            let digest = node.state_digest;
            if let Some(command) = command {
                let result = self.checker.on_command(id, &command);
                self.check(result);
            }
            let result = self.checker.on_state(id, entry.index, digest);
            self.check(result);
        }
    }

    /// A replica's answers go to the client at `to`, as one datagram.
    fn answer(&mut self, id: NodeId, to: SocketAddr, wire: Wire) {
        let Some(client) = clients::client_index(to) else {
            self.fail((
                ViolationKind::ClientAnswer,
                format!("a replica answered {to}, which is no client"),
            ));
            return;
        };
        let responses = match wire {
            Wire::Response(response) => vec![response],
            Wire::Responses(responses) => responses,
            other => {
                self.fail((
                    ViolationKind::ClientAnswer,
                    format!("a replica answered a client with {other:?}"),
                ));
                return;
            }
        };
        // A node that turns a client away never sends it back to itself.
        let own = clients::replica_address(id);
        let names_itself = responses.iter().find(|response| {
            matches!(
                response.body,
                ResponseBody::NotLeader { leader, address }
                    if leader == Some(id) || address == Some(own)
            )
        });
        if let Some(response) = names_itself {
            self.fail((
                ViolationKind::ClientAnswer,
                format!("node {id} refused a client naming itself as the leader: {response:?}"),
            ));
            return;
        }
        for delay in self.network.fate(&mut self.rng, &mut self.faults) {
            for response in &responses {
                let response = Box::new(response.clone());
                self.schedule(delay, SimEvent::ToClient { client, response });
            }
        }
    }

    /// Queues node `id`'s persist on its disk, to complete after a random delay.
    fn submit_persist(&mut self, id: NodeId, persist: crate::raft::Persist) {
        let late = self.phase == Phase::Chaos && self.rng.chance(self.setup.late_persist_per_mille);
        let delay = if late {
            self.faults.late_persists += 1;
            self.rng
                .range(LATE_PERSIST_DELAY.0, LATE_PERSIST_DELAY.1 + 1)
        } else {
            self.rng.range(PERSIST_DELAY.0, PERSIST_DELAY.1 + 1)
        };
        let persist_id = persist.id;
        let now = self.now();
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        let done = node.disk.submit(persist, now + delay);
        let incarnation = node.incarnation;
        self.schedule(
            done - now,
            SimEvent::PersistDone {
                node: id,
                incarnation,
                id: persist_id,
            },
        );
    }

    /// Carries out storage work of node `id` other than a persist, now that every persist
    /// queued before it is written.
    fn run_storage_op(&mut self, id: NodeId, op: StorageOp) {
        match op {
            StorageOp::Persist(_) => unreachable!("persists go through submit_persist"),
            StorageOp::Compact { upto } => {
                let node = self.nodes.get_mut(&id).expect("a node of the cluster");
                node.disk.compact(upto);
            }
            StorageOp::SnapshotChunk { offset, data, .. } => {
                let node = self.nodes.get_mut(&id).expect("a node of the cluster");
                if !node.disk.write_chunk(offset, &data) {
                    self.fail((
                        ViolationKind::Snapshot,
                        format!("node {id} was told to write a chunk at {offset} out of order"),
                    ));
                }
            }
            StorageOp::SaveSnapshot { index, term, data } => {
                self.start_save(id, index, term, data.into_bytes());
            }
            StorageOp::InstallSnapshot {
                meta, size, crc, ..
            } => self.start_install(id, meta.index, meta.term, size, crc),
        }
    }

    /// Node `id` hands `msg` to the network for `to` (an `Effect::Send`, or a `then_send` of a
    /// persist that just became durable), after the check that what it promises is durable.
    fn send(&mut self, id: NodeId, to: NodeId, msg: Message) {
        let node = &self.nodes[&id];
        let term = node
            .replica
            .as_ref()
            .map_or(0, |replica| replica.raft().status().term);
        let result = self.checker.check_send(id, term, &node.disk, to, &msg);
        self.check(result);
        let delays = self.network.fate(&mut self.rng, &mut self.faults);
        if delays.is_empty() {
            self.note(|| format!("n{id} -> n{to} lost: {}", trace::message(&msg)));
        }
        for delay in delays {
            let msg = msg.clone();
            self.schedule(delay, SimEvent::Deliver { from: id, to, msg });
        }
    }

    /// Persist `id` of node `node`'s incarnation `incarnation` finished (maybe with the ones
    /// queued behind it, as a group commit): the messages riding on what was written leave
    /// now, as the WAL thread sends them right after its sync, then the replica hears of it,
    /// then the storage work that waited for it runs.
    fn persist_done(&mut self, id: NodeId, incarnation: u64, persist_id: PersistId) {
        let group = self.rng.chance(GROUP_COMMIT_PER_MILLE);
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        if node.incarnation != incarnation || node.replica.is_none() {
            return; // the persist died with its incarnation
        }
        let upto = match node.disk.newest_pending() {
            Some(newest) if group => newest.max(persist_id),
            _ => persist_id,
        };
        match node.disk.complete_upto(upto) {
            Ok(Some(DiskCompletion {
                upto,
                then_send,
                released,
            })) => {
                for (to, msg) in then_send {
                    if self.violation.is_some() {
                        return;
                    }
                    self.send(id, to, msg);
                }
                if self.violation.is_none() {
                    self.step(
                        id,
                        Stimulus::Input(Input::Storage(StorageDone::Persisted { upto })),
                    );
                }
                for op in released {
                    if self.violation.is_some() || !self.is_up(id) {
                        return;
                    }
                    self.run_storage_op(id, op);
                }
            }
            Ok(None) => {} // already written by a group commit
            Err(found) => self.fail(found),
        }
    }

    /// Node `id` starts saving its snapshot at (`index`, `term`); it is durable a moment later.
    fn start_save(&mut self, id: NodeId, index: u64, term: u64, data: Arc<Vec<u8>>) {
        let Some((chain, committed_term)) = self.checker.committed_at(index) else {
            self.fail((
                ViolationKind::Snapshot,
                format!("node {id} saves a snapshot at {index}, which is not known committed"),
            ));
            return;
        };
        if committed_term != term {
            self.fail((
                ViolationKind::Snapshot,
                format!(
                    "node {id} saves a snapshot at ({index}, term {term}), but the committed \
                     entry there has term {committed_term}"
                ),
            ));
            return;
        }
        let delay = self.rng.range(SAVE_DELAY.0, SAVE_DELAY.1 + 1);
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        assert!(
            node.saving.is_none(),
            "the replica saves one snapshot at a time"
        );
        node.saving = Some(SnapshotFile {
            index,
            term,
            chain,
            data,
        });
        let incarnation = node.incarnation;
        self.schedule(
            delay,
            SimEvent::SaveDone {
                node: id,
                incarnation,
            },
        );
    }

    /// Node `id`'s save is durable: its bytes must restore to the state every node had at its
    /// index; then the replica hears of it.
    fn save_done(&mut self, id: NodeId, incarnation: u64) {
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        if node.incarnation != incarnation || node.replica.is_none() {
            return;
        }
        let Some(file) = node.saving.take() else {
            return;
        };
        let mut check = ObservedStore::new(false);
        if let Err(error) = crate::replica::restore_from_snapshot(&mut check, &file.data) {
            self.fail((
                ViolationKind::Snapshot,
                format!(
                    "node {id}'s snapshot {} does not restore: {error}",
                    file.index
                ),
            ));
            return;
        }
        let (index, data) = (file.index, Arc::clone(&file.data));
        node.disk.save_snapshot(file);
        let result = self.checker.on_state(id, index, check.state_digest());
        self.check(result);
        self.faults.snapshots += 1;
        if self.violation.is_none() {
            let saved = StorageDone::SnapshotSaved { index, data };
            self.step(id, Stimulus::Input(Input::Storage(saved)));
        }
    }

    /// Node `id`'s core received every chunk of a snapshot: check the temporary file, then
    /// install it a moment later (every persist queued before it is written by now).
    fn start_install(&mut self, id: NodeId, index: u64, term: u64, size: u64, crc: u32) {
        let delay = self.rng.range(INSTALL_DELAY.0, INSTALL_DELAY.1 + 1);
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        let Some(data) = node.disk.received(size, crc) else {
            self.fail((
                ViolationKind::Snapshot,
                format!("node {id} installs snapshot {index}, but its file is not whole"),
            ));
            return;
        };
        node.installing = Some((index, term, Arc::new(data)));
        let incarnation = node.incarnation;
        self.schedule(
            delay,
            SimEvent::InstallDone {
                node: id,
                incarnation,
            },
        );
    }

    /// Carries out node `id`'s install on its disk, if it is still pending; returns what was
    /// installed.
    fn install_on_disk(&mut self, id: NodeId) -> Option<Result<Installed, Finding>> {
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        let (index, term, data) = node.installing.take()?;
        let Some((chain, committed_term)) = self.checker.committed_at(index) else {
            return Some(Err((
                ViolationKind::Snapshot,
                format!("node {id} installs snapshot {index}, which is not known committed"),
            )));
        };
        if committed_term != term {
            return Some(Err((
                ViolationKind::Snapshot,
                format!(
                    "node {id} installs a snapshot at ({index}, term {term}), but the committed \
                     entry there has term {committed_term}"
                ),
            )));
        }
        node.disk.install(SnapshotFile {
            index,
            term,
            chain,
            data: Arc::clone(&data),
        });
        self.faults.installs += 1;
        Some(Ok((index, term, data)))
    }

    /// The install of node `id` reached its disk: the replica restores its state machine and
    /// tells its core.
    fn install_done(&mut self, id: NodeId, incarnation: u64) {
        let node = &self.nodes[&id];
        if node.incarnation != incarnation || node.replica.is_none() {
            return;
        }
        match self.install_on_disk(id) {
            None => {}
            Some(Err(found)) => self.fail(found),
            Some(Ok((index, term, data))) => {
                let installed = StorageDone::SnapshotInstalled { index, term, data };
                self.step(id, Stimulus::Input(Input::Storage(installed)));
            }
        }
    }

    /// Starts (or restarts) node `id` from its disk.
    fn start_node(&mut self, id: NodeId) {
        let seed = self.rng.next_u64();
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        node.incarnation += 1;
        node.saving = None;
        node.installing = None;
        node.disk.recover();
        let mut store = ObservedStore::new(self.config.ignore_sessions);
        if let Some(file) = node.disk.snapshot_file()
            && let Err(error) = crate::replica::restore_from_snapshot(&mut store, &file.data)
        {
            self.fail((
                ViolationKind::Snapshot,
                format!("node {id}'s durable snapshot does not restore: {error}"),
            ));
            return;
        }
        let mut config = node.config.clone();
        config.seed = seed;
        let restored: Restored = node.disk.restored();
        let snapshot_base = restored.snapshot;
        // The configuration is validated once for all nodes by construction (the defaults with
        // valid sizes), so this only fails on a broken simulator.
        let raft = Raft::new(config, restored).expect("the simulator builds valid configs");
        let result = self.checker.on_start(id, &raft, &node.disk);
        node.state_digest = store.state_digest();
        // Every `snapshot_every` entries, whatever the state's size: the simulator's states are
        // larger than its few entries between snapshots, and an expansion factor would take
        // most of its snapshots away (`SnapshotPolicy::is_due` has its own tests).
        let policy = SnapshotPolicy {
            entries: self.setup.snapshot_every.unwrap_or(u64::MAX),
            bytes: u64::MAX,
            expansion: 0,
        };
        let members = self
            .ids
            .iter()
            .map(|&member| (member, clients::replica_address(member)))
            .collect();
        let counters = Arc::new(Counters::default());
        node.replica = Some(
            Replica::new(raft, store, counters, members, snapshot_base, policy)
                // Drawn from the incarnation's seed, not from the run's generator, so that every other
                // choice of a seed's run stays as it was.
                .with_first_tag(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29)),
        );
        let incarnation = node.incarnation;
        if incarnation > 1 {
            self.faults.restarts += 1;
        }
        self.note(|| format!("n{id} starts (incarnation {incarnation})"));
        self.check(result);
    }

    /// Crashes node `id`: its core and state machine go, its pending persists are lost but for
    /// a random prefix that made it to the disk unacknowledged.
    fn crash(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        node.replica = None;
        node.saving = None;
        let mut survivors = 0;
        while survivors < node.disk.pending_len() && self.rng.chance(UNACKED_SURVIVES_PER_MILLE) {
            survivors += 1;
        }
        let all_written = survivors == node.disk.pending_len();
        let result = node.disk.crash(survivors).map(|kept| {
            self.faults.unacked_persists_kept += kept as u64;
        });
        // An install under way when the node died may have reached the disk, if everything
        // queued before it did; either way it is whole or absent.
        let installing = node.installing.is_some();
        if installing
            && all_written
            && self.rng.chance(INSTALL_SURVIVES_PER_MILLE)
            && let Some(Err(found)) = self.install_on_disk(id)
        {
            self.fail(found);
        }
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        node.installing = None;
        self.faults.crashes += 1;
        self.note(|| format!("n{id} crashes ({survivors} unacknowledged persists kept)"));
        self.checker.on_crash(id);
        self.check(result);
    }

    /// The leader of the highest term among the live nodes, if any.
    fn leader(&self) -> Option<NodeId> {
        self.up_nodes()
            .into_iter()
            .filter_map(|id| {
                let status = self.nodes[&id].replica.as_ref()?.raft().status();
                (status.role == Role::Leader).then_some((status.term, id))
            })
            .max()
            .map(|(_, id)| id)
    }

    /// The node a partition or crash aims at: the leader half the time (bugs hide where a
    /// leader is cut off right after it appended), else nobody in particular.
    fn aim(&mut self) -> Option<NodeId> {
        let leader = self.leader()?;
        self.rng.chance(AIM_AT_LEADER_PER_MILLE).then_some(leader)
    }

    /// The nemesis acts (see `nemesis.rs`), then re-arms.
    fn nemesis(&mut self) {
        if self.phase != Phase::Chaos {
            return;
        }
        match self.setup.nemesis.act(&mut self.rng) {
            Act::Partition(shape) => {
                let focus = self.aim();
                self.network
                    .partition(shape, &self.ids, focus, &mut self.rng);
                self.faults.partitions += 1;
                let cut = self.network.describe_cut();
                self.note(|| format!("partition {shape:?}: cut {cut}"));
            }
            Act::Heal => {
                if self.network.is_partitioned() {
                    self.network.heal();
                    self.faults.heals += 1;
                    self.note(|| "heal".to_owned());
                }
            }
            Act::Crash { downtime } => {
                let up = self.up_nodes();
                if !up.is_empty() {
                    let victim = match self.aim() {
                        Some(leader) => leader,
                        None => self.rng.pick(&up),
                    };
                    self.crash(victim);
                    self.schedule(downtime, SimEvent::Restart(victim));
                }
            }
            Act::Transfer => {
                if let Some(leader) = self.leader() {
                    let to = self.rng.pick(&self.ids);
                    self.faults.transfers += 1;
                    self.step(leader, Stimulus::Transfer { to });
                }
            }
            Act::Wipe { .. } => self.lose_a_node(),
            Act::Idle => {}
        }
        if let Some(per_mille) = self.setup.membership_per_mille
            && self.rng.chance(per_mille)
        {
            self.change_membership();
        }
        let next = self.setup.nemesis.next_delay(&mut self.rng);
        self.schedule(next, SimEvent::Nemesis);
    }

    /// Starts node `id` again, unless it is gone for good.
    fn restart_unless_gated(&mut self, id: NodeId) {
        if !self.gone.contains(&id) {
            self.start_node(id);
        }
    }

    /// A node loses its disk for good. Raft cannot take a node back that forgot its votes and
    /// acknowledgements, so, as an operator does with `balsa members replace`, the cluster
    /// replaces it with a fresh node under a new id (only with the membership nemesis; otherwise
    /// nothing happens). At most one lost node at a time, and only from a configuration of
    /// three voters or more, so a quorum stays.
    fn lose_a_node(&mut self) {
        if self.setup.membership_per_mille.is_none() || self.to_replace.is_some() {
            return;
        }
        let Some(leader) = self.leader() else {
            return;
        };
        let Some(membership) = self.membership_of(leader) else {
            return;
        };
        let voters: Vec<NodeId> = membership.incoming().collect();
        if voters.len() < 3 || membership.is_joint() {
            return;
        }
        let candidates: Vec<NodeId> = voters.into_iter().filter(|&id| id != leader).collect();
        let victim = self.rng.pick(&candidates);
        if self.is_up(victim) {
            self.crash(victim);
        }
        self.gone.insert(victim);
        self.to_replace = Some(victim);
        self.faults.wipes += 1;
        self.note(|| format!("n{victim}'s disk is lost: it will be replaced"));
        self.change_membership();
    }

    /// The configuration node `id` has in force, if it is up and knows one.
    fn membership_of(&self, id: NodeId) -> Option<Membership> {
        let replica = self.nodes[&id].replica.as_ref()?;
        replica.raft().membership().cloned()
    }

    /// A fresh node, empty and joining, under an id never used: it starts and waits to be
    /// added. `None` once the run has used its ids (the cluster grows to 7 members at most).
    fn new_node(&mut self) -> Option<NodeId> {
        let id = self.ids.iter().max().copied().unwrap_or(0) + 1;
        if self.ids.len() >= MAX_IDS_PER_RUN {
            return None;
        }
        let template = self.setup.cores.first().expect("a cluster has nodes");
        let mut config = template.clone();
        config.id = id;
        config.voters = Vec::new();
        config.joining = true;
        let node = SimNode {
            replica: None,
            incarnation: 0,
            disk: SimDisk::new(self.config.rule_checks),
            config,
            state_digest: 0,
            saving: None,
            installing: None,
        };
        self.nodes.insert(id, node);
        self.ids.push(id);
        self.start_node(id);
        let phase = self.rng.range(0, SUBTICKS_PER_TICK);
        self.schedule(phase, SimEvent::Tick(id));
        Some(id)
    }

    /// The membership nemesis: asks the leader for one change — replace the lost node, add a
    /// voter or a learner, promote a learner, remove a member (the leader too), or two at once.
    /// Refusals (a change in progress, a learner too slow) are part of the run.
    fn change_membership(&mut self) {
        let Some(leader) = self.leader() else {
            return;
        };
        let Some(membership) = self.membership_of(leader) else {
            return;
        };
        let members: Vec<NodeId> = membership.members().collect();
        let voters: Vec<NodeId> = membership.incoming().collect();
        let learners: Vec<NodeId> = membership.learners().collect();
        let address = |id: NodeId| clients::replica_address(id).to_string().into_bytes();
        let steps = if let Some(lost) = self.to_replace {
            if !membership.is_member(lost) {
                self.to_replace = None;
                return;
            }
            let Some(new) = self.spare(&membership).or_else(|| self.new_node()) else {
                return;
            };
            vec![
                Step::AddVoter {
                    id: new,
                    address: address(new),
                },
                Step::Remove { id: lost },
            ]
        } else {
            match self.rng.range(0, 6) {
                0 | 1 if members.len() < MAX_MEMBERS => {
                    let Some(new) = self.spare(&membership).or_else(|| self.new_node()) else {
                        return;
                    };
                    if self.rng.chance(300) {
                        vec![Step::AddLearner {
                            id: new,
                            address: address(new),
                        }]
                    } else {
                        vec![Step::AddVoter {
                            id: new,
                            address: address(new),
                        }]
                    }
                }
                2 if !learners.is_empty() => vec![Step::Promote {
                    id: self.rng.pick(&learners),
                }],
                3 if members.len() > 1 => {
                    let id = self.rng.pick(&members);
                    if voters.len() == 1 && voters[0] == id {
                        return;
                    }
                    vec![Step::Remove { id }]
                }
                4 if voters.len() > 3 => {
                    let first = self.rng.pick(&voters);
                    let others: Vec<NodeId> =
                        voters.iter().copied().filter(|&v| v != first).collect();
                    let second = self.rng.pick(&others);
                    vec![Step::Remove { id: first }, Step::Remove { id: second }]
                }
                5 if members.len() + 2 <= MAX_MEMBERS => {
                    let mut steps = Vec::new();
                    for _ in 0..2 {
                        let Some(new) = self.new_node() else {
                            return;
                        };
                        steps.push(Step::AddVoter {
                            id: new,
                            address: address(new),
                        });
                    }
                    steps
                }
                _ => return,
            }
        };
        self.faults.membership_changes += 1;
        self.note(|| format!("membership change asked of n{leader}: {steps:?}"));
        self.step(leader, Stimulus::Change { steps });
    }

    /// A node that is up, joining and no member yet (made by an earlier change that failed),
    /// to add before making another.
    fn spare(&self, membership: &Membership) -> Option<NodeId> {
        self.ids.iter().copied().find(|&id| {
            !self.gone.contains(&id)
                && !membership.is_member(id)
                && !membership.is_retired(id)
                && self.nodes[&id].config.joining
                && self.is_up(id)
        })
    }

    /// The chaos is over: heal every link, stop losing messages, delaying them long and
    /// completing persists late, restart every crashed node (but those kept down), and send the
    /// probe write. Raft promises progress only once the network and the disks behave (its
    /// broadcast time well under the election timeout), so the liveness window starts here.
    fn start_liveness(&mut self) {
        self.phase = Phase::Liveness { since: self.now() };
        self.network.quiet();
        self.note(|| "liveness phase: heal, restart, probe".to_owned());
        if self.network.is_partitioned() {
            self.network.heal();
            self.faults.heals += 1;
        }
        for id in self.ids.clone() {
            let keep_down = self.kept_down.contains(&id);
            match (self.is_up(id), keep_down) {
                (true, true) => self.crash(id),
                (false, false) => self.restart_unless_gated(id),
                _ => {}
            }
        }
        let up = self.up_nodes();
        if let Some(outgoing) = self.clients.start_probe(&up, &mut self.rng) {
            self.send_request(outgoing);
        }
        let window = LIVENESS_ELECTION_TIMEOUTS * self.max_election_ticks();
        self.schedule(Self::ticks(window), SimEvent::Deadline);
    }

    /// The report; checks the history for linearizability if nothing failed before.
    fn finish(mut self) -> Report {
        let history = self.clients.history();
        let mut verdict = Linearizability::NotChecked;
        if self.violation.is_none() {
            verdict = match linearizability::check(&history) {
                Ok(()) => Linearizability::Ok,
                // The checker's documented prefix for "budget exhausted, nothing known".
                Err(message) if message.starts_with("inconclusive") => {
                    Linearizability::Inconclusive(message)
                }
                Err(message) => {
                    self.fail((ViolationKind::Linearizability, message));
                    Linearizability::Violated
                }
            };
        }
        Report {
            seed: self.seed,
            nodes: self.config.nodes,
            steps: self.steps,
            ticks: self.now() / SUBTICKS_PER_TICK,
            faults: self.faults,
            committed_writes: self.clients.committed_writes,
            reads: self.clients.reads,
            history_len: history.len(),
            liveness_ticks: self.liveness_ticks,
            linearizability: verdict,
            violations: self.violation.into_iter().collect(),
            digest: self.digest.finish(),
            trace: self.trace,
        }
    }
}
