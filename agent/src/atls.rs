//! Attested TLS: a key made in the guest, a certificate carrying boot
//! evidence, and the rustls configuration (TLS 1.3 only, no resumption, no
//! 0-RTT, optional client certificates over the owners' own keys).

use std::sync::Arc;

use cvm_evidence::binding::{boot_report_data, BootEvidence, CMW_EXTENSION_ARCS};
use cvm_protocol::PublicKey;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::tee::TeeProvider;

/// The agent's TLS identity and the boot evidence bound to it.
pub struct AttestedIdentity {
    cert: CertificateDer<'static>,
    key_pkcs8: Vec<u8>,
    spki: Vec<u8>,
    boot: BootEvidence,
}

/// Why the identity could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AtlsError {
    /// Key or certificate generation failed.
    #[error("TLS identity: {0}")]
    Identity(String),
    /// The TEE did not produce a report.
    #[error(transparent)]
    Tee(#[from] crate::tee::TeeError),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

impl AttestedIdentity {
    /// Generates a P-256 key, gets a report binding it to `manifest_digest`
    /// and the vTPM's attestation key (its marshalled TPMT_PUBLIC), if any,
    /// and self-signs a certificate carrying that evidence.
    pub fn create(
        tee: &dyn TeeProvider,
        platform: cvm_evidence::policy::Platform,
        manifest_digest: [u8; 32],
        ak_public: Option<Vec<u8>>,
    ) -> Result<AttestedIdentity, AtlsError> {
        let id = |e: rcgen::Error| AtlsError::Identity(e.to_string());
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(id)?;
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        let report_data = boot_report_data(&spki, &manifest_digest, ak_public.as_deref());
        let ev = tee.report(&report_data)?;
        let boot = BootEvidence {
            version: 1,
            platform,
            report: ev.report,
            vek: ev.vek,
            ask: ev.ask,
            ark: ev.ark,
            manifest_digest,
            ak_public,
        };
        let ext = boot.to_extension_value().map_err(|e| AtlsError::Identity(e.to_string()))?;
        let mut params = rcgen::CertificateParams::new(vec!["cvm-agent".to_owned()]).map_err(id)?;
        params.distinguished_name.push(rcgen::DnType::CommonName, "cvm-agent attested TLS");
        params.custom_extensions.push(rcgen::CustomExtension::from_oid_content(&CMW_EXTENSION_ARCS, ext));
        let cert = params.self_signed(&key).map_err(id)?;
        Ok(AttestedIdentity { cert: cert.der().clone(), key_pkcs8: key.serialize_der(), spki, boot })
    }

    /// The certificate (DER).
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The TLS key's SubjectPublicKeyInfo (DER).
    pub fn spki(&self) -> &[u8] {
        &self.spki
    }

    /// The boot evidence in the certificate.
    pub fn boot_evidence(&self) -> &BootEvidence {
        &self.boot
    }

    /// The rustls server configuration for this identity.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, AtlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.clone()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(OwnerKeyVerifier { provider }))
            .with_single_cert(vec![self.cert.clone()], key)?;
        // No resumption: every connection runs a full handshake, so every
        // session is bound to the certificate and its evidence. No 0-RTT.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        config.max_early_data_size = 0;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// Accepts any client certificate whose key is Ed25519, P-256 or P-384 and
/// which proves possession of it; roles come from the manifest, not from a CA.
#[derive(Debug)]
struct OwnerKeyVerifier {
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for OwnerKeyVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        // Anyone may fetch evidence and status; every other request checks the key's role.
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        client_key(end_entity).map_err(|e| rustls::Error::General(format!("client certificate: {e}")))?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not offered".into()))
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

/// The owner key of a client certificate.
pub fn client_key(cert: &CertificateDer<'_>) -> Result<PublicKey, String> {
    use cvm_evidence::der::{Decode, Encode};
    let cert = cvm_evidence::certs::Certificate::from_der(cert).map_err(|e| e.to_string())?;
    let spki = cert.tbs_certificate.subject_public_key_info.to_der().map_err(|e| e.to_string())?;
    PublicKey::from_spki_der(&spki).map_err(|e| e.to_string())
}
