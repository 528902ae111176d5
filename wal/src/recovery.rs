//! Recovery: read the segments back, decide where the log really ends, and repair the tail.
//!
//! The scan walks segments in sequence order and records in file order, following the crc chain,
//! and stops at the first *break*: the first place where the chain cannot go on. Everything before
//! the break is the log. The question is what the bytes after it are:
//!
//! - a **torn tail**: writes that were never synced (a crash or power loss kept only some of their
//!   pages). Nothing there was ever acknowledged, so it is cut: zeroed and deleted.
//! - **damage to durable data**: a bit flip, a lost or truncated file. Cutting it would silently drop
//!   acknowledged records, so recovery fails with the file and offset and touches nothing.
//!
//! The chain alone cannot tell the two apart, so the writer leaves evidence: after every sync, the
//! next batch starts with a *sync mark* saying "everything before (segment, offset) is durable"
//! (and `Wal::close` writes one). A mark carries a self-check that needs no chain, so it can be
//! trusted even when found past the break. Marks are only ever written after the sync they report
//! returned, so a valid mark past the break that vouches for a position past the break proves the
//! break lies in durable data: damage. With no such mark, the break is a torn tail.
//!
//! # Decision table
//!
//! | # | what the scan finds | decision |
//! |---|---|---|
//! | 1 | no segment at all | keep: a new, empty log |
//! | 2 | records, then zeros to the end of the last segment | keep all (clean end) |
//! | 3 | a record whose crc fails (torn write), no mark past it vouching beyond it | cut the torn tail |
//! | 4 | a length running past the segment, or an unknown kind byte, no mark vouching beyond it | cut the torn tail |
//! | 5 | stale records behind the end (chained from another predecessor) | cut: they do not validate |
//! | 6 | any break of rows 3–5 or 7–9 with a valid mark past it vouching for a position past the break | fail: `Corrupt` at the break |
//! | 7 | a segment whose header is unwritten, short or garbage (zero-length, bad magic or crc), or whose head hard state is missing, no mark vouching beyond | cut: the segment is deleted and made anew |
//! | 7b | a segment header whose crc holds but that names another sequence number or version (a renamed or foreign file) | fail: `Corrupt` (a torn write cannot produce a valid header) |
//! | 8 | a sealed segment whose successor is missing | keep, a clean end, if nothing later vouches beyond (the roll was never synced); fail if a later segment does |
//! | 9 | a segment file shorter than its records need (truncated) | like row 4 at the end of the file |
//! | 10 | valid records that break the log's rules: entry index not the next one, a term going down, a hard-state term going down, a mark vouching beyond itself, a seal naming the wrong successor | fail: `Corrupt` at that record (valid crcs mean the writer wrote them: a bug or foreign data, never a torn write) |
//! | 11 | the log's first entry after the newest snapshot leaves a gap (entries missing) | fail: `Corrupt` |
//! | 12 | entries at or below the newest snapshot's index | keep out of `Recovered` (the snapshot covers them) |
//! | 13 | leftover temporary files (a prepared segment, a snapshot's temp file) | delete |
//! | 14 | the newest snapshot file fails its checks | fail: `Corrupt` with its path (a final name is only given to a synced file) |
//!
//! Cutting makes the decision durable before anything new is written: the torn bytes are zeroed
//! (only the pages that are not zero already), later segments are deleted, and the files and the
//! directory are synced. Zeroing also removes stale marks, so a repaired tail can never later be
//! mistaken for damage. Repair is idempotent: a crash during it leads to the same decision.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::record::{self, Header, Kind, RECORD_HEADER};
use crate::segment::{self, SEGMENT_HEADER};
use crate::{Entry, HardState};

/// What recovery found at the end of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tail {
    /// The log ended cleanly: nothing followed its last record.
    Clean,
    /// A torn tail was cut.
    Cut {
        /// The file where the log now ends.
        path: PathBuf,
        /// The offset in it where the torn tail began.
        offset: u64,
        /// Why the chain stopped there.
        reason: String,
    },
}

/// A segment kept in the log, with what compaction needs to know of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Sequence number.
    pub seq: u64,
    /// Path.
    pub path: PathBuf,
    /// Highest entry index ever written to it, if any.
    pub max_index: Option<u64>,
}

/// Where writing resumes after recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resume {
    /// Segment to write into. When `offset` is 0 the segment must be created anew.
    pub seq: u64,
    /// Offset of the first free byte.
    pub offset: u64,
    /// Chain seed for the next record.
    pub last_crc: u32,
}

