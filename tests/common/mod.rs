//! Helpers shared by the end-to-end tests: run the psmeval binary, check success, read an output.

use std::path::Path;
use std::process::{Command, Output};

/// Runs psmeval with `args`, with `threads` rayon threads when given.
pub fn psmeval(args: &[&str], threads: Option<usize>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_psmeval"));
    cmd.args(args);
    if let Some(t) = threads {
        cmd.env("RAYON_NUM_THREADS", t.to_string());
    }
    cmd.output().expect("psmeval runs")
}

/// Asserts that a run succeeded, showing its stderr otherwise.
pub fn ok(out: &Output) {
    assert!(out.status.success(), "psmeval failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Reads an output file.
pub fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}
