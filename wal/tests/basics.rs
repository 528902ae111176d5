//! The WAL's life cycle across restarts: append, sync, reopen, truncate, roll, compact, snapshot.

use balsa_wal::{Entry, Error, HardState, Options, SnapshotMeta, Tail, Wal, WritePath};

/// The write paths every life-cycle test runs with. `Direct` needs a file system that takes
/// `O_DIRECT` (ext4, xfs, btrfs; tmpfs since Linux 6.6) for the temporary directory.
const WRITE_PATHS: [WritePath; 3] = [WritePath::Pwrite, WritePath::Direct, WritePath::Mmap];

fn small(write_path: WritePath) -> Options {
    Options {
        segment_bytes: 64 * 1024,
        write_path,
        ..Options::default()
    }
}

/// Opens `dir` with `options` and checks the write path asked for is the one in effect.
fn open(dir: &std::path::Path, options: Options) -> (Wal, balsa_wal::Recovered) {
    let asked = options.write_path;
    let (wal, recovered) = Wal::open(dir, options).unwrap();
    assert_eq!(
        wal.write_path(),
        asked,
        "the write path in effect (is O_DIRECT refused in {}?)",
        dir.display()
    );
    (wal, recovered)
}

fn entry(index: u64, term: u64, len: usize) -> Entry {
    Entry {
        index,
        term,
        data: vec![(index % 251) as u8; len],
    }
}

#[test]
fn synced_entries_and_hard_state_come_back_after_reopen() {
    WRITE_PATHS
        .into_iter()
        .for_each(synced_entries_and_hard_state_come_back_after_reopen_with);
}

fn synced_entries_and_hard_state_come_back_after_reopen_with(write_path: WritePath) {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, recovered) = open(dir.path(), small(write_path));
    assert!(recovered.entries.is_empty());
    assert_eq!(recovered.tail, Tail::Clean);
    wal.set_hard_state(HardState {
        term: 2,
        vote: 3,
        commit: 1,
    })
    .unwrap();
    let entries: Vec<Entry> = (1..=10).map(|i| entry(i, 2, 100)).collect();
    wal.append(&entries).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_wal, recovered) = open(dir.path(), small(write_path));
    assert_eq!(recovered.entries, entries);
    assert_eq!(
        recovered.hard_state,
        HardState {
            term: 2,
            vote: 3,
            commit: 1
        }
    );
    assert_eq!(recovered.tail, Tail::Clean);
}

#[test]
fn truncate_then_append_never_resurrects_the_cut_entries() {
    WRITE_PATHS
        .into_iter()
        .for_each(truncate_then_append_never_resurrects_the_cut_entries_with);
}

fn truncate_then_append_never_resurrects_the_cut_entries_with(write_path: WritePath) {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), small(write_path));
    wal.append(&(1..=5).map(|i| entry(i, 1, 10)).collect::<Vec<_>>())
        .unwrap();
    wal.sync().unwrap();
    wal.truncate_from(3).unwrap();
    wal.append(&[entry(3, 2, 7)]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    for _restart in 0..3 {
        let (wal, recovered) = open(dir.path(), small(write_path));
        let got: Vec<(u64, u64)> = recovered
            .entries
            .iter()
            .map(|e| (e.index, e.term))
            .collect();
        assert_eq!(got, vec![(1, 1), (2, 1), (3, 2)]);
        wal.close().unwrap();
    }
}

#[test]
fn rolls_across_segments_and_compacts_behind_a_snapshot() {
    WRITE_PATHS
        .into_iter()
        .for_each(rolls_across_segments_and_compacts_behind_a_snapshot_with);
}

fn rolls_across_segments_and_compacts_behind_a_snapshot_with(write_path: WritePath) {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), small(write_path));
    for index in 1..=400 {
        wal.append(&[entry(index, 1, 1000)]).unwrap();
        if index % 10 == 0 {
            wal.sync().unwrap();
        }
    }
    wal.sync().unwrap();
    assert!(
        wal.stats().rolls >= 5,
        "400 KB in 64 KiB segments rolls: {:?}",
        wal.stats()
    );
    assert!(matches!(
        wal.compact_to(300),
        Err(Error::NotCovered {
            index: 300,
            snapshot_index: 0
        })
    ));
    wal.save_snapshot(
        SnapshotMeta {
            index: 300,
            term: 1,
        },
        b"state at 300",
    )
    .unwrap();
    wal.compact_to(300).unwrap();
    let segments = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .ends_with(".wal")
        })
        .count();
    assert!(
        segments <= 3,
        "only segments holding entries above 300 remain, found {segments}"
    );
    drop(wal);
    let (wal, recovered) = open(dir.path(), small(write_path));
    assert_eq!(
        recovered.snapshot,
        Some(SnapshotMeta {
            index: 300,
            term: 1
        })
    );
    assert_eq!(recovered.entries.first().map(|e| e.index), Some(301));
    assert_eq!(recovered.entries.last().map(|e| e.index), Some(400));
    assert_eq!(wal.load_snapshot().unwrap().unwrap().1, b"state at 300");
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    WRITE_PATHS
        .into_iter()
        .for_each(a_second_open_of_the_same_directory_is_refused_with);
}

fn a_second_open_of_the_same_directory_is_refused_with(write_path: WritePath) {
    let dir = tempfile::tempdir().unwrap();
    let (_wal, _) = open(dir.path(), small(write_path));
    let second = Wal::open(dir.path(), small(write_path));
    assert!(
        matches!(second, Err(Error::Locked { .. })),
        "{:?}",
        second.err()
    );
}

