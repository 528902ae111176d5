//! `balsa serve --config FILE.toml` and `balsa serve --print-config`: `serve`'s flags kept in a
//! TOML file, and the configuration in effect written out as one.
//!
//! What it owns: the file's keys and their types, read from clap's definition of `serve` (the
//! `clap::Command` that `ServeArgs` derives) and never listed here, so that a flag added to
//! `ServeArgs` is a key of the file, with its type, without a line changed here; turning the
//! file into the flags it stands for; printing the configuration in effect.
//!
//! Rules it keeps:
//! - A key is a flag's long name (`data-dir`, `peer-key-file`); `config` and `print-config`
//!   are for the command line only. The key's TOML type follows the flag: a flag without a
//!   value (`--join`) takes `true` or `false`; a flag whose value parser makes an integer takes
//!   an integer (or, past what TOML's 64-bit integers hold, a string of its digits); a list
//!   (a flag that splits its value on a delimiter, or whose value name shows a comma:
//!   `ID=IP:PORT,...`) or a flag given once per value takes an array; any other flag a string.
//! - Precedence: the command line, then the environment variables clap reads (`BALSA_*`), then
//!   the file, then the defaults. The file's settings become the flags they stand for, put
//!   after the command line for every key that neither the command line nor the environment
//!   sets, so that clap checks the whole once, as if typed: value parsers, required flags,
//!   flags that need or exclude others.
//! - Every refusal is one line that names the file, and the line (and column) where the file
//!   has what is refused: a file that cannot be read, is not UTF-8, is over [`MAX_FILE_BYTES`]
//!   or is not TOML; an unknown key (with the closest flag name, if one is close); a value of
//!   the wrong type (with the type expected); a value the flag refuses (with its reason).
//!   `args::parse` prints it; exit 2.
//! - `--print-config` ([`effective`]) prints every key in the order of `serve`'s flags, each
//!   under its help text, an unset one as a comment; given back with `--config`, it makes the
//!   same configuration and prints the same text. The value of a flag that hides its
//!   environment value (clap's `hide_env_values`, the mark of a secret) is never printed.
//! - README's example file (section "Operating") has every key, each at its default but what a
//!   node must be given: a test reads it against `serve`'s flags.

use std::any::TypeId;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory as _};
use toml::{Spanned, Value};

use crate::args::Cli;

/// The largest configuration file read: a configuration is a few hundred bytes.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// `serve`'s flags that are not settings: they say what to do with the file.
/// `parent-pid` names a process of the moment, which no file can know.
const COMMAND_LINE_ONLY: [&str; 3] = ["config", "print-config", "parent-pid"];

/// The first lines of `--print-config`.
const HEADER: &str = "\
# The configuration of `balsa serve`: its command line, then its BALSA_* environment variables,
# then its --config file, then the defaults. `balsa serve --config FILE` reads it back.
";

/// How a flag's value is written in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A flag without a value: `true` or `false`; the flag is given when the setting is
    /// `given` (`true` for `--join`).
    Switch { given: bool },
    /// A flag counted by repetition: a small whole number.
    Count,
    /// A flag whose value is a boolean: `true` or `false`.
    Boolean,
    /// A flag whose value is an integer.
    Integer,
    /// A flag whose value is any other single thing: a string.
    Text,
    /// A flag whose one value lists several, split on `separator`: an array of strings.
    List { separator: char },
    /// A flag given once per value: an array (of integers if `integer`, else of strings).
    Repeated { integer: bool },
}

/// One setting of the file: a flag of `serve`, its key and how its value is written.
struct Setting<'a> {
    key: &'a str,
    arg: &'a Arg,
    kind: Kind,
}

/// What a file set, for a refusal of the whole command line to point at.
#[derive(Debug)]
pub struct Applied {
    /// The file.
    pub file: PathBuf,
    /// The keys it set that the command line and the environment did not, in the file's order.
    pub keys: Vec<String>,
}

impl Applied {
    /// ` (settings from FILE: KEY, ...)`, or nothing when the file set nothing.
    pub fn note(&self) -> String {
        if self.keys.is_empty() {
            return String::new();
        }
        format!(
            " (settings from {}: {})",
            self.file.display(),
            self.keys.join(", ")
        )
    }
}

/// `serve`'s definition, as the command line parses it.
fn serve_definition() -> Command {
    Cli::command()
        .find_subcommand("serve")
        .cloned()
        .expect("`serve` is a subcommand of `Cli`")
}

