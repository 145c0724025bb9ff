//! Measured boot in session evidence: the quote of the boot PCRs, the
//! firmware's event log replayed against it, the agent's own log replayed
//! against its PCR in the same quote, and the policy's PCR and event rules.
//!
//! On a cloud that boots our disk image, the SNP measurement covers only the
//! cloud's firmware (on Azure, also Microsoft's paravisor); what covers the
//! image is the boot chain's measurements in the vTPM: the firmware
//! measures the UKI into PCR 4, systemd-stub its sections into PCR 11, the
//! kernel's EFI stub its command line and initrd into PCR 9. The agent
//! sends, next to its own quote, a quote of those PCRs and its own, with the
//! values it read and the firmware's event log.
//!
//! [`check_measured_boot`] records, in order:
//!
//! - `measured_boot`: the agent sent a boot quote (or why not; without one,
//!   a policy with PCR or event rules fails).
//! - `boot_quote_signature`: the quote parses and the AK bound to the SNP
//!   evidence signed it.
//! - `boot_quote_nonce`: it carries this verifier's nonce.
//! - `boot_quote_pcrs`: it covers exactly the PCRs the agent names, in the
//!   SHA-256 bank, and the values the agent sent digest to the quoted PCR
//!   digest: from here on those values are the TPM's.
//! - `firmware_log_format`: the event log parses ([`crate::tcglog`]).
//! - `firmware_log_replay`: replaying it gives the quoted value of every
//!   quoted PCR but the agent's own (each PCR that differs is named).
//! - `boot_quote_event_replay`: the agent's own event log replays to its PCR
//!   in this quote too.
//! - `tpm_pcr_N`, one per PCR rule of the policy: the quoted value is one it accepts.
//! - `tpm_event_pcr_N`, one per event rule: the replayed log's events of
//!   that type in PCR N have exactly the digests the rule lists.
//!
//! A check that cannot run because an earlier one failed is recorded as
//! skipped, and a rule of the policy that cannot be checked fails: nothing
//! the policy asks for passes by omission. The firmware's log is judged only
//! when the policy has PCR or event rules: without them the owner pins the
//! image by the SNP measurement alone (direct boot on the operator's own
//! hosts), and a firmware whose log is missing or does not replay is then
//! reported (skipped, with what was wrong) rather than refused.

use std::collections::BTreeMap;

use crate::eventlog::{replay_pcr, EventRecord, PcrBank};
use crate::policy::Policy;
use crate::tcglog::{self, EventLog, MAX_PCR};
use crate::tpm::{alg, AkPublic, Quote, Signature};
use crate::VerificationReport;

/// What the agent's session evidence says about measured boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MeasuredBootClaim<'a> {
    /// A quote of the boot PCRs.
    Quoted {
        /// Marshalled TPMS_ATTEST.
        quote: &'a [u8],
        /// Marshalled TPMT_SIGNATURE.
        signature: &'a [u8],
        /// The PCRs quoted (SHA-256 bank) with the values the agent read, ascending.
        pcrs: &'a [(u32, Vec<u8>)],
        /// The firmware's event log, or why the agent has none.
        event_log: Result<&'a [u8], &'a str>,
    },
    /// No boot quote; why.
    Absent {
        /// The agent's reason (no vTPM, an older agent, ...).
        reason: &'a str,
    },
}

/// A boot quote that verified: the PCR values it proves, and the replayed
/// firmware log when it matched them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedBoot {
    /// The quoted SHA-256 value of each PCR.
    pub pcrs: BTreeMap<u32, Vec<u8>>,
    /// The firmware's event log, when it parsed (whether it replayed is in `replayed`).
    pub log: Option<EventLog>,
    /// The PCRs whose quoted value the log's replay reproduced.
    pub replayed: Vec<u32>,
    /// The agent's own PCR, when it is among them.
    pub own_pcr: Option<u32>,
}

const PCR_RULE_NAMES: [&str; 24] = [
    "tpm_pcr_0",
    "tpm_pcr_1",
    "tpm_pcr_2",
    "tpm_pcr_3",
    "tpm_pcr_4",
    "tpm_pcr_5",
    "tpm_pcr_6",
    "tpm_pcr_7",
    "tpm_pcr_8",
    "tpm_pcr_9",
    "tpm_pcr_10",
    "tpm_pcr_11",
    "tpm_pcr_12",
    "tpm_pcr_13",
    "tpm_pcr_14",
    "tpm_pcr_15",
    "tpm_pcr_16",
    "tpm_pcr_17",
    "tpm_pcr_18",
    "tpm_pcr_19",
    "tpm_pcr_20",
    "tpm_pcr_21",
    "tpm_pcr_22",
    "tpm_pcr_23",
];

