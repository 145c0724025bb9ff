//! Certificate signatures of the common X.509 kinds, for chains that are not
//! AMD's: Google's EK/AK CA (the GCP vTPM's attestation-key certificates) and
//! the signer of Google's launch endorsements.
//!
//! AMD's chain has exactly one shape, checked strictly in [`super::signature`];
//! these chains use whatever their CA chose, so this module accepts the
//! algorithms a public CA uses (RSA PKCS#1 v1.5 and RSASSA-PSS with SHA-256,
//! -384 or -512, ECDSA on P-256 or P-384) and nothing else. The arithmetic is
//! ring's; the bytes checked are the exact DER of the signed structure.

use der::asn1::ObjectIdentifier;
use der::{Decode, Encode};
use pkcs1::RsaPssParams;
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::Certificate;

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const SHA384_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const SHA512_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const MGF1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");
const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const PRIME256V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");

/// Checks that `issuer`'s key signed `subject` and that the names chain.
/// Returns what is wrong as text for the verification record.
pub(crate) fn verify_x509_issued_by(issuer: &Certificate, subject: &Certificate) -> Result<(), String> {
    if subject.tbs_certificate.issuer != issuer.tbs_certificate.subject {
        return Err("issuer name differs from the signer's subject name".into());
    }
    if subject.signature_algorithm != subject.tbs_certificate.signature {
        return Err("outer and inner signature algorithms differ".into());
    }
    let tbs = subject.tbs_certificate.to_der().map_err(|e| e.to_string())?;
    let sig = subject.signature.as_bytes().ok_or("signature has unused bits")?;
    verify_signature(&issuer.tbs_certificate.subject_public_key_info, &subject.signature_algorithm, &tbs, sig)
}

/// Checks `sig` over `message` by the key `spki` with the X.509 algorithm `alg`.
pub(crate) fn verify_signature(
    spki: &SubjectPublicKeyInfoOwned,
    alg: &AlgorithmIdentifierOwned,
    message: &[u8],
    sig: &[u8],
) -> Result<(), String> {
    let key = spki.subject_public_key.as_bytes().ok_or("the signer's key has unused bits")?;
    let algorithm = algorithm_for(spki, alg)?;
    UnparsedPublicKey::new(algorithm, key)
        .verify(message, sig)
        .map_err(|_| format!("the {} signature does not verify", name_of(alg.oid)))
}

/// Verifies an RSASSA-PSS/SHA-256 signature with a 32-byte salt (what Go's
/// `x509.SHA256WithRSAPSS` makes and checks) by an RSA key.
pub(crate) fn verify_rsa_pss_sha256(
    spki: &SubjectPublicKeyInfoOwned,
    message: &[u8],
    sig: &[u8],
) -> Result<(), String> {
    if spki.algorithm.oid != RSA_ENCRYPTION {
        return Err(format!("the signer's key is {}, not RSA", spki.algorithm.oid));
    }
    let key = spki.subject_public_key.as_bytes().ok_or("the signer's key has unused bits")?;
    UnparsedPublicKey::new(&signature::RSA_PSS_2048_8192_SHA256, key)
        .verify(message, sig)
        .map_err(|_| "the RSASSA-PSS/SHA-256 signature does not verify".to_owned())
}

fn name_of(oid: ObjectIdentifier) -> &'static str {
    match oid {
        SHA256_WITH_RSA => "sha256WithRSAEncryption",
        SHA384_WITH_RSA => "sha384WithRSAEncryption",
        SHA512_WITH_RSA => "sha512WithRSAEncryption",
        RSASSA_PSS => "RSASSA-PSS",
        ECDSA_SHA256 => "ecdsa-with-SHA256",
        ECDSA_SHA384 => "ecdsa-with-SHA384",
        _ => "unknown",
    }
}

