//! `cvmctl logs listen`: accept the agent, print, acknowledge, relay requests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use cvm_protocol::logstream::{
    AgentMessage, Deframer, HostHello, HostMessage, Operation, ReplyData, Request, VERSION,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::host::{HostSession, Seen};
use super::output::Printer;
use super::ListenArgs;

/// A connected agent or control client.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A request for the connected agent, with where its answer goes.
pub(super) type Call = (Operation, oneshot::Sender<Result<ReplyData, String>>);

/// The current agent connection's request channel, if an agent is connected.
type Current = Arc<Mutex<Option<mpsc::Sender<Call>>>>;

/// A request in flight: its operation's name, and who waits for the answer.
type Pending = (&'static str, Option<oneshot::Sender<Result<ReplyData, String>>>);

/// Time allowed for the agent's hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener, PathBuf),
    Vsock(tokio_vsock::VsockListener),
}

impl Listener {
    async fn accept(&self) -> std::io::Result<(Box<dyn Stream>, String)> {
        Ok(match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                let _ = s.set_nodelay(true);
                (Box::new(s), peer.to_string())
            }
            Listener::Unix(l, path) => (Box::new(l.accept().await?.0), path.display().to_string()),
            Listener::Vsock(l) => {
                let (s, peer) = l.accept().await?;
                (Box::new(s), format!("vsock CID {} port {}", peer.cid(), peer.port()))
            }
        })
    }
}

/// Binds a Unix socket at `path`, replacing a stale socket (never another kind of file).
fn bind_unix(path: &Path, mode: u32) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        anyhow::ensure!(meta.file_type().is_socket(), "{} exists and is not a socket", path.display());
        std::fs::remove_file(path).with_context(|| format!("cannot replace {}", path.display()))?;
    }
    let l = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(l)
}

/// Runs `logs listen` until SIGINT or SIGTERM.
pub async fn listen(args: ListenArgs) -> crate::Result {
    let manifest = match &args.manifest {
        Some(path) => {
            let text = crate::args::read_file(path)?;
            let text = String::from_utf8(text).with_context(|| format!("{} is not UTF-8", path.display()))?;
            // Check it here, so that the operator learns of a mistake before the agent does.
            cvm_protocol::Manifest::from_json(text.as_bytes())
                .with_context(|| format!("invalid manifest {}", path.display()))?;
            Some(text)
        }
        None => None,
    };
    let t = &args.transport;
    let listener = if let Some(addr) = t.tcp {
        let l =
            tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        eprintln!("listening on {}", l.local_addr()?);
        Listener::Tcp(l)
    } else if let Some(path) = &t.uds {
        let l = bind_unix(path, 0o600)?;
        eprintln!("listening on {}", path.display());
        Listener::Unix(l, path.clone())
    } else if let Some(port) = t.vsock {
        let addr = tokio_vsock::VsockAddr::new(tokio_vsock::VMADDR_CID_ANY, port);
        let l = tokio_vsock::VsockListener::bind(addr)
            .with_context(|| format!("cannot listen on vsock port {port}"))?;
        eprintln!("listening on vsock port {port}");
        Listener::Vsock(l)
    } else {
        return Err(anyhow::anyhow!("give one of --tcp, --vsock, --uds").into());
    };
    let control = match &args.control {
        Some(path) => Some(bind_unix(path, 0o600)?),
        None => None,
    };

    let printer = Arc::new(Printer { json: args.json });
    let session = Arc::new(Mutex::new(HostSession::default()));
    let current: Current = Arc::new(Mutex::new(None));
    let mut initial = Vec::new();
    if let Some(json) = manifest {
        initial.push(Operation::Manifest { json });
    }
    if let Some(level) = args.level {
        initial.push(Operation::SetLevel(level));
    }
    let mut connection: Option<tokio::task::JoinHandle<anyhow::Result<()>>> = None;
    let (failed_tx, mut failed) = mpsc::channel::<anyhow::Error>(1);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        eprintln!("cvmctl: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if let Some(old) = connection.take() {
                    old.abort();
                }
                let (tx, rx) = mpsc::channel(16);
                *current.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
                let (session, printer, initial, failed_tx) =
                    (Arc::clone(&session), Arc::clone(&printer), initial.clone(), failed_tx.clone());
                connection = Some(tokio::spawn(async move {
                    let outcome = serve_agent(stream, &peer, &session, &printer, initial, rx).await;
                    let reason = match outcome {
                        Ok(()) => "the agent closed the link".to_owned(),
                        Err(Ended::Link(e)) => e,
                        Err(Ended::Output(e)) => {
                            let _ = failed_tx.send(e).await;
                            return Ok(());
                        }
                    };
                    printer.disconnected(&reason)
                }));
            }
            client = async { match &control { Some(c) => c.accept().await, None => std::future::pending().await } } => {
                if let Ok((stream, _)) = client {
                    let current = Arc::clone(&current);
                    tokio::spawn(async move { serve_control(Box::new(stream), &current).await });
                }
            }
            Some(e) = failed.recv() => return Err(e.into()),
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    if let Some(path) = &args.control {
        let _ = std::fs::remove_file(path);
    }
    if let Listener::Unix(_, path) = &listener {
        let _ = std::fs::remove_file(path);
    }
    let s = session.lock().unwrap_or_else(PoisonError::into_inner);
    if !args.json {
        eprintln!(
            "stopped: {} records received from boot {}, {} duplicates dropped, {} reported lost, {} missing unexplained",
            s.last_seen(),
            cvm_protocol::terminal::escape(s.boot().unwrap_or("-")),
            s.duplicates,
            s.lost,
            s.unaccounted
        );
    }
    Ok(())
}

