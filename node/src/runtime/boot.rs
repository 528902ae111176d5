//! The node's boot id: a number sealed into every datagram it sends, which must grow across its
//! restarts, so that the other members drop datagrams of an earlier boot (`balsa_net`'s replay
//! window: such a datagram may speak for a log this node no longer has).
//!
//! It is kept in the data directory's `BOOT` file (one decimal number and a newline), read and
//! replaced at each start under the WAL's lock: the new id is the larger of the recorded one
//! plus one and the wall clock in microseconds. The counter makes it grow when the clock steps
//! back; the clock makes it grow when the directory is new (a node wiped and started afresh
//! under its old id still comes back above its old boots).
//!
//! Written like `IDENTITY`: `BOOT.tmp`, fsynced, renamed over `BOOT`, the directory fsynced. A
//! damaged or missing file is not an error: the clock alone then decides (logged), which is
//! right unless the clock also stepped back past the last boot.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use super::error::{Error, StartError};

/// The boot file's name in a data directory.
pub const BOOT_FILE: &str = "BOOT";
const BOOT_TEMP: &str = "BOOT.tmp";
/// The most of the file that is read: a u64 in decimal and a newline fit in 21 bytes.
const MAX_BOOT_BYTES: u64 = 64;

/// Records and returns this start's boot id (see the module documentation).
///
/// # Errors
/// [`Error::Start`] ([`StartError::Io`], naming the file), if it cannot be written.
pub(crate) fn next_boot_id(dir: &Path) -> Result<u64, Error> {
    next_boot_id_at(dir, balsa_net::wall_clock_micros())
}

fn next_boot_id_at(dir: &Path, clock: u64) -> Result<u64, Error> {
    let path = dir.join(BOOT_FILE);
    let recorded = match read(&path) {
        Ok(recorded) => recorded,
        Err(reason) => {
            log::warn!(
                "{}: {reason}; the boot id comes from the clock alone",
                path.display()
            );
            None
        }
    };
    let boot_id = recorded.map_or(clock, |last| clock.max(last.saturating_add(1)));
    let temp = dir.join(BOOT_TEMP);
    let write = || -> io::Result<()> {
        let mut file = File::create(&temp)?;
        file.write_all(format!("{boot_id}\n").as_bytes())?;
        file.sync_all()?;
        fs::rename(&temp, &path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(StartError::io("writing", &path))?;
    Ok(boot_id)
}

/// The recorded boot id; `None` if there is no file.
fn read(path: &Path) -> Result<Option<u64>, String> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("cannot be read ({error})")),
    };
    let mut text = String::new();
    file.take(MAX_BOOT_BYTES)
        .read_to_string(&mut text)
        .map_err(|error| format!("cannot be read ({error})"))?;
    text.trim()
        .parse()
        .map(Some)
        .map_err(|_| "does not hold a boot id".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boot_id_grows_across_starts_even_when_the_clock_steps_back() {
        let dir = tempfile::tempdir().expect("a directory");
        assert_eq!(next_boot_id_at(dir.path(), 1_000).expect("written"), 1_000);
        assert_eq!(next_boot_id_at(dir.path(), 5_000).expect("written"), 5_000);
        assert_eq!(
            next_boot_id_at(dir.path(), 10).expect("written"),
            5_001,
            "the clock stepped back: the counter goes on"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join(BOOT_FILE)).expect("read"),
            "5001\n"
        );
    }

    #[test]
    fn a_damaged_boot_file_leaves_the_clock_to_decide() {
        let dir = tempfile::tempdir().expect("a directory");
        fs::write(dir.path().join(BOOT_FILE), "not a number").expect("written");
        assert_eq!(next_boot_id_at(dir.path(), 77).expect("written"), 77);
        fs::write(dir.path().join(BOOT_FILE), vec![b'9'; 10_000]).expect("written");
        assert_eq!(next_boot_id_at(dir.path(), 78).expect("written"), 78);
    }
}
