//! What makes sleeping safe: [`Raft::ticks_until_due`] names the tick at which a node can act
//! next, and every tick before it is quiet (the testkit asserts that at every tick of every
//! script: `testkit::tick_checked`). These scripts check the figures themselves: a follower is
//! due at its election deadline, a leader at its next heartbeat, and what a tick changes is
//! only seen through the inputs that come after it (the lease, the redirect).
//!
//! [`Raft::ticks_until_due`]: super::super::Raft::ticks_until_due

use super::super::testkit::Cluster;
use super::super::{Body, Input, Role};

/// A follower with a leader is due exactly when its election timeout runs out: it campaigns on
/// that tick and on no earlier one (the tick check holds it to every tick before).
#[test]
fn a_follower_is_due_at_its_election_deadline_and_campaigns_then() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.drop_in_flight();
    let due = cluster
        .node(2)
        .ticks_until_due()
        .expect("a voter is due to campaign");
    let (min, max) = cluster.node(2).config().election_ticks;
    assert!(
        (1..=max).contains(&due),
        "due in {due} ticks, timeouts [{min}, {max})"
    );
    cluster.tick(2, due - 1);
    assert_eq!(cluster.role(2), Role::Follower);
    assert_eq!(cluster.node(2).ticks_until_due(), Some(1));
    cluster.tick(2, 1);
    assert_eq!(
        cluster.role(2),
        Role::PreCandidate,
        "it campaigns at the deadline"
    );
}

/// A leader is due at its next heartbeat: on that tick it sends one to every follower, and
/// after it the next is a whole heartbeat interval away.
#[test]
fn a_leader_is_due_at_its_next_heartbeat() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.deliver_all();
    let heartbeat = cluster.node(1).config().heartbeat_ticks;
    let due = cluster
        .node(1)
        .ticks_until_due()
        .expect("a leader is always due");
    assert!((1..=heartbeat).contains(&due));
    cluster.tick(1, due - 1);
    assert!(cluster.in_flight.is_empty(), "nothing before the heartbeat");
    cluster.tick(1, 1);
    let heartbeats = cluster
        .in_flight
        .iter()
        .filter(|(from, _, msg)| {
            *from == 1
                && matches!(&msg.body, Body::AppendEntries { entries, .. } if entries.is_empty())
        })
        .count();
    assert_eq!(heartbeats, 2, "one heartbeat to each follower");
    assert_eq!(cluster.node(1).ticks_until_due(), Some(heartbeat));
}

/// A node that may not stand for election (one joining, which knows no configuration yet; a
/// learner; one installing a snapshot) has nothing tick-driven to do: it may sleep until
/// another input comes, and ticks change that for none of them.
#[test]
fn a_node_that_may_not_stand_is_never_due() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.add_joining(4, |_| {});
    assert_eq!(cluster.node(4).ticks_until_due(), None);
    let (_, max) = cluster.node(4).config().election_ticks;
    cluster.tick(4, 3 * max);
    assert_eq!(cluster.role(4), Role::Follower);
    assert_eq!(cluster.node(4).ticks_until_due(), None);
}

/// The ticks slept through are delivered before the next input, so that input sees time as it
/// is: a follower that heard from its leader longer ago than the minimum election timeout no
/// longer names it to clients, however the ticks came (one by one or all at once).
#[test]
fn ticks_delivered_late_still_expire_the_leader_lease() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.deliver_all();
    cluster.isolate(2);
    let (min, _) = cluster.node(2).config().election_ticks;
    assert_eq!(cluster.node(2).redirect().leader, Some(1));
    let due = cluster.node(2).ticks_until_due().expect("a voter");
    // Fewer ticks than are due, all at once, as a runtime catching up after a sleep gives them.
    let quiet = due.min(min + 1) - 1;
    cluster.step_all(2, (0..quiet).map(|_| Input::Tick));
    assert_eq!(cluster.role(2), Role::Follower);
    assert_eq!(
        cluster.node(2).redirect().leader.is_some(),
        quiet < min,
        "the lease holds for {min} ticks, whether they came one by one or together"
    );
}