/// `serve`'s definition, built: every flag's action and value parser are settled.
fn built(serve: &Command) -> Command {
    let mut serve = serve.clone();
    serve.build();
    serve
}

/// The settings of `serve` (built), in the order of its flags.
fn settings(serve: &Command) -> Vec<Setting<'_>> {
    serve
        .get_arguments()
        .filter_map(|arg| {
            let key = arg.get_long()?;
            if COMMAND_LINE_ONLY.contains(&key) {
                return None;
            }
            Some(Setting {
                key,
                arg,
                kind: kind_of(arg)?,
            })
        })
        .collect()
}

/// How `arg`'s value is written, from its action and value parser; `None` for a flag that
/// sets nothing (`--help`).
fn kind_of(arg: &Arg) -> Option<Kind> {
    let parser = arg.get_value_parser().type_id();
    let integer = integer_types().iter().any(|integer| parser == *integer);
    match arg.get_action() {
        ArgAction::SetTrue => Some(Kind::Switch { given: true }),
        ArgAction::SetFalse => Some(Kind::Switch { given: false }),
        ArgAction::Count => Some(Kind::Count),
        ArgAction::Append => Some(Kind::Repeated { integer }),
        ArgAction::Set if parser == TypeId::of::<bool>() => Some(Kind::Boolean),
        ArgAction::Set if integer => Some(Kind::Integer),
        ArgAction::Set => Some(match list_separator(arg) {
            Some(separator) => Kind::List { separator },
            None => Kind::Text,
        }),
        _ => None,
    }
}

/// The value types clap's integer parsers make.
fn integer_types() -> [TypeId; 12] {
    [
        TypeId::of::<u8>(),
        TypeId::of::<u16>(),
        TypeId::of::<u32>(),
        TypeId::of::<u64>(),
        TypeId::of::<u128>(),
        TypeId::of::<usize>(),
        TypeId::of::<i8>(),
        TypeId::of::<i16>(),
        TypeId::of::<i32>(),
        TypeId::of::<i64>(),
        TypeId::of::<i128>(),
        TypeId::of::<isize>(),
    ]
}

/// What a list flag's value is split on: its value delimiter, or a comma when its value name
/// shows one (`ID=IP:PORT,...`, `A,B,C`: the flag's parser splits the value itself).
fn list_separator(arg: &Arg) -> Option<char> {
    arg.get_value_delimiter().or_else(|| {
        arg.get_value_names()
            .and_then(|names| names.first())
            .is_some_and(|name| name.contains(','))
            .then_some(',')
    })
}

/// The command line `args` (the program's name first) with the settings of `serve --config
/// FILE` appended as the flags they stand for, each one that neither the command line nor
/// the environment sets; and what the file set. Without `serve --config`, or when the command
/// line cannot be read (clap then says why, without the file), `args` unchanged.
///
/// # Errors
/// One line (without the command's name) saying what in the file is refused, and where.
pub fn with_file(args: Vec<OsString>) -> Result<(Vec<OsString>, Option<Applied>), String> {
    // A first reading that stops at nothing, for `--config` and the flags set already.
    let Ok(matches) = Cli::command()
        .ignore_errors(true)
        .try_get_matches_from(&args)
    else {
        return Ok((args, None));
    };
    let Some(("serve", given)) = matches.subcommand() else {
        return Ok((args, None));
    };
    let Some(file) = given.try_get_one::<PathBuf>("config").ok().flatten() else {
        return Ok((args, None));
    };
    let text = read_file(file)?;
    let set_already = |id: &str| {
        matches!(
            given.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    let (flags, keys) = flags_of_file(&serve_definition(), file, &text, set_already)?;
    let mut args = args;
    args.extend(flags);
    let applied = Applied {
        file: file.clone(),
        keys,
    };
    Ok((args, Some(applied)))
}

/// The configuration file `path`, read whole if it holds at most [`MAX_FILE_BYTES`].
fn read_file(path: &Path) -> Result<String, String> {
    let name = path.display();
    let cannot = |error: std::io::Error| format!("cannot read {name}: {error}");
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "{name} is over {} KiB, the most a configuration file may be",
            MAX_FILE_BYTES >> 10
        ));
    }
    String::from_utf8(bytes).map_err(|error| {
        let valid = &error.as_bytes()[..error.utf8_error().valid_up_to()];
        // The valid part is UTF-8 by definition; the position is counted in it.
        let text = String::from_utf8_lossy(valid);
        format!("{}: not UTF-8 text", place(path, &text, valid.len(), true))
    })
}

