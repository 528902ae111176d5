//! The build script of the `balsa` binary: it hands the source's git revision to the build as
//! `BALSA_GIT_REVISION`, so `balsa --version` names the build a bug report comes from.
//!
//! The revision is `git rev-parse --short HEAD` in the source tree; `unknown` when git or the
//! repository is not there (a source archive, a vendored copy). No dependency: `git` is run if
//! it is installed, and the build never fails for want of it. Cargo runs this again when
//! `HEAD` moves (the files git names for `HEAD` and for the branch it points to).

#![allow(
    clippy::print_stdout,
    reason = "cargo reads a build script's instructions from its standard output"
)]

use std::process::Command;

fn main() {
    let revision = git(&["rev-parse", "--short", "HEAD"])
        .filter(|revision| !revision.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=BALSA_GIT_REVISION={revision}");
    // Run again when HEAD, or the branch it names, moves.
    if let Some(file) = git(&["rev-parse", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={file}");
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(file) = git(&["rev-parse", "--git-path", &branch])
    {
        println!("cargo:rerun-if-changed={file}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}

/// The trimmed standard output of `git ARGS` run in this crate's directory, if it succeeded.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    Some(text.trim().to_owned())
}
