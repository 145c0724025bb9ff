use sha2::{Digest as _, Sha256};

use super::*;

/// A real log: Debian 12's OVMF (OVMF_CODE_4M.fd) with swtpm, booting a UKI
/// (Debian's systemd-stub 252, the project's kernel and its busybox
/// initramfs) from a GPT disk; read from securityfs in the guest.
const OVMF: &[u8] = include_bytes!("../../testdata/tcglog/ovmf-swtpm-uki.bin");

/// `systemd-measure calculate --phase= --bank=sha256` of that UKI's
/// sections (see `testdata/tcglog/README.md`).
const OVMF_UKI_PCR11: &str = "0b5c235e0f5f8bf30b9ab7286e4e5309568bfb5fa67ca13615177e41266aabc6";

#[test]
fn a_real_ovmf_log_parses_in_spec_order() {
    let log = parse(OVMF).unwrap();
    assert_eq!(log.spec_id.version, (2, 0, 0));
    assert_eq!(log.spec_id.uintn_size, 2);
    assert_eq!(log.spec_id.algorithms, vec![(0x0004, 20), (0x000B, 32), (0x000C, 48), (0x000D, 64)]);
    assert_eq!(log.algorithm_names(), "sha1+sha256+sha384+sha512");
    assert_eq!(log.events.len(), 36);
    assert_eq!(log.events[0].number, 1);
    // PCR 4: the firmware's action, its separator, then two boot
    // applications: the UKI and the kernel systemd-stub loads from it.
    let pcr4: Vec<EventType> = log.events_in(4).map(|e| e.event_type).collect();
    assert_eq!(
        pcr4,
        [
            EventType::EFI_ACTION,
            EventType::SEPARATOR,
            EventType::EFI_BOOT_SERVICES_APPLICATION,
            EventType::EFI_BOOT_SERVICES_APPLICATION
        ]
    );
    let names: Vec<String> = log.events_in(11).map(Event::describe).collect();
    assert_eq!(names, [".linux", ".linux", ".osrel", ".osrel", ".cmdline", ".cmdline", ".initrd", ".initrd"]);
    // systemd-stub measures each section's name with its NUL, then its data.
    assert_eq!(
        log.events_in(11).next().unwrap().digest(PcrBank::Sha256).unwrap(),
        &Sha256::digest(b".linux\0")[..]
    );
    let pcr9: Vec<String> = log.events_in(9).map(Event::describe).collect();
    assert_eq!(pcr9, ["tag 0x8f3b22ed: LOADED_IMAGE::LoadOptions", "tag 0x8f3b22ec: Linux initrd"]);
    let first_app = log.events_in(4).nth(2).unwrap().describe();
    assert!(first_app.starts_with("image of ") && first_app.contains("node 02/01"), "{first_app}");
    let var = log.events.iter().find(|e| e.event_type == EventType(0x8000_0001)).unwrap().describe();
    assert_eq!(var, "SecureBoot (8be4df61-93ca-11d2-aa0d-00e098032b8c), 1 bytes");
    let gpt = log.events.iter().find(|e| e.event_type == EventType(0x8000_0006)).unwrap().describe();
    assert_eq!(gpt, "GPT with 1 partitions");
}

#[test]
fn the_replayed_pcr_11_is_what_systemd_measure_predicts() {
    let log = parse(OVMF).unwrap();
    let pcrs = log.replay(PcrBank::Sha256).unwrap();
    assert_eq!(hex::encode(&pcrs[11]), OVMF_UKI_PCR11);
    assert_eq!(pcrs.len(), 24);
    // Nothing extended PCRs 12 to 23.
    assert!(pcrs[12..].iter().all(|p| p.iter().all(|b| *b == 0)));
    assert_eq!(log.replay(PcrBank::Sha384).unwrap()[11].len(), 48);
}

#[test]
fn every_truncation_is_refused_without_panic() {
    for n in 0..OVMF.len() {
        let err = parse(&OVMF[..n]);
        // A cut at an event boundary is a shorter valid log.
        if let Ok(log) = err {
            assert!(log.events.len() < 36, "cut at {n}");
            continue;
        }
        assert!(matches!(err, Err(TcgLogError::Truncated { .. }) | Err(TcgLogError::Invalid { .. })), "{n}");
    }
}

