//! Which flavour of SEV-SNP guest the evidence comes from, and what each
//! flavour leaves outside the SNP boundary.
//!
//! ```json
//! "platform": "azure"
//! ```
//!
//! A policy that names a platform accepts evidence of that flavour only: a
//! policy written for our own hosts (whose SNP measurement covers the image)
//! does not accept a cloud guest whose measurement covers the cloud's
//! firmware, and the reverse. Without the field every flavour is accepted and
//! the check is recorded as skipped, naming the flavour found.
//!
//! What a policy may pin, by flavour: on `sev-snp` the launch measurement
//! covers the image, so `measurements` (with ID and author key digests) pin
//! it. On `azure` the measurement is the paravisor's and firmware's: pin it,
//! and pin the image with `tpm_pcrs` and `tpm_events` (the paravisor's vTPM
//! measured it); the VMPL is always 0 (the paravisor's), and the verifier
//! requires it even when the policy says nothing.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::VerificationReport;

/// A flavour of SEV-SNP guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Platform {
    /// Our own hosts: the guest reads reports from the AMD secure processor
    /// at VMPL 0, and the launch measurement covers the image.
    #[serde(rename = "sev-snp")]
    SevSnp,
    /// An Azure confidential VM: Microsoft's paravisor (the HCL, at VMPL 0)
    /// requests the report and binds its vTPM's attestation key into it.
    #[serde(rename = "azure")]
    Azure,
    /// A Google Cloud confidential VM: reports from /dev/sev-guest as on our
    /// hosts, the measurement covering Google's firmware, Google's vTPM.
    #[serde(rename = "gcp")]
    Gcp,
}

impl Platform {
    /// The name used in policies and evidence.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::SevSnp => "sev-snp",
            Platform::Azure => "azure",
            Platform::Gcp => "gcp",
        }
    }

    /// What, on this flavour, the SNP evidence does not cover: what the
    /// owner trusts without the AMD secure processor vouching for it.
    pub fn outside_snp_boundary(self) -> &'static str {
        match self {
            Platform::SevSnp => {
                "the vTPM, unless it runs in an SVSM at VMPL 0 (a host-emulated vTPM is not trusted); \
                 the measurement covers firmware, kernel, initramfs and command line"
            }
            Platform::Azure => {
                "the guest image: the SNP measurement covers Microsoft's paravisor and firmware, not the \
                 kernel, initramfs or agent; the vTPM's measured boot covers those, and that vTPM, its \
                 attestation key and the runtime claims are the paravisor's, trusted because the paravisor \
                 is measured, not independently verified"
            }
            Platform::Gcp => {
                "the guest image: the SNP measurement covers Google's firmware only; the image is covered \
                 by measured boot into Google's vTPM, which runs outside the guest's TEE"
            }
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks what serde cannot about the flavour's rules: an Azure policy
/// cannot require a VMPL other than 0, where the paravisor requests its
/// reports. Returns the JSON path of the fault and what is wrong.
pub(crate) fn validate(policy: &crate::Policy) -> Result<(), (String, String)> {
    match (policy.platform, policy.vmpl) {
        (Some(Platform::Azure), Some(v)) if v != 0 => Err((
            "vmpl".into(),
            format!("{v}: on azure the paravisor requests every report at VMPL 0; pin 0 or leave it out"),
        )),
        _ => Ok(()),
    }
}

/// Records the `platform` check: the flavour `found` against the policy's
/// `required` one (skipped, naming the flavour, when the policy names none).
pub fn check_platform(result: &mut VerificationReport, required: Option<Platform>, found: Platform) {
    match required {
        Some(p) => result.record("platform", p == found, p.as_str(), found.as_str()),
        None => result
            .record_skipped("platform", format!("the policy names no platform (the evidence is {found})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in [Platform::SevSnp, Platform::Azure, Platform::Gcp] {
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{p}\""));
            assert_eq!(serde_json::from_str::<Platform>(&json).unwrap(), p);
        }
        assert!(serde_json::from_str::<Platform>("\"aws\"").is_err());
    }

    #[test]
    fn the_check_fails_on_another_flavour_and_is_skipped_without_one() {
        let mut r = VerificationReport { product: None, checks: Vec::new() };
        check_platform(&mut r, Some(Platform::SevSnp), Platform::Azure);
        check_platform(&mut r, Some(Platform::Azure), Platform::Azure);
        check_platform(&mut r, None, Platform::Gcp);
        assert_eq!(r.checks[0].outcome, crate::Outcome::Failed);
        assert_eq!((r.checks[0].expected.as_str(), r.checks[0].found.as_str()), ("sev-snp", "azure"));
        assert_eq!(r.checks[1].outcome, crate::Outcome::Passed);
        assert!(matches!(&r.checks[2].outcome, crate::Outcome::Skipped { reason } if reason.contains("gcp")));
    }
}
