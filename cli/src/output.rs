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
    writeln!(std::io::stdout().lock(), "{line}")?;
    Ok(())
}
