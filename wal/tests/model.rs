//! Property test: random sequences of operations against a plain in-memory model of the log.
//!
//! Operations: appends (valid batches, and single appends that may have the wrong index or a
//! lower term), hard-state changes (possibly with a lower term), truncations (possibly at or below
//! the snapshot, or past the end), syncs, flushes, snapshots with compaction (the snapshot at an
//! index every crash keeps), compactions (possibly beyond the snapshot), crashes (a drop with or
//! without a flush, optionally with the page-subset power loss of `crash_model_harness.rs`, and
//! optionally another power loss during the recovery), clean closes and reopens.
//!
//! Checked: after every operation, `next_index`, `last_term`, the hard state and the snapshot of
//! the live `Wal` equal the model's; an operation is refused (with `OutOfOrder` or `NotCovered`)
//! exactly when the model says it breaks the API's rules, and a refused one changes nothing;
//! after every reopen, the recovered log is the synced state plus a prefix of the operations since
//! the last sync, and exactly the model's state after a clean close, or after a crash that flushed
//! and lost nothing; every segment file keeps its fixed size.
//!
//! Two plain tests sweep the room a clean close finds at the end of a segment (its last sync mark
//! must fit, and leave room for the seal a later roll writes), once per write path.
//!
//! The write path is drawn per case: `Pwrite` and `Direct` two fifths each, `Mmap` one.

#[path = "crash_model_harness.rs"]
mod harness;

use std::panic::catch_unwind;

use balsa_wal::record::{HARD_STATE_RECORD, MARK_RECORD, RECORD_HEADER};
use balsa_wal::segment::SEGMENT_HEADER;
use balsa_wal::{Entry, Error, HardState, SnapshotMeta, Wal, WritePath};
use harness::{PowerLoss, Rig, Rng};
use proptest::prelude::*;
use proptest::test_runner::{RngSeed, TestCaseError};

/// One generated operation. Indexes and terms are relative to the model's state when it runs,
/// so that shrinking keeps sequences meaningful.
#[derive(Clone, Debug)]
enum Step {
    /// Appends a batch at the next index, with these payload sizes (a new term first if asked).
    Append { sizes: Vec<usize>, new_term: bool },
    /// Appends one entry at `next_index + index_delta` with term `last_term + term_delta`:
    /// refused unless the index is the next one and the term does not go down.
    AppendOne {
        index_delta: i64,
        term_delta: i64,
        size: usize,
    },
    /// Sets the hard state with term `term + term_delta`: refused when the term goes down.
    SetHardState {
        term_delta: i64,
        vote: u64,
        commit: u64,
    },
    /// Truncates from `next_index + delta`: refused at or below the snapshot, or past the end.
    TruncateFrom { delta: i64 },
    /// Syncs.
    Sync,
    /// Hands pending records to the OS.
    Flush,
    /// Saves a snapshot `back` below the highest index every crash keeps (when that is above
    /// the current snapshot), then compacts `compact_back` below it.
    Snapshot {
        back: u64,
        compact_back: u64,
        data_len: usize,
    },
    /// Compacts to `snapshot index + delta`: refused beyond the snapshot.
    CompactTo { delta: i64 },
    /// Drops the `Wal`, flushed first or not, with or without a power loss (and another one
    /// during the recovery), and reopens.
    Crash {
        flush: bool,
        power_loss: Option<u64>,
        during_recovery: Option<u64>,
    },
    /// Closes cleanly and reopens.
    Close,
    /// Syncs, drops and reopens.
    Reopen,
}

