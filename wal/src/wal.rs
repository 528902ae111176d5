//! The `Wal`: the write side of the log and the one way in (`open`, which recovers).
//!
//! Invariants kept here:
//! - Records are only ever added at the end; nothing before `synced_end` is rewritten.
//! - Entry indexes are contiguous and terms never decrease, across truncations and restarts.
//! - After any failed write or sync the WAL is poisoned: every later call fails until reopened.
//! - A sync mark is written at the start of the first batch after each sync (and by `close`);
//!   it is the evidence recovery uses to tell damage from a torn tail (see `recovery`).
//! - The segments on disk are always a contiguous run of sequence numbers: compaction deletes
//!   from the front one file at a time, syncing the directory after each.

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};

use crate::dir::{self, Lock};
use crate::error::{Error, Result};
use crate::record::{self, EMPTY_RECORD, HARD_STATE_RECORD, Kind, MARK_RECORD, RECORD_HEADER};
use crate::recovery::{self, SegmentInfo, Tail};
use crate::segment::{self, Preparer, SEGMENT_HEADER, SegmentWriter, WritePath};
use crate::snapshot::{self, SnapshotMeta, SnapshotWriter};
use crate::{Entry, HardState};

/// How a [`Wal`] is set up.
#[derive(Clone, Debug)]
pub struct Options {
    /// Size of each segment file, preallocated with zeros. Default 64 MiB; at least 64 KiB.
    pub segment_bytes: u64,
    /// How records reach the disk. Default [`WritePath::Pwrite`]. [`WritePath::Direct`] falls
    /// back to `Pwrite` where `O_DIRECT` is refused; [`Wal::write_path`] says which is in effect.
    pub write_path: WritePath,
    /// How many snapshot files to keep. Default 2; at least 1.
    pub snapshots_kept: usize,
}

impl Options {
    /// What is wrong with these options, if anything ([`Error::InvalidOptions`]); [`Wal::open`]
    /// refuses the same, before it touches the directory.
    pub fn validate(&self) -> Result<()> {
        if !SEGMENT_BYTES.contains(&self.segment_bytes) {
            return Err(Error::InvalidOptions {
                reason: format!(
                    "segment_bytes {} is not between {} and {}",
                    self.segment_bytes,
                    SEGMENT_BYTES.start(),
                    SEGMENT_BYTES.end()
                ),
            });
        }
        if self.snapshots_kept == 0 {
            return Err(Error::InvalidOptions {
                reason: "snapshots_kept must be at least 1".into(),
            });
        }
        Ok(())
    }
}

impl Default for Options {
    fn default() -> Options {
        Options {
            segment_bytes: 64 << 20,
            write_path: WritePath::Pwrite,
            snapshots_kept: 2,
        }
    }
}

/// What [`Wal::open`] found on disk.
#[derive(Debug)]
pub struct Recovered {
    /// The newest hard state (all zeros for a new log).
    pub hard_state: HardState,
    /// The newest valid snapshot, if any. Load its data with [`Wal::load_snapshot`].
    pub snapshot: Option<SnapshotMeta>,
    /// The entries after the snapshot, contiguous and ascending.
    pub entries: Vec<Entry>,
    /// How the log ended: cleanly, or with a torn tail that was cut.
    pub tail: Tail,
}

/// Counters, for status pages and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Syncs that wrote something.
    pub syncs: u64,
    /// Bytes of records handed to the OS.
    pub bytes_written: u64,
    /// Entries appended.
    pub entries_appended: u64,
    /// Segment rolls.
    pub rolls: u64,
    /// Rolls that had to prepare their segment on the spot (on the commit path).
    pub unprepared_rolls: u64,
}

