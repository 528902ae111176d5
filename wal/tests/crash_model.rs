//! Power loss, modelled over the real files: whatever subset of the unsynced pages survives,
//! `open` must bring back everything that was synced and invent nothing, and never call it
//! corrupt.
//!
//! The harness (`crash_model_harness.rs`) keeps the durable image of the data directory at every
//! sync and, at a crash, flushes the `Wal`, drops it and rebuilds every file page by page from
//! the durable image and the current bytes (any subset of the new pages, not just a prefix; new
//! files may vanish, deleted ones come back). After the reopen the recovered log must be the
//! synced log plus some prefix of the operations done since (exactly all of them when the power
//! loss happened to lose nothing), with the exact bytes, terms and indexes, and the live `Wal`
//! must agree with the model after every call.
//!
//! Each seed runs a random workload of 200 operations over 64 KiB segments (a quarter of the seeds
//! with `WritePath::Mmap`, a quarter with `WritePath::Direct`): appends of 1 to 6000 bytes, syncs,
//! truncations, hard-state changes, snapshots with compaction, clean closes, process crashes and
//! power losses, a third of them followed by another power loss while the reopen is repairing the
//! log (the second reopen must come to the same log). One test crashes anywhere (300 seeds), the
//! other right after an append that rolled onto a new segment (200 seeds). Both also check that
//! they exercised what they claim (partial recoveries, torn tails, vanished and revived files…). A
//! failure names the seed and the step; set `BALSA_CRASH_SEED=<n>` to run one seed alone.

#[path = "crash_model_harness.rs"]
mod harness;

use std::panic::{AssertUnwindSafe, catch_unwind};

use balsa_wal::{Entry, HardState, SnapshotMeta, WritePath};
use harness::{Coverage, PowerLoss, Rig, Rng};

/// Seeds of the crash-anywhere test.
const SEEDS: u64 = 300;
/// Seeds of the crash-after-a-roll test.
const ROLL_SEEDS: u64 = 200;
/// Operations per seed.
const STEPS: usize = 200;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Power losses strike at random points.
    Anywhere,
    /// Power losses strike right after an append that rolled onto a new segment (one created
    /// since the last sync).
    AfterRoll,
}

#[test]
fn a_power_loss_keeps_every_synced_entry_and_invents_nothing() {
    let coverage = run_seeds(0..SEEDS, Mode::Anywhere);
    if single_seed().is_none() {
        assert_not_vacuous(&coverage);
    }
}

#[test]
fn a_power_loss_right_after_a_roll_keeps_every_synced_entry_and_invents_nothing() {
    let coverage = run_seeds(1_000_000..1_000_000 + ROLL_SEEDS, Mode::AfterRoll);
    if single_seed().is_none() {
        assert!(
            coverage.after_roll >= ROLL_SEEDS,
            "too few power losses right after a roll: {coverage:?}"
        );
        assert!(
            coverage.vanished > 0 && coverage.cut > 0 && coverage.partial > 0,
            "the new segment should sometimes vanish, sometimes be torn: {coverage:?}"
        );
    }
}

/// The seeds must really exercise loss: partial recovery, torn tails, vanished and revived files.
fn assert_not_vacuous(coverage: &Coverage) {
    let counts = [
        ("power losses", coverage.power_losses),
        ("partial recoveries", coverage.partial),
        ("recoveries keeping nothing unsynced", coverage.none_kept),
        ("recoveries keeping everything", coverage.all_kept),
        ("torn tails cut", coverage.cut),
        ("vanished new files", coverage.vanished),
        ("revived deleted snapshots", coverage.revived),
        ("power losses after a roll", coverage.after_roll),
        ("clean closes", coverage.closes),
        ("snapshots", coverage.snapshots),
        ("power losses during a recovery", coverage.recovery_losses),
    ];
    for (what, count) in counts {
        assert!(count > 0, "no {what} in the whole run: {coverage:?}");
    }
}

fn single_seed() -> Option<u64> {
    std::env::var("BALSA_CRASH_SEED").ok()?.parse().ok()
}

/// Runs every seed (or the one `BALSA_CRASH_SEED` names); fails naming every failing seed.
fn run_seeds(seeds: std::ops::Range<u64>, mode: Mode) -> Coverage {
    let only = single_seed();
    let mut total = Coverage::default();
    let mut failures: Vec<(u64, String)> = Vec::new();
    let mut ran = 0;
    for seed in seeds.filter(|seed| only.is_none_or(|only| only == *seed)) {
        ran += 1;
        match catch_unwind(AssertUnwindSafe(|| workload(seed, mode))) {
            Ok(Ok(coverage)) => total.add(&coverage),
            Ok(Err(message)) => failures.push((seed, message)),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "a panic".into());
                failures.push((seed, format!("panicked: {message}")));
            }
        }
    }
    if let Some((seed, message)) = failures.first() {
        let seeds: Vec<u64> = failures.iter().map(|(seed, _)| *seed).collect();
        panic!(
            "{mode:?}: {} of {ran} seeds failed: {seeds:?}\nfirst failure, seed {seed} \
             (rerun alone with BALSA_CRASH_SEED={seed}):\n{message}",
            failures.len()
        );
    }
    total
}