/// How a connection ended badly.
enum Ended {
    /// The link failed or the agent misbehaved.
    Link(String),
    /// Standard output failed (a closed pipe): stop listening.
    Output(anyhow::Error),
}

impl From<anyhow::Error> for Ended {
    fn from(e: anyhow::Error) -> Ended {
        Ended::Output(e)
    }
}

fn link<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> Ended {
    move |e| Ended::Link(format!("{what}: {e}"))
}

async fn serve_agent(
    stream: Box<dyn Stream>,
    peer: &str,
    session: &Mutex<HostSession>,
    printer: &Printer,
    initial: Vec<Operation>,
    mut calls: mpsc::Receiver<Call>,
) -> Result<(), Ended> {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut out = Vec::new();
    HostMessage::Hello(HostHello { version: VERSION }).encode(&mut out).map_err(link("hello"))?;
    wr.write_all(&out).await.map_err(link("sending hello"))?;
    let mut deframer = Deframer::new();
    let mut buf = vec![0u8; 64 << 10];
    let hello = loop {
        if let Some(frame) = deframer.next_frame().map_err(link("agent framing"))? {
            match AgentMessage::decode(frame).map_err(link("agent hello"))? {
                AgentMessage::Hello(h) => break h,
                _ => return Err(Ended::Link("the agent's first message was not its hello".into())),
            }
        }
        let n = tokio::time::timeout(HELLO_TIMEOUT, rd.read(&mut buf))
            .await
            .map_err(|_| Ended::Link("no hello from the agent".into()))?
            .map_err(link("receiving"))?;
        if n == 0 {
            return Err(Ended::Link("closed before its hello".into()));
        }
        deframer.push(&buf[..n]);
    };
    let greeting = session.lock().unwrap_or_else(PoisonError::into_inner).hello(&hello);
    printer.connected(&hello, greeting.restarted, peer)?;
    let mut acked = 0;
    out.clear();
    if let Some(seq) = greeting.ack {
        HostMessage::Ack { seq }.encode(&mut out).map_err(link("ack"))?;
        acked = seq;
    }
    // Requests in flight: their operation's name, and who waits for the answer
    // (nobody for the ones `listen` itself sends: it prints their answers).
    let mut pending: HashMap<u64, Pending> = HashMap::new();
    let mut next_id = 0u64;
    let mut send = |op: Operation, tx, out: &mut Vec<u8>, pending: &mut HashMap<_, _>| -> Result<(), Ended> {
        next_id += 1;
        let name = op_name(&op);
        HostMessage::Request(Request { id: next_id, op }).encode(out).map_err(link("request"))?;
        pending.insert(next_id, (name, tx));
        Ok(())
    };
    for op in initial {
        send(op, None, &mut out, &mut pending)?;
    }
    wr.write_all(&out).await.map_err(link("sending"))?;
    loop {
        // Frames already in the deframer first: the read that brought the
        // agent's hello may have brought its first records too, and a quiet
        // agent would send nothing more to wake a read.
        while let Some(frame) = deframer.next_frame().map_err(link("agent framing"))? {
            match AgentMessage::decode(frame).map_err(link("agent message"))? {
                AgentMessage::Record(r) => {
                    let seen = session.lock().unwrap_or_else(PoisonError::into_inner).record(&r);
                    if let Seen::New { lost, gap } = seen {
                        if let Some((a, b)) = gap {
                            printer.gap(a, b)?;
                        }
                        printer.record(&r, lost)?;
                    }
                }
                AgentMessage::Reply(reply) => match pending.remove(&reply.id) {
                    Some((_, Some(tx))) => {
                        let _ = tx.send(reply.result);
                    }
                    Some((op, None)) => printer.reply(op, &reply.result)?,
                    None => return Err(Ended::Link(format!("a reply to no request ({})", reply.id))),
                },
                AgentMessage::Hello(_) => return Err(Ended::Link("a second hello".into())),
            }
        }
        let last = session.lock().unwrap_or_else(PoisonError::into_inner).last_seen();
        if last > acked {
            out.clear();
            HostMessage::Ack { seq: last }.encode(&mut out).map_err(link("ack"))?;
            wr.write_all(&out).await.map_err(link("sending"))?;
            acked = last;
        }
        tokio::select! {
            n = rd.read(&mut buf) => {
                let n = n.map_err(link("receiving"))?;
                if n == 0 {
                    return Ok(());
                }
                deframer.push(&buf[..n]);
            }
            Some((op, tx)) = calls.recv() => {
                out.clear();
                send(op, Some(tx), &mut out, &mut pending)?;
                wr.write_all(&out).await.map_err(link("sending"))?;
            }
        }
    }
}

