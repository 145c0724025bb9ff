//! What ties evidence to a TLS key, a manifest and a session (DESIGN.md, Binding).
//!
//! - Boot evidence rides in the agent's self-signed certificate, in the
//!   `id-pe-cmw` extension of RFC 9999 (OID 1.3.6.1.5.5.7.1.35), `json`
//!   choice: a UTF8String holding the CMW record
//!   `["application/vnd.cvm-agent.boot-evidence+json", "<base64url>", 4]`,
//!   whose value is the JSON [`BootEvidence`] (4: the "evidence" indicator).
//!   Its report's REPORT_DATA is [`boot_report_data`].
//! - Session evidence is a fresh report whose REPORT_DATA is
//!   [`session_report_data`] over a client nonce and the TLS exporter value
//!   `EKM = export_keying_material(32, EXPORTER_LABEL, nonce)`; a relayed
//!   connection has another EKM, so its evidence does not verify.
//! - On Azure ([`Platform::Azure`]) the report is the paravisor's HCL report
//!   ([`crate::azure`]), and the same 64 bytes are its claims' user data
//!   rather than REPORT_DATA (which holds the claims' hash); the boot
//!   evidence's `ak_public` must then be the paravisor's attestation key.

use base64::Engine as _;
use der::asn1::{ObjectIdentifier, Utf8StringRef};
use der::{Decode, Encode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

use crate::certs::{parse_certificate, CertChain};
use crate::policy::platform::{check_platform, Platform};
use crate::{AttestationReport, VerificationReport, Verifier};

/// id-pe-cmw (RFC 9999): the X.509 extension carrying the boot evidence.
pub const CMW_EXTENSION_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.1.35");
/// The same OID as arcs, for certificate builders that take them.
pub const CMW_EXTENSION_ARCS: [u64; 9] = [1, 3, 6, 1, 5, 5, 7, 1, 35];
/// The CMW record's media type for [`BootEvidence`].
pub const BOOT_EVIDENCE_TYPE: &str = "application/vnd.cvm-agent.boot-evidence+json";
/// Context string of the boot REPORT_DATA.
pub const BOOT_CONTEXT: &[u8] = b"cvm-agent/boot/v1";
/// Context string of the session REPORT_DATA.
pub const SESSION_CONTEXT: &[u8] = b"cvm-agent/session/v1";
/// TLS exporter label of the session binding.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-cvm-agent-attest-v1";

/// The boot evidence the agent's certificate carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootEvidence {
    /// Format version: 1.
    pub version: u32,
    /// The flavour of guest; absent means [`Platform::SevSnp`].
    #[serde(default = "sev_snp", skip_serializing_if = "is_sev_snp")]
    pub platform: Platform,
    /// The raw 1184-byte SNP report, base64 (on Azure, the HCL report).
    #[serde(with = "b64")]
    pub report: Vec<u8>,
    /// The VCEK or VLEK certificate (DER, base64), if the host supplied one.
    #[serde(default, with = "b64_opt", skip_serializing_if = "Option::is_none")]
    pub vek: Option<Vec<u8>>,
    /// The ASK or ASVK (DER, base64), if supplied.
    #[serde(default, with = "b64_opt", skip_serializing_if = "Option::is_none")]
    pub ask: Option<Vec<u8>>,
    /// The ARK (DER, base64), if supplied.
    #[serde(default, with = "b64_opt", skip_serializing_if = "Option::is_none")]
    pub ark: Option<Vec<u8>>,
    /// SHA-256 of the manifest's canonical JSON, hex.
    #[serde(with = "hex32")]
    pub manifest_digest: [u8; 32],
    /// The vTPM attestation key's public area, if a vTPM is in use.
    #[serde(default, with = "b64_opt", skip_serializing_if = "Option::is_none")]
    pub ak_public: Option<Vec<u8>>,
}

fn sev_snp() -> Platform {
    Platform::SevSnp
}

fn is_sev_snp(p: &Platform) -> bool {
    *p == Platform::SevSnp
}

