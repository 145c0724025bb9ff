//! The log stream: the agent's log records and state events to the host, and
//! the operator's few requests back, on one link (vsock in the VM, TCP or a
//! Unix socket elsewhere).
//!
//! The agent connects out to the host. Each side sends frames: a 4-byte
//! big-endian length `N` (1 ..= [`MAX_FRAME`]) and `N` bytes of one UTF-8 JSON
//! object whose `type` names the message. A reader refuses a larger length
//! before it reads or allocates anything, so a hostile peer can make it
//! buffer at most one frame. The byte-level description, with examples, is
//! in `docs/log-stream.md` at the repository root.
//!
//! Each side's first frame is its `hello`, carrying [`VERSION`]; a peer
//! speaking another version is refused. Then:
//!
//! - agent → host: [`Record`]s, numbered by `seq` from 1 for each `boot` (a
//!   random id the agent draws at start), in order; and [`Reply`]s to
//!   requests.
//! - host → agent: `ack`s (cumulative: every record up to `seq` arrived) and
//!   [`Request`]s: deliver the manifest, ask for the status, set the level.
//!   Nothing else: an unknown operation parses as [`Operation::Unsupported`]
//!   so that the agent can refuse it by name.
//!
//! Delivery: the agent keeps every record until it is acknowledged and, after
//! a reconnect, sends again whatever was not; the host drops a record whose
//! `seq` it has already seen for that boot. When the agent's queue is full it
//! drops its oldest records; a `dropped` record then stands in for them: its
//! `seq` is the last one dropped and `first_seq` the first, so a host that
//! already has some of them ([`Record::lost_after`]) counts only the rest. A
//! host that sees `seq` jump without such a record knows records went missing.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The protocol version both sides must speak.
pub const VERSION: u32 = 1;
/// Largest frame body, in bytes.
pub const MAX_FRAME: usize = 1 << 20;
/// Longest record message the agent sends, in bytes; longer ones are cut.
pub const MAX_MESSAGE: usize = 16 << 10;
/// Longest record source (the `log` target), in bytes; longer ones are cut.
pub const MAX_SOURCE: usize = 256;
/// Largest manifest a request may carry, in bytes.
pub const MAX_MANIFEST: usize = 512 << 10;
/// Largest record number: 2^53 - 1. Every JSON reader holds it exactly, and
/// every count derived from record numbers (`seq + 1`, `seq - first_seq + 1`)
/// fits in a `u64`. A record numbered above it is refused at decode; an agent
/// making a million records a second reaches it after 285 years.
pub const MAX_SEQ: u64 = (1 << 53) - 1;

/// What went wrong with a frame or a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogStreamError {
    /// A frame's declared length is over [`MAX_FRAME`].
    #[error("frame of {len} bytes is over the limit of {max} bytes")]
    FrameTooLarge {
        /// The declared length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A frame's declared length is zero.
    #[error("empty frame")]
    EmptyFrame,
    /// The body is not a message of this protocol.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A field has a value the protocol does not allow.
    #[error("message field `{field}`: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The peer speaks another version.
    #[error("peer speaks log stream version {found}, this side speaks {supported}")]
    UnsupportedVersion {
        /// The peer's version.
        found: u32,
        /// Ours.
        supported: u32,
    },
}

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

