//! Recovery checked against the decision table in `balsa_wal::recovery`, row by row: torn tails
//! at every byte, damage to synced data, lost and broken segments, hand-crafted records that break
//! the log's rules, snapshots and temporary files.
//!
//! Every test names the decision-table row(s) it checks (`row_N_…`). Records are hand-crafted
//! with the public `record::encode` and `segment::encode_header`, chained exactly as the writer
//! chains them, so a test that expects `Corrupt` cannot pass on a crc accident.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use balsa_wal::record::{self, Header, Kind, MARK_RECORD, RECORD_HEADER};
use balsa_wal::segment::{self, SEGMENT_HEADER};
use balsa_wal::snapshot::SNAPSHOT_HEADER;
use balsa_wal::{Entry, Error, HardState, Options, Recovered, SnapshotMeta, Tail, Wal, WritePath};

const KIB: u64 = 1024;

fn options(segment_bytes: u64) -> Options {
    Options {
        segment_bytes,
        ..Options::default()
    }
}

fn seg_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(segment::file_name(seq))
}

/// Deterministic entry bytes with no zero byte in them, so zeroing any part of a payload always
/// changes it.
fn payload(seed: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| {
            let v = (seed.wrapping_mul(131).wrapping_add(i.wrapping_mul(7))) % 255;
            u8::try_from(v + 1).expect("below 256")
        })
        .collect()
}

fn entry(index: u64, term: u64, len: usize) -> Entry {
    Entry {
        index,
        term,
        data: payload(index, len),
    }
}

fn ids(entries: &[Entry]) -> Vec<(u64, u64, usize)> {
    entries
        .iter()
        .map(|e| (e.index, e.term, e.data.len()))
        .collect()
}

/// xorshift64*: a seeded, deterministic byte source for "garbage".
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[7]
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.byte()).collect()
    }
}

/// One record as laid out in a segment file, read without checking anything.
#[derive(Clone, Copy, Debug)]
struct Rec {
    offset: usize,
    size: usize,
    kind: u8,
    index: u64,
    term: u64,
}

impl Rec {
    fn end(&self) -> usize {
        self.offset + self.size
    }
}

/// Walks the records of a segment image from offset 32 by their length fields, up to the first
/// all-zero header, the end of the bytes, or a seal.
fn records(bytes: &[u8]) -> Vec<Rec> {
    let mut out = Vec::new();
    let mut offset = SEGMENT_HEADER;
    while let Some(header) = bytes.get(offset..).and_then(Header::read) {
        if header.is_zero() {
            break;
        }
        let size = RECORD_HEADER + usize::try_from(header.len).expect("u32 fits usize");
        if offset + size > bytes.len() {
            break;
        }
        out.push(Rec {
            offset,
            size,
            kind: header.kind,
            index: header.index,
            term: header.term,
        });
        offset += size;
        if header.kind == Kind::Seal as u8 {
            break;
        }
    }
    out
}

