//! Bit fields of the report: guest policy, platform info and key info.

use std::fmt;

/// GUEST_POLICY (report offset 0x08): what the guest owner allowed at launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GuestPolicy(pub u64);

/// PLATFORM_INFO (offset 0x40): the platform's state when the report was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PlatformInfo(pub u64);

/// The key-info word at offset 0x48: author key, chip-key masking and signing key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct KeyInfo(pub u32);

/// Which key signed the report (KEY_INFO bits 4:2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SigningKey {
    /// The Versioned Chip Endorsement Key (0).
    Vcek,
    /// The Versioned Loaded Endorsement Key, provisioned by a cloud provider (1).
    Vlek,
    /// No key: the report is unsigned (7).
    None,
    /// A value the ABI reserves.
    Reserved(u8),
}

const fn bit(v: u64, n: u32) -> bool {
    (v >> n) & 1 == 1
}

impl GuestPolicy {
    /// Guest policy bit 16: SMT is allowed.
    pub const SMT: u64 = 1 << 16;
    /// Bit 17: reserved, must be one.
    pub const RESERVED_ONE: u64 = 1 << 17;
    /// Bit 18: association with a migration agent is allowed.
    pub const MIGRATE_MA: u64 = 1 << 18;
    /// Bit 19: debugging is allowed (the host can read guest memory).
    pub const DEBUG: u64 = 1 << 19;

    /// Minimum ABI minor version the guest requires.
    pub fn abi_minor(self) -> u8 {
        self.0 as u8
    }
    /// Minimum ABI major version the guest requires.
    pub fn abi_major(self) -> u8 {
        (self.0 >> 8) as u8
    }
    /// Named flags in bit order, for display.
    pub fn flags(self) -> Vec<(&'static str, bool)> {
        let v = self.0;
        vec![
            ("smt_allowed", bit(v, 16)),
            ("reserved_must_be_one", bit(v, 17)),
            ("migrate_ma", bit(v, 18)),
            ("debug", bit(v, 19)),
            ("single_socket", bit(v, 20)),
            ("cxl_allowed", bit(v, 21)),
            ("mem_aes_256_xts", bit(v, 22)),
            ("rapl_disabled", bit(v, 23)),
            ("ciphertext_hiding", bit(v, 24)),
            ("page_swap_disabled", bit(v, 25)),
        ]
    }
    /// Debugging allowed.
    pub fn debug(self) -> bool {
        bit(self.0, 19)
    }
    /// A migration agent may be associated.
    pub fn migrate_ma(self) -> bool {
        bit(self.0, 18)
    }
    /// SMT allowed.
    pub fn smt_allowed(self) -> bool {
        bit(self.0, 16)
    }
}

impl PlatformInfo {
    /// Named flags in bit order, for display.
    pub fn flags(self) -> Vec<(&'static str, bool)> {
        let v = self.0;
        vec![
            ("smt_enabled", bit(v, 0)),
            ("tsme_enabled", bit(v, 1)),
            ("ecc_enabled", bit(v, 2)),
            ("rapl_disabled", bit(v, 3)),
            ("ciphertext_hiding_enabled", bit(v, 4)),
            ("alias_check_complete", bit(v, 5)),
            ("tio_enabled", bit(v, 7)),
        ]
    }
    /// SMT is enabled on the platform.
    pub fn smt_enabled(self) -> bool {
        bit(self.0, 0)
    }
}

impl KeyInfo {
    /// Builds the word from its parts.
    pub fn new(author_key_en: bool, mask_chip_key: bool, signing_key: SigningKey) -> KeyInfo {
        let key = match signing_key {
            SigningKey::Vcek => 0,
            SigningKey::Vlek => 1,
            SigningKey::None => 7,
            SigningKey::Reserved(v) => u32::from(v & 7),
        };
        KeyInfo(u32::from(author_key_en) | (u32::from(mask_chip_key) << 1) | (key << 2))
    }
    /// AUTHOR_KEY_EN: the author key digest field is meaningful.
    pub fn author_key_en(self) -> bool {
        self.0 & 1 == 1
    }
    /// MASK_CHIP_KEY: the chip key (and CHIP_ID) were masked.
    pub fn mask_chip_key(self) -> bool {
        (self.0 >> 1) & 1 == 1
    }
    /// SIGNING_KEY: which key signed the report.
    pub fn signing_key(self) -> SigningKey {
        match (self.0 >> 2) & 7 {
            0 => SigningKey::Vcek,
            1 => SigningKey::Vlek,
            7 => SigningKey::None,
            v => SigningKey::Reserved(v as u8),
        }
    }
}

impl fmt::Display for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SigningKey::Vcek => f.write_str("VCEK"),
            SigningKey::Vlek => f.write_str("VLEK"),
            SigningKey::None => f.write_str("none"),
            SigningKey::Reserved(v) => write!(f, "reserved({v})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_info_round_trips() {
        for key in [SigningKey::Vcek, SigningKey::Vlek, SigningKey::None, SigningKey::Reserved(3)] {
            let ki = KeyInfo::new(true, false, key);
            assert_eq!(ki.signing_key(), key);
            assert!(ki.author_key_en());
            assert!(!ki.mask_chip_key());
        }
    }

    #[test]
    fn policy_bits() {
        let p = GuestPolicy(0x30000);
        assert!(p.smt_allowed());
        assert!(!p.debug());
        assert!(!p.migrate_ma());
        assert!(GuestPolicy(p.0 | GuestPolicy::DEBUG).debug());
    }
}
