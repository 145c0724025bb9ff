//! The attestation key's public area (`TPMT_PUBLIC`, Part 2 §12.2.4).

use der::asn1::{AnyRef, BitStringRef, ObjectIdentifier, UintRef};
use der::Encode;
use ring::signature::{
    RsaPublicKeyComponents, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED,
    RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_2048_8192_SHA384, RSA_PSS_2048_8192_SHA256,
    RSA_PSS_2048_8192_SHA384,
};

use super::quote::Signature;
use super::reader::Reader;
use super::{alg, alg_name, TpmError};

const TPM_ECC_NIST_P256: u16 = 0x0003;
const TPM_ECC_NIST_P384: u16 = 0x0004;

/// objectAttributes bits (TPMA_OBJECT) an attestation key must have.
const FIXED_TPM: u32 = 1 << 1;
const FIXED_PARENT: u32 = 1 << 4;
const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
const RESTRICTED: u32 = 1 << 16;
const DECRYPT: u32 = 1 << 17;
const SIGN: u32 = 1 << 18;

const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const PRIME256V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// The key material of an attestation key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyParams {
    /// An ECC key on NIST P-256 or P-384.
    Ecc {
        /// TPM_ECC_CURVE: 0x0003 (P-256) or 0x0004 (P-384).
        curve: u16,
        /// The point's x coordinate.
        x: Vec<u8>,
        /// The point's y coordinate.
        y: Vec<u8>,
    },
    /// An RSA key.
    Rsa {
        /// The modulus, big-endian.
        modulus: Vec<u8>,
        /// The public exponent.
        exponent: u32,
    },
}

/// A parsed attestation key: a restricted signing key that lives in a TPM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AkPublic {
    /// The name algorithm.
    pub name_alg: u16,
    /// objectAttributes.
    pub attributes: u32,
    /// The signing scheme fixed in the key (TPM_ALG_ECDSA, RSASSA or RSAPSS).
    pub scheme: u16,
    /// The scheme's hash algorithm.
    pub scheme_hash: u16,
    /// The public key.
    pub key: KeyParams,
}

impl AkPublic {
    /// Parses a marshalled `TPMT_PUBLIC` and checks that it describes an
    /// attestation key: restricted, signing only, fixed to its TPM and parent,
    /// generated inside the TPM, with an ECDSA, RSASSA or RSAPSS scheme.
    pub fn parse(bytes: &[u8]) -> Result<AkPublic, TpmError> {
        let mut r = Reader::new(bytes, "AK public area");
        let kind = r.u16()?;
        let name_alg = r.u16()?;
        let attributes = r.u32()?;
        let _auth_policy = r.tpm2b()?;
        let symmetric = r.u16()?;
        if symmetric != alg::NULL {
            return Err(unexpected("AK symmetric algorithm", "null (a signing key)", alg_name(symmetric)));
        }
        let scheme = r.u16()?;
        let scheme_hash = if scheme == alg::NULL { alg::NULL } else { r.u16()? };
        let key = match kind {
            alg::ECC => {
                if scheme != alg::NULL && scheme != alg::ECDSA {
                    return Err(unexpected("AK ECC scheme", "ecdsa", alg_name(scheme)));
                }
                let curve = r.u16()?;
                let kdf = r.u16()?;
                if kdf != alg::NULL {
                    r.u16()?;
                }
                let x = r.tpm2b()?.to_vec();
                let y = r.tpm2b()?.to_vec();
                let len = match curve {
                    TPM_ECC_NIST_P256 => 32,
                    TPM_ECC_NIST_P384 => 48,
                    other => {
                        return Err(unexpected("AK curve", "NIST P-256 or P-384", format!("0x{other:04x}")))
                    }
                };
                if x.len() > len || y.len() > len {
                    return Err(unexpected(
                        "AK point",
                        format!("coordinates of at most {len} bytes"),
                        "longer",
                    ));
                }
                KeyParams::Ecc { curve, x: left_pad(&x, len), y: left_pad(&y, len) }
            }
            alg::RSA => {
                if ![alg::NULL, alg::RSASSA, alg::RSAPSS].contains(&scheme) {
                    return Err(unexpected("AK RSA scheme", "rsassa or rsapss", alg_name(scheme)));
                }
                let _key_bits = r.u16()?;
                let exponent = match r.u32()? {
                    0 => 65537,
                    e => e,
                };
                let modulus = r.tpm2b()?.to_vec();
                KeyParams::Rsa { modulus, exponent }
            }
            other => return Err(unexpected("AK type", "ecc or rsa", alg_name(other))),
        };
        r.finish()?;
        let required = FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | RESTRICTED | SIGN;
        if attributes & required != required || attributes & DECRYPT != 0 {
            return Err(unexpected(
                "AK attributes",
                "fixedTPM, fixedParent, sensitiveDataOrigin, restricted, sign and not decrypt",
                format!("0x{attributes:08x}"),
            ));
        }
        if scheme == alg::NULL {
            // A restricted signing key must fix its scheme, or the TPM could
            // be asked to sign with any; TPM2_Create refuses such a key anyway.
            return Err(unexpected("AK scheme", "a fixed signing scheme", "null"));
        }
        Ok(AkPublic { name_alg, attributes, scheme, scheme_hash, key })
    }

