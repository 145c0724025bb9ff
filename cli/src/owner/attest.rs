//! `attest`: verify an agent and print the verified claims.

use std::io::Write as _;
use std::path::PathBuf;

use clap::Args;
use cvm_evidence::policy::Platform;
use cvm_evidence::{Outcome, VerificationReport};
use cvm_protocol::api;

use super::{connect, measured, Agent, AgentArgs};
use crate::args::read_file;
use crate::output::{emit, Message, Verdict};
use crate::Error;

/// Arguments of `attest`.
#[derive(Debug, Args)]
pub struct AttestArgs {
    #[command(flatten)]
    agent: AgentArgs,
    /// Print every check as JSON lines.
    #[arg(long)]
    json: bool,
    /// Also print every check of the boot and session evidence.
    #[arg(long, short)]
    verbose: bool,
    /// Also print the measurement event log and how it replays to the vTPM quote.
    #[arg(long)]
    events: bool,
    /// Write the verified vTPM quote in tpm2-tools formats into DIR
    /// (ak.pem, quote.msg, quote.sig, quote.pcrs, nonce) for `tpm2_checkquote`.
    #[arg(long, value_name = "DIR")]
    export_quote: Option<PathBuf>,
    /// Google's signed launch endorsement of the VM's firmware (GCP; the
    /// serialized VMLaunchEndorsement): it must be signed through --gce-root
    /// and endorse the report's measurement for --gce-vcpus vCPUs.
    #[arg(long, value_name = "FILE", requires_all = ["gce_root", "gce_vcpus"], help_heading = "GCP")]
    gce_endorsement: Option<PathBuf>,
    /// The root certificate of Google's launch endorsements (PEM or DER, as
    /// Google publishes it: GCE-cc-tcb-root_1.crt); nothing of it is built in.
    #[arg(long, value_name = "PEM", requires = "gce_endorsement", help_heading = "GCP")]
    gce_root: Option<PathBuf>,
    /// The VM's vCPU count (each vCPU's VMSA is in the launch measurement).
    #[arg(long, value_name = "N", requires = "gce_endorsement", help_heading = "GCP")]
    gce_vcpus: Option<u32>,
}

/// The launch endorsement's checks, when the owner gave one.
fn check_endorsement(a: &AttestArgs, agent: &Agent) -> anyhow::Result<Option<VerificationReport>> {
    let (Some(file), Some(root), Some(vcpus)) = (&a.gce_endorsement, &a.gce_root, a.gce_vcpus) else {
        return Ok(None);
    };
    let bytes = read_file(file)?;
    let root = cvm_evidence::certs::parse_certificate(&read_file(root)?, &root.display().to_string())?;
    let report = cvm_evidence::AttestationReport::from_bytes(&agent.boot.report)?;
    let at = a.agent.at.unwrap_or_else(time::OffsetDateTime::now_utc);
    let mut result = VerificationReport { product: None, checks: Vec::new() };
    cvm_evidence::gcp::check_launch_endorsement(&mut result, &bytes, &root, at, &report.measurement, vcpus);
    Ok(Some(result))
}

/// Verifies the agent and prints the verified claims.
pub async fn attest(a: AttestArgs) -> crate::Result {
    let agent = connect(&a.agent, a.json).await?;
    let endorsement = check_endorsement(&a, &agent)?;
    if let Some(e) = endorsement.as_ref().filter(|e| !e.accepted()) {
        if a.json {
            for c in &e.checks {
                emit(&Message::Check(c.into()))?;
            }
            let mut verdict = Verdict::of(e.product, &e.checks);
            verdict.manifest_digest = Some(a.agent.manifest_digest);
            emit(&Message::Verdict(verdict))?;
        } else {
            print_checks(e, "Google's launch endorsement was REJECTED:")?;
        }
        for f in e.failures() {
            eprintln!("cvmctl: rejected: {f}");
        }
        return Err(Error::Rejected("Google's launch endorsement was rejected".into()));
    }
    if a.json {
        let gce = endorsement.iter().flat_map(|e| &e.checks);
        let checks = || agent.checks.checks.iter().chain(&agent.session.checks).chain(gce.clone());
        for c in checks() {
            emit(&Message::Check(c.into()))?;
        }
        if let Some(sandbox) = &agent.sandbox {
            emit(&Message::Sandbox(sandbox.clone()))?;
        }
        let mut verdict = Verdict::of(agent.checks.product, checks());
        verdict.manifest_digest = Some(a.agent.manifest_digest);
        verdict.platform = Some(agent.boot.platform.to_string());
        emit(&Message::Verdict(verdict))?;
    } else {
        if a.verbose {
            print_checks(&agent.checks, "boot evidence (in the agent's TLS certificate):")?;
            print_checks(&agent.session, "session evidence (fresh, bound to this TLS session):")?;
            if let Some(e) = &endorsement {
                print_checks(e, "Google's launch endorsement of the firmware:")?;
            }
        }
        if a.events {
            if let Some(m) = &agent.measured {
                measured::print_events(m)?;
            }
        }
        print_claims(&agent, &a.agent, endorsement.as_ref())?;
    }
    if let (Some(dir), Some(m)) = (&a.export_quote, &agent.measured) {
        let command = measured::export(dir, m, &agent.nonce)?;
        eprintln!("wrote the vTPM quote for tpm2-tools; check it with:\n  {command}");
    }
    Ok(())
}

