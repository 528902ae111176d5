//! What a running node counts, as one plain value: [`Metrics`], from
//! [`Node::metrics`](crate::Node::metrics). An embedder exports it with whatever it uses;
//! `balsa serve --metrics-addr` serves it in Prometheus' text format.
//!
//! Counting must cost nothing measurable on the commit path, so each number is kept by the
//! thread that knows it, in the cheapest form that thread can keep:
//!
//! - the replica (which the simulator runs too) counts proposals, reads, leader changes and
//!   snapshots sent in plain integers it owns ([`ReplicaCounts`]); the consensus thread adds
//!   the peers' round trips, timed on its own clock. Both are read through the same API call as
//!   [`Node::status`](crate::Node::status), so one reading of them is one instant of that thread;
//! - the WAL thread times its syncs and snapshot saves into [`LatencyHistogram`]s and counts
//!   bytes written, in relaxed atomics the node's handle reads without asking it;
//! - the transport's counters are its own atomics ([`balsa_net::CounterValues`]).
//!
//! Histograms have fixed buckets ([`LATENCY_BOUNDS_SECONDS`], 50 µs to 10 s in 1-2-5 steps), as
//! Prometheus' histograms do, so that they add up across nodes and scrapes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::raft::{NodeId, Role};

/// Upper bounds of a [`LatencyHistogram`]'s buckets, in seconds; one more bucket takes the rest.
pub const LATENCY_BOUNDS_SECONDS: [f64; 18] = [
    0.000_05, 0.000_1, 0.000_2, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0,
    2.0, 5.0, 10.0, 20.0,
];

/// The same bounds in nanoseconds, to sort an observation with an integer comparison.
const LATENCY_BOUNDS_NANOS: [u64; 18] = [
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
    200_000_000,
    500_000_000,
    1_000_000_000,
    2_000_000_000,
    5_000_000_000,
    10_000_000_000,
    20_000_000_000,
];

const BUCKETS: usize = LATENCY_BOUNDS_SECONDS.len() + 1;

/// A latency histogram any thread may add to: relaxed atomic adds, no lock.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Observations per bucket (not cumulative); the last is over every bound.
    counts: [AtomicU64; BUCKETS],
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    /// Counts one observation.
    pub fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_NANOS.partition_point(|&bound| bound < nanos);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The histogram now (each bucket exact on its own; see the module doc).
    #[must_use]
    pub fn histogram(&self) -> Histogram {
        Histogram {
            counts: std::array::from_fn(|bucket| self.counts[bucket].load(Ordering::Relaxed)),
            sum_nanos: self.sum_nanos.load(Ordering::Relaxed),
        }
    }
}

/// A latency histogram at one moment, over [`LATENCY_BOUNDS_SECONDS`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Observations per bucket, not cumulative: `counts[i]` fell at or below bound `i` and above
    /// bound `i - 1`; the last one above every bound.
    pub counts: [u64; BUCKETS],
    /// The sum of every observation, in nanoseconds.
    pub sum_nanos: u64,
}

impl Histogram {
    /// Observations in all.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The sum of every observation, in seconds.
    #[must_use]
    pub fn sum_seconds(&self) -> f64 {
        Duration::from_nanos(self.sum_nanos).as_secs_f64()
    }

    /// `(upper bound in seconds, observations at or below it)` per bucket, the last with
    /// `f64::INFINITY` and [`Histogram::count`]: Prometheus' cumulative `le` buckets.
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let bounds = LATENCY_BOUNDS_SECONDS
            .iter()
            .copied()
            .chain([f64::INFINITY]);
        bounds.zip(&self.counts).scan(0, |total, (bound, count)| {
            *total += count;
            Some((bound, *total))
        })
    }
}

/// What the replica counts since the node started (not kept across restarts, as Prometheus
/// counters are not: a rate over a restart is handled by the scraper).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicaCounts {
    /// Entries this node learned are committed (all kinds: commands, leaders' no-ops,
    /// configurations).
    pub proposals_committed: u64,
    /// Entries applied to the state machine (a snapshot installed counts none).
    pub proposals_applied: u64,
    /// Proposals refused or lost: not the leader, too large, a transfer under way, or an
    /// accepted API proposal whose entry another leader overwrote.
    pub proposals_failed: u64,
    /// Times this node saw a new leader (itself included).
    pub leader_changes_seen: u64,
    /// Linearizable reads served through ReadIndex.
    pub read_index: u64,
    /// Linearizable reads refused (this node does not lead, or lost leadership first).
    pub read_index_failed: u64,
    /// Snapshots this node started sending to a follower too far behind for its log.
    pub snapshots_sent: u64,
}

/// The WAL thread's numbers, shared with the node's handle.
#[derive(Debug, Default)]
pub(crate) struct StorageMetrics {
    /// Each `fdatasync` of the log (or flush, without `sync`).
    pub(crate) fsync: LatencyHistogram,
    /// Each snapshot save, from its start to its last byte synced.
    pub(crate) snapshot_save: LatencyHistogram,
    /// Bytes of log records written since start.
    pub(crate) bytes_written: AtomicU64,
}

