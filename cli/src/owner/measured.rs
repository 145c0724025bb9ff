//! The event log and the vTPM quote of session evidence: checked with
//! cvm-evidence, printed by `attest --events`, exported for tpm2-tools.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use cvm_evidence::eventlog::{EventRecord, PcrBank};
use cvm_evidence::gcp::{check_ak_certificate, AkAnchors};
use cvm_evidence::measured_boot::{check_measured_boot, MeasuredBootClaim, VerifiedBoot};
use cvm_evidence::vtpm::{check_measurements, VerifiedQuote, VtpmClaim};
use cvm_evidence::{Policy, VerificationReport};
use cvm_protocol::api::{MeasuredBootEvidence, SessionEvidence, VtpmEvidence};
use time::OffsetDateTime;

/// What the session evidence says was measured, after its checks.
#[derive(Clone, Debug)]
pub struct Measured {
    /// The events, oldest first.
    pub events: Vec<EventRecord>,
    /// The vTPM part as the agent sent it.
    pub vtpm: VtpmEvidence,
    /// The quote, when it verified.
    pub quote: Option<VerifiedQuote>,
    /// The measured-boot part as the agent sent it (`None` from older agents).
    pub measured_boot: Option<MeasuredBootEvidence>,
    /// The boot quote and the firmware's log, when the quote verified.
    pub boot: Option<VerifiedBoot>,
    /// The vTPM's attestation-key certificate (GCP), when it verified.
    pub ak_certificate: Option<cvm_evidence::certs::Certificate>,
    quote_bytes: Vec<u8>,
    signature_bytes: Vec<u8>,
}

/// Records the event-log and vTPM checks; returns the log digest recomputed
/// from the events (what the session report must bind) and what was measured.
pub(super) fn check(
    result: &mut VerificationReport,
    policy: &Policy,
    claimed: cvm_evidence::policy::Platform,
    ak: (&AkAnchors, OffsetDateTime),
    ak_public: Option<&[u8]>,
    evidence: &SessionEvidence,
    nonce: &[u8; 32],
) -> ([u8; 32], Measured) {
    let events: Vec<EventRecord> = evidence
        .events
        .iter()
        .map(|e| EventRecord::new(e.kind.clone(), e.name.clone(), e.identity.clone()))
        .collect();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.decode(s);
    let mut quote_bytes = Vec::new();
    let mut signature_bytes = Vec::new();
    let banks;
    let kind_text;
    let absent;
    let claim = match &evidence.vtpm {
        VtpmEvidence::Off => VtpmClaim::Absent { reason: "off in the agent's configuration" },
        VtpmEvidence::Unavailable { reason } => VtpmClaim::Absent { reason },
        VtpmEvidence::Quoted { kind, detail: _, pcr, banks: names, quote, signature, .. } => {
            let decoded = (b64(quote), b64(signature));
            kind_text = kind.to_string();
            let parsed: Result<Vec<PcrBank>, String> = names
                .iter()
                .map(|n| match n.as_str() {
                    "sha256" => Ok(PcrBank::Sha256),
                    "sha384" => Ok(PcrBank::Sha384),
                    other => Err(format!("unknown PCR bank {other:?}")),
                })
                .collect();
            match (decoded, parsed) {
                ((Ok(q), Ok(s)), Ok(b)) => {
                    quote_bytes = q;
                    signature_bytes = s;
                    banks = b;
                    VtpmClaim::Quoted {
                        quote: &quote_bytes,
                        signature: &signature_bytes,
                        pcr: *pcr,
                        banks: &banks,
                        kind: &kind_text,
                    }
                }
                (_, Err(e)) => {
                    absent = format!("malformed vTPM evidence: {e}");
                    result.record("vtpm_quote_format", false, "sha256 or sha384 banks", e);
                    VtpmClaim::Absent { reason: &absent }
                }
                _ => {
                    absent = "malformed vTPM evidence: the quote or signature is not base64".to_owned();
                    result.record("vtpm_quote_format", false, "base64 quote and signature", "not base64");
                    VtpmClaim::Absent { reason: &absent }
                }
            }
        }
    };
    let (digest, quote) = check_measurements(
        result,
        policy.require_vtpm,
        ak_public,
        &claim,
        nonce,
        &evidence.event_log_digest.0,
        &events,
    );
    let own = match &evidence.vtpm {
        VtpmEvidence::Quoted { pcr, .. } => Some((*pcr, events.as_slice())),
        _ => None,
    };
    let boot = check_boot(result, policy, ak_public, evidence.measured_boot.as_ref(), nonce, own);
    // The certificate is required by a gcp policy, and whenever the agent
    // claims gcp: its claim alone must never make the vTPM look Google's.
    let requires_ak_certificate =
        policy.requires_ak_certificate() || claimed == cvm_evidence::policy::Platform::Gcp;
    let ak_certificate = match &evidence.vtpm {
        VtpmEvidence::Quoted { ak_certificate: Some(text), .. } => match b64(text) {
            Ok(der) => {
                check_ak_certificate(result, ak.0, ak.1, requires_ak_certificate, Some(&der), ak_public)
            }
            Err(_) => {
                result.record("vtpm_ak_certificate", false, "a base64 DER certificate", "not base64");
                None
            }
        },
        _ => check_ak_certificate(result, ak.0, ak.1, requires_ak_certificate, None, ak_public),
    };
    let measured = Measured {
        events,
        vtpm: evidence.vtpm.clone(),
        quote,
        measured_boot: evidence.measured_boot.clone(),
        boot,
        ak_certificate,
        quote_bytes,
        signature_bytes,
    };
    (digest, measured)
}

