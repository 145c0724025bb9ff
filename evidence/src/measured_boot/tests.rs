//! From one good boot (a log shaped like OVMF's with a UKI, the agent's own
//! events, a quote by a software AK), change one thing per test.

use super::*;
use crate::hexbytes::HexBytes;
use crate::policy::EventRule;
use crate::tcglog::{utf16_nul, EventType, LogBuilder};
use crate::tpm::SimulatedAk;
use crate::verify::Outcome;

const NONCE: [u8; 32] = [0x4e; 32];
const OWN_PCR: u32 = 15;
const UKI: &[u8] = b"the UKI's Authenticode digest stands for this";
const KERNEL: &[u8] = b"the kernel's";

fn sha(data: &[u8]) -> [u8; 32] {
    let mut a = [0u8; 32];
    a.copy_from_slice(&PcrBank::Sha256.digest(data));
    a
}

/// A firmware log of a UKI boot whose `.cmdline` is `cmdline`, booting
/// `apps` (measured data of each boot application) in PCR 4.
fn firmware_log(apps: &[&[u8]], cmdline: &[u8]) -> Vec<u8> {
    let mut log = LogBuilder::new(&[PcrBank::Sha256, PcrBank::Sha384])
        .event(7, EventType(0x8000_0001), b"SecureBoot=0", b"SecureBoot")
        .event(7, EventType::SEPARATOR, &[0; 4], &[0; 4])
        .event(
            4,
            EventType::EFI_ACTION,
            b"Calling EFI Application from Boot Option",
            b"Calling EFI Application from Boot Option",
        )
        .event(4, EventType::SEPARATOR, &[0; 4], &[0; 4]);
    for app in apps {
        log = log.event(4, EventType::EFI_BOOT_SERVICES_APPLICATION, app, b"image");
    }
    for (name, data) in [(".linux", b"kernel" as &[u8]), (".cmdline", cmdline), (".initrd", b"initrd")] {
        let mut named = name.as_bytes().to_vec();
        named.push(0);
        log = log.event(11, EventType::IPL, &named, &utf16_nul(name)).event(
            11,
            EventType::IPL,
            data,
            &utf16_nul(name),
        );
    }
    log.event(9, EventType::EVENT_TAG, b"initrd", b"Linux initrd").build()
}

fn own_events() -> Vec<EventRecord> {
    vec![EventRecord::new("manifest", "m", "sha256:00"), EventRecord::new("dataset", "d", "sha256:11")]
}

/// A boot: the quote of `pcrs` over `nonce` with the values a TPM would hold
/// after `log` and the agent's `own` events.
struct Boot {
    ak: SimulatedAk,
    log: Vec<u8>,
    pcrs: Vec<(u32, Vec<u8>)>,
    quote: Vec<u8>,
    signature: Vec<u8>,
}

const QUOTED: [u32; 5] = [4, 7, 9, 11, OWN_PCR];

fn boot_of(log: Vec<u8>, own: &[EventRecord], nonce: &[u8; 32]) -> Boot {
    let ak = SimulatedAk::generate().unwrap();
    let replay = tcglog::parse(&log).unwrap().replay(PcrBank::Sha256).unwrap();
    let pcrs: Vec<(u32, Vec<u8>)> = QUOTED
        .iter()
        .map(|p| {
            (*p, if *p == OWN_PCR { replay_pcr(PcrBank::Sha256, own) } else { replay[*p as usize].clone() })
        })
        .collect();
    let quoted: Vec<(PcrBank, u32, Vec<u8>)> =
        pcrs.iter().map(|(p, v)| (PcrBank::Sha256, *p, v.clone())).collect();
    let (quote, signature) = ak.quote(nonce, &quoted).unwrap();
    Boot { ak, log, pcrs, quote, signature }
}

fn good() -> Boot {
    boot_of(firmware_log(&[UKI, KERNEL], b"console=ttyS0"), &own_events(), &NONCE)
}

/// The policy the owner derives from the good image.
fn policy() -> Policy {
    let replay = tcglog::parse(&firmware_log(&[UKI, KERNEL], b"console=ttyS0"))
        .unwrap()
        .replay(PcrBank::Sha256)
        .unwrap();
    let mut p = Policy::default();
    p.tpm_pcrs.insert(11, vec![HexBytes(replay[11].clone().try_into().unwrap())]);
    p.tpm_pcrs.insert(12, vec![HexBytes([0; 32])]);
    p.tpm_events.push(EventRule {
        pcr: 4,
        event_type: EventType::EFI_BOOT_SERVICES_APPLICATION,
        sha256: vec![HexBytes(sha(UKI)), HexBytes(sha(KERNEL))],
    });
    p
}

