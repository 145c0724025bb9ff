//! The firmware's measured-boot event log: the TCG PC Client crypto-agile
//! format, parsed and replayed in pure Rust.
//!
//! UEFI firmware with a TPM records every measurement it extends (and those
//! of the boot loaders and the kernel's EFI stub, through the TCG2 protocol)
//! in an event log, which Linux exposes as
//! `/sys/kernel/security/tpm0/binary_bios_measurements`. The format is the
//! TCG PC Client Platform Firmware Profile's (PFP, version 1.05, §10), in the
//! firmware's byte order (little-endian):
//!
//! ```text
//! first event (TCG_PCR_EVENT, SHA-1 layout):
//!   pcrIndex u32 (0) | eventType u32 (EV_NO_ACTION) | digest [20] (zeros) | eventSize u32 | event
//!   event = TCG_EfiSpecIDEvent: "Spec ID Event03\0" | platformClass u32 | specVersionMinor u8
//!           | specVersionMajor u8 | specErrata u8 | uintnSize u8 | numberOfAlgorithms u32
//!           | { algorithmId u16 | digestSize u16 } * n | vendorInfoSize u8 | vendorInfo
//! every later event (TCG_PCR_EVENT2):
//!   pcrIndex u32 | eventType u32 | count u32 | { hashAlg u16 | digest [size from the header] } * count
//!   | eventSize u32 | event
//! ```
//!
//! The log is untrusted input: it comes from the guest, which the verifier
//! does not trust until the log is replayed against a quote the TPM signed.
//! [`parse`] is a pure function of its bytes: it reads in spec order, checks
//! every length against the bytes that remain, allocates no more than the
//! input's size, refuses PCR indices above 23, events that do not carry one
//! digest for each algorithm the header names, and anything after the last
//! event; it never panics.
//!
//! [`EventLog::replay`] recomputes each PCR of a bank from the events:
//! `PCR = H(PCR || digest)` for every event but `EV_NO_ACTION`, from zero,
//! except PCR 0 when a `StartupLocality` event says the platform started
//! at locality 3 or 4 (its last byte is then that locality, PFP §10.4.5.3).
//! A log is worth only what the replay proves: that its events give the PCR
//! values a TPM quote covers.

#[cfg(feature = "simulator")]
mod builder;
mod describe;
mod event_type;
mod reader;

#[cfg(feature = "simulator")]
pub use builder::{utf16_nul, LogBuilder};
pub use event_type::EventType;

use reader::Reader;

use crate::eventlog::PcrBank;
use crate::tpm::alg;

/// The highest PCR index of a PC Client TPM.
pub const MAX_PCR: u32 = 23;
/// The most events a log may hold; real firmware logs hold tens to a few hundred.
pub const MAX_EVENTS: usize = 16_384;
/// The most digest algorithms a log header may name.
pub const MAX_ALGORITHMS: usize = 16;

const SPEC_ID_SIGNATURE: &[u8; 16] = b"Spec ID Event03\0";
const STARTUP_LOCALITY_SIGNATURE: &[u8; 16] = b"StartupLocality\0";
const SHA1_LEN: usize = 20;

/// An event log that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TcgLogError {
    /// The bytes end inside a structure.
    #[error("firmware event log: {what} truncated at byte {offset} ({needed} more bytes needed)")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Where it starts.
        offset: usize,
        /// How many bytes it needs.
        needed: usize,
    },
    /// A field has a value the format does not allow.
    #[error("firmware event log: {what} at byte {offset}: expected {expected}, found {found}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// Where it starts.
        offset: usize,
        /// What is allowed.
        expected: String,
        /// What was found.
        found: String,
    },
    /// The log does not record the bank a replay asks for.
    #[error("firmware event log: no {bank} digests (the log has {found})")]
    NoSuchBank {
        /// The bank asked for.
        bank: PcrBank,
        /// The algorithms the log records.
        found: String,
    },
}

/// The header of a crypto-agile log (`TCG_EfiSpecIDEvent`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecId {
    /// The platform class (0 client, 1 server).
    pub platform_class: u32,
    /// Specification version: major, minor, errata.
    pub version: (u8, u8, u8),
    /// 1 for 32-bit UINTN, 2 for 64-bit.
    pub uintn_size: u8,
    /// The digest algorithms (TPM_ALG_ID) and their sizes, in the header's order.
    pub algorithms: Vec<(u16, u16)>,
    /// Vendor information.
    pub vendor_info: Vec<u8>,
}

/// One event after the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The event's position in the log, the header being 0.
    pub number: usize,
    /// The PCR it was extended into.
    pub pcr: u32,
    /// Its type.
    pub event_type: EventType,
    /// Its digests (TPM_ALG_ID, digest), one per algorithm of the header.
    pub digests: Vec<(u16, Vec<u8>)>,
    /// The event data (what was measured, or a description of it).
    pub data: Vec<u8>,
}

