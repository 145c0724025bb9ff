//! What `logs listen` prints: lines for people, or JSON Lines.
//!
//! JSON: `{"type": "record", "data": {"seq", "time_ms", "time", "level",
//! "kind", "source", "computation"?, "message", "state"?, "first_seq"?,
//! "count"?, "lost"?}}`, `connected {boot, agent, level, restarted, peer}`,
//! `disconnected {reason}`, `gap {first, last}` (records missing with no
//! explanation) and `reply {op, ok, result | error}`.
//!
//! Lines for people show every text that came from the agent through
//! [`escape`]: a record's message may be the algorithm's forwarded output,
//! and its control characters, escape sequences and bidirectional controls
//! must neither forge a record nor drive the operator's terminal. JSON keeps
//! the exact text (JSON escapes control characters itself).

use std::io::Write as _;

use cvm_protocol::logstream::{AgentHello, Level, Record, RecordKind, ReplyData};
use cvm_protocol::terminal::escape;

use crate::output::{emit, stdout, Connected, Disconnected, Gap, Message, RecordLine, ReplyLine};

/// Prints events of the link.
pub(super) struct Printer {
    pub(super) json: bool,
}

/// `2026-01-01T12:00:00.123Z`.
pub(super) fn time(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok())
        .map_or_else(|| format!("{secs}s"), |s| format!("{}.{:03}Z", s.trim_end_matches('Z'), ms % 1000))
}

impl Printer {
    pub(super) fn connected(&self, hello: &AgentHello, restarted: bool, peer: &str) -> anyhow::Result<()> {
        if self.json {
            emit(&Message::Connected(Connected {
                boot: hello.boot.clone(),
                agent: hello.agent.clone(),
                level: hello.level,
                restarted,
                peer: peer.to_owned(),
            }))
        } else {
            let again = if restarted { " (a new boot: the agent restarted)" } else { "" };
            eprintln!(
                "agent connected from {peer}: {}, boot {}, level {}{again}",
                escape(&hello.agent),
                escape(&hello.boot),
                hello.level
            );
            Ok(())
        }
    }

    pub(super) fn disconnected(&self, reason: &str) -> anyhow::Result<()> {
        if self.json {
            emit(&Message::Disconnected(Disconnected { reason: reason.to_owned() }))
        } else {
            eprintln!("agent disconnected: {}", escape(reason));
            Ok(())
        }
    }

    pub(super) fn gap(&self, first: u64, last: u64) -> anyhow::Result<()> {
        if self.json {
            emit(&Message::Gap(Gap { first, last }))
        } else {
            writeln!(stdout(), "!! records {first} to {last} never arrived and were not reported dropped")?;
            Ok(())
        }
    }

    pub(super) fn record(&self, r: &Record, lost: Option<u64>) -> anyhow::Result<()> {
        if self.json {
            let mut data = RecordLine {
                seq: r.seq,
                time_ms: r.time_ms,
                time: time(r.time_ms),
                level: r.level,
                kind: String::new(),
                source: r.source.clone(),
                computation: r.computation.clone(),
                message: r.message.clone(),
                state: None,
                first_seq: None,
                count: None,
                lost: None,
            };
            data.kind = match &r.kind {
                RecordKind::Log => "log",
                RecordKind::Event { state } => {
                    data.state = Some(state.clone());
                    "event"
                }
                RecordKind::Dropped { first_seq } => {
                    data.first_seq = Some(*first_seq);
                    data.count = r.dropped_count();
                    data.lost = lost;
                    "dropped"
                }
            }
            .to_owned();
            return emit(&Message::Record(data));
        }
        let tag = match (&r.kind, r.level) {
            (RecordKind::Event { .. }, _) => "EVENT",
            (RecordKind::Dropped { .. }, _) => "LOST",
            (_, Level::Error) => "ERROR",
            (_, Level::Warn) => "WARN",
            (_, Level::Info) => "INFO",
            (_, Level::Debug) => "DEBUG",
            (_, Level::Trace) => "TRACE",
        };
        let mut line = format!("{} {tag:5} {}: {}", time(r.time_ms), escape(&r.source), escape(&r.message));
        if let Some(n) = lost {
            line.push_str(&format!(" ({n} of them never reached this host)"));
        }
        writeln!(stdout(), "{line}")?;
        Ok(())
    }

    pub(super) fn reply(&self, op: &str, result: &Result<ReplyData, String>) -> anyhow::Result<()> {
        if self.json {
            return emit(&Message::Reply(ReplyLine::new(op, result)));
        }
        match result {
            Ok(ReplyData::Manifest { digest }) => eprintln!("manifest accepted by the agent: {digest}"),
            Ok(ReplyData::Level { level }) => eprintln!("the agent's level is now {level}"),
            Ok(ReplyData::Status(s)) => eprintln!("agent status: {}", escape(&s.state)),
            Err(e) => eprintln!("the agent refused {op}: {}", escape(e)),
        }
        Ok(())
    }
}
