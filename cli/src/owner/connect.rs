//! Connecting to an agent: attested TLS, then fresh session evidence.
//!
//! The TLS handshake itself verifies the boot evidence in the agent's
//! certificate (a custom rustls verifier): if the report, the chain, the
//! policy, the manifest digest or the key binding fails, the handshake fails
//! and nothing is sent. After it, the client asks for session evidence over
//! a fresh nonce and checks that it is bound to this very TLS session.
//!
//! Before any of it, the policy must pin at least one accepted launch
//! measurement: without one, any image the host chooses to boot (with any
//! code in it) would pass, and the owner's inputs would go to it. cvmctl
//! fails closed there ([`ConnectError::Unpinned`], exit code 2) unless the
//! owner says `--insecure-any-measurement`, which is warned about on every use.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use base64::Engine as _;
use bytes::Bytes;
use clap::Args;
use cvm_evidence::binding::{
    chain_from, check_boot_certificate, check_session_evidence, session_report_data, BootEvidence,
    EXPORTER_LABEL,
};
use cvm_evidence::certs::{parse_certificate, TrustAnchors};
use cvm_evidence::gcp::AkAnchors;
use cvm_evidence::{Policy, VerificationReport, Verifier};
use cvm_protocol::api::{self, EvidenceRequest, SessionEvidence};
use cvm_protocol::Digest;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use time::OffsetDateTime;

use super::measured::Measured;
use crate::args::{parse_time, read_file};

/// How to reach and judge an agent; shared by every command that talks to one.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// The agent's address (numeric `IP:PORT`).
    #[arg(long, value_name = "ADDR", env = "CVM_AGENT")]
    pub agent: std::net::SocketAddr,
    /// The manifest digest you expect (`sha256:...`, from `cvmctl manifest digest`).
    /// Nothing is sent to an agent whose evidence names another.
    #[arg(long, value_name = "DIGEST")]
    pub manifest_digest: Digest,
    /// Verification policy (JSON; see `report verify --help`).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Also trust this ARK (e.g. a simulated platform's `ark.pem`).
    #[arg(long, value_name = "PEM")]
    pub trust_ark: Vec<PathBuf>,
    /// Also trust this EK/AK CA for the vTPM's attestation-key certificate
    /// (GCP): a PEM file with the root first, then intermediates (e.g. a
    /// simulated CA's). Google's root is built in and pinned.
    #[arg(long, value_name = "PEM")]
    pub trust_ak_ca: Vec<PathBuf>,
    /// Intermediates that may have issued the vTPM's attestation-key
    /// certificate (GCP: Google issues from several, each named by the
    /// certificate's caIssuers URL). Trusted only when a trusted root signed them.
    #[arg(long, value_name = "PEM")]
    pub ak_intermediate: Vec<PathBuf>,
    /// Directory with the VCEK (and ASK/ARK) when the agent's evidence carries none.
    #[arg(long, value_name = "DIR")]
    pub certs: Option<PathBuf>,
    /// Check certificate validity at this time instead of now (RFC 3339).
    #[arg(long, value_name = "RFC3339-TIME", value_parser = parse_time)]
    pub at: Option<OffsetDateTime>,
    /// Your private key (PKCS#8 PEM from `cvmctl keygen`), presented as a client certificate.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Accept an agent whatever its launch measurement (INSECURE: development only).
    ///
    /// Without this flag cvmctl connects to no agent unless the policy (--policy) pins at
    /// least one accepted launch measurement in `measurements`: compute it with `cvmctl
    /// measure` from the image you built. Without a pinned measurement any image the host
    /// boots passes, whatever code it runs, and your inputs would go to it. With this flag
    /// and no measurement pinned, cvmctl says so on stderr every time it is used.
    #[arg(long)]
    pub insecure_any_measurement: bool,
}

/// Why connecting failed: the owner's policy or other input (exit 2), the
/// evidence (exit 1), or anything else, such as the transport (exit 3).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The policy pins no launch measurement and `--insecure-any-measurement`
    /// was not given: no connection was made, nothing was sent.
    #[error(
        "{} pins no launch measurement, so any VM image would be accepted; no connection was made and \
         nothing was sent. Pin the measurement of the image you built (`cvmctl measure`) in the policy's \
         `measurements`, or pass --insecure-any-measurement to accept any image (insecure)",
        match policy {
            Some(p) => format!("the policy {}", p.display()),
            None => "no --policy was given: the default policy".to_owned(),
        }
    )]
    Unpinned {
        /// The policy file, if one was given.
        policy: Option<PathBuf>,
    },
    /// The owner's own input could not be used (the policy, a trusted ARK,
    /// the certificates directory, the client key): no connection was made.
    #[error(transparent)]
    Input(anyhow::Error),
    /// The evidence did not verify; nothing was sent.
    #[error("the agent's evidence was rejected; nothing was sent")]
    Rejected(VerificationReport),
    /// Anything else.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// The request body type.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// A connection to an agent whose boot and session evidence verified.
