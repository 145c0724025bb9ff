//! The computation owners' commands: keys, manifests, and talking to an agent.

mod connect;
mod measured;

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use cvm_evidence::policy::Platform;
use cvm_evidence::{Outcome, VerificationReport};
use cvm_protocol::api::{self, Status, Uploaded};
use cvm_protocol::{Manifest, PublicKey};
use futures_util::TryStreamExt as _;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Frame;
use hyper::StatusCode;

pub use connect::{error_message, Agent, AgentArgs, Body, ConnectError};
pub use measured::Measured;

use crate::args::read_file;
use crate::exit_codes;
use crate::output::emit;

/// Key types for `keygen`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum KeyType {
    /// ECDSA on P-256.
    P256,
    /// ECDSA on P-384.
    P384,
    /// Ed25519.
    Ed25519,
}

/// Arguments of `keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the private key (PKCS#8 PEM, mode 0600).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The key type.
    #[arg(long = "type", value_enum, default_value = "p256")]
    pub key_type: KeyType,
    /// Make a sealing key instead (AES-256, for `seal`, `unseal` and `release-key`); prints its key id.
    #[arg(long, conflicts_with = "key_type")]
    pub sealing: bool,
    /// Print `{"type":"key","data":{"public_key","fingerprint"}}`.
    #[arg(long)]
    pub json: bool,
}