/// Decodes the measured-boot part and records its checks and the policy's
/// PCR and event rules.
fn check_boot(
    result: &mut VerificationReport,
    policy: &Policy,
    ak_public: Option<&[u8]>,
    evidence: Option<&MeasuredBootEvidence>,
    nonce: &[u8; 32],
    own: Option<(u32, &[EventRecord])>,
) -> Option<VerifiedBoot> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.decode(s);
    let absent = |result: &mut VerificationReport, reason: &str| {
        check_measured_boot(result, policy, ak_public, &MeasuredBootClaim::Absent { reason }, nonce, own)
    };
    let (pcrs, quote, signature, event_log, unavailable) = match evidence {
        None => return absent(result, "the agent sent none (an agent older than measured boot)"),
        Some(MeasuredBootEvidence::Unavailable { reason }) => return absent(result, reason),
        Some(MeasuredBootEvidence::Quoted { pcrs, quote, signature, event_log, event_log_unavailable }) => {
            (pcrs, quote, signature, event_log, event_log_unavailable)
        }
    };
    let values: Result<Vec<(u32, Vec<u8>)>, String> = pcrs
        .iter()
        .map(|p| hex::decode(&p.sha256).map(|v| (p.pcr, v)).map_err(|e| format!("PCR {}: {e}", p.pcr)))
        .collect();
    let decoded = (b64(quote), b64(signature), event_log.as_deref().map(b64).transpose());
    let (values, quote, signature, log) = match (values, decoded) {
        (Ok(v), (Ok(q), Ok(s), Ok(l))) => (v, q, s, l),
        (Err(e), _) => {
            result.record("boot_quote_pcrs", false, "hex PCR values", e);
            return absent(result, "malformed measured-boot evidence");
        }
        _ => {
            result.record(
                "boot_quote_signature",
                false,
                "base64 quote, signature and event log",
                "not base64",
            );
            return absent(result, "malformed measured-boot evidence");
        }
    };
    let why = unavailable.as_deref().unwrap_or("the agent gave no reason");
    let claim = MeasuredBootClaim::Quoted {
        quote: &quote,
        signature: &signature,
        pcrs: &values,
        event_log: log.as_deref().ok_or(why),
    };
    check_measured_boot(result, policy, ak_public, &claim, nonce, own)
}

