//! Event types of the TCG PC Client Platform Firmware Profile (PFP),
//! Table 9 ("Events"), by number and by their names in the specification.

use std::fmt;

/// An event's type (`TCG_EVENTTYPE`, a `UINT32`). Any value can appear in a
/// log; the known ones have a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventType(pub u32);

/// The events this crate knows by name: number and the specification's name.
const NAMES: &[(u32, &str)] = &[
    (0x0000_0000, "EV_PREBOOT_CERT"),
    (0x0000_0001, "EV_POST_CODE"),
    (0x0000_0002, "EV_UNUSED"),
    (0x0000_0003, "EV_NO_ACTION"),
    (0x0000_0004, "EV_SEPARATOR"),
    (0x0000_0005, "EV_ACTION"),
    (0x0000_0006, "EV_EVENT_TAG"),
    (0x0000_0007, "EV_S_CRTM_CONTENTS"),
    (0x0000_0008, "EV_S_CRTM_VERSION"),
    (0x0000_0009, "EV_CPU_MICROCODE"),
    (0x0000_000A, "EV_PLATFORM_CONFIG_FLAGS"),
    (0x0000_000B, "EV_TABLE_OF_DEVICES"),
    (0x0000_000C, "EV_COMPACT_HASH"),
    (0x0000_000D, "EV_IPL"),
    (0x0000_000E, "EV_IPL_PARTITION_DATA"),
    (0x0000_000F, "EV_NONHOST_CODE"),
    (0x0000_0010, "EV_NONHOST_CONFIG"),
    (0x0000_0011, "EV_NONHOST_INFO"),
    (0x0000_0012, "EV_OMIT_BOOT_DEVICE_EVENTS"),
    (0x0000_0013, "EV_POST_CODE2"),
    (0x8000_0000, "EV_EFI_EVENT_BASE"),
    (0x8000_0001, "EV_EFI_VARIABLE_DRIVER_CONFIG"),
    (0x8000_0002, "EV_EFI_VARIABLE_BOOT"),
    (0x8000_0003, "EV_EFI_BOOT_SERVICES_APPLICATION"),
    (0x8000_0004, "EV_EFI_BOOT_SERVICES_DRIVER"),
    (0x8000_0005, "EV_EFI_RUNTIME_SERVICES_DRIVER"),
    (0x8000_0006, "EV_EFI_GPT_EVENT"),
    (0x8000_0007, "EV_EFI_ACTION"),
    (0x8000_0008, "EV_EFI_PLATFORM_FIRMWARE_BLOB"),
    (0x8000_0009, "EV_EFI_HANDOFF_TABLES"),
    (0x8000_000A, "EV_EFI_PLATFORM_FIRMWARE_BLOB2"),
    (0x8000_000B, "EV_EFI_HANDOFF_TABLES2"),
    (0x8000_000C, "EV_EFI_VARIABLE_BOOT2"),
    (0x8000_000D, "EV_EFI_GPT_EVENT2"),
    (0x8000_0010, "EV_EFI_HCRTM_EVENT"),
    (0x8000_00E0, "EV_EFI_VARIABLE_AUTHORITY"),
    (0x8000_00E1, "EV_EFI_SPDM_FIRMWARE_BLOB"),
    (0x8000_00E2, "EV_EFI_SPDM_FIRMWARE_CONFIG"),
];

impl EventType {
    /// Not extended into any PCR: informational (the Spec ID header, StartupLocality, ...).
    pub const NO_ACTION: EventType = EventType(0x0000_0003);
    /// The separator between pre-OS and OS-present measurements of a PCR.
    pub const SEPARATOR: EventType = EventType(0x0000_0004);
    /// A tagged event (the Linux EFI stub's initrd and load options in PCR 9).
    pub const EVENT_TAG: EventType = EventType(0x0000_0006);
    /// Initial program loader code or data (systemd-stub's UKI sections in PCR 11).
    pub const IPL: EventType = EventType(0x0000_000D);
    /// A UEFI application the firmware started (PCR 4): its PE/Authenticode digest.
    pub const EFI_BOOT_SERVICES_APPLICATION: EventType = EventType(0x8000_0003);
    /// A UEFI action string.
    pub const EFI_ACTION: EventType = EventType(0x8000_0007);

    /// The specification's name, if this crate knows the type.
    pub fn name(self) -> Option<&'static str> {
        NAMES.iter().find(|(n, _)| *n == self.0).map(|(_, name)| *name)
    }

    /// The type named `name` (the specification's spelling, e.g.
    /// `EV_EFI_BOOT_SERVICES_APPLICATION`), or a number (`0x80000003`).
    pub fn from_name(name: &str) -> Option<EventType> {
        if let Some((n, _)) = NAMES.iter().find(|(_, known)| *known == name) {
            return Some(EventType(*n));
        }
        let hex = name.strip_prefix("0x").or_else(|| name.strip_prefix("0X"))?;
        u32::from_str_radix(hex, 16).ok().map(EventType)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "0x{:08x}", self.0),
        }
    }
}

impl serde::Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        EventType::from_name(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown event type {name:?} (a TCG name such as EV_EFI_BOOT_SERVICES_APPLICATION, or 0x hex)"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_round_trip() {
        for (n, name) in NAMES {
            assert_eq!(EventType(*n).name(), Some(*name));
            assert_eq!(EventType::from_name(name), Some(EventType(*n)));
        }
        assert_eq!(EventType::from_name("0x80000003"), Some(EventType::EFI_BOOT_SERVICES_APPLICATION));
        assert_eq!(EventType(0x1234).to_string(), "0x00001234");
        assert_eq!(EventType::from_name("EV_NOT_A_TYPE"), None);
        assert_eq!(EventType::from_name("0xZZ"), None);
    }
}
