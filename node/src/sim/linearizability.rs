//! Linearizability checking of client histories against a key-value register model.
//!
//! # What is checked
//!
//! The model is one register per key; every key starts absent. Four operations act on it:
//!
//! - **write** `v`: the key holds `v` (answer `WriteOk`);
//! - **read**: answers what the key holds, `ReadOk(None)` if it is absent;
//! - **cas** `expected -> new` (compare-and-swap; `expected` `None` means "absent"): if the key
//!   holds `expected`, it now holds `new` (answer `CasOk`); otherwise nothing changes and the
//!   answer is `CasFail` with what the key holds, so a failed cas is also a read;
//! - **delete**: the key is absent, whether or not it was present (answer `DeleteOk`).
//!
//! A history carries each value into a key at most once: the values of writes and the new values
//! of cas operations (whether they swapped or not) are unique per key. Absence is not a value and
//! recurs after every delete.
//!
//! A history is *linearizable* if every operation can be given a single instant (its
//! linearization point) between its invocation and its return such that the operations, executed
//! one at a time in the order of those instants, return what they actually returned. An
//! operation that never returned (`ret: None`) may take effect at any instant after its
//! invocation, or not at all; for a cas, taking effect means swapping (a cas that found another
//! value changed nothing, which is the same as not taking effect).
//!
//! Times are the logical times in [`HistoryOp`]. Two operations are ordered in real time only if
//! one returns *strictly* before the other is invoked: an operation returning at `t` and another
//! invoked at the same `t` are treated as concurrent. This is the permissive reading of a tie, so
//! a tie can never produce a spurious violation.
//!
//! # Algorithm
//!
//! The checker is the Wing & Gong search with the improvements of Lowe ("Testing for
//! linearizability", 2017) and Porcupine (Athalye, 2017):
//!
//! 1. **P-compositionality.** Linearizability is local: a history is linearizable iff each
//!    object's sub-history is. The history is partitioned by key and each key is checked on its
//!    own, which turns one exponential search into many small ones.
//! 2. **Preprocessing of each key's sub-history**, which only removes or tightens things that
//!    provably cannot change the verdict. Two notions carry it:
//!
//!    - An operation *observes* the value its result pins down at its linearization point: a
//!      read what it returned, a cas that swapped its expected value, a failed cas the value it
//!      reported. Writes and deletes observe nothing: they succeed whatever the key holds.
//!    - A value `v` gets into the key only through its *writer*, the one write of `v` or the
//!      one cas with new value `v` (and that cas only if it swapped). So in every linearization,
//!      every observation of `v` comes after `v`'s writer, and the last change of the key before
//!      it is that writer. Deletes and cas operations do not weaken this: it is what every step
//!      below reasons from. Absence has no such writer (the key starts absent, and any delete
//!      makes it absent again), so no step draws conclusions from an observation of absence
//!      except where stated, and then only from the deletes of the key.
//!
//!    The steps:
//!
//!    - A read that never returned has no effect and nothing to check: it is dropped.
//!    - A write or cas that never returned *must take effect* if its value is observed by an
//!      operation that returned, or by a cas that never returned and must itself take effect (a
//!      chain of unanswered swaps ending in an observed value). Such an operation is kept, a cas
//!      as one that swapped, and gets as return time a *deadline*: the earliest among the return
//!      times of the answered operations observing its value and the deadlines of the kept
//!      unanswered cas operations observing it (computed earliest first, like shortest paths
//!      with edges of length zero from a cas's new value to its expected value). This adds no
//!      constraint: in every linearization the operation precedes each of those observers,
//!      which precede everything invoked after their (effective) return.
//!    - Every other write or cas that never returned is dropped. Take any linearization,
//!      without the unanswered operations that had no effect. Remove the dropped ones. An
//!      operation that observes a value `v` still sees it: its writer is not dropped (it is
//!      answered or must take effect, by the rule above), and it was the last change before the
//!      observer. An operation that observes absence still sees it: the last change before it
//!      was a delete, and no delete was removed, or there was none. Writes and deletes accept
//!      any value. So what remains is still a linearization, and conversely a linearization of
//!      what remains is one of the history, in which the dropped operations did not take effect.
//!    - A delete that never returned is kept, without a return time (see "Search"), unless it
//!      was invoked after every operation observing absence returned (the effective return, for
//!      a kept unanswered cas expecting absence): then it is dropped. In a linearization where it
//!      takes effect, every observer of absence precedes it; until the next change nothing
//!      observes the absence it leaves, and the next change, if it observes anything (a cas), does
//!      not observe absence; so removing it changes no result.
//!    - Some violations are found directly, with a more telling message than the search's. Each
//!      is a contradiction in every linearization:
//!      - an observation of a value that no operation on the key can write (never carried, or
//!        carried only by a cas that failed): it had no writer to follow;
//!      - an observation of a value whose (effective) return precedes the invocation of the
//!        value's writer: it must come after that writer;
//!      - a failed cas that reported the value it expected: the register would have swapped;
//!      - a stale observation of a value: some operation that changes the key (write, cas that
//!        swapped or must have, delete; answered, or with a deadline) was invoked after the
//!        writer of the value returned (its deadline, if it never did) and returned before the
//!        observer was invoked. That change sits between the writer and the observer, and
//!        nothing else can bring the value back, since it has one writer;
//!      - a stale observation of absence: some operation that sets a value (write, cas that
//!        swapped or must have) returned before the observer was invoked, and was invoked after
//!        every delete of the key returned, except those invoked after the observer returned
//!        (its deadline, for a kept unanswered cas). The deletes are those left by the step
//!        above; one that never returned never returns, so if it may precede the observer, the
//!        observation is not called stale. Every delete then precedes the setter or follows
//!        the observer, so none comes between them, and only a delete makes the key absent.
//!
//!      The stale observations are also the violations whose refutation by search is slowest
//!      when many operations are concurrent.
//!
//!    Every step runs on every key; what changes with deletes and cas is what they conclude:
//!
//!    - The steps that reason about values (which unanswered writes and cas operations are
//!      kept and their deadlines, observations of a value never written or before its writer,
//!      stale observations of a value) rely only on values having one writer, which holds
//!      whatever else the key sees: deletes are just one more kind of change, and a cas is a
//!      writer of its new value and an observer of its expected one (or, failed, of what it
//!      reported).
//!    - The steps that reason about absence (dropping unanswered deletes, stale observations
//!      of absence) are driven by the key's deletes: on a key without any, no delete is
//!      dropped because there is none, and an observation of absence is stale as soon as some
//!      value was set before it was invoked, as for a register that is never deleted; with
//!      deletes, an observation of absence is stale only if no delete can fall between it and
//!      an earlier setter, and an unanswered delete is dropped only if it cannot precede any
//!      observation of absence.
//!    - A failed cas reporting its expected value contradicts the model itself.
//!
//!    After this every remaining operation has a finite return time, except the deletes that
//!    never returned.
//! 3. **Search.** The call and return events of the key's operations form a doubly linked list
//!    sorted by time (calls before returns at equal times). The search repeatedly takes the
//!    first event of the list: if it is a call, the operation may be linearized next if the
//!    register model accepts it; it is then "lifted" (its call and return events are unlinked)
//!    and pushed on a stack. If the first return event is reached instead, the operation that
//!    returns there cannot be postponed any further, so the search backtracks: it pops the last
//!    linearized operation, relinks it, and tries the next call after it. The history is
//!    linearizable iff the list can be emptied. A delete that never returned has its return
//!    event after all the others (at time `u64::MAX`, and numbered after every other
//!    operation, which breaks the tie with a return at that time): nothing has to wait for it,
//!    and once only such deletes are left they are linearized one after another, which stands
//!    for their not taking effect (a delete is accepted in any state, and nothing follows).
//!    There is one more constraint on them, step 4.
//! 4. **Unanswered deletes in invocation order** (a symmetry reduction). The deletes that never
//!    returned all do the same thing, nothing waits for them, and the only constraint on where
//!    one goes, after every operation that returned before its call, is weaker the earlier it
//!    was invoked. So if some linearization uses some of them, one that uses the earliest
//!    invoked ones, in invocation order, does too: swapping two that are out of order, or
//!    replacing one by an unused one invoked earlier, changes no result and breaks no real-time
//!    constraint. The search therefore linearizes such a delete only after all those invoked
//!    before it. Which of them are linearized is then given by their number, and k of them
//!    multiply the configurations by at most k + 1 instead of 2^k.
//! 5. **Memoization.** Every configuration reached, the triple (set of linearized operations as
//!    a bitset, number of unanswered deletes linearized, register value), is cached; a step into
//!    an already cached configuration is not explored again, since from the same configuration
//!    the same futures are possible and that one already failed. The bitset covers the other
//!    operations, numbered in invocation order, so in a mostly sequential history the
//!    linearized set is "everything before some point, plus a few operations after it"; the
//!    cached key stores it compactly as a count of full 64-bit words plus the words after them,
//!    up to the last non-zero one. (An unanswered delete, unused for a long time, would keep the
//!    full words from growing if the bitset covered it.)
//! 6. **Forced observations** (a partial-order reduction specific to the register). If some
//!    operation that may be linearized next (its call precedes every return left in the list)
//!    is a read that returned the current register value, or a failed cas that reported it, it
//!    is linearized next and nothing else is tried from that configuration. This loses no
//!    linearization: in any linearization of the rest, moving that operation to the front keeps
//!    every result (it changes nothing, and it sees the current value) and every real-time
//!    constraint (no remaining operation returned before its call). So if that one move fails,
//!    the configuration fails, and backtracking goes on past it. Without this, each read would
//!    be tried at every position of its window of concurrency.
//!
//! # Guarantees
//!
//! - Sound and complete up to the budget: [`check`] returns a "not linearizable" error only if no
//!   linearization exists, and `Ok(())` only if one does (the search found it).
//! - Bounded work: each key's search may take at most a fixed number of steps (see
//!   [`DEFAULT_STEP_BUDGET_PER_KEY`] and [`check_with_budget`]); a key whose search exceeds it
//!   yields an error starting with [`INCONCLUSIVE_PREFIX`], meaning "unknown", never "violated".
//!   The cache grows by at most one entry per step, so memory is bounded by the budget too.
//! - Cost: for a mostly sequential history with a handful of concurrent clients, the number of
//!   reachable configurations, hence steps, grows roughly linearly with the number of operations
//!   per key (each step costs time proportional to the number of operations in flight plus the
//!   size of the compact cache key); k unanswered deletes kept on a key multiply it by at most
//!   k + 1.
//!
//! # Errors
//!
//! Every error message starts with one of:
//! - `"not linearizable"`: a definite violation. The message names the key and shows either the
//!   few operations that directly prove it (see "Preprocessing"), or an excerpt of the key's
//!   sub-history around the deepest point the search reached: the last operations it managed to
//!   linearize, the register value there, and the operations that could have come next, the one
//!   that could not be postponed marked `!`.
//! - [`INCONCLUSIVE_PREFIX`]: the search budget ran out; nothing is known.
//! - `"malformed history"`: the history breaks the rules of [`HistoryOp`] (a return before its
//!   call, a return value of the wrong kind, a value carried into a key twice, by writes or cas
//!   operations).
//!
//! When several keys fail, a definite violation is reported in preference to an inconclusive
//! key; otherwise the smallest failing key is reported.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::fmt::Write as _;