fn check(
    boot: &Boot,
    policy: &Policy,
    nonce: &[u8; 32],
    own: &[EventRecord],
) -> (VerificationReport, Option<VerifiedBoot>) {
    let mut pcrs = boot.pcrs.clone();
    pcrs.push((12, vec![0; 32]));
    pcrs.sort();
    // PCR 12 is quoted too (zero), in a boot quote made over all of them.
    let quoted: Vec<(PcrBank, u32, Vec<u8>)> =
        pcrs.iter().map(|(p, v)| (PcrBank::Sha256, *p, v.clone())).collect();
    let (quote, signature) = if boot.quote.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        boot.ak.quote(&quote_nonce(&boot.quote), &quoted).unwrap()
    };
    let claim = MeasuredBootClaim::Quoted {
        quote: &quote,
        signature: &signature,
        pcrs: &pcrs,
        event_log: Ok(&boot.log),
    };
    let mut result = VerificationReport { product: None, checks: Vec::new() };
    let verified = check_measured_boot(
        &mut result,
        policy,
        Some(&boot.ak.public()),
        &claim,
        nonce,
        Some((OWN_PCR, own)),
    );
    (result, verified)
}

fn quote_nonce(quote: &[u8]) -> Vec<u8> {
    Quote::parse(quote).unwrap().extra_data
}

#[track_caller]
fn outcome(result: &VerificationReport, name: &str) -> Outcome {
    result.check(name).unwrap_or_else(|| panic!("no check {name}: {:?}", result.checks)).outcome.clone()
}

#[track_caller]
fn failed(result: &VerificationReport) -> Vec<&'static str> {
    result.failures().map(|c| c.name).collect()
}

#[test]
fn verify_succeeds_with_the_image_the_policy_pins() {
    let boot = good();
    let (result, verified) = check(&boot, &policy(), &NONCE, &own_events());
    assert!(result.accepted(), "{:#?}", result.checks);
    let names: Vec<&str> = result.checks.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "measured_boot",
            "boot_quote_signature",
            "boot_quote_nonce",
            "boot_quote_pcrs",
            "firmware_log_format",
            "firmware_log_replay",
            "boot_quote_event_replay",
            "tpm_pcr_11",
            "tpm_pcr_12",
            "tpm_event_pcr_4"
        ]
    );
    let verified = verified.unwrap();
    assert_eq!(verified.replayed, [4, 7, 9, 11, 12]);
    assert_eq!(verified.own_pcr, Some(OWN_PCR));
    assert!(result.check("firmware_log_replay").unwrap().found.contains("PCRs 4,7,9,11,12 reproduced"));
}

#[test]
fn verify_fails_with_one_changed_byte_of_the_command_line() {
    // Another UKI: its Authenticode digest and its .cmdline differ.
    let other = boot_of(firmware_log(&[b"another UKI", KERNEL], b"console=ttyS1"), &own_events(), &NONCE);
    let (result, _) = check(&other, &policy(), &NONCE, &own_events());
    assert_eq!(failed(&result), ["tpm_pcr_11", "tpm_event_pcr_4"]);
    // The evidence itself is sound: only the policy's rules fail.
    assert_eq!(outcome(&result, "firmware_log_replay"), Outcome::Passed);
    let event = result.check("tpm_event_pcr_4").unwrap();
    assert!(event.found.contains(&hex::encode(sha(b"another UKI"))), "{event}");
    assert!(event.expected.contains(&hex::encode(sha(UKI))), "{event}");
}

#[test]
fn verify_fails_when_another_boot_application_ran_first() {
    let chained = boot_of(firmware_log(&[b"a loader", UKI, KERNEL], b"console=ttyS0"), &own_events(), &NONCE);
    let (result, _) = check(&chained, &policy(), &NONCE, &own_events());
    assert_eq!(failed(&result), ["tpm_event_pcr_4"]);
}

