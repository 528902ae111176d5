//! The nemesis: one fault at a time, on a schedule drawn from the run's seed, each followed by
//! its heal and a quiet gap of 2–4 s (so that the unavailability each fault causes can be told
//! apart from the next one's).
//!
//! | kind         | what                                                                 |
//! |--------------|----------------------------------------------------------------------|
//! | `kill`       | SIGKILL of the leader (half the time) or a random member; restart after 2–5 s |
//! | `pause`      | SIGSTOP of the leader (half the time) or a random member for 1–5 s, then SIGCONT |
//! | `partition`  | leader isolated, majority/minority split, bridge, or one-way (the leader unheard), 3–8 s |
//! | `membership` | add a voter, remove one, or replace one with a fresh node            |
//! | `transfer`   | leadership transfer to a random other member                         |
//! | `snapshot`   | a snapshot forced on a random member                                 |
//! | `wipe`       | a member killed, its data directory deleted, a fresh node put in its place |
//!
//! Membership changes keep the voters between `--nodes` and `--nodes + 1` (a remove when there
//! is one extra, else an add or a replace), and remove a member that is gone for good (a wiped
//! node whose replacement did not complete) first. When the run's node ids are used up,
//! membership changes and wipes are skipped.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use balsa::client::Client;
use balsa::runtime::wire::MemberStep;
use balsa::sim::SimRng;

use super::nodes::{NodeState, Nodes};
use super::observer::{Observer, nanos_since};
use super::timeline::{FaultKind, NemesisEvent};
use super::workload::client_options;

/// The nemesis of one run.
pub struct Nemesis<'a> {
    /// The nodes it hurts.
    pub nodes: &'a mut Nodes,
    /// Who leads.
    pub observer: &'a Observer,
    /// Its choices.
    pub rng: SimRng,
    /// The kinds of fault it may inject.
    pub kinds: Vec<FaultKind>,
    /// The number of voters to keep (`--nodes`).
    pub voters: usize,
    /// Time zero of the run.
    pub origin: Instant,
    /// The faults injected so far.
    pub events: Vec<NemesisEvent>,
    /// Notes for the report (faults skipped, changes refused).
    pub notes: Vec<String>,
}