/// An operation a client invoked, without its times or its answer (a [`HistoryOp`] has those).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Invocation {
    /// Set `key` to `value`.
    Write {
        /// The key.
        key: u64,
        /// The value (unique per write in a history).
        value: u64,
    },
    /// Read `key`.
    Read {
        /// The key.
        key: u64,
    },
    /// Compare-and-swap: set `key` to `new` if it holds `expected` (`None`: if it is absent),
    /// else leave it alone and report what it holds.
    Cas {
        /// The key.
        key: u64,
        /// The value the key must hold for the swap (`None`: the key must be absent).
        expected: Option<u64>,
        /// The value it is set to (unique per key in a history, like a write's value, whether or
        /// not the cas swapped).
        new: u64,
    },
    /// Make `key` absent (whether or not it was present).
    Delete {
        /// The key.
        key: u64,
    },
}

/// What an operation returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ret {
    /// The write took effect.
    WriteOk,
    /// The read saw this value (`None`: the key was absent).
    ReadOk(Option<u64>),
    /// The cas found its expected value and swapped.
    CasOk,
    /// The cas found this value instead of its expected one (`None`: the key was absent) and
    /// changed nothing.
    CasFail(Option<u64>),
    /// The delete took effect (deleting an absent key is not an error).
    DeleteOk,
}

/// One operation in a history: invoked at `call`, returned at `ret` (logical times, `call <
/// ret`), or never answered (`ret: None`: it may or may not have taken effect, at any time after
/// `call`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryOp {
    /// The client (a client has at most one operation outstanding).
    pub client: u64,
    /// The operation.
    pub op: Invocation,
    /// When it was invoked.
    pub call: u64,
    /// When and with what it returned.
    pub ret: Option<(u64, Ret)>,
}

/// How an error from [`check`] starts when the search ran out of budget: the history may or may
/// not be linearizable.
pub const INCONCLUSIVE_PREFIX: &str = "inconclusive: search budget exceeded";

/// The number of search steps [`check`] allows for each key's sub-history.
///
/// A step is one attempt to linearize an operation or one backtrack. Histories of thousands of
/// operations per key with a handful of concurrent clients take a few steps per operation; this
/// budget, several seconds of search on one core, is only reached by histories with very wide
/// windows of concurrency (tens of operations in flight at once) or by pathological ones.
pub const DEFAULT_STEP_BUDGET_PER_KEY: u64 = 20_000_000;

/// Checks that `history` is linearizable for a register per key (all keys start absent).
/// Returns a description of the first key whose sub-history is not.
///
/// Equivalent to [`check_with_budget`] with [`DEFAULT_STEP_BUDGET_PER_KEY`]; see the module
/// documentation for the error messages (in particular [`INCONCLUSIVE_PREFIX`]).
pub fn check(history: &[HistoryOp]) -> Result<(), String> {
    check_with_budget(history, DEFAULT_STEP_BUDGET_PER_KEY)
}

/// Like [`check`], with at most `step_budget_per_key` search steps for each key's sub-history.
///
/// If a key exhausts its budget (and no other key is definitely not linearizable), the error
/// starts with [`INCONCLUSIVE_PREFIX`].
pub fn check_with_budget(history: &[HistoryOp], step_budget_per_key: u64) -> Result<(), String> {
    check_history(history, step_budget_per_key, DirectChecks::On)
}