/// Every file of `dir` but `LOCK`, with its bytes.
fn dir_contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != "LOCK")
        .map(|e| {
            (
                e.file_name().into_string().unwrap(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Puts `dir` back to exactly `contents` (plus `LOCK`).
fn restore(dir: &Path, contents: &BTreeMap<String, Vec<u8>>) {
    for name in file_names(dir) {
        if name != "LOCK" && !contents.contains_key(&name) {
            fs::remove_file(dir.join(&name)).unwrap();
        }
    }
    for (name, bytes) in contents {
        fs::write(dir.join(name), bytes).unwrap();
    }
}

fn open_ok(dir: &Path, options: &Options, label: &str) -> (Wal, Recovered) {
    match Wal::open(dir, options.clone()) {
        Ok(opened) => opened,
        Err(e) => panic!("{label}: open failed: {e}"),
    }
}

/// Opens `dir` expecting `Error::Corrupt` at exactly `path` and `offset`, and checks that the
/// failed open left every file as it was. Returns the reason.
fn expect_corrupt(dir: &Path, options: &Options, path: &Path, offset: u64, label: &str) -> String {
    let before = dir_contents(dir);
    let reason = match Wal::open(dir, options.clone()) {
        Err(Error::Corrupt {
            path: got_path,
            offset: got_offset,
            reason,
        }) => {
            assert_eq!(
                (got_path.as_path(), got_offset),
                (path, offset),
                "{label}: Corrupt at the wrong place ({reason})"
            );
            reason
        }
        Err(other) => panic!(
            "{label}: expected Corrupt at {} offset {offset}, got: {other}",
            path.display()
        ),
        Ok((_wal, recovered)) => panic!(
            "{label}: expected Corrupt at {} offset {offset}, but open succeeded with tail {:?} \
             and entries {:?}",
            path.display(),
            recovered.tail,
            ids(&recovered.entries)
        ),
    };
    assert!(
        dir_contents(dir) == before,
        "{label}: the failed open changed the files"
    );
    reason
}

fn assert_cut_at(tail: &Tail, path: &Path, offset: u64, label: &str) {
    match tail {
        Tail::Cut {
            path: got_path,
            offset: got_offset,
            ..
        } => assert_eq!(
            (got_path.as_path(), *got_offset),
            (path, offset),
            "{label}: cut at the wrong place: {tail:?}"
        ),
        Tail::Clean => panic!(
            "{label}: expected a cut at {} offset {offset}, tail is Clean",
            path.display()
        ),
    }
}

fn assert_entries(got: &[Entry], expected: &[Entry], label: &str) {
    assert!(
        got == expected,
        "{label}: entries differ: got {:?}, expected {:?}",
        ids(got),
        ids(expected)
    );
}

/// Builds a segment file record by record, chained exactly as the writer chains them.
struct SegmentBuilder {
    seq: u64,
    size: u64,
    bytes: Vec<u8>,
    crc: u32,
}

impl SegmentBuilder {
    fn new(seq: u64, size: u64) -> SegmentBuilder {
        let (header, crc) = segment::encode_header(seq, size);
        SegmentBuilder {
            seq,
            size,
            bytes: header.to_vec(),
            crc,
        }
    }

    /// Appends a record; returns its offset.
    fn push(&mut self, kind: Kind, index: u64, term: u64, payload: &[u8]) -> u64 {
        let offset = self.bytes.len() as u64;
        self.crc = record::encode(
            &mut self.bytes,
            self.crc,
            kind,
            index,
            term,
            payload,
            self.seq,
        );
        offset
    }

    fn hard_state(&mut self, hard_state: HardState) -> u64 {
        self.push(
            Kind::HardState,
            hard_state.commit,
            hard_state.term,
            &hard_state.vote.to_le_bytes(),
        )
    }

    fn entry(&mut self, index: u64, term: u64) -> u64 {
        self.push(Kind::Entry, index, term, &payload(index, 16))
    }

    /// A sync mark vouching for everything before itself, as `close` writes one.
    fn mark_here(&mut self) -> u64 {
        let here = self.bytes.len() as u64;
        self.push(Kind::SyncMark, here, self.seq, &[])
    }

    fn seal(&mut self, next_index: u64) -> u64 {
        self.push(Kind::Seal, next_index, self.seq + 1, &[])
    }

    fn write(mut self, dir: &Path) -> PathBuf {
        let size = usize::try_from(self.size).unwrap();
        assert!(self.bytes.len() <= size, "hand-crafted segment overflows");
        self.bytes.resize(size, 0);
        let path = seg_path(dir, self.seq);
        fs::write(&path, &self.bytes).unwrap();
        path
    }
}

const HS: HardState = HardState {
    term: 1,
    vote: 0,
    commit: 0,
};

// ---------------------------------------------------------------------------------------------
// Rows 1-5: the torn final record, at every byte.
// ---------------------------------------------------------------------------------------------

/// What replaces the bytes from the cut point to the end of the final record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fill {
    /// The write never reached the disk: zeros (the segment is zero-filled).
    Zeros,
    /// Seeded pseudo-random bytes, each differing from the byte it replaces.
    Garbage,
    /// Older records of this same log, cycled: valid-looking records chained from elsewhere.
    Stale,
}

const FILLS: [Fill; 3] = [Fill::Zeros, Fill::Garbage, Fill::Stale];

/// The bytes that replace `original` from a cut point on, for each way of filling. A cut at
/// `c` into a batch starting at `b` takes `zeros[c - b..]`, `garbage[c - b..]` (the same seeded
/// bytes at the same file position whatever the cut, each differing from the byte it replaces),
/// or `stale[..len - (c - b)]` (older records starting right at the cut).
struct Replacements {
    zeros: Vec<u8>,
    garbage: Vec<u8>,
    stale: Vec<u8>,
}

impl Replacements {
    fn new(original: &[u8], stale_source: &[u8], seed: u64) -> Replacements {
        let mut rng = Rng::new(seed);
        let garbage = original
            .iter()
            .map(|&o| {
                let g = rng.byte();
                if g == o { g ^ 0xA5 } else { g }
            })
            .collect();
        let stale = stale_source
            .iter()
            .copied()
            .cycle()
            .take(original.len())
            .collect();
        Replacements {
            zeros: vec![0; original.len()],
            garbage,
            stale,
        }
    }

    /// The replacement for the bytes `from..` of the batch.
    fn tail(&self, how: Fill, from: usize) -> &[u8] {
        match how {
            Fill::Zeros => &self.zeros[from..],
            Fill::Garbage => &self.garbage[from..],
            Fill::Stale => &self.stale[..self.stale.len() - from],
        }
    }
}

/// A temporary directory for the sweeps, on tmpfs when `/dev/shm` is there. Every reopen in a
/// sweep costs the WAL two to three `fdatasync`/`fsync` calls; on a disk they make the runtime
/// depend on the disk (and on whoever else uses it), and durability is not what a sweep checks:
/// the recovery decisions are the same on any filesystem.
fn sweep_tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::Builder::new()
            .prefix("balsa-wal-recovery-")
            .tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}

/// The cut points of the final batch `[batch, end)` (sync mark, then the final entry starting at
/// `entry_at`) that the sweep tries.
///
/// Payloads below 4095 bytes: every offset. Payloads of 4095 bytes and more: every offset in the
/// record header region (the whole mark and the entry's header), in the first 4096 and the last
/// 4096 payload bytes, and every 61st offset in between. (For 4095..=4097 that is every offset;
/// for 60,000 it is ~9,100 of ~60,050, which keeps the sweep to seconds.)
fn cut_points(batch: usize, entry_at: usize, end: usize, payload_len: usize) -> Vec<usize> {
    let payload_at = entry_at + RECORD_HEADER;
    (batch..end)
        .filter(|&cut| {
            payload_len < 4095
                || cut < payload_at + 4096
                || cut + 4096 >= end
                || (cut - payload_at).is_multiple_of(61)
        })
        .collect()
}

/// Rows 2, 3, 4 and 5 at every cut point of the final record (see [`cut_points`]): the final
/// batch (sync mark + entry) of a log dropped without `close` is damaged from the cut point to
/// its end with zeros, garbage or stale older records. Recovery must keep exactly the complete
/// prefix, report `Tail::Cut` at the first damaged record (or `Clean` when everything from there
/// on is zeros), zero the cut bytes, and let writing resume there.
///
/// With [`WritePath::Direct`] the log is written, and written again after the cut, in whole
/// O_DIRECT blocks, in a directory on the disk (tmpfs takes O_DIRECT without its alignment
/// rules, so it would not check them): the writer must pick up the partial block the cut left.
fn torn_final_record_sweep(final_len: usize, write_path: WritePath) {
    let dir = match write_path {
        WritePath::Direct => tempfile::tempdir().unwrap(),
        _ => sweep_tempdir(),
    };
    let dir = dir.path();
    // The smallest segment allowed; 60,000 bytes fit (`max_entry_bytes` is 65,392). Recovery
    // scans from the break to the end of the segment byte by byte (looking for marks, then for
    // pages to zero), so every reopen costs time in proportion to the segment size: 256 KiB
    // would make the sweep about three times slower and test nothing more.
    let opts = Options {
        write_path,
        ..options(64 * KIB)
    };
    let (mut wal, _) = open_ok(dir, &opts, "fresh");
    assert_eq!(wal.write_path(), write_path, "O_DIRECT refused here?");
    let earlier = vec![entry(1, 1, 7), entry(2, 1, 300), entry(3, 2, 1000)];
    wal.append(&earlier).unwrap();
    wal.sync().unwrap();
    let last = entry(4, 2, final_len);
    wal.append(std::slice::from_ref(&last)).unwrap();
    wal.sync().unwrap();
    drop(wal);

    let path = seg_path(dir, 1);
    let pristine = fs::read(&path).unwrap();
    let recs = records(&pristine);
    let kinds: Vec<u8> = recs.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [2, 4, 1, 1, 1, 4, 1],
        "layout: hard state, mark, 3 entries, mark, final entry"
    );
    let (mark, fin) = (recs[5], recs[6]);
    let (batch, entry_at, end) = (mark.offset, fin.offset, fin.end());
    assert_eq!(fin.index, 4);
    assert_eq!(entry_at, batch + MARK_RECORD);
    assert!(pristine[end..].iter().all(|&b| b == 0));
    // The stale source: the first mark and the three earlier entries, all valid records of this
    // segment chained from other predecessors than the records they will follow.
    let replacements = Replacements::new(
        &pristine[batch..end],
        &pristine[recs[1].offset..batch],
        final_len as u64,
    );
    let zeros = &replacements.zeros;
    let mut all = earlier.clone();
    all.push(last.clone());

    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let cuts = cut_points(batch, entry_at, end, final_len);
    let mut image = pristine[batch..end].to_vec();
    let mut now = vec![0u8; end - batch];
    // How often each outcome came up: (clean, cut at the mark, cut at the final entry).
    let mut outcomes = (0, 0, 0);
    for (n, &cut) in cuts.iter().enumerate() {
        for how in FILLS {
            let from = cut - batch;
            image[..from].copy_from_slice(&pristine[batch..cut]);
            image[from..].copy_from_slice(replacements.tail(how, from));
            file.write_all_at(&image, batch as u64).unwrap();
            let label = format!(
                "payload {final_len}, cut at {cut} (batch {batch}, entry {entry_at}, end {end}), \
                 {how:?}"
            );

            let mark_ok = image[..MARK_RECORD] == pristine[batch..entry_at];
            let entry_ok = image[MARK_RECORD..] == pristine[entry_at..end];
            let (expected, cut_at) = if mark_ok && entry_ok {
                (&all[..], None)
            } else {
                let broken = if mark_ok { entry_at } else { batch };
                let all_zero = image[broken - batch..] == zeros[broken - batch..];
                (&earlier[..], (!all_zero).then_some(broken))
            };

            match cut_at {
                None => outcomes.0 += 1,
                Some(offset) if offset == batch => outcomes.1 += 1,
                Some(_) => outcomes.2 += 1,
            }

            let (mut wal, recovered) = open_ok(dir, &opts, &label);
            assert_entries(&recovered.entries, expected, &label);
            match cut_at {
                None => assert_eq!(recovered.tail, Tail::Clean, "{label}"),
                Some(offset) => {
                    assert_cut_at(&recovered.tail, &path, offset as u64, &label);
                    // The cut is durable: every torn byte is zero now.
                    let now = &mut now[offset - batch..];
                    file.read_exact_at(now, offset as u64).unwrap();
                    assert!(
                        *now == zeros[offset - batch..],
                        "{label}: torn bytes left behind"
                    );
                }
            }
            assert_eq!(
                file_names(dir),
                ["00000000000000000001.wal", "LOCK"],
                "{label}"
            );

            if n.is_multiple_of(97) || n + 1 == cuts.len() {
                // Writing resumes at the cut and survives a restart.
                let next = entry(expected.len() as u64 + 1, 3, 33);
                wal.append(std::slice::from_ref(&next)).unwrap();
                wal.sync().unwrap();
                drop(wal);
                let (wal, again) = open_ok(dir, &opts, &label);
                let mut want = expected.to_vec();
                want.push(next);
                assert_entries(&again.entries, &want, &format!("{label}, appended again"));
                assert_eq!(again.tail, Tail::Clean, "{label}, appended again");
                drop(wal);
                file.write_all_at(&pristine, 0).unwrap();
            }
        }
    }
    // Zeros from the batch's start and from the entry's start are clean ends; every other cut is
    // a torn mark or a torn entry. The sweep must have met all three.
    assert!(
        outcomes.0 >= 2 && outcomes.1 >= 3 * (MARK_RECORD - 1) && outcomes.2 > 0,
        "outcomes (clean, cut at mark, cut at entry): {outcomes:?}"
    );
}

#[test]
fn rows_2_to_5_torn_final_record_payload_1_every_offset() {
    torn_final_record_sweep(1, WritePath::Pwrite);
}

#[test]
fn rows_2_to_5_torn_final_record_payload_100_every_offset() {
    torn_final_record_sweep(100, WritePath::Pwrite);
}

#[test]
fn rows_2_to_5_torn_final_record_payload_4095_every_offset() {
    torn_final_record_sweep(4095, WritePath::Pwrite);
}

#[test]
fn rows_2_to_5_torn_final_record_payload_4096_every_offset() {
    torn_final_record_sweep(4096, WritePath::Pwrite);
}

#[test]
fn rows_2_to_5_torn_final_record_payload_4097_every_offset() {
    torn_final_record_sweep(4097, WritePath::Pwrite);
}

#[test]
fn rows_2_to_5_torn_final_record_payload_60000_bounded_offsets() {
    torn_final_record_sweep(60_000, WritePath::Pwrite);
}

#[test]
fn rows_2_to_5_torn_final_record_written_direct_payload_1_every_offset() {
    torn_final_record_sweep(1, WritePath::Direct);
}

#[test]
fn rows_2_to_5_torn_final_record_written_direct_payload_100_every_offset() {
    torn_final_record_sweep(100, WritePath::Direct);
}

#[test]
fn rows_2_to_5_torn_final_record_written_direct_payload_4097_every_offset() {
    torn_final_record_sweep(4097, WritePath::Direct);
}

#[test]
fn row_1_an_empty_directory_is_a_new_empty_log() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(64 * KIB);
    let (wal, recovered) = open_ok(dir.path(), &opts, "empty");
    assert!(recovered.entries.is_empty());
    assert_eq!(recovered.tail, Tail::Clean);
    assert_eq!(recovered.hard_state, HardState::default());
    assert_eq!(recovered.snapshot, None);
    assert_eq!(wal.next_index(), 1);
}