pub struct Agent {
    sender: SendRequest<Body>,
    /// Every check of the boot evidence in the certificate.
    pub checks: VerificationReport,
    /// Every check of the fresh session evidence.
    pub session: VerificationReport,
    /// The boot evidence.
    pub boot: BootEvidence,
    /// The event log and vTPM quote of the session evidence, once verified.
    pub measured: Option<Measured>,
    /// The nonce the session evidence was requested over.
    pub nonce: [u8; 32],
    /// The agent's sandbox as its status reports it, once asked.
    pub sandbox: Option<cvm_protocol::api::SandboxStatus>,
    spki: Vec<u8>,
    verifier: Arc<EvidenceVerifier>,
}

/// What the handshake's verifier found: the checks, the evidence, the TLS key.
type HandshakeOutcome = (VerificationReport, Option<BootEvidence>, Vec<u8>);

struct EvidenceVerifier {
    anchors: TrustAnchors,
    ak_anchors: AkAnchors,
    policy: Policy,
    at: OffsetDateTime,
    expected: [u8; 32],
    fallback: Option<cvm_evidence::certs::CertChain>,
    provider: Arc<CryptoProvider>,
    outcome: Mutex<Option<HandshakeOutcome>>,
}

impl std::fmt::Debug for EvidenceVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EvidenceVerifier")
    }
}

impl ServerCertVerifier for EvidenceVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verifier = Verifier::new(&self.anchors, &self.policy, self.at);
        let (report, ev) =
            check_boot_certificate(&verifier, end_entity, &self.expected, self.fallback.as_ref());
        let accepted = report.accepted();
        let summary = report.failures().next().map(ToString::to_string).unwrap_or_default();
        let spki = spki_of(end_entity).unwrap_or_default();
        if let Ok(mut slot) = self.outcome.lock() {
            *slot = Some((report, ev, spki));
        }
        if accepted {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!("attestation failed: {summary}")))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not accepted".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

fn spki_of(cert: &[u8]) -> Option<Vec<u8>> {
    use cvm_evidence::der::{Decode, Encode};
    let cert = cvm_evidence::certs::Certificate::from_der(cert).ok()?;
    cert.tbs_certificate.subject_public_key_info.to_der().ok()
}

/// The client certificate for an owner key: self-signed over that key.
fn client_identity(
    path: &std::path::Path,
) -> anyhow::Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
    let pem =
        String::from_utf8(read_file(path)?).with_context(|| format!("{}: not PEM text", path.display()))?;
    let key = rcgen::KeyPair::from_pem(&pem)
        .with_context(|| format!("{}: not a PKCS#8 private key", path.display()))?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "cvm-agent owner");
    let cert = params.self_signed(&key)?;
    Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))))
}

impl AgentArgs {
    /// The policy, refused when it pins no launch measurement unless the
    /// owner accepted that with `--insecure-any-measurement` (then warned).
    ///
    /// Runs before any connection is made: an unpinned policy sends nothing.
    pub fn checked_policy(&self) -> Result<Policy, ConnectError> {
        let policy = self.policy().map_err(ConnectError::Input)?;
        match (policy.measurements.len(), self.insecure_any_measurement) {
            (0, false) => return Err(ConnectError::Unpinned { policy: self.policy.clone() }),
            (0, true) => eprintln!(
                "cvmctl: warning: --insecure-any-measurement: the agent is accepted whatever its launch \
                 measurement; any image the host boots passes, whatever code it runs"
            ),
            (n, true) => eprintln!(
                "cvmctl: warning: --insecure-any-measurement has no effect: the policy pins {n} launch \
                 measurement(s), and the agent must report one of them"
            ),
            (_, false) => {}
        }
        Ok(policy)
    }

    fn policy(&self) -> anyhow::Result<Policy> {
        match &self.policy {
            Some(path) => {
                let text = String::from_utf8(read_file(path)?)
                    .with_context(|| format!("{}: not UTF-8", path.display()))?;
                Ok(Policy::from_json(&text).with_context(|| format!("invalid policy {}", path.display()))?)
            }
            None => Ok(Policy::default()),
        }
    }

    fn anchors(&self) -> anyhow::Result<TrustAnchors> {
        let mut anchors = TrustAnchors::amd();
        for path in &self.trust_ark {
            anchors
                .trust_additional_ark(parse_certificate(&read_file(path)?, &path.display().to_string())?)?;
        }
        Ok(anchors)
    }

