//! The power-loss harness and the log model shared by `crash_model.rs` and `model.rs`.
//!
//! Both include this file as a module (`#[path = "crash_model_harness.rs"] mod harness;`); cargo
//! also builds it alone as a test target, which holds no tests.
//!
//! - [`Disk`] models a power loss over the real files. After every durable point (a sync, an
//!   open, a snapshot or a compaction) it keeps the *durable image*: the bytes every file would
//!   have if power failed then. A crash takes the files as they are, drops the `Wal`, and rebuilds
//!   the directory as a power loss could have left it: every 4096-byte page written since the last
//!   sync is, independently, the durable one or the new one (any subset, not just a prefix; a
//!   third of the power losses tear at 512-byte sectors instead, as a device without atomic
//!   4 KiB writes may); a file created since then vanishes or survives with some of its pages
//!   over zeros (segments are renamed in from a zero-filled, synced file); a file deleted without
//!   a directory fsync may come back.
//! - [`Tracker`] models the log: the state as of the last sync, the record-writing operations
//!   since, and the state with all of them applied. After a crash the recovered state must be the
//!   synced state plus some prefix of those operations (exactly all of them when nothing was lost).
//! - [`Rig`] ties a `Wal`, its `Disk` and its `Tracker` together, checking the `Wal` against the
//!   model after every call.

#![allow(
    dead_code,
    reason = "each includer uses a part of the harness, and built alone it uses none"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use balsa_wal::{Entry, HardState, Options, Recovered, SnapshotMeta, Tail, Wal, WritePath};

/// The page size of the power-loss model.
pub const PAGE: usize = 4096;
/// The sector size of the power losses that tear inside a page.
pub const SECTOR: usize = 512;
/// Small segments, so that a workload rolls over several.
pub const SEGMENT_BYTES: u64 = 64 * 1024;

/// The options the tests open with: small segments, and the given write path and snapshot count.
pub fn options(write_path: WritePath, snapshots_kept: usize) -> Options {
    Options {
        segment_bytes: SEGMENT_BYTES,
        write_path,
        snapshots_kept,
    }
}

/// A small seeded generator (splitmix64): the tests must be reproducible from their seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`; `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi, "between({lo}, {hi})");
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `p` percent.
    pub fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    /// One of `items`, uniformly.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[to_usize(self.below(items.len() as u64))]
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        for chunk in out.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        out
    }

    /// An entry payload size in 1..=6000, skewed towards small entries as a real log's are.
    pub fn payload_len(&mut self) -> usize {
        let len = match self.below(10) {
            0..=4 => self.between(1, 100),
            5..=7 => self.between(100, 2000),
            _ => self.between(2000, 6000),
        };
        to_usize(len)
    }
}

/// A `u64` that is known to fit as a `usize` (lengths and counts of in-memory things).
pub fn to_usize(value: u64) -> usize {
    usize::try_from(value).expect("fits in usize")
}

/// File name to bytes, for every regular file of a directory.
pub type Files = BTreeMap<String, Vec<u8>>;

/// Reads every regular file of `dir`.
pub fn read_files(dir: &Path) -> Files {
    let mut files = Files::new();
    for entry in fs::read_dir(dir).expect("list the data directory") {
        let entry = entry.expect("list the data directory");
        if !entry.file_type().expect("file type").is_file() {
            continue;
        }
        let name = entry.file_name().into_string().expect("a utf-8 file name");
        let bytes = fs::read(entry.path()).expect("read a file of the data directory");
        files.insert(name, bytes);
    }
    files
}

/// Finished snapshot files are written whole and synced before they get their name.
fn is_snapshot_file(name: &str) -> bool {
    name.starts_with("snap-") && !name.ends_with(".tmp")
}

/// How much a power loss keeps of what was not synced.
#[derive(Clone, Debug)]
pub struct PowerLoss {
    rng: Rng,
    /// Chance (percent) that a page written since the last sync keeps its new bytes.
    pub keep_page: u64,
    /// The unit that survives or not as a whole: [`PAGE`], or [`SECTOR`] for a device whose
    /// 4 KiB writes can tear.
    pub tear: usize,
    /// Chance (percent) that a file created since the last sync vanishes.
    pub vanish_file: u64,
    /// Chance (percent) that a file deleted without a directory fsync comes back.
    pub revive_file: u64,
}