/// The write-ahead log of one node. See the crate documentation for the format and the rules.
pub struct Wal {
    dir: PathBuf,
    options: Options,
    _lock: Lock,
    /// The segment being written.
    active: SegmentWriter,
    /// The write path in effect: `options.write_path`, unless `Direct` was refused.
    write_path: WritePath,
    /// Segments rolled away from since the last sync: written, not yet synced.
    sealed: Vec<SegmentWriter>,
    /// Every segment of the log, oldest first; the last one is `active`.
    segments: VecDeque<SegmentInfo>,
    /// Crc of the last record: the seed of the next one.
    last_crc: u32,
    /// Index the next appended entry must have.
    next_index: u64,
    /// Runs of equal terms, `(first index, term)`, ascending: the term of every live entry.
    term_runs: Vec<(u64, u64)>,
    hard_state: HardState,
    /// The durable end of the log, (segment, offset), reported by the next sync mark.
    synced_end: (u64, u64),
    mark_due: bool,
    /// A rename or creation in the directory waits for a directory fsync.
    dir_dirty: bool,
    preparer: Option<Preparer>,
    /// Durable snapshots, oldest first; the last is the newest.
    snapshots: Vec<(SnapshotMeta, PathBuf)>,
    poisoned: Option<String>,
    stats: Stats,
    #[cfg(test)]
    pub(crate) fail_next_sync: Option<std::io::ErrorKind>,
}

impl Wal {
    /// Opens (or creates) the log in `dir`, recovering what it holds. See `recovery` for what is
    /// kept, cut or refused.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<(Wal, Recovered)> {
        let dir = dir.as_ref().to_path_buf();
        options.validate()?;
        let lock = Lock::acquire(&dir)?;
        let listing = dir::list(&dir)?;
        for path in &listing.temporaries {
            fs::remove_file(path).map_err(|e| Error::io("remove", path, e))?;
        }
        // Row 14: the newest snapshot must be whole; a final name is only given to synced files.
        let snapshots = listing.snapshots;
        if let Some((_, path)) = snapshots.last() {
            snapshot::verify(path)?;
        }
        let snapshot = snapshots.last().map(|(meta, _)| *meta);
        let base = snapshot.map_or(0, |meta| meta.index);

        let scan = recovery::recover(&dir, &listing.segments)?;
        let mut log = scan.log;
        // Row 11: the log must continue from the snapshot (or from the start).
        let first_segment = scan.segments.first().map(|info| info.path.clone());
        let gap = |reason: String| Error::Corrupt {
            path: first_segment.clone().unwrap_or_else(|| dir.clone()),
            offset: 0,
            reason,
        };
        if let Some(first) = log.entries.first()
            && first.index > base + 1
        {
            return Err(gap(format!(
                "the log starts at entry {} but the newest snapshot covers only up to {base}",
                first.index
            )));
        }
        if log.entries.is_empty() && log.next_index.is_some_and(|next| next > base + 1) {
            return Err(gap(format!(
                "the log continues at entry {} but the newest snapshot covers only up to {base}",
                log.next_index.unwrap_or_default()
            )));
        }
        // A log that ends below the snapshot (a follower that installed a snapshot and crashed
        // before resetting its log) continues after the snapshot.
        let log_next_index = match log.entries.last() {
            Some(last) => last.index + 1,
            None => log.next_index.unwrap_or(base + 1),
        };
        let next_index = log_next_index.max(base + 1);
        // Row 12: entries the snapshot covers stay out of what is handed back.
        let covered = log.entries.partition_point(|entry| entry.index <= base);
        log.entries.drain(..covered);
        let mut term_runs: Vec<(u64, u64)> = Vec::new();
        for entry in &log.entries {
            if term_runs.last().is_none_or(|&(_, term)| term != entry.term) {
                term_runs.push((entry.index, entry.term));
            }
        }

