//! The JSON forms of the messages, and their conversions both ways.

use serde::{Deserialize, Serialize};

use super::frame::encode_json;
use super::messages::{
    cut, AgentHello, AgentMessage, HostHello, HostMessage, Level, Operation, Record, RecordKind, Reply,
    ReplyData, Request,
};
use super::{invalid, LogStreamError, MAX_MANIFEST, VERSION};

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