pub(super) fn op_name(op: &Operation) -> &'static str {
    match op {
        Operation::Manifest { .. } => "manifest",
        Operation::Status => "status",
        Operation::SetLevel(_) => "set_level",
        Operation::Unsupported { .. } => "unsupported",
    }
}

/// One control client: one request in, its reply out.
async fn serve_control(mut stream: Box<dyn Stream>, current: &Current) {
    let mut deframer = Deframer::new();
    let mut buf = vec![0u8; 64 << 10];
    let request = loop {
        match deframer.next_frame() {
            Ok(Some(frame)) => match HostMessage::decode(frame) {
                Ok(HostMessage::Request(r)) => break r,
                _ => return,
            },
            Ok(None) => {}
            Err(_) => return,
        }
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => deframer.push(&buf[..n]),
            _ => return,
        }
    };
    let agent = current.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let result = match agent {
        None => Err("no agent is connected to this listener".to_owned()),
        Some(agent) => {
            let (tx, rx) = oneshot::channel();
            if agent.send((request.op, tx)).await.is_err() {
                Err("no agent is connected to this listener".to_owned())
            } else {
                match tokio::time::timeout(Duration::from_secs(30), rx).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(_)) => Err("the agent disconnected before it answered".to_owned()),
                    Err(_) => Err("the agent did not answer within 30 s".to_owned()),
                }
            }
        }
    };
    let mut out = Vec::new();
    if AgentMessage::Reply(cvm_protocol::logstream::Reply { id: request.id, result }).encode(&mut out).is_ok()
    {
        let _ = stream.write_all(&out).await;
        let _ = stream.shutdown().await;
    }
}