/// Like [`check_with_budget`], but without the violations found directly, without searching
/// (see "Preprocessing" in the module documentation): the search has to refute them. The
/// verdict is the same; this exists so that tests can cross-check the search itself.
#[doc(hidden)]
pub fn check_by_search_alone(
    history: &[HistoryOp],
    step_budget_per_key: u64,
) -> Result<(), String> {
    check_history(history, step_budget_per_key, DirectChecks::Off)
}

/// Whether to look for the violations that preprocessing can find without searching.
#[derive(Clone, Copy, PartialEq, Eq)]
enum DirectChecks {
    On,
    Off,
}

fn check_history(
    history: &[HistoryOp],
    step_budget_per_key: u64,
    direct_checks: DirectChecks,
) -> Result<(), String> {
    validate(history)?;
    let mut event_indices_by_key: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (event_index, event) in history.iter().enumerate() {
        event_indices_by_key
            .entry(key_of(&event.op))
            .or_default()
            .push(event_index);
    }
    let mut first_inconclusive = None;
    for (&key, event_indices) in &event_indices_by_key {
        match check_key(
            history,
            key,
            event_indices,
            step_budget_per_key,
            direct_checks,
        ) {
            KeyVerdict::Linearizable => {}
            KeyVerdict::NotLinearizable(message) => return Err(message),
            KeyVerdict::Inconclusive(message) => {
                first_inconclusive.get_or_insert(message);
            }
        }
    }
    match first_inconclusive {
        Some(message) => Err(message),
        None => Ok(()),
    }
}

/// The outcome of checking one key's sub-history.
enum KeyVerdict {
    Linearizable,
    NotLinearizable(String),
    Inconclusive(String),
}

fn key_of(op: &Invocation) -> u64 {
    match *op {
        Invocation::Write { key, .. }
        | Invocation::Read { key }
        | Invocation::Cas { key, .. }
        | Invocation::Delete { key } => key,
    }
}

/// The value `op` puts in its key if it takes effect: a write's value, a cas's new value.
fn value_carried_by(op: &Invocation) -> Option<u64> {
    match *op {
        Invocation::Write { value, .. } => Some(value),
        Invocation::Cas { new, .. } => Some(new),
        Invocation::Read { .. } | Invocation::Delete { .. } => None,
    }
}

/// Rejects histories that break the rules of [`HistoryOp`]; every later step relies on these.
fn validate(history: &[HistoryOp]) -> Result<(), String> {
    let mut carrier_of_value: HashMap<(u64, u64), usize> = HashMap::new();
    for (event_index, event) in history.iter().enumerate() {
        if let Some((ret_time, ret)) = event.ret {
            if ret_time < event.call {
                return Err(format!(
                    "malformed history: event #{event_index} returns at {ret_time}, before its \
                     call at {}: {event:?}",
                    event.call
                ));
            }
            if kind_of(event.op, Some(ret)).is_none() {
                return Err(format!(
                    "malformed history: event #{event_index} returned {ret:?} to {:?}",
                    event.op
                ));
            }
        }
        if let Some(value) = value_carried_by(&event.op)
            && let Some(earlier_index) =
                carrier_of_value.insert((key_of(&event.op), value), event_index)
        {
            return Err(format!(
                "malformed history: value {value} is written to key {} twice, by events \
                 #{earlier_index} and #{event_index}",
                key_of(&event.op)
            ));
        }
    }
    Ok(())
}

/// What an operation of a key's sub-history does, for the register model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyOpKind {
    Write(u64),
    Read(Option<u64>),
    /// A cas that swapped: it answered so, or it never answered but must have taken effect.
    CasSwapped {
        expected: Option<u64>,
        new: u64,
    },
    /// A cas that answered that the register held `seen` (and changed nothing).
    CasFailed {
        expected: Option<u64>,
        seen: Option<u64>,
    },
    Delete,
}

impl KeyOpKind {
    /// The register value this operation requires when it takes effect, if its result depends
    /// on it: what a read returned, what a swapping cas expected, what a failed cas reported.
    fn observed(self) -> Option<Option<u64>> {
        match self {
            KeyOpKind::Read(seen) | KeyOpKind::CasFailed { seen, .. } => Some(seen),
            KeyOpKind::CasSwapped { expected, .. } => Some(expected),
            KeyOpKind::Write(_) | KeyOpKind::Delete => None,
        }
    }

    /// The register value this operation leaves, if it changes the register.
    fn written(self) -> Option<Option<u64>> {
        match self {
            KeyOpKind::Write(value) | KeyOpKind::CasSwapped { new: value, .. } => Some(Some(value)),
            KeyOpKind::Delete => Some(None),
            KeyOpKind::Read(_) | KeyOpKind::CasFailed { .. } => None,
        }
    }
}

/// What `op` does in the register model if it takes effect, given its answer (`None`: it never
/// answered, and a cas that took effect then swapped, since a failed one has no effect). `None`
/// for a read that never answered (it has no effect) and for an answer of the wrong kind.
fn kind_of(op: Invocation, answer: Option<Ret>) -> Option<KeyOpKind> {
    match (op, answer) {
        (Invocation::Write { value, .. }, None | Some(Ret::WriteOk)) => {
            Some(KeyOpKind::Write(value))
        }
        (Invocation::Read { .. }, Some(Ret::ReadOk(seen))) => Some(KeyOpKind::Read(seen)),
        (Invocation::Cas { expected, new, .. }, None | Some(Ret::CasOk)) => {
            Some(KeyOpKind::CasSwapped { expected, new })
        }
        (Invocation::Cas { expected, .. }, Some(Ret::CasFail(seen))) => {
            Some(KeyOpKind::CasFailed { expected, seen })
        }
        (Invocation::Delete { .. }, None | Some(Ret::DeleteOk)) => Some(KeyOpKind::Delete),
        _ => None,
    }
}

/// The return time of a delete that never returned: it may take effect at any time after its
/// call, or never (see "Preprocessing" in the module documentation).
const NEVER: u64 = u64::MAX;

/// One operation of a key's sub-history, prepared for the search.
#[derive(Clone, Copy, Debug)]
struct KeyOp {
    /// Its index in the whole history (for messages).
    event_index: usize,
    kind: KeyOpKind,
    call: u64,
    /// Its return time; for a write or cas that never returned but must have taken effect, the
    /// deadline that the observers of its value imply; for a delete that never returned,
    /// [`NEVER`] (see the module documentation).
    ret: u64,
}

impl KeyOp {
    /// The return time to show in messages (`None` for a delete that never returned).
    fn shown_ret(&self) -> Option<u64> {
        (self.ret != NEVER).then_some(self.ret)
    }
}

/// The register model: the state after applying `kind` to `register`, or `None` if `kind`'s
/// recorded result is impossible there.
fn apply(register: Option<u64>, kind: KeyOpKind) -> Option<Option<u64>> {
    match kind {
        KeyOpKind::Write(value) => Some(Some(value)),
        KeyOpKind::Read(seen) => (seen == register).then_some(register),
        KeyOpKind::CasSwapped { expected, new } => (expected == register).then_some(Some(new)),
        KeyOpKind::CasFailed { expected, seen } => {
            (seen == register && seen != expected).then_some(register)
        }
        KeyOpKind::Delete => Some(None),
    }
}

