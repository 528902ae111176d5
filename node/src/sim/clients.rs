//! The simulated clients and the history they record for the linearizability checker.
//!
//! Each client has at most one operation outstanding:
//!
//! - **write** `key = value` (values unique across the run): proposed at a random live node as a
//!   [`Command`] carrying `(client, seq, key, value)`. Accepted or forwarded, it waits; refused
//!   (no leader, transfer under way), it retries soon; unanswered, it retries at another node
//!   after a while, with the same `(client, seq)`, so the session table applies it at most once.
//!   It returns when the first node applies it with effect, which is after it committed. A write
//!   still unanswered at the end of the run stays in the history with no return: it may or may
//!   not have taken effect.
//! - **read** `key`: a ReadIndex at a random live node. Once the node reports the read index,
//!   the read is served from that node's state machine as soon as it has applied that index.
//!   A refused, lost or timed-out read is dropped from the history: a read has no effect, so an
//!   unanswered one constrains nothing.
//!
//! History times come from a counter bumped at every invocation and every return, in the order
//! things happen in the simulation, so real-time order is kept and `call < ret` always holds.
//!
//! The liveness phase adds a *probe* client that issues one write and nothing else.

use super::kv::{Command, Kv};
use super::linearizability::{Event, Op, Ret};
use super::network::SUBTICKS_PER_TICK;
use super::rng::SimRng;
use crate::raft::{Input, NodeId, ProposalOutcome};

/// An unanswered write is proposed again after this long (longer than an election).
const WRITE_RETRY: u64 = 40 * SUBTICKS_PER_TICK;
/// A refused write is proposed again after this long.
const REFUSED_RETRY: (u64, u64) = (2 * SUBTICKS_PER_TICK, 8 * SUBTICKS_PER_TICK);
/// An unanswered read is given up after this long.
const READ_TIMEOUT: u64 = 40 * SUBTICKS_PER_TICK;
/// A client idles this long between operations.
const THINK: (u64, u64) = (0, 3 * SUBTICKS_PER_TICK);
/// When no node is up, a client looks again after this long.
const NOBODY_UP_RETRY: u64 = 5 * SUBTICKS_PER_TICK;

/// The operation a client has outstanding.
#[derive(Clone, Copy, Debug)]
struct Outstanding {
    /// Its sequence number.
    seq: u64,
    /// Where it sits in the history.
    slot: usize,
    op: Op,
}

#[derive(Clone, Debug)]
struct Client {
    /// Its id, in the history and in commands.
    id: u64,
    /// The sequence number of its newest operation.
    seq: u64,
    outstanding: Option<Outstanding>,
    /// Only the newest timer counts; older ones are stale.
    timer: u64,
    /// The liveness probe: one write, then nothing.
    probe: bool,
}

/// A read whose index is known, waiting for its node to apply that far.
#[derive(Clone, Copy, Debug)]
struct ReadyRead {
    node: NodeId,
    index: u64,
    client: usize,
    seq: u64,
}

/// Workload parameters of a run.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// Clients (besides the probe).
    pub clients: usize,
    /// Keys, numbered from 0.
    pub keys: u64,
    /// Share of operations that are writes, per mille.
    pub writes_per_mille: u64,
}

/// Every client, the history, and what the driver must schedule.
#[derive(Debug)]
pub struct Clients {
    workload: Workload,
    clients: Vec<Client>,
    /// Operations in invocation order; `None` where a read was dropped.
    history: Vec<Option<Event>>,
    /// The history's logical clock.
    clock: u64,
    next_value: u64,
    ready: Vec<ReadyRead>,
    /// Timers to schedule: (time, client, token).
    wakeups: Vec<(u64, usize, u64)>,
    /// Writes known committed.
    pub committed_writes: u64,
    /// Reads answered.
    pub reads: u64,
    /// When the probe's write committed.
    probe_done: Option<u64>,
}

impl Clients {
    /// `workload.clients` idle clients, each due to start at a random time soon.
    pub fn new(workload: Workload, rng: &mut SimRng) -> Clients {
        let mut clients = Clients {
            workload,
            clients: Vec::new(),
            history: Vec::new(),
            clock: 0,
            next_value: 1,
            ready: Vec::new(),
            wakeups: Vec::new(),
            committed_writes: 0,
            reads: 0,
            probe_done: None,
        };
        for index in 0..workload.clients {
            clients.add(false);
            clients.rearm(index, rng.range(THINK.0, THINK.1 + 1));
        }
        clients
    }

