//! `cvmctl logs status | level | manifest`: one request to the agent, through
//! the control socket of a running `logs listen`.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use cvm_protocol::logstream::{AgentMessage, Deframer, HostMessage, Operation, ReplyData, Request};
use cvm_protocol::terminal::escape;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{ControlArgs, LogsCommand};
use crate::output::{emit, Message, ReplyLine};
use crate::{Error, Refusal};

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The listener cannot be reached.
    #[error("cannot reach `cvmctl logs listen` at {path}: {source}")]
    Unreachable {
        /// The control socket.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The listener or the agent refused the request, or there is no agent.
    #[error("{0}")]
    Refused(String),
    /// The answer was not a reply.
    #[error("bad answer from the listener: {0}")]
    BadAnswer(String),
}

/// Sends `op` to the agent behind the listener's control socket and returns its answer.
pub async fn ask(control: &Path, op: Operation) -> Result<ReplyData, ControlError> {
    let unreachable = |source| ControlError::Unreachable { path: control.display().to_string(), source };
    let mut stream = tokio::net::UnixStream::connect(control).await.map_err(unreachable)?;
    let mut out = Vec::new();
    HostMessage::Request(Request { id: 1, op })
        .encode(&mut out)
        .map_err(|e| ControlError::Refused(e.to_string()))?;
    stream.write_all(&out).await.map_err(unreachable)?;
    let mut deframer = Deframer::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if let Some(frame) = deframer.next_frame().map_err(|e| ControlError::BadAnswer(e.to_string()))? {
            return match AgentMessage::decode(frame).map_err(|e| ControlError::BadAnswer(e.to_string()))? {
                AgentMessage::Reply(r) => r.result.map_err(ControlError::Refused),
                _ => Err(ControlError::BadAnswer("not a reply".into())),
            };
        }
        let n = tokio::time::timeout(Duration::from_secs(40), stream.read(&mut buf))
            .await
            .map_err(|_| ControlError::BadAnswer("no answer within 40 s".into()))?
            .map_err(unreachable)?;
        if n == 0 {
            return Err(ControlError::BadAnswer(
                "the listener closed the connection without an answer".into(),
            ));
        }
        deframer.push(&buf[..n]);
    }
}

/// Runs `logs status`, `logs level` or `logs manifest`.
pub(super) async fn request(cmd: LogsCommand) -> crate::Result {
    let (op, args): (Operation, ControlArgs) = match cmd {
        LogsCommand::Status(a) => (Operation::Status, a),
        LogsCommand::Level { level, control } => (Operation::SetLevel(level), control),
        LogsCommand::Manifest { file, control } => {
            let text = String::from_utf8(crate::args::read_file(&file)?)
                .with_context(|| format!("{} is not UTF-8", file.display()))?;
            (Operation::Manifest { json: text }, control)
        }
        LogsCommand::Listen(a) => return super::listen(a).await,
    };
    let name = super::listen::op_name(&op);
    let answer = ask(&args.control, op).await;
    if args.json {
        let result = answer.as_ref().map(Clone::clone).map_err(ToString::to_string);
        emit(&Message::Reply(ReplyLine::new(name, &result)))?;
    }
    match answer {
        Ok(data) => {
            if !args.json {
                print_reply(&data)?;
            }
            Ok(())
        }
        Err(e @ ControlError::Refused(_)) => {
            Err(Error::Refused(Refusal::other(escape(&e.to_string()).into_owned())))
        }
        Err(e) => Err(Error::Transport(anyhow::anyhow!("{}", escape(&e.to_string())))),
    }
}

fn print_reply(data: &ReplyData) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = crate::output::stdout();
    match data {
        ReplyData::Manifest { digest } => writeln!(out, "manifest accepted: {digest}")?,
        ReplyData::Level { level } => writeln!(out, "level: {level}")?,
        ReplyData::Status(s) => {
            let state = match &s.reason {
                Some(r) => format!("{} ({r})", s.state),
                None => s.state.clone(),
            };
            writeln!(out, "state:       {}", escape(&state))?;
            if let (Some(id), Some(d)) = (&s.computation, &s.manifest_digest) {
                writeln!(out, "computation: {} (manifest {d})", escape(id))?;
            }
            writeln!(out, "level:       {}", s.level)?;
            writeln!(
                out,
                "queue:       {} of {} records awaiting acknowledgement; {} dropped since start; last record {}",
                s.queued, s.capacity, s.dropped_total, s.last_seq
            )?;
        }
    }
    Ok(())
}