impl PowerLoss {
    /// A power loss drawn from `seed`: how much it keeps varies from nothing to everything.
    pub fn new(seed: u64) -> PowerLoss {
        let mut rng = Rng::new(seed ^ 0x706F_7765_726C_6F73); // "powerlos"
        let keep_page = match rng.below(5) {
            0 => 0,
            1 => 100,
            2 => 50,
            _ => rng.below(101),
        };
        let vanish_file = rng.pick(&[0, 50, 100]);
        let revive_file = rng.pick(&[0, 50, 100]);
        // Drawn apart, so that the draws above stay what they were for every seed.
        let tear = if Rng::new(seed ^ 0x7365_6374_6F72).percent(33) {
            SECTOR
        } else {
            PAGE
        };
        PowerLoss {
            rng,
            keep_page,
            tear,
            vanish_file,
            revive_file,
        }
    }
}

/// What a crash left on the disk.
#[derive(Debug)]
pub struct Crashed {
    /// Every byte handed to the OS survived (no page, file or deletion was lost).
    pub lossless: bool,
    /// What the power loss did, for failure messages.
    pub report: String,
    /// Files created since the last sync that vanished.
    pub vanished: usize,
    /// Files deleted since the last sync that came back.
    pub revived: usize,
    /// Pages written since the last sync that kept their old bytes.
    pub lost_pages: usize,
}

/// The durable image of a data directory, kept up to date at every durable point, and the
/// power loss that rebuilds the directory from it.
pub struct Disk {
    dir: PathBuf,
    /// Files whose existence is durable, with their durable bytes. A file deleted without a
    /// directory fsync stays here: a power loss may bring it back.
    durable: Files,
    /// `Wal::stats().rolls` at the last durable point: a sync after a roll fsyncs the directory.
    rolls: u64,
}