/// The log as recovery found it, before the snapshot is taken into account.
#[derive(Debug, Default)]
pub struct LogState {
    /// The live entries, contiguous and ascending.
    pub entries: Vec<Entry>,
    /// The index the next entry must have, once any record has said so.
    pub next_index: Option<u64>,
    /// The newest hard state.
    pub hard_state: HardState,
}

impl LogState {
    fn push_entry(
        &mut self,
        index: u64,
        term: u64,
        data: &[u8],
    ) -> std::result::Result<(), String> {
        if let Some(expected) = self.next_index
            && index != expected
        {
            return Err(format!("entry {index} where entry {expected} was due"));
        }
        if let Some(last) = self.entries.last()
            && term < last.term
        {
            return Err(format!(
                "entry {index} has term {term}, below term {} before it",
                last.term
            ));
        }
        self.entries.push(Entry {
            index,
            term,
            data: data.to_vec(),
        });
        self.next_index = Some(index + 1);
        Ok(())
    }

    fn truncate_from(&mut self, index: u64) {
        if self.next_index.is_some_and(|next| index > next) {
            // A reset past the end (after installing a snapshot): nothing before it stays live.
            self.entries.clear();
        }
        let keep = match self.entries.first() {
            Some(first) if index > first.index => {
                usize::try_from(index - first.index).unwrap_or(usize::MAX)
            }
            _ => 0,
        };
        self.entries.truncate(keep);
        self.next_index = Some(index);
    }

    fn set_hard_state(&mut self, hard_state: HardState) -> std::result::Result<(), String> {
        if hard_state.term < self.hard_state.term {
            return Err(format!(
                "hard state term {} after term {}",
                hard_state.term, self.hard_state.term
            ));
        }
        self.hard_state = hard_state;
        Ok(())
    }
}

/// Where and why the chain stopped.
#[derive(Debug)]
struct Break {
    seq: u64,
    offset: u64,
    reason: String,
    last_crc: u32,
    /// Index into the listing of the first segment entirely after the break.
    later: usize,
}

/// How the scan of one segment ended.
enum SegmentEnd {
    Sealed {
        next_seq: u64,
    },
    Broken {
        offset: u64,
        reason: String,
        last_crc: u32,
    },
}

/// The result of a recovery scan, after repair.
#[derive(Debug)]
pub struct Scan {
    /// The log.
    pub log: LogState,
    /// Segments kept, in order.
    pub segments: Vec<SegmentInfo>,
    /// Where writing resumes.
    pub resume: Resume,
    /// How the log ended.
    pub tail: Tail,
}

/// Scans the segments of `dir` (as listed, ascending), decides, repairs, and returns the log.
pub fn recover(dir: &Path, listed: &[(u64, PathBuf)]) -> Result<Scan> {
    let mut log = LogState::default();
    let mut segments = Vec::new();
    let mut expected_seq = listed.first().map_or(1, |(seq, _)| *seq);
    let mut stop: Option<Break> = None;

    for (position, (seq, path)) in listed.iter().enumerate() {
        if *seq != expected_seq {
            stop = Some(Break {
                seq: expected_seq,
                offset: 0,
                reason: format!("segment {expected_seq} is missing"),
                last_crc: 0,
                later: position,
            });
            break;
        }
        let map = segment::map_read(path)?;
        let bytes = map.as_deref().unwrap_or(&[]);
        let mut max_index = None;
        let end = scan_segment(*seq, path, bytes, &mut log, &mut max_index)?;
        segments.push(SegmentInfo {
            seq: *seq,
            path: path.clone(),
            max_index,
        });
        match end {
            SegmentEnd::Sealed { next_seq } => expected_seq = next_seq,
            SegmentEnd::Broken {
                offset,
                reason,
                last_crc,
            } => {
                stop = Some(Break {
                    seq: *seq,
                    offset,
                    reason,
                    last_crc,
                    later: position + 1,
                });
                break;
            }
        }
    }
    // Every listed segment was sealed: the log ends where the next one would begin.
    let stop = stop.unwrap_or(Break {
        seq: expected_seq,
        offset: 0,
        reason: format!("segment {expected_seq} was never created"),
        last_crc: 0,
        later: listed.len(),
    });

    let break_path = dir.join(segment::file_name(stop.seq));
    if let Some((mark_path, mark_offset, vouched)) = find_vouching_mark(&stop, &break_path, listed)?
    {
        return Err(Error::Corrupt {
            path: break_path,
            offset: stop.offset,
            reason: format!(
                "{}; but the sync mark at {} offset {mark_offset} proves the log was durable up to \
                 segment {} offset {}",
                stop.reason,
                mark_path.display(),
                vouched.0,
                vouched.1
            ),
        });
    }

    // Row 3-5, 7-9: a torn tail. Make the cut durable before anything new is written.
    let mut torn = false;
    let in_listing = listed.iter().any(|(seq, _)| *seq == stop.seq);
    // Writing resumes inside the broken segment only past its head hard-state record: a segment
    // cut right after its header would otherwise lack it, and compaction relies on it.
    let resumable = in_listing && stop.offset > SEGMENT_HEADER as u64;
    if resumable {
        torn |= zero_from(&break_path, stop.offset)?;
        restore_size(&break_path)?;
    } else if in_listing {
        // The header is bad or nothing valid follows it: the segment holds nothing of the log
        // (its hard state included). Make it anew.
        torn = true;
        remove(&break_path)?;
        segments.retain(|info| info.seq != stop.seq);
    }
    for (_, path) in &listed[stop.later..] {
        torn = true;
        remove(path)?;
    }
    for info in &segments {
        sync_file(&info.path)?;
    }
    crate::dir::sync_dir(dir)?;

    let tail = if torn {
        log::warn!(
            "cut a torn tail at {} offset {}: {}",
            break_path.display(),
            stop.offset,
            stop.reason
        );
        Tail::Cut {
            path: break_path,
            offset: stop.offset,
            reason: stop.reason,
        }
    } else {
        Tail::Clean
    };
    let resume = if resumable {
        Resume {
            seq: stop.seq,
            offset: stop.offset,
            last_crc: stop.last_crc,
        }
    } else {
        Resume {
            seq: stop.seq,
            offset: 0,
            last_crc: 0,
        }
    };
    Ok(Scan {
        log,
        segments,
        resume,
        tail,
    })
}

