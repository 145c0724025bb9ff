//! The SNP attestation report (SEV-SNP ABI, "ATTESTATION_REPORT Structure").
//!
//! A report is parsed once, in ABI order, into a [`ReportBody`]; the raw bytes
//! are kept, because the signature covers them and not any re-encoding.

mod bits;
mod display;
mod tcb;

use std::ops::Deref;

pub use bits::{GuestPolicy, KeyInfo, PlatformInfo, SigningKey};
pub use display::{Field, FieldValue};
pub use tcb::{TcbParts, TcbVersion};

use crate::error::ParseError;
use crate::Product;

/// Length of every report version this crate knows.
pub const REPORT_LEN: usize = 1184;
/// The signature covers bytes `[0, SIGNED_LEN)`.
pub const SIGNED_LEN: usize = 0x2a0;
/// Report versions this crate parses.
pub const SUPPORTED_VERSIONS: [u32; 3] = [2, 3, 5];
/// SIGNATURE_ALGO value for ECDSA P-384 with SHA-384, the only one defined.
pub const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;

/// CPUID family, model and stepping of the chip (report versions 3 and later).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Cpuid {
    /// CPUID_FAM_ID (extended family).
    pub family: u8,
    /// CPUID_MOD_ID (extended model).
    pub model: u8,
    /// CPUID_STEP.
    pub stepping: u8,
}

/// A firmware version triple (CURRENT_* and COMMITTED_* build, minor, major).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FirmwareVersion {
    /// Major version.
    pub major: u8,
    /// Minor version.
    pub minor: u8,
    /// Build number.
    pub build: u8,
}

/// The ECDSA signature as the report stores it: R and S, 72 bytes each, little-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportSignature {
    /// R, little-endian, zero-extended to 72 bytes.
    pub r: [u8; 72],
    /// S, little-endian, zero-extended to 72 bytes.
    pub s: [u8; 72],
    /// Bytes after R and S; zero in every report AMD firmware produces.
    pub reserved: [u8; 368],
}

impl Default for ReportSignature {
    fn default() -> Self {
        ReportSignature { r: [0; 72], s: [0; 72], reserved: [0; 368] }
    }
}

/// Every field of an attestation report, in ABI order.
///
/// Reserved ranges are not kept here (they stay in the raw bytes); fields that
/// exist only from some version on are `Option`s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportBody {
    /// VERSION (0x00): 2, 3 or 5.
    pub version: u32,
    /// GUEST_SVN (0x04): the guest's security version number.
    pub guest_svn: u32,
    /// POLICY (0x08).
    pub policy: GuestPolicy,
    /// FAMILY_ID (0x10) from the ID block.
    pub family_id: [u8; 16],
    /// IMAGE_ID (0x20) from the ID block.
    pub image_id: [u8; 16],
    /// VMPL (0x30) of the request.
    pub vmpl: u32,
    /// SIGNATURE_ALGO (0x34).
    pub signature_algo: u32,
    /// CURRENT_TCB (0x38).
    pub current_tcb: TcbVersion,
    /// PLATFORM_INFO (0x40).
    pub platform_info: PlatformInfo,
    /// Author key enable, chip key masking and signing key (0x48).
    pub key_info: KeyInfo,
    /// REPORT_DATA (0x50): 64 bytes chosen by the guest.
    pub report_data: [u8; 64],
    /// MEASUREMENT (0x90): the launch digest.
    pub measurement: [u8; 48],
    /// HOST_DATA (0xC0): 32 bytes the host supplied at launch.
    pub host_data: [u8; 32],
    /// ID_KEY_DIGEST (0xE0): SHA-384 of the ID block's public key.
    pub id_key_digest: [u8; 48],
    /// AUTHOR_KEY_DIGEST (0x110): SHA-384 of the author key.
    pub author_key_digest: [u8; 48],
    /// REPORT_ID (0x140).
    pub report_id: [u8; 32],
    /// REPORT_ID_MA (0x160): the migration agent's report id.
    pub report_id_ma: [u8; 32],
    /// REPORTED_TCB (0x180): the TCB the signing key was derived from.
    pub reported_tcb: TcbVersion,
    /// CPUID_FAM_ID, CPUID_MOD_ID, CPUID_STEP (0x188, version 3 and later).
    pub cpuid: Option<Cpuid>,
    /// CHIP_ID (0x1A0): unique per chip, zero when masked.
    pub chip_id: [u8; 64],
    /// COMMITTED_TCB (0x1E0).
    pub committed_tcb: TcbVersion,
    /// CURRENT_BUILD, CURRENT_MINOR, CURRENT_MAJOR (0x1E8).
    pub current_version: FirmwareVersion,
    /// COMMITTED_BUILD, COMMITTED_MINOR, COMMITTED_MAJOR (0x1EC).
    pub committed_version: FirmwareVersion,
    /// LAUNCH_TCB (0x1F0).
    pub launch_tcb: TcbVersion,
    /// LAUNCH_MIT_VECTOR (0x1F8, version 5 and later).
    pub launch_mit_vector: Option<u64>,
    /// CURRENT_MIT_VECTOR (0x200, version 5 and later).
    pub current_mit_vector: Option<u64>,
    /// SIGNATURE (0x2A0).
    pub signature: ReportSignature,
}