const EVENT_RULE_NAMES: [&str; 24] = [
    "tpm_event_pcr_0",
    "tpm_event_pcr_1",
    "tpm_event_pcr_2",
    "tpm_event_pcr_3",
    "tpm_event_pcr_4",
    "tpm_event_pcr_5",
    "tpm_event_pcr_6",
    "tpm_event_pcr_7",
    "tpm_event_pcr_8",
    "tpm_event_pcr_9",
    "tpm_event_pcr_10",
    "tpm_event_pcr_11",
    "tpm_event_pcr_12",
    "tpm_event_pcr_13",
    "tpm_event_pcr_14",
    "tpm_event_pcr_15",
    "tpm_event_pcr_16",
    "tpm_event_pcr_17",
    "tpm_event_pcr_18",
    "tpm_event_pcr_19",
    "tpm_event_pcr_20",
    "tpm_event_pcr_21",
    "tpm_event_pcr_22",
    "tpm_event_pcr_23",
];

/// The name of the check of the policy's value rule for `pcr`.
pub fn pcr_rule_name(pcr: u32) -> &'static str {
    PCR_RULE_NAMES.get(pcr as usize).copied().unwrap_or("tpm_pcr")
}

/// The name of the check of the policy's event rule for `pcr`.
pub fn event_rule_name(pcr: u32) -> &'static str {
    EVENT_RULE_NAMES.get(pcr as usize).copied().unwrap_or("tpm_event")
}

const LATER: [&str; 6] = [
    "boot_quote_signature",
    "boot_quote_nonce",
    "boot_quote_pcrs",
    "firmware_log_format",
    "firmware_log_replay",
    "boot_quote_event_replay",
];

/// Checks the measured-boot part of session evidence and the policy's
/// rules on it (see the module documentation).
///
/// `ak_public` is the attestation key bound to the boot evidence; `own`
/// the agent's PCR and its event log, when the agent quotes one.
pub fn check_measured_boot(
    result: &mut VerificationReport,
    policy: &Policy,
    ak_public: Option<&[u8]>,
    claim: &MeasuredBootClaim<'_>,
    nonce: &[u8; 32],
    own: Option<(u32, &[EventRecord])>,
) -> Option<VerifiedBoot> {
    let verified = check_quote(result, policy, ak_public, claim, nonce, own);
    check_rules(result, policy, verified.as_ref());
    verified
}

fn skip_from(result: &mut VerificationReport, from: &str, reason: &str) {
    let start = LATER.iter().position(|n| *n == from).unwrap_or(LATER.len());
    for name in &LATER[start..] {
        result.record_skipped(name, reason);
    }
}

