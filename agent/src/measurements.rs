//! The measurement event log: every accepted artifact, in order.
//!
//! Each event is a small record (type, name, SHA-256 of the artifact); the
//! log's digest chains them: `d' = SHA-256(d || JSON(record))`, starting
//! from 32 zero bytes. Fresh session evidence covers the digest.

use serde::Serialize;
use sha2::{Digest as _, Sha256};

/// One measured event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// `manifest`, `algorithm`, `dataset` or `results`.
    pub kind: &'static str,
    /// The artifact's name.
    pub name: String,
    /// SHA-256 of the artifact, `sha256:<hex>`.
    pub digest: String,
}

/// The append-only log and its running digest.
#[derive(Clone, Debug, Default)]
pub struct EventLog {
    events: Vec<Event>,
    digest: [u8; 32],
}

impl EventLog {
    /// Appends an event and extends the digest.
    pub fn record(&mut self, event: Event) {
        // Serialising three strings cannot fail.
        let bytes = serde_json::to_vec(&event).unwrap_or_default();
        self.digest = Sha256::new().chain_update(self.digest).chain_update(&bytes).finalize().into();
        self.events.push(event);
    }

    /// The running digest.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// The events so far.
    pub fn events(&self) -> &[Event] {
        &self.events
    }
}