#[test]
fn row_4_unknown_kind_or_overlong_length_in_the_unsynced_batch_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let opts = options(64 * KIB);
    let (mut wal, _) = open_ok(dir, &opts, "fresh");
    wal.append(&[entry(1, 1, 10), entry(2, 1, 10)]).unwrap();
    wal.sync().unwrap();
    wal.append(&[entry(3, 1, 10)]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let path = seg_path(dir, 1);
    let pristine = dir_contents(dir);
    let recs = records(&pristine["00000000000000000001.wal"]);
    let last = *recs.last().unwrap();
    assert_eq!((last.kind, last.index), (1, 3));
    let damages: [(&str, usize, &[u8]); 4] = [
        ("unknown kind 9", 8, &[9]),
        ("unknown kind 0", 8, &[0]),
        ("length past the segment", 0, &u32::MAX.to_le_bytes()),
        (
            "length to the byte past the end",
            0,
            &(64 * 1024u32).to_le_bytes(),
        ),
    ];
    for (label, at, bytes) in damages {
        restore(dir, &pristine);
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(bytes, (last.offset + at) as u64).unwrap();
        let (_wal, recovered) = open_ok(dir, &opts, label);
        assert_entries(
            &recovered.entries,
            &[entry(1, 1, 10), entry(2, 1, 10)],
            label,
        );
        assert_cut_at(&recovered.tail, &path, last.offset as u64, label);
    }
}

// ---------------------------------------------------------------------------------------------
// Row 6: damage to synced data is Corrupt, never a cut.
// ---------------------------------------------------------------------------------------------

