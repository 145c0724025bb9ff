//! AMD certificate chains: ARK → ASK (or ASVK) → VCEK (or VLEK).
//!
//! The ARK and ASK are RSA-4096 keys signing with RSASSA-PSS (SHA-384, MGF1
//! SHA-384, 48-byte salt); the VCEK or VLEK is a P-384 ECDSA key that signs
//! reports. [`CertChain`] holds what came with the evidence; what is missing
//! is taken from the built-in [`roots`].

pub mod extensions;
pub mod roots;
mod signature;

use der::{Decode, DecodePem, Encode};
use sha2::{Digest, Sha256};

pub use roots::TrustAnchors;
pub(crate) use signature::{vek_public_key, verify_ecdsa_p384, verify_issued_by};
/// An X.509 certificate (re-exported from `x509-cert`).
pub use x509_cert::Certificate;

use crate::CertError;

/// Which kind of key a VEK certificate holds, from its subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VekKind {
    /// CN=SEV-VCEK, issued by the ASK.
    Vcek,
    /// CN=SEV-VLEK, issued by the ASVK.
    Vlek,
}

/// The certificates that came with a report. Missing ARK and ASK/ASVK are
/// taken from the built-in roots for the report's product.
#[derive(Clone, Debug)]
pub struct CertChain {
    /// The root, if supplied; it must still be pinned.
    pub ark: Option<Certificate>,
    /// The ASK (for a VCEK) or ASVK (for a VLEK), if supplied.
    pub intermediate: Option<Certificate>,
    /// The VCEK or VLEK that signed the report.
    pub vek: Certificate,
}

/// Parses one certificate from PEM or DER; `what` names it in errors.
///
/// Only canonical DER is accepted, so the bytes whose signature is checked
/// are exactly the bytes that were received.
pub fn parse_certificate(bytes: &[u8], what: &str) -> Result<Certificate, CertError> {
    let decode_err = |reason: String| CertError::Decode { what: what.to_owned(), reason };
    let (cert, der) = if bytes.starts_with(b"-----BEGIN") {
        let text = std::str::from_utf8(bytes).map_err(|e| decode_err(e.to_string()))?;
        let cert = Certificate::from_pem(text).map_err(|e| decode_err(e.to_string()))?;
        let der = pem_body(text).map_err(decode_err)?;
        (cert, der)
    } else {
        let cert = Certificate::from_der(bytes).map_err(|e| decode_err(e.to_string()))?;
        (cert, bytes.to_vec())
    };
    let again = cert.to_der().map_err(|e| decode_err(e.to_string()))?;
    if again != der {
        return Err(CertError::NotCanonical { what: what.to_owned() });
    }
    Ok(cert)
}

fn pem_body(text: &str) -> Result<Vec<u8>, String> {
    let (_, der) = der::pem::decode_vec(text.as_bytes()).map_err(|e| e.to_string())?;
    Ok(der)
}

/// SHA-256 of the certificate's DER encoding.
pub fn fingerprint(cert: &Certificate) -> [u8; 32] {
    // Encoding a certificate that was decoded from DER cannot fail; an
    // impossible failure hashes nothing and so pins nothing.
    let der = cert.to_der().unwrap_or_default();
    Sha256::digest(der).into()
}

/// The subject's common name, if it has one.
pub fn subject_cn(cert: &Certificate) -> Option<String> {
    cn_of(&cert.tbs_certificate.subject)
}

/// The issuer's common name, if it has one.
pub fn issuer_cn(cert: &Certificate) -> Option<String> {
    cn_of(&cert.tbs_certificate.issuer)
}

fn cn_of(name: &x509_cert::name::Name) -> Option<String> {
    const CN: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("2.5.4.3");
    name.0.iter().flat_map(|rdn| rdn.0.iter()).find(|atv| atv.oid == CN).and_then(|atv| {
        der::asn1::Utf8StringRef::try_from(&atv.value)
            .map(|s| s.as_str().to_owned())
            .or_else(|_| der::asn1::PrintableStringRef::try_from(&atv.value).map(|s| s.as_str().to_owned()))
            .or_else(|_| der::asn1::Ia5StringRef::try_from(&atv.value).map(|s| s.as_str().to_owned()))
            .ok()
    })
}

/// The kind of key a VEK certificate holds, from its subject CN.
pub fn vek_kind(cert: &Certificate) -> Option<VekKind> {
    match subject_cn(cert).as_deref() {
        Some("SEV-VCEK") => Some(VekKind::Vcek),
        Some("SEV-VLEK") => Some(VekKind::Vlek),
        _ => None,
    }
}

/// The certificate's validity window as Unix seconds.
pub fn validity(cert: &Certificate) -> (i64, i64) {
    let v = &cert.tbs_certificate.validity;
    let secs = |t: x509_cert::time::Time| i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX);
    (secs(v.not_before), secs(v.not_after))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VCEK: &[u8] = include_bytes!("../../testdata/amd/milan-virtee/vcek.der");
    const ARK: &[u8] = include_bytes!("../../testdata/amd/milan-virtee/ark.pem");

    #[test]
    fn parses_pem_and_der() {
        let vcek = parse_certificate(VCEK, "vcek.der").unwrap();
        assert_eq!(vek_kind(&vcek), Some(VekKind::Vcek));
        assert_eq!(issuer_cn(&vcek).as_deref(), Some("SEV-Milan"));
        let ark = parse_certificate(ARK, "ark.pem").unwrap();
        assert_eq!(subject_cn(&ark).as_deref(), Some("ARK-Milan"));
    }

    #[test]
    fn garbage_and_truncation_are_named_errors() {
        let err = parse_certificate(b"hello", "vcek.der").unwrap_err();
        assert!(err.to_string().starts_with("vcek.der: not an X.509 certificate"), "{err}");
        let err = parse_certificate(&VCEK[..VCEK.len() - 1], "vcek.der").unwrap_err();
        assert!(matches!(err, CertError::Decode { .. }), "{err}");
    }

    #[test]
    fn real_vcek_extensions_match_its_report() {
        let vcek = parse_certificate(VCEK, "vcek.der").unwrap();
        let ext = extensions::AmdExtensions::from_cert(&vcek).unwrap();
        assert_eq!(ext.product(), Some(crate::Product::Milan));
        assert_eq!((ext.tcb.bootloader, ext.tcb.tee, ext.tcb.snp, ext.tcb.microcode), (3, 0, 8, 115));
        assert_eq!(ext.hw_id.map(|h| h.len()), Some(64));
    }
}
