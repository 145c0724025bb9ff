//! Running a program to its end and reading what it left: its output as
//! text, and its exit code checked with the output shown when it is wrong.

use std::ffi::OsStr;
use std::process::{Command, Output, Stdio};

/// Runs `program` with `args`, stdin closed, and waits for its output.
pub fn run(program: impl AsRef<OsStr>, args: &[&str]) -> Output {
    let program = program.as_ref();
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.to_string_lossy()))
}

/// A process's stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A process's stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a process's exit code, showing its stdout and stderr otherwise.
#[track_caller]
pub fn assert_exit(o: &Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "stdout:\n{}\nstderr:\n{}", stdout(o), stderr(o));
}

/// Asserts that a process succeeded, naming it `what` and showing its
/// output otherwise; returns its stdout.
#[track_caller]
pub fn ok(o: &Output, what: &str) -> String {
    assert!(o.status.success(), "{what}: exit {:?}\n{}{}", o.status.code(), stdout(o), stderr(o));
    stdout(o)
}

/// Every line of a process's stdout parsed as JSON of type `T` (cvmctl's
/// `--json` lines as `cvmctl::output::Message`); a line that does not parse
/// fails the test, naming it.
#[track_caller]
pub fn json_lines<T: serde::de::DeserializeOwned>(o: &Output) -> Vec<T> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a typed JSON line ({e}): {l:?}")))
        .collect()
}
