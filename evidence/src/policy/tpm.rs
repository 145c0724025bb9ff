//! The policy's rules on the vTPM side: expected PCR values, and expected
//! events in the firmware's event log. They judge what the session
//! evidence's boot quote proves (see [`crate::measured_boot`]).
//!
//! ```json
//! "tpm_pcrs": {"11": ["<64 hex digits>"], "12": ["00...00"]},
//! "tpm_events": [{"pcr": 4, "type": "EV_EFI_BOOT_SERVICES_APPLICATION",
//!                 "sha256": ["<the UKI's Authenticode digest>", "<its kernel's>"]}]
//! ```
//!
//! A PCR rule accepts the quoted SHA-256 value of that PCR when it is one of
//! the listed values. An event rule accepts the replayed log when the
//! SHA-256 digests of its events of that type in that PCR are, in order,
//! exactly the listed ones: no other boot application ran before, between
//! or after them, and none is missing.

use serde::{Deserialize, Serialize};

use crate::hexbytes::HexBytes;
use crate::tcglog::{EventType, MAX_PCR};

/// An event rule: which events of a PCR the firmware's log must hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventRule {
    /// The PCR, 0 to 23.
    pub pcr: u32,
    /// The event type, by its TCG name (`EV_EFI_BOOT_SERVICES_APPLICATION`).
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The SHA-256 digests of that PCR's events of that type, in log order.
    pub sha256: Vec<HexBytes<32>>,
}

/// Checks what serde cannot: PCR indices in range, no empty list of values
/// or digests. Returns the JSON path of the first fault and what is wrong.
pub(crate) fn validate(
    pcrs: &std::collections::BTreeMap<u32, Vec<HexBytes<32>>>,
    events: &[EventRule],
) -> Result<(), (String, String)> {
    for (pcr, values) in pcrs {
        if *pcr > MAX_PCR {
            return Err((format!("tpm_pcrs.{pcr}"), format!("PCR {pcr} does not exist (0 to {MAX_PCR})")));
        }
        if values.is_empty() {
            return Err((
                format!("tpm_pcrs.{pcr}"),
                "an empty list accepts no value: list at least one".into(),
            ));
        }
    }
    for (i, rule) in events.iter().enumerate() {
        if rule.pcr > MAX_PCR {
            return Err((
                format!("tpm_events[{i}].pcr"),
                format!("PCR {} does not exist (0 to {MAX_PCR})", rule.pcr),
            ));
        }
        if rule.event_type == EventType::NO_ACTION {
            return Err((format!("tpm_events[{i}].type"), "EV_NO_ACTION events are not extended".into()));
        }
        if rule.sha256.is_empty() {
            return Err((
                format!("tpm_events[{i}].sha256"),
                "list the digests of the events, in order".into(),
            ));
        }
    }
    Ok(())
}
