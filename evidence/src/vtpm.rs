//! The vTPM's part of session evidence: the event log the agent sends, the
//! quote over the verifier's nonce, and how they tie to the SNP evidence.
//!
//! [`check_measurements`] records, in order:
//!
//! - `event_log`: the log digest the agent claims equals the digest of the
//!   events it sent ([`crate::eventlog::log_digest`]); the session report's
//!   REPORT_DATA must then bind that digest (`session_binding`).
//! - `vtpm`: a quote is present, or the agent says why not; a missing vTPM
//!   fails only when the policy sets `require_vtpm`.
//! - `vtpm_ak_binding`: the boot evidence carries the attestation key, so
//!   its SHA-256 is in the boot REPORT_DATA (checked by `boot_binding`).
//! - `vtpm_ak`: that key is a restricted signing key of a TPM.
//! - `vtpm_quote_format`, `vtpm_quote_signature`: the quote parses and the AK signed it.
//! - `vtpm_quote_nonce`: its extraData is this verifier's fresh nonce.
//! - `vtpm_pcr_selection`: it covers exactly the agent's PCR in the banks the agent names, SHA-256 among them.
//! - `vtpm_event_replay`: replaying the events from zero gives the quoted PCR digest.
//!
//! A check that cannot run because an earlier one failed is recorded as
//! skipped, and the earlier failure rejects the evidence.

use sha2::{Digest as _, Sha256};

use crate::eventlog::{log_digest, replay_pcr, EventRecord, PcrBank};
use crate::tpm::{AkPublic, KeyParams, Quote, Signature};
use crate::VerificationReport;

/// What the agent's session evidence says about its vTPM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VtpmClaim<'a> {
    /// A quote.
    Quoted {
        /// Marshalled TPMS_ATTEST.
        quote: &'a [u8],
        /// Marshalled TPMT_SIGNATURE.
        signature: &'a [u8],
        /// The PCR the events were extended into.
        pcr: u32,
        /// The banks extended and quoted, in quote order.
        banks: &'a [PcrBank],
        /// Which vTPM the agent used, as it describes it.
        kind: &'a str,
    },
    /// No quote; why.
    Absent {
        /// The agent's reason (`off` by configuration, not found, failed, ...).
        reason: &'a str,
    },
}

/// A quote that verified, and the replayed PCR values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedQuote {
    /// The attestation key.
    pub ak: AkPublic,
    /// The quote.
    pub quote: Quote,
    /// The PCR quoted.
    pub pcr: u32,
    /// Each bank's replayed value of the PCR, in quote order.
    pub values: Vec<(PcrBank, Vec<u8>)>,
}

/// Checks the event log and the vTPM quote of session evidence; returns the
/// log digest recomputed from `events` (what the session report must bind)
/// and the verified quote, if there is one.
pub fn check_measurements(
    result: &mut VerificationReport,
    require_vtpm: bool,
    ak_public: Option<&[u8]>,
    claim: &VtpmClaim<'_>,
    nonce: &[u8; 32],
    claimed_log_digest: &[u8; 32],
    events: &[EventRecord],
) -> ([u8; 32], Option<VerifiedQuote>) {
    let digest = log_digest(events);
    result.record(
        "event_log",
        &digest == claimed_log_digest,
        format!("the digest of the {} events sent: {}", events.len(), hex::encode(digest)),
        hex::encode(claimed_log_digest),
    );
    let verified = check_vtpm(result, require_vtpm, ak_public, claim, nonce, events);
    (digest, verified)
}

