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

/// One line of `--json` output, untyped: what a reader that must ignore
/// unknown types can always parse. [`Message`] is the typed form.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct Line {
    /// What `data` holds: one of [`Message`]'s types, in snake case.
    #[serde(rename = "type")]
    pub kind: String,
    /// The payload.
    pub data: Value,
}

/// Every line that cvmctl's `--json` writes: `{"type": ..., "data": ...}`,
/// the type in snake case. One thing has one shape, whichever command
/// prints it: a `verdict` of `report verify` and of `attest` (accepted or
/// rejected) are the same structure.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Message {
    /// `report show`: the report's fields (the evidence crate's JSON form of a report).
    Report(Value),
    /// One check of a verification (`report verify`, `attest`).
    Check(CheckLine),
    /// The end of a verification (`report verify`, `attest`, and every
    /// command that talks to an agent when its evidence is rejected).
    Verdict(Verdict),
    /// The agent's sandbox, as it reports it (`attest`).
    Sandbox(cvm_protocol::api::SandboxStatus),
    /// The computation's state (`status`).
    Status(cvm_protocol::api::Status),
    /// A new owner key (`keygen`).
    Key(KeyLine),
    /// A new sealing key (`keygen --sealing`).
    SealingKey(SealingKeyLine),
    /// A sealed stream's identity (`seal`).
    Sealed(cvm_protocol::sealed::StreamIdentity),
    /// What `report simulate` wrote.
    Simulated(Simulated),
    /// A launch measurement (`measure`).
    Measurement(Measurement),
    /// A UKI's vTPM measurements (`measure --uki`).
    Uki(Uki),
    /// An agent connected to the log listener (`logs listen`).
    Connected(Connected),
    /// The agent's log link closed (`logs listen`).
    Disconnected(Disconnected),
    /// Records that never arrived and were not reported dropped (`logs listen`).
    Gap(Gap),
    /// A log record or state event (`logs listen`).
    Record(RecordLine),
    /// The agent's answer to an operator's request (`logs listen`, `logs status|level|manifest`).
    Reply(ReplyLine),
}

/// The `data` of a `check` line: one check, as the evidence crate records it.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct CheckLine {
    /// The check's stable name, e.g. `measurement`.
    pub name: String,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: CheckOutcome,
    /// What was required.
    pub expected: String,
    /// What the evidence has.
    pub found: String,
}

/// How a check ended.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase", tag = "status")]
pub enum CheckOutcome {
    /// The evidence meets the requirement.
    Passed,
    /// It does not.
    Failed,
    /// The check did not run.
    Skipped {
        /// Why.
        reason: String,
    },
}

impl From<&cvm_evidence::Check> for CheckLine {
    fn from(c: &cvm_evidence::Check) -> CheckLine {
        CheckLine {
            name: c.name.to_owned(),
            outcome: match &c.outcome {
                cvm_evidence::Outcome::Passed => CheckOutcome::Passed,
                cvm_evidence::Outcome::Failed => CheckOutcome::Failed,
                cvm_evidence::Outcome::Skipped { reason } => CheckOutcome::Skipped { reason: reason.clone() },
            },
            expected: c.expected.clone(),
            found: c.found.clone(),
        }
    }
}

/// The `data` of a `verdict` line.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Verdict {
    /// True when every check passed or was skipped.
    pub accepted: bool,
    /// The product the evidence was attributed to.
    pub product: Option<String>,
    /// How many checks failed.
    pub failed: usize,
    /// How many were skipped.
    pub skipped: usize,
    /// The manifest the agent's evidence was checked against (commands that talk to an agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<cvm_protocol::Digest>,
    /// The flavour of the evidence verified (`sev-snp`, `azure`, `gcp`), where one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

impl Verdict {
    /// The verdict over `checks` (of one report or more), attributed to `product`.
    pub fn of<'a>(
        product: Option<cvm_evidence::Product>,
        checks: impl IntoIterator<Item = &'a cvm_evidence::Check>,
    ) -> Verdict {
        let (mut failed, mut skipped) = (0, 0);
        for c in checks {
            match c.outcome {
                cvm_evidence::Outcome::Failed => failed += 1,
                cvm_evidence::Outcome::Skipped { .. } => skipped += 1,
                cvm_evidence::Outcome::Passed => {}
            }
        }
        Verdict {
            accepted: failed == 0,
            product: product.map(|p| p.to_string()),
            failed,
            skipped,
            manifest_digest: None,
            platform: None,
        }
    }
}

