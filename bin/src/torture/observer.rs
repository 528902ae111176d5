//! The observer: a thread that asks every member for its status every 100 ms, keeps what they
//! said, and tells the nemesis who leads. Its samples are the evidence for the checks that the
//! client history cannot see: one leader per term (Raft's election safety, §5.2), and no node
//! coming back from a restart in a term older than one it led in (a leader's term is durable:
//! it voted for itself on disk before asking for votes), and for counting leader changes.
//!
//! A status answer is what the node held in memory when it answered; a term a follower has
//! learned but not yet written may be lost by a kill, which is harmless (it sent nothing in that
//! term). So the checks compare only terms a node led in.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use balsa::client::{Client, ClientOptions};

use super::nodes::Directory;

/// How often the observer asks.
const PERIOD: Duration = Duration::from_millis(100);

/// What one node said.
#[derive(Clone, Debug)]
pub struct Sample {
    /// When the answer came, in nanoseconds since the run started.
    pub at_ns: u64,
    /// The node.
    pub id: u64,
    /// Its term.
    pub term: u64,
    /// True when it said it leads.
    pub leading: bool,
    /// The leader it knows.
    pub leader: Option<u64>,
    /// Its commit index.
    pub commit_index: u64,
    /// Its applied index.
    pub applied_index: u64,
}

#[derive(Default)]
struct Shared {
    samples: Vec<Sample>,
    latest: BTreeMap<u64, Sample>,
}

/// The observer thread.
pub struct Observer {
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Observer {
    /// Starts observing the members `directory` lists; times count from `origin`.
    pub fn start(directory: Directory, origin: Instant) -> Observer {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let shared = Arc::clone(&shared);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("torture-observer".into())
                .spawn(move || observe(&directory, origin, &shared, &stop))
                .ok()
        };
        Observer {
            shared,
            stop,
            thread,
        }
    }

    /// The node that leads in the highest term among the answers of the last second.
    pub fn leader(&self) -> Option<u64> {
        let shared = self.lock();
        let newest = shared.latest.values().map(|s| s.at_ns).max()?;
        shared
            .latest
            .values()
            .filter(|s| s.leading && s.at_ns + 1_000_000_000 >= newest)
            .max_by_key(|s| s.term)
            .map(|s| s.id)
    }

    /// The latest answer of each node.
    pub fn latest(&self) -> BTreeMap<u64, Sample> {
        self.lock().latest.clone()
    }

    /// Stops the thread and returns every sample taken.
    pub fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        std::mem::take(&mut self.lock().samples)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn observe(directory: &Directory, origin: Instant, shared: &Mutex<Shared>, stop: &AtomicBool) {
    let options = ClientOptions {
        timeout: Duration::from_millis(250),
        attempt_timeout: Duration::from_millis(250),
        key: directory.key(),
        ..ClientOptions::default()
    };
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let members = directory.members();
        let endpoints: Vec<_> = members.iter().map(|(_, address)| *address).collect();
        if let Ok(mut client) = Client::new(endpoints.clone(), options.clone()) {
            let answers = client.status_all(&endpoints);
            let at_ns = nanos_since(origin);
            let mut shared = shared.lock().unwrap_or_else(PoisonError::into_inner);
            for report in answers.into_iter().flatten() {
                let sample = Sample {
                    at_ns,
                    id: report.id,
                    term: report.term,
                    leading: report.role == "leader",
                    leader: report.leader,
                    commit_index: report.commit_index,
                    applied_index: report.applied_index,
                };
                shared.latest.insert(sample.id, sample.clone());
                shared.samples.push(sample);
            }
        }
        if let Some(rest) = PERIOD.checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}

/// Nanoseconds from `origin` to now.
pub fn nanos_since(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Two nodes seen leading the same term: `(term, leaders)`.
pub fn leaders_sharing_a_term(samples: &[Sample]) -> Vec<(u64, BTreeSet<u64>)> {
    let mut leaders: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for sample in samples.iter().filter(|s| s.leading) {
        leaders.entry(sample.term).or_default().insert(sample.id);
    }
    leaders
        .into_iter()
        .filter(|(_, ids)| ids.len() > 1)
        .collect()
}

/// Nodes seen in a term older than one they had led in before: `(node, led, later term)`.
pub fn terms_gone_back(samples: &[Sample]) -> Vec<(u64, u64, u64)> {
    let mut led: BTreeMap<u64, u64> = BTreeMap::new();
    let mut gone_back = Vec::new();
    for sample in samples {
        let highest = led.entry(sample.id).or_insert(0);
        if sample.term < *highest {
            gone_back.push((sample.id, *highest, sample.term));
        }
        if sample.leading {
            *highest = (*highest).max(sample.term);
        }
    }
    gone_back
}

/// The leader's term at each change of leadership seen: `(when, leader, term)`, in order.
pub fn leader_changes(samples: &[Sample]) -> Vec<(u64, u64, u64)> {
    let mut changes: Vec<(u64, u64, u64)> = Vec::new();
    for sample in samples.iter().filter(|s| s.leading) {
        if changes
            .last()
            .is_none_or(|(_, _, term)| sample.term > *term)
        {
            changes.push((sample.at_ns, sample.id, sample.term));
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ns: u64, id: u64, term: u64, leading: bool) -> Sample {
        Sample {
            at_ns,
            id,
            term,
            leading,
            leader: leading.then_some(id),
            commit_index: 0,
            applied_index: 0,
        }
    }

    #[test]
    fn two_nodes_leading_one_term_break_election_safety() {
        let samples = [
            sample(1, 1, 2, true),
            sample(2, 2, 2, true),
            sample(3, 3, 3, true),
        ];
        assert_eq!(
            leaders_sharing_a_term(&samples),
            vec![(2, BTreeSet::from([1, 2]))]
        );
        assert!(leaders_sharing_a_term(&samples[2..]).is_empty());
    }

    #[test]
    fn a_node_back_in_a_term_older_than_one_it_led_is_caught_but_a_lost_follower_term_is_not() {
        // Node 1 learned term 5 as a follower and came back in term 4: allowed.
        let follower = [sample(1, 1, 5, false), sample(2, 1, 4, false)];
        assert!(terms_gone_back(&follower).is_empty());
        // Node 1 led term 5 and came back in term 4: its durable term went back.
        let leader = [sample(1, 1, 5, true), sample(2, 1, 4, false)];
        assert_eq!(terms_gone_back(&leader), vec![(1, 5, 4)]);
    }

    #[test]
    fn leader_changes_are_counted_once_per_new_term() {
        let samples = [
            sample(1, 1, 2, true),
            sample(2, 1, 2, true),
            sample(3, 2, 3, true),
            sample(4, 1, 2, true),
        ];
        assert_eq!(leader_changes(&samples), vec![(1, 1, 2), (3, 2, 3)]);
    }
}