/// Prints the event log and the replay's result.
pub(super) fn print_events(measured: &Measured) -> anyhow::Result<()> {
    let mut out = crate::output::stdout();
    writeln!(out, "event log ({} events, oldest first):", measured.events.len())?;
    let kind_w = measured.events.iter().map(|e| e.kind.len()).max().unwrap_or(4).max(4);
    let name_w = measured.events.iter().map(|e| e.name.len()).max().unwrap_or(4).clamp(4, 32);
    writeln!(out, "  {:>3}  {:kind_w$}  {:name_w$}  identity", "#", "kind", "name")?;
    for (i, e) in measured.events.iter().enumerate() {
        writeln!(out, "  {i:>3}  {:kind_w$}  {:name_w$}  {}", e.kind, e.name, e.identity)?;
    }
    let digest = cvm_evidence::eventlog::log_digest(&measured.events);
    writeln!(out, "  log digest {} (bound by the fresh SNP report)", hex::encode(digest))?;
    match (&measured.vtpm, &measured.quote) {
        (VtpmEvidence::Quoted { kind, detail, .. }, Some(q)) => {
            writeln!(out, "vTPM quote: verified; the replayed log gives the quoted PCR values:")?;
            for (bank, value) in &q.values {
                writeln!(out, "  {bank}:{:<2} {}", q.pcr, hex::encode(value))?;
            }
            writeln!(
                out,
                "  TPM clock {} ms, resets {}, restarts {}",
                q.quote.clock.clock, q.quote.clock.reset_count, q.quote.clock.restart_count
            )?;
            writeln!(out, "  vTPM kind: {kind} ({detail})")?;
        }
        (VtpmEvidence::Quoted { .. }, None) => writeln!(out, "vTPM quote: REJECTED (see the failed checks)")?,
        (VtpmEvidence::Off, _) => {
            writeln!(out, "vTPM: off in the agent's configuration; the log is covered by SNP only")?
        }
        (VtpmEvidence::Unavailable { reason }, _) => {
            writeln!(out, "vTPM: none ({reason}); the log is covered by SNP only")?
        }
    }
    print_boot(&mut out, measured)?;
    Ok(())
}

/// Prints the boot quote and the firmware's events in the quoted PCRs.
fn print_boot(out: &mut impl std::io::Write, measured: &Measured) -> anyhow::Result<()> {
    let Some(boot) = &measured.boot else {
        match &measured.measured_boot {
            None => writeln!(out, "measured boot: the agent sent no boot quote (an older agent)")?,
            Some(MeasuredBootEvidence::Unavailable { reason }) => {
                writeln!(out, "measured boot: none ({reason})")?
            }
            Some(MeasuredBootEvidence::Quoted { .. }) => {
                writeln!(out, "measured boot: the boot quote was REJECTED (see the failed checks)")?
            }
        }
        return Ok(());
    };
    writeln!(out, "measured boot: the boot quote verified over your nonce; quoted PCRs (sha256):")?;
    for (pcr, value) in &boot.pcrs {
        let how = if Some(*pcr) == boot.own_pcr {
            "the agent's own event log"
        } else if boot.replayed.contains(pcr) {
            "reproduced by the firmware's log"
        } else {
            "NOT reproduced by the firmware's log"
        };
        writeln!(out, "  {pcr:>2}  {}  {how}", hex::encode(value))?;
    }
    let Some(log) = &boot.log else {
        writeln!(out, "  no readable firmware event log")?;
        return Ok(());
    };
    writeln!(
        out,
        "firmware event log ({} events, banks {}); the events of the quoted PCRs:",
        log.events.len(),
        log.algorithm_names()
    )?;
    for e in log.events.iter().filter(|e| e.is_extended() && boot.pcrs.contains_key(&e.pcr)) {
        let digest = e.digest(PcrBank::Sha256).map(hex::encode).unwrap_or_default();
        writeln!(
            out,
            "  {:>3}  PCR {:>2}  {:34} {digest}  {}",
            e.number,
            e.pcr,
            e.event_type.to_string(),
            e.describe()
        )?;
    }
    Ok(())
}

/// Writes the quote in tpm2-tools formats into `dir`; returns the
/// `tpm2_checkquote` command line that verifies it.
pub(super) fn export(dir: &Path, measured: &Measured, nonce: &[u8; 32]) -> anyhow::Result<String> {
    let Some(q) = &measured.quote else {
        anyhow::bail!("there is no verified vTPM quote to export");
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let write = |name: &str, bytes: &[u8]| -> anyhow::Result<PathBuf> {
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    };
    let spki = q.ak.to_spki_der()?;
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD
            .encode(&spki)
            .as_bytes()
            .chunks(64)
            .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
            .collect::<String>()
    );
    let ak = write("ak.pem", pem.as_bytes())?;
    let msg = write("quote.msg", &measured.quote_bytes)?;
    let sig = write("quote.sig", &measured.signature_bytes)?;
    let pcrs = write("quote.pcrs", &cvm_evidence::tpm::pcrs_file(q.pcr, &q.values)?)?;
    write("nonce", format!("{}\n", hex::encode(nonce)).as_bytes())?;
    let hash = match q.ak.scheme_hash {
        cvm_evidence::tpm::alg::SHA384 => "sha384",
        _ => "sha256",
    };
    Ok(format!(
        "tpm2_checkquote -u {} -m {} -s {} -f {} -g {hash} -q {}",
        ak.display(),
        msg.display(),
        sig.display(),
        pcrs.display(),
        hex::encode(nonce)
    ))
}