/// Row 6 (with the breaks of rows 3 and 4): one bit flipped anywhere in an old synced record, a
/// closed log's last entry, its first record (the hard state) or an inner sync mark makes open
/// fail with `Corrupt` at exactly that record, and leaves the files as they were.
#[test]
fn row_6_a_bit_flip_in_a_synced_record_is_corrupt_at_that_record() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let opts = options(64 * KIB);
    let (mut wal, _) = open_ok(dir, &opts, "fresh");
    let mut written = Vec::new();
    for index in 1..=50u64 {
        let e = entry(
            index,
            1 + index / 20,
            20 + usize::try_from(index % 7).unwrap() * 10,
        );
        wal.append(std::slice::from_ref(&e)).unwrap();
        written.push(e);
        if index.is_multiple_of(6) {
            wal.sync().unwrap();
        }
    }
    wal.close().unwrap();

    let path = seg_path(dir, 1);
    let pristine = fs::read(&path).unwrap();
    let recs = records(&pristine);
    let find_entry = |index: u64| {
        *recs
            .iter()
            .find(|r| r.kind == 1 && r.index == index)
            .unwrap()
    };
    let marks: Vec<Rec> = recs.iter().filter(|r| r.kind == 4).copied().collect();
    assert!(marks.len() >= 9, "a mark per sync and one from close");
    let targets = [
        ("entry 10", find_entry(10)),
        ("entry 50, vouched for only by close's mark", find_entry(50)),
        ("the hard state heading the segment", recs[0]),
        ("an inner sync mark", marks[3]),
    ];
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    for (what, target) in targets {
        // Every bit of the header (len, crc, kind, index, term), and bits of the payload.
        let mut bits: Vec<(usize, u8)> = (0..RECORD_HEADER)
            .flat_map(|byte| (0..8).map(move |bit| (byte, bit)))
            .collect();
        let size = target.size;
        bits.extend([
            (RECORD_HEADER, 0),
            ((RECORD_HEADER + size) / 2, 3),
            (size - 1, 7),
        ]);
        for (byte, bit) in bits {
            let at = target.offset + byte;
            let field = match byte {
                0..4 => "len",
                4..8 => "crc",
                8 => "kind",
                9..17 => "index",
                17..25 => "term",
                _ => "payload",
            };
            let label = format!("{what}: bit {bit} of byte {byte} ({field}) at offset {at}");
            file.write_all_at(&[pristine[at] ^ (1 << bit)], at as u64)
                .unwrap();
            expect_corrupt(dir, &opts, &path, target.offset as u64, &label);
            file.write_all_at(&pristine[at..=at], at as u64).unwrap();
        }
    }

    // Control: the last record, close's own mark, has nothing after it to vouch for it. Damage
    // to it cannot be told from a torn mark (row 3): it is cut, and no entry is lost.
    let close_mark = *recs.last().unwrap();
    assert_eq!(close_mark.kind, 4);
    file.write_all_at(
        &[pristine[close_mark.offset + 12] ^ 1],
        (close_mark.offset + 12) as u64,
    )
    .unwrap();
    let (_wal, recovered) = open_ok(dir, &opts, "close mark flipped");
    assert_entries(&recovered.entries, &written, "close mark flipped");
    assert_cut_at(
        &recovered.tail,
        &path,
        close_mark.offset as u64,
        "close mark flipped",
    );
}

// ---------------------------------------------------------------------------------------------
// Rows 6-10 across segments.
// ---------------------------------------------------------------------------------------------

const HS_5_2: HardState = HardState {
    term: 5,
    vote: 2,
    commit: 0,
};

/// A closed log of at least 4 segments of 64 KiB with entries in the last one. Returns the
/// written entries and the number of segments.
fn multi_segment_log(dir: &Path, opts: &Options) -> (Vec<Entry>, u64) {
    let (mut wal, _) = open_ok(dir, opts, "fresh");
    wal.set_hard_state(HS_5_2).unwrap();
    let mut written = Vec::new();
    let mut index = 1;
    let mut extra = 0;
    while extra < 12 {
        let e = entry(index, 1 + index / 100, 1000);
        wal.append(std::slice::from_ref(&e)).unwrap();
        written.push(e);
        if index.is_multiple_of(10) {
            wal.sync().unwrap();
        }
        if wal.stats().rolls >= 3 {
            extra += 1;
        }
        index += 1;
    }
    wal.close().unwrap();
    let segments = file_names(dir)
        .iter()
        .filter(|n| n.ends_with(".wal"))
        .count() as u64;
    assert!(segments >= 4, "{segments} segments");
    (written, segments)
}

/// Entries of `written` whose records lie wholly in segments before `seq`, or in `seq` before
/// offset `before`.
fn entries_before(
    dir_image: &BTreeMap<String, Vec<u8>>,
    written: &[Entry],
    seq: u64,
    before: usize,
) -> Vec<Entry> {
    let mut last = 0;
    for s in 1..=seq {
        for rec in records(&dir_image[&segment::file_name(s)]) {
            if rec.kind == 1 && (s < seq || rec.end() <= before) {
                last = rec.index;
            }
        }
    }
    written
        .iter()
        .filter(|e| e.index <= last)
        .cloned()
        .collect()
}

/// Rows 6, 7, 8 and 9 in a middle segment: truncated to half its size, to just past its header,
/// zero-length, deleted, or overwritten with garbage. Later segments hold sync marks vouching
/// for positions past the damage, so open fails with `Corrupt` naming the damaged (or missing)
/// file and the offset of the break, and leaves the files alone.
#[test]
fn rows_6_to_9_damage_to_a_middle_segment_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let opts = options(64 * KIB);
    let (_, segments) = multi_segment_log(dir, &opts);
    let pristine = dir_contents(dir);
    for seq in 2..segments {
        let path = seg_path(dir, seq);
        let bytes = &pristine[&segment::file_name(seq)];
        let recs = records(bytes);
        assert_eq!(
            recs.last().unwrap().kind,
            Kind::Seal as u8,
            "segment {seq} is sealed"
        );
        let half = bytes.len() / 2;
        assert!(
            recs.last().unwrap().end() > half,
            "records reach past half of {seq}"
        );
        let first_cut = recs.iter().find(|r| r.end() > half).unwrap().offset as u64;

        restore(dir, &pristine);
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(half as u64)
            .unwrap();
        expect_corrupt(
            dir,
            &opts,
            &path,
            first_cut,
            &format!("row 9: segment {seq} halved"),
        );

        restore(dir, &pristine);
        let just_past_header = (SEGMENT_HEADER + 8) as u64;
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(just_past_header)
            .unwrap();
        expect_corrupt(
            dir,
            &opts,
            &path,
            SEGMENT_HEADER as u64,
            &format!("row 9: segment {seq} cut just past its header"),
        );

        restore(dir, &pristine);
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        expect_corrupt(
            dir,
            &opts,
            &path,
            0,
            &format!("row 7: segment {seq} zero-length"),
        );

        restore(dir, &pristine);
        fs::remove_file(&path).unwrap();
        expect_corrupt(
            dir,
            &opts,
            &path,
            0,
            &format!("row 8: segment {seq} deleted"),
        );

        restore(dir, &pristine);
        fs::write(&path, Rng::new(seq).bytes(bytes.len())).unwrap();
        expect_corrupt(
            dir,
            &opts,
            &path,
            0,
            &format!("row 7: segment {seq} garbage"),
        );
    }
}