impl Disk {
    /// The harness for the data directory `dir`.
    pub fn new(dir: &Path) -> Disk {
        Disk {
            dir: dir.to_path_buf(),
            durable: Files::new(),
            rolls: 0,
        }
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Names of the files now in the directory.
    pub fn names(&self) -> BTreeSet<String> {
        read_files(&self.dir).into_keys().collect()
    }

    /// After `Wal::open` returned: recovery synced its repairs and the directory, and `open`
    /// synced the rest. Everything is durable.
    pub fn opened(&mut self, wal: &Wal) {
        self.durable = read_files(&self.dir);
        self.rolls = wal.stats().rolls;
    }

    /// After `Wal::sync` returned: the contents of the files are durable, and so is the directory
    /// when a roll since the last sync made the sync fsync it.
    pub fn synced(&mut self, wal: &Wal) {
        let current = read_files(&self.dir);
        let rolls = wal.stats().rolls;
        if rolls != self.rolls {
            self.durable = current;
        } else {
            // No directory fsync: what was deleted since may come back, what was created may not
            // be there (neither happens in these workloads without a roll, but be exact).
            let mut durable = Files::new();
            for (name, bytes) in current {
                if self.durable.contains_key(&name) {
                    durable.insert(name, bytes);
                }
            }
            for (name, bytes) in &self.durable {
                durable.entry(name.clone()).or_insert_with(|| bytes.clone());
            }
            self.durable = durable;
        }
        self.rolls = rolls;
    }

    /// After `Wal::save_snapshot` returned: the snapshot file was synced, renamed and the
    /// directory fsynced (making every name then in it durable); then the oldest snapshots were
    /// deleted without a directory fsync, so they may come back.
    pub fn snapshot_saved(&mut self) {
        let current = read_files(&self.dir);
        let mut durable = Files::new();
        for (name, bytes) in &current {
            let kept = if is_snapshot_file(name) {
                bytes.clone()
            } else if let Some(old) = self.durable.get(name) {
                old.clone()
            } else {
                // Named since the last sync: a segment renamed in from a zero-filled, synced file.
                vec![0; bytes.len()]
            };
            durable.insert(name.clone(), kept);
        }
        for (name, bytes) in &self.durable {
            if is_snapshot_file(name) && !current.contains_key(name) {
                durable.insert(name.clone(), bytes.clone());
            }
        }
        self.durable = durable;
    }

    /// After `Wal::compact_to` returned, given the names before it: each deletion was followed by
    /// a directory fsync, so if any file went, the directory as it is now is durable.
    pub fn compacted(&mut self, before: &BTreeSet<String>) {
        let current = read_files(&self.dir);
        if before.iter().all(|name| current.contains_key(name)) {
            return;
        }
        let mut durable = Files::new();
        for (name, bytes) in &current {
            let kept = if is_snapshot_file(name) {
                bytes.clone()
            } else if let Some(old) = self.durable.get(name) {
                old.clone()
            } else {
                vec![0; bytes.len()]
            };
            durable.insert(name.clone(), kept);
        }
        self.durable = durable;
    }

    /// Crashes: flushes `wal` if asked (so its unsynced records are in the files), drops it, and
    /// with a power loss rebuilds the directory from the durable image and the current bytes.
    pub fn crash(
        &mut self,
        mut wal: Wal,
        flush: bool,
        loss: Option<PowerLoss>,
    ) -> Result<Crashed, String> {
        if flush {
            wal.flush()
                .map_err(|e| format!("flush before the crash failed: {e}"))?;
        }
        let current = read_files(&self.dir);
        drop(wal);
        let Some(mut loss) = loss else {
            return Ok(Crashed {
                lossless: true,
                report: format!("process crash (flushed: {flush})"),
                vanished: 0,
                revived: 0,
                lost_pages: 0,
            });
        };
        let mut report = format!(
            "power loss (flushed: {flush}, {}-byte units, keep one {}%, vanish file {}%, \
             revive file {}%):",
            loss.tear, loss.keep_page, loss.vanish_file, loss.revive_file
        );
        let mut crashed = Crashed {
            lossless: true,
            report: String::new(),
            vanished: 0,
            revived: 0,
            lost_pages: 0,
        };
        let names: BTreeSet<&String> = current.keys().chain(self.durable.keys()).collect();
        for name in names {
            let path = self.dir.join(name);
            let image = match (current.get(name), self.durable.get(name)) {
                (Some(now), Some(old)) if now == old => continue,
                (Some(now), Some(old)) if now.len() == old.len() => Some(mix_pages(
                    name,
                    old,
                    now,
                    &mut loss,
                    &mut crashed,
                    &mut report,
                )),
                (Some(now), Some(old)) => {
                    // Not seen in these workloads: segments keep their size. Keep one whole.
                    let keep_new = loss.rng.percent(loss.keep_page);
                    crashed.lossless &= keep_new;
                    let _ = write!(report, " {name}: resized, kept the new one: {keep_new};");
                    Some(if keep_new { now.clone() } else { old.clone() })
                }
                (Some(now), None) => {
                    if loss.rng.percent(loss.vanish_file) {
                        crashed.lossless = false;
                        crashed.vanished += 1;
                        let _ = write!(report, " {name}: created since the sync, vanished;");
                        None
                    } else {
                        let zeros = vec![0; now.len()];
                        let _ = write!(report, " {name}: created since the sync, kept;");
                        Some(mix_pages(
                            name,
                            &zeros,
                            now,
                            &mut loss,
                            &mut crashed,
                            &mut report,
                        ))
                    }
                }
                (None, Some(old)) => {
                    if loss.rng.percent(loss.revive_file) {
                        crashed.lossless = false;
                        crashed.revived += 1;
                        let _ = write!(report, " {name}: deleted since the sync, came back;");
                        Some(old.clone())
                    } else {
                        continue;
                    }
                }
                (None, None) => unreachable!("listed from one of the two"),
            };
            match image {
                Some(bytes) => fs::write(&path, bytes)
                    .map_err(|e| format!("rebuild {}: {e}", path.display()))?,
                None => {
                    fs::remove_file(&path).map_err(|e| format!("remove {}: {e}", path.display()))?
                }
            }
        }
        crashed.report = report;
        Ok(crashed)
    }
}

/// Each page (or sector, as `loss` tears) that differs between `old` and `new` independently keeps
/// its new bytes or not.
fn mix_pages(
    name: &str,
    old: &[u8],
    new: &[u8],
    loss: &mut PowerLoss,
    crashed: &mut Crashed,
    report: &mut String,
) -> Vec<u8> {
    let mut out = old.to_vec();
    let mut kept = Vec::new();
    let mut lost = Vec::new();
    for (page, (from, to)) in new
        .chunks(loss.tear)
        .zip(out.chunks_mut(loss.tear))
        .enumerate()
    {
        if from == &*to {
            continue;
        }
        if loss.rng.percent(loss.keep_page) {
            to.copy_from_slice(from);
            kept.push(page);
        } else {
            lost.push(page);
        }
    }
    if !lost.is_empty() {
        crashed.lossless = false;
        crashed.lost_pages += lost.len();
    }
    if !kept.is_empty() || !lost.is_empty() {
        let _ = write!(report, " {name}: new pages kept {kept:?}, lost {lost:?};");
    }
    out
}

/// An operation that writes a record: what a crash may keep a prefix of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// An entry appended.
    Append(Entry),
    /// A new hard state.
    HardState(HardState),
    /// A truncation from this index.
    TruncateFrom(u64),
}

