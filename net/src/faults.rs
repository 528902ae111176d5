//! Fault injection, for tests: drop, duplicate, delay and reorder outbound datagrams, and
//! partition a peer in one direction or both. Seeded, and switchable at run time through a
//! [`Faults`] handle.
//!
//! Where faults act: all of them inside the net thread. While any fault is set, every
//! [`Outbox`](crate::Outbox) sends through the net thread (never directly), which decides each
//! outbound datagram's fate ([`Faults::outbound`]); a partition's inbound side drops peer messages
//! as they arrive. While none is set, the cost is one relaxed atomic load per datagram.
//!
//! Determinism: the random choices come from one generator seeded by [`Faults::reseed`] (or the
//! config's `fault_seed`), drawn in the order datagrams reach the net thread. The same seed and the
//! same order of sends give the same faults; what the network and the threads do around them is
//! not under the seed's control.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// The faults applied to outbound datagrams, to all destinations or to one peer.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkFaults {
    /// Probability (0.0–1.0) that a datagram is lost.
    pub drop: f64,
    /// Probability that a datagram is sent twice.
    pub duplicate: f64,
    /// Latency added to every datagram (order kept).
    pub delay: Duration,
    /// Probability that a datagram is held back a random time up to `reorder_window`, so that
    /// later ones overtake it.
    pub reorder: f64,
    /// The longest a reordered datagram is held back.
    pub reorder_window: Duration,
}

impl LinkFaults {
    /// No fault at all.
    pub const NONE: LinkFaults = LinkFaults {
        drop: 0.0,
        duplicate: 0.0,
        delay: Duration::ZERO,
        reorder: 0.0,
        reorder_window: Duration::ZERO,
    };

    fn is_none(&self) -> bool {
        self.drop <= 0.0
            && self.duplicate <= 0.0
            && self.delay.is_zero()
            && (self.reorder <= 0.0 || self.reorder_window.is_zero())
    }
}

/// Which traffic a partition cuts, seen from this transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Peer messages from the peer are dropped on arrival.
    Inbound,
    /// Datagrams to the peer are dropped before they are sent.
    Outbound,
    /// Both.
    Both,
}

impl Direction {
    fn cuts_inbound(self) -> bool {
        matches!(self, Direction::Inbound | Direction::Both)
    }

    fn cuts_outbound(self) -> bool {
        matches!(self, Direction::Outbound | Direction::Both)
    }
}

/// What happens to one outbound datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Lost.
    Drop,
    /// Sent once (or twice), after `delay` (zero: now).
    Send { duplicate: bool, delay: Duration },
}

/// A handle on one transport's faults; clones share them.
#[derive(Clone, Debug)]
pub struct Faults {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// True while any fault is set: the one thing read on the fast path.
    active: AtomicBool,
    // Poisoning is ignored: nothing panics while holding the lock (durations add saturating,
    // probabilities are compared, not computed with), so the settings are always whole.
    settings: Mutex<Settings>,
}

#[derive(Debug)]
struct Settings {
    rng: SplitMix64,
    all: LinkFaults,
    links: HashMap<u64, LinkFaults>,
    partitions: HashMap<u64, Direction>,
}

impl Settings {
    fn any(&self) -> bool {
        !self.all.is_none()
            || self.links.values().any(|link| !link.is_none())
            || !self.partitions.is_empty()
    }
}

impl Faults {
    pub(crate) fn new(seed: u64) -> Faults {
        Faults {
            shared: Arc::new(Shared {
                active: AtomicBool::new(false),
                settings: Mutex::new(Settings {
                    rng: SplitMix64(seed),
                    all: LinkFaults::NONE,
                    links: HashMap::new(),
                    partitions: HashMap::new(),
                }),
            }),
        }
    }

