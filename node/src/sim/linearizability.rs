//! Linearizability checking of client histories against a key-value register model.
//!
//! # What is checked
//!
//! The model is one register per key; every key starts absent (a read returns `ReadOk(None)`
//! until the key is first written). A history is *linearizable* if every operation can be given
//! a single instant (its linearization point) between its invocation and its return such that the
//! operations, executed one at a time in the order of those instants, return what they actually
//! returned. An operation that never returned (`ret: None`) may take effect at any instant after
//! its invocation, or not at all.
//!
//! Times are the logical times in [`Operation`]. Two operations are ordered in real time only if one
//! returns *strictly* before the other is invoked: an operation returning at `t` and another
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
//!    provably cannot change the verdict:
//!    - A read that never returned has no effect and nothing to check: it is dropped.
//!    - A write that never returned and whose value no completed read saw is dropped: any
//!      linearization that includes it stays valid with it removed (no read sits between it and
//!      the next write, or it would have seen its value), and vice versa.
//!    - A write that never returned but whose value a completed read saw must be linearized
//!      before every such read, hence before the earliest return among them; that return time
//!      becomes its return time. Since values are unique, this adds no constraint that the reads
//!      did not already imply (anything invoked after that read returned must follow the read,
//!      which follows the write).
//!    - Some violations are found directly, with a more telling message than the search's: a
//!      read of a value never written to the key, a read returning before the write of its
//!      value was invoked, and a stale read, one invoked after some write returned that was
//!      itself invoked after the write of the value read returned (or that saw the key absent
//!      after a write returned). The last one is also the violation whose refutation by search
//!      is slowest when many operations are concurrent.
//!
//!    After this every remaining operation has a finite return time.
//! 3. **Search.** The call and return events of the key's operations form a doubly linked list
//!    sorted by time (calls before returns at equal times). The search repeatedly takes the
//!    first event of the list: if it is a call, the operation may be linearized next if the
//!    register model accepts it; it is then "lifted" (its call and return events are unlinked)
//!    and pushed on a stack. If the first return event is reached instead, the operation that
//!    returns there cannot be postponed any further, so the search backtracks: it pops the last
//!    linearized operation, relinks it, and tries the next call after it. The history is
//!    linearizable iff the list can be emptied.
//! 4. **Memoization.** Every configuration reached, the pair (set of linearized operations as a
//!    bitset, register value), is cached; a step into an already cached configuration is not
//!    explored again, since from the same configuration the same futures are possible and that
//!    one already failed. Operations are numbered in invocation order, so in a mostly sequential
//!    history the linearized set is "everything before some point, plus a few operations after
//!    it"; the cached key stores it compactly as a count of full 64-bit words plus the words
//!    after them, up to the last non-zero one.
//! 5. **Forced reads** (a partial-order reduction specific to the register). If some operation
//!    that may be linearized next (its call precedes every return left in the list) is a read of
//!    the current register value, it is linearized next and nothing else is tried from that
//!    configuration. This loses no linearization: in any linearization of the rest, moving that
//!    read to the front keeps every read's result (reads change nothing, and it sees the current
//!    value) and every real-time constraint (no remaining operation returned before its call).
//!    So if that one move fails, the configuration fails, and backtracking goes on past it.
//!    Without this, each read would be tried at every position of its window of concurrency.
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
//!   size of the compact cache key).
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
//! - `"malformed history"`: the history breaks the rules of [`Operation`] (a return before its call,
//!   a return value of the wrong kind, a value written twice to a key).
//!
//! When several keys fail, a definite violation is reported in preference to an inconclusive
//! key; otherwise the smallest failing key is reported.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

/// An operation a client invoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
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
}

/// What an operation returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ret {
    /// The write took effect.
    WriteOk,
    /// The read saw this value (`None`: the key was never written).
    ReadOk(Option<u64>),
}

/// One operation in a history: invoked at `call`, returned at `ret` (logical times, `call <
/// ret`), or never answered (`ret: None`: it may or may not have taken effect, at any time after
/// `call`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Operation {
    /// The client (a client has at most one operation outstanding).
    pub client: u64,
    /// The operation.
    pub op: Op,
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
pub fn check(history: &[Operation]) -> Result<(), String> {
    check_with_budget(history, DEFAULT_STEP_BUDGET_PER_KEY)
}

/// Like [`check`], with at most `step_budget_per_key` search steps for each key's sub-history.
///
/// If a key exhausts its budget (and no other key is definitely not linearizable), the error
/// starts with [`INCONCLUSIVE_PREFIX`].
pub fn check_with_budget(history: &[Operation], step_budget_per_key: u64) -> Result<(), String> {
    check_history(history, step_budget_per_key, DirectChecks::On)
}