/// Boot evidence that cannot be read from a certificate (or written into one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BindingError {
    /// The evidence could not be encoded (writing it only).
    #[error("cannot encode the evidence: {reason}")]
    Encode {
        /// The encoder's message.
        reason: String,
    },
    /// The certificate is not DER X.509.
    #[error("certificate: {reason}")]
    Certificate {
        /// The decoder's message.
        reason: String,
    },
    /// The certificate has no id-pe-cmw extension.
    #[error("the certificate has no id-pe-cmw extension")]
    NoExtension,
    /// The extension's value is not a DER UTF8String.
    #[error("not a CMW json UTF8String: {reason}")]
    NotUtf8String {
        /// The decoder's message.
        reason: String,
    },
    /// The string is not a CMW record `[type, value, indicator]`.
    #[error("not a CMW record [type, value, indicator]: {reason}")]
    NotCmwRecord {
        /// The parser's message.
        reason: String,
    },
    /// The record's indicator is not 4 (evidence).
    #[error("CMW indicator {found}, expected 4 (evidence)")]
    Indicator {
        /// The indicator found.
        found: u32,
    },
    /// The record's type is not [`BOOT_EVIDENCE_TYPE`].
    #[error("CMW type {found:?}, expected {BOOT_EVIDENCE_TYPE:?}")]
    Type {
        /// The type found.
        found: String,
    },
    /// The record's value is not base64url.
    #[error("CMW value is not base64url: {reason}")]
    NotBase64Url {
        /// The decoder's message.
        reason: String,
    },
    /// The value is not the evidence's JSON.
    #[error("{reason}")]
    Json {
        /// The parser's message.
        reason: String,
    },
    /// Another version of the evidence.
    #[error("version {found}, expected 1")]
    Version {
        /// The version found.
        found: u32,
    },
}

/// The certificate chain that boot evidence carries cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// A certificate in the evidence does not parse.
    #[error(transparent)]
    Certificate(#[from] crate::CertError),
    /// Neither the evidence nor the fallback has the VCEK or VLEK.
    #[error("the evidence carries no VCEK/VLEK and none was given")]
    NoVek,
}

impl BootEvidence {
    /// The DER value of the id-pe-cmw extension carrying this evidence.
    pub fn to_extension_value(&self) -> Result<Vec<u8>, BindingError> {
        let json = serde_json::to_vec(self).map_err(|e| BindingError::Encode { reason: e.to_string() })?;
        let value = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        let record = serde_json::json!([BOOT_EVIDENCE_TYPE, value, 4]).to_string();
        Utf8StringRef::new(&record)
            .and_then(|s| s.to_der())
            .map_err(|e| BindingError::Encode { reason: e.to_string() })
    }

    /// Reads the evidence from an id-pe-cmw extension value.
    pub fn from_extension_value(der: &[u8]) -> Result<BootEvidence, BindingError> {
        let text = Utf8StringRef::from_der(der)
            .map_err(|e| BindingError::NotUtf8String { reason: e.to_string() })?;
        let record: (String, String, u32) = serde_json::from_str(text.as_str())
            .map_err(|e| BindingError::NotCmwRecord { reason: e.to_string() })?;
        if record.2 != 4 {
            return Err(BindingError::Indicator { found: record.2 });
        }
        if record.0 != BOOT_EVIDENCE_TYPE {
            return Err(BindingError::Type { found: record.0 });
        }
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(record.1)
            .map_err(|e| BindingError::NotBase64Url { reason: e.to_string() })?;
        let ev: BootEvidence =
            serde_json::from_slice(&json).map_err(|e| BindingError::Json { reason: e.to_string() })?;
        if ev.version != 1 {
            return Err(BindingError::Version { found: ev.version });
        }
        Ok(ev)
    }

    /// Finds and reads the evidence in a DER certificate.
    pub fn from_certificate(cert_der: &[u8]) -> Result<(BootEvidence, Vec<u8>), BindingError> {
        let cert = crate::certs::decode_der::<x509_cert::Certificate>(cert_der)
            .map_err(|e| BindingError::Certificate { reason: e.to_string() })?;
        let ext = cert
            .tbs_certificate
            .extensions
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .find(|e| e.extn_id == CMW_EXTENSION_OID)
            .ok_or(BindingError::NoExtension)?;
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| BindingError::Certificate { reason: e.to_string() })?;
        Ok((BootEvidence::from_extension_value(ext.extn_value.as_bytes())?, spki))
    }
}