/// A parsed report together with the exact bytes it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestationReport {
    raw: Box<[u8; REPORT_LEN]>,
    body: ReportBody,
}

/// Reads fixed-size fields at ABI offsets; the length was checked before.
struct At<'a>(&'a [u8; REPORT_LEN]);

impl At<'_> {
    fn bytes<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&self.0[off..off + N]);
        out
    }
    fn u32(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.bytes(off))
    }
    fn u64(&self, off: usize) -> u64 {
        u64::from_le_bytes(self.bytes(off))
    }
}

impl AttestationReport {
    /// Parses a report, rejecting any length other than 1184 and unknown versions.
    pub fn from_bytes(bytes: &[u8]) -> Result<AttestationReport, ParseError> {
        let raw: &[u8; REPORT_LEN] =
            bytes.try_into().map_err(|_| ParseError::Length { expected: REPORT_LEN, found: bytes.len() })?;
        let at = At(raw);
        let version = at.u32(0x00);
        if !SUPPORTED_VERSIONS.contains(&version) {
            return Err(ParseError::UnsupportedVersion { found: version });
        }
        let fw = |off: usize| FirmwareVersion { build: raw[off], minor: raw[off + 1], major: raw[off + 2] };
        let body = ReportBody {
            version,
            guest_svn: at.u32(0x04),
            policy: GuestPolicy(at.u64(0x08)),
            family_id: at.bytes(0x10),
            image_id: at.bytes(0x20),
            vmpl: at.u32(0x30),
            signature_algo: at.u32(0x34),
            current_tcb: TcbVersion(at.u64(0x38)),
            platform_info: PlatformInfo(at.u64(0x40)),
            key_info: KeyInfo(at.u32(0x48)),
            report_data: at.bytes(0x50),
            measurement: at.bytes(0x90),
            host_data: at.bytes(0xc0),
            id_key_digest: at.bytes(0xe0),
            author_key_digest: at.bytes(0x110),
            report_id: at.bytes(0x140),
            report_id_ma: at.bytes(0x160),
            reported_tcb: TcbVersion(at.u64(0x180)),
            cpuid: (version >= 3).then(|| Cpuid {
                family: raw[0x188],
                model: raw[0x189],
                stepping: raw[0x18a],
            }),
            chip_id: at.bytes(0x1a0),
            committed_tcb: TcbVersion(at.u64(0x1e0)),
            current_version: fw(0x1e8),
            committed_version: fw(0x1ec),
            launch_tcb: TcbVersion(at.u64(0x1f0)),
            launch_mit_vector: (version >= 5).then(|| at.u64(0x1f8)),
            current_mit_vector: (version >= 5).then(|| at.u64(0x200)),
            signature: ReportSignature {
                r: at.bytes(0x2a0),
                s: at.bytes(0x2a0 + 72),
                reserved: at.bytes(0x2a0 + 144),
            },
        };
        Ok(AttestationReport { raw: Box::new(*raw), body })
    }

    /// The exact bytes the report was parsed from.
    pub fn raw(&self) -> &[u8; REPORT_LEN] {
        &self.raw
    }

    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> &[u8] {
        &self.raw[..SIGNED_LEN]
    }

    /// The parsed fields.
    pub fn body(&self) -> &ReportBody {
        &self.body
    }
}

impl Deref for AttestationReport {
    type Target = ReportBody;
    fn deref(&self) -> &ReportBody {
        &self.body
    }
}