/// Like [`check_with_budget`], but without the violations found directly, without searching
/// (see "Preprocessing" in the module documentation): the search has to refute them. The
/// verdict is the same; this exists so that tests can cross-check the search itself.
#[doc(hidden)]
pub fn check_by_search_alone(
    history: &[Operation],
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
    history: &[Operation],
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

fn key_of(op: &Op) -> u64 {
    match *op {
        Op::Write { key, .. } | Op::Read { key } => key,
    }
}

/// Rejects histories that break the rules of [`Operation`]; every later step relies on these.
fn validate(history: &[Operation]) -> Result<(), String> {
    let mut writer_of_value: HashMap<(u64, u64), usize> = HashMap::new();
    for (event_index, event) in history.iter().enumerate() {
        if let Some((ret_time, ret)) = event.ret {
            if ret_time < event.call {
                return Err(format!(
                    "malformed history: event #{event_index} returns at {ret_time}, before its \
                     call at {}: {event:?}",
                    event.call
                ));
            }
            let kinds_match = matches!(
                (event.op, ret),
                (Op::Write { .. }, Ret::WriteOk) | (Op::Read { .. }, Ret::ReadOk(_))
            );
            if !kinds_match {
                return Err(format!(
                    "malformed history: event #{event_index} returned {ret:?} to {:?}",
                    event.op
                ));
            }
        }
        if let Op::Write { key, value } = event.op
            && let Some(earlier_index) = writer_of_value.insert((key, value), event_index)
        {
            return Err(format!(
                "malformed history: value {value} is written to key {key} twice, by events \
                 #{earlier_index} and #{event_index}"
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
}

/// One operation of a key's sub-history, prepared for the search.
#[derive(Clone, Copy, Debug)]
struct KeyOp {
    /// Its index in the whole history (for messages).
    event_index: usize,
    kind: KeyOpKind,
    call: u64,
    /// Its return time; for a write that never returned, the earliest return of a read that saw
    /// its value (see the module documentation).
    ret: u64,
}

/// The register model: the state after applying `kind` to `register`, or `None` if `kind`'s
/// recorded result is impossible there.
fn apply(register: Option<u64>, kind: KeyOpKind) -> Option<Option<u64>> {
    match kind {
        KeyOpKind::Write(value) => Some(Some(value)),
        KeyOpKind::Read(seen) => (seen == register).then_some(register),
    }
}

fn check_key(
    history: &[Operation],
    key: u64,
    event_indices: &[usize],
    step_budget: u64,
    direct_checks: DirectChecks,
) -> KeyVerdict {
    let ops = match prepare_key_ops(history, key, event_indices, direct_checks) {
        Ok(ops) => ops,
        Err(message) => return KeyVerdict::NotLinearizable(message),
    };
    Search::new(&ops).run(step_budget, history, key)
}

/// Builds the operations the search has to linearize for `key` (see "Preprocessing" in the
/// module documentation), sorted by call time; or, if `direct_checks` is on, a violation found
/// without searching.
fn prepare_key_ops(
    history: &[Operation],
    key: u64,
    event_indices: &[usize],
    direct_checks: DirectChecks,
) -> Result<Vec<KeyOp>, String> {
    // The earliest return among the completed reads that saw each value, and that read.
    let mut first_read_of_value: HashMap<u64, (u64, usize)> = HashMap::new();
    for &event_index in event_indices {
        let event = &history[event_index];
        if let Some((ret_time, Ret::ReadOk(Some(value)))) = event.ret {
            let earliest = first_read_of_value
                .entry(value)
                .or_insert((ret_time, event_index));
            if ret_time < earliest.0 {
                *earliest = (ret_time, event_index);
            }
        }
    }
    let mut write_of_value: HashMap<u64, usize> = HashMap::new();
    for &event_index in event_indices {
        if let Op::Write { value, .. } = history[event_index].op {
            write_of_value.insert(value, event_index);
        }
    }
    let mut first_reads_by_value: Vec<(u64, (u64, usize))> = match direct_checks {
        DirectChecks::On => first_read_of_value
            .iter()
            .map(|(&value, &read)| (value, read))
            .collect(),
        DirectChecks::Off => Vec::new(),
    };
    first_reads_by_value.sort_unstable();
    for (value, (read_ret, read_index)) in first_reads_by_value {
        let Some(&write_index) = write_of_value.get(&value) else {
            return Err(format!(
                "not linearizable: key {key}: a read returned value {value}, which was never \
                 written to this key:\n  {}",
                describe_event(history, read_index, None)
            ));
        };
        let write_call = history[write_index].call;
        if read_ret < write_call {
            return Err(format!(
                "not linearizable: key {key}: a read returned value {value} before the write of \
                 that value was invoked:\n  {}\n  {}",
                describe_event(history, read_index, None),
                describe_event(history, write_index, None)
            ));
        }
    }

    let mut ops = Vec::with_capacity(event_indices.len());
    for &event_index in event_indices {
        let event = &history[event_index];
        let op = match (event.op, event.ret) {
            (Op::Write { value, .. }, Some((ret_time, _))) => KeyOp {
                event_index,
                kind: KeyOpKind::Write(value),
                call: event.call,
                ret: ret_time,
            },
            (Op::Write { value, .. }, None) => match first_read_of_value.get(&value) {
                Some(&(first_read_ret, _)) => KeyOp {
                    event_index,
                    kind: KeyOpKind::Write(value),
                    call: event.call,
                    ret: first_read_ret,
                },
                None => continue,
            },
            (Op::Read { .. }, Some((ret_time, Ret::ReadOk(seen)))) => KeyOp {
                event_index,
                kind: KeyOpKind::Read(seen),
                call: event.call,
                ret: ret_time,
            },
            // `validate` rejected reads that returned `WriteOk`; a read that never returned
            // is dropped.
            (Op::Read { .. }, _) => continue,
        };
        ops.push(op);
    }
    ops.sort_by_key(|op| (op.call, op.event_index));
    if direct_checks == DirectChecks::Off {
        return Ok(ops);
    }
    if let Some(stale) = find_stale_read(&ops) {
        let read = &ops[stale.read];
        let overwriter = &ops[stale.overwriter];
        let mut message = format!(
            "not linearizable: key {key}: a read returned a stale value; it was invoked after a \
             write returned that"
        );
        match stale.seen_write {
            Some(_) => message.push_str(" was itself invoked after the write it read returned:"),
            None => message.push_str(" wrote the key, but it saw the key absent:"),
        }
        for op in [
            Some(read),
            Some(overwriter),
            stale.seen_write.map(|seen| &ops[seen]),
        ]
        .into_iter()
        .flatten()
        {
            let _ = write!(
                message,
                "\n  {}",
                describe_event(history, op.event_index, Some(op.ret))
            );
        }
        return Err(message);
    }
    Ok(ops)
}

/// A read that saw a value overwritten before it was invoked, found by [`find_stale_read`].
struct StaleRead {
    read: usize,
    /// The write whose value it saw (`None`: it saw the key absent).
    seen_write: Option<usize>,
    /// A write invoked after `seen_write` returned, that returned before `read` was invoked.
    overwriter: usize,
}

/// The first read (in call order) of `ops` (sorted by call) that saw a value provably
/// overwritten before it was invoked: some write was invoked after the seen write returned (or
/// anywhere, if the read saw the key absent) and returned before the read was invoked. Since
/// values are unique, the seen write cannot take effect again, so this is a violation; finding
/// it directly saves the search from refuting it, which can be slow when many operations are
/// concurrent. Reads that saw a value never written to the key must have been rejected before.
fn find_stale_read(ops: &[KeyOp]) -> Option<StaleRead> {
    let writes: Vec<usize> = (0..ops.len())
        .filter(|&op| matches!(ops[op].kind, KeyOpKind::Write(_)))
        .collect();
    let write_of_value: HashMap<u64, usize> = writes
        .iter()
        .filter_map(|&op| match ops[op].kind {
            KeyOpKind::Write(value) => Some((value, op)),
            KeyOpKind::Read(_) => None,
        })
        .collect();
    // `earliest_return_from[i]`: the write returning first among `writes[i..]` (in call order).
    let mut earliest_return_from = writes.clone();
    for position in (0..writes.len().saturating_sub(1)).rev() {
        let later = earliest_return_from[position + 1];
        if ops[later].ret < ops[earliest_return_from[position]].ret {
            earliest_return_from[position] = later;
        }
    }
    for (read, read_op) in ops.iter().enumerate() {
        let KeyOpKind::Read(seen) = read_op.kind else {
            continue;
        };
        let (seen_write, first_later_write) = match seen {
            None => (None, 0),
            Some(value) => {
                let Some(&seen_write) = write_of_value.get(&value) else {
                    continue;
                };
                let seen_ret = ops[seen_write].ret;
                let first_later = writes.partition_point(|&write| ops[write].call <= seen_ret);
                (Some(seen_write), first_later)
            }
        };
        if let Some(&overwriter) = earliest_return_from.get(first_later_write)
            && ops[overwriter].ret < read_op.call
        {
            return Some(StaleRead {
                read,
                seen_write,
                overwriter,
            });
        }
    }
    None
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

/// A configuration of the search, as cached: linearized set and register value.
#[derive(PartialEq, Eq, Hash)]
struct Configuration {
    register: Option<u64>,
    full_words: usize,
    rest_words: Box<[u64]>,
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
    /// Whether it was the only move tried from the configuration before it (a forced read):
    /// then when it fails, that configuration fails too.
    forced: bool,
}

/// How many linearized operations and candidates an error message shows.
const EXCERPT_RECENT_OPS: usize = 5;
const EXCERPT_NEXT_OPS: usize = 8;

/// One key's search (see "Search" and "Memoization" in the module documentation).
struct Search<'a> {
    ops: &'a [KeyOp],
    list: EventList,
    linearized: LinearizedSet,
    cache: HashSet<Configuration>,
    /// The linearized operations, in order.
    stack: Vec<Linearized>,
    deepest_dead_end: Option<DeadEnd>,
}

impl<'a> Search<'a> {
    fn new(ops: &'a [KeyOp]) -> Search<'a> {
        Search {
            ops,
            list: EventList::new(ops),
            linearized: LinearizedSet::new(ops.len()),
            cache: HashSet::new(),
            stack: Vec::new(),
            deepest_dead_end: None,
        }
    }

    fn run(mut self, step_budget: u64, history: &[Operation], key: u64) -> KeyVerdict {
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
                    let Some(read) = self.enabled_read_of(register) else {
                        cursor = Some(self.list.first());
                        continue;
                    };
                    // A forced read (see the module documentation): it is the only move
                    // worth trying from here.
                    if self.try_linearize(read, register, register, true) {
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
            // The list is not empty and every operation left in it has its return after its
            // call, so the walk from the sentinel meets a return before wrapping around:
            // `node_index` is never the sentinel.
            let node = self.list.nodes[node_index];
            if node.is_call {
                if let Some(next_register) = apply(register, self.ops[node.op].kind)
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
    /// linearized next) and which is a read of `register`.
    fn enabled_read_of(&self, register: Option<u64>) -> Option<usize> {
        let mut node_index = self.list.first();
        while node_index != SENTINEL {
            let node = self.list.nodes[node_index];
            if !node.is_call {
                return None;
            }
            if self.ops[node.op].kind == KeyOpKind::Read(register) {
                return Some(node.op);
            }
            node_index = node.next;
        }
        None
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
        self.linearized.insert(op);
        let (full_words, rest_words) = self.linearized.compact();
        let is_new = self.cache.insert(Configuration {
            register: register_after,
            full_words,
            rest_words,
        });
        if is_new {
            self.stack.push(Linearized {
                op,
                register_before,
                forced,
            });
            self.list.lift(op);
        } else {
            self.linearized.remove(op);
        }
        is_new
    }

    /// Undoes linearized operations until one that had alternatives (was not forced), and
    /// returns the node where the walk over that configuration's candidates resumes: the one
    /// after that operation's call. `None` if the stack ran out: no linearization exists.
    fn backtrack(&mut self, register: &mut Option<u64>) -> Option<usize> {
        while let Some(undone) = self.stack.pop() {
            *register = undone.register_before;
            self.linearized.remove(undone.op);
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
            could_come_next.push(self.list.nodes[node].op);
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

    fn describe_failure(&self, history: &[Operation], key: u64) -> String {
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

    fn describe_op(&self, history: &[Operation], op: usize) -> String {
        let key_op = &self.ops[op];
        describe_event(history, key_op.event_index, Some(key_op.ret))
    }
}

fn describe_value(value: Option<u64>) -> String {
    match value {
        Some(value) => value.to_string(),
        None => "nothing (absent)".to_string(),
    }
}

/// One line describing `history[event_index]`; `effective_ret` is the return time the search
/// used, shown for writes that never returned.
fn describe_event(history: &[Operation], event_index: usize, effective_ret: Option<u64>) -> String {
    let event = &history[event_index];
    let what = match (event.op, event.ret) {
        (Op::Write { value, .. }, _) => format!("write {value}"),
        (Op::Read { .. }, Some((_, Ret::ReadOk(seen)))) => {
            format!("read -> {}", describe_value(seen))
        }
        (Op::Read { .. }, _) => "read -> (no answer)".to_string(),
    };
    let when = match (event.ret, effective_ret) {
        (Some((ret_time, _)), _) => format!("[call {}, ret {ret_time}]", event.call),
        (None, Some(deadline)) => format!(
            "[call {}, never returned; its value was read by {deadline}]",
            event.call
        ),
        (None, None) => format!("[call {}, never returned]", event.call),
    };
    format!("#{event_index} client {}: {what} {when}", event.client)
}