/// `FILE, line L, column C` (or without the column) of byte `offset` in `text`.
fn place(file: &Path, text: &str, offset: usize, column: bool) -> String {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let name = file.display();
    if column {
        let start = before.rfind('\n').map_or(0, |newline| newline + 1);
        let column = before[start..].chars().count() + 1;
        format!("{name}, line {line}, column {column}")
    } else {
        format!("{name}, line {line}")
    }
}

/// The flags the settings of `text` (the file `file`) stand for, for `serve` (its unbuilt
/// definition), leaving out those `set_already` (by the flag's id); and the keys they come from.
fn flags_of_file(
    serve: &Command,
    file: &Path,
    text: &str,
    set_already: impl Fn(&str) -> bool,
) -> Result<(Vec<OsString>, Vec<String>), String> {
    let entries: BTreeMap<String, Spanned<Value>> = toml::from_str(text).map_err(|error| {
        let at = match error.span() {
            Some(span) => place(file, text, span.start, true),
            None => file.display().to_string(),
        };
        let message: Vec<&str> = error.message().lines().map(str::trim).collect();
        format!("{at}: not TOML: {}", message.join(" "))
    })?;
    let mut entries: Vec<(String, Spanned<Value>)> = entries.into_iter().collect();
    entries.sort_by_key(|(_, value)| value.span().start);
    let definition = built(serve);
    let settings = settings(&definition);
    let mut flags = Vec::new();
    let mut keys = Vec::new();
    for (key, value) in &entries {
        let line = || place(file, text, value.span().start, false);
        let Some(setting) = settings.iter().find(|setting| setting.key == key) else {
            if COMMAND_LINE_ONLY.contains(&key.as_str()) {
                return Err(format!(
                    "{}: {key} is for the command line only, not a setting",
                    line()
                ));
            }
            let close = closest(key, settings.iter().map(|setting| setting.key))
                .map(|close| format!(" (did you mean {close}?)"))
                .unwrap_or_default();
            return Err(format!(
                "{}: unknown key {key:?}{close}; the keys are serve's flags (`balsa serve \
                 --help`)",
                line()
            ));
        };
        let at = || place(file, text, value.span().start, true);
        let these = flags_of_setting(setting, value.get_ref())
            .map_err(|expected| format!("{}: {key}: {expected}", at()))?;
        check_values(serve, &these)
            .map_err(|reason| format!("{}: {key} = {}: {reason}", at(), value.get_ref()))?;
        if !set_already(setting.arg.get_id().as_str()) {
            flags.extend(these);
            keys.push(key.clone());
        }
    }
    Ok((flags, keys))
}

/// The flags that give `setting` the file's `value` (none for a switch left as it is when not
/// given), or (`Err`) what the setting expected instead.
fn flags_of_setting(setting: &Setting<'_>, value: &Value) -> Result<Vec<OsString>, String> {
    let flag = format!("--{}", setting.key);
    let with = |text: &str| OsString::from(format!("{flag}={text}"));
    let expected = |what: String| {
        format!(
            "expected {what}, found {} {}",
            article(value.type_str()),
            value.type_str()
        )
    };
    let value_name = setting
        .arg
        .get_value_names()
        .and_then(|names| names.first())
        .map(|name| format!(" ({name})"))
        .unwrap_or_default();
    match setting.kind {
        Kind::Switch { given } => match value {
            Value::Boolean(on) if *on == given => Ok(vec![OsString::from(flag)]),
            Value::Boolean(_) => Ok(Vec::new()),
            _ => Err(expected("true or false".into())),
        },
        Kind::Boolean => match value {
            Value::Boolean(on) => Ok(vec![with(&on.to_string())]),
            _ => Err(expected("true or false".into())),
        },
        Kind::Count => match value {
            Value::Integer(count) if (0..=i64::from(u8::MAX)).contains(count) => {
                Ok((0..*count).map(|_| OsString::from(&flag)).collect())
            }
            _ => Err(expected(format!("a whole number up to {}", u8::MAX))),
        },
        Kind::Integer => integer_text(value)
            .map(|text| vec![with(&text)])
            .ok_or_else(|| expected(format!("an integer{value_name}"))),
        Kind::Text => match value {
            Value::String(text) => Ok(vec![with(text)]),
            _ => Err(expected(format!("a string{value_name}"))),
        },
        Kind::List { separator } => {
            let items = match value {
                Value::Array(items) => items
                    .iter()
                    .map(|item| item.as_str().map(str::to_owned))
                    .collect::<Option<Vec<String>>>(),
                _ => None,
            };
            items
                .map(|items| vec![with(&items.join(&separator.to_string()))])
                .ok_or_else(|| expected(format!("an array of strings{value_name}")))
        }
        Kind::Repeated { integer } => {
            let item_text = |item: &Value| {
                if integer {
                    integer_text(item)
                } else {
                    item.as_str().map(str::to_owned)
                }
            };
            let items = match value {
                Value::Array(items) => items.iter().map(item_text).collect::<Option<Vec<_>>>(),
                _ => None,
            };
            let what = if integer { "integers" } else { "strings" };
            items
                .map(|items| items.iter().map(|item| with(item)).collect())
                .ok_or_else(|| expected(format!("an array of {what}{value_name}")))
        }
    }
}

