//! The HCL report (NV index 0x01400001), byte by byte. All integers are
//! little-endian.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0x000 | 4 | signature `HCLA` |
//! | 0x004 | 4 | version |
//! | 0x008 | 4 | report size (from offset 0 to the end of the claims) |
//! | 0x00C | 4 | request type |
//! | 0x010 | 4 | status |
//! | 0x014 | 12 | reserved |
//! | 0x020 | 1184 | the SNP attestation report |
//! | 0x4C0 | 4 | claims data size (the 20-byte claims header and the claims) |
//! | 0x4C4 | 4 | claims version |
//! | 0x4C8 | 4 | report type (2: SNP, 4: TDX) |
//! | 0x4CC | 4 | hash type of the claims (1: SHA-256, 2: SHA-384, 3: SHA-512) |
//! | 0x4D0 | 4 | size of the claims |
//! | 0x4D4 | n | the runtime claims, UTF-8 JSON |
//!
//! Bytes after the report size are not part of the report (the NV index is
//! larger than most reports) and are ignored. The header fields outside the
//! SNP report are signed by nothing; the parser checks they are consistent
//! and keeps them for display only.

use sha2::{Digest as _, Sha256, Sha384, Sha512};

use crate::report::REPORT_LEN;
use crate::{AttestationReport, ParseError};

/// The report's first four bytes.
pub const SIGNATURE: &[u8; 4] = b"HCLA";
/// Where the SNP report starts.
pub const SNP_OFFSET: usize = 0x20;
/// Where the claims header starts.
pub const CLAIMS_HEADER_OFFSET: usize = SNP_OFFSET + REPORT_LEN;
/// Where the claims start.
pub const CLAIMS_OFFSET: usize = CLAIMS_HEADER_OFFSET + 20;
/// The largest HCL report this crate reads (Azure's NV index holds 2600
/// bytes; the bound keeps a hostile file from costing more than this).
pub const MAX_LEN: usize = 16 * 1024;
/// The report type of an SNP report in the claims header.
pub const REPORT_TYPE_SNP: u32 = 2;

/// The hash the claims header declares for the claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimsHash {
    /// 1: SHA-256.
    Sha256,
    /// 2: SHA-384.
    Sha384,
    /// 3: SHA-512.
    Sha512,
}

impl ClaimsHash {
    fn from_id(id: u32) -> Option<ClaimsHash> {
        match id {
            1 => Some(ClaimsHash::Sha256),
            2 => Some(ClaimsHash::Sha384),
            3 => Some(ClaimsHash::Sha512),
            _ => None,
        }
    }

    /// The digest of `bytes`.
    pub fn digest(self, bytes: &[u8]) -> Vec<u8> {
        match self {
            ClaimsHash::Sha256 => Sha256::digest(bytes).to_vec(),
            ClaimsHash::Sha384 => Sha384::digest(bytes).to_vec(),
            ClaimsHash::Sha512 => Sha512::digest(bytes).to_vec(),
        }
    }
}

impl std::fmt::Display for ClaimsHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClaimsHash::Sha256 => "sha256",
            ClaimsHash::Sha384 => "sha384",
            ClaimsHash::Sha512 => "sha512",
        })
    }
}

/// An HCL report that cannot be read: hostile or corrupt input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HclError {
    /// Fewer bytes than the fixed part, or more than [`MAX_LEN`].
    #[error("HCL report length: expected {expected}, found {found} bytes")]
    Length {
        /// What is accepted.
        expected: String,
        /// The length given.
        found: usize,
    },
    /// A header field with a value this parser refuses.
    #[error("HCL report {field}: expected {expected}, found {found}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is accepted.
        expected: String,
        /// What was found.
        found: String,
    },
    /// The embedded SNP report does not parse.
    #[error("the SNP report inside the HCL report: {0}")]
    Snp(#[from] ParseError),
}

/// A parsed HCL report.
#[derive(Clone, Debug)]
pub struct HclReport {
    /// The header's version.
    pub version: u32,
    /// The header's request type.
    pub request_type: u32,
    /// The header's status.
    pub status: u32,
    /// The SNP report.
    pub snp: AttestationReport,
    /// The claims header's version.
    pub claims_version: u32,
    /// The declared hash of the claims.
    pub hash: ClaimsHash,
    /// The runtime claims, exactly the bytes hashed.
    pub claims: Vec<u8>,
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    // Callers check `bytes.len() >= CLAIMS_OFFSET` first; every offset read is below it.
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(b)
}