/// Follows the chain through one segment. Returns how it ended; fails on row 10.
fn scan_segment(
    seq: u64,
    path: &Path,
    bytes: &[u8],
    log: &mut LogState,
    max_index: &mut Option<u64>,
) -> Result<SegmentEnd> {
    let broken = |offset: usize, reason: String, last_crc: u32| SegmentEnd::Broken {
        offset: offset as u64,
        reason,
        last_crc,
    };
    let mut last_crc = match segment::check_header(seq, bytes) {
        Ok(seed) => seed,
        Err(segment::HeaderError::Torn(reason)) => return Ok(broken(0, reason, 0)),
        Err(segment::HeaderError::Foreign(reason)) => {
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                offset: 0,
                reason,
            });
        }
    };
    let mut offset = SEGMENT_HEADER;
    loop {
        let rest = &bytes[offset..];
        let Some(header) = Header::read(rest) else {
            return Ok(broken(
                offset,
                "end of file inside a record header".into(),
                last_crc,
            ));
        };
        if header.is_zero() {
            return Ok(broken(offset, "end of records".into(), last_crc));
        }
        let Some(kind) = Kind::from_byte(header.kind) else {
            return Ok(broken(
                offset,
                format!("unknown record kind {}", header.kind),
                last_crc,
            ));
        };
        let len = header.len as usize;
        if len > rest.len() - RECORD_HEADER {
            let reason = format!("record length {len} runs past the end of the file");
            return Ok(broken(offset, reason, last_crc));
        }
        if kind.fixed_payload_len().is_some_and(|fixed| fixed != len) {
            return Ok(broken(
                offset,
                format!("length {len} is wrong for {kind:?}"),
                last_crc,
            ));
        }
        let record = &rest[..RECORD_HEADER + len];
        if record::chained_crc(last_crc, record) != header.crc {
            return Ok(broken(offset, "crc mismatch".into(), last_crc));
        }

        // From here on the record is authentic: the writer wrote exactly these bytes.
        let corrupt = |reason: String| Error::Corrupt {
            path: path.to_path_buf(),
            offset: offset as u64,
            reason,
        };
        let payload = &record[RECORD_HEADER..];
        match kind {
            Kind::Entry => {
                log.push_entry(header.index, header.term, payload)
                    .map_err(corrupt)?;
                *max_index = Some(header.index.max(max_index.unwrap_or(0)));
            }
            Kind::HardState => {
                let mut vote = [0u8; 8];
                vote.copy_from_slice(payload);
                let hard_state = HardState {
                    term: header.term,
                    vote: u64::from_le_bytes(vote),
                    commit: header.index,
                };
                log.set_hard_state(hard_state).map_err(corrupt)?;
            }
            Kind::TruncateFrom => log.truncate_from(header.index),
            Kind::SyncMark => {
                if (header.term, header.index) > (seq, offset as u64) {
                    return Err(corrupt(format!(
                        "sync mark vouches for segment {} offset {}, beyond itself",
                        header.term, header.index
                    )));
                }
            }
            Kind::Seal => {
                if header.term != seq + 1 {
                    return Err(corrupt(format!(
                        "seal names segment {} as next",
                        header.term
                    )));
                }
                return Ok(SegmentEnd::Sealed {
                    next_seq: header.term,
                });
            }
        }
        last_crc = header.crc;
        offset += record.len();
    }
}