fn check_key(
    history: &[HistoryOp],
    key: u64,
    event_indices: &[usize],
    step_budget: u64,
    direct_checks: DirectChecks,
) -> KeyVerdict {
    let prepared = match prepare_key_ops(history, key, event_indices, direct_checks) {
        Ok(prepared) => prepared,
        Err(message) => return KeyVerdict::NotLinearizable(message),
    };
    Search::new(&prepared).run(step_budget, history, key)
}

/// A key's operations, prepared for the search.
struct PreparedKey {
    /// The operations that returned (or must have taken effect), sorted by call, then from
    /// index `first_pending_delete` on the deletes that never returned, sorted by call.
    ops: Vec<KeyOp>,
    first_pending_delete: usize,
}

/// Builds the operations the search has to linearize for `key` (see "Preprocessing" in the
/// module documentation): those that returned, sorted by call, then the deletes that never
/// returned and may matter, sorted by call. Or, if `direct_checks` is on, a violation found
/// without searching.
fn prepare_key_ops(
    history: &[HistoryOp],
    key: u64,
    event_indices: &[usize],
    direct_checks: DirectChecks,
) -> Result<PreparedKey, String> {
    // Every operation that may take effect, with what it does: unanswered reads are dropped.
    let candidates: Vec<(usize, KeyOpKind)> = event_indices
        .iter()
        .filter_map(|&event_index| {
            let event = &history[event_index];
            kind_of(event.op, event.ret.map(|(_, ret)| ret)).map(|kind| (event_index, kind))
        })
        .collect();
    // The one operation that may put each value in the register (`validate` rejected a value
    // carried twice), and the failed cas operations, which carried a value but never wrote it.
    let mut writer_of_value: HashMap<u64, usize> = HashMap::new();
    let mut failed_cas_of_value: HashMap<u64, usize> = HashMap::new();
    // Observations of values by operations that returned: (return time, value, observer).
    let mut observations: BinaryHeap<Reverse<(u64, u64, usize)>> = BinaryHeap::new();
    for &(event_index, kind) in &candidates {
        let event = &history[event_index];
        if let Some(Some(value)) = kind.written() {
            writer_of_value.insert(value, event_index);
        }
        if let (KeyOpKind::CasFailed { .. }, Invocation::Cas { new, .. }) = (kind, event.op) {
            failed_cas_of_value.insert(new, event_index);
        }
        if let (Some((ret_time, _)), Some(Some(value))) = (event.ret, kind.observed()) {
            observations.push(Reverse((ret_time, value, event_index)));
        }
    }
    // For each value some operation that must take effect observed: the earliest time by which
    // it must have been in the register, and the operation observing it then. An unanswered cas
    // whose new value is observed must have swapped by then, so it observed its expected value
    // by then too: the times propagate, earliest first (Dijkstra's algorithm with weights 0).
    let mut first_observation: HashMap<u64, (u64, usize)> = HashMap::new();
    while let Some(Reverse((time, value, observer))) = observations.pop() {
        if first_observation.contains_key(&value) {
            continue;
        }
        first_observation.insert(value, (time, observer));
        if let Some(&writer) = writer_of_value.get(&value)
            && history[writer].ret.is_none()
            && let Invocation::Cas {
                expected: Some(expected),
                ..
            } = history[writer].op
        {
            observations.push(Reverse((time, expected, writer)));
        }
    }

    if direct_checks == DirectChecks::On {
        let mut first_observations: Vec<(u64, (u64, usize))> = first_observation
            .iter()
            .map(|(&value, &first)| (value, first))
            .collect();
        first_observations.sort_unstable();
        for (value, (time, observer)) in first_observations {
            let observer_kind = kind_of(
                history[observer].op,
                history[observer].ret.map(|(_, ret)| ret),
            );
            let observed = observer_phrase(observer_kind);
            let Some(&writer) = writer_of_value.get(&value) else {
                let mut message = format!(
                    "not linearizable: key {key}: {observed} value {value}, which was never \
                     written to this key"
                );
                if failed_cas_of_value.contains_key(&value) {
                    message.push_str(" (only a cas that failed carried it)");
                }
                let _ = write!(
                    message,
                    ":\n  {}",
                    describe_event(history, observer, Some(time))
                );
                if let Some(&cas) = failed_cas_of_value.get(&value) {
                    let _ = write!(message, "\n  {}", describe_event(history, cas, None));
                }
                return Err(message);
            };
            if time < history[writer].call {
                let writing = match history[writer].op {
                    Invocation::Cas { .. } => "the cas carrying that value",
                    _ => "the write of that value",
                };
                return Err(format!(
                    "not linearizable: key {key}: {observed} value {value} before {writing} was \
                     invoked:\n  {}\n  {}",
                    describe_event(history, observer, Some(time)),
                    describe_event(history, writer, Some(time))
                ));
            }
        }
        for &(event_index, kind) in &candidates {
            if let KeyOpKind::CasFailed { expected, seen } = kind
                && expected == seen
            {
                return Err(format!(
                    "not linearizable: key {key}: a cas failed but reported that the key held \
                     the value it expected:\n  {}",
                    describe_event(history, event_index, None)
                ));
            }
        }
    }

    let mut ops = Vec::with_capacity(candidates.len());
    let mut pending_deletes = Vec::new();
    for &(event_index, kind) in &candidates {
        let event = &history[event_index];
        let ret = match (event.ret, kind.written()) {
            (Some((ret_time, _)), _) => ret_time,
            // A write or cas that never returned took effect iff some operation that must take
            // effect observed its value; then it did so by the first observation.
            (None, Some(Some(value))) => match first_observation.get(&value) {
                Some(&(deadline, _)) => deadline,
                None => continue,
            },
            (None, _) => {
                // `kind_of` gives an unanswered operation a kind only if it changes the
                // register: this is a delete.
                pending_deletes.push(KeyOp {
                    event_index,
                    kind,
                    call: event.call,
                    ret: NEVER,
                });
                continue;
            }
        };
        ops.push(KeyOp {
            event_index,
            kind,
            call: event.call,
            ret,
        });
    }
    // A delete that never returned matters only if an operation observing the key absent may
    // follow it, one returning at or after the delete's call.
    let last_absent_observation = ops
        .iter()
        .filter(|op| op.kind.observed() == Some(None))
        .map(|op| op.ret)
        .max();
    pending_deletes
        .retain(|delete| last_absent_observation.is_some_and(|last| delete.call <= last));
    ops.sort_by_key(|op| (op.call, op.event_index));
    pending_deletes.sort_by_key(|op| (op.call, op.event_index));
    let first_pending_delete = ops.len();
    ops.extend(pending_deletes);
    if direct_checks == DirectChecks::On
        && let Some(stale) = find_stale_observation(&ops)
    {
        return Err(describe_stale_observation(history, key, &ops, &stale));
    }
    Ok(PreparedKey {
        ops,
        first_pending_delete,
    })
}

/// How a message says that an operation of `kind` observed a value.
fn observer_phrase(kind: Option<KeyOpKind>) -> &'static str {
    match kind {
        Some(KeyOpKind::Read(_)) => "a read returned",
        Some(KeyOpKind::CasSwapped { .. }) => "a cas matched",
        Some(KeyOpKind::CasFailed { .. }) => "a failed cas reported",
        _ => "an operation observed",
    }
}

