//! The verification policy: what an owner requires of a report.
//!
//! A policy is JSON (see `examples/policy.json` at the repository root).
//! Every field is optional; what a policy does not pin is recorded by the
//! verifier as an explicitly skipped check, never silently passed. Debug and
//! migration-agent guests are refused unless the policy allows them.
//!
//! Rules on the vTPM side (PCR values, firmware events) are in [`tpm`]; the
//! flavour of guest (`"platform": "sev-snp" | "azure" | "gcp"`) in [`platform`].

pub mod platform;
pub mod tpm;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use self::platform::Platform;
pub use self::tpm::EventRule;
use crate::hexbytes::HexBytes;
use crate::report::TcbParts;
use crate::PolicyError;

/// Which key kinds a policy accepts as the report's signer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AcceptedKey {
    /// Versioned Chip Endorsement Key.
    Vcek,
    /// Versioned Loaded Endorsement Key.
    Vlek,
}

/// Requirements on a report, beyond its authenticity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The flavour of guest accepted (see [`platform`]); none accepts any,
    /// recorded as skipped with the flavour found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Accepted launch measurements; empty accepts any (recorded as skipped).
    #[serde(default)]
    pub measurements: Vec<HexBytes<48>>,
    /// Minimum REPORTED_TCB, per component.
    #[serde(default)]
    pub min_tcb: Option<TcbParts>,
    /// Minimum GUEST_SVN.
    #[serde(default)]
    pub min_guest_svn: Option<u32>,
    /// Accept a guest whose policy allows debugging (the host can read its memory).
    #[serde(default)]
    pub allow_debug: bool,
    /// Accept a guest whose policy allows a migration agent.
    #[serde(default)]
    pub allow_migration_agent: bool,
    /// Accept a report from a platform with SMT enabled.
    #[serde(default = "yes")]
    pub allow_smt: bool,
    /// The VMPL the report must have been requested from.
    #[serde(default)]
    pub vmpl: Option<u32>,
    /// Expected HOST_DATA.
    #[serde(default)]
    pub host_data: Option<HexBytes<32>>,
    /// Expected REPORT_DATA.
    #[serde(default)]
    pub report_data: Option<HexBytes<64>>,
    /// Accepted ID_KEY_DIGEST values; empty accepts any.
    #[serde(default)]
    pub id_key_digests: Vec<HexBytes<48>>,
    /// Accepted AUTHOR_KEY_DIGEST values; empty accepts any.
    #[serde(default)]
    pub author_key_digests: Vec<HexBytes<48>>,
    /// Key kinds accepted as signer.
    #[serde(default = "both_keys")]
    pub signing_keys: Vec<AcceptedKey>,
    /// Require a vTPM quote in session evidence. A quote that is present is
    /// always checked; without this, an agent without a vTPM is accepted
    /// (the check is recorded as skipped with the agent's reason).
    #[serde(default)]
    pub require_vtpm: bool,
    /// Accepted SHA-256 values of vTPM PCRs, by PCR index (see [`tpm`]):
    /// checked against the session evidence's quote of the boot PCRs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tpm_pcrs: BTreeMap<u32, Vec<HexBytes<32>>>,
    /// Events the firmware's event log must hold (see [`tpm`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tpm_events: Vec<EventRule>,
}

fn yes() -> bool {
    true
}

fn both_keys() -> Vec<AcceptedKey> {
    vec![AcceptedKey::Vcek, AcceptedKey::Vlek]
}

impl Default for Policy {
    /// Authenticity only: genuine AMD evidence, no debug, no migration agent.
    fn default() -> Self {
        Policy {
            platform: None,
            measurements: Vec::new(),
            min_tcb: None,
            min_guest_svn: None,
            allow_debug: false,
            allow_migration_agent: false,
            allow_smt: true,
            vmpl: None,
            host_data: None,
            report_data: None,
            id_key_digests: Vec::new(),
            author_key_digests: Vec::new(),
            signing_keys: both_keys(),
            require_vtpm: false,
            tpm_pcrs: BTreeMap::new(),
            tpm_events: Vec::new(),
        }
    }
}