        let mut segments: VecDeque<SegmentInfo> = scan.segments.into();
        let resume = scan.resume;
        let hard_state = log.hard_state;
        let mut wal_dir_dirty = false;
        let (active, last_crc) = if resume.offset == 0 {
            // A new segment: a new log, or the one after a cut that removed a whole segment.
            let mut preparer =
                Preparer::start(dir.join(segment::PREPARED_NAME), options.segment_bytes)?;
            preparer.step(u64::MAX)?;
            let (file, tmp) = preparer.into_file();
            let path = dir.join(segment::file_name(resume.seq));
            fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &path, e))?;
            let mut writer =
                SegmentWriter::open(resume.seq, path.clone(), file, 0, options.write_path)?;
            let last_crc = start_segment(&mut writer, hard_state);
            segments.push_back(SegmentInfo {
                seq: resume.seq,
                path,
                max_index: None,
            });
            wal_dir_dirty = true;
            (writer, last_crc)
        } else {
            let info = segments
                .back()
                .expect("a resume offset lies in a kept segment");
            debug_assert_eq!(info.seq, resume.seq);
            let file = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&info.path)
                .map_err(|e| Error::io("open", &info.path, e))?;
            let writer = SegmentWriter::open(
                resume.seq,
                info.path.clone(),
                file,
                resume.offset,
                options.write_path,
            )?;
            (writer, resume.last_crc)
        };
        let synced_end = (active.seq, active.synced());
        let write_path = active.write_path();
        warn_if_direct_refused(&active);
        let mut wal = Wal {
            dir,
            options,
            _lock: lock,
            active,
            write_path,
            sealed: Vec::new(),
            segments,
            last_crc,
            next_index: log_next_index,
            term_runs,
            hard_state,
            synced_end,
            // Everything recovered is durable now (recovery synced it): say so at once, so damage
            // to it is recognised as damage at the next open.
            mark_due: true,
            dir_dirty: wal_dir_dirty,
            preparer: None,
            snapshots,
            poisoned: None,
            stats: Stats::default(),
            #[cfg(test)]
            fail_next_sync: None,
        };
        if next_index > log_next_index {
            // The reset the crash cut off (a log ending below its newest snapshot): without it
            // the next entry would not follow the log. `truncate_from` past the end is allowed
            // exactly here, where the snapshot covers `next_index - 1`.
            wal.truncate_from(next_index)?;
        }
        debug_assert_eq!(wal.next_index, next_index);
        wal.sync()?;
        let recovered = Recovered {
            hard_state,
            snapshot,
            entries: log.entries,
            tail: scan.tail,
        };
        Ok((wal, recovered))
    }

    /// The largest entry payload this log accepts (set by the segment size).
    pub fn max_entry_bytes(&self) -> usize {
        max_entry_bytes(self.options.segment_bytes)
    }

    /// The index the next appended entry must have.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// The term of the entry at `index`, if the log holds it: `None` past the end and below the
    /// oldest run of terms kept. Compaction keeps the run its new first entry belongs to whole,
    /// so for an index compacted away the answer may be that run's term: ask only about entries
    /// the snapshot does not cover.
    pub fn term_at(&self, index: u64) -> Option<u64> {
        if index >= self.next_index {
            return None;
        }
        let run = self.term_runs.partition_point(|&(first, _)| first <= index);
        run.checked_sub(1).map(|run| self.term_runs[run].1)
    }

    /// The term of the last entry in the log, or of the newest snapshot when the log is empty.
    pub fn last_term(&self) -> u64 {
        self.term_runs
            .last()
            .map(|&(_, term)| term)
            .or_else(|| self.snapshot_meta().map(|meta| meta.term))
            .unwrap_or(0)
    }

    /// The hard state as last set (durable once synced).
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// The newest durable snapshot.
    pub fn snapshot_meta(&self) -> Option<SnapshotMeta> {
        self.snapshots.last().map(|(meta, _)| *meta)
    }

    /// The write path in effect: [`Options::write_path`], or [`WritePath::Pwrite`] when
    /// [`WritePath::Direct`] was asked for and refused (a warning was logged saying why).
    pub fn write_path(&self) -> WritePath {
        self.write_path
    }

    /// Counters since open.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends entries; durable after the next [`sync`](Wal::sync).
    pub fn append(&mut self, entries: &[Entry]) -> Result<()> {
        for entry in entries {
            self.append_entry(entry.index, entry.term, &entry.data)?;
        }
        Ok(())
    }

    /// Appends one entry; durable after the next [`sync`](Wal::sync). Its index must be
    /// [`next_index`](Wal::next_index) and its term at least [`last_term`](Wal::last_term).
    pub fn append_entry(&mut self, index: u64, term: u64, data: &[u8]) -> Result<()> {
        self.check_writable()?;
        if index != self.next_index {
            return Err(Error::OutOfOrder {
                reason: format!(
                    "appending entry {index} where entry {} is due",
                    self.next_index
                ),
            });
        }
        if term < self.last_term() {
            return Err(Error::OutOfOrder {
                reason: format!(
                    "entry {index} has term {term}, below term {}",
                    self.last_term()
                ),
            });
        }
        let max = self.max_entry_bytes();
        if data.len() > max {
            return Err(Error::EntryTooLarge {
                size: data.len(),
                max,
            });
        }
        self.write_record(Kind::Entry, index, term, data)?;
        if self.term_runs.last().is_none_or(|&(_, last)| last != term) {
            self.term_runs.push((index, term));
        }
        self.next_index = index + 1;
        let info = self
            .segments
            .back_mut()
            .expect("the active segment is listed");
        info.max_index = Some(info.max_index.map_or(index, |max| max.max(index)));
        self.stats.entries_appended += 1;
        Ok(())
    }

    /// Records a new hard state; durable after the next [`sync`](Wal::sync). The term never
    /// goes down. Writing the hard state already held is a no-op.
    pub fn set_hard_state(&mut self, hard_state: HardState) -> Result<()> {
        self.check_writable()?;
        if hard_state == self.hard_state {
            return Ok(());
        }
        if hard_state.term < self.hard_state.term {
            return Err(Error::OutOfOrder {
                reason: format!(
                    "hard state term {} below term {}",
                    hard_state.term, self.hard_state.term
                ),
            });
        }
        let vote = hard_state.vote.to_le_bytes();
        self.write_record(Kind::HardState, hard_state.commit, hard_state.term, &vote)?;
        self.hard_state = hard_state;
        Ok(())
    }

    /// Removes every entry at or after `index`; the next entry appended has `index`. Durable
    /// after the next [`sync`](Wal::sync).
    ///
    /// `index` may lie past the end only when a saved snapshot covers `index - 1` (the reset after
    /// installing a snapshot); it may not reach at or below the newest snapshot.
    pub fn truncate_from(&mut self, index: u64) -> Result<()> {
        self.check_writable()?;
        let snapshot_index = self.snapshot_meta().map_or(0, |meta| meta.index);
        if index <= snapshot_index {
            return Err(Error::OutOfOrder {
                reason: format!(
                    "truncating from {index} would cut into snapshot at {snapshot_index}"
                ),
            });
        }
        if index > self.next_index && index - 1 > snapshot_index {
            return Err(Error::NotCovered {
                index: index - 1,
                snapshot_index,
            });
        }
        if index == self.next_index {
            return Ok(());
        }
        self.write_record(Kind::TruncateFrom, index, 0, &[])?;
        let keep = self.term_runs.partition_point(|&(first, _)| first < index);
        self.term_runs.truncate(keep);
        if index > self.next_index {
            self.term_runs.clear();
        }
        self.next_index = index;
        Ok(())
    }

    /// Makes everything appended so far durable: one write and one `fdatasync` per touched
    /// segment (group commit; with [`WritePath::Direct`], one `O_DSYNC` write and no
    /// `fdatasync`), and a directory fsync if a segment was created since.
    ///
    /// On failure the WAL is poisoned: what was written since the last good sync may or may not
    /// be on the disk, and only recovery (reopening) can say.
    pub fn sync(&mut self) -> Result<()> {
        self.check_writable()?;
        let result = self.sync_inner();
        self.poison_on_error(result)
    }

    fn sync_inner(&mut self) -> Result<()> {
        if self.sealed.is_empty() && self.active.pending.is_empty() && !self.dir_dirty {
            let active_synced = (self.active.seq, self.active.synced());
            if active_synced == self.synced_end {
                return Ok(());
            }
        }
        #[cfg(test)]
        if let Some(kind) = self.fail_next_sync.take() {
            self.active.flush()?;
            return Err(Error::io(
                "fdatasync",
                &self.active.path,
                std::io::Error::from(kind),
            ));
        }
        let written_before = self.active.end();
        for segment in &mut self.sealed {
            segment.sync()?;
        }
        self.active.sync()?;
        if self.dir_dirty {
            dir::sync_dir(&self.dir)?;
            self.dir_dirty = false;
        }
        self.sealed.clear();
        debug_assert_eq!(self.active.synced(), written_before);
        self.synced_end = (self.active.seq, self.active.synced());
        self.mark_due = true;
        self.stats.syncs += 1;
        Ok(())
    }

    /// Hands everything appended to the OS without waiting for the disk. After a process crash
    /// it is still there; after a power loss any subset of its pages may be. With
    /// [`WritePath::Direct`] there is no such hand-off: the write goes to the disk and returns
    /// durable.
    pub fn flush(&mut self) -> Result<()> {
        self.check_writable()?;
        let mut result = Ok(());
        for segment in &mut self.sealed {
            result = result.and_then(|()| segment.flush());
        }
        let result = result.and_then(|()| self.active.flush());
        self.poison_on_error(result)
    }

    /// Syncs, writes a final sync mark and syncs it, so recovery can recognise damage anywhere in
    /// the log. Dropping a `Wal` without `close` is a crash as far as the log is concerned: what
    /// was not synced may be lost, and the last batch cannot be told from a torn tail.
    pub fn close(mut self) -> Result<()> {
        self.sync()?;
        if self.mark_due {
            self.write_mark_if_due()?;
            let result = self.active.sync();
            self.poison_on_error(result)?;
        }
        Ok(())
    }

    /// Prepares the next segment (zero-fills and syncs it) by up to `budget` bytes; call it when
    /// idle so that rolling never waits for it. Returns true once the next segment is ready.
    pub fn prepare_next_segment(&mut self, budget: u64) -> Result<bool> {
        self.check_writable()?;
        if self.preparer.is_none() {
            let path = self.dir.join(segment::PREPARED_NAME);
            self.preparer = Some(Preparer::start(path, self.options.segment_bytes)?);
        }
        let preparer = self.preparer.as_mut().expect("just set");
        if preparer.is_done() {
            return Ok(true);
        }
        let result = preparer.step(budget);
        self.poison_on_error(result)
    }

    /// Deletes the oldest segments whose entries are all at or below `index`. `index` must be
    /// covered by a saved snapshot. The active segment and unsynced ones are never deleted.
    pub fn compact_to(&mut self, index: u64) -> Result<()> {
        self.check_writable()?;
        let snapshot_index = self.snapshot_meta().map_or(0, |meta| meta.index);
        if index > snapshot_index {
            return Err(Error::NotCovered {
                index,
                snapshot_index,
            });
        }
        while self.segments.len() > 1 + self.sealed.len() {
            let front = self.segments.front().expect("more than one segment");
            if front.max_index.is_some_and(|max| max > index) {
                break;
            }
            let path = front.path.clone();
            fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
            // One directory sync per file keeps the segments on disk a contiguous run.
            dir::sync_dir(&self.dir)?;
            self.segments.pop_front();
        }
        let keep = self.term_runs.partition_point(|&(first, _)| first <= index);
        if keep > 1 {
            self.term_runs.drain(..keep - 1);
        }
        Ok(())
    }

    /// Starts writing a snapshot; publish it with [`finish_snapshot`](Wal::finish_snapshot).
    pub fn begin_snapshot(&mut self, meta: SnapshotMeta) -> Result<SnapshotWriter> {
        self.check_writable()?;
        SnapshotWriter::create(&self.dir, meta)
    }

    /// Makes a written snapshot durable and the newest, then deletes all but the newest
    /// `snapshots_kept`.
    pub fn finish_snapshot(&mut self, writer: SnapshotWriter) -> Result<()> {
        self.check_writable()?;
        let meta = writer.meta();
        let (tmp, path) = writer.write_header_and_sync()?;
        snapshot::publish(&self.dir, &tmp, &path)?;
        self.snapshots.retain(|(existing, _)| *existing != meta);
        self.snapshots.push((meta, path));
        self.snapshots.sort();
        while self.snapshots.len() > self.options.snapshots_kept {
            let (_, old) = self.snapshots.remove(0);
            fs::remove_file(&old).map_err(|e| Error::io("remove", &old, e))?;
        }
        Ok(())
    }

    /// Saves a whole snapshot: [`begin_snapshot`](Wal::begin_snapshot), write,
    /// [`finish_snapshot`](Wal::finish_snapshot).
    pub fn save_snapshot(&mut self, meta: SnapshotMeta, data: &[u8]) -> Result<()> {
        let mut writer = self.begin_snapshot(meta)?;
        writer.write(data)?;
        self.finish_snapshot(writer)
    }

    /// Reads the newest snapshot back, checked.
    pub fn load_snapshot(&self) -> Result<Option<(SnapshotMeta, Vec<u8>)>> {
        match self.snapshots.last() {
            None => Ok(None),
            Some((_, path)) => snapshot::read(path).map(Some),
        }
    }

    fn check_writable(&self) -> Result<()> {
        match &self.poisoned {
            Some(reason) => Err(Error::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    fn poison_on_error<T>(&mut self, result: Result<T>) -> Result<T> {
        if let Err(error) = &result
            && matches!(error, Error::Io { .. })
        {
            log::error!("write-ahead log poisoned: {error}");
            self.poisoned = Some(error.to_string());
        }
        result
    }

    /// Encodes one record at the end of the log, rolling to a new segment first if it (with a
    /// due sync mark and the closing seal) would not fit.
    fn write_record(&mut self, kind: Kind, index: u64, term: u64, payload: &[u8]) -> Result<()> {
        let needed = RECORD_HEADER + payload.len() + if self.mark_due { MARK_RECORD } else { 0 };
        if self.active.free() < (needed + RESERVE) as u64 {
            let result = self.roll();
            self.poison_on_error(result)?;
        }
        self.write_mark_if_due()?;
        let before = self.active.pending.len();
        self.last_crc = record::encode(
            &mut self.active.pending,
            self.last_crc,
            kind,
            index,
            term,
            payload,
            self.active.seq,
        );
        self.stats.bytes_written += (self.active.pending.len() - before) as u64;
        debug_assert!(
            self.active.free() >= RESERVE as u64,
            "room for a mark and a seal stays"
        );
        Ok(())
    }

    fn write_mark_if_due(&mut self) -> Result<()> {
        if !self.mark_due {
            return Ok(());
        }
        self.mark_due = false;
        let (seq, offset) = self.synced_end;
        self.last_crc = record::encode(
            &mut self.active.pending,
            self.last_crc,
            Kind::SyncMark,
            offset,
            seq,
            &[],
            self.active.seq,
        );
        self.stats.bytes_written += MARK_RECORD as u64;
        Ok(())
    }

    /// Seals the active segment and continues in a new one, whose head is the current hard state.
    fn roll(&mut self) -> Result<()> {
        let next_seq = self.active.seq + 1;
        self.last_crc = record::encode(
            &mut self.active.pending,
            self.last_crc,
            Kind::Seal,
            self.next_index,
            next_seq,
            &[],
            self.active.seq,
        );
        self.active.flush()?;
        let ready = self.preparer.as_ref().is_some_and(Preparer::is_done);
        if !ready {
            self.stats.unprepared_rolls += 1;
            while !self.prepare_next_segment(u64::MAX)? {}
        }
        let (file, tmp) = self.preparer.take().expect("prepared above").into_file();
        let path = self.dir.join(segment::file_name(next_seq));
        fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &path, e))?;
        self.dir_dirty = true;
        let mut writer = SegmentWriter::open_rolled(next_seq, path.clone(), file, self.write_path)?;
        if writer.write_path() != self.write_path {
            warn_if_direct_refused(&writer);
            self.write_path = writer.write_path();
        }
        self.last_crc = start_segment(&mut writer, self.hard_state);
        let old = std::mem::replace(&mut self.active, writer);
        self.sealed.push(old);
        self.segments.push_back(SegmentInfo {
            seq: next_seq,
            path,
            max_index: None,
        });
        self.stats.rolls += 1;
        Ok(())
    }
}