/// Verifies the boot evidence in an agent's certificate: the report against
/// `verifier`, then that the evidence names `expected_manifest` and that
/// REPORT_DATA binds the certificate's key, that manifest and the AK.
///
/// The chain comes from the evidence; `fallback` supplies certificates the
/// host did not (e.g. a VCEK the user fetched). Returns every check, and the
/// evidence when it could be parsed.
pub fn check_boot_certificate(
    verifier: &Verifier<'_>,
    cert_der: &[u8],
    expected_manifest: &[u8; 32],
    fallback: Option<&CertChain>,
) -> (VerificationReport, Option<BootEvidence>) {
    let (ev, spki) = match BootEvidence::from_certificate(cert_der) {
        Ok(x) => x,
        Err(e) => {
            return (
                VerificationReport::failed(
                    "boot_evidence",
                    "id-pe-cmw boot evidence in the certificate",
                    e.to_string(),
                ),
                None,
            )
        }
    };
    let chain = match chain_from(&ev, fallback) {
        Ok(c) => c,
        Err(e) => {
            return (
                VerificationReport::failed("certificate_format", "AMD certificates", e.to_string()),
                Some(ev),
            )
        }
    };
    let want = boot_report_data(&spki, &ev.manifest_digest, ev.ak_public.as_deref());
    let mut result = check_report(verifier, &ev, &ev.report, &chain, &want, "boot_binding");
    result.record(
        "manifest_digest",
        &ev.manifest_digest == expected_manifest,
        format!("sha256:{}", hex::encode(expected_manifest)),
        format!("sha256:{}", hex::encode(ev.manifest_digest)),
    );
    (result, Some(ev))
}

/// Verifies session evidence: the fresh report against `verifier`, and that
/// its REPORT_DATA binds the TLS key, the nonce, this session's exporter
/// value and the event log digest.
pub fn check_session_report(
    verifier: &Verifier<'_>,
    report: &[u8],
    chain: &CertChain,
    tls_spki_der: &[u8],
    nonce: &[u8; 32],
    ekm: &[u8; 32],
    event_log: &[u8; 32],
) -> VerificationReport {
    let report = match AttestationReport::from_bytes(report) {
        Ok(r) => r,
        Err(e) => {
            return VerificationReport::failed("report_format", "a 1184-byte SNP report", e.to_string())
        }
    };
    let mut result = verifier.check(&report, chain);
    let want = session_report_data(tls_spki_der, nonce, ekm, event_log);
    result.record(
        "session_binding",
        report.report_data == want,
        format!("REPORT_DATA binding this TLS session and nonce: {}", hex::encode(want)),
        hex::encode(report.report_data),
    );
    result
}

/// Verifies session evidence of the flavour `boot` names: `report` (an SNP
/// report, or on Azure an HCL report) against `verifier` and `chain`, and
/// that it binds `report_data` ([`session_report_data`]), recorded as
/// `session_binding`.
pub fn check_session_evidence(
    verifier: &Verifier<'_>,
    boot: &BootEvidence,
    report: &[u8],
    chain: &CertChain,
    report_data: &[u8; 64],
) -> VerificationReport {
    check_report(verifier, boot, report, chain, report_data, "session_binding")
}

/// One report of `ev`'s flavour, bound to `want` (checked as `binding`).
fn check_report(
    verifier: &Verifier<'_>,
    ev: &BootEvidence,
    report: &[u8],
    chain: &CertChain,
    want: &[u8; 64],
    binding: &'static str,
) -> VerificationReport {
    if ev.platform == Platform::Azure {
        let (mut result, verified) = crate::azure::check_hcl_report(verifier, report, chain, Some(want));
        if let Some(check) = result.checks.iter_mut().find(|c| c.name == "hcl_user_data") {
            // The claims' user data is where the binding is on Azure.
            check.name = binding;
        }
        let claims_ak = verified.as_ref().and_then(|v| v.ak.as_ref());
        crate::azure::check_ak_matches(&mut result, claims_ak, ev.ak_public.as_deref());
        return result;
    }
    let parsed = match AttestationReport::from_bytes(report) {
        Ok(r) => r,
        Err(e) => {
            return VerificationReport::failed("report_format", "a 1184-byte SNP report", e.to_string())
        }
    };
    let mut result = VerificationReport { product: None, checks: Vec::new() };
    check_platform(&mut result, verifier.policy().platform, ev.platform);
    let snp = verifier.check(&parsed, chain);
    result.product = snp.product;
    result.checks.extend(snp.checks);
    result.record(
        binding,
        &parsed.report_data == want,
        format!("REPORT_DATA binding {}: {}", binding_what(binding), hex::encode(want)),
        hex::encode(parsed.report_data),
    );
    result
}

