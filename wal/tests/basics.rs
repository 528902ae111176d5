//! The WAL's life cycle across restarts: append, sync, reopen, truncate, roll, compact, snapshot.

use balsa_wal::{Entry, Error, HardState, Options, SnapshotMeta, Tail, Wal};

fn small() -> Options {
    Options {
        segment_bytes: 64 * 1024,
        ..Options::default()
    }
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
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, recovered) = Wal::open(dir.path(), small()).unwrap();
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
    let (_wal, recovered) = Wal::open(dir.path(), small()).unwrap();
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
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), small()).unwrap();
    wal.append(&(1..=5).map(|i| entry(i, 1, 10)).collect::<Vec<_>>())
        .unwrap();
    wal.sync().unwrap();
    wal.truncate_from(3).unwrap();
    wal.append(&[entry(3, 2, 7)]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    for _restart in 0..3 {
        let (wal, recovered) = Wal::open(dir.path(), small()).unwrap();
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
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), small()).unwrap();
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
    let (wal, recovered) = Wal::open(dir.path(), small()).unwrap();
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
    let dir = tempfile::tempdir().unwrap();
    let (_wal, _) = Wal::open(dir.path(), small()).unwrap();
    let second = Wal::open(dir.path(), small());
    assert!(
        matches!(second, Err(Error::Locked { .. })),
        "{:?}",
        second.err()
    );
}

#[test]
fn term_at_answers_for_held_entries_only() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), small()).unwrap();
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
    let (mut wal, _) = Wal::open(dir.path(), small()).unwrap();
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
    let (mut wal, recovered) = Wal::open(dir.path(), small()).unwrap();
    assert!(
        recovered.entries.is_empty(),
        "entries the snapshot covers stay out"
    );
    assert_eq!(recovered.snapshot, Some(meta));
    assert_eq!(wal.next_index(), 101);
    wal.append(&[entry(101, 3, 10)]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_, recovered) = Wal::open(dir.path(), small()).unwrap();
    assert_eq!(recovered.entries, vec![entry(101, 3, 10)]);
}
