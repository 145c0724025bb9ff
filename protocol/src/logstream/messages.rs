//! The messages each side sends, as the rest of the code sees them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[cfg(doc)]
use super::VERSION;
use super::{invalid, LogStreamError, MAX_SEQ};

/// A record's severity, most severe first (the `log` crate's order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Something failed.
    Error,
    /// Something is wrong but work goes on.
    Warn,
    /// What happens, in a few lines per step.
    Info,
    /// Decisions, for the operator who investigates.
    Debug,
    /// Everything.
    Trace,
}

impl Level {
    /// Every level, most severe first.
    pub const ALL: [Level; 5] = [Level::Error, Level::Warn, Level::Info, Level::Debug, Level::Trace];

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Level, String> {
        Level::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("{s:?} is not error, warn, info, debug or trace"))
    }
}

/// What a record is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// A log line.
    Log,
    /// The computation entered a state (the API's state names, plus
    /// `awaiting_manifest`).
    Event {
        /// The new state.
        state: String,
    },
    /// Records `first_seq ..= seq` were dropped by the agent's full queue.
    Dropped {
        /// The first dropped record's number.
        first_seq: u64,
    },
}

/// One record: a log line, a state event, or a count of dropped records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its number, from 1 for each boot of the agent, increasing by one.
    pub seq: u64,
    /// When it was made: milliseconds since the Unix epoch (the guest's clock).
    pub time_ms: u64,
    /// Its severity.
    pub level: Level,
    /// What it is.
    pub kind: RecordKind,
    /// Where it comes from (the `log` target, such as `cvm_agent::computation`).
    pub source: String,
    /// The computation's manifest id, once the agent has a manifest.
    pub computation: Option<String>,
    /// The text.
    pub message: String,
}

impl Record {
    /// Checks the numbering rules a decoded record always meets: `seq` in
    /// 1 ..= [`MAX_SEQ`], and for a `dropped` record `first_seq` in 1 ..= `seq`.
    pub fn check(&self) -> Result<(), LogStreamError> {
        if self.seq == 0 {
            return Err(invalid("seq", "records are numbered from 1"));
        }
        if self.seq > MAX_SEQ {
            return Err(invalid(
                "seq",
                format!("{} is above {MAX_SEQ} (2^53 - 1), the largest record number", self.seq),
            ));
        }
        if let RecordKind::Dropped { first_seq } = self.kind {
            if first_seq == 0 || first_seq > self.seq {
                return Err(invalid("first_seq", format!("{first_seq} is not in 1 ..= seq {}", self.seq)));
            }
        }
        Ok(())
    }

    /// For a `dropped` record: how many records were dropped,
    /// `seq - first_seq + 1` (exact for a record that passes
    /// [`Record::check`]; saturating, never wrapping, for one that does not).
    pub fn dropped_count(&self) -> Option<u64> {
        match self.kind {
            RecordKind::Dropped { first_seq } => Some(self.seq.saturating_sub(first_seq).saturating_add(1)),
            _ => None,
        }
    }

    /// For a `dropped` record: how many of its records a host that has seen
    /// every record up to `last_seen` never received.
    pub fn lost_after(&self, last_seen: u64) -> Option<u64> {
        match self.kind {
            RecordKind::Dropped { first_seq } => {
                Some(self.seq.saturating_sub(last_seen.max(first_seq.saturating_sub(1))))
            }
            _ => None,
        }
    }
}

/// The agent's first frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentHello {
    /// [`VERSION`].
    pub version: u32,
    /// This run of the agent: 32 hex digits drawn at start. Sequence numbers
    /// start again at 1 with a new boot.
    pub boot: String,
    /// The agent's name and version.
    pub agent: String,
    /// The level it sends at.
    pub level: Level,
}

/// The host's first frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostHello {
    /// [`VERSION`].
    pub version: u32,
}

/// An operator's request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Chosen by the host; the reply carries it back.
    pub id: u64,
    /// What is asked.
    pub op: Operation,
}

/// The operations an operator may ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `manifest`: the computation manifest (JSON text), for an agent that
    /// waits for it.
    Manifest {
        /// The manifest's JSON text.
        json: String,
    },
    /// `status`: the agent's state and its queue.
    Status,
    /// `set_level`: send records at this level and above from now on.
    SetLevel(Level),
    /// Anything else, or a known operation with bad arguments: refused.
    Unsupported {
        /// The operation's name as sent (cut to 64 bytes).
        op: String,
        /// Why it is refused.
        reason: String,
    },
}

/// The agent's answer to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The request's id.
    pub id: u64,
    /// What happened: the answer, or why the request was refused.
    pub result: Result<ReplyData, String>,
}

/// A successful request's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyData {
    /// The manifest was accepted; its digest.
    Manifest {
        /// `sha256:...`.
        digest: String,
    },
    /// The agent's status.
    Status(AgentStatus),
    /// The level now in force.
    Level {
        /// The level.
        level: Level,
    },
}

/// The agent's state as the operator sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// `awaiting_manifest`, or the API's state name.
    pub state: String,
    /// Why, for `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The manifest's id, once there is a manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computation: Option<String>,
    /// The manifest's digest, once there is a manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<String>,
    /// The level in force.
    pub level: Level,
    /// Records waiting for the host's acknowledgement.
    pub queued: u64,
    /// The queue's capacity, in records.
    pub capacity: u64,
    /// Records dropped since the agent started.
    pub dropped_total: u64,
    /// The last record's number.
    pub last_seq: u64,
}

/// A frame from the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentMessage {
    /// The first frame.
    Hello(AgentHello),
    /// A record.
    Record(Record),
    /// An answer to a request.
    Reply(Reply),
}

/// A frame from the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostMessage {
    /// The first frame.
    Hello(HostHello),
    /// Every record up to `seq` arrived.
    Ack {
        /// The last record received.
        seq: u64,
    },
    /// An operator's request.
    Request(Request),
}

/// `s` cut to at most `max` bytes, at a character boundary.
pub fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
