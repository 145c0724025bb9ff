//! Where SNP reports come from: one trait, four providers.
//!
//! `sev-guest` (the kernel's /dev/sev-guest through the `sev` crate),
//! `configfs-tsm` (/sys/kernel/config/tsm/report, Linux 6.7+), `azure`
//! (Microsoft's paravisor through the vTPM's NV indices, [`azure`]) and
//! `simulated` (software SNP for development and tests, chosen only
//! explicitly and announced by a warning; `simulated-azure` plays Azure's
//! paravisor on a software TPM). Auto-detection takes the first real
//! provider that exists (/dev/sev-guest; else Azure's HCL report in the
//! vTPM; else configfs-tsm) and fails closed when there is none.

pub mod azure;
mod configfs_tsm;
mod sev_guest;
#[cfg(feature = "simulated-tee")]
mod simulated;
#[cfg(feature = "simulated-tee")]
pub mod simulated_azure;
pub mod thim;

use std::path::Path;

pub use configfs_tsm::ConfigfsTsm;
pub use sev_guest::SevGuest;
#[cfg(feature = "simulated-tee")]
pub use simulated::Simulated;

/// Whether this agent was built with the simulated provider (the
/// `simulated-tee` feature: development and the tests' images only).
pub const SIMULATED_BUILT_IN: bool = cfg!(feature = "simulated-tee");

use crate::vtpm::{VtpmMode, VtpmState};

/// A report and the certificates the host supplied with it.
#[derive(Clone, Debug, Default)]
pub struct TeeEvidence {
    /// The raw report (on Azure, the paravisor's HCL report).
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
    /// The flavour of its evidence (what the verifier must check it as).
    fn platform(&self) -> cvm_evidence::policy::Platform {
        cvm_evidence::policy::Platform::SevSnp
    }
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
    /// Microsoft's paravisor on Azure, through the vTPM.
    Azure,
    /// Software SNP; not secure.
    Simulated,
    /// Azure's path with a simulated paravisor on a software TPM; not secure.
    SimulatedAzure,
}

/// The TEE's settings: config keys `tee`, `simulated_chain`,
/// `simulated_measurement`, `azure_thim` and `azure_deadline_ms`.
#[derive(Clone, Copy, Debug)]
pub struct TeeSettings<'a> {
    /// The provider asked for.
    pub choice: TeeChoice,
    /// The simulated provider's chain bundle.
    pub simulated_chain: Option<&'a Path>,
    /// The measurement the simulated provider reports.
    pub simulated_measurement: [u8; 48],
    /// Azure: where the VCEK and chain come from, or none.
    pub azure_thim: Option<&'a thim::ThimUrl>,
    /// Azure: how long to wait for a refreshed HCL report.
    pub azure_deadline: std::time::Duration,
}

/// The provider `tee = auto` stands for on this machine: /dev/sev-guest
/// when it exists, else Azure's paravisor when the vTPM (`vtpm`) holds its
/// HCL report, else configfs-tsm; none is an error. Never the simulator.
pub fn detect(
    settings: &TeeSettings<'_>,
    vtpm: &crate::vtpm::VtpmSettings<'_>,
) -> Result<TeeChoice, TeeError> {
    if settings.choice != TeeChoice::Auto {
        return Ok(settings.choice);
    }
    if Path::new(sev_guest::DEVICE).exists() {
        return Ok(TeeChoice::SevGuest);
    }
    if vtpm.mode != VtpmMode::Off
        && crate::vtpm::nv_index_exists(vtpm.tcti, cvm_evidence::azure::NV_HCL_REPORT)
    {
        return Ok(TeeChoice::Azure);
    }
    if Path::new(configfs_tsm::ROOT).exists() {
        return Ok(TeeChoice::ConfigfsTsm);
    }
    Err(TeeError {
        provider: "auto",
        message: format!(
            "no SNP guest interface found ({}, Azure's HCL report at NV index 0x{:08x} of the vTPM {}, or {}); \
             refusing to start without a TEE (set tee = simulated for development: it is not secure)",
            sev_guest::DEVICE,
            cvm_evidence::azure::NV_HCL_REPORT,
            vtpm.tcti,
            configfs_tsm::ROOT
        ),
    })
}