fn payload_size() -> impl Strategy<Value = usize> {
    prop_oneof![
        5 => 1usize..=100,
        3 => 100usize..=2000,
        2 => 2000usize..=6000,
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        12 => (prop::collection::vec(payload_size(), 1..=5), prop::bool::weighted(0.15))
            .prop_map(|(sizes, new_term)| Step::Append { sizes, new_term }),
        3 => (
            prop_oneof![6 => Just(0i64), 1 => -3i64..=-1, 1 => 1i64..=3],
            prop_oneof![3 => Just(0i64), 1 => Just(1i64), 1 => Just(-1i64)],
            payload_size()
        )
            .prop_map(|(index_delta, term_delta, size)| Step::AppendOne {
                index_delta,
                term_delta,
                size,
            }),
        3 => (prop_oneof![3 => Just(0i64), 2 => Just(1i64), 1 => Just(-1i64)], 0u64..4, any::<u64>())
            .prop_map(|(term_delta, vote, commit)| Step::SetHardState {
                term_delta,
                vote,
                commit,
            }),
        3 => (-12i64..=2).prop_map(|delta| Step::TruncateFrom { delta }),
        8 => Just(Step::Sync),
        1 => Just(Step::Flush),
        2 => (0u64..4, 0u64..3, 0usize..3000).prop_map(|(back, compact_back, data_len)| {
            Step::Snapshot {
                back,
                compact_back,
                data_len,
            }
        }),
        1 => (-3i64..=2).prop_map(|delta| Step::CompactTo { delta }),
        3 => (
            any::<bool>(),
            prop::option::of(any::<u64>()),
            prop::option::weighted(0.25, any::<u64>())
        )
            .prop_map(|(flush, power_loss, during_recovery)| Step::Crash {
                flush,
                power_loss,
                during_recovery,
            }),
        1 => Just(Step::Close),
        1 => Just(Step::Reopen),
    ]
}

/// `base + delta`, floored at 0.
fn offset(base: u64, delta: i64) -> u64 {
    base.saturating_add_signed(delta)
}

/// What the model says an operation must do.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Ok,
    OutOfOrder,
    NotCovered,
}

fn outcome<T>(result: &Result<T, Error>) -> Result<Expect, String> {
    match result {
        Ok(_) => Ok(Expect::Ok),
        Err(Error::OutOfOrder { .. }) => Ok(Expect::OutOfOrder),
        Err(Error::NotCovered { .. }) => Ok(Expect::NotCovered),
        Err(e) => Err(format!("unexpected error: {e}")),
    }
}

/// Checks a refused operation: the error the model expects, and nothing changed.
fn refused<T>(
    rig: &mut Rig,
    what: &str,
    expect: Expect,
    result: Result<T, Error>,
) -> Result<(), String> {
    let got = outcome(&result)?;
    if got != expect {
        return Err(format!("{what}: expected {expect:?}, got {got:?}"));
    }
    rig.check_live()
        .map_err(|e| format!("after a refused {what}: {e}"))
}

