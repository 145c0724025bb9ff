//! The event log and the vTPM quote of session evidence: checked with
//! cvm-evidence, printed by `attest --events`, exported for tpm2-tools.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use cvm_evidence::eventlog::{EventRecord, PcrBank};
use cvm_evidence::vtpm::{check_measurements, VerifiedQuote, VtpmClaim};
use cvm_evidence::VerificationReport;
use cvm_protocol::api::{SessionEvidence, VtpmEvidence};

/// What the session evidence says was measured, after its checks.
#[derive(Clone, Debug)]
pub struct Measured {
    /// The events, oldest first.
    pub events: Vec<EventRecord>,
    /// The vTPM part as the agent sent it.
    pub vtpm: VtpmEvidence,
    /// The quote, when it verified.
    pub quote: Option<VerifiedQuote>,
    quote_bytes: Vec<u8>,
    signature_bytes: Vec<u8>,
}

/// Records the event-log and vTPM checks; returns the log digest recomputed
/// from the events (what the session report must bind) and what was measured.
pub(super) fn check(
    result: &mut VerificationReport,
    require_vtpm: bool,
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
        VtpmEvidence::Quoted { kind, detail: _, pcr, banks: names, quote, signature } => {
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
        require_vtpm,
        ak_public,
        &claim,
        nonce,
        &evidence.event_log_digest.0,
        &events,
    );
    let measured = Measured { events, vtpm: evidence.vtpm.clone(), quote, quote_bytes, signature_bytes };
    (digest, measured)
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
