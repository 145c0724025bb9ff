//! Azure confidential VMs: SEV-SNP behind Microsoft's paravisor.
//!
//! On Azure (DCasv5/ECasv5) the guest cannot reach the AMD secure processor.
//! The paravisor (the "HCL", at VMPL 0) requests the SNP report and puts it,
//! with its runtime claims, into the vTPM's NV index 0x01400001: the HCL
//! report ([`hcl`]). The claims ([`claims`]) are JSON: the paravisor's vTPM
//! attestation key as an RSA JWK (`HCLAkPub`), the VM's configuration, and
//! the 64 bytes of user data the guest last wrote to NV index 0x01400002.
//! The report's REPORT_DATA starts with the hash of those claims, so the SNP
//! signature covers them, and through them the attestation key and the
//! guest's user data.
//!
//! [`check_hcl_report`] records, after the flavour (`platform`):
//!
//! - `hcl_format`: the HCL report parses (header, SNP report, claims header
//!   naming an SNP report and a known hash type, claims within the bytes);
//! - every check of [`crate::Verifier`] on the SNP report, with the VMPL
//!   required to be 0 (the paravisor's) unless the policy pins one, and
//!   `hcl_vmpl`: VMPL 0 whatever the policy pins;
//! - `runtime_claims_hash`: the claims' hash by the declared type is
//!   REPORT_DATA's first bytes, and the rest of REPORT_DATA is zero;
//! - `runtime_claims`: the claims are JSON of the expected shape;
//! - `hcl_attestation_key`: they hold exactly one `HCLAkPub`, an RSA key;
//! - `hcl_user_data`: their user data is the binding the caller expects.
//!
//! [`check_quote`] then checks a TPM quote with that key (`vtpm_quote_*`),
//! and [`check_ak_matches`] that a TPM public area the agent sent is that
//! key (`hcl_ak_binding`), so the agent's quotes are the paravisor's vTPM's.

mod checks;
pub mod claims;
pub mod hcl;

pub use checks::{check_ak_matches, check_hcl_report, check_quote, VerifiedHcl};
pub use claims::{ClaimsError, RsaJwk, RuntimeClaims};
pub use hcl::{ClaimsHash, HclError, HclReport};

/// NV index of the HCL report, written by the paravisor.
pub const NV_HCL_REPORT: u32 = 0x0140_0001;
/// NV index of the guest's 64 bytes of user data, read by the paravisor.
pub const NV_USER_DATA: u32 = 0x0140_0002;
/// Persistent handle of the paravisor's attestation key.
pub const AK_HANDLE: u32 = 0x8100_0003;