impl Event {
    /// This event's digest in `bank`.
    pub fn digest(&self, bank: PcrBank) -> Option<&[u8]> {
        self.digests.iter().find(|(a, _)| *a == bank.alg_id()).map(|(_, d)| d.as_slice())
    }

    /// Whether the event was extended into its PCR (every type but `EV_NO_ACTION`).
    pub fn is_extended(&self) -> bool {
        self.event_type != EventType::NO_ACTION
    }

    /// The event data for people: the strings, variable names or device
    /// paths it holds, with control characters escaped.
    pub fn describe(&self) -> String {
        describe::describe(self)
    }
}

/// A parsed log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventLog {
    /// The header.
    pub spec_id: SpecId,
    /// The events after the header, in order.
    pub events: Vec<Event>,
}

/// Parses a crypto-agile TCG event log (see the module documentation).
pub fn parse(bytes: &[u8]) -> Result<EventLog, TcgLogError> {
    let mut r = Reader::new(bytes);
    let spec_id = parse_header(&mut r)?;
    let mut events = Vec::new();
    while !r.is_empty() {
        if events.len() >= MAX_EVENTS {
            return Err(TcgLogError::Invalid {
                what: "number of events",
                offset: r.offset(),
                expected: format!("at most {MAX_EVENTS}"),
                found: "more".into(),
            });
        }
        events.push(parse_event(&mut r, &spec_id, events.len() + 1)?);
    }
    Ok(EventLog { spec_id, events })
}

fn parse_header(r: &mut Reader<'_>) -> Result<SpecId, TcgLogError> {
    let start = r.offset();
    let pcr = r.u32("header pcrIndex")?;
    let event_type = EventType(r.u32("header eventType")?);
    let digest = r.take(SHA1_LEN, "header digest")?;
    let size = r.u32("header eventSize")?;
    if pcr != 0 || event_type != EventType::NO_ACTION || digest.iter().any(|b| *b != 0) {
        return Err(TcgLogError::Invalid {
            what: "first event",
            offset: start,
            expected: "the Spec ID header: PCR 0, EV_NO_ACTION, a zero SHA-1 digest".into(),
            found: format!("PCR {pcr}, {event_type}"),
        });
    }
    let data_offset = r.offset();
    let data = r.take(usize::try_from(size).unwrap_or(usize::MAX), "header event data")?;
    let mut h = Reader::new(data);
    let signature = h.take(SPEC_ID_SIGNATURE.len(), "Spec ID signature")?;
    if signature != SPEC_ID_SIGNATURE {
        return Err(TcgLogError::Invalid {
            what: "Spec ID signature",
            offset: data_offset,
            expected: "\"Spec ID Event03\" (a crypto-agile log; SHA-1-only logs are not accepted)".into(),
            found: format!("{:?}", String::from_utf8_lossy(signature)),
        });
    }
    let platform_class = h.u32("platformClass")?;
    let minor = h.u8("specVersionMinor")?;
    let major = h.u8("specVersionMajor")?;
    let errata = h.u8("specErrata")?;
    let uintn_size = h.u8("uintnSize")?;
    let count = h.u32("numberOfAlgorithms")?;
    if count == 0 || count as usize > MAX_ALGORITHMS {
        return Err(TcgLogError::Invalid {
            what: "numberOfAlgorithms",
            offset: data_offset + h.offset() - 4,
            expected: format!("1 to {MAX_ALGORITHMS}"),
            found: count.to_string(),
        });
    }
    let mut algorithms: Vec<(u16, u16)> = Vec::new();
    for _ in 0..count {
        let at = data_offset + h.offset();
        let id = h.u16("algorithmId")?;
        let size = h.u16("digestSize")?;
        let known = known_digest_size(id);
        if known.is_some_and(|k| k != size) || size == 0 || algorithms.iter().any(|(a, _)| *a == id) {
            return Err(TcgLogError::Invalid {
                what: "digest size",
                offset: at,
                expected: match known {
                    Some(k) => format!("{k} bytes for {}, once", crate::tpm::alg_name(id)),
                    None => "a non-zero size, each algorithm once".into(),
                },
                found: format!("{size} bytes for {}", crate::tpm::alg_name(id)),
            });
        }
        algorithms.push((id, size));
    }
    let vendor_size = h.u8("vendorInfoSize")?;
    let vendor_info = h.take(usize::from(vendor_size), "vendorInfo")?.to_vec();
    if !h.is_empty() {
        return Err(TcgLogError::Invalid {
            what: "Spec ID event",
            offset: data_offset + h.offset(),
            expected: format!("{size} bytes as its fields say"),
            found: format!("{} bytes after vendorInfo", h.rest().len()),
        });
    }
    Ok(SpecId { platform_class, version: (major, minor, errata), uintn_size, algorithms, vendor_info })
}