/// The verified claims, for people.
fn print_claims(
    agent: &Agent,
    args: &AgentArgs,
    endorsement: Option<&VerificationReport>,
) -> anyhow::Result<()> {
    let platform = agent.boot.platform;
    let report = match platform {
        Platform::Azure => cvm_evidence::azure::HclReport::parse(&agent.boot.report)?.snp,
        _ => cvm_evidence::AttestationReport::from_bytes(&agent.boot.report)?,
    };
    let product = agent.checks.product.map_or_else(|| "unknown".to_owned(), |p| p.to_string());
    let tcb = report.reported_tcb.parts(report.tcb_layout());
    let count = |r: &VerificationReport| {
        let skipped = r.checks.iter().filter(|c| matches!(c.outcome, Outcome::Skipped { .. })).count();
        (r.checks.len() - skipped, skipped)
    };
    let (boot_ok, boot_skip) = count(&agent.checks);
    let (sess_ok, sess_skip) = count(&agent.session);
    let mut out = crate::output::stdout();
    writeln!(out, "verified claims of the agent at {}:", args.agent)?;
    writeln!(out, "  flavour         {platform}{}", flavour_note(platform))?;
    writeln!(out, "  outside SNP     {}", platform.outside_snp_boundary())?;
    writeln!(out, "  platform        AMD {product}, signed by {}", report.key_info.signing_key())?;
    writeln!(out, "  measurement     {}", hex::encode(report.measurement))?;
    if let Some(found) = endorsement.and_then(|e| e.check("gce_endorsement_measurement")).map(|c| &c.found) {
        writeln!(out, "  firmware        Google's launch endorsement verified: {found}")?;
    }
    writeln!(out, "  reported TCB    {tcb}")?;
    writeln!(
        out,
        "  guest policy    debug {}, migration agent {}, VMPL {}",
        if report.policy.debug() { "ALLOWED" } else { "off" },
        if report.policy.migrate_ma() { "allowed" } else { "off" },
        report.vmpl
    )?;
    writeln!(out, "  manifest        {}", args.manifest_digest)?;
    let vtpm = match agent.measured.as_ref().map(|m| (&m.vtpm, m.quote.as_ref())) {
        Some((api::VtpmEvidence::Quoted { kind, .. }, Some(q))) => format!(
            "quote verified over your nonce, {} events replayed into PCR {}; kind: {}",
            agent.measured.as_ref().map_or(0, |m| m.events.len()),
            q.pcr,
            if platform == Platform::Azure {
                "the paravisor's (its key in the SNP-signed runtime claims: hcl_ak_binding)".to_owned()
            } else {
                kind.to_string()
            }
        ),
        Some((api::VtpmEvidence::Unavailable { reason }, _)) => format!("none ({reason})"),
        Some((api::VtpmEvidence::Off, _)) => "none (off in the agent's configuration)".to_owned(),
        _ => "none".to_owned(),
    };
    writeln!(out, "  vTPM            {vtpm}")?;
    if let Some(cert) = agent.measured.as_ref().and_then(|m| m.ak_certificate.as_ref()) {
        let issuer = cvm_evidence::certs::issuer_cn(cert).unwrap_or_default();
        writeln!(
            out,
            "  vTPM provider   its attestation key is certified by {issuer} (the EK/AK CA; Google's pinned root \
             unless you trusted another with --trust-ak-ca): the quotes come from the cloud's vTPM"
        )?;
    }
    writeln!(out, "  measured boot   {}", describe_boot(agent))?;
    match &agent.sandbox {
        Some(s) if s.is_strict() => {
            writeln!(out, "  sandbox         strict (every layer; the agent's own report)")?
        }
        Some(s) => writeln!(out, "  sandbox         {} (WITHOUT: {})", s.mode, s.missing.join("; "))?,
        None => writeln!(out, "  sandbox         unknown (the agent gave no status)")?,
    }
    writeln!(out, "  boot evidence   {boot_ok} checks passed, {boot_skip} not required by the policy")?;
    writeln!(
        out,
        "  session         {sess_ok} checks passed, {sess_skip} not required; bound to this TLS session"
    )?;
    writeln!(out, "ACCEPTED: the agent runs manifest {}", args.manifest_digest)?;
    Ok(())
}

