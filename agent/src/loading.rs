//! Sealed inputs being decrypted into memory: progress for the status and
//! the log stream.
//!
//! A load registers a [`Load`] in [`Loads`] for as long as it runs (the
//! [`LoadGuard`] removes it, on success or failure); the workers report the
//! bytes they opened, the status lists every load with its rate and the
//! time left, and the log gets a line every [`LOG_EVERY`] while bytes
//! arrive. The workers only store a counter: nothing here slows the load,
//! and nothing waits on the state machine.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cvm_protocol::api::Loading;

/// How often a running load logs its progress.
pub const LOG_EVERY: Duration = Duration::from_secs(2);

/// One load in progress.
pub struct Load {
    name: String,
    total: u64,
    done: AtomicU64,
    started: Instant,
    /// Milliseconds after `started` of the last progress line.
    logged_ms: AtomicU64,
}

impl Load {
    /// A load of `total` bytes of plaintext for the input `name`.
    pub fn new(name: String, total: u64) -> Load {
        Load { name, total, done: AtomicU64::new(0), started: Instant::now(), logged_ms: AtomicU64::new(0) }
    }

    /// Records that `done` bytes are opened (called by the workers); logs a
    /// line when [`LOG_EVERY`] passed since the last one.
    pub fn advance(&self, done: u64) {
        self.done.fetch_max(done, Ordering::Relaxed);
        let now_ms = self.started.elapsed().as_millis() as u64;
        let last = self.logged_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) < LOG_EVERY.as_millis() as u64 || done >= self.total {
            return;
        }
        // One worker logs; the others see the new mark and skip.
        if self.logged_ms.compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            let s = self.snapshot();
            log::info!(
                "{}: {} of {} bytes decrypted into locked memory ({:.0} MB/s, {} s left)",
                s.input,
                s.bytes,
                s.total,
                s.bytes_per_s as f64 / 1e6,
                s.seconds_left.map_or_else(|| "?".into(), |t| t.to_string())
            );
        }
    }

    /// The load as the status reports it.
    pub fn snapshot(&self) -> Loading {
        let bytes = self.done.load(Ordering::Relaxed).min(self.total);
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { (bytes as f64 / secs) as u64 } else { 0 };
        let seconds_left = (rate > 0).then(|| (self.total - bytes).div_ceil(rate));
        Loading { input: self.name.clone(), bytes, total: self.total, bytes_per_s: rate, seconds_left }
    }
}

/// The loads in progress.
#[derive(Clone, Default)]
pub struct Loads(Arc<Mutex<BTreeMap<String, Arc<Load>>>>);

impl Loads {
    /// Registers a load until the guard is dropped.
    pub fn start(&self, name: String, total: u64) -> LoadGuard {
        let load = Arc::new(Load::new(name.clone(), total));
        self.lock().insert(name.clone(), Arc::clone(&load));
        LoadGuard { loads: self.clone(), name, load }
    }

    /// Every load in progress, by input name.
    pub fn snapshot(&self) -> Vec<Loading> {
        self.lock().values().map(|l| l.snapshot()).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Load>>> {
        // Each update is one insert or remove: a panic elsewhere leaves the map whole.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A registered load; dropping it removes the load from the status.
pub struct LoadGuard {
    loads: Loads,
    name: String,
    load: Arc<Load>,
}

impl LoadGuard {
    /// The load, for its workers.
    pub fn load(&self) -> &Load {
        &self.load
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.loads.lock().remove(&self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_is_listed_with_its_progress_until_it_ends() {
        let loads = Loads::default();
        let guard = loads.start("artifacts/weights".into(), 1000);
        guard.load().advance(250);
        std::thread::sleep(Duration::from_millis(20));
        let s = loads.snapshot();
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].input.as_str(), s[0].bytes, s[0].total), ("artifacts/weights", 250, 1000));
        assert!(s[0].bytes_per_s > 0 && s[0].seconds_left.is_some(), "{s:?}");
        // Workers report out of order: the count never goes back.
        guard.load().advance(100);
        assert_eq!(loads.snapshot()[0].bytes, 250);
        drop(guard);
        assert!(loads.snapshot().is_empty());
    }
}