#[test]
fn flipped_bytes_never_panic_and_lengths_are_checked() {
    // Every byte of the first 600 (header and first events) flipped in every
    // bit: parse either fails with an error or yields a log.
    for i in 0..600.min(OVMF.len()) {
        for bit in 0..8 {
            let mut b = OVMF.to_vec();
            b[i] ^= 1 << bit;
            if let Ok(log) = parse(&b) {
                let _ = log.replay(PcrBank::Sha256);
                let _: Vec<String> = log.events.iter().map(Event::describe).collect();
            }
        }
    }
    // An event size of 4 GiB is a truncation, not an allocation.
    let log = LogBuilder::new(&[PcrBank::Sha256]).event(4, EventType::EFI_ACTION, b"x", b"x").build();
    let mut huge = log.clone();
    let size_at = huge.len() - 5;
    huge[size_at..size_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(parse(&huge), Err(TcgLogError::Truncated { what: "event data", .. })));
}

#[test]
fn structural_faults_are_named() {
    let good = LogBuilder::new(&[PcrBank::Sha256]).event(4, EventType::EFI_ACTION, b"a", b"a").build();
    assert_eq!(parse(&good).unwrap().events.len(), 1);
    let header_len = 32 + 16 + 4 + 4 + 4 + 4 + 1;

    // A SHA-1-only (pre-crypto-agile) log.
    let mut legacy = good.clone();
    legacy[32..48].copy_from_slice(b"Spec ID Event02\0");
    let e = parse(&legacy).unwrap_err().to_string();
    assert!(e.contains("Spec ID signature") && e.contains("crypto-agile"), "{e}");

    // A PCR index out of range.
    let mut pcr = good.clone();
    pcr[header_len..header_len + 4].copy_from_slice(&24u32.to_le_bytes());
    let e = parse(&pcr).unwrap_err().to_string();
    assert!(e.contains("pcrIndex") && e.contains("0 to 23") && e.contains("found 24"), "{e}");

    // An event with no digest, or one of an algorithm the header lacks.
    let mut count = good.clone();
    count[header_len + 8..header_len + 12].copy_from_slice(&0u32.to_le_bytes());
    assert!(parse(&count).unwrap_err().to_string().contains("digest count"));
    let mut alg = good.clone();
    alg[header_len + 12..header_len + 14].copy_from_slice(&0x000Cu16.to_le_bytes());
    let e = parse(&alg).unwrap_err().to_string();
    assert!(e.contains("hashAlg") && e.contains("sha384"), "{e}");

    // A header digest size that is not the algorithm's.
    let mut size = good.clone();
    size[32 + 16 + 4 + 4 + 4 + 2..32 + 16 + 4 + 4 + 4 + 4].copy_from_slice(&20u16.to_le_bytes());
    assert!(parse(&size).unwrap_err().to_string().contains("32 bytes for sha256"));

    // Trailing garbage is a truncated event.
    let mut trailing = good;
    trailing.extend_from_slice(&[1, 2, 3]);
    assert!(matches!(parse(&trailing), Err(TcgLogError::Truncated { .. })));

    // A bank the log does not record cannot be replayed.
    let sha1_less = parse(OVMF).unwrap();
    assert!(sha1_less.replay(PcrBank::Sha256).is_ok());
    let only256 = parse(&LogBuilder::new(&[PcrBank::Sha256]).build()).unwrap();
    assert_eq!(
        only256.replay(PcrBank::Sha384).unwrap_err().to_string(),
        "firmware event log: no sha384 digests (the log has sha256)"
    );
}

#[test]
fn replay_extends_from_zero_and_honours_the_startup_locality() {
    let extend = |pcr: &[u8], d: &[u8]| Sha256::new().chain_update(pcr).chain_update(d).finalize().to_vec();
    let mut locality = b"StartupLocality\0".to_vec();
    locality.push(3);
    let log = LogBuilder::new(&[PcrBank::Sha256])
        .event_with_digests(0, EventType::NO_ACTION, &[(PcrBank::Sha256, vec![0; 32])], &locality)
        .event(0, EventType(0x8000_0008), b"firmware", b"blob")
        .event(7, EventType::SEPARATOR, &[0; 4], &[0; 4])
        .event_with_digests(7, EventType::NO_ACTION, &[(PcrBank::Sha256, vec![9; 32])], b"ignored")
        .build();
    let pcrs = parse(&log).unwrap().replay(PcrBank::Sha256).unwrap();
    let mut start = vec![0u8; 32];
    start[31] = 3;
    assert_eq!(pcrs[0], extend(&start, &Sha256::digest(b"firmware")));
    assert_eq!(pcrs[7], extend(&[0; 32], &Sha256::digest([0u8; 4])));
    assert_eq!(pcrs[1], vec![0; 32]);
}