/// The provider for `choice` ([`detect`]'s answer); Azure's needs the vTPM.
pub fn from_settings(
    config: TeeSettings<'_>,
    choice: TeeChoice,
    vtpm: &VtpmState,
) -> Result<Box<dyn TeeProvider>, TeeError> {
    match choice {
        TeeChoice::SevGuest => Ok(Box::new(SevGuest)),
        TeeChoice::ConfigfsTsm => Ok(Box::new(ConfigfsTsm::new())),
        TeeChoice::Azure => {
            let vtpm = azure_vtpm(vtpm, "azure")?;
            let certs = azure_certs(&config)?;
            Ok(Box::new(azure::Azure::new(
                vtpm,
                certs,
                config.azure_deadline,
                Box::new(azure::Microsoft),
                "azure",
            )))
        }
        #[cfg(feature = "simulated-tee")]
        TeeChoice::Simulated => Ok(Box::new(Simulated::from_settings(config)?)),
        #[cfg(feature = "simulated-tee")]
        TeeChoice::SimulatedAzure => {
            let vtpm = azure_vtpm(vtpm, "simulated-azure")?;
            let certs = azure_certs(&config)?;
            let paravisor = simulated_azure::SimulatedParavisor::new(Simulated::from_settings(config)?);
            Ok(Box::new(azure::Azure::new(
                vtpm,
                certs,
                config.azure_deadline,
                Box::new(paravisor),
                "simulated-azure",
            )))
        }
        #[cfg(not(feature = "simulated-tee"))]
        TeeChoice::Simulated | TeeChoice::SimulatedAzure => Err(TeeError {
            provider: "simulated",
            message: "this agent was built without the simulated TEE (the `simulated-tee` feature): \
                      a release agent runs on real SEV-SNP only"
                .into(),
        }),
        TeeChoice::Auto => Err(TeeError {
            provider: "auto",
            message: "internal: tee = auto must be resolved by tee::detect first".into(),
        }),
    }
}

/// The open vTPM Azure's provider writes and reads through.
fn azure_vtpm(
    vtpm: &VtpmState,
    provider: &'static str,
) -> Result<std::sync::Arc<crate::vtpm::Vtpm>, TeeError> {
    match vtpm {
        VtpmState::Active(v) => Ok(std::sync::Arc::clone(v)),
        VtpmState::Off => Err(TeeError { provider, message: "needs the vTPM, but vtpm = off".into() }),
        VtpmState::Unavailable(why) | VtpmState::Failed(why) => {
            Err(TeeError { provider, message: format!("needs the vTPM, which is unusable: {why}") })
        }
    }
}

/// The VCEK and chain from THIM, or none when `azure_thim = none`.
fn azure_certs(config: &TeeSettings<'_>) -> Result<TeeEvidence, TeeError> {
    let Some(url) = config.azure_thim else {
        log::info!("Azure: no THIM (azure_thim = none): the owners give cvmctl the VCEK and chain");
        return Ok(TeeEvidence::default());
    };
    let certs = thim::fetch(url, std::time::Duration::from_secs(10)).map_err(|e| TeeError {
        provider: "azure",
        message: format!(
            "{e}; the VCEK comes from there at start (set azure_thim to another numeric URL, or to none \
             and give cvmctl the certificates with --certs)"
        ),
    })?;
    log::info!("Azure: VCEK and chain from THIM at {url}");
    Ok(TeeEvidence { report: Vec::new(), vek: Some(certs.vcek), ask: certs.ask, ark: certs.ark })
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

/// The text form of a GUID as the certificate table stores it: its 16 bytes
/// in the order of the text (what the `sev` crate's `Uuid::from_slice` and
/// Google's go-sev-guest read; GCP's host writes it so). Read as a UEFI
/// mixed-endian GUID, GCP's VCEK entry would not be found.
fn guid_string(b: &[u8]) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        hex::encode(&b[..4]),
        hex::encode(&b[4..6]),
        hex::encode(&b[6..8]),
        hex::encode(&b[8..10]),
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
            [0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd];
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
