//! The measurement event log: every accepted artifact, in order, extended
//! into the vTPM when there is one.
//!
//! Each event is a small record: its kind, its name, and the artifact's
//! identity (`sha256:<hex>` computed once while the artifact streamed in, or
//! a sealed stream's identity). The record's byte encoding, the running log
//! digest that fresh SNP session evidence covers, and the PCR extends are
//! defined in [`cvm_evidence::eventlog`], which verifiers replay:
//!
//! ```text
//! record = "cvm-agent/event/v1" || 0x00 || u32be(len) kind || u32be(len) name || u32be(len) identity
//! log digest: d0 = 32 zero bytes, d = SHA-256(d || SHA-256(record))
//! vTPM:       PCR_bank = H_bank(PCR_bank || H_bank(record)) for SHA-256 and SHA-384
//! ```
//!
//! The log and the PCR move together under one lock (the log's own, apart
//! from the computation's state, see [`crate::computation`]), and a quote is
//! taken under that same lock, so the events sent with a quote are exactly
//! the ones it covers. If an extend fails, the log keeps the
//! event (the SNP-covered digest stays authoritative) and the vTPM is marked
//! failed: later session evidence says so instead of carrying a quote that
//! no longer matches.

use base64::Engine as _;
use cvm_evidence::eventlog::{extend_log_digest, EventRecord};
use cvm_protocol::api::{MeasuredBootEvidence, MeasuredEvent, PcrValue, VtpmEvidence};
use serde::Serialize;

/// One measured event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// `manifest`, `algorithm`, `dataset`, `sealed_artifact` or `results`.
    pub kind: &'static str,
    /// The artifact's name.
    pub name: String,
    /// The artifact's identity: `sha256:<hex>` for an artifact hashed as it
    /// streamed in, or a sealed stream's identity (key id, stream id, size).
    /// Measured as opaque text.
    pub digest: String,
}

impl Event {
    /// The record that is measured.
    pub fn record(&self) -> EventRecord {
        EventRecord::new(self.kind, self.name.clone(), self.digest.clone())
    }
}

pub use crate::vtpm::VtpmState;

/// What session evidence needs from the log at one moment.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The log digest.
    pub digest: [u8; 32],
    /// The events, oldest first.
    pub events: Vec<MeasuredEvent>,
    /// The vTPM's quote over the nonce, or why there is none.
    pub vtpm: VtpmEvidence,
    /// The quote of the boot PCRs and the firmware's event log, or why there is none.
    pub measured_boot: MeasuredBootEvidence,
}

/// The append-only log, its running digest, and the vTPM it extends.
#[derive(Clone, Default)]
pub struct EventLog {
    events: Vec<Event>,
    digest: [u8; 32],
    vtpm: VtpmState,
}

impl EventLog {
    /// An empty log extending `vtpm`.
    pub fn new(vtpm: VtpmState) -> EventLog {
        EventLog { events: Vec::new(), digest: [0; 32], vtpm }
    }

    /// Appends an event, extends the digest and the vTPM's PCR.
    pub fn record(&mut self, event: Event) {
        let record = event.record();
        self.digest = extend_log_digest(&self.digest, &record);
        if let VtpmState::Active(vtpm) = &self.vtpm {
            if let Err(e) = vtpm.extend(&record.encode()) {
                log::error!("{e}; the vTPM no longer matches the event log and will not be quoted");
                self.vtpm = VtpmState::Failed(format!("extending event {} failed: {e}", self.events.len()));
            }
        }
        log::debug!("measured {} {:?} {}", event.kind, event.name, event.digest);
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

    /// The log and a vTPM quote over `nonce`, consistent with each other.
    ///
    /// Blocks on the TPM; call it from a blocking context.
    pub fn snapshot(&self, nonce: &[u8; 32]) -> Snapshot {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let measured_boot = match &self.vtpm {
            VtpmState::Active(vtpm) => match vtpm.boot_quote(nonce) {
                Ok(q) => {
                    let (event_log, event_log_unavailable) = match vtpm.firmware_log() {
                        Ok(log) => (Some(b64(log)), None),
                        Err(why) => (None, Some(why.to_owned())),
                    };
                    MeasuredBootEvidence::Quoted {
                        pcrs: q
                            .pcrs
                            .iter()
                            .map(|(pcr, value)| PcrValue { pcr: *pcr, sha256: hex::encode(value) })
                            .collect(),
                        quote: b64(&q.attest),
                        signature: b64(&q.signature),
                        event_log,
                        event_log_unavailable,
                    }
                }
                Err(e) => {
                    log::error!("{e}");
                    MeasuredBootEvidence::Unavailable { reason: e.to_string() }
                }
            },
            VtpmState::Off => {
                MeasuredBootEvidence::Unavailable { reason: "no vTPM (off by configuration)".into() }
            }
            VtpmState::Unavailable(reason) => {
                MeasuredBootEvidence::Unavailable { reason: format!("no vTPM: {reason}") }
            }
            VtpmState::Failed(reason) => {
                MeasuredBootEvidence::Unavailable { reason: format!("vTPM failed: {reason}") }
            }
        };
        let vtpm = match &self.vtpm {
            VtpmState::Off => VtpmEvidence::Off,
            VtpmState::Unavailable(reason) => VtpmEvidence::Unavailable { reason: reason.clone() },
            VtpmState::Failed(reason) => {
                VtpmEvidence::Unavailable { reason: format!("vTPM failed: {reason}") }
            }
            VtpmState::Active(vtpm) => match vtpm.quote(nonce) {
                Ok(q) => {
                    let (kind, detail) = vtpm.kind();
                    VtpmEvidence::Quoted {
                        kind,
                        detail: detail.to_owned(),
                        pcr: u32::from(vtpm.pcr()),
                        banks: q.banks.iter().map(ToString::to_string).collect(),
                        quote: b64(&q.attest),
                        signature: b64(&q.signature),
                        ak_certificate: vtpm.ak_certificate().map(b64),
                    }
                }
                Err(e) => {
                    log::error!("{e}");
                    VtpmEvidence::Unavailable { reason: e.to_string() }
                }
            },
        };
        let events = self
            .events
            .iter()
            .map(|e| MeasuredEvent {
                kind: e.kind.to_owned(),
                name: e.name.clone(),
                identity: e.digest.clone(),
            })
            .collect();
        Snapshot { digest: self.digest, events, vtpm, measured_boot }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_the_evidence_crates_replay() {
        let mut log = EventLog::default();
        let events = [
            Event { kind: "manifest", name: "m".into(), digest: "sha256:00".into() },
            Event { kind: "dataset", name: "d".into(), digest: "sha256:11".into() },
        ];
        for e in &events {
            log.record(e.clone());
        }
        let records: Vec<EventRecord> = events.iter().map(Event::record).collect();
        assert_eq!(log.digest(), cvm_evidence::eventlog::log_digest(&records));
        let snap = log.snapshot(&[0; 32]);
        assert_eq!(snap.events.len(), 2);
        assert_eq!(snap.vtpm, VtpmEvidence::Off);
    }
}