impl Policy {
    /// Parses a policy; errors name the offending field's path.
    pub fn from_json(text: &str) -> Result<Policy, PolicyError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let policy: Policy = serde_path_to_error::deserialize(de)
            .map_err(|e| PolicyError::Field { path: e.path().to_string(), message: e.inner().to_string() })?;
        tpm::validate(&policy.tpm_pcrs, &policy.tpm_events)
            .map_err(|(path, message)| PolicyError::Field { path, message })?;
        platform::validate(&policy).map_err(|(path, message)| PolicyError::Field { path, message })?;
        Ok(policy)
    }

    /// Whether the vTPM's attestation key must come with a certificate from
    /// its provider's CA: on GCP (`"platform": "gcp"`), Google's EK/AK CA.
    pub fn requires_ak_certificate(&self) -> bool {
        self.platform == Some(Platform::Gcp)
    }

    /// Whether the policy has rules on the vTPM's PCRs or the firmware's events.
    pub fn has_tpm_rules(&self) -> bool {
        !self.tpm_pcrs.is_empty() || !self.tpm_events.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_policy_parses() {
        let text = include_str!("../../examples/policy.json");
        let p = Policy::from_json(text).unwrap();
        assert_eq!(p.vmpl, Some(0));
        assert!(!p.allow_debug);
        assert_eq!(p.measurements.len(), 1);
    }

    #[test]
    fn empty_object_is_the_default_policy() {
        assert_eq!(Policy::from_json("{}").unwrap(), Policy::default());
    }

    #[test]
    fn the_platform_is_one_of_three_flavours() {
        for (name, p) in [("sev-snp", Platform::SevSnp), ("azure", Platform::Azure), ("gcp", Platform::Gcp)] {
            let policy = Policy::from_json(&format!(r#"{{"platform": "{name}"}}"#)).unwrap();
            assert_eq!(policy.platform, Some(p));
        }
        assert_eq!(Policy::default().platform, None);
        let err = Policy::from_json(r#"{"platform": "aws"}"#).unwrap_err().to_string();
        assert!(err.contains("platform") && err.contains("aws"), "{err}");
        // Azure's reports come from the paravisor at VMPL 0: a policy cannot want another.
        let err = Policy::from_json(r#"{"platform": "azure", "vmpl": 2}"#).unwrap_err().to_string();
        assert!(err.contains("`vmpl`") && err.contains("paravisor"), "{err}");
        assert!(Policy::from_json(r#"{"platform": "azure", "vmpl": 0}"#).is_ok());
    }

    #[test]
    fn only_a_gcp_policy_requires_the_vtpms_ak_certificate() {
        assert!(!Policy::default().requires_ak_certificate());
        for (name, required) in [("sev-snp", false), ("azure", false), ("gcp", true)] {
            let policy = Policy::from_json(&format!(r#"{{"platform": "{name}"}}"#)).unwrap();
            assert_eq!(policy.requires_ak_certificate(), required, "{name}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let err = Policy::from_json(r#"{"measurements": ["abcd"]}"#).unwrap_err().to_string();
        assert!(err.contains("measurements[0]") && err.contains("96 hex digits"), "{err}");
        let err = Policy::from_json(r#"{"min_tcb": {"snp": "x"}}"#).unwrap_err().to_string();
        assert!(err.contains("min_tcb.snp"), "{err}");
        let err = Policy::from_json(r#"{"vmlp": 0}"#).unwrap_err().to_string();
        assert!(err.contains("unknown field `vmlp`"), "{err}");
    }

    #[test]
    fn tpm_rules_parse_and_their_faults_are_named() {
        let d = "ab".repeat(32);
        let p = Policy::from_json(&format!(
            r#"{{"tpm_pcrs": {{"11": ["{d}"]}},
                "tpm_events": [{{"pcr": 4, "type": "EV_EFI_BOOT_SERVICES_APPLICATION", "sha256": ["{d}", "{d}"]}}]}}"#
        ))
        .unwrap();
        assert!(p.has_tpm_rules());
        assert_eq!(p.tpm_pcrs[&11], vec![HexBytes([0xab; 32])]);
        assert_eq!(p.tpm_events[0].event_type, crate::tcglog::EventType::EFI_BOOT_SERVICES_APPLICATION);
        // What it serializes to parses back to itself.
        assert_eq!(Policy::from_json(&serde_json::to_string(&p).unwrap()).unwrap(), p);
        assert!(!Policy::default().has_tpm_rules());

        let cases = [
            (format!(r#"{{"tpm_pcrs": {{"24": ["{d}"]}}}}"#), "tpm_pcrs.24", "does not exist"),
            (r#"{"tpm_pcrs": {"11": []}}"#.to_owned(), "tpm_pcrs.11", "empty list"),
            (r#"{"tpm_pcrs": {"11": ["abcd"]}}"#.to_owned(), "tpm_pcrs", "64 hex digits"),
            (r#"{"tpm_pcrs": {"eleven": []}}"#.to_owned(), "tpm_pcrs", "invalid"),
            (
                format!(r#"{{"tpm_events": [{{"pcr": 4, "type": "EV_BOOT", "sha256": ["{d}"]}}]}}"#),
                "tpm_events[0].type",
                "EV_BOOT",
            ),
            (
                format!(r#"{{"tpm_events": [{{"pcr": 30, "type": "EV_IPL", "sha256": ["{d}"]}}]}}"#),
                "tpm_events[0].pcr",
                "does not exist",
            ),
            (
                r#"{"tpm_events": [{"pcr": 4, "type": "EV_IPL", "sha256": []}]}"#.to_owned(),
                "tpm_events[0].sha256",
                "",
            ),
            (
                format!(r#"{{"tpm_events": [{{"pcr": 4, "type": "EV_IPL", "sha256": ["{d}"], "x": 1}}]}}"#),
                "tpm_events[0]",
                "unknown field",
            ),
        ];
        for (text, path, message) in cases {
            let err = Policy::from_json(&text).unwrap_err().to_string();
            assert!(err.contains(path) && err.contains(message), "{text}: {err}");
        }
    }
}
