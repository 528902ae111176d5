//! What the transport has seen, as atomics any thread can read at any time (`balsa status`).
//!
//! The net thread and the threads sending through an [`Outbox`](crate::Outbox) add to them with
//! relaxed atomic adds: each counter is exact on its own, but a [`CounterValues`] taken while
//! traffic flows is not one instant (`datagrams_in` may already count a datagram whose drop is not
//! counted yet).
//!
//! Beside the totals, the drops that say someone is speaking without the right to
//! ([`DropReason::is_suspicious`]: authentication failures, replays, old boots) are counted per
//! source address, for [`MAX_SOURCES`] addresses at most (a flood from forged addresses cannot
//! grow the table; what does not fit is counted under the unspecified address `0.0.0.0:0`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// Source addresses whose suspicious drops are counted one by one; the rest share one entry.
pub const MAX_SOURCES: usize = 64;

/// Why an inbound datagram was dropped (or, for [`DropReason::Fault`], an outbound one too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than the envelope header.
    TooShort,
    /// The first four bytes are not the magic.
    BadMagic,
    /// A protocol version this build does not speak.
    BadVersion,
    /// Another cluster's datagram.
    WrongCluster,
    /// The body did not decode as a message: truncated, malformed, a length prefix longer than
    /// the bytes left, an unknown kind byte, or bytes left over after the message.
    Undecodable,
    /// Longer than the datagram limit.
    TooLarge,
    /// A peer message whose sender id is not in the peer table.
    UnknownPeer,
    /// A peer message whose source address is not the one the peer table has for its sender id.
    WrongAddress,
    /// The inbox was full; the net thread never waits for it.
    InboxFull,
    /// The inbox's receiver is gone.
    InboxClosed,
    /// Dropped by fault injection (a partition or a random drop).
    Fault,
    /// Delivered, then refused by the application's own rule (a client's batch of more
    /// requests than a node takes from one datagram).
    Refused,
    /// Not sealed under a key of its kind's ring: forged, damaged, sealed under another key,
    /// plaintext to a node that requires keys, or sealed to one that has none. Dropped before
    /// the body is decoded, with nothing of it left decrypted.
    AuthFailed,
    /// A member datagram whose sequence number was seen already from its sender, or is older
    /// than the replay window.
    Replayed,
    /// A member datagram from a boot of its sender older than one already heard from.
    OldBoot,
    /// A message its kind may not carry (a Raft message in a client request, whose key any
    /// client holds): refused by the application.
    WrongKind,
}

impl DropReason {
    /// Every reason, in the order of [`CounterValues::drops`].
    pub const ALL: [DropReason; 16] = [
        DropReason::TooShort,
        DropReason::BadMagic,
        DropReason::BadVersion,
        DropReason::WrongCluster,
        DropReason::Undecodable,
        DropReason::TooLarge,
        DropReason::UnknownPeer,
        DropReason::WrongAddress,
        DropReason::InboxFull,
        DropReason::InboxClosed,
        DropReason::Fault,
        DropReason::Refused,
        DropReason::AuthFailed,
        DropReason::Replayed,
        DropReason::OldBoot,
        DropReason::WrongKind,
    ];

    /// A short snake_case name, for status output.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            DropReason::TooShort => "too_short",
            DropReason::BadMagic => "bad_magic",
            DropReason::BadVersion => "bad_version",
            DropReason::WrongCluster => "wrong_cluster",
            DropReason::Undecodable => "undecodable",
            DropReason::TooLarge => "too_large",
            DropReason::UnknownPeer => "unknown_peer",
            DropReason::WrongAddress => "wrong_address",
            DropReason::InboxFull => "inbox_full",
            DropReason::InboxClosed => "inbox_closed",
            DropReason::Fault => "fault",
            DropReason::Refused => "refused",
            DropReason::AuthFailed => "auth_failed",
            DropReason::Replayed => "replayed",
            DropReason::OldBoot => "old_boot",
            DropReason::WrongKind => "wrong_kind",
        }
    }

    /// Whether this drop says someone spoke without the right to (counted per source address
    /// too): [`DropReason::AuthFailed`], [`DropReason::Replayed`], [`DropReason::OldBoot`],
    /// [`DropReason::WrongKind`].
    #[must_use]
    pub fn is_suspicious(self) -> bool {
        matches!(
            self,
            DropReason::AuthFailed
                | DropReason::Replayed
                | DropReason::OldBoot
                | DropReason::WrongKind
        )
    }

    fn slot(self) -> usize {
        self as usize
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The live counters of one transport. Shared (`Arc`) between the net thread, every
/// [`Outbox`](crate::Outbox) and whoever reads them.
#[derive(Debug, Default)]
pub struct Counters {
    datagrams_in: AtomicU64,
    bytes_in: AtomicU64,
    delivered: AtomicU64,
    datagrams_out: AtomicU64,
    bytes_out: AtomicU64,
    send_errors: AtomicU64,
    queue_full: AtomicU64,
    fault_duplicated: AtomicU64,
    fault_delayed: AtomicU64,
    drops: [AtomicU64; DropReason::ALL.len()],
    /// Suspicious drops by source address (see the module doc); touched only on such drops.
    by_source: Mutex<BTreeMap<SocketAddr, SourceDrops>>,
}

/// The suspicious drops of one source address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceDrops {
    /// [`DropReason::AuthFailed`].
    pub auth_failed: u64,
    /// [`DropReason::Replayed`] and [`DropReason::OldBoot`].
    pub replayed: u64,
    /// [`DropReason::WrongKind`].
    pub wrong_kind: u64,
}