impl Op {
    fn describe(&self) -> String {
        match self {
            Op::Append(e) => format!("e{}t{}({}B)", e.index, e.term, e.data.len()),
            Op::HardState(hs) => format!("hs(t{} v{} c{})", hs.term, hs.vote, hs.commit),
            Op::TruncateFrom(index) => format!("trunc{index}"),
        }
    }
}

/// The log as the model has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    /// Every live entry from index 1, including those a snapshot covers.
    pub entries: Vec<Entry>,
    /// The index the next entry must have.
    pub next_index: u64,
    /// The hard state.
    pub hard_state: HardState,
    /// The newest saved snapshot.
    pub snapshot: Option<SnapshotMeta>,
}

impl Default for Model {
    fn default() -> Model {
        Model {
            entries: Vec::new(),
            next_index: 1,
            hard_state: HardState::default(),
            snapshot: None,
        }
    }
}

impl Model {
    /// Applies a valid operation.
    pub fn apply(&mut self, op: Op) {
        match op {
            Op::Append(entry) => {
                assert_eq!(entry.index, self.next_index, "the model appends in order");
                self.next_index += 1;
                self.entries.push(entry);
            }
            Op::HardState(hard_state) => self.hard_state = hard_state,
            Op::TruncateFrom(index) => {
                let keep = self.entries.partition_point(|e| e.index < index);
                self.entries.truncate(keep);
                self.next_index = index;
            }
        }
    }

    /// The newest snapshot's index, 0 without one.
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.map_or(0, |meta| meta.index)
    }

    /// The entries `open` hands back: those after the snapshot.
    pub fn visible(&self) -> &[Entry] {
        let covered = self.snapshot_index();
        &self.entries[self.entries.partition_point(|e| e.index <= covered)..]
    }

    /// What `Wal::last_term` must say.
    pub fn last_term(&self) -> u64 {
        self.entries
            .last()
            .map(|e| e.term)
            .or(self.snapshot.map(|meta| meta.term))
            .unwrap_or(0)
    }

    /// The term of the live entry at `index`.
    pub fn term_at(&self, index: u64) -> Option<u64> {
        let at = self.entries.partition_point(|e| e.index < index);
        self.entries
            .get(at)
            .filter(|e| e.index == index)
            .map(|e| e.term)
    }

    fn summary(&self) -> String {
        format!(
            "{} next_index {} {:?} snapshot {:?}",
            summarize(self.visible()),
            self.next_index,
            self.hard_state,
            self.snapshot
        )
    }
}