/// `manifest` subcommands.
#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Check a manifest and print its digest (SHA-256 of its RFC 8785 canonical JSON).
    Digest {
        /// The manifest file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

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

/// Arguments of `upload-algorithm`.
#[derive(Debug, Args)]
pub struct UploadAlgorithmArgs {
    #[command(flatten)]
    agent: AgentArgs,
    /// The algorithm file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

/// Arguments of `upload-dataset`.
#[derive(Debug, Args)]
pub struct UploadDatasetArgs {
    #[command(flatten)]
    agent: AgentArgs,
    /// The dataset's name in the manifest.
    #[arg(value_name = "NAME")]
    name: String,
    /// The dataset file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

/// Arguments of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    agent: AgentArgs,
    /// Print `{"type":"status","data":{...}}`.
    #[arg(long)]
    json: bool,
    /// Poll until the computation reaches results_ready, consumed or failed (at most this many seconds).
    #[arg(long, value_name = "SECONDS")]
    wait: Option<u64>,
}

/// Arguments of `results`.
#[derive(Debug, Args)]
pub struct ResultsArgs {
    #[command(flatten)]
    agent: AgentArgs,
    /// Where to write the results archive (tar).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// Creates a key pair and prints its public key in the manifest's form.
pub fn keygen(a: KeygenArgs) -> anyhow::Result<i32> {
    if a.sealing {
        return crate::sealed::keygen(&a.out, a.json);
    }
    let alg = match a.key_type {
        KeyType::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyType::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        KeyType::Ed25519 => &rcgen::PKCS_ED25519,
    };
    let key = rcgen::KeyPair::generate_for(alg)?;
    crate::report::write_private(&a.out, key.serialize_pem().as_bytes())?;
    let public = PublicKey::from_spki_der(&rcgen::PublicKeyData::subject_public_key_info(&key))?;
    if a.json {
        emit(
            "key",
            serde_json::json!({ "public_key": public.to_base64(), "fingerprint": public.fingerprint() }),
        )?;
    } else {
        writeln!(crate::output::stdout(), "{}", public.to_base64())?;
        eprintln!("wrote the private key to {} (fingerprint {})", a.out.display(), public.fingerprint());
    }
    Ok(exit_codes::OK)
}

/// Prints a manifest's digest.
pub fn manifest(cmd: ManifestCommand) -> anyhow::Result<i32> {
    match cmd {
        ManifestCommand::Digest { file } => {
            let m = Manifest::from_json(&read_file(&file)?)
                .with_context(|| format!("invalid manifest {}", file.display()))?;
            writeln!(crate::output::stdout(), "{}", m.digest())?;
            Ok(exit_codes::OK)
        }
    }
}

fn print_checks(report: &VerificationReport, title: &str) -> anyhow::Result<()> {
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

/// Connects; on rejected evidence prints why and returns the exit code.
async fn connect(args: &AgentArgs) -> Result<Agent, i32> {
    match args.connect().await {
        Ok(mut agent) => {
            warn_weak_sandbox(&mut agent).await;
            Ok(agent)
        }
        Err(e @ ConnectError::Unpinned { .. }) => {
            eprintln!("cvmctl: error: {e}");
            Err(exit_codes::USAGE)
        }
        Err(ConnectError::Input(e)) => {
            eprintln!("cvmctl: error: {e:#}");
            Err(exit_codes::USAGE)
        }
        Err(ConnectError::Rejected(report)) => {
            let _ = print_checks(&report, "the agent's evidence was REJECTED; nothing was sent:");
            for f in report.failures() {
                eprintln!("cvmctl: rejected: {f}");
            }
            Err(exit_codes::REJECTED)
        }
        Err(ConnectError::Other(e)) => {
            eprintln!("cvmctl: error: {e:#}");
            Err(exit_codes::AGENT_ERROR)
        }
    }
}

/// Asks for the agent's sandbox and tells the owner, before anything is
/// sent, when it runs the algorithm without every layer (`sandbox =
/// best-effort`, a development host); the VM always runs it strict.
async fn warn_weak_sandbox(agent: &mut Agent) {
    let Ok((StatusCode::OK, body)) = agent.send(hyper::Method::GET, api::STATUS, None).await else { return };
    let Ok(status) = serde_json::from_slice::<Status>(&body) else { return };
    let s = &status.sandbox;
    agent.sandbox = Some(s.clone());
    if !s.is_strict() {
        let mode = if s.mode.is_empty() { "unknown (an older agent)" } else { s.mode.as_str() };
        eprintln!("cvmctl: WARNING: this agent's sandbox is {mode}: the algorithm runs without:");
        for m in &s.missing {
            eprintln!("cvmctl: WARNING:   {m}");
        }
    }
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
pub async fn attest(a: AttestArgs) -> anyhow::Result<i32> {
    let agent = match connect(&a.agent).await {
        Ok(agent) => agent,
        Err(code) => return Ok(code),
    };
    let endorsement = match check_endorsement(&a, &agent) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cvmctl: error: {e:#}");
            return Ok(exit_codes::USAGE);
        }
    };
    if let Some(e) = &endorsement {
        if !e.accepted() {
            if a.json {
                for c in &e.checks {
                    emit("check", c)?;
                }
                emit("verdict", serde_json::json!({ "accepted": false }))?;
            } else {
                print_checks(e, "Google's launch endorsement was REJECTED:")?;
            }
            for f in e.failures() {
                eprintln!("cvmctl: rejected: {f}");
            }
            return Ok(exit_codes::REJECTED);
        }
    }
    if a.json {
        let gce = endorsement.iter().flat_map(|e| &e.checks);
        for c in agent.checks.checks.iter().chain(&agent.session.checks).chain(gce) {
            emit("check", c)?;
        }
        if let Some(sandbox) = &agent.sandbox {
            emit("sandbox", sandbox)?;
        }
        emit(
            "verdict",
            serde_json::json!({
                "accepted": true,
                "manifest_digest": a.agent.manifest_digest.to_string(),
                "platform": agent.policy().platform.map(|p| p.to_string()),
            }),
        )?;
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
        match measured::export(dir, m, &agent.nonce) {
            Ok(command) => eprintln!("wrote the vTPM quote for tpm2-tools; check it with:\n  {command}"),
            Err(e) => {
                eprintln!("cvmctl: error: {e:#}");
                return Ok(exit_codes::USAGE);
            }
        }
    }
    Ok(exit_codes::OK)
}

fn refused(status: StatusCode, body: &[u8]) -> i32 {
    eprintln!("cvmctl: the agent refused: {}", error_message(status, body));
    exit_codes::AGENT_ERROR
}

/// A progress bar on stderr, only when a person watches (stdout and stderr are terminals).
fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    if !std::io::stdout().is_terminal() || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} {bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}")
    {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar
}

async fn upload(
    agent_args: &AgentArgs,
    path: &str,
    file: &std::path::Path,
    what: &str,
) -> anyhow::Result<i32> {
    let f = tokio::fs::File::open(file).await.with_context(|| format!("cannot read {}", file.display()))?;
    let len = f.metadata().await?.len();
    let mut agent = match connect(agent_args).await {
        Ok(agent) => agent,
        Err(code) => return Ok(code),
    };
    // The manifest the agent enforces; its digest was verified in the evidence.
    let (code, body) = agent.send(hyper::Method::GET, api::MANIFEST, None).await?;
    if code != StatusCode::OK {
        return Ok(refused(code, &body));
    }
    let manifest = Manifest::from_json(&body).context("the agent's manifest")?;
    if manifest.digest() != agent_args.manifest_digest {
        anyhow::bail!(
            "the agent serves manifest {} but its evidence names {}",
            manifest.digest(),
            agent_args.manifest_digest
        );
    }
    let limit = manifest.limits.max_upload_bytes;
    if len > limit {
        eprintln!(
            "cvmctl: {} is {len} bytes, over the manifest's max_upload_bytes of {limit}; nothing was sent",
            file.display()
        );
        return Ok(exit_codes::USAGE);
    }
    let bar = progress(len, what);
    let counter = bar.clone();
    let stream = tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024).map_ok(move |chunk| {
        counter.inc(chunk.len() as u64);
        Frame::data(chunk)
    });
    let body = StreamBody::new(stream).boxed();
    let (status, body) = agent.send_body(hyper::Method::PUT, path, body, Some(len)).await?;
    bar.finish_and_clear();
    if status != StatusCode::CREATED {
        return Ok(refused(status, &body));
    }
    let up: Uploaded = serde_json::from_slice(&body).context("malformed upload response")?;
    match (&up.digest, &up.sealed) {
        (Some(d), _) => eprintln!("uploaded {} ({} bytes, {d}); the agent accepted it", up.name, up.bytes),
        (None, Some(id)) => eprintln!(
            "uploaded {} ({} bytes sealed, {id}); the agent verified it and holds the plaintext in memory",
            up.name, up.bytes
        ),
        (None, None) => eprintln!("uploaded {} ({} bytes); the agent accepted it", up.name, up.bytes),
    }
    Ok(exit_codes::OK)
}

/// Arguments of `upload-artifact`.
#[derive(Debug, Args)]
pub struct UploadArtifactArgs {
    #[command(flatten)]
    agent: AgentArgs,
    /// The artifact's name in the manifest.
    #[arg(value_name = "NAME")]
    name: String,
    /// The sealed artifact file (from `cvmctl seal`).
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

/// Uploads a sealed artifact (its key must have been released).
pub async fn upload_artifact(a: UploadArtifactArgs) -> anyhow::Result<i32> {
    let path = format!("{}{}", api::ARTIFACTS, a.name);
    upload(&a.agent, &path, &a.file, &a.name).await
}

/// Arguments of `release-key`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["artifact", "dataset", "algorithm"])))]
pub struct ReleaseKeyArgs {
    #[command(flatten)]
    agent: AgentArgs,
    /// The sealed artifact whose key this is.
    #[arg(long, value_name = "NAME")]
    artifact: Option<String>,
    /// The sealed dataset whose key this is.
    #[arg(long, value_name = "NAME")]
    dataset: Option<String>,
    /// The key is the sealed algorithm's.
    #[arg(long)]
    algorithm: bool,
    /// The sealing key (from `cvmctl keygen --sealing`).
    #[arg(long, value_name = "FILE")]
    key_file: PathBuf,
}

/// Sends a sealing key to a verified agent, after checking that the
/// verified manifest names this input as sealed with this key.
pub async fn release_key(a: ReleaseKeyArgs) -> anyhow::Result<i32> {
    use cvm_protocol::manifest::Pin;
    let sealing_key = crate::sealed::read_key(&a.key_file)?;
    let (path, what) = match (&a.artifact, &a.dataset) {
        (Some(n), _) => (format!("artifacts/{n}"), format!("artifact {n:?}")),
        (None, Some(n)) => (format!("datasets/{n}"), format!("dataset {n:?}")),
        (None, None) => ("algorithm".to_owned(), "the algorithm".to_owned()),
    };
    let mut agent = match connect(&a.agent).await {
        Ok(agent) => agent,
        Err(code) => return Ok(code),
    };
    let (code, body) = agent.send(hyper::Method::GET, api::MANIFEST, None).await?;
    if code != StatusCode::OK {
        return Ok(refused(code, &body));
    }
    let manifest = Manifest::from_json(&body).context("the agent's manifest")?;
    if manifest.digest() != a.agent.manifest_digest {
        anyhow::bail!(
            "the agent serves manifest {} but its evidence names {}",
            manifest.digest(),
            a.agent.manifest_digest
        );
    }
    let pinned = match (&a.artifact, &a.dataset) {
        (Some(n), _) => manifest.artifact(n).map(|x| Pin::Sealed(x.sealed)),
        (None, Some(n)) => manifest.dataset(n).map(|d| d.pin()),
        (None, None) => Some(manifest.algorithm.pin()),
    };
    let identity = match pinned {
        Some(Pin::Sealed(id)) => id,
        Some(Pin::Digest(_)) => {
            eprintln!("cvmctl: the manifest does not seal {what}; the key was not sent");
            return Ok(exit_codes::USAGE);
        }
        None => {
            eprintln!("cvmctl: the manifest names no {what}; the key was not sent");
            return Ok(exit_codes::USAGE);
        }
    };
    if identity.key_id != sealing_key.id() {
        eprintln!(
            "cvmctl: {} has key id {} but the manifest seals {what} to key id {}; the key was not sent",
            a.key_file.display(),
            hex::encode(sealing_key.id()),
            hex::encode(identity.key_id)
        );
        return Ok(exit_codes::USAGE);
    }
    let request = api::KeyRelease { key: sealing_key.to_text().to_string() };
    let body = zeroize::Zeroizing::new(serde_json::to_vec(&request)?);
    drop(request);
    let (status, resp) =
        agent.send(hyper::Method::PUT, &format!("{}{path}", api::KEYS), Some(body.to_vec())).await?;
    if status != StatusCode::CREATED {
        return Ok(refused(status, &resp));
    }
    let released: api::KeyReleased =
        serde_json::from_slice(&resp).context("malformed key-release response")?;
    if released.loaded {
        eprintln!(
            "released the key of {what}; the agent read, verified and decrypted it in memory ({} bytes)",
            released.bytes
        );
    } else {
        eprintln!("released the key of {what}; the agent will decrypt it as it is uploaded");
    }
    Ok(exit_codes::OK)
}

/// Uploads the algorithm.
pub async fn upload_algorithm(a: UploadAlgorithmArgs) -> anyhow::Result<i32> {
    upload(&a.agent, api::ALGORITHM, &a.file, "algorithm").await
}

/// Uploads a dataset.
pub async fn upload_dataset(a: UploadDatasetArgs) -> anyhow::Result<i32> {
    let path = format!("{}{}", api::DATASETS, a.name);
    upload(&a.agent, &path, &a.file, &a.name).await
}

/// Prints the computation's state.
pub async fn status(a: StatusArgs) -> anyhow::Result<i32> {
    let mut agent = match connect(&a.agent).await {
        Ok(agent) => agent,
        Err(code) => return Ok(code),
    };
    let deadline = a.wait.map(|s| std::time::Instant::now() + std::time::Duration::from_secs(s));
    loop {
        let (code, body) = agent.send(hyper::Method::GET, api::STATUS, None).await?;
        if code != StatusCode::OK {
            return Ok(refused(code, &body));
        }
        let status: Status = serde_json::from_slice(&body).context("malformed status")?;
        let done =
            matches!(status.state, api::State::ResultsReady | api::State::Consumed | api::State::Failed(_));
        let waiting = deadline.is_some_and(|d| std::time::Instant::now() < d);
        if done || !waiting {
            if a.json {
                emit("status", &status)?;
            } else {
                let mut out = crate::output::stdout();
                let state = match &status.state {
                    api::State::Failed(reason) => format!("failed: {reason}"),
                    other => serde_json::to_value(other)
                        .ok()
                        .and_then(|v| v["state"].as_str().map(str::to_owned))
                        .unwrap_or_default(),
                };
                writeln!(out, "state:              {state}")?;
                writeln!(out, "manifest:           {}", status.manifest_digest)?;
                writeln!(out, "algorithm received: {}", status.algorithm_received)?;
                writeln!(out, "datasets received:  {}", status.datasets_received.join(", "))?;
                writeln!(out, "datasets missing:   {}", status.datasets_missing.join(", "))?;
                if !status.artifacts_received.is_empty() || !status.artifacts_missing.is_empty() {
                    writeln!(out, "artifacts received: {}", status.artifacts_received.join(", "))?;
                    writeln!(out, "artifacts missing:  {}", status.artifacts_missing.join(", "))?;
                }
                for l in &status.loading {
                    writeln!(
                        out,
                        "loading:            {} {} of {} bytes ({:.0} MB/s, {} left)",
                        l.input,
                        l.bytes,
                        l.total,
                        l.bytes_per_s as f64 / 1e6,
                        l.seconds_left.map_or_else(|| "time unknown".to_owned(), |s| format!("{s} s"))
                    )?;
                }
                writeln!(out, "your roles:         {}", status.your_roles.join(", "))?;
                let sandbox = &status.sandbox;
                match sandbox.missing.as_slice() {
                    [] => writeln!(out, "sandbox:            {}", sandbox.mode)?,
                    missing => writeln!(
                        out,
                        "sandbox:            {} (without: {})",
                        sandbox.mode,
                        missing.join("; ")
                    )?,
                }
            }
            return Ok(if matches!(status.state, api::State::Failed(_)) {
                exit_codes::AGENT_ERROR
            } else {
                exit_codes::OK
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Downloads the results archive.
pub async fn results(a: ResultsArgs) -> anyhow::Result<i32> {
    let mut agent = match connect(&a.agent).await {
        Ok(agent) => agent,
        Err(code) => return Ok(code),
    };
    let resp = agent.get_stream(api::RESULTS).await?;
    let status = resp.status();
    if status != StatusCode::OK {
        let body = resp.into_body().collect().await?.to_bytes();
        return Ok(refused(status, &body));
    }
    let len = resp
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let bar = progress(len, "results");
    let tmp = a.out.with_extension("partial");
    let mut file =
        tokio::fs::File::create(&tmp).await.with_context(|| format!("cannot write {}", tmp.display()))?;
    let mut body = resp.into_body();
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.context("the download broke off")?;
        if let Some(data) = frame.data_ref() {
            tokio::io::AsyncWriteExt::write_all(&mut file, data).await?;
            total += data.len() as u64;
            bar.inc(data.len() as u64);
        }
    }
    tokio::io::AsyncWriteExt::flush(&mut file).await?;
    drop(file);
    tokio::fs::rename(&tmp, &a.out).await?;
    bar.finish_and_clear();
    eprintln!("wrote {} bytes of results to {}", total, a.out.display());
    Ok(exit_codes::OK)
}
