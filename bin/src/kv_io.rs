//! Bytes in and out of the key-value commands: keys written in hex (`--hex-key`), a value read
//! from standard input (`put KEY -`) or a file (`put KEY --value-file FILE`), a value written to
//! a file exactly (`get KEY --output FILE`) or printed in hex (`--hex`), and the lines a range
//! read prints.
//!
//! Rules: a value is read up to [`MAX_VALUE_SIZE`] bytes and one more, never further, so an
//! oversized input is refused by name ("exceeds the maximum value size") without being held in
//! memory; a file's size is checked before it is read when the file system knows it. Hex is two
//! digits a byte, either case in, lower case out.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use balsa::kv::{MAX_VALUE_SIZE, thousands};

/// Why a key or a value given could not be used (the command exits 2).
#[derive(Debug)]
pub struct InputError(pub String);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The bytes `text` names: its UTF-8 bytes, or with `hex` the bytes its hex digits spell.
/// `what` names it in an error ("KEY", "PREFIX").
pub fn key_bytes(what: &str, text: &str, hex: bool) -> Result<Vec<u8>, InputError> {
    if !hex {
        return Ok(text.as_bytes().to_vec());
    }
    decode_hex(text).map_err(|reason| InputError(format!("{what} {text:?} is not hex: {reason}")))
}

/// The value of `put`: `value` itself, or standard input for "-", or the file's contents.
pub fn value_bytes(value: Option<&str>, file: Option<&Path>) -> Result<Vec<u8>, InputError> {
    match (value, file) {
        (Some("-"), _) => read_bounded(io::stdin().lock(), "the value from standard input"),
        (Some(value), _) => Ok(value.as_bytes().to_vec()),
        (None, Some(path)) => {
            let what = format!("the value file {}", path.display());
            let file = File::open(path).map_err(|error| InputError(format!("{what}: {error}")))?;
            if let Ok(metadata) = file.metadata()
                && metadata.is_file()
                && metadata.len() > MAX_VALUE_SIZE as u64
            {
                return Err(too_large(&what, &thousands(metadata.len())));
            }
            read_bounded(file, &what)
        }
        // clap requires one of the two.
        (None, None) => Err(InputError("no value given".into())),
    }
}

/// Reads all of `input`, refusing it once it passes [`MAX_VALUE_SIZE`] bytes.
fn read_bounded(input: impl Read, what: &str) -> Result<Vec<u8>, InputError> {
    let mut bytes = Vec::new();
    input
        .take(MAX_VALUE_SIZE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| InputError(format!("reading {what}: {error}")))?;
    if bytes.len() > MAX_VALUE_SIZE {
        return Err(too_large(
            what,
            &format!("more than {}", thousands(MAX_VALUE_SIZE as u64)),
        ));
    }
    Ok(bytes)
}

fn too_large(what: &str, size: &str) -> InputError {
    InputError(format!(
        "{what} of {size} bytes exceeds the maximum value size of {} bytes",
        thousands(MAX_VALUE_SIZE as u64)
    ))
}

/// Writes `value` to `path` exactly (created or truncated).
pub fn write_value(path: &Path, value: &[u8]) -> Result<(), InputError> {
    std::fs::write(path, value)
        .map_err(|error| InputError(format!("writing {}: {error}", path.display())))
}

/// `bytes` as text: lower-case hex with `hex`, else UTF-8 (invalid sequences replaced).
pub fn show(bytes: &[u8], hex: bool) -> String {
    if hex {
        encode_hex(bytes)
    } else {
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// A range read's line for one pair: the key, a tab, the value.
pub fn pair_line(key: &[u8], value: &[u8], hex: bool) -> String {
    format!("{}\t{}", show(key, hex), show(value, hex))
}

/// Lower-case hex, two digits a byte.
pub fn encode_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// The bytes `text`'s hex digits spell (either case; an even count).
pub fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err(format!("{} digits, not an even count", text.len()));
    }
    let digit = |at: usize| {
        let c = text.as_bytes()[at];
        char::from(c)
            .to_digit(16)
            .ok_or_else(|| format!("{:?} at offset {at} is not a hex digit", char::from(c)))
    };
    (0..text.len())
        .step_by(2)
        .map(|at| {
            let (high, low) = (digit(at)?, digit(at + 1)?);
            // Two hex digits: at most 0xff.
            u8::try_from(high * 16 + low).map_err(|_| "not a byte".to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_every_byte_and_refuses_odd_or_foreign_digits() {
        let every: Vec<u8> = (0..=255).collect();
        assert_eq!(decode_hex(&encode_hex(&every)), Ok(every));
        assert_eq!(decode_hex("00FFaB"), Ok(vec![0, 0xff, 0xab]));
        assert!(decode_hex("abc").unwrap_err().contains("even"));
        assert!(decode_hex("zz").unwrap_err().contains("offset 0"));
        assert!(decode_hex("é0").is_err());
        assert_eq!(decode_hex(""), Ok(Vec::new()));
    }

    #[test]
    fn a_value_over_the_maximum_is_refused_by_name_without_reading_it_all() {
        let at_limit = vec![7_u8; MAX_VALUE_SIZE];
        assert_eq!(read_bounded(at_limit.as_slice(), "v").unwrap(), at_limit);
        // An endless input: refused after MAX_VALUE_SIZE + 1 bytes.
        let error = read_bounded(io::repeat(1), "the value from standard input").unwrap_err();
        let max = thousands(MAX_VALUE_SIZE as u64);
        assert_eq!(
            error.to_string(),
            format!(
                "the value from standard input of more than {max} bytes exceeds the maximum \
                 value size of {max} bytes"
            )
        );
    }

    #[test]
    fn a_value_file_over_the_maximum_is_refused_with_its_size() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("big");
        std::fs::write(&path, vec![0_u8; 70_000]).expect("write");
        let error = value_bytes(None, Some(&path)).unwrap_err().to_string();
        let max = thousands(MAX_VALUE_SIZE as u64);
        assert!(
            error.ends_with(&format!(
                "big of 70,000 bytes exceeds the maximum value size of {max} bytes"
            )),
            "{error}"
        );
        let missing = value_bytes(None, Some(&dir.path().join("none"))).unwrap_err();
        assert!(missing.to_string().contains("none"), "{missing}");
    }

    #[test]
    fn pairs_print_as_key_tab_value_in_text_or_hex() {
        assert_eq!(pair_line(b"k", b"v", false), "k\tv");
        assert_eq!(pair_line(b"k", b"\x00\xff", true), "6b\t00ff");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(65_536), "65,536");
    }
}
