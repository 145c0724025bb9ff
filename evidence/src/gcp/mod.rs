//! Google Cloud confidential VMs (N2D, C3D: SEV-SNP): what GCP adds to the
//! evidence, and its checks.
//!
//! On GCP the guest asks /dev/sev-guest for its reports at VMPL 0, as on our
//! own hosts, and the host fills the extended report's certificate table
//! with the VCEK, so the SNP checks are the usual ones. Two things differ:
//!
//! - The SNP measurement covers Google's firmware only (GCE's OVMF has no
//!   kernel-hashes table): the image is covered by measured boot into the
//!   vTPM, which Google's hypervisor provides, outside the SNP boundary.
//!   What makes a quote Google's vTPM's is the attestation key's certificate
//!   that Google provisions in the vTPM's NV storage (0x01c10002 for the ECC
//!   key, 0x01c10000 for the RSA key), issued by Google's EK/AK CA, whose
//!   root and intermediate are built in and pinned ([`roots`]); the
//!   certified key must be the key that signed the quote ([`ak_cert`]).
//! - Google signs a launch endorsement of each firmware build: the SNP
//!   measurement it gives for every vCPU count, the firmware's SHA-384, its
//!   security version ([`endorsement`]). Its root is Google's to publish;
//!   the owner passes it (`cvmctl attest --gce-endorsement FILE --gce-root
//!   PEM`), nothing about it is built in.
//!
//! What stays outside the SNP boundary on GCP, verified or not: Google's
//! firmware (pinned by the measurement, and by the endorsement when given)
//! and Google's vTPM (trusted as Google's, not as part of the TEE).

pub mod ak_cert;
pub mod endorsement;
mod protobuf;
pub mod roots;

pub use ak_cert::check_ak_certificate;
pub use endorsement::{check_launch_endorsement, GoldenMeasurement, LaunchEndorsement, SevSnpGolden};
pub use roots::AkAnchors;

/// NV index of the vTPM's RSA attestation-key certificate (DER).
pub const AK_CERT_NV_RSA: u32 = 0x01c1_0000;
/// NV index of the RSA attestation key's template (`TPMT_PUBLIC`).
pub const AK_TEMPLATE_NV_RSA: u32 = 0x01c1_0001;
/// NV index of the vTPM's ECC attestation-key certificate (DER).
pub const AK_CERT_NV_ECC: u32 = 0x01c1_0002;
/// NV index of the ECC attestation key's template (`TPMT_PUBLIC`).
pub const AK_TEMPLATE_NV_ECC: u32 = 0x01c1_0003;

/// A certificate for the verification record: its CN and fingerprint.
pub(crate) fn describe(cert: &x509_cert::Certificate) -> String {
    format!(
        "CN={} (sha256:{})",
        crate::certs::subject_cn(cert).unwrap_or_default(),
        hex::encode(crate::certs::fingerprint(cert))
    )
}

pub(crate) fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("unix time {unix}"))
}