/// How a message names an operation of `kind` that changes the register.
fn writer_noun(kind: KeyOpKind) -> &'static str {
    match kind {
        KeyOpKind::Write(_) => "write",
        KeyOpKind::CasSwapped { .. } => "cas",
        KeyOpKind::Delete => "delete",
        KeyOpKind::Read(_) | KeyOpKind::CasFailed { .. } => "operation",
    }
}

/// An operation that observed a value provably overwritten before it was invoked, found by
/// [`find_stale_observation`].
struct StaleObservation {
    observer: usize,
    /// The operation that wrote the value it observed (`None`: it observed the key absent).
    seen_writer: Option<usize>,
    /// An operation that changed the register, invoked after `seen_writer` returned (for an
    /// observation of the key absent: one that set a value, invoked after every delete that may
    /// precede the observer returned), and that returned before `observer` was invoked.
    overwriter: usize,
    /// Whether the key has deletes (for the message about an observation of absence).
    key_has_deletes: bool,
}

/// The first operation (in call order) of `ops` that observed a value provably overwritten
/// before it was invoked:
///
/// - It observed a value, and some operation that changes the register (write, swapping cas,
///   delete) was invoked after the writer of that value returned and returned before the
///   observer was invoked. Since values are unique, that value cannot come back.
/// - It observed the key absent, and some operation that sets a value returned before the
///   observer was invoked and was invoked after every delete invoked before the observer
///   returned had returned (unanswered deletes never return). No delete can come between.
///
/// Finding these directly saves the search from refuting them, which can be slow when many
/// operations are concurrent. Observations of a value that no operation writes, or before its
/// writer was invoked, must have been rejected before (so every writer returns after its call).
fn find_stale_observation(ops: &[KeyOp]) -> Option<StaleObservation> {
    let by_call = |keep: &dyn Fn(KeyOpKind) -> bool| -> Vec<usize> {
        let mut selected: Vec<usize> = (0..ops.len()).filter(|&op| keep(ops[op].kind)).collect();
        selected.sort_by_key(|&op| (ops[op].call, op));
        selected
    };
    let mutators = by_call(&|kind| kind.written().is_some());
    let setters = by_call(&|kind| matches!(kind.written(), Some(Some(_))));
    let observers = by_call(&|kind| kind.observed().is_some());
    let writer_of_value: HashMap<u64, usize> = setters
        .iter()
        .filter_map(|&op| match ops[op].kind.written() {
            Some(Some(value)) => Some((value, op)),
            _ => None,
        })
        .collect();
    let deletes = by_call(&|kind| kind == KeyOpKind::Delete);
    // `latest_delete_return[i]`: the latest return among `deletes[..=i]`.
    let latest_delete_return: Vec<u64> = deletes
        .iter()
        .scan(0, |latest, &delete| {
            *latest = ops[delete].ret.max(*latest);
            Some(*latest)
        })
        .collect();
    let earliest_mutator_return_from = earliest_return_from(ops, &mutators);
    let earliest_setter_return_from = earliest_return_from(ops, &setters);
    for observer in observers {
        let (seen_writer, earliest_from, first_candidate) = match ops[observer].kind.observed() {
            Some(Some(value)) => {
                let Some(&seen_writer) = writer_of_value.get(&value) else {
                    continue;
                };
                let seen_ret = ops[seen_writer].ret;
                let first_later = mutators.partition_point(|&op| ops[op].call <= seen_ret);
                (
                    Some(seen_writer),
                    &earliest_mutator_return_from,
                    first_later,
                )
            }
            Some(None) => {
                // The deletes that may precede the observer: those not invoked after it
                // returned. A setter invoked after they all returned leaves no room for one
                // between it and the observer (with an unanswered one among them, there is none).
                let observer_ret = ops[observer].ret;
                let may_precede = deletes.partition_point(|&op| ops[op].call <= observer_ret);
                let first_later = match may_precede.checked_sub(1) {
                    None => 0,
                    Some(last) => {
                        let latest = latest_delete_return[last];
                        setters.partition_point(|&op| ops[op].call <= latest)
                    }
                };
                (None, &earliest_setter_return_from, first_later)
            }
            None => continue,
        };
        if let Some(&overwriter) = earliest_from.get(first_candidate)
            && ops[overwriter].ret < ops[observer].call
        {
            return Some(StaleObservation {
                observer,
                seen_writer,
                overwriter,
                key_has_deletes: !deletes.is_empty(),
            });
        }
    }
    None
}

/// `earliest[i]`: the operation returning first among `sorted[i..]`.
fn earliest_return_from(ops: &[KeyOp], sorted: &[usize]) -> Vec<usize> {
    let mut earliest = sorted.to_vec();
    for position in (0..earliest.len().saturating_sub(1)).rev() {
        let later = earliest[position + 1];
        if ops[later].ret < ops[earliest[position]].ret {
            earliest[position] = later;
        }
    }
    earliest
}

fn describe_stale_observation(
    history: &[HistoryOp],
    key: u64,
    ops: &[KeyOp],
    stale: &StaleObservation,
) -> String {
    let observer = &ops[stale.observer];
    let overwriter = &ops[stale.overwriter];
    let mut message = format!(
        "not linearizable: key {key}: {} a stale value; it was invoked after a {} returned that",
        observer_phrase(Some(observer.kind)),
        writer_noun(overwriter.kind)
    );
    match stale.seen_writer {
        Some(seen) => {
            let _ = write!(
                message,
                " was itself invoked after the {} of the value it saw returned:",
                writer_noun(ops[seen].kind)
            );
        }
        None if stale.key_has_deletes => message.push_str(
            " set a value, after every delete that may precede it returned, but it saw the key \
             absent:",
        ),
        None => message.push_str(" set a value, but it saw the key absent:"),
    }
    for op in [
        Some(observer),
        Some(overwriter),
        stale.seen_writer.map(|seen| &ops[seen]),
    ]
    .into_iter()
    .flatten()
    {
        let _ = write!(
            message,
            "\n  {}",
            describe_event(history, op.event_index, op.shown_ret())
        );
    }
    message
}

/// Index of the sentinel node of [`EventList`].
const SENTINEL: usize = 0;

/// A node of [`EventList`]: the call or the return of one operation.
#[derive(Clone, Copy, Debug)]
struct EventNode {
    /// Index into the key's operations.
    op: usize,
    is_call: bool,
    prev: usize,
    next: usize,
}

/// The call and return events of a key's operations, as a circular doubly linked list sorted by
/// time, with a sentinel at index [`SENTINEL`]. Removed nodes keep their links so they can be
/// reinserted in reverse order of removal ("dancing links").
struct EventList {
    nodes: Vec<EventNode>,
    call_node_of_op: Vec<usize>,
    return_node_of_op: Vec<usize>,
}

