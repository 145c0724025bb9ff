//! The host's bookkeeping for one agent: which records arrived, which were
//! duplicates (sent again after a reconnect), how many the agent dropped,
//! and any gap nobody accounted for.
//!
//! It outlives connections: an agent that reconnects continues its boot's
//! numbering, and the host acknowledges, right after the hellos, everything
//! it already has, so the agent resends only the rest.

use cvm_protocol::logstream::{AgentHello, Record, RecordKind};

/// See the module documentation.
#[derive(Debug, Default)]
pub struct HostSession {
    boot: Option<String>,
    last_seen: u64,
    /// Records received twice and dropped, since this host started.
    pub duplicates: u64,
    /// Records the agent reported dropped that never arrived.
    pub lost: u64,
    /// Records missing with no `dropped` record to account for them.
    pub unaccounted: u64,
}

/// What a record is to this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// New: show it. `lost` for a `dropped` record (how many of its records
    /// never arrived); `gap` when records before it are missing unexplained.
    New {
        /// For a `dropped` record: how many never arrived.
        lost: Option<u64>,
        /// Records `first ..= last` missing with no explanation.
        gap: Option<(u64, u64)>,
    },
    /// Already received (sent again after a reconnect): drop it.
    Duplicate,
}

/// What a hello means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Greeting {
    /// Another boot than before: numbering starts again.
    pub restarted: bool,
    /// What to acknowledge at once, if anything.
    pub ack: Option<u64>,
}

impl HostSession {
    /// A new connection said hello.
    pub fn hello(&mut self, hello: &AgentHello) -> Greeting {
        let restarted = self.boot.as_deref().is_some_and(|b| b != hello.boot);
        if self.boot.as_deref() != Some(hello.boot.as_str()) {
            self.boot = Some(hello.boot.clone());
            self.last_seen = 0;
        }
        Greeting { restarted, ack: (self.last_seen > 0).then_some(self.last_seen) }
    }

    /// A record arrived.
    pub fn record(&mut self, r: &Record) -> Seen {
        if r.seq <= self.last_seen {
            self.duplicates += 1;
            return Seen::Duplicate;
        }
        let first_new = match r.kind {
            RecordKind::Dropped { first_seq } => first_seq.max(self.last_seen + 1),
            _ => r.seq,
        };
        let gap = (first_new > self.last_seen + 1).then(|| (self.last_seen + 1, first_new - 1));
        if let Some((a, b)) = gap {
            self.unaccounted += b - a + 1;
        }
        let lost = r.lost_after(self.last_seen);
        self.lost += lost.unwrap_or(0);
        self.last_seen = r.seq;
        Seen::New { lost, gap }
    }

    /// The last record received.
    pub fn last_seen(&self) -> u64 {
        self.last_seen
    }

    /// The current boot.
    pub fn boot(&self) -> Option<&str> {
        self.boot.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cvm_protocol::logstream::{Level, VERSION};

    fn hello(boot: char) -> AgentHello {
        AgentHello {
            version: VERSION,
            boot: boot.to_string().repeat(32),
            agent: "a".into(),
            level: Level::Info,
        }
    }

    fn rec(seq: u64, kind: RecordKind) -> Record {
        Record {
            seq,
            time_ms: 0,
            level: Level::Info,
            kind,
            source: "s".into(),
            computation: None,
            message: String::new(),
        }
    }

    #[test]
    fn duplicates_are_dropped_and_losses_counted() {
        let mut h = HostSession::default();
        assert_eq!(h.hello(&hello('a')), Greeting { restarted: false, ack: None });
        assert_eq!(h.record(&rec(1, RecordKind::Log)), Seen::New { lost: None, gap: None });
        assert_eq!(h.record(&rec(2, RecordKind::Log)), Seen::New { lost: None, gap: None });
        // Reconnect: the host acknowledges what it has; a resend is a duplicate.
        assert_eq!(h.hello(&hello('a')), Greeting { restarted: false, ack: Some(2) });
        assert_eq!(h.record(&rec(2, RecordKind::Log)), Seen::Duplicate);
        // Records 1-6 were dropped by the agent; 3-6 never arrived.
        assert_eq!(
            h.record(&rec(6, RecordKind::Dropped { first_seq: 1 })),
            Seen::New { lost: Some(4), gap: None }
        );
        assert_eq!(h.record(&rec(9, RecordKind::Log)), Seen::New { lost: None, gap: Some((7, 8)) });
        assert_eq!((h.duplicates, h.lost, h.unaccounted), (1, 4, 2));
        // A new boot numbers from 1 again.
        assert_eq!(h.hello(&hello('b')), Greeting { restarted: true, ack: None });
        assert_eq!(h.record(&rec(1, RecordKind::Log)), Seen::New { lost: None, gap: None });
    }
}
