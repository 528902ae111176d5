//! Fault injection through real sockets: drop, duplicate, delay, reorder and partitions in
//! each direction, switched on and off at run time. No timing is asserted: what is checked is
//! which messages arrive, how often, and what the counters say.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use balsa_net::{Destination, Direction, DropReason, LinkFaults};
use common::{Msg, Node, connect};

fn pair() -> (Node, Node) {
    let a = Node::start(1);
    let b = Node::start(2);
    connect(&[&a, &b]);
    (a, b)
}

fn send(node: &mut Node, to: u64, n: u64) {
    node.outbox
        .send(Destination::Peer(to), &Msg::Number(n))
        .expect("sent");
}

/// Sends `Msg::Text("end")` without faults and collects everything that arrives before it.
fn collect_until_end(from: &mut Node, to: &Node) -> Vec<Msg> {
    from.transport.faults().clear();
    from.outbox
        .send(Destination::Peer(to.id()), &Msg::Text("end".into()))
        .expect("sent");
    let mut got = Vec::new();
    loop {
        match to.recv().msg {
            Msg::Text(text) if text == "end" => return got,
            msg => got.push(msg),
        }
    }
}

#[test]
fn drop_all_then_clear() {
    let (mut a, b) = pair();
    a.transport.faults().set_all(LinkFaults {
        drop: 1.0,
        ..LinkFaults::NONE
    });
    for n in 0..50 {
        send(&mut a, 2, n);
    }
    a.wait_for_counters("50 dropped", |c| c.dropped(DropReason::Fault) == 50);
    assert_eq!(collect_until_end(&mut a, &b), []);
    send(&mut a, 2, 99);
    assert_eq!(b.recv().msg, Msg::Number(99));
    assert_eq!(a.counters().datagrams_out, 2);
}

#[test]
fn duplicate_all_sends_each_twice() {
    let (mut a, b) = pair();
    a.transport.faults().set_link(
        2,
        LinkFaults {
            duplicate: 1.0,
            ..LinkFaults::NONE
        },
    );
    for n in 0..20 {
        send(&mut a, 2, n);
    }
    let mut seen = BTreeMap::new();
    for _ in 0..40 {
        *seen.entry(b.recv().msg).or_insert(0) += 1;
    }
    assert!(seen.values().all(|count| *count == 2), "{seen:?}");
    assert_eq!(seen.len(), 20);
    assert_eq!(a.counters().fault_duplicated, 20);
}

#[test]
fn delayed_and_reordered_datagrams_all_arrive() {
    let (mut a, b) = pair();
    a.transport.faults().reseed(7);
    a.transport.faults().set_all(LinkFaults {
        delay: Duration::from_millis(2),
        reorder: 0.5,
        reorder_window: Duration::from_millis(20),
        ..LinkFaults::NONE
    });
    for n in 0..100 {
        send(&mut a, 2, n);
    }
    let mut got: Vec<u64> = (0..100)
        .map(|_| match b.recv().msg {
            Msg::Number(n) => n,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    got.sort_unstable();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    assert_eq!(a.counters().fault_delayed, 100);
    assert_eq!(a.counters().dropped_total(), 0);
}

#[test]
fn a_partition_cuts_the_direction_asked_for_until_healed() {
    let (mut a, mut b) = pair();
    // Outbound from a: a → b lost, b → a arrives.
    a.transport.faults().partition(2, Direction::Outbound);
    send(&mut a, 2, 1);
    send(&mut b, 1, 2);
    assert_eq!(a.recv().msg, Msg::Number(2));
    a.wait_for_counters("a → b dropped", |c| c.dropped(DropReason::Fault) == 1);

    // Inbound at a: b → a dropped on arrival, a → b arrives.
    a.transport.faults().partition(2, Direction::Inbound);
    send(&mut b, 1, 3);
    a.wait_for_counters("b → a dropped", |c| c.dropped(DropReason::Fault) == 2);
    send(&mut a, 2, 4);
    assert_eq!(b.recv().msg, Msg::Number(4));

    // Both: nothing either way.
    a.transport.faults().partition(2, Direction::Both);
    send(&mut a, 2, 5);
    send(&mut b, 1, 6);
    a.wait_for_counters("both dropped", |c| c.dropped(DropReason::Fault) == 4);

    // Healed: both ways again.
    a.transport.faults().heal(2);
    assert!(!a.transport.faults().is_active());
    send(&mut a, 2, 7);
    send(&mut b, 1, 8);
    assert_eq!(b.recv().msg, Msg::Number(7));
    assert_eq!(a.recv().msg, Msg::Number(8));
    a.assert_inbox_empty();
    b.assert_inbox_empty();
}