fn check_vtpm(
    result: &mut VerificationReport,
    require_vtpm: bool,
    ak_public: Option<&[u8]>,
    claim: &VtpmClaim<'_>,
    nonce: &[u8; 32],
    events: &[EventRecord],
) -> Option<VerifiedQuote> {
    const LATER: [&str; 7] = [
        "vtpm_ak_binding",
        "vtpm_ak",
        "vtpm_quote_format",
        "vtpm_quote_signature",
        "vtpm_quote_nonce",
        "vtpm_pcr_selection",
        "vtpm_event_replay",
    ];
    let skip_rest = |result: &mut VerificationReport, from: usize, reason: &str| {
        for name in &LATER[from..] {
            result.record_skipped(name, reason);
        }
    };
    let (quote_bytes, sig_bytes, pcr, banks, kind) = match claim {
        VtpmClaim::Absent { reason } => {
            if require_vtpm {
                result.record(
                    "vtpm",
                    false,
                    "a vTPM quote (the policy sets require_vtpm)",
                    format!("none: {reason}"),
                );
            } else {
                result.record_skipped(
                    "vtpm",
                    format!("the agent has no vTPM quote ({reason}); the policy does not require one"),
                );
            }
            skip_rest(result, 0, "no vTPM quote");
            return None;
        }
        VtpmClaim::Quoted { quote, signature, pcr, banks, kind } => (*quote, *signature, *pcr, *banks, *kind),
    };
    result.record(
        "vtpm",
        true,
        "a vTPM quote",
        format!("a quote of PCR {pcr} ({}) from a vTPM of kind {kind}", bank_list(banks)),
    );
    let Some(ak_bytes) = ak_public else {
        result.record("vtpm_ak_binding", false, "the attestation key in the boot evidence", "none");
        skip_rest(result, 1, "no attestation key is bound to the SNP evidence");
        return None;
    };
    result.record(
        "vtpm_ak_binding",
        true,
        "the attestation key in the boot evidence (its SHA-256 in the boot REPORT_DATA)",
        format!("AK sha256:{}", hex::encode(Sha256::digest(ak_bytes))),
    );
    let ak = match AkPublic::parse(ak_bytes) {
        Ok(ak) => {
            result.record("vtpm_ak", true, "a restricted TPM signing key", describe_ak(&ak));
            ak
        }
        Err(e) => {
            result.record("vtpm_ak", false, "a restricted TPM signing key", e.to_string());
            skip_rest(result, 2, "the attestation key is unusable");
            return None;
        }
    };
    let parsed = Quote::parse(quote_bytes).and_then(|q| Ok((q, Signature::parse(sig_bytes)?)));
    let (quote, signature) = match parsed {
        Ok(x) => {
            result.record("vtpm_quote_format", true, "TPMS_ATTEST quote and TPMT_SIGNATURE", "parsed");
            x
        }
        Err(e) => {
            result.record("vtpm_quote_format", false, "TPMS_ATTEST quote and TPMT_SIGNATURE", e.to_string());
            skip_rest(result, 3, "the quote cannot be parsed");
            return None;
        }
    };
    let mut ok = match ak.verify(quote_bytes, &signature) {
        Ok(()) => {
            result.record("vtpm_quote_signature", true, "signed by the bound AK", "valid");
            true
        }
        Err(e) => {
            result.record("vtpm_quote_signature", false, "signed by the bound AK", e.to_string());
            false
        }
    };
    let nonce_ok = quote.extra_data == nonce;
    result.record("vtpm_quote_nonce", nonce_ok, hex::encode(nonce), hex::encode(&quote.extra_data));
    ok &= nonce_ok;
    let want: Vec<(u16, u32)> = banks.iter().map(|b| (b.alg_id(), pcr)).collect();
    let selection_ok = banks.contains(&PcrBank::Sha256) && quote.selection.pcrs() == want;
    result.record(
        "vtpm_pcr_selection",
        selection_ok,
        format!("PCR {pcr} in {} (sha256 required)", bank_list(banks)),
        quote.selection.to_string(),
    );
    if !selection_ok {
        result.record_skipped("vtpm_event_replay", "the quote covers other PCRs than the agent names");
        return None;
    }
    let values: Vec<(PcrBank, Vec<u8>)> = banks.iter().map(|b| (*b, replay_pcr(*b, events))).collect();
    let concatenated: Vec<u8> = values.iter().flat_map(|(_, v)| v.iter().copied()).collect();
    let expected = match PcrBank::from_alg_id(ak.scheme_hash) {
        Some(h) => h.digest(&concatenated),
        None => {
            result.record("vtpm_event_replay", false, "an AK hashing with sha256 or sha384", "another hash");
            return None;
        }
    };
    let replay_ok = expected == quote.pcr_digest;
    result.record(
        "vtpm_event_replay",
        replay_ok,
        format!(
            "the PCR digest of the {} events replayed ({}): {}",
            events.len(),
            values
                .iter()
                .map(|(b, v)| format!("{b}:{pcr}={}", hex::encode(v)))
                .collect::<Vec<_>>()
                .join(", "),
            hex::encode(&expected)
        ),
        hex::encode(&quote.pcr_digest),
    );
    ok &= replay_ok;
    ok.then_some(VerifiedQuote { ak, quote, pcr, values })
}

fn bank_list(banks: &[PcrBank]) -> String {
    banks.iter().map(ToString::to_string).collect::<Vec<_>>().join("+")
}

fn describe_ak(ak: &AkPublic) -> String {
    let key = match &ak.key {
        KeyParams::Ecc { curve: 0x0003, .. } => "ECC P-256".to_owned(),
        KeyParams::Ecc { .. } => "ECC P-384".to_owned(),
        KeyParams::Rsa { modulus, .. } => format!("RSA-{}", modulus.len() * 8),
    };
    format!(
        "{key}, {}/{}, restricted signing key",
        crate::tpm::alg_name(ak.scheme),
        crate::tpm::alg_name(ak.scheme_hash)
    )
}
