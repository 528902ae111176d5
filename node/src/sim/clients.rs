//! The simulated clients and the history they record for the linearizability checker.
//!
//! They speak the key-value service's real protocol: each request is a `Wire::Request` datagram
//! to a replica (through the simulated network, which loses, duplicates and delays it), each
//! answer a `Wire::Response` back, so the replica's client handling, forwarding and the key-value
//! store's session table all run. Each client has at most one operation outstanding:
//!
//! - **write** `key = value` (values unique across the run): a `Put` command carrying
//!   `(client, seq)`, sent to the replica last named as leader, else a random live one. A
//!   `NotLeader` answer notes the hint and tries again soon; no answer, and it tries again after
//!   a while, with the same `(client, seq)`, so the session table must apply it at most once. It
//!   returns at the first `Applied` answer, which a leader sends after applying it. A write still
//!   unanswered at the end of the run stays in the history with no return: it may or may not
//!   have taken effect.
//! - **read** `key`: a linearizable `Get` query (ReadIndex) at a random live replica (the planted
//!   bug `SimConfig::stale_reads` asks for a stale one instead). A refused or unanswered read is
//!   dropped from the history: a read has no effect, so an unanswered one constrains nothing.
//!
//! History times come from a counter bumped at every invocation and every return, in the order
//! things happen in the simulation, so real-time order is kept and `call < ret` always holds.
//! An answer the protocol does not allow (a write answered with anything but `Ok`, a value that
//! no client wrote) is a violation.
//!
//! The liveness phase adds a *probe* client that issues one write and nothing else.
//!
//! Range reads (`Query::Scan`) and counted or prefix deletes are not issued: the checker splits
//! a history per key, which an operation over many keys at one point does not fit. They are
//! checked against a model in `kv/tests.rs` instead.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use super::linearizability::{HistoryOp, Invocation, Ret};
use super::network::SUBTICKS_PER_TICK;
use super::rng::SimRng;
use super::store::{key_bytes, value_bytes, value_from_bytes};
use crate::kv::{self, Answer, Command, Query};
use crate::raft::NodeId;
use crate::runtime::wire::{Request, RequestBody, Response, ResponseBody, Wire};

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

/// Why the clients' matches on [`Invocation`] need no arm for the checker's other operations:
/// `Clients::start` invokes only these two.
const ONLY_WRITES_AND_READS: &str = "the simulated clients issue only writes and reads";

/// The operation a client has outstanding.
#[derive(Clone, Copy, Debug)]
struct Outstanding {
    /// Its sequence number.
    seq: u64,
    /// Where it sits in the history.
    slot: usize,
    op: Invocation,
}

/// One simulated client of the key-value service.
#[derive(Clone, Debug)]
struct SimClient {
    /// Its id, in the history and in commands.
    id: u64,
    /// The sequence number of its newest operation.
    seq: u64,
    outstanding: Option<Outstanding>,
    /// Only the newest timer counts; older ones are stale.
    timer: u64,
    /// The liveness probe: one write, then nothing.
    probe: bool,
    /// The replica last named as leader.
    leader_hint: Option<NodeId>,
    /// The newest attempt got no answer yet. When its timer fires so, the hint goes and the
    /// next attempt picks another node, as the real client moves to its next endpoint: a node
    /// may never answer (one removed from the cluster that never learned it, forwarding to a
    /// leader long gone).
    unanswered: bool,
}

/// A request on its way: to replica `node`, from `source`.
#[derive(Debug)]
pub struct Outgoing {
    /// The replica.
    pub node: NodeId,
    /// The client's address (where the answer goes).
    pub source: SocketAddr,
    /// The datagram.
    pub wire: Wire,
}