fn parse_event(r: &mut Reader<'_>, spec: &SpecId, number: usize) -> Result<Event, TcgLogError> {
    let start = r.offset();
    let pcr = r.u32("pcrIndex")?;
    if pcr > MAX_PCR {
        return Err(TcgLogError::Invalid {
            what: "pcrIndex",
            offset: start,
            expected: format!("0 to {MAX_PCR} (event {number})"),
            found: pcr.to_string(),
        });
    }
    let event_type = EventType(r.u32("eventType")?);
    let count_at = r.offset();
    let count = r.u32("digest count")?;
    if count as usize != spec.algorithms.len() {
        return Err(TcgLogError::Invalid {
            what: "digest count",
            offset: count_at,
            expected: format!("{} (one per algorithm of the header; event {number})", spec.algorithms.len()),
            found: count.to_string(),
        });
    }
    let mut digests: Vec<(u16, Vec<u8>)> = Vec::new();
    for _ in 0..count {
        let at = r.offset();
        let id = r.u16("hashAlg")?;
        let Some((_, size)) = spec.algorithms.iter().find(|(a, _)| *a == id) else {
            return Err(TcgLogError::Invalid {
                what: "hashAlg",
                offset: at,
                expected: format!("an algorithm of the header (event {number})"),
                found: crate::tpm::alg_name(id),
            });
        };
        if digests.iter().any(|(a, _)| *a == id) {
            return Err(TcgLogError::Invalid {
                what: "hashAlg",
                offset: at,
                expected: format!("each algorithm once (event {number})"),
                found: format!("{} twice", crate::tpm::alg_name(id)),
            });
        }
        digests.push((id, r.take(usize::from(*size), "digest")?.to_vec()));
    }
    let size = r.u32("eventSize")?;
    let data = r.take(usize::try_from(size).unwrap_or(usize::MAX), "event data")?.to_vec();
    Ok(Event { number, pcr, event_type, digests, data })
}

fn known_digest_size(id: u16) -> Option<u16> {
    match id {
        0x0004 => Some(20),      // SHA-1
        alg::SHA256 => Some(32), // SHA-256
        alg::SHA384 => Some(48), // SHA-384
        0x000D => Some(64),      // SHA-512
        0x0012 => Some(32),      // SM3-256
        _ => None,
    }
}

impl EventLog {
    /// Every PCR's value (0 to 23) in `bank` after the events, as the TPM
    /// would hold it had exactly these events been extended.
    pub fn replay(&self, bank: PcrBank) -> Result<Vec<Vec<u8>>, TcgLogError> {
        if !self.spec_id.algorithms.iter().any(|(a, _)| *a == bank.alg_id()) {
            return Err(TcgLogError::NoSuchBank { bank, found: self.algorithm_names() });
        }
        let mut pcrs = vec![vec![0u8; bank.digest_len()]; MAX_PCR as usize + 1];
        let mut pcr0_extended = false;
        for event in &self.events {
            if !event.is_extended() {
                // The locality sets PCR 0's initial value: it counts only
                // before the first extend of PCR 0.
                if event.pcr == 0 && !pcr0_extended {
                    if let Some(locality) = startup_locality(&event.data) {
                        if let Some(last) = pcrs[0].last_mut() {
                            *last = locality;
                        }
                    }
                }
                continue;
            }
            pcr0_extended |= event.pcr == 0;
            // parse() checked that every event has one digest per algorithm
            // of the header, and the bank is one of them.
            let digest = event.digest(bank).unwrap_or_default();
            let pcr = &mut pcrs[event.pcr as usize];
            let mut buf = std::mem::take(pcr);
            buf.extend_from_slice(digest);
            *pcr = bank.digest(&buf);
        }
        Ok(pcrs)
    }

    /// The events extended into `pcr`, in order.
    pub fn events_in(&self, pcr: u32) -> impl Iterator<Item = &Event> {
        self.events.iter().filter(move |e| e.pcr == pcr && e.is_extended())
    }

    /// The header's algorithms, for people (`sha1+sha256+...`).
    pub fn algorithm_names(&self) -> String {
        self.spec_id.algorithms.iter().map(|(a, _)| crate::tpm::alg_name(*a)).collect::<Vec<_>>().join("+")
    }
}

/// The locality of a `StartupLocality` event's data (PFP §10.4.5.3), if it is one.
fn startup_locality(data: &[u8]) -> Option<u8> {
    match data {
        [signature @ .., locality] if signature == STARTUP_LOCALITY_SIGNATURE => Some(*locality),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