/// Rows 7, 8 and 9 in the last segment. The marks that vouched for its contents lived in it, and
/// marks in earlier segments vouch only for positions before themselves, so nothing vouches past
/// the damage: open succeeds, keeps every entry before the break, reports the cut, and writing
/// resumes. Deleting the last segment leaves the previous one sealed towards a segment that
/// never was, which is indistinguishable from a roll that never reached the disk (row 8): open
/// succeeds with nothing on disk to cut, so the tail is `Clean`.
#[test]
fn rows_7_to_9_damage_to_the_last_segment_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let opts = options(64 * KIB);
    let (written, last) = multi_segment_log(dir, &opts);
    let pristine = dir_contents(dir);
    let path = seg_path(dir, last);
    let bytes = pristine[&segment::file_name(last)].clone();
    let recs = records(&bytes);
    let in_last = recs.iter().filter(|r| r.kind == 1).count();
    assert!(in_last > 0, "the last segment holds entries");
    let half = recs[recs.len() / 2].offset + 3;
    let half_cut = recs.iter().find(|r| r.end() > half).unwrap().offset;

    type Damage = fn(&Path, &[u8], usize);
    let damages: [(&str, Damage, Option<usize>); 5] = [
        (
            "row 9: truncated just past its header",
            |p, _, _| {
                OpenOptions::new()
                    .write(true)
                    .open(p)
                    .unwrap()
                    .set_len(40)
                    .unwrap();
            },
            Some(SEGMENT_HEADER),
        ),
        (
            "row 9: truncated inside its records",
            |p, _, half| {
                OpenOptions::new()
                    .write(true)
                    .open(p)
                    .unwrap()
                    .set_len(half as u64)
                    .unwrap();
            },
            Some(half_cut),
        ),
        (
            "row 7: zero-length",
            |p, _, _| {
                OpenOptions::new()
                    .write(true)
                    .open(p)
                    .unwrap()
                    .set_len(0)
                    .unwrap();
            },
            Some(0),
        ),
        (
            "row 7: garbage",
            |p, b, _| fs::write(p, Rng::new(77).bytes(b.len())).unwrap(),
            Some(0),
        ),
        (
            "row 8: deleted",
            |p, _, _| fs::remove_file(p).unwrap(),
            None,
        ),
    ];
    for (label, damage, cut) in damages {
        restore(dir, &pristine);
        damage(&path, &bytes, half);
        let expected = entries_before(&pristine, &written, last, cut.unwrap_or(0));
        assert!(
            expected.len() < written.len(),
            "{label}: the damage loses entries"
        );
        let (mut wal, recovered) = open_ok(dir, &opts, label);
        assert_entries(&recovered.entries, &expected, label);
        assert_eq!(recovered.hard_state, HS_5_2, "{label}");
        match cut {
            Some(offset) => assert_cut_at(&recovered.tail, &path, offset as u64, label),
            None => assert_eq!(recovered.tail, Tail::Clean, "{label}"),
        }
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            64 * KIB,
            "{label}: the segment has its full size again"
        );
        let next = entry(expected.len() as u64 + 1, 9, 100);
        wal.append(std::slice::from_ref(&next)).unwrap();
        wal.close().unwrap();
        let (_wal, again) = open_ok(dir, &opts, label);
        let mut want = expected.clone();
        want.push(next);
        assert_entries(&again.entries, &want, &format!("{label}, appended again"));
        assert_eq!(again.tail, Tail::Clean, "{label}, appended again");
        assert_eq!(again.hard_state, HS_5_2, "{label}, appended again");
    }
}

/// Row 9 then compaction: the cut of a last segment truncated just past its header leaves that
/// segment without the hard-state record that heads every segment ("deleting older segments
/// never loses it", lib.rs). Once the older segments are compacted away, the hard state must
/// still come back.
#[test]
fn row_9_a_cut_at_the_head_of_a_segment_keeps_the_hard_state_through_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let opts = options(64 * KIB);
    let (written, last) = multi_segment_log(dir, &opts);
    let path = seg_path(dir, last);
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(40)
        .unwrap();
    let (mut wal, recovered) = open_ok(dir, &opts, "cut at head");
    assert_cut_at(&recovered.tail, &path, SEGMENT_HEADER as u64, "cut at head");
    assert_eq!(recovered.hard_state, HS_5_2);
    let mut next = recovered.entries.last().unwrap().index + 1;
    assert!(next <= written.len() as u64);
    for _ in 0..3 {
        wal.append(&[entry(next, 9, 100)]).unwrap();
        next += 1;
    }
    wal.sync().unwrap();
    let covered = next - 1;
    wal.save_snapshot(
        SnapshotMeta {
            index: covered,
            term: 9,
        },
        b"state",
    )
    .unwrap();
    wal.compact_to(covered).unwrap();
    wal.close().unwrap();
    let left: Vec<String> = file_names(dir)
        .into_iter()
        .filter(|n| n.ends_with(".wal"))
        .collect();
    assert_eq!(
        left,
        [segment::file_name(last)],
        "compaction kept only the last segment"
    );
    let (_wal, recovered) = open_ok(dir, &opts, "after compaction");
    assert_eq!(
        recovered.hard_state, HS_5_2,
        "the hard state (term 5, vote 2) must survive compaction"
    );
}

/// Hand-crafts segment 1: the hard state, entries 1..=5 of term 1, a sync mark, and a seal
/// naming segment 2 with entry 6 due.
fn write_sealed_segment_of_five(dir: &Path, size: u64) {
    let mut one = SegmentBuilder::new(1, size);
    one.hard_state(HS);
    for index in 1..=5 {
        one.entry(index, 1);
    }
    one.mark_here();
    one.seal(6);
    one.write(dir);
}

/// Row 10: an index gap between segments, hand-crafted with valid chains, seals and marks: the
/// first entry of segment 2 is not the one segment 1's entries call for. Also an index that goes
/// back. Open fails with `Corrupt` at that entry; it never silently succeeds.
#[test]
fn row_10_an_index_gap_between_segments_is_corrupt() {
    // (label, the entries of segment 2 in order, which of them is the first bad one)
    let cases: [(&str, &[u64], usize); 3] = [
        ("gap: 6 is due, 8 comes", &[8, 9], 0),
        ("back: 6 is due, 5 comes", &[5, 6], 0),
        ("repeat: 6 twice", &[6, 6, 7], 1),
    ];
    for (label, second, bad_at) in cases {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let size = 64 * KIB;
        write_sealed_segment_of_five(dir, size);
        let mut two = SegmentBuilder::new(2, size);
        two.hard_state(HS);
        let offsets: Vec<u64> = second.iter().map(|&index| two.entry(index, 1)).collect();
        two.mark_here();
        let path = two.write(dir);
        expect_corrupt(dir, &options(size), &path, offsets[bad_at], label);
    }
}

