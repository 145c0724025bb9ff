//! Signature checks: RSASSA-PSS/SHA-384 on certificates, ECDSA P-384 on reports.
//!
//! The arithmetic is ring's (constant-time, assembly-optimised, and already
//! in the agent for TLS); this module checks the algorithm identifiers and
//! feeds ring the exact signed bytes.

use der::asn1::ObjectIdentifier;
use der::{Decode, Encode};
use pkcs1::RsaPssParams;
use ring::signature::{UnparsedPublicKey, ECDSA_P384_SHA384_FIXED, RSA_PSS_2048_8192_SHA384};
use x509_cert::Certificate;

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const MGF1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// Checks that `issuer`'s RSA key signed `subject` with RSASSA-PSS/SHA-384
/// (MGF1 SHA-384, 48-byte salt) and that the names chain.
///
/// Returns what is wrong as text for the verification record.
pub(crate) fn verify_issued_by(issuer: &Certificate, subject: &Certificate) -> Result<(), String> {
    if subject.tbs_certificate.issuer != issuer.tbs_certificate.subject {
        return Err("issuer name differs from the signer's subject name".into());
    }
    let alg = &subject.signature_algorithm;
    if alg != &subject.tbs_certificate.signature {
        return Err("outer and inner signature algorithms differ".into());
    }
    if alg.oid != RSASSA_PSS {
        return Err(format!("signature algorithm {} is not RSASSA-PSS", alg.oid));
    }
    let params = alg
        .parameters
        .as_ref()
        .ok_or("RSASSA-PSS without parameters")?
        .to_der()
        .map_err(|e| e.to_string())?;
    let params = RsaPssParams::from_der(&params).map_err(|e| format!("RSASSA-PSS parameters: {e}"))?;
    let mgf_hash = params.mask_gen.parameters.as_ref().map(|p| p.oid);
    if params.hash.oid != SHA384
        || params.mask_gen.oid != MGF1
        || mgf_hash != Some(SHA384)
        || params.salt_len != 48
    {
        return Err(format!(
            "RSASSA-PSS parameters: expected SHA-384, MGF1 SHA-384, salt 48; found hash {}, mask {} ({:?}), salt {}",
            params.hash.oid, params.mask_gen.oid, mgf_hash, params.salt_len
        ));
    }
    let spki = &issuer.tbs_certificate.subject_public_key_info;
    if spki.algorithm.oid != RSA_ENCRYPTION {
        return Err(format!("signer's key is {}, not RSA", spki.algorithm.oid));
    }
    // The BIT STRING of an rsaEncryption SPKI is the PKCS#1 RSAPublicKey ring wants.
    let key = spki.subject_public_key.as_bytes().ok_or("signer's key has unused bits")?;
    let tbs = subject.tbs_certificate.to_der().map_err(|e| e.to_string())?;
    let sig = subject.signature.as_bytes().ok_or("signature has unused bits")?;
    UnparsedPublicKey::new(&RSA_PSS_2048_8192_SHA384, key)
        .verify(&tbs, sig)
        .map_err(|_| "RSA-PSS signature does not verify".to_owned())
}

/// The P-384 public key (uncompressed point) of a VCEK or VLEK certificate.
pub(crate) fn vek_public_key(cert: &Certificate) -> Result<Vec<u8>, String> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    if spki.algorithm.oid != EC_PUBLIC_KEY || curve != Some(SECP384R1) {
        return Err(format!("key is {} {:?}, not an EC P-384 key", spki.algorithm.oid, curve));
    }
    let point = spki.subject_public_key.as_bytes().ok_or("key has unused bits")?;
    if point.len() != 97 || point[0] != 0x04 {
        return Err("P-384 key is not an uncompressed point".into());
    }
    Ok(point.to_vec())
}

/// Verifies an ECDSA P-384/SHA-384 signature given as big-endian r || s.
pub(crate) fn verify_ecdsa_p384(public_point: &[u8], message: &[u8], r_s: &[u8; 96]) -> bool {
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, public_point).verify(message, r_s).is_ok()
}