    fn add(&mut self, probe: bool) -> usize {
        let index = self.clients.len();
        self.clients.push(Client {
            id: index as u64 + 1,
            seq: 0,
            outstanding: None,
            timer: 0,
            probe,
        });
        index
    }

    /// Timers the driver must schedule, as (delay from now, client, token).
    pub fn take_wakeups(&mut self) -> Vec<(u64, usize, u64)> {
        std::mem::take(&mut self.wakeups)
    }

    /// Arms client `index`'s timer `delay` from now, superseding any older one.
    fn rearm(&mut self, index: usize, delay: u64) {
        let client = &mut self.clients[index];
        client.timer += 1;
        self.wakeups.push((delay, index, client.timer));
    }

    fn tick_clock(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Starts the liveness probe: a client that writes once. Returns the request to make.
    pub fn start_probe(&mut self, up: &[NodeId], rng: &mut SimRng) -> Option<(NodeId, Input)> {
        let index = self.add(true);
        self.start(index, true, up, rng)
    }

    /// When the probe's write committed, if it has.
    pub fn probe_done(&self) -> Option<u64> {
        self.probe_done
    }

    /// Client `index`'s timer `token` fired at `now`: start an operation, retry a write, or
    /// give up a read. Returns the request to hand a node, if any.
    pub fn on_timer(
        &mut self,
        index: usize,
        token: u64,
        up: &[NodeId],
        rng: &mut SimRng,
    ) -> Option<(NodeId, Input)> {
        let client = &self.clients[index];
        if client.timer != token {
            return None; // superseded
        }
        match client.outstanding {
            None if client.probe => None,
            None => {
                let write = rng.chance(self.workload.writes_per_mille);
                self.start(index, write, up, rng)
            }
            Some(outstanding) => match outstanding.op {
                Op::Write { .. } => self.propose(index, outstanding, up, rng),
                Op::Read { .. } => {
                    self.fail_read(index, rng);
                    None
                }
            },
        }
    }

    /// Invokes a new operation on client `index`.
    fn start(
        &mut self,
        index: usize,
        write: bool,
        up: &[NodeId],
        rng: &mut SimRng,
    ) -> Option<(NodeId, Input)> {
        if up.is_empty() {
            self.rearm(index, NOBODY_UP_RETRY);
            return None;
        }
        let key = rng.range(0, self.workload.keys);
        let op = if write {
            let value = self.next_value;
            self.next_value += 1;
            Op::Write { key, value }
        } else {
            Op::Read { key }
        };
        let call = self.tick_clock();
        let client = &mut self.clients[index];
        client.seq += 1;
        let outstanding = Outstanding {
            seq: client.seq,
            slot: self.history.len(),
            op,
        };
        client.outstanding = Some(outstanding);
        self.history.push(Some(Event {
            client: client.id,
            op,
            call,
            ret: None,
        }));
        match op {
            Op::Write { .. } => self.propose(index, outstanding, up, rng),
            Op::Read { .. } => {
                self.rearm(index, READ_TIMEOUT);
                let node = rng.pick(up);
                let ctx = tag(index, outstanding.seq);
                Some((node, Input::ReadIndex { ctx }))
            }
        }
    }

    /// Proposes (again) client `index`'s outstanding write at a random live node.
    fn propose(
        &mut self,
        index: usize,
        outstanding: Outstanding,
        up: &[NodeId],
        rng: &mut SimRng,
    ) -> Option<(NodeId, Input)> {
        let Op::Write { key, value } = outstanding.op else {
            return None;
        };
        if up.is_empty() {
            self.rearm(index, NOBODY_UP_RETRY);
            return None;
        }
        self.rearm(index, WRITE_RETRY);
        let command = Command {
            client: self.clients[index].id,
            seq: outstanding.seq,
            key,
            value,
        };
        let id = tag(index, outstanding.seq);
        Some((
            rng.pick(up),
            Input::Propose {
                id,
                data: command.encode(),
            },
        ))
    }

    /// The answer to a proposal tagged `id`.
    pub fn on_proposal(&mut self, id: u64, outcome: &ProposalOutcome, rng: &mut SimRng) {
        let Some(index) = self.current(id) else {
            return;
        };
        if let ProposalOutcome::Refused(_) = outcome {
            let delay = rng.range(REFUSED_RETRY.0, REFUSED_RETRY.1 + 1);
            self.rearm(index, delay);
        }
    }

    /// Node `node` applied `command` with effect: its write has committed.
    pub fn on_applied(&mut self, command: &Command, rng: &mut SimRng) {
        let Some(index) = usize::try_from(command.client)
            .ok()
            .and_then(|id| id.checked_sub(1))
        else {
            return;
        };
        let Some(client) = self.clients.get(index) else {
            return;
        };
        let Some(outstanding) = client.outstanding else {
            return;
        };
        if outstanding.seq != command.seq {
            return;
        }
        let probe = client.probe;
        let now = self.tick_clock();
        self.finish(index, Some((now, Ret::WriteOk)), rng);
        self.committed_writes += 1;
        if probe {
            self.probe_done = Some(now);
        }
    }

    /// Node `node` reports the read index of the read tagged `ctx`.
    pub fn on_read_ready(&mut self, node: NodeId, ctx: u64, index: u64) {
        if let Some(client) = self.current(ctx) {
            let seq = self.clients[client].seq;
            self.ready.push(ReadyRead {
                node,
                index,
                client,
                seq,
            });
        }
    }

    /// The read tagged `ctx` was refused.
    pub fn on_read_refused(&mut self, ctx: u64, rng: &mut SimRng) {
        if let Some(index) = self.current(ctx) {
            self.fail_read(index, rng);
        }
    }

    /// Serves every ready read at `node` whose index its state machine `kv` has applied.
    pub fn serve_reads(&mut self, node: NodeId, kv: &Kv, rng: &mut SimRng) {
        let mut position = 0;
        while position < self.ready.len() {
            let read = self.ready[position];
            if read.node != node || kv.applied() < read.index {
                position += 1;
                continue;
            }
            self.ready.swap_remove(position);
            let Some(outstanding) = self.clients[read.client].outstanding else {
                continue;
            };
            let Op::Read { key } = outstanding.op else {
                continue;
            };
            if outstanding.seq != read.seq {
                continue; // the read timed out and the client moved on
            }
            let now = self.tick_clock();
            self.finish(read.client, Some((now, Ret::ReadOk(kv.get(key)))), rng);
            self.reads += 1;
        }
    }

    /// Node `node` crashed: the reads waiting on it are lost.
    pub fn on_crash(&mut self, node: NodeId, rng: &mut SimRng) {
        let lost: Vec<ReadyRead> = self
            .ready
            .iter()
            .copied()
            .filter(|read| read.node == node)
            .collect();
        self.ready.retain(|read| read.node != node);
        for read in lost {
            if self.clients[read.client]
                .outstanding
                .is_some_and(|outstanding| outstanding.seq == read.seq)
            {
                self.fail_read(read.client, rng);
            }
        }
    }

    /// The client whose outstanding operation carries `tag`, if it is still outstanding.
    fn current(&self, tag: u64) -> Option<usize> {
        let (index, seq) = untag(tag);
        let outstanding = self.clients.get(index)?.outstanding?;
        (outstanding.seq == seq).then_some(index)
    }

    /// Client `index`'s read failed: drop it from the history and move on.
    fn fail_read(&mut self, index: usize, rng: &mut SimRng) {
        if let Some(outstanding) = self.clients[index].outstanding {
            self.history[outstanding.slot] = None;
        }
        self.finish(index, None, rng);
    }

    /// Client `index`'s operation is over (`ret` recorded unless it was dropped); the client
    /// thinks, then starts another (the probe does not).
    fn finish(&mut self, index: usize, ret: Option<(u64, Ret)>, rng: &mut SimRng) {
        let client = &mut self.clients[index];
        if let Some(outstanding) = client.outstanding.take()
            && let Some(event) = &mut self.history[outstanding.slot]
        {
            event.ret = ret;
        }
        if !client.probe {
            let think = rng.range(THINK.0, THINK.1 + 1);
            self.rearm(index, think);
        }
    }

    /// The history to check: every write (unanswered ones without a return) and every answered
    /// read.
    pub fn history(&self) -> Vec<Event> {
        self.history
            .iter()
            .flatten()
            .filter(|event| event.ret.is_some() || matches!(event.op, Op::Write { .. }))
            .copied()
            .collect()
    }
}

/// The tag of client `index`'s operation `seq`, used as proposal id and read context.
fn tag(index: usize, seq: u64) -> u64 {
    ((index as u64) << 32) | (seq & 0xFFFF_FFFF)
}

/// The client index and sequence number in a tag.
fn untag(tag: u64) -> (usize, u64) {
    // The upper half holds a client index, which came from a usize.
    let index = usize::try_from(tag >> 32).unwrap_or(usize::MAX);
    (index, tag & 0xFFFF_FFFF)
}