/// Control for the hand-crafted tests: the same construction with no rule broken opens cleanly
/// (so the `Corrupt` results below are not builder mistakes).
#[test]
fn row_2_hand_crafted_control_log_opens_clean() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let size = 64 * KIB;
    write_sealed_segment_of_five(dir, size);
    let mut two = SegmentBuilder::new(2, size);
    two.hard_state(HardState {
        term: 2,
        vote: 1,
        commit: 4,
    });
    two.entry(6, 1);
    two.entry(7, 2);
    two.push(Kind::TruncateFrom, 7, 0, &[]);
    two.entry(7, 3);
    two.mark_here();
    two.write(dir);
    let (_wal, recovered) = open_ok(dir, &options(size), "control");
    let got: Vec<(u64, u64)> = recovered
        .entries
        .iter()
        .map(|e| (e.index, e.term))
        .collect();
    assert_eq!(
        got,
        [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (6, 1), (7, 3)]
    );
    assert_eq!(
        recovered.hard_state,
        HardState {
            term: 2,
            vote: 1,
            commit: 4
        }
    );
    assert_eq!(recovered.tail, Tail::Clean);
}

/// Row 7b: segment 2 deleted and the later files renamed down one number (3 -> 2, 4 -> 3, ...).
/// The file now named 2 has a well-formed header that says 3. A torn write cannot produce a
/// header whose crc holds, so this is a renamed or foreign file: `Corrupt` at offset 0 of that
/// file, and nothing is cut.
#[test]
fn row_7b_segments_renamed_down_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let opts = options(64 * KIB);
    let (_written, segments) = multi_segment_log(dir, &opts);
    fs::remove_file(seg_path(dir, 2)).unwrap();
    for seq in 3..=segments {
        fs::rename(seg_path(dir, seq), seg_path(dir, seq - 1)).unwrap();
    }
    expect_corrupt(dir, &opts, &seg_path(dir, 2), 0, "renamed");
}

// ---------------------------------------------------------------------------------------------
// Row 10 within a segment.
// ---------------------------------------------------------------------------------------------

/// Writes one hand-crafted segment with `build` and expects `Corrupt` at the offset it returns.
fn crafted_corrupt(label: &str, build: impl FnOnce(&mut SegmentBuilder) -> u64) {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let size = 64 * KIB;
    let mut seg = SegmentBuilder::new(1, size);
    seg.hard_state(HS);
    let bad = build(&mut seg);
    let path = seg.write(dir);
    expect_corrupt(dir, &options(size), &path, bad, label);
}

/// Row 10: correctly chained records that break the log's rules are `Corrupt` at that record,
/// whether or not anything follows them (nothing vouches for the last one, and it still fails).
#[test]
fn row_10_valid_records_that_break_the_rules_are_corrupt_at_that_record() {
    for trailing_mark in [false, true] {
        let t = |label: &str| format!("{label}, mark after: {trailing_mark}");
        let tail = move |seg: &mut SegmentBuilder| {
            if trailing_mark {
                seg.mark_here();
            }
        };
        crafted_corrupt(&t("entry term goes down"), |seg| {
            seg.entry(1, 2);
            seg.entry(2, 2);
            let bad = seg.entry(3, 1);
            tail(seg);
            bad
        });
        crafted_corrupt(&t("hard-state term goes down"), |seg| {
            seg.hard_state(HardState {
                term: 3,
                vote: 1,
                commit: 0,
            });
            seg.entry(1, 3);
            let bad = seg.hard_state(HardState {
                term: 2,
                vote: 1,
                commit: 1,
            });
            tail(seg);
            bad
        });
        crafted_corrupt(&t("entry index skips"), |seg| {
            seg.entry(1, 1);
            seg.entry(2, 1);
            let bad = seg.entry(4, 1);
            tail(seg);
            bad
        });
        crafted_corrupt(&t("entry index repeats"), |seg| {
            seg.entry(1, 1);
            seg.entry(2, 1);
            let bad = seg.entry(2, 1);
            tail(seg);
            bad
        });
        crafted_corrupt(
            &t("entry after truncate-from is not the truncation point"),
            |seg| {
                seg.entry(1, 1);
                seg.entry(2, 1);
                seg.entry(3, 1);
                seg.push(Kind::TruncateFrom, 2, 0, &[]);
                let bad = seg.entry(3, 1);
                tail(seg);
                bad
            },
        );
        crafted_corrupt(&t("seal naming segment 3 after segment 1"), |seg| {
            seg.entry(1, 1);
            seg.push(Kind::Seal, 2, 3, &[])
        });
        crafted_corrupt(&t("seal naming its own segment"), |seg| {
            seg.entry(1, 1);
            seg.push(Kind::Seal, 2, 1, &[])
        });
        crafted_corrupt(&t("mark vouching beyond itself in its segment"), |seg| {
            seg.entry(1, 1);
            let here = seg.bytes.len() as u64;
            let bad = seg.push(Kind::SyncMark, here + 1, 1, &[]);
            seg.entry(2, 1);
            tail(seg);
            bad
        });
        crafted_corrupt(&t("mark vouching for a later segment"), |seg| {
            seg.entry(1, 1);
            let bad = seg.push(Kind::SyncMark, 32, 2, &[]);
            seg.entry(2, 1);
            tail(seg);
            bad
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Rows 11-14: snapshots and temporary files.
// ---------------------------------------------------------------------------------------------

fn snap_path(dir: &Path, index: u64, term: u64) -> PathBuf {
    dir.join(format!("snap-{index:020}-{term:020}"))
}

/// Row 11, hand-crafted: the newest snapshot is at 10, the log starts at 20.
#[test]
fn row_11_a_log_starting_past_the_snapshot_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let opts = options(64 * KIB);
    let (mut wal, _) = open_ok(dir, &opts, "fresh");
    wal.save_snapshot(SnapshotMeta { index: 10, term: 1 }, b"ten")
        .unwrap();
    wal.close().unwrap();
    let mut seg = SegmentBuilder::new(1, 64 * KIB);
    seg.hard_state(HS);
    for index in 20..=25 {
        seg.entry(index, 1);
    }
    seg.mark_here();
    let path = seg.write(dir);
    expect_corrupt(dir, &opts, &path, 0, "log at 20, snapshot at 10");
}

/// Row 11 through the API: snapshots at 10 and 19, the log reset with `truncate_from(20)` and
/// continued; then the snapshot at 19 is lost. The newest left (10) does not reach the log.
#[test]
fn row_11_a_lost_newest_snapshot_leaving_a_gap_before_the_log_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let opts = options(64 * KIB);
    let (mut wal, _) = open_ok(dir, &opts, "fresh");
    wal.save_snapshot(SnapshotMeta { index: 10, term: 1 }, b"ten")
        .unwrap();
    wal.save_snapshot(SnapshotMeta { index: 19, term: 1 }, b"nineteen")
        .unwrap();
    wal.truncate_from(20).unwrap();
    wal.append(&(20..=25).map(|i| entry(i, 1, 8)).collect::<Vec<_>>())
        .unwrap();
    wal.close().unwrap();
    // Control: with both snapshots the log opens.
    let (wal, recovered) = open_ok(dir, &opts, "both snapshots");
    assert_eq!(recovered.entries.first().map(|e| e.index), Some(20));
    wal.close().unwrap();
    fs::remove_file(snap_path(dir, 19, 1)).unwrap();
    expect_corrupt(dir, &opts, &seg_path(dir, 1), 0, "snapshot 19 lost");
}

/// Row 11 when the log has entries on both sides of the gap: entries 1..=12, a snapshot at 10,
/// then (after installing a snapshot at 25) `truncate_from(26)` and entries 26..=30. With the
/// snapshot at 25 lost, entries 13..=25 are missing between the snapshot at 10 and the log.
/// `Recovered::entries` must never come back non-contiguous.
#[test]
fn row_11_a_gap_inside_the_log_after_a_lost_snapshot_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let opts = options(64 * KIB);
    let (mut wal, _) = open_ok(dir, &opts, "fresh");
    wal.append(&(1..=12).map(|i| entry(i, 1, 8)).collect::<Vec<_>>())
        .unwrap();
    wal.sync().unwrap();
    wal.save_snapshot(SnapshotMeta { index: 10, term: 1 }, b"ten")
        .unwrap();
    wal.save_snapshot(SnapshotMeta { index: 25, term: 2 }, b"twenty-five")
        .unwrap();
    wal.truncate_from(26).unwrap();
    wal.append(&(26..=30).map(|i| entry(i, 2, 8)).collect::<Vec<_>>())
        .unwrap();
    wal.close().unwrap();
    let (wal, recovered) = open_ok(dir, &opts, "both snapshots");
    let got: Vec<u64> = recovered.entries.iter().map(|e| e.index).collect();
    assert_eq!(got, [26, 27, 28, 29, 30], "control: both snapshots");
    wal.close().unwrap();
    fs::remove_file(snap_path(dir, 25, 2)).unwrap();
    let before = dir_contents(dir);
    match Wal::open(dir, opts.clone()) {
        Err(Error::Corrupt { .. }) => {}
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok((_wal, recovered)) => {
            let got: Vec<u64> = recovered.entries.iter().map(|e| e.index).collect();
            panic!(
                "snapshot 25 lost: expected Corrupt (entries 13..=25 missing), but open succeeded \
                 with snapshot {:?} and entries {got:?}",
                recovered.snapshot
            );
        }
    }
    assert!(
        dir_contents(dir) == before,
        "the failed open changed the files"
    );
}

/// Row 12: entries at or below the newest snapshot are not handed back.
#[test]
fn row_12_entries_covered_by_the_snapshot_stay_out_of_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let opts = options(64 * KIB);
    let (mut wal, _) = open_ok(dir, &opts, "fresh");
    let written: Vec<Entry> = (1..=20).map(|i| entry(i, 1 + i / 8, 30)).collect();
    wal.append(&written).unwrap();
    wal.sync().unwrap();
    wal.save_snapshot(SnapshotMeta { index: 10, term: 2 }, b"ten")
        .unwrap();
    wal.close().unwrap();
    let (mut wal, recovered) = open_ok(dir, &opts, "snapshot 10");
    assert_eq!(
        recovered.snapshot,
        Some(SnapshotMeta { index: 10, term: 2 })
    );
    assert_entries(&recovered.entries, &written[10..], "snapshot 10");
    assert_eq!(wal.next_index(), 21);
    wal.save_snapshot(SnapshotMeta { index: 20, term: 3 }, b"twenty")
        .unwrap();
    wal.close().unwrap();
    let (wal, recovered) = open_ok(dir, &opts, "snapshot 20");
    assert!(
        recovered.entries.is_empty(),
        "{:?}",
        ids(&recovered.entries)
    );
    assert_eq!(wal.next_index(), 21);
    assert_eq!(wal.last_term(), 3);
}

