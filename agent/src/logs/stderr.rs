//! Log lines to stderr, written by a thread of their own.
//!
//! In the VM stderr is often a serial console that writes a few KB per
//! second: a caller of `log` must not wait for it. Lines go into a bounded
//! channel; when it is full a line is dropped and counted, and the thread
//! writes the count before its next line.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Lines waiting for stderr.
const LINES: usize = 4096;

enum Line {
    Text(String),
    Flush(std::sync::mpsc::Sender<()>),
}

/// The sending side; see the module documentation.
pub(crate) struct StderrSink {
    tx: SyncSender<Line>,
    dropped: Arc<AtomicU64>,
}

impl StderrSink {
    /// Starts the writer thread.
    pub(crate) fn start() -> std::io::Result<StderrSink> {
        let (tx, rx) = sync_channel(LINES);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&dropped);
        std::thread::Builder::new().name("stderr-log".into()).spawn(move || write_lines(&rx, &counter))?;
        Ok(StderrSink { tx, dropped })
    }

    /// Queues a line; never waits.
    pub(crate) fn line(&self, text: String) {
        match self.tx.try_send(Line::Text(text)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Waits until every line queued so far is written, at most `timeout`.
    pub(crate) fn flush(&self, timeout: Duration) {
        let end = Instant::now() + timeout;
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let mut marker = Line::Flush(done_tx);
        loop {
            match self.tx.try_send(marker) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if Instant::now() < end => {
                    marker = m;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return,
            }
        }
        let _ = done_rx.recv_timeout(end.saturating_duration_since(Instant::now()));
    }
}

fn write_lines(rx: &Receiver<Line>, dropped: &AtomicU64) {
    for line in rx {
        match line {
            Line::Text(text) => {
                let mut err = std::io::stderr().lock();
                let n = dropped.swap(0, Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(err, "[{n} log lines dropped: stderr was too slow]");
                }
                let _ = writeln!(err, "{text}");
            }
            Line::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}
