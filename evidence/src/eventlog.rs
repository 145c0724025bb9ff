//! The measurement event log: the record encoding, the log digest and the
//! PCR replay, shared by the agent (which extends) and verifiers (which replay).
//!
//! # The event record
//!
//! Each measured artifact is one event of three UTF-8 strings: its `kind`
//! (`manifest`, `algorithm`, `dataset`, `sealed_artifact`, `results`, ...),
//! its `name`, and its `identity`: `sha256:<hex>` for an artifact hashed while
//! it streamed in, or another self-describing identity (for a sealed stream,
//! its key id, stream id and plaintext size). Verifiers treat the identity as
//! opaque bytes; only the encoding below is measured.
//!
//! ```text
//! record = "cvm-agent/event/v1" || 0x00
//!          || u32be(len(kind))     || kind
//!          || u32be(len(name))     || name
//!          || u32be(len(identity)) || identity
//! ```
//!
//! The lengths make the encoding unambiguous (no separator can be forged
//! inside a name) and easy to reproduce in any language.
//!
//! # What is extended
//!
//! - The **log digest**, which fresh SNP session evidence covers, starts as
//!   32 zero bytes and for each event becomes
//!   `d = SHA-256(d || SHA-256(record))`.
//! - The **vTPM PCR** (one PCR, every bank in use) is extended with each
//!   bank's own digest of the record: `TPM2_PCR_Extend(pcr, {SHA-256(record),
//!   SHA-384(record)})`, so a PCR that started at zero holds
//!   `PCR = H(PCR || H(record))` per bank. The SHA-256 bank of a fresh PCR
//!   therefore equals the log digest.
//!
//! Only these small records are hashed twice (once per bank); the artifacts
//! themselves are hashed once, with SHA-256, while they stream in.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256, Sha384};

/// Context string at the start of every record.
pub const EVENT_CONTEXT: &[u8] = b"cvm-agent/event/v1";

/// One measured event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventRecord {
    /// What the artifact is: `manifest`, `algorithm`, `dataset`, `sealed_artifact`, `results`, ...
    pub kind: String,
    /// The artifact's name.
    pub name: String,
    /// The artifact's identity, e.g. `sha256:<hex>`.
    pub identity: String,
}

impl EventRecord {
    /// A record from its three fields.
    pub fn new(kind: impl Into<String>, name: impl Into<String>, identity: impl Into<String>) -> Self {
        EventRecord { kind: kind.into(), name: name.into(), identity: identity.into() }
    }

    /// The measured byte encoding (see the module documentation).
    pub fn encode(&self) -> Vec<u8> {
        let fields = [self.kind.as_bytes(), self.name.as_bytes(), self.identity.as_bytes()];
        let mut out =
            Vec::with_capacity(EVENT_CONTEXT.len() + 1 + fields.iter().map(|f| 4 + f.len()).sum::<usize>());
        out.extend_from_slice(EVENT_CONTEXT);
        out.push(0);
        for f in fields {
            // A field over 4 GiB cannot come from the agent (names and
            // identities are short); saturating keeps the encoding total.
            out.extend_from_slice(&u32::try_from(f.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(f);
        }
        out
    }
}

/// A PCR bank the vTPM extends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PcrBank {
    /// SHA-256 (TPM_ALG_SHA256, 0x000B).
    Sha256,
    /// SHA-384 (TPM_ALG_SHA384, 0x000C).
    Sha384,
}

impl PcrBank {
    /// The TPM algorithm identifier.
    pub fn alg_id(self) -> u16 {
        match self {
            PcrBank::Sha256 => 0x000B,
            PcrBank::Sha384 => 0x000C,
        }
    }

    /// The bank for a TPM algorithm identifier.
    pub fn from_alg_id(id: u16) -> Option<PcrBank> {
        match id {
            0x000B => Some(PcrBank::Sha256),
            0x000C => Some(PcrBank::Sha384),
            _ => None,
        }
    }

    /// The digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            PcrBank::Sha256 => 32,
            PcrBank::Sha384 => 48,
        }
    }

    /// This bank's digest of `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            PcrBank::Sha256 => Sha256::digest(data).to_vec(),
            PcrBank::Sha384 => Sha384::digest(data).to_vec(),
        }
    }

    /// `H(pcr || H(record))`: one extend of this bank.
    pub fn extend(self, pcr: &[u8], record: &[u8]) -> Vec<u8> {
        let mut buf = pcr.to_vec();
        buf.extend_from_slice(&self.digest(record));
        self.digest(&buf)
    }
}

impl std::fmt::Display for PcrBank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PcrBank::Sha256 => "sha256",
            PcrBank::Sha384 => "sha384",
        })
    }
}

/// The running log digest after each of `events` in turn, from 32 zero bytes.
pub fn log_digest(events: &[EventRecord]) -> [u8; 32] {
    events.iter().fold([0u8; 32], |d, e| extend_log_digest(&d, e))
}

/// One step of the log digest: `SHA-256(d || SHA-256(record))`.
pub fn extend_log_digest(digest: &[u8; 32], event: &EventRecord) -> [u8; 32] {
    Sha256::new().chain_update(digest).chain_update(Sha256::digest(event.encode())).finalize().into()
}

/// The value a PCR of `bank` holds after extending `events` from zero.
pub fn replay_pcr(bank: PcrBank, events: &[EventRecord]) -> Vec<u8> {
    events.iter().fold(vec![0u8; bank.digest_len()], |pcr, e| bank.extend(&pcr, &e.encode()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_length_prefixed() {
        let e = EventRecord::new("dataset", "a", "sha256:00");
        let mut want = b"cvm-agent/event/v1\0".to_vec();
        want.extend_from_slice(&[0, 0, 0, 7]);
        want.extend_from_slice(b"dataset");
        want.extend_from_slice(&[0, 0, 0, 1, b'a', 0, 0, 0, 9]);
        want.extend_from_slice(b"sha256:00");
        assert_eq!(e.encode(), want);
        // Moving bytes between fields changes the encoding.
        assert_ne!(EventRecord::new("dataseta", "", "sha256:00").encode(), want);
    }

    #[test]
    fn sha256_pcr_of_a_fresh_pcr_equals_the_log_digest() {
        let events = vec![
            EventRecord::new("manifest", "m", "sha256:11"),
            EventRecord::new("sealed_artifact", "weights", "sealed:key=k;stream=s;size=10"),
        ];
        assert_eq!(replay_pcr(PcrBank::Sha256, &events), log_digest(&events).to_vec());
        assert_eq!(replay_pcr(PcrBank::Sha384, &events).len(), 48);
        let mut swapped = events.clone();
        swapped.swap(0, 1);
        assert_ne!(log_digest(&swapped), log_digest(&events));
        assert_eq!(log_digest(&[]), [0; 32]);
    }
}
