//! The paravisor's runtime claims: UTF-8 JSON, hashed into REPORT_DATA.
//!
//! ```json
//! {"keys": [{"kid": "HCLAkPub", "kty": "RSA", "key_ops": ["sign"], "e": "AQAB", "n": "..."},
//!           {"kid": "HCLEkPub", "kty": "RSA", "key_ops": ["encrypt"], "e": "AQAB", "n": "..."}],
//!  "vm-configuration": {"console-enabled": true, "secure-boot": true, "tpm-enabled": true, "vmUniqueId": "..."},
//!  "user-data": "<128 hex digits>"}
//! ```
//!
//! Fields this crate does not use are kept out of its types and ignored: the
//! paravisor may add claims. A field given twice is refused (serde's
//! duplicate-field error), so one set of bytes has one meaning.

use base64::Engine as _;
use serde::Deserialize;

use crate::tpm::{alg, AkPublic, KeyParams};

/// The `kid` of the paravisor's attestation key.
pub const AK_KID: &str = "HCLAkPub";

/// Claims that do not have the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimsError {
    /// Not JSON of the expected shape.
    #[error("runtime claims: {0}")]
    Json(String),
    /// A field with a value this crate refuses.
    #[error("runtime claims {field}: expected {expected}, found {found}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is accepted.
        expected: String,
        /// What was found.
        found: String,
    },
}

/// One JSON Web Key of the claims.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Jwk {
    /// The key's name (`HCLAkPub`, `HCLEkPub`).
    pub kid: String,
    /// The key type (`RSA`).
    pub kty: String,
    /// The RSA modulus, base64url.
    #[serde(default)]
    pub n: Option<String>,
    /// The RSA public exponent, base64url.
    #[serde(default)]
    pub e: Option<String>,
}

/// The VM configuration the paravisor reports.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct VmConfiguration {
    /// Whether the serial console is enabled.
    #[serde(rename = "console-enabled", default)]
    pub console_enabled: Option<bool>,
    /// Whether UEFI secure boot is on.
    #[serde(rename = "secure-boot", default)]
    pub secure_boot: Option<bool>,
    /// Whether the vTPM is on.
    #[serde(rename = "tpm-enabled", default)]
    pub tpm_enabled: Option<bool>,
    /// Azure's VM identifier.
    #[serde(rename = "vmUniqueId", default)]
    pub vm_unique_id: Option<String>,
}

/// The parsed runtime claims.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct RuntimeClaims {
    /// The keys (attestation key, endorsement key).
    pub keys: Vec<Jwk>,
    /// The VM's configuration.
    #[serde(rename = "vm-configuration", default)]
    pub vm_configuration: Option<VmConfiguration>,
    /// The guest's user data, hex.
    #[serde(rename = "user-data")]
    pub user_data: String,
}

/// An RSA public key from a JWK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RsaJwk {
    /// The modulus, big-endian, no leading zeros.
    pub modulus: Vec<u8>,
    /// The public exponent.
    pub exponent: u32,
}

impl RsaJwk {
    /// The key as a TPM attestation key with the scheme of Azure's
    /// (RSASSA-PKCS1-v1_5 with SHA-256), to verify quotes with. Its
    /// attributes are unknown (a JWK has none) and recorded as 0.
    pub fn to_ak(&self) -> AkPublic {
        AkPublic {
            name_alg: alg::SHA256,
            attributes: 0,
            scheme: alg::RSASSA,
            scheme_hash: alg::SHA256,
            key: KeyParams::Rsa { modulus: self.modulus.clone(), exponent: self.exponent },
        }
    }
}

impl RuntimeClaims {
    /// Claims as the paravisor writes them, for simulations and tests:
    /// `ak` as `HCLAkPub`, a VM configuration, and `user_data` in upper-case hex.
    pub fn encode(ak: &RsaJwk, user_data: &[u8; 64], vm_id: &str) -> Vec<u8> {
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let e = ak.exponent.to_be_bytes();
        let e: Vec<u8> = e.iter().copied().skip_while(|&b| b == 0).collect();
        serde_json::json!({
            "keys": [{"kid": AK_KID, "key_ops": ["sign"], "kty": "RSA", "e": b64(&e), "n": b64(&ak.modulus)}],
            "vm-configuration": {"console-enabled": false, "secure-boot": true, "tpm-enabled": true, "vmUniqueId": vm_id},
            "user-data": hex::encode_upper(user_data),
        })
        .to_string()
        .into_bytes()
    }

    /// Parses the claims' bytes.
    pub fn parse(bytes: &[u8]) -> Result<RuntimeClaims, ClaimsError> {
        serde_json::from_slice(bytes).map_err(|e| ClaimsError::Json(e.to_string()))
    }

    /// The 64 bytes of user data.
    pub fn user_data(&self) -> Result<[u8; 64], ClaimsError> {
        let mut out = [0u8; 64];
        hex::decode_to_slice(&self.user_data, &mut out).map_err(|e| ClaimsError::Field {
            field: "user-data",
            expected: "128 hex digits (64 bytes)".into(),
            found: format!("{} characters: {e}", self.user_data.len()),
        })?;
        Ok(out)
    }

    /// The paravisor's attestation key: the one key named `HCLAkPub`, RSA,
    /// 2048 to 4096 bits.
    pub fn attestation_key(&self) -> Result<RsaJwk, ClaimsError> {
        let bad = |field, expected: &str, found: String| ClaimsError::Field {
            field,
            expected: expected.into(),
            found,
        };
        let mut named = self.keys.iter().filter(|k| k.kid == AK_KID);
        let jwk = named.next().ok_or_else(|| bad("keys", "a key with kid HCLAkPub", "none".into()))?;
        if named.next().is_some() {
            return Err(bad("keys", "one key with kid HCLAkPub", "several".into()));
        }
        if jwk.kty != "RSA" {
            return Err(bad("HCLAkPub.kty", "RSA", jwk.kty.clone()));
        }
        let b64 = |v: &Option<String>, field| {
            let text = v.as_deref().ok_or_else(|| bad(field, "base64url", "none".into()))?;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(text)
                .map_err(|e| bad(field, "base64url without padding", e.to_string()))
        };
        let n = b64(&jwk.n, "HCLAkPub.n")?;
        let e = b64(&jwk.e, "HCLAkPub.e")?;
        let modulus: Vec<u8> = n.iter().copied().skip_while(|&b| b == 0).collect();
        if !(256..=512).contains(&modulus.len()) {
            return Err(bad("HCLAkPub.n", "a 2048- to 4096-bit modulus", format!("{} bytes", modulus.len())));
        }
        let e: Vec<u8> = e.iter().copied().skip_while(|&b| b == 0).collect();
        if e.is_empty() || e.len() > 4 {
            return Err(bad("HCLAkPub.e", "an exponent of 1 to 4 bytes", format!("{} bytes", e.len())));
        }
        let exponent = e.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
        Ok(RsaJwk { modulus, exponent })
    }
}