#[test]
fn term_at_answers_for_held_entries_only() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), small(WritePath::Pwrite)).unwrap();
    let entries: Vec<Entry> = (1..=6)
        .map(|i| entry(i, if i <= 3 { 1 } else { 4 }, 10))
        .collect();
    wal.append(&entries).unwrap();
    assert_eq!(wal.term_at(0), None);
    assert_eq!(wal.term_at(1), Some(1));
    assert_eq!(wal.term_at(3), Some(1));
    assert_eq!(wal.term_at(4), Some(4));
    assert_eq!(wal.term_at(6), Some(4));
    assert_eq!(wal.term_at(7), None);
    wal.truncate_from(5).unwrap();
    assert_eq!(wal.term_at(5), None);
    assert_eq!(wal.term_at(4), Some(4));
}

/// A follower installing a snapshot beyond its log publishes the snapshot before it resets the
/// log; a crash between the two must reopen as "snapshot, then nothing", continuing after it.
#[test]
fn a_snapshot_beyond_the_log_end_reopens_continuing_after_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), small(WritePath::Pwrite)).unwrap();
    let entries: Vec<Entry> = (1..=50).map(|i| entry(i, 2, 20)).collect();
    wal.append(&entries).unwrap();
    wal.sync().unwrap();
    let meta = SnapshotMeta {
        index: 100,
        term: 3,
    };
    let mut writer = wal.begin_snapshot(meta).unwrap();
    writer.write(b"state of ").unwrap();
    writer.write(b"the machine").unwrap();
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(b"state of the machine");
    assert_eq!(writer.written(), (20, hasher.finalize()));
    wal.finish_snapshot(writer).unwrap();
    drop(wal); // the crash, before truncate_from(101)
    let (mut wal, recovered) = Wal::open(dir.path(), small(WritePath::Pwrite)).unwrap();
    assert!(
        recovered.entries.is_empty(),
        "entries the snapshot covers stay out"
    );
    assert_eq!(recovered.snapshot, Some(meta));
    assert_eq!(wal.next_index(), 101);
    wal.append(&[entry(101, 3, 10)]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_, recovered) = Wal::open(dir.path(), small(WritePath::Pwrite)).unwrap();
    assert_eq!(recovered.entries, vec![entry(101, 3, 10)]);
}

#[test]
fn direct_falls_back_to_pwrite_where_it_cannot_write_whole_blocks() {
    // A segment size that is not a multiple of the 4 KiB block: the last block would run past
    // the file, so the log writes with Pwrite and says so.
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        segment_bytes: 64 * 1024 + 100,
        write_path: WritePath::Direct,
        ..Options::default()
    };
    let (mut wal, _) = Wal::open(dir.path(), options.clone()).unwrap();
    assert_eq!(wal.write_path(), WritePath::Pwrite);
    let entries: Vec<Entry> = (1..=200).map(|i| entry(i, 1, 700)).collect();
    for chunk in entries.chunks(7) {
        wal.append(chunk).unwrap();
        wal.sync().unwrap();
    }
    assert!(wal.stats().rolls >= 1, "{:?}", wal.stats());
    assert_eq!(wal.write_path(), WritePath::Pwrite);
    wal.close().unwrap();
    let (_wal, recovered) = Wal::open(dir.path(), options).unwrap();
    assert_eq!(recovered.entries, entries);
}

#[test]
fn a_log_written_with_one_path_is_read_and_continued_with_any_other() {
    // The on-disk format does not depend on the write path: Direct's whole-block writes leave
    // the same bytes as a pwrite of the records alone.
    let dir = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    let mut index = 1;
    for (round, write_path) in [WritePath::Direct, WritePath::Pwrite, WritePath::Direct]
        .into_iter()
        .chain(WRITE_PATHS)
        .chain([WritePath::Direct])
        .enumerate()
    {
        let (mut wal, recovered) = open(dir.path(), small(write_path));
        assert_eq!(recovered.entries, expected, "round {round}, {write_path:?}");
        for _ in 0..9 {
            // Sizes around the block: records straddle block boundaries in every way.
            let len = 1 + usize::try_from(index * 997 % 5000).unwrap();
            let e = entry(index, 1, len);
            wal.append(std::slice::from_ref(&e)).unwrap();
            expected.push(e);
            index += 1;
            if index % 3 == 0 {
                wal.sync().unwrap();
            }
        }
        wal.sync().unwrap();
        if round % 2 == 0 {
            wal.close().unwrap();
        }
    }
}

#[test]
fn a_direct_flush_puts_the_records_in_the_file_and_they_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), small(WritePath::Direct));
    wal.append(&[entry(1, 1, 10)]).unwrap();
    wal.flush().unwrap();
    let path = dir.path().join("00000000000000000001.wal");
    let bytes = std::fs::read(&path).unwrap();
    // Header, hard state, mark, then the entry's 10 bytes of 1 at the end of its record.
    let entry_end = 32 + 33 + 29 + 25 + 10;
    assert_eq!(bytes[entry_end - 10..entry_end], [1; 10]);
    assert!(bytes[entry_end..].iter().all(|&b| b == 0));
    wal.sync().unwrap();
    drop(wal);
    let (_wal, recovered) = open(dir.path(), small(WritePath::Direct));
    assert_eq!(recovered.entries, [entry(1, 1, 10)]);
}