impl EventList {
    fn new(ops: &[KeyOp]) -> EventList {
        // (time, returns after calls at equal times, op): calls first makes ties concurrent.
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * ops.len());
        for (op_index, op) in ops.iter().enumerate() {
            events.push((op.call, false, op_index));
            events.push((op.ret, true, op_index));
        }
        events.sort_unstable();
        let node_count = events.len() + 1;
        let mut nodes = Vec::with_capacity(node_count);
        nodes.push(EventNode {
            op: usize::MAX,
            is_call: false,
            prev: node_count - 1,
            next: if events.is_empty() { SENTINEL } else { 1 },
        });
        let mut call_node_of_op = vec![SENTINEL; ops.len()];
        let mut return_node_of_op = vec![SENTINEL; ops.len()];
        for (position, &(_, is_return, op_index)) in events.iter().enumerate() {
            let node_index = position + 1;
            if is_return {
                return_node_of_op[op_index] = node_index;
            } else {
                call_node_of_op[op_index] = node_index;
            }
            nodes.push(EventNode {
                op: op_index,
                is_call: !is_return,
                prev: node_index - 1,
                next: if node_index + 1 == node_count {
                    SENTINEL
                } else {
                    node_index + 1
                },
            });
        }
        EventList {
            nodes,
            call_node_of_op,
            return_node_of_op,
        }
    }

    fn first(&self) -> usize {
        self.nodes[SENTINEL].next
    }

    fn is_empty(&self) -> bool {
        self.first() == SENTINEL
    }

    fn unlink(&mut self, node: usize) {
        let EventNode { prev, next, .. } = self.nodes[node];
        self.nodes[prev].next = next;
        self.nodes[next].prev = prev;
    }

    fn relink(&mut self, node: usize) {
        let EventNode { prev, next, .. } = self.nodes[node];
        self.nodes[prev].next = node;
        self.nodes[next].prev = node;
    }

    /// Removes `op`'s call and return events.
    fn lift(&mut self, op: usize) {
        self.unlink(self.call_node_of_op[op]);
        self.unlink(self.return_node_of_op[op]);
    }

    /// Undoes the most recent [`EventList::lift`] still in effect, which must be `op`'s.
    fn unlift(&mut self, op: usize) {
        self.relink(self.return_node_of_op[op]);
        self.relink(self.call_node_of_op[op]);
    }
}

/// The set of linearized operations (indexed in call order), as a bitset that also tracks its
/// all-ones prefix and its zero suffix, so that its compact form costs time proportional to the
/// part in between (the operations in flight), not to the whole history.
struct LinearizedSet {
    words: Vec<u64>,
    /// Every word before this index is all ones.
    full_words: usize,
    /// Every word from this index on is zero.
    used_words: usize,
}

impl LinearizedSet {
    fn new(op_count: usize) -> LinearizedSet {
        LinearizedSet {
            words: vec![0; op_count.div_ceil(64)],
            full_words: 0,
            used_words: 0,
        }
    }

    fn insert(&mut self, op: usize) {
        let word = op / 64;
        self.words[word] |= 1 << (op % 64);
        self.used_words = self.used_words.max(word + 1);
        while self.full_words < self.used_words && self.words[self.full_words] == u64::MAX {
            self.full_words += 1;
        }
    }

    fn remove(&mut self, op: usize) {
        let word = op / 64;
        self.words[word] &= !(1 << (op % 64));
        self.full_words = self.full_words.min(word);
        while self.used_words > self.full_words && self.words[self.used_words - 1] == 0 {
            self.used_words -= 1;
        }
    }

    /// The compact, canonical form used as a cache key: the number of leading all-ones words,
    /// then the words after them up to the last non-zero one.
    fn compact(&self) -> (usize, Box<[u64]>) {
        debug_assert_eq!(
            self.full_words,
            self.words
                .iter()
                .take_while(|&&word| word == u64::MAX)
                .count()
        );
        debug_assert_eq!(
            self.used_words.max(self.full_words),
            self.words.len()
                - self
                    .words
                    .iter()
                    .rev()
                    .take_while(|&&word| word == 0)
                    .count()
        );
        let rest_end = self.used_words.max(self.full_words);
        (
            self.full_words,
            self.words[self.full_words..rest_end].into(),
        )
    }
}

/// A configuration of the search, as cached: linearized set and register value. The set is
/// the bitset of the operations before the first delete that never returned, and the number of
/// those deletes linearized (the earliest invoked ones, see the module documentation).
#[derive(PartialEq, Eq, Hash)]
struct Configuration {
    register: Option<u64>,
    full_words: usize,
    rest_words: Box<[u64]>,
    pending_deletes_used: usize,
}

/// The deepest dead end the search reached, for the error message.
struct DeadEnd {
    linearized_count: usize,
    register: Option<u64>,
    /// The last few operations linearized before it, in linearization order.
    recent: Vec<usize>,
    /// The operations whose calls precede the first return in the list: those that could have
    /// been linearized next.
    could_come_next: Vec<usize>,
    /// The operation whose return event the search reached: it could not be postponed.
    blocking: usize,
}

/// An operation on the search's stack.
struct Linearized {
    op: usize,
    /// The register value before it.
    register_before: Option<u64>,
    /// Whether it was the only move tried from the configuration before it (a forced
    /// observation): then when it fails, that configuration fails too.
    forced: bool,
}

/// How many linearized operations and candidates an error message shows.
const EXCERPT_RECENT_OPS: usize = 5;
const EXCERPT_NEXT_OPS: usize = 8;

/// One key's search (see "Search" and "Memoization" in the module documentation).
struct Search<'a> {
    ops: &'a [KeyOp],
    /// `ops[first_pending_delete..]` are the deletes that never returned, in call order.
    first_pending_delete: usize,
    list: EventList,
    /// The linearized operations among `ops[..first_pending_delete]`.
    linearized: LinearizedSet,
    /// How many deletes that never returned are linearized: always the first ones.
    pending_deletes_used: usize,
    cache: HashSet<Configuration>,
    /// The linearized operations, in order.
    stack: Vec<Linearized>,
    deepest_dead_end: Option<DeadEnd>,
}