fn algorithm_for(
    spki: &SubjectPublicKeyInfoOwned,
    alg: &AlgorithmIdentifierOwned,
) -> Result<&'static dyn VerificationAlgorithm, String> {
    let key_alg = spki.algorithm.oid;
    let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    let wrong_key = || format!("a {} signature by a {key_alg} key ({curve:?})", name_of(alg.oid));
    match alg.oid {
        SHA256_WITH_RSA | SHA384_WITH_RSA | SHA512_WITH_RSA if key_alg != RSA_ENCRYPTION => Err(wrong_key()),
        SHA256_WITH_RSA => Ok(&signature::RSA_PKCS1_2048_8192_SHA256),
        SHA384_WITH_RSA => Ok(&signature::RSA_PKCS1_2048_8192_SHA384),
        SHA512_WITH_RSA => Ok(&signature::RSA_PKCS1_2048_8192_SHA512),
        RSASSA_PSS => {
            if key_alg != RSA_ENCRYPTION {
                return Err(wrong_key());
            }
            let params = alg
                .parameters
                .as_ref()
                .ok_or("RSASSA-PSS without parameters")?
                .to_der()
                .map_err(|e| e.to_string())?;
            let params =
                RsaPssParams::from_der(&params).map_err(|e| format!("RSASSA-PSS parameters: {e}"))?;
            let mgf_hash = params.mask_gen.parameters.as_ref().map(|p| p.oid);
            if params.mask_gen.oid != MGF1 || mgf_hash != Some(params.hash.oid) {
                return Err(format!("RSASSA-PSS with mask {} ({mgf_hash:?})", params.mask_gen.oid));
            }
            match (params.hash.oid, params.salt_len) {
                (SHA256, 32) => Ok(&signature::RSA_PSS_2048_8192_SHA256),
                (SHA384, 48) => Ok(&signature::RSA_PSS_2048_8192_SHA384),
                (SHA512, 64) => Ok(&signature::RSA_PSS_2048_8192_SHA512),
                (h, s) => Err(format!("RSASSA-PSS with hash {h} and salt {s}: not a supported pair")),
            }
        }
        ECDSA_SHA256 | ECDSA_SHA384 if key_alg != EC_PUBLIC_KEY => Err(wrong_key()),
        ECDSA_SHA256 | ECDSA_SHA384 => match (curve, alg.oid) {
            (Some(PRIME256V1), ECDSA_SHA256) => Ok(&signature::ECDSA_P256_SHA256_ASN1),
            (Some(PRIME256V1), _) => Ok(&signature::ECDSA_P256_SHA384_ASN1),
            (Some(SECP384R1), ECDSA_SHA256) => Ok(&signature::ECDSA_P384_SHA256_ASN1),
            (Some(SECP384R1), _) => Ok(&signature::ECDSA_P384_SHA384_ASN1),
            _ => Err(wrong_key()),
        },
        other => Err(format!("signature algorithm {other} is not supported")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::parse_certificate;

    const ROOT: &[u8] = include_bytes!("../gcp/roots/gcp_ek_ak_ca_root.crt");
    const INTERMEDIATE: &[u8] = include_bytes!("../gcp/roots/gcp_ek_ak_ca_intermediate_v3.crt");

    #[test]
    fn googles_intermediate_is_signed_by_googles_root_and_not_the_reverse() {
        let root = parse_certificate(ROOT, "root").unwrap();
        let intermediate = parse_certificate(INTERMEDIATE, "intermediate").unwrap();
        verify_x509_issued_by(&root, &intermediate).unwrap();
        verify_x509_issued_by(&root, &root).unwrap();
        let err = verify_x509_issued_by(&intermediate, &root).unwrap_err();
        assert!(err.contains("issuer name differs"), "{err}");
        // The same names, a changed signed byte: the signature fails.
        let mut tampered = intermediate.clone();
        tampered.tbs_certificate.serial_number =
            x509_cert::serial_number::SerialNumber::new(&[1, 2, 3]).unwrap();
        let err = verify_x509_issued_by(&root, &tampered).unwrap_err();
        assert_eq!(err, "the sha256WithRSAEncryption signature does not verify");
    }
}