/// A short description of a run of entries.
pub fn summarize(entries: &[Entry]) -> String {
    match (entries.first(), entries.last()) {
        (Some(first), Some(last)) => format!(
            "{} entries {}..={} (last term {})",
            entries.len(),
            first.index,
            last.index,
            last.term
        ),
        _ => "no entries".into(),
    }
}

/// The model of a log across syncs and crashes.
#[derive(Debug, Default)]
pub struct Tracker {
    /// The state as of the last sync (or open).
    pub synced: Model,
    /// Record-writing operations since, in order.
    pub pending: Vec<Op>,
    /// `synced` with every pending operation applied: the state the `Wal` reports.
    pub current: Model,
    /// The newest snapshot's data.
    pub snapshot_data: Option<Vec<u8>>,
}

impl Tracker {
    /// Records a valid operation the `Wal` accepted.
    pub fn record(&mut self, op: Op) {
        self.current.apply(op.clone());
        self.pending.push(op);
    }

    /// A sync returned: everything pending is durable.
    pub fn synced(&mut self) {
        for op in self.pending.drain(..) {
            self.synced.apply(op);
        }
        debug_assert_eq!(self.synced.next_index, self.current.next_index);
    }

    /// A snapshot was saved (durable at once).
    pub fn snapshot_saved(&mut self, meta: SnapshotMeta, data: &[u8]) {
        self.synced.snapshot = Some(meta);
        self.current.snapshot = Some(meta);
        self.snapshot_data = Some(data.to_vec());
    }

    /// The highest index whose entry is the same in the synced state and in every state a crash
    /// may leave: a snapshot may cover up to here.
    pub fn stable_index(&self) -> u64 {
        let truncated = self.pending.iter().filter_map(|op| match op {
            Op::TruncateFrom(index) => Some(index - 1),
            _ => None,
        });
        truncated
            .chain([self.synced.next_index - 1, self.current.next_index - 1])
            .min()
            .unwrap_or(0)
    }

    /// Checks the live `Wal` against the current state.
    pub fn check_live(&self, wal: &Wal) -> Result<(), String> {
        let model = &self.current;
        let got = (
            wal.next_index(),
            wal.last_term(),
            wal.hard_state(),
            wal.snapshot_meta(),
        );
        let want = (
            model.next_index,
            model.last_term(),
            model.hard_state,
            model.snapshot,
        );
        if got != want {
            return Err(format!(
                "the live wal says (next_index, last_term, hard state, snapshot) = {got:?}, the \
                 model {want:?}"
            ));
        }
        Ok(())
    }

    /// Checks what `open` recovered: the synced state plus a prefix of the pending operations
    /// (all of them when `exact`). On success the model becomes that state, now durable, and the
    /// prefix length is returned.
    pub fn check_recovered(
        &mut self,
        wal: &Wal,
        recovered: &Recovered,
        exact: bool,
    ) -> Result<usize, String> {
        if recovered.snapshot != self.current.snapshot {
            return Err(format!(
                "recovered snapshot {:?}, the newest saved is {:?}",
                recovered.snapshot, self.current.snapshot
            ));
        }
        let next_index = wal.next_index();
        let cheap = |state: &Model| {
            let visible = state.visible();
            recovered.hard_state == state.hard_state
                && next_index == state.next_index
                && recovered.entries.len() == visible.len()
                && recovered.entries.last() == visible.last()
        };
        let matches = |state: &Model| cheap(state) && recovered.entries == state.visible();
        let n = self.pending.len();
        let found = if exact {
            matches(&self.current).then(|| (n, self.current.clone()))
        } else {
            let mut state = self.synced.clone();
            let mut found = None;
            for k in 0..=n {
                if matches(&state) {
                    found = Some((k, state));
                    break;
                }
                if k < n {
                    state.apply(self.pending[k].clone());
                }
            }
            found
        };
        let Some((k, state)) = found else {
            return Err(self.mismatch(wal, recovered, exact));
        };
        self.synced = state.clone();
        self.current = state;
        self.pending.clear();
        self.check_live(wal)?;
        Ok(k)
    }