    fn ak_anchors(&self) -> anyhow::Result<AkAnchors> {
        let mut anchors = AkAnchors::google()?;
        for path in &self.trust_ak_ca {
            let text = read_file(path)?;
            let certs = cvm_evidence::certs::parse_pem_bundle(&text, &path.display().to_string())?;
            let mut certs = certs.into_iter();
            let root = certs.next().with_context(|| format!("{}: no certificate", path.display()))?;
            anchors.trust_additional_root(root);
            for c in certs {
                anchors.add_intermediate(c);
            }
        }
        for path in &self.ak_intermediate {
            let bytes = read_file(path)?;
            let what = path.display().to_string();
            // PEM (one or more) or DER, as a caIssuers URL serves it.
            let certs = if bytes.starts_with(b"-----BEGIN") {
                cvm_evidence::certs::parse_pem_bundle(&bytes, &what)?
            } else {
                vec![parse_certificate(&bytes, &what)?]
            };
            for c in certs {
                anchors.add_intermediate(c);
            }
        }
        Ok(anchors)
    }

    /// Connects, verifies boot evidence in the handshake and fresh session evidence after it.
    pub async fn connect(&self) -> Result<Agent, ConnectError> {
        let hs = self.handshake().await?;
        let nonce = hs.nonce()?;
        let ekm = hs.exporter(&nonce)?;
        let mut agent = hs.into_agent().await?;
        let evidence = agent.session_evidence(&nonce).await?;
        let (result, measured) = agent.verify_session_measured(&evidence, &nonce, &ekm)?;
        if !result.accepted() {
            return Err(ConnectError::Rejected(result));
        }
        agent.session = result;
        agent.measured = Some(measured);
        agent.nonce = nonce;
        Ok(agent)
    }

    /// The attested TLS handshake alone: boot evidence verified, no request sent yet.
    ///
    /// Fails with [`ConnectError::Unpinned`] before connecting when the
    /// policy pins no launch measurement (see [`AgentArgs::checked_policy`]).
    pub async fn handshake(&self) -> Result<Handshake, ConnectError> {
        let policy = self.checked_policy()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let fallback = match &self.certs {
            Some(dir) => Some(
                crate::report::load_chain(dir, cvm_evidence::report::SigningKey::Vcek)
                    .map_err(|e| ConnectError::Input(e.into()))?,
            ),
            None => None,
        };
        let at = self.at.unwrap_or_else(OffsetDateTime::now_utc);
        let verifier = Arc::new(EvidenceVerifier {
            anchors: self.anchors().map_err(ConnectError::Input)?,
            ak_anchors: self.ak_anchors().map_err(ConnectError::Input)?,
            policy,
            at,
            expected: self.manifest_digest.0,
            fallback,
            provider: Arc::clone(&provider),
            outcome: Mutex::new(None),
        });
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(anyhow::Error::from)?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone());
        let mut config = match &self.key {
            Some(path) => {
                let (cert, key) = client_identity(path).map_err(ConnectError::Input)?;
                builder.with_client_auth_cert(vec![cert], key).map_err(anyhow::Error::from)?
            }
            None => builder.with_no_client_auth(),
        };
        config.resumption = rustls::client::Resumption::disabled();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = tokio::net::TcpStream::connect(self.agent)
            .await
            .with_context(|| format!("cannot connect to {}", self.agent))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from("cvm-agent").map_err(anyhow::Error::from)?;
        let handshake = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await;
        let outcome = verifier.outcome.lock().ok().and_then(|mut s| s.take());
        match (handshake, outcome) {
            (Ok(tls), Some((checks, Some(boot), spki))) => {
                Ok(Handshake { tls, checks, boot, spki, verifier })
            }
            (Err(_), Some((report, _, _))) if !report.accepted() => Err(ConnectError::Rejected(report)),
            (Err(e), _) => Err(anyhow::anyhow!("TLS handshake with {} failed: {e}", self.agent).into()),
            (Ok(_), _) => Err(anyhow::anyhow!("the handshake finished without evidence").into()),
        }
    }
}

/// A TLS session whose boot evidence verified.
pub struct Handshake {
    tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    /// Every check of the boot evidence.
    pub checks: VerificationReport,
    /// The boot evidence.
    pub boot: BootEvidence,
    spki: Vec<u8>,
    verifier: Arc<EvidenceVerifier>,
}

impl Handshake {
    /// 32 fresh random bytes.
    pub fn nonce(&self) -> anyhow::Result<[u8; 32]> {
        let mut nonce = [0u8; 32];
        self.verifier
            .provider
            .secure_random
            .fill(&mut nonce)
            .map_err(|e| anyhow::anyhow!("no randomness: {e:?}"))?;
        Ok(nonce)
    }