/// Row 13: a half-prepared segment, an unfinished snapshot's temp file and a stray temp file
/// are deleted at open; files the WAL does not know are left alone; the log is intact.
#[test]
fn row_13_leftover_temporary_files_are_deleted_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let opts = options(64 * KIB);
    let (mut wal, _) = open_ok(dir, &opts, "fresh");
    let written: Vec<Entry> = (1..=5).map(|i| entry(i, 1, 30)).collect();
    wal.append(&written).unwrap();
    wal.sync().unwrap();
    assert!(
        !wal.prepare_next_segment(4096).unwrap(),
        "only partly prepared"
    );
    let mut writer = wal
        .begin_snapshot(SnapshotMeta { index: 5, term: 1 })
        .unwrap();
    writer.write(b"half a snapshot").unwrap();
    drop(writer);
    drop(wal);
    let stray = "snap-00000000000000000003-00000000000000000001.tmp";
    fs::write(dir.join(stray), b"junk").unwrap();
    fs::write(dir.join("notes.txt"), b"mine").unwrap();
    let names = file_names(dir);
    assert!(names.contains(&"prepared.wal.tmp".to_owned()), "{names:?}");
    assert!(
        names.contains(&"snap-00000000000000000005-00000000000000000001.tmp".to_owned()),
        "{names:?}"
    );
    let (_wal, recovered) = open_ok(dir, &opts, "temporaries");
    assert_entries(&recovered.entries, &written, "temporaries");
    assert_eq!(recovered.snapshot, None);
    assert_eq!(
        file_names(dir),
        ["00000000000000000001.wal", "LOCK", "notes.txt"]
    );
}

/// Row 14: the newest snapshot failing its checks (a data bit, a header bit, a lost byte) makes
/// open fail with `Corrupt` naming it, even though an older good one exists; the files are left
/// alone. Damage to an older snapshot is not looked at.
#[test]
fn row_14_a_damaged_newest_snapshot_is_corrupt_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let opts = options(64 * KIB);
    let (mut wal, _) = open_ok(dir, &opts, "fresh");
    wal.append(&(1..=20).map(|i| entry(i, 1, 8)).collect::<Vec<_>>())
        .unwrap();
    wal.sync().unwrap();
    wal.save_snapshot(SnapshotMeta { index: 10, term: 1 }, &payload(10, 5000))
        .unwrap();
    wal.save_snapshot(SnapshotMeta { index: 20, term: 1 }, &payload(20, 5000))
        .unwrap();
    wal.close().unwrap();
    let pristine = dir_contents(dir);
    let newest = snap_path(dir, 20, 1);
    let len = fs::metadata(&newest).unwrap().len();

    let flip = |path: &Path, at: u64| {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let mut byte = [0u8];
        file.read_at(&mut byte, at).unwrap();
        file.write_all_at(&[byte[0] ^ 0x10], at).unwrap();
    };
    for at in [SNAPSHOT_HEADER as u64, 3000, len - 1] {
        restore(dir, &pristine);
        flip(&newest, at);
        expect_corrupt(
            dir,
            &opts,
            &newest,
            SNAPSHOT_HEADER as u64,
            &format!("data bit at {at}"),
        );
    }
    for at in [0, 13, 17, 33, 41] {
        restore(dir, &pristine);
        flip(&newest, at);
        let label = format!("header bit at {at}");
        match Wal::open(dir, opts.clone()) {
            Err(Error::Corrupt { path, .. }) => assert_eq!(path, newest, "{label}"),
            Err(other) => panic!("{label}: expected Corrupt, got {other}"),
            Ok(_) => panic!("{label}: expected Corrupt, open succeeded"),
        }
    }
    restore(dir, &pristine);
    OpenOptions::new()
        .write(true)
        .open(&newest)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    match Wal::open(dir, opts.clone()) {
        Err(Error::Corrupt { path, .. }) => assert_eq!(path, newest, "truncated"),
        Err(other) => panic!("truncated: expected Corrupt, got {other}"),
        Ok(_) => panic!("truncated: expected Corrupt, open succeeded"),
    }

    // Only the newest is checked at open: an older damaged one does not stop it.
    restore(dir, &pristine);
    flip(&snap_path(dir, 10, 1), 100);
    let (wal, recovered) = open_ok(dir, &opts, "older snapshot damaged");
    assert_eq!(
        recovered.snapshot,
        Some(SnapshotMeta { index: 20, term: 1 })
    );
    assert_eq!(wal.load_snapshot().unwrap().unwrap().1, payload(20, 5000));
}

