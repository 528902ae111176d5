//! The replay window: member datagrams that were already received, or come from an older boot
//! of their sender, are dropped (RFC 4303's anti-replay window, per sender, with the sender's
//! boot id in front).
//!
//! Every sealed datagram carries, inside its authenticated part, its sender's boot id (it grows
//! across the sender's restarts: [`Config::boot_id`](crate::Config::boot_id)) and a sequence
//! number (counting up from 1 within a boot). The net thread keeps, per sender id, the newest
//! boot seen, the highest sequence seen in it, and which of the [`WINDOW`] sequences below that
//! arrived. A datagram is accepted when it is of a newer boot (the window restarts there), or of
//! the same boot and either above the highest or in the window and not seen yet. Anything else
//! is a replay, a datagram so late that the window has passed it (UDP may lose it anyway), or a
//! datagram of a boot the sender has left: dropped and counted.
//!
//! Why member traffic needs it although Raft tolerates duplicates: a datagram of an earlier
//! boot speaks for a node that may since have lost its disk (a wiped node that came back under
//! its id); its old "I have entries up to 900" must not count toward a commit. Client traffic
//! needs none: a retried or replayed request is applied once by the session table's
//! `(client, seq)`, and a replayed read only reads.
//!
//! Invariants: state is kept per sender id that was in the peer table when it was heard from (an
//! unknown sender is dropped before it reaches the window), 144 bytes each; a datagram reaches
//! the window only once it is authenticated, so a forger cannot move a window.

use std::collections::HashMap;

use crate::DropReason;

/// Sequences below the highest seen that are still told apart (and accepted once each).
pub const WINDOW: u64 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;

/// One sender's window.
#[derive(Clone, Debug)]
struct Window {
    boot_id: u64,
    highest: u64,
    /// Bit `i` set: sequence `highest - i` arrived (bit 0 is `highest` itself).
    seen: [u64; WORDS],
}

impl Window {
    fn starting_at(boot_id: u64, sequence: u64) -> Window {
        let mut seen = [0; WORDS];
        seen[0] = 1;
        Window {
            boot_id,
            highest: sequence,
            seen,
        }
    }

    fn bit(&self, behind: u64) -> bool {
        self.seen[(behind / 64) as usize] >> (behind % 64) & 1 == 1
    }

    fn set(&mut self, behind: u64) {
        self.seen[(behind / 64) as usize] |= 1 << (behind % 64);
    }

    /// Moves the window up by `by` sequences.
    fn shift(&mut self, by: u64) {
        if by >= WINDOW {
            self.seen = [0; WORDS];
            return;
        }
        let words = (by / 64) as usize;
        let bits = by % 64;
        for i in (0..WORDS).rev() {
            let from = i.checked_sub(words);
            let high = from.map_or(0, |j| self.seen[j]);
            let low = from
                .and_then(|j| j.checked_sub(1))
                .map_or(0, |j| self.seen[j]);
            self.seen[i] = if bits == 0 {
                high
            } else {
                high << bits | low >> (64 - bits)
            };
        }
    }
}

/// The windows of every sender the net thread has heard from.
#[derive(Debug, Default)]
pub(crate) struct ReplayWindows {
    windows: HashMap<u64, Window>,
}

impl ReplayWindows {
    /// Accepts (and records) datagram `sequence` of boot `boot_id` from sender `from`, or says
    /// why not.
    pub(crate) fn admit(
        &mut self,
        from: u64,
        boot_id: u64,
        sequence: u64,
    ) -> Result<(), DropReason> {
        let Some(window) = self.windows.get_mut(&from) else {
            self.windows
                .insert(from, Window::starting_at(boot_id, sequence));
            return Ok(());
        };
        if boot_id < window.boot_id {
            return Err(DropReason::OldBoot);
        }
        if boot_id > window.boot_id {
            *window = Window::starting_at(boot_id, sequence);
            return Ok(());
        }
        if sequence > window.highest {
            window.shift(sequence - window.highest);
            window.highest = sequence;
            window.set(0);
            return Ok(());
        }
        let behind = window.highest - sequence;
        if behind >= WINDOW || window.bit(behind) {
            return Err(DropReason::Replayed);
        }
        window.set(behind);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sequence_is_accepted_once_in_any_order_within_the_window() {
        let mut windows = ReplayWindows::default();
        let order = [5, 3, 9, 4, 1000, 8, 6, 7, 999];
        for sequence in order {
            assert_eq!(windows.admit(2, 1, sequence), Ok(()), "{sequence}");
        }
        for sequence in order {
            assert_eq!(
                windows.admit(2, 1, sequence),
                Err(DropReason::Replayed),
                "{sequence}"
            );
        }
        // Another sender has its own window.
        assert_eq!(windows.admit(3, 1, 5), Ok(()));
    }

    #[test]
    fn a_sequence_the_window_has_passed_is_dropped() {
        let mut windows = ReplayWindows::default();
        assert_eq!(windows.admit(2, 1, 10), Ok(()));
        assert_eq!(windows.admit(2, 1, 10 + WINDOW), Ok(()));
        assert_eq!(windows.admit(2, 1, 11), Ok(()), "just inside");
        assert_eq!(
            windows.admit(2, 1, 10),
            Err(DropReason::Replayed),
            "just outside"
        );
    }

    #[test]
    fn a_newer_boot_restarts_the_window_and_an_older_one_is_dropped() {
        let mut windows = ReplayWindows::default();
        assert_eq!(windows.admit(2, 7, 500), Ok(()));
        assert_eq!(windows.admit(2, 8, 1), Ok(()), "the sender restarted");
        assert_eq!(windows.admit(2, 8, 1), Err(DropReason::Replayed));
        assert_eq!(windows.admit(2, 7, 501), Err(DropReason::OldBoot));
    }

    /// The shifted bitmap against a set of sequences kept the slow way.
    #[test]
    fn the_window_agrees_with_a_plain_set() {
        let mut windows = ReplayWindows::default();
        let mut seen = std::collections::BTreeSet::new();
        let mut highest = 0_u64;
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let step = state % 200;
            let sequence = (highest + 100).saturating_sub(step).max(1);
            let expected = if seen.contains(&sequence)
                || (highest >= WINDOW && sequence <= highest - WINDOW)
            {
                Err(DropReason::Replayed)
            } else {
                Ok(())
            };
            assert_eq!(
                windows.admit(1, 1, sequence),
                expected,
                "{sequence} after {highest}"
            );
            if expected.is_ok() {
                seen.insert(sequence);
                highest = highest.max(sequence);
            }
        }
    }
}
