//! Datagrams held back by fault injection until their time comes: a min-heap on the time due,
//! ties kept in the order they were held.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::outbox::Datagram;

#[derive(Debug, Default)]
pub(crate) struct DelayQueue {
    heap: BinaryHeap<Reverse<Held>>,
    /// Increases with every datagram held, to keep ties in order.
    held: u64,
}

#[derive(Debug)]
struct Held {
    due: Instant,
    seq: u64,
    datagram: Datagram,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Held {}

impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Held {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

impl DelayQueue {
    pub(crate) fn push(&mut self, due: Instant, datagram: Datagram) {
        self.held += 1;
        self.heap.push(Reverse(Held {
            due,
            seq: self.held,
            datagram,
        }));
    }

    /// When the earliest held datagram is due.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(held)| held.due)
    }

    /// The earliest held datagram, if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Datagram> {
        if self.next_due()? > now {
            return None;
        }
        self.heap.pop().map(|Reverse(held)| held.datagram)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn datagram(tag: u8) -> Datagram {
        Datagram {
            to: "127.0.0.1:1".parse().expect("valid address"),
            peer: None,
            bytes: vec![tag],
        }
    }

    #[test]
    fn releases_in_due_order_then_held_order() {
        #[allow(
            clippy::disallowed_methods,
            reason = "a test needs some instant to count from"
        )]
        let start = Instant::now();
        let mut queue = DelayQueue::default();
        let later = start + Duration::from_millis(10);
        queue.push(later, datagram(1));
        queue.push(start, datagram(2));
        queue.push(later, datagram(3));
        assert_eq!(queue.next_due(), Some(start));
        let tags = |queue: &mut DelayQueue, now| {
            std::iter::from_fn(|| queue.pop_due(now).map(|d| d.bytes[0])).collect::<Vec<_>>()
        };
        assert_eq!(tags(&mut queue, start), [2]);
        assert_eq!(tags(&mut queue, later), [1, 3]);
        assert!(queue.is_empty());
    }
}
