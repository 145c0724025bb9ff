//! `cvmctl report verify`.

use std::path::PathBuf;

use std::io::Write as _;

use anyhow::Context as _;
use clap::Args;
use cvm_evidence::certs::{parse_certificate, TrustAnchors};
use cvm_evidence::{AttestationReport, Check, Outcome, Policy, VerificationReport, Verifier};
use time::OffsetDateTime;

use super::certs_dir::{load_chain, LoadError};
use crate::args::{parse_time, read_file};
use crate::output::{emit, Message, Verdict};
use crate::Error;

/// Arguments of `report verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The raw report (1184 bytes).
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
        let result = Verifier::new(&anchors, &policy, at).check(&report, &chain);
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
