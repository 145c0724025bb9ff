//! Owners' public keys: SubjectPublicKeyInfo, base64 in JSON.

use std::fmt;

use base64::Engine as _;
use der::asn1::ObjectIdentifier;
use der::{Decode, Encode};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use spki::SubjectPublicKeyInfoRef;

const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// The key types owners may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// Ed25519.
    Ed25519,
    /// ECDSA on P-256.
    EcdsaP256,
    /// ECDSA on P-384.
    EcdsaP384,
}

/// A public key as its DER SubjectPublicKeyInfo; equality is byte equality.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicKey {
    spki: Vec<u8>,
    algorithm: KeyAlgorithm,
}

/// A key that is not an Ed25519, P-256 or P-384 SubjectPublicKeyInfo.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The bytes are not DER SubjectPublicKeyInfo.
    #[error("public key: not DER SubjectPublicKeyInfo: {0}")]
    NotSpki(der::Error),
    /// The SubjectPublicKeyInfo is DER, but not in its one canonical encoding.
    #[error("public key: SubjectPublicKeyInfo is not canonical DER")]
    NotCanonical,
    /// Another algorithm, curve or key length.
    #[error(
        "public key: algorithm {oid} {curve:?} with a {key_len}-byte key is not Ed25519, ECDSA P-256 or ECDSA P-384"
    )]
    Unsupported {
        /// The algorithm's OID.
        oid: ObjectIdentifier,
        /// The curve's OID, if the parameters name one.
        curve: Option<ObjectIdentifier>,
        /// The key's length in bytes.
        key_len: usize,
    },
    /// The text is not base64.
    #[error("public key: not base64: {0}")]
    NotBase64(base64::DecodeError),
}

impl PublicKey {
    /// Parses DER SubjectPublicKeyInfo; only Ed25519, P-256 and P-384 are accepted.
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, KeyError> {
        let spki = SubjectPublicKeyInfoRef::from_der(der).map_err(KeyError::NotSpki)?;
        let canonical = spki.to_der().map_err(KeyError::NotSpki)?;
        if canonical != der {
            return Err(KeyError::NotCanonical);
        }
        let key_len = spki.subject_public_key.raw_bytes().len();
        let curve = spki.algorithm.parameters.and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        let algorithm = match (spki.algorithm.oid, curve) {
            (ED25519, None) if key_len == 32 => KeyAlgorithm::Ed25519,
            (EC_PUBLIC_KEY, Some(P256)) if key_len == 65 => KeyAlgorithm::EcdsaP256,
            (EC_PUBLIC_KEY, Some(P384)) if key_len == 97 => KeyAlgorithm::EcdsaP384,
            (oid, curve) => return Err(KeyError::Unsupported { oid, curve, key_len }),
        };
        Ok(PublicKey { spki: der.to_vec(), algorithm })
    }

    /// Parses standard base64 of DER SubjectPublicKeyInfo.
    pub fn from_base64(s: &str) -> Result<PublicKey, KeyError> {
        let der = base64::engine::general_purpose::STANDARD.decode(s.trim()).map_err(KeyError::NotBase64)?;
        PublicKey::from_spki_der(&der)
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// Standard base64 of the DER SubjectPublicKeyInfo (the manifest's form).
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.spki)
    }

    /// A short, stable name for logs and messages: `sha256:` and 16 hex digits of the SPKI hash.
    pub fn fingerprint(&self) -> String {
        let d = crate::Digest::of(&self.spki);
        format!("sha256:{}", &hex::encode(d.0)[..16])
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({:?}, {})", self.algorithm, self.fingerprint())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.fingerprint())
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PublicKey, D::Error> {
        let s = String::deserialize(d)?;
        PublicKey::from_base64(&s).map_err(de::Error::custom)
    }
}