/// The `data` of a `key` line.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct KeyLine {
    /// The public key, base64 DER SubjectPublicKeyInfo, as a manifest names it.
    pub public_key: String,
    /// Its fingerprint.
    pub fingerprint: String,
}

/// The `data` of a `sealing_key` line.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct SealingKeyLine {
    /// The key id a manifest pins (hex).
    pub key_id: String,
}

/// The `data` of a `simulated` line.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Simulated {
    /// The simulated product.
    pub product: String,
    /// The signing key's kind (`vcek` or `vlek`).
    pub signing_key: String,
    /// The files written.
    pub files: Vec<String>,
}

/// The `data` of a `measurement` line: the launch measurement and what it was computed from.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Measurement {
    /// The launch measurement (96 hex digits).
    pub measurement: String,
    /// The firmware.
    pub ovmf: std::path::PathBuf,
    /// The kernel of a direct boot.
    pub kernel: Option<std::path::PathBuf>,
    /// Its initrd.
    pub initrd: Option<std::path::PathBuf>,
    /// Its command line (with a kernel only).
    pub append: Option<String>,
    /// The firmware alone, as a guest that boots from a disk has it.
    pub firmware_only: bool,
    /// vCPUs.
    pub vcpus: u32,
    /// Their type.
    pub vcpu_type: String,
    /// The SEV features, in hex.
    pub guest_features: String,
}

/// The `data` of a `uki` line: what booting the UKI measures into the vTPM.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct Uki {
    /// The file.
    pub uki: std::path::PathBuf,
    /// Its size.
    pub bytes: usize,
    /// Its PE/Authenticode SHA-256 (PCR 4).
    pub authenticode_sha256: String,
    /// The embedded kernel's Authenticode SHA-256 (PCR 4).
    pub kernel_authenticode_sha256: String,
    /// The initrd's SHA-256 as measured into PCR 9.
    pub pcr9_sha256: String,
    /// PCR 11 after the stub's section measurements.
    pub pcr11_sha256: String,
    /// The embedded command line.
    pub cmdline: Option<String>,
    /// The sections the stub measures.
    pub sections: Vec<UkiSection>,
    /// The policy rules that pin it (`tpm_pcrs`, `tpm_events`).
    pub policy: Value,
}

/// One measured section of a UKI.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct UkiSection {
    /// Its name (`.linux`, `.initrd`, ...).
    pub name: String,
    /// Its size.
    pub bytes: usize,
    /// Its SHA-256.
    pub sha256: String,
}

/// The `data` of a `connected` line.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Connected {
    /// The agent's boot id.
    pub boot: String,
    /// The agent's name and version.
    pub agent: String,
    /// Its log level.
    pub level: cvm_protocol::logstream::Level,
    /// Whether this is a new boot after an earlier one.
    pub restarted: bool,
    /// Where it connected from.
    pub peer: String,
}

/// The `data` of a `disconnected` line.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Disconnected {
    /// Why the link closed.
    pub reason: String,
}

/// The `data` of a `gap` line.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Gap {
    /// The first record missing.
    pub first: u64,
    /// The last.
    pub last: u64,
}

/// The `data` of a `record` line.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct RecordLine {
    /// Its number in its boot.
    pub seq: u64,
    /// When the agent made it, in milliseconds since the epoch.
    pub time_ms: u64,
    /// The same in RFC 3339.
    pub time: String,
    /// Its severity.
    pub level: cvm_protocol::logstream::Level,
    /// `log`, `event` or `dropped`.
    pub kind: String,
    /// Where in the agent it came from.
    pub source: String,
    /// The computation's id, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computation: Option<String>,
    /// The text.
    pub message: String,
    /// For an `event`: the state entered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// For `dropped`: the first record dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seq: Option<u64>,
    /// For `dropped`: how many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// For `dropped`: how many of them this host never had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<u64>,
}

/// The `data` of a `reply` line.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct ReplyLine {
    /// The operation answered (`manifest`, `status`, `set_level`).
    pub op: String,
    /// Whether the agent did it.
    pub ok: bool,
    /// What it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<cvm_protocol::logstream::ReplyData>,
    /// Why it refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ReplyLine {
    /// The line for the agent's answer to `op`.
    pub fn new(op: &str, result: &Result<cvm_protocol::logstream::ReplyData, String>) -> ReplyLine {
        match result {
            Ok(data) => ReplyLine { op: op.to_owned(), ok: true, result: Some(data.clone()), error: None },
            Err(e) => ReplyLine { op: op.to_owned(), ok: false, result: None, error: Some(e.clone()) },
        }
    }
}

/// Writes one JSON line to stdout.
pub fn emit(message: &Message) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut line = to_json(message)?;
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