impl<'a> Search<'a> {
    fn new(prepared: &'a PreparedKey) -> Search<'a> {
        let ops = &prepared.ops;
        Search {
            ops,
            first_pending_delete: prepared.first_pending_delete,
            list: EventList::new(ops),
            linearized: LinearizedSet::new(prepared.first_pending_delete),
            pending_deletes_used: 0,
            cache: HashSet::new(),
            stack: Vec::new(),
            deepest_dead_end: None,
        }
    }

    fn run(mut self, step_budget: u64, history: &[HistoryOp], key: u64) -> KeyVerdict {
        let mut register: Option<u64> = None;
        // `None`: a configuration was just reached and not looked at yet. `Some(node)`: the walk
        // over the current configuration's candidates continues at `node`; every node between
        // the sentinel and `node` is a call (a candidate already tried).
        let mut cursor: Option<usize> = None;
        let mut steps: u64 = 0;
        loop {
            steps += 1;
            if steps > step_budget {
                return KeyVerdict::Inconclusive(self.describe_inconclusive(step_budget, key));
            }
            let node_index = match cursor {
                Some(node_index) => node_index,
                None => {
                    if self.list.is_empty() {
                        return KeyVerdict::Linearizable;
                    }
                    let Some(observer) = self.enabled_observer_of(register) else {
                        cursor = Some(self.list.first());
                        continue;
                    };
                    // A forced observation (see the module documentation): it is the only move
                    // worth trying from here.
                    if self.try_linearize(observer, register, register, true) {
                        continue;
                    }
                    // Its configuration was explored and failed, so this one fails too.
                    match self.backtrack(&mut register) {
                        Some(resume_at) => cursor = Some(resume_at),
                        None => {
                            return KeyVerdict::NotLinearizable(
                                self.describe_failure(history, key),
                            );
                        }
                    }
                    continue;
                }
            };
            // The list is not empty and every operation left in it has a return event, so the
            // walk from the sentinel meets a return before wrapping around: `node_index` is
            // never the sentinel.
            let node = self.list.nodes[node_index];
            if node.is_call {
                if !self.may_come_next(node.op) {
                    cursor = Some(node.next);
                } else if let Some(next_register) = apply(register, self.ops[node.op].kind)
                    && self.try_linearize(node.op, register, next_register, false)
                {
                    register = next_register;
                    cursor = None;
                } else {
                    cursor = Some(node.next);
                }
            } else {
                // `node.op` returns here and is not linearized: nothing can be linearized
                // without it first, and it cannot be linearized now. Backtrack.
                self.note_dead_end(register, node.op);
                match self.backtrack(&mut register) {
                    Some(resume_at) => cursor = Some(resume_at),
                    None => {
                        return KeyVerdict::NotLinearizable(self.describe_failure(history, key));
                    }
                }
            }
        }
    }

    /// An operation whose call precedes every return left in the list (so it may be
    /// linearized next) and which observes `register` without changing it: a read that
    /// returned it, or a failed cas that reported it.
    fn enabled_observer_of(&self, register: Option<u64>) -> Option<usize> {
        let mut node_index = self.list.first();
        while node_index != SENTINEL {
            let node = self.list.nodes[node_index];
            if !node.is_call {
                return None;
            }
            let observes_register = match self.ops[node.op].kind {
                KeyOpKind::Read(seen) => seen == register,
                KeyOpKind::CasFailed { expected, seen } => seen == register && seen != expected,
                _ => false,
            };
            if observes_register {
                return Some(node.op);
            }
            node_index = node.next;
        }
        None
    }

    /// Whether `op`, not linearized, is not held back by the order on deletes that never
    /// returned: such a delete comes only after those invoked before it.
    fn may_come_next(&self, op: usize) -> bool {
        op < self.first_pending_delete
            || op - self.first_pending_delete == self.pending_deletes_used
    }

    fn mark_linearized(&mut self, op: usize) {
        if op < self.first_pending_delete {
            self.linearized.insert(op);
        } else {
            self.pending_deletes_used += 1;
        }
    }

    fn unmark_linearized(&mut self, op: usize) {
        if op < self.first_pending_delete {
            self.linearized.remove(op);
        } else {
            self.pending_deletes_used -= 1;
        }
    }

    /// Linearizes `op` next, taking the register from `register_before` to `register_after`,
    /// unless the configuration this leads to is cached (then it was already explored, in vain,
    /// and nothing changes). Returns whether `op` was linearized.
    fn try_linearize(
        &mut self,
        op: usize,
        register_before: Option<u64>,
        register_after: Option<u64>,
        forced: bool,
    ) -> bool {
        self.mark_linearized(op);
        let (full_words, rest_words) = self.linearized.compact();
        let is_new = self.cache.insert(Configuration {
            register: register_after,
            full_words,
            rest_words,
            pending_deletes_used: self.pending_deletes_used,
        });
        if is_new {
            self.stack.push(Linearized {
                op,
                register_before,
                forced,
            });
            self.list.lift(op);
        } else {
            self.unmark_linearized(op);
        }
        is_new
    }

    /// Undoes linearized operations until one that had alternatives (was not forced), and
    /// returns the node where the walk over that configuration's candidates resumes: the one
    /// after that operation's call. `None` if the stack ran out: no linearization exists.
    fn backtrack(&mut self, register: &mut Option<u64>) -> Option<usize> {
        while let Some(undone) = self.stack.pop() {
            *register = undone.register_before;
            self.unmark_linearized(undone.op);
            self.list.unlift(undone.op);
            if !undone.forced {
                return Some(self.list.nodes[self.list.call_node_of_op[undone.op]].next);
            }
        }
        None
    }

    fn describe_inconclusive(&self, step_budget: u64, key: u64) -> String {
        let deepest = self
            .deepest_dead_end
            .as_ref()
            .map_or(0, |dead_end| dead_end.linearized_count)
            .max(self.stack.len());
        format!(
            "{INCONCLUSIVE_PREFIX} on key {key} after {step_budget} steps ({} operations to \
             linearize on this key, the deepest partial linearization found has {deepest}); the \
             history may or may not be linearizable",
            self.ops.len(),
        )
    }

    fn note_dead_end(&mut self, register: Option<u64>, blocking: usize) {
        let linearized_count = self.stack.len();
        if self
            .deepest_dead_end
            .as_ref()
            .is_some_and(|deepest| deepest.linearized_count >= linearized_count)
        {
            return;
        }
        let recent_start = linearized_count.saturating_sub(EXCERPT_RECENT_OPS);
        let recent = self.stack[recent_start..]
            .iter()
            .map(|linearized| linearized.op)
            .collect();
        let mut could_come_next = Vec::new();
        let mut node = self.list.first();
        while node != SENTINEL && self.list.nodes[node].is_call {
            let op = self.list.nodes[node].op;
            if self.may_come_next(op) {
                could_come_next.push(op);
            }
            node = self.list.nodes[node].next;
        }
        self.deepest_dead_end = Some(DeadEnd {
            linearized_count,
            register,
            recent,
            could_come_next,
            blocking,
        });
    }

    fn describe_failure(&self, history: &[HistoryOp], key: u64) -> String {
        let mut message = format!(
            "not linearizable: key {key} ({} operations to linearize on this key)",
            self.ops.len()
        );
        let Some(dead_end) = &self.deepest_dead_end else {
            return message;
        };
        let _ = write!(
            message,
            "; the longest linearizable prefix found has {} operations, after which the register \
             holds {}, and no continuation from there succeeds",
            dead_end.linearized_count,
            describe_value(dead_end.register)
        );
        if !dead_end.recent.is_empty() {
            message.push_str("\n  last operations of that prefix, in linearization order:");
            for &op in &dead_end.recent {
                let _ = write!(message, "\n      {}", self.describe_op(history, op));
            }
        }
        message.push_str(
            "\n  operations that could come next (`!`: must take effect before anything invoked \
             after its return):",
        );
        for &op in dead_end.could_come_next.iter().take(EXCERPT_NEXT_OPS) {
            let marker = if op == dead_end.blocking { "!" } else { " " };
            let _ = write!(message, "\n    {marker} {}", self.describe_op(history, op));
        }
        if dead_end.could_come_next.len() > EXCERPT_NEXT_OPS {
            let _ = write!(
                message,
                "\n      ... and {} more",
                dead_end.could_come_next.len() - EXCERPT_NEXT_OPS
            );
            if !dead_end.could_come_next[..EXCERPT_NEXT_OPS].contains(&dead_end.blocking) {
                let _ = write!(
                    message,
                    "\n    ! {}",
                    self.describe_op(history, dead_end.blocking)
                );
            }
        }
        message
    }

    fn describe_op(&self, history: &[HistoryOp], op: usize) -> String {
        let key_op = &self.ops[op];
        describe_event(history, key_op.event_index, key_op.shown_ret())
    }
}

fn describe_value(value: Option<u64>) -> String {
    match value {
        Some(value) => value.to_string(),
        None => "nothing (absent)".to_string(),
    }
}

/// One line describing `history[event_index]`; `effective_ret` is the return time the search
/// used, shown for writes and cas operations that never returned.
fn describe_event(history: &[HistoryOp], event_index: usize, effective_ret: Option<u64>) -> String {
    let event = &history[event_index];
    let what = match (event.op, event.ret) {
        (Invocation::Write { value, .. }, _) => format!("write {value}"),
        (Invocation::Read { .. }, Some((_, Ret::ReadOk(seen)))) => {
            format!("read -> {}", describe_value(seen))
        }
        (Invocation::Read { .. }, _) => "read -> (no answer)".to_string(),
        (Invocation::Cas { expected, new, .. }, answer) => {
            let expected = expected.map_or_else(|| "absent".to_string(), |value| value.to_string());
            let answer = match answer {
                Some((_, Ret::CasOk)) => "swapped".to_string(),
                Some((_, Ret::CasFail(Some(held)))) => format!("failed, held {held}"),
                Some((_, Ret::CasFail(None))) => "failed, key absent".to_string(),
                _ => "(no answer)".to_string(),
            };
            format!("cas {expected}->{new} -> {answer}")
        }
        (Invocation::Delete { .. }, _) => "delete".to_string(),
    };
    let when = match (event.ret, effective_ret) {
        (Some((ret_time, _)), _) => format!("[call {}, ret {ret_time}]", event.call),
        (None, Some(deadline)) => format!(
            "[call {}, never returned; its value was observed by {deadline}]",
            event.call
        ),
        (None, None) => format!("[call {}, never returned]", event.call),
    };
    format!("#{event_index} client {}: {what} {when}", event.client)
}

#[cfg(test)]
mod tests {
    //! The preprocessing of one key's sub-history, step by step (see "Preprocessing" in the
    //! module documentation). The verdicts are tested in `tests/linearizability.rs`; these
    //! check what each step keeps, drops and tightens, which the verdicts do not show.

