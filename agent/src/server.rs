//! The accept loop: TLS handshakes, one HTTP/1.1 connection per client, shutdown.
//!
//! Who gets a slot, and for how long, is [`crate::admission`]'s: every
//! handshake takes a place among the handshakes in progress, every client
//! then a slot of its class (owner or anonymous) or a `503`, and every
//! connection is closed after the idle timeout ([`crate::activity`]).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::activity::Activity;
use crate::admission::{Admitted, Class, HandshakeSlot, HANDSHAKE_TIMEOUT, REJECT_TIMEOUT};
use crate::api::{self, AppState, Exporter, Peer};
use crate::atls::client_key;

/// Time allowed for a request's head, and for the next one on a kept-alive connection.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The TLS stream, shared between hyper (which reads and writes it) and the
/// request handlers (which need its exporter for session evidence). Each
/// poll takes the lock only for the poll itself, and every byte moved
/// touches the connection's activity.
#[derive(Clone)]
struct SharedTls(Arc<Mutex<TlsStream<TcpStream>>>, Arc<Activity>);

impl SharedTls {
    fn with<R>(&self, f: impl FnOnce(Pin<&mut TlsStream<TcpStream>>) -> R) -> R {
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(Pin::new(&mut *guard))
    }
}

impl AsyncRead for SharedTls {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = self.with(|s| s.poll_read(cx, buf));
        if buf.filled().len() > before {
            self.1.touch();
        }
        polled
    }
}

impl AsyncWrite for SharedTls {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = self.with(|s| s.poll_write(cx, buf));
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.1.touch();
        }
        polled
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|s| s.poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|s| s.poll_shutdown(cx))
    }
}

impl Exporter for SharedTls {
    fn export(&self, label: &[u8], context: &[u8]) -> Result<[u8; 32], String> {
        let guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = [0u8; 32];
        guard
            .get_ref()
            .1
            .export_keying_material(&mut out, label, Some(context))
            .map_err(|e| e.to_string())?;
        Ok(out)
    }
}

/// Serves attested TLS on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    tls: rustls::ServerConfig,
    state: Arc<AppState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let slot = tokio::select! {
            s = state.admission.handshakes.acquire() => s,
            _ = shutdown.changed() => break,
        };
        let (tcp, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    log::warn!("accept failed: {e}; backing off");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        // Small TLS records (requests, evidence) must not wait for Nagle's
        // algorithm and the peer's delayed ACK (40 ms a round trip).
        let _ = tcp.set_nodelay(true);
        tasks.spawn(connection(acceptor.clone(), tcp, addr, slot, Arc::clone(&state), shutdown.clone()));
        while tasks.try_join_next().is_some() {}
    }
    while tasks.try_join_next().is_some() {}
    log::info!("shutting down: waiting for {} open connections", tasks.len());
    let _ =
        tokio::time::timeout(Duration::from_secs(10), async { while tasks.join_next().await.is_some() {} })
            .await;
}

/// One client: its handshake in `slot`, then its class's slot, then HTTP until it ends, idles or the agent stops.
async fn connection(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    addr: SocketAddr,
    mut slot: HandshakeSlot,
    state: Arc<AppState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let tls = tokio::select! {
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => match r {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => return log::debug!("{addr}: TLS handshake failed: {e}"),
            Err(_) => return log::debug!("{addr}: TLS handshake timed out"),
        },
        _ = &mut slot.evicted => return log::debug!("{addr}: TLS handshake aborted to make room for a newer one"),
    };
    drop(slot);
    let key = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| client_key(c).ok());
    let class = match &key {
        Some(k) if !state.computation.roles(k).is_empty() => Class::Owner,
        _ => Class::Anonymous,
    };
    let activity = Activity::new();
    let shared = SharedTls(Arc::new(Mutex::new(tls)), Arc::clone(&activity));
    let _permit = match state.admission.connections.admit(class) {
        Admitted::Served(permit) => permit,
        Admitted::Rejected(_permit) => return reject(shared, addr, class).await,
        Admitted::Dropped => {
            return log::debug!("{addr}: no connection slot for a client ({class:?}); closed")
        }
    };
    let idle_timeout = state.admission.limits.idle_timeout;
    let peer =
        Arc::new(Peer { key, class, exporter: Arc::new(shared.clone()), activity: Arc::clone(&activity) });
    let service = service_fn(move |req| api::handle(Arc::clone(&state), Arc::clone(&peer), req));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(shared), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => if let Err(e) = r { log::debug!("{addr}: connection ended: {e}") },
        // Dropping the connection drops the request in progress with it (an
        // upload is abandoned and discarded, so its owner may retry at once).
        _ = activity.idle(idle_timeout) => {
            log::debug!("{addr}: closed after {} s without traffic", idle_timeout.as_secs());
        }
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}

/// Tells a client that found no slot `503` with `Retry-After` on its first request, and closes.
async fn reject(shared: SharedTls, addr: SocketAddr, class: Class) {
    log::debug!("{addr}: no connection slot for a client ({class:?}); answering 503");
    let service = service_fn(move |_req| async move {
        let mut resp = api::ApiError::NoSlot.response();
        resp.headers_mut()
            .insert(hyper::header::CONNECTION, hyper::header::HeaderValue::from_static("close"));
        Ok::<_, std::convert::Infallible>(resp)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(REJECT_TIMEOUT)
        .keep_alive(false)
        .serve_connection(TokioIo::new(shared), service);
    let _ = tokio::time::timeout(REJECT_TIMEOUT + Duration::from_secs(1), conn).await;
}