/// An integer setting's text: a TOML integer, or a string of decimal digits (for a number
/// past TOML's 64-bit integers).
fn integer_text(value: &Value) -> Option<String> {
    match value {
        Value::Integer(integer) => Some(integer.to_string()),
        Value::String(digits)
            if !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit()) =>
        {
            Some(digits.clone())
        }
        _ => None,
    }
}

fn article(type_name: &str) -> &'static str {
    if type_name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// Whether `serve` (unbuilt) takes `flags` (one setting's) as values: `Err` with the flag's
/// reason when it does not. Only the values are checked here (no flag is required, none read
/// from the environment); what the whole needs is clap's to check once it is put together.
fn check_values(serve: &Command, flags: &[OsString]) -> Result<(), String> {
    let words = std::iter::once(OsString::from("serve")).chain(flags.iter().cloned());
    match values_only(serve).try_get_matches_from(words) {
        Ok(_) => Ok(()),
        Err(error)
            if matches!(
                error.kind(),
                ErrorKind::MissingRequiredArgument | ErrorKind::ArgumentConflict
            ) =>
        {
            Ok(())
        }
        Err(error) => Err(match std::error::Error::source(&error) {
            // The value parser's own reason.
            Some(reason) => reason.to_string(),
            None => {
                let rendered = error.render().to_string();
                let first = rendered.split("\n\n").next().unwrap_or_default();
                let words: Vec<&str> = first.split_whitespace().collect();
                let line = words.join(" ");
                line.strip_prefix("error: ").unwrap_or(&line).to_owned()
            }
        }),
    }
}