impl ReportBody {
    /// Encodes the body in ABI layout; reserved bytes are zero.
    ///
    /// Used to build simulated reports; a parsed report keeps its own raw bytes.
    pub fn encode(&self) -> [u8; REPORT_LEN] {
        let mut b = [0u8; REPORT_LEN];
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(0x00, &self.version.to_le_bytes());
        put(0x04, &self.guest_svn.to_le_bytes());
        put(0x08, &self.policy.0.to_le_bytes());
        put(0x10, &self.family_id);
        put(0x20, &self.image_id);
        put(0x30, &self.vmpl.to_le_bytes());
        put(0x34, &self.signature_algo.to_le_bytes());
        put(0x38, &self.current_tcb.0.to_le_bytes());
        put(0x40, &self.platform_info.0.to_le_bytes());
        put(0x48, &self.key_info.0.to_le_bytes());
        put(0x50, &self.report_data);
        put(0x90, &self.measurement);
        put(0xc0, &self.host_data);
        put(0xe0, &self.id_key_digest);
        put(0x110, &self.author_key_digest);
        put(0x140, &self.report_id);
        put(0x160, &self.report_id_ma);
        put(0x180, &self.reported_tcb.0.to_le_bytes());
        if let Some(c) = self.cpuid {
            put(0x188, &[c.family, c.model, c.stepping]);
        }
        put(0x1a0, &self.chip_id);
        put(0x1e0, &self.committed_tcb.0.to_le_bytes());
        let cv = self.current_version;
        put(0x1e8, &[cv.build, cv.minor, cv.major]);
        let mv = self.committed_version;
        put(0x1ec, &[mv.build, mv.minor, mv.major]);
        put(0x1f0, &self.launch_tcb.0.to_le_bytes());
        if let Some(v) = self.launch_mit_vector {
            put(0x1f8, &v.to_le_bytes());
        }
        if let Some(v) = self.current_mit_vector {
            put(0x200, &v.to_le_bytes());
        }
        put(0x2a0, &self.signature.r);
        put(0x2a0 + 72, &self.signature.s);
        put(0x2a0 + 144, &self.signature.reserved);
        b
    }

    /// The product the report names through CPUID (version 3 and later).
    pub fn product_from_cpuid(&self) -> Option<Product> {
        self.cpuid.and_then(|c| Product::from_cpuid(c.family, c.model))
    }

    /// The product whose TCB layout decodes this report's TCB fields.
    ///
    /// Version 2 reports carry no CPUID; only Milan and Genoa firmware made
    /// them, and both share one layout.
    pub fn tcb_layout(&self) -> Product {
        self.product_from_cpuid().unwrap_or(Product::Milan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(name: &str) -> Vec<u8> {
        let path = format!("{}/testdata/amd/{name}/report.bin", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn parses_milan_v2_vector() {
        let r = AttestationReport::from_bytes(&vector("milan-virtee")).unwrap();
        assert_eq!(r.version, 2);
        assert_eq!(r.policy.0, 0x30000);
        assert_eq!(r.vmpl, 0);
        assert_eq!(r.signature_algo, SIG_ALGO_ECDSA_P384_SHA384);
        assert_eq!(r.cpuid, None);
        assert_eq!(r.launch_mit_vector, None);
        let tcb = r.reported_tcb.parts(r.tcb_layout());
        assert_eq!((tcb.bootloader, tcb.snp, tcb.microcode), (3, 8, 115));
        assert_eq!(r.key_info.signing_key(), SigningKey::Vcek);
    }

    #[test]
    fn parses_genoa_v5_vector_with_cpuid_and_mit_vectors() {
        let r = AttestationReport::from_bytes(&vector("genoa-oak-v5")).unwrap();
        assert_eq!(r.version, 5);
        assert_eq!(r.product_from_cpuid(), Some(Product::Genoa));
        assert!(r.launch_mit_vector.is_some());
        assert!(r.current_mit_vector.is_some());
    }

    #[test]
    fn encode_reproduces_real_reports_byte_for_byte() {
        for name in ["milan-virtee", "milan-trustee", "genoa-oak-v5", "milan-vlek-trustee"] {
            let bytes = vector(name);
            let r = AttestationReport::from_bytes(&bytes).unwrap();
            assert_eq!(&r.body().encode()[..], &bytes[..], "{name}");
            assert_eq!(&r.raw()[..], &bytes[..]);
        }
    }

    #[test]
    fn wrong_lengths_are_rejected() {
        let bytes = vector("milan-virtee");
        for len in [0, 1183, 1185, 4000] {
            let mut b = bytes.clone();
            b.resize(len, 0);
            let err = AttestationReport::from_bytes(&b).unwrap_err();
            assert_eq!(err, ParseError::Length { expected: 1184, found: len });
        }
    }

    #[test]
    fn unknown_versions_are_rejected() {
        let mut bytes = vector("milan-virtee");
        for v in [0u32, 1, 4, 6, 0xffff_ffff] {
            bytes[..4].copy_from_slice(&v.to_le_bytes());
            let err = AttestationReport::from_bytes(&bytes).unwrap_err();
            assert_eq!(err, ParseError::UnsupportedVersion { found: v });
            assert!(err.to_string().contains("version"), "{err}");
        }
    }
}