/// Logs why `writer` writes with `Pwrite` although `Direct` was asked for, if it does.
fn warn_if_direct_refused(writer: &SegmentWriter) {
    if let Some(reason) = writer.direct_refused() {
        log::warn!(
            "{}: WritePath::Direct refused, writing with WritePath::Pwrite instead: {reason}",
            writer.path.display()
        );
    }
}

/// Writes the header and the current hard state at the head of a new segment; returns the crc
/// of that record (the seed of the next one).
fn start_segment(writer: &mut SegmentWriter, hard_state: HardState) -> u32 {
    debug_assert_eq!(writer.end(), 0, "a segment starts empty");
    let (header, header_crc) = segment::encode_header(writer.seq, writer.capacity);
    writer.pending.extend_from_slice(&header);
    record::encode(
        &mut writer.pending,
        header_crc,
        Kind::HardState,
        hard_state.commit,
        hard_state.term,
        &hard_state.vote.to_le_bytes(),
        writer.seq,
    )
}

/// Room every segment keeps free after its last record: for the final sync mark `close` writes
/// and for the seal a roll writes.
const RESERVE: usize = MARK_RECORD + EMPTY_RECORD;

/// The largest entry a segment of `segment_bytes` holds beside its header, hard state, a due
/// sync mark and the reserve.
pub fn max_entry_bytes(segment_bytes: u64) -> usize {
    let overhead = SEGMENT_HEADER + HARD_STATE_RECORD + MARK_RECORD + RESERVE + RECORD_HEADER;
    usize::try_from(segment_bytes)
        .unwrap_or(usize::MAX)
        .saturating_sub(overhead)
}

