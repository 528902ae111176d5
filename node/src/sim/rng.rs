//! The simulator's one source of randomness: a SplitMix64 generator seeded by the run's seed.
//!
//! Every random choice of a run (network fate of each message, partitions, crashes, persist
//! delays, client operations, the cores' own jitter seeds) is drawn from one `SimRng`, in the
//! order the events happen, so a seed replays bit for bit. Probabilities are integers per mille,
//! so no floating point enters a run.

/// The core's SplitMix64 generator with the helpers the simulator needs. Not for cryptography.
#[derive(Clone, Debug)]
pub struct SimRng {
    inner: crate::raft::rng::Rng,
}

impl SimRng {
    /// A generator for `seed`. Nearby seeds give unrelated streams (the output is mixed).
    pub fn new(seed: u64) -> SimRng {
        SimRng {
            inner: crate::raft::rng::Rng::new(seed),
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// A number in `[low, high)`. Precondition: `low < high`. (The modulo bias is below 2^-40
    /// for the small spans the simulator uses, far too small to matter.)
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        assert!(low < high, "empty range {low}..{high}");
        low + self.next_u64() % (high - low)
    }

    /// True with probability `per_mille` / 1000.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.next_u64() % 1000 < per_mille
    }

    /// An index into a collection of `len` items. Precondition: `len > 0`.
    pub fn index(&mut self, len: usize) -> usize {
        assert!(len > 0, "no item to pick from");
        let picked = self.next_u64() % len as u64;
        // Below `len`, which is a usize, so it converts back.
        usize::try_from(picked).expect("below a usize length")
    }

    /// One of `items`, uniformly. Precondition: `items` is not empty.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.index(items.len())]
    }

    /// Shuffles `items` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for last in (1..items.len()).rev() {
            let other = self.index(last + 1);
            items.swap(last, other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SimRng;

    #[test]
    fn the_same_seed_gives_the_same_stream() {
        let mut a = SimRng::new(42);
        let mut b = SimRng::new(42);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn ranges_stay_in_bounds_and_shuffles_keep_the_items() {
        let mut rng = SimRng::new(7);
        for _ in 0..1000 {
            let x = rng.range(3, 9);
            assert!((3..9).contains(&x));
        }
        let mut items: Vec<u32> = (0..20).collect();
        rng.shuffle(&mut items);
        let mut sorted = items.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..20).collect::<Vec<u32>>());
    }
}
