//! Where SNP reports come from: one trait, three providers.
//!
//! `sev-guest` (the kernel's /dev/sev-guest through the `sev` crate),
//! `configfs-tsm` (/sys/kernel/config/tsm/report, Linux 6.7+) and
//! `simulated` (software SNP for development and tests, chosen only
//! explicitly and announced by a warning). Auto-detection takes the first
//! real provider that exists and fails closed when there is none.

mod configfs_tsm;
mod sev_guest;
#[cfg(feature = "simulated-tee")]
mod simulated;

use std::path::Path;

pub use configfs_tsm::ConfigfsTsm;
pub use sev_guest::SevGuest;
#[cfg(feature = "simulated-tee")]
pub use simulated::Simulated;

/// Whether this agent was built with the simulated provider (the
/// `simulated-tee` feature: development and the tests' images only).
pub const SIMULATED_BUILT_IN: bool = cfg!(feature = "simulated-tee");

/// A report and the certificates the host supplied with it.
#[derive(Clone, Debug, Default)]
pub struct TeeEvidence {
    /// The raw report.
    pub report: Vec<u8>,
    /// VCEK or VLEK (DER), if supplied.
    pub vek: Option<Vec<u8>>,
    /// ASK or ASVK (DER), if supplied.
    pub ask: Option<Vec<u8>>,
    /// ARK (DER), if supplied.
    pub ark: Option<Vec<u8>>,
}

/// A provider failed to produce a report.
#[derive(Debug, thiserror::Error)]
#[error("{provider}: {message}")]
pub struct TeeError {
    /// Which provider.
    pub provider: &'static str,
    /// What went wrong.
    pub message: String,
}

/// A source of SNP reports.
pub trait TeeProvider: Send + Sync {
    /// The provider's name as in the configuration.
    fn name(&self) -> &'static str;
    /// A fresh report carrying `report_data`.
    fn report(&self, report_data: &[u8; 64]) -> Result<TeeEvidence, TeeError>;
}

/// Which TEE provider produces reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TeeChoice {
    /// The first real provider that exists; none is an error.
    Auto,
    /// /dev/sev-guest.
    SevGuest,
    /// /sys/kernel/config/tsm/report.
    ConfigfsTsm,
    /// Software SNP; not secure.
    Simulated,
}

/// The TEE's settings: config keys `tee`, `simulated_chain` and `simulated_measurement`.
#[derive(Clone, Copy, Debug)]
pub struct TeeSettings<'a> {
    /// The provider asked for.
    pub choice: TeeChoice,
    /// The simulated provider's chain bundle.
    pub simulated_chain: Option<&'a Path>,
    /// The measurement the simulated provider reports.
    pub simulated_measurement: [u8; 48],
}

/// The provider the settings ask for; `auto` never picks the simulator.
pub fn from_settings(config: TeeSettings<'_>) -> Result<Box<dyn TeeProvider>, TeeError> {
    match config.choice {
        TeeChoice::SevGuest => Ok(Box::new(SevGuest)),
        TeeChoice::ConfigfsTsm => Ok(Box::new(ConfigfsTsm::new())),
        #[cfg(feature = "simulated-tee")]
        TeeChoice::Simulated => Ok(Box::new(Simulated::from_settings(config)?)),
        #[cfg(not(feature = "simulated-tee"))]
        TeeChoice::Simulated => Err(TeeError {
            provider: "simulated",
            message: "this agent was built without the simulated TEE (the `simulated-tee` feature): \
                      a release agent runs on real SEV-SNP only"
                .into(),
        }),
        TeeChoice::Auto => {
            if Path::new(sev_guest::DEVICE).exists() {
                Ok(Box::new(SevGuest))
            } else if Path::new(configfs_tsm::ROOT).exists() {
                Ok(Box::new(ConfigfsTsm::new()))
            } else {
                Err(TeeError {
                    provider: "auto",
                    message: format!(
                        "no SNP guest interface found ({} or {}); refusing to start without a TEE \
                         (set tee = simulated for development: it is not secure)",
                        sev_guest::DEVICE,
                        configfs_tsm::ROOT
                    ),
                })
            }
        }
    }
}

/// Splits an AMD certificate table (GUID, offset, length entries ending in a
/// zero GUID) into VEK, ASK and ARK.
pub(crate) fn parse_cert_table(table: &[u8]) -> Result<TeeEvidence, String> {
    const VCEK: &str = "63da758d-e664-4564-adc5-f4b93be8accd";
    const VLEK: &str = "a8074bc2-a25a-483e-aae6-39c045a0b8a1";
    const ASK: &str = "4ab7b379-bbac-4fe4-a02f-05aef327c782";
    const ARK: &str = "c0b406a4-a803-4952-9743-3fb6014cd0ae";
    let mut ev = TeeEvidence::default();
    for entry in table.chunks(24) {
        if entry.len() < 24 {
            return Err("truncated certificate table".into());
        }
        if entry[..16].iter().all(|&b| b == 0) {
            return Ok(ev);
        }
        let guid = guid_string(&entry[..16]);
        let off = u32::from_le_bytes([entry[16], entry[17], entry[18], entry[19]]) as usize;
        let len = u32::from_le_bytes([entry[20], entry[21], entry[22], entry[23]]) as usize;
        let data = table
            .get(off..off.saturating_add(len))
            .ok_or_else(|| format!("certificate {guid} at {off}+{len} is outside the table"))?
            .to_vec();
        match guid.as_str() {
            VCEK | VLEK => ev.vek = Some(data),
            ASK => ev.ask = Some(data),
            ARK => ev.ark = Some(data),
            _ => {}
        }
    }
    Err("certificate table has no terminating entry".into())
}

/// The canonical text form of a GUID stored little-endian (mixed endian as in UEFI).
fn guid_string(b: &[u8]) -> String {
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{}",
        b[3],
        b[2],
        b[1],
        b[0],
        b[5],
        b[4],
        b[7],
        b[6],
        b[8],
        b[9],
        hex::encode(&b[10..16])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_table_is_split_by_guid() {
        // VCEK GUID 63da758d-e664-4564-adc5-f4b93be8accd in its stored byte order.
        let vcek_guid =
            [0x8d, 0x75, 0xda, 0x63, 0x64, 0xe6, 0x64, 0x45, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd];
        let mut table = Vec::new();
        table.extend_from_slice(&vcek_guid);
        table.extend_from_slice(&48u32.to_le_bytes());
        table.extend_from_slice(&3u32.to_le_bytes());
        table.extend_from_slice(&[0u8; 24]);
        table.extend_from_slice(b"abc");
        let ev = parse_cert_table(&table).unwrap();
        assert_eq!(ev.vek.as_deref(), Some(&b"abc"[..]));
        assert!(parse_cert_table(&table[..30]).is_err());
    }
}