    /// This session's exporter value for `nonce` (label `EXPORTER-cvm-agent-attest-v1`).
    pub fn exporter(&self, nonce: &[u8; 32]) -> anyhow::Result<[u8; 32]> {
        let mut ekm = [0u8; 32];
        self.tls.get_ref().1.export_keying_material(&mut ekm, EXPORTER_LABEL, Some(nonce))?;
        Ok(ekm)
    }

    /// Starts HTTP on the session; the session evidence is not checked yet.
    pub async fn into_agent(self) -> anyhow::Result<Agent> {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(self.tls)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Agent {
            sender,
            checks: self.checks,
            session: VerificationReport { product: None, checks: Vec::new() },
            boot: self.boot,
            measured: None,
            nonce: [0; 32],
            sandbox: None,
            spki: self.spki,
            verifier: self.verifier,
        })
    }
}

impl Agent {
    /// The policy the agent was verified against.
    pub fn policy(&self) -> &Policy {
        &self.verifier.policy
    }

    /// Asks for a fresh report over `nonce`.
    pub async fn session_evidence(&mut self, nonce: &[u8; 32]) -> anyhow::Result<SessionEvidence> {
        let request = serde_json::to_vec(&EvidenceRequest { nonce: hex::encode(nonce) })?;
        let (status, body) = self.send(hyper::Method::POST, api::EVIDENCE, Some(request)).await?;
        if status != StatusCode::OK {
            anyhow::bail!("session evidence: {}", error_message(status, &body));
        }
        serde_json::from_slice(&body).context("session evidence: malformed response")
    }

    /// Checks session evidence against the boot evidence's chain, the policy,
    /// and the binding to `nonce` and the exporter value `ekm`; then its
    /// event log and vTPM quote.
    pub fn verify_session(
        &self,
        evidence: &SessionEvidence,
        nonce: &[u8; 32],
        ekm: &[u8; 32],
    ) -> anyhow::Result<VerificationReport> {
        Ok(self.verify_session_measured(evidence, nonce, ekm)?.0)
    }

    /// [`Agent::verify_session`], also returning the event log and quote.
    ///
    /// The session report must bind the digest of the events sent (not
    /// merely the digest the agent claims), and the quote must replay from them.
    pub fn verify_session_measured(
        &self,
        evidence: &SessionEvidence,
        nonce: &[u8; 32],
        ekm: &[u8; 32],
    ) -> anyhow::Result<(VerificationReport, Measured)> {
        let report = base64::engine::general_purpose::STANDARD
            .decode(&evidence.report)
            .context("session evidence: report is not base64")?;
        let chain = chain_from(&self.boot, self.verifier.fallback.as_ref())?;
        let v = Verifier::new(&self.verifier.anchors, &self.verifier.policy, self.verifier.at);
        let mut measurements = VerificationReport { product: None, checks: Vec::new() };
        let (digest, measured) = super::measured::check(
            &mut measurements,
            &self.verifier.policy,
            self.boot.platform,
            (&self.verifier.ak_anchors, self.verifier.at),
            self.boot.ak_public.as_deref(),
            evidence,
            nonce,
        );
        let want = session_report_data(&self.spki, nonce, ekm, &digest);
        let mut result = check_session_evidence(&v, &self.boot, &report, &chain, &want);
        result.checks.extend(measurements.checks);
        Ok((result, measured))
    }

    /// Sends a request with an optional in-memory body; returns status and body.
    pub async fn send(
        &mut self,
        method: hyper::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let body: Body = Full::new(Bytes::from(body.unwrap_or_default())).map_err(|n| match n {}).boxed();
        self.send_body(method, path, body, None).await
    }

    /// Sends a request with a streaming body of `len` bytes.
    pub async fn send_body(
        &mut self,
        method: hyper::Method,
        path: &str,
        body: Body,
        len: Option<u64>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let mut req = Request::builder().method(method).uri(path).header(hyper::header::HOST, "cvm-agent");
        if let Some(len) = len {
            req = req.header(hyper::header::CONTENT_LENGTH, len);
        }
        let resp =
            self.sender.send_request(req.body(body)?).await.context("the agent closed the connection")?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await.context("reading the agent's response")?.to_bytes();
        Ok((status, bytes))
    }

    /// Sends a GET and returns the streaming response.
    pub async fn get_stream(&mut self, path: &str) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
        let body: Body = Full::new(Bytes::new()).map_err(|n| match n {}).boxed();
        let req = Request::builder()
            .method(hyper::Method::GET)
            .uri(path)
            .header(hyper::header::HOST, "cvm-agent")
            .body(body)?;
        self.sender.send_request(req).await.context("the agent closed the connection")
    }
}

/// Reads an error body into a message.
pub fn error_message(status: StatusCode, body: &[u8]) -> String {
    crate::Refusal::from_response(status, body).to_string()
}