/// How the flavour's SNP evidence reached the verifier.
fn flavour_note(platform: Platform) -> &'static str {
    match platform {
        Platform::Azure => {
            " (report by Microsoft's paravisor at VMPL 0; the agent's binding in its runtime claims, \
             the quotes by its attestation key)"
        }
        Platform::SevSnp => " (report from the AMD secure processor, requested by the agent)",
        Platform::Gcp => " (report from the AMD secure processor, requested by the agent; Google's vTPM)",
    }
}

/// The measured-boot line of the claims: what the boot quote proved and
/// which of the policy's rules held.
fn describe_boot(agent: &Agent) -> String {
    let Some(m) = &agent.measured else { return "not checked".to_owned() };
    let Some(boot) = &m.boot else {
        return match &m.measured_boot {
            Some(api::MeasuredBootEvidence::Unavailable { reason }) => format!("none ({reason})"),
            _ => "none (the agent sent no boot quote)".to_owned(),
        };
    };
    let rules: Vec<&str> = agent
        .session
        .checks
        .iter()
        .filter(|c| c.name.starts_with("tpm_pcr_") || c.name.starts_with("tpm_event_pcr_"))
        .map(|c| c.name)
        .collect();
    let pcrs = boot.pcrs.keys().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let log = match &boot.log {
        Some(log) => {
            format!("firmware log of {} events reproduces {} of them", log.events.len(), boot.replayed.len())
        }
        None => "no firmware log".to_owned(),
    };
    let azure = agent.boot.platform == Platform::Azure;
    if rules.is_empty() && azure {
        format!(
            "PCRs {pcrs} quoted over your nonce; {log}; the policy pins no PCR or event: on Azure the SNP \
             measurement is the paravisor's, so ANY image on that paravisor passes"
        )
    } else if rules.is_empty() {
        format!(
            "PCRs {pcrs} quoted over your nonce; {log}; the policy pins no PCR or event, so the image is \
             pinned by the SNP measurement alone"
        )
    } else {
        let kind = match &m.vtpm {
            _ if azure => {
                "the paravisor's, its attestation key in the SNP-signed runtime claims (hcl_ak_binding)"
            }
            api::VtpmEvidence::Quoted { kind: api::VtpmKind::Svsm, .. } => "an SVSM's, inside the TEE",
            _ => "Azure's paravisor's is attested by the SNP report; GCP's hypervisor's and swtpm are not",
        };
        format!(
            "PCRs {pcrs} quoted over your nonce; {log}; the policy's {} passed: the image is pinned by the \
             vTPM, as far as the vTPM is trusted ({kind})",
            rules.join(", ")
        )
    }
}

pub(super) fn print_checks(report: &VerificationReport, title: &str) -> anyhow::Result<()> {
    let mut out = crate::output::stdout();
    writeln!(out, "{title}")?;
    for c in &report.checks {
        match &c.outcome {
            Outcome::Passed => writeln!(out, "  PASS  {:28} {}", c.name, c.found)?,
            Outcome::Failed => {
                writeln!(out, "  FAIL  {:28} expected {}, found {}", c.name, c.expected, c.found)?
            }
            Outcome::Skipped { reason } => writeln!(out, "  SKIP  {:28} {reason}", c.name)?,
        }
    }
    Ok(())
}