// ---- the JSON forms -------------------------------------------------------

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum AgentWire {
    Hello(AgentHello),
    Record(RecordWire),
    Reply(ReplyWire),
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum HostWire {
    Hello(HostHello),
    Ack { seq: u64 },
    Request(RequestWire),
}

#[derive(Serialize, Deserialize)]
struct RecordWire {
    seq: u64,
    time_ms: u64,
    level: Level,
    kind: String,
    source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    computation: Option<String>,
    message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    first_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct RequestWire {
    id: u64,
    op: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    manifest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    level: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct ReplyWire {
    id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<ReplyData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> LogStreamError {
    LogStreamError::Invalid { field, reason: reason.into() }
}

fn check_version(found: u32) -> Result<(), LogStreamError> {
    if found == VERSION {
        Ok(())
    } else {
        Err(LogStreamError::UnsupportedVersion { found, supported: VERSION })
    }
}

impl From<&Record> for RecordWire {
    fn from(r: &Record) -> RecordWire {
        let (kind, state, first_seq, count) = match &r.kind {
            RecordKind::Log => ("log", None, None, None),
            RecordKind::Event { state } => ("event", Some(state.clone()), None, None),
            RecordKind::Dropped { first_seq } => ("dropped", None, Some(*first_seq), r.dropped_count()),
        };
        RecordWire {
            seq: r.seq,
            time_ms: r.time_ms,
            level: r.level,
            kind: kind.to_owned(),
            source: r.source.clone(),
            computation: r.computation.clone(),
            message: r.message.clone(),
            state,
            first_seq,
            count,
        }
    }
}

impl TryFrom<RecordWire> for Record {
    type Error = LogStreamError;
    fn try_from(w: RecordWire) -> Result<Record, LogStreamError> {
        let kind = match w.kind.as_str() {
            "log" => RecordKind::Log,
            "event" => RecordKind::Event { state: w.state.ok_or_else(|| invalid("state", "missing"))? },
            "dropped" => {
                RecordKind::Dropped { first_seq: w.first_seq.ok_or_else(|| invalid("first_seq", "missing"))? }
            }
            other => return Err(invalid("kind", format!("{other:?} is not log, event or dropped"))),
        };
        let record = Record {
            seq: w.seq,
            time_ms: w.time_ms,
            level: w.level,
            kind,
            source: w.source,
            computation: w.computation,
            message: w.message,
        };
        // The numbering first: the count below is computed from it.
        record.check()?;
        if let Some(count) = record.dropped_count() {
            if w.count != Some(count) {
                return Err(invalid("count", format!("{:?} but seq - first_seq + 1 = {count}", w.count)));
            }
        }
        Ok(record)
    }
}

impl From<&Request> for RequestWire {
    fn from(r: &Request) -> RequestWire {
        let (op, manifest, level) = match &r.op {
            Operation::Manifest { json } => ("manifest".to_owned(), Some(json.clone()), None),
            Operation::Status => ("status".to_owned(), None, None),
            Operation::SetLevel(l) => ("set_level".to_owned(), None, Some(l.as_str().to_owned())),
            Operation::Unsupported { op, .. } => (op.clone(), None, None),
        };
        RequestWire { id: r.id, op, manifest, level }
    }
}

impl From<RequestWire> for Request {
    fn from(w: RequestWire) -> Request {
        let unsupported = |reason: String| Operation::Unsupported { op: cut(&w.op, 64), reason };
        let op = match w.op.as_str() {
            "manifest" => match &w.manifest {
                None => {
                    unsupported("manifest: the `manifest` field (the manifest's JSON text) is missing".into())
                }
                Some(m) if m.len() > MAX_MANIFEST => unsupported(format!(
                    "manifest: {} bytes is over the limit of {MAX_MANIFEST} bytes",
                    m.len()
                )),
                Some(m) => Operation::Manifest { json: m.clone() },
            },
            "status" => Operation::Status,
            "set_level" => match w.level.as_deref().map(str::parse::<Level>) {
                Some(Ok(level)) => Operation::SetLevel(level),
                Some(Err(e)) => unsupported(format!("set_level: {e}")),
                None => unsupported("set_level: the `level` field is missing".into()),
            },
            _ => unsupported("the agent accepts only manifest, status and set_level".into()),
        };
        Request { id: w.id, op }
    }
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

fn encode_json(out: &mut Vec<u8>, value: &impl Serialize) -> Result<(), LogStreamError> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    serde_json::to_writer(&mut *out, value).map_err(|e| LogStreamError::Malformed(e.to_string()))?;
    let len = out.len() - start - 4;
    if len > MAX_FRAME {
        out.truncate(start);
        return Err(LogStreamError::FrameTooLarge { len, max: MAX_FRAME });
    }
    // The length fits in u32: MAX_FRAME does.
    out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

fn decode_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, LogStreamError> {
    serde_json::from_slice(body).map_err(|e| LogStreamError::Malformed(e.to_string()))
}

impl AgentMessage {
    /// Appends `record` as one frame to `out`, as [`AgentMessage::encode`]
    /// would, without owning it.
    pub fn encode_record(record: &Record, out: &mut Vec<u8>) -> Result<(), LogStreamError> {
        record.check()?;
        encode_json(out, &AgentWire::Record(record.into()))
    }

    /// Appends this message as one frame to `out`; on error `out` is unchanged.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), LogStreamError> {
        let wire = match self {
            AgentMessage::Hello(h) => AgentWire::Hello(h.clone()),
            AgentMessage::Record(r) => {
                r.check()?;
                AgentWire::Record(r.into())
            }
            AgentMessage::Reply(r) => AgentWire::Reply(match &r.result {
                Ok(data) => ReplyWire { id: r.id, result: Some(data.clone()), error: None },
                Err(e) => ReplyWire { id: r.id, result: None, error: Some(e.clone()) },
            }),
        };
        encode_json(out, &wire)
    }

    /// Parses one frame's body.
    pub fn decode(body: &[u8]) -> Result<AgentMessage, LogStreamError> {
        Ok(match decode_json::<AgentWire>(body)? {
            AgentWire::Hello(h) => {
                check_version(h.version)?;
                if h.boot.len() != 32 || !h.boot.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(invalid("boot", "expected 32 hex digits"));
                }
                AgentMessage::Hello(h)
            }
            AgentWire::Record(r) => AgentMessage::Record(r.try_into()?),
            AgentWire::Reply(r) => AgentMessage::Reply(Reply {
                id: r.id,
                result: match (r.result, r.error) {
                    (Some(data), None) => Ok(data),
                    (None, Some(e)) => Err(e),
                    _ => return Err(invalid("result", "a reply has either `result` or `error`")),
                },
            }),
        })
    }
}

impl HostMessage {
    /// Appends this message as one frame to `out`; on error `out` is unchanged.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), LogStreamError> {
        let wire = match self {
            HostMessage::Hello(h) => HostWire::Hello(h.clone()),
            HostMessage::Ack { seq } => HostWire::Ack { seq: *seq },
            HostMessage::Request(r) => HostWire::Request(r.into()),
        };
        encode_json(out, &wire)
    }

    /// Parses one frame's body.
    pub fn decode(body: &[u8]) -> Result<HostMessage, LogStreamError> {
        Ok(match decode_json::<HostWire>(body)? {
            HostWire::Hello(h) => {
                check_version(h.version)?;
                HostMessage::Hello(h)
            }
            HostWire::Ack { seq } => HostMessage::Ack { seq },
            HostWire::Request(r) => HostMessage::Request(r.into()),
        })
    }
}

/// Cuts a byte stream into frames.
///
/// Feed it what the connection gives ([`Deframer::push`]) and take every
/// complete frame ([`Deframer::next_frame`]) before the next read: it then
/// holds at most one frame plus one read. A length over [`MAX_FRAME`] or of
/// zero is an error as soon as its four bytes are in; the stream cannot be
/// resynchronised after it, so the caller closes the connection.
#[derive(Debug, Default)]
pub struct Deframer {
    buf: Vec<u8>,
    start: usize,
}

impl Deframer {
    /// An empty deframer.
    pub fn new() -> Deframer {
        Deframer::default()
    }

    /// Adds bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 << 10 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame's body, if one is in.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, LogStreamError> {
        let rest = &self.buf[self.start..];
        let Some(header) = rest.get(..4) else { return Ok(None) };
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if len == 0 {
            return Err(LogStreamError::EmptyFrame);
        }
        if len > MAX_FRAME {
            return Err(LogStreamError::FrameTooLarge { len, max: MAX_FRAME });
        }
        if rest.len() < 4 + len {
            return Ok(None);
        }
        let body = self.start + 4..self.start + 4 + len;
        self.start = body.end;
        Ok(Some(&self.buf[body]))
    }

    /// Bytes received that are not yet a complete frame.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, kind: RecordKind) -> Record {
        Record {
            seq,
            time_ms: 1_700_000_000_123,
            level: Level::Info,
            kind,
            source: "cvm_agent::computation".into(),
            computation: Some("mean-age".into()),
            message: "received algorithm \"stats.py\" ✓".into(),
        }
    }

    fn frames(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut d = Deframer::new();
        d.push(bytes);
        let mut out = Vec::new();
        while let Some(f) = d.next_frame().unwrap() {
            out.push(f.to_vec());
        }
        assert_eq!(d.pending(), 0);
        out
    }

    #[test]
    fn agent_messages_round_trip() {
        let msgs = vec![
            AgentMessage::Hello(AgentHello {
                version: VERSION,
                boot: "00112233445566778899aabbccddeeff".into(),
                agent: "cvm-agent 0.1.0".into(),
                level: Level::Debug,
            }),
            AgentMessage::Record(record(1, RecordKind::Log)),
            AgentMessage::Record(record(2, RecordKind::Event { state: "running".into() })),
            AgentMessage::Record(record(9, RecordKind::Dropped { first_seq: 3 })),
            AgentMessage::Reply(Reply { id: 7, result: Ok(ReplyData::Level { level: Level::Trace }) }),
            AgentMessage::Reply(Reply { id: 8, result: Err("no".into()) }),
            AgentMessage::Reply(Reply {
                id: 9,
                result: Ok(ReplyData::Status(AgentStatus {
                    state: "awaiting_manifest".into(),
                    reason: None,
                    computation: None,
                    manifest_digest: None,
                    level: Level::Info,
                    queued: 3,
                    capacity: 4096,
                    dropped_total: 0,
                    last_seq: 3,
                })),
            }),
        ];
        let mut wire = Vec::new();
        for m in &msgs {
            m.encode(&mut wire).unwrap();
        }
        let back: Vec<AgentMessage> =
            frames(&wire).iter().map(|f| AgentMessage::decode(f).unwrap()).collect();
        assert_eq!(back, msgs);
    }

    #[test]
    fn host_messages_round_trip() {
        let msgs = vec![
            HostMessage::Hello(HostHello { version: VERSION }),
            HostMessage::Ack { seq: 42 },
            HostMessage::Request(Request { id: 1, op: Operation::Manifest { json: "{\"id\": 1}".into() } }),
            HostMessage::Request(Request { id: 2, op: Operation::Status }),
            HostMessage::Request(Request { id: 3, op: Operation::SetLevel(Level::Warn) }),
        ];
        let mut wire = Vec::new();
        for m in &msgs {
            m.encode(&mut wire).unwrap();
        }
        let back: Vec<HostMessage> = frames(&wire).iter().map(|f| HostMessage::decode(f).unwrap()).collect();
        assert_eq!(back, msgs);
    }

    #[test]
    fn the_wire_form_is_the_documented_one() {
        let mut wire = Vec::new();
        AgentMessage::Record(record(9, RecordKind::Dropped { first_seq: 3 })).encode(&mut wire).unwrap();
        let body = &wire[4..];
        assert_eq!(u32::from_be_bytes(wire[..4].try_into().unwrap()) as usize, body.len());
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "record", "seq": 9, "time_ms": 1_700_000_000_123u64, "level": "info",
                "kind": "dropped", "source": "cvm_agent::computation", "computation": "mean-age",
                "message": "received algorithm \"stats.py\" ✓", "first_seq": 3, "count": 7})
        );
    }

    #[test]
    fn unknown_and_malformed_requests_are_unsupported_with_a_reason() {
        let parse = |json: &str| {
            let mut wire = Vec::new();
            encode_json(&mut wire, &serde_json::from_str::<serde_json::Value>(json).unwrap()).unwrap();
            HostMessage::decode(&wire[4..]).unwrap()
        };
        for (json, op, reason) in [
            (
                r#"{"type":"request","id":1,"op":"shell","cmd":"id"}"#,
                "shell",
                "only manifest, status and set_level",
            ),
            (
                r#"{"type":"request","id":2,"op":"set_level","level":"loud"}"#,
                "set_level",
                "\"loud\" is not error",
            ),
            (r#"{"type":"request","id":3,"op":"set_level"}"#, "set_level", "`level` field is missing"),
            (r#"{"type":"request","id":4,"op":"manifest"}"#, "manifest", "`manifest` field"),
        ] {
            match parse(json) {
                HostMessage::Request(Request { op: Operation::Unsupported { op: o, reason: r }, .. }) => {
                    assert_eq!(o, op);
                    assert!(r.contains(reason), "{r}");
                }
                other => panic!("{json}: {other:?}"),
            }
        }
    }

    #[test]
    fn bad_messages_are_errors_naming_what_is_wrong() {
        let cases: [(&str, &str); 8] = [
            (
                r#"{"type":"hello","version":2,"boot":"00112233445566778899aabbccddeeff","agent":"a","level":"info"}"#,
                "version 2",
            ),
            (r#"{"type":"hello","version":1,"boot":"xyz","agent":"a","level":"info"}"#, "`boot`"),
            (
                r#"{"type":"record","seq":0,"time_ms":1,"level":"info","kind":"log","source":"s","message":"m"}"#,
                "`seq`",
            ),
            (
                r#"{"type":"record","seq":1,"time_ms":1,"level":"loud","kind":"log","source":"s","message":"m"}"#,
                "loud",
            ),
            (
                r#"{"type":"record","seq":1,"time_ms":1,"level":"info","kind":"poem","source":"s","message":"m"}"#,
                "`kind`",
            ),
            (
                r#"{"type":"record","seq":5,"time_ms":1,"level":"info","kind":"dropped","first_seq":6,"count":0,"source":"s","message":"m"}"#,
                "`first_seq`",
            ),
            (
                r#"{"type":"record","seq":5,"time_ms":1,"level":"info","kind":"dropped","first_seq":2,"count":3,"source":"s","message":"m"}"#,
                "`count`",
            ),
            (r#"{"type":"reply","id":1}"#, "`result`"),
        ];
        for (json, needle) in cases {
            let e = AgentMessage::decode(json.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(needle), "{json}: {e}");
        }
        assert!(matches!(AgentMessage::decode(b"[1,2]"), Err(LogStreamError::Malformed(_))));
        assert!(matches!(HostMessage::decode(b"{\"type\":\"shell\"}"), Err(LogStreamError::Malformed(_))));
    }

    #[test]
    fn oversized_and_empty_frames_are_refused_from_their_header() {
        let mut d = Deframer::new();
        d.push(&((MAX_FRAME + 1) as u32).to_be_bytes());
        assert_eq!(d.next_frame(), Err(LogStreamError::FrameTooLarge { len: MAX_FRAME + 1, max: MAX_FRAME }));
        let mut d = Deframer::new();
        d.push(&[0, 0, 0, 0, b'{']);
        assert_eq!(d.next_frame(), Err(LogStreamError::EmptyFrame));
        let huge = Request { id: 1, op: Operation::Manifest { json: "x".repeat(MAX_FRAME) } };
        let mut out = vec![1, 2, 3];
        assert!(matches!(
            HostMessage::Request(huge).encode(&mut out),
            Err(LogStreamError::FrameTooLarge { .. })
        ));
        assert_eq!(out, [1, 2, 3]);
    }

    #[test]
    fn frames_split_at_every_byte_reassemble() {
        let mut wire = Vec::new();
        for seq in 1..=5 {
            AgentMessage::Record(record(seq, RecordKind::Log)).encode(&mut wire).unwrap();
        }
        let mut d = Deframer::new();
        let mut seqs = Vec::new();
        for b in &wire {
            d.push(std::slice::from_ref(b));
            while let Some(f) = d.next_frame().unwrap() {
                match AgentMessage::decode(f).unwrap() {
                    AgentMessage::Record(r) => seqs.push(r.seq),
                    other => panic!("{other:?}"),
                }
            }
        }
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn random_and_truncated_input_never_panics() {
        // A small xorshift generator: deterministic, no dependency.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut valid = Vec::new();
        AgentMessage::Record(record(3, RecordKind::Dropped { first_seq: 1 })).encode(&mut valid).unwrap();
        HostMessage::Request(Request { id: 1, op: Operation::SetLevel(Level::Debug) })
            .encode(&mut valid)
            .unwrap();
        for round in 0..20_000 {
            let mut bytes = if round % 2 == 0 {
                let n = (next() % 64) as usize;
                (0..n).map(|_| next() as u8).collect::<Vec<u8>>()
            } else {
                valid.clone()
            };
            // Truncate, and flip a few bytes.
            bytes.truncate((next() as usize) % (bytes.len() + 1));
            for _ in 0..(next() % 4) {
                if !bytes.is_empty() {
                    let i = (next() as usize) % bytes.len();
                    bytes[i] ^= next() as u8;
                }
            }
            let mut d = Deframer::new();
            d.push(&bytes);
            while let Ok(Some(f)) = d.next_frame() {
                let _ = AgentMessage::decode(f);
                let _ = HostMessage::decode(f);
            }
            let _ = AgentMessage::decode(&bytes);
            let _ = HostMessage::decode(&bytes);
        }
    }

    #[test]
    fn lost_counts_only_what_the_host_did_not_get() {
        let r = record(10, RecordKind::Dropped { first_seq: 4 });
        assert_eq!(r.dropped_count(), Some(7));
        assert_eq!(r.lost_after(0), Some(7));
        assert_eq!(r.lost_after(3), Some(7));
        assert_eq!(r.lost_after(6), Some(4));
        assert_eq!(r.lost_after(10), Some(0));
        assert_eq!(record(1, RecordKind::Log).lost_after(0), None);
    }

    #[test]
    fn records_numbered_past_max_seq_are_refused_both_ways() {
        let json = |seq: u64, first: u64| {
            format!(
                r#"{{"type":"record","seq":{seq},"time_ms":1,"level":"info","kind":"dropped","first_seq":{first},"count":{},"source":"s","message":"m"}}"#,
                seq - first + 1
            )
        };
        let last = AgentMessage::decode(json(MAX_SEQ, 1).as_bytes()).unwrap();
        let AgentMessage::Record(r) = &last else { panic!("{last:?}") };
        assert_eq!(r.dropped_count(), Some(MAX_SEQ));
        for seq in [MAX_SEQ + 1, u64::MAX] {
            let e = AgentMessage::decode(json(seq, 1).as_bytes()).unwrap_err();
            assert!(matches!(e, LogStreamError::Invalid { field: "seq", .. }), "{e}");
            let mut out = vec![9];
            let r = record(seq, RecordKind::Dropped { first_seq: 1 });
            assert!(AgentMessage::Record(r.clone()).encode(&mut out).is_err());
            assert!(AgentMessage::encode_record(&r, &mut out).is_err());
            assert_eq!(out, [9]);
            // Counting never wraps, even on a record that could not be sent.
            assert_eq!(r.dropped_count(), Some(seq));
            assert_eq!(r.lost_after(u64::MAX), Some(0));
        }
    }

    #[test]
    fn cut_respects_character_boundaries() {
        assert_eq!(cut("abc", 5), "abc");
        assert_eq!(cut("aé", 2), "a");
        assert_eq!(cut("ééé", 4), "éé");
    }
}