#[test]
fn verify_fails_with_a_log_that_is_not_the_quoted_one() {
    // The agent quotes the good boot but sends the log of the pinned image
    // with one event changed: the replay names the PCR, and the event rule
    // on it cannot pass.
    let mut boot = good();
    let forged = firmware_log(&[UKI, b"another kernel"], b"console=ttyS0");
    boot.log = forged;
    let (result, _) = check(&boot, &policy(), &NONCE, &own_events());
    assert_eq!(failed(&result), ["firmware_log_replay", "tpm_event_pcr_4"]);
    let replay = result.check("firmware_log_replay").unwrap();
    assert!(replay.found.starts_with("PCR 4: the log gives"), "{replay}");
    assert!(result.check("tpm_event_pcr_4").unwrap().found.contains("does not reproduce PCR 4"));

    // Without PCR or event rules the owner pins the image by SNP alone: the
    // mismatch is reported, not refused.
    let (result, _) = check(&boot, &Policy::default(), &NONCE, &own_events());
    assert!(result.accepted(), "{:#?}", result.checks);
    match outcome(&result, "firmware_log_replay") {
        Outcome::Skipped { reason } => assert!(reason.contains("PCR 4: the log gives"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn verify_fails_with_an_old_nonce_another_signer_or_other_values() {
    let boot = good();
    let (result, _) = check(&boot, &policy(), &[0; 32], &own_events());
    assert_eq!(failed(&result), ["boot_quote_nonce", "tpm_pcr_11", "tpm_pcr_12", "tpm_event_pcr_4"]);
    assert!(matches!(outcome(&result, "firmware_log_replay"), Outcome::Skipped { .. }));

    // Signed by a key that is not the bound AK.
    let mut result = VerificationReport { product: None, checks: Vec::new() };
    let claim = MeasuredBootClaim::Quoted {
        quote: &boot.quote,
        signature: &boot.signature,
        pcrs: &boot.pcrs,
        event_log: Ok(&boot.log),
    };
    let stranger = SimulatedAk::generate().unwrap();
    check_measured_boot(
        &mut result,
        &policy(),
        Some(&stranger.public()),
        &claim,
        &NONCE,
        Some((OWN_PCR, &own_events())),
    );
    assert_eq!(failed(&result), ["boot_quote_signature", "tpm_pcr_11", "tpm_pcr_12", "tpm_event_pcr_4"]);

    // Values that are not the quoted ones.
    let mut values = boot.pcrs.clone();
    values[1].1[0] ^= 1;
    let claim = MeasuredBootClaim::Quoted {
        quote: &boot.quote,
        signature: &boot.signature,
        pcrs: &values,
        event_log: Ok(&boot.log),
    };
    let mut result = VerificationReport { product: None, checks: Vec::new() };
    check_measured_boot(&mut result, &Policy::default(), Some(&boot.ak.public()), &claim, &NONCE, None);
    assert_eq!(failed(&result), ["boot_quote_pcrs"]);
}

#[test]
fn verify_fails_when_the_agents_own_log_does_not_replay() {
    let boot = good();
    let mut others = own_events();
    others.pop();
    let (result, _) = check(&boot, &policy(), &NONCE, &others);
    assert_eq!(failed(&result), ["boot_quote_event_replay"]);
}

#[test]
fn without_a_boot_quote_only_a_policy_with_rules_fails() {
    let claim = MeasuredBootClaim::Absent { reason: "an agent older than measured boot" };
    let mut result = VerificationReport { product: None, checks: Vec::new() };
    assert!(check_measured_boot(&mut result, &Policy::default(), None, &claim, &NONCE, None).is_none());
    assert!(result.accepted());
    assert!(matches!(outcome(&result, "measured_boot"), Outcome::Skipped { .. }));

    let mut result = VerificationReport { product: None, checks: Vec::new() };
    check_measured_boot(&mut result, &policy(), None, &claim, &NONCE, None);
    assert_eq!(failed(&result), ["measured_boot", "tpm_pcr_11", "tpm_pcr_12", "tpm_event_pcr_4"]);
    assert!(result.check("tpm_pcr_11").unwrap().found.contains("no verified boot quote"));
}

#[test]
fn a_missing_or_malformed_log_fails_the_event_rules_not_the_pcr_rules() {
    let boot = good();
    for log in [Err("no securityfs"), Ok(&b"not a log"[..])] {
        let mut pcrs = boot.pcrs.clone();
        pcrs.push((12, vec![0; 32]));
        pcrs.sort();
        let quoted: Vec<(PcrBank, u32, Vec<u8>)> =
            pcrs.iter().map(|(p, v)| (PcrBank::Sha256, *p, v.clone())).collect();
        let (quote, signature) = boot.ak.quote(&NONCE, &quoted).unwrap();
        let claim =
            MeasuredBootClaim::Quoted { quote: &quote, signature: &signature, pcrs: &pcrs, event_log: log };
        let mut result = VerificationReport { product: None, checks: Vec::new() };
        check_measured_boot(
            &mut result,
            &policy(),
            Some(&boot.ak.public()),
            &claim,
            &NONCE,
            Some((OWN_PCR, &own_events())),
        );
        assert_eq!(failed(&result), ["firmware_log_format", "tpm_event_pcr_4"], "{log:?}");
        assert_eq!(outcome(&result, "tpm_pcr_11"), Outcome::Passed);
    }
}

#[test]
fn a_pcr_rule_on_a_pcr_the_agent_did_not_quote_fails() {
    let boot = good();
    let mut p = policy();
    p.tpm_pcrs.insert(2, vec![HexBytes([0; 32])]);
    let (result, _) = check(&boot, &p, &NONCE, &own_events());
    assert_eq!(failed(&result), ["tpm_pcr_2"]);
    assert_eq!(result.check("tpm_pcr_2").unwrap().found, "PCR 2 is not in the boot quote");
}
