//! The accept loop: TLS handshakes, one HTTP/1.1 connection per client, shutdown.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::api::{self, AppState, Exporter, Peer};
use crate::atls::client_key;

/// Most connections served at once.
const MAX_CONNECTIONS: usize = 64;
/// Time allowed for a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS stream, shared between hyper (which reads and writes it) and the
/// request handlers (which need its exporter for session evidence). Each
/// poll takes the lock only for the poll itself.
#[derive(Clone)]
struct SharedTls(Arc<Mutex<TlsStream<TcpStream>>>);

impl SharedTls {
    fn with<R>(&self, f: impl FnOnce(Pin<&mut TlsStream<TcpStream>>) -> R) -> R {
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(Pin::new(&mut *guard))
    }
}

impl AsyncRead for SharedTls {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.with(|s| s.poll_read(cx, buf))
    }
}

impl AsyncWrite for SharedTls {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.with(|s| s.poll_write(cx, buf))
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
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
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
        let acceptor = acceptor.clone();
        let state = Arc::clone(&state);
        let mut conn_shutdown = shutdown.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return log::debug!("{addr}: TLS handshake failed: {e}"),
                Err(_) => return log::debug!("{addr}: TLS handshake timed out"),
            };
            let key =
                tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| client_key(c).ok());
            let shared = SharedTls(Arc::new(Mutex::new(tls)));
            let peer = Arc::new(Peer { key, exporter: Arc::new(shared.clone()) });
            let service = service_fn(move |req| api::handle(Arc::clone(&state), Arc::clone(&peer), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(shared), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => if let Err(e) = r { log::debug!("{addr}: connection ended: {e}") },
                _ = conn_shutdown.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
                }
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.try_join_next().is_some() {}
    log::info!("shutting down: waiting for {} open connections", tasks.len());
    let _ =
        tokio::time::timeout(Duration::from_secs(10), async { while tasks.join_next().await.is_some() {} })
            .await;
}
