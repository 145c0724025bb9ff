//! The agent's logs: the `log` facade's records and the computation's state
//! events, to stderr and to the host.
//!
//! A call to `log` or [`state_event`] formats its record and hands it to two
//! sinks, neither of which can make it wait:
//!
//! - stderr (the VM's serial console), through a thread of its own and a
//!   bounded channel (`stderr.rs`);
//! - the host, through a bounded queue (`queue.rs`) that a task sends over the
//!   log link (`link.rs`: vsock, TCP or a Unix socket, see [`Target`]). The
//!   queue keeps what the host has not acknowledged; when it is full the
//!   oldest records give way to a count of them, which reaches the host
//!   when the link is back. The link reconnects with capped exponential
//!   backoff and sends again what was not acknowledged.
//!
//! One level applies to both: `log_level` at start, changed at run time by
//! the operator's `set_level` request on the link. State events are sent at
//! every level: they are few, and they are what an operator watches.
//!
//! The same link carries the operator's requests ([`Control`]): the manifest
//! for an agent that waits for one, the status, the level. Nothing else.
//!
//! Nothing secret is logged: the agent logs names, sizes, digests and key
//! fingerprints, never keys, uploaded bytes or results. The algorithm's own
//! output is logged only when the manifest says `algorithm_output: forward`.
//!
//! The algorithm is hostile: its forwarded lines must not forge records or
//! drive the console. stderr shows every record's source and message through
//! [`cvm_protocol::terminal::escape`] (control characters, escape sequences,
//! bidirectional controls made visible); the host gets the exact text, in
//! JSON frames, and escapes it in its own human rendering.

mod link;
mod queue;
mod stderr;
mod target;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use cvm_protocol::api::State;
use cvm_protocol::logstream::{cut, Level, Record, RecordKind, MAX_MESSAGE, MAX_SOURCE};
use cvm_protocol::terminal::escape;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use target::{Target, HOST_CID};

/// Bytes of records the queue holds at most, whatever its capacity in records.
pub const QUEUE_BYTES: usize = 8 << 20;

/// What the log link's control channel needs from the rest of the agent.
pub trait Control: Send + Sync + 'static {
    /// The operator delivers the manifest (JSON text); the answer is its
    /// digest, or why it was refused.
    fn manifest(&self, json: &str) -> Result<String, String>;
    /// The computation's state for the status.
    fn computation(&self) -> ComputationView;
}

/// The computation as the operator's status shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ComputationView {
    /// `awaiting_manifest`, or the API's state name.
    pub state: String,
    /// Why, for `failed`.
    pub reason: Option<String>,
    /// The manifest's id.
    pub id: Option<String>,
    /// The manifest's digest.
    pub manifest_digest: Option<String>,
}

/// The state the queue and the link share.
struct Shared {
    queue: Mutex<queue::Queue>,
    notify: Notify,
    computation: OnceLock<String>,
    connected: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, queue::Queue> {
        // Every queue operation leaves it consistent, even one cut short.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, time_ms: u64, level: Level, kind: RecordKind, source: &str, message: String) {
        let computation = self.computation.get().cloned();
        self.lock().push(|seq| Record {
            seq,
            time_ms,
            level,
            kind,
            source: cut(source, MAX_SOURCE),
            computation,
            message,
        });
        self.notify.notify_one();
    }
}

struct Logger {
    stderr: stderr::StderrSink,
    host: Option<Arc<Shared>>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

impl Logger {
    fn emit(&self, level: Level, kind: RecordKind, source: &str, message: String, to_stderr: bool) {
        let now = SystemTime::now();
        if to_stderr {
            self.stderr.line(stderr_line(now, level, &kind, source, &message));
        }
        if let Some(host) = &self.host {
            host.push(unix_ms(now), level, kind, source, message);
        }
    }
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut message = record.args().to_string();
        if message.len() > MAX_MESSAGE {
            let total = message.len();
            message = cut(&message, MAX_MESSAGE - 64);
            message.push_str(&format!(" [cut: {total} bytes in all]"));
        }
        self.emit(level(record.level()), RecordKind::Log, record.target(), message, true);
    }

    fn flush(&self) {}
}

/// The running log sinks; [`Logs::connect`] starts the link to the host,
/// [`Logs::shutdown`] delivers what it can and stops them.
pub struct Logs {
    host: Option<Host>,
}

struct Host {
    shared: Arc<Shared>,
    target: Target,
    link: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
}

/// Installs the logger at `level`, to stderr and, with a target other than
/// `none`, to the queue for the host. Records made before [`Logs::connect`]
/// wait in the queue. Call once per process.
pub fn init(level: log::LevelFilter, target: &Target, queue_records: usize) -> std::io::Result<Logs> {
    let shared = (*target != Target::None).then(|| {
        Arc::new(Shared {
            queue: Mutex::new(queue::Queue::new(queue_records, QUEUE_BYTES)),
            notify: Notify::new(),
            computation: OnceLock::new(),
            connected: AtomicBool::new(false),
        })
    });
    let logger = Logger { stderr: stderr::StderrSink::start()?, host: shared.clone() };
    if LOGGER.set(logger).is_err() {
        return Err(std::io::Error::other("the logger is already installed"));
    }
    if let Some(l) = LOGGER.get() {
        log::set_logger(l).map_err(|e| std::io::Error::other(e.to_string()))?;
    }
    log::set_max_level(level);
    Ok(Logs { host: shared.map(|shared| Host { shared, target: target.clone(), link: None }) })
}