    use super::*;

    fn answered(client: u64, op: Invocation, call: u64, ret: u64, answer: Ret) -> HistoryOp {
        HistoryOp {
            client,
            op,
            call,
            ret: Some((ret, answer)),
        }
    }

    fn unanswered(client: u64, op: Invocation, call: u64) -> HistoryOp {
        HistoryOp {
            client,
            op,
            call,
            ret: None,
        }
    }

    const KEY: u64 = 7;
    const READ: Invocation = Invocation::Read { key: KEY };
    const DELETE: Invocation = Invocation::Delete { key: KEY };

    fn write_op(value: u64) -> Invocation {
        Invocation::Write { key: KEY, value }
    }

    fn cas_op(expected: Option<u64>, new: u64) -> Invocation {
        Invocation::Cas {
            key: KEY,
            expected,
            new,
        }
    }

    /// The prepared operations of `history` (all on [`KEY`]), as (event index, return time),
    /// and the index of the first unanswered delete among them.
    fn prepare(history: &[HistoryOp]) -> (Vec<(usize, u64)>, usize) {
        validate(history).expect("well formed");
        let event_indices: Vec<usize> = (0..history.len()).collect();
        let prepared = prepare_key_ops(history, KEY, &event_indices, DirectChecks::On)
            .expect("no direct violation");
        let ops = prepared
            .ops
            .iter()
            .map(|op| (op.event_index, op.ret))
            .collect();
        (ops, prepared.first_pending_delete)
    }

    #[test]
    fn unanswered_writes_and_cas_operations_whose_values_nobody_observed_are_dropped() {
        let history = [
            answered(1, write_op(10), 0, 10, Ret::WriteOk),
            unanswered(2, write_op(11), 5),
            unanswered(3, cas_op(Some(10), 12), 6),
            unanswered(4, READ, 7),
            answered(5, READ, 20, 30, Ret::ReadOk(Some(10))),
            // A failed cas observes too, but not the new value it carried.
            answered(5, cas_op(Some(11), 13), 40, 50, Ret::CasFail(Some(10))),
        ];
        let (ops, _) = prepare(&history);
        assert_eq!(ops, [(0, 10), (4, 30), (5, 50)]);
    }

    #[test]
    fn unanswered_writes_and_cas_operations_whose_values_were_observed_get_the_earliest_deadline() {
        // 11 is observed by a failed cas at 60 and a read at 40; 12 by a swapping cas at 70
        // (nobody observed that one's value, 14, but it returned, so it is kept anyway).
        let history = [
            unanswered(1, write_op(11), 0),
            unanswered(2, cas_op(Some(11), 12), 1),
            answered(3, cas_op(Some(5), 13), 50, 60, Ret::CasFail(Some(11))),
            answered(4, READ, 30, 40, Ret::ReadOk(Some(11))),
            answered(5, cas_op(Some(12), 14), 65, 70, Ret::CasOk),
        ];
        let (ops, _) = prepare(&history);
        assert_eq!(ops, [(0, 40), (1, 70), (3, 40), (2, 60), (4, 70)]);
    }

    #[test]
    fn a_chain_of_unanswered_swaps_passes_its_deadline_back_to_the_first() {
        // 13 is read at 50: the cas to 13 swapped by 50, so 12 was there by 50, so the cas to
        // 12 swapped by 50, and so on back to the write of 11. Another read of 12 at 90 is later.
        let history = [
            unanswered(1, write_op(11), 0),
            unanswered(2, cas_op(Some(11), 12), 1),
            unanswered(3, cas_op(Some(12), 13), 2),
            answered(4, READ, 40, 50, Ret::ReadOk(Some(13))),
            answered(5, READ, 10, 90, Ret::ReadOk(Some(12))),
        ];
        let (ops, _) = prepare(&history);
        assert_eq!(ops, [(0, 50), (1, 50), (2, 50), (4, 90), (3, 50)]);
    }

    #[test]
    fn unanswered_deletes_invoked_after_every_observation_of_absence_returned_are_dropped() {
        let history = [
            answered(1, write_op(10), 0, 10, Ret::WriteOk),
            unanswered(2, DELETE, 5),
            answered(3, READ, 20, 30, Ret::ReadOk(None)),
            // Invoked when the last observation of absence returns: it may precede it.
            unanswered(4, DELETE, 40),
            // A cas expecting absence that must have swapped (its value was read at 40).
            unanswered(5, cas_op(None, 11), 25),
            answered(6, READ, 35, 40, Ret::ReadOk(Some(11))),
            // Too late for any of them.
            unanswered(7, DELETE, 41),
        ];
        let (ops, first_pending_delete) = prepare(&history);
        // The kept unanswered deletes come last, in call order, without a return time.
        assert_eq!(
            ops,
            [(0, 10), (2, 30), (4, 40), (5, 40), (1, NEVER), (3, NEVER)]
        );
        assert_eq!(first_pending_delete, 4);
        // With no observation of absence at all, every unanswered delete goes.
        let (ops, first_pending_delete) = prepare(&[
            answered(1, write_op(10), 0, 10, Ret::WriteOk),
            unanswered(2, DELETE, 5),
            answered(3, READ, 20, 30, Ret::ReadOk(Some(10))),
        ]);
        assert_eq!(ops, [(0, 10), (2, 30)]);
        assert_eq!(first_pending_delete, 2);
    }
}