    fn mismatch(&self, wal: &Wal, recovered: &Recovered, exact: bool) -> String {
        let rule = if exact {
            "the state before the crash, exactly (nothing was lost)"
        } else {
            "the synced state plus a prefix of the operations since"
        };
        let mut out = format!(
            "the recovered log is not {rule}\n  recovered: {} next_index {} {:?} snapshot {:?} \
             tail {:?}\n  synced:    {}\n  current:   {}\n",
            summarize(&recovered.entries),
            wal.next_index(),
            recovered.hard_state,
            recovered.snapshot,
            recovered.tail,
            self.synced.summary(),
            self.current.summary(),
        );
        for (label, model) in [("synced", &self.synced), ("current", &self.current)] {
            let want = model.visible();
            let same = recovered
                .entries
                .iter()
                .zip(want)
                .take_while(|(a, b)| a == b)
                .count();
            let _ = write!(
                out,
                "  recovered entries agree with the {label} ones for the first {same}"
            );
            if let Some(got) = recovered.entries.get(same) {
                let _ = write!(
                    out,
                    "; then recovered e{}t{}({}B)",
                    got.index,
                    got.term,
                    got.data.len()
                );
            }
            if let Some(expected) = want.get(same) {
                let _ = write!(
                    out,
                    " where {label} has e{}t{}({}B)",
                    expected.index,
                    expected.term,
                    expected.data.len()
                );
            }
            out.push('\n');
        }
        let ops: Vec<String> = self.pending.iter().take(60).map(Op::describe).collect();
        let _ = write!(
            out,
            "  {} operations since the last sync: {}{}",
            self.pending.len(),
            ops.join(" "),
            if self.pending.len() > 60 { " …" } else { "" }
        );
        out
    }
}

/// Counts of what the crashes did, to show a workload is not vacuous.
#[derive(Clone, Copy, Debug, Default)]
pub struct Coverage {
    /// Crashes followed by a reopen.
    pub crashes: u64,
    /// Crashes with a power loss.
    pub power_losses: u64,
    /// Reopens that recovered some but not all of the operations since the last sync.
    pub partial: u64,
    /// Reopens that recovered none of one or more operations since the last sync.
    pub none_kept: u64,
    /// Reopens that recovered all of one or more operations since the last sync.
    pub all_kept: u64,
    /// Reopens that cut a torn tail.
    pub cut: u64,
    /// Files created since the last sync that a power loss made vanish.
    pub vanished: u64,
    /// Deleted files a power loss brought back.
    pub revived: u64,
    /// Power losses that struck while a segment created since the last sync existed.
    pub after_roll: u64,
    /// Clean closes.
    pub closes: u64,
    /// Snapshots saved.
    pub snapshots: u64,
    /// Power losses during a recovery.
    pub recovery_losses: u64,
}

impl Coverage {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &Coverage) {
        self.crashes += other.crashes;
        self.power_losses += other.power_losses;
        self.partial += other.partial;
        self.none_kept += other.none_kept;
        self.all_kept += other.all_kept;
        self.cut += other.cut;
        self.vanished += other.vanished;
        self.revived += other.revived;
        self.after_roll += other.after_roll;
        self.closes += other.closes;
        self.snapshots += other.snapshots;
        self.recovery_losses += other.recovery_losses;
    }
}

/// A `Wal` with its durable image and its model, checked after every call.
pub struct Rig {
    /// The open log, `None` only inside a crash or close.
    wal: Option<Wal>,
    /// What every open uses.
    options: Options,
    /// The durable image.
    pub disk: Disk,
    /// The model.
    pub model: Tracker,
    /// What the crashes did.
    pub coverage: Coverage,
    /// Rolls seen at the last durable point (stats restart at every open).
    rolls_at_sync: u64,
}

impl Rig {
    /// Opens a new log in `dir` (which must be empty).
    pub fn new(dir: &Path, options: Options) -> Result<Rig, String> {
        let mut rig = Rig {
            wal: None,
            options,
            disk: Disk::new(dir),
            model: Tracker::default(),
            coverage: Coverage::default(),
            rolls_at_sync: 0,
        };
        rig.reopen(true, true, "the first open", None)?;
        Ok(rig)
    }