impl HclReport {
    /// Parses an HCL report, in the order of its layout.
    pub fn parse(bytes: &[u8]) -> Result<HclReport, HclError> {
        if bytes.len() < CLAIMS_OFFSET || bytes.len() > MAX_LEN {
            return Err(HclError::Length {
                expected: format!("{CLAIMS_OFFSET} to {MAX_LEN} bytes"),
                found: bytes.len(),
            });
        }
        if &bytes[..4] != SIGNATURE {
            return Err(field("signature", "\"HCLA\"", format!("{:02x?}", &bytes[..4])));
        }
        let version = u32_at(bytes, 0x04);
        let report_size = u32_at(bytes, 0x08) as usize;
        let request_type = u32_at(bytes, 0x0C);
        let status = u32_at(bytes, 0x10);
        let snp = AttestationReport::from_bytes(&bytes[SNP_OFFSET..CLAIMS_HEADER_OFFSET])?;
        let data_size = u32_at(bytes, CLAIMS_HEADER_OFFSET) as usize;
        let claims_version = u32_at(bytes, CLAIMS_HEADER_OFFSET + 4);
        let report_type = u32_at(bytes, CLAIMS_HEADER_OFFSET + 8);
        let hash_id = u32_at(bytes, CLAIMS_HEADER_OFFSET + 12);
        let claims_size = u32_at(bytes, CLAIMS_HEADER_OFFSET + 16) as usize;
        if report_type != REPORT_TYPE_SNP {
            return Err(field("report type", "2 (SNP)", report_type.to_string()));
        }
        let hash = ClaimsHash::from_id(hash_id)
            .ok_or_else(|| field("hash type", "1, 2 or 3 (SHA-256, -384, -512)", hash_id.to_string()))?;
        let available = bytes.len() - CLAIMS_OFFSET;
        if claims_size > available {
            return Err(field(
                "claims size",
                format!("at most the {available} bytes after the claims header"),
                claims_size.to_string(),
            ));
        }
        if data_size != claims_size + 20 {
            return Err(field(
                "claims data size",
                format!("{} (the claims header and {claims_size} bytes of claims)", claims_size + 20),
                data_size.to_string(),
            ));
        }
        if report_size != CLAIMS_OFFSET + claims_size {
            return Err(field(
                "report size",
                format!("{} (up to the end of the claims)", CLAIMS_OFFSET + claims_size),
                report_size.to_string(),
            ));
        }
        let claims = bytes[CLAIMS_OFFSET..CLAIMS_OFFSET + claims_size].to_vec();
        Ok(HclReport { version, request_type, status, snp, claims_version, hash, claims })
    }

    /// Lays out an HCL report as the paravisor does (version 1, request
    /// type 2, status 0), around `snp` and `claims`: for simulations and
    /// tests. `snp`'s REPORT_DATA should be [`HclReport::report_data_for`].
    pub fn encode(snp: &[u8; REPORT_LEN], claims: &[u8], hash: ClaimsHash) -> Vec<u8> {
        let mut out = Vec::with_capacity(CLAIMS_OFFSET + claims.len());
        out.extend_from_slice(SIGNATURE);
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&((CLAIMS_OFFSET + claims.len()) as u32).to_le_bytes());
        out.extend_from_slice(&2u32.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&[0u8; 12]);
        out.extend_from_slice(snp);
        out.extend_from_slice(&((claims.len() + 20) as u32).to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&REPORT_TYPE_SNP.to_le_bytes());
        let hash_id: u32 = match hash {
            ClaimsHash::Sha256 => 1,
            ClaimsHash::Sha384 => 2,
            ClaimsHash::Sha512 => 3,
        };
        out.extend_from_slice(&hash_id.to_le_bytes());
        out.extend_from_slice(&(claims.len() as u32).to_le_bytes());
        out.extend_from_slice(claims);
        out
    }

    /// The REPORT_DATA that binds `claims` hashed with `hash`.
    pub fn report_data_for(claims: &[u8], hash: ClaimsHash) -> [u8; 64] {
        let mut out = [0u8; 64];
        let digest = hash.digest(claims);
        out[..digest.len()].copy_from_slice(&digest);
        out
    }

    /// What REPORT_DATA must be: the claims' digest, then zeros.
    pub fn expected_report_data(&self) -> [u8; 64] {
        HclReport::report_data_for(&self.claims, self.hash)
    }
}

fn field(field: &'static str, expected: impl Into<String>, found: impl Into<String>) -> HclError {
    HclError::Field { field, expected: expected.into(), found: found.into() }
}