/// `serve` (unbuilt) for [`check_values`]: no flag required, none read from the environment.
fn values_only(serve: &Command) -> Command {
    serve
        .clone()
        .mut_args(|arg| arg.required(false).env(None::<&'static str>))
}

/// The key of `keys` closest to the unknown `key`, if one is close: the same but for
/// underscores or case, a few letters apart, or one that starts with it.
fn closest<'a>(key: &str, keys: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let wanted = key.replace('_', "-").to_lowercase();
    keys.filter_map(|candidate| {
        let distance = edit_distance(&wanted, candidate);
        let near = distance <= (candidate.len() / 3).max(2)
            || (wanted.len() >= 3 && candidate.starts_with(&wanted));
        near.then_some((distance, candidate))
    })
    .min_by_key(|(distance, _)| *distance)
    .map(|(_, candidate)| candidate)
}

/// Levenshtein's distance between `a` and `b`, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, a_char) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, b_char) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(a_char != *b_char);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// `--print-config`: the configuration `matches` (serve's, as parsed) holds, as TOML that
/// `--config` reads back.
pub fn effective(matches: &ArgMatches) -> String {
    render(&built(&serve_definition()), matches)
}

/// [`effective`] for `serve` (built).
fn render(serve: &Command, matches: &ArgMatches) -> String {
    let mut out = String::from(HEADER);
    for setting in settings(serve) {
        out.push('\n');
        let help = setting
            .arg
            .get_long_help()
            .or(setting.arg.get_help())
            .map(ToString::to_string)
            .unwrap_or_default();
        for line in wrap(&help, 98) {
            let _ = writeln!(out, "# {line}");
        }
        let key = setting.key;
        if setting.arg.is_hide_env_values_set() {
            let _ = writeln!(out, "# {key}: secret, not printed");
            continue;
        }
        let _ = match value_of(matches, &setting) {
            Some(value) => writeln!(out, "{key} = {value}"),
            None => writeln!(out, "# {key} is not set"),
        };
    }
    out
}

/// `setting`'s value in `matches`, as TOML; `None` when it has none (an optional flag unset).
fn value_of(matches: &ArgMatches, setting: &Setting<'_>) -> Option<Value> {
    let id = setting.arg.get_id().as_str();
    let raw = || -> Option<Vec<String>> {
        let values = matches.get_raw(id)?;
        Some(
            values
                .map(|value| value.to_string_lossy().into_owned())
                .collect(),
        )
    };
    let integer = |text: &str| match text.parse::<i64>() {
        Ok(integer) => Value::Integer(integer),
        // Past TOML's integers: the digits, which the file takes back as a string.
        Err(_) => Value::String(text.trim_start_matches('+').to_owned()),
    };
    match setting.kind {
        Kind::Switch { .. } | Kind::Boolean => matches
            .try_get_one::<bool>(id)
            .ok()
            .flatten()
            .map(|on| Value::Boolean(*on)),
        Kind::Count => matches
            .try_get_one::<u8>(id)
            .ok()
            .flatten()
            .map(|count| Value::Integer(i64::from(*count))),
        Kind::Integer => raw()?.first().map(|text| integer(text)),
        Kind::Text => raw()?.first().map(|text| Value::String(text.clone())),
        Kind::List { separator } => Some(Value::Array(
            raw()?
                .iter()
                .flat_map(|value| value.split(separator))
                .map(|item| Value::String(item.to_owned()))
                .collect(),
        )),
        Kind::Repeated { integer: whole } => Some(Value::Array(
            raw()?
                .iter()
                .map(|text| {
                    if whole {
                        integer(text)
                    } else {
                        Value::String(text.clone())
                    }
                })
                .collect(),
        )),
    }
}

/// `text`'s words in lines of at most `width` characters (a longer word alone on its line).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use clap::{Arg, ArgAction, value_parser};

    use super::*;

    fn kinds(serve: &Command) -> Vec<(String, Kind)> {
        settings(serve)
            .iter()
            .map(|setting| (setting.key.to_owned(), setting.kind))
            .collect()
    }

    fn kind(serve: &Command, key: &str) -> Option<Kind> {
        kinds(serve)
            .into_iter()
            .find(|(found, _)| found == key)
            .map(|(_, kind)| kind)
    }

    #[test]
    fn every_serve_flag_is_a_key_of_its_type_but_the_files_own() {
        let serve = built(&serve_definition());
        let integer = Some(Kind::Integer);
        let text = Some(Kind::Text);
        let switch = Some(Kind::Switch { given: true });
        for (key, expected) in [
            ("id", integer),
            ("cluster", Some(Kind::List { separator: ',' })),
            ("data-dir", text),
            ("listen", text),
            ("tick-ms", integer),
            ("election-ticks", text),
            ("heartbeat-ticks", integer),
            ("unsafe-no-fsync", switch),
            ("snapshot-entries", integer),
            ("snapshot-bytes", integer),
            ("snapshot-expansion", integer),
            ("snapshot-trailing", integer),
            ("segment-bytes", integer),
            ("rejoin", switch),
            ("cluster-token", text),
            ("join", switch),
            ("join-timeout-ms", integer),
            ("wal-direct", switch),
            ("peer-key-file", text),
            ("client-key-file", text),
            ("previous-peer-key-file", text),
            ("previous-client-key-file", text),
            ("insecure", switch),
        ] {
            assert_eq!(kind(&serve, key), expected, "{key}");
        }
        for not_a_key in ["config", "print-config", "parent-pid", "help"] {
            assert_eq!(kind(&serve, not_a_key), None, "{not_a_key}");
        }
        // Every flag of serve with a long name is one or the other.
        let flags = serve.get_arguments().filter(|arg| arg.get_long().is_some());
        assert_eq!(flags.count(), kinds(&serve).len() + 4);
    }

    #[test]
    fn the_commands_checked_here_are_well_formed() {
        values_only(&serve_definition()).debug_assert();
        later_serve().debug_assert();
        values_only(&later_serve()).debug_assert();
    }

    /// A `serve` of a later version: a flag this module never heard of, of each kind.
    fn later_serve() -> Command {
        serve_definition()
            .arg(
                Arg::new("metrics_addr")
                    .long("metrics-addr")
                    .value_name("IP:PORT")
                    .value_parser(value_parser!(SocketAddr)),
            )
            .arg(
                Arg::new("tags")
                    .long("tag")
                    .action(ArgAction::Append)
                    .value_name("TAG"),
            )
            .arg(Arg::new("quiet").long("quiet").action(ArgAction::SetTrue))
            .arg(
                Arg::new("max_clients")
                    .long("max-clients")
                    .value_parser(value_parser!(u32)),
            )
    }

    fn flags(serve: &Command, text: &str) -> Result<Vec<String>, String> {
        flags_of_file(serve, Path::new("a.toml"), text, |_| false).map(|(flags, _)| {
            flags
                .into_iter()
                .map(|flag| flag.to_string_lossy().into_owned())
                .collect()
        })
    }

    #[test]
    fn a_flag_added_later_is_a_key_of_its_type_without_a_change_here() {
        let serve = later_serve();
        assert_eq!(
            flags(
                &serve,
                "metrics-addr = \"127.0.0.1:9100\"\ntag = [\"a\", \"b\"]\nquiet = true\n\
                 max-clients = 9"
            ),
            Ok(vec![
                "--metrics-addr=127.0.0.1:9100".to_owned(),
                "--tag=a".to_owned(),
                "--tag=b".to_owned(),
                "--quiet".to_owned(),
                "--max-clients=9".to_owned(),
            ])
        );
        let refused = flags(&serve, "metrics-addr = \"nowhere\"").expect_err("not an address");
        assert!(
            refused.starts_with("a.toml, line 1, column 16: metrics-addr = \"nowhere\": "),
            "{refused}"
        );
        let refused = flags(&serve, "max-clients = true").expect_err("not an integer");
        assert!(
            refused.ends_with("max-clients: expected an integer, found a boolean"),
            "{refused}"
        );
        let refused = flags(&serve, "max-clients = -1").expect_err("out of range");
        assert!(refused.contains("max-clients = -1: "), "{refused}");
        let refused = flags(&serve, "metrics_addr = \"x\"").expect_err("unknown");
        assert!(
            refused.contains("(did you mean metrics-addr?)"),
            "{refused}"
        );
    }

    #[test]
    fn settings_become_flags_in_the_files_order_and_those_set_already_are_left_out() {
        let text = "tick-ms = 5\ncluster = [\"1=127.0.0.1:7001\", \"2=127.0.0.1:7002\"]\n\
                    unsafe-no-fsync = true\nwal-direct = false\nid = 3\ncluster-token = \"\"\n\
                    election-ticks = \"20-40\"\ndata-dir = \"d\"\n";
        let (flags, keys) = flags_of_file(&serve_definition(), Path::new("f"), text, |id| {
            id == "id" || id == "data_dir"
        })
        .expect("a good file");
        let flags: Vec<String> = flags
            .iter()
            .map(|flag| flag.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            flags,
            [
                "--tick-ms=5",
                "--cluster=1=127.0.0.1:7001,2=127.0.0.1:7002",
                "--unsafe-no-fsync",
                "--cluster-token=",
                "--election-ticks=20-40",
            ]
        );
        assert_eq!(
            keys,
            [
                "tick-ms",
                "cluster",
                "unsafe-no-fsync",
                "wal-direct",
                "cluster-token",
                "election-ticks"
            ]
        );
    }

    #[test]
    fn wrong_types_name_the_key_the_place_and_what_was_expected() {
        let serve = serve_definition();
        for (text, expected) in [
            (
                "tick-ms = \"fast\"",
                "a.toml, line 1, column 11: tick-ms: expected an integer (MS), found a string",
            ),
            (
                "\n\njoin = \"yes\"",
                "a.toml, line 3, column 8: join: expected true or false, found a string",
            ),
            (
                "cluster = \"1=127.0.0.1:7001\"",
                "cluster: expected an array of strings (ID=IP:PORT,...), found a string",
            ),
            ("cluster = [1, 2]", "cluster: expected an array of strings"),
            (
                "data-dir = 7",
                "data-dir: expected a string (DIR), found an integer",
            ),
            ("id = 1.5", "id: expected an integer (ID), found a float"),
            ("[id]\nx = 1", "id: expected an integer (ID), found a table"),
        ] {
            let refused = flags(&serve, text).expect_err(text);
            assert!(refused.contains(expected), "{text:?}: {refused}");
        }
    }

    #[test]
    fn values_the_flag_refuses_give_its_reason() {
        let serve = serve_definition();
        for (text, expected) in [
            (
                "listen = \"7001\"",
                "listen = \"7001\": \"7001\" is not an address",
            ),
            (
                "election-ticks = \"30\"",
                "election-ticks = \"30\": \"30\" is not MIN-MAX",
            ),
            ("tick-ms = -3", "tick-ms = -3: "),
            (
                "cluster = [\"1=127.0.0.1:1\", \"x\"]",
                "\"x\" is not ID=IP:PORT",
            ),
            ("data-dir = \"\"", "data-dir = \"\": "),
        ] {
            let refused = flags(&serve, text).expect_err(text);
            assert!(refused.contains(expected), "{text:?}: {refused}");
        }
        // A big integer TOML cannot hold is a string of digits.
        assert_eq!(
            flags(&serve, "snapshot-bytes = \"18446744073709551615\""),
            Ok(vec!["--snapshot-bytes=18446744073709551615".to_owned()])
        );
    }

    #[test]
    fn unknown_keys_are_refused_with_the_closest_flag() {
        let serve = serve_definition();
        for (text, expected) in [
            (
                "\ndata_dir = \"d\"",
                "a.toml, line 2: unknown key \"data_dir\" (did you mean data-dir?)",
            ),
            (
                "tick-m = 5",
                "unknown key \"tick-m\" (did you mean tick-ms?)",
            ),
            (
                "peer-key = \"p\"",
                "unknown key \"peer-key\" (did you mean peer-key-file?)",
            ),
            ("Insecure = true", "(did you mean insecure?)"),
        ] {
            let refused = flags(&serve, text).expect_err(text);
            assert!(refused.starts_with("a.toml, line "), "{refused}");
            assert!(refused.contains(expected), "{text:?}: {refused}");
        }
        let refused = flags(&serve, "frobnicate = 1").expect_err("unknown");
        assert!(
            refused.contains("unknown key \"frobnicate\"; the keys are serve's flags"),
            "{refused}"
        );
        assert!(!refused.contains("did you mean"), "{refused}");
        let refused = flags(&serve, "config = \"other.toml\"").expect_err("not a setting");
        assert!(
            refused.contains("config is for the command line only"),
            "{refused}"
        );
    }

    #[test]
    fn a_file_that_is_not_toml_is_refused_with_its_place() {
        let serve = serve_definition();
        let refused = flags(&serve, "id = 1\ntick-ms = = 5\n").expect_err("not TOML");
        assert!(refused.starts_with("a.toml, line 2, column "), "{refused}");
        assert!(refused.contains("not TOML"), "{refused}");
        assert_eq!(refused.lines().count(), 1, "{refused}");
        let refused = flags(&serve, "id = 1\nid = 2\n").expect_err("a key twice");
        assert!(refused.starts_with("a.toml, line 2"), "{refused}");
    }

    #[test]
    fn an_oversized_or_unreadable_or_non_utf8_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().expect("a directory");
        let big = dir.path().join("big.toml");
        let line = format!("# {}\n", "x".repeat(1000));
        std::fs::write(&big, line.repeat(1100)).expect("written");
        let refused = read_file(&big).expect_err("over 1 MiB");
        assert!(refused.contains("big.toml is over 1024 KiB"), "{refused}");
        let missing = dir.path().join("missing.toml");
        let refused = read_file(&missing).expect_err("missing");
        assert!(
            refused.starts_with(&format!("cannot read {}: ", missing.display())),
            "{refused}"
        );
        let binary = dir.path().join("binary.toml");
        std::fs::write(&binary, b"id = 1\nx = \"\xff\"").expect("written");
        let refused = read_file(&binary).expect_err("not UTF-8");
        assert!(
            refused.ends_with("binary.toml, line 2, column 6: not UTF-8 text"),
            "{refused}"
        );
        let exact = dir.path().join("exact.toml");
        std::fs::write(&exact, vec![b'\n'; 1 << 20]).expect("written");
        assert!(read_file(&exact).is_ok(), "1 MiB exactly is read");
    }

    #[test]
    fn edit_distance_and_wrapping() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
        assert_eq!(wrap("one two three four", 9), ["one two", "three", "four"]);
        assert_eq!(wrap("", 9), Vec::<String>::new());
    }

    fn printed_for(serve: &Command, line: &[&str]) -> String {
        let words = std::iter::once("serve").chain(line.iter().copied());
        let matches = serve
            .clone()
            .try_get_matches_from(words)
            .expect("the line parses");
        render(&built(serve), &matches)
    }

    #[test]
    fn the_printed_configuration_has_every_key_and_reads_back_the_same() {
        let serve = later_serve();
        let printed = printed_for(
            &serve,
            &[
                "--id",
                "2",
                "--cluster",
                "1=127.0.0.1:7001,2=[::1]:7002",
                "--data-dir",
                "d 2",
                "--insecure",
                "--tag",
                "x",
                "--tag",
                "y\"z",
                "--snapshot-bytes",
                "18446744073709551615",
            ],
        );
        assert!(printed.starts_with(HEADER), "{printed}");
        let table: toml::Table = toml::from_str(&printed).expect("TOML");
        assert_eq!(table["id"].as_integer(), Some(2));
        assert_eq!(
            table["cluster"],
            Value::Array(vec![
                Value::String("1=127.0.0.1:7001".into()),
                Value::String("2=[::1]:7002".into())
            ])
        );
        assert_eq!(table["data-dir"].as_str(), Some("d 2"));
        assert_eq!(table["tick-ms"].as_integer(), Some(10));
        assert_eq!(table["election-ticks"].as_str(), Some("15-30"));
        assert_eq!(table["cluster-token"].as_str(), Some(""));
        assert_eq!(table["insecure"].as_bool(), Some(true));
        assert_eq!(table["join"].as_bool(), Some(false));
        assert_eq!(table["quiet"].as_bool(), Some(false));
        assert_eq!(
            table["snapshot-bytes"].as_str(),
            Some("18446744073709551615")
        );
        for unset in ["listen", "peer-key-file", "metrics-addr", "max-clients"] {
            assert!(!table.contains_key(unset), "{unset}");
            assert!(
                printed.contains(&format!("\n# {unset} is not set\n")),
                "{unset}: {printed}"
            );
        }
        assert!(printed.contains("\n# The timer's period, in milliseconds\ntick-ms = 10\n"));
        // Read back: the same flags, so the same text.
        let (flags, _) = flags_of_file(&serve, Path::new("p.toml"), &printed, |_| false)
            .expect("its own output reads back");
        let flags: Vec<String> = flags
            .iter()
            .map(|flag| flag.to_string_lossy().into_owned())
            .collect();
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        assert_eq!(printed_for(&serve, &flags), printed);
    }

    /// README's example file ("Operating", "Configuration file") has every key, set or
    /// commented out, and every value it sets is the default, but for what a node is given.
    #[test]
    fn the_readmes_example_file_has_every_key_at_its_default() {
        let readme = include_str!("../../README.md");
        let (_, section) = readme
            .split_once("\n### Configuration file\n")
            .expect("README has the section");
        let example = section
            .split_once("```toml\n")
            .and_then(|(_, rest)| rest.split_once("```"))
            .map(|(example, _)| example)
            .expect("the section has a TOML example");
        let serve = serve_definition();
        for setting in settings(&built(&serve)) {
            let (set, unset) = (
                format!("{} = ", setting.key),
                format!("# {} = ", setting.key),
            );
            assert!(
                example
                    .lines()
                    .any(|line| line.starts_with(&set) || line.starts_with(&unset)),
                "README's example file lacks {}",
                setting.key
            );
        }
        let (flags, _) = flags_of_file(&serve, Path::new("README.md"), example, |_| false)
            .expect("the example reads");
        let from_example = printed_for(
            &serve,
            &flags
                .iter()
                .map(|flag| flag.to_str().expect("UTF-8"))
                .collect::<Vec<_>>(),
        );
        let given = printed_for(
            &serve,
            &[
                "--id",
                "1",
                "--cluster",
                "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003",
                "--data-dir",
                "d1",
                "--peer-key-file",
                "peer.key",
                "--client-key-file",
                "client.key",
            ],
        );
        assert_eq!(from_example, given);
    }

    #[test]
    fn a_secret_is_never_printed() {
        let serve = serve_definition().arg(
            Arg::new("token")
                .long("api-token")
                .env("BALSA_TEST_API_TOKEN_NEVER_SET")
                .hide_env_values(true),
        );
        let printed = printed_for(
            &serve,
            &[
                "--id",
                "1",
                "--cluster",
                "1=127.0.0.1:1",
                "--data-dir",
                "d",
                "--api-token",
                "hunter2",
            ],
        );
        assert!(
            printed.contains("\n# api-token: secret, not printed\n"),
            "{printed}"
        );
        assert!(!printed.contains("hunter2"), "{printed}");
    }
}
