//! The supervisor's logger: records straight to stderr (the console).
//!
//! Messages are escaped for the terminal like the agent's own
//! ([`cvm_protocol::terminal::escape`]), so that no text in a record
//! (an error naming a file, a value from the configuration) can forge a
//! console line or drive the console.
//!
//! The supervisor is not the agent: it has no link to the host, and it must
//! stay one thread (it takes its signals with sigwait), so it does not use
//! the agent's log pipeline; the agent's own records reach the host.

use std::io::Write;

use cvm_protocol::terminal::escape;

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let now = time::OffsetDateTime::now_utc();
            let message = record.args().to_string();
            let _ = writeln!(
                std::io::stderr().lock(),
                "{}.{:03}Z {:5} {}: {}",
                now.format(&time::format_description::well_known::Rfc3339)
                    .map(|s| s.trim_end_matches('Z').chars().take(19).collect::<String>())
                    .unwrap_or_default(),
                now.millisecond(),
                record.level(),
                escape(record.target()),
                escape(&message)
            );
        }
    }

    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

/// Installs the logger at `level`; a second call only changes the level.
pub(super) fn init(level: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