fn check_quote(
    result: &mut VerificationReport,
    policy: &Policy,
    ak_public: Option<&[u8]>,
    claim: &MeasuredBootClaim<'_>,
    nonce: &[u8; 32],
    own: Option<(u32, &[EventRecord])>,
) -> Option<VerifiedBoot> {
    let (quote_bytes, sig_bytes, pcrs, event_log) = match claim {
        MeasuredBootClaim::Absent { reason } => {
            if policy.has_tpm_rules() {
                result.record(
                    "measured_boot",
                    false,
                    "a quote of the boot PCRs and the firmware's event log (the policy has PCR or event rules)",
                    format!("none: {reason}"),
                );
            } else {
                result.record_skipped(
                    "measured_boot",
                    format!("the agent sent no boot quote ({reason}); the policy has no PCR or event rule"),
                );
            }
            skip_from(result, LATER[0], "no boot quote");
            return None;
        }
        MeasuredBootClaim::Quoted { quote, signature, pcrs, event_log } => {
            (*quote, *signature, *pcrs, event_log)
        }
    };
    let listed = pcrs.iter().map(|(p, _)| p.to_string()).collect::<Vec<_>>().join(",");
    result.record(
        "measured_boot",
        true,
        "a quote of the boot PCRs and the firmware's event log",
        match event_log {
            Ok(log) => format!("a quote of PCRs {listed} (sha256) and an event log of {} bytes", log.len()),
            Err(reason) => format!("a quote of PCRs {listed} (sha256), no event log ({reason})"),
        },
    );

    // The quote and its signer.
    let Some(ak_bytes) = ak_public else {
        result.record(
            "boot_quote_signature",
            false,
            "signed by the AK bound to the SNP evidence",
            "no AK is bound",
        );
        skip_from(result, LATER[1], "the boot quote has no bound signer");
        return None;
    };
    let parsed = AkPublic::parse(ak_bytes).and_then(|ak| {
        let quote = Quote::parse(quote_bytes)?;
        let signature = Signature::parse(sig_bytes)?;
        ak.verify(quote_bytes, &signature)?;
        Ok((ak, quote))
    });
    let (ak, quote) = match parsed {
        Ok(x) => {
            result.record(
                "boot_quote_signature",
                true,
                "signed by the AK bound to the SNP evidence",
                "valid",
            );
            x
        }
        Err(e) => {
            result.record(
                "boot_quote_signature",
                false,
                "signed by the AK bound to the SNP evidence",
                e.to_string(),
            );
            skip_from(result, LATER[1], "the boot quote did not verify");
            return None;
        }
    };
    let nonce_ok = quote.extra_data == nonce;
    result.record("boot_quote_nonce", nonce_ok, hex::encode(nonce), hex::encode(&quote.extra_data));

    // The PCRs it covers and the values they had.
    let claimed: Vec<(u16, u32)> = pcrs.iter().map(|(p, _)| (alg::SHA256, *p)).collect();
    let ascending = pcrs.windows(2).all(|w| w[0].0 < w[1].0) && pcrs.iter().all(|(p, _)| *p <= MAX_PCR);
    let sizes_ok = pcrs.iter().all(|(_, v)| v.len() == 32);
    let concatenated: Vec<u8> = pcrs.iter().flat_map(|(_, v)| v.iter().copied()).collect();
    let digest = PcrBank::from_alg_id(ak.scheme_hash).map(|h| h.digest(&concatenated));
    let pcrs_ok = ascending
        && sizes_ok
        && !pcrs.is_empty()
        && quote.selection.pcrs() == claimed
        && digest.as_deref() == Some(quote.pcr_digest.as_slice());
    result.record(
        "boot_quote_pcrs",
        pcrs_ok,
        format!(
            "PCRs {listed} in sha256, whose values as sent digest to {}",
            digest
                .as_deref()
                .map(hex::encode)
                .unwrap_or_else(|| "(an AK hashing with sha256 or sha384)".into())
        ),
        format!("a quote of {} with PCR digest {}", quote.selection, hex::encode(&quote.pcr_digest)),
    );
    if !(nonce_ok && pcrs_ok) {
        skip_from(result, LATER[3], "the boot quote did not verify");
        return None;
    }
    let values: BTreeMap<u32, Vec<u8>> = pcrs.iter().cloned().collect();
    let own_pcr = own.map(|(p, _)| p).filter(|p| values.contains_key(p));

    // The firmware's log, replayed against the quoted values.
    let (log, replayed) = match event_log {
        Err(reason) => {
            if policy.tpm_events.is_empty() {
                result
                    .record_skipped("firmware_log_format", format!("the agent sent no event log ({reason})"));
            } else {
                result.record(
                    "firmware_log_format",
                    false,
                    "the firmware's event log (the policy has event rules)",
                    format!("none: {reason}"),
                );
            }
            result.record_skipped("firmware_log_replay", "no event log");
            (None, Vec::new())
        }
        Ok(bytes) => match tcglog::parse(bytes) {
            Err(e) => {
                result.record(
                    "firmware_log_format",
                    false,
                    "a TCG PC Client crypto-agile event log",
                    e.to_string(),
                );
                result.record_skipped("firmware_log_replay", "the event log cannot be read");
                (None, Vec::new())
            }
            Ok(log) => {
                result.record(
                    "firmware_log_format",
                    true,
                    "a TCG PC Client crypto-agile event log",
                    format!("{} events, banks {}", log.events.len(), log.algorithm_names()),
                );
                let replayed = replay_firmware_log(result, policy, &log, &values, own_pcr);
                (Some(log), replayed)
            }
        },
    };

    // The agent's own log, against its PCR in this quote.
    match own {
        None => result.record_skipped("boot_quote_event_replay", "the agent quotes no PCR of its own"),
        Some((pcr, events)) => match values.get(&pcr) {
            None => result.record(
                "boot_quote_event_replay",
                false,
                format!("the agent's PCR {pcr} in the boot quote"),
                format!("PCRs {listed}"),
            ),
            Some(value) => {
                let expected = replay_pcr(PcrBank::Sha256, events);
                result.record(
                    "boot_quote_event_replay",
                    &expected == value,
                    format!(
                        "sha256:{pcr} = {} (the {} events replayed)",
                        hex::encode(&expected),
                        events.len()
                    ),
                    format!("sha256:{pcr} = {}", hex::encode(value)),
                );
            }
        },
    }
    Some(VerifiedBoot { pcrs: values, log, replayed, own_pcr })
}