fn run_step(rig: &mut Rig, step: &Step, number: usize) -> Result<(), String> {
    let at = |e: String| format!("step {number} ({step:?}): {e}");
    let model = &rig.model.current;
    let next = model.next_index;
    let last_term = model.last_term();
    let covered = model.snapshot_index();
    let mut data_rng = Rng::new(next.wrapping_mul(0x1_0000_0001) ^ number as u64);
    match step {
        Step::Append { sizes, new_term } => {
            let term = last_term.max(1) + u64::from(*new_term);
            let entries = sizes
                .iter()
                .zip(next..)
                .map(|(&size, index)| Entry {
                    index,
                    term,
                    data: data_rng.bytes(size),
                })
                .collect();
            rig.append(entries).map_err(at)
        }
        Step::AppendOne {
            index_delta,
            term_delta,
            size,
        } => {
            let index = offset(next, *index_delta);
            let term = offset(last_term, *term_delta);
            let entry = Entry {
                index,
                term,
                data: data_rng.bytes(*size),
            };
            if index == next && term >= last_term {
                rig.append_entry(entry).map_err(at)
            } else {
                let result = rig.wal().append_entry(index, term, &entry.data);
                refused(rig, "append_entry", Expect::OutOfOrder, result).map_err(at)
            }
        }
        Step::SetHardState {
            term_delta,
            vote,
            commit,
        } => {
            let hard_state = HardState {
                term: offset(model.hard_state.term, *term_delta),
                vote: *vote,
                commit: commit % next,
            };
            if hard_state.term >= model.hard_state.term {
                rig.set_hard_state(hard_state).map_err(at)
            } else {
                let result = rig.wal().set_hard_state(hard_state);
                refused(rig, "set_hard_state", Expect::OutOfOrder, result).map_err(at)
            }
        }
        Step::TruncateFrom { delta } => {
            let index = offset(next, *delta);
            // The documented rule: not at or below the snapshot; past the end only when the
            // snapshot covers `index - 1`.
            let expect = if index <= covered {
                Expect::OutOfOrder
            } else if index > next && index - 1 > covered {
                Expect::NotCovered
            } else {
                Expect::Ok
            };
            if expect == Expect::Ok {
                rig.truncate_from(index).map_err(at)
            } else {
                let result = rig.wal().truncate_from(index);
                refused(rig, "truncate_from", expect, result).map_err(at)
            }
        }
        Step::Sync => rig.sync().map_err(at),
        Step::Flush => rig.flush().map_err(at),
        Step::Snapshot {
            back,
            compact_back,
            data_len,
        } => {
            let stable = rig.model.stable_index();
            if stable <= covered {
                return Ok(());
            }
            let index = stable.saturating_sub(*back).max(covered + 1);
            let term = model
                .term_at(index)
                .ok_or_else(|| at(format!("the model has no entry {index}")))?;
            let data = data_rng.bytes(*data_len);
            rig.save_snapshot(SnapshotMeta { index, term }, &data)
                .map_err(at)?;
            rig.compact_to(index.saturating_sub(*compact_back))
                .map_err(at)
        }
        Step::CompactTo { delta } => {
            let index = offset(covered, *delta);
            if index <= covered {
                rig.compact_to(index).map_err(at)
            } else {
                let result = rig.wal().compact_to(index);
                refused(rig, "compact_to", Expect::NotCovered, result).map_err(at)
            }
        }
        Step::Crash {
            flush,
            power_loss,
            during_recovery,
        } => {
            let loss = power_loss.map(PowerLoss::new);
            let again = during_recovery
                .filter(|_| loss.is_some())
                .map(PowerLoss::new);
            rig.crash_and_recover(*flush, loss, again)
                .map(drop)
                .map_err(at)
        }
        Step::Close => rig.close().map_err(at),
        Step::Reopen => {
            rig.sync().map_err(at)?;
            rig.crash(true, None).map(drop).map_err(at)
        }
    }
}

fn run(write_path: WritePath, snapshots_kept: usize, steps: &[Step]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(format!("tempdir: {e}")))?;
    let options = harness::options(write_path, snapshots_kept);
    let mut rig = Rig::new(dir.path(), options).map_err(TestCaseError::fail)?;
    for (number, step) in steps.iter().enumerate() {
        run_step(&mut rig, step, number).map_err(TestCaseError::fail)?;
    }
    // Whatever happened, a clean close loses nothing.
    rig.close()
        .map_err(|e| TestCaseError::fail(format!("the final close: {e}")))
}

proptest! {
    // N = 256 cases (proptest's default) of up to 100 operations each: a few seconds in release
    // mode. A fixed seed keeps the run deterministic; no persistence file, so nothing is written
    // into the repository.
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0xBA15_A000),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_wal_behaves_like_the_model_across_crashes(
        write_path in prop_oneof![
            2 => Just(WritePath::Pwrite),
            2 => Just(WritePath::Direct),
            1 => Just(WritePath::Mmap),
        ],
        snapshots_kept in 1usize..=3,
        steps in prop::collection::vec(step(), 1..100),
    ) {
        run(write_path, snapshots_kept, &steps)?;
    }
}

/// A clean close writes a last sync mark. Whatever room the last record left in the active
/// segment, that mark must fit, and still leave room for the seal a later roll writes: a segment
/// is a fixed-size file. Fills the first segment to each of the sizes around its end, then closes,
/// reopens, appends (which may roll), closes and reopens again.
#[test]
fn a_clean_close_near_the_end_of_a_segment_keeps_its_size_with_pwrite() {
    sweep_closes_near_the_end(WritePath::Pwrite);
}

