//! The simulation's clock and its queue of timed events.
//!
//! Events pop in time order; two events due at the same time pop in the order they were
//! scheduled. Nothing else decides the order, so the queue is as deterministic as the code that
//! fills it.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::net::SocketAddr;

use crate::raft::{Message, NodeId, PersistId};
use crate::runtime::wire::{Response, Wire};

/// Something due at a time.
#[derive(Debug)]
pub enum SimEvent {
    /// A tick of a node's clock (re-armed every tick, whether the node is up or not).
    Tick(NodeId),
    /// A message arrives.
    Deliver {
        /// Its sender.
        from: NodeId,
        /// Its receiver.
        to: NodeId,
        /// The message.
        msg: Message,
    },
    /// The persist `id` of this incarnation of `node` is durable.
    PersistDone {
        /// The node.
        node: NodeId,
        /// Its incarnation when it issued the persist; a later one ignores it.
        incarnation: u64,
        /// The persist.
        id: PersistId,
    },
    /// A client's datagram arrives at a replica.
    ToReplica {
        /// The replica.
        node: NodeId,
        /// The client's address.
        source: SocketAddr,
        /// The datagram (boxed: it is large, and the queue moves its events).
        wire: Box<Wire>,
    },
    /// A replica's answer arrives at a client.
    ToClient {
        /// The client.
        client: usize,
        /// The answer (boxed: it is large, and the queue moves its events).
        response: Box<Response>,
    },
    /// The node's snapshot save is durable (if it is still this incarnation).
    SaveDone {
        /// The node.
        node: NodeId,
        /// Its incarnation when the save started.
        incarnation: u64,
    },
    /// The node's install of a received snapshot is done (if it is still this incarnation).
    InstallDone {
        /// The node.
        node: NodeId,
        /// Its incarnation when it asked for the install.
        incarnation: u64,
    },
    /// A client's timer; only the newest `token` of a client counts.
    Client {
        /// The client.
        client: usize,
        /// The timer's token.
        token: u64,
    },
    /// The nemesis acts.
    Nemesis,
    /// A crashed node comes back.
    Restart(NodeId),
    /// The chaos phase ends: heal, restart, probe.
    Liveness,
    /// The liveness window closes.
    Deadline,
}

/// An event in the heap, ordered so that the max-heap pops the earliest, then the first
/// scheduled.
#[derive(Debug)]
struct Scheduled {
    time: u64,
    seq: u64,
    event: SimEvent,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.seq) == (other.time, other.seq)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time, other.seq).cmp(&(self.time, self.seq))
    }
}

/// The clock (in subticks) and the events due.
#[derive(Debug, Default)]
pub struct EventQueue {
    now: u64,
    scheduled: u64,
    heap: BinaryHeap<Scheduled>,
}

impl EventQueue {
    /// Now, in subticks.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Schedules `event` `delay` subticks from now.
    pub fn schedule(&mut self, delay: u64, event: SimEvent) {
        self.scheduled += 1;
        self.heap.push(Scheduled {
            time: self.now + delay,
            seq: self.scheduled,
            event,
        });
    }

    /// The next event; the clock moves to its time.
    pub fn pop(&mut self) -> Option<SimEvent> {
        let next = self.heap.pop()?;
        self.now = next.time;
        Some(next.event)
    }
}

#[cfg(test)]
mod tests {
    use super::{EventQueue, SimEvent};

    #[test]
    fn events_pop_by_time_then_by_scheduling_order() {
        let mut queue = EventQueue::default();
        queue.schedule(5, SimEvent::Tick(1));
        queue.schedule(3, SimEvent::Tick(2));
        queue.schedule(5, SimEvent::Tick(3));
        let order: Vec<String> = std::iter::from_fn(|| queue.pop())
            .map(|event| format!("{event:?}"))
            .collect();
        assert_eq!(order, ["Tick(2)", "Tick(1)", "Tick(3)"]);
        assert_eq!(queue.now(), 5);
    }
}