impl Nemesis<'_> {
    /// Injects faults until `deadline` or until `interrupted` is set. Every fault is healed
    /// before this returns.
    pub fn run(&mut self, deadline: Instant, interrupted: &AtomicBool) {
        loop {
            let gap = Duration::from_millis(self.rng.range(2_000, 4_000));
            if !self.wait(gap, deadline, interrupted) || self.kinds.is_empty() {
                return;
            }
            let kind = self.rng.pick(&self.kinds);
            match kind {
                FaultKind::Kill => self.kill(interrupted),
                FaultKind::Pause => self.pause(interrupted),
                FaultKind::Partition => self.partition(interrupted),
                FaultKind::Membership => self.membership(),
                FaultKind::Transfer => self.transfer(),
                FaultKind::Snapshot => self.snapshot(),
                FaultKind::Wipe => self.wipe(),
            }
        }
    }

    /// Sleeps `length` in short steps, reaping exited nodes; false if the deadline passed or
    /// the run was interrupted first.
    fn wait(&mut self, length: Duration, deadline: Instant, interrupted: &AtomicBool) -> bool {
        let end = Instant::now() + length;
        loop {
            self.nodes.reap();
            if interrupted.load(Ordering::Relaxed) || Instant::now() >= deadline {
                return false;
            }
            let now = Instant::now();
            if now >= end {
                return true;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(50)));
        }
    }

    /// Holds a fault for `length` (cut short by an interruption, not by the deadline: a fault
    /// once started runs its course, then is healed).
    fn hold(&mut self, length: Duration, interrupted: &AtomicBool) {
        let far = Instant::now() + length + Duration::from_secs(1);
        self.wait(length, far, interrupted);
    }

    /// The leader half the time (when one is known), else a random running member.
    fn target(&mut self) -> Option<(u64, bool)> {
        let leader = self.observer.leader();
        if let Some(leader) = leader
            && self.rng.chance(500)
            && self.nodes.running_members().contains(&leader)
        {
            return Some((leader, true));
        }
        let running = self.nodes.running_members();
        if running.is_empty() {
            return None;
        }
        let id = self.rng.pick(&running);
        Some((id, Some(id) == leader))
    }

    fn record(&mut self, kind: FaultKind, detail: String, start_ns: u64, hit_leader: bool) {
        self.events.push(NemesisEvent {
            kind,
            detail,
            start_ns,
            end_ns: nanos_since(self.origin),
            hit_leader,
        });
    }

    fn kill(&mut self, interrupted: &AtomicBool) {
        let Some((id, hit_leader)) = self.target() else {
            return;
        };
        let start_ns = nanos_since(self.origin);
        self.nodes.kill(id);
        let down = Duration::from_millis(self.rng.range(2_000, 5_000));
        self.hold(down, interrupted);
        if let Err(error) = self.nodes.restart(id) {
            self.notes
                .push(format!("node {id} did not restart: {error}"));
        }
        let who = if hit_leader { "leader " } else { "" };
        self.record(
            FaultKind::Kill,
            format!("kill -9 {who}n{id}"),
            start_ns,
            hit_leader,
        );
    }

    fn pause(&mut self, interrupted: &AtomicBool) {
        let Some((id, hit_leader)) = self.target() else {
            return;
        };
        let start_ns = nanos_since(self.origin);
        self.nodes.pause(id);
        let length = Duration::from_millis(self.rng.range(1_000, 5_000));
        self.hold(length, interrupted);
        self.nodes.resume(id);
        let who = if hit_leader { "leader " } else { "" };
        let detail = format!("SIGSTOP {who}n{id} for {:.1} s", length.as_secs_f64());
        self.record(FaultKind::Pause, detail, start_ns, hit_leader);
    }

    fn partition(&mut self, interrupted: &AtomicBool) {
        let mut members = self.nodes.members().to_vec();
        if members.len() < 2 {
            return;
        }
        let leader = self.observer.leader().filter(|id| members.contains(id));
        self.rng.shuffle(&mut members);
        let (blocked, detail, hit_leader) = match (self.rng.range(0, 4), leader) {
            (0, Some(leader)) => {
                let others: Vec<u64> = members.iter().copied().filter(|&id| id != leader).collect();
                let blocked = cut(&[leader], &others);
                (blocked, format!("leader n{leader} isolated"), true)
            }
            (1, Some(leader)) => {
                // The leader can hear the others, and no one hears it.
                let blocked = members
                    .iter()
                    .filter(|&&id| id != leader)
                    .map(|&id| (leader, id))
                    .collect();
                (
                    blocked,
                    format!("one-way: no one hears leader n{leader}"),
                    true,
                )
            }
            (2, _) if members.len() >= 3 => {
                let bridge = members[0];
                let rest = &members[1..];
                let (left, right) = rest.split_at(rest.len() / 2);
                let detail = format!(
                    "bridge n{bridge} between {} | {}",
                    group(left),
                    group(right)
                );
                let hit = leader.is_some_and(|l| l != bridge);
                (cut(left, right), detail, hit)
            }
            _ => {
                let minority = (members.len() - 1) / 2;
                let (small, large) = members.split_at(minority.max(1));
                let detail = format!("split {} | {}", group(small), group(large));
                let hit = leader.is_some_and(|l| small.contains(&l));
                (cut(small, large), detail, hit)
            }
        };
        let start_ns = nanos_since(self.origin);
        if let Err(error) = self.nodes.set_blocked(&blocked) {
            self.notes.push(format!("partition not made: {error}"));
            return;
        }
        let length = Duration::from_millis(self.rng.range(3_000, 8_000));
        self.hold(length, interrupted);
        if let Err(error) = self.nodes.set_blocked(&BTreeSet::new()) {
            self.notes.push(format!("partition not healed: {error}"));
        }
        self.record(FaultKind::Partition, detail, start_ns, hit_leader);
    }

    fn transfer(&mut self) {
        let Some(leader) = self.observer.leader() else {
            return;
        };
        let others: Vec<u64> = self
            .nodes
            .running_members()
            .into_iter()
            .filter(|&id| id != leader)
            .collect();
        if others.is_empty() {
            return;
        }
        let to = self.rng.pick(&others);
        let start_ns = nanos_since(self.origin);
        let outcome = self.client().map(|mut client| client.transfer(to));
        let detail = match outcome {
            Some(Ok(())) => format!("transfer n{leader} -> n{to}"),
            Some(Err(error)) => format!("transfer n{leader} -> n{to} refused: {error}"),
            None => format!("transfer n{leader} -> n{to}: no client"),
        };
        self.record(FaultKind::Transfer, detail, start_ns, true);
    }

    fn snapshot(&mut self) {
        let running = self.nodes.running_members();
        if running.is_empty() {
            return;
        }
        let id = self.rng.pick(&running);
        let Some(address) = self.nodes.node(id).map(|node| node.client_address) else {
            return;
        };
        let start_ns = nanos_since(self.origin);
        let outcome = self
            .client()
            .map(|mut client| client.take_snapshot(address));
        let detail = match outcome {
            Some(Ok(index)) => format!("snapshot on n{id} at index {index}"),
            Some(Err(error)) => format!("snapshot on n{id} failed: {error}"),
            None => format!("snapshot on n{id}: no client"),
        };
        let hit_leader = self.observer.leader() == Some(id);
        self.record(FaultKind::Snapshot, detail, start_ns, hit_leader);
    }

    fn membership(&mut self) {
        let members = self.nodes.members().to_vec();
        let gone: Vec<u64> = members
            .iter()
            .copied()
            .filter(|&id| matches!(self.nodes.node(id).map(|n| &n.state), Some(NodeState::Gone)))
            .collect();
        let start_ns = nanos_since(self.origin);
        let leader = self.observer.leader();
        let (steps, detail, hit_leader) = if let Some(&dead) = gone.first() {
            let steps = vec![MemberStep::Remove { id: dead }];
            (steps, format!("remove n{dead} (gone)"), false)
        } else if members.len() > self.voters {
            let id = self.rng.pick(&members);
            let steps = vec![MemberStep::Remove { id }];
            (steps, format!("remove n{id}"), Some(id) == leader)
        } else if !self.nodes.can_add() {
            self.notes
                .push("membership change skipped: the run's node ids are used up".into());
            return;
        } else {
            let (new, address) = match self.nodes.start_fresh() {
                Ok(started) => started,
                Err(error) => {
                    self.notes.push(format!("new node not started: {error}"));
                    return;
                }
            };
            let mut steps = vec![MemberStep::AddVoter {
                id: new,
                address: address.to_string().into_bytes(),
            }];
            if self.rng.chance(500) {
                let old = self.rng.pick(&members);
                steps.push(MemberStep::Remove { id: old });
                (
                    steps,
                    format!("replace n{old} by n{new}"),
                    Some(old) == leader,
                )
            } else {
                (steps, format!("add n{new}"), false)
            }
        };
        let detail = self.change(steps, detail);
        self.record(FaultKind::Membership, detail, start_ns, hit_leader);
    }

    fn wipe(&mut self) {
        if !self.nodes.can_add() {
            self.notes
                .push("wipe skipped: the run's node ids are used up".into());
            return;
        }
        let members = self.nodes.members().to_vec();
        if members.is_empty() {
            return;
        }
        let old = self.rng.pick(&members);
        let hit_leader = self.observer.leader() == Some(old);
        let start_ns = nanos_since(self.origin);
        self.nodes.wipe(old);
        let (new, address) = match self.nodes.start_fresh() {
            Ok(started) => started,
            Err(error) => {
                self.notes.push(format!("new node not started: {error}"));
                return;
            }
        };
        let steps = vec![
            MemberStep::AddVoter {
                id: new,
                address: address.to_string().into_bytes(),
            },
            MemberStep::Remove { id: old },
        ];
        let detail = self.change(steps, format!("wipe n{old}, replace by n{new}"));
        self.record(FaultKind::Wipe, detail, start_ns, hit_leader);
    }

    /// Asks the leader for the change; then learns the configuration from the cluster,
    /// whatever the answer was. Returns `detail` with the outcome.
    fn change(&mut self, steps: Vec<MemberStep>, detail: String) -> String {
        let outcome = self
            .client()
            .map(|mut client| client.change_membership(steps));
        let detail = match outcome {
            Some(Ok(_)) => detail,
            Some(Err(error)) => format!("{detail}: {error}"),
            None => format!("{detail}: no client"),
        };
        refresh_members(self.nodes);
        detail
    }

    fn client(&self) -> Option<Client> {
        admin_client(self.nodes)
    }
}

