//! Machine output: JSON Lines, one `{"type": ..., "data": ...}` object a line.
//!
//! The set of types and the fields inside `data` may grow; consumers must
//! ignore what they do not know.
//!
//! Strings keep their exact text, but no character that a terminal acts on
//! appears raw, so that JSON shown on a terminal cannot drive it either
//! (`cvmctl logs listen --json` carries the algorithm's forwarded output):
//! JSON escapes the C0 controls itself, and the rest that
//! [`cvm_protocol::terminal::needs_escape`] names (DEL, C1 controls,
//! bidirectional controls, line and paragraph separators) are written as
//! `\uXXXX`, which every JSON reader decodes to the same text.

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
    let mut line = to_json(&serde_json::json!({ "type": kind, "data": data }))?;
    line.push(b'\n');
    stdout().write_all(&line)?;
    Ok(())
}

/// Compact JSON of `value`, with no raw character a terminal acts on (see
/// the module documentation).
pub fn to_json(value: &impl Serialize) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::new();
    value.serialize(&mut serde_json::Serializer::with_formatter(&mut out, TerminalSafe))?;
    Ok(out)
}

/// serde_json's compact formatter, but for the characters JSON leaves raw
/// and a terminal acts on.
struct TerminalSafe;

impl serde_json::ser::Formatter for TerminalSafe {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        // A fragment holds no character that JSON escapes itself (quote,
        // backslash, C0 controls): those go through `write_char_escape`.
        let mut rest = fragment;
        while let Some((at, c)) = rest.char_indices().find(|(_, c)| cvm_protocol::terminal::needs_escape(*c))
        {
            writer.write_all(&rest.as_bytes()[..at])?;
            // Every such character is in the Basic Multilingual Plane: one `\uXXXX`.
            write!(writer, "\\u{:04x}", u32::from(c))?;
            rest = &rest[at + c.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keeps_the_exact_text_with_no_raw_terminal_control() {
        let text = "stdout: \r\x1b[2Kfake \x1b]52;c;ZXZpbA==\x07 \u{9b}31m \x7f exe.\u{202e}txt \u{2028} naïve \\ \"q\"";
        let json = to_json(&serde_json::json!({ "message": text })).unwrap();
        let shown = String::from_utf8(json.clone()).unwrap();
        assert!(
            !shown.chars().any(|c| c.is_control() || cvm_protocol::terminal::needs_escape(c) && c != '\\'),
            "{shown}"
        );
        assert!(
            shown.contains(r"\u001b]52") && shown.contains(r"\u009b31m") && shown.contains(r"exe.\u202etxt"),
            "{shown}"
        );
        assert!(shown.contains("naïve"), "{shown}");
        let back: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(back["message"], text);
    }
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