    /// The open log.
    pub fn wal(&mut self) -> &mut Wal {
        self.wal.as_mut().expect("the wal is open")
    }

    /// True when a segment was created since the last sync.
    pub fn rolled_since_sync(&mut self) -> bool {
        self.wal().stats().rolls != self.rolls_at_sync
    }

    /// Checks the live `Wal` against the model.
    pub fn check_live(&mut self) -> Result<(), String> {
        let wal = self.wal.as_ref().expect("the wal is open");
        self.model.check_live(wal)
    }

    /// Appends valid entries in one call.
    pub fn append(&mut self, entries: Vec<Entry>) -> Result<(), String> {
        self.wal()
            .append(&entries)
            .map_err(|e| format!("append: {e}"))?;
        for entry in entries {
            self.model.record(Op::Append(entry));
        }
        self.check_live()
    }

    /// Appends one valid entry.
    pub fn append_entry(&mut self, entry: Entry) -> Result<(), String> {
        self.wal()
            .append_entry(entry.index, entry.term, &entry.data)
            .map_err(|e| format!("append_entry {}: {e}", entry.index))?;
        self.model.record(Op::Append(entry));
        self.check_live()
    }

    /// Sets a valid hard state.
    pub fn set_hard_state(&mut self, hard_state: HardState) -> Result<(), String> {
        self.wal()
            .set_hard_state(hard_state)
            .map_err(|e| format!("set_hard_state {hard_state:?}: {e}"))?;
        if hard_state != self.model.current.hard_state {
            self.model.record(Op::HardState(hard_state));
        }
        self.check_live()
    }

    /// Truncates from a valid index (not past the end).
    pub fn truncate_from(&mut self, index: u64) -> Result<(), String> {
        self.wal()
            .truncate_from(index)
            .map_err(|e| format!("truncate_from {index}: {e}"))?;
        if index != self.model.current.next_index {
            self.model.record(Op::TruncateFrom(index));
        }
        self.check_live()
    }

    /// Syncs.
    pub fn sync(&mut self) -> Result<(), String> {
        self.wal().sync().map_err(|e| format!("sync: {e}"))?;
        let wal = self.wal.as_ref().expect("the wal is open");
        self.disk.synced(wal);
        self.rolls_at_sync = wal.stats().rolls;
        self.model.synced();
        self.check_live()
    }

    /// Hands pending records to the OS.
    pub fn flush(&mut self) -> Result<(), String> {
        self.wal().flush().map_err(|e| format!("flush: {e}"))?;
        self.check_live()
    }

    /// Saves a snapshot at a stable index (see [`Tracker::stable_index`]).
    pub fn save_snapshot(&mut self, meta: SnapshotMeta, data: &[u8]) -> Result<(), String> {
        self.wal()
            .save_snapshot(meta, data)
            .map_err(|e| format!("save_snapshot {meta:?}: {e}"))?;
        self.disk.snapshot_saved();
        self.model.snapshot_saved(meta, data);
        self.coverage.snapshots += 1;
        self.check_live()
    }

    /// Compacts up to an index the newest snapshot covers.
    pub fn compact_to(&mut self, index: u64) -> Result<(), String> {
        let before = self.disk.names();
        self.wal()
            .compact_to(index)
            .map_err(|e| format!("compact_to {index}: {e}"))?;
        self.disk.compacted(&before);
        self.check_live()
    }

    /// Crashes (optionally flushing first, optionally with a power loss), reopens and checks.
    /// Returns what the power loss did.
    pub fn crash(&mut self, flush: bool, loss: Option<PowerLoss>) -> Result<Crashed, String> {
        self.crash_and_recover(flush, loss, None)
    }

