//! Repeated warnings, thinned out. Sending to a peer that a partition cuts off fails at every
//! message (a leader's heartbeats, a candidate's vote requests): hundreds of identical lines per
//! partition. [`Throttle`] lets one line per key (a peer) through per interval
//! ([`WARN_INTERVAL`]), and that line says how many like it were left out since the last one
//! ([`repeated`]). A failure that stops leaves its last count untold: the next line, if any,
//! carries it.
//!
//! Pure: the caller passes the time in ([`now`] reads the clock for the runtime's threads), so
//! the rule is tested without a clock.
//!
//! Invariant: for each key, at most one line per interval, and every failure is either logged
//! or counted into the next line about that key.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// At most one line per key this often.
pub const WARN_INTERVAL: Duration = Duration::from_secs(5);

/// Which failures to log, per key: see the module doc.
#[derive(Debug)]
pub struct Throttle<K> {
    interval: Duration,
    keys: BTreeMap<K, Seen>,
}

/// The last line logged about a key, and what was left out since.
#[derive(Clone, Copy, Debug)]
struct Seen {
    logged_at: Instant,
    left_out: u64,
}

impl<K: Ord> Throttle<K> {
    /// A throttle letting one line per key through every `interval`.
    pub fn new(interval: Duration) -> Throttle<K> {
        Throttle {
            interval,
            keys: BTreeMap::new(),
        }
    }

    /// Another failure about `key`, at `now`. `Some(n)`: log it, saying `n` failures about
    /// `key` were left out since the last line; `None`: leave it out (it is counted).
    pub fn hit(&mut self, key: K, now: Instant) -> Option<u64> {
        match self.keys.get_mut(&key) {
            Some(seen) if now.saturating_duration_since(seen.logged_at) < self.interval => {
                seen.left_out += 1;
                None
            }
            Some(seen) => {
                let left_out = seen.left_out;
                *seen = Seen {
                    logged_at: now,
                    left_out: 0,
                };
                Some(left_out)
            }
            None => {
                let seen = Seen {
                    logged_at: now,
                    left_out: 0,
                };
                self.keys.insert(key, seen);
                Some(0)
            }
        }
    }
}

/// What a line adds about the failures left out before it: nothing for none, else
/// ` (N more since the last such line)`.
pub fn repeated(left_out: u64) -> String {
    match left_out {
        0 => String::new(),
        n => format!(" ({n} more since the last such line)"),
    }
}

/// The time a runtime thread passes to [`Throttle::hit`].
#[allow(
    clippy::disallowed_methods,
    reason = "the runtime may read the clock; the core may not"
)]
pub fn now() -> Instant {
    Instant::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn one_line_per_key_per_interval_with_the_count_left_out() {
        let start = now();
        let mut throttle = Throttle::new(secs(5));
        assert_eq!(throttle.hit(2, start), Some(0), "the first is logged");
        for k in 1..=9 {
            assert_eq!(
                throttle.hit(2, start + Duration::from_millis(500 * k)),
                None
            );
        }
        assert_eq!(
            throttle.hit(2, start + secs(5)),
            Some(9),
            "an interval on, with the nine left out"
        );
        assert_eq!(throttle.hit(2, start + secs(6)), None);
        assert_eq!(
            throttle.hit(2, start + secs(60)),
            Some(1),
            "a later one carries the count"
        );
        assert_eq!(throttle.hit(2, start + secs(65)), Some(0));
    }

    #[test]
    fn keys_are_throttled_apart() {
        let start = now();
        let mut throttle = Throttle::new(secs(5));
        assert_eq!(throttle.hit(2, start), Some(0));
        assert_eq!(throttle.hit(3, start), Some(0), "another peer");
        assert_eq!(throttle.hit(2, start + secs(1)), None);
        assert_eq!(throttle.hit(3, start + secs(1)), None);
        assert_eq!(throttle.hit(3, start + secs(2)), None);
        assert_eq!(throttle.hit(2, start + secs(5)), Some(1));
        assert_eq!(throttle.hit(3, start + secs(5)), Some(2));
    }

    #[test]
    fn a_clock_going_back_leaves_the_failure_out() {
        let start = now() + secs(10);
        let mut throttle = Throttle::new(secs(5));
        assert_eq!(throttle.hit(1, start), Some(0));
        assert_eq!(throttle.hit(1, start - secs(3)), None);
    }

    #[test]
    fn a_line_says_how_many_were_left_out() {
        assert_eq!(repeated(0), "");
        assert_eq!(repeated(798), " (798 more since the last such line)");
    }
}