/// Everything a node counts, at one moment ([`Node::metrics`](crate::Node::metrics)).
#[derive(Clone, Debug, PartialEq)]
pub struct Metrics {
    /// The node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: u64,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Its commit index.
    pub commit_index: u64,
    /// The highest index applied to its state machine.
    pub applied_index: u64,
    /// Its last log index.
    pub last_index: u64,
    /// The last index of its newest snapshot (0: none).
    pub snapshot_index: u64,
    /// Proposals waiting to commit: on a leader, the entries it appended and has not committed
    /// yet; on any node, API proposals waiting for their outcome. 0 on a follower at rest.
    pub proposals_pending: u64,
    /// What the replica counted since start.
    pub counts: ReplicaCounts,
    /// Client sessions the state machine keeps (`None` if it keeps none).
    pub client_sessions: Option<u64>,
    /// Syncs of the log since start.
    pub wal_fsync: Histogram,
    /// Bytes of log records written since start.
    pub wal_bytes_written: u64,
    /// Snapshot saves since start.
    pub snapshot_save: Histogram,
    /// Round trips to each peer this node led, from a heartbeat to the peer's next answer to
    /// an AppendEntries.
    pub peer_round_trip: BTreeMap<NodeId, Histogram>,
    /// The transport's counters.
    pub net: balsa_net::CounterValues,
    /// Ticks the core was given since start (one per `NodeConfig::tick` of wall time).
    pub ticks: u64,
    /// Times the timer woke the node since start: only when something was due (a heartbeat,
    /// an election deadline, a retry), so far fewer than `ticks` on an idle node.
    pub timer_wakeups: u64,
}

impl Metrics {
    /// Whether the node knows a leader (itself or another).
    #[must_use]
    pub fn has_leader(&self) -> bool {
        self.leader.is_some()
    }

    /// Whether the node leads.
    #[must_use]
    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }
}

/// What the consensus thread answers a metrics call with; [`MetricsReader`] adds the WAL
/// thread's and the transport's numbers to make [`Metrics`].
///
/// [`MetricsReader`]: crate::MetricsReader
#[derive(Clone, Debug)]
pub struct ConsensusMetrics {
    /// The replica's status.
    pub status: crate::runtime::NodeStatus,
    /// See [`Metrics::proposals_pending`].
    pub proposals_pending: u64,
    /// What the replica counted.
    pub counts: ReplicaCounts,
    /// See [`Metrics::client_sessions`].
    pub client_sessions: Option<u64>,
    /// See [`Metrics::peer_round_trip`].
    pub peer_round_trip: BTreeMap<NodeId, Histogram>,
    /// See [`Metrics::ticks`].
    pub ticks: u64,
    /// See [`Metrics::timer_wakeups`].
    pub timer_wakeups: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_observation_lands_in_the_first_bucket_whose_bound_holds_it() {
        let histogram = LatencyHistogram::default();
        histogram.observe(Duration::from_micros(50)); // on the first bound: in it
        histogram.observe(Duration::from_micros(51));
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_secs(60)); // beyond every bound
        let now = histogram.histogram();
        assert_eq!(now.count(), 4);
        assert_eq!(now.counts[0], 1);
        assert_eq!(now.counts[1], 1);
        assert_eq!(now.counts[6], 1, "3 ms is at or below 5 ms, above 2 ms");
        assert_eq!(now.counts[BUCKETS - 1], 1);
        assert_eq!(now.sum_nanos, 50_000 + 51_000 + 3_000_000 + 60_000_000_000);
    }

    #[test]
    fn cumulative_buckets_end_at_infinity_with_the_count() {
        let histogram = LatencyHistogram::default();
        for micros in [10, 150, 150, 900] {
            histogram.observe(Duration::from_micros(micros));
        }
        let cumulative: Vec<(f64, u64)> = histogram.histogram().cumulative().collect();
        assert_eq!(cumulative.len(), BUCKETS);
        assert_eq!(cumulative[0], (0.000_05, 1));
        assert_eq!(cumulative[2], (0.000_2, 3));
        assert_eq!(cumulative[4], (0.001, 4));
        assert_eq!(cumulative[BUCKETS - 1], (f64::INFINITY, 4));
        assert!(cumulative.windows(2).all(|pair| pair[0].1 <= pair[1].1));
    }

    #[test]
    fn the_two_bound_tables_agree() {
        for (seconds, nanos) in LATENCY_BOUNDS_SECONDS.iter().zip(LATENCY_BOUNDS_NANOS) {
            assert_eq!(
                Duration::from_secs_f64(*seconds),
                Duration::from_nanos(nanos)
            );
        }
        assert!(
            LATENCY_BOUNDS_NANOS
                .windows(2)
                .all(|pair| pair[0] < pair[1])
        );
    }
}