/// A client for the nemesis's requests (transfers, snapshots, membership changes), patient
/// enough for a change that must catch a new node up.
fn admin_client(nodes: &Nodes) -> Option<Client> {
    let mut options = client_options(&nodes.directory());
    options.timeout = Duration::from_secs(10);
    Client::new(nodes.directory().endpoints(), options).ok()
}

/// Learns the members from the member with the newest configuration.
pub fn refresh_members(nodes: &mut Nodes) {
    let endpoints = nodes.directory().endpoints();
    // Every member is asked at once and the answer waits for the slowest: a short bound, as a
    // member that is down never answers.
    let mut options = client_options(&nodes.directory());
    options.timeout = Duration::from_millis(500);
    let Ok(mut client) = Client::new(endpoints.clone(), options) else {
        return;
    };
    let newest = client
        .members_all(&endpoints)
        .into_iter()
        .flatten()
        .filter(|report| !report.members.is_empty())
        .max_by_key(|report| (report.index, report.leader == Some(report.id)));
    if let Some(report) = newest {
        let ids = report.members.iter().map(|member| member.id).collect();
        nodes.set_members(ids);
    }
}

/// Every directed link between `left` and `right`, both ways.
fn cut(left: &[u64], right: &[u64]) -> BTreeSet<(u64, u64)> {
    let mut blocked = BTreeSet::new();
    for &a in left {
        for &b in right {
            blocked.insert((a, b));
            blocked.insert((b, a));
        }
    }
    blocked
}

fn group(ids: &[u64]) -> String {
    let names: Vec<String> = ids.iter().map(|id| format!("n{id}")).collect();
    format!("{{{}}}", names.join(","))
}
