//! `cvmctl report verify`.

use std::path::PathBuf;

use std::io::Write as _;

use anyhow::Context as _;
use clap::Args;
use cvm_evidence::azure::{check_hcl_report, check_quote, HclReport};
use cvm_evidence::certs::{parse_certificate, TrustAnchors};
use cvm_evidence::policy::platform::check_platform;
use cvm_evidence::policy::Platform;
use cvm_evidence::{AttestationReport, Check, Outcome, Policy, VerificationReport, Verifier};
use time::OffsetDateTime;

use super::certs_dir::{load_chain, LoadError};
use crate::args::{parse_time, read_file};
use crate::output::{emit, Message, Verdict};
use crate::Error;

/// Arguments of `report verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The raw report (1184 bytes), or an Azure paravisor's HCL report
    /// (starting with `HCLA`, as read from NV index 0x01400001).
    #[arg(value_name = "REPORT")]
    pub report: PathBuf,
    /// Directory with `vcek.der`/`vcek.pem` (or `vlek.*`) and optionally
    /// `ask.pem`/`asvk.pem` and `ark.pem`. Without ask/ark, AMD's built-in
    /// ones for the report's product are used.
    #[arg(long, value_name = "DIR")]
    pub certs: PathBuf,
    /// Policy file (JSON). Without one, only authenticity is checked and
    /// debug and migration-agent guests are refused; unpinned values are
    /// shown as skipped.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Check certificate validity at this time instead of now (RFC 3339).
    #[arg(long, value_name = "RFC3339-TIME", value_parser = parse_time)]
    pub at: Option<OffsetDateTime>,
    /// Also trust this ARK (PEM or DER), e.g. a simulated one. AMD's roots
    /// stay trusted.
    #[arg(long, value_name = "PEM")]
    pub trust_ark: Vec<PathBuf>,
    /// Print JSON lines: one `check` per check, then a `verdict`.
    #[arg(long)]
    pub json: bool,
    /// HCL report only: a TPM quote (TPMS_ATTEST) to check with the
    /// paravisor's attestation key from the runtime claims.
    #[arg(long, value_name = "FILE", requires_all = ["tpm_signature", "nonce"], help_heading = "Azure")]
    pub tpm_quote: Option<PathBuf>,
    /// HCL report only: the quote's signature (TPMT_SIGNATURE, or the bare RSA signature).
    #[arg(long, value_name = "FILE", requires = "tpm_quote", help_heading = "Azure")]
    pub tpm_signature: Option<PathBuf>,
    /// HCL report only: the quote's expected qualifying data, hex.
    #[arg(long, value_name = "HEX", requires = "tpm_quote", help_heading = "Azure")]
    pub nonce: Option<String>,
    /// HCL report only: the runtime claims' expected user data (128 hex digits).
    #[arg(long, value_name = "HEX", help_heading = "Azure")]
    pub user_data: Option<String>,
}

impl VerifyArgs {
    /// Verifies and prints every check; exit code 0 accepted, 1 rejected.
    pub fn run(self) -> crate::Result {
        let policy = match &self.policy {
            Some(path) => {
                let text = String::from_utf8(read_file(path)?)
                    .with_context(|| format!("{}: not UTF-8 text", path.display()))?;
                Policy::from_json(&text).with_context(|| format!("invalid policy {}", path.display()))?
            }
            None => Policy::default(),
        };
        let mut anchors = TrustAnchors::amd();
        for path in &self.trust_ark {
            let cert = parse_certificate(&read_file(path)?, &path.display().to_string())?;
            anchors.trust_additional_ark(cert)?;
        }
        let at = self.at.unwrap_or_else(OffsetDateTime::now_utc);
        let bytes = read_file(&self.report)?;
        if bytes.starts_with(cvm_evidence::azure::hcl::SIGNATURE) {
            return self.verify_hcl(&anchors, &policy, at, &bytes);
        }
        if self.tpm_quote.is_some() || self.user_data.is_some() {
            return Err(Error::Usage(anyhow::anyhow!(
                "--tpm-quote and --user-data apply to an Azure HCL report only"
            )));
        }

        let report = match AttestationReport::from_bytes(&bytes) {
            Ok(r) => r,
            Err(e) => {
                return self.reject_early(
                    "report_format",
                    "a 1184-byte SNP report of version 2, 3 or 5",
                    &e.to_string(),
                )
            }
        };
        let chain = match load_chain(&self.certs, report.key_info.signing_key()) {
            Ok(chain) => chain,
            Err(LoadError::Cert(e)) => {
                return self.reject_early(
                    "certificate_format",
                    "AMD certificates in PEM or DER",
                    &e.to_string(),
                )
            }
            Err(e) => return Err(e.into()),
        };
        let mut result = VerificationReport { product: None, checks: Vec::new() };
        // A bare report is what our own hosts and GCP produce alike.
        let found = if policy.platform == Some(Platform::Gcp) { Platform::Gcp } else { Platform::SevSnp };
        check_platform(&mut result, policy.platform, found);
        let snp = Verifier::new(&anchors, &policy, at).check(&report, &chain);
        result.product = snp.product;
        result.checks.extend(snp.checks);
        self.print(&result)
    }