/// As above, through the map, where a record past the segment's end cannot be written at all.
#[test]
fn a_clean_close_near_the_end_of_a_segment_stays_inside_it_with_mmap() {
    sweep_closes_near_the_end(WritePath::Mmap);
}

/// As above, with whole-block O_DIRECT writes, whose last block must not run past the segment.
#[test]
fn a_clean_close_near_the_end_of_a_segment_keeps_its_size_with_direct() {
    sweep_closes_near_the_end(WritePath::Direct);
}

fn sweep_closes_near_the_end(write_path: WritePath) {
    let mut failures = Vec::new();
    // Room left by the largest entry the segment takes, and the 59 sizes above it.
    let max = balsa_wal::max_entry_bytes(harness::SEGMENT_BYTES);
    let least = harness::SEGMENT_BYTES - filled_by(max);
    let sizes = least..least + 60;
    for free in sizes.clone() {
        match catch_unwind(|| close_with_room(write_path, free)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("{free} bytes free: {e}")),
            Err(panic) => failures.push(format!(
                "{free} bytes free: panicked: {}",
                panic_message(&*panic)
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{write_path:?}: {} of the {} fill levels ({sizes:?} bytes left free) failed:\n{}",
        failures.len(),
        sizes.end - sizes.start,
        failures.join("\n")
    );
}

/// Bytes of the first segment of a new log used once one entry of `len` bytes is appended after
/// the open: the header, the hard state, the sync mark that starts the first batch, the entry.
fn filled_by(len: usize) -> u64 {
    (SEGMENT_HEADER + HARD_STATE_RECORD + MARK_RECORD + RECORD_HEADER + len) as u64
}

fn close_with_room(write_path: WritePath, free: u64) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let options = harness::options(write_path, 2);
    let len = harness::to_usize(harness::SEGMENT_BYTES - free) - harness::to_usize(filled_by(0));
    let first = Entry {
        index: 1,
        term: 1,
        data: Rng::new(free).bytes(len),
    };
    let second = Entry {
        index: 2,
        term: 1,
        data: b"after the reopen".to_vec(),
    };
    let (mut wal, _) = Wal::open(dir.path(), options.clone()).map_err(|e| format!("open: {e}"))?;
    wal.append(std::slice::from_ref(&first))
        .map_err(|e| format!("append: {e}"))?;
    wal.sync().map_err(|e| format!("sync: {e}"))?;
    wal.close().map_err(|e| format!("close: {e}"))?;
    segment_sizes(dir.path()).map_err(|e| format!("after the close: {e}"))?;
    let (mut wal, recovered) =
        Wal::open(dir.path(), options.clone()).map_err(|e| format!("reopen: {e}"))?;
    if recovered.entries != [first.clone()] {
        return Err(format!(
            "reopened with {} entries, not the one written",
            recovered.entries.len()
        ));
    }
    wal.append(std::slice::from_ref(&second))
        .map_err(|e| format!("append after the reopen: {e}"))?;
    wal.sync()
        .map_err(|e| format!("sync after the reopen: {e}"))?;
    wal.close().map_err(|e| format!("second close: {e}"))?;
    segment_sizes(dir.path()).map_err(|e| format!("after the second close: {e}"))?;
    let (_wal, recovered) =
        Wal::open(dir.path(), options).map_err(|e| format!("second reopen: {e}"))?;
    if recovered.entries != [first, second] {
        return Err(format!(
            "reopened with {} entries, not the two written",
            recovered.entries.len()
        ));
    }
    Ok(())
}

/// Every segment file must have the fixed segment size.
fn segment_sizes(dir: &std::path::Path) -> Result<(), String> {
    for (name, bytes) in harness::read_files(dir) {
        if name.ends_with(".wal") && bytes.len() as u64 != harness::SEGMENT_BYTES {
            return Err(format!(
                "segment {name} is {} bytes, not the fixed {}",
                bytes.len(),
                harness::SEGMENT_BYTES
            ));
        }
    }
    Ok(())
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a panic".into())
}