impl Logs {
    /// Starts the link to the host on `runtime` (nothing without a target);
    /// the operator's requests on it go to `control`.
    pub fn connect(&mut self, control: Arc<dyn Control>, runtime: &tokio::runtime::Handle) {
        if let Some(host) = self.host.as_mut().filter(|h| h.link.is_none()) {
            let stop = CancellationToken::new();
            let task = runtime.spawn(link::run(
                Arc::clone(&host.shared),
                host.target.clone(),
                control,
                boot_id(),
                stop.clone(),
            ));
            host.link = Some((stop, task));
        }
    }

    /// Gives the link up to `timeout` to deliver what is queued (only if the
    /// host is connected now), then stops it and flushes stderr.
    pub async fn shutdown(self, timeout: Duration) {
        let end = Instant::now() + timeout;
        if let Some(Host { shared, link: Some((stop, task)), .. }) = self.host {
            while shared.connected.load(Ordering::Relaxed)
                && !shared.lock().all_acked()
                && Instant::now() < end
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
        if let Some(l) = LOGGER.get() {
            l.stderr.flush(end.saturating_duration_since(Instant::now()).max(Duration::from_millis(200)));
        }
    }
}

/// Records the computation's id, carried by every record from now on.
pub fn set_computation(id: &str) {
    if let Some(host) = LOGGER.get().and_then(|l| l.host.as_ref()) {
        let _ = host.computation.set(id.to_owned());
    }
}

/// Sends a state event (at every level) to both sinks.
pub fn state_event(state: &State) {
    let (name, reason) = (state.name(), state.reason());
    let (level, message) = match reason {
        Some(r) => (Level::Warn, format!("state {name}: {r}")),
        None => (Level::Info, format!("state {name}")),
    };
    if let Some(l) = LOGGER.get() {
        l.emit(level, RecordKind::Event { state: name.to_owned() }, "cvm_agent::computation", message, true);
    }
}

/// Sends the `awaiting_manifest` event.
pub fn awaiting_manifest_event() {
    if let Some(l) = LOGGER.get() {
        l.emit(
            Level::Info,
            RecordKind::Event { state: "awaiting_manifest".into() },
            "cvm_agent::computation",
            "state awaiting_manifest".into(),
            true,
        );
    }
}

/// Sends the error that stops the agent to the host only (`main` prints it on stderr).
pub fn fatal(message: String) {
    if let Some(l) = LOGGER.get() {
        l.emit(Level::Error, RecordKind::Log, "cvm_agent", message, false);
    }
}

/// The level in force.
pub fn current_level() -> Level {
    match log::max_level() {
        log::LevelFilter::Off | log::LevelFilter::Error => Level::Error,
        log::LevelFilter::Warn => Level::Warn,
        log::LevelFilter::Info => Level::Info,
        log::LevelFilter::Debug => Level::Debug,
        log::LevelFilter::Trace => Level::Trace,
    }
}

/// Changes the level of both sinks at once.
pub fn set_level(level: Level) {
    log::set_max_level(match level {
        Level::Error => log::LevelFilter::Error,
        Level::Warn => log::LevelFilter::Warn,
        Level::Info => log::LevelFilter::Info,
        Level::Debug => log::LevelFilter::Debug,
        Level::Trace => log::LevelFilter::Trace,
    });
}

fn level(l: log::Level) -> Level {
    match l {
        log::Level::Error => Level::Error,
        log::Level::Warn => Level::Warn,
        log::Level::Info => Level::Info,
        log::Level::Debug => Level::Debug,
        log::Level::Trace => Level::Trace,
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// `2026-01-01T12:00:00.123Z INFO  source: message`, the source and the
/// message escaped for a terminal: a message may be the algorithm's output.
fn stderr_line(t: SystemTime, level: Level, kind: &RecordKind, source: &str, message: &str) -> String {
    let ms = unix_ms(t);
    let when = time::OffsetDateTime::from_unix_timestamp((ms / 1000) as i64)
        .ok()
        .and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok())
        .map(|s| s.trim_end_matches('Z').to_owned())
        .unwrap_or_default();
    let tag = match kind {
        RecordKind::Event { .. } => "EVENT",
        _ => match level {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        },
    };
    format!("{when}.{:03}Z {tag:5} {}: {}", ms % 1000, escape(source), escape(message))
}

/// 32 hex digits, new at every start, so that the host knows a restarted
/// agent (whose records are numbered from 1 again).
fn boot_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::getrandom(&mut b).is_err() {
        // No randomness yet: the time is unique enough for this purpose.
        b[..16].copy_from_slice(
            &SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0u128, |d| d.as_nanos())
                .to_be_bytes(),
        );
    }
    hex::encode(b)
}