/// Workload parameters of a run.
#[derive(Clone, Copy, Debug)]
pub struct SimWorkload {
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
    workload: SimWorkload,
    clients: Vec<SimClient>,
    /// Operations in invocation order; `None` where a read was dropped.
    history: Vec<Option<HistoryOp>>,
    /// The history's logical clock.
    clock: u64,
    next_value: u64,
    /// Reads ask for a stale answer (the planted bug `SimConfig::stale_reads`).
    stale_reads: bool,
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
    pub fn new(workload: SimWorkload, stale_reads: bool, rng: &mut SimRng) -> Clients {
        let mut clients = Clients {
            workload,
            clients: Vec::new(),
            history: Vec::new(),
            clock: 0,
            next_value: 1,
            stale_reads,
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
        self.clients.push(SimClient {
            id: index as u64 + 1,
            seq: 0,
            outstanding: None,
            timer: 0,
            probe,
            leader_hint: None,
            unanswered: false,
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

    /// Starts the liveness probe: a client that writes once. Returns the request to send.
    pub fn start_probe(&mut self, up: &[NodeId], rng: &mut SimRng) -> Option<Outgoing> {
        let index = self.add(true);
        self.start(index, true, up, rng)
    }

    /// When the probe's write committed, if it has.
    pub fn probe_done(&self) -> Option<u64> {
        self.probe_done
    }

    /// Client `index`'s timer `token` fired: start an operation, retry a write, or give up a
    /// read. Returns the request to send, if any.
    pub fn on_timer(
        &mut self,
        index: usize,
        token: u64,
        up: &[NodeId],
        rng: &mut SimRng,
    ) -> Option<Outgoing> {
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
                Invocation::Write { .. } => {
                    let client = &mut self.clients[index];
                    if client.unanswered {
                        client.leader_hint = None;
                    }
                    self.send_write(index, outstanding, up, rng)
                }
                Invocation::Read { .. } => {
                    self.fail_read(index, rng);
                    None
                }
                Invocation::Cas { .. } | Invocation::Delete { .. } => {
                    unreachable!("{ONLY_WRITES_AND_READS}")
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
    ) -> Option<Outgoing> {
        if up.is_empty() {
            self.rearm(index, NOBODY_UP_RETRY);
            return None;
        }
        let key = rng.range(0, self.workload.keys);
        let op = if write {
            let value = self.next_value;
            self.next_value += 1;
            Invocation::Write { key, value }
        } else {
            Invocation::Read { key }
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
        self.history.push(Some(HistoryOp {
            client: client.id,
            op,
            call,
            ret: None,
        }));
        match op {
            Invocation::Write { .. } => self.send_write(index, outstanding, up, rng),
            Invocation::Read { key } => {
                self.rearm(index, READ_TIMEOUT);
                let query = Query::Get {
                    key: key_bytes(key),
                };
                let body = RequestBody::Query {
                    data: query.encode(),
                    stale: self.stale_reads,
                };
                Some(self.request(index, rng.pick(up), outstanding.seq, body))
            }
            Invocation::Cas { .. } | Invocation::Delete { .. } => {
                unreachable!("{ONLY_WRITES_AND_READS}")
            }
        }
    }

    /// Sends (again) client `index`'s outstanding write, to the replica last named as leader if
    /// it is up, else to a random live one.
    fn send_write(
        &mut self,
        index: usize,
        outstanding: Outstanding,
        up: &[NodeId],
        rng: &mut SimRng,
    ) -> Option<Outgoing> {
        let Invocation::Write { key, value } = outstanding.op else {
            return None;
        };
        if up.is_empty() {
            self.rearm(index, NOBODY_UP_RETRY);
            return None;
        }
        self.rearm(index, WRITE_RETRY);
        let client = &self.clients[index];
        let command = Command {
            client_id: client.id,
            seq: outstanding.seq,
            op: kv::Op::Put {
                key: key_bytes(key),
                value: value_bytes(value),
            },
        };
        let node = match client.leader_hint {
            Some(leader) if up.contains(&leader) => leader,
            _ => rng.pick(up),
        };
        self.clients[index].unanswered = true;
        let body = RequestBody::Command {
            data: command.encode(),
        };
        Some(self.request(index, node, outstanding.seq, body))
    }

    fn request(&self, index: usize, node: NodeId, seq: u64, body: RequestBody) -> Outgoing {
        Outgoing {
            node,
            source: client_address(index),
            wire: Wire::Request(Request {
                id: tag(index, seq),
                body,
            }),
        }
    }

    /// Client `index` got `response`. An answer the protocol does not allow is an error.
    pub fn on_response(
        &mut self,
        index: usize,
        response: Response,
        rng: &mut SimRng,
    ) -> Result<(), String> {
        let Some(client) = self.clients.get(index) else {
            return Ok(());
        };
        let Some(outstanding) = client.outstanding else {
            return Ok(()); // a late or duplicated answer
        };
        if response.id != tag(index, outstanding.seq) {
            return Ok(()); // an answer to an earlier operation
        }
        let client_id = client.id;
        let unexpected = |what: &str| {
            Err(format!(
                "client {client_id} got {what} for its operation {} ({:?})",
                outstanding.seq, outstanding.op
            ))
        };
        match (outstanding.op, response.body) {
            (_, ResponseBody::NotLeader { leader, .. }) => {
                self.clients[index].leader_hint = leader;
                self.clients[index].unanswered = false;
                match outstanding.op {
                    Invocation::Write { .. } => {
                        let delay = rng.range(REFUSED_RETRY.0, REFUSED_RETRY.1 + 1);
                        self.rearm(index, delay);
                    }
                    Invocation::Read { .. } => self.fail_read(index, rng),
                    Invocation::Cas { .. } | Invocation::Delete { .. } => {
                        unreachable!("{ONLY_WRITES_AND_READS}")
                    }
                }
            }
            (Invocation::Write { .. }, ResponseBody::Applied { data }) => {
                match Answer::decode(&data) {
                    Ok(Answer::Ok) => {
                        let probe = self.clients[index].probe;
                        let now = self.tick_clock();
                        self.finish(index, Some((now, Ret::WriteOk)), rng);
                        self.committed_writes += 1;
                        if probe {
                            self.probe_done = Some(now);
                        }
                    }
                    other => return unexpected(&format!("the answer {other:?}")),
                }
            }
            (Invocation::Read { .. }, ResponseBody::Query { data }) => {
                match Answer::decode(&data) {
                    Ok(Answer::Value(value)) => {
                        let value = match value.as_deref().map(value_from_bytes) {
                            None => None,
                            Some(Some(value)) if value < self.next_value => Some(value),
                            Some(_) => return unexpected("a value no client wrote"),
                        };
                        let now = self.tick_clock();
                        self.finish(index, Some((now, Ret::ReadOk(value))), rng);
                        self.reads += 1;
                    }
                    other => return unexpected(&format!("the answer {other:?}")),
                }
            }
            (_, body) => return unexpected(&format!("{body:?}")),
        }
        Ok(())
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
    pub fn history(&self) -> Vec<HistoryOp> {
        self.history
            .iter()
            .flatten()
            .filter(|event| event.ret.is_some() || matches!(event.op, Invocation::Write { .. }))
            .copied()
            .collect()
    }
}

/// The request id of client `index`'s operation `seq`, the same for every attempt of it.
fn tag(index: usize, seq: u64) -> u64 {
    ((index as u64) << 32) | (seq & 0xFFFF_FFFF)
}

/// Client `index`'s address: 10.1.0.0/16, port 9000.
pub fn client_address(index: usize) -> SocketAddr {
    let [.., high, low] = u32::try_from(index).unwrap_or(u32::MAX).to_be_bytes();
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 1, high, low), 9000))
}

/// The client at `address`, if it is one of [`client_address`].
pub fn client_index(address: SocketAddr) -> Option<usize> {
    match address {
        SocketAddr::V4(v4) if v4.port() == 9000 => {
            let [ten, one, high, low] = v4.ip().octets();
            ((ten, one) == (10, 1)).then_some(usize::from(high) << 8 | usize::from(low))
        }
        _ => None,
    }
}

/// Replica `id`'s address: 10.0.0.`id`, port 7000 (what `NotLeader` hints carry).
pub fn replica_address(id: NodeId) -> SocketAddr {
    let low = u8::try_from(id).unwrap_or(u8::MAX);
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, low), 7000))
}
