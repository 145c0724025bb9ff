//! The log link: connects to the host, sends the queue, takes acks and the
//! operator's requests; reconnects with capped exponential backoff.
//!
//! One session per connection: hellos both ways, then a reader (acks,
//! requests) and a writer (replies first, then records in batches) run side
//! by side until either side fails or the agent stops. A host that does not
//! read makes the writer wait; the queue keeps filling, and dropping its
//! oldest records, without ever making a caller of `log` wait.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cvm_protocol::logstream::{
    AgentHello, AgentMessage, AgentStatus, Deframer, HostMessage, Operation, Reply, ReplyData, Request,
    VERSION,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::target::{Stream, Target};
use super::{Control, Shared};

/// First wait after a failed attempt.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between attempts.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Time allowed to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for the host's hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Records per write.
const BATCH: usize = 256;
/// Replies the host may leave unread before the agent hangs up on it.
const MAX_PENDING_REPLIES: usize = 16;

/// Runs until `stop` is cancelled.
pub(super) async fn run(
    shared: Arc<Shared>,
    target: Target,
    control: Arc<dyn Control>,
    boot: String,
    stop: CancellationToken,
) {
    let mut delay = MIN_BACKOFF;
    // Whether the link being down was already logged: a host away for long
    // must not fill the queue with one line per attempt.
    let mut said_down = false;
    loop {
        let attempt = tokio::select! {
            r = tokio::time::timeout(CONNECT_TIMEOUT, target.connect()) => {
                r.unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")))
            }
            _ = stop.cancelled() => return,
        };
        match attempt {
            Ok(stream) => {
                let outcome =
                    session(stream, &shared, control.as_ref(), &boot, &target, &stop, &mut delay).await;
                shared.connected.store(false, Ordering::Relaxed);
                if stop.is_cancelled() {
                    return;
                }
                match outcome {
                    Ok(()) => log::info!("log link {target}: the host closed it; reconnecting"),
                    Err(e) => log::warn!("log link {target}: {e}; reconnecting"),
                }
                said_down = true;
            }
            Err(e) if !said_down => {
                log::info!("log link {target}: cannot connect ({e}); retrying in the background");
                said_down = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.cancelled() => return,
        }
        delay = (delay * 2).min(MAX_BACKOFF);
    }
}

async fn session(
    stream: Box<dyn Stream>,
    shared: &Shared,
    control: &dyn Control,
    boot: &str,
    target: &Target,
    stop: &CancellationToken,
    delay: &mut Duration,
) -> Result<(), String> {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut out = Vec::new();
    let hello = AgentHello {
        version: VERSION,
        boot: boot.to_owned(),
        agent: concat!("cvm-agent ", env!("CARGO_PKG_VERSION")).to_owned(),
        level: super::current_level(),
    };
    AgentMessage::Hello(hello).encode(&mut out).map_err(|e| e.to_string())?;
    wr.write_all(&out).await.map_err(|e| format!("sending hello: {e}"))?;

    let mut deframer = Deframer::new();
    let mut buf = vec![0u8; 16 << 10];
    let first = tokio::time::timeout(HELLO_TIMEOUT, next_message(&mut rd, &mut deframer, &mut buf))
        .await
        .map_err(|_| "the host sent no hello".to_owned())??;
    if !matches!(first, HostMessage::Hello(_)) {
        return Err("the host's first message was not its hello".into());
    }
    *delay = MIN_BACKOFF;
    shared.lock().rewind();
    shared.connected.store(true, Ordering::Relaxed);
    log::info!("log link {target}: connected");

    let (reply_tx, mut reply_rx) = mpsc::channel::<Reply>(MAX_PENDING_REPLIES);
    let reader = async {
        loop {
            match next_message(&mut rd, &mut deframer, &mut buf).await? {
                HostMessage::Ack { seq } => shared.lock().ack(seq),
                HostMessage::Request(request) => {
                    let reply = handle(request, control, shared);
                    reply_tx.try_send(reply).map_err(|_| {
                        "the host sends requests faster than it reads the replies; hanging up".to_owned()
                    })?;
                    shared.notify.notify_one();
                }
                HostMessage::Hello(_) => return Err::<(), String>("the host sent a second hello".into()),
            }
        }
    };
    let writer = async {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            out.clear();
            batch.clear();
            while let Ok(reply) = reply_rx.try_recv() {
                // A reply is small; one that cannot be encoded is dropped.
                let _ = AgentMessage::Reply(reply).encode(&mut out);
            }
            let now_ms =
                SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            shared.lock().take(BATCH, now_ms, shared.computation.get().map(String::as_str), &mut batch);
            for record in &batch {
                // Messages and sources are cut well below the frame limit,
                // so this cannot fail; a record that did would be skipped.
                let _ = AgentMessage::encode_record(record, &mut out);
            }
            if out.is_empty() {
                shared.notify.notified().await;
                continue;
            }
            wr.write_all(&out).await.map_err(|e| format!("sending: {e}"))?;
        }
    };
    tokio::select! {
        r = reader => r,
        r = writer => r,
        _ = stop.cancelled() => Ok(()),
    }
}

/// Reads until one whole message is in.
///
/// # Cancel safety
/// Not cancel safe across calls that share `deframer`: bytes read are kept
/// there, so a cancelled call loses nothing, but callers here never cancel
/// it mid-session except to end the session.
async fn next_message(
    rd: &mut (impl AsyncRead + Unpin),
    deframer: &mut Deframer,
    buf: &mut [u8],
) -> Result<HostMessage, String> {
    loop {
        if let Some(frame) = deframer.next_frame().map_err(|e| format!("the host broke the framing: {e}"))? {
            return HostMessage::decode(frame).map_err(|e| format!("the host sent a bad message: {e}"));
        }
        let n = rd.read(buf).await.map_err(|e| format!("receiving: {e}"))?;
        if n == 0 {
            return Err("the host closed the link".into());
        }
        deframer.push(&buf[..n]);
    }
}

fn handle(request: Request, control: &dyn Control, shared: &Shared) -> Reply {
    let result = match request.op {
        Operation::Manifest { json } => control.manifest(&json).map(|digest| ReplyData::Manifest { digest }),
        Operation::Status => {
            let c = control.computation();
            let q = shared.lock().stats();
            Ok(ReplyData::Status(AgentStatus {
                state: c.state,
                reason: c.reason,
                computation: c.id,
                manifest_digest: c.manifest_digest,
                level: super::current_level(),
                queued: q.queued,
                capacity: q.capacity,
                dropped_total: q.dropped_total,
                last_seq: q.last_seq,
            }))
        }
        Operation::SetLevel(level) => {
            super::set_level(level);
            log::info!("log level set to {level} by the operator");
            Ok(ReplyData::Level { level })
        }
        Operation::Unsupported { op, reason } => {
            log::warn!("refused the operator's request {op:?}: {reason}");
            Err(format!("refused: {reason}"))
        }
    };
    Reply { id: request.id, result }
}
