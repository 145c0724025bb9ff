//! A simulated UEFI boot of a unified kernel image on a TPM, for host tests
//! of measured boot without a VM: the events OVMF, systemd-stub and the
//! kernel's EFI stub would measure (as the real OVMF log in
//! `evidence/testdata/tcglog/` shows them), extended into the TPM's SHA-256
//! bank with `tpm2_pcrextend`, and the event log that records them.

use std::path::{Path, PathBuf};
use std::process::Command;

use cvm_evidence::eventlog::PcrBank;
use cvm_evidence::tcglog::{utf16_nul, EventType, LogBuilder};
use cvm_evidence::uki::{load_options, UkiMeasurements};
use sha2::{Digest as _, Sha256};

/// One extend: PCR, event type, SHA-256 digest, event data.
pub type Measurement = (u32, EventType, [u8; 32], Vec<u8>);

/// What a UEFI boot of the UKI `m` (with `initrd`, the `.initrd` section)
/// measures, in order.
pub fn uki_boot(m: &UkiMeasurements, initrd: &[u8]) -> Vec<Measurement> {
    let sha = |d: &[u8]| -> [u8; 32] { Sha256::digest(d).into() };
    let action = b"Calling EFI Application from Boot Option".to_vec();
    let mut out: Vec<Measurement> = vec![
        (7, EventType::SEPARATOR, sha(&[0; 4]), vec![0; 4]),
        (4, EventType::EFI_ACTION, sha(&action), action),
        (4, EventType::SEPARATOR, sha(&[0; 4]), vec![0; 4]),
        (4, EventType::EFI_BOOT_SERVICES_APPLICATION, m.authenticode_sha256, b"the UKI".to_vec()),
    ];
    for s in &m.sections {
        let mut named = s.name.as_bytes().to_vec();
        named.push(0);
        out.push((11, EventType::IPL, sha(&named), utf16_nul(s.name)));
        out.push((11, EventType::IPL, s.sha256, utf16_nul(s.name)));
    }
    out.push((
        4,
        EventType::EFI_BOOT_SERVICES_APPLICATION,
        m.kernel_authenticode_sha256,
        b"the kernel".to_vec(),
    ));
    if let Some(cmdline) = &m.cmdline {
        out.push((
            9,
            EventType::EVENT_TAG,
            sha(&load_options(cmdline.as_bytes())),
            b"LOADED_IMAGE::LoadOptions".to_vec(),
        ));
    }
    out.push((9, EventType::EVENT_TAG, sha(initrd), b"Linux initrd".to_vec()));
    out
}

/// The event log recording `events` (SHA-256 bank).
pub fn event_log(events: &[Measurement]) -> Vec<u8> {
    events
        .iter()
        .fold(LogBuilder::new(&[PcrBank::Sha256]), |log, (pcr, kind, digest, data)| {
            log.event_with_digests(*pcr, *kind, &[(PcrBank::Sha256, digest.to_vec())], data)
        })
        .build()
}

/// Extends `events` into the TPM behind `tcti` (SHA-256 bank).
pub fn extend(tcti: &str, events: &[Measurement]) {
    for (pcr, _, digest, _) in events {
        let o = Command::new("tpm2_pcrextend")
            .arg("-T")
            .arg(tcti)
            .arg(format!("{pcr}:sha256={}", hex::encode(digest)))
            .output()
            .expect("tpm2_pcrextend (tpm2-tools; run scripts/setup)");
        assert!(o.status.success(), "tpm2_pcrextend: {}", String::from_utf8_lossy(&o.stderr));
    }
}

/// Plays the firmware: extends `extended` into the TPM, writes the log of
/// `logged` (the same events, unless the test forges the log) into `dir`,
/// and returns the agent environment that points it there.
pub fn play(
    dir: &Path,
    tcti: &str,
    extended: &[Measurement],
    logged: &[Measurement],
) -> Vec<(String, String)> {
    extend(tcti, extended);
    let path: PathBuf = dir.join("binary_bios_measurements");
    std::fs::write(&path, event_log(logged)).unwrap();
    vec![("CVM_FIRMWARE_LOG".into(), path.display().to_string())]
}