/// The segment sizes a log accepts: at least 64 KiB, at most what a 32-bit offset reaches.
pub const SEGMENT_BYTES: std::ops::RangeInclusive<u64> = (64 * 1024)..=(u32::MAX as u64);

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;

    fn small() -> Options {
        Options {
            segment_bytes: 64 * 1024,
            ..Options::default()
        }
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: index.to_le_bytes().to_vec(),
        }
    }

    #[test]
    fn a_failed_sync_poisons_the_wal_until_it_is_reopened() {
        for kind in [ErrorKind::Other, ErrorKind::StorageFull] {
            let dir = tempfile::tempdir().unwrap();
            let (mut wal, _) = Wal::open(dir.path(), small()).unwrap();
            wal.append(&[entry(1, 1), entry(2, 1)]).unwrap();
            wal.sync().unwrap();
            wal.append(&[entry(3, 1)]).unwrap();
            wal.fail_next_sync = Some(kind);
            assert!(matches!(
                wal.sync(),
                Err(Error::Io {
                    op: "fdatasync",
                    ..
                })
            ));
            // No retry-and-carry-on: every later write fails, syncs included.
            assert!(matches!(wal.sync(), Err(Error::Poisoned { .. })));
            assert!(matches!(
                wal.append(&[entry(4, 1)]),
                Err(Error::Poisoned { .. })
            ));
            let hard_state = HardState {
                term: 2,
                vote: 0,
                commit: 0,
            };
            assert!(matches!(
                wal.set_hard_state(hard_state),
                Err(Error::Poisoned { .. })
            ));
            assert!(matches!(wal.truncate_from(2), Err(Error::Poisoned { .. })));
            drop(wal);
            let (_wal, recovered) = Wal::open(dir.path(), small()).unwrap();
            let indexes: Vec<u64> = recovered.entries.iter().map(|e| e.index).collect();
            // Entry 3 reached the OS before the failed sync, so recovery may keep it; 1 and 2
            // were synced and must be there.
            assert!(indexes == [1, 2] || indexes == [1, 2, 3], "{indexes:?}");
        }
    }

    fn snapshot_names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.starts_with("snap-"))
            .collect();
        names.sort();
        names
    }

    /// A crash at every step of saving a snapshot leaves the old one or the new one as the
    /// newest valid snapshot, and the next open cleans up after it.
    #[test]
    fn a_crash_at_every_step_of_saving_a_snapshot_leaves_the_old_or_the_new_one() {
        let old = SnapshotMeta { index: 10, term: 1 };
        let new = SnapshotMeta { index: 20, term: 2 };
        let setup = || {
            let dir = tempfile::tempdir().unwrap();
            let (mut wal, _) = Wal::open(dir.path(), small()).unwrap();
            wal.save_snapshot(SnapshotMeta { index: 5, term: 1 }, b"five")
                .unwrap();
            wal.save_snapshot(old, b"old state").unwrap();
            (dir, wal)
        };
        let check = |dir: &Path, expected: SnapshotMeta, data: &[u8]| {
            let (wal, recovered) = Wal::open(dir, small()).unwrap();
            assert_eq!(recovered.snapshot, Some(expected));
            assert_eq!(
                wal.load_snapshot().unwrap(),
                Some((expected, data.to_vec()))
            );
            assert!(
                snapshot_names(dir)
                    .iter()
                    .all(|name| !name.ends_with(".tmp"))
            );
        };

        // Step 1: the temp file is half written.
        let (dir, mut wal) = setup();
        let mut writer = wal.begin_snapshot(new).unwrap();
        writer.write(b"new st").unwrap();
        drop((writer, wal));
        check(dir.path(), old, b"old state");

        // Step 2: written and synced under the temp name, not renamed.
        let (dir, mut wal) = setup();
        let mut writer = wal.begin_snapshot(new).unwrap();
        writer.write(b"new state").unwrap();
        let (_tmp, _final) = writer.write_header_and_sync().unwrap();
        drop(wal);
        check(dir.path(), old, b"old state");

        // Step 3: renamed (and the directory synced), older snapshots not yet deleted.
        let (dir, mut wal) = setup();
        let mut writer = wal.begin_snapshot(new).unwrap();
        writer.write(b"new state").unwrap();
        let (tmp, path) = writer.write_header_and_sync().unwrap();
        snapshot::publish(dir.path(), &tmp, &path).unwrap();
        drop(wal);
        assert_eq!(snapshot_names(dir.path()).len(), 3);
        check(dir.path(), new, b"new state");

        // Step 4: done; only the newest two are kept.
        let (dir, mut wal) = setup();
        wal.save_snapshot(new, b"new state").unwrap();
        drop(wal);
        assert_eq!(
            snapshot_names(dir.path()),
            [snapshot::file_name(old), snapshot::file_name(new)]
        );
        check(dir.path(), new, b"new state");
    }

    #[test]
    fn an_entry_larger_than_a_segment_is_refused_with_both_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), small()).unwrap();
        let max = wal.max_entry_bytes();
        let too_big = vec![0u8; max + 1];
        match wal.append_entry(1, 1, &too_big) {
            Err(Error::EntryTooLarge {
                size,
                max: reported,
            }) => {
                assert_eq!((size, reported), (max + 1, max));
            }
            other => panic!("expected EntryTooLarge, got {other:?}"),
        }
        // The largest entry fits, even right after a roll.
        wal.append_entry(1, 1, &vec![7u8; max]).unwrap();
        wal.append_entry(2, 1, &vec![8u8; max]).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (_wal, recovered) = Wal::open(dir.path(), small()).unwrap();
        assert_eq!(recovered.entries.len(), 2);
        assert_eq!(recovered.entries[1].data.len(), max);
    }

    #[test]
    fn appends_out_of_order_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), small()).unwrap();
        assert!(matches!(
            wal.append(&[entry(2, 1)]),
            Err(Error::OutOfOrder { .. })
        ));
        wal.append(&[entry(1, 3)]).unwrap();
        assert!(matches!(
            wal.append(&[entry(2, 2)]),
            Err(Error::OutOfOrder { .. })
        ));
        let regress = HardState {
            term: 0,
            vote: 0,
            commit: 0,
        };
        wal.set_hard_state(HardState {
            term: 3,
            vote: 1,
            commit: 0,
        })
        .unwrap();
        assert!(matches!(
            wal.set_hard_state(regress),
            Err(Error::OutOfOrder { .. })
        ));
        assert!(matches!(
            wal.truncate_from(9),
            Err(Error::NotCovered { .. })
        ));
    }

    #[test]
    fn truncating_past_the_end_after_a_snapshot_resets_the_log_there() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), small()).unwrap();
        wal.append(&[entry(1, 1), entry(2, 1)]).unwrap();
        wal.save_snapshot(
            SnapshotMeta {
                index: 100,
                term: 4,
            },
            b"installed",
        )
        .unwrap();
        wal.truncate_from(101).unwrap();
        assert_eq!((wal.next_index(), wal.last_term()), (101, 4));
        wal.append(&[entry(101, 4)]).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (wal, recovered) = Wal::open(dir.path(), small()).unwrap();
        let indexes: Vec<u64> = recovered.entries.iter().map(|e| e.index).collect();
        assert_eq!(indexes, [101]);
        assert_eq!(wal.next_index(), 102);
    }
}