    /// An Azure HCL report: the SNP checks, the runtime claims, and the
    /// quote when given.
    fn verify_hcl(
        &self,
        anchors: &TrustAnchors,
        policy: &Policy,
        at: OffsetDateTime,
        bytes: &[u8],
    ) -> crate::Result {
        let user_data = match &self.user_data {
            Some(text) => {
                let mut out = [0u8; 64];
                hex::decode_to_slice(text, &mut out).context("--user-data: expected 128 hex digits")?;
                Some(out)
            }
            None => None,
        };
        let key = match HclReport::parse(bytes) {
            Ok(r) => r.snp.key_info.signing_key(),
            Err(e) => {
                return self.reject_early("hcl_format", "an HCL report holding an SNP report", &e.to_string())
            }
        };
        let chain = match load_chain(&self.certs, key) {
            Ok(chain) => chain,
            Err(LoadError::Cert(e)) => {
                return self.reject_early(
                    "certificate_format",
                    "AMD certificates in PEM or DER",
                    &e.to_string(),
                )
            }
            Err(e) => return Err(e.into()),
        };
        let verifier = Verifier::new(anchors, policy, at);
        let (mut result, verified) = check_hcl_report(&verifier, bytes, &chain, user_data.as_ref());
        if let (Some(quote), Some(sig), Some(nonce)) = (&self.tpm_quote, &self.tpm_signature, &self.nonce) {
            let nonce = hex::decode(nonce).context("--nonce: expected hex digits")?;
            let ak = verified.as_ref().and_then(|v| v.ak.as_ref());
            check_quote(&mut result, ak, &read_file(quote)?, &read_file(sig)?, &nonce);
        }
        self.print(&result)
    }

    fn reject_early(&self, name: &'static str, expected: &str, found: &str) -> crate::Result {
        let result = VerificationReport {
            product: None,
            checks: vec![Check {
                name,
                outcome: Outcome::Failed,
                expected: expected.into(),
                found: found.into(),
            }],
        };
        self.print(&result)
    }

    fn print(&self, result: &VerificationReport) -> crate::Result {
        let verdict = Verdict::of(result.product, &result.checks);
        let (failed, skipped) = (verdict.failed, verdict.skipped);
        if self.json {
            for check in &result.checks {
                emit(&Message::Check(check.into()))?;
            }
            emit(&Message::Verdict(verdict.clone()))?;
        } else {
            let mut out = crate::output::stdout();
            let width = result.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
            for c in &result.checks {
                match &c.outcome {
                    Outcome::Passed => writeln!(out, "PASS  {:width$}  {}", c.name, c.found)?,
                    Outcome::Failed => {
                        writeln!(out, "FAIL  {:width$}  expected {}", c.name, c.expected)?;
                        writeln!(out, "      {:width$}  found    {}", "", c.found)?;
                    }
                    Outcome::Skipped { reason } => writeln!(out, "SKIP  {:width$}  {reason}", c.name)?,
                }
            }
            if let Some(platform) = flavour(result) {
                writeln!(
                    out,
                    "flavour: {platform}; outside the SNP boundary: {}",
                    platform.outside_snp_boundary()
                )?;
            }
            if verdict.accepted {
                writeln!(
                    out,
                    "ACCEPTED: {} checks passed, {skipped} skipped",
                    result.checks.len() - skipped
                )?;
            } else {
                writeln!(out, "REJECTED: {failed} of {} checks failed", result.checks.len())?;
            }
        }
        if verdict.accepted {
            Ok(())
        } else {
            Err(Error::Rejected(format!("{failed} of {} checks failed", result.checks.len())))
        }
    }
}

/// The flavour verified: Azure when the HCL checks ran, else what the
/// `platform` check names.
fn flavour(result: &VerificationReport) -> Option<Platform> {
    if result.check("hcl_format").is_some() {
        return Some(Platform::Azure);
    }
    let check = result.check("platform")?;
    match &check.outcome {
        Outcome::Skipped { .. } => Some(Platform::SevSnp),
        _ => serde_json::from_value(serde_json::Value::String(check.found.clone())).ok(),
    }
}