    /// Whether any fault is set.
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.shared.active.load(Ordering::Relaxed)
    }

    /// Restarts the random choices from `seed`.
    pub fn reseed(&self, seed: u64) {
        self.update(|settings| settings.rng = SplitMix64(seed));
    }

    /// Applies `faults` to every outbound datagram, except to peers with their own
    /// ([`Faults::set_link`]).
    pub fn set_all(&self, faults: LinkFaults) {
        self.update(|settings| settings.all = faults);
    }

    /// Applies `faults` to datagrams to `peer`, instead of those of [`Faults::set_all`].
    pub fn set_link(&self, peer: u64, faults: LinkFaults) {
        self.update(|settings| {
            settings.links.insert(peer, faults);
        });
    }

    /// Cuts traffic with `peer` in `direction` until [`Faults::heal`] (replacing any earlier
    /// partition with it).
    pub fn partition(&self, peer: u64, direction: Direction) {
        self.update(|settings| {
            settings.partitions.insert(peer, direction);
        });
    }

    /// Ends the partition with `peer`, if any.
    pub fn heal(&self, peer: u64) {
        self.update(|settings| {
            settings.partitions.remove(&peer);
        });
    }

    /// Removes every fault (the seed's sequence goes on where it was).
    pub fn clear(&self) {
        self.update(|settings| {
            settings.all = LinkFaults::NONE;
            settings.links.clear();
            settings.partitions.clear();
        });
    }

    fn update(&self, change: impl FnOnce(&mut Settings)) {
        let mut settings = self.lock();
        change(&mut settings);
        self.shared.active.store(settings.any(), Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, Settings> {
        self.shared
            .settings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a peer message from `peer` is to be dropped on arrival.
    pub(crate) fn cuts_inbound(&self, peer: u64) -> bool {
        self.lock()
            .partitions
            .get(&peer)
            .is_some_and(|direction| direction.cuts_inbound())
    }

    /// Decides the fate of one outbound datagram, to `peer` (`None`: to a client or server
    /// address outside the peer table).
    pub(crate) fn outbound(&self, peer: Option<u64>) -> Verdict {
        let mut settings = self.lock();
        let settings = &mut *settings;
        if let Some(peer) = peer
            && settings
                .partitions
                .get(&peer)
                .is_some_and(|direction| direction.cuts_outbound())
        {
            return Verdict::Drop;
        }
        let link = peer
            .and_then(|peer| settings.links.get(&peer))
            .unwrap_or(&settings.all);
        let rng = &mut settings.rng;
        if rng.chance(link.drop) {
            return Verdict::Drop;
        }
        let duplicate = rng.chance(link.duplicate);
        let mut delay = link.delay;
        if rng.chance(link.reorder) {
            // unit() < 1, so this is at most the window and cannot overflow or panic.
            delay = delay.saturating_add(link.reorder_window.mul_f64(rng.unit()));
        }
        Verdict::Send { duplicate, delay }
    }
}

/// SplitMix64: small, fast, and good enough to pick which datagrams to drop.
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        // The top 53 bits fill an f64's mantissa exactly.
        (self.next() >> 11) as f64 / (1_u64 << 53) as f64
    }

    /// True with probability `p` (never for p <= 0, always for p >= 1). Draws nothing for
    /// p <= 0, so a fault that is off does not shift the sequence of the others.
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_until_something_is_set_and_off_again_after_clear() {
        let faults = Faults::new(1);
        assert!(!faults.is_active());
        assert_eq!(
            faults.outbound(Some(2)),
            Verdict::Send {
                duplicate: false,
                delay: Duration::ZERO
            }
        );
        faults.partition(2, Direction::Inbound);
        assert!(faults.is_active());
        assert!(faults.cuts_inbound(2));
        assert!(!faults.cuts_inbound(3));
        assert_ne!(faults.outbound(Some(2)), Verdict::Drop, "inbound only");
        faults.partition(2, Direction::Both);
        assert_eq!(faults.outbound(Some(2)), Verdict::Drop);
        faults.clear();
        assert!(!faults.is_active());
        assert!(!faults.cuts_inbound(2));
    }

    #[test]
    fn the_same_seed_makes_the_same_choices() {
        let choices = |seed| {
            let faults = Faults::new(seed);
            faults.set_all(LinkFaults {
                drop: 0.5,
                duplicate: 0.3,
                ..LinkFaults::NONE
            });
            (0..200).map(|_| faults.outbound(None)).collect::<Vec<_>>()
        };
        assert_eq!(choices(7), choices(7));
        assert_ne!(choices(7), choices(8));
        let drops = choices(7).iter().filter(|v| **v == Verdict::Drop).count();
        assert!(
            (60..140).contains(&drops),
            "{drops} of 200 dropped at p = 0.5"
        );
    }

    #[test]
    fn a_link_setting_overrides_the_default_for_its_peer_only() {
        let faults = Faults::new(1);
        faults.set_all(LinkFaults {
            drop: 1.0,
            ..LinkFaults::NONE
        });
        faults.set_link(
            2,
            LinkFaults {
                delay: Duration::from_millis(5),
                ..LinkFaults::NONE
            },
        );
        assert_eq!(faults.outbound(Some(3)), Verdict::Drop);
        assert_eq!(faults.outbound(None), Verdict::Drop);
        assert_eq!(
            faults.outbound(Some(2)),
            Verdict::Send {
                duplicate: false,
                delay: Duration::from_millis(5)
            }
        );
    }
}
