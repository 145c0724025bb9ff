//! Writes crypto-agile event logs, for tests and simulated platforms: the
//! inverse of [`super::parse`], with the digests each event's data would
//! have when the firmware measured the data itself.

use crate::eventlog::PcrBank;

use super::EventType;

/// A log being written: the header for the banks given, then events.
#[derive(Clone, Debug)]
pub struct LogBuilder {
    banks: Vec<PcrBank>,
    bytes: Vec<u8>,
}

impl LogBuilder {
    /// A log recording `banks` (the Spec ID header lists them in this order).
    pub fn new(banks: &[PcrBank]) -> LogBuilder {
        let mut spec = b"Spec ID Event03\0".to_vec();
        spec.extend_from_slice(&0u32.to_le_bytes()); // platformClass: client
        spec.extend_from_slice(&[0, 2, 0, 2]); // version 2.0, errata 0, UINTN 64-bit
        spec.extend_from_slice(&(banks.len() as u32).to_le_bytes());
        for bank in banks {
            spec.extend_from_slice(&bank.alg_id().to_le_bytes());
            spec.extend_from_slice(&(bank.digest_len() as u16).to_le_bytes());
        }
        spec.push(0); // vendorInfoSize
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&EventType::NO_ACTION.0.to_le_bytes());
        bytes.extend_from_slice(&[0; 20]);
        bytes.extend_from_slice(&(spec.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&spec);
        LogBuilder { banks: banks.to_vec(), bytes }
    }

    /// Appends an event whose digests are the banks' digests of `measured`
    /// and whose event data is `data`.
    pub fn event(mut self, pcr: u32, event_type: EventType, measured: &[u8], data: &[u8]) -> LogBuilder {
        let digests: Vec<(PcrBank, Vec<u8>)> = self.banks.iter().map(|b| (*b, b.digest(measured))).collect();
        self.push(pcr, event_type, &digests, data);
        self
    }

    /// Appends an event with the given digests (one per bank, in the banks' order).
    pub fn event_with_digests(
        mut self,
        pcr: u32,
        event_type: EventType,
        digests: &[(PcrBank, Vec<u8>)],
        data: &[u8],
    ) -> LogBuilder {
        self.push(pcr, event_type, digests, data);
        self
    }

    fn push(&mut self, pcr: u32, event_type: EventType, digests: &[(PcrBank, Vec<u8>)], data: &[u8]) {
        self.bytes.extend_from_slice(&pcr.to_le_bytes());
        self.bytes.extend_from_slice(&event_type.0.to_le_bytes());
        self.bytes.extend_from_slice(&(digests.len() as u32).to_le_bytes());
        for (bank, digest) in digests {
            self.bytes.extend_from_slice(&bank.alg_id().to_le_bytes());
            self.bytes.extend_from_slice(digest);
        }
        self.bytes.extend_from_slice(&(data.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(data);
    }

    /// The log's bytes.
    pub fn build(self) -> Vec<u8> {
        self.bytes
    }
}

/// UTF-16LE of `s` with a terminating NUL, as UEFI writes strings.
pub fn utf16_nul(s: &str) -> Vec<u8> {
    s.encode_utf16().chain([0]).flat_map(u16::to_le_bytes).collect()
}