// ---------------------------------------------------------------------------------------------
// Row 5: stale records; repair idempotence.
// ---------------------------------------------------------------------------------------------

/// Row 5: entries 1..=10 closed; reopened, `truncate_from(5)` and new 5..=7 in a new term, synced,
/// dropped. Every reopen gives exactly 1..=4 and the new 5..=7, never the old 8..=10. Then the old
/// records 8..=10 and the old close mark are copied, byte for byte, right behind the new end:
/// they were chained from another predecessor, so they are cut, and never come back.
#[test]
fn row_5_stale_records_behind_a_rewritten_tail_never_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let opts = options(64 * KIB);
    let (mut wal, _) = open_ok(dir, &opts, "fresh");
    let old: Vec<Entry> = (1..=10).map(|i| entry(i, 1, 40)).collect();
    wal.append(&old).unwrap();
    wal.sync().unwrap();
    wal.close().unwrap();
    let path = seg_path(dir, 1);
    let closed = fs::read(&path).unwrap();
    let closed_recs = records(&closed);
    let stale_recs: Vec<(u8, u64, u64)> = closed_recs
        .iter()
        .filter(|r| r.kind == 1 && r.index >= 8)
        .map(|r| (r.kind, r.index, r.term))
        .collect();
    assert_eq!(stale_recs, [(1, 8, 1), (1, 9, 1), (1, 10, 1)]);
    let old_8 = closed_recs
        .iter()
        .find(|r| r.kind == 1 && r.index == 8)
        .unwrap()
        .offset;
    let old_end = closed_recs.last().unwrap().end();
    let stale = closed[old_8..old_end].to_vec();

    let (mut wal, recovered) = open_ok(dir, &opts, "closed");
    assert_entries(&recovered.entries, &old, "closed");
    wal.truncate_from(5).unwrap();
    let new: Vec<Entry> = (5..=7)
        .map(|i| Entry {
            index: i,
            term: 2,
            data: payload(1000 + i, 60),
        })
        .collect();
    wal.append(&new).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let mut want = old[..4].to_vec();
    want.extend(new.iter().cloned());
    for restart in 0..3 {
        let label = format!("restart {restart}");
        let (_wal, recovered) = open_ok(dir, &opts, &label);
        assert_entries(&recovered.entries, &want, &label);
        assert_eq!(recovered.tail, Tail::Clean, "{label}");
    }

    let now = fs::read(&path).unwrap();
    let end = records(&now).last().unwrap().end();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all_at(&stale, end as u64)
        .unwrap();
    let (wal, recovered) = open_ok(dir, &opts, "stale injected");
    assert_entries(&recovered.entries, &want, "stale injected");
    assert_cut_at(&recovered.tail, &path, end as u64, "stale injected");
    drop(wal);
    for restart in 0..3 {
        let label = format!("after the cut, restart {restart}");
        let (_wal, recovered) = open_ok(dir, &opts, &label);
        assert_entries(&recovered.entries, &want, &label);
        assert_eq!(recovered.tail, Tail::Clean, "{label}");
    }
}

/// Repair idempotence (the paragraph under the table): after a torn tail is cut, the second and
/// third opens find the same entries and a clean tail, and change nothing. A crash part-way
/// through the repair (only some of the torn pages zeroed, in either order) leads to the same
/// decision: the same entries, cut at the same offset.
#[test]
fn rows_3_and_5_repair_is_idempotent_even_when_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let opts = options(64 * KIB);
    let (mut wal, _) = open_ok(dir, &opts, "fresh");
    let kept: Vec<Entry> = (1..=5).map(|i| entry(i, 1, 3000)).collect();
    wal.append(&kept).unwrap();
    wal.sync().unwrap();
    wal.append(&[entry(6, 1, 12_000)]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let path = seg_path(dir, 1);
    let pristine = dir_contents(dir);
    let bytes = &pristine["00000000000000000001.wal"];
    let last = *records(bytes).last().unwrap();
    assert_eq!((last.kind, last.index), (1, 6));
    let torn_from = last.offset + 100;
    let garbage = Rng::new(6).bytes(last.end() - torn_from);
    const PAGE: usize = 4096;
    let first_page_end = (last.offset / PAGE + 1) * PAGE;
    assert!(
        last.end() > first_page_end + 2 * PAGE,
        "the torn tail spans pages"
    );

    // Interrupted repairs: (a) none, (b) the break's page zeroed, the rest not, (c) the later
    // pages zeroed, the break's page not.
    for interrupted in ["none", "first page only", "later pages only"] {
        restore(dir, &pristine);
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&garbage, torn_from as u64).unwrap();
        match interrupted {
            "first page only" => file
                .write_all_at(&vec![0; first_page_end - last.offset], last.offset as u64)
                .unwrap(),
            "later pages only" => file
                .write_all_at(&vec![0; last.end() - first_page_end], first_page_end as u64)
                .unwrap(),
            _ => {}
        }
        let label = format!("interrupted repair: {interrupted}");
        let (wal, first) = open_ok(dir, &opts, &label);
        assert_entries(&first.entries, &kept, &label);
        assert_cut_at(&first.tail, &path, last.offset as u64, &label);
        drop(wal);
        let after_cut = dir_contents(dir);
        for again in 2..=3 {
            let label = format!("{label}, open {again}");
            let (wal, recovered) = open_ok(dir, &opts, &label);
            assert_entries(&recovered.entries, &kept, &label);
            assert_eq!(recovered.tail, Tail::Clean, "{label}");
            drop(wal);
            assert!(
                dir_contents(dir) == after_cut,
                "{label}: a clean open changed the files"
            );
        }
    }
}