    /// Like [`crash`](Rig::crash), and then power fails again while the reopen is repairing
    /// what the first crash left (any subset of its writes survives, as seen from the image the
    /// first crash left): the second reopen must come to the same log.
    pub fn crash_and_recover(
        &mut self,
        flush: bool,
        loss: Option<PowerLoss>,
        loss_during_recovery: Option<PowerLoss>,
    ) -> Result<Crashed, String> {
        let after_roll = self.rolled_since_sync();
        let power_loss = loss.is_some();
        let wal = self.wal.take().expect("the wal is open");
        let crashed = self.disk.crash(wal, flush, loss)?;
        self.coverage.crashes += 1;
        if power_loss {
            self.coverage.power_losses += 1;
            self.coverage.after_roll += u64::from(after_roll);
        }
        self.coverage.vanished += crashed.vanished as u64;
        self.coverage.revived += crashed.revived as u64;
        let exact = flush && crashed.lossless;
        let what = format!("after a {}", crashed.report);
        self.reopen(exact, exact, &what, loss_during_recovery)?;
        Ok(crashed)
    }

    /// Closes cleanly, reopens and checks that nothing was lost.
    pub fn close(&mut self) -> Result<(), String> {
        let wal = self.wal.take().expect("the wal is open");
        wal.close().map_err(|e| format!("close: {e}"))?;
        self.coverage.closes += 1;
        self.reopen(true, true, "after a clean close", None)
    }

    /// Opens, checks the recovered log against the model (`exact`: nothing may be missing) and
    /// the tail (`clean`: nothing may have been cut), then optionally has power fail during that
    /// open and checks the next one comes to the same log.
    fn reopen(
        &mut self,
        exact: bool,
        clean: bool,
        what: &str,
        loss_during_recovery: Option<PowerLoss>,
    ) -> Result<(), String> {
        let before = loss_during_recovery
            .is_some()
            .then(|| read_files(self.disk.dir()));
        let (wal, recovered) = Wal::open(self.disk.dir(), self.options.clone())
            .map_err(|e| format!("{what}\nopen failed: {e}"))?;
        if wal.write_path() != self.options.write_path {
            return Err(format!(
                "{what}\n{:?} was asked for, {:?} is in effect (O_DIRECT refused here?)",
                self.options.write_path,
                wal.write_path()
            ));
        }
        let pending = self.model.pending.len();
        let kept = self
            .model
            .check_recovered(&wal, &recovered, exact)
            .map_err(|e| format!("{what}\n{e}"))?;
        if clean && recovered.tail != Tail::Clean {
            return Err(format!(
                "{what}\nnothing was lost, yet recovery reports {:?}",
                recovered.tail
            ));
        }
        if pending > 0 {
            match kept {
                0 => self.coverage.none_kept += 1,
                k if k == pending => self.coverage.all_kept += 1,
                _ => self.coverage.partial += 1,
            }
        }
        if matches!(recovered.tail, Tail::Cut { .. }) {
            self.coverage.cut += 1;
        }
        let loaded = wal
            .load_snapshot()
            .map_err(|e| format!("{what}\nload_snapshot: {e}"))?;
        let want = self
            .model
            .current
            .snapshot
            .zip(self.model.snapshot_data.clone());
        if loaded != want {
            return Err(format!(
                "{what}\nload_snapshot gave {:?}, the newest saved is {:?}",
                loaded.map(|(meta, data)| (meta, data.len())),
                want.map(|(meta, data)| (meta, data.len()))
            ));
        }
        // The format's promise: a segment is a fixed-size file.
        for (name, bytes) in read_files(self.disk.dir()) {
            if name.ends_with(".wal") && bytes.len() as u64 != self.options.segment_bytes {
                return Err(format!(
                    "{what}\nsegment {name} is {} bytes, not the fixed {}",
                    bytes.len(),
                    self.options.segment_bytes
                ));
            }
        }
        if let (Some(before), Some(loss)) = (before, loss_during_recovery) {
            // What the first crash left is what is durable; recovery's writes are the new ones.
            self.disk.durable = before;
            let crashed = self.disk.crash(wal, false, Some(loss))?;
            self.coverage.recovery_losses += 1;
            let what = format!(
                "{what}\nthen, while that open repaired the log, a {}",
                crashed.report
            );
            return self.reopen(true, false, &what, None);
        }
        self.disk.opened(&wal);
        self.rolls_at_sync = wal.stats().rolls;
        self.wal = Some(wal);
        self.check_live()
    }
}
