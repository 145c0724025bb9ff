//! A connection's activity, for the idle timeout.
//!
//! The connection's I/O [`Activity::touch`]es it whenever a byte moves
//! either way; a request handler marks the time it works on the agent's side
//! (a TPM quote, a report from the secure processor, decrypting host
//! storage) with [`Activity::busy`], which no client can be blamed for.
//! [`Activity::idle`] completes once neither happened for the timeout: a
//! client that stalls (an upload that stops sending, a download that stops
//! reading, a connection that says nothing) loses its connection, and what
//! it had in progress is dropped with it (a partial upload is discarded and
//! its owner may retry at once).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// When a connection last moved a byte, and whether the agent is working for it.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    /// Milliseconds from `start` to the last byte moved or the end of the last busy time.
    last_ms: AtomicU64,
    busy: AtomicUsize,
}

/// The agent works on a request while this lives; see [`Activity::busy`].
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Activity {
    /// A connection that has just moved bytes (its handshake).
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity { start: Instant::now(), last_ms: AtomicU64::new(0), busy: AtomicUsize::new(0) })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Bytes moved now.
    pub fn touch(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Marks the agent's own work until the guard drops: the connection is
    /// not idle meanwhile, and its idle time starts again afterwards.
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        Busy(Arc::clone(self))
    }

    /// Completes once the connection has been idle for `timeout`.
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads the state.
    pub async fn idle(&self, timeout: Duration) {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        loop {
            let idle_ms = self.now_ms().saturating_sub(self.last_ms.load(Ordering::Relaxed));
            if self.busy.load(Ordering::Acquire) > 0 {
                tokio::time::sleep(timeout).await;
            } else if idle_ms >= timeout_ms {
                return;
            } else {
                tokio::time::sleep(Duration::from_millis(timeout_ms - idle_ms)).await;
            }
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_fires_after_the_timeout_without_traffic_and_never_while_busy() {
        let a = Activity::new();
        let t = Instant::now();
        a.idle(Duration::from_millis(200)).await;
        assert!(t.elapsed() >= Duration::from_millis(200));

        let busy = a.busy();
        let waited =
            tokio::time::timeout(Duration::from_millis(500), a.idle(Duration::from_millis(100))).await;
        assert!(waited.is_err(), "a connection the agent works for is not idle");
        drop(busy);
        let t = Instant::now();
        a.idle(Duration::from_millis(100)).await;
        assert!(t.elapsed() >= Duration::from_millis(90), "idle time starts again after the work");
    }

    #[tokio::test]
    async fn traffic_postpones_idle() {
        let a = Activity::new();
        let watcher = {
            let a = Arc::clone(&a);
            tokio::spawn(async move { a.idle(Duration::from_millis(300)).await })
        };
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            a.touch();
        }
        assert!(!watcher.is_finished(), "bytes every 100 ms keep a 300 ms timeout away");
        watcher.await.unwrap();
    }
}
