//! Machine output: JSON Lines, one `{"type": ..., "data": ...}` object a line.
//!
//! The set of types and the fields inside `data` may grow; consumers must
//! ignore what they do not know.

use serde::Serialize;
use serde_json::Value;

/// One line of `--json` output.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct Line {
    /// What `data` holds: `report`, `check`, `verdict`, `simulated`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The payload.
    pub data: Value,
}

/// The `data` of a `verdict` line.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Verdict {
    /// True when every check passed or was skipped.
    pub accepted: bool,
    /// The product the evidence was attributed to.
    pub product: Option<String>,
    /// How many checks failed.
    pub failed: usize,
    /// How many were skipped.
    pub skipped: usize,
}

/// Writes one JSON line to stdout.
pub fn emit(kind: &str, data: impl Serialize) -> anyhow::Result<()> {
    use std::io::Write as _;
    let line = serde_json::json!({ "type": kind, "data": data });
    writeln!(stdout(), "{line}")?;
    Ok(())
}

/// Standard output, whose closing by the reader (a broken pipe, as with
/// `cvmctl ... | head`) is reported as [`StdoutClosed`], so that `main` can
/// exit quietly for it and only for it.
pub fn stdout() -> Stdout {
    Stdout(std::io::stdout().lock())
}

/// Locked standard output; see [`stdout`].
pub struct Stdout(std::io::StdoutLock<'static>);

/// The reader of standard output went away.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
pub struct StdoutClosed;

fn map_pipe(e: std::io::Error) -> std::io::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::io::Error::other(StdoutClosed)
    } else {
        e
    }
}

impl std::io::Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf).map_err(map_pipe)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().map_err(map_pipe)
    }
}