/// A sync mark found past a break: its file, its offset, and the (segment, offset) it vouches for.
type VouchingMark = (PathBuf, u64, (u64, u64));

/// Looks past the break for a sync mark vouching for a position beyond it (row 6). Returns the
/// file and offset of the first such mark and the position it vouches for.
fn find_vouching_mark(
    stop: &Break,
    break_path: &Path,
    listed: &[(u64, PathBuf)],
) -> Result<Option<VouchingMark>> {
    let break_position = (stop.seq, stop.offset);
    let mut candidates: Vec<(u64, &Path, u64)> = Vec::new();
    if listed.iter().any(|(seq, _)| *seq == stop.seq) {
        // Past the broken record's first byte, in the broken segment.
        candidates.push((stop.seq, break_path, stop.offset + 1));
    }
    for (seq, path) in &listed[stop.later..] {
        candidates.push((*seq, path, 0));
    }
    for (seq, path, from) in candidates {
        let Some(map) = segment::map_read(path)? else {
            continue;
        };
        let bytes: &[u8] = &map;
        const PAGE: usize = 4096;
        let mut offset = usize::try_from(from).unwrap_or(usize::MAX);
        while offset + record::MARK_RECORD <= bytes.len() {
            // A mark starts with its length byte 4, so none starts inside a page of zeros.
            let page_end = ((offset / PAGE) + 1) * PAGE;
            if bytes[offset..page_end.min(bytes.len())]
                .iter()
                .all(|&b| b == 0)
            {
                offset = page_end;
                continue;
            }
            // Cheap filter first: a mark's length field is 4 and its kind byte is 4.
            if bytes[offset + 8] == Kind::SyncMark as u8
                && bytes[offset..offset + 4] == [4, 0, 0, 0]
                && let Some(vouched) = record::standalone_mark(seq, &bytes[offset..])
                && vouched <= (seq, offset as u64)
                && vouched > break_position
            {
                return Ok(Some((path.to_path_buf(), offset as u64, vouched)));
            }
            offset += 1;
        }
    }
    Ok(None)
}

/// Zeroes every non-zero page of `path` from `offset` on and syncs it. Returns whether anything
/// had to be zeroed (a torn tail, as opposed to a clean end).
fn zero_from(path: &Path, offset: u64) -> Result<bool> {
    const PAGE: usize = 4096;
    let Some(map) = segment::map_read(path)? else {
        return Ok(false);
    };
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    let zeros = [0u8; PAGE];
    let mut start = usize::try_from(offset).unwrap_or(usize::MAX).min(map.len());
    let mut any = false;
    while start < map.len() {
        let end = ((start / PAGE) + 1) * PAGE;
        let end = end.min(map.len());
        if map[start..end].iter().any(|&b| b != 0) {
            any = true;
            file.write_all_at(&zeros[..end - start], start as u64)
                .map_err(|e| Error::io("zero torn tail", path, e))?;
        }
        start = end;
    }
    if any {
        file.sync_data()
            .map_err(|e| Error::io("fdatasync", path, e))?;
    }
    Ok(any)
}

/// Gives a segment that was cut short (row 9) back the size its header declares, so writing can
/// resume in it. The header was checked, so the size field is the writer's own.
fn restore_size(path: &Path) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io("stat", path, e))?
        .len();
    let Some(map) = segment::map_read(path)? else {
        return Ok(());
    };
    let declared = segment::declared_bytes(&map);
    drop(map);
    if len < declared {
        log::warn!(
            "{} is {len} bytes, its header says {declared}: extending",
            path.display()
        );
        file.set_len(declared)
            .map_err(|e| Error::io("extend", path, e))?;
        file.sync_all().map_err(|e| Error::io("fsync", path, e))?;
    }
    Ok(())
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

fn sync_file(path: &Path) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    file.sync_data()
        .map_err(|e| Error::io("fdatasync", path, e))
}