/// Records `firmware_log_replay`; returns the PCRs the replay reproduced.
fn replay_firmware_log(
    result: &mut VerificationReport,
    policy: &Policy,
    log: &EventLog,
    values: &BTreeMap<u32, Vec<u8>>,
    own_pcr: Option<u32>,
) -> Vec<u32> {
    let replay = match log.replay(PcrBank::Sha256) {
        Ok(r) => r,
        Err(e) => {
            judge(result, policy, "firmware_log_replay", "sha256 digests in the event log", e.to_string());
            return Vec::new();
        }
    };
    let mut replayed = Vec::new();
    let mut differ = Vec::new();
    for (pcr, value) in values {
        if Some(*pcr) == own_pcr {
            continue;
        }
        let expected = &replay[*pcr as usize];
        if expected == value {
            replayed.push(*pcr);
        } else {
            differ.push(format!(
                "PCR {pcr}: the log gives {}, the quote has {}",
                hex::encode(expected),
                hex::encode(value)
            ));
        }
    }
    let list = replayed.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let expected = "the log's events reproduce every quoted PCR";
    if differ.is_empty() {
        result.record("firmware_log_replay", true, expected, format!("PCRs {list} reproduced"));
    } else {
        judge(result, policy, "firmware_log_replay", expected, differ.join("; "));
    }
    replayed
}

/// Records a failure of the firmware's log: failed when the policy has PCR
/// or event rules, else skipped with what was wrong (see the module documentation).
fn judge(
    result: &mut VerificationReport,
    policy: &Policy,
    name: &'static str,
    expected: &str,
    found: String,
) {
    if policy.has_tpm_rules() {
        result.record(name, false, expected, found);
    } else {
        result.record_skipped(name, format!("not required: the policy has no PCR or event rule; {found}"));
    }
}

fn check_rules(result: &mut VerificationReport, policy: &Policy, boot: Option<&VerifiedBoot>) {
    for (pcr, accepted) in &policy.tpm_pcrs {
        let name = pcr_rule_name(*pcr);
        let expected = one_of(accepted.iter().map(ToString::to_string));
        match boot.map(|b| b.pcrs.get(pcr)) {
            None => result.record(name, false, expected, "no verified boot quote"),
            Some(None) => result.record(name, false, expected, format!("PCR {pcr} is not in the boot quote")),
            Some(Some(value)) => {
                let ok = accepted.iter().any(|a| a.0.as_slice() == value.as_slice());
                result.record(name, ok, expected, hex::encode(value));
            }
        }
    }
    for rule in &policy.tpm_events {
        let name = event_rule_name(rule.pcr);
        let expected = format!(
            "{} in PCR {}: [{}]",
            rule.event_type,
            rule.pcr,
            rule.sha256.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        );
        let log = match boot {
            None => {
                result.record(name, false, expected, "no verified boot quote");
                continue;
            }
            Some(b) => match &b.log {
                Some(log) if b.replayed.contains(&rule.pcr) => log,
                Some(_) => {
                    result.record(
                        name,
                        false,
                        expected,
                        format!("the event log does not reproduce PCR {}", rule.pcr),
                    );
                    continue;
                }
                None => {
                    result.record(name, false, expected, "no readable event log");
                    continue;
                }
            },
        };
        let found: Vec<String> = log
            .events_in(rule.pcr)
            .filter(|e| e.event_type == rule.event_type)
            .map(|e| e.digest(PcrBank::Sha256).map(hex::encode).unwrap_or_default())
            .collect();
        let want: Vec<String> = rule.sha256.iter().map(ToString::to_string).collect();
        result.record(name, found == want, expected, format!("[{}]", found.join(", ")));
    }
}

fn one_of(items: impl Iterator<Item = String>) -> String {
    let list: Vec<String> = items.collect();
    if list.len() == 1 {
        list.join("")
    } else {
        format!("one of [{}]", list.join(", "))
    }
}

#[cfg(test)]
mod tests;