impl Counters {
    /// A copy of every counter.
    #[must_use]
    pub fn values(&self) -> CounterValues {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        CounterValues {
            datagrams_in: load(&self.datagrams_in),
            bytes_in: load(&self.bytes_in),
            delivered: load(&self.delivered),
            datagrams_out: load(&self.datagrams_out),
            bytes_out: load(&self.bytes_out),
            send_errors: load(&self.send_errors),
            queue_full: load(&self.queue_full),
            fault_duplicated: load(&self.fault_duplicated),
            fault_delayed: load(&self.fault_delayed),
            drops: self.drops.each_ref().map(load),
        }
    }

    /// A datagram of `bytes` bytes arrived (counted before it is checked).
    pub(crate) fn received(&self, bytes: usize) {
        self.datagrams_in.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// A decoded message went into the inbox.
    pub(crate) fn delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }

    /// A datagram of `bytes` bytes left through the socket.
    pub(crate) fn sent(&self, bytes: usize) {
        self.datagrams_out.fetch_add(1, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// `send_to` failed with something other than "would block".
    pub(crate) fn send_failed(&self) {
        self.send_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A datagram for the net thread found its queue full.
    pub(crate) fn queue_full(&self) {
        self.queue_full.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one datagram dropped for `reason` (the application counts its own refusals).
    pub fn dropped(&self, reason: DropReason) {
        self.drops[reason.slot()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one datagram from `source` dropped for `reason`, also per source when the reason
    /// [`is_suspicious`](DropReason::is_suspicious).
    pub fn dropped_from(&self, reason: DropReason, source: SocketAddr) {
        self.dropped(reason);
        if !reason.is_suspicious() {
            return;
        }
        let mut table = self
            .by_source
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let source = SocketAddr::new(source.ip().to_canonical(), source.port());
        let key = if table.len() < MAX_SOURCES || table.contains_key(&source) {
            source
        } else {
            SocketAddr::from(([0, 0, 0, 0], 0))
        };
        let entry = table.entry(key).or_default();
        match reason {
            DropReason::AuthFailed => entry.auth_failed += 1,
            DropReason::WrongKind => entry.wrong_kind += 1,
            _ => entry.replayed += 1,
        }
    }

    /// Suspicious drops per source address, sorted by address (the unspecified address
    /// `0.0.0.0:0` gathers the sources beyond [`MAX_SOURCES`]).
    #[must_use]
    pub fn by_source(&self) -> Vec<(SocketAddr, SourceDrops)> {
        let table = self
            .by_source
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        table
            .iter()
            .map(|(source, drops)| (*source, *drops))
            .collect()
    }

    /// Fault injection sent a datagram twice.
    pub(crate) fn fault_duplicated(&self) {
        self.fault_duplicated.fetch_add(1, Ordering::Relaxed);
    }

    /// Fault injection held a datagram back.
    pub(crate) fn fault_delayed(&self) {
        self.fault_delayed.fetch_add(1, Ordering::Relaxed);
    }
}

/// The counters at one moment (see the module doc for how exact that moment is).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterValues {
    /// Datagrams received, good or bad.
    pub datagrams_in: u64,
    /// Bytes received, good or bad.
    pub bytes_in: u64,
    /// Messages decoded and handed to the inbox.
    pub delivered: u64,
    /// Datagrams sent (each copy of a duplicated one counts).
    pub datagrams_out: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// `send_to` calls that failed (the datagram is lost, as UDP may lose it anyway).
    pub send_errors: u64,
    /// Datagrams refused because the queue to the net thread was full ([`Error::QueueFull`]).
    ///
    /// [`Error::QueueFull`]: crate::Error::QueueFull
    pub queue_full: u64,
    /// Datagrams fault injection sent twice.
    pub fault_duplicated: u64,
    /// Datagrams fault injection held back (delay or reorder).
    pub fault_delayed: u64,
    /// Drops, indexed like [`DropReason::ALL`]; read one with [`CounterValues::dropped`].
    pub drops: [u64; DropReason::ALL.len()],
}

impl CounterValues {
    /// Datagrams dropped for `reason`.
    #[must_use]
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason.slot()]
    }

    /// Datagrams dropped for any reason.
    #[must_use]
    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
    }
}

impl fmt::Display for CounterValues {
    /// One line: `in 12/3456B delivered 11 out 10/2345B send_errors 0 queue_full 0 drops:
    /// bad_magic=1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "in {}/{}B delivered {} out {}/{}B send_errors {} queue_full {} drops:",
            self.datagrams_in,
            self.bytes_in,
            self.delivered,
            self.datagrams_out,
            self.bytes_out,
            self.send_errors,
            self.queue_full
        )?;
        let mut any = false;
        for reason in DropReason::ALL {
            let n = self.dropped(reason);
            if n > 0 {
                write!(f, " {reason}={n}")?;
                any = true;
            }
        }
        if !any {
            f.write_str(" none")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_slot() {
        for (i, reason) in DropReason::ALL.into_iter().enumerate() {
            assert_eq!(reason.slot(), i, "{reason}");
        }
    }

    /// Every reason has its own name in status output, the application's refusals included.
    #[test]
    fn every_reason_has_its_own_name_and_refused_is_one() {
        let names: std::collections::BTreeSet<&str> =
            DropReason::ALL.into_iter().map(DropReason::name).collect();
        assert_eq!(names.len(), DropReason::ALL.len(), "{names:?}");
        assert!(DropReason::ALL.contains(&DropReason::Refused));
        assert_eq!(DropReason::Refused.to_string(), "refused");
        let counters = Counters::default();
        counters.dropped(DropReason::Refused);
        let snap = counters.values();
        assert_eq!(snap.dropped(DropReason::Refused), 1);
        assert_eq!(snap.dropped_total(), 1);
        assert!(snap.to_string().ends_with("drops: refused=1"), "{snap}");
    }

    #[test]
    fn suspicious_drops_are_counted_per_source_within_a_bound() {
        let counters = Counters::default();
        let source = |port: u16| SocketAddr::from(([10, 0, 0, 1], port));
        counters.dropped_from(DropReason::AuthFailed, source(1));
        counters.dropped_from(DropReason::Replayed, source(1));
        counters.dropped_from(DropReason::OldBoot, source(1));
        counters.dropped_from(DropReason::WrongKind, source(1));
        counters.dropped_from(DropReason::Undecodable, source(2)); // a total only
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:1".parse().expect("address");
        counters.dropped_from(DropReason::AuthFailed, mapped);
        assert_eq!(
            counters.by_source(),
            vec![(
                source(1),
                SourceDrops {
                    auth_failed: 2,
                    replayed: 2,
                    wrong_kind: 1
                }
            )]
        );
        for port in (100..).take(2 * MAX_SOURCES) {
            counters.dropped_from(DropReason::AuthFailed, source(port));
        }
        let table = counters.by_source();
        assert_eq!(
            table.len(),
            MAX_SOURCES + 1,
            "the bound, and one entry for the rest"
        );
        let rest = SocketAddr::from(([0, 0, 0, 0], 0));
        assert_eq!(
            table[0],
            (
                rest,
                SourceDrops {
                    auth_failed: MAX_SOURCES as u64 + 1,
                    ..SourceDrops::default()
                }
            )
        );
        assert_eq!(
            counters.values().dropped(DropReason::AuthFailed),
            2 + 2 * MAX_SOURCES as u64
        );
    }

    #[test]
    fn values_read_what_was_counted() {
        let counters = Counters::default();
        counters.received(10);
        counters.dropped(DropReason::BadMagic);
        counters.dropped(DropReason::BadMagic);
        let snap = counters.values();
        assert_eq!((snap.datagrams_in, snap.bytes_in), (1, 10));
        assert_eq!(snap.dropped(DropReason::BadMagic), 2);
        assert_eq!(snap.dropped_total(), 2);
        assert!(snap.to_string().ends_with("drops: bad_magic=2"), "{snap}");
    }
}
