//! AMD certificate chains: ARK → ASK (or ASVK) → VCEK (or VLEK).
//!
//! The ARK and ASK are RSA-4096 keys signing with RSASSA-PSS (SHA-384, MGF1
//! SHA-384, 48-byte salt); the VCEK or VLEK is a P-384 ECDSA key that signs
//! reports. [`CertChain`] holds what came with the evidence; what is missing
//! is taken from the built-in [`roots`].

mod der_bounds;
pub mod extensions;
pub mod roots;
mod signature;
pub(crate) mod x509_signature;

use der::{Decode, Encode};
use sha2::{Digest, Sha256};

pub(crate) use der_bounds::check_lengths;
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
/// are exactly the bytes that were received. Every length in it is checked
/// against the bytes that are there before anything is decoded, so hostile
/// bytes cost at most their own size in memory.
pub fn parse_certificate(bytes: &[u8], what: &str) -> Result<Certificate, CertError> {
    let decode_err = |reason: String| CertError::Decode { what: what.to_owned(), reason };
    let pem;
    let der = if bytes.starts_with(b"-----BEGIN") {
        pem = pem_body(bytes, "CERTIFICATE").map_err(decode_err)?;
        &pem[..]
    } else {
        bytes
    };
    let cert = decode_der::<Certificate>(der).map_err(decode_err)?;
    let again = cert.to_der().map_err(|e| decode_err(e.to_string()))?;
    if again != der {
        return Err(CertError::NotCanonical { what: what.to_owned() });
    }
    Ok(cert)
}

/// Parses every certificate of a PEM file, in order; `what` names the file
/// in errors. A file with no `CERTIFICATE` block is an error.
pub fn parse_pem_bundle(text: &[u8], what: &str) -> Result<Vec<Certificate>, CertError> {
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let mut certs = Vec::new();
    let mut rest = text;
    while let Some(start) = find(rest, b"-----BEGIN CERTIFICATE-----") {
        let block = &rest[start..];
        let end = find(block, END).map(|e| e + END.len()).ok_or_else(|| CertError::Decode {
            what: what.to_owned(),
            reason: format!("certificate {} has no END line", certs.len() + 1),
        })?;
        certs.push(parse_certificate(&block[..end], &format!("{what}, certificate {}", certs.len() + 1))?);
        rest = &block[end..];
    }
    if certs.is_empty() {
        return Err(CertError::Decode { what: what.to_owned(), reason: "no PEM CERTIFICATE block".into() });
    }
    Ok(certs)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Decodes DER whose every length was first checked against the input
/// (see [`der_bounds`]); the only way this crate decodes DER from outside.
pub(crate) fn decode_der<'a, T: Decode<'a>>(der: &'a [u8]) -> Result<T, String> {
    check_lengths(der)?;
    T::from_der(der).map_err(|e| e.to_string())
}

/// The DER inside one PEM block labelled `label`.
pub(crate) fn pem_body(pem: &[u8], label: &str) -> Result<Vec<u8>, String> {
    // The decoded bytes are at most three quarters of the text: bounded by the input.
    let (found, der) = der::pem::decode_vec(pem).map_err(|e| format!("PEM: {e}"))?;
    if found != label {
        return Err(format!("PEM block labelled {found:?}, expected {label:?}"));
    }
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
        let key = b"-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n";
        let err = parse_certificate(key, "ark.pem").unwrap_err().to_string();
        assert!(err.contains("labelled \"PRIVATE KEY\", expected \"CERTIFICATE\""), "{err}");
    }

    #[test]
    fn issue13_lengths_past_the_input_are_refused_before_decoding_der_or_pem() {
        let der = hex::decode("300d300ba00302010202840fffffff").unwrap();
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &der)
        );
        for bytes in [&der[..], pem.as_bytes()] {
            let err = parse_certificate(bytes, "server").unwrap_err().to_string();
            assert!(err.contains("claims 268435455 bytes, but only 0 remain"), "{err}");
        }
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