    /// Checks that `signature` is this key's over `message`, with the key's own scheme.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), TpmError> {
        if signature.scheme != self.scheme || signature.hash != self.scheme_hash {
            return Err(unexpected(
                "signature scheme",
                format!("the AK's {}/{}", alg_name(self.scheme), alg_name(self.scheme_hash)),
                format!("{}/{}", alg_name(signature.scheme), alg_name(signature.hash)),
            ));
        }
        let bad = |_| TpmError::BadSignature("does not verify under the attestation key".into());
        match &self.key {
            KeyParams::Ecc { curve, x, y } => {
                let (algorithm, len): (&'static dyn ring::signature::VerificationAlgorithm, usize) =
                    match (*curve, signature.hash) {
                        (TPM_ECC_NIST_P256, alg::SHA256) => (&ECDSA_P256_SHA256_FIXED, 32),
                        (TPM_ECC_NIST_P384, alg::SHA384) => (&ECDSA_P384_SHA384_FIXED, 48),
                        (c, h) => {
                            return Err(unexpected(
                                "ECDSA curve and hash",
                                "P-256 with sha256 or P-384 with sha384",
                                format!("curve 0x{c:04x} with {}", alg_name(h)),
                            ))
                        }
                    };
                let (sr, ss) = (&signature.ecdsa_r, &signature.ecdsa_s);
                if sr.len() > len || ss.len() > len {
                    return Err(TpmError::BadSignature("ECDSA r or s longer than the curve".into()));
                }
                let mut point = vec![0x04];
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                let mut rs = left_pad(sr, len);
                rs.extend_from_slice(&left_pad(ss, len));
                UnparsedPublicKey::new(algorithm, point).verify(message, &rs).map_err(bad)
            }
            KeyParams::Rsa { modulus, exponent } => {
                let params = match (signature.scheme, signature.hash) {
                    (alg::RSASSA, alg::SHA256) => &RSA_PKCS1_2048_8192_SHA256,
                    (alg::RSASSA, alg::SHA384) => &RSA_PKCS1_2048_8192_SHA384,
                    (alg::RSAPSS, alg::SHA256) => &RSA_PSS_2048_8192_SHA256,
                    (alg::RSAPSS, alg::SHA384) => &RSA_PSS_2048_8192_SHA384,
                    (s, h) => {
                        return Err(unexpected(
                            "RSA signature scheme",
                            "rsassa or rsapss with sha256 or sha384",
                            format!("{}/{}", alg_name(s), alg_name(h)),
                        ))
                    }
                };
                // ring refuses an exponent (or modulus) with leading zero bytes.
                let e = exponent.to_be_bytes();
                let e = &e[e.iter().take_while(|&&b| b == 0).count()..];
                let n = &modulus[modulus.iter().take_while(|&&b| b == 0).count()..];
                RsaPublicKeyComponents { n, e }.verify(params, message, &signature.rsa).map_err(bad)
            }
        }
    }

    /// The key as a DER SubjectPublicKeyInfo (what `tpm2_checkquote -u` and openssl read as PEM).
    pub fn to_spki_der(&self) -> Result<Vec<u8>, TpmError> {
        let enc = |e: der::Error| unexpected("SPKI encoding", "encodable key", e.to_string());
        match &self.key {
            KeyParams::Ecc { curve, x, y } => {
                let curve_oid = if *curve == TPM_ECC_NIST_P256 { PRIME256V1 } else { SECP384R1 };
                let mut point = vec![0x04];
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                let spki = spki::SubjectPublicKeyInfoRef {
                    algorithm: spki::AlgorithmIdentifierRef {
                        oid: EC_PUBLIC_KEY,
                        parameters: Some(AnyRef::from(&curve_oid)),
                    },
                    subject_public_key: BitStringRef::from_bytes(&point).map_err(enc)?,
                };
                spki.to_der().map_err(enc)
            }
            KeyParams::Rsa { modulus, exponent } => {
                let e = exponent.to_be_bytes();
                let key = pkcs1::RsaPublicKey {
                    modulus: UintRef::new(modulus).map_err(enc)?,
                    public_exponent: UintRef::new(&e).map_err(enc)?,
                }
                .to_der()
                .map_err(enc)?;
                let spki = spki::SubjectPublicKeyInfoRef {
                    algorithm: spki::AlgorithmIdentifierRef {
                        oid: RSA_ENCRYPTION,
                        parameters: Some(AnyRef::NULL),
                    },
                    subject_public_key: BitStringRef::from_bytes(&key).map_err(enc)?,
                };
                spki.to_der().map_err(enc)
            }
        }
    }
}

fn unexpected(what: &'static str, expected: impl Into<String>, found: impl Into<String>) -> TpmError {
    TpmError::Unexpected { what, expected: expected.into(), found: found.into() }
}

fn left_pad(b: &[u8], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len.saturating_sub(b.len())];
    out.extend_from_slice(b);
    out
}