fn binding_what(binding: &str) -> &'static str {
    if binding == "boot_binding" {
        "this TLS key, manifest and AK"
    } else {
        "this TLS session and nonce"
    }
}

/// The chain carried by boot evidence, completed from `fallback`.
pub fn chain_from(ev: &BootEvidence, fallback: Option<&CertChain>) -> Result<CertChain, ChainError> {
    let parse =
        |der: &Option<Vec<u8>>, what: &str| der.as_deref().map(|d| parse_certificate(d, what)).transpose();
    let vek = match (parse(&ev.vek, "VEK from the evidence")?, fallback) {
        (Some(v), _) => v,
        (None, Some(f)) => f.vek.clone(),
        (None, None) => return Err(ChainError::NoVek),
    };
    Ok(CertChain {
        ark: parse(&ev.ark, "ARK from the evidence")?.or_else(|| fallback.and_then(|f| f.ark.clone())),
        intermediate: parse(&ev.ask, "ASK from the evidence")?
            .or_else(|| fallback.and_then(|f| f.intermediate.clone())),
        vek,
    })
}

/// REPORT_DATA of the boot report:
/// `SHA-512(BOOT_CONTEXT || 0x00 || SHA-256(SPKI) || manifest digest || SHA-256(AK public) or 32 zero bytes)`.
pub fn boot_report_data(
    tls_spki_der: &[u8],
    manifest_digest: &[u8; 32],
    ak_public: Option<&[u8]>,
) -> [u8; 64] {
    let ak: [u8; 32] = ak_public.map_or([0; 32], |ak| Sha256::digest(ak).into());
    Sha512::new()
        .chain_update(BOOT_CONTEXT)
        .chain_update([0u8])
        .chain_update(Sha256::digest(tls_spki_der))
        .chain_update(manifest_digest)
        .chain_update(ak)
        .finalize()
        .into()
}

/// REPORT_DATA of a session report:
/// `SHA-512(SESSION_CONTEXT || 0x00 || SHA-256(SPKI) || nonce || EKM || event-log digest)`.
pub fn session_report_data(
    tls_spki_der: &[u8],
    nonce: &[u8; 32],
    ekm: &[u8; 32],
    event_log: &[u8; 32],
) -> [u8; 64] {
    Sha512::new()
        .chain_update(SESSION_CONTEXT)
        .chain_update([0u8])
        .chain_update(Sha256::digest(tls_spki_der))
        .chain_update(nonce)
        .chain_update(ekm)
        .chain_update(event_log)
        .finalize()
        .into()
}

mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

mod b64_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => super::b64::serialize(v, s),
            None => s.serialize_none(),
        }
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::b64")] Vec<u8>);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_value_round_trips() {
        let ev = BootEvidence {
            version: 1,
            platform: Platform::SevSnp,
            report: vec![1; 1184],
            vek: Some(vec![2; 10]),
            ask: None,
            ark: None,
            manifest_digest: [3; 32],
            ak_public: None,
        };
        let der = ev.to_extension_value().unwrap();
        assert_eq!(BootEvidence::from_extension_value(&der).unwrap(), ev);
        let mut bad = der.clone();
        let n = bad.len();
        bad[n - 2] = b'5';
        assert!(BootEvidence::from_extension_value(&bad).is_err());
    }

    #[test]
    fn bindings_differ_in_every_input() {
        let base = boot_report_data(b"spki", &[0; 32], None);
        assert_ne!(base, boot_report_data(b"spkj", &[0; 32], None));
        assert_ne!(base, boot_report_data(b"spki", &[1; 32], None));
        assert_ne!(base, boot_report_data(b"spki", &[0; 32], Some(b"ak")));
        let s = session_report_data(b"spki", &[0; 32], &[0; 32], &[0; 32]);
        assert_ne!(s, session_report_data(b"spki", &[0; 32], &[1; 32], &[0; 32]));
        assert_ne!(&s[..], &base[..]);
    }
}