/// One seed's workload; the error says at which step and what went wrong.
fn workload(seed: u64, mode: Mode) -> Result<Coverage, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let mut rng = Rng::new(seed);
    // A quarter of the seeds write through the map, a quarter O_DIRECT; the number of snapshots
    // kept varies. A Direct flush is durable already; the model may still lose it, which only
    // widens what recovery must cope with. Direct rewrites the partial block at the end of the
    // log with its durable bytes unchanged, so a page (or sector) that keeps its old bytes
    // still holds them: that is what the power losses check.
    let write_path = match seed % 4 {
        3 => WritePath::Mmap,
        1 => WritePath::Direct,
        _ => WritePath::Pwrite,
    };
    let snapshots_kept = harness::to_usize(1 + seed % 3);
    let mut rig = Rig::new(dir.path(), harness::options(write_path, snapshots_kept))?;
    let mut term = 1;
    for step in 0..STEPS {
        let at = |e: String| format!("seed {seed}, step {step}: {e}");
        let rolls_before = rig.wal().stats().rolls;
        let mut appended = false;
        match rng.below(100) {
            0..=39 => {
                append_batch(&mut rig, &mut rng, &mut term).map_err(at)?;
                appended = true;
            }
            40..=46 => set_hard_state(&mut rig, &mut rng, &mut term).map_err(at)?,
            47..=52 => truncate(&mut rig, &mut rng).map_err(at)?,
            53..=78 => rig.sync().map_err(at)?,
            79..=81 => snapshot(&mut rig, &mut rng).map_err(at)?,
            82 => rig.close().map_err(at)?,
            83 => {
                // A process crash after a flush loses nothing.
                rig.crash(true, None).map_err(at)?;
            }
            84 => {
                // A process crash without a flush loses what was still buffered.
                rig.crash(false, None).map_err(at)?;
            }
            85..=89 if mode == Mode::Anywhere => power_loss(&mut rig, &mut rng).map_err(at)?,
            _ => rig.flush().map_err(at)?,
        }
        if mode == Mode::AfterRoll
            && appended
            && rig.wal().stats().rolls != rolls_before
            && rng.percent(70)
        {
            power_loss(&mut rig, &mut rng).map_err(at)?;
        }
    }
    let at = |e: String| format!("seed {seed}, at the end: {e}");
    power_loss(&mut rig, &mut rng).map_err(at)?;
    rig.close().map_err(at)?;
    Ok(rig.coverage)
}

/// A power loss after a flush; a third of the time power fails again during the recovery.
fn power_loss(rig: &mut Rig, rng: &mut Rng) -> Result<(), String> {
    let loss = PowerLoss::new(rng.next_u64());
    let again = rng.percent(33).then(|| PowerLoss::new(rng.next_u64()));
    rig.crash_and_recover(true, Some(loss), again)?;
    Ok(())
}

fn append_batch(rig: &mut Rig, rng: &mut Rng, term: &mut u64) -> Result<(), String> {
    if rng.percent(10) {
        *term += 1;
    }
    let first = rig.model.current.next_index;
    let count = rng.between(1, 6);
    let entries = (first..first + count)
        .map(|index| {
            let len = rng.payload_len();
            Entry {
                index,
                term: *term,
                data: rng.bytes(len),
            }
        })
        .collect();
    rig.append(entries)
}

fn set_hard_state(rig: &mut Rig, rng: &mut Rng, term: &mut u64) -> Result<(), String> {
    if rng.percent(30) {
        *term += 1;
    }
    let hard_state = HardState {
        term: *term,
        vote: rng.below(4),
        commit: rng.below(rig.model.current.next_index),
    };
    rig.set_hard_state(hard_state)
}

fn truncate(rig: &mut Rig, rng: &mut Rng) -> Result<(), String> {
    let model = &rig.model.current;
    let room = model.next_index - 1 - model.snapshot_index();
    if room == 0 {
        return Ok(());
    }
    let index = model.next_index - rng.between(1, room.min(8));
    rig.truncate_from(index)
}

/// Saves a snapshot of an entry every crash keeps, then compacts up to (mostly) it.
fn snapshot(rig: &mut Rig, rng: &mut Rng) -> Result<(), String> {
    let covered = rig.model.current.snapshot_index();
    let stable = rig.model.stable_index();
    if stable <= covered {
        return Ok(());
    }
    let index = rng.between(covered + 1, stable);
    let term = rig
        .model
        .current
        .term_at(index)
        .ok_or_else(|| format!("the model has no entry {index} below the stable index"))?;
    let len = harness::to_usize(rng.below(3000));
    let data = rng.bytes(len);
    rig.save_snapshot(SnapshotMeta { index, term }, &data)?;
    let to = if rng.percent(75) {
        index
    } else {
        rng.below(index + 1)
    };
    rig.compact_to(to)
}
